"""partial_fit: online EM (Cappé & Moulines 2009) over a stream of batches."""

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import clone

from mixexp import MixtureOfExpertsClassifier, MixtureOfExpertsRegressor
from mixexp.solvers import Design
from mixexp.solvers._online import OnlineState, online_em_step, step_size

from .test_solvers import _estimator, _simulate

FAMILIES = ["gaussian", "student_t", "poisson", "gamma", "classifier"]


def _stream(est, X, y, batch, passes=1, **first):
    for _ in range(passes):
        for start in range(0, y.size, batch):
            est.partial_fit(X[start : start + batch], y[start : start + batch], **first)
            first = {}
    return est


@pytest.mark.parametrize("gate", ["softmax", "constant"])
@pytest.mark.parametrize("family", FAMILIES)
def test_stream_reaches_the_batch_em_optimum(family, gate):
    # 4000 rows in batches of 200: the first batch is fitted by EM (with its own
    # statistical error, O(1/sqrt(200)) in the parameters), then 19 online EM steps.
    # The issue asks for 1e-2 of batch EM's mean log-likelihood.
    X, y = _simulate(family, gate, n=4000, seed=1)
    em = _estimator(family, gate=gate, tol=1e-8, max_iter=2000).fit(X, y)
    reference = em.score_samples(X, y).mean()
    first = {"classes": [0, 1]} if family == "classifier" else {}
    online = _stream(_estimator(family, gate=gate), X, y, 200, **first)
    assert abs(online.score_samples(X, y).mean() - reference) < 1e-2
    assert online.n_iter_ >= 4000 // 200 - 1  # one more iteration per online step


@pytest.mark.parametrize("gate", ["softmax", "constant"])
def test_gaussian_stream_improves_on_its_first_batch(gate):
    # the online steps do the work: the fit of the first batch alone is further from the
    # optimum than the end of the stream
    X, y = _simulate("gaussian", gate, n=10_000, seed=2)
    em = _estimator("gaussian", gate=gate, tol=1e-8, max_iter=2000).fit(X, y)
    reference = em.score_samples(X, y).mean()
    online = _estimator("gaussian", gate=gate).partial_fit(X[:100], y[:100])
    gap_first = reference - online.score_samples(X, y).mean()
    _stream(online, X[100:], y[100:], 250)
    gap_end = reference - online.score_samples(X, y).mean()
    assert gap_end < 2e-3
    assert gap_end < gap_first / 3


def test_first_call_is_a_fit_and_fit_restarts():
    X, y = _simulate("gaussian", "softmax", n=2000)
    batch = slice(0, 400)
    fitted = _estimator("gaussian").fit(X[batch], y[batch])
    first = _estimator("gaussian").partial_fit(X[batch], y[batch])
    assert_array_equal(first.expert_coef_, fitted.expert_coef_)
    assert_array_equal(first.gate_coef_, fitted.gate_coef_)
    _stream(first, X[400:], y[400:], 200)
    # fit after partial_fit restarts: the same as a fit of a fresh estimator
    full = _estimator("gaussian").fit(X, y)
    first.fit(X, y)
    assert_array_equal(first.expert_coef_, full.expert_coef_)
    assert first.lower_bounds_.shape == (first.n_iter_ + 1,)


@pytest.mark.parametrize("family", ["gaussian", "poisson", "classifier"])
def test_partial_fit_on_a_fitted_model_continues(family):
    # The fit of 4000 rows counts as 4000 / 200 = 20 batches, so one batch of 200 moves
    # the parameters by gamma = 21^-0.6 = 0.16 of the way to that batch's M-step: the
    # model stays near the fit, while a fresh partial_fit on the batch is a fit of 200 rows.
    X, y = _simulate(family, "softmax", n=4200, seed=3)
    X_fit, y_fit, X_b, y_b = X[:4000], y[:4000], X[4000:], y[4000:]
    fitted = _estimator(family, tol=1e-8, max_iter=2000).fit(X_fit, y_fit)
    continued = clone(fitted).fit(X_fit, y_fit).partial_fit(X_b, y_b)
    kw = {"classes": [0, 1]} if family == "classifier" else {}
    restarted = _estimator(family).partial_fit(X_b, y_b, **kw)
    step = np.abs(continued.expert_coef_ - fitted.expert_coef_).max()
    jump = np.abs(restarted.expert_coef_ - fitted.expert_coef_).max()
    assert 0 < step < jump / 3
    score = fitted.score_samples(X, y).mean()
    assert abs(continued.score_samples(X, y).mean() - score) < 5e-3
    assert continued.n_iter_ == fitted.n_iter_ + 1
    # the prequential score: the batch's mean log-likelihood before the update
    assert_allclose(continued.lower_bound_, fitted.score_samples(X_b, y_b).mean(), rtol=1e-10)
    assert continued.lower_bounds_[-1] == continued.lower_bound_


def test_first_online_step_of_closed_form_parts():
    # Gaussian experts and the constant gate: the first online step after a fit is the
    # stochastic-approximation step of Cappé & Moulines from statistics consistent with
    # the fit, which for these parts is theta + gamma (M_B(theta) - theta) in the
    # coefficients and the proportions, with M_B the batch M-step at the batch's
    # responsibilities.
    X, y = _simulate("gaussian", "constant", n=1200, seed=4)
    est = _estimator("gaussian", gate="constant").fit(X[:1000], y[:1000])
    gate, experts = est.gate_, est.experts_
    batch = Design(*est._design(X[1000:]), est._scaled_target(y[1000:]), np.ones(200))
    coef0, pi0 = experts.coef.copy(), np.exp(gate.evaluate(batch.XgT).log[:, 0])
    from mixexp.solvers import e_step_pass

    resp = e_step_pass(gate, experts, batch).resp
    w = resp * batch.sample_weight
    coef_b = np.stack(
        [np.linalg.solve((batch.XeT * wk) @ batch.XeT.T, (batch.XeT * wk) @ batch.y) for wk in w]
    )
    state = OnlineState(1000 / 200, 1000.0, gate, experts)
    online_em_step(gate, experts, batch, state, 0.6)
    gamma = step_size(6.0, 0.6)
    assert state.t == 6.0 and state.weight_seen == 1200.0
    assert_allclose(experts.coef, coef0 + gamma * (coef_b - coef0), rtol=1e-8, atol=1e-10)
    pi = np.exp(gate.evaluate(batch.XgT).log[:, 0])
    assert_allclose(pi, pi0 + gamma * (w.sum(axis=1) / 200 - pi0), rtol=1e-10)


def test_integer_weights_equal_repeated_rows():
    # W_B, gamma and the statistics are the same whether a row is repeated or weighted 2
    X, y = _simulate("gaussian", "softmax", n=1300, seed=5)
    base = _estimator("gaussian").fit(X[:1000], y[:1000])
    Xb, yb = X[1000:], y[1000:]
    w = np.where(np.arange(300) % 3 == 0, 2.0, 1.0)
    weighted = clone(base).fit(X[:1000], y[:1000]).partial_fit(Xb, yb, sample_weight=w)
    rep = np.repeat(np.arange(300), w.astype(int))
    repeated = clone(base).fit(X[:1000], y[:1000]).partial_fit(Xb[rep], yb[rep])
    assert_allclose(weighted.expert_coef_, repeated.expert_coef_, rtol=1e-10, atol=1e-12)
    assert_allclose(weighted.gate_coef_, repeated.gate_coef_, rtol=1e-8, atol=1e-10)


def test_classifier_classes():
    X, y = _simulate("classifier", "softmax", n=600)
    labels = np.array(["a", "b", "c"])[np.where(X[:, 0] > 1.5, 2, y)]
    est = MixtureOfExpertsClassifier(2, n_init=1, init="kmeans", random_state=0)
    with pytest.raises(ValueError, match="classes must be passed on the first call"):
        clone(est).partial_fit(X[:200], labels[:200])
    first = labels[:200] != "c"  # the first batch lacks class "c"
    est.partial_fit(X[:200][first], labels[:200][first], classes=["a", "b", "c"])
    assert_array_equal(est.classes_, ["a", "b", "c"])
    est.partial_fit(X[200:400], labels[200:400])
    assert est.predict_proba(X[:5]).shape == (5, 3)
    with pytest.raises(ValueError, match="not seen in fit"):
        est.partial_fit(X[400:], np.where(labels[400:] == "c", "d", labels[400:]))
    with pytest.raises(ValueError, match="differs from the classes"):
        est.partial_fit(X[400:], labels[400:], classes=["a", "b"])
    with pytest.raises(ValueError, match="labels not in classes"):
        clone(est).partial_fit(X[:200], labels[:200], classes=["a", "b"])


def test_bad_input():
    X, y = _simulate("gaussian", "softmax", n=400)
    est = _estimator("gaussian").partial_fit(X[:200], y[:200])
    with pytest.raises(ValueError, match="features"):
        est.partial_fit(np.column_stack([X[200:], X[200:]]), y[200:])
    with pytest.raises(ValueError, match="non-zero|positive sum"):
        est.partial_fit(X[200:], y[200:], sample_weight=np.zeros(200))
    with pytest.raises(ValueError, match="NaN"):
        est.partial_fit(np.where(np.arange(200)[:, None] == 3, np.nan, X[200:]), y[200:])
    poisson = _estimator("poisson").partial_fit(X[:200], np.abs(np.round(y[:200])))
    with pytest.raises(ValueError):
        poisson.partial_fit(X[200:], -np.ones(200))
    # the Gaussian gate models x: no online update, and hasattr says so
    gaussian_gate = MixtureOfExpertsRegressor(2, gate="gaussian")
    assert not hasattr(gaussian_gate, "partial_fit")
    with pytest.raises(AttributeError, match="partial_fit") as info:
        gaussian_gate.partial_fit(X, y)
    assert "gate='gaussian'" in str(info.value.__cause__)  # the reason, chained by available_if


def test_online_step_needs_flat_parameters_without_statistics():
    # a family without closed-form statistics in mixexp's sense and without get_flat/set_flat
    from .test_solvers import _NoGradientFamily

    X, y = _simulate("gaussian", "softmax", n=400)
    est = _estimator(_NoGradientFamily).partial_fit(X[:200], y[:200])  # the first call is a fit
    with pytest.raises(ValueError, match=r"_NoGradientFamily\.get_flat"):
        est.partial_fit(X[200:], y[200:])


def test_online_alpha_one_averages_batches_equally():
    # gamma_t = 1/t: the constant gate's proportions after the online steps are the mean of
    # the fit's proportions and the batches' mean responsibilities (each computed at the
    # parameters of its step), weighted by weight -- checked step by step
    X, y = _simulate("gaussian", "constant", n=1000, seed=6)
    est = _estimator("gaussian", gate="constant", online_alpha=1.0).fit(X[:200], y[:200])
    pis = [np.exp(est.gate_.evaluate(np.ones((1, 1))).log[:, 0])]
    means = []
    for start in range(200, 1000, 200):
        Xb, yb = X[start : start + 200], y[start : start + 200]
        means.append(est.predict_responsibilities(Xb, yb).mean(axis=0))
        est.partial_fit(Xb, yb)
    pi = np.exp(est.gate_.evaluate(np.ones((1, 1))).log[:, 0])
    assert_allclose(pi, (pis[0] + np.sum(means, axis=0)) / 5, rtol=1e-10)
