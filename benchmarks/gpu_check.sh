#!/usr/bin/env bash
# pyfit's GPU check in one command: build the extension against the installed CUDA
# build of torch, run the CUDA tests (tests/test_ops_cuda.py: the CUDA ops against
# the CPU kernels and the reference on random inputs, non-contiguous included) with
# the CPU op tests, then the GPU benchmarks (benchmarks/gpu_bench.py). About 5
# minutes on one GPU.
#
#   benchmarks/gpu_check.sh [RESULTS_FILE]
#
# Results go to RESULTS_FILE, else $OUT/gpu_check.md when $OUT is set, else
# benchmarks/gpu_check.md. PYTHON picks the interpreter (default python3); it
# needs torch with CUDA, setuptools, ninja, pytest and hypothesis.
# The build is in place (pyfit/_C*.so): run it in the checkout you mean to test.
#
# Exit status: 0 everything passed; 1 the build, a test or a benchmark failed;
# 2 no CUDA device is visible (the build was still checked; nothing ran on a GPU).
set -uo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
RESULTS=${1:-${OUT:+$OUT/gpu_check.md}}
RESULTS=${RESULTS:-benchmarks/gpu_check.md}
NO_DEVICE=2
LOGS=$(dirname "$RESULTS")  # the build and test logs go next to the results
mkdir -p "$LOGS"
: > "$RESULTS"

say() { echo "$*" | tee -a "$RESULTS"; }
fail() { say "FAILED: $*"; exit 1; }

say "# pyfit GPU check"
say ""
say "$(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"

# --- what is installed, and whether a GPU is visible ---------------------------------
probe=$("$PYTHON" - <<'EOF' 2>&1
import torch
print("torch", torch.__version__, "cuda", torch.version.cuda)
print("device", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none")
if torch.cuda.is_available():
    major, minor = torch.cuda.get_device_capability(0)
    print("arch", f"{major}.{minor}")
EOF
) || fail "torch cannot be imported by $PYTHON: $probe"
sed 's/^/    /' <<<"$probe" | tee -a "$RESULTS"
grep -q "^torch .* cuda None$" <<<"$probe" && fail "the installed torch is not a CUDA build: install one (e.g. pip install torch==2.14.1) and rerun"
"$PYTHON" -c "import ninja, setuptools" 2>/dev/null ||
    fail "$PYTHON lacks ninja or setuptools, which the build needs: pip install ninja setuptools"
device=$(sed -n 's/^device //p' <<<"$probe")
arch=$(sed -n 's/^arch //p' <<<"$probe")

# --- build: for the visible GPU's architecture, else sm_90 to prove the build --------
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-${arch:-9.0}}
export MAX_JOBS=${MAX_JOBS:-$(nproc)}
say ""
say "## Build (TORCH_CUDA_ARCH_LIST=$TORCH_CUDA_ARCH_LIST, MAX_JOBS=$MAX_JOBS)"
start=$SECONDS
"$PYTHON" setup.py build_ext --inplace > "$LOGS/build.log" 2>&1 || { tail -40 "$LOGS/build.log"; fail "the build failed (build.log)"; }
grep -qi "building the cpu ops only" "$LOGS/build.log" && { grep -i -A2 "WARNING (pyfit)" "$LOGS/build.log"; fail "setup.py built the CPU ops only (build.log)"; }
kernels=$(PYFIT_BACKEND=cpp "$PYTHON" -c '
import torch, pyfit.ops
from pyfit.ops._extension import _OPS
pyfit.ops.backend()
for op in _OPS:
    print(op, torch._C._dispatch_has_kernel_for_dispatch_key("pyfit::" + op, "CUDA"))
' 2>&1) || fail "the built extension does not load: $kernels"
grep -q "False" <<<"$kernels" && fail "an op has no CUDA kernel: $kernels"
say "built in $((SECONDS - start)) s; every op has a CUDA kernel"

if [ "$device" = "none" ]; then
    say ""
    say "NO CUDA DEVICE: torch sees no GPU on this machine. The CUDA build passed, but no test"
    say "or benchmark ran on a GPU. Run this script on a machine with one."
    exit $NO_DEVICE
fi

# --- tests: CUDA against the CPU kernels and the reference; the CPU op tests ----------
"$PYTHON" -c "import pytest, hypothesis" 2>/dev/null ||
    fail "$PYTHON lacks pytest or hypothesis, which the tests need: pip install pytest hypothesis"
say ""
say "## Tests on $device"
start=$SECONDS
"$PYTHON" -m pytest -q -rs -p no:cacheprovider tests/test_ops_cuda.py > "$LOGS/tests_cuda.log" 2>&1
status=$?
tail -5 "$LOGS/tests_cuda.log" | tee -a "$RESULTS"
[ $status -eq 0 ] || { grep -E "^(FAILED|ERROR)" "$LOGS/tests_cuda.log" | head -40; fail "CUDA tests (tests_cuda.log)"; }
grep -q "skipped" "$LOGS/tests_cuda.log" && fail "CUDA tests were skipped on a machine with a GPU (tests_cuda.log)"
"$PYTHON" -m pytest -q -p no:cacheprovider tests/test_ops_arguments.py tests/test_ops_mse.py \
    tests/test_ops_sgd.py tests/test_ops_linear.py tests/test_ops_sums.py > "$LOGS/tests_cpu.log" 2>&1
status=$?
tail -2 "$LOGS/tests_cpu.log" | tee -a "$RESULTS"
[ $status -eq 0 ] || { grep -E "^(FAILED|ERROR)" "$LOGS/tests_cpu.log" | head -40; fail "CPU op tests (tests_cpu.log)"; }
say "tests took $((SECONDS - start)) s"

# --- benchmarks ---------------------------------------------------------------------------
say ""
start=$SECONDS
"$PYTHON" benchmarks/gpu_bench.py --output "$RESULTS" || fail "the GPU benchmarks"
say "benchmarks took $((SECONDS - start)) s"
say ""
say "GPU check passed; results in $RESULTS"
