"""Checkpoints: a fit saved to one file, and everything needed to load or resume it.

A checkpoint is a plain dict that ``torch.load(path, weights_only=True)`` reads
back (tensors, dicts, lists, str, int, float, bool, None; no pickled classes).
The model, optimizer and scheduler are recorded as registry names plus their
constructor arguments and state dicts, so loading needs no user code for the
built-ins and for installed plugins::

    {"format": "pyfit-checkpoint", "format_version": 1,
     "versions": {"pyfit", "torch", "python"}, "plugins": {kind: "plugin <dist> <version>"},
     "model": {"name", "args", "dtype", "class", "state", "standardized"},  # state holds the scaling
     "optimizer": {"name", "settings", "class", "state"},
     "scheduler": None or {"name", "kwargs", "class", "state"},
     "epoch", "history", "stop_reason", "stop_detail", "backend",
     "config": {"loss", "loss_kwargs", "batch_size", "shuffle", "seed", "epochs", "lr", ...},
     "rng": {"fit": the minibatch generator's state, "torch": the global CPU state, "cuda": [...]},
     "metadata": {...}}  # free-form, e.g. the CLI's feature and target column names

Writes are atomic: the file is written beside its destination, fsynced and
renamed over it, so a crash mid-save leaves the previous checkpoint whole. A
symlink is written through (its target gets the new contents) and an existing
file keeps its permissions.

Reading checks every entry that loading uses (``_checkpoint_schema.SCHEMA``)
before anything is built or loaded, so a damaged file is a CheckpointError that
names the entry.
"""

from __future__ import annotations

import copy
import inspect
import os
import platform
import stat
import tempfile
import warnings
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import torch
from torch import nn

from ._version import __version__
from .errors import CheckpointError, UnknownNameError
from .registry import LOSSES, MODELS, OPTIMIZERS, SCHEDULERS, Registry
from ._checkpoint_schema import check_restorable, check_schema
from .validation import accepted_keywords

FORMAT = "pyfit-checkpoint"
FORMAT_VERSION = 1


@dataclass
class Checkpoint:
    """A loaded checkpoint: a ready model, optimizer and scheduler, and how the fit stood.

    ``model`` is None only for a model that was not registered and was not passed
    to :func:`load_checkpoint`; ``payload`` is the raw dict as read from disk.
    """

    path: str
    model: Optional[nn.Module]
    optimizer: Optional[torch.optim.Optimizer]
    scheduler: Any
    history: Dict[str, List[float]]
    epoch: int
    config: Dict[str, Any]
    stop_reason: Optional[str] = None
    stop_detail: str = ""
    backend: str = ""
    versions: Dict[str, str] = field(default_factory=dict)
    plugins: Dict[str, str] = field(default_factory=dict)
    metadata: Dict[str, Any] = field(default_factory=dict)
    payload: Dict[str, Any] = field(default_factory=dict, repr=False)


def registry_name(registry: Registry, obj: Any) -> Optional[str]:
    """The name ``obj`` (a name, or an instance of a registered class) is registered under, or None."""
    if isinstance(obj, str):
        return registry.entry(obj).name
    if obj is None:
        return None
    entry = registry.entry_of(obj)
    return None if entry is None else entry.name


def _plain(value: Any) -> Any:
    """``value`` as the types weights_only loading accepts; anything else becomes its repr."""
    if isinstance(value, str):
        return str(value)  # str subclasses (torch's TorchVersion) are classes to the unpickler
    if value is None or isinstance(value, (bool, int, float, torch.Tensor)):
        return value
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return value.item()
    return repr(value)


def _class_path(obj: Any) -> Optional[str]:
    return None if obj is None else f"{type(obj).__module__}.{type(obj).__qualname__}"


def payload_of(result: Any, metadata: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """The checkpoint dict of a :class:`~pyfit.FitResult`."""
    config, state = dict(result.config or {}), result.state
    model, optimizer, scheduler = result.model, result.optimizer, result.scheduler
    from .scaling import Standardized, inner_model

    names = {
        "model": config.get("model") if isinstance(config.get("model"), str) else
        registry_name(MODELS, inner_model(model)),
        "optimizer": registry_name(OPTIMIZERS, config.get("optimizer") if isinstance(config.get("optimizer"), str)
                                   else optimizer),
        "scheduler": registry_name(SCHEDULERS, config.get("scheduler") if isinstance(config.get("scheduler"), str)
                                   else scheduler),
        "loss": registry_name(LOSSES, config.get("loss")) if config.get("loss") is not None else None,
    }
    registries = {"model": MODELS, "optimizer": OPTIMIZERS, "scheduler": SCHEDULERS, "loss": LOSSES}
    plugins = {kind: registries[kind].entry(name).source for kind, name in names.items()
               if name is not None and registries[kind].entry(name).source.startswith("plugin ")}
    model_args = getattr(model, "config", None)
    if not isinstance(model_args, dict):
        model_args = config.get("model_args")
    params = list(model.parameters())
    generator = getattr(state, "generator", None)
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "versions": {"pyfit": __version__, "torch": str(torch.__version__), "python": platform.python_version()},
        "plugins": plugins,
        "model": {"name": names["model"], "args": _plain(model_args), "class": _class_path(inner_model(model)),
                  "standardized": isinstance(model, Standardized),
                  "dtype": str(params[0].dtype).replace("torch.", "") if params else None,
                  "state": model.state_dict()},
        "optimizer": {"name": names["optimizer"], "settings": _plain(dict(optimizer.defaults)),
                      "class": _class_path(optimizer), "state": optimizer.state_dict()},
        "scheduler": None if scheduler is None else {
            "name": names["scheduler"], "kwargs": _plain(config.get("scheduler_kwargs") or {}),
            "class": _class_path(scheduler), "state": scheduler.state_dict()},
        "epoch": int(result.epochs),
        "history": {k: [float(v) for v in vs] for k, vs in result.history.items()},
        "stop_reason": result.stop_reason,
        "stop_detail": result.stop_detail or "",
        "backend": result.backend,
        "config": {
            "model": names["model"], "loss": names["loss"], "optimizer": names["optimizer"],
            "scheduler": names["scheduler"], "lr": _plain(config.get("lr")), "epochs": config.get("epochs"),
            "batch_size": config.get("batch_size"), "shuffle": bool(config.get("shuffle")),
            "seed": config.get("seed"), "tol": config.get("tol"), "model_kwargs": _plain(config.get("model_kwargs") or {}),
            "loss_kwargs": _plain(config.get("loss_kwargs") or {}),
            "optimizer_kwargs": _plain(config.get("optimizer_kwargs") or {}),
            "scheduler_kwargs": _plain(config.get("scheduler_kwargs") or {}),
        },
        "rng": {
            "fit": None if generator is None else generator.get_state(),
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
        },
        "metadata": _plain(metadata or {}),
    }


def write_atomic(payload: Dict[str, Any], path: str) -> None:
    """``torch.save`` to a temp file in the same directory, fsync, then rename over ``path``.

    A symlink stays a symlink: the file it points to is the one replaced. A file
    that exists keeps its permission bits (a private 0600 checkpoint stays private).
    """
    path = os.path.realpath(os.fspath(path))
    directory = os.path.dirname(path)
    if os.path.exists(path):
        mode = stat.S_IMODE(os.stat(path).st_mode)
    else:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    fd, temp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(payload, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp, mode)  # mkstemp makes 0600
        os.replace(temp, path)
    except BaseException:
        try:
            os.unlink(temp)
        except FileNotFoundError:
            pass
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass


def save_checkpoint(path: str, result: Any, *, metadata: Optional[Dict[str, Any]] = None) -> str:
    """Save a fit (a :class:`~pyfit.FitResult`) to ``path`` atomically; returns the path.

    >>> import os, tempfile, torch, pyfit
    >>> result = pyfit.fit("linear", torch.rand(20), torch.rand(20), epochs=5, seed=0)
    >>> path = pyfit.save_checkpoint(os.path.join(tempfile.mkdtemp(), "fit.pt"), result)
    >>> pyfit.load_checkpoint(path).epoch
    5
    """
    write_atomic(payload_of(result, metadata), path)
    return os.fspath(path)


def _first_line(error: BaseException) -> str:
    text = [line.strip() for line in str(error).strip().splitlines()]
    # torch's weights_only refusal puts the useful line ("WeightsUnpickler error: ...") in the middle
    specific = [line for line in text if "error:" in line.lower()]
    line = (specific or text or [""])[0]
    return f"{type(error).__name__}: {line[:200]}"


def read_checkpoint(path: str) -> Dict[str, Any]:
    """The raw checkpoint dict at ``path``, or a CheckpointError naming the file."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint {path!r} does not exist")
    try:
        with warnings.catch_warnings():  # torch warns about foreign pickles before refusing them
            warnings.simplefilter("ignore", UserWarning)
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # truncated zip, a pickle of classes, text...: all say the same to a user
        raise CheckpointError(f"{path!r} is not a readable pyfit checkpoint (truncated, or not written by "
                              f"pyfit.save_checkpoint): {_first_line(error)}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        got = f"format {payload.get('format')!r}" if isinstance(payload, dict) else type(payload).__name__
        raise CheckpointError(f"{path!r} is not a pyfit checkpoint: expected a dict with format {FORMAT!r}, "
                              f"got {got}")
    version = payload.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(f"{path!r} has checkpoint format version {version!r}; this pyfit "
                              f"({__version__}) reads versions up to {FORMAT_VERSION}")
    check_schema(payload, path)
    return payload


def _lookup(registry: Registry, name: str, payload: Dict[str, Any], kind: str, path: str):
    try:
        return registry.entry(name).obj
    except UnknownNameError as error:
        where = payload.get("plugins", {}).get(kind)
        hint = f" It came from {where}; install that distribution." if where else ""
        raise CheckpointError(f"{path!r} needs the {kind} {name!r}, which is not registered.{hint} "
                              f"({error})") from None


def constructor_settings(factory: Any, settings: Dict[str, Any]) -> Dict[str, Any]:
    """The saved settings that ``factory`` takes (``optimizer.defaults`` holds a few more than it accepts)."""
    keys = accepted_keywords(factory) if inspect.isclass(factory) else None
    return dict(settings) if keys is None else {k: v for k, v in settings.items() if k in keys}


def _build_optimizer(spec: Dict[str, Any], model: nn.Module, payload, path) -> torch.optim.Optimizer:
    factory = _lookup(OPTIMIZERS, spec["name"], payload, "optimizer", path)
    try:
        optimizer = factory(list(model.parameters()), **constructor_settings(factory, spec["settings"]))
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{path!r}: its optimizer {spec['name']!r} cannot be rebuilt from the saved "
                              f"settings: {_first_line(error)}") from None
    check_restorable(payload, path, model=model, optimizer=optimizer)
    optimizer.load_state_dict(spec["state"])  # restores every param group setting too
    return optimizer


def _snapshot(model: nn.Module, optimizer: Any, scheduler: Any) -> Any:
    return ({k: v.clone() for k, v in model.state_dict().items()},
            None if optimizer is None else copy.deepcopy(optimizer.state_dict()),
            None if scheduler is None else copy.deepcopy(scheduler.state_dict()))


def restore(payload: Dict[str, Any], path: str, *, model: nn.Module, optimizer: Any = None,
            scheduler: Any = None, state: Any = None) -> None:
    """Load the checkpoint's states into existing objects (fit's resume), restoring the RNGs last.

    Everything that can be checked is checked first (:func:`check_restorable`);
    should a load still fail, the model, optimizer and scheduler get their own
    states back before the CheckpointError.
    """
    check_restorable(payload, path, model=model, optimizer=optimizer)
    before = _snapshot(model, optimizer, scheduler)
    try:
        model.load_state_dict(payload["model"]["state"])
        if optimizer is not None:
            optimizer.load_state_dict(payload["optimizer"]["state"])
        if scheduler is not None and payload["scheduler"]:
            scheduler.load_state_dict(payload["scheduler"]["state"])
    except (RuntimeError, ValueError, KeyError, TypeError) as error:
        model.load_state_dict(before[0])
        if optimizer is not None:
            optimizer.load_state_dict(before[1])
        if scheduler is not None:
            scheduler.load_state_dict(before[2])
        raise CheckpointError(f"{path!r} does not match this fit's model or optimizer: {_first_line(error)}") \
            from None
    if state is not None:
        state.epoch = payload["epoch"]
        state.history = {k: list(v) for k, v in payload["history"].items()}
        if state.generator is not None and payload["rng"]["fit"] is not None:
            state.generator.set_state(payload["rng"]["fit"])
    torch.set_rng_state(payload["rng"]["torch"])
    cuda_states = payload["rng"].get("cuda") or []
    if cuda_states and torch.cuda.is_available() and len(cuda_states) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda_states)


def load_checkpoint(path: str, *, model: Optional[nn.Module] = None) -> Checkpoint:
    """Load a checkpoint: the model, optimizer and scheduler rebuilt and restored.

    Pass ``model`` for a model class that is not registered (its state is loaded
    into it, last, once everything else has loaded). RNG states are not touched;
    ``fit(..., resume_from=path)`` restores them.

    >>> import os, tempfile, torch, pyfit
    >>> result = pyfit.fit("polynomial", torch.rand(20), torch.rand(20), epochs=3, model_kwargs={"degree": 3})
    >>> path = pyfit.save_checkpoint(os.path.join(tempfile.mkdtemp(), "fit.pt"), result)
    >>> pyfit.load_checkpoint(path).model.degree
    3
    """
    path = os.fspath(path)
    payload = read_checkpoint(path)
    spec = payload["model"]
    if model is None and spec["name"] is not None and spec["args"] is not None:
        factory = _lookup(MODELS, spec["name"], payload, "model", path)
        try:
            model = factory(**spec["args"])
        except (TypeError, ValueError) as error:
            raise CheckpointError(f"{path!r}: its model {spec['name']!r} cannot be rebuilt from the saved "
                                  f"arguments: {_first_line(error)}") from None
        if spec["dtype"]:
            model = model.to(getattr(torch, spec["dtype"]))
    if model is not None and spec.get("standardized"):
        from .scaling import with_scaling

        # the statistics come with the state, loaded below
        params = list(model.parameters())
        if not isinstance(spec["state"].get("mean"), torch.Tensor) or spec["state"]["mean"].dim() != 1:
            raise CheckpointError(f"{path!r} is damaged: its model is marked standardized but its state has no "
                                  "1-D 'mean'")
        features = spec["state"]["mean"].shape[0]
        probe = torch.empty(0, features, dtype=params[0].dtype if params else torch.get_default_dtype())
        model = with_scaling(model, probe, None, spec, path)
    optimizer = scheduler = None
    if model is not None:
        check_restorable(payload, path, model=model)
        if payload["optimizer"]["name"] is not None:
            optimizer = _build_optimizer(payload["optimizer"], model, payload, path)
        sched = payload["scheduler"]
        if optimizer is not None and sched and sched["name"] is not None:
            from .schedulers import build_scheduler

            _lookup(SCHEDULERS, sched["name"], payload, "scheduler", path)
            try:
                scheduler = build_scheduler(sched["name"], optimizer, epochs=payload["config"].get("epochs"),
                                            **sched["kwargs"])
            except (TypeError, ValueError) as error:
                raise CheckpointError(f"{path!r}: its scheduler {sched['name']!r} cannot be rebuilt from the "
                                      f"saved settings: {_first_line(error)}") from None
            optimizer.load_state_dict(payload["optimizer"]["state"])  # the scheduler's constructor moved lr
            scheduler.load_state_dict(sched["state"])
        model.load_state_dict(spec["state"])  # last: a refusal above leaves a model you passed untouched
    return Checkpoint(
        path=path, model=model, optimizer=optimizer, scheduler=scheduler,
        history={k: list(v) for k, v in payload["history"].items()}, epoch=payload["epoch"],
        config=dict(payload["config"]), stop_reason=payload.get("stop_reason"),
        stop_detail=payload.get("stop_detail", ""), backend=payload.get("backend", ""),
        versions=dict(payload.get("versions", {})), plugins=dict(payload.get("plugins", {})),
        metadata=dict(payload.get("metadata") or {}), payload=payload,
    )
