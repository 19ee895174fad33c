"""``python -m recipes.benchmark --preset {core,engine,paper,sweep} ...``: see recipes/benchmark/__init__.py."""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from typing import List

import torch

from .methods import METHODS
from .presets import PRESETS

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


# --malloc keep: glibc keeps freed memory for reuse instead of handing large blocks back to the system (no mmap
# for large blocks, no trimming of the heap's top), as PyTorch's CUDA caching allocator does on a GPU and jemalloc or
# tcmalloc do on the CPU. With glibc's default every tensor above its mmap threshold (at most 32 MiB) is fresh
# memory that the kernel zeroes page by page when it is first written.
MALLOC_KEEP_ENV = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(1 << 46)}
MALLOC_MODES = {"system": ["system"], "keep": ["keep"], "both": ["system", "keep"]}


def build_cases(preset: dict, devices: List[str], dtype: str, repeats: int, max_chunk_bytes, methods=None,
                malloc="system"):
    cases = []
    for device in devices:
        for shape in preset["shapes"][device]:
            shape = dict(shape)
            names = shape.pop("methods", None) or preset["methods"]
            if methods:  # --methods: these, in this order (methods outside the preset included)
                names = list(methods)
            for mode in MALLOC_MODES[malloc] if device == "cpu" else ["system"]:
                for name in names:
                    case = dict(preset["common"], **shape)
                    case.update(method=name, device=device, dtype=dtype, level=preset["level"],
                                repeats=preset.get("repeats", repeats) if repeats is None else repeats,
                                phases=bool(preset.get("phases")))
                    if max_chunk_bytes is not None:
                        case["max_chunk_bytes"] = max_chunk_bytes
                    if mode == "keep":
                        case["malloc"] = "keep"
                    cases.append(case)
    return cases


def case_env(case: dict) -> dict:
    """The environment of a case's process: this one's, with the repository and the plugin on the path and, for
    ``[malloc keep]``, :data:`MALLOC_KEEP_ENV`."""
    env = dict(os.environ)
    plugin = os.path.join(REPO, "plugin")
    env["PYTHONPATH"] = os.pathsep.join([REPO, plugin] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    if case.get("malloc") == "keep":
        env.update(MALLOC_KEEP_ENV)
    return env


def run_in_subprocess(case: dict) -> dict:
    env = case_env(case)
    proc = subprocess.run([sys.executable, "-m", "recipes.benchmark.runner", json.dumps(case)], cwd=REPO, env=env,
                          capture_output=True, text=True)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
    return {"error": f"subprocess exited with {proc.returncode} (killed for memory?): {' | '.join(tail)}"}


def run_here(case: dict) -> dict:
    """One CUDA case in this process (``--in-process``): no interpreter start, torch import or CUDA context
    per case (several seconds each on a GPU machine). The peak is still per case: the allocator's peak
    statistics are reset after the inputs are built, and what the case allocated is released afterwards."""
    import gc

    from .runner import run_case

    try:
        res = run_case(case)
    except Exception as exc:  # a failed row (out of memory included), not a crash of the whole run
        res = {"error": f"{type(exc).__name__}: {str(exc)[:300]}"}
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
    return res


def method_str(case):
    """The method, with its group budget where the case sets one (``default``: the engine's own) and ``[malloc
    keep]`` where glibc keeps freed memory (``--malloc``)."""
    name = case["method"]
    if "max_chunk_bytes" in case:
        budget = case.get("max_chunk_bytes")
        name += f" (max_chunk_bytes {'default' if budget is None else f'{budget / 2 ** 20:g} MiB'})"
    return name + (" [malloc keep]" if case.get("malloc") == "keep" else "")


def shape_str(case):
    s = f"B={case['B']} T={case['T']} U={case['U']} V={case['V']}"
    if case.get("durations"):
        s += f" D={len(case['durations'])}"
    if case["level"] == "joint":
        s += f" H={case['Hj']}"
    if case.get("short_frac"):
        s += f" ({int(case['short_frac'] * 100)}% at 3/4)"
    return s


def combine_rounds(results):
    """One result from a case's rounds: the median wall and CPU time, the largest peak; the first error or skip
    when any round had one."""
    bad = [r for r in results if "time_ms" not in r]
    if bad:
        return bad[0]
    out = dict(results[0])
    for key in ("time_ms", "cpu_ms"):
        out[key] = statistics.median(r[key] for r in results)
    out["peak_mib"] = max(r["peak_mib"] for r in results)
    return out


def table(rows) -> str:
    """Markdown table; ratios against the preset's baseline (its first method) on the same shape/device/dtype (and
    allocator mode)."""
    out = ["| method | device | dtype | shape | time ms | CPU time ms | peak growth MiB | inputs MiB | time ratio | "
           "CPU time ratio | memory ratio |",
           "| --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    base = {}

    def group(case):
        return case["device"], case["dtype"], shape_str(case), case.get("malloc")

    for case, res in rows:
        key = group(case)
        if "error" not in res and "skipped" not in res and key not in base:
            base[key] = res
    for case, res in rows:
        key = group(case)
        head = f"| {method_str(case)} | {case['device']} | {case['dtype']} | {shape_str(case)} |"
        if "skipped" in res:
            out.append(f"{head} skipped: {res['skipped']} | | | | | | |")
            continue
        if "error" in res:
            out.append(f"{head} error: {res['error'][:160]} | | | | | | |")
            continue
        b = base.get(key)
        tr = f"{res['time_ms'] / b['time_ms']:.2f}" if b else ""
        cr = f"{res['cpu_ms'] / b['cpu_ms']:.2f}" if b and b["cpu_ms"] > 0 else ""
        mr = f"{res['peak_mib'] / b['peak_mib']:.3f}" if b and b["peak_mib"] > 0 else ""
        out.append(f"{head} {res['time_ms']:.1f} | {res['cpu_ms']:.1f} | {res['peak_mib']:.1f} | {res['inputs_mib']:.1f} | "
                   f"{tr} | {cr} | {mr} |")
    return "\n".join(out)


def grad_buffer_mib(case):
    """The engine's fp32 gradient buffers: encoder_out, predictor_out and the joint's parameters."""
    B, T, U, V, He, Hp, Hj = (case[k] for k in ("B", "T", "U", "V", "He", "Hp", "Hj"))
    params = He * Hj + Hj + Hp * Hj + Hj * V + V
    return 4 * (B * T * He + B * (U + 1) * Hp + params) / 2 ** 20


LABELS = {"batched_swr": "batched (materialised logits)", "batched_torchaudio": "batched, torchaudio loss",
          "samplewise": "sample-wise", "fused": "fused output layer", "swr": "samplewise_rnnt.rnnt_loss",
          "swr_inplace": "rnnt_loss, in-place gradient", "torchaudio": "torchaudio rnnt_loss",
          "nemo_numba": "NeMo RNNTLossNumba", "batched_tdt": "TDT, batched (materialised logits + tdt_loss)",
          "samplewise_tdt": "TDT, sample-wise", "fused_tdt": "TDT, fused output layer",
          "tdt_pytorch": "TDT, batched, NeMo TDTLossPytorch", "floor": "floor (the fused layer's products)"}


def plot(rows, path, title, subtitle=""):
    """Peak memory growth against B: one line per method (plain names), the gradient buffers every method
    needs, and (joint level) the sample-wise engine's group budget; B ticks as plain numbers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullLocator

    fig, ax = plt.subplots(figsize=(7.2, 5.0), dpi=100)
    series = {}
    for case, res in rows:
        if "peak_mib" in res:
            series.setdefault((case["method"], case["device"], case["dtype"]), []).append((case["B"], res["peak_mib"]))
    several = len({(d, dt) for _, d, dt in series}) > 1
    for (m, d, dt), pts in series.items():
        pts.sort()
        label = LABELS.get(m, m) + (f" ({d}, {dt})" if several else "")
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=label)
    joint_cases = sorted({c["B"]: c for c, _ in rows if c["level"] == "joint"}.items())
    if joint_cases:
        ax.plot([b for b, _ in joint_cases], [grad_buffer_mib(c) for _, c in joint_cases], "k--", linewidth=1,
                label="gradient buffers (encoder and predictor outputs,\njoint weights; fp32): every method needs them")
        budgets = {c.get("max_chunk_bytes") or _default_budget(c["device"]) for _, c in joint_cases}
        for budget in sorted(b for b in budgets if b):
            ax.axhline(budget / 2 ** 20, color="gray", linestyle=":", linewidth=1.2,
                       label=f"sample-wise group budget (max_chunk_bytes, {budget / 2 ** 20:.0f} MiB): the samples\n"
                             "of one group share it; more samples make more groups")
    bs = sorted({c["B"] for c, _ in rows})
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(bs)
    ax.set_xticklabels([str(b) for b in bs])
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel("batch size B")
    ax.set_ylabel("peak memory growth of one training step (MiB)")
    ax.set_title(title + ("\n" + subtitle if subtitle else ""), fontsize=10)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=7.5, loc="upper left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _default_budget(device):
    try:
        from samplewise_rnnt.planner import default_budget
        return default_budget(torch.device(device))
    except Exception:  # an older planner: no line
        return None


def plot_titles(preset, devices, dtype):
    """A short title and a subtitle with the shape, for the plot."""
    common = preset["common"]
    if preset["level"] == "joint":
        what = "joint + loss + backward"
        sizes = {common["Hj"], common["He"], common["Hp"]}
        shape = (f"T={common['T']}, U={common['U']}, V={common['V']}, "
                 + (f"hidden sizes {common['Hj']}" if len(sizes) == 1 else
                    f"joint {common['Hj']}, encoder {common['He']}, predictor {common['Hp']}"))
    else:
        what = "the loss on materialised logits, forward + backward"
        shape = f"T={common['T']}, U={common['U']}, V={common['V']}"
    if common.get("short_frac"):
        shape += f"; {int(common['short_frac'] * 100)} % of the samples 3/4 long"
    return f"Peak memory against batch size ({what})", f"{', '.join(devices)}, {dtype}; {shape}"


def paper_note(preset, rows):
    full = dict(preset["common"], **preset["full"])
    B, T, U, V, He, Hp = (full[k] for k in ("B", "T", "U", "V", "He", "Hp"))
    logits = B * T * (U + 1) * V * 4 / 2 ** 30
    inputs = (B * T * He + B * (U + 1) * Hp) * 4 / 2 ** 30
    lines = [f"Full configuration B={B}: encoder + predictor outputs {inputs:.2f} GiB (fp32); the batched logits alone "
             f"would be {logits:.0f} GiB (fp32), their gradient as much again; the engine's gradient buffers "
             f"{grad_buffer_mib(full) / 1024:.2f} GiB."]
    for case, res in rows:
        if case["method"] == "samplewise" and "peak_mib" in res:
            lines.append(f"- measured {case['device']} B={case['B']}: sample-wise peak growth {res['peak_mib']:.0f} MiB "
                         f"beside inputs of {res['inputs_mib']:.0f} MiB; one sample's logits are "
                         f"{T * (U + 1) * V * 4 / 2 ** 20:.0f} MiB")
    return "\n".join(lines)


def fit_note(preset, rows):
    """The phase-wise fit of each method's memory (``procmem.extrapolate_phases``: every phase's peak, inputs
    included, fitted as a + b B over ``fit_B``; the step's peak at ``target_B`` is the largest phase),
    checked against the measured ``check_B``."""
    from samplewise_rnnt.procmem import extrapolate_phases

    fit = preset["fit"]
    full = dict(preset["common"], B=fit["target_B"])
    floor = 2 * 4 * (full["B"] * full["T"] * full["He"] + full["B"] * (full["U"] + 1) * full["Hp"]) / 2 ** 30
    lines = [f"Phase-wise memory fit (peaks counted with the inputs; fit over B = {fit['fit_B']}); the floor at "
             f"B = {fit['target_B']} is the encoder and predictor outputs and their fp32 gradients: {floor:.2f} GiB.",
             "", f"| method | phase | intercept MiB | MiB per sample | predicted B={fit['target_B']} GiB | "
             f"above the floor GiB | predicted B={fit['check_B']} MiB | measured B={fit['check_B']} MiB | error |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for m in dict.fromkeys(c["method"] for c, _ in rows):
        runs = [{"batch": c["B"], "phase_peak_bytes": r["phase_peak_bytes"], "held_bytes": r["held_bytes"]}
                for c, r in rows if c["method"] == m and "phase_peak_bytes" in r and c["B"] in fit["fit_B"]]
        if len(runs) < 2:
            lines.append(f"| {m} | (fewer than two fitted batch sizes measured) | | | | | | | |")
            continue
        phases = sorted(runs[0]["phase_peak_bytes"])
        res = extrapolate_phases(runs, phases, fit["target_B"])
        check = [r for c, r in rows if c["method"] == m and c["B"] == fit["check_B"] and "phase_peak_bytes" in r]
        for ph in phases:
            f = res["phases"][ph]
            pred_check = f["intercept_bytes"] + f["slope_bytes"] * fit["check_B"]
            meas = check[0]["phase_peak_bytes"][ph] if check else None
            err = f"{(pred_check - meas) / meas * 100:+.1f} %" if meas else ""
            mark = " (peak)" if ph == res["peak_phase"] else ""
            lines.append(f"| {m} | {ph}{mark} | {f['intercept_bytes'] / 2 ** 20:.0f} | {f['slope_bytes'] / 2 ** 20:.2f} | "
                         f"{f['at_target_bytes'] / 2 ** 30:.2f} | {f['at_target_bytes'] / 2 ** 30 - floor:.2f} | "
                         f"{pred_check / 2 ** 20:.0f} | {'' if meas is None else f'{meas / 2 ** 20:.0f}'} | {err} |")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m recipes.benchmark", description=__doc__)
    ap.add_argument("--preset", choices=sorted(PRESETS), required=True)
    ap.add_argument("--device", choices=["cpu", "cuda"], action="append",
                    help="repeatable; default: cpu, plus cuda when a GPU is present")
    ap.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default="float32",
                    help="logits dtype (logits level) or autocast dtype of the joint (joint level)")
    ap.add_argument("--repeats", type=int, default=None, help="timed repeats per case (default: 2, 1 for sweep/paper)")
    ap.add_argument("--rounds", type=int, default=1,
                    help="run every case this many times, round-robin over the cases (a fresh process each time), "
                         "and report the median time over the rounds: on a shared machine, drift then hits every "
                         "method alike")
    ap.add_argument("--methods", nargs="+", choices=sorted(METHODS), help="restrict to these methods")
    ap.add_argument("--max-chunk-bytes", type=float, default=None, help="the sample-wise engine's group budget")
    ap.add_argument("--malloc", choices=sorted(MALLOC_MODES), default="system",
                    help="CPU cases: 'keep' runs them with glibc keeping freed memory for reuse (MALLOC_MMAP_MAX_=0, "
                         "no trimming), as a caching allocator does; 'both' runs every case both ways, side by side "
                         "(default: 'system', glibc's defaults)")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads in each case (default: torch's)")
    ap.add_argument("--plot", help="PNG of peak memory growth against B")
    ap.add_argument("--save", help="write the tables (markdown) here")
    ap.add_argument("--in-process", action="store_true",
                    help="CUDA only: run every case in this process (peak statistics reset per case) instead of "
                         "a fresh subprocess per case")
    ap.add_argument("--B", type=int, nargs="+", default=None, dest="batch_sizes",
                    help="only the preset's shapes with these batch sizes")
    ap.add_argument("--deadline", type=float, default=None, metavar="UNIX_TIME",
                    help="cases not started by this time (time.time()) are reported as skipped")
    ap.add_argument("--dry-run", action="store_true",
                    help="list the cases (and why any would be skipped) without running them; allowed without a GPU")
    args = ap.parse_args(argv)
    preset = PRESETS[args.preset]
    devices = args.device or (["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
    if args.in_process and devices != ["cuda"]:
        ap.error("--in-process needs --device cuda alone (the CPU's peak resident set is per process)")
    if args.rounds < 1:
        ap.error(f"--rounds must be at least 1, got {args.rounds}")
    repeats = args.repeats if args.repeats is not None else preset.get("repeats", 2)
    if args.in_process and args.malloc != "system":
        ap.error("--malloc applies to CPU cases, each in its own process; --in-process is for CUDA")
    cases = build_cases(preset, devices, args.dtype, repeats, args.max_chunk_bytes, args.methods, args.malloc)
    if args.batch_sizes:
        cases = [c for c in cases if c["B"] in args.batch_sizes]
        if not cases:
            ap.error(f"--B {args.batch_sizes}: the preset {args.preset!r} has no shape with these batch sizes")
    if args.dry_run:
        for case in cases:
            why = METHODS[case["method"]].why_unavailable(case)
            print(f"would run {method_str(case):>20} {case['device']} {case['dtype']} {shape_str(case)}"
                  + (f" (skipped: {why})" if why else ""))
        print(f"dry run: {len(cases)} case(s) of preset {args.preset}")
        return 0
    if "cuda" in devices and not torch.cuda.is_available():
        ap.error("--device cuda: no CUDA device is visible")
    if args.threads:
        for case in cases:
            case["threads"] = args.threads
    from tqdm import tqdm

    results = [[] for _ in cases]  # per case, one result per round
    with tqdm(total=len(cases) * args.rounds, desc=f"preset {args.preset}", unit="case") as bar:
        for rnd in range(args.rounds):  # round-robin: every method once per round, so drift hits all alike
            for case, got in zip(cases, results):
                method = METHODS[case["method"]]
                why = method.why_unavailable(case)
                if not why and args.deadline is not None and time.time() > args.deadline:
                    why = "the run's time budget was spent before this case"
                res = {"skipped": why} if why else (run_here(case) if args.in_process else run_in_subprocess(case))
                got.append(res)
                bar.update()
                tqdm.write(f"{method_str(case):>20} {case['device']} {case['dtype']} {shape_str(case)}"
                           + (f" (round {rnd + 1})" if args.rounds > 1 else "") + ": "
                           + (json.dumps(res) if "time_ms" not in res else
                              f"{res['time_ms']:.1f} ms, peak +{res['peak_mib']:.1f} MiB"))
    rows = [(case, combine_rounds(got)) for case, got in zip(cases, results)]
    cmd = "python -m recipes.benchmark " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    gpu = torch.cuda.get_device_name() if "cuda" in devices else None
    header = [f"## preset `{args.preset}`: {preset['description']}", "",
              f"Command: `{cmd}`  ",
              f"Date: {datetime.datetime.now().isoformat(timespec='seconds')}; host: {platform.node()}, "
              f"{os.cpu_count()} CPUs, torch {torch.__version__} ({args.threads or torch.get_num_threads()} threads), "
              f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}"
              + (f"; GPU: {gpu}" if gpu else "") + "  ",
              f"Peak memory growth: {'VmHWM/ru_maxrss over the RSS after the inputs are built' if 'cpu' in devices else ''}"
              f"{'; ' if len(devices) > 1 else ''}"
              f"{'torch.cuda.max_memory_allocated over the allocation after the inputs are built' if 'cuda' in devices else ''}"
              f"{' (all cases in one process)' if args.in_process else ''}"
              f". Time: median wall time of {repeats} step(s) after a warm-up; CPU time: the process's user + system "
              f"time (all threads) over the same steps, less sensitive to other processes on the machine"
              + (f"; {args.rounds} rounds, every case once per round in a fresh process (round-robin over the methods), "
                 f"times the median over the rounds, peak memory the largest" if args.rounds > 1 else "")
              + (f"; `[malloc keep]`: the case's process ran with {' '.join(f'{k}={v}' for k, v in MALLOC_KEEP_ENV.items())}"
                 f" (glibc keeps freed memory for reuse, as a caching allocator does)" if args.malloc != "system" else "")
              + ". Ratios against the first method of each shape" + (" and allocator" if args.malloc == "both" else "")
              + ".",
              ""]
    text = "\n".join(header) + table(rows) + "\n"
    if args.preset == "paper":
        text += "\n" + paper_note(preset, rows) + "\n"
    if preset.get("fit"):
        text += "\n" + fit_note(preset, rows) + "\n"
    print(text)
    if args.save:
        with open(args.save, "a") as f:
            f.write(text + "\n")
    if args.plot:
        plot(rows, args.plot, *plot_titles(preset, devices, args.dtype))
        print(f"plot written to {args.plot}")
    return 0 if all("error" not in r for _, r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
