"""pyfit.Regressor: scikit-learn's estimator checks, nested parameters, Pipeline and GridSearchCV."""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

sklearn = pytest.importorskip("sklearn")

from sklearn.base import clone  # noqa: E402
from sklearn.model_selection import GridSearchCV  # noqa: E402
from sklearn.pipeline import Pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

import pyfit  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@parametrize_with_checks([pyfit.Regressor()])
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def _curve(n=80, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, n)
    return x.reshape(-1, 1), 0.5 - x + 2 * x ** 2 + 0.01 * rng.standard_normal(n)


def test_fit_predict_score():
    X, y = _curve()
    reg = pyfit.Regressor(model="polynomial", model_kwargs={"degree": 2}, lr=0.3, epochs=2000, tol=None,
                          random_state=0)
    assert reg.fit(X, y) is reg
    assert reg.score(X, y) > 0.99 and reg.n_features_in_ == 1 and reg.n_iter_ == 2000
    assert reg.predict(X).dtype == np.float64 and len(reg.history_["loss"]) == 2000


def test_nested_parameters_and_clone():
    kwargs = {"degree": 2}
    reg = pyfit.Regressor(model="polynomial", model_kwargs=kwargs)
    assert reg.get_params()["model_kwargs__degree"] == 2
    reg.set_params(model_kwargs__degree=4, optimizer_kwargs__momentum=0.9)
    assert reg.model_kwargs == {"degree": 4} and reg.optimizer_kwargs == {"momentum": 0.9}
    assert kwargs == {"degree": 2}  # the caller's dict is not changed
    copy = clone(reg)
    assert copy.get_params()["model_kwargs__degree"] == 4 and copy.optimizer_kwargs == {"momentum": 0.9}


def test_pipeline_and_grid_search_over_nested_parameters():
    X, y = _curve()
    pipeline = Pipeline([("scale", StandardScaler()),
                         ("reg", pyfit.Regressor(model="polynomial", lr=0.05, epochs=300, random_state=0))])
    search = GridSearchCV(pipeline, {"reg__model_kwargs__degree": [1, 2],
                                     "reg__optimizer_kwargs__momentum": [0.0, 0.9]}, cv=3)
    search.fit(X, y)
    assert search.best_params_["reg__model_kwargs__degree"] == 2
    assert search.score(X, y) > 0.95


def test_partial_fit_and_warm_start_continue_training():
    X, y = _curve()
    reg = pyfit.Regressor(lr=0.1, random_state=0, optimizer_kwargs={"momentum": 0.5})
    reg.partial_fit(X, y)
    optimizer = reg.optimizer_
    reg.partial_fit(X, y, epochs=4)
    assert reg.n_iter_ == 5 and reg.optimizer_ is optimizer and len(reg.history_["loss"]) == 5
    with pytest.raises(ValueError, match="features"):
        reg.partial_fit(np.hstack([X, X]), y)

    warm = pyfit.Regressor(lr=0.1, epochs=10, warm_start=True, random_state=0).fit(X, y)
    model = warm.model_
    warm.fit(X, y)
    assert warm.n_iter_ == 20 and warm.model_ is model
    cold = pyfit.Regressor(lr=0.1, epochs=10, random_state=0).fit(X, y)
    first = cold.model_
    cold.fit(X, y)
    assert cold.n_iter_ == 10 and cold.model_ is not first


def test_import_pyfit_never_imports_sklearn():
    # None in sys.modules is how Python spells "not installed" to import and to importlib.util.find_spec
    code = ("import sys\n"
            "sys.modules['sklearn'] = None\n"
            "import pyfit\n"
            "assert sys.modules['sklearn'] is None and not [m for m in sys.modules if m.startswith('sklearn.')]\n"
            "pyfit.fit('linear', [0.0, 1.0], [1.0, 2.0], epochs=2)\n"
            "try:\n"
            "    pyfit.Regressor\n"
            "except ImportError as error:\n"
            "    print('blocked:', error)\n")
    env = {**os.environ, "PYTHONPATH": ROOT, "PYTHONWARNINGS": "ignore"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "blocked:" in out.stdout and "sklearn" in out.stdout


def test_set_params_lr_and_optimizer_settings_apply_when_training_continues():
    X, y = _curve()
    reg = pyfit.Regressor(lr=0.01, random_state=0).partial_fit(X, y)
    reg.set_params(lr=0.2, optimizer_kwargs={"momentum": 0.5})
    reg.partial_fit(X, y, epochs=2)
    assert reg.history_["lr"] == [0.01, 0.2, 0.2]
    assert reg.optimizer_.param_groups[0]["lr"] == 0.2 and reg.optimizer_.param_groups[0]["momentum"] == 0.5
    assert reg.optimizer_.defaults["lr"] == 0.2

    warm = pyfit.Regressor(lr=0.01, epochs=2, warm_start=True, random_state=0).fit(X, y)
    warm.set_params(lr=0.1).fit(X, y)
    assert warm.history_["lr"] == [0.01, 0.01, 0.1, 0.1]


def test_settings_a_continuing_fit_cannot_take_are_refused_and_change_nothing():
    X, y = _curve()
    reg = pyfit.Regressor(lr=0.1, scheduler="step", random_state=0).partial_fit(X, y)
    weight = reg.model_.weight.detach().clone()
    reg.set_params(lr=0.3)
    with pytest.raises(pyfit.InputError, match="lr=0.3 differs from lr=0.1, which its scheduler started from"):
        reg.partial_fit(X, y)
    reg.set_params(lr=0.1, optimizer="adam")
    with pytest.raises(pyfit.InputError, match="optimizer='adam', but the fitted model continues with "
                                               "optimizer='sgd'"):
        reg.partial_fit(X, y)
    reg.set_params(optimizer="sgd", optimizer_kwargs__momentom=0.9)
    with pytest.raises(pyfit.InputError, match="the optimizer has no setting 'momentom'"):
        reg.partial_fit(X, y)
    assert reg.n_iter_ == 1 and torch.equal(reg.model_.weight, weight)
    assert reg.optimizer_.param_groups[0]["lr"] == 0.1


def test_defaults_match_linear_regression_on_diabetes_in_the_data_units():
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import LinearRegression

    X, y = load_diabetes(return_X_y=True, scaled=False)
    reg = pyfit.Regressor(random_state=0).fit(X, y)
    exact = LinearRegression().fit(X, y)
    assert reg.score(X, y) == pytest.approx(exact.score(X, y), abs=1e-3)
    assert reg.coef_.shape == exact.coef_.shape and isinstance(reg.intercept_, float)
    # the predictions of coef_ and intercept_ are the model's, on the raw features
    np.testing.assert_allclose(X @ reg.coef_ + reg.intercept_, reg.predict(X), rtol=1e-9)
    assert reg.stop_reason_ == "converged" and reg.n_iter_ == len(reg.loss_curve_) < 10_000
    assert reg.warnings_ == [] and reg.lr_ > 0


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # 20 epochs of an MLP, on purpose
def test_polynomial_coefficients_match_polyfit_and_an_mlp_has_none(capsys):
    X, y = _curve()
    X = X * 50 + 200  # far from zero: the coefficients in the data's units differ from the standardized ones
    reg = pyfit.Regressor(model="polynomial", model_kwargs={"degree": 2}, random_state=0).fit(X, y)
    expected = np.polyfit(X[:, 0], y, 2)  # highest power first
    np.testing.assert_allclose(reg.coef_[::-1], expected[:2], rtol=1e-3)
    assert reg.intercept_ == pytest.approx(expected[2], rel=1e-3)
    mlp = pyfit.Regressor(model="mlp", model_kwargs={"hidden": [8]}, epochs=20, verbose=True,
                          random_state=0).fit(X, y)
    assert not hasattr(mlp, "coef_") and len(mlp.loss_curve_) == mlp.n_iter_ == 20
    assert capsys.readouterr().out.startswith("pyfit.Regressor: completed after 20 epochs")


def test_a_bad_fit_warns_with_a_convergence_warning():
    from sklearn.exceptions import ConvergenceWarning

    X, y = _curve()
    with pytest.warns(ConvergenceWarning, match="worse than predicting the mean"):
        reg = pyfit.Regressor(lr=1e-6, epochs=5, random_state=0).fit(X, y + 100)
    assert any("worse than predicting the mean" in w for w in reg.warnings_)


def test_early_stopping_holds_out_rows_and_keeps_the_best_epoch():
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, 60)
    y = np.sin(3 * x) + 0.3 * rng.standard_normal(60)
    reg = pyfit.Regressor(model="polynomial", model_kwargs={"degree": 6}, early_stopping=True,
                          validation_fraction=0.3, tol=None, epochs=3000, random_state=0)
    reg.fit(x.reshape(-1, 1), y)
    scores = reg.validation_scores_
    assert reg.stop_reason_ == "early_stopping" and len(scores) == reg.n_iter_ < 3000
    # the model kept is the best epoch's, not the last one's
    assert reg.best_validation_score_ == pytest.approx(max(scores), rel=1e-12) and max(scores) > scores[-1]
