"""Multinomial logistic experts: y | x, expert k ~ Categorical(softmax(B_k x))."""

from typing import NamedTuple

import numpy as np

from .._kernels import log_softmax_linear, multinomial_log_prob, multinomial_stats
from .._penalties import elastic_net_gradient, slope_mask
from .._scaling import linear_from_raw, linear_to_raw
from ..gates._softmax import _MAX_HALVINGS, newton_direction, slope_penalty
from ._base import ExpertFamily


class DeferredStats(NamedTuple):
    """M-step statistics from a fused pass that also checks the step it leads to.

    Given as ``stats`` to :meth:`MultinomialExperts.m_step`, they make it take
    the full Newton step unchecked (:meth:`MultinomialExperts.propose`); the
    next fused pass returns each expert's objective at the new coefficients
    under the same responsibilities, and :meth:`MultinomialExperts.accept` /
    :meth:`MultinomialExperts.backtrack` keep or halve the step. So the
    check costs no pass of its own.
    """

    q: np.ndarray
    grad: np.ndarray
    hess: np.ndarray


class MultinomialExperts(ExpertFamily):
    """K multinomial logistic regression experts over C classes.

    Expert k models ``p_k(c | x) = exp(x . b_kc) / sum_j exp(x . b_kj)`` for
    classes ``c = 0..C-1`` (binary: C = 2, the logistic regression), on a design
    ``x`` with a constant first column when ``intercept``. Class 0 is the
    reference: ``b_k0 = 0``. The target ``y`` holds class indices.

    The M-step of expert k maximises ``sum_i w_i r_ki log p_k(y_i | x_i) -
    penalty / 2 * ||slopes_k||^2``: the softmax gate's objective with one-hot
    targets and weights ``w_i r_ki``, so it takes the gate's Newton steps
    (:func:`mixexp.gates._softmax.newton_direction`) with step halving,
    each expert with its own step size; one Numba pass
    (:func:`mixexp._kernels.multinomial_stats`) gives every expert's gradient
    and Hessian. Every step raises each expert's objective, so the EM
    iteration is a generalised EM step. With a softmax gate the EM loop uses a
    fused pass (:func:`mixexp._kernels.fused_softmax_multinomial`) that gives
    these statistics with the E-step and checks the last step on the way (see
    :class:`DeferredStats`).

    A multinomial expert has no mean: :meth:`mean` raises
    ``NotImplementedError``; :meth:`predict_proba` gives the class
    probabilities.

    Parameters
    ----------
    n_experts : int
        Number of experts K.
    reg_covar : float, default=1e-6
        Ignored (no variance); accepted for the family interface.
    n_classes : int, default=2
        Number of classes C (at least 2).
    penalty : float, default=1e-3
        L2 penalty on each expert's slopes (not its intercepts), on the scale of
        the design (standardised columns in the estimators), summed over the
        experts and subtracted from the log-likelihood in total.
    intercept : bool, default=True
        Whether row 0 of the design is the constant (an unpenalised intercept).
    l1_ratio : float, default=0.0
        Elastic-net mixing in [0, 1]: each expert's penalty is ``penalty *
        (l1_ratio ||slopes_k||_1 + (1 - l1_ratio) / 2 ||slopes_k||^2)``; 0 is
        the ridge penalty, 1 the lasso. With ``l1_ratio > 0`` the Newton steps
        are proximal Newton steps (see :mod:`mixexp._penalties`), still
        halved until each expert's penalised objective does not decrease.
    newton_steps : int, default=1
        Newton steps per M-step.
    init_newton_steps : int, default=5
        Newton steps of the first fit (:meth:`initialize`), from zero
        coefficients; stops early once a step gains nothing.

    Attributes
    ----------
    coef : ndarray of shape (n_experts, n_classes, n_design_features)
        Row ``coef[k, 0]`` is zero.
    """

    kind = "multinomial"
    standardize_y = False

    def __init__(
        self, n_experts, reg_covar=1e-6, *, n_classes=2, penalty=1e-3, intercept=True,
        newton_steps=1, init_newton_steps=5, l1_ratio=0.0,
    ):
        super().__init__(n_experts, reg_covar)
        if n_classes < 2:
            raise ValueError(f"MultinomialExperts needs n_classes >= 2; got {n_classes}.")
        self.n_classes = n_classes
        self.penalty = penalty
        self.intercept = intercept
        self.l1_ratio = l1_ratio
        self.newton_steps = newton_steps
        self.init_newton_steps = init_newton_steps
        self._pending = None

    # -- interface -----------------------------------------------------------
    def n_parameters(self):
        """Number of free parameters, K (C - 1) p."""
        K, C, p = self.coef.shape
        return K * (C - 1) * p

    def check_target(self, y):
        """y must hold class indices 0..n_classes-1."""
        y = np.asarray(y, dtype=np.float64)
        if y.size and not (
            np.all(np.isfinite(y)) and np.all(y == np.round(y)) and y.min() >= 0 and y.max() < self.n_classes
        ):
            raise ValueError(
                f"MultinomialExperts needs class indices 0..{self.n_classes - 1} as the target."
            )
        return y

    def log_prob(self, XT, y):
        """(K, n) log class probabilities log p_k(y_i | x_i)."""
        return multinomial_log_prob(XT, y, self.coef)

    def penalty_value(self):
        """The experts' total penalty, sum_k of the elastic net of expert k's slopes."""
        return sum(slope_penalty(c, self.penalty, self.intercept, self.l1_ratio) for c in self.coef)

    def initialize(self, XT, y, resp, sample_weight):
        """Fit from zero coefficients: up to ``init_newton_steps`` Newton steps."""
        self.coef = np.zeros((self.n_experts, self.n_classes, XT.shape[0]))
        self._pending = None
        self.m_step(XT, y, resp, sample_weight, max_steps=self.init_newton_steps)

    def m_step(self, XT, y, resp, sample_weight, stats=None, max_steps=None):
        """Newton steps with per-expert step halving on the penalised objectives.

        Parameters
        ----------
        XT : ndarray of shape (p, n)
        y : ndarray of shape (n,)
            Class indices.
        resp : ndarray of shape (K, n)
        sample_weight : ndarray of shape (n,)
        stats : tuple, optional
            ``(q, grad, hess)`` at the current coefficients, as returned by
            :func:`mixexp._kernels.multinomial_stats`, if already known. A
            :class:`DeferredStats` makes this one unchecked full step
            (:meth:`propose`), checked by the next fused pass.
        max_steps : int, optional
            Newton steps to take (default ``newton_steps``).
        """
        if isinstance(stats, DeferredStats):
            self.propose(stats, resp)
            return
        steps = self.newton_steps if max_steps is None else max_steps
        for step in range(steps):
            if stats is None or step > 0:
                stats = multinomial_stats(XT, y, self.coef, resp, sample_weight)
            q, grad, hess = stats
            gain = self._newton_update(XT, y, resp, sample_weight, q, grad, hess)
            if gain <= 1e-12 * max(1.0, float(np.abs(q).sum())):
                break

    # -- deferred step: proposed now, checked by the next fused pass ------------
    def propose(self, stats, resp):
        """Take every expert's full Newton step without checking it.

        Parameters
        ----------
        stats : tuple
            ``(q, grad, hess)`` at the current coefficients.
        resp : ndarray of shape (K, n)
            The responsibilities they were computed from; kept (not copied)
            for :meth:`backtrack`, so the caller must not overwrite them before
            the step is checked.
        """
        delta, old = self._directions(*stats)
        self._pending = (self.coef.copy(), delta, old, resp, None)
        self.coef = self.coef.copy()
        self.coef[:, 1:] += delta

    @property
    def pending(self):
        """Whether a proposed step awaits :meth:`accept`."""
        return self._pending is not None

    @property
    def pending_resp(self):
        """The responsibilities of the proposed step (None when nothing is pending)."""
        return None if self._pending is None else self._pending[3]

    def accept(self, q_prev):
        """Check the proposed step given each expert's objective ``q_prev`` (K,) at it.

        Returns
        -------
        bool
            True if no expert's penalised objective decreased; the step is
            kept. Otherwise the experts whose objective decreased are left to
            :meth:`backtrack`.
        """
        old_coef, delta, old, resp, _ = self._pending
        penalties = np.array(
            [slope_penalty(c, self.penalty, self.intercept, self.l1_ratio) for c in self.coef]
        )
        new_obj = np.asarray(q_prev) - penalties
        ok = np.isfinite(new_obj) & (new_obj >= old)
        if ok.all():
            self._pending = None
            return True
        self._pending = (old_coef, delta, old, resp, ~ok)
        return False

    def backtrack(self, XT, y, sample_weight):
        """Halve the rejected experts' steps until they ascend (the others keep theirs)."""
        old_coef, delta, old, resp, rejected = self._pending
        self._pending = None
        self.coef[rejected] = old_coef[rejected]
        self._halving(XT, y, resp, sample_weight, delta, old, rejected, first=0.5)

    # -- helpers -------------------------------------------------------------
    def _directions(self, q, grad, hess):
        """Each expert's Newton direction (K, C - 1, p) and penalised objective (K,)."""
        K = self.n_experts
        delta = np.empty((K, self.n_classes - 1, self.coef.shape[2]))
        old = np.empty(K)
        for k in range(K):
            delta[k], old[k] = newton_direction(
                self.coef[k], q[k], grad[k], hess[k], self.penalty, self.intercept, self.l1_ratio
            )
        return delta, old

    def _newton_update(self, XT, y, resp, sample_weight, q, grad, hess):
        """One Newton step per expert, each halved until its objective does not decrease.

        Returns the total gain of the penalised objectives (0 for an expert whose
        step never ascends; its coefficients are then unchanged).
        """
        delta, old = self._directions(q, grad, hess)
        pending = np.ones(self.n_experts, dtype=bool)
        return self._halving(XT, y, resp, sample_weight, delta, old, pending)

    def _halving(self, XT, y, resp, sample_weight, delta, old, pending, first=1.0):
        """Step halving along ``delta`` for the ``pending`` experts, each its own step size.

        The first step size at which an expert's penalised objective is at
        least ``old`` is kept; an expert with none keeps its coefficients.
        Returns the total gain.
        """
        gain = np.zeros(self.n_experts)
        pending = pending.copy()
        t = first
        for _ in range(_MAX_HALVINGS):
            trial = self.coef.copy()
            trial[pending, 1:] += t * delta[pending]
            q_new = multinomial_stats(XT, y, trial, resp, sample_weight, active=pending, derivatives=False)[0]
            for k in np.flatnonzero(pending):
                new_obj = q_new[k] - slope_penalty(trial[k], self.penalty, self.intercept, self.l1_ratio)
                if np.isfinite(new_obj) and new_obj >= old[k]:
                    self.coef[k] = trial[k]
                    gain[k] = new_obj - old[k]
                    pending[k] = False
            if not pending.any():
                break
            t *= 0.5
        return float(gain.sum())

    def mean(self, XT):
        """Not defined for class labels: use :meth:`predict_proba`.

        Raises
        ------
        NotImplementedError
        """
        raise NotImplementedError(
            "MultinomialExperts model class labels, which have no mean; use predict_proba(XT) "
            "for each expert's class probabilities."
        )

    def predict_log_proba(self, XT):
        """(K, C, n) log class probabilities of each expert."""
        return np.stack([log_softmax_linear(XT, c)[0] for c in self.coef])

    def predict_proba(self, XT):
        """(K, C, n) class probabilities of each expert (summing to one over C)."""
        return np.stack([log_softmax_linear(XT, c)[1] for c in self.coef])

    # -- raw scale ------------------------------------------------------------
    def raw_params(self, scaling, intercept):
        """Parameters on the raw data's scale: ``{"coef": (K, C, intercept + p)}``."""
        sc = scaling
        coef = [linear_to_raw(c, sc.expert_mean, sc.expert_scale, intercept) for c in self.coef]
        return {"coef": np.stack(coef)}

    def set_raw_params(self, params, scaling, intercept):
        """Set the parameters from :meth:`raw_params`' output under ``scaling``."""
        sc = scaling
        self.coef = np.stack(
            [linear_from_raw(c, sc.expert_mean, sc.expert_scale, intercept) for c in params["coef"]]
        )
        self._pending = None

    # -- flat parameter vector -----------------------------------------------
    def get_flat(self):
        """Free parameters (classes 1..C-1 of each expert) as a flat vector."""
        return self.coef[:, 1:].ravel().copy()

    def flat_penalized_mask(self):
        """Boolean mask of the coordinates of :meth:`get_flat` the penalty applies to (the slopes).

        Used to count the coefficients an L1 penalty sets to zero
        (:func:`mixexp._penalties.flat_l1_zeros`).

        Returns
        -------
        ndarray of bool of shape (K * (C - 1) * p,)
        """
        K, C, p = self.coef.shape
        return np.tile(slope_mask(p, self.intercept), K * (C - 1)) > 0

    def set_flat(self, theta):
        """Set the free parameters from :meth:`get_flat`'s layout."""
        K, C, p = self.coef.shape
        coef = np.zeros((K, C, p))
        coef[:, 1:] = np.reshape(np.asarray(theta, dtype=float), (K, C - 1, p))
        self.coef = coef
        self._pending = None

    def flat_grad(self, XT, y, resp, sample_weight):
        """Gradient of ``sum_i w_i sum_k r_ki log p_k(y_i | x_i)`` with respect to :meth:`get_flat`.

        For expert k and class c >= 1: ``sum_i w_i r_ki (1[y_i = c] - p_k(c |
        x_i)) x_i``. No penalty (see :meth:`penalty_grad`).

        Parameters
        ----------
        XT : ndarray of shape (p, n)
        y : ndarray of shape (n,)
            Class indices.
        resp : ndarray of shape (K, n)
        sample_weight : ndarray of shape (n,)

        Returns
        -------
        ndarray of shape (K * (C - 1) * p,)
        """
        a = resp * sample_weight
        prob = self.predict_proba(XT)[:, 1:]  # (K, C - 1, n)
        onehot = np.asarray(y)[None, :] == np.arange(1, self.n_classes)[:, None]  # (C - 1, n)
        diff = (onehot[None] - prob) * a[:, None, :]
        return (diff @ XT.T).ravel()

    def penalty_grad(self):
        """Gradient of :meth:`penalty_value` with respect to :meth:`get_flat` (intercepts free).

        With ``l1_ratio > 0`` it is a subgradient (``sign(0) = 0`` at zero
        slopes): the L1 penalty has no gradient there.
        """
        if self.l1_ratio:
            return elastic_net_gradient(self.coef[:, 1:], self.penalty, self.l1_ratio, self.intercept).ravel()
        grad = self.penalty * self.coef[:, 1:]
        if self.intercept:
            grad[:, :, 0] = 0.0
        return grad.ravel()
