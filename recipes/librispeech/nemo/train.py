"""Train a NeMo BPE transducer; NeMo's speech_to_text_rnnt_bpe.py flow, with samplewise_rnnt imported.

    python train.py --config-path conf --config-name fastconformer_transducer_samplewise_b1024 \
        model.train_ds.manifest_filepath=... model.validation_ds.manifest_filepath=... \
        model.tokenizer.dir=... exp_manager.exp_dir=... [+output_dir=DIR]

Importing ``samplewise_rnnt.nemo`` is the only change a NeMo user needs: it registers the loss name
``samplewise_rnnt`` (``samplewise_tdt`` for TDT models) and the ``encoder_checkpointing`` key. Besides NeMo's own logging this script prints
one progress line per epoch and, with ``+output_dir``, writes ``<output_dir>/model.nemo`` and
``<output_dir>/train_summary.json`` (first and last training loss, steps, seconds).
"""
import json
import resource
import time
from pathlib import Path

import lightning.pytorch as pl
from omegaconf import OmegaConf

import samplewise_rnnt.nemo  # noqa: F401  (the loss name, the joint adapter, encoder checkpointing)
from nemo.collections.asr.models import EncDecRNNTBPEModel
from nemo.core.config import hydra_runner
from nemo.utils import logging
from nemo.utils.exp_manager import exp_manager


def _cpu_seconds():
    """User + system CPU time of this process (all threads)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class Progress(pl.Callback):
    """First/last training loss, one line per epoch and the validation WER after each validation
    (the WER curve of ``make demo``)."""

    def __init__(self):
        self.losses, self.t0, self.c0, self.steps = [], None, None, 0
        self.curve = []  # one point per validation: {"epoch", "step", "val_wer", "seconds", "cpu_seconds"}

    def on_train_start(self, trainer, module):
        self.t0, self.c0 = time.time(), _cpu_seconds()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self.losses.append(float(outputs["loss"]))
        self.steps += 1

    def on_validation_end(self, trainer, module):  # after NeMo logged this validation's val_wer
        val = trainer.callback_metrics.get("val_wer")
        if trainer.sanity_checking or self.t0 is None or val is None:
            return
        point = {"epoch": trainer.current_epoch + 1, "step": trainer.global_step,
                 "val_wer": round(float(val), 4), "seconds": round(time.time() - self.t0, 1),
                 "cpu_seconds": round(_cpu_seconds() - self.c0, 1)}
        self.curve.append(point)
        print(f"[valid] epoch {point['epoch']}  step {point['step']}  dev WER {100 * point['val_wer']:.1f} % "
              f"(greedy)  {point['seconds']:.0f} s (CPU {point['cpu_seconds']:.0f} s)", flush=True)

    def on_train_epoch_end(self, trainer, module):
        n = max(1, trainer.num_training_batches)
        epoch_losses = self.losses[-n:]
        loss = sum(epoch_losses) / max(1, len(epoch_losses))
        print(f"[train] epoch {trainer.current_epoch + 1}/{trainer.max_epochs}  step {trainer.global_step}  "
              f"train_loss {loss:.3f}  {time.time() - self.t0:.0f} s (CPU {_cpu_seconds() - self.c0:.0f} s)",
              flush=True)

    def summary(self):
        k = min(3, len(self.losses))
        return {"steps": self.steps, "train_seconds": round(time.time() - self.t0, 1),
                "train_cpu_seconds": round(_cpu_seconds() - self.c0, 1), "curve": self.curve,
                "loss_first": self.losses[0] if self.losses else None,
                "loss_last": self.losses[-1] if self.losses else None,
                "loss_start_mean3": sum(self.losses[:k]) / k if k else None,
                "loss_end_mean3": sum(self.losses[-k:]) / k if k else None}


@hydra_runner(config_path="conf", config_name="fastconformer_transducer_samplewise_b1024")
def main(cfg):
    logging.info(f"Hydra config: {OmegaConf.to_yaml(cfg)}")
    # one seed for the weights' initialisation, the data order and dropout (`seed=N` on the command line), so that
    # a rerun on the same machine trains the same model
    pl.seed_everything(int(cfg.get("seed", 0)), workers=True)
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
        summary = {"config": cfg.name, "batch_size": cfg.model.train_ds.batch_size,
                   "parameters": sum(p.numel() for p in model.parameters()), **progress.summary()}
        (out / "train_summary.json").write_text(json.dumps(summary, indent=1))
        print(f"[train] done: {json.dumps(summary)}", flush=True)


if __name__ == "__main__":
    main()
