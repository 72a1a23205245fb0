"""What a careful user checks after a fit, as warnings that say what to do next.

A fit can end without an error and still be no good: still improving when the
epochs ran out, bouncing because the steps are too long, worse than predicting
the mean, or predicting one value for every row. :func:`diagnose` looks at the
loss history and at the returned model's predictions on the training data and
returns one sentence per problem, each with a concrete next step.
"""

from __future__ import annotations

import math
from typing import List, Optional, Sequence

import torch
from torch import Tensor

from .metrics import r2

# the last tenth of the epochs averaged this fraction less loss than the tenth before: not converged
STILL_FALLING = 1e-3
# within the last epochs, at least this share of the changes are rises of at least RISE: oscillating
RISING_SHARE, RISE = 0.3, 1e-3
_WINDOW = 50


def _scaling_hint(standardized: bool) -> str:
    return "" if standardized else "standardize the features (standardize=True, --standardize), "


def _next_steps(first: str, standardized: bool, lr_was_auto: bool) -> str:
    """``first``, then standardizing and lr="auto" where the fit did not use them, as alternatives."""
    steps = [first] + ([] if standardized else ["standardize the features (standardize=True, --standardize)"]) \
        + ([] if lr_was_auto else ["leave lr unset for lr='auto'"])
    return ", or ".join(steps)


def _scores(model, loss_fn, X: Tensor, y: Tensor, prefix: str = "") -> tuple:
    """The model's predictions for X and ``{prefix + name: value}`` for the loss and every metric."""
    from ._paths import _match_prediction
    from .metrics import METRICS

    with torch.no_grad():
        pred = _match_prediction(model(X), y)
        scores = {prefix + "loss": float(loss_fn(pred, y, model=model))}
    scores.update({prefix + name: metric(y, pred) for name, metric in METRICS.items()})
    return pred, scores


def assess(result, loss_fn, X: Tensor, y: Tensor, X_val: Optional[Tensor] = None,
           y_val: Optional[Tensor] = None) -> None:
    """Give ``result`` the scores of its model as returned, on the training (and held-out) rows, and its warnings.

    ``result.returned_loss`` is the training loss, ``result.scores`` maps
    ``loss``, ``r2``, ``rmse``, ``mae`` (and ``val_...``) to their values.
    """
    from .scaling import Standardized

    model = result.model
    was_training = model.training
    model.eval()
    try:
        pred, scores = _scores(model, loss_fn, X, y)
        if X_val is not None:
            scores.update(_scores(model, loss_fn, X_val, y_val, "val_")[1])
    finally:
        model.train(was_training)
    result.returned_loss, result.scores = scores["loss"], scores
    result.warnings = diagnose(result.history["loss"], result.stop_reason, result.stop_detail, y, pred,
                               epochs=result.epochs, lr=result.lr_chosen,
                               standardized=isinstance(model, Standardized),
                               lr_was_auto=result.lr_reason.startswith("auto"))


def _not_converged(losses: Sequence[float], stop_reason: str, epochs: int, standardized: bool,
                   lr_was_auto: bool) -> Optional[str]:
    if stop_reason != "completed" or len(losses) < 10:
        return None
    # the mean of the last tenth of the epochs against the tenth before it: noise from minibatches averages out
    span = max(2, len(losses) // 10)
    earlier = sum(losses[-2 * span:-span]) / span
    last = sum(losses[-span:]) / span
    if not (earlier > 0 and math.isfinite(earlier) and math.isfinite(last)):
        return None
    drop = (earlier - last) / earlier
    if drop <= STILL_FALLING:
        return None
    return (f"not converged: the loss was still falling when the epochs ran out ({drop:.2%} lower over the last "
            f"{span} epochs than over the {span} before); "
            f"{_next_steps(f'give it more epochs (epochs={2 * epochs})', standardized, lr_was_auto)}")


def _oscillating(losses: Sequence[float], lr: Optional[float], lr_was_auto: bool) -> Optional[str]:
    window = [v for v in losses[-_WINDOW:] if math.isfinite(v)]
    if len(window) < 10:
        return None
    changes = [(b - a) / abs(a) if a else 0.0 for a, b in zip(window, window[1:])]
    rises = sum(1 for c in changes if c > RISE)
    if rises < RISING_SHARE * len(changes):
        return None
    lower = f" (e.g. lr={lr / 10:.3g})" if lr else ""
    return (f"the loss oscillates: it rose in {rises} of the last {len(changes)} epochs, so the steps are "
            f"too long; lower lr{lower}" + ("" if lr_was_auto else ", or leave lr unset for lr='auto'"))


def _worse_than_mean(score: float, standardized: bool, lr_was_auto: bool, crawling: bool,
                     oscillating: bool) -> Optional[str]:
    if not score < 0:
        return None
    # crawling: the steps are too short or too few; bouncing: too long
    first = "give it more epochs or a larger lr" if crawling else "lower lr" if oscillating else \
        "check that the model suits the data, or give it more epochs"
    steps = _next_steps(first, standardized, lr_was_auto)
    return f"the fit is worse than predicting the mean of y (R² {score:.3g} < 0); {steps}"


def _constant(y: Tensor, pred: Tensor, standardized: bool) -> Optional[str]:
    y = y.double().reshape(y.shape[0], -1)
    pred = pred.double().reshape(y.shape)
    spread_y, spread_pred = y.std(0, correction=0), pred.std(0, correction=0)
    if y.shape[0] < 2 or not bool((spread_y > 0).all()):
        return None
    if not bool((spread_pred <= 1e-6 * spread_y).any()):
        return None
    return ("the model predicts the same value for every row (it learned at most the mean of y); "
            f"{_scaling_hint(standardized)}try another lr or optimizer (optimizer='adam'), more epochs, or a "
            "smaller model")


def diagnose(losses: Sequence[float], stop_reason: str, stop_detail: str, y: Tensor, pred: Tensor,
             *, epochs: int, lr: Optional[float] = None, standardized: bool = False,
             lr_was_auto: bool = False) -> List[str]:
    """One warning with a next step per problem found; an empty list for a fit that looks sound.

    ``losses`` is the per-epoch history, ``pred`` the returned model's
    predictions for the training targets ``y``; ``standardized`` and
    ``lr_was_auto`` leave out the advice to standardize and to use lr="auto".

    >>> import torch
    >>> y = torch.tensor([1.0, 2.0, 3.0])
    >>> diagnose([3.0, 2.0, 1.0], "completed", "", y, torch.full((3,), 10.0), epochs=3)[0][:40]
    'the fit is worse than predicting the mea'
    """
    if stop_reason == "non_finite":
        lower = f" (e.g. lr={lr / 10:.3g})" if lr else ""
        scaling = _scaling_hint(standardized)
        return [f"the fit diverged: {stop_detail}; lower lr{lower}"
                + ("" if lr_was_auto else " or leave it unset for lr='auto'")
                + (f", and {scaling.rstrip(', ')}" if scaling else "")]
    if not bool(torch.isfinite(pred).all()):
        return [f"the model's predictions are not finite; {_scaling_hint(standardized)}lower lr or leave it unset "
                "for lr='auto'"]
    not_converged = _not_converged(losses, stop_reason, epochs, standardized, lr_was_auto)
    oscillating = _oscillating(losses, lr, lr_was_auto)
    score = r2(y, pred) if y.shape[0] > 1 else math.nan
    # a loss that fell less than a tenth from where it started has barely moved: the steps are too short
    crawling = not_converged is not None or (len(losses) > 1 and losses[-1] >= 0.9 * losses[0])
    found = [not_converged, oscillating,
             _worse_than_mean(score, standardized, lr_was_auto, crawling, oscillating is not None),
             _constant(y, pred, standardized)]
    return [message for message in found if message]
