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


def as_float64_pair(y: Tensor, pred: Tensor):
    """y and pred as (N, K) float64 tensors (no copy of what already is float64)."""
    y = torch.as_tensor(y).double()
    y = y.reshape(y.shape[0], -1)
    return y, torch.as_tensor(pred).double().reshape(y.shape)



def r2(y: Tensor, pred: Tensor) -> float:
    """The coefficient of determination, 1 - SS_res / SS_tot (NaN when a target column is constant).

    >>> import torch
    >>> r2(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([1.0, 2.0, 3.0]))
    1.0
    """
    y, pred = as_float64_pair(y, pred)
    # norms and var reduce without the temporaries that ** 2 would allocate on every row
    ss_res = torch.linalg.vector_norm(y - pred, dim=0) ** 2
    ss_tot = y.var(0, correction=0) * y.shape[0]
    if bool((ss_tot == 0).any()):
        return math.nan
    return float((1 - ss_res / ss_tot).mean())


def rmse(y: Tensor, pred: Tensor) -> float:
    """The root of the mean squared error, per output, averaged over the outputs."""
    y, pred = as_float64_pair(y, pred)
    return float((torch.linalg.vector_norm(y - pred, dim=0) / math.sqrt(y.shape[0])).mean())


def mae(y: Tensor, pred: Tensor) -> float:
    """The mean absolute error."""
    y, pred = as_float64_pair(y, pred)
    return float(torch.linalg.vector_norm(y - pred, ord=1) / y.numel())


METRICS: Dict[str, Callable[[Tensor, Tensor], float]] = {"r2": r2, "rmse": rmse, "mae": mae}


def all_metrics(y: Tensor, pred: Tensor) -> Dict[str, float]:
    """Every metric of METRICS at once, from one float64 residual: what r2, rmse and mae give one by one,
    for a fraction of the passes over millions of rows."""
    y, pred = as_float64_pair(y, pred)
    residual = y - pred
    return metrics_from_sums(y.shape[0], torch.linalg.vector_norm(residual, dim=0),
                             y.var(0, correction=0) * y.shape[0], torch.linalg.vector_norm(residual, ord=1))


def metrics_from_sums(rows: int, root_ss_res: Tensor, ss_tot: Tensor, absolute: Tensor) -> Dict[str, float]:
    """r2, rmse and mae from a residual's sums over its ``rows`` rows (float64, which may be added up over
    chunks or processes): per output (K,), the root of the squared residuals' sum and the targets' squared
    deviations from their mean; in all, the absolute residuals' sum."""
    return {
        "r2": math.nan if bool((ss_tot == 0).any()) else float((1 - root_ss_res ** 2 / ss_tot).mean()),
        "rmse": float((root_ss_res / math.sqrt(rows)).mean()),
        "mae": float(absolute / (rows * root_ss_res.numel())),
    }


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
