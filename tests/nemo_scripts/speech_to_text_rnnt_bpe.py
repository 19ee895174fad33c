"""What NeMo's examples/asr/asr_transducer/speech_to_text_rnnt_bpe.py does (hydra_runner, Trainer,
exp_manager, EncDecRNNTBPEModel, fit), with no samplewise_rnnt import: the tests select the sample-wise
loss by the config line alone (model.loss.loss_name=samplewise_rnnt)."""
import lightning.pytorch as pl
from omegaconf import OmegaConf

from nemo.collections.asr.models import EncDecRNNTBPEModel
from nemo.core.config import hydra_runner
from nemo.utils import logging
from nemo.utils.exp_manager import exp_manager


@hydra_runner(config_path="conf", config_name="rnnt_bpe")
def main(cfg):
    logging.info(f"Hydra config: {OmegaConf.to_yaml(cfg)}")
    trainer = pl.Trainer(**cfg.trainer)
    exp_manager(trainer, cfg.get("exp_manager", None))
    asr_model = EncDecRNNTBPEModel(cfg=cfg.model, trainer=trainer)
    asr_model.maybe_init_from_pretrained_checkpoint(cfg)
    trainer.fit(asr_model)


if __name__ == "__main__":
    main()
