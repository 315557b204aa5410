"""solver="lbfgs", recorded trajectories (record_history, callback) and solver errors."""

import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning

from mixexp import MixtureOfExpertsClassifier, MixtureOfExpertsRegressor
from mixexp.experts import ExpertFamily, GaussianExperts, StudentTExperts
from mixexp.solvers import get_flat_params

N = 800  # at most one kernel block: the kernels run on one thread, so the tests stay fast


def _simulate(family, gate, n=N, seed=0):
    """Two well-separated experts in one covariate, from known parameters.

    Softmax gate: P(expert 1 | x) = sigmoid(2 x); constant gate: 0.4 / 0.6.
    """
    rng = np.random.default_rng(seed)
    x = rng.uniform(-2, 2, n)
    p1 = 1 / (1 + np.exp(-2 * x)) if gate == "softmax" else np.full(n, 0.6)
    z = rng.uniform(size=n) < p1
    if family in ("gaussian", "student_t"):
        noise = rng.standard_normal(n) if family == "gaussian" else rng.standard_t(4, n)
        y = np.where(z, 1 + 2 * x, -1 - x) + 0.5 * noise
    elif family == "poisson":
        y = rng.poisson(np.exp(np.where(z, 1 + 0.5 * x, 2 - 0.5 * x))).astype(float)
    elif family == "gamma":
        mu = np.exp(np.where(z, 0.5 + 0.5 * x, 1.5 - 0.5 * x))
        y = rng.gamma(5.0, mu / 5.0)
    else:
        logit = np.where(z, 2 * x, 1 - 2 * x)
        y = (rng.uniform(size=n) < 1 / (1 + np.exp(-logit))).astype(int)
    return x[:, None], y


def _estimator(family, **params):
    params = {"n_init": 1, "init": "kmeans", "random_state": 0, **params}
    if family == "classifier":
        return MixtureOfExpertsClassifier(2, **params)
    return MixtureOfExpertsRegressor(2, expert=family, **params)


@pytest.mark.parametrize("gate", ["softmax", "constant"])
@pytest.mark.parametrize("family", ["gaussian", "student_t", "poisson", "gamma"])
def test_lbfgs_reaches_the_em_optimum(family, gate):
    X, y = _simulate(family, gate)
    # tolerances far below the 1e-4 asked for: both runs end at the optimum
    em = _estimator(family, gate=gate, tol=1e-10, max_iter=5000).fit(X, y)
    lb = _estimator(family, gate=gate, solver="lbfgs", tol=1e-12, max_iter=5000).fit(X, y)
    assert em.converged_ and lb.converged_
    assert abs(lb.lower_bound_ - em.lower_bound_) < 1e-4
    # the same model: the mean log-likelihoods of the data agree too
    assert abs(lb.score_samples(X, y).mean() - em.score_samples(X, y).mean()) < 1e-3
    # L-BFGS never ends at a higher objective than its start, and the objective is recorded per iteration
    assert lb.lower_bounds_.shape == (lb.n_iter_ + 1,)
    assert lb.lower_bounds_[-1] >= lb.lower_bounds_[0]
    assert lb.lower_bound_ == lb.lower_bounds_[-1]


@pytest.mark.parametrize("gate", ["softmax", "constant"])
@pytest.mark.parametrize("seed", [0, 5])
def test_lbfgs_and_em_share_the_classifier_optima(gate, seed):
    # A mixture of two binary logistic experts is multimodal (with a constant gate it is
    # barely identifiable): from one start the two local solvers end at different optima
    # on 3 of 12 simulated data sets (seed 5 with the softmax gate and seed 0 with the
    # constant gate among them), either one the higher. What must hold is that they
    # maximise the same objective: each one's optimum is a fixed point of the other.
    X, y = _simulate("classifier", gate, seed=seed)
    em = _estimator("classifier", gate=gate, tol=1e-10, max_iter=5000).fit(X, y)
    lb = _estimator("classifier", gate=gate, solver="lbfgs", tol=1e-12, max_iter=5000).fit(X, y)
    assert em.converged_ and lb.converged_
    em_then_lb = clone(em).set_params(warm_start=True).fit(X, y)  # the first fit is the EM fit
    assert em_then_lb.lower_bound_ == em.lower_bound_
    em_then_lb.set_params(solver="lbfgs", tol=1e-12).fit(X, y)
    assert em_then_lb.converged_
    assert abs(em_then_lb.lower_bound_ - em.lower_bound_) < 1e-4
    lb_then_em = clone(lb).set_params(warm_start=True).fit(X, y)
    lb_then_em.set_params(solver="em", tol=1e-10).fit(X, y)
    assert abs(lb_then_em.lower_bound_ - lb.lower_bound_) < 1e-4


def test_lbfgs_is_deterministic():
    X, y = _simulate("gaussian", "softmax", seed=3)
    fits = [
        MixtureOfExpertsRegressor(2, solver="lbfgs", n_init=3, init_max_iter=3, random_state=7).fit(X, y)
        for _ in range(2)
    ]
    assert_array_equal(fits[0].expert_coef_, fits[1].expert_coef_)
    assert_array_equal(fits[0].gate_coef_, fits[1].gate_coef_)
    assert_array_equal(fits[0].lower_bounds_, fits[1].lower_bounds_)


def test_lbfgs_respects_the_variance_floor_and_df_bounds():
    X, y = _simulate("gaussian", "softmax", seed=4)
    # a floor of 0.5 var(y) is above both experts' noise variances (0.25 / var(y) < 0.1), so it binds
    est = _estimator("gaussian", solver="lbfgs", reg_covar=0.5).fit(X, y)
    floor = est.experts_.var_floor
    assert np.all(est.experts_.var >= floor * (1 - 1e-12))
    assert np.any(est.experts_.var <= floor * (1 + 1e-8))
    # Gaussian noise pushes the degrees of freedom to their upper bound
    X, y = _simulate("gaussian", "softmax", seed=5)
    est = _estimator(StudentTExperts(2, df_bounds=(1.0, 6.0)), solver="lbfgs").fit(X, y)
    assert np.all((est.df_ >= 1.0) & (est.df_ <= 6.0 * (1 + 1e-12)))
    assert np.any(est.df_ >= 6.0 * (1 - 1e-8))


@pytest.mark.parametrize("solver", ["em", "lbfgs"])
def test_record_history(solver):
    X, y = _simulate("gaussian", "softmax", seed=1)
    est = _estimator("gaussian", solver=solver, record_history=True, tol=1e-8).fit(X, y)
    theta, ll = est.history_["theta"], est.history_["log_likelihood"]
    n_params = est.n_parameters()
    assert theta.shape == (est.n_iter_ + 1, n_params)
    assert_array_equal(ll, est.lower_bounds_)
    # the last row is the fitted parameters
    assert_allclose(theta[-1], get_flat_params(est.gate_, est.experts_), rtol=1e-13, atol=1e-14)
    # both solvers never decrease the objective (EM: the EM inequality; L-BFGS: its line search)
    assert np.all(np.diff(ll) >= -1e-12 * np.abs(ll[:-1]))
    assert not np.allclose(theta[0], theta[-1])  # it moved
    # without record_history there is no history_ (and a refit removes it)
    est.set_params(record_history=False).fit(X, y)
    assert not hasattr(est, "history_")


@pytest.mark.parametrize("solver", ["em", "squarem", "lbfgs"])
def test_record_history_with_screening(solver):
    X, y = _simulate("gaussian", "softmax", seed=2)
    est = MixtureOfExpertsRegressor(
        2, solver=solver, n_init=3, init_max_iter=2, record_history=True, random_state=0, tol=1e-8
    ).fit(X, y)
    theta = est.history_["theta"]
    # the screened iterations of the best start and its continuation, one row per objective value
    assert theta.shape == (est.n_iter_ + 1, est.n_parameters())
    assert est.n_iter_ > 2
    assert_allclose(theta[-1], get_flat_params(est.gate_, est.experts_), rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize("solver", ["em", "squarem", "lbfgs"])
def test_callback_follows_every_iteration(solver):
    X, y = _simulate("poisson", "softmax", seed=1)
    seen = []

    def callback(est):
        seen.append((get_flat_params(est.gate_, est.experts_), est.gate_coef_.copy()))

    est = _estimator("poisson", solver=solver, record_history=True, callback=callback).fit(X, y)
    assert len(seen) == est.n_iter_
    # called at the parameters of iterations 1..n_iter, as recorded in history_
    assert_allclose(np.array([s[0] for s in seen]), est.history_["theta"][1:], rtol=1e-13, atol=1e-14)
    assert_allclose(seen[-1][1], est.gate_coef_)
    # with screening the callback follows the best start's continuation only
    seen.clear()
    est = MixtureOfExpertsRegressor(
        2, expert="poisson", solver=solver, n_init=3, init_max_iter=2, callback=callback, random_state=0
    ).fit(X, y)
    assert len(seen) == est.n_iter_ - 2


@pytest.mark.parametrize("solver", ["em", "squarem", "lbfgs"])
def test_callback_stop_iteration_stops_the_fit(solver):
    X, y = _simulate("gaussian", "softmax", seed=1)
    calls = []

    def stop_after_three(est):
        calls.append(1)
        if len(calls) == 3:
            raise StopIteration

    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)  # a requested stop does not warn
        est = _estimator("gaussian", solver=solver, callback=stop_after_three, tol=1e-12).fit(X, y)
    assert len(calls) == 3
    assert est.n_iter_ == 3
    assert not est.converged_
    assert est.lower_bounds_.shape == (4,)


def test_em_without_hook_is_unchanged():
    # the hook is optional: a fit without record_history or callback gives the same result
    X, y = _simulate("gaussian", "softmax", seed=6)
    plain = _estimator("gaussian").fit(X, y)
    recorded = _estimator("gaussian", record_history=True, callback=lambda est: None).fit(X, y)
    assert_array_equal(plain.lower_bounds_, recorded.lower_bounds_)
    assert_array_equal(plain.expert_coef_, recorded.expert_coef_)


def test_lbfgs_convergence_warning():
    X, y = _simulate("gaussian", "softmax", seed=1)
    with pytest.warns(ConvergenceWarning, match="L-BFGS run"):
        est = _estimator("gaussian", solver="lbfgs", max_iter=2, tol=0.0).fit(X, y)
    assert est.n_iter_ == 2 and not est.converged_


# -- errors -------------------------------------------------------------------------------


class _NoGradientFamily(ExpertFamily):
    """Gaussian experts without the gradient interface (EM only)."""

    standardize_y = True

    def __init__(self, n_experts, reg_covar=1e-6):
        super().__init__(n_experts, reg_covar)
        self._inner = GaussianExperts(n_experts, reg_covar)

    def initialize(self, XT, y, resp, sample_weight):
        self._inner.initialize(XT, y, resp, sample_weight)
        self.coef = self._inner.coef

    def log_prob(self, XT, y):
        return self._inner.log_prob(XT, y)

    def m_step(self, XT, y, resp, sample_weight, stats=None):
        self._inner.m_step(XT, y, resp, sample_weight)
        self.coef = self._inner.coef

    def mean(self, XT):
        return self._inner.mean(XT)

    def n_parameters(self):
        return self._inner.n_parameters()


def test_lbfgs_needs_the_gradient_interface():
    X, y = _simulate("gaussian", "softmax")
    _estimator(_NoGradientFamily).fit(X, y)  # EM is fine
    with pytest.raises(ValueError, match=r"solver='lbfgs'.*_NoGradientFamily\.get_flat.*flat_grad"):
        _estimator(_NoGradientFamily, solver="lbfgs").fit(X, y)
    with pytest.raises(ValueError, match=r"record_history=True.*_NoGradientFamily\.get_flat"):
        _estimator(_NoGradientFamily, record_history=True).fit(X, y)


def test_lbfgs_with_a_gate_that_models_x():
    from mixexp.gates import GATES

    if "gaussian" not in GATES:
        pytest.skip("no Gaussian gate in this build")
    X, y = _simulate("gaussian", "softmax")
    with pytest.raises(ValueError, match=r"solver='lbfgs'.*gate='gaussian'"):
        _estimator("gaussian", gate="gaussian", solver="lbfgs").fit(X, y)


def test_callback_needs_a_final_run():
    X, y = _simulate("gaussian", "softmax")
    est = MixtureOfExpertsRegressor(2, n_init=2, init_max_iter=None, callback=lambda e: None)
    with pytest.raises(ValueError, match="no single final run"):
        est.fit(X, y)


def test_unknown_solver():
    X, y = _simulate("gaussian", "softmax")
    with pytest.raises(ValueError, match="solver"):
        MixtureOfExpertsRegressor(2, solver="newton").fit(X, y)
