"""Peak memory of one full NeMo training step at small batch sizes, extrapolated to B = 1024.

One step = preprocessor + encoder + predictor + joint + loss + backward + AdamW step of the recipe's model
(the ``model`` section of the config: FastConformer, 1024 sentencepiece pieces -> V+1 = 1025 outputs), on
B utterances of ``--seconds`` seconds each (the duration cap: every utterance as long as the longest allowed)
with ``--tokens-per-second`` labels. Variants:

* ``stock``: NeMo's non-fused joint + RNNTLoss (numba), no checkpointing (stock NeMo)
* ``stock+ckpt``: the same with encoder activation checkpointing
* ``samplewise``: the sample-wise loss (this package), no checkpointing
* ``samplewise+ckpt``: the recipe's setting

Each (variant, B) runs in a fresh process. On CUDA the peak is ``torch.cuda.max_memory_allocated`` under
bf16 autocast (the recipe's precision); on the CPU it is the growth of the process's peak resident set
during the step (peak mark reset just before it, large blocks mmap-ed so that freed memory leaves the
resident set) plus the weights, in fp32 (about twice the bf16 activation bytes: conservative).
Peak(B) is fitted by least squares as a + b*B (every term of the step grows linearly in B at a fixed
length) and evaluated at B = 1024.

    python recipes/librispeech/nemo/memory.py --device cpu --batch-sizes 1 2 3 --out recipes/librispeech/nemo/memory_cpu.json
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from samplewise_rnnt.procmem import peak_rss_bytes, reset_peak_rss, rss_bytes

HERE = Path(__file__).resolve().parent
DEFAULT_CONFIG = HERE / "conf" / "fastconformer_transducer_samplewise_b1024.yaml"
VARIANTS = ("stock", "stock+ckpt", "samplewise", "samplewise+ckpt")
GIB = 1024 ** 3


def one_step(config: str, variant: str, batch: int, seconds: float, tps: float, device: str) -> dict:
    """Run one training step in this process; return the measured peak (bytes)."""
    import torch
    from omegaconf import OmegaConf, open_dict

    import samplewise_rnnt.nemo  # noqa: F401
    from nemo.collections.asr.models import EncDecRNNTModel

    torch.manual_seed(0)
    cfg = OmegaConf.load(config).model
    vocab = 1024
    with open_dict(cfg):
        for key in ("train_ds", "validation_ds", "test_ds", "tokenizer"):
            cfg.pop(key, None)
        cfg.labels = [f"p{i}" for i in range(vocab)]  # same joint size as the 1024-piece tokenizer
        cfg.loss = {"loss_name": "warprnnt_numba"} if variant.startswith("stock") else \
            {"loss_name": "samplewise_rnnt", "samplewise_rnnt_kwargs": dict(cfg.loss.get("samplewise_rnnt_kwargs", {}))}
        cfg.joint.fuse_loss_wer = False
        cfg.encoder_checkpointing = variant.endswith("+ckpt")
        cfg.decoding = {"strategy": "greedy_batch", "greedy": {"max_symbols": 5}}
    model = EncDecRNNTModel(cfg).to(device)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    n_samples = int(seconds * 16000)
    U = max(1, int(round(seconds * tps)))
    sig = torch.randn(batch, n_samples, device=device) * 0.1
    sig_len = torch.full((batch,), n_samples, device=device)
    tr = torch.randint(0, vocab, (batch, U), device=device)
    tr_len = torch.full((batch,), U, device=device)
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    import gc

    gc.collect()
    rss0 = rss_bytes()
    if not reset_peak_rss():
        raise OSError("cannot reset the peak-RSS mark (/proc/self/clear_refs)")
    t0 = time.time()
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
        enc, enc_len = model.forward(input_signal=sig, input_signal_length=sig_len)
        dec, dec_len, _ = model.decoder(targets=tr, target_length=tr_len)
        if model.joint.fuse_loss_wer:
            loss = model.joint(encoder_outputs=enc, decoder_outputs=dec, encoder_lengths=enc_len, transcripts=tr,
                               transcript_lengths=tr_len, compute_wer=False)[0]
        else:
            joint = model.joint(encoder_outputs=enc, decoder_outputs=dec)
            loss = model.loss(log_probs=joint, targets=tr, input_lengths=enc_len, target_lengths=dec_len)
    loss.backward()
    opt.step()
    if cuda:
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated()
    else:
        peak = max(peak_rss_bytes() - rss0, 0) + weights
    return {"variant": variant, "batch": batch, "peak_bytes": int(peak), "step_s": time.time() - t0,
            "T_frames": int(enc.shape[-1]), "U": U, "loss": float(loss), "weights_bytes": weights,
            "device": torch.cuda.get_device_name() if cuda else "cpu", "dtype": "bf16 autocast" if cuda else "fp32"}


def fit(points):
    n = len(points)
    xs = [b for b, _ in points]
    ys = [p for _, p in points]
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx if sxx else 0.0
    return my - slope * mx, slope


def table(results, target=1024, budget_gib=80.0) -> str:
    first = next(iter(results.values()))  # the variants measured (any subset of VARIANTS)
    lines = [f"| variant | measured peak (GiB) at B = {', '.join(str(r['batch']) for r in first['runs'])}"
             f" | per utterance (MiB) | B = {target} (GiB, extrapolated) | fits {budget_gib:.0f} GB? |",
             "| --- | --- | --- | --- | --- |"]
    for v, r in results.items():
        meas = ", ".join(f"{x['peak_bytes'] / GIB:.2f}" for x in r["runs"])
        est = r["extrapolated_bytes"] / GIB
        verdict = "yes" if est * GIB <= budget_gib * 1e9 else f"no ({est / (budget_gib * 1e9 / GIB):.1f}x)"
        lines.append(f"| {v} | {meas} | {r['slope_bytes'] / 2 ** 20:.0f} | {est:.1f} | {verdict} |")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=str(DEFAULT_CONFIG))
    ap.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--seconds", type=float, default=None, help="utterance length (default: the config's "
                    "train_ds.max_duration)")
    ap.add_argument("--tokens-per-second", type=float, default=4.0,
                    help="labels per second of audio (LibriSpeech with 1024 BPE pieces: about 3-4)")
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    ap.add_argument("--target-batch", type=int, default=1024)
    ap.add_argument("--out", default=None, help="write the results (JSON) and a Markdown table next to it")
    ap.add_argument("--_child", nargs=2, metavar=("VARIANT", "B"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    import torch
    from omegaconf import OmegaConf

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    seconds = args.seconds or float(OmegaConf.load(args.config).model.train_ds.max_duration)
    if args._child:
        r = one_step(args.config, args._child[0], int(args._child[1]), seconds, args.tokens_per_second, device)
        print("RESULT " + json.dumps(r), flush=True)
        return 0
    for b in args.batch_sizes:
        if b < 1:
            raise ValueError(f"--batch-sizes must be positive, got {b}")
    results = {}
    total = len(args.variants) * len(args.batch_sizes)
    done = 0
    for v in args.variants:
        runs = []
        for b in args.batch_sizes:
            cmd = [sys.executable, __file__, "--config", args.config, "--device", device, "--seconds", str(seconds),
                   "--tokens-per-second", str(args.tokens_per_second), "--_child", v, str(b)]
            # large blocks through mmap: freed memory leaves the resident set at once, so the peak of the
            # resident set follows the live tensors (glibc's defaults would keep freed heap resident)
            env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", MALLOC_TRIM_THRESHOLD_="0")
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
            lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
            if proc.returncode != 0 or not lines:
                raise RuntimeError(f"{v} B={b} failed:\n{proc.stderr[-3000:]}")
            r = json.loads(lines[-1][7:])
            runs.append(r)
            done += 1
            print(f"[{done}/{total}] {v:16s} B={b:<4d} peak {r['peak_bytes'] / GIB:7.2f} GiB  step {r['step_s']:.1f} s",
                  flush=True)
        a, slope = fit([(r["batch"], r["peak_bytes"]) for r in runs])
        results[v] = {"runs": runs, "intercept_bytes": a, "slope_bytes": slope,
                      "extrapolated_bytes": a + slope * args.target_batch}
    md = table(results, args.target_batch)
    first = next(iter(results.values()))["runs"][0]
    header = (f"device: {first['device']} ({first['dtype']}); utterances of {seconds:g} s "
              f"(T = {first['T_frames']} encoder frames), U = {first['U']} labels, V+1 = 1025; "
              f"config {Path(args.config).name}")
    print(header)
    print(md)
    if args.out:
        out = Path(args.out)
        out.write_text(json.dumps({"header": header, "seconds": seconds, "results": results}, indent=1))
        out.with_suffix(".md").write_text(header + "\n\n" + md + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
