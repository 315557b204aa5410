"""Choosing the number of experts: information criteria, cross-validation and the bootstrap LRT.

* :func:`select_n_experts` fits a mixture of experts for each K of a range and
  tabulates BIC, AIC, ICL (lower is better) and, with ``criterion="cv"``, the
  held-out mean log-likelihood (higher is better); flexmix's ``stepFlexmix``
  followed by ``BIC``/``ICL``.
* :func:`bootstrap_lrt` tests K = k0 against K = k1 by the parametric bootstrap
  of the likelihood-ratio statistic (McLachlan 1987; flexmix's ``LR_test``, mixtools' ``boot.comp``).

Both clone the estimator for every fit and run the fits in parallel with
joblib; the results do not depend on ``n_jobs``.
"""

import warnings
from numbers import Integral

import numpy as np
from sklearn.base import clone, is_classifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import check_cv
from sklearn.utils import _safe_indexing, check_random_state
from sklearn.utils.validation import _check_sample_weight, _num_samples

from ._base import BaseMixtureOfExperts
from ._threads import parallel_map

__all__ = ["LRTResult", "SelectionResult", "bootstrap_lrt", "select_n_experts"]

#: criterion -> whether a higher value is better
CRITERIA = {"bic": False, "aic": False, "icl": False, "cv": True}


# -- helpers --------------------------------------------------------------------
def _check_estimator(estimator, name):
    if not isinstance(estimator, BaseMixtureOfExperts):
        raise TypeError(
            f"{name} needs a MixtureOfExpertsRegressor or MixtureOfExpertsClassifier (not a "
            f"Pipeline or another estimator: it changes n_experts and reads the fitted "
            f"posterior); got {type(estimator).__name__}."
        )


def _check_n_experts(values, name):
    try:
        values = list(values)
    except TypeError:
        values = [values]
    if not values:
        raise ValueError(f"{name} must hold at least one number of experts.")
    for k in values:
        if not isinstance(k, Integral) or isinstance(k, bool) or k < 1:
            raise ValueError(f"{name} must hold integers >= 1; got {k!r}.")
    if len(set(values)) != len(values):
        raise ValueError(f"{name} must not repeat a number of experts; got {values}.")
    return sorted(int(k) for k in values)


def _map(function, tasks, n_jobs):
    """``[function(*task) for task in tasks]``, in ``n_jobs`` joblib processes when > 1.

    Returns the results and, per task, the warnings it raised as ``(category,
    message)`` pairs (ConvergenceWarning aside: the callers read
    ``converged_``), so that the caller can report them once (see
    :func:`_reemit`) whether the tasks ran here or in worker processes.
    """
    out = parallel_map(_capture, [(function, task) for task in tasks], n_jobs)
    return [result for result, _ in out], [caught for _, caught in out]


def _capture(function, task):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.filterwarnings("ignore", category=ConvergenceWarning)
        result = function(*task)
    return result, [(w.category, str(w.message)) for w in caught]


def _reemit(caught, labels, what):
    """One warning per category raised by the tasks, naming the tasks (``labels``) that raised it."""
    by_category = {}
    for label, items in zip(labels, caught, strict=True):
        for category, message in items:
            where, _ = by_category.setdefault(category, ([], message))
            if label not in where:
                where.append(label)
    for category, (where, message) in by_category.items():
        named = ", ".join(where) if len(where) <= 6 else f"{len(where)} of the {len(labels)} {what}"
        warnings.warn(f"{category.__name__} from the fits for {named}; the first: {message}", category, 3)


def _fit_quietly(estimator, X, y, sample_weight=None):
    """Fit and return the estimator (run inside :func:`_capture`, which collects the warnings)."""
    if sample_weight is None:
        return estimator.fit(X, y)
    return estimator.fit(X, y, sample_weight=sample_weight)


def _warn_not_converged(what):
    if what:
        warnings.warn(
            f"EM did not converge for {', '.join(what)} (see the 'converged' column or "
            "attributes); increase max_iter or tol.",
            ConvergenceWarning,
            stacklevel=3,
        )


def _criteria(estimator, X, y, sample_weight):
    """Weighted log-likelihood, BIC, AIC and ICL of a fitted estimator on (X, y).

    With unit weights these are ``estimator.bic``/``aic``/``icl``; with
    weights, sums are weighted and ``n`` is the sum of the weights (flexmix's
    ``nobs``).
    """
    resp, ll_rows = estimator._posterior(X, y)
    w = np.ones(ll_rows.shape[0]) if sample_weight is None else sample_weight
    n = w.sum()
    ll = float(w @ ll_rows)
    p = estimator.n_parameters()
    bic = -2.0 * ll + p * np.log(n)
    return {
        "log_likelihood": ll,
        "n_parameters": p,
        "bic": bic,
        "aic": -2.0 * ll + 2.0 * p,
        "icl": bic - 2.0 * float(w @ np.log(resp.max(axis=1))),
    }


# -- select_n_experts ----------------------------------------------------------
class SelectionResult:
    """The result of :func:`select_n_experts`.

    Attributes
    ----------
    criterion : str
        The criterion that chose ``best_n_experts_``.
    greater_is_better : bool
        False for ``"bic"``, ``"aic"`` and ``"icl"`` (lower is better), True for
        ``"cv"`` (a held-out log-likelihood).
    table : dict of str to ndarray
        One row per number of experts, in increasing order: ``n_experts``,
        ``log_likelihood`` (of the fit on all the data), ``n_parameters``,
        ``bic``, ``aic``, ``icl``, ``converged``, ``n_iter`` and, with
        ``criterion="cv"``, ``cv_log_likelihood`` (held-out mean
        log-likelihood per sample) and ``cv_converged`` (whether every fold's
        fit converged).
    best_n_experts_ : int
        The number of experts with the best criterion value; the smallest one
        when several tie.
    best_estimator_ : estimator
        A clone of the estimator with ``n_experts=best_n_experts_``, fitted on
        all the data.
    estimators_ : dict of int to estimator
        The fitted clone for every number of experts.

    See Also
    --------
    select_n_experts
    """

    def __init__(self, criterion, table, estimators):
        self.criterion = criterion
        self.greater_is_better = CRITERIA[criterion]
        self.table = table
        self.estimators_ = estimators
        values = self.criterion_values
        best = int(np.argmax(values) if self.greater_is_better else np.argmin(values))
        self.best_n_experts_ = int(table["n_experts"][best])
        self.best_estimator_ = estimators[self.best_n_experts_]

    @property
    def criterion_values(self):
        """ndarray: the column of the chosen criterion, one value per row of ``table``."""
        return self.table["cv_log_likelihood" if self.criterion == "cv" else self.criterion]

    def to_frame(self):
        """The table as a pandas DataFrame indexed by ``n_experts``.

        Returns
        -------
        pandas.DataFrame

        Raises
        ------
        ImportError
            When pandas is not installed.
        """
        try:
            import pandas as pd
        except ImportError as exc:  # pragma: no cover - pandas is in the test extra
            raise ImportError("to_frame needs pandas; read the `table` dict of arrays instead.") from exc
        return pd.DataFrame(self.table).set_index("n_experts")

    def __repr__(self):
        names = list(self.table)
        rows = [[_format_cell(self.table[c][i]) for c in names] for i in range(len(self.table["n_experts"]))]
        widths = [max(len(c), *(len(r[j]) for r in rows)) for j, c in enumerate(names)]
        lines = ["  ".join(c.rjust(w) for c, w in zip(names, widths, strict=True))]
        lines += ["  ".join(v.rjust(w) for v, w in zip(r, widths, strict=True)) for r in rows]
        direction = "higher" if self.greater_is_better else "lower"
        head = (
            f"SelectionResult(criterion={self.criterion!r} ({direction} is better), "
            f"best_n_experts_={self.best_n_experts_})"
        )
        return "\n".join([head, *lines])


def _format_cell(value):
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (Integral, np.integer)):
        return str(int(value))
    return f"{float(value):.6g}"


def _fit_and_score(estimator, X, y, sample_weight, train, test):
    """One task of :func:`select_n_experts`: a fit on all rows, or on a fold's ``train`` rows."""
    if train is None:
        _fit_quietly(estimator, X, y, sample_weight)
        return estimator, _criteria(estimator, X, y, sample_weight)
    sw = None if sample_weight is None else sample_weight[train]
    _fit_quietly(estimator, _safe_indexing(X, train), _safe_indexing(y, train), sw)
    held_out = estimator.score_samples(_safe_indexing(X, test), _safe_indexing(y, test))
    w = np.ones(len(test)) if sample_weight is None else sample_weight[test]
    return estimator.converged_, float(w @ held_out), float(w.sum())


def select_n_experts(
    estimator, X, y, n_experts=range(1, 7), criterion="bic", cv=5, sample_weight=None, n_jobs=None
):
    """Fit a mixture of experts for each number of experts and choose the best.

    Every fit is a clone of ``estimator`` (with its ``random_state``, so the
    result does not depend on ``n_jobs``) with ``n_experts`` set; the estimator
    itself is not fitted. flexmix's ``stepFlexmix(..., k = 1:6)`` followed by
    ``BIC()`` or ``ICL()``.

    Parameters
    ----------
    estimator : MixtureOfExpertsRegressor or MixtureOfExpertsClassifier
        The configured estimator (gate, expert family, features, starts...).
        Pipelines are not accepted: the function sets ``n_experts`` and reads
        the fitted posterior of the estimator itself.
    X : array-like of shape (n_samples, n_features)
    y : array-like of shape (n_samples,)
    n_experts : iterable of int, default=range(1, 7)
        The numbers of experts K to compare. K = 1 works with every gate.
    criterion : {"bic", "aic", "icl", "cv"}, default="bic"
        What chooses K:

        - ``"bic"``: ``-2 log L + p log n``, lower is better;
        - ``"aic"``: ``-2 log L + 2 p``, lower is better;
        - ``"icl"``: the BIC plus twice the classification entropy at the
          maximum a posteriori labels (:meth:`mixexp.MixtureOfExpertsRegressor.icl`),
          lower is better;
        - ``"cv"``: the held-out mean log-likelihood ``log p(y | x)`` per
          sample over the folds of ``cv``, **higher** is better.

        ``log L`` is the conditional log-likelihood ``sum_i w_i log p(y_i |
        x_i)`` of the fit on all the data, ``p`` its number of free parameters
        (``n_parameters()``: under an L1 penalty only the coefficients it did
        not set to zero, see :meth:`mixexp.MixtureOfExpertsRegressor.n_parameters`)
        and ``n`` the sum of the sample weights. BIC, AIC and ICL are always
        tabulated; only ``"cv"`` costs extra fits.
    cv : int, cross-validation generator or iterable, default=5
        Folds for ``criterion="cv"`` (ignored otherwise), as in scikit-learn's
        ``check_cv``: an int gives ``KFold`` (``StratifiedKFold`` for a
        classifier) without shuffling, so pass ``KFold(n_splits,
        shuffle=True, random_state=...)`` for data in a meaningful order. The
        same folds are used for every K.
    sample_weight : array-like of shape (n_samples,), default=None
        Passed to every fit and used to weight the log-likelihoods.
    n_jobs : int or None, default=None
        Number of joblib processes running the fits (one per K, and per K and
        fold with ``"cv"``). None runs them in this process. The result does
        not depend on it (given a fixed ``random_state`` of the estimator).

    Returns
    -------
    result : SelectionResult
        ``table`` (one row per K; ``to_frame()`` gives a DataFrame),
        ``best_n_experts_`` and ``best_estimator_`` (fitted on all the data).

    Raises
    ------
    TypeError
        If ``estimator`` is not a mixexp mixture-of-experts estimator.
    ValueError
        For an unknown criterion or invalid ``n_experts``.

    Warns
    -----
    ConvergenceWarning
        Once, naming the K (and folds) whose EM did not converge.
    Warning
        Any other warning of the fits (e.g. an expert that vanishes when K is
        too large) is reported once per category, naming the fits that raised
        it, whether they ran in this process or in workers.

    See Also
    --------
    bootstrap_lrt : a test of K = k0 against K = k1.

    Notes
    -----
    BIC is consistent for the number of experts of a well-specified model and
    is the usual default; AIC tends to choose too many experts; ICL penalises
    experts that overlap, so it prefers well-separated experts (clusters)
    over the best density. Cross-validation needs no parameter count and
    compares models on predictive log-likelihood.

    Examples
    --------
    >>> from mixexp import MixtureOfExpertsRegressor, select_n_experts
    >>> from mixexp.datasets import make_moe_regression
    >>> X, y = make_moe_regression(500, n_features=1, n_experts=2, random_state=0)
    >>> est = MixtureOfExpertsRegressor(n_init=3, init="kmeans", random_state=0)
    >>> result = select_n_experts(est, X, y, n_experts=[1, 2, 3])
    >>> result.best_n_experts_
    2
    """
    _check_estimator(estimator, "select_n_experts")
    if not isinstance(criterion, str) or criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {sorted(CRITERIA)}; got {criterion!r}.")
    Ks = _check_n_experts(n_experts, "n_experts")
    n_samples = _num_samples(X)
    if sample_weight is not None:
        sample_weight = _check_sample_weight(sample_weight, np.empty((n_samples, 0)), dtype=np.float64)
    splits = []
    if criterion == "cv":
        splitter = check_cv(cv, y, classifier=is_classifier(estimator))
        splits = [(np.asarray(tr), np.asarray(te)) for tr, te in splitter.split(X, y)]
    tasks = [(clone(estimator).set_params(n_experts=K), X, y, sample_weight, None, None) for K in Ks]
    tasks += [
        (clone(estimator).set_params(n_experts=K), X, y, sample_weight, tr, te)
        for K in Ks
        for tr, te in splits
    ]
    out, caught = _map(_fit_and_score, tasks, n_jobs)
    labels = [f"n_experts={K}" for K in Ks] + [
        f"n_experts={K} (fold {f})" for K in Ks for f in range(len(splits))
    ]
    _reemit(caught, labels, "fits")

    full, folds = out[: len(Ks)], out[len(Ks) :]
    columns = {"n_experts": np.array(Ks)}
    for key in ("log_likelihood", "n_parameters", "bic", "aic", "icl"):
        columns[key] = np.array([scores[key] for _, scores in full])
    columns["converged"] = np.array([est.converged_ for est, _ in full], dtype=bool)
    columns["n_iter"] = np.array([est.n_iter_ for est, _ in full])
    not_converged = [f"n_experts={K}" for K, ok in zip(Ks, columns["converged"], strict=True) if not ok]
    if criterion == "cv":
        n_folds = len(splits)
        per_k = [folds[i * n_folds : (i + 1) * n_folds] for i in range(len(Ks))]
        # the held-out log-likelihood of every sample, pooled over the folds
        columns["cv_log_likelihood"] = np.array(
            [sum(s for _, s, _ in f) / sum(w for _, _, w in f) for f in per_k]
        )
        columns["cv_converged"] = np.array([all(c for c, _, _ in f) for f in per_k], dtype=bool)
        not_converged += [
            f"n_experts={K} (a fold)" for K, ok in zip(Ks, columns["cv_converged"], strict=True) if not ok
        ]
    _warn_not_converged(not_converged)
    return SelectionResult(criterion, columns, {K: est for K, (est, _) in zip(Ks, full, strict=True)})


# -- bootstrap_lrt ---------------------------------------------------------------
def _lr_statistic(log_likelihoods):
    """``2 max(log L1 - log L0, 0)`` of (..., 2) log-likelihood pairs (see bootstrap_lrt's Notes)."""
    log_likelihoods = np.asarray(log_likelihoods, dtype=float)
    return 2.0 * np.maximum(log_likelihoods[..., 1] - log_likelihoods[..., 0], 0.0)


class LRTResult:
    """The result of :func:`bootstrap_lrt`.

    Attributes
    ----------
    k0, k1 : int
        Numbers of experts under the null and the alternative.
    statistic : float
        ``T = 2 max(log L1 - log L0, 0)`` on the data.
    p_value : float
        ``(1 + #{T_b >= T}) / (1 + n_bootstrap)``; its resolution is
        ``1 / (1 + n_bootstrap)``.
    bootstrap_statistics : ndarray of shape (n_bootstrap,)
        The statistic ``T_b`` on each data set drawn from the fitted null model.
    log_likelihood_null, log_likelihood_alt : float
        ``log L0`` and ``log L1``: conditional log-likelihoods of the K = k0 and
        K = k1 fits on the data.
    bootstrap_log_likelihoods : ndarray of shape (n_bootstrap, 2)
        ``(log L0, log L1)`` on each bootstrap data set.
    estimator_null_, estimator_alt_ : estimator
        The K = k0 and K = k1 fits on the data.
    n_not_converged : int
        Number of kept fits (data and bootstrap, null and alternative) whose EM
        did not converge.
    n_alt_below_null : int
        Number of data sets (the data and the bootstrap ones) on which the
        best K = k1 fit had a lower log-likelihood than the K = k0 fit, so that
        T was set to 0 (see Notes of :func:`bootstrap_lrt`).

    See Also
    --------
    bootstrap_lrt
    """

    def __init__(self, k0, k1, log_likelihoods, bootstrap_log_likelihoods, estimators, n_not_converged):
        self.k0, self.k1 = k0, k1
        self.log_likelihood_null, self.log_likelihood_alt = (float(v) for v in log_likelihoods)
        self.statistic = float(_lr_statistic(log_likelihoods))
        self.bootstrap_log_likelihoods = np.asarray(bootstrap_log_likelihoods, dtype=float)
        self.bootstrap_statistics = _lr_statistic(self.bootstrap_log_likelihoods)
        B = self.bootstrap_statistics.shape[0]
        self.p_value = float((1 + np.sum(self.bootstrap_statistics >= self.statistic)) / (1 + B))
        self.estimator_null_, self.estimator_alt_ = estimators
        self.n_not_converged = int(n_not_converged)
        pairs = np.vstack([log_likelihoods, self.bootstrap_log_likelihoods])
        self.n_alt_below_null = int(np.sum(pairs[:, 1] < pairs[:, 0]))

    @property
    def n_bootstrap(self):
        """int: the number of bootstrap data sets."""
        return self.bootstrap_statistics.shape[0]

    def __repr__(self):
        return (
            f"LRTResult(k0={self.k0}, k1={self.k1}, statistic={self.statistic:.4g}, "
            f"p_value={self.p_value:.4g}, n_bootstrap={self.n_bootstrap})"
        )


def _split_starts(null_fit, X, y, k1, rng):
    """Starting responsibilities (n, k1) that split one expert of the K = k0 fit.

    For each expert j of the null fit, its posterior column is shared among
    itself and the ``k1 - k0`` new experts with random Dirichlet weights per
    row; the other columns are kept. Every new expert is then fitted to a
    random share of expert j's samples, so it starts near expert j.
    """
    resp = null_fit.predict_responsibilities(X, y)
    n, k0 = resp.shape
    extra = k1 - k0
    starts = []
    for j in range(k0):
        share = rng.dirichlet(np.ones(extra + 1), size=n)
        start = np.hstack([resp, resp[:, [j]] * share[:, 1:]])
        start[:, j] *= share[:, 0]
        starts.append(start)
    return starts


def _penalised(fit, log_likelihood):
    """The penalised log-likelihood EM maximises (gate and expert ridge penalties)."""
    return log_likelihood - fit.gate_.penalty_value() - fit.experts_.penalty_value()


def _fit_null_and_alternative(estimator, X, y, k0, k1, seed):
    """Fit K = k0, then K = k1 from the estimator's starts and from splits of the k0 fit.

    Of the K = k1 fits, the one with the highest penalised log-likelihood
    (what the estimator's EM maximises, as it does across its own starts) is
    kept. Returns the two fits, their log-likelihoods and the number of
    non-converged fits among the two kept ones.
    """
    rng = np.random.RandomState(seed)
    seeds = rng.randint(np.iinfo(np.int32).max, size=2)
    null = _fit_quietly(clone(estimator).set_params(n_experts=k0, random_state=seeds[0]), X, y)
    l0 = float(null.score_samples(X, y).sum())
    candidates = [clone(estimator).set_params(n_experts=k1, random_state=seeds[1])]
    candidates += [
        clone(estimator).set_params(n_experts=k1, init=start, warm_start=False, random_state=seeds[1])
        for start in _split_starts(null, X, y, k1, rng)
    ]
    best, best_ll, best_objective = None, -np.inf, -np.inf
    for candidate in candidates:  # the first of equal bests
        _fit_quietly(candidate, X, y)
        ll = float(candidate.score_samples(X, y).sum())
        if _penalised(candidate, ll) > best_objective:
            best, best_ll, best_objective = candidate, ll, _penalised(candidate, ll)
    n_not_converged = int(not null.converged_) + int(not best.converged_)
    return null, best, (l0, best_ll), n_not_converged


def _sample_target(null_fit, X, seed):
    y = np.asarray(null_fit.sample_y(X, random_state=seed))
    return y.reshape(y.shape[0], -1)[:, 0] if y.ndim > 1 else y


def _bootstrap_replicate(estimator, null_fit, X, k0, k1, seed):
    """One bootstrap data set from the null fit: its (log L0, log L1) and non-converged count."""
    sample_seed, fit_seed = np.random.RandomState(seed).randint(np.iinfo(np.int32).max, size=2)
    y_b = _sample_target(null_fit, X, sample_seed)
    _, _, log_likelihoods, n_bad = _fit_null_and_alternative(estimator, X, y_b, k0, k1, fit_seed)
    return log_likelihoods, n_bad


def bootstrap_lrt(estimator, X, y, k0, k1, n_bootstrap=99, n_jobs=None, random_state=None):
    """Parametric-bootstrap likelihood-ratio test of K = k0 against K = k1 experts.

    The statistic is ``T = 2 (log L1 - log L0)``, with the conditional
    log-likelihoods of the K = k0 and K = k1 fits (set to 0 if negative, see
    Notes). Its null distribution is not the chi-square of regular models
    (see Notes), so it is simulated: ``n_bootstrap`` data sets are drawn from
    the fitted K = k0 model at the observed X (``sample_y``), both models are
    refitted to each, and the p-value is ``(1 + #{T_b >= T}) / (1 +
    n_bootstrap)`` (McLachlan 1987; flexmix's ``LR_test`` and mixtools'
    ``boot.comp``).

    Parameters
    ----------
    estimator : MixtureOfExpertsRegressor or MixtureOfExpertsClassifier
        The configured estimator; its ``n_experts`` and ``random_state`` are
        replaced. Not a Pipeline.
    X : array-like of shape (n_samples, n_features)
    y : array-like of shape (n_samples,)
    k0, k1 : int
        Numbers of experts under the null and the alternative, ``1 <= k0 <
        k1``.
    n_bootstrap : int, default=99
        Number of bootstrap data sets B. The p-value is a multiple of
        ``1 / (B + 1)``: B = 19 can reject at 5%, B = 99 at 1%.
    n_jobs : int or None, default=None
        Number of joblib processes running the replicates; None runs them in
        this process. The result does not depend on it.
    random_state : int, RandomState instance or None, default=None
        Seeds every fit (data and replicates) and every simulated data set,
        drawn up front, so a fixed value gives the same result whatever
        ``n_jobs``.

    Returns
    -------
    result : LRTResult
        ``statistic``, ``p_value``, ``bootstrap_statistics``, the
        log-likelihoods and the two fits on the data.

    Raises
    ------
    TypeError
        If ``estimator`` is not a mixexp mixture-of-experts estimator.
    ValueError
        If not ``1 <= k0 < k1`` or ``n_bootstrap < 1``.

    Warns
    -----
    ConvergenceWarning
        Once, with the number of kept fits whose EM did not converge.
    Warning
        Any other warning of the fits is reported once per category, with the
        number of data sets whose fits raised it.

    See Also
    --------
    select_n_experts : information criteria and cross-validation.

    Notes
    -----
    **The alternative is not fitted worse than the null.** The K = k1 model
    contains every K = k0 model (duplicate an expert and share its gate
    weight), so its maximum log-likelihood is at least ``log L0`` and the
    statistic is ``>= 0``. EM finds local maxima, however, and a K = k1 fit
    below the K = k0 fit would make T (or a ``T_b``) negative and bias the
    test. So, on every data set, the K = k1 model is fitted from the
    estimator's own starts and from ``k0`` further starts, each splitting
    one expert j of the K = k0 fit: expert j's posterior responsibilities
    are shared at random among it and the ``k1 - k0`` new experts, which
    therefore start near expert j. Of these fits the one with the highest
    penalised log-likelihood (what the estimator's EM maximises) is kept.
    If its log-likelihood is still below ``log L0``, the embedded K = k0 fit
    is the better K = k1 solution known, and T is set to 0; such data sets
    are counted in ``n_alt_below_null``. On nearly degenerate data (a
    bootstrap sample from the null, where the second expert is barely
    identified) EM is slow and this happens for a few percent of the data
    sets, by small amounts; with ``gate_penalty > 0`` the fits maximise the
    penalised likelihood, which also lowers ``log L1`` slightly. Set
    ``gate_penalty=0`` for the plain likelihood ratio.

    **Why not chi-square.** Under K = k0 the K = k1 model's extra expert can
    have zero weight (any parameters) or coincide with another expert (any
    weight): the true parameter is not a point but a set on the boundary of
    the parameter space, and Wilks' regularity conditions fail, so T is not
    asymptotically chi-square with the difference in parameter counts as
    degrees of freedom (Hartigan 1985; McLachlan & Peel 2000, section 6.4).

    References
    ----------
    .. [1] McLachlan, G. J. (1987). On bootstrapping the likelihood ratio test
       statistic for the number of components in a normal mixture. Applied
       Statistics 36(3), 318-324.

    Examples
    --------
    >>> from mixexp import MixtureOfExpertsRegressor, bootstrap_lrt
    >>> from mixexp.datasets import make_moe_regression
    >>> X, y = make_moe_regression(300, n_features=1, n_experts=2, random_state=0)
    >>> est = MixtureOfExpertsRegressor(n_init=2, init="kmeans", tol=1e-5)
    >>> result = bootstrap_lrt(est, X, y, k0=1, k1=2, n_bootstrap=19, random_state=0)
    >>> result.p_value
    0.05
    """
    _check_estimator(estimator, "bootstrap_lrt")
    for name, k in (("k0", k0), ("k1", k1), ("n_bootstrap", n_bootstrap)):
        if not isinstance(k, Integral) or isinstance(k, bool) or k < 1:
            raise ValueError(f"{name} must be an integer >= 1; got {k!r}.")
    if k0 >= k1:
        raise ValueError(f"the alternative must have more experts than the null: k0={k0} >= k1={k1}.")
    if not hasattr(estimator, "sample_y"):
        raise TypeError(f"{type(estimator).__name__} has no sample_y to simulate the null model.")
    rng = check_random_state(random_state)
    seeds = rng.randint(np.iinfo(np.int32).max, size=n_bootstrap + 1)
    (null, alt, log_likelihoods, n_bad), caught = _capture(
        _fit_null_and_alternative, (estimator, X, y, k0, k1, seeds[0])
    )
    tasks = [(estimator, null, X, k0, k1, seed) for seed in seeds[1:]]
    out, caught_boot = _map(_bootstrap_replicate, tasks, n_jobs)
    labels = ["the data"] + [f"bootstrap data set {b + 1}" for b in range(n_bootstrap)]
    _reemit([caught, *caught_boot], labels, "data sets")
    boot = np.array([pair for pair, _ in out])
    n_bad += sum(bad for _, bad in out)
    if n_bad:
        _warn_not_converged([f"{n_bad} of the {2 * (n_bootstrap + 1)} kept fits"])
    return LRTResult(int(k0), int(k1), log_likelihoods, boot, (null, alt), n_bad)
