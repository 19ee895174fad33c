"""Input checks shared by every public entry point.

Each check raises before any kernel runs, with a message that names the argument and the bad
value: ``TypeError`` for a wrong dtype or type, ``ValueError`` for everything else.
"""
from __future__ import annotations

import torch

REDUCTIONS = ("none", "sum", "mean", "mean_volume")
FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)
INT_DTYPES = (torch.int32, torch.int64)


def check_tensor(name, x, ndim=None, dtypes=None, device=None):
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if ndim is not None and x.dim() != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {tuple(x.shape)}")
    if dtypes is not None and x.dtype not in dtypes:
        names = ", ".join(str(d).replace("torch.", "") for d in dtypes)
        raise TypeError(f"{name} must have dtype in ({names}), got {str(x.dtype).replace('torch.', '')}")
    if device is not None and x.device != device:
        raise ValueError(f"{name} is on {x.device} but must be on {device} (the device of the logits)")


def check_reduction(reduction):
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {', '.join(map(repr, REDUCTIONS))}; got {reduction!r}")


def check_scalars(clamp, fastemit_lambda):
    if not isinstance(clamp, (int, float)) or clamp != clamp:
        raise ValueError(f"clamp must be a number (<= 0 disables clamping), got {clamp!r}")
    if not isinstance(fastemit_lambda, (int, float)) or not (fastemit_lambda >= 0.0):
        raise ValueError(f"fastemit_lambda must be a number >= 0, got {fastemit_lambda!r}")


def normalize_blank(blank, V):
    """Return blank in [0, V); negative values count from the end (-1 is the last class)."""
    if isinstance(blank, bool) or not isinstance(blank, int):
        raise TypeError(f"blank must be an int, got {type(blank).__name__}")
    if not -V <= blank < V:
        raise ValueError(f"blank must be in [-{V}, {V}) for V={V} classes, got {blank}")
    return blank + V if blank < 0 else blank


def check_lengths_and_targets(targets, logit_lengths, target_lengths, B, T_max, U_max, V, blank, device,
                              length_name="logit_lengths", check_labels=True):
    """Validate targets [B, U] and the two length vectors; return int64 copies (inputs untouched)."""
    check_tensor("targets", targets, 2, INT_DTYPES, device)
    check_tensor(length_name, logit_lengths, 1, INT_DTYPES, device)
    check_tensor("target_lengths", target_lengths, 1, INT_DTYPES, device)
    if targets.shape[0] != B:
        raise ValueError(f"targets has batch size {targets.shape[0]} but the batch size is {B}")
    if logit_lengths.shape[0] != B:
        raise ValueError(f"{length_name} has {logit_lengths.shape[0]} entries but the batch size is {B}")
    if target_lengths.shape[0] != B:
        raise ValueError(f"target_lengths has {target_lengths.shape[0]} entries but the batch size is {B}")
    if U_max is not None and targets.shape[1] != U_max:
        raise ValueError(f"targets has {targets.shape[1]} columns but the U+1 dimension implies U={U_max}")
    tl = logit_lengths.long()
    ul = target_lengths.long()
    if B == 0:
        return targets.long().contiguous(), tl.contiguous(), ul.contiguous()
    # one host synchronisation for all scalar checks
    stats = torch.stack([tl.min(), tl.max(), ul.min(), ul.max()]).tolist()
    if stats[0] < 1:
        b = int((tl < 1).nonzero()[0])
        raise ValueError(f"{length_name}[{b}] = {int(tl[b])}; every sample needs at least one frame")
    if stats[1] > T_max:
        b = int((tl > T_max).nonzero()[0])
        raise ValueError(f"{length_name}[{b}] = {int(tl[b])} exceeds the padded time dimension {T_max}")
    if stats[2] < 0:
        b = int((ul < 0).nonzero()[0])
        raise ValueError(f"target_lengths[{b}] = {int(ul[b])} is negative")
    if stats[3] > targets.shape[1]:
        b = int((ul > targets.shape[1]).nonzero()[0])
        raise ValueError(f"target_lengths[{b}] = {int(ul[b])} exceeds the padded label dimension "
                         f"{targets.shape[1]}")
    tg = targets.long()
    if check_labels and targets.shape[1] > 0:
        valid = torch.arange(targets.shape[1], device=device)[None, :] < ul[:, None]
        bad = valid & ((tg < 0) | (tg >= V) | (tg == blank))
        if bool(bad.any()):
            b, u = (int(i) for i in bad.nonzero()[0])
            val = int(tg[b, u])
            why = "equals blank" if val == blank else f"is outside [0, {V})"
            raise ValueError(f"targets[{b}, {u}] = {val} {why} (blank={blank}, V={V})")
    return tg.contiguous(), tl.contiguous(), ul.contiguous()
