"""Numba kernels of the hierarchical (HME) gate against their numpy twins, and the gate's fused EM pass."""

import copy
import warnings

import numba
import numpy as np
import pytest
from numpy.testing import assert_allclose

from mixexp import MixtureOfExpertsClassifier, MixtureOfExpertsRegressor
from mixexp import _kernels as kernels
from mixexp._kernels._kernels import BLOCK
from mixexp.gates import HierarchicalGate
from mixexp.gates import _hierarchical as hierarchical
from mixexp.gates._softmax import newton_direction
from mixexp.solvers._em import Design, e_step_pass, objective, run_em

from . import _naive as naive

# Kernels and twins sum the same terms in different orders: values agree to
# a few ulps of the sums' magnitudes (at most sum_i w_i |terms| ~ n), hence
# relative 1e-10 with an absolute floor of 1e-12 * n.
RTOL = 1e-10

# (depth, branching): trees of depth 1-3 and branching 2-3
TREES = [(1, 2), (1, 3), (2, 2), (2, 3), (3, 2), (3, 3)]


def _problem(n, depth, branching, p=3, seed=0, scale=1.5):
    """A random tree, design, weights (some zero), responsibilities and log-densities."""
    rng = np.random.default_rng(seed)
    K = branching**depth
    V = (K - 1) // (branching - 1)
    XT = np.ascontiguousarray(np.vstack([np.ones(n), rng.standard_normal((p - 1, n))]))
    coef = scale * rng.standard_normal((V, branching, p))
    coef[:, 0] = 0.0
    w = rng.uniform(0.2, 2.0, n)
    w[::7] = 0.0
    resp = np.ascontiguousarray(rng.dirichlet(np.ones(K), n).T)
    resp_prev = np.ascontiguousarray(rng.dirichlet(np.ones(K), n).T)
    log_prob = 3.0 * rng.standard_normal((K, n))
    return XT, coef, w, resp, resp_prev, log_prob


def _close(got, ref, n):
    assert_allclose(got, ref, rtol=RTOL, atol=1e-12 * n)


# -- kernels against their twins -----------------------------------------------------------


@pytest.mark.parametrize(("depth", "branching"), TREES)
@pytest.mark.parametrize("n", [37, 2 * BLOCK + 11])
def test_hme_nodes_match_naive(depth, branching, n):
    XT, coef, w, resp, _, _ = _problem(n, depth, branching, seed=depth + 10 * branching)
    node_log, node_prob, q, (log_gate, gate_prob) = kernels.hme_nodes(
        XT, coef, resp=resp, sample_weight=w, leaves=True
    )
    ref_log, ref_prob = naive.hme_node_log_softmax(XT, coef)
    assert_allclose(node_log, ref_log, rtol=1e-12, atol=1e-12)
    assert_allclose(node_prob, ref_prob, rtol=1e-12, atol=1e-15)
    ref_leaves = naive.hme_log_weights(XT, coef, branching, depth)
    assert_allclose(log_gate, ref_leaves, rtol=1e-12, atol=1e-12)
    assert_allclose(gate_prob, np.exp(ref_leaves), rtol=1e-12, atol=1e-15)
    q_ref = naive.hme_node_stats(XT, coef, resp, w)[0]
    _close(q, q_ref, n)
    # the leaves alone, from the nodes
    leaves = kernels.hme_leaves(node_log)
    assert_allclose(leaves[0], log_gate, rtol=0, atol=0)
    assert_allclose(leaves[1], gate_prob, rtol=0, atol=0)
    # some nodes only, in any order: the same rows and objectives
    ids = np.arange(coef.shape[0])[::-1][: max(1, coef.shape[0] - 1)]
    sub_log, sub_prob, sub_q, none = kernels.hme_nodes(XT, coef[ids], ids, resp, w)
    assert none is None
    assert_allclose(sub_log, node_log[ids], rtol=0, atol=0)
    assert_allclose(sub_prob, node_prob[ids], rtol=0, atol=0)
    _close(sub_q, q_ref[ids], n)
    # the nodes kept in block scratch only: the same objectives and leaves, no node arrays
    none_log, none_prob, q_scratch, leaves = kernels.hme_nodes(
        XT, coef, resp=resp, sample_weight=w, leaves=True, nodes=False
    )
    assert none_log is None and none_prob is None
    assert np.array_equal(q_scratch, q) and np.array_equal(leaves[0], log_gate)
    # candidate coefficients of one node (as the step halving tries step sizes): each its own objective
    last = coef.shape[0] - 1
    candidates = np.stack([coef[last], 0.5 * coef[last], coef[last]])
    _, _, q_cand, _ = kernels.hme_nodes(XT, candidates, [last] * 3, resp, w, nodes=False)
    half = coef.copy()
    half[last] *= 0.5
    assert q_cand[0] == q_cand[2] and q_cand[0] == q[last]
    _close(q_cand[1], naive.hme_node_stats(XT, half, resp, w)[0][last], n)


@pytest.mark.parametrize(("depth", "branching"), TREES)
def test_hme_node_stats_match_naive(depth, branching):
    n = 2 * BLOCK + 11
    XT, coef, w, resp, _, _ = _problem(n, depth, branching, seed=3 + depth)
    node_log, node_prob, _, _ = kernels.hme_nodes(XT, coef)
    q, grad, hess = kernels.hme_node_stats(XT, node_log, node_prob, resp, w)
    q_ref, grad_ref, hess_ref = naive.hme_node_stats(XT, coef, resp, w)
    V, B, p = coef.shape
    assert grad.shape == (V, B - 1, p) and hess.shape == (V, (B - 1) * p, (B - 1) * p)
    _close(q, q_ref, n)
    _close(grad, grad_ref, n)
    _close(hess, hess_ref, n)
    assert_allclose(hess, np.swapaxes(hess, 1, 2), rtol=0, atol=0)


def test_hme_node_stats_of_a_massless_subtree():
    # no responsibility below node 2 (the right half of a depth-2 binary tree): its gradient and
    # Hessian vanish, its objective is 0, and every statistic is finite
    n = 300
    XT, coef, w, resp, _, _ = _problem(n, 2, 2, seed=4)
    resp[2:] = 0.0
    resp /= resp.sum(axis=0)
    node_log, node_prob, _, _ = kernels.hme_nodes(XT, coef)
    q, grad, hess = kernels.hme_node_stats(XT, node_log, node_prob, resp, w)
    assert np.all(np.isfinite(q)) and np.all(np.isfinite(grad)) and np.all(np.isfinite(hess))
    assert q[2] == 0.0
    assert np.all(grad[2] == 0.0) and np.all(hess[2] == 0.0)
    q_ref, grad_ref, hess_ref = naive.hme_node_stats(XT, coef, resp, w)
    _close(q, q_ref, n)
    _close(grad, grad_ref, n)
    _close(hess, hess_ref, n)


@pytest.mark.parametrize(("depth", "branching"), TREES)
@pytest.mark.parametrize("with_prev", [False, True])
def test_fused_hme_matches_naive(depth, branching, with_prev):
    n = 2 * BLOCK + 11
    XT, coef, w, _, resp_prev, log_prob = _problem(n, depth, branching, seed=5 + depth)
    got = kernels.fused_hme(XT, coef, w, log_prob=log_prob.copy(), resp_prev=resp_prev if with_prev else None)
    ref = naive.fused_hme(XT, coef, w, log_prob, resp_prev if with_prev else None)
    resp, ll_rows, total, (log_gate, gate_prob), q_prev, stats, expert_stats = got
    assert_allclose(resp, ref[0], rtol=1e-12, atol=1e-14)
    assert_allclose(ll_rows, ref[1], rtol=1e-12, atol=1e-12)
    _close(total, ref[2], n)
    assert_allclose(log_gate, ref[3][0], rtol=1e-12, atol=1e-12)
    assert_allclose(gate_prob, ref[3][1], rtol=1e-12, atol=1e-15)
    if with_prev:
        _close(q_prev, ref[4], n)
    else:
        assert q_prev is None
    for a, b in zip(stats, ref[5], strict=True):
        _close(a, b, n)
    assert expert_stats is None


@pytest.mark.parametrize(("depth", "branching"), [(1, 3), (2, 2), (3, 2)])
def test_fused_hme_with_gaussian_experts_matches_naive(depth, branching):
    n = 2 * BLOCK + 11
    XT, coef, w, _, resp_prev, _ = _problem(n, depth, branching, seed=6 + depth)
    rng = np.random.default_rng(7)
    K = branching**depth
    XeT = np.ascontiguousarray(np.vstack([np.ones(n), rng.standard_normal((2, n))]))
    y = rng.standard_normal(n)
    ecoef = rng.standard_normal((K, 3))
    var = rng.uniform(0.5, 2.0, K)
    got = kernels.fused_hme(XT, coef, w, gaussian=(XeT, y, ecoef, var), resp_prev=resp_prev)
    log_prob = naive.gaussian_log_prob(XeT, y, ecoef, var)
    ref = naive.fused_hme(XT, coef, w, log_prob, resp_prev)
    assert_allclose(got[0], ref[0], rtol=1e-12, atol=1e-14)
    _close(got[2], ref[2], n)
    _close(got[4], ref[4], n)
    for a, b in zip(got[5], ref[5], strict=True):
        _close(a, b, n)
    for a, b in zip(got[6], naive.linear_stats(XeT, y, ref[0], w), strict=True):
        _close(a, b, n)


def test_fused_hme_buffers():
    # the responsibilities may overwrite the log-densities; given buffers are used
    n = BLOCK + 5
    XT, coef, w, _, resp_prev, log_prob = _problem(n, 2, 2, seed=8)
    ref = kernels.fused_hme(XT, coef, w, log_prob=log_prob.copy(), resp_prev=resp_prev)
    buffers = (np.empty((4, n)), np.empty((4, n)), log_prob)
    got = kernels.fused_hme(XT, coef, w, log_prob=log_prob, resp_prev=resp_prev, out=buffers)
    assert got[0] is log_prob and got[3][0] is buffers[0] and got[3][1] is buffers[1]
    assert np.array_equal(got[0], ref[0]) and np.array_equal(got[4], ref[4])
    with pytest.raises(ValueError, match="overlaps resp_prev"):
        kernels.fused_hme(XT, coef, w, log_prob=log_prob, resp_prev=resp_prev, out=(resp_prev, None, None))


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs 2 Numba threads")
def test_hme_kernels_identical_for_1_and_2_threads():
    n = 5 * BLOCK + 11
    XT, coef, w, resp, resp_prev, log_prob = _problem(n, 3, 2, seed=9)
    results = []
    before = numba.get_num_threads()
    try:
        for threads in (1, 2):
            numba.set_num_threads(threads)
            nodes = kernels.hme_nodes(XT, coef, resp=resp, sample_weight=w, leaves=True)
            stats = kernels.hme_node_stats(XT, nodes[0], nodes[1], resp, w)
            fused = kernels.fused_hme(XT, coef, w, log_prob=log_prob.copy(), resp_prev=resp_prev)
            results.append([*nodes[:3], *nodes[3], *stats, *fused[:3], *fused[3], fused[4], *fused[5]])
    finally:
        numba.set_num_threads(before)
    for a, b in zip(*results, strict=True):
        assert np.array_equal(a, b)


def test_hme_kernels_bad_shapes_raise():
    n = 50
    XT, coef, w, resp, _, log_prob = _problem(n, 2, 2)
    with pytest.raises(ValueError, match="node coefficients must have shape"):
        kernels.hme_nodes(XT, coef[:, :, :2])
    with pytest.raises(ValueError, match="not those of a complete tree"):
        kernels.hme_nodes(XT, coef, resp=resp[:3], sample_weight=w)
    with pytest.raises(ValueError, match="node_ids must lie in"):
        kernels.hme_nodes(XT, coef[:1], [3], resp, w)
    with pytest.raises(ValueError, match="every node's coefficients, in order"):
        kernels.hme_nodes(XT, coef[::-1], [2, 1, 0], leaves=True)
    node_log, node_prob, _, _ = kernels.hme_nodes(XT, coef)
    with pytest.raises(ValueError, match="one row per leaf"):
        kernels.hme_node_stats(XT, node_log, node_prob, resp[:2], w)
    with pytest.raises(ValueError, match="exactly one of log_prob and gaussian"):
        kernels.fused_hme(XT, coef, w)
    with pytest.raises(ValueError, match="log_prob must have shape"):
        kernels.fused_hme(XT, coef, w, log_prob=log_prob[:3])


# -- the gate's deferred (fused-pass) step ------------------------------------------------


def test_propose_accept_backtrack_equal_one_m_step(monkeypatch):
    # a step from large coefficients that overshoots at some nodes only (found by trying seeds):
    # the pass's node-by-node check and halving give exactly the m_step's coefficients, whose
    # halving here tries one step size per read of the data (the pass's, several per read)
    rng = np.random.default_rng(8)
    n, p = 400, 3
    XT = np.vstack([np.ones(n), rng.standard_normal((p - 1, n))])
    gate = HierarchicalGate(4, 2, 2)
    for node in gate.nodes:
        coef = 6.0 * rng.standard_normal((2, p))
        coef[0] = 0.0
        node.coef = coef
    resp = rng.dirichlet(np.ones(4), n).T
    w = rng.uniform(0.0, 2.0, n)
    w[::5] = 0.0
    reference = copy.deepcopy(gate)
    with monkeypatch.context() as m:
        m.setattr(hierarchical, "_HALVING_BATCH", 1)
        reference.m_step(XT, resp, w, max_steps=1)
    node_log, node_prob, _, _ = kernels.hme_nodes(XT, gate.coef)
    gate.propose(kernels.hme_node_stats(XT, node_log, node_prob, resp, w))
    assert gate.pending
    q_new = kernels.hme_nodes(XT, gate.coef, resp=resp, sample_weight=w)[2]
    assert not gate.accept(q_new)
    rejected = gate._pending[5]
    assert 0 < rejected.size < gate.n_nodes  # some nodes keep the full step, others are halved
    gate.backtrack(XT, resp, w)
    assert not gate.pending
    assert_allclose(gate.coef, reference.coef, rtol=0, atol=1e-12)


def _generic_em(gate, experts, data, n_iter):
    """EM the way the loop ran before the fused pass: E-step, experts' M-step, the gate's m_step."""
    bounds, gate_eval = [], None
    for _ in range(n_iter + 1):
        step = e_step_pass(gate, experts, data, gate_eval)
        bounds.append(objective(gate, experts, step.total, data, step.gate_eval))
        if len(bounds) > n_iter:
            break
        experts.m_step(data.XeT, data.y, step.resp, data.sample_weight)
        gate_eval = gate.m_step(data.XgT, step.resp, data.sample_weight, step.gate_eval)
    return np.array(bounds)


def _parts(est_class, X, y, **params):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = est_class(gate="hierarchical", max_iter=1, n_init=1, random_state=0, **params).fit(X, y)
    if est_class is MixtureOfExpertsClassifier:
        y = est._check_target(y, fitting=False)  # class indices
    # weights of every size, one of them zero
    data = Design(*est._design(X), est._scaled_target(y), np.linspace(0.0, 2.0, X.shape[0]))
    return est.gate_, est.experts_, data


@pytest.mark.parametrize(
    ("est_class", "params", "newton_steps"),
    [
        (MixtureOfExpertsRegressor, dict(n_experts=8, gate_depth=3), 1),
        (MixtureOfExpertsRegressor, dict(n_experts=9, gate_branching=3, gate_penalty=0.3), 1),
        (MixtureOfExpertsRegressor, dict(n_experts=4, expert="student_t"), 1),
        (MixtureOfExpertsRegressor, dict(n_experts=4), 3),
        (MixtureOfExpertsClassifier, dict(n_experts=4), 1),
    ],
)
def test_fused_em_pass_follows_the_generic_em(est_class, params, newton_steps):
    rng = np.random.default_rng(10)
    X = rng.standard_normal((700, 2))
    if est_class is MixtureOfExpertsRegressor:
        y = np.where(X[:, 0] > 0, 2.0 + X[:, 1], -1.0 - X[:, 1]) + 0.5 * rng.standard_normal(700)
    else:
        y = (X[:, 0] * X[:, 1] + 0.3 * rng.standard_normal(700) > 0).astype(int)
    gate, experts, data = _parts(est_class, X, y, **params)
    gate.newton_steps = newton_steps
    fused_gate, fused_experts = copy.deepcopy(gate), copy.deepcopy(experts)
    n_iter = 25
    result = run_em(fused_gate, fused_experts, data, n_iter, 0.0)
    bounds = _generic_em(gate, experts, data, n_iter)
    assert result.n_iter == n_iter and not fused_gate.pending
    # the same iterates up to rounding (kernel sums in another order)
    assert_allclose(result.lower_bounds, bounds, rtol=1e-10, atol=0)
    assert_allclose(fused_gate.coef, gate.coef, rtol=1e-7, atol=1e-8)
    assert np.all(np.diff(result.lower_bounds) >= -1e-10 * np.abs(result.lower_bounds[:-1]))


@pytest.mark.parametrize(("depth", "branching"), [(2, 2), (2, 3), (1, 4)])
@pytest.mark.parametrize(("penalty", "l1_ratio"), [(0.0, 0.0), (0.7, 0.0), (0.7, 0.5)])
def test_node_directions_are_newton_directions(depth, branching, penalty, l1_ratio):
    # the nodes' Newton systems solved in one batched call give each node's newton_direction
    n = 300
    XT, coef, w, resp, _, _ = _problem(n, depth, branching, seed=11, scale=3.0)
    gate = HierarchicalGate(branching**depth, depth, branching, penalty=penalty, l1_ratio=l1_ratio)
    for node, c in zip(gate.nodes, coef, strict=True):
        node.coef = c.copy()
    node_log, node_prob, _, _ = kernels.hme_nodes(XT, coef)
    q, grad, hess = kernels.hme_node_stats(XT, node_log, node_prob, resp, w)
    gate._sync()
    directions, old = gate._directions(q, grad, hess)
    for v, node in enumerate(gate.nodes):
        delta, objective = newton_direction(node.coef, q[v], grad[v], hess[v], penalty, True, l1_ratio)
        assert_allclose(directions[v], delta, rtol=1e-12, atol=1e-14)
        assert old[v] == objective
