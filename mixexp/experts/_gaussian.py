"""Gaussian linear experts: y | x, expert k ~ N(x . beta_k, sigma_k^2)."""

import numpy as np
from scipy import special

from .._kernels import gaussian_log_prob, linear_stats
from .._penalties import PenalizedCoefMixin, penalized_least_squares
from .._scaling import linear_from_raw, linear_to_raw
from ._base import ExpertFamily, chosen_expert_values

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
    reg = gram.copy()
    diag = reg.reshape(K, p * p)[:, :: p + 1]  # a view of each expert's diagonal
    scale = np.maximum(diag.sum(axis=1) / max(p, 1), 1e-300)
    diag += (1e-12 * scale)[:, None]
    try:
        coef = np.linalg.solve(reg, xy[:, :, None])[:, :, 0]
    except np.linalg.LinAlgError:
        coef = np.stack([np.linalg.lstsq(reg[k], xy[k], rcond=None)[0] for k in range(K)])
    rss = yy - 2.0 * (coef * xy).sum(axis=1) + (coef * (gram @ coef[:, :, None])[:, :, 0]).sum(axis=1)
    var = np.maximum(rss, 0.0) / (nk + 10 * _EPS)
    return coef, np.maximum(var, var_floor)


def _penalized_step(family, stats):
    """Elastic-net ECM step of a least-squares family from its moments ``stats``.

    Coordinate descent starts from the family's coefficients, or, on the
    first fit (none yet), from the unpenalised weighted least squares.
    """
    coef, var = family.coef, family.var
    if coef is None or var is None or coef.shape != stats[1].shape:
        coef, var = _solve_weighted_least_squares(*stats, family.var_floor)
    return penalized_least_squares(
        *stats, family.var_floor, coef, var, family.penalty, family.l1_ratio, family.intercept
    )


class GaussianExperts(PenalizedCoefMixin, ExpertFamily):
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
    penalty : float, default=0.0
        Elastic-net penalty ``penalty * (l1_ratio ||phi_k||_1 + (1 - l1_ratio)
        / 2 ||phi_k||^2)`` on each expert's slopes divided by its noise
        standard deviation, ``phi_k = b_k / sigma_k`` (not the intercept;
        Städler, Bühlmann and van de Geer 2010), summed over the experts and
        subtracted from the log-likelihood. With a penalty the M-step is an
        ECM step: a weighted elastic net for the coefficients at the current
        noise variance (coordinate descent on the moments), then the variance
        in closed form (see :func:`mixexp._penalties.penalized_least_squares`);
        it never decreases the penalised objective.
    l1_ratio : float, default=0.0
        Elastic-net mixing in [0, 1] (0: ridge, 1: lasso).
    intercept : bool, default=True
        Whether column 0 of the design is the constant (never penalised).

    Attributes
    ----------
    coef : ndarray of shape (n_experts, n_design_features)
    var : ndarray of shape (n_experts,)
    var_floor : float
    """

    kind = "gaussian"
    #: the estimator may fit on a centred and scaled y (location-scale family)
    standardize_y = True
    #: the elastic-net penalty is on coef / sqrt(var) (see mixexp._penalties.penalized_least_squares)
    penalize_over_scale = True

    def __init__(self, n_experts, reg_covar=1e-6, *, penalty=0.0, l1_ratio=0.0, intercept=True):
        super().__init__(n_experts, reg_covar)
        self.penalty = penalty
        self.l1_ratio = l1_ratio
        self.intercept = intercept
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
        if self.penalty:
            self.coef, self.var = _penalized_step(self, stats)
            return
        self.coef, self.var = _solve_weighted_least_squares(*stats, self.var_floor)

    def mean(self, XT):
        """(K, n) expert means x_i . beta_k."""
        return self.coef @ XT

    def variance(self, XT):
        """(K, n) expert variances (constant in x)."""
        return np.repeat(self.var[:, None], XT.shape[1], axis=1)

    def cdf(self, XT, y):
        """(K, n) normal distribution functions Phi((y_i - x_i . beta_k) / sigma_k)."""
        return special.ndtr((y - self.coef @ XT) / np.sqrt(self.var)[:, None])

    def ppf(self, XT, q):
        """(K, n) normal quantiles x_i . beta_k + sigma_k Phi^-1(q_i)."""
        return self.coef @ XT + np.sqrt(self.var)[:, None] * special.ndtri(q)

    def sample(self, XT, expert, rng):
        """Normal draws from the chosen experts (see :meth:`ExpertFamily.sample`)."""
        loc = chosen_expert_values(self.coef @ XT, expert)
        return loc + np.sqrt(self.var)[expert] * rng.standard_normal(expert.shape)

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
        theta = np.asarray(theta, dtype=float)
        K, p = self.coef.shape
        self.coef = np.reshape(theta[: K * p], (K, p)).copy()
        self.var = np.exp(theta[K * p :])

    def flat_grad(self, XT, y, resp, sample_weight):
        """Gradient of ``sum_i w_i sum_k r_ki log f_k(y_i | x_i)`` with respect to :meth:`get_flat`.

        With ``a_ki = w_i r_ki`` and residuals ``e_ki = y_i - x_i . beta_k``:
        ``sum_i a_ki e_ki x_i / sigma_k^2`` for the coefficients and
        ``sum_i a_ki (e_ki^2 / sigma_k^2 - 1) / 2`` for the log-variances.

        Parameters
        ----------
        XT : ndarray of shape (p, n)
        y : ndarray of shape (n,)
        resp : ndarray of shape (K, n)
        sample_weight : ndarray of shape (n,)

        Returns
        -------
        ndarray of shape (K * p + K,)
        """
        a = resp * sample_weight
        e = y - self.coef @ XT
        ae = a * e
        g_coef = (ae @ XT.T) / self.var[:, None]
        g_var = 0.5 * (np.einsum("kn,kn->k", ae, e) / self.var - a.sum(axis=1))
        return np.concatenate([g_coef.ravel(), g_var])

    def flat_bounds(self):
        """Bounds of :meth:`get_flat`: the log-variances are at least ``log(var_floor)``.

        Returns
        -------
        lower, upper : ndarray of shape (K * p + K,)
        """
        lower = np.full(self.coef.size + self.var.size, -np.inf)
        if self.var_floor is not None and self.var_floor > 0:
            lower[self.coef.size :] = np.log(self.var_floor)
        return lower, np.full_like(lower, np.inf)
