"""Honest outcomes: each problem a careful user would check gives a warning with a next step."""

import pytest
import torch

import pyfit
from pyfit.outcome import diagnose


def _y(n=20):
    return torch.linspace(0, 1, n, dtype=torch.float64)


def test_a_sound_fit_has_no_warnings():
    y = _y()
    assert diagnose([4.0, 2.0, 1.0] + [0.5] * 20, "converged", "", y, y + 0.01, epochs=100) == []


def test_divergence_says_lower_lr_and_standardize():
    y = _y()
    [message] = diagnose([1.0, 1e10], "non_finite", "the loss became inf in epoch 3", y, y, epochs=10, lr=1.0)
    assert "diverged" in message and "lr=0.1" in message and "standardize" in message


def test_a_loss_still_falling_at_the_cap_says_more_epochs():
    y = _y()
    losses = [1.0 / (k + 1) for k in range(100)]
    [message] = diagnose(losses, "completed", "", y, y, epochs=100)
    assert "not converged" in message and "epochs=200" in message


def test_a_loss_going_up_and_down_says_lower_lr():
    y = _y()
    losses = [4.0, 3.0] + [1.0, 2.0] * 30  # bouncing below where it started and within twice its best
    messages = diagnose(losses, "converged", "", y, y, epochs=60, lr=0.5)
    assert any("oscillates" in m and "lr=0.05" in m for m in messages)


def test_worse_than_the_mean_and_constant_predictions_are_named():
    y = _y()
    [worse] = diagnose([1.0] * 20, "converged", "", y, 1 - y + 0.3, epochs=20)
    assert "worse than predicting the mean" in worse and "standardize" in worse
    constant = diagnose([1.0] * 20, "converged", "", y, torch.full_like(y, 0.5), epochs=20)
    assert any("same value for every row" in m for m in constant)


def _linear_data(scale=1.0, offset=0.0):
    generator = torch.Generator().manual_seed(0)
    X = torch.randn(100, 3, dtype=torch.float64, generator=generator)
    y = X @ torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64) + 0.1 * torch.randn(100, dtype=torch.float64,
                                                                                 generator=generator)
    return X * scale, y + offset


def test_a_fit_that_diverges_warns_lower_lr_and_standardize():
    X, y = _linear_data(scale=1000.0)
    result = pyfit.fit("linear", X, y, lr=1.0, epochs=50, seed=0)
    assert result.stop_reason == "non_finite"
    [message] = result.warnings
    assert "diverged" in message and "lower lr (e.g. lr=0.1)" in message and "standardize=True" in message


def test_a_fit_that_oscillates_warns_lower_lr():
    X, y = _linear_data()
    # minibatches of 4 rows at a step far above the safe one for them: the epoch loss bounces
    result = pyfit.fit("linear", X, y, lr=0.2, batch_size=4, shuffle=True, epochs=200, seed=0)
    assert any("oscillates" in m and "lower lr (e.g. lr=0.02)" in m for m in result.warnings), result.warnings


def test_a_fit_worse_than_the_mean_warns_with_more_epochs_or_a_larger_lr():
    X, y = _linear_data(offset=1000.0)
    result = pyfit.fit("linear", X, y, lr=1e-4, epochs=50, seed=0)
    worse = [m for m in result.warnings if "worse than predicting the mean" in m]
    assert worse and "more epochs or a larger lr" in worse[0]
    assert any(m.startswith("not converged") for m in result.warnings)


def test_a_fit_on_a_feature_that_says_nothing_warns_of_constant_predictions():
    _, y = _linear_data()
    result = pyfit.fit("linear", torch.ones(100, 1, dtype=torch.float64), y, epochs=50, seed=0)
    assert any("same value for every row" in m for m in result.warnings)


def test_a_sound_default_fit_has_no_warnings_and_reports_the_returned_models_loss():
    X, y = _linear_data(scale=50.0, offset=7.0)
    result = pyfit.fit("linear", X, y, seed=0, standardize=True)
    assert result.stop_reason == "converged" and result.warnings == []
    with torch.no_grad():
        returned = float(((result.model(X)[:, 0] - y) ** 2).mean())
    assert result.final_loss == pytest.approx(returned, rel=1e-12)
    assert result.final_loss <= result.history["loss"][-1]  # the history's entry is from before the last step


def test_a_finite_loss_far_above_its_best_is_diverged_and_only_says_lower_lr():
    y = _y()
    # worse than the mean and barely below the start too: those symptoms must not add "a larger lr"
    [message] = diagnose([10.0, 4.0, 2.0, 30.0], "converged", "", y, 1 - y, epochs=4, lr=0.1, final_loss=50.0)
    assert message.startswith("the fit diverged") and "25 times the best" in message
    assert "lower lr (e.g. lr=0.01)" in message and "larger lr" not in message


def test_a_loss_that_ends_above_where_it_started_is_diverged():
    y = _y()
    [message] = diagnose([10.0, 8.0, 9.0, 12.0], "completed", "", y, y, epochs=4, lr=0.1, final_loss=12.0)
    assert "diverged" in message and "above the first epoch's 10" in message


def test_a_rise_at_rounding_level_after_converging_is_not_divergence():
    y = _y()
    losses = [1e3, 1.0, 1e-6, 7.6e-15, 1.9e-14]
    assert diagnose(losses, "converged", "", y, y, epochs=5, final_loss=1.9e-14) == []


def test_a_momentum_fit_that_blows_up_but_stays_finite_warns_diverged():
    # float64, columns scaled x1 .. x100 behind standardization, momentum 0.9 and minibatches of 4 at ten times
    # the safe step: the loss grows by many orders of magnitude in 50 epochs without reaching inf
    generator = torch.Generator().manual_seed(0)
    X = torch.randn(500, 4, dtype=torch.float64, generator=generator) * torch.tensor([1.0, 10.0, 100.0, 0.1],
                                                                                     dtype=torch.float64)
    y = X @ torch.tensor([2.0, -0.3, 0.05, 7.0], dtype=torch.float64)
    safe = pyfit.fit("linear", X + 50, y, standardize=True, momentum=0.9, batch_size=4, epochs=1, seed=0).lr_chosen
    result = pyfit.fit("linear", X + 50, y, standardize=True, lr=10 * safe, momentum=0.9, batch_size=4,
                       shuffle=True, epochs=50, seed=0)
    assert result.stop_reason == "completed" and result.final_loss > 1e3 * min(result.history["loss"])
    [message] = result.warnings
    assert message.startswith("the fit diverged") and "lower lr" in message and "larger lr" not in message
    assert "or momentum (now 0.9)" in message


def _state_with_losses(losses):
    model = torch.nn.Linear(1, 1)
    state = pyfit.callbacks.FitState(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
                                     epochs=1000, epoch=len(losses))
    state.history["loss"] = list(losses)
    return state


def test_convergence_does_not_call_a_loss_that_climbed_far_above_its_best_converged():
    climbed = _state_with_losses([9000.0, 8933.0] + [116177.0] * 38)
    stopper = pyfit.Convergence(tol=1e-5, n_iter_no_change=5)
    stopper.on_fit_start(climbed)
    stopper.on_epoch_end(climbed)
    assert climbed.stop_reason is None
    # minibatch losses bouncing far above the best, the last one dipping near it
    bouncing = _state_with_losses([9000.0, 8933.0] + [116177.0, 9000.0] * 19)
    stopper.on_fit_start(bouncing)
    stopper.on_epoch_end(bouncing)
    assert bouncing.stop_reason is None
    flat = _state_with_losses([9000.0, 8933.0] + [8933.0] * 38)
    stopper.on_fit_start(flat)
    stopper.on_epoch_end(flat)
    assert flat.stop_reason == "converged"


def test_a_bouncing_fit_worse_than_the_mean_is_told_lower_lr_not_a_larger_one():
    y = _y()
    # still falling on average over the last tenth, but rising in every other epoch
    losses = [10.0 - 0.05 * k + (1.0 if k % 2 else 0.0) for k in range(100)]
    messages = diagnose(losses, "completed", "", y, 1 - y + 0.3, epochs=100, lr=0.5)
    worse = [m for m in messages if "worse than predicting the mean" in m]
    assert worse and "lower lr" in worse[0]
    assert not any("larger lr" in m for m in messages), messages
