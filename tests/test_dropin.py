"""``rnnt_loss`` / ``RNNTLoss`` are drop-ins for torchaudio's: same positional order, names and defaults;
calls written for torchaudio give the same numbers (within twice torchaudio's own fp32 error against
an fp64 truth)."""
import inspect

import pytest
import torch

import samplewise_rnnt as swr
from samplewise_rnnt import reference as ref
from tolerance import assert_within_reference_error

torchaudio = pytest.importorskip("torchaudio")


def test_same_signature_as_torchaudio():
    ours = inspect.signature(swr.rnnt_loss).parameters
    theirs = inspect.signature(torchaudio.functional.rnnt_loss).parameters
    assert list(ours)[:len(theirs)] == list(theirs)
    for name, p in theirs.items():
        assert ours[name].default == p.default, name
        assert ours[name].kind == inspect.Parameter.POSITIONAL_OR_KEYWORD
    assert all(p.kind == inspect.Parameter.KEYWORD_ONLY for n, p in ours.items() if n not in theirs)
    ours_m = inspect.signature(swr.RNNTLoss).parameters
    theirs_m = inspect.signature(torchaudio.transforms.RNNTLoss).parameters
    assert list(ours_m)[:len(theirs_m)] == list(theirs_m)
    for name, p in theirs_m.items():
        assert ours_m[name].default == p.default, name


def _case(seed, B=3, T=9, U=4, V=7, log_probs=False):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, T, U + 1, V, generator=g) * 2
    if log_probs:
        x = torch.log_softmax(x, -1)
    y = torch.randint(0, V - 1, (B, U), generator=g, dtype=torch.int32)  # blank = -1 (torchaudio's default)
    tl = torch.randint(1, T + 1, (B,), generator=g, dtype=torch.int32)
    tl[0] = T
    ul = torch.randint(0, U + 1, (B,), generator=g, dtype=torch.int32)
    ul[-1] = U
    return x, y, tl, ul


def _run(fn, x, *args, weights=None):
    z = x.clone().requires_grad_(True)
    loss = fn(z, *args)
    (loss * (weights if weights is not None and loss.dim() else 1)).sum().backward()
    return loss.detach(), z.grad


@pytest.mark.parametrize("fused_log_softmax,log_probs", [(True, False), (False, True), (False, False)])
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("clamp", [-1, 0.2])
def test_positional_calls_agree(fused_log_softmax, log_probs, reduction, clamp):
    x, y, tl, ul = _case(seed=int(fused_log_softmax) + 2 * int(log_probs) + (clamp > 0) * 4)
    w = torch.tensor([0.5, 2.0, 1.0]) if reduction == "none" else None
    pos = (y, tl, ul, -1, clamp, reduction, fused_log_softmax)  # torchaudio's positional order
    ours = _run(swr.rnnt_loss, x, *pos, weights=w)
    theirs = _run(torchaudio.functional.rnnt_loss, x, *pos, weights=w)
    # the fp64 truth: the pure-PyTorch reference in fp64 (clamp applied to the per-sample gradient)
    costs, g = ref.rnnt_loss_reference_with_grad(x.double(), y, tl, ul, blank=-1, clamp=clamp,
                                                 fused_log_softmax=fused_log_softmax)
    scale = {"none": w, "sum": torch.ones(3), "mean": torch.full((3,), 1 / 3)}[reduction].double()
    truth_loss = ref.reduce_costs(costs, ul, reduction)
    truth_grad = g * scale[:, None, None, None]
    assert_within_reference_error(ours[0], theirs[0], truth_loss, what="loss")
    assert_within_reference_error(ours[1], theirs[1], truth_grad, what="gradient")


def test_module_positional_construction_agrees():
    x, y, tl, ul = _case(seed=9)
    for args in [(), (-1,), (-1, 0.3), (-1, -1.0, "sum"), (-1, -1.0, "none", True)]:
        ours = swr.RNNTLoss(*args)(x, y, tl, ul)
        theirs = torchaudio.transforms.RNNTLoss(*args)(x, y, tl, ul)
        truth = ref.rnnt_loss_reference(x.double(), y, tl, ul, blank=-1,
                                        reduction=args[2] if len(args) > 2 else "mean")
        assert_within_reference_error(ours, theirs, truth, what=f"RNNTLoss{args}")
    assert "fused_log_softmax=True" in repr(swr.RNNTLoss())
