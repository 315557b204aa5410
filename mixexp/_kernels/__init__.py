"""Checked Python wrappers around the Numba kernels.

Layout: designs are feature-major ``XT`` of shape (p, n); per-expert arrays
are expert-major, shape (K, n). Each wrapper makes its inputs float64 and
C-contiguous, allocates the outputs and the per-block partial sums, calls the
private kernel, and adds the chunks' partial sums up in chunk order
(deterministic whatever the thread count). Kernels compile lazily on first call and are cached on disk
(see :mod:`mixexp._kernels._config`).
"""

import numba
import numpy as np

from . import _kernels as _k
from ._kernels import n_blocks, n_chunks

__all__ = [
    "e_step",
    "fused_softmax_gaussian",
    "gaussian_log_prob",
    "linear_stats",
    "log_softmax_linear",
    "softmax_gate_stats",
]


def _run(kernel, n, *args):
    """Call a parallel kernel; with a single block, on one thread.

    Waking a thread team costs more than a block's work, and far more when the
    cores are busy; one thread computes exactly the same sums.
    """
    if n_blocks(n) > 1:
        return kernel(*args)
    before = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        return kernel(*args)
    finally:
        numba.set_num_threads(before)


def _f64(a):
    return np.ascontiguousarray(a, dtype=np.float64)


def _symmetrize_upper(a):
    """Full symmetric matrices from upper triangles (last two axes)."""
    diag = np.diagonal(a, axis1=-2, axis2=-1).copy()
    full = a + np.swapaxes(a, -1, -2)
    idx = np.arange(a.shape[-1])
    full[..., idx, idx] = diag
    return full


def _symmetrize_block_upper(h, p):
    """Full Hessian from its upper block triangle (diagonal blocks are full)."""
    full = h + h.T
    for k in range(h.shape[0] // p):
        s = slice(k * p, (k + 1) * p)
        full[s, s] = h[s, s]
    return full


def _out(buffer, shape):
    """``buffer`` if it is a usable float64 C-contiguous array of ``shape``, else a new one."""
    if (
        buffer is not None
        and buffer.shape == shape
        and buffer.dtype == np.float64
        and buffer.flags.c_contiguous
        and buffer.flags.writeable
    ):
        return buffer
    return np.empty(shape)


def e_step(log_gate, log_prob, sample_weight, out=None):
    """Posterior responsibilities and log-likelihood from (K, n) log arrays.

    Parameters
    ----------
    log_gate, log_prob : ndarray of shape (K, n)
    sample_weight : ndarray of shape (n,)
    out : ndarray of shape (K, n), optional
        Where to write the responsibilities; may be ``log_prob`` itself (each
        element is read before it is written), which saves a (K, n) array.

    Returns
    -------
    resp : ndarray of shape (K, n)
    ll_rows : ndarray of shape (n,)
        log p(y_i | x_i) per sample.
    total : float
        sum_i w_i log p(y_i | x_i).
    """
    log_gate = _f64(log_gate)
    log_prob = _f64(log_prob)
    sample_weight = _f64(sample_weight)
    K, n = log_gate.shape
    if log_prob.shape != (K, n) or sample_weight.shape != (n,):
        raise ValueError("e_step: log_gate, log_prob and sample_weight disagree in shape")
    resp = _out(out, (K, n))
    ll_rows = np.empty(n)
    blocks = np.zeros(n_chunks(n))
    _run(_k.e_step, n, log_gate, log_prob, sample_weight, resp, ll_rows, blocks)
    return resp, ll_rows, float(blocks.sum())


def log_softmax_linear(XT, coef, resp=None, sample_weight=None):
    """Row log-softmax of the logits ``coef @ XT``, and optionally the gate objective.

    Returns
    -------
    log_gate : ndarray of shape (K, n)
    gate_prob : ndarray of shape (K, n)
        ``exp(log_gate)``, computed on the way.
    objective : float or None
        sum_i w_i sum_k r_ki log g_ki when ``resp`` is given.
    """
    XT = _f64(XT)
    coef = _f64(coef)
    n = XT.shape[1]
    K = coef.shape[0]
    log_out = np.empty((K, n))
    prob_out = np.empty((K, n))
    blocks = np.zeros(n_chunks(n))
    with_objective = resp is not None
    if with_objective:
        resp = _f64(resp)
        sample_weight = _f64(sample_weight)
    else:
        resp = np.zeros((1, 1))
        sample_weight = np.zeros(1)
    _run(_k.log_softmax_linear, n, XT, coef, resp, sample_weight, log_out, prob_out, blocks, with_objective)
    return log_out, prob_out, (float(blocks.sum()) if with_objective else None)


def softmax_gate_stats(XT, log_gate, gate_prob, resp, sample_weight):
    """Value, gradient (K-1, p) and negative Hessian ((K-1)p, (K-1)p) of the gate objective.

    The objective is sum_i w_i sum_k r_ki log g_k(x_i) with expert 0 as reference.
    """
    XT = _f64(XT)
    p, n = XT.shape
    K = log_gate.shape[0]
    nb = n_chunks(n)
    grad = np.zeros((nb, K - 1, p))
    hess = np.zeros((nb, (K - 1) * p, (K - 1) * p))
    q = np.zeros(nb)
    _run(
        _k.softmax_gate_stats, n,
        XT, _f64(log_gate), _f64(gate_prob), _f64(resp), _f64(sample_weight), grad, hess, q,
    )
    return float(q.sum()), grad.sum(axis=0), _symmetrize_block_upper(hess.sum(axis=0), p)


def gaussian_log_prob(XT, y, coef, var):
    """(K, n) array of log N(y_i; x_i . coef_k, var_k)."""
    XT = _f64(XT)
    n = XT.shape[1]
    out = np.empty((coef.shape[0], n))
    _run(_k.gaussian_log_prob, n, XT, _f64(y), _f64(coef), _f64(var), out)
    return out


def linear_stats(XT, y, resp, sample_weight):
    """Weighted moments per expert: gram (K, p, p), xy (K, p), yy (K,), nk (K,)."""
    XT = _f64(XT)
    p, n = XT.shape
    K = resp.shape[0]
    nb = n_chunks(n)
    gram = np.zeros((nb, K, p, p))
    xy = np.zeros((nb, K, p))
    yy = np.zeros((nb, K))
    nk = np.zeros((nb, K))
    _run(_k.linear_stats, n, XT, _f64(y), _f64(resp), _f64(sample_weight), gram, xy, yy, nk)
    return (
        _symmetrize_upper(gram.sum(axis=0)),
        xy.sum(axis=0),
        yy.sum(axis=0),
        nk.sum(axis=0),
    )


def fused_softmax_gaussian(XgT, gate_coef, XeT, y, coef, var, sample_weight, resp_prev=None, out=None):
    """Gate, E-step and all M-step statistics for a softmax gate with Gaussian experts.

    Parameters
    ----------
    XgT, XeT : ndarray of shape (p_gate, n), (p_expert, n)
    gate_coef : ndarray of shape (K, p_gate)
    y, sample_weight : ndarray of shape (n,)
    coef, var : ndarray of shape (K, p_expert), (K,)
        Expert coefficients and variances.
    resp_prev : ndarray of shape (K, n), optional
        Responsibilities of the previous pass: the kernel then also returns the
        gate objective of the new gate under them (to check a gate step).
    out : tuple of three ndarrays of shape (K, n), optional
        Buffers to reuse for ``(log_gate, gate_prob, resp)`` (none of them may
        be ``resp_prev``); saves allocating and faulting in three (K, n)
        arrays per pass.

    Returns
    -------
    resp, ll_rows, total
        As :func:`e_step`.
    gate_eval : tuple (log_gate, gate_prob)
        The gate at ``gate_coef``, each (K, n).
    q_prev : float or None
        sum_i w_i sum_k r_prev_ki log g_ki, when ``resp_prev`` is given.
    gate_stats : tuple (objective, grad, hess)
        As :func:`softmax_gate_stats`, with the new responsibilities.
    expert_stats : tuple (gram, xy, yy, nk)
        As :func:`linear_stats`, with the new responsibilities.
    """
    XgT = _f64(XgT)
    XeT = _f64(XeT)
    pg, n = XgT.shape
    pe = XeT.shape[0]
    K = coef.shape[0]
    nb = n_chunks(n)
    with_prev = resp_prev is not None
    resp_prev = _f64(resp_prev) if with_prev else np.zeros((1, 1))
    out = (None, None, None) if out is None else out
    log_gate, gate_prob, resp = (_out(b, (K, n)) for b in out)
    if with_prev and any(np.shares_memory(b, resp_prev) for b in (log_gate, gate_prob, resp)):
        raise ValueError("fused_softmax_gaussian: an out buffer overlaps resp_prev")
    ll_rows = np.empty(n)
    blocks = np.zeros(nb)
    qprev = np.zeros(nb)
    q = np.zeros(nb)
    grad = np.zeros((nb, K - 1, pg))
    hess = np.zeros((nb, (K - 1) * pg, (K - 1) * pg))
    gram = np.zeros((nb, K, pe, pe))
    xy = np.zeros((nb, K, pe))
    yy = np.zeros((nb, K))
    nk = np.zeros((nb, K))
    _run(
        _k.fused_softmax_gaussian, n,
        XgT, _f64(gate_coef), XeT, _f64(y), _f64(coef), _f64(var), _f64(sample_weight),
        resp_prev, with_prev, log_gate, gate_prob, resp, ll_rows, blocks, qprev,
        grad, hess, q, gram, xy, yy, nk,
    )
    gate_stats = (
        float(q.sum()),
        grad.sum(axis=0),
        _symmetrize_block_upper(hess.sum(axis=0), pg),
    )
    expert_stats = (
        _symmetrize_upper(gram.sum(axis=0)),
        xy.sum(axis=0),
        yy.sum(axis=0),
        nk.sum(axis=0),
    )
    q_prev = float(qprev.sum()) if with_prev else None
    return resp, ll_rows, float(blocks.sum()), (log_gate, gate_prob), q_prev, gate_stats, expert_stats
