"""BaseMixtureOfExperts: validation, initialisation, restarts and prediction plumbing.

Subclasses choose the parts (``_make_experts``) and check the target
(``_check_target``); the EM loop itself is :func:`mixexp.solvers.run_em`.
"""

import warnings
from abc import ABCMeta, abstractmethod
from functools import partial
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
from ._penalties import n_l1_zeros
from ._scaling import design, fit_scaling
from ._threads import parallel_map, single_threaded_blas, single_threaded_openmp
from ._validation import resolve_features
from .exceptions import VanishingExpertWarning
from .gates import GATES, TopKSoftmaxGate
from .gates._hierarchical import tree_depth
from .gates._topk import check_top_k
from .solvers import (
    Design,
    e_step_pass,
    get_flat_params,
    missing_gradient_methods,
    run_em,
    run_lbfgs,
    run_minibatch,
    run_squarem,
)
from .solvers._squarem import MAX_DECREASE

_INIT_METHODS = ("auto", "kmeans", "random", "random_subsets")
#: init="auto": one k-means start and AUTO_N_INIT - 1 random-subsets starts,
#: each screened for AUTO_INIT_MAX_ITER EM iterations (see docs/user_guide/starts.rst)
AUTO_N_INIT = 12
AUTO_INIT_MAX_ITER = 8
#: n_init="auto" with init="random" or "random_subsets"
RANDOM_N_INIT = 10
#: rounds of re-seeding of vanished experts
_MAX_RESEEDS = 2
#: screening runs on a random subsample of at most this many rows, and then
#: the SUBSAMPLE_KEEP best screened starts run to convergence on every row
SCREEN_MAX_ROWS = 4000
SUBSAMPLE_KEEP = 3


def _run_start(estimator, start, init_resp, cluster_data, data, budget):
    """One start, run for ``budget`` iterations: ``(result, gate, experts)``."""
    run, strategy, seed, label = start
    gate, experts = estimator._start(strategy, seed, init_resp, cluster_data, data)
    # a screening run (budget below max_iter) skips the gate's polish (top-K): it
    # ranks the starts, and the kept start is continued with the polish
    polish = budget >= estimator.max_iter
    return estimator._run_solver(gate, experts, data, budget, label, polish=polish), gate, experts


def _map_starts(estimator, starts, init_resp, cluster_data, data, budget, n_jobs):
    """Run the starts, in this process or in ``n_jobs`` joblib worker processes."""
    tasks = [(estimator, s, init_resp, cluster_data, data, budget) for s in starts]
    return parallel_map(_run_start, tasks, n_jobs)


class _IterationHook:
    """Per-iteration hook of a run: records the flat parameters and calls the callback.

    Called by the solvers as ``hook(n_iter, lower_bound)`` with the parts at
    the current parameters. The callback is called after each iteration
    (``n_iter >= 1``) with the estimator's ``gate_`` and ``experts_`` set to the
    parts; a ``StopIteration`` it raises stops the run (returns True).
    """

    def __init__(self, estimator, gate, experts, thetas, callback):
        self.estimator = estimator
        self.gate = gate
        self.experts = experts
        self.thetas = thetas
        self.callback = callback

    def __call__(self, n_iter, lower_bound):
        if self.thetas is not None:
            self.thetas.append(get_flat_params(self.gate, self.experts))
        if self.callback is None or n_iter == 0:
            return False
        self.estimator.gate_ = self.gate
        self.estimator.experts_ = self.experts
        try:
            self.callback(self.estimator)
        except StopIteration:
            return True
        return False


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
        "top_k": [None, Integral],
        "gate_features": [None, "array-like", Integral, str],
        "expert_features": [None, "array-like", Integral, str],
        "fit_intercept": ["boolean"],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "n_init": [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"})],
        "init_max_iter": [None, Interval(Integral, 1, None, closed="left"), StrOptions({"auto"})],
        "init": [StrOptions(set(_INIT_METHODS)), "array-like"],
        "gate_penalty": [Interval(Real, 0, None, closed="left")],
        "gate_l1_ratio": [Interval(Real, 0, 1, closed="both")],
        "gate_covariance_type": [StrOptions({"full", "diag", "spherical"})],
        "gate_depth": [None, Interval(Integral, 1, None, closed="left")],
        "gate_branching": [Interval(Integral, 2, None, closed="left")],
        "solver": [StrOptions({"em", "squarem", "lbfgs", "adam", "sgd"})],
        "batch_size": [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"})],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "learning_rate_schedule": [StrOptions({"constant", "invscaling", "adaptive"})],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "shuffle": ["boolean"],
        "online_alpha": [Interval(Real, 0.5, 1, closed="right")],
        "squarem_max_decrease": [Interval(Real, 0, None, closed="left")],
        "record_history": ["boolean"],
        "callback": [None, callable],
        "n_jobs": [None, Integral],
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
        top_k=None,
        gate_features=None,
        expert_features=None,
        fit_intercept=True,
        max_iter=500,
        tol=1e-6,
        n_init="auto",
        init="auto",
        init_max_iter="auto",
        gate_penalty=1e-3,
        gate_l1_ratio=0.0,
        gate_covariance_type="full",
        gate_depth=None,
        gate_branching=2,
        solver="em",
        batch_size="auto",
        learning_rate=1e-2,
        learning_rate_schedule="constant",
        early_stopping=False,
        validation_fraction=0.1,
        n_iter_no_change=10,
        shuffle=True,
        online_alpha=0.6,
        squarem_max_decrease=MAX_DECREASE,
        record_history=False,
        callback=None,
        n_jobs=None,
        warm_start=False,
        random_state=None,
        verbose=0,
    ):
        self.n_experts = n_experts
        self.gate = gate
        self.top_k = top_k
        self.gate_features = gate_features
        self.expert_features = expert_features
        self.fit_intercept = fit_intercept
        self.max_iter = max_iter
        self.tol = tol
        self.n_init = n_init
        self.init_max_iter = init_max_iter
        self.init = init
        self.gate_penalty = gate_penalty
        self.gate_l1_ratio = gate_l1_ratio
        self.gate_covariance_type = gate_covariance_type
        self.gate_depth = gate_depth
        self.gate_branching = gate_branching
        self.solver = solver
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_schedule = learning_rate_schedule
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.shuffle = shuffle
        self.online_alpha = online_alpha
        self.squarem_max_decrease = squarem_max_decrease
        self.record_history = record_history
        self.callback = callback
        self.n_jobs = n_jobs
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
        if getattr(self, "top_k", None) is not None and self.gate != "softmax":
            raise ValueError(
                f"top_k (sparse gating) applies to gate='softmax' only; got gate={self.gate!r} "
                f"with top_k={self.top_k!r}. Set top_k=None."
            )
        if self.gate == "gaussian":
            # the covariance floor applies on the standardised gate columns (unit
            # variance): the regressor's reg_covar, 1e-6 for the classifier
            return GATES["gaussian"](
                self.n_experts,
                covariance_type=self.gate_covariance_type,
                reg_covar=getattr(self, "reg_covar", 1e-6),
                penalty=self.gate_penalty,
            )
        top_k = getattr(self, "top_k", None)
        if top_k is not None:
            # top_k == n_experts selects every expert: the dense gate, same fit
            if check_top_k(top_k, self.n_experts) < self.n_experts:
                if self.gate_l1_ratio > 0:
                    raise ValueError(
                        f"gate_l1_ratio > 0 (an L1 gate penalty) is fitted for the dense softmax gate "
                        f"only; got top_k={top_k!r} < n_experts. Set gate_l1_ratio=0 or top_k=None."
                    )
                return TopKSoftmaxGate(self.n_experts, top_k, penalty=self.gate_penalty)
        if self.gate == "softmax":
            return GATES["softmax"](self.n_experts, penalty=self.gate_penalty, l1_ratio=self.gate_l1_ratio)
        if self.gate == "hierarchical":
            # a complete tree: n_experts = gate_branching**gate_depth (the depth is inferred when None)
            depth = self.gate_depth
            if depth is None:
                depth = tree_depth(self.n_experts, self.gate_branching)
            return GATES["hierarchical"](
                self.n_experts,
                depth,
                self.gate_branching,
                penalty=self.gate_penalty,
                l1_ratio=self.gate_l1_ratio,
            )
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
        if self.gate == "gaussian" and gate_idx.size == 0:
            raise ValueError(
                "gate='gaussian' needs at least one gate feature (the gate is a Gaussian "
                "mixture on the gate features); gate_features selects none. Use "
                "gate='constant' for mixing weights that do not depend on x."
            )
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
                and type(self.gate_) is type(self._make_gate())
                and getattr(self.gate_, "covariance_type", None)
                == getattr(self._make_gate(), "covariance_type", None)
                and getattr(self.gate_, "branching", None) == getattr(self._make_gate(), "branching", None)
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
        n_init = 1 if (warm or init_resp is not None) else self._resolved_n_init()
        random_state = check_random_state(self.random_state)
        # screening (short-run EM, Biernacki, Celeux & Govaert 2003): every start
        # runs init_max_iter iterations, and only the best is run to convergence
        init_max_iter = self._resolved_init_max_iter(n_init)
        screen = init_max_iter is not None and n_init > 1 and init_max_iter < self.max_iter
        budget = init_max_iter if screen else self.max_iter
        self._check_solver_options(n_init, screen)
        # the callback follows the final run only: the single start, or the run of
        # the best screened start (set below)
        self._final_run = n_init == 1
        subsample = False  # screening on a subsample of rows (set below)
        if warm:
            # the previous solution, on this fit's scale and with this fit's settings
            gate, experts = self._make_gate(), self._make_experts()
            gate.set_raw_params(previous[0], self._scaling)
            experts.set_raw_params(previous[1], self._scaling, self.fit_intercept)
            experts.set_variance_floor(data.y, data.sample_weight)
            best = (self._run_solver(gate, experts, data, budget, ""), gate, experts)
        else:
            # one seed per start, drawn up front: a start does not depend on the
            # others, so the fit is the same whatever n_jobs is
            seeds = random_state.randint(np.iinfo(np.int32).max, size=n_init)
            strategies = self._start_strategies(n_init, init_resp)
            cluster_data = None
            if "kmeans" in strategies:
                cluster_data = self._cluster_data(X, y, sample_weight)
            # on large data the starts are screened on a random subsample of rows:
            # the screen then costs the same whatever n, and only the best start
            # runs on every row
            screen_data = data
            subsample = screen and n_samples > SCREEN_MAX_ROWS
            if subsample:
                rows = np.sort(random_state.choice(n_samples, SCREEN_MAX_ROWS, replace=False))
                screen_data = Design(data.XgT[:, rows], data.XeT[:, rows], data.y[rows], sample_weight[rows])
                cluster_data = None if cluster_data is None else cluster_data[rows]
                if screen_data.weight_sum <= 0:
                    screen_data, subsample = data, False
            starts = [
                (run, strategies[run], seeds[run], f"[init {run + 1}/{n_init}] " if n_init > 1 else "")
                for run in range(n_init)
            ]
            runs = _map_starts(self, starts, init_resp, cluster_data, screen_data, budget, self.n_jobs)
            best = None
            for run in runs:  # the first of equal bests, in start order
                if best is None or run[0].lower_bound > best[0].lower_bound:
                    best = run
            if subsample:
                # a subsample ranks the starts less surely than all rows: the
                # SUBSAMPLE_KEEP best screened starts each run to convergence on
                # every row, and the best of those is kept
                order = sorted(range(len(runs)), key=lambda i: -runs[i][0].lower_bound)
                self._final_run = True
                best = None
                for rank, i in enumerate(order[:SUBSAMPLE_KEEP]):
                    _, gate, experts = runs[i]
                    experts.set_variance_floor(data.y, data.sample_weight)
                    label = f"[best start {rank + 1}] "
                    run = (self._run_solver(gate, experts, data, self.max_iter, label), gate, experts)
                    if best is None or run[0].lower_bound > best[0].lower_bound:
                        best = run
        # the best screened start runs on unless it converged, or converged without
        # the polish of its gate (top-K), which the screening skips
        unpolished = screen and not subsample and getattr(best[1], "polish", None) is not None
        if screen and (not best[0].converged or unpolished) and best[0].n_iter < self.max_iter:
            first, gate, experts = best
            self._final_run = True
            rest = self._run_solver(gate, experts, data, self.max_iter - first.n_iter, "[best start] ")
            # the continuation starts with an E-step at the parameters the screen stopped at
            rest.lower_bounds = first.lower_bounds + rest.lower_bounds[1:]
            if first.thetas is not None:
                rest.thetas = first.thetas + rest.thetas[1:]
            rest.n_iter += first.n_iter
            best = (rest, gate, experts)

        result, gate, experts = best
        if not result.stopped:  # a fit the callback stopped ends where it stopped
            result, gate, experts = self._reseed_vanished(result, gate, experts, data)
        self._final_run = False
        if not result.converged and not result.stopped:
            change = abs(result.lower_bounds[-1] - result.lower_bounds[-2])
            solver_name = {"em": "EM", "squarem": "SQUAREM", "lbfgs": "L-BFGS", "adam": "Adam", "sgd": "SGD"}[
                self.solver
            ]
            warnings.warn(
                f"The best of {n_init} {solver_name} run(s) did not converge in max_iter={self.max_iter} "
                f"iterations (last change of the mean log-likelihood {change:.3g} > tol={self.tol}). "
                "Increase max_iter or tol, or standardise X.",
                ConvergenceWarning,
                stacklevel=3,
            )
        self.gate_ = gate
        self.experts_ = experts
        # partial_fit continues from here, counting this fit's weight (mixexp.solvers._online)
        self._fit_weight_sum = data.weight_sum
        self.converged_ = result.converged
        self.n_iter_ = result.n_iter
        # the objective on the scale of the original y (Jacobian of y's scaling);
        # with a gate that is a density of x (gate="gaussian") the objective is the
        # joint log-likelihood, on the raw x too (Jacobian of the gate columns' scaling)
        shift = np.log(self._scaling.y_scale)
        if getattr(gate, "models_x", False):
            shift += float(np.sum(np.log(self._scaling.gate_scale)))
        self.lower_bound_ = result.lower_bound - shift
        self.lower_bounds_ = np.asarray(result.lower_bounds) - shift
        if self.record_history:
            self.history_ = {"theta": np.array(result.thetas), "log_likelihood": self.lower_bounds_.copy()}
        elif hasattr(self, "history_"):
            del self.history_
        # early_stopping (minibatch solvers): the held-out mean log-likelihood per epoch
        scores = getattr(result, "validation_scores", None)
        if scores is not None:
            self.validation_scores_ = np.asarray(scores) - np.log(self._scaling.y_scale)
        elif hasattr(self, "validation_scores_"):
            del self.validation_scores_
        return self

    # -- starts --------------------------------------------------------------------
    def _resolved_n_init(self):
        """``n_init``, with "auto" resolved (see the class docstring)."""
        if self.n_init != "auto":
            return self.n_init
        if not isinstance(self.init, str) or self.init == "kmeans":
            return 1
        return AUTO_N_INIT if self.init == "auto" else RANDOM_N_INIT

    def _resolved_init_max_iter(self, n_init):
        """``init_max_iter``, with "auto" resolved: screening for ``init="auto"`` only."""
        if self.init_max_iter != "auto":
            return self.init_max_iter
        auto = isinstance(self.init, str) and self.init == "auto"
        return AUTO_INIT_MAX_ITER if auto and n_init > 1 else None

    def _start_strategies(self, n_init, init_resp):
        """The strategy of each start: "auto" is one k-means start, then random subsets."""
        if init_resp is not None:
            return ["given"]
        if self.init == "auto":
            return ["kmeans"] + ["random_subsets"] * (n_init - 1)
        return [self.init] * n_init

    def _start(self, strategy, seed, init_resp, cluster_data, data):
        """Parts initialised by one start: responsibilities, then the parts' own M-steps."""
        random_state = np.random.RandomState(seed)
        K = self.n_experts
        if strategy == "given":
            resp = init_resp
        elif strategy == "random":
            resp = random_start(data.y.shape[0], K, random_state)
        elif strategy == "random_subsets":
            resp = random_subsets_start(self._make_experts, data, K, random_state)
        else:
            # k-means on at most 20 000 rows gains nothing from threads, and next to
            # busy processes OpenMP's thread team made it up to 40x slower; on one
            # thread the start also does not depend on the number of cores.
            with single_threaded_openmp():
                resp = kmeans_start(cluster_data, data.sample_weight, K, random_state)
        gate, experts = self._make_gate(), self._make_experts()
        if strategy != "given" and callable(getattr(gate, "leaf_order", None)):
            # a tree gate (HME) puts experts close in x under one node: reorder the start's experts
            resp = resp[gate.leaf_order(data.XgT, resp, data.sample_weight)]
        experts.initialize(data.XeT, data.y, resp, data.sample_weight)
        gate.initialize(data.XgT, resp, data.sample_weight)
        return gate, experts

    def _vanished(self, resp, experts, data):
        """Experts whose total responsibility is below what their parameters need.

        An expert with less weight than ``its number of parameters + 1`` rows
        cannot be estimated: it has vanished. Weights count rows (a weight of
        2 is a row twice); when the rows of positive weight weigh less than 1
        on average (weights given as fractions), a row counts as their mean
        weight instead, so the threshold scales with the weights.
        """
        nk = resp @ data.sample_weight
        n_rows = max(1, int(np.count_nonzero(data.sample_weight)))
        per_expert = experts.n_parameters() / self.n_experts
        threshold = (per_expert + 1.0) * min(1.0, data.weight_sum / n_rows)
        return np.flatnonzero(nk < threshold), nk, threshold

    def _reseed_vanished(self, result, gate, experts, data):
        """Re-seed vanished experts from the rows the model explains worst.

        Each vanished expert is given the ``max(5 (p + 1), 1% of n)`` rows of
        lowest log p(y | x) (p its number of parameters), the parts are refitted
        from those responsibilities and run to convergence; the new fit is kept
        only if its objective is higher. At most ``_MAX_RESEEDS`` rounds; an
        expert that still vanishes gets a warning (never a silent drop to fewer
        experts, never NaN).
        """
        if self.n_experts == 1:
            return result, gate, experts
        for _ in range(_MAX_RESEEDS):
            vanished, nk, threshold = self._vanished(result.resp, experts, data)
            if vanished.size == 0:
                return result, gate, experts
            step = e_step_pass(gate, experts, data)
            ll_rows = np.where(data.sample_weight > 0, step.ll_rows, np.inf)
            per_expert = experts.n_parameters() / self.n_experts
            m = int(max(5 * (per_expert + 1), 0.01 * ll_rows.size))
            worst = np.argsort(ll_rows, kind="stable")[: m * vanished.size]
            resp = result.resp.copy()
            resp[:, worst] = 0.0
            for j, k in enumerate(vanished):
                resp[k, worst[j * m : (j + 1) * m]] = 1.0
            resp[vanished[:, None], np.setdiff1d(np.arange(resp.shape[1]), worst)] = 0.0
            resp /= np.maximum(resp.sum(axis=0, keepdims=True), 1e-300)
            new_gate, new_experts = self._make_gate(), self._make_experts()
            new_experts.initialize(data.XeT, data.y, resp, data.sample_weight)
            new_gate.initialize(data.XgT, resp, data.sample_weight)
            if self.verbose:
                print(f"re-seeding vanished expert(s) {vanished.tolist()} from the {m} worst-explained rows")
            new = self._run_solver(new_gate, new_experts, data, self.max_iter, "[re-seeded] ")
            if not new.lower_bound > result.lower_bound:
                break
            result, gate, experts = new, new_gate, new_experts
        vanished, nk, threshold = self._vanished(result.resp, experts, data)
        if vanished.size:
            warnings.warn(
                f"Expert(s) {vanished.tolist()} carry a total responsibility of "
                f"{np.round(nk[vanished], 3).tolist()} (below {threshold:.3g}, what their parameters "
                f"need) even after re-seeding: the data support fewer than n_experts={self.n_experts} "
                "experts here; consider a smaller n_experts.",
                VanishingExpertWarning,
                stacklevel=4,
            )
        return result, gate, experts

    def _run_solver(self, gate, experts, data, max_iter, label, polish=True):
        """Run the solver (EM, L-BFGS, Adam or SGD) from the parts' current parameters.

        ``polish`` lets EM run the gate's polish before it stops (the top-K
        gate's search over its likelihood, see :func:`mixexp.solvers.run_em`).

        With ``record_history`` the result's ``thetas`` holds the flat
        parameters at each entry of its ``lower_bounds``; in the final run
        (``_final_run``) ``callback`` is called after each iteration (epoch
        for the minibatch solvers).
        """
        run = {"lbfgs": run_lbfgs, "squarem": run_squarem}.get(self.solver, run_em)
        if self.solver in ("adam", "sgd"):
            # an int random_state gives every run the same shuffles (deterministic fits)
            run = partial(
                run_minibatch,
                algorithm=self.solver,
                batch_size=self.batch_size,
                learning_rate=self.learning_rate,
                learning_rate_schedule=self.learning_rate_schedule,
                early_stopping=self.early_stopping,
                validation_fraction=self.validation_fraction,
                n_iter_no_change=self.n_iter_no_change,
                shuffle=self.shuffle,
                random_state=check_random_state(self.random_state),
            )
        thetas = [] if self.record_history else None
        callback = self.callback if getattr(self, "_final_run", False) else None
        hook = None
        if thetas is not None or callback is not None:
            hook = _IterationHook(self, gate, experts, thetas, callback)
        options = {"polish": polish} if run in (run_em, run_squarem) else {}
        if run is run_squarem:
            options["max_decrease"] = self.squarem_max_decrease
        result = run(gate, experts, data, max_iter, self.tol, self.verbose, label, hook=hook, **options)
        result.thetas = thetas
        return result

    def _check_solver_options(self, n_init, screen):
        """Raise a ValueError for a solver/option combination that cannot work."""
        gate, experts = self._make_gate(), self._make_experts()
        if self.early_stopping and self.solver not in ("adam", "sgd"):
            raise ValueError(
                f"early_stopping=True applies to the minibatch solvers (solver='adam' or 'sgd'); "
                f"solver={self.solver!r} maximises the likelihood of all rows. Set early_stopping=False."
            )
        if self.solver in ("lbfgs", "adam", "sgd"):
            l1 = [
                name
                for name, part in (("gate_l1_ratio", gate), ("expert_l1_ratio", experts))
                if getattr(part, "penalty", 0.0) and getattr(part, "l1_ratio", 0.0)
            ]
            if l1:
                raise ValueError(
                    f"solver={self.solver!r} needs a differentiable objective, but {' and '.join(l1)} > 0 "
                    "puts an L1 term (a kink at zero) in the penalty; use solver='em' (proximal Newton and "
                    "coordinate descent steps) or set the l1_ratio to 0."
                )
            if getattr(gate, "models_x", False):
                raise ValueError(
                    f"solver={self.solver!r} maximises the conditional likelihood of y given x, but "
                    f"gate={self.gate!r} models x and is fitted by EM on the joint likelihood "
                    "of (x, y); use solver='em' with this gate."
                )
            missing = missing_gradient_methods(gate, experts)
            if missing:
                raise ValueError(
                    f"solver={self.solver!r} needs the flat-parameter gradient interface of the gate and "
                    f"the experts (see mixexp.solvers.loglik_and_grad); missing: {', '.join(missing)}. "
                    "Use solver='em'."
                )
        if self.solver == "squarem":
            missing = missing_gradient_methods(gate, experts, ("get_flat", "set_flat"))
            if missing:
                raise ValueError(
                    "solver='squarem' extrapolates the flat parameter vector (get_flat/set_flat); "
                    f"missing: {', '.join(missing)}. Use solver='em'."
                )
        if self.record_history:
            missing = missing_gradient_methods(gate, experts, ("get_flat",))
            if missing:
                raise ValueError(
                    f"record_history=True records the flat parameter vector; missing: {', '.join(missing)}."
                )
        if self.callback is not None and n_init > 1 and not screen:
            raise ValueError(
                f"callback follows the final run, but with n_init={n_init} starts each run to "
                "convergence (no screening) there is no single final run: set init_max_iter "
                "(screen the starts, then the callback follows the best one) or n_init=1."
            )

    def _raw_parts(self):
        """The fitted parts' parameters on the raw data's scale."""
        sc = self._scaling
        return (
            self.gate_.raw_params(sc),
            self.experts_.raw_params(sc, self.fit_intercept),
            self.fit_intercept,
        )

    # -- fitted parameters of the Gaussian gate ----------------------------------------
    def _gate_param(self, key, what):
        check_is_fitted(self)
        raw = self.gate_.raw_params(self._scaling)
        if key not in raw:
            hint = (
                "the Gaussian gate's parameters are gate_weights_, gate_means_ and gate_covariances_"
                if key == "coef" and self.gate == "gaussian"
                else "the hierarchical gate's node coefficients are in gate_tree_"
                if key == "coef"
                else "it is a parameter of gate='gaussian'"
            )
            raise AttributeError(f"{what} is not a parameter of gate={self.gate!r}: {hint}.")
        return raw[key]

    @property
    def gate_weights_(self):
        """Mixing proportions pi_k of the Gaussian gate, (n_experts,) (``gate="gaussian"`` only)."""
        return self._gate_param("weights", "gate_weights_")

    @property
    def gate_means_(self):
        """Means mu_k of the Gaussian gate on the raw gate features, (n_experts, n_gate_features).

        ``gate="gaussian"`` only.
        """
        return self._gate_param("means", "gate_means_")

    @property
    def gate_covariances_(self):
        """Covariances Sigma_k of the Gaussian gate on the raw gate features (``gate="gaussian"`` only).

        Shape (n_experts, n_gate_features, n_gate_features) for
        ``gate_covariance_type="full"``, and (n_experts, n_gate_features), the
        variances, for ``"diag"`` and for ``"spherical"`` (spherical on the
        standardised gate columns, so diagonal on the raw scale).
        """
        return self._gate_param("covariances", "gate_covariances_")

    @property
    def gate_tree_(self):
        """The tree of a hierarchical gate (``gate="hierarchical"`` only), breadth first.

        A list with one dict per internal node: ``"node"`` (its position; the
        root is 0, the children of node v are v B + 1, ..., v B + B, and
        position ``n_nodes + k`` is expert k), ``"depth"`` (the root's is 0),
        ``"children"`` (the internal children's positions, or None for a node
        just above the leaves), ``"experts"`` (the experts such a node gates,
        else None), ``"leaves"`` (every expert below the node) and ``"coef"``,
        the node's softmax coefficients on the raw gate features, (branching,
        1 + n_gate_features), row 0 (its reference child) fixed at zero.
        """
        check_is_fitted(self)
        if not callable(getattr(self.gate_, "tree", None)):
            raise AttributeError(
                f"gate_tree_ is an attribute of gate='hierarchical'; this estimator has gate={self.gate!r}."
            )
        return self.gate_.tree(self._scaling)

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

    def n_parameters(self, active_only=True):
        """Number of free parameters of the fitted model (its degrees of freedom).

        Parameters
        ----------
        active_only : bool, default=True
            Whether coefficients an L1 penalty set to exactly zero are left
            out of the count (see Notes). ``False`` counts every parameter:
            the dimension of the parameter space.

        Returns
        -------
        int
            Gate parameters (the reference expert's row is fixed) plus expert
            parameters, less, with ``active_only``, the coefficients an L1
            penalty set to zero.

        Notes
        -----
        The rule. A part (the gate, the experts) whose penalty has an L1 term,
        ``penalty > 0`` and ``l1_ratio > 0`` (``gate_penalty`` and
        ``gate_l1_ratio``, ``expert_penalty`` and ``expert_l1_ratio``), counts
        only its penalised coefficients (slopes) that are not exactly ``0.0``,
        plus all its unpenalised parameters (intercepts, variances, degrees of
        freedom, shapes). A part without an L1 term counts every parameter,
        so with ``l1_ratio=0`` (ridge) or a zero penalty the count, and
        :meth:`bic`, :meth:`aic` and :meth:`icl`, are exactly those of the
        full parameter space.

        Why. For the lasso the number of non-zero coefficients is an unbiased
        estimate of the degrees of freedom (Zou, Hastie and Tibshirani 2007),
        and the regularised mixture-of-experts literature (Khalili 2010;
        Chamroukhi and Huynh 2019) uses it in the BIC to choose the penalty and
        the number of experts. With an elastic net (``0 < l1_ratio < 1``) the
        count is glmnet's ``df``, the number of non-zero coefficients; the
        ridge part shrinks them further, so it is an upper bound of the
        elastic net's effective degrees of freedom (Zou and Hastie 2005).

        Zeros are exact: coordinate descent's soft-thresholding returns the
        literal ``0.0`` and a full proximal step lands on it exactly; no
        tolerance is applied (see :func:`mixexp._penalties.flat_l1_zeros`).
        The hierarchical gate's nodes are softmax gates and follow the same
        rule; the Gaussian and constant gates have no L1 term.

        References
        ----------
        .. [1] Zou, H., Hastie, T. and Tibshirani, R. (2007). On the "degrees of
           freedom" of the lasso. Annals of Statistics 35(5), 2173-2192.
        .. [2] Khalili, A. (2010). New estimation and feature selection methods
           in mixture-of-experts models. Canadian Journal of Statistics 38(4),
           519-539.
        .. [3] Chamroukhi, F. and Huynh, B.-T. (2019). Regularized maximum
           likelihood estimation and feature selection in mixtures-of-experts
           models. Journal de la Societe Francaise de Statistique 160(1), 57-85.
        .. [4] Zou, H. and Hastie, T. (2005). Regularization and variable
           selection via the elastic net. JRSS B 67(2), 301-320.
        """
        check_is_fitted(self)
        if not isinstance(active_only, bool | np.bool_):
            raise TypeError(f"active_only must be a bool; got {active_only!r}.")
        total = int(self.gate_.n_parameters() + self.experts_.n_parameters())
        if not active_only:
            return total
        return total - n_l1_zeros(self.gate_) - n_l1_zeros(self.experts_)

    def bic(self, X, y):
        """Bayesian information criterion; lower is better.

        ``BIC = -2 log L + p log n`` with the conditional log-likelihood
        ``log L = sum_i log p(y_i | x_i)`` and ``p = n_parameters()``. Lower is
        better, as in scikit-learn and flexmix's ``BIC()``; mixtools reports the
        opposite sign. Under an L1 penalty ``p`` counts the non-zero penalised
        coefficients only (see :meth:`n_parameters`).

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
        ``p = n_parameters()`` (under an L1 penalty, the non-zero penalised
        coefficients only: see :meth:`n_parameters`).

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

    def icl(self, X, y):
        """Integrated completed likelihood criterion; lower is better.

        ``ICL = -2 log L_c + p log n``, where ``log L_c = sum_i log(g_{c_i}(x_i)
        f_{c_i}(y_i | x_i))`` is the classification log-likelihood at the
        maximum a posteriori labels ``c_i = argmax_k tau_ik`` and ``tau_ik`` the
        posterior responsibilities. Since ``g_k f_k = p(y | x) tau_k``, this is
        ``ICL = BIC - 2 sum_i log tau_{i c_i}``: the BIC plus a penalty on
        poorly separated experts (Biernacki, Celeux & Govaert 2000). It is
        flexmix's ``ICL()`` (same sign: lower is better); mclust reports the
        opposite sign. ``ICL >= BIC``, with equality for K = 1 or hard
        posteriors. McLachlan & Peel (2000) replace ``-log tau_{i c_i}`` by the
        entropy ``-sum_k tau_ik log tau_ik``, which is never smaller. ``p =
        n_parameters()`` (under an L1 penalty, the non-zero penalised
        coefficients only).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)

        Returns
        -------
        icl : float

        References
        ----------
        .. [1] Biernacki, C., Celeux, G. and Govaert, G. (2000). Assessing a
           mixture model for clustering with the integrated completed
           likelihood. IEEE TPAMI 22(7), 719-725.
        """
        resp, ll_rows = self._posterior(X, y)
        n = ll_rows.shape[0]
        complete = ll_rows.sum() + np.log(resp.max(axis=1)).sum()
        return float(-2.0 * complete + self.n_parameters() * np.log(n))
