"""Analytic gradients of every gate and expert family against finite differences.

Each part's ``flat_grad`` is the gradient of its weighted complete-data
objective at fixed responsibilities, ``penalty_grad`` that of its penalty, and
:func:`mixexp.solvers.loglik_and_grad` the gradient of the observed
log-likelihood (Fisher's identity). All are compared with central
differences. Step h = 1e-5: the truncation error is ~h^2 |f'''| / 6 ~ 1e-10
|f| and the rounding error ~eps |f| / h ~ 1e-11 |f| (|f| is a few hundred
here), so 1e-6 of the gradient's scale (plus 1e-6 absolute) is a bound
several orders above both, and orders below any error in a formula.
"""

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from mixexp.experts import (
    ExpertFamily,
    GammaExperts,
    GaussianExperts,
    MultinomialExperts,
    PoissonExperts,
    StudentTExperts,
)
from mixexp.gates import ConstantGate, SoftmaxGate
from mixexp.solvers import (
    Design,
    e_step_pass,
    flat_bounds,
    get_flat_params,
    loglik_and_grad,
    missing_gradient_methods,
    set_flat_params,
)

K = 3
N = 150
FAMILIES = ["gaussian", "student_t", "poisson", "gamma", "multinomial"]
GATES = ["softmax", "constant"]
H = 1e-5


def _central_difference(f, theta):
    grad = np.empty_like(theta)
    for j in range(theta.size):
        up, down = theta.copy(), theta.copy()
        up[j] += H
        down[j] -= H
        grad[j] = (f(up) - f(down)) / (2 * H)
    return grad


def _assert_gradient(analytic, numeric):
    scale = max(1.0, float(np.max(np.abs(numeric))))
    assert_allclose(analytic, numeric, rtol=0, atol=1e-6 * scale + 1e-6)


def _make_experts(family, penalized):
    if family == "gaussian":
        return GaussianExperts(K)
    if family == "student_t":
        return StudentTExperts(K)
    if family == "poisson":
        return PoissonExperts(K)
    if family == "gamma":
        return GammaExperts(K)
    return MultinomialExperts(K, n_classes=3, penalty=0.4 if penalized else 0.0)


def _target(family, rng):
    if family == "gaussian":
        return rng.standard_normal(N)
    if family == "student_t":
        return rng.standard_t(3, N)
    if family == "poisson":
        return rng.poisson(3.0, N).astype(float)
    if family == "gamma":
        return rng.gamma(2.0, 1.5, N)
    return rng.integers(0, 3, N).astype(float)


def _problem(gate_name, family, penalized, seed=0):
    """Parts fitted once to random responsibilities, then moved off their M-step optimum."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((N, 2))
    XeT = np.ascontiguousarray(np.vstack([np.ones(N), X.T]))
    XgT = XeT if gate_name == "softmax" else XeT[:1].copy()
    y = _target(family, rng)
    w = rng.uniform(0.5, 2.0, N)
    resp = np.ascontiguousarray(rng.dirichlet(np.ones(K), N).T)
    penalty = 0.7 if penalized else 0.0
    gate = SoftmaxGate(K, penalty=penalty) if gate_name == "softmax" else ConstantGate(K, penalty=penalty)
    experts = _make_experts(family, penalized)
    experts.initialize(XeT, y, resp, w)
    gate.initialize(XgT, resp, w)
    theta = get_flat_params(gate, experts)
    theta = theta + 0.2 * rng.standard_normal(theta.size)
    set_flat_params(gate, experts, theta)
    return gate, experts, Design(XgT, XeT, y, w), resp


@pytest.mark.parametrize("gate_name", GATES)
@pytest.mark.parametrize("penalized", [False, True])
def test_gate_flat_grad(gate_name, penalized):
    gate, _, data, resp = _problem(gate_name, "gaussian", penalized)
    theta = gate.get_flat()

    def q(t):
        gate.set_flat(t)
        return float(np.sum(data.sample_weight * resp * gate.evaluate(data.XgT).log))

    def pen(t):
        gate.set_flat(t)
        return gate.penalty_value()

    numeric, numeric_pen = _central_difference(q, theta), _central_difference(pen, theta)
    gate.set_flat(theta)
    _assert_gradient(gate.flat_grad(data.XgT, resp, data.sample_weight), numeric)
    _assert_gradient(gate.penalty_grad(), numeric_pen)
    if penalized and gate_name == "softmax":
        assert np.abs(numeric_pen).max() > 0.01  # the penalty's gradient is exercised


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("penalized", [False, True])
def test_expert_flat_grad(family, penalized):
    _, experts, data, resp = _problem("softmax", family, penalized)
    theta = experts.get_flat()

    def q(t):
        experts.set_flat(t)
        return float(np.sum(data.sample_weight * resp * experts.log_prob(data.XeT, data.y)))

    def pen(t):
        experts.set_flat(t)
        return experts.penalty_value()

    numeric, numeric_pen = _central_difference(q, theta), _central_difference(pen, theta)
    experts.set_flat(theta)
    _assert_gradient(experts.flat_grad(data.XeT, data.y, resp, data.sample_weight), numeric)
    _assert_gradient(experts.penalty_grad(), numeric_pen)
    if penalized and family == "multinomial":
        assert np.abs(numeric_pen).max() > 0.01


@pytest.mark.parametrize("gate_name", GATES)
@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("penalized", [False, True])
def test_loglik_and_grad_matches_finite_differences(gate_name, family, penalized):
    gate, experts, data, _ = _problem(gate_name, family, penalized, seed=1)
    theta = get_flat_params(gate, experts)

    def observed(t, pen=penalized):
        set_flat_params(gate, experts, t)
        total = e_step_pass(gate, experts, data).total
        return total - (gate.penalty_value() + experts.penalty_value() if pen else 0.0)

    numeric = _central_difference(observed, theta)
    value, grad = loglik_and_grad(gate, experts, data, theta, penalized=penalized)
    assert value == pytest.approx(observed(theta), rel=1e-12)
    _assert_gradient(grad, numeric)
    # the parts are left at theta (up to the rounding of log(exp(.)))
    assert_allclose(get_flat_params(gate, experts), theta, rtol=1e-14, atol=1e-15)
    # without theta it evaluates at the current parameters
    value2, grad2 = loglik_and_grad(gate, experts, data, penalized=penalized)
    assert value2 == value
    assert_array_equal(grad2, grad)


@pytest.mark.parametrize("gate_name", GATES)
@pytest.mark.parametrize("family", FAMILIES)
def test_flat_round_trip_and_size(gate_name, family):
    gate, experts, data, _ = _problem(gate_name, family, penalized=True, seed=2)
    theta = get_flat_params(gate, experts)
    assert theta.size == gate.n_parameters() + experts.n_parameters()
    log_prob = experts.log_prob(data.XeT, data.y)
    log_gate = gate.evaluate(data.XgT).log
    set_flat_params(gate, experts, theta.copy())
    assert_allclose(get_flat_params(gate, experts), theta, rtol=1e-14, atol=1e-15)
    assert_allclose(experts.log_prob(data.XeT, data.y), log_prob, rtol=1e-14)
    assert_allclose(gate.evaluate(data.XgT).log, log_gate, rtol=1e-14)
    # a changed vector changes the model, and comes back unchanged
    other = theta + 0.01
    set_flat_params(gate, experts, other)
    assert_allclose(get_flat_params(gate, experts), other, rtol=1e-14)
    assert not np.allclose(experts.log_prob(data.XeT, data.y), log_prob)
    lower, upper = flat_bounds(gate, experts)
    assert lower.shape == upper.shape == theta.shape
    assert np.all(lower < upper)
    with pytest.raises(ValueError, match="theta must have shape"):
        set_flat_params(gate, experts, theta[:-1])


def test_flat_layouts():
    gate, experts, data, _ = _problem("softmax", "gaussian", False)
    flat = experts.get_flat()
    assert_array_equal(flat[: experts.coef.size], experts.coef.ravel())
    assert_allclose(flat[experts.coef.size :], np.log(experts.var))
    assert_array_equal(gate.get_flat(), gate.coef[1:].ravel())
    # the variance floor is a lower bound of the log-variances
    lower, upper = experts.flat_bounds()
    assert_allclose(lower[experts.coef.size :], np.log(experts.var_floor))
    assert np.all(np.isinf(lower[: experts.coef.size])) and np.all(np.isinf(upper))
    # Student-t: log df last, bounded by df_bounds; left out when df is fixed
    t = StudentTExperts(K, df_bounds=(1.0, 50.0))
    t.initialize(data.XeT, data.y, np.full((K, N), 1.0 / K), data.sample_weight)
    assert_allclose(t.get_flat()[-K:], np.log(t.df))
    assert_allclose(t.flat_bounds()[0][-K:], 0.0)
    assert_allclose(t.flat_bounds()[1][-K:], np.log(50.0))
    fixed = StudentTExperts(K, df_bounds=(4.0, 4.0))
    fixed.initialize(data.XeT, data.y, np.full((K, N), 1.0 / K), data.sample_weight)
    assert fixed.get_flat().size == fixed.n_parameters() == K * 3 + K
    fixed.set_flat(fixed.get_flat())
    assert_array_equal(fixed.df, 4.0)
    # Gamma: log shapes within [log 1e-8, log shape_max]
    _, gamma, _, _ = _problem("softmax", "gamma", False)
    assert_allclose(gamma.get_flat()[-K:], np.log(gamma.shape))
    assert_allclose(gamma.flat_bounds()[1][-K:], np.log(gamma.shape_max))
    # multinomial: the reference class is not in the vector and stays zero
    _, multi, _, _ = _problem("softmax", "multinomial", False)
    assert_array_equal(multi.get_flat(), multi.coef[:, 1:].ravel())
    multi.set_flat(multi.get_flat() + 1.0)
    assert_array_equal(multi.coef[:, 0], 0.0)


def test_missing_gradient_methods_names_them():
    class Bare(ExpertFamily):
        def log_prob(self, XT, y):
            return np.zeros((self.n_experts, XT.shape[1]))

    missing = missing_gradient_methods(SoftmaxGate(2), Bare(2))
    assert missing == ["Bare.get_flat", "Bare.set_flat", "Bare.flat_grad"]
    assert missing_gradient_methods(ConstantGate(2), GaussianExperts(2)) == []


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("penalized", [False, True])
def test_topk_gate_gradient_away_from_ties(family, penalized):
    # The top-k gate's likelihood jumps where a row's k-th and (k+1)-th logits tie (its
    # active set changes); elsewhere it is smooth. A central difference is compared only
    # where neither step changes any row's active set.
    from mixexp.gates import TopKSoftmaxGate

    _, experts, data, resp = _problem("softmax", family, penalized, seed=3)
    gate = TopKSoftmaxGate(K, top_k=2, penalty=0.7 if penalized else 0.0)
    gate.initialize(data.XgT, resp, data.sample_weight)
    theta = get_flat_params(gate, experts)

    def active(t):
        set_flat_params(gate, experts, t)
        return np.sort(gate.active_experts(data.XgT), axis=0)

    def observed(t):
        set_flat_params(gate, experts, t)
        total = e_step_pass(gate, experts, data).total
        return total - (gate.penalty_value() + experts.penalty_value() if penalized else 0.0)

    numeric = _central_difference(observed, theta)
    sets = active(theta)
    smooth = np.empty(theta.size, dtype=bool)
    for j in range(theta.size):
        up, down = theta.copy(), theta.copy()
        up[j] += H
        down[j] -= H
        smooth[j] = np.array_equal(active(up), sets) and np.array_equal(active(down), sets)
    assert smooth.mean() > 0.8  # the check covers most coordinates
    _, grad = loglik_and_grad(gate, experts, data, theta, penalized=penalized)
    _assert_gradient(grad[smooth], numeric[smooth])
