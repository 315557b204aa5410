"""Top-K sparse softmax gate: the softmax over each row's ``top_k`` largest logits.

``g_k(x) = exp(w_k . x) / sum_{j in A(x)} exp(w_j . x)`` for ``k`` in the
active set ``A(x)``, the ``top_k`` experts with the largest logits, and 0 (log
weight ``-inf``) for the others (Shazeer et al. 2017; Nguyen, Akbarian, Yan &
Ho, ICLR 2024). Ties at the ``top_k``-th logit go to the lower expert index,
as in :class:`mixexp.theory.TopKSoftmaxMoE`.
"""

import copy

import numpy as np
from scipy.linalg import null_space

from .._kernels import e_step, softmax_gate_stats, topk_line_loglik
from ._softmax import _MAX_HALVINGS, GateEval, SoftmaxGate, slope_penalty

#: TopKSoftmaxGate.pattern_search: steps +-s 2^-j for j < _SEARCH_GRID; first, smallest and largest s
_SEARCH_GRID = 16
#: TopKSoftmaxGate.ascent_step: the smooth directions' steps 2, 1, 1/2, ... (this many)
_SMOOTH_STEPS = 17
_SEARCH_FIRST_STEP = 2.0
_SEARCH_MIN_STEP = 1e-6
_SEARCH_MAX_STEP = 64.0
_SEARCH_MAX_SWEEPS = 200
#: relative differences of the likelihood below this are rounding: ties, not gains
_TIE = 1e-10
#: TopKSoftmaxGate._smooth_directions: boundaries pinned where a row is within these logit margins
_PIN_MARGINS = (1.0, 0.1)


def _first_best(values):
    """Index of the first value within rounding (``_TIE`` relative) of the largest finite one.

    The likelihood along a line is piecewise constant for ``top_k = 1`` (and
    nearly so between jumps), so several steps tie; taking the first of the
    near-ties, not whichever rounding favours, keeps fits with integer
    sample weights equal to fits on repeated rows.
    """
    values = np.where(np.isfinite(values), values, -np.inf)
    top = values.max()
    if top == -np.inf:
        return 0
    return int(np.flatnonzero(values >= top - _TIE * max(1.0, abs(top)))[0])


def _next_scale(scale, t):
    """The pattern search's next step scale along a direction, after a step ``t`` (0: no gain)."""
    if t == 0.0:  # no step gained: search closer in
        new = scale / 4.0
    elif abs(t) == scale:  # the largest step of the grid: search further out
        new = 2.0 * scale
    else:  # centre the next grid's range on the step taken
        new = 4.0 * abs(t)
    return min(max(new, _SEARCH_MIN_STEP), _SEARCH_MAX_STEP)


def check_top_k(top_k, n_experts):
    """Validate ``top_k`` against ``n_experts``; return it as an int.

    Raises
    ------
    TypeError
        If ``top_k`` is not an integer (bools are refused).
    ValueError
        If ``top_k`` is not in ``[1, n_experts]``.
    """
    if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)):
        raise TypeError(f"top_k must be an integer or None; got {top_k!r}.")
    if not 1 <= top_k <= n_experts:
        raise ValueError(
            f"top_k must be between 1 and n_experts={n_experts} (the number of experts active "
            f"at each x); got top_k={top_k}."
        )
    return int(top_k)


def active_experts(logits, top_k):
    """Indices of the ``top_k`` largest logits of each column, largest first.

    Parameters
    ----------
    logits : ndarray of shape (K, n)
    top_k : int

    Returns
    -------
    ndarray of int of shape (top_k, n)
        ``out[j, i]`` is the expert with the ``j``-th largest logit in column
        ``i``; equal logits are ordered by expert index (a stable sort), so a
        tie at the ``top_k``-th place selects the lower index.
    """
    if top_k == 1:
        return np.argmax(logits, axis=0)[None, :]  # the first maximum: the lower index
    order = np.argsort(-logits.T, axis=1, kind="stable")
    return np.ascontiguousarray(order[:, :top_k].T)


def topk_log_softmax(logits, top_k):
    """Log-softmax restricted to each column's ``top_k`` largest logits.

    Parameters
    ----------
    logits : ndarray of shape (K, n)
    top_k : int

    Returns
    -------
    log_gate : ndarray of shape (K, n)
        ``-inf`` outside the active sets.
    gate_prob : ndarray of shape (K, n)
        ``exp(log_gate)``: exactly 0 outside the active sets, each column
        summing to one.
    active : ndarray of int of shape (top_k, n)
        As :func:`active_experts`.
    """
    K, n = logits.shape
    active = active_experts(logits, top_k)
    if top_k == K:
        masked = logits
    else:
        masked = np.full((K, n), -np.inf)
        cols = np.arange(n)
        masked[active, cols] = logits[active, cols]
    mx = logits[active[0], np.arange(n)]  # the largest logit of each column
    log_gate = masked - mx
    prob = np.exp(log_gate)
    total = prob.sum(axis=0)
    log_gate -= np.log(total)
    prob /= total
    return log_gate, prob, active


def gate_objective(resp, log_gate, sample_weight):
    """``sum_i w_i sum_k r_ki log g_ki``; terms with ``r_ki = 0`` are 0 even where ``log g_ki = -inf``."""
    terms = resp * np.where(resp > 0, log_gate, 0.0)
    return float(terms.sum(axis=0) @ sample_weight)


# expert families whose mean depends on ``coef`` only, so one expert's mean can be
# evaluated alone (see selected_expert_means)
def _coef_only_means():
    from ..experts._gaussian import GaussianExperts
    from ..experts._glm import _LogLinkExperts
    from ..experts._student_t import StudentTExperts

    return {GaussianExperts.mean, StudentTExperts.mean, _LogLinkExperts.mean}


def selected_expert_means(experts, XT, active):
    """Means of the selected experts only: ``out[j, i]`` = mean of expert ``active[j, i]`` at row i.

    For the built-in regression families (whose mean depends on ``coef``
    only) each expert's mean is evaluated on the rows that select it and
    nowhere else, so a prediction costs O(top_k n p) instead of O(K n p),
    and an expert far outside its region (whose mean there may overflow) is
    never evaluated. Other families' :meth:`mean` is evaluated on every row
    and only the selected entries are kept.

    Parameters
    ----------
    experts : ExpertFamily
    XT : ndarray of shape (p, n)
        Expert design.
    active : ndarray of int of shape (top_k, n)

    Returns
    -------
    ndarray of shape (top_k, n)
    """
    n = XT.shape[1]
    if type(experts).mean not in _coef_only_means():
        return experts.mean(XT)[active, np.arange(n)]
    out = np.empty(active.shape)
    one = copy.copy(experts)
    one.n_experts = 1
    for k in range(experts.n_experts):
        slot, rows = np.nonzero(active == k)
        if rows.size:
            one.coef = experts.coef[k : k + 1]
            out[slot, rows] = one.mean(XT[:, rows])[0]
    return out


class TopKSoftmaxGate(SoftmaxGate):
    """Top-K sparse softmax gate.

    ``g_k(x) = exp(x . w_k) / sum_{j in A(x)} exp(x . w_j)`` for ``k`` in
    ``A(x)``, the ``top_k`` experts with the largest logits ``x . w_j``, and
    ``g_k(x) = 0`` (log-weight ``-inf``) otherwise. Selection and weights are
    unchanged by a common shift of the ``w_k``, so expert 0 is the reference
    with its row of ``coef`` fixed at zero, as in :class:`SoftmaxGate`. Ties
    at the ``top_k``-th logit select the lower expert index (a stable sort of
    the logits), so the gate is a deterministic function of ``x``.

    Fitting (see :doc:`/user_guide/sparse_gating`). :meth:`m_step` is a
    generalised EM step on ``Q(W) = sum_i w_i sum_k r_ik log g_k(x_i) -
    penalty / 2 * ||slopes||^2``: the Newton direction of ``Q`` with each
    row's active set held fixed (a multinomial logistic likelihood over the
    active experts: gradient ``sum_i w_i (r_ik - g_ik) x_i`` and Hessian
    blocks ``sum_i w_i g_ik (delta_km - g_im) x_i x_i^T`` with ``g`` zero
    outside the active sets), then step halving until the *true* ``Q``,
    recomputed with the active sets of the new coefficients, does not
    decrease. E-step responsibilities are zero outside the active sets, so
    ``Q`` is finite at the start, and a step that drops an expert with
    ``r_ik > 0`` from row i's active set makes ``Q = -inf`` and is halved.
    Such a step therefore never moves an active set's boundary across a row
    with a positive responsibility, which with soft responsibilities is every
    row: the boundaries stay where they started. So in the EM loop of the
    estimators (for the built-in expert kinds, through ``_topk_pass``)
    the gate step is :meth:`ascent_step` instead, which adds a boundary move
    and checks every step on the observed log-likelihood itself, and each
    start is first pre-fitted as a dense softmax MoE (``dense_start``).
    These steps still stall where a boundary sits next to a row whose change
    of active set loses more than the smooth part gains: then every small
    step loses, and only a larger move of the boundary, across many rows,
    gains. So before EM stops, :meth:`polish` searches the likelihood over
    the gate with the experts fixed (:meth:`pattern_search`), and EM goes on
    if it moved. All of these never decrease the observed penalised
    log-likelihood after the pre-fit.

    Parameters
    ----------
    n_experts : int
        Number of experts K.
    top_k : int
        Experts active at each x, ``1 <= top_k <= n_experts``. With
        ``top_k = n_experts`` it is the dense softmax gate.
    penalty : float, default=0.0
        L2 penalty on the non-intercept gate coefficients, as in
        :class:`SoftmaxGate`. With ``top_k = 1`` it is not part of the
        objective (:attr:`objective_penalty`): the likelihood then depends on
        the gate only through its regions, not on the scale of the
        coefficients, so the penalised likelihood would have no maximum (it
        rises as the coefficients shrink towards zero, where every logit
        ties); it then only regularises the dense softmax fits the gate starts
        from and moves towards.
    newton_steps : int, default=1
        Newton steps per EM iteration.

    Attributes
    ----------
    coef : ndarray of shape (n_experts, n_design_features)
        Gate coefficients, intercept in column 0, row 0 zero.

    Notes
    -----
    The gate is piecewise smooth in ``coef``: where active sets change, the
    likelihood jumps (the weight of the leaving expert passes to the entering
    one). :meth:`flat_grad` is the gradient with the active sets fixed, which
    is the gradient almost everywhere (everywhere off the boundaries, where
    two logits tie at the ``top_k``-th place).

    References
    ----------
    .. [1] Nguyen, H., Akbarian, P., Yan, F. and Ho, N. (2024). Statistical
       perspective of top-K sparse softmax gating mixture of experts. ICLR.
    .. [2] Shazeer, N. et al. (2017). Outrageously large neural networks: the
       sparsely-gated mixture-of-experts layer. ICLR.
    """

    kind = "softmax_topk"

    def __init__(self, n_experts, top_k, penalty=0.0, newton_steps=1):
        super().__init__(n_experts, penalty=penalty, newton_steps=newton_steps)
        self.top_k = check_top_k(top_k, n_experts)

    @property
    def objective_penalty(self):
        """The L2 penalty of the top-K objective: ``penalty``, or 0 with ``top_k = 1``.

        With ``top_k = 1`` the likelihood depends on the gate through its
        regions only (every selected weight is 1), so a penalty in the
        objective would shrink the coefficients towards zero without end (at
        zero every logit ties). ``penalty`` then only sets the scale of the
        dense softmax fits the top-1 gate starts from and moves towards.
        """
        return 0.0 if self.top_k == 1 else self.penalty


    def em_pass(self, experts, data, resp_prev, out):
        """The EM loop's pass for this gate (see :func:`_topk_pass`)."""
        return _topk_pass(self, experts, data, resp_prev, out)

    def initialize(self, XT, resp, sample_weight, max_steps=1):
        """Start from the dense softmax gate fitted to the responsibilities.

        Starting responsibilities (k-means, random) give weight to experts
        outside the active sets of any one gate, where the top-K objective is
        ``-inf``; the dense gate's Newton step from zero (as
        :meth:`SoftmaxGate.initialize`) gives the starting coefficients, and
        the first E-step then uses the top-K selection. In the EM loop the
        first pass (``_topk_pass``) then runs EM for the *dense* softmax
        gate with the same experts from there (at most
        ``DENSE_START_MAX_ITER`` iterations) and starts the top-K fit from its
        coefficients.
        """
        dense = SoftmaxGate(self.n_experts, penalty=self.penalty, newton_steps=self.newton_steps)
        dense.initialize(XT, resp, sample_weight, max_steps=max_steps)
        self.coef = dense.coef
        self._pending = None
        self._dense_start = True  # the first EM pass runs the dense pre-fit (_topk_pass)
        return self.evaluate(XT)

    def evaluate(self, XT):
        """Log-weights (``-inf`` outside the active sets) and weights, as a :class:`GateEval`."""
        log, prob, _ = topk_log_softmax(self.coef @ XT, self.top_k)
        return GateEval(log, prob)

    def active_experts(self, XT):
        """The active experts of each row, (top_k, n), largest logit first (see :func:`active_experts`)."""
        return active_experts(self.coef @ XT, self.top_k)

    def objective(self, XT, resp, sample_weight, coef=None):
        """The penalised gate objective ``Q`` at ``coef`` (default: the current coefficients)."""
        coef = self.coef if coef is None else coef
        log, _, _ = topk_log_softmax(coef @ XT, self.top_k)
        return gate_objective(resp, log, sample_weight) - slope_penalty(coef, self.objective_penalty)

    def m_step(self, XT, resp, sample_weight, current=None, stats=None, max_steps=None):
        """Generalised EM step: Newton direction with active sets fixed, then step halving.

        Parameters
        ----------
        XT : ndarray of shape (p, n)
            Gate design, feature-major, constant first row.
        resp : ndarray of shape (K, n)
            Responsibilities (soft targets).
        sample_weight : ndarray of shape (n,)
        current : GateEval, optional
            The gate evaluated at the current coefficients, if already known.
        stats : tuple, optional
            ``(objective, grad, hess)`` at the current coefficients with the
            current active sets, if already known.
        max_steps : int, optional
            Newton steps to take (default ``newton_steps``).

        Returns
        -------
        GateEval
            The gate evaluated at the new coefficients. A step is kept only
            if the penalised objective, with the new active sets, does not
            decrease; when no step size ascends the coefficients are unchanged.
        """
        if current is None:
            current = self.evaluate(XT)
        if self.n_experts == 1:
            return current
        steps = self.newton_steps if max_steps is None else max_steps
        for step in range(steps):
            if stats is None or step > 0:
                # the softmax kernel with g = 0 outside the active sets gives the
                # gradient and Hessian of the fixed-active-set objective
                stats = softmax_gate_stats(XT, current.log, current.prob, resp, sample_weight)
            q, grad, hess = stats
            if not np.isfinite(q):
                # responsibilities outside the active sets (not from this gate's
                # E-step): the dense softmax direction, still accepted only if Q rises
                dense = SoftmaxGate.evaluate(self, XT)
                q, grad, hess = softmax_gate_stats(XT, dense.log, dense.prob, resp, sample_weight)
                q = -np.inf
            new = self._newton_update(XT, resp, sample_weight, q, grad, hess)
            if new is None:
                break
            current, gain = new
            if np.isfinite(q) and gain <= 1e-12 * max(1.0, abs(q)):
                break
        return current

    def _halving(self, XT, resp, sample_weight, delta, old_obj, first=1.0):
        """Step halving along ``delta`` on the true top-K objective (active sets recomputed).

        Returns ``(GateEval, gain)`` at the first step size whose objective is
        finite and not below ``old_obj``, or None (coefficients unchanged).
        """
        t = first
        for _ in range(_MAX_HALVINGS):
            coef = self.coef.copy()
            coef[1:] += t * delta
            log, prob, _ = topk_log_softmax(coef @ XT, self.top_k)
            new_obj = gate_objective(resp, log, sample_weight) - slope_penalty(coef, self.objective_penalty)
            if np.isfinite(new_obj) and new_obj >= old_obj:
                self.coef = coef
                return GateEval(log, prob), new_obj - old_obj
            t *= 0.5
        return None

    def flat_grad(self, XT, resp, sample_weight, current=None):
        """Gradient of ``sum_i w_i sum_k r_ki log g_k(x_i)`` with the active sets fixed.

        Row k >= 1 is ``sum_i w_i (r_ki - g_k(x_i) s_i) x_i`` with ``g`` zero
        outside the active sets and ``s_i = sum_k r_ki``: the gradient almost
        everywhere (away from ties at the ``top_k``-th logit, where the
        objective is discontinuous). No penalty.

        Parameters
        ----------
        XT : ndarray of shape (p, n)
        resp : ndarray of shape (K, n)
        sample_weight : ndarray of shape (n,)
        current : GateEval, optional
            The gate evaluated on ``XT`` at the current coefficients, if known.

        Returns
        -------
        ndarray of shape ((K - 1) * p,)
        """
        return super().flat_grad(XT, resp, sample_weight, current=current)

    # -- the EM loop's gate step (see _topk_pass) -------------------------------------
    def propose(self, stats):
        """Mark a gate step as due; the next pass (``_topk_pass``) takes it.

        The step needs the experts' log-densities at their new parameters,
        which the pass computes anyway, so it is taken there, before the
        E-step (:meth:`ascent_step`).
        """
        if self.n_experts > 1:
            self._pending = "step"

    def accept(self, q_new):
        """Clear a pending step (the pass has already taken and checked it)."""
        self._pending = None
        return True

    def ascent_step(self, XT, log_prob, sample_weight):
        """One gate step that never decreases the observed penalised log-likelihood.

        ``log_prob`` (K, n) are the experts' log-densities at their current
        parameters. Directions are tried in turn, each with step halving
        until ``L(W) = sum_i w_i log sum_{k in A_W(x_i)} g_k(x_i; W) f_ik -
        penalty(W)`` (active sets recomputed at every trial) does not decrease
        (each from where the previous left off):

        1. the Newton directions of the gate objective with the active sets
           fixed and the top-K posterior responsibilities (the generalised EM
           step of :meth:`m_step`, here checked on ``L`` itself), free and
           with the boundaries pinned (:meth:`_smooth_directions`); each
           takes the best of the steps 2, 1, 1/2, ... (``_SMOOTH_STEPS`` of
           them), all evaluated in one pass;
        2. then directions that move the boundaries of the active sets: to
           the dense softmax gate refitted to the dense posterior
           (``_refit_direction``; at most ``_MAX_BOUNDARY_HALVINGS``
           halvings), then the row-swap directions of ``_swap_directions``
           (first step 4, at most ``_MAX_BOUNDARY_HALVINGS`` halvings each).
           Under the top-K posterior an expert outside a row's active set has
           zero responsibility, so step 1 does not bring it in: bringing it in
           changes ``L`` by a jump, which no gradient sees (with ``top_k = 1``
           step 1 does nothing at all, every selected weight being 1).

        Returns
        -------
        bool
            Whether a step was accepted.
        """
        self._pending = None
        if self.n_experts == 1:
            return False
        w = sample_weight
        logits = self.coef @ XT
        log, prob, _ = topk_log_softmax(logits, self.top_k)
        resp, _, total = e_step(log, log_prob, w)
        old = total - self.penalty_value()
        moved = False
        for _, delta in self._smooth_directions(XT, log_prob, w, logits, (log, prob, resp)):
            accepted = self._likelihood_halving(XT, log_prob, w, delta, old, _SMOOTH_STEPS, 2.0, best=True)
            if accepted is not None:
                moved, old = True, accepted
        delta = self._refit_direction(XT, log_prob, w)
        if delta is not None:
            accepted = self._likelihood_halving(XT, log_prob, w, delta, old, _MAX_BOUNDARY_HALVINGS)
            if accepted is not None:
                moved, old = True, accepted
        for delta in self._swap_directions(XT, log_prob, w):
            first = _BOUNDARY_FIRST_STEP
            accepted = self._likelihood_halving(XT, log_prob, w, delta, old, _MAX_BOUNDARY_HALVINGS, first)
            if accepted is not None:
                moved, old = True, accepted
        return moved

    def _refit_direction(self, XT, log_prob, w):
        """Direction to the dense softmax gate refitted to the dense posterior.

        ``r_ik ~ exp(l_ik) f_ik`` over all K experts (the posterior if every
        expert were selected) says which experts explain each row; a dense
        softmax gate fitted to it (``_REFIT_STEPS`` Newton steps from the
        current coefficients) places the boundaries where the rows change
        expert. Returns its coefficients minus the current ones.
        """
        dense = SoftmaxGate(self.n_experts, penalty=self.penalty)
        dense.coef = self.coef.copy()
        dense._pending = None
        ev = dense.evaluate(XT)
        resp, _, _ = e_step(ev.log, log_prob, w)
        dense.m_step(XT, resp, w, current=ev, max_steps=_REFIT_STEPS)
        delta = dense.coef[1:] - self.coef[1:]
        return delta if np.any(delta) else None

    def _swap_directions(self, XT, log_prob, w):
        """Directions that move the active sets' boundaries where the data ask for it.

        For each row, ``a`` is the last selected expert (the ``top_k``-th
        largest logit) and ``d_i(j) = log p_swap(y_i | x_i) - log p(y_i |
        x_i)`` the gain in log-density of selecting the unselected expert ``j``
        instead of ``a``; ``b`` is the ``j`` of the largest gain when it is
        positive, else the first unselected expert (the ``top_k + 1``-th
        logit), whose loss then holds the boundary in place; ``d_i =
        d_i(b)`` and ``m_i = l_a - l_b >= 0``. A direction lowers ``l_a - l_b`` where ``d_i > 0`` and raises
        it where ``d_i < 0``, weighting rows by ``exp(-m_i / tau)`` (rows near
        a boundary count most), ``tau`` the weighted median margin: row i adds
        ``w_i d_i exp(-m_i / tau) x_i`` to expert b's coefficients and
        subtracts it from a's. The first direction sums over all rows, then
        one per pair ``{a, b}`` over that pair's rows only (one boundary at a
        time, for when moving all at once does not ascend). Heuristic
        directions (the likelihood is not differentiable across a boundary):
        a step along one is kept only if it raises the likelihood. Each is
        scaled so that a unit step moves no margin by more than ``tau``.

        Returns
        -------
        list of ndarray of shape (K - 1, p)
            Empty when no row gains from a swap.
        """
        K, k = self.n_experts, self.top_k
        logits = self.coef @ XT
        n = logits.shape[1]
        order = active_experts(logits, k + 1)
        cols = np.arange(n)
        a = order[k - 1]
        current = order[:k]

        def log_density(sets):
            lg = logits[sets, cols]
            joint = lg + log_prob[sets, cols]
            mx_j, mx_g = joint.max(axis=0), lg.max(axis=0)
            return (mx_j + np.log(np.exp(joint - mx_j).sum(axis=0))) - (
                mx_g + np.log(np.exp(lg - mx_g).sum(axis=0))
            )

        # the gain of each unselected expert j replacing a; b: the best one where some
        # gains, else the first unselected one (its loss holds the boundary in place)
        base = log_density(current)
        gains = np.full((K, n), -np.inf)
        selected = np.zeros((K, n), dtype=bool)
        selected[current, cols] = True
        swapped = current.copy()
        for j in range(K):
            swapped[k - 1] = j
            with np.errstate(invalid="ignore"):
                gains[j] = np.where(selected[j], -np.inf, log_density(swapped) - base)
        best = np.argmax(gains, axis=0)
        b = np.where(gains[best, cols] > 0, best, order[k])
        # an expert that cannot produce y_i (log-density -inf) gives -inf: clipped
        gain = np.clip(np.nan_to_num(gains[b, cols], nan=0.0), -50.0, 50.0)
        margin = logits[a, cols] - logits[b, cols]
        tau = _weighted_median(margin, w)
        if not tau > 0:
            tau = 1.0
        c = w * gain * np.exp(-margin / tau)
        positive = w > 0

        def direction(rows):
            D = np.zeros((K, XT.shape[0]))
            np.add.at(D, b[rows], (c[rows] * XT[:, rows]).T)
            np.add.at(D, a[rows], -(c[rows] * XT[:, rows]).T)
            dm = np.abs(np.einsum("np,np->n", D[b] - D[a], XT.T))[positive]
            scale = float(dm.max()) if dm.size else 0.0
            return (D[1:] - D[0]) * (tau / scale) if scale > 0 else None

        if not np.any(c):
            return []
        candidates = [direction(np.flatnonzero(c))]
        pair = np.minimum(a, b) * K + np.maximum(a, b)
        pairs = np.unique(pair[c != 0])
        if pairs.size > 1:
            candidates += [direction(np.flatnonzero((pair == q) & (c != 0))) for q in pairs]
        return [d for d in candidates if d is not None]

    # -- the derivative-free polish of the gate (see polish) ----------------------------
    def polish(self, experts, data, tol):
        """Maximise the observed likelihood over the gate, the experts fixed, before EM stops.

        Called by :func:`mixexp.solvers.run_em` when the change of the mean
        penalised log-likelihood falls below ``tol``. The likelihood is
        piecewise smooth in the gate: where a row's active set changes it
        jumps, and near the boundaries between the regions of different
        active sets it is a step function of the boundaries' positions, which
        no gradient sees and the EM gate step (checked by halving) cannot
        cross. :meth:`pattern_search` searches it directly.

        Parameters
        ----------
        experts : ExpertFamily
        data : Design
        tol : float
            EM's tolerance on the mean log-likelihood.

        Returns
        -------
        bool
            Whether the gate moved (the likelihood then rose by at least
            ``tol / 100`` per unit of sample weight).
        """
        self._pending = None
        if self.n_experts == 1:
            return False
        log_prob = experts.log_prob(data.XeT, data.y)
        # a step, and a sweep, must gain a hundredth of EM's tolerance (stopping the
        # search at EM's own tolerance left 0.2 nats to Nelder-Mead at n = 2e4)
        min_gain = 0.01 * data.weight_sum * max(tol, 0.0)
        return self.pattern_search(data.XgT, log_prob, data.sample_weight, min_gain) > 0

    def pattern_search(
        self, XT, log_prob, sample_weight, min_gain=0.0, stop_gain=0.0, max_sweeps=_SEARCH_MAX_SWEEPS
    ):
        """Compass search with grid line searches on the observed penalised log-likelihood.

        ``L(W) = sum_i w_i log sum_{k in A_W(x_i)} g_k(x_i; W) f_ik - penalty(W)``
        with ``f_ik = exp(log_prob[k, i])`` fixed. Each sweep searches along
        every free gate coefficient, then the Newton directions of the smooth
        part, active sets fixed, free and with the boundaries pinned
        (:meth:`_smooth_directions`), then the sweep's own net move (the
        pattern move of Hooke & Jeeves 1961). Along each direction ``L`` is evaluated
        at once (:func:`mixexp._kernels.topk_line_loglik`) on the steps
        ``+-s 2^-j``, ``j = 0, ..., _SEARCH_GRID - 1``, with active sets
        recomputed at every step, so a step across any number of boundaries
        is seen whole, jumps included; the best step is taken when it gains
        more than ``min_gain``. ``s`` doubles after a step at the top of the
        grid and shrinks when a direction fails. It stops when a sweep gains
        at most ``max(min_gain, stop_gain)`` in all, or after ``max_sweeps``
        sweeps.

        Parameters
        ----------
        XT : ndarray of shape (p, n)
            Gate design.
        log_prob : ndarray of shape (K, n)
            The experts' log-densities.
        sample_weight : ndarray of shape (n,)
        min_gain : float, default=0.0
            Smallest gain of ``L`` (total, not per sample) that moves the gate.
        stop_gain : float, default=0.0
            The search stops after a sweep that gains at most this much.
        max_sweeps : int, default=200

        Returns
        -------
        float
            The total gain of ``L`` (0 when the gate did not move).
        """
        K, p = self.coef.shape
        w = sample_weight
        logits = self.coef @ XT
        zero = np.zeros(1)
        current = float(topk_line_loglik(logits, logits, log_prob, w, zero, self.top_k)[0])
        current -= self.penalty_value()
        if not np.isfinite(current):
            return 0.0
        unit = 2.0 ** -np.arange(_SEARCH_GRID)
        ladder = np.concatenate([unit, -unit])
        n_coord = (K - 1) * p
        # step scales: the coordinates, the pattern move, then the smooth directions' slots
        scale = np.full(n_coord + 3 + len(_PIN_MARGINS), _SEARCH_FIRST_STEP)
        total_gain = 0.0

        def line(delta, s):
            nonlocal current, logits
            full = np.zeros((K, p))
            full[1:] = delta
            change = full @ XT
            ts = s * ladder
            values = topk_line_loglik(logits, change, log_prob, w, ts, self.top_k)
            values -= [slope_penalty(self.coef + t * full, self.objective_penalty) for t in ts]
            best = _first_best(values)
            gain = values[best] - current
            if not gain > max(min_gain, _TIE * max(1.0, abs(current))):
                return 0.0, 0.0
            t = ts[best]
            self.coef = self.coef + t * full
            logits = logits + t * change
            current = float(values[best])
            return gain, t

        for _ in range(max_sweeps):
            start = self.coef.copy()
            sweep_gain = 0.0
            for d in range(n_coord):
                delta = np.zeros((K - 1, p))
                delta.flat[d] = 1.0
                gain, t = line(delta, scale[d])
                sweep_gain += gain
                scale[d] = _next_scale(scale[d], t)
            # the smooth part's Newton directions, active sets fixed: free, and with
            # the boundaries pinned
            for slot, delta in self._smooth_directions(XT, log_prob, w, logits):
                j = n_coord + 1 + slot
                gain, t = line(delta, scale[j])
                sweep_gain += gain
                scale[j] = _next_scale(scale[j], t)
            delta = (self.coef - start)[1:]
            if np.any(delta):
                gain, t = line(delta, scale[n_coord])
                sweep_gain += gain
                scale[n_coord] = _next_scale(scale[n_coord], t)
            total_gain += sweep_gain
            if not sweep_gain > max(min_gain, stop_gain):
                break
        return total_gain

    def _smooth_directions(self, XT, log_prob, w, logits=None, evaluated=None):
        """Newton directions of the gate objective, active sets fixed: free, then with boundaries pinned.

        The gate objective ``Q`` (the top-K posterior responsibilities fixed)
        is smooth while no row's active set changes, but a step that moves a
        boundary between active sets across rows changes their likelihood by
        jumps, so near a boundary a Newton step is mostly rejected. The
        boundary between experts ``a`` and ``b`` (where ``(w_a - w_b) . x =
        0``) stays where it is when ``w_a - w_b`` only changes by a multiple
        of itself; so the second and later directions maximise the quadratic
        model of ``Q`` over the steps ``delta`` with ``delta_a - delta_b =
        alpha_ab (w_a - w_b)`` for every pinned pair ``{a, b}``: the pairs
        ranked ``top_k``-th and ``top_k + 1``-th at some row (all of them,
        then those of the rows within each margin of ``_PIN_MARGINS``).

        Returns
        -------
        list of (int, ndarray of shape (K - 1, p))
            Each direction with its slot: 0 for the free Newton direction,
            ``1 + j`` for the pins of ``(inf, *_PIN_MARGINS)[j]``.
        """
        K, p = self.coef.shape
        k = self.top_k
        if k == 1:  # every selected weight is 1: no smooth part
            return []
        logits = self.coef @ XT if logits is None else logits
        if evaluated is None:
            log, prob, _ = topk_log_softmax(logits, k)
            resp, _, _ = e_step(log, log_prob, w)
        else:  # the caller's (log-weights, weights, responsibilities) at these logits
            log, prob, resp = evaluated
        q, grad, hess = softmax_gate_stats(XT, log, prob, resp, w)
        delta, _ = self._newton_direction(q, grad, hess)
        out = [(0, delta)] if np.any(delta) else []
        if k == K:
            return out
        pen = np.full(p, float(self.objective_penalty))
        pen[0] = 0.0
        g = (grad - self.coef[1:] * pen).ravel()
        H = hess + np.diag(np.tile(pen, K - 1))
        n = logits.shape[1]
        cols = np.arange(n)
        order = active_experts(logits, k + 1)
        a, b = order[k - 1], order[k]
        margin = logits[a, cols] - logits[b, cols]
        pair = np.minimum(a, b) * K + np.maximum(a, b)
        seen = set()
        for slot, limit in enumerate((np.inf, *_PIN_MARGINS), start=1):
            pairs = tuple(np.unique(pair[(w > 0) & (margin <= limit)]))
            if not pairs or pairs in seen:
                continue
            seen.add(pairs)
            # rows: p equations per pair in the unknowns (delta rows 1..K-1, alpha per pair)
            C = np.zeros((len(pairs) * p, (K - 1) * p + len(pairs)))
            for j, code in enumerate(pairs):
                lo, hi = divmod(int(code), K)
                r = slice(j * p, (j + 1) * p)
                if lo > 0:
                    C[r, (lo - 1) * p : lo * p] += np.eye(p)
                if hi > 0:
                    C[r, (hi - 1) * p : hi * p] -= np.eye(p)
                C[r, (K - 1) * p + j] = -(self.coef[lo] - self.coef[hi])
            basis = null_space(C)[: (K - 1) * p]
            if basis.shape[1] == 0:
                continue
            basis, _ = np.linalg.qr(basis)
            Hs = basis.T @ H @ basis
            Hs[np.diag_indices_from(Hs)] += 1e-10 * max(1.0, float(np.trace(Hs)) / Hs.shape[0])
            try:
                z = np.linalg.solve(Hs, basis.T @ g)
            except np.linalg.LinAlgError:
                continue
            delta = (basis @ z).reshape(K - 1, p)
            if np.any(delta):
                out.append((slot, delta))
        return out

    def _likelihood_halving(
        self, XT, log_prob, sample_weight, delta, old, max_halvings, first=1.0, best=False
    ):
        """Step halving along ``delta`` on the observed penalised log-likelihood, in one pass.

        The likelihood is evaluated at every step size ``first * 2^-j``
        (``j < max_halvings``) in one pass (:func:`mixexp._kernels.topk_line_loglik`,
        active sets recomputed at each). The largest step that gains more than
        rounding (``_TIE``, relative) over ``old`` is taken, as sequential
        halving would; with ``best``, the step of the highest likelihood. The
        likelihood jumps where a row's active set changes, and along a smooth
        (Newton) direction the largest step that ascends often stops just
        before a row whose change loses more than the smooth part gains, where
        every shorter step of the next iteration's direction then fails too:
        the smooth directions take the best step. The boundary directions
        take the largest, as the gate step did before (their best step was
        not tried separately).

        Returns the accepted value (coefficients updated), or None.
        """
        full = np.zeros_like(self.coef)
        full[1:] = delta
        ts = first * 0.5 ** np.arange(max_halvings)
        values = topk_line_loglik(self.coef @ XT, full @ XT, log_prob, sample_weight, ts, self.top_k)
        values -= [slope_penalty(self.coef + t * full, self.objective_penalty) for t in ts]
        # a step must gain more than rounding: with top_k = 1 the likelihood is piecewise
        # constant, and a tie accepted or not by rounding would make fits with integer
        # weights differ from fits on repeated rows
        ok = np.flatnonzero(np.isfinite(values) & (values > old + _TIE * max(1.0, abs(old))))
        if ok.size == 0:
            return None
        j = ok[_first_best(values[ok])] if best else ok[0]
        self.coef = self.coef + ts[j] * full
        return float(values[j])


def _weighted_median(values, weights):
    """The smallest value whose cumulative weight (in sorted order) reaches half the total."""
    order = np.argsort(values, kind="stable")
    cum = np.cumsum(weights[order])
    return float(values[order][np.searchsorted(cum, 0.5 * cum[-1])])


#: Newton steps of the dense refit in TopKSoftmaxGate._refit_direction
_REFIT_STEPS = 10
#: first step and halvings of the boundary direction in TopKSoftmaxGate.ascent_step
_BOUNDARY_FIRST_STEP = 4.0
_MAX_BOUNDARY_HALVINGS = 8
#: the dense pre-fit of a start: at most this many EM iterations, to this tolerance
DENSE_START_MAX_ITER = 200
DENSE_START_TOL = 1e-6


def dense_start(gate, experts, data):
    """Pre-fit a start as a dense softmax MoE, then give its gate coefficients to ``gate``.

    The top-K EM moves the boundaries between the experts' regions only
    through the gate step's boundary direction, and with ``top_k = 1`` the
    likelihood is piecewise constant in the gate; the dense softmax gate is
    its smooth relaxation (the top-K gate with the same coefficients selects
    the experts the dense gate weighs most), and its EM moves the regions
    freely. ``experts`` are fitted in place; ``gate.coef`` is set.
    """
    from ..solvers._em import run_em

    dense = SoftmaxGate(gate.n_experts, penalty=gate.penalty, newton_steps=gate.newton_steps)
    dense.coef = gate.coef.copy()
    dense._pending = None
    run_em(dense, experts, data, DENSE_START_MAX_ITER, DENSE_START_TOL)
    gate.coef = dense.coef.copy()
    gate._pending = None


def _topk_pass(gate, experts, data, resp_prev, out):
    """EM pass for a top-K gate: the pending gate step, then the E-step.

    The EM loop runs it for every expert family (a gate's ``em_pass``, see
    :func:`mixexp.solvers.run_em`). The gate's step (:meth:`TopKSoftmaxGate.ascent_step`) is
    taken here because it needs the experts' log-densities at their new
    parameters, which the E-step computes anyway. Each EM iteration then
    raises the observed penalised log-likelihood twice over: the experts'
    M-step (a generalised EM step with the gate fixed) and the gate step
    (checked on that likelihood itself).
    """
    from ..solvers._em import Pass

    if getattr(gate, "_dense_start", False):
        gate._dense_start = False
        dense_start(gate, experts, data)
    log_prob = experts.log_prob(data.XeT, data.y)
    if gate.pending:
        gate.ascent_step(data.XgT, log_prob, data.sample_weight)
    gate_eval = gate.evaluate(data.XgT)
    resp, ll_rows, total = e_step(gate_eval.log, log_prob, data.sample_weight, out=log_prob)
    return Pass(resp, ll_rows, total, gate_eval)
