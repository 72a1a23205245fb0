"""Plots: headless, return a Figure, and save a real PNG when given a path."""

import subprocess
import sys

import pytest
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


def test_titles_name_the_model_loss_and_optimizer_and_axes_are_labelled():
    x = torch.rand(30)
    result = pyfit.fit("polynomial", x, 2 * x + 1, loss="huber", optimizer="adam", lr=0.05, epochs=20,
                       model_kwargs={"degree": 2})
    loss_axes = result.plot_loss().axes[0]
    assert loss_axes.get_title() == "Loss: polynomial model, huber loss, adam (lr 0.05)"
    assert (loss_axes.get_xlabel(), loss_axes.get_ylabel()) == ("epoch", "loss (log scale)")
    fit_axes = result.plot_fit(x, 2 * x + 1).axes[0]
    assert fit_axes.get_title() == "Fit: polynomial model, huber loss, adam (lr 0.05)"
    assert (fit_axes.get_xlabel(), fit_axes.get_ylabel()) == ("x", "y")
    custom = pyfit.fit(pyfit.Linear(1), x, x, optimizer=torch.optim.SGD(pyfit.Linear(1).parameters(), lr=0.1),
                       epochs=2)
    assert custom.plot_loss().axes[0].get_title() == "Loss: Linear model, mse loss, SGD (lr 0.1)"


def test_predicted_against_actual_for_several_features_and_outputs(tmp_path):
    g = torch.Generator().manual_seed(0)
    X = torch.rand(40, 4, generator=g)
    Y = torch.stack([X.sum(1), X[:, 0] - X[:, 1]], 1)
    result = pyfit.fit("linear", X, Y, lr=0.5, epochs=300, seed=0)
    figure = result.plot_predictions(X, Y, tmp_path / "p.png", target_names=["total", "difference"])
    axes = figure.axes[0]
    # wrapped to fit the figure's width
    assert axes.get_title().replace("\n", " ").startswith("Predicted against actual: linear model, mse loss, sgd")
    assert (axes.get_xlabel(), axes.get_ylabel()) == ("actual", "predicted")
    legend = [t.get_text() for t in axes.get_legend().get_texts()]
    assert legend[0].startswith("total (R² ") and legend[1].startswith("difference (R² ")
    assert legend[2] == "predicted = actual"
    # the points are (actual, predicted) for every row and output
    points = axes.collections[0].get_offsets()
    torch.testing.assert_close(torch.as_tensor(points[:, 1], dtype=torch.float64),
                               result.predict(X)[:, 0].double(), rtol=1e-6, atol=1e-6)
    assert legend[0].endswith("over the 40 rows shown)")
    r2 = float(legend[0].split("R² ")[1].split()[0])
    residual = ((Y[:, 0] - result.predict(X)[:, 0]) ** 2).sum() / ((Y[:, 0] - Y[:, 0].mean()) ** 2).sum()
    assert r2 == pytest.approx(1 - float(residual), abs=1e-3)
    assert (tmp_path / "p.png").read_bytes().startswith(PNG_MAGIC)


def test_predictions_with_one_named_target_say_its_name():
    X = torch.rand(10, 3)
    axes = pyfit.plot_predictions(pyfit.Linear(3), X, X.sum(1), target_names=["price"]).axes[0]
    assert (axes.get_xlabel(), axes.get_ylabel()) == ("actual price", "predicted price")
    with pytest.raises(ValueError, match="target_names has 2 names for 1 output"):
        pyfit.plot_predictions(pyfit.Linear(3), X, X.sum(1), target_names=["a", "b"])


def test_loss_plot_shows_the_validation_loss_when_there_is_one():
    axes = pyfit.plot_loss({"loss": [4.0, 2.0, 1.0], "val_loss": [5.0, 3.0, 2.5]}).axes[0]
    assert [t.get_text() for t in axes.get_legend().get_texts()] == ["training", "validation"]
    assert [list(line.get_ydata()) for line in axes.lines] == [[4.0, 2.0, 1.0], [5.0, 3.0, 2.5]]


def test_several_curves_fall_back_to_a_linear_scale_when_a_value_is_not_positive():
    figure = pyfit.plot_losses({"a": [1.0, 0.0], "b": [2.0, 1.0]}, references={"exact": 0.0})
    axes = figure.axes[0]
    assert axes.get_yscale() == "linear" and axes.get_ylabel() == "training loss"
    assert len(axes.lines) == 3  # the zero reference is drawn on a linear scale


def _inside_the_figure(figure, artist):
    figure.canvas.draw()
    box, edges = artist.get_window_extent(), figure.bbox
    return edges.x0 <= box.x0 and box.x1 <= edges.x1 and edges.y0 <= box.y0 and box.y1 <= edges.y1


def test_a_long_title_is_wrapped_inside_the_figure_not_cut_off(tmp_path):
    g = torch.Generator().manual_seed(0)
    X = torch.rand(30, 3, generator=g)
    result = pyfit.fit("linear", X, X.sum(1), optimizer="sgd", lr=0.234393, epochs=5, seed=0)
    result.config["model"] = "a_plugin_model_with_a_rather_long_registry_name"
    for figure in (result.plot_predictions(X, X.sum(1), target_names=["stack_loss"]), result.plot_loss(),
                   pyfit.plot.plot_losses({"sgd": [2.0, 1.0]}, title="Loss " * 30)):
        title = figure.axes[0].title
        assert "\n" in title.get_text() and _inside_the_figure(figure, title), title.get_text()
    assert "(lr 0.234)" in result.plot_predictions(X, X.sum(1)).axes[0].get_title().replace("\n", " ")
