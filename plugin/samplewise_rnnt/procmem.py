"""Resident memory of this process on Linux, for the CPU memory measurements of the benchmarks and
recipes (torch has no allocator statistics on the CPU).

Measure a step's peak as ``peak_rss_bytes(reset_peak_rss()) - rss_bytes()`` taken before the step.
"""
from __future__ import annotations

import os
import resource

__all__ = ["rss_bytes", "reset_peak_rss", "peak_rss_bytes"]


def rss_bytes() -> int:
    """The resident set size now."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def reset_peak_rss() -> bool:
    """Reset the kernel's high-water mark of the resident set (VmHWM) to the current RSS (Linux >= 4.0);
    False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_bytes(reset_ok: bool = True) -> int:
    """The resident set's high-water mark: VmHWM (since the last reset), or the process's lifetime
    ``ru_maxrss`` where the mark could not be reset or read."""
    if reset_ok:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
