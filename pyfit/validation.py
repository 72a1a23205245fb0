"""The one home of pyfit's input checks.

Every check here raises before anything is changed, with a message that names
the problem and gives the expected and the actual value.
"""

from __future__ import annotations

import inspect
import math
import numbers
import os
import stat
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor

from .errors import InputError

# dtypes a fit computes in: the compiled ops run float32 and float64 only, and the
# reference must not fit what they refuse
FIT_DTYPES = (torch.float32, torch.float64)

# the history keeps a loss and an lr per epoch, about 115 bytes measured with the lists
# that hold them: this cap keeps it near 1 GB, so a long fit cannot exhaust memory
# before it finishes and saves
MAX_EPOCHS = 10_000_000

# what torch.Generator.manual_seed takes
SEED_RANGE = (-(2**63), 2**64 - 1)


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


def all_finite(tensor: Tensor) -> bool:
    """Whether every value of ``tensor`` is finite, in one cheap pass where it is: NaN and inf
    survive a sum, so only a non-finite sum (or one that overflowed) needs the exact check."""
    return tensor.numel() == 0 or bool(torch.isfinite(tensor.sum())) or bool(torch.isfinite(tensor).all())


def _check_finite(tensor: Tensor, name: str) -> None:
    if all_finite(tensor):
        return
    bad = (~torch.isfinite(tensor)).nonzero()
    where = tuple(int(i) for i in bad[0])
    value = tensor[where].item()
    location = f"row {where[0]}" + (f", column {where[1]}" if len(where) > 1 else "")
    raise InputError(f"{name} contains {value} at {location} ({bad.shape[0]} non-finite values in all)")


def check_same_on_every_rank(world: Any, X: Tensor, y: Tensor) -> None:
    """Under torchrun, refuse tensors that differ between the ranks: every rank passes all the rows and fits
    on its share of them, so a rank that passed only its own rows would fit on a share of a share."""
    summary = torch.tensor([float(X.shape[0]), float(X.numel()), float(y.numel()),
                            float(X.double().sum()), float(X.double().abs().sum()),
                            float(y.double().sum()), float(y.double().abs().sum())], dtype=torch.float64)
    seen = world.gather(summary, "the data each rank passed")
    differing = [rank for rank, other in enumerate(seen) if not torch.equal(other, seen[0])]
    if differing:
        raise InputError(
            f"under torchrun every rank passes the same X and y, all the rows, and fits on its own share of "
            f"them; rank {differing[0]} passed other data than rank 0 ({int(seen[differing[0]][0])} rows "
            f"against {int(seen[0][0])}, or other values). To give each rank only its own rows, pass a data "
            "file with pyfit.open_rows: each rank then reads its share of it")


def check_fit_data(X: Any, y: Any, dtype: Optional[torch.dtype] = None) -> Tuple[Tensor, Tensor]:
    """Checked (N, D) features and (N,) or (N, K) targets for a fit.

    1-D X is taken as N samples of one feature.
    """
    if dtype is not None and dtype not in FIT_DTYPES:
        raise InputError(f"the model's parameters are {dtype}; pyfit fits in float32 or float64: "
                         "convert the model with model.float() (or model.double())")
    X = to_tensor(X, "X", dtype)
    check_fit_dtype(X, "X")
    y = to_tensor(y, "y", dtype or X.dtype)
    check_fit_dtype(y, "y")
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


def check_fit_dtype(tensor: Tensor, name: str) -> None:
    """Refuse data in a dtype that a fit does not compute in (float16, bfloat16, ...)."""
    if tensor.dtype not in FIT_DTYPES:
        raise InputError(f"{name} has dtype {tensor.dtype}; pyfit fits in float32 or float64: pass "
                         f"{name}.float() (or {name}.double())")


def check_dtype(name: str, dtype: Any) -> None:
    """Refuse a dtype setting that a fit does not compute in."""
    if dtype not in FIT_DTYPES:
        raise InputError(f"{name} must be torch.float32 or torch.float64, got {dtype!r}")


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


def check_row_range(start: Any, stop: Any, rows: int) -> None:
    """Refuse a row range [start, stop) that is not whole numbers with 0 <= start <= stop <= rows."""
    for name, value in (("start", start), ("stop", stop)):
        if not isinstance(value, numbers.Integral) or isinstance(value, bool):
            raise InputError(f"{name} must be an integer, got {value!r}")
    if not 0 <= start <= stop <= rows:
        raise InputError(f"rows [{start}, {stop}) are not within the {rows} rows: expected "
                         f"0 <= start <= stop <= {rows}")


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


def check_epochs(epochs: Any) -> None:
    """An epoch count from 1 to MAX_EPOCHS."""
    check_positive_int("epochs", epochs)
    if epochs > MAX_EPOCHS:
        raise InputError(f"epochs must be at most {MAX_EPOCHS:,}, got {epochs:,}: the history keeps a loss and "
                         "an lr for every epoch (stop early with pyfit.EarlyStopping instead)")


def check_seed(seed: Any) -> Optional[int]:
    """None, or any integer (numpy's too) that torch.Generator.manual_seed takes, as an int."""
    if seed is None:
        return None
    if not isinstance(seed, numbers.Integral) or isinstance(seed, bool):
        raise InputError(f"seed must be an integer or None, got {type(seed).__name__} {seed!r}")
    low, high = SEED_RANGE
    if not low <= seed <= high:
        raise InputError(f"seed must be an integer from -2**63 to 2**64 - 1, got {int(seed)}")
    return int(seed)


def check_layer_sizes(name: str, sizes: Sequence[Any]) -> List[int]:
    """Layer widths as ints, each at least 1 (a width of 0 would cut every input off the output)."""
    checked = []
    for k, size in enumerate(sizes):
        if isinstance(size, bool) or not isinstance(size, numbers.Real) or size != int(size) or size < 1:
            raise InputError(f"{name}[{k}] must be an integer >= 1, got {size!r}")
        checked.append(int(size))
    return checked


def accepted_keywords(factory: Callable) -> Optional[set]:
    """The keyword names ``factory`` accepts (None: any, it takes ``**kwargs``).

    For a class, the first ``__init__`` in its MRO without ``**kwargs`` decides, so
    a subclass that passes ``**kwargs`` on to its base is judged by the base.
    """
    if inspect.isclass(factory):
        for klass in factory.__mro__:
            init = klass.__dict__.get("__init__")
            if init is None:
                continue
            if klass is object:  # no __init__ of its own anywhere: the class takes no arguments
                return set()
            parameters = inspect.signature(init).parameters.values()
            if not any(p.kind == p.VAR_KEYWORD for p in parameters):
                return {p.name for p in parameters if p.kind != p.VAR_POSITIONAL} - {"self"}
        return None
    try:
        parameters = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind == p.VAR_KEYWORD for p in parameters):
        return None
    return {p.name for p in parameters if p.kind != p.VAR_POSITIONAL}


def check_keywords(what: str, name: str, factory: Callable, kwargs: Dict[str, Any],
                   passed_by_fit: Sequence[str] = ()) -> None:
    """Refuse keyword arguments that the ``what`` registered as ``name`` does not take, listing those it does."""
    accepted = accepted_keywords(factory)
    if accepted is None:
        return
    accepted -= set(passed_by_fit)
    unknown = sorted(set(kwargs) - accepted)
    if unknown:
        import difflib

        close = difflib.get_close_matches(unknown[0], sorted(accepted), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise InputError(f"the {what} {name!r} takes no argument {unknown[0]!r}{hint}; it takes: "
                         f"{', '.join(sorted(accepted)) or 'none'}")


# scheduler settings that are counts of epochs (steps) and must be >= 1, and factors that must be > 0
_SCHEDULER_COUNTS = ("step_size", "T_max", "T_0", "T_mult", "total_steps", "steps_per_epoch", "step_size_up")
_SCHEDULER_FACTORS = ("gamma",)


def check_scheduler_settings(settings: Dict[str, Any]) -> None:
    """The scheduler settings whose meaning every scheduler shares: epoch counts and decay factors."""
    for key in _SCHEDULER_COUNTS:
        if settings.get(key) is not None:
            check_positive_int(key, settings[key])
    for key in _SCHEDULER_FACTORS:
        if settings.get(key) is not None:
            check_positive(key, settings[key])
    if settings.get("eta_min") is not None:
        check_non_negative("eta_min", settings["eta_min"])


def check_checkpoint_settings(checkpoint: Any, every: Any, resume_from: Any) -> None:
    """fit's checkpoint arguments: a writable file path, and a period only with a path."""
    check_positive_int("checkpoint_every", every, allow_none=True)
    if every is not None and checkpoint is None:
        raise InputError(f"checkpoint_every={every} needs checkpoint=PATH to say where to save")
    for name, path in (("checkpoint", checkpoint), ("resume_from", resume_from)):
        if path is not None and not isinstance(path, (str, os.PathLike)):
            raise InputError(f"{name} must be a file path, got {type(path).__name__} {path!r}")
    if checkpoint is not None:
        check_checkpoint_target(checkpoint, "checkpoint")


def _writable(path: str) -> bool:
    # the mode bits too: a file or folder marked read-only is left alone even by root,
    # for whom os.access always says yes
    return os.access(path, os.W_OK) and bool(stat.S_IMODE(os.stat(path).st_mode) & 0o222)


def check_checkpoint_target(path: Any, name: str = "checkpoint") -> None:
    """Refuse a checkpoint path that a save would fail on: a folder, a read-only file, a missing or read-only folder.

    A symlink is judged by the file it points to, which is where the save writes.
    """
    shown = os.fspath(path)
    target = os.path.realpath(shown)
    if os.path.isdir(target):
        raise InputError(f"{name} {shown!r} is a directory; give a file path, e.g. "
                         f"{os.path.join(shown, 'fit.pt')!r}")
    directory = os.path.dirname(target)
    if not os.path.isdir(directory):
        raise InputError(f"{name} {shown!r}: the directory {directory!r} does not exist")
    if not (_writable(directory) and os.access(directory, os.X_OK)):
        raise InputError(f"{name} {shown!r}: the directory {directory!r} is not writable")
    if os.path.exists(target) and not _writable(target):
        raise InputError(f"{name} {shown!r} is read-only; make it writable or save elsewhere")


def check_resume_settings(path: Any, saved: dict, current: dict, saved_epoch: int, epochs: int) -> None:
    """Refuse to resume a fit with settings that would change its course, naming each difference."""
    where = os.fspath(path)
    if saved_epoch > epochs:
        raise InputError(f"{where!r} already holds {saved_epoch} epochs, more than epochs={epochs}; "
                         "epochs is the total to reach")
    different = [f"{key}: saved {saved.get(key)!r}, now {value!r}" for key, value in current.items()
                 if saved.get(key) != value]
    if different:
        raise InputError(f"cannot resume {where!r} exactly with different settings ({'; '.join(different)}); "
                         "pass the settings it was fit with")


def check_fit_keywords(optimizer: Any, extra: Dict[str, Any], fit_parameters: Sequence[str]) -> None:
    """Refuse a keyword that is neither a parameter of ``fit`` nor a setting of the chosen optimizer.

    Extra keywords of ``fit`` go to the optimizer; a misspelt ``fit`` argument
    (``epoch=500``) would otherwise be blamed on the optimizer's constructor. An
    optimizer that takes ``**kwargs`` accepts every name, so nothing is refused.
    """
    import difflib

    from .registry import OPTIMIZERS

    if not extra or isinstance(optimizer, torch.optim.Optimizer):
        return
    factory = OPTIMIZERS.entry(optimizer).obj if isinstance(optimizer, str) else optimizer
    accepted = accepted_keywords(factory) if callable(factory) else None
    if accepted is None:
        return
    settings = sorted(accepted - {"params"})
    name = optimizer if isinstance(optimizer, str) else getattr(optimizer, "__name__", repr(optimizer))
    for key in extra:
        if key in accepted:
            continue
        close = difflib.get_close_matches(key, list(fit_parameters), n=1) or \
            difflib.get_close_matches(key, settings, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else "."
        raise TypeError(f"fit() got an unexpected keyword argument {key!r}, which is not a setting of the "
                        f"optimizer {name!r} either{hint} fit's parameters: {', '.join(fit_parameters)}; "
                        f"{name}'s settings: {', '.join(settings)}")
