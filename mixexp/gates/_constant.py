"""Constant gate: mixing weights that do not depend on x (a finite mixture of regressions)."""

import numpy as np
from scipy.special import logsumexp

from ._softmax import GateEval


class ConstantGate:
    """Mixing proportions pi_k, the same for every x.

    With it a mixture of experts is the classical finite mixture of
    regressions (mixtools' ``regmixEM``, flexmix without a concomitant
    model). The M-step is closed form: pi_k = sum_i w_i r_ik / sum_i w_i.
    Parametrised like an intercept-only softmax gate, ``coef[k, 0] =
    log(pi_k / pi_0)``, so its coefficients read like the softmax gate's.

    Parameters
    ----------
    n_experts : int
    penalty : float, default=0.0
        Ignored (there are no slopes to penalise); accepted so the gates share
        a constructor.

    Attributes
    ----------
    coef : ndarray of shape (n_experts, 1)
    """

    kind = "constant"
    pending = False

    def __init__(self, n_experts, penalty=0.0):
        self.n_experts = n_experts
        self.penalty = penalty
        self.coef = None

    def n_parameters(self):
        """K - 1 free proportions."""
        return self.n_experts - 1

    def _log_pi(self):
        return self.coef[:, 0] - logsumexp(self.coef[:, 0])

    def evaluate(self, XT):
        """Log-weights and weights, each (K, n), as a :class:`GateEval`."""
        n = XT.shape[1]
        log_pi = self._log_pi()
        log = np.repeat(log_pi[:, None], n, axis=1)
        return GateEval(log, np.exp(log))

    def log_weights(self, XT):
        """(K, n) log mixing weights."""
        return self.evaluate(XT).log

    def penalty_value(self):
        """No penalty: 0."""
        return 0.0

    def initialize(self, XT, resp, sample_weight):
        """Proportions from the starting responsibilities."""
        self.coef = np.zeros((self.n_experts, 1))
        return self.m_step(XT, resp, sample_weight)

    def m_step(self, XT, resp, sample_weight, current=None, stats=None):
        """pi_k = sum_i w_i r_ki / sum_i w_i (a proportion that is 0 stays 0)."""
        nk = resp @ sample_weight
        with np.errstate(divide="ignore"):
            log_pi = np.log(nk / nk.sum())
        # keep a vanished expert representable: a tiny floor instead of -inf
        log_pi = np.maximum(log_pi, np.log(np.finfo(float).tiny))
        self.coef = (log_pi - log_pi[0])[:, None]
        return self.evaluate(XT)

    def raw_params(self, scaling, intercept=True):
        """``{"coef": (K, 1)}``: log(pi_k / pi_0); nothing depends on x."""
        return {"coef": self.coef.copy()}

    def set_raw_params(self, params, scaling, intercept=True):
        """Set the parameters from :meth:`raw_params`' output."""
        self.coef = np.array(params["coef"], dtype=float)[:, :1]

    # -- flat parameter vector -----------------------------------------------
    def get_flat(self):
        """Free parameters as a flat vector: ``log(pi_k / pi_0)`` for k = 1..K-1."""
        return self.coef[1:, 0].copy()

    def set_flat(self, theta):
        """Set the free parameters from :meth:`get_flat`'s layout."""
        self.coef = np.concatenate([[0.0], np.asarray(theta, dtype=float)])[:, None]

    def flat_grad(self, XT, resp, sample_weight):
        """Gradient of ``sum_i w_i sum_k r_ki log pi_k`` with respect to :meth:`get_flat`.

        Component k is ``N_k - pi_k N`` with ``N_k = sum_i w_i r_ki`` and
        ``N = sum_k N_k``.

        Parameters
        ----------
        XT : ndarray of shape (p, n)
            Unused (the weights do not depend on x).
        resp : ndarray of shape (K, n)
        sample_weight : ndarray of shape (n,)

        Returns
        -------
        ndarray of shape (K - 1,)
        """
        nk = resp @ sample_weight
        return nk[1:] - np.exp(self._log_pi()[1:]) * nk.sum()

    def penalty_grad(self):
        """Zeros: the constant gate has no penalty."""
        return np.zeros(self.n_experts - 1)
