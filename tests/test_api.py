"""The scikit-learn API of MixtureOfExpertsRegressor and its own parameters."""

import pickle
import re
import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.metrics import r2_score
from sklearn.model_selection import GridSearchCV, KFold, cross_val_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.validation import check_is_fitted

from mixexp import MixtureOfExpertsRegressor
from mixexp.datasets import make_moe_regression

K = 2


@pytest.fixture(scope="module")
def data():
    """200 samples, 3 features, from a mixture of 2 experts."""
    return make_moe_regression(200, n_features=3, n_experts=K, random_state=0)


@pytest.fixture(scope="module")
def fitted(data):
    X, y = data
    return MixtureOfExpertsRegressor(n_experts=K, random_state=0).fit(X, y)


# -- model selection, clone, pickle -----------------------------------------------------------


def test_grid_search_in_pipeline_picks_at_least_two_experts():
    X, y = make_moe_regression(240, n_features=2, n_experts=2, random_state=1)
    pipe = Pipeline([("scale", StandardScaler()), ("moe", MixtureOfExpertsRegressor(random_state=0))])
    search = GridSearchCV(pipe, {"moe__n_experts": [1, 2, 3]}, cv=KFold(3, shuffle=True, random_state=0))
    search.fit(X, y)
    assert np.all(np.isfinite(search.cv_results_["mean_test_score"]))
    assert search.best_params_["moe__n_experts"] >= 2
    scores = search.cv_results_["mean_test_score"]
    # two true experts explain far more than one linear model
    assert scores[1] > scores[0] + 0.1
    assert np.isfinite(search.score(X, y))


def test_cross_val_score_is_finite(data):
    X, y = data
    scores = cross_val_score(MixtureOfExpertsRegressor(n_experts=K, random_state=0), X, y, cv=3)
    assert scores.shape == (3,)
    assert np.all(np.isfinite(scores))


def test_clone_is_unfitted_with_same_params(fitted):
    est = MixtureOfExpertsRegressor(n_experts=3, gate_features=[0], tol=1e-4, random_state=0)
    for source in (est, fitted):
        copy = clone(source)
        assert copy is not source
        assert copy.get_params() == source.get_params()
        with pytest.raises(NotFittedError):
            check_is_fitted(copy)
        with pytest.raises(NotFittedError):
            copy.predict(np.zeros((2, 3)))


def test_clone_with_array_init(data):
    X, y = data
    init = np.random.default_rng(0).uniform(size=(X.shape[0], K))
    copy = clone(MixtureOfExpertsRegressor(n_experts=K, init=init))
    assert np.array_equal(copy.get_params()["init"], init)


def test_pickle_round_trip(fitted, data):
    X, y = data
    restored = pickle.loads(pickle.dumps(fitted))
    assert np.array_equal(restored.predict(X), fitted.predict(X))
    assert np.array_equal(restored.predict_gate(X), fitted.predict_gate(X))
    assert np.array_equal(restored.score_samples(X, y), fitted.score_samples(X, y))
    assert restored.get_params() == fitted.get_params()


# -- gate_features / expert_features ------------------------------------------------------------


def _fit(X, y, **params):
    return MixtureOfExpertsRegressor(n_experts=K, random_state=0, **params).fit(X, y)


def _assert_same_fit(a, b):
    np.testing.assert_allclose(a.gate_coef_, b.gate_coef_, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(a.expert_coef_, b.expert_coef_, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(a.noise_variance_, b.noise_variance_, rtol=1e-10)


@pytest.mark.parametrize(
    ("gate_features", "expert_features", "gate_idx", "expert_idx"),
    [
        (None, None, [0, 1, 2], [0, 1, 2]),
        ([0], [1, 2], [0], [1, 2]),
        (2, [0], [2], [0]),
        ([-1], [-3, -2], [2], [0, 1]),
        ([False, True, True], [True, False, False], [1, 2], [0]),
        (np.array([True, False, True]), None, [0, 2], [0, 1, 2]),
        ([], None, [], [0, 1, 2]),
        (None, [], [0, 1, 2], []),
    ],
)
def test_feature_selection_shapes(data, gate_features, expert_features, gate_idx, expert_idx):
    X, y = data
    est = _fit(X, y, gate_features=gate_features, expert_features=expert_features)
    assert np.array_equal(est.gate_feature_indices_, gate_idx)
    assert np.array_equal(est.expert_feature_indices_, expert_idx)
    assert est.gate_coef_.shape == (K, 1 + len(gate_idx))
    assert est.expert_coef_.shape == (K, 1 + len(expert_idx))
    assert np.all(est.gate_coef_[0] == 0)
    assert est.noise_variance_.shape == (K,)
    assert np.all(np.isfinite(est.predict(X)))


def test_negative_indices_and_mask_equal_positive_indices(data):
    X, y = data
    reference = _fit(X, y, gate_features=[2], expert_features=[0, 1])
    _assert_same_fit(_fit(X, y, gate_features=[-1], expert_features=[-3, -2]), reference)
    _assert_same_fit(
        _fit(X, y, gate_features=[False, False, True], expert_features=[True, True, False]), reference
    )


def test_selection_uses_the_right_columns(data):
    X, y = data
    est = _fit(X, y, gate_features=[2], expert_features=[0, 1])
    X_changed = X.copy()
    X_changed[:, 2] += 1.0
    # column 2 feeds only the gate
    assert np.array_equal(est.predict_experts(X_changed), est.predict_experts(X))
    assert not np.allclose(est.predict_gate(X_changed), est.predict_gate(X))
    X_changed = X.copy()
    X_changed[:, 0] += 1.0
    # column 0 feeds only the experts
    assert np.array_equal(est.predict_gate(X_changed), est.predict_gate(X))
    assert not np.allclose(est.predict_experts(X_changed), est.predict_experts(X))


def test_feature_names_with_dataframe(data):
    X, y = data
    df = pd.DataFrame(X, columns=["a", "b", "c"])
    est = _fit(df, y, gate_features=["c"], expert_features=["a", "b"])
    assert list(est.feature_names_in_) == ["a", "b", "c"]
    assert est.n_features_in_ == 3
    assert np.array_equal(est.gate_feature_indices_, [2])
    assert np.array_equal(est.expert_feature_indices_, [0, 1])
    assert est.gate_coef_.shape == (K, 2)
    assert est.expert_coef_.shape == (K, 3)
    by_index = _fit(X, y, gate_features=[2], expert_features=[0, 1])
    _assert_same_fit(est, by_index)
    np.testing.assert_allclose(est.predict(df), by_index.predict(X), rtol=1e-10)
    # a single name as a string
    single = _fit(df, y, gate_features="c")
    assert np.array_equal(single.gate_feature_indices_, [2])


def test_empty_gate_features_gives_constant_gate(data):
    X, y = data
    est = _fit(X, y, gate_features=[])
    assert est.gate_coef_.shape == (K, 1)
    gate = est.predict_gate(X)
    assert np.allclose(gate, gate[0], rtol=0, atol=1e-15)
    np.testing.assert_allclose(gate.sum(axis=1), 1.0)


def test_fit_intercept_false(data):
    X, y = data
    est = _fit(X, y, fit_intercept=False, expert_features=[0, 2])
    assert est.expert_coef_.shape == (K, 3)
    assert np.all(est.expert_coef_[:, 0] == 0)
    np.testing.assert_allclose(
        est.predict_experts(X), X[:, [0, 2]] @ est.expert_coef_[:, 1:].T, rtol=1e-10, atol=1e-12
    )
    assert est.n_parameters() == (K - 1) * 4 + K * 2 + K


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"gate_features": [3]}, "out of range"),
        ({"gate_features": [-4]}, "out of range"),
        ({"expert_features": [0, 5]}, "out of range"),
        ({"gate_features": ["a"]}, "DataFrame"),
        ({"expert_features": "a"}, "DataFrame"),
        ({"gate_features": [True, False]}, "boolean mask of length 2"),
        ({"expert_features": [True, False, True, False]}, "boolean mask of length 4"),
        ({"gate_features": [0, 0]}, "more than once"),
        ({"expert_features": [1, -2]}, "more than once"),
        ({"gate_features": [[0, 1]]}, "one-dimensional"),
        ({"expert_features": [], "fit_intercept": False}, "no column and fit_intercept=False"),
    ],
)
def test_feature_selection_errors_with_array(data, params, match):
    X, y = data
    with pytest.raises(ValueError, match=match):
        _fit(X, y, **params)


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"gate_features": ["d"]}, "names columns not in X.*d"),
        ({"expert_features": ["a", "zz"]}, "names columns not in X.*zz"),
        ({"gate_features": ["a", "a"]}, "more than once"),
        ({"expert_features": ["a", "b", "a"]}, "more than once"),
    ],
)
def test_feature_selection_errors_with_dataframe(data, params, match):
    X, y = data
    df = pd.DataFrame(X, columns=["a", "b", "c"])
    with pytest.raises(ValueError, match=match):
        _fit(df, y, **params)


def test_unknown_name_message_lists_plain_names(data):
    """BUG (cosmetic): the message shows numpy reprs, "[np.str_('d')]", instead of "['d']"."""
    X, y = data
    df = pd.DataFrame(X, columns=["a", "b", "c"])
    with pytest.raises(ValueError) as excinfo:
        _fit(df, y, gate_features=["a", "d"])
    assert "not in X: ['d']" in str(excinfo.value)
    assert "np.str_" not in str(excinfo.value)


# -- init ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("init", ["kmeans", "random", "array"])
def test_init_methods_fit(data, init):
    X, y = data
    if init == "array":
        init = np.random.default_rng(0).uniform(size=(X.shape[0], K))
    est = _fit(X, y, init=init)
    assert est.converged_
    assert np.isfinite(est.lower_bound_)
    assert np.all(np.diff(est.lower_bounds_) >= -1e-10)


def test_init_array_rows_are_normalised(data):
    X, y = data
    init = np.random.default_rng(0).uniform(size=(X.shape[0], K))
    _assert_same_fit(_fit(X, y, init=init), _fit(X, y, init=5.0 * init))


@pytest.mark.parametrize(
    ("make_init", "match"),
    [
        (lambda n: np.ones((n, K + 1)), r"must have shape \(n_samples, n_experts\)"),
        (lambda n: np.ones((n - 1, K)), r"must have shape \(n_samples, n_experts\)"),
        (lambda n: np.ones(n), "2D array"),
        (lambda n: np.where(np.arange(n)[:, None] == 3, -0.5, 1.0) * np.ones((n, K)), "non-negative"),
        (lambda n: np.where(np.arange(n)[:, None] == 3, 0.0, 1.0) * np.ones((n, K)), "positive sum"),
        (lambda n: np.where(np.arange(n)[:, None] == 3, np.nan, 1.0) * np.ones((n, K)), "NaN"),
    ],
)
def test_init_array_errors(data, make_init, match):
    X, y = data
    with pytest.raises(ValueError, match=match):
        _fit(X, y, init=make_init(X.shape[0]))


# -- warm start ----------------------------------------------------------------------------------


def test_warm_start_continues_from_previous_fit(data):
    X, y = data
    est = MixtureOfExpertsRegressor(n_experts=K, max_iter=1, warm_start=True, random_state=0)
    with pytest.warns(ConvergenceWarning):
        est.fit(X, y)
    first_lower_bound = est.lower_bound_
    with pytest.warns(ConvergenceWarning):
        est.fit(X, y)
    assert abs(est.lower_bounds_[0] - first_lower_bound) < 1e-10
    # two warm-started single iterations are two iterations
    with pytest.warns(ConvergenceWarning):
        two = MixtureOfExpertsRegressor(n_experts=K, max_iter=2, random_state=0).fit(X, y)
    np.testing.assert_allclose(est.gate_coef_, two.gate_coef_, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(est.expert_coef_, two.expert_coef_, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(est.noise_variance_, two.noise_variance_, rtol=1e-9)


def test_warm_start_false_starts_afresh(data):
    X, y = data
    est = MixtureOfExpertsRegressor(n_experts=K, max_iter=1, random_state=0)
    with pytest.warns(ConvergenceWarning):
        est.fit(X, y)
    first = est.lower_bounds_.copy()
    with pytest.warns(ConvergenceWarning):
        est.fit(X, y)
    # exact equality is test_repeated_fits_are_bit_identical's job
    np.testing.assert_allclose(est.lower_bounds_, first, rtol=1e-12)


def test_warm_start_uses_the_new_gate_penalty(data):
    """BUG: a warm start copies the old gate, which keeps the old gate_penalty."""
    X, y = data
    est = MixtureOfExpertsRegressor(n_experts=K, warm_start=True, random_state=0).fit(X, y)
    assert np.abs(est.gate_coef_[:, 1:]).max() > 0.5
    est.set_params(gate_penalty=1e6).fit(X, y)
    # a penalty of 1e6 on the slopes (total, not per sample) leaves them essentially zero,
    # as a cold fit with gate_penalty=1e6 does
    cold = MixtureOfExpertsRegressor(n_experts=K, gate_penalty=1e6, random_state=0).fit(X, y)
    assert np.abs(cold.gate_coef_[:, 1:]).max() < 1e-2
    assert np.abs(est.gate_coef_[:, 1:]).max() < 1e-2


def test_warm_start_uses_the_new_reg_covar(data):
    """BUG: a warm start copies the old experts, which keep the old variance floor."""
    X, y = data
    est = MixtureOfExpertsRegressor(n_experts=K, warm_start=True, random_state=0).fit(X, y)
    est.set_params(reg_covar=10.0).fit(X, y)
    # reg_covar is the floor of each noise variance relative to the variance of y
    assert np.all(est.noise_variance_ >= 10.0 * np.var(y) * (1 - 1e-9))


def test_warm_start_variance_floor_follows_new_y(data):
    """BUG: the variance floor (reg_covar * var(y)) is not recomputed for the new y."""
    X, y = data
    est = MixtureOfExpertsRegressor(n_experts=K, reg_covar=0.1, warm_start=True, random_state=0).fit(X, y)
    y_small = 1e-4 * y
    est.fit(X, y_small)
    cold = MixtureOfExpertsRegressor(n_experts=K, reg_covar=0.1, random_state=0).fit(X, y_small)
    np.testing.assert_allclose(np.sort(est.noise_variance_), np.sort(cold.noise_variance_), rtol=1e-4)
    assert np.all(est.noise_variance_ < np.var(y_small))


# -- reproducibility -----------------------------------------------------------------------------


def test_repeated_fits_are_bit_identical(data):
    """BUG: the same fit twice (same data, same random_state) can differ in the last bits.

    The Numba kernels that reduce over samples (linear_stats, fused_softmax_gaussian)
    are compiled with fastmath "reassoc", and their result depends on where their
    np.empty scratch buffers and inputs land in memory (LLVM picks the vectorised or the
    scalar loop at run time), so identical inputs give sums that differ by an ulp. EM
    then drifts apart at the 1e-15 level. Fits are repeated with the allocator state
    shifted in between, as happens in any real session.
    """
    X, y = data
    results = set()
    shifts = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for i in range(40):
            shifts.append(np.empty(1 + 7 * i))
            est = MixtureOfExpertsRegressor(n_experts=K, max_iter=50, tol=0.0, random_state=0)
            est.fit(X.copy(), y.copy())
            results.add(est.lower_bounds_.tobytes() + est.gate_coef_.tobytes() + est.expert_coef_.tobytes())
    assert len(results) == 1


# -- sample_weight -------------------------------------------------------------------------------


def _weighted_fit(X, y, init, sample_weight=None):
    est = MixtureOfExpertsRegressor(n_experts=K, init=init, tol=1e-10, max_iter=500, random_state=0)
    return est.fit(X, y, sample_weight=sample_weight)


def _assert_close_fit(a, b, tol=1e-6):
    np.testing.assert_allclose(a.gate_coef_, b.gate_coef_, rtol=tol, atol=tol)
    np.testing.assert_allclose(a.expert_coef_, b.expert_coef_, rtol=tol, atol=tol)
    np.testing.assert_allclose(a.noise_variance_, b.noise_variance_, rtol=tol, atol=tol)


def test_integer_weights_equal_repetition(data):
    X, y = data
    rng = np.random.default_rng(1)
    init = rng.uniform(size=(X.shape[0], K))
    sw = rng.integers(1, 4, size=X.shape[0])
    rows = np.repeat(np.arange(X.shape[0]), sw)
    weighted = _weighted_fit(X, y, init, sample_weight=sw)
    repeated = _weighted_fit(X[rows], y[rows], init[rows])
    _assert_close_fit(weighted, repeated)
    assert abs(weighted.lower_bound_ - repeated.lower_bound_) < 1e-8


def test_zero_weights_equal_dropping_rows(data):
    X, y = data
    rng = np.random.default_rng(2)
    init = rng.uniform(size=(X.shape[0], K))
    sw = rng.integers(0, 3, size=X.shape[0]).astype(float)
    keep = sw > 0
    assert not keep.all()
    weighted = _weighted_fit(X, y, init, sample_weight=sw)
    dropped = _weighted_fit(X[keep], y[keep], init[keep], sample_weight=sw[keep])
    _assert_close_fit(weighted, dropped)


def test_unit_weights_equal_no_weights(data):
    X, y = data
    a = MixtureOfExpertsRegressor(n_experts=K, random_state=0).fit(X, y)
    b = MixtureOfExpertsRegressor(n_experts=K, random_state=0).fit(X, y, sample_weight=np.ones(len(y)))
    _assert_same_fit(a, b)


def test_negative_weights_raise(data):
    X, y = data
    sw = np.ones(len(y))
    sw[5] = -1.0
    with pytest.raises(ValueError, match="[Nn]egative"):
        MixtureOfExpertsRegressor(n_experts=K, random_state=0).fit(X, y, sample_weight=sw)


# -- convergence and restarts ------------------------------------------------------------------


def test_convergence_warning_when_max_iter_is_too_small(data):
    X, y = data
    est = MixtureOfExpertsRegressor(n_experts=K, max_iter=2, random_state=0)
    with pytest.warns(ConvergenceWarning, match="did not converge"):
        est.fit(X, y)
    assert not est.converged_
    assert est.n_iter_ == 2
    assert len(est.lower_bounds_) == 3


def test_converged_fit_does_not_warn(data, recwarn):
    X, y = data
    est = MixtureOfExpertsRegressor(n_experts=K, random_state=0).fit(X, y)
    assert est.converged_
    assert not [w for w in recwarn if issubclass(w.category, ConvergenceWarning)]
    assert est.n_iter_ + 1 == len(est.lower_bounds_)
    assert est.lower_bound_ == est.lower_bounds_[-1]
    assert np.all(np.diff(est.lower_bounds_) >= -1e-10)


@pytest.mark.parametrize("init", ["kmeans", "random"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_more_inits_never_lower_the_lower_bound(data, init, seed):
    X, y = data
    one = MixtureOfExpertsRegressor(n_experts=3, init=init, n_init=1, random_state=seed).fit(X, y)
    five = MixtureOfExpertsRegressor(n_experts=3, init=init, n_init=5, random_state=seed).fit(X, y)
    assert five.lower_bound_ >= one.lower_bound_ - 1e-12


# -- predictions and criteria --------------------------------------------------------------------


def test_prediction_identities(fitted, data):
    X, y = data
    gate = fitted.predict_gate(X)
    experts = fitted.predict_experts(X)
    resp = fitted.predict_responsibilities(X, y)
    assert gate.shape == experts.shape == resp.shape == (X.shape[0], K)
    np.testing.assert_allclose(gate.sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(resp.sum(axis=1), 1.0, rtol=1e-12)
    assert np.all(gate >= 0) and np.all(resp >= 0)
    np.testing.assert_allclose(fitted.predict(X), (gate * experts).sum(axis=1), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(experts, X @ fitted.expert_coef_[:, 1:].T + fitted.expert_coef_[:, 0])
    assert fitted.score(X, y) == pytest.approx(r2_score(y, fitted.predict(X)), rel=1e-12)


def test_score_samples_is_the_conditional_log_density(fitted, data):
    X, y = data
    gate = fitted.predict_gate(X)
    mean = fitted.predict_experts(X)
    var = fitted.noise_variance_
    dens = gate * np.exp(-0.5 * (y[:, None] - mean) ** 2 / var) / np.sqrt(2 * np.pi * var)
    np.testing.assert_allclose(fitted.score_samples(X, y), np.log(dens.sum(axis=1)), rtol=1e-10)
    np.testing.assert_allclose(fitted.predict_responsibilities(X, y), dens / dens.sum(axis=1, keepdims=True))
    # with gate_penalty the lower bound is the penalised mean log-likelihood;
    # the penalty is on the slopes of the standardised covariates
    penalty = 0.5 * fitted.gate_penalty * np.sum((fitted.gate_coef_[:, 1:] * X.std(axis=0)) ** 2)
    mean_ll = fitted.score_samples(X, y).mean()
    assert fitted.lower_bound_ == pytest.approx(mean_ll - penalty / len(y), abs=1e-10)


@pytest.mark.parametrize(
    ("gate_features", "expert_features", "fit_intercept"),
    [(None, None, True), ([0], [1, 2], True), ([], [0], True), ([1, 2], [0], False)],
)
def test_bic_aic(data, gate_features, expert_features, fit_intercept):
    X, y = data
    n_experts = 3
    est = MixtureOfExpertsRegressor(
        n_experts=n_experts,
        gate_features=gate_features,
        expert_features=expert_features,
        fit_intercept=fit_intercept,
        random_state=0,
    ).fit(X, y)
    d_g = X.shape[1] if gate_features is None else len(gate_features)
    d_e = X.shape[1] if expert_features is None else len(expert_features)
    p = (n_experts - 1) * (1 + d_g) + n_experts * (int(fit_intercept) + d_e) + n_experts
    assert est.n_parameters() == p
    ll = est.score_samples(X, y).sum()
    assert est.bic(X, y) == pytest.approx(-2 * ll + p * np.log(X.shape[0]), rel=1e-12)
    assert est.aic(X, y) == pytest.approx(-2 * ll + 2 * p, rel=1e-12)


def test_bic_prefers_the_true_number_of_experts():
    X, y = make_moe_regression(400, n_features=1, n_experts=2, random_state=3)
    bic = [MixtureOfExpertsRegressor(n_experts=k, random_state=0).fit(X, y).bic(X, y) for k in (1, 2)]
    assert bic[1] < bic[0]


def test_single_expert_is_linear_regression(data):
    from sklearn.linear_model import LinearRegression

    X, y = data
    sw = np.random.default_rng(0).uniform(0.5, 2.0, size=len(y))
    est = MixtureOfExpertsRegressor(n_experts=1).fit(X, y, sample_weight=sw)
    lr = LinearRegression().fit(X, y, sample_weight=sw)
    np.testing.assert_allclose(est.expert_coef_[0, 1:], lr.coef_, rtol=1e-8)
    assert est.expert_coef_[0, 0] == pytest.approx(lr.intercept_, rel=1e-8)
    rss = np.average((y - lr.predict(X)) ** 2, weights=sw)
    assert est.noise_variance_[0] == pytest.approx(rss, rel=1e-8)
    np.testing.assert_allclose(est.predict_gate(X), 1.0)


# -- verbose -------------------------------------------------------------------------------------


def test_verbose_prints_iterations(data, capsys):
    X, y = data
    est = MixtureOfExpertsRegressor(n_experts=K, init="kmeans", verbose=2, random_state=0).fit(X, y)
    out = capsys.readouterr().out
    iteration_lines = re.findall(r"^iter\s+\d+\s+mean log-lik", out, flags=re.MULTILINE)
    assert len(iteration_lines) == len(est.lower_bounds_)
    assert "converged after" in out


def test_verbose_one_prints_a_summary_and_zero_nothing(data, capsys):
    X, y = data
    MixtureOfExpertsRegressor(n_experts=K, verbose=1, random_state=0).fit(X, y)
    out = capsys.readouterr().out
    assert "converged after" in out
    assert "iter " not in out
    MixtureOfExpertsRegressor(n_experts=K, verbose=0, random_state=0).fit(X, y)
    assert capsys.readouterr().out == ""
