"""Normalised Gaussian gate (Xu, Jordan & Hinton 1995): the gate is a Gaussian mixture on x.

``g_k(x) = pi_k N(x; mu_k, Sigma_k) / sum_j pi_j N(x; mu_j, Sigma_j)``. Because the
gate is a density of x, a mixture of experts with this gate models the joint
``p(x, y) = sum_k pi_k N(x; mu_k, Sigma_k) f_k(y | x)``, and EM maximises the joint
likelihood: the E-step's responsibilities are those of the conditional model
(the normaliser ``p(x) = sum_j pi_j N(x; mu_j, Sigma_j)`` is common to all k),
and the gate's M-step is the closed-form M-step of a Gaussian mixture on x
(weighted proportions, means and covariances), as in
:class:`sklearn.mixture.GaussianMixture`.

The module-level functions are the family maths, testable without a gate:
:func:`estimate_gaussian_parameters` (the M-step from weighted moments),
:func:`precision_cholesky` and :func:`log_gaussian_density` (stable
log-densities through Cholesky factors of the precisions, like scikit-learn's
``_estimate_log_gaussian_prob``).
"""

from typing import NamedTuple

import numpy as np

from .._kernels import linear_stats

_EPS = np.finfo(np.float64).eps
COVARIANCE_TYPES = ("full", "diag", "spherical")


class GaussianGateEval(NamedTuple):
    """The Gaussian gate evaluated on a design.

    ``log`` and ``prob`` are the (K, n) log-weights and weights, as in
    :class:`~mixexp.gates.GateEval`; ``log_marginal`` is the (n,) marginal
    log-density ``log p(x_i) = log sum_k pi_k N(x_i; mu_k, Sigma_k)`` on the
    standardised gate columns, the by-product of the normalisation.
    """

    log: np.ndarray
    prob: np.ndarray
    log_marginal: np.ndarray
    #: sum_i w_i log p(x_i) under the pass's sample weights, when the pass computed it
    marginal_total: float | None = None


def _check_covariance_type(covariance_type):
    if covariance_type not in COVARIANCE_TYPES:
        raise ValueError(f"covariance_type must be one of {COVARIANCE_TYPES}; got {covariance_type!r}.")


def _floor_full(cov, reg_covar):
    """Clip the eigenvalues of each symmetric (d, d) matrix at ``reg_covar``.

    This is the maximiser of the Gaussian log-likelihood over covariances whose
    eigenvalues are all >= ``reg_covar`` (the criterion depends on Sigma only
    through the eigenvalues of Sigma^-1 S in S's eigenbasis), so the M-step
    stays an exact maximisation and EM stays monotone. A matrix whose smallest
    eigenvalue is already above the floor is returned unchanged.
    """
    out = cov.copy()
    for k in range(cov.shape[0]):
        vals, vecs = np.linalg.eigh(cov[k])
        if vals[0] < reg_covar:
            out[k] = (vecs * np.maximum(vals, reg_covar)) @ vecs.T
    return out


def estimate_gaussian_parameters(XT, resp, sample_weight, reg_covar, covariance_type):
    """Closed-form M-step of a Gaussian mixture on the rows of a design.

    Parameters
    ----------
    XT : ndarray of shape (1 + d, n)
        Feature-major design whose first row is the constant 1 (ignored as a
        feature: it gives the weighted counts).
    resp : ndarray of shape (K, n)
        Responsibilities.
    sample_weight : ndarray of shape (n,)
    reg_covar : float
        Floor on the covariances: the eigenvalues (``"full"``), the variances
        (``"diag"``) or the variance (``"spherical"``) are at least
        ``reg_covar``. The M-step maximises the weighted likelihood over that
        constrained set, so it is an exact maximisation.
    covariance_type : {"full", "diag", "spherical"}

    Returns
    -------
    nk : ndarray of shape (K,)
        ``sum_i w_i r_ki + 10 * eps`` (the guard keeps empty components finite).
    means : ndarray of shape (K, d)
    covariances : ndarray
        (K, d, d), (K, d) or (K,) by ``covariance_type``.
    """
    n = XT.shape[1]
    gram, _, _, _ = linear_stats(XT, np.zeros(n), resp, sample_weight)
    return parameters_from_moments(gram, reg_covar, covariance_type)


def parameters_from_moments(gram, reg_covar, covariance_type):
    """The M-step of :func:`estimate_gaussian_parameters` from the weighted moments.

    Parameters
    ----------
    gram : ndarray of shape (K, 1 + d, 1 + d)
        ``sum_i w_i r_ki x~_i x~_i'`` with ``x~_i = (1, x_i)``.
    reg_covar : float
    covariance_type : {"full", "diag", "spherical"}

    Returns
    -------
    nk, means, covariances
        As :func:`estimate_gaussian_parameters`.
    """
    nk = gram[:, 0, 0] + 10 * _EPS
    means = gram[:, 0, 1:] / nk[:, None]
    second = gram[:, 1:, 1:] / nk[:, None, None]
    if covariance_type == "full":
        cov = second - means[:, :, None] * means[:, None, :]
        return nk, means, _floor_full(cov, reg_covar)
    var = np.diagonal(second, axis1=1, axis2=2) - means**2
    if covariance_type == "diag":
        return nk, means, np.maximum(var, reg_covar)
    return nk, means, np.maximum(var.mean(axis=1), reg_covar)


def precision_cholesky(covariances, covariance_type):
    """Cholesky factors of the precision matrices (scikit-learn's layout).

    For ``"full"``, ``P_k`` (d, d) upper triangular with ``P_k P_k^T =
    Sigma_k^-1``; for ``"diag"`` and ``"spherical"``, ``1 / sqrt(variances)``.

    Raises
    ------
    ValueError
        When a covariance is not positive definite.
    """
    message = (
        "A Gaussian gate covariance is not positive definite (a component has "
        "collapsed onto too few distinct rows); increase reg_covar, decrease "
        "n_experts, or use fewer or less collinear gate_features."
    )
    if covariance_type == "full":
        K, d, _ = covariances.shape
        prec = np.empty_like(covariances)
        for k in range(K):
            try:
                chol = np.linalg.cholesky(covariances[k])
            except np.linalg.LinAlgError:
                raise ValueError(message) from None
            prec[k] = np.linalg.solve(chol, np.eye(d)).T  # inverse of L, transposed: upper
        return prec
    if not np.all(covariances > 0):
        raise ValueError(message)
    return 1.0 / np.sqrt(covariances)


def log_gaussian_density(XT, means, prec_chol, covariance_type):
    """(K, n) log-densities log N(x_i; mu_k, Sigma_k) of the columns of ``XT`` (d, n).

    Computed through the Cholesky factors of the precisions (``prec_chol`` from
    :func:`precision_cholesky`), as scikit-learn's ``_estimate_log_gaussian_prob``.
    """
    d, n = XT.shape
    K = means.shape[0]
    if covariance_type == "full":
        maha = np.empty((K, n))
        log_det = np.empty(K)
        for k in range(K):
            P = prec_chol[k]
            z = P.T @ XT
            z -= (P.T @ means[k])[:, None]
            np.einsum("dn,dn->n", z, z, out=maha[k])
            log_det[k] = np.log(np.diag(P)).sum()
    elif covariance_type == "diag":
        prec = prec_chol**2
        maha = prec @ (XT * XT)
        maha -= 2.0 * (means * prec) @ XT
        maha += np.sum(means**2 * prec, axis=1)[:, None]
        log_det = np.log(prec_chol).sum(axis=1)
    else:
        prec = prec_chol**2
        maha = np.einsum("dn,dn->n", XT, XT)[None, :] - 2.0 * (means @ XT)
        maha += np.sum(means**2, axis=1)[:, None]
        maha *= prec[:, None]
        log_det = d * np.log(prec_chol)
    maha *= -0.5
    maha += (log_det - 0.5 * d * np.log(2.0 * np.pi))[:, None]
    return maha


class GaussianGate:
    """Normalised Gaussian gate of Xu, Jordan & Hinton (1995).

    ``g_k(x) = pi_k N(x; mu_k, Sigma_k) / sum_j pi_j N(x; mu_j, Sigma_j)`` on the
    gate features ``x`` (the rows of the gate design after its constant first
    row, which this gate ignores). The gate is a Gaussian mixture on x, so the
    mixture of experts models the joint density ``p(x, y)`` and EM maximises
    the joint likelihood ``sum_i w_i log sum_k pi_k N(x_i; mu_k, Sigma_k)
    f_k(y_i | x_i)``, which is the conditional log-likelihood plus the gate's
    marginal ``sum_i w_i log p(x_i)`` (:meth:`marginal_log_likelihood`; the
    attribute ``models_x = True`` tells the EM loop to add it). The M-step is
    closed form (weighted proportions, means and covariances): :meth:`m_step`
    from responsibilities, or :meth:`propose` from the weighted moments that
    the fused pass with Gaussian experts returns
    (:func:`mixexp._kernels.fused_gaussian_gate_gaussian`, via
    :meth:`kernel_params`).

    Parameters are held on the estimator's standardised gate columns (see
    :mod:`mixexp._scaling`); :meth:`raw_params` reports them on the raw scale.

    Parameters
    ----------
    n_experts : int
        Number of experts K.
    covariance_type : {"full", "diag", "spherical"}, default="full"
        Structure of each Sigma_k on the standardised gate columns: any
        positive definite matrix, a diagonal matrix, or a multiple of the
        identity.
    reg_covar : float, default=1e-6
        Floor on the covariances (eigenvalues, variances or the variance),
        on the standardised columns (each of unit variance over the data).
        The M-step maximises over covariances above the floor, so EM remains
        monotone.
    penalty : float, default=0.0
        Ignored (``reg_covar`` regularises this gate); accepted so the gates
        share a constructor.

    Attributes
    ----------
    weights : ndarray of shape (n_experts,)
        Mixing proportions pi_k.
    means : ndarray of shape (n_experts, n_gate_features)
    covariances : ndarray
        (K, d, d), (K, d) or (K,) by ``covariance_type``.
    precisions_cholesky : ndarray
        Cholesky factors of the precisions, same layout as ``covariances``.
    """

    kind = "gaussian"
    #: the gate is a density of x: the EM objective is the joint likelihood
    models_x = True
    pending = False

    def __init__(self, n_experts, covariance_type="full", reg_covar=1e-6, penalty=0.0):
        _check_covariance_type(covariance_type)
        if not reg_covar >= 0:
            raise ValueError(f"reg_covar must be non-negative; got {reg_covar!r}.")
        self.n_experts = n_experts
        self.covariance_type = covariance_type
        self.reg_covar = reg_covar
        self.penalty = penalty
        self.weights = None
        self.means = None
        self.covariances = None
        self.precisions_cholesky = None

    # -- interface ---------------------------------------------------------------
    def n_parameters(self):
        """Free parameters: K - 1 proportions, K d means and the covariances."""
        K, d = self.means.shape
        cov = {"full": d * (d + 1) // 2, "diag": d, "spherical": 1}[self.covariance_type]
        return (K - 1) + K * d + K * cov

    def _check_design(self, XT):
        if XT.shape[0] < 2:
            raise ValueError(
                "gate='gaussian' needs at least one gate feature (the gate is a Gaussian "
                "mixture on the gate features); gate_features selects none."
            )

    def _set(self, weights, means, covariances):
        self.precisions_cholesky = precision_cholesky(covariances, self.covariance_type)
        self.weights = weights
        self.means = means
        self.covariances = covariances

    def evaluate(self, XT):
        """Log-weights, weights (each (K, n)) and log p(x_i), as a :class:`GaussianGateEval`.

        Parameters
        ----------
        XT : ndarray of shape (1 + d, n)
            Gate design, feature-major, constant first row (ignored).
        """
        log = log_gaussian_density(XT[1:], self.means, self.precisions_cholesky, self.covariance_type)
        with np.errstate(divide="ignore"):
            log += np.log(self.weights)[:, None]
        top = log.max(axis=0)
        top[~np.isfinite(top)] = 0.0
        log -= top
        prob = np.exp(log)
        total = prob.sum(axis=0)
        prob /= total
        log_norm = np.log(total)
        log -= log_norm
        return GaussianGateEval(log, prob, log_norm + top)

    def log_weights(self, XT):
        """(K, n) log mixing weights log g_k(x_i)."""
        return self.evaluate(XT).log

    def marginal_log_likelihood(self, gate_eval, sample_weight):
        """``sum_i w_i log p(x_i)`` from an evaluation (rows of weight 0 skipped).

        The EM loop adds it to the conditional log-likelihood (see
        ``mixexp.solvers._em.objective``): with this gate EM maximises the
        joint likelihood of (x, y).
        """
        if gate_eval.marginal_total is not None:  # summed by the fused pass
            return gate_eval.marginal_total
        lm = gate_eval.log_marginal
        return float(np.sum(np.where(sample_weight > 0, sample_weight * lm, 0.0)))

    def penalty_value(self):
        """No penalty: 0 (``reg_covar`` is a constraint, not a penalty)."""
        return 0.0

    def initialize(self, XT, resp, sample_weight, max_steps=None):
        """Fit the gate in closed form to starting responsibilities."""
        return self.m_step(XT, resp, sample_weight)

    def m_step(self, XT, resp, sample_weight, current=None, stats=None, max_steps=None):
        """Closed-form M-step: weighted proportions, means and covariances.

        Maximises ``sum_i w_i sum_k r_ki (log pi_k + log N(x_i; mu_k, Sigma_k))``
        over covariances above the ``reg_covar`` floor. ``current``, ``stats``
        and ``max_steps`` are accepted for the gate interface and unused.

        Returns
        -------
        GaussianGateEval
            The gate evaluated at the new parameters.
        """
        self._check_design(XT)
        nk, means, cov = estimate_gaussian_parameters(
            XT, resp, sample_weight, self.reg_covar, self.covariance_type
        )
        self._set(nk / nk.sum(), means, cov)
        return self.evaluate(XT)

    # -- fused pass (Gaussian experts) ---------------------------------------------
    def kernel_params(self):
        """``(const, means, prec_chol)`` for :func:`mixexp._kernels.fused_gaussian_gate_gaussian`.

        ``const_k = log pi_k + log det P_k - d log(2 pi) / 2`` and the precision
        Cholesky factors as dense (K, d, d) upper-triangular matrices
        (diagonal for ``"diag"`` and ``"spherical"``).
        """
        K, d = self.means.shape
        P = self.precisions_cholesky
        if self.covariance_type == "full":
            prec = P
            log_det = np.log(np.diagonal(P, axis1=1, axis2=2)).sum(axis=1)
        else:
            diag = P if self.covariance_type == "diag" else np.repeat(P[:, None], d, axis=1)
            prec = np.zeros((K, d, d))
            prec[:, np.arange(d), np.arange(d)] = diag
            log_det = np.log(diag).sum(axis=1)
        const = np.log(self.weights) + log_det - 0.5 * d * np.log(2.0 * np.pi)
        return const, self.means, prec

    def propose(self, stats):
        """Closed-form M-step from the weighted moments of a fused pass.

        ``stats`` is the (K, 1 + d, 1 + d) matrix ``sum_i w_i r_ki x~_i x~_i'``
        of the gate design. The step is an exact maximisation, so there is
        nothing to check: :attr:`pending` stays False.
        """
        nk, means, cov = parameters_from_moments(stats, self.reg_covar, self.covariance_type)
        self._set(nk / nk.sum(), means, cov)

    # -- raw scale ---------------------------------------------------------------
    def raw_params(self, scaling, intercept=True):
        """Parameters on the raw scale of the gate columns.

        ``x_raw = gate_mean + gate_scale * x_std`` column by column, so the
        means are ``gate_mean + gate_scale * mu_k`` and the covariances
        ``D Sigma_k D`` with ``D = diag(gate_scale)``. A ``"spherical"``
        covariance (spherical on the standardised columns) is diagonal on the
        raw scale: its raw covariances are returned as (K, d) variances.

        Returns
        -------
        dict
            ``{"weights": (K,), "means": (K, d), "covariances": ...}``:
            (K, d, d) for ``"full"``, (K, d) for ``"diag"`` and ``"spherical"``.
        """
        s, m = scaling.gate_scale, scaling.gate_mean
        means = m + s * self.means
        if self.covariance_type == "full":
            cov = self.covariances * s[None, :, None] * s[None, None, :]
        elif self.covariance_type == "diag":
            cov = self.covariances * s**2
        else:
            cov = self.covariances[:, None] * s**2
        return {"weights": self.weights.copy(), "means": means, "covariances": cov}

    def set_raw_params(self, params, scaling, intercept=True):
        """Set the parameters from :meth:`raw_params`' output under ``scaling``."""
        s, m = scaling.gate_scale, scaling.gate_mean
        weights = np.array(params["weights"], dtype=float)
        means = (np.array(params["means"], dtype=float) - m) / s
        cov = np.array(params["covariances"], dtype=float)
        if self.covariance_type == "full":
            cov = cov / (s[None, :, None] * s[None, None, :])
        elif self.covariance_type == "diag":
            cov = cov / s**2
        else:
            cov = (cov / s**2).mean(axis=1)
        self._set(weights, means, cov)

    # -- flat parameter vector -----------------------------------------------------
    def get_flat(self):
        """Free parameters as a flat vector.

        ``log(pi_k / pi_0)`` for k >= 1, the means, then the covariances:
        the lower triangle (row by row) of the Cholesky factor of each Sigma_k
        with its diagonal on the log scale (``"full"``), or the log-variances.
        """
        log_pi = np.log(self.weights)
        parts = [log_pi[1:] - log_pi[0], self.means.ravel()]
        if self.covariance_type == "full":
            d = self.means.shape[1]
            rows, cols = np.tril_indices(d)
            chol = np.linalg.cholesky(self.covariances)
            tri = chol[:, rows, cols]
            tri[:, rows == cols] = np.log(tri[:, rows == cols])
            parts.append(tri.ravel())
        else:
            parts.append(np.log(self.covariances).ravel())
        return np.concatenate(parts)

    def set_flat(self, theta):
        """Set the parameters from :meth:`get_flat`'s layout."""
        theta = np.asarray(theta, dtype=float)
        K, d = self.means.shape
        logits = np.concatenate([[0.0], theta[: K - 1]])
        weights = np.exp(logits - np.logaddexp.reduce(logits))
        means = theta[K - 1 : K - 1 + K * d].reshape(K, d).copy()
        rest = theta[K - 1 + K * d :]
        if self.covariance_type == "full":
            rows, cols = np.tril_indices(d)
            tri = rest.reshape(K, rows.size).copy()
            tri[:, rows == cols] = np.exp(tri[:, rows == cols])
            chol = np.zeros((K, d, d))
            chol[:, rows, cols] = tri
            cov = chol @ np.swapaxes(chol, 1, 2)
        else:
            cov = np.exp(rest).reshape(self.covariances.shape)
        self._set(weights, means, cov)
