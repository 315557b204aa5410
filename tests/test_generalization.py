"""generalization_curve: the approximation error of the fitted mean (``mean_grid``) and its plumbing."""

import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose
from sklearn.exceptions import ConvergenceWarning

from mixexp import MixtureOfExpertsRegressor
from mixexp.theory import generalization_curve, neurips2023_model

GRID = np.linspace(0.0, 1.0, 1001)
SIGMA = 0.3


def _sine(n, rng):
    """y = sin(2 pi x) + N(0, SIGMA^2), x ~ Uniform[0, 1]."""
    x = rng.uniform(0.0, 1.0, n)
    return x[:, None], np.sin(2 * np.pi * x) + SIGMA * rng.randn(n)


def _sine_mean(X):
    return np.sin(2 * np.pi * np.asarray(X)[:, 0])


class _SineData:
    """The same data as an object with ``sample``, ``mean`` and ``log_density`` (no get_params)."""

    def sample(self, n, random_state):
        return _sine(n, random_state)

    def mean(self, X):
        return _sine_mean(X)

    def log_density(self, X, y):
        return -0.5 * np.log(2 * np.pi * SIGMA**2) - 0.5 * ((y - _sine_mean(X)) / SIGMA) ** 2


def test_mean_ise_is_the_grid_average_of_the_squared_error_of_predict():
    # Recompute one cell by hand from its recorded seed: the cell's RandomState draws the
    # training sample, then the test sample, then the estimator's seed (see _generalization_cell).
    params = {"init": "kmeans", "n_init": 2}
    table = generalization_curve(
        _sine,
        [1, 3],
        [300],
        1,
        n_test=400,
        estimator_params=params,
        mean_grid=GRID,
        true_mean=_sine_mean,
        random_state=0,
        progress=False,
    )
    for i in range(2):
        row = table.iloc[i]
        rng = np.random.RandomState(int(row["seed"]))
        X, y = _sine(300, rng)
        X_test, y_test = _sine(400, rng)
        est = MixtureOfExpertsRegressor(
            int(row["n_experts"]), random_state=int(rng.randint(2**31 - 1)), **params
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            est.fit(X, y)
        expected = np.mean((est.predict(GRID[:, None]) - np.sin(2 * np.pi * GRID)) ** 2)
        assert_allclose(row["mean_ise"], expected, rtol=1e-10)
        assert_allclose(row["test_nll"], -est.score_samples(X_test, y_test).mean(), rtol=1e-10)
    assert np.all(np.isnan(table["oracle_train_nll"]))  # a plain callable has no log_density


def test_oracle_train_nll_is_the_truths_nll_on_the_training_sample():
    data = _SineData()
    table = generalization_curve(data, [2], [200], 1, n_test=300, random_state=4, progress=False)
    rng = np.random.RandomState(int(table["seed"].iloc[0]))
    X, y = data.sample(200, rng)
    X_test, y_test = data.sample(300, rng)
    assert_allclose(table["oracle_train_nll"].iloc[0], -data.log_density(X, y).mean(), rtol=1e-12)
    assert_allclose(table["oracle_nll"].iloc[0], -data.log_density(X_test, y_test).mean(), rtol=1e-12)


def test_mean_ise_of_one_line_is_the_projection_residual_of_the_sine():
    # With K = 1 the fit is OLS. The best line to sin(2 pi x) under x ~ Uniform[0, 1] is
    # 3/pi - 6/pi x, which leaves an integrated squared error of 1/2 - 3/pi^2 = 0.196; on the grid we
    # take its grid average (it differs from the integral by O(1/m) = 7e-4, as the grid's endpoints,
    # where the residual is largest, count fully). The OLS estimate adds a non-negative estimation
    # error of mean E = (sigma^2 + 0.196) * 2 / n (2 coefficients, residual variance noise +
    # misfit), 1.4e-4 at n = 4000, with a standard deviation of the same order; the grid makes the
    # cross term O(1e-5). Bounds: [-1e-4, +8 E] around the grid residual.
    n = 4000
    table = generalization_curve(
        _sine,
        [1],
        [n],
        3,
        n_test=100,
        mean_grid=GRID,
        true_mean=_sine_mean,
        random_state=1,
        progress=False,
    )
    residual = np.mean((np.sin(2 * np.pi * GRID) - (3 - 6 * GRID) / np.pi) ** 2)
    assert abs(residual - (0.5 - 3 / np.pi**2)) < 1e-3
    estimation = (SIGMA**2 + residual) * 2 / n
    ise = table["mean_ise"].to_numpy()
    assert np.all(ise > residual - 1e-4), ise
    assert np.all(ise < residual + 8 * estimation), ise


def test_mean_ise_falls_with_more_experts_and_defaults_to_make_data_mean():
    # Three lines follow a sine far better than one (0.196 above); the true model's own mean is used
    # when true_mean is not given, and with the true number of experts its error is small.
    table = generalization_curve(
        _SineData(),
        [1, 3],
        [1500],
        1,
        n_test=500,
        estimator_params={"init": "kmeans", "n_init": 3},
        mean_grid=GRID,
        random_state=0,
        progress=False,
    )
    one, three = table["mean_ise"].to_numpy()
    assert three < one / 5, (one, three)
    assert np.all(np.isfinite(table["excess_nll"]))
    truth = neurips2023_model()
    moe = generalization_curve(
        truth,
        [1, 2],
        [2000],
        1,
        n_test=200,
        mean_grid=np.linspace(0, 1, 201)[:, None],
        random_state=0,
        progress=False,
    )
    assert moe["mean_ise"].iloc[1] < moe["mean_ise"].iloc[0] / 10


def test_without_grid_mean_ise_is_nan():
    table = generalization_curve(_sine, [1], [100], 1, n_test=50, random_state=0, progress=False)
    assert "mean_ise" in table.columns and np.isnan(table["mean_ise"].iloc[0])


def test_parallel_cells_and_checkpoints_give_the_same_table(tmp_path):
    kwargs = dict(n_test=200, mean_grid=GRID, true_mean=_sine_mean, random_state=3, progress=False)
    serial = generalization_curve(_sine, [1, 2], [150], 1, **kwargs)
    parallel = generalization_curve(_sine, [1, 2], [150], 1, n_jobs=2, **kwargs)
    cols = ["n_experts", "n", "seed", "test_nll", "mean_ise"]
    assert_allclose(parallel[cols].to_numpy(float), serial[cols].to_numpy(float), rtol=1e-10)
    # an object make_data without get_params can be checkpointed; the re-run reads the cells back
    path = tmp_path / "gen.csv"
    first = generalization_curve(_SineData(), [1], [150, 300], 1, checkpoint=path, **kwargs)
    second = generalization_curve(_SineData(), [1], [150, 300], 1, checkpoint=path, **kwargs)
    assert_allclose(second["mean_ise"], first["mean_ise"], rtol=1e-12)
    assert_allclose(second["fit_time"], first["fit_time"], rtol=1e-12)  # read back, not refitted
    other = {**kwargs, "mean_grid": GRID[::2]}
    with pytest.raises(ValueError, match="other settings"):
        generalization_curve(_SineData(), [1], [150, 300], 1, checkpoint=path, **other)


def test_bad_mean_grid_arguments():
    base = dict(n_test=50, random_state=0, progress=False)
    with pytest.raises(ValueError, match="true_mean"):  # a plain callable has no mean()
        generalization_curve(_sine, [1], [100], 1, mean_grid=GRID, **base)
    with pytest.raises(ValueError, match="only used with mean_grid"):
        generalization_curve(_sine, [1], [100], 1, true_mean=_sine_mean, **base)
    with pytest.raises(ValueError, match="finite"):
        generalization_curve(_sine, [1], [100], 1, mean_grid=[0.0, np.nan], true_mean=_sine_mean, **base)
    with pytest.raises(ValueError, match="non-empty"):
        generalization_curve(
            _sine, [1], [100], 1, mean_grid=np.zeros((2, 2, 1)), true_mean=_sine_mean, **base
        )
    with pytest.raises(TypeError, match="callable"):
        generalization_curve(_sine, [1], [100], 1, mean_grid=GRID, true_mean=3.0, **base)
    with pytest.raises(ValueError, match="one value per grid point"):
        generalization_curve(_sine, [1], [100], 1, mean_grid=GRID, true_mean=lambda X: np.zeros(3), **base)
