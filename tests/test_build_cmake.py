"""The CMake build: the ops library (no libtorch_python), the C++ kernel tests under
ctest, and loading the library into pyfit through PYFIT_LIBRARY."""

import os
import shutil
import subprocess
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake is not installed")
def test_cmake_build_ctest_and_load(tmp_path):
    build = tmp_path / "build"
    run = lambda *cmd: subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    configure = run("cmake", "-S", ROOT, "-B", str(build),
                    f"-DCMAKE_PREFIX_PATH={torch.utils.cmake_prefix_path}")
    assert configure.returncode == 0, configure.stdout + configure.stderr
    compiled = run("cmake", "--build", str(build), f"-j{os.cpu_count() or 1}")
    assert compiled.returncode == 0, compiled.stdout + compiled.stderr
    tested = run("ctest", "--test-dir", str(build), "--output-on-failure")
    assert tested.returncode == 0, tested.stdout + tested.stderr
    library = build / "libpyfit_ops.so"
    needed = run("ldd", str(library)).stdout
    assert "libtorch_python" not in needed, needed
    check = subprocess.run(
        [sys.executable, "-c", "import pyfit.ops as o; print(o.backend())"],
        capture_output=True, text=True, cwd=ROOT,
        env={**os.environ, "PYFIT_LIBRARY": str(library), "PYTHONPATH": ROOT})
    assert check.stdout.strip() == "cpp", check.stdout + check.stderr
