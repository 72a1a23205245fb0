"""How long the ``pyfit`` command takes before it does any work.

Each command runs in a fresh interpreter, the commands in alternation so that the
machine's load hits them alike; prints the median of each and the two start-up
targets. A script, not a test: on a shared machine rerun before drawing conclusions.

    python benchmarks/startup.py              # 5 runs of each
    python benchmarks/startup.py --repeats 9
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HELP_TARGET_S = 0.5  # `pyfit --help`
FIT_OVER_TORCH_TARGET_S = 1.0  # `pyfit fit` of 200 rows, beyond `import torch`
ROWS = 200


def write_points(path: str) -> None:
    """200 rows of y = 3 x1 - 2 x2 + 0.5 plus a little noise."""
    rng = random.Random(0)
    with open(path, "w") as handle:
        handle.write("x1,x2,y\n")
        for _ in range(ROWS):
            x1, x2 = rng.random(), rng.random()
            handle.write(f"{x1!r},{x2!r},{3 * x1 - 2 * x2 + 0.5 + rng.gauss(0, 0.01)!r}\n")


def medians(commands: Dict[str, Tuple[List[str], int]], repeats: int, env: Dict[str, str],
            cwd: str) -> Dict[str, float]:
    """The median wall time of each command, each run checked for its expected exit status."""
    samples: Dict[str, List[float]] = {name: [] for name in commands}
    for _ in range(repeats):
        for name, (command, status) in commands.items():
            start = time.perf_counter()
            done = subprocess.run(command, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                  text=True)
            samples[name].append(time.perf_counter() - start)
            if done.returncode != status:
                raise SystemExit(f"{name}: exit status {done.returncode}, expected {status}\n{done.stderr}")
    return {name: statistics.median(times) for name, times in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="runs of each command (5)")
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    python = sys.executable
    with tempfile.TemporaryDirectory() as scratch:
        points = os.path.join(scratch, "points.csv")
        write_points(points)
        fit = f"pyfit fit ({ROWS} rows)"
        commands = {
            "python -c pass": ([python, "-c", "pass"], 0),
            "pyfit --help": ([python, "-m", "pyfit", "--help"], 0),
            "pyfit fit --epochs 0 (usage error)": ([python, "-m", "pyfit", "fit", "--epochs", "0", points], 2),
            'python -c "import torch"': ([python, "-c", "import torch"], 0),
            # what torch imports when a process builds its first optimizer
            'python -c "import torch, torch._dynamo"': ([python, "-c", "import torch, torch._dynamo"], 0),
            fit: ([python, "-m", "pyfit", "fit", points, "--target", "y", "--quiet"], 0),
        }
        # run from the scratch directory: `python -m` puts the working directory first on sys.path
        medians(commands, 1, env, scratch)  # warm the file caches
        times = medians(commands, args.repeats, env, scratch)
    print(f"median of {args.repeats} runs each, {os.cpu_count()} CPUs, load average "
          f"{', '.join(f'{v:.2f}' for v in os.getloadavg())} at the end")
    for name, seconds in times.items():
        print(f"  {name:<42} {seconds:6.2f} s")
    help_s, torch_s, fit_s = times["pyfit --help"], times['python -c "import torch"'], times[fit]
    print(f"pyfit --help: {help_s:.2f} s (target under {HELP_TARGET_S} s: "
          f"{'met' if help_s < HELP_TARGET_S else 'missed'})")
    over = fit_s - torch_s
    print(f"pyfit fit beyond import torch: {over:.2f} s (target at most {FIT_OVER_TORCH_TARGET_S} s: "
          f"{'met' if over <= FIT_OVER_TORCH_TARGET_S else 'missed'})")


if __name__ == "__main__":
    main()
