"""Build of the compiled extension pyfit._C against the torch installed here.

Package metadata lives in pyproject.toml; this file only adds the extension. When
torch cannot be imported at build time, pyfit is built as a pure-Python package
(its ops then run on the pure-PyTorch reference) and a warning says so.
"""

import glob
import os
import shutil
import subprocess
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


def _parallel_jobs():
    """MAX_JOBS when the user set it, else one compile per CPU this process may run on.

    torch's BuildExtension hands MAX_JOBS to ninja; without ninja it compiles one file
    at a time, which is why ninja is a build requirement in pyproject.toml.
    """
    given = os.environ.get("MAX_JOBS", "")
    if given.isdigit() and int(given) > 0:
        return int(given)
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS and Windows have no affinity mask
        cpus = os.cpu_count() or 1
    os.environ["MAX_JOBS"] = str(cpus)
    return cpus


def _is_cuda_toolkit(path):
    return bool(path) and os.path.isfile(os.path.join(path, "include", "cuda_runtime.h"))


def _toolkit_of_nvcc(nvcc):
    """The toolkit that the nvcc on the PATH really runs, or None.

    torch guesses CUDA_HOME as the folder above nvcc's, which is wrong when nvcc is
    a wrapper script (e.g. /usr/local/bin/nvcc exec-ing the real one): the guess
    then has no CUDA headers. nvcc itself knows where it lives: a dry run prints
    its own bin folder as ``_HERE_``, wrapper or not.
    """
    try:
        result = subprocess.run([nvcc, "--dryrun", "-E", "-x", "cu", os.devnull],
                                capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    for line in (result.stdout + result.stderr).splitlines():
        if line.startswith("#$ _HERE_="):
            return os.path.dirname(os.path.normpath(line.split("=", 1)[1].strip()))
    return None


def _set_cuda_home():
    """Point CUDA_HOME at a toolkit with CUDA headers, before torch guesses one.

    An explicit CUDA_HOME or CUDA_PATH wins (and is checked); else the toolkit of
    the nvcc on the PATH, following symlinks and asking nvcc itself; else
    /usr/local/cuda. Returns a warning when no usable toolkit was found.
    """
    for variable in ("CUDA_HOME", "CUDA_PATH"):
        given = os.environ.get(variable)
        if given:
            if _is_cuda_toolkit(given):
                return None
            return (f"{variable}={given} has no include/cuda_runtime.h; set it to the CUDA "
                    "toolkit's folder (the one holding bin/nvcc and include/), e.g. "
                    "/usr/local/cuda")
    nvcc = shutil.which("nvcc")
    candidates = []
    if nvcc:
        candidates.append(os.path.dirname(os.path.dirname(os.path.realpath(nvcc))))
        candidates.append(_toolkit_of_nvcc(nvcc))
    candidates.append("/usr/local/cuda")
    for candidate in candidates:
        if _is_cuda_toolkit(candidate):
            os.environ["CUDA_HOME"] = candidate
            return None
    return ("no CUDA toolkit with include/cuda_runtime.h was found (nvcc on the PATH: "
            f"{nvcc}); set CUDA_HOME to the toolkit's folder, e.g. CUDA_HOME=/usr/local/cuda")


def _extensions():
    try:
        import torch
    except ImportError as error:
        _warn(
            f"torch is not importable at build time ({error}); building pyfit without its "
            "compiled ops, which will run on the slower pure-PyTorch reference. Install "
            "torch first, then reinstall pyfit to get them."
        )
        return [], {}
    toolkit_problem = None
    if torch.version.cuda is not None and os.environ.get("PYFIT_NO_CUDA") != "1":
        toolkit_problem = _set_cuda_home()  # before cpp_extension reads CUDA_HOME
    from torch.utils import cpp_extension

    cxx_omp, link_omp = _openmp_flags(torch)
    # -g0: no debug information (Python's own CFLAGS ask for -g), as torch's wheels and the
    # CMake build have none; writing it for torch's headers doubles each file's compile time
    cxx = ["-O3", *([] if sys.platform == "win32" else ["-g0"]), *cxx_omp]
    sources = sorted(glob.glob(os.path.join("csrc", "*.cpp")))
    # CUDA kernels are built when this torch was built with CUDA and a toolkit is
    # present; whether a GPU is visible right now does not matter.
    with_cuda = (torch.version.cuda is not None and toolkit_problem is None
                 and os.environ.get("PYFIT_NO_CUDA") != "1")
    if toolkit_problem is not None:
        _warn(f"torch has CUDA {torch.version.cuda}, but {toolkit_problem}. Building the CPU "
              "ops only; set PYFIT_NO_CUDA=1 to silence this.")
    kwargs = dict(
        name="pyfit._C",
        sources=sources,
        include_dirs=[os.path.join(ROOT, "csrc")],
        # a changed header rebuilds the extension (ninja then recompiles only the files that
        # include it); without this, setuptools calls a build newer than every .cpp up to date
        depends=sorted(glob.glob(os.path.join("csrc", "**", "*.h"), recursive=True)
                       + glob.glob(os.path.join("csrc", "**", "*.cuh"), recursive=True)),
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
    return [extension], {"build_ext": _announcing(cpp_extension.BuildExtension.with_options(use_ninja=True))}


def _announcing(build_ext):
    """torch's BuildExtension, saying what it compiles and with how many jobs before it starts."""

    class BuildExtension(build_ext):
        def build_extensions(self):
            jobs = _parallel_jobs()
            files = sum(len(extension.sources) for extension in self.extensions)
            # pip shows this only with -v; the README says what pip shows meanwhile
            print(f"pyfit: compiling {files} C++/CUDA files of pyfit._C, {jobs} at a time "
                  "(MAX_JOBS); the CPU build takes about a minute and a half on 2 cores",
                  file=sys.stderr, flush=True)
            super().build_extensions()

    return BuildExtension


ext_modules, cmdclass = _extensions()
setup(ext_modules=ext_modules, cmdclass=cmdclass)
