"""Plots: headless, return a Figure, and save a real PNG when given a path."""

import subprocess
import sys

import torch

import pyfit

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_loss_and_fit_plots_are_saved_as_png(tmp_path):
    x = torch.rand(30)
    result = pyfit.fit("linear", x, 2 * x + 1, lr=0.5, epochs=200)
    loss_png, fit_png = tmp_path / "sub" / "loss.png", tmp_path / "fit.png"
    figure = result.plot_loss(loss_png)
    assert figure.axes[0].get_yscale() == "log"
    result.plot_fit(x, 2 * x + 1, fit_png)
    for path in (loss_png, fit_png):
        data = path.read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 5000


def test_linear_scale_when_asked_or_when_a_loss_is_not_positive():
    assert pyfit.plot_loss({"loss": [1.0, 0.5]}, log=False).axes[0].get_yscale() == "linear"
    assert pyfit.plot_loss({"loss": [1.0, 0.0]}).axes[0].get_yscale() == "linear"


def test_plot_fit_refuses_several_features():
    import pytest

    with pytest.raises(ValueError, match="one input feature, but X has 2"):
        pyfit.plot_fit(pyfit.Linear(2), torch.rand(5, 2), torch.rand(5))


def test_plots_work_without_a_display(tmp_path):
    script = (
        "import pyfit, torch, matplotlib\n"
        f"pyfit.plot_loss({{'loss': [3.0, 2.0, 1.0]}}, {str(tmp_path / 'l.png')!r})\n"
        "print(matplotlib.get_backend())\n"
    )
    env = {k: v for k, v in __import__("os").environ.items() if k not in ("DISPLAY", "MPLBACKEND")}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().lower() == "agg"
    assert (tmp_path / "l.png").read_bytes().startswith(PNG_MAGIC)
