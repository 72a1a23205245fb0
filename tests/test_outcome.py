"""Honest outcomes: each problem a careful user would check gives a warning with a next step."""

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
