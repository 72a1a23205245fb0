"""What a careful user checks after a fit, as warnings that say what to do next.

A fit can end without an error and still be no good: diverged (its returned
model's loss far above the best it reached, or above where it started, without
ever turning inf), still improving when the epochs ran out, bouncing because the
steps are too long, worse than predicting the mean, or predicting one value for
every row. :func:`diagnose` looks at the
loss history and at the returned model's predictions on the training data and
returns one sentence per problem, each with a concrete next step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Optional, Sequence

import torch
from torch import Tensor

from .callbacks import far_above_best
from .metrics import r2
from .validation import all_finite

# a returned loss this fraction above the first epoch's is above where the fit started (minibatch noise aside)
ABOVE_START = 1e-2
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


@dataclass(frozen=True)
class Predictions:
    """What the diagnosis reads of a model's predictions for the training targets: how many rows, whether
    every prediction is finite, and the spread (standard deviation, per output) of the targets and of the
    predictions. Taken from tensors, or added up over chunks and ranks (``pyfit._file_rows``)."""

    rows: int
    finite: bool
    spread_y: Tensor
    spread_pred: Tensor

    @classmethod
    def of(cls, y: Tensor, pred: Tensor) -> "Predictions":
        y = y.double().reshape(y.shape[0], -1)
        pred = pred.double().reshape(y.shape)
        return cls(y.shape[0], all_finite(pred), y.std(0, correction=0), pred.std(0, correction=0))


def _scores(model, loss_fn, X: Tensor, y: Tensor, prefix: str = "") -> tuple:
    """y and the model's predictions for X, both (N, K) float64, and ``{prefix + name: value}`` for the
    loss and every metric."""
    from ._runners import match_prediction
    from .metrics import all_metrics, as_float64_pair

    with torch.no_grad():
        pred = match_prediction(model(X), y)
        scores = {prefix + "loss": float(loss_fn(pred, y, model=model))}
    # one float64 copy of each, shared by every metric and the diagnosis: on millions of rows
    # the copies cost more than the sums
    y, pred = as_float64_pair(y, pred)
    scores.update({prefix + name: value for name, value in all_metrics(y, pred).items()})
    return y, pred, scores


def assess(result, loss_fn, X: Tensor, y: Tensor, X_val: Optional[Tensor] = None,
           y_val: Optional[Tensor] = None) -> None:
    """Give ``result`` the scores of its model as returned, on the training (and held-out) rows, and its warnings.

    ``result.returned_loss`` is the training loss, ``result.scores`` maps
    ``loss``, ``r2``, ``rmse``, ``mae`` (and ``val_...``) to their values.
    """
    model = result.model
    was_training = model.training
    model.eval()
    try:
        y, pred, scores = _scores(model, loss_fn, X, y)
        if X_val is not None:
            scores.update(_scores(model, loss_fn, X_val, y_val, "val_")[2])
    finally:
        model.train(was_training)
    judge(result, scores, Predictions.of(y, pred))


def judge(result, scores: dict, predictions: Predictions) -> None:
    """Give ``result`` its ``scores`` (see assess) and the warnings they and its history call for."""
    from .scaling import Standardized

    result.returned_loss, result.scores = scores["loss"], scores
    result.warnings = _diagnose(result.history["loss"], result.stop_reason, result.stop_detail, predictions,
                                epochs=result.epochs, lr=result.lr_chosen,
                                standardized=isinstance(result.model, Standardized),
                                lr_was_auto=result.lr_reason.startswith("auto"), final_loss=scores["loss"],
                                momentum=_momentum(result.optimizer), r2_score=scores["r2"])


def _above_start(start: float, final_loss: float) -> bool:
    """Whether the returned model's loss is above the first epoch's: the fit left it worse than it found it."""
    return math.isfinite(start) and start > 0 and final_loss > start * (1 + ABOVE_START)


def divergence(losses: Sequence[float], final_loss: float) -> Optional[str]:
    """How a fit whose losses stayed finite still diverged, or None: ``final_loss`` (the returned model's)
    more than DIVERGED_FACTOR times the best epoch's, or above the first epoch's.

    >>> divergence([10.0, 4.0, 2.0, 30.0], 50.0)
    "its final loss 50 is 25 times the best, 2 (epoch 3), and above the first epoch's 10"
    """
    # NaN and inf survive a sum: one pass in C for the common all-finite history
    finite = losses if math.isfinite(sum(losses)) else [v for v in losses if math.isfinite(v)]
    if not finite or not math.isfinite(final_loss):
        return None
    best = min(finite)
    epoch = losses.index(best) + 1
    start = losses[0]
    above_start = _above_start(start, final_loss)
    if not (far_above_best(final_loss, best, start) or above_start):
        return None
    times = f"{final_loss / best:.3g} times the best" if best > 0 else "above the best"
    return (f"its final loss {final_loss:.4g} is {times}, {best:.4g} (epoch {epoch})"
            + (f", and above the first epoch's {start:.4g}" if above_start else ""))


def has_failed(result) -> bool:
    """True when a fit did not give a usable model: its loss turned non-finite, its scheduler failed,
    or the returned model's loss is above the first epoch's (it left the model worse than it found it).

    A fit that ends far above its best but below where it started (momentum mid-swing) is
    warned about by :func:`divergence`, not failed: its model still improved on the start.
    """
    if result.stop_reason in ("non_finite", "scheduler_failed"):
        return True
    losses, final = result.history["loss"], result.final_loss
    if not losses or final is None or not math.isfinite(losses[0]):
        return False
    return not math.isfinite(final) or _above_start(losses[0], final)


def _momentum(optimizer) -> float:
    """SGD's momentum (0 without it, or for another optimizer)."""
    groups = getattr(optimizer, "param_groups", None) or [{}]
    value = groups[0].get("momentum")
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0


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
    # bouncing: the steps are too long, even where the loss still falls on average; crawling: too short or too few
    first = "lower lr" if oscillating else "give it more epochs or a larger lr" if crawling else \
        "check that the model suits the data, or give it more epochs"
    steps = _next_steps(first, standardized, lr_was_auto)
    return f"the fit is worse than predicting the mean of y (R² {score:.3g} < 0); {steps}"


def _constant(predictions: Predictions, standardized: bool) -> Optional[str]:
    spread_y, spread_pred = predictions.spread_y, predictions.spread_pred
    if predictions.rows < 2 or not bool((spread_y > 0).all()):
        return None
    if not bool((spread_pred <= 1e-6 * spread_y).any()):
        return None
    return ("the model predicts the same value for every row (it learned at most the mean of y); "
            f"{_scaling_hint(standardized)}try another lr or optimizer (optimizer='adam'), more epochs, or a "
            "smaller model")


def diagnose(losses: Sequence[float], stop_reason: str, stop_detail: str, y: Tensor, pred: Tensor,
             *, epochs: int, lr: Optional[float] = None, standardized: bool = False,
             lr_was_auto: bool = False, final_loss: Optional[float] = None,
             momentum: float = 0.0, r2_score: Optional[float] = None) -> List[str]:
    """One warning with a next step per problem found; an empty list for a fit that looks sound.

    ``losses`` is the per-epoch history, ``pred`` the returned model's
    predictions for the training targets ``y`` and ``final_loss`` its loss (the
    last epoch's when not given); ``standardized`` and ``lr_was_auto`` leave out
    the advice to standardize and to use lr="auto"; ``momentum`` (SGD's) adds
    less momentum to the advice for a diverged fit; ``r2_score``, when given, is pred's R² (saves a pass). A diverged fit gets that one
    warning alone: the others would read its symptoms as a fit too slow or too
    short.

    >>> import torch
    >>> y = torch.tensor([1.0, 2.0, 3.0])
    >>> diagnose([3.0, 2.0, 1.0], "completed", "", y, torch.full((3,), 10.0), epochs=3)[0][:40]
    'the fit is worse than predicting the mea'
    """
    if r2_score is None and y.shape[0] > 1:
        r2_score = r2(y, pred)
    return _diagnose(losses, stop_reason, stop_detail, Predictions.of(y, pred), epochs=epochs, lr=lr,
                     standardized=standardized, lr_was_auto=lr_was_auto, final_loss=final_loss, momentum=momentum,
                     r2_score=r2_score)


def _diagnose(losses: Sequence[float], stop_reason: str, stop_detail: str, predictions: Predictions, *,
              epochs: int, lr: Optional[float], standardized: bool, lr_was_auto: bool, final_loss: Optional[float],
              momentum: float, r2_score: Optional[float]) -> List[str]:
    final_loss = final_loss if final_loss is not None else (losses[-1] if losses else math.nan)
    how = stop_detail if stop_reason == "non_finite" else divergence(losses, final_loss)
    if how is not None:
        lower = f" (e.g. lr={lr / 10:.3g})" if lr else ""
        scaling = _scaling_hint(standardized)
        # momentum swings the loss on its own: ending on a swing far above the best is the same failure
        return [f"the fit diverged: {how}; lower lr{lower}"
                + (f" or momentum (now {momentum:g})" if momentum else "")
                + ("" if lr_was_auto else " or leave it unset for lr='auto'")
                + (f", and {scaling.rstrip(', ')}" if scaling else "")]
    if not predictions.finite:
        return [f"the model's predictions are not finite; {_scaling_hint(standardized)}lower lr or leave it unset "
                "for lr='auto'"]
    not_converged = _not_converged(losses, stop_reason, epochs, standardized, lr_was_auto)
    oscillating = _oscillating(losses, lr, lr_was_auto)
    score = math.nan if predictions.rows <= 1 or r2_score is None else r2_score
    # a loss that fell less than a tenth from where it started has barely moved: the steps are too short
    crawling = not_converged is not None or (len(losses) > 1 and losses[-1] >= 0.9 * losses[0])
    found = [not_converged, oscillating,
             _worse_than_mean(score, standardized, lr_was_auto, crawling, oscillating is not None),
             _constant(predictions, standardized)]
    return [message for message in found if message]
