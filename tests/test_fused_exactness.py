"""The fused linear path runs only where it computes what autograd with torch.optim.SGD would.

The oracle is the same fit on the autograd path with torch's own pieces,
``torch.optim.SGD`` and ``torch.nn.MSELoss``, or a property autograd guarantees
(a parameter without a gradient does not move).
"""

import copy
import os
import signal
from unittest import mock

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pyfit
from pyfit import _runners


def _data(n=24, d=2, k=1, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g, dtype=dtype)
    y = X @ torch.randn(d, k, generator=g, dtype=dtype) + 0.5 + 0.1 * torch.randn(n, k, generator=g, dtype=dtype)
    return X, y


def _torch_loss(loss):
    return torch.nn.MSELoss(reduction="mean" if loss == "mse" else "sum")


def _pair(model, X, y, *, loss="mse", **kwargs):
    """The same fit on pyfit's path (fused where it applies) and on the autograd path with torch's pieces."""
    ours = pyfit.fit(copy.deepcopy(model), X, y, loss=loss, optimizer="sgd", **kwargs)
    oracle = pyfit.fit(copy.deepcopy(model), X, y, loss=_torch_loss(loss), optimizer=torch.optim.SGD, **kwargs)
    assert oracle.backend == "torch:autograd"
    return ours, oracle


def _assert_same_fit(ours, oracle, rtol=1e-9, atol=1e-10):
    assert ours.epochs == oracle.epochs and ours.stop_reason == oracle.stop_reason
    for a, b in zip(ours.model.parameters(), oracle.model.parameters()):
        torch.testing.assert_close(a, b, rtol=rtol, atol=atol)
    torch.testing.assert_close(torch.tensor(ours.history["lr"]), torch.tensor(oracle.history["lr"]))
    torch.testing.assert_close(torch.tensor(ours.history["loss"]), torch.tensor(oracle.history["loss"]),
                               rtol=rtol, atol=atol)


class Doubled(pyfit.Linear):
    """Overrides forward without vouching for it: not linear in the sense the kernel fuses."""

    def forward(self, X):
        return 2 * super().forward(X)


class Scaled(pyfit.Linear):
    """Overrides both methods and declares the pair linear in the parameters again."""

    linear_in_parameters = True

    def design_matrix(self, X):
        return 3 * X

    def forward(self, X):
        return F.linear(self.design_matrix(X), self.weight, self.bias)


def test_a_forward_override_falls_back_to_autograd_and_fits_the_real_model(backend):
    X, y = _data()
    model = Doubled(2, dtype=torch.float64)
    ours, oracle = _pair(model, X, y, lr=0.05, epochs=60)
    assert ours.backend.endswith(":autograd")
    _assert_same_fit(ours, oracle)
    with torch.no_grad():
        real = F.mse_loss(ours.model(X), y).item()
    # the last recorded loss is measured before the last update: it is close to the real one
    assert abs(ours.history["loss"][-1] - real) < 0.05 * real + 1e-6


def test_a_subclass_that_declares_its_forward_linear_stays_fused_and_exact(backend):
    X, y = _data()
    ours, oracle = _pair(Scaled(2, dtype=torch.float64), X, y, lr=0.01, epochs=40, momentum=0.5)
    assert ours.backend.endswith(":fused-linear")
    _assert_same_fit(ours, oracle)


def test_a_forward_hook_falls_back_to_autograd(backend):
    X, y = _data()
    model = pyfit.Linear(2, dtype=torch.float64)
    model.register_forward_hook(lambda module, inputs, output: output + 1.0)
    ours, oracle = _pair(model, X, y, lr=0.05, epochs=30)
    assert ours.backend.endswith(":autograd")
    _assert_same_fit(ours, oracle)


def test_a_gradient_hook_falls_back_to_autograd_and_is_honoured(backend):
    X, y = _data()
    model = pyfit.Linear(2, dtype=torch.float64)
    model.bias.register_hook(torch.zeros_like)  # the bias never gets a gradient
    before = model.bias.detach().clone()
    result = pyfit.fit(model, X, y, lr=0.05, epochs=20)
    assert result.backend.endswith(":autograd")
    assert torch.equal(model.bias, before) and result.history["loss"][-1] < result.history["loss"][0]


@pytest.mark.parametrize("frozen", ["bias", "weight"])
def test_a_frozen_parameter_stays_frozen(backend, frozen):
    X, y = _data()
    model = pyfit.Linear(2, dtype=torch.float64)
    getattr(model, frozen).requires_grad_(False)
    before = getattr(model, frozen).detach().clone()
    ours, oracle = _pair(model, X, y, lr=0.05, epochs=30, momentum=0.9)
    assert torch.equal(getattr(ours.model, frozen), before)
    _assert_same_fit(ours, oracle)


MOMENTUM_SCHEDULERS = {
    "onecyclelr": {"max_lr": 0.1, "total_steps": 40},
    "cycliclr": {"base_lr": 0.01, "max_lr": 0.1, "step_size_up": 5},
}


@pytest.mark.parametrize("name", MOMENTUM_SCHEDULERS)
def test_a_scheduler_that_moves_momentum_matches_torch_sgd(backend, name):
    X, y = _data(n=40)
    ours, oracle = _pair(pyfit.Linear(2, dtype=torch.float64), X, y, lr=0.05, epochs=40, momentum=0.9,
                         scheduler=name, scheduler_kwargs=MOMENTUM_SCHEDULERS[name], seed=1)
    assert ours.backend.endswith(":fused-linear")
    _assert_same_fit(ours, oracle)


def _fit_with_work_per_call(work, **kwargs):
    X, y = _data(n=30, seed=2)
    with mock.patch.object(_runners, "_WORK_PER_CALL", work):
        return pyfit.fit("linear", X, y, seed=3, **kwargs)


@pytest.mark.parametrize("kwargs", [
    dict(scheduler="onecyclelr", scheduler_kwargs={"max_lr": 0.1, "total_steps": 25}, momentum=0.9),
    dict(scheduler="cycliclr", scheduler_kwargs={"base_lr": 0.01, "max_lr": 0.1, "step_size_up": 3},
         momentum=0.9, batch_size=7, shuffle=True),
    dict(scheduler="exponential", scheduler_kwargs={"gamma": 0.9}, momentum=0.5, batch_size=4, shuffle=True),
    dict(momentum=0.9, nesterov=True, weight_decay=0.01),
], ids=["onecyclelr", "cycliclr-shuffled", "exponential-shuffled", "nesterov"])
def test_the_result_does_not_depend_on_how_epochs_are_split_into_calls(backend, kwargs):
    # work per epoch is N * D = 60: one epoch per call, 7 per call, and the whole fit in one call
    fits = [_fit_with_work_per_call(work, lr=0.05, epochs=25, **kwargs) for work in (1, 7 * 60, 10**9)]
    assert all(f.backend.endswith(":fused-linear") for f in fits)
    for other in fits[1:]:
        assert other.history == fits[0].history
        for a, b in zip(other.model.parameters(), fits[0].model.parameters()):
            assert torch.equal(a, b)
        assert other.optimizer.param_groups[0]["lr"] == fits[0].optimizer.param_groups[0]["lr"]
        assert other.optimizer.param_groups[0]["momentum"] == fits[0].optimizer.param_groups[0]["momentum"]


def test_shuffled_orders_are_bounded_per_call(backend):
    # ten rows, batches of three, many epochs: each call's (epochs, N) orders stay within the bound
    X, y = _data(n=10)
    sizes = []
    real_fit = pyfit.ops.linear_fit_

    def spy(*args, order=None, **kwargs):
        sizes.append(order.numel())
        return real_fit(*args, order=order, **kwargs)

    with mock.patch.object(_runners, "_ORDER_ENTRIES_PER_CALL", 1000), mock.patch.object(pyfit.ops, "linear_fit_", spy):
        result = pyfit.fit("linear", X, y, lr=0.01, epochs=500, batch_size=3, shuffle=True, seed=0)
    assert result.epochs == 500 and result.backend.endswith(":fused-linear")
    assert len(sizes) >= 5 and max(sizes) <= 1000 and sum(sizes) == 500 * 10


def test_ctrl_c_while_a_long_shuffled_call_is_planned_stops_the_fit_within_a_few_hundred_epochs(backend):
    # ten rows and three million epochs: one call may cover tens of thousands of epochs,
    # so a Ctrl-C must be seen while their row orders are drawn, not after
    X, y = _data(n=10)
    drawn = []
    real_order = _runners._order

    def order_then_ctrl_c(generator, n):
        drawn.append(n)
        if len(drawn) == 1000:
            os.kill(os.getpid(), signal.SIGINT)
        return real_order(generator, n)

    with mock.patch.object(_runners, "_order", order_then_ctrl_c):
        result = pyfit.fit("linear", X, y, lr=0.01, epochs=3_000_000, batch_size=3, shuffle=True, seed=0)
    assert result.stop_reason == "interrupted"
    assert 1000 <= result.epochs <= 1000 + _runners._PLAN_CHECK_EVERY and len(drawn) == result.epochs


# every scheduler that fit steps ahead of a fused call (torch's lowercase names and pyfit's own)
SCHEDULERS = {
    None: {},
    "constant": {},
    "constantlr": {"factor": 0.5, "total_iters": 2},
    "cosineannealingwarmrestarts": {"T_0": 3},
    "polynomiallr": {"total_iters": 4, "power": 2.0},
    "multiplicativelr": {"lr_lambda": lambda epoch: 0.9},
    "lambdalr": {"lr_lambda": lambda epoch: 1 / (epoch + 1)},
    "step": {"step_size": 2, "gamma": 0.5},
    "exponential": {"gamma": 0.8},
    "cosine": {},
    "linearlr": {"start_factor": 0.5, "total_iters": 3},
    "multisteplr": {"milestones": [1, 3], "gamma": 0.5},
    "onecyclelr": {"max_lr": 0.05, "total_steps": 8},
    "cycliclr": {"base_lr": 0.001, "max_lr": 0.05, "step_size_up": 2},
}


@st.composite
def fits(draw):
    n = draw(st.integers(3, 16))
    polynomial = draw(st.booleans())
    d = 1 if polynomial else draw(st.integers(1, 3))
    k = 1 if polynomial else draw(st.integers(1, 2))
    bias = draw(st.booleans())
    momentum = draw(st.sampled_from([0.0, 0.5, 0.9]))
    dampening = draw(st.sampled_from([0.0, 0.3]))
    nesterov = momentum > 0 and dampening == 0 and draw(st.booleans())
    scheduler = draw(st.sampled_from(list(SCHEDULERS)))
    batch_size = draw(st.one_of(st.none(), st.integers(1, n + 1)))
    return dict(
        n=n, d=d, k=k, polynomial=polynomial, degree=draw(st.integers(1, 3)) if polynomial else None, bias=bias,
        seed=draw(st.integers(0, 2**20)), loss=draw(st.sampled_from(["mse", "sse"])),
        settings=dict(lr=draw(st.sampled_from([1e-3, 1e-2, 0.05])), epochs=draw(st.integers(1, 8)),
                      batch_size=batch_size, shuffle=draw(st.booleans()), momentum=momentum,
                      dampening=dampening, nesterov=nesterov,
                      weight_decay=draw(st.sampled_from([0.0, 0.01])), maximize=draw(st.booleans()),
                      scheduler=scheduler, scheduler_kwargs=SCHEDULERS[scheduler]),
        dtype=draw(st.sampled_from([torch.float32, torch.float64])),
    )


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(case=fits())
def test_fused_path_matches_autograd_with_torch_sgd(backend, case):
    dtype = case["dtype"]
    X, y = _data(n=case["n"], d=case["d"], k=case["k"], seed=case["seed"], dtype=dtype)
    torch.manual_seed(case["seed"])
    if case["polynomial"]:
        X = X / 2  # keep x**3 tame
        model = pyfit.Polynomial(degree=case["degree"], bias=case["bias"], dtype=dtype)
    else:
        model = pyfit.Linear(case["d"], case["k"], bias=case["bias"], dtype=dtype)
    ours, oracle = _pair(model, X, y, loss=case["loss"], seed=case["seed"], **case["settings"])
    assert ours.backend.endswith(":fused-linear")
    tolerance = dict(rtol=1e-9, atol=1e-10) if dtype == torch.float64 else dict(rtol=2e-4, atol=1e-5)
    _assert_same_fit(ours, oracle, **tolerance)
