"""The GPU benchmarks of ``make gpu-check-1`` / ``gpu-check-2``, all in one process.

    python -m recipes.benchmark.gpu_suite 1 --save results/<gpu>.md [--budget-s 150] [--plot sweep.png]
    python -m recipes.benchmark.gpu_suite 2 --save results/<gpu>.md [--budget-s 150]
    python -m recipes.benchmark.gpu_suite 1 --dry-run      # the cases, without a GPU

Every step is one ``python -m recipes.benchmark`` run with ``--device cuda --in-process``: torch is
imported and the CUDA context made once per suite instead of once per case (about 5 s each on a GPU
machine, 60+ cases in suite 1). Each case's peak is still its own (the allocator's peak statistics are
reset after its inputs are built). Cases not started within ``--budget-s`` seconds of the suite's start
are reported as skipped, so that the command ends inside its time limit; the steps run most important first.

Suite 1: the core op (fp32, fp16), the engine (fp32, bf16, fused), the group budget (``max_chunk_bytes``
sweep, the default last), peak memory against B (the plot) and the demo's presets.
Suite 2: the paper's configuration (B=1024, T=1000, U=160, V=1024): batched at B = 8 and 32, sample-wise at
B = 8 and 1024 and the fused output layer at B = 1024, in fp32 and bf16; then (as far as the time allows)
the TDT preset in bf16 and the floor preset.
"""
from __future__ import annotations

import argparse
import sys
import time

SUITES = {
    "1": [
        ["--preset", "core"],
        ["--preset", "core", "--dtype", "float16"],
        ["--preset", "engine"],
        ["--preset", "engine", "--dtype", "bfloat16"],
        ["--preset", "engine", "--methods", "samplewise", "fused"],
        ["--preset", "budget"],
        ["--preset", "sweep", "{plot}"],
        ["--preset", "demo"],
    ],
    "2": [
        ["--preset", "paper", "--dtype", "bfloat16"],
        ["--preset", "paper"],
        ["--preset", "tdt", "--dtype", "bfloat16"],
        ["--preset", "floor"],
    ],
}


def steps(suite: str, plot: str | None):
    for argv in SUITES[suite]:
        out = []
        for a in argv:
            if a == "{plot}":
                out += ["--plot", plot] if plot else []
            else:
                out.append(a)
        yield out + ["--device", "cuda"]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("suite", choices=sorted(SUITES))
    ap.add_argument("--save", help="append the tables (markdown) here")
    ap.add_argument("--plot", help="suite 1: the sweep's memory plot (PNG)")
    ap.add_argument("--budget-s", type=float, default=None,
                    help="cases not started within this many seconds of the start are skipped")
    ap.add_argument("--dry-run", action="store_true", help="list the cases; no GPU needed")
    args = ap.parse_args(argv)
    from .__main__ import main as bench

    t_start = time.time()
    deadline = None if args.budget_s is None else t_start + args.budget_s
    status = 0
    timings = []
    for step in steps(args.suite, args.plot):
        extra = ["--dry-run"] if args.dry_run else ["--in-process"]
        if args.save and not args.dry_run:
            extra += ["--save", args.save]
        if deadline is not None and not args.dry_run:
            extra += ["--deadline", f"{deadline:.0f}"]
        t0 = time.time()
        print(f"== python -m recipes.benchmark {' '.join(step + extra)}", flush=True)
        rc = bench(step + extra)
        timings.append((" ".join(step), time.time() - t0, rc))
        status |= rc != 0
    lines = ["", f"Suite {args.suite} step times (wall, one process; torch imported once):", ""]
    lines += [f"- `{s}`: {t:.1f} s (exit {rc})" for s, t, rc in timings]
    lines.append(f"- total {time.time() - t_start:.1f} s")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.save and not args.dry_run:
        with open(args.save, "a") as f:
            f.write(text + "\n")
    return int(status)


if __name__ == "__main__":
    sys.exit(main())
