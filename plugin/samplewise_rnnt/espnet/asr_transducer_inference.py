"""``python -m samplewise_rnnt.espnet.asr_transducer_inference``: ESPnet's
``espnet2.bin.asr_transducer_inference`` with the ``--model`` choice added to ``ASRTransducerTask`` at
import (:func:`samplewise_rnnt.espnet.transducer_model.install`; the model is rebuilt from config.yaml)."""
from .._toolkits import require

try:
    require("espnet", "python -m samplewise_rnnt.espnet.asr_transducer_inference")
except ModuleNotFoundError as exc:
    if __name__ == "__main__":  # python -m: the message, no traceback
        raise SystemExit(f"error: {exc}") from None
    raise

from .transducer_model import install  # noqa: E402

install()


def main(cmd=None):
    from espnet2.bin import asr_transducer_inference

    asr_transducer_inference.main(cmd=cmd)


if __name__ == "__main__":
    main()
