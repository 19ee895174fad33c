"""NeMo adapter: the sample-wise transducer loss for NeMo's RNN-T models, selected by config.

With the package installed, NeMo's own scripts need no import: the post-import hook
(:mod:`samplewise_rnnt_hook`) imports this package as soon as ``nemo.collections.asr`` is imported. Without
the hook (``SAMPLEWISE_RNNT_AUTOLOAD=0``, ``python -S``, a copy without the ``.pth`` file), import this
package before building the model. Then either

* set ``model.loss.loss_name: samplewise_rnnt`` (engine options in ``model.loss.samplewise_rnnt_kwargs``:
  ``max_chunk_bytes``, ``fused``, ``fastemit_lambda``, ``clamp``); for a TDT model (a joint with
  ``num_extra_outputs`` durations) ``model.loss.loss_name: samplewise_tdt`` (options in
  ``samplewise_tdt_kwargs``, NeMo's ``tdt_kwargs`` keys read from there too), or
* set ``model.joint._target_: samplewise_rnnt.nemo.SampleWiseRNNTJoint``.

The model then trains with :func:`samplewise_rnnt.samplewise_rnnt_loss` (TDT:
:func:`samplewise_rnnt.samplewise_tdt_loss`), whatever ``fuse_loss_wer`` said.
``model.encoder_checkpointing: true`` adds activation checkpointing to the Conformer encoder. Saved
configs name stock NeMo classes only, so ``.nemo`` files restore in plain NeMo (see
:mod:`samplewise_rnnt.nemo.registration`).
"""
from .._toolkits import require

require("nemo", "samplewise_rnnt.nemo")

from .checkpointing import checkpointing_options, disable_encoder_checkpointing, enable_encoder_checkpointing
from .joint import (SAMPLEWISE_KWARGS_DEFAULTS, SAMPLEWISE_TDT_KWARGS_DEFAULTS, SampleWiseRNNTJoint,
                    check_samplewise_kwargs, check_samplewise_tdt_kwargs)
from .registration import (LOSS_NAME, TDT_LOSS_NAME, SampleWiseLogitsLoss, SampleWiseTDTLogitsLoss, activate, install,
                           requested, tdt_loss_kwargs)

install()

__all__ = [
    "SampleWiseRNNTJoint",
    "SampleWiseLogitsLoss",
    "SampleWiseTDTLogitsLoss",
    "activate",
    "install",
    "requested",
    "check_samplewise_kwargs",
    "check_samplewise_tdt_kwargs",
    "tdt_loss_kwargs",
    "SAMPLEWISE_KWARGS_DEFAULTS",
    "SAMPLEWISE_TDT_KWARGS_DEFAULTS",
    "LOSS_NAME",
    "TDT_LOSS_NAME",
    "enable_encoder_checkpointing",
    "disable_encoder_checkpointing",
    "checkpointing_options",
]
