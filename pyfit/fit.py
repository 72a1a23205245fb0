"""``pyfit.fit``: one call from data to a trained model, a history and its plots.

Everything the user passes is resolved and checked first; only then does any
parameter or optimizer state change. The epochs then run on the fastest correct
path (see ``_runners.py``).
"""

from __future__ import annotations

import importlib
import inspect
import sys
import time
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Optional, Tuple, Union

import torch
from torch import nn

from . import _runners, defaults, distributed
from ._shard import Shard
from .callbacks import COMPLETED, Callback, Convergence, FitState, LRScheduling
from ._checkpoint_schema import check_restorable
from .checkpoint import constructor_settings, read_checkpoint, registry_name, restore, save_checkpoint
from .errors import CheckpointError, InputError
from .holdout import Validation, check_monitors, held_out
from .learning_rate import is_least_squares_sgd, starting_lr
from .losses import as_loss, build_loss
from .models import build_model
from .optimizers import build_optimizer
from .outcome import assess, judge
from ._file_rows import FileRows, RowValidation, auto_lr_over
from .row_files import RowFile
from .predict import model_dtype_device
from .registry import LOSSES, OPTIMIZERS, SCHEDULERS
from .result import FitResult
from .scaling import with_scaling
from .schedulers import EPOCH_ONLY, build_scheduler, try_ready_scheduler, try_scheduler
from .threads import fit_threads
from .validation import (
    check_checkpoint_settings,
    check_epochs,
    check_fit_keywords,
    check_features,
    check_fit_data,
    check_optimizer_settings,
    check_outputs,
    check_positive,
    check_same_on_every_rank,
    check_positive_int,
    check_resume_settings,
    check_scheduler_settings,
    check_seed,
)



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


def _resolve_optimizer(optimizer: Any, model: nn.Module, lr: Optional[float], optimizer_kwargs: Dict[str, Any],
                       saved_settings: Optional[Dict[str, Any]] = None) -> torch.optim.Optimizer:
    """The fit's optimizer; one given by name starts from ``saved_settings`` (a resumed fit's) when there are any."""
    if isinstance(optimizer, torch.optim.Optimizer):
        if lr is not None or optimizer_kwargs:
            raise TypeError("lr and optimizer settings go to the optimizer you built; "
                            "pass them there, or give the optimizer by name")
        return optimizer
    settings = dict(saved_settings or {})
    settings.setdefault("lr", defaults.LR_WHEN_NONE)
    if lr is not None:
        settings["lr"] = lr
    settings.update(optimizer_kwargs)
    check_optimizer_settings(settings)
    params = list(model.parameters())
    if not params:
        raise TypeError(f"the model {type(model).__name__} has no parameters to fit")
    if isinstance(optimizer, str):
        return build_optimizer(optimizer, params, **settings)
    if callable(optimizer):
        return optimizer(params, **settings)
    raise TypeError(f"optimizer must be a registry name, an optimizer or a class, got {type(optimizer).__name__}")


def _scheduler_factory(scheduler: Any, epochs: int, scheduler_kwargs: Dict[str, Any]):
    """How to build the fit's scheduler on an optimizer; None for none, or for a scheduler object given ready."""
    if scheduler is None:
        if scheduler_kwargs:
            raise TypeError("scheduler_kwargs needs a scheduler")
        return None
    if isinstance(scheduler, str):
        SCHEDULERS.entry(scheduler)  # an unknown name is refused here, with the names that exist
        return lambda optimizer: build_scheduler(scheduler, optimizer, epochs=epochs, **scheduler_kwargs)
    if hasattr(scheduler, "step") and not inspect.isclass(scheduler):
        if scheduler_kwargs:
            raise TypeError("scheduler_kwargs only applies when the scheduler is given by name or as a factory")
        return None
    if callable(scheduler):
        return lambda optimizer: scheduler(optimizer, **scheduler_kwargs)
    raise TypeError(f"scheduler must be a registry name, a scheduler or a factory, got {type(scheduler).__name__}")


def _check_scheduler(scheduler: Any, factory: Any, optimizer: torch.optim.Optimizer, epochs: int,
                     resuming: bool) -> Any:
    """A scheduler like the fit's, built on a stand-in optimizer and stepped as the fit's epochs will step it;
    the user's own object as it is (a copy of it is stepped, unless a checkpoint's state replaces its own)."""
    if factory is None:
        if scheduler is not None and getattr(scheduler, "optimizer", optimizer) is not optimizer:
            raise InputError(f"the {type(scheduler).__name__} given as scheduler steps another optimizer than "
                             "this fit's; build it on the optimizer you pass to fit")
        if scheduler is not None and not resuming:
            try_ready_scheduler(scheduler, optimizer, f"the {type(scheduler).__name__} given as scheduler", epochs)
        return scheduler
    what = f"the scheduler {scheduler!r}" if isinstance(scheduler, str) else \
        f"the scheduler factory {getattr(scheduler, '__name__', type(scheduler).__name__)}"
    return try_scheduler(factory, optimizer, what, steps=epochs)


def optimizer_setting_changes(groups: List[Dict[str, Any]], settings: Dict[str, Any], scheduled: bool,
                              context: str, started_with: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """The settings that differ from those of param ``groups`` (a fit that continues), to apply to its optimizer.

    Under a scheduler, the lr of every epoch is the scheduler's, computed from the
    lr it started with (and cycling schedulers set momentum too): changing those
    would be ignored, so it is refused. ``started_with`` holds the settings the
    fit was started with (a checkpoint's config: its lr and optimizer settings);
    a scheduled lr or momentum is compared with those, since the scheduler has
    since moved the groups' own values (cycliclr starts them from base_lr and
    max_momentum), and with the groups' values where they are not recorded.
    """
    started_with = started_with or {}
    changes = {}
    for key, value in settings.items():
        if not any(key in g for g in groups):
            known = sorted(k for k in groups[0] if k != "params") if groups else []
            raise InputError(f"{context}: the optimizer has no setting {key!r}; it has {', '.join(known)}")
        if key == "lr" and scheduled:
            started = [started_with["lr"]] if started_with.get("lr") is not None else \
                [g.get("initial_lr", g.get("lr")) for g in groups]
            if any(_differs(base, value) for base in started):
                raise InputError(f"{context}: lr={value!r} differs from lr={started[0]!r}, which its scheduler "
                                 "started from and sets every epoch's lr from; keep that lr, or start a new fit to "
                                 "use another")
            continue
        if scheduled and key in ("momentum", "betas") and any("base_momentum" in g for g in groups):
            started = [started_with[key]] if started_with.get(key) is not None else [g.get(key) for g in groups]
            if any(_differs(base, value) for base in started):
                raise InputError(f"{context}: {key}={value!r} differs from the {started[0]!r} it was started with, "
                                 "and its scheduler sets the momentum of every step; start a new fit to change it")
            continue
        if any(key in g and _differs(g[key], value) for g in groups):
            changes[key] = value
    return changes


def _started_with(config: Dict[str, Any]) -> Dict[str, Any]:
    """The lr and optimizer settings a saved fit was started with (or last given), from its checkpoint's config."""
    return {**(config.get("optimizer_kwargs") or {}), "lr": config.get("lr")}


def _differs(current: Any, new: Any) -> bool:
    if isinstance(current, (list, tuple)) and isinstance(new, (list, tuple)):
        return tuple(current) != tuple(new)
    return current != new


def apply_optimizer_settings(optimizer: torch.optim.Optimizer, changes: Dict[str, Any]) -> None:
    """Give every param group (and the defaults, which a checkpoint records) the changed settings."""
    for group in optimizer.param_groups:
        group.update({key: value for key, value in changes.items() if key in group})
    optimizer.defaults.update(changes)


def _saved_optimizer_settings(saved: Optional[Dict[str, Any]], optimizer: Any) -> Optional[Dict[str, Any]]:
    """A resumed checkpoint's optimizer settings, when this fit names the same optimizer."""
    if saved is None or not isinstance(optimizer, str):
        return None
    spec = saved["optimizer"]
    if registry_name(OPTIMIZERS, optimizer) != spec["name"]:
        return None  # the resume check names the difference
    return constructor_settings(OPTIMIZERS.entry(optimizer).obj, spec["settings"])


def _epoch_only(scheduler: Any) -> bool:
    """True when the scheduler's learning rates depend on the epoch alone."""
    if scheduler is None:
        return True
    entry = SCHEDULERS.entry_of(scheduler)
    if entry is not None:
        return EPOCH_ONLY in entry.flags
    from torch.optim import lr_scheduler

    return isinstance(scheduler, lr_scheduler.LRScheduler)


def _load_compiler_for(runner: _runners.Runner) -> float:
    """Import torch's compiler stack now if the runner's optimizer steps will; returns the seconds it took.

    torch.optim's ``step`` imports it on its first call in a process (over a second);
    taken here, that cost stays out of the fit's reported time. The fused path never
    steps a torch optimizer and skips it.
    """
    if not isinstance(runner, _runners.Autograd) or "torch._dynamo" in sys.modules:
        return 0.0
    began = time.perf_counter()
    importlib.import_module("torch._dynamo")
    return time.perf_counter() - began


def fit(
    model: Any,
    X: Any,
    y: Any,
    *,
    loss: Any = defaults.LOSS,
    optimizer: Any = defaults.OPTIMIZER,
    lr: Union[float, str, None] = defaults.LR,
    epochs: Optional[int] = None,
    batch_size: Optional[int] = None,
    shuffle: bool = False,
    seed: Optional[int] = None,
    standardize: Optional[bool] = None,
    tol: Union[float, str, None] = "auto",
    n_iter_no_change: int = defaults.N_ITER_NO_CHANGE,
    validation_data: Any = None,
    validation_split: Optional[float] = None,
    metrics: Iterable[str] = (),
    scheduler: Any = None,
    callbacks: Iterable[Callback] = (),
    progress: Optional[bool] = None,
    model_kwargs: Optional[Dict[str, Any]] = None,
    loss_kwargs: Optional[Dict[str, Any]] = None,
    scheduler_kwargs: Optional[Dict[str, Any]] = None,
    checkpoint: Optional[str] = None,
    checkpoint_every: Optional[int] = None,
    resume_from: Optional[str] = None,
    threads: Optional[int] = None,
    chunk_mb: float = defaults.CHUNK_MB,
    **optimizer_kwargs: Any,
) -> FitResult:
    """Fit ``model`` to ``(X, y)`` and return a :class:`FitResult`.

    model, loss, optimizer and scheduler are each a registry name or an object.
    X is (N,) or (N, D), y is (N,) or (N, K): tensors, numpy arrays or lists.
    ``batch_size=None`` is full batch; extra keywords go to the optimizer
    (``momentum=0.9``); a keyword that is neither a ``fit`` parameter nor a
    setting of the optimizer is refused with the closest parameter name.

    ``lr="auto"`` (the default; ``None`` means the same): SGD on a linear or
    polynomial model under ``mse`` or ``sse`` takes the step that provably
    cannot diverge for this data (``pyfit.learning_rate``); any other fit takes
    the suggestion of a learning-rate range test on a copy of the model.
    ``result.lr_chosen`` and ``result.lr_reason`` say what was used and why.

    ``standardize=True`` puts the model behind the features' training mean and
    spread (``pyfit.scaling``): ``result.model`` takes raw data, and
    ``pyfit.scaling.parameters_in_data_units`` gives a linear or polynomial
    model's weights in the data's units. The default ``None`` means False for a
    new fit and whatever the checkpoint holds for a resumed one.

    Left out, ``epochs`` is a cap (10,000 for SGD on a linear or polynomial
    model under a squared error, whose epochs are cheap, else 1,000): the fit
    stops with ``stop_reason == "converged"`` once the loss has improved by less
    than ``tol`` (1e-5, relative to its best) for ``n_iter_no_change`` epochs.
    ``tol="auto"`` (the default) is 1e-5 when epochs is left out and None when
    it is given, so ``epochs=3000`` runs 3000 epochs; ``tol=None`` never stops
    early, and a number always applies.
    ``validation_split=0.2`` holds out a fifth of the rows (drawn with ``seed``),
    ``validation_data=(X_val, y_val)`` brings its own; scaling statistics and
    ``lr="auto"`` then use the training rows only. ``history["val_loss"]`` has
    the held-out loss after every epoch, and ``metrics=["r2", "rmse", "mae"]``
    adds ``history[name]`` and ``history["val_" + name]``;
    ``pyfit.EarlyStopping(monitor="val_loss", restore_best=True)`` stops on it.

    ``result.final_loss`` is the loss of the returned model on the training
    rows, ``result.scores`` its loss, r2, rmse and mae on them (and ``val_...``
    on the held-out rows), and ``result.warnings`` names what looks wrong with
    the fit, each with a next step.

    ``checkpoint=PATH`` saves the fit there when it ends (Ctrl-C included) and,
    with ``checkpoint_every=K``, after every K-th epoch. ``resume_from=PATH``
    continues a saved fit up to ``epochs`` in all: the model, optimizer, scheduler,
    history and RNG states come from the file (``model=None`` rebuilds the saved
    model), and the loss, batch size, shuffling, optimizer and scheduler must be
    the ones it was fit with. Resuming is bit-for-bit the same as not stopping,
    except after a Ctrl-C that fell inside a minibatch epoch. A new ``lr`` or
    optimizer setting given to a resumed fit applies from its first new epoch and
    is what its checkpoint records (an lr that a scheduler would override is
    refused).

    Everything is checked before anything of the user's changes: a scheduler given
    by name or factory (or a copy of one given ready) is first built on a stand-in
    optimizer and stepped as the fit will step it (up to 10,000 epochs; OneCycleLR's
    total_steps for any number), and a resumed checkpoint must match the model and
    optimizer before any state is loaded. A scheduler whose step still fails
    later stops the fit with ``stop_reason == "scheduler_failed"``, keeping the
    model, optimizer and scheduler of the last good epoch.

    The epochs run on as many CPU threads as their work per step pays for (at most
    ``torch.get_num_threads()``, which is the same after the fit); ``threads=N``
    runs them on N.

    ``X`` may be a data file opened with ``pyfit.open_rows(path, target=...)`` (then
    ``y=None``): a ``.npy`` array, a CSV file, or a directory of ``.npy`` or CSV
    shards. Its rows are read into memory when they fit in ``chunk_mb`` megabytes;
    beyond that a linear or polynomial model under mse, sse, mae or huber is fit by
    streaming: every epoch reads the rows again, ``chunk_mb`` at a time, so memory
    holds about two chunks whatever the file's size. A full-batch step adds the
    compiled gradient sums of every chunk; minibatches are drawn chunk-wise
    (``pyfit._streamed_linear``). ``validation_data`` may then be a data file too.

    Under ``torchrun --nproc-per-node N`` every process runs the same script and the
    fit is data-parallel (``pyfit.distributed``): each rank takes its contiguous
    share of the rows, each step adds the ranks' gradients before the one update
    they all apply, and every rank returns the same model. ``batch_size`` is the
    batch over all ranks, drawn as a single process draws it, so the fit is the
    single-process fit up to rounding, and a checkpoint (written by rank 0)
    resumes on any number of ranks. Given tensors, every rank holds them all, and
    the statistics, ``lr="auto"`` and scores are the single-process ones; given a
    file, each rank reads only its own rows, and they come from sums over the ranks.

    >>> import torch, pyfit
    >>> x = torch.rand(50); y = 3 * x + 0.8
    >>> result = pyfit.fit("linear", x, y, lr=0.1, epochs=3000, seed=0)
    >>> [round(v, 2) for v in (result.model.weight.item(), result.model.bias.item())]
    [3.0, 0.8]
    """
    started = time.perf_counter()
    world = distributed.current()
    plan = _plan(model, X, y, world=world, chunk_mb=chunk_mb, loss=loss, optimizer=optimizer, lr=lr, epochs=epochs, batch_size=batch_size,
                 shuffle=shuffle, seed=seed, standardize=standardize, tol=tol, n_iter_no_change=n_iter_no_change,
                 validation_data=validation_data, validation_split=validation_split, metrics=metrics,
                 scheduler=scheduler, callbacks=callbacks, model_kwargs=model_kwargs, loss_kwargs=loss_kwargs,
                 scheduler_kwargs=scheduler_kwargs, checkpoint=checkpoint, checkpoint_every=checkpoint_every,
                 resume_from=resume_from, threads=threads, optimizer_kwargs=optimizer_kwargs)
    return _run(plan, started, progress=progress, checkpoint=checkpoint, checkpoint_every=checkpoint_every,
                threads=threads, world=world)


@dataclass
class _Plan:
    """A fit resolved and checked in full, before anything of the user's has changed."""

    model: nn.Module
    loss_fn: Any
    optimizer: torch.optim.Optimizer
    scheduler: Any  # the scheduler as given (None, a name, an object or a factory)
    scheduler_factory: Any  # builds the fit's scheduler on its optimizer; None: the scheduler object as given
    scheduler_like: Any  # a scheduler stepped as the fit's will be, to check it (None without one)
    X: torch.Tensor
    y: torch.Tensor
    X_val: Optional[torch.Tensor]
    y_val: Optional[torch.Tensor]
    epochs: int
    batch_size: Optional[int]
    shuffle: bool
    seed: Optional[int]
    callbacks: List[Any]
    config: Dict[str, Any]
    saved: Optional[Dict[str, Any]]  # the checkpoint resumed from
    resume_from: Optional[str]
    changes: Dict[str, Any]  # optimizer settings a resumed fit changes
    lr_reason: Optional[str]
    shard: Optional[Shard] = None  # under torchrun: this rank's rows of X and y, which its epochs run on
    rows: Optional[FileRows] = None  # a data file's rows this process fits on (X and y: in memory, or the first)
    val_rows: Optional[FileRows] = None  # and its held-out rows, from a file of their own


def _plan(model: Any, X: Any, y: Any, *, world: Optional[distributed.World], chunk_mb: float, loss: Any, optimizer: Any, lr: Union[float, str, None],
          epochs: Optional[int], batch_size: Optional[int], shuffle: bool, seed: Optional[int],
          standardize: Optional[bool], tol: Union[float, str, None], n_iter_no_change: int, validation_data: Any,
          validation_split: Optional[float], metrics: Iterable[str], scheduler: Any, callbacks: Iterable[Callback],
          model_kwargs: Optional[Dict[str, Any]], loss_kwargs: Optional[Dict[str, Any]],
          scheduler_kwargs: Optional[Dict[str, Any]], checkpoint: Optional[str], checkpoint_every: Optional[int],
          resume_from: Optional[str], threads: Optional[int], optimizer_kwargs: Dict[str, Any]) -> _Plan:
    """Resolve and check every setting of a fit (see ``fit``); nothing of the user's changes here."""
    # every check comes first: nothing of the user's changes until the last one has passed
    if epochs is not None:
        check_epochs(epochs)
    check_fit_keywords(optimizer, optimizer_kwargs, FIT_PARAMETERS)
    check_positive_int("batch_size", batch_size, allow_none=True)
    check_positive_int("threads", threads, allow_none=True)
    if lr is not None and isinstance(lr, str) and lr != "auto":
        raise InputError(f"lr must be a number or 'auto', got {lr!r}")
    if standardize is not None and not isinstance(standardize, bool):
        raise InputError(f"standardize must be True, False or None, got {standardize!r}")
    if tol == "auto":
        tol = defaults.TOL if epochs is None else None
    stopper = Convergence(tol, n_iter_no_change) if tol is not None else None
    check_checkpoint_settings(checkpoint, checkpoint_every, resume_from)
    seed = check_seed(seed)
    if world is not None and seed is None:
        # the ranks build the same model and draw the same batches: rank 0's random seed for all
        seed = world.agree(int(torch.randint(0, 2**62, (1,)).item()), "the seed")
    scheduler_kwargs = dict(scheduler_kwargs or {})
    check_scheduler_settings(scheduler_kwargs)
    saved = read_checkpoint(resume_from) if resume_from is not None else None
    model_kwargs = dict(model_kwargs or {})
    dtype = device = None
    if model is None and saved is not None:
        model, model_kwargs = _saved_model(saved, resume_from, model_kwargs)
        dtype = _saved_dtype(saved, resume_from)
    if isinstance(model, nn.Module):
        dtype, device = model_dtype_device(model)
    rows = val_rows = None
    if isinstance(X, RowFile):
        rows, val_rows = _file_rows(X, y, world, chunk_mb, dtype, validation_data, validation_split)
        X, y = rows.X, rows.y
        if world is None and not rows.streamed and (val_rows is None or not val_rows.streamed):
            # all the rows in memory: an ordinary fit of them
            if val_rows is not None:
                validation_data, val_rows = (val_rows.X, val_rows.y), None
            rows = None
    elif isinstance(validation_data, RowFile):
        raise InputError("validation_data is a data file but X is not: pass both as files (pyfit.open_rows), or "
                         "both as tensors")
    if rows is None:
        X, y = check_fit_data(X, y, dtype)
        if world is not None:
            check_same_on_every_rank(world, X, y)
    if device is not None:
        X, y = X.to(device), y.to(device)
    X_val = y_val = None
    if rows is None:
        X, y, X_val, y_val = held_out(X, y, validation_data, validation_split, seed)
    built = _resolve_model(model, X, y, seed, model_kwargs)
    check_features(X, getattr(built, "in_features", None))
    check_outputs(y, getattr(built, "out_features", None))
    built = with_scaling(built, X, standardize, None if saved is None else saved["model"], resume_from,
                         statistics=None if rows is None else rows.feature_statistics)
    loss_fn = build_loss(loss, **(loss_kwargs or {})) if isinstance(loss, str) else as_loss(loss)
    if loss_kwargs and not isinstance(loss, str):
        raise TypeError("loss_kwargs only applies when the loss is given by name")
    if epochs is None:
        cheap = is_least_squares_sgd(built, loss_fn, type(optimizer) if isinstance(optimizer, torch.optim.Optimizer)
                                     else optimizer)
        epochs = defaults.EPOCHS_LEAST_SQUARES if cheap else defaults.EPOCHS
    resumed_settings = _saved_optimizer_settings(saved, optimizer)
    lr, lr_reason = starting_lr(lr, optimizer, optimizer_kwargs, resumed_settings is not None, built, loss_fn, X, y,
                                batch_size, choose=None if rows is None else auto_lr_over(rows))
    opt = _resolve_optimizer(optimizer, built, lr, optimizer_kwargs, resumed_settings)
    if rows is not None:
        rows.check_streamable(built, loss_fn, opt)
    scheduler_factory = _scheduler_factory(scheduler, epochs, scheduler_kwargs)
    scheduler_like = _check_scheduler(scheduler, scheduler_factory, opt, epochs, saved is not None)

    # validation first: a stopper that monitors val_loss reads what it records
    if rows is not None:
        validation = RowValidation(loss_fn, rows, val_rows, metrics) if val_rows is not None or metrics else None
    else:
        validation = Validation(loss_fn, X, y, X_val, y_val, metrics) if X_val is not None or metrics else None
    callbacks = [validation] * (validation is not None) + list(callbacks) + [stopper] * (stopper is not None)
    check_monitors(callbacks, validation)
    for callback in callbacks:
        if not all(hasattr(callback, hook) for hook in ("on_fit_start", "on_epoch_end", "on_fit_end")):
            raise TypeError(f"{type(callback).__name__} is not a callback: it needs on_fit_start, "
                            "on_epoch_end and on_fit_end (subclass pyfit.Callback)")
    config = {"model": model if isinstance(model, str) else None, "model_args": model_kwargs,
              "loss": loss, "optimizer": optimizer, "lr": lr, "epochs": epochs, "batch_size": batch_size,
              "shuffle": shuffle, "seed": seed, "scheduler": scheduler, "model_kwargs": model_kwargs,
              "loss_kwargs": dict(loss_kwargs or {}), "optimizer_kwargs": dict(optimizer_kwargs),
              "scheduler_kwargs": scheduler_kwargs, "tol": tol}
    changes: Dict[str, Any] = {}
    if saved is not None:
        check_resume_settings(resume_from, saved["config"], _names_of(config, built, opt, scheduler_like, loss_fn),
                              saved["epoch"], epochs)
        check_restorable(saved, resume_from, model=built, optimizer=opt)
        given = {**({} if lr is None else {"lr": lr}), **optimizer_kwargs}
        changes = optimizer_setting_changes(saved["optimizer"]["state"]["param_groups"], given,
                                            scheduler_like is not None, f"resuming {resume_from!r}",
                                            _started_with(saved["config"]))
        if resumed_settings is not None:  # the same optimizer goes on: record
            # the settings in effect, the saved ones with this fit's changes
            config["lr"] = saved["config"].get("lr") if lr is None else lr
            config["optimizer_kwargs"] = {**(saved["config"].get("optimizer_kwargs") or {}), **optimizer_kwargs}
    # under torchrun every rank holds all of X and y: the statistics, lr="auto", validation and the closing
    # assessment above and after are the single-process ones; the epochs run on this rank's rows
    shard = None if world is None or rows is not None else Shard(world, *world.shard(X.shape[0]), X.shape[0])
    return _Plan(model=built, loss_fn=loss_fn, optimizer=opt, scheduler=scheduler, scheduler_factory=scheduler_factory,
                 scheduler_like=scheduler_like, X=X, y=y, X_val=X_val, y_val=y_val, epochs=epochs,
                 batch_size=batch_size, shuffle=shuffle, seed=seed, callbacks=callbacks, config=config, saved=saved,
                 resume_from=resume_from, changes=changes, lr_reason=lr_reason, shard=shard, rows=rows,
                 val_rows=val_rows)


def _run(plan: _Plan, started: float, *, progress: Optional[bool], checkpoint: Optional[str],
         checkpoint_every: Optional[int], threads: Optional[int], world: Optional[distributed.World]) -> FitResult:
    """Run a checked fit: build its scheduler, restore what it resumes, run its epochs and assess the result."""
    model, opt, callbacks, saved = plan.model, plan.optimizer, plan.callbacks, plan.saved
    sched = plan.scheduler_factory(opt) if plan.scheduler_factory is not None else plan.scheduler
    epoch_only = _epoch_only(sched)
    if not epoch_only:
        callbacks.append(LRScheduling(sched))
    generator = torch.Generator()
    generator.manual_seed(plan.seed if plan.seed is not None else int(torch.randint(0, 2**62, (1,)).item()))
    state = FitState(model=model, optimizer=opt, epochs=plan.epochs, scheduler=sched, generator=generator)
    if saved is not None:
        restore(saved, plan.resume_from, model=model, optimizer=opt, scheduler=sched, state=state)
        apply_optimizer_settings(opt, plan.changes)
    if world is not None:
        # a model built on each rank without a common seed starts from each rank's own random draw, and an
        # optimizer brought along may hold state of its own: every rank starts from rank 0's, as torch's
        # DistributedDataParallel does
        world.copy_from_rank_0(_starting_state(model, opt), "the model's starting parameters")
    runner = _runner(plan, generator, sched if epoch_only else None)
    started += _load_compiler_for(runner)

    def result() -> FitResult:
        return FitResult(
            model=model, optimizer=opt, history=state.history, stop_reason=state.stop_reason,
            stop_detail=state.stop_detail, backend=runner.name, epochs=state.epoch,
            seconds=time.perf_counter() - started, scheduler=sched, callbacks=callbacks, state=state,
            config=plan.config,
        )

    writes = world is None or world.writes  # under torchrun rank 0 alone writes the checkpoint
    save = None
    if checkpoint is not None:  # every rank ends its calls on the same epochs
        save = (lambda _: save_checkpoint(checkpoint, result())) if writes else (lambda _: None)
    with fit_threads(runner.work_per_step, threads):
        _runners.run(runner, state, callbacks, progress, checkpoint_every=checkpoint_every, save=save,
                     world=world)
    if state.stop_reason is None:
        state.stop(COMPLETED)
    final = result()
    # the lr of this fit's own first epoch (a resumed fit's start after the saved ones), else the optimizer's
    first_new_epoch = saved["epoch"] if saved is not None else 0
    lrs = state.history["lr"]
    final.lr_chosen = lrs[first_new_epoch] if len(lrs) > first_new_epoch else float(opt.param_groups[0]["lr"])
    final.lr_reason = plan.lr_reason or "given"
    if plan.rows is not None:
        scores, predictions = plan.rows.scores(model, plan.loss_fn)
        if plan.val_rows is not None:
            scores.update({"val_" + name: value for name, value in plan.val_rows.scores(model, plan.loss_fn)[0].items()})
        judge(final, scores, predictions)
    else:
        assess(final, plan.loss_fn, plan.X, plan.y, plan.X_val, plan.y_val)
    if checkpoint is not None and writes:
        save_checkpoint(checkpoint, final)
    return final


def _starting_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> List[torch.Tensor]:
    """The floating-point tensors a fit starts from: the model's parameters and buffers, the optimizer's state."""
    tensors = list(model.parameters()) + list(model.buffers())
    for state in optimizer.state.values():
        tensors += [value for value in state.values() if isinstance(value, torch.Tensor)]
    return [t for t in tensors if t.is_floating_point()]


def _file_rows(file: RowFile, y: Any, world: Optional[distributed.World], chunk_mb: float,
               dtype: Optional[torch.dtype], validation_data: Any,
               validation_split: Any) -> Tuple[FileRows, Optional[FileRows]]:
    """The rows of a data file this process fits on, and those of its validation file, after the checks of
    what a fit on a file takes."""
    if y is not None:
        raise InputError(f"y is given, but X is a data file ({file.path}), whose target columns are its y "
                         f"({', '.join(file.target)}); pass y=None")
    check_positive("chunk_mb", chunk_mb)
    if validation_split is not None:
        raise InputError("validation_split draws rows from tensors held in memory; with a data file, keep the "
                         "validation rows in a file of their own and pass validation_data=pyfit.open_rows(...)")
    if validation_data is not None and not isinstance(validation_data, RowFile):
        raise InputError("X is a data file, so validation_data must be one too (pyfit.open_rows), got "
                         f"{type(validation_data).__name__}")
    if validation_data is not None and (validation_data.features, validation_data.target) != (file.features,
                                                                                          file.target):
        raise InputError(f"the validation file {validation_data.path} has features {validation_data.features} and "
                         f"target {validation_data.target}, the training file {file.features} and {file.target}")
    budget = max(1, int(chunk_mb * 2**20))
    rows = FileRows(file, world, budget, dtype or file.dtype)
    return rows, None if validation_data is None else FileRows(validation_data, world, budget, dtype or file.dtype)


def _runner(plan: _Plan, generator: torch.Generator, scheduler: Any) -> _runners.Runner:
    """The runner of a planned fit's epochs, on this process's rows."""
    model, loss_fn, opt = plan.model, plan.loss_fn, plan.optimizer
    if plan.rows is not None:
        return plan.rows.runner(model, loss_fn, opt, plan.batch_size, plan.shuffle, generator, scheduler)
    shard = plan.shard
    X, y = plan.X, plan.y
    if shard is not None:  # every rank holds all the rows; its epochs run on its own
        X, y = X[shard.start:shard.stop], y[shard.start:shard.stop]
    return _runners.choose(model, loss_fn, opt, X, y, plan.batch_size, plan.shuffle, generator,
                           precomputed_scheduler=scheduler, shard=shard)


def _saved_model(saved: Dict[str, Any], path: str, model_kwargs: Dict[str, Any]):
    """The registry name and constructor arguments of a checkpoint's model, for ``model=None``."""
    spec = saved["model"]
    if spec["name"] is None or spec["args"] is None:
        raise InputError(f"the model in {path!r} ({spec.get('class')}) is not a registered model; pass the "
                         "model object to fit to resume it")
    return spec["name"], {**spec["args"], **model_kwargs}


def _saved_dtype(saved: Dict[str, Any], path: str) -> Optional[torch.dtype]:
    name = saved["model"]["dtype"]
    if name is None:
        return None
    dtype = getattr(torch, name, None)
    if not isinstance(dtype, torch.dtype):
        raise CheckpointError(f"{path!r} is damaged: the entry 'model.dtype' should name a torch dtype, got {name!r}")
    return dtype


def _names_of(config: Dict[str, Any], model: nn.Module, opt: Any, sched: Any, loss_fn: Any) -> Dict[str, Any]:
    """This fit's settings as a checkpoint records them, to compare with the one resumed."""
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


# fit's own keyword parameters, named when an unknown keyword reaches the optimizer
FIT_PARAMETERS = [name for name, p in inspect.signature(fit).parameters.items() if p.kind is p.KEYWORD_ONLY]
