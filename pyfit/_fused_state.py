"""torch's optimizer state, as the fused linear loop reads and writes it.

The fused op takes each optimizer's state tensors param-major in a fixed layout
(``state_keys``) and a step count; ``fit`` keeps them where torch keeps them,
in ``optimizer.state[param]`` under torch's own names, created as torch's first
step creates them. So a fit can move between the fused and the autograd path,
and a checkpoint from either resumes on the other.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Tuple

import torch
from torch import Tensor
from torch.optim.optimizer import _get_scalar_dtype

from .ops import _settings

# optimizers whose state counts steps in state["step"] (SGD keeps only its momentum buffer)
_COUNTS_STEPS = ("adam", "rmsprop", "adagrad")


def settings_vector(optimizer: str, group: Mapping[str, Any]) -> List[float]:
    """Every setting of ``group`` that the fused update of ``optimizer`` reads, as the op's vector
    (all but the learning rate, which goes per epoch)."""
    return _settings.settings_vector(_settings.OPTIMIZER_CODES[optimizer], group)


def state_keys(optimizer: str, group: Mapping[str, Any]) -> Tuple[str, ...]:
    """torch's names of one param's state tensors, in the order the fused op takes them."""
    code = _settings.OPTIMIZER_CODES[optimizer]
    return _settings.state_names(code, _settings.settings_vector(code, group))


def has_state(optimizer: str, entries: Mapping[str, Any]) -> bool:
    """Whether a param's state holds history, as torch's step tells: SGD by its momentum buffer,
    the others by any entry (torch fills an empty state on the first step)."""
    if optimizer == "sgd":
        return entries.get("momentum_buffer") is not None
    return len(entries) > 0


def counts_steps(optimizer: str) -> bool:
    return optimizer in _COUNTS_STEPS


def _start(optimizer: str, group: Mapping[str, Any], param: Tensor, entries: Dict[str, Any]) -> None:
    """Fill an empty state as torch's first step does (capturable and fused are refused before)."""
    if optimizer == "sgd":  # torch's first step makes the buffer from the gradient; the op does too
        entries["momentum_buffer"] = torch.zeros_like(param, memory_format=torch.preserve_format)
        return
    if optimizer == "adagrad":
        raise KeyError("sum")  # Adagrad makes its state in its constructor; torch's step fails without it
    entries["step"] = torch.tensor(0.0, dtype=_get_scalar_dtype())
    for key in state_keys(optimizer, group):
        entries[key] = torch.zeros_like(param, memory_format=torch.preserve_format)


def gather(optimizer: str, group: Mapping[str, Any], state: Dict[Tensor, Dict[str, Any]],
           params: List[Tensor]) -> Tuple[List[Tensor], int]:
    """The state tensors of ``params`` in the op's layout, made as torch would where a param has
    none yet, and the steps the params have taken (for SGD: 0 when its buffers are new, else 1)."""
    keys = state_keys(optimizer, group)
    if not keys and not counts_steps(optimizer):
        return [], 0  # torch's SGD without momentum keeps no state
    entries = [state[p] for p in params]  # torch's state is a defaultdict, and its step makes the entry
    fresh = not has_state(optimizer, entries[0])
    for param, own in zip(params, entries):
        if not has_state(optimizer, own):
            _start(optimizer, group, param, own)
    tensors = [own[key] for own in entries for key in keys]  # a missing entry fails as torch's step does
    if counts_steps(optimizer):
        return tensors, int(entries[0]["step"])
    return tensors, 0 if fresh else 1


def count_steps(optimizer: str, state: Dict[Tensor, Dict[str, Any]], params: List[Tensor], taken: int) -> None:
    """Add ``taken`` steps to every param's ``state["step"]``, in place as torch's step does."""
    if counts_steps(optimizer) and taken:
        for param in params:
            state[param]["step"].add_(taken)
