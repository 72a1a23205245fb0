"""The README's set-up in a fresh venv: `pip install .` compiles pyfit._C against that
venv's torch, in parallel and saying so, the installed `pyfit demo` runs, and adding an
extra afterwards does not compile again."""

import glob
import os
import subprocess

import pytest

pytestmark = pytest.mark.slow


def test_pip_install_compiles_the_extension_and_says_so(installed_pyfit):
    # shown by `pip install -v .`; plain pip shows "Building wheel for pyfit" meanwhile
    assert "pyfit: compiling" in installed_pyfit.install_output, installed_pyfit.install_output[-3000:]
    check = subprocess.run([str(installed_pyfit.python), "-c", "import pyfit.ops as o; print(o.backend(), o.backend_reason())"],
                           capture_output=True, text=True, cwd=str(installed_pyfit.root))
    assert check.stdout.split()[:1] == ["cpp"], check.stdout + check.stderr


def test_installed_demo_runs_on_the_compiled_ops(installed_pyfit, tmp_path):
    demo = subprocess.run([installed_pyfit.script("pyfit"), "demo", "--output", str(tmp_path / "demo")],
                          capture_output=True, text=True, cwd=str(tmp_path), timeout=300)
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "w = 3.0000, b = 0.8000" in demo.stdout and "cpp:fused-linear" in demo.stdout
    for name in ("loss.png", "fit.png"):
        assert (tmp_path / "demo" / name).read_bytes().startswith(b"\x89PNG")


def test_adding_an_extra_after_install_does_not_compile_again(installed_pyfit):
    objects = glob.glob(str(installed_pyfit.source / "build" / "temp.*" / "**" / "*.o"), recursive=True)
    assert objects, "pip install . left no object files in the source's build/ folder"
    compiled_at = {path: os.stat(path).st_mtime_ns for path in objects}
    done = installed_pyfit.pip("install", "-v", f"{installed_pyfit.source}[sklearn]")
    installed_pyfit.skip_without_index(done, "scikit-learn")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    recompiled = [path for path in objects if os.stat(path).st_mtime_ns != compiled_at[path]]
    assert not recompiled, f"pip install '.[sklearn]' compiled again: {recompiled}"
    check = subprocess.run([str(installed_pyfit.python), "-c",
                            "import sklearn, pyfit, pyfit.ops as o; print(o.backend(), type(pyfit.Regressor()).__name__)"],
                           capture_output=True, text=True, cwd=str(installed_pyfit.root))
    assert check.stdout.split() == ["cpp", "Regressor"], check.stdout + check.stderr
