"""Cross-checks against R's flexmix (run only where Rscript has flexmix)."""

import numpy as np
import pytest

from mixexp import MixtureOfExpertsRegressor
from mixexp.datasets import make_moe_regression

from ._peers import flexmix_available, flexmix_gaussian_moe

pytestmark = [
    pytest.mark.flexmix,
    pytest.mark.skipif(not flexmix_available(), reason="Rscript with flexmix is not installed"),
]


@pytest.mark.parametrize("seed", [0, 1])
def test_reaches_flexmix_best_log_likelihood(seed):
    """Same data, same number of starts: mixexp's optimum is at least flexmix's."""
    X, y = make_moe_regression(2000, n_features=2, n_experts=3, random_state=seed)
    flex_ll, _ = flexmix_gaussian_moe(X, y, 3, nrep=3, tol=1e-9, seed=seed)
    moe = MixtureOfExpertsRegressor(3, n_init=3, gate_penalty=0.0, tol=1e-9, max_iter=5000, random_state=seed)
    moe.fit(X, y)
    ours = moe.score_samples(X, y).sum()
    assert flex_ll is not None
    # both stop on a tolerance of 1e-9 (relative for flexmix, per sample for us)
    assert ours >= flex_ll - 1e-6 * abs(flex_ll)


def test_constant_gate_reaches_flexmix_mixture_of_regressions():
    """gate='constant' is flexmix without a concomitant model (mixtools' regmixEM)."""
    rng = np.random.default_rng(3)
    X = rng.uniform(-2, 2, size=(1500, 1))
    z = rng.uniform(size=1500) < 0.35
    y = np.where(z, 1 + 2 * X[:, 0], -1 - X[:, 0]) + 0.4 * rng.standard_normal(1500)
    flex_ll, _ = flexmix_gaussian_moe(X, y, 2, nrep=3, tol=1e-9, seed=3, concomitant=False)
    moe = MixtureOfExpertsRegressor(2, gate="constant", n_init=3, tol=1e-9, max_iter=5000, random_state=0)
    ours = moe.fit(X, y).score_samples(X, y).sum()
    assert flex_ll is not None
    assert ours >= flex_ll - 1e-6 * abs(flex_ll)
