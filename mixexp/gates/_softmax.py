"""Softmax gate: multinomial logistic mixing weights fitted by Newton/IRLS."""

from typing import NamedTuple

import numpy as np

from .._kernels import log_softmax_linear, softmax_gate_stats
from .._penalties import elastic_net_gradient, elastic_net_penalty, prox_newton_direction, slope_mask
from .._scaling import linear_from_raw, linear_to_raw

_MAX_HALVINGS = 30


def slope_penalty(coef, penalty, intercept=True, l1_ratio=0.0):
    """Elastic-net penalty of the slopes of a (C, p) coefficient matrix.

    ``penalty * (l1_ratio ||slopes||_1 + (1 - l1_ratio) / 2 ||slopes||^2)``; with
    ``l1_ratio=0`` the ridge penalty ``penalty / 2 * ||slopes||^2``. Column 0 is
    an unpenalised intercept when ``intercept`` is True.
    """
    return elastic_net_penalty(coef, penalty, l1_ratio, intercept)


def newton_direction(coef, q, grad, hess, penalty, intercept=True, l1_ratio=0.0):
    """Newton direction of a penalised multinomial logistic objective.

    The objective is ``q - slope_penalty(coef, penalty, intercept)`` with ``q =
    sum_i w_i sum_c t_ci log softmax_c(coef x_i)``; row 0 of ``coef`` (C, p) is
    the reference, fixed at zero. Shared by the softmax gate and the
    multinomial logistic experts.

    Parameters
    ----------
    coef : ndarray of shape (C, p)
    q : float
        Unpenalised objective at ``coef``.
    grad : ndarray of shape (C - 1, p)
        Its gradient in rows 1..C-1.
    hess : ndarray of shape ((C - 1) p, (C - 1) p)
        Its negative Hessian.
    penalty : float
    intercept : bool, default=True
        Whether column 0 is an (unpenalised) intercept.
    l1_ratio : float, default=0.0
        Elastic-net mixing of the penalty (see :func:`slope_penalty`). With
        ``l1_ratio > 0`` the direction is the proximal Newton direction
        (:func:`mixexp._penalties.prox_newton_direction`): the step to the
        maximiser of the quadratic model of ``q`` minus the exact penalty.

    Returns
    -------
    delta : ndarray of shape (C - 1, p)
    objective : float
        The penalised objective at ``coef``.
    """
    K, p = coef.shape
    if l1_ratio > 0.0 and penalty > 0.0:
        mask = np.tile(slope_mask(p, intercept), K - 1)
        delta = prox_newton_direction(coef[1:].ravel(), grad.ravel(), hess, penalty, l1_ratio, mask)
        return delta.reshape(K - 1, p), q - slope_penalty(coef, penalty, intercept, l1_ratio)
    pen_mask = np.full(p, float(penalty))
    if intercept:
        pen_mask[0] = 0.0
    g = grad - coef[1:] * pen_mask
    H = hess.copy()
    diag = H.reshape(-1)[:: H.shape[0] + 1]  # a view of the diagonal
    diag += np.tile(pen_mask, K - 1)
    # Levenberg damping keeps H positive definite; it changes the step only.
    diag += 1e-10 * max(1.0, float(diag.sum()) / H.shape[0])
    try:
        # one LU solve: H is symmetric positive definite (a concave objective's
        # negative Hessian plus penalty and damping), and at these sizes the
        # call overhead of a Cholesky factorisation and two solves dominates
        delta = np.linalg.solve(H, g.ravel())
    except np.linalg.LinAlgError:
        delta = np.linalg.lstsq(H, g.ravel(), rcond=None)[0]
    return delta.reshape(K - 1, p), q - slope_penalty(coef, penalty, intercept)


class GateEval(NamedTuple):
    """A gate evaluated on a design: log-weights and weights, each (K, n)."""

    log: np.ndarray
    prob: np.ndarray


class SoftmaxGate:
    """Softmax (multinomial logistic) gate.

    ``g_k(x) = exp(x . w_k) / sum_j exp(x . w_j)`` on a design ``x`` whose first
    column is the constant 1. Like every part, it works on feature-major
    designs ``XT`` of shape (p, n) and returns expert-major arrays (K, n).
    Softmax gates are identifiable only up to a common shift of the ``w_k``;
    expert 0 is the reference, its row of ``coef`` is fixed at zero (flexmix's
    convention).

    The EM M-step maximises ``sum_i w_i sum_k r_ik log g_k(x_i) - P(slopes)``,
    ``P(w) = penalty * (l1_ratio ||w||_1 + (1 - l1_ratio) / 2 ||w||^2)``, by
    Newton steps with step halving (proximal Newton steps when
    ``l1_ratio > 0``, see :mod:`mixexp._penalties`), so every step raises the
    objective (a generalised EM step). The intercepts are not penalised.

    Parameters
    ----------
    n_experts : int
        Number of experts K.
    penalty : float, default=0.0
        L2 penalty on the non-intercept gate coefficients (a Gaussian prior of
        precision ``penalty``), added to the negative log-likelihood in total,
        not per sample.
    newton_steps : int, default=1
        Newton steps per EM iteration.
    l1_ratio : float, default=0.0
        Elastic-net mixing in [0, 1]: the penalty is ``penalty * (l1_ratio
        ||w||_1 + (1 - l1_ratio) / 2 ||w||^2)``; 0 is the ridge penalty above,
        1 the lasso (exact zeros in the gate's slopes).

    Attributes
    ----------
    coef : ndarray of shape (n_experts, n_design_features)
        Gate coefficients, intercept in column 0, row 0 zero.
    """

    kind = "softmax"

    def __init__(self, n_experts, penalty=0.0, newton_steps=1, l1_ratio=0.0):
        self.n_experts = n_experts
        self.penalty = penalty
        self.l1_ratio = l1_ratio
        self.newton_steps = newton_steps
        self.coef = None

    # -- interface -----------------------------------------------------------
    def n_parameters(self):
        """Number of free parameters, (K - 1) * n_design_features."""
        return (self.n_experts - 1) * self.coef.shape[1]

    def initialize(self, XT, resp, sample_weight, max_steps=1):
        """Fit the gate to responsibilities from scratch (coefficients start at 0)."""
        self.coef = np.zeros((self.n_experts, XT.shape[0]))
        self._pending = None
        return self.m_step(XT, resp, sample_weight, max_steps=max_steps)

    def evaluate(self, XT):
        """Log-weights and weights on a design, as a :class:`GateEval`."""
        log, prob, _ = log_softmax_linear(XT, self.coef)
        return GateEval(log, prob)

    def log_weights(self, XT):
        """Log mixing weights, a (K, n) array of log g_k(x_i)."""
        return self.evaluate(XT).log

    @property
    def objective_penalty(self):
        """The penalty strength in the objective: ``penalty``.

        The top-K gate overrides it (0 with ``top_k = 1``, whose likelihood
        does not identify the scale of the coefficients).
        """
        return self.penalty

    def penalty_value(self):
        """The penalty term subtracted from the log-likelihood."""
        return slope_penalty(self.coef, self.objective_penalty, True, self.l1_ratio)

    def m_step(self, XT, resp, sample_weight, current=None, stats=None, max_steps=None):
        """Newton steps with step halving on the penalised gate objective.

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
            ``(objective, grad, hess)`` at the current coefficients, as returned
            by :func:`mixexp._kernels.softmax_gate_stats`, if already known.
        max_steps : int, optional
            Newton steps to take (default ``newton_steps``).

        Returns
        -------
        GateEval
            The gate evaluated at the new coefficients.
        """
        if current is None:
            current = self.evaluate(XT)
        if self.n_experts == 1:
            return current
        steps = self.newton_steps if max_steps is None else max_steps
        for step in range(steps):
            if stats is None or step > 0:
                stats = softmax_gate_stats(XT, current.log, current.prob, resp, sample_weight)
            q, grad, hess = stats
            new = self._newton_update(XT, resp, sample_weight, q, grad, hess)
            if new is None:
                break
            current, gain = new
            if gain <= 1e-12 * max(1.0, abs(q)):
                break
        return current

    # -- deferred step: proposed now, checked by the next fused pass ------------
    def propose(self, stats):
        """Take a full Newton step without checking it (the next pass checks it).

        Used with a fused kernel that evaluates the new gate together with the
        E-step: :meth:`accept` then tells whether the step raised the objective
        under the responsibilities it was computed from, and :meth:`backtrack`
        halves it when it did not. So the gate step is still an ascent step.

        Parameters
        ----------
        stats : tuple
            ``(objective, grad, hess)`` at the current coefficients.
        """
        if self.n_experts == 1:
            return
        delta, old_obj = self._newton_direction(*stats)
        self._pending = (self.coef.copy(), delta, old_obj)
        self.coef = self.coef.copy()
        self.coef[1:] += delta

    @property
    def pending(self):
        """Whether a proposed step awaits :meth:`accept`."""
        return getattr(self, "_pending", None) is not None

    def accept(self, q_new):
        """Check the proposed step given its objective ``q_new`` (without penalty).

        Returns
        -------
        bool
            True if the penalised objective did not decrease; the step is kept.
        """
        old_obj = self._pending[2]
        new_obj = q_new - self.penalty_value()
        if np.isfinite(new_obj) and new_obj >= old_obj:
            self._pending = None
            return True
        return False

    def backtrack(self, XT, resp, sample_weight):
        """Halve a rejected proposed step until it ascends (or drop it)."""
        old_coef, delta, old_obj = self._pending
        self._pending = None
        self.coef = old_coef
        self._halving(XT, resp, sample_weight, delta, old_obj, first=0.5)

    # -- helpers -------------------------------------------------------------
    def _newton_direction(self, q, grad, hess):
        """Newton direction of the penalised objective, and its current value."""
        return newton_direction(self.coef, q, grad, hess, self.objective_penalty, True, self.l1_ratio)

    def _halving(self, XT, resp, sample_weight, delta, old_obj, first=1.0):
        """Step halving along ``delta``: the first step size that ascends is kept.

        Returns ``(GateEval, gain)`` at the accepted coefficients, or None when
        no step size ascends (the coefficients are then unchanged).
        """
        t = first
        for _ in range(_MAX_HALVINGS):
            coef = self.coef.copy()
            coef[1:] += t * delta
            log_w, prob, q_new = log_softmax_linear(XT, coef, resp, sample_weight)
            new_obj = q_new - slope_penalty(coef, self.objective_penalty, True, self.l1_ratio)
            if np.isfinite(new_obj) and new_obj >= old_obj:
                self.coef = coef
                return GateEval(log_w, prob), new_obj - old_obj
            t *= 0.5
        return None

    def _newton_update(self, XT, resp, sample_weight, q, grad, hess):
        delta, old_obj = self._newton_direction(q, grad, hess)
        return self._halving(XT, resp, sample_weight, delta, old_obj)

    # -- raw scale ------------------------------------------------------------
    def raw_params(self, scaling, intercept=True):
        """Parameters on the raw data's scale: ``{"coef": (K, 1 + p)}``.

        The gate is fitted on standardised columns (see :mod:`mixexp._scaling`).
        """
        return {"coef": linear_to_raw(self.coef, scaling.gate_mean, scaling.gate_scale, True)}

    def set_raw_params(self, params, scaling, intercept=True):
        """Set the parameters from :meth:`raw_params`' output under ``scaling``."""
        self.coef = linear_from_raw(params["coef"], scaling.gate_mean, scaling.gate_scale, True)
        self._pending = None

    # -- flat parameter vector -----------------------------------------------
    def get_flat(self):
        """Free parameters as a flat vector (rows 1..K-1 of ``coef``)."""
        return self.coef[1:].ravel().copy()

    def flat_penalized_mask(self):
        """Boolean mask of the coordinates of :meth:`get_flat` the penalty applies to (the slopes).

        Used to count the coefficients an L1 penalty sets to zero
        (:func:`mixexp._penalties.flat_l1_zeros`).

        Returns
        -------
        ndarray of bool of shape ((K - 1) * p,)
        """
        return np.tile(slope_mask(self.coef.shape[1], True), self.n_experts - 1) > 0

    def set_flat(self, theta):
        """Set the free parameters from :meth:`get_flat`'s layout."""
        free = np.reshape(np.asarray(theta, dtype=float), (self.n_experts - 1, self.coef.shape[1]))
        self.coef = np.vstack([np.zeros((1, self.coef.shape[1])), free])
        self._pending = None

    def flat_grad(self, XT, resp, sample_weight, current=None):
        """Gradient of ``sum_i w_i sum_k r_ki log g_k(x_i)`` with respect to :meth:`get_flat`.

        Row k >= 1 of the gradient is ``sum_i w_i (r_ki - g_k(x_i) s_i) x_i``
        with ``s_i = sum_k r_ki`` (1 for responsibilities). No penalty.

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
        if current is None:
            current = self.evaluate(XT)
        diff = resp[1:] - current.prob[1:] * resp.sum(axis=0)
        diff *= sample_weight
        return (diff @ XT.T).ravel()

    def penalty_grad(self):
        """Gradient of :meth:`penalty_value` with respect to :meth:`get_flat` (intercepts free).

        With ``l1_ratio > 0`` it is a subgradient (``sign(0) = 0`` at zero
        slopes): the L1 penalty has no gradient there.
        """
        if self.l1_ratio:
            return elastic_net_gradient(self.coef[1:], self.objective_penalty, self.l1_ratio).ravel()
        grad = self.objective_penalty * self.coef[1:]
        grad[:, 0] = 0.0
        return grad.ravel()
