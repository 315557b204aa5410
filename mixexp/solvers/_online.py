"""Online EM (Cappé & Moulines 2009): the update behind ``partial_fit``.

Batch EM alternates the E-step, the expected complete-data sufficient
statistics ``s(theta) = E_data E[S | x, y; theta]``, and the M-step
``theta = bar_theta(s)``. Online EM replaces the E-step over all rows by a
stochastic-approximation average over a stream of batches ``B_t``:

.. math::

    s_t = s_{t-1} + \\gamma_t \\bigl(\\bar S_{B_t}(\\theta_{t-1}) - s_{t-1}\\bigr),
    \\qquad \\theta_t = \\bar\\theta(s_t),
    \\qquad \\gamma_t = t^{-\\alpha}, \\ \\alpha \\in (1/2, 1],

with ``bar S_B`` the weighted mean of the statistics over the batch's rows at
the responsibilities of ``theta_{t-1}``. Since ``sum gamma_t = inf`` and
``sum gamma_t^2 < inf``, the recursion is a Robbins-Monro scheme whose mean
field ``s(bar_theta(s)) - s`` vanishes exactly at the fixed points of EM, the
stationary points of the expected log-likelihood (Cappé & Moulines 2009,
Theorem 1). Memory is O(batch * K) plus the statistics.

What each part keeps:

* Gaussian experts: the exact sufficient statistics, the per-expert moments
  ``(X'RX, X'Ry, y'Ry, sum r) / W`` (``mixexp._kernels.linear_stats``); the
  M-step is weighted least squares on their running averages (times the
  weight seen so far, so an ``expert_penalty`` weighs as in a batch fit of
  the rows seen).
* Constant gate: the proportions ``sum_i w_i r_ik / W``; their M-step is the
  identity, so the running average *is* the proportion vector.
* Softmax gate and the families without closed-form statistics (Student-t,
  Poisson, Gamma, multinomial): the part's own M-step on the batch (one
  Newton/IRLS step with step halving from the current parameters, an ECM
  step for the Student-t), damped by ``gamma_t`` in the flat unconstrained
  parameters: ``theta_t = theta_{t-1} + gamma_t (M_B(theta_{t-1}) -
  theta_{t-1})``, projected on the parts' bounds. For a batch of ``m`` rows,
  ``M_B(theta) = theta + H^{-1} g_B(theta) + O(1/m)``, so the mean field is
  ``H^{-1} grad F(theta) + O(1/m)``: zero at the stationary points up to a
  bias of order ``1/m`` in the parameters, i.e. ``1/m^2`` in the
  log-likelihood -- negligible for batches of hundreds of rows and more.
  (Averaging these families' IRLS statistics would need them at a fixed
  parameter, which moves; the damped step needs nothing but the part's
  M-step.) The penalties are scaled by ``W_B / W_seen`` in these steps, so
  they weigh as in a batch fit of the rows seen so far.

References
----------
.. [1] Cappé, O. and Moulines, E. (2009). On-line expectation-maximization
   algorithm for latent data models. JRSS B, 71(3), 593-613.
"""

from dataclasses import dataclass

import numpy as np

from .._kernels import linear_stats
from ..experts import GaussianExperts
from ..gates import ConstantGate
from ._em import e_step_pass

#: flat-parameter methods the damped steps need
_DAMPED_METHODS = ("get_flat", "set_flat")


@dataclass
class OnlineState:
    """Running state of online EM between ``partial_fit`` calls.

    Attributes
    ----------
    t : float
        Batches seen, counting the initial fit as ``max(1, W_fit / W_batch)``
        batches of the first online batch's weight.
    weight_seen : float
        Total sample weight seen (the initial fit's included).
    expert_stats : tuple or None
        Running means of the Gaussian experts' moments (None until the first
        online step, and for other families).
    gate, experts : parts
        The parts this state belongs to (a refit replaces them, and the state
        then starts afresh).
    """

    t: float
    weight_seen: float
    gate: object
    experts: object
    expert_stats: tuple | None = None


def check_online_parts(gate, experts):
    """Raise a ValueError when online EM cannot update these parts."""
    if getattr(gate, "models_x", False):
        raise ValueError(
            "partial_fit (online EM) is not available for a gate that models x "
            "(gate='gaussian'); use gate='softmax' or 'constant', or fit on all rows."
        )
    parts = []
    if not isinstance(gate, ConstantGate):
        parts.append(gate)
    if not _exact_statistics(experts):
        parts.append(experts)
    missing = [
        f"{type(part).__name__}.{m}" for part in parts for m in _DAMPED_METHODS
        if not callable(getattr(part, m, None))
    ]  # fmt: skip
    if missing:
        raise ValueError(
            "partial_fit (online EM) damps the M-step of parts without closed-form sufficient "
            f"statistics in their flat parameters; missing: {', '.join(missing)}."
        )


def supports_partial_fit(estimator):
    """True when the estimator's gate can be updated online; else an AttributeError saying why.

    Used with :func:`sklearn.utils._available_if.available_if`, so that
    ``hasattr(estimator, "partial_fit")`` is False for ``gate="gaussian"``.
    """
    if estimator.gate == "gaussian":
        raise AttributeError(
            "partial_fit (online EM) is not available with gate='gaussian' (a gate that models x, "
            "fitted on the joint likelihood); use gate='softmax' or 'constant', or fit on all rows."
        )
    return True


def _exact_statistics(experts):
    return isinstance(experts, GaussianExperts) and experts.kind == "gaussian"


def step_size(t, alpha):
    """Online EM step size ``gamma_t = t^(-alpha)``."""
    return float(t) ** (-alpha)


def _bounds(part):
    bounds = getattr(part, "flat_bounds", None)
    if bounds is None:
        return -np.inf, np.inf
    return bounds()


def _damped_m_step(part, gamma, scale, m_step):
    """``theta + gamma (M_B(theta) - theta)`` in the part's flat parameters."""
    before = np.asarray(part.get_flat(), dtype=float).copy()
    penalty = getattr(part, "penalty", None)
    if penalty:
        part.penalty = penalty * scale
    try:
        m_step()
    finally:
        if penalty:
            part.penalty = penalty
    after = np.asarray(part.get_flat(), dtype=float)
    lower, upper = _bounds(part)
    part.set_flat(np.clip(before + gamma * (after - before), lower, upper))


def online_em_step(gate, experts, batch, state, alpha):
    """One online EM update of the parts from a batch (in place).

    Parameters
    ----------
    gate, experts : parts at the current parameters
    batch : Design
        The batch's rows (on the estimator's fixed internal scale).
    state : OnlineState
        Updated in place (``t``, ``weight_seen``, ``expert_stats``).
    alpha : float
        Step-size exponent in (1/2, 1].

    Returns
    -------
    float
        The batch's mean log-likelihood ``sum_{i in B} w_i log p(y_i | x_i) /
        W_B`` at the parameters before the update (a prequential score).
    """
    w_b = batch.weight_sum
    step = e_step_pass(gate, experts, batch)
    before = step.total / w_b
    state.t += 1.0
    state.weight_seen += w_b
    gamma = step_size(state.t, alpha)
    scale = w_b / state.weight_seen
    resp = step.resp

    # -- experts --
    if _exact_statistics(experts):
        gram, xy, yy, nk = linear_stats(batch.XeT, batch.y, resp, batch.sample_weight)
        new = (gram / w_b, xy / w_b, yy / w_b, nk / w_b)
        if state.expert_stats is None:
            # statistics whose M-step gives the current parameters, on this batch's design
            # moments: the first step is then the damped step coef + gamma (coef_B - coef)
            g, n_k = new[0], new[3]
            coef, var = experts.coef, experts.var
            gc = np.einsum("kpq,kq->kp", g, coef)
            state.expert_stats = (g, gc, np.einsum("kp,kp->k", coef, gc) + var * n_k, n_k)
        state.expert_stats = tuple(s + gamma * (b - s) for s, b in zip(state.expert_stats, new, strict=True))
        total = tuple(s * state.weight_seen for s in state.expert_stats)
        experts.m_step(batch.XeT, batch.y, resp, batch.sample_weight, stats=total)
    else:
        _damped_m_step(
            experts, gamma, scale, lambda: experts.m_step(batch.XeT, batch.y, resp, batch.sample_weight)
        )

    # -- gate --
    if isinstance(gate, ConstantGate):
        pi = np.exp(gate.evaluate(batch.XgT[:, :1]).log[:, 0])
        pi = pi + gamma * ((resp @ batch.sample_weight) / w_b - pi)
        gate.m_step(np.ones((1, 1)), pi[:, None], np.ones(1))
    elif gate.n_experts > 1:
        _damped_m_step(
            gate, gamma, scale, lambda: gate.m_step(batch.XgT, resp, batch.sample_weight, step.gate_eval)
        )
    return before


def partial_fit_estimator(estimator, X, y, sample_weight=None):
    """``partial_fit`` of a mixture-of-experts estimator: a fit on the first batch, then online EM.

    Parameters
    ----------
    estimator : BaseMixtureOfExperts
    X : array-like of shape (n_samples, n_features)
    y : array-like of shape (n_samples,)
    sample_weight : array-like of shape (n_samples,), default=None

    Returns
    -------
    estimator
    """
    # imported here: the estimator modules import the solvers
    from sklearn.utils.validation import _check_sample_weight

    from .._threads import single_threaded_blas
    from ._em import Design

    if getattr(estimator._make_gate(), "models_x", False):
        check_online_parts(estimator._make_gate(), None)
    with single_threaded_blas():
        if not hasattr(estimator, "gate_"):
            # the first batch: a fit with the estimator's starts and solver; its
            # standardisation stays fixed for the stream
            estimator._fit(X, y, sample_weight)
            return estimator
        check_online_parts(estimator.gate_, estimator.experts_)
        X, y = estimator._validate_X_y(X, y)
        sample_weight = _check_sample_weight(sample_weight, X, dtype=np.float64, ensure_non_negative=True)
        if not sample_weight.sum() > 0:
            raise ValueError("sample_weight must have a positive sum.")
        batch = Design(*estimator._design(X), estimator._scaled_target(y), sample_weight)
        state = getattr(estimator, "_online_state", None)
        if state is None or state.gate is not estimator.gate_ or state.experts is not estimator.experts_:
            # continuing from a fit (by fit or by the first partial_fit): the fit counts as
            # max(1, W_fit / W_batch) batches of this batch's weight
            w_fit = getattr(estimator, "_fit_weight_sum", batch.weight_sum)
            state = OnlineState(
                max(1.0, w_fit / batch.weight_sum), w_fit, estimator.gate_, estimator.experts_
            )
            estimator._online_state = state
        score = online_em_step(estimator.gate_, estimator.experts_, batch, state, estimator.online_alpha)
    score -= np.log(estimator._scaling.y_scale)
    estimator.lower_bound_ = score
    estimator.lower_bounds_ = np.append(estimator.lower_bounds_, score)
    estimator.n_iter_ += 1
    if hasattr(estimator, "history_"):
        from ._gradient import get_flat_params

        estimator.history_ = {
            "theta": np.vstack(
                [estimator.history_["theta"], get_flat_params(estimator.gate_, estimator.experts_)]
            ),
            "log_likelihood": estimator.lower_bounds_.copy(),
        }
    return estimator
