"""``python -m samplewise_rnnt.espnet.asr_inference``: ESPnet's ``espnet2.bin.asr_inference`` with
``model: samplewise_transducer`` registered (it rebuilds the model from config.yaml)."""
from . import register


def main(cmd=None):
    register()
    from espnet2.bin import asr_inference

    asr_inference.main(cmd=cmd)


if __name__ == "__main__":
    main()
