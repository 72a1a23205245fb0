"""Built-in optimizers. ``sgd`` is pyfit's own, running the fused multi-tensor update.

Every optimizer is a ``torch.optim.Optimizer``, so param groups, torch's LR
schedulers and ``state_dict`` save/load work as users expect.
"""

from __future__ import annotations

from typing import Any, Iterable

import torch

from . import ops
from .registry import OPTIMIZERS
from .validation import check_optimizer_settings

FUSED_SGD = "fused_sgd"


@OPTIMIZERS.register("sgd", description="stochastic gradient descent (momentum, nesterov, weight decay), fused update",
                     flags=(FUSED_SGD,))
class SGD(torch.optim.SGD):
    """torch.optim.SGD with the same arguments, semantics and state_dict, whose step
    updates every tensor of a param group in one fused call.

    >>> import torch, pyfit
    >>> p = torch.nn.Parameter(torch.ones(2)); p.grad = torch.ones(2)
    >>> opt = pyfit.SGD([p], lr=0.5, momentum=0.9)
    >>> opt.step(); p.data
    tensor([0.5000, 0.5000])
    """

    def __init__(self, params: Iterable[Any], lr: float = 1e-3, momentum: float = 0.0, dampening: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False, *, maximize: bool = False,
                 foreach=None, differentiable: bool = False, fused=None):
        check_optimizer_settings({"lr": lr, "momentum": momentum, "dampening": dampening,
                                  "weight_decay": weight_decay, "nesterov": nesterov})
        super().__init__(params, lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                         nesterov=nesterov, maximize=maximize, foreach=foreach, differentiable=differentiable,
                         fused=fused)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = group["params"]
            grads = [p.grad for p in params]
            if any(g is not None and g.is_sparse for g in grads):
                raise RuntimeError("pyfit.SGD does not take sparse gradients; use torch.optim.SGD for them")
            momentum = group["momentum"]
            buffers = [self.state[p].get("momentum_buffer") if momentum != 0 else None for p in params]
            buffers = ops.sgd_update_(
                params, grads, buffers, lr=group["lr"], momentum=momentum, dampening=group["dampening"],
                nesterov=group["nesterov"], weight_decay=group["weight_decay"], maximize=group["maximize"])
            if momentum != 0:
                for p, g, buf in zip(params, grads, buffers):
                    if g is not None:
                        self.state[p]["momentum_buffer"] = buf
        return loss


class _CheckedSettings:
    """Runs pyfit's settings checks before a torch optimizer's own constructor."""

    def __init__(self, params: Iterable[Any], **kwargs: Any):
        check_optimizer_settings(kwargs)
        super().__init__(params, **kwargs)


# module-level classes, so that an optimizer (and a fitted estimator holding one) pickles
@OPTIMIZERS.register("adam", description="Adam (torch.optim.Adam)")
class Adam(_CheckedSettings, torch.optim.Adam):
    """torch.optim.Adam with pyfit's settings checks."""


@OPTIMIZERS.register("adamw", description="Adam with decoupled weight decay (torch.optim.AdamW)")
class AdamW(_CheckedSettings, torch.optim.AdamW):
    """torch.optim.AdamW with pyfit's settings checks."""


@OPTIMIZERS.register("rmsprop", description="RMSprop (torch.optim.RMSprop)")
class RMSprop(_CheckedSettings, torch.optim.RMSprop):
    """torch.optim.RMSprop with pyfit's settings checks."""


@OPTIMIZERS.register("adagrad", description="Adagrad (torch.optim.Adagrad)")
class Adagrad(_CheckedSettings, torch.optim.Adagrad):
    """torch.optim.Adagrad with pyfit's settings checks."""


def build_optimizer(name: str, params: Iterable[Any], **kwargs: Any) -> torch.optim.Optimizer:
    """Build the optimizer registered under ``name`` over ``params`` (params first, as in torch.optim).

    >>> import torch, pyfit
    >>> pyfit.build_optimizer("adam", [torch.nn.Parameter(torch.zeros(1))], lr=0.1).defaults["lr"]
    0.1
    """
    return OPTIMIZERS.build(name, params, **kwargs)
