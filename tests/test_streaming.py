"""Streamed fits of data files larger than the chunk budget: the in-memory fit's parameters, bounded memory.

A file opened with ``pyfit.open_rows`` whose rows are more than ``chunk_mb`` holds
is fit by reading it again, a chunk at a time, at every pass. The oracle of every
parity test is an ordinary fit of the same rows read whole with ``pyfit.load_data``.
"""

import copy
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

import pyfit

FEATURES = 6
CHUNK_MB = 0.02  # 20 KiB: the files below are 10 to 20 times as large
STREAMED = ("cpp:summed-linear", "reference:summed-linear")


def _table(rows, seed=0, targets=1):
    """Features of different means and spreads (so standardizing matters) and noisy linear targets."""
    rng = np.random.default_rng(seed)
    X = rng.normal(loc=rng.uniform(-2, 2, FEATURES), scale=rng.uniform(0.5, 3, FEATURES), size=(rows, FEATURES))
    y = X @ rng.normal(size=(FEATURES, targets)) + 1.5 + 0.1 * rng.normal(size=(rows, targets))
    return np.concatenate([X, y], axis=1)


def _target(targets=1):
    return ",".join(str(FEATURES + k) for k in range(targets))


def _write_csv(path, values):
    names = [str(j) for j in range(values.shape[1])]
    with open(path, "w") as handle:
        handle.write(",".join(names) + "\n")
        for row in values:
            handle.write(",".join(repr(float(value)) for value in row) + "\n")


def _write(tmp_path, source, values):
    """The values as a .npy file, a CSV file, or a directory of three uneven .npy or CSV shards."""
    if source == "npy":
        path = str(tmp_path / "rows.npy")
        np.save(path, values)
    elif source == "csv":
        path = str(tmp_path / "rows.csv")
        _write_csv(path, values)
    else:
        path = str(tmp_path / "shards")
        os.mkdir(path)
        cuts = [0, len(values) // 5, len(values) // 2, len(values)]
        for k, (start, stop) in enumerate(zip(cuts, cuts[1:])):
            if source == "npy-shards":
                np.save(os.path.join(path, f"part{k}.npy"), values[start:stop])
            else:
                _write_csv(os.path.join(path, f"part{k}.csv"), values[start:stop])
    size = sum(os.path.getsize(os.path.join(path, name)) for name in os.listdir(path)) if os.path.isdir(path) \
        else os.path.getsize(path)
    assert size > 10 * CHUNK_MB * 2**20, size  # the rows are streamed, not held
    return path


def _in_memory(path, target, dtype):
    """The rows as load_data reads them, a directory's shards one after another, as tensors of dtype."""
    paths = [os.path.join(path, name) for name in sorted(os.listdir(path))] if os.path.isdir(path) else [path]
    datasets = [pyfit.load_data(part, target, dtype=dtype) for part in paths]
    X = torch.from_numpy(np.concatenate([data.X for data in datasets])).to(dtype)
    y = torch.from_numpy(np.concatenate([data.y for data in datasets])).to(dtype)
    return X, y


def _parameters(result):
    return {name: value.detach().clone() for name, value in result.model.state_dict().items()}


def _relative_error(got, expected):
    return max(float((got[name].double() - expected[name].double()).norm() / expected[name].double().norm())
               for name in expected)


CASES = [  # source, dtype, loss, optimizer, lr, standardize
    *[("npy", dtype, loss, optimizer, 0.01 if optimizer == "sgd" else 0.05, standardize)
      for dtype in (torch.float32, torch.float64) for loss in ("mse", "mae", "huber")
      for optimizer in ("sgd", "adam") for standardize in (False, True)],
    *[("npy", dtype, "mse", "sgd", "auto", standardize)
      for dtype in (torch.float32, torch.float64) for standardize in (False, True)],
    ("npy", torch.float64, "sse", "sgd", "auto", False),
    ("csv", torch.float64, "mse", "sgd", "auto", True),
    ("csv", torch.float32, "huber", "adam", 0.05, False),
    ("npy-shards", torch.float32, "mse", "sgd", "auto", False),
    ("npy-shards", torch.float64, "mae", "adam", 0.05, True),
    ("csv-shards", torch.float64, "huber", "sgd", 0.01, True),
]


@pytest.mark.parametrize("source, dtype, loss, optimizer, lr, standardize", CASES)
def test_a_streamed_fit_gets_the_in_memory_fit(tmp_path, source, dtype, loss, optimizer, lr, standardize):
    values = _table(2500 if "csv" in source else 5000)
    path = _write(tmp_path, source, values)
    settings = dict(loss=loss, optimizer=optimizer, lr=lr, standardize=standardize, epochs=6, tol=None, seed=3)
    torch.manual_seed(3)
    model = pyfit.Linear(FEATURES, dtype=dtype)
    start = {name: value.clone() for name, value in model.state_dict().items()}
    streamed = pyfit.fit(copy.deepcopy(model), pyfit.open_rows(path, _target(), dtype=dtype), None,
                         chunk_mb=CHUNK_MB, **settings)
    assert streamed.backend in STREAMED
    whole = pyfit.fit(copy.deepcopy(model), *_in_memory(path, _target(), dtype), **settings)
    assert whole.backend not in STREAMED
    got, expected = _parameters(streamed), _parameters(whole)
    assert all(value.dtype == dtype for value in got.values())
    assert _relative_error(got, expected) < 1e-5, (got, expected)
    np.testing.assert_allclose(streamed.history["loss"], whole.history["loss"], rtol=1e-5)
    assert streamed.lr_chosen == pytest.approx(whole.lr_chosen, rel=1e-9)
    assert streamed.scores["r2"] == pytest.approx(whole.scores["r2"], rel=1e-5, abs=1e-6)
    # the fit moved the parameters far more than the tolerance: the comparison says something
    moved = {name: value for name, value in expected.items() if not name.startswith(("mean", "scale"))}
    assert _relative_error({name: start[name.split(".")[-1]] for name in moved}, moved) > 1e-3


def test_several_targets_are_streamed_as_the_in_memory_fit(tmp_path):
    path = _write(tmp_path, "npy", _table(4000, seed=1, targets=2))
    settings = dict(lr=0.01, epochs=5, tol=None, seed=0)
    streamed = pyfit.fit("linear", pyfit.open_rows(path, _target(2)), None, chunk_mb=CHUNK_MB, **settings)
    whole = pyfit.fit("linear", *_in_memory(path, _target(2), torch.float32), **settings)
    assert streamed.backend in STREAMED and streamed.model.weight.shape == (2, FEATURES)
    assert _relative_error(_parameters(streamed), _parameters(whole)) < 1e-5


@pytest.mark.parametrize("standardize", [False, True])
def test_a_polynomial_is_streamed_as_the_in_memory_fit(tmp_path, standardize):
    rng = np.random.default_rng(6)
    x = rng.uniform(-2, 3, size=20_000)
    path = str(tmp_path / "curve.npy")
    np.save(path, np.stack([x, 0.5 * x**3 - x + 2 + 0.1 * rng.normal(size=x.size)], axis=1))
    assert os.path.getsize(path) > 10 * CHUNK_MB * 2**20
    settings = dict(model_kwargs={"degree": 3}, lr=0.002, epochs=6, tol=None, seed=1, standardize=standardize)
    streamed = pyfit.fit("polynomial", pyfit.open_rows(path, "1", dtype=torch.float64), None, chunk_mb=CHUNK_MB,
                         **settings)
    whole = pyfit.fit("polynomial", *_in_memory(path, "1", torch.float64), **settings)
    assert streamed.backend in STREAMED and whole.backend not in STREAMED
    assert _relative_error(_parameters(streamed), _parameters(whole)) < 1e-5


def _unchanged(model, before):
    return all(torch.equal(value, before[name]) for name, value in model.state_dict().items())


@pytest.mark.parametrize("model, settings, match", [
    ("linear", dict(validation_split=0.2), r"with a data file, keep the validation rows in a file of their own"),
    ("linear", dict(validation_data=(torch.zeros(3, FEATURES), torch.zeros(3))),
     r"X is a data file, so validation_data must be one too"),
    ("mlp", dict(lr=0.01), r"a streamed fit needs a linear or polynomial model under mse, sse, mae or huber"),
    ("mlp", dict(lr="auto", optimizer="adam"), r"a streamed fit needs a linear or polynomial model"),
])
def test_what_a_streamed_fit_does_not_do_is_refused_before_anything_changes(tmp_path, model, settings, match):
    path = _write(tmp_path, "npy", _table(5000))
    user_model = pyfit.build_model(model, in_features=FEATURES, **({"hidden": (4,)} if model == "mlp" else {}))
    before = {name: value.clone() for name, value in user_model.state_dict().items()}
    checkpoint = str(tmp_path / "fit.pt")
    with pytest.raises(pyfit.InputError, match=match):
        pyfit.fit(user_model, pyfit.open_rows(path, _target()), None, chunk_mb=CHUNK_MB, epochs=3, tol=None,
                  standardize=True, checkpoint=checkpoint, **{"lr": 0.01, **settings})
    assert _unchanged(user_model, before)
    assert not os.path.exists(checkpoint)


def test_unshuffled_streamed_minibatches_are_the_in_memory_fits_batches(tmp_path):
    path = _write(tmp_path, "npy", _table(5000, seed=3))
    settings = dict(lr=0.01, batch_size=64, epochs=3, tol=None, seed=0, standardize=True)
    streamed = pyfit.fit("linear", pyfit.open_rows(path, _target()), None, chunk_mb=CHUNK_MB, **settings)
    whole = pyfit.fit("linear", *_in_memory(path, _target(), torch.float32), **settings)
    assert streamed.backend in STREAMED and whole.backend not in STREAMED
    assert _relative_error(_parameters(streamed), _parameters(whole)) < 1e-5
    assert np.allclose(streamed.history["loss"], whole.history["loss"], rtol=1e-5)


def test_shuffled_streamed_minibatches_are_drawn_chunk_wise_and_fit(tmp_path):
    path = _write(tmp_path, "npy", _table(5000, seed=3))
    settings = dict(lr=0.01, batch_size=64, shuffle=True, epochs=4, tol=None, seed=0, standardize=True)
    streamed = pyfit.fit("linear", pyfit.open_rows(path, _target()), None, chunk_mb=CHUNK_MB, **settings)
    again = pyfit.fit("linear", pyfit.open_rows(path, _target()), None, chunk_mb=CHUNK_MB, **settings)
    whole = pyfit.fit("linear", *_in_memory(path, _target(), torch.float32), **settings)
    # other batches than the in-memory fit's, drawn alike from the seed, to the same fit of the data
    assert streamed.history["loss"] == again.history["loss"]
    assert streamed.history["loss"] != whole.history["loss"]
    assert streamed.scores["r2"] == pytest.approx(whole.scores["r2"], abs=1e-3)


def test_validation_file_metrics_and_range_test_lr_equal_the_in_memory_fits(tmp_path):
    train = _write(tmp_path, "npy", _table(5000, seed=4))
    held = str(tmp_path / "held.npy")
    np.save(held, _table(1000, seed=5))
    settings = dict(optimizer="adam", epochs=5, tol=None, seed=0, standardize=True, metrics=["r2", "mae"])
    streamed = pyfit.fit("linear", pyfit.open_rows(train, _target()), None, chunk_mb=CHUNK_MB,
                         validation_data=pyfit.open_rows(held, _target()), **settings)
    X_val, y_val = _in_memory(held, _target(), torch.float32)
    whole = pyfit.fit("linear", *_in_memory(train, _target(), torch.float32), validation_data=(X_val, y_val),
                      **settings)
    assert streamed.backend in STREAMED and whole.backend not in STREAMED
    assert streamed.lr_chosen == pytest.approx(whole.lr_chosen, rel=1e-9)  # the range test's suggestion
    assert streamed.lr_reason == whole.lr_reason
    for key in ("val_loss", "r2", "val_r2", "mae", "val_mae"):
        assert np.allclose(streamed.history[key], whole.history[key], rtol=1e-5, atol=1e-7), key
    for key, value in whole.scores.items():
        assert streamed.scores[key] == pytest.approx(value, rel=1e-5, abs=1e-7), key


@pytest.mark.parametrize("optimizer, standardize", [("sgd", False), ("adam", True)])
def test_a_resumed_streamed_fit_equals_an_unbroken_one(tmp_path, optimizer, standardize):
    path = _write(tmp_path, "npy", _table(5000, seed=2))
    settings = dict(optimizer=optimizer, lr=0.02, standardize=standardize, tol=None, seed=5, chunk_mb=CHUNK_MB)
    unbroken = pyfit.fit("linear", pyfit.open_rows(path, _target()), None, epochs=7, **settings)
    checkpoint = str(tmp_path / "fit.pt")
    first = pyfit.fit("linear", pyfit.open_rows(path, _target()), None, epochs=3, checkpoint=checkpoint, **settings)
    resumed = pyfit.fit(None, pyfit.open_rows(path, _target()), None, epochs=7, resume_from=checkpoint,
                        **{**settings, "lr": None, "standardize": None})
    assert first.backend in STREAMED and resumed.backend in STREAMED and resumed.epochs == 7
    for name, value in _parameters(unbroken).items():
        assert torch.equal(_parameters(resumed)[name], value), name
    assert resumed.history["loss"] == unbroken.history["loss"]


# In a fresh process: the peak resident memory (VmHWM) before and after a streamed fit of a large file,
# then after an in-memory fit of the same rows; the code both fits run is paged in first, on a small file.
_MEASURE = textwrap.dedent("""
    import json, sys
    import torch, pyfit

    def peak():
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM:"))

    small, large, target = sys.argv[1:4]
    torch.set_num_threads(1)
    settings = dict(lr=0.01, epochs=2, tol=None, seed=0, standardize=True)

    def in_memory(path):
        data = pyfit.load_data(path, target, dtype=torch.float64)
        return pyfit.fit("linear", torch.from_numpy(data.X), torch.from_numpy(data.y), **settings)

    pyfit.fit("linear", pyfit.open_rows(small, target, dtype=torch.float64), None, chunk_mb=0.01, **settings)
    in_memory(small)
    before = peak()
    streamed = pyfit.fit("linear", pyfit.open_rows(large, target, dtype=torch.float64), None, chunk_mb=1,
                         **settings)
    after_stream = peak()
    whole = in_memory(large)
    print(json.dumps({"backend": streamed.backend, "stream_growth": after_stream - before,
                      "whole_growth": peak() - after_stream,
                      "streamed": [p.tolist() for p in streamed.model.parameters()],
                      "whole": [p.tolist() for p in whole.model.parameters()]}))
""")


def test_a_streamed_fit_holds_a_few_chunks_in_memory_whatever_the_file_size(tmp_path):
    small, large = str(tmp_path / "small.npy"), str(tmp_path / "large.npy")
    np.save(small, _table(2000))
    np.save(large, _table(720_000, seed=4))  # 40 MB of float64 (7 columns)
    size = os.path.getsize(large)
    environment = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [
        os.path.dirname(os.path.dirname(os.path.abspath(pyfit.__file__))), os.environ.get("PYTHONPATH")])))
    finished = subprocess.run([sys.executable, "-c", _MEASURE, small, large, _target()], env=environment,
                              capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr
    report = json.loads(finished.stdout)
    assert report["backend"] in STREAMED
    assert report["stream_growth"] < 12 * 2**20, report["stream_growth"]  # chunk_mb=1 over a 40 MB file
    assert report["whole_growth"] > size, report["whole_growth"]  # the measure sees a whole-file fit
    for streamed, whole in zip(report["streamed"], report["whole"]):
        np.testing.assert_allclose(streamed, whole, rtol=1e-5, atol=1e-5 * np.abs(whole).max())
