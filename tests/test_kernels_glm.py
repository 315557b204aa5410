"""The GLM expert kernels (Poisson and Gamma, log link) against their numpy twins."""

import math

import numba
import numpy as np
import pytest
from numpy.testing import assert_allclose

from mixexp import _kernels as kernels
from mixexp._kernels._glm import LOG_FACTORIAL
from mixexp._kernels._kernels import BLOCK, MAX_CHUNKS

from . import _naive as naive

RTOL = 1e-12
FAMILIES = ["poisson", "gamma"]


def _problem(n, K, p, family, seed=0, zero_weights=False):
    rng = np.random.default_rng(seed)
    XT = np.vstack([np.ones(n), rng.standard_normal((p - 1, n))])
    coef = 0.4 * rng.standard_normal((K, p))
    labels = rng.integers(K, size=n)
    mu = np.exp(np.einsum("np,pn->n", coef[labels], XT))
    if family == "poisson":
        y = rng.poisson(mu).astype(float)
        y[: min(n, 3)] = [0.0, 1500.0, 1023.0][: min(n, 3)]  # a zero and counts beyond the table
    else:
        y = rng.gamma(2.0, mu / 2.0)
    shape = rng.uniform(0.3, 30.0, size=K)
    sw = rng.uniform(0.5, 2.0, size=n)
    if zero_weights:
        sw[rng.uniform(size=n) < 0.2] = 0.0
    resp = rng.dirichlet(np.ones(K), size=n).T.copy()
    if K > 1:
        resp[0, : n // 3] = 0.0  # exact zeros in the posterior
        resp /= resp.sum(axis=0)
    return XT, y, coef, shape, sw, resp


# the last shape has more blocks than chunks, so chunks add several blocks each
SHAPES = [
    (1, 1, 1), (7, 2, 2), (BLOCK + 3, 3, 3), (2 * BLOCK + 17, 5, 4), (300, 1, 3),
    (BLOCK * (MAX_CHUNKS + 3) + 5, 3, 2),
]


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("n,K,p", SHAPES)
def test_glm_log_prob(n, K, p, family):
    XT, y, coef, shape, _, _ = _problem(n, K, p, family)
    got = kernels.glm_log_prob(XT, y, coef, family, shape)
    ref = naive.glm_log_prob(XT, y, coef, family, shape)
    # log-densities are sums of terms of order |y eta| + mu: compare on that scale
    assert_allclose(got, ref, rtol=RTOL, atol=1e-13 * (1.0 + np.abs(y * (coef @ XT)).max()))


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("n,K,p", SHAPES)
@pytest.mark.parametrize("zero_weights", [False, True])
def test_glm_stats(n, K, p, family, zero_weights):
    XT, y, coef, _, sw, resp = _problem(n, K, p, family, zero_weights=zero_weights)
    q, grad, hess, nk, log_y_sum = kernels.glm_stats(XT, y, resp, sw, coef, family, log_y=family == "gamma")
    ref = naive.glm_stats(XT, y, resp, sw, coef, family)
    scale = np.abs(ref[0]).max() + n
    assert_allclose(q, ref[0], rtol=RTOL, atol=1e-13 * scale)
    assert_allclose(grad, ref[1], rtol=RTOL, atol=1e-13 * scale)
    assert_allclose(hess, ref[2], rtol=RTOL, atol=1e-13 * scale)
    assert_allclose(nk, ref[3], rtol=RTOL)
    if family == "gamma":
        assert_allclose(log_y_sum, ref[4], rtol=RTOL, atol=1e-13 * scale)
    else:
        assert log_y_sum is None
    assert np.array_equal(hess, np.swapaxes(hess, 1, 2))


@pytest.mark.parametrize("family", FAMILIES)
def test_glm_stats_inactive_experts_and_objective_only(family):
    XT, y, coef, _, sw, resp = _problem(2 * BLOCK + 5, 4, 3, family, zero_weights=True)
    active = np.array([True, False, True, False])
    q, grad, hess, nk, log_y_sum = kernels.glm_stats(XT, y, resp, sw, coef, family, active=active)
    ref = naive.glm_stats(XT, y, resp, sw, coef, family, active=active)
    for a, b in zip((q, grad, hess, nk), ref[:4], strict=True):
        assert_allclose(a, b, rtol=RTOL, atol=1e-9)
        assert np.all(a[~active] == 0.0)
    assert log_y_sum is None
    # the objective alone is the same number as with the derivatives
    q_only, g_none, h_none, nk_none, _ = kernels.glm_stats(
        XT, y, resp, sw, coef, family, active=active, derivatives=False
    )
    assert g_none is None and h_none is None and nk_none is None
    assert np.array_equal(q_only, q)


@pytest.mark.parametrize("family", FAMILIES)
def test_glm_stats_rows_without_weight_ignore_overflow(family):
    """A row of zero weight adds exactly zero, even where its terms overflow."""
    XT, y, coef, _, sw, resp = _problem(50, 2, 2, family)
    coef[:, 1] = [0.5, -0.5]
    XT[1, 7] = 1e308  # y eta and y exp(-eta) are +-inf there
    y[7] = 1000.0
    sw[7] = 0.0
    q, grad, hess, _, _ = kernels.glm_stats(XT, y, resp, sw, coef, family)
    keep = np.arange(50) != 7
    ref = naive.glm_stats(XT[:, keep], y[keep], resp[:, keep], sw[keep], coef, family)
    assert np.all(np.isfinite(q)) and np.all(np.isfinite(grad)) and np.all(np.isfinite(hess))
    assert_allclose(q, ref[0], rtol=RTOL)
    assert_allclose(grad, ref[1], rtol=RTOL, atol=1e-12)
    assert_allclose(hess, ref[2], rtol=RTOL, atol=1e-12)


def test_log_factorial_table_and_beyond():
    """Counts read log(y!) from the table below its size and from lgamma above it."""
    assert LOG_FACTORIAL.size == 1024
    y = np.array([0.0, 1.0, 2.0, 10.0, 1023.0, 1024.0, 5000.0])
    XT = np.zeros((1, y.size))
    lp = kernels.glm_log_prob(XT, y, np.zeros((1, 1)), "poisson")[0]  # mu = 1: -1 - log(y!)
    assert_allclose(lp, [-1.0 - math.lgamma(v + 1.0) for v in y], rtol=1e-15)


def test_glm_wrappers_check_their_inputs():
    XT = np.ones((2, 5))
    y = np.ones(5)
    with pytest.raises(ValueError, match="unknown GLM family"):
        kernels.glm_log_prob(XT, y, np.zeros((1, 2)), "binomial")
    with pytest.raises(ValueError, match="needs shape"):
        kernels.glm_log_prob(XT, y, np.zeros((1, 2)), "gamma")
    with pytest.raises(ValueError, match="disagree in shape"):
        kernels.glm_log_prob(XT, y, np.zeros((1, 3)), "poisson")
    with pytest.raises(ValueError, match="disagree in shape"):
        kernels.glm_stats(XT, y, np.ones((2, 4)), y, np.zeros((2, 2)), "poisson")


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs 2 Numba threads")
@pytest.mark.parametrize("family", FAMILIES)
def test_glm_kernels_identical_for_1_and_2_threads(family):
    XT, y, coef, shape, sw, resp = _problem(5 * BLOCK + 11, 4, 3, family, zero_weights=True)
    results = []
    before = numba.get_num_threads()
    try:
        for threads in (1, 2):
            numba.set_num_threads(threads)
            results.append(
                (
                    kernels.glm_log_prob(XT, y, coef, family, shape),
                    *kernels.glm_stats(XT, y, resp, sw, coef, family, log_y=family == "gamma"),
                )
            )
    finally:
        numba.set_num_threads(before)
    for a, b in zip(*results, strict=True):
        assert (a is None and b is None) or np.array_equal(a, b)
