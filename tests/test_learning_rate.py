"""lr="auto": the curvature bound against eigvalsh, the safety of the step it gives, and the range test."""

import math
import os

import pytest
import torch

import pyfit
from pyfit import learning_rate
from pyfit.learning_rate import largest_curvature, range_test, squared_error_lr


def _design(generator, n, p):
    # correlated, badly scaled columns: the case where a fixed lr fails
    base = torch.randn(n, p, dtype=torch.float64, generator=generator)
    mixed = base @ torch.randn(p, p, dtype=torch.float64, generator=generator)
    return mixed * torch.logspace(-2, 3, p, dtype=torch.float64)


@pytest.mark.parametrize("n,p", [(5, 1), (30, 4), (200, 17), (10, 40)])
def test_curvature_is_an_upper_bound_within_five_percent(seeded, n, p):
    Z = _design(seeded, n, p)
    exact = float(torch.linalg.eigvalsh(Z.T @ Z / n).max())
    bound, proven = largest_curvature(Z)
    assert proven
    assert exact <= bound <= 1.05 * exact * (1 + 1e-9)


def test_power_iteration_estimate_for_wide_designs(seeded, monkeypatch):
    monkeypatch.setattr(learning_rate, "_MAX_SQUARED_COLUMNS", 0)
    Z = _design(seeded, 60, 8)
    exact = float(torch.linalg.eigvalsh(Z.T @ Z / 60).max())
    estimate, proven = largest_curvature(Z)
    assert not proven
    assert 0.99 * exact <= estimate <= 1.1 * exact * (1 + 1e-9)


def test_full_batch_step_never_raises_the_loss_and_twice_it_diverges(seeded):
    X = _design(seeded, 50, 4)
    y = X @ torch.randn(4, dtype=torch.float64, generator=seeded) + 3.0
    lr, reason = squared_error_lr(X, True, 1, "mean", None)
    assert "upper bound" in reason
    safe = pyfit.fit("linear", X, y, lr=lr, epochs=300, seed=0, tol=None)
    losses = safe.history["loss"]
    assert safe.stop_reason == "completed"
    assert all(b <= a * (1 + 1e-12) for a, b in zip(losses, losses[1:]))
    assert losses[-1] < 0.5 * losses[0]
    # 2 / L is where gradient descent stops converging; the bound is within 5 % of L
    unsafe = pyfit.fit("linear", X, y, lr=2.2 * lr, epochs=300, seed=0, tol=None)
    assert unsafe.stop_reason == "non_finite" or unsafe.history["loss"][-1] > losses[0]


def test_summed_loss_and_minibatches_get_proportionally_smaller_steps(seeded):
    X = _design(seeded, 64, 3)
    mean_lr, _ = squared_error_lr(X, True, 1, "mean", None)
    sum_lr, _ = squared_error_lr(X, True, 1, "sum", None)
    assert sum_lr == pytest.approx(mean_lr / 64, rel=1e-12)
    one_row, _ = squared_error_lr(X, True, 1, "mean", 1)
    rows = torch.cat([X, torch.ones(64, 1, dtype=torch.float64)], 1)
    assert one_row == pytest.approx(1 / (2 * float((rows ** 2).sum(1).max())), rel=1e-12)
    batch_lr, reason = squared_error_lr(X, True, 1, "mean", 8)
    assert one_row < batch_lr < mean_lr and "minibatch (8 rows)" in reason


def test_minibatch_step_fits_without_diverging(seeded):
    X = _design(seeded, 64, 3)
    y = X @ torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64) + 1.0
    lr, _ = squared_error_lr(X, True, 1, "mean", 8)
    result = pyfit.fit("linear", X, y, lr=lr, epochs=50, batch_size=8, shuffle=True, seed=0, tol=None)
    assert result.stop_reason == "completed"
    assert max(result.history["loss"]) <= result.history["loss"][0] * (1 + 1e-9)


def test_range_test_leaves_model_and_random_state_alone_and_plots(seeded, tmp_path):
    X = torch.randn(100, 2, generator=seeded)
    y = torch.sin(X[:, 0]) + X[:, 1]
    torch.manual_seed(0)
    model = pyfit.MLP(2, hidden=(8,))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    found = range_test(model, pyfit.build_loss("mse"), lambda params, lr: torch.optim.Adam(params, lr=lr), X, y,
                       steps=60)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert torch.equal(rng, torch.get_rng_state())
    assert 1e-6 <= found.lr <= 1.0 and math.isfinite(found.lr)
    lowest = min(range(len(found.losses)), key=found.losses.__getitem__)
    assert found.lr == pytest.approx(found.lrs[lowest] / 10)
    path = tmp_path / "lr.png"
    found.plot(str(path))
    assert os.path.getsize(path) > 1000


def test_an_optimizer_that_takes_a_closure_keeps_its_own_lr_and_can_be_range_tested(seeded):
    X = torch.rand(30, 2, generator=seeded)
    y = X @ torch.tensor([1.0, 2.0]) + 0.01 * torch.randn(30, generator=seeded)
    result = pyfit.fit("linear", X, y, optimizer="lbfgs", epochs=5, seed=0)
    assert result.lr_chosen == 1.0 and "closure" in result.lr_reason
    found = pyfit.find_lr("linear", X, y, optimizer="lbfgs", steps=20, seed=0)
    assert len(found.lrs) >= 2 and math.isfinite(found.lr)


def _badly_scaled(dtype=torch.float64):
    # 500 rows, columns scaled x1, x10, x100, x0.1 and shifted by 50: standardizing is what makes this fit
    generator = torch.Generator().manual_seed(0)
    X = torch.randn(500, 4, dtype=dtype, generator=generator) * torch.tensor([1.0, 10.0, 100.0, 0.1], dtype=dtype)
    y = X @ torch.tensor([2.0, -0.3, 0.05, 7.0], dtype=dtype) + 0.5 * torch.randn(500, dtype=dtype,
                                                                                   generator=generator)
    return X + 50, y


@pytest.mark.parametrize("nesterov", [False, True])
def test_auto_lr_with_momentum_on_minibatches_does_not_diverge(nesterov):
    X, y = _badly_scaled()
    result = pyfit.fit("linear", X, y, standardize=True, momentum=0.9, nesterov=nesterov, batch_size=4,
                       shuffle=True, epochs=50, seed=0)
    assert "momentum 0.9" in result.lr_reason
    assert result.stop_reason == "completed"
    design = torch.cat([X, torch.ones(500, 1, dtype=X.dtype)], 1)
    least_squares = float(((design @ torch.linalg.lstsq(design, y).solution - y) ** 2).mean())
    # minibatches of 4 at a constant step end in the noise, a little above the least-squares loss
    assert result.final_loss < 1.5 * least_squares
    assert not any("diverged" in w for w in result.warnings), result.warnings


def test_momentum_shortens_the_minibatch_step_by_one_minus_momentum_and_keeps_the_full_batch_one(seeded):
    X = _design(seeded, 64, 3)
    plain, _ = squared_error_lr(X, True, 1, "mean", 8)
    heavy, reason = squared_error_lr(X, True, 1, "mean", 8, momentum=0.9)
    assert heavy == pytest.approx(0.1 * plain, rel=1e-12) and "momentum 0.9" in reason
    full, _ = squared_error_lr(X, True, 1, "mean", None)
    full_heavy, full_reason = squared_error_lr(X, True, 1, "mean", None, momentum=0.9)
    assert full_heavy == full and "momentum 0.9" in full_reason


def test_full_batch_auto_lr_with_momentum_converges(seeded):
    X = _design(seeded, 50, 4)
    y = X @ torch.randn(4, dtype=torch.float64, generator=seeded) + 3.0
    for nesterov in (False, True):
        result = pyfit.fit("linear", X, y, standardize=True, momentum=0.9, nesterov=nesterov, epochs=2000,
                           seed=0, tol=None)
        assert max(result.history["loss"]) <= result.history["loss"][0] * (1 + 1e-9)
        assert result.final_loss < 1e-6 * result.history["loss"][0]


def test_auto_lr_with_momentum_fits_the_diabetes_data_in_its_own_units():
    datasets = pytest.importorskip("sklearn.datasets")
    from sklearn.linear_model import LinearRegression

    X, y = datasets.load_diabetes(return_X_y=True, scaled=False)
    least_squares = LinearRegression().fit(X, y).score(X, y)
    X, y = torch.tensor(X, dtype=torch.float32), torch.tensor(y, dtype=torch.float32)
    result = pyfit.fit("linear", X, y, standardize=True, momentum=0.9, batch_size=4, shuffle=True, seed=0)
    assert "momentum 0.9" in result.lr_reason
    # minibatches of 4 at a constant step stop in the noise a little short of least squares
    assert result.scores["r2"] > least_squares - 0.1
    assert result.final_loss < 2 * min(result.history["loss"])
    assert not any("diverged" in w or "larger lr" in w for w in result.warnings), result.warnings


@pytest.mark.parametrize("optimizer, loss", [("adam", "mse"), ("rmsprop", "mae"), ("adagrad", "huber"),
                                             ("sgd", "sse")])
def test_a_fusable_range_test_runs_fused_and_finds_what_autograd_finds(monkeypatch, optimizer, loss):
    g = torch.Generator().manual_seed(3)
    X = torch.randn(120, 4, generator=g, dtype=torch.float64) * torch.tensor([1.0, 10.0, 0.1, 3.0],
                                                                               dtype=torch.float64)
    y = X @ torch.randn(4, generator=g, dtype=torch.float64) + 5.0
    torch.manual_seed(0)
    model = pyfit.Linear(4, dtype=torch.float64)

    def test():
        return range_test(model, pyfit.build_loss(loss),
                          lambda params, lr: pyfit.build_optimizer(optimizer, params, lr=lr), X, y)

    import pyfit._fusable as fusable
    from pyfit import _runners

    calls = []
    real = _runners.FusedLinear.epochs_at
    monkeypatch.setattr(_runners.FusedLinear, "epochs_at", lambda self, lrs: calls.append(lrs) or real(self, lrs))
    fused = test()
    assert len(calls) == 1
    monkeypatch.setattr(fusable, "fusion_plan", lambda *args: None)
    plain = test()
    assert len(calls) == 1 and fused.lrs == plain.lrs and len(fused.lrs) >= 10
    torch.testing.assert_close(torch.tensor(fused.losses), torch.tensor(plain.losses), rtol=1e-9, atol=0)
    assert fused.lr == plain.lr and fused.reason == plain.reason
