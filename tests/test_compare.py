"""pyfit.compare: every optimizer from the same start, a table and one plot, the closed form as oracle."""

import json
import math

import pytest
import torch

import pyfit

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _data(rows=60, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(rows, 3, generator=g, dtype=torch.float64)
    y = X @ torch.tensor([1.5, -2.0, 0.5], dtype=torch.float64) + 0.7 + 0.2 * torch.randn(rows, generator=g,
                                                                                           dtype=torch.float64)
    return X, y


def _closed_form_mse(X, y):
    design = torch.cat([X, torch.ones(len(X), 1, dtype=X.dtype)], 1)
    solution = torch.linalg.lstsq(design, y.unsqueeze(1)).solution
    return float(((design @ solution).squeeze(1) - y).pow(2).mean())


def test_rows_follow_the_optimizers_and_each_matches_its_own_fit():
    X, y = _data()
    optimizers = ["sgd", "adam", {"name": "sgd", "momentum": 0.9}, {"name": "lbfgs", "lr": 1.0}]
    table = pyfit.compare("linear", X, y, optimizers, lrs=0.05, epochs=60, seed=3)
    assert [row.label for row in table.rows] == ["sgd", "adam", "sgd momentum=0.9", "lbfgs",
                                                 "least squares (closed form)"]
    assert [row.settings for row in table.rows[:4]] == [{"lr": 0.05}, {"lr": 0.05}, {"lr": 0.05, "momentum": 0.9},
                                                        {"lr": 1.0}]
    # each row is the fit a user would get with the same settings and seed
    alone = pyfit.fit("linear", X, y, optimizer="sgd", lr=0.05, momentum=0.9, epochs=60, seed=3)
    row = table.rows[2]
    assert row.losses == alone.history["loss"] and row.epochs == 60 and row.stop_reason == "completed"
    with torch.no_grad():
        returned = float((alone.predict(X) - y).pow(2).mean())
    assert row.final_loss == pytest.approx(returned, rel=1e-12)
    # every optimizer starts from the same parameters: the same first loss
    first = [row.losses[0] for row in table.rows[:4]]
    assert first == pytest.approx([first[0]] * 4, rel=1e-12)


def test_the_closed_form_row_is_the_least_squares_loss_and_the_floor():
    X, y = _data()
    table = pyfit.compare("linear", X, y, ["sgd", "lbfgs"], lrs=[0.1, 1.0], epochs=50)
    reference = table.rows[-1]
    assert reference.optimizer is None and reference.stop_reason == "exact"
    assert reference.final_loss == pytest.approx(_closed_form_mse(X, y), rel=1e-9)
    assert all(row.final_loss >= reference.final_loss * (1 - 1e-9) for row in table.rows[:-1])
    lbfgs = table.rows[1]
    assert lbfgs.final_loss == pytest.approx(reference.final_loss, rel=1e-8)
    assert lbfgs.epochs_to_tol is not None and lbfgs.epochs_to_tol <= 3 and lbfgs.seconds_to_tol >= 0


def test_sum_of_squares_and_polynomials_get_their_closed_form_too():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(30, generator=g, dtype=torch.float64)
    y = 1 - 2 * x + 3 * x ** 2 + 0.05 * torch.randn(30, generator=g, dtype=torch.float64)
    table = pyfit.compare("polynomial", x, y, ["sgd"], lrs=0.01, epochs=5, loss="sse",
                          fit_kwargs={"model_kwargs": {"degree": 2}})
    design = torch.stack([x, x ** 2, torch.ones_like(x)], 1)
    solution = torch.linalg.lstsq(design, y.unsqueeze(1)).solution.squeeze(1)
    assert table.rows[-1].final_loss == pytest.approx(float((design @ solution - y).pow(2).sum()), rel=1e-9)


def test_no_closed_form_row_where_there_is_none():
    X, y = _data(rows=20)
    mlp = pyfit.compare("mlp", X, y, ["adam"], lrs=0.01, epochs=3, fit_kwargs={"model_kwargs": {"hidden": [4]}})
    mae = pyfit.compare("linear", X, y, ["sgd"], lrs=0.01, epochs=3, loss="mae")
    off = pyfit.compare("linear", X, y, ["sgd"], lrs=0.01, epochs=3, reference=False)
    assert [len(t.rows) for t in (mlp, mae, off)] == [1, 1, 1]


def test_epochs_to_tol_is_the_first_epoch_within_tol_of_the_best():
    X, y = _data()
    table = pyfit.compare("linear", X, y, ["sgd"], lrs=0.1, epochs=200, tol=1e-2)
    row, best = table.rows[0], table.best_loss
    after = row.losses[1:] + [row.final_loss]  # the loss after each epoch
    threshold = best + 1e-2 * (table.start_loss - best)
    assert after[row.epochs_to_tol - 1] <= threshold < after[row.epochs_to_tol - 2]
    assert table.start_loss == row.losses[0] and best == pytest.approx(_closed_form_mse(X, y), rel=1e-9)


def test_a_diverging_optimizer_is_a_row_that_says_so():
    X, y = _data(rows=20)
    table = pyfit.compare("linear", 100 * X, y, ["sgd", "lbfgs"], lrs=[10.0, 1.0], epochs=30)
    sgd = table.rows[0]
    assert sgd.stop_reason == "non_finite" and sgd.epochs < 30 and sgd.epochs_to_tol is None
    assert "non_finite" in table.to_text()


def test_validation_loss_of_each_returned_model():
    X, y = _data(rows=80)
    table = pyfit.compare("linear", X[:60], y[:60], ["lbfgs"], lrs=1.0, epochs=5, validation_data=(X[60:], y[60:]))
    for row in table.rows:
        assert row.val_loss is not None
    model = table.rows[0].result.model
    assert table.rows[0].val_loss == pytest.approx(float((pyfit.predict(model, X[60:]) - y[60:]).pow(2).mean()))
    assert "val loss" in table.to_text().splitlines()[0]


def test_text_dicts_and_plot(tmp_path):
    X, y = _data(rows=30)
    table = pyfit.compare("linear", X, y, ["sgd", "adam"], lrs=0.1, epochs=40)
    text = str(table)
    assert text == table.to_text()
    header, rule, *rows = text.splitlines()
    assert header.split()[:3] == ["optimizer", "settings", "final"] and set(rule) <= {"-", " "}
    assert rows[0].startswith("sgd ") and rows[2].startswith("least squares (closed form)")
    dicts = table.to_dicts()
    assert json.loads(json.dumps(dicts)) == dicts
    assert [d["label"] for d in dicts] == ["sgd", "adam", "least squares (closed form)"]
    figure = table.plot(tmp_path / "compare.png")
    axes = figure.axes[0]
    assert axes.get_yscale() == "log" and axes.get_xlabel() == "epoch" and "loss" in axes.get_ylabel()
    assert "linear model" in axes.get_title() and "mse loss" in axes.get_title()
    assert [t.get_text() for t in axes.get_legend().get_texts()] == ["sgd", "adam", "least squares (closed form)"]
    assert len(axes.lines) == 3
    reference = axes.lines[2]
    assert list(reference.get_ydata()) == [table.rows[2].final_loss] * 2
    assert (tmp_path / "compare.png").read_bytes().startswith(PNG_MAGIC)


@pytest.mark.parametrize("kwargs, message", [
    (dict(optimizers=["sgd", "nadam-typo"]), "unknown optimizer 'nadam-typo'"),
    (dict(optimizers=[{"momentum": 0.9}]), "a dict with a 'name'"),
    (dict(optimizers=[]), "at least one optimizer"),
    (dict(optimizers=["sgd", "adam"], lrs=[0.1]), "lrs has 1 values but there are 2 optimizers"),
    (dict(optimizers=["sgd"], tol=0.0), "tol must be a finite number > 0"),
    (dict(optimizers=["sgd"], fit_kwargs={"epochs": 3}), "fit_kwargs may not set epochs"),
    (dict(optimizers=["sgd", {"name": "adam", "lr": -1.0}]), "lr must be"),
])
def test_bad_arguments_are_refused_before_any_fit(kwargs, message, monkeypatch):
    import sys

    fit_module = sys.modules["pyfit.fit"]  # the module; pyfit.fit is the function
    calls = []
    monkeypatch.setattr(fit_module, "fit", lambda *a, **k: calls.append(1))
    with pytest.raises((pyfit.InputError, pyfit.UnknownNameError), match=message):
        pyfit.compare("linear", torch.rand(10, 2), torch.rand(10), **kwargs)
    assert calls == []


def test_a_model_object_is_copied_so_every_optimizer_starts_from_it():
    X, y = _data(rows=20)
    model = pyfit.Linear(3).double()
    start = [p.detach().clone() for p in model.parameters()]
    table = pyfit.compare(model, X, y, ["sgd", "adam"], lrs=0.1, epochs=5)
    assert all(torch.equal(a, b) for a, b in zip(start, model.parameters()))
    # the same start; the fused (sgd) and autograd (adam) paths may round the loss differently
    assert table.rows[0].losses[0] == pytest.approx(table.rows[1].losses[0], rel=1e-12)
    assert table.model == "Linear" and not math.isnan(table.rows[-1].final_loss)


def test_closed_form_of_a_rank_deficient_design_is_still_the_least_squares_loss():
    import numpy as np

    X, y = _data(rows=30)
    X = torch.cat([X, X[:, :1]], 1)  # a repeated column: many solutions, one least loss
    table = pyfit.compare("linear", X, y, ["sgd"], lrs=0.05, epochs=3)
    design = np.c_[X.numpy(), np.ones(len(X))]
    residual = design @ np.linalg.lstsq(design, y.numpy(), rcond=None)[0] - y.numpy()
    assert table.rows[-1].final_loss == pytest.approx(float((residual ** 2).mean()), rel=1e-9)


def test_several_outputs_share_one_closed_form_row():
    import numpy as np

    X, y = _data(rows=40)
    Y = torch.stack([y, 2 * y - X[:, 0]], 1)  # (40, 2)
    table = pyfit.compare("linear", X, Y, ["lbfgs"], lrs=1.0, epochs=5)
    design = np.c_[X.numpy(), np.ones(len(X))]
    residual = design @ np.linalg.lstsq(design, Y.numpy(), rcond=None)[0] - Y.numpy()
    assert table.rows[-1].final_loss == pytest.approx(float((residual ** 2).mean()), rel=1e-9)
    assert table.rows[0].final_loss == pytest.approx(table.rows[-1].final_loss, rel=1e-6)
