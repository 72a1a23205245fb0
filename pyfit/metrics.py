"""Scores of predictions against targets, by name: ``r2``, ``rmse``, ``mae``.

Each takes targets and predictions of the same number of rows, (N,) or (N, K),
and returns a float; several outputs are averaged with equal weight, as
scikit-learn's ``r2_score`` does by default. Everything is computed in float64.
"""

from __future__ import annotations

import math
from typing import Callable, Dict, Iterable

import torch
from torch import Tensor


def _pair(y: Tensor, pred: Tensor):
    y = torch.as_tensor(y).double()
    y = y.reshape(y.shape[0], -1)
    return y, torch.as_tensor(pred).double().reshape(y.shape)


def r2(y: Tensor, pred: Tensor) -> float:
    """The coefficient of determination, 1 - SS_res / SS_tot (NaN when a target column is constant).

    >>> import torch
    >>> r2(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([1.0, 2.0, 3.0]))
    1.0
    """
    y, pred = _pair(y, pred)
    ss_res = ((y - pred) ** 2).sum(0)
    ss_tot = ((y - y.mean(0)) ** 2).sum(0)
    if bool((ss_tot == 0).any()):
        return math.nan
    return float((1 - ss_res / ss_tot).mean())


def rmse(y: Tensor, pred: Tensor) -> float:
    """The root of the mean squared error, per output, averaged over the outputs."""
    y, pred = _pair(y, pred)
    return float(((y - pred) ** 2).mean(0).sqrt().mean())


def mae(y: Tensor, pred: Tensor) -> float:
    """The mean absolute error."""
    y, pred = _pair(y, pred)
    return float((y - pred).abs().mean())


METRICS: Dict[str, Callable[[Tensor, Tensor], float]] = {"r2": r2, "rmse": rmse, "mae": mae}


def check_metric_names(names: Iterable[str]) -> list:
    """The metric names as a list, refusing unknown ones with the known names."""
    from .errors import InputError

    names = [names] if isinstance(names, str) else list(names)
    for name in names:
        if name not in METRICS:
            raise InputError(f"unknown metric {name!r}; available: {', '.join(METRICS)}")
    return names


def scores(names: Iterable[str], y: Tensor, pred: Tensor) -> Dict[str, float]:
    """``{name: metric(y, pred)}`` for each name."""
    return {name: METRICS[name](y, pred) for name in names}
