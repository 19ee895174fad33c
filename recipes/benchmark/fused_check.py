"""The fused output layer against the batched and the generic sample-wise loss: time and peak memory.

One training step (loss + backward to encoder_out, predictor_out and the joint's parameters) of a
LinearJoint, per method, each in a fresh subprocess:

* batched: materialise joint(enc.unsqueeze(2), pred.unsqueeze(1)) [B, T, U+1, V] + samplewise_rnnt.rnnt_loss
* generic: samplewise_rnnt_loss(..., fused=False) (sample by sample, logits of one sample at a time)
* fused:   samplewise_rnnt.fused.fused_samplewise_rnnt_loss (tiles of logits only)

Peak memory growth is the peak resident set size during the step (VmHWM after resetting it through
/proc/self/clear_refs; ru_maxrss where that is unavailable) minus the RSS after building the inputs.
Time is the median over the timed steps. The methods run round-robin, ``--rounds`` times, so that
drifting machine load hits them alike.

    PYTHONPATH=plugin .venv/bin/python recipes/benchmark/fused_check.py            # B=32 T=200 U=40 V=1024 J=320
    PYTHONPATH=plugin .venv/bin/python recipes/benchmark/fused_check.py --B 4 --T 50 --rounds 1   # quick
"""
from __future__ import annotations

import argparse
import json
import logging
import statistics
import subprocess
import sys
import time

from samplewise_rnnt.procmem import peak_rss_bytes, reset_peak_rss, rss_bytes

METHODS = ("batched", "generic", "fused")
log = logging.getLogger("fused_check")


def run_case(args):
    """Child process: one method, prints one JSON line."""
    import torch

    import samplewise_rnnt as swr
    from samplewise_rnnt.fused import fused_samplewise_rnnt_loss

    torch.manual_seed(0)
    B, T, U, V, J = args.B, args.T, args.U, args.V, args.J
    joint = swr.LinearJoint(args.H, args.H, J, V, activation="tanh")
    enc = torch.randn(B, T, args.H, requires_grad=True)
    pred = torch.randn(B, U + 1, args.H, requires_grad=True)
    short = torch.arange(B) % 2 == 1  # half the samples at 3/4 length
    tl = torch.where(short, torch.tensor(T * 3 // 4), torch.tensor(T))
    ul = torch.where(short, torch.tensor(U * 3 // 4), torch.tensor(U))
    targets = torch.randint(1, V, (B, U))

    def step():
        if args.method == "batched":
            logits = joint(enc.unsqueeze(2), pred.unsqueeze(1))
            loss = swr.rnnt_loss(logits, targets, tl, ul, blank=0, reduction="mean")
        elif args.method == "generic":
            loss = swr.samplewise_rnnt_loss(enc, pred, joint, targets, tl, ul, blank=0, reduction="mean", fused=False)
        else:
            loss = fused_samplewise_rnnt_loss(enc, pred, joint, targets, tl, ul, blank=0, reduction="mean",
                                              max_chunk_bytes=args.max_chunk_bytes)
        loss.backward()
        return float(loss)

    import gc
    gc.collect()
    base = rss_bytes() // 1024
    reset_ok = reset_peak_rss()
    t0 = time.perf_counter()
    loss = step()
    first = time.perf_counter() - t0
    peak = peak_rss_bytes(reset_ok) // 1024 - base
    times = []
    for _ in range(args.steps):
        enc.grad = pred.grad = None
        joint.zero_grad(set_to_none=True)
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    print(json.dumps({"method": args.method, "loss": loss, "peak_mib": peak / 1024, "first_s": first,
                      "times": times, "threads": torch.get_num_threads()}))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--B", type=int, default=32)
    ap.add_argument("--T", type=int, default=200)
    ap.add_argument("--U", type=int, default=40)
    ap.add_argument("--V", type=int, default=1024)
    ap.add_argument("--J", type=int, default=320, help="joint dimension")
    ap.add_argument("--H", type=int, default=320, help="encoder and predictor output size")
    ap.add_argument("--steps", type=int, default=1, help="timed steps per process (after the measured first one)")
    ap.add_argument("--rounds", type=int, default=2, help="fresh processes per method, round-robin")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--max-chunk-bytes", type=int, default=None, help="fused tile budget (default: the library's)")
    ap.add_argument("--method", help=argparse.SUPPRESS)  # child mode
    args = ap.parse_args()
    if args.method:
        return run_case(args)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    methods = args.methods.split(",")
    results = {m: [] for m in methods}
    for r in range(args.rounds):
        for m in methods:
            cmd = [sys.executable, __file__, "--method", m] + [f"--{k}={getattr(args, k)}" for k in
                                                               ("B", "T", "U", "V", "J", "H", "steps")]
            if args.max_chunk_bytes:
                cmd.append(f"--max-chunk-bytes={args.max_chunk_bytes}")
            log.info("round %d/%d: %s", r + 1, args.rounds, m)
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            results[m].append(json.loads(out.strip().splitlines()[-1]))
    print(f"\nB={args.B} T={args.T} U={args.U} V={args.V} J={args.J} H={args.H} (half the samples at 3/4 length), "
          f"CPU, {results[methods[0]][0]['threads']} threads, {args.rounds} rounds x ({args.steps} timed + 1) steps")
    print(f"{'method':<9} {'loss':>10} {'peak MiB':>10} {'time s':>8}   peak/batched  time/generic   all times s")
    summary = {}
    for m in methods:
        rs = results[m]
        peak = max(r["peak_mib"] for r in rs)
        t = statistics.median([x for r in rs for x in r["times"]] or [r["first_s"] for r in rs])
        summary[m] = (rs[0]["loss"], peak, t, [x for r in rs for x in r["times"]])
    for m, (loss, peak, t, ts) in summary.items():
        rel_p = f"{peak / summary['batched'][1]:.2%}" if "batched" in summary else "-"
        rel_t = f"{t / summary['generic'][2]:.2f}x" if "generic" in summary else "-"
        print(f"{m:<9} {loss:>10.4f} {peak:>10.1f} {t:>8.2f}   {rel_p:>12}  {rel_t:>12}   "
              + " ".join(f"{x:.1f}" for x in ts))


if __name__ == "__main__":
    main()
