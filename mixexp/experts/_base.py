"""The interface every expert family implements.

An expert family holds the parameters of K experts f_k(y | x) and gives the
EM loop what it needs. Designs are feature-major, ``XT`` of shape (p, n), with
a constant first row when the estimator fits intercepts, built from columns
standardised to weighted mean 0 and standard deviation 1 (see
:mod:`mixexp._scaling`); per-expert outputs are expert-major, shape (K, n).
A new family is one class implementing the methods below; no change to the
EM loop is needed. Pass it to an estimator as ``expert=MyFamily`` (a class,
called as ``MyFamily(n_experts, reg_covar=...)``) or as a configured
instance (copied for each fit).
"""

import numpy as np

from .._scaling import linear_from_raw, linear_to_raw


def chosen_expert_values(values, expert):
    """``values[expert[i, j], i]``: per-expert values (K, n) at the chosen experts (n, m)."""
    return values[expert, np.arange(values.shape[1])[:, None]]


class ExpertFamily:
    """Base class of expert families (K experts, one parameter set each).

    Subclasses must implement :meth:`log_prob`, :meth:`m_step`, :meth:`mean`
    and :meth:`n_parameters`, and keep their linear-predictor coefficients in
    ``coef`` (K, p); the defaults of the other methods suit families whose only
    parameters on the scale of X are ``coef``. The regressor's predictive
    distribution methods (``predict_variance``, ``predict_quantiles``,
    ``sample_y``, ...) also need :meth:`variance`, :meth:`cdf` and :meth:`ppf`;
    :meth:`sample` (draws from chosen experts) defaults to inverting
    :meth:`ppf`, :meth:`in_support` to every finite y, and a family of integer
    y sets ``discrete = True``.

    The gradient solver (``solver="lbfgs"``) and the standard errors need a
    flat parameter vector with its gradient: ``get_flat()``, ``set_flat(theta)``
    and ``flat_grad(XT, y, resp, sample_weight)``, the gradient of
    ``sum_i w_i sum_k r_ki log f_k(y_i | x_i)`` with respect to ``get_flat()``
    (unconstrained parameters on the internal scale, e.g. log-variances), plus
    :meth:`penalty_grad` when :meth:`penalty_value` is not zero and optionally
    :meth:`flat_bounds` (see the comment above :meth:`penalty_grad`).

    Parameters
    ----------
    n_experts : int
        Number of experts K.
    reg_covar : float, default=1e-6
        Variance floor, relative to the variance of y, for families with a
        scale parameter (others ignore it).

    Attributes
    ----------
    kind : str
        Name of the family; pairs with the gate's ``kind`` to pick a fused
        kernel (see ``mixexp.solvers._em.FUSED_PASSES``).
    standardize_y : bool
        True for location-scale families, which the estimator may fit on a
        centred and scaled y (then :meth:`raw_params` must undo it).
    discrete : bool
        True for families of integer-valued y (Poisson): :meth:`cdf` and
        :meth:`ppf` are step functions and the estimator inverts the mixture
        cdf over the integers.
    coef : ndarray of shape (n_experts, p)
    """

    kind = "custom"
    standardize_y = False

    def __init__(self, n_experts, reg_covar=1e-6):
        self.n_experts = n_experts
        self.reg_covar = reg_covar
        self.coef = None

    # -- to implement --------------------------------------------------------
    def log_prob(self, XT, y):
        """(K, n) log-densities log f_k(y_i | x_i)."""
        raise NotImplementedError

    def m_step(self, XT, y, resp, sample_weight, stats=None):
        """Update the parameters given responsibilities ``resp`` (K, n).

        Must not decrease sum_i w_i sum_k r_ki log f_k(y_i | x_i) (a full or
        partial maximisation). ``stats`` are precomputed sufficient statistics
        when a fused kernel supplies them, else None.
        """
        raise NotImplementedError

    def mean(self, XT):
        """(K, n) expert means E[y | x, expert k] (on the scale ``y`` was given in)."""
        raise NotImplementedError

    def n_parameters(self):
        """Number of free parameters of the K experts."""
        raise NotImplementedError

    # -- predictive distribution (optional) ----------------------------------------
    # Used by the regressor's predict_variance, predict_cdf, predict_quantiles,
    # predict_interval, predict_density and sample_y. All work on the scale ``y`` was
    # fitted on (standardised for location-scale families); the estimator maps back.
    # A family that leaves them out can be fitted and predict means, and those
    # methods raise NotImplementedError naming what is missing.

    discrete = False

    def variance(self, XT):
        """(K, n) expert variances Var[y | x_i, expert k] (``inf`` where infinite).

        Parameters
        ----------
        XT : ndarray of shape (p, n)

        Returns
        -------
        ndarray of shape (n_experts, n)
        """
        raise NotImplementedError(f"{type(self).__name__} does not implement variance(XT).")

    def cdf(self, XT, y):
        """(K, n) expert distribution functions P(Y <= y_i | x_i, expert k).

        Parameters
        ----------
        XT : ndarray of shape (p, n)
        y : ndarray of shape (n,)
            Any real values (not only those in the support).

        Returns
        -------
        ndarray of shape (n_experts, n)
        """
        raise NotImplementedError(f"{type(self).__name__} does not implement cdf(XT, y).")

    def ppf(self, XT, q):
        """(K, n) expert quantiles: the smallest y with P(Y <= y | x_i, expert k) >= q_i.

        Parameters
        ----------
        XT : ndarray of shape (p, n)
        q : ndarray of shape (n,)
            Probabilities in [0, 1]; q = 0 and q = 1 give the ends of the
            support (possibly infinite).

        Returns
        -------
        ndarray of shape (n_experts, n)
        """
        raise NotImplementedError(f"{type(self).__name__} does not implement ppf(XT, q).")

    def in_support(self, y):
        """Boolean mask of the values of ``y`` (any shape) where the densities may be positive.

        Outside it the predictive density is zero and :meth:`log_prob` is not
        called. The default is every finite value.
        """
        return np.isfinite(y)

    def sample(self, XT, expert, rng):
        """Draw y from chosen experts: ``out[i, j] ~ f_{expert[i, j]}(y | x_i)``.

        The default inverts :meth:`ppf` at uniform draws (it evaluates every
        expert's quantile, so families override it with direct draws).

        Parameters
        ----------
        XT : ndarray of shape (p, n)
        expert : ndarray of int of shape (n, m)
            The expert of each draw (m draws per row).
        rng : numpy.random.RandomState or numpy.random.Generator

        Returns
        -------
        ndarray of shape (n, m)
        """
        n, m = expert.shape
        u = rng.uniform(size=(n, m))
        q = self.ppf(np.repeat(XT, m, axis=1), u.ravel())
        return np.take_along_axis(q, expert.reshape(1, -1), axis=0).reshape(n, m)

    # -- defaults ----------------------------------------------------------------
    def check_target(self, y):
        """Validate the target (float64, 1-D, finite); raise ValueError naming the problem."""
        return y

    def initialize(self, XT, y, resp, sample_weight):
        """First fit from starting responsibilities (``coef`` may be None)."""
        self.set_variance_floor(y, sample_weight)
        self.m_step(XT, y, resp, sample_weight)

    def set_variance_floor(self, y, sample_weight):
        """Floor = reg_covar * weighted variance of y (reg_covar when y is constant)."""
        w = sample_weight / sample_weight.sum()
        var_y = float(w @ (y - w @ y) ** 2)
        constant = np.ptp(y[sample_weight > 0]) == 0
        self.var_floor = self.reg_covar * (1.0 if constant or not var_y > 0 else var_y)

    def penalty_value(self):
        """Penalty subtracted from the log-likelihood (0 for unpenalised families)."""
        return 0.0

    # -- flat parameters and gradients (gradient solvers, standard errors) ---------
    # A family that the gradient solver (``solver="lbfgs"``) and the standard
    # errors can use implements, on the internal (standardised) scale and in an
    # unconstrained parametrisation (log-variances, log-shapes, ...):
    #
    # ``get_flat() -> ndarray (m,)`` and ``set_flat(theta)``: every free parameter
    #     as one vector (``m = n_parameters()``); ``set_flat(get_flat())`` changes
    #     nothing.
    # ``flat_grad(XT, y, resp, sample_weight) -> ndarray (m,)``: the gradient with
    #     respect to ``get_flat()`` of ``sum_i w_i sum_k r_ki log f_k(y_i | x_i)``
    #     (no penalty), for responsibilities ``resp`` (K, n) held fixed.
    # ``penalty_grad() -> ndarray (m,)``: the gradient of :meth:`penalty_value`
    #     (the default, zeros, suits unpenalised families).
    # ``flat_bounds() -> (lower, upper)``: optional bounds of ``get_flat()``
    #     (variance floors, degree-of-freedom ranges); the default is none.
    #
    # By Fisher's identity the gradient of the observed log-likelihood is the
    # gate's and the experts' ``flat_grad`` at the posterior responsibilities:
    # see :func:`mixexp.solvers.loglik_and_grad`. tests/test_gradients.py checks
    # every family's gradient against finite differences.

    def penalty_grad(self):
        """Gradient of :meth:`penalty_value` with respect to ``get_flat()`` (zeros here).

        Returns
        -------
        ndarray of shape (n_flat,)
        """
        return np.zeros(self.get_flat().size)

    def flat_bounds(self):
        """Lower and upper bounds of ``get_flat()`` (here none: -inf and inf).

        Returns
        -------
        lower, upper : ndarray of shape (n_flat,)
        """
        size = self.get_flat().size
        return np.full(size, -np.inf), np.full(size, np.inf)

    def raw_params(self, scaling, intercept):
        """Parameters on the raw data's scale, as a dict with at least ``"coef"``."""
        return {"coef": linear_to_raw(self.coef, scaling.expert_mean, scaling.expert_scale, intercept)}

    def set_raw_params(self, params, scaling, intercept):
        """Set the parameters from :meth:`raw_params`' output under ``scaling``."""
        self.coef = linear_from_raw(params["coef"], scaling.expert_mean, scaling.expert_scale, intercept)
