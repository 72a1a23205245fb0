"""Registries: registration, lookup, errors, and conformance of every registered entry."""

import inspect
import pickle

import pytest
import torch

import pyfit
from pyfit.registry import Registry


def test_register_as_decorator_and_directly():
    reg = Registry("thing", group=None)

    @reg.register("alpha", description="first")
    def alpha():
        return 1

    reg.register("Beta", lambda: 2, description="second")
    assert reg.names() == ["alpha", "beta"]
    assert "BETA" in reg and "gamma" not in reg
    assert reg.build("beta") == 2 and reg["alpha"] is alpha
    assert reg.description("alpha") == "first"


def test_taken_name_raises_unless_override():
    reg = Registry("thing", group=None)
    reg.register("a", lambda: 1)
    with pytest.raises(ValueError, match="already registered.*override=True"):
        reg.register("a", lambda: 2)
    reg.register("a", lambda: 3, override=True)
    assert reg.build("a") == 3


def test_unknown_name_lists_names_and_suggests_the_closest():
    with pytest.raises(pyfit.UnknownNameError) as info:
        pyfit.build_loss("mse2")
    message = str(info.value)
    assert "Did you mean 'mse'?" in message
    for name in ("mae", "huber", "orthogonal", "sse"):
        assert name in message
    assert isinstance(info.value, KeyError)


def test_wrong_kind_is_refused_at_registration():
    with pytest.raises(TypeError, match="torch.nn.Module"):
        pyfit.MODELS.register("not-a-model", dict)
    with pytest.raises(TypeError, match="class or factory"):
        pyfit.LOSSES.register("not-callable", 42)
    assert "not-a-model" not in pyfit.MODELS


def test_description_defaults_to_first_docstring_line():
    reg = Registry("thing", group=None)

    @reg.register("documented")
    def documented():
        """Does a thing.

        More text."""

    assert reg.description("documented") == "Does a thing."


@pytest.mark.parametrize("registry", [pyfit.MODELS, pyfit.LOSSES, pyfit.OPTIMIZERS, pyfit.SCHEDULERS],
                         ids=lambda r: r.kind)
def test_every_entry_has_a_description(registry):
    for entry in registry.entries():
        assert entry.description, f"{registry.kind} {entry.name!r} has no description"
        assert entry.name == entry.name.lower()


@pytest.mark.parametrize("name", pyfit.MODELS.names())
def test_every_model_builds_from_in_features_and_predicts(name):
    model = pyfit.build_model(name, in_features=1)
    out = model(torch.rand(5, 1))
    assert out.shape[0] == 5
    assert isinstance(model, torch.nn.Module)


@pytest.mark.parametrize("name", pyfit.LOSSES.names())
def test_every_loss_is_scalar_and_zero_at_a_perfect_fit(name):
    model = pyfit.Linear(1)
    x = torch.rand(8, 1)
    with torch.no_grad():
        pred = model(x)
    loss = pyfit.build_loss(name)
    assert loss(pred, pred.detach(), model=model).dim() == 0
    assert loss(pred, pred.detach(), model=model).item() == pytest.approx(0.0, abs=1e-7)


@pytest.mark.parametrize("name", pyfit.OPTIMIZERS.names())
def test_every_optimizer_is_a_torch_optimizer_that_lowers_a_quadratic(name):
    p = torch.nn.Parameter(torch.tensor([2.0, -1.0]))
    opt = pyfit.build_optimizer(name, [p], lr=0.1)
    assert isinstance(opt, torch.optim.Optimizer)
    start = float((p.detach() ** 2).sum())
    def closure():  # every torch optimizer takes one; those that need it (lbfgs) call it more than once
        opt.zero_grad()
        loss = (p ** 2).sum()
        loss.backward()
        return loss

    for _ in range(5):
        opt.step(closure)
    assert float((p.detach() ** 2).sum()) < start
    restored = pyfit.build_optimizer(name, [torch.nn.Parameter(p.detach().clone())], lr=0.1)
    restored.load_state_dict(opt.state_dict())
    # a fitted scikit-learn estimator holds its optimizer, and estimators get pickled
    assert type(pickle.loads(pickle.dumps(opt))) is type(opt)


@pytest.mark.parametrize("name", pyfit.SCHEDULERS.names())
def test_every_scheduler_builds_for_an_optimizer(name):
    required = {
        "lambdalr": {"lr_lambda": lambda e: 0.9 ** e}, "multiplicativelr": {"lr_lambda": lambda e: 0.9},
        "steplr": {"step_size": 2}, "multisteplr": {"milestones": [2]}, "exponentiallr": {"gamma": 0.9},
        "cosineannealinglr": {"T_max": 5}, "cosineannealingwarmrestarts": {"T_0": 3},
        "cycliclr": {"base_lr": 0.01, "max_lr": 0.1}, "onecyclelr": {"max_lr": 0.1, "total_steps": 10},
    }
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=0.1, momentum=0.9)
    sched = pyfit.build_scheduler(name, opt, epochs=10, **required.get(name, {}))
    opt.step()
    if name == "reducelronplateau":
        sched.step(1.0)
    else:
        sched.step()
    assert opt.param_groups[0]["lr"] > 0
