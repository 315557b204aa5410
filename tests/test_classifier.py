"""MixtureOfExpertsClassifier, its multinomial logistic experts and their Numba kernels."""

import pickle
import re
import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from scipy import special
from scipy.optimize import linear_sum_assignment
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from mixexp import MixtureOfExpertsClassifier
from mixexp import _kernels as kernels
from mixexp._kernels._kernels import BLOCK, MAX_CHUNKS
from mixexp._scaling import Scaling
from mixexp.experts import MultinomialExperts
from mixexp.experts._multinomial import DeferredStats
from mixexp.gates import SoftmaxGate
from mixexp.solvers import _em

from . import _naive as naive

RTOL = 1e-12

#: A 2-expert model on two covariates (intercept first): gate, then binary and
#: 3-class experts (class 0 the reference, its row zero).
GATE = np.array([[0.0, 0.0, 0.0], [0.0, 3.0, -2.0]])
BINARY = np.array([[[0, 0, 0], [1.0, 3.0, -1.0]], [[0, 0, 0], [-1.0, -2.0, 2.5]]])
THREE = np.array(
    [[[0, 0, 0], [1.0, 3.0, -1.0], [-0.5, 1.0, 2.0]], [[0, 0, 0], [-1.0, -2.0, 2.5], [0.5, -3.0, 0.0]]]
)


def make_data(n, gate=GATE, experts=BINARY, seed=0):
    """(X, y, z): standard normal X, class indices y and expert labels z from the model."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, gate.shape[1] - 1))
    X1 = np.column_stack([np.ones(n), X])
    g = special.softmax(X1 @ gate.T, axis=1)
    z = (rng.uniform(size=n)[:, None] > np.cumsum(g, axis=1)).sum(axis=1)
    p = special.softmax(np.einsum("ncp,np->nc", experts[z], X1), axis=1)
    y = (rng.uniform(size=n)[:, None] > np.cumsum(p, axis=1)).sum(axis=1)
    return X, y, z


def _fit(X, y, sample_weight=None, **params):
    params = {"n_experts": 2, "random_state": 0, **params}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return MixtureOfExpertsClassifier(**params).fit(X, y, sample_weight=sample_weight)


# -- kernels against their numpy twins ------------------------------------------------------------


def _problem(n, K, C, p, seed=0):
    rng = np.random.default_rng(seed)
    XT = np.vstack([np.ones(n), rng.standard_normal((p - 1, n))])
    y = rng.integers(0, C, n).astype(float)
    coef = 2 * rng.standard_normal((K, C, p))
    coef[:, 0] = 0.0
    gate = rng.standard_normal((K, p))
    gate[0] = 0.0
    sw = rng.uniform(0.5, 2.0, n)
    sw[rng.uniform(size=n) < 0.1] = 0.0
    resp = rng.dirichlet(np.ones(K), size=n).T.copy()
    if K > 1:
        resp[0, : n // 3] = 0.0
        resp /= resp.sum(axis=0)
    return XT, y, coef, gate, sw, resp


# the last shape has more blocks than chunks, so each chunk adds several blocks
SHAPES = [(1, 1, 2, 1), (7, 2, 2, 2), (BLOCK + 3, 3, 4, 3), (2 * BLOCK + 17, 2, 3, 1),
          (BLOCK * (MAX_CHUNKS + 3) + 5, 2, 2, 3)]


@pytest.mark.parametrize("n,K,C,p", SHAPES)
def test_multinomial_log_prob_matches_scipy(n, K, C, p):
    XT, y, coef, *_ = _problem(n, K, C, p)
    ref = special.log_softmax(np.einsum("kcp,pn->kcn", coef, XT), axis=1)[:, y.astype(int), np.arange(n)]
    assert_allclose(kernels.multinomial_log_prob(XT, y, coef), ref, rtol=RTOL, atol=1e-13)
    assert_allclose(naive.multinomial_log_prob(XT, y, coef), ref, rtol=RTOL, atol=1e-13)


@pytest.mark.parametrize("n,K,C,p", SHAPES)
def test_multinomial_stats(n, K, C, p):
    XT, y, coef, _, sw, resp = _problem(n, K, C, p)
    q, grad, hess = kernels.multinomial_stats(XT, y, coef, resp, sw)
    rq, rgrad, rhess = naive.multinomial_stats(XT, y, coef, resp, sw)
    assert_allclose(q, rq, rtol=RTOL)
    assert_allclose(grad, rgrad, rtol=1e-10, atol=1e-9)
    assert_allclose(hess, rhess, rtol=1e-10, atol=1e-9)
    # objective only, for a subset of the experts (the others are zero)
    active = np.arange(K) % 2 == 0
    q_only, g_none, h_none = kernels.multinomial_stats(
        XT, y, coef, resp, sw, active=active, derivatives=False
    )
    assert g_none is None and h_none is None
    assert_allclose(q_only, np.where(active, rq, 0.0), rtol=RTOL)


def test_multinomial_stats_are_the_derivatives_of_the_objective():
    XT, y, coef, _, sw, resp = _problem(500, 2, 3, 2, seed=4)
    q, grad, hess = kernels.multinomial_stats(XT, y, coef, resp, sw)
    eps = 1e-6
    for k in range(2):
        for c in range(1, 3):
            for j in range(2):
                step = np.zeros_like(coef)
                step[k, c, j] = eps
                up = kernels.multinomial_stats(XT, y, coef + step, resp, sw)
                down = kernels.multinomial_stats(XT, y, coef - step, resp, sw)
                assert_allclose((up[0][k] - down[0][k]) / (2 * eps), grad[k, c - 1, j], rtol=1e-6, atol=1e-6)
                # the negative Hessian is minus the derivative of the gradient
                fd = -(up[1][k] - down[1][k]).ravel() / (2 * eps)
                assert_allclose(fd, hess[k][:, (c - 1) * 2 + j], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("n,K,C,p", SHAPES)
@pytest.mark.parametrize("with_prev", [False, True])
def test_fused_softmax_multinomial(n, K, C, p, with_prev):
    XT, y, coef, gate, sw, resp = _problem(n, K, C, p)
    XgT = XT[: max(1, p - 1)]  # a gate design different from the experts'
    gate = gate[:, : XgT.shape[0]]
    prev = (resp, resp[::-1].copy()) if with_prev else (None, None)
    got = kernels.fused_softmax_multinomial(XgT, gate, XT, y, coef, sw, *prev)
    ref = naive.fused_softmax_multinomial(XgT, gate, XT, y, coef, sw, *prev)
    resp_, ll_rows, total, (log_gate, gate_prob), q_prev, gate_stats, expert_stats, eq_prev = got
    assert_allclose(resp_, ref[0], rtol=1e-11, atol=1e-14)
    assert_allclose(ll_rows, ref[1], rtol=RTOL, atol=1e-13)
    assert_allclose(total, ref[2], rtol=RTOL)
    assert_allclose(log_gate, ref[3][0], rtol=RTOL, atol=1e-13)
    assert_allclose(gate_prob, ref[3][1], rtol=RTOL, atol=1e-15)
    for a, b in zip(gate_stats, ref[5], strict=True):
        assert_allclose(a, b, rtol=1e-10, atol=1e-9)
    for a, b in zip(expert_stats, ref[6], strict=True):
        assert_allclose(a, b, rtol=1e-10, atol=1e-9)
    if with_prev:
        assert_allclose(q_prev, ref[4], rtol=RTOL)
        assert_allclose(eq_prev, ref[7], rtol=RTOL)
    else:
        assert q_prev is None and eq_prev is None


def test_kernels_reject_bad_class_indices_and_overlapping_buffers():
    XT, y, coef, gate, sw, resp = _problem(50, 2, 3, 2)
    for bad in (np.full(50, 3.0), np.full(50, -1.0), np.full(50, 0.5)):
        with pytest.raises(ValueError, match="class indices"):
            kernels.multinomial_log_prob(XT, bad, coef)
        with pytest.raises(ValueError, match="class indices"):
            kernels.multinomial_stats(XT, bad, coef, resp, sw)
    buffers = (np.empty((2, 50)), np.empty((2, 50)), resp)
    with pytest.raises(ValueError, match="overlaps"):
        kernels.fused_softmax_multinomial(XT, gate, XT, y, coef, sw, expert_resp_prev=resp, out=buffers)


# -- the expert family --------------------------------------------------------------------------------


def test_family_basics():
    XT, y, coef, _, sw, resp = _problem(300, 3, 4, 3)
    fam = MultinomialExperts(3, n_classes=4, penalty=0.5)
    fam.coef = coef
    assert fam.kind == "multinomial" and fam.standardize_y is False
    assert fam.n_parameters() == 3 * 3 * 3
    assert_allclose(fam.log_prob(XT, y), naive.multinomial_log_prob(XT, y, coef), rtol=RTOL, atol=1e-14)
    proba = fam.predict_proba(XT)
    assert proba.shape == (3, 4, 300)
    assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-13)
    assert_allclose(np.log(proba), fam.predict_log_proba(XT), rtol=1e-12, atol=1e-14)
    # the penalty acts on the slopes, not on the intercepts
    assert_allclose(fam.penalty_value(), 0.25 * np.sum(coef[:, :, 1:] ** 2))
    fam_no_intercept = MultinomialExperts(3, n_classes=4, penalty=0.5, intercept=False)
    fam_no_intercept.coef = coef
    assert_allclose(fam_no_intercept.penalty_value(), 0.25 * np.sum(coef**2))
    with pytest.raises(NotImplementedError, match="predict_proba"):
        fam.mean(XT)
    with pytest.raises(ValueError, match="class indices 0..3"):
        fam.check_target(np.array([0.0, 4.0]))
    with pytest.raises(ValueError, match="class indices"):
        fam.check_target(np.array([0.0, 1.5]))
    with pytest.raises(ValueError, match="n_classes >= 2"):
        MultinomialExperts(2, n_classes=1)
    theta = fam.get_flat()
    assert theta.shape == (27,)
    fam.set_flat(theta + 1.0)
    assert np.all(fam.coef[:, 0] == 0)
    assert_allclose(fam.coef[:, 1:], coef[:, 1:] + 1.0)


@pytest.mark.parametrize("intercept", [True, False])
def test_raw_params_round_trip(intercept):
    rng = np.random.default_rng(1)
    p = 2
    coef = rng.standard_normal((2, 3, int(intercept) + p))
    coef[:, 0] = 0.0
    sc = Scaling(np.zeros(1), np.ones(1), rng.standard_normal(p) if intercept else np.zeros(p),
                 rng.uniform(0.5, 2, p))
    fam = MultinomialExperts(2, n_classes=3, intercept=intercept)
    fam.coef = coef
    raw = fam.raw_params(sc, intercept)["coef"]
    assert raw.shape == coef.shape and np.all(raw[:, 0] == 0)
    other = MultinomialExperts(2, n_classes=3, intercept=intercept)
    other.set_raw_params({"coef": raw}, sc, intercept)
    assert_allclose(other.coef, coef, rtol=1e-12, atol=1e-14)
    # the raw coefficients give the same logits on the raw X as coef on the standardised design
    Xraw = rng.standard_normal((20, p)) * 3 + 1
    XT = (Xraw - sc.expert_mean) / sc.expert_scale
    XT = np.vstack([np.ones(20), XT.T]) if intercept else XT.T
    Xr = np.vstack([np.ones(20), Xraw.T]) if intercept else Xraw.T
    assert_allclose(np.einsum("kcp,pn->kcn", raw, Xr), np.einsum("kcp,pn->kcn", coef, XT), atol=1e-12)


def _penalised_objectives(fam, XT, y, resp, sw):
    q = kernels.multinomial_stats(XT, y, fam.coef, resp, sw, derivatives=False)[0]
    return q - np.array([0.5 * fam.penalty * np.sum(c[:, 1:] ** 2) for c in fam.coef])


def test_m_step_raises_every_experts_objective():
    XT, y, _, _, sw, resp = _problem(2000, 3, 3, 3, seed=2)
    fam = MultinomialExperts(3, n_classes=3, penalty=1e-2)
    fam.initialize(XT, y, resp, sw)
    before = _penalised_objectives(fam, XT, y, resp, sw)
    for _ in range(20):
        fam.m_step(XT, y, resp, sw)
        after = _penalised_objectives(fam, XT, y, resp, sw)
        assert np.all(after >= before - 1e-12 * np.abs(before))
        before = after
    # 20 Newton steps reach the stationary point of each penalised objective
    _, grad, _ = kernels.multinomial_stats(XT, y, fam.coef, resp, sw)
    pen_grad = grad - fam.penalty * np.concatenate(
        [np.zeros((3, 2, 1)), fam.coef[:, 1:, 1:]], axis=2
    )
    assert np.abs(pen_grad).max() < 1e-8


def test_deferred_step_accept_and_backtrack():
    XT, y, _, _, sw, resp = _problem(1500, 2, 3, 2, seed=3)
    fam = MultinomialExperts(2, n_classes=3, penalty=1e-3)
    fam.initialize(XT, y, resp, sw)
    resp2 = np.ascontiguousarray(resp[::-1])
    start = fam.coef.copy()
    old = _penalised_objectives(fam, XT, y, resp2, sw)
    # a proposed full step, checked with its true objective, is the immediate step
    fam.m_step(XT, y, resp2, sw, stats=DeferredStats(*kernels.multinomial_stats(XT, y, fam.coef, resp2, sw)))
    assert fam.pending and fam.pending_resp is resp2
    q_new = kernels.multinomial_stats(XT, y, fam.coef, resp2, sw, derivatives=False)[0]
    assert fam.accept(q_new) and not fam.pending
    proposed = fam.coef.copy()
    immediate = MultinomialExperts(2, n_classes=3, penalty=1e-3)
    immediate.coef = start.copy()
    immediate.m_step(XT, y, resp2, sw)
    assert_allclose(proposed, immediate.coef, rtol=1e-12)
    # a step reported as not ascending (expert 1) is halved; expert 0 keeps its full step
    fam.coef = start.copy()
    fam.propose(kernels.multinomial_stats(XT, y, fam.coef, resp2, sw), resp2)
    q_new = kernels.multinomial_stats(XT, y, fam.coef, resp2, sw, derivatives=False)[0]
    assert not fam.accept(q_new - np.array([0.0, 1e9]))
    fam.backtrack(XT, y, sw)
    assert not fam.pending
    assert_allclose(fam.coef[0], proposed[0], rtol=1e-12)
    assert_allclose(fam.coef[1], start[1] + 0.5 * (proposed[1] - start[1]), rtol=1e-10)
    assert np.all(_penalised_objectives(fam, XT, y, resp2, sw) >= old)


def test_fused_pass_halves_a_rejected_expert_step():
    XT, y, _, gate_coef, sw, resp = _problem(3000, 2, 3, 3, seed=5)
    gate = SoftmaxGate(2)
    gate.coef = gate_coef
    fam = MultinomialExperts(2, n_classes=3, penalty=1e-3)
    fam.initialize(XT, y, resp, sw)
    old = _penalised_objectives(fam, XT, y, resp, sw)
    q, grad, hess = kernels.multinomial_stats(XT, y, fam.coef, resp, sw)
    fam.propose((q, grad, 1e-3 * hess), resp)  # a step 1000 times too long
    assert np.any(_penalised_objectives(fam, XT, y, resp, sw) < old)
    step = _em.FUSED_PASSES["softmax", "multinomial"](gate, fam, _em.Design(XT, XT, y, sw), None, None)
    assert not fam.pending
    assert np.all(_penalised_objectives(fam, XT, y, resp, sw) >= old)
    # the pass returned is the one at the final coefficients, with deferred statistics
    ref = naive.fused_softmax_multinomial(XT, gate.coef, XT, y, fam.coef, sw)
    assert_allclose(step.total, ref[2], rtol=RTOL)
    assert isinstance(step.expert_stats, DeferredStats)
    assert_allclose(step.expert_stats.grad, ref[6][1], rtol=1e-10, atol=1e-9)


# -- estimator: the model, its fit and its predictions ------------------------------------------------


def _opg_standard_errors(X, y, gate, experts):
    """Standard errors of the MLE: inverse observed information (outer product of the scores).

    The scores of log P(y_i | x_i) are, with posteriors r_ik: (r_ik - g_ik) x_i for
    the gate rows 1..K-1 and r_ik (1[y_i = c] - p_kc(x_i)) x_i for expert k's
    class c >= 1.
    """
    n = len(X)
    X1 = np.column_stack([np.ones(n), X])
    K, C, p = experts.shape
    log_gate = special.log_softmax(X1 @ gate.T, axis=1)
    log_p = special.log_softmax(np.einsum("kcp,np->nkc", experts, X1), axis=2)
    joint = log_gate + log_p[np.arange(n), :, y]
    r = np.exp(joint - special.logsumexp(joint, axis=1, keepdims=True))
    g, pk = np.exp(log_gate), np.exp(log_p)
    scores = [(r[:, k] - g[:, k])[:, None] * X1 for k in range(1, K)]
    scores += [(r[:, k] * ((y == c) - pk[:, k, c]))[:, None] * X1 for k in range(K) for c in range(1, C)]
    S = np.hstack(scores)
    se = np.sqrt(np.diag(np.linalg.inv(S.T @ S)))
    se_gate = np.vstack([np.zeros(p), se[: (K - 1) * p].reshape(K - 1, p)])
    se_experts = np.zeros_like(experts)
    se_experts[:, 1:] = se[(K - 1) * p :].reshape(K, C - 1, p)
    return se_gate, se_experts


@pytest.mark.parametrize(
    ("experts", "seed"), [(BINARY, 0), (THREE, 0), (THREE, 1)], ids=["binary", "3-class", "3-class-b"]
)
def test_parameter_recovery(experts, seed):
    n = 20_000
    X, y, _ = make_data(n, GATE, experts, seed)
    clf = _fit(X, y, n_init=3, gate_penalty=0.0, expert_penalty=0.0, tol=1e-10, max_iter=5000)
    assert clf.converged_
    cost = ((clf.expert_coef_[None, :, 1:] - experts[:, None, 1:]) ** 2).sum(axis=(2, 3))
    perm = linear_sum_assignment(cost)[1]
    fitted_experts = clf.expert_coef_[perm]
    fitted_gate = clf.gate_coef_[perm] - clf.gate_coef_[perm][0]  # the truth's reference expert
    se_gate, se_experts = _opg_standard_errors(X, y, fitted_gate, fitted_experts)
    # 5 standard errors of the MLE at n = 20000 (from the observed information of
    # these data, between 0.05 and 0.8 here): a normal deviate beyond 5 has
    # probability 6e-7 per parameter.
    assert np.all(np.abs(fitted_experts - experts) <= 5 * se_experts)
    assert np.all(np.abs(fitted_gate - GATE) <= 5 * se_gate)
    # the MLE is at least as likely as the truth
    true_ll = naive.classifier_log_proba(X, GATE, experts)[np.arange(n), y].sum()
    assert clf.score_samples(X, y).sum() >= true_ll


def test_score_samples_and_predict_proba_match_numpy_from_the_attributes():
    X, y, _ = make_data(600, GATE, THREE, seed=5)
    X = X * [3.0, 0.2] + [10.0, -4.0]  # raw scale away from the standardised one
    clf = _fit(X, y)
    ref = naive.classifier_log_proba(X, clf.gate_coef_, clf.expert_coef_)
    assert_allclose(clf.predict_log_proba(X), ref, rtol=1e-10, atol=1e-12)
    assert_allclose(clf.predict_proba(X), np.exp(ref), rtol=1e-10, atol=1e-14)
    assert_allclose(clf.score_samples(X, y), ref[np.arange(len(y)), y], rtol=1e-10)
    assert_array_equal(clf.predict(X), clf.classes_[np.argmax(ref, axis=1)])


def test_predict_proba_is_the_gated_sum_of_the_experts():
    X, y, _ = make_data(400, GATE, THREE, seed=6)
    clf = _fit(X, y, n_experts=3)
    proba = clf.predict_proba(X)
    assert proba.shape == (400, 3)
    assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-13)
    experts = clf.predict_experts_proba(X)
    assert experts.shape == (400, 3, 3)
    assert_allclose(experts.sum(axis=2), 1.0, rtol=1e-13)
    assert_allclose(proba, np.einsum("nk,nkc->nc", clf.predict_gate(X), experts), rtol=1e-12)
    assert_allclose(np.log(proba), clf.predict_log_proba(X), rtol=1e-12, atol=1e-14)
    resp = clf.predict_responsibilities(X, y)
    assert_allclose(resp.sum(axis=1), 1.0, rtol=1e-13)
    # Bayes: r_k = g_k p_k(y) / P(y)
    expected = clf.predict_gate(X) * experts[np.arange(400), :, y] / proba[np.arange(400), y][:, None]
    assert_allclose(resp, expected, rtol=1e-10)
    assert clf.score(X, clf.classes_[y]) == np.mean(clf.predict(X) == clf.classes_[y])


@pytest.mark.parametrize("seed", range(8))
def test_monotone_log_likelihood(seed):
    """warm_start=True, max_iter=1: every EM step raises the penalised objective."""
    rng = np.random.default_rng(seed)
    K = int(rng.integers(1, 4))
    experts = [BINARY, THREE][seed % 2]
    X, y, _ = make_data(int(rng.integers(80, 600)), GATE, experts, seed)
    params = {
        "n_experts": K,
        "init": ["kmeans", "random"][seed % 2],
        "gate": "constant" if seed % 4 == 3 else "softmax",
        "gate_penalty": [0.0, 1e-3, 1.0][seed % 3],
        "expert_penalty": [1e-3, 0.0, 1.0][seed % 3],
        "random_state": seed,
    }
    clf = MixtureOfExpertsClassifier(warm_start=True, max_iter=1, **params)
    bounds = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for _ in range(40):
            bounds.append(clf.fit(X, y).lower_bound_)
        full = MixtureOfExpertsClassifier(max_iter=300, **params).fit(X, y)
    bounds = np.array(bounds)
    assert np.all(np.diff(bounds) >= -1e-12 * np.maximum(1.0, np.abs(bounds[:-1])))
    lb = full.lower_bounds_
    assert np.all(np.diff(lb) >= -1e-12 * np.maximum(1.0, np.abs(lb[:-1])))
    assert_allclose(full.lower_bound_, lb[-1])


def test_lower_bound_is_the_penalised_mean_log_likelihood():
    X, y, _ = make_data(500, GATE, THREE, seed=7)
    plain = _fit(X, y, gate_penalty=0.0, expert_penalty=0.0)
    assert_allclose(plain.lower_bound_, plain.score_samples(X, y).mean(), rtol=1e-12)
    pen = _fit(X, y, gate_penalty=2.0, expert_penalty=3.0)
    # both penalties act on the slopes of the standardised covariates
    sd = X.std(axis=0)
    gate_pen = 1.0 * np.sum((pen.gate_coef_[:, 1:] * sd) ** 2)
    expert_pen = 1.5 * np.sum((pen.expert_coef_[:, :, 1:] * sd) ** 2)
    expected = (pen.score_samples(X, y).sum() - gate_pen - expert_pen) / len(y)
    assert_allclose(pen.lower_bound_, expected, rtol=1e-12)
    # a larger expert penalty shrinks the experts' slopes
    strong = _fit(X, y, expert_penalty=1e4)
    assert np.abs(strong.expert_coef_[:, :, 1:]).max() < 0.1 * np.abs(pen.expert_coef_[:, :, 1:]).max()


def test_fused_and_plain_em_reach_the_same_fit(monkeypatch):
    X, y, _ = make_data(3000, GATE, THREE, seed=8)
    fused = _fit(X, y, tol=0.0, max_iter=200)
    monkeypatch.delitem(_em.FUSED_PASSES, ("softmax", "multinomial"))
    plain = _fit(X, y, tol=0.0, max_iter=200)
    # the deferred checks accept the same full Newton steps the immediate checks do
    assert_allclose(fused.lower_bounds_, plain.lower_bounds_, rtol=1e-9)
    assert_allclose(fused.expert_coef_, plain.expert_coef_, rtol=1e-6, atol=1e-8)
    assert_allclose(fused.gate_coef_, plain.gate_coef_, rtol=1e-6, atol=1e-8)


# -- labels ----------------------------------------------------------------------------------------


def test_label_types_give_the_same_fit():
    X, y, _ = make_data(400, GATE, BINARY, seed=9)
    ref = _fit(X, y)
    for labels, classes in [
        (np.array(["no", "yes"])[y], ["no", "yes"]),
        (np.array([False, True])[y], [False, True]),
        (np.array([-3, 7])[y], [-3, 7]),
        (np.array([1.0, 3.0])[y], [1.0, 3.0]),
        (np.array(["no", "yes"], dtype=object)[y], ["no", "yes"]),
    ]:
        clf = _fit(X, labels)
        assert clf.classes_.tolist() == classes
        assert_array_equal(clf.expert_coef_, ref.expert_coef_)
        assert_array_equal(clf.gate_coef_, ref.gate_coef_)
        assert_array_equal(clf.predict(X), clf.classes_[ref.predict(X)])
        assert_array_equal(clf.score_samples(X, labels), ref.score_samples(X, y))


def test_multiclass_string_labels_are_sorted():
    X, y, _ = make_data(400, GATE, THREE, seed=10)
    names = np.array(["eel", "cat", "dog"])  # sorted: cat, dog, eel
    clf = _fit(X, names[y])
    assert clf.classes_.tolist() == ["cat", "dog", "eel"]
    assert clf.expert_coef_.shape == (2, 3, 3)
    assert np.all(clf.expert_coef_[:, 0] == 0)
    # class "cat" (index 1 of y) is the reference now; the fit is the same model
    ref = _fit(X, np.array([2, 0, 1])[y])
    assert_allclose(clf.predict_proba(X), ref.predict_proba(X))
    assert set(clf.predict(X)) <= set(names)


def test_unseen_labels_raise():
    X, y, _ = make_data(200, GATE, BINARY, seed=11)
    clf = _fit(X, np.array(["a", "b"])[y])
    bad = np.array(["a", "b"])[y]
    bad[3] = "c"
    for method in (clf.score_samples, clf.predict_responsibilities, clf.bic, clf.aic):
        with pytest.raises(ValueError, match=re.escape("labels not seen in fit: ['c']")):
            method(X, bad)
    with pytest.raises(ValueError, match="not seen in fit"):
        clf.score_samples(X, y)  # integers, the classes are strings
    num = _fit(X, y)
    with pytest.raises(ValueError, match=re.escape("not seen in fit: [2]")):
        num.score_samples(X, np.where(np.arange(200) == 5, 2, y))
    with pytest.raises(ValueError, match="not seen in fit"):
        num.score_samples(X, y + 0.5)
    with pytest.raises(ValueError, match="not seen in fit"):
        num.score_samples(X, np.array(["0", "1"])[y])


def test_one_class_and_continuous_targets_raise():
    X = np.random.default_rng(0).standard_normal((30, 2))
    with pytest.raises(ValueError, match="at least 2 classes; y has 1 class"):
        MixtureOfExpertsClassifier().fit(X, np.full(30, "a"))
    with pytest.raises(ValueError, match="Unknown label type"):
        MixtureOfExpertsClassifier().fit(X, X[:, 0])
    clf = MixtureOfExpertsClassifier()
    with pytest.raises(ValueError):
        clf.fit(X, np.ones(30))
    assert not hasattr(clf, "classes_")  # a failed fit publishes no classes


def test_bic_counts_the_free_parameters():
    X, y, _ = make_data(500, GATE, THREE, seed=12)
    clf = _fit(X, y, n_experts=3)
    # gate: 2 free rows of 3; experts: 3 experts x 2 free classes x 3
    assert clf.n_parameters() == 2 * 3 + 3 * 2 * 3
    ll = clf.score_samples(X, y).sum()
    assert_allclose(clf.bic(X, y), -2 * ll + 24 * np.log(500))
    assert_allclose(clf.aic(X, y), -2 * ll + 48)


# -- parameters --------------------------------------------------------------------------------------


def test_feature_selection_and_no_intercept():
    X, y, _ = make_data(300, GATE, THREE, seed=13)
    X = np.column_stack([X, np.random.default_rng(0).standard_normal(300)])
    clf = _fit(X, y, gate_features=[0], expert_features=[1, 2])
    assert clf.gate_coef_.shape == (2, 2)
    assert clf.expert_coef_.shape == (2, 3, 3)
    no_int = _fit(X, y, fit_intercept=False)
    assert no_int.expert_coef_.shape == (2, 3, 4)
    assert np.all(no_int.expert_coef_[:, :, 0] == 0)
    ref = naive.classifier_log_proba(X, no_int.gate_coef_, no_int.expert_coef_)
    assert_allclose(no_int.predict_log_proba(X), ref, rtol=1e-10, atol=1e-12)
    const = _fit(X, y, gate="constant")
    assert const.gate_coef_.shape == (2, 1)
    g = const.predict_gate(X)
    assert_allclose(g, np.broadcast_to(g[0], g.shape))


def test_integer_weights_equal_repetition():
    X, y, _ = make_data(150, GATE, THREE, seed=14)
    w = np.random.default_rng(0).integers(0, 4, 150)
    init = np.random.default_rng(1).uniform(size=(150, 2))
    weighted = _fit(X, y, sample_weight=w, init=init, tol=1e-12, max_iter=300)
    rows = np.repeat(np.arange(150), w)
    repeated = _fit(X[rows], y[rows], init=init[rows], tol=1e-12, max_iter=300)
    assert_allclose(weighted.expert_coef_, repeated.expert_coef_, rtol=1e-6, atol=1e-6)
    assert_allclose(weighted.gate_coef_, repeated.gate_coef_, rtol=1e-6, atol=1e-6)
    assert_allclose(weighted.lower_bound_, repeated.lower_bound_, rtol=1e-9)


def test_zero_weights_equal_dropping_rows_and_scaling_weights_changes_nothing():
    # n = 800: no expert's classes are separable, so the unpenalised fit is finite
    X, y, _ = make_data(800, GATE, BINARY, seed=15)
    keep = np.arange(800) % 3 != 0
    init = np.random.default_rng(2).uniform(size=(800, 2))
    params = {"tol": 1e-12, "max_iter": 300, "gate_penalty": 0.0, "expert_penalty": 0.0}
    a = _fit(X, y, sample_weight=keep.astype(float), init=init, **params)
    b = _fit(X[keep], y[keep], init=init[keep], **params)
    assert_allclose(a.expert_coef_, b.expert_coef_, rtol=1e-6, atol=1e-7)
    # without penalties the fit depends on the weights only up to a common factor
    c = _fit(X, y, sample_weight=5.0 * keep, init=init, **params)
    assert_allclose(c.expert_coef_, a.expert_coef_, rtol=1e-6, atol=1e-7)


def test_warm_start_continues_and_restarts_when_the_classes_change():
    X, y, _ = make_data(500, GATE, THREE, seed=16)
    clf = _fit(X, y, warm_start=True, tol=1e-8)
    n_first = clf.n_iter_
    clf.fit(X, y)
    assert clf.n_iter_ <= 1 < n_first  # the converged solution is the start
    # two classes now: the 3-class experts cannot start this fit, a fresh start runs
    binary = np.minimum(y, 1)
    clf.fit(X, binary)
    assert clf.expert_coef_.shape == (2, 2, 3)
    fresh = _fit(X, binary, tol=1e-8)
    assert_allclose(clf.expert_coef_, fresh.expert_coef_)


def test_not_fitted():
    clf = MixtureOfExpertsClassifier()
    for method in ("predict", "predict_proba", "predict_log_proba", "predict_gate", "predict_experts_proba"):
        with pytest.raises(NotFittedError):
            getattr(clf, method)(np.zeros((2, 2)))
    with pytest.raises(NotFittedError):
        clf.score_samples(np.zeros((2, 2)), np.zeros(2))


def test_reg_covar_belongs_to_the_regressor_only():
    assert "reg_covar" not in MixtureOfExpertsClassifier().get_params()
    with pytest.raises(TypeError):
        MixtureOfExpertsClassifier(reg_covar=1e-3)
    with pytest.raises(ValueError, match="expert_penalty"):
        MixtureOfExpertsClassifier(expert_penalty=-1.0).fit(np.zeros((4, 1)), [0, 1, 0, 1])


# -- scikit-learn API ----------------------------------------------------------------------------------


def test_pickle_and_clone():
    X, y, _ = make_data(300, GATE, THREE, seed=17)
    clf = _fit(X, np.array(["a", "b", "c"])[y])
    restored = pickle.loads(pickle.dumps(clf))
    assert_array_equal(restored.predict(X), clf.predict(X))
    assert_array_equal(restored.predict_proba(X), clf.predict_proba(X))
    assert_array_equal(restored.classes_, clf.classes_)
    copy = clone(clf)
    assert copy.get_params() == clf.get_params()
    assert not hasattr(copy, "classes_")
    with pytest.raises(NotFittedError):
        copy.predict(X)


def test_grid_search_in_pipeline_picks_two_experts_for_a_two_regime_problem():
    # XOR-like: the sign of the effect of x2 flips with x1, which no single
    # logistic regression can represent
    rng = np.random.default_rng(0)
    X = rng.uniform(-2, 2, size=(600, 2))
    logit = np.where(X[:, 0] < 0, 5 * X[:, 1], -5 * X[:, 1])
    y = np.where(rng.uniform(size=600) < special.expit(logit), "pos", "neg")
    pipe = Pipeline([("scale", StandardScaler()), ("moe", MixtureOfExpertsClassifier(random_state=0))])
    search = GridSearchCV(pipe, {"moe__n_experts": [1, 2]}, cv=KFold(3, shuffle=True, random_state=0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        search.fit(X, y)
    scores = search.cv_results_["mean_test_score"]
    assert search.best_params_["moe__n_experts"] == 2
    assert scores[0] < 0.65 and scores[1] > 0.8  # accuracy: one expert is near chance
    assert search.predict(X[:5]).dtype == y.dtype
