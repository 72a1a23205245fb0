"""What pyfit's ops take, checked before anything is written, whichever backend runs.

pyfit.ops' functions and the fake kernels that torch.compile traces with run these
checks first, so the compiled ops (CPU or CUDA) and the reference refuse the same
inputs with the same ``InputError`` and leave every tensor as it was. The compiled
kernels check the same rules again (csrc/arguments.cpp) for code that calls
``torch.ops.pyfit`` directly.
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

import torch
from torch import Tensor

from ..errors import InputError

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


def check_linear(X: Tensor, y: Tensor, weight: Tensor, bias: Optional[Tensor],
                 weight_buf: Optional[Tensor], bias_buf: Optional[Tensor], momentum: float) -> None:
    """X (N, D), y (N, K), weight (K, D), bias (K,); with momentum, buffers like weight and bias."""
    named = [("y", y), ("weight", weight), ("bias", bias), ("weight_buf", weight_buf),
             ("bias_buf", bias_buf)]
    given = [(name, t) for name, t in named if t is not None]
    for name, t in given:
        _check_device(t, name, X, "X")
    _check_dtype(X, "X")
    for name, t in given:
        if t.dtype != X.dtype:
            raise InputError(f"{name} must have X's dtype {X.dtype}, got {t.dtype}")
    if X.dim() != 2:
        raise InputError(f"X must be 2-D (N, D), got shape {tuple(X.shape)}")
    if weight.dim() != 2 or weight.shape[1] != X.shape[1]:
        raise InputError(f"weight must have shape (K, {X.shape[1]}) for X of shape "
                         f"{tuple(X.shape)}, got {tuple(weight.shape)}")
    n, k = X.shape[0], weight.shape[0]
    _check_shape(y, "y", (n, k))
    _check_writable(weight, "weight")
    if bias is not None:
        _check_shape(bias, "bias", (k,))
        _check_writable(bias, "bias")
    if momentum != 0:
        if weight_buf is None:
            raise InputError(f"with momentum {momentum}, weight_buf (shaped like weight) is required, got None")
        _check_shape(weight_buf, "weight_buf", tuple(weight.shape))
        _check_writable(weight_buf, "weight_buf")
        if bias is not None:
            if bias_buf is None:
                raise InputError(f"with momentum {momentum} and a bias, bias_buf (shaped like bias) "
                                 "is required, got None")
            _check_shape(bias_buf, "bias_buf", (k,))
            _check_writable(bias_buf, "bias_buf")


def check_fit_schedule(X: Tensor, lrs: Tensor, order: Optional[Tensor]) -> None:
    """lrs: (E,) learning rates; order: None or (E, N) int64 row indices on the CPU or X's device."""
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
    if order is None or order.numel() == 0:
        return
    low, high = int(order.min()), int(order.max())
    if low < 0 or high >= n:
        raise InputError(f"order must hold row indices in [0, {n}), got values in [{low}, {high}]")
