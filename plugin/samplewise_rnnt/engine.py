"""The sample-wise engine: joint, loss and gradients one group of samples at a time (Braun et al., 2022).

:func:`samplewise_rnnt_loss` equals, in value and in every gradient,

    rnnt_loss(joint(encoder_out.unsqueeze(2), predictor_out.unsqueeze(1)), targets, encoder_lengths,
              target_lengths, blank=blank, clamp=clamp, reduction=reduction, fastemit_lambda=fastemit_lambda)

without ever holding the ``[B, T, U+1, V]`` logits. How:

* The planner (:mod:`.planner`) sorts the samples by ``T_b * (U_b + 1)`` and groups them under
  ``max_chunk_bytes``; a group is padded only to its own longest ``T`` and ``U``.
* Forward, per group: ``joint`` on the group's slices of ``encoder_out`` / ``predictor_out``
  (detached leaves), the core op's per-sample costs and logits-gradient (written over the logits
  where the joint's backward allows it), then one ``torch.autograd.grad`` through the joint. The
  gradients for ``encoder_out``, ``predictor_out`` and every joint parameter are accumulated in fp32
  buffers; the group's graph and logits are freed before the next group.
* Backward scales the stored gradients by ``grad_output``. Nothing of size ``T*U*V`` is held
  between forward and backward.

Modes:

* No gradient needed (``torch.no_grad()``, or no input requires grad): the loss only, with a larger
  group budget (no gradient work space).
* Scalar reductions (``sum``, ``mean``, ``mean_volume``): gradients once, in forward.
* ``reduction="none"``: the gradients w.r.t. ``encoder_out`` / ``predictor_out`` of sample ``b``
  depend on its own cost only, so when no joint parameter needs a gradient they are computed in
  forward and scaled per sample in backward. When joint parameters need gradients, forward computes
  the costs only and backward recomputes every group with ``grad_output`` as per-sample weights
  (exact for any ``grad_output``); the RNG state and autocast state of forward are restored, so a
  dropout joint sees the same masks.
* Mixed precision: under ``torch.autocast`` the joint runs in bf16/fp16 and the loss math in fp32.
  For fp16 logits the logits-gradient handed to the joint's backward is normalised per group to a
  largest per-sample weight of ``2**8`` instead of carrying ``1/B``, so fp16
  gradients do not underflow before a grad scaler's scale is known; the fp32 buffers undo the
  normalisation. If the joint's fp16 backward overflows, that group's gradients are not added and,
  after the loop, the group is recomputed (same RNG state) with a smaller normalisation.
* No host synchronisation inside the group loop: the inputs are validated once per batch, the
  planner works on host copies of the lengths, every group's sample indices and per-sample weights
  reach the device in one copy before the loop, and the kernels get their grid sizes as host ints.
  (fp16 logits: one synchronisation after the loop, to find groups whose backward overflowed.)
* The logits are overwritten by their gradient only when that is safe: the joint's backward does
  not read its output (probed on one node) and the output is not, or is not a view of, a leaf
  tensor, a parameter or buffer of the joint, or the encoder or predictor output.
* Double backward (``create_graph=True``) is refused with a ``RuntimeError``.

``joint`` is any module or callable mapping ``[n, T, 1, He]`` and ``[n, 1, U+1, Hp]`` to logits
``[n, T, U+1, V]``, acting on each ``(t, u)`` independently. Parameters are found through
``joint.parameters()`` (an ``nn.Module``); wrap a plain function that closes over tensors needing
gradients in a module. A joint may ignore one of its inputs (that input's gradient is then zero).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, List, NamedTuple, Optional, Sequence

import torch

from . import _validate as V_
from .ops import _ext, _rnnt_grad, _rnnt_lattice, _rnnt_scores, padded_layout
from .planner import Group, default_budget, plan_groups, split_lattice
from .reference import reduce_costs

__all__ = ["samplewise_rnnt_loss", "SampleWiseRNNTLoss", "samplewise_tdt_loss", "SampleWiseTDTLoss"]

# largest per-sample weight of the logits-gradient for fp16 logits (see the module docstring)
FP16_GRAD_NORM = 2.0 ** 8
# each fp16 overflow retry divides the normalisation by this, down to FP16_MIN_NORM
FP16_RETRY_FACTOR = 2.0 ** 4
FP16_MIN_NORM = 2.0 ** -8


def _joint_params(joint) -> List[torch.Tensor]:
    if isinstance(joint, torch.nn.Module):
        return [p for p in joint.parameters() if p.requires_grad]
    return []


@dataclass
class _Cfg:
    blank: int
    reduction: str
    clamp: float
    fastemit_lambda: float
    max_chunk_bytes: Optional[float]
    V: int
    logits_dtype: torch.dtype
    inplace_ok: bool
    autocast: tuple  # (device_type, enabled, dtype)
    owned: frozenset  # storage addresses of the caller's tensors (inputs, the joint's parameters and buffers)
    kernels: object = None  # the loss's three stages (_RNNTKernels)
    evaluator: object = None  # how a group's logits and backward are computed (_GenericEvaluator, fused)


def _rng_devices(device):
    return [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" \
        else []


def _get_rng(device):
    cuda = [torch.cuda.get_rng_state(d) for d in _rng_devices(device)]
    return torch.get_rng_state(), cuda


def _set_rng(device, state):
    cpu, cuda = state
    torch.set_rng_state(cpu)
    for d, s in zip(_rng_devices(device), cuda):
        torch.cuda.set_rng_state(s, d)


def _check_joint_output(joint, out, want, ein, pin):
    """The joint's output is a float tensor of shape ``want`` (``None``: any V) on the device of its inputs."""
    name = V_.callable_name(joint)
    shapes = f"{tuple(ein.shape)} and {tuple(pin.shape)}"
    if not isinstance(out, torch.Tensor):
        raise ValueError(f"joint ({name}) returned {type(out).__name__} for inputs of shape {shapes}; expected a "
                         "tensor of logits")
    if out.device != ein.device:
        raise ValueError(f"joint ({name}) returned logits on {out.device} but encoder_out and predictor_out are on "
                         f"{ein.device}; move the joint to {ein.device}")
    if out.dim() != 4 or any(w is not None and w != x for w, x in zip(want, out.shape)):
        exp = ", ".join("V" if x is None else str(x) for x in want)
        raise ValueError(f"joint ({name}) returned {tuple(out.shape)} for inputs of shape {shapes}; expected logits "
                         f"of shape [{exp}]")
    if out.dtype not in V_.FLOAT_DTYPES:
        raise ValueError(f"joint ({name}) returned logits of dtype {out.dtype}; expected a floating dtype")


def _probe(joint, enc, pred):
    """Run the joint on one node: V, the logits' dtype, and whether the logits may be overwritten by
    their gradient (false when the joint's backward reads its own output). Leaves the RNG untouched."""
    with torch.random.fork_rng(devices=_rng_devices(enc.device)), torch.enable_grad():
        e = enc[:1, :1].detach().requires_grad_(True)
        p = pred[:1, :1].detach().requires_grad_(True)
        ein, pin = e.unsqueeze(2), p.unsqueeze(1)
        try:
            out = joint(ein, pin)
        except (RuntimeError, TypeError, ValueError, IndexError) as exc:
            raise ValueError(f"joint ({V_.callable_name(joint)}) failed on inputs of shape {tuple(ein.shape)} (from "
                             f"encoder_out {tuple(enc.shape)}) and {tuple(pin.shape)} (from predictor_out "
                             f"{tuple(pred.shape)}): {exc}") from exc
        _check_joint_output(joint, out, (1, 1, 1, None), ein, pin)
        inplace_ok = True
        if out.requires_grad:
            torch.autograd.graph.increment_version(out)
            try:
                torch.autograd.grad(out, [e, p], torch.ones_like(out), allow_unused=True)
            except RuntimeError:
                inplace_ok = False
    return out.shape[-1], out.dtype, inplace_ok


def _storages(tensors):
    out = set()
    for t in tensors:
        if isinstance(t, torch.Tensor) and t.layout == torch.strided and t.numel():
            out.add(t.untyped_storage().data_ptr())
    return frozenset(out)


def _may_overwrite(logits, owned) -> bool:
    """Whether the joint's output may be overwritten by its gradient: not a leaf, not a view of a leaf,
    and not sharing storage with a tensor the caller owns."""
    if logits.is_leaf:
        return False
    base = logits._base
    if base is not None and base.is_leaf:
        return False
    return logits.untyped_storage().data_ptr() not in owned


class _Buffers:
    """fp32 gradient accumulators (fp64 for fp64 tensors; None where no gradient is needed)."""

    def __init__(self, enc, pred, params, need_enc, need_pred, need_params):
        self.enc = torch.zeros(enc.shape, dtype=_acc(enc), device=enc.device) if need_enc else None
        self.pred = torch.zeros(pred.shape, dtype=_acc(pred), device=pred.device) if need_pred else None
        self.params = [torch.zeros(p.shape, dtype=_acc(p), device=p.device) if need_params else None
                       for p in params]


def _acc(x):
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def _to_device(values, dtype, device):
    """A host list as a device tensor: one copy (pinned and non-blocking on CUDA)."""
    t = torch.tensor(values, dtype=dtype)
    if device.type == "cuda":
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


class _Plan:
    """The groups, and everything the group loop needs on the device, made before the loop: each
    group's sample indices (slices of one index tensor) and, with weights, the per-sample weights."""

    def __init__(self, groups: Sequence[Group], device, node_bytes, budget, weights=None):
        self.groups = list(groups)
        self.node_bytes, self.budget = node_bytes, budget  # what the tiles of a group are cut by
        flat = [b for g in self.groups for b in g.samples]
        allidx = _to_device(flat, torch.int64, device)
        self.idx, s = [], 0
        for g in self.groups:
            self.idx.append(allidx[s:s + len(g.samples)])
            s += len(g.samples)
        self.weights = weights
        self.wdev = None if weights is None else _to_device(weights, torch.float64, device)


def _group_factor(w, logits_dtype):
    """The normalisation of a group's weights (host floats): None when the group needs no gradient."""
    if any(not math.isfinite(x) for x in w):
        return 1.0  # inf/NaN weights: no normalisation, the non-finite gradient is the exact answer
    m = max(abs(x) for x in w)
    if m == 0.0:
        return None
    # fp16: normalise the largest weight to FP16_GRAD_NORM; otherwise the weights as they are
    return FP16_GRAD_NORM / m if logits_dtype == torch.float16 else 1.0


def _run_groups(plan: _Plan, enc, pred, joint, params, tg, tl, ul, cfg: _Cfg, bufs):
    """Costs [B] for all groups; with ``bufs``, accumulate ``sum_b weights[b] * d cost_b / d input``."""
    try:
        return _run_groups_once(plan, enc, pred, joint, params, tg, tl, ul, cfg, bufs)
    finally:
        cfg.evaluator.release()  # the group-sized work buffers must not live on with the autograd graph


def _run_groups_once(plan: _Plan, enc, pred, joint, params, tg, tl, ul, cfg: _Cfg, bufs):
    B = enc.shape[0]
    device = enc.device
    cost_dtype = torch.float64 if cfg.logits_dtype == torch.float64 else torch.float32
    costs = torch.empty(B, dtype=cost_dtype, device=device)
    pending = []  # fp16: (group number, finite flag on the device, RNG state, factor)
    for i in range(len(plan.groups)):
        r = _run_group(plan, i, enc, pred, joint, params, tg, tl, ul, cfg, bufs, costs, None)
        if r is not None:
            pending.append((i,) + r)
    if pending:  # one synchronisation for every fp16 group: retry those whose backward overflowed
        finite = torch.stack([f for _, f, _, _ in pending]).tolist()
        failed = [(i, rng, factor) for (i, _, rng, factor), ok in zip(pending, finite) if not ok]
        if failed:
            after = _get_rng(device)
            for i, rng, factor in failed:
                m = max(abs(x) for x in (plan.weights[b] for b in plan.groups[i].samples))
                while True:
                    factor /= FP16_RETRY_FACTOR
                    last = factor * m / FP16_RETRY_FACTOR < FP16_MIN_NORM
                    _set_rng(device, rng)
                    r = _run_group(plan, i, enc, pred, joint, params, tg, tl, ul, cfg, bufs, costs, (factor, last))
                    if last or r is None or bool(r[0]):
                        break
            _set_rng(device, after)
    return costs


class _Tile(NamedTuple):
    """A block of a group's padded ``[n, T_g, U1_g]`` lattice: samples ``b0:b1`` (group positions), time
    rows ``t0:t1``, columns ``u0:u1``. Its nodes are contiguous in the group's node order."""

    b0: int
    b1: int
    t0: int
    t1: int
    u0: int
    u1: int

    @property
    def nodes(self):
        return (self.b1 - self.b0) * (self.t1 - self.t0) * (self.u1 - self.u0)


def _whole(g: Group) -> _Tile:
    """The tile that is the whole group."""
    return _Tile(0, len(g.samples), 0, g.T, 0, g.U1)


def _group_tiles(g: Group, node_bytes, budget) -> List[_Tile]:
    """The whole group as one tile when it fits ``budget`` (always, except for a group of one sample that
    alone exceeds it); otherwise whole time rows of each sample, or runs of nodes within a row."""
    if budget is None or g.nodes * node_bytes <= budget:
        return [_whole(g)]
    return [_Tile(s, s + 1, t0, t1, u0, u1) for s in range(len(g.samples))
            for (t0, t1, u0, u1) in split_lattice(g.T, g.U1, node_bytes, budget)]


class _GroupData:
    """A group's inputs and the layouts of its tiles (small device tensors, made without synchronising)."""

    def __init__(self, g: Group, idx, tl_g, ul_g, tg_g, device):
        self.g, self.idx, self.tl, self.ul, self.tg = g, idx, tl_g, ul_g, tg_g
        self.layout = padded_layout(len(g.samples), g.T, g.U1, device)
        self.device = device

    def node_slice(self, tile: _Tile):
        g = self.g
        s = (tile.b0 * g.T + tile.t0) * g.U1 + tile.u0
        return slice(s, s + tile.nodes)

    def tile_layout(self, tile: _Tile):
        """(layout, T, U, targets) of a tile, in the tile's own node numbering."""
        if tile == _whole(self.g):
            return self.layout, self.tl, self.ul, self.tg
        nt, nu, b = tile.t1 - tile.t0, tile.u1 - tile.u0, tile.b0
        lay = padded_layout(1, nt, nu, self.device)
        T = (self.tl[b:b + 1] - tile.t0).clamp_(0, nt)  # frames of the sample inside the tile
        U = self.ul[b:b + 1] - tile.u0  # < 0: the tile lies right of the sample's last column
        tg = self.tg[b:b + 1, min(tile.u0, self.tg.shape[1]):].contiguous()
        return lay, T, U, tg


def _run_group(plan: _Plan, i, enc, pred, joint, params, tg, tl, ul, cfg: _Cfg, bufs, costs, retry):
    """One group. Returns None, or for fp16 logits with gradients (finite flag, RNG state, factor):
    then the gradients were added only if finite. ``retry``: (factor, last) for a recomputation, whose
    gradients are added if finite or if ``last``."""
    g, idx = plan.groups[i], plan.idx[i]
    device = enc.device
    n = len(g.samples)
    tl_g, ul_g = tl.index_select(0, idx), ul.index_select(0, idx)
    tg_g = tg.index_select(0, idx)[:, :g.U1 - 1].contiguous()
    want = bufs is not None
    factor = None
    if want:
        factor = _group_factor([plan.weights[b] for b in g.samples], cfg.logits_dtype)
        want = factor is not None
    if retry is not None:
        factor = retry[0]
    check_finite = want and cfg.logits_dtype == torch.float16 and math.isfinite(factor) and \
        all(math.isfinite(plan.weights[b]) for b in g.samples)
    rng = _get_rng(device) if check_finite and retry is None else None
    e = enc.index_select(0, idx)[:, :g.T].detach()
    p = pred.index_select(0, idx)[:, :g.U1].detach()
    inputs = []
    if want and bufs.enc is not None:
        inputs.append(e.requires_grad_(True))
    if want and bufs.pred is not None:
        inputs.append(p.requires_grad_(True))
    pidx = [j for j, b in enumerate(bufs.params) if b is not None] if want else []
    inputs += [params[j] for j in pidx]
    scale = None
    if want:
        scale = plan.wdev.index_select(0, idx) * factor
        if scale.dtype != cfg.logits_dtype and cfg.logits_dtype != torch.float64:
            scale = scale.float()
    data = _GroupData(g, idx, tl_g, ul_g, tg_g, device)
    c, grads = _evaluate(cfg, data, e, p, inputs, want, scale, plan)
    costs.index_copy_(0, idx, c.to(costs.dtype))
    if grads is None:
        return None
    finite = None
    if check_finite:
        present = [x for x in grads if x is not None]
        finite = torch.stack([torch.isfinite(x).all() for x in present]).all() if present else \
            torch.ones((), dtype=torch.bool, device=device)
        if retry is None or not retry[1]:  # add only finite gradients (a device-side choice, no sync)
            grads = [None if x is None else torch.where(finite, x, torch.zeros((), dtype=x.dtype, device=x.device))
                     for x in grads]
    inv = 1.0 / factor  # undo the normalisation: weights = scale * inv
    k = 0
    for buf, length in ((bufs.enc, g.T), (bufs.pred, g.U1)):  # the group's rows of the input buffers
        if buf is None:
            continue
        gk = grads[k]
        k += 1
        if gk is None:  # the joint ignores this input
            continue
        if n == 1:
            buf[g.samples[0], :length].add_(gk[0], alpha=inv)
        else:
            buf[:, :length].index_add_(0, idx, gk.to(buf.dtype), alpha=inv)
    for j in pidx:
        if grads[k] is not None:
            bufs.params[j].add_(grads[k], alpha=inv)
        k += 1
    if check_finite:
        return finite, rng, factor
    return None


def _evaluate(cfg: _Cfg, data: _GroupData, e, p, inputs, want, scale, plan: _Plan):
    """The group's costs and, with ``want``, the gradients of ``sum_b scale[b] * cost_b`` with respect to
    ``inputs`` (None entries where an input gets none; ``grads`` None when nothing needs one).

    The same three stages for both evaluators (the generic joint, the fused output layer), tile by
    tile: stage 1 (node scores) on each tile's logits, the lattice on the whole group, then stage 3
    (the logits gradient) and the evaluator's backward on each tile. A group that is one tile keeps
    its logits between the stages; a larger one (a single sample above the budget) computes each
    tile's logits twice, the second time with gradients (same RNG state, so a dropout joint draws
    the same masks)."""
    ev, K = cfg.evaluator, cfg.kernels
    tiles = _group_tiles(data.g, plan.node_bytes, plan.budget)
    prep = ev.prepare(e, p, want)
    if len(tiles) == 1:
        tile = tiles[0]
        lay, T, U, tgt = data.tile_layout(tile)
        x, state = ev.logits(prep, data, tile, want)
        if want and not ev.differentiable(x):
            want = False  # nothing upstream of the logits needs a gradient
        x2d = _rows(x, cfg.V)
        scores = K.scores(x2d, lay, T, U, tgt)
        costs, flows = K.lattice(scores, lay, T, U, want)
        if not want:
            return costs, None
        acc = ev.start(prep, inputs)
        ev.backprop(prep, data, tile, x, x2d, state, scores, flows, (lay, T, U, tgt), scale, acc)
        return costs, ev.finish(prep, inputs, acc)
    rng = ev.uses_rng and _get_rng(data.device)
    scores = K.empty_scores(data.g.nodes, cfg.logits_dtype, data.device)
    layouts = [data.tile_layout(tile) for tile in tiles]
    with torch.no_grad():
        for tile, tile_layout in zip(tiles, layouts):
            x, _ = ev.logits(prep, data, tile, False)
            for whole, part in zip(scores, K.scores(_rows(x, cfg.V), *tile_layout)):
                whole[data.node_slice(tile)] = part
            del x
    lay = data.layout
    costs, flows = K.lattice(scores, lay, data.tl, data.ul, want)
    if not want:
        return costs, None
    if ev.uses_rng:
        _set_rng(data.device, rng)
    acc = ev.start(prep, inputs)
    for tile, tile_layout in zip(tiles, layouts):
        x, state = ev.logits(prep, data, tile, True)
        if not ev.differentiable(x):
            continue
        sl = data.node_slice(tile)
        ev.backprop(prep, data, tile, x, _rows(x, cfg.V), state, _sliced(scores, sl), _sliced(flows, sl),
                    tile_layout, scale[tile.b0:tile.b1], acc)
        del x, state
    return costs, ev.finish(prep, inputs, acc)


def _sliced(arrays, sl):
    """The rows ``sl`` of each node array of a (named) tuple, as the same kind of tuple."""
    parts = [a[sl] for a in arrays]
    return arrays._make(parts) if hasattr(arrays, "_make") else tuple(parts)


def _rows(x, V):
    """The logits as contiguous ``[nodes, V]`` rows (a view when they already are)."""
    x = x.detach()
    return (x if x.is_contiguous() else x.contiguous()).view(-1, V)


class _Kernels:
    """A loss's three stages on a layout, what an evaluator calls: ``scores`` (stage 1 on a tile),
    ``lattice`` (stage 2 on a group; costs in FastEmit's convention) and ``grad`` (stage 3 on a tile).
    Subclasses give the loss's stage functions ``_scores``, ``_lattice`` and ``_grad`` (ops.py's for
    RNN-T, tdt.py's for TDT)."""

    def __init__(self, blank, clamp, fastemit_lambda):
        self.blank, self.clamp, self.lam = blank, clamp, fastemit_lambda

    def lattice(self, scores, lay, T, U, want_flows):
        costs, flows = self._lattice(scores, T, U, lay, want_flows)
        if self.lam:
            costs = costs * (1.0 + self.lam)
        return costs, flows

    def grad(self, x2d, out, scores, flows, tile_layout, scale):
        """``out`` (may be ``x2d``) = each node's logits gradient times its sample's ``scale``."""
        lay, T, U, tgt = tile_layout
        fp64 = x2d.dtype == torch.float64  # the kernels read the scale in fp32: scale fp64 gradients here
        self._grad(x2d, out, scores, flows, tgt, T, U, lay, None if fp64 else scale)
        if fp64:
            out.view(scale.shape[0], -1).mul_(scale.view(-1, 1).to(out.dtype))


class _RNNTKernels(_Kernels):
    """The RNN-T loss's stages (the core op's kernels)."""

    def empty_scores(self, N, logits_dtype, device):
        acc = torch.float64 if logits_dtype == torch.float64 else torch.float32
        return tuple(torch.empty(N, dtype=acc, device=device) for _ in range(3))

    def scores(self, x2d, lay, T, U, tgt):
        return _rnnt_scores(x2d, tgt, T, U, lay, self.blank)

    def _lattice(self, scores, T, U, lay, want_flows):
        return _rnnt_lattice(scores, T, U, lay, want_flows)

    def _grad(self, x2d, out, scores, flows, tgt, T, U, lay, scale):
        _rnnt_grad(x2d, out, scores, flows, tgt, T, U, lay, self.blank, self.clamp, self.lam, scale)


class _TDTKernels(_Kernels):
    """The TDT loss's stages (:mod:`samplewise_rnnt.tdt`'s kernels); ``rnnt_mode`` is the batch's omega
    draw (the standard RNN-T loss of the token logits)."""

    def __init__(self, blank, durations, sigma, clamp, fastemit_lambda, rnnt_mode):
        super().__init__(blank, clamp, fastemit_lambda)
        self.durations, self.sigma, self.rnnt_mode = tuple(durations), sigma, rnnt_mode

    def empty_scores(self, N, logits_dtype, device):
        from .tdt import TDTScores

        acc = torch.float64 if logits_dtype == torch.float64 else torch.float32
        return TDTScores(*(torch.empty(N, dtype=acc, device=device) for _ in range(3)),
                         torch.empty(N, len(self.durations), dtype=acc, device=device))

    def scores(self, x2d, lay, T, U, tgt):
        from .tdt import _tdt_scores

        return _tdt_scores(x2d, tgt, T, U, lay, self.blank, self.durations, self.sigma, self.rnnt_mode)

    def _lattice(self, scores, T, U, lay, want_flows):
        from .tdt import _tdt_lattice

        return _tdt_lattice(scores, T, U, lay, self.durations, want_flows, self.rnnt_mode)

    def _grad(self, x2d, out, scores, flows, tgt, T, U, lay, scale):
        from .tdt import _tdt_grad

        _tdt_grad(x2d, out, scores, flows, tgt, T, U, lay, self.blank, self.clamp, self.lam, scale)


class _GenericEvaluator:
    """A group through any joint: its logits from ``joint(e, p)``, its backward by autograd, with the
    logits' gradient written over them where the joint's backward allows it."""

    uses_rng = True  # the joint may draw dropout masks

    def __init__(self, joint, cfg):
        self.joint, self.cfg = joint, cfg
        itemsize = torch.empty((), dtype=cfg.logits_dtype).element_size()
        self.node_bytes_grad = 2 * cfg.V * itemsize  # the logits plus the gradient the joint's backward makes
        self.node_bytes_loss = cfg.V * itemsize

    @staticmethod
    def default_budget(device):
        return default_budget(device)

    def release(self):
        pass

    def prepare(self, e, p, want):
        return e, p

    def logits(self, prep, data, tile, want):
        e, p = prep
        shape = (tile.b1 - tile.b0, tile.t1 - tile.t0, tile.u1 - tile.u0)
        with torch.set_grad_enabled(want):  # (forward of an autograd.Function runs with grad mode off)
            if tile != _whole(data.g):
                e, p = e[tile.b0:tile.b1, tile.t0:tile.t1], p[tile.b0:tile.b1, tile.u0:tile.u1]
            ein, pin = e.unsqueeze(2), p.unsqueeze(1)
            out = self.joint(ein, pin)
        _check_joint_output(self.joint, out, shape + (self.cfg.V,), ein, pin)
        return out, None

    @staticmethod
    def differentiable(x):
        return x.requires_grad

    def start(self, prep, inputs):
        return {"inputs": inputs, "grads": None}

    def backprop(self, prep, data, tile, logits, x2d, state, scores, flows, tile_layout, scale, acc):
        cfg = self.cfg
        inplace = cfg.inplace_ok and _may_overwrite(logits, cfg.owned) and logits.is_contiguous()
        grad = x2d if inplace else torch.empty_like(x2d)
        cfg.kernels.grad(x2d, grad, scores, flows, tile_layout, scale)
        # no increment_version(logits) here: the probe established that the joint's backward does not read
        # its output, and bumping the version of a view would make autograd replay it as an AsStrided
        # node (a zero-filled copy of the logits)
        del x2d
        # hand the gradient to autograd through _Handoff so that its only reference is released as soon
        # as the joint's last layer has consumed it (with in-place gradients, the logits' storage)
        with torch.enable_grad():
            root = _Handoff.apply(logits, [grad.view(logits.shape)])
        del logits, grad
        grads = list(torch.autograd.grad(root, acc["inputs"], allow_unused=True))
        del root
        if acc["grads"] is None:
            acc["grads"] = grads
        else:  # a group of several tiles: sum their gradients
            acc["grads"] = [a if b is None else (b if a is None else a.add_(b)) for a, b in zip(acc["grads"], grads)]

    def finish(self, prep, inputs, acc):
        return acc["grads"] if acc["grads"] is not None else [None] * len(inputs)


class _Handoff(torch.autograd.Function):
    """Identity root for ``torch.autograd.grad`` whose backward gives away the stored gradient of the logits."""

    @staticmethod
    def forward(ctx, logits, holder):
        ctx.holder = holder
        return logits.new_zeros(())

    @staticmethod
    def backward(ctx, _):
        return ctx.holder.pop(), None


def _weights(reduction, B, ul_list):
    """Per-sample weights of the scalar reductions, as host floats."""
    if reduction == "mean":
        return [1.0 / B] * B
    if reduction == "mean_volume":
        return [1.0 / max(1, sum(ul_list))] * B
    return [1.0] * B


def _plan(enc, tl_list, ul_list, cfg: _Cfg, grad_work: bool, weights=None) -> _Plan:
    ev = cfg.evaluator
    bytes_per_node = ev.node_bytes_grad if grad_work else ev.node_bytes_loss
    budget = cfg.max_chunk_bytes
    if budget is None:
        budget = ev.default_budget(enc.device)
    elif budget == float("inf"):
        budget = None
    return _Plan(plan_groups(tl_list, ul_list, bytes_per_node, budget), enc.device, bytes_per_node, budget, weights)


class _SampleWise(torch.autograd.Function):
    @staticmethod
    def forward(ctx, enc, pred, tg, tl, ul, joint, cfg, needs, lens, *params):
        need_enc, need_pred, need_params = needs
        tl_list, ul_list = lens
        B = enc.shape[0]
        ctx.cfg, ctx.joint, ctx.needs, ctx.lens = cfg, joint, needs, lens
        ctx.dtypes = (enc.dtype, pred.dtype, [p.dtype for p in params])
        ctx.recompute = cfg.reduction == "none" and need_params
        ctx.consumed = False
        # the RNG state and the inputs, for a recomputation in backward (same RNG and autocast state, and
        # the same groups and tiles, so that a dropout joint draws the same masks)
        ctx.rng = _get_rng(enc.device)
        inputs = (enc, pred, tg, tl, ul, *params)
        if ctx.recompute:  # costs now; every gradient in backward, weighted by grad_output
            costs = _run_groups(_plan(enc, tl_list, ul_list, cfg, True), enc, pred, joint, params, tg, tl, ul, cfg,
                                None)
            ctx.save_for_backward(*inputs)
            return costs
        plan = _plan(enc, tl_list, ul_list, cfg, True, _weights(cfg.reduction, B, ul_list))
        bufs = _Buffers(enc, pred, params, need_enc, need_pred, need_params)
        costs = _run_groups(plan, enc, pred, joint, params, tg, tl, ul, cfg, bufs)
        ctx.bufs = bufs  # not saved tensors: the first backward scales them in place and gives them away
        ctx.save_for_backward(*inputs)
        return reduce_costs(costs, ul, cfg.reduction)

    @staticmethod
    def backward(ctx, grad_output):
        if torch.is_grad_enabled():
            raise RuntimeError("samplewise_rnnt_loss does not support double backward (create_graph=True): its "
                               "gradients are computed by the core op, not by differentiable operations")
        cfg = ctx.cfg
        need_enc, need_pred, need_params = ctx.needs
        enc_dt, pred_dt, par_dts = ctx.dtypes
        go = grad_output if grad_output.dtype == torch.float64 else grad_output.float()
        saved = ctx.saved_tensors
        if ctx.recompute or ctx.consumed:
            # reduction "none" with joint parameters, or a repeated backward through a retained graph (the
            # first one handed the stored gradients out, scaled in place): every group again, weighted by
            # grad_output
            enc, pred, tg, tl, ul, *params = saved
            if cfg.reduction == "none":
                weights = go.double().tolist()
            else:
                s = float(go)
                weights = [w * s for w in _weights(cfg.reduction, enc.shape[0], ctx.lens[1])]
            bufs = _Buffers(enc, pred, params, need_enc, need_pred, need_params)
            plan = _plan(enc, ctx.lens[0], ctx.lens[1], cfg, True, weights)
            dev_type, enabled, dtype = cfg.autocast
            with torch.random.fork_rng(devices=_rng_devices(enc.device)), \
                    torch.autocast(dev_type, dtype=dtype, enabled=enabled):
                _set_rng(enc.device, ctx.rng)
                _run_groups(plan, enc, pred, ctx.joint, params, tg, tl, ul, cfg, bufs)
            g_enc, g_pred, g_par = bufs.enc, bufs.pred, bufs.params
        else:
            ctx.consumed = True
            bufs, ctx.bufs = ctx.bufs, None
            g_enc, g_pred, g_par = bufs.enc, bufs.pred, bufs.params
            # scaled in place and handed out: no second tensor of the encoder output's size (autograd may
            # adopt them as .grad; a repeated backward recomputes instead, see above)
            if cfg.reduction == "none":  # per-sample gradients were computed with unit weights
                w = go.view(-1, 1, 1)
                g_enc = g_enc.mul_(w.to(g_enc.dtype)) if need_enc else None
                g_pred = g_pred.mul_(w.to(g_pred.dtype)) if need_pred else None
            else:
                g_enc = g_enc.mul_(go.to(g_enc.dtype)) if need_enc else None
                g_pred = g_pred.mul_(go.to(g_pred.dtype)) if need_pred else None
                g_par = [g.mul_(go.to(g.dtype)) if need_params else None for g in g_par]
            if not need_params:
                g_par = [None] * len(g_par)
        out_enc = g_enc.to(enc_dt) if g_enc is not None else None
        out_pred = g_pred.to(pred_dt) if g_pred is not None else None
        out_par = [g.to(dt) if g is not None else None for g, dt in zip(g_par, par_dts)]
        return (out_enc, out_pred, None, None, None, None, None, None, None, *out_par)


def samplewise_rnnt_loss(encoder_out, predictor_out, joint: Callable, targets, encoder_lengths, target_lengths, *,
                         blank=-1, reduction="mean", clamp=-1.0, fastemit_lambda=0.0, max_chunk_bytes=None,
                         fused=None):
    """Transducer loss computed group by group without the ``[B, T, U+1, V]`` logits.

    Equals ``rnnt_loss(joint(encoder_out.unsqueeze(2), predictor_out.unsqueeze(1)), targets,
    encoder_lengths, target_lengths, blank=blank, clamp=clamp, reduction=reduction,
    fastemit_lambda=fastemit_lambda)`` in value and in its gradients w.r.t. ``encoder_out``,
    ``predictor_out`` and every parameter of ``joint``.

    Args:
        encoder_out: ``[B, T, He]`` float tensor.
        predictor_out: ``[B, U+1, Hp]`` (predictor output for blank + labels), same device.
        joint: module or callable mapping ``[n, T, 1, He]``, ``[n, 1, U+1, Hp]`` to ``[n, T, U+1, V]``,
            pointwise in ``(t, u)``. Its parameters (``joint.parameters()``) receive gradients.
        targets: ``[B, U]`` int32/int64; ``encoder_lengths`` (``T_b``), ``target_lengths`` (``U_b``): ``[B]``.
        blank, reduction, clamp, fastemit_lambda (keyword only): as in :func:`samplewise_rnnt.rnnt_loss`;
            ``blank`` defaults to ``-1`` (the last class), as there.
        max_chunk_bytes: memory budget of one group (logits plus gradient work space), a positive
            number of bytes; ``None``: the default of :func:`samplewise_rnnt.planner.default_budget`;
            ``1``: one sample at a time; ``float('inf')``: the whole batch in one group. For the
            fused output layer it is the budget of one tile instead.
        fused: ``True``: the fused output layer (:func:`samplewise_rnnt.fused.fused_samplewise_rnnt_loss`;
            Linear-act-Linear joints only, ValueError otherwise); ``False``: the generic path described
            here; ``None`` (default): the fused layer when the joint has the structure it recognises
            (:class:`samplewise_rnnt.LinearJoint`, ESPnet's ``JointNetwork``, NeMo's ``RNNTJoint``; see
            :func:`samplewise_rnnt.fused.linear_joint_spec`), else the generic path.

    Returns:
        the reduced loss (fp32), or per-sample losses ``[B]`` for ``reduction="none"``.
    """
    return _joint_loss(encoder_out, predictor_out, joint, targets, encoder_lengths, target_lengths, blank, reduction,
                       clamp, fastemit_lambda, max_chunk_bytes, fused)


def _joint_loss(encoder_out, predictor_out, joint, targets, encoder_lengths, target_lengths, blank, reduction, clamp,
                fastemit_lambda, max_chunk_bytes, fused, tdt=None):
    """Validation and set-up shared by the RNN-T and the TDT entry points; ``tdt``: ``(durations, sigma,
    omega)`` for the TDT loss (the joint's last ``len(durations)`` outputs are the duration logits)."""
    V_.check_reduction(reduction)
    clamp, fastemit_lambda = V_.check_scalars(clamp, fastemit_lambda)
    max_chunk_bytes = V_.check_budget(max_chunk_bytes)
    V_.check_frames_and_steps("encoder_out", encoder_out, "predictor_out", predictor_out)
    if fused is not None and not isinstance(fused, bool):
        raise TypeError(f"fused must be None (automatic), True or False, got {type(fused).__name__} {fused!r}")
    if not callable(joint):
        raise TypeError(f"joint must be a module or callable, got {type(joint).__name__}")
    from . import fused as F_

    if fused is None:
        fused = F_.linear_joint_spec(joint) is not None
    B, T, _ = encoder_out.shape
    U1 = predictor_out.shape[1]
    if fused:  # the fused output layer (plugin/samplewise_rnnt/fused.py): no logits tensor at all
        spec = F_.checked_joint_spec(joint, encoder_out, predictor_out)
        V, logits_dtype, inplace_ok, owned = spec.weight.shape[0], F_.compute_dtype(spec, encoder_out,
                                                                                   predictor_out), True, ()
    else:
        V, logits_dtype, inplace_ok = _probe(joint, encoder_out, predictor_out)
        owned = [encoder_out, predictor_out] + (list(joint.parameters()) + list(joint.buffers())
                                                if isinstance(joint, torch.nn.Module) else [])
    V_tokens = V
    if tdt is not None:
        durations, sigma, omega = tdt
        if V <= len(durations):
            raise ValueError(f"joint ({V_.callable_name(joint)}) returns {V} outputs per node but durations has "
                             f"{len(durations)} entries: TDT needs V1 >= 1 token logits, then one logit per duration")
        V_tokens = V - len(durations)
    blank = V_.normalize_blank(blank, V_tokens)
    tg, tl, ul = V_.check_lengths_and_targets(targets, encoder_lengths, target_lengths, B, T, U1 - 1, V_tokens, blank,
                                              encoder_out.device, length_name="encoder_lengths")
    if tdt is None:
        kernels = _RNNTKernels(blank, clamp, fastemit_lambda)
    else:
        from .tdt import draw_rnnt_mode

        kernels = _TDTKernels(blank, durations, sigma, clamp, fastemit_lambda, draw_rnnt_mode(omega))
    cfg = _Cfg(blank, reduction, clamp, fastemit_lambda, max_chunk_bytes, V, logits_dtype, inplace_ok,
               _autocast_state(encoder_out.device), _storages(owned), kernels)
    cfg.evaluator = F_.FusedEvaluator(spec, cfg, T, U1) if fused else _GenericEvaluator(joint, cfg)
    return _engine(encoder_out, predictor_out, joint, _joint_params(joint), tg, tl, ul, cfg)


def _autocast_state(device):
    return (device.type, torch.is_autocast_enabled(device.type), torch.get_autocast_dtype(device.type))


def _engine(encoder_out, predictor_out, joint, params, tg, tl, ul, cfg: _Cfg):
    """The group loop on validated input, for either evaluator; ``params``: the tensors besides the two
    inputs that receive gradients (the joint's parameters that require one)."""
    if encoder_out.is_cuda and not _ext().cuda_built():
        raise ValueError("encoder_out is on a CUDA device but samplewise_rnnt was built without CUDA kernels "
                         "(rebuild with nvcc available and SWR_FORCE_CPU unset)")
    lens = (tl.tolist(), ul.tolist())  # host copies for the planner, before the group loop
    grad_on = torch.is_grad_enabled()
    needs = (grad_on and encoder_out.requires_grad, grad_on and predictor_out.requires_grad,
             grad_on and len(params) > 0)
    if not any(needs):  # validation: the loss only
        plan = _plan(encoder_out, lens[0], lens[1], cfg, False)
        costs = _run_groups(plan, encoder_out, predictor_out, joint, params, tg, tl, ul, cfg, None)
        return reduce_costs(costs, ul, cfg.reduction)
    return _SampleWise.apply(encoder_out, predictor_out, tg, tl, ul, joint, cfg, needs, lens, *params)


def _check_module_options(joint, blank, reduction, clamp, fastemit_lambda, max_chunk_bytes, fused):
    """The checks of the module forms' constructors (the same errors as the functions give at call time)."""
    V_.check_reduction(reduction)
    V_.check_scalars(clamp, fastemit_lambda)
    V_.check_budget(max_chunk_bytes)
    if fused is not None and not isinstance(fused, bool):
        raise TypeError(f"fused must be None (automatic), True or False, got {type(fused).__name__} {fused!r}")
    if not callable(joint):
        raise TypeError(f"joint must be a module or callable, got {type(joint).__name__}")
    V_.check_blank_type(blank)


class SampleWiseRNNTLoss(torch.nn.Module):
    """Module form of :func:`samplewise_rnnt_loss`; ``joint`` is registered as a submodule (if a module).

    ``SampleWiseRNNTLoss(joint, *, blank=-1, reduction="mean", clamp=-1.0, fastemit_lambda=0.0,
    max_chunk_bytes=None, fused=None)``, called as ``loss(encoder_out, predictor_out, targets,
    encoder_lengths, target_lengths)``."""

    def __init__(self, joint, *, blank=-1, reduction="mean", clamp=-1.0, fastemit_lambda=0.0, max_chunk_bytes=None,
                 fused=None):
        super().__init__()
        _check_module_options(joint, blank, reduction, clamp, fastemit_lambda, max_chunk_bytes, fused)
        self.joint = joint
        self.blank, self.reduction, self.clamp, self.fastemit_lambda = blank, reduction, clamp, fastemit_lambda
        self.max_chunk_bytes, self.fused = max_chunk_bytes, fused

    def forward(self, encoder_out, predictor_out, targets, encoder_lengths, target_lengths):
        return samplewise_rnnt_loss(encoder_out, predictor_out, self.joint, targets, encoder_lengths, target_lengths,
                                    blank=self.blank, reduction=self.reduction, clamp=self.clamp,
                                    fastemit_lambda=self.fastemit_lambda, max_chunk_bytes=self.max_chunk_bytes,
                                    fused=self.fused)

    def extra_repr(self):
        return (f"blank={self.blank}, reduction={self.reduction!r}, clamp={self.clamp}, "
                f"fastemit_lambda={self.fastemit_lambda}, max_chunk_bytes={self.max_chunk_bytes}, fused={self.fused}")


def samplewise_tdt_loss(encoder_out, predictor_out, joint: Callable, targets, encoder_lengths, target_lengths, *,
                        durations, blank=-1, reduction="mean", sigma=0.0, omega=0.0, clamp=-1.0, fastemit_lambda=0.0,
                        max_chunk_bytes=None, fused=None):
    """The TDT (Token-and-Duration Transducer) loss computed group by group without the logits.

    Equals ``samplewise_rnnt.tdt_loss(joint(encoder_out.unsqueeze(2), predictor_out.unsqueeze(1)), targets,
    encoder_lengths, target_lengths, durations, blank, reduction, sigma=sigma, omega=omega, clamp=clamp,
    fastemit_lambda=fastemit_lambda)`` in value and in its gradients w.r.t. ``encoder_out``,
    ``predictor_out`` and every parameter of ``joint``, by the same engine as
    :func:`samplewise_rnnt_loss` (planner, groups, tiles, modes, the fused output layer): only the
    loss's three stages differ.

    Args:
        joint: maps ``[n, T, 1, He]``, ``[n, 1, U+1, Hp]`` to ``[n, T, U+1, V1 + D]``: ``V1`` token logits
            (labels and blank) then one logit per duration (NeMo's TDT joint, ``num_extra_outputs = D``).
        durations (keyword): NeMo's duration list, e.g. ``[0, 1, 2, 3, 4]`` (ascending, distinct, with 0
            and 1).
        blank: index among the ``V1`` token classes (default ``-1``: ``V1 - 1``, NeMo's TDT blank).
        sigma, omega, clamp, fastemit_lambda: as in :func:`samplewise_rnnt.tdt_loss` (NeMo's numba TDT
            loss); ``omega`` is drawn once per call (the whole batch uses the standard RNN-T loss of the
            token logits with probability ``omega``).
        reduction, max_chunk_bytes, fused: as in :func:`samplewise_rnnt_loss`.
    """
    V_.check_reduction(reduction)
    durations = V_.check_durations(durations)
    sigma, omega = V_.check_tdt_scalars(sigma, omega)
    return _joint_loss(encoder_out, predictor_out, joint, targets, encoder_lengths, target_lengths, blank, reduction,
                       clamp, fastemit_lambda, max_chunk_bytes, fused, tdt=(durations, sigma, omega))


class SampleWiseTDTLoss(torch.nn.Module):
    """Module form of :func:`samplewise_tdt_loss` (``joint`` registered as a submodule if a module):
    ``SampleWiseTDTLoss(joint, *, durations, blank=-1, reduction="mean", sigma=0.0, omega=0.0, clamp=-1.0,
    fastemit_lambda=0.0, max_chunk_bytes=None, fused=None)``, called as ``loss(encoder_out, predictor_out,
    targets, encoder_lengths, target_lengths)``."""

    def __init__(self, joint, *, durations, blank=-1, reduction="mean", sigma=0.0, omega=0.0, clamp=-1.0,
                 fastemit_lambda=0.0, max_chunk_bytes=None, fused=None):
        super().__init__()
        _check_module_options(joint, blank, reduction, clamp, fastemit_lambda, max_chunk_bytes, fused)
        self.durations = list(V_.check_durations(durations))
        V_.check_tdt_scalars(sigma, omega)
        self.joint = joint
        self.blank, self.reduction, self.sigma, self.omega = blank, reduction, sigma, omega
        self.clamp, self.fastemit_lambda, self.max_chunk_bytes, self.fused = clamp, fastemit_lambda, max_chunk_bytes, fused

    def forward(self, encoder_out, predictor_out, targets, encoder_lengths, target_lengths):
        return samplewise_tdt_loss(encoder_out, predictor_out, self.joint, targets, encoder_lengths, target_lengths,
                                   durations=self.durations, blank=self.blank, reduction=self.reduction,
                                   sigma=self.sigma, omega=self.omega, clamp=self.clamp,
                                   fastemit_lambda=self.fastemit_lambda, max_chunk_bytes=self.max_chunk_bytes,
                                   fused=self.fused)

    def extra_repr(self):
        return (f"durations={self.durations}, blank={self.blank}, reduction={self.reduction!r}, sigma={self.sigma}, "
                f"omega={self.omega}, clamp={self.clamp}, fastemit_lambda={self.fastemit_lambda}, "
                f"max_chunk_bytes={self.max_chunk_bytes}, fused={self.fused}")
