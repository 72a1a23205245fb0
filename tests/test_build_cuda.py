"""pyfit builds against a CUDA build of torch with nvcc, and every op gets a CUDA kernel.

In a virtual environment of its own (CI runs on a fresh machine), the test installs
the CUDA build of torch, builds pyfit's extension for one architecture (sm_90) with
the nvcc on the PATH, imports it and asks torch's dispatcher which kernels each op
has. Importing a CUDA build of torch and registering kernels needs no GPU, so this
runs on any machine with a CUDA toolkit; running the kernels is tests/test_ops_cuda.py's
job (benchmarks/gpu_check.sh).
"""

import os
import shutil
import subprocess
import venv

import pytest

TORCH = "torch==2.14.1"  # pinned: a CUDA 13.0 build, to match nvcc 13.0
OPS = ("mse_loss_fwd", "sgd_update_", "linear_fit_", "linear_sums")
NVCC = shutil.which("nvcc")

CHECK = f"""
import torch, pyfit.ops
assert torch.version.cuda, "torch " + torch.__version__ + " is not a CUDA build"
print("backend", pyfit.ops.backend(), pyfit.ops.backend_reason())
for op in {OPS!r}:
    keys = [k for k in ("CPU", "CUDA", "Meta")
            if torch._C._dispatch_has_kernel_for_dispatch_key("pyfit::" + op, k)]
    print("kernels", op, ",".join(keys))
"""


@pytest.mark.slow
@pytest.mark.skipif(NVCC is None, reason="nvcc is not on the PATH: no CUDA toolkit to build with")
def test_cuda_build_gives_every_op_a_cuda_kernel(tmp_path, clean_checkout):
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = str(env_dir / "bin" / "python")
    installed = subprocess.run([python, "-m", "pip", "install", "-q", TORCH, "numpy", "setuptools",
                                "wheel", "ninja"], capture_output=True, text=True, timeout=1800)
    if installed.returncode != 0:
        pytest.skip(f"{TORCH} (the CUDA build) could not be installed: {installed.stderr[-500:]}")

    # a copy of the sources, so the work tree's own (CPU) build stays as it is
    src = clean_checkout(tmp_path / "src")
    # CUDA_HOME is left to setup.py to find, as a user's build would
    env = {k: v for k, v in os.environ.items() if k not in ("PYFIT_NO_CUDA", "PYTHONPATH")}
    env.update(TORCH_CUDA_ARCH_LIST="9.0", PATH=f"{env_dir / 'bin'}{os.pathsep}{env['PATH']}")
    built = subprocess.run([python, "setup.py", "build_ext", "--inplace"], cwd=str(src), env=env,
                           capture_output=True, text=True, timeout=2400)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    assert "building the cpu ops only" not in built.stderr.lower(), built.stderr[-2000:]

    checked = subprocess.run([python, "-c", CHECK], cwd=str(src), capture_output=True, text=True,
                             env={**env, "PYFIT_BACKEND": "cpp"}, timeout=600)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    lines = checked.stdout.splitlines()
    assert lines[0] == "backend cpp None", checked.stdout
    assert sorted(lines[1:]) == sorted(f"kernels {op} CPU,CUDA,Meta" for op in OPS), checked.stdout
