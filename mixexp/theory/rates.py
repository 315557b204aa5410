"""Empirical convergence rates: log-log slopes of a loss against the sample size."""

import warnings
from dataclasses import dataclass, field

import numpy as np
from sklearn.utils import check_random_state

from ._tables import as_columns, make_table

_STATISTICS = ("median", "mean")


@dataclass
class RateFit:
    """A fitted rate ``loss ~ C n^slope`` (see :func:`fit_rate`).

    Attributes
    ----------
    loss : str
        The column fitted.
    statistic : {"median", "mean"}
        How the replicates at each n were summarised before the fit.
    slope : float
        OLS slope of ``log(statistic)`` on ``log(n)``.
    intercept : float
        The OLS intercept (``log C``).
    ci_low, ci_high : float
        Percentile bootstrap confidence interval of the slope (replicates
        resampled with replacement within each n).
    level : float
        Confidence level of the interval.
    n_min, n_max : float
        The range of n fitted.
    n_points : int
        Number of distinct n values fitted.
    n_replicates : int
        Smallest number of replicates at one n.
    n_boot : int
    n : ndarray
        The n values fitted.
    values : ndarray
        The per-n statistic fitted.
    stability : table
        One row per lower end of the n range (the smallest n dropped one at a
        time while at least ``min_points`` values remain): ``n_min``,
        ``n_points``, ``slope``, ``ci_low``, ``ci_high``. A pandas DataFrame
        when pandas is installed, else a dict of arrays.
    """

    loss: str
    statistic: str
    slope: float
    intercept: float
    ci_low: float
    ci_high: float
    level: float
    n_min: float
    n_max: float
    n_points: int
    n_replicates: int
    n_boot: int
    n: np.ndarray = field(repr=False)
    values: np.ndarray = field(repr=False)
    stability: object = field(repr=False)

    def predict(self, n):
        """The fitted power law ``exp(intercept) * n**slope`` at ``n``."""
        return np.exp(self.intercept) * np.asarray(n, dtype=float) ** self.slope

    def contains(self, value):
        """Whether ``value`` lies in the bootstrap confidence interval."""
        return bool(self.ci_low <= value <= self.ci_high)

    def __str__(self):
        return (
            f"{self.loss}: slope {self.slope:+.3f} [{self.ci_low:+.3f}, {self.ci_high:+.3f}] "
            f"({100 * self.level:.0f}% bootstrap CI; {self.statistic} of >= {self.n_replicates} replicates "
            f"at {self.n_points} n in [{self.n_min:g}, {self.n_max:g}])"
        )


def _ols(x, Y):
    """Slopes and intercepts of the regressions of each row of Y (B, m) on x (m,)."""
    xc = x - x.mean()
    slope = (Y - Y.mean(axis=-1, keepdims=True)) @ xc / (xc @ xc)
    return slope, Y.mean(axis=-1) - slope * x.mean()


def _summary(values, statistic):
    return np.median(values, axis=-1) if statistic == "median" else np.mean(values, axis=-1)


def _fit(groups, ns, statistic, n_boot, level, rng):
    """Slope, intercept and bootstrap interval from per-n replicate groups."""
    logn = np.log(ns)
    stat = np.array([_summary(g, statistic) for g in groups])
    slope, intercept = _ols(logn, np.log(stat))
    boot = np.empty((n_boot, len(groups)))
    for j, g in enumerate(groups):
        idx = rng.randint(g.size, size=(n_boot, g.size))
        boot[:, j] = _summary(g[idx], statistic)
    boot_slopes, _ = _ols(logn, np.log(boot))
    alpha = (1 - level) / 2
    low, high = np.quantile(boot_slopes, [alpha, 1 - alpha])
    return float(slope), float(intercept), float(low), float(high), stat


def fit_rate(
    table,
    loss="loss",
    *,
    statistic="median",
    n_min=None,
    n_max=None,
    n_boot=2000,
    level=0.95,
    min_points=3,
    random_state=0,
):
    """Fit ``loss ~ C n^slope`` by least squares on the log-log per-n summaries.

    At each n the replicates are summarised by their median (default) or mean,
    and ``log(summary)`` is regressed on ``log(n)``. The confidence interval is
    a percentile bootstrap: the replicates are resampled with replacement
    within each n, the summaries and the slope recomputed ``n_boot`` times.
    The stability table refits as the lower end of the n range moves up.

    Parameters
    ----------
    table : DataFrame or dict of arrays
        With columns ``n`` and ``loss`` (e.g. the output of
        :func:`~mixexp.theory.rate_experiment`).
    loss : str, default="loss"
        The column to fit. Values that are not positive and finite (NaN: no
        such cell in that fit) are dropped, and an n left with none is
        dropped with a warning.
    statistic : {"median", "mean"}, default="median"
        The median is robust to the occasional EM run that ends at a poor
        local maximum; the mean is what the papers plot.
    n_min, n_max : float, default=None
        Fit only the rows with ``n_min <= n <= n_max``.
    n_boot : int, default=2000
    level : float, default=0.95
    min_points : int, default=3
        Smallest number of distinct n values fitted (also in the stability
        table).
    random_state : int, RandomState instance or None, default=0
        Seed of the bootstrap.

    Returns
    -------
    RateFit

    Examples
    --------
    >>> import numpy as np
    >>> from mixexp.theory import fit_rate
    >>> rng = np.random.default_rng(0)
    >>> n = np.repeat([100, 300, 1000, 3000, 10000], 20)
    >>> table = {"n": n, "loss": n ** -0.5 * np.exp(0.1 * rng.standard_normal(n.size))}
    >>> round(fit_rate(table).slope, 1)
    -0.5
    """
    if statistic not in _STATISTICS:
        raise ValueError(f"statistic must be one of {_STATISTICS}; got {statistic!r}.")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1); got {level}.")
    cols = as_columns(table)
    if "n" not in cols or loss not in cols:
        raise ValueError(f"table needs the columns 'n' and {loss!r}; it has {sorted(cols)}.")
    n_all = np.asarray(cols["n"], dtype=float)
    values = np.asarray(cols[loss], dtype=float)
    keep = np.ones(n_all.size, dtype=bool)
    if n_min is not None:
        keep &= n_all >= n_min
    if n_max is not None:
        keep &= n_all <= n_max
    ns, groups, dropped = [], [], []
    for n in np.unique(n_all[keep]):
        g = values[keep & (n_all == n)]
        g = g[np.isfinite(g) & (g > 0)]
        if g.size:
            ns.append(n)
            groups.append(g)
        else:
            dropped.append(n)
    if dropped:
        warnings.warn(
            f"{loss}: no positive finite value at n = {dropped}; those n are left out.", stacklevel=2
        )
    if len(ns) < min_points:
        raise ValueError(
            f"{loss}: {len(ns)} distinct n values with data; at least min_points={min_points} needed."
        )
    ns = np.array(ns)
    rng = check_random_state(random_state)
    slope, intercept, low, high, stat = _fit(groups, ns, statistic, n_boot, level, rng)
    rows = {"n_min": [], "n_points": [], "slope": [], "ci_low": [], "ci_high": []}
    for start in range(len(ns) - min_points + 1):
        s, _, lo, hi, _ = _fit(groups[start:], ns[start:], statistic, n_boot, level, rng)
        for key, value in zip(rows, (ns[start], len(ns) - start, s, lo, hi), strict=True):
            rows[key].append(value)
    return RateFit(
        loss=loss,
        statistic=statistic,
        slope=slope,
        intercept=intercept,
        ci_low=low,
        ci_high=high,
        level=level,
        n_min=float(ns[0]),
        n_max=float(ns[-1]),
        n_points=len(ns),
        n_replicates=int(min(g.size for g in groups)),
        n_boot=int(n_boot),
        n=ns,
        values=stat,
        stability=make_table({k: np.asarray(v) for k, v in rows.items()}),
    )
