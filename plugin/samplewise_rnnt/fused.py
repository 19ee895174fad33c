"""The fused output layer: the transducer loss of a Linear-act-Linear joint without the logits.

For the joint every toolkit uses,

    logits[b, t, u, :] = W @ dropout(act(f[b, t] + g[b, u])) + bias      (f = lin_enc(enc), g = lin_dec(dec))

the loss needs three numbers per lattice node: the log-sum-exp over the V classes, the blank logit
and the label logit. The fused layer computes its logits one tile of lattice nodes at a time into a
reused buffer (the logits exist only inside the tile: the Cut Cross-Entropy idea applied to the
lattice), as one more way for the sample-wise engine (:mod:`samplewise_rnnt.engine`) to evaluate a
group: the engine's planner, groups, modes (``reduction="none"`` recomputation, no_grad, autocast,
DDP) and loss stages (node scores, lattice, logits gradient: the kernels of ``samplewise_rnnt._C``,
CPU and CUDA) are the generic path's. Per tile, after the lattice of its group:

    d logits = softmax * (blank_flow + (1 + lambda) label_flow) - [blank] blank_flow - [y_u] (1 + lambda) label_flow
    d W += d logits^T h,   d bias += sum d logits,   d h = d logits W,
    d z = act'(z) * (d h * mask),   d f[t] += sum_u d z,   d g[u] += sum_t d z,

written over the tile's logits; ``d f`` and ``d g`` go back through the two projections by autograd,
once per group. Three matrix products per tile (the logits, ``d W``, ``d h``) through torch
(MKL/oneDNN on the CPU, cuBLAS on the GPU); a tile's logits are computed twice only when its
sample is cut into several tiles (the flows need the whole lattice). On the CPU, float32 tanh
runs as one vectorised pass of the extension (``h = tanh(f + g)`` without the sum ``z``).

A tile is a group of whole samples, a block of whole time rows of one sample (``rows x (U_b + 1)``
nodes) or, when one row exceeds the budget, a run of nodes within one row. Its size comes from
``max_chunk_bytes`` (the bytes of one tile's working buffers: logits plus a few joint-sized arrays).

Dropout on ``act(f + g)`` uses a counter-based random mask: the keep decision of element
``(b, t, u, j)`` is a hash of its position in the padded ``[B, T, U+1, J]`` tensor and a 31-bit seed
drawn from torch's default generator at forward, so the recomputation in backward (and
:func:`fused_dropout_mask`, which builds the whole mask for tests) reproduces it exactly, whatever
the tiling.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Optional, Union

import torch

from . import _validate as V_
from .joints import LinearJoint, canonical_activation
from .ops import _ext

__all__ = [
    "fused_rnnt_loss",
    "fused_samplewise_rnnt_loss",
    "linear_joint_spec",
    "LinearJointSpec",
    "fused_dropout_mask",
    "draw_dropout_seed",
    "DEFAULT_CPU_TILE_BYTES",
    "DEFAULT_CUDA_TILE_BYTES",
]

DEFAULT_CPU_TILE_BYTES = 80 << 20
DEFAULT_CUDA_TILE_BYTES = 256 << 20

_M32 = 0xFFFFFFFF
_HASH_MUL = 0x45D9F3B  # < 2**27: products of 32-bit values stay below 2**59 in int64


# ----------------------------------------------------------------------------------------------
# activations: forward into a buffer and derivative in place (name or any elementwise callable)
# ----------------------------------------------------------------------------------------------
def _act_forward(act, z, out):
    """out = act(z) (out may be a strided view); returns out."""
    a = torch.ops.aten
    if act == "tanh":
        return torch.tanh(z, out=out)
    if act == "relu":
        return torch.clamp_min(z, 0, out=out)
    if act == "identity":
        return out.copy_(z)
    if act == "swish":
        return a.silu.out(z, out=out)
    if act == "sigmoid":
        return torch.sigmoid(z, out=out)
    if act == "gelu":
        return a.gelu.out(z, out=out)
    return out.copy_(act(z))


def _act_backward(act, dh, z, h):
    """d z given d h (overwritten), the pre-activation z and the activation's output h."""
    a = torch.ops.aten
    if act == "tanh":
        return a.tanh_backward.grad_input(dh, h, grad_input=dh)
    if act == "relu":
        return a.threshold_backward.grad_input(dh, z, 0, grad_input=dh)
    if act == "identity":
        return dh
    if act == "swish":
        return a.silu_backward.grad_input(dh, z, grad_input=dh)
    if act == "sigmoid":
        return a.sigmoid_backward.grad_input(dh, h, grad_input=dh)
    if act == "gelu":
        return a.gelu_backward.grad_input(dh, z, grad_input=dh)
    with torch.enable_grad():
        zz = z.detach().requires_grad_(True)
        (dz,) = torch.autograd.grad(act(zz), zz, dh)
    return dz


def _check_activation(activation):
    if isinstance(activation, str):
        return canonical_activation(activation)
    if callable(activation):
        return activation
    raise ValueError(f"activation must be a name or an elementwise callable, got {activation!r}")


# ----------------------------------------------------------------------------------------------
# dropout: a counter-based mask, reproducible per element whatever the tiling
# ----------------------------------------------------------------------------------------------
def _hash32(x):
    x = (((x >> 16) ^ x) * _HASH_MUL) & _M32
    x = (((x >> 16) ^ x) * _HASH_MUL) & _M32
    return (x >> 16) ^ x


def _keep_block(seed, b, t0, t1, u0, u1, T, U1, J, p, device, dtype):
    """Scaled dropout mask (0 or 1/(1-p)) of elements (b, t0:t1, u0:u1, :) of a [B, T, U1, J] tensor,
    as a [len(b) * (t1-t0) * (u1-u0), J] tensor of ``dtype``; ``b`` is a sample index or a 1-D tensor
    of them."""
    bt = torch.as_tensor(b, dtype=torch.int64).to(device).view(-1)
    t = torch.arange(t0, t1, device=device, dtype=torch.int64)
    u = torch.arange(u0, u1, device=device, dtype=torch.int64)
    j = torch.arange(J, device=device, dtype=torch.int64)
    idx = (((bt[:, None] * T + t[None, :])[:, :, None, None] * U1 + u[None, None, :, None]) * J
           + j[None, None, None, :])
    salt = _hash32(((idx >> 32) ^ seed) & _M32)
    x = _hash32((idx & _M32) ^ salt)
    thresh = min(int(round(p * 2.0 ** 32)), 2 ** 32)
    keep = (x >= thresh).view(-1, J)
    return keep.to(dtype) * (1.0 / (1.0 - p))


def draw_dropout_seed() -> int:
    """The base seed of a fused dropout mask: one draw from torch's default (CPU) generator."""
    return int(torch.randint(0, 2 ** 31 - 1, (), dtype=torch.int64))


def fused_dropout_mask(seed: int, shape, p: float, device=None, dtype=torch.float32) -> torch.Tensor:
    """The whole scaled dropout mask ``[B, T, U+1, J]`` (values 0 and 1/(1-p)) that
    :func:`fused_rnnt_loss` applies to ``act(f + g)`` with base seed ``seed``.

    :func:`fused_rnnt_loss` draws its seed with :func:`draw_dropout_seed` at forward (only when
    ``dropout > 0``), so ``torch.manual_seed(s); seed = draw_dropout_seed()`` before building the
    mask reproduces the mask of a call made after ``torch.manual_seed(s)``. For tests; memory-hungry.
    """
    B, T, U1, J = (int(s) for s in shape)
    out = torch.empty(B, T, U1, J, device=device, dtype=dtype)
    for b in range(B):
        out[b] = _keep_block(seed, b, 0, T, 0, U1, T, U1, J, p, device, dtype).view(T, U1, J)
    return out


# ----------------------------------------------------------------------------------------------
# the fused evaluator: one more way for the engine (engine.py) to evaluate a group
# ----------------------------------------------------------------------------------------------
def compute_dtype(spec, encoder_out, predictor_out):
    """The dtype the tiles run in: autocast's when it is on, else the promotion of the projections'
    inputs and weights and the output layer's."""
    dev = encoder_out.device.type
    if torch.is_autocast_enabled(dev):
        return torch.get_autocast_dtype(dev)
    dt = torch.promote_types(encoder_out.dtype, predictor_out.dtype)
    for x in (spec.weight, spec.bias, getattr(spec.lin_enc, "weight", None), getattr(spec.lin_dec, "weight", None)):
        if isinstance(x, torch.Tensor):
            dt = torch.promote_types(dt, x.dtype)
    return dt


class FusedEvaluator:
    """A group of the engine's loop through a Linear-act-Linear joint, without a logits tensor beyond
    one tile: the group's projections ``f = lin_enc(e)``, ``g = lin_dec(p)`` with autograd; per tile
    ``z = f + g``, ``h = act(z)`` (dropout: ``h * mask``, a counter-based mask), ``logits = h W^T + b``
    into a reused buffer; backward by hand (``d W += G^T h``, ``d b += sum G``, ``d h = G W``,
    ``d z = act'(z) d h``, ``d f = sum_u d z``, ``d g = sum_t d z``) and by autograd through the two
    projections. The three matrix products are :meth:`forward_product` and :meth:`backward_products`
    (the benchmark's floor times exactly these).
    """

    uses_rng = False  # the dropout mask is a hash of the element's position and a seed drawn once

    def __init__(self, spec: "LinearJointSpec", cfg, T_full, U1_full):
        self.spec, self.kernels = spec, cfg.kernels
        self.cdt = cfg.logits_dtype
        self.acc = torch.float64 if self.cdt == torch.float64 else torch.float32
        self.W = spec.weight.detach().to(self.cdt).contiguous()
        self.b = spec.bias.detach().to(self.cdt) if spec.bias is not None else None
        self.V, self.J = self.W.shape
        self.act, self.p = spec.activation, spec.dropout
        self.seed = draw_dropout_seed() if self.p > 0 else 0  # before anything else draws from the RNG
        self.T_full, self.U1_full = T_full, U1_full
        # tanh of float32 on the CPU: h = tanh(f + g) in one vectorised pass of the extension (no z: tanh's
        # derivative needs only h)
        self.tanh_kernel = self.act == "tanh" and self.cdt == torch.float32 and self.W.device.type == "cpu"
        item = torch.empty((), dtype=self.cdt).element_size()
        # per node: the logits, z (not with the tanh kernel), h, d h and one joint-sized temporary (the
        # activation's derivative, the sums); for dropout also h times the mask, the mask and the hash's int64
        # temporaries (40 B / element)
        joint_sized = 3 if self.tanh_kernel else 4
        self.node_bytes_grad = self.V * item + self.J * (joint_sized * item + (2 * item + 40 if self.p > 0 else 0))
        self.node_bytes_loss = self.node_bytes_grad
        self._bufs = {}

    def forward_product(self, h, out):
        """``out = h W^T + b`` (the tile's logits)."""
        if self.b is None:
            return torch.mm(h, self.W.t(), out=out)
        return torch.addmm(self.b, h, self.W.t(), out=out)

    def backward_products(self, G, h, acc, dh):
        """``acc["W"] += G^T h``, ``acc["b"] += sum_n G`` (when they are wanted) and, with ``dh`` given,
        ``dh = G W``; returns ``dh``."""
        if acc["W"] is not None:
            if self.cdt == self.acc:
                acc["W"].addmm_(G.t(), h)
            else:
                acc["W"].add_(torch.mm(G.t(), h))
        if acc["b"] is not None:
            acc["b"].add_(G.sum(0, dtype=self.acc))
        return None if dh is None else torch.mm(G, self.W, out=dh)

    @staticmethod
    def default_budget(device):
        return DEFAULT_CUDA_TILE_BYTES if device.type == "cuda" else DEFAULT_CPU_TILE_BYTES

    def release(self):
        """Drop the work buffers (called when a group loop ends: the evaluator lives on with the autograd
        graph, which a training loop may keep until after the optimizer step)."""
        self._bufs = {}

    def _buf(self, name, n, cols):
        b = self._bufs.get(name)
        if b is None or b.shape[0] < n:
            b = torch.empty(n, cols, dtype=self.cdt, device=self.W.device)
            _ext().advise_hugepages(b)  # touched first by the tile: 2 MiB pages (CPU; a no-op elsewhere)
            self._bufs[name] = b
        return b[:n]

    def prepare(self, e, p, want):
        spec = self.spec
        name = spec.joint if isinstance(spec.joint, str) else V_.callable_name(spec.joint)
        projected = []
        with torch.set_grad_enabled(want):
            for what, x, lin in (("encoder_out", e, spec.lin_enc), ("predictor_out", p, spec.lin_dec)):
                try:
                    projected.append(lin(x))
                except (RuntimeError, TypeError) as exc:
                    raise ValueError(f"the joint ({name}) failed to project {what} (shape {tuple(x.shape)}, dtype "
                                     f"{str(x.dtype).replace('torch.', '')}): {exc}") from exc
        f, g = projected
        for what, x, y in (("encoder_out", e, f), ("predictor_out", p, g)):
            if y.shape != x.shape[:2] + (self.J,):
                raise ValueError(f"the joint ({name}) projected {what} {tuple(x.shape)} to {tuple(y.shape)}; "
                                 f"expected {tuple(x.shape[:2]) + (self.J,)} (J = the output layer's width)")
        with torch.autocast(e.device.type, enabled=False):
            return f, g, f.detach().to(self.cdt).contiguous(), g.detach().to(self.cdt).contiguous()

    def logits(self, prep, data, tile, want):
        _, _, fd, gd = prep
        b0, b1, t0, t1, u0, u1 = tile
        nb, nt, nu, J = b1 - b0, t1 - t0, u1 - u0, self.J
        n = nb * nt * nu
        with torch.no_grad(), torch.autocast(fd.device.type, enabled=False):
            if self.tanh_kernel:
                z, h = None, self._buf("h", n, J)
                _ext().joint_tanh(fd[b0:b1, t0:t1], gd[b0:b1, u0:u1], h)
            else:
                z = self._buf("z", n, J)
                torch.add(fd[b0:b1, t0:t1, None, :], gd[b0:b1, None, u0:u1, :], out=z.view(nb, nt, nu, J))
                h = _act_forward(self.act, z, self._buf("h", n, J))
            if self.p > 0:
                keep = _keep_block(self.seed, data.idx[b0:b1], t0, t1, u0, u1, self.T_full, self.U1_full, J, self.p,
                                   h.device, h.dtype)
                hd = torch.mul(h, keep, out=self._buf("hd", n, J))
            else:
                hd, keep = h, None
            x = self.forward_product(hd, self._buf("x", n, self.V))
        return x, (z, h, hd, keep)

    @staticmethod
    def differentiable(x):
        return True

    def start(self, prep, inputs):
        f, g = prep[0], prep[1]
        W, b = self.spec.weight, self.spec.bias
        acc = self.weight_accumulators(any(x is W for x in inputs), b is not None and any(x is b for x in inputs))
        acc["f"] = self._zeros(f.shape, f.requires_grad)
        acc["g"] = self._zeros(g.shape, g.requires_grad)
        return acc

    def _zeros(self, shape, wanted):
        return torch.zeros(shape, dtype=self.acc, device=self.W.device) if wanted else None

    def weight_accumulators(self, want_w, want_b):
        """What :meth:`backward_products` accumulates into: ``{"W": [V, J] or None, "b": [V] or None}`` in the
        accumulation dtype."""
        return {"W": self._zeros(self.W.shape, want_w), "b": self._zeros(self.V, want_b and self.b is not None)}

    def backprop(self, prep, data, tile, x, x2d, state, scores, flows, tile_layout, scale, acc):
        z, h, hd, keep = state
        b0, b1, t0, t1, u0, u1 = tile
        with torch.no_grad(), torch.autocast(x.device.type, enabled=False):
            self.kernels.grad(x2d, x2d, scores, flows, tile_layout, scale)  # G, in place, times each weight
            want_h = acc["f"] is not None or acc["g"] is not None
            dh = self.backward_products(x2d, hd, acc, self._buf("dh", x2d.shape[0], self.J) if want_h else None)
            if dh is None:
                return
            if keep is not None:
                dh.mul_(keep)
            dz = _act_backward(self.act, dh, z, h).view(b1 - b0, t1 - t0, u1 - u0, self.J)
            if acc["f"] is not None:
                acc["f"][b0:b1, t0:t1].add_(dz.sum(2, dtype=self.acc))
            if acc["g"] is not None:
                acc["g"][b0:b1, u0:u1].add_(dz.sum(1, dtype=self.acc))

    def finish(self, prep, inputs, acc):
        f, g = prep[0], prep[1]
        W, bias = self.spec.weight, self.spec.bias
        out = [None] * len(inputs)
        for k, x in enumerate(inputs):
            if x is W:
                out[k] = acc["W"]
            elif bias is not None and x is bias:
                out[k] = acc["b"]
        roots = [(y, acc[key]) for y, key in ((f, "f"), (g, "g")) if acc[key] is not None]
        rest = [k for k, x in enumerate(inputs) if out[k] is None and not (x is W or (bias is not None and x is bias))]
        if roots and rest:
            gs = torch.autograd.grad([y for y, _ in roots], [inputs[k] for k in rest],
                                     [d.to(y.dtype) for y, d in roots], allow_unused=True)
            for k, gk in zip(rest, gs):
                out[k] = gk
        return out


def fused_rnnt_loss(enc_proj, pred_proj, weight, bias, targets, encoder_lengths, target_lengths, *, activation="tanh",
                    dropout=0.0, blank=-1, reduction="mean", clamp=-1.0, fastemit_lambda=0.0, max_chunk_bytes=None):
    """Exact RNN-T loss of ``logits = weight @ dropout(act(enc_proj[:, :, None] + pred_proj[:, None])) + bias``
    without materialising the logits.

    Args:
        enc_proj: ``[B, T, J]`` projected encoder output ``f`` (float32, float16, bfloat16, float64).
        pred_proj: ``[B, U+1, J]`` projected predictor output ``g``.
        weight: ``[V, J]`` output layer weight; ``bias``: ``[V]`` or ``None``.
        targets: ``[B, U]`` int32/int64; encoder_lengths ``[B]`` (``1 <= T_b <= T``);
            target_lengths ``[B]`` (``0 <= U_b <= U``).
        activation: ``"tanh"``, ``"relu"``, ``"identity"``/``"linear"``, ``"swish"``/``"silu"``,
            ``"sigmoid"``, ``"gelu"``, or an elementwise callable (differentiated by autograd).
        dropout: probability of dropping an element of ``act(f + g)`` (kept ones are scaled by
            ``1 / (1 - dropout)``); the mask is :func:`fused_dropout_mask` of a seed drawn from
            torch's default generator. Pass 0 in evaluation.
        blank, reduction, clamp, fastemit_lambda: as in :func:`samplewise_rnnt.rnnt_loss`.
        max_chunk_bytes: working bytes of one group of samples (default 80 MiB on the CPU, 256 MiB
            on CUDA; any positive number; a sample above it is cut into tiles of time rows;
            ``float('inf')``: the whole batch as one tile).

    Options after the tensors are keyword only; ``blank`` defaults to ``-1`` (the last class).

    The four tensors get gradients through autograd (accumulated in fp32, fp64 for fp64). Under
    autocast the tiles run in the autocast dtype. Returns the reduced loss (fp32; fp64 for fp64).
    Computed by the sample-wise engine's group loop (:mod:`samplewise_rnnt.engine`) with the fused
    evaluator, projections being the identity.
    """
    V_.check_reduction(reduction)
    clamp, fastemit_lambda = V_.check_scalars(clamp, fastemit_lambda)
    V_.check_frames_and_steps("enc_proj", enc_proj, "pred_proj", pred_proj)
    dev = enc_proj.device
    V_.check_tensor("weight", weight, 2, V_.FLOAT_DTYPES, dev, device_of="enc_proj")
    B, T, J = enc_proj.shape
    if pred_proj.shape[2] != J:
        raise ValueError(f"pred_proj has joint dimension {pred_proj.shape[2]} but enc_proj has {J}")
    if weight.shape[1] != J or weight.shape[0] < 1:
        raise ValueError(f"weight must have shape [V, {J}], got {tuple(weight.shape)}")
    Vn = weight.shape[0]
    if bias is not None:
        V_.check_tensor("bias", bias, 1, V_.FLOAT_DTYPES, dev, device_of="enc_proj")
        if bias.shape[0] != Vn:
            raise ValueError(f"bias has {bias.shape[0]} entries but weight has V={Vn} rows")
    act = _check_activation(activation)
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be a number in [0, 1), got {dropout!r}")
    budget = V_.check_budget(max_chunk_bytes)
    blank = V_.normalize_blank(blank, Vn)
    tg, tl, ul = V_.check_lengths_and_targets(targets, encoder_lengths, target_lengths, B, T,
                                              pred_proj.shape[1] - 1, Vn, blank, dev,
                                              length_name="encoder_lengths")
    from . import engine as E_

    spec = LinearJointSpec(_identity, _identity, weight, bias, act, float(dropout), "fused_rnnt_loss")
    cfg = E_._Cfg(blank, reduction, clamp, fastemit_lambda, budget, Vn, compute_dtype(spec, enc_proj, pred_proj),
                  True, E_._autocast_state(dev), frozenset(), E_._RNNTKernels(blank, clamp, fastemit_lambda))
    cfg.evaluator = FusedEvaluator(spec, cfg, T, pred_proj.shape[1])
    params = [x for x in (weight, bias) if x is not None and x.requires_grad]
    return E_._engine(enc_proj, pred_proj, None, params, tg, tl, ul, cfg)


def _identity(x):
    return x


# ----------------------------------------------------------------------------------------------
# recognising a Linear-act-Linear joint
# ----------------------------------------------------------------------------------------------
@dataclasses.dataclass
class LinearJointSpec:
    """What the fused path needs from a joint: the two projections (applied with autograd), the
    output layer's weight [V, J] and bias [V] (or None), the activation (canonical name or an
    elementwise callable) and the dropout probability in effect (0 in eval mode)."""

    lin_enc: Callable
    lin_dec: Callable
    weight: torch.Tensor
    bias: Optional[torch.Tensor]
    activation: Union[str, Callable]
    dropout: float
    joint: object = None  # the joint it came from (for messages)


def _activation_of(module):
    """Canonical name of an activation module, or the module itself (elementwise fallback)."""
    nn = torch.nn
    if isinstance(module, nn.Tanh):
        return "tanh"
    if isinstance(module, nn.ReLU):
        return "relu"
    if isinstance(module, nn.Identity):
        return "identity"
    if isinstance(module, nn.SiLU):
        return "swish"
    if isinstance(module, nn.Sigmoid):
        return "sigmoid"
    if isinstance(module, nn.GELU) and module.approximate == "none":
        return "gelu"
    name, mod = type(module).__name__, type(module).__module__
    if name == "Swish" and mod.startswith("espnet.nets.pytorch_backend"):
        return "swish"  # x * sigmoid(x)
    if name == "Swish" and mod.startswith("espnet2.asr_transducer") and getattr(module, "beta", 1.0) <= 1.0:
        return "swish"  # beta <= 1 is the standard swish
    return module


def _find_base(obj, name, module_prefix):
    for cls in type(obj).__mro__:
        if cls.__name__ == name and cls.__module__.startswith(module_prefix):
            return cls
    return None


def _dropout_p(module):
    return float(module.p) if module.training else 0.0


def linear_joint_spec(joint) -> Optional[LinearJointSpec]:
    """The Linear-act-Linear structure of ``joint``, or None when it has none the fused path can use.

    Recognised: :class:`samplewise_rnnt.LinearJoint`; ESPnet's ``JointNetwork``
    (``espnet2.asr_transducer.joint_network`` and ``espnet.nets.pytorch_backend.transducer.joint_network``)
    whose ``forward`` is not overridden; NeMo's ``RNNTJoint`` (``enc``, ``pred``, ``joint_net`` =
    Sequential(activation, [Dropout], Linear)) whose ``joint_after_projection`` is not overridden, with
    no enabled adapters, temperature 1 and no decoder masking in training.
    """
    Linear = torch.nn.Linear
    if isinstance(joint, LinearJoint) and type(joint).forward is LinearJoint.forward:
        return LinearJointSpec(joint.lin_enc, joint.lin_dec, joint.lin_out.weight, joint.lin_out.bias,
                               joint.activation, _dropout_p(joint.dropout))
    for prefix in ("espnet2.asr_transducer", "espnet.nets.pytorch_backend.transducer"):
        base = _find_base(joint, "JointNetwork", prefix)
        if base is not None:
            if type(joint).forward is not base.forward or not isinstance(getattr(joint, "lin_out", None), Linear):
                return None
            return LinearJointSpec(joint.lin_enc, joint.lin_dec, joint.lin_out.weight, joint.lin_out.bias,
                                   _activation_of(joint.joint_activation), 0.0)
    base = _find_base(joint, "RNNTJoint", "nemo.collections.asr")
    if base is not None and type(joint).joint_after_projection is not base.joint_after_projection:
        return None
    enc, pred, net = getattr(joint, "enc", None), getattr(joint, "pred", None), getattr(joint, "joint_net", None)
    if not (isinstance(enc, Linear) and isinstance(pred, Linear) and isinstance(net, torch.nn.Sequential)):
        return None
    layers = list(net)
    if len(layers) not in (2, 3) or not isinstance(layers[-1], Linear):
        return None
    p = 0.0
    if len(layers) == 3:
        if not isinstance(layers[1], torch.nn.Dropout):
            return None
        p = _dropout_p(layers[1])
    if getattr(joint, "training", False) and getattr(joint, "masking_prob", -1.0) > 0:
        return None
    if getattr(joint, "temperature", 1.0) != 1.0:
        return None
    is_adapter = getattr(joint, "is_adapter_available", None)
    if callable(is_adapter) and is_adapter():
        return None
    return LinearJointSpec(enc, pred, layers[-1].weight, layers[-1].bias, _activation_of(layers[0]), p)


def checked_joint_spec(joint, encoder_out, predictor_out) -> LinearJointSpec:
    """:func:`linear_joint_spec` of ``joint``, checked against the two inputs (widths, devices); a
    ValueError naming the joint's type when it has no structure the fused path can use."""
    spec = linear_joint_spec(joint)
    if spec is None:
        raise ValueError(f"joint of type {V_.callable_name(joint)} has no Linear-act-Linear "
                         "structure the fused output layer can use (LinearJoint, ESPnet's JointNetwork or NeMo's "
                         "RNNTJoint); use fused=False")
    for name, x, lin in (("encoder_out", encoder_out, spec.lin_enc), ("predictor_out", predictor_out, spec.lin_dec)):
        width = getattr(lin, "in_features", None)
        if width is not None and x.shape[-1] != width:
            raise ValueError(f"{name} has width {x.shape[-1]} (shape {tuple(x.shape)}) but the joint "
                             f"({V_.callable_name(joint)}) expects {width}")
        w = getattr(lin, "weight", None)
        if isinstance(w, torch.Tensor) and w.device != x.device:
            raise ValueError(f"the joint ({V_.callable_name(joint)}) is on {w.device} but "
                             f"{name} is on {x.device}; move the joint to {x.device}")
    if spec.weight.device != encoder_out.device:
        raise ValueError(f"the joint ({V_.callable_name(joint)}) is on {spec.weight.device} but encoder_out is on "
                         f"{encoder_out.device}; move the joint to {encoder_out.device}")
    return dataclasses.replace(spec, joint=joint)


def fused_samplewise_rnnt_loss(encoder_out, predictor_out, joint, targets, encoder_lengths, target_lengths, *,
                               blank=-1, reduction="mean", clamp=-1.0, fastemit_lambda=0.0, max_chunk_bytes=None):
    """:func:`samplewise_rnnt.samplewise_rnnt_loss` with ``fused=True``: a Linear-act-Linear joint,
    without the logits. Raises ValueError naming the joint's type when :func:`linear_joint_spec` does
    not recognise it."""
    from .engine import samplewise_rnnt_loss

    return samplewise_rnnt_loss(encoder_out, predictor_out, joint, targets, encoder_lengths, target_lengths,
                                blank=blank, reduction=reduction, clamp=clamp, fastemit_lambda=fastemit_lambda,
                                max_chunk_bytes=max_chunk_bytes, fused=True)
