"""Plain numpy/scipy references for every Numba kernel (the kernels' twins).

Layouts follow the kernels: designs feature-major ``XT`` (p, n), per-expert
arrays expert-major (K, n).
"""

import numpy as np
from scipy import special, stats


def log_softmax_linear(XT, coef, resp=None, sample_weight=None):
    log_gate = special.log_softmax(coef @ XT, axis=0)
    obj = None
    if resp is not None:
        terms = np.where(resp > 0, resp * log_gate, 0.0)
        obj = float(np.sum(sample_weight * terms.sum(axis=0)))
    return log_gate, np.exp(log_gate), obj


def gaussian_log_prob(XT, y, coef, var):
    mean = coef @ XT
    return stats.norm.logpdf(y[None, :], loc=mean, scale=np.sqrt(var)[:, None])


def e_step(log_gate, log_prob, sample_weight):
    joint = log_gate + log_prob
    ll_rows = special.logsumexp(joint, axis=0)
    with np.errstate(invalid="ignore"):
        resp = np.exp(joint - ll_rows)
    K = joint.shape[0]
    resp[:, ~np.isfinite(ll_rows)] = 1.0 / K
    total = float(np.sum(np.where(sample_weight > 0, sample_weight * ll_rows, 0.0)))
    return resp, ll_rows, total


def linear_stats(XT, y, resp, sample_weight):
    wr = resp * sample_weight  # (K, n)
    gram = np.einsum("kn,pn,qn->kpq", wr, XT, XT)
    xy = np.einsum("kn,pn,n->kp", wr, XT, y)
    yy = wr @ (y * y)
    nk = wr.sum(axis=1)
    return gram, xy, yy, nk


def softmax_gate_stats(XT, log_gate, resp, sample_weight):
    """Objective, gradient and negative Hessian with expert 0 as reference."""
    K = log_gate.shape[0]
    p = XT.shape[0]
    g = np.exp(log_gate)
    terms = np.where(resp > 0, resp * log_gate, 0.0)
    q = float(np.sum(sample_weight * terms.sum(axis=0)))
    grad = ((resp[1:] - g[1:]) * sample_weight) @ XT.T
    hess = np.zeros(((K - 1) * p, (K - 1) * p))
    for k in range(1, K):
        for m in range(1, K):
            c = sample_weight * g[k] * ((k == m) - g[m])
            hess[(k - 1) * p : k * p, (m - 1) * p : m * p] = (XT * c) @ XT.T
    return q, grad, hess


def fused_softmax_gaussian(XgT, gate_coef, XeT, y, coef, var, sample_weight, resp_prev=None):
    log_gate, gate_prob, _ = log_softmax_linear(XgT, gate_coef)
    q_prev = None
    if resp_prev is not None:
        q_prev = log_softmax_linear(XgT, gate_coef, resp_prev, sample_weight)[2]
    log_prob = gaussian_log_prob(XeT, y, coef, var)
    resp, ll_rows, total = e_step(log_gate, log_prob, sample_weight)
    gate_stats = softmax_gate_stats(XgT, log_gate, resp, sample_weight)
    expert_stats = linear_stats(XeT, y, resp, sample_weight)
    return resp, ll_rows, total, (log_gate, gate_prob), q_prev, gate_stats, expert_stats


def conditional_log_density(X, y, gate_coef, expert_coef, noise_variance):
    """log p(y | x) of a softmax-gated Gaussian MoE, from the estimator's attributes."""
    X1 = np.column_stack([np.ones(len(X)), X])
    log_gate = special.log_softmax(X1 @ gate_coef.T, axis=1)
    dens = stats.norm.logpdf(y[:, None], loc=X1 @ expert_coef.T, scale=np.sqrt(noise_variance))
    return special.logsumexp(log_gate + dens, axis=1)


def glm_log_prob(XT, y, coef, family, shape=None):
    """Log-link Poisson or Gamma log-densities (K, n), from scipy.stats."""
    mu = np.exp(coef @ XT)
    if family == "poisson":
        return stats.poisson.logpmf(y[None, :], mu)
    return stats.gamma.logpdf(y[None, :], a=shape[:, None], scale=mu / shape[:, None])


def glm_stats(XT, y, resp, sample_weight, coef, family, active=None):
    """Objective, gradient, negative Hessian, sum of weights and sum a log y per expert.

    Poisson objective sum_i a_i (y_i eta_i - exp(eta_i)); Gamma (shape 1)
    sum_i a_i (-eta_i - y_i exp(-eta_i)); ``a = w r``. Inactive experts get zeros.
    """
    a = resp * sample_weight
    eta = coef @ XT
    with np.errstate(over="ignore"):
        if family == "poisson":
            e = np.exp(eta)
            terms, u = y * eta - e, y - e
        else:
            e = y * np.exp(-eta)
            terms, u = -eta - e, e - 1.0
    zero = a == 0
    terms, u, e = (np.where(zero, 0.0, v) for v in (terms, u, e))
    q = (a * terms).sum(axis=1)
    grad = (a * u) @ XT.T
    hess = np.einsum("kn,pn,qn->kpq", a * e, XT, XT)
    nk = a.sum(axis=1)
    log_y_sum = a @ np.log(y) if family == "gamma" else None
    if active is not None:
        q[~active], grad[~active], hess[~active], nk[~active] = 0.0, 0.0, 0.0, 0.0
        if log_y_sum is not None:
            log_y_sum[~active] = 0.0
    return q, grad, hess, nk, log_y_sum


def conditional_log_density_glm(X_gate, X_expert, y, gate_coef, expert_coef, family, dispersion=None):
    """log p(y | x) of a softmax-gated log-link GLM MoE, from the estimator's attributes."""
    G1 = np.column_stack([np.ones(len(y)), X_gate])
    E1 = np.column_stack([np.ones(len(y)), X_expert])
    log_gate = special.log_softmax(G1 @ gate_coef.T, axis=1)
    shape = None if dispersion is None else 1.0 / np.asarray(dispersion)
    dens = glm_log_prob(E1.T, y, expert_coef, family, shape).T
    return special.logsumexp(log_gate + dens, axis=1)


# -- multinomial logistic experts ---------------------------------------------------------------------
def multinomial_log_prob(XT, y, coef):
    """(K, n) log p_k(y_i | x_i) with p_k = softmax(coef[k] @ x) over the classes."""
    y = np.asarray(y).astype(int)
    logits = np.einsum("kcp,pn->kcn", coef, XT)
    log_p = special.log_softmax(logits, axis=1)
    return log_p[:, y, np.arange(XT.shape[1])]


def multinomial_stats(XT, y, coef, resp, sample_weight):
    """Objective (K,), gradient (K, C-1, p) and negative Hessian of each expert's M-step.

    Expert k's objective is the gate's (:func:`softmax_gate_stats`) with one-hot
    targets and weights w_i r_ki.
    """
    y = np.asarray(y).astype(int)
    K, C, p = coef.shape
    T = np.zeros((C, XT.shape[1]))
    T[y, np.arange(XT.shape[1])] = 1.0
    q, grad, hess = [], [], []
    for k in range(K):
        log_p = special.log_softmax(coef[k] @ XT, axis=0)
        qk, gk, hk = softmax_gate_stats(XT, log_p, T, sample_weight * resp[k])
        q.append(qk)
        grad.append(gk)
        hess.append(hk)
    return np.array(q), np.array(grad), np.array(hess)


def fused_softmax_multinomial(XgT, gate_coef, XeT, y, coef, sample_weight, resp_prev=None,
                              expert_resp_prev=None):
    log_gate, gate_prob, _ = log_softmax_linear(XgT, gate_coef)
    q_prev = None
    if resp_prev is not None:
        q_prev = log_softmax_linear(XgT, gate_coef, resp_prev, sample_weight)[2]
    log_prob = multinomial_log_prob(XeT, y, coef)
    eq_prev = None
    if expert_resp_prev is not None:
        eq_prev = multinomial_stats(XeT, y, coef, expert_resp_prev, sample_weight)[0]
    resp, ll_rows, total = e_step(log_gate, log_prob, sample_weight)
    gate_stats = softmax_gate_stats(XgT, log_gate, resp, sample_weight)
    expert_stats = multinomial_stats(XeT, y, coef, resp, sample_weight)
    return resp, ll_rows, total, (log_gate, gate_prob), q_prev, gate_stats, expert_stats, eq_prev


def classifier_log_proba(X, gate_coef, expert_coef):
    """(n, C) log P(y = c | x) of a softmax-gated multinomial MoE, from the estimator's attributes."""
    X1 = np.column_stack([np.ones(len(X)), X])
    log_gate = special.log_softmax(X1 @ gate_coef.T, axis=1)  # (n, K)
    log_p = special.log_softmax(np.einsum("kcp,np->nkc", expert_coef, X1), axis=2)  # (n, K, C)
    return special.logsumexp(log_gate[:, :, None] + log_p, axis=1)


def fused_gaussian_gate_gaussian(XgT, const, means, prec_chol, XeT, y, coef, var, sample_weight):
    """Twin of :func:`mixexp._kernels.fused_gaussian_gate_gaussian`."""
    X = XgT[1:]
    K = means.shape[0]
    num = np.empty((K, X.shape[1]))
    for k in range(K):
        z = prec_chol[k].T @ (X - means[k][:, None])
        num[k] = const[k] - 0.5 * np.sum(z * z, axis=0)
    log_marg = special.logsumexp(num, axis=0)
    log_gate = num - log_marg
    resp, ll_rows, total = e_step(log_gate, gaussian_log_prob(XeT, y, coef, var), sample_weight)
    marg_total = float(np.sum(np.where(sample_weight > 0, sample_weight * log_marg, 0.0)))
    gate_gram = np.einsum("kn,pn,qn->kpq", resp * sample_weight, XgT, XgT)
    gate_eval = (log_gate, np.exp(log_gate), log_marg, marg_total)
    return resp, ll_rows, total, gate_eval, gate_gram, linear_stats(XeT, y, resp, sample_weight)


def topk_log_softmax_linear(XT, coef, top_k):
    """Top-K sparse softmax, row by row: the ``top_k`` largest logits (ties to the lower index)."""
    logits = coef @ XT
    K, n = logits.shape
    log_gate = np.full((K, n), -np.inf)
    for i in range(n):
        chosen = sorted(range(K), key=lambda k: (-logits[k, i], k))[:top_k]
        log_gate[chosen, i] = special.log_softmax(logits[chosen, i])
    return log_gate, np.exp(log_gate)


def hme_log_weights(XT, node_coef, branching, depth):
    """Leaf log-weights of a hierarchical gate, leaf by leaf along its path.

    ``node_coef`` (n_nodes, branching, p) in breadth-first order; leaf k's path
    is the base-``branching`` digits of k, most significant first.
    """
    K = branching**depth
    out = np.zeros((K, XT.shape[1]))
    for k in range(K):
        digits = [(k // branching ** (depth - 1 - level)) % branching for level in range(depth)]
        node = 0
        for child in digits:
            out[k] += special.log_softmax(node_coef[node] @ XT, axis=0)[child]
            node = node * branching + 1 + child
    return out


def hme_node_log_softmax(XT, node_coef):
    """Every node's log-softmax and softmax, (V, B, n), one node at a time."""
    log = np.stack([special.log_softmax(c @ XT, axis=0) for c in node_coef])
    return log, np.exp(log)


def hme_masses(resp, branching):
    """Posterior mass of every tree position, (V + K, n): internal nodes breadth first, then the leaves.

    Position ``t``'s mass is the sum of the responsibilities of the leaves
    below it, found by walking each leaf's path up to the root.
    """
    K, n = resp.shape
    V = (K - 1) // (branching - 1)
    h = np.zeros((V + K, n))
    for k in range(K):
        t = V + k
        h[t] += resp[k]
        while t > 0:
            t = (t - 1) // branching
            h[t] += resp[k]
    return h


def hme_node_stats(XT, node_coef, resp, sample_weight):
    """Each node's (q, grad, hess) as a softmax gate with Jordan & Jacobs' targets and weights.

    Node v: targets ``h_child / h_v`` (uniform where ``h_v = 0``), weights
    ``w h_v``, through :func:`softmax_gate_stats`.
    """
    V, B, _ = node_coef.shape
    h = hme_masses(resp, B)
    log, _ = hme_node_log_softmax(XT, node_coef)
    out = []
    for v in range(V):
        children = h[v * B + 1 : v * B + B + 1]
        with np.errstate(invalid="ignore", divide="ignore"):
            targets = np.where(h[v] > 0, children / h[v], 1.0 / B)
        out.append(softmax_gate_stats(XT, log[v], targets, sample_weight * h[v]))
    q = np.array([o[0] for o in out])
    return q, np.stack([o[1] for o in out]), np.stack([o[2] for o in out])


def fused_hme(XgT, node_coef, sample_weight, log_prob, resp_prev=None):
    """The HME pass from its parts: leaves, E-step, per-node checks and statistics."""
    V, B, _ = node_coef.shape
    K = V * (B - 1) + 1
    depth = int(round(np.log(K) / np.log(B)))
    log_gate = hme_log_weights(XgT, node_coef, B, depth)
    resp, ll_rows, total = e_step(log_gate, log_prob, sample_weight)
    q_prev = None
    if resp_prev is not None:
        q_prev = hme_node_stats(XgT, node_coef, resp_prev, sample_weight)[0]
    stats = hme_node_stats(XgT, node_coef, resp, sample_weight)
    return resp, ll_rows, total, (log_gate, np.exp(log_gate)), q_prev, stats


def topk_line_loglik(L0, M, log_prob, sample_weight, ts, top_k):
    """Top-K observed log-likelihood along the logits ``L0 + t M``, one step and one row at a time."""
    K, n = L0.shape
    out = []
    for t in ts:
        total = 0.0
        for i in range(n):
            if sample_weight[i] == 0:
                continue
            logits = L0[:, i] + t * M[:, i]
            active = np.argsort(-logits, kind="stable")[:top_k]  # ties: the lower index
            log_gate = logits[active] - special.logsumexp(logits[active])
            total += sample_weight[i] * special.logsumexp(log_gate + log_prob[active, i])
        out.append(total)
    return np.array(out)
