"""examples/distributed_fit.py runs as the README says: on 2 processes under torchrun and on one under python.

Both runs are real processes (torchrun's gloo group on the loopback). Rank 0
alone prints; the two runs fit the same parameters, which are the least-squares
solution of the file the example writes (solved here by numpy, in float64); and
the checkpoint rank 0 writes loads with the model that was printed.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import numpy as np
import pytest

import pyfit
from torchrun_launch import torchrun

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "distributed_fit.py"
NUMBER = r"[-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?"
LAUNCHES = ("torchrun", "python")
EPOCHS = int(re.search(r"^EPOCHS = (\d+)", EXAMPLE.read_text(), re.M).group(1))


def run_example(launch: str, out: Path) -> str:
    env = {**os.environ, "PYFIT_EXAMPLES_OUT": str(out), "PYFIT_TIMEOUT": "60",
           "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    if launch == "torchrun":  # its work is what rank 0 writes last, the checkpoint
        done = torchrun(2, [str(EXAMPLE)], env=env, limit=120, cwd=str(out),
                        written=lambda: any(out.rglob("distributed_fit.pt")))
    else:
        done = subprocess.run([sys.executable, str(EXAMPLE)], cwd=out, env=env, capture_output=True, text=True,
                              timeout=120)
    assert done.returncode == 0, f"{launch} exited {done.returncode}\n{done.stdout}\n{done.stderr[-3000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Dict[str, Dict]:
    found = {}
    for launch in LAUNCHES:
        out = tmp_path_factory.mktemp(launch)
        found[launch] = {"out": out, "stdout": run_example(launch, out)}
    return found


def printed_parameters(stdout: str) -> np.ndarray:
    """w then b, from the one line rank 0 prints them on."""
    lines: List[str] = [line for line in stdout.splitlines() if line.startswith("w = [")]
    assert len(lines) == 1, f"the parameters should be printed once, by rank 0:\n{stdout}"
    match = re.match(rf"w = \[([^\]]*)\], b = ({NUMBER})", lines[0])
    assert match, lines[0]
    return np.array([float(v) for v in match.group(1).split(",")] + [float(match.group(2))])


@pytest.mark.parametrize("launch, processes", [("torchrun", "2 processes"), ("python", "1 process")])
def test_rank_0_alone_prints_the_fit(runs, launch, processes):
    stdout = runs[launch]["stdout"]
    for start in ("fit on ", "w = ", "final loss = ", "lr = ", "backend = ", "checkpoint = "):
        count = sum(line.startswith(start) for line in stdout.splitlines())
        assert count == 1, f"{start!r} printed {count} times:\n{stdout}"
    assert f"fit on {processes}:" in stdout, stdout
    # the rows are more than one chunk, so the fit streams them: the summed linear path
    assert re.search(rf"^backend = \S+:summed-linear, {EPOCHS} epochs", stdout, re.M), stdout


def test_two_processes_fit_what_one_fits(runs):
    two, one = (printed_parameters(runs[launch]["stdout"]) for launch in ("torchrun", "python"))
    np.testing.assert_allclose(two, one, rtol=1e-5, atol=0)


@pytest.mark.parametrize("launch", list(LAUNCHES))
def test_the_fit_is_the_least_squares_solution_of_the_file(runs, launch):
    data = np.load(runs[launch]["out"] / "distributed_fit.npy").astype(np.float64)
    design = np.column_stack([data[:, :-1], np.ones(len(data))])
    solution = np.linalg.lstsq(design, data[:, -1], rcond=None)[0]
    np.testing.assert_allclose(printed_parameters(runs[launch]["stdout"]), solution, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("launch", list(LAUNCHES))
def test_the_checkpoint_holds_the_printed_model(runs, launch):
    path = runs[launch]["out"] / "distributed_fit.pt"
    assert f"checkpoint = {path}" in runs[launch]["stdout"]
    saved = pyfit.load_checkpoint(str(path))
    assert saved.epoch == EPOCHS and saved.stop_reason == "completed"
    parameters = np.concatenate([saved.model.weight.detach().numpy().ravel(), saved.model.bias.detach().numpy()])
    np.testing.assert_allclose(parameters, printed_parameters(runs[launch]["stdout"]), rtol=1e-7, atol=0)
