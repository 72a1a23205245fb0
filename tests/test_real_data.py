"""Real data, no tuning: ``pyfit fit DATA.csv --target Y`` reaches the least-squares R².

Every data set here was collected by someone else and ships inside a Python
package (no download). Each is written to CSV in its original units, fitted with
``pyfit fit DATA.csv --target Y`` and no other flag, and the R² of the returned
model must be within 0.01 of closed-form least squares with an intercept
(``numpy.linalg.lstsq``). The features are all the other columns.

| data set | package | rows x features | target |
| --- | --- | --- | --- |
| diabetes (scaled=False) | scikit-learn | 442 x 10 | disease progression after one year |
| linnerud | scikit-learn | 20 x 3 | Weight, Waist, Pulse (three targets) |
| longley | statsmodels | 16 x 6 | TOTEMP, total employment (notoriously collinear) |
| stackloss | statsmodels | 21 x 3 | STACKLOSS, ammonia lost by a plant |
| engel | statsmodels | 235 x 1 | foodexp, household food expenditure, from income |
| grunfeld | statsmodels | 220 x 2 | invest, gross investment, from value and capital |
| ccard | statsmodels | 72 x 4 | AVGEXP, average credit card expenditure |
| cpunish | statsmodels | 17 x 6 | EXECUTIONS per state |
| macrodata | statsmodels | 203 x 12 | realgdp, from the other US macro series |
| scotland | statsmodels | 32 x 7 | YES, share voting for a Scottish parliament |
| statecrime | statsmodels | 51 x 5 | murder rate per US state |
| fair | statsmodels | 6366 x 8 | affairs, time spent in extramarital affairs |
| copper | statsmodels | 25 x 5 | WORLDCONSUMPTION of copper |
| committee | statsmodels | 20 x 5 | BILLS104, bills assigned to a House committee |
| danish_data | statsmodels | 55 x 4 | lrm, log real money demand in Denmark |
| star98 | statsmodels | 303 x 20 | PCTABOVE = NABOVE / (NABOVE + NBELOW), share of students above the median |

Dropped columns: grunfeld's firm and year, macrodata's year and quarter,
statecrime's violent (another crime rate, not a cause), star98's NABOVE and
NBELOW (the target is made from them).
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("sklearn")
datasets = pytest.importorskip("statsmodels.datasets")
from sklearn import datasets as sklearn_datasets  # noqa: E402

from pyfit.cli import main  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _statsmodels(name, target, drop=()):
    frame = getattr(datasets, name).load_pandas().data.drop(columns=list(drop)).reset_index(drop=True)
    return frame, [target]


def _star98():
    frame = datasets.star98.load_pandas().data
    frame = frame.assign(PCTABOVE=frame.NABOVE / (frame.NABOVE + frame.NBELOW))
    return frame.drop(columns=["NABOVE", "NBELOW"]), ["PCTABOVE"]


def _linnerud():
    data = sklearn_datasets.load_linnerud(as_frame=True)
    return data.frame, list(data.target.columns)


DATA = {
    "diabetes": lambda: (sklearn_datasets.load_diabetes(as_frame=True, scaled=False).frame, ["target"]),
    "linnerud": _linnerud,
    "longley": lambda: _statsmodels("longley", "TOTEMP"),
    "stackloss": lambda: _statsmodels("stackloss", "STACKLOSS"),
    "engel": lambda: _statsmodels("engel", "foodexp"),
    "grunfeld": lambda: _statsmodels("grunfeld", "invest", ["firm", "year"]),
    "ccard": lambda: _statsmodels("ccard", "AVGEXP"),
    "cpunish": lambda: _statsmodels("cpunish", "EXECUTIONS"),
    "macrodata": lambda: _statsmodels("macrodata", "realgdp", ["year", "quarter"]),
    "scotland": lambda: _statsmodels("scotland", "YES"),
    "statecrime": lambda: _statsmodels("statecrime", "murder", ["violent"]),
    "fair": lambda: _statsmodels("fair", "affairs"),
    "copper": lambda: _statsmodels("copper", "WORLDCONSUMPTION"),
    "committee": lambda: _statsmodels("committee", "BILLS104"),
    "danish_data": lambda: _statsmodels("danish_data", "lrm"),
    "star98": _star98,
}


def least_squares_r2(X: np.ndarray, y: np.ndarray) -> float:
    """R² of the closed-form least-squares fit with an intercept, averaged over the targets."""
    design = np.column_stack([X, np.ones(len(X))])
    coefficients = np.linalg.lstsq(design, y, rcond=None)[0]
    residual = ((y - design @ coefficients) ** 2).sum(0)
    total = ((y - y.mean(0)) ** 2).sum(0)
    return float(np.mean(1 - residual / total))


@pytest.fixture(scope="module")
def csv_files(tmp_path_factory):
    """name -> (path, target columns, least-squares R²), every data set written as CSV once."""
    folder = tmp_path_factory.mktemp("real-data")
    files = {}
    for name, load in DATA.items():
        frame, target = load()
        path = str(folder / f"{name}.csv")
        frame.to_csv(path, index=False)
        X = frame.drop(columns=target).to_numpy(float)
        files[name] = (path, target, least_squares_r2(X, frame[target].to_numpy(float)))
    return files


@pytest.mark.parametrize("name", list(DATA))
def test_no_flag_fit_reaches_the_least_squares_r2(csv_files, capsys, name):
    path, target, best = csv_files[name]
    status = main(["fit", path, "--target", ",".join(target), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert status == 0, report
    assert report["r2"] == pytest.approx(best, abs=0.01), (name, report["r2"], best, report["warnings"])
    assert report["final_loss"] is not None and report["stop_reason"] in ("converged", "completed")


def test_the_installed_command_fits_diabetes_with_no_flags(csv_files):
    path, target, best = csv_files["diabetes"]
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    done = subprocess.run([sys.executable, "-m", "pyfit", "fit", path, "--target", target[0]],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = dict(line.split(None, 1) for line in done.stdout.splitlines() if line.startswith(("R²", "lr ")))
    r2 = float(lines["R²"].split()[-1])
    assert r2 == pytest.approx(best, abs=0.01)
    assert "auto" in lines["lr"]
