"""Plots of a fit: the loss curve, and the data with the fitted curve.

Both work without a display (matplotlib's Agg backend is chosen when there is
none), return the Figure, and save it when given a path.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Dict, List, Optional

import torch
from torch import nn


def _pyplot():
    import matplotlib

    no_display = sys.platform.startswith("linux") and not os.environ.get("DISPLAY") \
        and not os.environ.get("WAYLAND_DISPLAY")
    if no_display and "matplotlib.pyplot" not in sys.modules:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _finish(figure, path: Optional[str]):
    figure.tight_layout()
    if path is not None:
        directory = os.path.dirname(os.fspath(path))
        if directory:
            os.makedirs(directory, exist_ok=True)
        figure.savefig(path, dpi=110)
    return figure


def plot_loss(history: Dict[str, List[float]], path: Optional[str] = None, *, log: bool = True, title: str = "Loss"):
    """The per-epoch loss (log scale by default) as a Figure.

    >>> import pyfit
    >>> figure = pyfit.plot_loss({"loss": [4.0, 2.0, 1.0]})
    >>> figure.axes[0].get_yscale()
    'log'
    """
    plt = _pyplot()
    losses = history["loss"] if isinstance(history, dict) else list(history)
    figure, axes = plt.subplots(figsize=(6, 4))
    epochs = range(1, len(losses) + 1)
    axes.plot(epochs, losses, color="tab:blue", lw=1.5)
    positive = all(v > 0 for v in losses) and len(losses) > 0
    if log and positive:
        axes.set_yscale("log")
    axes.set_xlabel("epoch")
    axes.set_ylabel("loss" + (" (log scale)" if log and positive else ""))
    axes.set_title(title)
    axes.grid(True, alpha=0.3)
    return _finish(figure, path)


def plot_fit(model: nn.Module, X: Any, y: Any, path: Optional[str] = None, *, title: str = "Fit",
             points: int = 200):
    """The data as points and the model's curve over their range (one input feature).

    >>> import torch, pyfit
    >>> figure = pyfit.plot_fit(pyfit.Linear(1), [0.0, 1.0, 2.0], [1.0, 2.0, 3.0])
    >>> len(figure.axes)
    1
    """
    from .predict import predict
    from .validation import check_fit_data

    X, y = check_fit_data(X, y)
    if X.shape[1] != 1:
        raise ValueError(f"plot_fit draws one input feature, but X has {X.shape[1]}")
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(6, 4))
    xs = X[:, 0].cpu().numpy()
    ys = y.reshape(y.shape[0], -1).cpu().numpy()
    grid = torch.linspace(float(X.min()), float(X.max()), points, dtype=torch.float64)
    curve = predict(model, grid.unsqueeze(1)).reshape(points, -1).cpu().double().numpy()
    for k in range(ys.shape[1]):
        axes.scatter(xs, ys[:, k], s=14, color="tab:red", alpha=0.7, label="data" if k == 0 else None)
        axes.plot(grid.numpy(), curve[:, k], color="tab:blue", lw=2, label="fit" if k == 0 else None)
    axes.set_xlabel("x")
    axes.set_ylabel("y")
    axes.set_title(title)
    axes.legend()
    axes.grid(True, alpha=0.3)
    return _finish(figure, path)
