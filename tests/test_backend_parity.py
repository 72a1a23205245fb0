"""Each seed document's whole fit, run on the compiled ops and on the reference: they agree."""

import numpy as np
import pytest
import torch

import pyfit


def seed000():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(50, generator=g)
    return dict(model="linear", X=x, y=3 * x + 0.8, lr=0.01, epochs=3000, seed=0)


def seed001():
    g = torch.Generator().manual_seed(1)
    x = torch.linspace(0, 100, 100)
    noisy_x = x + 2 * torch.randn(100, generator=g)
    noisy_y = 2.5 * x + 1 + 2 * torch.randn(100, generator=g)
    model = pyfit.Linear(1)
    with torch.no_grad():
        model.weight.zero_(), model.bias.zero_()
    return dict(model=model, X=noisy_x, y=noisy_y, loss="orthogonal", loss_kwargs={"scale": 0.5}, lr=1e-5,
                epochs=1000, scheduler="exponential", scheduler_kwargs={"gamma": 0.999})


def seed002(degree):
    def make():
        model = pyfit.Linear(1, bias=False) if degree == 1 else pyfit.Polynomial(degree=2)
        with torch.no_grad():
            for p in model.parameters():
                p.fill_(1.0 if p.dim() == 2 else 0.0)
        return dict(model=model, X=torch.tensor([1.0, 2.0, 3.0]), y=torch.tensor([2.0, 4.0, 6.0]), lr=0.01,
                    epochs=100, batch_size=1)
    return make


def seed003():
    g = torch.Generator().manual_seed(3)
    X = torch.normal(0, 1, (1000, 2), generator=g)
    y = X @ torch.tensor([2.0, -3.4]) + 4.2 + torch.normal(0, 0.01, (1000,), generator=g)
    return dict(model="linear", X=X, y=y, lr=0.03, epochs=3, batch_size=10, shuffle=True, seed=3)


def seed004():
    x = torch.tensor([1.4, 5, 11, 16, 21])
    y = torch.tensor([14.4, 29.6, 62, 85.5, 113.4])
    return dict(model="linear", X=x, y=y, loss="sse", lr=1e-4, epochs=1000, seed=4)


def one_cycle_momentum():
    # momentum moves every epoch: one epoch per fused call on both backends
    settings = seed003()
    settings.update(epochs=20, momentum=0.9, scheduler="onecyclelr",
                    scheduler_kwargs={"max_lr": 0.05, "total_steps": 20})
    return settings


WORKLOADS = {"seed000": seed000, "seed001": seed001, "seed002-linear": seed002(1),
             "seed002-quadratic": seed002(2), "seed003": seed003, "seed004": seed004,
             "one-cycle-momentum": one_cycle_momentum}


def fit_on(backend, make):
    pyfit.ops.set_backend(backend)
    try:
        settings = make()
        model, X, y = settings.pop("model"), settings.pop("X"), settings.pop("y")
        return pyfit.fit(model, X, y, **settings)
    finally:
        pyfit.ops.set_backend("auto")


@pytest.mark.parametrize("name", WORKLOADS)
def test_seed_fit_agrees_across_backends(name):
    try:
        compiled = fit_on("cpp", WORKLOADS[name])
    except pyfit.ops.BackendUnavailableError as error:
        pytest.skip(f"no compiled backend: {error}")
    reference = fit_on("python", WORKLOADS[name])
    assert compiled.backend.split(":")[1] == reference.backend.split(":")[1]
    assert compiled.backend.startswith("cpp") and reference.backend.startswith("python")
    assert compiled.epochs == reference.epochs
    for a, b in zip(compiled.model.parameters(), reference.model.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(compiled.history["loss"], reference.history["loss"], rtol=1e-3, atol=1e-6)
