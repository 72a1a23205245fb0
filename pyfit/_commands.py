"""What each ``pyfit`` subcommand does, once ``cli.py`` has parsed its arguments.

Each command takes the parsed arguments and the parser (for usage errors, exit
status 2) and returns the exit status; errors are raised and ``cli.main`` turns
them into one line on stderr.

torch is imported inside the commands, once a usage error can no longer cut the
run short: a mistyped flag is reported in a fraction of a second, not after torch's
seconds of start-up.
"""

from __future__ import annotations

import csv
import json
import math
import os
import platform
import re
import sys
import time
from typing import Any, Dict, List, Optional

from ._cli_values import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, key_values, parse_value

DEMO_WEIGHT, DEMO_BIAS, DEMO_POINTS = 3.0, 0.8, 50
_PARAMETERS_IN_SUMMARY = 10  # more than this many numbers are left to --json and checkpoints

# TOML keys (the flags' names, '-' or '_') -> argparse destinations
_CONFIG_KEYS = {
    "target": "target", "features": "features", "model": "model", "loss": "loss", "optimizer": "optimizer",
    "scheduler": "scheduler", "lr": "lr", "epochs": "epochs", "batch_size": "batch_size", "shuffle": "shuffle",
    "seed": "seed", "early_stopping": "early_stopping", "save": "save", "resume": "resume", "plot": "plot",
    "json": "json", "quiet": "quiet", "model_args": "model_arg", "model_arg": "model_arg",
    "opt_args": "opt_arg", "opt_arg": "opt_arg", "loss_args": "loss_arg", "loss_arg": "loss_arg",
    "sched_args": "sched_arg", "sched_arg": "sched_arg", "standardize": "standardize", "tol": "tol",
    "n_iter_no_change": "n_iter_no_change", "validation_split": "validation_split", "chunk_mb": "chunk_mb",
}
_ARG_TABLES = ("model_arg", "opt_arg", "loss_arg", "sched_arg")


def _finite(value: float) -> Optional[float]:
    return value if isinstance(value, float) and math.isfinite(value) else None


def demo(args, parser) -> int:
    """Fit y = 3x + 0.8 on 50 points, print the parameters, save the two plots."""
    import torch

    import pyfit
    from .errors import InputError
    from .validation import check_epochs, check_positive, check_seed

    try:
        check_epochs(args.epochs)
        check_positive("lr", args.lr)
        check_seed(args.seed)
    except InputError as error:
        parser.error(str(error))
    generator = torch.Generator().manual_seed(args.seed)
    x = torch.rand(DEMO_POINTS, generator=generator)  # uniform in [0, 1)
    y = DEMO_WEIGHT * x + DEMO_BIAS
    result = pyfit.fit("linear", x, y, lr=args.lr, epochs=args.epochs, seed=args.seed)
    weight, bias = result.model.weight.item(), result.model.bias.item()
    print(f"fitted  w = {weight:.4f}, b = {bias:.4f}   (true line: w = {DEMO_WEIGHT:g}, b = {DEMO_BIAS:g})")
    print(f"{result.epochs} epochs of full-batch SGD, lr {args.lr:g}: final loss {result.final_loss:.3g}, "
          f"{result.seconds:.2f} s on {result.backend}")
    os.makedirs(args.output, exist_ok=True)
    loss_png, fit_png = os.path.join(args.output, "loss.png"), os.path.join(args.output, "fit.png")
    result.plot_loss(loss_png)
    result.plot_fit(x, y, fit_png)
    print(f"plots: {loss_png}, {fit_png}")
    return EXIT_OK if result.stop_reason == "completed" else EXIT_FAILED


def _read_config(path: str, parser) -> Dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    try:
        with open(path, "rb") as handle:
            raw = tomllib.load(handle)
    except OSError as error:
        parser.error(f"--config {path}: {error.strerror}")
    except tomllib.TOMLDecodeError as error:
        parser.error(f"--config {path} is not valid TOML: {error}")
    settings = {}
    for key, value in raw.items():
        dest = _CONFIG_KEYS.get(key.replace("-", "_"))
        if dest is None:
            parser.error(f"--config {path}: unknown key {key!r}; known keys: {', '.join(sorted(set(_CONFIG_KEYS)))}")
        if dest in _ARG_TABLES and not isinstance(value, dict):
            parser.error(f"--config {path}: {key} must be a table of KEY = VALUE, got {value!r}")
        if dest in ("target", "features") and isinstance(value, list):
            value = ",".join(str(v) for v in value)
        settings[dest] = value
    return settings


def _settings(args, parser) -> Dict[str, Any]:
    """The fit's settings: flags, then --config, then the --resume checkpoint's, then the defaults."""
    config = _read_config(args.config, parser) if args.config else {}
    flag_tables = {dest: key_values(getattr(args, dest), "--" + dest.replace("_", "-"), parser)
                   for dest in _ARG_TABLES}
    merged = {dest: getattr(args, dest) if getattr(args, dest) is not None else config.get(dest)
              for dest in set(_CONFIG_KEYS.values()) if dest not in _ARG_TABLES}
    for dest in _ARG_TABLES:
        merged[dest] = {**{k: parse_value(v) if isinstance(v, str) else v for k, v in config.get(dest, {}).items()},
                        **flag_tables[dest]}
    merged["json"] = bool(args.json or config.get("json"))
    merged["quiet"] = bool(args.quiet or config.get("quiet"))
    saved = None
    if merged["resume"]:
        from .checkpoint import read_checkpoint

        saved = read_checkpoint(merged["resume"])
    if saved is not None:
        old, meta = saved["config"], saved.get("metadata") or {}
        # not lr or the optimizer's settings: the resumed optimizer keeps its own unless a flag changes them
        fallback = {"loss": old.get("loss"), "optimizer": old.get("optimizer"), "scheduler": old.get("scheduler"),
                    "epochs": old.get("epochs"), "batch_size": old.get("batch_size"),
                    "shuffle": old.get("shuffle"), "seed": old.get("seed"), "tol": old.get("tol"),
                    "target": meta.get("target"),
                    "features": meta.get("features"), "early_stopping": meta.get("early_stopping")}
        for dest, value in fallback.items():
            if merged.get(dest) is None:
                merged[dest] = ",".join(value) if isinstance(value, list) else value
        for dest, key in (("loss_arg", "loss_kwargs"), ("sched_arg", "scheduler_kwargs")):
            merged[dest] = {**(old.get(key) or {}), **merged[dest]}
    # epochs and lr are left to fit (a cap with a convergence test, lr="auto"); a resumed fit keeps its scaling
    defaults = {"model": "linear", "loss": "mse", "optimizer": "sgd", "shuffle": False, "standardize": True}
    for dest, value in defaults.items():
        if merged.get(dest) is None and not (dest in ("model", "standardize") and saved is not None):
            merged[dest] = value
    if not merged.get("target"):
        parser.error("fit needs --target COLUMN (or `target` in --config)")
    _check_usage(merged, parser)
    merged["dtype"] = _fit_dtype(saved)
    return merged


def _check_usage(s: Dict[str, Any], parser) -> None:
    """Every setting the user gave, checked before any data is read: a bad one is a usage error (exit 2)."""
    from pyfit import LOSSES, MODELS, OPTIMIZERS, SCHEDULERS  # with every built-in registered
    from .errors import InputError, UnknownNameError
    from .validation import (check_checkpoint_target, check_epochs, check_keywords, check_non_negative,
                             check_optimizer_settings,
                             check_positive, check_positive_int, check_scheduler_settings, check_seed)

    try:
        if s["epochs"] is not None:
            check_epochs(s["epochs"])
        if s["lr"] not in (None, "auto"):
            check_positive("lr", s["lr"])
        if s["tol"] is not None:
            check_non_negative("tol", s["tol"])
        check_positive_int("n_iter_no_change", s["n_iter_no_change"], allow_none=True)
        if s["validation_split"] is not None and not 0 < s["validation_split"] < 1:
            raise InputError(f"--validation-split must be between 0 and 1, got {s['validation_split']!r}")
        check_positive_int("batch_size", s["batch_size"], allow_none=True)
        if s["chunk_mb"] is not None:
            check_positive("chunk_mb", s["chunk_mb"])
        check_positive_int("early_stopping", s["early_stopping"], allow_none=True)
        check_seed(s["seed"])
        check_optimizer_settings(s["opt_arg"])
        check_scheduler_settings(s["sched_arg"])
        for what, registry, dest, passed_by_fit in (("model", MODELS, "model_arg", ()),
                                                    ("loss", LOSSES, "loss_arg", ("pred", "target")),
                                                    ("optimizer", OPTIMIZERS, "opt_arg", ("params",)),
                                                    ("scheduler", SCHEDULERS, "sched_arg", ("optimizer", "epochs"))):
            name = s[what]
            if name is not None:
                check_keywords(what, name, registry[name], s[dest], passed_by_fit)
            elif s[dest] and what != "model":  # a resumed model takes its saved arguments plus these
                raise InputError(f"--{dest.replace('_', '-')} needs --{what}")
        if s["save"]:
            check_checkpoint_target(s["save"], "--save")
    except (InputError, UnknownNameError) as error:
        parser.error(str(error))


def _fit_dtype(saved: Optional[Dict[str, Any]]) -> torch.dtype:
    """The dtype the fit computes in: a resumed model's, else torch's default."""
    import torch

    name = saved["model"]["dtype"] if saved is not None else None
    dtype = getattr(torch, name, None) if isinstance(name, str) else None
    return dtype if isinstance(dtype, torch.dtype) else torch.get_default_dtype()


def _parameters(model) -> Dict[str, List[float]]:
    """Every parameter, flattened (--json gives them all, the summary those of small models); a linear or
    polynomial model's weight and bias in the data's units."""
    from .scaling import inner_model, parameters_in_data_units

    in_data_units = parameters_in_data_units(model)
    if in_data_units is not None:
        weight, bias = in_data_units
        params = {"weight": weight, **({} if bias is None else {"bias": bias})}
    else:  # named as in the model itself, not as inside its standardization
        params = {name: p.detach() for name, p in inner_model(model).named_parameters()}
    return {name: [float(v) for v in p.reshape(-1)] for name, p in params.items()}


class _Announce:
    """Says on stderr that the epochs are starting: from here on, Ctrl-C stops the fit cleanly."""

    per_epoch = False  # no hook between epochs, so the fused path keeps its long chunks

    def __init__(self, message: str):
        self.message = message

    def on_fit_start(self, state) -> None:
        print(self.message, file=sys.stderr, flush=True)

    def on_epoch_end(self, state) -> None:
        pass

    def on_fit_end(self, state) -> None:
        pass


def fit(args, parser) -> int:
    """Fit a model to a data file; summary or JSON on stdout, the checkpoint and plots where asked."""
    s = _settings(args, parser)  # usage errors first, before torch is imported

    import pyfit
    from .data import Dataset
    from . import defaults

    s["start_up"] = time.perf_counter() - args.started  # _settings' checks have imported torch and pyfit
    world = pyfit.distributed.current()
    writes = world is None or world.writes  # under torchrun rank 0 alone prints and writes
    chunk_mb = s["chunk_mb"] if s["chunk_mb"] is not None else defaults.CHUNK_MB
    data = _open_data(args.data, s, world, chunk_mb)
    held_out = s["validation_split"] is not None
    callbacks = [pyfit.EarlyStopping(patience=s["early_stopping"], monitor="val_loss" if held_out else "loss",
                                     restore_best=held_out)] if s["early_stopping"] else []
    if not s["quiet"] and writes:
        ranks = f" on {world.size} processes" if world is not None else ""
        callbacks.append(_Announce(
            f"pyfit fit: {s['model'] or 'the saved model'} on {_row_count(data)} rows of {data.path}{ranks} "
            f"(features {', '.join(data.features)}; target {', '.join(data.target)}), "
            + (f"up to {s['epochs']} epochs" if s["epochs"] else "until it converges")
            + "; Ctrl-C stops" + (" and saves" if s["save"] else "")))
    X, y = (data.X, data.y) if isinstance(data, Dataset) else (data, None)
    result = pyfit.fit(
        s["model"], X, y, chunk_mb=chunk_mb, loss=s["loss"], optimizer=s["optimizer"], lr=s["lr"], epochs=s["epochs"],
        batch_size=s["batch_size"], shuffle=bool(s["shuffle"]), seed=s["seed"], scheduler=s["scheduler"],
        standardize=s["standardize"], tol="auto" if s["tol"] is None else (s["tol"] or None),
        n_iter_no_change=s["n_iter_no_change"] or defaults.N_ITER_NO_CHANGE, callbacks=callbacks,
        validation_split=s["validation_split"], progress=False if (s["quiet"] or s["json"]) else None,
        model_kwargs=s["model_arg"], loss_kwargs=s["loss_arg"], scheduler_kwargs=s["sched_arg"],
        resume_from=s["resume"], **s["opt_arg"])
    if not writes:
        return _exit_status(result, None, quiet=True)
    if s["save"]:
        pyfit.save_checkpoint(s["save"], result, metadata={
            "target": data.target, "features": data.features, "data": data.path,
            "early_stopping": s["early_stopping"]})
    r2 = result.scores.get("r2", math.nan)  # of the model as returned, on the training rows
    if s["plot"]:
        os.makedirs(s["plot"], exist_ok=True)
        result.plot_loss(os.path.join(s["plot"], "loss.png"))
        if isinstance(data, Dataset):
            result.plot_predictions(data.X, data.y, os.path.join(s["plot"], "predictions.png"),
                                    target_names=data.target)
            if data.X.shape[1] == 1 and data.y.ndim == 1:
                result.plot_fit(data.X, data.y, os.path.join(s["plot"], "fit.png"), xlabel=data.features[0],
                                ylabel=data.target[0])
        elif not s["quiet"]:
            print("pyfit fit: loss.png only: the predictions are plotted for data read whole into one process",
                  file=sys.stderr)
    _report(result, r2, s)
    return _exit_status(result, s["save"], quiet=False)


def _exit_status(result, saved: Optional[str], quiet: bool) -> int:
    """The fit command's exit status (the same on every rank), with its message unless ``quiet``."""
    from .outcome import has_failed

    if result.stop_reason == "interrupted":
        if not quiet:
            print(f"pyfit fit: interrupted after epoch {result.epochs}" + (f"; saved {saved}" if saved else ""),
                  file=sys.stderr)
        return EXIT_INTERRUPTED
    if has_failed(result):  # non-finite, a failed scheduler, or a model left worse than it started
        if not quiet:
            why = result.stop_detail if result.stop_reason != "completed" else "it diverged (see the warning)"
            print(f"pyfit fit: error: the fit failed: {why}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def _row_count(data) -> int:
    return data.rows if hasattr(data, "rows") else data.X.shape[0]


def _open_data(path: str, s: Dict[str, Any], world: Any, chunk_mb: float):
    """The fit's data: read whole (a Dataset), or opened to be read by rows (a RowFile) under torchrun, for a
    directory of shards, and for a file larger than the chunk budget."""
    from .data import load_data
    from .row_files import open_rows

    by_rows = world is not None or os.path.isdir(path) or (
        os.path.isfile(path) and not path.lower().endswith(".npz") and os.path.getsize(path) > chunk_mb * 2**20)
    if by_rows:
        return open_rows(path, s["target"], s["features"], dtype=s["dtype"])
    return load_data(path, s["target"], s["features"], dtype=s["dtype"])


def _report(result, r2: float, s: Dict[str, Any]) -> None:
    from .scaling import Standardized, parameters_in_data_units

    parameters = _parameters(result.model)
    if s["json"]:
        print(json.dumps({
            "final_loss": _finite(result.final_loss), "r2": _finite(r2),
            "val_r2": _finite(result.scores.get("val_r2", math.nan)), "val_loss":
                _finite(result.scores.get("val_loss", math.nan)), "epochs": result.epochs,
            "stop_reason": result.stop_reason, "stop_detail": result.stop_detail, "backend": result.backend,
            "seconds": result.seconds, "start_up_seconds": s["start_up"], "lr": result.lr_chosen,
            "lr_reason": result.lr_reason,
            "standardized": isinstance(result.model, Standardized), "parameters": parameters,
            "warnings": result.warnings, "checkpoint": s["save"]}))
        return
    if s["quiet"]:
        return
    detail = f" ({result.stop_detail})" if result.stop_detail else ""
    print(f"final loss   {result.final_loss:.6g}")
    print(f"R² (train)   {r2:.6g}")
    if "val_r2" in result.scores:
        print(f"R² (valid.)  {result.scores['val_r2']:.6g}   (validation loss {result.scores['val_loss']:.6g})")
    print(f"epochs       {result.epochs}")
    print(f"stopped      {result.stop_reason}{detail}")
    print(f"lr           {result.lr_chosen:.6g} ({result.lr_reason})")
    shown = sum(len(values) for values in parameters.values()) <= _PARAMETERS_IN_SUMMARY
    in_data_units = shown and parameters_in_data_units(result.model) is not None
    scaled = "standardized" + (" (weight and bias below in the data's units)" if in_data_units else "")
    print(f"features     {scaled if isinstance(result.model, Standardized) else 'as given'}")
    print(f"backend      {result.backend}")
    print(f"wall time    {result.seconds:.3f} s")
    print(f"start-up     {s['start_up']:.3f} s (importing torch and pyfit, before the fit)")
    if shown:
        for name, values in parameters.items():
            print(f"{name:<12} {', '.join(f'{v:.6g}' for v in values)}")
    if s["save"]:
        print(f"checkpoint   {s['save']}")
    for warning in result.warnings:
        print(f"warning      {warning}")


def lr_find(args, parser) -> int:
    """A learning-rate range test on a data file: the suggestion on stdout, the plot saved."""
    import pyfit
    from .data import load_data

    data = load_data(args.data, args.target, args.features)
    found = pyfit.find_lr(
        args.model, data.X, data.y, loss=args.loss, optimizer=args.optimizer, batch_size=args.batch_size,
        standardize=args.standardize, seed=args.seed, start_lr=args.start_lr, end_lr=args.end_lr, steps=args.steps,
        model_kwargs=key_values(args.model_arg, "--model-arg", parser),
        loss_kwargs=key_values(args.loss_arg, "--loss-arg", parser), plot=args.plot,
        **key_values(args.opt_arg, "--opt-arg", parser))
    if args.json:
        print(json.dumps({"lr": found.lr, "reason": found.reason, "plot": args.plot, "lrs": found.lrs,
                          "losses": found.losses}))
        return EXIT_OK
    print(f"suggested lr {found.lr:.4g} ({found.reason})")
    print(f"rates tried  {len(found.lrs)}, from {found.lrs[0]:.3g} to {found.lrs[-1]:.3g}" if found.lrs else
          "rates tried  none gave a finite loss")
    print(f"plot         {args.plot}")
    return EXIT_OK


def predict(args, parser) -> int:
    """A checkpoint's predictions for a data file, as CSV."""
    import numpy as np

    import pyfit
    from .data import read_table, split_names
    from .errors import InputError
    from .predict import model_dtype_device

    checkpoint = pyfit.load_checkpoint(args.checkpoint)
    if checkpoint.model is None:
        raise InputError(f"{args.checkpoint!r} holds a model that is not registered; load it in Python with "
                         "pyfit.load_checkpoint(path, model=...)")
    features = split_names(args.features) or checkpoint.metadata.get("features")
    if not features:
        raise InputError(f"{args.checkpoint!r} does not record its feature columns; pass --features A,B")
    table = read_table(args.data)
    X = table.columns(features, "feature column", model_dtype_device(checkpoint.model)[0])
    pred = pyfit.predict(checkpoint.model, X).double().cpu().numpy()
    pred = pred.reshape(pred.shape[0], -1)
    bad = np.flatnonzero(~np.isfinite(pred).all(axis=1))
    if bad.size:
        raise InputError(f"{table.path}: the prediction for row {table.lines[bad[0]]} is "
                         f"{', '.join(repr(float(v)) for v in pred[bad[0]])} ({bad.size} of {len(pred)} rows give "
                         "non-finite predictions: the inputs or the model's parameters are too large); "
                         "nothing was written")
    header = ["prediction"] if pred.shape[1] == 1 else [f"prediction_{k}" for k in range(pred.shape[1])]
    out = open(args.output, "w", newline="") if args.output else sys.stdout
    try:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(header)
        writer.writerows([repr(float(v)) for v in row] for row in pred)
    finally:
        if args.output:
            out.close()
    return EXIT_OK


def _optimizer_spec(text: str, parser) -> Dict[str, Any]:
    """``sgd`` or ``adam:lr=0.01,betas=[0.9,0.99]`` as compare's {"name": ..., setting: value}."""
    name, _, settings = text.partition(":")
    # commas inside brackets belong to a value (betas=[0.9,0.99])
    pairs = [pair for pair in re.split(r",(?![^\[]*\])", settings) if pair.strip()]
    return {"name": name.strip(), **key_values(pairs, f"--optimizer {text}", parser)}


def compare(args, parser) -> int:
    """Fit the data with each optimizer; the table (or JSON) on stdout, the loss curves saved."""
    specs = [_optimizer_spec(text, parser) for text in args.optimizer]
    lrs = args.lr
    if lrs is not None and len(lrs) not in (1, len(specs)):
        parser.error(f"--lr takes one value or one per optimizer ({len(specs)}), got {len(lrs)}")

    import pyfit
    from .data import load_data

    data = load_data(args.data, args.target, args.features)
    fit_kwargs = {"batch_size": args.batch_size, "progress": False,
                  "model_kwargs": key_values(args.model_arg, "--model-arg", parser)}
    table = pyfit.compare(args.model, data.X, data.y, specs, lrs=lrs[0] if lrs and len(lrs) == 1 else lrs,
                          epochs=args.epochs, seed=args.seed, tol=args.tol, loss=args.loss, fit_kwargs=fit_kwargs)
    table.plot(args.plot)
    if args.json:
        print(json.dumps({"model": table.model, "loss": table.loss, "data": data.path, "rows": table.to_dicts(),
                          "tol": table.tol, "start_loss": _finite(table.start_loss),
                          "best_loss": _finite(table.best_loss), "plot": args.plot}))
    else:
        print(f"{data.X.shape[0]} rows of {data.path}: features {', '.join(data.features)}; "
              f"target {', '.join(data.target)}")
        print(table.to_text())
        print(f"plot: {args.plot}")
    return EXIT_OK


def plugins(args, parser) -> int:
    """Every registry entry with its source and description, then the plugins that failed."""
    from . import losses, models, optimizers, schedulers  # noqa: F401 (importing them registers the built-ins)
    from .registry import LOSSES, MODELS, OPTIMIZERS, SCHEDULERS

    failed = []
    for title, registry in (("models", MODELS), ("losses", LOSSES), ("optimizers", OPTIMIZERS),
                            ("schedulers", SCHEDULERS)):
        entries = registry.entries()
        print(f"{title} ({len(entries)}):")
        width = max((len(e.name) for e in entries), default=0)
        for entry in entries:
            print(f"  {entry.name:<{width}}  [{entry.source}]  {entry.description}")
        failed.extend(registry.failed_plugins)
    print(f"failed plugins ({len(failed)}):")
    for plugin in failed:
        print(f"  {plugin.group}: {plugin.name} = {plugin.value} from {plugin.distribution}: {plugin.reason}")
    return EXIT_OK


def info(args, parser) -> int:
    """Versions, the ops backend (and why not the compiled one), threads and CUDA devices."""
    import warnings

    import torch

    from . import __version__, ops

    with warnings.catch_warnings():  # the reason is printed below; the warning would say it twice
        warnings.simplefilter("ignore")
        backend, reason = ops.backend(), ops.backend_reason()
    print(f"pyfit        {__version__}")
    print(f"torch        {torch.__version__}")
    print(f"python       {platform.python_version()} ({sys.executable})")
    print(f"ops backend  {backend}" + (f" (why not cpp: {reason})" if backend != "cpp" and reason else ""))
    print(f"threads      {torch.get_num_threads()}")
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    print(f"cuda         {count} device(s)" + (f", CUDA {torch.version.cuda}" if count else ""))
    for k in range(count):
        print(f"  cuda:{k}     {torch.cuda.get_device_name(k)}")
    return EXIT_OK

