"""Samples from Gaussian-gated and top-K sparse softmax mixtures of experts.

Generators in the style of :func:`~mixexp.datasets.make_moe_regression` for the
gates the estimators do not fit yet; the models themselves are
:class:`mixexp.theory.GaussianGatedMoE` and :class:`mixexp.theory.TopKSoftmaxMoE`.
"""

import numpy as np
from sklearn.utils import check_random_state


def _params(params, model, labels):
    return {**params, **model.get_params(), "labels": labels}


def make_gaussian_gated_regression(
    n_samples=1000,
    n_features=1,
    n_experts=3,
    *,
    weights=None,
    means=None,
    covariances=None,
    expert_coef=None,
    noise_variance=None,
    mean_scale=2.0,
    coef_scale=3.0,
    return_params=False,
    random_state=None,
):
    """Sample from a Gaussian-gated mixture of Gaussian linear experts.

    ``z ~ Cat(weights)``, ``x | z = k ~ N(means[k], covariances[k])`` and ``y =
    [1, x] . expert_coef[z] + N(0, noise_variance[z])``. Unspecified parameters
    are drawn at random.

    Parameters
    ----------
    n_samples : int, default=1000
    n_features : int, default=1
    n_experts : int, default=3
    weights : array-like of shape (n_experts,), default=None
        Mixing proportions; uniform when None.
    means : array-like of shape (n_experts, n_features), default=None
        Gate locations; N(0, mean_scale^2) when None.
    covariances : array-like of shape (n_experts, n_features, n_features), default=None
        Gate covariances; the identity when None.
    expert_coef : array-like of shape (n_experts, 1 + n_features), default=None
        Expert coefficients, intercept first; N(0, coef_scale^2) when None.
    noise_variance : array-like of shape (n_experts,), default=None
        Uniform on [0.1, 0.5] when None.
    mean_scale, coef_scale : float
        Scales of the random parameters.
    return_params : bool, default=False
        Also return a dict of the parameters and the latent ``labels``.
    random_state : int, RandomState instance or None, default=None

    Returns
    -------
    X : ndarray of shape (n_samples, n_features)
    y : ndarray of shape (n_samples,)
    params : dict
        Only when ``return_params`` is True.

    Examples
    --------
    >>> from mixexp.datasets import make_gaussian_gated_regression
    >>> X, y = make_gaussian_gated_regression(200, n_features=2, random_state=0)
    >>> X.shape, y.shape
    ((200, 2), (200,))
    """
    from ..theory.simulate import GaussianGatedMoE

    rng = check_random_state(random_state)
    if n_samples < 1 or n_features < 1 or n_experts < 1:
        raise ValueError("n_samples, n_features and n_experts must be >= 1.")
    weights = np.full(n_experts, 1.0 / n_experts) if weights is None else weights
    means = mean_scale * rng.standard_normal((n_experts, n_features)) if means is None else means
    covariances = np.tile(np.eye(n_features), (n_experts, 1, 1)) if covariances is None else covariances
    if expert_coef is None:
        expert_coef = coef_scale * rng.standard_normal((n_experts, 1 + n_features))
    noise_variance = rng.uniform(0.1, 0.5, size=n_experts) if noise_variance is None else noise_variance
    model = GaussianGatedMoE(weights, means, covariances, expert_coef, noise_variance)
    if model.n_experts != n_experts or model.n_features != n_features:
        raise ValueError(f"the parameters must describe {n_experts} experts on {n_features} features.")
    X, y, labels = model.sample(n_samples, rng, return_labels=True)
    return (X, y, _params({}, model, labels)) if return_params else (X, y)


def make_topk_moe_regression(
    n_samples=1000,
    n_features=2,
    n_experts=4,
    top_k=2,
    *,
    gate_coef=None,
    expert_coef=None,
    noise_variance=None,
    gate_scale=2.0,
    coef_scale=3.0,
    return_params=False,
    random_state=None,
):
    """Sample from a top-K sparse softmax-gated mixture of Gaussian linear experts.

    ``x ~ N(0, I)``; the label is drawn with the softmax of the ``top_k``
    largest logits ``[1, x] . gate_coef[k]`` (zero probability for the others)
    and ``y = [1, x] . expert_coef[z] + N(0, noise_variance[z])``. Unspecified
    parameters are drawn at random as in
    :func:`~mixexp.datasets.make_moe_regression`.

    Parameters
    ----------
    n_samples : int, default=1000
    n_features : int, default=2
    n_experts : int, default=4
    top_k : int, default=2
        Experts active at each x.
    gate_coef : array-like of shape (n_experts, 1 + n_features), default=None
        N(0, gate_scale^2) with row 0 set to zero when None.
    expert_coef : array-like of shape (n_experts, 1 + n_features), default=None
        N(0, coef_scale^2) when None.
    noise_variance : array-like of shape (n_experts,), default=None
        Uniform on [0.1, 0.5] when None.
    gate_scale, coef_scale : float
    return_params : bool, default=False
        Also return a dict of the parameters (with ``top_k``) and the latent
        ``labels``.
    random_state : int, RandomState instance or None, default=None

    Returns
    -------
    X : ndarray of shape (n_samples, n_features)
    y : ndarray of shape (n_samples,)
    params : dict
        Only when ``return_params`` is True.

    Examples
    --------
    >>> from mixexp.datasets import make_topk_moe_regression
    >>> X, y, params = make_topk_moe_regression(100, top_k=1, return_params=True, random_state=0)
    >>> params["gate_coef"].shape, params["top_k"]
    ((4, 3), 1)
    """
    from ..theory.simulate import TopKSoftmaxMoE

    rng = check_random_state(random_state)
    if n_samples < 1 or n_features < 0 or n_experts < 1:
        raise ValueError("n_samples and n_experts must be >= 1 and n_features >= 0.")
    p = n_features + 1
    if gate_coef is None:
        gate_coef = gate_scale * rng.standard_normal((n_experts, p))
        gate_coef[0] = 0.0
    if expert_coef is None:
        expert_coef = coef_scale * rng.standard_normal((n_experts, p))
    noise_variance = rng.uniform(0.1, 0.5, size=n_experts) if noise_variance is None else noise_variance
    model = TopKSoftmaxMoE(gate_coef, expert_coef, noise_variance, top_k, x_distribution="normal")
    if model.n_experts != n_experts or model.n_features != n_features:
        raise ValueError(f"gate_coef and expert_coef must have shape ({n_experts}, {p}).")
    X, y, labels = model.sample(n_samples, rng, return_labels=True)
    return (X, y, _params({"top_k": model.top_k}, model, labels)) if return_params else (X, y)
