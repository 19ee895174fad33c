"""samplewise_rnnt.procmem: the resident-set helpers and the phase meter of the recipes' memory scripts."""
from __future__ import annotations

import pytest
import torch

from samplewise_rnnt.procmem import PhaseMeter, extrapolate_phases, fit_line, reset_peak_rss

MIB = 2 ** 20
pytestmark = pytest.mark.skipif(not reset_peak_rss(), reason="the kernel's peak-RSS mark cannot be reset here")


def test_phase_meter_puts_each_peak_in_its_phase_and_leaves_outputs_and_gradients_alone():
    torch.manual_seed(0)
    lin = torch.nn.Linear(4, 3)
    meter = PhaseMeter("cpu")
    meter.cut_after(lin, "first")
    meter.cut_on_grad(lin, "backward to lin")
    x = torch.randn(5, 4, requires_grad=True)
    meter.start(counted_bytes=1000)
    big = torch.ones(24 * MIB)  # 96 MiB, written: resident
    del big
    y = lin(x)  # closes "first", whose peak held the 96 MiB
    small = torch.ones(MIB // 4)  # 1 MiB
    del small
    meter.cut("second")
    (y ** 2).sum().backward()
    meter.cut("rest")
    meter.remove_hooks()
    assert torch.is_tensor(y) and y.shape == (5, 3)  # the forward hook did not replace the output
    ref_x = x.detach().clone().requires_grad_()
    (lin(ref_x) ** 2).sum().backward()
    torch.testing.assert_close(x.grad, ref_x.grad)  # the gradient hook did not change the gradient
    assert meter.peaks["first"] >= 90 * MIB
    assert meter.peaks["second"] < 40 * MIB
    assert "backward to lin" in meter.peaks and "rest" in meter.peaks
    assert min(meter.peaks.values()) >= 1000 - MIB  # counted bytes are part of every phase (RSS noise aside)


def test_fit_and_phase_extrapolation():
    a, b = fit_line([(1, 12.0), (2, 14.0), (4, 18.0)])
    assert a == pytest.approx(10.0) and b == pytest.approx(2.0)
    runs = [{"batch": B, "held_bytes": 5 * B, "phase_peak_bytes": {"opt": 100, "bwd": 10 + 3 * B}} for B in (2, 4, 8)]
    r = extrapolate_phases(runs, ("opt", "bwd"), 100)
    assert r["peak_phase"] == "bwd" and r["extrapolated_bytes"] == pytest.approx(310)
    assert r["held_slope_bytes"] == pytest.approx(5)
    assert extrapolate_phases(runs, ("opt", "bwd"), 10)["peak_phase"] == "opt"


def test_cut_split_without_the_gradient_mark_puts_the_whole_span_in_the_marked_phase():
    lin = torch.nn.Linear(4, 3).requires_grad_(False)  # its output needs no gradient: the mark never fires
    meter = PhaseMeter("cpu")
    meter.cut_on_grad(lin, "marked")
    w = torch.randn(3, requires_grad=True)
    meter.start(counted_bytes=64 * MIB)  # measured phases are at least that; a phase set to 0 is not
    loss = (lin(torch.randn(5, 4)) * w).sum()
    loss.backward()
    meter.cut_split("marked", "rest")
    meter.remove_hooks()
    assert meter.peaks["marked"] > 32 * MIB and meter.peaks["rest"] == 0
    # with the mark: both phases measured
    lin.requires_grad_(True)
    meter = PhaseMeter("cpu")
    meter.cut_on_grad(lin, "marked")
    meter.start(counted_bytes=64 * MIB)
    (lin(torch.randn(5, 4)) * w).sum().backward()
    meter.cut_split("marked", "rest")
    assert meter.peaks["marked"] > 32 * MIB and meter.peaks["rest"] > 32 * MIB
