"""``pyfit.compare``: the same fit with several optimizers, side by side.

Every optimizer fits the same data from the same initial parameters (the same
seed), so the table and the overlaid loss curves differ only by the optimizer and
its settings. For a model that is linear in its parameters under a squared-error
loss, the closed-form least-squares solution is a reference row: the lowest loss
any optimizer can reach.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

import torch
from torch import nn

from .errors import InputError
from .losses import MSELoss, SSELoss, as_loss
from .models import LINEAR_IN_PARAMETERS
from .registry import OPTIMIZERS
from .validation import check_fit_data, check_positive

# an optimizer as compare takes it: a registry name, or {"name": ..., setting: value, ...}
OptimizerSpec = Union[str, Mapping[str, Any]]
REFERENCE_LABEL = "least squares (closed form)"
DEFAULT_TOL = 1e-3


@dataclass
class ComparisonRow:
    """One optimizer's fit (or the closed-form reference, with ``optimizer=None``)."""

    label: str
    optimizer: Optional[str]
    settings: Dict[str, Any]
    final_loss: float  # the loss of the returned model on the training data
    epochs: int
    seconds: float
    stop_reason: str
    epochs_to_tol: Optional[int] = None  # first epoch within tol of the best loss; None: never
    seconds_to_tol: Optional[float] = None
    val_loss: Optional[float] = None
    losses: List[float] = field(default_factory=list, repr=False)  # per epoch, before its updates
    result: Any = field(default=None, repr=False)  # the FitResult

    def to_dict(self) -> Dict[str, Any]:
        return {"label": self.label, "optimizer": self.optimizer, "settings": dict(self.settings),
                "final_loss": _number(self.final_loss), "val_loss": _number(self.val_loss),
                "epochs": self.epochs, "epochs_to_tol": self.epochs_to_tol,
                "seconds_to_tol": self.seconds_to_tol, "seconds": self.seconds, "stop_reason": self.stop_reason}


def _number(value: Optional[float]) -> Optional[float]:
    """JSON has no NaN or inf: those become None."""
    return value if value is not None and math.isfinite(value) else None


@dataclass
class Comparison:
    """What :func:`compare` returns: the rows, and how "reaching tol" was judged.

    ``target_loss`` is the best loss in the table (the closed form's, when there is
    one); an optimizer reaches tol at the first epoch whose loss is within
    ``tol * (start_loss - target_loss)`` of it, ``start_loss`` being the loss at the
    shared initial parameters.
    """

    rows: List[ComparisonRow]
    model: str
    loss: str
    tol: float
    target_loss: float
    start_loss: float

    def to_dicts(self) -> List[Dict[str, Any]]:
        """One plain dict per row (JSON-ready: NaN and inf become None)."""
        return [row.to_dict() for row in self.rows]

    def to_text(self) -> str:
        """The table as aligned text, one line per row."""
        show_val = any(row.val_loss is not None for row in self.rows)
        header = ["optimizer", "settings", "final loss"] + (["val loss"] if show_val else []) + \
            ["epochs", "epochs to tol", "s to tol", "seconds", "stopped"]
        lines = [header]
        for row in self.rows:
            cells = [row.label, _settings_text(row.settings), _float_text(row.final_loss)]
            if show_val:
                cells.append(_float_text(row.val_loss))
            cells += [str(row.epochs) if row.optimizer else "-",
                      "-" if row.epochs_to_tol is None else str(row.epochs_to_tol),
                      "-" if row.seconds_to_tol is None else f"{row.seconds_to_tol:.3f}",
                      f"{row.seconds:.3f}", row.stop_reason]
            lines.append(cells)
        widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
        text = ["  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() for line in lines]
        text.insert(1, "  ".join("-" * width for width in widths))
        return "\n".join(text) + (f"\n{self.model} model, {self.loss} loss. Reaching tol {self.tol:g}: closing all "
                                  f"but {self.tol:g} of the gap from the start loss {_float_text(self.start_loss)} "
                                  f"to the best loss {_float_text(self.target_loss)}.")

    def __str__(self) -> str:
        return self.to_text()

    def plot(self, path: Optional[str] = None):
        """Every optimizer's loss curve on one figure (log-scale loss), the closed form as a
        horizontal line; returns the Figure and saves it to ``path`` when given."""
        from .plot import plot_losses

        curves = {row.label: row.losses for row in self.rows if row.optimizer is not None}
        references = {row.label: row.final_loss for row in self.rows if row.optimizer is None}
        return plot_losses(curves, path, title=f"Optimizers compared: {self.model} model, {self.loss} loss",
                           references=references)


def _float_text(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.6g}"


def _settings_text(settings: Mapping[str, Any]) -> str:
    return ", ".join(f"{key}={value:g}" if isinstance(value, float) else f"{key}={value}"
                     for key, value in settings.items()) or "-"


def _spec(optimizer: OptimizerSpec) -> Dict[str, Any]:
    """``{"name": ..., **settings}`` from a name or a dict; unknown names fail here, before any fit."""
    if isinstance(optimizer, str):
        spec = {"name": optimizer}
    elif isinstance(optimizer, Mapping) and isinstance(optimizer.get("name"), str):
        spec = dict(optimizer)
    else:
        raise InputError(f"each optimizer must be a registry name or a dict with a 'name', got {optimizer!r}")
    spec["name"] = OPTIMIZERS.entry(spec["name"]).name  # unknown: lists the available ones
    return spec


def _lr_for(index: int, spec: Dict[str, Any], lrs: Any, count: int) -> Optional[float]:
    """The lr of the index-th optimizer: its own "lr", else lrs (one for all, one each, or by name)."""
    if "lr" in spec or lrs is None:
        return spec.get("lr")
    if isinstance(lrs, Mapping):
        return lrs.get(spec["name"])
    if isinstance(lrs, (list, tuple)):
        if len(lrs) != count:
            raise InputError(f"lrs has {len(lrs)} values but there are {count} optimizers; give one lr, "
                             "one per optimizer, or a dict by name")
        return lrs[index]
    return lrs


def _labels(specs: List[Dict[str, Any]]) -> List[str]:
    """A row's label: the name, with its settings where two rows share the name."""
    names = [spec["name"] for spec in specs]
    labels = []
    for spec in specs:
        extra = {k: v for k, v in spec.items() if k != "name"}
        labels.append(spec["name"] if names.count(spec["name"]) == 1 or not extra
                      else f"{spec['name']} {_settings_text(extra)}")
    return [label if labels.count(label) == 1 else f"{label} #{i + 1}" for i, label in enumerate(labels)]


def _warm_up(spec: Dict[str, Any], lr: Optional[float]) -> None:
    settings = {k: v for k, v in spec.items() if k != "name"}
    if lr is not None:
        settings["lr"] = lr
    OPTIMIZERS.build(spec["name"], [nn.Parameter(torch.zeros(1))], **settings)


class _EpochClock:
    """Records when each epoch ended, for the seconds it took to reach tol."""

    per_epoch = True

    def __init__(self):
        self.started = 0.0
        self.ends: List[float] = []

    def on_fit_start(self, state) -> None:
        self.started = time.perf_counter()

    def on_epoch_end(self, state) -> None:
        self.ends.extend([time.perf_counter() - self.started] * (state.epoch - len(self.ends)))

    def on_fit_end(self, state) -> None:
        pass


def _loss_of(model: nn.Module, loss_fn: Any, X: torch.Tensor, y: torch.Tensor) -> float:
    """The loss of ``model`` as it stands on (X, y)."""
    from .predict import predict

    pred = predict(model, X)
    pred = pred.reshape(y.shape) if pred.numel() == y.numel() else pred
    with torch.no_grad():
        return float(loss_fn(pred.to(y.dtype), y, model=model))


def _least_squares(model: nn.Module, loss_fn: Any, X: torch.Tensor, y: torch.Tensor) -> Optional[nn.Module]:
    """A copy of ``model`` set to the closed-form least-squares solution, where that is the loss's
    minimum: a model declared linear in its parameters under mse or sse. None otherwise."""
    if not isinstance(loss_fn, (MSELoss, SSELoss)) or not getattr(type(model), LINEAR_IN_PARAMETERS, False):
        return None
    solved = copy.deepcopy(model)
    with torch.no_grad():
        design = solved.design_matrix(X.to(solved.weight.dtype)).double()  # (N, P)
        if solved.bias is not None:
            design = torch.cat([design, torch.ones(design.shape[0], 1, dtype=design.dtype)], 1)
        targets = y.reshape(y.shape[0], -1).double()  # (N, K)
        # gelsy (QR with column pivoting): the minimum-norm solution, also for a rank-deficient design
        solution = torch.linalg.lstsq(design, targets, driver="gelsy").solution  # (P[+1], K)
        weights = solution[:solved.weight.shape[1]].T  # (K, P), as the model stores its weight
        solved.weight.copy_(weights.reshape(solved.weight.shape))
        if solved.bias is not None:
            solved.bias.copy_(solution[-1].reshape(solved.bias.shape))
    return solved


def _reached(losses: Sequence[float], threshold: float) -> Optional[int]:
    return next((epoch for epoch, loss in enumerate(losses, 1) if loss <= threshold), None)


def compare(
    model: Any,
    X: Any,
    y: Any,
    optimizers: Sequence[OptimizerSpec] = ("sgd", "adam"),
    *,
    lrs: Any = None,
    epochs: int = 100,
    seed: int = 0,
    tol: float = DEFAULT_TOL,
    loss: Any = "mse",
    validation_data: Any = None,
    reference: bool = True,
    fit_kwargs: Optional[Dict[str, Any]] = None,
) -> Comparison:
    """Fit ``model`` to (X, y) once per optimizer, from the same seed, and tabulate the outcomes.

    ``optimizers`` are registry names or dicts (``{"name": "sgd", "momentum": 0.9}``);
    ``lrs`` is one lr for all, one per optimizer, or a dict by name (an optimizer's
    own "lr" wins; None leaves each at fit's default). ``tol`` judges "reached": see
    :class:`Comparison`. With ``validation_data=(X_val, y_val)`` each row also has
    the returned model's loss there. ``fit_kwargs`` go to every :func:`pyfit.fit`
    (``batch_size``, ``model_kwargs``, ...). ``reference=True`` adds the closed-form
    least-squares row where the model and loss allow one.

    >>> import torch, pyfit
    >>> X = torch.rand(40, 2, generator=torch.Generator().manual_seed(0)); y = X @ torch.tensor([2.0, -1.0]) + 0.5
    >>> table = pyfit.compare("linear", X, y, ["sgd", {"name": "sgd", "momentum": 0.9}], lrs=0.5, epochs=300)
    >>> [row.label for row in table.rows]
    ['sgd', 'sgd momentum=0.9', 'least squares (closed form)']
    >>> table.rows[1].final_loss < table.rows[0].final_loss
    True
    """
    from .fit import fit

    check_positive("tol", tol)
    specs = [_spec(optimizer) for optimizer in optimizers]
    if not specs:
        raise InputError("compare needs at least one optimizer")
    fit_kwargs = dict(fit_kwargs or {})
    taken = {"optimizer", "lr", "epochs", "seed", "loss", "callbacks"} & set(fit_kwargs)
    if taken:
        raise InputError(f"fit_kwargs may not set {', '.join(sorted(taken))}: compare sets them "
                         "(use its own arguments)")
    X, y = check_fit_data(X, y)
    loss_fn = as_loss(loss)
    val = check_fit_data(*validation_data) if validation_data is not None else None
    lrs_used = [_lr_for(index, spec, lrs, len(specs)) for index, spec in enumerate(specs)]
    for spec, lr in zip(specs, lrs_used):
        # bad settings fail here, before any fit; and the first optimizer built in a process pays
        # for torch's lazy imports, which would otherwise count against the first row's seconds
        _warm_up(spec, lr)
    rows: List[ComparisonRow] = []
    epoch_ends: List[List[float]] = []  # per optimizer row: seconds from its fit's start to each epoch's end
    fitted_model = None
    start_loss = math.nan
    for spec, label, lr in zip(specs, _labels(specs), lrs_used):
        settings = {k: v for k, v in spec.items() if k not in ("name", "lr")}
        clock = _EpochClock()
        fresh = copy.deepcopy(model) if isinstance(model, nn.Module) else model  # every fit starts alike
        result = fit(fresh, X, y, loss=loss, optimizer=spec["name"], lr=lr, epochs=epochs, seed=seed,
                     callbacks=[clock], **fit_kwargs, **settings)
        used_lr = result.history["lr"][0] if result.history["lr"] else lr
        history = result.history
        if history["loss"]:
            start_loss = history["loss"][0] if math.isnan(start_loss) else max(start_loss, history["loss"][0])
        val_loss = history["val_loss"][-1] if history.get("val_loss") else (
            _loss_of(result.model, loss_fn, *val) if val is not None else None)
        rows.append(ComparisonRow(
            label=label, optimizer=spec["name"], settings={"lr": used_lr, **settings},
            final_loss=_loss_of(result.model, loss_fn, X, y), epochs=result.epochs, seconds=result.seconds,
            stop_reason=result.stop_reason, val_loss=val_loss, losses=list(history["loss"]), result=result))
        epoch_ends.append(clock.ends)
        fitted_model = result.model
    solved, seconds = None, 0.0
    if reference:
        started = time.perf_counter()
        solved = _least_squares(fitted_model, loss_fn, X, y)
        seconds = time.perf_counter() - started
    if solved is not None:
        rows.append(ComparisonRow(
            label=REFERENCE_LABEL, optimizer=None, settings={"method": "lstsq"},
            final_loss=_loss_of(solved, loss_fn, X, y), epochs=0, seconds=seconds, stop_reason="exact",
            val_loss=_loss_of(solved, loss_fn, *val) if val is not None else None))
    finite = [row.final_loss for row in rows if math.isfinite(row.final_loss)]
    target = min(finite) if finite else math.nan
    threshold = target + tol * (start_loss - target) if math.isfinite(start_loss) else target
    for row, ends in zip(rows, epoch_ends):  # the optimizer rows; the reference comes last
        # the curve holds losses before each epoch's updates: the returned model's counts as one more
        reached = _reached(row.losses[1:] + [row.final_loss], threshold) if math.isfinite(target) else None
        if reached is not None and reached <= len(ends):
            row.epochs_to_tol, row.seconds_to_tol = reached, ends[reached - 1]
    model_name = model if isinstance(model, str) else type(model).__name__
    loss_name = loss if isinstance(loss, str) else type(loss_fn).__name__
    return Comparison(rows=rows, model=model_name, loss=loss_name, tol=tol, target_loss=target,
                      start_loss=start_loss)
