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
from typing import Callable, List, Optional, Sequence

import torch

from . import _validate as V_
from .ops import _core, padded_layout
from .planner import Group, default_budget, plan_groups
from .reference import reduce_costs

__all__ = ["samplewise_rnnt_loss", "SampleWiseRNNTLoss"]

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

    def __init__(self, groups: Sequence[Group], device, weights=None):
        self.groups = list(groups)
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
    with torch.set_grad_enabled(want):  # (forward of an autograd.Function runs with grad mode off)
        ein, pin = e.unsqueeze(2), p.unsqueeze(1)
        logits = joint(ein, pin)
    _check_joint_output(joint, logits, (n, g.T, g.U1, cfg.V), ein, pin)
    layout = padded_layout(n, g.T, g.U1, device)
    if not want or not logits.requires_grad:
        c, _ = _core(logits.detach().reshape(-1, cfg.V), tg_g, tl_g, ul_g, layout, cfg.blank, cfg.clamp,
                     cfg.fastemit_lambda, False)
        costs.index_copy_(0, idx, c.to(costs.dtype))
        return None
    ld = logits.detach()
    inplace = cfg.inplace_ok and _may_overwrite(logits, cfg.owned)
    if not ld.is_contiguous():
        ld = ld.contiguous()
    fp64 = ld.dtype == torch.float64  # the kernels read grad_scale in fp32: scale fp64 gradients here
    scale = plan.wdev.index_select(0, idx) * factor
    if not fp64:
        scale = scale.float()
    c, grad = _core(ld.view(-1, cfg.V), tg_g, tl_g, ul_g, layout, cfg.blank, cfg.clamp, cfg.fastemit_lambda, True,
                    inplace, None if fp64 else scale)
    grad = grad.view(ld.shape)
    if fp64:
        grad.mul_(scale.view(-1, 1, 1, 1))
    costs.index_copy_(0, idx, c.to(costs.dtype))
    # no increment_version(logits) here: the probe established that the joint's backward does not read
    # its output, and bumping the version of a view would make autograd replay it as an AsStrided
    # node (a zero-filled copy of the logits)
    del ld
    # hand the gradient to autograd through _Handoff so that its only reference is released as soon
    # as the joint's last layer has consumed it (with in-place gradients, the logits' storage)
    with torch.enable_grad():
        root = _Handoff.apply(logits, [grad])
    del logits, grad
    grads = list(torch.autograd.grad(root, inputs, allow_unused=True))
    del root
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
    itemsize = torch.empty((), dtype=cfg.logits_dtype).element_size()
    bytes_per_node = cfg.V * itemsize * (2 if grad_work else 1)
    budget = cfg.max_chunk_bytes
    if budget is None:
        budget = default_budget(enc.device)
    elif budget == float("inf"):
        budget = None
    return _Plan(plan_groups(tl_list, ul_list, bytes_per_node, budget), enc.device, weights)


class _SampleWise(torch.autograd.Function):
    @staticmethod
    def forward(ctx, enc, pred, tg, tl, ul, joint, cfg, needs, lens, *params):
        need_enc, need_pred, need_params = needs
        tl_list, ul_list = lens
        B = enc.shape[0]
        ctx.cfg, ctx.joint, ctx.needs, ctx.lens = cfg, joint, needs, lens
        ctx.dtypes = (enc.dtype, pred.dtype, [p.dtype for p in params])
        ctx.recompute = cfg.reduction == "none" and need_params
        if ctx.recompute:
            # costs now; every gradient in backward, weighted by grad_output (same RNG and autocast state)
            ctx.rng = _get_rng(enc.device)
            costs = _run_groups(_plan(enc, tl_list, ul_list, cfg, False), enc, pred, joint, params, tg, tl, ul, cfg,
                                None)
            ctx.save_for_backward(enc, pred, tg, tl, ul, *params)
            return costs
        plan = _plan(enc, tl_list, ul_list, cfg, True, _weights(cfg.reduction, B, ul_list))
        bufs = _Buffers(enc, pred, params, need_enc, need_pred, need_params)
        costs = _run_groups(plan, enc, pred, joint, params, tg, tl, ul, cfg, bufs)
        ctx.n_params = len(params)
        ctx.save_for_backward(*(x if x is not None else torch.empty(0) for x in [bufs.enc, bufs.pred] + bufs.params))
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
        if ctx.recompute:
            enc, pred, tg, tl, ul, *params = ctx.saved_tensors
            bufs = _Buffers(enc, pred, params, need_enc, need_pred, need_params)
            plan = _plan(enc, ctx.lens[0], ctx.lens[1], cfg, True, go.double().tolist())
            dev_type, enabled, dtype = cfg.autocast
            with torch.random.fork_rng(devices=_rng_devices(enc.device)), \
                    torch.autocast(dev_type, dtype=dtype, enabled=enabled):
                _set_rng(enc.device, ctx.rng)
                _run_groups(plan, enc, pred, ctx.joint, params, tg, tl, ul, cfg, bufs)
            g_enc, g_pred, g_par = bufs.enc, bufs.pred, bufs.params
        else:
            g_enc, g_pred, *g_par = ctx.saved_tensors
            if cfg.reduction == "none":  # per-sample gradients were computed with unit weights
                shape = (-1, 1, 1)
                g_enc = g_enc * go.view(shape) if need_enc else None
                g_pred = g_pred * go.view(shape) if need_pred else None
            else:
                g_enc = g_enc * go if need_enc else None
                g_pred = g_pred * go if need_pred else None
                g_par = [g * go if need_params else None for g in g_par]
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
    V_.check_reduction(reduction)
    clamp, fastemit_lambda = V_.check_scalars(clamp, fastemit_lambda)
    max_chunk_bytes = V_.check_budget(max_chunk_bytes)
    V_.check_frames_and_steps("encoder_out", encoder_out, "predictor_out", predictor_out)
    if fused is not None and not isinstance(fused, bool):
        raise TypeError(f"fused must be None (automatic), True or False, got {type(fused).__name__} {fused!r}")
    if not callable(joint):
        raise TypeError(f"joint must be a module or callable, got {type(joint).__name__}")
    if fused is None:
        from .fused import linear_joint_spec

        fused = linear_joint_spec(joint) is not None
    if fused:  # the fused output layer (plugin/samplewise_rnnt/fused.py): no logits tensor at all
        from .fused import fused_samplewise_rnnt_loss

        return fused_samplewise_rnnt_loss(encoder_out, predictor_out, joint, targets, encoder_lengths, target_lengths,
                                          blank=blank, reduction=reduction, clamp=clamp,
                                          fastemit_lambda=fastemit_lambda, max_chunk_bytes=max_chunk_bytes)
    B, T, _ = encoder_out.shape
    U1 = predictor_out.shape[1]
    V, logits_dtype, inplace_ok = _probe(joint, encoder_out, predictor_out)
    blank = V_.normalize_blank(blank, V)
    tg, tl, ul = V_.check_lengths_and_targets(targets, encoder_lengths, target_lengths, B, T, U1 - 1, V, blank,
                                              encoder_out.device, length_name="encoder_lengths")
    lens = (tl.tolist(), ul.tolist())  # host copies for the planner, before the group loop
    dev_type = encoder_out.device.type
    autocast = (dev_type, torch.is_autocast_enabled(dev_type), torch.get_autocast_dtype(dev_type))
    params = _joint_params(joint)
    owned = [encoder_out, predictor_out] + (list(joint.parameters()) + list(joint.buffers())
                                            if isinstance(joint, torch.nn.Module) else [])
    cfg = _Cfg(blank, reduction, clamp, fastemit_lambda, max_chunk_bytes, V, logits_dtype, inplace_ok, autocast,
               _storages(owned))
    grad_on = torch.is_grad_enabled()
    needs = (grad_on and encoder_out.requires_grad, grad_on and predictor_out.requires_grad,
             grad_on and len(params) > 0)
    if not any(needs):  # validation: the loss only
        plan = _plan(encoder_out, lens[0], lens[1], cfg, False)
        costs = _run_groups(plan, encoder_out, predictor_out, joint, params, tg, tl, ul, cfg, None)
        return reduce_costs(costs, ul, reduction)
    return _SampleWise.apply(encoder_out, predictor_out, tg, tl, ul, joint, cfg, needs, lens, *params)


class SampleWiseRNNTLoss(torch.nn.Module):
    """Module form of :func:`samplewise_rnnt_loss`; ``joint`` is registered as a submodule (if a module).

    ``SampleWiseRNNTLoss(joint, *, blank=-1, reduction="mean", clamp=-1.0, fastemit_lambda=0.0,
    max_chunk_bytes=None, fused=None)``, called as ``loss(encoder_out, predictor_out, targets,
    encoder_lengths, target_lengths)``."""

    def __init__(self, joint, *, blank=-1, reduction="mean", clamp=-1.0, fastemit_lambda=0.0, max_chunk_bytes=None,
                 fused=None):
        super().__init__()
        V_.check_reduction(reduction)
        V_.check_scalars(clamp, fastemit_lambda)
        V_.check_budget(max_chunk_bytes)
        if fused is not None and not isinstance(fused, bool):
            raise TypeError(f"fused must be None (automatic), True or False, got {type(fused).__name__} {fused!r}")
        if not callable(joint):
            raise TypeError(f"joint must be a module or callable, got {type(joint).__name__}")
        V_.check_blank_type(blank)
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
