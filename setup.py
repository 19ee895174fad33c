"""Build of samplewise-rnnt and its extension samplewise_rnnt._C.

The CPU kernels are always built. The CUDA kernels are built too when torch is a CUDA build and nvcc
is found (no GPU is needed to compile). Environment variables:
  SWR_FORCE_CPU=1          build the CPU kernels only
  CUDA_HOME                the CUDA toolkit (default: /usr/local/cuda, else derived from nvcc)
  TORCH_CUDA_ARCH_LIST     GPU architectures (default without a visible GPU: "8.0;9.0;10.0+PTX",
                           i.e. A100, H100/H200, B200 and PTX for later GPUs; with one: the visible GPUs)
  SWR_PTXAS_VERBOSE=1      pass -Xptxas -v: ptxas prints registers, shared memory and spills per kernel
  MAX_JOBS                 parallel compile jobs (ninja)
  SWR_DEBUG=1              -O0 -g

torch is needed only to compile (build_ext, bdist_wheel, install, develop, dist_info): the extension is
built against the torch of the building environment, and the wheel's metadata pins that torch's minor
version (a torch of another minor version fails at import with an undefined symbol). Writing the sdist
(`python -m build --sdist`, `setup.py sdist`) and `egg_info` need no torch. Build without build isolation
(`pip install --no-build-isolation ...`), so that the build sees the environment's torch.
Building never edits a tracked file.
"""
import glob
import os
import re
import shutil
import sys

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))

# setup.py commands that compile the extension or write a wheel's metadata: these need torch. Anything
# else (sdist, egg_info, check, --version, ...) describes or packages the sources only.
_TORCH_COMMANDS = {"build", "build_ext", "bdist", "bdist_wheel", "bdist_egg", "install", "develop",
                   "editable_wheel", "dist_info", "test"}


def _read(*parts):
    with open(os.path.join(HERE, *parts), encoding="utf-8") as f:
        return f.read()


def _version():
    m = re.search(r'^__version__\s*=\s*"([^"]+)"', _read("plugin", "samplewise_rnnt", "__init__.py"), re.M)
    if m is None:
        raise RuntimeError("no __version__ in plugin/samplewise_rnnt/__init__.py")
    return m.group(1)


def _needs_torch(argv):
    return any(a in _TORCH_COMMANDS for a in argv[1:] if not a.startswith("-"))


def _import_torch():
    try:
        import torch
    except ImportError as e:  # torch missing, or a torch that does not load
        sys.exit(
            f"\nsamplewise-rnnt: building the extension needs PyTorch, and this Python cannot import torch\n"
            f"  ({sys.executable}: {e}).\n"
            f"The extension is compiled against the torch of the building environment, and the wheel pins\n"
            f"that torch's minor version. Install torch first, then build without build isolation (pip's\n"
            f"isolated build environment hides the installed torch):\n"
            f"    pip install torch\n"
            f"    pip install --no-build-isolation samplewise-rnnt     # or: pip install --no-build-isolation .\n")
    return torch


def _find_cuda_home():
    """CUDA_HOME if set; else the first toolkit that has nvcc and libcudart (a wrapper script at
    /usr/local/bin/nvcc makes torch guess CUDA_HOME=/usr/local, which then fails to link -lcudart)."""
    if os.environ.get("CUDA_HOME"):
        return os.environ["CUDA_HOME"]
    candidates = ["/usr/local/cuda"]
    nvcc = shutil.which("nvcc")
    if nvcc:
        candidates.append(os.path.dirname(os.path.dirname(os.path.realpath(nvcc))))
    for c in candidates:
        has_nvcc = os.path.exists(os.path.join(c, "bin", "nvcc"))
        has_rt = glob.glob(os.path.join(c, "lib64", "libcudart*")) or glob.glob(
            os.path.join(c, "targets", "*", "lib", "libcudart*"))
        if has_nvcc and has_rt:
            return c
    return None


def _want_cuda(torch):
    if os.environ.get("SWR_FORCE_CPU", "0") not in ("", "0"):
        return False, "SWR_FORCE_CPU is set"
    if torch.version.cuda is None:
        return False, "torch is a CPU-only build"
    if _find_cuda_home() is None:
        return False, "no CUDA toolkit (nvcc + libcudart) found"
    return True, ""


def extensions(torch):
    from torch.utils import cpp_extension

    use_cuda, why = _want_cuda(torch)
    debug = os.environ.get("SWR_DEBUG", "0") not in ("", "0")
    # -fno-trapping-math: the CPU row loops' selects (csrc/cpu/rows.h) may then be vectorised on AVX2 and SSE2 as
    # well as on AVX-512 (nothing here reads floating-point exception flags)
    cxx = ["-O0", "-g"] if debug else ["-O3", "-fno-trapping-math"]
    sources = ["csrc/binding.cpp", "csrc/cpu/rnnt_cpu.cpp"]
    if not use_cuda:
        print(f"samplewise_rnnt: building the CPU kernels only ({why})")
        return [cpp_extension.CppExtension("samplewise_rnnt._C", sources, extra_compile_args={"cxx": cxx})]
    cuda_home = _find_cuda_home()
    os.environ["CUDA_HOME"] = cuda_home
    cpp_extension.CUDA_HOME = cuda_home  # torch reads it at import time
    if not os.environ.get("TORCH_CUDA_ARCH_LIST") and not torch.cuda.is_available():
        os.environ["TORCH_CUDA_ARCH_LIST"] = "8.0;9.0;10.0+PTX"
    print(f"samplewise_rnnt: building CPU and CUDA kernels (CUDA_HOME={cuda_home}, "
          f"TORCH_CUDA_ARCH_LIST={os.environ.get('TORCH_CUDA_ARCH_LIST', '<visible GPUs>')})")
    nvcc = (["-O3", "-lineinfo"] if not debug else ["-G", "-g"]) + ["-DSWR_WITH_CUDA"]
    if os.environ.get("SWR_PTXAS_VERBOSE", "0") not in ("", "0"):
        nvcc += ["-Xptxas", "-v"]  # per kernel and arch: registers, spill stores/loads, shared memory
    return [cpp_extension.CUDAExtension(
        "samplewise_rnnt._C", sources + ["csrc/cuda/rnnt_cuda.cu"],
        define_macros=[("SWR_WITH_CUDA", None)],
        extra_compile_args={"cxx": cxx, "nvcc": nvcc})]


def torch_requirement(torch_version):
    """The torch requirement of a wheel built against `torch_version`: its minor version
    ("2.14.1+cu130" -> "torch>=2.14,<2.15")."""
    m = re.match(r"(\d+)\.(\d+)", torch_version)
    if m is None:
        raise RuntimeError(f"cannot read a version from torch.__version__ = {torch_version!r}")
    major, minor = int(m.group(1)), int(m.group(2))
    return f"torch>={major}.{minor},<{major}.{minor + 1}"


def _hook_pth():
    """(file name, contents) of the .pth file that arms the post-import hook (plugin/samplewise_rnnt_hook.py)."""
    import ast

    with open(os.path.join(HERE, "plugin", "samplewise_rnnt_hook.py")) as f:
        tree = ast.parse(f.read())
    # the two constants only (importing the module would arm the hook in this process)
    ns = {t.id: ast.literal_eval(node.value) for node in tree.body if isinstance(node, ast.Assign)
          for t in node.targets if isinstance(t, ast.Name) and t.id in ("PTH_NAME", "PTH_LINE")}
    return ns["PTH_NAME"], ns["PTH_LINE"]


class build_py_with_pth(build_py):
    """build_py that also writes samplewise_rnnt_hook.pth at the top of the build tree, hence at the top of
    site-packages in the wheel (and in `pip install .`, which installs a wheel)."""

    def run(self):
        super().run()
        name, line = _hook_pth()
        target = os.path.join(self.build_lib, name)
        self.mkpath(self.build_lib)
        with open(target, "w") as f:
            f.write(line)

    def get_outputs(self, include_bytecode=1):
        return super().get_outputs(include_bytecode) + [os.path.join(self.build_lib, _hook_pth()[0])]


if _needs_torch(sys.argv):
    _torch = _import_torch()
    from torch.utils.cpp_extension import BuildExtension

    build_options = dict(
        ext_modules=extensions(_torch),
        cmdclass={"build_ext": BuildExtension.with_options(use_ninja=True), "build_py": build_py_with_pth},
        install_requires=[torch_requirement(_torch.__version__)],
    )
else:
    # the sdist builds against whichever torch its installer has; the wheel built from it pins that one
    build_options = dict(install_requires=["torch>=2.1"], cmdclass={"build_py": build_py_with_pth})

setup(
    name="samplewise-rnnt",
    version=_version(),
    description="Sample-wise transducer (RNN-T) loss for PyTorch: joint, loss and gradients one sample at "
                "a time, with NeMo and ESPnet adapters",
    long_description=_read("README.md"),
    long_description_content_type="text/markdown",
    author="samplewise-rnnt developers",
    license_expression="Apache-2.0",  # PEP 639 (setuptools >= 77, pyproject.toml's build requirement)
    license_files=["LICENSE"],
    keywords=["rnnt", "rnn-t", "transducer", "loss", "speech recognition", "asr", "pytorch", "cuda",
              "memory", "nemo", "espnet"],
    classifiers=[
        "Development Status :: 3 - Alpha",
        "Intended Audience :: Developers",
        "Intended Audience :: Science/Research",
        "Operating System :: POSIX :: Linux",
        "Programming Language :: C++",
        "Programming Language :: Python :: 3",
        "Programming Language :: Python :: 3.11",
        "Programming Language :: Python :: 3.12",
        "Environment :: GPU :: NVIDIA CUDA",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
        "Topic :: Multimedia :: Sound/Audio :: Speech",
    ],
    package_dir={"": "plugin"},
    packages=find_packages("plugin"),
    # the post-import hook (zero-code activation in NeMo and ESPnet); build_py adds its .pth file
    py_modules=["samplewise_rnnt_hook"],
    python_requires=">=3.9",
    # ESPnet has no extra: `pip install espnet` beside torch 2.14 resolves to an older torch (README.md,
    # "Install beside your toolkit", gives the way that keeps the installed torch)
    extras_require={"nemo": ["nemo_toolkit[asr]>=3.0"]},
    zip_safe=False,
    **build_options,
)
