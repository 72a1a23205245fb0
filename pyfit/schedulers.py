"""Learning-rate schedulers by name, stepped once per epoch by ``fit``.

Built-ins take the fit's number of epochs where they need a horizon (``cosine``);
torch's own lr_scheduler classes are registered under their lowercase names.
"""

from __future__ import annotations

import copy
import inspect
import warnings
from typing import Any, Callable, Optional

import torch
from torch.optim import lr_scheduler

from .errors import InputError
from .registry import SCHEDULERS

# a scheduler whose learning rates depend on the epoch alone can be replayed ahead
# of time, which lets the fused path run many epochs in one call
EPOCH_ONLY = "epoch_only"
# a fit's stop_reason when its scheduler failed part-way (see step_or_stop)
SCHEDULER_FAILED = "scheduler_failed"


@SCHEDULERS.register("constant", description="keeps the learning rate unchanged", flags=(EPOCH_ONLY,))
def constant(optimizer: torch.optim.Optimizer, *, epochs: Optional[int] = None) -> lr_scheduler.LRScheduler:
    """The learning rate stays what the optimizer was given."""
    return lr_scheduler.LambdaLR(optimizer, lambda epoch: 1.0)


@SCHEDULERS.register("step", description="multiplies the learning rate by gamma every step_size epochs",
                     flags=(EPOCH_ONLY,))
def step(optimizer: torch.optim.Optimizer, step_size: int = 10, gamma: float = 0.1, *,
         epochs: Optional[int] = None) -> lr_scheduler.LRScheduler:
    """Step decay: lr * gamma ** (epoch // step_size)."""
    return lr_scheduler.StepLR(optimizer, step_size=step_size, gamma=gamma)


@SCHEDULERS.register("exponential", description="multiplies the learning rate by gamma every epoch",
                     flags=(EPOCH_ONLY,))
def exponential(optimizer: torch.optim.Optimizer, gamma: float = 0.99, *,
                epochs: Optional[int] = None) -> lr_scheduler.LRScheduler:
    """Exponential decay: lr * gamma ** epoch."""
    return lr_scheduler.ExponentialLR(optimizer, gamma=gamma)


@SCHEDULERS.register("cosine", description="cosine annealing from the learning rate to eta_min over the fit",
                     flags=(EPOCH_ONLY,))
def cosine(optimizer: torch.optim.Optimizer, T_max: Optional[int] = None, eta_min: float = 0.0, *,
           epochs: Optional[int] = None) -> lr_scheduler.LRScheduler:
    """Cosine annealing over T_max epochs (default: the fit's epochs)."""
    horizon = T_max if T_max is not None else (epochs or 1)
    return lr_scheduler.CosineAnnealingLR(optimizer, T_max=horizon, eta_min=eta_min)


def _register_torch_schedulers() -> None:
    for name, cls in vars(lr_scheduler).items():
        if not inspect.isclass(cls) or name.startswith("_") or cls in (lr_scheduler.LRScheduler,):
            continue
        if not issubclass(cls, (lr_scheduler.LRScheduler, lr_scheduler.ReduceLROnPlateau)):
            continue
        if name in ("_LRScheduler", "SequentialLR", "ChainedScheduler"):  # these take schedulers, not settings
            continue
        if SCHEDULERS.has_own(name):  # never `in`: that would discover plugins at import
            continue
        flags = () if cls is lr_scheduler.ReduceLROnPlateau else (EPOCH_ONLY,)
        doc = (inspect.getdoc(cls) or name).strip().splitlines()[0]
        SCHEDULERS.register(name.lower(), cls, description=f"torch.optim.lr_scheduler.{name}: {doc}", flags=flags)


_register_torch_schedulers()


def build_scheduler(name: str, optimizer: torch.optim.Optimizer, *, epochs: Optional[int] = None,
                    **kwargs: Any) -> Any:
    """Build the scheduler registered under ``name`` for ``optimizer``.

    ``epochs`` (the fit's length) reaches the schedulers that take it.

    >>> import torch, pyfit
    >>> opt = pyfit.build_optimizer("sgd", [torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    >>> sched = pyfit.build_scheduler("exponential", opt, gamma=0.5)
    >>> sched.step(); opt.param_groups[0]["lr"]
    0.5
    """
    factory = SCHEDULERS[name]
    try:
        takes_epochs = "epochs" in inspect.signature(factory).parameters
    except (TypeError, ValueError):
        takes_epochs = False
    if takes_epochs:
        kwargs["epochs"] = epochs
    return factory(optimizer, **kwargs)


class _StandIn(torch.optim.Optimizer):
    """An optimizer with another one's param-group settings (copied) and a scalar per group.

    A scheduler is tried on it first, so that settings a scheduler refuses (or that
    fail on its first step) are found before the real optimizer's lr is touched.
    """

    def __init__(self, optimizer: torch.optim.Optimizer):
        groups = [{**copy.deepcopy({k: v for k, v in group.items() if k != "params"}),
                   "params": [torch.zeros((), requires_grad=True)]} for group in optimizer.param_groups]
        super().__init__(groups, copy.deepcopy(dict(optimizer.defaults)))

    def step(self, closure: Any = None) -> None:
        return None


# a scheduler is tried on its stand-in for as many steps as the fit will take, up to
# this many (about 20 microseconds each); beyond it, known horizons are checked by name
_TRIAL_STEPS = 10_000


def _horizon(scheduler: Any) -> Optional[tuple]:
    """The number of steps a scheduler can take and the setting that fixes it, where torch refuses more."""
    if isinstance(scheduler, lr_scheduler.OneCycleLR):
        return scheduler.total_steps, f"total_steps={scheduler.total_steps} (or epochs * steps_per_epoch)"
    return None


def try_scheduler(build: Callable[[torch.optim.Optimizer], Any], optimizer: torch.optim.Optimizer,
                  what: str, steps: int = 1) -> Any:
    """Build a scheduler with ``build`` on a stand-in for ``optimizer`` and step it ``steps`` times; returns it.

    ``steps`` is the number of epochs of the fit (one scheduler step each). Anything
    that fails within them (a setting torch refuses, a step that divides by zero,
    a horizon such as OneCycleLR's total_steps that is shorter than the fit) is an
    InputError naming ``what``, raised before ``optimizer`` has been touched. Past
    ``_TRIAL_STEPS`` steps only known horizons are checked; the fit itself stops
    cleanly should a later step fail (:func:`step_or_undo`).
    """
    stand_in = _StandIn(optimizer)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            scheduler = build(stand_in)
    except Exception as error:  # torch's own refusals are ValueError, TypeError, ZeroDivisionError, ...
        raise InputError(f"{what} cannot run with these settings: {type(error).__name__}: {error}") from None
    if not callable(getattr(scheduler, "step", None)):
        raise InputError(f"{what} built a {type(scheduler).__name__}, which has no step()")
    _try_steps(scheduler, stand_in, what, steps)
    return scheduler


def try_ready_scheduler(scheduler: Any, optimizer: torch.optim.Optimizer, what: str, steps: int) -> None:
    """Step a copy of a scheduler built on ``optimizer`` (the user's own object) as the fit will step it.

    The copy steps a stand-in for ``optimizer``, so neither the scheduler nor the
    optimizer changes; a failure is an InputError naming ``what``.
    """
    stand_in = _StandIn(optimizer)
    try:
        copied = copy.deepcopy(scheduler, memo={id(optimizer): stand_in})
    except Exception:  # a scheduler that cannot be copied is tried by the fit itself (step_or_undo)
        return
    _try_steps(copied, stand_in, what, steps)


def _try_steps(scheduler: Any, stand_in: torch.optim.Optimizer, what: str, steps: int) -> None:
    horizon = _horizon(scheduler)
    if horizon is not None and scheduler.last_epoch + steps > horizon[0]:
        raise InputError(f"{what} can take {horizon[0] - scheduler.last_epoch} more step(s), one per epoch, with "
                         f"{horizon[1]}; this fit runs {steps} epochs: give it a longer horizon or fewer epochs")
    step = 0
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for step in range(1, max(1, min(steps, _TRIAL_STEPS)) + 1):
                stand_in.step()
                if isinstance(scheduler, lr_scheduler.ReduceLROnPlateau):
                    scheduler.step(1.0)
                else:
                    scheduler.step()
    except Exception as error:
        when = f" at its step after epoch {step}" if step > 1 else ""
        raise InputError(f"{what} cannot run with these settings{when}: {type(error).__name__}: {error}") from None


def step_or_undo(scheduler: Any, optimizer: torch.optim.Optimizer) -> Optional[str]:
    """Step ``scheduler`` after an epoch; None when it stepped. Should it fail (past what was tried up
    front), the scheduler and the param-group settings are put back as they were and the failure is
    returned, for :func:`stop_after_failed_step`."""
    # a scheduler of the user's own may have step() alone: its state cannot be put back
    keeps_state = callable(getattr(scheduler, "state_dict", None)) and callable(getattr(scheduler, "load_state_dict",
                                                                                        None))
    before = scheduler.state_dict() if keeps_state else None, [dict(group) for group in optimizer.param_groups]
    try:
        scheduler.step()
    except Exception as error:
        if keeps_state:
            scheduler.load_state_dict(before[0])
        for group, saved in zip(optimizer.param_groups, before[1]):
            group.update(saved)
        return f"{type(error).__name__}: {error}"
    return None


def stop_after_failed_step(state: Any, failure: str) -> None:
    """Stop a fit whose scheduler failed to step after its last epoch (``state.epoch``)."""
    state.stop(SCHEDULER_FAILED, f"the scheduler's step after epoch {state.epoch} failed ({failure}); the model, "
                                 "optimizer and scheduler keep their state from the end of that epoch")
