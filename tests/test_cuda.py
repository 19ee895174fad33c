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
    res = []
    for dev in ("cpu", DEVICE):
        j = _Joint().to(dev)
        j.load_state_dict(joint.state_dict())
        e, p = enc.to(dev).clone().requires_grad_(True), pred.to(dev).clone().requires_grad_(True)
        with torch.autocast(torch.device(dev).type, dtype=autocast or torch.float32, enabled=autocast is not None):
            loss = swr.samplewise_rnnt_loss(e, p, j, *to(dev, tg, tl, ul), blank=0, max_chunk_bytes=max_chunk_bytes)
        loss.backward()
        res.append([loss.detach().cpu(), e.grad.cpu(), p.grad.cpu()] + [q.grad.cpu() for q in j.parameters()])
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
