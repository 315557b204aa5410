"""Numba kernels: the E-step and the sufficient statistics of the M-steps.

Every kernel loops over fixed blocks of ``BLOCK`` rows in parallel (``prange``);
each block writes only its own rows and its own slot of the per-block partial
sums, which the Python wrappers in :mod:`mixexp._kernels` add up in block order.
Results are therefore identical whatever the number of threads.

Row-level helpers (``_row_*``) are shared by the stand-alone kernels and by the
fused kernel, so the maths of each part is written once.
"""

import math

import numpy as np
from numba import njit, prange

from ._config import BLOCK, CACHE, FASTMATH

_LOG_2PI = math.log(2.0 * math.pi)

_jit = njit(cache=CACHE, fastmath=FASTMATH, nogil=True)
_pjit = njit(cache=CACHE, fastmath=FASTMATH, nogil=True, parallel=True)


# --------------------------------------------------------------------------
# row helpers
# --------------------------------------------------------------------------
@_jit
def _row_posterior(scores, resp_row):
    """Normalise log joint scores of one row in place; return the row's log-sum-exp.

    ``scores`` holds log g_k + log f_k; on return ``resp_row`` holds the posterior.
    A row whose scores are all ``-inf`` gets uniform responsibilities and ``-inf``.
    """
    K = scores.shape[0]
    m = -np.inf
    for k in range(K):
        if scores[k] > m:
            m = scores[k]
    if m == -np.inf:
        for k in range(K):
            resp_row[k] = 1.0 / K
        return -np.inf
    s = 0.0
    for k in range(K):
        s += math.exp(scores[k] - m)
    lse = m + math.log(s)
    for k in range(K):
        resp_row[k] = math.exp(scores[k] - lse)
    return lse


@_jit
def _row_gaussian_log_prob(x, y, coef, log_var, inv_var, out):
    """log N(y; x . coef_k, var_k) for every expert k of one row."""
    K, p = coef.shape
    for k in range(K):
        mu = 0.0
        for j in range(p):
            mu += x[j] * coef[k, j]
        r = y - mu
        out[k] = -0.5 * (_LOG_2PI + log_var[k]) - 0.5 * r * r * inv_var[k]


@_jit
def _row_linear_stats(x, y, w, resp_row, gram, xy, yy, nk):
    """Add one row's weighted moments: gram_k += w r_k x x', xy_k += w r_k x y, ..."""
    K = resp_row.shape[0]
    p = x.shape[0]
    for k in range(K):
        wr = w * resp_row[k]
        if wr == 0.0:
            continue
        nk[k] += wr
        yy[k] += wr * y * y
        for a in range(p):
            xa = wr * x[a]
            xy[k, a] += xa * y
            for c in range(a, p):
                gram[k, a, c] += xa * x[c]


@_jit
def _row_softmax_stats(x, w, resp_row, log_gate_row, g, grad, hess):
    """Add one row's gradient and negative Hessian of sum_k r_k log g_k.

    Expert 0 is the reference (its logits are fixed at zero), so the free
    parameters are experts 1..K-1; ``hess`` gets the upper block triangle only.
    Returns the row's weighted objective w sum_k r_k log g_k.
    """
    K = resp_row.shape[0]
    p = x.shape[0]
    q = 0.0
    for k in range(K):
        g[k] = math.exp(log_gate_row[k])
        if resp_row[k] != 0.0:
            q += resp_row[k] * log_gate_row[k]
    for k in range(1, K):
        a = w * (resp_row[k] - g[k])
        for j in range(p):
            grad[k - 1, j] += a * x[j]
        for m in range(k, K):
            c = w * g[k] * ((1.0 if k == m else 0.0) - g[m])
            r0 = (k - 1) * p
            c0 = (m - 1) * p
            for j in range(p):
                cx = c * x[j]
                for jj in range(p):
                    hess[r0 + j, c0 + jj] += cx * x[jj]
    return w * q


@_jit
def _row_log_softmax(x, coef, out):
    """out_k = x . coef_k - logsumexp_j(x . coef_j)."""
    K, p = coef.shape
    m = -np.inf
    for k in range(K):
        z = 0.0
        for j in range(p):
            z += x[j] * coef[k, j]
        out[k] = z
        if z > m:
            m = z
    s = 0.0
    for k in range(K):
        s += math.exp(out[k] - m)
    lse = m + math.log(s)
    for k in range(K):
        out[k] -= lse


# --------------------------------------------------------------------------
# kernels
# --------------------------------------------------------------------------
@_pjit
def e_step(log_gate, log_prob, sample_weight, resp, ll_rows, ll_blocks):
    """Generic E-step: posterior and per-row log-likelihood from (n, K) log arrays."""
    n, K = log_gate.shape
    for b in prange(ll_blocks.shape[0]):
        scores = np.empty(K)
        acc = 0.0
        for i in range(b * BLOCK, min(n, (b + 1) * BLOCK)):
            for k in range(K):
                scores[k] = log_gate[i, k] + log_prob[i, k]
            lse = _row_posterior(scores, resp[i])
            ll_rows[i] = lse
            if sample_weight[i] != 0.0:
                acc += sample_weight[i] * lse
        ll_blocks[b] = acc


@_pjit
def log_softmax_linear(X, coef, resp, sample_weight, out, obj_blocks, with_objective):
    """Log-softmax of the linear logits X coef' by rows, into ``out``.

    With ``with_objective`` each block also adds sum_i w_i sum_k r_ik log g_ik
    (rows with r_ik = 0 contribute nothing, even where log g_ik = -inf).
    """
    n = X.shape[0]
    K = coef.shape[0]
    for b in prange(obj_blocks.shape[0]):
        acc = 0.0
        for i in range(b * BLOCK, min(n, (b + 1) * BLOCK)):
            _row_log_softmax(X[i], coef, out[i])
            if with_objective and sample_weight[i] != 0.0:
                s = 0.0
                for k in range(K):
                    if resp[i, k] != 0.0:
                        s += resp[i, k] * out[i, k]
                acc += sample_weight[i] * s
        obj_blocks[b] = acc


@_pjit
def softmax_gate_stats(X, log_gate, resp, sample_weight, grad, hess, q_blocks):
    """Per-block objective, gradient and negative Hessian of the softmax gate's EM objective."""
    n = X.shape[0]
    K = log_gate.shape[1]
    for b in prange(grad.shape[0]):
        g = np.empty(K)
        acc = 0.0
        for i in range(b * BLOCK, min(n, (b + 1) * BLOCK)):
            w = sample_weight[i]
            if w != 0.0:
                acc += _row_softmax_stats(X[i], w, resp[i], log_gate[i], g, grad[b], hess[b])
        q_blocks[b] = acc


@_pjit
def gaussian_log_prob(X, y, coef, var, out):
    """(n, K) log-densities of Gaussian linear experts."""
    n = X.shape[0]
    K = coef.shape[0]
    log_var = np.log(var)
    inv_var = 1.0 / var
    nb = (n + BLOCK - 1) // BLOCK
    for b in prange(nb):
        for i in range(b * BLOCK, min(n, (b + 1) * BLOCK)):
            _row_gaussian_log_prob(X[i], y[i], coef, log_var, inv_var, out[i])
    return out


@_pjit
def linear_stats(X, y, resp, sample_weight, gram, xy, yy, nk):
    """Per-block weighted moments of each expert: X'RX, X'Ry, y'Ry and sum r."""
    n = X.shape[0]
    for b in prange(gram.shape[0]):
        for i in range(b * BLOCK, min(n, (b + 1) * BLOCK)):
            w = sample_weight[i]
            if w != 0.0:
                _row_linear_stats(X[i], y[i], w, resp[i], gram[b], xy[b], yy[b], nk[b])


@_pjit
def fused_softmax_gaussian(
    Xg, log_gate, Xe, y, coef, var, sample_weight,
    resp, ll_rows, ll_blocks, grad, hess, q_blocks, gram, xy, yy, nk,
):
    """One pass: E-step and every sufficient statistic of the next M-step.

    Computes the Gaussian expert log-densities, the posterior, the per-row
    log-likelihood, then, with the new posterior, the experts' weighted moments
    and the softmax gate's gradient and negative Hessian at its current
    parameters (whose log-weights are ``log_gate``).
    """
    n = Xg.shape[0]
    K = coef.shape[0]
    log_var = np.log(var)
    inv_var = 1.0 / var
    for b in prange(ll_blocks.shape[0]):
        scores = np.empty(K)
        g = np.empty(K)
        acc = 0.0
        qacc = 0.0
        for i in range(b * BLOCK, min(n, (b + 1) * BLOCK)):
            _row_gaussian_log_prob(Xe[i], y[i], coef, log_var, inv_var, scores)
            for k in range(K):
                scores[k] += log_gate[i, k]
            lse = _row_posterior(scores, resp[i])
            ll_rows[i] = lse
            w = sample_weight[i]
            if w != 0.0:
                acc += w * lse
                _row_linear_stats(Xe[i], y[i], w, resp[i], gram[b], xy[b], yy[b], nk[b])
                qacc += _row_softmax_stats(Xg[i], w, resp[i], log_gate[i], g, grad[b], hess[b])
        ll_blocks[b] = acc
        q_blocks[b] = qacc
