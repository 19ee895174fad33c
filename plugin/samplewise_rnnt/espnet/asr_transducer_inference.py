"""``python -m samplewise_rnnt.espnet.asr_transducer_inference``: ESPnet's
``espnet2.bin.asr_transducer_inference`` building its model with
:class:`~samplewise_rnnt.espnet.transducer_model.SampleWiseASRTransducerTask` (which knows
``model: samplewise_transducer``)."""


def main(cmd=None):
    from espnet2.bin import asr_transducer_inference

    from .transducer_model import SampleWiseASRTransducerTask

    # the program looks its task class up in its module namespace at call time
    asr_transducer_inference.ASRTransducerTask = SampleWiseASRTransducerTask
    asr_transducer_inference.main(cmd=cmd)


if __name__ == "__main__":
    main()
