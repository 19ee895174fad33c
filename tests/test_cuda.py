"""CUDA kernels against the CPU kernels (every dtype, in place and not) and the engine on CUDA.

Skipped, with the reason printed (pytest -ra), where no GPU is visible or the extension was built without
its CUDA kernels. ``SWR_TEST_CUDA_DEVICE=cpu`` runs the same comparisons CPU against CPU, to check the
tests themselves on a machine without a GPU.
"""
import os

import pytest
import torch

import samplewise_rnnt as swr
from samplewise_rnnt.ops import rnnt_loss_and_grad

DEVICE = os.environ.get("SWR_TEST_CUDA_DEVICE", "cuda")


def _why_skip():
    if DEVICE != "cuda":
        return None
    if not torch.cuda.is_available():
        return "no CUDA GPU is visible"
    if not swr.cuda_built():
        return "samplewise_rnnt was built without its CUDA kernels"
    return None


pytestmark = [pytest.mark.cuda, pytest.mark.skipif(_why_skip() is not None, reason=str(_why_skip()))]

DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
# the gradient is stored in the logits' dtype: one rounding of difference between backends at most
TOL = {torch.float32: (1e-5, 1e-5), torch.float64: (1e-10, 1e-10), torch.float16: (2e-3, 2e-3),
       torch.bfloat16: (1.6e-2, 1e-2)}


def make(B, T, U, V, dtype, seed=0, blank=0):
    g = torch.Generator().manual_seed(seed)
    logits = (torch.randn(B, T, U + 1, V, generator=g) * 2).to(dtype)
    labels = torch.tensor([v for v in range(V) if v != blank % V])
    tg = labels[torch.randint(0, V - 1, (B, U), generator=g)].int()
    tl = torch.randint(1, T + 1, (B,), generator=g).int()
    tl[0] = T
    ul = torch.randint(0, U + 1, (B,), generator=g).int()
    ul[-1] = U
    return logits, tg, tl, ul


def to(dev, *xs):
    return [x.to(dev) for x in xs]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("inplace", [False, True])
@pytest.mark.parametrize("shape", [(3, 5, 4, 7), (2, 37, 19, 130), (2, 300, 60, 33)], ids=str)
def test_loss_and_grad_cuda_equals_cpu(dtype, inplace, shape):
    logits, tg, tl, ul = make(*shape, dtype, blank=-1 % shape[3])
    kw = dict(blank=-1, clamp=0.3 if shape[0] == 3 else -1.0, fastemit_lambda=0.01 if shape[0] == 2 else 0.0)
    scale = torch.linspace(0.5, 2.0, shape[0])
    c_cpu, g_cpu = rnnt_loss_and_grad(logits, tg, tl, ul, grad_scale=scale, **kw)
    x = logits.to(DEVICE).clone()
    c_dev, g_dev = rnnt_loss_and_grad(x, *to(DEVICE, tg, tl, ul), grad_scale=scale.to(DEVICE), inplace=inplace, **kw)
    if inplace:
        assert g_dev.data_ptr() == x.data_ptr()
    rtol, atol = TOL[dtype]
    torch.testing.assert_close(c_dev.cpu(), c_cpu, rtol=max(rtol, 1e-5), atol=max(atol, 1e-4) * shape[1])
    torch.testing.assert_close(g_dev.cpu().float(), g_cpu.float(), rtol=rtol, atol=atol)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("reduction", ["none", "sum", "mean", "mean_volume"])
def test_rnnt_loss_autograd_cuda_equals_cpu(dtype, reduction):
    logits, tg, tl, ul = make(4, 9, 5, 11, dtype, seed=1)
    out = []
    for dev in ("cpu", DEVICE):
        x = logits.to(dev).clone().requires_grad_(True)
        loss = swr.rnnt_loss(x, *to(dev, tg, tl, ul), blank=0, reduction=reduction)
        w = torch.arange(1.0, 5.0, device=dev) if reduction == "none" else 1.0
        (loss * w).sum().backward()
        out.append((loss.detach().cpu(), x.grad.cpu().float()))
    rtol, atol = TOL[dtype]
    torch.testing.assert_close(out[1][0], out[0][0], rtol=max(rtol, 1e-5), atol=1e-3)
    torch.testing.assert_close(out[1][1], out[0][1], rtol=rtol, atol=atol)


def test_packed_cuda_equals_cpu():
    logits, tg, tl, ul = make(3, 8, 4, 6, torch.float32, seed=2)
    packed = torch.cat([logits[b, :tl[b], :ul[b] + 1].reshape(-1, 6) for b in range(3)])
    res = []
    for dev in ("cpu", DEVICE):
        x = packed.to(dev).clone().requires_grad_(True)
        swr.rnnt_loss_packed(x, *to(dev, tg, tl, ul), blank=0, reduction="sum").backward()
        res.append(x.grad.cpu())
    torch.testing.assert_close(res[1], res[0])


def test_cuda_matches_torchaudio_on_cuda():
    torchaudio = pytest.importorskip("torchaudio")
    logits, tg, tl, ul = make(3, 20, 8, 17, torch.float32, seed=3)
    x1 = logits.to(DEVICE).clone().requires_grad_(True)
    x2 = logits.to(DEVICE).clone().requires_grad_(True)
    args = to(DEVICE, tg, tl, ul)
    l1 = swr.rnnt_loss(x1, *args, blank=0)
    l2 = torchaudio.functional.rnnt_loss(x2, *args, blank=0)
    l1.backward()
    l2.backward()
    torch.testing.assert_close(l1, l2, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(x1.grad, x2.grad, rtol=1e-4, atol=1e-6)


class _Joint(torch.nn.Module):
    def __init__(self, he=8, hp=6, hj=16, v=13):
        super().__init__()
        self.a, self.b, self.o = torch.nn.Linear(he, hj), torch.nn.Linear(hp, hj), torch.nn.Linear(hj, v)

    def forward(self, e, p):
        return self.o(torch.tanh(self.a(e) + self.b(p)))


def _engine_on_cpu_and_device(joint, enc, pred, tg, tl, ul, autocast, durations=None, **kw):
    """[loss, d enc, d pred, d params...] of samplewise_rnnt_loss (blank 0; with ``durations``
    samplewise_tdt_loss, blank -1) on the CPU and on DEVICE, each with a copy of ``joint`` and, when
    ``autocast`` is a dtype, under autocast."""
    import copy

    res = []
    for dev in ("cpu", DEVICE):
        j = copy.deepcopy(joint).to(dev)
        e, p = enc.to(dev).clone().requires_grad_(True), pred.to(dev).clone().requires_grad_(True)
        with torch.autocast(torch.device(dev).type, dtype=autocast or torch.float32, enabled=autocast is not None):
            if durations is None:
                loss = swr.samplewise_rnnt_loss(e, p, j, *to(dev, tg, tl, ul), blank=0, **kw)
            else:
                loss = swr.samplewise_tdt_loss(e, p, j, *to(dev, tg, tl, ul), durations=durations, **kw)
        loss.backward()
        res.append([loss.detach().cpu(), e.grad.cpu(), p.grad.cpu()] + [q.grad.cpu() for q in j.parameters()])
    return res


@pytest.mark.parametrize("autocast", [None, torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("max_chunk_bytes", [1, None])
def test_engine_cuda_equals_cpu(autocast, max_chunk_bytes):
    torch.manual_seed(0)
    joint = _Joint()
    g = torch.Generator().manual_seed(4)
    B, T, U = 6, 12, 5
    enc, pred = torch.randn(B, T, 8, generator=g), torch.randn(B, U + 1, 6, generator=g)
    tg = torch.randint(1, 13, (B, U), generator=g)
    tl = torch.randint(1, T + 1, (B,), generator=g)
    ul = torch.randint(0, U + 1, (B,), generator=g)
    res = _engine_on_cpu_and_device(joint, enc, pred, tg, tl, ul, autocast, max_chunk_bytes=max_chunk_bytes)
    tol = 1e-4 if autocast is None else 3e-2
    for x, y in zip(res[1], res[0]):
        torch.testing.assert_close(x, y, rtol=tol, atol=tol)


def test_engine_fp16_with_grad_scaler_on_cuda():
    """The engine under CUDA autocast fp16 and a real GradScaler: finite, unscaled gradients close to fp32."""
    if DEVICE != "cuda":
        pytest.skip("GradScaler needs CUDA")
    torch.manual_seed(1)
    joint = _Joint().cuda()
    g = torch.Generator().manual_seed(5)
    B, T, U = 128, 6, 3
    enc = torch.randn(B, T, 8, generator=g).cuda().requires_grad_(True)
    pred = torch.randn(B, U + 1, 6, generator=g).cuda()
    tg = torch.randint(1, 13, (B, U), generator=g).cuda()
    tl = torch.full((B,), T).cuda()
    ul = torch.full((B,), U).cuda()
    ref = swr.rnnt_loss(joint(enc.unsqueeze(2), pred.unsqueeze(1)), tg, tl, ul, blank=0)
    g_ref = torch.autograd.grad(ref, [enc] + list(joint.parameters()))
    scaler = torch.amp.GradScaler("cuda")
    opt = torch.optim.SGD(list(joint.parameters()) + [enc], lr=0.0)
    with torch.autocast("cuda", dtype=torch.float16):
        loss = swr.samplewise_rnnt_loss(enc, pred, joint, tg, tl, ul, blank=0)
    scaler.scale(loss).backward()
    scaler.unscale_(opt)
    for x, y in zip([enc.grad] + [q.grad for q in joint.parameters()], g_ref):
        assert torch.isfinite(x).all()
        assert float((x - y).norm() / y.norm()) < 2e-2


# ---- gaps: the fused path, rnnt_lattice, large V and U, degenerate lattices, streams, devices, huge B ----

def _loss_and_grad_both(shape, dtype=torch.float32, seed=7, **kw):
    """rnnt_loss_and_grad on the CPU and on DEVICE for make(*shape); the comparison at dtype's tolerance."""
    logits, tg, tl, ul = make(*shape, dtype, seed=seed, blank=0)
    c_cpu, g_cpu = rnnt_loss_and_grad(logits, tg, tl, ul, blank=0, **kw)
    c_dev, g_dev = rnnt_loss_and_grad(logits.to(DEVICE), *to(DEVICE, tg, tl, ul), blank=0, **kw)
    rtol, atol = TOL[dtype]
    torch.testing.assert_close(c_dev.cpu(), c_cpu, rtol=max(rtol, 1e-5), atol=max(atol, 1e-4) * shape[1])
    torch.testing.assert_close(g_dev.cpu().float(), g_cpu.float(), rtol=rtol, atol=atol)
    return c_cpu, g_cpu


@pytest.mark.parametrize("V", [256, 257, 512, 1024, 2049], ids=lambda v: f"V{v}")
def test_large_vocabulary_cuda_equals_cpu(V):
    """Both gradient kernels (a warp per node up to V = 256, a block per time row above) and both block sizes."""
    _loss_and_grad_both((2, 6, 3, V), torch.float32)
    _loss_and_grad_both((2, 6, 3, V), torch.bfloat16)
    _loss_and_grad_both((2, 6, 3, V), torch.float16)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_half_precision_rows_at_odd_addresses(dtype):
    """Logits whose rows start 2 bytes past a 4-byte boundary (a view at storage offset 1): the gradient kernel
    must fall back from its two-logits-per-access path; in place, so that the gradient is misaligned too."""
    logits, tg, tl, ul = make(2, 5, 3, 512, dtype, seed=16, blank=0)
    c_cpu, g_cpu = rnnt_loss_and_grad(logits, tg, tl, ul, blank=0)
    flat = torch.empty(logits.numel() + 1, dtype=dtype, device=DEVICE)
    x = flat[1:].view(logits.shape)
    x.copy_(logits.to(DEVICE))
    assert x.data_ptr() % 4 == 2
    c_dev, g_dev = rnnt_loss_and_grad(x, *to(DEVICE, tg, tl, ul), blank=0, inplace=True)
    rtol, atol = TOL[dtype]
    torch.testing.assert_close(c_dev.cpu(), c_cpu, rtol=max(rtol, 1e-5), atol=max(atol, 1e-4) * 5)
    torch.testing.assert_close(g_dev.cpu().float(), g_cpu.float(), rtol=rtol, atol=atol)


@pytest.mark.parametrize("U", [255, 300, 3071, 3100], ids=lambda u: f"U{u}")
def test_long_label_sequences_cuda_equals_cpu(U):
    """U+1 >= 256 (256 threads over a diagonal), and U+1 above 3072, where the lattice keeps its diagonals in
    global memory instead of shared memory."""
    _loss_and_grad_both((2, 3, U, 5), torch.float32)
    _loss_and_grad_both((1, 2, U, 3), torch.float64)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_single_frame_and_no_labels_cuda_equals_cpu(dtype):
    """T = 1 (one time row), U = 0 (one column), and both at once."""
    for shape in [(3, 1, 4, 9), (3, 7, 0, 9), (2, 1, 0, 9)]:
        logits, tg, tl, ul = make(*shape, dtype, seed=8, blank=0)
        c_cpu, g_cpu = rnnt_loss_and_grad(logits, tg, tl, ul, blank=0)
        c_dev, g_dev = rnnt_loss_and_grad(logits.to(DEVICE), *to(DEVICE, tg, tl, ul), blank=0)
        rtol, atol = TOL[dtype]
        torch.testing.assert_close(c_dev.cpu(), c_cpu, rtol=max(rtol, 1e-5), atol=max(atol, 1e-4) * shape[1])
        torch.testing.assert_close(g_dev.cpu().float(), g_cpu.float(), rtol=rtol, atol=atol)
    # T = 1, U = 0: the cost is -log softmax(blank) of the single node
    logits, tg, tl, ul = make(2, 1, 0, 9, torch.float64, seed=9, blank=0)
    c_dev, _ = rnnt_loss_and_grad(logits.to(DEVICE), *to(DEVICE, tg, tl, ul), blank=0)
    torch.testing.assert_close(c_dev.cpu(), -torch.log_softmax(logits[:, 0, 0], -1)[:, 0])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_rnnt_lattice_cuda_equals_cpu(dtype):
    g = torch.Generator().manual_seed(10)
    B, T, U1 = 4, 9, 6
    lp_blank = -torch.rand(B, T, U1, generator=g, dtype=dtype) * 3
    lp_label = -torch.rand(B, T, U1, generator=g, dtype=dtype) * 3
    tl = torch.tensor([9, 1, 5, 9])
    ul = torch.tensor([5, 3, 0, 2])
    ref = swr.rnnt_lattice(lp_blank, lp_label, tl, ul)
    out = swr.rnnt_lattice(*to(DEVICE, lp_blank, lp_label, tl, ul))
    for x, y in zip(out, ref):
        torch.testing.assert_close(x.cpu(), y, rtol=1e-6 if dtype == torch.float32 else 1e-12, atol=1e-6)
    costs, _, _ = swr.rnnt_lattice(*to(DEVICE, lp_blank, lp_label, tl, ul), want_flows=False)
    torch.testing.assert_close(costs.cpu(), ref[0], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("autocast", [None, torch.bfloat16], ids=str)
def test_fused_output_layer_cuda_equals_cpu(autocast):
    """samplewise_rnnt_loss(fused=True) on the package's LinearJoint: loss and every gradient, CUDA against CPU."""
    torch.manual_seed(11)
    joint = swr.LinearJoint(8, 6, 16, 13, activation="tanh")
    g = torch.Generator().manual_seed(12)
    B, T, U = 5, 10, 4
    enc, pred = torch.randn(B, T, 8, generator=g), torch.randn(B, U + 1, 6, generator=g)
    tg = torch.randint(1, 13, (B, U), generator=g)
    tl = torch.tensor([10, 3, 7, 10, 1])
    ul = torch.tensor([4, 0, 2, 4, 1])
    res = _engine_on_cpu_and_device(joint, enc, pred, tg, tl, ul, autocast, fused=True)
    tol = 1e-4 if autocast is None else 3e-2
    for x, y in zip(res[1], res[0]):
        torch.testing.assert_close(x.float(), y.float(), rtol=tol, atol=tol)


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("autocast", [None, torch.bfloat16], ids=str)
@pytest.mark.parametrize("max_chunk_bytes", [1000, None])
def test_samplewise_tdt_cuda_equals_cpu(fused, autocast, max_chunk_bytes):
    """samplewise_tdt_loss (generic and fused, whole groups and tiles of one sample): CUDA against CPU."""
    torch.manual_seed(13)
    durations = [0, 1, 2, 3, 4]
    joint = swr.LinearJoint(8, 6, 16, 13 + len(durations), activation="tanh")
    g = torch.Generator().manual_seed(14)
    B, T, U = 5, 11, 4
    enc, pred = torch.randn(B, T, 8, generator=g), torch.randn(B, U + 1, 6, generator=g)
    tg = torch.randint(0, 12, (B, U), generator=g)
    tl = torch.tensor([11, 3, 7, 11, 1])
    ul = torch.tensor([4, 0, 2, 4, 1])
    res = _engine_on_cpu_and_device(joint, enc, pred, tg, tl, ul, autocast, durations=durations, fused=fused,
                                    max_chunk_bytes=max_chunk_bytes)
    tol = 1e-4 if autocast is None else 3e-2
    for x, y in zip(res[1], res[0]):
        torch.testing.assert_close(x.float(), y.float(), rtol=tol, atol=tol)


def test_non_default_stream():
    """The kernels run on the current stream: results on a side stream, read after it, equal the CPU's."""
    if DEVICE != "cuda":
        pytest.skip("streams need CUDA")
    logits, tg, tl, ul = make(3, 40, 12, 33, torch.float32, seed=13, blank=0)
    c_cpu, g_cpu = rnnt_loss_and_grad(logits, tg, tl, ul, blank=0)
    side = torch.cuda.Stream()
    args = to("cuda", logits, tg, tl, ul)
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        x = args[0].clone()
        c_dev, g_dev = rnnt_loss_and_grad(x, *args[1:], blank=0)
        loss = swr.rnnt_loss(x.clone().requires_grad_(True), *args[1:], blank=0, reduction="sum")
    torch.cuda.current_stream().wait_stream(side)
    torch.testing.assert_close(c_dev.cpu(), c_cpu, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(g_dev.cpu(), g_cpu, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(loss.detach().cpu(), c_cpu.sum(), rtol=1e-5, atol=1e-4)


def test_second_gpu():
    """Tensors on cuda:1 (the kernels must run on the tensors' device, not on the current one)."""
    if DEVICE != "cuda" or torch.cuda.device_count() < 2:
        pytest.skip("needs 2 CUDA GPUs")
    logits, tg, tl, ul = make(3, 11, 5, 17, torch.float32, seed=14, blank=0)
    c_cpu, g_cpu = rnnt_loss_and_grad(logits, tg, tl, ul, blank=0)
    assert torch.cuda.current_device() == 0
    c_dev, g_dev = rnnt_loss_and_grad(*to("cuda:1", logits, tg, tl, ul), blank=0)
    assert c_dev.device == torch.device("cuda:1") and g_dev.device == torch.device("cuda:1")
    torch.testing.assert_close(c_dev.cpu(), c_cpu, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(g_dev.cpu(), g_cpu, rtol=1e-5, atol=1e-5)
    x = logits.to("cuda:1").requires_grad_(True)
    swr.rnnt_loss(x, *to("cuda:1", tg, tl, ul), blank=0, reduction="sum").backward()
    torch.testing.assert_close(x.grad.cpu(), g_cpu, rtol=1e-5, atol=1e-5)


def test_more_than_65535_samples():
    """B > 65535 (CUDA's grid.y limit): the launchers cover the batch in chunks; tiny lattices of varied sizes."""
    B, T, U, V = 70001, 2, 1, 3
    g = torch.Generator().manual_seed(15)
    logits = torch.randn(B, T, U + 1, V, generator=g)
    tg = torch.randint(1, V, (B, U), generator=g).int()
    tl = torch.randint(1, T + 1, (B,), generator=g).int()
    ul = torch.randint(0, U + 1, (B,), generator=g).int()
    c_cpu, g_cpu = rnnt_loss_and_grad(logits, tg, tl, ul, blank=0)
    c_dev, g_dev = rnnt_loss_and_grad(*to(DEVICE, logits, tg, tl, ul), blank=0)
    torch.testing.assert_close(c_dev.cpu(), c_cpu, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(g_dev.cpu(), g_cpu, rtol=1e-5, atol=1e-5)
    # the samples past 65535 are computed, not left at zero
    assert bool((c_dev[65535:].cpu() > 0).all())
