"""A fit that meets a non-finite loss stops with everything as it was after the last finite epoch.

The oracle is the same fit asked for exactly that many epochs: parameters, optimizer
state (momentum buffers, Adam moments and step counts), scheduler, learning rate,
row-order generator and history must all be the same, and the optimizer must go on
working afterwards.
"""

import pytest
import torch

import pyfit

EXPLODING_LR = {"scheduler": "exponential", "scheduler_kwargs": {"gamma": 1.2}}

CASES = {
    "fused-full-batch": dict(optimizer="sgd", lr=0.5, momentum=0.9, **EXPLODING_LR),
    "fused-shuffled-minibatches": dict(optimizer="sgd", lr=0.5, momentum=0.9, batch_size=7, shuffle=True,
                                       **EXPLODING_LR),
    "fused-adam": dict(optimizer="adam", lr=1e6, scheduler="exponential", scheduler_kwargs={"gamma": 10.0}),
    "fused-rmsprop-shuffled-minibatches": dict(optimizer="rmsprop", lr=0.5, momentum=0.5, centered=True,
                                               batch_size=7, shuffle=True, **EXPLODING_LR),
    # torch's loss declares nothing the fused loop computes: these run through autograd
    "autograd-torch-sgd": dict(optimizer=torch.optim.SGD, loss=torch.nn.MSELoss(), lr=0.5, momentum=0.9,
                               batch_size=7, shuffle=True, **EXPLODING_LR),
    "autograd-pyfit-sgd": dict(optimizer="sgd", loss=torch.nn.MSELoss(), lr=0.5, momentum=0.9, nesterov=True,
                               **EXPLODING_LR),
    "autograd-adam": dict(optimizer="adam", loss=torch.nn.MSELoss(), lr=1e6, scheduler="exponential",
                          scheduler_kwargs={"gamma": 10.0}),
}


def _fit(epochs, settings):
    g = torch.Generator().manual_seed(0)
    X = torch.randn(40, 2, generator=g)
    y = X @ torch.tensor([[1.0], [-2.0]]) + 0.5
    return pyfit.fit("linear", X, y, epochs=epochs, seed=0, **settings), X, y


def _assert_same_tree(a, b):
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b)
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        for key in a:
            _assert_same_tree(a[key], b[key])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, z in zip(a, b):
            _assert_same_tree(x, z)
    else:
        assert a == b


@pytest.mark.parametrize("name", CASES)
def test_a_non_finite_stop_leaves_the_state_of_the_last_finite_epoch(backend, name):
    stopped, X, y = _fit(1000, CASES[name])
    assert stopped.stop_reason == "non_finite"
    assert stopped.backend.endswith("fused-linear" if name.startswith("fused") else "autograd")
    assert stopped.epochs >= 2, "the case must have finite epochs before it fails"
    clean, _, _ = _fit(stopped.epochs, CASES[name])
    assert clean.stop_reason == "completed"

    assert stopped.history == clean.history  # the losses, and the learning rates actually used
    for a, b in zip(stopped.model.parameters(), clean.model.parameters()):
        assert torch.equal(a, b)
    _assert_same_tree(stopped.optimizer.state_dict(), clean.optimizer.state_dict())
    _assert_same_tree(stopped.scheduler.state_dict(), clean.scheduler.state_dict())
    assert stopped.optimizer.param_groups[0]["lr"] == clean.optimizer.param_groups[0]["lr"]
    assert torch.equal(stopped.state.generator.get_state(), clean.state.generator.get_state())

    # the optimizer goes on: a step at a modest learning rate stays finite
    for group in stopped.optimizer.param_groups:
        group["lr"] = 1e-3
    stopped.optimizer.zero_grad()
    torch.nn.functional.mse_loss(stopped.model(X), y).backward()
    stopped.optimizer.step()
    assert all(bool(torch.isfinite(p).all()) for p in stopped.model.parameters())
    for per_param in stopped.optimizer.state.values():
        for value in per_param.values():
            assert not isinstance(value, torch.Tensor) or bool(torch.isfinite(value).all())


def test_a_fused_stop_on_the_first_epoch_leaves_no_momentum_buffer(backend):
    # torch.optim.SGD makes its buffers on the first step: a fit that never took one has none
    stopped, _, _ = _fit(5, dict(optimizer="sgd", lr=1e38, momentum=0.9))
    assert stopped.stop_reason == "non_finite" and stopped.epochs == 0
    assert stopped.backend.endswith("fused-linear")
    assert all(not state for state in stopped.optimizer.state.values())
    assert stopped.history == {"loss": [], "lr": []}


def test_large_finite_losses_whose_sum_overflows_are_not_a_stop(backend):
    # each epoch's loss is about 1e306; two hundred of them add up past float64's range
    X = torch.tensor([[1e153]], dtype=torch.float64)
    y = torch.zeros(1, dtype=torch.float64)
    model = pyfit.Linear(1, bias=False, dtype=torch.float64)
    with torch.no_grad():
        model.weight.fill_(1.0)
    result = pyfit.fit(model, X, y, lr=1e-320, epochs=200)
    assert result.backend.endswith("fused-linear")
    assert result.stop_reason == "completed" and result.epochs == 200


@pytest.mark.parametrize("loss, path", [("mse", "fused-linear"), (torch.nn.MSELoss(), "autograd")])
def test_an_optimizer_step_that_overflows_stops_non_finite_and_changes_nothing(loss, path):
    # torch's Adam raises on a step size beyond float32's range instead of producing inf
    torch.manual_seed(0)
    X = torch.randn(30, 3)
    y = X @ torch.tensor([1.0, -2.0, 0.5]) + 0.3
    model = pyfit.Linear(3)
    start = [p.detach().clone() for p in model.parameters()]
    result = pyfit.fit(model, X, y, loss=loss, optimizer="adam", lr=1e38, epochs=5)
    assert result.stop_reason == "non_finite" and result.epochs == 0 and result.backend.endswith(path)
    assert all(torch.equal(p, s) for p, s in zip(model.parameters(), start))
    assert result.optimizer.state_dict()["state"] == {}


class _PoisonedAdam(torch.optim.Adam):
    """Adam whose ``poison_at``-th step leaves NaN in the last parameter: the loss of that epoch,
    measured before the step, is still finite."""

    poison_at = 70  # past the first run of epochs, so the guard's buffers have been reused

    def __init__(self, params, **kwargs):
        super().__init__(params, **kwargs)
        self.steps = 0

    @torch.no_grad()
    def step(self, closure=None):
        loss = super().step(closure)
        self.steps += 1
        if self.steps == self.poison_at:
            self.param_groups[-1]["params"][-1].fill_(float("nan"))
        return loss


class _WithEmptyParameter(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
        self.nothing = torch.nn.Parameter(torch.empty(0))  # has no value that could be non-finite

    def forward(self, X):
        return self.body(X)


def _mlp_fit(epochs):
    g = torch.Generator().manual_seed(0)
    X = torch.randn(40, 2, generator=g)
    y = X @ torch.tensor([[1.0], [-2.0]]) + 0.5
    torch.manual_seed(0)
    model = _WithEmptyParameter()
    opt = _PoisonedAdam(model.parameters(), lr=0.01)
    return pyfit.fit(model, X, y, optimizer=opt, epochs=epochs, scheduler="exponential",
                     scheduler_kwargs={"gamma": 0.99})


def test_a_parameter_that_turns_non_finite_under_a_finite_loss_stops_the_fit_at_the_epoch_before():
    stopped = _mlp_fit(200)
    assert stopped.stop_reason == "non_finite"
    assert stopped.epochs == _PoisonedAdam.poison_at - 1
    clean = _mlp_fit(stopped.epochs)
    assert clean.stop_reason == "completed"
    assert stopped.history == clean.history
    for a, b in zip(stopped.model.parameters(), clean.model.parameters()):
        assert torch.equal(a, b)
    _assert_same_tree(stopped.optimizer.state_dict(), clean.optimizer.state_dict())
    _assert_same_tree(stopped.scheduler.state_dict(), clean.scheduler.state_dict())
    # the restored state is the optimizer's own: another step changes the parameters, as Adam's does
    before = [p.detach().clone() for p in stopped.model.parameters()]
    stopped.model(torch.ones(3, 2)).sum().backward()
    torch.optim.Adam.step(stopped.optimizer)
    assert not torch.equal(before[0], stopped.model.body[0].weight)


def _dropout_batchnorm_fit(epochs):
    # random numbers (dropout) and buffers (batch norm's running statistics) that a replay must repeat
    g = torch.Generator().manual_seed(1)
    X = torch.randn(64, 3, generator=g)
    y = X.sum(1, keepdim=True)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 16), torch.nn.BatchNorm1d(16), torch.nn.ReLU(),
                                torch.nn.Dropout(0.3), torch.nn.Linear(16, 1))
    result = pyfit.fit(model, X, y, optimizer="sgd", lr=0.05, momentum=0.9, epochs=epochs, tol=None,
                       scheduler="exponential", scheduler_kwargs={"gamma": 1.6}, seed=0)
    return result, torch.random.get_rng_state()


def test_a_replayed_call_ends_exactly_where_an_unbroken_fit_of_its_finite_epochs_ends():
    stopped, stopped_rng = _dropout_batchnorm_fit(200)
    assert stopped.stop_reason == "non_finite" and 2 <= stopped.epochs < 64, stopped.epochs
    clean, clean_rng = _dropout_batchnorm_fit(stopped.epochs)
    assert clean.stop_reason == "completed"
    assert stopped.history == clean.history
    _assert_same_tree(stopped.model.state_dict(), clean.model.state_dict())  # parameters and buffers
    _assert_same_tree(stopped.optimizer.state_dict(), clean.optimizer.state_dict())
    _assert_same_tree(stopped.scheduler.state_dict(), clean.scheduler.state_dict())
    assert torch.equal(stopped_rng, clean_rng)
