"""samplewise-rnnt: transducer (RNN-T) training whose loss memory does not grow with the batch.

Public API (README.md has examples):

* :func:`rnnt_loss`, :class:`RNNTLoss`: the exact loss on logits ``[B, T, U+1, V]`` (CPU and CUDA
  kernels), a drop-in for torchaudio's (same signature: ``blank=-1, clamp=-1, reduction="mean",
  fused_log_softmax=True``, then keyword-only ``fastemit_lambda``).
* :func:`samplewise_rnnt_loss`, :class:`SampleWiseRNNTLoss`: the sample-wise method (joint, loss and
  gradients one group of samples at a time).
* :func:`rnnt_loss_packed`: the same on logits without padding.
* :func:`tdt_loss`, :class:`TDTLoss`, :func:`tdt_loss_packed`: the exact TDT (token-and-duration
  transducer) loss on NeMo's logits ``[B, T, U+1, V1 + D]``, as NeMo's numba loss defines it.
* :func:`samplewise_tdt_loss`, :class:`SampleWiseTDTLoss`: the TDT loss by the sample-wise engine (and
  the fused output layer for Linear-act-Linear joints).
* :func:`cuda_built`: whether the CUDA kernels are compiled in.
* :func:`fused_rnnt_loss`, :class:`LinearJoint`: the fused output layer (no logits tensor at all).
"""
from .engine import SampleWiseRNNTLoss, SampleWiseTDTLoss, samplewise_rnnt_loss, samplewise_tdt_loss
from .fused import fused_rnnt_loss
from .joints import LinearJoint
from .ops import RNNTLoss, cuda_built, rnnt_lattice, rnnt_loss, rnnt_loss_and_grad, rnnt_loss_packed
from .tdt import TDTLoss, tdt_loss, tdt_loss_packed

__version__ = "0.1.0"

__all__ = [
    "rnnt_loss",
    "RNNTLoss",
    "rnnt_loss_packed",
    "rnnt_loss_and_grad",
    "rnnt_lattice",
    "tdt_loss",
    "TDTLoss",
    "tdt_loss_packed",
    "cuda_built",
    "samplewise_rnnt_loss",
    "SampleWiseRNNTLoss",
    "samplewise_tdt_loss",
    "SampleWiseTDTLoss",
    "fused_rnnt_loss",
    "LinearJoint",
]
