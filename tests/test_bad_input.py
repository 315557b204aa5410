"""Bad or degenerate input: a clear error, or a finite fit (with a warning where due).

Never NaN parameters, never a crash deep inside numpy.
"""

import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.linear_model import LinearRegression

from mixexp import MixtureOfExpertsRegressor
from mixexp.datasets import make_moe_regression


@pytest.fixture(scope="module")
def data():
    return make_moe_regression(60, n_features=2, n_experts=2, random_state=0)


@pytest.fixture(scope="module")
def fitted(data):
    X, y = data
    return MixtureOfExpertsRegressor(n_experts=2, random_state=0).fit(X, y)


def _moe(**params):
    params.setdefault("random_state", 0)
    return MixtureOfExpertsRegressor(**params)


def _assert_finite_fit(est, X):
    assert np.all(np.isfinite(est.gate_coef_))
    assert np.all(np.isfinite(est.expert_coef_))
    assert np.all(np.isfinite(est.noise_variance_))
    assert np.all(est.noise_variance_ > 0)
    assert np.isfinite(est.lower_bound_)
    assert np.all(np.isfinite(est.predict(X)))
    gate = est.predict_gate(X)
    assert np.all(np.isfinite(gate))
    np.testing.assert_allclose(gate.sum(axis=1), 1.0, rtol=1e-12)


# -- X and y contents ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "match"), [(np.nan, "Input X contains NaN"), (np.inf, "Input X contains inf")]
)
def test_non_finite_X(data, value, match):
    X, y = data
    X = X.copy()
    X[3, 1] = value
    with pytest.raises(ValueError, match=match):
        _moe().fit(X, y)


@pytest.mark.parametrize(
    ("value", "match"), [(np.nan, "Input y contains NaN"), (-np.inf, "Input y contains inf")]
)
def test_non_finite_y(data, value, match):
    X, y = data
    y = y.copy()
    y[3] = value
    with pytest.raises(ValueError, match=match):
        _moe().fit(X, y)


def test_non_finite_X_at_predict(fitted, data):
    X, y = data
    X = X.copy()
    X[0, 0] = np.nan
    for method in (fitted.predict, fitted.predict_gate, fitted.predict_experts):
        with pytest.raises(ValueError, match="Input X contains NaN"):
            method(X)
    with pytest.raises(ValueError, match="Input X contains NaN"):
        fitted.score_samples(X, y)


def test_non_finite_y_at_score_samples(fitted, data):
    X, y = data
    y = y.copy()
    y[0] = np.nan
    with pytest.raises(ValueError, match="y contains NaN"):
        fitted.score_samples(X, y)
    with pytest.raises(ValueError, match="y contains NaN"):
        fitted.predict_responsibilities(X, y)


def test_non_numeric_y(data):
    X, _ = data
    y = np.array(["low", "high"] * (X.shape[0] // 2))
    with pytest.raises(ValueError, match="numeric target"):
        _moe().fit(X, y)


def test_non_numeric_X(data):
    X, y = data
    X = np.array([["a", "b"]] * len(y))
    with pytest.raises(ValueError, match="convert"):
        _moe().fit(X, y)


# -- shapes --------------------------------------------------------------------------------------------


def test_1d_X(data):
    X, y = data
    with pytest.raises(ValueError, match="Expected 2D array, got 1D array"):
        _moe().fit(X[:, 0], y)


def test_3d_X(data):
    X, y = data
    with pytest.raises(ValueError, match="dim 3"):
        _moe().fit(X[:, :, None], y)


def test_2d_y_with_several_columns(data, fitted):
    X, y = data
    Y = np.column_stack([y, y])
    with pytest.raises(ValueError, match="1d array"):
        _moe().fit(X, Y)
    with pytest.raises(ValueError, match="one-dimensional"):
        fitted.score_samples(X, Y)


def test_column_vector_y_is_accepted_with_warning(data):
    X, y = data
    from sklearn.exceptions import DataConversionWarning

    with pytest.warns(DataConversionWarning):
        est = _moe().fit(X, y[:, None])
    _assert_finite_fit(est, X)


def test_length_mismatch(data):
    X, y = data
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        _moe().fit(X, y[:-1])


def test_empty_rows(data):
    with pytest.raises(ValueError, match="0 sample"):
        _moe().fit(np.zeros((0, 2)), np.zeros(0))


@pytest.mark.parametrize("selection", [{}, {"gate_features": [], "expert_features": []}])
def test_zero_columns(selection):
    # sklearn's validate_data requires at least one feature, even when the parts
    # would use only intercepts.
    with pytest.raises(ValueError, match="0 feature"):
        _moe(**selection).fit(np.zeros((10, 0)), np.arange(10.0))


def test_predict_with_wrong_number_of_features(fitted, data):
    X, y = data
    wrong = np.column_stack([X, X[:, :1]])
    for method in (fitted.predict, fitted.predict_gate, fitted.predict_experts):
        with pytest.raises(ValueError, match="X has 3 features, but .* is expecting 2 features"):
            method(wrong)
    for method in (fitted.score_samples, fitted.predict_responsibilities, fitted.bic, fitted.aic):
        with pytest.raises(ValueError, match="X has 1 features, but .* is expecting 2 features"):
            method(X[:, :1], y)


def test_score_samples_with_y_of_wrong_length(fitted, data):
    X, y = data
    for method in (fitted.score_samples, fitted.predict_responsibilities, fitted.bic, fitted.aic):
        with pytest.raises(ValueError, match="X has 60 samples but y has 59"):
            method(X, y[:-1])


def test_predict_before_fit(data):
    X, y = data
    est = _moe()
    for method in (est.predict, est.predict_gate, est.predict_experts):
        with pytest.raises(NotFittedError):
            method(X)
    for method in (est.score_samples, est.predict_responsibilities, est.bic, est.aic):
        with pytest.raises(NotFittedError):
            method(X, y)
    with pytest.raises(NotFittedError):
        est.n_parameters()


# -- n_experts --------------------------------------------------------------------------------------


def test_fewer_samples_than_experts(data):
    X, y = data
    with pytest.raises(ValueError, match="n_samples=2 should be >= n_experts=3"):
        _moe(n_experts=3).fit(X[:2], y[:2])


@pytest.mark.parametrize("n_experts", [0, -1])
def test_n_experts_below_one(data, n_experts):
    X, y = data
    with pytest.raises(ValueError, match="'n_experts' parameter"):
        _moe(n_experts=n_experts).fit(X, y)


@pytest.mark.parametrize("n_experts", [1.5, "2"])
def test_n_experts_wrong_type(data, n_experts):
    X, y = data
    with pytest.raises(TypeError, match="'n_experts' parameter"):
        _moe(n_experts=n_experts).fit(X, y)


@pytest.mark.parametrize("n_features", [1, 2])
def test_as_many_experts_as_samples(data, n_features):
    X, y = data
    X, y = X[:3, :n_features], y[:3]
    est = _moe(n_experts=3).fit(X, y)
    _assert_finite_fit(est, X)


# -- degenerate data ------------------------------------------------------------------------------


def test_identical_rows_of_X(data):
    _, y = data
    X = np.ones((len(y), 2))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est = _moe().fit(X, y)
    _assert_finite_fit(est, X)
    # the experts cannot use X: the fit is a two-component mixture in y
    assert np.isfinite(est.score_samples(X, y)).all()


def test_constant_y_fits_finitely_with_warning(data):
    X, _ = data
    y = np.ones(X.shape[0])
    with pytest.warns(UserWarning, match="constant"):
        est = _moe().fit(X, y)
    _assert_finite_fit(est, X)


@pytest.mark.parametrize("value", [1.0, 0.1, -3.7, 1e8])
@pytest.mark.parametrize("n_samples", [60, 49])
def test_constant_y_is_fitted_exactly(data, value, n_samples):
    """BUG: for a constant y the variance floor should be the absolute reg_covar.

    GaussianExperts.initialize computes var(y) as w @ (y - w @ y) ** 2; for a constant y
    w @ y is off by rounding, var(y) is ~1e-32 instead of 0, and the floor becomes
    reg_covar * 1e-32. The noise variances then collapse to ~1e-38, the lower bound is
    ~-1e12 and predictions are off (0.99997 instead of 1). The 1e8 cases also hit the
    cancellation in the residual variance (test_single_expert_noise_variance_with_offset_y):
    a nearly empty expert then gets a noise variance of 3.6.
    """
    X, _ = data
    X = X[:n_samples]
    y = np.full(n_samples, value)
    with pytest.warns(UserWarning, match="constant"):
        est = _moe().fit(X, y)
    # documented: the floor is reg_covar, absolute, when y is constant
    np.testing.assert_allclose(est.noise_variance_, est.reg_covar, rtol=1e-6)
    # (not tighter: an expert left with ~no responsibility keeps arbitrary coefficients
    # and a gate weight ~1e-7)
    np.testing.assert_allclose(est.predict(X), value, rtol=1e-6, atol=1e-8)
    # each point has density N(0; 0, reg_covar)
    assert est.lower_bound_ == pytest.approx(-0.5 * np.log(2 * np.pi * est.reg_covar), abs=1e-3)


def test_constant_X_and_y(data):
    X = np.ones((40, 2))
    y = np.full(40, 2.5)
    with pytest.warns(UserWarning, match="constant"):
        est = _moe().fit(X, y)
    _assert_finite_fit(est, X)


# -- sample_weight ---------------------------------------------------------------------------------


def test_nan_sample_weight(data):
    X, y = data
    sw = np.ones(len(y))
    sw[2] = np.nan
    with pytest.raises(ValueError, match="sample_weight contains NaN"):
        _moe().fit(X, y, sample_weight=sw)


def test_negative_sample_weight(data):
    X, y = data
    sw = np.ones(len(y))
    sw[2] = -1.0
    with pytest.raises(ValueError, match="Negative values in data passed to `sample_weight`"):
        _moe().fit(X, y, sample_weight=sw)


def test_all_zero_sample_weight(data):
    X, y = data
    with pytest.raises(ValueError, match="at least one non-zero"):
        _moe().fit(X, y, sample_weight=np.zeros(len(y)))


def test_sample_weight_of_wrong_length(data):
    X, y = data
    with pytest.raises(ValueError, match=r"sample_weight.shape == \(59,\), expected \(60,\)"):
        _moe().fit(X, y, sample_weight=np.ones(59))


# -- parameters -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"tol": -1e-3}, "'tol' parameter"),
        ({"max_iter": 0}, "'max_iter' parameter"),
        ({"n_init": 0}, "'n_init' parameter"),
        ({"reg_covar": -1.0}, "'reg_covar' parameter"),
        ({"gate_penalty": -1.0}, "'gate_penalty' parameter"),
        ({"init": "kmeans++"}, "'init' parameter"),
    ],
)
def test_invalid_parameter_values(data, params, match):
    X, y = data
    with pytest.raises(ValueError, match=match):
        _moe(**params).fit(X, y)


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"gate_features": 1.5}, "'gate_features' parameter"),
        ({"expert_features": 0.5}, "'expert_features' parameter"),
        ({"gate_features": [0.0, 1.0]}, "gate_features must be None, or integer indices"),
        ({"fit_intercept": "yes"}, "'fit_intercept' parameter"),
        ({"max_iter": 10.0}, "'max_iter' parameter"),
    ],
)
def test_invalid_parameter_types(data, params, match):
    X, y = data
    with pytest.raises(TypeError, match=match):
        _moe(**params).fit(X, y)


# -- badly scaled but valid X ---------------------------------------------------------------------


@pytest.mark.parametrize(("scale", "offset"), [(1.0, 0.0), (1e6, 0.0), (1.0, 1e4), (1e-3, 0.0)])
def test_single_expert_matches_least_squares_on_badly_scaled_X(data, scale, offset):
    """BUG: the expert M-step is inaccurate for badly scaled or offset columns.

    _solve_weighted_least_squares adds a ridge of 1e-12 * trace(gram) / p to the normal
    equations, which are formed in raw coordinates. With X in units of 1e6, or X around
    1e4 (e.g. calendar years), that ridge swamps the intercept's (or the centred slope's)
    curvature. A single expert is ordinary least squares, yet on these 60 samples it gets
    an intercept of 0.585 instead of 1.006 (X * 1e6), or a noise variance of 11.2 instead
    of 2.30 (X + 1e4).
    """
    X, y = data
    Xs = scale * X + offset
    est = _moe(n_experts=1).fit(Xs, y)
    lr = LinearRegression().fit(Xs, y)
    rss = np.mean((y - lr.predict(Xs)) ** 2)
    assert est.noise_variance_[0] == pytest.approx(rss, rel=1e-6)
    np.testing.assert_allclose(est.predict(Xs), lr.predict(Xs), rtol=1e-6, atol=1e-6 * np.std(y))


@pytest.mark.parametrize("y_offset", [0.0, 1e4, 1e6, 1e8])
def test_single_expert_noise_variance_with_offset_y(data, y_offset):
    """BUG: the residual variance is computed as yy - 2 b.xy + b'Gb from raw moments.

    For y far from 0 (y ~ 1e8 + noise of variance 2.3, e.g. counts or prices in cents)
    the three terms are ~1e16 * n and cancel catastrophically: with y + 1e6 the noise
    variance is 2.29818 instead of 2.29805, with y + 1e8 it is 1.7e-5 instead of 2.30 and
    lower_bound_ is -68734 instead of -1.83.
    """
    X, y = data
    yo = y + y_offset
    est = _moe(n_experts=1).fit(X, yo)
    lr = LinearRegression().fit(X, yo)
    rss = np.mean((yo - lr.predict(X)) ** 2)
    assert est.noise_variance_[0] == pytest.approx(rss, rel=1e-6)
    reference = _moe(n_experts=1).fit(X, y)
    assert est.lower_bound_ == pytest.approx(reference.lower_bound_, abs=1e-6)


@pytest.mark.parametrize(("scale", "offset"), [(1e3, 0.0), (1.0, 1e3)])
def test_fit_is_affine_invariant_in_X(scale, offset):
    """BUG (same cause, plus the gate's trace-relative Levenberg damping).

    With gate_penalty=0 the likelihood is invariant under X -> a X + b (the coefficients
    transform accordingly), so the fitted lower bound should not change. With X + 1e3
    the fit stops at a far worse lower bound (-2.02 against -1.10 on 200 samples).
    """
    X, y = make_moe_regression(200, n_features=2, n_experts=2, random_state=0)
    params = {"n_experts": 2, "gate_penalty": 0.0, "tol": 1e-8, "random_state": 0}
    reference = _moe(**params).fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        moved = _moe(**params).fit(scale * X + offset, y)
    assert moved.lower_bound_ == pytest.approx(reference.lower_bound_, abs=1e-5)
    np.testing.assert_allclose(moved.predict(scale * X + offset), reference.predict(X), rtol=1e-3, atol=1e-3)
