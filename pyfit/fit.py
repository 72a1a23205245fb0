"""``pyfit.fit``: one call from data to a trained model, a history and its plots.

Everything the user passes is resolved and checked first; only then does any
parameter or optimizer state change. The epochs then run on the fastest correct
path (see ``_paths.py``).
"""

from __future__ import annotations

import inspect
import time
from typing import Any, Dict, Iterable, Optional

import torch
from torch import nn

from . import _paths
from .callbacks import COMPLETED, Callback, FitState, LRScheduling
from .checkpoint import read_checkpoint, registry_name, restore, save_checkpoint
from .errors import InputError
from .losses import as_loss, build_loss
from .models import build_model
from .optimizers import build_optimizer
from .predict import model_dtype_device
from .result import FitResult
from .schedulers import EPOCH_ONLY, build_scheduler
from .validation import (
    check_checkpoint_settings,
    check_features,
    check_fit_data,
    check_optimizer_settings,
    check_outputs,
    check_positive_int,
    check_resume_settings,
)

DEFAULT_LR = 0.01
DEFAULT_EPOCHS = 100


def _resolve_model(model: Any, X: torch.Tensor, y: torch.Tensor, seed: Optional[int],
                   model_kwargs: Dict[str, Any]) -> nn.Module:
    if isinstance(model, nn.Module):
        if model_kwargs:
            raise TypeError("model_kwargs only applies when the model is given by name")
        return model
    if not isinstance(model, str) and not callable(model):
        raise TypeError(f"model must be a registry name, a torch.nn.Module or a factory, got {type(model).__name__}")
    kwargs = {"in_features": X.shape[1], **model_kwargs}
    if y.dim() == 2:
        kwargs.setdefault("out_features", y.shape[1])
    factory = (lambda **kw: build_model(model, **kw)) if isinstance(model, str) else model
    if seed is None:
        built = factory(**kwargs)
    else:
        with torch.random.fork_rng(devices=[]):
            # the CPU generator alone: torch.manual_seed also seeds every CUDA device,
            # which costs more than a small fit
            torch.default_generator.manual_seed(seed)
            built = factory(**kwargs)
    if not isinstance(built, nn.Module):
        raise TypeError(f"the model factory returned {type(built).__name__}, not a torch.nn.Module")
    if any(p.dtype != X.dtype for p in built.parameters()):
        built = built.to(X.dtype)
    return built


def _resolve_optimizer(optimizer: Any, model: nn.Module, lr: Optional[float],
                       optimizer_kwargs: Dict[str, Any]) -> torch.optim.Optimizer:
    if isinstance(optimizer, torch.optim.Optimizer):
        if lr is not None or optimizer_kwargs:
            raise TypeError("lr and optimizer settings go to the optimizer you built; "
                            "pass them there, or give the optimizer by name")
        return optimizer
    settings = {"lr": DEFAULT_LR if lr is None else lr, **optimizer_kwargs}
    check_optimizer_settings(settings)
    params = list(model.parameters())
    if not params:
        raise TypeError(f"the model {type(model).__name__} has no parameters to fit")
    if isinstance(optimizer, str):
        return build_optimizer(optimizer, params, **settings)
    if callable(optimizer):
        return optimizer(params, **settings)
    raise TypeError(f"optimizer must be a registry name, an optimizer or a class, got {type(optimizer).__name__}")


def _resolve_scheduler(scheduler: Any, optimizer: torch.optim.Optimizer, epochs: int,
                       scheduler_kwargs: Dict[str, Any]) -> Any:
    if scheduler is None:
        return None
    if isinstance(scheduler, str):
        return build_scheduler(scheduler, optimizer, epochs=epochs, **scheduler_kwargs)
    if hasattr(scheduler, "step") and not inspect.isclass(scheduler):
        return scheduler
    if callable(scheduler):
        return scheduler(optimizer, **scheduler_kwargs)
    raise TypeError(f"scheduler must be a registry name, a scheduler or a factory, got {type(scheduler).__name__}")


def _epoch_only(scheduler: Any) -> bool:
    """True when the scheduler's learning rates depend on the epoch alone."""
    if scheduler is None:
        return True
    from .registry import SCHEDULERS

    entry = SCHEDULERS.entry_of(scheduler)
    if entry is not None:
        return EPOCH_ONLY in entry.flags
    from torch.optim import lr_scheduler

    return isinstance(scheduler, lr_scheduler.LRScheduler)


def fit(
    model: Any,
    X: Any,
    y: Any,
    *,
    loss: Any = "mse",
    optimizer: Any = "sgd",
    lr: Optional[float] = None,
    epochs: int = DEFAULT_EPOCHS,
    batch_size: Optional[int] = None,
    shuffle: bool = False,
    seed: Optional[int] = None,
    scheduler: Any = None,
    callbacks: Iterable[Callback] = (),
    progress: Optional[bool] = None,
    model_kwargs: Optional[Dict[str, Any]] = None,
    loss_kwargs: Optional[Dict[str, Any]] = None,
    scheduler_kwargs: Optional[Dict[str, Any]] = None,
    checkpoint: Optional[str] = None,
    checkpoint_every: Optional[int] = None,
    resume_from: Optional[str] = None,
    **optimizer_kwargs: Any,
) -> FitResult:
    """Fit ``model`` to ``(X, y)`` and return a :class:`FitResult`.

    model, loss, optimizer and scheduler are each a registry name or an object.
    X is (N,) or (N, D), y is (N,) or (N, K): tensors, numpy arrays or lists.
    ``batch_size=None`` is full batch; ``lr`` defaults to 0.01 for an optimizer
    given by name; extra keywords go to the optimizer (``momentum=0.9``).

    ``checkpoint=PATH`` saves the fit there when it ends (Ctrl-C included) and,
    with ``checkpoint_every=K``, after every K-th epoch. ``resume_from=PATH``
    continues a saved fit up to ``epochs`` in all: the model, optimizer, scheduler,
    history and RNG states come from the file (``model=None`` rebuilds the saved
    model), and the loss, batch size, shuffling, optimizer and scheduler must be
    the ones it was fit with. Resuming is bit-for-bit the same as not stopping,
    except after a Ctrl-C that fell inside a minibatch epoch.

    >>> import torch, pyfit
    >>> x = torch.rand(50); y = 3 * x + 0.8
    >>> result = pyfit.fit("linear", x, y, lr=0.1, epochs=3000, seed=0)
    >>> [round(v, 2) for v in (result.model.weight.item(), result.model.bias.item())]
    [3.0, 0.8]
    """
    started = time.perf_counter()
    check_positive_int("epochs", epochs)
    check_positive_int("batch_size", batch_size, allow_none=True)
    check_checkpoint_settings(checkpoint, checkpoint_every, resume_from)
    if seed is not None and not isinstance(seed, int):
        raise TypeError(f"seed must be an int or None, got {type(seed).__name__}")
    saved = read_checkpoint(resume_from) if resume_from is not None else None
    model_kwargs = dict(model_kwargs or {})
    dtype = device = None
    if model is None and saved is not None:
        model, model_kwargs = _saved_model(saved, resume_from, model_kwargs)
        dtype = getattr(torch, saved["model"]["dtype"]) if saved["model"].get("dtype") else None
    if isinstance(model, nn.Module):
        dtype, device = model_dtype_device(model)
    X, y = check_fit_data(X, y, dtype)
    if device is not None:
        X, y = X.to(device), y.to(device)
    built = _resolve_model(model, X, y, seed, model_kwargs)
    check_features(X, getattr(built, "in_features", None))
    check_outputs(y, getattr(built, "out_features", None))
    loss_fn = build_loss(loss, **(loss_kwargs or {})) if isinstance(loss, str) else as_loss(loss)
    if loss_kwargs and not isinstance(loss, str):
        raise TypeError("loss_kwargs only applies when the loss is given by name")
    opt = _resolve_optimizer(optimizer, built, lr, optimizer_kwargs)
    sched = _resolve_scheduler(scheduler, opt, epochs, dict(scheduler_kwargs or {}))

    callbacks = list(callbacks)
    for callback in callbacks:
        if not all(hasattr(callback, hook) for hook in ("on_fit_start", "on_epoch_end", "on_fit_end")):
            raise TypeError(f"{type(callback).__name__} is not a callback: it needs on_fit_start, "
                            "on_epoch_end and on_fit_end (subclass pyfit.Callback)")
    epoch_only = _epoch_only(sched)
    if not epoch_only:
        callbacks.append(LRScheduling(sched))
    generator = torch.Generator()
    generator.manual_seed(seed if seed is not None else int(torch.randint(0, 2**62, (1,)).item()))
    config = {"model": model if isinstance(model, str) else None, "model_args": model_kwargs,
              "loss": loss, "optimizer": optimizer, "lr": lr, "epochs": epochs, "batch_size": batch_size,
              "shuffle": shuffle, "seed": seed, "scheduler": scheduler, "model_kwargs": model_kwargs,
              "loss_kwargs": dict(loss_kwargs or {}), "optimizer_kwargs": dict(optimizer_kwargs),
              "scheduler_kwargs": dict(scheduler_kwargs or {})}

    state = FitState(model=built, optimizer=opt, epochs=epochs, scheduler=sched, generator=generator)
    if saved is not None:
        check_resume_settings(resume_from, saved["config"], _names_of(config, built, opt, sched, loss_fn),
                              saved["epoch"], epochs)
        restore(saved, resume_from, model=built, optimizer=opt, scheduler=sched, state=state)
    runner = _paths.choose(built, loss_fn, opt, X, y, batch_size, shuffle, generator,
                           precomputed_scheduler=sched if epoch_only else None)

    def result() -> FitResult:
        return FitResult(
            model=built, optimizer=opt, history=state.history, stop_reason=state.stop_reason,
            stop_detail=state.stop_detail, backend=runner.name, epochs=state.epoch,
            seconds=time.perf_counter() - started, scheduler=sched, callbacks=callbacks, state=state,
            config=config,
        )

    save = (lambda _: save_checkpoint(checkpoint, result())) if checkpoint is not None else None
    _paths.run(runner, state, callbacks, progress, checkpoint_every=checkpoint_every, save=save)
    if state.stop_reason is None:
        state.stop(COMPLETED)
    final = result()
    if checkpoint is not None:
        save_checkpoint(checkpoint, final)
    return final


def _saved_model(saved: Dict[str, Any], path: str, model_kwargs: Dict[str, Any]):
    """The registry name and constructor arguments of a checkpoint's model, for ``model=None``."""
    spec = saved["model"]
    if spec.get("name") is None or not isinstance(spec.get("args"), dict):
        raise InputError(f"the model in {path!r} ({spec.get('class')}) is not a registered model; pass the "
                         "model object to fit to resume it")
    return spec["name"], {**spec["args"], **model_kwargs}


def _names_of(config: Dict[str, Any], model: nn.Module, opt: Any, sched: Any, loss_fn: Any) -> Dict[str, Any]:
    """This fit's settings as a checkpoint records them, to compare with the one resumed."""
    from .registry import LOSSES, OPTIMIZERS, SCHEDULERS

    loss = config["loss"]
    return {
        "loss": registry_name(LOSSES, loss) if isinstance(loss, str) else registry_name(LOSSES, loss_fn),
        "loss_kwargs": config["loss_kwargs"], "batch_size": config["batch_size"],
        "shuffle": bool(config["shuffle"]),
        "optimizer": registry_name(OPTIMIZERS, config["optimizer"] if isinstance(config["optimizer"], str)
                                   else opt),
        "scheduler": registry_name(SCHEDULERS, config["scheduler"] if isinstance(config["scheduler"], str)
                                   else sched),
    }
