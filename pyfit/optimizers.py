"""Built-in optimizers. ``sgd`` is pyfit's own, running the fused multi-tensor update.

Every optimizer is a ``torch.optim.Optimizer``, so param groups, torch's LR
schedulers and ``state_dict`` save/load work as users expect.

An optimizer whose ``step`` must re-evaluate the loss (``lbfgs``) asks ``fit`` for
a closure: its registry entry carries the ``needs_closure`` flag, or its class sets
``requires_closure = True`` (the way for a plugin optimizer to ask).
"""

from __future__ import annotations

import functools
import inspect
import numbers
import sys
from typing import Any, Iterable, List, Optional

import torch
from torch import Tensor
from torch.optim.sgd import sgd as torch_sgd  # torch's functional SGD update

from . import ops
from .registry import OPTIMIZERS
from .errors import InputError
from .validation import check_optimizer_settings

FUSED_SGD = "fused_sgd"
NEEDS_CLOSURE = "needs_closure"  # step(closure) re-evaluates the loss, so fit must pass one

# what pyfit's fused SGD kernel computes exactly as torch.optim.SGD does
_KERNEL_DTYPES = (torch.float32, torch.float64)


@functools.lru_cache(maxsize=None)
def _kernel_runs_on_cuda() -> bool:
    """Whether pyfit's SGD kernel was built for CUDA tensors (the compiled ops with CUDA)."""
    ops.backend()  # loads the compiled ops, if there are any
    try:
        return torch._C._dispatch_has_kernel_for_dispatch_key("pyfit::sgd_update_", "CUDA")
    except RuntimeError:  # no compiled ops: torch's own update runs CUDA tensors
        return False


def _kernel_takes(param: Tensor, grad: Tensor, buf: Optional[Tensor]) -> bool:
    """Whether the kernel computes torch's update of this param: dense float32/float64 on a
    device it was built for (a few attribute reads)."""
    return (param.dtype in _KERNEL_DTYPES and grad.layout == torch.strided
            and grad.dtype == param.dtype and (buf is None or buf.dtype == param.dtype)
            and (param.is_cpu or (param.is_cuda and _kernel_runs_on_cuda())))


def _plain_number(value: Any) -> bool:
    """A setting the kernel takes as a float with torch's numbers: a number or a constant tensor."""
    return not isinstance(value, Tensor) or not value.requires_grad


class _NoCompilerImport:
    """Builds the optimizer without importing torch's compiler stack.

    torch wraps ``Optimizer.add_param_group`` so that torch.compile never traces into
    it, and that wrapper imports torch._dynamo (over a second, once per process) on
    its first call: every optimizer construction pays it, although a fit on pyfit's
    fused path never needs the compiler. While torch._dynamo is not imported no code
    can be running under torch.compile, so the wrapper would do nothing but import
    it; torch's own method (the wrapped function) then does the work. Once the
    compiler is loaded, torch's wrapper runs as always.
    """

    def add_param_group(self, param_group: dict) -> None:
        unwrapped = getattr(torch.optim.Optimizer.add_param_group, "__wrapped__", None)
        if unwrapped is None or "torch._dynamo" in sys.modules:
            return super().add_param_group(param_group)
        return unwrapped(self, param_group)


@OPTIMIZERS.register("sgd", description="stochastic gradient descent (momentum, nesterov, weight decay), fused update",
                     flags=(FUSED_SGD,))
class SGD(_NoCompilerImport, torch.optim.SGD):
    """torch.optim.SGD with the same arguments, semantics and state_dict, whose step
    updates the dense float32/float64 tensors of a param group in one fused call.

    Everything else torch.optim.SGD takes (half, bfloat16 and complex params,
    sparse gradients, ``differentiable=True``, ``fused=True`` with a GradScaler,
    tensor settings that require grad) goes through torch's own update, so the
    numbers are torch's whichever way a tensor goes.

    >>> import torch, pyfit
    >>> p = torch.nn.Parameter(torch.ones(2)); p.grad = torch.ones(2)
    >>> opt = pyfit.SGD([p], lr=0.5, momentum=0.9)
    >>> opt.step(); p.data
    tensor([0.5000, 0.5000])
    """

    # torch's defaults, to the type: they go into state_dict()["param_groups"]
    def __init__(self, params: Iterable[Any], lr: float | Tensor = 1e-3, momentum: float = 0,
                 dampening: float = 0, weight_decay: float | Tensor = 0, nesterov: bool = False, *,
                 maximize: bool = False, foreach: Optional[bool] = None, differentiable: bool = False,
                 fused: Optional[bool] = None):
        check_optimizer_settings({"lr": lr, "momentum": momentum, "dampening": dampening,
                                  "weight_decay": weight_decay, "nesterov": nesterov}, as_torch=True)
        super().__init__(params, lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                         nesterov=nesterov, maximize=maximize, foreach=foreach, differentiable=differentiable,
                         fused=fused)

    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        # as torch's step: autograd records the update only when the optimizer is differentiable
        with torch.set_grad_enabled(self.defaults["differentiable"]):
            for group in self.param_groups:
                self._step_group(group)
        return loss

    def _kernel_takes_group(self, group: dict) -> bool:
        """Whether the group's settings let the kernel compute torch's update (a few checks per group).

        torch's fused update unscales by GradScaler's ``grad_scale`` and skips on
        ``found_inf``; a differentiable step is recorded by autograd; a setting that
        requires grad is differentiated through. Those stay with torch.
        """
        return (not group["fused"] and not torch.is_grad_enabled()
                and getattr(self, "grad_scale", None) is None and getattr(self, "found_inf", None) is None
                and _plain_number(group["lr"]) and _plain_number(group["weight_decay"])
                and not isinstance(group["momentum"], Tensor) and not isinstance(group["dampening"], Tensor))

    def _step_group(self, group: dict) -> None:
        momentum = group["momentum"]
        if self._kernel_takes_group(group):
            params = [p for p in group["params"] if p.grad is not None]
            grads = [p.grad for p in params]
            if momentum != 0:  # a state entry only for a param with a grad, as torch's
                buffers = [self.state[p].get("momentum_buffer") for p in params]
            else:
                buffers = [None] * len(params)
            mine = [_kernel_takes(p, g, b) for p, g, b in zip(params, grads, buffers)]
        else:
            params, grads, buffers = [], [], []
            # torch's own gathering, with its checks for fused=True
            self._init_group(group, params, grads, buffers)
            if momentum == 0:
                buffers = [None] * len(params)
            mine = [False] * len(params)
        if all(mine):  # the common case: the kernel takes the whole group
            buffers = self._kernel_update(group, params, grads, buffers)
        else:
            # SGD updates each param on its own, so the two routes may split a group
            for update, route in ((self._kernel_update, True), (self._torch_update, False)):
                which = [i for i, fits in enumerate(mine) if fits == route]
                if which:
                    new = update(group, [params[i] for i in which], [grads[i] for i in which],
                                 [buffers[i] for i in which])
                    for i, buf in zip(which, new):
                        buffers[i] = buf
        if momentum != 0:
            for param, buf in zip(params, buffers):
                self.state[param]["momentum_buffer"] = buf

    @staticmethod
    def _kernel_update(group: dict, params: List[Tensor], grads: List[Tensor],
                       buffers: List[Optional[Tensor]]) -> List[Optional[Tensor]]:
        """pyfit's fused update of dense float32/float64 tensors; returns the buffers after it."""
        return ops.sgd_update_(params, grads, buffers, lr=group["lr"], momentum=group["momentum"],
                               dampening=group["dampening"], nesterov=group["nesterov"],
                               weight_decay=group["weight_decay"], maximize=group["maximize"])

    def _torch_update(self, group: dict, params: List[Tensor], grads: List[Tensor],
                      buffers: List[Optional[Tensor]]) -> List[Optional[Tensor]]:
        """torch's own update (any dtype, layout, GradScaler, autograd); returns the buffers after it."""
        torch_sgd(
            params, grads, buffers, has_sparse_grad=any(g.is_sparse for g in grads),
            foreach=group["foreach"], fused=group["fused"], grad_scale=getattr(self, "grad_scale", None),
            found_inf=getattr(self, "found_inf", None), weight_decay=group["weight_decay"],
            momentum=group["momentum"], lr=group["lr"], dampening=group["dampening"],
            nesterov=group["nesterov"], maximize=group["maximize"])
        return buffers  # torch's functional update fills in the buffers it creates


@functools.lru_cache(maxsize=None)
def _torch_signature(cls: type) -> inspect.Signature:
    """The signature of the torch constructor behind ``cls`` (read once per class: it costs more than a
    small fit's step)."""
    signature = inspect.signature(super(_CheckedSettings, cls).__init__)
    return signature.replace(parameters=list(signature.parameters.values())[1:])  # without self


class _CheckedSettings(_NoCompilerImport):
    """Runs pyfit's settings checks before a torch optimizer's own constructor, which takes
    the same arguments, positional ones included."""

    def __init__(self, params: Iterable[Any], *args: Any, **kwargs: Any):
        torch_init = super().__init__
        settings = _torch_signature(type(self)).bind(params, *args, **kwargs).arguments
        check_optimizer_settings({k: v for k, v in settings.items() if k != "params"}, as_torch=True)
        torch_init(params, *args, **kwargs)


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


@OPTIMIZERS.register("lbfgs", description="L-BFGS, a quasi-Newton method (torch.optim.LBFGS; one param group)",
                     flags=(NEEDS_CLOSURE,))
class LBFGS(_CheckedSettings, torch.optim.LBFGS):
    """torch.optim.LBFGS with pyfit's settings checks.

    Each ``step(closure)`` runs up to ``max_iter`` iterations, calling the closure
    up to ``max_eval`` times; ``fit`` passes the closure. Settings torch fails on
    only inside the first step (a line search other than ``"strong_wolfe"``, a
    history shorter than 1) are refused here.

    >>> import torch, pyfit
    >>> p = torch.nn.Parameter(torch.tensor([3.0]))
    >>> opt = pyfit.build_optimizer("lbfgs", [p], line_search_fn="strong_wolfe")
    >>> def closure():
    ...     opt.zero_grad(); loss = ((p - 1) ** 2).sum(); loss.backward(); return loss
    >>> _ = opt.step(closure); round(p.item(), 4)
    1.0
    """

    requires_closure = True

    def __init__(self, params: Iterable[Any], lr: float | Tensor = 1, max_iter: int = 20,
                 max_eval: Optional[int] = None, tolerance_grad: float = 1e-7, tolerance_change: float = 1e-9,
                 history_size: int = 100, line_search_fn: Optional[str] = None):
        # torch takes these and fails inside the first step: refuse them before the fit starts
        if line_search_fn not in (None, "strong_wolfe"):
            raise InputError(f"line_search_fn must be None or 'strong_wolfe', got {line_search_fn!r}")
        if isinstance(history_size, numbers.Real) and history_size < 1:
            raise InputError(f"history_size must be >= 1 (the past steps L-BFGS keeps), got {history_size!r}")
        super().__init__(params, lr=lr, max_iter=max_iter, max_eval=max_eval, tolerance_grad=tolerance_grad,
                         tolerance_change=tolerance_change, history_size=history_size,
                         line_search_fn=line_search_fn)


def requires_closure(optimizer: torch.optim.Optimizer) -> bool:
    """Whether ``optimizer.step`` needs a closure: declared by its class (``requires_closure = True``),
    by its registry entry (the ``needs_closure`` flag), or torch's own LBFGS."""
    if getattr(type(optimizer), "requires_closure", False) is True or isinstance(optimizer, torch.optim.LBFGS):
        return True
    entry = OPTIMIZERS.entry_of(optimizer)
    return entry is not None and NEEDS_CLOSURE in entry.flags


def build_optimizer(name: str, params: Iterable[Any], **kwargs: Any) -> torch.optim.Optimizer:
    """Build the optimizer registered under ``name`` over ``params`` (params first, as in torch.optim).

    >>> import torch, pyfit
    >>> pyfit.build_optimizer("adam", [torch.nn.Parameter(torch.zeros(1))], lr=0.1).defaults["lr"]
    0.1
    """
    return OPTIMIZERS.build(name, params, **kwargs)
