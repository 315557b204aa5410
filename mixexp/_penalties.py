"""Elastic-net penalties of linear coefficient blocks, and the solvers they need.

Every penalised part (the softmax gate, the expert families) penalises the
slopes of its linear predictors, never the intercepts, with scikit-learn's
``ElasticNet`` parametrisation

.. math::

    P(w) = \\alpha \\Bigl(\\rho \\lVert w \\rVert_1 + \\frac{1 - \\rho}{2} \\lVert w \\rVert_2^2\\Bigr),

``alpha = penalty`` and ``rho = l1_ratio`` in [0, 1], on the standardised scale
the parts work on. ``rho = 0`` is the ridge penalty ``alpha / 2 ||w||^2`` the
parts have always used, computed by the same expression (so fits with
``l1_ratio=0`` are bitwise those of a ridge-only code).

With ``rho > 0`` the penalised objective has a kink at zero, so the parts fit
it by

* **proximal Newton** (Lee, Sun and Saunders 2014) where the M-step is a
  Newton step (softmax gate, multinomial and GLM experts): the smooth part is
  replaced by its quadratic model from the Newton statistics (gradient and
  negative Hessian), the penalty is kept exactly, the model is minimised by
  cyclic coordinate descent with soft-thresholding (:func:`enet_coordinate_descent`),
  and the step towards its minimiser is halved until the TRUE penalised
  objective does not decrease (a generalised EM step);
* **coordinate descent on the Gram statistics** for least-squares M-steps
  (Gaussian and Student-t experts, :func:`penalized_least_squares`). These
  location-scale families penalise ``b_k / sigma_k`` (Städler, Bühlmann and
  van de Geer 2010), which makes the penalty invariant to the scale of y.

Coordinate descent starts from the current coefficients and minimises one
coordinate exactly at a time, so it never increases the (convex) model it
minimises.

References
----------
.. [1] Khalili, A. (2010). New estimation and feature selection methods in
   mixture-of-experts models. Canadian Journal of Statistics, 38(4), 519-539.
.. [2] Chamroukhi, F. and Huynh, B.-T. (2019). Regularized maximum likelihood
   estimation and feature selection in mixtures-of-experts models. Journal de
   la Société Française de Statistique, 160(1), 57-85.
.. [3] Lee, J. D., Sun, Y. and Saunders, M. A. (2014). Proximal Newton-type
   methods for minimizing composite functions. SIAM J. Optim. 24(3), 1420-1443.
.. [4] Friedman, J., Hastie, T. and Tibshirani, R. (2010). Regularization paths
   for generalized linear models via coordinate descent. J. Stat. Softw. 33(1).
.. [5] Städler, N., Bühlmann, P. and van de Geer, S. (2010). l1-penalization
   for mixture regression models. TEST, 19(2), 209-256.
"""

import numpy as np

_EPS = np.finfo(np.float64).eps
_TINY = np.finfo(np.float64).tiny
#: coordinate descent stops when no coordinate moves by more than this, relative
#: to max(1, the largest coefficient), or after this many sweeps
CD_TOL = 1e-12
CD_MAX_SWEEPS = 2000


def check_l1_ratio(l1_ratio, name="l1_ratio"):
    """Return ``l1_ratio`` as a float, raising a ValueError unless it is in [0, 1]."""
    try:
        value = float(l1_ratio)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number in [0, 1]; got {l1_ratio!r}.") from None
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be in [0, 1]; got {l1_ratio!r}.")
    return value


def soft_threshold(z, t):
    """The soft-thresholding operator ``sign(z) max(|z| - t, 0)`` (elementwise).

    It is the proximal operator of ``t |z|``.
    """
    return np.sign(z) * np.maximum(np.abs(z) - t, 0.0)


def slope_mask(p, intercept):
    """(p,) 1.0 on penalised columns, 0.0 on the intercept (column 0 when ``intercept``)."""
    mask = np.ones(p)
    if intercept and p:
        mask[0] = 0.0
    return mask


def elastic_net_penalty(coef, penalty, l1_ratio=0.0, intercept=True):
    """``penalty * (l1_ratio ||w||_1 + (1 - l1_ratio) / 2 ||w||^2)`` of the slopes of ``coef``.

    Parameters
    ----------
    coef : ndarray of shape (..., p)
        Coefficient rows; the last axis is the design's columns.
    penalty : float
    l1_ratio : float, default=0.0
    intercept : bool, default=True
        Whether column 0 is an unpenalised intercept.

    Returns
    -------
    float
    """
    slopes = coef[..., 1:] if intercept else coef
    if l1_ratio == 0.0:
        # the ridge penalty, the same expression as before elastic nets existed
        return 0.5 * penalty * float(np.sum(slopes**2))
    return penalty * (
        l1_ratio * float(np.sum(np.abs(slopes))) + 0.5 * (1.0 - l1_ratio) * float(np.sum(slopes**2))
    )


def elastic_net_gradient(coef, penalty, l1_ratio=0.0, intercept=True):
    """Gradient (a subgradient where a slope is 0) of :func:`elastic_net_penalty`.

    Where ``l1_ratio > 0`` and a slope is exactly zero the penalty has no
    gradient; this returns the subgradient with ``sign(0) = 0`` there (the
    ridge part only). Gradient methods that need a true gradient must not be
    used with an L1 penalty (``solver="lbfgs"`` refuses it).

    Returns
    -------
    ndarray of the shape of ``coef``
    """
    grad = penalty * ((1.0 - l1_ratio) * coef + l1_ratio * np.sign(coef))
    if intercept:
        grad[..., 0] = 0.0
    return grad


def enet_coordinate_descent(A, c, l1, z0, tol=CD_TOL, max_sweeps=CD_MAX_SWEEPS):
    """Minimise ``z'Az / 2 - c'z + sum_j l1_j |z_j|`` by cyclic coordinate descent.

    ``A`` is symmetric positive semi-definite (a ridge term, if any, already on
    its diagonal). Each coordinate is minimised exactly,
    ``z_j = S(c_j - sum_{i != j} A_ji z_i, l1_j) / A_jj`` with ``S`` the
    soft-thresholding operator, so starting from ``z0`` the objective never
    increases. Coordinates with ``A_jj <= 0`` (no information, e.g. an expert
    without weight) stay at their starting value.

    Parameters
    ----------
    A : ndarray of shape (m, m)
    c : ndarray of shape (m,)
    l1 : ndarray of shape (m,)
        Non-negative L1 weights.
    z0 : ndarray of shape (m,)
        Starting point.
    tol : float, default=1e-12
        Stop when no coordinate moves by more than ``tol * max(1, max|z|)``.
    max_sweeps : int, default=2000

    Returns
    -------
    ndarray of shape (m,)
    """
    z = np.array(z0, dtype=float)
    diag = np.diag(A).copy()
    grad = A @ z - c  # gradient of the smooth part
    active = np.flatnonzero(diag > 0)
    for _ in range(max_sweeps):
        biggest = 0.0
        for j in active:
            zj = z[j]
            r = diag[j] * zj - grad[j]
            a = abs(r) - l1[j]
            new = (r / abs(r)) * a / diag[j] if a > 0.0 else 0.0
            d = new - zj
            if d != 0.0:
                grad += A[:, j] * d
                z[j] = new
                biggest = max(biggest, abs(d))
        if biggest <= tol * max(1.0, float(np.max(np.abs(z), initial=0.0))):
            break
    return z


def prox_newton_direction(coef, grad, hess, penalty, l1_ratio, mask):
    """Proximal Newton direction of ``q(w) - P(w)`` at ``w = coef`` (flat vectors).

    The smooth part ``q`` is replaced by its quadratic model ``q + g'd - d'Hd / 2``
    (``g`` its gradient, ``H`` its negative Hessian); the penalised model is
    maximised exactly (up to coordinate descent's tolerance) by
    :func:`enet_coordinate_descent` from ``coef``, and the direction is the
    step to its maximiser. A small Levenberg damping keeps the model strictly
    concave. A zero direction means ``coef`` maximises the model: it satisfies
    the optimality conditions of the penalised objective.

    Parameters
    ----------
    coef : ndarray of shape (m,)
    grad : ndarray of shape (m,)
    hess : ndarray of shape (m, m)
        Negative Hessian of ``q`` (positive semi-definite).
    penalty, l1_ratio : float
    mask : ndarray of shape (m,)
        1.0 on penalised coordinates, 0.0 on intercepts.

    Returns
    -------
    ndarray of shape (m,)
    """
    m = hess.shape[0]
    l2 = penalty * (1.0 - l1_ratio) * mask
    # Levenberg damping keeps the model strictly concave; it changes the step only
    H = hess + np.diag(1e-10 * max(1.0, float(np.trace(hess) + l2.sum()) / max(m, 1)) * np.ones(m))
    A = H + np.diag(l2)
    c = grad + H @ coef
    z = enet_coordinate_descent(A, c, penalty * l1_ratio * mask, coef)
    delta = z - coef
    delta[~np.isfinite(delta)] = 0.0
    return delta


def penalized_least_squares(gram, xy, yy, nk, var_floor, coef, var, penalty, l1_ratio, intercept):
    """One ECM step of elastic-net penalised Gaussian regression for each expert.

    The penalty is on the slopes divided by the noise standard deviation,
    ``phi = b / s`` (Städler, Bühlmann and van de Geer 2010), so expert k's
    objective is

    ``L_k(b, s^2) = -n_k / 2 log(2 pi s^2) - RSS_k(b) / (2 s^2) - P(b / s)``,

    ``RSS_k(b) = yy_k - 2 b'xy_k + b'G_k b`` from the weighted moments. The step
    first maximises ``L_k`` over ``b`` at the current ``s``: multiplied by
    ``s^2`` this is the weighted elastic net

    ``min_b b'G_k b / 2 - b'xy_k + s alpha rho ||b||_1 + alpha (1 - rho) / 2 ||b||^2``,

    solved by coordinate descent from the current ``b`` (so never worse);
    then over ``s^2 >= var_floor`` at the new ``b``: with ``r = 1 / s``,
    ``L_k = n_k log r - r^2 A / 2 - r B + const``, ``A = RSS_k + alpha (1 -
    rho) ||b||^2``, ``B = alpha rho ||b||_1``, is concave in ``r`` and
    maximised at the positive root of ``A r^2 + B r - n_k = 0``; the floor
    caps ``r``. Neither half-step decreases ``L_k``: a generalised EM step.
    (Alternating them to convergence within the M-step did not reduce the
    number of EM iterations in our trials, so one round is taken.)

    Penalising ``b / s`` rather than ``b`` makes the penalty invariant to the
    scale of y and keeps the L1 threshold proportional to ``s``, not
    ``s^2``: with ``b`` penalised, an inflated variance early in EM multiplies
    the threshold and can zero every slope for good.

    Parameters
    ----------
    gram : ndarray of shape (K, p, p)
    xy : ndarray of shape (K, p)
    yy, nk : ndarray of shape (K,)
    var_floor : float
    coef : ndarray of shape (K, p)
        Current coefficients (the starting point of coordinate descent).
    var : ndarray of shape (K,)
        Current noise variances.
    penalty, l1_ratio : float
    intercept : bool
        Whether column 0 is an unpenalised intercept.

    Returns
    -------
    coef : ndarray of shape (K, p)
    var : ndarray of shape (K,)
    """
    K, p = xy.shape
    mask = slope_mask(p, intercept)
    floor = max(var_floor or 0.0, _TINY)
    new_coef = np.array(coef, dtype=float)
    new_var = np.array(var, dtype=float)
    for k in range(K):
        s2 = new_var[k]
        if not (np.isfinite(s2) and s2 > 0):
            s2 = floor
        A = gram[k] + np.diag(penalty * (1.0 - l1_ratio) * mask)
        b = enet_coordinate_descent(A, xy[k], np.sqrt(s2) * penalty * l1_ratio * mask, new_coef[k])
        new_coef[k] = b
        if not nk[k] > 10 * _EPS:
            continue  # no weight: the objective does not depend on the variance
        rss = max(float(yy[k] - 2.0 * (b @ xy[k]) + b @ gram[k] @ b), 0.0)
        slopes = b * mask
        quad = rss + penalty * (1.0 - l1_ratio) * float(slopes @ slopes)
        lin = penalty * l1_ratio * float(np.abs(slopes).sum())
        if quad > 0:
            # the positive root of quad r^2 + lin r - nk = 0, in a form without cancellation
            r = 2.0 * nk[k] / (lin + np.sqrt(lin * lin + 4.0 * quad * nk[k]))
        elif lin > 0:
            r = nk[k] / lin
        else:
            r = np.inf
        new_var[k] = max(1.0 / (r * r) if r > 0 else np.inf, floor)
    return new_coef, new_var


class PenalizedCoefMixin:
    """Elastic-net penalty on the slopes of an expert family's ``coef`` (K, p).

    For families whose parameters on the scale of X are ``coef`` and whose
    :meth:`get_flat` starts with ``coef.ravel()``. The family sets
    ``penalty``, ``l1_ratio`` and ``intercept`` (whether column 0 of the design
    is the constant). A location-scale family sets ``penalize_over_scale =
    True``: its penalty is then on ``coef_k / sqrt(var_k)`` (see
    :func:`penalized_least_squares`) and its :meth:`get_flat` continues with
    the K log-variances.
    """

    penalty = 0.0
    l1_ratio = 0.0
    intercept = True
    penalize_over_scale = False

    def _penalized_coef(self):
        if self.penalize_over_scale:
            return self.coef / np.sqrt(self.var)[:, None]
        return self.coef

    def penalty_value(self):
        """The experts' total elastic-net penalty of their slopes (see :mod:`mixexp._penalties`).

        For location-scale families the penalty is on the slopes divided by
        each expert's noise standard deviation.
        """
        if not self.penalty or self.coef is None:
            return 0.0
        return elastic_net_penalty(self._penalized_coef(), self.penalty, self.l1_ratio, self.intercept)

    def penalty_grad(self):
        """Gradient of :meth:`penalty_value` with respect to ``get_flat()``.

        With ``l1_ratio > 0`` it is a subgradient (``sign(0) = 0`` at zero
        slopes): the L1 penalty has no gradient there.
        """
        flat = np.zeros(self.get_flat().size)
        if not self.penalty:
            return flat
        phi = self._penalized_coef()
        grad = elastic_net_gradient(phi, self.penalty, self.l1_ratio, self.intercept)
        if self.penalize_over_scale:
            sd = np.sqrt(self.var)[:, None]
            # d/d log var of P(b / s): phi scales as exp(-log var / 2)
            flat[self.coef.size : self.coef.size + self.var.size] = -0.5 * np.sum(grad * phi, axis=1)
            grad = grad / sd
        flat[: grad.size] = grad.ravel()
        return flat

    def flat_penalized_mask(self):
        """Boolean mask of the coordinates of ``get_flat()`` the elastic-net penalty applies to.

        The slopes of ``coef`` (every column but the intercept), not the
        family's other parameters (log-variances, log degrees of freedom,
        shapes). See :func:`flat_l1_zeros`.

        Returns
        -------
        ndarray of bool of shape (n_flat,)
        """
        mask = np.zeros(self.get_flat().size, dtype=bool)
        K, p = self.coef.shape
        mask[: K * p] = np.tile(slope_mask(p, self.intercept), K) > 0
        return mask


# -- the active set of an L1 penalty (degrees of freedom, inference) ---------------------
def has_l1(part):
    """Whether ``part`` carries an L1 term: ``penalty > 0`` and ``l1_ratio > 0``.

    Parts without these attributes (the Gaussian and constant gates) carry none.
    A composite part (a tree of gates with ``nodes``) carries one if a node does.
    """
    nodes = getattr(part, "nodes", None)
    if nodes is not None and not hasattr(part, "flat_penalized_mask"):
        return any(has_l1(node) for node in nodes)
    penalty = getattr(part, "penalty", 0.0)
    l1_ratio = getattr(part, "l1_ratio", 0.0)
    return bool(penalty is not None and penalty > 0 and l1_ratio is not None and l1_ratio > 0)


def flat_l1_penalized(part):
    """Boolean mask of the coordinates of ``part.get_flat()`` that carry an L1 penalty.

    The part's ``flat_penalized_mask()`` (the coordinates the elastic-net
    penalty applies to: slopes, never intercepts, variances, degrees of
    freedom or shapes) when the part carries an L1 term (:func:`has_l1`), else
    all False. A composite part (a tree of gates, whose ``get_flat``
    concatenates its ``nodes``') gives the concatenation of its nodes' masks.
    A part that does not say which coordinates are penalised (no
    ``flat_penalized_mask``) gives all False: its parameters all count as free.

    Parameters
    ----------
    part : gate or expert family

    Returns
    -------
    ndarray of bool of shape (n_flat,)
        Empty when the part has no ``get_flat``.
    """
    get_flat = getattr(part, "get_flat", None)
    if get_flat is None:
        return np.zeros(0, dtype=bool)
    size = np.asarray(get_flat()).size
    nodes = getattr(part, "nodes", None)
    if nodes is not None and not hasattr(part, "flat_penalized_mask"):
        masks = [flat_l1_penalized(node) for node in nodes]
        if masks and sum(m.size for m in masks) == size:
            return np.concatenate(masks)
        return np.zeros(size, dtype=bool)
    penalized = getattr(part, "flat_penalized_mask", None)
    if penalized is None or not has_l1(part):
        return np.zeros(size, dtype=bool)
    return np.asarray(penalized(), dtype=bool)


def flat_l1_zeros(part):
    """Boolean mask of the coordinates of ``part.get_flat()`` that an L1 penalty set to exactly zero.

    The coordinates of :func:`flat_l1_penalized` whose value is exactly
    ``0.0``. Exact zeros are what the fitting steps produce: soft-thresholding
    returns the literal ``0.0`` (:func:`enet_coordinate_descent`), and a full
    proximal step ``w + (z - w)`` with ``z = 0`` is exactly ``0.0`` in IEEE
    arithmetic. A step that was halved to ascend stops short of zero, and such
    a coefficient counts as non-zero (it is) until a later full step zeroes
    it; no tolerance is applied, so the rule never hides a small non-zero
    estimate.

    Parameters
    ----------
    part : gate or expert family

    Returns
    -------
    ndarray of bool of shape (n_flat,)
        Empty when the part has no ``get_flat``.
    """
    mask = flat_l1_penalized(part)
    if not mask.any():
        return mask
    return mask & (np.asarray(part.get_flat(), dtype=float) == 0.0)


def n_l1_zeros(part):
    """Number of the part's coefficients an L1 penalty set to exactly zero (see :func:`flat_l1_zeros`)."""
    if not has_l1(part):
        return 0
    return int(np.count_nonzero(flat_l1_zeros(part)))
