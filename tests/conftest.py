"""Shared test settings: deterministic threads, a headless matplotlib, a short hypothesis budget."""

import os

os.environ.setdefault("MPLBACKEND", "Agg")

import pytest  # noqa: E402
import torch  # noqa: E402
from hypothesis import settings  # noqa: E402

settings.register_profile("pyfit", max_examples=40, deadline=None)
settings.load_profile(os.environ.get("PYFIT_HYPOTHESIS_PROFILE", "pyfit"))


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    import sys

    if "matplotlib.pyplot" in sys.modules:
        sys.modules["matplotlib.pyplot"].close("all")


@pytest.fixture
def seeded():
    torch.manual_seed(0)
    return torch.Generator().manual_seed(0)


@pytest.fixture(params=["python", "cpp"])
def backend(request):
    """Run the test once on the reference ops and once on the compiled ones (skipped when not built)."""
    import pyfit

    try:
        pyfit.ops.set_backend(request.param)
    except pyfit.ops.BackendUnavailableError as error:
        pytest.skip(f"no {request.param} backend: {error}")
    yield request.param
    pyfit.ops.set_backend("auto")
