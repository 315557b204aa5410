"""BaseMixtureOfExperts: validation, initialisation, restarts and prediction plumbing.

Subclasses choose the parts (``_make_experts``) and check the target
(``_check_target``); the EM loop itself is :func:`mixexp.solvers.run_em`.
"""

import warnings
from abc import ABCMeta, abstractmethod
from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, _fit_context
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import (
    _check_sample_weight,
    check_array,
    check_is_fitted,
    validate_data,
)

from ._init import kmeans_start, random_start, random_subsets_start
from ._scaling import design, fit_scaling
from ._threads import single_threaded_blas, single_threaded_openmp
from ._validation import resolve_features
from .gates import GATES
from .solvers import Design, e_step_pass, run_em

_INIT_METHODS = ("kmeans", "random", "random_subsets")


def _standardize(Z, sample_weight):
    w = sample_weight / sample_weight.sum()
    mean = w @ Z
    std = np.sqrt(w @ (Z - mean) ** 2)
    std[std == 0] = 1.0
    return (Z - mean) / std


class BaseMixtureOfExperts(BaseEstimator, metaclass=ABCMeta):
    """Base class of the mixture-of-experts estimators. Not for direct use."""

    _parameter_constraints: dict = {
        "n_experts": [Interval(Integral, 1, None, closed="left")],
        "gate": [StrOptions(set(GATES))],
        "gate_features": [None, "array-like", Integral, str],
        "expert_features": [None, "array-like", Integral, str],
        "fit_intercept": ["boolean"],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "n_init": [Interval(Integral, 1, None, closed="left")],
        "init_max_iter": [None, Interval(Integral, 1, None, closed="left")],
        "init": [StrOptions(set(_INIT_METHODS)), "array-like"],
        "gate_penalty": [Interval(Real, 0, None, closed="left")],
        "warm_start": ["boolean"],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    @abstractmethod
    def __init__(
        self,
        n_experts=2,
        *,
        gate="softmax",
        gate_features=None,
        expert_features=None,
        fit_intercept=True,
        max_iter=500,
        tol=1e-6,
        n_init=1,
        init="kmeans",
        init_max_iter=None,
        gate_penalty=1e-3,
        warm_start=False,
        random_state=None,
        verbose=0,
    ):
        self.n_experts = n_experts
        self.gate = gate
        self.gate_features = gate_features
        self.expert_features = expert_features
        self.fit_intercept = fit_intercept
        self.max_iter = max_iter
        self.tol = tol
        self.n_init = n_init
        self.init_max_iter = init_max_iter
        self.init = init
        self.gate_penalty = gate_penalty
        self.warm_start = warm_start
        self.random_state = random_state
        self.verbose = verbose

    # -- hooks ----------------------------------------------------------------
    @abstractmethod
    def _make_experts(self):
        """A fresh, unfitted expert part."""

    @abstractmethod
    def _check_target(self, y, fitting):
        """Validate y (already 1-D) and return it in the form the experts use."""

    def _make_gate(self):
        return GATES[self.gate](self.n_experts, penalty=self.gate_penalty)

    def _warm_start_compatible(self, previous):
        """Whether the previous fit's raw parameters ``previous`` (see ``_raw_parts``)
        can start this fit, beyond the checks of features, K, family and intercept."""
        return True

    def _cluster_data(self, X, y, sample_weight):
        """The (n, d) rows k-means clusters for ``init="kmeans"``: standardised (X, y)."""
        return _standardize(np.column_stack([X, y]), sample_weight)

    # -- design ------------------------------------------------------------------
    def _design(self, X):
        """Standardised feature-major gate and expert designs (p, n), constant row first."""
        sc = self._scaling
        XgT = design(X, self.gate_feature_indices_, sc.gate_mean, sc.gate_scale, True)
        XeT = design(X, self.expert_feature_indices_, sc.expert_mean, sc.expert_scale, self.fit_intercept)
        return XgT, XeT

    def _scaled_target(self, y):
        sc = self._scaling
        return (y - sc.y_mean) / sc.y_scale

    def _validate_X(self, X):
        check_is_fitted(self)
        return validate_data(self, X, reset=False, dtype=np.float64)

    def _validate_X_y(self, X, y):
        X = self._validate_X(X)
        y = check_array(y, ensure_2d=False, dtype=None, ensure_all_finite=True, input_name="y")
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        if y.ndim != 1:
            raise ValueError(f"y must be one-dimensional; got an array of shape {y.shape}.")
        if y.shape[0] != X.shape[0]:
            raise ValueError(f"X has {X.shape[0]} samples but y has {y.shape[0]}.")
        return X, self._check_target(y, fitting=False)

    # -- fitting -----------------------------------------------------------------
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None):
        """Fit the mixture of experts by EM.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Covariates. Columns feed the gate and the experts as chosen by
            ``gate_features`` and ``expert_features``.
        y : array-like of shape (n_samples,)
            Target.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weights; a weight of 2 counts a row twice.

        Returns
        -------
        self : object
            The fitted estimator.
        """
        with single_threaded_blas():
            return self._fit(X, y, sample_weight)

    def _fit(self, X, y, sample_weight):
        X, y = validate_data(self, X, y, dtype=np.float64, y_numeric=False)
        y = self._check_target(y, fitting=True)
        sample_weight = _check_sample_weight(
            sample_weight, X, dtype=np.float64, ensure_non_negative=True
        )
        if not sample_weight.sum() > 0:
            raise ValueError("sample_weight must have a positive sum.")
        n_samples, n_features = X.shape
        if n_samples < self.n_experts:
            raise ValueError(
                f"n_samples={n_samples} should be >= n_experts={self.n_experts}."
            )
        names = getattr(self, "feature_names_in_", None)
        gate_idx = resolve_features(self.gate_features, n_features, names, "gate_features")
        if self.gate == "constant":
            gate_idx = gate_idx[:0]  # mixing weights that do not depend on x
        expert_idx = resolve_features(self.expert_features, n_features, names, "expert_features")
        if expert_idx.size == 0 and not self.fit_intercept:
            raise ValueError(
                "expert_features selects no column and fit_intercept=False: "
                "the experts would have no parameters."
            )
        init_resp = self._check_init_responsibilities(n_samples)
        previous = None
        if self.warm_start and hasattr(self, "gate_"):
            previous = self._raw_parts()
            warm = (
                np.array_equal(gate_idx, self.gate_feature_indices_)
                and np.array_equal(expert_idx, self.expert_feature_indices_)
                and self.gate_.n_experts == self.n_experts
                and type(self.experts_) is type(self._make_experts())
                and previous[2] == self.fit_intercept
                and self._warm_start_compatible(previous)
            )
            previous = previous if warm else None
        self.gate_feature_indices_ = gate_idx
        self.expert_feature_indices_ = expert_idx
        self._scaling = fit_scaling(
            X, y, sample_weight, gate_idx, expert_idx, self.fit_intercept,
            getattr(self._make_experts(), "standardize_y", False),
        )
        data = Design(*self._design(X), self._scaled_target(y), sample_weight)

        warm = previous is not None
        n_init = 1 if (warm or init_resp is not None) else self.n_init
        random_state = check_random_state(self.random_state)
        cluster_data = None
        # screening (short-run EM, Biernacki, Celeux & Govaert 2003): every start
        # runs init_max_iter iterations, and only the best is run to convergence
        screen = self.init_max_iter is not None and n_init > 1 and self.init_max_iter < self.max_iter
        budget = self.init_max_iter if screen else self.max_iter
        best = None
        for run in range(n_init):
            if warm:
                # the previous solution, on this fit's scale and with this fit's settings
                gate, experts = self._make_gate(), self._make_experts()
                gate.set_raw_params(previous[0], self._scaling)
                experts.set_raw_params(previous[1], self._scaling, self.fit_intercept)
                experts.set_variance_floor(data.y, data.sample_weight)
            else:
                if init_resp is None and self.init == "kmeans" and cluster_data is None:
                    cluster_data = self._cluster_data(X, y, sample_weight)
                resp = self._initial_responsibilities(
                    init_resp, cluster_data, data, random_state
                )
                gate, experts = self._make_gate(), self._make_experts()
                experts.initialize(data.XeT, data.y, resp, data.sample_weight)
                gate.initialize(data.XgT, resp, data.sample_weight)
            label = f"[init {run + 1}/{n_init}] " if n_init > 1 else ""
            result = run_em(gate, experts, data, budget, self.tol, self.verbose, label)
            if best is None or result.lower_bound > best[0].lower_bound:
                best = (result, gate, experts)
        if screen and not best[0].converged:
            first, gate, experts = best
            rest = run_em(
                gate, experts, data, self.max_iter - first.n_iter, self.tol, self.verbose, "[best start] "
            )
            # the continuation starts with an E-step at the parameters the screen stopped at
            rest.lower_bounds = first.lower_bounds + rest.lower_bounds[1:]
            rest.n_iter += first.n_iter
            best = (rest, gate, experts)

        result, gate, experts = best
        if not result.converged:
            change = abs(result.lower_bounds[-1] - result.lower_bounds[-2])
            warnings.warn(
                f"The best of {n_init} EM run(s) did not converge in max_iter={self.max_iter} "
                f"iterations (last change of the mean log-likelihood {change:.3g} > tol={self.tol}). "
                "Increase max_iter or tol, or standardise X.",
                ConvergenceWarning,
                stacklevel=3,
            )
        self.gate_ = gate
        self.experts_ = experts
        self.converged_ = result.converged
        self.n_iter_ = result.n_iter
        # the objective on the scale of the original y (Jacobian of y's scaling)
        shift = np.log(self._scaling.y_scale)
        self.lower_bound_ = result.lower_bound - shift
        self.lower_bounds_ = np.asarray(result.lower_bounds) - shift
        return self

    def _raw_parts(self):
        """The fitted parts' parameters on the raw data's scale."""
        sc = self._scaling
        return (
            self.gate_.raw_params(sc),
            self.experts_.raw_params(sc, self.fit_intercept),
            self.fit_intercept,
        )

    def _check_init_responsibilities(self, n_samples):
        if isinstance(self.init, str):
            return None
        resp = check_array(self.init, dtype=np.float64, input_name="init")
        if resp.shape != (n_samples, self.n_experts):
            raise ValueError(
                f"init given as an array must have shape (n_samples, n_experts) = "
                f"({n_samples}, {self.n_experts}); got {resp.shape}."
            )
        if (resp < 0).any():
            raise ValueError("init responsibilities must be non-negative.")
        sums = resp.sum(axis=1, keepdims=True)
        if (sums <= 0).any():
            raise ValueError("every row of the init responsibilities must have a positive sum.")
        return np.ascontiguousarray((resp / sums).T)

    def _initial_responsibilities(self, init_resp, cluster_data, data, random_state):
        """(K, n) starting responsibilities for one start (see :mod:`mixexp._init`)."""
        if init_resp is not None:
            return init_resp
        K = self.n_experts
        if self.init == "random":
            return random_start(data.y.shape[0], K, random_state)
        if self.init == "random_subsets":
            return random_subsets_start(self._make_experts, data, K, random_state)
        # k-means on at most 20 000 rows gains nothing from threads, and next to
        # busy processes OpenMP's thread team made it up to 40x slower; on one
        # thread the start also does not depend on the number of cores.
        with single_threaded_openmp():
            return kmeans_start(cluster_data, data.sample_weight, K, random_state)

    # -- prediction plumbing -------------------------------------------------------
    def _posterior(self, X, y):
        X, y = self._validate_X_y(X, y)
        data = Design(*self._design(X), self._scaled_target(y), np.ones(X.shape[0]))
        step = e_step_pass(self.gate_, self.experts_, data)
        return step.resp.T, step.ll_rows - np.log(self._scaling.y_scale)

    def predict_gate(self, X):
        """Gate probabilities g_k(x) of each expert.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        gate : ndarray of shape (n_samples, n_experts)
            Rows sum to one.
        """
        X = self._validate_X(X)
        XgT, _ = self._design(X)
        return self.gate_.evaluate(XgT).prob.T

    def predict_responsibilities(self, X, y):
        """Posterior probability that expert k generated y_i given x_i.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)

        Returns
        -------
        resp : ndarray of shape (n_samples, n_experts)
            Rows sum to one.
        """
        return self._posterior(X, y)[0]

    def score_samples(self, X, y):
        """Conditional log-density log p(y_i | x_i) of each sample.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)

        Returns
        -------
        log_density : ndarray of shape (n_samples,)
        """
        return self._posterior(X, y)[1]

    def n_parameters(self):
        """Number of free parameters of the fitted model.

        Returns
        -------
        int
            Gate parameters (the reference expert's row is fixed) plus expert
            parameters.
        """
        check_is_fitted(self)
        return int(self.gate_.n_parameters() + self.experts_.n_parameters())

    def bic(self, X, y):
        """Bayesian information criterion; lower is better.

        ``BIC = -2 log L + p log n`` with the conditional log-likelihood
        ``log L = sum_i log p(y_i | x_i)`` and ``p = n_parameters()``. Lower is
        better, as in scikit-learn and flexmix's ``BIC()``; mixtools reports the
        opposite sign.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)

        Returns
        -------
        bic : float
        """
        ll = self.score_samples(X, y).sum()
        return float(-2.0 * ll + self.n_parameters() * np.log(len(y)))

    def aic(self, X, y):
        """Akaike information criterion; lower is better.

        ``AIC = -2 log L + 2 p`` with the conditional log-likelihood and
        ``p = n_parameters()``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)

        Returns
        -------
        aic : float
        """
        ll = self.score_samples(X, y).sum()
        return float(-2.0 * ll + 2.0 * self.n_parameters())
