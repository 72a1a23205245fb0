"""Where the fused linear kernel may run, decided from facts that do not need a GPU to check."""

import re
from pathlib import Path
from types import SimpleNamespace

from pyfit.ops._checks import CUDA_MAX_LINEAR_OUTPUTS, linear_kernel_takes

ROOT = Path(__file__).resolve().parents[1]


def test_the_cuda_output_limit_is_the_one_the_kernel_is_built_with():
    header = (ROOT / "csrc" / "cuda" / "kernels.h").read_text()
    built = int(re.search(r"kLinearMaxOutputs\s*=\s*(\d+)", header).group(1))
    assert built == CUDA_MAX_LINEAR_OUTPUTS


def test_more_outputs_than_the_cuda_kernel_takes_leave_the_fused_path():
    def weight(outputs, cuda):
        return SimpleNamespace(is_cuda=cuda, shape=(outputs, 3))

    assert linear_kernel_takes(weight(CUDA_MAX_LINEAR_OUTPUTS, cuda=True))
    assert not linear_kernel_takes(weight(CUDA_MAX_LINEAR_OUTPUTS + 1, cuda=True))
    assert linear_kernel_takes(weight(10 * CUDA_MAX_LINEAR_OUTPUTS, cuda=False))  # the CPU kernel takes any K
