"""Numba kernel of the Gaussian gate with Gaussian linear experts: one pass per EM iteration.

Same conventions as :mod:`mixexp._kernels._kernels`: designs feature-major
``XT`` (p, n) with a constant first row, per-expert arrays expert-major (K, n);
samples in blocks of ``BLOCK``, blocks in at most ``n_chunks(n)`` contiguous
chunks run in parallel, each chunk adding its blocks in order into its own
slot of the partial sums (added up in chunk order by the wrapper in
:mod:`mixexp._kernels`), every reduction a fixed-order :func:`_dot`; so results
are bit-identical whatever the number of threads.

The gate's log-numerators are ``log pi_k + log N(x; mu_k, Sigma_k) = const_k -
||P_k' (x - mu_k)||^2 / 2`` with ``P_k`` the upper-triangular Cholesky factor
of the precision (``P_k P_k' = Sigma_k^-1``; diagonal for "diag" and
"spherical" covariances) and ``const_k = log pi_k + log det P_k - d log(2 pi) / 2``.
Numba's on-disk cache keys on this file's source only: if a helper imported
from :mod:`._kernels` changes, delete ``mixexp/_kernels/__pycache__``.
"""

import math

import numpy as np
from numba import njit, prange

from ._config import CACHE, FASTMATH
from ._kernels import (
    BLOCK,
    _block_gaussian_log_prob,
    _block_linear_stats,
    _block_posterior,
    _chunk_blocks,
    _dot,
    _vexp,
)

_jit = njit(cache=CACHE, fastmath=FASTMATH, nogil=True)
_pjit = njit(cache=CACHE, fastmath=FASTMATH, nogil=True, parallel=True)


@_jit
def _block_gaussian_gate(XgT, const, means, prec, i0, i1, log_out, prob_out, log_marg, mx, s, z, scale, bits):
    """Log-weights, weights and log p(x) of the Gaussian gate on [i0, i1).

    ``mx``, ``s``, ``z`` and ``scale``/``bits`` (for :func:`_vexp`) are scratch.
    """
    K, d = means.shape
    L = i1 - i0
    for k in range(K):
        lk = log_out[k, i0:i1]
        for i in range(L):
            lk[i] = 0.0
        for a in range(d):
            for i in range(L):
                z[i] = 0.0
            for b in range(a + 1):
                pba = prec[k, b, a]
                if pba != 0.0:
                    mb = means[k, b]
                    xb = XgT[1 + b, i0:i1]
                    for i in range(L):
                        z[i] += pba * (xb[i] - mb)
            for i in range(L):
                lk[i] += z[i] * z[i]
        ck = const[k]
        for i in range(L):
            lk[i] = ck - 0.5 * lk[i]
    for i in range(L):
        mx[i] = -np.inf
    for k in range(K):
        lk = log_out[k, i0:i1]
        for i in range(L):
            mx[i] = max(mx[i], lk[i])
    for i in range(L):
        s[i] = 0.0
    for k in range(K):
        lk = log_out[k, i0:i1]
        pk = prob_out[k, i0:i1]
        for i in range(L):
            pk[i] = lk[i] - mx[i]
        _vexp(pk, L, scale, bits)
        for i in range(L):
            s[i] += pk[i]
    for i in range(L):
        t = s[i]
        mx[i] += math.log(t)  # log p(x_i)
        log_marg[i0 + i] = mx[i]
        s[i] = 1.0 / t
    for k in range(K):
        lk = log_out[k, i0:i1]
        pk = prob_out[k, i0:i1]
        for i in range(L):
            lk[i] -= mx[i]
            pk[i] *= s[i]


@_jit
def _block_moments(XT, sw, resp, i0, i1, gram, wr, t):
    """Add sum_i w_i r_ki x_i x_i' (upper triangle) of each component on [i0, i1)."""
    p = XT.shape[0]
    K = resp.shape[0]
    L = i1 - i0
    wb = sw[i0:i1]
    for k in range(K):
        rk = resp[k, i0:i1]
        for i in range(L):
            wr[i] = wb[i] * rk[i]
        for a in range(p):
            xa = XT[a, i0:i1]
            for i in range(L):
                t[i] = wr[i] * xa[i]
            for c in range(a, p):
                gram[k, a, c] += _dot(t, XT[c, i0:i1], L)


@_pjit
def fused_gaussian_gate_gaussian(
    XgT, const, means, prec, XeT, y, coef, var, sample_weight,
    log_gate, gate_prob, resp, ll_rows, log_marg, ll_parts, marg_parts,
    ggram, gram, xy, yy, nk,
):  # fmt: skip
    """One pass: the gate, the E-step and every sufficient statistic of the next M-step.

    Per block: the Gaussian gate (log-weights, weights and log p(x)), the
    Gaussian experts' log-densities, the posterior and the per-row
    conditional log-likelihood; then, with the new posterior, the gate's
    weighted moments of the gate design (``ggram``, whose first row and column
    are the counts and first moments) and the experts' weighted moments.
    """
    n = XgT.shape[1]
    K = coef.shape[0]
    nc = ll_parts.shape[0]
    for c in prange(nc):
        mx = np.empty(BLOCK)
        s = np.empty(BLOCK)
        z = np.empty(BLOCK)
        scale = np.empty(BLOCK)
        bits = scale.view(np.int64)
        b0, b1 = _chunk_blocks(c, nc, n)
        acc = 0.0
        marg = 0.0
        for b in range(b0, b1):
            i0 = b * BLOCK
            i1 = min(n, i0 + BLOCK)
            _block_gaussian_gate(
                XgT, const, means, prec, i0, i1, log_gate, gate_prob, log_marg, mx, s, z, scale, bits
            )
            for i in range(i0, i1):
                if sample_weight[i] != 0.0:
                    marg += sample_weight[i] * log_marg[i]
            _block_gaussian_log_prob(XeT, y, coef, var, i0, i1, resp, mx)
            for k in range(K):
                rk = resp[k, i0:i1]
                gk = log_gate[k, i0:i1]
                for i in range(i1 - i0):
                    rk[i] += gk[i]
            _block_posterior(resp, i0, i1, mx, s, scale, bits)
            for i in range(i0, i1):
                ll_rows[i] = mx[i - i0]
                if sample_weight[i] != 0.0:
                    acc += sample_weight[i] * mx[i - i0]
            _block_linear_stats(XeT, y, sample_weight, resp, i0, i1, gram[c], xy[c], yy[c], nk[c], mx, s)
            _block_moments(XgT, sample_weight, resp, i0, i1, ggram[c], mx, s)
        ll_parts[c] = acc
        marg_parts[c] = marg
