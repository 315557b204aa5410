"""Numba kernels: the E-step and the sufficient statistics of the M-steps.

Layout: designs are feature-major, ``XT`` of shape (p, n); per-expert arrays
(log-weights, gate probabilities, log-densities, responsibilities) are
expert-major, shape (K, n). Inner loops then run over contiguous rows of a
block and vectorise.

Samples are cut into blocks of ``BLOCK``, and the blocks into at most
``MAX_CHUNKS`` contiguous chunks; the chunks run in parallel (``prange``). A
chunk writes only its own samples and adds its blocks, in order, into its own
slot of the partial sums, which the Python wrappers in :mod:`mixexp._kernels`
add up in chunk order. The partition depends on n only, so results are
identical whatever the number of threads, and the partial sums take
O(MAX_CHUNKS) memory whatever n.

Block helpers (``_block_*``) hold the maths of each part once; the stand-alone
kernels and the fused kernel call them.
"""

import math

import numpy as np
from numba import njit, prange

from ._config import CACHE, FASTMATH

#: Samples per block (the unit of the vectorised inner loops) and the largest
#: number of chunks (the unit of parallel work and of partial sums). Defined
#: here, not in _config, so that changing them invalidates Numba's cache.
BLOCK = 1024
MAX_CHUNKS = 64

_LOG_2PI = math.log(2.0 * math.pi)
_ONES = np.ones(BLOCK)


def n_blocks(n_samples):
    """Number of blocks covering ``n_samples`` samples."""
    return max(1, (n_samples + BLOCK - 1) // BLOCK)


def n_chunks(n_samples):
    """Number of chunks (parallel tasks, partial-sum slots) for ``n_samples``."""
    return min(MAX_CHUNKS, n_blocks(n_samples))

_jit = njit(cache=CACHE, fastmath=FASTMATH, nogil=True)
_pjit = njit(cache=CACHE, fastmath=FASTMATH, nogil=True, parallel=True)


@_jit
def _chunk_blocks(c, nc, n):
    """Blocks [b0, b1) of chunk c out of nc, for n samples."""
    nb = (n + BLOCK - 1) // BLOCK
    return (c * nb) // nc, ((c + 1) * nb) // nc


# --------------------------------------------------------------------------
# block helpers: samples i0 <= i < i1
# --------------------------------------------------------------------------
@_jit
def _vexp(x, L, scale, scale_bits):
    """x[i] = exp(x[i]) in place for i < L, in SIMD lanes.

    ``math.exp`` is a scalar libm call (Numba has no vector math library
    here); this is Cody-Waite range reduction, x = k ln 2 + r with
    |r| <= ln2 / 2, a degree-13 Taylor polynomial for exp(r) (relative error
    below 3e-16), and 2^k written as bits into ``scale`` through its int64
    view ``scale_bits``. Arguments below -708 (including -inf and NaN) give 0;
    above 709, exp(709).
    """
    for i in range(L):
        x0 = x[i]
        v = x0 if x0 >= -708.0 else -708.0
        v = v if v <= 709.0 else 709.0
        kf = math.floor(v * 1.4426950408889634 + 0.5)
        r = (v - kf * 0.6931471803691238) - kf * 1.9082149292705877e-10
        p = 1.6059043836821613e-10
        p = p * r + 2.08767569878681e-09
        p = p * r + 2.505210838544172e-08
        p = p * r + 2.755731922398589e-07
        p = p * r + 2.7557319223985893e-06
        p = p * r + 2.48015873015873e-05
        p = p * r + 0.0001984126984126984
        p = p * r + 0.001388888888888889
        p = p * r + 0.008333333333333333
        p = p * r + 0.041666666666666664
        p = p * r + 0.16666666666666666
        p = p * r + 0.5
        p = p * r + 1.0
        p = p * r + 1.0
        x[i] = p if x0 >= -708.0 else 0.0
        scale_bits[i] = (np.int64(kf) + 1023) << 52
    for i in range(L):
        x[i] *= scale[i]


@_jit
def _block_posterior(scores, i0, i1, mx, s, scale, scale_bits):
    """Turn log joint scores (K, n) into posteriors in place on [i0, i1).

    ``mx`` receives each row's log-sum-exp (-inf where every score is -inf;
    those rows get uniform responsibilities). ``scale``/``scale_bits`` are
    scratch for :func:`_vexp`.
    """
    K = scores.shape[0]
    L = i1 - i0
    for i in range(L):
        mx[i] = -np.inf
        s[i] = 0.0
    for k in range(K):
        sk = scores[k, i0:i1]
        for i in range(L):
            mx[i] = max(mx[i], sk[i])
    for k in range(K):
        sk = scores[k, i0:i1]
        for i in range(L):
            sk[i] -= mx[i]
        _vexp(sk, L, scale, scale_bits)
        for i in range(L):
            s[i] += sk[i]
    for i in range(L):
        if mx[i] == -np.inf:
            for k in range(K):
                scores[k, i0 + i] = 1.0 / K
            s[i] = 1.0
        else:
            t = s[i]
            mx[i] += math.log(t)
            s[i] = 1.0 / t
    for k in range(K):
        sk = scores[k, i0:i1]
        for i in range(L):
            sk[i] *= s[i]


@_jit
def _block_linear(XT, coef, k, i0, i1, out):
    """out[i - i0] = x_i . coef[k] on [i0, i1)."""
    p = XT.shape[0]
    for i in range(i0, i1):
        out[i - i0] = 0.0
    for j in range(p):
        c = coef[k, j]
        for i in range(i0, i1):
            out[i - i0] += c * XT[j, i]


@_jit
def _block_gaussian_log_prob(XT, y, coef, var, i0, i1, out, mu):
    """out[k, i] = log N(y_i; x_i . coef_k, var_k) on [i0, i1)."""
    K = coef.shape[0]
    for k in range(K):
        _block_linear(XT, coef, k, i0, i1, mu)
        c0 = -0.5 * (_LOG_2PI + math.log(var[k]))
        h = 0.5 / var[k]
        for i in range(i0, i1):
            r = y[i] - mu[i - i0]
            out[k, i] = c0 - h * r * r


@_jit
def _dot(a, b, L):
    """sum_i a[i] b[i] over i < L, in a fixed order.

    Four interleaved partial sums, added pairwise at the end: the order does
    not depend on the alignment of the arrays (as a compiler-reassociated sum
    would), and the loop still maps onto SIMD lanes.
    """
    s0 = 0.0
    s1 = 0.0
    s2 = 0.0
    s3 = 0.0
    L4 = L - L % 4
    for i in range(0, L4, 4):
        s0 += a[i] * b[i]
        s1 += a[i + 1] * b[i + 1]
        s2 += a[i + 2] * b[i + 2]
        s3 += a[i + 3] * b[i + 3]
    for i in range(L4, L):
        s0 += a[i] * b[i]
    return (s0 + s1) + (s2 + s3)


@_jit
def _block_linear_stats(XT, y, sw, resp, i0, i1, gram, xy, yy, nk, wr, t):
    """Add the weighted moments of each expert on [i0, i1) (upper triangle of gram)."""
    p = XT.shape[0]
    K = resp.shape[0]
    L = i1 - i0
    yb = y[i0:i1]
    wb = sw[i0:i1]
    for k in range(K):
        rk = resp[k, i0:i1]
        for i in range(L):
            wr[i] = wb[i] * rk[i]
            t[i] = wr[i] * yb[i]
        nk[k] += _dot(wr, _ONES, L)
        yy[k] += _dot(t, yb, L)
        for a in range(p):
            xa = XT[a, i0:i1]
            for i in range(L):
                t[i] = wr[i] * xa[i]
            xy[k, a] += _dot(t, yb, L)
            for c in range(a, p):
                gram[k, a, c] += _dot(t, XT[c, i0:i1], L)


@_jit
def _block_gate_objective(sw, resp, log_gate, i0, i1):
    """sum_i w_i sum_k r_ki log g_ki on [i0, i1); terms with r_ki = 0 are zero."""
    K = resp.shape[0]
    q = 0.0
    for k in range(K):
        for i in range(i0, i1):
            r = resp[k, i]
            if r != 0.0 and sw[i] != 0.0:
                q += sw[i] * r * log_gate[k, i]
    return q


@_jit
def _block_softmax_stats(XT, sw, resp, log_gate, gate_prob, i0, i1, grad, hess, u, t):
    """Add the gradient and upper-block negative Hessian of the gate on [i0, i1).

    Returns the block's objective sum_i w_i sum_k r_ik log g_ik. Expert 0 is
    the reference; the free parameters are experts 1..K-1, row-major in
    ``grad`` (K-1, p).
    """
    p = XT.shape[0]
    K = resp.shape[0]
    L = i1 - i0
    wb = sw[i0:i1]
    q = _block_gate_objective(sw, resp, log_gate, i0, i1)
    for k in range(1, K):
        rk = resp[k, i0:i1]
        gk = gate_prob[k, i0:i1]
        for i in range(L):
            u[i] = wb[i] * (rk[i] - gk[i])
        for j in range(p):
            grad[k - 1, j] += _dot(u, XT[j, i0:i1], L)
        for m in range(k, K):
            gm = gate_prob[m, i0:i1]
            delta = 1.0 if k == m else 0.0
            for i in range(L):
                u[i] = wb[i] * gk[i] * (delta - gm[i])
            r0 = (k - 1) * p
            c0 = (m - 1) * p
            for a in range(p):
                xa = XT[a, i0:i1]
                for i in range(L):
                    t[i] = u[i] * xa[i]
                for c in range(a if k == m else 0, p):
                    acc = _dot(t, XT[c, i0:i1], L)
                    hess[r0 + a, c0 + c] += acc
                    if k == m and c != a:
                        hess[r0 + c, c0 + a] += acc
    return q


@_jit
def _block_log_softmax(XT, coef, i0, i1, log_out, prob_out, mx, s, scale, scale_bits):
    """Log-softmax and softmax of the logits X coef' on [i0, i1).

    ``mx``, ``s`` and ``scale``/``scale_bits`` (for :func:`_vexp`) are scratch.
    """
    K = coef.shape[0]
    L = i1 - i0
    for i in range(L):
        mx[i] = -np.inf
    for k in range(K):
        lk = log_out[k, i0:i1]
        _block_linear(XT, coef, k, i0, i1, lk)
        for i in range(L):
            mx[i] = max(mx[i], lk[i])
    for i in range(L):
        s[i] = 0.0
    for k in range(K):
        lk = log_out[k, i0:i1]
        pk = prob_out[k, i0:i1]
        for i in range(L):
            pk[i] = lk[i] - mx[i]
        _vexp(pk, L, scale, scale_bits)
        for i in range(L):
            s[i] += pk[i]
    for i in range(L):
        t = s[i]
        mx[i] += math.log(t)  # mx := log-sum-exp
        s[i] = 1.0 / t
    for k in range(K):
        lk = log_out[k, i0:i1]
        pk = prob_out[k, i0:i1]
        for i in range(L):
            lk[i] -= mx[i]
            pk[i] *= s[i]


# --------------------------------------------------------------------------
# kernels: chunks in parallel, blocks in order within a chunk
# --------------------------------------------------------------------------
@_pjit
def e_step(log_gate, log_prob, sample_weight, resp, ll_rows, ll_parts):
    """Generic E-step from (K, n) log-weights and log-densities."""
    K, n = log_gate.shape
    nc = ll_parts.shape[0]
    for c in prange(nc):
        mx = np.empty(BLOCK)
        s = np.empty(BLOCK)
        scale = np.empty(BLOCK)
        scale_bits = scale.view(np.int64)
        b0, b1 = _chunk_blocks(c, nc, n)
        acc = 0.0
        for b in range(b0, b1):
            i0 = b * BLOCK
            i1 = min(n, i0 + BLOCK)
            for k in range(K):
                rk = resp[k, i0:i1]
                gk = log_gate[k, i0:i1]
                pk = log_prob[k, i0:i1]
                for i in range(i1 - i0):
                    rk[i] = gk[i] + pk[i]
            _block_posterior(resp, i0, i1, mx, s, scale, scale_bits)
            for i in range(i0, i1):
                ll_rows[i] = mx[i - i0]
                if sample_weight[i] != 0.0:
                    acc += sample_weight[i] * mx[i - i0]
        ll_parts[c] = acc


@_pjit
def log_softmax_linear(XT, coef, resp, sample_weight, log_out, prob_out, obj_parts, with_objective):
    """Log-softmax (and softmax) of the linear logits; optionally the gate objective.

    With ``with_objective`` each chunk also adds sum_i w_i sum_k r_ik log g_ik
    (terms with r_ik = 0 are zero even where log g_ik = -inf).
    """
    n = XT.shape[1]
    nc = obj_parts.shape[0]
    for c in prange(nc):
        mx = np.empty(BLOCK)
        s = np.empty(BLOCK)
        scale = np.empty(BLOCK)
        scale_bits = scale.view(np.int64)
        b0, b1 = _chunk_blocks(c, nc, n)
        acc = 0.0
        for b in range(b0, b1):
            i0 = b * BLOCK
            i1 = min(n, i0 + BLOCK)
            _block_log_softmax(XT, coef, i0, i1, log_out, prob_out, mx, s, scale, scale_bits)
            if with_objective:
                acc += _block_gate_objective(sample_weight, resp, log_out, i0, i1)
        obj_parts[c] = acc


@_pjit
def softmax_gate_stats(XT, log_gate, gate_prob, resp, sample_weight, grad, hess, q_parts):
    """Per-chunk objective, gradient and negative Hessian of the softmax gate."""
    n = XT.shape[1]
    nc = q_parts.shape[0]
    for c in prange(nc):
        u = np.empty(BLOCK)
        t = np.empty(BLOCK)
        b0, b1 = _chunk_blocks(c, nc, n)
        acc = 0.0
        for b in range(b0, b1):
            i0 = b * BLOCK
            i1 = min(n, i0 + BLOCK)
            acc += _block_softmax_stats(
                XT, sample_weight, resp, log_gate, gate_prob, i0, i1, grad[c], hess[c], u, t
            )
        q_parts[c] = acc


@_pjit
def gaussian_log_prob(XT, y, coef, var, out):
    """(K, n) log-densities of Gaussian linear experts."""
    n = XT.shape[1]
    nb = (n + BLOCK - 1) // BLOCK
    for b in prange(nb):
        i0 = b * BLOCK
        i1 = min(n, i0 + BLOCK)
        mu = np.empty(i1 - i0)
        _block_gaussian_log_prob(XT, y, coef, var, i0, i1, out, mu)


@_pjit
def linear_stats(XT, y, resp, sample_weight, gram, xy, yy, nk):
    """Per-chunk weighted moments of each expert: X'RX, X'Ry, y'Ry and sum r."""
    n = XT.shape[1]
    nc = gram.shape[0]
    for c in prange(nc):
        wr = np.empty(BLOCK)
        t = np.empty(BLOCK)
        b0, b1 = _chunk_blocks(c, nc, n)
        for b in range(b0, b1):
            i0 = b * BLOCK
            i1 = min(n, i0 + BLOCK)
            _block_linear_stats(XT, y, sample_weight, resp, i0, i1, gram[c], xy[c], yy[c], nk[c], wr, t)


@_pjit
def fused_softmax_gaussian(
    XgT, gate_coef, XeT, y, coef, var, sample_weight, resp_prev, with_prev,
    log_gate, gate_prob, resp, ll_rows, ll_parts, qprev_parts,
    grad, hess, q_parts, gram, xy, yy, nk,
):
    """One pass: the gate, the E-step and every sufficient statistic of the next M-step.

    Per block: the softmax gate at ``gate_coef`` (log-weights and weights);
    with ``with_prev``, the gate objective of those weights under the previous
    responsibilities ``resp_prev`` (the check that the last gate step ascended);
    the Gaussian expert log-densities, the posterior and the per-row
    log-likelihood; then, with the new posterior, the experts' weighted moments
    and the gate's objective, gradient and negative Hessian.
    """
    n = XgT.shape[1]
    K = coef.shape[0]
    nc = ll_parts.shape[0]
    for c in prange(nc):
        mx = np.empty(BLOCK)
        s = np.empty(BLOCK)
        scale = np.empty(BLOCK)
        scale_bits = scale.view(np.int64)
        b0, b1 = _chunk_blocks(c, nc, n)
        acc = 0.0
        qprev = 0.0
        q = 0.0
        for b in range(b0, b1):
            i0 = b * BLOCK
            i1 = min(n, i0 + BLOCK)
            _block_log_softmax(XgT, gate_coef, i0, i1, log_gate, gate_prob, mx, s, scale, scale_bits)
            if with_prev:
                qprev += _block_gate_objective(sample_weight, resp_prev, log_gate, i0, i1)
            _block_gaussian_log_prob(XeT, y, coef, var, i0, i1, resp, mx)
            for k in range(K):
                rk = resp[k, i0:i1]
                gk = log_gate[k, i0:i1]
                for i in range(i1 - i0):
                    rk[i] += gk[i]
            _block_posterior(resp, i0, i1, mx, s, scale, scale_bits)
            for i in range(i0, i1):
                ll_rows[i] = mx[i - i0]
                if sample_weight[i] != 0.0:
                    acc += sample_weight[i] * mx[i - i0]
            _block_linear_stats(XeT, y, sample_weight, resp, i0, i1, gram[c], xy[c], yy[c], nk[c], mx, s)
            q += _block_softmax_stats(
                XgT, sample_weight, resp, log_gate, gate_prob, i0, i1, grad[c], hess[c], mx, s
            )
        ll_parts[c] = acc
        qprev_parts[c] = qprev
        q_parts[c] = q
