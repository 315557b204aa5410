"""The public estimators: thin classes that choose the parts."""

import copy
import warnings

import numpy as np
from sklearn.base import RegressorMixin
from sklearn.utils._param_validation import HasMethods, StrOptions

from ._base import BaseMixtureOfExperts
from ._validation import check_numeric_target
from .experts import EXPERT_FAMILIES

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
        noise). A class implementing :class:`mixexp.experts.ExpertFamily` is
        called as ``expert(n_experts, reg_covar=reg_covar)``; a configured
        instance is copied for each fit.
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
    init : {"kmeans", "random"} or array-like of shape (n_samples, n_experts), default="kmeans"
        How each start is made. ``"kmeans"`` clusters the standardised
        ``(X, y)`` and starts from the hard assignment; ``"random"`` starts from
        uniformly random responsibilities; an array gives the starting
        responsibilities (rows are normalised; only one start is run).
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
        Noise variance sigma_k^2 of each expert.
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
        reg_covar=1e-6,
        gate_penalty=1e-3,
        warm_start=False,
        random_state=None,
        verbose=0,
    ):
        self.expert = expert
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
            reg_covar=reg_covar,
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
