"""The public estimators: thin classes that choose the parts."""

import copy
import warnings
from numbers import Real

import numpy as np
from scipy.special import logsumexp
from sklearn.base import ClassifierMixin, RegressorMixin
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.multiclass import check_classification_targets, unique_labels

from ._base import BaseMixtureOfExperts, _standardize
from ._validation import check_numeric_target
from .experts import EXPERT_FAMILIES, MultinomialExperts

_FAMILY_METHODS = ["log_prob", "m_step", "mean", "n_parameters"]


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
    gate : {"softmax", "constant"}, default="softmax"
        ``"softmax"``: mixing weights depend on x through a multinomial
        logistic model. ``"constant"``: mixing proportions that do not depend
        on x, i.e. the finite mixture of regressions (mixtools' ``regmixEM``,
        flexmix without a concomitant model); ``gate_features`` is ignored.
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
    n_init : int, default=1
        Number of starts; the fit with the highest log-likelihood is kept.
    init : {"kmeans", "random", "random_subsets"} or array-like of shape (n_samples, n_experts), \
default="kmeans"
        How each start is made. ``"kmeans"`` clusters the standardised
        ``(X, y)`` (``(X, log(y + 0.5))`` for ``"poisson"``, ``(X, log y)`` for
        ``"gamma"``) and starts from the hard assignment; ``"random"`` starts from
        uniformly random responsibilities; ``"random_subsets"`` fits each expert
        exactly to a few random rows (its number of coefficients plus one),
        through the family's own M-step, and assigns every row to the expert
        that explains it best: it looks at the regression structure, so it can
        find a small expert that k-means, which sees only where the rows lie,
        misses (use it with ``n_init`` of 10 or more). An array gives the
        starting responsibilities (rows are normalised; only one start is run).
    init_max_iter : int or None, default=None
        Screening of starts (short-run EM; Biernacki, Celeux & Govaert 2003):
        with ``n_init > 1``, every start runs only ``init_max_iter`` EM
        iterations and only the best of them is run on to convergence. None
        runs every start to convergence.
    reg_covar : float, default=1e-6
        Lower bound on each expert's noise variance, relative to the variance
        of y (absolute when y is constant). Keeps the likelihood bounded.
    gate_penalty : float, default=1e-3
        L2 penalty on the gate's slope coefficients (not its intercepts),
        ``gate_penalty / 2 * ||w||^2`` subtracted from the total log-likelihood,
        where ``w`` are the slopes of the standardised covariates (columns
        centred and scaled to weighted mean 0 and standard deviation 1), so the
        penalty does not depend on units. It keeps the gate finite when the
        experts' regions are separable. Set to 0 for the plain
        maximum-likelihood estimate.
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
    gate_ : SoftmaxGate or ConstantGate
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
        mean conditional log-likelihood.
    lower_bounds_ : ndarray of shape (`n_iter_` + 1,)
        ``lower_bound_`` after each EM iteration of the best start (first entry
        at the initial parameters). Non-decreasing.
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
    }

    def __init__(
        self,
        n_experts=2,
        *,
        expert="gaussian",
        gate="softmax",
        gate_features=None,
        expert_features=None,
        fit_intercept=True,
        max_iter=500,
        tol=1e-6,
        n_init=1,
        init="kmeans",
        init_max_iter=None,
        reg_covar=1e-6,
        gate_penalty=1e-3,
        warm_start=False,
        random_state=None,
        verbose=0,
    ):
        self.expert = expert
        self.reg_covar = reg_covar
        super().__init__(
            n_experts=n_experts,
            gate=gate,
            gate_features=gate_features,
            expert_features=expert_features,
            fit_intercept=fit_intercept,
            max_iter=max_iter,
            tol=tol,
            n_init=n_init,
            init=init,
            init_max_iter=init_max_iter,
            gate_penalty=gate_penalty,
            warm_start=warm_start,
            random_state=random_state,
            verbose=verbose,
        )

    def _make_experts(self):
        expert = self.expert
        if isinstance(expert, str):
            return EXPERT_FAMILIES[expert](self.n_experts, reg_covar=self.reg_covar)
        if isinstance(expert, type):
            return expert(self.n_experts, reg_covar=self.reg_covar)
        family = copy.deepcopy(expert)  # a configured instance: a fresh copy per fit
        family.n_experts = self.n_experts
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
        return self._raw[0]["coef"]

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

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
        """
        X = self._validate_X(X)
        XgT, XeT = self._design(X)
        gate = self.gate_.evaluate(XgT).prob
        sc = self._scaling
        return sc.y_mean + sc.y_scale * np.einsum("kn,kn->n", gate, self.experts_.mean(XeT))


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
    gate : {"softmax", "constant"}, default="softmax"
        ``"softmax"``: mixing weights depend on x through a multinomial
        logistic model. ``"constant"``: mixing proportions that do not depend
        on x (a finite mixture of logistic regressions); ``gate_features`` is
        ignored.
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
    n_init : int, default=1
        Number of starts; the fit with the highest log-likelihood is kept.
    init : {"kmeans", "random", "random_subsets"} or array-like of shape (n_samples, n_experts), \
default="kmeans"
        How each start is made. ``"kmeans"`` clusters the standardised columns
        of X and starts from the hard assignment (the labels are left out:
        clustering them too cuts along the classes, gives the same start
        whatever the seed, and led EM to poorer optima more often in our
        simulations); ``"random"`` starts from uniformly random
        responsibilities; ``"random_subsets"`` fits each expert to a few random
        rows and assigns every row to the expert that explains it best; an
        array gives the starting responsibilities (rows are normalised; only
        one start is run). Mixtures of logistic experts
        have many local optima: use several starts (``n_init``).
    init_max_iter : int or None, default=None
        Screening of starts (short-run EM; Biernacki, Celeux & Govaert 2003):
        with ``n_init > 1``, every start runs only ``init_max_iter`` EM
        iterations and only the best of them is run on to convergence. None
        runs every start to convergence.
    gate_penalty : float, default=1e-3
        L2 penalty on the gate's slope coefficients (not its intercepts),
        ``gate_penalty / 2 * ||w||^2`` subtracted from the total
        log-likelihood, on the slopes of the standardised covariates. Set to 0
        for the plain maximum-likelihood estimate.
    expert_penalty : float, default=1e-3
        The same L2 penalty on every expert's slopes (not the intercepts),
        ``expert_penalty / 2 * sum_k ||b_k||^2`` on the standardised scale. It
        keeps the experts finite where an expert's classes are separable. Set
        to 0 for the plain maximum-likelihood estimate.
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
        is fixed at zero.
    expert_coef_ : ndarray of shape (n_experts, n_classes, 1 + n_expert_features)
        Expert coefficients: ``expert_coef_[k, c]`` are the intercept (column
        0; zero when ``fit_intercept=False``) and slopes of class c's logit in
        expert k. Row ``expert_coef_[k, 0]`` (the reference class) is zero.
    gate_ : SoftmaxGate or ConstantGate
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
        the mean conditional log-likelihood.
    lower_bounds_ : ndarray of shape (`n_iter_` + 1,)
        ``lower_bound_`` after each EM iteration of the best start (first entry
        at the initial parameters). Non-decreasing.
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
    }

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
        expert_penalty=1e-3,
        warm_start=False,
        random_state=None,
        verbose=0,
    ):
        self.expert_penalty = expert_penalty
        super().__init__(
            n_experts=n_experts,
            gate=gate,
            gate_features=gate_features,
            expert_features=expert_features,
            fit_intercept=fit_intercept,
            max_iter=max_iter,
            tol=tol,
            n_init=n_init,
            init=init,
            init_max_iter=init_max_iter,
            gate_penalty=gate_penalty,
            warm_start=warm_start,
            random_state=random_state,
            verbose=verbose,
        )

    def _make_experts(self):
        return MultinomialExperts(
            self.n_experts,
            n_classes=self._fit_classes.size,
            penalty=self.expert_penalty,
            intercept=self.fit_intercept,
        )

    def _check_target(self, y, fitting):
        if not fitting:
            return _encode_labels(y, self.classes_)
        check_classification_targets(y)
        classes = unique_labels(y)
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
        return self._raw_parts()[0]["coef"]

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
