"""Train a NeMo BPE transducer; NeMo's speech_to_text_rnnt_bpe.py flow, with samplewise_rnnt imported.

    python train.py --config-path conf --config-name fastconformer_transducer_samplewise_b1024 \
        model.train_ds.manifest_filepath=... model.validation_ds.manifest_filepath=... \
        model.tokenizer.dir=... exp_manager.exp_dir=... [+output_dir=DIR]

Importing ``samplewise_rnnt.nemo`` is the only change a NeMo user needs: it registers the loss name
``samplewise_rnnt`` and the ``encoder_checkpointing`` key. Besides NeMo's own logging this script prints
one progress line per epoch and, with ``+output_dir``, writes ``<output_dir>/model.nemo`` and
``<output_dir>/train_summary.json`` (first and last training loss, steps, seconds).
"""
import json
import time
from pathlib import Path

import lightning.pytorch as pl
from omegaconf import OmegaConf

import samplewise_rnnt.nemo  # noqa: F401  (the loss name, the joint adapter, encoder checkpointing)
from nemo.collections.asr.models import EncDecRNNTBPEModel
from nemo.core.config import hydra_runner
from nemo.utils import logging
from nemo.utils.exp_manager import exp_manager


class Progress(pl.Callback):
    """First/last training loss, and one line per epoch (the summary of ``make demo``)."""

    def __init__(self):
        self.losses, self.t0, self.steps = [], None, 0

    def on_train_start(self, trainer, module):
        self.t0 = time.time()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self.losses.append(float(outputs["loss"]))
        self.steps += 1

    def on_train_epoch_end(self, trainer, module):
        n = max(1, trainer.num_training_batches)
        epoch_losses = self.losses[-n:]
        val = trainer.callback_metrics.get("val_wer")
        val_s = f"  val_wer {float(val):.3f}" if val is not None else ""
        print(f"[train] epoch {trainer.current_epoch + 1}/{trainer.max_epochs}  step {trainer.global_step}  "
              f"train_loss {sum(epoch_losses) / max(1, len(epoch_losses)):.3f}{val_s}  "
              f"{time.time() - self.t0:.0f} s", flush=True)

    def summary(self):
        k = min(3, len(self.losses))
        return {"steps": self.steps, "train_seconds": round(time.time() - self.t0, 1),
                "loss_first": self.losses[0] if self.losses else None,
                "loss_last": self.losses[-1] if self.losses else None,
                "loss_start_mean3": sum(self.losses[:k]) / k if k else None,
                "loss_end_mean3": sum(self.losses[-k:]) / k if k else None}


@hydra_runner(config_path="conf", config_name="fastconformer_transducer_samplewise_b1024")
def main(cfg):
    logging.info(f"Hydra config: {OmegaConf.to_yaml(cfg)}")
    progress = Progress()
    trainer = pl.Trainer(**cfg.trainer, callbacks=[progress])
    exp_manager(trainer, cfg.get("exp_manager", None))
    model = EncDecRNNTBPEModel(cfg=cfg.model, trainer=trainer)
    model.maybe_init_from_pretrained_checkpoint(cfg)
    trainer.fit(model)
    if cfg.model.get("test_ds") is not None and cfg.model.test_ds.get("manifest_filepath") is not None:
        if model.prepare_test(trainer):
            trainer.test(model)
    out = cfg.get("output_dir")
    if out:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        model.save_to(str(out / "model.nemo"))
        summary = {"config": cfg.name, "batch_size": cfg.model.train_ds.batch_size, **progress.summary()}
        (out / "train_summary.json").write_text(json.dumps(summary, indent=1))
        print(f"[train] done: {json.dumps(summary)}", flush=True)


if __name__ == "__main__":
    main()
