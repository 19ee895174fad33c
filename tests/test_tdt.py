"""The TDT loss (samplewise_rnnt.tdt_loss) against independent references.

References: a brute-force sum over all TDT alignments of tiny lattices, the fp64 dynamic-programming
reference differentiated by autograd (reference.tdt_loss_reference), NeMo's TDTLossPytorch as the
outside reference (tolerances from tests/tolerance.py's rule), and a line-by-line port of NeMo's numba
TDT kernels (alphas, betas, gradients with FastEmit and clamp), which NeMo trains with and which cannot
run without a GPU. CUDA against CPU at the end (skipped, with the reason, without a GPU).
"""
import math

import numpy as np
import pytest
import torch

import samplewise_rnnt as swr
from samplewise_rnnt import reference as ref
from samplewise_rnnt.ops import rnnt_loss_and_grad
from samplewise_rnnt.tdt import _prepare_tdt, _tdt_core, _tdt_grad, _tdt_lattice, _tdt_scores, draw_rnnt_mode
from tolerance import assert_within_reference_error

DURATION_SETS = [(0, 1, 2, 3, 4), (0, 1), (0, 1, 3), (0, 1, 2, 4, 8)]
REDUCTIONS = ["none", "sum", "mean", "mean_volume"]
EPS32 = torch.finfo(torch.float32).eps


def make_case(B, T, U, V1, durations, seed=0, dtype=torch.float64, blank=-1, full=False, scale=1.0):
    """logits [B, T, U+1, V1 + D], targets avoiding blank, lengths with sample 0 full and the last at U."""
    g = torch.Generator().manual_seed(seed)
    D = len(durations)
    x = (torch.randn(B, T, U + 1, V1 + D, generator=g, dtype=torch.float64) * scale).to(dtype)
    b = blank % V1
    labels = torch.tensor([v for v in range(V1) if v != b])
    y = labels[torch.randint(0, V1 - 1, (B, U), generator=g)].int()
    if full:
        tl, ul = torch.full((B,), T, dtype=torch.int32), torch.full((B,), U, dtype=torch.int32)
    else:
        tl = torch.randint(1, T + 1, (B,), generator=g, dtype=torch.int32)
        ul = torch.randint(0, U + 1, (B,), generator=g, dtype=torch.int32)
        tl[0], ul[-1] = T, U
    return x, y, tl, ul


def loss_and_grad(x, y, tl, ul, durations, reduction="none", weights=None, **kw):
    z = x.detach().clone().requires_grad_(True)
    loss = swr.tdt_loss(z, y, tl, ul, list(durations), reduction=reduction, **kw)
    w = weights if (weights is not None and reduction == "none") else 1.0
    (loss.double() * w).sum().backward()
    return loss.detach(), z.grad


# ------------------------------------------------------------------------------------------------
# brute force = DP reference = ours
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("durations", DURATION_SETS, ids=str)
@pytest.mark.parametrize("T,U", [(1, 0), (1, 2), (2, 1), (3, 2), (4, 3), (6, 2)])
def test_brute_force_equals_reference_and_ours(durations, T, U):
    sigma = 0.05 if T % 2 else 0.0
    x, y, tl, ul = make_case(2, T, U, 4, durations, seed=T * 10 + U, full=True, scale=2.0)
    bf = torch.stack([ref.brute_force_tdt_loss(x[b], y[b], durations, sigma=sigma) for b in range(2)])
    dp = ref.tdt_loss_reference(x, y, tl, ul, durations, reduction="none", sigma=sigma)
    ours = swr.tdt_loss(x, y, tl, ul, list(durations), reduction="none", sigma=sigma)
    torch.testing.assert_close(dp, bf, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(ours, bf, rtol=1e-12, atol=1e-12)


def test_brute_force_with_variable_lengths_and_blank_zero():
    durations = (0, 1, 2)
    x, y, tl, ul = make_case(4, 5, 3, 5, durations, seed=3, blank=0)
    ours = swr.tdt_loss(x, y, tl, ul, durations, blank=0, reduction="none", sigma=0.1)
    for b in range(4):
        bf = ref.brute_force_tdt_loss(x[b, :tl[b], :ul[b] + 1], y[b, :ul[b]], durations, blank=0, sigma=0.1)
        torch.testing.assert_close(ours[b], bf, rtol=1e-12, atol=1e-12)


def test_gradients_equal_autograd_of_the_reference():
    durations = (0, 1, 2, 3, 4)
    x, y, tl, ul = make_case(3, 6, 4, 5, durations, seed=1, scale=2.0)
    w = torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64)
    loss, g = loss_and_grad(x, y, tl, ul, durations, weights=w, sigma=0.05)
    z = x.clone().requires_grad_(True)
    truth = ref.tdt_loss_reference(z, y, tl, ul, durations, reduction="none", sigma=0.05)
    (truth * w).sum().backward()
    torch.testing.assert_close(loss, truth.detach(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(g, z.grad, rtol=1e-10, atol=1e-12)
    V1 = 5
    pad = torch.ones_like(g[..., 0], dtype=torch.bool)
    for b in range(3):
        pad[b, :tl[b], :ul[b] + 1] = False
    assert torch.equal(g[pad], torch.zeros_like(g[pad]))  # padding gets zero, tokens and durations
    assert g[..., V1:].abs().sum() > 0


def test_gradcheck_fp64():
    durations = (0, 1, 2)
    x, y, tl, ul = make_case(2, 4, 2, 3, durations, seed=5)
    z = x.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a: swr.tdt_loss(a, y, tl, ul, durations, reduction="none", sigma=0.05),
                                    (z,), eps=1e-6, atol=1e-7)
    assert torch.autograd.gradcheck(lambda a: swr.tdt_loss(a, y, tl, ul, durations, reduction="mean_volume"),
                                    (z,), eps=1e-6, atol=1e-7)


# ------------------------------------------------------------------------------------------------
# NeMo's TDTLossPytorch (the outside reference)
# ------------------------------------------------------------------------------------------------
NEMO_REDUCTION = {"none": "none", "sum": "sum", "mean": "mean_batch", "mean_volume": "mean_volume"}


def nemo_pytorch_tdt(monkeypatch, x, y, tl, ul, durations, reduction, sigma):
    """NeMo's pure-PyTorch TDT loss and its autograd gradient (its `.cuda()` calls made no-ops)."""
    mod = pytest.importorskip("nemo.collections.asr.losses.rnnt_pytorch")
    monkeypatch.setattr(torch.Tensor, "cuda", lambda self, *a, **k: self)
    V1 = x.shape[-1] - len(durations)
    z = x.detach().clone().requires_grad_(True)
    loss = mod.TDTLossPytorch(blank=V1 - 1, durations=list(durations), reduction=reduction, sigma=sigma)(
        z, y.long(), tl.long(), ul.long())
    loss.sum().backward()
    monkeypatch.undo()
    return loss.detach(), z.grad


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("durations,sigma", [((0, 1, 2, 3, 4), 0.05), ((0, 1), 0.0), ((0, 1, 2, 4), 0.02)],
                         ids=str)
def test_against_nemo_tdt_pytorch(monkeypatch, reduction, durations, sigma):
    x, y, tl, ul = make_case(3, 5, 3, 6, durations, seed=7, dtype=torch.float32, scale=2.0)
    theirs, g_theirs = nemo_pytorch_tdt(monkeypatch, x, y, tl, ul, durations, NEMO_REDUCTION[reduction], sigma)
    ours, g_ours = loss_and_grad(x, y, tl, ul, durations, reduction, sigma=sigma)
    truth, g_truth = loss_and_grad(x.double(), y, tl, ul, durations, reduction, sigma=sigma)
    truth_ref = ref.tdt_loss_reference(x.double(), y, tl, ul, durations, reduction=reduction, sigma=sigma)
    torch.testing.assert_close(truth, truth_ref.double(), rtol=1e-12, atol=1e-12)
    assert ours.dtype == torch.float32 and g_ours.dtype == torch.float32
    assert_within_reference_error(ours.reshape(-1), theirs.reshape(-1), truth.reshape(-1), what="loss")
    assert_within_reference_error(g_ours, g_theirs, g_truth, what="gradient")


def test_nemo_mean_is_documented_formula(monkeypatch):
    durations = (0, 1, 2)
    x, y, tl, ul = make_case(3, 4, 2, 4, durations, seed=2, dtype=torch.float32)
    ul.clamp_(min=1)
    theirs, _ = nemo_pytorch_tdt(monkeypatch, x, y, tl, ul, durations, "mean", 0.0)
    ours = (swr.tdt_loss(x, y, tl, ul, durations, reduction="none") / ul).mean()
    truth = (swr.tdt_loss(x.double(), y, tl, ul, durations, reduction="none") / ul).mean()
    assert_within_reference_error(ours.reshape(1), theirs.reshape(1), truth.reshape(1), what="NeMo mean")


# ------------------------------------------------------------------------------------------------
# NeMo's numba kernels (FastEmit, clamp), ported line by line in fp64
# ------------------------------------------------------------------------------------------------
NUMBA_INF = 10000.0  # gpu_rnnt_kernel.INF


def _lse(a, b):
    if a == -math.inf:
        return b
    if b == -math.inf:
        return a
    return math.log1p(math.exp(min(a, b) - max(a, b))) + max(a, b)


def numba_tdt_port(x, y, tl, ul, durations, blank, sigma, lam, clamp):
    """compute_tdt_{alphas,betas,grad}_kernel of NeMo 3.0 for each sample (fp64, loops), then the autograd
    of TDTLossNumba.forward's log_softmax of the duration logits. Returns costs [B], grads like x."""
    x = x.double().numpy()
    B, _, _, W = x.shape
    D = len(durations)
    V1 = W - D
    durs = list(durations)
    costs = np.zeros(B)
    grads = np.zeros_like(x)
    for b in range(B):
        T, U = int(tl[b]), int(ul[b]) + 1
        acts = x[b, :T, :U]
        m = acts[..., :V1].max(-1, keepdims=True)
        denom = -(np.log(np.exp(acts[..., :V1] - m).sum(-1)) + m[..., 0])
        xd = acts[..., V1:]
        md = xd.max(-1, keepdims=True)
        lpd = xd - (np.log(np.exp(xd - md).sum(-1, keepdims=True)) + md)  # log_softmax in TDTLossNumba.forward
        labels = [int(v) for v in y[b, :U - 1]]

        def logp(t, u, v):
            return denom[t, u] + acts[t, u, v]

        al = np.zeros((T, U))
        for n in range(1, T + U - 1):
            for u in range(U):
                t = n - u
                if u == 0:
                    if 0 < t < T:
                        al[t, 0] = -NUMBA_INF
                        for i in range(D):
                            if durs[i] == 0:
                                continue
                            if t >= durs[i]:
                                al[t, 0] = _lse(al[t, 0], al[t - durs[i], 0] + logp(t - durs[i], 0, blank) - sigma
                                                + lpd[t - durs[i], 0, i])
                            else:
                                break
                elif u < U:
                    if t == 0:
                        al[0, u] = (al[0, u - 1] + logp(0, u - 1, labels[u - 1]) - sigma + lpd[0, u - 1, 0]
                                    if durs[0] == 0 else -NUMBA_INF)
                    elif 0 < t < T:
                        no_emit = emit = -NUMBA_INF
                        for i in range(D):
                            if durs[i] == 0:
                                continue
                            if t >= durs[i]:
                                no_emit = _lse(no_emit, al[t - durs[i], u] + logp(t - durs[i], u, blank) - sigma
                                               + lpd[t - durs[i], u, i])
                            else:
                                break
                        for i in range(D):
                            if t >= durs[i]:
                                emit = _lse(emit, al[t - durs[i], u - 1] + logp(t - durs[i], u - 1, labels[u - 1])
                                            - sigma + lpd[t - durs[i], u - 1, i])
                            else:
                                break
                        al[t, u] = _lse(emit, no_emit)
        ll = -NUMBA_INF
        for i in range(D):
            if durs[i] == 0:
                continue
            if durs[i] == 1:
                ll = al[T - 1, U - 1] + logp(T - 1, U - 1, blank) - sigma + lpd[T - 1, U - 1, i]
                continue
            if T >= durs[i]:
                ll = _lse(ll, al[T - durs[i], U - 1] + logp(T - durs[i], U - 1, blank) - sigma
                          + lpd[T - durs[i], U - 1, i])
            else:
                break
        be = np.zeros((T, U))
        i1 = 0 if durs[0] == 1 else 1
        be[T - 1, U - 1] = logp(T - 1, U - 1, blank) - sigma + lpd[T - 1, U - 1, i1]
        for n in range(T + U - 2, -1, -1):
            for u in range(U):
                t = n - u
                if u == U - 1:
                    if t >= 0 and t + 1 < T:
                        be[t, u] = -NUMBA_INF
                        for i in range(D):
                            d = durs[i]
                            if d == 0:
                                continue
                            if t + d < T:
                                be[t, u] = _lse(be[t, u], be[t + d, u] + logp(t, u, blank) + lpd[t, u, i] - sigma)
                            elif t + d == T:
                                be[t, u] = _lse(be[t, u], logp(t, u, blank) + lpd[t, u, i] - sigma)
                elif u < U - 1:
                    if t == T - 1:
                        be[t, u] = (be[t, u + 1] + logp(t, u, labels[u]) + lpd[t, u, 0] - sigma
                                    if durs[0] == 0 else -NUMBA_INF)
                    elif 0 <= t < T - 1:
                        no_emit = emit = -NUMBA_INF
                        for i in range(D):
                            d = durs[i]
                            if d == 0:
                                continue
                            if t + d < T:
                                no_emit = _lse(no_emit, be[t + d, u] + logp(t, u, blank) + lpd[t, u, i] - sigma)
                        for i in range(D):
                            d = durs[i]
                            if t + d < T:
                                emit = _lse(emit, be[t + d, u + 1] + logp(t, u, labels[u]) + lpd[t, u, i] - sigma)
                        be[t, u] = _lse(emit, no_emit)
        for t in range(T):
            for u in range(U):
                a = al[t, u]
                lpk_blank = logp(t, u, blank) - sigma
                gd = np.zeros(D)
                for i, d in enumerate(durs):
                    g = 0.0
                    if t + d < T and u < U - 1:
                        g -= math.exp(a + be[t + d, u + 1] + logp(t, u, labels[u]) - sigma - ll)
                    if t + d < T and d > 0:
                        g -= math.exp(a + be[t + d, u] + lpk_blank - ll)
                    if t + d == T and u == U - 1 and d > 0:
                        g -= math.exp(a + lpk_blank - ll)
                    gd[i] = g * math.exp(lpd[t, u, i])
                # TDTLossNumba applies log_softmax to the duration logits in PyTorch: its backward
                grads[b, t, u, V1:] = gd - np.exp(lpd[t, u]) * gd.sum()
                for v in range(V1):
                    lpk = logp(t, u, v)
                    g = math.exp(a + be[t, u] + lpk - ll)
                    if lam > 0.0 and u < U - 1:
                        for i, d in enumerate(durs):
                            if t + d < T:
                                g += lam * math.exp(a + logp(t, u, labels[u]) + lpd[t, u, i] + be[t + d, u + 1]
                                                    + lpk - sigma - ll)
                    if v == blank and u == U - 1:
                        for i, d in enumerate(durs):
                            if d > 0 and t == T - d:
                                g -= math.exp(a + lpk - sigma - ll + lpd[t, u, i])
                    if v == blank:
                        for i, d in enumerate(durs):
                            if d > 0 and t < T - d:
                                g -= math.exp(a + lpk - sigma - ll + be[t + d, u] + lpd[t, u, i])
                    if u < U - 1 and v == labels[u]:
                        for i, d in enumerate(durs):
                            if t + d < T:
                                g -= math.exp(math.log1p(lam) + a + lpk - sigma - ll + be[t + d, u + 1]
                                              + lpd[t, u, i])
                    if clamp > 0.0:
                        g = max(min(g, clamp), -clamp)
                    grads[b, t, u, v] = g
        costs[b] = -ll * (1.0 + lam)
    return torch.from_numpy(costs), torch.from_numpy(grads)


@pytest.mark.parametrize("durations,sigma,lam,clamp", [
    ((0, 1, 2, 3, 4), 0.05, 0.0, -1.0),
    ((0, 1, 2, 3, 4), 0.05, 0.1, -1.0),
    ((0, 1, 3), 0.0, 0.01, 0.05),
    ((0, 1), 0.1, 0.2, 0.02),
], ids=str)
def test_fastemit_and_clamp_equal_nemo_numba_kernels(durations, sigma, lam, clamp):
    x, y, tl, ul = make_case(3, 5, 3, 5, durations, seed=11, scale=2.0)
    c_numba, g_numba = numba_tdt_port(x, y, tl, ul, durations, 4, sigma, lam, clamp)
    ours, g_ours = loss_and_grad(x, y, tl, ul, durations, sigma=sigma, fastemit_lambda=lam, clamp=clamp)
    c_ref, g_ref = ref.tdt_loss_reference_with_grad(x, y, tl, ul, durations, sigma=sigma, clamp=clamp,
                                                    fastemit_lambda=lam)
    torch.testing.assert_close(ours, c_numba, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(g_ours, g_numba, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(c_ref, c_numba, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(g_ref, g_numba, rtol=1e-9, atol=1e-9)
    if clamp > 0:
        assert g_ours[..., :5].abs().max() <= clamp + 1e-12
        assert g_ours[..., 5:].abs().max() > clamp  # the duration part is not clamped (NeMo's)


# ------------------------------------------------------------------------------------------------
# omega: the standard RNN-T loss of the token logits, drawn once per call
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("lam,clamp", [(0.0, -1.0), (0.1, 0.05)])
def test_omega_one_is_rnnt_loss_of_the_token_logits(lam, clamp):
    durations = (0, 1, 2, 3)
    x, y, tl, ul = make_case(3, 6, 3, 5, durations, seed=4, dtype=torch.float32, scale=2.0)
    ours, g = loss_and_grad(x, y, tl, ul, durations, sigma=0.05, omega=1.0, fastemit_lambda=lam, clamp=clamp)
    c, gr = rnnt_loss_and_grad(x[..., :5].contiguous(), y, tl, ul, blank=-1, clamp=clamp, fastemit_lambda=lam)
    torch.testing.assert_close(ours, c, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(g[..., :5], gr, rtol=1e-6, atol=1e-7)
    assert torch.equal(g[..., 5:], torch.zeros_like(g[..., 5:]))  # numba zeroes the duration gradient
    c_ref, g_ref = ref.tdt_loss_reference_with_grad(x, y, tl, ul, durations, clamp=clamp, fastemit_lambda=lam,
                                                    rnnt_mode=True)
    torch.testing.assert_close(g, g_ref, rtol=1e-5, atol=1e-6)


def test_omega_draws_once_per_call_and_is_reproducible():
    durations = (0, 1, 2)
    x, y, tl, ul = make_case(2, 4, 2, 4, durations, seed=6)
    tdt = swr.tdt_loss(x, y, tl, ul, durations, reduction="sum", sigma=0.05)
    rnnt = swr.rnnt_loss(x[..., :4], y, tl, ul, reduction="sum")
    assert not torch.allclose(tdt, rnnt)

    def run(seed):
        torch.manual_seed(seed)
        return [swr.tdt_loss(x, y, tl, ul, durations, reduction="sum", sigma=0.05, omega=0.4) for _ in range(12)]

    first, second = run(123), run(123)
    assert all(torch.equal(a, b) for a, b in zip(first, second))
    torch.manual_seed(123)
    draws = [bool(torch.rand(()) < 0.4) for _ in range(12)]  # exactly one draw per call
    assert 0 < sum(draws) < 12
    for value, d in zip(first, draws):
        torch.testing.assert_close(value, rnnt if d else tdt, rtol=1e-12, atol=1e-12)
    g = torch.Generator().manual_seed(0)
    assert draw_rnnt_mode(0.0, g) is False and draw_rnnt_mode(1.0, g) is True
    state = torch.get_rng_state()
    swr.tdt_loss(x, y, tl, ul, durations, omega=0.0)
    swr.tdt_loss(x, y, tl, ul, durations, omega=1.0)
    assert torch.equal(state, torch.get_rng_state())  # omega 0 or 1: nothing drawn


def test_retained_graph_backward_repeats_the_draw():
    durations = (0, 1, 2)
    x, y, tl, ul = make_case(2, 4, 2, 4, durations, seed=8, dtype=torch.float32)
    torch.manual_seed(1)
    z = x.clone().requires_grad_(True)
    loss = swr.tdt_loss(z, y, tl, ul, durations, omega=0.5)
    loss.backward(retain_graph=True)
    g1 = z.grad.clone()
    z.grad = None
    loss.backward()
    torch.testing.assert_close(z.grad, g1, rtol=0, atol=0)


# ------------------------------------------------------------------------------------------------
# dtypes, packed, in place, stages on sub-layouts
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("reduction", ["none", "mean"])
def test_low_precision_against_fp64(dtype, reduction):
    """Bounds derived as in test_property.py: each arc score is a log-softmax over V1 tokens plus one over D
    durations, read exactly and accumulated in fp32; the cost sums at most T + U of them."""
    durations = (0, 1, 2, 3, 4)
    B, T, U, V1 = 3, 7, 4, 6
    x, y, tl, ul = make_case(B, T, U, V1, durations, seed=9, dtype=dtype, scale=2.0)
    xd = x.double()
    w = torch.tensor([0.5, 1.0, 1.5], dtype=torch.float64)
    loss, g = loss_and_grad(x, y, tl, ul, durations, reduction, weights=w, sigma=0.05)
    costs, gt = ref.tdt_loss_reference_with_grad(xd, y, tl, ul, durations, sigma=0.05)
    sw = w if reduction == "none" else torch.full((B,), 1.0 / B, dtype=torch.float64)
    truth = costs if reduction == "none" else costs.sum() / B
    tol = 4 * (T + U + 1) * (V1 + len(durations) + 2) * EPS32 * (1 + float(xd.abs().max()))
    assert loss.dtype == torch.float32 and g.dtype == dtype
    assert (loss.double() - truth).abs().max() <= tol * B
    gt = gt * sw[:, None, None, None]
    err = (g.double() - gt).abs()
    assert (err <= tol + torch.finfo(dtype).eps * gt.abs()).all(), float(err.max())


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_packed_equals_padded(reduction):
    durations = (0, 1, 2, 4)
    x, y, tl, ul = make_case(3, 5, 3, 4, durations, seed=12, dtype=torch.float32)
    W = x.shape[-1]
    pieces = [x[b, :tl[b], :ul[b] + 1].reshape(-1, W) for b in range(3)]
    gaps, rows, offsets, pos = [2, 0, 3], [], [0] * 3, 0
    for b in [2, 0, 1]:  # shuffled, with garbage between samples
        rows.append(torch.full((gaps[b], W), float("nan")))
        pos += gaps[b]
        offsets[b] = pos
        rows.append(pieces[b])
        pos += pieces[b].shape[0]
    packed = torch.cat(rows)
    zp = packed.clone().requires_grad_(True)
    lp = swr.tdt_loss_packed(zp, y, tl, ul, durations, reduction=reduction, offsets=torch.tensor(offsets),
                             sigma=0.05)
    lp.sum().backward()
    z = x.clone().requires_grad_(True)
    l = swr.tdt_loss(z, y, tl, ul, durations, reduction=reduction, sigma=0.05)
    l.sum().backward()
    torch.testing.assert_close(lp, l, rtol=0, atol=0)
    covered = torch.zeros(packed.shape[0], dtype=torch.bool)
    for b in range(3):
        n = pieces[b].shape[0]
        covered[offsets[b]:offsets[b] + n] = True
        torch.testing.assert_close(zp.grad[offsets[b]:offsets[b] + n], z.grad[b, :tl[b], :ul[b] + 1].reshape(-1, W),
                                   rtol=0, atol=0)
    assert torch.equal(zp.grad[~covered], torch.zeros_like(zp.grad[~covered]))
    dense = torch.cat(pieces)  # default offsets
    torch.testing.assert_close(swr.tdt_loss_packed(dense, y, tl, ul, durations, reduction=reduction, sigma=0.05), l,
                               rtol=0, atol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16], ids=str)
def test_inplace_equals_out_of_place(dtype):
    durations = (0, 1, 2, 3)
    x, y, tl, ul = make_case(3, 5, 3, 5, durations, seed=13, dtype=dtype)
    before = x.clone()
    p = _prepare_tdt(x, y, tl, ul, durations, -1, 0.05, 0.0, 0.1, 0.01, False, None)
    assert torch.equal(x, before)
    scale = torch.tensor([0.5, 1.0, 2.0])
    args = (p.tg, p.tl, p.ul, p.layout, p.blank, p.durations, p.sigma, p.clamp, p.fastemit_lambda, True)
    c1, g1 = _tdt_core(p.logits2d, *args, grad_scale=scale)
    assert torch.equal(x, before)  # out of place leaves the logits alone
    buf = p.logits2d.clone()
    c2, g2 = _tdt_core(buf, *args, inplace=True, grad_scale=scale)
    assert g2.data_ptr() == buf.data_ptr()
    torch.testing.assert_close(c1, c2, rtol=0, atol=0)
    torch.testing.assert_close(g1, g2, rtol=0, atol=0)
    c3, g3 = _tdt_core(p.logits2d, *args)
    torch.testing.assert_close(g1.double().view(3, -1), (g3.double().view(3, -1) * scale.double()[:, None]).to(dtype)
                               .double(), rtol=0.02 if dtype == torch.bfloat16 else 1e-6, atol=1e-7)
    c4, g4 = _tdt_core(p.logits2d, *args[:-1], False)
    assert g4 is None and torch.equal(c4, c1)


def test_stage_wrappers_on_a_sub_layout():
    """The engine's use: the stages on a group of samples (a sub-layout of the same rows) give that group's
    costs and gradient rows."""
    durations = (0, 1, 2, 3, 4)
    x, y, tl, ul = make_case(4, 6, 3, 5, durations, seed=14, dtype=torch.float32)
    p = _prepare_tdt(x, y, tl, ul, durations, -1, 0.05, 0.0, -1.0, 0.0, False, None)
    costs, grad = _tdt_core(p.logits2d, p.tg, p.tl, p.ul, p.layout, p.blank, p.durations, p.sigma, -1.0, 0.0, True)
    idx = torch.tensor([1, 3])
    L = p.layout
    sub = L._replace(offsets=L.offsets[idx].contiguous(), strides=L.strides[idx].contiguous(),
                     nrows=L.nrows[idx].contiguous())
    tg, tl_, ul_ = p.tg[idx].contiguous(), p.tl[idx].contiguous(), p.ul[idx].contiguous()
    scores = _tdt_scores(p.logits2d, tg, tl_, ul_, sub, p.blank, durations, p.sigma)
    assert scores.lp_dur.shape == (p.logits2d.shape[0], len(durations))
    c, flows = _tdt_lattice(scores, tl_, ul_, sub, durations, True)
    torch.testing.assert_close(c, costs[idx], rtol=0, atol=0)
    g = torch.zeros_like(p.logits2d)
    _tdt_grad(p.logits2d, g, scores, flows, tg, tl_, ul_, sub, p.blank, -1.0, 0.0)
    g4, gs = grad.view(4, -1), g.view(4, -1)
    torch.testing.assert_close(gs[idx], g4[idx], rtol=0, atol=0)
    assert torch.equal(gs[torch.tensor([0, 2])], torch.zeros_like(gs[:2]))
    # every alignment leaves the start node: its outflow (over durations, and blank + label) is 1
    b = 0
    start = int(sub.offsets[b])
    torch.testing.assert_close(flows.dur_flow[start].sum(), torch.tensor(1.0), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(flows.blank_flow[start] + flows.label_flow[start], torch.tensor(1.0), rtol=1e-5,
                               atol=1e-5)
    c0, f0 = _tdt_lattice(scores, tl_, ul_, sub, durations, False)
    assert f0 is None and torch.equal(c0, c)
    cr, fr = _tdt_lattice(scores, tl_, ul_, sub, durations, True, rnnt_mode=True)
    assert torch.equal(fr.dur_flow, torch.zeros_like(fr.dur_flow))


def test_module_and_int64_lengths():
    durations = [0, 1, 2]
    x, y, tl, ul = make_case(2, 4, 2, 4, durations, seed=15, dtype=torch.float32)
    m = swr.TDTLoss(durations, reduction="sum", sigma=0.05)
    assert isinstance(m, torch.nn.Module) and "durations=[0, 1, 2]" in repr(m)
    torch.testing.assert_close(m(x, y.long(), tl.long(), ul.long()),
                               swr.tdt_loss(x, y, tl, ul, durations, reduction="sum", sigma=0.05), rtol=0, atol=0)
    with pytest.raises(ValueError, match="durations"):
        swr.TDTLoss([1, 2])
    with pytest.raises(ValueError, match="omega"):
        swr.TDTLoss(durations, omega=2.0)
    with pytest.raises(ValueError, match="reduction"):
        swr.TDTLoss(durations, reduction="mean_batch")


# ------------------------------------------------------------------------------------------------
# edge cases and bad input
# ------------------------------------------------------------------------------------------------
def test_edge_cases_t1_and_u0():
    durations = (0, 1, 2)
    x, y, tl, ul = make_case(2, 1, 2, 4, durations, seed=16, full=True)
    ours = swr.tdt_loss(x, y, tl, ul, durations, reduction="none")  # T = 1: labels of duration 0, one blank
    for b in range(2):
        torch.testing.assert_close(ours[b], ref.brute_force_tdt_loss(x[b], y[b], durations), rtol=1e-12, atol=1e-12)
    x, y, tl, ul = make_case(3, 4, 0, 3, durations, seed=17)
    ours, g = loss_and_grad(x, y, tl, ul, durations)
    c, gr = ref.tdt_loss_reference_with_grad(x, y, tl, ul, durations)
    torch.testing.assert_close(ours, c, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(g, gr, rtol=1e-10, atol=1e-12)


def test_empty_batch_is_rejected_as_rnnt_loss_does():
    x = torch.zeros(0, 3, 2, 6)
    args = (torch.zeros(0, 1, dtype=torch.int32), torch.zeros(0, dtype=torch.int32), torch.zeros(0, dtype=torch.int32))
    with pytest.raises(ValueError, match="non-empty") as ours:
        swr.tdt_loss(x, *args, [0, 1])
    with pytest.raises(ValueError) as theirs:
        swr.rnnt_loss(x, *args)
    assert str(ours.value) == str(theirs.value)
    with pytest.raises(ValueError, match="at least one sample"):
        swr.tdt_loss_packed(torch.zeros(0, 6), *args, [0, 1])


BAD_DURATIONS = [
    (3, TypeError, "durations must be a list"),
    ("01", TypeError, "durations must be a list"),
    ([], ValueError, "durations is empty"),
    ([0, True], TypeError, r"durations\[1\] must be an int"),
    ([0, 1.0], TypeError, r"durations\[1\] must be an int"),
    ([0, -1, 1], ValueError, r"durations\[1\] = -1 is negative"),
    ([0, 1, 1], ValueError, "durations lists 1 twice"),
    ([0, 2, 1], ValueError, "ascending"),
    ([1, 2], ValueError, "durations must contain 0 and 1.*0 missing"),
    ([0, 2, 4], ValueError, "durations must contain 0 and 1.*1 missing"),
    (list(range(65)), ValueError, "at most 64"),
]


@pytest.mark.parametrize("durations,exc,match", BAD_DURATIONS, ids=[str(i) for i in range(len(BAD_DURATIONS))])
def test_bad_durations(durations, exc, match):
    x, y, tl, ul = make_case(2, 3, 2, 4, (0, 1), seed=0, dtype=torch.float32)
    before = [t.clone() for t in (x, y, tl, ul)]
    with pytest.raises(exc, match=match):
        swr.tdt_loss(x, y, tl, ul, durations)
    for a, b in zip((x, y, tl, ul), before):
        assert torch.equal(a, b)


def _bad_inputs():
    D = (0, 1, 2)
    x, y, tl, ul = make_case(2, 3, 2, 4, D, seed=0, dtype=torch.float32)  # V1 = 4, blank 3
    y_dur = y.clone()
    y_dur[0, 0] = 4  # the first duration logit's index: not a token class
    y_blank = y.clone()
    y_blank[1, 0] = 3
    tl_long = tl.clone()
    tl_long[1] = 4
    ul_long = ul.clone()
    ul_long[0] = 3
    return [
        ("logits", dict(logits=x[..., :3]), ValueError, "logits has 3 entries in its last dimension but durations"),
        ("logits", dict(logits=x[0]), ValueError, "logits must have 4 dimensions"),
        ("logits", dict(logits=x.long()), TypeError, "logits must have dtype"),
        ("logits", dict(logits=[1.0]), TypeError, "logits must be a torch.Tensor"),
        ("logits", dict(logits=x.to("meta")), ValueError, "logits is on meta"),
        ("targets", dict(targets=y_dur), ValueError, r"targets\[0, 0\] = 4 is outside \[0, 4\)"),
        ("targets", dict(targets=y_blank), ValueError, r"targets\[1, 0\] = 3 equals blank"),
        ("targets", dict(targets=y[:, :1]), ValueError, "targets has 1 columns"),
        ("targets", dict(targets=y.float()), TypeError, "targets must have dtype"),
        ("logit_lengths", dict(logit_lengths=tl_long), ValueError, r"logit_lengths\[1\] = 4 exceeds"),
        ("logit_lengths", dict(logit_lengths=tl[:1]), ValueError, "logit_lengths has 1 entries"),
        ("target_lengths", dict(target_lengths=ul_long), ValueError, r"target_lengths\[0\] = 3 exceeds"),
        ("target_lengths", dict(target_lengths=-ul - 1), ValueError, "target_lengths.* is negative"),
        ("blank", dict(blank=4), ValueError, r"blank must be in \[-4, 4\)"),
        ("blank", dict(blank=True), TypeError, "blank must be an int"),
        ("reduction", dict(reduction="mean_batch"), ValueError, "reduction must be one of"),
        ("sigma", dict(sigma=-0.1), ValueError, "sigma must be a finite number >= 0"),
        ("sigma", dict(sigma=float("inf")), ValueError, "sigma must be a finite number >= 0"),
        ("sigma", dict(sigma="0.05"), TypeError, "sigma must be a number"),
        ("omega", dict(omega=1.5), ValueError, r"omega must be a probability in \[0, 1\]"),
        ("omega", dict(omega=float("nan")), ValueError, "omega must be a probability"),
        ("omega", dict(omega=None), TypeError, "omega must be a number"),
        ("clamp", dict(clamp=float("nan")), ValueError, "clamp must be a number"),
        ("fastemit_lambda", dict(fastemit_lambda=-1.0), ValueError, "fastemit_lambda must be a finite number >= 0"),
    ], dict(logits=x, targets=y, logit_lengths=tl, target_lengths=ul, durations=D)


BAD, GOOD = _bad_inputs()


@pytest.mark.parametrize("i", range(len(BAD)), ids=[f"{b[0]}-{i}" for i, b in enumerate(BAD)])
def test_bad_inputs_raise_naming_the_argument(i):
    name, change, exc, match = BAD[i]
    kw = dict(GOOD)
    kw.update(change)
    tensors = {k: v.clone() for k, v in kw.items() if isinstance(v, torch.Tensor) and v.device.type == "cpu"}
    args = [kw.pop(k) for k in ("logits", "targets", "logit_lengths", "target_lengths", "durations")]
    with pytest.raises(exc, match=match):
        swr.tdt_loss(*args, **kw)
    for k, v in tensors.items():  # inputs untouched
        assert torch.equal(v, {"logits": args[0], "targets": args[1], "logit_lengths": args[2],
                               "target_lengths": args[3]}.get(k, v))


def test_inputs_never_modified():
    durations = (0, 1, 2, 3)
    x, y, tl, ul = make_case(2, 4, 2, 4, durations, seed=18, dtype=torch.float32)
    before = [t.clone() for t in (x, y, tl, ul)]
    z = x.clone().requires_grad_(True)
    swr.tdt_loss(z, y, tl, ul, durations, sigma=0.05, clamp=0.1, fastemit_lambda=0.01).backward()
    swr.tdt_loss(x.transpose(1, 2).contiguous().transpose(1, 2), y, tl, ul, durations)  # a non-contiguous view
    assert torch.equal(z.detach(), before[0])
    for a, b in zip((x, y, tl, ul), before):
        assert torch.equal(a, b)


# ------------------------------------------------------------------------------------------------
# CUDA against CPU (SWR_TEST_CUDA_DEVICE=cpu runs the same comparisons CPU against CPU)
# ------------------------------------------------------------------------------------------------
from test_cuda import DEVICE, _why_skip as _why_skip_cuda  # noqa: E402  (one definition of the CUDA skip)


CUDA_TOL = {torch.float32: (1e-5, 1e-5), torch.float64: (1e-10, 1e-10), torch.float16: (2e-3, 2e-3),
            torch.bfloat16: (1.6e-2, 1e-2)}


@pytest.mark.cuda
@pytest.mark.skipif(_why_skip_cuda() is not None, reason=str(_why_skip_cuda()))
@pytest.mark.parametrize("dtype", list(CUDA_TOL), ids=str)
@pytest.mark.parametrize("shape,durations,rnnt_mode", [((3, 5, 4, 7), (0, 1, 2, 3, 4), False),
                                                       ((2, 37, 19, 130), (0, 1, 2), False),
                                                       ((2, 40, 9, 300), (0, 1, 2, 3, 4), True)], ids=str)
def test_cuda_equals_cpu(dtype, shape, durations, rnnt_mode):
    B, T, U, V1 = shape
    x, y, tl, ul = make_case(B, T, U, V1, durations, seed=19, dtype=dtype, scale=2.0)
    p = _prepare_tdt(x, y, tl, ul, durations, -1, 0.05, 0.0, 0.3 if B == 3 else -1.0, 0.01, False, None)
    scale = torch.linspace(0.5, 2.0, B)
    args = (p.blank, p.durations, p.sigma, p.clamp, p.fastemit_lambda, True)
    c_cpu, g_cpu = _tdt_core(p.logits2d, p.tg, p.tl, p.ul, p.layout, *args, grad_scale=scale, rnnt_mode=rnnt_mode)
    dev = torch.device(DEVICE)
    L = p.layout
    Ld = L._replace(offsets=L.offsets.to(dev), strides=L.strides.to(dev), nrows=L.nrows.to(dev))
    xd = p.logits2d.to(dev)
    c_dev, g_dev = _tdt_core(xd, p.tg.to(dev), p.tl.to(dev), p.ul.to(dev), Ld, *args, grad_scale=scale.to(dev),
                             rnnt_mode=rnnt_mode)
    rtol, atol = CUDA_TOL[dtype]
    torch.testing.assert_close(c_dev.cpu(), c_cpu, rtol=max(rtol, 1e-6), atol=max(atol, 1e-5))
    torch.testing.assert_close(g_dev.cpu(), g_cpu, rtol=rtol, atol=atol)
    buf = xd.clone()
    c_in, g_in = _tdt_core(buf, p.tg.to(dev), p.tl.to(dev), p.ul.to(dev), Ld, *args, inplace=True,
                           grad_scale=scale.to(dev), rnnt_mode=rnnt_mode)
    assert g_in.data_ptr() == buf.data_ptr()
    torch.testing.assert_close(g_in, g_dev, rtol=0, atol=0)
    z = x.to(dev).clone().requires_grad_(True)
    loss = swr.tdt_loss(z, y.to(dev), tl.to(dev), ul.to(dev), durations, sigma=0.05)
    loss.backward()
    zc = x.clone().requires_grad_(True)
    lc = swr.tdt_loss(zc, y, tl, ul, durations, sigma=0.05)
    lc.backward()
    torch.testing.assert_close(loss.cpu(), lc, rtol=max(rtol, 1e-6), atol=max(atol, 1e-5))
    torch.testing.assert_close(z.grad.cpu(), zc.grad, rtol=rtol, atol=atol)
