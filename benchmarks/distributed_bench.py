"""The all-reduce overhead: a data-parallel fit on 2 ranks under torchrun against one process.

bench.py calls :func:`overhead`, which runs this file as a script, once per
contender and repeat, in alternation: under ``torchrun --nproc-per-node 2`` (gloo
on loopback, 1 thread per rank) and as one process on 2 threads and on 1. Every
rank builds the same data from the same seed and calls pyfit.fit on all of it, as
a user's script under torchrun does (each rank then steps on its own shard and
the gradients are summed over the ranks). After one untimed fit, ``--fits`` fits
are timed by their own clock, ``result.seconds``; each rank writes its times as
``rank<r>.json`` into the ``--reports`` folder. The command's wall time (start-up
of every process, the data, the untimed fit and the scores included) is taken too.

    python benchmarks/distributed_bench.py linear --threads 2 --reports /tmp/one
    OMP_NUM_THREADS=1 torchrun --nproc-per-node 2 --standalone \\
        benchmarks/distributed_bench.py linear --threads 1 --reports /tmp/two
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Tuple

import torch

import pyfit


@dataclass(frozen=True)
class Workload:
    """A fit of synthetic data: its shape and the settings every contender fits it with."""

    title: str
    rows: int
    features: int
    fit: Dict[str, Any]  # pyfit.fit's model and settings, after the data
    model: Callable[[int], torch.nn.Module]


WORKLOADS = {
    # the linear path: one process takes the fused op, the ranks ops.linear_sums plus the all-reduce
    "linear": Workload("linear 2,097,152 x 16 float32, mse, sgd lr 0.01, 30 full-batch epochs", 2_097_152, 16,
                       dict(loss="mse", optimizer="sgd", lr=0.01, epochs=30, tol=None),
                       lambda d: pyfit.Linear(d)),
    # the autograd path: the ranks all-reduce every parameter's gradient at every step
    "mlp": Workload("MLP 16-32-1 (relu) on 65,536 x 16 float32, mse, adam lr 1e-3, 40 full-batch epochs",
                    65_536, 16, dict(loss="mse", optimizer="adam", lr=1e-3, epochs=40, tol=None),
                    lambda d: pyfit.MLP(d, hidden=(32,))),
}


def data(workload: Workload) -> Tuple[torch.Tensor, torch.Tensor]:
    """The workload's X (rows, features) and y (rows,): the same on every rank (a fixed seed)."""
    g = torch.Generator().manual_seed(0)
    X = torch.randn(workload.rows, workload.features, generator=g)
    y = torch.tanh(X @ torch.randn(workload.features, generator=g)) + 0.1 * torch.randn(workload.rows, generator=g)
    return X, y


def linear_sums_runner() -> str:
    """What runs pyfit.ops.linear_sums, the per-step sums of the data-parallel and streamed linear fits."""
    module = pyfit.ops.implementation().linear_sums.__module__
    return f"{module}.linear_sums" + (" (the pure-torch reference)" if module.endswith("_reference") else "")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workload", choices=sorted(WORKLOADS))
    parser.add_argument("--threads", type=int, required=True, help="CPU threads of each process's fit")
    parser.add_argument("--fits", type=int, default=3, help="timed fits after the untimed one")
    parser.add_argument("--reports", required=True, help="folder to write rank<r>.json into")
    args = parser.parse_args(argv)
    workload = WORKLOADS[args.workload]
    X, y = data(workload)

    def fit() -> pyfit.FitResult:
        # the same starting model on every rank and in every process (torch seeds each process on its own)
        torch.manual_seed(0)
        return pyfit.fit(workload.model(workload.features), X, y, seed=0, threads=args.threads, **workload.fit)

    fit()  # lazy set-up (the process group, torch's thread pool, first allocations) is not timed
    results = [fit() for _ in range(args.fits)]
    world = pyfit.distributed.current()
    rank = 0 if world is None else world.rank
    report = {
        "rank": rank,
        "ranks": 1 if world is None else world.size,
        "threads": args.threads,
        "seconds": [result.seconds for result in results],
        "backend": results[-1].backend,
        "ops_backend": pyfit.ops.backend(),
        "linear_sums": linear_sums_runner(),
        "final_loss": results[-1].history["loss"][-1],
    }
    with open(os.path.join(args.reports, f"rank{rank}.json"), "w") as out:  # a file each: no mixed lines
        json.dump(report, out)
    return 0


# (name, processes, threads of each): 2 threads in all, or 1
CONTENDERS = (("2 ranks x 1 thread (torchrun)", 2, 1), ("1 process x 2 threads", 1, 2), ("1 process x 1 thread", 1, 1))


def launch(workload: str, ranks: int, threads: int, fits: int) -> Tuple[Dict[str, Any], float]:
    """Run this script on ``ranks`` processes (under torchrun when more than 1) of ``threads`` threads each:
    rank 0's report and the command's wall seconds."""
    with tempfile.TemporaryDirectory(prefix="pyfit-bench-") as folder:
        script = [os.path.abspath(__file__), workload, "--threads", str(threads), "--fits", str(fits),
                  "--reports", folder]
        launcher = ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={ranks}"] if ranks > 1 else []
        command = [sys.executable, *launcher, *script]
        environment = {**os.environ, "OMP_NUM_THREADS": str(threads)}  # torch's pool, as torchrun users set it
        started = time.perf_counter()
        done = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=1800)
        wall = time.perf_counter() - started
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} exited with {done.returncode}:\n{done.stderr[-3000:]}")
        written = sorted(os.listdir(folder))
        if written != sorted(f"rank{rank}.json" for rank in range(ranks)):
            raise RuntimeError(f"{' '.join(command)}: expected a report from each of {ranks} ranks, got {written}")
        with open(os.path.join(folder, "rank0.json")) as report:
            return json.load(report), wall


def overhead(workload: str, repeats: int, fits: int = 3) -> Dict[str, Dict[str, Any]]:
    """Every contender run ``repeats`` times, in alternation: for each, the median of rank 0's fit seconds
    (``fit``, over all its timed fits), the median wall seconds of its command (``wall``) and its last
    report (``report``: backend, final loss, ...)."""
    seconds: Dict[str, List[float]] = {name: [] for name, _, _ in CONTENDERS}
    walls: Dict[str, List[float]] = {name: [] for name, _, _ in CONTENDERS}
    reports: Dict[str, Dict[str, Any]] = {}
    for _ in range(repeats):
        for name, ranks, threads in CONTENDERS:
            reports[name], wall = launch(workload, ranks, threads, fits)
            seconds[name] += reports[name]["seconds"]
            walls[name].append(wall)
    return {name: {"fit": statistics.median(seconds[name]), "wall": statistics.median(walls[name]),
                   "report": reports[name]} for name, _, _ in CONTENDERS}


if __name__ == "__main__":
    sys.exit(main())
