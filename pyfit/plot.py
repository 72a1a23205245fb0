"""Plots of a fit: the loss curve, the data with the fitted curve, predictions against
the actual values, and several loss curves compared.

Each works without a display (matplotlib's Agg backend is chosen when there is
none), returns the Figure, saves it when given a path, and labels its axes; titles
name what was fit (:func:`describe_fit`).
"""

from __future__ import annotations

import math
import os
import sys
import textwrap
from typing import Any, Dict, Iterable, List, Optional, Sequence

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


def _wrap_titles(figure) -> None:
    """Break every axes title that runs past the figure's edges into shorter lines: one long line (a long
    model name, several settings) would be cut off in the saved image."""
    renderer = figure.canvas.get_renderer()
    edges = figure.bbox
    for axes in figure.axes:
        title = axes.title
        words = title.get_text().replace("\n", " ")
        width = len(words)
        while width > 20:
            box = title.get_window_extent(renderer=renderer)
            if edges.x0 <= box.x0 and box.x1 <= edges.x1:
                break
            width = int(width * 0.85)
            title.set_text(textwrap.fill(words, width))
            figure.tight_layout()


def _finish(figure, path: Optional[str]):
    figure.tight_layout()
    _wrap_titles(figure)
    if path is not None:
        directory = os.path.dirname(os.fspath(path))
        if directory:
            os.makedirs(directory, exist_ok=True)
        figure.savefig(path, dpi=110)
    return figure


def describe_fit(result: Any) -> str:
    """What a fit was, for a plot's title: "linear model, mse loss, sgd (lr 0.1)".

    >>> import torch, pyfit
    >>> pyfit.plot.describe_fit(pyfit.fit("linear", torch.rand(5), torch.rand(5), lr=0.1, epochs=2))
    'linear model, mse loss, sgd (lr 0.1)'
    """
    config = getattr(result, "config", None) or {}

    def name(key: str, obj: Any) -> str:
        value = config.get(key)
        return value if isinstance(value, str) else type(obj).__name__

    loss = config.get("loss")
    loss = loss if isinstance(loss, str) else ("custom" if loss is None else getattr(loss, "__name__",
                                                                                    type(loss).__name__))
    lrs = result.history.get("lr") or []
    lr = f" (lr {lrs[0]:.3g})" if lrs else ""
    return f"{name('model', result.model)} model, {loss} loss, {name('optimizer', result.optimizer)}{lr}"


def _log_scale_if_positive(axes, values: Iterable[float], log: bool, label: str) -> None:
    values = list(values)
    positive = log and bool(values) and all(v > 0 for v in values if math.isfinite(v))
    if positive:
        axes.set_yscale("log")
    axes.set_ylabel(label + (" (log scale)" if positive else ""))


def plot_loss(history: Dict[str, List[float]], path: Optional[str] = None, *, log: bool = True,
              title: str = "Training loss"):
    """The per-epoch loss (log scale by default) as a Figure; the validation loss too when the
    history has one.

    >>> import pyfit
    >>> figure = pyfit.plot_loss({"loss": [4.0, 2.0, 1.0]})
    >>> figure.axes[0].get_yscale()
    'log'
    """
    plt = _pyplot()
    curves = {"training": history["loss"] if isinstance(history, dict) else list(history)}
    if isinstance(history, dict) and history.get("val_loss"):
        curves["validation"] = history["val_loss"]
    figure, axes = plt.subplots(figsize=(6, 4))
    for (label, losses), colour in zip(curves.items(), ("tab:blue", "tab:orange")):
        axes.plot(range(1, len(losses) + 1), losses, color=colour, lw=1.5, label=label)
    _log_scale_if_positive(axes, [v for losses in curves.values() for v in losses], log, "loss")
    axes.set_xlabel("epoch")
    axes.set_title(title)
    if len(curves) > 1:
        axes.legend()
    axes.grid(True, alpha=0.3)
    return _finish(figure, path)


def plot_losses(curves: Dict[str, Sequence[float]], path: Optional[str] = None, *, title: str = "Loss",
                references: Optional[Dict[str, float]] = None, log: bool = True):
    """Several loss curves on one Figure (one line per label), each reference value a dashed
    horizontal line; log-scale loss where every value is positive.

    >>> import pyfit
    >>> figure = pyfit.plot.plot_losses({"sgd": [4.0, 2.0], "adam": [4.0, 1.0]}, references={"best": 0.5})
    >>> sorted(text.get_text() for text in figure.axes[0].get_legend().get_texts())
    ['adam', 'best', 'sgd']
    """
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(7, 4.5))
    for label, losses in curves.items():
        axes.plot(range(1, len(losses) + 1), list(losses), lw=1.5, label=label)
    shown = {label: value for label, value in (references or {}).items() if math.isfinite(value)}
    values = [v for losses in curves.values() for v in losses] + list(shown.values())
    _log_scale_if_positive(axes, values, log, "training loss")
    for label, value in shown.items():
        if value > 0 or axes.get_yscale() == "linear":
            axes.axhline(value, color="black", ls="--", lw=1, label=label)
    axes.set_xlabel("epoch")
    axes.set_title(title)
    axes.legend()
    axes.grid(True, alpha=0.3)
    return _finish(figure, path)


def plot_fit(model: nn.Module, X: Any, y: Any, path: Optional[str] = None, *, title: str = "Fit",
             points: int = 200, xlabel: str = "x", ylabel: str = "y"):
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
        raise ValueError(f"plot_fit draws one input feature, but X has {X.shape[1]}; "
                         "plot_predictions draws any number")
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(6, 4))
    xs = X[:, 0].cpu().numpy()
    ys = y.reshape(y.shape[0], -1).cpu().numpy()
    grid = torch.linspace(float(X.min()), float(X.max()), points, dtype=torch.float64)
    curve = predict(model, grid.unsqueeze(1)).reshape(points, -1).cpu().double().numpy()
    for k in range(ys.shape[1]):
        axes.scatter(xs, ys[:, k], s=14, color="tab:red", alpha=0.7, label="data" if k == 0 else None)
        axes.plot(grid.numpy(), curve[:, k], color="tab:blue", lw=2, label="fit" if k == 0 else None)
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.set_title(title)
    axes.legend()
    axes.grid(True, alpha=0.3)
    return _finish(figure, path)


def plot_predictions(model: nn.Module, X: Any, y: Any, path: Optional[str] = None, *,
                     title: str = "Predicted against actual", target_names: Optional[Sequence[str]] = None):
    """The model's prediction for every row against the actual value, with the line where
    they are equal: readable for any number of features, one colour per output.

    >>> import torch, pyfit
    >>> figure = pyfit.plot_predictions(pyfit.Linear(3), torch.rand(10, 3), torch.rand(10))
    >>> figure.axes[0].get_xlabel(), figure.axes[0].get_ylabel()
    ('actual', 'predicted')
    """
    from .predict import predict
    from .validation import check_fit_data

    X, y = check_fit_data(X, y)
    actual = y.reshape(y.shape[0], -1).double().cpu()  # (N, K)
    predicted = predict(model, X).reshape(actual.shape).double().cpu()
    outputs = actual.shape[1]
    names = list(target_names) if target_names is not None else [f"output {k}" for k in range(outputs)]
    if len(names) != outputs:
        raise ValueError(f"target_names has {len(names)} names for {outputs} output(s)")
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(5.5, 5))
    for k in range(outputs):
        ss_res = float(((actual[:, k] - predicted[:, k]) ** 2).sum())
        ss_tot = float(((actual[:, k] - actual[:, k].mean()) ** 2).sum())
        # the rows plotted: all of them, training and held-out alike, when the caller passes the whole data
        r2 = f"R² {1 - ss_res / ss_tot:.3f} over the {actual.shape[0]} rows shown" if ss_tot > 0 \
            else "R² undefined"
        label = f"{names[k]} ({r2})" if outputs > 1 or target_names is not None else r2
        axes.scatter(actual[:, k].numpy(), predicted[:, k].numpy(), s=14, alpha=0.6, label=label)
    low = float(min(actual.min(), predicted.min()))
    high = float(max(actual.max(), predicted.max()))
    axes.plot([low, high], [low, high], color="black", ls="--", lw=1, label="predicted = actual")
    what = names[0] if outputs == 1 and target_names is not None else None
    axes.set_xlabel(f"actual {what}" if what else "actual")
    axes.set_ylabel(f"predicted {what}" if what else "predicted")
    axes.set_title(title)
    axes.legend()
    axes.grid(True, alpha=0.3)
    return _finish(figure, path)
