"""Built-in models: linear, polynomial and a small MLP.

A model that is linear in its parameters declares it: the class that defines its
``forward`` and ``design_matrix(X)`` sets ``linear_in_parameters = True`` in its own
body, promising ``model(X) == design_matrix(X) @ weight.T + bias``; ``fit`` may then
run it on the fused linear path. The flag is read on the defining class, so a
subclass that overrides ``forward`` (or ``design_matrix``) is fitted through
autograd unless it sets the flag again itself.
"""

from __future__ import annotations

from typing import Callable, Dict, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .registry import MODELS
from .validation import check_layer_sizes

LINEAR_IN_PARAMETERS = "linear_in_parameters"


@MODELS.register("linear", description="y = X @ W.T + b: ordinary linear regression, one or more outputs",
                 flags=(LINEAR_IN_PARAMETERS,))
class Linear(nn.Linear):
    """A linear model; ``weight`` is (out_features, in_features), ``bias`` (out_features,).

    >>> import torch, pyfit
    >>> model = pyfit.Linear(2)
    >>> model(torch.zeros(5, 2)).shape
    torch.Size([5, 1])
    """

    linear_in_parameters = True  # forward(X) == design_matrix(X) @ weight.T + bias, declared here

    def __init__(self, in_features: int, out_features: int = 1, bias: bool = True, dtype=None, device=None):
        super().__init__(in_features, out_features, bias=bias, dtype=dtype, device=device)
        self.config = {"in_features": in_features, "out_features": out_features, "bias": bias}

    def design_matrix(self, X: Tensor) -> Tensor:
        return X

    def forward(self, X: Tensor) -> Tensor:
        # defined here, next to the flag that vouches for it
        return F.linear(self.design_matrix(X), self.weight, self.bias)


@MODELS.register("polynomial", description="y = w1 x + w2 x^2 + ... + wd x^d + b on one input feature",
                 flags=(LINEAR_IN_PARAMETERS,))
class Polynomial(nn.Module):
    """A polynomial of one input feature; ``weight[:, k]`` is the coefficient of x**(k+1).

    >>> import torch, pyfit
    >>> model = pyfit.Polynomial(degree=2)
    >>> model.design_matrix(torch.tensor([[2.0]]))
    tensor([[2., 4.]])
    """

    linear_in_parameters = True  # forward(X) == design_matrix(X) @ weight.T + bias, declared here

    def __init__(self, in_features: int = 1, degree: int = 2, out_features: int = 1, bias: bool = True,
                 dtype=None, device=None):
        super().__init__()
        if in_features != 1:
            raise ValueError(f"a polynomial model takes 1 input feature, got in_features={in_features}")
        if not isinstance(degree, int) or degree < 1:
            raise ValueError(f"degree must be an integer >= 1, got {degree!r}")
        self.in_features, self.out_features, self.degree = 1, out_features, degree
        self.config = {"in_features": 1, "degree": degree, "out_features": out_features, "bias": bias}
        self.linear = nn.Linear(degree, out_features, bias=bias, dtype=dtype, device=device)

    @property
    def weight(self) -> nn.Parameter:
        return self.linear.weight

    @property
    def bias(self):
        return self.linear.bias

    def design_matrix(self, X: Tensor) -> Tensor:
        # (N, 1) -> (N, degree): the columns x, x**2, ..., x**degree
        powers = torch.arange(1, self.degree + 1, dtype=X.dtype, device=X.device)
        return X.reshape(-1, 1) ** powers

    def forward(self, X: Tensor) -> Tensor:
        # through weight and bias, not self.linear's forward: what the flag vouches for is all here
        return F.linear(self.design_matrix(X), self.weight, self.bias)


ACTIVATIONS: Dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "gelu": nn.GELU, "silu": nn.SiLU,
}


@MODELS.register("mlp", description="a multilayer perceptron: linear layers with an activation between them")
class MLP(nn.Sequential):
    """Fully connected layers ``in_features -> *hidden -> out_features``.

    >>> import torch, pyfit
    >>> pyfit.MLP(3, hidden=(8,), activation="tanh")(torch.zeros(4, 3)).shape
    torch.Size([4, 1])
    """

    def __init__(self, in_features: int, out_features: int = 1, hidden: Sequence[int] = (32, 32),
                 activation: str = "relu", dtype=None, device=None):
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; available: {', '.join(sorted(ACTIVATIONS))}")
        hidden = check_layer_sizes("hidden", [hidden] if isinstance(hidden, int) else hidden)
        sizes = [in_features, *hidden, out_features]
        layers = []
        for i, (fan_in, fan_out) in enumerate(zip(sizes, sizes[1:])):
            layers.append(nn.Linear(fan_in, fan_out, dtype=dtype, device=device))
            if i < len(sizes) - 2:
                layers.append(ACTIVATIONS[activation]())
        super().__init__(*layers)
        self.in_features, self.out_features = in_features, out_features
        self.config = {"in_features": in_features, "out_features": out_features, "hidden": hidden,
                       "activation": activation}


def build_model(name: str, **kwargs) -> nn.Module:
    """Build the model registered under ``name``.

    >>> import pyfit
    >>> pyfit.build_model("linear", in_features=3).weight.shape
    torch.Size([1, 3])
    """
    return MODELS.build(name, **kwargs)
