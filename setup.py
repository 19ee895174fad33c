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
Building never edits a tracked file.
"""
import glob
import os
import shutil

from setuptools import find_packages, setup

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


def _cmdclass():
    from torch.utils.cpp_extension import BuildExtension
    return {"build_ext": BuildExtension.with_options(use_ninja=True)}


setup(
    name="samplewise-rnnt",
    version="0.1.0",
    description="Sample-wise transducer (RNN-T) loss: joint, loss and gradients one sample at a time",
    long_description=open(os.path.join(HERE, "README.md")).read() if os.path.exists(os.path.join(HERE, "README.md")) else "",
    long_description_content_type="text/markdown",
    package_dir={"": "plugin"},
    packages=find_packages("plugin"),
    ext_modules=extensions(),
    cmdclass=_cmdclass(),
    python_requires=">=3.9",
    install_requires=["torch>=2.1"],
    extras_require={"nemo": ["nemo_toolkit[asr]>=2.0"], "espnet": ["espnet>=202402"]},
    zip_safe=False,
)
