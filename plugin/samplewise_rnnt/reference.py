"""Pure-PyTorch references for the transducer loss (slow, exact; for tests and debugging).

Nothing here is used on a training path. These functions are written independently of the C++/CUDA
kernels so that tests can compare the two:

* :func:`brute_force_rnnt_loss` sums the probabilities of every alignment of a tiny lattice.
* :func:`rnnt_loss_reference` runs the forward (alpha) recursion in log space with ordinary
  PyTorch operations, so autograd differentiates it.
* :func:`rnnt_loss_reference_with_grad` returns per-sample costs and the per-sample gradient with
  respect to the logits, with gradient clamping and FastEmit applied exactly as the kernels do.
* :func:`batched_rnnt_loss` is the memory-hungry computation the sample-wise engine replaces:
  materialise ``joint(enc.unsqueeze(2), pred.unsqueeze(1))`` for the whole batch, then the loss.
* :func:`brute_force_tdt_loss`, :func:`tdt_loss_reference`, :func:`tdt_loss_reference_with_grad`: the
  same three for the TDT (token-and-duration) lattice; see the TDT section below.

The lattice of one sample has nodes ``(t, u)`` with ``0 <= t < T`` and ``0 <= u <= U``. From node
``(t, u)`` a blank moves to ``(t + 1, u)`` and label ``y[u]`` moves to ``(t, u + 1)``; the final
blank leaves ``(T - 1, U)``. With ``lp`` the log-softmax of the logits::

    alpha(0, 0) = 0
    alpha(t, u) = logaddexp(alpha(t-1, u) + lp[t-1, u, blank], alpha(t, u-1) + lp[t, u-1, y[u-1]])
    log P(y|x)  = alpha(T-1, U) + lp[T-1, U, blank]
    cost        = -log P(y|x)

FastEmit (Yu et al., 2021, as in NeMo's numba loss and warp-transducer's fork) reports the cost as
``(1 + lambda) * cost`` and adds ``lambda * d/dlogits[-sum_{t,u} stopgrad(label_flow(t, u)) *
lp[t, u, y[u]]]`` to the gradient of the plain cost,
where ``label_flow(t, u) = exp(alpha(t, u) + lp[t, u, y[u]] + beta(t, u + 1) - log P)`` is the
posterior probability that the alignment emits ``y[u]`` from node ``(t, u)``.
Gradient clamping (torchaudio, warp-transducer) clips every element of each sample's gradient with
respect to its logits to ``[-clamp, clamp]`` before the reduction's scaling.
"""
from __future__ import annotations

import itertools
from typing import Callable, Optional, Tuple

import torch

__all__ = [
    "brute_force_rnnt_loss",
    "rnnt_loss_reference",
    "rnnt_loss_reference_with_grad",
    "rnnt_lattice_reference",
    "batched_rnnt_loss",
    "reduce_costs",
    "brute_force_tdt_loss",
    "tdt_lattice_reference",
    "tdt_loss_reference",
    "tdt_loss_reference_with_grad",
]


def brute_force_rnnt_loss(logits: torch.Tensor, targets, blank: int = -1) -> torch.Tensor:
    """Cost of ONE sample by enumerating every alignment (tiny lattices only).

    logits: [T, U+1, V]; targets: sequence of U label ids. Returns -log sum_alignments P(alignment).
    An alignment is an ordering of T blanks and U labels whose last symbol is a blank.
    """
    lp = torch.log_softmax(logits.double(), dim=-1)
    T, U1, _ = lp.shape
    U = U1 - 1
    targets = [int(x) for x in targets]
    if len(targets) != U:
        raise ValueError(f"targets has {len(targets)} labels, logits imply U={U}")
    total = []
    # choose the positions of the U labels among the first T + U - 1 symbols (the last is blank)
    n = T + U - 1
    for label_pos in itertools.combinations(range(n), U):
        t, u, logp = 0, 0, lp.new_zeros(())
        label_pos = set(label_pos)
        for i in range(n):
            if i in label_pos:
                logp = logp + lp[t, u, targets[u]]
                u += 1
            else:
                logp = logp + lp[t, u, blank]
                t += 1
        logp = logp + lp[t, u, blank]  # final blank from (T-1, U)
        total.append(logp)
    return -torch.logsumexp(torch.stack(total), dim=0)


def _node_log_probs(logits, targets, blank, log_softmax=True):
    x = logits.double()  # the references compute in fp64, whatever the input's dtype
    lp = torch.log_softmax(x, dim=-1) if log_softmax else x  # [B, T, U+1, V]
    lp_blank = lp[..., blank]  # [B, T, U+1]
    B, T, U1, V = lp.shape
    U = U1 - 1
    lp_label = torch.full_like(lp_blank, float("-inf"))
    if U > 0:
        idx = targets.long().clamp(0, V - 1)[:, None, :, None].expand(B, T, U, 1)
        lp_label[:, :, :U] = lp[:, :, :U, :].gather(3, idx).squeeze(3)
    return lp, lp_blank, lp_label


def rnnt_lattice_reference(lp_blank, lp_label, logit_lengths, target_lengths):
    """Lattice recursion on per-node scores. lp_blank, lp_label: [B, T, U+1] (label column U unused).

    Returns (costs [B], alphas [B, T, U+1]); differentiable by autograd. Nodes outside a sample's
    lengths hold -inf alphas and do not influence its cost.
    """
    B, T, U1 = lp_blank.shape
    neg_inf = torch.tensor(float("-inf"), dtype=lp_blank.dtype, device=lp_blank.device)
    rows = []
    prev = None
    for t in range(T):
        row = []
        for u in range(U1):
            if t == 0 and u == 0:
                a = torch.zeros(B, dtype=lp_blank.dtype, device=lp_blank.device)
            else:
                terms = []
                if t > 0:
                    terms.append(prev[u] + lp_blank[:, t - 1, u])
                if u > 0:
                    terms.append(row[u - 1] + lp_label[:, t, u - 1])
                a = terms[0] if len(terms) == 1 else torch.logaddexp(terms[0], terms[1])
            row.append(a)
        rows.append(row)
        prev = row
    alphas = torch.stack([torch.stack(r, dim=1) for r in rows], dim=1)  # [B, T, U+1]
    bidx = torch.arange(B, device=lp_blank.device)
    tl = logit_lengths.long() - 1
    ul = target_lengths.long()
    loglik = alphas[bidx, tl, ul] + lp_blank[bidx, tl, ul]
    del neg_inf
    return -loglik, alphas


def reduce_costs(costs: torch.Tensor, target_lengths: torch.Tensor, reduction: str) -> torch.Tensor:
    """Apply a reduction to per-sample costs (none, sum, mean = sum / B, mean_volume = sum / sum(U))."""
    if reduction == "none":
        return costs
    if reduction == "sum":
        return costs.sum()
    if reduction == "mean":
        return costs.sum() / costs.shape[0]
    if reduction == "mean_volume":
        return costs.sum() / target_lengths.sum().clamp_min(1).to(costs.dtype)
    raise ValueError(f"reduction must be one of 'none', 'sum', 'mean', 'mean_volume'; got {reduction!r}")


def rnnt_loss_reference(logits, targets, logit_lengths, target_lengths, blank=-1, reduction="mean",
                        fastemit_lambda=0.0, fused_log_softmax=True):
    """Autograd reference: logits [B, T, U+1, V] -> reduced cost.

    Everything (log-softmax, lattice, reduction) is computed in fp64 whatever the input dtype; the
    result is returned in fp64 for fp64 logits and in fp32 otherwise (the kernels' cost dtype), so
    autograd gives fp64-accurate gradients rounded once to the input's dtype.
    ``fused_log_softmax=False``: the logits already are log-probabilities (torchaudio's meaning).
    FastEmit is implemented as a surrogate term whose value is ``lambda * cost`` and whose gradient is
    the FastEmit term; clamping is not supported here (see rnnt_loss_reference_with_grad).
    """
    V = logits.shape[-1]
    if blank < 0:
        blank += V
    lp, lp_blank, lp_label = _node_log_probs(logits, targets, blank, fused_log_softmax)
    costs, alphas = rnnt_lattice_reference(lp_blank, lp_label, logit_lengths, target_lengths)
    if fastemit_lambda != 0.0:
        with torch.enable_grad():
            flows = _label_flows(lp_blank.detach(), lp_label.detach(), logit_lengths, target_lengths)
        surrogate = (flows * torch.nan_to_num(lp_label, neginf=0.0)).flatten(1).sum(1)
        costs = costs - fastemit_lambda * (surrogate - surrogate.detach()) + fastemit_lambda * costs.detach()
    out = reduce_costs(costs, target_lengths, reduction)
    return out if logits.dtype == torch.float64 else out.float()


def _label_flows(lp_blank, lp_label, logit_lengths, target_lengths):
    """Posterior probability of each label transition: d(-cost)/d lp_label, via autograd."""
    lb = lp_blank.detach().requires_grad_(True)
    ll = lp_label.detach().requires_grad_(True)
    costs, _ = rnnt_lattice_reference(lb, ll, logit_lengths, target_lengths)
    (g,) = torch.autograd.grad((-costs).sum(), ll, allow_unused=True)
    return torch.zeros_like(ll) if g is None else g.detach()


def rnnt_loss_reference_with_grad(logits, targets, logit_lengths, target_lengths, blank=-1, clamp=-1.0,
                                  fastemit_lambda=0.0, fused_log_softmax=True) -> Tuple[torch.Tensor, torch.Tensor]:
    """Per-sample costs [B] and per-sample gradients d cost_b / d logits [B, T, U+1, V], computed in
    fp64 and returned in fp64 for fp64 logits, fp32 otherwise.

    The gradient is clamped to [-clamp, clamp] when clamp > 0 (before any reduction), and zero
    outside each sample's lengths.
    """
    x = logits.detach().double().requires_grad_(True)
    with torch.enable_grad():
        costs = rnnt_loss_reference(x, targets, logit_lengths, target_lengths, blank, "none",
                                    fastemit_lambda, fused_log_softmax)
        (grad,) = torch.autograd.grad(costs.sum(), x)
    if clamp > 0:
        grad = grad.clamp(-clamp, clamp)
    out = torch.float64 if logits.dtype == torch.float64 else torch.float32
    return costs.detach().to(out), grad.to(out)


def batched_rnnt_loss(encoder_out, predictor_out, joint: Callable, targets, encoder_lengths, target_lengths,
                      blank=-1, reduction="mean", fastemit_lambda=0.0, loss_fn: Optional[Callable] = None):
    """The computation the sample-wise engine replaces: materialise [B, T, U+1, V], then the loss.

    loss_fn defaults to rnnt_loss_reference; pass samplewise_rnnt.rnnt_loss or torchaudio's loss
    (with matching keyword names) to compare other implementations.
    """
    logits = joint(encoder_out.unsqueeze(2), predictor_out.unsqueeze(1))
    if loss_fn is None:
        return rnnt_loss_reference(logits, targets, encoder_lengths, target_lengths, blank=blank,
                                   reduction=reduction, fastemit_lambda=fastemit_lambda)
    return loss_fn(logits, targets, encoder_lengths, target_lengths, blank=blank, reduction=reduction)


# ----------------------------------------------------------------------------------------------
# TDT (Token-and-Duration Transducer, Xu et al. 2023, as NeMo defines it)
# ----------------------------------------------------------------------------------------------
# logits [..., V1 + D]: V1 token classes (blank included), then one logit per duration of ``durations``
# (NeMo's layout). With lp = log_softmax(tokens) - sigma and lpd = log_softmax(duration logits), a blank
# of duration d > 0 moves (t, u) -> (t + d, u) with score lp[t, u, blank] + lpd[t, u, d], a label y[u]
# of duration d >= 0 moves (t, u) -> (t + d, u + 1) with score lp[t, u, y[u]] + lpd[t, u, d]; arcs land
# on nodes t + d < T, except the final blank, which leaves (T - d, U) with d > 0.


def _tdt_split(logits, targets, blank, D, sigma):
    """fp64 per-node scores of logits [B, T, U+1, V1 + D]: (lp [B, T, U+1, V1] = token log-softmax minus
    sigma, lp_blank, lp_label [B, T, U+1], lpd [B, T, U+1, D])."""
    x = logits.double()
    V1 = x.shape[-1] - D
    lp = torch.log_softmax(x[..., :V1], dim=-1) - sigma
    lpd = torch.log_softmax(x[..., V1:], dim=-1)
    lp_blank = lp[..., blank]
    lp_label = torch.full_like(lp_blank, float("-inf"))
    B, T, U1, _ = lp.shape
    if U1 > 1:
        idx = targets.long().clamp(0, V1 - 1)[:, None, :, None].expand(B, T, U1 - 1, 1)
        lp_label[..., :U1 - 1] = lp[..., :U1 - 1, :].gather(3, idx).squeeze(3)
    return lp, lp_blank, lp_label, lpd


def brute_force_tdt_loss(logits: torch.Tensor, targets, durations, blank: int = -1, sigma: float = 0.0):
    """Cost of ONE sample by enumerating every TDT alignment (tiny lattices only), in fp64.

    logits: [T, U+1, V1 + D]; targets: sequence of U label ids; durations: the D durations. An alignment
    is a sequence of (symbol, duration) steps from (0, 0): labels y[0..U) in order, each of any duration
    d with t + d < T, blanks of any d > 0 with t + d < T, and a last blank that reaches exactly t = T
    from column U. Returns -log sum_alignments P(alignment).
    """
    durations = [int(d) for d in durations]
    D = len(durations)
    T, U1, W = logits.shape
    V1 = W - D
    blank = blank + V1 if blank < 0 else blank
    U = U1 - 1
    targets = [int(x) for x in targets]
    if len(targets) != U:
        raise ValueError(f"targets has {len(targets)} labels, logits imply U={U}")
    lp = torch.log_softmax(logits[..., :V1].double(), dim=-1) - sigma
    lpd = torch.log_softmax(logits[..., V1:].double(), dim=-1)
    paths = []

    def walk(t, u, logp):
        for i, d in enumerate(durations):
            if d > 0:
                step = logp + lp[t, u, blank] + lpd[t, u, i]
                if t + d < T:
                    walk(t + d, u, step)
                elif t + d == T and u == U:
                    paths.append(step)
            if u < U and t + d < T:
                walk(t + d, u + 1, logp + lp[t, u, targets[u]] + lpd[t, u, i])

    walk(0, 0, lp.new_zeros(()))
    if not paths:
        return lp.new_tensor(float("inf"))
    return -torch.logsumexp(torch.stack(paths), dim=0)


def tdt_lattice_reference(lp_blank, lp_label, lp_dur, logit_lengths, target_lengths, durations):
    """TDT recursion on per-node scores (differentiable by autograd).

    lp_blank, lp_label: [B, T, U+1]; lp_dur: [B, T, U+1, D]. Returns (costs [B], alphas [B, T, U+1]).
    alpha(t, u) = logsumexp over the durations d of alpha(t - d, u) + blank score (d > 0) and
    alpha(t - d, u - 1) + label score; log P = logsumexp_{d > 0} alpha(T - d, U) + blank score at (T - d, U).
    """
    durations = [int(d) for d in durations]
    B, T, U1 = lp_blank.shape
    dev, dt = lp_blank.device, lp_blank.dtype
    neg_inf = torch.full((B,), float("-inf"), dtype=dt, device=dev)
    alpha = [[None] * U1 for _ in range(T)]
    for t in range(T):
        for u in range(U1):
            if t == 0 and u == 0:
                alpha[t][u] = torch.zeros(B, dtype=dt, device=dev)
                continue
            terms = []
            for i, d in enumerate(durations):
                if t - d < 0:
                    continue
                if d > 0:
                    terms.append(alpha[t - d][u] + lp_blank[:, t - d, u] + lp_dur[:, t - d, u, i])
                if u > 0:
                    terms.append(alpha[t - d][u - 1] + lp_label[:, t - d, u - 1] + lp_dur[:, t - d, u - 1, i])
            alpha[t][u] = torch.logsumexp(torch.stack(terms), dim=0) if terms else neg_inf
    alphas = torch.stack([torch.stack(row, dim=1) for row in alpha], dim=1)  # [B, T, U+1]
    bidx = torch.arange(B, device=dev)
    tl, ul = logit_lengths.long().to(dev), target_lengths.long().to(dev)
    ends = []
    for i, d in enumerate(durations):
        if d == 0:
            continue
        t0 = tl - d
        ok = t0 >= 0
        tc = t0.clamp_min(0)
        term = alphas[bidx, tc, ul] + lp_blank[bidx, tc, ul] + lp_dur[bidx, tc, ul, i]
        ends.append(torch.where(ok, term, neg_inf))
    loglik = torch.logsumexp(torch.stack(ends), dim=0)
    return -loglik, alphas


def tdt_loss_reference(logits, targets, logit_lengths, target_lengths, durations, blank=-1, reduction="mean",
                       sigma=0.0, fastemit_lambda=0.0, rnnt_mode=False):
    """Autograd reference of the TDT loss: logits [B, T, U+1, V1 + D] -> reduced cost, computed in fp64 for
    every input dtype (returned in fp64 for fp64 logits, fp32 otherwise).

    FastEmit follows NeMo's numba loss: the cost is reported as ``(1 + lambda) * cost`` and the gradient of
    the TOKEN logits gains ``lambda * d/dx[-sum_{t,u} stopgrad(label_flow(t, u)) * lp_label(t, u)]``, with
    label_flow summed over the durations; the duration logits get no FastEmit term. ``rnnt_mode=True``
    (NeMo's omega branch) is the standard RNN-T loss of the token logits (no sigma, durations unused: their
    gradient is zero).
    """
    durations = [int(d) for d in durations]
    D = len(durations)
    V1 = logits.shape[-1] - D
    blank = blank + V1 if blank < 0 else blank
    if rnnt_mode:
        return rnnt_loss_reference(logits[..., :V1], targets, logit_lengths, target_lengths, blank, reduction,
                                   fastemit_lambda)
    _, lp_blank, lp_label, lpd = _tdt_split(logits, targets, blank, D, sigma)
    costs, _ = tdt_lattice_reference(lp_blank, lp_label, lpd, logit_lengths, target_lengths, durations)
    if fastemit_lambda != 0.0:
        with torch.enable_grad():
            ll = lp_label.detach().requires_grad_(True)
            c, _ = tdt_lattice_reference(lp_blank.detach(), ll, lpd.detach(), logit_lengths, target_lengths,
                                         durations)
            flows = None  # stays None when no label arc exists (U = 0 everywhere)
            if c.requires_grad:
                (flows,) = torch.autograd.grad((-c).sum(), ll, allow_unused=True)
        flows = torch.zeros_like(lp_label) if flows is None else flows
        surrogate = (flows * torch.nan_to_num(lp_label, neginf=0.0)).flatten(1).sum(1)
        costs = costs - fastemit_lambda * (surrogate - surrogate.detach()) + fastemit_lambda * costs.detach()
    out = reduce_costs(costs, target_lengths, reduction)
    return out if logits.dtype == torch.float64 else out.float()


def tdt_loss_reference_with_grad(logits, targets, logit_lengths, target_lengths, durations, blank=-1, sigma=0.0,
                                 clamp=-1.0, fastemit_lambda=0.0, rnnt_mode=False):
    """Per-sample costs [B] and gradients d cost_b / d logits [B, T, U+1, V1 + D], in fp64 (returned in fp64
    for fp64 logits, fp32 otherwise). With clamp > 0 the TOKEN part of each sample's gradient is clipped to
    [-clamp, clamp] (NeMo's numba loss clamps the token gradient only; the duration part is unclamped)."""
    x = logits.detach().double().requires_grad_(True)
    with torch.enable_grad():
        costs = tdt_loss_reference(x, targets, logit_lengths, target_lengths, durations, blank, "none", sigma,
                                   fastemit_lambda, rnnt_mode)
        (grad,) = torch.autograd.grad(costs.sum(), x)
    if clamp > 0:
        V1 = logits.shape[-1] - len(durations)
        grad = torch.cat([grad[..., :V1].clamp(-clamp, clamp), grad[..., V1:]], dim=-1)
    out = torch.float64 if logits.dtype == torch.float64 else torch.float32
    return costs.detach().to(out), grad.to(out)
