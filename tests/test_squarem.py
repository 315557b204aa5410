"""solver="squarem": EM accelerated by squared extrapolation (mixexp.solvers.run_squarem)."""

import copy
import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning

from mixexp import MixtureOfExpertsClassifier, MixtureOfExpertsRegressor
from mixexp.solvers import Design, get_flat_params, run_em, run_squarem, set_flat_params
from mixexp.solvers._gradient import flat_bounds
from mixexp.solvers._squarem import STEP_FACTOR, STEP_MAX0, squarem_step
from mixexp.theory import aistats2024_model, neurips2023_model
from mixexp.theory.convergence import _CountingExperts  # wraps experts.log_prob, counts the calls

from .test_solvers import _estimator, _NoGradientFamily, _simulate


def _setup(est, X, y):
    """Copies of the parts at the start of a fit, and the Design.

    A warm estimator (``_warm``) is at its start already; another is fitted
    for one EM step from its own (seeded) start.
    """
    if not (est.warm_start and hasattr(est, "gate_")):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            est = clone(est).set_params(max_iter=1).fit(X, y)
    data = Design(*est._design(X), est._scaled_target(y), np.ones(len(y)))
    return copy.deepcopy(est.gate_), copy.deepcopy(est.experts_), data


def _reference_squarem(gate, experts, data, max_iter, tol, max_decrease=1.0):
    """SQUAREM written out plainly: one ``run_em`` call per EM map, the objective from its passes.

    The scheme of :mod:`mixexp.solvers._squarem` (S3 steps clipped to [1, s_max],
    s_max times/over 4 on acceptance/rejection at s_max, fallback to theta2 when
    the stabilised point is below theta0's objective, less max_decrease nats of the
    total, convergence when one EM
    step changes the objective by less than tol, plain EM when fewer than 4 EM
    steps are left). Points are kept as copies of the parts; only extrapolated
    points and fallbacks go through ``set_flat``, as in the solver.
    Returns (theta, lower_bound, n_iter, converged, (accepted, rejected)).
    """

    def em_map(parts):
        new = copy.deepcopy(parts)
        run = run_em(*new, data, 1, 0.0)
        return new, run.lower_bounds[0], run.lower_bound

    def at(theta):
        parts = copy.deepcopy((gate, experts))
        set_flat_params(*parts, theta)
        return parts

    lower, upper = flat_bounds(gate, experts)
    n_iter, accepted, rejected, step_max = 0, 0, 0, STEP_MAX0
    points, values = [(gate, experts)], [None]

    def done(converged):
        return get_flat_params(*points[-1]), values[-1], n_iter, converged, (accepted, rejected)

    def plain_step():
        nonlocal n_iter
        new, before, after = em_map(points[-1])
        values[-1] = before if values[-1] is None else values[-1]
        n_iter += 1
        points.append(new)
        values.append(after)
        return abs(after - before) < tol

    while True:
        # two plain EM steps (the start, or after a fallback)
        for _ in range(2):
            if n_iter >= max_iter:
                return done(False)
            if plain_step():
                return done(True)
        while True:
            if max_iter - n_iter < 4:  # plain EM to the end of the budget
                while n_iter < max_iter:
                    if plain_step():
                        return done(True)
                return done(False)
            t0, t1, t2 = (get_flat_params(*p) for p in points[-3:])
            l0, l2 = values[-3], values[-1]
            theta, s = squarem_step(t0, t1, t2, step_max)
            new, at_theta, after = em_map(at(np.clip(theta, lower, upper)))
            n_iter += 1
            if not after >= l0 - max_decrease / data.sample_weight.sum():
                rejected += 1
                if s >= step_max:
                    step_max = max(STEP_MAX0, step_max / STEP_FACTOR)
                points, values = [at(t2)], [l2]
                break
            accepted += 1
            if s >= step_max:
                step_max *= STEP_FACTOR
            points, values = [new], [after]
            if abs(after - at_theta) < tol:
                return done(True)
            for _ in range(2):
                if plain_step():
                    return done(True)


def _overfitted_gaussian_gate(n=3000, K=5, seed=0):
    truth = aistats2024_model(2, "I")
    X, y = truth.sample(n, random_state=seed)
    start = truth.near_truth(K, n, random_state=seed + 1)[0]
    return X, y, start


def _overfitted_softmax(n=3000, K=3, seed=0):
    truth = neurips2023_model()
    X, y = truth.sample(n, random_state=seed)
    start = truth.near_truth(K, n, random_state=seed + 1)[0]
    return X, y, start


def _warm(start, X, y, **params):
    """An estimator set at ``start``; fitting it runs from exactly there."""
    est = start.to_estimator(X, y, gate_penalty=0.0, **params)
    return est.set_params(warm_start=True)


# -- the scheme --------------------------------------------------------------------------


def test_squarem_step_is_the_s3_extrapolation():
    rng = np.random.default_rng(0)
    t0, t1, t2 = rng.normal(size=(3, 7))
    r, v = t1 - t0, t2 - 2 * t1 + t0
    s = np.linalg.norm(r) / np.linalg.norm(v)
    for step_max in (1.0, s / 2, 4 * s):
        theta, used = squarem_step(t0, t1, t2, step_max)
        expect = min(max(s, 1.0), step_max)
        assert used == pytest.approx(expect)
        assert_allclose(theta, t0 + 2 * expect * r + expect**2 * v)
    # a step of length 1 is EM's second point; no curvature (v = 0) gives it too
    assert_allclose(squarem_step(t0, t1, t2, 1.0)[0], t2)
    line = squarem_step(np.zeros(3), np.ones(3), np.full(3, 2.0), 64.0)
    assert_array_equal(line[0], np.full(3, 2.0))
    assert line[1] == 1.0


@pytest.mark.parametrize(
    "problem", ["gaussian_gate_overfitted", "softmax_overfitted", "softmax_overlap"]
)
def test_squarem_matches_its_plain_reference(problem):
    # the same EM maps, extrapolations, fallbacks and stopping as a plain rewrite
    if problem == "gaussian_gate_overfitted":
        X, y, start = _overfitted_gaussian_gate(n=1500)
        est = _warm(start, X, y, tol=1e-9, max_iter=400)
    elif problem == "softmax_overfitted":
        X, y, start = _overfitted_softmax(n=1500)
        est = _warm(start, X, y, tol=1e-9, max_iter=400)
    else:
        X, y = _simulate("gaussian", "softmax", seed=3)
        y = y * 0.2  # experts that overlap: EM is slow
        est = _estimator("gaussian", tol=1e-10, max_iter=400)
    gate, experts, data = _setup(est, X, y)
    ref_parts = copy.deepcopy((gate, experts))
    fast = run_squarem(gate, experts, data, est.max_iter, est.tol)
    theta, value, n_iter, converged, counts = _reference_squarem(*ref_parts, data, est.max_iter, est.tol)
    assert (fast.n_iter, fast.converged, fast.extrapolations) == (n_iter, converged, counts)
    assert counts[0] > 0  # it extrapolated
    assert_allclose(fast.lower_bound, value, rtol=1e-12)
    assert_allclose(get_flat_params(gate, experts), theta, rtol=1e-9, atol=1e-11)
    # one objective per EM step, ending at the returned parameters
    assert len(fast.lower_bounds) == fast.n_iter + 1
    assert fast.lower_bounds[-1] == fast.lower_bound
    assert fast.lower_bound > fast.lower_bounds[0]


def test_squarem_falls_back_when_an_extrapolation_loses():
    # an over-fitted run meets rejected extrapolations (9 of 99 here, with every cycle kept
    # monotone); the reference agrees
    X, y, start = _overfitted_softmax(n=1500, K=3, seed=0)
    est = _warm(start, X, y, tol=1e-10, max_iter=2000)
    gate, experts, data = _setup(est, X, y)
    ref_parts = copy.deepcopy((gate, experts))
    fast = run_squarem(gate, experts, data, est.max_iter, est.tol, max_decrease=0.0)
    theta, value, n_iter, converged, counts = _reference_squarem(
        *ref_parts, data, est.max_iter, est.tol, max_decrease=0.0
    )
    assert fast.extrapolations == counts and fast.extrapolations[1] > 0
    assert (fast.n_iter, fast.converged) == (n_iter, converged) and converged
    assert_allclose(fast.lower_bound, value, rtol=1e-12)
    assert_allclose(get_flat_params(gate, experts), theta, rtol=1e-9, atol=1e-11)
    assert fast.lower_bound > fast.lower_bounds[0]


def test_max_decrease_accepts_small_losses():
    # the run above with the default, the R package's objfn.inc = 1: extrapolations that lose
    # less than one nat of the total log-likelihood are kept; the reference agrees step for step
    X, y, start = _overfitted_softmax(n=1500, K=3, seed=0)
    est = _warm(start, X, y, tol=1e-10, max_iter=2000)
    gate, experts, data = _setup(est, X, y)
    parts, ref_parts = copy.deepcopy((gate, experts)), copy.deepcopy((gate, experts))
    strict = run_squarem(*parts, data, est.max_iter, est.tol, max_decrease=0.0)
    loose = run_squarem(gate, experts, data, est.max_iter, est.tol)
    theta, value, n_iter, converged, counts = _reference_squarem(
        *ref_parts, data, est.max_iter, est.tol, max_decrease=1.0
    )
    assert (loose.n_iter, loose.converged, loose.extrapolations) == (n_iter, converged, counts)
    assert_allclose(loose.lower_bound, value, rtol=1e-12)
    assert_allclose(get_flat_params(gate, experts), theta, rtol=1e-9, atol=1e-11)
    # fewer rejections (none against 9 here; the passes are 437 against 406, not always fewer),
    # to the same maximum (within a few tol-sized steps)
    assert loose.extrapolations[1] < strict.extrapolations[1]
    assert abs(loose.lower_bound - strict.lower_bound) < 1e-7
    for bad in (-1.0, np.inf, np.nan, True, "1"):
        with pytest.raises(ValueError, match="max_decrease"):
            run_squarem(gate, experts, data, 10, 0.0, max_decrease=bad)


def test_extrapolated_points_are_clipped_to_the_bounds(monkeypatch):
    # an extrapolation past the variance floors is set at the floors, not below them
    import mixexp.solvers._squarem as module

    X, y, start = _overfitted_softmax(n=1000)
    est = _warm(start, X, y, tol=1e-9, max_iter=60, reg_covar=1e-3)
    gate, experts, data = _setup(est, X, y)
    lower, upper = flat_bounds(gate, experts)
    assert np.isfinite(lower).sum() == 3  # the three log-variances

    def far_step(theta0, theta1, theta2, step_max):
        theta, s = squarem_step(theta0, theta1, theta2, step_max)
        theta[np.isfinite(lower)] = -50.0  # variances of exp(-50)
        return theta, s

    seen = []

    def spy(gate, experts, theta):
        seen.append(np.array(theta))
        set_flat_params(gate, experts, theta)

    monkeypatch.setattr(module, "squarem_step", far_step)
    monkeypatch.setattr(module, "set_flat_params", spy)
    result = run_squarem(gate, experts, data, est.max_iter, est.tol)
    assert seen and result.extrapolations[0] + result.extrapolations[1] > 0
    assert all(np.all(theta >= lower) for theta in seen)
    assert np.all(experts.var >= np.exp(lower[np.isfinite(lower)]) * (1 - 1e-12))


def test_an_extrapolated_point_that_is_not_a_model_is_rejected(monkeypatch):
    # a far step can make a Gaussian gate's covariance numerically singular, so that setting
    # the point raises: that is a rejection (back to EM's point), not the end of the fit
    import mixexp.solvers._squarem as module

    X, y, start = _overfitted_gaussian_gate(n=1500)
    est = _warm(start, X, y, tol=1e-9, max_iter=400)
    gate, experts, data = _setup(est, X, y)
    plain = run_squarem(*copy.deepcopy((gate, experts)), data, est.max_iter, est.tol)
    calls, seen = [], []

    def failing_first(gate, experts, theta):
        calls.append(np.array(theta))
        if len(calls) == 1:
            bad = np.array(theta)
            bad[: gate.get_flat().size] = np.nan
            try:  # leave the parts half-set, as a failing set_flat does
                with np.errstate(invalid="ignore"):
                    set_flat_params(gate, experts, bad)
            except ValueError:
                pass
            raise ValueError("A Gaussian gate covariance is not positive definite")
        set_flat_params(gate, experts, theta)

    def hook(n_iter, lower_bound):
        seen.append(get_flat_params(gate, experts))

    monkeypatch.setattr(module, "set_flat_params", failing_first)
    result = run_squarem(gate, experts, data, est.max_iter, est.tol, hook=hook)
    # the first extrapolation (from the start and two EM steps) failed; the next call set
    # EM's own second point back, with no pass in between
    assert_array_equal(calls[1], seen[2])
    assert result.extrapolations[1] >= 1 and result.converged
    assert np.all(np.isfinite(get_flat_params(gate, experts)))
    # and the run still reaches the plain run's maximum
    assert abs(result.lower_bound - plain.lower_bound) < 1e-6


# -- the estimator ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "family, gate",
    [
        ("gaussian", "softmax"),
        ("gaussian", "constant"),
        ("gaussian", "gaussian"),
        ("student_t", "softmax"),
        ("poisson", "softmax"),
        ("gamma", "constant"),
        ("classifier", "softmax"),
    ],
)
def test_squarem_reaches_the_em_optimum(family, gate):
    X, y = _simulate(family, "softmax" if gate == "gaussian" else gate)
    em = _estimator(family, gate=gate, tol=1e-11, max_iter=20000).fit(X, y)
    sq = _estimator(family, gate=gate, solver="squarem", tol=1e-11, max_iter=20000).fit(X, y)
    assert em.converged_ and sq.converged_
    # the same maximum from the same start: objectives within a few tol-sized EM steps
    assert abs(sq.lower_bound_ - em.lower_bound_) < 1e-7
    assert_allclose(sq.predict(X), em.predict(X), atol=1e-3 * np.abs(em.predict(X)).max())
    assert sq.lower_bounds_.shape == (sq.n_iter_ + 1,)
    assert sq.lower_bounds_[-1] == pytest.approx(sq.lower_bound_)


@pytest.mark.parametrize("problem", ["gaussian_gate", "softmax"])
def test_squarem_needs_far_fewer_em_steps_on_overfitted_models(problem):
    # over-fitted models are where EM crawls (copies of an atom separate slowly)
    X, y, start = _overfitted_gaussian_gate() if problem == "gaussian_gate" else _overfitted_softmax()
    em = _warm(start, X, y, tol=1e-10, max_iter=20000).fit(X, y)
    sq = _warm(start, X, y, tol=1e-10, max_iter=20000, solver="squarem").fit(X, y)
    assert em.converged_ and sq.converged_
    assert 3 * sq.n_iter_ < em.n_iter_
    # and it ends no lower (the same maximum or a higher one)
    assert sq.lower_bound_ >= em.lower_bound_ - 1e-8


def test_squarem_max_decrease_reaches_the_fit():
    X, y, start = _overfitted_softmax()
    params = dict(tol=1e-10, max_iter=20000, solver="squarem")
    strict = _warm(start, X, y, squarem_max_decrease=0.0, **params).fit(X, y)
    loose = _warm(start, X, y, **params).fit(X, y)
    assert loose.squarem_max_decrease == 1.0
    assert strict.converged_ and loose.converged_
    assert loose.n_iter_ < strict.n_iter_
    assert abs(loose.lower_bound_ - strict.lower_bound_) < 1e-7
    # the other solvers ignore it
    em = _warm(start, X, y, tol=1e-6, max_iter=500).fit(X, y)
    em_loose = _warm(start, X, y, tol=1e-6, max_iter=500, squarem_max_decrease=5.0).fit(X, y)
    assert_array_equal(em.lower_bounds_, em_loose.lower_bounds_)
    with pytest.raises(ValueError, match="squarem_max_decrease"):
        _warm(start, X, y, solver="squarem", squarem_max_decrease=-1.0).fit(X, y)


def test_squarem_convergence_warning_and_budget():
    X, y, start = _overfitted_softmax(n=1000)
    with pytest.warns(ConvergenceWarning, match="SQUAREM run"):
        est = _warm(start, X, y, tol=0.0, max_iter=10, solver="squarem").fit(X, y)
    assert est.n_iter_ == 10 and not est.converged_


def test_squarem_keeps_l1_zeros():
    # the returned point is an EM step's output, so the proximal gate step's zeros stay
    rng = np.random.default_rng(7)
    X = rng.normal(size=(600, 4))
    z = X[:, 0] > 0
    y = np.where(z, 1 + 2 * X[:, 1], -1 - X[:, 1]) + 0.3 * rng.normal(size=600)
    params = dict(gate_penalty=0.05, gate_l1_ratio=1.0, tol=1e-10, max_iter=5000, random_state=0)
    em = MixtureOfExpertsRegressor(2, **params).fit(X, y)
    sq = MixtureOfExpertsRegressor(2, solver="squarem", **params).fit(X, y)
    assert_array_equal(sq.gate_coef_ == 0, em.gate_coef_ == 0)
    assert np.sum(sq.gate_coef_ == 0) >= 2
    assert abs(sq.lower_bound_ - em.lower_bound_) < 1e-7


def test_squarem_classifier_pickles_and_clones():
    import pickle

    X, y = _simulate("classifier", "softmax")
    est = MixtureOfExpertsClassifier(2, solver="squarem", random_state=0).fit(X, y)
    again = pickle.loads(pickle.dumps(est))
    assert_array_equal(again.predict_proba(X), est.predict_proba(X))
    assert clone(est).get_params()["solver"] == "squarem"


def test_squarem_needs_the_flat_interface():
    X, y = _simulate("gaussian", "softmax")
    with pytest.raises(ValueError, match=r"solver='squarem'.*_NoGradientFamily\.get_flat.*set_flat"):
        _estimator(_NoGradientFamily, solver="squarem").fit(X, y)


def test_passes_over_the_data_are_counted():
    # Student-t experts have no fused pass: each pass calls log_prob once, which counts them
    # independently of the solvers' own bookkeeping; three experts for two make EM slow and
    # reject some extrapolations (36 of 78 here)
    X, y = _simulate("student_t", "softmax", seed=2)
    est = MixtureOfExpertsRegressor(3, expert="student_t", init="kmeans", random_state=2, tol=1e-12,
                                    max_iter=5000)
    gate, experts, data = _setup(est, X, y)
    start = copy.deepcopy((gate, experts))
    counter = _CountingExperts(experts)
    em = run_em(gate, experts, data, est.max_iter, est.tol)
    assert em.n_passes == counter.count == em.n_iter + 1
    gate, experts = start
    counter = _CountingExperts(experts)
    sq = run_squarem(gate, experts, data, est.max_iter, est.tol)
    assert sq.converged and min(sq.extrapolations) > 0
    assert sq.n_passes == counter.count
    # each inner run makes one pass more than its EM steps: the first run, every extrapolated
    # run, and the plain run after each fallback
    accepted, rejected = sq.extrapolations
    assert sq.n_passes == sq.n_iter + 1 + accepted + 2 * rejected
    # the extra passes at extrapolated points are repaid: fewer passes in all than EM
    assert sq.n_passes < em.n_passes
