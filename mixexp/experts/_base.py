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


class ExpertFamily:
    """Base class of expert families (K experts, one parameter set each).

    Subclasses must implement :meth:`log_prob`, :meth:`m_step`, :meth:`mean`
    and :meth:`n_parameters`, and keep their linear-predictor coefficients in
    ``coef`` (K, p); the defaults of the other methods suit families whose only
    parameters on the scale of X are ``coef``.

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

    def raw_params(self, scaling, intercept):
        """Parameters on the raw data's scale, as a dict with at least ``"coef"``."""
        return {"coef": linear_to_raw(self.coef, scaling.expert_mean, scaling.expert_scale, intercept)}

    def set_raw_params(self, params, scaling, intercept):
        """Set the parameters from :meth:`raw_params`' output under ``scaling``."""
        self.coef = linear_from_raw(params["coef"], scaling.expert_mean, scaling.expert_scale, intercept)
