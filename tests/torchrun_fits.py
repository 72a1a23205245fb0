"""Fits that tests/test_distributed.py runs on one process and under torchrun, to compare.

    python tests/torchrun_fits.py SCENARIOS.json OUT_DIR
    torchrun --nproc-per-node N tests/torchrun_fits.py SCENARIOS.json OUT_DIR

Each scenario names data (made here from a seed, so every process builds the same)
and fit settings; each process writes OUT_DIR/<name>.<rank>.json with the fitted
parameters, the history and the scores. A scenario with "die" makes rank 1 kill
itself (SIGKILL) or hang after that many epochs.
"""

import json
import os
import signal
import sys
import time

import numpy as np
import torch

import pyfit


def _data(spec, directory):
    rng = np.random.default_rng(spec.get("seed", 0))
    n, d = spec.get("rows", 601), spec.get("features", 4)
    X = rng.normal(size=(n, d)) * rng.uniform(0.5, 20, size=d) + rng.uniform(-50, 50, size=d)
    y = X @ rng.normal(size=d) + 3.0 + rng.normal(size=n)
    if spec.get("kind") == "npy":
        path = os.path.join(directory, f"data-{n}-{d}.npy")
        if not os.path.exists(path):  # the test writes it before starting the processes
            raise SystemExit(f"missing {path}")
        return pyfit.open_rows(path, target=str(d), dtype=getattr(torch, spec.get("dtype", "float32"))), None
    dtype = getattr(torch, spec.get("dtype", "float32"))
    return torch.tensor(X, dtype=dtype), torch.tensor(y, dtype=dtype)


class _Fault(pyfit.Callback):
    def __init__(self, epoch, how):
        self.epoch, self.how = epoch, how

    def on_epoch_end(self, state):
        if state.epoch == self.epoch and int(os.environ.get("RANK", "0")) == 1:
            if self.how == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            time.sleep(3600)


def main():
    scenarios = json.load(open(sys.argv[1]))
    out = sys.argv[2]
    rank = int(os.environ.get("RANK", "0"))
    if "PYFIT_TEST_TIMEOUT" in os.environ:
        pyfit.distributed.init(timeout=float(os.environ["PYFIT_TEST_TIMEOUT"]))
    for name, spec in scenarios.items():
        X, y = _data(spec.get("data", {}), out)
        if spec.get("own_rows"):  # each process passes only its own rows: a mistake fit refuses
            rank_, size = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
            X, y = X[rank_::size], y[rank_::size]
        settings = dict(spec.get("fit", {}))
        model = settings.pop("model", "linear")
        if spec.get("own_model"):  # built here, from each process's own random draw
            model = pyfit.build_model(model, in_features=X.shape[1], **settings.pop("model_kwargs", {}))
        callbacks = [_Fault(spec["die"], spec.get("how", "kill"))] if "die" in spec else []
        started = time.perf_counter()
        result = pyfit.fit(model, X, y, callbacks=callbacks, **settings)
        record = {
            "backend": result.backend,
            "params": [p.detach().double().flatten().tolist() for p in result.model.parameters()],
            "loss": result.history["loss"], "epochs": result.epochs, "scores": result.scores,
            "lr": result.lr_chosen, "warnings": result.warnings, "seconds": time.perf_counter() - started,
        }
        with open(os.path.join(out, f"{name}.{rank}.json"), "w") as handle:
            json.dump(record, handle)


if __name__ == "__main__":
    main()
