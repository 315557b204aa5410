"""Data sets: the motorcycle data, and samples from known mixtures of experts."""

from importlib import resources

import numpy as np
from sklearn.utils import Bunch, check_random_state


def load_mcycle(return_X_y=False):
    """Load the motorcycle crash-test data (Silverman 1985).

    133 measurements of head acceleration (``accel``, in g) against time after
    impact (``times``, in ms): heteroscedastic, with distinct regimes, the
    classic demonstration of mixtures of experts.

    Parameters
    ----------
    return_X_y : bool, default=False
        If True, return ``(X, y)`` instead of a Bunch.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        ``data`` (133, 1) times, ``target`` (133,) accelerations,
        ``feature_names``, ``target_name``, ``DESCR`` (source and citation).
    (X, y) : tuple
        If ``return_X_y`` is True.

    References
    ----------
    .. [1] Silverman, B. W. (1985). Some aspects of the spline smoothing
       approach to non-parametric curve fitting. JRSS-B 47(1), 1-52.

    Examples
    --------
    >>> from mixexp.datasets import load_mcycle
    >>> X, y = load_mcycle(return_X_y=True)
    >>> X.shape, y.shape
    ((133, 1), (133,))
    """
    base = resources.files("mixexp.datasets") / "data"
    with (base / "mcycle.csv").open() as f:
        table = np.loadtxt(f, delimiter=",", skiprows=1)
    descr = (base / "mcycle.rst").read_text()
    X, y = table[:, :1], table[:, 1]
    if return_X_y:
        return X, y
    return Bunch(
        data=X, target=y, feature_names=["times"], target_name="accel", DESCR=descr
    )


def _softmax_rows(logits):
    logits = logits - logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    return p / p.sum(axis=1, keepdims=True)


def make_moe_regression(
    n_samples=1000,
    n_features=2,
    n_experts=3,
    *,
    gate_coef=None,
    expert_coef=None,
    noise_variance=None,
    gate_scale=2.0,
    coef_scale=3.0,
    return_params=False,
    random_state=None,
):
    """Sample from a softmax-gated mixture of Gaussian linear experts.

    ``x ~ N(0, I)``; the expert label ``z`` is drawn with probabilities
    ``softmax(W [1, x])`` and ``y = [1, x] . beta_z + N(0, sigma_z^2)``.
    Unspecified parameters are drawn at random.

    Parameters
    ----------
    n_samples : int, default=1000
    n_features : int, default=2
    n_experts : int, default=3
    gate_coef : array-like of shape (n_experts, 1 + n_features), default=None
        Gate coefficients, intercept first; drawn from N(0, gate_scale^2) with
        row 0 set to zero when None.
    expert_coef : array-like of shape (n_experts, 1 + n_features), default=None
        Expert coefficients, intercept first; N(0, coef_scale^2) when None.
    noise_variance : array-like of shape (n_experts,), default=None
        Noise variances; uniform on [0.1, 0.5] when None.
    gate_scale, coef_scale : float
        Scales of the random parameters.
    return_params : bool, default=False
        Also return a dict with ``gate_coef``, ``expert_coef``,
        ``noise_variance`` and the latent ``labels``.
    random_state : int, RandomState instance or None, default=None

    Returns
    -------
    X : ndarray of shape (n_samples, n_features)
    y : ndarray of shape (n_samples,)
    params : dict
        Only when ``return_params`` is True.

    Examples
    --------
    >>> from mixexp.datasets import make_moe_regression
    >>> X, y, params = make_moe_regression(200, random_state=0, return_params=True)
    >>> X.shape, params["expert_coef"].shape
    ((200, 2), (3, 3))
    """
    rng = check_random_state(random_state)
    if n_samples < 1 or n_features < 0 or n_experts < 1:
        raise ValueError("n_samples and n_experts must be >= 1 and n_features >= 0.")
    p = n_features + 1
    if gate_coef is None:
        gate_coef = gate_scale * rng.standard_normal((n_experts, p))
        gate_coef[0] = 0.0
    if expert_coef is None:
        expert_coef = coef_scale * rng.standard_normal((n_experts, p))
    if noise_variance is None:
        noise_variance = rng.uniform(0.1, 0.5, size=n_experts)
    gate_coef = np.asarray(gate_coef, dtype=float)
    expert_coef = np.asarray(expert_coef, dtype=float)
    noise_variance = np.asarray(noise_variance, dtype=float)
    if gate_coef.shape != (n_experts, p) or expert_coef.shape != (n_experts, p):
        raise ValueError(f"gate_coef and expert_coef must have shape ({n_experts}, {p}).")
    if noise_variance.shape != (n_experts,) or np.any(noise_variance <= 0):
        raise ValueError(f"noise_variance must be {n_experts} positive numbers.")
    X = rng.standard_normal((n_samples, n_features))
    X1 = np.column_stack([np.ones(n_samples), X])
    gate = _softmax_rows(X1 @ gate_coef.T)
    u = rng.uniform(size=(n_samples, 1))
    labels = np.minimum((u > np.cumsum(gate, axis=1)).sum(axis=1), n_experts - 1)
    mean = np.einsum("ij,ij->i", X1, expert_coef[labels])
    y = mean + np.sqrt(noise_variance[labels]) * rng.standard_normal(n_samples)
    if return_params:
        params = {
            "gate_coef": gate_coef,
            "expert_coef": expert_coef,
            "noise_variance": noise_variance,
            "labels": labels,
        }
        return X, y, params
    return X, y
