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
    losses = [1.0, 2.0] * 30
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
