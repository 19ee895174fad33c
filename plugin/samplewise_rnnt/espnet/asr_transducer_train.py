"""``python -m samplewise_rnnt.espnet.asr_transducer_train``: ESPnet's ``espnet2.bin.asr_transducer_train``
with the ``--model`` choice added to ``ASRTransducerTask`` at import
(:func:`samplewise_rnnt.espnet.transducer_model.install`)."""
from .._toolkits import require

try:
    require("espnet", "python -m samplewise_rnnt.espnet.asr_transducer_train")
except ModuleNotFoundError as exc:
    if __name__ == "__main__":  # python -m: the message, no traceback
        raise SystemExit(f"error: {exc}") from None
    raise

from .transducer_model import install  # noqa: E402

install()


def main(cmd=None):
    from espnet2.bin import asr_transducer_train

    asr_transducer_train.main(cmd=cmd)


if __name__ == "__main__":
    main()
