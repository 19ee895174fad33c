"""Input checks shared by every public entry point.

Each check raises before any kernel runs, with a message that names the argument and the bad
value: ``TypeError`` for a wrong dtype or type, ``ValueError`` for everything else. The checks that
need tensor values (lengths, labels, offsets) cost one host synchronisation per call of a public
entry point; the engine's group loop runs none of them (it validates once per batch).
"""
from __future__ import annotations

import collections.abc
import math
import numbers

import torch

REDUCTIONS = ("none", "sum", "mean", "mean_volume")
FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)
INT_DTYPES = (torch.int32, torch.int64)
DEVICE_TYPES = ("cpu", "cuda")


def _dtype_name(dt):
    return str(dt).replace("torch.", "")


def check_tensor(name, x, ndim=None, dtypes=None, device=None, device_of="the logits"):
    """``x`` is a dense tensor on a CPU or CUDA device, with ``ndim`` dimensions, a dtype in ``dtypes``
    and on ``device`` (named ``device_of`` in the message)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.layout != torch.strided:
        raise ValueError(f"{name} must be a dense (strided) tensor, got layout {x.layout}")
    if x.device.type not in DEVICE_TYPES:
        raise ValueError(f"{name} is on {x.device}; samplewise_rnnt computes on cpu and cuda devices only")
    if ndim is not None and x.dim() != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {tuple(x.shape)}")
    if dtypes is not None and x.dtype not in dtypes:
        names = ", ".join(_dtype_name(d) for d in dtypes)
        raise TypeError(f"{name} must have dtype in ({names}), got {_dtype_name(x.dtype)}")
    if device is not None and x.device != device:
        raise ValueError(f"{name} is on {x.device} but must be on {device} (the device of {device_of})")


def check_frames_and_steps(frames_name, frames, steps_name, steps):
    """``frames`` [B, T, H] and ``steps`` [B, U+1, H'] (float, one device, B, T and U+1 at least 1):
    the encoder-side and predictor-side inputs of the joint-level entry points."""
    check_tensor(frames_name, frames, 3, FLOAT_DTYPES)
    check_tensor(steps_name, steps, 3, FLOAT_DTYPES, frames.device, device_of=frames_name)
    B, T, _ = frames.shape
    if B < 1 or T < 1:
        raise ValueError(f"{frames_name} must be non-empty in B and T, got shape {tuple(frames.shape)}")
    if steps.shape[0] != B:
        raise ValueError(f"{steps_name} has batch size {steps.shape[0]} but {frames_name} has {B}")
    if steps.shape[1] < 1:
        raise ValueError(f"{steps_name} must have U+1 >= 1 steps, got shape {tuple(steps.shape)}")


def callable_name(obj):
    """``module.QualName`` of a module's (or any object's) class, or of a plain function: how messages name a joint."""
    t = obj if not isinstance(obj, torch.nn.Module) and hasattr(obj, "__qualname__") else type(obj)
    return f"{getattr(t, '__module__', '?')}.{t.__qualname__}"


def check_reduction(reduction):
    if not isinstance(reduction, str) or reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {', '.join(map(repr, REDUCTIONS))}; got {reduction!r}")


def check_number(name, x):
    """``x`` is a real number (not a bool); returns it as a float."""
    if isinstance(x, bool) or not isinstance(x, numbers.Real):
        raise TypeError(f"{name} must be a number, got {type(x).__name__} {x!r}")
    return float(x)


def check_scalars(clamp, fastemit_lambda):
    """``clamp``: any number but NaN (<= 0 disables clamping); ``fastemit_lambda``: finite and >= 0.
    Returns both as floats."""
    c = check_number("clamp", clamp)
    if math.isnan(c):
        raise ValueError(f"clamp must be a number (<= 0 disables clamping), got {clamp!r}")
    lam = check_number("fastemit_lambda", fastemit_lambda)
    if not (math.isfinite(lam) and lam >= 0.0):
        raise ValueError(f"fastemit_lambda must be a finite number >= 0, got {fastemit_lambda!r}")
    return c, lam


MAX_DURATIONS = 64  # csrc/core/rnnt_kernels.h: kMaxDurations


def check_durations(durations):
    """The TDT duration set: a non-empty list or tuple (any sequence but a string) of distinct ints
    ``>= 0`` in ascending order that contains 0 and 1, at most 64 of them. Returns a tuple of ints.

    These are NeMo's rules: its TDT loss documents that the durations "must include 0 and 1", and its
    numba kernels (what NeMo trains with) rely on all three: they read a label of duration 0 and a
    blank of duration 1 at fixed positions of the list and stop scanning it at the first duration
    that is too long, so other lists would give wrong losses there rather than errors.
    """
    if isinstance(durations, (str, bytes)) or not isinstance(durations, collections.abc.Sequence):
        raise TypeError(f"durations must be a list or tuple of ints, got {type(durations).__name__} {durations!r}")
    out = []
    for i, d in enumerate(durations):
        if isinstance(d, bool) or not isinstance(d, numbers.Integral):
            raise TypeError(f"durations[{i}] must be an int, got {type(d).__name__} {d!r}")
        if d < 0:
            raise ValueError(f"durations[{i}] = {int(d)} is negative; durations are frame counts >= 0")
        out.append(int(d))
    if not out:
        raise ValueError("durations is empty; the TDT loss needs at least the durations 0 and 1")
    if len(out) > MAX_DURATIONS:
        raise ValueError(f"durations has {len(out)} entries; at most {MAX_DURATIONS} are supported")
    for i in range(1, len(out)):
        if out[i] == out[i - 1]:
            raise ValueError(f"durations lists {out[i]} twice: {out}")
        if out[i] < out[i - 1]:
            raise ValueError(f"durations must be in ascending order (as NeMo's TDT kernels assume), got {out}")
    if out[0] != 0 or len(out) < 2 or out[1] != 1:
        missing = [d for d in (0, 1) if d not in out]
        raise ValueError(f"durations must contain 0 and 1 (NeMo's rule), got {out}: "
                         f"{' and '.join(map(str, missing))} missing")
    return tuple(out)


def check_tdt_scalars(sigma, omega):
    """``sigma`` (logit under-normalisation): finite and >= 0; ``omega`` (the probability of the
    standard RNN-T loss in a call): in [0, 1]. Returns both as floats."""
    sg = check_number("sigma", sigma)
    if not (math.isfinite(sg) and sg >= 0.0):
        raise ValueError(f"sigma must be a finite number >= 0, got {sigma!r}")
    om = check_number("omega", omega)
    if not 0.0 <= om <= 1.0:  # also NaN
        raise ValueError(f"omega must be a probability in [0, 1], got {omega!r}")
    return sg, om


def check_flag(name, x):
    if not isinstance(x, bool):
        raise TypeError(f"{name} must be a bool, got {type(x).__name__} {x!r}")
    return x


def check_budget(max_chunk_bytes):
    """``None`` (the default budget), a positive number of bytes, or ``float('inf')`` (no limit).
    Returns None, an int >= 1, or inf."""
    if max_chunk_bytes is None:
        return None
    if isinstance(max_chunk_bytes, bool) or not isinstance(max_chunk_bytes, numbers.Real):
        raise TypeError(f"max_chunk_bytes must be a number of bytes or None, got {type(max_chunk_bytes).__name__} "
                        f"{max_chunk_bytes!r}")
    v = float(max_chunk_bytes)
    if not v > 0:  # also NaN
        raise ValueError(f"max_chunk_bytes must be a positive number of bytes, float('inf') or None, "
                         f"got {max_chunk_bytes!r}")
    if math.isinf(v):
        return v
    return max(1, int(v))


def check_blank_type(blank):
    """``blank`` is an integer (not a bool); returns it as an int."""
    if isinstance(blank, bool) or not isinstance(blank, numbers.Integral):
        raise TypeError(f"blank must be an int, got {type(blank).__name__}")
    return int(blank)


def normalize_blank(blank, V):
    """Return blank in [0, V); negative values count from the end (-1 is the last class)."""
    blank = check_blank_type(blank)
    if not -V <= blank < V:
        raise ValueError(f"blank must be in [-{V}, {V}) for V={V} classes, got {blank}")
    return blank + V if blank < 0 else blank


def check_lengths_and_targets(targets, logit_lengths, target_lengths, B, T_max, U_max, V, blank, device,
                              length_name="logit_lengths", check_labels=True, stats_out=None):
    """Validate targets [B, U] and the two length vectors; return int64 contiguous copies (inputs untouched).

    ``T_max`` bounds the frames (``float('inf')`` for packed logits), ``U_max`` the number of target
    columns (None: any). With ``stats_out`` (a dict), stores the host ints ``T_max``/``U_max`` (the
    largest ``logit_lengths`` / ``target_lengths``) and ``nodes`` (``sum_b T_b * (U_b + 1)``).
    """
    check_tensor("targets", targets, 2, INT_DTYPES, device)
    check_tensor(length_name, logit_lengths, 1, INT_DTYPES, device)
    check_tensor("target_lengths", target_lengths, 1, INT_DTYPES, device)
    if logit_lengths.shape[0] != B:
        raise ValueError(f"{length_name} has {logit_lengths.shape[0]} entries but the batch size is {B}")
    if targets.shape[0] != B:
        raise ValueError(f"targets has batch size {targets.shape[0]} but the batch size is {B}")
    if target_lengths.shape[0] != B:
        raise ValueError(f"target_lengths has {target_lengths.shape[0]} entries but the batch size is {B}")
    if U_max is not None and targets.shape[1] != U_max:
        raise ValueError(f"targets has {targets.shape[1]} columns but the U+1 dimension implies U={U_max}")
    if B < 1:
        raise ValueError(f"{length_name} is empty: the batch must hold at least one sample")
    tl = logit_lengths.long()
    ul = target_lengths.long()
    # one host synchronisation for all scalar checks
    stats = torch.stack([tl.min(), tl.max(), ul.min(), ul.max(), (tl * (ul + 1)).sum()]).tolist()
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
    if stats_out is not None:
        stats_out.update(T_max=int(stats[1]), U_max=int(stats[3]), nodes=int(stats[4]))
    return tg.contiguous(), tl.contiguous(), ul.contiguous()
