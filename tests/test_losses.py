"""Losses against closed forms and torch, and the one calling convention."""

import pytest
import torch
import torch.nn.functional as F

import pyfit
from pyfit.losses import as_loss


def random_pair(seed, shape=(20,)):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=torch.float64), torch.randn(shape, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("seed", range(5))
def test_builtin_losses_match_torch(seed):
    pred, target = random_pair(seed)
    torch.testing.assert_close(pyfit.build_loss("mse")(pred, target), F.mse_loss(pred, target))
    torch.testing.assert_close(pyfit.build_loss("sse")(pred, target), F.mse_loss(pred, target, reduction="sum"))
    torch.testing.assert_close(pyfit.build_loss("mae")(pred, target), F.l1_loss(pred, target))
    torch.testing.assert_close(pyfit.build_loss("huber", delta=0.7)(pred, target),
                               F.huber_loss(pred, target, delta=0.7))


@pytest.mark.parametrize("seed", range(5))
def test_orthogonal_loss_is_the_mean_squared_point_to_line_distance(seed):
    g = torch.Generator().manual_seed(seed)
    model = pyfit.Linear(1, dtype=torch.float64)
    x = torch.randn(30, 1, generator=g, dtype=torch.float64)
    y = torch.randn(30, generator=g, dtype=torch.float64)
    a, b = model.weight.item(), model.bias.item()
    # distance from (x, y) to the line a x - y + b = 0, by the textbook formula
    distance = (a * x[:, 0] - y + b).abs() / (a * a + 1) ** 0.5
    loss = pyfit.build_loss("orthogonal", scale=0.5)(model(x).squeeze(1), y, model=model)
    torch.testing.assert_close(loss, 0.5 * (distance ** 2).mean())


def test_orthogonal_loss_refuses_a_model_without_weight():
    with pytest.raises(TypeError, match="needs a model with a `weight`"):
        pyfit.build_loss("orthogonal")(torch.ones(2), torch.ones(2), model=torch.nn.ReLU())


def test_two_argument_functions_and_torch_modules_are_adapted():
    pred, target = random_pair(0)
    assert torch.equal(as_loss(torch.nn.L1Loss())(pred, target, model=None), F.l1_loss(pred, target))
    assert torch.equal(as_loss(lambda p, t: (p - t).abs().max())(pred, target, model=None),
                       (pred - target).abs().max())


def test_a_registered_plain_function_is_a_loss():
    def half_squares(pred, target):
        return ((pred - target) ** 2).sum() / 2

    pyfit.LOSSES.register("half-squares-test", half_squares)
    try:
        pred, target = random_pair(1)
        loss = pyfit.build_loss("half-squares-test")
        torch.testing.assert_close(loss(pred, target, model=None), half_squares(pred, target))
        result = pyfit.fit("linear", torch.rand(10), torch.rand(10), loss="half-squares-test", epochs=3)
        assert result.backend.endswith("autograd")
    finally:
        pyfit.LOSSES.unregister("half-squares-test")


def test_loss_given_as_a_function_of_the_model_gets_it():
    seen = []

    def loss(pred, target, *, model):
        seen.append(model)
        return ((pred - target) ** 2).mean()

    # a given lr: lr="auto" would first run its range test on a copy of the model
    result = pyfit.fit("linear", torch.rand(10), torch.rand(10), loss=loss, lr=0.1, epochs=2)
    assert seen and all(m is result.model for m in seen)


@pytest.mark.parametrize("name, reduction", [("mse", "mean"), ("sse", "sum")])
@pytest.mark.parametrize("numel", [1000, 1 << 17])
def test_squared_error_takes_the_fused_op_only_where_it_pays(monkeypatch, name, reduction, numel):
    import pyfit.losses as losses

    calls = []
    fused = losses.ops.mse_loss
    monkeypatch.setattr(losses.ops, "mse_loss", lambda *args: calls.append(args) or fused(*args))
    pred, target = random_pair(numel, (numel,))
    pred.requires_grad_(True)
    value = pyfit.build_loss(name)(pred, target)
    value.backward()
    assert len(calls) == (numel >= losses._FUSED_MSE_MIN_ELEMENTS)
    expected = pred.detach().clone().requires_grad_(True)
    F.mse_loss(expected, target, reduction=reduction).backward()
    torch.testing.assert_close(value, F.mse_loss(pred.detach(), target, reduction=reduction))
    torch.testing.assert_close(pred.grad, expected.grad)
