"""Poisson and Gamma (log-link) experts: densities, M-steps, recovery, monotone EM, bad input."""

import warnings

import numba
import numpy as np
import pytest
from numpy.testing import assert_allclose
from scipy import optimize, special, stats
from scipy.optimize import linear_sum_assignment
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import estimator_checks
from sklearn.utils.estimator_checks import parametrize_with_checks

from mixexp import MixtureOfExpertsRegressor
from mixexp._kernels import glm_stats
from mixexp.experts import EXPERT_FAMILIES, GammaExperts, PoissonExperts
from mixexp.experts._glm import SHAPE_MIN, _log_minus_digamma, gamma_shape_step

from . import _naive as naive
from ._peers import flexmix_available, flexmix_glm_moe

FAMILIES = ["poisson", "gamma"]

TRUE_GATE = np.array([[0.0, 0.0, 0.0], [0.5, 2.0, -1.0], [-0.3, -1.5, -2.0]])
TRUE_EXPERTS = np.array([[1.0, 0.5, -0.3], [2.0, -0.4, 0.6], [0.2, 0.8, 0.5]])
TRUE_SHAPE = np.array([2.0, 8.0, 25.0])


def _simulate(n, family, gate_coef, expert_coef, shape=None, n_features=2, gate_cols=None,
              expert_cols=None, seed=0):
    """Draw (X, y, labels) from a softmax-gated log-link Poisson or Gamma MoE.

    The gate uses columns ``gate_cols`` of X (default all) and the experts
    ``expert_cols`` (default all), each after an intercept.
    """
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, n_features))
    gate_cols = list(range(n_features)) if gate_cols is None else gate_cols
    expert_cols = list(range(n_features)) if expert_cols is None else expert_cols
    G1 = np.column_stack([np.ones(n), X[:, gate_cols]])
    E1 = np.column_stack([np.ones(n), X[:, expert_cols]])
    prob = special.softmax(G1 @ gate_coef.T, axis=1)
    K = prob.shape[1]
    labels = np.minimum((rng.uniform(size=n)[:, None] > np.cumsum(prob, axis=1)).sum(axis=1), K - 1)
    mu = np.exp(np.einsum("np,np->n", E1, expert_coef[labels]))
    if family == "poisson":
        y = rng.poisson(mu).astype(float)
    else:
        y = rng.gamma(shape[labels], mu / shape[labels])
    return X, y, labels


def _random_problem(seed, family):
    """A small random GLM MoE problem: (X, y, K)."""
    rng = np.random.default_rng(seed)
    K_true = int(rng.integers(1, 4))
    d = int(rng.integers(1, 4))
    n = int(rng.integers(50, 600))
    gate = rng.normal(scale=1.5, size=(K_true, d + 1))
    gate[0] = 0.0
    coef = rng.normal(scale=0.6, size=(K_true, d + 1))
    shape = rng.uniform(0.5, 20.0, size=K_true)
    X, y, _ = _simulate(n, family, gate, coef, shape, n_features=d, seed=seed)
    return X, y, int(rng.integers(1, 5))


# -- densities -------------------------------------------------------------------------------------
@pytest.mark.parametrize("family", FAMILIES)
def test_log_prob_matches_scipy(family):
    rng = np.random.default_rng(0)
    n, K, p = 500, 3, 3
    XT = np.vstack([np.ones(n), rng.standard_normal((p - 1, n))])
    experts = EXPERT_FAMILIES[family](K)
    experts.coef = 0.5 * rng.standard_normal((K, p))
    mu = np.exp(experts.coef @ XT)
    if family == "poisson":
        y = rng.poisson(3.0, size=n).astype(float)
        y[:3] = [0.0, 2000.0, 1023.0]
        ref = stats.poisson.logpmf(y, mu)
    else:
        experts.shape = np.array([0.5, 3.0, 40.0])
        y = rng.gamma(2.0, 1.5, size=n)
        ref = stats.gamma.logpdf(y, a=experts.shape[:, None], scale=mu / experts.shape[:, None])
    assert_allclose(experts.log_prob(XT, y), ref, rtol=1e-12, atol=1e-12)
    assert_allclose(experts.mean(XT), mu, rtol=1e-15)


@pytest.mark.parametrize("family", FAMILIES)
def test_score_samples_and_predictions_from_attributes(family):
    X, y, _ = _simulate(800, family, TRUE_GATE, TRUE_EXPERTS, TRUE_SHAPE, seed=1)
    moe = MixtureOfExpertsRegressor(3, expert=family, random_state=0).fit(X, y)
    dispersion = moe.dispersion_ if family == "gamma" else None
    ref = naive.conditional_log_density_glm(X, X, y, moe.gate_coef_, moe.expert_coef_, family, dispersion)
    assert_allclose(moe.score_samples(X, y), ref, rtol=1e-11)
    X1 = np.column_stack([np.ones(len(X)), X])
    means = np.exp(X1 @ moe.expert_coef_.T)
    assert_allclose(moe.predict_experts(X), means, rtol=1e-12)
    gate = special.softmax(X1 @ moe.gate_coef_.T, axis=1)
    assert_allclose(moe.predict(X), (gate * means).sum(axis=1), rtol=1e-12)
    assert moe.n_parameters() == 2 * 3 + 3 * 3 + (3 if family == "gamma" else 0)
    assert_allclose(moe.bic(X, y), -2 * ref.sum() + moe.n_parameters() * np.log(len(y)), rtol=1e-11)
    XeT = moe._design(X)[1]  # the experts work on the standardised design
    if family == "gamma":
        assert_allclose(moe.dispersion_, 1.0 / moe.experts_.shape, rtol=1e-15)
        assert_allclose(moe.experts_.variance(XeT), means.T**2 * moe.dispersion_[:, None], rtol=1e-12)
    else:
        with pytest.raises(AttributeError, match="dispersion_ is not a parameter"):
            moe.dispersion_  # noqa: B018
        assert_allclose(moe.experts_.variance(XeT), means.T, rtol=1e-12)


@pytest.mark.parametrize("family", FAMILIES)
def test_fit_does_not_depend_on_units_of_X(family):
    """The designs are standardised: rescaled and shifted columns give the same model."""
    X, y, _ = _simulate(600, family, TRUE_GATE, TRUE_EXPERTS, TRUE_SHAPE, seed=2)
    a = MixtureOfExpertsRegressor(3, expert=family, random_state=0, tol=1e-10).fit(X, y)
    scale, shift = np.array([1000.0, 0.01]), np.array([5.0, -3.0])
    b = MixtureOfExpertsRegressor(3, expert=family, random_state=0, tol=1e-10).fit(X * scale + shift, y)
    assert_allclose(b.score_samples(X * scale + shift, y), a.score_samples(X, y), rtol=1e-6)
    # raw coefficients transform as the columns do
    assert_allclose(b.expert_coef_[:, 1:] * scale, a.expert_coef_[:, 1:], rtol=1e-5, atol=1e-7)
    if family == "gamma":
        assert_allclose(b.dispersion_, a.dispersion_, rtol=1e-5)


def test_default_start_clusters_y_on_the_log_scale():
    """k-means starts from (X, log(y + 0.5)) for Poisson and (X, log y) for Gamma."""
    X, y, _ = _simulate(300, "poisson", TRUE_GATE, TRUE_EXPERTS, seed=3)
    w = np.ones(len(y))

    def standardised(Z):
        return (Z - Z.mean(axis=0)) / Z.std(axis=0)

    poisson = MixtureOfExpertsRegressor(3, expert="poisson")
    assert_allclose(poisson._cluster_data(X, y, w), standardised(np.column_stack([X, np.log(y + 0.5)])))
    gamma = MixtureOfExpertsRegressor(3, expert="gamma")
    assert_allclose(gamma._cluster_data(X, y + 1, w), standardised(np.column_stack([X, np.log(y + 1)])))
    gaussian = MixtureOfExpertsRegressor(3)
    assert_allclose(gaussian._cluster_data(X, y, w), standardised(np.column_stack([X, y])))


# -- M-steps ----------------------------------------------------------------------------------------
def _weighted_objective(family, XT, y, resp, w, coef, shape=None):
    """sum_i w_i sum_k r_ki log f_k(y_i | x_i) (numpy/scipy)."""
    return float(np.sum(resp * w * naive.glm_log_prob(XT, y, coef, family, shape)))


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("seed", range(4))
def test_m_step_never_decreases_the_objective_from_far_starts(family, seed):
    """Newton steps from far-off coefficients overshoot; halving keeps every step an ascent."""
    rng = np.random.default_rng(seed)
    n, K, p = 400, 3, 3
    XT = np.vstack([np.ones(n), 2.0 * rng.standard_normal((p - 1, n))])
    coef_true = 0.5 * rng.standard_normal((K, p))
    labels = rng.integers(K, size=n)
    mu = np.exp(np.einsum("kn,kn->n", coef_true[labels].T, XT))
    y = rng.poisson(mu).astype(float) if family == "poisson" else rng.gamma(3.0, mu / 3.0)
    resp = rng.dirichlet(np.ones(K), size=n).T.copy()
    w = rng.uniform(0.5, 2.0, size=n)
    experts = EXPERT_FAMILIES[family](K)
    experts.set_variance_floor(y, w)
    experts.coef = coef_true + rng.normal(scale=3.0, size=(K, p))  # far off: full steps overshoot
    if family == "gamma":
        experts.shape = np.array([0.7, 2.0, 9.0])

    def objective():
        return _weighted_objective(family, XT, y, resp, w, experts.coef, getattr(experts, "shape", None))

    values = [objective()]
    # about one M-step per unit of error in the linear predictor (here up to ~50)
    for _ in range(100):
        experts.m_step(XT, y, resp, w)
        values.append(objective())
    values = np.array(values)
    assert np.all(np.isfinite(values))
    assert np.all(np.diff(values) >= -1e-12 * np.abs(values[:-1])), np.diff(values).min()
    # and it gets to the maximum: the weighted GLM score equations hold
    _, grad, hess, _, _ = naive.glm_stats(XT, y, resp, w, experts.coef, family)
    assert np.all(np.abs(grad) < 1e-6 * np.sqrt(np.diagonal(hess, axis1=1, axis2=2)) * np.sqrt(n))


@pytest.mark.parametrize("family", FAMILIES)
def test_m_step_with_several_newton_steps_reaches_the_weighted_mle(family):
    rng = np.random.default_rng(5)
    n, K, p = 1000, 2, 2
    XT = np.vstack([np.ones(n), rng.standard_normal(n)])
    y = rng.poisson(np.exp(1 + 0.5 * XT[1])).astype(float) if family == "poisson" else rng.gamma(
        4.0, np.exp(1 + 0.5 * XT[1]) / 4.0
    )
    resp = rng.dirichlet(np.ones(K), size=n).T.copy()
    w = np.ones(n)
    experts = EXPERT_FAMILIES[family](K, newton_steps=20)
    experts.initialize(XT, y, resp, w)
    for k in range(K):
        # reference: scipy's optimiser on each expert's weighted log-likelihood
        def negloglik(theta, k=k):
            coef = np.tile(theta[:p], (1, 1))
            shape = None if family == "poisson" else np.exp(theta[p:])
            return -np.sum(resp[k] * w * naive.glm_log_prob(XT, y, coef, family, shape)[0])

        start = experts.coef[k]
        if family == "gamma":
            start = np.append(start, np.log(experts.shape[k]))
        ref = optimize.minimize(negloglik, start + 0.1, method="BFGS", options={"gtol": 1e-9})
        assert_allclose(experts.coef[k], ref.x[:p], rtol=1e-5, atol=1e-6)
        if family == "gamma":
            assert_allclose(experts.shape[k], np.exp(ref.x[p]), rtol=1e-5)


@pytest.mark.parametrize("family", FAMILIES)
def test_converged_m_step_costs_one_pass(family, monkeypatch):
    """At the maximum, a Newton step's gain is below the objective's rounding: it is not tried
    (checking it would compare rounding errors and halve it up to 40 times)."""
    import mixexp.experts._glm as glm

    rng = np.random.default_rng(1)
    n, K = 3000, 3
    XT = np.vstack([np.ones(n), rng.standard_normal(n)])
    mu = np.exp(1.0 + 0.5 * XT[1])
    y = rng.poisson(mu).astype(float) if family == "poisson" else rng.gamma(3.0, mu / 3.0)
    resp = rng.dirichlet(np.ones(K), size=n).T.copy()
    w = np.ones(n)
    experts = EXPERT_FAMILIES[family](K)
    experts.initialize(XT, y, resp, w)
    for _ in range(30):
        experts.m_step(XT, y, resp, w)
    calls = []
    monkeypatch.setattr(glm, "glm_stats", lambda *a, **k: calls.append(1) or glm_stats(*a, **k))
    coef = experts.coef.copy()
    for _ in range(20):
        experts.m_step(XT, y, resp, w)
    assert len(calls) <= 25, len(calls)
    assert_allclose(experts.coef, coef, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("family", FAMILIES)
def test_flat_parameters_round_trip(family):
    experts = EXPERT_FAMILIES[family](2)
    experts.coef = np.array([[0.5, -1.0], [2.0, 0.25]])
    if family == "gamma":
        experts.shape = np.array([3.0, 0.5])
    theta = experts.get_flat()
    assert theta.shape == (4 + (2 if family == "gamma" else 0),)
    other = EXPERT_FAMILIES[family](2)
    other.coef = np.zeros((2, 2))
    other.set_flat(theta)
    assert_allclose(other.coef, experts.coef, rtol=1e-15)
    if family == "gamma":
        assert_allclose(theta[4:], np.log(experts.shape), rtol=1e-15)
        assert_allclose(other.shape, experts.shape, rtol=1e-15)


def test_gamma_shape_step_is_the_constrained_maximiser():
    rng = np.random.default_rng(0)
    nk = np.array([10.0, 250.0, 3.0, 0.0, 40.0])
    c = np.array([0.4, 0.02, 2.5, 0.3, 1e-14])  # mean of u - 1 - log u
    s = -nk * (1 + c)
    shape = gamma_shape_step(nk, s, None, 1e6)

    def h(a, k):
        return nk[k] * (a * np.log(a) - special.gammaln(a)) + a * s[k]

    for k in (0, 1, 2):
        assert_allclose(np.log(shape[k]) - special.digamma(shape[k]), c[k], rtol=1e-10)
        for a in shape[k] * np.exp(rng.normal(scale=0.3, size=20)):
            assert h(shape[k], k) >= h(a, k)
    assert shape[3] == 1.0  # an empty expert keeps its (default) shape
    assert shape[4] == 1e6  # an exact fit sits at the bound set by the dispersion floor
    # with current shapes, a step never lowers the objective, and never returns NaN
    current = np.array([0.5, 3.0, 1e-3, 7.0, 2.0])
    new = gamma_shape_step(nk, s, current, 1e6)
    assert np.all(np.isfinite(new)) and np.all((new >= SHAPE_MIN) & (new <= 1e6))
    assert new[3] == 7.0
    for k in (0, 1, 2, 4):
        assert h(new[k], k) >= h(current[k], k)
    # nearly exact fits: log a - digamma(a) ~ 1 / (2a), solved without cancellation
    tiny = gamma_shape_step(np.array([100.0]), np.array([-100.0 * (1 + 1e-10)]), None, 1e12)[0]
    # (c = -1 - s / n_k keeps ~6 significant digits here, hence rtol)
    assert_allclose(tiny, 1.0 / (2e-10) + 1.0 / 6.0, rtol=1e-5)
    # very dispersed data: the lower bound
    assert gamma_shape_step(np.array([1.0]), np.array([-1e12]), None, 1e6)[0] == SHAPE_MIN


@pytest.mark.parametrize("a", [0.01, 1.0, 999.0, 1000.0, 3000.0, 1e5])
def test_log_minus_digamma_series_matches_the_direct_form(a):
    value, slope = _log_minus_digamma(a)
    # the direct forms lose ~1e-16 * log(a) / value to cancellation
    rtol = 1e-14 * max(1.0, a)
    assert_allclose(value, np.log(a) - special.digamma(a), rtol=rtol)
    assert_allclose(slope, a * special.polygamma(1, a) - 1.0, rtol=rtol)


def test_gamma_dispersion_floor_follows_reg_covar():
    experts = GammaExperts(2, reg_covar=1e-4)
    experts.set_variance_floor(np.ones(3), np.ones(3))
    assert experts.shape_max == 1e4
    experts = GammaExperts(2, reg_covar=0.0)
    experts.set_variance_floor(np.ones(3), np.ones(3))
    assert experts.shape_max == 1e12
    # two points fitted exactly by one expert each: the shapes stop at the floor, no NaN
    X = np.array([[0.0], [1.0], [0.0], [1.0]])
    y = np.array([1.0, 2.0, 1.0, 2.0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        moe = MixtureOfExpertsRegressor(2, expert="gamma", reg_covar=1e-4, random_state=0).fit(X, y)
    assert np.all(np.isfinite(moe.dispersion_)) and np.all(moe.dispersion_ >= 1e-4 * (1 - 1e-12))


# -- statistical recovery ------------------------------------------------------------------------
def _align(fitted_coef, true_coef):
    cost = ((true_coef[:, None, :] - fitted_coef[None, :, :]) ** 2).sum(-1)
    return linear_sum_assignment(cost)[1]


def _oracle_standard_errors(X, labels, family):
    """Standard errors of the estimators that know the latent labels, at the truth.

    Experts: inverse Fisher information of each expert's GLM on its own rows
    (Poisson: X_k' diag(mu) X_k; Gamma: alpha_k X_k'X_k for the coefficients and
    n_k (trigamma(alpha_k) - 1 / alpha_k) for the shape, orthogonal to them;
    the dispersion's by the delta method). Gate: multinomial logistic
    regression on the labels (expert 0 the reference).
    """
    n = len(X)
    X1 = np.column_stack([np.ones(n), X])
    K, p = TRUE_EXPERTS.shape
    se_expert, se_disp = np.empty((K, p)), np.empty(K)
    for k in range(K):
        Xk = X1[labels == k]
        if family == "poisson":
            info = (Xk * np.exp(Xk @ TRUE_EXPERTS[k])[:, None]).T @ Xk
        else:
            info = TRUE_SHAPE[k] * Xk.T @ Xk
            info_shape = len(Xk) * (special.polygamma(1, TRUE_SHAPE[k]) - 1.0 / TRUE_SHAPE[k])
            se_disp[k] = np.sqrt(1.0 / info_shape) / TRUE_SHAPE[k] ** 2
        se_expert[k] = np.sqrt(np.diag(np.linalg.inv(info)))
    g = special.softmax(X1 @ TRUE_GATE.T, axis=1)
    info = np.zeros(((K - 1) * p, (K - 1) * p))
    for k in range(1, K):
        for m in range(1, K):
            c = g[:, k] * ((k == m) - g[:, m])
            info[(k - 1) * p : k * p, (m - 1) * p : m * p] = (X1 * c[:, None]).T @ X1
    se_gate = np.vstack([np.zeros(p), np.sqrt(np.diag(np.linalg.inv(info))).reshape(K - 1, p)])
    return se_expert, se_disp, se_gate


@pytest.mark.parametrize("family", FAMILIES)
def test_parameter_recovery_three_experts(family):
    n = 20_000
    X, y, labels = _simulate(n, family, TRUE_GATE, TRUE_EXPERTS, TRUE_SHAPE, seed=42)
    moe = MixtureOfExpertsRegressor(
        3, expert=family, n_init=3, gate_penalty=0.0, tol=1e-10, max_iter=3000, random_state=0
    ).fit(X, y)
    assert moe.converged_
    perm = _align(moe.expert_coef_, TRUE_EXPERTS)
    gate = moe.gate_coef_[perm]
    gate = gate - gate[0]  # the same reference expert as the truth
    se_e, se_d, se_g = _oracle_standard_errors(X, labels, family)
    # 5 oracle standard errors, inflated by 1.5 for the information lost to the
    # unknown labels: a failure has probability far below 1e-4 per parameter.
    z = 5 * 1.5
    assert np.all(np.abs(moe.expert_coef_[perm] - TRUE_EXPERTS) < z * se_e)
    assert np.all(np.abs(gate - TRUE_GATE) <= z * se_g)
    if family == "gamma":
        assert np.all(np.abs(moe.dispersion_[perm] - 1.0 / TRUE_SHAPE) < z * se_d)
    # the fit is at least as likely as the truth (the MLE lies above it)
    true_ll = naive.conditional_log_density_glm(
        X, X, y, TRUE_GATE, TRUE_EXPERTS, family, 1.0 / TRUE_SHAPE if family == "gamma" else None
    ).sum()
    assert moe.score_samples(X, y).sum() >= true_ll


# -- monotone EM --------------------------------------------------------------------------------------
@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("seed", range(6))
def test_monotone_log_likelihood(family, seed):
    """warm_start=True, max_iter=1: every EM step raises the objective."""
    X, y, K = _random_problem(seed, family)
    penalty = [0.0, 1e-3, 1.0][seed % 3]
    init = ["kmeans", "random"][seed % 2]
    moe = MixtureOfExpertsRegressor(
        K, expert=family, init=init, warm_start=True, max_iter=1, gate_penalty=penalty, random_state=seed
    )
    bounds = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for _ in range(40):
            moe.fit(X, y)
            bounds.append(moe.lower_bound_)
    bounds = np.array(bounds)
    assert np.all(np.isfinite(bounds))
    slack = 1e-12 * np.maximum(1.0, np.abs(bounds[:-1]))
    assert np.all(np.diff(bounds) >= -slack), np.diff(bounds).min()
    # within one fit the recorded path is monotone too, and ends at lower_bound_
    full = MixtureOfExpertsRegressor(
        K, expert=family, init=init, gate_penalty=penalty, random_state=seed, max_iter=300
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        full.fit(X, y)
    lb = full.lower_bounds_
    assert np.all(np.diff(lb) >= -1e-12 * np.maximum(1.0, np.abs(lb[:-1])))
    assert_allclose(full.lower_bound_, lb[-1])


@pytest.mark.parametrize("family", FAMILIES)
def test_same_random_state_same_fit(family):
    X, y, _ = _simulate(3000, family, TRUE_GATE, TRUE_EXPERTS, TRUE_SHAPE, seed=5)
    a = MixtureOfExpertsRegressor(3, expert=family, n_init=2, random_state=7).fit(X, y)
    b = MixtureOfExpertsRegressor(3, expert=family, n_init=2, random_state=7).fit(X, y)
    for attr in ("gate_coef_", "expert_coef_", "lower_bounds_"):
        assert np.array_equal(getattr(a, attr), getattr(b, attr))


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs 2 Numba threads")
@pytest.mark.parametrize("family", FAMILIES)
def test_same_fit_for_one_and_two_threads(family):
    X, y, _ = _simulate(12_000, family, TRUE_GATE, TRUE_EXPERTS, TRUE_SHAPE, seed=6)  # several blocks
    before = numba.get_num_threads()
    fits = []
    try:
        for threads in (1, 2):
            numba.set_num_threads(threads)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                moe = MixtureOfExpertsRegressor(3, expert=family, random_state=7, max_iter=30)
                fits.append(moe.fit(X, y))
    finally:
        numba.set_num_threads(before)
    attrs = ["gate_coef_", "expert_coef_", "lower_bounds_"] + (["dispersion_"] if family == "gamma" else [])
    for attr in attrs:
        assert np.array_equal(getattr(fits[0], attr), getattr(fits[1], attr))


# -- bad input -----------------------------------------------------------------------------------------
BAD_TARGETS = [
    ("poisson", [0.0, 1.0, -1.0, 2.0], "non-negative integer counts y; got negative values"),
    ("poisson", [0.0, 1.0, 2.5, 2.0], "non-negative integer counts y; got non-integer values"),
    ("gamma", [0.5, 1.0, 0.0, 2.0], "strictly positive y; got values <= 0"),
    ("gamma", [0.5, 1.0, -3.0, 2.0], "strictly positive y; got values <= 0"),
]


@pytest.mark.parametrize("family,bad,message", BAD_TARGETS)
def test_invalid_targets_are_rejected_at_fit_and_at_scoring(family, bad, message):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 2))
    good = np.tile([1.0, 2.0, 3.0, 4.0], 10)
    bad_y = np.tile(bad, 10)
    with pytest.raises(ValueError, match=f"expert='{family}' needs {message}"):
        MixtureOfExpertsRegressor(2, expert=family, random_state=0).fit(X, bad_y)
    moe = MixtureOfExpertsRegressor(2, expert=family, random_state=0).fit(X, good)
    for method in (moe.score_samples, moe.predict_responsibilities, moe.bic):
        with pytest.raises(ValueError, match=f"expert='{family}' needs {message}"):
            method(X, bad_y)


def test_integral_floats_and_integer_dtype_are_valid_counts():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((60, 1))
    y = rng.poisson(3.0, size=60)
    a = MixtureOfExpertsRegressor(2, expert="poisson", random_state=0).fit(X, y)
    b = MixtureOfExpertsRegressor(2, expert="poisson", random_state=0).fit(X, y.astype(float))
    assert np.array_equal(a.expert_coef_, b.expert_coef_)
    assert np.all(np.isfinite(a.score_samples(X, y)))


# -- scikit-learn's checks -----------------------------------------------------------------------
_REAL_Y_CHECKS = [
    "check_fit_check_is_fitted",
    "check_fit_idempotent",
    "check_n_features_in",
    "check_n_features_in_after_fitting",
    "check_regressor_data_not_an_array",
    "check_regressors_no_decision_function",
    "check_regressors_train",
]


def _expected_failed_checks(estimator):
    failed = {
        "check_sample_weight_equivalence_on_dense_data": (
            "The EM start depends on the rows, not only on their weights (as for Gaussian "
            "experts, see tests/test_common.py): repeated and weighted rows draw different "
            "starts and reach different local optima."
        ),
        "check_methods_subset_invariance": (
            "score_samples(X, y) is the conditional log-density and needs y; the check calls "
            "score_samples(X). Subset and order invariance of every method is tested by "
            "test_methods_subset_and_order_invariance below."
        ),
        "check_methods_sample_order_invariance": "As check_methods_subset_invariance.",
    }
    if estimator.expert == "poisson":
        reason = (
            "The check draws real-valued y (made positive by the positive_only target tag), "
            "which Poisson experts reject: they need integer counts. The same check passes on "
            "those y rounded to counts (test_poisson_checks_on_counts)."
        )
        failed.update(dict.fromkeys(_REAL_Y_CHECKS, reason))
    return failed


@parametrize_with_checks(
    [MixtureOfExpertsRegressor(2, expert=family, random_state=0) for family in FAMILIES],
    expected_failed_checks=_expected_failed_checks,
    xfail_strict=True,
)
def test_sklearn_compatible_glm_experts(estimator, check):
    check(estimator)


@pytest.mark.parametrize("family", FAMILIES)
def test_methods_subset_and_order_invariance(family):
    X, y, _ = _simulate(40, family, TRUE_GATE, TRUE_EXPERTS, TRUE_SHAPE, seed=8)
    est = MixtureOfExpertsRegressor(2, expert=family, random_state=0).fit(X, y)
    x_only = ["predict", "predict_gate", "predict_experts"]
    x_and_y = ["score_samples", "predict_responsibilities"]
    perm = np.random.default_rng(0).permutation(len(y))
    for name in x_only + x_and_y:
        method = getattr(est, name)

        def call(idx, method=method, name=name):
            return method(X[idx]) if name in x_only else method(X[idx], y[idx])

        full = call(np.arange(len(y)))
        batches = np.concatenate([call(np.arange(i, min(i + 7, len(y)))) for i in range(0, len(y), 7)])
        assert_allclose(batches, full, rtol=1e-10, atol=1e-12, err_msg=f"{name} on subsets")
        rows = np.concatenate([call(np.array([i])) for i in range(len(y))])
        assert_allclose(rows, full, rtol=1e-10, atol=1e-12, err_msg=f"{name} row by row")
        assert_allclose(call(perm), full[perm], rtol=1e-10, atol=1e-12, err_msg=f"{name} order")


class _CountsRegressor(MixtureOfExpertsRegressor):
    """Rounds y to counts before fitting: runs sklearn's real-y checks on valid Poisson data."""

    def fit(self, X, y, sample_weight=None):
        return super().fit(X, np.round(np.asarray(y, dtype=float)), sample_weight)

    def partial_fit(self, X, y, sample_weight=None):
        return super().partial_fit(X, np.round(np.asarray(y, dtype=float)), sample_weight)


@pytest.mark.parametrize("check", _REAL_Y_CHECKS)
def test_poisson_checks_on_counts(check):
    getattr(estimator_checks, check)("MixtureOfExpertsRegressor", _CountsRegressor(2, expert="poisson",
                                                                                  random_state=0))


def test_positive_only_target_tag():
    for expert, positive in [("poisson", True), ("gamma", True), ("gaussian", False)]:
        tags = MixtureOfExpertsRegressor(expert=expert).__sklearn_tags__()
        assert tags.target_tags.positive_only is positive
    # a family given as a class or an instance
    for expert in (PoissonExperts, GammaExperts(2)):
        assert MixtureOfExpertsRegressor(expert=expert).__sklearn_tags__().target_tags.positive_only is True


# -- flexmix -------------------------------------------------------------------------------------------
flexmix = pytest.mark.skipif(not flexmix_available(), reason="Rscript with flexmix is not installed")


def _assert_density_at_flexmix_parameters(moe, X, y, flex, tol):
    """Our log-likelihood at flexmix's parameters is flexmix's log-likelihood.

    flexmix's ``logLik`` comes from the E-step before its last M-step, so its
    parameters are one EM step ahead of it; that step changed the
    log-likelihood by less than ``tol * (|LL| + 0.1)`` (flexmix's stopping rule),
    and EM steps shrink. A wrong density (a missing constant, another
    parametrisation of the shape, a wrong gate) is off by far more.
    """
    ours = moe.score_samples(X, y).sum()
    assert abs(ours - flex["loglik"]) <= 2 * tol * (abs(flex["loglik"]) + 0.1), ours - flex["loglik"]


def _set_raw(moe, gate_coef, expert_coef, dispersion=None):
    """Put parameters (raw scale) into a fitted estimator, to evaluate its density there."""
    moe.gate_.set_raw_params({"coef": gate_coef}, moe._scaling)
    params = {"coef": expert_coef}
    if dispersion is not None:
        params["dispersion"] = dispersion
    moe.experts_.set_raw_params(params, moe._scaling, moe.fit_intercept)
    return moe


@pytest.mark.flexmix
@flexmix
@pytest.mark.parametrize("seed", [0, 1])
def test_poisson_reaches_flexmix_best_log_likelihood(seed):
    """Gate on z, experts on x; same data and number of starts: mixexp's optimum is at least flexmix's."""
    gate = np.array([[0.0, 0.0], [0.5, 2.0], [-0.5, -2.0]])
    coef = np.array([[1.0, 0.5], [2.0, -0.5], [0.0, 1.0]])
    X, y, _ = _simulate(2000, "poisson", gate, coef, gate_cols=[0], expert_cols=[1], seed=seed)
    flex = flexmix_glm_moe(y, X[:, 1], X[:, 0], 3, "poisson", nrep=3, tol=1e-9, seed=seed)
    assert flex is not None
    moe = MixtureOfExpertsRegressor(
        3, expert="poisson", gate_features=[0], expert_features=[1], n_init=3, gate_penalty=0.0,
        tol=1e-10, max_iter=5000, random_state=seed,
    ).fit(X, y)
    ours = moe.score_samples(X, y).sum()
    # both stop on a small tolerance (relative for flexmix, per sample for us)
    assert ours >= flex["loglik"] - 1e-6 * abs(flex["loglik"])
    # like with like: our density at flexmix's parameters is flexmix's log-likelihood
    _assert_density_at_flexmix_parameters(_set_raw(moe, flex["gate"], flex["coef"]), X, y, flex, 1e-9)


@pytest.mark.flexmix
@flexmix
def test_gamma_against_flexmix():
    """Gamma experts: flexmix's own driver (inverse link) with intercept-only experts, where the
    link does not matter, and the same driver with the log link.

    flexmix's shape is sum(w) / deviance, not the maximum-likelihood shape, so
    its reported log-likelihood is at most ours; at flexmix's parameters our
    density gives exactly its log-likelihood.
    """
    gate = np.array([[0.0, 0.0], [0.5, 2.0], [-0.5, -2.0]])
    coef = np.array([[1.0, 0.0], [2.5, 0.0], [0.0, 0.0]])
    X, y, _ = _simulate(1500, "gamma", gate, coef, TRUE_SHAPE, gate_cols=[0], expert_cols=[1], seed=0)
    flex = flexmix_glm_moe(y, X[:, :0], X[:, 0], 3, "Gamma", nrep=3, tol=1e-9, seed=0)
    assert flex is not None
    moe = MixtureOfExpertsRegressor(
        3, expert="gamma", gate_features=[0], expert_features=[], n_init=3, gate_penalty=0.0,
        tol=1e-10, max_iter=5000, random_state=0,
    ).fit(X, y)
    assert moe.score_samples(X, y).sum() >= flex["loglik"] - 1e-6 * abs(flex["loglik"])
    # flexmix's intercepts are on the inverse scale (eta = 1 / mu)
    moe = _set_raw(moe, flex["gate"], -np.log(flex["coef"]), 1.0 / flex["shape"])
    _assert_density_at_flexmix_parameters(moe, X, y, flex, 1e-9)

    coef = np.array([[1.0, 0.5], [2.0, -0.5], [0.0, 1.0]])
    X, y, _ = _simulate(1500, "gamma", gate, coef, TRUE_SHAPE, gate_cols=[0], expert_cols=[1], seed=1)
    flex = flexmix_glm_moe(y, X[:, 1], X[:, 0], 3, "Gamma", nrep=3, tol=1e-9, seed=1, link="log")
    assert flex is not None
    moe = MixtureOfExpertsRegressor(
        3, expert="gamma", gate_features=[0], expert_features=[1], n_init=3, gate_penalty=0.0,
        tol=1e-10, max_iter=5000, random_state=1,
    ).fit(X, y)
    assert moe.score_samples(X, y).sum() >= flex["loglik"] - 1e-6 * abs(flex["loglik"])
    moe = _set_raw(moe, flex["gate"], flex["coef"], 1.0 / flex["shape"])
    _assert_density_at_flexmix_parameters(moe, X, y, flex, 1e-9)
