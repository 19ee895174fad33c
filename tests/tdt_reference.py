"""A small pure-PyTorch TDT loss (autograd, any dtype; fp64 for a truth) with NeMo's semantics.

The recursion of NeMo's ``TDTLossPytorch`` (``nemo/collections/asr/losses/rnnt_pytorch.py``), vectorised
over the label axis: token log-probabilities ``log_softmax(logits[..., :V+1]) - sigma``, duration
log-probabilities ``log_softmax(logits[..., V+1:])``; ``alpha(t, u)`` sums the blank arcs from
``(t - d, u)`` (``d > 0``) and the label arcs from ``(t - d, u - 1)`` (any ``d``), the sequence ends with a
blank arc into ``t = T``. The ``d = 0`` label arcs chain ``alpha(t, .)`` along ``u``; that chain is a
cumulative log-sum-exp. ``omega`` (NeMo's chance of the plain RNN-T loss) is not modelled.
"""
from __future__ import annotations

import torch

NEG = -1.0e5  # "minus infinity" that keeps logcumsumexp's gradient finite


def tdt_sample_logprob(logits, y, durations, blank, sigma=0.0):
    """log P(y | one sample): ``logits`` ``[T, U+1, V+1+D]`` (already cut to the sample's lengths)."""
    T, U1, _ = logits.shape
    D = len(durations)
    lp = torch.log_softmax(logits[..., :-D], -1) - sigma
    ld = torch.log_softmax(logits[..., -D:], -1)
    U = U1 - 1
    y = y[:U].long()
    blank_lp = lp[..., blank]                                              # [T, U+1]
    label_lp = lp[:, :U, :].gather(-1, y.view(1, U, 1).expand(T, U, 1))[..., 0]  # [T, U]
    neg = logits.new_full((U1,), NEG)
    alphas = []
    for t in range(T):
        terms = [neg.clone()]
        if t == 0:
            terms[0] = torch.cat([logits.new_zeros(1), logits.new_full((U,), NEG)])
        for n, d in enumerate(durations):
            if d == 0 or t - d < 0:
                continue
            a = alphas[t - d]
            terms.append(a + blank_lp[t - d] + ld[t - d, :, n])
            lab = a[:-1] + label_lp[t - d] + ld[t - d, :-1, n]
            terms.append(torch.cat([logits.new_full((1,), NEG), lab]))
        A = torch.logsumexp(torch.stack(terms), 0)
        if 0 in durations and U > 0:
            n0 = durations.index(0)
            w = label_lp[t] + ld[t, :-1, n0]                                # arc (t, u) -> (t, u+1)
            C = torch.cat([logits.new_zeros(1), torch.cumsum(w, 0)])
            A = C + torch.logcumsumexp(A - C, 0)
        alphas.append(A)
    ends = [alphas[T - d][U] + blank_lp[T - d, U] + ld[T - d, U, n]
            for n, d in enumerate(durations) if d > 0 and T - d >= 0]
    return torch.logsumexp(torch.stack(ends), 0)


def tdt_loss_reference(logits, targets, logit_lengths, target_lengths, durations, blank, sigma=0.0):
    """Per-sample TDT losses ``-log P`` of a batch ``logits`` ``[B, T, U+1, V+1+D]``."""
    out = []
    for b in range(logits.shape[0]):
        T, U = int(logit_lengths[b]), int(target_lengths[b])
        out.append(-tdt_sample_logprob(logits[b, :T, :U + 1], targets[b], list(durations), blank, sigma))
    return torch.stack(out)
