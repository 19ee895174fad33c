"""Registers, stack and spills per CUDA kernel and architecture, from a build log made with SWR_PTXAS_VERBOSE=1.

    SWR_PTXAS_VERBOSE=1 python setup.py build_ext --inplace 2>&1 | tee build.log
    python -m recipes.benchmark.ptxas_report build.log          # a Markdown table; exit 1 on any spill

ptxas (``-Xptxas -v``) prints, for each kernel it compiles for an architecture, its registers, stack
frame, spill stores and loads, and shared memory; this gathers them, the kernels' names demangled.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import sys

ENTRY = re.compile(r"Compiling entry function '(\S+)' for '(sm_\d+a?)'")
FRAME = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
USED = re.compile(r"Used (\d+) registers(.*)")
SMEM = re.compile(r"(\d+) bytes smem")


def demangle(names):
    if not names or shutil.which("c++filt") is None:
        return {n: n for n in names}
    out = subprocess.run(["c++filt"], input="\n".join(names), capture_output=True, text=True).stdout.splitlines()
    short = {}
    for n, d in zip(names, out):
        d = re.sub(r"swr::\(anonymous namespace\)::", "", d)
        short[n] = re.sub(r"\(.*", "", d).replace("void ", "")
    return short


def parse(text: str):
    rows, cur = [], None
    for line in text.splitlines():
        m = ENTRY.search(line)
        if m:
            cur = {"kernel": m.group(1), "arch": m.group(2), "stack": 0, "spill_st": 0, "spill_ld": 0}
            continue
        if cur is None:
            continue
        m = FRAME.search(line)
        if m:
            cur["stack"], cur["spill_st"], cur["spill_ld"] = map(int, m.groups())
            continue
        m = USED.search(line)
        if m:
            cur["regs"] = int(m.group(1))
            s = SMEM.search(m.group(2))
            cur["smem"] = int(s.group(1)) if s else 0
            rows.append(cur)
            cur = None
    names = demangle(sorted({r["kernel"] for r in rows}))
    for r in rows:
        r["kernel"] = names[r["kernel"]]
    # one row per (arch, kernel): a build compiles each translation unit once per arch
    uniq = {(r["arch"], r["kernel"]): r for r in rows}
    return [uniq[k] for k in sorted(uniq)]


def table(rows) -> str:
    out = ["| arch | kernel | registers | stack bytes | spill stores | spill loads | static shared bytes |",
           "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    out += [f"| {r['arch']} | `{r['kernel']}` | {r['regs']} | {r['stack']} | {r['spill_st']} | {r['spill_ld']} "
            f"| {r['smem']} |" for r in rows]
    return "\n".join(out)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    with open(argv[0], errors="replace") as f:
        rows = parse(f.read())
    if not rows:
        print(f"{argv[0]}: no ptxas figures (build with SWR_PTXAS_VERBOSE=1, and with the CUDA kernels)")
        return 1
    print(table(rows))
    spills = [r for r in rows if r["spill_st"] or r["spill_ld"]]
    print(f"\n{len(rows)} kernel builds, {len(spills)} with spills")
    return 1 if spills else 0


if __name__ == "__main__":
    sys.exit(main())
