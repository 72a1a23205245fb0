"""Data-parallel fits under torchrun (gloo on loopback), against the same fits on one process.

Every launch is a real ``torchrun`` of tests/torchrun_fits.py (or of ``python -m
pyfit fit``); the scenarios of one launch share its start-up.
"""

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

import pyfit
from torchrun_launch import torchrun

HERE = os.path.dirname(os.path.abspath(__file__))
WORKER = os.path.join(HERE, "torchrun_fits.py")

pytestmark = pytest.mark.skipif(not torch.distributed.is_available() or sys.platform == "win32",
                                reason="torch.distributed with gloo is needed")

ROWS, FEATURES = 601, 4
# a fit of every path: fused/summed linear under each kind of loss and optimizer, full batch and
# shuffled minibatches, autograd (an MLP), lr="auto", and a data file read by rows and streamed
SCENARIOS = {
    "sgd": {"fit": {"lr": 0.01, "epochs": 40, "tol": None, "seed": 0, "standardize": True}},
    "adam": {"fit": {"optimizer": "adam", "lr": 0.05, "epochs": 40, "tol": None, "seed": 0}},
    "huber_minibatch": {"fit": {"loss": "huber", "lr": 0.01, "epochs": 4, "batch_size": 64, "shuffle": True,
                                "tol": None, "seed": 0, "standardize": True}},
    "mlp": {"fit": {"model": "mlp", "model_kwargs": {"hidden": [8]}, "optimizer": "adam", "lr": 0.01,
                    "epochs": 30, "tol": None, "seed": 0, "standardize": True}},
    "auto": {"fit": {"seed": 0, "standardize": True}},
    # a model the script builds itself, unseeded: each rank draws its own, and rank 0's is the fit's start
    "own_model": {"own_model": True, "fit": {"model": "mlp", "model_kwargs": {"hidden": [6]}, "lr": 0.01,
                                             "epochs": 5, "tol": None, "seed": 0}},
    "file": {"data": {"kind": "npy"}, "fit": {"epochs": 40, "tol": None, "seed": 0, "standardize": True}},
    "streamed": {"data": {"kind": "npy"}, "fit": {"epochs": 40, "tol": None, "seed": 0, "standardize": True,
                                                  "chunk_mb": 0.005}},
    # streamed minibatches are drawn chunk-wise, each rank giving every batch its share: not the single
    # process's batches, so only the outcome is compared
    "streamed_minibatch": {"data": {"kind": "npy"}, "fit": {"epochs": 20, "tol": None, "seed": 0, "lr": 0.01,
                                                            "standardize": True, "chunk_mb": 0.005,
                                                            "batch_size": 50, "shuffle": True}},
}
DRAWN_CHUNK_WISE = ("streamed_minibatch",)


def _write_data(directory):
    rng = np.random.default_rng(0)  # as torchrun_fits._data makes it
    X = rng.normal(size=(ROWS, FEATURES)) * rng.uniform(0.5, 20, size=FEATURES) + rng.uniform(-50, 50, size=FEATURES)
    y = X @ rng.normal(size=FEATURES) + 3.0 + rng.normal(size=ROWS)
    np.save(os.path.join(directory, f"data-{ROWS}-{FEATURES}.npy"), np.column_stack([X, y]).astype(np.float32))
    return X, y


def _environment(timeout=None):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.dirname(HERE), os.environ.get("PYTHONPATH", "")]),
               OMP_NUM_THREADS="1")
    if timeout is not None:
        env["PYFIT_TEST_TIMEOUT"] = str(timeout)
    return env


def _torchrun(ranks, *args, timeout=None, limit=240, written=lambda: False):
    return torchrun(ranks, list(args), env=_environment(timeout), limit=limit, written=written)


def _run(directory, scenarios, ranks=None, timeout=None):
    """Run the scenarios on one process (ranks None) or under torchrun; returns {name: [record per rank]}."""
    spec = os.path.join(directory, f"scenarios-{ranks}.json")
    with open(spec, "w") as handle:
        json.dump(scenarios, handle)
    out = os.path.join(directory, f"out-{ranks}")
    os.makedirs(out, exist_ok=True)
    for name in os.listdir(directory):  # the data files the scenarios read
        if name.endswith(".npy"):
            os.link(os.path.join(directory, name), os.path.join(out, name)) if not os.path.exists(
                os.path.join(out, name)) else None
    if ranks is None:
        done = subprocess.run([sys.executable, WORKER, spec, out], capture_output=True, text=True,
                              env=_environment(), timeout=240)
    else:
        def written():
            return all(os.path.exists(os.path.join(out, f"{name}.{rank}.json"))
                       for name in scenarios for rank in range(ranks))

        done = _torchrun(ranks, WORKER, spec, out, timeout=timeout, written=written)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = {}
    for name in scenarios:
        count = ranks or 1
        results[name] = [json.load(open(os.path.join(out, f"{name}.{rank}.json"))) for rank in range(count)]
    return results


def _relative(a, b):
    a = np.concatenate([np.asarray(p) for p in a])
    b = np.concatenate([np.asarray(p) for p in b])
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12))


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    directory = str(tmp_path_factory.mktemp("single"))
    _write_data(directory)
    return directory, _run(directory, SCENARIOS)


@pytest.mark.parametrize("ranks", [2, 3])
def test_every_rank_ends_with_the_single_process_fit(single, tmp_path, ranks):
    _write_data(str(tmp_path))
    _, alone = single
    together = _run(str(tmp_path), SCENARIOS, ranks)
    for name in SCENARIOS:
        reference = alone[name][0]
        records = together[name]
        for record in records[1:]:  # every rank holds the same parameters and history
            assert record["params"] == records[0]["params"], name
            assert record["loss"] == records[0]["loss"], name
            assert record["scores"] == records[0]["scores"], name
        if name == "own_model":  # the processes started from other draws than the single one did
            continue
        if name in DRAWN_CHUNK_WISE:
            assert records[0]["scores"]["r2"] == pytest.approx(reference["scores"]["r2"], abs=1e-3), name
            continue
        assert _relative(records[0]["params"], reference["params"]) <= 1e-5, name
        assert records[0]["epochs"] == reference["epochs"], name
        assert np.allclose(records[0]["loss"], reference["loss"], rtol=1e-5), name
        assert records[0]["lr"] == pytest.approx(reference["lr"], rel=1e-6), name
        assert records[0]["scores"]["r2"] == pytest.approx(reference["scores"]["r2"], abs=1e-6), name
    # the paths taken: the linear fits add the compiled sums over the ranks, the MLP autograd's gradients
    assert together["sgd"][0]["backend"].endswith("summed-linear")
    assert together["streamed"][0]["backend"].endswith("summed-linear")
    assert together["mlp"][0]["backend"].endswith("autograd")
    assert alone["sgd"][0]["backend"].endswith("fused-linear")


def test_ranks_that_pass_different_rows_are_refused_on_every_rank(tmp_path):
    directory = str(tmp_path)
    spec = os.path.join(directory, "scenarios.json")
    with open(spec, "w") as handle:
        json.dump({"own_rows": {"own_rows": True, "fit": {"lr": 0.01, "epochs": 3, "seed": 0}}}, handle)
    done = _torchrun(2, WORKER, spec, directory)
    output = done.stdout + done.stderr
    assert done.returncode != 0
    assert output.count("rank 1 passed other data than rank 0") >= 1, output[-3000:]
    assert not os.path.exists(os.path.join(directory, "own_rows.0.json"))


def test_a_checkpoint_resumes_on_another_number_of_ranks(tmp_path):
    directory = str(tmp_path)
    checkpoint = os.path.join(directory, "fit.pt")
    settings = {"lr": 0.01, "tol": None, "seed": 0, "standardize": True, "batch_size": 100, "shuffle": True}
    _run(directory, {"first": {"fit": {**settings, "epochs": 6, "checkpoint": checkpoint}}}, ranks=2)
    assert pyfit.load_checkpoint(checkpoint).epoch == 6
    resumed = _run(directory, {"resumed": {"fit": {**settings, "epochs": 15, "resume_from": checkpoint,
                                                   "model": None}}}, ranks=3)["resumed"][0]
    unbroken = _run(directory, {"unbroken": {"fit": {**settings, "epochs": 15}}})["unbroken"][0]
    assert resumed["epochs"] == 15
    assert _relative(resumed["params"], unbroken["params"]) <= 1e-5
    assert np.allclose(resumed["loss"], unbroken["loss"], rtol=1e-5)


@pytest.mark.parametrize("how", ["kill", "hang"])
def test_a_rank_that_dies_or_hangs_stops_the_others_within_the_timeout(tmp_path, how):
    directory = str(tmp_path)
    checkpoint = os.path.join(directory, "fit.pt")
    scenarios = {"faulty": {"die": 12, "how": how,
                            "fit": {"lr": 0.01, "epochs": 10**6, "tol": None, "seed": 0, "standardize": True,
                                    "checkpoint": checkpoint, "checkpoint_every": 5}}}
    spec = os.path.join(directory, "scenarios.json")
    with open(spec, "w") as handle:
        json.dump(scenarios, handle)
    timeout = 5
    began = time.monotonic()
    done = _torchrun(2, WORKER, spec, directory, timeout=timeout, limit=120)
    elapsed = time.monotonic() - began
    output = done.stdout + done.stderr
    assert done.returncode != 0, output[-3000:]
    # start-up (two processes importing torch) plus the wait, well short of hanging
    assert elapsed < 60, output[-3000:]
    if how == "hang":  # only the timeout can notice a live process that stopped answering
        assert "rank 0 of 2 lost the other ranks" in output and f"{timeout:g} s timeout" in output, output[-3000:]
    else:
        assert "lost the other ranks" in output or "SIGKILL" in output, output[-3000:]
    # the checkpoint written before the fault is whole, and resumes on one process
    saved = pyfit.load_checkpoint(checkpoint)
    assert saved.epoch == 10
    resumed = pyfit.fit(None, *_tensors(), resume_from=checkpoint, epochs=15, lr=0.01, tol=None, seed=0)
    unbroken = pyfit.fit("linear", *_tensors(), epochs=15, lr=0.01, tol=None, seed=0, standardize=True)
    assert torch.allclose(resumed.model.weight, unbroken.model.weight, rtol=1e-5)


def _tensors():
    rng = np.random.default_rng(0)  # torchrun_fits._data's default data
    X = rng.normal(size=(ROWS, FEATURES)) * rng.uniform(0.5, 20, size=FEATURES) + rng.uniform(-50, 50, size=FEATURES)
    y = X @ rng.normal(size=FEATURES) + 3.0 + rng.normal(size=ROWS)
    return torch.tensor(X, dtype=torch.float32), torch.tensor(y, dtype=torch.float32)


def test_the_command_prints_once_under_torchrun_and_fits_as_one_process(tmp_path):
    X, y = _write_data(str(tmp_path))
    path = os.path.join(str(tmp_path), "data.csv")
    with open(path, "w") as handle:
        handle.write(",".join([f"x{j}" for j in range(FEATURES)] + ["y"]) + "\n")
        for row, target in zip(X, y):
            handle.write(",".join(repr(float(v)) for v in row) + f",{float(target)!r}\n")
    arguments = ["-m", "pyfit", "fit", path, "--target", "y", "--seed", "0", "--json"]
    # the command's work is its report: rank 0 prints it last, and running it again changes nothing
    together = _torchrun(2, *arguments, written=lambda: True)
    alone = subprocess.run([sys.executable, *arguments], capture_output=True, text=True, env=_environment())
    assert together.returncode == 0 and alone.returncode == 0, together.stderr[-3000:] + alone.stderr[-3000:]
    lines = [line for line in together.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == 1, together.stdout  # rank 0 alone reports
    report, expected = json.loads(lines[0]), json.loads(alone.stdout)
    assert report["backend"].endswith("summed-linear") and expected["backend"].endswith("fused-linear")
    assert report["epochs"] == expected["epochs"]
    for name, values in expected["parameters"].items():
        assert np.allclose(report["parameters"][name], values, rtol=1e-5, atol=1e-6), name
    assert report["r2"] == pytest.approx(expected["r2"], abs=1e-6)
