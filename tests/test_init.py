"""Start strategies (init=): every strategy with every family and gate, and what random subsets buy."""

import warnings

import numpy as np
import pytest
from scipy import stats
from scipy.special import log_softmax, logsumexp
from sklearn.exceptions import ConvergenceWarning

from mixexp import MixtureOfExpertsClassifier, MixtureOfExpertsRegressor
from mixexp._base import SCREEN_MAX_ROWS
from mixexp.exceptions import VanishingExpertWarning


def _small_expert_problem(seed, n, K=3, d=2, small=0.04):
    """A softmax-gated 3-expert problem whose last expert carries ~4% of the rows."""
    rng = np.random.default_rng(seed)
    W = rng.normal(0, 1.5, (K, d + 1))
    W[0] = 0
    B = rng.normal(0, 3, (K, d + 1))
    var = rng.uniform(0.1, 0.5, K)
    X = rng.standard_normal((n, d))
    X1 = np.column_stack([np.ones(n), X])
    lo, hi = -30.0, 30.0
    for _ in range(60):  # the last expert's intercept that gives it the `small` share
        W[-1, 0] = (lo + hi) / 2
        share = np.exp(log_softmax(X1 @ W.T, axis=1))[:, -1].mean()
        lo, hi = (W[-1, 0], hi) if share < small else (lo, W[-1, 0])
    G = np.exp(log_softmax(X1 @ W.T, axis=1))
    z = (rng.uniform(size=(n, 1)) > np.cumsum(G, 1)).sum(1).clip(max=K - 1)
    y = (X1 * B[z]).sum(1) + np.sqrt(var[z]) * rng.standard_normal(n)
    dens = stats.norm.logpdf(y[:, None], X1 @ B.T, np.sqrt(var))
    ll_true = logsumexp(np.log(G) + dens, axis=1).sum()
    return X, y, ll_true


def _fit_ll(X, y, **params):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        moe = MixtureOfExpertsRegressor(3, gate_penalty=0.0, max_iter=1000, **params).fit(X, y)
    return moe.score_samples(X, y).sum()


def test_random_subsets_find_the_small_expert_kmeans_misses():
    """Of 40 such problems (seeds 0-39, n = 2000), this is the one where five
    k-means starts all stop far below the true parameters' log-likelihood (a
    local optimum without the 4% expert); random subsets, which look at the
    regression structure, reach above it (the MLE)."""
    X, y, ll_true = _small_expert_problem(21, 2000)
    kmeans = _fit_ll(X, y, init="kmeans", n_init=5, random_state=0)
    subsets = _fit_ll(X, y, init="random_subsets", n_init=20, random_state=0)
    assert kmeans < ll_true - 1.0
    assert subsets >= ll_true


def _count_data(n, rng):
    X = rng.uniform(-2, 2, size=(n, 2))
    rate = np.where(X[:, 0] > 0, np.exp(1 + 0.5 * X[:, 1]), np.exp(-0.5 * X[:, 1]))
    return X, rng.poisson(rate).astype(float)


_GATES = {
    "softmax": {"gate": "softmax"},
    "constant": {"gate": "constant"},
    "gaussian": {"gate": "gaussian"},
    "hierarchical": {"gate": "hierarchical"},
    "top_k": {"gate": "softmax", "top_k": 1},
}
_INITS = ["auto", "kmeans", "random", "random_subsets"]


@pytest.mark.parametrize("init", _INITS)
@pytest.mark.parametrize("expert", ["gaussian", "student_t", "poisson", "gamma"])
@pytest.mark.parametrize("gate", list(_GATES))
def test_every_start_with_every_family_and_gate(init, expert, gate):
    rng = np.random.default_rng(0)
    X, y = _count_data(400, rng)
    if expert == "gamma":
        y = y + 0.5
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        moe = MixtureOfExpertsRegressor(
            2, expert=expert, init=init, n_init=3, max_iter=100, random_state=0, **_GATES[gate]
        ).fit(X, y)
    assert np.isfinite(moe.lower_bound_)
    assert np.all(np.isfinite(moe.expert_coef_))
    assert np.all(np.diff(moe.lower_bounds_) >= -1e-12 * np.abs(moe.lower_bounds_[:-1]))
    assert np.all(np.isfinite(moe.predict(X)))


@pytest.mark.parametrize("init", _INITS)
@pytest.mark.parametrize("gate", list(_GATES))
def test_every_start_with_the_classifier(init, gate):
    rng = np.random.default_rng(1)
    X = rng.standard_normal((400, 2))
    y = np.where(X[:, 0] > 0, X[:, 1] > 0.5, X[:, 1] < -0.5).astype(int)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = MixtureOfExpertsClassifier(
            2, init=init, n_init=3, max_iter=100, random_state=0, **_GATES[gate]
        ).fit(X, y)
    assert np.isfinite(clf.lower_bound_)
    assert np.all(np.diff(clf.lower_bounds_) >= -1e-12 * np.abs(clf.lower_bounds_[:-1]))
    proba = clf.predict_proba(X)
    assert np.all(np.isfinite(proba)) and np.allclose(proba.sum(axis=1), 1.0)


def test_random_subsets_deterministic():
    X, y, _ = _small_expert_problem(3, 500)
    a = MixtureOfExpertsRegressor(3, init="random_subsets", n_init=3, random_state=5).fit(X, y)
    b = MixtureOfExpertsRegressor(3, init="random_subsets", n_init=3, random_state=5).fit(X, y)
    assert np.array_equal(a.expert_coef_, b.expert_coef_)
    assert np.array_equal(a.lower_bounds_, b.lower_bounds_)


def test_screening_keeps_the_best_start_and_a_monotone_path():
    """init_max_iter: every start runs a few iterations, only the best is continued."""
    X, y, _ = _small_expert_problem(21, 2000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        screened = MixtureOfExpertsRegressor(
            3, init="random_subsets", n_init=20, init_max_iter=5, gate_penalty=0.0, random_state=0
        ).fit(X, y)
        # the first of the same starts (same random_state), stopped after 5 iterations
        first = MixtureOfExpertsRegressor(
            3, init="random_subsets", n_init=1, max_iter=5, gate_penalty=0.0, random_state=0
        ).fit(X, y)
    assert screened.converged_
    lb = screened.lower_bounds_
    assert lb.size == screened.n_iter_ + 1
    assert np.all(np.diff(lb) >= -1e-12 * np.abs(lb[:-1]))
    # the screened path is the best start's: after 5 iterations it is at least the first start's
    assert lb[5] >= first.lower_bound_ - 1e-12
    full = MixtureOfExpertsRegressor(
        3, init="random_subsets", n_init=20, gate_penalty=0.0, random_state=0
    ).fit(X, y)
    # screening at 5 iterations finds the same optimum here, far cheaper
    assert abs(screened.lower_bound_ - full.lower_bound_) < 1e-6


# -- the default start (init="auto") ---------------------------------------------------------------


def test_defaults_reach_the_truth_on_30_problems_with_a_small_expert():
    """Issue 8's target: on 30 random softmax-gated 3-expert problems (n = 2000,
    two covariates) whose smallest expert carries 3-5% of the rows, the default
    settings reach at least the true parameters' log-likelihood (the MLE lies
    above it) on at least 29. (k-means alone does so on 28 of these 30,
    benchmarks/bench_init.py has the full table.)"""
    reached = []
    for seed in range(30):
        X, y, ll_true = _small_expert_problem(seed, 2000, small=0.03 + 0.01 * (seed % 3))
        reached.append(_fit_ll(X, y, random_state=0) >= ll_true)
    assert sum(reached) >= 29, np.flatnonzero(~np.array(reached))


def test_auto_resolves_n_init_and_screening():
    X, y, _ = _small_expert_problem(21, 2000)
    moe = MixtureOfExpertsRegressor(3, gate_penalty=0.0, random_state=0, verbose=1)
    assert moe._resolved_n_init() == 12 and moe._resolved_init_max_iter(12) == 8
    assert moe._start_strategies(12, None) == ["kmeans"] + ["random_subsets"] * 11
    # explicit strategies keep one start (k-means) or ten (random ones), run to convergence
    assert moe.set_params(init="kmeans")._resolved_n_init() == 1
    assert moe.set_params(init="random_subsets")._resolved_n_init() == 10
    assert moe._resolved_init_max_iter(10) is None
    # the start k-means misses (test above) is found by the default
    moe.set_params(init="auto", verbose=0).fit(X, y)
    kmeans = _fit_ll(X, y, init="kmeans", random_state=0)
    assert moe.score_samples(X, y).sum() > kmeans + 100


def test_large_data_is_screened_on_a_subsample():
    """Above SCREEN_MAX_ROWS rows the starts are screened on a subsample and the
    best one is run on every row: the reported path is the run on all rows."""
    n = 3 * SCREEN_MAX_ROWS
    X, y, ll_true = _small_expert_problem(21, n)
    moe = MixtureOfExpertsRegressor(3, gate_penalty=0.0, random_state=0).fit(X, y)
    lb = moe.lower_bounds_
    assert moe.converged_ and lb.size == moe.n_iter_ + 1
    assert np.all(np.diff(lb) >= -1e-12 * np.abs(lb[:-1]))
    assert moe.score_samples(X, y).sum() >= ll_true


@pytest.mark.parametrize("make", [
    lambda: MixtureOfExpertsRegressor(3, gate_penalty=0.0, random_state=3),
    lambda: MixtureOfExpertsRegressor(3, init="random_subsets", n_init=4, random_state=3),
    lambda: MixtureOfExpertsClassifier(2, n_init=4, init="random", random_state=3),
])
def test_the_fit_does_not_depend_on_n_jobs(make):
    X, y, _ = _small_expert_problem(4, 600)
    if isinstance(make(), MixtureOfExpertsClassifier):
        y = (y > np.median(y)).astype(int)
    one = make().fit(X, y)
    two = make().set_params(n_jobs=2).fit(X, y)
    assert np.array_equal(one.expert_coef_, two.expert_coef_)
    assert np.array_equal(one.gate_coef_, two.gate_coef_)
    assert np.array_equal(one.lower_bounds_, two.lower_bounds_)


# -- vanishing experts ----------------------------------------------------------------------------


def test_an_expert_started_empty_is_reseeded():
    """An expert given no responsibility at the start vanishes under EM; it is
    re-seeded from the worst-explained rows and the fit reaches the truth."""
    X, y, ll_true = _small_expert_problem(5, 2000, small=0.2)
    resp = np.zeros((2000, 3))
    resp[:, 0] = X[:, 0] > 0
    resp[:, 1] = X[:, 0] <= 0
    with warnings.catch_warnings():
        warnings.simplefilter("error", VanishingExpertWarning)
        moe = MixtureOfExpertsRegressor(3, init=resp, gate_penalty=0.0).fit(X, y)
    shares = moe.predict_responsibilities(X, y).mean(axis=0)
    assert shares.min() > 0.1  # the truth's smallest share is 0.2
    assert moe.score_samples(X, y).sum() >= ll_true
    # without re-seeding the same start stops with the third expert empty
    stuck = MixtureOfExpertsRegressor(3, init=resp, gate_penalty=0.0, max_iter=1000)
    stuck._reseed_vanished = lambda result, gate, experts, data: (result, gate, experts)
    stuck.fit(X, y)
    # (less weight than its 4 parameters + 1 rows: vanished)
    assert stuck.predict_responsibilities(X, y).sum(axis=0).min() < 5


def test_experts_the_data_cannot_support_warn():
    X, y, _ = _small_expert_problem(5, 40)
    with pytest.warns(VanishingExpertWarning, match="consider a smaller n_experts"):
        moe = MixtureOfExpertsRegressor(
            4, init="random", n_init=1, gate_penalty=0.0, random_state=1
        ).fit(X, y)
    assert moe.n_parameters() == 3 * 3 + 4 * 4  # still four experts, none dropped
    assert np.all(np.isfinite(moe.expert_coef_)) and np.all(np.isfinite(moe.predict(X)))
