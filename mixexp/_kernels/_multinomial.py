"""Numba kernels of the multinomial logistic experts.

K experts, each a multinomial logistic regression over C classes on the same
design: ``coef`` of shape (K, C, p), row 0 of each expert (class 0, the
reference) zero. Targets ``y`` are class indices (int64, 0 <= y < C). With
``eta_ci = coef[k, c] . x_i``, ``log p_k(c | x_i) = eta_ci - logsumexp_c eta_ci``
and weights ``a_i = w_i r_ki``, expert k's M-step objective is
``sum_i a_i log p_k(y_i | x_i)``, exactly the softmax gate's objective with
one-hot targets; its gradient and negative Hessian are the gate's too.

Same conventions as :mod:`mixexp._kernels._kernels`: designs feature-major
``XT`` (p, n), per-expert arrays expert-major; samples in blocks of ``BLOCK``,
blocks in at most ``n_chunks(n)`` contiguous chunks run in parallel, each chunk
adding its blocks in order into its own slot of the partial sums (added up in
chunk order by the wrappers in :mod:`mixexp._kernels`), so results are
bit-identical whatever the number of threads. The maths is the gate's block
helpers (:func:`_block_log_softmax`, :func:`_block_softmax_stats`,
:func:`_block_gate_objective`), run on a local copy of each block (the design
rows, one-hot targets and weights of the block, indices 0..L), so the K
experts' statistics take one pass over the data and no (C, n) array.

Numba's on-disk cache keys on this file's source only: if a helper imported
from :mod:`._kernels` changes, delete ``mixexp/_kernels/__pycache__``.
"""

import numpy as np
from numba import njit, prange

from ._config import CACHE, FASTMATH
from ._kernels import (
    BLOCK,
    _block_gate_objective,
    _block_log_softmax,
    _block_posterior,
    _block_softmax_stats,
    _chunk_blocks,
)

_jit = njit(cache=CACHE, fastmath=FASTMATH, nogil=True)
_pjit = njit(cache=CACHE, fastmath=FASTMATH, nogil=True, parallel=True)


@_jit
def _block_local_design(XT, i0, i1, XTb):
    """XTb[:, :L] = XT[:, i0:i1] (the block's design, local indices)."""
    p = XT.shape[0]
    for j in range(p):
        src = XT[j, i0:i1]
        dst = XTb[j]
        for i in range(i1 - i0):
            dst[i] = src[i]


@_jit
def _block_one_hot(y, i0, i1, T):
    """T[:, :L] = one-hot(y[i0:i1]) over the C rows of T."""
    C = T.shape[0]
    L = i1 - i0
    for c in range(C):
        tc = T[c]
        for i in range(L):
            tc[i] = 0.0
    for i in range(L):
        T[y[i0 + i], i] = 1.0


@_jit
def _block_weights(sample_weight, resp, k, i0, i1, wr):
    """wr[:L] = w_i r_ki on the block."""
    rk = resp[k, i0:i1]
    wb = sample_weight[i0:i1]
    for i in range(i1 - i0):
        wr[i] = wb[i] * rk[i]


@_pjit
def multinomial_log_prob(XT, y, coef, out, n_parts):
    """out[k, i] = log p_k(y_i | x_i), the experts' log class probabilities of y."""
    p, n = XT.shape
    K, C, _ = coef.shape
    for c in prange(n_parts):
        XTb = np.empty((p, BLOCK))
        logb = np.empty((C, BLOCK))
        probb = np.empty((C, BLOCK))
        mx = np.empty(BLOCK)
        s = np.empty(BLOCK)
        scale = np.empty(BLOCK)
        scale_bits = scale.view(np.int64)
        b0, b1 = _chunk_blocks(c, n_parts, n)
        for b in range(b0, b1):
            i0 = b * BLOCK
            i1 = min(n, i0 + BLOCK)
            L = i1 - i0
            _block_local_design(XT, i0, i1, XTb)
            for k in range(K):
                _block_log_softmax(XTb, coef[k], 0, L, logb, probb, mx, s, scale, scale_bits)
                ok = out[k, i0:i1]
                for i in range(L):
                    ok[i] = logb[y[i0 + i], i]


@_pjit
def multinomial_stats(XT, y, coef, resp, sample_weight, active, derivatives, q, grad, hess):
    """Per-chunk M-step objective (and gradient, negative Hessian) of each active expert.

    ``q`` (n_parts, K); with ``derivatives``, ``grad`` (n_parts, K, C - 1, p) and
    the upper block triangle of ``hess`` (n_parts, K, (C - 1) p, (C - 1) p).
    Inactive experts are left at zero.
    """
    p, n = XT.shape
    K, C, _ = coef.shape
    nc = q.shape[0]
    for c in prange(nc):
        XTb = np.empty((p, BLOCK))
        T = np.empty((C, BLOCK))
        wr = np.empty(BLOCK)
        logb = np.empty((C, BLOCK))
        probb = np.empty((C, BLOCK))
        mx = np.empty(BLOCK)
        s = np.empty(BLOCK)
        scale = np.empty(BLOCK)
        scale_bits = scale.view(np.int64)
        b0, b1 = _chunk_blocks(c, nc, n)
        for b in range(b0, b1):
            i0 = b * BLOCK
            i1 = min(n, i0 + BLOCK)
            L = i1 - i0
            _block_local_design(XT, i0, i1, XTb)
            _block_one_hot(y, i0, i1, T)
            for k in range(K):
                if not active[k]:
                    continue
                _block_weights(sample_weight, resp, k, i0, i1, wr)
                _block_log_softmax(XTb, coef[k], 0, L, logb, probb, mx, s, scale, scale_bits)
                if derivatives:
                    # mx and s are free again: scratch for the statistics
                    q[c, k] += _block_softmax_stats(
                        XTb, wr, T, logb, probb, 0, L, grad[c, k], hess[c, k], mx, s
                    )
                else:
                    q[c, k] += _block_gate_objective(wr, T, logb, 0, L)


@_pjit
def fused_softmax_multinomial(
    XgT, gate_coef, XeT, y, coef, sample_weight, resp_prev, with_prev, eresp_prev, with_eprev,
    log_gate, gate_prob, resp, ll_rows, ll_parts, qprev_parts, grad, hess, q_parts,
    eqprev_parts, eq_parts, egrad, ehess,
):
    """One pass: the gate, the E-step and every sufficient statistic of the next M-step.

    Per block: the softmax gate at ``gate_coef``; with ``with_prev``, the gate
    objective of those weights under ``resp_prev`` (the check of the gate's last
    step); each expert's log class probabilities (kept for the block) and,
    with ``with_eprev``, each expert's objective under ``eresp_prev`` (the
    check of the experts' last steps); the posterior and the per-row
    log-likelihood; then, with the new posterior, each expert's objective,
    gradient and negative Hessian and the gate's.
    """
    pe, n = XeT.shape
    K, C, _ = coef.shape
    nc = ll_parts.shape[0]
    for c in prange(nc):
        XTb = np.empty((pe, BLOCK))
        T = np.empty((C, BLOCK))
        wr = np.empty(BLOCK)
        elog = np.empty((K, C, BLOCK))
        eprob = np.empty((K, C, BLOCK))
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
            L = i1 - i0
            _block_log_softmax(XgT, gate_coef, i0, i1, log_gate, gate_prob, mx, s, scale, scale_bits)
            if with_prev:
                qprev += _block_gate_objective(sample_weight, resp_prev, log_gate, i0, i1)
            _block_local_design(XeT, i0, i1, XTb)
            _block_one_hot(y, i0, i1, T)
            for k in range(K):
                _block_log_softmax(XTb, coef[k], 0, L, elog[k], eprob[k], mx, s, scale, scale_bits)
                if with_eprev:
                    _block_weights(sample_weight, eresp_prev, k, i0, i1, wr)
                    eqprev_parts[c, k] += _block_gate_objective(wr, T, elog[k], 0, L)
                rk = resp[k, i0:i1]
                gk = log_gate[k, i0:i1]
                lk = elog[k]
                for i in range(L):
                    rk[i] = gk[i] + lk[y[i0 + i], i]
            _block_posterior(resp, i0, i1, mx, s, scale, scale_bits)
            for i in range(i0, i1):
                ll_rows[i] = mx[i - i0]
                if sample_weight[i] != 0.0:
                    acc += sample_weight[i] * mx[i - i0]
            for k in range(K):
                _block_weights(sample_weight, resp, k, i0, i1, wr)
                eq_parts[c, k] += _block_softmax_stats(
                    XTb, wr, T, elog[k], eprob[k], 0, L, egrad[c, k], ehess[c, k], mx, s
                )
            q += _block_softmax_stats(
                XgT, sample_weight, resp, log_gate, gate_prob, i0, i1, grad[c], hess[c], mx, s
            )
        ll_parts[c] = acc
        qprev_parts[c] = qprev
        q_parts[c] = q
