"""The exact loss on logits against independent references.

References: a brute-force sum over all alignments, a pure-PyTorch log-space recursion differentiated by
autograd, hand-checked values, torchaudio's rnnt_loss and NeMo's numba loss (FastEmit and clamp).
"""
import math

import pytest
import torch

import samplewise_rnnt as swr
from samplewise_rnnt import reference as ref
from samplewise_rnnt.ops import rnnt_lattice, rnnt_loss_and_grad
from tolerance import assert_within_reference_error

torchaudio_F = pytest.importorskip("torchaudio.functional")


def make_case(B, T, U, V, blank=0, seed=0, dtype=torch.float32, full=False, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    logits = (torch.randn(B, T, U + 1, V, generator=g) * scale).to(dtype)
    blank_ = blank % V
    labels = [v for v in range(V) if v != blank_]
    targets = torch.tensor(labels, dtype=torch.int32)[torch.randint(len(labels), (B, U), generator=g)]
    if full:
        tl = torch.full((B,), T, dtype=torch.int32)
        ul = torch.full((B,), U, dtype=torch.int32)
    else:
        tl = torch.randint(1, T + 1, (B,), generator=g, dtype=torch.int32)
        tl[0] = T
        ul = torch.randint(0, U + 1, (B,), generator=g, dtype=torch.int32)
        ul[-1] = U
    return logits, targets, tl, ul


def assert_rel(a, b, tol):
    """Relative error in norm: ||a - b|| / ||b|| <= tol (the gradient tensors' relative error)."""
    err = ((a.double() - b.double()).norm() / b.double().norm().clamp_min(1e-30)).item()
    assert err <= tol, f"relative error {err:.3g} > {tol:g}"


def check_against_torchaudio(ours, theirs, truth):
    """Gradients: ours within 1e-5 (norm-relative) of torchaudio, or, where torchaudio's own fp32 error
    against the fp64 truth is larger (its lattice runs in fp32, ours in fp64), within twice that error;
    and ours within 1e-6 of the truth."""
    ta_err = ((theirs.double() - truth).norm() / truth.norm()).item()
    assert_rel(ours, theirs, max(1e-5, 2 * ta_err))
    assert_rel(ours, truth, 1e-6)


def loss_and_grad(fn, logits, *args, weights=None, **kw):
    x = logits.detach().clone().requires_grad_(True)
    loss = fn(x, *args, **kw)
    w = torch.ones_like(loss) if weights is None else weights
    (g,) = torch.autograd.grad((loss * w).sum(), x)
    return loss.detach(), g


# ---------------------------------------------------------------------------------------------
# hand-checked and brute force
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("T,U,V,expected", [
    (1, 0, 4, math.log(4)),          # one blank from a uniform distribution
    (1, 1, 2, math.log(4)),          # label then blank, each 1/2
    (2, 1, 2, math.log(4)),          # two alignments of three symbols: 2 / 8
    (2, 1, 3, math.log(27 / 2)),     # two alignments of three symbols: 2 / 27
    (3, 2, 3, -math.log(6 / 3 ** 5)),  # C(4, 2) = 6 alignments of five symbols
])
def test_hand_checked_uniform(T, U, V, expected):
    logits = torch.zeros(1, T, U + 1, V)
    targets = torch.ones(1, U, dtype=torch.int64)
    loss = swr.rnnt_loss(logits, targets, torch.tensor([T]), torch.tensor([U]), blank=0, reduction="sum")
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_hand_checked_gradient_single_frame():
    # T=1, U=0: cost = -log softmax(x)[blank]; gradient = softmax - onehot(blank)
    x = torch.tensor([[[[1.0, 2.0, 0.5]]]])
    loss, g = loss_and_grad(swr.rnnt_loss, x, torch.zeros(1, 0, dtype=torch.int64), torch.tensor([1]),
                            torch.tensor([0]), blank=1, reduction="sum")
    p = torch.softmax(x[0, 0, 0], -1)
    assert loss.item() == pytest.approx(-math.log(p[1].item()), rel=1e-6)
    torch.testing.assert_close(g[0, 0, 0], p - torch.tensor([0.0, 1.0, 0.0]))


@pytest.mark.parametrize("T,U,V,blank", [(1, 0, 2, 0), (1, 3, 3, 0), (3, 0, 2, 1), (3, 2, 4, 3), (4, 3, 3, 1),
                                         (2, 4, 5, 2), (5, 2, 2, 0)])
def test_brute_force_small_lattices(T, U, V, blank):
    logits, targets, _, _ = make_case(2, T, U, V, blank=blank, seed=T * 10 + U, full=True)
    losses = swr.rnnt_loss(logits, targets, torch.tensor([T, T]), torch.tensor([U, U]), blank=blank,
                           reduction="none")
    for b in range(2):
        expected = ref.brute_force_rnnt_loss(logits[b], targets[b], blank=blank)
        assert losses[b].item() == pytest.approx(expected.item(), rel=1e-5)


# ---------------------------------------------------------------------------------------------
# the autograd reference and torchaudio
# ---------------------------------------------------------------------------------------------
SHAPES = [  # B, T, U, V
    (1, 1, 0, 2), (3, 1, 4, 5), (2, 6, 0, 3), (4, 7, 3, 2), (3, 13, 5, 17), (5, 11, 9, 33), (2, 20, 7, 129),
]


@pytest.mark.parametrize("B,T,U,V", SHAPES)
@pytest.mark.parametrize("blank", [0, -1, "mid"])
def test_against_autograd_reference(B, T, U, V, blank):
    blank = V // 2 if blank == "mid" else blank
    logits, targets, tl, ul = make_case(B, T, U, V, blank=blank, seed=B + T + U + V)
    w = torch.rand(B, generator=torch.Generator().manual_seed(1))
    ours = loss_and_grad(swr.rnnt_loss, logits, targets, tl, ul, blank=blank, reduction="none", weights=w)
    # fp64 reference = the truth; our fp32 error must stay within twice the fp32 reference's error
    truth = loss_and_grad(ref.rnnt_loss_reference, logits.double(), targets, tl, ul, blank=blank, reduction="none",
                          weights=w.double())
    same = loss_and_grad(ref.rnnt_loss_reference, logits, targets, tl, ul, blank=blank, reduction="none", weights=w)
    torch.testing.assert_close(ours[0], truth[0].float(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ours[1], truth[1].float(), rtol=1e-4, atol=1e-5)
    err_ours = (ours[1].double() - truth[1]).abs().max()
    err_same = (same[1].double() - truth[1]).abs().max()
    assert err_ours <= 2 * err_same + 1e-6, (err_ours, err_same)


@pytest.mark.parametrize("B,T,U,V", SHAPES)
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("blank", [0, -1, "mid"])
def test_against_torchaudio(B, T, U, V, reduction, blank):
    blank = V // 2 if blank == "mid" else blank
    logits, targets, tl, ul = make_case(B, T, U, V, blank=blank, seed=7 * B + T + U + V, scale=3.0)
    w = torch.rand(B, generator=torch.Generator().manual_seed(2)) if reduction == "none" else None
    ours = loss_and_grad(swr.rnnt_loss, logits, targets, tl, ul, blank=blank, reduction=reduction, weights=w)
    theirs = loss_and_grad(torchaudio_F.rnnt_loss, logits, targets, tl, ul, blank=blank % V, reduction=reduction,
                           weights=w)
    torch.testing.assert_close(ours[0], theirs[0], rtol=1e-5, atol=1e-5)
    truth = loss_and_grad(ref.rnnt_loss_reference, logits.double(), targets, tl, ul, blank=blank % V,
                          reduction=reduction, weights=None if w is None else w.double())
    check_against_torchaudio(ours[1], theirs[1], truth[1])


def test_mean_volume_reduction():
    logits, targets, tl, ul = make_case(4, 9, 5, 7, seed=3)
    ours = loss_and_grad(swr.rnnt_loss, logits, targets, tl, ul, blank=0, reduction="mean_volume")
    theirs = loss_and_grad(ref.rnnt_loss_reference, logits, targets, tl, ul, blank=0, reduction="mean_volume")
    torch.testing.assert_close(ours[0], theirs[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ours[1], theirs[1], rtol=1e-5, atol=1e-6)
    total = swr.rnnt_loss(logits, targets, tl, ul, blank=0, reduction="sum")
    assert ours[0].item() == pytest.approx(total.item() / ul.sum().item(), rel=1e-6)


def test_random_cases_match_torchaudio_to_1e5_relative():
    for seed in range(5):
        g = torch.Generator().manual_seed(100 + seed)
        B, T, U, V = (int(torch.randint(lo, hi, (1,), generator=g)) for lo, hi in [(1, 6), (1, 40), (0, 15), (2, 70)])
        logits, targets, tl, ul = make_case(B, T, U, V, seed=seed, scale=2.0)
        ours = loss_and_grad(swr.rnnt_loss, logits, targets, tl, ul, blank=0, reduction="sum")
        theirs = loss_and_grad(torchaudio_F.rnnt_loss, logits, targets, tl, ul, blank=0, reduction="sum")
        truth = loss_and_grad(swr.rnnt_loss, logits.double(), targets, tl, ul, blank=0, reduction="sum")
        assert_within_reference_error(ours[0], theirs[0], truth[0], what="loss")
        check_against_torchaudio(ours[1], theirs[1], truth[1])


def test_long_lattice_wavefront_path():
    # B=1 with long diagonals takes the anti-diagonal (wavefront) sweep on the CPU when there are more
    # threads than samples; two copies of the sample take the sequential sweep: both must agree.
    logits, targets, tl, ul = make_case(1, 600, 520, 3, seed=5, full=True)
    ours = loss_and_grad(swr.rnnt_loss, logits, targets, tl, ul, blank=0, reduction="sum")
    two = loss_and_grad(swr.rnnt_loss, logits.expand(2, -1, -1, -1), targets.expand(2, -1), tl.expand(2),
                        ul.expand(2), blank=0, reduction="none")
    torch.testing.assert_close(ours[0], two[0][0], rtol=1e-6, atol=0)
    torch.testing.assert_close(ours[1], two[1][:1], rtol=1e-5, atol=1e-7)
    theirs = loss_and_grad(torchaudio_F.rnnt_loss, logits, targets, tl, ul, blank=0, reduction="sum")
    truth = loss_and_grad(swr.rnnt_loss, logits.double(), targets, tl, ul, blank=0, reduction="sum")
    assert_within_reference_error(ours[0], theirs[0], truth[0], what="loss")
    check_against_torchaudio(ours[1], theirs[1], truth[1])


def test_gradcheck_fp64():
    logits, targets, tl, ul = make_case(3, 4, 3, 5, seed=11, dtype=torch.float64)
    x = logits.requires_grad_(True)
    for reduction in ["none", "mean", "mean_volume"]:
        assert torch.autograd.gradcheck(lambda z: swr.rnnt_loss(z, targets, tl, ul, blank=0, reduction=reduction), (x,),
                                        eps=1e-6, atol=1e-7)
    packed_sizes = tl.long() * (ul.long() + 1)
    rows = torch.cat([logits[b, :tl[b], :ul[b] + 1].reshape(-1, 5) for b in range(3)]).detach().requires_grad_(True)
    assert rows.shape[0] == packed_sizes.sum()
    assert torch.autograd.gradcheck(lambda z: swr.rnnt_loss_packed(z, targets, tl, ul, blank=0, reduction="none"), (rows,),
                                    eps=1e-6, atol=1e-7)


# ---------------------------------------------------------------------------------------------
# FastEmit and clamp
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("lam", [0.01, 0.5])
def test_fastemit_against_reference(lam):
    logits, targets, tl, ul = make_case(3, 8, 4, 6, seed=21)
    ours = loss_and_grad(swr.rnnt_loss, logits, targets, tl, ul, blank=0, reduction="sum", fastemit_lambda=lam)
    theirs = loss_and_grad(ref.rnnt_loss_reference, logits, targets, tl, ul, blank=0, reduction="sum", fastemit_lambda=lam)
    plain = swr.rnnt_loss(logits, targets, tl, ul, blank=0, reduction="sum")
    torch.testing.assert_close(ours[0], plain * (1 + lam))  # NeMo's convention for the reported value
    torch.testing.assert_close(ours[0], theirs[0])
    torch.testing.assert_close(ours[1], theirs[1], rtol=1e-5, atol=1e-6)
    assert not torch.allclose(ours[1], loss_and_grad(swr.rnnt_loss, logits, targets, tl, ul, blank=0, reduction="sum")[1])


@pytest.mark.parametrize("clamp", [0.05, 0.3])
def test_clamp_against_torchaudio(clamp):
    logits, targets, tl, ul = make_case(3, 9, 4, 6, seed=31, scale=4.0)
    w = torch.tensor([0.5, 2.0, 1.0])
    ours = loss_and_grad(swr.rnnt_loss, logits, targets, tl, ul, blank=0, reduction="none", clamp=clamp, weights=w)
    theirs = loss_and_grad(torchaudio_F.rnnt_loss, logits, targets, tl, ul, blank=0, reduction="none", clamp=clamp,
                           weights=w)
    costs, g = ref.rnnt_loss_reference_with_grad(logits.double(), targets, tl, ul, blank=0, clamp=clamp)
    assert_within_reference_error(ours[0], theirs[0], costs, what="loss")
    assert_within_reference_error(ours[1], theirs[1], g * w.double()[:, None, None, None], what="gradient")
    assert ours[1].abs().max() <= clamp * w.max() + 1e-6


@pytest.fixture(scope="module")
def nemo_numba_loss():
    pytest.importorskip("nemo.collections.asr", reason="NeMo is not installed")
    from nemo.collections.asr.losses.rnnt import RNNTLoss as NeMoRNNTLoss

    def make(V, fastemit_lambda=0.0, clamp=-1.0):
        return NeMoRNNTLoss(num_classes=V - 1, reduction="sum", loss_name="warprnnt_numba",
                            loss_kwargs={"fastemit_lambda": fastemit_lambda, "clamp": clamp})
    return make


@pytest.mark.parametrize("lam,clamp", [(0.0, -1.0), (0.3, -1.0), (0.0, 0.1), (0.2, 0.1)])
def test_fastemit_and_clamp_against_nemo_numba(nemo_numba_loss, lam, clamp):
    V = 7
    logits, targets, tl, ul = make_case(3, 8, 4, V, blank=V - 1, seed=41, scale=3.0)
    nemo = nemo_numba_loss(V, lam, clamp)
    x = logits.clone().requires_grad_(True)
    loss_n = nemo(log_probs=x, targets=targets.long(), input_lengths=tl.long(), target_lengths=ul.long())
    (g_n,) = torch.autograd.grad(loss_n.sum(), x)
    ours = loss_and_grad(swr.rnnt_loss, logits, targets, tl, ul, blank=-1, reduction="sum", fastemit_lambda=lam,
                         clamp=clamp)
    torch.testing.assert_close(ours[0], loss_n.detach().sum().float(), rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(ours[1], g_n, rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# half precision, in place, packed, lattice
# ---------------------------------------------------------------------------------------------
def _pytorch_same_dtype_loss(logits, targets, tl, ul):
    """A pure-PyTorch computation carried out in the low-precision dtype itself."""
    lp_full = torch.log_softmax(logits, dim=-1)
    B, T, U1, V = logits.shape
    lp_blank = lp_full[..., 0]
    lp_label = torch.full_like(lp_blank, float("-inf"))
    lp_label[:, :, :U1 - 1] = lp_full[:, :, :U1 - 1].gather(3, targets.long()[:, None, :, None].expand(
        B, T, U1 - 1, 1)).squeeze(3)
    costs, _ = ref.rnnt_lattice_reference(lp_blank, lp_label, tl, ul)
    return costs


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_error_bounds(dtype):
    logits, targets, tl, ul = make_case(4, 30, 8, 40, seed=51, scale=2.0)
    truth, g_truth = loss_and_grad(swr.rnnt_loss, logits.double(), targets, tl, ul, blank=0, reduction="none")
    low = logits.to(dtype)
    ours, g_ours = loss_and_grad(swr.rnnt_loss, low, targets, tl, ul, blank=0, reduction="none")
    assert ours.dtype == torch.float32 and g_ours.dtype == dtype
    same_dtype = _pytorch_same_dtype_loss(low, targets, tl, ul)
    err_ours = (ours.double() - truth).abs().max()
    err_ref = (same_dtype.double() - truth).abs().max()
    assert err_ours <= 2 * err_ref + 1e-6, (err_ours, err_ref)
    # fp32 accumulation: on the rounded inputs our half result equals the fp32 computation
    exact_on_rounded, g_exact = loss_and_grad(swr.rnnt_loss, low.float(), targets, tl, ul, blank=0, reduction="none")
    torch.testing.assert_close(ours, exact_on_rounded, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(g_ours.float(), g_exact.to(dtype).float(), rtol=0, atol=torch.finfo(dtype).eps)
    # the gradient: within twice the error of rounding the exact gradient (on the same inputs) to the dtype
    g_exact64 = loss_and_grad(swr.rnnt_loss, low.double(), targets, tl, ul, blank=0, reduction="none")[1]
    err_ours = (g_ours.double() - g_exact64).abs().max()
    assert err_ours <= 2 * (g_exact64.to(dtype).double() - g_exact64).abs().max() + 1e-7, err_ours


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
def test_inplace_gradient_and_inputs_untouched(dtype):
    logits, targets, tl, ul = make_case(3, 10, 5, 11, seed=61, dtype=dtype)
    keep = logits.clone()
    costs, grad = rnnt_loss_and_grad(logits, targets, tl, ul, blank=0)
    assert torch.equal(logits, keep)  # not modified without inplace
    work = logits.clone()
    costs2, grad2 = rnnt_loss_and_grad(work, targets, tl, ul, blank=0, inplace=True)
    assert grad2.data_ptr() == work.data_ptr()
    torch.testing.assert_close(costs, costs2, rtol=0, atol=0)
    torch.testing.assert_close(grad, grad2, rtol=0, atol=0)
    ref_costs, ref_grad = ref.rnnt_loss_reference_with_grad(logits.double(), targets, tl, ul, blank=0)
    torch.testing.assert_close(costs.double(), ref_costs, rtol=1e-5, atol=1e-5)
    tol = 1e-2 if dtype == torch.bfloat16 else 1e-6
    torch.testing.assert_close(grad.double(), ref_grad, rtol=tol, atol=tol)
    # padding nodes get a zero gradient
    b = int(torch.argmin(tl))
    assert torch.all(grad[b, tl[b]:] == 0)


def test_grad_scale_and_no_grad():
    logits, targets, tl, ul = make_case(3, 6, 3, 5, seed=71)
    scale = torch.tensor([0.5, -2.0, 3.0])
    c1, g1 = rnnt_loss_and_grad(logits, targets, tl, ul, blank=0, grad_scale=scale)
    c0, g0 = rnnt_loss_and_grad(logits, targets, tl, ul, blank=0)
    torch.testing.assert_close(g1, g0 * scale[:, None, None, None])
    c2, g2 = rnnt_loss_and_grad(logits, targets, tl, ul, blank=0, compute_grad=False)
    assert g2 is None
    torch.testing.assert_close(c2, c0)


def test_packed_equals_padded():
    logits, targets, tl, ul = make_case(4, 9, 6, 13, seed=81)
    rows = torch.cat([logits[b, :tl[b], :ul[b] + 1].reshape(-1, 13) for b in range(4)])
    w = torch.tensor([1.0, 0.3, 2.0, 0.7])
    padded = loss_and_grad(swr.rnnt_loss, logits, targets, tl, ul, blank=0, reduction="none", weights=w)
    packed = loss_and_grad(swr.rnnt_loss_packed, rows, targets, tl, ul, blank=0, reduction="none", weights=w)
    torch.testing.assert_close(padded[0], packed[0])
    g_rows = torch.cat([padded[1][b, :tl[b], :ul[b] + 1].reshape(-1, 13) for b in range(4)])
    torch.testing.assert_close(packed[1], g_rows)
    # explicit offsets: the samples in reverse order with gaps between them
    sizes = (tl.long() * (ul.long() + 1)).tolist()
    gap, offsets, pieces, pos = 3, [0] * 4, [], 0
    for b in reversed(range(4)):
        pieces.append(torch.randn(gap, 13))
        pos += gap
        offsets[b] = pos
        pieces.append(rows[sum(sizes[:b]):sum(sizes[:b + 1])])
        pos += sizes[b]
    shuffled = torch.cat(pieces)
    costs, _ = rnnt_loss_and_grad(shuffled, targets, tl, ul, blank=0, packed=True, offsets=torch.tensor(offsets))
    torch.testing.assert_close(costs, padded[0])


def test_lattice_flows_match_autograd():
    logits, targets, tl, ul = make_case(3, 7, 4, 6, seed=91)
    _, lp_blank, lp_label = ref._node_log_probs(logits, targets, 0)
    costs, bf, lf = rnnt_lattice(lp_blank.contiguous(), lp_label.contiguous(), tl, ul)
    lb = lp_blank.clone().requires_grad_(True)
    ll = lp_label.clone().requires_grad_(True)
    c_ref, _ = ref.rnnt_lattice_reference(lb, ll, tl, ul)
    gb, gl = torch.autograd.grad(c_ref.sum(), [lb, ll])
    torch.testing.assert_close(costs, c_ref.detach())
    torch.testing.assert_close(bf, -gb, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(lf, -torch.nan_to_num(gl), rtol=1e-5, atol=1e-6)
    # flows out of every valid node sum to its occupancy; the start node is always visited
    torch.testing.assert_close((bf + lf)[:, 0, 0], torch.ones(3, dtype=bf.dtype))


def test_module_and_int_dtypes():
    logits, targets, tl, ul = make_case(2, 5, 3, 4, seed=99)
    m = swr.RNNTLoss(blank=0, reduction="sum")
    a = m(logits, targets, tl, ul)
    b = swr.rnnt_loss(logits, targets.long(), tl.long(), ul.long(), blank=0, reduction="sum")
    torch.testing.assert_close(a, b)
    assert "reduction='sum'" in repr(m)


# ---------------------------------------------------------------------------------------------
# bad input: a clear error naming the argument and the value, before any kernel runs
# ---------------------------------------------------------------------------------------------
def _good():
    return make_case(2, 5, 3, 4, seed=5, full=True)


@pytest.mark.parametrize("mutate,exc,match", [
    (lambda a: a.update(logits=a["logits"][0]), ValueError, r"logits must have 4 dimensions, got shape \(5, 4, 4\)"),
    (lambda a: a.update(logits=a["logits"].long()), TypeError, r"logits must have dtype in .*got int64"),
    (lambda a: a.update(targets=a["targets"].float()), TypeError, r"targets must have dtype in .*got float32"),
    (lambda a: a.update(targets=a["targets"][:1]), ValueError, r"targets has batch size 1 but the batch size is 2"),
    (lambda a: a.update(targets=a["targets"][:, :2]), ValueError, r"targets has 2 columns but .* U=3"),
    (lambda a: a.update(logit_lengths=a["logit_lengths"][:1]), ValueError,
     r"logit_lengths has 1 entries but the batch size is 2"),
    (lambda a: a["logit_lengths"].__setitem__(1, 6), ValueError,
     r"logit_lengths\[1\] = 6 exceeds the padded time dimension 5"),
    (lambda a: a["logit_lengths"].__setitem__(0, 0), ValueError, r"logit_lengths\[0\] = 0; every sample needs"),
    (lambda a: a["target_lengths"].__setitem__(1, -1), ValueError, r"target_lengths\[1\] = -1 is negative"),
    (lambda a: a["target_lengths"].__setitem__(0, 4), ValueError,
     r"target_lengths\[0\] = 4 exceeds the padded label dimension 3"),
    (lambda a: a["targets"].__setitem__((1, 2), 4), ValueError, r"targets\[1, 2\] = 4 is outside \[0, 4\)"),
    (lambda a: a["targets"].__setitem__((0, 1), -3), ValueError, r"targets\[0, 1\] = -3 is outside"),
    (lambda a: a["targets"].__setitem__((0, 0), 0), ValueError, r"targets\[0, 0\] = 0 equals blank"),
    (lambda a: a.update(blank=4), ValueError, r"blank must be in \[-4, 4\) for V=4 classes, got 4"),
    (lambda a: a.update(blank=-5), ValueError, r"blank must be in \[-4, 4\) .* got -5"),
    (lambda a: a.update(reduction="avg"), ValueError, r"reduction must be one of .*got 'avg'"),
    (lambda a: a.update(fastemit_lambda=-0.1), ValueError, r"fastemit_lambda must be a finite number >= 0, got -0.1"),
    (lambda a: a.update(logits=[[1.0]]), TypeError, r"logits must be a torch.Tensor, got list"),
])
def test_bad_input(mutate, exc, match):
    logits, targets, tl, ul = _good()
    args = dict(logits=logits, targets=targets, logit_lengths=tl, target_lengths=ul, blank=0, reduction="mean")
    keep = {k: v.clone() for k, v in args.items() if isinstance(v, torch.Tensor)}
    mutate(args)
    with pytest.raises(exc, match=match):
        swr.rnnt_loss(**args)
    del keep


def test_labels_beyond_target_length_are_ignored():
    logits, targets, tl, ul = _good()
    ul = torch.tensor([1, 3], dtype=torch.int32)
    t2 = targets.clone()
    t2[0, 1:] = -7  # padding value outside the label range, beyond target_lengths[0]
    torch.testing.assert_close(swr.rnnt_loss(logits, t2, tl, ul, blank=0), swr.rnnt_loss(logits, targets, tl, ul, blank=0))


def test_bad_packed_and_inplace_input():
    logits, targets, tl, ul = _good()
    rows = torch.cat([logits.reshape(-1, 4)] * 2)  # 80 rows for 40 lattice nodes
    with pytest.raises(ValueError, match=r"logits has 80 rows but sum_b .* = 40"):
        swr.rnnt_loss_packed(rows, targets, tl, ul, blank=0)
    with pytest.raises(ValueError, match=r"offsets place a sample in rows \[0, 100\) outside the 80 rows"):
        swr.rnnt_loss_packed(rows, targets, tl, ul, blank=0, offsets=torch.tensor([0, 80]))
    with pytest.raises(ValueError, match="logits must be contiguous when inplace=True"):
        rnnt_loss_and_grad(logits.transpose(1, 2), targets, tl, ul, blank=0, inplace=True)


def test_cuda_tensor_mismatch_message():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device: device-mismatch check needs one")
    logits, targets, tl, ul = _good()
    with pytest.raises(ValueError, match=r"targets is on cpu but must be on cuda"):
        swr.rnnt_loss(logits.cuda(), targets, tl.cuda(), ul.cuda())


# ---- the CPU's vectorised float rows (csrc/cpu/rows.h): every tail length, wide ranges, -inf, NaN ----
def _stage_inputs(V, seed, scale):
    T, U = 3, 2
    logits, targets, tl, ul = make_case(1, T, U, V, blank=0, seed=seed, full=True, scale=scale)
    from samplewise_rnnt import ops
    x2d = logits.view(-1, V)
    lay = ops.padded_layout(1, T, U + 1, "cpu")
    return ops, x2d, targets.long(), tl.long(), ul.long(), lay


@pytest.mark.parametrize("V", [2, 3, 15, 16, 17, 33, 100, 1024])
@pytest.mark.parametrize("scale", [1.0, 30.0])
def test_float_rows_against_fp64(V, scale):
    """Node scores and the logits gradient of fp32 rows (the vectorised loops: 16 lanes, then a scalar tail) against
    the same stages run on the fp64 copy, within twice the error of torch's own fp32 logsumexp / softmax against
    fp64 (plus 8 ulps)."""
    ops, x2d, tg, tl, ul, lay = _stage_inputs(V, seed=V, scale=scale)
    x64 = x2d.double()
    s32 = ops._rnnt_scores(x2d, tg, tl, ul, lay, 0)
    s64 = ops._rnnt_scores(x64, tg, tl, ul, lay, 0)
    assert_within_reference_error(s32[0], torch.logsumexp(x2d, 1), s64[0], what="lse")
    _, flows = ops._rnnt_lattice(s64, tl, ul, lay, True)
    g64 = ops._rnnt_grad(x64, torch.empty_like(x64), s64, flows, tg, tl, ul, lay, 0, -1.0, 0.0)
    f32 = tuple(f.float() for f in flows)
    g32 = ops._rnnt_grad(x2d, torch.empty_like(x2d), s32, f32, tg, tl, ul, lay, 0, -1.0, 0.0)
    occ = (f32[0] + f32[1])[:, None]
    torch_ref = torch.softmax(x2d, 1) * occ  # torch's fp32 softmax term, the sparse terms added exactly
    torch_ref = torch_ref.double() - (g64 - torch.softmax(x64, 1) * occ.double())
    assert_within_reference_error(g32, torch_ref, g64, what="logits gradient")
    g_in = x2d.clone()
    ops._rnnt_grad(g_in, g_in, s32, f32, tg, tl, ul, lay, 0, -1.0, 0.0)
    assert torch.equal(g_in, g32)  # in place (one pointer) = out of place, bit for bit


def test_float_rows_special_values():
    """-inf logits (masked classes) get probability 0 and a zero gradient, the rest of the row is exact; a NaN
    logit makes its node's log-sum-exp NaN (never a silently finite number); a row of -inf has lse -inf."""
    V = 37
    ops, x2d, tg, tl, ul, lay = _stage_inputs(V, seed=1, scale=3.0)
    x = x2d.clone()
    x[:, 20:] = float("-inf")
    tg = tg % 20
    tg[tg == 0] = 1
    s = ops._rnnt_scores(x, tg, tl, ul, lay, 0)
    s_ref = ops._rnnt_scores(x[:, :20].contiguous(), tg, tl, ul, lay, 0)
    for a, b in zip(s, s_ref):  # the same terms summed in another lane order: a few ulps at the values' scale
        atol = 8 * torch.finfo(torch.float32).eps * b[torch.isfinite(b)].abs().max().item()
        torch.testing.assert_close(a, b, rtol=0, atol=atol)
    _, flows = ops._rnnt_lattice(s, tl, ul, lay, True)
    g = ops._rnnt_grad(x, torch.empty_like(x), s, flows, tg, tl, ul, lay, 0, -1.0, 0.0)
    assert torch.equal(g[:, 20:], torch.zeros_like(g[:, 20:]))
    assert torch.isfinite(g).all()
    y = x2d.clone()
    y[4, 7] = float("nan")
    y[5, :] = float("-inf")
    lse = ops._rnnt_scores(y, tg, tl, ul, lay, 0)[0]
    assert torch.isnan(lse[4]) and lse[5] == float("-inf")
    assert torch.isfinite(lse[[0, 1, 2, 3, 6, 7, 8]]).all()


def test_gradient_memory_advice():
    """The autograd entry point's fresh gradient asks for 2 MiB pages (advice only): never for a tensor below two
    huge pages, and the advised tensor behaves as any other."""
    from samplewise_rnnt.ops import _ext

    assert _ext().advise_hugepages(torch.empty(1000)) is False
    big = torch.empty(3 << 20)  # 12 MiB
    assert isinstance(_ext().advise_hugepages(big), bool)
    big.fill_(2.5)
    assert big.sum().item() == 2.5 * (3 << 20)
