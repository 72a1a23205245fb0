"""pyfit.fit: paths, determinism, callbacks, and refusing bad input without touching state."""

import math
import os
import signal

import numpy as np
import pytest
import torch

import pyfit


def line_data(n=50, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, generator=g, dtype=dtype)
    return x, 3 * x + 0.8


def test_seed000_line_is_recovered_on_the_fused_path():
    x, y = line_data()
    result = pyfit.fit("linear", x, y, lr=0.1, epochs=3000, seed=0)
    assert result.backend.endswith(":fused-linear")
    assert result.stop_reason == "completed" and result.epochs == 3000
    assert result.model.weight.item() == pytest.approx(3.0, abs=1e-3)
    assert result.model.bias.item() == pytest.approx(0.8, abs=1e-3)
    assert len(result.history["loss"]) == len(result.history["lr"]) == 3000
    assert result.history["loss"][-1] < result.history["loss"][0]


def test_same_inputs_and_seed_give_the_same_result():
    g = torch.Generator().manual_seed(1)
    X, y = torch.randn(200, 3, generator=g), torch.randn(200, generator=g)
    kw = dict(lr=0.05, epochs=7, batch_size=16, shuffle=True, seed=42, momentum=0.9)
    a, b = pyfit.fit("linear", X, y, **kw), pyfit.fit("linear", X, y, **kw)
    assert torch.equal(a.model.weight, b.model.weight) and torch.equal(a.model.bias, b.model.bias)
    assert a.history == b.history
    c = pyfit.fit("linear", X, y, **{**kw, "seed": 43})
    assert not torch.equal(a.model.weight, c.model.weight)


@pytest.mark.parametrize("batch_size, shuffle", [(None, False), (7, False), (16, True), (1, False)])
def test_fused_path_agrees_with_autograd(batch_size, shuffle):
    g = torch.Generator().manual_seed(2)
    X = torch.randn(64, 3, generator=g, dtype=torch.float64)
    y = X @ torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64) + 0.3
    model = pyfit.Linear(3, dtype=torch.float64)
    twin = pyfit.Linear(3, dtype=torch.float64)
    twin.load_state_dict(model.state_dict())
    kw = dict(epochs=12, batch_size=batch_size, shuffle=shuffle, seed=5, scheduler="exponential",
              scheduler_kwargs={"gamma": 0.9})
    fused = pyfit.fit(model, X, y, lr=0.05, momentum=0.9, weight_decay=1e-3, **kw)
    # torch's own loss declares nothing the fused loop computes: the same fit through autograd
    plain = pyfit.fit(twin, X, y, loss=torch.nn.MSELoss(),
                      optimizer=torch.optim.SGD(twin.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-3), **kw)
    assert fused.backend.endswith("fused-linear") and plain.backend.endswith("autograd")
    torch.testing.assert_close(model.weight, twin.weight)
    torch.testing.assert_close(model.bias, twin.bias)
    np.testing.assert_allclose(fused.history["loss"], plain.history["loss"], rtol=1e-9)
    assert fused.history["lr"] == plain.history["lr"]


def test_polynomial_runs_fused_and_matches_autograd():
    x = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    y = 2 * x
    a = pyfit.Polynomial(degree=2, dtype=torch.float64)
    b = pyfit.Polynomial(degree=2, dtype=torch.float64)
    b.load_state_dict(a.state_dict())
    ra = pyfit.fit(a, x, y, lr=0.01, epochs=50, batch_size=1)
    rb = pyfit.fit(b, x, y, epochs=50, batch_size=1, loss=torch.nn.MSELoss(),
                   optimizer=torch.optim.SGD(b.parameters(), lr=0.01))
    assert ra.backend.endswith("fused-linear") and rb.backend.endswith("autograd")
    torch.testing.assert_close(a.weight, b.weight)


def test_two_dimensional_targets_fit_several_outputs():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(100, 2, generator=g)
    W = torch.tensor([[1.0, 2.0], [-1.0, 0.5]])
    y = X @ W.t() + torch.tensor([0.5, -0.5])
    result = pyfit.fit("linear", X, y, lr=0.1, epochs=500, seed=0)
    assert result.model.weight.shape == (2, 2)
    torch.testing.assert_close(result.model.weight.detach(), W, atol=1e-3, rtol=0)
    assert pyfit.predict(result.model, X).shape == (100, 2)


def test_a_model_factory_receives_in_and_out_features():
    seen = {}

    def factory(in_features, out_features=1):
        seen.update(in_features=in_features, out_features=out_features)
        return torch.nn.Linear(in_features, out_features)

    pyfit.fit(factory, torch.randn(10, 4), torch.randn(10, 2), epochs=2)
    assert seen == {"in_features": 4, "out_features": 2}


def test_numpy_and_lists_are_accepted():
    result = pyfit.fit("linear", np.linspace(0, 1, 20), [2 * v for v in np.linspace(0, 1, 20)], lr=0.5, epochs=500)
    assert result.model.weight.item() == pytest.approx(2.0, abs=1e-2)


def test_orthogonal_loss_sees_the_model_and_approaches_total_least_squares():
    g = torch.Generator().manual_seed(0)
    x = torch.linspace(0, 1, 200, dtype=torch.float64)
    xs = x + 0.05 * torch.randn(200, generator=g, dtype=torch.float64)
    ys = 2.5 * x + 1 + 0.05 * torch.randn(200, generator=g, dtype=torch.float64)
    result = pyfit.fit("linear", xs, ys, loss="orthogonal", lr=0.2, epochs=4000, seed=0)
    assert result.backend.endswith("autograd")
    points = torch.stack([xs, ys], 1)
    centred = points - points.mean(0)
    direction = torch.linalg.svd(centred, full_matrices=False).Vh[0]
    slope = float(direction[1] / direction[0])
    assert result.model.weight.item() == pytest.approx(slope, rel=1e-3)


def test_non_finite_loss_stops_and_keeps_finite_parameters_on_both_paths():
    x, y = line_data()
    for optimizer in ("sgd", "adam"):
        kw = {"momentum": 0.0} if optimizer == "sgd" else {}
        result = pyfit.fit("linear", x, y * 1e20, lr=1e10, epochs=200, optimizer=optimizer, seed=0, **kw)
        assert result.stop_reason == "non_finite", (optimizer, result)
        assert "loss became" in result.stop_detail
        assert all(math.isfinite(v) for v in result.history["loss"])
        for p in result.model.parameters():
            assert torch.isfinite(p).all(), optimizer


def test_early_stopping_stops_with_its_reason():
    x, y = line_data()
    result = pyfit.fit("linear", x, y, lr=0.1, epochs=100000, callbacks=[pyfit.EarlyStopping(5, 1e-9)])
    assert result.stop_reason == "early_stopping"
    assert result.epochs < 100000 and len(result.history["loss"]) == result.epochs


def test_best_parameters_keeps_the_lowest_loss_and_its_parameters():
    x, y = line_data()
    best = pyfit.BestParameters()
    result = pyfit.fit("linear", x, y, lr=0.1, epochs=200, seed=0, callbacks=[best])
    assert best.best_loss == min(result.history["loss"])
    probe = pyfit.Linear(1)
    probe.load_state_dict(best.best_state)
    with torch.no_grad():
        loss = torch.mean((probe(x.unsqueeze(1)).squeeze(1) - y) ** 2)
    assert loss.item() == pytest.approx(best.best_loss, rel=1e-4)


def test_scheduler_learning_rates_land_in_the_history():
    x, y = line_data()
    result = pyfit.fit("linear", x, y, lr=0.1, epochs=5, scheduler="step", scheduler_kwargs={"step_size": 2,
                                                                                             "gamma": 0.5})
    assert result.history["lr"] == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025])


def test_plateau_scheduler_gets_the_epoch_loss():
    x, y = line_data()
    result = pyfit.fit("linear", x, y * 0 + 1.0, lr=1e-6, epochs=6, scheduler="reducelronplateau",
                       scheduler_kwargs={"patience": 1, "factor": 0.5})
    assert result.history["lr"][0] == 1e-6 and result.history["lr"][-1] < 1e-6


def test_callback_hooks_run_in_order():
    calls = []

    class Recorder(pyfit.Callback):
        def on_fit_start(self, state):
            calls.append("start")

        def on_epoch_end(self, state):
            calls.append(state.epoch)

        def on_fit_end(self, state):
            calls.append("end")

    x, y = line_data()
    pyfit.fit("linear", x, y, epochs=3, callbacks=[Recorder()])
    assert calls == ["start", 1, 2, 3, "end"]


def test_first_ctrl_c_finishes_the_step_and_returns_interrupted():
    class Interrupter(pyfit.Callback):
        def on_epoch_end(self, state):
            if state.epoch == 4:
                os.kill(os.getpid(), signal.SIGINT)

    x, y = line_data()
    result = pyfit.fit("linear", x, y, epochs=1000, callbacks=[Interrupter()])
    assert result.stop_reason == "interrupted" and result.epochs == 4
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_progress_bar_can_be_forced(capsys):
    x, y = line_data()
    pyfit.fit("linear", x, y, epochs=200, progress=True)
    assert "epoch" in capsys.readouterr().err


def snapshot(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


BAD_INPUTS = [
    (dict(X=torch.randn(10, 2), y=torch.randn(9)), "X and y must have the same number of samples: X has 10, y has 9"),
    (dict(X=torch.zeros(0, 2), y=torch.zeros(0)), "empty"),
    (dict(X=torch.tensor([[1.0, 2.0], [float("nan"), 0.0]]), y=torch.ones(2)), "X contains nan at row 1, column 0"),
    (dict(X=torch.ones(2, 2), y=torch.tensor([1.0, float("inf")])), "y contains inf at row 1"),
    (dict(X=torch.ones(4, 3), y=torch.ones(4)), "X has 3 features, but the model takes 2"),
    (dict(X=torch.ones(4, 2), y=torch.ones(4), lr=0.0), "lr must be a finite number > 0, got 0.0"),
    (dict(X=torch.ones(4, 2), y=torch.ones(4), lr=-1e-3), "lr must be"),
    (dict(X=torch.ones(4, 2), y=torch.ones(4), momentum=-0.5), "momentum must be a finite number >= 0"),
    (dict(X=torch.ones(4, 2), y=torch.ones(4), nesterov=True), "nesterov=True needs momentum > 0"),
    (dict(X=torch.ones(4, 2), y=torch.ones(4), epochs=0), "epochs must be an integer >= 1, got 0"),
    (dict(X=torch.ones(4, 2), y=torch.ones(4), batch_size=0), "batch_size must be an integer >= 1"),
    (dict(X=torch.ones(4, 2), y=torch.ones(4, 3)), "y has 3 output column"),
]


@pytest.mark.parametrize("kwargs, message", BAD_INPUTS, ids=[m for _, m in BAD_INPUTS])
def test_bad_input_is_refused_before_any_state_changes(kwargs, message):
    model = pyfit.Linear(2)
    optimizer = None
    before = snapshot(model)
    with pytest.raises(ValueError) as info:
        pyfit.fit(model, **kwargs)
    assert message in str(info.value)
    after = snapshot(model)
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert optimizer is None


@pytest.mark.parametrize("X", [["a", "b"], [object(), object()], [[1.0], [1.0, 2.0]]])
def test_non_numeric_data_is_a_type_or_value_error(X):
    with pytest.raises((TypeError, ValueError)):
        pyfit.fit("linear", X, [1.0, 2.0])


def test_huge_finite_values_are_not_mistaken_for_non_finite():
    X = torch.full((4, 1), 3e38)
    X[0] = 0.0
    with pytest.raises(pyfit.InputError, match="the model takes 2"):
        # passes the finiteness check (the sum overflows, the values do not) and fails later, on shape
        pyfit.fit(pyfit.Linear(2), X, torch.ones(4))


class MustNotStart(pyfit.Callback):
    """Fails a test whose fit should have been refused before its first epoch."""

    def on_fit_start(self, state):
        raise AssertionError("the fit started")


def _stepped_linear(X, y):
    """A model and a momentum SGD that has taken one step, so the optimizer has state to lose."""
    model = pyfit.Linear(2)
    optimizer = pyfit.SGD(model.parameters(), lr=0.05, momentum=0.9)
    torch.nn.functional.mse_loss(model(X).squeeze(1), y).backward()
    optimizer.step()
    optimizer.zero_grad()
    return model, optimizer


def _saved_fit(path, **settings):
    X, y = _refusal_data()
    pyfit.fit(pyfit.Linear(2), X, y, epochs=3, checkpoint=str(path), seed=0, **settings)
    return str(path)


def _refusal_data():
    g = torch.Generator().manual_seed(3)
    X = torch.rand(30, 2, generator=g)
    return X, X @ torch.tensor([1.0, -2.0]) + 0.5


def _damaged(path):
    saved = torch.load(_saved_fit(path, lr=0.05, momentum=0.9), weights_only=True)
    del saved["model"]["state"]
    torch.save(saved, path)
    return str(path)


def _reshaped_buffer(path):
    saved = torch.load(_saved_fit(path, lr=0.05, momentum=0.9), weights_only=True)
    saved["optimizer"]["state"]["state"][0]["momentum_buffer"] = torch.zeros(5)
    torch.save(saved, path)
    return str(path)


def _two_groups(path):
    X, y = _refusal_data()
    model = pyfit.Linear(2)
    optimizer = pyfit.SGD([{"params": [model.weight]}, {"params": [model.bias]}], lr=0.05, momentum=0.9)
    pyfit.fit(model, X, y, optimizer=optimizer, epochs=3, checkpoint=str(path))
    return str(path)


# each: (what the fit is given besides the model, the optimizer and the data; the error's words)
REFUSALS = {
    "scheduler step_size 0": (lambda tmp: dict(scheduler="step", scheduler_kwargs={"step_size": 0}),
                              "step_size must be an integer >= 1, got 0"),
    "torch refuses the scheduler": (lambda tmp: dict(scheduler="onecyclelr", scheduler_kwargs={
        "max_lr": 1.0, "total_steps": 10, "pct_start": 2.0}), "the scheduler 'onecyclelr' cannot run"),
    "factory fails on its first step": (lambda tmp: dict(scheduler=lambda opt: torch.optim.lr_scheduler.LambdaLR(
        opt, lambda epoch: 1 / (epoch - 1))), "ZeroDivisionError"),
    "resume with other settings": (lambda tmp: dict(scheduler="step", batch_size=5, resume_from=_saved_fit(
        tmp / "a.pt", lr=0.05, momentum=0.9, scheduler="step", batch_size=7)), "batch_size: saved 7, now 5"),
    "resume with other param groups": (lambda tmp: dict(resume_from=_two_groups(tmp / "g.pt")),
                                       "it has 2 param group"),
    "damaged checkpoint": (lambda tmp: dict(resume_from=_damaged(tmp / "d.pt")), "'model.state' is missing"),
    "checkpoint is a directory": (lambda tmp: dict(checkpoint=str(tmp)), "is a directory"),
    "momentum buffer of another shape": (lambda tmp: dict(resume_from=_reshaped_buffer(tmp / "b.pt")),
                                         "momentum_buffer for parameter 0 has shape"),
    "absurd epochs": (lambda tmp: dict(epochs=10**20), "epochs must be at most"),
    "seed out of range": (lambda tmp: dict(seed=2**70), "seed must be an integer from"),
}


@pytest.mark.parametrize("case", REFUSALS)
def test_every_refusal_leaves_parameters_and_optimizer_exactly_as_they_were(case, tmp_path, backend):
    import copy

    X, y = _refusal_data()
    model, optimizer = _stepped_linear(X, y)
    before = snapshot(model), copy.deepcopy(optimizer.state_dict())
    settings, message = REFUSALS[case]
    kwargs = {"X": X, "y": y, "epochs": 6, **settings(tmp_path)}
    with pytest.raises(ValueError) as refusal:
        pyfit.fit(model, optimizer=optimizer, callbacks=[MustNotStart()], **kwargs)
    after = snapshot(model), optimizer.state_dict()
    assert all(torch.equal(before[0][k], after[0][k]) for k in before[0])
    assert after[1]["param_groups"] == before[1]["param_groups"]  # lr included, and no initial_lr added
    assert after[1]["state"].keys() == before[1]["state"].keys()
    for index, entries in before[1]["state"].items():
        assert all(torch.equal(value, after[1]["state"][index][key]) for key, value in entries.items())
    assert isinstance(refusal.value, pyfit.InputError) and refusal.match(message)


def test_a_misspelt_fit_argument_names_fits_parameter_not_the_optimizer():
    X, y = torch.rand(10, 1), torch.rand(10)
    with pytest.raises(TypeError, match=r"unexpected keyword argument 'epoch'.*did you mean 'epochs'\?"):
        pyfit.fit("linear", X, y, epoch=500)
    with pytest.raises(TypeError, match=r"did you mean 'momentum'\?"):
        pyfit.fit("linear", X, y, momentun=0.9)
    with pytest.raises(pyfit.InputError, match="lr must be a number or 'auto', got 'fast'"):
        pyfit.fit("linear", X, y, lr="fast")


def test_lr_auto_is_the_default_and_says_why():
    X = torch.rand(30, 2, dtype=torch.float64)
    y = X @ torch.tensor([1.0, 2.0], dtype=torch.float64)
    linear = pyfit.fit("linear", X, y, epochs=5, seed=0)
    assert linear.lr_reason.startswith("auto: 1/L for full-batch gradient descent")
    assert linear.history["lr"][0] == linear.lr_chosen
    adam = pyfit.fit("linear", X, y, optimizer="adam", epochs=5, seed=0)
    assert adam.lr_reason.startswith("auto: a tenth of the rate with the lowest loss in a range test")
    given = pyfit.fit("linear", X, y, lr=0.05, epochs=5, seed=0)
    assert (given.lr_chosen, given.lr_reason) == (0.05, "given")


def test_default_epochs_are_a_cap_and_given_epochs_all_run():
    generator = torch.Generator().manual_seed(0)
    X = torch.rand(30, 1, dtype=torch.float64, generator=generator)
    y = 3 * X[:, 0] + 0.8 + 0.1 * torch.randn(30, dtype=torch.float64, generator=generator)
    capped = pyfit.fit("linear", X, y, seed=0)
    assert capped.stop_reason == "converged" and capped.epochs < 10_000
    assert capped.config["epochs"] == 10_000
    given = pyfit.fit("linear", X, y, epochs=300, seed=0)
    assert given.stop_reason == "completed" and given.epochs == 300
    strict = pyfit.fit("linear", X, y, epochs=300, tol=1e-3, seed=0)
    assert strict.stop_reason == "converged" and strict.epochs % 20 == 0 and strict.epochs < 300


# each: (the scheduler and its settings, epochs, the error's words); every step the fit
# would take is tried first, so a scheduler that would fail part-way is refused up front
SHORT_SCHEDULERS = {
    "onecyclelr shorter than the fit": (dict(scheduler="onecyclelr", scheduler_kwargs={
        "max_lr": 1.0, "total_steps": 3}), 5, "total_steps=3"),
    "onecyclelr far shorter than a long fit": (dict(scheduler="onecyclelr", scheduler_kwargs={
        "max_lr": 1.0, "total_steps": 15_000}), 20_000, "total_steps=15000"),
    "factory that fails at its fifth step": (dict(scheduler=lambda opt: torch.optim.lr_scheduler.LambdaLR(
        opt, lambda epoch: 1 / (5 - epoch))), 8, "after epoch 5: ZeroDivisionError"),
}


@pytest.mark.parametrize("case", SHORT_SCHEDULERS)
def test_a_scheduler_that_would_fail_part_way_is_refused_before_any_state_changes(case, backend):
    import copy

    X, y = _refusal_data()
    model, optimizer = _stepped_linear(X, y)
    before = snapshot(model), copy.deepcopy(optimizer.state_dict())
    settings, epochs, message = SHORT_SCHEDULERS[case]
    with pytest.raises(pyfit.InputError, match=message):
        pyfit.fit(model, X, y, optimizer=optimizer, epochs=epochs, callbacks=[MustNotStart()], **settings)
    assert all(torch.equal(before[0][k], v) for k, v in snapshot(model).items())
    assert optimizer.state_dict()["param_groups"] == before[1]["param_groups"]
    assert all(torch.equal(before[1]["state"][i]["momentum_buffer"], s["momentum_buffer"])
               for i, s in optimizer.state_dict()["state"].items())


def test_a_scheduler_whose_horizon_is_the_fit_runs_to_the_end(backend):
    X, y = _refusal_data()
    result = pyfit.fit("linear", X, y, lr=0.05, epochs=5, scheduler="onecyclelr",
                       scheduler_kwargs={"max_lr": 0.1, "total_steps": 5})
    assert result.stop_reason == "completed" and result.epochs == 5


def test_a_scheduler_object_that_would_fail_part_way_is_refused_and_left_as_it_was(backend):
    X, y = _refusal_data()
    model, optimizer = _stepped_linear(X, y)
    before = snapshot(model)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=1.0, total_steps=3)
    lr, scheduler_state = optimizer.param_groups[0]["lr"], dict(scheduler.state_dict())
    with pytest.raises(pyfit.InputError, match="OneCycleLR given as scheduler can take 3 more step.*total_steps=3"):
        pyfit.fit(model, X, y, optimizer=optimizer, epochs=5, scheduler=scheduler, callbacks=[MustNotStart()])
    assert all(torch.equal(before[k], v) for k, v in snapshot(model).items())
    assert optimizer.param_groups[0]["lr"] == lr and scheduler.state_dict() == scheduler_state


def _fails_after_epoch_five(optimizer):
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: 1.0 if epoch < 5 else 1 / (5 - epoch))


@pytest.mark.parametrize("model", ["linear", "mlp"])
def test_a_scheduler_that_fails_past_the_steps_tried_up_front_stops_the_fit_and_keeps_it(model, backend,
                                                                                          monkeypatch):
    import pyfit.schedulers

    monkeypatch.setattr(pyfit.schedulers, "_TRIAL_STEPS", 3)  # stands for a fit longer than the trial
    X, y = _refusal_data()
    kwargs = dict(lr=0.05, momentum=0.9, seed=0, model_kwargs={"hidden": [3]} if model == "mlp" else {})
    result = pyfit.fit(model, X, y, epochs=8, scheduler=_fails_after_epoch_five, **kwargs)
    assert result.stop_reason == "scheduler_failed" and result.epochs == 5
    assert "step after epoch 5 failed (ZeroDivisionError" in result.stop_detail
    # the same as a fit of those five epochs with a scheduler that never fails
    reference = pyfit.fit(model, X, y, epochs=5, scheduler=lambda opt: torch.optim.lr_scheduler.LambdaLR(
        opt, lambda epoch: 1.0), **kwargs)
    assert reference.backend == result.backend
    assert result.history["loss"] == reference.history["loss"]
    assert all(torch.equal(a, b) for a, b in zip(result.model.parameters(), reference.model.parameters()))
    assert result.scheduler.last_epoch == 4 and result.optimizer.param_groups[0]["lr"] == 0.05
    assert all(torch.equal(result.optimizer.state[a]["momentum_buffer"], reference.optimizer.state[b]["momentum_buffer"])
               for a, b in zip(result.model.parameters(), reference.model.parameters()))


def test_a_resumed_fit_with_a_new_lr_reports_the_lr_it_trained_with(tmp_path):
    X, y = _refusal_data()
    first = pyfit.fit("linear", X, y, lr=0.01, epochs=20, seed=0, checkpoint=str(tmp_path / "a.pt"))
    assert (first.lr_chosen, first.lr_reason) == (0.01, "given")
    faster = pyfit.fit(None, X, y, lr=0.5, epochs=40, resume_from=str(tmp_path / "a.pt"))
    assert faster.history["lr"][20:] == [0.5] * 20
    assert (faster.lr_chosen, faster.lr_reason) == (0.5, "given")
    same = pyfit.fit(None, X, y, epochs=40, resume_from=str(tmp_path / "a.pt"))
    assert (same.lr_chosen, same.lr_reason) == (0.01, "the resumed fit's")


@pytest.mark.parametrize("scheduler,scheduler_kwargs", [
    ("cycliclr", {"base_lr": 0.001, "max_lr": 0.05}),
    ("onecyclelr", {"max_lr": 0.05, "total_steps": 40}),
])
def test_resuming_a_cycling_schedule_with_the_flags_it_started_with_is_accepted(tmp_path, scheduler,
                                                                                scheduler_kwargs):
    X, y = _refusal_data()
    settings = dict(lr=0.01, momentum=0.9, scheduler=scheduler, scheduler_kwargs=scheduler_kwargs, seed=0, tol=None)
    path = str(tmp_path / "cycle.pt")
    pyfit.fit("linear", X, y, epochs=13, checkpoint=path, **settings)
    whole = pyfit.fit("linear", X, y, epochs=30, **settings)
    again = pyfit.fit(None, X, y, epochs=30, resume_from=path, **{k: v for k, v in settings.items() if k != "seed"})
    assert again.history == whole.history
    unsaid = pyfit.fit(None, X, y, epochs=30, resume_from=path, scheduler=scheduler,
                       scheduler_kwargs=scheduler_kwargs, momentum=0.9, tol=None)
    assert unsaid.history == whole.history
    for changed, named in (({"lr": 0.02}, "lr=0.02 differs from lr=0.01"),
                           ({"lr": 0.01, "momentum": 0.8}, "momentum=0.8 differs from the 0.9")):
        with pytest.raises(pyfit.InputError, match=named):
            pyfit.fit(None, X, y, epochs=30, resume_from=path, scheduler=scheduler,
                      scheduler_kwargs=scheduler_kwargs, tol=None, **{"momentum": 0.9, **changed})


@pytest.mark.parametrize("loss, torch_loss", [("mse", torch.nn.functional.mse_loss),
                                               ("mae", torch.nn.functional.l1_loss)])
def test_an_autograd_fit_of_one_output_against_flat_targets_is_the_hand_written_loop(loss, torch_loss):
    # pyfit shapes the targets like the (N, 1) predictions for an elementwise loss; the values
    # must be those of the loop that flattens the predictions instead
    g = torch.Generator().manual_seed(4)
    X, y = torch.randn(64, 3, generator=g), torch.randn(64, generator=g)

    def net():
        torch.manual_seed(0)
        return torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))

    hand = net()
    opt = torch.optim.Adam(hand.parameters(), lr=0.01)
    losses = []
    for _ in range(6):
        value = torch_loss(hand(X).reshape(y.shape), y)
        opt.zero_grad()
        value.backward()
        opt.step()
        losses.append(value.item())
    result = pyfit.fit(net(), X, y, loss=loss, optimizer="adam", lr=0.01, epochs=6, tol=None)
    assert result.backend.endswith("autograd")
    assert result.history["loss"] == losses
    for mine, theirs in zip(result.model.parameters(), hand.parameters()):
        assert torch.equal(mine, theirs)
