"""pyfit's CUDA ops against torch's own on one GPU; run by benchmarks/gpu_check.sh.

Four workloads, each timed as medians of interleaved runs: bench.py's fused SGD
step against torch.optim.SGD(fused=True), fused squared error against F.mse_loss
(forward and backward) and whole linear fit against the torch idiom, on the GPU;
and one fused linear step as a share of the device's measured copy bandwidth.
Appends a markdown report to --output. Exits 2 without a CUDA device.

    python benchmarks/gpu_bench.py --output gpu_results.md
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Dict, List

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402  (its workloads, run here on the GPU)

import pyfit  # noqa: E402

NO_DEVICE = 2
REPEATS = 15


def linear_step_bandwidth(n: int = 16_777_216, d: int = 16) -> Dict[str, float]:
    """Seconds of one fused step (SGD, and Adam), and of a device copy of the same bytes."""
    import pyfit._C  # noqa: F401  (registers torch.ops.pyfit.linear_fit_)

    X, y = torch.randn(n, d, device="cuda"), torch.randn(n, 1, device="cuda")
    params = [torch.zeros(1, d, device="cuda"), torch.zeros(1, device="cuda")]
    adam_state = [torch.zeros_like(p) for p in params for _ in range(2)]
    lr = torch.full((1,), 1e-3, dtype=torch.float64)
    sgd, adam = [0.0] * 13, [0.0] * 13
    adam[5:8] = [0.9, 0.999, 1e-8]  # beta1, beta2, eps in the op's settings layout
    # one full-batch epoch, squared error (mean): (..., order, batch_size, loss, reduction, delta,
    # optimizer, settings, step)
    step = lambda state, code, settings: torch.ops.pyfit.linear_fit_(
        X, y, params, state, lr, None, 0, 0, 0, 1.0, code, settings, 0)
    read_bytes = (X.numel() + y.numel()) * X.element_size()
    src = torch.empty(read_bytes // 4, device="cuda")
    dst = torch.empty_like(src)
    times = bench.interleaved({"copy": lambda: dst.copy_(src),
                               "linear step": lambda: step([], 0, sgd),
                               "linear Adam step": lambda: step(adam_state, 1, adam)},
                              REPEATS, torch.cuda.synchronize)
    # a copy reads and writes its bytes; the step reads X and y once
    return {"copy GB/s": 2 * read_bytes / times["copy"] / 1e9,
            "linear step GB/s": read_bytes / times["linear step"] / 1e9,
            "linear step": times["linear step"], "linear Adam step": times["linear Adam step"]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", required=True, help="markdown file to append the results to")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("gpu_bench: no CUDA device is visible to torch; nothing was measured", file=sys.stderr)
        return NO_DEVICE
    lines: List[str] = ["## GPU benchmarks", "",
                        f"{torch.cuda.get_device_name(0)}, torch {torch.__version__} (CUDA {torch.version.cuda}), "
                        f"pyfit ops backend {pyfit.ops.backend()}; medians of interleaved runs, "
                        f"{time.strftime('%Y-%m-%d %H:%M')}", ""]

    def report(workload: str, times: Dict[str, float], verdicts: List[str]) -> None:
        block = [f"### {workload}", "", "| contender | median |", "| --- | ---: |"]
        block += [f"| {name} | {value * 1e3:.3f} ms |" for name, value in times.items()]
        block += [""] + [f"- {v}" for v in verdicts] + [""]
        lines.extend(block)
        print("\n".join(block), flush=True)

    t = bench.sgd_step(REPEATS, "cuda")
    report("SGD step, momentum 0.9 + weight decay, 10M float32 params in 100 tensors", t, [
        f"pyfit.SGD takes {t['pyfit.SGD'] / t['torch.optim.SGD(fused=True)']:.2f}x the time of "
        "torch.optim.SGD(fused=True) (target <= 0.9x)"])
    t = bench.mse(REPEATS, "cuda")
    report("MSE forward + backward, 16M float32 elements", t, [
        f"pyfit is {t['F.mse_loss + backward'] / t['pyfit.ops.mse_loss + backward']:.2f}x faster than "
        "F.mse_loss + backward (target >= 3x)"])
    bw = linear_step_bandwidth()
    share = bw["linear step GB/s"] / bw["copy GB/s"]
    report("One fused linear step, N=16,777,216 x D=16 float32",
           {"linear step": bw["linear step"], "linear Adam step": bw["linear Adam step"]}, [
        f"the step reads X and y at {bw['linear step GB/s']:.1f} GB/s, {share:.0%} of the measured "
        f"device copy bandwidth of {bw['copy GB/s']:.1f} GB/s (target 80%)",
        f"an Adam step takes {bw['linear Adam step'] / bw['linear step']:.2f}x the time of an SGD step"])
    t = bench.big_linear(max(3, REPEATS // 3), "cuda")
    report("Linear fit, N=4,194,304 x D=16 float32, 10 full-batch epochs", t, [
        f"pyfit.fit is {t['torch nn.Linear+mse+SGD(fused)'] / t['pyfit.fit']:.2f}x faster than torch's loop "
        "(target >= 2.5x)"])
    with open(args.output, "a") as out:
        out.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
