"""The sample-wise loss under DistributedDataParallel: two CPU processes (gloo) on halves of a batch
give the same averaged gradients as one process on the whole batch."""
import os
import sys

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import samplewise_rnnt as swr

B, T, U, F, H, V = 6, 8, 4, 5, 7, 11


class TinyTransducer(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = torch.nn.Linear(F, H)
        self.embed = torch.nn.Embedding(V, H)
        self.lin_enc = torch.nn.Linear(H, 9)
        self.lin_dec = torch.nn.Linear(H, 9)
        self.lin_out = torch.nn.Linear(9, V)

    def forward(self, feats, targets, feat_lens, target_lens, max_chunk_bytes):
        enc = self.encoder(feats)
        pred_in = torch.cat([torch.zeros_like(targets[:, :1]), targets], dim=1)  # blank (0) + labels
        pred = self.embed(pred_in)
        joint = _Joint(self)
        return swr.samplewise_rnnt_loss(enc, pred, joint, targets, feat_lens, target_lens, blank=0, reduction="mean",
                                        max_chunk_bytes=max_chunk_bytes)


class _Joint(torch.nn.Module):
    """A view of the model's joint layers as a module (so the engine finds their parameters)."""

    def __init__(self, model):
        super().__init__()
        self.lin_enc, self.lin_dec, self.lin_out = model.lin_enc, model.lin_dec, model.lin_out

    def forward(self, enc, pred):
        return self.lin_out(torch.tanh(self.lin_enc(enc) + self.lin_dec(pred)))


def make_data():
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(B, T, F, generator=g)
    targets = torch.randint(1, V, (B, U), generator=g)
    feat_lens = torch.randint(2, T + 1, (B,), generator=g)
    target_lens = torch.randint(0, U + 1, (B,), generator=g)
    return feats, targets, feat_lens, target_lens


def make_model():
    torch.manual_seed(1)
    return TinyTransducer()


def _worker(rank, world, init_file, out_file):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        model = torch.nn.parallel.DistributedDataParallel(make_model())
        feats, targets, feat_lens, target_lens = make_data()
        half = slice(rank * B // world, (rank + 1) * B // world)
        # trim the padding to this rank's own maxima, as a data loader would
        Tm, Um = int(feat_lens[half].max()), int(target_lens[half].max())
        loss = model(feats[half, :Tm], targets[half, :Um], feat_lens[half], target_lens[half], 1)
        loss.backward()
        if rank == 0:
            torch.save({n: p.grad for n, p in model.module.named_parameters()}, out_file)
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(not dist.is_available() or sys.platform == "win32", reason="torch.distributed not available")
def test_ddp_two_processes_equal_single_process(tmp_path):
    out = tmp_path / "grads.pt"
    mp.spawn(_worker, args=(2, str(tmp_path / "init"), str(out)), nprocs=2, join=True)
    ddp = torch.load(out)
    model = make_model()
    feats, targets, feat_lens, target_lens = make_data()
    model(feats, targets, feat_lens, target_lens, None).backward()
    for n, p in model.named_parameters():
        assert ddp[n] is not None, n
        torch.testing.assert_close(ddp[n], p.grad, rtol=1e-5, atol=1e-6, msg=lambda m: f"{n}: {m}")
