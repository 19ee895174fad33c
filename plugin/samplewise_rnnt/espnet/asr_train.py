"""``python -m samplewise_rnnt.espnet.asr_train``: ESPnet's ``espnet2.bin.asr_train`` with
``model: samplewise_transducer`` registered (at import: ESPnet's spawned workers import this module
again and have it too)."""
from .._toolkits import require_for_entry_point, run_espnet_program

require_for_entry_point("espnet", "samplewise_rnnt.espnet.asr_train", __name__ == "__main__")

from . import register  # noqa: E402

register()


def main(cmd=None):
    run_espnet_program("asr_train", cmd)


if __name__ == "__main__":
    main()
