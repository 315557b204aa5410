"""Input checks shared by the estimators."""

from numbers import Integral

import numpy as np


def resolve_features(spec, n_features, feature_names, param):
    """Column indices selected by ``spec``.

    Parameters
    ----------
    spec : None, int, str, array-like of int, array-like of str or array-like of bool
        ``None`` selects every column; integers are positions (negative ones
        count from the end); strings are column names of the DataFrame given to
        ``fit``; a boolean mask has one entry per column. An empty list selects
        no column (the part then has only its intercept).
    n_features : int
    feature_names : ndarray of str or None
        ``feature_names_in_`` of the estimator.
    param : str
        Parameter name, for error messages.

    Returns
    -------
    ndarray of int
    """
    if spec is None:
        return np.arange(n_features)
    if isinstance(spec, (Integral, str)):
        spec = [spec]
    values = np.asarray(spec)
    if values.ndim != 1:
        raise ValueError(f"{param} must be one-dimensional; got shape {values.shape}.")
    if values.size == 0:
        return np.zeros(0, dtype=np.intp)
    if values.dtype.kind == "b":
        if values.size != n_features:
            raise ValueError(
                f"{param} is a boolean mask of length {values.size}, but X has {n_features} features."
            )
        return np.flatnonzero(values)
    if values.dtype.kind in "iu":
        if values.min() < -n_features or values.max() >= n_features:
            raise ValueError(
                f"{param} has column indices out of range for X with {n_features} features."
            )
        idx = np.where(values < 0, values + n_features, values).astype(np.intp)
    elif values.dtype.kind in "UO" and all(isinstance(v, str) for v in values):
        if feature_names is None:
            raise ValueError(
                f"{param} names columns, which needs X to be a DataFrame with string column names."
            )
        lookup = {name: i for i, name in enumerate(feature_names)}
        missing = [str(v) for v in values if v not in lookup]
        if missing:
            raise ValueError(f"{param} names columns not in X: {missing}.")
        idx = np.array([lookup[v] for v in values], dtype=np.intp)
    else:
        raise TypeError(
            f"{param} must be None, or integer indices, column names or a boolean mask; got {spec!r}."
        )
    if np.unique(idx).size != idx.size:
        raise ValueError(f"{param} selects a column more than once.")
    return idx


def check_numeric_target(y, estimator_name):
    """Return y as float64, with a clear error for non-numeric targets."""
    y = np.asarray(y)
    if y.dtype.kind in "OUS":
        try:
            y = y.astype(np.float64)
        except (TypeError, ValueError):
            raise ValueError(
                f"{estimator_name} needs a numeric target y; got values of type {y.dtype} "
                "that cannot be converted to float (class labels need a classifier)."
            ) from None
    return y.astype(np.float64, copy=False)
