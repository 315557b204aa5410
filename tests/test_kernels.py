"""Every Numba kernel against its plain numpy/scipy twin in tests/_naive.py."""

import numba
import numpy as np
import pytest
from numpy.testing import assert_allclose

from mixexp import _kernels as kernels
from mixexp._kernels._kernels import BLOCK, MAX_CHUNKS

from . import _naive as naive

RTOL = 1e-12


def _problem(n, K, p, seed=0, zero_weights=False):
    rng = np.random.default_rng(seed)
    XT = np.vstack([np.ones(n), rng.standard_normal((p - 1, n))])
    y = rng.standard_normal(n) * 2
    coef_g = rng.standard_normal((K, p))
    coef_g[0] = 0.0
    coef_e = rng.standard_normal((K, p))
    var = rng.uniform(0.2, 2.0, size=K)
    sw = rng.uniform(0.5, 2.0, size=n)
    if zero_weights:
        sw[rng.uniform(size=n) < 0.2] = 0.0
    resp = rng.dirichlet(np.ones(K), size=n).T.copy()
    if K > 1:
        resp[0, : n // 3] = 0.0  # exact zeros in the posterior
        resp /= resp.sum(axis=0)
    return XT, y, coef_g, coef_e, var, sw, resp


# the last shape has more blocks than chunks, so chunks add several blocks each
SHAPES = [
    (1, 1, 1), (7, 2, 2), (BLOCK + 3, 3, 3), (2 * BLOCK + 17, 5, 4), (300, 1, 3),
    (BLOCK * (MAX_CHUNKS + 3) + 5, 3, 2),
]


@pytest.mark.parametrize("n,K,p", SHAPES)
def test_log_softmax_linear(n, K, p):
    XT, y, coef_g, _, _, sw, resp = _problem(n, K, p)
    log_gate, prob, obj = kernels.log_softmax_linear(XT, coef_g, resp, sw)
    ref_log, ref_prob, ref_obj = naive.log_softmax_linear(XT, coef_g, resp, sw)
    assert_allclose(log_gate, ref_log, rtol=RTOL, atol=1e-13)
    assert_allclose(prob, ref_prob, rtol=RTOL, atol=1e-15)
    assert_allclose(obj, ref_obj, rtol=RTOL)
    log_only, _, none = kernels.log_softmax_linear(XT, coef_g)
    assert none is None
    assert_allclose(log_only, ref_log, rtol=RTOL, atol=1e-13)


@pytest.mark.parametrize("n,K,p", SHAPES)
def test_gaussian_log_prob(n, K, p):
    XT, y, _, coef_e, var, _, _ = _problem(n, K, p)
    assert_allclose(
        kernels.gaussian_log_prob(XT, y, coef_e, var),
        naive.gaussian_log_prob(XT, y, coef_e, var),
        rtol=RTOL,
    )


@pytest.mark.parametrize("n,K,p", SHAPES)
@pytest.mark.parametrize("zero_weights", [False, True])
def test_e_step(n, K, p, zero_weights):
    XT, y, coef_g, coef_e, var, sw, _ = _problem(n, K, p, zero_weights=zero_weights)
    log_gate = naive.log_softmax_linear(XT, coef_g)[0]
    log_prob = naive.gaussian_log_prob(XT, y, coef_e, var)
    got = kernels.e_step(log_gate, log_prob, sw)
    ref = naive.e_step(log_gate, log_prob, sw)
    for a, b in zip(got, ref, strict=True):
        assert_allclose(a, b, rtol=RTOL, atol=1e-15)


def test_e_step_rows_with_no_support():
    """A row every expert gives -inf gets uniform responsibilities and -inf."""
    log_gate = np.log(np.full((3, 4), 1 / 3))
    log_prob = np.zeros((3, 4))
    log_prob[:, 1] = -np.inf
    log_gate[0, 2] = -np.inf  # one expert switched off by the gate: still fine
    sw = np.ones(4)
    sw[1] = 0.0  # the impossible row carries no weight, so the total is finite
    resp, ll_rows, total = kernels.e_step(log_gate, log_prob, sw)
    assert_allclose(resp[:, 1], 1 / 3)
    assert ll_rows[1] == -np.inf
    assert resp[0, 2] == 0.0
    assert np.isfinite(total)
    assert_allclose(resp.sum(axis=0), 1.0, rtol=1e-15)


@pytest.mark.parametrize("n,K,p", SHAPES)
@pytest.mark.parametrize("zero_weights", [False, True])
def test_linear_stats(n, K, p, zero_weights):
    XT, y, _, _, _, sw, resp = _problem(n, K, p, zero_weights=zero_weights)
    for a, b in zip(
        kernels.linear_stats(XT, y, resp, sw), naive.linear_stats(XT, y, resp, sw), strict=True
    ):
        assert_allclose(a, b, rtol=RTOL, atol=1e-12 * n)


@pytest.mark.parametrize("n,K,p", SHAPES)
@pytest.mark.parametrize("zero_weights", [False, True])
def test_softmax_gate_stats(n, K, p, zero_weights):
    XT, _, coef_g, _, _, sw, resp = _problem(n, K, p, zero_weights=zero_weights)
    log_gate, prob, _ = naive.log_softmax_linear(XT, coef_g)
    got = kernels.softmax_gate_stats(XT, log_gate, prob, resp, sw)
    ref = naive.softmax_gate_stats(XT, log_gate, resp, sw)
    for a, b in zip(got, ref, strict=True):
        assert_allclose(a, b, rtol=RTOL, atol=1e-12 * n)


@pytest.mark.parametrize("n,K,p", SHAPES)
@pytest.mark.parametrize("with_prev", [False, True])
def test_fused_softmax_gaussian(n, K, p, with_prev):
    XT, y, coef_g, coef_e, var, sw, resp_prev = _problem(n, K, p, zero_weights=True)
    XeT = XT[::-1].copy()  # a different expert design
    prev = resp_prev if with_prev else None
    got = kernels.fused_softmax_gaussian(XT, coef_g, XeT, y, coef_e, var, sw, prev)
    ref = naive.fused_softmax_gaussian(XT, coef_g, XeT, y, coef_e, var, sw, prev)
    for a, b in zip(got[:3], ref[:3], strict=True):
        assert_allclose(a, b, rtol=RTOL, atol=1e-15)
    for a, b in zip(got[3], ref[3], strict=True):
        assert_allclose(a, b, rtol=RTOL, atol=1e-13)
    if with_prev:
        assert_allclose(got[4], ref[4], rtol=RTOL)
    else:
        assert got[4] is None
    for stats_got, stats_ref in zip(got[5:], ref[5:], strict=True):
        for a, b in zip(stats_got, stats_ref, strict=True):
            assert_allclose(a, b, rtol=RTOL, atol=1e-12 * n)


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs 2 Numba threads")
def test_kernels_identical_for_1_and_2_threads():
    XT, y, coef_g, coef_e, var, sw, resp_prev = _problem(5 * BLOCK + 11, 4, 3)
    results = []
    before = numba.get_num_threads()
    try:
        for threads in (1, 2):
            numba.set_num_threads(threads)
            results.append(kernels.fused_softmax_gaussian(XT, coef_g, XT, y, coef_e, var, sw, resp_prev))
    finally:
        numba.set_num_threads(before)
    one, two = results
    for a, b in zip(one[:3], two[:3], strict=True):
        assert np.array_equal(a, b)
    assert one[4] == two[4]
    for s1, s2 in zip((one[3], *one[5:]), (two[3], *two[5:]), strict=True):
        for a, b in zip(s1, s2, strict=True):
            assert np.array_equal(a, b)
