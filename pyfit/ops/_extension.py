"""Loading of pyfit's compiled ops, and their Python face.

The ops live in the ``pyfit`` namespace of torch's dispatcher once a library that
defines them is loaded: the extension module ``pyfit._C``, or a library built by
CMake when ``PYFIT_LIBRARY=/path/to/libpyfit_ops.so`` is set. With
``PYFIT_JIT_BUILD=1`` a missing extension is compiled just in time (needs ninja and
a compiler). Here we add what torch.compile and autograd need: fake (meta) kernels
for every op and the backward of the squared error.
"""

from __future__ import annotations

import glob
import inspect
import os
from types import SimpleNamespace
from typing import List, Optional, Sequence, Tuple

import torch
from torch import Tensor

from . import _checks

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_OPS = ("mse_loss_fwd", "sgd_update_", "linear_fit_", "linear_sums")
_registered = False


def _load_library() -> Optional[str]:
    """Load a library defining the ops; return None, or why none could be loaded."""
    path = os.environ.get("PYFIT_LIBRARY")
    if path:
        try:
            torch.ops.load_library(path)
        except OSError as error:
            return (f"PYFIT_LIBRARY={path} could not be loaded ({error}); rebuild it with "
                    "CMake against this torch or unset PYFIT_LIBRARY")
        return None
    try:
        from .. import _C  # noqa: F401
    except ImportError as error:
        if "undefined symbol" in str(error):
            return (f"pyfit._C was built against another torch than {torch.__version__} "
                    f"({error}); reinstall pyfit (pip install --no-build-isolation .)")
        if os.environ.get("PYFIT_JIT_BUILD") == "1":
            return _jit_build()
        return (f"the compiled extension pyfit._C is not built ({error}); run "
                "'pip install .' or set PYFIT_JIT_BUILD=1 to compile it on first use")
    return None


def _jit_build() -> Optional[str]:
    from torch.utils import cpp_extension

    sources = sorted(glob.glob(os.path.join(_ROOT, "csrc", "*.cpp")))
    if not sources:
        return "PYFIT_JIT_BUILD=1 but pyfit's csrc/ sources are not next to the package"
    try:
        omp = ["-fopenmp"] if "OpenMP" in torch.__config__.parallel_info() else []
        cpp_extension.load(name="pyfit_jit_ops", sources=sources,
                           extra_include_paths=[os.path.join(_ROOT, "csrc")],
                           extra_cflags=["-O3", *omp], extra_ldflags=omp,
                           is_python_module=False)
    except Exception as error:  # a compiler error is long; its first line says enough
        return f"PYFIT_JIT_BUILD=1 but compiling the ops failed: {str(error).splitlines()[0]}"
    return None


def _is_one(grad_loss: Tensor) -> bool:
    """Whether the incoming gradient is the scalar 1, checked only where that costs no sync."""
    # a traced or fake tensor (torch.compile, opcheck) has no value to look at
    if type(grad_loss) is not torch.Tensor or torch.compiler.is_compiling():
        return False
    if grad_loss.device.type != "cpu" or grad_loss.numel() != 1:
        return False
    return bool(grad_loss.item() == 1.0)


def _register_python_parts() -> None:
    """Fake kernels for every op and autograd for mse_loss_fwd, once per process."""
    global _registered
    if _registered:
        return

    # The fake kernels check what the compiled kernels check, so that torch.compile,
    # and tensors of mixed devices that reach them (a meta tensor among CPU ones),
    # get the same errors instead of empty results.
    @torch.library.register_fake("pyfit::mse_loss_fwd")
    def _(pred: Tensor, target: Tensor, reduction: int) -> Tuple[Tensor, Tensor]:
        _checks.check_mse(pred, target)
        return pred.new_empty(()), torch.empty_like(pred, memory_format=torch.contiguous_format)

    @torch.library.register_fake("pyfit::sgd_update_")
    def _(params, grads, momentum_buffers, first_step, lr, momentum, dampening, nesterov,
          weight_decay, maximize, zero_grads) -> None:
        _checks.check_sgd_counts(params, grads, momentum_buffers, first_step, momentum)
        _checks.check_sgd(params, grads, momentum_buffers if momentum != 0 else [], zero_grads)
        return None

    @torch.library.register_fake("pyfit::linear_fit_")
    def _(X, y, params, state, lrs, order, batch_size, loss, reduction, delta, optimizer,
          settings, step) -> Tensor:
        _checks.check_linear_fit(X, y, params, state, lrs, order, batch_size, loss, reduction,
                                 delta, optimizer, settings, step, read_values=False)
        return X.new_empty((lrs.shape[0],))

    @torch.library.register_fake("pyfit::linear_sums")
    def _(X, y, params, rows, loss, delta) -> Tensor:
        _checks.check_linear_sums(X, y, params, rows, loss, delta, read_values=False)
        return X.new_empty((1 + params[0].shape[0] * (1 + X.shape[1]),), dtype=torch.float64)

    def setup_context(ctx, inputs, output) -> None:
        pred, target, reduction = inputs
        # pred and target (as F.mse_loss keeps them) recompute the gradient for any
        # backward after the forward's own gradient was handed to autograd
        ctx.save_for_backward(pred, target)
        ctx.scale = 2.0 / max(pred.numel(), 1) if reduction == 0 else 2.0
        # detached: the output's autograd history would make ctx -> grad -> node a cycle
        ctx.forward_grad = output[1].detach()
        # nothing flows back through the gradient output; without this autograd would
        # fill a tensor of zeros the size of pred for it on every backward
        ctx.set_materialize_grads(False)

    def backward(ctx, grad_loss: Tensor, _grad_of_grad: Optional[Tensor]):
        # d loss / d pred was computed by the forward; d loss / d target is its negation.
        pred, target = ctx.saved_tensors
        needs_pred, needs_target = ctx.needs_input_grad[:2]
        if grad_loss is None or not (needs_pred or needs_target):
            return None, None, None
        grad = ctx.forward_grad
        # recomputed when an earlier backward handed it to autograd (it may have changed
        # since), or when a double backward needs its history (create_graph=True)
        if grad is None or torch.is_grad_enabled():
            grad = (pred - target) * ctx.scale
        # loss.backward() seeds with 1: hand back the gradient itself, so the backward
        # costs no pass over the data
        grad_pred = grad if _is_one(grad_loss) else grad * grad_loss
        if grad_pred is grad and needs_pred:
            # autograd may keep it as .grad and add later gradients into it in place
            # (backward(retain_graph=True) twice): it is not read from here again
            ctx.forward_grad = None
        # the negation is a full pass over pred's size: only when target needs it
        return (grad_pred if needs_pred else None), (-grad_pred if needs_target else None), None

    torch.library.register_autograd("pyfit::mse_loss_fwd", backward, setup_context=setup_context)
    _registered = True


# The functions below have the reference's names and positional signatures.

def mse_loss_fwd(pred: Tensor, target: Tensor, reduction: int) -> Tuple[Tensor, Tensor]:
    return torch.ops.pyfit.mse_loss_fwd(pred, target, reduction)


def mse_loss(pred: Tensor, target: Tensor, reduction: int) -> Tensor:
    return torch.ops.pyfit.mse_loss_fwd(pred, target, reduction)[0]


def sgd_update_(params: Sequence[Tensor], grads: Sequence[Tensor],
                momentum_buffers: Sequence[Tensor], first_step: Sequence[bool], lr: float,
                momentum: float, dampening: float, nesterov: bool, weight_decay: float,
                maximize: bool, zero_grads: bool) -> None:
    torch.ops.pyfit.sgd_update_(list(params), list(grads), list(momentum_buffers),
                                [bool(f) for f in first_step], lr, momentum, dampening,
                                nesterov, weight_decay, maximize, zero_grads)


def linear_fit_(X: Tensor, y: Tensor, params: Sequence[Tensor], state: Sequence[Tensor],
                lrs: Tensor, order: Optional[Tensor], batch_size: int, loss: int, reduction: int,
                delta: float, optimizer: int, settings: Sequence[float], step: int) -> Tensor:
    return torch.ops.pyfit.linear_fit_(X, y, list(params), list(state), lrs, order, batch_size,
                                       loss, reduction, delta, optimizer, list(settings), step)


def linear_sums(X: Tensor, y: Tensor, params: Sequence[Tensor], rows: Optional[Tensor], loss: int,
                delta: float) -> Tensor:
    return torch.ops.pyfit.linear_sums(X, y, list(params), rows, loss, delta)


_FUNCTIONS: List = [mse_loss_fwd, mse_loss, sgd_update_, linear_fit_, linear_sums]


def _schema_arguments(name: str) -> List[str]:
    return [argument.name for argument in getattr(torch.ops.pyfit, name).default._schema.arguments]


def _adapter_arguments(name: str) -> List[str]:
    adapter = next(f for f in _FUNCTIONS if f.__name__ == name)
    return list(inspect.signature(adapter).parameters)


def load():
    """Return (ops, None) when the compiled ops can be used, else (None, reason).

    ``ops`` has the reference's function names and signatures.
    """
    reason = _load_library()
    if reason is not None:
        return None, reason
    missing = [name for name in _OPS if not hasattr(torch.ops.pyfit, name)]
    if missing:
        return None, (f"the loaded pyfit library lacks the ops {', '.join(missing)}; rebuild it "
                      "from this version's csrc/")
    stale = [name for name in _OPS if _schema_arguments(name) != _adapter_arguments(name)]
    if stale:
        return None, (f"the loaded pyfit library's ops {', '.join(stale)} take other arguments than "
                      "this version's; rebuild it from this version's csrc/")
    _register_python_parts()
    return SimpleNamespace(**{f.__name__: f for f in _FUNCTIONS}), None
