"""``python -m samplewise_rnnt.espnet.asr_inference``: ESPnet's ``espnet2.bin.asr_inference`` with
``model: samplewise_transducer`` registered at import (it rebuilds the model from config.yaml)."""
from .._toolkits import require

try:
    require("espnet", "python -m samplewise_rnnt.espnet.asr_inference")
except ModuleNotFoundError as exc:
    if __name__ == "__main__":  # python -m: the message, no traceback
        raise SystemExit(f"error: {exc}") from None
    raise

from . import register  # noqa: E402

register()


def main(cmd=None):
    from espnet2.bin import asr_inference

    asr_inference.main(cmd=cmd)


if __name__ == "__main__":
    main()
