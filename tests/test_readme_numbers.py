"""Every measured number in README.md comes from a committed result file.

A "number" is one with a unit of measurement: a ratio (``0.72x``), a memory size (``106 MiB``,
``29.6 GiB``, ``1.7 TiB``, ``80 GB``) or a percentage (``4.4 %``), in tables and prose alike. Each must
equal, at the precision the README writes it, a number in a file git tracks under a ``results/``
folder of ``recipes/`` (``recipes/benchmark/results/``, ``recipes/librispeech/*/results/``). The result
files write memory in MiB, GiB or bytes and shares as fractions, so a README value also matches a file
value in a neighbouring unit (GiB against MiB / 1024, TiB against GiB / 1024, MiB against bytes / 2^20,
a percentage against a fraction * 100). Every results file the README names must be committed.
"""
from __future__ import annotations

import math
import re
import subprocess
from decimal import Decimal
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"

# a number (optionally after ~ or "about"), then its unit; "x" only as a ratio suffix (0.72x, 7.9x)
NUMBER = re.compile(r"(?<![\w.^])(\d+(?:\.\d+)?)(?:\s*(MiB|GiB|TiB|KiB|MB|GB|TB|%)|(x|×))(?![\w])")

K = 1024.0
_CONVERSIONS = {  # README unit -> how a file's number may be written (factor applied to the file number)
    "KiB": [1.0, K, 1 / K],
    "MiB": [1.0, K, 1 / K, 1 / K ** 2],
    "GiB": [1.0, K, 1 / K, 1 / K ** 3],
    "TiB": [1.0, 1 / K, 1 / K ** 2, 1 / K ** 4],
    "MB": [1.0, 1e3, 1e-3, 1e-6, 1 / K ** 2],
    "GB": [1.0, 1e3, 1e-3, 1e-9, 1 / K ** 3],
    "TB": [1.0, 1e-3, 1e-12],
}


def readme_numbers(text: str):
    """(value text, unit, line number, line) for every number with a unit in `text`, code blocks excluded."""
    found, in_code = [], False
    for lineno, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("```"):
            in_code = not in_code
            continue
        if in_code:
            continue
        for m in NUMBER.finditer(line.replace("`", " ")):
            found.append((m.group(1), m.group(2) or m.group(3), lineno, line.strip()))
    return found


def results_files():
    out = subprocess.run(["git", "ls-files", "recipes"], cwd=ROOT, check=True, capture_output=True,
                         text=True).stdout.split()
    return [p for p in out if "/results/" in p and p.endswith((".md", ".json", ".txt", ".csv", ".tsv"))]


_NUM = r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?"
# JSON keys whose values (a number, or an object of numbers) are percentages, and keys of ratios
_PERCENT_VALUE = re.compile(r'"[^"]*(?:wer|cer|percent|pct)[^"]*"\s*:\s*(\{[^}]*\}|' + _NUM + ")", re.I)
_RATIO_VALUE = re.compile(r'"[^"]*(?:ratio|headroom|speedup)[^"]*"\s*:\s*(' + _NUM + ")", re.I)


def file_numbers(paths):
    """The result files' numbers by kind: "any" (every number), "percent" (written with a % sign, or under
    a JSON key naming a WER or a percentage), "ratio" (anywhere in a Markdown result file, written with an
    x, or under a JSON key naming a ratio)."""
    kinds = {"any": set(), "percent": set(), "ratio": set()}

    def add(kind, strings):
        for s in strings:
            x = abs(float(s))
            if math.isfinite(x):
                kinds[kind].add(x)

    for p in paths:
        text = (ROOT / p).read_text(errors="replace")
        add("any", re.findall(_NUM, text))
        add("percent", re.findall("(" + _NUM + r")\s*%", text))
        for value in _PERCENT_VALUE.findall(text):
            add("percent", re.findall(r"(?<![\w.])" + _NUM + r"(?=\s*[,}]|$)", value))
        if p.endswith(".md"):
            add("ratio", re.findall(_NUM, text))
        add("ratio", re.findall("(" + _NUM + r")x\b", text))
        add("ratio", _RATIO_VALUE.findall(text))
    return kinds


def _candidates(unit, nums):
    if unit == "x":
        return [(x, 1.0) for x in nums["ratio"]]
    if unit == "%":
        return [(x, 1.0) for x in nums["percent"]] + [(x, 100.0) for x in nums["any"] if x <= 1.0]
    return [(x, f) for x in nums["any"] for f in _CONVERSIONS[unit]]


def matches(value: str, unit: str, nums) -> bool:
    """Whether some file number of the right kind, in one of `unit`'s forms, rounds to `value` at the
    precision the README writes it."""
    decimals = len(value.split(".")[1]) if "." in value else 0
    target = Decimal(value)
    half = Decimal(1).scaleb(-decimals) / 2
    for x, f in _candidates(unit, nums):
        if abs(Decimal(repr(x * f)) - target) <= half * Decimal("1.0000001"):
            return True
    return False


def unmatched(text: str, nums):
    return [(v, u, n, line) for v, u, n, line in readme_numbers(text) if not matches(v, u, nums)]


@pytest.fixture(scope="module")
def nums():
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: the committed result files come from git")
    paths = results_files()
    assert paths, "no committed result files under recipes/**/results/"
    return file_numbers(paths)


def test_readme_has_measured_numbers():
    assert len(readme_numbers(README.read_text())) >= 10


def test_every_readme_number_is_in_a_committed_result_file(nums):
    bad = unmatched(README.read_text(), nums)
    assert not bad, "README.md numbers found in no committed result file:\n" + "\n".join(
        f"  line {n}: {v} {u}   ({line[:110]})" for v, u, n, line in bad)


def test_results_files_the_readme_names_are_committed():
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    named = set(re.findall(r"recipes/[\w./-]*results/[\w./-]*\w", README.read_text()))
    assert named, "README.md names no result file"
    tracked = set(subprocess.run(["git", "ls-files", "recipes"], cwd=ROOT, check=True, capture_output=True,
                                 text=True).stdout.split())
    missing = [p for p in sorted(named) if p not in tracked and not any(t.startswith(p.rstrip("/") + "/")
                                                                        for t in tracked)]
    assert not missing, f"README.md names result files that are not committed: {missing}"


def test_the_check_catches_a_made_up_number(nums):
    """The checker is not vacuous: invented numbers are flagged, while the committed values, written in other
    units or precisions, pass."""
    made_up = "| fused | 0.937x | 5555.5 MiB (3.33 %) |\nand 123.4 GiB, also 8642.1 MiB (0.173 %)"
    flagged = {(v, u) for v, u, _, _ in unmatched(made_up, nums)}
    assert {("0.937", "x"), ("5555.5", "MiB"), ("3.33", "%"), ("123.4", "GiB"), ("8642.1", "MiB"),
            ("0.173", "%")} <= flagged, flagged
    # recipes/benchmark/results/cpu-2026-11-25.md: fused 63.8 MiB, memory ratio 0.027; batched 2385.8 MiB;
    # recipes/librispeech/espnet/results/memory_espnet_batched_15s_fp32_cpu.json: 1743.2 GiB
    real = "63.8 MiB (2.7 %), 0.81x, 2386 MiB, 2.33 GiB, 1.7 TiB"
    assert unmatched(real, nums) == [], unmatched(real, nums)
    # inside code blocks and without a unit, numbers are not measurements
    assert readme_numbers("B = 1024, T = 200\n```\n3.14x\n```\n") == []
