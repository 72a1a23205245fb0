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
    ``stop_reason`` is ``"completed"``, ``"early_stopping"``, ``"non_finite"`` or
    ``"interrupted"``, with ``stop_detail`` saying more; ``backend`` names what ran
    (``"cpp:fused-linear"``, ``"python:autograd"``, ...).
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

    @property
    def final_loss(self) -> float:
        """The last completed epoch's loss (NaN when no epoch completed)."""
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
