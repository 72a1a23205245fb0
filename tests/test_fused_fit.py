"""The fused linear loop under every built-in loss and optimizer computes what autograd does.

The oracle is the same fit on the autograd path with torch's own pieces: a model
that computes what ``pyfit.Linear`` does without declaring it (so ``fit`` cannot
fuse it), torch's loss and torch's optimizer class. Parameters, the optimizer's
whole ``state_dict`` and the loss history must agree; a checkpoint taken on one
path resumes on the other as an unbroken fit would have gone on.
"""

import warnings

import pytest
import torch

import pyfit
from pyfit import _runners

RTOL = 1e-9


class Undeclared(pyfit.Linear):
    """Computes what Linear does, but its forward does not vouch for being linear: fit runs autograd."""

    def forward(self, X):
        return super().forward(X)


# name: (pyfit's loss, loss settings, torch's loss, a learning rate that suits it under SGD)
LOSSES = {
    "mse": ("mse", {}, torch.nn.MSELoss(), 0.02),
    "sse": ("sse", {}, torch.nn.MSELoss(reduction="sum"), 0.001),
    "mae": ("mae", {}, torch.nn.L1Loss(), 0.05),
    "huber": ("huber", {"delta": 0.4}, torch.nn.HuberLoss(delta=0.4), 0.05),
}
# name: (pyfit's optimizer, torch's class, settings)
OPTIMIZERS = {
    "sgd": ("sgd", torch.optim.SGD, dict(lr=0.02, momentum=0.9, weight_decay=1e-3)),
    "adam": ("adam", torch.optim.Adam, dict(lr=0.05)),
    "adamw": ("adamw", torch.optim.AdamW, dict(lr=0.05, weight_decay=0.1)),
    "adam-amsgrad": ("adam", torch.optim.Adam, dict(lr=0.05, amsgrad=True, betas=(0.8, 0.99))),
    "rmsprop": ("rmsprop", torch.optim.RMSprop, dict(lr=0.01, centered=True, momentum=0.5)),
    "adagrad": ("adagrad", torch.optim.Adagrad, dict(lr=0.1, lr_decay=0.01)),
    # the other settings each update reads
    "sgd-nesterov": ("sgd", torch.optim.SGD, dict(lr=0.02, momentum=0.8, nesterov=True)),
    "sgd-dampened": ("sgd", torch.optim.SGD, dict(lr=0.02, momentum=0.5, dampening=0.3)),
    "adam-coupled-decay": ("adam", torch.optim.Adam, dict(lr=0.05, weight_decay=0.1, eps=1e-4)),
    "rmsprop-plain": ("rmsprop", torch.optim.RMSprop, dict(lr=0.01, alpha=0.9, weight_decay=0.05)),
    "adagrad-decay": ("adagrad", torch.optim.Adagrad, dict(lr=0.1, weight_decay=0.05, initial_accumulator_value=0.5)),
    "adam-maximize": ("adam", torch.optim.Adam, dict(lr=0.01, maximize=True)),
    # foreach changes torch's implementation, not the update: fused all the same
    "rmsprop-foreach": ("rmsprop", torch.optim.RMSprop, dict(lr=0.01, momentum=0.3, foreach=True)),
}
CASES = [(loss, "sgd") for loss in LOSSES] + [("mse", name) for name in OPTIMIZERS if name != "sgd"]
BATCHES = {"full-batch": {}, "shuffled-minibatches": dict(batch_size=7, shuffle=True)}


def _data(n=30, d=3, k=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g, dtype=torch.float64)
    y = X @ torch.randn(d, k, generator=g, dtype=torch.float64) + 0.5 + 0.3 * torch.randn(n, k, generator=g,
                                                                                           dtype=torch.float64)
    return X, y


def _models(seed=0):
    torch.manual_seed(seed)
    model = pyfit.Linear(3, 2, dtype=torch.float64)
    twin = Undeclared(3, 2, dtype=torch.float64)
    twin.load_state_dict(model.state_dict())
    return model, twin


def _assert_close_tree(a, b):
    """Equal structure, numbers and tensors within RTOL."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.device == b.device
        torch.testing.assert_close(a, b, rtol=RTOL, atol=1e-12)
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        for key in a:
            _assert_close_tree(a[key], b[key])
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b)
        for x, z in zip(a, b):
            _assert_close_tree(x, z)
    elif isinstance(a, float):
        assert b == pytest.approx(a, rel=RTOL, abs=1e-12)
    else:
        assert a == b


def _assert_same_fit(ours, theirs):
    assert ours.epochs == theirs.epochs and ours.stop_reason == theirs.stop_reason
    for a, b in zip(ours.model.parameters(), theirs.model.parameters()):
        _assert_close_tree(a.detach(), b.detach())
    _assert_close_tree(ours.optimizer.state_dict(), theirs.optimizer.state_dict())
    _assert_close_tree(ours.history, theirs.history)


@pytest.mark.parametrize("batches", BATCHES)
@pytest.mark.parametrize("loss, optimizer", CASES)
def test_the_fused_loop_fits_as_autograd_with_torchs_pieces(backend, loss, optimizer, batches):
    X, y = _data()
    model, twin = _models()
    loss_name, loss_kwargs, torch_loss, sgd_lr = LOSSES[loss]
    name, torch_class, settings = OPTIMIZERS[optimizer]
    if optimizer == "sgd":
        settings = {**settings, "lr": sgd_lr}
    common = dict(epochs=15, seed=4, standardize=False, scheduler="exponential", scheduler_kwargs={"gamma": 0.95},
                  **BATCHES[batches], **settings)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the scheduler is told the fused call stepped the optimizer
        ours = pyfit.fit(model, X, y, loss=loss_name, loss_kwargs=loss_kwargs, optimizer=name, **common)
    theirs = pyfit.fit(twin, X, y, loss=torch_loss, optimizer=torch_class, **common)
    assert ours.backend.endswith(":fused-linear") and theirs.backend == "torch:autograd"
    _assert_same_fit(ours, theirs)
    going = ours.history["loss"][-1] / ours.history["loss"][0]
    assert going > 1 if settings.get("maximize") else going < 1  # the fit went somewhere


def test_a_model_without_bias_keeps_one_params_state(backend):
    X, y = _data()
    torch.manual_seed(0)
    model, twin = pyfit.Linear(3, 2, bias=False, dtype=torch.float64), Undeclared(3, 2, bias=False,
                                                                                dtype=torch.float64)
    twin.load_state_dict(model.state_dict())
    common = dict(epochs=10, seed=1, standardize=False, batch_size=8, shuffle=True, lr=0.05, amsgrad=True)
    ours = pyfit.fit(model, X, y, optimizer="adam", **common)
    theirs = pyfit.fit(twin, X, y, loss=torch.nn.MSELoss(), optimizer=torch.optim.Adam, **common)
    assert ours.backend.endswith(":fused-linear") and theirs.backend == "torch:autograd"
    _assert_same_fit(ours, theirs)
    assert float(ours.optimizer.state[model.weight]["step"]) == 10 * 4  # 4 batches of 8 rows or fewer


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "rmsprop", "adagrad"])
def test_torchs_own_optimizer_classes_are_fused(backend, optimizer):
    X, y = _data()
    model, _ = _models()
    _, torch_class, settings = OPTIMIZERS[optimizer]
    result = pyfit.fit(model, X, y, optimizer=torch_class, epochs=3, standardize=False, **settings)
    assert result.backend.endswith(":fused-linear")


def _force_autograd(monkeypatch):
    monkeypatch.setattr(_runners, "fusion_plan", lambda *args: None)


@pytest.mark.parametrize("optimizer", ["adam-amsgrad", "rmsprop", "adagrad", "sgd"])
@pytest.mark.parametrize("first, then", [("fused-linear", "autograd"), ("autograd", "fused-linear")])
def test_a_checkpoint_resumes_on_the_other_path_as_an_unbroken_fit(backend, tmp_path, monkeypatch, optimizer,
                                                                   first, then):
    X, y = _data()
    name, _, settings = OPTIMIZERS[optimizer]
    common = dict(optimizer=name, seed=2, standardize=False, batch_size=7, shuffle=True, **settings)
    path = str(tmp_path / "fit.pt")

    def fit(path_name, **kwargs):
        with monkeypatch.context() as patch:
            if path_name == "autograd":
                _force_autograd(patch)
            result = pyfit.fit("linear", X, y, **common, **kwargs)
        assert result.backend.endswith(path_name)
        return result

    whole = fit(first, epochs=12)
    fit(first, epochs=5, checkpoint=path)
    resumed = fit(then, epochs=12, resume_from=path)
    _assert_same_fit(resumed, whole)


class UndeclaredPolynomial(pyfit.Polynomial):
    """Computes what Polynomial does without vouching for it: fit runs autograd."""

    def forward(self, X):
        return super().forward(X)


def test_a_polynomial_is_fused_through_its_design_matrix(backend):
    g = torch.Generator().manual_seed(3)
    x = torch.rand(25, generator=g, dtype=torch.float64) * 2 - 1
    y = 1 - 2 * x + 3 * x ** 2 + 0.1 * torch.randn(25, generator=g, dtype=torch.float64)
    torch.manual_seed(0)
    model = pyfit.Polynomial(degree=3, dtype=torch.float64)
    twin = UndeclaredPolynomial(degree=3, dtype=torch.float64)
    twin.load_state_dict(model.state_dict())
    common = dict(epochs=12, seed=0, batch_size=6, shuffle=True, lr=0.1, lr_decay=0.01, standardize=False)
    ours = pyfit.fit(model, x, y, loss="huber", loss_kwargs={"delta": 0.5}, optimizer="adagrad", **common)
    theirs = pyfit.fit(twin, x, y, loss=torch.nn.HuberLoss(delta=0.5), optimizer=torch.optim.Adagrad, **common)
    assert ours.backend.endswith(":fused-linear") and theirs.backend == "torch:autograd"
    _assert_same_fit(ours, theirs)
