"""`pyfit --help`, `--version` and usage errors answer without importing torch.

Each case runs ``python -m pyfit`` in a fresh interpreter (through a wrapper that
then reports which heavy modules were imported), since the test process has long
imported torch. No timings here: benchmarks/startup.py measures them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
HEAVY = ("torch", "numpy", "matplotlib", "sklearn")

# runs `python -m pyfit ARGS...`, then prints the exit status and the heavy modules imported
RUN_PYFIT = f"""
import json, runpy, sys
sys.argv = ["pyfit", *sys.argv[1:]]
try:
    runpy.run_module("pyfit", run_name="__main__", alter_sys=True)
    status = 0
except SystemExit as exit_:
    status = exit_.code
print(json.dumps({{"status": status, "imported": [m for m in {HEAVY!r} if m in sys.modules]}}), file=sys.stderr)
"""

COMMANDS = ("demo", "fit", "lr-find", "predict", "compare", "plugins", "info")


def run_pyfit(*args: str, cwd: str = ROOT):
    done = subprocess.run([sys.executable, "-c", RUN_PYFIT, *args], cwd=cwd, env=ENV, capture_output=True,
                          text=True, timeout=120)
    *messages, report = done.stderr.strip().splitlines() or [""]
    return done.stdout, "\n".join(messages), json.loads(report)


@pytest.mark.parametrize("args", [["--help"], ["--version"]] + [[command, "--help"] for command in COMMANDS],
                         ids=lambda args: " ".join(args))
def test_help_and_version_import_no_torch(args):
    out, err, report = run_pyfit(*args)
    assert report == {"status": 0, "imported": []}, err
    assert ("pyfit 0." in out) if args == ["--version"] else out.startswith("usage: pyfit")


@pytest.mark.parametrize("args, message", [
    (["fit", "--epochs", "0", "x.csv"], "fit needs --target COLUMN"),
    (["fit", "x.csv", "--target", "y", "--epochs", "ten"], "argument --epochs: invalid int value: 'ten'"),
    (["fit", "x.csv", "--target", "y", "--model-arg", "degree"], "--model-arg takes KEY=VALUE, got 'degree'"),
    (["compare", "x.csv", "--target", "y", "--lr", "1", "2", "3"], "--lr takes one value or one per optimizer"),
    (["fit"], "the following arguments are required: data"),
    (["fitt", "x.csv"], "invalid choice: 'fitt'"),
], ids=["no-target", "epochs-not-int", "model-arg-no-value", "compare-lr-count", "no-data", "unknown-command"])
def test_usage_errors_import_no_torch(args, message, tmp_path):
    out, err, report = run_pyfit(*args, cwd=str(tmp_path))
    assert report["status"] == 2 and message in err and out == "", err
    assert "torch" not in report["imported"] and "matplotlib" not in report["imported"], report


def test_a_check_on_a_flag_value_is_still_a_usage_error(tmp_path):
    # checked before any data is read (x.csv does not exist); this check may import torch
    out, err, report = run_pyfit("fit", "x.csv", "--target", "y", "--epochs", "0", cwd=str(tmp_path))
    assert report["status"] == 2 and "epochs must be an integer >= 1, got 0" in err, err


LAZY_PACKAGE = """
import sys
import pyfit
assert "torch" not in sys.modules, "import pyfit imported torch"
import pyfit.losses  # a module that imports `from . import ops` before any public name is used
assert set(pyfit.__all__) <= set(dir(pyfit)), set(pyfit.__all__) - set(dir(pyfit))
from pyfit.fit import FitResult  # the module first: pyfit.fit stays the function
from pyfit.compare import Comparison
import pyfit.predict
assert pyfit.fit is sys.modules["pyfit.fit"].fit, pyfit.fit
assert pyfit.compare is sys.modules["pyfit.compare"].compare, pyfit.compare
assert pyfit.predict is sys.modules["pyfit.predict"].predict, pyfit.predict
from pyfit import Linear, MODELS
assert "linear" in MODELS and "adam" in pyfit.OPTIMIZERS and "mse" in pyfit.LOSSES
missing = [name for name in pyfit.__all__ if name != "Regressor" and not hasattr(pyfit, name)]
assert not missing, missing
assert pyfit.ops.backend() in ("cpp", "python")
result = pyfit.fit("linear", [[0.0], [1.0], [2.0]], [1.0, 3.0, 5.0], lr=0.1, epochs=2000, seed=0)
assert abs(result.model.weight.item() - 2) < 1e-3 and 0 < result.seconds
assert "sklearn" not in sys.modules
print("lazy ok")
"""


def run_python(code: str, expected: str) -> None:
    """Run ``code`` in a fresh interpreter; it must succeed and print ``expected``."""
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=ENV, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0 and expected in done.stdout, done.stdout + done.stderr


def test_public_names_import_on_first_use_and_keep_their_meaning():
    run_python(LAZY_PACKAGE, "lazy ok")


def test_unknown_attribute_is_an_attribute_error():
    import pyfit

    with pytest.raises(AttributeError, match="no attribute 'fitt'"):
        pyfit.fitt  # noqa: B018


# A fused fit never steps a torch optimizer, so it never needs torch's compiler stack,
# which torch would otherwise import the first time an optimizer is built (over a second).
NO_COMPILER = """
import sys, torch, pyfit
names = ("sgd", "adam", "adagrad", "lbfgs")
built = {name: pyfit.build_optimizer(name, [torch.nn.Parameter(torch.ones(3))], lr=0.5) for name in names}
result = pyfit.fit("linear", [[0.0], [1.0], [2.0]], [1.0, 3.0, 5.0], lr=0.1, epochs=500, seed=0)
assert "fused" in result.backend, result.backend
assert "torch._dynamo" not in sys.modules, "building an optimizer imported torch's compiler"
# torch's own classes (which import the compiler) build the same groups
strip = lambda opt: [{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups]
for name, reference in zip(names, (torch.optim.SGD, torch.optim.Adam, torch.optim.Adagrad, torch.optim.LBFGS)):
    plain = reference([torch.nn.Parameter(torch.ones(3))], lr=0.5)
    assert strip(built[name]) == strip(plain), (name, built[name].param_groups)
    assert built[name].state_dict()["state"].keys() == plain.state_dict()["state"].keys(), name
# once the compiler is loaded, torch's own wrapper runs again, and groups still add alike
assert "torch._dynamo" in sys.modules
opt = pyfit.SGD([torch.nn.Parameter(torch.ones(2))], lr=0.1)
opt.add_param_group({"params": [torch.nn.Parameter(torch.ones(2))], "lr": 0.2})
assert [g["lr"] for g in opt.param_groups] == [0.1, 0.2]
print("no compiler ok")
"""


def test_building_an_optimizer_and_a_fused_fit_import_no_compiler():
    run_python(NO_COMPILER, "no compiler ok")


def test_an_autograd_fit_loads_the_compiler_before_its_clock_starts():
    # torch.optim's first step imports the compiler; fit imports it first, outside FitResult.seconds
    run_python("import sys, pyfit; r = pyfit.fit('mlp', [[0.0], [1.0]], [0.0, 1.0], epochs=3, seed=0); "
               "assert 'torch._dynamo' in sys.modules and 'autograd' in r.backend, r.backend; print('ok')", "ok")
