"""What ``fit`` returns: the trained model, its optimizer, the history and how it ended."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import torch
from torch import nn


@dataclass
class FitResult:
    """The outcome of :func:`pyfit.fit`.

    ``history`` maps ``"loss"`` and ``"lr"`` to one value per completed epoch;
    ``stop_reason`` is ``"completed"`` (the epochs ran out), ``"converged"``,
    ``"early_stopping"``, ``"non_finite"``, ``"scheduler_failed"`` or ``"interrupted"``, with
    ``stop_detail`` saying more; ``backend`` names what ran
    (``"cpp:fused-linear"``, ``"python:autograd"``, ...). ``lr_chosen`` is the
    learning rate the fit started with and ``lr_reason`` why; ``warnings`` lists
    what looks wrong with the fit, each with a next step (empty when nothing does).
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer
    history: Dict[str, List[float]]
    stop_reason: str
    backend: str
    epochs: int
    seconds: float
    stop_detail: str = ""
    scheduler: Any = None
    callbacks: List[Any] = field(default_factory=list)
    config: Dict[str, Any] = field(default_factory=dict)
    state: Any = None  # the FitState, for resuming and checkpoints
    lr_chosen: Optional[float] = None
    lr_reason: str = ""
    warnings: List[str] = field(default_factory=list)
    returned_loss: Optional[float] = None  # the loss of the model as returned, on all the training rows
    scores: Dict[str, float] = field(default_factory=dict)  # its loss, r2, rmse, mae (and val_...), as returned

    @property
    def final_loss(self) -> float:
        """The loss of the returned model on all the training data (NaN when no epoch completed).

        An epoch's entry in the history is measured before its updates; this one
        is measured after the last, so it is the loss of the model you get.
        """
        if self.returned_loss is not None:
            return self.returned_loss
        return self.history["loss"][-1] if self.history["loss"] else float("nan")

    def predict(self, X: Any) -> torch.Tensor:
        """The model's predictions for X, with gradients off."""
        from .predict import predict

        return predict(self.model, X)

    def plot_loss(self, path: Optional[str] = None, *, log: bool = True):
        """The loss curve as a matplotlib Figure; saved to ``path`` when given."""
        from .plot import describe_fit, plot_loss

        return plot_loss(self.history, path=path, log=log, title=f"Loss: {describe_fit(self)}")

    def plot_fit(self, X: Any, y: Any, path: Optional[str] = None, *, xlabel: str = "x", ylabel: str = "y"):
        """The data and the fitted curve (one input feature); saved to ``path`` when given."""
        from .plot import describe_fit, plot_fit

        return plot_fit(self.model, X, y, path=path, title=f"Fit: {describe_fit(self)}", xlabel=xlabel,
                        ylabel=ylabel)

    def plot_predictions(self, X: Any, y: Any, path: Optional[str] = None, *, target_names=None):
        """Predicted against actual values (any number of features); saved to ``path`` when given."""
        from .plot import describe_fit, plot_predictions

        return plot_predictions(self.model, X, y, path=path, title=f"Predicted against actual: {describe_fit(self)}",
                                target_names=target_names)

    def __repr__(self) -> str:
        return (f"FitResult(epochs={self.epochs}, final_loss={self.final_loss:.6g}, "
                f"stop_reason={self.stop_reason!r}, backend={self.backend!r}, seconds={self.seconds:.3g})")
