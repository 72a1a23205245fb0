"""Backend selection: PYFIT_BACKEND, the fallback with its reason, and the compiled ops in CI."""

import os
import subprocess
import sys

import pytest

import pyfit

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(code, **env):
    full = {**os.environ, "PYTHONPATH": ROOT, **env}
    return subprocess.run([sys.executable, "-c", code], env=full, capture_output=True, text=True, timeout=300)


@pytest.mark.skipif(os.environ.get("PYFIT_REQUIRE_CPP") != "1", reason="PYFIT_REQUIRE_CPP=1 is set by CI only")
def test_the_compiled_backend_is_in_use_when_required():
    assert pyfit.ops.backend() == "cpp", pyfit.ops.backend_reason()


def test_python_backend_can_be_forced():
    out = run("import pyfit; print(pyfit.ops.backend()); print(pyfit.ops.backend_reason())", PYFIT_BACKEND="python")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["python", "the reference ops were asked for (backend 'python')"]


def test_missing_extension_falls_back_with_one_warning_naming_the_reason():
    code = ("import warnings, torch, pyfit\n"
            "with warnings.catch_warnings(record=True) as seen:\n"
            "    warnings.simplefilter('always')\n"
            "    x = torch.rand(20); r = pyfit.fit('linear', x, 2 * x, epochs=3)\n"
            "    r = pyfit.fit('linear', x, 2 * x, epochs=3)\n"
            "print(r.backend)\n"
            "print(sum('reference ops' in str(w.message) for w in seen))\n"
            "print(pyfit.ops.backend_reason())\n")
    out = run(code, PYFIT_LIBRARY="/nonexistent/libpyfit_ops.so")
    assert out.returncode == 0, out.stderr
    backend, warnings_seen, reason = out.stdout.splitlines()
    assert backend == "python:fused-linear" and warnings_seen == "1"
    assert "PYFIT_LIBRARY=/nonexistent/libpyfit_ops.so could not be loaded" in reason


def test_required_cpp_backend_fails_clearly_when_missing():
    out = run("import pyfit; pyfit.ops.backend()", PYFIT_BACKEND="cpp", PYFIT_LIBRARY="/nonexistent/lib.so")
    assert out.returncode != 0
    assert "BackendUnavailableError: the compiled pyfit backend was required" in out.stderr


def test_unknown_backend_name_is_refused():
    with pytest.raises(ValueError, match="unknown pyfit backend 'fortran': expected one of auto, cpp, python"):
        pyfit.ops.set_backend("fortran")


def test_set_backend_switches_within_a_process():
    before = pyfit.ops.backend()
    try:
        assert pyfit.ops.set_backend("python") == "python"
        assert pyfit.fit("linear", [0.0, 1.0], [1.0, 3.0], epochs=2).backend == "python:fused-linear"
    finally:
        pyfit.ops.set_backend("auto")
    assert pyfit.ops.backend() == before
