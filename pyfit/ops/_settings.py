"""The codes and the settings vector that the linear fit op takes, in one table.

``linear_fit_`` takes its loss and optimizer as integer codes and every optimizer
hyperparameter as one float vector with a fixed layout, ``SETTING_NAMES``; the C++
side reads the same layout into one struct (csrc: ``OptimizerSettings``).
``settings_vector`` builds that vector from a mapping shaped like a torch param
group, so the group of a ``torch.optim.Adam`` (or of pyfit's optimizers) can be
passed as it is. ``state_names`` says which state tensors the op keeps per param,
by torch's names, in the order the op takes them.
"""

from __future__ import annotations

import numbers
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from torch import Tensor

# loss codes; the value and the derivative factor of the residual r = pred - target
SQUARED, ABSOLUTE, HUBER = 0, 1, 2
LOSS_CODES: Dict[str, int] = {"squared": SQUARED, "absolute": ABSOLUTE, "huber": HUBER}

# reduction codes: the mean over rows * outputs, or the sum
MEAN, SUM = 0, 1
REDUCTION_CODES: Dict[str, int] = {"mean": MEAN, "sum": SUM}

# optimizer codes; AdamW is ADAM with decoupled_weight_decay = 1
SGD, ADAM, RMSPROP, ADAGRAD = 0, 1, 2, 3
OPTIMIZER_CODES: Dict[str, int] = {"sgd": SGD, "adam": ADAM, "rmsprop": RMSPROP, "adagrad": ADAGRAD}

# the settings vector's layout: position i holds SETTING_NAMES[i] (booleans as 0/1,
# a setting the optimizer does not take as 0)
SETTING_NAMES: Tuple[str, ...] = (
    "momentum", "dampening", "nesterov", "weight_decay", "maximize",
    "beta1", "beta2", "eps", "amsgrad", "decoupled_weight_decay",
    "alpha", "centered", "lr_decay",
)
SETTING_POSITIONS: Dict[str, int] = {name: i for i, name in enumerate(SETTING_NAMES)}

# each optimizer's settings and their defaults in torch.optim (beta1 and beta2 come
# from torch's ``betas`` pair)
_DEFAULTS: Dict[int, Dict[str, float]] = {
    SGD: {"momentum": 0.0, "dampening": 0.0, "nesterov": 0.0, "weight_decay": 0.0, "maximize": 0.0},
    ADAM: {"beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.0, "amsgrad": 0.0,
           "maximize": 0.0, "decoupled_weight_decay": 0.0},
    RMSPROP: {"alpha": 0.99, "eps": 1e-8, "weight_decay": 0.0, "momentum": 0.0, "centered": 0.0,
              "maximize": 0.0},
    ADAGRAD: {"lr_decay": 0.0, "eps": 1e-10, "weight_decay": 0.0, "maximize": 0.0},
}

# every name that sets a hyperparameter of one of these optimizers in a torch param
# group: one of them that the chosen optimizer does not take means the group belongs
# to another optimizer. Other keys (params, lr, foreach, fused, a scheduler's
# initial_lr or max_momentum, Adagrad's initial_accumulator_value, which only sets
# the initial state) do not change the update and are not read.
_GROUP_NAMES = frozenset(name for defaults in _DEFAULTS.values() for name in defaults) - {
    "beta1", "beta2"} | {"betas"}


def code_of(kind: str, name: str, codes: Mapping[str, int]) -> int:
    """The code of ``name`` in ``codes``; a ValueError that names it and lists the choices otherwise."""
    try:
        return codes[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown {kind} {name!r}: expected one of {', '.join(codes)}") from None


def _number(name: str, value: Any) -> float:
    if isinstance(value, Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, bool) or isinstance(value, numbers.Real):
        return float(value)
    raise ValueError(f"setting {name} must be a number, got {value!r}")


def settings_vector(optimizer: int, group: Optional[Mapping[str, Any]] = None) -> List[float]:
    """The settings vector of optimizer code ``optimizer`` from a torch-style param group.

    Missing settings take torch's defaults; ``betas`` gives beta1 and beta2.

    >>> from pyfit.ops import _settings
    >>> v = _settings.settings_vector(_settings.ADAM, {"betas": (0.8, 0.99), "lr": 0.1})
    >>> v[_settings.SETTING_POSITIONS["beta1"]], v[_settings.SETTING_POSITIONS["eps"]]
    (0.8, 1e-08)
    """
    defaults = _DEFAULTS[optimizer]
    group = {} if group is None else group
    others = sorted(key for key in group if key in _GROUP_NAMES and key not in defaults
                    and not (key == "betas" and "beta1" in defaults))
    if others:
        name = next(n for n, code in OPTIMIZER_CODES.items() if code == optimizer)
        raise ValueError(f"{name} takes no setting {', '.join(others)}: its settings are "
                         f"{', '.join(_group_names(optimizer))}")
    values = dict(defaults)
    for key in defaults:
        if key in group:
            values[key] = _number(key, group[key])
    if "beta1" in defaults and "betas" in group:
        betas = group["betas"]
        if len(betas) != 2:
            raise ValueError(f"setting betas must be a pair (beta1, beta2), got {betas!r}")
        values["beta1"], values["beta2"] = (_number("betas", b) for b in betas)
    vector = [0.0] * len(SETTING_NAMES)
    for key, value in values.items():
        vector[SETTING_POSITIONS[key]] = value
    return vector


def _group_names(optimizer: int) -> List[str]:
    names = [n for n in _DEFAULTS[optimizer] if n not in ("beta1", "beta2")]
    return (["betas"] if "beta1" in _DEFAULTS[optimizer] else []) + names


def state_names(optimizer: int, settings: Sequence[float]) -> Tuple[str, ...]:
    """The state tensors the op keeps for each param, by torch.optim's names, in the op's order.

    >>> from pyfit.ops import _settings
    >>> _settings.state_names(_settings.ADAM, _settings.settings_vector(_settings.ADAM, {"amsgrad": True}))
    ('exp_avg', 'exp_avg_sq', 'max_exp_avg_sq')
    """
    def on(name: str) -> bool:
        return settings[SETTING_POSITIONS[name]] != 0

    if optimizer == SGD:
        return ("momentum_buffer",) if on("momentum") else ()
    if optimizer == ADAM:
        return ("exp_avg", "exp_avg_sq") + (("max_exp_avg_sq",) if on("amsgrad") else ())
    if optimizer == RMSPROP:
        return (("square_avg",) + (("momentum_buffer",) if settings[SETTING_POSITIONS["momentum"]] > 0 else ())
                + (("grad_avg",) if on("centered") else ()))
    return ("sum",)
