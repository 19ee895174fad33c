"""The benchmark's own machinery (recipes/benchmark): what it claims about the processes it runs."""
from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from recipes.benchmark.__main__ import MALLOC_KEEP_ENV, build_cases, case_env, method_str
from recipes.benchmark.presets import PRESETS

# a child that touches 96 MiB, frees it and reports its resident set before and after the free (KiB)
_CHILD = """
import re
def rss():
    return int(re.search(r"VmRSS:\\s+(\\d+)", open("/proc/self/status").read()).group(1))
x = b"\\x01" * (96 << 20)
held = rss()
del x
print(held, rss())
"""


def _rss_around_free(env):
    out = subprocess.run([sys.executable, "-c", _CHILD], env=env, check=True, capture_output=True, text=True).stdout
    held, after = (int(v) for v in out.split())
    return held, after


@pytest.mark.skipif(not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
                    reason="the malloc variables are glibc's, /proc is Linux's")
def test_malloc_keep_really_keeps_freed_memory():
    """``--malloc keep`` is only a measurement of a reusing allocator if glibc honours its variables: with the
    defaults a freed 96 MiB block goes back to the system at once, with them it stays resident."""
    case = {"method": "swr", "malloc": "keep"}
    defaults = {k: v for k, v in case_env({"method": "swr"}).items()
                if not (k.startswith("MALLOC_") or k == "GLIBC_TUNABLES")}
    held, after = _rss_around_free(defaults)
    assert held - after > 80 << 10, f"glibc's defaults kept the freed block ({held} KiB -> {after} KiB)"
    env = case_env(case)
    for k, v in MALLOC_KEEP_ENV.items():
        assert env[k] == v
    held, after = _rss_around_free(env)
    assert held - after < 8 << 10, f"[malloc keep] returned the freed block to the system ({held} KiB -> {after} KiB)"


def test_malloc_both_runs_every_case_both_ways_with_ratios_within_each():
    cases = build_cases(PRESETS["core"], ["cpu"], "float32", 1, None, ["swr_inplace", "swr"], "both")
    assert [(c["method"], c.get("malloc")) for c in cases] == [
        ("swr_inplace", None), ("swr", None), ("swr_inplace", "keep"), ("swr", "keep")]
    assert [method_str(c) for c in cases] == ["swr_inplace", "swr", "swr_inplace [malloc keep]", "swr [malloc keep]"]
    from recipes.benchmark.__main__ import table

    rows = [(c, {"time_ms": t, "cpu_ms": t, "peak_mib": 1.0, "inputs_mib": 1.0})
            for c, t in zip(cases, (100.0, 150.0, 200.0, 220.0))]
    ratios = [line.split("|")[-4].strip() for line in table(rows).splitlines()[2:]]
    assert ratios == ["1.00", "1.50", "1.00", "1.10"]  # each against the first method of its own allocator mode


def test_malloc_option_is_cpu_only():
    cases = build_cases(PRESETS["core"], ["cuda"], "float32", 1, None, ["swr"], "both")
    assert len(cases) == len(PRESETS["core"]["shapes"]["cuda"])  # once per shape: PyTorch's caching allocator
    assert all("malloc" not in c for c in cases)
