"""When the fused linear kernel computes exactly what autograd would, read from declared facts.

The kernel evaluates ``design_matrix(X) @ weight.T + bias`` under a squared error
and applies pyfit's SGD to weight and bias. A fit may take it only when the model,
the loss and the optimizer say, through flags on the classes that define the
methods in question, that this is what they compute, and nothing (a hook, a frozen
parameter, a second param group) would make autograd do otherwise.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import torch
from torch import nn
from torch.nn.modules import module as nn_module
from torch.optim import optimizer as optim_module

from .models import LINEAR_IN_PARAMETERS
from .ops._checks import linear_kernel_takes
from .optimizers import SGD


def _declared_by_definer(cls: type, method: str, flag: str) -> Any:
    """The value of ``flag`` in the body of the class that defines ``method`` for ``cls`` (None if unset)."""
    owner = next((c for c in cls.__mro__ if method in vars(c)), None)
    return None if owner is None else vars(owner).get(flag)


def _has_hooks(model: nn.Module, optimizer: torch.optim.Optimizer, params: Sequence[torch.Tensor]) -> bool:
    """Hooks the fused call would skip: on the model's forward, the params' gradients, the optimizer's step."""
    return bool(
        model._forward_hooks or model._forward_pre_hooks
        or nn_module._global_forward_hooks or nn_module._global_forward_pre_hooks
        or optimizer._optimizer_step_pre_hooks or optimizer._optimizer_step_post_hooks
        or optim_module._global_optimizer_pre_hooks or optim_module._global_optimizer_post_hooks
        or any(getattr(p, "_backward_hooks", None) or getattr(p, "_post_accumulate_grad_hooks", None)
               for p in params))


def fused_reduction(model: nn.Module, loss_fn: Any, optimizer: torch.optim.Optimizer,
                     X: torch.Tensor) -> Optional[str]:
    """The squared-error reduction the fused call runs this fit with, or None when it cannot run it exactly.

    Decided from declared facts: the model's forward and design matrix come from a
    class that declares them linear in the parameters (models.py), the loss's
    ``__call__`` from a class that declares its ``fused_reduction``, the optimizer
    is pyfit's SGD over exactly the model's weight and bias, all of which train.
    """
    model_cls = type(model)
    if model_cls.__call__ is not nn.Module.__call__:
        return None
    if any(_declared_by_definer(model_cls, method, LINEAR_IN_PARAMETERS) is not True
           for method in ("forward", "design_matrix")):
        return None
    reduction = _declared_by_definer(type(loss_fn), "__call__", "fused_reduction")
    if reduction not in ("mean", "sum"):
        return None
    if type(optimizer) is not SGD or len(optimizer.param_groups) != 1:
        return None
    weight, bias = getattr(model, "weight", None), getattr(model, "bias", None)
    if not isinstance(weight, torch.Tensor) or weight.dim() != 2:
        return None
    params = [p for p in (weight, bias) if p is not None]
    # a frozen parameter is left alone by autograd and the optimizer; the kernel would train it
    if not all(isinstance(p, nn.Parameter) and p.requires_grad for p in params):
        return None
    expected = {id(p) for p in params}
    group_params = {id(p) for p in optimizer.param_groups[0]["params"]}
    model_params = {id(p) for p in model.parameters()}
    if group_params != expected or model_params != expected:
        return None
    if any(p.dtype != X.dtype or p.device != X.device for p in params):
        return None
    if not linear_kernel_takes(weight):  # too many outputs for the CUDA kernel: autograd takes any number
        return None
    if _has_hooks(model, optimizer, params):
        return None
    if optimizer.param_groups[0]["momentum"] != 0:
        # the fused step keeps weight's and bias's buffers in step; a half-made state is left to autograd
        has = [optimizer.state.get(p, {}).get("momentum_buffer") is not None for p in params]
        if len(set(has)) > 1:
            return None
    return reduction if X.dtype in (torch.float32, torch.float64) else None
