"""Gradient of the observed log-likelihood, and the L-BFGS solver built on it.

Every gate and expert family exposes its free parameters as one flat vector
on the internal (standardised) scale, in an unconstrained parametrisation
(log-variances, log-shapes, log degrees of freedom), with the gradient of its
own weighted complete-data objective:

* gate: ``get_flat()``, ``set_flat(theta)``, ``flat_grad(XT, resp,
  sample_weight)`` = the gradient of ``sum_i w_i sum_k r_ki log g_k(x_i)``;
* experts: ``get_flat()``, ``set_flat(theta)``, ``flat_grad(XT, y, resp,
  sample_weight)`` = the gradient of ``sum_i w_i sum_k r_ki log f_k(y_i | x_i)``;
* both: ``penalty_grad()``, the gradient of ``penalty_value()``, and
  optionally ``flat_bounds()`` -> ``(lower, upper)`` (variance floors,
  degree-of-freedom ranges).

By Fisher's identity, the gradient of the observed log-likelihood
``L(theta) = sum_i w_i log sum_k g_k(x_i) f_k(y_i | x_i)`` is the gradient of
the complete-data objective at the posterior responsibilities
``r_ki = g_k f_k / sum_j g_j f_j`` evaluated at the same theta (held fixed
while differentiating):

.. math::

    \\nabla L(\\theta) = \\nabla_\\theta \\sum_i w_i \\sum_k r_{ki}
    \\bigl[\\log g_k(x_i) + \\log f_k(y_i \\mid x_i)\\bigr]
    \\Big|_{r = r(\\theta)}.

So one E-step and the parts' ``flat_grad`` give the exact gradient
(:func:`loglik_and_grad`), and any gradient method can fit any pair of parts.
"""

import inspect
import time

import numpy as np
from scipy.optimize import Bounds, minimize

from ._em import EMResult, e_step_pass, objective

#: Most curvature pairs L-BFGS keeps (scipy's ``maxcor``; the default 10 is far too few here):
#: a sharp gate makes the objective ill-conditioned, and on K = 4 Gaussian experts with d = 5
#: (46 parameters, n = 1e4) L-BFGS needed 1019 iterations to come within 1e-6 of the optimum
#: with 10 pairs, 532 with 30, 251 with 100 and 182 with 200. The update costs
#: O(maxcor * n_params + maxcor^3) per iteration, small next to a pass over the data.
_MAX_CORRECTIONS = 100

#: methods a gate and an expert family need for the gradient solvers
GRADIENT_METHODS = ("get_flat", "set_flat", "flat_grad", "penalty_grad")


def missing_gradient_methods(gate, experts, methods=GRADIENT_METHODS):
    """Names of the flat-parameter methods the parts lack (empty when both have them).

    Parameters
    ----------
    gate, experts : parts
    methods : sequence of str, default=GRADIENT_METHODS
        The methods to look for (``("get_flat", "set_flat")`` for SQUAREM,
        ``("get_flat",)`` to record trajectories).

    Returns
    -------
    list of str
        Entries like ``"SoftmaxGate.flat_grad"``.
    """
    missing = []
    for part in (gate, experts):
        name = type(part).__name__
        missing += [f"{name}.{m}" for m in methods if not callable(getattr(part, m, None))]
    return missing


def get_flat_params(gate, experts):
    """The gate's then the experts' flat parameters as one vector.

    Parameters
    ----------
    gate, experts : parts implementing ``get_flat``

    Returns
    -------
    ndarray of shape (n_gate + n_experts,)
    """
    return np.concatenate(
        [np.asarray(gate.get_flat(), dtype=float), np.asarray(experts.get_flat(), dtype=float)]
    )


def set_flat_params(gate, experts, theta):
    """Set both parts from a vector laid out as :func:`get_flat_params`.

    Parameters
    ----------
    gate, experts : parts implementing ``get_flat`` / ``set_flat``
    theta : array-like of shape (n_gate + n_experts,)
    """
    theta = np.asarray(theta, dtype=float)
    n_gate = np.asarray(gate.get_flat()).size
    n_total = n_gate + np.asarray(experts.get_flat()).size
    if theta.shape != (n_total,):
        raise ValueError(f"theta must have shape ({n_total},); got {theta.shape}.")
    gate.set_flat(theta[:n_gate])
    experts.set_flat(theta[n_gate:])


def flat_bounds(gate, experts):
    """Lower and upper bounds of :func:`get_flat_params` (from the parts' ``flat_bounds``).

    Parts without ``flat_bounds`` are unbounded.

    Returns
    -------
    lower, upper : ndarray of shape (n_gate + n_experts,)
    """
    lowers, uppers = [], []
    for part in (gate, experts):
        bounds = getattr(part, "flat_bounds", None)
        if bounds is None:
            size = np.asarray(part.get_flat()).size
            lowers.append(np.full(size, -np.inf))
            uppers.append(np.full(size, np.inf))
        else:
            lower, upper = bounds()
            lowers.append(np.asarray(lower, dtype=float))
            uppers.append(np.asarray(upper, dtype=float))
    return np.concatenate(lowers), np.concatenate(uppers)


def _accepts_current(gate):
    try:
        return "current" in inspect.signature(gate.flat_grad).parameters
    except (TypeError, ValueError):
        return False


def loglik_and_grad(gate, experts, data, theta=None, penalized=True):
    """Observed log-likelihood and its exact gradient in the flat parameters.

    Parameters
    ----------
    gate, experts : parts implementing the flat-parameter interface
    data : Design
    theta : ndarray, optional
        Flat parameters (:func:`get_flat_params` layout) to evaluate at; the
        parts are set to them. Default: the parts' current parameters.
    penalized : bool, default=True
        Subtract the parts' penalties (``penalty_value``) and their gradients.

    Returns
    -------
    value : float
        ``sum_i w_i log p(y_i | x_i)`` (minus the penalties when
        ``penalized``), on the internal scale of y.
    grad : ndarray of shape (n_params,)
        Its gradient: the gate's and the experts' ``flat_grad`` at the
        posterior responsibilities (Fisher's identity).
    """
    if theta is not None:
        set_flat_params(gate, experts, theta)
    step = e_step_pass(gate, experts, data)
    # a gate whose flat_grad takes the evaluation (``current``) skips evaluating itself again
    extra = {"current": step.gate_eval} if _accepts_current(gate) else {}
    grad = np.concatenate(
        [
            gate.flat_grad(data.XgT, step.resp, data.sample_weight, **extra),
            experts.flat_grad(data.XeT, data.y, step.resp, data.sample_weight),
        ]
    )
    value = step.total
    if penalized:
        value -= gate.penalty_value() + experts.penalty_value()
        grad -= np.concatenate([gate.penalty_grad(), experts.penalty_grad()])
    return value, grad


def run_lbfgs(gate, experts, data, max_iter, tol, verbose=0, label="", hook=None):
    """Maximise the penalised observed log-likelihood with L-BFGS-B from the parts' parameters.

    The objective is the mean penalised log-likelihood (:func:`objective`:
    ``sum_i w_i log p(y_i | x_i)`` minus the penalties, over ``sum_i w_i``),
    so the gradient tolerance does not depend on n. Bounds from the parts'
    ``flat_bounds`` keep the log-variances above the variance floor and the
    degrees of freedom and shapes in their ranges.

    Parameters
    ----------
    gate, experts : parts implementing the flat-parameter interface
    data : Design
    max_iter : int
        Maximum number of L-BFGS iterations.
    tol : float
        Stops when the relative change of the objective, ``(f_k - f_{k+1}) /
        max(|f_k|, |f_{k+1}|, 1)``, or the largest projected gradient
        component falls below ``tol`` (scipy's ``ftol`` and ``gtol``).
    verbose : int
    label : str
        Prefix for verbose output.
    hook : callable, optional
        ``hook(n_iter, lower_bound)``, called at the start (``n_iter=0``) and
        after every iteration with the parts set to the iterate (as in
        :func:`mixexp.solvers.run_em`); a true return value stops the run.

    Returns
    -------
    EMResult
        ``lower_bounds`` holds the objective at the start and after each
        iteration, ``n_iter`` the number of iterations, ``converged`` whether
        scipy reported success or the last relative change was below ``tol``
        (e.g. a line search that can no longer make progress at the optimum),
        ``resp`` the responsibilities at the final parameters.
    """
    t0 = time.perf_counter()
    scale = 1.0 / data.weight_sum
    lower, upper = flat_bounds(gate, experts)
    theta0 = np.clip(get_flat_params(gate, experts), lower, upper)

    def fun(theta):
        value, grad = loglik_and_grad(gate, experts, data, theta)
        if not (np.isfinite(value) and np.all(np.isfinite(grad))):
            # outside the region where the likelihood is computable: the line search backs off
            return np.inf, np.zeros_like(theta)
        return -value * scale, -grad * scale

    f0, _ = fun(theta0)
    history = [-f0]
    state = {"x": theta0, "stopped": False}

    def report(n_iter, lower_bound):
        if verbose >= 2:
            print(f"{label}iter {n_iter:4d}  mean log-lik {lower_bound:.8f}")
        if hook is not None and hook(n_iter, lower_bound):
            state["stopped"] = True
            return True
        return False

    if report(0, history[0]) or max_iter == 0:
        return _finish(gate, experts, data, history, theta0, False, state["stopped"], verbose, label, t0)

    def callback(intermediate_result):
        x = np.array(intermediate_result.x)
        history.append(-float(intermediate_result.fun))
        state["x"] = x
        set_flat_params(gate, experts, x)
        if report(len(history) - 1, history[-1]):
            raise StopIteration

    bounds = None if np.all(np.isinf(lower) & np.isinf(upper)) else Bounds(lower, upper)
    res = minimize(
        fun,
        theta0,
        jac=True,
        method="L-BFGS-B",
        bounds=bounds,
        callback=callback,
        options={
            "maxiter": max_iter,
            "maxfun": 20 * max_iter + 20,
            "ftol": tol,
            "gtol": tol,
            "maxcor": min(_MAX_CORRECTIONS, max(10, 2 * theta0.size)),
        },
    )
    x = np.asarray(res.x, dtype=float)
    if not state["stopped"] and not np.array_equal(x, state["x"]) and -res.fun >= history[-1]:
        # scipy returned a point after the last completed iteration: record it as one more
        history.append(-float(res.fun))
        state["x"] = x
        set_flat_params(gate, experts, x)
        report(len(history) - 1, history[-1])
    converged = bool(res.success)
    if not converged and len(history) > 1 and not state["stopped"]:
        f_prev, f_last = history[-2], history[-1]
        converged = abs(f_last - f_prev) <= tol * max(abs(f_prev), abs(f_last), 1.0)
    converged = converged and not state["stopped"]
    return _finish(gate, experts, data, history, state["x"], converged, state["stopped"], verbose, label, t0)


def _finish(gate, experts, data, history, theta, converged, stopped, verbose, label, t0):
    """Set the parts to ``theta``, run the final E-step, and package an :class:`EMResult`."""
    set_flat_params(gate, experts, theta)
    step = e_step_pass(gate, experts, data)
    lower_bound = objective(gate, experts, step.total, data, step.gate_eval)
    history[-1] = lower_bound  # the same point; recomputed so it equals what score_samples sees
    n_iter = len(history) - 1
    if verbose:
        state = "converged" if converged else ("was stopped" if stopped else "did not converge")
        print(
            f"{label}L-BFGS {state} after {n_iter} iterations, mean log-lik {lower_bound:.8f} "
            f"({time.perf_counter() - t0:.3f} s)"
        )
    return EMResult(lower_bound, history, n_iter, converged, step.resp, stopped)
