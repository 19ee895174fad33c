"""On a GPU: the sample-wise engine's group loop makes no host synchronisation
(``torch.cuda.set_sync_debug_mode("error")`` around the loop turns any into an error).
Skipped without a CUDA device; the CPU version of this check is in test_reliability.py."""
import pytest
import torch

import samplewise_rnnt as swr
from samplewise_rnnt import engine as E

pytestmark = pytest.mark.cuda


def _need_cuda():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU is visible")
    if not swr.cuda_built():
        pytest.skip("samplewise_rnnt was built without CUDA kernels")


class _Joint(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b, self.o = torch.nn.Linear(8, 16), torch.nn.Linear(6, 16), torch.nn.Linear(16, 13)

    def forward(self, e, p):
        return self.o(torch.tanh(self.a(e) + self.b(p)))


@pytest.mark.parametrize("reduction", ["mean", "none"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_group_loop_is_sync_free_on_cuda(monkeypatch, reduction, dtype):
    _need_cuda()
    torch.manual_seed(0)
    B, T, U = 16, 12, 5
    joint = _Joint().cuda().to(dtype)
    enc = torch.randn(B, T, 8, device="cuda", dtype=dtype, requires_grad=True)
    pred = torch.randn(B, U + 1, 6, device="cuda", dtype=dtype, requires_grad=True)
    tg = torch.randint(0, 12, (B, U), device="cuda")
    tl = torch.randint(1, T + 1, (B,), device="cuda")
    ul = torch.randint(0, U + 1, (B,), device="cuda")
    expect = swr.samplewise_rnnt_loss(enc, pred, joint, tg, tl, ul, reduction=reduction, max_chunk_bytes=1)
    g_expect = torch.autograd.grad(expect.sum(), [enc, pred])
    orig = E._run_group
    calls = []

    def strict(*a, **k):
        calls.append(1)
        torch.cuda.set_sync_debug_mode("error")
        try:
            return orig(*a, **k)
        finally:
            torch.cuda.set_sync_debug_mode("default")

    monkeypatch.setattr(E, "_run_group", strict)
    loss = swr.samplewise_rnnt_loss(enc, pred, joint, tg, tl, ul, reduction=reduction, max_chunk_bytes=1)
    grads = torch.autograd.grad(loss.sum(), [enc, pred])
    assert len(calls) >= B
    torch.testing.assert_close(loss, expect)
    for a, b in zip(grads, g_expect):
        torch.testing.assert_close(a, b)


def test_batch_beyond_65535_samples_on_cuda():
    _need_cuda()
    B = 70000
    g = torch.Generator().manual_seed(3)
    x = torch.randn(B, 2, 2, 3, generator=g)
    y = torch.randint(0, 2, (B, 1), generator=g)
    tl, ul = torch.randint(1, 3, (B,), generator=g), torch.randint(0, 2, (B,), generator=g)
    res = []
    for dev in ("cpu", "cuda"):
        z = x.to(dev).requires_grad_(True)
        loss = swr.rnnt_loss(z, y.to(dev), tl.to(dev), ul.to(dev), reduction="none")
        (loss * torch.linspace(0.5, 1.5, B, device=dev)).sum().backward()
        res.append((loss.detach().cpu(), z.grad.cpu()))
    torch.testing.assert_close(res[1][0], res[0][0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(res[1][1], res[0][1], rtol=1e-5, atol=1e-6)
