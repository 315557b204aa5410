"""Numba kernels of the log-link GLM experts (Poisson and Gamma).

Same conventions as :mod:`mixexp._kernels._kernels`: designs feature-major
``XT`` (p, n), per-expert arrays expert-major (K, n); samples in blocks of
``BLOCK``, blocks in at most ``n_chunks(n)`` contiguous chunks run in parallel,
each chunk adding its blocks in order into its own slot of the partial sums
(added up in chunk order by the wrappers in :mod:`mixexp._kernels`), every
reduction a fixed-order :func:`_dot`; so results are bit-identical whatever
the number of threads.

The family is an integer code, ``POISSON`` or ``GAMMA``. With linear predictor
``eta = x . beta_k`` and weights ``a_i = w_i r_ki``, the kernels compute, per
expert:

* Poisson, ``mu = exp(eta)``: log f = y eta - mu - log(y!); the M-step
  objective ``sum_i a_i (y_i eta_i - mu_i)``, its gradient
  ``sum_i a_i (y_i - mu_i) x_i`` and negative Hessian ``sum_i a_i mu_i x_i x_i'``.
* Gamma with shape alpha, ``e = y exp(-eta) = y / mu``: log f = alpha log alpha
  - lgamma(alpha) + alpha (log y - eta) - alpha e - log y; the M-step objective
  of beta divided by alpha, ``sum_i a_i (-eta_i - e_i)``, its gradient
  ``sum_i a_i (e_i - 1) x_i`` and negative Hessian ``sum_i a_i e_i x_i x_i'``
  (the observed information, positive semi-definite since y > 0).

Rows of zero weight contribute exactly zero, even where a term overflows.
Numba's on-disk cache keys on this file's source only: if a helper imported
from :mod:`._kernels` changes, delete ``mixexp/_kernels/__pycache__``.
"""

import math

import numpy as np
from numba import njit, prange

from ._config import CACHE, FASTMATH
from ._kernels import _ONES, BLOCK, MAX_CHUNKS, _block_linear, _chunk_blocks, _dot, _vexp

#: Family codes.
POISSON = 0
GAMMA = 1

#: log(m!) for m < LOG_FACTORIAL.size: the Poisson log-density reads integer
#: counts from this table (exactly math.lgamma's values, 16x faster than a
#: libm call per sample), and calls lgamma above it.
LOG_FACTORIAL = np.array([math.lgamma(m + 1.0) for m in range(1024)])

_jit = njit(cache=CACHE, fastmath=FASTMATH, nogil=True)
_pjit = njit(cache=CACHE, fastmath=FASTMATH, nogil=True, parallel=True)


@_jit
def _block_row_constant(family, y, i0, i1, table, out):
    """out[i - i0] = log(y_i!) (Poisson) or log(y_i) (Gamma) on [i0, i1)."""
    T = table.shape[0]
    if family == POISSON:
        for i in range(i0, i1):
            v = y[i]
            m = int(v) if 0.0 <= v < T else -1
            if m >= 0 and m == v:
                out[i - i0] = table[m]
            else:
                out[i - i0] = math.lgamma(v + 1.0)
    else:
        for i in range(i0, i1):
            out[i - i0] = math.log(y[i])


@_jit
def _block_glm_terms(family, y, eta, i0, i1, e, scale, scale_bits):
    """e[i] = exp(eta_i) (Poisson) or y_i exp(-eta_i) (Gamma) for the block's rows."""
    L = i1 - i0
    if family == POISSON:
        for i in range(L):
            e[i] = eta[i]
        _vexp(e, L, scale, scale_bits)
    else:
        for i in range(L):
            e[i] = -eta[i]
        _vexp(e, L, scale, scale_bits)
        for i in range(L):
            e[i] *= y[i0 + i]


@_pjit
def glm_log_prob(XT, y, coef, shape, family, table, out):
    """(K, n) log-densities of log-link Poisson or Gamma experts (Gamma shapes ``shape``)."""
    n = XT.shape[1]
    K = coef.shape[0]
    nc = min(MAX_CHUNKS, (n + BLOCK - 1) // BLOCK)
    for c in prange(nc):
        eta = np.empty(BLOCK)
        e = np.empty(BLOCK)
        const = np.empty(BLOCK)
        scale = np.empty(BLOCK)
        scale_bits = scale.view(np.int64)
        b0, b1 = _chunk_blocks(c, nc, n)
        for b in range(b0, b1):
            i0 = b * BLOCK
            i1 = min(n, i0 + BLOCK)
            L = i1 - i0
            _block_row_constant(family, y, i0, i1, table, const)
            for k in range(K):
                _block_linear(XT, coef, k, i0, i1, eta)
                _block_glm_terms(family, y, eta, i0, i1, e, scale, scale_bits)
                ok = out[k, i0:i1]
                if family == POISSON:
                    for i in range(L):
                        ok[i] = y[i0 + i] * eta[i] - e[i] - const[i]
                else:
                    a = shape[k]
                    c0 = a * math.log(a) - math.lgamma(a)
                    for i in range(L):
                        ok[i] = c0 + a * (const[i] - eta[i]) - a * e[i] - const[i]


@_pjit
def glm_stats(
    XT, y, resp, sample_weight, coef, family, active, with_derivs, with_log_y,
    q, grad, hess, nk, log_y_sum,
):
    """Per-chunk M-step objective (and gradient, upper negative Hessian) of each active expert.

    ``q[c, k]`` gets the objective (Poisson: sum a (y eta - mu); Gamma: sum a
    (-eta - y / mu)); with ``with_derivs`` also ``grad[c, k]``, the upper
    triangle of ``hess[c, k]`` and ``nk[c, k] = sum a``; with ``with_log_y``
    ``log_y_sum[c, k] = sum a log y`` (Gamma's shape step). Experts with
    ``active[k]`` False are skipped (their slots stay zero).
    """
    p, n = XT.shape
    K = coef.shape[0]
    nc = q.shape[0]
    for c in prange(nc):
        wr = np.empty(BLOCK)
        eta = np.empty(BLOCK)
        e = np.empty(BLOCK)
        t = np.empty(BLOCK)
        u = np.empty(BLOCK)
        const = np.empty(BLOCK)
        scale = np.empty(BLOCK)
        scale_bits = scale.view(np.int64)
        b0, b1 = _chunk_blocks(c, nc, n)
        for b in range(b0, b1):
            i0 = b * BLOCK
            i1 = min(n, i0 + BLOCK)
            L = i1 - i0
            yb = y[i0:i1]
            wb = sample_weight[i0:i1]
            if with_log_y:
                for i in range(L):
                    const[i] = math.log(yb[i])
            for k in range(K):
                if not active[k]:
                    continue
                rk = resp[k, i0:i1]
                for i in range(L):
                    wr[i] = wb[i] * rk[i]
                _block_linear(XT, coef, k, i0, i1, eta)
                _block_glm_terms(family, y, eta, i0, i1, e, scale, scale_bits)
                # t: objective terms, u: gradient weights, e: Hessian weights;
                # zero where the row has no weight (a term may overflow there)
                if family == POISSON:
                    for i in range(L):
                        z = wr[i] == 0.0
                        t[i] = 0.0 if z else yb[i] * eta[i] - e[i]
                        u[i] = 0.0 if z else yb[i] - e[i]
                        e[i] = 0.0 if z else e[i]
                else:
                    for i in range(L):
                        z = wr[i] == 0.0
                        t[i] = 0.0 if z else -eta[i] - e[i]
                        u[i] = 0.0 if z else e[i] - 1.0
                        e[i] = 0.0 if z else e[i]
                q[c, k] += _dot(wr, t, L)
                if with_log_y:
                    log_y_sum[c, k] += _dot(wr, const, L)
                if not with_derivs:
                    continue
                for i in range(L):
                    u[i] *= wr[i]
                    e[i] *= wr[i]
                nk[c, k] += _dot(wr, _ONES, L)
                for a in range(p):
                    xa = XT[a, i0:i1]
                    grad[c, k, a] += _dot(u, xa, L)
                    for i in range(L):
                        t[i] = e[i] * xa[i]
                    for d in range(a, p):
                        hess[c, k, a, d] += _dot(t, XT[d, i0:i1], L)
