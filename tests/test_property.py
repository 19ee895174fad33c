"""Property-based tests (hypothesis; derandomized, bounded): every public entry point against the fp64
references on random shapes, dtypes, blanks, reductions, views and requires-grad combinations;
inputs are never modified; every rejection is a ValueError/TypeError that names the argument.

Tolerances are derived, not picked. The kernels read fp16/bf16/fp32 logits exactly and accumulate in
fp32 (the lattice in fp64). A node's log-probability is a log-sum-exp over V classes: its fp32 error is
at most about ``(V + 2) * eps32 * (1 + max|x|)``; the cost sums at most ``T + U`` of them, and the
gradient's elements are flows (<= 1) times softmax values, so each is off by at most about
``(T + U + 1) * (V + 2) * eps32`` plus the rounding to its own dtype. The bounds below are 4x that.
"""
import math

import pytest
import torch

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import samplewise_rnnt as swr  # noqa: E402
from samplewise_rnnt import reference as ref  # noqa: E402
from samplewise_rnnt.ops import rnnt_loss_and_grad  # noqa: E402

SETTINGS = dict(deadline=None, derandomize=True, database=None, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
EPS32 = torch.finfo(torch.float32).eps
DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
REDUCTIONS = ["none", "sum", "mean", "mean_volume"]


@st.composite
def cases(draw, max_B=3, max_T=6, max_U=4, max_V=7):
    B = draw(st.integers(1, max_B))
    T = draw(st.integers(1, max_T))
    U = draw(st.integers(0, max_U))
    V = draw(st.integers(2, max_V))
    blank = draw(st.integers(-V, V - 1))
    seed = draw(st.integers(0, 2 ** 16))
    scale = draw(st.sampled_from([0.5, 2.0, 6.0]))
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, T, U + 1, V, generator=g, dtype=torch.float64) * scale
    labels = torch.tensor([v for v in range(V) if v != blank % V])
    y = labels[torch.randint(0, V - 1, (B, U), generator=g)]
    tl = torch.randint(1, T + 1, (B,), generator=g)
    ul = torch.randint(0, U + 1, (B,), generator=g)
    if draw(st.booleans()):
        tl[0], ul[0] = T, U
    idt = draw(st.sampled_from([torch.int32, torch.int64]))
    return dict(x=x, y=y.to(idt), tl=tl.to(idt), ul=ul.to(idt), blank=blank, B=B, T=T, U=U, V=V)


def _bound(c, dtype, x):
    acc = EPS32 if dtype != torch.float64 else torch.finfo(torch.float64).eps
    return 4 * (c["T"] + c["U"] + 1) * (c["V"] + 2) * acc * (1 + float(x.abs().max()))


def _view(x, kind):
    """The same values as a non-contiguous or offset view."""
    if kind == "contiguous":
        return x
    if kind == "transposed":
        return x.transpose(1, 2).contiguous().transpose(1, 2)
    big = torch.zeros(x.shape[0], x.shape[1], x.shape[2], 2 * x.shape[3], dtype=x.dtype)
    big[..., 1::2] = x
    return big[..., 1::2]  # strided along V


@settings(max_examples=120, **SETTINGS)
@given(c=cases(), dtype=st.sampled_from(DTYPES), reduction=st.sampled_from(REDUCTIONS),
       view=st.sampled_from(["contiguous", "transposed", "strided"]), fused_log_softmax=st.booleans(),
       clamp=st.sampled_from([-1.0, 0.0, 0.25]), lam=st.sampled_from([0.0, 0.1]))
def test_rnnt_loss_against_fp64_reference(c, dtype, reduction, view, fused_log_softmax, clamp, lam):
    x = c["x"].to(dtype)
    if not fused_log_softmax:
        x = torch.log_softmax(x.double(), -1).to(dtype)
    x = _view(x, view)
    args = (c["y"], c["tl"], c["ul"])
    before = [x.clone()] + [a.clone() for a in args]
    z = x.detach().clone().requires_grad_(True) if view == "contiguous" else x.detach().requires_grad_(True)
    loss = swr.rnnt_loss(z, *args, c["blank"], clamp, reduction, fused_log_softmax, fastemit_lambda=lam)
    w = torch.linspace(0.5, 1.5, c["B"], dtype=torch.float64)
    (loss.double() * (w if reduction == "none" else 1.0)).sum().backward()
    costs, g = ref.rnnt_loss_reference_with_grad(x.double(), *args, blank=c["blank"], clamp=clamp, fastemit_lambda=lam,
                                                 fused_log_softmax=fused_log_softmax)
    ul = c["ul"].long()
    truth = ref.reduce_costs(costs, ul, reduction)
    sw = {"none": w, "sum": torch.ones(c["B"], dtype=torch.float64),
          "mean": torch.full((c["B"],), 1.0 / c["B"], dtype=torch.float64),
          "mean_volume": torch.full((c["B"],), 1.0 / max(1, int(ul.sum())), dtype=torch.float64)}[reduction]
    tol = _bound(c, dtype, x.double())
    assert loss.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    assert (loss.double() - truth).abs().max() <= tol * (1 + lam) * c["B"], (loss, truth)
    gt = g * sw[:, None, None, None]
    assert z.grad.dtype == dtype
    err = (z.grad.double() - gt).abs()
    assert (err <= tol + torch.finfo(dtype).eps * gt.abs()).all(), float(err.max())
    for a, b in zip([x] + list(args), before):  # never modified
        assert torch.equal(a, b)


@settings(max_examples=60, **SETTINGS)
@given(c=cases(), gaps=st.lists(st.integers(0, 3), min_size=3, max_size=3), shuffle=st.booleans(),
       dtype=st.sampled_from([torch.float32, torch.float64]), reduction=st.sampled_from(REDUCTIONS))
def test_packed_equals_padded(c, gaps, shuffle, dtype, reduction):
    B, V = c["B"], c["V"]
    x = c["x"].to(dtype)
    tl, ul = c["tl"].long(), c["ul"].long()
    pieces = [x[b, :tl[b], :ul[b] + 1].reshape(-1, V) for b in range(B)]
    order = list(range(B))[::-1] if shuffle else list(range(B))
    rows, offsets, pos = [], [0] * B, 0
    for b in order:
        rows.append(torch.full((gaps[b], V), float("nan"), dtype=dtype))  # garbage between samples
        pos += gaps[b]
        offsets[b] = pos
        rows.append(pieces[b])
        pos += pieces[b].shape[0]
    packed = torch.cat(rows)
    z = packed.clone().requires_grad_(True)
    loss = swr.rnnt_loss_packed(z, c["y"], c["tl"], c["ul"], c["blank"], reduction=reduction,
                                offsets=torch.tensor(offsets))
    loss.sum().backward()
    zp = x.clone().requires_grad_(True)
    lp = swr.rnnt_loss(zp, c["y"], c["tl"], c["ul"], c["blank"], reduction=reduction)
    lp.sum().backward()
    torch.testing.assert_close(loss, lp, rtol=0, atol=0)  # the same kernels on the same rows
    covered = torch.zeros(packed.shape[0], dtype=torch.bool)
    for b in range(B):
        n = pieces[b].shape[0]
        covered[offsets[b]:offsets[b] + n] = True
        torch.testing.assert_close(z.grad[offsets[b]:offsets[b] + n],
                                   zp.grad[b, :tl[b], :ul[b] + 1].reshape(-1, V), rtol=0, atol=0)
    assert torch.equal(z.grad[~covered], torch.zeros_like(z.grad[~covered]))


class _Joint(torch.nn.Module):
    def __init__(self, he, hp, j, v, act):
        super().__init__()
        self.lin_enc, self.lin_dec, self.lin_out = torch.nn.Linear(he, j), torch.nn.Linear(hp, j), torch.nn.Linear(j, v)
        self.act = act

    def forward(self, e, p):
        return self.lin_out(self.act(self.lin_enc(e) + self.lin_dec(p)))


@settings(max_examples=40, **SETTINGS)
@given(c=cases(max_B=4), reduction=st.sampled_from(REDUCTIONS), path=st.sampled_from(["generic", "fused"]),
       budget=st.sampled_from([1, 3000, None, float("inf")]),
       needs=st.tuples(st.booleans(), st.booleans(), st.booleans()).filter(any))
def test_samplewise_equals_batched_in_fp64(c, reduction, path, budget, needs):
    torch.manual_seed(c["B"] * 100 + c["T"])
    V = c["V"]
    act = "tanh" if c["T"] % 2 else "relu"
    if path == "fused":
        joint = swr.LinearJoint(3, 2, 4, V, activation=act).double()
    else:
        joint = _Joint(3, 2, 4, V, torch.tanh if act == "tanh" else torch.relu).double()
    need_enc, need_pred, need_par = needs
    for q in joint.parameters():
        q.requires_grad_(need_par)
    g = torch.Generator().manual_seed(c["T"])
    enc = torch.randn(c["B"], c["T"], 3, generator=g, dtype=torch.float64).requires_grad_(need_enc)
    pred = torch.randn(c["B"], c["U"] + 1, 2, generator=g, dtype=torch.float64).requires_grad_(need_pred)
    args = (c["y"], c["tl"], c["ul"])
    inputs = [t for t, n in ((enc, need_enc), (pred, need_pred)) if n] + [q for q in joint.parameters() if need_par]
    w = torch.linspace(0.5, 1.5, c["B"], dtype=torch.float64)
    ours = swr.samplewise_rnnt_loss(enc, pred, joint, *args, blank=c["blank"], reduction=reduction,
                                    max_chunk_bytes=budget, fused=path == "fused")
    g_ours = torch.autograd.grad((ours * (w if reduction == "none" else 1.0)).sum(), inputs)
    theirs = ref.rnnt_loss_reference(joint(enc.unsqueeze(2), pred.unsqueeze(1)), *args, blank=c["blank"],
                                     reduction=reduction)
    g_ref = torch.autograd.grad((theirs * (w if reduction == "none" else 1.0)).sum(), inputs)
    torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-10)
    for a, b in zip(g_ours, g_ref):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)


# ---------------------------------------------------------------------------------------------
# rejections name the argument
# ---------------------------------------------------------------------------------------------
MUTATIONS = {
    "logits": [lambda c: c["x"][0], lambda c: c["x"].long(), lambda c: c["x"].to_sparse(), lambda c: "x",
               lambda c: c["x"][..., :0]],
    "targets": [lambda c: c["y"].float(), lambda c: c["y"][:, None], lambda c: torch.cat([c["y"], c["y"]]),
                lambda c: torch.full_like(c["y"], c["V"] + 3), lambda c: [1, 2]],
    "logit_lengths": [lambda c: c["tl"] * 0, lambda c: c["tl"] + 100, lambda c: c["tl"].float(),
                      lambda c: c["tl"][None], lambda c: torch.cat([c["tl"], c["tl"]])],
    "target_lengths": [lambda c: c["ul"] * 0 - 1, lambda c: c["ul"] + 100, lambda c: c["ul"].double(),
                       lambda c: c["ul"][None]],
    "blank": [lambda c: c["V"], lambda c: -c["V"] - 1, lambda c: 1.5, lambda c: True, lambda c: None],
    "clamp": [lambda c: "1", lambda c: float("nan"), lambda c: True],
    "reduction": [lambda c: "avg", lambda c: None, lambda c: 3],
    "fused_log_softmax": [lambda c: 1, lambda c: "yes"],
    "fastemit_lambda": [lambda c: -1.0, lambda c: float("inf"), lambda c: True],
}


@settings(max_examples=150, **SETTINGS)
@given(c=cases(), name=st.sampled_from(sorted(MUTATIONS)), k=st.integers(0, 4))
def test_rejections_name_the_argument(c, name, k):
    muts = MUTATIONS[name]
    value = muts[k % len(muts)](c)
    if name == "targets" and isinstance(value, torch.Tensor) and value.shape == c["y"].shape and c["U"] == 0:
        return  # no labels to be out of range
    if name == "target_lengths" and isinstance(value, torch.Tensor) and value.shape == c["ul"].shape \
            and value.dtype.is_floating_point is False and (value >= 0).all() and (value <= c["U"]).all():
        return
    kw = dict(logits=c["x"].float(), targets=c["y"], logit_lengths=c["tl"], target_lengths=c["ul"], blank=c["blank"])
    kw[name] = value
    if name == "targets" and isinstance(value, torch.Tensor) and value.shape == c["y"].shape:
        kw["target_lengths"] = torch.full_like(c["ul"], c["U"])
    before = {k2: v.clone() for k2, v in kw.items() if isinstance(v, torch.Tensor) and v.layout == torch.strided}
    with pytest.raises((ValueError, TypeError)) as info:
        swr.rnnt_loss(**kw)
    msg = str(info.value)
    assert name in msg or (name == "logits" and "logits" in msg), msg
    for k2, v in before.items():
        assert torch.equal(kw[k2], v)


@settings(max_examples=60, **SETTINGS)
@given(c=cases(), name=st.sampled_from(["encoder_out", "predictor_out", "encoder_lengths", "blank", "max_chunk_bytes",
                                        "fused", "joint"]), k=st.integers(0, 2))
def test_samplewise_rejections_name_the_argument(c, name, k):
    joint = swr.LinearJoint(3, 2, 4, c["V"])
    enc = torch.randn(c["B"], c["T"], 3)
    pred = torch.randn(c["B"], c["U"] + 1, 2)
    kw = dict(encoder_out=enc, predictor_out=pred, joint=joint, targets=c["y"], encoder_lengths=c["tl"],
              target_lengths=c["ul"], blank=c["blank"])
    bad = {
        "encoder_out": [enc[0], enc.long(), enc[:, :, :2]],
        "predictor_out": [pred[:0], pred.int(), pred[..., :1]],
        "encoder_lengths": [c["tl"] + 99, c["tl"][:0], c["tl"].float()],
        "blank": [c["V"], 0.5, False],
        "max_chunk_bytes": [0, -1.0, "big"],
        "fused": ["auto", 1, 0.0],
        "joint": [3, None, "joint"],
    }[name][k]
    kw[name] = bad
    with pytest.raises((ValueError, TypeError)) as info:
        swr.samplewise_rnnt_loss(**kw)
    assert name in str(info.value), str(info.value)


def test_the_suite_can_fail():
    """The tolerance of the first property is tight enough to see a real defect: an off-by-one blank."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 4, 3, 5, generator=g)
    y = torch.tensor([[1, 2], [3, 1]])
    tl, ul = torch.tensor([4, 3]), torch.tensor([2, 1])
    c = dict(T=4, U=2, V=5)
    good = swr.rnnt_loss(x, y, tl, ul, 0, reduction="sum")
    wrong = ref.rnnt_loss_reference(x.double(), y, tl, ul, blank=4, reduction="sum")
    right = ref.rnnt_loss_reference(x.double(), y, tl, ul, blank=0, reduction="sum")
    tol = _bound(c, torch.float32, x.double())
    assert abs(float(good) - float(right)) <= tol
    assert abs(float(good) - float(wrong)) > 10 * tol
    assert math.isfinite(tol) and tol < 1e-3


@st.composite
def tdt_cases(draw, max_B=3, max_T=6, max_U=3, max_V1=5):
    c = draw(cases(max_B, max_T, max_U, max_V1))
    durations = draw(st.sampled_from([(0, 1), (0, 1, 2), (0, 1, 2, 3, 4), (0, 1, 3, 7)]))
    g = torch.Generator().manual_seed(c["T"] * 100 + c["U"] * 10 + c["V"])
    xd = torch.randn(c["B"], c["T"], c["U"] + 1, len(durations), generator=g, dtype=torch.float64) * 2
    c.update(x=torch.cat([c["x"], xd], -1), durations=durations)
    return c


@settings(max_examples=30, **SETTINGS)
@given(c=tdt_cases(), dtype=st.sampled_from(DTYPES), reduction=st.sampled_from(REDUCTIONS),
       sigma=st.sampled_from([0.0, 0.05]), clamp=st.sampled_from([-1.0, 0.25]), lam=st.sampled_from([0.0, 0.1]),
       omega=st.sampled_from([0.0, 1.0]), packed=st.booleans())
def test_tdt_loss_against_fp64_reference(c, dtype, reduction, sigma, clamp, lam, omega, packed):
    """tdt_loss / tdt_loss_packed against the fp64 TDT reference (bound as above, with V = V1 + D: the
    token and the duration log-softmax of each arc)."""
    x = c["x"].to(dtype)
    args = (c["y"], c["tl"], c["ul"])
    before = [x.clone()] + [a.clone() for a in args]
    kw = dict(sigma=sigma, omega=omega, clamp=clamp, fastemit_lambda=lam)
    tl, ul = c["tl"].long(), c["ul"].long()
    if packed:
        rows = [x[b, :tl[b], :ul[b] + 1].reshape(-1, x.shape[-1]) for b in range(c["B"])]
        z = torch.cat(rows).requires_grad_(True)
        loss = swr.tdt_loss_packed(z, *args, list(c["durations"]), c["blank"], reduction, **kw)
    else:
        z = x.detach().clone().requires_grad_(True)
        loss = swr.tdt_loss(z, *args, c["durations"], c["blank"], reduction, **kw)
    w = torch.linspace(0.5, 1.5, c["B"], dtype=torch.float64)
    (loss.double() * (w if reduction == "none" else 1.0)).sum().backward()
    costs, g = ref.tdt_loss_reference_with_grad(x.double(), *args, c["durations"], blank=c["blank"], sigma=sigma,
                                                clamp=clamp, fastemit_lambda=lam, rnnt_mode=omega == 1.0)
    truth = ref.reduce_costs(costs, ul, reduction)
    sw = {"none": w, "sum": torch.ones(c["B"], dtype=torch.float64),
          "mean": torch.full((c["B"],), 1.0 / c["B"], dtype=torch.float64),
          "mean_volume": torch.full((c["B"],), 1.0 / max(1, int(ul.sum())), dtype=torch.float64)}[reduction]
    cc = dict(c, V=c["V"] + len(c["durations"]))
    tol = _bound(cc, dtype, x.double())
    assert (loss.double() - truth).abs().max() <= tol * (1 + lam) * c["B"], (loss, truth)
    gt = g * sw[:, None, None, None]
    if packed:
        gt = torch.cat([gt[b, :tl[b], :ul[b] + 1].reshape(-1, x.shape[-1]) for b in range(c["B"])])
    assert z.grad.dtype == dtype
    err = (z.grad.double() - gt).abs()
    assert (err <= tol + torch.finfo(dtype).eps * gt.abs()).all(), float(err.max())
    for a, b in zip([x] + list(args), before):  # never modified
        assert torch.equal(a, b)
