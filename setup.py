"""Build of samplewise-rnnt and its extension samplewise_rnnt._C.

The CPU kernels are always built. The CUDA kernels are built too when torch is a CUDA build and nvcc
is found (no GPU is needed to compile). Environment variables:
  SWR_FORCE_CPU=1          build the CPU kernels only
  CUDA_HOME                the CUDA toolkit (default: /usr/local/cuda, else derived from nvcc)
  TORCH_CUDA_ARCH_LIST     GPU architectures (default without a visible GPU: "8.0;9.0+PTX")
  MAX_JOBS                 parallel compile jobs (ninja)
  SWR_DEBUG=1              -O0 -g
Building never edits a tracked file.
"""
import glob
import os
import shutil

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))


def _find_cuda_home():
    """CUDA_HOME if set; else the first toolkit that has nvcc and libcudart (ENVIRONMENT.md: a wrapper
    at /usr/local/bin/nvcc makes torch guess /usr/local, which then fails to link)."""
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


def extensions():
    import torch
    from torch.utils import cpp_extension

    use_cuda, why = _want_cuda(torch)
    debug = os.environ.get("SWR_DEBUG", "0") not in ("", "0")
    cxx = ["-O0", "-g"] if debug else ["-O3"]
    sources = ["csrc/binding.cpp", "csrc/cpu/rnnt_cpu.cpp"]
    if not use_cuda:
        print(f"samplewise_rnnt: building the CPU kernels only ({why})")
        return [cpp_extension.CppExtension("samplewise_rnnt._C", sources, extra_compile_args={"cxx": cxx})]
    cuda_home = _find_cuda_home()
    os.environ["CUDA_HOME"] = cuda_home
    cpp_extension.CUDA_HOME = cuda_home  # torch reads it at import time
    if not os.environ.get("TORCH_CUDA_ARCH_LIST") and not torch.cuda.is_available():
        os.environ["TORCH_CUDA_ARCH_LIST"] = "8.0;9.0+PTX"
    print(f"samplewise_rnnt: building CPU and CUDA kernels (CUDA_HOME={cuda_home}, "
          f"TORCH_CUDA_ARCH_LIST={os.environ.get('TORCH_CUDA_ARCH_LIST', '<visible GPUs>')})")
    nvcc = (["-O3", "-lineinfo"] if not debug else ["-G", "-g"]) + ["-DSWR_WITH_CUDA"]
    return [cpp_extension.CUDAExtension(
        "samplewise_rnnt._C", sources + ["csrc/cuda/rnnt_cuda.cu"],
        define_macros=[("SWR_WITH_CUDA", None)],
        extra_compile_args={"cxx": cxx, "nvcc": nvcc})]


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


def _cmdclass():
    from torch.utils.cpp_extension import BuildExtension
    return {"build_ext": BuildExtension.with_options(use_ninja=True), "build_py": build_py_with_pth}


setup(
    name="samplewise-rnnt",
    version="0.1.0",
    description="Sample-wise transducer (RNN-T) loss: joint, loss and gradients one sample at a time",
    long_description=open(os.path.join(HERE, "README.md")).read() if os.path.exists(os.path.join(HERE, "README.md")) else "",
    long_description_content_type="text/markdown",
    package_dir={"": "plugin"},
    packages=find_packages("plugin"),
    # the post-import hook (zero-code activation in NeMo and ESPnet); build_py adds its .pth file
    py_modules=["samplewise_rnnt_hook"],
    ext_modules=extensions(),
    cmdclass=_cmdclass(),
    python_requires=">=3.9",
    install_requires=["torch>=2.1"],
    extras_require={"nemo": ["nemo_toolkit[asr]>=2.0"], "espnet": ["espnet>=202402"]},
    zip_safe=False,
)
