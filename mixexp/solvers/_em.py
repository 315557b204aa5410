"""The EM loop, written once for every gate and expert family.

A pass over the data computes the E-step (posterior responsibilities and the
log-likelihood). Where a gate/expert pair registers a fused kernel in
``FUSED_PASSES`` the same pass also returns every sufficient statistic of the
next M-step; otherwise each part computes its own statistics in its ``m_step``.
Either way the loop below is the same.
"""

import time
from dataclasses import dataclass, field

import numpy as np

from .._kernels import e_step, fused_softmax_gaussian


@dataclass
class Design:
    """The data one fit works on: gate and expert designs (feature-major, (p, n)),
    target and sample weights."""

    XgT: np.ndarray
    XeT: np.ndarray
    y: np.ndarray
    sample_weight: np.ndarray
    weight_sum: float = field(init=False)

    def __post_init__(self):
        self.weight_sum = float(self.sample_weight.sum())


def _fused_softmax_gaussian(gate, experts, data, gate_eval):
    return fused_softmax_gaussian(
        data.XgT, gate_eval.log, gate_eval.prob, data.XeT, data.y,
        experts.coef, experts.var, data.sample_weight,
    )


#: (gate.kind, experts.kind) -> function(gate, experts, data, gate_eval) returning
#: (resp, ll_rows, total, gate_stats, expert_stats).
FUSED_PASSES = {("softmax", "gaussian"): _fused_softmax_gaussian}


def e_step_pass(gate, experts, data, gate_eval=None, with_stats=True):
    """E-step at the current parameters, with M-step statistics where fused.

    Returns
    -------
    resp : ndarray of shape (K, n)
    ll_rows : ndarray of shape (n,)
    total : float
        Weighted log-likelihood sum_i w_i log p(y_i | x_i).
    gate_stats, expert_stats : tuple or None
    """
    if gate_eval is None:
        gate_eval = gate.evaluate(data.XgT)
    fused = FUSED_PASSES.get((gate.kind, experts.kind)) if with_stats else None
    if fused is not None:
        return fused(gate, experts, data, gate_eval)
    log_prob = experts.log_prob(data.XeT, data.y)
    resp, ll_rows, total = e_step(gate_eval.log, log_prob, data.sample_weight)
    return resp, ll_rows, total, None, None


def objective(gate, total, data):
    """Mean penalised log-likelihood: the quantity EM never decreases."""
    return (total - gate.penalty_value()) / data.weight_sum


@dataclass
class EMResult:
    """What one EM run returns."""

    lower_bound: float
    lower_bounds: list
    n_iter: int
    converged: bool
    resp: np.ndarray


def run_em(gate, experts, data, max_iter, tol, verbose=0, label=""):
    """Run EM from the parts' current parameters until ``tol`` or ``max_iter``.

    Parameters
    ----------
    gate, experts : parts implementing the gate and expert interfaces
    data : Design
    max_iter : int
        Maximum number of M-steps.
    tol : float
        Convergence threshold on the change of :func:`objective`.
    verbose : int
    label : str
        Prefix for verbose output.

    Returns
    -------
    EMResult
        ``lower_bound`` and ``resp`` are those of the final parameters (a final
        E-step is done when the loop stops on ``max_iter``).
    """
    gate_eval = gate.evaluate(data.XgT)
    history = []
    lower_bound = -np.inf
    converged = False
    n_iter = 0
    t0 = time.perf_counter()
    while True:
        resp, _, total, gate_stats, expert_stats = e_step_pass(
            gate, experts, data, gate_eval, with_stats=n_iter < max_iter
        )
        previous, lower_bound = lower_bound, objective(gate, total, data)
        history.append(lower_bound)
        if verbose >= 2:
            print(f"{label}iter {n_iter:4d}  mean log-lik {lower_bound:.8f}")
        if abs(lower_bound - previous) < tol:
            converged = True
            break
        if n_iter >= max_iter:
            break
        experts.m_step(data.XeT, data.y, resp, data.sample_weight, stats=expert_stats)
        gate_eval = gate.m_step(data.XgT, resp, data.sample_weight, gate_eval, stats=gate_stats)
        n_iter += 1
    if verbose:
        state = "converged" if converged else "did not converge"
        print(
            f"{label}{state} after {n_iter} iterations, mean log-lik {lower_bound:.8f} "
            f"({time.perf_counter() - t0:.3f} s)"
        )
    return EMResult(lower_bound, history, n_iter, converged, resp)
