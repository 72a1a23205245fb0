"""Name → object registries for models, losses, optimizers and LR schedulers.

Each entry carries a one-line description, where it comes from and capability
flags. Third-party packages add entries through entry points (groups
``pyfit.models``, ``pyfit.losses``, ``pyfit.optimizers``, ``pyfit.schedulers``),
discovered on the first listing, or the first lookup of a name not registered in
code, never at ``import pyfit``: a built-in never waits on a plugin's import.

Clashes follow one rule: a built-in (or a name registered in code) is never
replaced by a plugin, and between two plugins the distribution whose name sorts
first wins; every clash warns, naming both sides.
"""

from __future__ import annotations

import difflib
import inspect
import os
import warnings
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Callable, Dict, FrozenSet, Iterator, List, Optional, Tuple

from .errors import PluginError, UnknownNameError

BUILTIN = "built-in"


@dataclass(frozen=True)
class Entry:
    """One registered object and what is known about it."""

    name: str
    obj: Callable[..., Any]
    description: str
    source: str = BUILTIN  # "built-in", "user" or "plugin <distribution> <version>"
    flags: FrozenSet[str] = field(default_factory=frozenset)


@dataclass(frozen=True)
class FailedPlugin:
    """An entry point that could not be used, and why."""

    group: str
    name: str
    value: str
    distribution: str
    reason: str


def _describe(obj: Any) -> str:
    doc = getattr(obj, "description", None)
    if isinstance(doc, str) and doc:
        return doc
    doc = inspect.getdoc(obj) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


def _strict_plugins() -> bool:
    return os.environ.get("PYFIT_STRICT_PLUGINS", "").strip() not in ("", "0", "false", "no")


class Registry:
    """A named collection of factories of one kind.

    >>> from pyfit.registry import Registry
    >>> colours = Registry("colour", group=None)
    >>> @colours.register("red", description="the colour red")
    ... def red():
    ...     return (255, 0, 0)
    >>> colours.build("red")
    (255, 0, 0)
    """

    def __init__(self, kind: str, group: Optional[str], check: Optional[Callable[[Any], Optional[str]]] = None):
        self.kind = kind
        self.group = group
        self._check = check  # returns why an object is the wrong kind, or None
        self._entries: Dict[str, Entry] = {}
        self._plugins_loaded = group is None
        self.failed_plugins: List[FailedPlugin] = []

    # -- registering ---------------------------------------------------------
    def register(self, name: str, obj: Optional[Callable[..., Any]] = None, *, description: Optional[str] = None,
                 flags: Tuple[str, ...] = (), override: bool = False, source: str = BUILTIN):
        """Register ``obj`` under ``name``; without ``obj``, return a decorator.

        A taken name raises ValueError unless ``override=True``.
        """
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"a {self.kind} name must be a non-empty string, got {name!r}")
        key = name.strip().lower()

        def add(target: Callable[..., Any]) -> Callable[..., Any]:
            why = self._wrong_kind(target)
            if why:
                raise TypeError(f"cannot register {key!r} as a {self.kind}: {why}")
            if key in self._entries and not override:
                raise ValueError(
                    f"a {self.kind} named {key!r} is already registered (from {self._entries[key].source}); "
                    f"pass override=True to replace it"
                )
            self._entries[key] = Entry(key, target, description or _describe(target), source,
                                       frozenset(flags) | frozenset(getattr(target, "flags", ())))
            return target

        return add if obj is None else add(obj)

    def unregister(self, name: str) -> None:
        """Remove an entry (used by tests and by plugins that replace their own)."""
        self._entries.pop(self._key(name), None)

    def _wrong_kind(self, obj: Any) -> Optional[str]:
        if not callable(obj):
            return f"expected a class or factory, got {type(obj).__name__} {obj!r}"
        return self._check(obj) if self._check else None

    # -- plugins ---------------------------------------------------------------
    def _load_plugins(self) -> None:
        """Discover the group's entry points once; all of them or, in strict mode, none.

        Plugins are staged and added together, so a PluginError in strict mode
        leaves the registry as it was and the next lookup raises again.
        """
        if self._plugins_loaded:
            return
        try:
            points = metadata.entry_points(group=self.group)
        except TypeError:  # Python < 3.10
            points = metadata.entry_points().get(self.group, [])
        staged: Dict[str, Entry] = {}
        failed: List[FailedPlugin] = []
        # a stable order makes the clash rule deterministic
        for point in sorted(points, key=lambda p: (_dist_name(p).lower(), p.name)):
            self._load_plugin(point, staged, failed)
        self._entries.update(staged)
        self.failed_plugins = failed
        self._plugins_loaded = True

    def _load_plugin(self, point: Any, staged: Dict[str, Entry], failed: List[FailedPlugin]) -> None:
        dist = _dist_label(point)
        try:
            obj = point.load()
            why = self._wrong_kind(obj)
        except (Exception, SystemExit) as error:  # a broken plugin must not break pyfit; Ctrl-C still stops it
            why = f"{type(error).__name__}: {error}"
        if why:
            failed.append(FailedPlugin(self.group or "", point.name, point.value, dist, why))
            message = f"pyfit: skipped the {self.kind} plugin {point.name!r} ({point.value}) from {dist}: {why}"
            if _strict_plugins():
                raise PluginError(message + " (PYFIT_STRICT_PLUGINS is set)")
            warnings.warn(message, RuntimeWarning, stacklevel=5)
            return
        key = point.name.strip().lower()
        taken = self._entries.get(key) or staged.get(key)
        if taken is not None:
            warnings.warn(
                f"pyfit: the {self.kind} plugin {key!r} from {dist} ({point.value}) clashes with the {self.kind} "
                f"from {taken.source}; keeping the one from {taken.source}",
                RuntimeWarning, stacklevel=5)
            return
        staged[key] = Entry(key, obj, _describe(obj), f"plugin {dist}", frozenset(getattr(obj, "flags", ())))

    def _own(self, key: Any) -> Optional[Entry]:
        """The entry registered in code (built-in or by the user) under ``key``, without discovering plugins."""
        entry = self._entries.get(key) if isinstance(key, str) else None
        return entry if entry is not None and not entry.source.startswith("plugin") else None

    def has_own(self, name: str) -> bool:
        """Whether ``name`` is registered in code (built-in or by the user), without discovering plugins."""
        return self._own(self._key(name)) is not None

    # -- looking up ------------------------------------------------------------
    def _key(self, name: str) -> str:
        return name.strip().lower() if isinstance(name, str) else name

    def entry(self, name: str) -> Entry:
        """The entry for ``name``; an unknown name lists what exists and suggests the closest."""
        key = self._key(name)
        own = self._own(key)
        if own is not None:  # code-registered names always win a clash, so plugins cannot change the answer
            return own
        self._load_plugins()
        try:
            return self._entries[key]
        except (KeyError, TypeError):
            pass
        known = sorted(self._entries)
        close = difflib.get_close_matches(str(key), known, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise UnknownNameError(f"unknown {self.kind} {name!r}.{hint} Available: {', '.join(known) or 'none'}")

    def __getitem__(self, name: str) -> Callable[..., Any]:
        return self.entry(name).obj

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        if self._own(self._key(name)) is not None:
            return True
        self._load_plugins()
        return self._key(name) in self._entries

    def entry_of(self, obj: Any) -> Optional[Entry]:
        """The entry of ``obj`` (a registered class or function, or an exact instance of a class), or None.

        Code-registered entries are searched first, so asking about a built-in
        imports no plugin.
        """
        def match(entry: Entry) -> bool:
            return obj is entry.obj or (inspect.isclass(entry.obj) and type(obj) is entry.obj)

        for entry in self._entries.values():
            if not entry.source.startswith("plugin") and match(entry):
                return entry
        return next((entry for entry in self.entries() if match(entry)), None)

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())

    def names(self) -> List[str]:
        """Every registered name, sorted."""
        self._load_plugins()
        return sorted(self._entries)

    def entries(self) -> List[Entry]:
        """Every entry, sorted by name."""
        self._load_plugins()
        return [self._entries[k] for k in sorted(self._entries)]

    def description(self, name: str) -> str:
        return self.entry(name).description

    def build(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """Call the factory registered under ``name`` with the given arguments."""
        return self.entry(name).obj(*args, **kwargs)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {len(self._entries)} entries)"


def _dist_name(point: Any) -> str:
    dist = getattr(point, "dist", None)
    return dist.metadata["Name"] if dist is not None else "an unknown distribution"


def _dist_label(point: Any) -> str:
    dist = getattr(point, "dist", None)
    return f"{dist.metadata['Name']} {dist.version}" if dist is not None else "an unknown distribution"


def _subclass_check(base: type, what: str) -> Callable[[Any], Optional[str]]:
    def check(obj: Any) -> Optional[str]:
        if inspect.isclass(obj) and not issubclass(obj, base):
            return f"expected a subclass of {what} or a factory function, got class {obj.__qualname__}"
        return None

    return check


def _scheduler_check(obj: Any) -> Optional[str]:
    from torch.optim import lr_scheduler

    if inspect.isclass(obj) and not issubclass(obj, (lr_scheduler.LRScheduler, lr_scheduler.ReduceLROnPlateau)):
        return f"expected a torch LR scheduler class or a factory function, got class {obj.__qualname__}"
    return None


def _make_registries() -> Tuple[Registry, Registry, Registry, Registry]:
    import torch

    return (
        Registry("model", "pyfit.models", _subclass_check(torch.nn.Module, "torch.nn.Module")),
        Registry("loss", "pyfit.losses"),
        Registry("optimizer", "pyfit.optimizers", _subclass_check(torch.optim.Optimizer, "torch.optim.Optimizer")),
        Registry("scheduler", "pyfit.schedulers", _scheduler_check),
    )


MODELS, LOSSES, OPTIMIZERS, SCHEDULERS = _make_registries()
