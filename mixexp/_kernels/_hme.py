"""Numba kernels of the hierarchical (HME) gate: the tree's nodes, its leaves and its node-wise EM.

Same conventions as :mod:`mixexp._kernels._kernels`: designs feature-major
``XT`` (p, n) with a constant first row, per-leaf arrays leaf-major (K, n);
samples in blocks of ``BLOCK``, blocks in at most ``n_chunks(n)`` contiguous
chunks run in parallel, each chunk adding its blocks in order into its own
slot of the partial sums (added up in chunk order by the wrappers in
:mod:`mixexp._kernels`), every reduction a fixed-order :func:`_dot` or a
sequential sum; so results are bit-identical whatever the number of threads.

The tree (see :class:`mixexp.gates.HierarchicalGate`): ``V`` internal nodes
numbered breadth first, each with ``B`` children; tree position ``t >= 1``
has parent ``(t - 1) // B`` and is that parent's child ``(t - 1) % B``;
positions ``V, ..., V + K - 1`` are the leaves (the experts). Node
coefficients are stacked as ``coef`` (V, B, p), node ``v``'s logits
``coef[v] @ x``. Per block the kernels hold every node's log-softmax and
softmax in (V, B, BLOCK) scratch, never a (V, B, n) array, except
:func:`hme_nodes`, which writes them out.

EM for the tree (Jordan & Jacobs 1994): with leaf responsibilities ``r_ki``
and node masses ``h_vi = sum_{k below v} r_ki``, node ``v``'s objective,
gradient (children ``a = 1..B-1``, child 0 the reference) and negative
Hessian are::

    q_v = sum_i w_i sum_c h_{child c, i} log g_{v,c}(x_i)
    grad_{v,a} = sum_i w_i (h_{child a, i} - h_vi g_{v,a}(x_i)) x_i
    H_{v,ab} = sum_i w_i h_vi g_{v,a}(x_i) (delta_ab - g_{v,b}(x_i)) x_i x_i'

(the softmax gate's with targets ``h_child / h_v`` and weights ``w h_v``,
written without the division). Terms with ``w_i = 0`` or a zero child mass
count 0 in ``q_v``.

Numba's on-disk cache keys on this file's source only: if a helper imported
from :mod:`._kernels` changes, delete ``mixexp/_kernels/__pycache__``.
"""

import math

import numpy as np
from numba import njit, prange

from ._config import CACHE, FASTMATH
from ._kernels import (
    _ONES,
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


# --------------------------------------------------------------------------
# block helpers: samples i0 <= i < i1 (L = i1 - i0); ``off`` is where row i0
# sits in a node array: i0 for (V, B, n) arrays, 0 for a block's scratch
# --------------------------------------------------------------------------
@_jit
def _block_node_softmax(XT, coef, i0, i1, nlog, nprob, off, mx, s, scale, bits):
    """Log-softmax and softmax of every node's logits ``coef[v] @ x`` on [i0, i1).

    ``mx``, ``s`` and ``scale``/``bits`` (for :func:`_vexp`) are scratch.
    """
    V, B, p = coef.shape
    L = i1 - i0
    for v in range(V):
        for i in range(L):
            mx[i] = -np.inf
        for c in range(B):
            lc = nlog[v, c, off : off + L]
            for i in range(L):
                lc[i] = 0.0
            for j in range(p):
                w = coef[v, c, j]
                xj = XT[j, i0:i1]
                for i in range(L):
                    lc[i] += w * xj[i]
            for i in range(L):
                mx[i] = max(mx[i], lc[i])
        for i in range(L):
            s[i] = 0.0
        for c in range(B):
            lc = nlog[v, c, off : off + L]
            pc = nprob[v, c, off : off + L]
            for i in range(L):
                pc[i] = lc[i] - mx[i]
            _vexp(pc, L, scale, bits)
            for i in range(L):
                s[i] += pc[i]
        for i in range(L):
            t = s[i]
            mx[i] += math.log(t)  # mx := log-sum-exp
            s[i] = 1.0 / t
        for c in range(B):
            lc = nlog[v, c, off : off + L]
            pc = nprob[v, c, off : off + L]
            for i in range(L):
                lc[i] -= mx[i]
                pc[i] *= s[i]


@_jit
def _block_leaves(nlog, off, L, B, path, log_gate, gate_prob, i0, scale, bits):
    """Leaf log-weights (sums of node log-probabilities from the root) and weights on [i0, i0 + L).

    ``path`` (V, BLOCK) is scratch: the log-weight of each internal node's
    path from the root (the root's is 0 and never read).
    """
    V = nlog.shape[0]
    K = log_gate.shape[0]
    for t in range(1, V + K):
        parent = (t - 1) // B
        c = t - 1 - parent * B
        src = nlog[parent, c, off : off + L]
        if t < V:
            dst = path[t, :L]
            if parent == 0:
                for i in range(L):
                    dst[i] = src[i]
            else:
                up = path[parent, :L]
                for i in range(L):
                    dst[i] = up[i] + src[i]
        else:
            lk = log_gate[t - V, i0 : i0 + L]
            if parent == 0:
                for i in range(L):
                    lk[i] = src[i]
            else:
                up = path[parent, :L]
                for i in range(L):
                    lk[i] = up[i] + src[i]
            pk = gate_prob[t - V, i0 : i0 + L]
            for i in range(L):
                pk[i] = lk[i]
            _vexp(pk, L, scale, bits)


@_jit
def _child_mass(resp, i0, L, h, t, out):
    """out[i] = the posterior mass of tree position ``t`` at row i0 + i (a leaf's resp, else h[t])."""
    V = h.shape[0]
    if t >= V:
        rk = resp[t - V, i0 : i0 + L]
        for i in range(L):
            out[i] = rk[i]
    else:
        ht = h[t, :L]
        for i in range(L):
            out[i] = ht[i]


@_jit
def _block_masses(resp, i0, L, B, h):
    """h[v, i] = sum of resp[k, i0 + i] over the leaves k below internal node v (bottom up)."""
    V = h.shape[0]
    for v in range(V - 1, -1, -1):
        hv = h[v, :L]
        for c in range(B):
            t = v * B + 1 + c
            if t >= V:
                src = resp[t - V, i0 : i0 + L]
                if c == 0:
                    for i in range(L):
                        hv[i] = src[i]
                else:
                    for i in range(L):
                        hv[i] += src[i]
            else:
                src2 = h[t, :L]
                if c == 0:
                    for i in range(L):
                        hv[i] = src2[i]
                else:
                    for i in range(L):
                        hv[i] += src2[i]


@_jit
def _node_objective(sw, resp, i0, L, h, v, B, nlog, j, off, hc):
    """Node v's ``sum_i w_i sum_c h_{child c, i} log g_{v,c}(x_i)`` on [i0, i0 + L).

    The node's log-probabilities are ``nlog[j]`` (``j`` may differ from ``v``
    when only some nodes are evaluated); ``h`` holds the masses of ``resp``
    (:func:`_block_masses`); ``hc`` is scratch. Terms with a zero weight or a
    zero child mass are 0.
    """
    q = 0.0
    wb = sw[i0 : i0 + L]
    for c in range(B):
        _child_mass(resp, i0, L, h, v * B + 1 + c, hc)
        lc = nlog[j, c, off : off + L]
        for i in range(L):
            a = wb[i] * hc[i]
            hc[i] = a * lc[i] if a != 0.0 else 0.0  # a select, not a branch: the loop vectorises
        q += _dot(hc, _ONES, L)
    return q


@_jit
def _block_node_stats(XT, sw, resp, i0, i1, h, nlog, nprob, off, q, grad, hess, hc, u, t):
    """Add every node's objective, gradient and upper-block negative Hessian on [i0, i1).

    ``q`` (V,), ``grad`` (V, B-1, p), ``hess`` (V, (B-1) p, (B-1) p): the
    diagonal blocks full, the blocks above them (a < b) only, as
    :func:`mixexp._kernels._kernels._block_softmax_stats`.
    """
    V, B = nlog.shape[0], nlog.shape[1]
    p = XT.shape[0]
    L = i1 - i0
    wb = sw[i0:i1]
    for v in range(V):
        q[v] += _node_objective(sw, resp, i0, L, h, v, B, nlog, v, off, hc)
        hv = h[v, :L]
        for a in range(1, B):
            _child_mass(resp, i0, L, h, v * B + 1 + a, hc)
            ga = nprob[v, a, off : off + L]
            for i in range(L):
                u[i] = wb[i] * (hc[i] - hv[i] * ga[i])
            for j in range(p):
                grad[v, a - 1, j] += _dot(u, XT[j, i0:i1], L)
            for b in range(a, B):
                gb = nprob[v, b, off : off + L]
                delta = 1.0 if a == b else 0.0
                for i in range(L):
                    u[i] = wb[i] * hv[i] * ga[i] * (delta - gb[i])
                r0 = (a - 1) * p
                c0 = (b - 1) * p
                for x in range(p):
                    xa = XT[x, i0:i1]
                    for i in range(L):
                        t[i] = u[i] * xa[i]
                    for z in range(x if a == b else 0, p):
                        acc = _dot(t, XT[z, i0:i1], L)
                        hess[v, r0 + x, c0 + z] += acc
                        if a == b and z != x:
                            hess[v, r0 + z, c0 + x] += acc


# --------------------------------------------------------------------------
# kernels: chunks in parallel, blocks in order within a chunk
# --------------------------------------------------------------------------
@_pjit
def hme_nodes(XT, coef, node_ids, n_nodes, resp, sample_weight, with_obj, write_nodes, node_log, node_prob,
              q_parts, with_leaves, log_gate, gate_prob):  # fmt: skip
    """Nodes ``node_ids`` (coefficients ``coef``, (V', B, p)) on every row; optionally more.

    With ``write_nodes``, writes the nodes' log-softmax and softmax to
    ``node_log``/``node_prob`` (V', B, n); else they live in block scratch.
    With ``with_obj``, adds each node's objective under the leaf
    responsibilities ``resp`` (K, n) of the ``n_nodes``-node tree to
    ``q_parts`` (chunks, V'); ``node_ids`` may repeat a node (several
    candidate coefficients of one node, e.g. step sizes). With
    ``with_leaves`` (``node_ids`` every node, in order), writes the leaf
    log-weights and weights (K, n).
    """
    n = XT.shape[1]
    nv, B = coef.shape[0], coef.shape[1]
    nc = q_parts.shape[0]
    for c in prange(nc):
        mx = np.empty(BLOCK)
        s = np.empty(BLOCK)
        hc = np.empty(BLOCK)
        scale = np.empty(BLOCK)
        bits = scale.view(np.int64)
        h = np.empty((n_nodes, BLOCK))
        path = np.empty((n_nodes, BLOCK))
        if write_nodes:
            nlog = node_log
            nprob = node_prob
        else:
            nlog = np.empty((nv, B, BLOCK))
            nprob = np.empty((nv, B, BLOCK))
        b0, b1 = _chunk_blocks(c, nc, n)
        for b in range(b0, b1):
            i0 = b * BLOCK
            i1 = min(n, i0 + BLOCK)
            L = i1 - i0
            off = i0 if write_nodes else 0
            _block_node_softmax(XT, coef, i0, i1, nlog, nprob, off, mx, s, scale, bits)
            if with_obj:
                _block_masses(resp, i0, L, B, h)
                for j in range(nv):
                    q_parts[c, j] += _node_objective(sample_weight, resp, i0, L, h, node_ids[j], B,
                                                     nlog, j, off, hc)  # fmt: skip
            if with_leaves:
                _block_leaves(nlog, off, L, B, path, log_gate, gate_prob, i0, scale, bits)


@_pjit
def hme_leaves(node_log, log_gate, gate_prob):
    """Leaf log-weights and weights (K, n) from every node's log-probabilities (V, B, n)."""
    V, B, n = node_log.shape
    nb = (n + BLOCK - 1) // BLOCK
    for b in prange(nb):
        i0 = b * BLOCK
        i1 = min(n, i0 + BLOCK)
        scale = np.empty(BLOCK)
        bits = scale.view(np.int64)
        path = np.empty((V, BLOCK))
        _block_leaves(node_log, i0, i1 - i0, B, path, log_gate, gate_prob, i0, scale, bits)


@_pjit
def hme_node_stats(XT, node_log, node_prob, resp, sample_weight, q, grad, hess):
    """Per-chunk objective, gradient and upper-block negative Hessian of every node (see the module)."""
    V, B, n = node_log.shape
    nc = q.shape[0]
    for c in prange(nc):
        hc = np.empty(BLOCK)
        u = np.empty(BLOCK)
        t = np.empty(BLOCK)
        h = np.empty((V, BLOCK))
        b0, b1 = _chunk_blocks(c, nc, n)
        for b in range(b0, b1):
            i0 = b * BLOCK
            i1 = min(n, i0 + BLOCK)
            _block_masses(resp, i0, i1 - i0, B, h)
            _block_node_stats(XT, sample_weight, resp, i0, i1, h, node_log, node_prob, i0, q[c], grad[c],
                              hess[c], hc, u, t)  # fmt: skip


@_pjit
def fused_hme(
    XgT, coef, XeT, y, expert_coef, var, log_prob, gaussian, sample_weight, resp_prev, with_prev,
    log_gate, gate_prob, resp, ll_rows, ll_parts, qprev, q, grad, hess, gram, xy, yy, nk,
):  # fmt: skip
    """One EM pass of a hierarchical gate: the tree, the E-step and every node's M-step statistics.

    Per block: every node's log-softmax at ``coef`` (block scratch only), the
    leaf log-weights and weights; with ``with_prev``, each node's objective
    under the previous responsibilities ``resp_prev`` (the check of the last
    gate step, per node, into ``qprev``); the experts' log-densities (Gaussian
    linear experts ``expert_coef``, ``var`` when ``gaussian``, else read from
    ``log_prob``, which may be ``resp`` itself), the posterior and the per-row
    log-likelihood; with ``gaussian`` the experts' weighted moments; then
    every node's objective, gradient and negative Hessian under the new
    posterior.
    """
    n = XgT.shape[1]
    V, B = coef.shape[0], coef.shape[1]
    K = log_gate.shape[0]
    nc = ll_parts.shape[0]
    for c in prange(nc):
        mx = np.empty(BLOCK)
        s = np.empty(BLOCK)
        hc = np.empty(BLOCK)
        u = np.empty(BLOCK)
        t = np.empty(BLOCK)
        scale = np.empty(BLOCK)
        bits = scale.view(np.int64)
        nlog = np.empty((V, B, BLOCK))
        nprob = np.empty((V, B, BLOCK))
        h = np.empty((V, BLOCK))
        path = np.empty((V, BLOCK))
        b0, b1 = _chunk_blocks(c, nc, n)
        acc = 0.0
        for b in range(b0, b1):
            i0 = b * BLOCK
            i1 = min(n, i0 + BLOCK)
            L = i1 - i0
            _block_node_softmax(XgT, coef, i0, i1, nlog, nprob, 0, mx, s, scale, bits)
            _block_leaves(nlog, 0, L, B, path, log_gate, gate_prob, i0, scale, bits)
            if with_prev:
                _block_masses(resp_prev, i0, L, B, h)
                for v in range(V):
                    qprev[c, v] += _node_objective(sample_weight, resp_prev, i0, L, h, v, B, nlog, v, 0, hc)
            if gaussian:
                _block_gaussian_log_prob(XeT, y, expert_coef, var, i0, i1, resp, mx)
                for k in range(K):
                    rk = resp[k, i0:i1]
                    gk = log_gate[k, i0:i1]
                    for i in range(L):
                        rk[i] += gk[i]
            else:
                for k in range(K):
                    rk = resp[k, i0:i1]
                    fk = log_prob[k, i0:i1]
                    gk = log_gate[k, i0:i1]
                    for i in range(L):
                        rk[i] = fk[i] + gk[i]
            _block_posterior(resp, i0, i1, mx, s, scale, bits)
            for i in range(i0, i1):
                ll_rows[i] = mx[i - i0]
                if sample_weight[i] != 0.0:
                    acc += sample_weight[i] * mx[i - i0]
            if gaussian:
                _block_linear_stats(XeT, y, sample_weight, resp, i0, i1, gram[c], xy[c], yy[c], nk[c], mx, s)
            _block_masses(resp, i0, L, B, h)
            _block_node_stats(XgT, sample_weight, resp, i0, i1, h, nlog, nprob, 0, q[c], grad[c], hess[c],
                              hc, u, t)  # fmt: skip
        ll_parts[c] = acc
