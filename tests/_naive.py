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
