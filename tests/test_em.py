"""Statistical behaviour of the EM fit on data simulated from known models."""

import warnings

import numba
import numpy as np
import pytest
from numpy.testing import assert_allclose
from scipy.optimize import linear_sum_assignment
from sklearn.exceptions import ConvergenceWarning

from mixexp import MixtureOfExpertsRegressor
from mixexp.datasets import make_moe_regression

from . import _naive as naive

TRUE_GATE = np.array([[0.0, 0.0, 0.0], [0.5, 2.0, -1.0], [-0.3, -1.5, -2.0]])
TRUE_EXPERTS = np.array([[1.0, 2.0, -1.0], [-2.0, -1.0, 3.0], [4.0, 0.5, 1.5]])
TRUE_VAR = np.array([0.25, 0.5, 0.36])


def _align(fitted_coef, true_coef):
    """Permutation p with fitted_coef[p] closest to true_coef (Hungarian matching)."""
    cost = ((true_coef[:, None, :] - fitted_coef[None, :, :]) ** 2).sum(-1)
    _, perm = linear_sum_assignment(cost)
    return perm


def _oracle_standard_errors(X, labels, params):
    """Standard errors of the estimators that know the latent labels.

    Experts: least squares on each expert's rows, Cov = sigma^2 (X_k'X_k)^-1.
    Noise variances: sigma^2 sqrt(2 / n_k). Gate: multinomial logistic
    regression on the labels, inverse Fisher information at the truth (expert
    0 as reference). The MoE estimates lose some information to the unknown
    labels, so they are compared with a multiple of these.
    """
    n = len(X)
    X1 = np.column_stack([np.ones(n), X])
    K, p = params["expert_coef"].shape
    se_expert = np.empty((K, p))
    se_var = np.empty(K)
    for k in range(K):
        Xk = X1[labels == k]
        cov = params["noise_variance"][k] * np.linalg.inv(Xk.T @ Xk)
        se_expert[k] = np.sqrt(np.diag(cov))
        se_var[k] = params["noise_variance"][k] * np.sqrt(2.0 / len(Xk))
    logits = X1 @ params["gate_coef"].T
    g = np.exp(logits - logits.max(1, keepdims=True))
    g /= g.sum(1, keepdims=True)
    info = np.zeros(((K - 1) * p, (K - 1) * p))
    for k in range(1, K):
        for m in range(1, K):
            c = g[:, k] * ((k == m) - g[:, m])
            info[(k - 1) * p : k * p, (m - 1) * p : m * p] = (X1 * c[:, None]).T @ X1
    se_gate = np.vstack([np.zeros(p), np.sqrt(np.diag(np.linalg.inv(info))).reshape(K - 1, p)])
    return se_expert, se_var, se_gate


def test_parameter_recovery_three_experts():
    n = 20_000
    X, y, params = make_moe_regression(
        n, gate_coef=TRUE_GATE, expert_coef=TRUE_EXPERTS, noise_variance=TRUE_VAR,
        return_params=True, random_state=42,
    )
    moe = MixtureOfExpertsRegressor(3, n_init=3, gate_penalty=0.0, tol=1e-10, random_state=0).fit(X, y)
    assert moe.converged_
    perm = _align(moe.expert_coef_, TRUE_EXPERTS)
    expert_coef = moe.expert_coef_[perm]
    noise_var = moe.noise_variance_[perm]
    gate = moe.gate_coef_[perm]
    gate = gate - gate[0]  # the same reference expert as the truth
    se_e, se_v, se_g = _oracle_standard_errors(X, params["labels"], params)
    # 5 oracle standard errors, inflated by 1.5 for the information lost to the
    # unknown labels: a failure has probability far below 1e-4 per parameter.
    z = 5 * 1.5
    assert np.all(np.abs(expert_coef - TRUE_EXPERTS) < z * se_e)
    assert np.all(np.abs(noise_var - TRUE_VAR) < z * se_v)
    assert np.all(np.abs(gate - TRUE_GATE) <= z * se_g)
    # and the fit is at least as likely as the truth (the MLE lies above it)
    true_ll = naive.conditional_log_density(X, y, TRUE_GATE, TRUE_EXPERTS, TRUE_VAR).sum()
    assert moe.score_samples(X, y).sum() >= true_ll


def test_score_samples_matches_scipy_density():
    X, y = make_moe_regression(500, n_features=3, n_experts=3, random_state=3)
    moe = MixtureOfExpertsRegressor(3, random_state=0).fit(X, y)
    ref = naive.conditional_log_density(
        X, y, moe.gate_coef_, moe.expert_coef_, moe.noise_variance_
    )
    assert_allclose(moe.score_samples(X, y), ref, rtol=1e-12)
    resp = moe.predict_responsibilities(X, y)
    assert_allclose(resp.sum(axis=1), 1.0, rtol=1e-13)


def _monotone_path(moe, X, y, steps):
    bounds = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for _ in range(steps):
            moe.fit(X, y)
            bounds.append(moe.lower_bound_)
    return np.array(bounds)


@pytest.mark.parametrize("seed", range(12))
def test_monotone_log_likelihood(seed):
    """warm_start=True, max_iter=1: every EM step raises the objective."""
    rng = np.random.default_rng(seed)
    K = int(rng.integers(1, 5))
    d = int(rng.integers(1, 4))
    n = int(rng.integers(50, 600))
    X, y = make_moe_regression(n, n_features=d, n_experts=int(rng.integers(1, 4)), random_state=seed)
    penalty = [0.0, 1e-3, 1.0][seed % 3]
    init = ["kmeans", "random"][seed % 2]
    moe = MixtureOfExpertsRegressor(
        K, init=init, warm_start=True, max_iter=1, gate_penalty=penalty, random_state=seed
    )
    bounds = _monotone_path(moe, X, y, 40)
    slack = 1e-12 * np.maximum(1.0, np.abs(bounds[:-1]))
    assert np.all(np.diff(bounds) >= -slack), np.diff(bounds).min()
    # within one fit the recorded path is monotone too
    full = MixtureOfExpertsRegressor(K, init=init, gate_penalty=penalty, random_state=seed, max_iter=200)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        full.fit(X, y)
    lb = full.lower_bounds_
    assert np.all(np.diff(lb) >= -1e-12 * np.maximum(1.0, np.abs(lb[:-1])))
    assert_allclose(full.lower_bound_, lb[-1])


def test_lower_bound_is_mean_log_likelihood_without_penalty():
    X, y = make_moe_regression(400, random_state=1)
    moe = MixtureOfExpertsRegressor(3, gate_penalty=0.0, random_state=0).fit(X, y)
    assert_allclose(moe.lower_bound_, moe.score_samples(X, y).mean(), rtol=1e-12)
    pen = MixtureOfExpertsRegressor(3, gate_penalty=5.0, random_state=0).fit(X, y)
    # the penalty applies to the slopes of the standardised covariates
    slopes = pen.gate_coef_[:, 1:] * X.std(axis=0)
    expected = (pen.score_samples(X, y).sum() - 2.5 * np.sum(slopes**2)) / len(y)
    assert_allclose(pen.lower_bound_, expected, rtol=1e-12)


def test_same_random_state_same_fit():
    X, y = make_moe_regression(3000, random_state=5)
    a = MixtureOfExpertsRegressor(3, n_init=2, random_state=7).fit(X, y)
    b = MixtureOfExpertsRegressor(3, n_init=2, random_state=7).fit(X, y)
    for attr in ("gate_coef_", "expert_coef_", "noise_variance_", "lower_bounds_"):
        assert np.array_equal(getattr(a, attr), getattr(b, attr))


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs 2 Numba threads")
def test_same_fit_for_one_and_two_threads():
    X, y = make_moe_regression(30_000, random_state=5)  # several kernel blocks
    before = numba.get_num_threads()
    fits = []
    try:
        for threads in (1, 2):
            numba.set_num_threads(threads)
            fits.append(MixtureOfExpertsRegressor(3, random_state=7, max_iter=50).fit(X, y))
    finally:
        numba.set_num_threads(before)
    for attr in ("gate_coef_", "expert_coef_", "noise_variance_", "lower_bounds_"):
        assert np.array_equal(getattr(fits[0], attr), getattr(fits[1], attr))
