"""Starting responsibilities for EM: the start strategies behind ``init=``.

Every strategy returns (K, n) responsibilities; the estimator then runs the
parts' own M-steps from them (``experts.initialize`` and ``gate.initialize``),
so a strategy works for every gate and expert family without per-family code.
"""

import warnings

import numpy as np
from sklearn.cluster import KMeans
from sklearn.exceptions import ConvergenceWarning

#: k-means runs on at most this many rows: a start only needs the centres,
#: and every row is then assigned to the nearest one.
KMEANS_MAX_ROWS = 20_000


def one_hot(labels, n_experts):
    """(K, n) hard responsibilities from labels in 0..K-1."""
    resp = np.zeros((n_experts, labels.shape[0]))
    resp[labels, np.arange(labels.shape[0])] = 1.0
    return resp


def kmeans_start(cluster_data, sample_weight, n_experts, random_state):
    """Hard responsibilities from k-means on ``cluster_data`` (n, d).

    k-means sees only where the rows lie, not the regression structure: it
    cannot find an expert whose rows overlap others' in (x, y).
    """
    n = cluster_data.shape[0]
    seed = random_state.randint(np.iinfo(np.int32).max)
    rows = np.arange(n)
    if n > KMEANS_MAX_ROWS:
        rows = np.sort(random_state.choice(n, KMEANS_MAX_ROWS, replace=False))
    with warnings.catch_warnings():
        # duplicate rows can give fewer distinct clusters than n_experts;
        # the empty experts then start from the 10*eps guard in the M-step.
        warnings.simplefilter("ignore", ConvergenceWarning)
        km = KMeans(n_clusters=n_experts, n_init=1, random_state=seed).fit(
            cluster_data[rows], sample_weight=sample_weight[rows]
        )
    labels = km.labels_ if rows.size == n else km.predict(cluster_data)
    return one_hot(labels, n_experts)


def random_start(n_samples, n_experts, random_state):
    """Uniformly random responsibilities, normalised per row."""
    resp = random_state.uniform(size=(n_experts, n_samples))
    return resp / resp.sum(axis=0, keepdims=True)


def random_subsets_start(make_experts, data, n_experts, random_state, subset_size=None):
    """The "random lines" start: each expert fitted exactly to a few random rows.

    Expert k is fitted, through the family's own weighted M-step, to
    ``subset_size`` (default: the number of expert coefficients, p, plus one)
    rows drawn at random among those of positive weight, disjoint between
    experts when there are enough rows; then every row goes to the expert
    whose log-density explains it best. Unlike k-means this looks at the
    regression structure, so it can land on a small expert.

    Parameters
    ----------
    make_experts : callable
        Returns a fresh expert part (the estimator's ``_make_experts``).
    data : mixexp.solvers.Design
    n_experts : int
    random_state : numpy.random.RandomState
    subset_size : int, optional

    Returns
    -------
    resp : ndarray of shape (n_experts, n_samples)
    """
    p = data.XeT.shape[0]
    m = max(1, p + 1 if subset_size is None else subset_size)
    candidates = np.flatnonzero(data.sample_weight > 0)
    replace = candidates.size < n_experts * m
    rows = random_state.choice(candidates, size=n_experts * m, replace=replace)
    # the experts are fitted on the chosen rows only (a design of K * m columns),
    # so a start reads all the data once, to assign the rows
    seeds = np.kron(np.eye(n_experts), np.ones(m))
    experts = make_experts()
    XeT = np.ascontiguousarray(data.XeT[:, rows])
    experts.initialize(XeT, data.y[rows], seeds, np.ascontiguousarray(data.sample_weight[rows]))
    log_prob = experts.log_prob(data.XeT, data.y)
    log_prob = np.where(np.isnan(log_prob), -np.inf, log_prob)
    return one_hot(np.argmax(log_prob, axis=0), n_experts)
