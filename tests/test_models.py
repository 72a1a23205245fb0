"""Built-in models: shapes, design matrices, configs."""

import pytest
import torch

import pyfit


def test_linear_design_matrix_is_the_input_and_config_rebuilds_it():
    model = pyfit.Linear(3, out_features=2)
    X = torch.randn(4, 3)
    assert model.design_matrix(X) is X
    twin = pyfit.build_model("linear", **model.config)
    assert twin.weight.shape == model.weight.shape


def test_polynomial_forward_is_its_design_matrix_times_weight():
    model = pyfit.Polynomial(degree=3, dtype=torch.float64)
    x = torch.randn(6, 1, dtype=torch.float64)
    expected = sum(model.weight[0, k] * x[:, 0] ** (k + 1) for k in range(3)) + model.bias
    torch.testing.assert_close(model(x)[:, 0], expected)


@pytest.mark.parametrize("kwargs, message", [
    (dict(in_features=2), "takes 1 input feature, got in_features=2"),
    (dict(degree=0), "degree must be an integer >= 1"),
])
def test_polynomial_refuses_bad_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        pyfit.Polynomial(**kwargs)


def test_mlp_layers_and_activation():
    model = pyfit.MLP(3, out_features=2, hidden=(8, 4), activation="tanh")
    linear = [m for m in model if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linear] == [(3, 8), (8, 4), (4, 2)]
    assert sum(isinstance(m, torch.nn.Tanh) for m in model) == 2
    with pytest.raises(ValueError, match="unknown activation 'swish'"):
        pyfit.MLP(3, activation="swish")


def test_mlp_fits_a_curve():
    torch.manual_seed(0)
    x = torch.linspace(-1, 1, 64)
    y = x ** 2
    result = pyfit.fit("mlp", x, y, optimizer="adam", lr=0.01, epochs=400, seed=0,
                       model_kwargs={"hidden": (16, 16), "activation": "tanh"})
    assert result.final_loss < 1e-2


@pytest.mark.parametrize("cls", [pyfit.Linear, pyfit.Polynomial])
def test_the_linear_models_declare_their_forward_where_it_is_defined(cls):
    # fit reads the flag on the class that defines forward and design_matrix
    for method in ("forward", "design_matrix"):
        owner = next(c for c in cls.__mro__ if method in vars(c))
        assert owner is cls and vars(owner)["linear_in_parameters"] is True


@pytest.mark.parametrize("make", [lambda: pyfit.Linear(3, out_features=2, dtype=torch.float64),
                                  lambda: pyfit.Polynomial(degree=3, out_features=2, dtype=torch.float64)])
def test_forward_is_the_design_matrix_times_the_weight_plus_the_bias(make):
    model = make()
    X = torch.randn(5, model.in_features, dtype=torch.float64)
    torch.testing.assert_close(model(X), model.design_matrix(X) @ model.weight.T + model.bias)


def test_polynomial_keeps_its_state_dict_keys():
    assert set(pyfit.Polynomial(degree=2).state_dict()) == {"linear.weight", "linear.bias"}
