"""Standardized features: a model that sees ``(X - mean) / scale`` and the statistics it keeps.

Gradient descent on raw features whose magnitudes differ by orders of magnitude
needs a step small enough for the largest and then crawls along the smallest.
Standardizing the columns makes the problem well scaled. The statistics are
computed once, on the training rows, and kept as buffers inside the model, so
``model(X_raw)``, ``pyfit.predict``, checkpoints and ``pyfit predict`` all apply
them: the fitted model takes the data in its own units.

For a model linear in its parameters the wrapper is linear in them too (its
design matrix is the inner model's on the standardized features), so it still
runs on the fused path; :func:`parameters_in_data_units` gives the weight and
bias of a linear or polynomial model in the data's own units.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .models import LINEAR_IN_PARAMETERS, Linear, Polynomial


def feature_statistics(X: Tensor) -> Tuple[Tensor, Tensor]:
    """The (D,) column means and standard deviations of X (N, D), computed in float64.

    A constant column gets scale 1: centring it makes it zero, which the model
    can neither use nor be harmed by.
    """
    X64 = X.double()
    mean = X64.mean(0)
    scale = X64.std(0, correction=0)
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    return mean.to(X.dtype), scale.to(X.dtype)


def declares_linear_in_parameters(model: nn.Module) -> bool:
    """True when the classes defining the model's ``forward`` and ``design_matrix`` vouch for
    ``model(X) == design_matrix(X) @ weight.T + bias`` (the rule the fused path reads, in ``_fusable.py``)."""
    from ._fusable import _declared_by_definer

    return all(_declared_by_definer(type(model), method, LINEAR_IN_PARAMETERS) is True
               for method in ("forward", "design_matrix"))


class Standardized(nn.Module):
    """``model((X - mean) / scale)``: a model that takes raw features and standardizes them itself.

    >>> import torch, pyfit
    >>> from pyfit.scaling import Standardized
    >>> X = torch.tensor([[0.0], [10.0]])
    >>> Standardized(pyfit.MLP(1, hidden=(4,)), *pyfit.scaling.feature_statistics(X)).scale
    tensor([5.])
    """

    def __init__(self, model: nn.Module, mean: Tensor, scale: Tensor):
        super().__init__()
        self.model = model
        self.register_buffer("mean", mean.detach().clone())
        self.register_buffer("scale", scale.detach().clone())
        self.in_features = getattr(model, "in_features", mean.shape[0])
        self.out_features = getattr(model, "out_features", None)

    @property
    def config(self):
        """The inner model's constructor arguments, which is what a checkpoint rebuilds."""
        return getattr(self.model, "config", None)

    def standardize(self, X: Tensor) -> Tensor:
        return (X - self.mean) / self.scale

    def forward(self, X: Tensor) -> Tensor:
        return self.model(self.standardize(X))


class StandardizedLinearInParameters(Standardized):
    """A standardized model that is linear in its parameters, declared here so the fused path takes it."""

    linear_in_parameters = True  # forward(X) == design_matrix(X) @ weight.T + bias, declared here

    @property
    def weight(self) -> nn.Parameter:
        return self.model.weight

    @property
    def bias(self) -> Optional[nn.Parameter]:
        return self.model.bias

    def design_matrix(self, X: Tensor) -> Tensor:
        return self.model.design_matrix(self.standardize(X))

    def forward(self, X: Tensor) -> Tensor:
        return F.linear(self.design_matrix(X), self.weight, self.bias)


def standardized(model: nn.Module, X: Tensor,
                 statistics: Optional[Callable[[], Tuple[Tensor, Tensor]]] = None) -> Standardized:
    """``model`` behind a standardization whose statistics come from the training features X (N, D), or
    from ``statistics()`` (rows read from a file a chunk at a time, or a shard of them per rank)."""
    mean, scale = feature_statistics(X) if statistics is None else statistics()
    mean, scale = mean.to(X.device), scale.to(X.device)
    if getattr(model, "bias", True) is None:
        # centring would give a model without a bias an intercept it was built not to have
        mean = torch.zeros_like(mean)
    if declares_linear_in_parameters(model):
        return StandardizedLinearInParameters(model, mean, scale)
    return Standardized(model, mean, scale)


def _placeholder(model: nn.Module, features: int, dtype: torch.dtype, device) -> Standardized:
    """``model`` behind a standardization whose statistics a checkpoint's state is about to fill in."""
    mean = torch.zeros(features, dtype=dtype, device=device)
    scale = torch.ones(features, dtype=dtype, device=device)
    kind = StandardizedLinearInParameters if declares_linear_in_parameters(model) else Standardized
    return kind(model, mean, scale)


def with_scaling(model: nn.Module, X: Tensor, standardize: Optional[bool], saved_model: Optional[dict],
                 path: Any = None, statistics: Optional[Callable[[], Tuple[Tensor, Tensor]]] = None) -> nn.Module:
    """The model a fit trains: ``model`` standardized on X when asked, or as a resumed checkpoint holds it.

    ``standardize=None`` means no for a new fit and the checkpoint's choice for a
    resumed one; a model that is already standardized keeps its statistics.
    """
    from .errors import InputError

    if isinstance(model, Standardized):
        if standardize is False:
            raise InputError("standardize=False, but the model given is standardized (a pyfit.scaling."
                             "Standardized); pass its inner model, model.model, to fit it unscaled")
        return model
    if saved_model is not None:
        saved = bool(saved_model.get("standardized"))
        if standardize is not None and standardize != saved:
            raise InputError(f"{path!r} was fit {'with' if saved else 'without'} standardized features; resume it "
                             f"with standardize={saved} (or None)")
        return _placeholder(model, X.shape[1], X.dtype, X.device) if saved else model
    return standardized(model, X, statistics) if standardize else model


def inner_model(model: nn.Module) -> nn.Module:
    """The model behind a standardization (the model itself when it has none)."""
    return model.model if isinstance(model, Standardized) else model


def _polynomial_in_x(weight: Tensor, bias: Tensor, mean: float, scale: float) -> Tuple[Tensor, Tensor]:
    """Coefficients of x**1..x**d and the constant, for sum_k weight[:, k-1] * ((x - mean) / scale)**k + bias.

    ((x - m) / s)**k = sum_j C(k, j) x**j (-m)**(k - j) / s**k, collected by power of x.
    """
    degree = weight.shape[1]
    coefficients = torch.zeros(weight.shape[0], degree + 1, dtype=torch.float64)
    coefficients[:, 0] = bias
    for k in range(1, degree + 1):
        for j in range(k + 1):
            coefficients[:, j] += weight[:, k - 1] * math.comb(k, j) * (-mean) ** (k - j) / scale ** k
    return coefficients[:, 1:], coefficients[:, 0]


def parameters_in_data_units(model: nn.Module) -> Optional[Tuple[Tensor, Optional[Tensor]]]:
    """(weight, bias) of a linear or polynomial model in the data's own units, float64; None for other models.

    For a standardized linear model ``W (x - m) / s + b`` that is ``W / s`` and
    ``b - W @ (m / s)``; for a standardized polynomial, the polynomial expanded in
    the raw x. Without standardization, the model's own weight and bias.

    >>> import torch, pyfit
    >>> from pyfit.scaling import standardized, parameters_in_data_units
    >>> model = standardized(pyfit.Linear(1), torch.tensor([[0.0], [2.0]]))
    >>> with torch.no_grad(): _ = model.weight.fill_(3.0), model.bias.fill_(1.0)
    >>> [t.tolist() for t in parameters_in_data_units(model)]
    [[[3.0]], [-2.0]]
    """
    inner = inner_model(model)
    if type(inner) not in (Linear, Polynomial):
        return None
    weight = inner.weight.detach().double().cpu()
    bias = None if inner.bias is None else inner.bias.detach().double().cpu()
    if not isinstance(model, Standardized):
        return weight, bias
    mean, scale = model.mean.double().cpu(), model.scale.double().cpu()
    zero = torch.zeros(weight.shape[0], dtype=torch.float64)
    if type(inner) is Linear:
        folded_bias = (zero if bias is None else bias) - weight @ (mean / scale)
        return weight / scale, folded_bias
    return _polynomial_in_x(weight, zero if bias is None else bias, float(mean[0]), float(scale[0]))
