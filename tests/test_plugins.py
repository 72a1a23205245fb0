"""Plugins found through entry points: discovery, failures, clashes, laziness, and a real install."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import uuid
import warnings
from pathlib import Path

import pytest
import torch

import pyfit
from pyfit.registry import _make_registries

ROOT = Path(__file__).resolve().parents[1]
PLUGIN_PACKAGE = ROOT / "examples" / "plugin-package"

GOOD_PLUGIN = '''
import torch
from torch import nn

class Scaled(nn.Module):
    """y = s * x: one parameter."""
    def __init__(self, in_features, out_features=1):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.s = nn.Parameter(torch.zeros(()))
    def forward(self, X):
        return self.s * X

def quartic(pred, target):
    """mean fourth power of the residuals"""
    return ((pred - target) ** 4).mean()

class HalfSGD(torch.optim.SGD):
    """SGD at half the given learning rate."""
    def __init__(self, params, lr=0.01):
        super().__init__(params, lr=lr / 2)
'''


def make_distribution(where: Path, name: str, entry_points: dict, modules: dict | None = None) -> None:
    """Write an installed-looking distribution: modules plus NAME-1.0.dist-info with its entry points."""
    for module, source in (modules or {}).items():
        (where / f"{module}.py").write_text(textwrap.dedent(source))
    info = where / f"{name.replace('-', '_')}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    lines = []
    for group, points in entry_points.items():
        lines.append(f"[{group}]")
        lines += [f"{key} = {value}" for key, value in points.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")


@pytest.fixture
def site(tmp_path, monkeypatch):
    """A fresh directory on sys.path; the global registries are restored afterwards."""
    saved = [(r, dict(r._entries), r._plugins_loaded, list(r.failed_plugins))
             for r in (pyfit.MODELS, pyfit.LOSSES, pyfit.OPTIMIZERS, pyfit.SCHEDULERS)]
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("PYFIT_STRICT_PLUGINS", raising=False)
    before = set(sys.modules)
    yield tmp_path
    for module in set(sys.modules) - before:
        if module.startswith("pyfit_t_"):
            del sys.modules[module]
    for registry, entries, loaded, failed in saved:
        registry._entries, registry._plugins_loaded, registry.failed_plugins = entries, loaded, failed


def unique(prefix: str) -> str:
    """A module name no other test uses, so sys.modules caching cannot leak between tests."""
    return f"pyfit_t_{prefix}_{uuid.uuid4().hex[:8]}"


def fresh():
    """New registries reading the real entry-point groups, with the real kind checks."""
    return _make_registries()


def test_good_plugin_is_found_and_fits(site):
    mod = unique("good")
    make_distribution(site, "pyfit-test-good", {
        "pyfit.models": {"t_scaled": f"{mod}:Scaled"},
        "pyfit.losses": {"t_quartic": f"{mod}:quartic"},
        "pyfit.optimizers": {"t_half_sgd": f"{mod}:HalfSGD"},
    }, {mod: GOOD_PLUGIN})
    models, losses, optimizers, _ = fresh()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a good plugin loads without a word
        assert "t_scaled" in models.names()
    for registry, name in ((models, "t_scaled"), (losses, "t_quartic"), (optimizers, "t_half_sgd")):
        entry = registry.entry(name)
        assert entry.source == "plugin pyfit-test-good 1.0"
        assert entry.description
    x = torch.linspace(-1, 1, 20)
    result = pyfit.fit(models["t_scaled"], x, 3 * x, loss=losses["t_quartic"], optimizer=optimizers["t_half_sgd"],
                       lr=0.05, epochs=1000)
    assert type(result.model).__name__ == "Scaled"
    assert type(result.optimizer).__name__ == "HalfSGD" and result.optimizer.param_groups[0]["lr"] == 0.025
    assert abs(result.model.s.item() - 3.0) < 0.3  # a quartic flattens out near its minimum
    assert result.history["loss"][-1] < result.history["loss"][0]


@pytest.mark.parametrize("value, cause", [
    ("{missing}:Thing", "ModuleNotFoundError"),
    ("{mod}:NOT_A_MODEL", "expected a class or factory, got str"),
    ("{mod}:NotAModule", "expected a subclass of torch.nn.Module"),
    ("{mod}:Missing", "AttributeError"),
])
def test_broken_plugin_warns_and_spares_the_others(site, value, cause):
    mod, missing = unique("broken"), unique("missing")
    make_distribution(site, "pyfit-test-broken", {"pyfit.models": {"t_bad": value.format(mod=mod, missing=missing)}},
                      {mod: "NOT_A_MODEL = 'a string'\nclass NotAModule:\n    def __init__(self, in_features): pass\n"})
    good = unique("good")
    make_distribution(site, "pyfit-test-good", {"pyfit.models": {"t_scaled": f"{good}:Scaled"}}, {good: GOOD_PLUGIN})
    models = fresh()[0]
    with pytest.warns(RuntimeWarning) as caught:
        names = models.names()
    assert "t_scaled" in names and "t_bad" not in names
    messages = [str(w.message) for w in caught if "t_bad" in str(w.message)]
    assert len(messages) == 1, [str(w.message) for w in caught]
    message = messages[0]
    assert "'t_bad'" in message and value.format(mod=mod, missing=missing) in message
    assert "pyfit-test-broken 1.0" in message and cause in message
    failed = [f for f in models.failed_plugins if f.name == "t_bad"]
    assert len(failed) == 1 and failed[0].distribution == "pyfit-test-broken 1.0" and cause in failed[0].reason


def test_a_plugin_that_exits_at_import_is_reported_and_spares_the_built_ins(site):
    mod = unique("exits")
    make_distribution(site, "pyfit-test-exits", {"pyfit.losses": {"t_exits": f"{mod}:f"}},
                      {mod: "raise SystemExit(3)\n"})
    losses = pyfit.LOSSES
    losses._plugins_loaded = False  # the site fixture puts the registry back afterwards
    with pytest.warns(RuntimeWarning, match=r"'t_exits'.*pyfit-test-exits 1\.0.*SystemExit: 3"):
        names = losses.names()
    assert "mse" in names and "t_exits" not in names
    assert [f.name for f in losses.failed_plugins] == ["t_exits"]
    assert losses.entry("mse").source == "built-in"


def test_looking_up_a_built_in_imports_no_plugin(site):
    # a plugin whose import would hang (or exit) must not stall a fit that names only built-ins
    marker = site / "imported"
    mod = unique("slow")
    make_distribution(site, "pyfit-test-slow", {group: {"t_slow": f"{mod}:f"} for group in
                                                ("pyfit.models", "pyfit.losses", "pyfit.optimizers",
                                                 "pyfit.schedulers")},
                      {mod: f"open({str(marker)!r}, 'w').close()\nraise SystemExit('would hang here')\n"})
    for registry in (pyfit.MODELS, pyfit.LOSSES, pyfit.OPTIMIZERS, pyfit.SCHEDULERS):
        registry._plugins_loaded = False
    x = torch.linspace(0, 1, 20)
    result = pyfit.fit("linear", x, 2 * x, loss="mse", optimizer="sgd", scheduler="step", lr=0.1, epochs=5,
                       scheduler_kwargs={"step_size": 2})
    assert result.stop_reason == "completed"
    assert "mse" in pyfit.LOSSES and pyfit.OPTIMIZERS.entry_of(result.optimizer).name == "sgd"
    assert not marker.exists(), "a lookup of built-in names imported a plugin"
    with pytest.warns(RuntimeWarning, match="t_slow"):
        assert "t_slow" not in pyfit.LOSSES  # an unknown name does discover plugins
    assert marker.exists()


def test_strict_plugins_turns_a_broken_plugin_into_an_error(site, monkeypatch):
    make_distribution(site, "pyfit-test-broken", {"pyfit.losses": {"t_bad": f"{unique('missing')}:f"}})
    monkeypatch.setenv("PYFIT_STRICT_PLUGINS", "1")
    losses = fresh()[1]
    with pytest.raises(pyfit.PluginError, match=r"t_bad.*pyfit-test-broken 1\.0.*ModuleNotFoundError"):
        losses.names()
    # nothing half-loaded: the next lookup raises again rather than answering from a partial registry
    with pytest.raises(pyfit.PluginError, match="t_bad"):
        losses.names()


def test_a_plugin_never_replaces_a_built_in(site):
    mod = unique("clash")
    make_distribution(site, "pyfit-test-clash", {"pyfit.models": {"Linear": f"{mod}:Scaled"}}, {mod: GOOD_PLUGIN})
    models = fresh()[0]
    models.register("linear", pyfit.Linear)
    assert models.entry("linear").obj is pyfit.Linear  # answered without discovering plugins
    with pytest.warns(RuntimeWarning, match=r"'linear' from pyfit-test-clash 1\.0 .*clashes.*keeping the one from "
                                            r"built-in"):
        names = models.names()
    entry = models.entry("linear")
    assert "linear" in names and entry.obj is pyfit.Linear and entry.source == "built-in"


def test_between_two_plugins_the_first_distribution_by_name_wins(site):
    first, second = unique("aaa"), unique("zzz")
    # written in the "wrong" order, so the rule and not the directory order decides
    make_distribution(site, "pyfit-test-zzz", {"pyfit.losses": {"t_twin": f"{second}:quartic"}},
                      {second: GOOD_PLUGIN})
    make_distribution(site, "pyfit-test-aaa", {"pyfit.losses": {"t_twin": f"{first}:quartic"}},
                      {first: GOOD_PLUGIN})
    losses = fresh()[1]
    with pytest.warns(RuntimeWarning, match=r"'t_twin' from pyfit-test-zzz 1\.0 .*clashes.*"
                                            r"keeping the one from plugin pyfit-test-aaa 1\.0"):
        entry = losses.entry("t_twin")
    assert entry.source == "plugin pyfit-test-aaa 1.0" and entry.obj.__module__ == first


LAZY_SCRIPT = """
import importlib.metadata as metadata, os, sys
calls = []
original = metadata.entry_points
def spy(*args, **kwargs):  # torch reads its own group at import; pyfit's must wait
    group = kwargs.get("group")
    if group is None or group.startswith("pyfit"):
        calls.append(group)
    return original(*args, **kwargs)
metadata.entry_points = spy
import pyfit
marker, group = sys.argv[1], sys.argv[2]
assert not os.path.exists(marker), "import pyfit imported the plugin"
assert group not in calls, f"import pyfit looked up {calls}"
registry = {"pyfit.models": pyfit.MODELS, "pyfit.schedulers": pyfit.SCHEDULERS}[group]
assert not registry._plugins_loaded
assert "t_lazy" in registry  # the first lookup discovers it
assert group in calls and os.path.exists(marker)
print("lazy ok")
"""


def _check_lazy(tmp_path: Path, group: str, attr: str) -> None:
    marker = tmp_path / "imported"
    mod = unique("side_effect")
    make_distribution(tmp_path, "pyfit-test-lazy", {group: {"t_lazy": f"{mod}:{attr}"}},
                      {mod: f"open({str(marker)!r}, 'w').close()\n" + GOOD_PLUGIN
                       + "\ndef scheduler(optimizer, **kwargs):\n    return torch.optim.lr_scheduler.StepLR(optimizer, 1)\n"})
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), str(ROOT)]))
    done = subprocess.run([sys.executable, "-c", LAZY_SCRIPT, str(marker), group], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0 and "lazy ok" in done.stdout, done.stdout + done.stderr


def test_import_pyfit_does_not_discover_model_plugins(tmp_path):
    _check_lazy(tmp_path, "pyfit.models", "Scaled")


def test_import_pyfit_does_not_discover_scheduler_plugins(tmp_path):
    _check_lazy(tmp_path, "pyfit.schedulers", "scheduler")


# -- a real install --------------------------------------------------------------


@pytest.mark.slow
def test_installed_plugin_package_is_used_by_fit(installed_pyfit, tmp_path):
    # pyfit as the README installs it (shared with tests/test_build_pip.py: one compile)
    done = installed_pyfit.pip("install", "--no-deps", str(PLUGIN_PACKAGE))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    script = textwrap.dedent("""
        import warnings
        warnings.simplefilter("error", RuntimeWarning)  # a plugin that fails to load would warn
        warnings.filterwarnings("ignore", "pyfit is using its pure-PyTorch reference ops")
        import torch, pyfit
        for registry, name in ((pyfit.MODELS, "exp_decay"), (pyfit.LOSSES, "log_cosh"),
                               (pyfit.OPTIMIZERS, "sign_sgd")):
            source = registry.entry(name).source
            assert source == "plugin pyfit-example-plugin 0.1.0", (name, source)
        x = torch.linspace(0, 4, 50)
        y = 2.0 * torch.exp(-1.5 * x) + 0.3
        result = pyfit.fit("exp_decay", x, y, loss="log_cosh", optimizer="sign_sgd", lr=1e-3, epochs=2000)
        assert type(result.model).__name__ == "ExpDecay", type(result.model)
        assert type(result.optimizer).__name__ == "SignSGD", type(result.optimizer)
        assert "LogCosh" in repr(result.config) or result.config["loss"] == "log_cosh"
        a, k, c = (result.model.a.item(), result.model.k.item(), result.model.c.item())
        assert abs(a - 2.0) < 0.05 and abs(k - 1.5) < 0.05 and abs(c - 0.3) < 0.05, (a, k, c)
        print("plugins ok", result.backend, a, k, c)
    """)
    done = subprocess.run([str(installed_pyfit.python), "-c", script], capture_output=True, text=True, timeout=600,
                          cwd=tmp_path)
    assert done.returncode == 0 and "plugins ok" in done.stdout, done.stdout + done.stderr
