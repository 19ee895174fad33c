"""One benchmark case in this (fresh) process: ``python -m recipes.benchmark.runner '<case json>'``.

Prints one line ``RESULT {json}`` with ``time_ms`` (median wall time over the timed repeats),
``cpu_ms`` (median process CPU time, all threads), ``peak_mib``
(peak memory growth over the memory held once the inputs are built) and ``inputs_mib``.
Order: build the inputs; warm up on a tiny copy of the case (JIT compilers, thread pools, lazy
initialisation); release what the warm-up left; take the memory baseline; time ``repeats`` steps.
"""
from __future__ import annotations

import ctypes
import gc
import inspect
import json
import resource
import statistics
import sys
import time

import torch

from samplewise_rnnt.procmem import PhaseMeter, peak_rss_bytes, reset_peak_rss, rss_bytes

from .methods import METHODS, build_inputs


def _cpu_seconds():
    """User + system CPU time of this process, all threads (wall time suffers when other processes
    share the cores; CPU time much less)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _trim():
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass


def run_case(case: dict) -> dict:
    method = METHODS[case["method"]]
    if case.get("threads"):
        torch.set_num_threads(case["threads"])
    cuda = case["device"].startswith("cuda")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    inputs = build_inputs(case)
    # warm-up on a tiny version of the case
    tiny = dict(case, B=min(case["B"], 2), T=min(case["T"], 4), U=min(case["U"], 2))
    tiny_inputs = build_inputs(tiny)
    method.make(tiny_inputs, tiny)()
    sync()
    del tiny_inputs
    step = method.make(inputs, case)
    _trim()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = rss_bytes()
        reset_ok = reset_peak_rss()
    repeats = case["repeats"] if method.max_repeats is None else min(case["repeats"], method.max_repeats)
    times, cpu_times = [], []
    for _ in range(repeats):
        sync()
        t0, c0 = time.perf_counter(), _cpu_seconds()
        step()
        sync()
        times.append((time.perf_counter() - t0) * 1e3)
        cpu_times.append((_cpu_seconds() - c0) * 1e3)
    peak = (torch.cuda.max_memory_allocated() if cuda else peak_rss_bytes(reset_ok)) - base
    out = {"time_ms": statistics.median(times), "cpu_ms": statistics.median(cpu_times), "peak_mib": max(peak, 0) / 2 ** 20,
           "inputs_mib": inputs["bytes"] / 2 ** 20, "repeats": repeats,
           "peak_source": "cuda.max_memory_allocated" if cuda else ("VmHWM" if reset_ok else "ru_maxrss")}
    if case.get("phases") and "meter" in inspect.signature(step).parameters:
        # one more step, cut into phases; peaks counted from the memory before the inputs were built
        _trim()
        meter = PhaseMeter(case["device"])
        meter.start(counted_bytes=inputs["bytes"])
        step(meter)
        out["phase_peak_bytes"] = dict(meter.peaks)
        out["held_bytes"] = meter.held
    return out


def main():
    case = json.loads(sys.argv[1])
    try:
        res = run_case(case)
    except Exception as exc:  # reported as a failed row, not a crash of the whole benchmark
        res = {"error": f"{type(exc).__name__}: {exc}"}
    print("RESULT " + json.dumps(res), flush=True)


if __name__ == "__main__":
    main()
