"""What a checkpoint must hold to be loaded, and what it must match to be restored.

Both checks run before anything is built or loaded, so a damaged file, or one
from another model or optimizer, is a CheckpointError that names the entry and
changes nothing of the user's.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Dict, Optional

import torch
from torch import nn

from .errors import CheckpointError, InputError
from .validation import check_optimizer_settings

# What loading a checkpoint reads, and the type each entry must have: a type (or a
# tuple of them; None allows None), or a nested schema for a dict. "?" marks an
# entry that may be absent. Lists of numbers and dicts of tensors are checked item by item.
_NUMBERS, _MAYBE_STR = "numbers", (str, type(None))
_SECTION = {"name": _MAYBE_STR, "class?": _MAYBE_STR}
SCHEMA: Dict[str, Any] = {
    "format_version": int,
    "epoch": int,
    "model": {**_SECTION, "args": (dict, type(None)), "dtype": _MAYBE_STR, "state": "tensors",
              "standardized?": bool},
    "optimizer": {**_SECTION, "settings": dict, "state": {"state": dict, "param_groups": "param_groups"}},
    "scheduler": (type(None), {**_SECTION, "kwargs": dict, "state": dict}),
    "history": {"loss": _NUMBERS, "lr": _NUMBERS},
    "config": dict,
    "rng": {"fit": (torch.Tensor, type(None)), "torch": torch.Tensor, "cuda?": list},
    "stop_reason?": _MAYBE_STR, "stop_detail?": str, "backend?": str,
    "versions?": dict, "plugins?": dict, "metadata?": (dict, type(None)),
}


def _type_names(expected: Any) -> str:
    options = expected if isinstance(expected, tuple) else (expected,)
    return " or ".join("None" if o is type(None) else "a dict" if isinstance(o, dict) else
                       o if isinstance(o, str) else o.__name__ for o in options)


def _matches(value: Any, expected: Any, path: str, where: str) -> bool:
    """Whether value has the expected type; a nested schema is checked (and may raise) on the spot."""
    if isinstance(expected, tuple):
        return any(_matches(value, option, path, where) for option in expected)
    if isinstance(expected, dict):
        if not isinstance(value, dict):
            return False
        _check_entries(value, expected, path, where + ".")
        return True
    if expected == _NUMBERS:
        return isinstance(value, list) and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                               for v in value)
    if expected == "tensors":
        return isinstance(value, dict) and all(isinstance(v, torch.Tensor) for v in value.values())
    if expected == "param_groups":
        return isinstance(value, list) and all(
            isinstance(g, dict) and isinstance(g.get("params"), list) and all(isinstance(i, int) for i in g["params"])
            for g in value)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool) and value >= 0
    return isinstance(value, expected)


_DESCRIPTIONS = {_NUMBERS: "a list of numbers", "tensors": "a dict of tensors",
                 "param_groups": "a list of param groups (dicts with a list of int 'params')"}


def _check_entries(payload: Dict[str, Any], schema: Dict[str, Any], path: str, prefix: str) -> None:
    for key, expected in schema.items():
        optional = key.endswith("?")
        key = key.rstrip("?")
        where = prefix + key
        if key not in payload:
            if optional:
                continue
            raise CheckpointError(f"{path!r} is not a complete pyfit checkpoint: the entry {where!r} is missing")
        value = payload[key]
        if not _matches(value, expected, path, where):
            wanted = _DESCRIPTIONS.get(expected) if isinstance(expected, str) else _type_names(expected)
            if expected is int:
                wanted = "an integer >= 0"
            raise CheckpointError(f"{path!r} is damaged: the entry {where!r} should be {wanted}, got "
                                  f"{type(value).__name__} {_short(value)}")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_schema(payload: Dict[str, Any], path: str) -> None:
    """Refuse a checkpoint dict that lacks an entry loading reads, holds one of the wrong type, optimizer
    settings the optimizer itself would refuse, or a non-finite number in the model or optimizer state."""
    _check_entries(payload, SCHEMA, path, "")
    optimizer = payload["optimizer"]
    _check_settings(optimizer["settings"], path, "optimizer.settings")
    for k, group in enumerate(optimizer["state"]["param_groups"]):
        _check_settings({key: v for key, v in group.items() if key != "params"}, path,
                        f"optimizer.state.param_groups[{k}]")
    for key, tensor in payload["model"]["state"].items():
        _check_finite(tensor, path, f"model.state.{key}")
    # none of torch's optimizers (SGD, Adam, AdamW, RMSprop, Adagrad, L-BFGS, ...) keeps an infinite value
    # in a state that a finite fit reached (pyfit's fits go back to the last finite epoch), so every
    # number there must be finite; a scheduler's state may hold inf (ReduceLROnPlateau's best) and is not checked
    for index, entries in optimizer["state"]["state"].items():
        if isinstance(entries, dict):
            for key, value in entries.items():
                _check_finite(value, path, f"optimizer.state.state[{index!r}].{key}")


def _check_settings(settings: Dict[str, Any], path: str, where: str) -> None:
    """Optimizer settings by the rules of torch's optimizers, every number finite (a scheduler's too)."""
    try:
        check_optimizer_settings(settings, as_torch=True)
    except InputError as error:
        raise CheckpointError(f"{path!r} is damaged: {where}.{error}") from None
    for key, value in settings.items():
        _check_finite(value, path, f"{where}.{key}")


def _check_finite(value: Any, path: str, where: str) -> None:
    """Refuse inf or NaN in a number or tensor, or in the lists and tuples of them (L-BFGS keeps lists)."""
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_finite(item, path, f"{where}[{i}]")
        return
    if isinstance(value, torch.Tensor):
        bad = value.is_floating_point() or value.is_complex()
        if bad and not bool(torch.isfinite(value).all()):
            found = value[~torch.isfinite(value)].reshape(-1)[0].item()
            raise CheckpointError(f"{path!r} is damaged: {where} holds a non-finite value ({found})")
        return
    if isinstance(value, numbers.Real) and not isinstance(value, bool) and not math.isfinite(value):
        raise CheckpointError(f"{path!r} is damaged: {where} must be finite, got {value!r}")


def check_restorable(payload: Dict[str, Any], path: str, *, model: nn.Module,
                     optimizer: Optional[torch.optim.Optimizer] = None) -> None:
    """Refuse a checkpoint whose states do not fit ``model`` and ``optimizer``, before either is changed.

    Checks what ``load_state_dict`` would refuse half-way (names and shapes of the
    model's tensors, the optimizer's param groups) and optimizer state whose
    tensors have another shape than their parameter's, which loading would take
    and the next step would trip over.
    """
    saved, own = payload["model"]["state"], model.state_dict()
    missing, unexpected = sorted(set(own) - set(saved)), sorted(set(saved) - set(own))
    if missing or unexpected:
        raise CheckpointError(f"{path!r} does not match this model: "
                              + "; ".join(part for part in (f"missing {', '.join(missing)}" if missing else "",
                                                            f"unexpected {', '.join(unexpected)}" if unexpected
                                                            else "") if part))
    for key, tensor in own.items():
        if tuple(saved[key].shape) != tuple(tensor.shape):
            raise CheckpointError(f"{path!r} does not match this model: {key} has shape "
                                  f"{tuple(saved[key].shape)} there, {tuple(tensor.shape)} here")
    if optimizer is None:
        return
    state = payload["optimizer"]["state"]
    groups = state["param_groups"]
    if len(groups) != len(optimizer.param_groups):
        raise CheckpointError(f"{path!r} does not match this optimizer: it has {len(groups)} param group(s), "
                              f"this optimizer {len(optimizer.param_groups)}")
    params = {}
    for k, (group, own_group) in enumerate(zip(groups, optimizer.param_groups)):
        if len(group["params"]) != len(own_group["params"]):
            raise CheckpointError(f"{path!r} does not match this optimizer: param group {k} holds "
                                  f"{len(group['params'])} tensors there, {len(own_group['params'])} here")
        params.update(zip(group["params"], own_group["params"]))
    # L-BFGS keeps its vectors flattened over all its params, under the first param's index
    flat = (sum(p.numel() for group in optimizer.param_groups for p in group["params"]),)
    for index, entries in state["state"].items():
        if index not in params or not isinstance(entries, dict):
            raise CheckpointError(f"{path!r} is damaged: optimizer state {index!r} belongs to no parameter")
        shape = tuple(params[index].shape)
        for key, value in entries.items():
            if isinstance(value, torch.Tensor) and value.dim() > 0 and tuple(value.shape) not in (shape, flat):
                raise CheckpointError(f"{path!r} does not match this optimizer: its {key} for parameter {index} "
                                      f"has shape {tuple(value.shape)}, the parameter {shape}")
