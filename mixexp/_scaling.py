"""Internal standardisation of the designs and of the target.

Fitting runs on standardised columns (weighted mean 0 and standard deviation 1
over the training rows) and, for families that allow it, a standardised
target. This keeps the normal equations and the gate's Newton systems well
conditioned whatever the units or offsets of the data (an intercept absorbs
the centring), and makes ``gate_penalty`` and ``reg_covar`` unit-free. The
parts hold their parameters on the standardised scale; the estimators report
them on the original scale with the conversions below.
"""

from dataclasses import dataclass

import numpy as np


@dataclass
class Scaling:
    """Affine maps from the raw data to the standardised scale of a fit.

    Attributes
    ----------
    gate_mean, gate_scale : ndarray of shape (n_gate_features,)
    expert_mean, expert_scale : ndarray of shape (n_expert_features,)
        ``expert_mean`` is zero when the experts have no intercept.
    y_mean, y_scale : float
        Target centre and scale (0 and 1 for families that keep y as it is).
    """

    gate_mean: np.ndarray
    gate_scale: np.ndarray
    expert_mean: np.ndarray
    expert_scale: np.ndarray
    y_mean: float = 0.0
    y_scale: float = 1.0


def _weighted_moments(Z, w):
    """Weighted mean and standard deviation of each column of Z (n, d).

    A column that is constant over the rows of positive weight is centred
    exactly on its value and not scaled.
    """
    mean = w @ Z
    scale = np.sqrt(w @ (Z - mean) ** 2)
    positive = Z if np.all(w > 0) else Z[w > 0]
    constant = positive.min(axis=0) == positive.max(axis=0)
    mean = np.where(constant, positive[0], mean)
    scale = np.where(constant | ~(scale > 0), 1.0, scale)
    return mean, scale


def fit_scaling(X, y, sample_weight, gate_idx, expert_idx, fit_intercept, standardize_y):
    """Weighted standardisation of the gate and expert columns and of y.

    Parameters
    ----------
    X : ndarray of shape (n, d)
    y : ndarray of shape (n,)
    sample_weight : ndarray of shape (n,)
    gate_idx, expert_idx : ndarray of int
    fit_intercept : bool
        Without an intercept the expert columns and y are scaled, not centred.
    standardize_y : bool

    Returns
    -------
    Scaling
    """
    w = sample_weight / sample_weight.sum()
    used = np.union1d(gate_idx, expert_idx)
    mean, scale = np.zeros(X.shape[1]), np.ones(X.shape[1])
    mean[used], scale[used] = _weighted_moments(X[:, used], w)
    g_mean, g_scale = mean[gate_idx], scale[gate_idx]
    e_mean, e_scale = mean[expert_idx], scale[expert_idx]
    y_mean, y_scale = 0.0, 1.0
    if standardize_y:
        m, s = _weighted_moments(y[:, None], w)
        y_mean, y_scale = float(m[0]), float(s[0])
    if not fit_intercept:
        e_mean = np.zeros_like(e_mean)
        y_mean = 0.0
    return Scaling(g_mean, g_scale, e_mean, e_scale, y_mean, y_scale)


def design(X, idx, mean, scale, intercept):
    """Feature-major standardised design (p, n), with a constant first row if ``intercept``."""
    n = X.shape[0]
    off = int(intercept)
    XT = np.empty((off + idx.size, n))
    if off:
        XT[0] = 1.0
    if idx.size:
        XT[off:] = (X[:, idx].T - mean[:, None]) / scale[:, None]
    return XT


def linear_to_raw(coef, mean, scale, intercept):
    """Coefficients on standardised columns -> coefficients on the raw columns.

    Parameters
    ----------
    coef : ndarray of shape (K, intercept + p)
    mean, scale : ndarray of shape (p,)
    intercept : bool
        Whether column 0 of ``coef`` is an intercept.
    """
    coef = np.array(coef, dtype=float)
    if not intercept:
        return coef / scale
    slopes = coef[:, 1:] / scale
    return np.column_stack([coef[:, 0] - slopes @ mean, slopes])


def linear_from_raw(coef, mean, scale, intercept):
    """Inverse of :func:`linear_to_raw`."""
    coef = np.array(coef, dtype=float)
    if not intercept:
        return coef * scale
    return np.column_stack([coef[:, 0] + coef[:, 1:] @ mean, coef[:, 1:] * scale])
