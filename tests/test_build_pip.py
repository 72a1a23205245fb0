"""`pip install .` into a fresh venv compiles pyfit._C against that venv's torch."""

import os
import shutil
import subprocess
import sys
import venv

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TORCH = "torch==2.13.0"  # pinned: the local CPU wheel; an unpinned torch pulls gigabytes


@pytest.mark.slow
def test_pip_install_gives_cpp_backend(tmp_path):
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = str(env_dir / "bin" / "python")
    run = lambda *cmd: subprocess.run([python, "-m", *cmd], capture_output=True, text=True,
                                      cwd=str(tmp_path))
    installed = run("pip", "install", "-q", TORCH, "numpy")
    assert installed.returncode == 0, installed.stderr
    # the work tree may hold an in-place build; copy it without one
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns("build", "*.so", "*.egg-info",
                                                             ".git", "__pycache__", ".hypothesis"))
    built = run("pip", "install", "-q", "--no-deps", str(src))
    assert built.returncode == 0, built.stdout + built.stderr
    check = subprocess.run([python, "-c", "import pyfit.ops as o; print(o.backend(), o.backend_reason())"],
                           capture_output=True, text=True, cwd=str(tmp_path))
    assert check.stdout.split()[:1] == ["cpp"], check.stdout + check.stderr
