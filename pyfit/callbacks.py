"""Callbacks: code that ``fit`` runs at the start, after every epoch and at the end.

A callback reads and may stop the fit through the :class:`FitState` it is given.
``per_epoch = False`` on a callback says it needs no hook between epochs, which
lets the fused path run many epochs in one call.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Protocol

import torch
from torch import nn

from . import defaults

COMPLETED = "completed"
EARLY_STOPPING = "early_stopping"
NON_FINITE = "non_finite"
INTERRUPTED = "interrupted"
CONVERGED = "converged"

# a loss this many times its best (positive) one has diverged, whatever the stop reason says, when it
# also gave back this share of the fall from the first loss to the best (a rise at rounding level is noise)
DIVERGED_FACTOR, GIVEN_BACK = 2.0, 1e-3


def far_above_best(loss: float, best: float, start: float) -> bool:
    """True when ``loss`` is more than DIVERGED_FACTOR times a positive ``best`` and more than GIVEN_BACK of
    the way back up from ``best`` to ``start`` (the first epoch's loss): the fit went the wrong way."""
    return best > 0 and math.isfinite(best) and loss > DIVERGED_FACTOR * best \
        and loss - best > GIVEN_BACK * max(start - best, 0.0)


@dataclass
class FitState:
    """What a running fit exposes to its callbacks."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    epochs: int  # the total the fit runs to
    epoch: int = 0  # epochs completed so far
    history: Dict[str, List[float]] = field(default_factory=lambda: {"loss": [], "lr": []})
    scheduler: Any = None
    stop_reason: Optional[str] = None
    stop_detail: str = ""
    # draws the minibatch orders; kept here so a checkpoint can save and restore its state
    generator: Optional[torch.Generator] = None

    @property
    def loss(self) -> float:
        """The last epoch's loss (NaN before the first epoch)."""
        return self.history["loss"][-1] if self.history["loss"] else math.nan

    def stop(self, reason: str, detail: str = "") -> None:
        """Ask the fit to stop after this epoch."""
        if self.stop_reason is None:
            self.stop_reason, self.stop_detail = reason, detail


class Callback:
    """Base callback: override the hooks you need."""

    per_epoch = True

    def on_fit_start(self, state: FitState) -> None:
        pass

    def on_epoch_end(self, state: FitState) -> None:
        pass

    def on_fit_end(self, state: FitState) -> None:
        pass


class CallbackProtocol(Protocol):
    per_epoch: bool

    def on_fit_start(self, state: FitState) -> None: ...

    def on_epoch_end(self, state: FitState) -> None: ...

    def on_fit_end(self, state: FitState) -> None: ...


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved by at least ``min_delta`` for ``patience`` epochs.

    ``monitor`` is a history key: ``"loss"``, or ``"val_loss"`` (and ``"val_r2"``
    etc., which ``fit`` records with validation data). ``restore_best=True`` gives
    the model back the parameters of the best epoch when the fit ends: those the
    epoch ended with for a validation score (measured after the epoch), those it
    started from for the training loss (measured before its updates).

    >>> import pyfit
    >>> stopper = pyfit.EarlyStopping(patience=5, min_delta=1e-6, monitor="val_loss", restore_best=True)
    """

    def __init__(self, patience: int = 10, min_delta: float = 0.0, monitor: str = "loss",
                 restore_best: bool = False):
        if not isinstance(patience, int) or patience < 1:
            raise ValueError(f"patience must be an integer >= 1, got {patience!r}")
        if not min_delta >= 0:
            raise ValueError(f"min_delta must be >= 0, got {min_delta!r}")
        self.patience, self.min_delta, self.monitor = patience, float(min_delta), monitor
        self.restore_best = restore_best
        self.best = math.inf
        self.wait = 0
        self.best_state: Optional[Dict[str, torch.Tensor]] = None
        self._epoch_start: Optional[Dict[str, torch.Tensor]] = None

    def on_fit_start(self, state: FitState) -> None:
        self.best, self.wait, self.best_state = math.inf, 0, None
        if self.restore_best:
            self._epoch_start = BestParameters._snapshot(state.model)

    def on_epoch_end(self, state: FitState) -> None:
        value = state.history[self.monitor][-1]
        improved = value < self.best - self.min_delta
        if improved:
            self.best, self.wait = value, 0
            if self.restore_best:
                # the training loss is measured before the epoch's updates, a validation score after them
                self.best_state = self._epoch_start if self.monitor == "loss" else \
                    BestParameters._snapshot(state.model)
        if self.restore_best:
            self._epoch_start = BestParameters._snapshot(state.model)
        if improved:
            return
        self.wait += 1
        if self.wait >= self.patience:
            state.stop(EARLY_STOPPING, f"{self.monitor} did not improve by more than {self.min_delta:g} "
                                       f"for {self.patience} epochs (best {self.best:.6g})")

    def on_fit_end(self, state: FitState) -> None:
        if self.restore_best and self.best_state is not None:
            state.model.load_state_dict(self.best_state)


class Convergence(Callback):
    """Stop once the loss has not improved by a fraction ``tol`` of its best for ``n_iter_no_change`` epochs.

    Like scikit-learn's ``SGDRegressor(tol, n_iter_no_change)``, with the
    tolerance relative to the best loss so it means the same in any units. The
    decision is taken from the history after every ``epochs_per_check``-th
    epoch, on every path: the fused path runs that many epochs per call, a
    resumed fit stops where an unbroken one would, and a converged fit may run
    up to that many epochs more.

    With momentum m (SGD's ``momentum``, Adam's first beta) the loss rises and
    falls on a time scale of 1 / (1 - m) epochs, so the fit waits
    ``n_iter_no_change / (1 - m)`` epochs instead (50 for momentum 0.9).

    A loss that stopped improving because it climbed (the mean loss of the
    epochs waited far above the best, see :func:`far_above_best`) is not converged: the fit goes
    on, and ``pyfit.outcome`` reports the divergence if it ends there.

    >>> import pyfit
    >>> stopper = pyfit.Convergence(tol=1e-5, n_iter_no_change=5)
    """

    per_epoch = False
    epochs_per_check = 20

    def __init__(self, tol: float = defaults.TOL, n_iter_no_change: int = defaults.N_ITER_NO_CHANGE):
        if not isinstance(tol, (int, float)) or isinstance(tol, bool) or not 0 <= tol < 1:
            raise ValueError(f"tol must be a number in [0, 1), got {tol!r}")
        if not isinstance(n_iter_no_change, int) or isinstance(n_iter_no_change, bool) or n_iter_no_change < 1:
            raise ValueError(f"n_iter_no_change must be an integer >= 1, got {n_iter_no_change!r}")
        self.tol, self.n_iter_no_change = float(tol), n_iter_no_change
        self.patience = n_iter_no_change
        self.best, self.wait, self.seen, self.quiet_since = math.inf, 0, 0, 0

    def on_fit_start(self, state: FitState) -> None:
        self.best, self.wait, self.seen, self.quiet_since = math.inf, 0, 0, 0
        group = state.optimizer.param_groups[0] if state.optimizer.param_groups else {}
        momentum = group.get("momentum") or (group.get("betas") or (0.0,))[0]
        momentum = float(momentum) if isinstance(momentum, (int, float)) and 0 <= momentum < 1 else 0.0
        self.patience = math.ceil(self.n_iter_no_change / (1 - momentum))
        self._catch_up(state, stop=False)  # a resumed fit's history counts as it did

    def on_epoch_end(self, state: FitState) -> None:
        self._catch_up(state, stop=state.epoch % self.epochs_per_check == 0)

    def _catch_up(self, state: FitState, stop: bool) -> None:
        losses = state.history["loss"]
        for value in losses[self.seen:]:
            self.seen += 1
            if value < self.best - self.tol * abs(self.best) or self.best == math.inf:
                self.best, self.wait = value, 0
                continue
            self.wait += 1
            self.quiet_since = self.quiet_since if self.wait > 1 else self.seen
        if not stop or self.wait < self.patience:
            return
        # the mean of the epochs waited: a minibatch loss bouncing far above its best can dip near it now and then
        waited = losses[-self.wait:]
        if not far_above_best(sum(waited) / len(waited), self.best, losses[0]):
            state.stop(CONVERGED, f"the loss improved by less than {self.tol:g} of its best ({self.best:.6g}) "
                                  f"for {self.wait} epochs since epoch {self.quiet_since}")


class BestParameters(Callback):
    """Remember the lowest epoch loss, its epoch and the parameters that gave it.

    An epoch's loss is measured on the parameters the epoch started from (exactly
    so for full batches), so those are the ones kept. With ``restore=True`` the
    model gets them back when the fit ends.

    >>> import pyfit
    >>> best = pyfit.BestParameters(restore=True)
    """

    def __init__(self, monitor: str = "loss", restore: bool = False):
        self.monitor, self.restore = monitor, restore
        self.best_loss = math.inf
        self.best_epoch: Optional[int] = None
        self.best_state: Optional[Dict[str, torch.Tensor]] = None
        self._epoch_start: Dict[str, torch.Tensor] = {}

    @staticmethod
    def _snapshot(model: nn.Module) -> Dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in model.state_dict().items()}

    def on_fit_start(self, state: FitState) -> None:
        self.best_loss, self.best_epoch, self.best_state = math.inf, None, None
        self._epoch_start = self._snapshot(state.model)

    def on_epoch_end(self, state: FitState) -> None:
        value = state.history[self.monitor][-1]
        if value < self.best_loss:
            self.best_loss, self.best_epoch, self.best_state = value, state.epoch, self._epoch_start
        self._epoch_start = self._snapshot(state.model)

    def on_fit_end(self, state: FitState) -> None:
        if self.restore and self.best_state is not None:
            state.model.load_state_dict(self.best_state)


class LRScheduling(Callback):
    """Step an LR scheduler after every epoch (ReduceLROnPlateau gets the epoch's loss)."""

    def __init__(self, scheduler: Any):
        self.scheduler = scheduler

    def on_epoch_end(self, state: FitState) -> None:
        from torch.optim.lr_scheduler import ReduceLROnPlateau

        if isinstance(self.scheduler, ReduceLROnPlateau):
            self.scheduler.step(state.loss)
        else:
            self.scheduler.step()
