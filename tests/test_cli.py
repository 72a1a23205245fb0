"""The `pyfit` command, driven as a user drives it: real processes, files and exit codes."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import pyfit
from pyfit._cli_values import parse_value
from pyfit.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
       "PYTHONWARNINGS": "ignore"}


def run(*args, cwd=None, timeout=120):
    return subprocess.run([sys.executable, "-m", "pyfit", *map(str, args)], capture_output=True, text=True,
                          env=ENV, cwd=cwd, timeout=timeout)


@pytest.fixture
def points(tmp_path):
    rng = np.random.default_rng(0)
    x, z = rng.random(60), rng.random(60)
    path = tmp_path / "points.csv"
    np.savetxt(path, np.c_[x, z, 2 * x - z + 0.5], delimiter=",", header="x,z,y", comments="", fmt="%.17g")
    return path


def test_fit_json_save_and_predict(tmp_path, points):
    out = run("fit", points, "--target", "y", "--lr", "0.5", "--epochs", "400", "--save", tmp_path / "c.pt",
              "--json", "--plot", tmp_path / "plots")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["stop_reason"] == "completed" and report["epochs"] == 400
    assert report["r2"] > 0.999 and report["final_loss"] < 1e-4 and "fused-linear" in report["backend"]
    assert report["seconds"] > 0 and len(report["parameters"]["weight"]) == 2
    assert (tmp_path / "plots" / "loss.png").stat().st_size > 0
    checkpoint = pyfit.load_checkpoint(tmp_path / "c.pt")
    assert checkpoint.metadata["features"] == ["x", "z"] and checkpoint.epoch == 400

    pred = run("predict", tmp_path / "c.pt", points)
    assert pred.returncode == 0, pred.stderr
    lines = pred.stdout.splitlines()
    assert lines[0] == "prediction" and len(lines) == 61
    run("predict", tmp_path / "c.pt", points, "--output", tmp_path / "p.csv")
    assert (tmp_path / "p.csv").read_text() == pred.stdout


def test_summary_then_resume_to_more_epochs(tmp_path, points):
    common = ["fit", points, "--target", "y", "--features", "x,z", "--batch-size", "16", "--shuffle",
              "--seed", "4", "--opt-arg", "momentum=0.5", "--lr", "0.1"]
    first = run(*common, "--epochs", "30", "--save", tmp_path / "a.pt")
    assert first.returncode == 0, first.stderr
    assert "R² (train)" in first.stdout and "stopped      completed" in first.stdout
    assert "weight" in first.stdout and "wall time" in first.stdout
    resumed = run("fit", points, "--resume", tmp_path / "a.pt", "--epochs", "60", "--save", tmp_path / "b.pt",
                  "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    whole = run(*common, "--epochs", "60", "--save", tmp_path / "c.pt", "--quiet")
    assert whole.returncode == 0
    b, c = pyfit.load_checkpoint(tmp_path / "b.pt"), pyfit.load_checkpoint(tmp_path / "c.pt")
    assert b.epoch == 60 and b.history == c.history


def test_bad_data_exits_1_with_a_message_not_a_traceback(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("x,y\n1,2\n3,oops\n")
    out = run("fit", bad, "--target", "y")
    assert out.returncode == 1
    assert "non-numeric value 'oops' at row 3, column 'y'" in out.stderr and "Traceback" not in out.stderr
    out = run("fit", bad, "--target", "price")
    assert out.returncode == 1 and "available columns: x, y" in out.stderr
    (tmp_path / "cut.pt").write_bytes(b"PK\x03\x04 truncated")
    out = run("predict", tmp_path / "cut.pt", bad)
    assert out.returncode == 1 and "cut.pt" in out.stderr and "Traceback" not in out.stderr


def test_demo_prints_the_true_line_and_saves_plots(tmp_path):
    out = run("demo", "--epochs", "3000", "--output", tmp_path / "demo")
    assert out.returncode == 0, out.stderr
    assert "w = 3.0000, b = 0.8000" in out.stdout and "true line: w = 3, b = 0.8" in out.stdout
    assert sorted(os.listdir(tmp_path / "demo")) == ["fit.png", "loss.png"]


def test_ctrl_c_saves_and_exits_130(tmp_path, points):
    checkpoint = tmp_path / "run.pt"
    process = subprocess.Popen(
        [sys.executable, "-m", "pyfit", "fit", str(points), "--target", "y", "--epochs", "10000000",
         "--early-stopping", "10000000", "--lr", "0.001", "--save", str(checkpoint)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    try:
        while True:  # the command says on stderr when the fit starts
            line = process.stderr.readline()
            assert line, "pyfit fit ended before it started fitting"
            if line.startswith("pyfit fit:"):
                break
        time.sleep(1.5)
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, stderr
    assert "interrupted" in stderr and "Traceback" not in stderr
    loaded = pyfit.load_checkpoint(checkpoint)
    assert loaded.stop_reason == "interrupted" and loaded.epoch > 0


def test_plugins_and_info():
    out = run("plugins")
    assert out.returncode == 0
    assert "linear" in out.stdout and "[built-in]" in out.stdout and "failed plugins (" in out.stdout
    for title in ("models", "losses", "optimizers", "schedulers"):
        assert f"{title} (" in out.stdout
    out = run("info")
    assert out.returncode == 0
    assert f"pyfit        {pyfit.__version__}" in out.stdout and "ops backend" in out.stdout


@pytest.mark.skipif(shutil.which("pyfit") is None, reason="the pyfit console script is not installed")
def test_console_script():
    out = subprocess.run(["pyfit", "--version"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "pyfit" in out.stdout


# in-process: parsing and usage errors need no fresh interpreter
@pytest.mark.parametrize("command", ["demo", "fit", "predict", "compare", "plugins", "info"])
def test_every_subcommand_has_help(command, capsys):
    assert main([command, "--help"]) == 0
    assert "usage: pyfit " + command in capsys.readouterr().out


@pytest.mark.parametrize("argv", [[], ["frobnicate"], ["fit"], ["fit", "d.csv", "--epochs", "many"],
                                  ["fit", "d.csv", "--target", "y", "--model-arg", "degree"]])
def test_usage_errors_exit_2(argv, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "d.csv").write_text("x,y\n1,2\n")
    assert main(argv) == 2
    assert "usage: pyfit" in capsys.readouterr().err


def test_fit_without_target_is_a_usage_error(tmp_path, capsys):
    (tmp_path / "d.csv").write_text("x,y\n1,2\n")
    assert main(["fit", str(tmp_path / "d.csv")]) == 2
    assert "--target" in capsys.readouterr().err


def test_config_file_and_flags_that_win(tmp_path, points, capsys):
    config = tmp_path / "fit.toml"
    config.write_text('target = "y"\nepochs = 7\nlr = 0.2\nmodel = "mlp"\n'
                      '[model_args]\nhidden = [3]\nactivation = "tanh"\n')
    assert main(["fit", str(points), "--config", str(config), "--model-arg", "hidden=[4]", "--epochs", "9",
                 "--json", "--save", str(tmp_path / "m.pt")]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["epochs"] == 9 and "autograd" in report["backend"]
    model = pyfit.load_checkpoint(tmp_path / "m.pt").model
    assert model.config["hidden"] == [4] and model.config["activation"] == "tanh"
    config.write_text('target = "y"\nlearning_rate = 0.1\n')
    assert main(["fit", str(points), "--config", str(config)]) == 2
    assert "unknown key 'learning_rate'" in capsys.readouterr().err


def test_parse_value():
    assert [parse_value(v) for v in ("3", "-0.5", "false", "[8, 8]", "relu", "none")] == \
        [3, -0.5, False, [8, 8], "relu", None]


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    """A two-column CSV in the working directory, named d.csv."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "d.csv").write_text("x,y\n1,2\n2,4\n3,6\n")
    return tmp_path


BAD_FLAGS = [
    (["--epochs", "0"], "epochs must be an integer >= 1, got 0"),
    (["--epochs", "99999999999999999999"], "epochs must be at most 10,000,000"),
    (["--lr", "-1"], "lr must be a finite number > 0, got -1.0"),
    (["--opt-arg", "momentom=0.9"], "takes no argument 'momentom' (did you mean 'momentum'?)"),
    (["--opt-arg", "momentum=-1"], "momentum must be a finite number >= 0"),
    (["--scheduler", "step", "--sched-arg", "step_size=0"], "step_size must be an integer >= 1, got 0"),
    (["--model", "mlp", "--model-arg", "hiden=[3]"], "takes no argument 'hiden' (did you mean 'hidden'?)"),
    (["--seed", str(2**70)], "seed must be an integer from -2**63 to 2**64 - 1"),
    (["--early-stopping", "0"], "early_stopping must be an integer >= 1"),
    (["--save", "missing/fit.pt"], "does not exist"),
    (["--save", "."], "is a directory"),
]


@pytest.mark.parametrize("flags, message", BAD_FLAGS, ids=[" ".join(f) for f, _ in BAD_FLAGS])
def test_bad_settings_are_usage_errors_that_exit_2_before_any_fit(tiny, flags, message, capsys, monkeypatch):
    def must_not_fit(*args, **kwargs):
        raise AssertionError("the fit ran")

    monkeypatch.setattr(pyfit, "fit", must_not_fit)
    assert main(["fit", "d.csv", "--target", "y", *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and "usage: pyfit" in err


def test_resume_with_a_new_lr_trains_at_it_and_records_it(tiny, capsys):
    assert main(["fit", "d.csv", "--target", "y", "--lr", "0.01", "--epochs", "3", "--save", "a.pt", "--quiet"]) == 0
    assert main(["fit", "d.csv", "--resume", "a.pt", "--lr", "0.05", "--epochs", "6", "--save", "b.pt",
                 "--quiet"]) == 0
    saved = pyfit.load_checkpoint(tiny / "b.pt")
    assert saved.history["lr"] == [0.01] * 3 + [0.05] * 3
    assert saved.config["lr"] == 0.05 and saved.optimizer.param_groups[0]["lr"] == 0.05


def test_data_that_overflows_the_fits_dtype_or_overlaps_is_refused_with_file_row_and_column(tiny, capsys):
    (tiny / "big.csv").write_text("x,y\n1,2\n1e308,3\n")
    assert main(["fit", "big.csv", "--target", "y"]) == 1
    assert "big.csv: value 1e308 at row 3, column 'x' is too large for float32" in capsys.readouterr().err
    assert main(["fit", "d.csv", "--target", "y", "--features", "y"]) == 1
    assert "column 'y' is both a feature and a target" in capsys.readouterr().err


def test_predict_refuses_to_write_non_finite_predictions(tiny, capsys):
    result = pyfit.fit("linear", [1.0, 2.0], [2.0, 4.0], lr=0.1, epochs=50, seed=0)
    pyfit.save_checkpoint(tiny / "m.pt", result, metadata={"features": ["x"]})
    (tiny / "new.csv").write_text("x\n1\n3e38\n")
    assert main(["predict", "m.pt", "new.csv", "--output", "p.csv"]) == 1
    err = capsys.readouterr().err
    assert "new.csv: the prediction for row 3 is inf" in err and "nothing was written" in err
    assert not (tiny / "p.csv").exists()
    assert main(["predict", "m.pt", "d.csv", "--output", "p.csv"]) == 0
    assert len((tiny / "p.csv").read_text().splitlines()) == 4


def test_no_flag_fit_says_lr_scaling_and_weights_in_the_data_units(tmp_path, capsys):
    rng = np.random.default_rng(0)
    x, z = rng.random(60) * 1000, rng.random(60) * 0.01  # magnitudes far apart, as real columns are
    path = tmp_path / "wide.csv"
    np.savetxt(path, np.c_[x, z, 0.002 * x - 30 * z + 5], delimiter=",", header="x,z,y", comments="", fmt="%.17g")
    assert main(["fit", str(path), "--target", "y"]) == 0
    summary = dict(line.split(None, 1) for line in capsys.readouterr().out.splitlines())
    assert summary["stopped"].startswith("converged") and float(summary["R²"].split()[-1]) > 0.9999
    assert "(auto: 1/L for full-batch gradient descent" in summary["lr"]
    assert summary["features"].startswith("standardized")
    weight = [float(v) for v in summary["weight"].split(",")]
    assert weight == pytest.approx([0.002, -30.0], rel=1e-3) and float(summary["bias"]) == pytest.approx(5, rel=1e-3)
    assert "warning" not in summary


def test_a_bad_fit_prints_its_warnings_in_the_summary_and_the_json(points, capsys):
    assert main(["fit", str(points), "--target", "y", "--lr", "1e-5", "--epochs", "20", "--seed", "0"]) == 0
    out = capsys.readouterr().out
    assert "warning      the fit is worse than predicting the mean" in out and "a larger lr" in out
    assert main(["fit", str(points), "--target", "y", "--lr", "1e-5", "--epochs", "20", "--seed", "0", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert any("worse than predicting the mean" in w for w in report["warnings"]) and report["lr"] == 1e-5
    assert report["lr_reason"] == "given" and report["standardized"] is True


def test_a_diverging_fit_exits_1_with_a_next_step(points, capsys):
    assert main(["fit", str(points), "--target", "y", "--lr", "100", "--no-standardize", "--epochs", "50",
                 "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["stop_reason"] == "non_finite" and "lower lr (e.g. lr=10)" in report["warnings"][0]


def test_lr_find_prints_a_suggestion_and_saves_its_plot(points, tmp_path, capsys):
    plot = tmp_path / "lr.png"
    assert main(["lr-find", str(points), "--target", "y", "--plot", str(plot), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    lowest = min(range(len(report["losses"])), key=report["losses"].__getitem__)
    assert report["lr"] == pytest.approx(report["lrs"][lowest] / 10)
    assert plot.stat().st_size > 1000
    assert main(["lr-find", str(points), "--target", "y", "--plot", str(plot), "--model", "mlp",
                 "--optimizer", "adam", "--steps", "30"]) == 0
    assert capsys.readouterr().out.startswith("suggested lr ")


def test_lr_takes_auto_and_refuses_other_words(points, capsys):
    assert main(["fit", str(points), "--target", "y", "--lr", "auto", "--epochs", "5", "--quiet"]) == 0
    assert main(["fit", str(points), "--target", "y", "--lr", "fast"]) == 2
    assert "expected a number or 'auto', got 'fast'" in capsys.readouterr().err


# -- compare, and what fit's --plot and --json give -------------------------------------------

def test_compare_prints_the_table_and_saves_the_plot(tmp_path, points, capsys):
    assert main(["compare", str(points), "--target", "y", "--optimizer", "sgd", "sgd:momentum=0.9",
                 "lbfgs:lr=1,line_search_fn=strong_wolfe", "--lr", "0.5", "--epochs", "80",
                 "--plot", str(tmp_path / "c.png")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"60 rows of {points}: features x, z; target y"
    assert out[1].split()[:2] == ["optimizer", "settings"]
    labels = [line.split("  ")[0] for line in out[3:7]]
    assert labels == ["sgd", "sgd momentum=0.9", "lbfgs", "least squares (closed form)"]
    assert "line_search_fn=strong_wolfe" in out[5] and "lr=1," in out[5]
    assert out[-1] == f"plot: {tmp_path / 'c.png'}"
    assert (tmp_path / "c.png").read_bytes().startswith(b"\x89PNG")


def test_compare_json_agrees_with_the_closed_form(tmp_path, points, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["compare", str(points), "--target", "y", "--features", "x,z", "--optimizer", "adam:betas=[0.8,0.99]",
                 "lbfgs", "--lr", "0.05", "1", "--epochs", "30", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["plot"] == "compare.png" and (tmp_path / "compare.png").is_file()
    rows = report["rows"]
    assert [r["settings"] for r in rows[:2]] == [{"lr": 0.05, "betas": [0.8, 0.99]}, {"lr": 1}]
    data = np.loadtxt(points, delimiter=",", skiprows=1)
    design = np.c_[data[:, :2], np.ones(len(data))]
    residual = design @ np.linalg.lstsq(design, data[:, 2], rcond=None)[0] - data[:, 2]
    assert rows[-1]["label"] == "least squares (closed form)"
    assert rows[-1]["final_loss"] == pytest.approx(float((residual ** 2).mean()), rel=1e-6, abs=1e-12)
    assert report["best_loss"] == min(r["final_loss"] for r in rows)


@pytest.mark.parametrize("argv, message", [
    (["--optimizer", "sgd:momentum"], "takes KEY=VALUE"),
    (["--optimizer", "sgd", "adam", "--lr", "0.1", "0.2", "0.3"], "--lr takes one value or one per optimizer (2)"),
])
def test_compare_usage_errors(argv, message, points, capsys):
    assert main(["compare", str(points), "--target", "y", *argv]) == 2
    assert message in capsys.readouterr().err


def test_compare_unknown_optimizer_fails_with_the_list(points, capsys):
    assert main(["compare", str(points), "--target", "y", "--optimizer", "sgd", "adamm"]) == 1
    assert "unknown optimizer 'adamm'. Did you mean 'adam'?" in capsys.readouterr().err


def test_fit_plot_saves_predictions_for_several_features_and_json_has_every_parameter(tmp_path, points, capsys):
    assert main(["fit", str(points), "--target", "y", "--model", "mlp", "--model-arg", "hidden=[8]", "--epochs", "5",
                 "--json", "--plot", str(tmp_path / "plots")]) == 0
    report = json.loads(capsys.readouterr().out)
    model = pyfit.MLP(2, hidden=[8])
    expected = {name: p.numel() for name, p in model.named_parameters()}
    assert {name: len(values) for name, values in report["parameters"].items()} == expected
    assert sorted(os.listdir(tmp_path / "plots")) == ["loss.png", "predictions.png"]
    assert main(["fit", str(points), "--target", "y", "--model", "mlp", "--model-arg", "hidden=[8]",
                 "--epochs", "5", "--quiet"]) == 0


def test_a_fit_that_diverges_without_reaching_inf_exits_1_with_one_warning(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 4)) * [1.0, 10.0, 100.0, 0.1] + 50
    path = tmp_path / "scaled.csv"
    np.savetxt(path, np.c_[x, x @ [2.0, -0.3, 0.05, 7.0]], delimiter=",", header="a,b,c,d,y", comments="",
               fmt="%.17g")
    # momentum 0.9 on minibatches of 4 at a step ten times lr="auto"'s: the loss climbs, still finite at epoch 10
    out = run("fit", path, "--target", "y", "--opt-arg", "momentum=0.9", "--batch-size", "4", "--shuffle",
              "--seed", "0", "--lr", "0.1", "--epochs", "10", "--json")
    assert out.returncode == 1, out.stdout + out.stderr
    report = json.loads(out.stdout)
    assert report["stop_reason"] == "completed" and report["final_loss"] is not None
    [warning] = report["warnings"]
    assert warning.startswith("the fit diverged") and "larger lr" not in warning
    assert "it diverged" in out.stderr
