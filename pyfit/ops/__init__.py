"""pyfit's hot-loop ops, run by the compiled extension or by the pure-PyTorch reference.

Every function here has one signature whichever backend runs it; ``backend()``
says which one does. The reference lives in ``pyfit.ops._reference`` and is the
oracle of the parity tests. Every backend takes the same arguments and refuses the
same ones with an ``InputError`` (``_checks``) before any tensor is written; the ops
compute in ``SUPPORTED_DTYPES`` (float32, float64) only.
"""

from __future__ import annotations

from typing import Callable, List, Optional, Sequence

import torch
from torch import Tensor

from ..errors import InputError

from . import _checks
from ._backend import (
    BackendUnavailableError,
    backend,
    backend_reason,
    implementation,
    set_backend,
)
from ._checks import SUPPORTED_DTYPES, supports

_REDUCTIONS = {"mean": 0, "sum": 1}

__all__ = [
    "BackendUnavailableError",
    "SUPPORTED_DTYPES",
    "backend",
    "backend_reason",
    "linear_fit_",
    "linear_step_",
    "mse_loss",
    "set_backend",
    "sgd_update_",
    "supports",
]


def _reduction_code(reduction: str) -> int:
    try:
        return _REDUCTIONS[reduction]
    except KeyError:
        raise ValueError(
            f"reduction must be one of {sorted(_REDUCTIONS)}, got {reduction!r}"
        ) from None


def _run(name: str, check: Callable[[], None], *args):
    """Run op ``name`` on the active backend; ``check`` refuses bad arguments.

    The compiled kernels check every argument themselves before they write anything,
    so they run first and ``check`` runs only when they refuse, to name the problem
    as an InputError: no cost per call on the hot path. The reference checks nothing
    and writes as it goes, so ``check`` runs before it.
    """
    ops = implementation()
    if backend() == "python":
        check()
        return getattr(ops, name)(*args)
    try:
        return getattr(ops, name)(*args)
    except RuntimeError:
        try:
            check()
        except InputError as refusal:
            raise refusal from None
        raise


def mse_loss(pred: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:
    """Mean (or summed) squared error, forward and backward computed in one pass.

    pred and target must have the same shape, device and dtype (float32 or
    float64). Differentiable in both.

    >>> import torch, pyfit
    >>> pyfit.ops.mse_loss(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 4.0]))
    tensor(2.)
    """
    code = _reduction_code(reduction)
    return _run("mse_loss", lambda: _checks.check_mse(pred, target), pred, target, code)


def sgd_update_(
    params: Sequence[Tensor],
    grads: Sequence[Optional[Tensor]],
    momentum_buffers: Sequence[Optional[Tensor]],
    *,
    lr: float,
    momentum: float = 0.0,
    dampening: float = 0.0,
    nesterov: bool = False,
    weight_decay: float = 0.0,
    maximize: bool = False,
    zero_grads: bool = False,
) -> List[Optional[Tensor]]:
    """Apply one SGD step to every param in one call, with torch.optim.SGD's semantics.

    A param whose grad is None is skipped. ``momentum_buffers[i]`` is None until
    param i has taken a step with momentum; the returned list holds the buffers
    after the step (new ones where there were none, None without momentum).

    >>> import torch, pyfit
    >>> p, g = torch.ones(2), torch.full((2,), 0.5)
    >>> bufs = pyfit.ops.sgd_update_([p], [g], [None], lr=0.1, momentum=0.9)
    >>> p
    tensor([0.9500, 0.9500])
    """
    if len(grads) != len(params) or len(momentum_buffers) != len(params):
        raise ValueError(
            f"sgd_update_ takes one grad and one momentum buffer per param: got {len(params)} "
            f"params, {len(grads)} grads and {len(momentum_buffers)} buffers"
        )
    new_buffers: List[Optional[Tensor]] = list(momentum_buffers)
    live_params: List[Tensor] = []
    live_grads: List[Tensor] = []
    live_buffers: List[Tensor] = []
    first_step: List[bool] = []
    for i, (param, grad) in enumerate(zip(params, grads)):
        if grad is None:
            continue
        live_params.append(param)
        live_grads.append(grad)
        if momentum != 0:
            buf = new_buffers[i]
            first_step.append(buf is None)
            if buf is None:  # a new tensor: no state of the caller's changes here
                buf = torch.empty_like(param, memory_format=torch.preserve_format)
                new_buffers[i] = buf
            live_buffers.append(buf)
        else:
            first_step.append(False)
    if live_params:
        with torch.no_grad():
            _run(
                "sgd_update_",
                lambda: _checks.check_sgd(live_params, live_grads, live_buffers, zero_grads),
                live_params, live_grads, live_buffers, first_step, float(lr), float(momentum),
                float(dampening), bool(nesterov), float(weight_decay), bool(maximize),
                bool(zero_grads),
            )
    return new_buffers


def linear_step_(
    X: Tensor,
    y: Tensor,
    weight: Tensor,
    bias: Optional[Tensor] = None,
    weight_buf: Optional[Tensor] = None,
    bias_buf: Optional[Tensor] = None,
    *,
    lr: float,
    momentum: float = 0.0,
    dampening: float = 0.0,
    nesterov: bool = False,
    weight_decay: float = 0.0,
    maximize: bool = False,
    first_step: bool = True,
    reduction: str = "mean",
) -> Tensor:
    """One fused SGD step of ``y ≈ X @ weight.T + bias`` under the squared error.

    X (N, D), y (N, K), weight (K, D), bias (K,) or None. With momentum, pass
    buffers shaped like weight and bias; ``first_step`` says they hold no history
    yet. Returns the loss before the update; a non-finite loss or update is not
    applied and comes back as a non-finite loss.

    >>> import torch, pyfit
    >>> X, y = torch.tensor([[1.0], [2.0]]), torch.tensor([[2.0], [4.0]])
    >>> w, b = torch.zeros(1, 1), torch.zeros(1)
    >>> pyfit.ops.linear_step_(X, y, w, b, lr=0.1)
    tensor(10.)
    """
    code = _reduction_code(reduction)
    with torch.no_grad():
        return _run(
            "linear_step_",
            lambda: _checks.check_linear(X, y, weight, bias, weight_buf, bias_buf, momentum),
            X, y, weight, bias, weight_buf, bias_buf, float(lr), float(momentum),
            float(dampening), bool(nesterov), float(weight_decay), bool(maximize),
            bool(first_step), code,
        )


def linear_fit_(
    X: Tensor,
    y: Tensor,
    weight: Tensor,
    bias: Optional[Tensor] = None,
    weight_buf: Optional[Tensor] = None,
    bias_buf: Optional[Tensor] = None,
    *,
    lrs: Tensor,
    order: Optional[Tensor] = None,
    batch_size: Optional[int] = None,
    momentum: float = 0.0,
    dampening: float = 0.0,
    nesterov: bool = False,
    weight_decay: float = 0.0,
    maximize: bool = False,
    first_step: bool = True,
    reduction: str = "mean",
) -> Tensor:
    """A whole SGD fit of a linear model in one call: one epoch per entry of ``lrs``.

    ``order`` (E, N) int64 gives each epoch's row order for minibatches (None: rows
    in order); ``batch_size`` None is full batch. Returns the (E,) epoch losses;
    on a non-finite loss or update the fit stops, the parameters keep their last
    finite values, that epoch's loss is non-finite and the rest are NaN.

    >>> import torch, pyfit
    >>> X = torch.linspace(0, 1, 50).unsqueeze(1); y = 3 * X + 0.8
    >>> w, b = torch.zeros(1, 1), torch.zeros(1)
    >>> losses = pyfit.ops.linear_fit_(X, y, w, b, lrs=torch.full((3000,), 0.1, dtype=torch.float64))
    >>> round(w.item(), 2), round(b.item(), 2)
    (3.0, 0.8)
    """
    lrs = torch.as_tensor(lrs, dtype=torch.float64).reshape(-1).cpu()
    code = _reduction_code(reduction)

    def check() -> None:
        _checks.check_linear(X, y, weight, bias, weight_buf, bias_buf, momentum)
        _checks.check_fit_schedule(X, lrs, order)
        _checks.check_order_values(order, X.shape[0])

    with torch.no_grad():
        return _run(
            "linear_fit_", check,
            X, y, weight, bias, weight_buf, bias_buf, lrs, order,
            0 if batch_size is None else int(batch_size), float(momentum), float(dampening),
            bool(nesterov), float(weight_decay), bool(maximize), bool(first_step), code,
        )
