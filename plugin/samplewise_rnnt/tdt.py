"""The exact TDT (Token-and-Duration Transducer) loss on logits, as NeMo defines and trains it.

Layout (NeMo's)
---------------
``logits`` is ``[B, T, U+1, V1 + D]`` (padded) or ``[N, V1 + D]`` (packed, rows as in
:func:`samplewise_rnnt.rnnt_loss_packed`): per lattice node, ``V1`` token logits (the ``V`` labels and
the blank; NeMo's blank is the last token class, ``V1 - 1``, our default ``blank=-1``) followed by one
logit per entry of ``durations`` (NeMo's ``durations`` list, e.g. ``[0, 1, 2, 3, 4]``).

The lattice
-----------
Per node ``(t, u)``, with ``lse`` the log-sum-exp of the ``V1`` token logits::

    lp_blank    = x[blank] - lse - sigma          lp_label = x[y[u]] - lse - sigma      (u < U)
    lp_dur[i]   = log_softmax(x[V1:])[i]          (the probability of duration durations[i])

A blank of duration ``d > 0`` moves ``(t, u) -> (t + d, u)``, a label ``y[u]`` of duration ``d >= 0``
moves ``(t, u) -> (t + d, u + 1)``, each with score ``lp_blank`` (``lp_label``) ``+ lp_dur[d]``; arcs
land on nodes ``t + d < T``, except the final blanks that leave ``(T - d, U)`` with ``d > 0``::

    alpha(0, 0) = 0
    alpha(t, u) = logsumexp_d [ alpha(t-d, u) + lp_blank(t-d, u) + lp_dur(t-d, u, d)        (d > 0)
                                alpha(t-d, u-1) + lp_label(t-d, u-1) + lp_dur(t-d, u-1, d) ]
    cost = -logsumexp_{d > 0} [ alpha(T-d, U) + lp_blank(T-d, U) + lp_dur(T-d, U, d) ]

``sigma`` (logit under-normalisation, the TDT paper's) is subtracted once per emitted symbol. The
gradient with respect to a token logit is RNN-T's (``rnnt_loss``'s docstring), with the blank and label
flows of a node summed over the durations; with respect to duration logit ``i``::

    softmax(x[V1:])[i] * (total flow out of the node) - (flow of the node's arcs of duration durations[i])

NeMo's numba loss (``loss_name: tdt``, what NeMo trains with) is followed where it differs from its
pure-PyTorch ``TDTLossPytorch``:

* unreachable scores are exact ``-inf`` (numba: ``-10000``, PyTorch: ``-1000``; with 0 and 1 among the
  durations every node is reachable, so only the rounding differs);
* ``fastemit_lambda`` (numba only): the cost is reported as ``(1 + lambda) * cost`` and the token
  gradient is RNN-T's FastEmit gradient (label flows summed over the durations); the duration logits
  get no FastEmit term;
* ``clamp > 0`` (numba only) clips each element of the TOKEN gradient to ``[-clamp, clamp]`` (before the
  reduction's scaling); the duration gradient is not clipped (numba clips its token gradients only and
  leaves the duration gradients to autograd through ``log_softmax``);
* ``omega`` (numba only): with probability ``omega`` per call, the loss of the whole call is the standard
  RNN-T loss of the token logits instead (numba's ``compute_alphas_kernel``: no sigma, no durations;
  FastEmit and clamp as for RNN-T) and the duration logits get a zero gradient. NeMo draws
  ``random.uniform(0, 1) < omega`` from Python's ``random`` once per call; we draw once per call from
  torch's default CPU generator (:func:`draw_rnnt_mode`), so ``torch.manual_seed`` makes the draws
  reproducible; nothing is drawn when ``omega`` is 0 or 1.

Reductions are ``rnnt_loss``'s: ``"none"``, ``"sum"``, ``"mean"`` (sum / B: NeMo's ``mean_batch``) and
``"mean_volume"`` (sum / sum(target_lengths), NeMo's ``mean_volume``). NeMo's ``mean`` (the mean of
``cost_b / U_b``) is ``(tdt_loss(..., reduction="none") / target_lengths).mean()``.

Stages (for the engine and the fused output layer)
---------------------------------------------------
:func:`_tdt_core` runs the three stages on validated input; each stage also has a small wrapper that
takes any :class:`~samplewise_rnnt.ops.Layout` (a sub-layout: a tile, a group of samples) whose rows
index both the logits and the node arrays:

* :func:`_tdt_scores` (stage 1): logits ``[N, V1 + D]`` -> :class:`TDTScores` ``(lse, lp_blank,
  lp_label [N], lp_dur [N, D])``;
* :func:`_tdt_lattice` (stage 2): scores -> ``(costs [B], TDTFlows(blank_flow, label_flow [N],
  dur_flow [N, D]) or None)``;
* :func:`_tdt_grad` (stage 3): logits, scores and flows -> the gradient ``[N, V1 + D]`` (may be the
  logits themselves).

Node arrays are fp32 (fp64 for fp64 logits), the recursion runs in fp64, and half-precision logits are
read as they are and accumulated in fp32, as for ``rnnt_loss``.
"""
from __future__ import annotations

from typing import NamedTuple, Optional, Sequence, Tuple

import torch

from . import _validate as V_
from .ops import Layout, _check_logits, _ext, _grad_target, _grad_times_output, _rows_and_layout, _sample_weights

__all__ = ["tdt_loss", "TDTLoss", "tdt_loss_packed", "draw_rnnt_mode"]


class TDTScores(NamedTuple):
    """Stage 1's node arrays (fp32; fp64 for fp64 logits), indexed like the logits' rows: ``lse`` [N]
    the token log-sum-exp (without sigma), ``lp_blank`` / ``lp_label`` [N] (minus sigma; ``-inf`` in the
    last column and on padding), ``lp_dur`` [N, D] the duration log-softmax."""

    lse: torch.Tensor
    lp_blank: torch.Tensor
    lp_label: torch.Tensor
    lp_dur: torch.Tensor


class TDTFlows(NamedTuple):
    """Stage 2's flows (posterior probabilities of the arcs leaving each node): ``blank_flow`` and
    ``label_flow`` [N] summed over the durations, ``dur_flow`` [N, D] per duration (blank + label;
    zero in RNN-T mode). ``-d cost / d lp_blank = blank_flow`` etc."""

    blank_flow: torch.Tensor
    label_flow: torch.Tensor
    dur_flow: torch.Tensor


def draw_rnnt_mode(omega: float, generator: Optional[torch.Generator] = None) -> bool:
    """NeMo's omega draw: True (compute the standard RNN-T loss for this call) with probability ``omega``.

    One draw of ``torch.rand((), generator=generator) < omega`` on the CPU (torch's default CPU
    generator unless ``generator`` is given: reproducible under ``torch.manual_seed``; no device
    synchronisation); no draw at all when ``omega <= 0`` (False) or ``omega >= 1`` (True). The engine
    draws once per batch and passes the result down as ``rnnt_mode``.
    """
    if omega <= 0.0:
        return False
    if omega >= 1.0:
        return True
    return bool(torch.rand((), generator=generator) < omega)


def _tdt_scores(logits2d, tg, tl, ul, layout: Layout, blank: int, durations: Sequence[int], sigma: float,
                rnnt_mode: bool = False) -> TDTScores:
    """Stage 1 on the rows of ``layout``: :class:`TDTScores`. ``rnnt_mode`` drops sigma (NeMo's omega
    branch computes the plain RNN-T loss)."""
    lse, lpb, lpl, lpd = _ext().tdt_node_scores(logits2d, layout.offsets, layout.strides, layout.nrows, tl, ul, tg,
                                                blank, list(durations), 0.0 if rnnt_mode else float(sigma),
                                                layout.max_rows, layout.max_stride)
    return TDTScores(lse, lpb, lpl, lpd)


def _tdt_lattice(scores: TDTScores, tl, ul, layout: Layout, durations: Sequence[int], want_flows: bool,
                 rnnt_mode: bool = False) -> Tuple[torch.Tensor, Optional[TDTFlows]]:
    """Stage 2: ``(costs [B], flows or None)``; the costs are plain negative log-likelihoods (without
    FastEmit's ``1 + lambda``, which :func:`_tdt_core` applies). ``rnnt_mode``: the standard RNN-T
    lattice on ``lp_blank`` / ``lp_label`` (arcs: label of duration 0, blank of duration 1, no duration
    scores), the same kernel with a flag."""
    costs, bf, lf, df = _ext().tdt_lattice(scores.lp_blank, scores.lp_label, scores.lp_dur, layout.offsets,
                                           layout.strides, tl, ul, list(durations), bool(rnnt_mode),
                                           bool(want_flows), layout.max_rows, layout.max_stride)
    return costs, (TDTFlows(bf, lf, df) if want_flows else None)


def _tdt_grad(logits2d, grad, scores: TDTScores, flows: TDTFlows, tg, tl, ul, layout: Layout, blank: int,
              clamp: float, fastemit_lambda: float, grad_scale: Optional[torch.Tensor] = None):
    """Stage 3: writes ``d cost_b / d logits`` of every node of ``layout`` into ``grad`` (``[N, V1 + D]``
    like ``logits2d``, which it may be), token part clamped, times ``grad_scale[b]`` ([B], optional);
    rows outside the samples' lengths but inside their ``nrows x strides`` blocks get 0, other rows are
    not written. Returns ``grad``."""
    scale = grad_scale.float().contiguous() if grad_scale is not None else torch.empty(0, device=logits2d.device)
    _ext().tdt_logits_grad(logits2d, grad, scores.lse, scores.lp_dur, flows.blank_flow, flows.label_flow,
                           flows.dur_flow, layout.offsets, layout.strides, layout.nrows, tl, ul, tg, blank,
                           float(clamp), float(fastemit_lambda), scale, layout.max_rows, layout.max_stride)
    return grad


def _tdt_core(logits2d, tg, tl, ul, layout: Layout, blank, durations, sigma, clamp, fastemit_lambda, want_grad,
              inplace=False, grad_scale=None, rnnt_mode=False):
    """The three stages on validated input (no host synchronisation), as ``ops._core``: returns
    ``(costs [B], grad or None)``, costs times ``1 + fastemit_lambda``; ``inplace`` writes the gradient
    over ``logits2d``; ``grad_scale`` [B] multiplies each sample's gradient after clamping."""
    scores = _tdt_scores(logits2d, tg, tl, ul, layout, blank, durations, sigma, rnnt_mode)
    costs, flows = _tdt_lattice(scores, tl, ul, layout, durations, want_grad, rnnt_mode)
    if fastemit_lambda:
        costs = costs * (1.0 + fastemit_lambda)
    grad = None
    if want_grad:
        grad = _grad_target(logits2d, layout, tl, ul, inplace)
        _tdt_grad(logits2d, grad, scores, flows, tg, tl, ul, layout, blank, clamp, fastemit_lambda, grad_scale)
    return costs, grad


class _Prepared(NamedTuple):
    logits2d: torch.Tensor
    tg: torch.Tensor
    tl: torch.Tensor
    ul: torch.Tensor
    layout: Layout
    blank: int
    durations: Tuple[int, ...]
    sigma: float
    omega: float
    clamp: float
    fastemit_lambda: float


def _prepare_tdt(logits, targets, logit_lengths, target_lengths, durations, blank, sigma, omega, clamp,
                 fastemit_lambda, packed, offsets) -> _Prepared:
    """Validate everything (one checked entry point before any kernel); inputs are not modified."""
    durations = V_.check_durations(durations)
    _check_logits(logits, 2 if packed else 4)
    D, W = len(durations), logits.shape[-1]
    if W <= D:
        raise ValueError(f"logits has {W} entries in its last dimension but durations has {D}: the last "
                         f"dimension holds V1 >= 1 token classes, then the {D} duration logits")
    V1 = W - D
    clamp, lam = V_.check_scalars(clamp, fastemit_lambda)
    sigma, omega = V_.check_tdt_scalars(sigma, omega)
    blank = V_.normalize_blank(blank, V1)
    logits2d, tg, tl, ul, layout = _rows_and_layout(logits, targets, logit_lengths, target_lengths, V1, blank, packed,
                                                    offsets)
    return _Prepared(logits2d, tg, tl, ul, layout, blank, durations, sigma, omega, clamp, lam)


class _TDTLossFunction(torch.autograd.Function):
    """As ``ops._RNNTLossFunction``: forward computes the per-sample costs and, when the logits need a
    gradient, that gradient (prescaled by the reduction's weight for scalar reductions of non-fp64
    logits); backward multiplies it in place by ``grad_output`` and hands it out. The omega draw is made
    once in forward; a repeated backward (retained graph) recomputes with the same draw."""

    @staticmethod
    def forward(ctx, logits, targets, logit_lengths, target_lengths, durations, blank, reduction, sigma, omega,
                clamp, fastemit_lambda, packed, offsets):
        p = _prepare_tdt(logits, targets, logit_lengths, target_lengths, durations, blank, sigma, omega, clamp,
                         fastemit_lambda, packed, offsets)
        rnnt_mode = draw_rnnt_mode(p.omega)
        want_grad = ctx.needs_input_grad[0]
        ctx.prescaled = want_grad and reduction != "none" and p.logits2d.dtype != torch.float64
        ctx.reduction, ctx.packed, ctx.shape = reduction, packed, logits.shape
        ctx.p, ctx.rnnt_mode = p._replace(logits2d=None), rnnt_mode
        costs, grad = _tdt_core(p.logits2d.detach(), p.tg, p.tl, p.ul, p.layout, p.blank, p.durations, p.sigma,
                                p.clamp, p.fastemit_lambda, want_grad, grad_scale=_TDTLossFunction._scale(ctx, p),
                                rnnt_mode=rnnt_mode)
        ctx.grad = grad
        if want_grad:
            ctx.save_for_backward(logits)  # only for a repeated backward (retain_graph=True)
        from .reference import reduce_costs
        return reduce_costs(costs, p.ul, reduction)

    @staticmethod
    def _scale(ctx, p):
        if not ctx.prescaled:
            return None
        return _sample_weights(torch.ones((), device=p.ul.device), ctx.reduction, p.tl.shape[0], p.ul, torch.float32)

    @staticmethod
    def backward(ctx, grad_output):
        p = ctx.p
        grad, ctx.grad = ctx.grad, None
        if grad is None:  # a second backward through a retained graph: the first one gave the tensor away
            (logits,) = ctx.saved_tensors
            x = logits.detach().reshape(-1, logits.shape[-1])
            _, grad = _tdt_core(x if x.is_contiguous() else x.contiguous(), p.tg, p.tl, p.ul, p.layout, p.blank,
                                p.durations, p.sigma, p.clamp, p.fastemit_lambda, True,
                                grad_scale=_TDTLossFunction._scale(ctx, p), rnnt_mode=ctx.rnnt_mode)
        grad = _grad_times_output(grad, grad_output, ctx.reduction, ctx.prescaled, ctx.packed, p.layout, p.tl, p.ul)
        return (grad.view(ctx.shape),) + (None,) * 12


def tdt_loss(logits, targets, logit_lengths, target_lengths, durations, blank=-1, reduction="mean", *, sigma=0.0,
             omega=0.0, clamp=-1.0, fastemit_lambda=0.0):
    """Exact TDT loss (NeMo's ``loss_name: tdt``), CPU and CUDA kernels, differentiable w.r.t. ``logits``.

    Args:
        logits: ``[B, T, U+1, V1 + D]`` float32, float16, bfloat16 or float64: ``V1`` token logits
            (blank included), then ``D = len(durations)`` duration logits (NeMo's joint output). Never
            modified.
        targets: ``[B, U]`` int32/int64, padded; labels within ``target_lengths`` lie in ``[0, V1)``
            and differ from ``blank``.
        logit_lengths: ``[B]`` frames per sample, ``1 <= T_b <= T``.
        target_lengths: ``[B]`` labels per sample, ``0 <= U_b <= U``.
        durations: the duration set, a list or tuple of distinct ints in ascending order containing 0
            and 1 (NeMo's rules), e.g. ``[0, 1, 2, 3, 4]``.
        blank: blank token index among the ``V1`` token classes (default ``-1``: the last, NeMo's).
        reduction: ``"none"`` ([B]), ``"sum"``, ``"mean"`` (sum / B; NeMo's ``mean_batch``) or
            ``"mean_volume"`` (sum / sum(target_lengths)).
        sigma: keyword only; logit under-normalisation (NeMo's ``sigma``, e.g. 0.05), finite, >= 0.
        omega: keyword only; the probability of computing the standard RNN-T loss of the token logits
            for this call instead (one draw per call, :func:`draw_rnnt_mode`), in [0, 1].
        clamp: keyword only; if > 0, each element of a sample's token-logit gradient is clipped to
            ``[-clamp, clamp]``.
        fastemit_lambda: keyword only; FastEmit weight (token logits only, as NeMo's numba loss).

    Returns:
        the reduced loss (fp32; fp64 for fp64 logits), a negative log-likelihood in nats.
    """
    V_.check_reduction(reduction)
    return _TDTLossFunction.apply(logits, targets, logit_lengths, target_lengths, durations, blank, reduction, sigma,
                                  omega, clamp, fastemit_lambda, False, None)


def tdt_loss_packed(logits, targets, logit_lengths, target_lengths, durations, blank=-1, reduction="mean", *,
                    offsets=None, sigma=0.0, omega=0.0, clamp=-1.0, fastemit_lambda=0.0):
    """:func:`tdt_loss` for logits without padding: ``[N, V1 + D]``, sample ``b`` at rows
    ``offsets[b] + t * (U_b + 1) + u`` (the layout of ``rnnt_loss_packed``: ``offsets`` defaults to the
    exclusive cumulative sum of ``T_b * (U_b + 1)``; explicit offsets may leave rows between samples,
    whose gradient is zero, but samples must not share rows)."""
    V_.check_reduction(reduction)
    return _TDTLossFunction.apply(logits, targets, logit_lengths, target_lengths, durations, blank, reduction, sigma,
                                  omega, clamp, fastemit_lambda, True, offsets)


class TDTLoss(torch.nn.Module):
    """Module form of :func:`tdt_loss`: ``TDTLoss(durations, blank=-1, reduction="mean", *, sigma=0.0,
    omega=0.0, clamp=-1.0, fastemit_lambda=0.0)``, called as ``loss(logits, targets, logit_lengths,
    target_lengths)``."""

    def __init__(self, durations, blank=-1, reduction="mean", *, sigma=0.0, omega=0.0, clamp=-1.0,
                 fastemit_lambda=0.0):
        super().__init__()
        self.durations = V_.check_durations(durations)
        V_.check_reduction(reduction)
        V_.check_blank_type(blank)
        V_.check_scalars(clamp, fastemit_lambda)
        V_.check_tdt_scalars(sigma, omega)
        self.blank, self.reduction = blank, reduction
        self.sigma, self.omega, self.clamp, self.fastemit_lambda = sigma, omega, clamp, fastemit_lambda

    def forward(self, logits, targets, logit_lengths, target_lengths):
        return tdt_loss(logits, targets, logit_lengths, target_lengths, self.durations, self.blank, self.reduction,
                        sigma=self.sigma, omega=self.omega, clamp=self.clamp, fastemit_lambda=self.fastemit_lambda)

    def extra_repr(self):
        return (f"durations={list(self.durations)}, blank={self.blank}, reduction={self.reduction!r}, "
                f"sigma={self.sigma}, omega={self.omega}, clamp={self.clamp}, fastemit_lambda={self.fastemit_lambda}")
