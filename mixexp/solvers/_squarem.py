"""SQUAREM: EM accelerated by squared extrapolation (Varadhan & Roland 2008).

EM is a fixed-point iteration ``theta_{t+1} = F(theta_t)`` whose rate is
linear with ratio the largest fraction of missing information (Dempster,
Laird & Rubin 1977). When experts overlap, or when the model has more
experts than the data need (copies of one expert, whose likelihood is flat
along the direction that separates them), that ratio is close to 1 and EM
takes thousands of steps. SQUAREM takes two EM steps from ``theta_0``,

.. math::

    \\theta_1 = F(\\theta_0), \\quad \\theta_2 = F(\\theta_1), \\quad
    r = \\theta_1 - \\theta_0, \\quad v = \\theta_2 - 2\\theta_1 + \\theta_0,

jumps along the quadratic they span (scheme S3),

.. math::

    \\theta' = \\theta_0 + 2 s\\, r + s^2 v, \\qquad s = \\|r\\| / \\|v\\|
    \\text{ clipped to } [1, s_{\\max}]

(``s = 1`` gives ``theta_2``, plain EM), and takes one more EM step from
``theta'`` to stabilise it. The new point is kept when its objective is at
least that of ``theta_0`` less ``max_decrease`` nats of the total
log-likelihood (1 by default; with 0 the accepted points never lose
objective); otherwise the cycle falls back to ``theta_2``, EM's own point.
``s_max`` starts at 1 and grows by a factor of 4 each time
a step of length ``s_max`` is accepted, and shrinks by 4 (not below 1) when
one is rejected: the globally convergent step control of the authors' R
package ``SQUAREM`` (``squarem2``; ``step.max0 = 1``, ``mstep = 4``,
``objfn.inc = 1``, here ``max_decrease``).

The extrapolation is in the parts' flat parametrisation
(:func:`~mixexp.solvers.get_flat_params`: log-variances, Cholesky factors
with log diagonals, gate logits), so every extrapolated point is a valid
model, clipped to the parts' bounds (variance floors). Each EM step is
:func:`~mixexp.solvers.run_em`'s own, so every gate and expert family with
the flat-parameter interface is accelerated, penalties included; the
returned parameters are always the output of an EM step.
"""

import time

import numpy as np

from ._em import EMResult, run_em
from ._gradient import flat_bounds, get_flat_params, set_flat_params

#: SQUAREM's step control: first largest step length, and its growth/shrink factor
STEP_MAX0 = 1.0
STEP_FACTOR = 4.0
#: the default acceptance slack, nats of the total objective (the R package's ``objfn.inc``);
#: also the estimators' ``squarem_max_decrease`` default and what rate_experiment records
MAX_DECREASE = 1.0


def squarem_step(theta0, theta1, theta2, step_max):
    """The S3 extrapolation of two EM steps.

    Parameters
    ----------
    theta0, theta1, theta2 : ndarray
        A point and its two EM images.
    step_max : float
        Largest step length (>= 1).

    Returns
    -------
    theta : ndarray
        ``theta0 + 2 s r + s^2 v`` with ``r = theta1 - theta0``,
        ``v = theta2 - 2 theta1 + theta0`` and ``s = ||r|| / ||v||`` clipped
        to ``[1, step_max]``; ``theta2`` when ``v`` is 0 (EM has stopped
        moving or moves along a line at constant speed).
    s : float
        The step length used.
    """
    r = theta1 - theta0
    v = theta2 - theta1 - r
    sv = float(np.dot(v, v))
    if not sv > 0.0:
        return theta2.copy(), 1.0
    s = float(np.sqrt(np.dot(r, r) / sv))
    s = min(max(s, 1.0), step_max)
    return theta0 + 2.0 * s * r + s * s * v, s


class _Recorder:
    """The hook of one inner EM run: keeps its points and objectives, reports EM steps.

    The run's first pass is reported only at the very start of the fit (later
    runs start at a point already reported, or at an extrapolated point, which
    is not an EM step). With ``threshold`` (a run from an extrapolated point)
    the run stops after its first EM step if that lost objective against
    ``threshold`` or is not finite (``reject``).
    """

    def __init__(self, gate, experts, history, hook, n_iter, record_start, threshold):
        self.gate, self.experts, self.history, self.hook = gate, experts, history, hook
        self.n_iter, self.record_start, self.threshold = n_iter, record_start, threshold
        self.thetas, self.bounds = [], []
        self.user_stop = self.reject = False

    def __call__(self, k, lower_bound):
        self.thetas.append(get_flat_params(self.gate, self.experts))
        self.bounds.append(lower_bound)
        if k == 0 and not self.record_start:
            return False
        self.history.append(lower_bound)
        if self.hook is not None and self.hook(self.n_iter + k, lower_bound):
            self.user_stop = True
            return True
        if self.threshold is not None and k == 1 and not lower_bound >= self.threshold:
            self.reject = True
            return True
        return False


def _fall_back(gate, experts, pending, step_max, verbose, label, n_iter):
    """A rejected extrapolation: back to EM's own theta2; returns the new largest step length."""
    set_flat_params(gate, experts, pending[2])
    if verbose >= 2:
        print(f"{label}iter {n_iter:4d}  step {pending[4]:.3g} rejected, back to EM's point")
    if pending[4] >= step_max:
        return max(STEP_MAX0, step_max / STEP_FACTOR)
    return step_max


def run_squarem(
    gate, experts, data, max_iter, tol, verbose=0, label="", hook=None, polish=True, max_decrease=MAX_DECREASE
):
    """Run SQUAREM-accelerated EM from the parts' current parameters.

    Same interface and stopping rule as :func:`~mixexp.solvers.run_em`: the
    run stops when one EM step changes the objective by less than ``tol``,
    or after ``max_iter`` EM steps (M-steps, each one pass over the data;
    the passes at extrapolated points come on top, about one per three EM
    steps).

    Parameters
    ----------
    gate, experts : parts implementing the EM and flat-parameter interfaces
        (``get_flat``/``set_flat``)
    data : Design
    max_iter : int
        Maximum number of EM steps.
    tol : float
        Convergence threshold on the change of the objective over one EM step.
    verbose : int
    label : str
        Prefix for verbose output.
    hook : callable, optional
        Called as ``hook(n_iter, lower_bound)`` at the start and after every
        EM step, the parts then holding the parameters the objective was
        evaluated at (as in :func:`~mixexp.solvers.run_em`); a true return
        value stops the run. Extrapolated points are not reported, and the EM
        step from an extrapolated point is reported even when the cycle then
        falls back, so the reported objectives need not increase.
    polish : bool, default=True
        Passed to :func:`~mixexp.solvers.run_em` (the top-K gate's search
        before EM stops).
    max_decrease : float, default=1.0
        An extrapolation is kept when the objective after its stabilising EM
        step is at least ``theta0``'s minus this many nats of the *total*
        penalised log-likelihood (``max_decrease / sum(sample_weight)`` on
        the mean objective). The default is the R package's (``objfn.inc =
        1``): it accepts the small losses that extrapolations along the flat
        directions of over-fitted likelihoods make, and rejects far fewer of
        them; 0 keeps every cycle monotone, like EM.

    Returns
    -------
    EMResult
        ``lower_bounds`` has ``n_iter + 1`` entries (the start, then one per
        EM step); ``lower_bound`` and ``resp`` are those of the final
        parameters, ``extrapolations`` counts the accepted and rejected
        extrapolations and ``n_passes`` the passes over the data (E-steps:
        one per EM step, plus those at extrapolated points and the repeated
        pass at ``theta2`` after a fallback).
    """
    if isinstance(max_decrease, bool) or not (isinstance(max_decrease, (int, float, np.number))
                                              and 0.0 <= max_decrease < np.inf):
        raise ValueError(f"max_decrease must be a finite number >= 0; got {max_decrease!r}.")
    slack = float(max_decrease) / data.weight_sum  # on the mean objective
    lower, upper = flat_bounds(gate, experts)
    step_max = STEP_MAX0
    history = []
    n_iter = 0
    accepted = rejected = n_passes = 0
    converged = stopped = False
    t0 = time.perf_counter()
    # the point the next run starts from: None for the parts' own parameters at the
    # start or after a fallback (a plain EM run), else (theta', L0, theta2, L2, s)
    pending = None
    first = True
    result = None
    while True:
        budget = max_iter - n_iter
        if budget <= 0 and result is not None:
            break
        extrapolated = pending is not None
        # an extrapolated point gets its stabilising step plus two more (the next
        # cycle's theta1 and theta2); a plain run two EM steps
        n_steps = min(3 if extrapolated else 2, budget)
        rec = _Recorder(gate, experts, history, hook, n_iter, record_start=first,
                        threshold=pending[1] - slack if extrapolated else None)
        with np.errstate(all="ignore"):
            try:
                result = run_em(gate, experts, data, n_steps, tol, hook=rec, polish=polish)
            except (ValueError, FloatingPointError, np.linalg.LinAlgError):
                if not extrapolated:
                    raise
                # a far extrapolated point broke a step (a singular update): fall back
                rec.reject = True
                result = EMResult(-np.inf, [], max(len(rec.bounds) - 1, 0), False, None)
        n_iter += result.n_iter
        # every pass of the inner run reached the recorder (a run that raised: those before it)
        n_passes += len(rec.bounds)
        first = False
        if rec.user_stop:
            stopped = True
            break
        if rec.reject:
            step_max = _fall_back(gate, experts, pending, step_max, verbose, label, n_iter)
            rejected += 1
            pending = None
            continue
        if extrapolated:
            accepted += 1
            if pending[4] >= step_max:
                step_max *= STEP_FACTOR
            # drop theta', keep F(theta') and its images
            rec.thetas, rec.bounds = rec.thetas[1:], rec.bounds[1:]
        if result.converged:
            converged = True
            break
        if len(rec.thetas) < 3 or max_iter - n_iter < 4:
            # no room for another cycle (a cycle costs up to 1 + 3 EM steps and a
            # fallback must end on an EM step): plain EM to the end of the budget
            pending = None
            if max_iter - n_iter <= 0:
                break
            continue
        theta0, theta1, theta2 = rec.thetas[-3:]
        theta, s = squarem_step(theta0, theta1, theta2, step_max)
        np.clip(theta, lower, upper, out=theta)
        if verbose >= 2:
            print(f"{label}iter {n_iter:4d}  mean log-lik {rec.bounds[-1]:.8f}  step {s:.3g}")
        pending = (theta, rec.bounds[-3], theta2, rec.bounds[-1], s)
        try:
            with np.errstate(all="ignore"):
                set_flat_params(gate, experts, theta)
        except (ValueError, FloatingPointError, np.linalg.LinAlgError):
            # not a valid model in floating point (a far step can make a Gaussian gate's
            # covariance numerically singular): rejected before any pass
            step_max = _fall_back(gate, experts, pending, step_max, verbose, label, n_iter)
            rejected += 1
            pending = None
    if verbose:
        state_name = "converged" if converged else ("was stopped" if stopped else "did not converge")
        print(
            f"{label}{state_name} after {n_iter} iterations ({accepted} extrapolations accepted, "
            f"{rejected} rejected), mean log-lik {result.lower_bound:.8f} ({time.perf_counter() - t0:.3f} s)"
        )
    return EMResult(
        result.lower_bound,
        history,
        n_iter,
        converged,
        result.resp,
        stopped,
        extrapolations=(accepted, rejected),
        n_passes=n_passes,
    )
