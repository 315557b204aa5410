"""Rate sweeps of top-K sparse softmax gating (ICLR 2024): starts, estimators and ``rate_experiment``."""

import numpy as np
import pytest

from mixexp.theory import SoftmaxGatedMoE, TopKSoftmaxMoE, rate_experiment, topk_d1
from mixexp.theory.experiments import GATE_SPECS, _estimator_gate

# The truth of notebooks/04_topk_gating_rates.ipynb: expert 0 always selected, expert 2 joins it for
# x < 1/2 and expert 1 for x > 1/2.
TRUTH = TopKSoftmaxMoE([[0, 0], [-4, 4], [0, -4]], [[0, 2], [3, -4], [-3, 4]], [0.09, 0.09, 0.09], top_k=2)
NO_NOISE = {"gate": (0.0, 0.0), "expert": (0.0, 0.0), "variance": (0.0, 0.0)}


def test_near_truth_widens_the_top_k_by_the_extra_atoms():
    start, assignment = TRUTH.near_truth(4, 1000, split="balanced", random_state=0)
    assert isinstance(start, TopKSoftmaxMoE)
    assert start.n_experts == 4 and start.top_k == 3  # top-K-bar = K + k - k*
    np.testing.assert_array_equal(assignment, [0, 0, 1, 2])
    assert start.x_distribution == TRUTH.x_distribution and start.x_range == TRUTH.x_range
    exact, _ = TRUTH.near_truth(3, 1000, random_state=0)
    assert exact.top_k == 2
    # capped at the number of atoms
    wide = TopKSoftmaxMoE(TRUTH.gate_coef, TRUTH.expert_coef, TRUTH.noise_variance, top_k=3)
    assert wide.near_truth(5, 1000, random_state=0)[0].top_k == 5
    # the atoms are those of the dense model's near-truth start (same random stream)
    dense_truth = SoftmaxGatedMoE(TRUTH.gate_coef, TRUTH.expert_coef, TRUTH.noise_variance)
    dense, dense_assignment = dense_truth.near_truth(4, 1000, split="random", random_state=3)
    topk, topk_assignment = TRUTH.near_truth(4, 1000, split="random", random_state=3)
    np.testing.assert_array_equal(dense_assignment, topk_assignment)
    np.testing.assert_allclose(topk.gate_coef, dense.gate_coef)
    np.testing.assert_allclose(topk.expert_coef, dense.expert_coef)
    np.testing.assert_allclose(topk.noise_variance, dense.noise_variance)


def test_unperturbed_split_of_an_always_selected_expert_is_the_truth():
    # two copies of expert 0 (selected everywhere), intercepts lowered by log 2, selected with top-3:
    # the same conditional density as the truth, point by point
    start, _ = TRUTH.near_truth(4, 1000, split="balanced", perturbation=NO_NOISE, random_state=0)
    X, y = TRUTH.sample(500, random_state=1)
    np.testing.assert_allclose(start.log_density(X, y), TRUTH.log_density(X, y), rtol=1e-12, atol=1e-12)


def test_to_estimator_sets_the_top_k_gate_at_the_model():
    X, y = TRUTH.sample(400, random_state=2)
    est = TRUTH.to_estimator(X, y, gate_penalty=0.0)
    assert est.top_k == 2 and est.gate == "softmax"
    # the estimator's density is the top-K model's (a dense gate would differ: every expert is on)
    np.testing.assert_allclose(est.score_samples(X, y), TRUTH.log_density(X, y), rtol=1e-9, atol=1e-9)
    assert est.lower_bound_ == pytest.approx(TRUTH.log_density(X, y).mean(), rel=1e-9)
    np.testing.assert_allclose(est.gate_coef_, TRUTH.gate_coef, atol=1e-10)
    assert TRUTH.to_estimator(X, y, top_k=3).top_k == 3  # params override the model's top_k


def test_estimator_gate_for_kmeans_fits():
    assert _estimator_gate(TRUTH, 3) == {"gate": "softmax", "top_k": 2}
    assert _estimator_gate(TRUTH, 4) == {"gate": "softmax", "top_k": 3}
    assert _estimator_gate(TRUTH, 9) == {"gate": "softmax", "top_k": 8}
    wide = TopKSoftmaxMoE(TRUTH.gate_coef, TRUTH.expert_coef, TRUTH.noise_variance, top_k=3)
    assert _estimator_gate(wide, 5) == {"gate": "softmax", "top_k": 5}  # capped at n_experts
    dense = SoftmaxGatedMoE(TRUTH.gate_coef, TRUTH.expert_coef, TRUTH.noise_variance)
    assert _estimator_gate(dense, 4) == {"gate": "softmax"}
    assert GATE_SPECS["top_k"].fit is not None


def test_rate_experiment_fits_top_k_by_em_from_the_truth():
    # started exactly at the truth, EM never lowers the likelihood, so each fit's mean log-likelihood is
    # at least the truth's on its sample (up to rounding); the fitted model is the top-K one
    table = rate_experiment(
        TRUTH, 3, [300, 600], 2, perturbation=NO_NOISE, max_iter=200, tol=1e-8, random_state=0, progress=False
    )
    seeds = np.asarray(table["seed"])
    for i, n in enumerate(np.asarray(table["n"])):
        X, y = TRUTH.sample(int(n), np.random.RandomState(seeds[i]))
        assert table["lower_bound"][i] >= TRUTH.log_density(X, y).mean() - 1e-9
    assert np.all(np.asarray(table["n_iter"]) >= 1)
    loss = np.asarray(table["loss"])
    assert np.all(np.isfinite(loss)) and np.all(loss > 0)
    np.testing.assert_allclose(loss, np.asarray(table["d1"]))


def test_exact_fitted_top_k_loss_shrinks_with_n():
    # D1 is dominated by the gate slopes, each learnt on half of [0, 1] from the weight of its expert
    # against expert 0: standard error about 1 / sqrt((n/2) * 0.2 / 48) = 22 / sqrt(n) (0.7 at n = 1000,
    # 0.25 at 8000). The median D1 of 3 fits must fall from n = 500 to 8000 (16 times the data: by a
    # factor of about sqrt(16) = 4); we require a factor 2, outside the replicate noise of the medians.
    # (At large n the estimator's top-K EM often leaves the gate at its near-truth start, which only
    # lowers D1 further; notebooks/04_topk_gating_rates.ipynb measures that.)
    table = rate_experiment(
        TRUTH, 3, [500, 8000], 3, split="balanced", max_iter=300, tol=1e-8, random_state=1, progress=False
    )
    n, loss = np.asarray(table["n"]), np.asarray(table["loss"])
    assert np.median(loss[n == 8000]) < np.median(loss[n == 500]) / 2
    # and D1 is the ICLR 2024 exact-specified loss of the fit
    assert topk_d1(TRUTH.get_params(), TRUTH) == 0.0


def test_over_fitted_top_k_sweep_reports_the_two_atom_cell():
    table = rate_experiment(
        TRUTH, 4, [400], 2, split="balanced", max_iter=100, tol=1e-6, random_state=0, progress=False
    )
    assert np.all(np.asarray(table["max_cell_size"]) == 2)
    for column in ("gate_slope_size2", "intercept_size2", "slope_size2", "variance_size2", "d2"):
        assert np.all(np.isfinite(np.asarray(table[column]))), column
    np.testing.assert_allclose(np.asarray(table["loss"]), np.asarray(table["d2"]))


def test_kmeans_start_fits_top_k():
    table = rate_experiment(TRUTH, 3, [600], 1, init="kmeans", max_iter=100, random_state=0, progress=False)
    assert np.isfinite(table["loss"][0])
