"""``python -m samplewise_rnnt.espnet.asr_train``: ESPnet's ``espnet2.bin.asr_train`` with
``model: samplewise_transducer`` registered (at import: ESPnet's spawned workers import this module
again and have it too)."""
from .._toolkits import require

try:
    require("espnet", "python -m samplewise_rnnt.espnet.asr_train")
except ModuleNotFoundError as exc:
    if __name__ == "__main__":  # python -m: the message, no traceback
        raise SystemExit(f"error: {exc}") from None
    raise

from . import register  # noqa: E402

register()


def main(cmd=None):
    from espnet2.bin import asr_train

    asr_train.main(cmd=cmd)


if __name__ == "__main__":
    main()
