"""Joint networks with the structure the fused output layer understands.

:class:`LinearJoint` computes, like ESPnet's ``JointNetwork``::

    logits = lin_out(dropout(act(lin_enc(enc) + lin_dec(dec))))

with ``enc`` ``[..., T, 1, He]`` and ``dec`` ``[..., 1, U+1, Hp]`` broadcasting to
``[..., T, U+1, V]``. The dropout sits after the activation, where NeMo's ``RNNTJoint`` puts it.
:func:`samplewise_rnnt.samplewise_rnnt_loss` recognises this structure and can then compute the
loss without ever writing the ``[T, U+1, V]`` logits (see :mod:`samplewise_rnnt.fused`).
"""
from __future__ import annotations

import torch

__all__ = ["LinearJoint", "ACTIVATIONS", "make_activation"]

# name -> canonical name (the fused path implements the canonical ones with hand-written derivatives)
ACTIVATIONS = {
    "tanh": "tanh",
    "relu": "relu",
    "identity": "identity",
    "linear": "identity",
    "swish": "swish",
    "silu": "swish",
    "sigmoid": "sigmoid",
    "gelu": "gelu",
}


def canonical_activation(name) -> str:
    """The canonical name of an activation name; ValueError naming the bad value otherwise."""
    if not isinstance(name, str) or name.lower() not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {', '.join(map(repr, ACTIVATIONS))}; got {name!r}")
    return ACTIVATIONS[name.lower()]


def make_activation(name: str) -> torch.nn.Module:
    """The torch module of an activation name (``swish`` is ``x * sigmoid(x)``, i.e. SiLU)."""
    return {
        "tanh": torch.nn.Tanh,
        "relu": torch.nn.ReLU,
        "identity": torch.nn.Identity,
        "swish": torch.nn.SiLU,
        "sigmoid": torch.nn.Sigmoid,
        "gelu": torch.nn.GELU,
    }[canonical_activation(name)]()


class LinearJoint(torch.nn.Module):
    """Transducer joint ``lin_out(dropout(act(lin_enc(enc) + lin_dec(dec))))``.

    Args:
        encoder_dim: size of the encoder output (He).
        predictor_dim: size of the predictor output (Hp).
        joint_dim: size of the joint space (J).
        vocab_size: number of output classes V, blank included.
        activation: ``"tanh"`` (default), ``"relu"``, ``"identity"`` (alias ``"linear"``),
            ``"swish"`` (alias ``"silu"``), ``"sigmoid"`` or ``"gelu"``.
        dropout: dropout probability on the activation's output (training mode only).

    ``forward(enc, dec)`` takes ``enc`` ``[..., T, 1, He]`` and ``dec`` ``[..., 1, U+1, Hp]``
    (ESPnet's convention) and returns logits ``[..., T, U+1, V]``.
    """

    def __init__(self, encoder_dim: int, predictor_dim: int, joint_dim: int, vocab_size: int,
                 activation: str = "tanh", dropout: float = 0.0):
        super().__init__()
        for name, val in (("encoder_dim", encoder_dim), ("predictor_dim", predictor_dim), ("joint_dim", joint_dim),
                          ("vocab_size", vocab_size)):
            if isinstance(val, bool) or not isinstance(val, int) or val < 1:
                raise ValueError(f"{name} must be a positive int, got {val!r}")
        if not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be a number in [0, 1), got {dropout!r}")
        self.activation = canonical_activation(activation)
        self.lin_enc = torch.nn.Linear(encoder_dim, joint_dim)
        self.lin_dec = torch.nn.Linear(predictor_dim, joint_dim)
        self.lin_out = torch.nn.Linear(joint_dim, vocab_size)
        self.joint_activation = make_activation(self.activation)
        self.dropout = torch.nn.Dropout(float(dropout))

    def forward(self, enc: torch.Tensor, dec: torch.Tensor) -> torch.Tensor:
        return self.lin_out(self.dropout(self.joint_activation(self.lin_enc(enc) + self.lin_dec(dec))))

    def extra_repr(self) -> str:
        return f"activation={self.activation!r}"
