"""Minibatch gradient ascent (Adam, SGD with momentum) on the mean penalised log-likelihood.

The objective is the one every solver maximises (:func:`mixexp.solvers._em.objective`):

.. math::

    F(\\theta) = \\frac{1}{W} \\Bigl[\\sum_i w_i \\log p(y_i \\mid x_i; \\theta)
    - P(\\theta)\\Bigr], \\qquad W = \\sum_i w_i,

on the flat, unconstrained parameters of :func:`mixexp.solvers.get_flat_params`.
A batch ``B`` of rows gives the unbiased gradient estimate

.. math::

    \\hat g_B = \\frac{1}{W_B} \\nabla \\sum_{i \\in B} w_i \\log p(y_i \\mid x_i)
    - \\frac{1}{W} \\nabla P(\\theta), \\qquad W_B = \\sum_{i \\in B} w_i,

(the first term by Fisher's identity, :func:`mixexp.solvers.loglik_and_grad` on
the batch's rows). After each step the parameters are projected on the parts'
bounds (``flat_bounds``: variance floors, degree-of-freedom and shape ranges).
One *epoch* is a pass over the (training) rows in batches; ``max_iter``
counts epochs, as in scikit-learn's ``MLPRegressor``.
"""

import time

import numpy as np

from ._em import Design, EMResult, e_step_pass, objective
from ._gradient import flat_bounds, get_flat_params, loglik_and_grad, set_flat_params

#: Adam's moment decay rates and denominator guard (Kingma & Ba 2015, their defaults)
ADAM_BETA1, ADAM_BETA2, ADAM_EPS = 0.9, 0.999, 1e-8
#: momentum of the SGD updates (heavy ball)
SGD_MOMENTUM = 0.9
#: SGD rescales a batch gradient whose norm exceeds this (gradient clipping,
#: Pascanu, Mikolov & Bengio 2013): near the variance floor the gradient in a
#: log-variance is of order residual^2 / floor and one plain step diverges
#: (Adam normalises its steps itself)
SGD_MAX_GRAD_NORM = 10.0
#: ``learning_rate_schedule="adaptive"`` divides the rate by this factor when the score stalls ...
ADAPTIVE_FACTOR = 5.0
#: ... and stops once the rate has fallen below this fraction of ``learning_rate``
ADAPTIVE_MIN_RATIO = 1e-4
#: ``batch_size="auto"``: min(AUTO_BATCH_SIZE, n_samples)
AUTO_BATCH_SIZE = 256

SCHEDULES = ("constant", "invscaling", "adaptive")


def resolve_batch_size(batch_size, n_samples):
    """``batch_size`` with "auto" resolved and clipped to ``n_samples``."""
    if batch_size == "auto":
        return min(AUTO_BATCH_SIZE, n_samples)
    return max(1, min(int(batch_size), n_samples))


def subset(data, rows):
    """The :class:`Design` of some rows of ``data``."""
    return Design(data.XgT[:, rows], data.XeT[:, rows], data.y[rows], data.sample_weight[rows])


def _validation_split(data, fraction, random_state):
    """(train rows, validation rows): a random ``fraction`` of the rows of positive weight held out."""
    positive = np.flatnonzero(data.sample_weight > 0)
    n_val = int(np.ceil(fraction * positive.size))
    if n_val < 1 or positive.size - n_val < 1:
        raise ValueError(
            f"early_stopping holds out validation_fraction={fraction} of the {positive.size} rows of "
            "positive weight, which leaves no validation or no training row; use more data, another "
            "validation_fraction, or early_stopping=False."
        )
    held_out = np.sort(random_state.choice(positive, n_val, replace=False))
    train = np.setdiff1d(np.arange(data.y.shape[0]), held_out)
    return train, held_out


def run_minibatch(
    gate,
    experts,
    data,
    max_iter,
    tol,
    verbose=0,
    label="",
    hook=None,
    *,
    algorithm="adam",
    batch_size="auto",
    learning_rate=1e-2,
    learning_rate_schedule="constant",
    early_stopping=False,
    validation_fraction=0.1,
    n_iter_no_change=10,
    shuffle=True,
    random_state=None,
):
    """Minibatch Adam or SGD from the parts' current parameters.

    Parameters
    ----------
    gate, experts : parts implementing the flat-parameter interface
    data : Design
    max_iter : int
        Maximum number of epochs.
    tol : float
        An epoch *improves* when its score exceeds the best score so far by
        more than ``tol``; the score is the mean penalised log-likelihood of
        all rows, or, with ``early_stopping``, the mean log-likelihood of the
        held-out rows. After ``n_iter_no_change`` epochs in a row without
        improvement the run stops (converged), or, with the ``"adaptive"``
        schedule, the learning rate is divided by 5 (and the run stops once
        it is below ``1e-4 * learning_rate``).
    verbose : int
    label : str
        Prefix for verbose output.
    hook : callable, optional
        ``hook(n_epochs, lower_bound)``, called at the start (0) and after
        every epoch with the parts at the current parameters; a true return
        value stops the run.
    algorithm : {"adam", "sgd"}
        Adam (Kingma & Ba 2015; beta1 0.9, beta2 0.999, eps 1e-8) or SGD with
        heavy-ball momentum 0.9.
    batch_size : int or "auto"
        Rows per batch ("auto": min(256, n)). The last batch of an epoch may
        be smaller.
    learning_rate : float
        Step size of the updates (Adam's alpha; SGD's rate).
    learning_rate_schedule : {"constant", "invscaling", "adaptive"}
        ``"constant"``; ``"invscaling"``: ``learning_rate / sqrt(1 + epoch)``;
        ``"adaptive"``: constant until the score stalls, then divided by 5.
    early_stopping : bool
        Hold out ``validation_fraction`` of the rows (never used for the
        updates) and score epochs by their mean log-likelihood.
    validation_fraction : float
    n_iter_no_change : int
    shuffle : bool
        Shuffle the training rows before every epoch (else fixed batches in
        row order).
    random_state : numpy.random.RandomState
        Draws the validation rows and the shuffles.

    Returns
    -------
    EMResult
        ``lower_bounds`` holds the mean penalised log-likelihood of all rows
        at the start and after each epoch (not monotone: the updates are
        noisy), ``n_iter`` the number of epochs, ``converged`` whether the
        stopping rule above ended the run, ``resp`` the responsibilities at
        the final parameters. The result also carries ``validation_scores``
        (the held-out mean log-likelihood at the start and after each epoch,
        or None without ``early_stopping``).
    """
    t0 = time.perf_counter()
    lower, upper = flat_bounds(gate, experts)
    theta = np.clip(get_flat_params(gate, experts), lower, upper)
    set_flat_params(gate, experts, theta)
    n = data.y.shape[0]
    if early_stopping:
        train_rows, val_rows = _validation_split(data, validation_fraction, random_state)
        train, validation = subset(data, train_rows), subset(data, val_rows)
    else:
        train_rows, train, validation = np.arange(n), data, None
    size = resolve_batch_size(batch_size, train_rows.size)
    # the penalty is spread over the whole training weight: W_B/W of it per batch
    penalty_scale = 1.0 / train.weight_sum

    def full_objective():
        step = e_step_pass(gate, experts, data)
        return objective(gate, experts, step.total, data, step.gate_eval)

    def validation_score():
        return e_step_pass(gate, experts, validation).total / validation.weight_sum

    history = [full_objective()]
    val_history = [validation_score()] if early_stopping else None
    stopped = hook is not None and hook(0, history[0])
    converged = False
    m = np.zeros_like(theta)
    v = np.zeros_like(theta)
    t = 0  # updates taken
    rate = float(learning_rate)
    best = val_history[0] if early_stopping else history[0]
    no_change = 0
    epoch = 0
    order = np.arange(train_rows.size)
    while not stopped and epoch < max_iter:
        if shuffle:
            order = random_state.permutation(train_rows.size)
        if learning_rate_schedule == "invscaling":
            rate = learning_rate / np.sqrt(1.0 + epoch)
        for start in range(0, order.size, size):
            rows = train_rows[order[start : start + size]] if early_stopping or shuffle else None
            batch = subset(data, rows) if rows is not None else subset(data, slice(start, start + size))
            if not batch.weight_sum > 0:
                continue
            _, grad = loglik_and_grad(gate, experts, batch, penalized=False)
            penalty = np.concatenate([gate.penalty_grad(), experts.penalty_grad()])
            grad = grad / batch.weight_sum - penalty * penalty_scale
            if not np.all(np.isfinite(grad)):
                continue  # a batch where the likelihood is not computable: no step
            t += 1
            if algorithm == "adam":
                m = ADAM_BETA1 * m + (1.0 - ADAM_BETA1) * grad
                v = ADAM_BETA2 * v + (1.0 - ADAM_BETA2) * grad * grad
                m_hat = m / (1.0 - ADAM_BETA1**t)
                v_hat = v / (1.0 - ADAM_BETA2**t)
                theta = theta + rate * m_hat / (np.sqrt(v_hat) + ADAM_EPS)
            else:
                norm = float(np.linalg.norm(grad))
                if norm > SGD_MAX_GRAD_NORM:
                    grad = grad * (SGD_MAX_GRAD_NORM / norm)
                m = SGD_MOMENTUM * m + rate * grad
                theta = theta + m
            np.clip(theta, lower, upper, out=theta)
            set_flat_params(gate, experts, theta)
        epoch += 1
        history.append(full_objective())
        if early_stopping:
            val_history.append(validation_score())
        score = val_history[-1] if early_stopping else history[-1]
        if verbose >= 2:
            extra = f"  held-out mean log-lik {score:.8f}" if early_stopping else ""
            print(f"{label}epoch {epoch:4d}  mean log-lik {history[-1]:.8f}{extra}  rate {rate:.3g}")
        if hook is not None and hook(epoch, history[-1]):
            stopped = True
            break
        if not np.isfinite(score):
            break
        if score > best + tol:
            no_change = 0
        else:
            no_change += 1
        best = max(best, score)
        if no_change >= n_iter_no_change:
            if (
                learning_rate_schedule == "adaptive"
                and rate / ADAPTIVE_FACTOR >= ADAPTIVE_MIN_RATIO * learning_rate
            ):
                rate /= ADAPTIVE_FACTOR
                no_change = 0
                continue
            converged = True
            break
    step = e_step_pass(gate, experts, data)
    history[-1] = objective(gate, experts, step.total, data, step.gate_eval)
    if verbose:
        state = "converged" if converged else ("was stopped" if stopped else "did not converge")
        print(
            f"{label}{algorithm.upper()} {state} after {epoch} epochs, mean log-lik {history[-1]:.8f} "
            f"({time.perf_counter() - t0:.3f} s)"
        )
    result = EMResult(history[-1], history, epoch, converged, step.resp, stopped)
    result.validation_scores = val_history
    return result
