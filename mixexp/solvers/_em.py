"""The EM loop, written once for every gate and expert family.

A *pass* over the data computes the E-step (posterior responsibilities and the
log-likelihood). Where a gate/expert pair registers a fused kernel in
``FUSED_PASSES``, the same pass also evaluates the gate, checks the gate's last
step, and returns every sufficient statistic of the next M-step, so an EM
iteration reads the data once. Otherwise each part computes its own statistics
in its ``m_step``. Either way the loop below is the same.
"""

import time
from dataclasses import dataclass, field

import numpy as np

from .._kernels import e_step, fused_gaussian_gate_gaussian, fused_softmax_gaussian, fused_softmax_multinomial
from ..experts._multinomial import DeferredStats


@dataclass
class Design:
    """The data one fit works on.

    Gate and expert designs are feature-major, ``(p, n)``, constant row first
    where there is an intercept.
    """

    XgT: np.ndarray
    XeT: np.ndarray
    y: np.ndarray
    sample_weight: np.ndarray
    weight_sum: float = field(init=False)

    def __post_init__(self):
        self.weight_sum = float(self.sample_weight.sum())


@dataclass
class Pass:
    """What one pass over the data returns."""

    resp: np.ndarray  # (K, n)
    ll_rows: np.ndarray  # (n,)
    total: float  # sum_i w_i log p(y_i | x_i)
    gate_eval: object = None  # the gate evaluated at its coefficients
    q_prev: float | None = None  # gate objective under the previous responsibilities
    gate_stats: tuple | None = None
    expert_stats: tuple | None = None


def _fused_softmax_gaussian(gate, experts, data, resp_prev, out):
    resp, ll_rows, total, gate_eval, q_prev, gate_stats, expert_stats = fused_softmax_gaussian(
        data.XgT, gate.coef, data.XeT, data.y, experts.coef, experts.var,
        data.sample_weight, resp_prev, out,
    )
    return Pass(resp, ll_rows, total, gate_eval, q_prev, gate_stats, expert_stats)


def _fused_softmax_multinomial(gate, experts, data, resp_prev, out):
    # The experts' last step is checked in the same pass (their objective at the
    # new coefficients under the responsibilities it came from), like the gate's;
    # a rejected expert step is halved and the pass run again.
    def run(expert_prev):
        return fused_softmax_multinomial(
            data.XgT, gate.coef, data.XeT, data.y, experts.coef, data.sample_weight,
            resp_prev, expert_prev, out,
        )

    result = run(experts.pending_resp)
    if experts.pending and not experts.accept(result[7]):
        experts.backtrack(data.XeT, data.y, data.sample_weight)
        result = run(None)
    resp, ll_rows, total, gate_eval, q_prev, gate_stats, expert_stats, _ = result
    return Pass(resp, ll_rows, total, gate_eval, q_prev, gate_stats, DeferredStats(*expert_stats))


def _fused_gaussian_gate_gaussian(gate, experts, data, resp_prev, out):
    # the Gaussian gate's M-step is closed form: its "proposal" is the exact
    # maximiser, never pending, so resp_prev is not needed
    from ..gates._gaussian import GaussianGateEval

    resp, ll_rows, total, gate_eval, gate_gram, expert_stats = fused_gaussian_gate_gaussian(
        data.XgT, *gate.kernel_params(), data.XeT, data.y, experts.coef, experts.var,
        data.sample_weight, out,
    )  # fmt: skip
    return Pass(resp, ll_rows, total, GaussianGateEval(*gate_eval), None, gate_gram, expert_stats)


#: (gate.kind, experts.kind) -> function(gate, experts, data, resp_prev, out) -> Pass.
#: The function evaluates the gate at its current coefficients itself and, with
#: ``resp_prev``, returns the gate objective under those responsibilities;
#: ``out`` is a tuple of (K, n) buffers (log-gate, gate weights, responsibilities)
#: it may overwrite, or None. A gate without an entry here may bring its own
#: pass as a method ``em_pass(experts, data, resp_prev, out)`` (the top-K gate).
FUSED_PASSES = {
    ("softmax", "gaussian"): _fused_softmax_gaussian,
    ("softmax", "multinomial"): _fused_softmax_multinomial,
    ("gaussian", "gaussian"): _fused_gaussian_gate_gaussian,
}


def e_step_pass(gate, experts, data, gate_eval=None):
    """E-step at the current parameters (no M-step statistics).

    Returns
    -------
    Pass
    """
    if gate_eval is None:
        gate_eval = gate.evaluate(data.XgT)
    log_prob = experts.log_prob(data.XeT, data.y)
    # the responsibilities overwrite the log-densities, a temporary here
    resp, ll_rows, total = e_step(gate_eval.log, log_prob, data.sample_weight, out=log_prob)
    return Pass(resp, ll_rows, total, gate_eval)


def objective(gate, experts, total, data, gate_eval=None):
    """Mean penalised log-likelihood: the quantity EM never decreases.

    ``total`` is the conditional ``sum_i w_i log p(y_i | x_i)``. For a gate that
    is a density of x (``gate.models_x``, the Gaussian gate) the gate's
    marginal ``sum_i w_i log p(x_i)``, taken from ``gate_eval`` (the gate
    evaluated at its current parameters, from the same pass), is added: the
    objective is then the joint log-likelihood of (x, y), which is what EM
    maximises for such a gate.
    """
    if getattr(gate, "models_x", False):
        total = total + gate.marginal_log_likelihood(gate_eval, data.sample_weight)
    return (total - gate.penalty_value() - experts.penalty_value()) / data.weight_sum


@dataclass
class EMResult:
    """What one EM run returns."""

    lower_bound: float
    lower_bounds: list
    n_iter: int
    converged: bool
    resp: np.ndarray
    stopped: bool = False  # the iteration hook asked to stop
    thetas: list | None = None  # flat parameters at each entry of lower_bounds, when recorded
    extrapolations: tuple | None = None  # SQUAREM: (accepted, rejected) extrapolations
    n_passes: int | None = None  # E-step passes over the data (EM and SQUAREM; a top-K polish not counted)


def run_em(gate, experts, data, max_iter, tol, verbose=0, label="", hook=None, polish=True):
    """Run EM from the parts' current parameters until ``tol`` or ``max_iter``.

    Each iteration: a pass (E-step at the current parameters, with the M-step
    statistics where a fused kernel exists), the convergence check, then the
    experts' M-step and the gate's M-step. With a fused pass the gate's Newton
    step is proposed and checked by the next pass (under the responsibilities
    it was computed from), and halved there if it did not ascend; without one,
    the gate checks and halves its step itself. Both are generalised EM steps.

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
    hook : callable, optional
        Called as ``hook(n_iter, lower_bound)`` after every pass (E-step), the
        parts then holding the parameters the pass evaluated: once at the
        start (``n_iter=0``) and once after each M-step. A true return value
        stops the run (``EMResult.stopped``). Used to record trajectories and
        run callbacks.
    polish : bool, default=True
        When the change falls below ``tol``, first call the gate's
        ``polish(experts, data, tol)`` if it has one (the top-K gate, whose
        likelihood is not smooth in the gate parameters and is searched
        directly; :meth:`mixexp.gates.TopKSoftmaxGate.polish`); when the gate
        moved, EM goes on from a fresh pass, the polish counting as an
        iteration. It runs again only after an iteration that changed the
        objective by ``tol`` or more, so it cannot loop.

    Returns
    -------
    EMResult
        ``lower_bound`` and ``resp`` are those of the final parameters;
        ``n_passes`` counts the passes over the data (``n_iter + 1``, plus one
        for each gate step the next pass rejected and redid; the searches of
        a top-K polish are not counted).
    """
    fused = FUSED_PASSES.get((gate.kind, experts.kind))
    if fused is None and hasattr(gate, "em_pass"):
        # a gate whose step needs the experts' log-densities runs its own pass
        def fused(gate, experts, data, resp_prev, out):
            return gate.em_pass(experts, data, resp_prev, out)
    polish = getattr(gate, "polish", None) if polish else None
    history = []
    lower_bound = -np.inf
    converged = stopped = polished = False
    n_iter = 0
    gate_eval = None
    resp_prev = None
    # (K, n) buffers reused across passes: the gate's log-weights and weights,
    # and two responsibility arrays used in turn (the previous one is still
    # needed to check the gate's step).
    buffers = [None, None, None, None]
    n_passes = 0
    t0 = time.perf_counter()
    while True:
        n_passes += 1
        if fused is not None:
            out = (buffers[0], buffers[1], buffers[2] if resp_prev is not buffers[2] else buffers[3])
            step = fused(gate, experts, data, resp_prev if gate.pending else None, out)
            if gate.pending and not gate.accept(step.q_prev):
                gate.backtrack(data.XgT, resp_prev, data.sample_weight)
                n_passes += 1
                step = fused(gate, experts, data, None, out)
            buffers[0], buffers[1] = step.gate_eval[:2]
            if step.resp is not buffers[2]:
                buffers[2], buffers[3] = step.resp, buffers[2]
        else:
            step = e_step_pass(gate, experts, data, gate_eval)
        previous, lower_bound = lower_bound, objective(gate, experts, step.total, data, step.gate_eval)
        history.append(lower_bound)
        if verbose >= 2:
            print(f"{label}iter {n_iter:4d}  mean log-lik {lower_bound:.8f}")
        if hook is not None and hook(n_iter, lower_bound):
            stopped = True
            break
        if abs(lower_bound - previous) < tol:
            if polish is not None and not polished and n_iter < max_iter:
                # a gate whose likelihood EM's steps cannot climb (not smooth in the
                # gate: top-K) searches it before EM stops; then a fresh pass
                polished = True
                if polish(experts, data, tol):
                    resp_prev = gate_eval = None
                    n_iter += 1
                    continue
            converged = True
            break
        polished = False
        if n_iter >= max_iter:
            break
        experts.m_step(data.XeT, data.y, step.resp, data.sample_weight, stats=step.expert_stats)
        if fused is not None:
            gate.propose(step.gate_stats)
            resp_prev = step.resp
        else:
            gate_eval = gate.m_step(data.XgT, step.resp, data.sample_weight, step.gate_eval)
        n_iter += 1
    if verbose:
        state = "converged" if converged else ("was stopped" if stopped else "did not converge")
        print(
            f"{label}{state} after {n_iter} iterations, mean log-lik {lower_bound:.8f} "
            f"({time.perf_counter() - t0:.3f} s)"
        )
    return EMResult(lower_bound, history, n_iter, converged, step.resp, stopped, n_passes=n_passes)
