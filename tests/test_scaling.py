"""Standardized models: the statistics, the forward, the fused path and the parameters in data units."""

import numpy as np
import pytest
import torch

import pyfit
from pyfit.scaling import (Standardized, StandardizedLinearInParameters, feature_statistics,
                           parameters_in_data_units, standardized)


def _raw_data(generator, n=40, d=3):
    # columns of very different magnitudes and offsets, as real data has
    scales = torch.tensor([1e3, 1e-2, 7.0], dtype=torch.float64)[:d]
    offsets = torch.tensor([5e3, -3.0, 0.5], dtype=torch.float64)[:d]
    return torch.randn(n, d, dtype=torch.float64, generator=generator) * scales + offsets


def test_statistics_match_numpy_and_constant_columns_keep_scale_one(seeded):
    X = _raw_data(seeded)
    X[:, 1] = 4.0
    mean, scale = feature_statistics(X)
    np.testing.assert_allclose(mean.numpy(), X.numpy().mean(0), rtol=1e-12)
    expected = X.numpy().std(0)
    expected[1] = 1.0
    np.testing.assert_allclose(scale.numpy(), expected, rtol=1e-12)


def test_forward_is_the_inner_model_on_standardized_features(seeded):
    X = _raw_data(seeded)
    for inner in (pyfit.Linear(3, 2).double(), pyfit.MLP(3, hidden=(5,)).double()):
        model = standardized(inner, X)
        mean, scale = X.mean(0), X.std(0, correction=0)
        torch.testing.assert_close(model(X), inner((X - mean) / scale))
    assert isinstance(standardized(pyfit.Linear(3), X.float()), StandardizedLinearInParameters)
    assert type(standardized(pyfit.MLP(3), X.float())) is Standardized


@pytest.mark.parametrize("outputs", [1, 3])
def test_linear_parameters_in_data_units_predict_like_the_model(seeded, outputs):
    X = _raw_data(seeded)
    model = standardized(pyfit.Linear(3, outputs).double(), X)
    with torch.no_grad():
        model.weight.copy_(torch.randn(outputs, 3, dtype=torch.float64, generator=seeded))
        model.bias.copy_(torch.randn(outputs, dtype=torch.float64, generator=seeded))
    weight, bias = parameters_in_data_units(model)
    torch.testing.assert_close(X @ weight.T + bias, model(X))


def test_polynomial_parameters_in_data_units_match_numpy_polyval(seeded):
    x = torch.rand(30, 1, dtype=torch.float64, generator=seeded) * 50 + 20  # far from 0: the expansion matters
    model = standardized(pyfit.Polynomial(degree=3).double(), x)
    with torch.no_grad():
        model.weight.copy_(torch.randn(1, 3, dtype=torch.float64, generator=seeded))
        model.bias.fill_(0.7)
    weight, bias = parameters_in_data_units(model)
    coefficients = [*weight[0].flip(0).tolist(), float(bias[0])]  # highest power first, for polyval
    np.testing.assert_allclose(np.polyval(coefficients, x[:, 0].numpy()), model(x)[:, 0].detach().numpy(),
                               rtol=1e-9)


def test_a_model_without_bias_is_scaled_not_centred(seeded):
    X = _raw_data(seeded)
    model = standardized(pyfit.Linear(3, bias=False).double(), X)
    assert torch.equal(model.mean, torch.zeros(3, dtype=torch.float64))
    assert torch.allclose(model(torch.zeros(1, 3, dtype=torch.float64)), torch.zeros(1, 1, dtype=torch.float64))


def test_other_models_have_no_parameters_in_data_units(seeded):
    assert parameters_in_data_units(standardized(pyfit.MLP(3), _raw_data(seeded).float())) is None


def test_standardized_linear_fit_takes_the_fused_path_and_matches_plain_torch(seeded):
    X = _raw_data(seeded)
    y = X @ torch.tensor([2e-3, 30.0, -1.0], dtype=torch.float64) + 4.0
    model = standardized(pyfit.Linear(3).double(), X)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    result = pyfit.fit(model, X, y, lr=0.05, epochs=20, tol=None)
    assert result.backend.endswith("fused-linear")
    # the oracle: nn.Linear on the standardized features, torch's SGD, F.mse_loss
    oracle = torch.nn.Linear(3, 1).double()
    oracle.load_state_dict({"weight": start["model.weight"], "bias": start["model.bias"]})
    Z = (X - X.mean(0)) / X.std(0, correction=0)
    optimizer = torch.optim.SGD(oracle.parameters(), lr=0.05)
    for _ in range(20):
        optimizer.zero_grad()
        torch.nn.functional.mse_loss(oracle(Z)[:, 0], y).backward()
        optimizer.step()
    torch.testing.assert_close(model.weight, oracle.weight)
    torch.testing.assert_close(model.bias, oracle.bias)


def _fit_data(generator):
    X = _raw_data(generator)
    return X, X @ torch.tensor([2e-3, 30.0, -1.0], dtype=torch.float64) + 4.0


def test_a_standardized_fit_predicts_raw_data_and_survives_a_checkpoint(seeded, tmp_path):
    X, y = _fit_data(seeded)
    result = pyfit.fit("linear", X, y, standardize=True, seed=0)
    assert isinstance(result.model, Standardized) and result.stop_reason == "converged"
    weight, bias = parameters_in_data_units(result.model)
    torch.testing.assert_close(weight[0], torch.tensor([2e-3, 30.0, -1.0], dtype=torch.float64), rtol=1e-4, atol=0)
    assert float(bias[0]) == pytest.approx(4.0, rel=1e-3)
    path = pyfit.save_checkpoint(tmp_path / "fit.pt", result)
    loaded = pyfit.load_checkpoint(path).model
    assert isinstance(loaded, Standardized)
    torch.testing.assert_close(pyfit.predict(loaded, X), pyfit.predict(result.model, X), rtol=0, atol=0)
    torch.testing.assert_close(pyfit.predict(loaded, X), y, rtol=1e-4, atol=1e-3)


def test_resuming_a_standardized_fit_is_exact_and_keeps_its_statistics(seeded, tmp_path):
    X, y = _fit_data(seeded)
    whole = pyfit.fit("linear", X, y, standardize=True, lr=0.05, epochs=20, seed=0)
    first = pyfit.fit("linear", X, y, standardize=True, lr=0.05, epochs=10, seed=0,
                      checkpoint=str(tmp_path / "half.pt"))
    resumed = pyfit.fit(None, X[:5], y[:5], epochs=20, resume_from=str(tmp_path / "half.pt"))
    # the statistics are those of the first fit's rows, not recomputed from the rows it resumes on
    assert torch.equal(resumed.model.mean, first.model.mean)
    assert resumed.history["loss"][:10] == whole.history["loss"][:10]
    with pytest.raises(pyfit.InputError, match="was fit with standardized features"):
        pyfit.fit(None, X, y, epochs=20, standardize=False, resume_from=str(tmp_path / "half.pt"))


def test_resumed_on_the_same_rows_the_parameters_are_bit_for_bit_those_of_one_fit(seeded, tmp_path):
    X, y = _fit_data(seeded)
    whole = pyfit.fit("linear", X, y, standardize=True, lr=0.05, epochs=20, seed=0)
    pyfit.fit("linear", X, y, standardize=True, lr=0.05, epochs=10, seed=0, checkpoint=str(tmp_path / "half.pt"))
    resumed = pyfit.fit(None, X, y, epochs=20, resume_from=str(tmp_path / "half.pt"))
    assert torch.equal(resumed.model.weight, whole.model.weight) and torch.equal(resumed.model.bias, whole.model.bias)
    assert resumed.history == whole.history


def test_pyfit_predict_applies_the_saved_scaling(seeded, tmp_path, capsys):
    from pyfit.cli import main

    X, y = _fit_data(seeded)
    data = tmp_path / "data.csv"
    np.savetxt(data, torch.cat([X, y[:, None]], 1).numpy(), delimiter=",", header="a,b,c,y", comments="")
    assert main(["fit", str(data), "--target", "y", "--save", str(tmp_path / "fit.pt"), "--quiet"]) == 0
    assert main(["predict", str(tmp_path / "fit.pt"), str(data)]) == 0
    lines = capsys.readouterr().out.splitlines()
    predictions = np.array([float(v) for v in lines[1:]])
    np.testing.assert_allclose(predictions, y.numpy(), rtol=1e-4, atol=1e-3)
