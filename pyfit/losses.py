"""Built-in losses, and the one calling convention every loss is used through.

``fit`` calls a loss as ``loss(pred, target, model=model)``, so a loss that needs
the model (the perpendicular distance needs the slope) sees it with no special
case in the loop. A plain two-argument loss (``torch.nn.MSELoss()``, a function)
is adapted once by :func:`as_loss`.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Optional, Protocol, Tuple, runtime_checkable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import ops
from .registry import LOSSES


@runtime_checkable
class LossFunction(Protocol):
    """What ``fit`` calls: a scalar loss from predictions, targets and the model."""

    def __call__(self, pred: Tensor, target: Tensor, *, model: Optional[nn.Module] = None) -> Tensor: ...


class Loss:
    """Base of the built-in losses.

    ``reduction`` says how per-sample losses combine ("mean" or "sum"), which is
    how a minibatch epoch's loss is assembled. ``fused_loss`` says which loss the
    fused linear loop computes in its place, as ``(kind, reduction)`` with kind
    "squared", "absolute" or "huber" (whose threshold is the instance's
    ``delta``); it counts only on the class that defines ``__call__``, so a
    subclass that computes something else is not fused by mistake.
    """

    reduction = "mean"
    fused_loss: Optional[Tuple[str, str]] = None

    def __call__(self, pred: Tensor, target: Tensor, *, model: Optional[nn.Module] = None) -> Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


# Below this many elements torch's own loss is faster: the fused op saves passes over
# the data, but its call through the dispatcher and autograd costs more than those
# passes (measured: 2-4x slower up to 30,000 elements, 4x faster from 100,000).
_FUSED_MSE_MIN_ELEMENTS = 1 << 16


def _squared_error(pred: Tensor, target: Tensor, reduction: str) -> Tensor:
    # A shape mismatch goes to the op, which names it, rather than to F.mse_loss,
    # which would broadcast. The fused op computes in float32 and float64; other
    # dtypes (half precision, mixed ones) take torch's own loss.
    if pred.shape != target.shape or (ops.supports(pred, target) and pred.numel() >= _FUSED_MSE_MIN_ELEMENTS):
        return ops.mse_loss(pred, target, reduction)
    return F.mse_loss(pred, target, reduction=reduction)


@LOSSES.register("mse", description="mean squared error (fused forward and backward)")
class MSELoss(Loss):
    """Mean of squared residuals.

    >>> import torch, pyfit
    >>> pyfit.build_loss("mse")(torch.tensor([1.0, 3.0]), torch.tensor([1.0, 1.0]))
    tensor(2.)
    """

    fused_loss = ("squared", "mean")

    def __call__(self, pred, target, *, model=None):
        return _squared_error(pred, target, "mean")


@LOSSES.register("sse", description="sum of squared errors")
class SSELoss(Loss):
    """Sum of squared residuals.

    >>> import torch, pyfit
    >>> pyfit.build_loss("sse")(torch.tensor([1.0, 3.0]), torch.tensor([1.0, 1.0]))
    tensor(4.)
    """

    reduction = "sum"
    fused_loss = ("squared", "sum")

    def __call__(self, pred, target, *, model=None):
        return _squared_error(pred, target, "sum")


@LOSSES.register("mae", description="mean absolute error")
class MAELoss(Loss):
    """Mean of absolute residuals.

    >>> import torch, pyfit
    >>> pyfit.build_loss("mae")(torch.tensor([1.0, 3.0]), torch.tensor([1.0, 1.0]))
    tensor(1.)
    """

    fused_loss = ("absolute", "mean")

    def __call__(self, pred, target, *, model=None):
        return F.l1_loss(pred, target)


@LOSSES.register("huber", description="Huber loss: squared near zero, linear beyond delta")
class HuberLoss(Loss):
    """Huber loss with threshold ``delta``.

    >>> import torch, pyfit
    >>> pyfit.build_loss("huber", delta=1.0)(torch.tensor([3.0]), torch.tensor([1.0]))
    tensor(1.5000)
    """

    fused_loss = ("huber", "mean")

    def __init__(self, delta: float = 1.0):
        if not delta > 0:
            raise ValueError(f"delta must be > 0, got {delta!r}")
        self.delta = float(delta)

    def __call__(self, pred, target, *, model=None):
        return F.huber_loss(pred, target, delta=self.delta)

    def __repr__(self) -> str:
        return f"HuberLoss(delta={self.delta})"


@LOSSES.register("orthogonal", description="mean squared perpendicular distance from the points to the fitted line")
class OrthogonalLoss(Loss):
    """Total least squares: squared distance from each (x, y) to the hyperplane y = w.x + b.

    The distance is the residual over sqrt(|w|^2 + 1), so the loss needs the
    model's weight; ``scale`` multiplies the mean (0.5 gives the 1/(2N) form).

    >>> import torch, pyfit
    >>> model = pyfit.Linear(1); _ = torch.nn.init.ones_(model.weight); _ = torch.nn.init.zeros_(model.bias)
    >>> loss = pyfit.build_loss("orthogonal")
    >>> loss(model(torch.tensor([[0.0]])), torch.tensor([[1.0]]), model=model)
    tensor(0.5000, grad_fn=<MulBackward0>)
    """

    def __init__(self, scale: float = 1.0):
        self.scale = float(scale)

    def __call__(self, pred, target, *, model=None):
        weight = getattr(model, "weight", None)
        if not isinstance(weight, Tensor):
            raise TypeError("the orthogonal loss needs a model with a `weight` (a linear model), "
                            f"got {type(model).__name__}")
        # (K, D) -> (K,): squared norm of each output's normal vector, plus 1 for y
        norm2 = (weight * weight).sum(dim=-1) + 1.0
        residual2 = (pred - target) ** 2
        if residual2.dim() == 2:
            residual2 = residual2 / norm2
        else:
            residual2 = residual2 / norm2.reshape(())
        return residual2.mean() * self.scale

    def __repr__(self) -> str:
        return f"OrthogonalLoss(scale={self.scale})"


class _TwoArgumentLoss(Loss):
    """Adapts a loss written as ``f(pred, target)`` to the calling convention."""

    def __init__(self, function: Callable[[Tensor, Tensor], Tensor]):
        self.function = function
        self.reduction = getattr(function, "reduction", "mean")

    def __call__(self, pred, target, *, model=None):
        return self.function(pred, target)

    def __repr__(self) -> str:
        return repr(self.function)


def _takes_model(function: Any) -> bool:
    if isinstance(function, Loss):
        return True
    target = function.forward if isinstance(function, nn.Module) else function
    try:
        parameters = inspect.signature(target).parameters
    except (TypeError, ValueError):
        return False
    return "model" in parameters or any(p.kind == p.VAR_KEYWORD for p in parameters.values())


def _is_loss_function(obj: Any) -> bool:
    """True for a function that is itself a loss, ``f(pred, target)``, rather than a factory."""
    if not inspect.isfunction(obj):
        return False
    required = [p for p in inspect.signature(obj).parameters.values()
                if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(required) >= 2


def as_loss(loss: Any) -> LossFunction:
    """A loss usable as ``loss(pred, target, model=...)``, from a name, class, instance or function."""
    if isinstance(loss, str):
        return build_loss(loss)
    if inspect.isclass(loss):
        loss = loss()
    if not callable(loss):
        raise TypeError(f"loss must be a registry name or a callable, got {type(loss).__name__}")
    return loss if _takes_model(loss) else _TwoArgumentLoss(loss)


def build_loss(name: str, **kwargs: Any) -> LossFunction:
    """Build the loss registered under ``name``, adapted to the calling convention.

    >>> import pyfit
    >>> pyfit.build_loss("huber", delta=2.0)
    HuberLoss(delta=2.0)
    """
    factory = LOSSES[name]
    if _is_loss_function(factory):
        if kwargs:
            raise TypeError(f"the loss {name!r} is a plain function and takes no settings, got {sorted(kwargs)}")
        built = factory
    else:
        built = factory(**kwargs)
    if inspect.isclass(built):  # a factory that returned a class
        built = built()
    return built if _takes_model(built) else _TwoArgumentLoss(built)
