"""``pyfit.Regressor``: pyfit's fit as a scikit-learn estimator (Pipeline, GridSearchCV, clone).

scikit-learn is an optional extra (``pip install pyfit[sklearn]``); this module
imports it, and ``pyfit`` imports this module only when ``pyfit.Regressor`` is
first used.

Nested parameters: the dict-valued parameters ``model_kwargs``,
``optimizer_kwargs`` and ``loss_kwargs`` expose their keys as
``<dict>__<key>``, so ``set_params(model_kwargs__degree=3)`` and a GridSearchCV
grid ``{"reg__optimizer_kwargs__momentum": [0.0, 0.9]}`` work; setting one key
replaces the dict with an updated copy, never changing the caller's dict.
"""

from __future__ import annotations

import numbers
import warnings
from typing import Any, Dict, Optional, Union

import numpy as np
import torch
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted, validate_data

from . import defaults
from .callbacks import EarlyStopping
from .checkpoint import registry_name
from .errors import InputError
from .fit import apply_optimizer_settings, optimizer_setting_changes
from .fit import fit as _fit
from .predict import predict as _predict
from .registry import OPTIMIZERS, SCHEDULERS
from .scaling import parameters_in_data_units
from .validation import check_optimizer_settings

NESTED = ("model_kwargs", "optimizer_kwargs", "loss_kwargs")
_DTYPES = [np.float64, np.float32]  # float32 stays float32; everything else becomes float64


class Regressor(RegressorMixin, BaseEstimator):
    """Fit a pyfit model with scikit-learn's interface; ``score`` is R².

    ``model``, ``loss``, ``optimizer`` and ``scheduler`` are registry names;
    ``warm_start=True`` makes ``fit`` continue from the fitted model and
    optimizer for ``epochs`` more epochs. ``early_stopping=True`` holds out
    ``validation_fraction`` of the rows (drawn with ``random_state``), stops when
    their loss has not improved for ``n_iter_no_change`` epochs and keeps the best
    epoch's parameters, as ``SGDRegressor`` does (``validation_scores_`` is the
    held-out R² per epoch); an integer is a patience on the training loss instead.

    The defaults give a good fit with no settings, as ``LinearRegression()``
    does: the features are standardized (``standardize=True``; the statistics
    live in the fitted model, and ``coef_`` and ``intercept_`` are in the data's
    units), ``lr="auto"`` picks the step (see :func:`pyfit.fit`), and training
    stops once the loss improves by less than ``tol`` (relative) for
    ``n_iter_no_change`` epochs, within ``epochs`` (None: 10,000 for SGD on a
    linear or polynomial model under mse/sse, else 1,000), like
    ``SGDRegressor``'s ``tol`` and ``max_iter``. After ``fit``: ``coef_`` and
    ``intercept_`` (linear and polynomial models), ``loss_curve_``, ``n_iter_``,
    ``lr_`` and ``warnings_`` (each also issued as a ConvergenceWarning);
    ``verbose=True`` shows a progress bar and prints how the fit ended.

    >>> import numpy as np, pyfit
    >>> X = np.linspace(0, 100, 50).reshape(-1, 1); y = 3 * X[:, 0] + 0.8
    >>> reg = pyfit.Regressor(random_state=0).fit(X, y)
    >>> round(reg.score(X, y), 4), round(float(reg.coef_[0]), 3), round(float(reg.intercept_), 3)
    (1.0, 3.0, 0.8)
    """

    def __init__(self, model: str = defaults.MODEL, loss: str = defaults.LOSS, optimizer: str = defaults.OPTIMIZER,
                 lr: Union[float, str] = defaults.LR, epochs: Optional[int] = None, batch_size: Optional[int] = None,
                 shuffle: bool = False, random_state: Any = None, scheduler: Optional[str] = None,
                 early_stopping: Union[bool, int, None] = None, warm_start: bool = False,
                 model_kwargs: Optional[Dict[str, Any]] = None, optimizer_kwargs: Optional[Dict[str, Any]] = None,
                 loss_kwargs: Optional[Dict[str, Any]] = None, standardize: bool = True,
                 tol: Optional[float] = defaults.TOL, n_iter_no_change: int = defaults.N_ITER_NO_CHANGE, verbose: bool = False,
                 validation_fraction: float = 0.1):
        self.model = model
        self.loss = loss
        self.optimizer = optimizer
        self.lr = lr
        self.epochs = epochs
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.random_state = random_state
        self.scheduler = scheduler
        self.early_stopping = early_stopping
        self.warm_start = warm_start
        self.model_kwargs = model_kwargs
        self.optimizer_kwargs = optimizer_kwargs
        self.loss_kwargs = loss_kwargs
        self.standardize = standardize
        self.tol = tol
        self.n_iter_no_change = n_iter_no_change
        self.verbose = verbose
        self.validation_fraction = validation_fraction

    # -- nested parameters -----------------------------------------------------
    def get_params(self, deep: bool = True) -> Dict[str, Any]:
        params = super().get_params(deep=deep)
        if deep:
            for name in NESTED:
                value = getattr(self, name, None)
                if isinstance(value, dict):
                    params.update({f"{name}__{key}": v for key, v in value.items()})
        return params

    def set_params(self, **params: Any) -> "Regressor":
        nested: Dict[str, Dict[str, Any]] = {}
        plain = {}
        for key, value in params.items():
            head, sep, sub = key.partition("__")
            if sep and head in NESTED:
                nested.setdefault(head, {})[sub] = value
            else:
                plain[key] = value
        super().set_params(**plain)  # a whole dict first, so its keys set alongside still apply
        for head, updates in nested.items():
            current = getattr(self, head)
            setattr(self, head, {**(current if isinstance(current, dict) else {}), **updates})
        return self

    # -- fitting -----------------------------------------------------------------
    def _seed(self) -> Optional[int]:
        if self.random_state is None:
            return None
        if isinstance(self.random_state, numbers.Integral):
            return int(self.random_state)
        return int(check_random_state(self.random_state).randint(0, 2**31 - 1))

    def _train(self, X: np.ndarray, y: np.ndarray, epochs: int, fresh: bool) -> None:
        X_t = torch.tensor(X)  # a copy: read-only or memory-mapped input stays untouched
        y_t = torch.tensor(y, dtype=X_t.dtype)
        held_out = self.early_stopping is True and fresh
        if held_out:
            callbacks = [EarlyStopping(patience=self.n_iter_no_change, monitor="val_loss", restore_best=True)]
        else:
            # a continuing fit has no held-out rows: a patience on its training loss
            patience = self.n_iter_no_change if self.early_stopping is True else self.early_stopping
            callbacks = [EarlyStopping(patience=patience)] if patience else []
        common = dict(loss=self.loss, epochs=epochs, batch_size=self.batch_size, shuffle=self.shuffle,
                      callbacks=callbacks, progress=True if self.verbose else False, tol=self.tol,
                      n_iter_no_change=self.n_iter_no_change, loss_kwargs=dict(self.loss_kwargs or {}))
        seed = self._seed()
        if fresh:
            result = _fit(self.model, X_t, y_t, optimizer=self.optimizer, lr=self.lr, seed=seed,
                          scheduler=self.scheduler, model_kwargs=dict(self.model_kwargs or {}),
                          standardize=bool(self.standardize),
                          **({"validation_split": self.validation_fraction, "metrics": ["r2"]} if held_out else {}),
                          **common, **dict(self.optimizer_kwargs or {}))
            self.history_ = {key: list(values) for key, values in result.history.items()}
            self._fitted_with = {"optimizer": self.optimizer, "scheduler": self.scheduler}
        else:
            changes = self._setting_changes()
            before = [dict(group) for group in self.optimizer_.param_groups], dict(self.optimizer_.defaults)
            apply_optimizer_settings(self.optimizer_, changes)
            try:
                # a different seed per continuation, so shuffled epochs do not repeat an earlier order
                result = _fit(self.model_, X_t, y_t, optimizer=self.optimizer_, scheduler=self.scheduler_,
                              seed=None if seed is None else seed + self.n_iter_, **common)
            except BaseException:  # a refusal leaves the optimizer as it was
                for group, old in zip(self.optimizer_.param_groups, before[0]):
                    group.update(old)
                self.optimizer_.defaults.clear()
                self.optimizer_.defaults.update(before[1])
                raise
            for key, values in result.history.items():
                self.history_.setdefault(key, []).extend(values)
        self.model_, self.optimizer_, self.scheduler_ = result.model, result.optimizer, result.scheduler
        self.n_iter_ = len(self.history_["loss"])
        self.stop_reason_, self.backend_ = result.stop_reason, result.backend
        self.loss_curve_ = list(self.history_["loss"])
        if "val_r2" in self.history_:
            self.validation_scores_ = list(self.history_["val_r2"])
            self.best_validation_score_ = result.scores["val_r2"]  # of the model kept
        self.lr_, self.warnings_ = result.lr_chosen, list(result.warnings)
        in_data_units = parameters_in_data_units(self.model_)
        if in_data_units is not None:
            weight, bias = (t.numpy() if t is not None else None for t in in_data_units)
            single = weight.shape[0] == 1 and y.ndim == 1
            self.coef_ = weight[0] if single else weight
            self.intercept_ = (0.0 if single else np.zeros(weight.shape[0])) if bias is None else \
                (float(bias[0]) if single else bias)
        else:  # coefficients mean nothing for other models: no attribute, as scikit-learn does
            for name in ("coef_", "intercept_"):
                self.__dict__.pop(name, None)
        if self.verbose:
            print(f"pyfit.Regressor: {result.stop_reason} after {self.n_iter_} epochs ({result.stop_detail}); "
                  f"lr {result.lr_chosen:.4g} ({result.lr_reason}); final loss {result.final_loss:.6g}")
        if result.stop_reason == "non_finite":
            warnings.warn(f"pyfit.Regressor: {result.stop_detail}", RuntimeWarning, stacklevel=3)
        else:
            for message in result.warnings:
                warnings.warn(f"pyfit.Regressor: {message}", ConvergenceWarning, stacklevel=3)

    def _setting_changes(self) -> Dict[str, Any]:
        """lr and optimizer settings changed (set_params) since the fitted optimizer was built, to apply to it.

        Another optimizer or scheduler cannot take over a fit half-way; that, and an
        lr its scheduler would override, is refused with what to do instead.
        """
        for what, registry in (("optimizer", OPTIMIZERS), ("scheduler", SCHEDULERS)):
            name = getattr(self, what)
            before = getattr(self, "_fitted_with", {}).get(what, name)
            if (name is None) != (before is None) or (name is not None and
                                                      registry_name(registry, name) != registry_name(registry, before)):
                raise InputError(f"pyfit.Regressor: {what}={name!r}, but the fitted model continues with "
                                 f"{what}={before!r}; call fit with warm_start=False (or on a clone) to change it")
        # lr="auto" keeps the step the fit started with
        settings = {**({} if self.lr in (None, "auto") else {"lr": self.lr}), **dict(self.optimizer_kwargs or {})}
        check_optimizer_settings(settings)
        return optimizer_setting_changes(self.optimizer_.param_groups, settings, self.scheduler_ is not None,
                                         "pyfit.Regressor continuing its fit")

    def fit(self, X: Any, y: Any) -> "Regressor":
        """Fit for ``epochs`` epochs (more epochs on the fitted model with ``warm_start=True``)."""
        continuing = self.warm_start and hasattr(self, "model_")
        X, y = validate_data(self, X, y, y_numeric=True, dtype=_DTYPES, reset=not continuing)
        self._train(X, y, self.epochs, fresh=not continuing)
        return self

    def partial_fit(self, X: Any, y: Any, epochs: int = 1) -> "Regressor":
        """``epochs`` more epochs on (X, y), keeping the model and the optimizer's state."""
        first = not hasattr(self, "model_")
        X, y = validate_data(self, X, y, y_numeric=True, dtype=_DTYPES, reset=first)
        self._train(X, y, epochs, fresh=first)
        return self

    def predict(self, X: Any) -> np.ndarray:
        """The model's predictions for X, as float64 (N,)."""
        check_is_fitted(self, "model_")
        X = validate_data(self, X, reset=False, dtype=_DTYPES)
        return _predict(self.model_, torch.tensor(X)).double().cpu().numpy()
