"""PYFIT_JIT_BUILD=1: a pyfit without its compiled module builds the ops just in time with ninja."""

import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("ninja") is None and not os.path.exists(os.path.join(
    os.path.dirname(sys.executable), "ninja")), reason="ninja is not installed")
def test_missing_extension_is_compiled_just_in_time(tmp_path):
    # a checkout without any built module: the package and the C++ sources only
    shutil.copytree(os.path.join(ROOT, "pyfit"), tmp_path / "pyfit",
                    ignore=shutil.ignore_patterns("*.so", "__pycache__"))
    shutil.copytree(os.path.join(ROOT, "csrc"), tmp_path / "csrc")
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "PYFIT_JIT_BUILD": "1",
           "TORCH_EXTENSIONS_DIR": str(tmp_path / "torch_extensions"),
           "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")}
    env.pop("PYFIT_LIBRARY", None)
    # a pyfit installed in editable mode (as CI installs it) maps pyfit._C to its own
    # checkout's build through an import finder: without it, the copy has no compiled module
    code = ("import sys\n"
            "sys.meta_path[:] = [f for f in sys.meta_path if not getattr(f, '__module__', '').startswith('__editable__')]\n"
            "import torch, pyfit\n"
            "assert pyfit.__file__.startswith(%r), pyfit.__file__\n"
            "print(pyfit.ops.backend(), pyfit.ops.backend_reason())\n"
            "assert 'pyfit._C' not in sys.modules, sys.modules['pyfit._C']\n"
            "x = torch.rand(30); print(pyfit.fit('linear', x, 2 * x + 1, lr=0.5, epochs=2000).backend)\n"
            % str(tmp_path))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=900,
                         cwd=str(tmp_path))
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.splitlines() == ["cpp None", "cpp:fused-linear"], out.stdout + out.stderr
    assert list((tmp_path / "torch_extensions").glob("*/pyfit_jit_ops*.so")), "no library was compiled just in time"
