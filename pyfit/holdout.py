"""Held-out rows: a seeded validation split, and the per-epoch validation loss and metrics.

``fit(..., validation_split=0.2)`` keeps a random fifth of the rows out of
training (the draw follows ``seed``); ``validation_data=(X_val, y_val)`` brings
its own. After every epoch :class:`Validation` records ``history["val_loss"]``
(the loss on the held-out rows of the model as the epoch left it) and, for each
metric asked for, ``history[name]`` on the training rows and
``history["val_" + name]`` on the held-out ones.
"""

from __future__ import annotations

import math
import secrets
from typing import Any, Iterable, List, Optional, Tuple

import torch
from torch import Tensor

from .callbacks import Callback, FitState
from .errors import InputError
from .metrics import METRICS, check_metric_names


def split_rows(X: Tensor, y: Tensor, fraction: Any, seed: Optional[int]) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """(X_train, y_train, X_val, y_val): ``fraction`` of the rows, drawn with ``seed``, held out.

    Its own generator, so the split changes neither the global random state nor
    the fit's minibatch orders.
    """
    if isinstance(fraction, bool) or not isinstance(fraction, float) or not 0 < fraction < 1:
        raise InputError(f"validation_split must be a number between 0 and 1, got {fraction!r}")
    n = X.shape[0]
    held = math.ceil(fraction * n)
    if held >= n:
        raise InputError(f"validation_split={fraction} of {n} rows leaves no row to train on")
    # without a seed, a fresh one from the OS: drawing it from torch would move the global random state
    # before the fit's last check has passed
    generator = torch.Generator().manual_seed(seed if seed is not None else secrets.randbits(62))
    order = torch.randperm(n, generator=generator).to(X.device)
    train, val = order[held:].sort().values, order[:held].sort().values  # keep the rows' own order
    return X[train], y[train], X[val], y[val]


def check_validation_data(data: Any, X: Tensor, y: Tensor) -> Tuple[Tensor, Tensor]:
    """``(X_val, y_val)`` checked like the training data and matched to its features, outputs and dtype."""
    from .validation import check_fit_data

    if not isinstance(data, (tuple, list)) or len(data) != 2:
        raise InputError(f"validation_data must be a pair (X_val, y_val), got {type(data).__name__}")
    X_val, y_val = check_fit_data(data[0], data[1], X.dtype)
    if X_val.shape[1] != X.shape[1]:
        raise InputError(f"validation_data has {X_val.shape[1]} features, but X has {X.shape[1]}")
    if y_val.shape[1:] != y.shape[1:]:
        raise InputError(f"validation_data's y has shape {tuple(y_val.shape)}, which does not match y's "
                         f"{tuple(y.shape)} beyond the rows")
    return X_val.to(X.device), y_val.to(X.device)


def held_out(X: Tensor, y: Tensor, validation_data: Any, validation_split: Any, seed: Optional[int]):
    """The training rows and the held-out ones (None, None without either argument)."""
    if validation_data is not None and validation_split is not None:
        raise InputError("give validation_data or validation_split, not both")
    if validation_split is not None:
        return split_rows(X, y, float(validation_split) if isinstance(validation_split, int) and
                          not isinstance(validation_split, bool) else validation_split, seed)
    if validation_data is not None:
        return (X, y, *check_validation_data(validation_data, X, y))
    return X, y, None, None


class Validation(Callback):
    """After every epoch: the validation loss, and each metric on the training and held-out rows."""

    def __init__(self, loss_fn: Any, X: Tensor, y: Tensor, X_val: Optional[Tensor], y_val: Optional[Tensor],
                 metrics: Iterable[str] = ()):
        self.loss_fn, self.X, self.y, self.X_val, self.y_val = loss_fn, X, y, X_val, y_val
        self.metrics = check_metric_names(metrics)

    @property
    def held_out(self) -> bool:
        """Whether there are held-out rows to score."""
        return self.X_val is not None

    def keys(self) -> list:
        """The history entries this callback records."""
        keys = ["val_loss"] if self.held_out else []
        for name in self.metrics:
            keys += [name] + (["val_" + name] if self.held_out else [])
        return keys

    def on_fit_start(self, state: FitState) -> None:
        for key in self.keys():
            state.history.setdefault(key, [])

    def on_epoch_end(self, state: FitState) -> None:
        from ._runners import match_prediction

        model = state.model
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                if self.X_val is not None:
                    pred_val = match_prediction(model(self.X_val), self.y_val)
                    state.history["val_loss"].append(float(self.loss_fn(pred_val, self.y_val, model=model)))
                if self.metrics:
                    pred = model(self.X)
                for name in self.metrics:
                    state.history[name].append(METRICS[name](self.y, pred))
                    if self.X_val is not None:
                        state.history["val_" + name].append(METRICS[name](self.y_val, pred_val))
        finally:
            model.train(was_training)


def check_monitors(callbacks: List[Any], validation: Optional[Validation]) -> None:
    """Refuse a callback that monitors a history entry this fit will not record."""
    recorded = ["loss", "lr"] + (validation.keys() if validation is not None else [])
    for callback in callbacks:
        monitor = getattr(callback, "monitor", None)
        if isinstance(monitor, str) and monitor not in recorded:
            hint = " (give validation_data or validation_split)" if monitor.startswith("val_") else ""
            raise InputError(f"{type(callback).__name__} monitors {monitor!r}, which this fit does not record"
                             f"{hint}; it records: {', '.join(recorded)}")
