"""``python -m samplewise_rnnt.espnet.asr_transducer_train``: ESPnet's ``asr_transducer`` training
with the ``--model`` choice of :class:`~samplewise_rnnt.espnet.transducer_model.SampleWiseASRTransducerTask`."""


def main(cmd=None):
    from .transducer_model import SampleWiseASRTransducerTask

    SampleWiseASRTransducerTask.main(cmd=cmd)


if __name__ == "__main__":
    main()
