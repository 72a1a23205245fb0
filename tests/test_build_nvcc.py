"""The torch-free CUDA kernels compile with nvcc for sm_90 plus a PTX fallback, and
their host-side limits hold (no GPU needed)."""

import glob
import os
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
pytestmark = pytest.mark.slow
NVCC = shutil.which("nvcc") or ("/usr/local/cuda/bin/nvcc" if os.path.exists("/usr/local/cuda/bin/nvcc") else None)


@pytest.mark.skipif(NVCC is None, reason="nvcc is not installed")
@pytest.mark.parametrize("source", sorted(glob.glob(os.path.join(ROOT, "csrc", "cuda", "*.cu"))),
                         ids=os.path.basename)
def test_cuda_kernels_compile(source, tmp_path):
    result = subprocess.run(
        [NVCC, "-c", "-std=c++17", "-O3",
         "-gencode", "arch=compute_90,code=sm_90", "-gencode", "arch=compute_90,code=compute_90",
         source, "-o", str(tmp_path / "kernel.o")],
        capture_output=True, text=True)
    assert result.returncode == 0, f"nvcc failed on {source}:\n{result.stderr}"


@pytest.mark.skipif(NVCC is None, reason="nvcc is not installed")
def test_cuda_linear_limits_hold_without_a_gpu(tmp_path):
    """Bounded partial sums and the refusal of too many outputs are host code: they run here."""
    binary = tmp_path / "cuda_linear_limits"
    built = subprocess.run(
        [NVCC, "-std=c++17", "-O2", "-gencode", "arch=compute_90,code=sm_90",
         os.path.join(ROOT, "csrc", "tests", "cuda_linear_limits.cu"),
         os.path.join(ROOT, "csrc", "cuda", "linear.cu"), "-o", str(binary)],
        capture_output=True, text=True)
    assert built.returncode == 0, f"nvcc failed:\n{built.stderr}"
    ran = subprocess.run([str(binary)], capture_output=True, text=True)
    assert ran.returncode == 0 and ran.stdout.strip() == "ok", ran.stdout + ran.stderr
