"""pyfit against what users would otherwise run, side by side in one process.

Prints a table of median times and ratios and writes benchmarks/RESULTS.md with
the machine's description. A script, not a test: timings on a shared machine are
noisy, so compare the ratios of one run and rerun before drawing conclusions.

    python benchmarks/bench.py            # every workload
    python benchmarks/bench.py --quick    # fewer repeats
    python benchmarks/bench.py --fused-linear-only   # the fused loop under every loss and optimizer
    python benchmarks/bench.py --distributed-only    # 2 ranks under torchrun against 1 process
    python benchmarks/bench.py --streaming-only      # a .npy file streamed against the same fit in memory

The last two replace only their own sections of RESULTS.md and keep the rest.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from typing import Callable, Dict, List, Tuple

import numpy as np

import torch
import torch.nn.functional as F

import pyfit

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import distributed_bench  # noqa: E402  (beside this file)


def interleaved(functions: Dict[str, Callable[[], object]], repeats: int, sync=lambda: None) -> Dict[str, float]:
    """Median time of each function, measured in alternation so drift hits them alike."""
    for function in functions.values():
        function()
    sync()
    samples: Dict[str, List[float]] = {name: [] for name in functions}
    for _ in range(repeats):
        for name, function in functions.items():
            start = time.perf_counter()
            function()
            sync()
            samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in samples.items()}


# -- seed 000: 50 points, 3000 full-batch steps ------------------------------------------
def seed000(repeats: int) -> Dict[str, float]:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(50, generator=g)
    y = 3 * x + 0.8

    def seed_loop():  # the seed document's own loop
        w = torch.rand(1, requires_grad=True)
        b = torch.rand(1, requires_grad=True)
        for _ in range(3000):
            y_predict = x * w + b
            loss = (y_predict - y).pow(2).mean()
            for p in (w, b):
                if p.grad is not None:
                    p.grad.data.zero_()
            loss.backward()
            w.data -= 0.01 * w.grad.data
            b.data -= 0.01 * b.grad.data

    def torch_idiomatic():
        model = torch.nn.Linear(1, 1)
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
        X, Y = x.unsqueeze(1), y.unsqueeze(1)
        for _ in range(3000):
            opt.zero_grad()
            F.mse_loss(model(X), Y).backward()
            opt.step()

    def pyfit_fit():
        pyfit.fit("linear", x, y, lr=0.01, epochs=3000, seed=0)

    functions = {"seed loop": seed_loop, "torch nn.Linear+optim.SGD": torch_idiomatic, "pyfit.fit": pyfit_fit}
    try:
        import warnings

        from sklearn.exceptions import ConvergenceWarning
        from sklearn.linear_model import SGDRegressor

        Xn, yn = x.unsqueeze(1).double().numpy(), y.double().numpy()

        def sklearn_sgd():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                SGDRegressor(max_iter=3000, tol=None, learning_rate="constant", eta0=0.01, penalty=None,
                             shuffle=False, random_state=0).fit(Xn, yn)

        functions["sklearn SGDRegressor"] = sklearn_sgd
    except ImportError:
        pass
    return interleaved(functions, repeats)


# -- large full-batch linear fit -----------------------------------------------------------
def big_linear(repeats: int, device: str, n: int = 4_194_304, d: int = 16, epochs: int = 10) -> Dict[str, float]:
    g = torch.Generator().manual_seed(0)
    X = torch.randn(n, d, generator=g).to(device)
    y = (X @ torch.randn(d, generator=g).to(device) + 0.5).contiguous()
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def reads():
        for _ in range(epochs):
            X.sum()

    def torch_loop():
        model = torch.nn.Linear(d, 1, device=device)
        opt = torch.optim.SGD(model.parameters(), lr=0.01, fused=True)
        Y = y.unsqueeze(1)
        for _ in range(epochs):
            opt.zero_grad()
            F.mse_loss(model(X), Y).backward()
            opt.step()

    def pyfit_fit():
        pyfit.fit(pyfit.Linear(d, device=device), X, y, lr=0.01, epochs=epochs)

    return interleaved({f"{epochs} reads of X (X.sum())": reads, "torch nn.Linear+mse+SGD(fused)": torch_loop,
                        "pyfit.fit": pyfit_fit}, repeats, sync)


# -- SGD step over many tensors --------------------------------------------------------------
def sgd_step(repeats: int, device: str, total: int = 10_000_000, tensors: int = 100) -> Dict[str, float]:
    size = total // tensors
    g = torch.Generator().manual_seed(0)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def make(cls, **extra):
        params = [torch.nn.Parameter(torch.randn(size, generator=g).to(device)) for _ in range(tensors)]
        for p in params:
            p.grad = torch.randn(size, generator=g).to(device)
        opt = cls(params, lr=0.01, momentum=0.9, weight_decay=1e-4, **extra)
        opt.step()  # past the first step, so momentum buffers exist
        return opt.step

    return interleaved({"torch.optim.SGD(fused=True)": make(torch.optim.SGD, fused=True),
                        "torch.optim.SGD(foreach=True)": make(torch.optim.SGD, foreach=True),
                        "pyfit.SGD": make(pyfit.SGD)}, repeats, sync)


# -- MSE forward and backward ----------------------------------------------------------------
def mse(repeats: int, device: str, n: int = 16_777_216) -> Dict[str, float]:
    g = torch.Generator().manual_seed(0)
    pred = torch.randn(n, generator=g).to(device).requires_grad_()
    target = torch.randn(n, generator=g).to(device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def torch_mse():
        pred.grad = None
        F.mse_loss(pred, target).backward()

    def pyfit_mse():
        pred.grad = None
        pyfit.ops.mse_loss(pred, target).backward()

    return interleaved({"F.mse_loss + backward": torch_mse, "pyfit.ops.mse_loss + backward": pyfit_mse},
                       repeats, sync)


# -- small autograd fits: scikit-learn's diabetes data -------------------------------------
DIABETES_WORKLOADS = {  # name: (model, pyfit loss, torch loss, optimizer, lr)
    "MLP 10-32-1, mse, adam": ("mlp", "mse", F.mse_loss, "adam", 1e-3),
    "linear, mse, adam": ("linear", "mse", F.mse_loss, "adam", 1e-2),
    "linear, mae, sgd": ("linear", "mae", F.l1_loss, "sgd", 1e-2),
    "linear, mse, sgd (fused)": ("linear", "mse", F.mse_loss, "sgd", 1e-2),
}
# the fused linear loop off its home path: every other built-in loss and optimizer
FUSED_LINEAR_WORKLOADS = {
    **{f"linear, {loss}, {optimizer}": ("linear", loss, torch_loss, optimizer, lr)
       for loss, torch_loss in (("mse", F.mse_loss), ("mae", F.l1_loss))
       for optimizer, lr in (("adam", 1e-2), ("adamw", 1e-2), ("rmsprop", 1e-3), ("adagrad", 1e-1))},
    "linear, mae, sgd": ("linear", "mae", F.l1_loss, "sgd", 1e-2),
    "linear, huber, sgd": ("linear", "huber", F.huber_loss, "sgd", 1e-2),  # delta 1 in both
}
TORCH_OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "rmsprop": torch.optim.RMSprop,
                    "adagrad": torch.optim.Adagrad, "sgd": torch.optim.SGD}


def diabetes(repeats: int, workload: str, epochs: int = 500) -> Dict[str, float]:
    """The loop a user writes by hand against pyfit.fit, with the same model, data, optimizer and lr.

    The times are keyed "hand-written torch loop" and "pyfit.fit"; "backend" is the path pyfit took.
    """
    from sklearn.datasets import load_diabetes

    features, target = load_diabetes(return_X_y=True)
    X = torch.tensor(features, dtype=torch.float32)
    X = (X - X.mean(0)) / X.std(0)
    y = torch.tensor(target, dtype=torch.float32)
    y = (y - y.mean()) / y.std()
    kind, loss_name, torch_loss, optimizer, lr = {**DIABETES_WORKLOADS, **FUSED_LINEAR_WORKLOADS}[workload]

    def model() -> torch.nn.Module:
        torch.manual_seed(0)
        if kind == "mlp":
            return torch.nn.Sequential(torch.nn.Linear(10, 32), torch.nn.ReLU(), torch.nn.Linear(32, 1))
        return torch.nn.Linear(10, 1)

    def hand_loop():
        net = model()
        opt = TORCH_OPTIMIZERS[optimizer](net.parameters(), lr=lr)
        Y = y.unsqueeze(1)
        for _ in range(epochs):
            opt.zero_grad()
            loss = torch_loss(net(X), Y)
            loss.backward()
            opt.step()

    def pyfit_model() -> torch.nn.Module:
        if kind == "mlp":
            return model()
        linear = pyfit.Linear(10)  # declares itself linear in its parameters: the fused loop may take it
        linear.load_state_dict(model().state_dict())
        return linear

    def pyfit_fit():
        # an explicit lr and tol=None: the same epochs of the same work as the loop
        return pyfit.fit(pyfit_model(), X, y, loss=loss_name, optimizer=optimizer, lr=lr, epochs=epochs, tol=None)

    times = interleaved({"hand-written torch loop": hand_loop, "pyfit.fit": pyfit_fit}, repeats)
    return {**times, "backend": pyfit_fit().backend}


def diabetes_report(repeats: int, report) -> None:
    """Each workload on one thread (pyfit's own cost) and on torch's thread setting (what a user gets)."""
    try:
        import sklearn  # noqa: F401
    except ImportError:
        print("\nscikit-learn is not installed: no diabetes workloads")
        return
    available = torch.get_num_threads()
    for threads in sorted({1, available}):
        torch.set_num_threads(threads)
        try:
            for workload in DIABETES_WORKLOADS:
                t = diabetes(repeats, workload)
                backend = t.pop("backend")
                ratio = t["pyfit.fit"] / t["hand-written torch loop"]
                target = " (target <= 1x)" if workload.startswith("MLP") else ""
                report(f"diabetes 442 x 10, 500 full-batch epochs, {workload}, torch set to {threads} "
                       f"thread(s), pyfit on {backend} (cpu)", t, [f"pyfit.fit takes {ratio:.2f}x the time of the hand-written loop"
                                               f"{target}"])
        finally:
            torch.set_num_threads(available)


def big_fused_linear(repeats: int, n: int = 4_194_304, d: int = 16, epochs: int = 20) -> Dict[str, float]:
    """pyfit.fit under each fused-linear workload's loss and optimizer against reading X once per epoch (cpu)."""
    g = torch.Generator().manual_seed(0)
    X = torch.randn(n, d, generator=g)
    y = X @ torch.randn(d, generator=g) + 0.5

    def reads():
        for _ in range(epochs):
            X.sum()

    def fit(loss: str, optimizer: str, lr: float) -> Callable[[], object]:
        return lambda: pyfit.fit(pyfit.Linear(d), X, y, loss=loss, optimizer=optimizer, lr=lr, epochs=epochs,
                                 tol=None)

    functions = {f"{epochs} reads of X (X.sum())": reads}
    for workload, (_, loss, _, optimizer, lr) in FUSED_LINEAR_WORKLOADS.items():
        functions[f"pyfit.fit, {workload}"] = fit(loss, optimizer, lr)
    return interleaved(functions, repeats)


def fused_linear_report(repeats: int, report) -> None:
    """The fused loop under every built-in loss and optimizer: against the hand-written loop on small data
    (one thread: pyfit's own cost), against reading the data on large data."""
    try:
        import sklearn  # noqa: F401
    except ImportError:
        print("\nscikit-learn is not installed: no diabetes workloads")
    else:
        available = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            for workload in FUSED_LINEAR_WORKLOADS:
                t = diabetes(repeats, workload)
                backend = t.pop("backend")
                speedup = t["hand-written torch loop"] / t["pyfit.fit"]
                report(f"diabetes 442 x 10, 500 full-batch epochs, {workload}, 1 thread, pyfit on {backend} (cpu)",
                       t, [f"pyfit.fit is {speedup:.0f}x faster than the hand-written loop (target >= 50x)"])
        finally:
            torch.set_num_threads(available)
    t = big_fused_linear(max(3, repeats // 2))
    floor = t.pop("20 reads of X (X.sum())")
    report("linear fit, N=4,194,304 x D=16 float32, 20 full-batch epochs, each fused-linear workload (cpu)",
           {"20 reads of X (X.sum())": floor, **t},
           [f"{name} takes {seconds / floor:.2f}x the time of 20 reads of X (target <= 1.5x)"
            for name, seconds in t.items()])


def load_average() -> float:
    """The 1-minute load average: on a shared machine it says how far the times can be trusted."""
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


# -- data-parallel fits under torchrun: the all-reduce overhead -----------------------------
def distributed_report(repeats: int, report, command: str) -> None:
    """2 ranks of 1 thread under torchrun against 1 process of 2 threads and of 1, on the summed linear path
    and on the autograd path (see distributed_bench.py)."""
    two, one_on_two, one_on_one = (name for name, _, _ in distributed_bench.CONTENDERS)
    for workload in ("linear", "mlp"):
        load_before = load_average()
        runs = distributed_bench.overhead(workload, repeats)
        load_after = load_average()
        fit = {name: run["fit"] for name, run in runs.items()}
        wall = {name: run["wall"] for name, run in runs.items()}
        ranks, alone = runs[two]["report"], runs[one_on_two]["report"]
        times = {**{f"{name}: fit": seconds for name, seconds in fit.items()},
                 **{f"{name}: command": seconds for name, seconds in wall.items()}}
        title = distributed_bench.WORKLOADS[workload].title
        report(f"data-parallel fit under torchrun (gloo, loopback), {title} (cpu)", times, [
                   f"2 ranks take {fit[two] / fit[one_on_two]:.2f}x the fit time of 1 process on the same 2 threads "
                   "(target <= 1.3x)",
                   f"2 ranks take {fit[two] / fit[one_on_one]:.2f}x the fit time of 1 process on 1 thread",
                   f"whole commands: 2 ranks take {wall[two] / wall[one_on_two]:.2f}x the wall time of 1 process on "
                   f"2 threads, {wall[two] / wall[one_on_one]:.2f}x that of 1 process on 1 thread",
                   f"paths: 2 ranks on {ranks['backend']}, 1 process on {alone['backend']}; pyfit.ops.backend() "
                   f"{ranks['ops_backend']}; linear_sums ran {ranks['linear_sums']}",
                   f"final loss: 2 ranks {ranks['final_loss']:.9g}, 1 process {alone['final_loss']:.9g}",
               ], intro=[
                   f"Command: `{command}`, {time.strftime('%Y-%m-%d %H:%M')}. "
                   f"Each contender is a fresh command, run {repeats} times in alternation with the others; each "
                   "command makes one untimed fit, then 3 timed ones. `fit`: the median of rank 0's "
                   "`result.seconds` over every timed fit (the fit itself: its checks, its epochs, not the closing "
                   "scores). `command`: the median wall time of the whole command (`python -m torch.distributed.run "
                   "--standalone --nproc-per-node 2 ...` for 2 ranks, `python ...` for 1 process): start-up of "
                   "every process, the process group, the data, all four fits and their scores. Load average "
                   f"(1 min) {load_before:.1f} at the start, {load_after:.1f} at the end.",
               ])


# -- a .npy file streamed a chunk at a time against the same fit in memory ------------------------------
def streaming(repeats: int, rows: int = 4_194_304, features: int = 16, epochs: int = 10,
              chunk_mb: float = 32.0) -> Tuple[Dict[str, float], Dict[str, float], Dict[str, str], float]:
    """The fit of a (rows, features + 1) float32 .npy file, streamed in chunks of ``chunk_mb`` MB, against the
    same fit of its rows in memory (as tensors, and read whole by open_rows), in alternation.

    Returns the medians of result.seconds and of each fit call's wall time (result.seconds plus the closing
    scores), each contender's result.backend, and the file's size in MB.
    """
    directory = tempfile.mkdtemp(prefix="pyfit-bench-")
    try:
        path = os.path.join(directory, "rows.npy")
        g = torch.Generator().manual_seed(0)
        X = torch.randn(rows, features, generator=g)
        y = X @ torch.randn(features, generator=g) + 0.5 + 0.1 * torch.randn(rows, generator=g)
        np.save(path, torch.cat([X, y.unsqueeze(1)], 1).numpy())
        del X, y
        table = np.load(path)  # the whole file read once: it is in the page cache from here on
        X, y = torch.from_numpy(table[:, :features]).contiguous(), torch.from_numpy(table[:, features]).contiguous()
        del table
        target = str(features)  # the last column, named by its index
        held_mb = 4 * os.path.getsize(path) / 2**20  # enough for every row, with their copies as tensors
        file = pyfit.open_rows(path, target=target)
        if file.rows_per_chunk(int(held_mb * 2**20)) < rows or file.rows_per_chunk(int(chunk_mb * 2**20)) >= rows:
            raise RuntimeError(f"chunk_mb={chunk_mb:g} must stream {path} and {held_mb:g} MB hold it")
        settings = dict(epochs=epochs, tol=None, lr=0.01)
        chunk_rows = file.rows_per_chunk(int(chunk_mb * 2**20))

        def read_chunks():  # what the streamed fit reads, without the fit
            for _ in range(epochs):
                for _ in file.chunks(0, rows, chunk_rows):
                    pass

        def read_bytes():  # the file's bytes, chunk by chunk, into one buffer: the floor of any read
            buffer = bytearray(int(chunk_mb * 2**20))
            for _ in range(epochs):
                with open(path, "rb", buffering=0) as handle:
                    while handle.readinto(buffer):
                        pass

        # each returns its FitResult, whose seconds are the fit's own, or None: then the call is timed
        fits: Dict[str, Callable[[], object]] = {
            "in memory: tensors": lambda: pyfit.fit("linear", X, y, **settings),
            f"in memory: open_rows, chunk_mb={held_mb:.0f}":
                lambda: pyfit.fit("linear", pyfit.open_rows(path, target=target), None, chunk_mb=held_mb,
                                  **settings),
            f"streamed: open_rows, chunk_mb={chunk_mb:g}":
                lambda: pyfit.fit("linear", pyfit.open_rows(path, target=target), None, chunk_mb=chunk_mb,
                                  **settings),
            f"{epochs} reads of the file by RowFile.chunks, chunk_mb={chunk_mb:g} (no fit)": read_chunks,
            f"{epochs} reads of the file's bytes, {chunk_mb:g} MB at a time (no fit)": read_bytes,
        }
        seconds: Dict[str, List[float]] = {name: [] for name in fits}
        walls: Dict[str, List[float]] = {name: [] for name in fits}
        backends = {name: getattr(fit(), "backend", None) for name, fit in fits.items()}  # untimed: one of each
        for _ in range(repeats):
            for name, fit in fits.items():
                started = time.perf_counter()
                result = fit()
                walls[name].append(time.perf_counter() - started)
                seconds[name].append(walls[name][-1] if result is None else result.seconds)
        return ({name: statistics.median(values) for name, values in seconds.items()},
                {name: statistics.median(values) for name, values in walls.items()}, backends,
                os.path.getsize(path) / 2**20)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def streaming_report(repeats: int, report, command: str) -> None:
    rows, features, epochs, chunk_mb = 4_194_304, 16, 10, 32.0
    load_before = load_average()
    seconds, walls, backends, size_mb = streaming(repeats, rows, features, epochs, chunk_mb)
    load_after = load_average()
    memory, read_whole, streamed, read_chunks, read_bytes = seconds
    times = {**{f"{name}: fit": seconds[name] for name in (memory, read_whole, streamed)},
             **{f"{name}: call": walls[name] for name in (memory, read_whole, streamed)},
             read_chunks: seconds[read_chunks], read_bytes: seconds[read_bytes]}
    report(f"streamed fit: linear, {rows:,} x {features} float32 .npy in the page cache, mse, sgd lr 0.01, "
           f"{epochs} full-batch epochs (cpu)", times, [
               f"streamed takes {seconds[streamed] / seconds[memory]:.2f}x the fit time of the tensors in memory "
               "(target <= 1.5x)",
               f"streamed takes {seconds[streamed] / seconds[read_whole]:.2f}x the fit time of open_rows holding "
               "every row",
               f"whole calls: streamed takes {walls[streamed] / walls[memory]:.2f}x the time of the tensors in "
               "memory",
               f"reading alone: RowFile.chunks takes {seconds[read_chunks] / seconds[memory]:.2f}x the fit time "
               f"of the tensors in memory, the bytes {seconds[read_bytes] / seconds[memory]:.2f}x",
               "paths: " + ", ".join(f"{name} on {backends[name]}" for name in (memory, read_whole, streamed)) +
               f"; pyfit.ops.backend() {pyfit.ops.backend()}; linear_sums ran {distributed_bench.linear_sums_runner()}",
           ], intro=[
               f"Command: `{command}`, {time.strftime('%Y-%m-%d %H:%M')}; medians "
               f"of {repeats} interleaved fits in one process on torch's {torch.get_num_threads()} threads, after "
               f"an untimed one of each. The file ({size_mb:.0f} MB: the {features} features and the target) is "
               "written once and read once before. `fit`: `result.seconds` (for open_rows this includes "
               "reading the rows; the streamed fit reads every chunk again at each epoch); `call`: the whole "
               "`pyfit.fit` call, its closing scores included (one more pass over the file when streamed). The two "
               "reads without a fit are timed whole. "
               f"Load average (1 min) {load_before:.1f} at the start, {load_after:.1f} at the end.",
           ])


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"{cpu}, {os.cpu_count()} logical CPUs, torch {torch.__version__} with {torch.get_num_threads()} "
            f"threads ({torch.backends.cpu.get_cpu_capability()}), {gpu}; Python {platform.python_version()}; "
            f"pyfit ops backend: {pyfit.ops.backend()}")


# RESULTS.md below this line is written by hand (measurements this script does not take, such as
# start-up and set-up times): a new run replaces what is above it and keeps the rest
HAND_WRITTEN = "<!-- written by hand below: bench.py keeps what follows -->"


def _hand_written(path: str) -> str:
    """The hand-written end of the results file at ``path``, marker included ('' when there is none)."""
    try:
        with open(path) as existing:
            text = existing.read()
    except FileNotFoundError:
        return ""
    at = text.find(HAND_WRITTEN)
    return "" if at < 0 else text[at:]


def _replace_sections(text: str, sections: List[str]) -> str:
    """``text`` (a results file) with each of ``sections`` ("## heading" and its lines) in place of the one under
    the same heading, or added after the generated ones; the rest, hand-written part included, as it was."""
    at = text.find(HAND_WRITTEN)
    generated, kept = (text, "") if at < 0 else (text[:at], text[at:])
    parts = generated.split("\n## ")
    blocks = [parts[0]] + ["## " + part for part in parts[1:]]
    for section in sections:
        heading = section.split("\n", 1)[0]
        matching = [i for i, block in enumerate(blocks) if block.split("\n", 1)[0] == heading]
        if matching:
            blocks[matching[0]] = section
        else:
            blocks.append(section)
    return "\n".join(block.rstrip("\n") + "\n" for block in blocks) + ("\n" + kept if kept else "")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument("--output", default=os.path.join(HERE, "RESULTS.md"), help="where to write the results")
    parser.add_argument("--diabetes-only", action="store_true",
                        help="only the small autograd fits on the diabetes data; print, write nothing")
    parser.add_argument("--fused-linear-only", action="store_true",
                        help="only the fused linear loop under every built-in loss and optimizer; print, write "
                             "nothing")
    parser.add_argument("--distributed-only", action="store_true",
                        help="only the data-parallel fits under torchrun against one process; replace their "
                             "sections of the results file")
    parser.add_argument("--streaming-only", action="store_true",
                        help="only the streamed fit of a .npy file against the fit in memory; replace its section "
                             "of the results file")
    args = parser.parse_args(argv)
    repeats = 5 if args.quick else 11
    command = " ".join(["python benchmarks/bench.py", *(sys.argv[1:] if argv is None else argv)])

    def report(workload: str, times: Dict[str, float], targets: List[str], intro: List[str] = ()):
        print(f"\n{workload}")
        for name, seconds in times.items():
            print(f"  {name:38s} {seconds * 1e3:10.3f} ms")
        for target in targets:
            print(f"  -> {target}")
        summaries.append((workload, times, targets, list(intro)))

    def sections() -> List[str]:
        written = []
        for workload, times, targets, intro in summaries:
            lines = [f"## {workload}", ""] + [line for paragraph in intro for line in (paragraph, "")]
            lines += ["| contender | median |", "| --- | ---: |"]
            lines += [f"| {name} | {seconds * 1e3:.3f} ms |" for name, seconds in times.items()]
            lines += [""] + [f"- {target}" for target in targets] + [""]
            written.append("\n".join(lines))
        return written

    summaries = []
    if args.diabetes_only:
        diabetes_report(repeats, report)
        return 0
    if args.fused_linear_only:
        fused_linear_report(repeats, report)
        return 0
    if args.distributed_only or args.streaming_only:
        if args.distributed_only:
            distributed_report(max(3, repeats // 2), report, command)
        if args.streaming_only:
            streaming_report(max(3, repeats // 2), report, command)
        try:
            with open(args.output) as existing:
                text = existing.read()
        except FileNotFoundError:
            text = f"# pyfit benchmark results\n\nMachine: {machine()}\n"
        with open(args.output, "w") as out:
            out.write(_replace_sections(text, sections()))
        print(f"\nwrote {len(summaries)} sections of {args.output}")
        return 0
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    t = seed000(repeats)
    report("seed 000: 50 points, 3000 full-batch SGD steps (cpu)", t, [
        f"pyfit.fit is {t['seed loop'] / t['pyfit.fit']:.0f}x faster than the seed's loop (target >= 300x)",
        *([f"pyfit.fit is {t['sklearn SGDRegressor'] / t['pyfit.fit']:.1f}x faster than SGDRegressor "
           "for 3000 epochs (target > 1x)"] if "sklearn SGDRegressor" in t else []),
    ])
    for device in devices:
        t = big_linear(max(3, repeats // 2), device)
        floor = t["10 reads of X (X.sum())"]
        report(f"linear fit, N=4,194,304 x D=16 float32, 10 full-batch epochs ({device})", t, [
            f"pyfit.fit takes {t['pyfit.fit'] / floor:.2f}x the time of 10 reads of X (target <= 1.5x)",
            f"pyfit.fit is {t['torch nn.Linear+mse+SGD(fused)'] / t['pyfit.fit']:.2f}x faster than torch's "
            "loop (target >= 2.5x)",
        ])
        t = sgd_step(repeats, device)
        report(f"SGD step, momentum 0.9 + weight decay, 10M params in 100 tensors ({device})", t, [
            f"pyfit.SGD takes {t['pyfit.SGD'] / t['torch.optim.SGD(fused=True)']:.2f}x the time of "
            "torch.optim.SGD(fused=True) (target <= 0.9x)",
        ])
        t = mse(repeats, device)
        report(f"MSE forward + backward, 16M float32 elements ({device})", t, [
            f"pyfit is {t['F.mse_loss + backward'] / t['pyfit.ops.mse_loss + backward']:.2f}x faster than "
            "F.mse_loss + backward (target >= 3x)",
        ])

    diabetes_report(repeats, report)
    fused_linear_report(repeats, report)
    distributed_report(max(3, repeats // 2), report, command)
    streaming_report(max(3, repeats // 2), report, command)

    lines = ["# pyfit benchmark results", "", f"Machine: {machine()}", "",
             f"Command: `python benchmarks/bench.py{' --quick' if args.quick else ''}`; medians of "
             f"{repeats} interleaved runs (fewer for the large fits), measured in one process on "
             f"{time.strftime('%Y-%m-%d')} (the data-parallel fits in processes of their own).", ""]
    kept = _hand_written(args.output)  # read before the file is opened for writing, which empties it
    with open(args.output, "w") as out:
        out.write("\n".join(lines) + "\n" + "\n".join(sections()) + "\n" + kept)
    print(f"\nwrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
