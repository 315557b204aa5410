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

from . import _glm as _g
from . import _kernels as _k
from . import _multinomial as _mn
from . import _topk_line as _tl
from ._kernels import n_blocks, n_chunks

__all__ = [
    "e_step",
    "fused_softmax_gaussian",
    "gaussian_log_prob",
    "linear_stats",
    "log_softmax_linear",
    "softmax_gate_stats",
    "topk_line_loglik",
]


#: kernels on at most this many blocks of rows run on one thread
SERIAL_BLOCKS = 4


def _run(kernel, n, *args):
    """Call a parallel kernel; with at most ``SERIAL_BLOCKS`` blocks, on one thread.

    Waking a thread team costs about as much as a few blocks' work on idle
    cores, and milliseconds when the cores are busy (measured: a 2000-row fused
    pass took 3-7 ms with a thread team at load 10 on 2 cores, against tens of
    microseconds on one thread); one thread computes exactly the same sums.
    """
    before = numba.get_num_threads()
    if n_blocks(n) > SERIAL_BLOCKS or before == 1:
        # (already one thread, as in joblib workers: no round trip of the setting)
        return kernel(*args)
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


# -- log-link GLM experts (Poisson, Gamma) ---------------------------------------------------------
__all__ += ["GLM_FAMILIES", "glm_log_prob", "glm_stats"]

#: family name -> code of the GLM kernels in :mod:`mixexp._kernels._glm`
GLM_FAMILIES = {"poisson": _g.POISSON, "gamma": _g.GAMMA}


def _glm_code(family):
    if family not in GLM_FAMILIES:
        raise ValueError(f"unknown GLM family {family!r}; expected one of {sorted(GLM_FAMILIES)}")
    return GLM_FAMILIES[family]


def glm_log_prob(XT, y, coef, family, shape=None):
    """(K, n) log-densities of log-link GLM experts.

    Parameters
    ----------
    XT : ndarray of shape (p, n)
    y : ndarray of shape (n,)
        Non-negative integer counts (Poisson) or positive values (Gamma).
    coef : ndarray of shape (K, p)
    family : {"poisson", "gamma"}
    shape : ndarray of shape (K,), optional
        Gamma shapes alpha_k (required for ``"gamma"``).

    Returns
    -------
    ndarray of shape (K, n)
        Poisson: ``y eta - exp(eta) - log(y!)``; Gamma: ``alpha log(alpha y / mu)
        - alpha y / mu - log y - lgamma(alpha)`` with ``mu = exp(eta)``,
        ``eta = coef_k . x_i``.
    """
    code = _glm_code(family)
    XT = _f64(XT)
    coef = _f64(coef)
    p, n = XT.shape
    K = coef.shape[0]
    if coef.shape[1] != p or np.shape(y) != (n,):
        raise ValueError("glm_log_prob: XT, y and coef disagree in shape")
    if code == _g.GAMMA:
        if shape is None or np.shape(shape) != (K,):
            raise ValueError("glm_log_prob: the gamma family needs shape of shape (K,)")
        shape = _f64(shape)
    else:
        shape = np.ones(K)
    out = np.empty((K, n))
    _run(_g.glm_log_prob, n, XT, _f64(y), coef, shape, code, _g.LOG_FACTORIAL, out)
    return out


def glm_stats(XT, y, resp, sample_weight, coef, family, active=None, derivatives=True, log_y=False):
    """Objective, gradient and negative Hessian of each expert's GLM M-step.

    With ``a_i = w_i r_ki``, ``eta_i = coef_k . x_i``: Poisson objective
    ``sum_i a_i (y_i eta_i - exp(eta_i))``; Gamma objective (at shape 1; the
    shape scales it) ``sum_i a_i (-eta_i - y_i exp(-eta_i))``.

    Parameters
    ----------
    XT : ndarray of shape (p, n)
    y, sample_weight : ndarray of shape (n,)
    resp : ndarray of shape (K, n)
    coef : ndarray of shape (K, p)
    family : {"poisson", "gamma"}
    active : ndarray of bool of shape (K,), optional
        Experts to evaluate (default all); the others get zeros.
    derivatives : bool, default=True
        Also compute the gradient, the negative Hessian and ``nk``.
    log_y : bool, default=False
        Also compute ``sum_i a_i log y_i`` (Gamma's shape step).

    Returns
    -------
    q : ndarray of shape (K,)
    grad : ndarray of shape (K, p) or None
    hess : ndarray of shape (K, p, p) or None
        Negative Hessian (positive semi-definite).
    nk : ndarray of shape (K,) or None
        ``sum_i a_i``.
    log_y_sum : ndarray of shape (K,) or None
    """
    code = _glm_code(family)
    XT = _f64(XT)
    coef = _f64(coef)
    resp = _f64(resp)
    p, n = XT.shape
    K = coef.shape[0]
    if coef.shape[1] != p or resp.shape != (K, n) or np.shape(y) != (n,) or np.shape(sample_weight) != (n,):
        raise ValueError("glm_stats: XT, y, resp, sample_weight and coef disagree in shape")
    active = np.ones(K, dtype=np.bool_) if active is None else np.ascontiguousarray(active, dtype=np.bool_)
    nc = n_chunks(n)
    q = np.zeros((nc, K))
    grad = np.zeros((nc, K, p) if derivatives else (1, 1, 1))
    hess = np.zeros((nc, K, p, p) if derivatives else (1, 1, 1, 1))
    nk = np.zeros((nc, K) if derivatives else (1, 1))
    lys = np.zeros((nc, K) if log_y else (1, 1))
    _run(
        _g.glm_stats, n,
        XT, _f64(y), resp, _f64(sample_weight), coef, code, active, derivatives, log_y,
        q, grad, hess, nk, lys,
    )
    return (
        q.sum(axis=0),
        grad.sum(axis=0) if derivatives else None,
        _symmetrize_upper(hess.sum(axis=0)) if derivatives else None,
        nk.sum(axis=0) if derivatives else None,
        lys.sum(axis=0) if log_y else None,
    )


# -- multinomial logistic experts -----------------------------------------------------------------
__all__ += ["multinomial_log_prob", "multinomial_stats"]


def _class_indices(y, n, n_classes, name):
    """y as C-contiguous int64 class indices in [0, n_classes) (the kernels index with them)."""
    y = np.asarray(y)
    if y.shape != (n,):
        raise ValueError(f"{name}: y must have shape ({n},); got {y.shape}")
    labels = np.ascontiguousarray(y, dtype=np.int64)
    if n and (labels.min() < 0 or labels.max() >= n_classes or not np.array_equal(labels, y)):
        raise ValueError(f"{name}: y must hold class indices 0..{n_classes - 1}")
    return labels


def multinomial_log_prob(XT, y, coef):
    """(K, n) log class probabilities log p_k(y_i | x_i) of multinomial logistic experts.

    Parameters
    ----------
    XT : ndarray of shape (p, n)
    y : ndarray of shape (n,)
        Class indices 0..C-1 (integer-valued floats accepted).
    coef : ndarray of shape (K, C, p)
        Each expert's coefficients, class 0 the reference.

    Returns
    -------
    ndarray of shape (K, n)
        ``log softmax(coef[k] @ x_i)[y_i]``.
    """
    XT = _f64(XT)
    coef = _f64(coef)
    p, n = XT.shape
    K, C, pc = coef.shape
    if pc != p:
        raise ValueError("multinomial_log_prob: XT and coef disagree in shape")
    labels = _class_indices(y, n, C, "multinomial_log_prob")
    out = np.empty((K, n))
    _run(_mn.multinomial_log_prob, n, XT, labels, coef, out, n_chunks(n))
    return out


def multinomial_stats(XT, y, coef, resp, sample_weight, active=None, derivatives=True):
    """M-step objective, gradient and negative Hessian of each multinomial logistic expert.

    With ``a_i = w_i r_ki`` the objective of expert k is ``sum_i a_i log p_k(y_i | x_i)``
    (terms with ``a_i = 0`` are zero); gradient and Hessian are those of the
    softmax gate (:func:`softmax_gate_stats`) with one-hot targets, class 0 the
    reference.

    Parameters
    ----------
    XT : ndarray of shape (p, n)
    y : ndarray of shape (n,)
        Class indices 0..C-1.
    coef : ndarray of shape (K, C, p)
    resp : ndarray of shape (K, n)
    sample_weight : ndarray of shape (n,)
    active : ndarray of bool of shape (K,), optional
        Experts to evaluate (default all); the others get zeros.
    derivatives : bool, default=True
        Also compute the gradient and the negative Hessian.

    Returns
    -------
    q : ndarray of shape (K,)
    grad : ndarray of shape (K, C - 1, p) or None
    hess : ndarray of shape (K, (C - 1) p, (C - 1) p) or None
        Negative Hessian (positive semi-definite), full.
    """
    XT = _f64(XT)
    coef = _f64(coef)
    resp = _f64(resp)
    p, n = XT.shape
    K, C, pc = coef.shape
    if pc != p or resp.shape != (K, n) or np.shape(sample_weight) != (n,):
        raise ValueError("multinomial_stats: XT, coef, resp and sample_weight disagree in shape")
    labels = _class_indices(y, n, C, "multinomial_stats")
    active = np.ones(K, dtype=np.bool_) if active is None else np.ascontiguousarray(active, dtype=np.bool_)
    nc = n_chunks(n)
    q = np.zeros((nc, K))
    m = (C - 1) * p
    grad = np.zeros((nc, K, C - 1, p) if derivatives else (1, 1, 1, 1))
    hess = np.zeros((nc, K, m, m) if derivatives else (1, 1, 1, 1))
    _run(
        _mn.multinomial_stats, n,
        XT, labels, coef, resp, _f64(sample_weight), active, derivatives, q, grad, hess,
    )
    if not derivatives:
        return q.sum(axis=0), None, None
    hess = hess.sum(axis=0)
    return (
        q.sum(axis=0),
        grad.sum(axis=0),
        np.stack([_symmetrize_block_upper(hess[k], p) for k in range(K)]) if K else hess,
    )


__all__ += ["fused_softmax_multinomial"]


def fused_softmax_multinomial(
    XgT, gate_coef, XeT, y, coef, sample_weight, resp_prev=None, expert_resp_prev=None, out=None
):
    """Gate, E-step and all M-step statistics for a softmax gate with multinomial logistic experts.

    Parameters
    ----------
    XgT, XeT : ndarray of shape (p_gate, n), (p_expert, n)
    gate_coef : ndarray of shape (K, p_gate)
    y : ndarray of shape (n,)
        Class indices 0..C-1.
    coef : ndarray of shape (K, C, p_expert)
        Expert coefficients.
    sample_weight : ndarray of shape (n,)
    resp_prev : ndarray of shape (K, n), optional
        Responsibilities the gate's last step was computed from: the kernel
        then also returns the gate objective of the new gate under them.
    expert_resp_prev : ndarray of shape (K, n), optional
        Responsibilities the experts' last steps were computed from: the
        kernel then also returns each expert's objective at ``coef`` under them.
    out : tuple of three ndarrays of shape (K, n), optional
        Buffers to reuse for ``(log_gate, gate_prob, resp)`` (none of them may
        be ``resp_prev`` or ``expert_resp_prev``).

    Returns
    -------
    resp, ll_rows, total
        As :func:`e_step`.
    gate_eval : tuple (log_gate, gate_prob)
    q_prev : float or None
        sum_i w_i sum_k r_prev_ki log g_ki, when ``resp_prev`` is given.
    gate_stats : tuple (objective, grad, hess)
        As :func:`softmax_gate_stats`, with the new responsibilities.
    expert_stats : tuple (q, grad, hess)
        As :func:`multinomial_stats`, with the new responsibilities.
    expert_q_prev : ndarray of shape (K,) or None
        sum_i w_i r_prev_ki log p_k(y_i | x_i), when ``expert_resp_prev`` is given.
    """
    XgT = _f64(XgT)
    XeT = _f64(XeT)
    coef = _f64(coef)
    pg, n = XgT.shape
    K, C, pe = coef.shape
    if XeT.shape != (pe, n) or np.shape(gate_coef) != (K, pg) or np.shape(sample_weight) != (n,):
        raise ValueError("fused_softmax_multinomial: the designs, coefficients and weights disagree in shape")
    labels = _class_indices(y, n, C, "fused_softmax_multinomial")
    nc = n_chunks(n)
    with_prev = resp_prev is not None
    with_eprev = expert_resp_prev is not None
    resp_prev = _f64(resp_prev) if with_prev else np.zeros((1, 1))
    eresp_prev = _f64(expert_resp_prev) if with_eprev else np.zeros((1, 1))
    out = (None, None, None) if out is None else out
    log_gate, gate_prob, resp = (_out(b, (K, n)) for b in out)
    for prev, used in ((resp_prev, with_prev), (eresp_prev, with_eprev)):
        if used and any(np.shares_memory(b, prev) for b in (log_gate, gate_prob, resp)):
            raise ValueError("fused_softmax_multinomial: an out buffer overlaps a previous resp")
    m = (C - 1) * pe
    ll_rows = np.empty(n)
    blocks = np.zeros(nc)
    qprev = np.zeros(nc)
    q = np.zeros(nc)
    grad = np.zeros((nc, K - 1, pg))
    hess = np.zeros((nc, (K - 1) * pg, (K - 1) * pg))
    eqprev = np.zeros((nc, K))
    eq = np.zeros((nc, K))
    egrad = np.zeros((nc, K, C - 1, pe))
    ehess = np.zeros((nc, K, m, m))
    _run(
        _mn.fused_softmax_multinomial, n,
        XgT, _f64(gate_coef), XeT, labels, coef, _f64(sample_weight), resp_prev, with_prev,
        eresp_prev, with_eprev, log_gate, gate_prob, resp, ll_rows, blocks, qprev, grad, hess, q,
        eqprev, eq, egrad, ehess,
    )
    gate_stats = (float(q.sum()), grad.sum(axis=0), _symmetrize_block_upper(hess.sum(axis=0), pg))
    ehess = ehess.sum(axis=0)
    expert_stats = (
        eq.sum(axis=0),
        egrad.sum(axis=0),
        np.stack([_symmetrize_block_upper(ehess[k], pe) for k in range(K)]),
    )
    return (
        resp, ll_rows, float(blocks.sum()), (log_gate, gate_prob),
        float(qprev.sum()) if with_prev else None, gate_stats, expert_stats,
        eqprev.sum(axis=0) if with_eprev else None,
    )


# -- hierarchical (HME) gate ------------------------------------------------------------------------
__all__ += ["fused_hme", "hme_leaves", "hme_node_stats", "hme_nodes"]


def _hme_coef(coef, p):
    """Node coefficients as float64 (V, B, p), or a ValueError."""
    coef = _f64(coef)
    if coef.ndim != 3 or coef.shape[1] < 2 or coef.shape[2] != p:
        raise ValueError(
            f"node coefficients must have shape (n_nodes, branching >= 2, {p}); got {coef.shape}"
        )
    return coef


def _hme_n_nodes(n_leaves, branching):
    """Internal nodes of the complete tree with ``n_leaves`` leaves, or a ValueError."""
    n_nodes, rem = divmod(n_leaves - 1, branching - 1)
    size, leaves = 1, 1
    while size < n_nodes:
        leaves *= branching
        size += leaves
    if rem or n_nodes < 1 or size != n_nodes:
        raise ValueError(f"{n_leaves} leaves are not those of a complete tree of branching {branching}")
    return n_nodes


def hme_nodes(XT, coef, node_ids=None, resp=None, sample_weight=None, leaves=False, nodes=True):
    """Log-softmax of some (or all) nodes of a hierarchical gate; their objectives; the leaves.

    Parameters
    ----------
    XT : ndarray of shape (p, n)
    coef : ndarray of shape (V', B, p)
        Coefficients of the nodes ``node_ids`` (breadth-first positions).
    node_ids : ndarray of int of shape (V',), optional
        Which nodes ``coef`` holds (default ``0, ..., V' - 1``). A node may
        appear more than once (candidate coefficients, e.g. step sizes).
    resp : ndarray of shape (K, n), optional
        Leaf responsibilities: then each node's objective
        ``sum_i w_i sum_c h_{child c, i} log g_{v,c}(x_i)`` is returned.
    sample_weight : ndarray of shape (n,), optional
        Required with ``resp``.
    leaves : bool, default=False
        Also the leaf log-weights and weights (``coef`` must then hold every
        node, in order).
    nodes : bool, default=True
        Return the nodes' arrays (else they stay in per-block scratch, and
        ``None`` is returned for them).

    Returns
    -------
    node_log, node_prob : ndarray of shape (V', B, n) or None
    q : ndarray of shape (V',) or None
    leaf : tuple (log_gate, gate_prob) of (K, n) arrays, or None
    """
    from . import _hme as _h

    XT = _f64(XT)
    p, n = XT.shape
    coef = _hme_coef(coef, p)
    nv, B = coef.shape[:2]
    node_ids = np.arange(nv) if node_ids is None else np.ascontiguousarray(node_ids, dtype=np.int64)
    if node_ids.shape != (nv,):
        raise ValueError("hme_nodes: node_ids and coef disagree in shape")
    with_obj = resp is not None
    if with_obj:
        resp = _f64(resp)
        sample_weight = _f64(sample_weight)
        if resp.ndim != 2 or resp.shape[1] != n or sample_weight.shape != (n,):
            raise ValueError("hme_nodes: XT, resp and sample_weight disagree in shape")
        n_nodes = _hme_n_nodes(resp.shape[0], B)
        if nv and (node_ids.min() < 0 or node_ids.max() >= n_nodes):
            raise ValueError(f"hme_nodes: node_ids must lie in [0, {n_nodes})")
    else:
        resp, sample_weight, n_nodes = np.zeros((1, 1)), np.zeros(1), nv
    if leaves:
        if not np.array_equal(node_ids, np.arange(nv)):
            raise ValueError("hme_nodes: the leaves need every node's coefficients, in order")
        K = nv * (B - 1) + 1
        _hme_n_nodes(K, B)
        log_gate, gate_prob = np.empty((K, n)), np.empty((K, n))
    else:
        log_gate, gate_prob = np.empty((1, 1)), np.empty((1, 1))
    shape = (nv, B, n) if nodes else (1, 1, 1)
    node_log, node_prob = np.empty(shape), np.empty(shape)
    q = np.zeros((n_chunks(n), nv))
    _run(
        _h.hme_nodes, n,
        XT, coef, node_ids, n_nodes, resp, sample_weight, with_obj, nodes, node_log, node_prob, q,
        leaves, log_gate, gate_prob,
    )  # fmt: skip
    leaf = (log_gate, gate_prob) if leaves else None
    if not nodes:
        node_log = node_prob = None
    return node_log, node_prob, (q.sum(axis=0) if with_obj else None), leaf


def hme_leaves(node_log):
    """Leaf log-weights and weights (K, n) of a hierarchical gate from the nodes' (V, B, n) log-softmax."""
    from . import _hme as _h

    node_log = _f64(node_log)
    V, B, n = node_log.shape
    K = V * (B - 1) + 1
    _hme_n_nodes(K, B)
    log_gate, gate_prob = np.empty((K, n)), np.empty((K, n))
    _run(_h.hme_leaves, n, node_log, log_gate, gate_prob)
    return log_gate, gate_prob


def _hme_stats_out(nc, V, B, p):
    return np.zeros((nc, V)), np.zeros((nc, V, B - 1, p)), np.zeros((nc, V, (B - 1) * p, (B - 1) * p))


def _hme_stats_sum(q, grad, hess, p):
    """Chunks' partial sums added up; each node's Hessian made full (:func:`_symmetrize_block_upper`)."""
    hess = hess.sum(axis=0)
    full = hess + np.swapaxes(hess, 1, 2)
    for k in range(hess.shape[1] // p):
        s = slice(k * p, (k + 1) * p)
        full[:, s, s] = hess[:, s, s]
    return q.sum(axis=0), grad.sum(axis=0), full


def hme_node_stats(XT, node_log, node_prob, resp, sample_weight):
    """Every node's M-step objective, gradient and negative Hessian under leaf responsibilities.

    Node ``v``'s objective is ``sum_i w_i sum_c h_{child c, i} log g_{v,c}(x_i)``
    (``h`` the posterior masses below each tree position); its gradient and
    negative Hessian are the softmax gate's (:func:`softmax_gate_stats`) with
    targets ``h_child / h_v`` and weights ``w h_v``, child 0 the reference.

    Parameters
    ----------
    XT : ndarray of shape (p, n)
    node_log, node_prob : ndarray of shape (V, B, n)
        Every node's log-softmax and softmax, breadth first.
    resp : ndarray of shape (K, n)
    sample_weight : ndarray of shape (n,)

    Returns
    -------
    q : ndarray of shape (V,)
    grad : ndarray of shape (V, B - 1, p)
    hess : ndarray of shape (V, (B - 1) p, (B - 1) p)
        Negative Hessians (positive semi-definite), full.
    """
    from . import _hme as _h

    XT = _f64(XT)
    p, n = XT.shape
    node_log, node_prob, resp = _f64(node_log), _f64(node_prob), _f64(resp)
    V, B = node_log.shape[:2]
    sample_weight = _f64(sample_weight)
    if node_log.shape != (V, B, n) or node_prob.shape != (V, B, n) or sample_weight.shape != (n,):
        raise ValueError("hme_node_stats: XT, node_log, node_prob and sample_weight disagree in shape")
    if resp.shape != (V * (B - 1) + 1, n) or _hme_n_nodes(resp.shape[0], B) != V:
        raise ValueError("hme_node_stats: resp must have one row per leaf of the tree")
    q, grad, hess = _hme_stats_out(n_chunks(n), V, B, p)
    _run(_h.hme_node_stats, n, XT, node_log, node_prob, resp, sample_weight, q, grad, hess)
    return _hme_stats_sum(q, grad, hess, p)


def fused_hme(XgT, coef, sample_weight, log_prob=None, gaussian=None, resp_prev=None, out=None):
    """A hierarchical gate's EM pass: the tree, the E-step and every node's M-step statistics.

    Parameters
    ----------
    XgT : ndarray of shape (p, n)
        Gate design.
    coef : ndarray of shape (V, B, p)
        Every node's coefficients, breadth first.
    sample_weight : ndarray of shape (n,)
    log_prob : ndarray of shape (K, n), optional
        The experts' log-densities (give this or ``gaussian``). It may be
        ``out[2]``, which the responsibilities then overwrite.
    gaussian : tuple (XeT, y, expert_coef, var), optional
        Gaussian linear experts, computed in the pass with their weighted
        moments (give this or ``log_prob``).
    resp_prev : ndarray of shape (K, n), optional
        Responsibilities of the previous pass: each node's objective at
        ``coef`` under them is then returned (to check the last gate step).
    out : tuple of three ndarrays of shape (K, n), optional
        Buffers to reuse for ``(log_gate, gate_prob, resp)`` (none of them may
        be ``resp_prev``).

    Returns
    -------
    resp, ll_rows, total
        As :func:`e_step`.
    gate_eval : tuple (log_gate, gate_prob)
        The leaves at ``coef``, each (K, n).
    q_prev : ndarray of shape (V,) or None
        Each node's objective under ``resp_prev``, when given.
    gate_stats : tuple (q, grad, hess)
        As :func:`hme_node_stats`, under the new responsibilities.
    expert_stats : tuple (gram, xy, yy, nk) or None
        As :func:`linear_stats`, with ``gaussian``.
    """
    from . import _hme as _h

    XgT = _f64(XgT)
    p, n = XgT.shape
    coef = _hme_coef(coef, p)
    V, B = coef.shape[:2]
    K = V * (B - 1) + 1
    _hme_n_nodes(K, B)
    sample_weight = _f64(sample_weight)
    if sample_weight.shape != (n,):
        raise ValueError("fused_hme: XgT and sample_weight disagree in shape")
    if (log_prob is None) == (gaussian is None):
        raise ValueError("fused_hme: give exactly one of log_prob and gaussian")
    nc = n_chunks(n)
    out = (None, None, None) if out is None else out
    log_gate, gate_prob = _out(out[0], (K, n)), _out(out[1], (K, n))
    if gaussian is not None:
        XeT, y, ecoef, var = (_f64(a) for a in gaussian)
        pe = XeT.shape[0]
        if XeT.shape != (pe, n) or y.shape != (n,) or ecoef.shape != (K, pe) or var.shape != (K,):
            raise ValueError("fused_hme: the Gaussian experts disagree in shape with the tree and the data")
        log_prob = np.zeros((1, 1))
        resp = _out(out[2], (K, n))
        gram, xy = np.zeros((nc, K, pe, pe)), np.zeros((nc, K, pe))
        yy, nk = np.zeros((nc, K)), np.zeros((nc, K))
    else:
        XeT, y, ecoef, var = np.zeros((1, 1)), np.zeros(1), np.zeros((1, 1)), np.ones(1)
        log_prob = _f64(log_prob)
        if log_prob.shape != (K, n):
            raise ValueError(f"fused_hme: log_prob must have shape ({K}, {n}); got {log_prob.shape}")
        # the responsibilities may overwrite the log-densities (each element is read first)
        resp = out[2] if out[2] is log_prob else _out(out[2], (K, n))
        gram, xy, yy, nk = np.zeros((1, 1, 1, 1)), np.zeros((1, 1, 1)), np.zeros((1, 1)), np.zeros((1, 1))
    with_prev = resp_prev is not None
    if with_prev:
        resp_prev = _f64(resp_prev)
        if resp_prev.shape != (K, n):
            raise ValueError(f"fused_hme: resp_prev must have shape ({K}, {n}); got {resp_prev.shape}")
        if any(np.shares_memory(b, resp_prev) for b in (log_gate, gate_prob, resp)):
            raise ValueError("fused_hme: an out buffer overlaps resp_prev")
    else:
        resp_prev = np.zeros((1, 1))
    ll_rows = np.empty(n)
    ll_parts = np.zeros(nc)
    qprev = np.zeros((nc, V))
    q, grad, hess = _hme_stats_out(nc, V, B, p)
    _run(
        _h.fused_hme, n,
        XgT, coef, XeT, y, ecoef, var, log_prob, gaussian is not None, sample_weight, resp_prev, with_prev,
        log_gate, gate_prob, resp, ll_rows, ll_parts, qprev, q, grad, hess, gram, xy, yy, nk,
    )  # fmt: skip
    expert_stats = None
    if gaussian is not None:
        expert_stats = (_symmetrize_upper(gram.sum(axis=0)), xy.sum(axis=0), yy.sum(axis=0), nk.sum(axis=0))
    return (
        resp, ll_rows, float(ll_parts.sum()), (log_gate, gate_prob),
        qprev.sum(axis=0) if with_prev else None, _hme_stats_sum(q, grad, hess, p), expert_stats,
    )  # fmt: skip


# -- Gaussian gate with Gaussian linear experts -----------------------------------------------------
__all__ += ["fused_gaussian_gate_gaussian"]


def fused_gaussian_gate_gaussian(
    XgT, const, means, prec_chol, XeT, y, coef, var, sample_weight, out=None
):  # fmt: skip
    """Gaussian gate, E-step and all M-step statistics with Gaussian linear experts, in one pass.

    Parameters
    ----------
    XgT : ndarray of shape (1 + d, n)
        Gate design, constant first row (not a feature of the gate).
    const : ndarray of shape (K,)
        ``log pi_k + log det P_k - d log(2 pi) / 2``.
    means : ndarray of shape (K, d)
    prec_chol : ndarray of shape (K, d, d)
        Upper-triangular Cholesky factors of the precisions (diagonal for
        diagonal covariances).
    XeT, y, coef, var, sample_weight
        As :func:`fused_softmax_gaussian`.
    out : tuple of three ndarrays of shape (K, n), optional
        Buffers to reuse for ``(log_gate, gate_prob, resp)``.

    Returns
    -------
    resp, ll_rows, total
        As :func:`e_step`.
    gate_eval : tuple (log_gate, gate_prob, log_marginal, marginal_total)
        The gate's (K, n) log-weights and weights, the (n,) log p(x_i) and
        sum_i w_i log p(x_i).
    gate_gram : ndarray of shape (K, 1 + d, 1 + d)
        sum_i w_i r_ki x~_i x~_i' over the gate design rows x~ (counts in
        [k, 0, 0], first moments in row 0).
    expert_stats : tuple (gram, xy, yy, nk)
        As :func:`linear_stats`, with the new responsibilities.
    """
    from . import _gaussian_gate as _gg

    XgT = _f64(XgT)
    XeT = _f64(XeT)
    pg, n = XgT.shape
    pe = XeT.shape[0]
    K = coef.shape[0]
    nb = n_chunks(n)
    out = (None, None, None) if out is None else out
    log_gate, gate_prob, resp = (_out(b, (K, n)) for b in out)
    ll_rows = np.empty(n)
    log_marg = np.empty(n)
    ll_parts = np.zeros(nb)
    marg_parts = np.zeros(nb)
    ggram = np.zeros((nb, K, pg, pg))
    gram = np.zeros((nb, K, pe, pe))
    xy = np.zeros((nb, K, pe))
    yy = np.zeros((nb, K))
    nk = np.zeros((nb, K))
    _run(
        _gg.fused_gaussian_gate_gaussian, n,
        XgT, _f64(const), _f64(means), _f64(prec_chol), XeT, _f64(y), _f64(coef), _f64(var),
        _f64(sample_weight), log_gate, gate_prob, resp, ll_rows, log_marg, ll_parts, marg_parts,
        ggram, gram, xy, yy, nk,
    )  # fmt: skip
    expert_stats = (
        _symmetrize_upper(gram.sum(axis=0)),
        xy.sum(axis=0),
        yy.sum(axis=0),
        nk.sum(axis=0),
    )
    gate_eval = (log_gate, gate_prob, log_marg, float(marg_parts.sum()))
    return resp, ll_rows, float(ll_parts.sum()), gate_eval, _symmetrize_upper(ggram.sum(axis=0)), expert_stats


def topk_line_loglik(L0, M, log_prob, sample_weight, ts, top_k):
    """The top-K gate's observed log-likelihood along a line of logits.

    Parameters
    ----------
    L0, M : ndarray of shape (K, n)
        Logits at the start of the line and their change per unit step.
    log_prob : ndarray of shape (K, n)
        The experts' log-densities.
    sample_weight : ndarray of shape (n,)
    ts : ndarray of shape (T,)
        Step sizes.
    top_k : int

    Returns
    -------
    ndarray of shape (T,)
        ``sum_i w_i log sum_{k in A_i(t)} g_k(t) f_ik`` at logits ``L0 + t M``,
        ``A_i(t)`` the ``top_k`` largest logits of row i (a tie selects the
        lower expert index) and ``g(t)`` their softmax; rows of zero weight
        are skipped.
    """
    L0, M, log_prob, sample_weight, ts = (_f64(a) for a in (L0, M, log_prob, sample_weight, ts))
    K, n = L0.shape
    if M.shape != (K, n) or log_prob.shape != (K, n) or sample_weight.shape != (n,) or ts.ndim != 1:
        raise ValueError("topk_line_loglik: L0, M, log_prob, sample_weight and ts disagree in shape")
    nc = n_chunks(n)
    out = np.zeros((nc, ts.shape[0]))
    _run(_tl._topk_line_loglik, n, L0, M, log_prob, sample_weight, ts, int(top_k), nc, out)
    return out.sum(axis=0)
