"""The one home of pyfit's input checks.

Every check here raises before anything is changed, with a message that names
the problem and gives the expected and the actual value.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Optional, Tuple

import numpy as np
import torch
from torch import Tensor

from .errors import InputError


def to_tensor(data: Any, name: str, dtype: Optional[torch.dtype] = None) -> Tensor:
    """Turn a tensor, numpy array or (nested) list of numbers into a floating tensor.

    Floating tensors keep their dtype unless ``dtype`` is given; everything else
    becomes ``dtype`` or torch's default dtype.
    """
    if isinstance(data, Tensor):
        tensor = data.detach()
    else:
        try:
            array = np.asarray(data)
        except (ValueError, TypeError) as error:
            raise TypeError(f"{name} must be numeric (a tensor, an array or a list of numbers): {error}") from None
        if array.dtype == object or not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
            raise TypeError(
                f"{name} must be numeric (a tensor, an array or a list of numbers), "
                f"got values of type {array.dtype if array.dtype != object else _first_bad_type(array)}"
            )
        tensor = torch.from_numpy(np.ascontiguousarray(array))
    if tensor.is_complex():
        raise TypeError(f"{name} must be real-valued, got dtype {tensor.dtype}")
    target = dtype or (tensor.dtype if tensor.is_floating_point() and isinstance(data, Tensor)
                       else torch.get_default_dtype())
    return tensor.to(target)


def _first_bad_type(array: np.ndarray) -> str:
    for value in array.reshape(-1):
        if not isinstance(value, (numbers.Number, bool)):
            return f"{type(value).__name__} ({value!r})"
    return "object"


def _check_finite(tensor: Tensor, name: str) -> None:
    # One cheap pass: NaN and inf survive a sum, so only a non-finite sum needs the
    # slower search that says where the bad value is.
    if tensor.numel() == 0 or torch.isfinite(tensor.sum()):
        return
    bad = (~torch.isfinite(tensor)).nonzero()
    if bad.numel() == 0:  # the sum overflowed, the values are fine
        return
    where = tuple(int(i) for i in bad[0])
    value = tensor[where].item()
    location = f"row {where[0]}" + (f", column {where[1]}" if len(where) > 1 else "")
    raise InputError(f"{name} contains {value} at {location} ({bad.shape[0]} non-finite values in all)")


def check_fit_data(X: Any, y: Any, dtype: Optional[torch.dtype] = None) -> Tuple[Tensor, Tensor]:
    """Checked (N, D) features and (N,) or (N, K) targets for a fit.

    1-D X is taken as N samples of one feature.
    """
    X = to_tensor(X, "X", dtype)
    y = to_tensor(y, "y", dtype or X.dtype)
    if X.dim() == 1:
        X = X.unsqueeze(1)
    if X.dim() != 2:
        raise InputError(f"X must have 1 or 2 dimensions (samples, features), got shape {tuple(X.shape)}")
    if y.dim() not in (1, 2):
        raise InputError(f"y must have 1 or 2 dimensions (samples[, outputs]), got shape {tuple(y.shape)}")
    if X.shape[0] != y.shape[0]:
        raise InputError(f"X and y must have the same number of samples: X has {X.shape[0]}, y has {y.shape[0]}")
    if X.shape[0] == 0:
        raise InputError("X and y are empty: a fit needs at least one sample")
    if X.shape[1] == 0:
        raise InputError("X has no features: a fit needs at least one column")
    if y.dim() == 2 and y.shape[1] == 0:
        raise InputError("y has no outputs: a fit needs at least one target column")
    _check_finite(X, "X")
    _check_finite(y, "y")
    return X, y


def check_features(X: Tensor, expected: Optional[int], what: str = "the model") -> None:
    """Refuse X whose feature count differs from what the model takes."""
    if expected is not None and X.shape[1] != expected:
        raise InputError(f"X has {X.shape[1]} features, but {what} takes {expected}")


def check_outputs(y: Tensor, expected: Optional[int]) -> None:
    """Refuse targets whose column count differs from the model's outputs."""
    outputs = y.shape[1] if y.dim() == 2 else 1
    if expected is not None and expected != outputs:
        raise InputError(f"y has {outputs} output column(s), but the model gives {expected}")


def check_positive(name: str, value: Any) -> None:
    if not isinstance(value, numbers.Real) or isinstance(value, bool) or not math.isfinite(value) or value <= 0:
        raise InputError(f"{name} must be a finite number > 0, got {value!r}")


def check_non_negative(name: str, value: Any) -> None:
    if not isinstance(value, numbers.Real) or isinstance(value, bool) or not math.isfinite(value) or value < 0:
        raise InputError(f"{name} must be a finite number >= 0, got {value!r}")


def check_positive_int(name: str, value: Any, *, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
        raise InputError(f"{name} must be an integer >= 1, got {value!r}")


def check_optimizer_settings(settings: dict, *, as_torch: bool = False) -> None:
    """Hyperparameter checks common to every optimizer, plus SGD's own rules.

    With ``as_torch=True`` (an optimizer class that stands in for torch's) only
    what torch's optimizers refuse is refused, with pyfit's message: negative
    values, betas outside [0, 1), nesterov without momentum or with dampening. A
    number may be a 1-element tensor there, as in torch. Without it (the settings
    of a fit), every value must also be finite and lr > 0, since a fit at lr 0
    would do nothing.
    """
    def number(key: str) -> Any:
        value = settings[key]
        if isinstance(value, Tensor):
            if value.numel() != 1:
                raise InputError(f"{key} must be a number or a 1-element tensor, "
                                 f"got a tensor of shape {tuple(value.shape)}")
            return value.item()
        if not isinstance(value, numbers.Real) or isinstance(value, bool):
            raise InputError(f"{key} must be a number, got {type(value).__name__} {value!r}")
        return value

    # torch leaves dampening unchecked; a fit refuses a negative one
    checked = ("lr", "momentum", "weight_decay", "alpha", "lr_decay", "eps", "initial_accumulator_value")
    if not as_torch:
        checked += ("dampening",)
    for key in checked:
        if settings.get(key) is None:
            continue
        value = number(key)
        if not as_torch:
            (check_positive if key == "lr" else check_non_negative)(key, value)
        elif value < 0:
            raise InputError(f"{key} must be a number >= 0, got {settings[key]!r}")
    if "betas" in settings:
        betas = tuple(settings["betas"])
        values = [b.item() if isinstance(b, Tensor) and b.numel() == 1 else b for b in betas]
        if len(values) != 2 or not all(isinstance(b, numbers.Real) and not isinstance(b, bool) and 0 <= b < 1
                                       for b in values):
            raise InputError(f"betas must be two numbers in [0, 1), got {settings['betas']!r}")
    if settings.get("nesterov"):
        if not settings.get("momentum"):
            raise InputError("nesterov=True needs momentum > 0, got momentum="
                             f"{settings.get('momentum', 0)!r}")
        if settings.get("dampening", 0):
            raise InputError(f"nesterov=True needs dampening=0, got dampening={settings['dampening']!r}")


def check_checkpoint_settings(checkpoint: Any, every: Any, resume_from: Any) -> None:
    """fit's checkpoint arguments: a path in an existing directory, and a period only with a path."""
    import os

    check_positive_int("checkpoint_every", every, allow_none=True)
    if every is not None and checkpoint is None:
        raise InputError(f"checkpoint_every={every} needs checkpoint=PATH to say where to save")
    for name, path in (("checkpoint", checkpoint), ("resume_from", resume_from)):
        if path is not None and not isinstance(path, (str, os.PathLike)):
            raise InputError(f"{name} must be a file path, got {type(path).__name__} {path!r}")
    if checkpoint is not None:
        directory = os.path.dirname(os.path.abspath(os.fspath(checkpoint)))
        if not os.path.isdir(directory):
            raise InputError(f"checkpoint={os.fspath(checkpoint)!r}: the directory {directory!r} does not exist")


def check_resume_settings(path: Any, saved: dict, current: dict, saved_epoch: int, epochs: int) -> None:
    """Refuse to resume a fit with settings that would change its course, naming each difference."""
    import os

    where = os.fspath(path)
    if saved_epoch > epochs:
        raise InputError(f"{where!r} already holds {saved_epoch} epochs, more than epochs={epochs}; "
                         "epochs is the total to reach")
    different = [f"{key}: saved {saved.get(key)!r}, now {value!r}" for key, value in current.items()
                 if saved.get(key) != value]
    if different:
        raise InputError(f"cannot resume {where!r} exactly with different settings ({'; '.join(different)}); "
                         "pass the settings it was fit with")


def check_fit_keywords(optimizer: Any, extra: dict, fit_parameters: list) -> None:
    """Refuse a keyword that is neither a parameter of ``fit`` nor a setting of the chosen optimizer.

    Extra keywords of ``fit`` go to the optimizer; a misspelt ``fit`` argument
    (``epoch=500``) would otherwise be blamed on the optimizer's constructor. An
    optimizer that takes ``**kwargs`` accepts every name, so nothing is refused.
    """
    import difflib
    import inspect

    from .registry import OPTIMIZERS

    if not extra or isinstance(optimizer, torch.optim.Optimizer):
        return
    factory = OPTIMIZERS.entry(optimizer).obj if isinstance(optimizer, str) else optimizer
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):  # a builtin or C callable: let it judge its own settings
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values()):
        return
    settings = [name for name, p in signature.parameters.items()
                if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
                and name != "params"]
    name = optimizer if isinstance(optimizer, str) else getattr(optimizer, "__name__", repr(optimizer))
    for key in extra:
        if key in settings:
            continue
        close = difflib.get_close_matches(key, fit_parameters, n=1) or \
            difflib.get_close_matches(key, settings, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else "."
        raise TypeError(f"fit() got an unexpected keyword argument {key!r}, which is not a setting of the "
                        f"optimizer {name!r} either{hint} fit's parameters: {', '.join(fit_parameters)}; "
                        f"{name}'s settings: {', '.join(settings)}")
