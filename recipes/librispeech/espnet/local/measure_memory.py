#!/usr/bin/env python3
"""Peak memory of one full training step (forward, backward, optimiser step) of the recipe's
model at small batch sizes, extrapolated linearly to B = 1024.

    python local/measure_memory.py --config conf/train_conformer_transducer_samplewise_b1024.yaml \
        --seconds 16.7 --batch-sizes 1,2,3 --precision fp32,bf16 --out exp/memory/memory.json

Methods (the same model and weights; only the loss path and checkpointing differ):

* ``espnet_batched``: ESPnet's own ``_calc_transducer_loss``: the joint output ``[B, T, U+1, V]``
  materialised and the batched exact loss (``samplewise_rnnt.RNNTLoss``, which, like
  warp-transducer, computes the gradient in forward and keeps it: logits + gradient);
  no encoder checkpointing (ESPnet as it is).
* ``espnet_batched_ckpt``: the same loss with the encoder checkpointing of this package.
* ``samplewise``: the recipe: ``model: samplewise_transducer`` with encoder checkpointing.

Each (method, B) runs in a fresh process on the CPU. Every utterance has the cap's length
(``--seconds``; the worst batch of a sorted, capped epoch) and ``--tokens-per-second`` BPE
tokens. The peak is the process's maximal resident set (``ru_maxrss``) minus its resident set
after the imports (the kernel's high-water mark ``VmHWM`` is reset after the model is built, so
the construction does not count; the step's own allocations do), so it holds the parameters, gradients, Adam state, activations, the joint
output and every temporary buffer. ``held`` is the resident set after the forward (what the
step keeps for backward, plus the model). Prediction at ``--target-batch``: the peak at the
largest measured B plus, per extra utterance, the larger of the two fitted slopes (peak and held).
At small B the peak of the sample-wise step is set by per-sample working memory that does not
grow with B, so its peak slope is below the resolution; the held slope is the growth that
remains. CPU numbers stand in for the GPU here (no GPU on this machine):
``bf16`` runs under ``torch.autocast("cpu", dtype=torch.bfloat16)`` as ESPnet's trainer runs
under CUDA autocast with ``use_amp: true``; the CUDA context and allocator slack are not in them.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

from samplewise_rnnt.procmem import peak_rss_bytes, reset_peak_rss, rss_bytes

METHODS = ("espnet_batched", "espnet_batched_ckpt", "samplewise")
GIB = 1024 ** 3


def worker(a) -> dict:
    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    from espnet2.asr.espnet_model import ESPnetASRModel
    from espnet2.tasks.asr import ASRTask

    import samplewise_rnnt as swr
    from samplewise_rnnt.espnet import register

    register()
    base = rss_bytes()
    args = ASRTask.get_parser().parse_args(["--config", a.config])  # ESPnet's own config parsing
    vocab = a.vocab
    args.token_list = ["<blank>", "<unk>"] + [f"tok{i}" for i in range(vocab - 3)] + ["<sos/eos>"]
    args.input_size, args.normalize = None, None
    args.model_conf = dict(args.model_conf)
    args.model_conf["encoder_checkpointing"] = a.method != "espnet_batched"
    if a.method == "espnet_batched":
        args.model_conf["checkpoint_sliced_layers"] = False
    if a.chunk is not None:
        args.model_conf["checkpoint_chunk_size"] = a.chunk
    torch.manual_seed(0)
    model = ASRTask.build_model(args)
    if a.method.startswith("espnet_batched"):
        # ESPnet's own transducer branch on the materialised joint output
        import types

        model.criterion_transducer = swr.RNNTLoss(blank=model.blank_id, reduction="mean")
        model._calc_transducer_loss = types.MethodType(ESPnetASRModel._calc_transducer_loss, model)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    B = a.batch
    n = int(round(a.seconds * 16000))
    U = int(round(a.seconds * a.tokens_per_second))
    g = torch.Generator().manual_seed(1)
    speech = 0.1 * torch.randn(B, n, generator=g)
    speech_lengths = torch.full((B,), n, dtype=torch.long)
    text = torch.randint(2, vocab - 1, (B, U), generator=g)
    text_lengths = torch.full((B,), U, dtype=torch.long)
    reset = reset_peak_rss()  # the step's own peak, not the model construction's
    t0 = time.perf_counter()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.precision == "bf16"):
        loss, stats, _ = model(speech, speech_lengths, text, text_lengths)
    held = rss_bytes() - base  # what the forward leaves alive for backward (plus the model)
    loss.backward()
    opt.step()
    seconds = time.perf_counter() - t0
    peak = peak_rss_bytes(reset)
    n_params = sum(p.numel() for p in model.parameters())
    return dict(method=a.method, batch=B, precision=a.precision, peak_bytes=peak - base, held_bytes=held,
                step_seconds=seconds,
                params=n_params, loss=float(loss), frames_out=None, tokens=U, seconds=a.seconds)


def fit(points):
    """Least-squares line through (B, bytes)."""
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    m = len(xs)
    mx, my = sum(xs) / m, sum(ys) / m
    sxx = sum((x - mx) ** 2 for x in xs)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx if sxx else 0.0
    return my - b * mx, b


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="conf/train_conformer_transducer_samplewise_b1024.yaml")
    p.add_argument("--seconds", type=float, default=16.7, help="utterance length (the length cap)")
    p.add_argument("--tokens-per-second", type=float, default=4.0)
    p.add_argument("--vocab", type=int, default=5003, help="token list size (BPE 5000 + 3)")
    p.add_argument("--batch-sizes", default="1,2,3")
    p.add_argument("--methods", default="espnet_batched,samplewise", help=f"from {', '.join(METHODS)}")
    p.add_argument("--precision", default="fp32", help="comma-separated: fp32, bf16")
    p.add_argument("--chunk", type=int, default=None,
                   help="override checkpoint_chunk_size (the front end's slice; at B <= chunk the front "
                        "end's recomputation grows with B, which a linear fit would carry to B = 1024)")
    p.add_argument("--target-batch", type=int, default=1024)
    p.add_argument("--budget-gib", type=float, default=80.0)
    p.add_argument("--out", default="exp/memory/memory.json")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--method", help=argparse.SUPPRESS)
    p.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.worker:
        print("RESULT " + json.dumps(worker(a)), flush=True)
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s (measure_memory) %(message)s")
    methods = a.methods.split(",")
    for m in methods:
        if m not in METHODS:
            raise ValueError(f"--methods: unknown method {m!r}; choose from {', '.join(METHODS)}")
    precisions = a.precision.split(",")
    for pr in precisions:
        if pr not in ("fp32", "bf16"):
            raise ValueError(f"--precision must be fp32 or bf16, got {pr!r}")
    sizes = [int(b) for b in a.batch_sizes.split(",")]
    if len(sizes) < 2 or min(sizes) < 1:
        raise ValueError(f"--batch-sizes needs at least two positive sizes, got {a.batch_sizes!r}")
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    runs = json.loads(out.read_text())["runs"] if out.exists() else []
    done = {(r["method"], r["precision"], r["batch"]) for r in runs}
    for pr in precisions:
        for m in methods:
            for B in sizes:
                if (m, pr, B) in done:
                    continue
                cmd = [sys.executable, __file__, "--worker", "--method", m, "--batch", str(B), "--precision", pr,
                       "--config", a.config, "--seconds", str(a.seconds), "--tokens-per-second",
                       str(a.tokens_per_second), "--vocab", str(a.vocab)]
                if a.chunk is not None:
                    cmd += ["--chunk", str(a.chunk)]
                t0 = time.time()
                # glibc keeps freed blocks below its (dynamic, up to 32 MiB) mmap threshold resident,
                # so the resident set would hold dead tensors; a fixed 128 KiB threshold returns every
                # larger block to the system when it is freed: the resident set tracks live memory.
                env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072", MALLOC_TRIM_THRESHOLD_="131072")
                r = subprocess.run(cmd, capture_output=True, text=True, env=env)
                line = [ln for ln in r.stdout.splitlines() if ln.startswith("RESULT ")]
                if r.returncode or not line:
                    raise RuntimeError(f"worker {m} B={B} {pr} failed:\n{r.stderr[-3000:]}")
                res = json.loads(line[0][7:])
                runs.append(res)
                logging.info("%-20s %s B=%d: peak %.2f GiB, step %.1f s (wall %.0f s)", m, pr, B,
                             res["peak_bytes"] / GIB, res["step_seconds"], time.time() - t0)
                out.write_text(json.dumps(dict(runs=runs), indent=1) + "\n")
    table = []
    for pr in precisions:
        for m in methods:
            rs = sorted((r for r in runs if r["method"] == m and r["precision"] == pr and r["batch"] in sizes),
                        key=lambda r: r["batch"])
            if len(rs) < 2:
                continue
            _, b_peak = fit([(r["batch"], r["peak_bytes"]) for r in rs])
            _, b_held = fit([(r["batch"], r["held_bytes"]) for r in rs if "held_bytes" in r] or [(0, 0), (1, 0)])
            slope = max(b_peak, b_held)
            last = rs[-1]
            pred = last["peak_bytes"] + (a.target_batch - last["batch"]) * slope
            table.append(dict(method=m, precision=pr,
                              measured={str(r["batch"]): round(r["peak_bytes"] / GIB, 3) for r in rs},
                              held={str(r["batch"]): round(r.get("held_bytes", 0) / GIB, 3) for r in rs},
                              peak_slope_mib=round(b_peak / 2 ** 20, 1), held_slope_mib=round(b_held / 2 ** 20, 1),
                              predicted_gib=round(pred / GIB, 1), fits=bool(pred / GIB <= a.budget_gib)))
    meta = dict(config=a.config, seconds=a.seconds, checkpoint_chunk_size=a.chunk, tokens=int(round(a.seconds * a.tokens_per_second)),
                vocab=a.vocab, target_batch=a.target_batch, budget_gib=a.budget_gib,
                device="CPU (resident set), torch " + __import__("torch").__version__)
    out.write_text(json.dumps(dict(meta=meta, table=table, runs=runs), indent=1) + "\n")
    print(f"| method | precision | peak GiB ({', '.join(f'B={B}' for B in sizes)}) | held after forward GiB "
          f"| MiB/utt (peak, held) | predicted peak B={a.target_batch} GiB | fits {a.budget_gib:.0f} GB |")
    print("|" + " --- |" * 7)
    for t in table:
        print(f"| {t['method']} | {t['precision']} | {', '.join(f'{v:.2f}' for v in t['measured'].values())} | "
              f"{', '.join(f'{v:.2f}' for v in t['held'].values())} | {t['peak_slope_mib']:.0f}, "
              f"{t['held_slope_mib']:.0f} | {t['predicted_gib']:.0f} | {'yes' if t['fits'] else 'no'} |")

if __name__ == "__main__":
    main()
