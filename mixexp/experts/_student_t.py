"""Robust Student-t linear experts: y | x, expert k ~ x . beta_k + sigma_k t_{nu_k}."""

import math
from numbers import Real

import numpy as np
from scipy import special

from .._kernels import linear_stats
from .._penalties import PenalizedCoefMixin, penalized_least_squares
from .._scaling import linear_from_raw, linear_to_raw
from ._base import ExpertFamily, chosen_expert_values
from ._gaussian import _solve_weighted_least_squares

#: Newton iterations of one degrees-of-freedom update, and step halvings per iteration.
_DF_MAX_NEWTON = 50
_DF_MAX_HALVINGS = 40
#: Largest Newton step in log(nu) (a factor e on nu), and the step below which it stops.
_DF_MAX_STEP = 1.0
_DF_STEP_TOL = 1e-6
#: Smallest squared scale (the smallest normal float): keeps d^2 and the density defined
#: when ``reg_covar=0`` lets an expert fit its rows exactly.
_TINY = np.finfo(np.float64).tiny
_EPS = np.finfo(np.float64).eps


def _log_norm_const(df, var):
    """log of the Student-t normalising constant with scale sqrt(var), per expert."""
    return (
        special.gammaln(0.5 * (df + 1.0))
        - special.gammaln(0.5 * df)
        - 0.5 * np.log(np.pi * df)
        - 0.5 * np.log(var)
    )


def _squared_standardized_residuals(XT, y, coef, var):
    """(K, n) d_ik^2 = (y_i - x_i . beta_k)^2 / sigma_k^2 (sigma_k^2 > 0; may overflow to inf)."""
    d2 = np.subtract(y, coef @ XT)
    np.square(d2, out=d2)
    with np.errstate(over="ignore"):
        d2 /= var[:, None]
    return d2


def _df_objective(log_df, weights, d2, n_k, scratch):
    """G(nu) = sum_i a_i log t_nu(d_i) (+ const) at nu = exp(log_df), with its derivatives in log nu.

    ``G(nu) = n_k [lgamma((nu+1)/2) - lgamma(nu/2) - log(nu)/2]
    - (nu+1)/2 sum_i a_i log(1 + d_i^2 / nu)``, the part of the weighted
    log-likelihood of one expert that depends on nu (``a_i = w_i r_ik``,
    ``n_k = sum_i a_i``). ``scratch`` is two arrays shaped like ``d2``
    (reused: fresh temporaries of this size cost more than the arithmetic).

    Returns
    -------
    value, first, second : float
        g(t) = G(e^t), g'(t) and g''(t) at t = ``log_df``.
    rounding : float
        A bound on the rounding error of ``value`` (a few eps times the size of
        its two terms).
    """
    nu = math.exp(log_df)
    q, s = scratch
    np.multiply(d2, 1.0 / nu, out=q)  # d^2 / nu
    np.add(q, 1.0, out=s)
    np.divide(q, s, out=s)  # d^2 / (nu + d^2), in [0, 1)
    s1 = float(weights @ s)
    np.multiply(s, s, out=s)
    s2 = float(weights @ s)
    np.log1p(q, out=q)
    log1p_sum = float(weights @ q)  # L(nu) = sum a log(1 + d^2/nu)
    half = 0.5 * (nu + 1.0)
    c = special.gammaln(half) - special.gammaln(0.5 * nu) - 0.5 * math.log(nu)
    dc = 0.5 * (special.digamma(half) - special.digamma(0.5 * nu)) - 0.5 / nu
    d2c = 0.25 * (special.polygamma(1, half) - special.polygamma(1, 0.5 * nu)) + 0.5 / nu**2
    # L' = -s1/nu, L'' = (2 s1 - s2)/nu^2; G = n_k c - half L
    value = n_k * c - half * log1p_sum
    d_nu = n_k * dc - 0.5 * log1p_sum + half * s1 / nu
    d2_nu = n_k * d2c + s1 / nu - half * (2.0 * s1 - s2) / nu**2
    rounding = 32.0 * _EPS * (abs(n_k * c) + abs(half * log1p_sum))
    return value, nu * d_nu, nu * d_nu + nu * nu * d2_nu, rounding


def _maximize_df(df, weights, d2, n_k, bounds):
    """The degrees of freedom in ``bounds`` that raise G(nu) most, starting at ``df``.

    ``weights`` (non-negative) and ``d2`` (finite) are one expert's
    ``w_i r_ik`` and ``d_ik^2``.

    Newton's method on g(t) = G(e^t), t = log(nu), from the current value:
    the Newton step where g is locally concave (else a unit step uphill), at
    most a factor e on nu per step, projected onto the bounds and halved until
    g increases. Each accepted step raises g, so the result is never worse
    than ``df`` (it is ``df`` itself when no step ascends, clipped to the
    bounds if it lies outside them). "Raises" allows the
    rounding error of g: next to the maximum a Newton step gains less than g's
    rounding, and a strict comparison would stop Newton at a point set by the
    rounding (~1e-7 from the maximum in log nu) instead of converging.
    """
    lo, hi = math.log(bounds[0]), math.log(bounds[1])
    scratch = (np.empty_like(d2), np.empty_like(d2))
    t = t_start = min(max(math.log(df), lo), hi)
    g, g1, g2, rounding = _df_objective(t, weights, d2, n_k, scratch)
    for _ in range(_DF_MAX_NEWTON):
        if g2 < 0.0:
            step = -g1 / g2
        elif g1 != 0.0:
            step = math.copysign(_DF_MAX_STEP, g1)
        else:
            break
        step = max(-_DF_MAX_STEP, min(_DF_MAX_STEP, step))
        accepted = False
        for _ in range(_DF_MAX_HALVINGS):
            t_new = min(max(t + step, lo), hi)
            if t_new == t:
                break
            g_new, g1_new, g2_new, rounding_new = _df_objective(t_new, weights, d2, n_k, scratch)
            if g_new >= g - max(rounding, rounding_new):
                accepted = True
                break
            step *= 0.5
        if not accepted:
            break
        moved = abs(t_new - t)
        t, g, g1, g2, rounding = t_new, g_new, g1_new, g2_new, rounding_new
        if moved < _DF_STEP_TOL:  # Newton converges quadratically: the next step is ~ moved^2
            break
    if t == t_start and bounds[0] <= df <= bounds[1]:
        return float(df)  # not exp(log(df)), which may differ in the last bit
    return math.exp(t)


class StudentTExperts(PenalizedCoefMixin, ExpertFamily):
    """K robust linear regression experts with Student-t noise.

    Expert k models ``y = x . beta_k + sigma_k e``, ``e ~ t_{nu_k}`` (a
    Student-t with ``nu_k`` degrees of freedom), on a design ``x`` (with a
    constant column when the estimator fits intercepts). Heavy tails make the
    fit robust: an observation far from an expert's line gets a small weight
    in that expert's regression. It is the t mixture of experts (TMoE) of
    Chamroukhi (2016), fitted by the ECME algorithm (see Notes). Designs are
    feature-major ``XT`` (p, n); per-expert outputs are expert-major (K, n).

    Parameters
    ----------
    n_experts : int
    reg_covar : float, default=1e-6
        Floor on each squared scale ``sigma_k^2``, relative to the (weighted)
        variance of y; where y is constant it is an absolute floor.
    df_init : float, default=10.0
        Starting degrees of freedom of every expert (clipped to ``df_bounds``):
        moderately heavy tails, so that the first iterations already
        down-weight gross outliers, while the fit can move towards the
        Gaussian (large nu) or the Cauchy (nu = 1) as the data ask.
    df_bounds : tuple of two floats, default=(0.5, 200.0)
        Interval the degrees of freedom are estimated in. Beyond ~200 a t
        distribution is practically Gaussian and the likelihood is flat in nu;
        the lower bound keeps the density proper and the fit away from the
        degenerate limit nu -> 0. Equal bounds fix nu at that value (then nu is
        not counted in :meth:`n_parameters`).
    penalty : float, default=0.0
        Elastic-net penalty ``penalty * (l1_ratio ||phi_k||_1 + (1 - l1_ratio)
        / 2 ||phi_k||^2)`` on each expert's location slopes divided by its
        scale, ``phi_k = b_k / sigma_k`` (not the intercept).
        CM-step 1 then maximises the penalised expected complete-data
        log-likelihood: a weighted elastic net at the current scale
        (coordinate descent on the moments with weights ``w r u``), then the
        scale in closed form (see
        :func:`mixexp._penalties.penalized_least_squares`); neither decreases
        the penalised objective.
    l1_ratio : float, default=0.0
        Elastic-net mixing in [0, 1] (0: ridge, 1: lasso).
    intercept : bool, default=True
        Whether column 0 of the design is the constant (never penalised).

    Attributes
    ----------
    coef : ndarray of shape (n_experts, n_design_features)
        Location coefficients beta_k.
    var : ndarray of shape (n_experts,)
        Squared scales sigma_k^2. Not the variance of the noise, which is
        ``sigma_k^2 nu_k / (nu_k - 2)`` for nu_k > 2 and infinite otherwise.
    df : ndarray of shape (n_experts,)
        Degrees of freedom nu_k.
    var_floor : float

    See Also
    --------
    GaussianExperts : the limit nu -> infinity.

    Notes
    -----
    The density of expert k is

    .. math::

        f_k(y \\mid x) = \\frac{\\Gamma\\bigl(\\frac{\\nu_k+1}{2}\\bigr)}
        {\\Gamma\\bigl(\\frac{\\nu_k}{2}\\bigr)\\sqrt{\\pi\\nu_k}\\,\\sigma_k}
        \\Bigl(1 + \\frac{d_k^2}{\\nu_k}\\Bigr)^{-\\frac{\\nu_k+1}{2}},
        \\qquad d_k = \\frac{y - x^\\top\\beta_k}{\\sigma_k}.

    It is the scale mixture ``y | x, u ~ N(x'beta_k, sigma_k^2 / u)``,
    ``u ~ Gamma(nu_k/2, rate nu_k/2)``. Given the responsibilities ``r_ik``
    of the E-step (at the current parameters), the M-step is one ECME
    iteration (Liu and Rubin 1995) on the weighted log-likelihood
    ``sum_i w_i r_ik log f_k(y_i | x_i)`` of each expert:

    1. E-step for the latent scales, at the current parameters:
       ``u_ik = (nu_k + 1) / (nu_k + d_ik^2)``.
    2. CM-step 1 (beta, sigma at fixed nu): weighted least squares with
       weights ``w_i r_ik u_ik`` for ``beta_k``, then
       ``sigma_k^2 = sum_i w_i r_ik u_ik (y_i - x_i'beta_k)^2 / sum_i w_i r_ik``,
       floored at ``var_floor``. This is the exact maximiser of the
       expected complete-data log-likelihood, so by the EM inequality it does
       not decrease the weighted log-likelihood.
    3. CM-step 2 (nu at the new beta, sigma): ``nu_k`` maximises the weighted
       log-likelihood itself, ``G(nu) = n_k [log Gamma((nu+1)/2) - log
       Gamma(nu/2) - log(nu)/2] - (nu+1)/2 sum_i w_i r_ik log(1 + d_ik^2/nu)``
       over ``df_bounds``. Its stationarity condition is the ECME equation
       for nu of Chamroukhi (2016), the ECM equation of Peel and McLachlan
       (2000) with the latent scales recomputed at the new beta, sigma and
       nu. It is solved by Newton's method in log(nu) from the current value,
       with every step checked to ascend, so it can only increase G.

    Both CM-steps increase the weighted log-likelihood of each expert, so
    with the E-step each EM iteration does not decrease the observed
    log-likelihood of the mixture. ECME converges much faster than ECM in
    nu (Liu and Rubin 1995): on a 2-expert problem with n = 1e5 and
    ``tol=1e-8`` it needed 27 iterations where ECM (nu from the ECM equation)
    needed 123, to the same optimum.

    :meth:`mean` returns the location ``x'beta_k``, the mean of the expert
    for nu_k > 1 (and its median for every nu_k). The density is evaluated
    with numpy (its vectorised ``log1p`` is several times faster than a
    scalar Numba loop).

    References
    ----------
    .. [1] Chamroukhi, F. (2016). Robust mixture of experts modeling using
       the t distribution. Neural Networks, 79, 20-36.
    .. [2] Peel, D. and McLachlan, G. J. (2000). Robust mixture modelling
       using the t distribution. Statistics and Computing, 10(4), 339-348.
    .. [3] Liu, C. and Rubin, D. B. (1995). ML estimation of the t
       distribution using EM and its extensions, ECM and ECME. Statistica
       Sinica, 5(1), 19-39.
    """

    kind = "student_t"
    #: the estimator may fit on a centred and scaled y (location-scale family)
    standardize_y = True
    #: the elastic-net penalty is on coef / sqrt(var) (see mixexp._penalties.penalized_least_squares)
    penalize_over_scale = True

    def __init__(
        self, n_experts, reg_covar=1e-6, *, df_init=10.0, df_bounds=(0.5, 200.0), penalty=0.0, l1_ratio=0.0,
        intercept=True,
    ):
        super().__init__(n_experts, reg_covar)
        self.penalty = penalty
        self.l1_ratio = l1_ratio
        self.intercept = intercept
        bounds = tuple(df_bounds) if np.ndim(df_bounds) == 1 else ()
        if len(bounds) != 2 or not all(isinstance(b, Real) and math.isfinite(b) for b in bounds):
            raise ValueError(f"df_bounds must be two finite numbers (low, high); got {df_bounds!r}.")
        if not 0 < bounds[0] <= bounds[1]:
            raise ValueError(f"df_bounds must satisfy 0 < low <= high; got {df_bounds!r}.")
        if not (isinstance(df_init, Real) and math.isfinite(df_init) and df_init > 0):
            raise ValueError(f"df_init must be a positive finite number; got {df_init!r}.")
        self.df_init = float(df_init)
        self.df_bounds = (float(bounds[0]), float(bounds[1]))
        self.var = None
        self.df = None
        self.var_floor = None

    @property
    def fixed_df(self):
        """True when ``df_bounds`` fix the degrees of freedom."""
        return self.df_bounds[0] == self.df_bounds[1]

    def n_parameters(self):
        """Number of free parameters: K coefficient vectors, K scales and K degrees of freedom.

        The degrees of freedom are not counted when ``df_bounds`` fix them.
        """
        return self.coef.size + self.var.size + (0 if self.fixed_df else self.df.size)

    def log_prob(self, XT, y):
        """(K, n) log-densities log f_k(y_i | x_i) of the scaled Student-t experts."""
        z = _squared_standardized_residuals(XT, y, self.coef, self.var)
        z /= self.df[:, None]
        np.log1p(z, out=z)
        z *= (-0.5 * (self.df + 1.0))[:, None]
        z += _log_norm_const(self.df, self.var)[:, None]
        return z

    def initialize(self, XT, y, resp, sample_weight):
        """Gaussian weighted least squares from ``resp``; nu_k = ``df_init`` (clipped to ``df_bounds``)."""
        self.set_variance_floor(y, sample_weight)
        gram, xy, yy, nk = linear_stats(XT, y, resp, sample_weight)
        coef, var = _solve_weighted_least_squares(gram, xy, yy, nk, self.var_floor)
        if self.penalty:
            coef, var = penalized_least_squares(
                gram, xy, yy, nk, self.var_floor, coef, var, self.penalty, self.l1_ratio, self.intercept
            )
        self.coef, self.var = coef, np.maximum(var, _TINY)
        lo, hi = self.df_bounds
        self.df = np.full(self.n_experts, min(max(self.df_init, lo), hi))

    def m_step(self, XT, y, resp, sample_weight, stats=None):
        """One ECME iteration per expert (see Notes); ``stats`` is ignored."""
        df = self.df
        wr = resp * sample_weight  # (K, n): w_i r_ik
        nk = wr.sum(axis=1)
        # E-step for the latent scales at the current parameters
        u = _squared_standardized_residuals(XT, y, self.coef, self.var)
        u += df[:, None]
        np.divide((df + 1.0)[:, None], u, out=u)
        # CM-step 1: weighted least squares with weights w r u, scale over sum w r
        u *= resp
        gram, xy, yy, _ = linear_stats(XT, y, u, sample_weight)
        del u
        if self.penalty:
            # the penalised CM-step: a weighted elastic net at the current scale, then the scale
            coef, var = penalized_least_squares(
                gram, xy, yy, nk, self.var_floor, self.coef, self.var, self.penalty, self.l1_ratio,
                self.intercept,
            )  # fmt: skip
        else:
            coef, var = _solve_weighted_least_squares(gram, xy, yy, nk, self.var_floor)
        self.coef, self.var = coef, np.maximum(var, _TINY)
        if self.fixed_df:  # (a warm start may bring other values)
            self.df = np.full(self.n_experts, self.df_bounds[0])
            return
        # CM-step 2: nu_k maximises the weighted log-likelihood at the new beta, sigma
        d2 = _squared_standardized_residuals(XT, y, self.coef, self.var)
        new = df.copy()
        for k in range(self.n_experts):
            if not nk[k] > 0:
                continue  # an empty expert: its likelihood does not depend on nu
            a, d2k = wr[k], d2[k]
            if not np.isfinite(d2k).all():
                keep = a > 0
                a, d2k = a[keep], d2k[keep]
                if not np.isfinite(d2k).all():
                    continue  # a weighted row at infinite distance: G = -inf for every nu
            new[k] = _maximize_df(df[k], a, d2k, nk[k], self.df_bounds)
        self.df = new

    def mean(self, XT):
        """(K, n) expert locations x_i . beta_k (the means where nu_k > 1)."""
        return self.coef @ XT

    def variance(self, XT):
        """(K, n) expert variances ``sigma_k^2 nu_k / (nu_k - 2)``, ``inf`` where nu_k <= 2.

        A t distribution with nu <= 2 degrees of freedom has no finite
        variance (and none at all for nu <= 1, where the mean does not exist
        either); ``inf`` makes the mixture's variance infinite as soon as such
        an expert has positive weight, which is the true value for 1 < nu <= 2.
        """
        with np.errstate(divide="ignore", invalid="ignore"):
            var = np.where(self.df > 2.0, self.var * self.df / (self.df - 2.0), np.inf)
        return np.repeat(var[:, None], XT.shape[1], axis=1)

    def cdf(self, XT, y):
        """(K, n) Student-t distribution functions ``T_{nu_k}((y_i - x_i . beta_k) / sigma_k)``."""
        z = (y - self.coef @ XT) / np.sqrt(self.var)[:, None]
        return special.stdtr(self.df[:, None], z)

    def ppf(self, XT, q):
        """(K, n) Student-t quantiles ``x_i . beta_k + sigma_k T_{nu_k}^{-1}(q_i)``."""
        K, n = self.coef.shape[0], XT.shape[1]
        t = special.stdtrit(self.df[:, None], np.broadcast_to(q, (K, n)))
        # stdtrit returns nan at q = 0 and q = 1 for some nu: the ends of the support
        t = np.where(q == 0.0, -np.inf, np.where(q == 1.0, np.inf, t))
        return self.coef @ XT + np.sqrt(self.var)[:, None] * t

    def sample(self, XT, expert, rng):
        """Student-t draws from the chosen experts (see :meth:`ExpertFamily.sample`)."""
        loc = chosen_expert_values(self.coef @ XT, expert)
        return loc + np.sqrt(self.var)[expert] * rng.standard_t(self.df[expert])

    def raw_params(self, scaling, intercept):
        """Parameters on the raw data's scale: ``{"coef", "var", "df"}``.

        ``var`` holds the squared scales sigma_k^2 (not the noise variances);
        the degrees of freedom do not depend on the scale of y.
        """
        sc = scaling
        coef = linear_to_raw(sc.y_scale * self.coef, sc.expert_mean, sc.expert_scale, intercept)
        if intercept:
            coef[:, 0] += scaling.y_mean
        return {"coef": coef, "var": scaling.y_scale**2 * self.var, "df": self.df.copy()}

    def set_raw_params(self, params, scaling, intercept):
        """Set the parameters from :meth:`raw_params`' output under ``scaling``."""
        coef = np.array(params["coef"], dtype=float)
        if intercept:
            coef[:, 0] -= scaling.y_mean
        sc = scaling
        self.coef = linear_from_raw(coef, sc.expert_mean, sc.expert_scale, intercept) / sc.y_scale
        self.var = np.asarray(params["var"], dtype=float) / scaling.y_scale**2
        self.df = np.array(params["df"], dtype=float)

    # -- flat parameter vector -----------------------------------------------
    def get_flat(self):
        """Coefficients, log squared scales, then log degrees of freedom, as a flat vector.

        The log degrees of freedom are left out when ``df_bounds`` fix them.
        """
        parts = [self.coef.ravel(), np.log(self.var)]
        if not self.fixed_df:
            parts.append(np.log(self.df))
        return np.concatenate(parts)

    def set_flat(self, theta):
        """Set the parameters from :meth:`get_flat`'s layout."""
        theta = np.asarray(theta, dtype=float)
        K, p = self.coef.shape
        self.coef = np.reshape(theta[: K * p], (K, p)).copy()
        self.var = np.exp(theta[K * p : K * p + K])
        if not self.fixed_df:
            self.df = np.exp(theta[K * p + K :])

    def flat_grad(self, XT, y, resp, sample_weight):
        """Gradient of ``sum_i w_i sum_k r_ki log f_k(y_i | x_i)`` with respect to :meth:`get_flat`.

        With ``a_ik = w_i r_ik``, residuals ``e_ik``, ``d_ik^2 = e_ik^2 /
        sigma_k^2`` and the latent-scale weights ``u_ik = (nu_k + 1) / (nu_k +
        d_ik^2)``: ``sum_i a_ik u_ik e_ik x_i / sigma_k^2`` for the
        coefficients, ``sum_i a_ik (u_ik d_ik^2 - 1) / 2`` for log sigma_k^2 and
        ``nu_k G'(nu_k)`` for log nu_k, with G of the Notes.

        Parameters
        ----------
        XT : ndarray of shape (p, n)
        y : ndarray of shape (n,)
        resp : ndarray of shape (K, n)
        sample_weight : ndarray of shape (n,)

        Returns
        -------
        ndarray of shape (n_flat,)
        """
        a = resp * sample_weight
        e = y - self.coef @ XT
        d2 = e * e / self.var[:, None]
        df = self.df[:, None]
        u = (df + 1.0) / (df + d2)
        aue = a * u * e
        g_coef = (aue @ XT.T) / self.var[:, None]
        g_var = 0.5 * (np.einsum("kn,kn->k", a * u, d2) - a.sum(axis=1))
        parts = [g_coef.ravel(), g_var]
        if not self.fixed_df:
            nk = a.sum(axis=1)
            half = 0.5 * (self.df + 1.0)
            dc = 0.5 * (special.digamma(half) - special.digamma(0.5 * self.df)) - 0.5 / self.df
            s1 = np.einsum("kn,kn->k", a, d2 / (df + d2))
            log1p_sum = np.einsum("kn,kn->k", a, np.log1p(d2 / df))
            d_nu = nk * dc - 0.5 * log1p_sum + half * s1 / self.df
            parts.append(self.df * d_nu)
        return np.concatenate(parts)

    def flat_bounds(self):
        """Bounds of :meth:`get_flat`: log sigma_k^2 >= log(var_floor), log nu_k within ``log(df_bounds)``.

        Returns
        -------
        lower, upper : ndarray of shape (n_flat,)
        """
        K = self.n_experts
        lower = np.full(self.coef.size, -np.inf)
        upper = np.full(self.coef.size, np.inf)
        floor = max(self.var_floor or 0.0, _TINY)
        lower = np.concatenate([lower, np.full(K, np.log(floor))])
        upper = np.concatenate([upper, np.full(K, np.inf)])
        if not self.fixed_df:
            lower = np.concatenate([lower, np.full(K, np.log(self.df_bounds[0]))])
            upper = np.concatenate([upper, np.full(K, np.log(self.df_bounds[1]))])
        return lower, upper
