"""The release artefacts: the sdist carries every source and header and builds; the wheel built from it
installs into a fresh venv, imports from outside the source tree and runs the README's API example.

Two module fixtures do the work, the way a user would, on a copy of the repository's files (`sdist_built`:
step 1; `built`: steps 2-4, so the sdist's checks run, and fail, on their own):
  1. the sdist, written with torch made unimportable (it must not need torch; `python -m build --sdist
     --no-isolation` when `build` is installed, else `setup.py sdist`);
  2. a throwaway venv (`python -m venv --without-pip`) that sees this environment's torch and pip through
     a .pth line (a plain path line: the .pth files of this environment, e.g. the source tree's dev
     .pth, are not processed there, so the package can only come from what is installed);
  3. in it, `pip wheel --no-build-isolation --no-deps <sdist>` (SWR_FORCE_CPU=1: CPU kernels only, about
     a minute on 2 cores), then `pip install --no-deps <that wheel>`: the two steps of
     `pip install --no-build-isolation --no-deps <sdist>`, split so the wheel can be inspected, with one
     compile instead of two;
  4. from a temporary directory, without PYTHONPATH: import, the README's API example, cuda_built().
Skipped (with the reason) only where no C++ compiler, no git checkout or no pip is found.
"""
from __future__ import annotations

import email.parser
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import time
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def _skip_reason():
    if shutil.which(os.environ.get("CXX", "c++")) is None:
        return "no C++ compiler (c++ or $CXX) to build the extension"
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        return "not a git checkout: the expected file list comes from git"
    try:
        import pip  # noqa: F401
    except ImportError:
        return "pip is not installed in this environment"
    return None


if _skip_reason():
    pytest.skip(_skip_reason(), allow_module_level=True)


def _git_files(*paths):
    """Files git tracks under `paths`, plus new files not ignored (so the test also runs before a commit)."""
    out = []
    for extra in ([], ["--others", "--exclude-standard"]):
        res = subprocess.run(["git", "ls-files", *extra, "--", *paths], cwd=ROOT, check=True,
                             capture_output=True, text=True)
        out += res.stdout.split()
    return sorted(set(p for p in out if (ROOT / p).is_file()))


def _env(**extra):
    """The environment of a user's shell: no PYTHONPATH, no path to the source tree."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(extra)
    return env


def _run(cmd, cwd, env, timeout=600):
    t0 = time.monotonic()
    res = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True,
                         timeout=timeout)
    took = time.monotonic() - t0
    print(f"[{took:5.1f} s] {' '.join(str(c) for c in cmd)}")
    return res


def _check(res, what):
    assert res.returncode == 0, f"{what} failed (rc {res.returncode}):\n{res.stdout[-4000:]}\n{res.stderr[-4000:]}"
    return res


@pytest.fixture(scope="module")
def sdist_built(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("packaging")

    # a copy of the repository's files, with what a developer's tree also holds after `make build`
    src = tmp / "src"
    for rel in _git_files("."):
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, src / rel)
    junk = ["plugin/samplewise_rnnt/_C.cpython-311-x86_64-linux-gnu.so",
            "plugin/samplewise_rnnt/__pycache__/ops.cpython-311.pyc", "csrc/cpu/rnnt_cpu.o"]
    for rel in junk:
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(b"\0")

    # torch made unimportable, for this process's children: `import torch` raises ImportError
    blocker = tmp / "no_torch"
    (blocker / "torch").mkdir(parents=True)
    (blocker / "torch" / "__init__.py").write_text('raise ImportError("torch is hidden by test_packaging")\n')
    no_torch = _env(PYTHONPATH=str(blocker))

    # 1. the sdist, without torch
    dist = tmp / "dist"
    try:  # the installed distribution, not a build/ folder that happens to be on sys.path
        importlib.metadata.version("build")
        sdist_cmd = [sys.executable, "-m", "build", "--sdist", "--no-isolation", "--outdir", dist, "."]
    except importlib.metadata.PackageNotFoundError:
        sdist_cmd = [sys.executable, "setup.py", "-q", "sdist", "--dist-dir", dist]
    _check(_run(sdist_cmd, src, no_torch), "writing the sdist without torch")
    (sdist,) = dist.glob("samplewise_rnnt-*.tar.gz")

    # the sdist's own setup.py, asked to build without torch: a message, not a traceback
    unpacked = tmp / "unpacked"
    with tarfile.open(sdist) as tf:
        tf.extractall(unpacked, filter="data")
    (sdist_root,) = unpacked.iterdir()
    no_torch_build = _run([sys.executable, "setup.py", "bdist_wheel"], sdist_root, no_torch)
    return dict(tmp=tmp, sdist=sdist, no_torch_build=no_torch_build)


@pytest.fixture(scope="module")
def built(sdist_built):
    tmp, sdist = sdist_built["tmp"], sdist_built["sdist"]
    t_start = time.monotonic()

    # 2. a throwaway venv that sees this environment's packages (torch, pip, ninja) but not the source tree
    venv = tmp / "venv"
    _check(_run([sys.executable, "-m", "venv", "--without-pip", venv], tmp, _env()), "python -m venv")
    vpy = venv / "bin" / "python"
    vsite = Path(_check(_run([vpy, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp,
                             _env()), "venv purelib").stdout.strip())
    (vsite / "outer_env.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    # ninja (torch's parallel compile) from this environment's bin; the venv's python first
    build_env = _env(SWR_FORCE_CPU="1", MAX_JOBS=os.environ.get("MAX_JOBS", "2"),
                     PATH=os.pathsep.join([str(venv / "bin"), os.path.dirname(sys.executable),
                                           os.environ.get("PATH", "")]))

    # 3. the wheel from the sdist, in the venv, then installed (no cache: a CPU-only wheel must not be
    # reused by a later `pip install` of the same sdist elsewhere)
    wheels = tmp / "wheels"
    t_wheel = time.monotonic()
    _check(_run([vpy, "-m", "pip", "wheel", "--no-build-isolation", "--no-deps", "--no-cache-dir",
                 "-w", wheels, sdist], tmp, build_env), "pip wheel <sdist> --no-build-isolation")
    wheel_s = time.monotonic() - t_wheel
    (wheel,) = wheels.glob("samplewise_rnnt-*.whl")
    _check(_run([vpy, "-m", "pip", "install", "--no-deps", "--no-cache-dir", "--no-index", wheel], tmp,
                build_env), "pip install <wheel>")

    # 4. import from outside the source tree and run the README's API example
    readme = (ROOT / "README.md").read_text()
    api = readme[readme.index("\n## API"):]
    example = re.search(r"```python\n(.*?)```", api, flags=re.S).group(1)
    (tmp / "readme_api_example.py").write_text(example)
    probe = (
        "import runpy, sys, samplewise_rnnt as swr\n"
        "print('module', swr.__file__)\n"
        "ns = runpy.run_path('readme_api_example.py')\n"
        "print('loss', float(ns['loss']))\n"
        "print('cuda_built', swr.cuda_built())\n")
    used = _run([vpy, "-c", probe], tmp, _env())
    print(f"venv, wheel and install: {time.monotonic() - t_start:.1f} s, of which the wheel build {wheel_s:.1f} s")
    return dict(tmp=tmp, sdist=sdist, wheel=wheel, vsite=vsite, used=used)


def _sdist_names(sdist):
    with tarfile.open(sdist) as tf:
        names = [m.name for m in tf.getmembers() if m.isfile()]
    prefix = names[0].split("/")[0] + "/"
    return sorted(n[len(prefix):] for n in names)


def _metadata(text):
    return email.parser.Parser().parsestr(text)


def test_sdist_carries_every_source_and_header(sdist_built):
    names = set(_sdist_names(sdist_built["sdist"]))
    expected = _git_files("csrc", "plugin/samplewise_rnnt") + ["LICENSE", "README.md", "setup.py",
                                                                "pyproject.toml", "MANIFEST.in",
                                                                "plugin/samplewise_rnnt_hook.py"]
    missing = [p for p in expected if p not in names]
    assert not missing, f"the sdist lacks {missing}"
    assert "csrc/core/rnnt_kernels.h" in names and "csrc/core/rnnt_math.h" in names


def test_sdist_leaves_out_what_needs_the_repository(sdist_built):
    names = _sdist_names(sdist_built["sdist"])
    left_in = [n for n in names if n.split("/")[0] in ("tests", "recipes", "requirements", ".ci")
               or n in ("Makefile", ".gitignore")]
    assert not left_in, f"the sdist carries files that work only in the repository: {left_in}"
    build_outputs = [n for n in names if re.search(r"(\.so|\.o|\.pyc)$|__pycache__", n)]
    assert not build_outputs, f"the sdist carries build outputs: {build_outputs}"


def test_sdist_metadata(sdist_built):
    with tarfile.open(sdist_built["sdist"]) as tf:
        member = next(m for m in tf.getmembers() if m.name.count("/") == 1 and m.name.endswith("/PKG-INFO"))
        meta = _metadata(tf.extractfile(member).read().decode())
    assert meta["Name"] == "samplewise-rnnt"
    assert meta["License-Expression"] == "Apache-2.0"
    assert meta["Author"] == "samplewise-rnnt developers"
    # the sdist builds against its installer's torch: no minor-version pin here
    assert "torch>=2.1" in meta.get_all("Requires-Dist")


def test_building_without_torch_says_what_to_do(sdist_built):
    res = sdist_built["no_torch_build"]
    assert res.returncode != 0
    assert "Traceback" not in res.stderr, res.stderr[-3000:]
    assert "needs PyTorch" in res.stderr and "pip install --no-build-isolation" in res.stderr, res.stderr[-3000:]


def test_wheel_pins_the_torch_minor_it_was_built_against(built):
    import torch
    from packaging.requirements import Requirement
    from packaging.version import Version

    with zipfile.ZipFile(built["wheel"]) as zf:
        names = zf.namelist()
        meta = _metadata(zf.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode())
    assert meta["License-Expression"] == "Apache-2.0"
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    reqs = [Requirement(r) for r in meta.get_all("Requires-Dist")]
    (pin,) = [r for r in reqs if r.name == "torch"]
    major, minor = Version(torch.__version__).release[:2]
    assert pin.specifier.contains(f"{major}.{minor}.0") and pin.specifier.contains(f"{major}.{minor}.99")
    assert not pin.specifier.contains(f"{major}.{minor + 1}.0") and not pin.specifier.contains(f"{major}.{minor - 1}.99")
    # no extra may pull in a package that replaces torch (ESPnet's release pins an older one)
    assert not [r for r in reqs if r.name.lower() == "espnet"], reqs
    # the package, its compiled extension, nothing of the repository's tests or recipes
    assert any(re.fullmatch(r"samplewise_rnnt/_C\.[^/]*\.so", n) for n in names), names
    expected = ["samplewise_rnnt/" + p.split("plugin/samplewise_rnnt/", 1)[1]
                for p in _git_files("plugin/samplewise_rnnt") if p.endswith(".py")]
    assert not [p for p in expected if p not in names]
    assert not [n for n in names if n.startswith(("tests/", "recipes/"))]
    # the post-import hook and the .pth file that arms it, at the top of site-packages
    assert "samplewise_rnnt_hook.py" in names and "samplewise_rnnt_hook.pth" in names, names


def test_installed_wheel_runs_the_readme_example_outside_the_tree(built):
    res = _check(built["used"], "the README's API example in the fresh venv")
    out = dict(line.split(" ", 1) for line in res.stdout.strip().splitlines())
    assert Path(out["module"]).resolve().is_relative_to(built["vsite"].resolve()), out["module"]
    assert float(out["loss"]) == float(out["loss"])  # a number, not NaN
    assert out["cuda_built"] == "False"  # built with SWR_FORCE_CPU=1
