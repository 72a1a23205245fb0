"""Build of the compiled extension pyfit._C against the torch installed here.

Package metadata lives in pyproject.toml; this file only adds the extension. When
torch cannot be imported at build time, pyfit is built as a pure-Python package
(its ops then run on the pure-PyTorch reference) and a warning says so.
"""

import glob
import os
import sys

from setuptools import setup

ROOT = os.path.dirname(os.path.abspath(__file__))


def _warn(message):
    bar = "=" * 78
    print(f"\n{bar}\nWARNING (pyfit): {message}\n{bar}\n", file=sys.stderr, flush=True)


def _openmp_flags(torch):
    """-fopenmp when torch's ATen parallel backend is OpenMP, so that at::parallel_for
    runs threads in pyfit's kernels as it does in torch's (libgomp resolves to the copy
    torch already loaded)."""
    if "ATen parallel backend: OpenMP" not in torch.__config__.parallel_info():
        return [], []
    if sys.platform == "darwin":
        return ["-Xpreprocessor", "-fopenmp"], ["-lomp"]
    if sys.platform == "win32":
        return ["/openmp"], []
    return ["-fopenmp"], ["-fopenmp"]


def _extensions():
    try:
        import torch
        from torch.utils import cpp_extension
    except ImportError as error:
        _warn(
            f"torch is not importable at build time ({error}); building pyfit without its "
            "compiled ops, which will run on the slower pure-PyTorch reference. Install "
            "torch first, then reinstall pyfit to get them."
        )
        return [], {}

    cxx_omp, link_omp = _openmp_flags(torch)
    cxx = ["-O3", *cxx_omp]
    sources = sorted(glob.glob(os.path.join("csrc", "*.cpp")))
    # CUDA kernels are built when this torch was built with CUDA and a toolkit is
    # present; whether a GPU is visible right now does not matter.
    with_cuda = torch.version.cuda is not None and cpp_extension.CUDA_HOME is not None
    if torch.version.cuda is not None and not with_cuda:
        _warn("torch has CUDA but no CUDA toolkit (CUDA_HOME) was found: building CPU ops only.")
    if os.environ.get("PYFIT_NO_CUDA") == "1":
        with_cuda = False
    kwargs = dict(
        name="pyfit._C",
        sources=sources,
        include_dirs=[os.path.join(ROOT, "csrc")],
        extra_link_args=link_omp,
        py_limited_api=False,
    )
    if with_cuda:
        kwargs["sources"] += sorted(glob.glob(os.path.join("csrc", "cuda", "*.cu")))
        kwargs["sources"] += sorted(glob.glob(os.path.join("csrc", "cuda", "*.cpp")))
        kwargs["extra_compile_args"] = {"cxx": cxx, "nvcc": ["-O3"]}
        extension = cpp_extension.CUDAExtension(**kwargs)
    else:
        kwargs["extra_compile_args"] = {"cxx": cxx}
        extension = cpp_extension.CppExtension(**kwargs)
    build_ext = cpp_extension.BuildExtension.with_options(use_ninja=True)
    return [extension], {"build_ext": build_ext}


ext_modules, cmdclass = _extensions()
setup(ext_modules=ext_modules, cmdclass=cmdclass)
