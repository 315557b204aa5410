"""Penalised gates and experts: L2, L1 and elastic net (issue 4, part 4).

The penalty of a coefficient block is ``alpha * (l1_ratio ||w||_1 + (1 - l1_ratio)
/ 2 ||w||^2)`` on the standardised slopes (intercepts free); see
mixexp/_penalties.py and docs/user_guide/penalties.rst.
"""

import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import ElasticNet

from mixexp import MixtureOfExpertsClassifier, MixtureOfExpertsRegressor
from mixexp._penalties import (
    elastic_net_gradient,
    elastic_net_penalty,
    enet_coordinate_descent,
    penalized_least_squares,
    prox_newton_direction,
    slope_mask,
    soft_threshold,
)
from mixexp.experts import GaussianExperts
from mixexp.gates import SoftmaxGate
from mixexp.gates._softmax import newton_direction, slope_penalty


def _softmax_rows(logits):
    g = np.exp(logits - logits.max(axis=1, keepdims=True))
    return g / g.sum(axis=1, keepdims=True)


def _simulate(n, gate_coef, expert_coef, sigma, rng, family="gaussian"):
    """Draw (X, y, z) from a softmax-gated MoE; X ~ N(0, I)."""
    d = gate_coef.shape[1] - 1
    X = rng.standard_normal((n, d))
    X1 = np.column_stack([np.ones(n), X])
    g = _softmax_rows(X1 @ gate_coef.T)
    z = (g.cumsum(axis=1) > rng.random(n)[:, None]).argmax(axis=1)
    eta = np.einsum("ij,ij->i", X1, expert_coef[z])
    if family == "gaussian":
        y = eta + sigma * rng.standard_normal(n)
    elif family == "student_t":
        y = eta + sigma * rng.standard_t(5, size=n)
    elif family == "poisson":
        y = rng.poisson(np.exp(eta)).astype(float)
    else:  # gamma, shape 4
        y = rng.gamma(4.0, np.exp(eta) / 4.0)
    return X, y, z


def _fit(est, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return est.fit(X, y)


def _assert_monotone(bounds):
    # rounding of a sum of n log-densities: a few eps relative to the objective
    slack = 1e-12 * np.maximum(1.0, np.abs(bounds[:-1]))
    assert np.all(np.diff(bounds) >= -slack), np.diff(bounds).min()


# -- the penalty maths ---------------------------------------------------------


def test_penalty_value_and_gradient():
    rng = np.random.default_rng(0)
    coef = rng.standard_normal((3, 4))
    coef[1, 2] = 0.0
    slopes = coef[:, 1:]
    for r in (0.0, 0.3, 1.0):
        expected = 2.5 * (r * np.abs(slopes).sum() + 0.5 * (1 - r) * (slopes**2).sum())
        assert elastic_net_penalty(coef, 2.5, r) == pytest.approx(expected, rel=1e-14)
        # no intercept: every column is penalised
        full = 2.5 * (r * np.abs(coef).sum() + 0.5 * (1 - r) * (coef**2).sum())
        assert elastic_net_penalty(coef, 2.5, r, intercept=False) == pytest.approx(full, rel=1e-14)
        grad = elastic_net_gradient(coef, 2.5, r)
        assert np.all(grad[:, 0] == 0.0)
        assert_allclose(grad[:, 1:], 2.5 * (r * np.sign(slopes) + (1 - r) * slopes), rtol=1e-14)
    # l1_ratio=0 is the ridge penalty by today's very expression (bitwise)
    assert slope_penalty(coef, 0.7) == 0.5 * 0.7 * float(np.sum(coef[:, 1:] ** 2))
    assert_allclose(soft_threshold(np.array([-3.0, -0.5, 0.0, 0.5, 2.0]), 1.0), [-2.0, 0, 0, 0, 1.0])
    assert_allclose(slope_mask(3, True), [0, 1, 1])


@pytest.mark.parametrize("seed", range(3))
def test_coordinate_descent_kkt(seed):
    """The minimiser of z'Az/2 - c'z + sum l1|z| satisfies the KKT conditions (to 1e-9)."""
    rng = np.random.default_rng(seed)
    m = 6
    B = rng.standard_normal((20, m))
    A = B.T @ B + 0.1 * np.eye(m)
    c = 3.0 * rng.standard_normal(m)
    l1 = np.full(m, 4.0)
    l1[0] = 0.0
    z = enet_coordinate_descent(A, c, l1, np.zeros(m))
    grad = A @ z - c
    nz = z != 0
    assert_allclose(grad[nz], -l1[nz] * np.sign(z[nz]), atol=1e-9)
    assert np.all(np.abs(grad[~nz]) <= l1[~nz] + 1e-9)
    assert 0 < nz.sum() < m  # a non-trivial pattern: some zeros, some not
    # from any start the objective never rises above the start's
    start = rng.standard_normal(m)

    def f(v):
        return 0.5 * v @ A @ v - c @ v + l1 @ np.abs(v)

    assert f(enet_coordinate_descent(A, c, l1, start, max_sweeps=1)) <= f(start)


def test_prox_newton_direction_tends_to_newton():
    """With a vanishing L1 share the proximal Newton step is the ridge Newton step."""
    rng = np.random.default_rng(1)
    K, p = 3, 4
    coef = np.vstack([np.zeros(p), rng.standard_normal((K - 1, p))])
    B = rng.standard_normal((50, (K - 1) * p))
    hess = B.T @ B
    grad = rng.standard_normal((K - 1, p))
    ridge, obj = newton_direction(coef, -10.0, grad, hess, 0.5)
    prox, obj_prox = newton_direction(coef, -10.0, grad, hess, 0.5, True, 1e-14)
    assert_allclose(prox, ridge, rtol=1e-8, atol=1e-10)
    assert obj_prox == pytest.approx(obj, rel=1e-12)
    # the ridge Newton direction solves (H + P) delta = g - P coef, P the penalty on slopes
    P = np.diag(np.tile(0.5 * slope_mask(p, True), K - 1))
    assert_allclose((hess + P) @ ridge.ravel(), (grad - 0.5 * coef[1:] * slope_mask(p, True)).ravel(),
                    rtol=1e-7, atol=1e-8)  # fmt: skip
    # a pure lasso step at a point whose model maximiser is zero is zero
    delta = prox_newton_direction(np.zeros(3), np.array([0.1, -0.2, 0.0]), np.eye(3), 1.0, 1.0, np.ones(3))
    assert np.all(delta == 0.0)


def test_penalized_least_squares_never_decreases():
    """The elastic-net ECM step of the Gaussian experts raises each penalised objective."""
    rng = np.random.default_rng(2)
    K, p, n = 2, 5, 80
    XT = np.vstack([np.ones(n), rng.standard_normal((p - 1, n))])
    y = rng.standard_normal(n)
    resp = rng.dirichlet(np.ones(K), size=n).T
    a = resp
    gram = np.einsum("kn,pn,qn->kpq", a, XT, XT)
    xy = np.einsum("kn,pn,n->kp", a, XT, y)
    yy = a @ y**2
    nk = a.sum(axis=1)
    coef = rng.standard_normal((K, p))
    var = np.array([0.7, 1.3])

    def objective(b, s2):
        # the penalty is on b / s (Städler, Bühlmann & van de Geer 2010)
        rss = yy - 2 * (b * xy).sum(1) + np.einsum("kp,kpq,kq->k", b, gram, b)
        pen = np.array([elastic_net_penalty(bk / np.sqrt(v), 30.0, 0.6) for bk, v in zip(b, s2, strict=True)])
        return -0.5 * nk * np.log(2 * np.pi * s2) - rss / (2 * s2) - pen

    new_coef, new_var = penalized_least_squares(gram, xy, yy, nk, 1e-6, coef, var, 30.0, 0.6, True)
    assert np.all(objective(new_coef, new_var) >= objective(coef, var))
    assert np.any(new_coef[:, 1:] == 0.0)  # the L1 part sets some slopes exactly to zero
    # each half-step is a maximisation: the variance maximises the objective at the new b
    for factor in (0.9, 1.1):
        assert np.all(objective(new_coef, new_var) >= objective(new_coef, factor * new_var))
    # and the step's b is the maximiser at the old variance (a second step from it does not move b)
    again, _ = penalized_least_squares(gram, xy, yy, nk, 1e-6, new_coef, var, 30.0, 0.6, True)
    assert_allclose(again, new_coef, atol=1e-10)


# -- l1_ratio = 0 is today's L2 -----------------------------------------------------


def test_l1_ratio_zero_reproduces_l2_fit():
    rng = np.random.default_rng(3)
    gate = np.array([[0, 0, 0], [0.5, 2.0, -1.0]])
    experts = np.array([[1.0, 2.0, -1.0], [-2.0, -1.0, 3.0]])
    X, y, _ = _simulate(300, gate, experts, 0.5, rng)
    kw = dict(n_init=1, init="kmeans", random_state=0, gate_penalty=0.5)
    base = _fit(MixtureOfExpertsRegressor(2, **kw), X, y)
    zero = _fit(MixtureOfExpertsRegressor(2, gate_l1_ratio=0.0, expert_l1_ratio=0.0, **kw), X, y)
    assert_allclose(zero.gate_coef_, base.gate_coef_, rtol=1e-12, atol=1e-12)
    assert_allclose(zero.expert_coef_, base.expert_coef_, rtol=1e-12, atol=1e-12)
    assert_allclose(zero.lower_bounds_, base.lower_bounds_, rtol=1e-12)
    # an expert_l1_ratio without expert_penalty changes nothing either
    other = _fit(MixtureOfExpertsRegressor(2, expert_l1_ratio=0.7, **kw), X, y)
    assert_allclose(other.expert_coef_, base.expert_coef_, rtol=1e-12, atol=1e-12)
    # the classifier: its ridge expert penalty with l1_ratio=0 is unchanged
    labels = (y > np.median(y)).astype(int)
    kwc = dict(n_init=1, init="kmeans", random_state=0, expert_penalty=0.1)
    c0 = _fit(MixtureOfExpertsClassifier(2, **kwc), X, labels)
    c1 = _fit(MixtureOfExpertsClassifier(2, expert_l1_ratio=0.0, gate_l1_ratio=0.0, **kwc), X, labels)
    assert_allclose(c1.expert_coef_, c0.expert_coef_, rtol=1e-12, atol=1e-12)
    assert_allclose(c1.lower_bounds_, c0.lower_bounds_, rtol=1e-12)


def test_vanishing_l1_ratio_tends_to_ridge_fit():
    """The proximal path with l1_ratio -> 0 gives the ridge path's fit (prox Newton = Newton)."""
    rng = np.random.default_rng(4)
    gate = np.array([[0, 0, 0], [0.5, 2.0, -1.0]])
    experts = np.array([[1.0, 2.0, -1.0], [-2.0, -1.0, 3.0]])
    X, y, _ = _simulate(300, gate, experts, 0.5, rng)
    kw = dict(n_init=1, init="kmeans", random_state=0, gate_penalty=2.0, expert_penalty=5.0, tol=1e-10)
    ridge = _fit(MixtureOfExpertsRegressor(2, **kw), X, y)
    tiny = _fit(MixtureOfExpertsRegressor(2, gate_l1_ratio=1e-12, expert_l1_ratio=1e-12, **kw), X, y)
    assert_allclose(tiny.gate_coef_, ridge.gate_coef_, rtol=1e-5, atol=1e-6)
    assert_allclose(tiny.expert_coef_, ridge.expert_coef_, rtol=1e-5, atol=1e-6)


# -- the penalised objective never decreases -------------------------------------

FAMILY_TRUTH = {
    "gaussian": (np.array([[1.0, 2.0, -1.0, 0.0], [-2.0, -1.0, 3.0, 0.0]]), 0.5),
    "student_t": (np.array([[1.0, 2.0, -1.0, 0.0], [-2.0, -1.0, 3.0, 0.0]]), 0.5),
    "poisson": (np.array([[1.0, 0.5, -0.3, 0.0], [2.0, -0.4, 0.3, 0.0]]), None),
    "gamma": (np.array([[1.0, 0.5, -0.3, 0.0], [2.0, -0.4, 0.3, 0.0]]), None),
}


@pytest.mark.parametrize("family", list(FAMILY_TRUTH))
@pytest.mark.parametrize("l1_ratio", [1.0, 0.5])
def test_penalised_objective_never_decreases(family, l1_ratio):
    """Gate and expert elastic nets for every family: lower_bounds_ is monotone.

    Gaussian experts use the fused softmax/Gaussian pass (the gate's proximal
    Newton step is proposed and checked by the next pass); the other families
    the unfused path (the gate's m_step halves its own step).
    """
    rng = np.random.default_rng(5)
    gate = np.array([[0, 0, 0, 0], [0.3, 2.0, 0.0, -1.0]])
    experts, sigma = FAMILY_TRUTH[family]
    X, y, _ = _simulate(400, gate, experts, sigma, rng, family)
    est = MixtureOfExpertsRegressor(
        2, expert=family, n_init=1, init="kmeans", random_state=0, max_iter=150, tol=1e-10,
        gate_penalty=15.0, gate_l1_ratio=l1_ratio, expert_penalty=15.0, expert_l1_ratio=l1_ratio,
    )  # fmt: skip
    _fit(est, X, y)
    _assert_monotone(est.lower_bounds_)
    assert est.n_iter_ > 3
    # the objective is the penalised log-likelihood with the elastic-net penalties
    gate_pen = elastic_net_penalty(est.gate_.coef, 15.0, l1_ratio)
    phi = est.experts_.coef
    if family in ("gaussian", "student_t"):  # location-scale families penalise b / sigma
        phi = phi / np.sqrt(est.experts_.var)[:, None]
    expert_pen = elastic_net_penalty(phi, 15.0, l1_ratio)
    assert est.gate_.penalty_value() == pytest.approx(gate_pen, rel=1e-14)
    assert est.experts_.penalty_value() == pytest.approx(expert_pen, rel=1e-14)
    total = est.score_samples(X, y).sum() - gate_pen - expert_pen
    assert est.lower_bound_ == pytest.approx(total / len(y), rel=1e-9)


@pytest.mark.parametrize("l1_ratio", [1.0, 0.5])
def test_classifier_penalised_objective_never_decreases(l1_ratio):
    """The classifier's fused softmax/multinomial pass with proximal Newton steps on both parts."""
    # two logistic experts over 3 classes, gated by x0
    rng = np.random.default_rng(6)
    n = 600
    X = rng.standard_normal((n, 4))
    z = rng.random(n) < 1 / (1 + np.exp(-3 * X[:, 0]))
    sign = np.where(z, 1.0, -1.0)
    logits = np.column_stack([np.zeros(n), 3 * sign * X[:, 1], -3 * sign * X[:, 2]])
    g = _softmax_rows(logits)
    labels = (g.cumsum(axis=1) > rng.random(n)[:, None]).argmax(axis=1)
    est = MixtureOfExpertsClassifier(
        2, n_init=1, init="kmeans", random_state=0, max_iter=150, tol=1e-10,
        gate_penalty=10.0, gate_l1_ratio=l1_ratio, expert_penalty=10.0, expert_l1_ratio=l1_ratio,
    )  # fmt: skip
    _fit(est, X, labels)
    _assert_monotone(est.lower_bounds_)
    assert est.n_iter_ > 3
    pen = sum(elastic_net_penalty(c, 10.0, l1_ratio) for c in est.experts_.coef)
    assert est.experts_.penalty_value() == pytest.approx(pen, rel=1e-14)


def test_unfused_gate_m_step_prox_newton_ascends():
    """SoftmaxGate.m_step with an L1 penalty raises its penalised objective at every call."""
    rng = np.random.default_rng(7)
    n, p, K = 300, 4, 3
    XT = np.vstack([np.ones(n), rng.standard_normal((p - 1, n))])
    resp = rng.dirichlet(np.ones(K), size=n).T
    w = np.ones(n)
    gate = SoftmaxGate(K, penalty=8.0, l1_ratio=1.0)
    gate.initialize(XT, resp, w)

    def objective():
        log = gate.evaluate(XT).log
        return float((resp * log * w).sum()) - gate.penalty_value()

    values = [objective()]
    for _ in range(15):
        gate.m_step(XT, resp, w)
        values.append(objective())
    _assert_monotone(np.array(values))
    assert values[-1] > values[0]


# -- recovery of sparse truths ----------------------------------------------------------


def test_l1_gate_recovers_sparse_gate():
    """Lasso on the gate recovers which gate slopes are exactly zero.

    The truth: 3 experts, 6 covariates, the gate's rows (expert 0 the
    reference) use covariates {0} and {1} only. Choice of alpha: at the truth
    the score of a gate slope w_kj is S = sum_i (r_ik - g_k(x_i)) x_ij with
    E[r_ik | x] = g_k(x), so Var(S) <= n E[g_k(1 - g_k) x_j^2] <= n / 4 (x_j
    standardised): sd(S) <= sqrt(n) / 2. A slope stays exactly zero when |S| <=
    alpha (the lasso's KKT condition), so alpha = 4 sqrt(n) is 8 standard
    deviations: the 14 true zeros survive with overwhelming probability
    (union bound ~1e-14). The shrinkage of a non-zero slope is about alpha /
    (n I) with I >= 0.05 the per-row Fisher information of a slope here, i.e.
    < 1.3 on slopes of 3 at n = 4000, so the non-zero slopes stay clearly
    non-zero. The starts are the true labels, so the experts keep their
    labels and the reference row is the true expert 0.
    """
    rng = np.random.default_rng(8)
    n, d = 4000, 6
    gate = np.zeros((3, d + 1))
    gate[1, [0, 1]] = [0.3, 3.0]
    gate[2, [0, 2]] = [-0.3, 3.0]
    experts = np.zeros((3, d + 1))
    experts[:, 0] = [-4.0, 0.0, 4.0]
    experts[:, 1] = [1.0, -1.0, 2.0]
    X, y, z = _simulate(n, gate, experts, 0.5, rng)
    alpha = 4.0 * np.sqrt(n)
    est = MixtureOfExpertsRegressor(
        3, init=np.eye(3)[z], gate_penalty=alpha, gate_l1_ratio=1.0, tol=1e-9, max_iter=300
    )
    _fit(est, X, y)
    slopes = est.gate_coef_[1:, 1:]
    truth = gate[1:, 1:] != 0
    assert np.array_equal(slopes != 0, truth), slopes
    assert np.all(np.abs(slopes[truth]) > 1.0)
    # the ridge gate (l1_ratio=0) at the same alpha has no exact zeros: the zeros come from the L1 term
    ridge = _fit(MixtureOfExpertsRegressor(3, init=np.eye(3)[z], gate_penalty=alpha, tol=1e-9), X, y)
    assert np.all(ridge.gate_coef_[1:, 1:] != 0)


def test_l1_experts_recover_sparse_coefficients():
    """Lasso on Gaussian experts recovers their zero pattern.

    Choice of alpha: the penalty is on phi = b / s (s the noise sd), so the
    coefficient step is the lasso min ||y - X b||^2 / 2 + s alpha ||b||_1 (on
    the standardised scale, rows weighted by r_ik): a slope stays zero while
    |sum_i r_ik x_ij e_i| / s <= alpha. At the truth that sum over s has sd
    sqrt(n_k) <= sqrt(n) (x standardised), whatever the scale of y, so
    alpha = 4 sqrt(n) puts the KKT bound 4 sds away for every true zero. The
    shrinkage of a non-zero slope is about alpha s / n_k, i.e. 4 sqrt(n)
    sigma / n_k ~ 0.1 on the raw scale here (n_k ~ n / 3), far below the
    slopes of 1.5 to 2.5 (checked precisely below).
    """
    rng = np.random.default_rng(9)
    n, d, sigma = 3000, 5, 0.5
    gate = np.zeros((3, d + 1))
    gate[1, [0, 1]] = [0.2, 2.0]
    gate[2, [0, 2]] = [-0.2, 2.0]
    experts = np.zeros((3, d + 1))
    experts[:, 0] = [-4.0, 0.0, 4.0]
    experts[0, [1, 4]] = [2.0, -1.5]
    experts[1, 2] = 2.5
    experts[2, [3, 5]] = [1.5, -2.0]
    X, y, z = _simulate(n, gate, experts, sigma, rng)
    alpha = 4.0 * np.sqrt(n)
    est = MixtureOfExpertsRegressor(
        3, init=np.eye(3)[z], expert_penalty=alpha, expert_l1_ratio=1.0, tol=1e-9, max_iter=300
    )
    _fit(est, X, y)
    slopes = est.expert_coef_[:, 1:]
    truth = experts[:, 1:] != 0
    assert np.array_equal(slopes != 0, truth), slopes
    # On the raw scale the lasso step is min ||y - X b||^2 / 2 + s_k alpha sum_j sd(x_j) |b_j| (s_k the
    # fitted noise sd), so on the true support S the non-zero slopes are the least-squares ones minus
    # the bias 4 sqrt(n) s_k G_S^-1 (sd(x) sign(b))_S, G_S the centred Gram of the expert's rows (the
    # gate narrows each expert's x, so this is larger than the 4 sqrt(n) sigma / n_k above). The fitted
    # slopes keep their signs and are shrunk by this bias, up to a factor 2 (the shrinkage inflates the
    # residuals, hence s_k and the overlap of the experts, which the linearised bias ignores) and
    # 5 standard errors sigma sqrt(diag G_S^-1) of the oracle fit.
    xs = X.std(axis=0)
    for k in range(3):
        S = np.flatnonzero(truth[k])
        Xk = X[z == k][:, S]
        Xk = Xk - Xk.mean(axis=0)
        Ginv = np.linalg.inv(Xk.T @ Xk)
        s = np.sqrt(est.noise_variance_[k])
        bias = 4.0 * np.sqrt(n) * s * Ginv @ (xs[S] * np.sign(experts[k, 1 + S]))
        se = sigma * np.sqrt(np.diag(Ginv))
        shrink = (experts[k, 1 + S] - slopes[k, S]) * np.sign(experts[k, 1 + S])
        assert np.all(np.sign(slopes[k, S]) == np.sign(experts[k, 1 + S]))
        assert np.all(shrink >= np.abs(bias) / 2 - 5 * se), (k, slopes[k, S], bias)
        assert np.all(shrink <= 2 * np.abs(bias) + 5 * se), (k, slopes[k, S], bias)


@pytest.mark.parametrize("family", ["gaussian", "poisson"])
def test_large_alpha_zeros_all_slopes(family):
    rng = np.random.default_rng(10)
    gate = np.array([[0, 0, 0, 0], [0.3, 2.0, 0.0, -1.0]])
    experts, sigma = FAMILY_TRUTH[family]
    X, y, _ = _simulate(300, gate, experts, sigma, rng, family)
    est = MixtureOfExpertsRegressor(
        2, expert=family, n_init=1, init="kmeans", random_state=0,
        gate_penalty=1e6, gate_l1_ratio=1.0, expert_penalty=1e6, expert_l1_ratio=1.0,
    )  # fmt: skip
    _fit(est, X, y)
    assert np.all(est.gate_coef_[:, 1:] == 0.0)
    assert np.all(est.expert_coef_[:, 1:] == 0.0)
    assert np.any(est.expert_coef_[:, 0] != 0.0)  # intercepts are free
    clf = MixtureOfExpertsClassifier(
        2, n_init=1, init="kmeans", random_state=0, expert_penalty=1e6, expert_l1_ratio=1.0,
        gate_penalty=1e6, gate_l1_ratio=1.0,
    )  # fmt: skip
    _fit(clf, X, (y > np.median(y)).astype(int))
    assert np.all(clf.expert_coef_[:, :, 1:] == 0.0)
    assert np.all(clf.gate_coef_[:, 1:] == 0.0)


# -- one expert: the weighted elastic net of scikit-learn ------------------------------------


@pytest.mark.parametrize("l1_ratio", [1.0, 0.5, 0.0])
def test_one_gaussian_expert_is_sklearn_elastic_net(l1_ratio):
    """One expert with a constant gate: the penalised fit is sklearn's ElasticNet.

    The penalty is alpha P(b / s) (rho = l1_ratio). At convergence b maximises
    -||y - X b||^2 / (2 s^2) - alpha (rho ||b||_1 / s + (1 - rho) ||b||^2 / (2 s^2))
    on the standardised X and y, i.e. minimises ||y - X b||^2 / (2n) + (alpha s
    rho / n) ||b||_1 + (alpha (1 - rho) / n) ||b||^2 / 2. That is sklearn's
    ElasticNet, ||y - Xb||^2 / (2n) + a r ||b||_1 + a (1 - r) ||b||^2 / 2, with
    a r = alpha s rho / n and a (1 - r) = alpha (1 - rho) / n, s the fitted
    internal noise sd (its intercept is unpenalised too). Both solvers run to
    1e-14, so they agree to ~1e-6 or better.
    """
    rng = np.random.default_rng(11)
    n, d = 300, 6
    X = rng.standard_normal((n, d)) * [1, 2, 3, 0.5, 1, 1] + 5.0
    y = 2 + X @ np.array([1.5, 0, -2, 0, 0.3, 0]) + rng.standard_normal(n)
    # 3 sds of the score of a null slope over s, sqrt(n) (see the sparse-experts test)
    alpha = 3.0 * np.sqrt(n)
    est = MixtureOfExpertsRegressor(
        1, gate="constant", expert_penalty=alpha, expert_l1_ratio=l1_ratio, tol=1e-14, max_iter=10_000
    )
    _fit(est, X, y)
    assert est.converged_
    _, XeT = est._design(X)
    ys = est._scaled_target(y)
    s2 = est.experts_.var[0]
    s = np.sqrt(s2)
    l1_part, l2_part = alpha * s * l1_ratio / n, alpha * (1 - l1_ratio) / n
    sk = ElasticNet(alpha=l1_part + l2_part, l1_ratio=l1_part / (l1_part + l2_part), tol=1e-14,
                    max_iter=100_000).fit(XeT[1:].T, ys)  # fmt: skip
    coef = est.experts_.coef[0]
    assert_allclose(coef[1:], sk.coef_, atol=1e-6)
    assert coef[0] == pytest.approx(sk.intercept_, abs=1e-6)
    # the KKT conditions of the penalised likelihood itself
    resid = ys - coef @ XeT
    grad = XeT[1:] @ resid / s2  # d loglik / d slopes
    b = coef[1:]
    nz = b != 0
    ridge = alpha * (1 - l1_ratio) * b / s2
    assert_allclose(grad[nz] - ridge[nz], alpha * l1_ratio * np.sign(b[nz]) / s, atol=1e-6 * alpha)
    assert np.all(np.abs(grad[~nz]) <= alpha * l1_ratio / s * (1 + 1e-8))
    if l1_ratio == 1.0:
        assert (~nz).sum() >= 1  # the lasso zeroes at least one of the three null covariates
    # and in the noise sd: d/ds [-n log s - RSS / (2 s^2) - P(b / s)] = 0
    rss = resid @ resid
    d_s = -n / s + rss / s**3 + alpha * (l1_ratio * np.abs(b).sum() / s**2 + (1 - l1_ratio) * (b @ b) / s**3)
    assert abs(d_s) <= 1e-6 * n / s


# -- parts and bad input ------------------------------------------------------------------


def test_penalty_reaches_every_family():
    for family in ("gaussian", "student_t", "poisson", "gamma"):
        experts = MixtureOfExpertsRegressor(
            expert=family, expert_penalty=3.0, expert_l1_ratio=0.25, fit_intercept=False
        )._make_experts()
        assert (experts.penalty, experts.l1_ratio, experts.intercept) == (3.0, 0.25, False)
    plain = MixtureOfExpertsRegressor()._make_experts()
    assert plain.penalty == 0.0 and plain.penalty_value() == 0.0
    gate = MixtureOfExpertsClassifier(gate_l1_ratio=0.5)._make_gate()
    assert gate.l1_ratio == 0.5
    # a configured instance gets the estimator's penalty
    inst = MixtureOfExpertsRegressor(expert=GaussianExperts(2), expert_penalty=2.0)._make_experts()
    assert inst.penalty == 2.0


def test_penalty_grad_is_subgradient_with_l1():
    experts = GaussianExperts(2, penalty=2.0, l1_ratio=0.5)
    experts.coef = np.array([[1.0, -2.0, 0.0], [0.5, 0.0, 3.0]])
    experts.var = np.array([1.0, 2.0])
    grad = experts.penalty_grad()
    # P = 2 (0.5 ||phi||_1 + 0.25 ||phi||^2), phi = b / sd: d/db = 2 (0.5 sign(b) / sd + 0.5 b / sd^2)
    sd = np.sqrt(experts.var)[:, None]
    expected = 2.0 * (0.5 * np.sign(experts.coef) / sd + 0.5 * experts.coef / sd**2)
    expected[:, 0] = 0.0
    assert_allclose(grad[:6], expected.ravel())
    # d/d log var: phi scales as exp(-log var / 2)
    phi = experts.coef[:, 1:] / sd
    expected_v = -0.5 * 2.0 * (0.5 * np.abs(phi).sum(axis=1) + 0.5 * (phi**2).sum(axis=1))
    assert_allclose(grad[6:], expected_v)


def test_bad_input():
    X = np.random.default_rng(0).standard_normal((50, 2))
    y = X[:, 0] + 0.1
    for kw in (
        {"gate_l1_ratio": 1.5},
        {"gate_l1_ratio": -0.1},
        {"expert_l1_ratio": 2.0},
        {"expert_penalty": -1.0},
    ):
        with pytest.raises(ValueError, match="l1_ratio|expert_penalty"):
            MixtureOfExpertsRegressor(**kw).fit(X, y)
    with pytest.raises(ValueError, match="expert_l1_ratio"):
        MixtureOfExpertsClassifier(expert_l1_ratio=-1).fit(X, (y > 0).astype(int))
    with pytest.raises(ValueError, match="solver='lbfgs'.*gate_l1_ratio"):
        MixtureOfExpertsRegressor(solver="lbfgs", gate_l1_ratio=0.5, n_init=1).fit(X, y)
    with pytest.raises(ValueError, match="solver='lbfgs'.*expert_l1_ratio"):
        MixtureOfExpertsRegressor(solver="lbfgs", expert_penalty=1.0, expert_l1_ratio=1.0, n_init=1).fit(X, y)
    with pytest.raises(ValueError, match="solver='lbfgs'.*expert_l1_ratio"):
        MixtureOfExpertsClassifier(solver="lbfgs", expert_l1_ratio=1.0, n_init=1).fit(X, (y > 0).astype(int))
    # an L2-only penalty is fine with L-BFGS
    _fit(MixtureOfExpertsRegressor(solver="lbfgs", expert_penalty=1.0, n_init=1, max_iter=20), X, y)

    class NoPenalty(GaussianExperts):
        def __init__(self, n_experts, reg_covar=1e-6):
            super().__init__(n_experts, reg_covar)

    with pytest.raises(ValueError, match="accepts penalty"):
        MixtureOfExpertsRegressor(expert=NoPenalty, expert_penalty=1.0).fit(X, y)


@pytest.mark.parametrize("family", ["gaussian", "student_t", "poisson", "gamma"])
@pytest.mark.parametrize("l1_ratio", [0.0, 0.5])
def test_penalty_grad_matches_finite_differences(family, l1_ratio):
    """Each family's penalty_grad is the derivative of penalty_value along get_flat (no zero slopes)."""
    rng = np.random.default_rng(12)
    X, y, _ = _simulate(200, np.array([[0, 0, 0], [0.2, 1.0, -1.0]]), FAMILY_TRUTH[family][0][:, :3],
                        FAMILY_TRUTH[family][1], rng, family)  # fmt: skip
    est = MixtureOfExpertsRegressor(2, expert=family, expert_penalty=3.0, expert_l1_ratio=l1_ratio, n_init=1,
                                    init="kmeans", max_iter=5, random_state=0)  # fmt: skip
    experts = _fit(est, X, y).experts_
    theta = experts.get_flat()
    grad = experts.penalty_grad()
    h = 1e-6
    for j in range(theta.size):
        step = np.zeros_like(theta)
        step[j] = h
        experts.set_flat(theta + step)
        up = experts.penalty_value()
        experts.set_flat(theta - step)
        down = experts.penalty_value()
        # central differences of a quadratic-plus-|.| function away from 0: exact up to rounding
        assert (up - down) / (2 * h) == pytest.approx(grad[j], abs=1e-6), j
    experts.set_flat(theta)
