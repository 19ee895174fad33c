"""``python -m samplewise_rnnt.espnet.asr_transducer_inference``: ESPnet's
``espnet2.bin.asr_transducer_inference`` with the ``--model`` choice added to ``ASRTransducerTask`` at
import (:func:`samplewise_rnnt.espnet.transducer_model.install`; the model is rebuilt from config.yaml)."""
from .._toolkits import require_for_entry_point, run_espnet_program

require_for_entry_point("espnet", "samplewise_rnnt.espnet.asr_transducer_inference", __name__ == "__main__")

from .transducer_model import install  # noqa: E402

install()


def main(cmd=None):
    run_espnet_program("asr_transducer_inference", cmd)


if __name__ == "__main__":
    main()
