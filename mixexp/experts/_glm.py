"""Log-link GLM experts: Poisson counts and Gamma positive responses.

Both families model ``log E[y | x, expert k] = x . beta_k`` and see the raw y
(``standardize_y = False``). Their M-steps have no closed form: each is one or
a few damped Newton steps per EM iteration, with step halving so that the
expected complete-data log-likelihood of each expert never decreases (a
generalised EM step, enough for a monotone log-likelihood). The weighted
objective, gradient and Hessian passes are the Numba kernels
:func:`mixexp._kernels.glm_stats` and :func:`mixexp._kernels.glm_log_prob`.
"""

import numpy as np
from scipy.special import digamma, gammainc, gammaincc, gammaincinv, gammaln, pdtrik, polygamma

from .._kernels import glm_log_prob, glm_stats, linear_stats
from .._penalties import PenalizedCoefMixin, elastic_net_penalty, prox_newton_direction, slope_mask
from ._base import ExpertFamily, chosen_expert_values
from ._gaussian import _solve_weighted_least_squares

#: step halvings tried before a Newton step is dropped (the expert then keeps its coefficients)
_MAX_HALVINGS = 40
#: Levenberg damping of the Newton systems, relative to the mean diagonal of the Hessian
_DAMPING = 1e-10
#: rounding level of an expert's objective, relative to max(|Q_k|, sum_i w_i r_ki): a Newton step
#: whose predicted gain is below it is not tried (its check would compare rounding errors)
_NOISE = 1e-13
#: smallest Gamma shape (largest dispersion) the shape step returns
SHAPE_MIN = 1e-8
#: smallest dispersion floor: with ``reg_covar=0`` the shape is still at most 1e12
_DISPERSION_FLOOR_MIN = 1e-12


def _newton_directions(grad, hess):
    """Damped Newton directions ``(H_k + lambda_k I)^-1 g_k`` for each expert.

    Parameters
    ----------
    grad : ndarray of shape (K, p)
    hess : ndarray of shape (K, p, p)
        Negative Hessians (positive semi-definite).

    Returns
    -------
    ndarray of shape (K, p)
        Zero rows for experts whose Hessian is zero (no weight).
    """
    K, p = grad.shape
    scale = np.trace(hess, axis1=1, axis2=2) / p
    damped = hess + (_DAMPING * scale)[:, None, None] * np.eye(p)
    delta = np.zeros((K, p))
    for k in range(K):
        if not (scale[k] > 0 and np.all(np.isfinite(damped[k])) and np.all(np.isfinite(grad[k]))):
            continue
        try:
            L = np.linalg.cholesky(damped[k])
            delta[k] = np.linalg.solve(L.T, np.linalg.solve(L, grad[k]))
        except np.linalg.LinAlgError:
            delta[k] = np.linalg.lstsq(damped[k], grad[k], rcond=None)[0]
    delta[~np.all(np.isfinite(delta), axis=1)] = 0.0
    return delta


def _log_minus_digamma(a):
    """``log a - digamma(a)`` and ``a * trigamma(a) - 1``, accurate for large ``a`` too.

    Both tend to 0 like 1 / (2a); above a = 1e3 their asymptotic series (to
    a^-6, truncation below 1e-26 relative) avoid the cancellation of the direct forms.
    """
    if a < 1e3:
        return np.log(a) - digamma(a), a * polygamma(1, a) - 1.0
    inv = 1.0 / a
    inv2 = inv * inv
    value = inv * (0.5 + inv * (1.0 / 12.0 + inv2 * (-1.0 / 120.0 + inv2 / 252.0)))
    slope = inv * (0.5 + inv * (1.0 / 6.0 + inv2 * (-1.0 / 30.0 + inv2 / 42.0)))
    return value, slope


def _shape_objective(shape, nk, s):
    """sum_i a_i log f_i as a function of the Gamma shape, up to terms free of it."""
    return nk * (shape * np.log(shape) - gammaln(shape)) + shape * s


def gamma_shape_step(nk, s, current, shape_max):
    """Maximise each expert's Gamma log-likelihood over its shape (coefficients fixed).

    Parameters
    ----------
    nk : ndarray of shape (K,)
        sum_i a_i, with ``a_i = w_i r_ki``.
    s : ndarray of shape (K,)
        sum_i a_i (log y_i - eta_i - y_i / mu_i).
    current : ndarray of shape (K,) or None
        Current shapes; a new shape is kept only where it does not lower the
        objective (None: always).
    shape_max : float
        Upper bound on the shapes (the lower bound is ``SHAPE_MIN``).

    Returns
    -------
    ndarray of shape (K,)

    Notes
    -----
    The objective ``h(alpha) = n_k (alpha log alpha - lgamma(alpha)) + alpha s``
    is concave; its maximiser solves ``log alpha - digamma(alpha) = c`` with
    ``c = -1 - s / n_k >= 0`` (``c`` is the mean of ``u - 1 - log u``,
    ``u = y / mu``). The left side decreases from +inf to 0, so the root is
    unique; it is found by Newton's method in ``log alpha`` from Minka's
    closed-form approximation, safeguarded by bisection, and clipped to
    ``[SHAPE_MIN, shape_max]`` (the constrained maximiser of a concave function).
    """
    nk = np.asarray(nk, dtype=float)
    K = nk.shape[0]
    out = np.full(K, 1.0) if current is None else np.array(current, dtype=float)
    lo_b, hi_b = np.log(SHAPE_MIN), np.log(shape_max)
    for k in range(K):
        if not (nk[k] > 0 and np.isfinite(s[k])):
            continue
        c = -1.0 - s[k] / nk[k]

        def f(la, c=c):
            return _log_minus_digamma(np.exp(la))[0] - c

        if not c > 0 or f(hi_b) >= 0:
            shape = float(shape_max)
        elif f(lo_b) <= 0:
            shape = SHAPE_MIN
        else:
            # Minka (2002): alpha ~ (3 - c + sqrt((c - 3)^2 + 24 c)) / (12 c)
            a0 = (3.0 - c + np.sqrt((c - 3.0) ** 2 + 24.0 * c)) / (12.0 * c)
            la = float(np.clip(np.log(a0), lo_b, hi_b))
            lo, hi = lo_b, hi_b
            for _ in range(100):
                fv = f(la)
                if fv > 0:
                    lo = la
                else:
                    hi = la
                slope = -_log_minus_digamma(np.exp(la))[1]  # d f / d log alpha < 0
                new = la - fv / slope if slope < 0 else 0.5 * (lo + hi)
                if not lo < new < hi:
                    new = 0.5 * (lo + hi)
                if abs(new - la) <= 1e-14 * max(1.0, abs(la)):
                    la = new
                    break
                la = new
            shape = float(np.clip(np.exp(la), SHAPE_MIN, shape_max))
        if current is None or _shape_objective(shape, nk[k], s[k]) >= _shape_objective(
            out[k], nk[k], s[k]
        ):
            out[k] = shape
    return out


class _LogLinkExperts(PenalizedCoefMixin, ExpertFamily):
    """Shared machinery of the log-link GLM experts (not for direct use)."""

    #: the kernels' family name
    family = None
    standardize_y = False

    def __init__(
        self, n_experts, reg_covar=1e-6, newton_steps=1, *, penalty=0.0, l1_ratio=0.0, intercept=True
    ):
        super().__init__(n_experts, reg_covar)
        self.penalty = penalty
        self.l1_ratio = l1_ratio
        self.intercept = intercept
        self.newton_steps = newton_steps

    # -- to specialise ---------------------------------------------------------
    def _shapes(self):
        return None

    def _working_response(self, y):
        raise NotImplementedError

    def _after_newton(self, q, nk, log_y_sum, first):
        """Hook run after the coefficient steps (the Gamma shape step)."""

    # -- interface ---------------------------------------------------------------
    def n_parameters(self):
        """Number of free parameters of the K experts."""
        return int(self.coef.size)

    def log_prob(self, XT, y):
        """(K, n) log-densities log f_k(y_i | x_i) (see the class Notes)."""
        return glm_log_prob(XT, y, self.coef, self.family, self._shapes())

    def mean(self, XT):
        """(K, n) expert means ``exp(x_i . beta_k)``."""
        return np.exp(self.coef @ XT)

    def initialize(self, XT, y, resp, sample_weight):
        """Start from a weighted least-squares fit of a log-transformed y, then an M-step.

        Parameters
        ----------
        XT : ndarray of shape (p, n)
        y : ndarray of shape (n,)
        resp : ndarray of shape (K, n)
            Starting responsibilities.
        sample_weight : ndarray of shape (n,)
        """
        self.set_variance_floor(y, sample_weight)
        gram, xy, yy, nk = linear_stats(XT, self._working_response(y), resp, sample_weight)
        self.coef, _ = _solve_weighted_least_squares(gram, xy, yy, nk, 0.0)
        self._update(XT, y, resp, sample_weight, first=True)

    def m_step(self, XT, y, resp, sample_weight, stats=None):
        """Damped Newton steps with step halving on each expert's weighted objective.

        Parameters
        ----------
        XT : ndarray of shape (p, n)
        y : ndarray of shape (n,)
        resp : ndarray of shape (K, n)
        sample_weight : ndarray of shape (n,)
        stats : None
            Unused (no fused kernel supplies statistics for these families).
        """
        self._update(XT, y, resp, sample_weight, first=False)

    def _penalty_scale(self):
        """(K,) factor of Q_k in the expert's log-likelihood in beta (1; the Gamma's shapes)."""
        return np.ones(self.n_experts)

    def _update_penalized(self, XT, y, resp, sample_weight, first):
        """Proximal Newton steps on ``scale_k Q_k(beta) - P(beta)`` with step halving.

        ``scale_k Q_k`` is expert k's log-likelihood in beta (up to terms free
        of it), so the coefficient objective is ``Q_k - P / scale_k``. Each
        expert's direction maximises the quadratic model of ``Q_k`` minus the
        exact penalty (:func:`mixexp._penalties.prox_newton_direction`); the
        step is halved until that objective, evaluated exactly, does not
        decrease (else the expert keeps its coefficients).
        """
        family = self.family
        q, grad, hess, nk, log_y_sum = glm_stats(
            XT, y, resp, sample_weight, self.coef, family, log_y=family == "gamma"
        )
        K, p = self.coef.shape
        mask = slope_mask(p, self.intercept)
        alpha = self.penalty / self._penalty_scale()

        def penalties(coef):
            pairs = zip(coef, alpha, strict=True)
            return np.array([elastic_net_penalty(c, a, self.l1_ratio, self.intercept) for c, a in pairs])

        obj = q - penalties(self.coef)
        for step in range(self.newton_steps):
            derivatives = step + 1 < self.newton_steps
            delta = np.zeros((K, p))
            for k in range(K):
                if nk[k] > 0 and np.all(np.isfinite(hess[k])) and np.all(np.isfinite(grad[k])):
                    delta[k] = prox_newton_direction(
                        self.coef[k], grad[k], hess[k], alpha[k], self.l1_ratio, mask
                    )
            todo = np.any(delta != 0.0, axis=1)
            if not todo.any():
                break
            base = self.coef
            coef = base.copy()
            obj_start = obj.copy()
            t = 1.0
            for _ in range(_MAX_HALVINGS):
                trial = base.copy()
                trial[todo] += t * delta[todo]
                q_new, g_new, h_new, _, _ = glm_stats(
                    XT, y, resp, sample_weight, trial, family, active=todo, derivatives=derivatives
                )
                obj_new = q_new - penalties(trial)
                ok = todo & np.isfinite(obj_new) & (obj_new >= obj)
                coef[ok] = trial[ok]
                q[ok] = q_new[ok]
                obj[ok] = obj_new[ok]
                if derivatives:
                    grad[ok], hess[ok] = g_new[ok], h_new[ok]
                t *= 0.5
                todo &= ~ok
                if not todo.any():
                    break
            self.coef = coef
            if np.all(obj - obj_start <= _NOISE * np.maximum(np.maximum(np.abs(q), nk), 1.0)):
                break
        self._after_newton(q, nk, log_y_sum, first)

    def _update(self, XT, y, resp, sample_weight, first):
        if self.penalty:
            self._update_penalized(XT, y, resp, sample_weight, first)
            return
        family = self.family
        q, grad, hess, nk, log_y_sum = glm_stats(
            XT, y, resp, sample_weight, self.coef, family, log_y=family == "gamma"
        )
        for step in range(self.newton_steps):
            # the derivatives at the accepted point serve only a further Newton step
            derivatives = step + 1 < self.newton_steps
            delta = _newton_directions(grad, hess)
            # g'delta: the gain of a full step on the quadratic model is g'delta / 2, and of
            # a step t <= 1 at least t g'delta / 2
            decrement = np.einsum("kp,kp->k", grad, delta)
            noise = _NOISE * np.maximum(np.maximum(np.abs(q), nk), 1.0)
            todo = np.any(delta != 0.0, axis=1) & (decrement > noise)
            if not todo.any():
                break
            base = self.coef
            coef = base.copy()
            q_start = q.copy()
            t = 1.0
            for _ in range(_MAX_HALVINGS):
                trial = base.copy()
                trial[todo] += t * delta[todo]
                q_new, g_new, h_new, _, _ = glm_stats(
                    XT, y, resp, sample_weight, trial, family, active=todo, derivatives=derivatives
                )
                ok = todo & np.isfinite(q_new) & (q_new >= q)
                coef[ok] = trial[ok]
                q[ok] = q_new[ok]
                if derivatives:
                    grad[ok], hess[ok] = g_new[ok], h_new[ok]
                t *= 0.5
                todo &= ~ok & (0.5 * t * decrement > noise)
                if not todo.any():
                    break
            self.coef = coef
            gain = q - q_start
            if np.all(gain <= noise):
                break
        self._after_newton(q, nk, log_y_sum, first)

    def cluster_target(self, y):
        """y on the scale of the linear predictor, for the k-means start.

        Parameters
        ----------
        y : ndarray of shape (n,)

        Returns
        -------
        ndarray of shape (n,)
            ``log(y + 0.5)`` (Poisson) or ``log(y)`` (Gamma): clusters of the
            k-means start then follow the experts' log-linear means, not the
            skewed raw values (on counts, k-means on the raw y starts EM in a
            worse local optimum).
        """
        return self._working_response(y)

    # -- raw scale -----------------------------------------------------------------
    def get_flat(self):
        """Coefficients as a flat vector."""
        return self.coef.ravel().copy()

    def set_flat(self, theta):
        """Set the parameters from :meth:`get_flat`'s layout."""
        K, p = self.coef.shape
        self.coef = np.reshape(np.asarray(theta, dtype=float)[: K * p], (K, p)).copy()

    def _eta_score(self, y, eta, a):
        """(K, n) ``a * d log f / d eta`` and the extra gradient entries (the Gamma's shapes)."""
        raise NotImplementedError

    def flat_grad(self, XT, y, resp, sample_weight):
        """Gradient of ``sum_i w_i sum_k r_ki log f_k(y_i | x_i)`` with respect to :meth:`get_flat`.

        The coefficients' part is ``sum_i w_i r_ki (d log f_k / d eta) x_i``
        with ``eta = x_i . beta_k`` (see the class Notes).

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
        score, extra = self._eta_score(y, self.coef @ XT, a)
        return np.concatenate([(score @ XT.T).ravel(), extra])


class PoissonExperts(_LogLinkExperts):
    """K Poisson regression experts with a log link.

    Expert k models counts ``y | x ~ Poisson(mu_k(x))``, ``log mu_k(x) = x .
    beta_k``, on a design ``x`` (with a constant column when the estimator fits
    intercepts). The target is not standardised (``standardize_y = False``).

    Parameters
    ----------
    n_experts : int
        Number of experts K.
    reg_covar : float, default=1e-6
        Unused (the Poisson family has no scale parameter); accepted for the
        common family signature.
    newton_steps : int, default=1
        Newton steps on the coefficients per M-step.
    penalty : float, default=0.0
        Elastic-net penalty ``penalty * (l1_ratio ||b_k||_1 + (1 - l1_ratio) /
        2 ||b_k||^2)`` on each expert's slopes (not the intercept), summed over
        the experts and subtracted from the log-likelihood. With a penalty the
        coefficient step is a proximal Newton step (the quadratic model of the
        log-likelihood plus the exact penalty, minimised by coordinate
        descent), halved until the penalised objective does not decrease.
    l1_ratio : float, default=0.0
        Elastic-net mixing in [0, 1] (0: ridge, 1: lasso).
    intercept : bool, default=True
        Whether column 0 of the design is the constant (never penalised).

    Attributes
    ----------
    coef : ndarray of shape (n_experts, n_design_features)
        The beta_k on the standardised design.

    Notes
    -----
    The log-density is ``log f_k(y | x) = y eta - exp(eta) - log(y!)``,
    ``eta = x . beta_k``. Given responsibilities ``r_ki`` and sample weights
    ``w_i``, the M-step raises

    .. math::

        Q_k(\\beta) = \\sum_i w_i r_{ki} \\bigl(y_i \\eta_{ik} - e^{\\eta_{ik}}\\bigr),

    a concave function with gradient ``sum_i w_i r_ki (y_i - mu_ik) x_i`` and
    negative Hessian ``H = sum_i w_i r_ki mu_ik x_i x_i'``, by the Newton step
    ``(H + lambda I)^{-1} g`` (``lambda = 1e-10 tr(H) / p``, a Levenberg damping
    that changes only the step), halved until ``Q_k`` does not decrease (the
    objective is checked exactly; an expert whose step fails 40 halvings keeps
    its coefficients). This is a generalised EM step: the log-likelihood never
    decreases. The starting coefficients are a weighted least-squares fit of
    ``log(y + 0.5)``.
    """

    kind = "poisson"
    family = "poisson"
    discrete = True

    def check_target(self, y):
        """Check that y holds non-negative integer counts.

        Parameters
        ----------
        y : ndarray of shape (n,)
            Float64 and finite.

        Returns
        -------
        ndarray of shape (n,)

        Raises
        ------
        ValueError
            If y has negative or non-integer values.
        """
        if np.any(y < 0):
            raise ValueError(
                f"expert='poisson' needs non-negative integer counts y; got negative values "
                f"(min {y.min():g})."
            )
        bad = y != np.floor(y)
        if np.any(bad):
            raise ValueError(
                f"expert='poisson' needs non-negative integer counts y; got non-integer values "
                f"(e.g. {y[np.argmax(bad)]!r})."
            )
        return y

    def set_variance_floor(self, y, sample_weight):
        """No-op: the Poisson family has no scale parameter."""

    def variance(self, XT):
        """(K, n) expert variances, equal to the means."""
        return self.mean(XT)

    def cdf(self, XT, y):
        """(K, n) Poisson distribution functions P(Y <= y_i), 0 for y_i < 0 (y need not be integer)."""
        mu = self.mean(XT)
        k = np.floor(np.maximum(y, 0.0))
        with np.errstate(invalid="ignore"):
            out = gammaincc(k + 1.0, mu)  # P(Y <= k) for Y ~ Poisson(mu)
        return np.where(y < 0, 0.0, np.where(np.isposinf(y), 1.0, out))

    def ppf(self, XT, q):
        """(K, n) Poisson quantiles: the smallest integer y >= 0 with P(Y <= y) >= q_i.

        q = 0 gives 0 and q = 1 gives ``inf``.
        """
        mu = self.mean(XT)
        q = np.broadcast_to(q, mu.shape)
        inner = (q > 0) & (q < 1)
        # pdtrik inverts the continuous extension of the cdf in k; its ceiling is the
        # answer up to one unit of rounding, settled by evaluating the cdf either side
        with np.errstate(invalid="ignore"):
            k = np.ceil(pdtrik(np.where(inner, q, 0.5), mu))
            k = np.where(np.isfinite(k), np.maximum(k, 0.0), 0.0)
            k = np.where(gammaincc(k + 1.0, mu) < q, k + 1.0, k)
            below = np.maximum(k - 1.0, 0.0)
            k = np.where((k > 0) & (gammaincc(below + 1.0, mu) >= q), below, k)
        return np.where(q >= 1, np.inf, np.where(q <= 0, 0.0, k))

    def in_support(self, y):
        """True where y is a non-negative integer."""
        return np.isfinite(y) & (y >= 0) & (y == np.floor(y))

    def sample(self, XT, expert, rng):
        """Poisson draws from the chosen experts (see :meth:`ExpertFamily.sample`)."""
        return rng.poisson(chosen_expert_values(self.mean(XT), expert)).astype(np.float64)

    def _working_response(self, y):
        return np.log(y + 0.5)

    def _eta_score(self, y, eta, a):
        # d/d eta (y eta - exp(eta)) = y - mu
        with np.errstate(over="ignore"):
            return a * (y - np.exp(eta)), np.empty(0)


class GammaExperts(_LogLinkExperts):
    """K Gamma regression experts with a log link.

    Expert k models positive responses ``y | x ~ Gamma(shape alpha_k, mean
    mu_k(x))``, ``log mu_k(x) = x . beta_k``; its dispersion is ``1 / alpha_k``
    (the squared coefficient of variation). The target is not standardised.

    Parameters
    ----------
    n_experts : int
        Number of experts K.
    reg_covar : float, default=1e-6
        Lower bound on each dispersion ``1 / alpha_k`` (a squared coefficient
        of variation, so already relative to the mean); it keeps the likelihood
        bounded when an expert fits a few points exactly. Values below 1e-12
        act as 1e-12.
    newton_steps : int, default=1
        Newton steps on the coefficients per M-step.
    penalty : float, default=0.0
        Elastic-net penalty ``penalty * (l1_ratio ||b_k||_1 + (1 - l1_ratio) /
        2 ||b_k||^2)`` on each expert's slopes (not the intercept), summed over
        the experts and subtracted from the log-likelihood. With a penalty the
        coefficient step is a proximal Newton step (the quadratic model of the
        log-likelihood plus the exact penalty, minimised by coordinate
        descent), halved until the penalised objective does not decrease.
    l1_ratio : float, default=0.0
        Elastic-net mixing in [0, 1] (0: ridge, 1: lasso).
    intercept : bool, default=True
        Whether column 0 of the design is the constant (never penalised).

    Attributes
    ----------
    coef : ndarray of shape (n_experts, n_design_features)
        The beta_k on the standardised design.
    shape : ndarray of shape (n_experts,)
        The shapes alpha_k.
    shape_max : float
        ``1 / max(reg_covar, 1e-12)``.

    Notes
    -----
    With ``mu = exp(eta)``, ``eta = x . beta_k``,

    .. math::

        \\log f_k(y \\mid x) = \\alpha_k \\log\\frac{\\alpha_k y}{\\mu}
        - \\frac{\\alpha_k y}{\\mu} - \\log y - \\log\\Gamma(\\alpha_k),

    scipy's ``gamma.logpdf(y, a=alpha_k, scale=mu / alpha_k)``. The M-step is
    an ECM step. First the coefficients at a fixed shape: the objective is
    ``alpha_k Q_k(beta)`` plus terms free of beta, with

    .. math::

        Q_k(\\beta) = \\sum_i w_i r_{ki} \\bigl(-\\eta_{ik} - y_i e^{-\\eta_{ik}}\\bigr),

    concave with gradient ``sum_i w_i r_ki (y_i / mu_ik - 1) x_i`` and negative
    Hessian (observed information) ``sum_i w_i r_ki (y_i / mu_ik) x_i x_i'``;
    damped Newton steps with step halving never decrease it (as for
    :class:`PoissonExperts`). Then the shape at the new coefficients, by the
    exact 1-D maximisation of :func:`gamma_shape_step` within
    ``[1e-8, shape_max]``. Neither substep decreases the objective, so the
    log-likelihood never decreases. The starting coefficients are a weighted
    least-squares fit of ``log y``.

    flexmix's ``FLXMRglm(family = "Gamma")`` differs in two ways: it uses the
    inverse link, and its shape is ``sum(w) / deviance``, not the maximum
    likelihood estimate.
    """

    kind = "gamma"
    family = "gamma"

    def __init__(
        self, n_experts, reg_covar=1e-6, newton_steps=1, *, penalty=0.0, l1_ratio=0.0, intercept=True
    ):
        super().__init__(
            n_experts, reg_covar, newton_steps, penalty=penalty, l1_ratio=l1_ratio, intercept=intercept
        )
        self.shape = None
        self.shape_max = None

    def check_target(self, y):
        """Check that y is strictly positive.

        Parameters
        ----------
        y : ndarray of shape (n,)
            Float64 and finite.

        Returns
        -------
        ndarray of shape (n,)

        Raises
        ------
        ValueError
            If y has values <= 0.
        """
        if np.any(y <= 0):
            raise ValueError(f"expert='gamma' needs strictly positive y; got values <= 0 (min {y.min():g}).")
        return y

    def n_parameters(self):
        """Number of free parameters: K coefficient vectors and K shapes."""
        return int(self.coef.size + self.shape.size)

    def set_variance_floor(self, y, sample_weight):
        """Set ``shape_max = 1 / max(reg_covar, 1e-12)`` (the dispersion floor)."""
        self.shape_max = 1.0 / max(self.reg_covar, _DISPERSION_FLOOR_MIN)

    def variance(self, XT):
        """(K, n) expert variances ``mu^2 / alpha_k``."""
        return self.mean(XT) ** 2 / self.shape[:, None]

    def cdf(self, XT, y):
        """(K, n) Gamma distribution functions ``P(alpha_k, alpha_k y_i / mu_ik)``, 0 for y_i <= 0."""
        a = self.shape[:, None]
        with np.errstate(invalid="ignore"):
            out = gammainc(a, a * np.maximum(y, 0.0) / self.mean(XT))
        return np.where(y <= 0, 0.0, np.where(np.isposinf(y), 1.0, out))

    def ppf(self, XT, q):
        """(K, n) Gamma quantiles ``mu_ik P^{-1}(alpha_k, q_i) / alpha_k`` (0 at q = 0, ``inf`` at q = 1)."""
        a = self.shape[:, None]
        return gammaincinv(a, q) * self.mean(XT) / a

    def in_support(self, y):
        """True where y is positive and finite."""
        return np.isfinite(y) & (y > 0)

    def sample(self, XT, expert, rng):
        """Gamma draws from the chosen experts (see :meth:`ExpertFamily.sample`)."""
        a = self.shape[expert]
        return rng.gamma(a, chosen_expert_values(self.mean(XT), expert) / a)

    def _shapes(self):
        return self.shape

    def _penalty_scale(self):
        # the coefficients' log-likelihood is shape_k Q_k(beta): the penalty acts as P / shape_k on Q_k
        return np.ones(self.n_experts) if self.shape is None else np.asarray(self.shape, dtype=float)

    def _working_response(self, y):
        return np.log(y)

    def _after_newton(self, q, nk, log_y_sum, first):
        self.shape = gamma_shape_step(nk, log_y_sum + q, None if first else self.shape, self.shape_max)

    def raw_params(self, scaling, intercept):
        """Parameters on the raw data's scale: ``{"coef", "dispersion"}``.

        The dispersion ``1 / alpha_k`` does not depend on the scaling of X.
        """
        params = super().raw_params(scaling, intercept)
        params["dispersion"] = 1.0 / self.shape
        return params

    def set_raw_params(self, params, scaling, intercept):
        """Set the parameters from :meth:`raw_params`' output under ``scaling``."""
        super().set_raw_params(params, scaling, intercept)
        self.shape = 1.0 / np.asarray(params["dispersion"], dtype=float)

    def get_flat(self):
        """Coefficients then log-shapes as a flat vector."""
        return np.concatenate([self.coef.ravel(), np.log(self.shape)])

    def set_flat(self, theta):
        """Set the parameters from :meth:`get_flat`'s layout."""
        super().set_flat(theta)
        self.shape = np.exp(np.asarray(theta, dtype=float)[self.coef.size :])

    def _eta_score(self, y, eta, a):
        # with u = y / mu: d/d eta = alpha (u - 1);
        # d/d log alpha = alpha (log alpha + log u + 1 - u - digamma(alpha))
        with np.errstate(over="ignore"):
            u = y * np.exp(-eta)
        alpha = self.shape[:, None]
        score = a * alpha * (u - 1.0)
        terms = np.log(alpha) + np.log(u) + 1.0 - u - digamma(alpha)
        return score, self.shape * np.einsum("kn,kn->k", a, terms)

    def flat_bounds(self):
        """Bounds of :meth:`get_flat`: each log-shape within ``[log(1e-8), log(shape_max)]``.

        Returns
        -------
        lower, upper : ndarray of shape (n_flat,)
        """
        K = self.n_experts
        hi = np.log(self.shape_max) if self.shape_max is not None else np.inf
        lower = np.concatenate([np.full(self.coef.size, -np.inf), np.full(K, np.log(SHAPE_MIN))])
        upper = np.concatenate([np.full(self.coef.size, np.inf), np.full(K, hi)])
        return lower, upper
