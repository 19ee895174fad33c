"""The exact transducer (RNN-T) loss on logits, backed by the C++/CUDA extension ``samplewise_rnnt._C``.

Shapes and the recursion
------------------------
``logits`` is ``[B, T, U+1, V]`` (padded) or, for the packed entry points, ``[N, V]`` where sample
``b`` occupies rows ``offsets[b] + t * (U_b + 1) + u`` for ``t < T_b``, ``u <= U_b``
(``N = sum_b T_b * (U_b + 1)`` with the default offsets). ``targets`` is ``[B, U]`` (int32 or
int64, padded), ``logit_lengths`` (``T_b``) and ``target_lengths`` (``U_b``) are ``[B]``.

With ``lp = log_softmax(logits)`` (never materialised: the kernels keep one log-sum-exp per node)::

    alpha(0, 0) = 0
    alpha(t, u) = logaddexp(alpha(t-1, u) + lp[t-1, u, blank], alpha(t, u-1) + lp[t, u-1, y[u-1]])
    beta(T-1, U) = lp[T-1, U, blank]
    beta(t, u)  = logaddexp(beta(t+1, u) + lp[t, u, blank], beta(t, u+1) + lp[t, u, y[u]])
    cost = -log P(y|x) = -beta(0, 0)

and the gradient of ``cost`` with respect to ``logits[t, u, v]`` is::

    softmax(v) * (blank_flow + (1 + lambda) * label_flow)
        - [v == blank] * blank_flow - [v == y[u]] * (1 + lambda) * label_flow

where ``blank_flow(t, u)`` and ``label_flow(t, u)`` are the posterior probabilities of the blank
and label transitions leaving node ``(t, u)`` and ``lambda`` is ``fastemit_lambda`` (FastEmit, Yu
et al. 2021, as in NeMo's numba loss and the warp-transducer fork ESPnet uses: the gradient above,
and the reported cost scaled to ``(1 + lambda) * cost``). With
``clamp > 0`` each element of a sample's gradient is clipped to ``[-clamp, clamp]`` before the
reduction's scaling (torchaudio's and warp-transducer's definition).

Half-precision logits (fp16, bf16) are read as they are and accumulated in fp32; fp64 logits are
accumulated in fp64 (for gradcheck). The lattice recursion (alphas, betas) always runs in fp64: it
costs O(T*U), nothing next to the O(T*U*V) stages, and makes the fp32 gradients about 30x (long
lattices: 1000x) more accurate than an fp32 recursion such as torchaudio's. Costs are returned in
fp32 (fp64 for fp64 logits).

``fused_log_softmax=False`` (torchaudio's switch) means the logits already are log-probabilities
(``log_softmax`` was applied outside the loss): ``lp = logits`` in the recursion, and the gradient
has no softmax term (``-blank_flow`` at blank, ``-(1 + lambda) * label_flow`` at ``y[u]``, zero
elsewhere). The kernels compute it with the same per-cell formula, the normaliser taken as
``+inf`` so that the softmax term vanishes.
"""
from __future__ import annotations

from typing import NamedTuple, Optional, Tuple

import torch

from . import _validate as V_

try:  # the compiled extension; a clear error at call time if the build is missing
    from . import _C  # type: ignore
    _IMPORT_ERROR = None
except ImportError as exc:  # pragma: no cover - exercised only on a broken install
    _C = None
    _IMPORT_ERROR = exc

__all__ = ["rnnt_loss", "RNNTLoss", "rnnt_loss_packed", "rnnt_loss_and_grad", "rnnt_lattice", "cuda_built"]


def _ext():
    if _C is None:
        raise ImportError(
            "samplewise_rnnt._C (the compiled extension) could not be imported: "
            f"{_IMPORT_ERROR}. Build it with `pip install --no-build-isolation .` or `make build`."
        )
    return _C


def cuda_built() -> bool:
    """True when the extension was compiled with its CUDA kernels."""
    return bool(_ext().cuda_built())


# ----------------------------------------------------------------------------------------------
# layouts: every kernel sees sample b as a block of nrows[b] x strides[b] nodes from offsets[b]
# ----------------------------------------------------------------------------------------------
class Layout(NamedTuple):
    """Where each sample's nodes lie in the ``[N, V]`` rows, plus the host maxima the kernels need
    (``max_rows = max_b nrows[b]``, ``max_stride = max_b strides[b]``), so that no kernel call
    synchronises with the device to find them."""

    offsets: torch.Tensor
    strides: torch.Tensor
    nrows: torch.Tensor
    max_rows: int
    max_stride: int
    gaps: bool = False  # rows of the [N, V] logits that belong to no sample


def padded_layout(B, T, U1, device) -> Layout:
    """The layout of padded logits ``[B, T, U1, V]`` seen as ``[B * T * U1, V]``."""
    offsets = torch.arange(B, device=device, dtype=torch.int64) * (T * U1)
    strides = torch.full((B,), U1, device=device, dtype=torch.int64)
    nrows = torch.full((B,), T, device=device, dtype=torch.int64)
    return Layout(offsets, strides, nrows, int(T), int(U1))


def _packed_layout(tl, ul, offsets, N, stats) -> Layout:
    sizes = tl * (ul + 1)
    total = stats["nodes"]
    if offsets is None:
        if total != N:
            raise ValueError(f"logits has {N} rows but sum_b logit_lengths[b] * (target_lengths[b] + 1) = {total}")
        offsets = torch.cumsum(sizes, 0) - sizes
        gaps = False
    else:
        V_.check_tensor("offsets", offsets, 1, V_.INT_DTYPES, tl.device)
        if offsets.shape[0] != tl.shape[0]:
            raise ValueError(f"offsets has {offsets.shape[0]} entries but the batch size is {tl.shape[0]}")
        offsets = offsets.long().contiguous()
        lo, hi = torch.stack([offsets.min(), (offsets + sizes).max()]).tolist()
        if lo < 0 or hi > N:
            raise ValueError(f"offsets place a sample in rows [{lo}, {hi}) outside the {N} rows of logits")
        # samples must not share rows: sorted by offset, each must end before the next begins
        order = torch.argsort(offsets, stable=True)
        starts, ends = offsets[order], (offsets + sizes)[order]
        overlap = (ends[:-1] > starts[1:]).nonzero()
        if overlap.numel():
            i = int(overlap[0])
            b1, b2 = int(order[i]), int(order[i + 1])
            raise ValueError(f"offsets make samples {b1} and {b2} share rows: sample {b1} occupies rows "
                             f"[{int(starts[i])}, {int(ends[i])}) and sample {b2} starts at row {int(starts[i + 1])}")
        gaps = total != N
    return Layout(offsets.contiguous(), (ul + 1).contiguous(), tl.contiguous(), stats["T_max"], stats["U_max"] + 1,
                  gaps)


def node_coords(layout: Layout, tl, ul):
    """``(b, t, u, row)`` of every lattice node of every sample (t < T_b, u <= U_b), as int64 tensors."""
    sizes = tl * (ul + 1)
    B = tl.shape[0]
    dev = tl.device
    b = torch.repeat_interleave(torch.arange(B, device=dev), sizes)
    pos = torch.arange(b.shape[0], device=dev) - torch.repeat_interleave(torch.cumsum(sizes, 0) - sizes, sizes)
    U1 = ul[b] + 1
    t, u = pos // U1, pos % U1
    row = layout.offsets[b] + t * layout.strides[b] + u
    return b, t, u, row


def _check_logits(logits, ndim):
    V_.check_tensor("logits", logits, ndim, V_.FLOAT_DTYPES)
    if logits.shape[-1] < 1:
        raise ValueError(f"logits must have at least one class, got shape {tuple(logits.shape)}")


def _prepare(logits, targets, logit_lengths, target_lengths, blank, clamp, fastemit_lambda, packed, offsets):
    """Validate everything; return (logits2d, targets64, tl, ul, layout, blank, clamp, fastemit_lambda)."""
    _check_logits(logits, 2 if packed else 4)
    clamp, fastemit_lambda = V_.check_scalars(clamp, fastemit_lambda)
    V = logits.shape[-1]
    blank = V_.normalize_blank(blank, V)
    logits2d, tg, tl, ul, layout = _rows_and_layout(logits, targets, logit_lengths, target_lengths, V, blank, packed,
                                                    offsets)
    return logits2d, tg, tl, ul, layout, blank, clamp, fastemit_lambda


def _rows_and_layout(logits, targets, logit_lengths, target_lengths, V, blank, packed, offsets):
    """The checked lengths and targets (labels in ``[0, V)``, not ``blank``), the layout, and the logits as
    contiguous ``[N, W]`` rows (padded ``[B, T, U+1, W]`` or packed ``[N, W]``); shared by the RNN-T and
    TDT ops (``W = V`` for RNN-T, ``V1 + D`` for TDT)."""
    device = logits.device
    if packed:
        V_.check_tensor("logit_lengths", logit_lengths, 1, V_.INT_DTYPES, device)
        B = logit_lengths.shape[0]
        stats = {}
        tg, tl, ul = V_.check_lengths_and_targets(targets, logit_lengths, target_lengths, B, float("inf"), None, V,
                                                  blank, device, stats_out=stats)
        layout = _packed_layout(tl, ul, offsets, logits.shape[0], stats)
        logits2d = logits
    else:
        B, T, U1, W = logits.shape
        if B < 1 or T < 1 or U1 < 1:
            raise ValueError(f"logits must be non-empty in B, T and U+1, got shape {tuple(logits.shape)}")
        tg, tl, ul = V_.check_lengths_and_targets(targets, logit_lengths, target_lengths, B, T, U1 - 1, V, blank,
                                                  device)
        layout = padded_layout(B, T, U1, device)
        logits2d = logits.reshape(B * T * U1, W)
    if not logits2d.is_contiguous():
        logits2d = logits2d.contiguous()
    if logits2d.is_cuda and not _ext().cuda_built():
        raise ValueError("logits is on a CUDA device but samplewise_rnnt was built without CUDA kernels "
                         "(rebuild with nvcc available and SWR_FORCE_CPU unset)")
    return logits2d, tg, tl, ul, layout


def _log_prob_scores(logits2d, tg, tl, ul, layout: Layout, blank):
    """Stage 1 for logits that already are log-probabilities: lp_blank and lp_label read from the
    logits, lse = +inf on lattice nodes (the gradient's softmax term vanishes); padding nodes get
    -inf log-probabilities and lse 0, as the kernel gives them."""
    acc = torch.float64 if logits2d.dtype == torch.float64 else torch.float32
    N, dev = logits2d.shape[0], logits2d.device
    lse = torch.zeros(N, dtype=acc, device=dev)
    lpb = torch.full((N,), float("-inf"), dtype=acc, device=dev)
    lpl = torch.full((N,), float("-inf"), dtype=acc, device=dev)
    b, _, u, row = node_coords(layout, tl, ul)
    lse[row] = float("inf")
    lpb[row] = logits2d[row, blank].to(acc)
    has = u < ul[b]
    lpl[row[has]] = logits2d[row[has], tg[b[has], u[has]]].to(acc)
    return lse, lpb, lpl


def _grad_target(logits2d, layout: Layout, tl, ul, inplace):
    """Where stage 3 writes the gradient: the logits themselves (``inplace``) or a new tensor like them;
    rows that belong to no sample (packed layouts with gaps) are zero in either case."""
    if inplace:
        if layout.gaps:
            covered = torch.zeros(logits2d.shape[0], dtype=torch.bool, device=logits2d.device)
            covered[node_coords(layout, tl, ul)[3]] = True
            logits2d[~covered] = 0
        return logits2d
    grad = torch.empty_like(logits2d, memory_format=torch.contiguous_format)
    _ext().advise_hugepages(grad)  # fresh memory the size of the logits: 2 MiB pages, not 4 KiB ones (CPU)
    return grad.zero_() if layout.gaps else grad


def _rnnt_scores(logits2d, tg, tl, ul, layout: Layout, blank):
    """Stage 1 on the rows of ``layout``: (lse, lp_blank, lp_label) per node."""
    return tuple(_ext().node_scores(logits2d, layout.offsets, layout.strides, layout.nrows, tl, ul, tg, blank,
                                    layout.max_rows, layout.max_stride))


def _rnnt_lattice(scores, tl, ul, layout: Layout, want_flows):
    """Stage 2: (costs [B], (blank_flow, label_flow) or (None, None)); plain negative log-likelihoods
    (without FastEmit's ``1 + lambda``)."""
    costs, bf, lf = _ext().lattice(scores[1], scores[2], layout.offsets, layout.strides, tl, ul, want_flows,
                                   layout.max_rows, layout.max_stride)
    return costs, (bf, lf)


def _rnnt_grad(logits2d, grad, scores, flows, tg, tl, ul, layout: Layout, blank, clamp, fastemit_lambda,
               grad_scale=None):
    """Stage 3: writes each node's logits gradient into ``grad`` (may be ``logits2d``), clamped, times
    ``grad_scale[b]`` ([B], optional)."""
    scale = grad_scale.float().contiguous() if grad_scale is not None else torch.empty(0, device=logits2d.device)
    _ext().logits_grad(logits2d, grad, scores[0], flows[0], flows[1], layout.offsets, layout.strides, layout.nrows,
                       tl, ul, tg, blank, float(clamp), float(fastemit_lambda), scale, layout.max_rows,
                       layout.max_stride)
    return grad


def _core(logits2d, tg, tl, ul, layout: Layout, blank, clamp, fastemit_lambda, want_grad, inplace=False,
          grad_scale=None, log_softmax=True):
    """The three stages on validated input (no host synchronisation). Returns (costs [B], grad or None)."""
    if log_softmax:
        scores = _rnnt_scores(logits2d, tg, tl, ul, layout, blank)
    else:
        scores = _log_prob_scores(logits2d, tg, tl, ul, layout, blank)
    costs, flows = _rnnt_lattice(scores, tl, ul, layout, want_grad)
    if fastemit_lambda:
        costs = costs * (1.0 + fastemit_lambda)  # the FastEmit convention of NeMo / warp-transducer
    grad = None
    if want_grad:
        grad = _rnnt_grad(logits2d, _grad_target(logits2d, layout, tl, ul, inplace), scores, flows, tg, tl, ul,
                          layout, blank, clamp, fastemit_lambda, grad_scale)
    return costs, grad


def rnnt_loss_and_grad(logits, targets, logit_lengths, target_lengths, blank=-1, clamp=-1.0, *,
                       fused_log_softmax=True, fastemit_lambda=0.0, packed=False, offsets=None, inplace=False,
                       grad_scale=None, compute_grad=True) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Per-sample costs and the gradient of each sample's cost with respect to its logits.

    No autograd. ``costs`` is ``[B]`` (fp32; fp64 for fp64 logits); ``grad`` has the logits' shape
    and dtype and is zero outside each sample's lengths (and, for packed logits, on rows that belong
    to no sample). ``inplace=True`` writes the gradient over ``logits`` (which must then be
    contiguous) and returns it; ``grad_scale`` ([B]) multiplies each sample's gradient after
    clamping. ``packed=True`` takes ``[N, V]`` logits as :func:`rnnt_loss_packed` does.
    """
    V_.check_flag("inplace", inplace)
    V_.check_flag("packed", packed)
    V_.check_flag("fused_log_softmax", fused_log_softmax)
    V_.check_flag("compute_grad", compute_grad)
    if inplace and isinstance(logits, torch.Tensor) and not logits.is_contiguous():
        raise ValueError("logits must be contiguous when inplace=True")
    logits2d, tg, tl, ul, layout, blank, clamp, lam = _prepare(logits, targets, logit_lengths, target_lengths, blank,
                                                               clamp, fastemit_lambda, packed, offsets)
    if grad_scale is not None:
        V_.check_tensor("grad_scale", grad_scale, 1, V_.FLOAT_DTYPES, logits.device)
        if grad_scale.shape[0] != tl.shape[0]:
            raise ValueError(f"grad_scale has {grad_scale.shape[0]} entries but the batch size is {tl.shape[0]}")
    with torch.no_grad():
        costs, grad = _core(logits2d.detach(), tg, tl, ul, layout, blank, clamp, lam, compute_grad, inplace,
                            grad_scale, fused_log_softmax)
    if grad is not None:
        grad = grad.view(logits.shape)
    return costs, grad


def _sample_weights(grad_output, reduction, B, ul, dtype):
    go = grad_output.to(dtype)
    if reduction == "none":
        return go
    if reduction == "sum":
        return go.expand(B)
    if reduction == "mean":
        return (go / B).expand(B)
    return (go / ul.sum().clamp_min(1).to(dtype)).expand(B)


class _RNNTLossFunction(torch.autograd.Function):
    """Forward computes the per-sample costs and, when the logits need a gradient, that gradient. For a
    scalar reduction of float32/16/bf16 logits the kernel already scales it by the reduction's weight
    (1/B for "mean"). Backward hands that tensor out, multiplied in place by ``grad_output`` (skipped
    when it is 1 on the CPU): no second tensor of the logits' size. It keeps no reference to it
    afterwards (autograd may adopt it as ``logits.grad``), so a repeated backward through a retained
    graph recomputes the gradient from the saved logits."""

    @staticmethod
    def forward(ctx, logits, targets, logit_lengths, target_lengths, blank, reduction, clamp, fastemit_lambda,
                packed, offsets, log_softmax):
        logits2d, tg, tl, ul, layout, blank, clamp, lam = _prepare(logits, targets, logit_lengths, target_lengths,
                                                                   blank, clamp, fastemit_lambda, packed, offsets)
        want_grad = ctx.needs_input_grad[0]
        ctx.prescaled = want_grad and reduction != "none" and logits2d.dtype != torch.float64
        costs, grad = _core(logits2d.detach(), tg, tl, ul, layout, blank, clamp, lam, want_grad,
                            grad_scale=_RNNTLossFunction._scale(ctx, reduction, tl, ul), log_softmax=log_softmax)
        ctx.reduction = reduction
        ctx.packed = packed
        ctx.shape = logits.shape
        ctx.args = (tg, tl, ul, layout, blank, clamp, lam, log_softmax)
        ctx.grad = grad
        if want_grad:
            ctx.save_for_backward(logits)  # only for a repeated backward (retain_graph=True)
        from .reference import reduce_costs
        return reduce_costs(costs, ul, reduction)

    @staticmethod
    def _scale(ctx, reduction, tl, ul):
        """The reduction's per-sample weights ([B] fp32) when the kernel applies them, else None."""
        if not ctx.prescaled:
            return None
        return _sample_weights(torch.ones((), device=ul.device), reduction, tl.shape[0], ul, torch.float32)

    @staticmethod
    def backward(ctx, grad_output):
        tg, tl, ul, layout, blank, clamp, lam, log_softmax = ctx.args
        grad, ctx.grad = ctx.grad, None
        if grad is None:  # a second backward through a retained graph: the first one gave the tensor away
            (logits,) = ctx.saved_tensors
            x = logits.detach().reshape(-1, logits.shape[-1])
            _, grad = _core(x if x.is_contiguous() else x.contiguous(), tg, tl, ul, layout, blank, clamp, lam, True,
                            grad_scale=_RNNTLossFunction._scale(ctx, ctx.reduction, tl, ul), log_softmax=log_softmax)
        grad = _grad_times_output(grad, grad_output, ctx.reduction, ctx.prescaled, ctx.packed, layout, tl, ul)
        return (grad.view(ctx.shape),) + (None,) * 10


def _grad_times_output(grad, grad_output, reduction, prescaled, packed, layout, tl, ul):
    """The backward of a loss whose forward left per-sample gradients ``grad`` (``[N, W]`` rows of the
    layout): multiplied in place by ``grad_output`` and, unless the kernel already applied them
    (``prescaled``), by the reduction's per-sample weights. fp16 is multiplied in fp32 (a grad scaler's
    2**16 does not fit fp16). Returns ``grad``."""
    if prescaled:
        if not (grad_output.device.type == "cpu" and float(grad_output) == 1.0):
            if grad.dtype == torch.float16:
                grad.copy_(grad.float() * grad_output.float())
            else:
                grad.mul_(grad_output.to(grad.dtype))
        return grad
    B = ul.shape[0]
    w = _sample_weights(grad_output, reduction, B, ul, torch.float64 if grad.dtype == torch.float64 else torch.float32)
    if packed:
        rows = torch.zeros(grad.shape[0], dtype=w.dtype, device=grad.device)
        b, _, _, row = node_coords(layout, tl, ul)
        rows[row] = w[b]
        grad.mul_(rows[:, None].to(grad.dtype))
    elif grad.dtype == torch.float16:
        gv = grad.view(B, -1)
        gv.copy_(gv.float() * w[:, None])
    else:
        grad.view(B, -1).mul_(w[:, None].to(grad.dtype))
    return grad


def rnnt_loss(logits, targets, logit_lengths, target_lengths, blank=-1, clamp=-1, reduction="mean",
              fused_log_softmax=True, *, fastemit_lambda=0.0):
    """Exact RNN-T loss; a drop-in for ``torchaudio.functional.rnnt_loss`` (same positional order,
    names, defaults and meanings).

    Args:
        logits: ``[B, T, U+1, V]`` float32, float16, bfloat16 or float64. Never modified.
        targets: ``[B, U]`` int32/int64, padded; labels within ``target_lengths`` lie in ``[0, V)``
            and differ from ``blank``.
        logit_lengths: ``[B]`` frames per sample, ``1 <= T_b <= T``.
        target_lengths: ``[B]`` labels per sample, ``0 <= U_b <= U``.
        blank: blank index (default ``-1``, torchaudio's: the last class); negative counts from the end.
        clamp: if > 0, each element of a sample's gradient is clipped to ``[-clamp, clamp]``.
        reduction: ``"none"`` (``[B]``), ``"sum"``, ``"mean"`` (sum / B, as torchaudio and
            warp-transducer) or ``"mean_volume"`` (sum / sum(target_lengths), as NeMo).
        fused_log_softmax: ``True`` (default): the logits are unnormalised and the log-softmax is
            fused into the kernels; ``False``: the logits already are log-probabilities (torchaudio's
            meaning: ``log_softmax`` was called outside the loss).
        fastemit_lambda: keyword only; FastEmit regularisation weight (0 disables).

    Returns:
        the reduced loss (fp32; fp64 for fp64 logits), a negative log-likelihood in nats.
    """
    V_.check_reduction(reduction)
    V_.check_flag("fused_log_softmax", fused_log_softmax)
    return _RNNTLossFunction.apply(logits, targets, logit_lengths, target_lengths, blank, reduction, clamp,
                                   fastemit_lambda, False, None, fused_log_softmax)


def rnnt_loss_packed(logits, targets, logit_lengths, target_lengths, blank=-1, clamp=-1, reduction="mean",
                     fused_log_softmax=True, *, offsets=None, fastemit_lambda=0.0):
    """:func:`rnnt_loss` for logits without padding: ``[N, V]``, sample ``b`` at rows
    ``offsets[b] + t * (U_b + 1) + u``. ``offsets`` (keyword, ``[B]`` int) defaults to the exclusive
    cumulative sum of ``T_b * (U_b + 1)`` (then ``N`` must equal the total); explicit offsets may
    leave rows between samples (their gradient is zero) but samples must not share rows."""
    V_.check_reduction(reduction)
    V_.check_flag("fused_log_softmax", fused_log_softmax)
    return _RNNTLossFunction.apply(logits, targets, logit_lengths, target_lengths, blank, reduction, clamp,
                                   fastemit_lambda, True, offsets, fused_log_softmax)


class RNNTLoss(torch.nn.Module):
    """Module form of :func:`rnnt_loss`, a drop-in for ``torchaudio.transforms.RNNTLoss``:
    ``RNNTLoss(blank=-1, clamp=-1., reduction="mean", fused_log_softmax=True, *, fastemit_lambda=0.0)``,
    called as ``loss(logits, targets, logit_lengths, target_lengths)``."""

    def __init__(self, blank=-1, clamp=-1.0, reduction="mean", fused_log_softmax=True, *, fastemit_lambda=0.0):
        super().__init__()
        V_.check_reduction(reduction)
        V_.check_scalars(clamp, fastemit_lambda)
        V_.check_flag("fused_log_softmax", fused_log_softmax)
        V_.check_blank_type(blank)
        self.blank, self.clamp, self.reduction = blank, clamp, reduction
        self.fused_log_softmax, self.fastemit_lambda = fused_log_softmax, fastemit_lambda

    def forward(self, logits, targets, logit_lengths, target_lengths):
        return rnnt_loss(logits, targets, logit_lengths, target_lengths, self.blank, self.clamp, self.reduction,
                         self.fused_log_softmax, fastemit_lambda=self.fastemit_lambda)

    def extra_repr(self):
        return (f"blank={self.blank}, clamp={self.clamp}, reduction={self.reduction!r}, "
                f"fused_log_softmax={self.fused_log_softmax}, fastemit_lambda={self.fastemit_lambda}")


def rnnt_lattice(lp_blank, lp_label, logit_lengths, target_lengths, want_flows=True):
    """The lattice recursion alone, on per-node log-probabilities (for fused output layers).

    ``lp_blank`` and ``lp_label`` are ``[B, T, U+1]`` float32/float64 (``lp_label[b, t, u]`` is the
    log-probability of ``y[u]`` at node ``(t, u)``; column ``U_b`` is ignored). Returns
    ``(costs [B], blank_flow, label_flow)``: the flows are the posterior probabilities of each
    transition, i.e. ``-d cost / d lp_blank`` and ``-d cost / d lp_label`` (``None`` unless
    ``want_flows``).
    """
    V_.check_tensor("lp_blank", lp_blank, 3, (torch.float32, torch.float64))
    V_.check_tensor("lp_label", lp_label, 3, (lp_blank.dtype,), lp_blank.device, device_of="lp_blank")
    V_.check_flag("want_flows", want_flows)
    if lp_label.shape != lp_blank.shape:
        raise ValueError(f"lp_label has shape {tuple(lp_label.shape)} but lp_blank has {tuple(lp_blank.shape)}")
    B, T, U1 = lp_blank.shape
    if B < 1 or T < 1 or U1 < 1:
        raise ValueError(f"lp_blank must be non-empty in B, T and U+1, got shape {tuple(lp_blank.shape)}")
    V_.check_tensor("logit_lengths", logit_lengths, 1, V_.INT_DTYPES, lp_blank.device, device_of="lp_blank")
    dummy_targets = torch.zeros(B, U1 - 1, dtype=torch.int64, device=lp_blank.device)
    _, tl, ul = V_.check_lengths_and_targets(dummy_targets, logit_lengths, target_lengths, B, T, U1 - 1, 1, -1,
                                             lp_blank.device, check_labels=False)
    if lp_blank.is_cuda and not _ext().cuda_built():
        raise ValueError("lp_blank is on a CUDA device but samplewise_rnnt was built without CUDA kernels")
    lay = padded_layout(B, T, U1, lp_blank.device)
    costs, bf, lf = _ext().lattice(lp_blank.reshape(-1).contiguous(), lp_label.reshape(-1).contiguous(), lay.offsets,
                                   lay.strides, tl, ul, want_flows, lay.max_rows, lay.max_stride)
    if not want_flows:
        return costs, None, None
    return costs, bf.view(B, T, U1), lf.view(B, T, U1)
