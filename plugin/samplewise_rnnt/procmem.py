"""Resident memory of this process on Linux, for the CPU memory measurements of the benchmarks and
recipes (torch has no allocator statistics on the CPU).

Measure a step's peak as ``peak_rss_bytes(reset_peak_rss()) - rss_bytes()`` taken before the step.
"""
from __future__ import annotations

import os
import resource

__all__ = ["rss_bytes", "reset_peak_rss", "peak_rss_bytes", "PhaseMeter", "fit_line", "extrapolate_phases"]


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


def _first_grad_tensor(value):
    """The first tensor requiring grad in a (nested) tuple/list output, or None."""
    import torch

    if torch.is_tensor(value):
        return value if value.requires_grad else None
    if isinstance(value, (tuple, list)):
        for v in value:
            t = _first_grad_tensor(v)
            if t is not None:
                return t
    return None


class PhaseMeter:
    """Peak memory of each phase of a training step, for the recipes' memory scripts.

    On CUDA the peak is ``torch.cuda.max_memory_allocated`` (peak stats reset at each cut); on the CPU the
    resident set's high-water mark (reset at each cut; run with a small ``MALLOC_MMAP_THRESHOLD_`` so that
    freed tensors leave the resident set). Peaks are counted from ``start``'s baseline plus
    ``counted_bytes`` (the weights and the batch, which the step's memory includes as on a GPU).

    ``cut(name)`` closes the phase running since the previous cut; ``cut_after(module, name)`` does it when
    the module's forward returns, ``cut_on_grad(module, name)`` when the gradient of its output is complete
    (in backward, i.e. once everything after the module has been differentiated).
    """

    def __init__(self, device="cpu"):
        self.cuda = str(device).startswith("cuda")
        self.peaks = {}
        self.base = 0
        self._handles = []

    def _sync(self):
        if self.cuda:
            import torch

            torch.cuda.synchronize()

    def _now(self) -> int:
        if self.cuda:
            import torch

            return torch.cuda.memory_allocated()
        return rss_bytes()

    def _reset(self):
        self._sync()
        if self.cuda:
            import torch

            torch.cuda.reset_peak_memory_stats()
        elif not reset_peak_rss():
            raise OSError("cannot reset the peak-RSS mark (/proc/self/clear_refs)")

    def start(self, counted_bytes: int = 0) -> None:
        self._sync()
        self.base = self._now() - int(counted_bytes)
        self._reset()

    def current(self) -> int:
        """Bytes in use now, from the baseline."""
        self._sync()
        return self._now() - self.base

    def cut(self, name: str) -> int:
        self._sync()
        if self.cuda:
            import torch

            peak = torch.cuda.max_memory_allocated()
        else:
            peak = peak_rss_bytes()
        self.peaks[name] = max(int(peak - self.base), 0)
        self._reset()
        return self.peaks[name]

    def cut_after(self, module, name: str) -> None:
        def hook(*_):
            self.cut(name)  # returns None: a forward hook's return value would replace the output

        self._handles.append(module.register_forward_hook(hook))

    def cut_on_grad(self, module, name: str) -> None:
        def hook(_m, _inp, out):
            t = _first_grad_tensor(out)
            if t is not None:
                def on_grad(_g):
                    self.cut(name)  # returns None: the gradient passes unchanged

                t.register_hook(on_grad)

        self._handles.append(module.register_forward_hook(hook))

    def cut_split(self, marked: str, rest: str) -> None:
        """Close a span split by a ``cut_on_grad(..., marked)`` mark: ``rest`` is what ran after the mark.
        Where the mark never fired (the module's output needed no gradient), the whole span is ``marked``
        and ``rest`` is 0."""
        if marked in self.peaks:
            self.cut(rest)
        else:
            self.cut(marked)
            self.peaks[rest] = 0

    def remove_hooks(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()


def fit_line(points):
    """Least-squares ``(a, b)`` of ``y = a + b x`` through ``[(x, y), ...]``."""
    n = len(points)
    xs = [x for x, _ in points]
    ys = [y for _, y in points]
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx if sxx else 0.0
    return my - slope * mx, slope


def extrapolate_phases(runs, phases, target: int) -> dict:
    """Fit every phase's peak (and the bytes held after the forward) over the batch size; the step's peak
    at ``target`` is the largest extrapolated phase.

    ``runs``: ``[{"batch": B, "phase_peak_bytes": {phase: bytes}, "held_bytes": bytes}, ...]``.
    """
    fits = {}
    for ph in phases:
        a, b = fit_line([(r["batch"], r["phase_peak_bytes"][ph]) for r in runs])
        fits[ph] = {"intercept_bytes": a, "slope_bytes": b, "at_target_bytes": a + b * target}
    a, b = fit_line([(r["batch"], r["held_bytes"]) for r in runs])
    top = max(fits, key=lambda ph: fits[ph]["at_target_bytes"])
    return {"runs": runs, "phases": fits, "peak_phase": top, "slope_bytes": fits[top]["slope_bytes"],
            "extrapolated_bytes": fits[top]["at_target_bytes"], "held_slope_bytes": b,
            "held_at_target_bytes": a + b * target}
