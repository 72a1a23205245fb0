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

from . import defaults
from .errors import InputError
from ._fusable import _declared_by_definer, squared_error_reduction
from .losses import as_loss, build_loss
from .models import LINEAR_IN_PARAMETERS, build_model
from .registry import OPTIMIZERS
from .validation import check_fit_data, check_positive

# an optimizer as compare takes it: a registry name, or {"name": ..., setting: value, ...}
OptimizerSpec = Union[str, Mapping[str, Any]]
REFERENCE_LABEL = "least squares (closed form)"


@dataclass
class ComparisonRow:
    """One optimizer's fit (or the closed-form reference, with ``optimizer=None``)."""

    label: str
    optimizer: Optional[str]
    settings: Dict[str, Any]
    final_loss: float  # the loss of the returned model on the X, y given to compare
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

    ``best_loss`` is the best loss in the table (the closed form's, when there is
    one); an optimizer reaches tol at the first epoch whose loss is within
    ``tol * (start_loss - best_loss)`` of it, ``start_loss`` being the loss at the
    shared initial parameters.
    """

    rows: List[ComparisonRow]
    model: str
    loss: str
    tol: float
    best_loss: float
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
                                  f"to the best loss {_float_text(self.best_loss)}.")

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


def _loss_of(pred: torch.Tensor, loss_fn: Any, y: torch.Tensor, model: Optional[nn.Module]) -> float:
    """The loss of predictions ``pred`` of targets ``y``."""
    pred = pred.reshape(y.shape) if pred.numel() == y.numel() else pred
    with torch.no_grad():
        return float(loss_fn(pred.to(y.dtype), y, model=model))


def _design_model(model: Any, X: torch.Tensor, y: torch.Tensor, model_kwargs: Dict[str, Any]) -> Optional[nn.Module]:
    """The model whose design matrix the closed form solves with, when it declares one:
    ``forward(X) == design_matrix(X) @ weight.T + bias``, read from the class that defines each."""
    if isinstance(model, str):
        kwargs = {"in_features": X.shape[1], **model_kwargs}
        if y.dim() == 2:
            kwargs.setdefault("out_features", y.shape[1])
        model = build_model(model, **kwargs)
    if not isinstance(model, nn.Module) or any(
            _declared_by_definer(type(model), method, LINEAR_IN_PARAMETERS) is not True
            for method in ("forward", "design_matrix")):
        return None
    return model


class _LeastSquares:
    """The closed-form least-squares fit of a design model: predictions for any X."""

    def __init__(self, model: nn.Module, X: torch.Tensor, y: torch.Tensor):
        self.model, self.has_bias = model, getattr(model, "bias", None) is not None
        targets = y.reshape(y.shape[0], -1).double()  # (N, K)
        # the minimum-norm solution through the SVD, dropping directions the data does not determine
        # (singular values below numpy's lstsq cut-off), so a rank-deficient design is solved too
        U, S, Vh = torch.linalg.svd(self._design(X), full_matrices=False)  # (N, R), (R,), (R, P[+1])
        keep = S > S.max() * max(U.shape[0], Vh.shape[1]) * torch.finfo(S.dtype).eps
        self.solution = Vh[keep].T @ ((U[:, keep].T @ targets) / S[keep, None])  # (P[+1], K)

    def _design(self, X: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            design = self.model.design_matrix(X.double()).double()  # (N, P), in float64 whatever the data
        if self.has_bias:
            design = torch.cat([design, torch.ones(design.shape[0], 1, dtype=design.dtype)], 1)
        return design

    def predict(self, X: torch.Tensor) -> torch.Tensor:
        return self._design(X) @ self.solution  # (N, K)


def _fit_row(model: Any, X: torch.Tensor, y: torch.Tensor, spec: Dict[str, Any], label: str, lr: Optional[float],
             *, epochs: int, seed: int, loss: Any, loss_fn: Any, val: Any, fit_kwargs: Dict[str, Any]):
    """One optimizer's fit as a table row, and when each of its epochs ended."""
    from .fit import fit

    settings = {k: v for k, v in spec.items() if k not in ("name", "lr")}
    clock = _EpochClock()
    result = fit(model, X, y, loss=loss, optimizer=spec["name"], lr=lr, epochs=epochs, seed=seed,
                 callbacks=[clock], **fit_kwargs, **settings)
    history = result.history
    if history.get("val_loss"):  # fit's own validation (a split it made)
        val_loss = history["val_loss"][-1]
    else:
        val_loss = _loss_of(result.predict(val[0]), loss_fn, val[1], result.model) if val is not None else None
    row = ComparisonRow(
        label=label, optimizer=spec["name"], settings={"lr": history["lr"][0] if history["lr"] else lr, **settings},
        final_loss=_loss_of(result.predict(X), loss_fn, y, result.model), epochs=result.epochs,
        seconds=result.seconds, stop_reason=result.stop_reason, val_loss=val_loss, losses=list(history["loss"]),
        result=result)
    return row, clock.ends


def _reference_row(model: Any, X: torch.Tensor, y: torch.Tensor, loss_fn: Any, val: Any,
                   model_kwargs: Dict[str, Any]) -> Optional[ComparisonRow]:
    """The closed-form least-squares row, where the loss declares a squared error (as the fused path
    reads it) and the model a design matrix; None elsewhere."""
    if squared_error_reduction(loss_fn) is None:
        return None
    design_model = _design_model(model, X, y, model_kwargs)
    if design_model is None:
        return None
    started = time.perf_counter()
    solved = _LeastSquares(design_model, X, y)
    seconds = time.perf_counter() - started
    val_loss = _loss_of(solved.predict(val[0]), loss_fn, val[1].double(), None) if val is not None else None
    return ComparisonRow(label=REFERENCE_LABEL, optimizer=None, settings={"method": "svd"},
                         final_loss=_loss_of(solved.predict(X), loss_fn, y.double(), None), epochs=0,
                         seconds=seconds, stop_reason="exact", val_loss=val_loss)


def _reached(losses: Sequence[float], threshold: float) -> Optional[int]:
    return next((epoch for epoch, loss in enumerate(losses, 1) if loss <= threshold), None)


def compare(
    model: Any,
    X: Any,
    y: Any,
    optimizers: Sequence[OptimizerSpec] = ("sgd", "adam"),
    *,
    lrs: Any = None,
    epochs: int = defaults.COMPARE_EPOCHS,
    seed: int = 0,
    tol: float = defaults.COMPARE_TOL,
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
    loss_fn = build_loss(loss, **(fit_kwargs.get("loss_kwargs") or {})) if isinstance(loss, str) else as_loss(loss)
    val = check_fit_data(*validation_data) if validation_data is not None else None
    lrs_used = [_lr_for(index, spec, lrs, len(specs)) for index, spec in enumerate(specs)]
    for spec, lr in zip(specs, lrs_used):
        # bad settings fail here, before any fit; and the first optimizer built in a process pays
        # for torch's lazy imports, which would otherwise count against the first row's seconds
        _warm_up(spec, lr)
    rows, epoch_ends = [], []  # epoch_ends: per optimizer, seconds from its fit's start to each epoch's end
    for spec, label, lr in zip(specs, _labels(specs), lrs_used):
        fresh = copy.deepcopy(model) if isinstance(model, nn.Module) else model  # every fit starts alike
        row, ends = _fit_row(fresh, X, y, spec, label, lr, epochs=epochs, seed=seed, loss=loss, loss_fn=loss_fn,
                             val=val, fit_kwargs=fit_kwargs)
        rows.append(row)
        epoch_ends.append(ends)
    if reference:
        solved = _reference_row(model, X, y, loss_fn, val, dict(fit_kwargs.get("model_kwargs") or {}))
        rows += [solved] if solved is not None else []
    start_loss = max((row.losses[0] for row in rows if row.losses), default=math.nan)
    target = min((row.final_loss for row in rows if math.isfinite(row.final_loss)), default=math.nan)
    threshold = target + tol * (start_loss - target) if math.isfinite(start_loss) else target
    for row, ends in zip(rows, epoch_ends):  # the optimizer rows; the reference comes last
        # the curve holds losses before each epoch's updates: the returned model's counts as one more
        reached = _reached(row.losses[1:] + [row.final_loss], threshold) if math.isfinite(target) else None
        if reached is not None and reached <= len(ends):
            row.epochs_to_tol, row.seconds_to_tol = reached, ends[reached - 1]
    model_name = model if isinstance(model, str) else type(model).__name__
    loss_name = loss if isinstance(loss, str) else type(loss_fn).__name__
    return Comparison(rows=rows, model=model_name, loss=loss_name, tol=tol, best_loss=target,
                      start_loss=start_loss)
