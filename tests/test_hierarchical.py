"""Hierarchical mixtures of experts: the tree gate, its node-wise EM, ``gate="hierarchical"``."""

import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose
from scipy import special
from scipy.optimize import linear_sum_assignment

from mixexp import MixtureOfExpertsClassifier, MixtureOfExpertsRegressor
from mixexp.gates import GATES, HierarchicalGate, HierarchicalGateEval, SoftmaxGate
from mixexp.gates._hierarchical import tree_depth
from mixexp.inference import fit_inference, permute_experts

from . import _naive as naive


def _design(n, p, rng):
    return np.ascontiguousarray(np.vstack([np.ones(n), rng.standard_normal((p - 1, n))]))


def _random_gate(depth, branching, p, rng, scale=1.0, **kwargs):
    gate = HierarchicalGate(branching**depth, depth, branching, **kwargs)
    node_coef = scale * rng.standard_normal((gate.n_nodes, branching, p))
    node_coef[:, 0] = 0.0
    for node, coef in zip(gate.nodes, node_coef, strict=True):
        node.coef = coef.copy()
    return gate, node_coef


def _gate_objective(gate, XT, resp, w):
    return float(np.sum(w * np.sum(resp * gate.evaluate(XT).log, axis=0)))


# -- the gate part -------------------------------------------------------------------------


@pytest.mark.parametrize(("depth", "branching"), [(1, 2), (1, 3), (2, 2), (3, 2), (2, 3)])
def test_leaf_log_weights_match_naive_twin(depth, branching):
    rng = np.random.default_rng(depth * 10 + branching)
    XT = _design(200, 3, rng)
    gate, node_coef = _random_gate(depth, branching, 3, rng, scale=2.0)
    ev = gate.evaluate(XT)
    assert isinstance(ev, HierarchicalGateEval)
    expected = naive.hme_log_weights(XT, node_coef, branching, depth)
    assert ev.log.shape == (branching**depth, 200)
    assert_allclose(ev.log, expected, rtol=1e-12, atol=1e-12)
    assert_allclose(ev.prob, np.exp(expected), rtol=1e-12, atol=1e-15)
    # leaf weights sum to 1 at every x
    assert_allclose(ev.prob.sum(axis=0), 1.0, rtol=1e-12)
    assert_allclose(special.logsumexp(ev.log, axis=0), 0.0, atol=1e-12)
    assert_allclose(gate.log_weights(XT), ev.log)


def test_tree_structure_and_parameter_count():
    gate = HierarchicalGate(8, 3, 2)
    assert gate.n_nodes == 7
    assert gate.children(0) == [1, 2]
    assert gate.children(2) == [5, 6]
    # the last level's children are leaves: positions n_nodes + k are experts k
    assert gate.children(6) == [13, 14]
    rng = np.random.default_rng(0)
    XT = _design(50, 4, rng)
    gate.initialize(XT, rng.dirichlet(np.ones(8), 50).T, np.ones(50))
    assert gate.n_parameters() == 7 * (2 - 1) * 4
    assert gate.get_flat().size == gate.n_parameters()
    tree = gate.tree()
    assert [t["node"] for t in tree] == list(range(7))
    assert [t["depth"] for t in tree] == [0, 1, 1, 2, 2, 2, 2]
    assert tree[0]["children"] == [1, 2] and tree[0]["experts"] is None
    assert tree[0]["leaves"] == list(range(8))
    assert tree[2]["leaves"] == [4, 5, 6, 7]
    assert tree[6]["children"] is None and tree[6]["experts"] == [6, 7]
    assert all(np.all(t["coef"][0] == 0) for t in tree)
    assert_allclose(gate.coef, np.stack([t["coef"] for t in tree]))
    assert GATES["hierarchical"] is HierarchicalGate


def test_leaf_order_puts_neighbouring_experts_under_one_node():
    # a start whose experts 0 and 1 own opposite quadrants: as leaves 0, 1 they would share a
    # node that must separate diagonal quadrants, which a linear split cannot
    rng = np.random.default_rng(15)
    x = rng.standard_normal((2, 400))
    XT = np.vstack([np.ones(400), x])
    quadrant = {(True, True): 0, (False, False): 1, (True, False): 2, (False, True): 3}
    owner = np.array([quadrant[(a > 0, b > 0)] for a, b in x.T])
    resp = np.eye(4)[owner].T
    order = HierarchicalGate(4, 2, 2).leaf_order(XT, resp, np.ones(400))
    assert sorted(order) == [0, 1, 2, 3]
    siblings = {frozenset(order[:2]), frozenset(order[2:])}
    # siblings share a half-plane: {(+,+), (+,-)} and {(-,-), (-,+)}, or split on x2
    assert siblings in ({frozenset({0, 2}), frozenset({1, 3})}, {frozenset({0, 3}), frozenset({1, 2})})
    # depth 1 and a gate without features keep the start's order
    assert_allclose(HierarchicalGate(4, 1, 4).leaf_order(XT, resp, np.ones(400)), np.arange(4))
    assert_allclose(HierarchicalGate(4, 2, 2).leaf_order(XT[:1], resp, np.ones(400)), np.arange(4))


def test_node_targets_are_posterior_masses():
    # node v's targets are its children's posterior masses normalised within v, its weights w * h_v
    rng = np.random.default_rng(1)
    resp = rng.dirichlet(np.ones(4), 30).T
    w = rng.uniform(0.5, 2.0, 30)
    targets = HierarchicalGate(4, 2, 2).node_targets(resp, w)
    h_left, h_right = resp[:2].sum(0), resp[2:].sum(0)
    assert_allclose(targets[0][0], np.vstack([h_left, h_right]))
    assert_allclose(targets[0][1], w)
    assert_allclose(targets[1][0], resp[:2] / h_left)
    assert_allclose(targets[1][1], w * h_left)
    assert_allclose(targets[2][0], resp[2:] / h_right)
    assert_allclose(targets[2][1], w * h_right)


def test_node_targets_of_a_massless_node_are_finite():
    resp = np.zeros((4, 3))
    resp[0] = 1.0  # the right subtree has no mass
    targets = HierarchicalGate(4, 2, 2).node_targets(resp, np.ones(3))
    assert np.all(np.isfinite(targets[2][0]))
    assert_allclose(targets[2][1], 0.0)


@pytest.mark.parametrize(
    ("depth", "branching", "penalty", "l1_ratio"),
    [(2, 2, 0.0, 0.0), (3, 2, 0.5, 0.0), (2, 3, 0.1, 0.0), (2, 2, 5.0, 1.0)],
)
def test_m_step_ascends_the_penalised_gate_objective(depth, branching, penalty, l1_ratio):
    rng = np.random.default_rng(2)
    XT = _design(300, 3, rng)
    w = rng.uniform(0.5, 2.0, 300)
    resp = rng.dirichlet(np.ones(branching**depth), 300).T
    gate, _ = _random_gate(depth, branching, 3, rng, penalty=penalty, l1_ratio=l1_ratio)
    values = [_gate_objective(gate, XT, resp, w) - gate.penalty_value()]
    current = gate.evaluate(XT)
    for _ in range(8):
        current = gate.m_step(XT, resp, w, current)
        assert_allclose(current.log, gate.evaluate(XT).log, atol=1e-12)
        values.append(_gate_objective(gate, XT, resp, w) - gate.penalty_value())
    assert np.all(np.diff(values) >= -1e-10 * abs(values[0]))
    assert values[-1] - values[0] > 0
    if l1_ratio:
        # the lasso sets slopes exactly to zero (proximal Newton steps at every node)
        assert np.any(gate.coef[:, 1:, 1:] == 0.0)
        return
    # Newton converges: the gradient of the penalised objective vanishes at the node-wise optimum
    grad = gate.flat_grad(XT, resp, w) - gate.penalty_grad()
    assert np.max(np.abs(grad)) < 1e-6 * np.sum(w)
    # several Newton steps per call reach the same optimum from the start
    again, _ = _random_gate(depth, branching, 3, np.random.default_rng(2), penalty=penalty, newton_steps=20)
    again.m_step(XT, resp, w)
    assert_allclose(again.get_flat(), gate.get_flat(), atol=1e-6)


@pytest.mark.parametrize(("depth", "branching"), [(2, 2), (2, 3), (3, 2)])
def test_flat_grad_matches_finite_differences(depth, branching):
    rng = np.random.default_rng(3)
    XT = _design(120, 3, rng)
    w = rng.uniform(0.5, 2.0, 120)
    resp = rng.dirichlet(np.ones(branching**depth), 120).T
    gate, _ = _random_gate(depth, branching, 3, rng, penalty=0.3)
    theta = gate.get_flat()
    grad = gate.flat_grad(XT, resp, w)
    assert_allclose(gate.flat_grad(XT, resp, w, current=gate.evaluate(XT)), grad)
    pen_grad = gate.penalty_grad()
    fd, fd_pen = np.empty_like(theta), np.empty_like(theta)
    h = 1e-6
    for j in range(theta.size):
        values = []
        for sign in (1.0, -1.0):
            t = theta.copy()
            t[j] += sign * h
            gate.set_flat(t)
            values.append((_gate_objective(gate, XT, resp, w), gate.penalty_value()))
        fd[j] = (values[0][0] - values[1][0]) / (2 * h)
        fd_pen[j] = (values[0][1] - values[1][1]) / (2 * h)
    gate.set_flat(theta)
    # central differences: error O(h^2 * third derivative) + rounding O(eps * |f| / h)
    assert_allclose(grad, fd, rtol=1e-6, atol=1e-5)
    assert_allclose(pen_grad, fd_pen, rtol=1e-6, atol=1e-6)
    assert_allclose(gate.get_flat(), theta)


def test_raw_params_round_trip():
    rng = np.random.default_rng(4)
    X = rng.standard_normal((400, 2)) * [3.0, 0.5] + [1.0, -2.0]
    y = X[:, 0] + rng.standard_normal(400)
    est = MixtureOfExpertsRegressor(4, gate="hierarchical", n_init=1, max_iter=5, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(X, y)
    raw = est.gate_.raw_params(est._scaling)
    assert raw["node_coef"].shape == (3, 2, 3)
    copy = HierarchicalGate(4, 2, 2)
    copy.set_raw_params(raw, est._scaling)
    assert_allclose(copy.coef, est.gate_.coef, atol=1e-12)
    # the raw-scale coefficients are the ones that act on raw X
    XgT, _ = est._design(X)
    for t in est.gate_tree_:
        logits = t["coef"] @ np.vstack([np.ones(400), X.T])
        assert_allclose(
            special.log_softmax(logits, axis=0), est.gate_.nodes[t["node"]].evaluate(XgT).log, atol=1e-10
        )
    with pytest.raises(ValueError, match="node_coef must have shape"):
        HierarchicalGate(8, 3, 2).set_raw_params(raw, est._scaling)


# -- the estimators --------------------------------------------------------------------------


def _flat_data(n=600, seed=5):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 2))
    y = np.where(X[:, 0] > 0, 2.0 + X[:, 1], -1.0 - X[:, 1]) + 0.5 * rng.standard_normal(n)
    return X, y


@pytest.mark.parametrize("n_experts", [2, 3])
def test_depth_one_equals_the_flat_softmax_estimator(n_experts):
    X, y = _flat_data()
    init = np.random.default_rng(6).dirichlet(np.ones(n_experts), X.shape[0])
    common = dict(init=init, tol=1e-12, max_iter=5000, gate_penalty=1e-2)
    flat = MixtureOfExpertsRegressor(n_experts, **common).fit(X, y)
    hme = MixtureOfExpertsRegressor(
        n_experts, gate="hierarchical", gate_branching=n_experts, gate_depth=1, **common
    ).fit(X, y)
    assert flat.converged_ and hme.converged_
    assert len(hme.gate_tree_) == 1
    assert_allclose(hme.gate_tree_[0]["coef"], flat.gate_coef_, atol=1e-8)
    assert_allclose(hme.expert_coef_, flat.expert_coef_, atol=1e-8)
    assert_allclose(hme.noise_variance_, flat.noise_variance_, atol=1e-8)
    assert_allclose(hme.lower_bound_, flat.lower_bound_, atol=1e-10)
    assert_allclose(hme.predict_gate(X), flat.predict_gate(X), atol=1e-8)
    assert hme.n_parameters() == flat.n_parameters()
    assert_allclose(hme.bic(X, y), flat.bic(X, y), rtol=1e-9)


@pytest.mark.parametrize(("n_experts", "depth"), [(4, 2), (8, 3)])
def test_em_objective_is_monotone(n_experts, depth):
    X, y = _flat_data(800, seed=7)
    init = np.random.default_rng(8).dirichlet(np.ones(n_experts), X.shape[0])
    est = MixtureOfExpertsRegressor(
        n_experts, gate="hierarchical", gate_depth=depth, init=init, tol=0.0, max_iter=60
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(X, y)
    lb = est.lower_bounds_
    assert lb.size == 61
    # each EM step is an ascent step: decreases only at rounding level
    assert np.all(np.diff(lb) >= -1e-10 * np.abs(lb[:-1]))
    assert lb[-1] > lb[0]


def test_classifier_em_objective_is_monotone():
    rng = np.random.default_rng(9)
    X = rng.standard_normal((500, 2))
    y = (X[:, 0] * X[:, 1] + 0.3 * rng.standard_normal(500) > 0).astype(int)
    est = MixtureOfExpertsClassifier(4, gate="hierarchical", tol=0.0, max_iter=40, n_init=1, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(X, y)
    lb = est.lower_bounds_
    assert np.all(np.diff(lb) >= -1e-10 * np.abs(lb[:-1]))
    assert_allclose(est.predict_proba(X).sum(axis=1), 1.0)
    assert est.score(X, y) > 0.8  # the XOR pattern a single logistic model cannot fit (~0.5)


# A depth-2 binary HME truth: the root splits on x1, its children on x2, so the four leaves own
# the four quadrants (soft boundaries, slope 4 on standard-normal features). Node coefficients
# (intercept, x1, x2); row 0 of each node is its reference child.
TRUE_NODES = np.array(
    [
        [[0.0, 0.0, 0.0], [0.0, 4.0, 0.0]],  # root: left subtree for x1 < 0
        [[0.0, 0.0, 0.0], [0.0, 0.0, 4.0]],  # node 1: leaf 1 for x2 > 0
        [[0.0, 0.0, 0.0], [0.0, 0.0, -4.0]],  # node 2: leaf 3 for x2 < 0
    ]
)
TRUE_EXPERTS = np.array([[3.0, 1.0, 0.0], [-3.0, 0.0, 1.0], [0.0, -2.0, 0.0], [1.5, 0.0, -2.0]])
TRUE_SIGMA = 0.5


def _simulate_hme(n, seed):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 2))
    XT = np.vstack([np.ones(n), X.T])
    log_g = naive.hme_log_weights(XT, TRUE_NODES, 2, 2)
    u = rng.uniform(size=n)
    leaf = (np.cumsum(np.exp(log_g), axis=0) < u).sum(axis=0)
    leaf = np.minimum(leaf, 3)
    y = np.einsum("ni,ni->n", TRUE_EXPERTS[leaf], XT.T) + TRUE_SIGMA * rng.standard_normal(n)
    log_f = -0.5 * ((y - TRUE_EXPERTS @ XT) / TRUE_SIGMA) ** 2 - np.log(TRUE_SIGMA * np.sqrt(2 * np.pi))
    true_ll = float(np.mean(special.logsumexp(log_g + log_f, axis=0)))
    return X, y, log_g, true_ll


def test_depth_two_hme_recovers_a_four_leaf_truth():
    n = 8000
    X, y, true_log_g, true_ll = _simulate_hme(n, seed=10)
    est = MixtureOfExpertsRegressor(
        4, gate="hierarchical", gate_depth=2, gate_branching=2, gate_penalty=0.0, random_state=0
    ).fit(X, y)
    # the MLE's log-likelihood is at least the truth's (up to the tolerance of the stopping rule)
    assert est.lower_bound_ >= true_ll - 1e-4
    # align the leaves by their expert coefficients (the truth's experts are well apart)
    cost = ((est.expert_coef_[:, None, :] - TRUE_EXPERTS[None]) ** 2).sum(-1)
    rows, cols = linear_sum_assignment(cost)
    perm = rows[np.argsort(cols)]  # fitted leaf perm[k] is true leaf k
    # standard error of an expert coefficient ~ sigma / sqrt(n_k) with n_k ~ n / 4 rows per expert
    # and unit-variance features; 6 standard errors (the soft gate boundaries inflate it a little)
    se = TRUE_SIGMA / np.sqrt(n / 4)
    assert_allclose(est.expert_coef_[perm], TRUE_EXPERTS, atol=6 * se)
    assert_allclose(est.noise_variance_[perm], TRUE_SIGMA**2, atol=6 * TRUE_SIGMA**2 * np.sqrt(2 / (n / 4)))
    # the leaf weights: on average their error is O(1/sqrt(n)) (a slope error of ~0.1 on a
    # boundary of slope 4 moves g by < 0.03 where it matters); compare the mean absolute error
    gate = est.predict_gate(X)[:, perm]
    assert np.mean(np.abs(gate - np.exp(true_log_g).T)) < 0.02
    # (which leaves share a parent is not checked: from some starts the fit pairs the leaves
    # the other way, {0, 2} and {1, 3}, and its leaf weights and likelihood still pass the
    # checks above, so the pairing is not identified from these data)


@pytest.mark.parametrize("expert", ["gaussian", "student_t", "poisson", "gamma"])
def test_every_expert_family_fits(expert):
    rng = np.random.default_rng(11)
    X = rng.standard_normal((400, 2))
    eta = np.where(X[:, 0] > 0, 1.0 + 0.5 * X[:, 1], 0.2 - 0.5 * X[:, 1])
    y = {
        "gaussian": eta + 0.3 * rng.standard_normal(400),
        "student_t": eta + 0.3 * rng.standard_t(4, 400),
        "poisson": rng.poisson(np.exp(eta)).astype(float),
        "gamma": rng.gamma(3.0, np.exp(eta) / 3.0),
    }[expert]
    est = MixtureOfExpertsRegressor(
        4, expert=expert, gate="hierarchical", n_init=2, max_iter=100, random_state=0
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(X, y)
    assert isinstance(est.gate_, HierarchicalGate)
    assert np.all(np.isfinite(est.lower_bounds_))
    assert np.all(np.diff(est.lower_bounds_) >= -1e-9 * np.abs(est.lower_bounds_[:-1]))
    assert_allclose(est.predict_gate(X).sum(axis=1), 1.0)
    assert np.all(np.isfinite(est.predict(X)))
    assert np.all(np.isfinite(est.score_samples(X, y)))


def test_n_parameters_counts_every_node():
    X, y = _flat_data(300)
    est = MixtureOfExpertsRegressor(8, gate="hierarchical", n_init=1, max_iter=3, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(X, y)
    # 7 binary nodes of (1 + 2) coefficients, 8 experts with 3 coefficients and a variance
    gate_params = 7 * 1 * 3
    assert est.gate_.n_parameters() == gate_params
    n_params = gate_params + 8 * 4
    ll = float(np.sum(est.score_samples(X, y)))
    assert_allclose(est.bic(X, y), -2 * ll + n_params * np.log(300), rtol=1e-10)


def test_lbfgs_reaches_the_em_optimum():
    X, y, true_log_g, _ = _simulate_hme(2000, seed=16)
    # both start from the truth's leaf weights as responsibilities, near the same optimum
    common = dict(gate="hierarchical", init=np.exp(true_log_g).T, max_iter=3000, tol=1e-10)
    em = MixtureOfExpertsRegressor(4, **common).fit(X, y)
    lbfgs = MixtureOfExpertsRegressor(4, solver="lbfgs", **common).fit(X, y)
    assert em.converged_ and lbfgs.converged_
    # the same penalised likelihood maximised two ways: equal to the stopping tolerances
    assert_allclose(lbfgs.lower_bound_, em.lower_bound_, atol=1e-7)
    assert_allclose(lbfgs.expert_coef_, em.expert_coef_, atol=1e-3)


def test_inference_partial_fit_and_warm_start():
    X, y = _flat_data(600, seed=14)
    est = MixtureOfExpertsRegressor(4, gate="hierarchical", n_init=1, random_state=0, max_iter=200)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(X, y)
        res = fit_inference(est, X, y)
        names = list(res.to_frame().index)
    assert len(res.bse) == est.gate_.n_parameters() + est.experts_.n_parameters()
    assert any("gate[node 2, child 1]" in str(name) for name in names)
    # warm start continues from the previous tree: it starts at the previous objective
    first = est.lower_bound_
    est.set_params(warm_start=True, max_iter=5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(X, y)
    assert est.lower_bounds_[0] == pytest.approx(first, abs=1e-10)
    # online EM updates the tree
    before = est.gate_.get_flat().copy()
    est.partial_fit(X[:100], y[:100])
    assert not np.allclose(est.gate_.get_flat(), before)
    assert_allclose(est.predict_gate(X).sum(axis=1), 1.0)


# -- bad input --------------------------------------------------------------------------------


def test_bad_tree_shapes_raise():
    X, y = _flat_data(100)
    with pytest.raises(ValueError, match=r"n_experts=5 is not a power >= 1 of 2"):
        MixtureOfExpertsRegressor(5, gate="hierarchical").fit(X, y)
    with pytest.raises(ValueError, match=r"branching\*\*depth=8 leaves .* but n_experts=4"):
        MixtureOfExpertsRegressor(4, gate="hierarchical", gate_depth=3).fit(X, y)
    with pytest.raises(ValueError, match="gate_branching"):
        MixtureOfExpertsRegressor(4, gate="hierarchical", gate_branching=1).fit(X, y)
    with pytest.raises(ValueError, match="gate_depth"):
        MixtureOfExpertsRegressor(4, gate="hierarchical", gate_depth=0).fit(X, y)
    with pytest.raises(ValueError, match="top_k"):
        MixtureOfExpertsRegressor(4, gate="hierarchical", top_k=2).fit(X, y)
    with pytest.raises(ValueError, match="depth must be an integer >= 1"):
        HierarchicalGate(1, 0)
    with pytest.raises(ValueError, match="branching must be an integer >= 2"):
        HierarchicalGate(4, 2, 1.5)
    assert tree_depth(9, 3) == 2
    with pytest.raises(ValueError, match="not a power"):
        tree_depth(1, 2)


def test_attributes_of_other_gates_raise():
    X, y = _flat_data(200)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hme = MixtureOfExpertsRegressor(2, gate="hierarchical", n_init=1, max_iter=5).fit(X, y)
        flat = MixtureOfExpertsRegressor(2, n_init=1, max_iter=5).fit(X, y)
    with pytest.raises(AttributeError, match="gate_tree_"):
        _ = hme.gate_coef_
    with pytest.raises(AttributeError, match="gate='hierarchical'"):
        _ = flat.gate_tree_
    # relabelling leaves would need the tree's symmetries: refused, not silently half done
    with pytest.raises(ValueError, match="cannot relabel the experts of a hierarchical gate"):
        permute_experts(hme, [1, 0])
    # a softmax gate's parameters are not a hierarchical gate's
    assert not isinstance(flat.gate_, HierarchicalGate) and isinstance(flat.gate_, SoftmaxGate)
