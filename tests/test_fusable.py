"""Where the fused linear kernel may run, decided from facts that do not need a GPU to check.

Each refusal is checked against a fit that is fused, changed in that one respect.
"""

import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import pyfit
from pyfit import losses, optimizers
from pyfit._fusable import FusionPlan, fusion_plan
from pyfit.ops._checks import CUDA_MAX_LINEAR_OUTPUTS, linear_kernel_takes

ROOT = Path(__file__).resolve().parents[1]


def test_the_cuda_output_limit_is_the_one_the_kernel_is_built_with():
    header = (ROOT / "csrc" / "cuda" / "kernels.h").read_text()
    built = int(re.search(r"kLinearMaxOutputs\s*=\s*(\d+)", header).group(1))
    assert built == CUDA_MAX_LINEAR_OUTPUTS


def test_more_outputs_than_the_cuda_kernel_takes_leave_the_fused_path():
    def weight(outputs, cuda):
        return SimpleNamespace(is_cuda=cuda, shape=(outputs, 3))

    assert linear_kernel_takes(weight(CUDA_MAX_LINEAR_OUTPUTS, cuda=True))
    assert not linear_kernel_takes(weight(CUDA_MAX_LINEAR_OUTPUTS + 1, cuda=True))
    assert linear_kernel_takes(weight(10 * CUDA_MAX_LINEAR_OUTPUTS, cuda=False))  # the CPU kernel takes any K


def _fit_parts(optimizer=torch.optim.Adam, dtype=torch.float64, **settings):
    model = pyfit.Linear(3, 2, dtype=dtype)
    X = torch.randn(8, 3, dtype=dtype)
    return model, pyfit.build_loss("mse"), optimizer(model.parameters(), **{"lr": 0.1, **settings}), X


def _adam_with_state(step_of_bias=1.0, **tweaks):
    """Adam over a linear model after one step, its state then changed by ``tweaks[key](state)``."""
    model, loss, optimizer, X = _fit_parts()
    loss(model(X), torch.zeros(8, 2, dtype=X.dtype), model=model).backward()
    optimizer.step()
    optimizer.state[model.bias]["step"].fill_(step_of_bias)
    for key, change in tweaks.items():
        change(optimizer.state[getattr(model, key)])
    return model, loss, optimizer, X


@pytest.mark.parametrize("optimizer", [optimizers.SGD, optimizers.Adam, optimizers.AdamW, optimizers.RMSprop, optimizers.Adagrad,
                                       torch.optim.SGD, torch.optim.Adam, torch.optim.AdamW, torch.optim.RMSprop,
                                       torch.optim.Adagrad])
def test_every_built_in_optimizer_and_its_torch_class_is_fused(optimizer):
    assert fusion_plan(*_fit_parts(optimizer)) is not None


def test_foreach_computes_the_same_update_and_is_fused():
    assert fusion_plan(*_fit_parts(torch.optim.Adam, foreach=True)) is not None
    assert fusion_plan(*_adam_with_state()) is not None  # a whole, consistent state after a step


@pytest.mark.parametrize("optimizer, settings", [
    (torch.optim.Adam, dict(fused=True)),
    (torch.optim.SGD, dict(fused=True)),
    (torch.optim.Adagrad, dict(fused=True)),
    (torch.optim.Adam, dict(capturable=True)),
    (torch.optim.RMSprop, dict(capturable=True)),
    (torch.optim.Adam, dict(differentiable=True)),
    (torch.optim.SGD, dict(differentiable=True)),
    (torch.optim.Adam, dict(lr=torch.tensor(0.01))),
    (torch.optim.SGD, dict(lr=torch.tensor(0.01))),
    (torch.optim.Adam, dict(betas=(torch.tensor(0.9), torch.tensor(0.999)))),
])
def test_settings_under_which_torch_computes_otherwise_take_autograd(optimizer, settings):
    assert fusion_plan(*_fit_parts(optimizer, **settings)) is None


class _AdamSubclass(torch.optim.Adam):
    pass


def test_a_subclass_of_a_fusable_optimizer_takes_autograd():
    assert fusion_plan(*_fit_parts(_AdamSubclass)) is None


def test_complex_and_sparse_parameters_take_autograd():
    model, loss, optimizer, X = _fit_parts(dtype=torch.complex128)
    assert fusion_plan(model, loss, optimizer, X) is None
    model, loss, _, X = _fit_parts()
    model.weight = torch.nn.Parameter(model.weight.detach().to_sparse())
    assert fusion_plan(model, loss, torch.optim.Adam(model.parameters()), X) is None


@pytest.mark.parametrize("tweak", [
    "half-made state", "another dtype", "another device", "another shape", "step differs", "step not whole",
    "entry missing", "step past float32's whole numbers",
])
def test_state_the_fused_loop_does_not_reproduce_takes_autograd(tweak):
    changes = {
        "half-made state": dict(bias=dict.clear),
        "another dtype": dict(weight=lambda s: s.update(exp_avg=s["exp_avg"].float())),
        "another device": dict(weight=lambda s: s.update(exp_avg_sq=s["exp_avg_sq"].to("meta"))),
        "another shape": dict(bias=lambda s: s.update(exp_avg=s["exp_avg"][:1])),
        "step differs": dict(weight=lambda s: s["step"].fill_(2.0)),
        "step not whole": dict(weight=lambda s: s["step"].fill_(1.5), bias=lambda s: s["step"].fill_(1.5)),
        "entry missing": dict(weight=lambda s: s.pop("exp_avg_sq")),
        # torch's step += 1 no longer changes a float32 count of 2**24
        "step past float32's whole numbers": dict(weight=lambda s: s.update(step=torch.tensor(2.0 ** 24)),
                                                  bias=lambda s: s.update(step=torch.tensor(2.0 ** 24))),
    }
    assert fusion_plan(*_adam_with_state(**changes[tweak])) is None


def test_half_made_momentum_buffers_take_autograd():
    model, loss, optimizer, X = _fit_parts(torch.optim.SGD, momentum=0.9)
    optimizer.state[model.weight]["momentum_buffer"] = torch.zeros_like(model.weight)
    assert fusion_plan(model, loss, optimizer, X) is None
    optimizer.state[model.bias]["momentum_buffer"] = torch.zeros_like(model.bias)
    assert fusion_plan(model, loss, optimizer, X) is not None


class _SquaresOfHalf(losses.MSELoss):
    """Computes something else than its parent: its declaration does not carry over."""

    def __call__(self, pred, target, *, model=None):
        return super().__call__(pred / 2, target / 2, model=model)


class _QuietMSE(losses.MSELoss):
    """Changes nothing the loss computes: still fused."""


def test_a_loss_is_fused_only_as_its_call_is_declared():
    model, _, optimizer, X = _fit_parts()
    assert fusion_plan(model, _SquaresOfHalf(), optimizer, X) is None
    assert fusion_plan(model, _QuietMSE(), optimizer, X) == FusionPlan("squared", "mean", 1.0, "adam")
    assert fusion_plan(model, torch.nn.L1Loss(), optimizer, X) is None  # torch's losses declare nothing


@pytest.mark.parametrize("name, settings, plan", [
    ("mse", {}, ("squared", "mean", 1.0)),
    ("sse", {}, ("squared", "sum", 1.0)),
    ("mae", {}, ("absolute", "mean", 1.0)),
    ("huber", {"delta": 0.3}, ("huber", "mean", 0.3)),
])
def test_each_built_in_loss_declares_the_loss_the_loop_computes(name, settings, plan):
    model, _, optimizer, X = _fit_parts(torch.optim.AdamW)
    assert fusion_plan(model, pyfit.build_loss(name, **settings), optimizer, X) == FusionPlan(*plan, "adam")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("loss, optimizer, fused", [
    ("mse", "sgd", True), ("sse", "sgd", True), ("mae", "sgd", False), ("huber", "sgd", False),
    ("mse", "adam", False), ("mse", "rmsprop", False),
])
def test_on_cuda_only_the_squared_error_under_sgd_is_fused(loss, optimizer, fused):
    X = torch.randn(32, 3, device="cuda")
    model = pyfit.Linear(3, device="cuda")
    result = pyfit.fit(model, X, X.sum(1), loss=loss, optimizer=optimizer, lr=0.01, epochs=3)
    assert result.backend.endswith(":fused-linear" if fused else ":autograd")
