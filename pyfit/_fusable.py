"""When the fused linear loop computes exactly what autograd would, read from declared facts.

The loop evaluates ``design_matrix(X) @ weight.T + bias`` under one of the losses
it knows and applies one of torch's optimizers (SGD, Adam, AdamW, RMSprop,
Adagrad) to weight and bias, with the optimizer's own state. A fit may take it
only when the model, the loss and the optimizer say, through flags on the
classes that define the methods in question, that this is what they compute,
and nothing (a hook, a frozen parameter, a second param group, a setting or a
state the loop does not reproduce) would make autograd do otherwise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
from torch import nn
from torch.nn.modules import module as nn_module
from torch.optim import optimizer as optim_module

from ._fused_state import counts_steps, has_state, settings_vector, state_keys
from .errors import InputError
from .models import LINEAR_IN_PARAMETERS
from .ops import _settings
from .ops._checks import check_settings, linear_kernel_takes
from .optimizers import SGD, Adagrad, Adam, AdamW, RMSprop

# exactly these classes: a subclass may change what step computes
_OPTIMIZERS = {
    SGD: "sgd", torch.optim.SGD: "sgd",
    Adam: "adam", torch.optim.Adam: "adam",
    AdamW: "adam", torch.optim.AdamW: "adam",  # its group says decoupled_weight_decay=True
    RMSprop: "rmsprop", torch.optim.RMSprop: "rmsprop",
    Adagrad: "adagrad", torch.optim.Adagrad: "adagrad",
}
_LOSSES = ("squared", "absolute", "huber")
_REDUCTIONS = ("mean", "sum")
# settings under which torch's step computes something else than its plain update: the fused
# (GradScaler-aware) and capturable implementations, autograd through the step
_OTHER_IMPLEMENTATIONS = ("fused", "capturable", "differentiable")


@dataclass(frozen=True)
class FusionPlan:
    """What the fused linear loop runs a fit with."""

    loss: str  # "squared", "absolute" or "huber"
    reduction: str  # "mean" or "sum"
    delta: float  # huber's threshold; the other losses do not read it
    optimizer: str  # "sgd", "adam" (AdamW too), "rmsprop" or "adagrad"

    def settings(self, group: Mapping[str, Any]) -> Dict[str, Any]:
        """The param group's settings as they are now (a copy: a scheduler changes the group)."""
        return {key: value for key, value in group.items() if key != "params"}

    def vector(self, settings: Mapping[str, Any]) -> List[float]:
        """The settings the loop reads, as the op's vector: where it changes, a call ends."""
        return settings_vector(self.optimizer, settings)


def _declared_by_definer(cls: type, method: str, flag: str) -> Any:
    """The value of ``flag`` in the body of the class that defines ``method`` for ``cls`` (None if unset)."""
    owner = next((c for c in cls.__mro__ if method in vars(c)), None)
    return None if owner is None else vars(owner).get(flag)


def declared_loss(loss_fn: Any) -> Optional[tuple]:
    """``(kind, reduction)`` as the class defining the loss's ``__call__`` declares it in ``fused_loss``,
    or None when it declares nothing the loop computes."""
    declared = _declared_by_definer(type(loss_fn), "__call__", "fused_loss")
    if not isinstance(declared, tuple) or len(declared) != 2:
        return None
    kind, reduction = declared
    return (kind, reduction) if kind in _LOSSES and reduction in _REDUCTIONS else None


def loss_terms(loss_fn: Any) -> Optional[Tuple[str, str, float]]:
    """``(kind, reduction, delta)`` of a loss the loop computes (declared_loss, with Huber's threshold; 1.0
    for the losses that have none), or None where it declares none or its threshold is not a positive float."""
    declared = declared_loss(loss_fn)
    if declared is None:
        return None
    kind, reduction = declared
    if kind != "huber":
        return kind, reduction, 1.0
    delta = getattr(loss_fn, "delta", None)
    if not isinstance(delta, float) or not (0 < delta < math.inf):
        return None
    return kind, reduction, delta


def squared_error_reduction(loss_fn: Any) -> Optional[str]:
    """"mean" or "sum" where the loss declares a squared error, else None."""
    declared = declared_loss(loss_fn)
    return declared[1] if declared is not None and declared[0] == "squared" else None


def has_model_hooks(model: nn.Module, params: Sequence[torch.Tensor]) -> bool:
    """Hooks a pass that skips the model's forward and autograd would skip: on the forward, the params'
    gradients."""
    return bool(
        model._forward_hooks or model._forward_pre_hooks
        or nn_module._global_forward_hooks or nn_module._global_forward_pre_hooks
        or any(getattr(p, "_backward_hooks", None) or getattr(p, "_post_accumulate_grad_hooks", None)
               for p in params))


def _has_hooks(model: nn.Module, optimizer: torch.optim.Optimizer, params: Sequence[torch.Tensor]) -> bool:
    """Hooks the fused call would skip: the model's (has_model_hooks) and the optimizer's step."""
    return bool(
        has_model_hooks(model, params)
        or optimizer._optimizer_step_pre_hooks or optimizer._optimizer_step_post_hooks
        or optim_module._global_optimizer_pre_hooks or optim_module._global_optimizer_post_hooks)


def _linear_params(model: nn.Module, X: torch.Tensor) -> Optional[List[torch.Tensor]]:
    """[weight] or [weight, bias] when the model vouches for being linear in them, they are all it has,
    all train, and they are dense float32/float64 tensors like X; else None."""
    model_cls = type(model)
    if model_cls.__call__ is not nn.Module.__call__:
        return None
    if any(_declared_by_definer(model_cls, method, LINEAR_IN_PARAMETERS) is not True
           for method in ("forward", "design_matrix")):
        return None
    weight, bias = getattr(model, "weight", None), getattr(model, "bias", None)
    if not isinstance(weight, torch.Tensor) or weight.dim() != 2:
        return None
    params = [p for p in (weight, bias) if p is not None]
    # a frozen parameter is left alone by autograd and the optimizer; the loop would train it
    if not all(isinstance(p, nn.Parameter) and p.requires_grad for p in params):
        return None
    if {id(p) for p in model.parameters()} != {id(p) for p in params}:
        return None
    if X.dtype not in (torch.float32, torch.float64) or X.layout != torch.strided:
        return None
    if any(p.dtype != X.dtype or p.device != X.device or p.layout != torch.strided for p in params):
        return None
    return params


def _plain_settings(group: Mapping[str, Any]) -> bool:
    """Whether torch's step runs its plain update with number settings: no tensor lr or betas (the
    loop takes numbers), no fused, capturable or differentiable implementation (foreach computes the
    same update and is taken)."""
    if any(group.get(key) for key in _OTHER_IMPLEMENTATIONS):
        return False
    for key, value in group.items():
        if key == "params":
            continue
        values = value if isinstance(value, (tuple, list)) else (value,)
        if any(isinstance(v, torch.Tensor) for v in values):
            return False
    return True


def _settings_in_range(code: str, group: Mapping[str, Any]) -> bool:
    """Whether the op takes the group's settings (torch's constructors check the same ranges; a
    setting changed afterwards may leave them)."""
    try:
        check_settings(_settings.OPTIMIZER_CODES[code], settings_vector(code, group))
    except (InputError, ValueError):
        return False
    return True


def _same_step(steps: List[Any]) -> bool:
    """Every param's ``state["step"]`` a CPU scalar holding the same whole number, not shared, below
    the count where torch's ``step += 1`` stops counting (2**24 in float32): the loop counts on."""
    if not all(isinstance(s, torch.Tensor) and s.device.type == "cpu" and s.numel() == 1
               and s.dtype.is_floating_point for s in steps):
        return False
    if len({id(s) for s in steps}) != len(steps):  # one tensor counted twice per step
        return False
    values = {float(s) for s in steps}
    value = values.pop()
    exact = 2 / torch.finfo(steps[0].dtype).eps  # 2**24 in float32, 2**53 in float64
    return not values and 0 <= value < exact and value == int(value)


def _usable_state(code: str, group: Mapping[str, Any], optimizer: torch.optim.Optimizer,
                  params: Sequence[torch.Tensor]) -> bool:
    """Whether the optimizer's state is one the loop reproduces: none yet for any param (where torch
    starts it on the first step), or all of it, each tensor shaped, typed and placed like its param."""
    keys = state_keys(code, group)
    if code == "sgd" and not keys:
        return True  # without momentum SGD reads no state
    entries = [optimizer.state.get(p, {}) for p in params]  # .get: torch's defaultdict would add entries
    present = [has_state(code, own) for own in entries]
    if not any(present):
        return code != "adagrad"  # Adagrad starts its state in its constructor, not in its step
    if not all(present):
        return False
    for param, own in zip(params, entries):
        for key in keys:
            tensor = own.get(key)
            if not (isinstance(tensor, torch.Tensor) and tensor.dtype == param.dtype
                    and tensor.device == param.device and tensor.shape == param.shape
                    and tensor.layout == torch.strided and tensor.is_contiguous() and not tensor.requires_grad):
                return False
    return not counts_steps(code) or _same_step([own.get("step") for own in entries])


def fusion_plan(model: nn.Module, loss_fn: Any, optimizer: torch.optim.Optimizer,
                X: torch.Tensor) -> Optional[FusionPlan]:
    """The plan the fused loop runs this fit with, or None when it cannot run it exactly.

    Decided from declared facts: the model's forward and design matrix come from a
    class that declares them linear in the parameters (models.py), the loss's
    ``__call__`` from a class that declares its ``fused_loss`` (losses.py), the
    optimizer is exactly one of the classes in ``_OPTIMIZERS`` with one param group
    over exactly the model's weight and bias, all of which train.
    """
    params = _linear_params(model, X)
    terms = loss_terms(loss_fn)
    code = _OPTIMIZERS.get(type(optimizer))
    if params is None or terms is None or code is None or len(optimizer.param_groups) != 1:
        return None
    kind, reduction, delta = terms
    group = optimizer.param_groups[0]
    if {id(p) for p in group["params"]} != {id(p) for p in params} or len(group["params"]) != len(params):
        return None
    if X.is_cuda and (kind != "squared" or code != "sgd"):
        return None  # the CUDA loop runs the squared error under SGD only
    if not linear_kernel_takes(params[0]):  # too many outputs for the CUDA kernel: autograd takes any number
        return None
    if _has_hooks(model, optimizer, params):
        return None
    # a GradScaler's attributes make torch's step unscale and skip
    if getattr(optimizer, "grad_scale", None) is not None or getattr(optimizer, "found_inf", None) is not None:
        return None
    if not (_plain_settings(group) and _settings_in_range(code, group)
            and _usable_state(code, group, optimizer, params)):
        return None
    return FusionPlan(loss=kind, reduction=reduction, delta=delta, optimizer=code)
