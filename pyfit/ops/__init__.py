"""pyfit's hot-loop ops, run by the compiled extension or by the pure-PyTorch reference.

Every function here has one signature whichever backend runs it; ``backend()``
says which one does. The reference lives in ``pyfit.ops._reference`` and is the
oracle of the parity tests. Every backend takes the same arguments and refuses the
same ones with an ``InputError`` (``_checks``) before any tensor is written; the ops
compute in ``SUPPORTED_DTYPES`` (float32, float64) only.
"""

from __future__ import annotations

from typing import Any, Callable, List, Mapping, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

from ..errors import InputError

from . import _checks, _reference, _settings
from ._backend import (
    BackendUnavailableError,
    backend,
    backend_reason,
    implementation,
    set_backend,
)
from ._checks import SUPPORTED_DTYPES, supports

__all__ = [
    "BackendUnavailableError",
    "SUPPORTED_DTYPES",
    "backend",
    "backend_reason",
    "linear_fit_",
    "linear_step_",
    "linear_sums",
    "mse_loss",
    "set_backend",
    "sgd_update_",
    "state_names",
    "supports",
]


def _reduction_code(reduction: str) -> int:
    return _settings.code_of("reduction", reduction, _settings.REDUCTION_CODES)


def _run(name: str, check: Callable[[], None], *args):
    """Run op ``name`` on the active backend; ``check`` names a refusal as an InputError.

    Every backend checks every argument before it writes anything: the reference
    with ``_checks`` (raising InputError itself), the compiled kernels in C++
    (raising RuntimeError). ``check`` runs only when the compiled kernels refuse,
    to name the problem as an InputError: no cost per call on the hot path.
    """
    try:
        return getattr(implementation(), name)(*args)
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


def _tensor_list(tensors: Sequence[Tensor], name: str, example: str) -> List[Tensor]:
    if isinstance(tensors, Tensor):
        raise ValueError(f"{name} must be a list of tensors ({example}), got one tensor of "
                         f"shape {tuple(tensors.shape)}")
    return list(tensors)


def linear_fit_(
    X: Tensor,
    y: Tensor,
    params: Sequence[Tensor],
    state: Sequence[Tensor] = (),
    *,
    lrs: Union[Tensor, Sequence[float]],
    order: Optional[Tensor] = None,
    batch_size: Optional[int] = None,
    loss: str = "squared",
    reduction: str = "mean",
    delta: float = 1.0,
    optimizer: str = "sgd",
    settings: Optional[Mapping[str, Any]] = None,
    step: int = 0,
) -> Tensor:
    """A whole fit of ``y ≈ X @ weight.T + bias`` in one call: one epoch per entry of ``lrs``.

    X (N, D), y (N, K); ``params`` is ``[weight]`` (K, D) or ``[weight, bias]`` with a
    (K,) bias, updated in place. ``loss`` is ``"squared"``, ``"absolute"`` or
    ``"huber"`` (with ``delta``), ``reduction`` ``"mean"`` or ``"sum"``;
    ``optimizer`` is ``"sgd"``, ``"adam"`` (AdamW: ``decoupled_weight_decay=True``),
    ``"rmsprop"`` or ``"adagrad"``, each with torch.optim's update, and ``settings``
    its hyperparameters as in a torch param group (missing ones: torch's defaults;
    the lr comes from ``lrs``). ``state`` holds the optimizer's tensors, param by
    param, in the order ``state_names(optimizer, settings)`` gives, each shaped like
    its param, updated in place; ``step`` counts the steps the params have taken
    before (torch's ``state["step"]``; for SGD, 0 means the momentum buffer holds no
    history yet).

    ``order`` (E, N) int64 gives each epoch's row order for minibatches (None: rows
    in order); ``batch_size`` None is full batch. Returns the (E,) epoch losses,
    each taken before the epoch's updates. A step whose loss is not finite, or that
    leaves a param non-finite, is undone (params and state), the fit stops, that
    epoch's loss is non-finite and the rest are NaN.

    >>> import torch, pyfit
    >>> X = torch.linspace(0, 1, 50).unsqueeze(1); y = 3 * X + 0.8
    >>> w, b = torch.zeros(1, 1), torch.zeros(1)
    >>> state = [torch.zeros_like(w), torch.zeros_like(w), torch.zeros_like(b), torch.zeros_like(b)]
    >>> losses = pyfit.ops.linear_fit_(X, y, [w, b], state, lrs=[0.05] * 2000, optimizer="adam")
    >>> round(w.item(), 2), round(b.item(), 2)
    (3.0, 0.8)
    """
    params = _tensor_list(params, "params", "[weight] or [weight, bias]")
    state = _tensor_list(state, "state", "the optimizer's tensors, param by param")
    optimizer_code = _settings.code_of("optimizer", optimizer, _settings.OPTIMIZER_CODES)
    args = (
        X, y, params, state, torch.as_tensor(lrs, dtype=torch.float64).reshape(-1).cpu(), order,
        0 if batch_size is None else int(batch_size),
        _settings.code_of("loss", loss, _settings.LOSS_CODES), _reduction_code(reduction),
        float(delta), optimizer_code, _settings.settings_vector(optimizer_code, settings), int(step),
    )
    with torch.no_grad():
        return _run("linear_fit_", lambda: _checks.check_linear_fit(*args), *args)


def linear_step_(X: Tensor, y: Tensor, params: Sequence[Tensor], state: Sequence[Tensor] = (), *, lr: float,
                 **options: Any) -> Tensor:
    """One full-batch step of ``linear_fit_``: returns the loss before the update (0-dim).

    ``options`` are ``linear_fit_``'s (loss, reduction, delta, optimizer, settings, step),
    except ``lrs``, ``order`` and ``batch_size``.

    >>> import torch, pyfit
    >>> X, y = torch.tensor([[1.0], [2.0]]), torch.tensor([[2.0], [4.0]])
    >>> w, b = torch.zeros(1, 1), torch.zeros(1)
    >>> pyfit.ops.linear_step_(X, y, [w, b], lr=0.1)
    tensor(10.)
    >>> w
    tensor([[1.]])
    """
    taken = sorted(set(options) & {"lrs", "order", "batch_size"})
    if taken:
        raise TypeError(f"linear_step_ takes one full-batch step at lr; it has no {', '.join(taken)}")
    return linear_fit_(X, y, params, state, lrs=[lr], **options)[0]


def linear_sums(X: Tensor, y: Tensor, params: Sequence[Tensor], *, rows: Optional[Tensor] = None,
                loss: Union[str, int] = "squared", delta: float = 1.0) -> Tensor:
    """One pass over rows of ``y ≈ X @ weight.T + bias``: the unscaled sums of its loss and gradient.

    X (N, D), y (N, K), ``params`` ``[weight]`` (K, D) or ``[weight, bias]`` with a
    (K,) bias, one dtype (float32 or float64) and device; nothing is written.
    ``rows`` is None (all N rows) or a 1-D int64 tensor of indices into X (read in
    place, not copied; empty: all sums are 0). ``loss`` is ``"squared"``,
    ``"absolute"`` or ``"huber"`` (or linear_fit_'s codes 0, 1, 2), ``delta`` the
    huber loss's.

    Returns P = 1 + K + K * D float64 values on X's device: [sum of the loss values,
    sum of f(r) per output (K), sum of f(r) * x (K, D) row-major], over the rows and
    outputs, with r = x · w_k + b_k - y_k (b = 0 without a bias) and f the loss's slope
    without its constant factor: r for squared (value r², gradient 2 r), sign(r) for
    absolute (value |r|), r clamped to [-delta, delta] for huber. Sums over disjoint
    rows add up to the sums over all of them (chunks of a file, or ranks), and a
    gradient is the sums times the loss's scale (2 for squared, and 1 / (rows * K) for
    a mean). The result depends only on the inputs and the device, never on the
    thread count. Runs compiled on the CPU and on CUDA (there up to
    6144 outputs K; a wider weight runs the reference).

    >>> import torch, pyfit
    >>> X, y = torch.tensor([[1.0], [2.0]]), torch.tensor([[2.0], [4.0]])
    >>> pyfit.ops.linear_sums(X, y, [torch.zeros(1, 1), torch.zeros(1)])
    tensor([ 20.,  -6., -10.], dtype=torch.float64)
    """
    params = _tensor_list(params, "params", "[weight] or [weight, bias]")
    args = (X, y, params, rows, _checks.loss_code(loss), float(delta))
    with torch.no_grad():
        if params and not _checks.linear_kernel_takes(params[0]):
            # more outputs than the CUDA kernel holds: the reference computes the same sums
            return _reference.linear_sums(*args)
        return _run("linear_sums", lambda: _checks.check_linear_sums(*args), *args)


def state_names(optimizer: str = "sgd", settings: Optional[Mapping[str, Any]] = None) -> Tuple[str, ...]:
    """The names (torch.optim's) of the state tensors ``linear_fit_`` keeps for each param, in its order.

    >>> import pyfit
    >>> pyfit.ops.state_names("rmsprop", {"momentum": 0.9, "centered": True})
    ('square_avg', 'momentum_buffer', 'grad_avg')
    >>> pyfit.ops.state_names("sgd")
    ()
    """
    code = _settings.code_of("optimizer", optimizer, _settings.OPTIMIZER_CODES)
    return _settings.state_names(code, _settings.settings_vector(code, settings))
