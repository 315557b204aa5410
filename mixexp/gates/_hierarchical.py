"""Hierarchical mixtures of experts (Jordan & Jacobs 1994): a tree of softmax gates."""

from typing import NamedTuple

import numpy as np

from .._scaling import linear_to_raw
from ._softmax import _MAX_HALVINGS, GateEval, SoftmaxGate, newton_direction, slope_penalty

#: smallest node mass used to normalise a node's targets (rows below it carry ~no weight)
_TINY_MASS = 1e-300


def tree_depth(n_experts, branching):
    """The depth ``D`` with ``branching**D == n_experts``, or a ValueError.

    Parameters
    ----------
    n_experts : int
    branching : int

    Returns
    -------
    int
    """
    depth, leaves = 0, 1
    while leaves < n_experts:
        leaves *= branching
        depth += 1
    if leaves != n_experts or depth < 1:
        raise ValueError(
            f"a hierarchical gate with branching={branching} has branching**depth leaves (the experts); "
            f"n_experts={n_experts} is not a power >= 1 of {branching}. Choose n_experts in "
            f"{[branching**d for d in range(1, 5)]} or another gate_branching."
        )
    return depth


def _node_log_softmax(XT, coef):
    """Log-softmax of every node's logits: ``coef`` (V, B, p) -> log, prob (V, B, n).

    One matrix product for all the nodes (plain numpy: a tree's nodes are many
    small softmaxes, where one call beats one Numba kernel call per node).
    """
    V, B, p = coef.shape
    logits = (coef.reshape(V * B, p) @ XT).reshape(V, B, -1)
    logits -= logits.max(axis=1, keepdims=True)
    prob = np.exp(logits)
    total = prob.sum(axis=1, keepdims=True)
    logits -= np.log(total)
    prob /= total
    return logits, prob


def _node_objectives(targets, weights, log):
    """Each node's ``sum_i w_vi sum_c t_vci log g_vc(x_i)``, (V,); terms with t = 0 count 0."""
    # log-softmax of finite logits is finite, so t * log is 0 where t = 0
    return np.einsum("vn,vbn,vbn->v", weights, targets, log)


class HierarchicalGateEval(NamedTuple):
    """A hierarchical gate evaluated on a design.

    ``log`` and ``prob`` are the (K, n) leaf log-weights and weights; ``nodes``
    the :class:`GateEval` of every internal node, (branching, n) each, in the
    gate's node order; ``node_log`` and ``node_prob`` the same stacked,
    (n_nodes, branching, n).
    """

    log: np.ndarray
    prob: np.ndarray
    nodes: list
    node_log: np.ndarray | None = None
    node_prob: np.ndarray | None = None


class HierarchicalGate:
    """Gate of a hierarchical mixture of experts (HME; Jordan & Jacobs 1994).

    A complete tree of depth ``D`` in which every internal node has
    ``branching`` (B) children and whose ``B**D`` leaves are the experts. Each
    internal node ``v`` is a softmax gate over its children, ``g_{v,c}(x) =
    softmax_c(x . w_{v,c})``, with child 0 its reference (``w_{v,0} = 0``). A
    leaf's weight is the product of the node probabilities on its path from
    the root::

        log g_k(x) = sum_{(v, c) on the path to k} log g_{v,c}(x).

    Nodes are numbered breadth first (the root is node 0); the children of
    node ``v`` are ``v B + 1, ..., v B + B``, and the tree position
    ``n_nodes + k`` (``n_nodes = (B**D - 1) / (B - 1)`` internal nodes) is
    expert ``k``, so experts that share a parent are consecutive.

    EM (Jordan & Jacobs 1994): given the leaves' responsibilities ``r_ki``,
    a node's posterior mass is ``h_vi = sum_{k below v} r_ki``; node ``v``'s
    M-step maximises ``sum_i w_i h_vi sum_c (h_ci / h_vi) log g_{v,c}(x_i)``
    (a weighted multinomial logistic fit, the targets the children's masses
    normalised within the node, the weights ``w_i h_vi``) by the Newton steps
    with step halving of :class:`SoftmaxGate`. The gate's objective
    ``sum_i w_i sum_k r_ki log g_k(x_i)`` is the sum of these node
    objectives, each node's step ascends its own, so the gate step ascends and
    EM never decreases the log-likelihood (a generalised EM step).

    Parameters
    ----------
    n_experts : int
        Number of leaves K; must equal ``branching**depth``.
    depth : int
        Depth D >= 1 of the tree (1 is a flat softmax gate).
    branching : int, default=2
        Children per internal node, >= 2.
    penalty : float, default=0.0
        L2 (elastic-net with ``l1_ratio``) penalty on each node's slope
        coefficients, as in :class:`SoftmaxGate`; the gate's penalty is the
        sum over the nodes.
    newton_steps : int, default=1
        Newton steps per node per EM iteration.
    l1_ratio : float, default=0.0
        Elastic-net mixing of each node's penalty.

    Attributes
    ----------
    nodes : list of SoftmaxGate
        The internal nodes' gates, breadth first; ``nodes[v].coef`` is
        (branching, n_design_features), row 0 zero.
    """

    kind = "hierarchical"

    def __init__(self, n_experts, depth, branching=2, penalty=0.0, newton_steps=1, l1_ratio=0.0):
        for name, value, low in (("depth", depth, 1), ("branching", branching, 2)):
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}; got {value!r}.")
        if n_experts != branching**depth:
            raise ValueError(
                f"a hierarchical gate of depth={depth} and branching={branching} has "
                f"branching**depth={branching**depth} leaves (the experts), but n_experts={n_experts}."
            )
        self.n_experts = int(n_experts)
        self.depth = int(depth)
        self.branching = int(branching)
        self.penalty = penalty
        self.newton_steps = newton_steps
        self.l1_ratio = l1_ratio
        self.n_nodes = (self.branching**self.depth - 1) // (self.branching - 1)
        self.nodes = [
            SoftmaxGate(self.branching, penalty=penalty, newton_steps=newton_steps, l1_ratio=l1_ratio)
            for _ in range(self.n_nodes)
        ]

    # -- tree structure --------------------------------------------------------
    def children(self, node):
        """Tree positions of the children of internal node ``node``.

        Positions ``>= n_nodes`` are leaves: position ``n_nodes + k`` is expert ``k``.
        """
        return list(range(node * self.branching + 1, node * self.branching + self.branching + 1))

    def _level_nodes(self, level):
        """Internal nodes at ``level`` (the root is level 0), in order."""
        first = (self.branching**level - 1) // (self.branching - 1)
        return range(first, first + self.branching**level)

    def _sync(self):
        # the penalty may be changed on the gate (online EM scales it): pass it to the nodes
        for node in self.nodes:
            node.penalty = self.penalty
            node.l1_ratio = self.l1_ratio
            node.newton_steps = self.newton_steps

    @property
    def coef(self):
        """Node coefficients stacked, (n_nodes, branching, n_design_features); None before fitting."""
        if self.nodes[0].coef is None:
            return None
        return np.stack([node.coef for node in self.nodes])

    # -- interface -------------------------------------------------------------
    def n_parameters(self):
        """Number of free parameters, ``n_nodes * (branching - 1) * n_design_features``."""
        return sum(node.n_parameters() for node in self.nodes)

    def evaluate(self, XT):
        """Leaf log-weights and weights, with every node's evaluation.

        Returns
        -------
        HierarchicalGateEval
        """
        return self._combine(*_node_log_softmax(XT, self.coef))

    def _combine(self, node_log, node_prob):
        """The leaves' log-weights from the nodes' (n_nodes, branching, n) log-probabilities."""
        log = node_log[0]
        for level in range(1, self.depth):
            # the nodes of this level are the children of the level above, in order: add each
            # node's log-probabilities to its parent's log-weight
            nodes = self._level_nodes(level)
            log = (log[:, None, :] + node_log[nodes.start : nodes.stop]).reshape(-1, log.shape[-1])
        log = np.array(log)  # its own memory (the E-step may overwrite buffers it is given)
        evals = [GateEval(node_log[v], node_prob[v]) for v in range(self.n_nodes)]
        return HierarchicalGateEval(log, np.exp(log), evals, node_log, node_prob)

    def log_weights(self, XT):
        """Leaf log mixing weights, a (K, n) array of log g_k(x_i)."""
        return self.evaluate(XT).log

    def penalty_value(self):
        """The penalty subtracted from the log-likelihood: the sum over the nodes."""
        self._sync()
        return float(sum(node.penalty_value() for node in self.nodes))

    def node_targets(self, resp, sample_weight):
        """Each node's M-step targets and weights from the leaves' responsibilities.

        Parameters
        ----------
        resp : ndarray of shape (K, n)
        sample_weight : ndarray of shape (n,)

        Returns
        -------
        list of (targets, weights)
            For node ``v``: the children's posterior masses divided by ``h_v``
            (branching, n) and ``sample_weight * h_v`` (n,).
        """
        targets, weights = self._stacked_targets(resp, sample_weight)
        return list(zip(targets, weights, strict=True))

    def _stacked_targets(self, resp, sample_weight):
        """:meth:`node_targets` as arrays, (n_nodes, branching, n) and (n_nodes, n)."""
        B, n = self.branching, resp.shape[1]
        masses = [None] * (self.depth + 1)
        masses[self.depth] = np.asarray(resp, dtype=float)
        for level in range(self.depth - 1, -1, -1):
            masses[level] = masses[level + 1].reshape(B**level, B, n).sum(axis=1)
        h = np.concatenate(masses[:-1])  # (n_nodes, n), breadth first
        children = np.concatenate([m.reshape(-1, B, n) for m in masses[1:]])
        empty = h <= _TINY_MASS
        targets = children / np.maximum(h, _TINY_MASS)[:, None, :]
        # a row of no mass carries no weight; uniform targets keep it finite
        if empty.any():
            targets[np.broadcast_to(empty[:, None, :], targets.shape)] = 1.0 / B
        return targets, h * sample_weight

    def leaf_order(self, XT, resp, sample_weight):
        """An order of the start's experts that puts experts close in x under one node.

        A tree gate can only separate groups of leaves that its nodes split
        linearly: four experts on the quadrants of the plane are gated by a
        binary tree only if siblings share a half-plane. Starts assign
        experts to leaves arbitrarily, so before the parts are initialised the
        estimators reorder the start's responsibilities: each expert's centroid
        in the gate features (``sum_i w_i r_ki x_i / sum_i w_i r_ki``) is
        computed, and from the root down each node's experts are sorted along
        the first principal axis of their centroids and cut into ``branching``
        consecutive groups, one per child (a k-d-tree-like split).

        Parameters
        ----------
        XT : ndarray of shape (p, n)
            Gate design, constant first row.
        resp : ndarray of shape (K, n)
        sample_weight : ndarray of shape (n,)

        Returns
        -------
        order : ndarray of shape (K,)
            Leaf ``j`` gets the start's expert ``order[j]`` (``resp[order]``).
        """
        K = self.n_experts
        if self.depth == 1 or XT.shape[0] < 2:
            return np.arange(K)  # no structure to respect / no feature to split on
        mass = resp @ sample_weight
        centroids = (resp * sample_weight) @ XT[1:].T / np.maximum(mass, _TINY_MASS)[:, None]

        def split(experts):
            if experts.size == 1:
                return experts
            points = centroids[experts]
            weights = mass[experts] + _TINY_MASS
            centred = (points - np.average(points, axis=0, weights=weights)) * np.sqrt(weights)[:, None]
            axis = np.linalg.svd(centred, full_matrices=False)[2][0]
            ordered = experts[np.argsort(points @ axis, kind="stable")]
            size = experts.size // self.branching
            return np.concatenate([split(ordered[c * size : (c + 1) * size]) for c in range(self.branching)])

        return split(np.arange(K))

    def initialize(self, XT, resp, sample_weight, max_steps=1):
        """Fit every node to the responsibilities from scratch (coefficients start at 0)."""
        for node in self.nodes:
            node.coef = np.zeros((self.branching, XT.shape[0]))
        return self.m_step(XT, resp, sample_weight, max_steps=max_steps)

    def m_step(self, XT, resp, sample_weight, current=None, stats=None, max_steps=None):
        """Node-wise Newton steps with step halving (Jordan & Jacobs' EM for the gate).

        Parameters
        ----------
        XT : ndarray of shape (p, n)
            Gate design, feature-major, constant first row.
        resp : ndarray of shape (K, n)
            Leaf responsibilities.
        sample_weight : ndarray of shape (n,)
        current : HierarchicalGateEval, optional
            The gate evaluated at the current coefficients, if already known.
        stats : None
            Unused (no fused pass); accepted for the gate interface.
        max_steps : int, optional
            Newton steps per node (default ``newton_steps``).

        Returns
        -------
        HierarchicalGateEval
            The gate evaluated at the new coefficients.
        """
        self._sync()
        if isinstance(current, HierarchicalGateEval) and current.node_log is not None:
            log, prob = current.node_log, current.node_prob
        else:
            log, prob = _node_log_softmax(XT, self.coef)
        targets, weights = self._stacked_targets(resp, sample_weight)
        steps = self.newton_steps if max_steps is None else max_steps
        for _ in range(steps):
            log, prob, moved = self._newton_step(XT, targets, weights, log, prob)
            if not moved:
                break
        return self._combine(log, prob)

    def _newton_step(self, XT, targets, weights, log, prob):
        """One Newton step with step halving at every node, all nodes at once.

        The node objectives are separate (each node has its own coefficients),
        so each node keeps the first step size that raises its own penalised
        objective; a node where none does keeps its coefficients.

        Returns
        -------
        log, prob : ndarray of shape (n_nodes, branching, n)
            The nodes evaluated at the new coefficients.
        moved : bool
            Whether a node's objective rose by more than rounding.
        """
        B, p = self.branching, XT.shape[0]
        q = _node_objectives(targets, weights, log)
        # gradient of node v's objective in rows 1..B-1, and its negative Hessian
        # sum_i w_vi (diag(g) - g g^T)_{ab} x_i x_i^T (a, b = 1..B-1)
        grad = ((targets[:, 1:] - prob[:, 1:]) * weights[:, None, :]) @ XT.T
        directions, old = [], np.empty(self.n_nodes)
        for v, node in enumerate(self.nodes):
            hess = np.empty(((B - 1) * p, (B - 1) * p))
            g = prob[v, 1:]
            for a in range(B - 1):
                for b in range(a, B - 1):
                    c = weights[v] * ((g[a] if a == b else 0.0) - g[a] * g[b])
                    block = (XT * c) @ XT.T
                    hess[a * p : (a + 1) * p, b * p : (b + 1) * p] = block
                    hess[b * p : (b + 1) * p, a * p : (a + 1) * p] = block.T
            delta, old[v] = newton_direction(
                node.coef, q[v], grad[v], hess, node.penalty, True, node.l1_ratio
            )
            directions.append(delta)
        base = self.coef
        todo = np.arange(self.n_nodes)
        t = 1.0
        moved = False
        copied = False
        for _ in range(_MAX_HALVINGS):
            coef = base[todo].copy()
            coef[:, 1:] += t * np.stack([directions[v] for v in todo])
            new_log, new_prob = _node_log_softmax(XT, coef)
            new_q = _node_objectives(targets[todo], weights[todo], new_log)
            keep = []
            for j, v in enumerate(todo):
                node = self.nodes[v]
                new_obj = new_q[j] - slope_penalty(coef[j], node.penalty, True, node.l1_ratio)
                if np.isfinite(new_obj) and new_obj >= old[v]:
                    node.coef = coef[j]
                    moved |= new_obj - old[v] > 1e-12 * max(1.0, abs(q[v]))
                else:
                    keep.append(j)
            if len(keep) == 0 and todo.size == self.n_nodes:
                return new_log, new_prob, moved  # every node took the full step
            if not copied:  # the caller's arrays stay as they were
                log, prob, copied = log.copy(), prob.copy(), True
            accepted = np.setdiff1d(np.arange(todo.size), keep)
            log[todo[accepted]], prob[todo[accepted]] = new_log[accepted], new_prob[accepted]
            todo = todo[keep]
            if todo.size == 0:
                break
            t *= 0.5
        return log, prob, moved

    # the EM loop checks for a deferred (fused-pass) step; this gate takes its steps in m_step
    pending = False

    # -- raw scale -----------------------------------------------------------------
    def raw_params(self, scaling, intercept=True):
        """Parameters on the raw data's scale: ``{"node_coef": (n_nodes, branching, 1 + p)}``."""
        return {
            "node_coef": np.stack(
                [linear_to_raw(node.coef, scaling.gate_mean, scaling.gate_scale, True) for node in self.nodes]
            )
        }

    def set_raw_params(self, params, scaling, intercept=True):
        """Set the parameters from :meth:`raw_params`' output under ``scaling``."""
        node_coef = np.asarray(params["node_coef"], dtype=float)
        if node_coef.shape[:2] != (self.n_nodes, self.branching):
            raise ValueError(
                f"node_coef must have shape (n_nodes, branching, 1 + p) = ({self.n_nodes}, {self.branching}, "
                f"...); got {node_coef.shape}."
            )
        for node, coef in zip(self.nodes, node_coef, strict=True):
            node.set_raw_params({"coef": coef}, scaling)

    def tree(self, scaling=None):
        """The node structure: one dict per internal node, breadth first.

        Parameters
        ----------
        scaling : Scaling, optional
            Give the coefficients on the raw data's scale under ``scaling``
            (default: the internal, standardised scale).

        Returns
        -------
        list of dict
            Keys ``"node"`` (its position), ``"depth"`` (the root is 0),
            ``"children"`` (positions of internal children, or ``None``),
            ``"experts"`` (for nodes just above the leaves, the experts they
            gate; else ``None``), ``"leaves"`` (every expert below the node)
            and ``"coef"`` (branching, 1 + p), row 0 the reference child's zero row.
        """
        out = []
        for level in range(self.depth):
            span = self.branching ** (self.depth - level)
            for j, v in enumerate(self._level_nodes(level)):
                kids = self.children(v)
                leaf_parent = level == self.depth - 1
                coef = self.nodes[v].coef
                if scaling is not None:
                    coef = linear_to_raw(coef, scaling.gate_mean, scaling.gate_scale, True)
                out.append(
                    {
                        "node": v,
                        "depth": level,
                        "children": None if leaf_parent else kids,
                        "experts": [c - self.n_nodes for c in kids] if leaf_parent else None,
                        "leaves": list(range(j * span, (j + 1) * span)),
                        "coef": np.array(coef),
                    }
                )
        return out

    # -- flat parameter vector -------------------------------------------------------
    def get_flat(self):
        """Free parameters: every node's (rows 1..B-1 of its ``coef``), node after node."""
        return np.concatenate([node.get_flat() for node in self.nodes])

    def set_flat(self, theta):
        """Set the free parameters from :meth:`get_flat`'s layout."""
        theta = np.asarray(theta, dtype=float).ravel()
        size = theta.size // self.n_nodes
        if size * self.n_nodes != theta.size:
            raise ValueError(f"theta has {theta.size} entries, not a multiple of n_nodes={self.n_nodes}.")
        for v, node in enumerate(self.nodes):
            node.set_flat(theta[v * size : (v + 1) * size])

    def flat_grad(self, XT, resp, sample_weight, current=None):
        """Gradient of ``sum_i w_i sum_k r_ki log g_k(x_i)`` with respect to :meth:`get_flat`.

        Node ``v``'s block is its softmax gradient with the targets and weights
        of :meth:`node_targets` (no penalty).

        Parameters
        ----------
        XT : ndarray of shape (p, n)
        resp : ndarray of shape (K, n)
        sample_weight : ndarray of shape (n,)
        current : HierarchicalGateEval, optional

        Returns
        -------
        ndarray of shape (n_parameters,)
        """
        node_evals = current.nodes if isinstance(current, HierarchicalGateEval) else [None] * self.n_nodes
        return np.concatenate(
            [
                node.flat_grad(XT, t, w, current=ev)
                for node, (t, w), ev in zip(
                    self.nodes, self.node_targets(resp, sample_weight), node_evals, strict=True
                )
            ]
        )

    def penalty_grad(self):
        """Gradient of :meth:`penalty_value` with respect to :meth:`get_flat`."""
        self._sync()
        return np.concatenate([node.penalty_grad() for node in self.nodes])
