"""The expert-family and gate plug-in interfaces: a family defined only here, and the constant gate."""

import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose
from scipy import stats
from sklearn.exceptions import ConvergenceWarning

from mixexp import MixtureOfExpertsRegressor
from mixexp.experts import ExpertFamily


class PooledGaussianExperts(ExpertFamily):
    """Gaussian linear experts sharing one noise variance (defined only in this test).

    Written against the documented interface with plain numpy: the EM loop,
    restarts, scaling and prediction plumbing must work with no change.
    """

    kind = "pooled_gaussian"
    standardize_y = False

    def log_prob(self, XT, y):
        return stats.norm.logpdf(y[None, :], loc=self.coef @ XT, scale=np.sqrt(self.var))

    def m_step(self, XT, y, resp, sample_weight, stats=None):
        K, p = self.n_experts, XT.shape[0]
        coef = np.empty((K, p))
        rss = 0.0
        for k in range(K):
            w = resp[k] * sample_weight
            G = (XT * w) @ XT.T + 1e-12 * np.eye(p)
            coef[k] = np.linalg.solve(G, (XT * w) @ y)
            rss += w @ (y - coef[k] @ XT) ** 2
        self.coef = coef
        self.var = max(rss / sample_weight.sum(), self.var_floor)

    def mean(self, XT):
        return self.coef @ XT

    def n_parameters(self):
        return self.coef.size + 1

    def raw_params(self, scaling, intercept):
        return {**super().raw_params(scaling, intercept), "var": np.full(self.n_experts, self.var)}

    def set_raw_params(self, params, scaling, intercept):
        super().set_raw_params(params, scaling, intercept)
        self.var = float(params["var"][0])


def _two_lines(n, seed, var=(0.09, 0.09)):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-2, 2, size=(n, 1))
    gate = 1 / (1 + np.exp(-3 * X[:, 0]))
    z = rng.uniform(size=n) < gate
    sd = np.sqrt(np.where(z, var[1], var[0]))
    y = np.where(z, 1 + 2 * X[:, 0], -1 - X[:, 0]) + sd * rng.standard_normal(n)
    return X, y, z


@pytest.mark.parametrize("as_instance", [False, True])
def test_user_family_plugs_into_the_em_loop(as_instance):
    X, y, _ = _two_lines(4000, 0)
    family = PooledGaussianExperts(2) if as_instance else PooledGaussianExperts
    moe = MixtureOfExpertsRegressor(2, expert=family, random_state=0, n_init=2).fit(X, y)
    assert moe.converged_
    order = np.argsort(moe.expert_coef_[:, 0])
    # sampling error of each coefficient is ~ 0.3 / sqrt(2000 * var(x)) ~ 0.006
    assert_allclose(moe.expert_coef_[order], [[-1.0, -1.0], [1.0, 2.0]], atol=0.05)
    assert_allclose(moe.noise_variance_, 0.09, rtol=0.1)
    assert moe.n_parameters() == 2 * 2 + 1 + 2  # experts, pooled variance, gate
    # the same model as the built-in Gaussian family up to the pooled variance
    gauss = MixtureOfExpertsRegressor(2, random_state=0, n_init=2).fit(X, y)
    assert abs(moe.score_samples(X, y).mean() - gauss.score_samples(X, y).mean()) < 0.01
    if as_instance:
        assert family.coef is None  # the template instance is copied, never fitted


def test_user_family_monotone_em():
    X, y, _ = _two_lines(500, 1)
    moe = MixtureOfExpertsRegressor(
        2, expert=PooledGaussianExperts, warm_start=True, max_iter=1, random_state=1
    )
    bounds = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for _ in range(30):
            bounds.append(moe.fit(X, y).lower_bound_)
    assert np.all(np.diff(bounds) >= -1e-12 * np.abs(bounds[:-1]))


def test_expert_must_implement_the_interface():
    class NotAFamily:
        pass

    with pytest.raises(ValueError, match="expert"):
        MixtureOfExpertsRegressor(expert=NotAFamily()).fit(np.zeros((5, 1)), np.arange(5.0))
    with pytest.raises(ValueError, match="expert"):
        MixtureOfExpertsRegressor(expert="laplace").fit(np.zeros((5, 1)), np.arange(5.0))


def test_constant_gate_is_a_finite_mixture_of_regressions():
    rng = np.random.default_rng(0)
    n = 20_000
    X = rng.uniform(-2, 2, size=(n, 2))
    z = rng.uniform(size=n) < 0.3
    y = np.where(z, 1 + 2 * X[:, 0] - X[:, 1], -1 - X[:, 0] + 0.5 * X[:, 1]) + 0.5 * rng.standard_normal(n)
    moe = MixtureOfExpertsRegressor(2, gate="constant", gate_features=[0, 1], n_init=3, random_state=0)
    moe.fit(X, y)
    assert moe.gate_coef_.shape == (2, 1)  # gate_features is ignored: nothing depends on x
    gate = moe.predict_gate(X)
    assert np.ptp(gate, axis=0).max() == 0.0
    k = int(np.argmin(moe.expert_coef_[:, 0]))  # the -1 - x1 + 0.5 x2 expert
    # the proportion's sampling error is sqrt(0.3 * 0.7 / n) ~ 0.0032; 5 of them
    assert abs(gate[0, 1 - k] - 0.3) < 5 * np.sqrt(0.21 / n) * 1.2
    assert_allclose(moe.expert_coef_[k], [-1.0, -1.0, 0.5], atol=0.03)
    assert_allclose(moe.expert_coef_[1 - k], [1.0, 2.0, -1.0], atol=0.05)
    assert moe.n_parameters() == 1 + 2 * 3 + 2
    # gate="constant" gives the same model as a softmax gate without covariates
    soft = MixtureOfExpertsRegressor(2, gate_features=[], gate_penalty=0.0, n_init=3, random_state=0)
    soft.fit(X, y)
    assert_allclose(soft.score_samples(X, y).sum(), moe.score_samples(X, y).sum(), rtol=1e-7)


@pytest.mark.parametrize("seed", range(4))
def test_constant_gate_monotone(seed):
    X, y, _ = _two_lines(300, seed)
    moe = MixtureOfExpertsRegressor(
        3, gate="constant", warm_start=True, max_iter=1, init="random", random_state=seed
    )
    bounds = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for _ in range(30):
            bounds.append(moe.fit(X, y).lower_bound_)
    assert np.all(np.diff(bounds) >= -1e-12 * np.abs(bounds[:-1]))
