"""Gaussian linear experts: y | x, expert k ~ N(x . beta_k, sigma_k^2)."""

import numpy as np

from .._kernels import gaussian_log_prob, linear_stats
from .._scaling import linear_from_raw, linear_to_raw
from ._base import ExpertFamily

_EPS = np.finfo(np.float64).eps


def _solve_weighted_least_squares(gram, xy, yy, nk, var_floor):
    """Weighted least squares and noise variance for each expert from moments.

    Parameters
    ----------
    gram : ndarray of shape (K, p, p)
        sum_i w_i r_ik x_i x_i'.
    xy : ndarray of shape (K, p)
        sum_i w_i r_ik x_i y_i.
    yy, nk : ndarray of shape (K,)
        sum_i w_i r_ik y_i^2 and sum_i w_i r_ik.
    var_floor : float
        Lower bound on each variance (the M-step maximises over var >= floor).

    Returns
    -------
    coef : ndarray of shape (K, p)
    var : ndarray of shape (K,)
    """
    K, p, _ = gram.shape
    # A relative jitter makes the solve well posed for empty or collinear experts;
    # it is far below the statistical precision of any coefficient.
    scale = np.maximum(np.trace(gram, axis1=1, axis2=2) / max(p, 1), 1e-300)
    reg = gram + (1e-12 * scale)[:, None, None] * np.eye(p)
    try:
        coef = np.linalg.solve(reg, xy[:, :, None])[:, :, 0]
    except np.linalg.LinAlgError:
        coef = np.stack([np.linalg.lstsq(reg[k], xy[k], rcond=None)[0] for k in range(K)])
    rss = yy - 2.0 * np.einsum("kp,kp->k", coef, xy) + np.einsum("kp,kpq,kq->k", coef, gram, coef)
    var = np.maximum(rss, 0.0) / (nk + 10 * _EPS)
    return coef, np.maximum(var, var_floor)


class GaussianExperts(ExpertFamily):
    """K Gaussian linear regression experts.

    Expert k models ``y = x . beta_k + e``, ``e ~ N(0, sigma_k^2)``, on a design
    ``x`` (with a constant column when the estimator fits intercepts). The
    M-step is weighted least squares with a variance floor. Designs are
    feature-major ``XT`` (p, n); per-expert outputs are expert-major (K, n).

    Parameters
    ----------
    n_experts : int
    reg_covar : float, default=1e-6
        Variance floor relative to the (weighted) variance of y; where y is
        constant it is an absolute floor.

    Attributes
    ----------
    coef : ndarray of shape (n_experts, n_design_features)
    var : ndarray of shape (n_experts,)
    var_floor : float
    """

    kind = "gaussian"
    #: the estimator may fit on a centred and scaled y (location-scale family)
    standardize_y = True

    def __init__(self, n_experts, reg_covar=1e-6):
        super().__init__(n_experts, reg_covar)
        self.var = None
        self.var_floor = None

    def n_parameters(self):
        """Number of free parameters: K coefficient vectors and K variances."""
        return self.coef.size + self.var.size

    def log_prob(self, XT, y):
        """(K, n) log-densities log N(y_i; x_i . beta_k, sigma_k^2)."""
        return gaussian_log_prob(XT, y, self.coef, self.var)

    def m_step(self, XT, y, resp, sample_weight, stats=None):
        """Weighted least squares per expert (moments from ``stats`` if given)."""
        if stats is None:
            stats = linear_stats(XT, y, resp, sample_weight)
        self.coef, self.var = _solve_weighted_least_squares(*stats, self.var_floor)

    def mean(self, XT):
        """(K, n) expert means x_i . beta_k."""
        return self.coef @ XT

    def variance(self, XT):
        """(K, n) expert variances (constant in x)."""
        return np.repeat(self.var[:, None], XT.shape[1], axis=1)

    def raw_params(self, scaling, intercept):
        """Parameters on the raw data's scale: ``{"coef", "var"}``.

        The experts are fitted on standardised columns and a standardised y
        (see :mod:`mixexp._scaling`).
        """
        sc = scaling
        coef = linear_to_raw(sc.y_scale * self.coef, sc.expert_mean, sc.expert_scale, intercept)
        if intercept:
            coef[:, 0] += scaling.y_mean
        return {"coef": coef, "var": scaling.y_scale**2 * self.var}

    def set_raw_params(self, params, scaling, intercept):
        """Set the parameters from :meth:`raw_params`' output under ``scaling``."""
        coef = np.array(params["coef"], dtype=float)
        if intercept:
            coef[:, 0] -= scaling.y_mean
        sc = scaling
        self.coef = linear_from_raw(coef, sc.expert_mean, sc.expert_scale, intercept) / sc.y_scale
        self.var = np.asarray(params["var"], dtype=float) / scaling.y_scale**2

    def get_flat(self):
        """Coefficients then log-variances as a flat vector."""
        return np.concatenate([self.coef.ravel(), np.log(self.var)])

    def set_flat(self, theta):
        """Set parameters from :meth:`get_flat`'s layout."""
        K, p = self.coef.shape
        self.coef = np.reshape(theta[: K * p], (K, p)).copy()
        self.var = np.exp(theta[K * p :])
