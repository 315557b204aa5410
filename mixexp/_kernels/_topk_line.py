"""Numba kernel of the top-K gate's line search: the observed log-likelihood along a line of gate logits.

Same conventions as :mod:`mixexp._kernels._kernels`: per-expert arrays
expert-major (K, n); samples in blocks of ``BLOCK``, blocks in at most
``n_chunks(n)`` contiguous chunks run in parallel, each chunk adding its rows
in order into its own slot of the partial sums (added up in chunk order by the
wrapper in :mod:`mixexp._kernels`), so results are bit-identical whatever the
number of threads. Numba's on-disk cache keys on this file's source only: if a
helper imported from :mod:`._kernels` changes, delete
``mixexp/_kernels/__pycache__``.
"""

import math

import numpy as np
from numba import njit, prange

from ._config import CACHE, FASTMATH
from ._kernels import BLOCK, _chunk_blocks

_pjit = njit(cache=CACHE, fastmath=FASTMATH, nogil=True, parallel=True)


@_pjit
def _topk_line_loglik(L0, M, log_prob, w, ts, top_k, nc, out):
    """``out[c, j]``: chunk c's ``sum_i w_i log sum_{k in A_ij} g_k f_ik`` at logits ``L0 + ts[j] M``.

    ``A_ij`` is the ``top_k`` largest logits of row i at ``ts[j]`` (a tie at
    the ``top_k``-th place selects the lower expert index), ``g`` the softmax
    over ``A_ij`` and ``f_ik = exp(log_prob[k, i])``. Rows of zero weight are
    skipped (their log-density may be ``-inf``). Per row and step: ``top_k``
    exponentials and one logarithm (the ``f_ik`` are scaled once per row).
    """
    K, n = L0.shape
    T = ts.shape[0]
    for c in prange(nc):
        b0, b1 = _chunk_blocks(c, nc, n)
        i0 = b0 * BLOCK
        i1 = min(n, b1 * BLOCK)
        lg = np.empty(K)
        f = np.empty(K)
        acc = np.zeros(T)
        for i in range(i0, i1):
            wi = w[i]
            if wi == 0.0:
                continue
            mlp = -np.inf
            for k in range(K):
                if log_prob[k, i] > mlp:
                    mlp = log_prob[k, i]
            if mlp == -np.inf:
                for j in range(T):
                    acc[j] += -np.inf
                continue
            for k in range(K):
                f[k] = math.exp(log_prob[k, i] - mlp)
            for j in range(T):
                t = ts[j]
                mg = -np.inf
                for k in range(K):
                    lg[k] = L0[k, i] + t * M[k, i]
                    if lg[k] > mg:
                        mg = lg[k]  # the largest logit is always selected
                sg = 0.0
                sj = 0.0
                for k in range(K):
                    lk = lg[k]
                    # rank of k: logits above it, or equal with a lower index
                    above = 0
                    for m in range(K):
                        if lg[m] > lk or (lg[m] == lk and m < k):
                            above += 1
                    if above < top_k:
                        e = math.exp(lk - mg)
                        sg += e
                        sj += e * f[k]
                if sj > 0.0:
                    acc[j] += wi * (math.log(sj / sg) + mlp)
                else:
                    acc[j] += -np.inf
        for j in range(T):
            out[c, j] = acc[j]
