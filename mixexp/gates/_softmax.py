"""Softmax gate: multinomial logistic mixing weights fitted by Newton/IRLS."""

import numpy as np

from .._kernels import log_softmax_linear, softmax_gate_stats

_MAX_HALVINGS = 30


class SoftmaxGate:
    """Softmax (multinomial logistic) gate.

    ``g_k(x) = exp(x . w_k) / sum_j exp(x . w_j)`` on a design ``x`` whose first
    column is the constant 1. Softmax gates are identifiable only up to a common
    shift of the ``w_k``; expert 0 is the reference, its row of ``coef`` is fixed
    at zero (flexmix's convention).

    The EM M-step maximises ``sum_i w_i sum_k r_ik log g_k(x_i) - penalty / 2 *
    ||slopes||^2`` by Newton steps with step halving, so every step raises the
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

    Attributes
    ----------
    coef : ndarray of shape (n_experts, n_design_features)
        Gate coefficients, intercept in column 0, row 0 zero.
    """

    kind = "softmax"

    def __init__(self, n_experts, penalty=0.0, newton_steps=1):
        self.n_experts = n_experts
        self.penalty = penalty
        self.newton_steps = newton_steps
        self.coef = None

    # -- interface -----------------------------------------------------------
    def n_parameters(self):
        """Number of free parameters, (K - 1) * n_design_features."""
        return (self.n_experts - 1) * self.coef.shape[1]

    def initialize(self, X, resp, sample_weight, max_steps=10):
        """Fit the gate to responsibilities from scratch (coefficients start at 0)."""
        self.coef = np.zeros((self.n_experts, X.shape[1]))
        return self.m_step(X, resp, sample_weight, max_steps=max_steps)

    def log_weights(self, X):
        """Log mixing weights, an (n, K) array of log g_k(x_i)."""
        return log_softmax_linear(X, self.coef)[0]

    def penalty_value(self):
        """The penalty term subtracted from the log-likelihood."""
        return 0.5 * self.penalty * float(np.sum(self.coef[:, 1:] ** 2))

    def m_step(self, X, resp, sample_weight, log_weights=None, stats=None, max_steps=None):
        """Newton steps with step halving on the penalised gate objective.

        Parameters
        ----------
        X : ndarray of shape (n, p)
            Gate design, constant first column.
        resp : ndarray of shape (n, K)
            Responsibilities (soft targets).
        sample_weight : ndarray of shape (n,)
        log_weights : ndarray of shape (n, K), optional
            Log weights at the current coefficients, if already known.
        stats : tuple, optional
            ``(objective, grad, hess)`` at the current coefficients, as returned
            by :func:`mixexp._kernels.softmax_gate_stats`, if already known.
        max_steps : int, optional
            Newton steps to take (default ``newton_steps``).

        Returns
        -------
        log_weights : ndarray of shape (n, K)
            Log weights at the new coefficients.
        """
        if self.n_experts == 1:
            return np.zeros((X.shape[0], 1))
        steps = self.newton_steps if max_steps is None else max_steps
        if log_weights is None:
            log_weights = self.log_weights(X)
        for step in range(steps):
            if stats is None or step > 0:
                stats = softmax_gate_stats(X, log_weights, resp, sample_weight)
            q, grad, hess = stats
            new = self._newton_update(X, resp, sample_weight, q, grad, hess)
            if new is None:
                break
            log_weights, gain = new
            if gain <= 1e-12 * max(1.0, abs(q)):
                break
        return log_weights

    # -- helpers -------------------------------------------------------------
    def _newton_update(self, X, resp, sample_weight, q, grad, hess):
        K, p = self.coef.shape
        lam = self.penalty
        V = self.coef[1:]
        pen_mask = np.ones(p)
        pen_mask[0] = 0.0
        g = grad - lam * V * pen_mask
        H = hess + np.diag(np.tile(lam * pen_mask, K - 1))
        # Levenberg damping keeps H positive definite; it changes the step only.
        damp = 1e-10 * max(1.0, float(np.trace(H)) / H.shape[0])
        H[np.diag_indices_from(H)] += damp
        try:
            L = np.linalg.cholesky(H)
            delta = np.linalg.solve(L.T, np.linalg.solve(L, g.ravel()))
        except np.linalg.LinAlgError:
            delta = np.linalg.lstsq(H, g.ravel(), rcond=None)[0]
        delta = delta.reshape(K - 1, p)
        old_obj = q - self.penalty_value()
        t = 1.0
        for _ in range(_MAX_HALVINGS):
            coef = self.coef.copy()
            coef[1:] = V + t * delta
            log_w, q_new = log_softmax_linear(X, coef, resp, sample_weight)
            new_obj = q_new - 0.5 * lam * float(np.sum(coef[:, 1:] ** 2))
            if np.isfinite(new_obj) and new_obj >= old_obj:
                self.coef = coef
                return log_w, new_obj - old_obj
            t *= 0.5
        return None

    # -- flat parameter vector -----------------------------------------------
    def get_flat(self):
        """Free parameters as a flat vector (rows 1..K-1 of ``coef``)."""
        return self.coef[1:].ravel().copy()

    def set_flat(self, theta):
        """Set the free parameters from :meth:`get_flat`'s layout."""
        self.coef = np.vstack([np.zeros((1, self.coef.shape[1])), np.reshape(theta, (self.n_experts - 1, -1))])
