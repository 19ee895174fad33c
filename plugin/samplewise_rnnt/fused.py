"""The fused output layer: the transducer loss of a Linear-act-Linear joint without the logits.

For the joint every toolkit uses,

    logits[b, t, u, :] = W @ dropout(act(f[b, t] + g[b, u])) + bias      (f = lin_enc(enc), g = lin_dec(dec))

the loss needs three numbers per lattice node: the log-sum-exp over the V classes, the blank logit
and the label logit. :func:`fused_rnnt_loss` computes exactly those, one tile of lattice nodes at a
time (the logits exist only inside the tile: the Cut Cross-Entropy idea applied to the lattice),
runs the lattice recursion once for the whole batch, and in backward recomputes each tile's logits
and turns them into gradients in place:

    d logits = softmax * (blank_flow + (1 + lambda) label_flow) - [blank] blank_flow - [y_u] (1 + lambda) label_flow
    d W += d logits^T h,   d bias += sum d logits,   d h = d logits W,
    d z = act'(z) * (d h * mask),   d f[t] += sum_u d z,   d g[u] += sum_t d z.

The per-tile work reuses the kernels of ``samplewise_rnnt._C`` (``node_scores`` in forward,
``logits_grad`` in backward; CPU and CUDA) on a tile-sized layout; the matrix products go through
torch (MKL/oneDNN on the CPU, cuBLAS on the GPU).

Why the gradients are computed in backward and not in forward: the forward keeps only the
per-node log-sum-exp and the two flows (3 numbers per node, O(B*T*U)), so ``reduction="none"`` is
exact for any ``grad_output`` with one code path, a forward whose result is never differentiated
costs one pass instead of two, and the work is the same as computing the gradients in forward
(a tile's logits must be computed twice either way, because the flows need the whole lattice).

A tile is a block of whole time rows of one sample (``rows x (U_b + 1)`` nodes) or, when one row
exceeds the budget, a run of nodes within one row. Its size comes from ``max_chunk_bytes`` (the
bytes of one tile's working buffers: logits plus a few joint-sized arrays).

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
from .ops import _ext, _sample_weights
from .reference import reduce_costs

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

DEFAULT_CPU_TILE_BYTES = 64 << 20
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
    as a [(t1-t0) * (u1-u0), J] tensor of ``dtype``."""
    t = torch.arange(t0, t1, device=device, dtype=torch.int64)
    u = torch.arange(u0, u1, device=device, dtype=torch.int64)
    j = torch.arange(J, device=device, dtype=torch.int64)
    idx = ((b * T + t)[:, None, None] * U1 + u[None, :, None]) * J + j[None, None, :]
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
# the tiling
# ----------------------------------------------------------------------------------------------
def _tiles(T_b, U1, node_bytes, budget):
    """Tiles (t0, t1, u0, u1) of one sample's lattice: whole rows, or runs within a row."""
    row = U1 * node_bytes
    if row <= budget:
        rows = min(T_b, max(1, budget // row))
        n = -(-T_b // rows)
        rows = -(-T_b // n)  # balance the tiles
        return [(t0, min(T_b, t0 + rows), 0, U1) for t0 in range(0, T_b, rows)]
    cols = max(1, budget // node_bytes)
    n = -(-U1 // cols)
    cols = -(-U1 // n)
    return [(t, t + 1, u0, min(U1, u0 + cols)) for t in range(T_b) for u0 in range(0, U1, cols)]


class _Layouts:
    """Cache of the one-sample layouts of the tiles (offsets, strides, nrows, T, U) on a device."""

    def __init__(self, device):
        self.device, self.cache = device, {}

    def get(self, nt, nu, u_rem):
        """(offsets, strides, nrows, T, U) of a tile of nt x nu nodes, and its grid maxima (nt, nu)."""
        key = (nt, nu, u_rem)
        if key not in self.cache:
            v = torch.tensor([[0], [nu], [nt], [nt], [u_rem]], dtype=torch.int64).to(self.device)
            self.cache[key] = tuple(x.contiguous() for x in v)
        return self.cache[key], (nt, nu)


class _Ctx:
    """Everything the tile loop needs, for forward and backward.

    The bias is folded into the matrix products: ``hb = [hd, 1]`` ([n, J+1]) and ``Wb = [W, bias]``
    ([V, J+1]), so ``logits = hb Wb^T`` and ``[d W, d bias] = d logits^T hb`` are one product each.
    """

    def __init__(self, f, g, W, bias, tg, tl, ul, act, p, seed, budget, blank, acc):
        self.f, self.g, self.has_bias = f, g, bias is not None
        self.Wb = torch.cat([W, bias[:, None]], 1) if self.has_bias else W
        self.W = self.Wb[:, :W.shape[1]]
        self.tg, self.act, self.p, self.seed, self.blank, self.acc = tg, act, p, seed, blank, acc
        self.B, self.T, self.J = f.shape
        self.U1 = g.shape[1]
        self.V = W.shape[0]
        self.T_all, self.U_all = tl.tolist(), ul.tolist()
        item = f.element_size()
        self.node_bytes = self.V * item + self.J * (4 * item + (40 if p > 0 else 0))
        self.plan = [_tiles(self.T_all[b], self.U_all[b] + 1, self.node_bytes, budget) for b in range(self.B)]
        sizes = [T_b * (U_b + 1) for T_b, U_b in zip(self.T_all, self.U_all)]
        self.starts, s = [], 0
        for n in sizes:
            self.starts.append(s)
            s += n
        self.N = s
        self.layouts = _Layouts(f.device)
        nmax = max((t1 - t0) * (u1 - u0) for tiles in self.plan for (t0, t1, u0, u1) in tiles)
        dev, dt = f.device, f.dtype
        self.lbuf = torch.empty(nmax, self.V, dtype=dt, device=dev)
        self.zbuf = torch.empty(nmax, self.J, dtype=dt, device=dev)
        self.hbuf = torch.empty(nmax, self.J + int(self.has_bias), dtype=dt, device=dev)
        if self.has_bias:
            self.hbuf[:, self.J] = 1
        self.h2buf = torch.empty(nmax, self.J, dtype=dt, device=dev) if p > 0 else None
        self.dhbuf = None

    def tiles(self, b):
        """Per tile of sample b: (t0, t1, u0, u1, node slice, layout, grid maxima, targets)."""
        U_b = self.U_all[b]
        for (t0, t1, u0, u1) in self.plan[b]:
            nt, nu = t1 - t0, u1 - u0
            s = self.starts[b] + t0 * (U_b + 1) + u0
            lay, maxima = self.layouts.get(nt, nu, U_b - u0)
            yield t0, t1, u0, u1, slice(s, s + nt * nu), lay, maxima, self.tg[b:b + 1, min(u0, U_b):U_b]

    def hidden(self, b, t0, t1, u0, u1):
        """z = f + g, h = act(z), hb = [h * mask, 1] ([n, J(+1)]) and the scaled mask (or None)."""
        nt, nu, J = t1 - t0, u1 - u0, self.J
        n = nt * nu
        z = self.zbuf[:n]
        torch.add(self.f[b, t0:t1, None, :], self.g[b, None, u0:u1, :], out=z.view(nt, nu, J))
        hb = self.hbuf[:n]
        if self.p > 0:
            h = _act_forward(self.act, z, self.h2buf[:n])
            keep = _keep_block(self.seed, b, t0, t1, u0, u1, self.T, self.U1, J, self.p, z.device, z.dtype)
            torch.mul(h, keep, out=hb[:, :J])
        else:
            h = _act_forward(self.act, z, hb[:, :J])
            keep = None
        return z, h, hb, keep

    def logits(self, hb):
        return torch.mm(hb, self.Wb.t(), out=self.lbuf[:hb.shape[0]])

    def dh(self, G):
        if self.dhbuf is None:
            self.dhbuf = torch.empty(self.lbuf.shape[0], self.J, dtype=G.dtype, device=G.device)
        return torch.mm(G, self.W, out=self.dhbuf[:G.shape[0]])


def _forward_scores(c: _Ctx):
    C = _ext()
    lse = torch.empty(c.N, dtype=c.acc, device=c.f.device)
    lpb = torch.empty_like(lse)
    lpl = torch.empty_like(lse)
    for b in range(c.B):
        for t0, t1, u0, u1, sl, lay, mx, tgt in c.tiles(b):
            _, _, hb, _ = c.hidden(b, t0, t1, u0, u1)
            x = c.logits(hb)
            l, pb, pl = C.node_scores(x, *lay, tgt.contiguous(), c.blank, *mx)
            lse[sl], lpb[sl], lpl[sl] = l, pb, pl
    return lse, lpb, lpl


def _backward_grads(c: _Ctx, lse, bf, lf, w, clamp, fastemit_lambda, need):
    """Gradients (acc dtype) of sum_b w[b] * cost_b w.r.t. f, g, W, bias (need: which of them)."""
    C = _ext()
    dev, acc = c.f.device, c.acc
    gf = torch.zeros(c.B, c.T, c.J, dtype=acc, device=dev) if need[0] else None
    gg = torch.zeros(c.B, c.U1, c.J, dtype=acc, device=dev) if need[1] else None
    gWb = torch.zeros(c.Wb.shape, dtype=acc, device=dev) if need[2] or (need[3] and c.has_bias) else None
    need_h = need[0] or need[1]
    direct = c.f.dtype == acc
    no_scale = torch.empty(0, device=dev)
    w_all = w.tolist()
    for b in range(c.B):
        wb = w_all[b]
        if wb == 0.0:
            continue
        for t0, t1, u0, u1, sl, lay, mx, tgt in c.tiles(b):
            z, h, hb, keep = c.hidden(b, t0, t1, u0, u1)
            G = c.logits(hb)
            C.logits_grad(G, G, lse[sl], bf[sl], lf[sl], *lay, tgt.contiguous(), c.blank, clamp, fastemit_lambda,
                          no_scale, *mx)
            if gWb is not None:
                if direct:
                    gWb.addmm_(G.t(), hb, alpha=wb)
                else:
                    gWb.add_(torch.mm(G.t(), hb), alpha=wb)
            if need_h:
                dh = c.dh(G)
                if keep is not None:
                    dh.mul_(keep)
                dz = _act_backward(c.act, dh, z, h).view(t1 - t0, u1 - u0, c.J)
                if gf is not None:
                    gf[b, t0:t1].add_(dz.sum(1, dtype=acc), alpha=wb)
                if gg is not None:
                    gg[b, u0:u1].add_(dz.sum(0, dtype=acc), alpha=wb)
    gW = gb = None
    if gWb is not None:
        gW = gWb[:, :c.J] if need[2] else None
        gb = gWb[:, c.J] if need[3] and c.has_bias else None
    return gf, gg, gW, gb


def _compute_dtype(tensors, device):
    if torch.is_autocast_enabled(device.type):
        return torch.get_autocast_dtype(device.type)
    dt = tensors[0].dtype
    for x in tensors[1:]:
        dt = torch.promote_types(dt, x.dtype)
    return dt


class _FusedRNNTLoss(torch.autograd.Function):
    @staticmethod
    def forward(ctx, enc_proj, pred_proj, weight, bias, tg, tl, ul, opts):
        blank, reduction, clamp, fastemit_lambda, act, p, budget, grad_enabled = opts
        dev = enc_proj.device
        cdt = _compute_dtype([enc_proj, pred_proj, weight] + ([bias] if bias is not None else []), dev)
        acc = torch.float64 if cdt == torch.float64 else torch.float32
        seed = draw_dropout_seed() if p > 0 else 0
        want_grad = grad_enabled and any(ctx.needs_input_grad[:4])  # no gradient work under no_grad
        with torch.autocast(dev.type, enabled=False):
            c = _Ctx(enc_proj.to(cdt), pred_proj.to(cdt), weight.to(cdt), None if bias is None else bias.to(cdt),
                     tg, tl, ul, act, p, seed, budget, blank, acc)
            lse, lpb, lpl = _forward_scores(c)
            offsets = torch.tensor(c.starts, dtype=torch.int64).to(dev)
            costs, bf, lf = _ext().lattice(lpb, lpl, offsets, (ul + 1).contiguous(), tl, ul, want_grad,
                                           max(c.T_all), max(c.U_all) + 1)
            if fastemit_lambda:
                costs = costs * (1.0 + fastemit_lambda)  # ops.py's FastEmit cost convention (NeMo / warp-transducer)
        del c, lpb, lpl
        ctx.opts, ctx.seed, ctx.cdt, ctx.acc = opts, seed, cdt, acc
        ctx.has_bias = bias is not None
        ctx.dtypes = (enc_proj.dtype, pred_proj.dtype, weight.dtype, None if bias is None else bias.dtype)
        if want_grad:
            ctx.save_for_backward(enc_proj, pred_proj, weight, bias, tg, tl, ul, lse, bf, lf)
        return reduce_costs(costs, ul, reduction)

    @staticmethod
    def backward(ctx, grad_output):
        enc_proj, pred_proj, weight, bias, tg, tl, ul, lse, bf, lf = ctx.saved_tensors
        blank, reduction, clamp, fastemit_lambda, act, p, budget, _ = ctx.opts
        cdt, acc = ctx.cdt, ctx.acc
        need = tuple(ctx.needs_input_grad[:4])
        w = _sample_weights(grad_output.detach(), reduction, tl.shape[0], ul, acc)
        with torch.no_grad(), torch.autocast(enc_proj.device.type, enabled=False):
            c = _Ctx(enc_proj.to(cdt), pred_proj.to(cdt), weight.to(cdt), None if bias is None else bias.to(cdt),
                     tg, tl, ul, act, p, ctx.seed, budget, blank, acc)
            grads = _backward_grads(c, lse, bf, lf, w, clamp, fastemit_lambda, need)
        out = [None if g is None else g.to(dt) for g, dt in zip(grads, ctx.dtypes)]
        return out[0], out[1], out[2], out[3], None, None, None, None


def _check_budget(max_chunk_bytes, device):
    """The tile budget in bytes: the default for ``None``, no limit (one tile per sample) for inf."""
    budget = V_.check_budget(max_chunk_bytes)
    if budget is None:
        return DEFAULT_CUDA_TILE_BYTES if device.type == "cuda" else DEFAULT_CPU_TILE_BYTES
    if budget == float("inf"):
        return 1 << 62
    return budget


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
        max_chunk_bytes: working bytes of one tile (default 64 MiB on the CPU, 256 MiB on CUDA; any
            positive number; ``float('inf')``: one tile per sample).

    Options after the tensors are keyword only; ``blank`` defaults to ``-1`` (the last class).

    The four tensors get gradients through autograd (accumulated in fp32, fp64 for fp64). Under
    autocast the tiles run in the autocast dtype. Returns the reduced loss (fp32; fp64 for fp64).
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
    budget = _check_budget(max_chunk_bytes, dev)
    blank = V_.normalize_blank(blank, Vn)
    tg, tl, ul = V_.check_lengths_and_targets(targets, encoder_lengths, target_lengths, B, T,
                                              pred_proj.shape[1] - 1, Vn, blank, dev,
                                              length_name="encoder_lengths")
    if dev.type == "cuda" and not _ext().cuda_built():
        raise ValueError("enc_proj is on a CUDA device but samplewise_rnnt was built without CUDA kernels")
    opts = (blank, reduction, float(clamp), float(fastemit_lambda), act, float(dropout), budget,
            torch.is_grad_enabled())
    return _FusedRNNTLoss.apply(enc_proj, pred_proj, weight, bias, tg, tl, ul, opts)


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


def fused_samplewise_rnnt_loss(encoder_out, predictor_out, joint, targets, encoder_lengths, target_lengths, *,
                               blank=-1, reduction="mean", clamp=-1.0, fastemit_lambda=0.0, max_chunk_bytes=None):
    """:func:`samplewise_rnnt.samplewise_rnnt_loss` for a Linear-act-Linear joint, without the logits.

    Applies the joint's two projections to ``encoder_out`` [B, T, He] and ``predictor_out``
    [B, U+1, Hp] (with autograd, so their parameters get gradients) and calls
    :func:`fused_rnnt_loss` with the joint's output layer. Raises ValueError naming the joint's
    type when :func:`linear_joint_spec` does not recognise it.
    """
    spec = linear_joint_spec(joint)
    if spec is None:
        raise ValueError(f"joint of type {V_.callable_name(joint)} has no Linear-act-Linear "
                         "structure the fused output layer can use (LinearJoint, ESPnet's JointNetwork or NeMo's "
                         "RNNTJoint); use fused=False")
    V_.check_frames_and_steps("encoder_out", encoder_out, "predictor_out", predictor_out)
    for name, x, lin in (("encoder_out", encoder_out, spec.lin_enc), ("predictor_out", predictor_out, spec.lin_dec)):
        width = getattr(lin, "in_features", None)
        if width is not None and x.shape[-1] != width:
            raise ValueError(f"{name} has width {x.shape[-1]} (shape {tuple(x.shape)}) but the joint "
                             f"({V_.callable_name(joint)}) expects {width}")
        w = getattr(lin, "weight", None)
        if isinstance(w, torch.Tensor) and w.device != x.device:
            raise ValueError(f"the joint ({V_.callable_name(joint)}) is on {w.device} but "
                             f"{name} is on {x.device}; move the joint to {x.device}")
    jname = V_.callable_name(joint)
    projected = []
    for name, x, lin in (("encoder_out", encoder_out, spec.lin_enc), ("predictor_out", predictor_out, spec.lin_dec)):
        try:
            projected.append(lin(x))
        except (RuntimeError, TypeError) as exc:
            raise ValueError(f"the joint ({jname}) failed to project {name} (shape {tuple(x.shape)}, dtype "
                             f"{str(x.dtype).replace('torch.', '')}): {exc}") from exc
    f, g = projected
    return fused_rnnt_loss(f, g, spec.weight, spec.bias, targets, encoder_lengths, target_lengths,
                           activation=spec.activation, dropout=spec.dropout, blank=blank, reduction=reduction,
                           clamp=clamp, fastemit_lambda=fastemit_lambda, max_chunk_bytes=max_chunk_bytes)
