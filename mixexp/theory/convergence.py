"""How fast EM converges: measured linear rates beside the rates theory predicts.

Near a strict local maximum ``theta_hat`` of the log-likelihood, EM is a fixed-point
iteration ``theta_{t+1} = M(theta_t)`` whose error shrinks linearly,
``theta_{t+1} - theta_hat ~ J (theta_t - theta_hat)`` with ``J = dM/dtheta`` at
``theta_hat``, so ``||theta_t - theta_hat||`` falls like ``rho^t`` with ``rho`` the
spectral radius of ``J``. For *exact* EM (each M-step maximises
``Q(. | theta_t)``) Dempster, Laird & Rubin (1977) showed

.. math::

    J = I_c^{-1} (I_c - I_o),

the *fraction of missing information*: ``I_o`` is the observed information (the
negative Hessian of the observed log-likelihood at ``theta_hat``) and ``I_c`` the
complete-data information (the negative Hessian of ``Q(theta | theta_hat)`` in its
first argument, the responsibilities held at ``theta_hat``). Its eigenvalues lie in
[0, 1): the more the experts overlap, the more information the unobserved labels
carry and the closer the rate is to 1 (Jordan & Xu 1995 for mixtures of experts).

:func:`em_convergence` measures and predicts these rates for a fitted
configuration of :class:`mixexp.MixtureOfExpertsRegressor` or
:class:`mixexp.MixtureOfExpertsClassifier`; see ``docs/user_guide/theory.rst``.
"""

import copy
import warnings
from dataclasses import dataclass, field

import numpy as np
from scipy.linalg import eigh
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.validation import _check_sample_weight

from ..solvers import (
    Design,
    e_step_pass,
    get_flat_params,
    loglik_and_grad,
    missing_gradient_methods,
    run_em,
    run_lbfgs,
    run_squarem,
    set_flat_params,
)

#: algorithms of :class:`EMConvergence`, in table order
ALGORITHMS = ("em", "exact_em", "squarem", "lbfgs")


def linear_rate(errors, window=(1e-5, 1e-3)):
    """Linear convergence rate of an error sequence, by least squares on its log.

    The rate is ``exp(slope)`` of the OLS fit of ``log errors[t]`` on ``t`` over
    the *linear phase*: from the first iterate whose error is at most
    ``window[1]`` (earlier iterates are still in the transient, where the
    linearisation of the iteration map does not hold or several modes decay
    together) to the last iterate whose error is at least ``window[0]``
    (later ones are at the rounding floor of ``theta_hat`` itself).

    Parameters
    ----------
    errors : array-like of shape (n_iterations,)
        Non-negative errors ``||theta_t - theta_hat||``.
    window : (float, float), default=(1e-5, 1e-3)
        ``(lower, upper)`` error levels delimiting the linear phase.

    Returns
    -------
    rate : float
        ``exp(slope)``; NaN when fewer than 3 iterates lie in the window.
    start, stop : int
        The iterates fitted are ``errors[start:stop]``.

    Examples
    --------
    >>> from mixexp.theory.convergence import linear_rate
    >>> import numpy as np
    >>> rate, start, stop = linear_rate(0.5 ** np.arange(60.0))
    >>> round(rate, 6), start, stop
    (0.5, 10, 17)
    """
    errors = np.asarray(errors, dtype=float)
    if errors.ndim != 1 or np.any(~np.isfinite(errors)) or np.any(errors < 0):
        raise ValueError("errors must be a 1-D array of finite non-negative numbers.")
    lower, upper = _check_window(window)
    below = np.flatnonzero(errors <= upper)
    above = np.flatnonzero(errors >= lower)
    if below.size == 0 or above.size == 0:
        return np.nan, 0, 0
    start, stop = int(below[0]), int(above[-1]) + 1
    if stop - start < 3:
        return np.nan, start, max(start, stop)
    t = np.arange(start, stop, dtype=float)
    slope = np.polyfit(t, np.log(np.maximum(errors[start:stop], np.finfo(float).tiny)), 1)[0]
    return float(np.exp(slope)), start, stop


def _check_window(window):
    try:
        lower, upper = (float(v) for v in window)
    except (TypeError, ValueError):
        raise ValueError(f"window must be a pair (lower, upper) of error levels; got {window!r}.") from None
    if not (0 < lower < upper):
        raise ValueError(f"window must satisfy 0 < lower < upper; got {window!r}.")
    return lower, upper


@dataclass
class EMConvergence:
    """Measured and predicted convergence rates of EM at one optimum (see :func:`em_convergence`).

    All parameters are the flat vector of :func:`mixexp.solvers.get_flat_params`
    on the estimator's internal (standardised) scale: the gate's free rows (row 0,
    the reference, fixed at zero), then the experts' coefficients and
    log-variances.

    Attributes
    ----------
    theta_hat : ndarray of shape (n_params,)
        The optimum: the end of the EM run polished by Newton steps on the
        observed log-likelihood until the step is below ``1e-12 (1 + ||theta||)``.
    log_likelihood : float
        Penalised observed log-likelihood at ``theta_hat``, internal scale of y.
    observed_information : ndarray of shape (n_params, n_params)
        ``I_o``, the negative Hessian of the penalised observed log-likelihood
        at ``theta_hat`` (central differences of its analytic gradient).
    complete_information : ndarray of shape (n_params, n_params)
        ``I_c``, the negative Hessian of the penalised ``Q(theta | theta_hat)``
        (central differences of the parts' ``flat_grad`` at the
        responsibilities of ``theta_hat``).
    missing_fraction : ndarray of shape (n_params,)
        Eigenvalues of ``I_c^{-1} (I_c - I_o)``, largest first.
    predicted_rate : float
        The largest of them: the rate of exact EM (Dempster, Laird & Rubin 1977).
    jacobian : ndarray of shape (n_params, n_params)
        Central-difference Jacobian of one iteration of mixexp's EM (what
        :func:`mixexp.solvers.run_em` does: for Gaussian experts, closed-form
        expert M-steps and one Newton step of the gate) at ``theta_hat``.
    jacobian_rate : float
        Its spectral radius: the rate of the algorithm mixexp actually runs.
    exact_jacobian : ndarray of shape (n_params, n_params)
        The same for one iteration of exact EM; equals
        ``I - I_c^{-1} I_o`` up to the finite-difference error.
    errors : dict of str to ndarray
        ``||theta_t - theta_hat||`` along each trajectory: ``"em"`` (the
        estimator's recorded ``history_``), ``"exact_em"`` (exact EM from the same
        start), ``"squarem"`` (SQUAREM-accelerated EM from the same start, one
        entry per EM step, extrapolated points not included; absent when
        ``squarem=False``) and ``"lbfgs"`` (L-BFGS from the same start; absent
        when ``gradient=False``).
    rates : dict of str to float
        Measured linear rate of each trajectory (:func:`linear_rate`). For
        SQUAREM it is an effective ratio per EM step: its error does not fall
        geometrically (each accepted extrapolation jumps), and no rate is
        predicted for it.
    windows : dict of str to (int, int)
        The iterates each rate was fitted on.
    passes : dict of str to int
        Passes over the data (E-steps or gradient evaluations) until the error
        first fell below the window's lower end (-1 if it never did).
    window : (float, float)
        The error levels of the linear phase.
    """

    theta_hat: np.ndarray
    log_likelihood: float
    observed_information: np.ndarray
    complete_information: np.ndarray
    missing_fraction: np.ndarray
    predicted_rate: float
    jacobian: np.ndarray
    jacobian_rate: float
    exact_jacobian: np.ndarray
    errors: dict = field(default_factory=dict)
    rates: dict = field(default_factory=dict)
    windows: dict = field(default_factory=dict)
    passes: dict = field(default_factory=dict)
    window: tuple = (1e-5, 1e-3)

    @property
    def exact_jacobian_rate(self):
        """Spectral radius of :attr:`exact_jacobian` (a check of :attr:`predicted_rate`)."""
        return float(np.max(np.abs(np.linalg.eigvals(self.exact_jacobian))))

    def table(self):
        """One row per algorithm: measured and predicted rates, window and passes.

        Returns
        -------
        pandas.DataFrame
            Columns ``algorithm``, ``measured_rate``, ``predicted_rate`` (DLR for
            exact EM, the iteration map's spectral radius for mixexp's EM, none
            for SQUAREM and L-BFGS), ``first``, ``last`` (iterates fitted) and
            ``passes``.
        """
        import pandas as pd

        predicted = {"em": self.jacobian_rate, "exact_em": self.predicted_rate}  # none for the others
        rows = []
        for name in ALGORITHMS:
            if name not in self.errors:
                continue
            start, stop = self.windows[name]
            rows.append(
                {
                    "algorithm": name,
                    "measured_rate": self.rates[name],
                    "predicted_rate": predicted.get(name, np.nan),
                    "first": start,
                    "last": stop - 1,
                    "passes": self.passes[name],
                }
            )
        return pd.DataFrame(rows)

    def __str__(self):
        lines = [
            f"EM convergence at the optimum ({self.theta_hat.size} parameters)",
            f"  predicted rate, exact EM (top eigenvalue of I_c^-1 (I_c - I_o)): {self.predicted_rate:.4f}",
            f"  predicted rate, mixexp's EM (spectral radius of its iteration map): {self.jacobian_rate:.4f}",
        ]
        for name in ALGORITHMS:
            if name in self.rates:
                start, stop = self.windows[name]
                lines.append(
                    f"  measured rate {name:<8}: {self.rates[name]:.4f} (iterates {start}..{stop - 1}, "
                    f"{self.passes[name]} passes to {self.window[0]:g})"
                )
        return "\n".join(lines)


def _fd_jacobian(fun, theta, step):
    """Central-difference Jacobian of ``fun`` (R^p -> R^p) at ``theta``, one column per coordinate."""
    p = theta.size
    jac = np.empty((p, p))
    for j in range(p):
        h = step * max(1.0, abs(theta[j]))
        plus, minus = theta.copy(), theta.copy()
        plus[j] += h
        minus[j] -= h
        jac[:, j] = (fun(plus) - fun(minus)) / (2 * h)
    return jac


def _maximize_parts(gate, experts, data, resp, max_inner=200, rtol=1e-10):
    """Exact M-step: repeat the parts' M-steps under fixed responsibilities until they stop moving."""
    theta = get_flat_params(gate, experts)
    for _ in range(max_inner):
        experts.m_step(data.XeT, data.y, resp, data.sample_weight)
        gate.m_step(data.XgT, resp, data.sample_weight)
        new = get_flat_params(gate, experts)
        moved = np.linalg.norm(new - theta)
        theta = new
        if moved <= rtol * (1.0 + np.linalg.norm(theta)):
            break
    return theta


def _exact_em_map(gate, experts, data):
    def step(theta):
        set_flat_params(gate, experts, theta)
        resp = e_step_pass(gate, experts, data).resp.copy()
        return _maximize_parts(gate, experts, data, resp)

    return step


def _default_em_map(gate, experts, data):
    def step(theta):
        set_flat_params(gate, experts, theta)
        # one iteration of the solver the estimators run: E-step (fused where a kernel exists),
        # M-step, and the pass that checks the gate's proposed step; tol=0 never stops early
        run_em(gate, experts, data, max_iter=1, tol=0.0)
        return get_flat_params(gate, experts)

    return step


def _observed_information(gate, experts, data, theta, step):
    def grad(t):
        return loglik_and_grad(gate, experts, data, t)[1]

    hess = _fd_jacobian(grad, theta, step)
    return -0.5 * (hess + hess.T)


def _complete_information(gate, experts, data, theta, step):
    set_flat_params(gate, experts, theta)
    resp = e_step_pass(gate, experts, data).resp.copy()

    def grad(t):
        set_flat_params(gate, experts, t)
        return np.concatenate(
            [
                gate.flat_grad(data.XgT, resp, data.sample_weight) - gate.penalty_grad(),
                experts.flat_grad(data.XeT, data.y, resp, data.sample_weight) - experts.penalty_grad(),
            ]
        )

    hess = _fd_jacobian(grad, theta, step)
    return -0.5 * (hess + hess.T)


def _polish(gate, experts, data, theta, step, max_newton=8):
    """Newton steps on the observed log-likelihood from a nearly converged ``theta``.

    The Hessian is computed once, at the start: from an error of order 1e-6 the
    steps with a fixed Hessian still shrink the error by a factor of about 1e-6
    each.
    """
    value, grad = loglik_and_grad(gate, experts, data, theta)
    info = _observed_information(gate, experts, data, theta, step)
    for _ in range(max_newton):
        try:
            delta = np.linalg.solve(info, grad)
        except np.linalg.LinAlgError:
            break
        new_value, new_grad = loglik_and_grad(gate, experts, data, theta + delta)
        # a step that lowers the likelihood beyond rounding means theta was not near a maximum
        if not np.isfinite(new_value) or new_value < value - 1e-10 * max(1.0, abs(value)):
            break
        theta, value, grad = theta + delta, new_value, new_grad
        if np.linalg.norm(delta) <= 1e-12 * (1.0 + np.linalg.norm(theta)):
            break
    set_flat_params(gate, experts, theta)
    return theta, value


class _Settled:
    """Estimator callback: stops the run once a step moves the parameters by less than ``settle``."""

    def __init__(self, settle):
        self.settle = settle
        self.previous = None

    def __call__(self, estimator):
        theta = get_flat_params(estimator.gate_, estimator.experts_)
        previous, self.previous = self.previous, theta
        if previous is not None and np.linalg.norm(theta - previous) < self.settle:
            raise StopIteration


def _fit_quietly(est, X, y, sample_weight):
    with warnings.catch_warnings():
        # tol=0: a run that is not stopped by the callback ends at max_iter, on purpose
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X, y, sample_weight=sample_weight)


class _CountingExperts:
    """Counts the E-step passes of a solver that calls ``experts.log_prob`` once per pass."""

    def __init__(self, experts):
        self.count = 0
        self._log_prob = experts.log_prob
        experts.log_prob = self

    def __call__(self, *args, **kwargs):
        self.count += 1
        return self._log_prob(*args, **kwargs)


def _passes_to(errors, level, passes_per_iterate):
    hit = np.flatnonzero(errors < level)
    return int(passes_per_iterate[hit[0]]) if hit.size else -1


def em_convergence(
    estimator,
    X,
    y,
    sample_weight=None,
    *,
    max_iter=2000,
    window=(1e-5, 1e-3),
    gradient=True,
    squarem=True,
    step=1e-5,
    map_step=1e-3,
):
    """Measured and predicted linear convergence rates of EM on one data set.

    Fits a copy of ``estimator`` by EM with the parameter trajectory recorded
    (``record_history=True``, ``tol=0``, stopped by a callback once a step
    moves the parameters by less than ``1e-3 * window[0]``, or at
    ``max_iter``), finds the optimum ``theta_hat`` (the end of that run polished by Newton
    steps), then:

    * **predicts** the rate of exact EM, the largest eigenvalue of the fraction
      of missing information ``I_c^{-1} (I_c - I_o)`` (Dempster, Laird & Rubin
      1977), and the rate of the EM mixexp runs, the spectral radius of the
      finite-difference Jacobian of one of its iterations at ``theta_hat``;
    * **measures** the rate of up to four trajectories from the same start: the
      recorded EM run, exact EM (every M-step iterated to its maximum), with
      ``squarem`` the same EM steps accelerated by SQUAREM
      (``solver="squarem"``'s solver) and, with ``gradient``, L-BFGS
      (``solver="lbfgs"``'s solver), each by :func:`linear_rate` over the
      errors ``||theta_t - theta_hat||`` within ``window``, and counts the
      passes over the data each needs to bring the error below ``window[0]``.

    mixexp's EM takes one Newton step of the gate per iteration (a generalised
    EM), and so do its GLM and multinomial experts. At the optimum a Newton
    step's derivative with respect to its own starting point vanishes, so this
    "EM gradient algorithm" has the same Jacobian, hence the same linear rate,
    as exact EM (Lange 1995): the two predictions agree up to the
    finite-difference error, and the exact trajectory mainly differs in its
    transient. Student-t experts are the exception: their M-step is one ECME
    iteration, itself an EM step over the latent scales, so mixexp's EM is
    slower than exact EM and only ``jacobian_rate`` predicts it.

    Parameters
    ----------
    estimator : MixtureOfExpertsRegressor or MixtureOfExpertsClassifier
        The configuration to study (cloned, never modified), with a gate that
        models y given x only (``gate="softmax"`` or ``"constant"``). With
        ``gate_penalty > 0`` every quantity is that of the penalised
        likelihood; ``gate_penalty=0`` gives the classical MLE.
    X : array-like of shape (n_samples, n_features)
    y : array-like of shape (n_samples,)
    sample_weight : array-like of shape (n_samples,), default=None
    max_iter : int, default=2000
        EM iterations of the recorded run (and at most this many for the
        exact EM and L-BFGS runs). Must be enough for the error to fall below
        ``window[0]``: about ``log(window[0] / window[1]) / log(rho)`` iterations
        past the transient.
    window : (float, float), default=(1e-5, 1e-3)
        Error levels of the linear phase (see :func:`linear_rate`). The
        parameters live on the standardised scale, where they are of order
        one, so these are close to relative errors. Below about 1e-6 the
        trajectories are dominated by rounding: the gain of a gate step,
        of order ``n * error**2``, is then below the rounding error of the
        objective, of order ``n * eps``, so the step test of EM (and the
        line search of L-BFGS) cannot tell ascent from descent; the lower end
        stays well above that floor.
    gradient : bool, default=True
        Also run L-BFGS from the same start.
    squarem : bool, default=True
        Also run SQUAREM (:func:`mixexp.solvers.run_squarem`, with the
        estimator's ``squarem_max_decrease``) from the same start. Its passes
        include those at extrapolated points and those of rejected
        extrapolations.
    step : float, default=1e-5
        Relative step of the central differences of the gradients, for the
        information matrices (``step * max(1, |theta_j|)``).
    map_step : float, default=1e-3
        Relative step of the central differences of the iteration maps, for
        the Jacobians. Larger than ``step``: the M-steps skip a Newton step
        whose predicted gain is below the rounding noise of their objective
        (of order ``1e-13 * n``), so within about ``1e-5`` of ``theta_hat`` the
        maps are not smooth. The truncation error is of order ``map_step**2``.

    Returns
    -------
    EMConvergence

    Raises
    ------
    TypeError
        If ``estimator`` is not a mixexp estimator.
    ValueError
        For a gate that models x (``gate="gaussian"``: its EM maximises the
        joint likelihood of (x, y)), parts without the flat-parameter
        interface, bad ``max_iter``/``window``/``step``, or an optimum whose
        observed information is not positive definite (not a strict local
        maximum).

    Notes
    -----
    ``I_o`` is the negative central-difference Hessian of the observed
    log-likelihood from its analytic gradient
    (:func:`mixexp.solvers.loglik_and_grad`), ``I_c`` that of ``Q(theta |
    theta_hat) = sum_i w_i sum_k r_ki(theta_hat) [log g_k(x_i; theta) + log
    f_k(y_i | x_i; theta)]`` from the parts' ``flat_grad``. Both are symmetrised.
    The eigenvalues of ``I_c^{-1}(I_c - I_o)`` are those of the symmetric-definite
    pencil ``(I_c - I_o, I_c)``, hence real.

    References
    ----------
    Dempster, A. P., Laird, N. M. & Rubin, D. B. (1977). Maximum likelihood from
    incomplete data via the EM algorithm. JRSS B 39(1), 1-38.

    Jordan, M. I. & Xu, L. (1995). Convergence results for the EM approach to
    mixtures of experts architectures. Neural Networks 8(9), 1409-1431.

    Lange, K. (1995). A gradient algorithm locally equivalent to the EM
    algorithm. JRSS B 57(2), 425-437.

    Examples
    --------
    >>> from mixexp import MixtureOfExpertsRegressor
    >>> from mixexp.theory import SoftmaxGatedMoE, em_convergence
    >>> delta = 3.0  # gap between two parallel experts, in noise SDs
    >>> truth = SoftmaxGatedMoE([[0, 0], [0, 2]], [[-delta / 2, 1], [delta / 2, 1]], [1, 1],
    ...                         x_distribution="normal")
    >>> X, y = truth.sample(2000, random_state=0)
    >>> est = MixtureOfExpertsRegressor(2, gate_penalty=0, init="kmeans", random_state=0)
    >>> result = em_convergence(est, X, y)
    >>> print(f"{result.predicted_rate:.3f} {result.rates['em']:.3f}")
    0.878 0.878
    """
    from .._base import BaseMixtureOfExperts

    if not isinstance(estimator, BaseMixtureOfExperts):
        raise TypeError(
            "estimator must be a MixtureOfExpertsRegressor or MixtureOfExpertsClassifier; "
            f"got {type(estimator).__name__}."
        )
    if isinstance(max_iter, bool) or not isinstance(max_iter, (int, np.integer)) or max_iter < 1:
        raise ValueError(f"max_iter must be a positive integer; got {max_iter!r}.")
    window = _check_window(window)
    for name, value in (("step", step), ("map_step", map_step)):
        if isinstance(value, bool) or not (isinstance(value, (int, float, np.floating)) and 0 < value < 1e-1):
            raise ValueError(f"{name} must be a number in (0, 0.1); got {value!r}.")
    if getattr(estimator, "gate", None) == "gaussian":
        raise ValueError(
            "em_convergence needs a gate that models y given x only (gate='softmax' or 'constant'); "
            "gate='gaussian' is fitted by EM on the joint likelihood of (x, y), whose information "
            "matrices are not those of the conditional likelihood computed here."
        )
    est = clone(estimator).set_params(record_history=True, solver="em", tol=0.0, max_iter=int(max_iter))
    # tol=0: the run stops only when the step settles (the callback) or at max_iter
    settle = 1e-3 * window[0]
    try:
        _fit_quietly(est.set_params(callback=_Settled(settle)), X, y, sample_weight)
    except ValueError as exc:
        if "callback" not in str(exc):
            raise
        # several starts each run to convergence: there is no single run to follow
        _fit_quietly(est.set_params(callback=None), X, y, sample_weight)

    missing = missing_gradient_methods(est.gate_, est.experts_)
    if missing:
        raise ValueError(
            "em_convergence needs the flat-parameter gradient interface of the parts; missing: "
            f"{', '.join(missing)}."
        )
    X, target = est._validate_X_y(X, y)
    weights = _check_sample_weight(sample_weight, X, dtype=np.float64, ensure_non_negative=True)
    data = Design(*est._design(X), est._scaled_target(target), weights)
    gate, experts = copy.deepcopy(est.gate_), copy.deepcopy(est.experts_)
    trajectory = np.asarray(est.history_["theta"])
    theta0 = trajectory[0]

    theta_hat, value = _polish(gate, experts, data, trajectory[-1].copy(), step)
    info_o = _observed_information(gate, experts, data, theta_hat, step)
    info_c = _complete_information(gate, experts, data, theta_hat, step)
    try:
        np.linalg.cholesky(info_o)
        fraction = eigh(info_c - info_o, info_c, eigvals_only=True)[::-1]
    except np.linalg.LinAlgError:
        raise ValueError(
            "The observed or complete-data information at the optimum is not positive definite: "
            "the fit did not reach a strict local maximum (an expert may have vanished, or the "
            "parameters are not identifiable); try another random_state, fewer experts or a larger "
            "max_iter."
        ) from None
    exact_map = _exact_em_map(gate, experts, data)
    default_map = _default_em_map(gate, experts, data)
    jacobian = _fd_jacobian(default_map, theta_hat, map_step)
    exact_jacobian = _fd_jacobian(exact_map, theta_hat, map_step)
    result = EMConvergence(
        theta_hat=theta_hat,
        log_likelihood=float(value),
        observed_information=info_o,
        complete_information=info_c,
        missing_fraction=fraction,
        predicted_rate=float(fraction[0]),
        jacobian=jacobian,
        jacobian_rate=float(np.max(np.abs(np.linalg.eigvals(jacobian)))),
        exact_jacobian=exact_jacobian,
        window=window,
    )

    def record(name, thetas, passes_per_iterate=None, passes=None):
        # passes: the passes to the window's lower end when known directly (SQUAREM)
        errors = np.linalg.norm(np.asarray(thetas) - theta_hat, axis=1)
        rate, start, stop = linear_rate(errors, window)
        result.errors[name] = errors
        result.rates[name] = rate
        result.windows[name] = (start, stop)
        result.passes[name] = _passes_to(errors, window[0], passes_per_iterate) if passes is None else passes

    # mixexp's EM, as recorded by the estimator: one pass per iteration
    record("em", trajectory, np.arange(len(trajectory)))

    # exact EM from the same start, until the error is below the window
    # the auxiliary runs stop once below the window (or settled): later iterates are not used
    below = 0.1 * window[0]
    thetas = [theta0]
    for _ in range(int(max_iter)):
        thetas.append(exact_map(thetas[-1]))
        if np.linalg.norm(thetas[-1] - theta_hat) < below or np.linalg.norm(thetas[-1] - thetas[-2]) < settle:
            break
    record("exact_em", thetas, np.arange(len(thetas)))

    if squarem:
        set_flat_params(gate, experts, theta0)
        thetas = []

        def squarem_hook(n_iter, lower_bound):
            # called at the start and after every EM step; stop at the first iterate
            # below the window, so the run's passes are the passes to it
            thetas.append(get_flat_params(gate, experts))
            if np.linalg.norm(thetas[-1] - theta_hat) < window[0]:
                return True
            return len(thetas) > 1 and bool(np.linalg.norm(thetas[-1] - thetas[-2]) < settle)

        run = run_squarem(
            gate, experts, data, int(max_iter), 0.0, hook=squarem_hook, max_decrease=est.squarem_max_decrease
        )
        reached = bool(np.linalg.norm(thetas[-1] - theta_hat) < window[0])
        record("squarem", thetas, passes=run.n_passes if reached else -1)

    if gradient:
        set_flat_params(gate, experts, theta0)
        counter = _CountingExperts(experts)
        thetas, passes = [], []

        def hook(n_iter, lower_bound):
            thetas.append(get_flat_params(gate, experts))
            passes.append(counter.count)
            if np.linalg.norm(thetas[-1] - theta_hat) < below:
                return True
            return len(thetas) > 1 and bool(np.linalg.norm(thetas[-1] - thetas[-2]) < settle)

        try:
            run_lbfgs(gate, experts, data, int(max_iter), 1e-15, hook=hook)
        finally:
            del experts.log_prob
        record("lbfgs", thetas, passes)
    set_flat_params(gate, experts, theta_hat)
    return result
