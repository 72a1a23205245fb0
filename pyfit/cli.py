"""The ``pyfit`` command: ``demo``, ``fit``, ``lr-find``, ``predict``, ``compare``, ``plugins`` and ``info``.

Exit status: 0 success, 1 a failed fit or bad data (one message on stderr, no
traceback; ``PYFIT_DEBUG=1`` shows it), 2 a usage error, 130 an interrupt.

    $ pyfit demo --output ./pyfit-demo
    $ pyfit fit points.csv --target y --model polynomial --model-arg degree=3 --lr 0.1 --save fit.pt
    $ pyfit predict fit.pt new-points.csv --output predictions.csv
    $ pyfit compare points.csv --target y --optimizer sgd sgd:momentum=0.9 adam lbfgs --plot compare.png
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Optional, Sequence

from . import defaults
from ._cli_values import EXIT_FAILED, EXIT_INTERRUPTED, learning_rate


def _add_demo(commands) -> None:
    demo = commands.add_parser("demo", help="fit y = 3x + 0.8 on 50 generated points and plot it",
                               description="Fit the line y = 3x + 0.8 to 50 points with x uniform in [0, 1), "
                                           "print the fitted parameters and save the loss and fit plots.")
    demo.add_argument("--output", default="pyfit-demo", metavar="DIR", help="where the plots go (./pyfit-demo)")
    demo.add_argument("--epochs", type=int, default=defaults.DEMO_EPOCHS,
                      help=f"full-batch SGD epochs ({defaults.DEMO_EPOCHS})")
    demo.add_argument("--seed", type=int, default=defaults.DEMO_SEED,
                      help=f"seed of the points and the model ({defaults.DEMO_SEED})")
    demo.add_argument("--lr", type=float, default=defaults.DEMO_LR,
                      help=f"learning rate ({defaults.DEMO_LR}; 0.01 stops short at w=2.93)")


def _add_fit(commands) -> None:
    fit = commands.add_parser("fit", help="fit a model to a data file",
                              description="Fit a model to the columns of a CSV, .npy or .npz file. Flags win "
                                          "over --config, which wins over a --resume checkpoint's settings. "
                                          "Under `torchrun --nproc-per-node N -m pyfit fit ...` the fit is "
                                          "data-parallel: each process reads its share of the rows, and rank 0 "
                                          "prints and writes.")
    fit.add_argument("data", help="CSV with a header line, .npy 2-D array (columns '0', '1', ...), .npz, or a "
                                  "directory of .npy or CSV shards with the same columns")
    fit.add_argument("--target", help="the column(s) to predict, comma-separated")
    fit.add_argument("--features", help="the input columns, comma-separated (default: all the others)")
    fit.add_argument("--model", help=f"registered model name (default {defaults.MODEL}; see `pyfit plugins`)")
    fit.add_argument("--loss", help=f"registered loss name (default {defaults.LOSS})")
    fit.add_argument("--optimizer", help=f"registered optimizer name (default {defaults.OPTIMIZER})")
    fit.add_argument("--scheduler", help="registered LR scheduler name (default none)")
    for flag, what in (("--model-arg", "model"), ("--opt-arg", "optimizer"), ("--loss-arg", "loss"),
                       ("--sched-arg", "scheduler")):
        fit.add_argument(flag, action="append", metavar="KEY=VALUE",
                         help=f"a {what} argument; repeat it; values are JSON (3, 0.5, true, [8,8]) or text")
    fit.add_argument("--lr", type=learning_rate,
                     help="learning rate, or 'auto' (the default): for SGD on a linear or polynomial model under "
                          "mse/sse the step that provably cannot diverge, else a range test's suggestion")
    fit.add_argument("--epochs", type=int,
                     help=f"the most epochs in all, resumed ones included (default {defaults.EPOCHS_LEAST_SQUARES} for "
                          f"SGD on a linear model under mse or sse, else {defaults.EPOCHS}; the fit stops earlier "
                          "once converged, see --tol)")
    fit.add_argument("--tol", type=float,
                     help="stop when the loss improves by less than this fraction of its best for "
                          f"--n-iter-no-change epochs (default {defaults.TOL}; 0 never stops early)")
    fit.add_argument("--n-iter-no-change", type=int, metavar="N", help=f"epochs without improvement (default {defaults.N_ITER_NO_CHANGE})")
    fit.add_argument("--standardize", action=argparse.BooleanOptionalAction, default=None,
                     help="standardize the features with their training mean and spread, kept in the model "
                          "(default on); weights are reported in the data's units")
    fit.add_argument("--batch-size", type=int, help="minibatch size (default: full batch)")
    fit.add_argument("--shuffle", action="store_true", default=None, help="shuffle minibatches every epoch")
    fit.add_argument("--seed", type=int, help="seed of the model's initialisation and the shuffling")
    fit.add_argument("--early-stopping", type=int, metavar="PATIENCE",
                     help="stop after PATIENCE epochs without a lower loss (the validation loss, with "
                          "--validation-split, and then the best epoch's parameters are kept)")
    fit.add_argument("--validation-split", type=float, metavar="FRACTION",
                     help="hold out this fraction of the rows (drawn with --seed) and report their scores")
    fit.add_argument("--config", metavar="FILE.toml", help="settings as TOML, with the flags' names as keys")
    fit.add_argument("--save", metavar="CHECKPOINT", help="save the fit here (also on Ctrl-C)")
    fit.add_argument("--resume", metavar="CHECKPOINT", help="continue this checkpoint's fit up to --epochs")
    fit.add_argument("--plot", metavar="DIR",
                     help="save loss.png and predictions.png (predicted against actual) here, and fit.png "
                          "for one feature")
    fit.add_argument("--chunk-mb", type=float, metavar="MB",
                     help=f"hold at most about this many MB of the data's rows at once (default {defaults.CHUNK_MB:g}): "
                          "a larger .npy, CSV or directory of shards is streamed, a chunk at a time every epoch "
                          "(linear or polynomial models under mse, sse, mae or huber; minibatches drawn chunk-wise)")
    fit.add_argument("--json", action="store_true", help="print one JSON object instead of the summary")
    fit.add_argument("--quiet", action="store_true", help="no progress bar and no summary")


def _add_lr_find(commands) -> None:
    lr_find = commands.add_parser(
        "lr-find", help="run a learning-rate range test on a data file and plot it",
        description="One optimizer step at each of a geometric series of learning rates, on a copy of the model; "
                    "prints the suggested lr (a tenth of the rate with the lowest loss) and saves the plot.")
    lr_find.add_argument("data", help="CSV with a header line, .npy or .npz, as for `pyfit fit`")
    lr_find.add_argument("--target", required=True, help="the column(s) to predict, comma-separated")
    lr_find.add_argument("--features", help="the input columns, comma-separated (default: all the others)")
    lr_find.add_argument("--model", default=defaults.MODEL, help=f"registered model name ({defaults.MODEL})")
    lr_find.add_argument("--loss", default=defaults.LOSS, help=f"registered loss name ({defaults.LOSS})")
    lr_find.add_argument("--optimizer", default=defaults.OPTIMIZER,
                         help=f"registered optimizer name ({defaults.OPTIMIZER})")
    for flag, what in (("--model-arg", "model"), ("--opt-arg", "optimizer"), ("--loss-arg", "loss")):
        lr_find.add_argument(flag, action="append", metavar="KEY=VALUE", help=f"a {what} argument; repeat it")
    lr_find.add_argument("--batch-size", type=int, help="minibatch size (default: full batch)")
    lr_find.add_argument("--standardize", action=argparse.BooleanOptionalAction, default=True,
                         help="standardize the features first, as `pyfit fit` does (default on)")
    lr_find.add_argument("--seed", type=int, default=0, help="seed of the model's initialisation (0)")
    lr_find.add_argument("--start-lr", type=float, default=1e-6, help="the smallest rate tried (1e-6)")
    lr_find.add_argument("--end-lr", type=float, default=10.0, help="the largest rate tried (10)")
    lr_find.add_argument("--steps", type=int, default=100, help="rates tried (100)")
    lr_find.add_argument("--plot", default="lr-find.png", metavar="FILE", help="where the plot goes (lr-find.png)")
    lr_find.add_argument("--json", action="store_true", help="print one JSON object instead of the summary")


def _add_predict(commands) -> None:
    predict = commands.add_parser("predict", help="predict with a saved fit",
                                  description="Write a checkpoint's predictions for a data file as CSV.")
    predict.add_argument("checkpoint", help="a checkpoint written by `pyfit fit --save`")
    predict.add_argument("data", help="CSV, .npy or .npz with the feature columns")
    predict.add_argument("--output", metavar="FILE", help="write the CSV here instead of stdout")
    predict.add_argument("--features", help="the input columns (default: those the checkpoint was fit on)")


def _add_compare(commands) -> None:
    compare = commands.add_parser(
        "compare", help="fit the same data with several optimizers and compare them",
        description="Fit one model with each optimizer from the same seed, print a table (final loss, epochs "
                    "and seconds to reach --tol, how each stopped; the closed-form least squares for a linear "
                    "model under mse or sse) and save every loss curve on one plot.")
    compare.add_argument("data", help="CSV with a header line, .npy 2-D array or .npz")
    compare.add_argument("--target", required=True, help="the column(s) to predict, comma-separated")
    compare.add_argument("--features", help="the input columns, comma-separated (default: all the others)")
    compare.add_argument("--optimizer", nargs="+", default=list(defaults.COMPARE_OPTIMIZERS), metavar="NAME[:KEY=VALUE,...]",
                         help="optimizers to compare, each with its settings, e.g. sgd sgd:momentum=0.9 "
                              f"lbfgs:lr=1,line_search_fn=strong_wolfe (default: {' '.join(defaults.COMPARE_OPTIMIZERS)})")
    compare.add_argument("--lr", type=float, nargs="+", metavar="LR",
                         help="one learning rate for all, or one per optimizer (default: fit's)")
    compare.add_argument("--model", default=defaults.MODEL, help=f"registered model name (default {defaults.MODEL})")
    compare.add_argument("--model-arg", action="append", metavar="KEY=VALUE", help="a model argument; repeat it")
    compare.add_argument("--loss", default=defaults.LOSS, help=f"registered loss name (default {defaults.LOSS})")
    compare.add_argument("--epochs", type=int, default=defaults.COMPARE_EPOCHS,
                         help=f"epochs per optimizer (default {defaults.COMPARE_EPOCHS})")
    compare.add_argument("--batch-size", type=int, help="minibatch size (default: full batch)")
    compare.add_argument("--seed", type=int, default=0, help="seed of the initial parameters, shared (default 0)")
    compare.add_argument("--tol", type=float, default=defaults.COMPARE_TOL,
                         help="an optimizer reaches TOL when all but TOL of the gap from the start loss to the "
                              f"best loss is closed ({defaults.COMPARE_TOL})")
    compare.add_argument("--plot", default="compare.png", metavar="PATH",
                         help="where the loss curves go (default compare.png)")
    compare.add_argument("--json", action="store_true", help="print one JSON object instead of the table")


def build_parser() -> argparse.ArgumentParser:
    """The ``pyfit`` argument parser, every subcommand with its own ``--help``."""
    from ._version import __version__

    parser = argparse.ArgumentParser(prog="pyfit", description="Fit models to data with PyTorch.")
    parser.add_argument("--version", action="version", version=f"pyfit {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    _add_demo(commands)
    _add_fit(commands)
    _add_lr_find(commands)
    _add_predict(commands)
    _add_compare(commands)
    commands.add_parser("plugins", help="list every registered model, loss, optimizer and scheduler",
                        description="Every registry entry with where it comes from, and plugins that failed.")
    commands.add_parser("info", help="versions, the ops backend, threads and devices",
                        description="pyfit, torch and Python versions, the ops backend and the devices.")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the ``pyfit`` command with ``argv`` (default: sys.argv[1:]); returns the exit status."""
    started = time.perf_counter()
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # argparse exits 2 on a usage error, 0 after --help
        return int(exit_.code or 0)
    args.started = started  # `fit` reports the start-up (imports) apart from the fit itself
    try:
        from . import _commands

        return getattr(_commands, args.command.replace("-", "_"))(args, parser)
    except KeyboardInterrupt:
        print("pyfit: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except SystemExit as exit_:  # parser.error inside a command
        return int(exit_.code or 0)
    except BrokenPipeError:  # `pyfit predict ... | head`: the reader left; say nothing more
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_FAILED
    except Exception as error:  # every failure is one line for the user; PYFIT_DEBUG shows the traceback
        if os.environ.get("PYFIT_DEBUG", "").strip() not in ("", "0"):
            raise
        message = str(error.args[0]) if type(error).__name__ == "UnknownNameError" and error.args else str(error)
        print(f"pyfit {args.command}: error: {message}", file=sys.stderr)
        return EXIT_FAILED
