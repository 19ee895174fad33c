"""Regression tests for hostile and unusual input: each defect an outside attack found, fixed at the
shared entry point (no crash, no silent wrong number, no NaN, inputs untouched, clear errors)."""
import math

import pytest
import torch

import samplewise_rnnt as swr
from samplewise_rnnt import engine as E
from samplewise_rnnt import reference as ref
from samplewise_rnnt.ops import rnnt_loss_and_grad


def small_case():
    """The attack's case: x [2, 5, 4, 6], y [[1, 2, 3], [4, 1, 0]], T = (5, 4), U = (3, 2); blank is 5 (-1)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 5, 4, 6, generator=g)
    y = torch.tensor([[1, 2, 3], [4, 1, 0]])
    return x, y, torch.tensor([5, 4]), torch.tensor([3, 2])


def packed_rows(x, tl, ul):
    return torch.cat([x[b, :tl[b], :ul[b] + 1].reshape(-1, x.shape[-1]) for b in range(x.shape[0])])


# ---------------------------------------------------------------------------------------------
# 1. half-precision joint (no autocast) with several samples in one group
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_joint_groups_of_several_samples(dtype):
    torch.manual_seed(0)
    joint = swr.LinearJoint(4, 4, 5, 6)
    enc = torch.randn(3, 5, 4)
    pred = torch.randn(3, 4, 4)
    y = torch.tensor([[1, 2, 3], [4, 1, 0], [2, 2, 2]])
    tl, ul = torch.tensor([5, 4, 3]), torch.tensor([3, 2, 1])
    results = []
    for j, e0, p0 in ((joint.to(dtype), enc.to(dtype), pred.to(dtype)),):
        e, p = e0.clone().requires_grad_(), p0.clone().requires_grad_()
        loss = swr.samplewise_rnnt_loss(e, p, j, y, tl, ul, fused=False)  # default budget: one group of three
        loss.backward()
        results.append((loss, e.grad, p.grad, [q.grad for q in j.parameters()]))
        assert all(torch.isfinite(t).all() for t in [loss, e.grad, p.grad] + results[-1][3])
    # against the batched computation on the same half-precision joint
    e, p = enc.to(dtype).requires_grad_(), pred.to(dtype).requires_grad_()
    for q in joint.parameters():
        q.grad = None
    ref_loss = swr.rnnt_loss(joint(e.unsqueeze(2), p.unsqueeze(1)), y, tl, ul)
    ref_loss.backward()
    torch.testing.assert_close(results[0][0], ref_loss, rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(results[0][1].float(), e.grad.float(), rtol=2e-2, atol=2e-2)


# ---------------------------------------------------------------------------------------------
# 2. and 3. packed layout: overlapping offsets, gaps between samples
# ---------------------------------------------------------------------------------------------
def test_packed_overlapping_offsets_are_rejected():
    _, y, tl, ul = small_case()
    with pytest.raises(ValueError, match=r"offsets make samples 0 and 1 share rows: sample 0 occupies rows \[0, 20\) "
                                         r"and sample 1 starts at row 2"):
        swr.rnnt_loss_packed(torch.randn(40, 6), y, tl, ul, offsets=torch.tensor([0, 2]))


@pytest.mark.parametrize("inplace", [False, True])
def test_packed_gaps_get_zero_gradients(inplace):
    x, y, tl, ul = small_case()
    rows = packed_rows(x, tl, ul)  # 20 + 12 rows
    gapped = torch.full((40, 6), float("nan"))  # garbage in the gaps, as an allocator may leave there
    gapped[3:23] = rows[:20]
    gapped[27:39] = rows[20:]
    offsets = torch.tensor([3, 27])
    dense_costs, dense_grad = rnnt_loss_and_grad(rows, y, tl, ul, packed=True)
    work = gapped.clone()
    costs, grad = rnnt_loss_and_grad(work, y, tl, ul, packed=True, offsets=offsets, inplace=inplace)
    torch.testing.assert_close(costs, dense_costs)
    assert torch.equal(grad[:3], torch.zeros(3, 6)) and torch.equal(grad[23:27], torch.zeros(4, 6))
    assert torch.equal(grad[39:], torch.zeros(1, 6))
    torch.testing.assert_close(grad[3:23], dense_grad[:20])
    torch.testing.assert_close(grad[27:39], dense_grad[20:])
    # through autograd: finite gradients (zero in the gaps), not garbage x 0 = NaN
    z = gapped.clone().nan_to_num(0.0).requires_grad_(True)
    z.data[0] = float("inf")  # a gap row holding inf must not turn into NaN
    swr.rnnt_loss_packed(z, y, tl, ul, offsets=offsets, reduction="sum").backward()
    assert torch.isfinite(z.grad).all()
    assert torch.equal(z.grad[:3], torch.zeros(3, 6))


def test_packed_batch_mismatch_and_empty_batch():
    x, y, tl, ul = small_case()
    rows = packed_rows(x, tl, ul)
    with pytest.raises(ValueError, match="targets has batch size 3 but the batch size is 2"):
        swr.rnnt_loss_packed(rows, torch.cat([y, y[:1]]), tl, ul)
    with pytest.raises(ValueError, match="logit_lengths is empty"):
        swr.rnnt_loss_packed(rows[:0], y[:0], tl[:0], ul[:0])
    with pytest.raises(ValueError, match="logits must be non-empty in B"):
        swr.rnnt_loss(x[:0], y[:0], tl[:0], ul[:0])


# ---------------------------------------------------------------------------------------------
# 4. a joint that ignores one of its inputs
# ---------------------------------------------------------------------------------------------
class EncoderOnlyJoint(torch.nn.Module):
    def __init__(self, he, u1, v):
        super().__init__()
        self.lin = torch.nn.Linear(he, v)
        self.u1 = u1

    def forward(self, enc, pred):
        out = self.lin(enc)  # [n, T, 1, V]
        return out.expand(-1, -1, pred.shape[2], -1)


@pytest.mark.parametrize("max_chunk_bytes", [1, None])
def test_joint_that_ignores_the_predictor(max_chunk_bytes):
    torch.manual_seed(1)
    x, y, tl, ul = small_case()
    joint = EncoderOnlyJoint(3, 4, 6)
    enc = torch.randn(2, 5, 3, requires_grad=True)
    pred = torch.randn(2, 4, 2, requires_grad=True)
    loss = swr.samplewise_rnnt_loss(enc, pred, joint, y, tl, ul, max_chunk_bytes=max_chunk_bytes)
    g_enc, g_pred = torch.autograd.grad(loss, [enc, pred])
    assert torch.equal(g_pred, torch.zeros_like(pred))
    ref_loss = swr.rnnt_loss(joint(enc.unsqueeze(2), pred.unsqueeze(1)), y, tl, ul)
    (r_enc,) = torch.autograd.grad(ref_loss, [enc])
    torch.testing.assert_close(loss, ref_loss)
    torch.testing.assert_close(g_enc, r_enc)


# ---------------------------------------------------------------------------------------------
# 5. float and infinite budgets on both paths; SampleWiseRNNTLoss(fused=...)
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("budget", [float("inf"), 12345.6, 1e9, 1])
@pytest.mark.parametrize("fused", [True, False])
def test_float_and_infinite_budgets(budget, fused):
    torch.manual_seed(2)
    _, y, tl, ul = small_case()
    joint = swr.LinearJoint(4, 3, 5, 6)
    enc, pred = torch.randn(2, 5, 4), torch.randn(2, 4, 3)
    loss = swr.samplewise_rnnt_loss(enc, pred, joint, y, tl, ul, max_chunk_bytes=budget, fused=fused)
    module = swr.SampleWiseRNNTLoss(joint, max_chunk_bytes=budget, fused=fused)
    assert f"fused={fused}" in repr(module)
    torch.testing.assert_close(module(enc, pred, y, tl, ul), loss)
    torch.testing.assert_close(loss, swr.rnnt_loss(joint(enc.unsqueeze(2), pred.unsqueeze(1)), y, tl, ul))


# ---------------------------------------------------------------------------------------------
# 6. more than 65535 samples
# ---------------------------------------------------------------------------------------------
def test_batch_beyond_65535_samples():
    B = 70000
    g = torch.Generator().manual_seed(3)
    x = torch.randn(B, 1, 2, 3, generator=g, requires_grad=True)
    y = torch.randint(0, 2, (B, 1), generator=g)
    tl, ul = torch.ones(B, dtype=torch.int64), torch.randint(0, 2, (B,), generator=g)
    loss = swr.rnnt_loss(x, y, tl, ul, reduction="none")
    # T = 1: cost = -log p(y_1) [if U = 1] - log p(blank at the last node)
    lp = torch.log_softmax(x.detach().double(), -1)[:, 0]
    expect = -lp[:, 0, 2] * (ul == 0) - (lp[torch.arange(B), 0, y[:, 0]] + lp[:, 1, 2]) * (ul == 1)
    torch.testing.assert_close(loss.double(), expect, rtol=1e-5, atol=1e-5)
    enc = torch.randn(B, 1, 2, generator=g)
    pred = torch.randn(B, 2, 2, generator=g)
    joint = swr.LinearJoint(2, 2, 3, 3)
    for fused in (False, True):
        torch.testing.assert_close(
            swr.samplewise_rnnt_loss(enc, pred, joint, y, tl, ul, fused=fused, max_chunk_bytes=float("inf")),
            swr.rnnt_loss(joint(enc.unsqueeze(2), pred.unsqueeze(1)), y, tl, ul), rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# 7. a joint on another device
# ---------------------------------------------------------------------------------------------
def test_joint_output_on_another_device_is_named():
    _, y, tl, ul = small_case()
    enc, pred = torch.randn(2, 5, 4), torch.randn(2, 4, 3)

    def meta_joint(e, p):
        return torch.empty(e.shape[0], e.shape[1], p.shape[2], 6, device="meta")

    with pytest.raises(ValueError, match=r"joint \(.*meta_joint\) returned logits on meta but encoder_out and "
                                         r"predictor_out are on cpu; move the joint to cpu"):
        swr.samplewise_rnnt_loss(enc, pred, meta_joint, y, tl, ul)
    joint = swr.LinearJoint(4, 3, 5, 6).to("meta")
    with pytest.raises(ValueError, match=r"the joint \(.*LinearJoint\) is on meta but encoder_out is on cpu"):
        swr.samplewise_rnnt_loss(enc, pred, joint, y, tl, ul)


# ---------------------------------------------------------------------------------------------
# 8. the in-place gradient never overwrites a tensor the caller owns
# ---------------------------------------------------------------------------------------------
class ParameterViewJoint(torch.nn.Module):
    """Returns (a view of) its own parameter, broadcast over the lattice: a valid pointwise joint."""

    def __init__(self, v, mode):
        super().__init__()
        self.table = torch.nn.Parameter(torch.randn(1, 1, 1, v))
        self.mode = mode

    def forward(self, enc, pred):
        shape = (enc.shape[0], enc.shape[1], pred.shape[2], self.table.shape[-1])
        if self.mode == "expand":
            return self.table.expand(shape)
        return self.table.expand(shape)[..., :]  # a view of a view


@pytest.mark.parametrize("mode", ["expand", "slice"])
def test_joint_returning_a_view_of_its_parameter_is_not_overwritten(mode):
    torch.manual_seed(4)
    _, y, tl, ul = small_case()
    joint = ParameterViewJoint(6, mode)
    before = joint.table.detach().clone()
    enc, pred = torch.randn(2, 5, 4), torch.randn(2, 4, 3)
    loss = swr.samplewise_rnnt_loss(enc, pred, joint, y, tl, ul, max_chunk_bytes=1)
    (g,) = torch.autograd.grad(loss, [joint.table])
    assert torch.equal(joint.table.detach(), before)
    ref_loss = swr.rnnt_loss(joint(enc.unsqueeze(2), pred.unsqueeze(1)), y, tl, ul)
    (r,) = torch.autograd.grad(ref_loss, [joint.table])
    torch.testing.assert_close(loss, ref_loss)
    torch.testing.assert_close(g, r)


def test_joint_returning_a_view_of_its_input_is_exact():
    """A joint whose logits are a broadcast view of the predictor output (a leaf inside the engine)."""
    _, y, tl, ul = small_case()
    enc = torch.randn(2, 5, 1)
    pred = torch.randn(2, 4, 6, requires_grad=True)
    before = pred.detach().clone()

    def broadcast(e, p):  # [n, T, 1, 1], [n, 1, U+1, 6] -> [n, T, U+1, 6]
        return p.expand(p.shape[0], e.shape[1], p.shape[2], p.shape[3])

    loss = swr.samplewise_rnnt_loss(enc, pred, broadcast, y, tl, ul, max_chunk_bytes=1)
    (g,) = torch.autograd.grad(loss, [pred])
    assert torch.equal(pred.detach(), before)
    ref_loss = swr.rnnt_loss(broadcast(enc.unsqueeze(2), pred.unsqueeze(1)), y, tl, ul)
    (r,) = torch.autograd.grad(ref_loss, [pred])
    torch.testing.assert_close(loss, ref_loss)
    torch.testing.assert_close(g, r)


# ---------------------------------------------------------------------------------------------
# 9. fp16 generic path, reduction="none", non-finite grad_output
# ---------------------------------------------------------------------------------------------
def test_fp16_none_reduction_with_inf_grad_output():
    torch.manual_seed(5)
    _, y, tl, ul = small_case()
    joint = swr.LinearJoint(4, 3, 5, 6).half()
    enc = torch.randn(2, 5, 4).half().requires_grad_(True)
    pred = torch.randn(2, 4, 3).half()
    loss = swr.samplewise_rnnt_loss(enc, pred, joint, y, tl, ul, reduction="none", fused=False)
    g = torch.autograd.grad(loss, [enc], torch.tensor([float("inf"), 1.0]))[0]
    # sample 0's gradient is non-finite (inf times a gradient), sample 1's is finite and exact
    assert not torch.isfinite(g[0]).all()
    loss1 = swr.samplewise_rnnt_loss(enc, pred, joint, y, tl, ul, reduction="none", fused=False)
    g1 = torch.autograd.grad(loss1, [enc], torch.tensor([0.0, 1.0]))[0]
    torch.testing.assert_close(g[1], g1[1])


# ---------------------------------------------------------------------------------------------
# 10. the references really are fp64
# ---------------------------------------------------------------------------------------------
def test_reference_is_fp64_accurate():
    g = torch.Generator().manual_seed(6)
    x = torch.randn(1, 3, 3, 5, generator=g) * 3
    y = torch.tensor([[1, 3]])
    brute = ref.brute_force_rnnt_loss(x[0].double(), [1, 3], blank=0)
    ours = ref.rnnt_loss_reference(x.double(), y, torch.tensor([3]), torch.tensor([2]), blank=0, reduction="sum")
    assert abs(ours.item() - brute.item()) < 1e-12 * abs(brute.item())
    # fp32 input: computed in fp64, rounded once to fp32
    r32 = ref.rnnt_loss_reference(x, y, torch.tensor([3]), torch.tensor([2]), blank=0, reduction="sum")
    assert r32.dtype == torch.float32 and r32.item() == pytest.approx(brute.item(), rel=2 ** -23)
    # the kernel on fp64 logits agrees with the brute force to fp64 accuracy
    k = swr.rnnt_loss(x.double(), y, torch.tensor([3]), torch.tensor([2]), blank=0, reduction="sum")
    assert abs(k.item() - brute.item()) < 1e-12 * abs(brute.item())


# ---------------------------------------------------------------------------------------------
# 11. clear, consistent errors
# ---------------------------------------------------------------------------------------------
def test_sparse_and_meta_logits():
    x, y, tl, ul = small_case()
    with pytest.raises(ValueError, match="logits must be a dense .strided. tensor, got layout torch.sparse_coo"):
        swr.rnnt_loss(x.to_sparse(), y, tl, ul)
    with pytest.raises(ValueError, match="logits is on meta; samplewise_rnnt computes on cpu and cuda devices only"):
        swr.rnnt_loss(x.to("meta"), y, tl, ul)
    with pytest.raises(ValueError, match="targets must be a dense"):
        swr.rnnt_loss(x, y.to_sparse(), tl, ul)


def test_fused_path_with_a_wrong_encoder_width():
    _, y, tl, ul = small_case()
    joint = swr.LinearJoint(4, 3, 5, 6)
    with pytest.raises(ValueError, match=r"encoder_out has width 7 \(shape \(2, 5, 7\)\) but the joint .* expects 4"):
        swr.samplewise_rnnt_loss(torch.randn(2, 5, 7), torch.randn(2, 4, 3), joint, y, tl, ul)
    with pytest.raises(ValueError, match=r"predictor_out has width 2 .* expects 3"):
        swr.samplewise_rnnt_loss(torch.randn(2, 5, 4), torch.randn(2, 4, 2), joint, y, tl, ul)
    with pytest.raises(ValueError, match=r"the joint .*LinearJoint\) failed to project encoder_out \(shape \(2, 5, 4\), "
                                         r"dtype float64\)"):
        swr.samplewise_rnnt_loss(torch.randn(2, 5, 4).double(), torch.randn(2, 4, 3), joint, y, tl, ul)
    # the generic path names the joint and the shapes when the joint itself fails
    with pytest.raises(ValueError, match=r"joint \(.*LinearJoint\) failed on inputs of shape \(1, 1, 1, 7\)"):
        swr.samplewise_rnnt_loss(torch.randn(2, 5, 7), torch.randn(2, 4, 3), joint, y, tl, ul, fused=False)


@pytest.mark.parametrize("name,value,exc,match", [
    ("clamp", True, TypeError, "clamp must be a number, got bool True"),
    ("clamp", "0.5", TypeError, "clamp must be a number, got str '0.5'"),
    ("clamp", float("nan"), ValueError, "clamp must be a number"),
    ("fastemit_lambda", True, TypeError, "fastemit_lambda must be a number, got bool True"),
    ("fastemit_lambda", float("inf"), ValueError, "fastemit_lambda must be a finite number >= 0, got inf"),
    ("fastemit_lambda", -1e-3, ValueError, "fastemit_lambda must be a finite number >= 0, got -0.001"),
    ("blank", True, TypeError, "blank must be an int, got bool"),
    ("blank", 1.0, TypeError, "blank must be an int, got float"),
    ("fused_log_softmax", 1, TypeError, "fused_log_softmax must be a bool, got int 1"),
    ("reduction", None, ValueError, "reduction must be one of .*got None"),
])
def test_scalar_options_are_checked_alike(name, value, exc, match):
    x, y, tl, ul = small_case()
    kw = {name: value}
    with pytest.raises(exc, match=match):
        swr.rnnt_loss(x, y, tl, ul, **kw)
    if name not in ("fused_log_softmax",):
        with pytest.raises(exc, match=match):
            swr.samplewise_rnnt_loss(torch.randn(2, 5, 4), torch.randn(2, 4, 3), swr.LinearJoint(4, 3, 5, 6), y, tl,
                                     ul, **kw)


@pytest.mark.parametrize("value,exc", [(0, ValueError), (-5, ValueError), (float("nan"), ValueError),
                                       (True, TypeError), ("1GB", TypeError)])
def test_bad_budgets(value, exc):
    _, y, tl, ul = small_case()
    for fused in (True, False):
        with pytest.raises(exc, match="max_chunk_bytes must be"):
            swr.samplewise_rnnt_loss(torch.randn(2, 5, 4), torch.randn(2, 4, 3), swr.LinearJoint(4, 3, 5, 6), y, tl,
                                     ul, max_chunk_bytes=value, fused=fused)
    with pytest.raises(exc, match="max_chunk_bytes must be"):
        swr.SampleWiseRNNTLoss(swr.LinearJoint(4, 3, 5, 6), max_chunk_bytes=value)


def test_fused_flag_must_be_a_bool():
    _, y, tl, ul = small_case()
    with pytest.raises(TypeError, match="fused must be None .automatic., True or False, got int 1"):
        swr.samplewise_rnnt_loss(torch.randn(2, 5, 4), torch.randn(2, 4, 3), swr.LinearJoint(4, 3, 5, 6), y, tl, ul,
                                 fused=1)


# ---------------------------------------------------------------------------------------------
# no host synchronisation inside the group loop
# ---------------------------------------------------------------------------------------------
class _NoSync:
    """Makes Tensor.item, tolist, __bool__, cpu and numpy raise while ``active``."""

    NAMES = ("item", "tolist", "__bool__", "cpu", "numpy")

    def __init__(self, monkeypatch):
        self.active = False
        for name in self.NAMES:
            orig = getattr(torch.Tensor, name)

            def trap(t, *a, _orig=orig, _name=name, **k):
                if self.active:
                    raise AssertionError(f"Tensor.{_name} called inside the group loop")
                return _orig(t, *a, **k)

            monkeypatch.setattr(torch.Tensor, name, trap)

    def wrap(self, fn):
        def inner(*a, **k):
            self.active = True
            try:
                return fn(*a, **k)
            finally:
                self.active = False
        return inner


@pytest.mark.parametrize("reduction", ["mean", "none"])
@pytest.mark.parametrize("budget", [1, None])
def test_group_loop_never_synchronises(monkeypatch, reduction, budget):
    torch.manual_seed(7)
    _, y, tl, ul = small_case()
    joint = torch.nn.Sequential()  # placeholder replaced below (a generic joint with parameters)

    class Joint(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b, self.o = torch.nn.Linear(4, 5), torch.nn.Linear(3, 5), torch.nn.Linear(5, 6)

        def forward(self, e, p):
            return self.o(torch.tanh(self.a(e) + self.b(p)))

    joint = Joint()
    enc, pred = torch.randn(2, 5, 4, requires_grad=True), torch.randn(2, 4, 3, requires_grad=True)
    expect = swr.samplewise_rnnt_loss(enc, pred, joint, y, tl, ul, reduction=reduction, max_chunk_bytes=budget)
    g_expect = torch.autograd.grad(expect.sum(), [enc, pred] + list(joint.parameters()))
    trap = _NoSync(monkeypatch)
    calls = []
    orig = E._run_group

    def counted(*a, **k):
        calls.append(1)
        return trap.wrap(orig)(*a, **k)

    monkeypatch.setattr(E, "_run_group", counted)
    loss = swr.samplewise_rnnt_loss(enc, pred, joint, y, tl, ul, reduction=reduction, max_chunk_bytes=budget)
    grads = torch.autograd.grad(loss.sum(), [enc, pred] + list(joint.parameters()))
    monkeypatch.undo()
    assert calls, "the group loop did not run"
    torch.testing.assert_close(loss, expect)
    for a, b in zip(grads, g_expect):
        torch.testing.assert_close(a, b)
    # the trap works: a synchronisation inside the loop would have failed the call
    trap2 = _NoSync(monkeypatch)
    trap2.active = True
    with pytest.raises(AssertionError, match="Tensor.item called inside the group loop"):
        torch.ones(()).item()
    trap2.active = False


def test_nothing_is_modified():
    x, y, tl, ul = small_case()
    args = [x, y, tl, ul]
    before = [a.clone() for a in args]
    swr.rnnt_loss(x.requires_grad_(), y, tl, ul).backward()
    swr.rnnt_loss(x.detach(), y.int(), tl.int(), ul.int(), fused_log_softmax=False)
    for a, b in zip(args, before):
        assert torch.equal(a.detach(), b)
    assert math.isfinite(float(x.grad.abs().sum()))


@pytest.mark.parametrize("reduction", ["mean", "sum", "mean_volume"])
def test_saved_gradient_handed_out_safely(reduction):
    """Backward may return the saved (pre-scaled) gradient itself: repeated backward with retain_graph,
    a non-unit grad_output and accumulation into .grad must all stay exact."""
    x, y, tl, ul = small_case()
    _, g = ref.rnnt_loss_reference_with_grad(x.double(), y, tl, ul)
    w = {"mean": 1 / 2, "sum": 1.0, "mean_volume": 1 / 5}[reduction]
    z = x.clone().requires_grad_(True)
    loss = swr.rnnt_loss(z, y, tl, ul, reduction=reduction)
    loss.backward(retain_graph=True)
    first = z.grad.clone()
    loss.backward(retain_graph=True)
    (loss * 3.0).backward()
    torch.testing.assert_close(first.double(), g * w, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(z.grad.double(), 5 * g * w, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_fp16_logits_with_a_grad_scaler_sized_grad_output(reduction):
    """A GradScaler's 2**16 does not fit fp16 (max 65504): the weights are applied in fp32."""
    x, y, tl, ul = small_case()
    z = x[:1].half().requires_grad_(True)
    loss = swr.rnnt_loss(z, y[:1], tl[:1], ul[:1], reduction=reduction)
    loss.backward(torch.full_like(loss, 2.0 ** 16))
    _, g = ref.rnnt_loss_reference_with_grad(x[:1].half().double(), y[:1], tl[:1], ul[:1])
    assert torch.isfinite(z.grad).all()
    torch.testing.assert_close(z.grad.float() / 2 ** 16, g.float(), rtol=1e-2, atol=1e-3)
