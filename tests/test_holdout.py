"""Held-out rows: the seeded split, validation_data, per-epoch val_loss and metrics, early stopping on them."""

import json

import pytest
import torch

import pyfit
from pyfit.holdout import split_rows
from pyfit.metrics import r2


def _data(n=120):
    generator = torch.Generator().manual_seed(0)
    X = torch.randn(n, 3, dtype=torch.float64, generator=generator) * torch.tensor([1.0, 100.0, 0.01],
                                                                                    dtype=torch.float64)
    y = X @ torch.tensor([1.0, 0.02, 50.0], dtype=torch.float64) + torch.randn(n, dtype=torch.float64,
                                                                               generator=generator)
    return X, y


def test_the_split_is_seeded_disjoint_and_complete():
    X, y = _data()
    X_train, y_train, X_val, y_val = split_rows(X, y, 0.25, seed=3)
    assert X_val.shape[0] == 30 and X_train.shape[0] == 90
    rows = {tuple(r.tolist()) for r in torch.cat([X_train, X_val])}
    assert rows == {tuple(r.tolist()) for r in X}
    again = split_rows(X, y, 0.25, seed=3)
    assert torch.equal(again[2], X_val) and not torch.equal(split_rows(X, y, 0.25, seed=4)[2], X_val)


@pytest.mark.parametrize("bad", [0.0, 1.0, 1.5, -0.1, "0.2", True])
def test_a_bad_split_is_refused_before_anything_changes(bad):
    X, y = _data()
    model = pyfit.Linear(3).double()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(pyfit.InputError, match="validation_split"):
        pyfit.fit(model, X, y, validation_split=bad, epochs=3)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


def test_history_holds_val_loss_and_metrics_of_each_epochs_model():
    X, y = _data()
    X_val, y_val = X[:20] + 0.1, y[:20]
    result = pyfit.fit("linear", X, y, standardize=True, validation_data=(X_val, y_val), metrics=["r2", "mae"],
                       epochs=30, seed=0)
    history = result.history
    assert all(len(history[key]) == 30 for key in ("val_loss", "r2", "val_r2", "mae", "val_mae"))
    with torch.no_grad():  # the last entries are those of the model as returned
        pred_val, pred = result.model(X_val)[:, 0], result.model(X)[:, 0]
    assert history["val_loss"][-1] == pytest.approx(float(((pred_val - y_val) ** 2).mean()), rel=1e-12)
    assert history["r2"][-1] == pytest.approx(r2(y, pred), rel=1e-12)
    assert history["val_mae"][-1] == pytest.approx(float((pred_val - y_val).abs().mean()), rel=1e-12)
    assert result.scores["val_r2"] == pytest.approx(history["val_r2"][-1], rel=1e-12)


def test_scaling_and_lr_come_from_the_training_rows_only():
    X, y = _data()
    result = pyfit.fit("linear", X, y, standardize=True, validation_split=0.25, epochs=5, seed=3)
    X_train = split_rows(X, y, 0.25, seed=3)[0]
    torch.testing.assert_close(result.model.mean, X_train.mean(0), rtol=1e-12, atol=0)
    alone = pyfit.fit("linear", X_train, split_rows(X, y, 0.25, seed=3)[1], standardize=True, epochs=5, seed=3)
    assert result.lr_chosen == alone.lr_chosen


def test_early_stopping_on_val_loss_restores_the_best_epoch():
    X, y = _data(60)
    stopper = pyfit.EarlyStopping(patience=3, monitor="val_loss", restore_best=True)
    # minibatches of 2 at a long step: the held-out loss bounces, so the last epoch is not the best
    result = pyfit.fit("linear", X, y, standardize=True, validation_split=0.3, batch_size=2, shuffle=True,
                       lr=0.3, epochs=200, seed=0, callbacks=[stopper])
    assert result.stop_reason == "early_stopping"
    assert min(result.history["val_loss"]) < result.history["val_loss"][-1]
    assert result.scores["val_loss"] == pytest.approx(min(result.history["val_loss"]), rel=1e-9)


def test_monitoring_what_is_not_recorded_is_refused():
    X, y = _data()
    with pytest.raises(pyfit.InputError, match="monitors 'val_loss'.*give validation_data or validation_split"):
        pyfit.fit("linear", X, y, epochs=3, callbacks=[pyfit.EarlyStopping(monitor="val_loss")])
    with pytest.raises(pyfit.InputError, match="unknown metric 'r3'"):
        pyfit.fit("linear", X, y, epochs=3, metrics=["r3"])
    with pytest.raises(pyfit.InputError, match="not both"):
        pyfit.fit("linear", X, y, epochs=3, validation_split=0.2, validation_data=(X, y))


def test_the_cli_reports_train_and_validation_scores(tmp_path, capsys):
    from pyfit.cli import main

    X, y = _data()
    path = tmp_path / "d.csv"
    rows = "\n".join(",".join(repr(float(v)) for v in [*x, t]) for x, t in zip(X.tolist(), y.tolist()))
    path.write_text("a,b,c,y\n" + rows + "\n")
    assert main(["fit", str(path), "--target", "y", "--validation-split", "0.2", "--seed", "0"]) == 0
    out = capsys.readouterr().out
    assert "R² (train)" in out and "R² (valid.)" in out
    assert main(["fit", str(path), "--target", "y", "--validation-split", "0.2", "--seed", "0", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert 0.5 < report["val_r2"] <= 1 and report["val_loss"] > 0 and report["r2"] > 0.5
