"""The normalised Gaussian gate (gate="gaussian", Xu, Jordan & Hinton 1995)."""

import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose
from scipy import stats
from scipy.optimize import linear_sum_assignment
from scipy.special import logsumexp
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture
from sklearn.mixture._gaussian_mixture import _estimate_gaussian_parameters

from mixexp import MixtureOfExpertsClassifier, MixtureOfExpertsRegressor
from mixexp._kernels import fused_gaussian_gate_gaussian
from mixexp._scaling import Scaling
from mixexp.gates import GATES, GaussianGate
from mixexp.gates._gaussian import estimate_gaussian_parameters
from mixexp.solvers import _em
from mixexp.theory.simulate import GaussianGatedMoE

from . import _naive as naive

COVARIANCE_TYPES = ["full", "diag", "spherical"]

TRUE = GaussianGatedMoE(
    weights=[0.3, 0.45, 0.25],
    means=[[-3.0, 0.0], [2.0, 2.0], [2.0, -3.0]],
    covariances=[
        [[1.0, 0.3], [0.3, 0.6]],
        [[0.8, -0.2], [-0.2, 1.2]],
        [[0.5, 0.0], [0.0, 0.9]],
    ],
    expert_coef=[[1.0, 2.0, -1.0], [-2.0, -1.0, 3.0], [4.0, 0.5, 1.5]],
    noise_variance=[0.25, 0.5, 0.36],
)


# -- naive scipy twins -------------------------------------------------------------------
def _dense(covariances, covariance_type, d):
    """(K, d, d) covariance matrices from any of the three layouts."""
    cov = np.asarray(covariances, dtype=float)
    if covariance_type == "full":
        return cov
    if covariance_type == "diag" or cov.ndim == 2:
        return np.stack([np.diag(c) for c in cov])
    return np.stack([c * np.eye(d) for c in cov])


def naive_log_numerators(X, weights, means, covariances, covariance_type):
    """(n, K) log pi_k + log N(x_i; mu_k, Sigma_k) with scipy.stats.multivariate_normal."""
    K, d = means.shape
    cov = _dense(covariances, covariance_type, d)
    return np.column_stack(
        [np.log(weights[k]) + stats.multivariate_normal(means[k], cov[k]).logpdf(X) for k in range(K)]
    )


def naive_joint_log_lik(est, X, y):
    """(n,) log p(x_i, y_i) of a fitted Gaussian-gated regressor with Gaussian experts, raw scale."""
    a = naive_log_numerators(
        X, est.gate_weights_, est.gate_means_, est.gate_covariances_, est.gate_covariance_type
    )
    coef = est.expert_coef_
    mean = coef[:, 0] + X @ coef[:, 1:].T
    log_f = stats.norm.logpdf(y[:, None], mean, np.sqrt(est.noise_variance_))
    return logsumexp(a + log_f, axis=1), logsumexp(a, axis=1)


def _gate_with(params, covariance_type):
    gate = GaussianGate(len(params["weights"]), covariance_type=covariance_type)
    d = params["means"].shape[1]
    gate.set_raw_params(params, Scaling(np.zeros(d), np.ones(d), np.zeros(0), np.ones(0)))
    return gate


def _random_params(covariance_type, K, d, rng):
    weights = rng.dirichlet(np.ones(K))
    means = rng.normal(0, 2, size=(K, d))
    if covariance_type == "full":
        A = rng.normal(size=(K, d, d))
        cov = A @ np.swapaxes(A, 1, 2) + 0.3 * np.eye(d)
    elif covariance_type == "diag":
        cov = rng.uniform(0.3, 2.0, size=(K, d))
    else:
        cov = np.repeat(rng.uniform(0.3, 2.0, size=(K, 1)), d, axis=1)  # raw layout: (K, d)
    return {"weights": weights, "means": means, "covariances": cov}


def _design(X):
    return np.ascontiguousarray(np.vstack([np.ones(len(X)), X.T]))


# -- the gate against its twins ------------------------------------------------------------
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("d", [1, 3])
def test_log_weights_match_scipy(covariance_type, d):
    rng = np.random.default_rng(0)
    params = _random_params(covariance_type, 4, d, rng)
    gate = _gate_with(params, covariance_type)
    X = rng.normal(0, 3, size=(200, d))
    a = naive_log_numerators(X, params["weights"], params["means"], params["covariances"], covariance_type)
    ev = gate.evaluate(_design(X))
    assert_allclose(ev.log.T, a - logsumexp(a, axis=1, keepdims=True), rtol=1e-10, atol=1e-10)
    assert_allclose(gate.log_weights(_design(X)), ev.log)
    assert_allclose(ev.prob.sum(axis=0), 1.0, rtol=1e-12)
    assert_allclose(ev.log_marginal, logsumexp(a, axis=1), rtol=1e-10)
    w = rng.uniform(size=200)
    w[:10] = 0.0
    assert_allclose(gate.marginal_log_likelihood(ev, w), w @ logsumexp(a, axis=1), rtol=1e-10)


def test_far_rows_stay_finite():
    # a row far from every component: each log-density underflows, the weights do not
    params = _random_params("full", 3, 2, np.random.default_rng(1))
    gate = _gate_with(params, "full")
    ev = gate.evaluate(_design(np.array([[1e4, -1e4], [0.0, 0.0]])))
    assert np.all(np.isfinite(ev.log)) and np.all(np.isfinite(ev.log_marginal))
    assert_allclose(ev.prob.sum(axis=0), 1.0)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_m_step_matches_sklearn(covariance_type):
    # without a floor the M-step is scikit-learn's, with the sample weights in the responsibilities
    rng = np.random.default_rng(2)
    X = rng.normal(size=(300, 3))
    resp = rng.dirichlet(np.ones(3), size=300)
    w = rng.uniform(0.2, 2.0, size=300)
    nk, means, cov = estimate_gaussian_parameters(_design(X), resp.T.copy(), w, 0.0, covariance_type)
    nk_ref, means_ref, cov_ref = _estimate_gaussian_parameters(X, resp * w[:, None], 0.0, covariance_type)
    assert_allclose(nk, nk_ref, rtol=1e-12)
    assert_allclose(means, means_ref, rtol=1e-10, atol=1e-12)
    assert_allclose(cov, cov_ref, rtol=1e-9, atol=1e-12)


def test_covariance_floor_is_the_constrained_maximiser():
    # a nearly singular scatter: the floor clips its eigenvalues, which beats
    # scikit-learn's S + reg I (also feasible) on the M-step's criterion
    rng = np.random.default_rng(3)
    t = rng.normal(size=400)
    X = np.column_stack([t, t + 1e-4 * rng.normal(size=400)])
    resp = np.ones((1, 400))
    w = np.ones(400)
    reg = 1e-3
    _, mean, cov = estimate_gaussian_parameters(_design(X), resp, w, reg, "full")
    assert np.linalg.eigvalsh(cov[0]).min() >= reg * (1 - 1e-12)

    def criterion(S):
        return stats.multivariate_normal(mean[0], S).logpdf(X).sum()

    _, _, cov_sk = _estimate_gaussian_parameters(X, resp.T, reg, "full")
    assert criterion(cov[0]) > criterion(cov_sk[0])
    for _ in range(20):  # and any feasible perturbation
        E = 1e-3 * rng.normal(size=(2, 2))
        S = cov[0] + E @ E.T
        assert criterion(cov[0]) >= criterion(S)
    # diag and spherical: floors on the variances
    _, _, var = estimate_gaussian_parameters(
        _design(np.column_stack([t, np.zeros(400)])), resp, w, reg, "diag"
    )
    assert_allclose(var[0, 1], reg)


def test_raw_params_flat_vector_and_parameter_count():
    rng = np.random.default_rng(4)
    scaling = Scaling(np.array([1.0, -2.0]), np.array([3.0, 0.5]), np.zeros(0), np.ones(0))
    for covariance_type in COVARIANCE_TYPES:
        params = _random_params(covariance_type, 3, 2, rng)
        if covariance_type == "spherical":
            params["covariances"] = params["covariances"] * scaling.gate_scale**2
        gate = GaussianGate(3, covariance_type=covariance_type)
        gate.set_raw_params(params, scaling)
        back = gate.raw_params(scaling)
        for key in params:
            assert_allclose(back[key], params[key], rtol=1e-12)
        theta = gate.get_flat()
        K, d = 3, 2
        n_cov = {"full": 3, "diag": 2, "spherical": 1}[covariance_type]
        assert theta.size == gate.n_parameters() == (K - 1) + K * d + K * n_cov
        other = GaussianGate(3, covariance_type=covariance_type)
        other.set_raw_params(_random_params(covariance_type, 3, 2, rng), scaling)
        other.set_flat(theta)
        X = rng.normal(size=(50, 2))
        assert_allclose(other.evaluate(_design(X)).log, gate.evaluate(_design(X)).log, rtol=1e-10)


def test_registered():
    assert GATES["gaussian"] is GaussianGate


# -- the estimators ----------------------------------------------------------------------------
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_lower_bound_is_the_raw_joint_log_likelihood(covariance_type):
    X, y = TRUE.sample(1500, random_state=0)
    # units and offsets that the internal standardisation must undo
    X = X * np.array([10.0, 0.1]) + np.array([5.0, -3.0])
    y = 100.0 * y + 7.0
    est = MixtureOfExpertsRegressor(
        3, gate="gaussian", gate_covariance_type=covariance_type, random_state=0
    ).fit(X, y)
    joint, marginal = naive_joint_log_lik(est, X, y)
    assert_allclose(est.lower_bound_, joint.mean(), rtol=1e-10)
    assert_allclose(est.lower_bounds_[-1], est.lower_bound_)
    # score_samples stays the conditional log p(y | x) = log p(x, y) - log p(x)
    assert_allclose(est.score_samples(X, y), joint - marginal, rtol=1e-9, atol=1e-9)
    assert_allclose(est.predict_gate(X).sum(axis=1), 1.0)
    shapes = {"full": (3, 2, 2), "diag": (3, 2), "spherical": (3, 2)}
    assert est.gate_covariances_.shape == shapes[covariance_type]
    if covariance_type == "spherical":  # spherical on the standardised columns
        ratio = est.gate_covariances_ / est._scaling.gate_scale**2
        assert_allclose(ratio, ratio[:, :1] * np.ones((1, 2)), rtol=1e-12)
    n_cov = {"full": 3, "diag": 2, "spherical": 1}[covariance_type]
    assert est.n_parameters() == 2 + 3 * 2 + 3 * n_cov + 3 * 3 + 3


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_monotone_joint_objective(covariance_type):
    # random starts far from the optimum, no stopping rule: every EM step must
    # raise the joint log-likelihood (up to rounding of the mean over n rows)
    X, y = TRUE.sample(800, random_state=1)
    for seed in range(3):
        est = MixtureOfExpertsRegressor(
            3,
            gate="gaussian",
            gate_covariance_type=covariance_type,
            init="random",
            tol=0.0,
            max_iter=60,
            random_state=seed,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            est.fit(X, y)
        lb = est.lower_bounds_
        assert lb.size == 61
        assert np.all(np.diff(lb) >= -1e-12 * np.abs(lb[1:])), np.diff(lb).min()
        assert lb[-1] > lb[0]


def test_monotone_across_warm_starts():
    # scikit-learn's test_monotonic_likelihood: one EM iteration per warm refit
    X, y = TRUE.sample(600, random_state=2)
    est = MixtureOfExpertsRegressor(
        3, gate="gaussian", warm_start=True, max_iter=1, init="random", random_state=0
    )
    previous = -np.inf
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for _ in range(30):
            est.fit(X, y)
            assert est.lower_bounds_[0] >= previous - 1e-12 * abs(previous)
            assert est.lower_bound_ >= est.lower_bounds_[0] - 1e-12 * abs(previous)
            previous = est.lower_bound_


def test_parameter_recovery():
    n = 20_000
    X, y, labels = TRUE.sample(n, random_state=3, return_labels=True)
    est = MixtureOfExpertsRegressor(3, gate="gaussian", n_init=3, random_state=0).fit(X, y)
    assert est.converged_
    perm = linear_sum_assignment(((TRUE.means[:, None] - est.gate_means_[None]) ** 2).sum(-1))[1]
    # Tolerances: 5 standard errors of the estimators that know the labels (n_k
    # rows per component); the components are well separated, so the unknown
    # labels cost little information.
    nk = np.bincount(labels, minlength=3)
    pi = TRUE.weights
    assert_allclose(est.gate_weights_[perm], pi, atol=5 * np.sqrt(pi * (1 - pi) / n).max())
    sd = np.sqrt(np.diagonal(TRUE.covariances, axis1=1, axis2=2))
    assert np.all(np.abs(est.gate_means_[perm] - TRUE.means) <= 5 * sd / np.sqrt(nk)[:, None])
    # Var of a sample covariance entry: (S_ij^2 + S_ii S_jj) / n_k
    cov = TRUE.covariances
    se_cov = np.sqrt((cov**2 + np.einsum("kii,kjj->kij", cov, cov)) / nk[:, None, None])
    assert np.all(np.abs(est.gate_covariances_[perm] - cov) <= 5 * se_cov)
    X1 = np.column_stack([np.ones(n), X])
    for k in range(3):
        Xk = X1[labels == k]
        se = np.sqrt(np.diag(TRUE.noise_variance[k] * np.linalg.inv(Xk.T @ Xk)))
        assert np.all(np.abs(est.expert_coef_[perm[k]] - TRUE.expert_coef[k]) <= 5 * se)
    se_var = TRUE.noise_variance * np.sqrt(2.0 / nk)
    assert np.all(np.abs(est.noise_variance_[perm] - TRUE.noise_variance) <= 5 * se_var)


def _gmm_conditional(gmm, d):
    """Gate means/covariances and regression of y on x implied by a GMM on (x, y)."""
    mu, S = gmm.means_, gmm.covariances_
    Sxx, Sxy, Syy = S[:, :d, :d], S[:, :d, d], S[:, d, d]
    slope = np.linalg.solve(Sxx, Sxy[:, :, None])[:, :, 0]
    intercept = mu[:, d] - np.einsum("kd,kd->k", slope, mu[:, :d])
    noise = Syy - np.einsum("kd,kd->k", slope, Sxy)
    return mu[:, :d], Sxx, np.column_stack([intercept, slope]), noise


@pytest.mark.parametrize("max_iter", [5, 2000])
def test_gaussian_gated_moe_is_a_gaussian_mixture_on_x_and_y(max_iter):
    # With full covariances and Gaussian linear experts (every column feeding the
    # gate and the experts), pi_k N(x; mu_k, Sigma_k) N(y; b_k + a_k'x, s_k^2) is a
    # Gaussian on (x, y), and the closed-form M-steps correspond one to one. From
    # the same responsibilities, without covariance floors, both EMs follow the same
    # path: after max_iter iterations (5, or to convergence) the joint
    # log-likelihoods and the parameters agree.
    X, y = TRUE.sample(3000, random_state=4)
    Z = np.column_stack([X, y])
    resp = np.random.default_rng(5).dirichlet(np.ones(3), size=len(X))
    nearest = np.argmin(((X[:, None, :] - TRUE.means[None]) ** 2).sum(-1), axis=1)
    resp = 0.2 * resp + 0.8 * np.eye(3)[nearest]
    weights, means, covs = _estimate_gaussian_parameters(Z, resp, 0.0, "full")
    tol = 1e-12
    gmm = GaussianMixture(
        3,
        covariance_type="full",
        reg_covar=0.0,
        tol=tol,
        max_iter=max_iter,
        weights_init=weights / len(Z),
        means_init=means,
        precisions_init=np.linalg.inv(covs),
    )
    moe = MixtureOfExpertsRegressor(
        3,
        gate="gaussian",
        gate_covariance_type="full",
        reg_covar=0.0,
        init=resp,
        tol=tol,
        max_iter=max_iter,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        gmm.fit(Z)
        moe.fit(X, y)
    if max_iter > 5:
        assert moe.converged_ and gmm.converged_
    assert_allclose(moe.lower_bound_, gmm.score(Z), rtol=1e-6)
    joint, _ = naive_joint_log_lik(moe, X, y)
    assert_allclose(joint, gmm.score_samples(Z), rtol=1e-6)
    gate_means, gate_cov, expert_coef, noise = _gmm_conditional(gmm, X.shape[1])
    assert_allclose(moe.gate_weights_, gmm.weights_, rtol=1e-6)
    assert_allclose(moe.gate_means_, gate_means, rtol=1e-6, atol=1e-8)
    assert_allclose(moe.gate_covariances_, gate_cov, rtol=1e-6, atol=1e-8)
    assert_allclose(moe.expert_coef_, expert_coef, rtol=1e-6, atol=1e-8)
    assert_allclose(moe.noise_variance_, noise, rtol=1e-6)


@pytest.mark.parametrize("expert", ["gaussian", "student_t", "poisson", "gamma"])
def test_every_expert_family(expert):
    X, y = TRUE.sample(600, random_state=6)
    if expert == "poisson":
        y = np.random.default_rng(0).poisson(np.exp(0.3 * y / y.std()))
    elif expert == "gamma":
        y = np.exp(0.3 * y / y.std()) * np.random.default_rng(0).gamma(5.0, 0.2, size=len(y))
    est = MixtureOfExpertsRegressor(3, expert=expert, gate="gaussian", max_iter=100, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X, y)
    lb = est.lower_bounds_
    assert np.all(np.diff(lb) >= -1e-10 * np.abs(lb[1:]))
    assert est.gate_means_.shape == (3, 2) and np.isfinite(est.predict(X)).all()
    assert_allclose(est.predict_gate(X).sum(axis=1), 1.0)
    # the joint objective is the conditional one plus the gate's log p(x)
    _, marginal = naive_joint_log_lik_gate(est, X)
    assert_allclose(est.lower_bound_, est.score_samples(X, y).mean() + marginal.mean(), rtol=1e-9)


def naive_joint_log_lik_gate(est, X):
    a = naive_log_numerators(
        X, est.gate_weights_, est.gate_means_, est.gate_covariances_, est.gate_covariance_type
    )
    return a, logsumexp(a, axis=1)


def test_classifier():
    X, y = TRUE.sample(900, random_state=7)
    labels = np.where(y > np.median(y), "high", "low")
    clf = MixtureOfExpertsClassifier(3, gate="gaussian", gate_covariance_type="diag", random_state=0)
    clf.fit(X, labels)
    assert clf.score(X, labels) > 0.8
    assert clf.gate_covariances_.shape == (3, 2)
    assert np.all(np.diff(clf.lower_bounds_) >= -1e-10 * np.abs(clf.lower_bounds_[1:]))
    _, marginal = naive_joint_log_lik_gate(clf, X)
    # joint objective: conditional + log p(x) - the experts' penalty (the Gaussian gate has none)
    expected = clf.score_samples(X, labels).mean() + marginal.mean() - clf.experts_.penalty_value() / len(X)
    assert_allclose(clf.lower_bound_, expected, rtol=1e-9)


@pytest.mark.parametrize("cls", [MixtureOfExpertsRegressor, MixtureOfExpertsClassifier])
def test_integer_weights_equal_repetition(cls):
    # the marginal term is weighted like the conditional one: from equal starts,
    # weighting rows and repeating them give the same fit
    X, y = TRUE.sample(300, random_state=8)
    if cls is MixtureOfExpertsClassifier:
        y = np.where(y > np.median(y), "high", "low")
    w = np.random.default_rng(0).integers(0, 3, size=300)
    resp = np.random.default_rng(1).dirichlet(np.ones(3), size=300)
    kw = dict(gate="gaussian", tol=1e-10, max_iter=30)
    weighted = cls(3, init=resp, **kw)
    repeated = cls(3, init=np.repeat(resp, w, axis=0), **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        weighted.fit(X, y, sample_weight=w)
        repeated.fit(np.repeat(X, w, axis=0), np.repeat(y, w))
    assert_allclose(weighted.lower_bounds_, repeated.lower_bounds_, rtol=1e-8)
    assert_allclose(weighted.gate_covariances_, repeated.gate_covariances_, rtol=1e-7)


def test_warm_start_switching_gate_starts_afresh():
    X, y = TRUE.sample(400, random_state=9)
    est = MixtureOfExpertsRegressor(3, warm_start=True, random_state=0).fit(X, y)
    est.set_params(gate="gaussian").fit(X, y)
    assert est.gate_means_.shape == (3, 2)
    est.set_params(gate_covariance_type="diag").fit(X, y)
    assert est.gate_covariances_.shape == (3, 2)


# -- bad input -------------------------------------------------------------------------------------
def test_bad_input():
    X, y = TRUE.sample(100, random_state=10)
    with pytest.raises(ValueError, match="needs at least one gate feature"):
        MixtureOfExpertsRegressor(2, gate="gaussian", gate_features=[]).fit(X, y)
    with pytest.raises(ValueError, match="gate_covariance_type"):
        MixtureOfExpertsRegressor(2, gate="gaussian", gate_covariance_type="tied").fit(X, y)
    with pytest.raises(ValueError, match="covariance_type"):
        GaussianGate(2, covariance_type="tied")
    with pytest.raises(ValueError, match="reg_covar"):
        GaussianGate(2, reg_covar=-1.0)
    # a component on a single repeated row, without a floor
    Xd = np.vstack([X, np.repeat(X[:1], 5, axis=0)])
    yd = np.concatenate([y, np.repeat(y[:1], 5)])
    resp = np.zeros((len(Xd), 2))
    resp[:100, 0] = 1.0
    resp[100:, 1] = 1.0
    with pytest.raises(ValueError, match="increase reg_covar"):
        MixtureOfExpertsRegressor(2, gate="gaussian", reg_covar=0.0, init=resp).fit(Xd, yd)
    # the same with the default floor fits
    MixtureOfExpertsRegressor(2, gate="gaussian", init=resp, max_iter=5).fit(Xd, yd)
    est = MixtureOfExpertsRegressor(2, gate="gaussian", random_state=0).fit(X, y)
    with pytest.raises(AttributeError, match="gate_coef_ is not a parameter of gate='gaussian'"):
        _ = est.gate_coef_
    softmax = MixtureOfExpertsRegressor(2, random_state=0).fit(X, y)
    with pytest.raises(AttributeError, match="gate_means_ is not a parameter of gate='softmax'"):
        _ = softmax.gate_means_
    assert not hasattr(softmax, "gate_weights_")


# -- the fused pass (Gaussian gate, Gaussian experts) ----------------------------------------------
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("n", [700, 5000])  # one block, and several chunks
def test_fused_kernel_matches_numpy_twin(covariance_type, n):
    rng = np.random.default_rng(11)
    d, K = 3, 4
    gate = _gate_with(_random_params(covariance_type, K, d, rng), covariance_type)
    X = rng.normal(0, 2, size=(n, d))
    XgT = _design(X)
    XeT = _design(X[:, :2])
    y = rng.normal(size=n)
    coef = rng.normal(size=(K, 3))
    var = rng.uniform(0.2, 2.0, size=K)
    w = rng.uniform(size=n)
    w[::7] = 0.0
    args = (XgT, *gate.kernel_params(), XeT, y, coef, var, w)
    got = fused_gaussian_gate_gaussian(*args)
    ref = naive.fused_gaussian_gate_gaussian(*args)
    for a, b in zip(got[:3], ref[:3], strict=True):
        assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    for a, b in zip(got[3], ref[3], strict=True):
        assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    assert_allclose(got[4], ref[4], rtol=1e-10, atol=1e-12)
    for a, b in zip(got[5], ref[5], strict=True):
        assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    # the kernel's gate is the gate's own evaluation
    ev = gate.evaluate(XgT)
    assert_allclose(got[3][0], ev.log, rtol=1e-10, atol=1e-12)
    assert_allclose(got[3][2], ev.log_marginal, rtol=1e-10)
    # the M-step from the fused moments is the M-step from the responsibilities
    gate_b = _gate_with(gate.raw_params(_identity(d)), covariance_type)
    gate.propose(got[4])
    gate_b.m_step(XgT, got[0], w)
    assert_allclose(gate.covariances, gate_b.covariances, rtol=1e-10)
    assert_allclose(gate.means, gate_b.means, rtol=1e-10, atol=1e-12)
    assert not gate.pending


def _identity(d):
    return Scaling(np.zeros(d), np.ones(d), np.zeros(0), np.ones(0))


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_fused_and_generic_paths_give_the_same_fit(covariance_type, monkeypatch):
    X, y = TRUE.sample(3000, random_state=12)
    kw = dict(gate="gaussian", gate_covariance_type=covariance_type, n_init=1, init="kmeans", random_state=0)
    fused = MixtureOfExpertsRegressor(3, **kw).fit(X, y)
    assert ("gaussian", "gaussian") in _em.FUSED_PASSES
    monkeypatch.delitem(_em.FUSED_PASSES, ("gaussian", "gaussian"))
    generic = MixtureOfExpertsRegressor(3, **kw).fit(X, y)
    assert fused.n_iter_ == generic.n_iter_
    assert_allclose(fused.lower_bounds_, generic.lower_bounds_, rtol=1e-11)
    assert_allclose(fused.gate_covariances_, generic.gate_covariances_, rtol=1e-8)
    assert_allclose(fused.expert_coef_, generic.expert_coef_, rtol=1e-8, atol=1e-10)
