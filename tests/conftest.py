"""Shared test settings: deterministic threads, a headless matplotlib, a short hypothesis budget,
and the one installed pyfit that the install tests share."""

import os
import shutil
import subprocess
import venv
from dataclasses import dataclass
from pathlib import Path

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


ROOT = Path(__file__).resolve().parents[1]
# what a checkout gains by building or testing in place; a fresh clone has none of it
BUILD_OUTPUTS = shutil.ignore_patterns("build", "*.so", "*.egg-info", ".git", "__pycache__", ".hypothesis",
                                       ".ci-venv", ".venv", "output")


@pytest.fixture(scope="session")
def clean_checkout():
    """Copies this checkout to a folder as a fresh clone has it (no in-place build, no build/
    folder, no venvs), so that a build test compiles from scratch and leaves this tree as it is."""

    def copy(destination: Path) -> Path:
        shutil.copytree(ROOT, destination, ignore=BUILD_OUTPUTS)
        return destination

    return copy


def _pip(python: Path, *args: str, timeout: int = 1200) -> subprocess.CompletedProcess:
    return subprocess.run([str(python), "-m", "pip", *args], capture_output=True, text=True, timeout=timeout)


def _skip_without_index(done: subprocess.CompletedProcess, what: str) -> None:
    if done.returncode != 0 and "No matching distribution" in done.stderr:
        pytest.skip(f"pip cannot reach a package index for {what}: {done.stderr[-300:]}")


@dataclass(frozen=True)
class Installed:
    """A virtual environment where pyfit was installed the README's way."""

    root: Path
    source: Path  # the clean copy pip installed from; it keeps pip's build/ folder
    install_output: str  # what `pip install -v` printed

    @property
    def python(self) -> Path:
        return self.root / "bin" / "python"

    def script(self, name: str) -> str:
        return str(self.root / "bin" / name)

    def pip(self, *args: str) -> subprocess.CompletedProcess:
        return _pip(self.python, *args)

    def skip_without_index(self, done: subprocess.CompletedProcess, what: str) -> None:
        _skip_without_index(done, what)


@pytest.fixture(scope="session")
def installed_pyfit(tmp_path_factory, clean_checkout):
    """A fresh venv with this torch (pinned: the local CPU wheel, never a multi-GB download)
    and `pip install .` of a clean copy: one compile of the extension shared by every test of
    an installed pyfit. Tests may add packages to it; none may reinstall pyfit."""
    folder = tmp_path_factory.mktemp("installed")
    source = clean_checkout(folder / "pyfit")
    root = folder / "venv"
    venv.EnvBuilder(with_pip=True).create(root)
    python = root / "bin" / "python"
    done = _pip(python, "install", f"torch=={torch.__version__.split('+')[0]}")
    _skip_without_index(done, "torch")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    done = _pip(python, "install", "-v", str(source))  # -v: setup.py's and the compiler's output
    _skip_without_index(done, "pyfit's dependencies")
    assert done.returncode == 0, f"installing pyfit failed:\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    return Installed(root, source, done.stdout + done.stderr)
