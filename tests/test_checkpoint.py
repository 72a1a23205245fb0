"""pyfit.checkpoint: save, load, exact resume, atomic writes and refusals of bad files."""

import os
import pickle
import re
import signal
import stat

import pytest
import torch

import pyfit
from pyfit.checkpoint import read_checkpoint

PLAIN = (type(None), bool, int, float, str, torch.Tensor)


def _data(n=40):
    g = torch.Generator().manual_seed(1)
    X = torch.rand(n, 2, generator=g)
    return X, X @ torch.tensor([2.0, -1.0]) + 0.5 + 0.1 * torch.randn(n, generator=g)


SETTINGS = dict(loss="mse", optimizer="sgd", lr=0.05, momentum=0.9, batch_size=7, shuffle=True, seed=3,
                scheduler="step", scheduler_kwargs={"step_size": 4, "gamma": 0.5})


@pytest.mark.parametrize("model, extra, path_name", [
    ("linear", {}, "fused-linear"),
    ("mlp", {"model_kwargs": {"hidden": [5]}}, "autograd"),
])
def test_resume_is_bit_for_bit(tmp_path, model, extra, path_name):
    X, y = _data()
    whole = pyfit.fit(model, X, y, epochs=20, **SETTINGS, **extra)
    path = tmp_path / "fit.pt"
    first = pyfit.fit(model, X, y, epochs=10, checkpoint=str(path), **SETTINGS, **extra)
    assert first.epochs == 10 and path_name in first.backend
    torch.manual_seed(12345)  # the global RNG is part of the checkpoint: moving it here must not matter
    resumed = pyfit.fit(model, X, y, epochs=20, resume_from=str(path), **SETTINGS, **extra)
    assert path_name in resumed.backend
    for a, b in zip(whole.model.parameters(), resumed.model.parameters()):
        assert torch.equal(a, b)
    assert resumed.history == whole.history and resumed.epochs == 20


def test_resume_with_model_none_rebuilds_the_saved_model(tmp_path):
    X, y = _data()
    whole = pyfit.fit("linear", X.double(), y.double(), epochs=12, **SETTINGS)
    pyfit.fit("linear", X.double(), y.double(), epochs=5, checkpoint=str(tmp_path / "a.pt"), **SETTINGS)
    resumed = pyfit.fit(None, X.double(), y.double(), epochs=12, resume_from=str(tmp_path / "a.pt"), **SETTINGS)
    assert resumed.model.weight.dtype == torch.float64
    assert torch.equal(resumed.model.weight, whole.model.weight)


def test_checkpoint_every_saves_on_its_multiples(tmp_path, monkeypatch):
    import sys

    fit_module = sys.modules["pyfit.fit"]

    saved_epochs = []
    real = fit_module.save_checkpoint
    monkeypatch.setattr(fit_module, "save_checkpoint",
                        lambda path, result: (saved_epochs.append(result.epochs), real(path, result))[1])
    X, y = _data()
    result = pyfit.fit("linear", X, y, epochs=20, checkpoint=str(tmp_path / "c.pt"), checkpoint_every=7, lr=0.1)
    assert "fused-linear" in result.backend
    assert saved_epochs == [7, 14, 20]
    assert pyfit.load_checkpoint(tmp_path / "c.pt").epoch == 20


def _walk(value, where="checkpoint"):
    if isinstance(value, dict):
        for key, item in value.items():
            assert isinstance(key, (str, int)), f"{where}: key {key!r}"
            _walk(item, f"{where}.{key}")
    elif isinstance(value, list):
        for k, item in enumerate(value):
            _walk(item, f"{where}[{k}]")
    else:
        assert isinstance(value, PLAIN + (tuple,)), f"{where} is a {type(value).__name__}"


def test_file_loads_with_weights_only_and_holds_everything(tmp_path):
    X, y = _data()
    result = pyfit.fit("polynomial", X[:, :1], y, epochs=6, model_kwargs={"degree": 3}, **SETTINGS)
    path = pyfit.save_checkpoint(tmp_path / "p.pt", result, metadata={"features": ["x"]})
    raw = torch.load(path, weights_only=True)
    _walk(raw)
    assert raw["model"]["name"] == "polynomial" and raw["model"]["args"]["degree"] == 3
    assert raw["optimizer"]["name"] == "sgd" and raw["scheduler"]["name"] == "step"
    assert raw["config"]["batch_size"] == 7 and raw["config"]["shuffle"] is True and raw["config"]["seed"] == 3
    assert isinstance(raw["rng"]["fit"], torch.Tensor) and isinstance(raw["rng"]["torch"], torch.Tensor)
    assert raw["versions"]["torch"] == str(torch.__version__) and raw["plugins"] == {}

    loaded = pyfit.load_checkpoint(path)
    assert loaded.epoch == 6 and loaded.history == result.history and loaded.metadata == {"features": ["x"]}
    assert torch.equal(pyfit.predict(loaded.model, X[:, :1]), result.predict(X[:, :1]))
    assert loaded.optimizer.param_groups[0]["lr"] == result.optimizer.param_groups[0]["lr"]
    assert loaded.scheduler.last_epoch == result.scheduler.last_epoch
    assert loaded.config["loss"] == "mse"


def test_crash_mid_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    X, y = _data()
    path = tmp_path / "fit.pt"
    pyfit.save_checkpoint(path, pyfit.fit("linear", X, y, epochs=3, seed=0))
    before = path.read_bytes()

    def crash(obj, handle, *args, **kwargs):
        handle.write(b"PK\x03\x04 half a zip")  # some bytes reach the disk, then the process "dies"
        raise OSError("simulated crash mid-write")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError, match="simulated crash"):
        pyfit.save_checkpoint(path, pyfit.fit("linear", X, y, epochs=5, seed=0))
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["fit.pt"]  # no temp file left behind
    monkeypatch.undo()
    assert pyfit.load_checkpoint(path).epoch == 3


def test_truncated_and_foreign_files_get_a_clear_error(tmp_path):
    X, y = _data()
    good = pyfit.save_checkpoint(tmp_path / "good.pt", pyfit.fit("linear", X, y, epochs=2))
    data = open(good, "rb").read()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    (tmp_path / "text.pt").write_text("hello, not a checkpoint\n")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    (tmp_path / "class.pt").write_bytes(pickle.dumps(pyfit.EarlyStopping()))
    for name in ("cut.pt", "text.pt", "other.pt", "class.pt", "missing.pt"):
        with pytest.raises(pyfit.CheckpointError, match=name):
            pyfit.load_checkpoint(tmp_path / name)
    assert issubclass(pyfit.CheckpointError, pyfit.InputError)


def test_resume_refuses_different_settings_and_bad_arguments(tmp_path):
    X, y = _data()
    path = str(tmp_path / "fit.pt")
    pyfit.fit("linear", X, y, epochs=4, checkpoint=path, **SETTINGS)
    with pytest.raises(pyfit.InputError, match="batch_size: saved 7, now 5"):
        pyfit.fit("linear", X, y, epochs=8, resume_from=path, **{**SETTINGS, "batch_size": 5})
    with pytest.raises(pyfit.InputError, match="already holds 4 epochs"):
        pyfit.fit("linear", X, y, epochs=2, resume_from=path, **SETTINGS)
    with pytest.raises(pyfit.InputError, match="needs checkpoint=PATH"):
        pyfit.fit("linear", X, y, checkpoint_every=3)
    with pytest.raises(pyfit.InputError, match="does not exist"):
        pyfit.fit("linear", X, y, checkpoint=str(tmp_path / "no" / "such" / "dir.pt"))


class Custom(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)

    def forward(self, X):
        return self.layer(X)


def test_an_unregistered_model_loads_into_a_model_you_pass(tmp_path):
    X, y = _data()
    result = pyfit.fit(Custom(), X, y, epochs=3, seed=0)
    path = pyfit.save_checkpoint(tmp_path / "c.pt", result)
    assert pyfit.load_checkpoint(path).model is None
    loaded = pyfit.load_checkpoint(path, model=Custom())
    assert torch.equal(loaded.model.layer.weight, result.model.layer.weight)
    assert loaded.optimizer is not None


def test_ctrl_c_stops_and_saves(tmp_path):
    class PressCtrlC(pyfit.Callback):
        def on_epoch_end(self, state):
            if state.epoch == 5:
                os.kill(os.getpid(), signal.SIGINT)

    X, y = _data()
    path = tmp_path / "fit.pt"
    result = pyfit.fit("linear", X, y, epochs=1000, checkpoint=str(path), callbacks=[PressCtrlC()])
    assert result.stop_reason == "interrupted" and result.epochs == 5
    loaded = pyfit.load_checkpoint(path)
    assert loaded.stop_reason == "interrupted" and loaded.epoch == 5


class MustNotStart(pyfit.Callback):
    """Fails a test whose fit should have been refused before its first epoch."""

    def on_fit_start(self, state):
        raise AssertionError("the fit started")


def test_resume_applies_a_new_lr_and_records_it(tmp_path, backend):
    X, y = _data()
    path = str(tmp_path / "a.pt")
    first = pyfit.fit("linear", X, y, epochs=3, lr=0.01, seed=0, checkpoint=path)
    resumed = pyfit.fit("linear", X, y, epochs=6, lr=0.2, resume_from=path, checkpoint=str(tmp_path / "b.pt"))
    assert resumed.history["lr"] == [0.01] * 3 + [0.2] * 3
    # the same three epochs from the first fit's model, at lr 0.2 from the start
    twin = pyfit.Linear(2)
    twin.load_state_dict(first.model.state_dict())
    plain = pyfit.fit(twin, X, y, epochs=3, optimizer=torch.optim.SGD(twin.parameters(), lr=0.2))
    torch.testing.assert_close(resumed.model.weight, twin.weight)
    assert resumed.history["loss"][3:] == pytest.approx(plain.history["loss"], rel=1e-5)
    saved = pyfit.load_checkpoint(tmp_path / "b.pt")
    assert saved.config["lr"] == 0.2 and saved.optimizer.param_groups[0]["lr"] == 0.2
    assert saved.payload["optimizer"]["settings"]["lr"] == 0.2
    # no lr: the saved one goes on, and is the one recorded
    again = pyfit.fit("linear", X, y, epochs=8, resume_from=str(tmp_path / "b.pt"), momentum=0.5,
                      checkpoint=str(tmp_path / "c.pt"))
    assert again.history["lr"][6:] == [0.2, 0.2] and again.optimizer.param_groups[0]["momentum"] == 0.5
    assert pyfit.load_checkpoint(tmp_path / "c.pt").config["lr"] == 0.2


def test_resume_refuses_an_lr_that_its_scheduler_would_override(tmp_path):
    X, y = _data()
    path = str(tmp_path / "a.pt")
    pyfit.fit("linear", X, y, epochs=3, **SETTINGS, checkpoint=path)
    before = open(path, "rb").read()
    with pytest.raises(pyfit.InputError, match="lr=0.5 differs from lr=0.05, which its scheduler started from"):
        pyfit.fit("linear", X, y, epochs=6, **{**SETTINGS, "lr": 0.5}, resume_from=path, checkpoint=path,
                  callbacks=[MustNotStart()])
    assert open(path, "rb").read() == before
    assert pyfit.fit("linear", X, y, epochs=6, **SETTINGS, resume_from=path).epochs == 6


def _mutated(tmp_path, name, change):
    X, y = _data()
    payload = read_checkpoint(pyfit.save_checkpoint(tmp_path / "good.pt", pyfit.fit(
        "linear", X, y, epochs=2, momentum=0.9, scheduler="step")))
    change(payload)
    torch.save(payload, tmp_path / name)
    return tmp_path / name


DAMAGE = {
    "'model.state' is missing": lambda p: p["model"].pop("state"),
    "'epoch' should be an integer >= 0, got str": lambda p: p.update(epoch="3"),
    "'history.loss' should be a list of numbers": lambda p: p["history"].update(loss=["x"]),
    "'optimizer.state.param_groups' should be a list of param groups": lambda p: p["optimizer"]["state"].update(
        param_groups=[{"lr": 0.1}]),
    "'rng.torch' is missing": lambda p: p["rng"].pop("torch"),
    "'scheduler.kwargs' should be dict, got list": lambda p: p["scheduler"].update(kwargs=[]),
    "'model.args' should be dict or None, got int": lambda p: p["model"].update(args=3),
    "'config' is missing": lambda p: p.pop("config"),
}


@pytest.mark.parametrize("entry", DAMAGE)
def test_a_damaged_checkpoint_names_the_bad_entry_before_loading_anything(tmp_path, entry):
    path = _mutated(tmp_path, "bad.pt", DAMAGE[entry])
    with pytest.raises(pyfit.CheckpointError, match=f"bad.pt.*{re.escape(entry)}"):
        pyfit.load_checkpoint(path)
    X, y = _data()
    model = pyfit.Linear(2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(pyfit.CheckpointError, match=re.escape(entry)):
        pyfit.fit(model, X, y, epochs=5, resume_from=str(path), momentum=0.9, scheduler="step",
                  callbacks=[MustNotStart()])
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_load_checkpoint_leaves_a_model_you_pass_untouched_when_it_refuses(tmp_path):
    path = _mutated(tmp_path, "neg.pt", lambda p: p["optimizer"]["settings"].update(lr=-1.0))
    model = pyfit.Linear(2)  # matches the saved model: only the optimizer settings are bad
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError) as refusal:
        pyfit.load_checkpoint(path, model=model)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert isinstance(refusal.value, pyfit.CheckpointError)
    assert refusal.match("neg.pt.*optimizer.settings.lr must be a number >= 0, got -1.0")


def _read_only(path):
    os.chmod(path, stat.S_IMODE(os.stat(path).st_mode) & ~0o222)
    return path


def _file_in_locked_folder(tmp):
    (tmp / "locked").mkdir()
    return str(_read_only(tmp / "locked") / "fit.pt")


TARGETS = {
    "a directory": (lambda tmp: str(tmp), "is a directory"),
    "a missing folder": (lambda tmp: str(tmp / "no" / "fit.pt"), "does not exist"),
    "a read-only file": (lambda tmp: _read_only(pyfit.save_checkpoint(tmp / "ro.pt", pyfit.fit(
        "linear", *_data(), epochs=1))), "is read-only"),
    "a read-only folder": (lambda tmp: _file_in_locked_folder(tmp), "is not writable"),
}


@pytest.mark.parametrize("target", TARGETS)
def test_a_checkpoint_target_that_cannot_be_written_is_refused_before_the_fit(tmp_path, target):
    path, message = TARGETS[target][0](tmp_path), TARGETS[target][1]
    X, y = _data()
    try:
        with pytest.raises(pyfit.InputError, match=message):
            pyfit.fit("linear", X, y, epochs=5, checkpoint=path, callbacks=[MustNotStart()])
    finally:
        for folder, _, files in os.walk(tmp_path):
            os.chmod(folder, 0o755)
            for name in files:
                os.chmod(os.path.join(folder, name), 0o644)


def test_saving_again_keeps_the_files_permissions_and_writes_through_a_symlink(tmp_path):
    X, y = _data()
    target = tmp_path / "real.pt"
    pyfit.save_checkpoint(target, pyfit.fit("linear", X, y, epochs=1))
    os.chmod(target, 0o600)
    link = tmp_path / "link.pt"
    link.symlink_to(target)
    pyfit.fit("linear", X, y, epochs=4, checkpoint=str(link))
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o600
    assert pyfit.load_checkpoint(target).epoch == 4
    assert sorted(os.listdir(tmp_path)) == ["link.pt", "real.pt"]


def _lbfgs_checkpoint(tmp_path, change):
    X, y = _data()
    payload = read_checkpoint(pyfit.save_checkpoint(tmp_path / "lbfgs.pt", pyfit.fit(
        "linear", X, y, epochs=2, optimizer="lbfgs", lr=0.5)))
    change(payload)
    torch.save(payload, tmp_path / "bad.pt")
    return tmp_path / "bad.pt"


def _group(payload):
    return payload["optimizer"]["state"]["param_groups"][0]


INF = float("inf")
# each: the change to a momentum fit's checkpoint, and the entry the refusal must name
BAD_CONTENTS = {
    "optimizer.state.param_groups[0].lr must be a number, got str 'fast'": lambda p: _group(p).update(lr="fast"),
    "optimizer.state.param_groups[0].momentum must be a number >= 0, got -5.0":
        lambda p: _group(p).update(momentum=-5.0),
    "optimizer.state.param_groups[0].weight_decay must be a number >= 0": lambda p: _group(p).update(
        weight_decay=-0.1),
    "optimizer.state.param_groups[0].nesterov=True needs dampening=0": lambda p: _group(p).update(
        nesterov=True, dampening=0.5),
    "optimizer.state.param_groups[0].lr must be finite, got inf": lambda p: _group(p).update(lr=INF),
    "optimizer.state.param_groups[0].initial_lr must be finite, got nan": lambda p: _group(p).update(
        initial_lr=float("nan")),
    "optimizer.settings.momentum must be a number, got str": lambda p: p["optimizer"]["settings"].update(
        momentum="0.9"),
    "model.state.weight holds a non-finite value (inf)": lambda p: p["model"]["state"]["weight"].fill_(INF),
    "model.state.bias holds a non-finite value (nan)": lambda p: p["model"]["state"]["bias"].fill_(float("nan")),
    "optimizer.state.state[0].momentum_buffer holds a non-finite value (-inf)":
        lambda p: p["optimizer"]["state"]["state"][0]["momentum_buffer"].fill_(-INF),
}


@pytest.mark.parametrize("entry", BAD_CONTENTS)
def test_bad_settings_and_non_finite_states_are_refused_naming_the_entry_before_loading(tmp_path, entry):
    path = _mutated(tmp_path, "bad.pt", BAD_CONTENTS[entry])
    model = pyfit.Linear(2)  # matches the saved model
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(pyfit.CheckpointError, match=f"bad.pt.*{re.escape(entry)}"):
        pyfit.load_checkpoint(path, model=model)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    X, y = _data()
    optimizer = pyfit.SGD(model.parameters(), lr=0.05, momentum=0.9)
    with pytest.raises(pyfit.CheckpointError, match=re.escape(entry)):
        pyfit.fit(model, X, y, optimizer=optimizer, epochs=5, resume_from=str(path), scheduler="step",
                  callbacks=[MustNotStart()])
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert optimizer.param_groups[0]["lr"] == 0.05 and optimizer.param_groups[0]["momentum"] == 0.9
    assert not optimizer.state


@pytest.mark.parametrize("optimizer, settings", [
    ("lbfgs", {}), ("adam", {"amsgrad": True}), ("adamw", {}), ("rmsprop", {"momentum": 0.5, "centered": True}),
    ("adagrad", {}), ("sgd", {"momentum": 0.9, "nesterov": True}),
])
def test_every_built_in_optimizers_checkpoint_passes_the_checks_and_resumes(tmp_path, optimizer, settings):
    X, y = _data()
    kwargs = dict(optimizer=optimizer, lr=0.05, scheduler="reducelronplateau", **settings)
    first = pyfit.fit("mlp", X, y, epochs=3, model_kwargs={"hidden": [3]}, seed=0, **kwargs)
    path = pyfit.save_checkpoint(tmp_path / "fit.pt", first)
    assert pyfit.load_checkpoint(path).epoch == 3
    resumed = pyfit.fit(None, X, y, epochs=5, resume_from=path, **kwargs)
    assert resumed.epochs == 5 and all(torch.isfinite(p).all() for p in resumed.model.parameters())


def test_an_lbfgs_state_with_a_non_finite_vector_is_refused(tmp_path):
    path = _lbfgs_checkpoint(tmp_path, lambda p: p["optimizer"]["state"]["state"][0]["old_dirs"][0].fill_(INF))
    with pytest.raises(pyfit.CheckpointError, match=r"optimizer.state.state\[0\].old_dirs\[0\] holds a non-finite"):
        pyfit.load_checkpoint(path)
    path = _lbfgs_checkpoint(tmp_path, lambda p: p["optimizer"]["state"]["state"][0].update(prev_loss=INF))
    with pytest.raises(pyfit.CheckpointError, match=r"optimizer.state.state\[0\].prev_loss must be finite"):
        pyfit.load_checkpoint(path)
