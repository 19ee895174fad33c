"""Tolerances derived from a reference's own error (the rule flash-attention's tests use).

An outside reference computed in fp32 (torchaudio, NeMo's numba loss, ESPnet's warp-transducer) is
itself off from the exact answer by its rounding error, which depends on the CPU, the BLAS build and
the thread count. Comparing ours with it at a fixed tolerance near that noise floor is a coin toss
across machines. Instead both are compared with an fp64 truth computed from the same inputs, and
ours may be off by at most ``factor`` times the outside reference's own error, plus ``ulps`` units
in the last place of the result's dtype at the truth's scale (for when the reference happens to be
exactly rounded).
"""
from __future__ import annotations

import torch


def error_bound(reference, truth, dtype, factor=2.0, ulps=8.0):
    """``factor * max|reference - truth| + ulps * eps(dtype) * max|truth|``."""
    t = truth.double()
    ref_err = (reference.double() - t).abs().max().item() if t.numel() else 0.0
    scale = t.abs().max().item() if t.numel() else 0.0
    return factor * ref_err + ulps * torch.finfo(dtype).eps * max(scale, 1e-30)


def assert_within_reference_error(actual, reference, truth, factor=2.0, ulps=8.0, what="value"):
    """Ours no further from the fp64 truth than ``factor`` times the outside reference's own error."""
    bound = error_bound(reference, truth, actual.dtype if actual.is_floating_point() else torch.float32, factor, ulps)
    err = (actual.double() - truth.double()).abs().max().item() if truth.numel() else 0.0
    ref_err = (reference.double() - truth.double()).abs().max().item() if truth.numel() else 0.0
    assert err <= bound, (f"{what}: max error {err:.3g} against the fp64 truth exceeds {bound:.3g} "
                          f"({factor:g} x the reference's own error {ref_err:.3g} + {ulps:g} ulps)")
