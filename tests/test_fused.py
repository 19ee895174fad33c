"""The fused output layer (samplewise_rnnt.fused) against the batched computation and the generic path.

References: logits materialised with plain PyTorch (act(f + g) @ W^T + b) and fed to
samplewise_rnnt.rnnt_loss; the generic sample-wise path samplewise_rnnt_loss(..., fused=False);
torch.autograd.gradcheck in fp64. Tile budgets are chosen so that tiles are whole rows, several
rows that do not divide T_b, single nodes and uneven runs within a row.
"""
import pytest
import torch

import samplewise_rnnt as swr
from samplewise_rnnt.fused import (draw_dropout_seed, fused_dropout_mask, fused_rnnt_loss,
                                   fused_samplewise_rnnt_loss, linear_joint_spec)
from samplewise_rnnt.joints import make_activation

ACTS = ["tanh", "relu", "identity", "swish", "sigmoid", "gelu"]
# bytes per node at V=13, J=6, fp64: 13*8 + 6*32 = 296 -> 1 node, 2 nodes, 2 rows of 5 nodes, default
BUDGETS = [1, 700, 3000, None]


def make_case(B=3, T=7, U=4, J=6, V=13, dtype=torch.float64, seed=0, bias=True):
    g = torch.Generator().manual_seed(seed)
    f = torch.randn(B, T, J, generator=g, dtype=dtype).requires_grad_()
    p = torch.randn(B, U + 1, J, generator=g, dtype=dtype).requires_grad_()
    W = (torch.randn(V, J, generator=g, dtype=dtype) * 0.7).requires_grad_()
    b = (torch.randn(V, generator=g, dtype=dtype) * 0.3).requires_grad_() if bias else None
    y = torch.randint(0, V - 1, (B, U), generator=g)
    tl = torch.tensor([T, T - 2, 1][:B] + [T] * max(0, B - 3))
    ul = torch.tensor([U, 0, U - 1][:B] + [U] * max(0, B - 3))
    return f, p, W, b, y, tl, ul


def batched_logits(f, p, W, b, act, mask=None):
    h = make_activation(act)(f[:, :, None] + p[:, None])
    if mask is not None:
        h = h * mask
    x = h @ W.t()
    return x + b if b is not None else x


def grads(loss, tensors, go=None):
    tensors = [t for t in tensors if t is not None]
    return torch.autograd.grad(loss, tensors, grad_outputs=go)


def assert_close_all(a, b, **kw):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, **kw)


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("bias", [True, False])
def test_equals_batched_every_activation(act, bias):
    f, p, W, b, y, tl, ul = make_case(bias=bias, seed=ACTS.index(act))
    ref = swr.rnnt_loss(batched_logits(f, p, W, b, act), y, tl, ul, reduction="mean")
    g_ref = grads(ref, [f, p, W, b])
    for budget in BUDGETS:
        loss = fused_rnnt_loss(f, p, W, b, y, tl, ul, activation=act, reduction="mean", max_chunk_bytes=budget)
        torch.testing.assert_close(loss, ref)
        assert_close_all(grads(loss, [f, p, W, b]), g_ref)


@pytest.mark.parametrize("reduction", ["none", "sum", "mean", "mean_volume"])
def test_reductions_clamp_fastemit_negative_blank(reduction):
    f, p, W, b, y, tl, ul = make_case(seed=11)
    y = y.clamp(max=W.shape[0] - 2)  # blank is the last class
    kw = dict(blank=-1, reduction=reduction, clamp=0.05, fastemit_lambda=0.3)
    go = torch.tensor([0.7, -1.3, 2.0], dtype=torch.float64) if reduction == "none" else None
    ref = swr.rnnt_loss(batched_logits(f, p, W, b, "tanh"), y, tl, ul, **kw)
    g_ref = grads(ref, [f, p, W, b], go)
    loss = fused_rnnt_loss(f, p, W, b, y, tl, ul, max_chunk_bytes=700, **kw)
    torch.testing.assert_close(loss, ref)
    assert_close_all(grads(loss, [f, p, W, b], go), g_ref)


def test_float32_and_partial_gradients():
    f, p, W, b, y, tl, ul = make_case(B=4, T=9, U=5, J=8, V=37, dtype=torch.float32, seed=3)
    ref = swr.rnnt_loss(batched_logits(f, p, W, b, "relu"), y, tl, ul)
    loss = fused_rnnt_loss(f, p, W, b, y, tl, ul, activation="relu", max_chunk_bytes=5000)
    torch.testing.assert_close(loss, ref)
    # gradient for W only (the others do not require grad)
    (gw_ref,) = torch.autograd.grad(ref, [W])
    loss2 = fused_rnnt_loss(f.detach(), p.detach(), W, b.detach(), y, tl, ul, activation="relu")
    (gw,) = torch.autograd.grad(loss2, [W])
    torch.testing.assert_close(gw, gw_ref, rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        torch.testing.assert_close(fused_rnnt_loss(f, p, W, b, y, tl, ul, activation="relu"), ref.detach())


def test_inputs_not_modified():
    f, p, W, b, y, tl, ul = make_case(seed=4)
    before = [t.detach().clone() for t in (f, p, W, b, y, tl, ul)]
    loss = fused_rnnt_loss(f, p, W, b, y, tl, ul, dropout=0.2, max_chunk_bytes=700)
    loss.backward()
    for x, y0 in zip((f, p, W, b, y, tl, ul), before):
        assert torch.equal(x.detach(), y0)


def test_gradcheck_fp64():
    f, p, W, b, y, tl, ul = make_case(B=2, T=3, U=2, J=3, V=5, seed=5)
    y = y.clamp(max=3)

    def fn(f_, p_, W_, b_):
        return fused_rnnt_loss(f_, p_, W_, b_, y, tl, ul, activation="swish", reduction="none", clamp=-1.0,
                               fastemit_lambda=0.0, max_chunk_bytes=200)

    assert torch.autograd.gradcheck(fn, (f, p, W, b))


def test_dropout_same_mask_as_batched_reference():
    f, p, W, b, y, tl, ul = make_case(seed=6)
    B, T, J = f.shape
    U1 = p.shape[1]
    rate = 0.3
    torch.manual_seed(1234)
    loss = fused_rnnt_loss(f, p, W, b, y, tl, ul, activation="tanh", dropout=rate, max_chunk_bytes=700)
    torch.manual_seed(1234)
    mask = fused_dropout_mask(draw_dropout_seed(), (B, T, U1, J), rate, dtype=f.dtype)
    kept = (mask > 0).double().mean().item()
    assert abs(kept - (1 - rate)) < 0.05
    assert set(mask.unique().tolist()) == {0.0, 1 / (1 - rate)}
    ref = swr.rnnt_loss(batched_logits(f, p, W, b, "tanh", mask), y, tl, ul)
    torch.testing.assert_close(loss, ref)
    assert_close_all(grads(loss, [f, p, W, b]), grads(ref, [f, p, W, b]))
    # the mask does not depend on the tiling, and another seed gives another mask
    torch.manual_seed(1234)
    torch.testing.assert_close(fused_rnnt_loss(f, p, W, b, y, tl, ul, dropout=rate, max_chunk_bytes=1), ref)
    other = fused_dropout_mask(draw_dropout_seed(), (B, T, U1, J), rate, dtype=f.dtype)
    assert not torch.equal(other, mask)


def test_bf16_within_twice_the_batched_bf16_error():
    f, p, W, b, y, tl, ul = make_case(B=3, T=9, U=5, J=16, V=50, dtype=torch.float32, seed=7)
    t32 = [f, p, W, b]
    t16 = [x.detach().bfloat16().requires_grad_() for x in t32]
    ref32 = swr.rnnt_loss(batched_logits(*t32, "tanh"), y, tl, ul, reduction="sum")
    g32 = grads(ref32, t32)
    ref16 = swr.rnnt_loss(batched_logits(*t16, "tanh"), y, tl, ul, reduction="sum")
    g16 = grads(ref16, t16)
    loss = fused_rnnt_loss(*t16, y, tl, ul, reduction="sum", max_chunk_bytes=2000)
    gf = grads(loss, t16)
    assert loss.dtype == torch.float32
    assert all(g.dtype == torch.bfloat16 for g in gf)
    err_ref = (ref16.float() - ref32).abs().item()
    assert (loss - ref32).abs().item() <= 2 * err_ref + 1e-2 * abs(ref32.item())
    for a, r, exact in zip(gf, g16, g32):
        e_ref = (r.float() - exact).abs().max().item()
        e = (a.float() - exact).abs().max().item()
        assert e <= 2 * e_ref + 1e-2 * exact.abs().max().item()


@pytest.mark.parametrize("act", ["tanh", "swish"])
def test_linear_joint_fused_equals_generic_and_batched(act):
    torch.manual_seed(8)
    B, T, U, He, Hp, J, V = 3, 6, 3, 5, 4, 7, 19
    joint = swr.LinearJoint(He, Hp, J, V, activation=act)
    enc = torch.randn(B, T, He, requires_grad=True)
    pred = torch.randn(B, U + 1, Hp, requires_grad=True)
    y = torch.randint(0, V - 1, (B, U))
    tl, ul = torch.tensor([6, 4, 2]), torch.tensor([3, 1, 0])
    inputs = [enc, pred] + list(joint.parameters())
    gen = swr.samplewise_rnnt_loss(enc, pred, joint, y, tl, ul, reduction="mean_volume", fused=False)
    g_gen = grads(gen, inputs)
    bat = swr.rnnt_loss(joint(enc.unsqueeze(2), pred.unsqueeze(1)), y, tl, ul, reduction="mean_volume")
    g_bat = grads(bat, inputs)
    fus = fused_samplewise_rnnt_loss(enc, pred, joint, y, tl, ul, reduction="mean_volume", max_chunk_bytes=500)
    g_fus = grads(fus, inputs)
    torch.testing.assert_close(fus, gen)
    torch.testing.assert_close(fus, bat)
    assert_close_all(g_fus, g_gen, rtol=1e-5, atol=1e-6)
    assert_close_all(g_fus, g_bat, rtol=1e-5, atol=1e-6)


def test_linear_joint_module_and_spec():
    joint = swr.LinearJoint(4, 3, 5, 9, activation="linear", dropout=0.25)
    enc, dec = torch.randn(2, 6, 1, 4), torch.randn(2, 1, 3, 3)
    joint.eval()
    expect = joint.lin_out(joint.lin_enc(enc) + joint.lin_dec(dec))
    torch.testing.assert_close(joint(enc, dec), expect)
    assert joint(enc, dec).shape == (2, 6, 3, 9)
    spec = linear_joint_spec(joint)
    assert spec.activation == "identity" and spec.dropout == 0.0 and spec.weight is joint.lin_out.weight
    joint.train()
    assert linear_joint_spec(joint).dropout == 0.25
    with pytest.raises(ValueError, match="activation must be one of .*'mish'"):
        swr.LinearJoint(4, 3, 5, 9, activation="mish")
    with pytest.raises(ValueError, match="dropout must be a number in \\[0, 1\\), got 1.0"):
        swr.LinearJoint(4, 3, 5, 9, dropout=1.0)
    with pytest.raises(ValueError, match="joint_dim must be a positive int, got 0"):
        swr.LinearJoint(4, 3, 0, 9)


def _espnet_joint_case(joint, He, Hp, V, seed):
    torch.manual_seed(seed)
    B, T, U = 2, 5, 3
    enc = torch.randn(B, T, He, requires_grad=True)
    pred = torch.randn(B, U + 1, Hp, requires_grad=True)
    y = torch.randint(0, V - 1, (B, U))
    tl, ul = torch.tensor([5, 3]), torch.tensor([3, 2])
    inputs = [enc, pred] + list(joint.parameters())
    bat = swr.rnnt_loss(joint(enc.unsqueeze(2), pred.unsqueeze(1)), y, tl, ul)
    fus = fused_samplewise_rnnt_loss(enc, pred, joint, y, tl, ul, max_chunk_bytes=3000)
    torch.testing.assert_close(fus, bat)
    assert_close_all(grads(fus, inputs), grads(bat, inputs), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("act", ["tanh", "swish", "relu", "mish"])
def test_espnet2_joint_network(act):
    jn = pytest.importorskip("espnet2.asr_transducer.joint_network")
    joint = jn.JointNetwork(17, 6, 5, joint_space_size=8, joint_activation_type=act)
    spec = linear_joint_spec(joint)
    assert spec is not None and (spec.activation == act if act != "mish" else callable(spec.activation))
    _espnet_joint_case(joint, 6, 5, 17, seed=9)


def test_espnet1_joint_network():
    jn = pytest.importorskip("espnet.nets.pytorch_backend.transducer.joint_network")
    joint = jn.JointNetwork(17, 6, 5, 8, "swish")
    assert linear_joint_spec(joint).activation == "swish"
    assert linear_joint_spec(joint).bias is joint.lin_out.bias
    _espnet_joint_case(joint, 6, 5, 17, seed=10)


def test_nemo_rnnt_joint():
    rnnt = pytest.importorskip("nemo.collections.asr.modules.rnnt")
    V = 12  # 11 labels + blank (the last index)
    joint = rnnt.RNNTJoint(jointnet=dict(encoder_hidden=6, pred_hidden=5, joint_hidden=8, activation="relu",
                                         dropout=0.2), num_classes=V - 1)
    joint.train()
    spec = linear_joint_spec(joint)
    assert spec.activation == "relu" and spec.dropout == pytest.approx(0.2)
    joint.eval()
    assert linear_joint_spec(joint).dropout == 0.0
    torch.manual_seed(12)
    B, T, U = 2, 5, 3
    enc = torch.randn(B, T, 6, requires_grad=True)
    pred = torch.randn(B, U + 1, 5, requires_grad=True)
    y = torch.randint(0, V - 1, (B, U))
    tl, ul = torch.tensor([5, 4]), torch.tensor([3, 1])
    inputs = [enc, pred] + list(joint.parameters())
    logits = joint.joint_after_projection(joint.project_encoder(enc), joint.project_prednet(pred))
    bat = swr.rnnt_loss(logits, y, tl, ul, blank=-1, reduction="mean_volume")
    fus = fused_samplewise_rnnt_loss(enc, pred, joint, y, tl, ul, blank=-1, reduction="mean_volume")
    torch.testing.assert_close(fus, bat)
    assert_close_all(grads(fus, inputs), grads(bat, inputs), rtol=1e-5, atol=1e-6)
    joint.temperature = 2.0
    assert linear_joint_spec(joint) is None


def test_unrecognised_joints_raise():
    seq = torch.nn.Sequential(torch.nn.Linear(4, 9))
    enc, pred = torch.randn(1, 3, 4), torch.randn(1, 2, 4)
    y, tl, ul = torch.ones(1, 1, dtype=torch.long), torch.tensor([3]), torch.tensor([1])
    with pytest.raises(ValueError, match="joint of type torch.nn.modules.container.Sequential has no"):
        fused_samplewise_rnnt_loss(enc, pred, seq, y, tl, ul)

    class Scaled(swr.LinearJoint):
        def forward(self, enc, dec):
            return 2 * super().forward(enc, dec)

    assert linear_joint_spec(Scaled(4, 4, 5, 9)) is None
    with pytest.raises(ValueError, match="joint of type .*Scaled has no Linear-act-Linear"):
        fused_samplewise_rnnt_loss(enc, pred, Scaled(4, 4, 5, 9), y, tl, ul)
    assert linear_joint_spec(lambda e, d: e + d) is None


def test_bad_inputs():
    f, p, W, b, y, tl, ul = make_case(seed=13)
    with pytest.raises(ValueError, match="weight must have shape \\[V, 6\\], got \\(13, 5\\)"):
        fused_rnnt_loss(f, p, W[:, :5], b, y, tl, ul)
    with pytest.raises(ValueError, match="bias has 12 entries but weight has V=13 rows"):
        fused_rnnt_loss(f, p, W, b[:12], y, tl, ul)
    with pytest.raises(ValueError, match="pred_proj has joint dimension 5 but enc_proj has 6"):
        fused_rnnt_loss(f, p[..., :5], W, b, y, tl, ul)
    with pytest.raises(ValueError, match="pred_proj has batch size 2 but enc_proj has 3"):
        fused_rnnt_loss(f, p[:2], W, b, y, tl, ul)
    with pytest.raises(ValueError, match="activation must be one of .*got 'softplus'"):
        fused_rnnt_loss(f, p, W, b, y, tl, ul, activation="softplus")
    with pytest.raises(ValueError, match="dropout must be a number in \\[0, 1\\), got 1.5"):
        fused_rnnt_loss(f, p, W, b, y, tl, ul, dropout=1.5)
    with pytest.raises(ValueError, match=r"max_chunk_bytes must be a positive number of bytes, float\('inf'\) or None, got 0"):
        fused_rnnt_loss(f, p, W, b, y, tl, ul, max_chunk_bytes=0)
    with pytest.raises(ValueError, match="encoder_lengths\\[0\\] = 8 exceeds the padded time dimension 7"):
        fused_rnnt_loss(f, p, W, b, y, tl + 1, ul)
    bad = y.clone()
    bad[0, 0] = 12
    with pytest.raises(ValueError, match="targets\\[0, 0\\] = 12 equals blank"):
        fused_rnnt_loss(f, p, W, b, bad, tl, ul)
    with pytest.raises(ValueError, match="reduction must be one of"):
        fused_rnnt_loss(f, p, W, b, y, tl, ul, reduction="avg")


def test_autocast_bf16_cpu():
    torch.manual_seed(14)
    joint = swr.LinearJoint(6, 5, 8, 23)
    enc = torch.randn(2, 5, 6, requires_grad=True)
    pred = torch.randn(2, 4, 5, requires_grad=True)
    y, tl, ul = torch.randint(0, 22, (2, 3)), torch.tensor([5, 3]), torch.tensor([3, 2])
    inputs = [enc, pred] + list(joint.parameters())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        bat = swr.rnnt_loss(joint(enc.unsqueeze(2), pred.unsqueeze(1)), y, tl, ul)
        fus = fused_samplewise_rnnt_loss(enc, pred, joint, y, tl, ul)
    g_bat, g_fus = grads(bat, inputs), grads(fus, inputs)
    assert fus.dtype == torch.float32 and all(g.dtype == torch.float32 for g in g_fus)
    torch.testing.assert_close(fus, bat.float(), rtol=2e-2, atol=2e-2)
    for a, r in zip(g_fus, g_bat):
        torch.testing.assert_close(a, r, rtol=5e-2, atol=5e-2 * r.abs().max().item())


def test_no_work_buffers_live_on_with_the_graph():
    """A training loop may keep the loss (and so the autograd graph) until after the optimizer step: the
    fused evaluator's group-sized buffers are dropped when the group loop ends, not with the graph."""
    joint = swr.LinearJoint(4, 4, 6, 9)
    B, T, U = 3, 6, 3
    enc = torch.randn(B, T, 4, requires_grad=True)
    pred = torch.randn(B, U + 1, 4, requires_grad=True)
    y = torch.randint(0, 8, (B, U))
    tl, ul = torch.full((B,), T), torch.full((B,), U)
    for reduction in ("mean", "none"):  # gradients in forward; costs in forward, gradients recomputed in backward
        loss = swr.samplewise_rnnt_loss(enc, pred, joint, y, tl, ul, reduction=reduction, fused=True)
        evaluator = loss.grad_fn.cfg.evaluator
        assert evaluator._bufs == {}
        loss.sum().backward()
        assert evaluator._bufs == {}


def test_tanh_kernel_against_fp64():
    """The CPU's h = tanh(f + g) kernel (float32) against fp64 tanh of the exactly added inputs: within 3 ulps of
    the result (~1.3 ulps of the function, half an ulp from rounding f + g to fp32, half from the result's own
    rounding), over every regime of tanh (tiny, the polynomial below 0.625, the exp form, saturation), with the
    special values passed through (NaN stays NaN, +-inf give +-1), for tails of J below 16 and strided samples."""
    from samplewise_rnnt.ops import _ext

    g_ = torch.Generator().manual_seed(0)
    for J in (1, 7, 16, 37, 256):
        f = torch.randn(3, 5, J, generator=g_) * torch.tensor([1e-6, 0.3, 2.0, 30.0, 1.0])[None, :, None]
        g = torch.randn(3, 4, J, generator=g_) * 0.5
        f_big = torch.randn(3, 9, J, generator=g_)
        f_big[:, 2:7] = f  # a strided slice, as the fused layer passes its time rows
        f = f_big[:, 2:7]
        h = torch.empty(3 * 5 * 4, J)
        _ext().joint_tanh(f, g, h)
        truth = torch.tanh(f.double()[:, :, None] + g.double()[:, None]).reshape(-1, J)
        ulp = torch.finfo(torch.float32).eps * truth.abs().clamp_min(torch.finfo(torch.float32).tiny)
        err = (h.double() - truth).abs()
        assert (err <= 3 * ulp).all(), f"J={J}: {(err / ulp).max().item():.2f} ulps"
    f = torch.tensor([[[float("nan"), float("inf"), float("-inf"), 0.0, -0.0, 100.0]]])
    h = torch.empty(1, 6)
    _ext().joint_tanh(f, torch.zeros(1, 1, 6), h)
    assert torch.isnan(h[0, 0]) and h[0, 1:3].tolist() == [1.0, -1.0] and h[0, 3:].tolist() == [0.0, 0.0, 1.0]
    _ext().joint_tanh(torch.empty(2, 3, 0), torch.empty(2, 4, 0), torch.empty(24, 0))  # J = 0: nothing to do


def test_zero_width_joint_is_the_bias_alone():
    """J = 0 (float32 tanh, the kernel's path): the logits are the bias at every node."""
    B, T, U, V = 2, 6, 3, 11
    g_ = torch.Generator().manual_seed(5)
    y = torch.randint(0, V - 1, (B, U), generator=g_)
    tl, ul = torch.tensor([T, 4]), torch.tensor([U, 1])
    bias = torch.randn(V, generator=g_)
    loss = fused_rnnt_loss(torch.randn(B, T, 0), torch.randn(B, U + 1, 0), torch.randn(V, 0), bias, y, tl, ul)
    torch.testing.assert_close(loss, swr.rnnt_loss(bias.expand(B, T, U + 1, V), y, tl, ul))


@pytest.mark.parametrize("budget", [3000, None])
def test_float32_tanh_kernel_path_within_batched_error(budget):
    """Float32 tanh on the CPU runs through the extension's tanh kernel: the loss and all four gradients within
    twice the batched fp32 computation's own error against the fp64 truth (plus 8 ulps), whole and cut into
    tiles."""
    from tolerance import assert_within_reference_error

    f, p, W, b, y, tl, ul = make_case(B=3, T=9, U=5, J=16, V=50, dtype=torch.float64, seed=11)
    leaves64 = [f, p, W, b]
    truth = swr.rnnt_loss(batched_logits(f, p, W, b, "tanh"), y, tl, ul, reduction="sum")
    g_truth = torch.autograd.grad(truth, leaves64)
    leaves = [x.detach().float().requires_grad_() for x in leaves64]
    ref = swr.rnnt_loss(batched_logits(*leaves, "tanh"), y, tl, ul, reduction="sum")
    g_ref = torch.autograd.grad(ref, leaves)
    ours = fused_rnnt_loss(*leaves, y, tl, ul, activation="tanh", reduction="sum", max_chunk_bytes=budget)
    g_ours = torch.autograd.grad(ours, leaves)
    assert_within_reference_error(ours.detach(), ref.detach(), truth.detach(), what="loss")
    for name, a, r, t in zip(["f", "g", "W", "b"], g_ours, g_ref, g_truth):
        assert_within_reference_error(a, r, t, what=f"d {name}")


@pytest.mark.parametrize("budget", [700, None])
def test_float32_tanh_kernel_path_with_dropout(budget):
    """Dropout on the tanh kernel's path (float32, CPU): the same counter-based mask as fused_dropout_mask, the loss
    and all four gradients within twice the batched fp32 computation's error against the fp64 truth."""
    from tolerance import assert_within_reference_error

    f, p, W, b, y, tl, ul = make_case(B=3, T=9, U=5, J=16, V=50, dtype=torch.float64, seed=13)
    B, T, J = f.shape
    rate = 0.25
    torch.manual_seed(99)
    mask = fused_dropout_mask(draw_dropout_seed(), (B, T, p.shape[1], J), rate, dtype=torch.float64)
    truth = swr.rnnt_loss(batched_logits(f, p, W, b, "tanh", mask), y, tl, ul, reduction="sum")
    g_truth = torch.autograd.grad(truth, [f, p, W, b])
    leaves = [x.detach().float().requires_grad_() for x in (f, p, W, b)]
    ref = swr.rnnt_loss(batched_logits(*leaves, "tanh", mask.float()), y, tl, ul, reduction="sum")
    g_ref = torch.autograd.grad(ref, leaves)
    torch.manual_seed(99)
    ours = fused_rnnt_loss(*leaves, y, tl, ul, activation="tanh", dropout=rate, reduction="sum",
                           max_chunk_bytes=budget)
    g_ours = torch.autograd.grad(ours, leaves)
    assert_within_reference_error(ours.detach(), ref.detach(), truth.detach(), what="loss")
    for name, a, r, t in zip(["f", "g", "W", "b"], g_ours, g_ref, g_truth):
        assert_within_reference_error(a, r, t, what=f"d {name}")
