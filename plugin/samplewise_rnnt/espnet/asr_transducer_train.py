"""``python -m samplewise_rnnt.espnet.asr_transducer_train``: ESPnet's ``espnet2.bin.asr_transducer_train``
with the ``--model`` choice added to ``ASRTransducerTask`` at import
(:func:`samplewise_rnnt.espnet.transducer_model.install`)."""
from .._toolkits import require_for_entry_point, run_espnet_program

require_for_entry_point("espnet", "samplewise_rnnt.espnet.asr_transducer_train", __name__ == "__main__")

from .transducer_model import install  # noqa: E402

install()


def main(cmd=None):
    run_espnet_program("asr_transducer_train", cmd)


if __name__ == "__main__":
    main()
