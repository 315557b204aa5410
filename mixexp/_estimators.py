"""The public estimators: thin classes that choose the parts."""

import copy
import warnings
from numbers import Real

import numpy as np
from scipy.special import logsumexp
from sklearn.base import ClassifierMixin, RegressorMixin, _fit_context
from sklearn.utils._available_if import available_if
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.multiclass import check_classification_targets, unique_labels
from sklearn.utils.validation import check_random_state

from ._base import BaseMixtureOfExperts, _standardize
from ._predictive import (
    check_alpha,
    check_n_samples,
    check_probabilities,
    check_target_points,
    draw_categories,
    mixture_log_density,
    mixture_quantiles,
    mixture_variance,
    require,
)
from ._validation import check_numeric_target
from .experts import EXPERT_FAMILIES, MultinomialExperts
from .gates import TopKSoftmaxGate
from .gates._topk import selected_expert_means
from .solvers._online import partial_fit_estimator, supports_partial_fit
from .solvers._squarem import MAX_DECREASE

_FAMILY_METHODS = ["log_prob", "m_step", "mean", "n_parameters"]


#: Parameter descriptions the two estimators share, put into their docstrings at the line
#: ``{shared: NAME}`` (see ``_insert_shared_docs``).
_SHARED_PARAM_DOCS = {
    "solver": """\
solver : {"em", "squarem", "lbfgs", "adam", "sgd"}, default="em"
    How the likelihood is maximised. ``"em"``: the EM algorithm (each
    iteration an E-step and the parts' M-steps; the log-likelihood never
    decreases). ``"squarem"``: EM accelerated by squared extrapolation
    (Varadhan & Roland 2008): two EM steps, a jump along the quadratic
    they span and a stabilising EM step, kept unless it loses more than
    ``squarem_max_decrease`` nats; the same fixed points, stopping rule (``tol`` on one EM
    step) and ``max_iter`` (counting EM steps) as ``"em"``, several times
    fewer steps where EM is slow (overlapping or surplus experts). It
    needs parts with ``get_flat``/``set_flat``. ``"lbfgs"``: scipy's L-BFGS-B on the mean penalised
    observed log-likelihood with its exact gradient (Fisher's identity),
    in an unconstrained parametrisation (log-variances, log degrees of
    freedom, log-shapes) whose bounds keep variances above the floor set
    by ``reg_covar`` and degrees of freedom and shapes in their ranges.
    Both start from the same starts; with ``"lbfgs"`` ``max_iter`` counts
    L-BFGS iterations and ``tol`` is scipy's ``ftol`` (relative change of
    the objective) and ``gtol``. It needs parts with the flat-parameter
    gradient interface (not ``gate="gaussian"``, whose EM maximises the
    joint likelihood of (x, y)), and a differentiable penalty: an L1 term
    (``gate_l1_ratio`` or ``expert_l1_ratio`` > 0 with a positive penalty)
    raises a ValueError. ``"adam"`` and ``"sgd"``: minibatch gradient
    ascent on the same objective (Adam, or SGD with momentum 0.9), one
    batch's gradient estimating the mean's; ``max_iter`` then counts
    epochs (passes over the rows), and the run stops when the score
    (the mean penalised log-likelihood, or the held-out one with
    ``early_stopping``) has not risen by more than ``tol`` for
    ``n_iter_no_change`` epochs. Same requirements as ``"lbfgs"``. See
    the user guide's "Solvers" page.
""",
    "squarem_max_decrease": """\
squarem_max_decrease : float, default=1.0
    With ``solver="squarem"``: an extrapolation is kept when, after its
    stabilising EM step, the total penalised log-likelihood has lost at
    most this many nats against the cycle's start. The default is the R
    package ``SQUAREM``'s (``objfn.inc = 1``): on over-fitted models,
    whose flat likelihoods make extrapolations lose a little, it rejects
    far fewer of them than 0 and reached the same or a higher maximum up
    to twice as fast in the benchmark (see the user guide's "Solvers"
    page). 0 keeps every accepted point at least as good as its cycle's
    start, as EM's steps are. Ignored by the other solvers.
""",
}


def _insert_shared_docs(cls):
    """Put ``_SHARED_PARAM_DOCS[NAME]`` at each ``{shared: NAME}`` line of ``cls.__doc__``, indented as it."""
    out = []
    for line in cls.__doc__.split("\n"):
        stripped = line.strip()
        if stripped.startswith("{shared: ") and stripped.endswith("}"):
            indent = line[: len(line) - len(line.lstrip())]
            text = _SHARED_PARAM_DOCS[stripped[len("{shared: ") : -1]].rstrip("\n")
            out += [indent + part if part else "" for part in text.split("\n")]
        else:
            out.append(line)
    cls.__doc__ = "\n".join(out)
    return cls


@_insert_shared_docs
class MixtureOfExpertsRegressor(RegressorMixin, BaseMixtureOfExperts):
    """Mixture of Gaussian linear regression experts with a softmax gate.

    The model is the conditional density

    .. math::

        p(y \\mid x) = \\sum_{k=1}^{K} g_k(x)\\,
        \\mathcal{N}\\bigl(y;\\ \\beta_{k0} + x_e^\\top \\beta_k,\\ \\sigma_k^2\\bigr),
        \\qquad
        g_k(x) = \\frac{\\exp(w_{k0} + x_g^\\top w_k)}{\\sum_j \\exp(w_{j0} + x_g^\\top w_j)},

    where ``x_g`` are the columns chosen by ``gate_features`` and ``x_e`` those
    chosen by ``expert_features``. The fit runs on standardised columns and a
    standardised y (coefficients are reported on the original scale), so it
    does not depend on units or offsets. It is fitted by EM: the E-step computes the
    posterior responsibility of each expert for each sample (a fused Numba
    kernel), the M-step fits each expert by weighted least squares and the gate
    by Newton steps with step halving on the weighted multinomial likelihood.
    The observed (penalised) log-likelihood never decreases.

    Parameters
    ----------
    n_experts : int, default=2
        Number of experts K.
    expert : str, ExpertFamily subclass or instance, default="gaussian"
        The experts' family: ``"gaussian"`` (linear regression with Gaussian
        noise) or ``"student_t"`` (robust linear regression with Student-t
        noise and per-expert degrees of freedom,
        :class:`~mixexp.experts.StudentTExperts`), ``"poisson"`` (counts,
        log link, :class:`~mixexp.experts.PoissonExperts`) or ``"gamma"``
        (positive y, log link, per-expert dispersion,
        :class:`~mixexp.experts.GammaExperts`); for the last two the experts'
        means are ``exp(beta_k0 + x_e . beta_k)`` and y is not standardised.
        A class implementing
        :class:`mixexp.experts.ExpertFamily` is called as
        ``expert(n_experts, reg_covar=reg_covar)``; a configured instance is
        copied for each fit.
    gate : {"softmax", "constant", "gaussian", "hierarchical"}, default="softmax"
        ``"softmax"``: mixing weights depend on x through a multinomial
        logistic model. ``"constant"``: mixing proportions that do not depend
        on x, i.e. the finite mixture of regressions (mixtools' ``regmixEM``,
        flexmix without a concomitant model); ``gate_features`` is ignored.
        ``"gaussian"``: the normalised Gaussian gate of Xu, Jordan & Hinton
        (1995), ``g_k(x) = pi_k N(x; mu_k, Sigma_k) / sum_j pi_j N(x; mu_j,
        Sigma_j)`` on the gate features; the model is then one of the joint
        density of (x, y) and EM maximises the joint likelihood (see
        ``lower_bound_`` and :doc:`/user_guide/gates`). ``"hierarchical"``:
        the hierarchical mixture of experts of Jordan & Jacobs (1994), a
        complete tree of softmax gates with ``gate_branching`` children per
        node whose ``n_experts = gate_branching**gate_depth`` leaves are the
        experts (see ``gate_tree_``).
    top_k : int or None, default=None
        Top-K sparse gating (``gate="softmax"`` only): at each x only the
        ``top_k`` experts with the largest gate logits get weight, the
        softmax renormalised over them, and the others get exactly zero
        (Nguyen, Akbarian, Yan & Ho, ICLR 2024). Fitted by generalised EM
        whose gate step never decreases the objective, and prediction
        evaluates only each row's selected experts; see
        :doc:`/user_guide/sparse_gating`. None (or ``n_experts``) is the
        dense softmax gate. Must be between 1 and ``n_experts``.
    gate_features : None, int, str, array-like of int or str, or boolean mask, default=None
        Columns of X that feed the gate (flexmix's concomitant variables).
        ``None`` uses every column; an empty list gives a gate with only
        intercepts, i.e. constant mixing weights.
    expert_features : None, int, str, array-like of int or str, or boolean mask, default=None
        Columns of X that feed the experts; ``None`` uses every column.
    fit_intercept : bool, default=True
        Whether the experts have intercepts. The gate always has intercepts.
    max_iter : int, default=500
        Maximum number of EM iterations per start.
    tol : float, default=1e-6
        EM stops when the mean (per-sample) log-likelihood changes by less than
        ``tol`` between iterations.
    n_init : int or "auto", default="auto"
        Number of starts; the fit with the highest log-likelihood is kept.
        ``"auto"``: 12 for ``init="auto"``, 10 for ``"random"`` and
        ``"random_subsets"``, 1 for ``"kmeans"`` and a given array.
    init : {"auto", "kmeans", "random", "random_subsets"} or array-like of shape \
(n_samples, n_experts), default="auto"
        How each start is made. ``"kmeans"`` clusters the standardised
        ``(X, y)`` (``(X, log(y + 0.5))`` for ``"poisson"``, ``(X, log y)`` for
        ``"gamma"``) and starts from the hard assignment; ``"random"`` starts from
        uniformly random responsibilities; ``"random_subsets"`` fits each expert
        exactly to a few random rows (its number of coefficients plus one),
        through the family's own M-step, and assigns every row to the expert
        that explains it best: it looks at the regression structure, so it can
        find a small expert that k-means, which sees only where the rows lie,
        misses. ``"auto"`` makes the first start by k-means and the others by
        random subsets, and screens them (see ``init_max_iter``): on 120
        problems with an expert of 3-5% of the rows it reached the true
        parameters' likelihood on 118 where one k-means start did on 98, for
        under three k-means fits' time (see the user guide's page on starts).
        An array gives the starting responsibilities (rows are normalised;
        only one start is run).
    init_max_iter : int, None or "auto", default="auto"
        Screening of starts (short-run EM; Biernacki, Celeux & Govaert 2003):
        with several starts, every start runs only ``init_max_iter`` EM
        iterations and only the best of them is run on to convergence. With
        more than 4000 rows the screening runs on a random subsample of 4000
        rows and the 3 best screened starts each run to convergence on all
        rows (``n_iter_`` and ``lower_bounds_`` then describe the best of those
        runs). None runs every start to convergence. ``"auto"``: 8 for
        ``init="auto"``, else None.
    reg_covar : float, default=1e-6
        Lower bound on each expert's noise variance, relative to the variance
        of y (absolute when y is constant). Keeps the likelihood bounded.
        With ``gate="gaussian"`` it is also the floor on the gate's
        covariances (on the standardised gate columns).
    gate_penalty : float, default=1e-3
        L2 penalty on the gate's slope coefficients (not its intercepts),
        ``gate_penalty / 2 * ||w||^2`` subtracted from the total log-likelihood,
        where ``w`` are the slopes of the standardised covariates (columns
        centred and scaled to weighted mean 0 and standard deviation 1), so the
        penalty does not depend on units. It keeps the gate finite when the
        experts' regions are separable. Set to 0 for the plain
        maximum-likelihood estimate. Not used by ``gate="gaussian"``. With
        ``gate_l1_ratio > 0`` it is the strength ``alpha`` of an elastic net.
    gate_l1_ratio : float, default=0.0
        Elastic-net mixing of the gate penalty (scikit-learn's ``ElasticNet``
        naming): the penalty is ``gate_penalty * (gate_l1_ratio * ||w||_1 +
        (1 - gate_l1_ratio) / 2 * ||w||^2)``. 0 is the L2 penalty above, 1 the
        lasso, which sets gate slopes exactly to zero (covariate selection in
        the gate); the gate step is then a proximal Newton step. Softmax gate
        only (not with ``top_k`` sparse gating). See :doc:`/user_guide/penalties`.
    expert_penalty : float, default=0.0
        Strength ``alpha`` of an elastic-net penalty ``alpha * (expert_l1_ratio
        * ||b_k||_1 + (1 - expert_l1_ratio) / 2 * ||b_k||^2)`` on every expert's
        slopes (not the intercepts), summed over the experts and subtracted
        from the total log-likelihood, on the standardised scale; for
        ``"gaussian"`` and ``"student_t"`` the slopes are divided by the
        expert's noise standard deviation (scale), ``b_k / sigma_k``, which
        makes the penalty free of y's units. 0 (the default) fits the
        experts by maximum likelihood. Gaussian and
        Student-t experts then take a weighted elastic-net step (coordinate
        descent) at the current noise scale followed by the scale; Poisson and
        Gamma experts proximal Newton steps. See :doc:`/user_guide/penalties`.
    expert_l1_ratio : float, default=0.0
        Elastic-net mixing of ``expert_penalty`` in [0, 1] (0: ridge, 1: lasso).
    gate_covariance_type : {"full", "diag", "spherical"}, default="full"
        Covariance structure of the Gaussian gate's components (used only
        with ``gate="gaussian"``), on the standardised gate columns. Their
        eigenvalues (``"full"``) or variances are kept at least
        ``reg_covar``.
    gate_depth : int or None, default=None
        Depth of the tree of ``gate="hierarchical"`` (1 is the flat softmax
        gate); ``None`` infers it from ``n_experts = gate_branching**depth``.
        A ValueError when ``n_experts`` is not ``gate_branching**gate_depth``.
        Ignored by the other gates.
    gate_branching : int, default=2
        Children per internal node of ``gate="hierarchical"`` (>= 2).
        Ignored by the other gates.
    {shared: solver}
    batch_size : int or "auto", default="auto"
        Rows per minibatch (``solver="adam"`` or ``"sgd"``); "auto" is
        ``min(256, n_samples)``.
    learning_rate : float, default=1e-2
        Step size of the minibatch solvers (Adam's alpha, SGD's rate), on the
        internal standardised scale.
    learning_rate_schedule : {"constant", "invscaling", "adaptive"}, default="constant"
        Minibatch solvers: ``"constant"``; ``"invscaling"``, ``learning_rate
        / sqrt(1 + epoch)``; ``"adaptive"``, constant until the score stalls
        for ``n_iter_no_change`` epochs, then divided by 5 (stopping once
        below ``1e-4 * learning_rate``).
    early_stopping : bool, default=False
        Minibatch solvers only (a ValueError otherwise): hold out
        ``validation_fraction`` of the rows and stop when their mean
        log-likelihood has not risen by more than ``tol`` for
        ``n_iter_no_change`` epochs (the final parameters are the last
        epoch's).
    validation_fraction : float, default=0.1
        Fraction of the rows held out by ``early_stopping``, in (0, 1).
    n_iter_no_change : int, default=10
        Epochs without improvement before the minibatch solvers stop (or
        lower the rate, ``"adaptive"``).
    shuffle : bool, default=True
        Minibatch solvers: shuffle the rows before every epoch
        (``random_state`` draws the shuffles; an int gives the same fit
        every time).
    online_alpha : float, default=0.6
        Exponent of the step sizes ``gamma_t = t^(-online_alpha)`` of online
        EM (:meth:`partial_fit`), in (1/2, 1]; 1 averages every batch
        equally, smaller values forget the early batches faster.
    {shared: squarem_max_decrease}
    record_history : bool, default=False
        If True, ``history_`` holds the trajectory of the best start: the flat
        parameter vector and the mean log-likelihood at the start and after
        each iteration (for convergence-rate studies).
    callback : callable or None, default=None
        Called as ``callback(estimator)`` after each iteration of the final
        run (the single start, or the run of the best start after screening
        (of each of the 3 best with screening on a subsample of large data),
        and any refit that re-seeds a vanished expert), with ``gate_`` and
        ``experts_`` (and the fitted attributes computed from them, such as
        ``gate_coef_``) at the current parameters. It must
        not modify the estimator; raising ``StopIteration`` stops the fit
        there (``converged_`` is then False, without a warning). Several
        starts run to convergence (``init_max_iter=None``) have no final
        run, and a callback then raises a ValueError.
    n_jobs : int or None, default=None
        Number of joblib worker processes running the starts in parallel
        (None: 1, -1: all cores); each worker gets its share of the cores for
        the Numba kernels. Every start has its own seed drawn from
        ``random_state`` and the kernels' results do not depend on the number
        of threads, so the fit is the same whatever ``n_jobs`` is. Worth it
        when a start takes seconds (worker start-up costs about a second).
    warm_start : bool, default=False
        If True, a refit starts from the previous solution (one start).
    random_state : int, RandomState instance or None, default=None
        Seed of the initialisation.
    verbose : int, default=0
        1 prints one line per start, 2 one line per iteration.

    Attributes
    ----------
    gate_coef_ : ndarray of shape (n_experts, 1 + n_gate_features)
        Gate coefficients, intercept in column 0. Row 0 (the reference expert)
        is fixed at zero: the gate is identifiable only up to a common shift.
        Not defined for ``gate="gaussian"`` or ``gate="hierarchical"`` (an
        AttributeError; see ``gate_tree_``).
    gate_tree_ : list of dict
        The tree of ``gate="hierarchical"``, one dict per internal node
        (breadth first) with its position, depth, children, the experts
        below it and its softmax coefficients ``"coef"`` (branching, 1 +
        n_gate_features) on the raw scale, row 0 fixed at zero. An
        AttributeError for the other gates.
    gate_weights_ : ndarray of shape (n_experts,)
        Mixing proportions pi_k of the Gaussian gate (``gate="gaussian"``
        only).
    gate_means_ : ndarray of shape (n_experts, n_gate_features)
        Means mu_k of the Gaussian gate, on the raw gate features
        (``gate="gaussian"`` only).
    gate_covariances_ : ndarray
        Covariances Sigma_k of the Gaussian gate on the raw gate features
        (``gate="gaussian"`` only): (n_experts, n_gate_features,
        n_gate_features) for ``gate_covariance_type="full"``, the variances
        (n_experts, n_gate_features) for ``"diag"`` and ``"spherical"``
        (spherical on the standardised columns is diagonal on the raw scale).
    expert_coef_ : ndarray of shape (n_experts, 1 + n_expert_features)
        Expert regression coefficients, intercept in column 0 (zero when
        ``fit_intercept=False``).
    noise_variance_ : ndarray of shape (n_experts,)
        Noise variance sigma_k^2 of each expert (for ``expert="student_t"``
        the squared scale sigma_k^2, not the variance).
    df_ : ndarray of shape (n_experts,)
        Degrees of freedom nu_k of each expert (``expert="student_t"`` only).
    dispersion_ : ndarray of shape (n_experts,)
        Dispersion 1 / alpha_k of each expert, alpha_k its Gamma shape
        (``expert="gamma"`` only): Var[y | x, k] = dispersion_k mu_k(x)^2.
    gate_ : SoftmaxGate, ConstantGate, GaussianGate or HierarchicalGate
        The fitted gate part (parameters on the standardised scale).
    experts_ : ExpertFamily
        The fitted expert part (parameters on the standardised scale).
    gate_feature_indices_ : ndarray of int
        Columns of X used by the gate.
    expert_feature_indices_ : ndarray of int
        Columns of X used by the experts.
    converged_ : bool
        Whether the best start converged.
    n_iter_ : int
        EM iterations of the best start.
    lower_bound_ : float
        Mean penalised log-likelihood ``(sum_i w_i log p(y_i|x_i) - penalty) /
        sum_i w_i`` at the fitted parameters; with ``gate_penalty=0`` it is the
        mean conditional log-likelihood. With ``gate="gaussian"`` it is the
        mean *joint* log-likelihood ``sum_i w_i log p(x_i, y_i) / sum_i w_i``
        of the gate features and y, on their raw scale, which EM maximises
        for that gate (``score_samples`` stays conditional).
    lower_bounds_ : ndarray of shape (`n_iter_` + 1,)
        ``lower_bound_`` after each EM iteration of the best start (first entry
        at the initial parameters). Non-decreasing under EM; per epoch, and
        noisy, under ``solver="adam"`` or ``"sgd"``; :meth:`partial_fit`
        appends its batches' prequential scores.
    validation_scores_ : ndarray of shape (n_epochs + 1,)
        Only with ``early_stopping=True`` (``solver="adam"`` or ``"sgd"``):
        the mean log-likelihood of the held-out rows at the start and after
        each epoch of the final run (with a single start, ``n_epochs`` is
        ``n_iter_``).
    history_ : dict
        Only with ``record_history=True``: ``"theta"``, an array of shape
        (`n_iter_` + 1, n_params) of the flat parameters (internal
        standardised scale, unconstrained parametrisation, as
        :func:`mixexp.solvers.get_flat_params`) at each entry of
        ``lower_bounds_``, and ``"log_likelihood"``, equal to
        ``lower_bounds_``. The last row is the fitted parameters.
    n_features_in_ : int
        Number of features seen in fit.
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen in fit, when X has string column names.

    See Also
    --------
    sklearn.mixture.GaussianMixture : unconditional Gaussian mixtures.

    Notes
    -----
    EM for mixtures of experts is due to Jordan & Jacobs (1994). The gate's
    M-step has no closed form; one Newton step per iteration, accepted only
    when it raises the gate's objective, makes each iteration a generalised EM
    step, which is enough for monotone convergence.

    References
    ----------
    .. [1] Jordan, M. I. and Jacobs, R. A. (1994). Hierarchical mixtures of
       experts and the EM algorithm. Neural Computation, 6(2), 181-214.
    .. [2] Gruen, B. and Leisch, F. (2008). FlexMix version 2: finite mixtures
       with concomitant variables and varying and constant parameters.
       Journal of Statistical Software, 28(4).

    Examples
    --------
    >>> import numpy as np
    >>> from mixexp import MixtureOfExpertsRegressor
    >>> rng = np.random.default_rng(0)
    >>> X = rng.uniform(-1, 1, size=(500, 1))
    >>> y = np.where(X[:, 0] < 0, 1 + 2 * X[:, 0], -1 - 2 * X[:, 0])
    >>> y = y + 0.1 * rng.standard_normal(500)
    >>> moe = MixtureOfExpertsRegressor(n_experts=2, random_state=0).fit(X, y)
    >>> moe.expert_coef_.round(1)[np.argsort(moe.expert_coef_[:, 1])]
    array([[-1., -2.],
           [ 1.,  2.]])
    >>> moe.predict(np.array([[-0.5], [0.5]])).round(1) + 0.0
    array([ 0., -2.])
    """

    _parameter_constraints: dict = {
        **BaseMixtureOfExperts._parameter_constraints,
        "expert": [StrOptions(set(EXPERT_FAMILIES)), HasMethods(_FAMILY_METHODS)],
        "reg_covar": [Interval(Real, 0, None, closed="left")],
        "expert_penalty": [Interval(Real, 0, None, closed="left")],
        "expert_l1_ratio": [Interval(Real, 0, 1, closed="both")],
    }

    def __init__(
        self,
        n_experts=2,
        *,
        expert="gaussian",
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
        reg_covar=1e-6,
        gate_penalty=1e-3,
        gate_l1_ratio=0.0,
        expert_penalty=0.0,
        expert_l1_ratio=0.0,
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
        self.expert = expert
        self.reg_covar = reg_covar
        self.expert_penalty = expert_penalty
        self.expert_l1_ratio = expert_l1_ratio
        super().__init__(
            n_experts=n_experts,
            gate=gate,
            top_k=top_k,
            gate_features=gate_features,
            expert_features=expert_features,
            fit_intercept=fit_intercept,
            max_iter=max_iter,
            tol=tol,
            n_init=n_init,
            init=init,
            init_max_iter=init_max_iter,
            gate_penalty=gate_penalty,
            gate_l1_ratio=gate_l1_ratio,
            gate_covariance_type=gate_covariance_type,
            gate_depth=gate_depth,
            gate_branching=gate_branching,
            solver=solver,
            batch_size=batch_size,
            learning_rate=learning_rate,
            learning_rate_schedule=learning_rate_schedule,
            early_stopping=early_stopping,
            validation_fraction=validation_fraction,
            n_iter_no_change=n_iter_no_change,
            shuffle=shuffle,
            online_alpha=online_alpha,
            squarem_max_decrease=squarem_max_decrease,
            record_history=record_history,
            callback=callback,
            n_jobs=n_jobs,
            warm_start=warm_start,
            random_state=random_state,
            verbose=verbose,
        )

    def _make_experts(self):
        expert = self.expert
        # the penalty reaches the family only when there is one: unpenalised fits build
        # the families exactly as before expert_penalty existed
        penalty = {}
        if self.expert_penalty:
            penalty = {"penalty": self.expert_penalty, "l1_ratio": self.expert_l1_ratio,
                       "intercept": self.fit_intercept}  # fmt: skip
        if isinstance(expert, str):
            return EXPERT_FAMILIES[expert](self.n_experts, reg_covar=self.reg_covar, **penalty)
        if isinstance(expert, type):
            try:
                return expert(self.n_experts, reg_covar=self.reg_covar, **penalty)
            except TypeError as exc:
                if not penalty:
                    raise
                raise ValueError(
                    f"expert_penalty > 0 needs an expert family that accepts penalty=, l1_ratio= and "
                    f"intercept= keywords; {expert.__name__} does not ({exc})."
                ) from exc
        family = copy.deepcopy(expert)  # a configured instance: a fresh copy per fit
        family.n_experts = self.n_experts
        if penalty:
            if not hasattr(family, "penalty"):
                raise ValueError(
                    f"expert_penalty > 0 needs an expert family with a penalty; "
                    f"{type(family).__name__} has no penalty attribute."
                )
            for key, value in penalty.items():
                setattr(family, key, value)
        return family

    def _check_target(self, y, fitting):
        y = check_numeric_target(y, type(self).__name__)
        if not np.all(np.isfinite(y)):
            raise ValueError("y contains NaN or infinity.")
        family = self.experts_ if not fitting and hasattr(self, "experts_") else self._make_experts()
        y = family.check_target(y)
        if fitting and y.size > 1 and np.ptp(y) == 0:
            warnings.warn(
                "y is constant: every expert fits it exactly and the noise variances "
                "sit at the floor set by reg_covar.",
                UserWarning,
                stacklevel=4,
            )
        return y

    def _cluster_data(self, X, y, sample_weight):
        # families with a link (Poisson, Gamma) cluster y on the scale of their linear predictor
        to_link = getattr(self._make_experts(), "cluster_target", None)
        return super()._cluster_data(X, y if to_link is None else to_link(y), sample_weight)

    @available_if(supports_partial_fit)
    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y, sample_weight=None):
        """Update the model with one batch of rows: online EM (Cappé & Moulines 2009).

        The first call (on an unfitted estimator) fits the first batch as
        :meth:`fit` does (starts, solver, ``max_iter``); its standardisation
        of the columns and of y is kept for the whole stream. Each later call
        is one online EM step: the E-step on the batch at the current
        parameters, running averages with step ``gamma_t =
        t^(-online_alpha)`` of the experts' sufficient statistics (Gaussian:
        the weighted moments; the other families and the softmax gate: their
        batch M-step damped by ``gamma_t``) and of the constant gate's
        proportions, then the M-step. A fit counts as ``max(1, W_fit /
        W_batch)`` batches, so calling partial_fit on a fitted model
        continues from the fit; :meth:`fit` restarts. Memory is O(batch).
        ``gate="gaussian"`` (a model of x) is not supported.

        After an online step ``lower_bound_`` is the batch's mean
        log-likelihood at the parameters before the step (a prequential
        score, on y's scale), appended to ``lower_bounds_``, and ``n_iter_``
        counts one more iteration.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            A batch of covariates (the same columns in every call).
        y : array-like of shape (n_samples,)
            Its targets.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weights of the batch's rows.

        Returns
        -------
        self : object
            The updated estimator.

        Notes
        -----
        See :mod:`mixexp.solvers._online` and the user guide's "Solvers"
        page for the update of each part and why it converges.
        """
        return partial_fit_estimator(self, X, y, sample_weight)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # Poisson and Gamma experts need y >= 0 (counts) and y > 0
        kind = self.expert if isinstance(self.expert, str) else getattr(self.expert, "kind", None)
        tags.target_tags.positive_only = kind in ("poisson", "gamma")
        return tags

    # -- fitted parameters -------------------------------------------------------
    @property
    def _raw(self):
        return self._raw_parts()

    @property
    def gate_coef_(self):
        """Gate coefficients, (n_experts, 1 + n_gate_features), intercept in column 0.

        Row 0 (the reference expert) is fixed at zero: the softmax gate is
        identifiable only up to a common shift of its rows.
        """
        return self._gate_param("coef", "gate_coef_")

    @property
    def expert_coef_(self):
        """Expert coefficients, (n_experts, 1 + n_expert_features), intercept in column 0.

        Column 0 is zero when ``fit_intercept=False``.
        """
        coef = self._raw[1]["coef"]
        if self.fit_intercept:
            return coef
        return np.hstack([np.zeros((coef.shape[0], 1)), coef])

    def _family_param(self, key, what):
        raw = self._raw[1]
        if key not in raw:
            raise AttributeError(f"{what} is not a parameter of expert={self.expert!r}")
        return raw[key]

    @property
    def noise_variance_(self):
        """Noise variance of each expert, (n_experts,) (Gaussian experts; for
        Student-t experts the squared scale)."""
        return self._family_param("var", "noise_variance_")

    @property
    def dispersion_(self):
        """Dispersion 1 / alpha_k of each expert, (n_experts,) (Gamma experts only)."""
        return self._family_param("dispersion", "dispersion_")

    @property
    def df_(self):
        """Degrees of freedom of each expert, (n_experts,) (Student-t experts only)."""
        return self._family_param("df", "df_")

    # -- prediction ----------------------------------------------------------------
    def predict_experts(self, X):
        """Each expert's mean prediction.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        means : ndarray of shape (n_samples, n_experts)
        """
        X = self._validate_X(X)
        _, XeT = self._design(X)
        sc = self._scaling
        return sc.y_mean + sc.y_scale * self.experts_.mean(XeT).T

    def predict(self, X):
        """Predicted mean E[y | x] = sum_k g_k(x) mu_k(x).

        With ``top_k`` sparse gating the sum runs over each row's ``top_k``
        selected experts only (the others have weight exactly zero), and only
        those experts' means are evaluated at that row.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
        """
        X = self._validate_X(X)
        XgT, XeT = self._design(X)
        sc = self._scaling
        if isinstance(self.gate_, TopKSoftmaxGate):
            active = self.gate_.active_experts(XgT)
            gate = np.take_along_axis(self.gate_.evaluate(XgT).prob, active, axis=0)
            means = selected_expert_means(self.experts_, XeT, active)
            return sc.y_mean + sc.y_scale * np.einsum("jn,jn->n", gate, means)
        gate = self.gate_.evaluate(XgT).prob
        return sc.y_mean + sc.y_scale * np.einsum("kn,kn->n", gate, self.experts_.mean(XeT))

    # -- predictive distribution ---------------------------------------------------
    def _predictive_parts(self, X):
        """Gate probabilities and log-probabilities (K, n) and the expert design of X."""
        X = self._validate_X(X)
        XgT, XeT = self._design(X)
        gate = self.gate_.evaluate(XgT)
        return gate.prob, gate.log, XeT

    def predict_variance(self, X):
        """Predictive variance Var[y | x] by the law of total variance.

        ``Var[y | x] = sum_k g_k(x) v_k(x) + sum_k g_k(x) (mu_k(x) - mu(x))^2``,
        with ``mu(x) = predict(x)`` and ``v_k`` the variance of expert k:
        ``sigma_k^2`` (Gaussian), ``sigma_k^2 nu_k / (nu_k - 2)`` (Student-t;
        ``inf`` when nu_k <= 2), ``mu_k`` (Poisson), ``mu_k^2 / alpha_k``
        (Gamma).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        variance : ndarray of shape (n_samples,)
            ``inf`` where an expert of positive weight has infinite variance.
        """
        prob, _, XeT = self._predictive_parts(X)
        experts = self.experts_
        var = require(experts, "variance", "predict_variance")(XeT)
        return self._scaling.y_scale**2 * mixture_variance(prob, experts.mean(XeT), var)

    def predict_std(self, X):
        """Predictive standard deviation, the square root of :meth:`predict_variance`.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        std : ndarray of shape (n_samples,)
        """
        return np.sqrt(self.predict_variance(X))

    def predict_cdf(self, X, y):
        """Predictive distribution function P(Y <= y | x) = sum_k g_k(x) F_k(y | x).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,), (n_samples, n_points) or (1, n_points)
            Values at which to evaluate it: one per row of X, ``n_points`` per
            row, or the same ``n_points`` for every row (a grid). Any real
            values (``-inf`` and ``inf`` included); not NaN.

        Returns
        -------
        cdf : ndarray of shape (n_samples,) or (n_samples, n_points)
            As y (with a grid broadcast to every row).
        """
        prob, _, XeT = self._predictive_parts(X)
        points, flat = check_target_points(y, XeT.shape[1])
        m = points.shape[1]
        cdf = require(self.experts_, "cdf", "predict_cdf")
        y_int = np.ravel(self._scaled_target(points))
        out = np.einsum("kn,kn->n", np.repeat(prob, m, axis=1), cdf(np.repeat(XeT, m, axis=1), y_int))
        out = np.clip(out, 0.0, 1.0).reshape(points.shape)
        return out[:, 0] if flat else out

    def predict_density(self, X, y):
        """Predictive density of y given x, p(y | x) = sum_k g_k(x) f_k(y | x).

        For ``expert="poisson"`` it is the probability mass function (zero at
        non-integer and negative y). ``score_samples`` gives its logarithm at
        one y per row.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,), (n_samples, n_points) or (1, n_points)
            One value per row of X (the density of each row's own y), or
            ``n_points`` values per row, or a grid of ``n_points`` values shared
            by every row (e.g. ``grid[None, :]``, for plotting the conditional
            densities). Not NaN.

        Returns
        -------
        density : ndarray of shape (n_samples,) or (n_samples, n_points)
            As y (with a grid broadcast to every row); zero outside the
            experts' support.

        Examples
        --------
        >>> import numpy as np
        >>> from mixexp import MixtureOfExpertsRegressor
        >>> rng = np.random.default_rng(0)
        >>> X = rng.uniform(-1, 1, size=(500, 1))
        >>> y = np.where(X[:, 0] < 0, 1 + 2 * X[:, 0], -1 - 2 * X[:, 0])
        >>> moe = MixtureOfExpertsRegressor(random_state=0).fit(X, y + 0.1 * rng.standard_normal(500))
        >>> grid = np.linspace(-4, 4, 801)
        >>> dens = moe.predict_density(np.array([[-0.5], [0.5]]), grid[None, :])
        >>> dens.shape
        (2, 801)
        >>> (dens.sum(axis=1) * (grid[1] - grid[0])).round(3)
        array([1., 1.])
        """
        _, log_gate, XeT = self._predictive_parts(X)
        points, flat = check_target_points(y, XeT.shape[1])
        m = points.shape[1]
        experts = self.experts_
        sc = self._scaling
        y_int = np.ravel(self._scaled_target(points))
        log_dens = mixture_log_density(
            experts, np.repeat(XeT, m, axis=1), np.repeat(log_gate, m, axis=1), y_int
        )
        out = (np.exp(log_dens) / sc.y_scale).reshape(points.shape)
        return out[:, 0] if flat else out

    def predict_quantiles(self, X, q):
        """Quantiles of the predictive distribution of y given x.

        The q-quantile is the smallest y with ``P(Y <= y | x) >= q``: the root
        of ``sum_k g_k(x) F_k(y | x) = q`` for continuous experts (to about
        1e-12 relative), the smallest such integer for Poisson experts. It is
        bracketed by the experts' own q-quantiles and found by safeguarded
        Newton steps (bisection on the integers for Poisson), on all rows at
        once.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        q : float or array-like of shape (n_quantiles,)
            Probabilities in [0, 1]; 0 and 1 give the ends of the support
            (``-inf``/``inf`` for Gaussian and Student-t experts).

        Returns
        -------
        quantiles : ndarray of shape (n_samples,) or (n_samples, n_quantiles)
            ``(n_samples,)`` for a scalar q.

        Examples
        --------
        >>> import numpy as np
        >>> from mixexp import MixtureOfExpertsRegressor
        >>> rng = np.random.default_rng(0)
        >>> X = rng.uniform(-1, 1, size=(500, 1))
        >>> y = np.where(X[:, 0] < 0, 1 + 2 * X[:, 0], -1 - 2 * X[:, 0])
        >>> moe = MixtureOfExpertsRegressor(random_state=0).fit(X, y + 0.1 * rng.standard_normal(500))
        >>> moe.predict_quantiles(np.array([[-0.5], [0.5]]), [0.05, 0.5, 0.95]).round(1) + 0.0
        array([[-0.2,  0. ,  0.1],
               [-2.2, -2. , -1.8]])
        """
        q = check_probabilities(q)
        prob, _, XeT = self._predictive_parts(X)
        experts = self.experts_
        for method in ("ppf", "cdf", "log_prob"):
            require(experts, method, "predict_quantiles")
        nq, n = q.size, XeT.shape[1]
        q_rows = np.tile(q.ravel(), n)
        y_int = mixture_quantiles(experts, np.repeat(XeT, nq, axis=1), np.repeat(prob, nq, axis=1), q_rows)
        sc = self._scaling
        out = (sc.y_mean + sc.y_scale * y_int).reshape(n, nq)
        return out[:, 0] if q.ndim == 0 else out

    def predict_interval(self, X, alpha=0.05):
        """Equal-tailed predictive interval of y given x, with coverage 1 - alpha.

        The interval runs from the alpha/2 to the 1 - alpha/2 quantile of the
        predictive distribution (:meth:`predict_quantiles`). It describes the
        spread of a new y at x under the fitted model; it does not include the
        uncertainty of the fitted parameters.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        alpha : float, default=0.05
            Total probability outside the interval, in (0, 1).

        Returns
        -------
        interval : ndarray of shape (n_samples, 2)
            Lower and upper ends.
        """
        alpha = check_alpha(alpha)
        return self.predict_quantiles(X, [0.5 * alpha, 1.0 - 0.5 * alpha])

    def sample_y(self, X, n_samples=1, random_state=None):
        """Draw y from the predictive distribution p(y | x) at each row of X.

        Each draw picks an expert from the gate probabilities g(x), then y from
        that expert. The output follows
        :meth:`sklearn.gaussian_process.GaussianProcessRegressor.sample_y`.

        Parameters
        ----------
        X : array-like of shape (n_samples_X, n_features)
        n_samples : int, default=1
            Number of draws per row.
        random_state : int, RandomState instance or None, default=None
            Seed of the draws; the same seed gives the same draws.

        Returns
        -------
        y_samples : ndarray of shape (n_samples_X, n_samples)
            Independent draws, ``n_samples`` per row of X.
        """
        n_samples = check_n_samples(n_samples)
        rng = check_random_state(random_state)
        prob, _, XeT = self._predictive_parts(X)
        experts = self.experts_
        sample = require(experts, "sample", "sample_y")
        chosen = draw_categories(prob.T, n_samples, rng)
        sc = self._scaling
        return sc.y_mean + sc.y_scale * sample(XeT, chosen, rng)


def _encode_labels(y, classes):
    """Indices of the labels ``y`` in ``classes`` (sorted); ValueError naming unseen labels."""
    y = np.asarray(y)
    if y.dtype.kind in "biuf" and classes.dtype.kind in "biuf":
        codes = np.clip(np.searchsorted(classes, y), 0, classes.size - 1)
        found = classes[codes] == y
    else:
        lookup = {label: code for code, label in enumerate(classes.tolist())}
        codes = np.array([lookup.get(label, -1) for label in y.tolist()], dtype=np.int64)
        found = codes >= 0
    if not found.all():
        unseen = list(dict.fromkeys(y[~found].tolist()))
        raise ValueError(
            f"y contains labels not seen in fit: {unseen[:10]}; the classes are {classes.tolist()}."
        )
    return codes.astype(np.float64)


@_insert_shared_docs
class MixtureOfExpertsClassifier(ClassifierMixin, BaseMixtureOfExperts):
    """Mixture of multinomial logistic regression experts with a softmax gate.

    The model is the conditional class distribution

    .. math::

        P(y = c \\mid x) = \\sum_{k=1}^{K} g_k(x)\\, p_k(c \\mid x),
        \\qquad
        p_k(c \\mid x) = \\frac{\\exp(b_{kc0} + x_e^\\top b_{kc})}
                              {\\sum_{j=1}^{C} \\exp(b_{kj0} + x_e^\\top b_{kj})},
        \\qquad
        g_k(x) = \\frac{\\exp(w_{k0} + x_g^\\top w_k)}{\\sum_j \\exp(w_{j0} + x_g^\\top w_j)},

    over the C classes of y (binary y: C = 2, logistic regression experts),
    where ``x_g`` are the columns chosen by ``gate_features`` and ``x_e`` those
    chosen by ``expert_features``. The first class (in sorted order) is each
    expert's reference, ``b_{k0} = 0``, and expert 0 the gate's, ``w_0 = 0``.
    The fit runs on standardised columns (coefficients are reported on the
    original scale), so it does not depend on units or offsets. It is fitted
    by EM: the E-step computes the posterior responsibility of each expert for
    each sample, the M-step takes a Newton step with step halving for each
    expert (a weighted multinomial logistic regression with weights ``w_i
    r_ik``; one Numba pass gives every expert's gradient and Hessian) and for
    the gate. The observed (penalised) log-likelihood never decreases.

    Parameters
    ----------
    n_experts : int, default=2
        Number of experts K.
    gate : {"softmax", "constant", "gaussian", "hierarchical"}, default="softmax"
        ``"softmax"``: mixing weights depend on x through a multinomial
        logistic model. ``"constant"``: mixing proportions that do not depend
        on x (a finite mixture of logistic regressions); ``gate_features`` is
        ignored. ``"gaussian"``: the normalised Gaussian gate of Xu, Jordan &
        Hinton (1995), ``g_k(x) = pi_k N(x; mu_k, Sigma_k) / sum_j pi_j N(x;
        mu_j, Sigma_j)`` on the gate features; EM then maximises the joint
        likelihood of (x, y) (see ``lower_bound_`` and
        :doc:`/user_guide/gates`). ``"hierarchical"``: the hierarchical
        mixture of experts of Jordan & Jacobs (1994), a complete tree of
        softmax gates with ``n_experts = gate_branching**gate_depth`` leaves
        (see ``gate_tree_``).
    top_k : int or None, default=None
        Top-K sparse gating (``gate="softmax"`` only): at each x only the
        ``top_k`` experts with the largest gate logits get weight, the
        softmax renormalised over them, and the others get exactly zero
        (Nguyen, Akbarian, Yan & Ho, ICLR 2024). Fitted by generalised EM
        whose gate step never decreases the objective, and prediction
        evaluates only each row's selected experts; see
        :doc:`/user_guide/sparse_gating`. None (or ``n_experts``) is the
        dense softmax gate. Must be between 1 and ``n_experts``.
    gate_features : None, int, str, array-like of int or str, or boolean mask, default=None
        Columns of X that feed the gate. ``None`` uses every column; an empty
        list gives a gate with only intercepts.
    expert_features : None, int, str, array-like of int or str, or boolean mask, default=None
        Columns of X that feed the experts; ``None`` uses every column.
    fit_intercept : bool, default=True
        Whether the experts have intercepts. The gate always has intercepts.
    max_iter : int, default=500
        Maximum number of EM iterations per start.
    tol : float, default=1e-6
        EM stops when the mean (per-sample) log-likelihood changes by less than
        ``tol`` between iterations.
    n_init : int or "auto", default="auto"
        Number of starts; the fit with the highest log-likelihood is kept.
        ``"auto"``: 12 for ``init="auto"``, 10 for ``"random"`` and
        ``"random_subsets"``, 1 for ``"kmeans"`` and a given array.
    init : {"auto", "kmeans", "random", "random_subsets"} or array-like of shape \
(n_samples, n_experts), default="auto"
        How each start is made. ``"kmeans"`` clusters the standardised columns
        of X and starts from the hard assignment (the labels are left out:
        clustering them too cuts along the classes, gives the same start
        whatever the seed, and led EM to poorer optima more often in our
        simulations); ``"random"`` starts from uniformly random
        responsibilities; ``"random_subsets"`` fits each expert to a few random
        rows and assigns every row to the expert that explains it best;
        ``"auto"`` makes the first start by k-means and the others by random
        subsets, screened (see ``init_max_iter``); an array gives the starting
        responsibilities (rows are normalised; only one start is run).
        Mixtures of logistic experts have many local optima: keep several
        starts.
    init_max_iter : int, None or "auto", default="auto"
        Screening of starts (short-run EM; Biernacki, Celeux & Govaert 2003):
        with several starts, every start runs only ``init_max_iter`` EM
        iterations and only the best of them is run on to convergence. With
        more than 4000 rows the screening runs on a random subsample of 4000
        rows and the 3 best screened starts each run to convergence on all
        rows (``n_iter_`` and ``lower_bounds_`` then describe the best of those
        runs). None runs every start to convergence. ``"auto"``: 8 for
        ``init="auto"``, else None.
    gate_penalty : float, default=1e-3
        L2 penalty on the gate's slope coefficients (not its intercepts),
        ``gate_penalty / 2 * ||w||^2`` subtracted from the total
        log-likelihood, on the slopes of the standardised covariates. Set to 0
        for the plain maximum-likelihood estimate. Not used by
        ``gate="gaussian"``. With ``gate_l1_ratio > 0`` it is the strength
        ``alpha`` of an elastic net.
    gate_l1_ratio : float, default=0.0
        Elastic-net mixing of the gate penalty (scikit-learn's ``ElasticNet``
        naming): ``gate_penalty * (gate_l1_ratio * ||w||_1 + (1 -
        gate_l1_ratio) / 2 * ||w||^2)``; 0 is the L2 penalty, 1 the lasso
        (exact zeros in the gate's slopes, fitted by proximal Newton steps).
        Softmax gate only. See :doc:`/user_guide/penalties`.
    expert_penalty : float, default=1e-3
        The same L2 penalty on every expert's slopes (not the intercepts),
        ``expert_penalty / 2 * sum_k ||b_k||^2`` on the standardised scale. It
        keeps the experts finite where an expert's classes are separable. Set
        to 0 for the plain maximum-likelihood estimate. With
        ``expert_l1_ratio > 0`` it is the strength ``alpha`` of an elastic net.
    expert_l1_ratio : float, default=0.0
        Elastic-net mixing of ``expert_penalty``: ``expert_penalty *
        (expert_l1_ratio * ||b_kc||_1 + (1 - expert_l1_ratio) / 2 *
        ||b_kc||^2)`` summed over the experts k and classes c; 1 is the lasso
        (exact zeros, proximal Newton steps).
    gate_covariance_type : {"full", "diag", "spherical"}, default="full"
        Covariance structure of the Gaussian gate's components (used only
        with ``gate="gaussian"``), on the standardised gate columns. Their
        eigenvalues (``"full"``) or variances are kept at least 1e-6.
    gate_depth : int or None, default=None
        Depth of the tree of ``gate="hierarchical"`` (1 is the flat softmax
        gate); ``None`` infers it from ``n_experts = gate_branching**depth``.
        A ValueError when ``n_experts`` is not ``gate_branching**gate_depth``.
        Ignored by the other gates.
    gate_branching : int, default=2
        Children per internal node of ``gate="hierarchical"`` (>= 2).
        Ignored by the other gates.
    {shared: solver}
    batch_size : int or "auto", default="auto"
        Rows per minibatch (``solver="adam"`` or ``"sgd"``); "auto" is
        ``min(256, n_samples)``.
    learning_rate : float, default=1e-2
        Step size of the minibatch solvers (Adam's alpha, SGD's rate), on the
        internal standardised scale.
    learning_rate_schedule : {"constant", "invscaling", "adaptive"}, default="constant"
        Minibatch solvers: ``"constant"``; ``"invscaling"``, ``learning_rate
        / sqrt(1 + epoch)``; ``"adaptive"``, constant until the score stalls
        for ``n_iter_no_change`` epochs, then divided by 5 (stopping once
        below ``1e-4 * learning_rate``).
    early_stopping : bool, default=False
        Minibatch solvers only (a ValueError otherwise): hold out
        ``validation_fraction`` of the rows and stop when their mean
        log-likelihood has not risen by more than ``tol`` for
        ``n_iter_no_change`` epochs (the final parameters are the last
        epoch's).
    validation_fraction : float, default=0.1
        Fraction of the rows held out by ``early_stopping``, in (0, 1).
    n_iter_no_change : int, default=10
        Epochs without improvement before the minibatch solvers stop (or
        lower the rate, ``"adaptive"``).
    shuffle : bool, default=True
        Minibatch solvers: shuffle the rows before every epoch
        (``random_state`` draws the shuffles; an int gives the same fit
        every time).
    online_alpha : float, default=0.6
        Exponent of the step sizes ``gamma_t = t^(-online_alpha)`` of online
        EM (:meth:`partial_fit`), in (1/2, 1]; 1 averages every batch
        equally, smaller values forget the early batches faster.
    {shared: squarem_max_decrease}
    record_history : bool, default=False
        If True, ``history_`` holds the trajectory of the best start: the flat
        parameter vector and the mean log-likelihood at the start and after
        each iteration (for convergence-rate studies).
    callback : callable or None, default=None
        Called as ``callback(estimator)`` after each iteration of the final
        run (the single start, or the run of the best start after screening
        (of each of the 3 best with screening on a subsample of large data),
        and any refit that re-seeds a vanished expert), with ``gate_`` and
        ``experts_`` (and the fitted attributes computed from them, such as
        ``gate_coef_``) at the current parameters. It must
        not modify the estimator; raising ``StopIteration`` stops the fit
        there (``converged_`` is then False, without a warning). Several
        starts run to convergence (``init_max_iter=None``) have no final
        run, and a callback then raises a ValueError.
    n_jobs : int or None, default=None
        Number of joblib worker processes running the starts in parallel
        (None: 1, -1: all cores); each worker gets its share of the cores for
        the Numba kernels. Every start has its own seed drawn from
        ``random_state`` and the kernels' results do not depend on the number
        of threads, so the fit is the same whatever ``n_jobs`` is. Worth it
        when a start takes seconds (worker start-up costs about a second).
    warm_start : bool, default=False
        If True, a refit starts from the previous solution (one start) when
        the features, the number of experts and of classes and
        ``fit_intercept`` are unchanged.
    random_state : int, RandomState instance or None, default=None
        Seed of the initialisation.
    verbose : int, default=0
        1 prints one line per start, 2 one line per iteration.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The class labels, sorted.
    gate_coef_ : ndarray of shape (n_experts, 1 + n_gate_features)
        Gate coefficients, intercept in column 0. Row 0 (the reference expert)
        is fixed at zero. Not defined for ``gate="gaussian"`` or
        ``gate="hierarchical"`` (an AttributeError; see ``gate_tree_``).
    gate_tree_ : list of dict
        The tree of ``gate="hierarchical"``, one dict per internal node
        (breadth first) with its position, depth, children, the experts
        below it and its softmax coefficients ``"coef"`` (branching, 1 +
        n_gate_features) on the raw scale, row 0 fixed at zero. An
        AttributeError for the other gates.
    gate_weights_ : ndarray of shape (n_experts,)
        Mixing proportions pi_k of the Gaussian gate (``gate="gaussian"``
        only).
    gate_means_ : ndarray of shape (n_experts, n_gate_features)
        Means mu_k of the Gaussian gate, on the raw gate features
        (``gate="gaussian"`` only).
    gate_covariances_ : ndarray
        Covariances Sigma_k of the Gaussian gate on the raw gate features
        (``gate="gaussian"`` only): (n_experts, n_gate_features,
        n_gate_features) for ``gate_covariance_type="full"``, the variances
        (n_experts, n_gate_features) for ``"diag"`` and ``"spherical"``
        (spherical on the standardised columns is diagonal on the raw scale).
    expert_coef_ : ndarray of shape (n_experts, n_classes, 1 + n_expert_features)
        Expert coefficients: ``expert_coef_[k, c]`` are the intercept (column
        0; zero when ``fit_intercept=False``) and slopes of class c's logit in
        expert k. Row ``expert_coef_[k, 0]`` (the reference class) is zero.
    gate_ : SoftmaxGate, ConstantGate, GaussianGate or HierarchicalGate
        The fitted gate part (parameters on the standardised scale).
    experts_ : MultinomialExperts
        The fitted expert part (parameters on the standardised scale).
    gate_feature_indices_ : ndarray of int
        Columns of X used by the gate.
    expert_feature_indices_ : ndarray of int
        Columns of X used by the experts.
    converged_ : bool
        Whether the best start converged.
    n_iter_ : int
        EM iterations of the best start.
    lower_bound_ : float
        Mean penalised log-likelihood ``(sum_i w_i log P(y_i|x_i) - penalties)
        / sum_i w_i`` at the fitted parameters; with both penalties 0 it is
        the mean conditional log-likelihood. With ``gate="gaussian"`` it is
        the mean *joint* log-likelihood ``(sum_i w_i log p(x_i, y_i) -
        expert penalty) / sum_i w_i`` of the raw gate features and y, which
        EM maximises for that gate (``score_samples`` stays conditional).
    lower_bounds_ : ndarray of shape (`n_iter_` + 1,)
        ``lower_bound_`` after each EM iteration of the best start (first entry
        at the initial parameters). Non-decreasing under EM; per epoch, and
        noisy, under ``solver="adam"`` or ``"sgd"``; :meth:`partial_fit`
        appends its batches' prequential scores.
    validation_scores_ : ndarray of shape (n_epochs + 1,)
        Only with ``early_stopping=True`` (``solver="adam"`` or ``"sgd"``):
        the mean log-likelihood of the held-out rows at the start and after
        each epoch of the final run (with a single start, ``n_epochs`` is
        ``n_iter_``).
    history_ : dict
        Only with ``record_history=True``: ``"theta"``, an array of shape
        (`n_iter_` + 1, n_params) of the flat parameters (internal
        standardised scale, unconstrained parametrisation, as
        :func:`mixexp.solvers.get_flat_params`) at each entry of
        ``lower_bounds_``, and ``"log_likelihood"``, equal to
        ``lower_bounds_``. The last row is the fitted parameters.
    n_features_in_ : int
        Number of features seen in fit.
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen in fit, when X has string column names.

    See Also
    --------
    MixtureOfExpertsRegressor : the same model with regression experts.
    sklearn.linear_model.LogisticRegression : a single multinomial logistic
        expert (``n_experts=1``, up to the penalty).

    Notes
    -----
    Every expert's M-step is a weighted multinomial logistic regression, as
    in the multinomial experts of Chen, Xu & Chi (1999); one Newton step per
    EM iteration, accepted only when it raises the expert's objective, makes
    each iteration a generalised EM step (Jordan & Jacobs, 1994). Without
    ``expert_penalty``, an expert whose classes are separable has no finite
    maximum-likelihood estimate; the default penalty keeps it finite.

    References
    ----------
    .. [1] Jordan, M. I. and Jacobs, R. A. (1994). Hierarchical mixtures of
       experts and the EM algorithm. Neural Computation, 6(2), 181-214.
    .. [2] Chen, K., Xu, L. and Chi, H. (1999). Improved learning algorithms
       for mixture of experts in multiclass classification. Neural Networks,
       12(9), 1229-1252.

    Examples
    --------
    >>> import numpy as np
    >>> from mixexp import MixtureOfExpertsClassifier
    >>> rng = np.random.default_rng(0)
    >>> X = rng.uniform(-3, 3, size=(2000, 1))
    >>> # left of 0 "yes" grows more likely with x, right of 0 less likely
    >>> logit = np.where(X[:, 0] < 0, 1 + 3 * X[:, 0], 1 - 3 * X[:, 0])
    >>> y = np.where(rng.uniform(size=2000) < 1 / (1 + np.exp(-logit)), "yes", "no")
    >>> clf = MixtureOfExpertsClassifier(n_experts=2, random_state=0).fit(X, y)
    >>> clf.classes_
    array(['no', 'yes'], dtype='<U3')
    >>> clf.expert_coef_.shape
    (2, 2, 2)
    >>> clf.predict(np.array([[-2.0], [0.0], [2.0]]))
    array(['no', 'yes', 'no'], dtype='<U3')
    >>> clf.predict_proba(np.array([[0.0]])).round(1)
    array([[0.3, 0.7]])
    """

    _parameter_constraints: dict = {
        **BaseMixtureOfExperts._parameter_constraints,
        "expert_penalty": [Interval(Real, 0, None, closed="left")],
        "expert_l1_ratio": [Interval(Real, 0, 1, closed="both")],
    }

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
        expert_penalty=1e-3,
        expert_l1_ratio=0.0,
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
        self.expert_penalty = expert_penalty
        self.expert_l1_ratio = expert_l1_ratio
        super().__init__(
            n_experts=n_experts,
            gate=gate,
            top_k=top_k,
            gate_features=gate_features,
            expert_features=expert_features,
            fit_intercept=fit_intercept,
            max_iter=max_iter,
            tol=tol,
            n_init=n_init,
            init=init,
            init_max_iter=init_max_iter,
            gate_penalty=gate_penalty,
            gate_l1_ratio=gate_l1_ratio,
            gate_covariance_type=gate_covariance_type,
            gate_depth=gate_depth,
            gate_branching=gate_branching,
            solver=solver,
            batch_size=batch_size,
            learning_rate=learning_rate,
            learning_rate_schedule=learning_rate_schedule,
            early_stopping=early_stopping,
            validation_fraction=validation_fraction,
            n_iter_no_change=n_iter_no_change,
            shuffle=shuffle,
            online_alpha=online_alpha,
            squarem_max_decrease=squarem_max_decrease,
            record_history=record_history,
            callback=callback,
            n_jobs=n_jobs,
            warm_start=warm_start,
            random_state=random_state,
            verbose=verbose,
        )

    def _make_experts(self):
        return MultinomialExperts(
            self.n_experts,
            n_classes=self._fit_classes.size,
            penalty=self.expert_penalty,
            l1_ratio=self.expert_l1_ratio,
            intercept=self.fit_intercept,
        )

    def _check_target(self, y, fitting):
        if not fitting:
            return _encode_labels(y, self.classes_)
        check_classification_targets(y)
        classes = unique_labels(y)
        given = getattr(self, "_partial_fit_classes", None)
        if given is not None:  # partial_fit's classes=
            unseen = np.setdiff1d(classes, given)
            if unseen.size:
                raise ValueError(
                    f"y contains labels not in classes: {unseen[:10].tolist()}; classes={given.tolist()}."
                )
            classes = given
        if classes.size < 2:
            raise ValueError(
                f"{type(self).__name__} needs samples of at least 2 classes; y has 1 class "
                f"({classes[0]!r})."
            )
        # published as classes_ only when the fit succeeds (see _fit)
        self._fit_classes = classes
        return _encode_labels(y, classes)

    def _fit(self, X, y, sample_weight):
        super()._fit(X, y, sample_weight)
        self.classes_ = self._fit_classes
        return self

    @available_if(supports_partial_fit)
    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y, sample_weight=None, classes=None):
        """Update the model with one batch of rows: online EM (Cappé & Moulines 2009).

        As :meth:`MixtureOfExpertsRegressor.partial_fit`: the first call fits
        the first batch (starts, solver, standardisation kept for the
        stream), each later call is one online EM step (the experts' and the
        softmax gate's batch M-steps damped by ``gamma_t =
        t^(-online_alpha)``, running averages of the constant gate's
        proportions), a fitted model continues, and :meth:`fit` restarts.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            A batch of covariates.
        y : array-like of shape (n_samples,)
            Its class labels.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weights of the batch's rows.
        classes : array-like of shape (n_classes,), default=None
            Every class of the stream. Required on the first call (the first
            batch need not contain every class); later calls may omit it or
            must pass the same classes. Labels outside them raise a
            ValueError.

        Returns
        -------
        self : object
            The updated estimator.
        """
        fitted = hasattr(self, "classes_") and hasattr(self, "gate_")
        if classes is not None:
            check_classification_targets(np.asarray(classes))
            classes = unique_labels(classes)
            if classes.size < 2:
                raise ValueError(f"classes must hold at least 2 classes; got {classes.tolist()}.")
        if not fitted:
            if classes is None:
                raise ValueError("classes must be passed on the first call to partial_fit.")
            self._partial_fit_classes = classes
            try:
                return partial_fit_estimator(self, X, y, sample_weight)
            finally:
                del self._partial_fit_classes
        if classes is not None and not np.array_equal(classes, self.classes_):
            raise ValueError(
                f"classes={classes.tolist()} differs from the classes of the fitted model "
                f"{self.classes_.tolist()}; pass the same classes in every call (or none after the first)."
            )
        return partial_fit_estimator(self, X, y, sample_weight)

    def _warm_start_compatible(self, previous):
        # the previous experts must have as many classes as this fit's
        return previous[1]["coef"].shape[1] == self._fit_classes.size

    def _cluster_data(self, X, y, sample_weight):
        # X only: with the one-hot labels k-means cuts along the classes, gives the
        # same partition for every seed, and in simulations (binary and 3-class,
        # K = 2, 3) reached poorer optima more often than k-means on X.
        return _standardize(X, sample_weight)

    # -- fitted parameters -------------------------------------------------------
    @property
    def gate_coef_(self):
        """Gate coefficients, (n_experts, 1 + n_gate_features), intercept in column 0.

        Row 0 (the reference expert) is fixed at zero.
        """
        return self._gate_param("coef", "gate_coef_")

    @property
    def expert_coef_(self):
        """Expert coefficients, (n_experts, n_classes, 1 + n_expert_features).

        Intercept in column 0 (zero when ``fit_intercept=False``); the
        reference class's row ``expert_coef_[k, 0]`` is zero.
        """
        coef = self._raw_parts()[1]["coef"]
        if self.fit_intercept:
            return coef
        return np.concatenate([np.zeros(coef.shape[:2] + (1,)), coef], axis=2)

    # -- prediction ----------------------------------------------------------------
    def _log_parts(self, X):
        """(K, n) log gate weights and (K, C, n) log class probabilities of the experts."""
        X = self._validate_X(X)
        XgT, XeT = self._design(X)
        return self.gate_.evaluate(XgT).log, self.experts_.predict_log_proba(XeT)

    def predict_experts_proba(self, X):
        """Each expert's class probabilities p_k(c | x).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        proba : ndarray of shape (n_samples, n_experts, n_classes)
            Columns follow ``classes_``; each expert's probabilities sum to one.
        """
        X = self._validate_X(X)
        _, XeT = self._design(X)
        return np.transpose(self.experts_.predict_proba(XeT), (2, 0, 1))

    def predict_log_proba(self, X):
        """Log class probabilities log P(y = c | x) = log sum_k g_k(x) p_k(c | x).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        log_proba : ndarray of shape (n_samples, n_classes)
            Columns follow ``classes_``.
        """
        log_gate, log_experts = self._log_parts(X)
        return logsumexp(log_gate[:, None, :] + log_experts, axis=0).T

    def predict_proba(self, X):
        """Class probabilities P(y = c | x) = sum_k g_k(x) p_k(c | x).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
            Columns follow ``classes_``; rows sum to one.
        """
        log_gate, log_experts = self._log_parts(X)
        return np.einsum("kn,kcn->nc", np.exp(log_gate), np.exp(log_experts))

    def predict(self, X):
        """The most probable class, argmax_c P(y = c | x).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
            Labels from ``classes_``.
        """
        proba = self.predict_proba(X)
        return self.classes_[np.argmax(proba, axis=1)]

    def sample_y(self, X, n_samples=1, random_state=None):
        """Draw class labels from the predictive distribution :meth:`predict_proba`.

        ``predict_proba`` is the whole predictive distribution of a class
        label; this draws from it, as
        :meth:`MixtureOfExpertsRegressor.sample_y` does for a numeric y (for a
        parametric bootstrap, say).

        Parameters
        ----------
        X : array-like of shape (n_samples_X, n_features)
        n_samples : int, default=1
            Number of draws per row.
        random_state : int, RandomState instance or None, default=None
            Seed of the draws; the same seed gives the same draws.

        Returns
        -------
        y_samples : ndarray of shape (n_samples_X, n_samples)
            Labels from ``classes_``, drawn independently.
        """
        n_samples = check_n_samples(n_samples)
        rng = check_random_state(random_state)
        proba = self.predict_proba(X)
        return self.classes_[draw_categories(proba, n_samples, rng)]
