"""Which implementation of the ops runs: the compiled extension or the reference.

The choice is made once, lazily, on the first op call or ``backend()`` query, so
``import pyfit`` never pays for loading (or failing to load) the extension.
``PYFIT_BACKEND`` sets it: ``auto`` (default) takes the compiled ops when they
load and says once why not otherwise; ``cpp`` insists on them; ``python`` forces
the reference.
"""

from __future__ import annotations

import os
import warnings
from types import ModuleType
from typing import Optional, Tuple

from . import _reference

BACKEND_NAMES = ("auto", "cpp", "python")


class BackendUnavailableError(RuntimeError):
    """The compiled backend was required but cannot be used."""


_selected: Optional[Tuple[object, str, Optional[str]]] = None


def _select(requested: str) -> Tuple[object, str, Optional[str]]:
    if requested not in BACKEND_NAMES:
        raise ValueError(
            f"unknown pyfit backend {requested!r}: expected one of {', '.join(BACKEND_NAMES)}"
        )
    if requested == "python":
        return _reference, "python", "the reference ops were asked for (backend 'python')"
    from . import _extension

    ops, reason = _extension.load()
    if ops is not None:
        return ops, "cpp", None
    if requested == "cpp":
        raise BackendUnavailableError(
            f"the compiled pyfit backend was required, but it cannot be used: {reason}"
        )
    warnings.warn(f"pyfit is using its pure-PyTorch reference ops: {reason}", RuntimeWarning,
                  stacklevel=3)
    return _reference, "python", reason


def implementation():
    """The module-like object whose functions implement the ops now."""
    global _selected
    if _selected is None:
        _selected = _select(os.environ.get("PYFIT_BACKEND", "auto").strip().lower() or "auto")
    return _selected[0]


def backend() -> str:
    """``"cpp"`` when the compiled extension runs the ops, ``"python"`` otherwise.

    >>> import pyfit
    >>> pyfit.ops.backend() in ("cpp", "python")
    True
    """
    implementation()
    return _selected[1]


def backend_reason() -> Optional[str]:
    """Why the reference ops run instead of the compiled ones, or None when they don't."""
    implementation()
    return _selected[2]


def set_backend(name: str) -> str:
    """Choose the backend for this process (``auto``, ``cpp`` or ``python``); returns the active one.

    Raises BackendUnavailableError for ``cpp`` when the extension cannot be used,
    and then leaves the previous choice in place.
    """
    global _selected
    _selected = _select(name.strip().lower())
    return _selected[1]
