"""The fused linear fit across data shapes: every width D and several outputs K.

Linear model, squared error (mean), plain SGD, full batch, float32, 20 epochs, one
process on torch's default threads. For each (D, K) it times, interleaved and as
medians:

- fused: pyfit's compiled ``linear_fit_`` op, the whole fit in one call;
- hand loop: what a user writes by hand (``nn.Linear``, ``F.mse_loss``,
  ``backward``, ``torch.optim.SGD(fused=True)``, ``zero_grad``);
- read floor: reading X and y once per epoch (``X.sum() + y.sum()``), the least
  any fit that looks at every row each epoch can cost.

N is chosen so that X holds about ``target_mb`` megabytes (at most 4,194,304 rows).
A benchmark, not a test: on a shared machine compare the ratios of one run. The
quick run's X (16 MB) can stay in a large last-level cache, where reading it is
faster than from memory: its read-floor ratios are then stricter than the full run's.

    python benchmarks/sweep.py            # D = 1 .. 4096, K = 1, 4, 16
    python benchmarks/sweep.py --quick    # smaller X, fewer repeats
    python benchmarks/sweep.py --max-d 256
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable, Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F

import pyfit.ops  # noqa: F401  (registers torch.ops.pyfit.*)

try:
    import pyfit._C  # noqa: F401  (the compiled ops themselves)
except ImportError:
    pass

WIDTHS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)
OUTPUTS = (1, 4, 16)
MAX_ROWS = 4_194_304
EPOCHS = 20
LR = 0.01
# the op's codes (csrc/library.cpp): loss 0 squared, reduction 0 mean, optimizer 0 SGD
SQUARED, MEAN, SGD = 0, 0, 0
SGD_SETTINGS = [0.0] * 13  # no momentum, dampening, nesterov, weight decay or maximize


def rows_for(width: int, target_mb: float, max_rows: int = MAX_ROWS) -> int:
    """Rows that make a float32 (N, width) X about target_mb megabytes, at most max_rows."""
    return max(1, min(max_rows, int(target_mb * 2**20) // (4 * width)))


def median_seconds(runs: Dict[str, Callable[[int], object]], repeats: int, epochs: int) -> Dict[str, float]:
    """Median wall time of run(epochs) for each run, the runs taking turns so that a
    change in the machine's load hits them alike; a one-epoch call of each first warms up."""
    for run in runs.values():
        run(1)
    samples: Dict[str, List[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            run(epochs)
            samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(times) for name, times in samples.items()}


def measure(n: int, width: int, outputs: int, repeats: int, epochs: int = EPOCHS, seed: int = 0) -> Dict[str, float]:
    """One row of the sweep: times (ms) of the three runs and their ratios."""
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, width, generator=g)
    y = torch.randn(n, outputs, generator=g)
    start = torch.nn.Linear(width, outputs)  # both fits start from these params

    def fused(epochs: int):
        params = [start.weight.detach().clone(), start.bias.detach().clone()]
        lrs = torch.full((epochs,), LR, dtype=torch.float64)
        losses = torch.ops.pyfit.linear_fit_(X, y, params, [], lrs, None, 0, SQUARED, MEAN, 1.0, SGD,
                                             SGD_SETTINGS, 0)
        if not torch.isfinite(losses).all():  # a fit that stopped early would time too little
            raise RuntimeError(f"the fused fit diverged on N={n} D={width} K={outputs}: {losses}")

    def hand_loop(epochs: int):
        model = torch.nn.Linear(width, outputs)
        model.load_state_dict(start.state_dict())
        optimizer = torch.optim.SGD(model.parameters(), lr=LR, fused=True)
        for _ in range(epochs):
            loss = F.mse_loss(model(X), y)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()

    def read_floor(epochs: int):
        for _ in range(epochs):
            X.sum() + y.sum()

    seconds = median_seconds({"fused": fused, "hand": hand_loop, "read": read_floor}, repeats, epochs)
    ms = {name: 1e3 * value for name, value in seconds.items()}
    return {"N": n, "D": width, "K": outputs, "fused_ms": ms["fused"], "hand_ms": ms["hand"],
            "read_ms": ms["read"], "hand_over_fused": ms["hand"] / ms["fused"],
            "fused_over_read": ms["fused"] / ms["read"]}


def sweep(widths: Sequence[int] = WIDTHS, outputs: Sequence[int] = OUTPUTS, target_mb: float = 128,
          max_rows: int = MAX_ROWS, repeats: int = 5, epochs: int = EPOCHS,
          progress: Optional[Callable[[dict], None]] = None) -> List[dict]:
    """Every (D, K) row of the sweep, D outer; progress(row) is called as each finishes."""
    rows = []
    for width in widths:
        for k in outputs:
            row = measure(rows_for(width, target_mb, max_rows), width, k, repeats, epochs)
            rows.append(row)
            if progress is not None:
                progress(row)
    return rows


TABLE_HEADER = ("| N | D | K | fused ms | hand-loop ms | read-floor ms | hand / fused (>= 1: fused faster) "
                "| fused / read floor (target <= 1.5) |\n|---:|---:|---:|---:|---:|---:|---:|---:|")


def table_row(row: dict) -> str:
    return (f"| {row['N']:,} | {row['D']} | {row['K']} | {row['fused_ms']:.1f} | {row['hand_ms']:.1f} "
            f"| {row['read_ms']:.1f} | {row['hand_over_fused']:.2f} | {row['fused_over_read']:.2f} |")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="X of about 16 MB (N <= 524,288) and 3 repeats instead of 128 MB and 5")
    parser.add_argument("--max-d", type=int, default=max(WIDTHS), help="widest D to measure (default 4096)")
    args = parser.parse_args(argv)
    widths = [d for d in WIDTHS if d <= args.max_d]
    target_mb, max_rows, repeats = (16, 2**19, 3) if args.quick else (128, MAX_ROWS, 5)
    print(f"linear, mse, SGD, full batch, float32, {EPOCHS} epochs, {torch.get_num_threads()} threads, "
          f"X about {target_mb} MB (N <= {max_rows:,}), median of {repeats}")
    print(TABLE_HEADER, flush=True)
    rows = sweep(widths, OUTPUTS, target_mb, max_rows, repeats,
                 progress=lambda row: print(table_row(row), flush=True))
    slower = [r for r in rows if r["hand_over_fused"] < 1]
    over = [r for r in rows if r["fused_over_read"] > 1.5]
    print(f"\nfused slower than the hand loop in {len(slower)} of {len(rows)} shapes; "
          f"above 1.5x the read floor in {len(over)} of {len(rows)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
