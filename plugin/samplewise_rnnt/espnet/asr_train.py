"""``python -m samplewise_rnnt.espnet.asr_train``: ESPnet's ``espnet2.bin.asr_train`` with
``model: samplewise_transducer`` registered."""
from . import register


def main(cmd=None):
    register()
    from espnet2.bin import asr_train

    asr_train.main(cmd=cmd)


if __name__ == "__main__":
    main()
