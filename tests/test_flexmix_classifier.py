"""MixtureOfExpertsClassifier against R's flexmix (run only where Rscript has flexmix).

The data come from the 2-expert model of tests/test_classifier.py; both sides
fit the same softmax-gated model by unpenalised maximum likelihood from the same
number of starts (k-means starts here, random starts in flexmix) and stop on a
tolerance of 1e-9 (relative for flexmix, per sample for mixexp).
"""

import warnings

import pytest
from sklearn.exceptions import ConvergenceWarning

from mixexp import MixtureOfExpertsClassifier

from ._peers import flexmix_available, flexmix_classifier_moe
from .test_classifier import BINARY, GATE, THREE, make_data

pytestmark = [
    pytest.mark.flexmix,
    pytest.mark.skipif(not flexmix_available(), reason="Rscript with flexmix is not installed"),
]


def _best_of_starts(X, y, n_init, seed):
    clf = MixtureOfExpertsClassifier(
        2, n_init=n_init, gate_penalty=0.0, expert_penalty=0.0, tol=1e-9, max_iter=5000, random_state=seed
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, y)
    return clf.score_samples(X, y).sum()


@pytest.mark.parametrize("seed", [0, 1])
def test_binomial_experts_reach_flexmix_best_log_likelihood(seed):
    """FLXMRglm(family = "binomial") experts on cbind(y, 1 - y), FLXPmultinom gate."""
    X, y, _ = make_data(2000, GATE, BINARY, seed)
    flex_ll, _ = flexmix_classifier_moe(X, y, 2, nrep=3, tol=1e-9, seed=seed, family="binomial")
    assert flex_ll is not None
    ours = _best_of_starts(X, y, 3, seed)
    assert ours >= flex_ll - 1e-6 * abs(flex_ll)


@pytest.mark.parametrize("seed", [0, 1])
def test_multinomial_experts_reach_flexmix_best_log_likelihood(seed):
    """FLXMRmultinom() experts (nnet's multinomial logit) on 3 classes, FLXPmultinom gate.

    Mixtures of multinomial logistic experts have many local optima: on some
    other data sets of this model mixexp's 3 starts and flexmix's 3 starts
    reach different optima, either side higher.
    """
    X, y, _ = make_data(5000, GATE, THREE, seed)
    flex_ll, _ = flexmix_classifier_moe(X, y, 2, nrep=3, tol=1e-9, seed=seed, family="multinom")
    assert flex_ll is not None
    ours = _best_of_starts(X, y, 3, seed)
    assert ours >= flex_ll - 1e-6 * abs(flex_ll)
