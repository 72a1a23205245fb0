"""Metrics by name against scikit-learn's, on random predictions."""

import numpy as np
import pytest
import torch

from pyfit.errors import InputError
from pyfit.metrics import METRICS, check_metric_names, scores

sklearn_metrics = pytest.importorskip("sklearn.metrics")


@pytest.mark.parametrize("outputs", [1, 3])
def test_metrics_match_scikit_learn(seeded, outputs):
    y = torch.randn(50, outputs, dtype=torch.float64, generator=seeded)
    pred = y + 0.5 * torch.randn(50, outputs, dtype=torch.float64, generator=seeded)
    got = scores(list(METRICS), y, pred)
    assert got["r2"] == pytest.approx(sklearn_metrics.r2_score(y, pred), rel=1e-12)
    assert got["mae"] == pytest.approx(sklearn_metrics.mean_absolute_error(y, pred), rel=1e-12)
    rmse = np.mean(np.sqrt(sklearn_metrics.mean_squared_error(y, pred, multioutput="raw_values")))
    assert got["rmse"] == pytest.approx(rmse, rel=1e-12)


def test_unknown_metric_names_the_known_ones():
    with pytest.raises(InputError, match="unknown metric 'r3'; available: r2, rmse, mae"):
        check_metric_names(["r2", "r3"])
