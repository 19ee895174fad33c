"""The sample-wise options shared by both ESPnet model classes (their ``model_conf`` keys)."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Optional

import torch

from .._toolkits import announce, process_tag
from ..engine import samplewise_rnnt_loss
from .checkpointing import enable_encoder_checkpointing

log = logging.getLogger(__name__)

_first_step_announced = False

#: model_conf keys added by the sample-wise model classes, with their defaults
SAMPLEWISE_KEYS = {
    "fused": None,
    "max_chunk_bytes": None,
    "loss_clamp": -1.0,
    "encoder_checkpointing": False,
    "checkpoint_chunk_size": 16,
    "checkpoint_sliced_layers": False,
}


@dataclass(frozen=True)
class SampleWiseOptions:
    """Checked sample-wise options.

    Attributes:
        fused: the fused output layer (None: automatic, True: required, False: generic path).
        max_chunk_bytes: memory budget of one group of samples in the engine (None: default).
        loss_clamp: gradient clamp of the loss (torchaudio's ``clamp``; -1: off).
        encoder_checkpointing: activation checkpointing of the conformer encoder.
        checkpoint_chunk_size: utterances per recomputed slice of the subsampling front end.
        checkpoint_sliced_layers: also recompute the attention and feed-forward modules of each
            layer in slices of ``checkpoint_chunk_size`` utterances (exact with dropout off).
    """
    fused: Optional[bool] = None
    max_chunk_bytes: Optional[int] = None
    loss_clamp: float = -1.0
    encoder_checkpointing: bool = False
    checkpoint_chunk_size: int = 16
    checkpoint_sliced_layers: bool = False

    def __post_init__(self):
        if self.fused not in (None, True, False):
            raise ValueError(f"model_conf fused must be null, true or false, got {self.fused!r}")
        m = self.max_chunk_bytes
        if m is not None and (isinstance(m, bool) or not isinstance(m, int) or m <= 0):
            raise ValueError(f"model_conf max_chunk_bytes must be null or a positive integer, got {m!r}")
        if isinstance(self.loss_clamp, bool) or not isinstance(self.loss_clamp, (int, float)):
            raise ValueError(f"model_conf loss_clamp must be a number, got {self.loss_clamp!r}")
        if not isinstance(self.encoder_checkpointing, bool):
            raise ValueError(f"model_conf encoder_checkpointing must be true or false, "
                             f"got {self.encoder_checkpointing!r}")
        if not isinstance(self.checkpoint_sliced_layers, bool):
            raise ValueError(f"model_conf checkpoint_sliced_layers must be true or false, "
                             f"got {self.checkpoint_sliced_layers!r}")
        if self.checkpoint_sliced_layers and not self.encoder_checkpointing:
            raise ValueError("model_conf checkpoint_sliced_layers: true needs encoder_checkpointing: true")
        c = self.checkpoint_chunk_size
        if isinstance(c, bool) or not isinstance(c, int) or c < 1:
            raise ValueError(f"model_conf checkpoint_chunk_size must be a positive integer, got {c!r}")

    def apply_checkpointing(self, encoder: Optional[torch.nn.Module]) -> None:
        if self.encoder_checkpointing:
            if encoder is None:
                raise ValueError("model_conf encoder_checkpointing: true needs an encoder")
            enable_encoder_checkpointing(encoder, self.checkpoint_chunk_size, self.checkpoint_sliced_layers)

    def announce(self, model) -> None:
        """The line that says, in this process, which loss and engine options train ``model``."""
        announce(f"ESPnet {type(model).__name__} ({process_tag()}): model: samplewise_transducer, the "
                 f"transducer loss is computed by the sample-wise engine (samplewise_rnnt_loss) with "
                 f"fused={self.fused}, max_chunk_bytes={self.max_chunk_bytes}, loss_clamp={self.loss_clamp}, "
                 f"encoder_checkpointing={self.encoder_checkpointing}; warp-transducer is not used")

    def loss(self, encoder_out, decoder_out, joint, target, t_len, u_len, blank, fastemit_lambda=0.0):
        """ESPnet's transducer loss (mean = sum of per-utterance losses / B), sample-wise."""
        global _first_step_announced
        if not _first_step_announced and torch.is_grad_enabled():
            _first_step_announced = True
            announce(f"ESPnet ({process_tag(training_step=True)}): training step on the sample-wise engine "
                     f"(samplewise_rnnt_loss, B={encoder_out.shape[0]}, fastemit_lambda={float(fastemit_lambda)})")
        return samplewise_rnnt_loss(encoder_out, decoder_out, joint, target, t_len, u_len, blank=blank,
                                    reduction="mean", clamp=float(self.loss_clamp),
                                    fastemit_lambda=float(fastemit_lambda),
                                    max_chunk_bytes=self.max_chunk_bytes, fused=self.fused)
