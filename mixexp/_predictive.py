"""The predictive distribution of a mixture of experts, p(y | x) = sum_k g_k(x) f_k(y | x).

Pure functions on the parts' internal scale: gate probabilities ``prob`` (K, n)
and an expert family with the prediction methods of
:class:`mixexp.experts.ExpertFamily` (``mean``, ``variance``, ``cdf``, ``ppf``,
``log_prob``, ``in_support``, ``sample``). The estimators validate the input,
evaluate the parts and map y between the user's scale and the internal one.
"""

from numbers import Integral, Real

import numpy as np
from scipy.special import logsumexp

_EPS = np.finfo(np.float64).eps
#: relative step (or bracket width) below which the quantile iteration stops
_QUANTILE_RTOL = 1e-12
#: iterations of the safeguarded Newton / bisection quantile search; each iteration at
#: least halves the bracket, so 200 reach any tolerance from any finite bracket
_QUANTILE_MAX_ITER = 200


# -- validation ------------------------------------------------------------------------
def check_probabilities(q, name="q"):
    """``q`` as a float array of probabilities (0-D or 1-D, non-empty), else ValueError."""
    try:
        arr = np.asarray(q, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be a number or a 1-D array of numbers in [0, 1]; got {q!r}.") from exc
    if arr.ndim > 1:
        raise ValueError(f"{name} must be a number or a 1-D array; got an array of shape {arr.shape}.")
    if arr.size == 0:
        raise ValueError(f"{name} must not be empty.")
    bad = ~((arr >= 0.0) & (arr <= 1.0))  # also catches NaN
    if bad.any():
        raise ValueError(f"{name} must lie in [0, 1]; got {arr[bad].ravel()[0]!r}.")
    return arr


def check_alpha(alpha):
    """``alpha`` as a float in the open interval (0, 1), else TypeError/ValueError."""
    if isinstance(alpha, bool) or not isinstance(alpha, Real):
        raise TypeError(f"alpha must be a real number in (0, 1); got {alpha!r}.")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must lie in the open interval (0, 1); got {alpha!r}.")
    return float(alpha)


def check_n_samples(n_samples):
    """``n_samples`` as a positive int, else TypeError/ValueError."""
    if isinstance(n_samples, bool) or not isinstance(n_samples, Integral):
        raise TypeError(f"n_samples must be a positive integer; got {n_samples!r}.")
    if n_samples < 1:
        raise ValueError(f"n_samples must be a positive integer; got {n_samples!r}.")
    return int(n_samples)


def check_target_points(y, n_rows):
    """y as a float (n_rows, m) array and whether it was 1-D (one point per row).

    Accepted shapes: ``(n_rows,)`` (the point of each row), ``(n_rows, m)``
    (m points for each row) or ``(1, m)`` (the same m points for every row).
    """
    try:
        arr = np.asarray(y, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"y must be an array of numbers; got {type(y).__name__}.") from exc
    if np.isnan(arr).any():
        raise ValueError("y contains NaN.")
    if arr.ndim == 1:
        if arr.shape[0] != n_rows:
            raise ValueError(
                f"y of shape {arr.shape} must have one value per row of X ({n_rows}); for the same "
                f"grid of values at every row pass a 2-D y of shape (1, n_points), e.g. y[None, :]."
            )
        return arr[:, None], True
    if arr.ndim == 2 and arr.shape[0] in (1, n_rows) and arr.shape[1] > 0:
        return np.broadcast_to(arr, (n_rows, arr.shape[1])), False
    raise ValueError(
        f"y must have shape (n_samples,), (n_samples, n_points) or (1, n_points) with "
        f"n_samples = {n_rows}; got {arr.shape}."
    )


def require(family, method, caller):
    """``family.method``, or NotImplementedError saying ``caller`` needs it."""
    bound = getattr(family, method, None)
    if bound is None:
        raise NotImplementedError(
            f"{caller} needs the expert family to implement {method}(); "
            f"{type(family).__name__} does not (see mixexp.experts.ExpertFamily)."
        )
    return bound


# -- moments ---------------------------------------------------------------------------
def mixture_variance(prob, mean, var):
    """Law of total variance: sum_k g_k v_k + sum_k g_k (m_k - m)^2, with m = sum_k g_k m_k.

    Parameters
    ----------
    prob, mean, var : ndarray of shape (K, n)

    Returns
    -------
    ndarray of shape (n,)
        ``inf`` where an expert of positive weight has infinite variance.
    """
    m = np.einsum("kn,kn->n", prob, mean)
    with np.errstate(invalid="ignore"):
        within = np.where(prob > 0, prob * var, 0.0).sum(axis=0)
    return within + np.einsum("kn,kn->n", prob, (mean - m) ** 2)


# -- distribution function and density -------------------------------------------------
def mixture_cdf(family, XT, prob, y):
    """(n,) mixture distribution function sum_k g_k(x_i) F_k(y_i | x_i)."""
    return np.einsum("kn,kn->n", prob, family.cdf(XT, y))


def mixture_log_density(family, XT, log_prob_gate, y):
    """(n,) log sum_k g_k(x_i) f_k(y_i | x_i); ``-inf`` where y_i is outside the support."""
    out = np.full(y.shape[0], -np.inf)
    ok = np.asarray(family.in_support(y), dtype=bool)
    if ok.any():
        XT_ok = XT if ok.all() else XT[:, ok]
        log_f = family.log_prob(XT_ok, np.ascontiguousarray(y[ok]))
        out[ok] = logsumexp(log_prob_gate[:, ok] + log_f, axis=0)
    return out


# -- quantiles -------------------------------------------------------------------------
def mixture_quantiles(family, XT, prob, q):
    """Quantiles of the mixture, one probability per row.

    Parameters
    ----------
    family : ExpertFamily
    XT : ndarray of shape (p, n)
    prob : ndarray of shape (K, n)
        Gate probabilities.
    q : ndarray of shape (n,)
        Probabilities in [0, 1].

    Returns
    -------
    ndarray of shape (n,)
        The smallest y with ``sum_k g_k F_k(y) >= q_i`` (for a continuous family
        the root of ``F(y) = q_i``). q = 0 and q = 1 give the ends of the support.

    Notes
    -----
    The quantile lies between the smallest and the largest expert quantile at
    the same probability (each ``F_k`` is at most q at the first and at least q
    at the second), which brackets every row. Discrete families then bisect on
    the integers. Continuous families take safeguarded Newton steps on
    ``F(y) - q`` with the mixture density as slope, falling back to bisection
    whenever a step leaves the bracket, on all unfinished rows at once; a row
    stops when the step or the bracket is below ``1e-12 |y|`` or ``F(y) - q`` is
    at the rounding level of ``F``.
    """
    n = q.shape[0]
    out = np.empty(n)
    ends = (q <= 0.0) | (q >= 1.0)
    if ends.any():
        Q = family.ppf(XT[:, ends], q[ends])
        out[ends] = np.where(q[ends] <= 0.0, Q.min(axis=0), Q.max(axis=0))
    inner = np.flatnonzero(~ends)
    if inner.size == 0:
        return out
    XT_in, prob_in, q_in = XT[:, inner], prob[:, inner], q[inner]
    Q = family.ppf(XT_in, q_in)
    lo, hi = Q.min(axis=0), Q.max(axis=0)
    if getattr(family, "discrete", False):
        out[inner] = _integer_quantiles(family, XT_in, prob_in, q_in, lo, hi)
    else:
        start = np.clip(np.einsum("kn,kn->n", prob_in, Q), lo, hi)
        out[inner] = _continuous_quantiles(family, XT_in, prob_in, q_in, lo, hi, start)
    return out


def _integer_quantiles(family, XT, prob, q, lo, hi):
    """Smallest integer y in [lo, hi] with F(y) >= q (F(hi) >= q > F(lo - 1)), by bisection."""
    lo, hi = lo.copy(), hi.copy()
    active = np.flatnonzero(lo < hi)
    while active.size:
        mid = np.floor(0.5 * (lo[active] + hi[active]))
        reached = mixture_cdf(family, XT[:, active], prob[:, active], mid) >= q[active]
        hi[active] = np.where(reached, mid, hi[active])
        lo[active] = np.where(reached, lo[active], mid + 1.0)
        active = active[lo[active] < hi[active]]
    return lo


def _continuous_quantiles(family, XT, prob, q, lo, hi, y):
    """Root of F(y) = q in [lo, hi] by safeguarded Newton steps (see :func:`mixture_quantiles`).

    The Newton steps are on ``log F - log q`` (``log(1 - q) - log(1 - F)`` for
    q > 1/2), in log y on a positive bracket, with the function's value and
    slope kept at both ends of the bracket.
    The next point is the Newton step from the end with the smaller residual
    if it falls inside the bracket, else the Newton step from the other end,
    else the midpoint. (Newton steps from the current point alone would stall:
    where F is convex, a step from the left overshoots an end already next to
    the root and only bisection would remain, halving the error per step.)
    """
    lo, hi, y = lo.copy(), hi.copy(), y.copy()
    r_lo, r_hi = np.full_like(lo, np.nan), np.full_like(hi, np.nan)
    d_lo, d_hi = np.full_like(lo, np.nan), np.full_like(hi, np.nan)
    with np.errstate(divide="ignore"):
        log_prob_gate = np.log(prob)
    active = np.flatnonzero(hi - lo > _QUANTILE_RTOL * np.maximum(np.abs(lo), np.abs(hi)))
    for _ in range(_QUANTILE_MAX_ITER):
        if active.size == 0:
            break
        Xa, ya, qa = XT[:, active], y[active], q[active]
        F = mixture_cdf(family, Xa, prob[:, active], ya)
        resid = F - qa
        dens = np.exp(mixture_log_density(family, Xa, log_prob_gate[:, active], ya))
        # Newton on g = log F - log q (q <= 1/2) or log(1 - q) - log(1 - F): in the tails
        # F changes exponentially and Newton on F itself creeps there by ~1/|z| per step
        lower = qa <= 0.5
        with np.errstate(divide="ignore", invalid="ignore"):
            g = np.where(lower, np.log(F) - np.log(qa), np.log1p(-qa) - np.log1p(-F))
            slope = dens / np.where(lower, F, 1.0 - F)
        below = resid < 0
        lo[active] = np.where(below, ya, lo[active])
        r_lo[active] = np.where(below, g, r_lo[active])
        d_lo[active] = np.where(below, slope, d_lo[active])
        hi[active] = np.where(below, hi[active], ya)
        r_hi[active] = np.where(below, r_hi[active], g)
        d_hi[active] = np.where(below, d_hi[active], slope)
        la, ha = lo[active], hi[active]
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            step_lo = r_lo[active] / d_lo[active]
            step_hi = r_hi[active] / d_hi[active]
            # on a positive bracket, Newton steps in log y: near 0, where F ~ c y^a, they do
            # not overshoot below 0 as steps in y do
            positive = la > 0
            from_lo = np.where(positive, la * np.exp(-step_lo / la), la - step_lo)
            from_hi = np.where(positive, ha * np.exp(-step_hi / ha), ha - step_hi)
        size_lo = np.where(np.isnan(r_lo[active]), np.inf, -r_lo[active])
        size_hi = np.where(np.isnan(r_hi[active]), np.inf, r_hi[active])
        lo_better = size_lo <= size_hi
        best = np.where(lo_better, la, ha)
        first = np.where(lo_better, from_lo, from_hi)
        second = np.where(lo_better, from_hi, from_lo)
        new = np.where(
            _inside(first, la, ha), first, np.where(_inside(second, la, ha), second, 0.5 * (la + ha))
        )
        # converged: the Newton step from the best end is below the tolerance (it may
        # then not even leave that end), F(y) equals q to rounding, or the bracket is tiny
        small = np.isfinite(first) & (np.abs(first - best) <= _QUANTILE_RTOL * np.abs(best))
        new = np.where(small, np.clip(first, la, ha), new)
        settled = np.abs(resid) <= 4.0 * _EPS * qa
        new = np.where(settled, ya, new)
        done = small | settled | (ha - la <= _QUANTILE_RTOL * np.abs(new))
        y[active] = new
        active = active[~done]
    return y


def _inside(value, lo, hi):
    """True where ``value`` is finite and strictly inside (lo, hi)."""
    return np.isfinite(value) & (value > lo) & (value < hi)


# -- sampling --------------------------------------------------------------------------
def draw_categories(prob, n_samples, rng):
    """(n, n_samples) indices drawn from the rows' categorical distributions.

    Parameters
    ----------
    prob : ndarray of shape (n, C)
        Rows sum to one.
    n_samples : int
    rng : numpy.random.RandomState
    """
    cum = np.cumsum(prob, axis=1)
    u = rng.uniform(size=(prob.shape[0], n_samples))
    out = np.zeros(u.shape, dtype=np.intp)
    for c in range(prob.shape[1] - 1):
        out += u >= cum[:, c : c + 1]
    return out
