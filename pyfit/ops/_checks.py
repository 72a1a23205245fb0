"""What pyfit's ops take, checked before anything is written, whichever backend runs.

pyfit.ops' functions and the fake kernels that torch.compile traces with run these
checks first, so the compiled ops (CPU or CUDA) and the reference refuse the same
inputs with the same ``InputError`` and leave every tensor as it was. The compiled
kernels check the same rules again (csrc/arguments.cpp) for code that calls
``torch.ops.pyfit`` directly.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

from ..errors import InputError
from . import _settings

# The ops compute in these dtypes only, on every backend and device.
SUPPORTED_DTYPES: Tuple[torch.dtype, ...] = (torch.float32, torch.float64)

# The CUDA linear kernel keeps a tile of residuals per output in shared memory, so it
# takes at most this many outputs (csrc/cuda/kernels.h, kLinearMaxOutputs).
CUDA_MAX_LINEAR_OUTPUTS = 6144


def linear_kernel_takes(weight: Tensor) -> bool:
    """Whether the compiled linear kernels take a weight of this many outputs on its device."""
    return not weight.is_cuda or weight.shape[0] <= CUDA_MAX_LINEAR_OUTPUTS


def supports(*tensors: Tensor) -> bool:
    """Whether the ops take these tensors' dtypes: one of SUPPORTED_DTYPES, all the same."""
    return all(t.dtype == tensors[0].dtype for t in tensors) and tensors[0].dtype in SUPPORTED_DTYPES


def _check_dtype(t: Tensor, name: str) -> None:
    if t.dtype not in SUPPORTED_DTYPES:
        raise InputError(
            f"{name} must be float32 or float64, got {t.dtype}: pyfit's fused ops compute in "
            "these two only (convert with .float(), or use torch's own ops for this dtype)"
        )


def _check_like(t: Tensor, name: str, ref: Tensor, ref_name: str) -> None:
    if t.dtype != ref.dtype:
        raise InputError(f"{name} must have {ref_name}'s dtype {ref.dtype}, got {t.dtype}")
    if t.shape != ref.shape:
        raise InputError(f"{name} must have {ref_name}'s shape {tuple(ref.shape)}, got {tuple(t.shape)}")


def _check_device(t: Tensor, name: str, first: Tensor, first_name: str) -> None:
    if t.device != first.device:
        raise InputError(f"all tensors of one call must be on one device: {first_name} is on "
                         f"{first.device}, {name} on {t.device}")


def _check_shape(t: Tensor, name: str, expected: Tuple[int, ...]) -> None:
    if tuple(t.shape) != expected:
        raise InputError(f"{name} must have shape {expected}, got {tuple(t.shape)}")


def _check_writable(t: Tensor, name: str) -> None:
    # 1: some elements share memory (an expanded, stride-0 tensor); 2: cannot tell cheaply
    if torch._debug_has_internal_overlap(t) == 1:
        raise InputError(f"{name} is written by this op but several of its elements share memory "
                         f"(stride {t.stride()}, e.g. an expanded tensor); pass a tensor that owns "
                         "its elements, e.g. .clone()")


def check_mse(pred: Tensor, target: Tensor) -> None:
    if pred.shape != target.shape:
        raise InputError(f"Shape mismatch: pred has shape {tuple(pred.shape)}, target {tuple(target.shape)}")
    _check_device(target, "target", pred, "pred")
    _check_dtype(pred, "pred")
    _check_like(target, "target", pred, "pred")


def check_sgd_counts(params: Sequence[Tensor], grads: Sequence[Tensor], buffers: Sequence[Tensor],
                     first_step: Sequence[bool], momentum: float) -> None:
    """One grad, one first_step flag and (with momentum) one buffer per param."""
    if len(grads) != len(params) or len(first_step) != len(params) or (
            momentum != 0 and len(buffers) != len(params)):
        raise InputError(f"sgd_update_ takes one grad, one first_step flag and (with momentum) one "
                         f"buffer per param: got {len(params)} params, {len(grads)} grads, "
                         f"{len(first_step)} flags and {len(buffers)} buffers")


def check_sgd(params: Sequence[Tensor], grads: Sequence[Tensor], buffers: Sequence[Tensor],
              zero_grads: bool) -> None:
    """One grad (and, when ``buffers`` is not empty, one buffer) per param, each like its param."""
    for i, (param, grad) in enumerate(zip(params, grads)):
        p, g = f"params[{i}]", f"grads[{i}]"
        _check_device(param, p, params[0], "params[0]")
        _check_device(grad, g, params[0], "params[0]")
        # one call may mix float32 and float64 params, as torch.optim.SGD's groups may
        _check_dtype(param, p)
        _check_like(grad, g, param, p)
        _check_writable(param, p)
        if zero_grads:
            _check_writable(grad, g)
        if buffers:
            b = f"momentum_buffers[{i}]"
            _check_device(buffers[i], b, params[0], "params[0]")
            _check_like(buffers[i], b, param, p)
            _check_writable(buffers[i], b)


def check_linear_fit(X: Tensor, y: Tensor, params: Sequence[Tensor], state: Sequence[Tensor],
                     lrs: Tensor, order: Optional[Tensor], batch_size: int, loss: int,
                     reduction: int, delta: float, optimizer: int, settings: Sequence[float],
                     step: int, *, read_values: bool = True) -> None:
    """Every argument of linear_fit_, in the op's order (see pyfit.ops.linear_fit_ for their meaning).

    ``read_values=False`` skips the one check that reads a tensor's values (order's
    indices): the fake kernels' tensors have none.
    """
    _check_codes(loss, reduction, delta, optimizer)
    check_settings(optimizer, settings)
    if step < 0:
        raise InputError(f"step counts the steps already taken and must be >= 0, got {step}")
    _check_linear_tensors(X, y, params)
    for i, p in enumerate(params):
        _check_writable(p, f"params[{i}]")
    _check_state(params, state, optimizer, settings)
    check_fit_schedule(X, lrs, order)
    if read_values:
        check_order_values(order, X.shape[0])


def loss_code(loss: Union[str, int]) -> int:
    """The code of a loss given by name (``_settings.LOSS_CODES``) or by its code."""
    codes = _settings.LOSS_CODES
    if isinstance(loss, str) and loss in codes:
        return codes[loss]
    if isinstance(loss, int) and not isinstance(loss, bool) and loss in codes.values():
        return loss
    named = ", ".join(f"{name!r} ({code})" for name, code in codes.items())
    raise InputError(f"unknown loss {loss!r}: expected one of {named}")


def check_linear_sums(X: Tensor, y: Tensor, params: Sequence[Tensor], rows: Optional[Tensor],
                      loss: int, delta: float, *, read_values: bool = True) -> None:
    """Every argument of linear_sums, in the op's order (see pyfit.ops.linear_sums).

    ``read_values=False`` skips the one check that reads a tensor's values (rows'
    indices): the fake kernels' tensors have none.
    """
    _check_loss(loss, delta)
    _check_linear_tensors(X, y, params)
    if rows is None:
        return
    if not isinstance(rows, Tensor):
        raise InputError(f"rows must be None or a 1-D int64 tensor of row indices into X, got "
                         f"{type(rows).__name__}")
    if rows.device.type != "cpu" and rows.device != X.device:
        raise InputError(f"rows must be on the CPU or on X's device {X.device}, got {rows.device}")
    if rows.dtype != torch.int64:
        raise InputError(f"rows must be int64 (row indices into X), got {rows.dtype}")
    if rows.dim() != 1:
        raise InputError(f"rows must be 1-D (row indices into X), got shape {tuple(rows.shape)}")
    if read_values:
        _check_row_indices(rows, "rows", X.shape[0])


def _check_loss(loss: int, delta: float) -> None:
    if loss not in _settings.LOSS_CODES.values():
        named = ", ".join(f"{c} ({name})" for name, c in _settings.LOSS_CODES.items())
        raise InputError(f"loss code must be one of {named}, got {loss}")
    if loss == _settings.HUBER and not (math.isfinite(delta) and delta > 0):
        raise InputError(f"the huber loss needs a finite delta > 0, got {delta}")


def _check_codes(loss: int, reduction: int, delta: float, optimizer: int) -> None:
    _check_loss(loss, delta)
    for kind, code, codes in (("reduction", reduction, _settings.REDUCTION_CODES),
                              ("optimizer", optimizer, _settings.OPTIMIZER_CODES)):
        if code not in codes.values():
            named = ", ".join(f"{c} ({name})" for name, c in codes.items())
            raise InputError(f"{kind} code must be one of {named}, got {code}")


# the ranges torch.optim's constructors accept, checked on every entry whichever
# optimizer reads it (an entry an optimizer does not read is 0)
_ZERO_OR_ONE = ("nesterov", "maximize", "amsgrad", "decoupled_weight_decay", "centered")
_AT_LEAST_ZERO = ("momentum", "weight_decay", "eps", "alpha", "lr_decay")
_FROM_ZERO_BELOW_ONE = ("beta1", "beta2")


def check_settings(optimizer: int, settings: Sequence[float]) -> None:
    """13 finite settings (``_settings.SETTING_NAMES``) in the ranges torch.optim accepts."""
    names = _settings.SETTING_NAMES
    if len(settings) != len(names):
        raise InputError(f"settings must hold {len(names)} values ({', '.join(names)}), "
                         f"got {len(settings)}")
    value = dict(zip(names, (float(v) for v in settings)))
    for name in names:
        if not math.isfinite(value[name]):
            raise InputError(f"setting {name} must be finite, got {value[name]}")
    for name in _ZERO_OR_ONE:
        if value[name] not in (0.0, 1.0):
            raise InputError(f"setting {name} is a flag and must be 0 or 1, got {value[name]}")
    for name in _AT_LEAST_ZERO:
        if value[name] < 0:
            raise InputError(f"setting {name} must be >= 0, got {value[name]}")
    for name in _FROM_ZERO_BELOW_ONE:
        if not 0 <= value[name] < 1:
            raise InputError(f"setting {name} must be in [0, 1), got {value[name]}")
    if optimizer == _settings.SGD and value["nesterov"] and (
            value["momentum"] <= 0 or value["dampening"] != 0):
        raise InputError(f"nesterov momentum needs a momentum > 0 and zero dampening, got momentum "
                         f"{value['momentum']} and dampening {value['dampening']}")


def _check_linear_tensors(X: Tensor, y: Tensor, params: Sequence[Tensor]) -> None:
    """X (N, D), y (N, K), params [weight (K, D)] or [weight, bias (K,)], one dtype and device."""
    if len(params) not in (1, 2):
        raise InputError(f"params must be [weight] or [weight, bias], got {len(params)} tensors")
    named = [("y", y)] + [(f"params[{i}]", p) for i, p in enumerate(params)]
    for name, t in named:
        _check_device(t, name, X, "X")
    _check_dtype(X, "X")
    for name, t in named:
        if t.dtype != X.dtype:
            raise InputError(f"{name} must have X's dtype {X.dtype}, got {t.dtype}")
    if X.dim() != 2:
        raise InputError(f"X must be 2-D (N, D), got shape {tuple(X.shape)}")
    weight = params[0]
    if weight.dim() != 2 or weight.shape[1] != X.shape[1]:
        raise InputError(f"params[0] (the weight) must have shape (K, {X.shape[1]}) for X of shape "
                         f"{tuple(X.shape)}, got {tuple(weight.shape)}")
    n, k = X.shape[0], weight.shape[0]
    _check_shape(y, "y", (n, k))
    if len(params) == 2:
        _check_shape(params[1], "params[1] (the bias)", (k,))


def _check_state(params: Sequence[Tensor], state: Sequence[Tensor], optimizer: int,
                 settings: Sequence[float]) -> None:
    """Param-major state: each param's tensors in ``_settings.state_names`` order, each like its param."""
    names = _settings.state_names(optimizer, settings)
    if len(state) != len(params) * len(names):
        optimizer_name = next(n for n, c in _settings.OPTIMIZER_CODES.items() if c == optimizer)
        per_param = f"[{', '.join(names)}]" if names else "nothing"
        raise InputError(f"{optimizer_name} with these settings keeps {per_param} for each param, "
                         f"param by param: state must hold {len(params) * len(names)} tensors for "
                         f"{len(params)} params, got {len(state)}")
    for i, t in enumerate(state):
        owner = f"params[{i // len(names)}]"
        name = f"state[{i}] ({names[i % len(names)]} of {owner})"
        param = params[i // len(names)]
        _check_device(t, name, param, owner)
        _check_like(t, name, param, owner)
        _check_writable(t, name)


def check_fit_schedule(X: Tensor, lrs: Tensor, order: Optional[Tensor]) -> None:
    """lrs: (E,) float64 CPU learning rates; order: None or (E, N) int64 row indices on the CPU or X's device."""
    if lrs.dim() != 1 or lrs.dtype != torch.float64 or lrs.device.type != "cpu":
        raise InputError(f"lrs must be a 1-D float64 CPU tensor (one learning rate per epoch), got "
                         f"{lrs.dim()}-D {lrs.dtype} on {lrs.device}")
    epochs, n = lrs.shape[0], X.shape[0]
    if n == 0 and epochs > 0:
        raise InputError(f"linear_fit_ needs at least one row, got X of shape {tuple(X.shape)}")
    if order is None:
        return
    if order.device.type != "cpu" and order.device != X.device:
        raise InputError(f"order must be on the CPU or on X's device {X.device}, got {order.device}")
    if order.dtype != torch.int64:
        raise InputError(f"order must be int64, got {order.dtype}")
    _check_shape(order, "order", (epochs, n))


def check_order_values(order: Optional[Tensor], n: int) -> None:
    """Every index of ``order`` names a row of X (a pass over order, not over X)."""
    if order is not None:
        _check_row_indices(order, "order", n)


def _check_row_indices(indices: Tensor, name: str, n: int) -> None:
    if indices.numel() == 0:
        return
    low, high = int(indices.min()), int(indices.max())
    if low < 0 or high >= n:
        raise InputError(f"{name} must hold row indices in [0, {n}), got values in [{low}, {high}]")
