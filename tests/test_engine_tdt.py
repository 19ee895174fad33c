"""The sample-wise TDT loss (samplewise_tdt_loss): the RNN-T engine's planner, groups, tiles, modes and
fused output layer with the TDT loss's three stages, against the batched computation (the joint's
materialised output + tdt_loss, itself checked against brute force and NeMo in test_tdt.py)."""
import pytest
import torch

import samplewise_rnnt as swr
from samplewise_rnnt.engine import SampleWiseTDTLoss, samplewise_tdt_loss
from samplewise_rnnt.fused import fused_dropout_mask, draw_dropout_seed

from test_engine import BilinearLogSoftmaxJoint, TanhJoint

REDUCTIONS = ["none", "sum", "mean", "mean_volume"]
DURATIONS = [0, 1, 2, 3, 4]


def make_batch(B=5, T=9, U=4, He=6, Hp=5, V1=8, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    enc = torch.randn(B, T, He, generator=g, dtype=dtype)
    pred = torch.randn(B, U + 1, Hp, generator=g, dtype=dtype)
    tl = torch.randint(1, T + 1, (B,), generator=g)
    tl[0] = T
    ul = torch.randint(0, U + 1, (B,), generator=g)
    ul[1] = U
    tg = torch.randint(0, V1 - 1, (B, U), generator=g)  # blank = V1 - 1 (the default -1)
    return enc, pred, tg, tl.int(), ul


def run(fn, enc, pred, joint, w=None):
    """[loss, d enc, d pred, d params...] of fn(enc, pred), backward weighted by w for reduction none."""
    enc = enc.detach().clone().requires_grad_(True)
    pred = pred.detach().clone().requires_grad_(True)
    params = list(joint.parameters())
    for p in params:
        p.grad = None
    loss = fn(enc, pred)
    (loss * w if w is not None and loss.dim() else loss).sum().backward()
    return [loss.detach(), enc.grad, pred.grad] + [p.grad.clone() for p in params]


def batched(joint, tg, tl, ul, durations=DURATIONS, **kw):
    return lambda e, p: swr.tdt_loss(joint(e.unsqueeze(2), p.unsqueeze(1)), tg, tl, ul, durations, **kw)


def assert_all_close(a, b, rtol=1e-9, atol=1e-10):
    assert len(a) == len(b)
    for i, (x, y) in enumerate(zip(a, b)):
        torch.testing.assert_close(x, y, rtol=rtol, atol=atol, msg=lambda m: f"item {i}: {m}")


JOINTS = {
    "linear_tanh": lambda D: swr.LinearJoint(6, 5, 7, 8 + D).double(),
    "tanh_no_bias": lambda D: TanhJoint(6, 5, 7, 8 + D).double(),
    "bilinear_logsoftmax": lambda D: BilinearLogSoftmaxJoint(6, 5, 8 + D).double(),
}


@pytest.mark.parametrize("joint_name", list(JOINTS))
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("max_chunk_bytes", [1, 3000, None, float("inf")])
def test_equals_batched(joint_name, reduction, max_chunk_bytes):
    """fp64, so both sides are exact to rounding: every reduction, chunk sizes from one node per tile
    to the whole batch in one group; the fused layer wherever the joint has its structure."""
    torch.manual_seed(0)
    joint = JOINTS[joint_name](len(DURATIONS))
    enc, pred, tg, tl, ul = make_batch(seed=1)
    w = torch.rand(enc.shape[0], dtype=torch.float64) + 0.5 if reduction == "none" else None
    ref = run(batched(joint, tg, tl, ul, reduction=reduction, sigma=0.05), enc, pred, joint, w)
    for fused in ([False, True] if joint_name == "linear_tanh" else [False]):
        ours = run(lambda e, p: samplewise_tdt_loss(e, p, joint, tg, tl, ul, durations=DURATIONS, reduction=reduction,
                                                    sigma=0.05, max_chunk_bytes=max_chunk_bytes, fused=fused),
                   enc, pred, joint, w)
        assert_all_close(ours, ref)


@pytest.mark.parametrize("durations", [[0, 1], [0, 1, 2], [0, 1, 3, 7]])
def test_duration_sets_clamp_fastemit(durations):
    torch.manual_seed(2)
    joint = swr.LinearJoint(6, 5, 7, 8 + len(durations)).double()
    enc, pred, tg, tl, ul = make_batch(seed=3, T=10)
    kw = dict(reduction="mean_volume", clamp=0.05, fastemit_lambda=0.01)
    ref = run(batched(joint, tg, tl, ul, durations, **kw), enc, pred, joint)
    for fused in (False, True):
        ours = run(lambda e, p: samplewise_tdt_loss(e, p, joint, tg, tl, ul, durations=durations, fused=fused,
                                                    max_chunk_bytes=2000, **kw), enc, pred, joint)
        assert_all_close(ours, ref)


def test_omega_one_is_the_rnnt_loss_of_the_token_logits():
    """omega = 1: every call is the standard RNN-T loss of the token logits (NeMo's sampled branch),
    the duration part of the joint's output gets no gradient."""
    torch.manual_seed(4)
    D = len(DURATIONS)
    joint = swr.LinearJoint(6, 5, 7, 8 + D).double()
    enc, pred, tg, tl, ul = make_batch(seed=5)
    ours = run(lambda e, p: samplewise_tdt_loss(e, p, joint, tg, tl, ul, durations=DURATIONS, omega=1.0,
                                                max_chunk_bytes=3000), enc, pred, joint)
    ref = run(lambda e, p: swr.rnnt_loss(joint(e.unsqueeze(2), p.unsqueeze(1))[..., :-D], tg, tl, ul), enc, pred,
              joint)
    assert_all_close(ours, ref)


def test_omega_draw_once_per_batch_and_reproducible():
    """One draw per call (not per group): under a fixed seed the sample-wise loss, cut into many groups,
    equals the batched loss with the same draw."""
    torch.manual_seed(6)
    joint = swr.LinearJoint(6, 5, 7, 8 + len(DURATIONS)).double()
    enc, pred, tg, tl, ul = make_batch(seed=7)
    values = set()
    for s in range(6):
        torch.manual_seed(s)
        ours = samplewise_tdt_loss(enc, pred, joint, tg, tl, ul, durations=DURATIONS, omega=0.5, max_chunk_bytes=1,
                                   fused=False)
        torch.manual_seed(s)
        ref = swr.tdt_loss(joint(enc.unsqueeze(2), pred.unsqueeze(1)), tg, tl, ul, DURATIONS, omega=0.5)
        torch.testing.assert_close(ours, ref, rtol=1e-9, atol=1e-10)
        values.add(round(float(ours.detach()), 6))
    assert len(values) == 2  # both branches were drawn over the six seeds


def test_dropout_fused_equals_batched_with_the_same_mask():
    """The fused layer's counter-based dropout mask is the one fused_dropout_mask builds, whatever the
    groups and tiles."""
    D = len(DURATIONS)
    torch.manual_seed(8)
    joint = swr.LinearJoint(6, 5, 7, 8 + D, dropout=0.3).double().train()
    enc, pred, tg, tl, ul = make_batch(seed=9)
    torch.manual_seed(11)
    ours = run(lambda e, p: samplewise_tdt_loss(e, p, joint, tg, tl, ul, durations=DURATIONS, max_chunk_bytes=700,
                                                fused=True), enc, pred, joint)
    torch.manual_seed(11)
    mask = fused_dropout_mask(draw_dropout_seed(), (enc.shape[0], enc.shape[1], pred.shape[1], 7), 0.3,
                              dtype=torch.float64)

    def masked(e, p):
        h = torch.tanh(joint.lin_enc(e).unsqueeze(2) + joint.lin_dec(p).unsqueeze(1)) * mask
        return swr.tdt_loss(joint.lin_out(h), tg, tl, ul, DURATIONS)

    assert_all_close(ours, run(masked, enc, pred, joint))


def test_no_grad_and_partial_gradients_and_module():
    torch.manual_seed(10)
    joint = swr.LinearJoint(6, 5, 7, 8 + len(DURATIONS)).double()
    enc, pred, tg, tl, ul = make_batch(seed=11)
    ref = batched(joint, tg, tl, ul)(enc, pred)
    with torch.no_grad():
        for fused in (False, True):
            torch.testing.assert_close(samplewise_tdt_loss(enc, pred, joint, tg, tl, ul, durations=DURATIONS,
                                                           fused=fused), ref)
    module = SampleWiseTDTLoss(joint, durations=DURATIONS, reduction="sum", max_chunk_bytes=2000)
    e = enc.clone().requires_grad_(True)
    loss = module(e, pred, tg, tl, ul)
    (g,) = torch.autograd.grad(loss, e)
    e2 = enc.clone().requires_grad_(True)
    (g_ref,) = torch.autograd.grad(batched(joint, tg, tl, ul, reduction="sum")(e2, pred), e2)
    torch.testing.assert_close(g, g_ref)
    assert "durations=[0, 1, 2, 3, 4]" in repr(module)


def test_float32_within_the_batched_float32_error():
    """fp32 inputs: ours and the batched fp32 computation both within rounding of the fp64 truth; ours no
    further than twice the batched computation's own error (plus a few ulps)."""
    from tolerance import assert_within_reference_error

    torch.manual_seed(12)
    joint = swr.LinearJoint(6, 5, 7, 8 + len(DURATIONS))
    enc, pred, tg, tl, ul = make_batch(seed=13, dtype=torch.float32, T=30, U=8)
    ref32 = run(batched(joint, tg, tl, ul), enc, pred, joint)
    ours = run(lambda e, p: samplewise_tdt_loss(e, p, joint, tg, tl, ul, durations=DURATIONS), enc, pred, joint)
    joint64 = joint.double()
    truth = run(batched(joint64, tg, tl, ul), enc.double(), pred.double(), joint64)
    for i, (a, r, t) in enumerate(zip(ours, ref32, truth)):
        assert_within_reference_error(a, r, t, what=f"item {i}")


def test_bad_input():
    joint = swr.LinearJoint(6, 5, 7, 8 + len(DURATIONS)).double()
    enc, pred, tg, tl, ul = make_batch()

    def call(**kw):
        args = dict(durations=DURATIONS)
        args.update(kw)
        j = args.pop("joint", joint)
        return samplewise_tdt_loss(enc, pred, j, tg, tl, ul, **args)

    with pytest.raises(ValueError, match="durations must contain 0 and 1"):
        call(durations=[1, 2])
    with pytest.raises(ValueError, match="durations is empty"):
        call(durations=[])
    with pytest.raises(TypeError, match=r"durations\[1\] must be an int"):
        call(durations=[0, 1.0])
    with pytest.raises(ValueError, match="omega must be a probability"):
        call(omega=1.5)
    with pytest.raises(ValueError, match="sigma must be a finite number"):
        call(sigma=float("nan"))
    with pytest.raises(ValueError, match=r"returns 5 outputs per node but durations has 5 entries"):
        call(joint=swr.LinearJoint(6, 5, 7, 5).double(), fused=False)
    with pytest.raises(ValueError, match=r"returns 5 outputs per node but durations has 5 entries"):
        call(joint=swr.LinearJoint(6, 5, 7, 5).double(), fused=True)
    with pytest.raises(ValueError, match="targets"):
        bad = tg.clone()
        bad[1, 0] = 8  # a duration logit's index, not a token
        samplewise_tdt_loss(enc, pred, joint, bad, tl, ul, durations=DURATIONS)
    with pytest.raises(TypeError):
        samplewise_tdt_loss(enc, pred, joint, tg, tl, ul)  # durations is required
