"""Predictive distributions: predict_variance/std/cdf/quantiles/interval/density and sample_y.

Statistical checks compare the closed forms with Monte Carlo draws from
``sample_y`` (an independent code path: the families draw with numpy's
normal/t/Poisson/gamma generators, not by inverting their cdf), with
tolerances of 5 Monte Carlo standard errors computed from the draws
themselves. With about 40 such comparisons a false alarm has probability
below 40 * 6e-7.
"""

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from scipy import integrate, special, stats
from sklearn.exceptions import NotFittedError

from mixexp import MixtureOfExpertsClassifier, MixtureOfExpertsRegressor
from mixexp.experts import ExpertFamily, GammaExperts, GaussianExperts, PoissonExperts, StudentTExperts

FAMILIES = ["gaussian", "student_t", "poisson", "gamma"]
#: rows the predictive distributions are checked at: each expert's side and the mixed middle
X_CHECK = np.array([[-1.5], [-0.3], [0.0], [0.4], [1.5]])
#: Monte Carlo draws per row
N_DRAWS = 40_000
#: Monte Carlo tolerance, in standard errors
Z = 5.0


def _simulate(family, n, seed):
    """Two experts, gate P(expert 1 | x) = 1 / (1 + exp(-3 x)), x ~ U(-2, 2)."""
    rng = np.random.default_rng(seed)
    X = rng.uniform(-2, 2, size=(n, 1))
    z = rng.uniform(size=n) < special.expit(3 * X[:, 0])
    eta = np.where(z, 1.0 + 0.5 * X[:, 0], 0.2 - 0.4 * X[:, 0])
    if family == "gaussian":
        y = 10.0 + 3.0 * eta + np.where(z, 0.5, 1.5) * rng.standard_normal(n)
    elif family == "student_t":
        y = 10.0 + 3.0 * eta + np.where(z, 0.5, 1.5) * rng.standard_t(10, size=n)
    elif family == "poisson":
        y = rng.poisson(np.exp(eta)).astype(float)
    else:
        shape = np.where(z, 4.0, 1.5)
        y = rng.gamma(shape, np.exp(eta) / shape)
    return X, y


def _expert(family):
    # degrees of freedom fixed at 10: the fourth moment, which the Monte Carlo standard
    # error of the variance needs, is finite for nu > 4
    return StudentTExperts(2, df_bounds=(10.0, 10.0)) if family == "student_t" else family


@pytest.fixture(scope="module")
def fitted():
    models = {}
    for family in FAMILIES:
        X, y = _simulate(family, 1500, seed=1)
        models[family] = MixtureOfExpertsRegressor(
            2, expert=_expert(family), init="kmeans", random_state=0
        ).fit(X, y)
    return models


@pytest.fixture(scope="module")
def draws(fitted):
    return {f: m.sample_y(X_CHECK, N_DRAWS, random_state=123) for f, m in fitted.items()}


# -- the families' maths against scipy.stats ----------------------------------------------
def _family_cases(rng):
    XT = np.vstack([np.ones(7), rng.normal(size=7)])
    coef = np.array([[0.5, 1.0], [2.0, -0.3]])
    gauss = GaussianExperts(2)
    gauss.coef, gauss.var = coef, np.array([0.5, 2.0])
    t = StudentTExperts(2)
    t.coef, t.var, t.df = coef, np.array([0.5, 2.0]), np.array([1.5, 7.0])
    pois = PoissonExperts(2)
    pois.coef = coef
    gam = GammaExperts(2)
    gam.coef, gam.shape = coef, np.array([0.7, 5.0])
    loc, mu = coef @ XT, np.exp(coef @ XT)
    sd = np.sqrt(np.array([0.5, 2.0]))[:, None]
    return XT, {
        "gaussian": (gauss, stats.norm(loc, sd)),
        "student_t": (t, stats.t(t.df[:, None], loc, sd)),
        "poisson": (pois, stats.poisson(mu)),
        "gamma": (gam, stats.gamma(gam.shape[:, None], scale=mu / gam.shape[:, None])),
    }


@pytest.mark.parametrize("family", FAMILIES)
def test_family_cdf_ppf_variance_match_scipy(family):
    rng = np.random.default_rng(0)
    XT, cases = _family_cases(rng)
    part, dist = cases[family]
    y = np.array([-1.0, 0.0, 0.5, 2.0, 3.0, 7.5, np.inf])
    assert_allclose(part.cdf(XT, y), dist.cdf(y), rtol=1e-12, atol=1e-300)
    q = np.array([0.0, 1e-9, 0.1, 0.5, 0.77, 1 - 1e-9, 1.0])
    expected = dist.ppf(q)
    if family == "poisson":
        expected[:, 0] = 0.0  # scipy gives -1 at q = 0; the support starts at 0
    assert_allclose(part.ppf(XT, q), expected, rtol=1e-10)
    var = dist.var()
    if family == "student_t":  # one expert has nu <= 2: infinite variance
        assert part.df.min() <= 2 < part.df.max()
        var = np.where(part.df[:, None] > 2, var, np.inf)
    assert_allclose(part.variance(XT), var, rtol=1e-12)


def test_poisson_ppf_is_the_smallest_integer_reaching_q():
    rng = np.random.default_rng(1)
    part = PoissonExperts(2)
    part.coef = np.array([[0.3, 2.0], [1.5, -0.5]])
    XT = np.vstack([np.ones(400), rng.normal(size=400)])
    q = rng.uniform(size=400)
    Q = part.ppf(XT, q)
    assert_array_equal(Q, np.floor(Q))
    assert np.all(part.cdf(XT, Q) >= q)
    assert np.all(part.cdf(XT, Q - 1) < q)


@pytest.mark.parametrize("family", FAMILIES)
def test_family_draws_follow_the_chosen_expert(family):
    # the draws of expert k at row i have the cdf of expert k (Kolmogorov-Smirnov on pooled PIT values)
    rng = np.random.default_rng(2)
    XT, cases = _family_cases(rng)
    part = cases[family][0]
    expert = rng.integers(0, 2, size=(7, 3000))
    y = part.sample(XT, expert, np.random.RandomState(0))
    assert y.shape == expert.shape
    F = part.cdf(np.repeat(XT, 3000, axis=1), y.ravel())
    pit = F[expert.ravel(), np.arange(y.size)]
    if family == "poisson":  # randomised PIT for a discrete law: uniform given the right law
        F_below = part.cdf(np.repeat(XT, 3000, axis=1), y.ravel() - 1)[expert.ravel(), np.arange(y.size)]
        pit = F_below + rng.uniform(size=y.size) * (pit - F_below)
    assert stats.kstest(pit, "uniform").pvalue > 1e-4


# -- moments, cdf and quantiles against Monte Carlo ------------------------------------------
@pytest.mark.parametrize("family", FAMILIES)
def test_mean_and_variance_match_monte_carlo(fitted, draws, family):
    model, s = fitted[family], draws[family]
    mean, var = model.predict(X_CHECK), model.predict_variance(X_CHECK)
    assert_allclose(model.predict_std(X_CHECK), np.sqrt(var))
    # SE of the sample mean sqrt(var / S); of the sample variance sqrt((mu4 - var^2) / S)
    assert np.all(np.abs(s.mean(axis=1) - mean) <= Z * np.sqrt(var / N_DRAWS))
    centred = s - s.mean(axis=1, keepdims=True)
    m4 = np.mean(centred**4, axis=1)
    se_var = np.sqrt((m4 - s.var(axis=1) ** 2) / N_DRAWS)
    assert np.all(np.abs(s.var(axis=1) - var) <= Z * se_var)


@pytest.mark.parametrize("family", FAMILIES)
def test_quantiles_and_cdf_match_monte_carlo(fitted, draws, family):
    model, s = fitted[family], draws[family]
    q = np.array([0.02, 0.25, 0.5, 0.8, 0.97])
    Q = model.predict_quantiles(X_CHECK, q)
    assert Q.shape == (len(X_CHECK), q.size)
    assert np.all(np.diff(Q, axis=1) >= 0)
    se = np.sqrt(q * (1 - q) / N_DRAWS)  # binomial SE of an empirical cdf at a fixed point
    reached = np.mean(s[:, :, None] <= Q[:, None, :], axis=1)
    assert np.all(reached >= q - Z * se)
    if family == "poisson":  # the smallest integer reaching q: one less does not reach it
        assert np.all(np.mean(s[:, :, None] <= Q[:, None, :] - 1, axis=1) <= q + Z * se)
    else:
        assert np.all(reached <= q + Z * se)
    # the distribution function at fixed points (the draws' quartiles)
    points = np.quantile(s, [0.1, 0.5, 0.9], axis=1).T
    F = model.predict_cdf(X_CHECK, points)
    empirical = np.mean(s[:, :, None] <= points[:, None, :], axis=1)
    assert np.all(np.abs(empirical - F) <= Z * np.sqrt(F * (1 - F) / N_DRAWS) + 1e-12)


@pytest.mark.parametrize("family", ["gaussian", "student_t", "gamma"])
def test_quantiles_and_cdf_are_inverse(fitted, family):
    model = fitted[family]
    q = np.array([1e-8, 1e-3, 0.1, 0.37, 0.5, 0.9, 0.999, 1 - 1e-8])
    Q = model.predict_quantiles(X_CHECK, q)
    assert_allclose(model.predict_cdf(X_CHECK, Q), np.broadcast_to(q, Q.shape), rtol=1e-10, atol=1e-15)
    y = model.sample_y(X_CHECK, 50, random_state=5)
    F = model.predict_cdf(X_CHECK, y)
    for i in range(len(X_CHECK)):
        assert_allclose(model.predict_quantiles(X_CHECK[i : i + 1], F[i])[0], y[i], rtol=1e-8)


def test_poisson_quantiles_and_cdf_are_inverse(fitted):
    model = fitted["poisson"]
    k = np.arange(0.0, 25.0)
    F = model.predict_cdf(X_CHECK, k[None, :])
    for i in range(len(X_CHECK)):
        Q = model.predict_quantiles(X_CHECK[i : i + 1], F[i])[0]
        assert_array_equal(Q[F[i] < 1.0], k[F[i] < 1.0])
    q = np.linspace(0.01, 0.99, 37)
    Q = model.predict_quantiles(X_CHECK, q)
    assert_array_equal(Q, np.floor(Q))
    assert np.all(model.predict_cdf(X_CHECK, Q) >= q)
    assert np.all(model.predict_cdf(X_CHECK, Q - 1) < q)


@pytest.mark.parametrize("family", FAMILIES)
def test_quantile_ends_are_the_support_ends(fitted, family):
    Q = fitted[family].predict_quantiles(X_CHECK, [0.0, 1.0])
    low = {"gaussian": -np.inf, "student_t": -np.inf, "poisson": 0.0, "gamma": 0.0}[family]
    assert np.all(Q[:, 0] == low)
    assert np.all(Q[:, 1] == np.inf)


def test_scalar_q_gives_one_column_and_interval_is_the_equal_tailed_quantiles(fitted):
    model = fitted["gaussian"]
    q = model.predict_quantiles(X_CHECK, 0.3)
    assert q.shape == (len(X_CHECK),)
    assert_allclose(q, model.predict_quantiles(X_CHECK, [0.3])[:, 0])
    interval = model.predict_interval(X_CHECK, alpha=0.2)
    assert interval.shape == (len(X_CHECK), 2)
    assert_allclose(interval, model.predict_quantiles(X_CHECK, [0.1, 0.9]))
    assert_allclose(model.predict_interval(X_CHECK), model.predict_quantiles(X_CHECK, [0.025, 0.975]))


@pytest.mark.parametrize("gate", ["constant", "gaussian"])
def test_predictive_distribution_with_other_gates(gate):
    # the predictive methods only need the gate's probabilities: the same checks with
    # x-independent weights and with a Gaussian gate
    X, y = _simulate("gaussian", 1000, seed=2)
    model = MixtureOfExpertsRegressor(2, gate=gate, init="kmeans", random_state=0).fit(X, y)
    s = model.sample_y(X_CHECK, N_DRAWS, random_state=0)
    mean, var = model.predict(X_CHECK), model.predict_variance(X_CHECK)
    assert np.all(np.abs(s.mean(axis=1) - mean) <= Z * np.sqrt(var / N_DRAWS))
    q = np.array([0.1, 0.5, 0.9])
    Q = model.predict_quantiles(X_CHECK, q)
    assert_allclose(model.predict_cdf(X_CHECK, Q), np.broadcast_to(q, Q.shape), rtol=1e-10)
    reached = np.mean(s[:, :, None] <= Q[:, None, :], axis=1)
    assert np.all(np.abs(reached - q) <= Z * np.sqrt(q * (1 - q) / N_DRAWS))


# -- densities --------------------------------------------------------------------------------
@pytest.mark.parametrize("family", ["gaussian", "student_t", "gamma"])
def test_density_integrates_to_one_and_to_the_cdf(fitted, family):
    model = fitted[family]
    for x in X_CHECK:
        x = x[None, :]
        cuts = model.predict_quantiles(x, [0.0, 0.01, 0.5, 0.99, 1.0])[0]
        total = 0.0
        for a, b, mass in zip(cuts[:-1], cuts[1:], [0.01, 0.49, 0.49, 0.01], strict=True):
            value, err = integrate.quad(lambda t, x=x: model.predict_density(x, [t])[0], a, b, epsabs=1e-11)
            assert err < 1e-8
            assert abs(value - mass) < 1e-7
            total += value
        assert abs(total - 1.0) < 1e-7


def test_poisson_pmf_sums_to_one_and_is_zero_off_the_integers(fitted):
    model = fitted["poisson"]
    k = np.arange(0.0, 200.0)
    pmf = model.predict_density(X_CHECK, k[None, :])
    assert_allclose(pmf.sum(axis=1), 1.0, rtol=1e-12)
    assert_allclose(np.cumsum(pmf, axis=1)[:, :30], model.predict_cdf(X_CHECK, k[None, :30]), rtol=1e-10)
    off = model.predict_density(X_CHECK, np.array([[-1.0, 0.5, 2.25, -np.inf, np.inf]]))
    assert np.all(off == 0.0)


@pytest.mark.parametrize("family", FAMILIES)
def test_density_at_matching_rows_is_exp_score_samples(fitted, draws, family):
    model = fitted[family]
    y = draws[family][:, 0]
    dens = model.predict_density(X_CHECK, y)
    assert dens.shape == (len(X_CHECK),)
    assert_allclose(dens, np.exp(model.score_samples(X_CHECK, y)), rtol=1e-10)
    # the three shapes of y agree
    grid = draws[family][:, :4]
    per_row = model.predict_density(X_CHECK, grid)
    assert_allclose(per_row[:, 0], dens)
    shared = model.predict_density(X_CHECK, grid[:1])
    assert_allclose(shared[0], per_row[0])


def test_gamma_density_is_zero_where_y_is_not_positive(fitted):
    model = fitted["gamma"]
    assert np.all(model.predict_density(X_CHECK, np.array([[-2.0, 0.0, -np.inf]])) == 0.0)
    assert np.all(model.predict_cdf(X_CHECK, np.array([[-2.0, 0.0]])) == 0.0)


# -- scale of y -----------------------------------------------------------------------------
def test_predictions_follow_an_affine_change_of_units():
    # Gaussian experts are fitted on a standardised y: the predictive distribution of
    # a + b y is that of y shifted and scaled, whatever the internal scale
    X, y = _simulate("gaussian", 1000, seed=3)
    base = MixtureOfExpertsRegressor(2, init="kmeans", random_state=0).fit(X, y)
    scaled = MixtureOfExpertsRegressor(2, init="kmeans", random_state=0).fit(X, 1e4 + 250.0 * y)
    q = [0.05, 0.5, 0.95]
    assert_allclose(
        scaled.predict_quantiles(X_CHECK, q), 1e4 + 250.0 * base.predict_quantiles(X_CHECK, q), rtol=1e-6
    )
    assert_allclose(scaled.predict_variance(X_CHECK), 250.0**2 * base.predict_variance(X_CHECK), rtol=1e-6)
    t = np.array([[8.0, 11.0, 14.0]])
    assert_allclose(
        scaled.predict_density(X_CHECK, 1e4 + 250.0 * t), base.predict_density(X_CHECK, t) / 250.0, rtol=1e-6
    )
    assert_allclose(
        scaled.predict_cdf(X_CHECK, 1e4 + 250.0 * t), base.predict_cdf(X_CHECK, t), rtol=1e-6, atol=1e-12
    )


def test_student_t_variance_is_infinite_for_two_or_fewer_degrees_of_freedom():
    X, y = _simulate("student_t", 600, seed=4)
    model = MixtureOfExpertsRegressor(
        2, expert=StudentTExperts(2, df_bounds=(1.5, 1.5)), init="kmeans", random_state=0
    )
    model.fit(X, y)
    assert np.all(np.isinf(model.predict_variance(X_CHECK)))
    assert np.all(np.isfinite(model.predict_interval(X_CHECK)))


# -- interval coverage on fresh data from the true model --------------------------------------
@pytest.mark.parametrize("family", ["gaussian", "gamma"])
def test_interval_coverage_on_fresh_data(family):
    # Fit on n_train rows of a known model, then cover fresh rows of the same model.
    # The fitted intervals' true coverage (from the true mixture cdf at their ends)
    # differs from 0.9 only by estimation error: the ends' quantile levels have SE about
    # sqrt(0.05 * 0.95 / n_train) ~ 0.0015 each, so 0.015 is ~7 SE of their sum.
    # The fresh rows' empirical coverage is binomial around that true coverage.
    X, y = _simulate(family, 20_000, seed=5)
    model = MixtureOfExpertsRegressor(2, expert=family, init="kmeans", random_state=0).fit(X, y)
    X_new, y_new = _simulate(family, 6000, seed=6)
    interval = model.predict_interval(X_new, alpha=0.1)
    g1 = special.expit(3 * X_new[:, 0])
    eta = np.column_stack([0.2 - 0.4 * X_new[:, 0], 1.0 + 0.5 * X_new[:, 0]])
    if family == "gaussian":
        true = [stats.norm(10 + 3 * eta[:, k], s) for k, s in enumerate([1.5, 0.5])]
    else:
        true = [stats.gamma(a, scale=np.exp(eta[:, k]) / a) for k, a in enumerate([1.5, 4.0])]

    def true_cdf(t):
        return (1 - g1) * true[0].cdf(t) + g1 * true[1].cdf(t)

    p_true = true_cdf(interval[:, 1]) - true_cdf(interval[:, 0])
    assert abs(p_true.mean() - 0.9) < 0.015
    covered = (interval[:, 0] <= y_new) & (y_new <= interval[:, 1])
    se = np.sqrt(np.sum(p_true * (1 - p_true))) / len(y_new)
    assert abs(covered.mean() - p_true.mean()) < Z * se


# -- sample_y ----------------------------------------------------------------------------------
@pytest.mark.parametrize("family", FAMILIES)
def test_sample_y_shape_and_determinism(fitted, family):
    model = fitted[family]
    a = model.sample_y(X_CHECK, 3, random_state=7)
    assert a.shape == (len(X_CHECK), 3)
    assert_array_equal(a, model.sample_y(X_CHECK, 3, random_state=7))
    assert_array_equal(a, model.sample_y(X_CHECK, 3, random_state=np.random.RandomState(7)))
    assert not np.array_equal(a, model.sample_y(X_CHECK, 3, random_state=8))
    assert model.sample_y(X_CHECK, random_state=0).shape == (len(X_CHECK), 1)
    if family == "poisson":
        assert_array_equal(a, np.floor(a))
    if family == "gamma":
        assert np.all(a > 0)


@pytest.mark.parametrize("family", FAMILIES)
def test_sample_y_picks_experts_by_the_gate(fitted, family):
    # for y drawn from the mixture at x, E[r_k(x, y)] = g_k(x): the posterior weight of
    # expert k averages to its gate weight (Bayes' rule), whatever the experts
    model = fitted[family]
    x = np.array([[-0.2]])
    s = model.sample_y(x, N_DRAWS, random_state=11)[0]
    resp = model.predict_responsibilities(np.repeat(x, N_DRAWS, axis=0), s)
    se = resp.std(axis=0) / np.sqrt(N_DRAWS)
    assert np.all(np.abs(resp.mean(axis=0) - model.predict_gate(x)[0]) <= Z * se)


class _InverseTransformGaussian(GaussianExperts):
    """Gaussian experts drawing through the base class's default (inverting ppf)."""

    sample = ExpertFamily.sample


def test_default_sample_inverts_ppf():
    X, y = _simulate("gaussian", 800, seed=8)
    model = MixtureOfExpertsRegressor(2, expert=_InverseTransformGaussian, init="kmeans", random_state=0).fit(
        X, y
    )
    s = model.sample_y(X_CHECK, N_DRAWS, random_state=3)
    mean, var = model.predict(X_CHECK), model.predict_variance(X_CHECK)
    assert np.all(np.abs(s.mean(axis=1) - mean) <= Z * np.sqrt(var / N_DRAWS))
    q = np.array([0.1, 0.5, 0.9])
    reached = np.mean(s[:, :, None] <= model.predict_quantiles(X_CHECK, q)[:, None, :], axis=1)
    assert np.all(np.abs(reached - q) <= Z * np.sqrt(q * (1 - q) / N_DRAWS))


class _MeanOnlyGaussian(ExpertFamily):
    """A family implementing only the fitting interface (no predictive methods)."""

    kind = "mean_only"

    def log_prob(self, XT, y):
        return stats.norm.logpdf(y, self.coef @ XT, 1.0)

    def m_step(self, XT, y, resp, sample_weight, stats=None):
        coef = []
        for r in resp:
            w = r * sample_weight
            coef.append(np.linalg.solve((XT * w) @ XT.T + 1e-9 * np.eye(XT.shape[0]), (XT * w) @ y))
        self.coef = np.array(coef)

    def mean(self, XT):
        return self.coef @ XT

    def n_parameters(self):
        return self.coef.size


@pytest.mark.parametrize(
    "method, args, missing",
    [
        ("predict_variance", (), "variance"),
        ("predict_cdf", (np.zeros(5),), "cdf"),
        ("predict_quantiles", (0.5,), "ppf"),
        ("sample_y", (), "ppf"),
    ],
)
def test_family_without_predictive_methods_says_what_is_missing(method, args, missing):
    X, y = _simulate("gaussian", 300, seed=9)
    model = MixtureOfExpertsRegressor(2, expert=_MeanOnlyGaussian, init="kmeans", random_state=0).fit(X, y)
    assert model.predict(X_CHECK).shape == (5,)
    with pytest.raises(NotImplementedError, match=missing):
        getattr(model, method)(X_CHECK, *args)


# -- the classifier --------------------------------------------------------------------------
def test_classifier_sample_y_draws_labels_from_predict_proba():
    rng = np.random.default_rng(10)
    X = rng.uniform(-3, 3, size=(1500, 1))
    logit = np.where(X[:, 0] < 0, 1 + 3 * X[:, 0], 1 - 3 * X[:, 0])
    y = np.where(rng.uniform(size=1500) < special.expit(logit), "yes", "no")
    clf = MixtureOfExpertsClassifier(2, init="kmeans", random_state=0).fit(X, y)
    x = np.array([[-0.3], [0.0], [2.0]])
    s = clf.sample_y(x, N_DRAWS, random_state=1)
    assert s.shape == (3, N_DRAWS)
    assert set(np.unique(s)) <= set(clf.classes_)
    p = clf.predict_proba(x)
    freq = np.stack([(s == c).mean(axis=1) for c in clf.classes_], axis=1)
    assert np.all(np.abs(freq - p) <= Z * np.sqrt(p * (1 - p) / N_DRAWS) + 1e-12)
    assert_array_equal(s, clf.sample_y(x, N_DRAWS, random_state=1))
    assert clf.sample_y(x, random_state=0).shape == (3, 1)
    with pytest.raises(ValueError, match="n_samples"):
        clf.sample_y(x, 0)


# -- bad input -------------------------------------------------------------------------------
@pytest.mark.parametrize("q", [-0.1, 1.5, np.nan, [0.2, 2.0], [[0.1, 0.2]], []])
def test_bad_q_is_rejected(fitted, q):
    with pytest.raises(ValueError, match="q"):
        fitted["gaussian"].predict_quantiles(X_CHECK, q)


def test_non_numeric_q_is_rejected(fitted):
    with pytest.raises(TypeError, match="q must be"):
        fitted["gaussian"].predict_quantiles(X_CHECK, "median")


@pytest.mark.parametrize(
    "alpha, error",
    [
        (0.0, ValueError),
        (1.0, ValueError),
        (1.5, ValueError),
        (-0.1, ValueError),
        ("0.05", TypeError),
        (True, TypeError),
    ],
)
def test_bad_alpha_is_rejected(fitted, alpha, error):
    with pytest.raises(error, match="alpha"):
        fitted["gaussian"].predict_interval(X_CHECK, alpha=alpha)


@pytest.mark.parametrize(
    "n_samples, error", [(0, ValueError), (-2, ValueError), (1.5, TypeError), (True, TypeError)]
)
def test_bad_n_samples_is_rejected(fitted, n_samples, error):
    with pytest.raises(error, match="n_samples"):
        fitted["gaussian"].sample_y(X_CHECK, n_samples)


@pytest.mark.parametrize("method", ["predict_density", "predict_cdf"])
@pytest.mark.parametrize(
    "y, message",
    [
        (np.zeros(3), "one value per row"),
        (np.zeros((2, 4)), "shape"),
        (np.zeros((5, 2, 2)), "shape"),
        (np.zeros((5, 0)), "shape"),
        (np.array([0.0, np.nan, 1.0, 2.0, 3.0]), "NaN"),
    ],
)
def test_bad_y_is_rejected(fitted, method, y, message):
    with pytest.raises(ValueError, match=message):
        getattr(fitted["gaussian"], method)(X_CHECK, y)


@pytest.mark.parametrize(
    "method, args",
    [
        ("predict_variance", ()),
        ("predict_std", ()),
        ("predict_quantiles", (0.5,)),
        ("predict_interval", ()),
        ("predict_density", (np.zeros(5),)),
        ("predict_cdf", (np.zeros(5),)),
        ("sample_y", ()),
    ],
)
def test_unfitted_and_wrong_width_X_are_rejected(fitted, method, args):
    with pytest.raises(NotFittedError):
        getattr(MixtureOfExpertsRegressor(), method)(X_CHECK, *args)
    with pytest.raises(ValueError, match="features"):
        getattr(fitted["gaussian"], method)(np.zeros((5, 3)), *args)
