"""``python -m samplewise_rnnt.espnet.asr_inference``: ESPnet's ``espnet2.bin.asr_inference`` with
``model: samplewise_transducer`` registered at import (it rebuilds the model from config.yaml)."""
from .._toolkits import require_for_entry_point, run_espnet_program

require_for_entry_point("espnet", "samplewise_rnnt.espnet.asr_inference", __name__ == "__main__")

from . import register  # noqa: E402

register()


def main(cmd=None):
    run_espnet_program("asr_inference", cmd)


if __name__ == "__main__":
    main()
