"""Hierarchical mixtures of experts (Jordan & Jacobs 1994): a tree of softmax gates."""

from typing import NamedTuple

import numpy as np

from .._kernels import fused_hme, hme_leaves, hme_node_stats, hme_nodes
from .._scaling import linear_to_raw
from ._softmax import _MAX_HALVINGS, GateEval, SoftmaxGate, newton_direction, slope_penalty

#: smallest node mass used to normalise a node's targets (rows below it carry ~no weight)
_TINY_MASS = 1e-300
#: step sizes the node step halving tries in one read of the data
_HALVING_BATCH = 8
#: candidate node coefficients per read at most (bounds the kernel's per-block scratch)
_MAX_CANDIDATES = 64


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


class HierarchicalGateEval(NamedTuple):
    """A hierarchical gate evaluated on a design.

    ``log`` and ``prob`` are the (K, n) leaf log-weights and weights; ``nodes``
    the :class:`GateEval` of every internal node, (branching, n) each, in the
    gate's node order; ``node_log`` and ``node_prob`` the same stacked,
    (n_nodes, branching, n). The EM pass (:meth:`HierarchicalGate.em_pass`)
    keeps the nodes' arrays in per-block scratch only: its evaluations have
    ``nodes=[]`` and ``node_log = node_prob = None``.
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

    In the EM loop the gate brings its own pass (:meth:`em_pass`, the Numba
    kernel :func:`mixexp._kernels.fused_hme`): one read of the data evaluates
    every node and the leaves, checks the last gate step node by node, runs
    the E-step (with the Gaussian experts' log-densities and moments for
    ``expert="gaussian"``) and sums every node's Newton statistics. Each
    node's Newton step is then proposed (:meth:`propose`) and checked by the
    next pass under the responsibilities it came from (:meth:`accept`); a
    node whose step did not ascend is halved (:meth:`backtrack`) as in
    :meth:`m_step`, so the iterates are those of :meth:`m_step` up to rounding.

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
        self._pending = None
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
        node_log, node_prob, _, (log, prob) = hme_nodes(XT, self.coef, leaves=True)
        return self._eval(log, prob, node_log, node_prob)

    def _eval(self, log, prob, node_log, node_prob):
        evals = [GateEval(node_log[v], node_prob[v]) for v in range(self.n_nodes)]
        return HierarchicalGateEval(log, prob, evals, node_log, node_prob)

    def _combine(self, node_log, node_prob):
        """The gate's evaluation from the nodes' (n_nodes, branching, n) log-softmax and softmax."""
        return self._eval(*hme_leaves(node_log), node_log, node_prob)

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
        self._pending = None
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
        stats : tuple (q, grad, hess), optional
            Every node's objective (n_nodes,), gradient (n_nodes, branching - 1, p)
            and negative Hessian at the current coefficients under ``resp``,
            as :func:`mixexp._kernels.hme_node_stats` returns them, if already
            known (used for the first Newton step).
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
            log, prob, _, _ = hme_nodes(XT, self.coef)
        steps = self.newton_steps if max_steps is None else max_steps
        for step in range(steps):
            if stats is None or step > 0:
                stats = hme_node_stats(XT, log, prob, resp, sample_weight)
            log, prob, moved = self._newton_step(XT, resp, sample_weight, log, prob, stats)
            if not moved:
                break
        return self._combine(log, prob)

    def _directions(self, q, grad, hess):
        """Every node's Newton direction (list of (branching - 1, p)) and penalised objective (n_nodes,).

        Each node's is :func:`newton_direction`'s; with a ridge penalty (or
        none) the nodes' damped Newton systems are solved in one batched call
        (the same systems, the same LAPACK solve, without a Python call per node).
        """
        penalty, l1_ratio = self.penalty, self.l1_ratio
        if not (l1_ratio > 0.0 and penalty > 0.0):
            coef = self.coef
            V, B, p = coef.shape
            m = (B - 1) * p
            pen_mask = np.full(p, float(penalty))
            pen_mask[0] = 0.0  # the intercept is not penalised
            g = (grad - coef[:, 1:] * pen_mask).reshape(V, m, 1)
            H = hess.copy()
            diag = np.arange(m)
            H[:, diag, diag] += np.tile(pen_mask, B - 1)
            # newton_direction's Levenberg damping, node by node
            H[:, diag, diag] += 1e-10 * np.maximum(1.0, H[:, diag, diag].sum(axis=1) / m)[:, None]
            try:
                delta = np.linalg.solve(H, g)[..., 0].reshape(V, B - 1, p)
            except np.linalg.LinAlgError:
                pass  # a singular node: newton_direction's least-squares fallback, node by node
            else:
                old = np.array([q[v] - slope_penalty(coef[v], penalty, True, l1_ratio) for v in range(V)])
                return list(delta), old
        directions, old = [], np.empty(self.n_nodes)
        for v, node in enumerate(self.nodes):
            delta, old[v] = newton_direction(
                node.coef, q[v], grad[v], hess[v], node.penalty, True, node.l1_ratio
            )
            directions.append(delta)
        return directions, old

    def _newton_step(self, XT, resp, sample_weight, log, prob, stats):
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
        q = stats[0]
        directions, old = self._directions(*stats)
        every = np.arange(self.n_nodes)
        return self._halving(
            XT, resp, sample_weight, self.coef, directions, old, q, every, 1.0, _MAX_HALVINGS, log, prob
        )

    def _halving(
        self, XT, resp, sample_weight, base, directions, old, q, todo, first, trials, log=None, prob=None
    ):  # fmt: skip
        """Step halving of the nodes ``todo`` from ``base`` (n_nodes, branching, p) along ``directions``.

        Step sizes ``first, first / 2, ...`` (``trials`` of them); each node
        keeps the first whose penalised objective under ``resp`` is not below
        ``old[v]`` (``q[v]``, its unpenalised objective at ``base``, scales the
        rounding threshold of ``moved``); a node where none does keeps
        ``base``. Up to ``_HALVING_BATCH`` step sizes are tried in one read of
        the data (the same choice as trying them one at a time). With
        ``log``/``prob`` (the nodes at ``base``; every node in ``todo``) the
        first step size is tried alone, with the nodes' arrays, and the nodes
        at the new coefficients are returned (new arrays when some node did
        not take the first step); else ``None, None``. Also returns ``moved``.
        """
        B, p = self.branching, base.shape[2]
        moved = False
        t, left = first, trials
        if log is not None:
            coefs = self._candidates(base, directions, todo, [t])
            new_log, new_prob, new_q, _ = hme_nodes(XT, coefs[0], todo, resp, sample_weight)
            taken, moved = self._take_first(todo, coefs, new_q[None], old, q)
            if taken.all() and todo.size == self.n_nodes:
                return new_log, new_prob, moved  # every node took the full step
            log, prob = log.copy(), prob.copy()  # the caller's arrays stay as they were
            log[todo[taken]], prob[todo[taken]] = new_log[taken], new_prob[taken]
            todo, t, left = todo[~taken], 0.5 * t, left - 1
        later = []
        while todo.size and left > 0:
            T = min(left, _HALVING_BATCH, max(1, _MAX_CANDIDATES // todo.size))
            ts = t * 0.5 ** np.arange(T)
            coefs = self._candidates(base, directions, todo, ts)
            _, _, new_q, _ = hme_nodes(
                XT, coefs.reshape(-1, B, p), np.tile(todo, T), resp, sample_weight, nodes=False
            )
            taken, step_moved = self._take_first(todo, coefs, new_q.reshape(T, todo.size), old, q)
            moved |= step_moved
            later.extend(todo[taken])
            todo, t, left = todo[~taken], 0.5 * ts[-1], left - T
        if log is not None and later:
            later = np.sort(np.array(later))
            log[later], prob[later], _, _ = hme_nodes(XT, self.coef[later], later)
        return log, prob, moved

    @staticmethod
    def _candidates(base, directions, todo, ts):
        """``base[v]`` plus ``t`` times node v's direction (rows 1..B-1): (len(ts), len(todo), B, p)."""
        step = np.stack([directions[v] for v in todo])
        coefs = np.empty((len(ts), *base[todo].shape))
        for s, t in enumerate(ts):
            coefs[s] = base[todo]
            coefs[s, :, 1:] += t * step
        return coefs

    def _take_first(self, todo, coefs, q_new, old, q):
        """Give node ``todo[j]`` the first ``coefs[s, j]`` whose penalised objective is >= ``old``.

        ``q_new[s, j]`` is the unpenalised objective of ``coefs[s, j]``.
        Returns which nodes took one (bool, (len(todo),)) and ``moved``
        (whether an objective rose by more than rounding).
        """
        taken = np.zeros(todo.size, dtype=bool)
        moved = False
        for j, v in enumerate(todo):
            node = self.nodes[v]
            for s in range(coefs.shape[0]):
                new_obj = q_new[s, j] - slope_penalty(coefs[s, j], node.penalty, True, node.l1_ratio)
                if np.isfinite(new_obj) and new_obj >= old[v]:
                    node.coef = coefs[s, j]
                    moved |= new_obj - old[v] > 1e-12 * max(1.0, abs(q[v]))
                    taken[j] = True
                    break
        return taken, moved

    # -- the EM loop's pass and deferred step (see em_pass) ----------------------------------
    #: take the Newton step in the EM pass (proposed, then checked by the next pass); False
    #: makes every EM iteration run :meth:`m_step` instead (same iterates, one more read of the data)
    fused = True

    @property
    def pending(self):
        """Whether a step proposed by :meth:`propose` awaits the next pass."""
        return getattr(self, "_pending", None) is not None

    def em_pass(self, experts, data, resp_prev, out):
        """The EM loop's pass for this gate (see :func:`mixexp.solvers.run_em`).

        One call of the kernel :func:`mixexp._kernels.fused_hme`: the tree
        at the current coefficients (leaves ``log``/``prob``), each node's
        objective under ``resp_prev`` (the check of a proposed step, for
        :meth:`accept`), the E-step, and every node's objective, gradient and
        negative Hessian under the new responsibilities (for :meth:`propose`).
        Gaussian linear experts (``experts.kind == "gaussian"``) are evaluated
        in the kernel, which then also returns their weighted moments; other
        families give their log-densities first. When the pending step is a
        whole :meth:`m_step` (``newton_steps > 1``, or ``fused = False``) it
        is taken here first, under ``resp_prev``.

        Parameters
        ----------
        experts : ExpertFamily
        data : Design
        resp_prev : ndarray of shape (K, n) or None
            The responsibilities the pending step was computed from.
        out : tuple of three ndarrays of shape (K, n) or None
            Buffers the pass may overwrite (log-weights, weights, responsibilities).

        Returns
        -------
        Pass
        """
        from ..solvers._em import Pass

        if self.pending and self._pending[0] == "m_step":
            stats = self._pending[1]
            self._pending = None
            self.m_step(data.XgT, resp_prev, data.sample_weight, stats=stats)
        out = (None, None, None) if out is None else out
        if experts.kind == "gaussian":
            log_prob, gaussian = None, (data.XeT, data.y, experts.coef, experts.var)
        else:
            log_prob, gaussian = experts.log_prob(data.XeT, data.y), None
            out = (out[0], out[1], log_prob)  # the responsibilities overwrite the log-densities
        check = resp_prev if self.pending else None
        resp, ll_rows, total, leaves, q_prev, gate_stats, expert_stats = fused_hme(
            data.XgT, self.coef, data.sample_weight, log_prob, gaussian, check, out
        )
        return Pass(resp, ll_rows, total, HierarchicalGateEval(*leaves, []), q_prev, gate_stats, expert_stats)

    def propose(self, stats):
        """Take every node's full Newton step without checking it (the next pass checks it).

        Parameters
        ----------
        stats : tuple (q, grad, hess)
            Every node's statistics at the current coefficients, from the pass
            (see :meth:`m_step`). With ``newton_steps > 1`` or ``fused = False``
            they are kept, and the next :meth:`em_pass` runs :meth:`m_step`.
        """
        self._sync()
        if self.newton_steps != 1 or not self.fused:
            self._pending = ("m_step", stats)
            return
        directions, old = self._directions(*stats)
        base = self.coef
        for v, node in enumerate(self.nodes):
            coef = base[v].copy()
            coef[1:] += directions[v]
            node.coef = coef
        self._pending = ("check", base, directions, old, stats[0], None)

    def accept(self, q_new):
        """Check the proposed step node by node given each node's objective ``q_new``.

        Parameters
        ----------
        q_new : ndarray of shape (n_nodes,)
            Each node's unpenalised objective at the proposed coefficients
            under the responsibilities the step was computed from (the pass's
            ``q_prev``).

        Returns
        -------
        bool
            True if every node's penalised objective did not decrease (the
            step is kept); else False, and :meth:`backtrack` halves the steps
            of the nodes whose objective decreased (the others keep theirs).
        """
        kind, base, directions, old, q, _ = self._pending
        rejected = []
        for v, node in enumerate(self.nodes):
            new_obj = q_new[v] - slope_penalty(node.coef, node.penalty, True, node.l1_ratio)
            if not (np.isfinite(new_obj) and new_obj >= old[v]):
                rejected.append(v)
        if not rejected:
            self._pending = None
            return True
        self._pending = (kind, base, directions, old, q, np.array(rejected))
        return False

    def backtrack(self, XT, resp, sample_weight):
        """Halve the rejected nodes' steps (from 1/2) until each ascends under ``resp``, or drop them.

        Parameters
        ----------
        XT : ndarray of shape (p, n)
            Gate design.
        resp : ndarray of shape (K, n)
            The responsibilities the proposed step was computed from.
        sample_weight : ndarray of shape (n,)
        """
        _, base, directions, old, q, rejected = self._pending
        self._pending = None
        for v in rejected:
            self.nodes[v].coef = base[v].copy()
        self._halving(XT, resp, sample_weight, base, directions, old, q, rejected, 0.5, _MAX_HALVINGS - 1)

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
        self._pending = None

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
        self._pending = None

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
        node_evals = [None] * self.n_nodes  # (an EM pass's evaluation keeps no node arrays)
        if isinstance(current, HierarchicalGateEval) and current.node_log is not None:
            node_evals = current.nodes
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
