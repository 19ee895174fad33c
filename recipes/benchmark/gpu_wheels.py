"""Download (where pip reaches a registry) the wheels the GPU image lacks for ``gpu_check.sh 2``; check the set.

    bash recipes/benchmark/gpu_wheels.sh                       # cp312 manylinux x86_64 wheels into .whl/
    bash recipes/benchmark/gpu_wheels.sh --python-version 3.11 --dest /tmp/whl311   # for a 3.11 rehearsal
    bash recipes/benchmark/gpu_wheels.sh --check-venv VENV     # also: pip's --no-index dry run in VENV

What: every line of ``gpu_wheels.txt`` (NeMo 3.0.0 and what its ASR collection imports that the image
lacks), one version each, ``--no-deps``; a distribution that PyPI has only as a source archive
(antlr4-python3-runtime 4.9.3, pure Python) is built into a wheel here. Stale files in the folder are removed.

Checks, each failing the script:
1. complete: every requirement a carried wheel declares unconditionally (markers evaluated for the target
   Python on Linux x86-64) names a distribution carried or in ``gpu_image_packages.txt``, and a carried
   one satisfies its version range;
2. size: the folder within ``--limit-mib`` (default 60: the tool's 64 MiB carry limit less the working tree);
3. with ``--check-venv VENV`` (a venv built like the image, e.g. by gpu_rehearsal.sh):
   ``VENV/bin/python -m pip install --dry-run --no-index --find-links DEST <the carried set>`` resolves.
Then it prints the folder to carry and its size.
"""
from __future__ import annotations

import argparse
import email.parser
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

from pip._vendor.packaging.markers import default_environment
from pip._vendor.packaging.requirements import Requirement
from pip._vendor.packaging.utils import canonicalize_name, parse_wheel_filename

HERE = Path(__file__).resolve().parent
PLATFORMS = ["manylinux_2_17_x86_64", "manylinux2014_x86_64", "manylinux_2_24_x86_64", "manylinux_2_27_x86_64",
             "manylinux_2_28_x86_64", "manylinux_2_31_x86_64", "manylinux_2_34_x86_64", "manylinux_2_35_x86_64",
             "manylinux1_x86_64", "linux_x86_64"]
SDIST_ONLY = {"antlr4-python3-runtime"}  # pure Python, published as a source archive only


def read_list(path: Path):
    out = []
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            out.append(line)
    return out


def wheel_requirements(path: Path):
    with zipfile.ZipFile(path) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        msg = email.parser.Parser().parsestr(z.read(meta).decode("utf-8", "replace"))
    return msg.get_all("Requires-Dist") or []


def target_env(python_version: str) -> dict:
    env = default_environment()
    env.update(python_version=".".join(python_version.split(".")[:2]), python_full_version=python_version + ".0"
               if python_version.count(".") == 1 else python_version, sys_platform="linux", platform_system="Linux",
               platform_machine="x86_64", os_name="posix", implementation_name="cpython",
               platform_python_implementation="CPython", extra="")
    return env


def download(pins, dest: Path, pyver: str):
    binary = [p for p in pins if canonicalize_name(Requirement(p).name) not in SDIST_ONLY]
    source = [p for p in pins if canonicalize_name(Requirement(p).name) in SDIST_ONLY]
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "--python-version",
           pyver, "--implementation", "cp", "-d", str(dest)]
    for p in PLATFORMS:
        cmd += ["--platform", p]
    subprocess.run(cmd + binary, check=True)
    for p in source:  # pure Python: a py3-none-any wheel built here serves any CPython 3
        subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(dest), p], check=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dest", default=".whl", help="the folder to fill and carry (default .whl, git-ignored)")
    ap.add_argument("--python-version", default="3.12", help="the GPU image's Python (3.12); 3.11 for a rehearsal here")
    ap.add_argument("--list", default=str(HERE / "gpu_wheels.txt"))
    ap.add_argument("--image", default=str(HERE / "gpu_image_packages.txt"), help="the image's distributions")
    ap.add_argument("--limit-mib", type=float, default=60.0)
    ap.add_argument("--check-venv", help="a venv built like the image: pip --no-index --dry-run there")
    ap.add_argument("--no-download", action="store_true", help="check the folder as it is")
    ap.add_argument("--image-requirements", metavar="FILE",
                    help="write the image's distributions that the carried wheels require, with their version "
                         "ranges (a requirements file): what a venv standing in for the image must hold")
    args = ap.parse_args(argv)
    if not re.fullmatch(r"3\.\d+", args.python_version):
        ap.error(f"--python-version must look like 3.12, got {args.python_version!r}")
    dest = Path(args.dest)
    dest.mkdir(parents=True, exist_ok=True)
    pins = read_list(Path(args.list))
    wanted = {canonicalize_name(Requirement(p).name): p for p in pins}
    image = {canonicalize_name(n) for n in read_list(Path(args.image))}
    if not args.no_download:
        download(pins, dest, args.python_version)
    # one file per wanted distribution; anything else (older versions, other Pythons) goes
    carried, problems = {}, []
    for f in sorted(dest.glob("*.whl")):
        name, version, _, tags = parse_wheel_filename(f.name)
        cname = canonicalize_name(name)
        pin = Requirement(wanted[cname]) if cname in wanted else None
        v = args.python_version.replace(".", "")
        py_ok = any(t.interpreter in ("py3", f"py{v}", f"cp{v}") or
                    (t.abi == "abi3" and t.interpreter.startswith("cp3") and int(t.interpreter[3:]) <= int(v[1:]))
                    for t in tags)
        if pin is None or not pin.specifier.contains(str(version), prereleases=True) or not py_ok:
            f.unlink()
            continue
        carried[cname] = (str(version), f)
    for cname, pin in wanted.items():
        if cname not in carried:
            problems.append(f"missing: no wheel for {pin} (Python {args.python_version})")
    env = target_env(args.python_version)
    not_image_extras, from_image = set(), {}
    for cname, (version, f) in carried.items():
        for line in wheel_requirements(f):
            req = Requirement(line)
            if req.marker is not None and not req.marker.evaluate(env):
                if cname == "nemo-toolkit" and req.marker.evaluate(dict(env, extra="asr")):
                    not_image_extras.add(canonicalize_name(req.name))
                continue
            rn = canonicalize_name(req.name)
            if rn in carried:
                if req.specifier and not req.specifier.contains(carried[rn][0], prereleases=True):
                    problems.append(f"{cname} {version} requires {line}; carried {rn} {carried[rn][0]}")
            elif rn not in image:
                problems.append(f"{cname} {version} requires {line}: neither carried nor in the image")
            else:
                from_image.setdefault(rn, set()).update(str(sp) for sp in req.specifier)
    if args.image_requirements:
        Path(args.image_requirements).write_text("".join(n + ",".join(sorted(sp)) + "\n"
                                                         for n, sp in sorted(from_image.items())))
    size = sum(f.stat().st_size for _, f in carried.values())
    mib = size / 2 ** 20
    if mib > args.limit_mib:
        problems.append(f"size: {mib:.1f} MiB is over --limit-mib {args.limit_mib:g}")
    if args.check_venv and not problems:
        py = Path(args.check_venv) / "bin" / "python"
        cmd = [str(py), "-m", "pip", "install", "--dry-run", "--no-index", "--find-links", str(dest)] + \
              [f"{n}=={v}" for n, (v, _) in sorted(carried.items())]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        tail = [ln for ln in (proc.stdout + proc.stderr).splitlines() if "is ignored" not in ln][-6:]
        print("\n".join(["pip --no-index --dry-run in " + args.check_venv + ":"] + ["  " + t for t in tail]))
        if proc.returncode != 0:
            problems.append(f"pip --no-index --dry-run failed in {args.check_venv} (exit {proc.returncode})")
    skipped = sorted(not_image_extras - set(carried) - image)
    if skipped:
        print(f"nemo_toolkit[asr] requirements not carried (the ASR model's step does not import them): "
              f"{' '.join(skipped)}")
    for p in problems:
        print("gpu_wheels: " + p, file=sys.stderr)
    print(f"{len(carried)} wheels for Python {args.python_version}, {mib:.1f} MiB ({size} bytes) in {dest}")
    if problems:
        return 1
    rel = os.path.relpath(dest.resolve(), Path.cwd())
    print(f"carry: {rel}   (the run tool: carry=[\"{rel}\"]; gpu_check.sh reads SWR_WHEELS, default .whl)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
