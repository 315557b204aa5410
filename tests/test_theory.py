"""The theory toolkit: true models, Voronoi losses, rate sweeps, fitted rates, the experiment CLI."""

import json
import sys
import types
import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from scipy import integrate
from scipy.stats import multivariate_normal, norm

from mixexp import MixtureOfExpertsRegressor
from mixexp.cli import main
from mixexp.datasets import make_gaussian_gated_regression, make_topk_moe_regression
from mixexp.theory import (
    GaussianGatedMoE,
    SoftmaxGatedMoE,
    TopKSoftmaxMoE,
    _tables,
    align_softmax_gate,
    experiments,
    fit_rate,
    gaussian_cell_errors,
    gaussian_gating_d1,
    gaussian_gating_d2,
    generalization_curve,
    neurips2023_model,
    rate_experiment,
    registry,
    softmax_cell_errors,
    softmax_d1,
    softmax_d2,
    summarize_cell_errors,
    topk_d1,
    topk_d2,
    voronoi_cells,
)

TRUTH = neurips2023_model()


def _perturbed(model, scale, seed, n_experts=None, split="balanced"):
    """A near-truth model with noise of standard deviation ``scale`` on every part."""
    pert = {"gate": (scale, 0.0), "expert": (scale, 0.0), "variance": (scale, 0.0)}
    return model.near_truth(
        n_experts or model.n_experts, 1, split=split, perturbation=pert, random_state=seed
    )[0]


def _gaussian_truth(zero_mean=False):
    return GaussianGatedMoE(
        weights=[0.3, 0.4, 0.3],
        means=[[0.0 if zero_mean else -0.1], [0.1], [0.5]],
        covariances=[[[0.04]], [[0.02]], [[0.01]]],
        expert_coef=[[0.3, 0.4], [-0.3, -0.7], [0.2, 0.0]],
        noise_variance=[0.01, 0.02, 0.015],
    )


# -- sampling ------------------------------------------------------------------------------
def test_softmax_sampling_matches_the_model():
    n = 40_000
    model = SoftmaxGatedMoE(
        [[0.0, 0.0], [0.5, 2.0], [-0.5, -3.0]],
        [[1, 2], [-2, 1], [0, -1]],
        [0.2, 0.5, 0.3],
        x_distribution="normal",
    )
    X, y, labels = model.sample(n, random_state=0, return_labels=True)
    # label frequencies against the mean gate probabilities: 5 binomial standard errors
    p = model.gate_probabilities(X).mean(axis=0)
    freq = np.bincount(labels, minlength=3) / n
    assert np.all(np.abs(freq - p) < 5 * np.sqrt(p * (1 - p) / n))
    # within each expert the residuals are N(0, sigma_k^2): mean and variance within 5 standard errors
    resid = y - model.expert_means(X)[np.arange(n), labels]
    for k in range(3):
        r = resid[labels == k]
        var = model.noise_variance[k]
        assert abs(r.mean()) < 5 * np.sqrt(var / r.size)
        assert abs(r.var() - var) < 5 * var * np.sqrt(2 / r.size)
    # E[y] against the model's regression function
    assert abs((y - model.mean(X)).mean()) < 5 * y.std() / np.sqrt(n)


def test_softmax_covariates_and_determinism():
    X, _ = TRUTH.sample(5000, random_state=1)
    assert X.min() >= 0 and X.max() <= 1 and abs(X.mean() - 0.5) < 5 * np.sqrt(1 / 12 / 5000)
    grid = neurips2023_model(x_distribution="grid").sample(11, random_state=0)[0]
    assert_allclose(grid[:, 0], np.linspace(0, 1, 11))
    a, b = TRUTH.sample(100, random_state=3), TRUTH.sample(100, random_state=3)
    assert np.array_equal(a[1], b[1])


def test_softmax_log_density_is_a_normalised_mixture():
    x = np.array([[0.3]])
    dens = integrate.quad(lambda v: np.exp(TRUTH.log_density(x, [v]))[0], -40, 40, points=[9, 1], limit=200)[
        0
    ]
    assert_allclose(dens, 1.0, rtol=1e-7)
    X, y = TRUTH.sample(50, random_state=0)
    g = TRUTH.gate_probabilities(X)
    ref = np.log(
        sum(
            g[:, k] * norm.pdf(y, TRUTH.expert_means(X)[:, k], np.sqrt(TRUTH.noise_variance[k]))
            for k in range(2)
        )
    )
    assert_allclose(TRUTH.log_density(X, y), ref, rtol=1e-10)
    assert_allclose(TRUTH.responsibilities(X, y).sum(axis=1), 1.0)


def test_topk_gate():
    gate = [[0.0, 0.0], [1.0, 2.0], [-1.0, 3.0]]
    experts = [[0, 1], [1, 0], [2, -1]]
    dense = SoftmaxGatedMoE(gate, experts, [1, 1, 1], x_distribution="normal")
    X, _ = dense.sample(200, random_state=0)
    full = TopKSoftmaxMoE(gate, experts, [1, 1, 1], top_k=3, x_distribution="normal")
    assert_allclose(full.gate_probabilities(X), dense.gate_probabilities(X), rtol=1e-12)
    top1 = TopKSoftmaxMoE(gate, experts, [1, 1, 1], top_k=1, x_distribution="normal")
    assert_allclose(top1.gate_probabilities(X), np.eye(3)[np.argmax(dense.gate_logits(X), axis=1)])
    top2 = TopKSoftmaxMoE(gate, experts, [1, 1, 1], top_k=2, x_distribution="normal")
    Xs, _, labels = top2.sample(5000, random_state=1, return_labels=True)
    active = top2.active(Xs)
    assert active.sum(axis=1).tolist() == [2] * 5000
    assert active[np.arange(5000), labels].all()  # labels are only drawn among the selected experts
    with pytest.raises(ValueError, match="top_k"):
        TopKSoftmaxMoE(gate, experts, [1, 1, 1], top_k=4)


def test_gaussian_gated_sampling_and_density():
    model = _gaussian_truth()
    n = 30_000
    X, y, labels = model.sample(n, random_state=0, return_labels=True)
    freq = np.bincount(labels, minlength=3) / n
    pi = model.weights
    assert np.all(np.abs(freq - pi) < 5 * np.sqrt(pi * (1 - pi) / n))
    for k in range(3):
        xk = X[labels == k, 0]
        assert abs(xk.mean() - model.means[k, 0]) < 5 * np.sqrt(model.covariances[k, 0, 0] / xk.size)
    # E[P(z = k | x)] = pi_k
    assert np.all(np.abs(model.gate_probabilities(X).mean(axis=0) - pi) < 5 * np.sqrt(pi * (1 - pi) / n))
    joint = np.column_stack(
        [pi[k] * multivariate_normal.pdf(X[:20], model.means[k], model.covariances[k]) for k in range(3)]
    )
    gate = joint / joint.sum(axis=1, keepdims=True)
    assert_allclose(model.gate_probabilities(X[:20]), gate, rtol=1e-10)
    ref = np.log(
        (gate * norm.pdf(y[:20, None], model.expert_means(X[:20]), np.sqrt(model.noise_variance))).sum(1)
    )
    assert_allclose(model.log_density(X[:20], y[:20]), ref, rtol=1e-10)


def test_invalid_models():
    with pytest.raises(ValueError, match="same shape"):
        SoftmaxGatedMoE([[0, 0]], [[0, 0, 0]], [1])
    with pytest.raises(ValueError, match="positive"):
        SoftmaxGatedMoE([[0, 0]], [[0, 0]], [0])
    with pytest.raises(ValueError, match="sum to one"):
        GaussianGatedMoE([0.5, 0.6], [[0], [1]], [[[1]], [[1]]], [[0, 0], [0, 0]], [1, 1])


# -- conversions and starts -------------------------------------------------------------------
def test_estimator_round_trip_and_warm_start_from_truth():
    X, y = TRUTH.sample(2000, random_state=0)
    est = TRUTH.to_estimator(X, y, gate_penalty=0.0)
    back = SoftmaxGatedMoE.from_estimator(est)
    canon = TRUTH.canonical(0)
    assert_allclose(back.gate_coef, canon.gate_coef, atol=1e-10)
    assert_allclose(back.expert_coef, TRUTH.expert_coef, atol=1e-10)
    assert_allclose(back.noise_variance, TRUTH.noise_variance, rtol=1e-10)
    assert_allclose(est.score_samples(X, y), TRUTH.log_density(X, y), rtol=1e-9)
    assert est.n_iter_ == 0 and est.init == "auto" and not est.warm_start
    assert_allclose(est.lower_bound_, TRUTH.log_density(X, y).mean(), rtol=1e-10)
    # EM warm-started at the truth climbs from the truth's likelihood
    est.set_params(warm_start=True, max_iter=200, tol=1e-10)
    est.fit(X, y)
    assert est.lower_bounds_[0] == pytest.approx(TRUTH.log_density(X, y).mean(), rel=1e-10)
    assert est.lower_bound_ >= est.lower_bounds_[0]
    with pytest.raises(ValueError, match="gate='softmax'"):
        SoftmaxGatedMoE.from_estimator(MixtureOfExpertsRegressor(2, gate="constant").fit(X, y))


def test_near_truth_splits():
    start, assignment = TRUTH.near_truth(5, 1000, split="balanced", random_state=0)
    assert assignment.tolist() == [0, 0, 0, 1, 1]
    for seed in range(20):
        _, a = TRUTH.near_truth(4, 1000, split="random", random_state=seed)
        assert set(a) == {0, 1}
    exact, a = TRUTH.near_truth(
        4, 1000, perturbation={"gate": (0, 0), "expert": (0, 0), "variance": (0, 0)}, random_state=0
    )
    X, y = TRUTH.sample(300, random_state=1)
    # unperturbed copies with intercepts lowered by log m represent the truth exactly
    assert_allclose(exact.log_density(X, y), TRUTH.log_density(X, y), rtol=1e-12)
    # the paper's noise shrinks with n
    small = TRUTH.near_truth(2, 10**6, random_state=0)[0]
    large = TRUTH.near_truth(2, 10, random_state=0)[0]
    assert (
        np.abs(small.expert_coef - TRUTH.expert_coef).max()
        < np.abs(large.expert_coef - TRUTH.expert_coef).max()
    )
    with pytest.raises(ValueError, match="at least"):
        TRUTH.near_truth(1, 100)


# -- losses --------------------------------------------------------------------------------------
def test_losses_are_zero_at_the_truth():
    assert softmax_d1(TRUTH, TRUTH) == 0 and softmax_d2(TRUTH, TRUTH) == 0
    topk = TopKSoftmaxMoE(TRUTH.gate_coef, TRUTH.expert_coef, TRUTH.noise_variance, top_k=1)
    assert topk_d1(topk, topk) == 0 and topk_d2(topk, topk) == 0
    for zero_mean in (False, True):
        g = _gaussian_truth(zero_mean)
        assert gaussian_gating_d1(g, g) == 0 and gaussian_gating_d2(g, g) == 0
    # an over-fitted representation of the truth (split atoms) also has D2 = 0
    for K in (3, 4):
        exact = _perturbed(TRUTH, 0.0, 0, n_experts=K)
        assert softmax_d2(exact, TRUTH) == pytest.approx(0, abs=1e-12)
    # and so does a fitted estimator set at the truth
    X, y = TRUTH.sample(500, random_state=0)
    assert softmax_d1(TRUTH.to_estimator(X, y), TRUTH) == pytest.approx(0, abs=1e-9)


@pytest.mark.parametrize("K", [2, 3, 4])
def test_softmax_losses_symmetric_and_shift_invariant(K):
    rng = np.random.default_rng(K)
    fitted = _perturbed(TRUTH, 0.05, K, n_experts=K)
    base = (softmax_d1(fitted, TRUTH), softmax_d2(fitted, TRUTH))
    assert base[0] > 0 and base[1] > 0
    for _ in range(3):
        perm = rng.permutation(K)
        shift = rng.normal(size=2) * 5
        moved = SoftmaxGatedMoE(
            fitted.gate_coef[perm] + shift, fitted.expert_coef[perm], fitted.noise_variance[perm]
        )
        assert softmax_d1(moved, TRUTH) == pytest.approx(base[0], rel=1e-10)
        assert softmax_d2(moved, TRUTH) == pytest.approx(base[1], rel=1e-10)
    # the default reference is the true atom whose gate row is zero (here the second)
    assert softmax_d2(fitted, TRUTH, reference=1) == base[1]


def test_alignment_puts_the_reference_cell_on_the_truth():
    fitted = _perturbed(TRUTH, 0.05, 0, n_experts=4)
    gate, assignment = align_softmax_gate(fitted, TRUTH)
    cell = assignment == 1  # the true reference (gate row zero)
    w = np.exp(gate[cell, 0])
    assert_allclose(np.log(w.sum()), 0.0, atol=1e-12)
    assert_allclose(w @ gate[cell, 1] / w.sum(), 0.0, atol=1e-12)
    assert_allclose(np.diff(gate, axis=0), np.diff(fitted.gate_coef, axis=0), atol=1e-12)  # only a shift


def test_d2_equals_d1_with_singleton_cells_and_uses_r_bar_in_larger_cells():
    fitted = _perturbed(TRUTH, 0.05, 1)
    assert softmax_d2(fitted, TRUTH) == pytest.approx(softmax_d1(fitted, TRUTH), rel=1e-12)
    over = _perturbed(TRUTH, 0.05, 2, n_experts=3)  # cells of 2 and 1 atoms
    e = softmax_cell_errors(over, TRUTH)
    assert sorted(e.cell_size.tolist()) == [1, 2, 2]
    single, double = e.cell_size == 1, e.cell_size == 2
    mass = e.mass.sum()
    first = {n: v for n, v in e.errors.items()}
    d1_terms = sum(e.weight[single] * first[n][single] for n in first)
    assert softmax_d1(over, TRUTH) == pytest.approx(
        mass + d1_terms.sum() + sum(e.weight[double] * first[n][double] for n in first).sum(), rel=1e-12
    )
    for r in (4.0, 3.0):
        expect = (
            mass
            + d1_terms.sum()
            + (
                e.weight[double]
                * (
                    first["gate_slope"][double] ** r
                    + first["intercept"][double] ** r
                    + first["slope"][double] ** (r / 2)
                    + first["variance"][double] ** (r / 2)
                )
            ).sum()
        )
        assert softmax_d2(over, TRUTH, r_bar={2: r}) == pytest.approx(expect, rel=1e-12)
    with pytest.raises(ValueError, match="r_bar"):
        softmax_d2(_perturbed(TRUTH, 0.05, 3, n_experts=5), TRUTH, r_bar={2: 4})  # a cell of 3 atoms


def test_gaussian_gating_losses_types():
    truth = _gaussian_truth(zero_mean=True)
    assert gaussian_gating_d2(truth, truth, setting="auto") == 0
    delta = 0.1
    params = truth.get_params()
    # atom 0 (mu = 0) split in two halves, both with slope error delta
    fitted = {
        "weights": np.r_[0.15, 0.15, params["weights"][1:]],
        "means": np.vstack([params["means"][:1], params["means"]]),
        "covariances": np.concatenate([params["covariances"][:1], params["covariances"]]),
        "expert_coef": np.vstack([params["expert_coef"][:1], params["expert_coef"]]),
        "noise_variance": np.r_[params["noise_variance"][:1], params["noise_variance"]],
    }
    fitted["expert_coef"][:2, 1] += delta
    # Type I: slope exponent 2; Type II in a zero-mean cell: r_tilde / 2
    assert gaussian_gating_d2(fitted, truth, setting="I") == pytest.approx(0.3 * delta**2, rel=1e-10)
    assert gaussian_gating_d2(fitted, truth, setting="II", r_tilde={2: 6}) == pytest.approx(
        0.3 * delta**3, rel=1e-10
    )
    assert gaussian_gating_d2(fitted, truth) == gaussian_gating_d2(fitted, truth, setting="II")
    assert gaussian_gating_d1(fitted, truth) == pytest.approx(0.3 * delta, rel=1e-10)
    e = gaussian_cell_errors(fitted, truth)
    assert e.cell.tolist() == [0, 0, 1, 2]
    assert_allclose(e.errors["slope"], [delta, delta, 0, 0], atol=1e-12)
    perm = [3, 1, 0, 2]
    moved = {k: np.asarray(v)[perm] for k, v in fitted.items()}
    assert gaussian_gating_d2(moved, truth) == pytest.approx(gaussian_gating_d2(fitted, truth), rel=1e-12)
    with pytest.raises(ValueError, match="setting"):
        gaussian_gating_d2(fitted, truth, setting="III")


def test_voronoi_cells_and_summary():
    assignment, cells = voronoi_cells([[0.0, 0.1], [0.9, 1.0], [1.1, 1.0]], [[0, 0], [1, 1], [5, 5]])
    assert assignment.tolist() == [0, 1, 1]
    assert [c.tolist() for c in cells] == [[0], [1, 2], []]
    over = _perturbed(TRUTH, 0.05, 2, n_experts=3)
    row = summarize_cell_errors(softmax_cell_errors(over, TRUTH), 3)
    assert row["max_cell_size"] == 2 and np.isnan(row["slope_size3"])
    assert np.isfinite(row["slope_size1"]) and np.isfinite(row["slope_size2"])


# -- fit_rate ----------------------------------------------------------------------------------------
def _power_law(slope, noise, reps, seed=0):
    rng = np.random.default_rng(seed)
    n = np.repeat([100, 300, 1000, 3000, 10000, 30000], reps)
    return {"n": n, "loss": 2.0 * n**slope * np.exp(noise * rng.standard_normal(n.size))}


@pytest.mark.parametrize("statistic", ["median", "mean"])
def test_fit_rate_recovers_a_known_slope(statistic):
    slope, noise, reps = -0.37, 0.3, 40
    table = _power_law(slope, noise, reps)
    fit = fit_rate(table, statistic=statistic, n_boot=1000)
    logn = np.log(np.unique(table["n"]))
    # standard error of the slope: log-summary noise ~ 1.25 noise / sqrt(reps) (median) at each n
    se = 1.26 * noise / np.sqrt(reps) / np.sqrt(((logn - logn.mean()) ** 2).sum())
    assert abs(fit.slope - slope) < 4 * se
    assert fit.ci_low < fit.slope < fit.ci_high and fit.ci_high - fit.ci_low < 8 * se
    assert fit.contains(slope)
    assert fit.n_points == 6 and fit.n_replicates == reps and fit.statistic == statistic
    assert_allclose(fit.predict(1000), 2.0 * 1000**slope, rtol=0.2)
    stab = fit.stability
    assert list(stab["n_min"]) == [100, 300, 1000, 3000]
    assert np.all(np.abs(np.asarray(stab["slope"]) - slope) < 6 * se * 2)


def test_fit_rate_options_and_errors():
    table = _power_law(-0.5, 0.1, 10)
    assert fit_rate(table, n_min=1000).n_points == 4
    assert fit_rate(table, n_max=3000).n_max == 3000
    bad = {"n": table["n"], "loss": np.where(table["n"] == 100, np.nan, table["loss"])}
    with pytest.warns(UserWarning, match="left out"):
        assert fit_rate(bad).n_min == 300
    with pytest.raises(ValueError, match="min_points"):
        fit_rate(table, n_min=10_000)
    with pytest.raises(ValueError, match="statistic"):
        fit_rate(table, statistic="mode")
    with pytest.raises(ValueError, match="columns"):
        fit_rate(table, "nope")
    assert "slope" in str(fit_rate(table))


# -- sweeps ------------------------------------------------------------------------------------------------
SMALL = {"max_iter": 30, "tol": 1e-6, "progress": False}


def test_rate_experiment_runs_and_is_deterministic():
    a = rate_experiment(TRUTH, 3, [200, 400], 2, random_state=0, n_jobs=1, **SMALL)
    for column in (
        "n",
        "replicate",
        "loss",
        "d1",
        "d2",
        "gate_slope_size2",
        "variance_size1",
        "n_iter",
        "converged",
        "max_cell_size",
    ):
        assert column in a.columns
    assert len(a) == 4 and list(a["n"]) == [200, 200, 400, 400] and list(a["replicate"]) == [0, 1, 0, 1]
    assert np.all(np.isfinite(a["loss"])) and np.all(a["loss"] > 0) and np.all(a["loss"] == a["d2"])
    b = rate_experiment(TRUTH, 3, [200, 400], 2, random_state=0, n_jobs=2, **SMALL)
    numeric = [c for c in a.columns if c != "fit_time"]
    assert a[numeric].equals(b[numeric])
    c = rate_experiment(TRUTH, 3, [200, 400], 2, random_state=1, n_jobs=1, **SMALL)
    assert not np.array_equal(a["loss"], c["loss"])
    exact = rate_experiment(TRUTH, 2, [300], 1, random_state=0, **SMALL)
    assert exact["loss"][0] == exact["d1"][0]


def test_rate_experiment_checkpoint_resumes(tmp_path, monkeypatch):
    calls = []
    spec = experiments.GATE_SPECS["softmax"]
    counting = experiments.GateSpec(
        spec.d1,
        spec.d2,
        spec.cell_errors,
        spec.parameters,
        lambda *args: calls.append(args[2]) or spec.fit(*args),
    )
    monkeypatch.setitem(experiments.GATE_SPECS, "softmax", counting)
    path = tmp_path / "sweep.csv"
    first = rate_experiment(TRUTH, 2, [200], 2, random_state=0, checkpoint=path, **SMALL)
    assert len(calls) == 2 and path.exists() and len(_tables.read_rows(path)) == 2
    both = rate_experiment(TRUTH, 2, [200, 300], 2, random_state=0, checkpoint=path, **SMALL)
    assert len(calls) == 4  # only the two new cells were fitted
    assert len(_tables.read_rows(path)) == 4
    assert_allclose(both["loss"][:2], first["loss"], rtol=1e-12)
    again = rate_experiment(TRUTH, 2, [200, 300], 2, random_state=None, checkpoint=path, **SMALL)
    assert len(calls) == 4  # nothing left to do; the stored seed is reused
    assert_allclose(again["loss"], both["loss"], rtol=1e-12)
    fresh = rate_experiment(TRUTH, 2, [200, 300], 2, random_state=0, **SMALL)
    assert_allclose(fresh["loss"], both["loss"], rtol=1e-12)
    with pytest.raises(ValueError, match="other settings"):
        rate_experiment(TRUTH, 2, [200], 2, random_state=0, checkpoint=path, max_iter=31, progress=False)
    with pytest.raises(ValueError, match="base seed"):
        rate_experiment(TRUTH, 2, [200], 2, random_state=5, checkpoint=path, **SMALL)


def test_rate_experiment_total_tolerance_and_squarem(tmp_path):
    # tol_scale="total": cell n is fitted with tol / n, exactly as a mean tolerance of tol / n
    common = {"max_iter": 400, "random_state": 0, "progress": False}
    total = rate_experiment(TRUTH, 3, [200, 400], 2, tol=1e-4, tol_scale="total", **common)
    for n in (200, 400):
        mean = rate_experiment(TRUTH, 3, [n], 2, tol=1e-4 / n, **common)
        rows = np.asarray(total["n"]) == n
        for column in ("loss", "n_iter", "lower_bound"):
            assert_array_equal(np.asarray(total[column])[rows], mean[column])
    loose = rate_experiment(TRUTH, 3, [400], 2, tol=1e-4, **common)
    assert np.all(np.asarray(loose["n_iter"]) < np.asarray(total["n_iter"])[2:])
    # SQUAREM: the same fits (same maxima from the same starts) in fewer EM steps
    em = rate_experiment(TRUTH, 3, [400], 2, tol=1e-10, max_iter=20000, random_state=0, progress=False)
    sq = rate_experiment(TRUTH, 3, [400], 2, tol=1e-10, max_iter=20000, random_state=0, progress=False,
                         solver="squarem")
    assert np.all(em["converged"]) and np.all(sq["converged"])
    assert np.all(np.asarray(sq["n_iter"]) < np.asarray(em["n_iter"]))
    assert_allclose(sq["lower_bound"], em["lower_bound"], rtol=0, atol=1e-7)
    # the settings of a checkpoint name tol_scale only when it is not the default (older
    # checkpoints stay valid), and a checkpoint of one scale refuses the other
    path = tmp_path / "total.csv"
    rate_experiment(TRUTH, 3, [200], 1, tol=1e-4, tol_scale="total", checkpoint=path, **common)
    assert json.loads(path.with_suffix(".csv.json").read_text())["settings"]["tol_scale"] == "total"
    with pytest.raises(ValueError, match="other settings"):
        rate_experiment(TRUTH, 3, [200], 1, tol=1e-4, checkpoint=path, **common)
    plain = tmp_path / "mean.csv"
    rate_experiment(TRUTH, 3, [200], 1, tol=1e-4, checkpoint=plain, **common)
    assert "tol_scale" not in json.loads(plain.with_suffix(".csv.json").read_text())["settings"]
    with pytest.raises(ValueError, match="tol_scale"):
        rate_experiment(TRUTH, 3, [200], 1, tol_scale="nats", **common)
    with pytest.raises(ValueError, match="solver"):
        rate_experiment(TRUTH, 3, [200], 1, solver="lbfgs", **common)


def test_rate_experiment_solver_plug_in_and_other_gates():
    truth = _gaussian_truth()

    def oracle(X, y, n_experts, start, random_state):
        return {**truth.get_params(), "n_iter": 0, "converged": True}

    table = rate_experiment(
        truth, 3, [50, 100], 1, init="kmeans", solver=oracle, random_state=0, progress=False
    )
    assert np.all(np.asarray(table["loss"]) == 0) and "gate_mean_size1" in table.columns
    # every gate has an EM fitter and near-truth starts now (top-K: tests/test_topk_rates.py); a model
    # of an unknown gate, or without near-truth starts, is refused
    class NoStart:
        gate = "softmax"
        n_experts = 2

    with pytest.raises(ValueError, match="near_truth"):
        rate_experiment(NoStart(), 2, [50], 1, solver=oracle, progress=False)
    NoStart.gate = "sigmoid"
    with pytest.raises(ValueError, match="true_model.gate"):
        rate_experiment(NoStart(), 2, [50], 1, solver=oracle, progress=False)
    with pytest.raises(ValueError, match="init"):
        rate_experiment(TRUTH, 2, [50], 1, init="random", progress=False)
    km = rate_experiment(TRUTH, 2, [300], 1, init="kmeans", random_state=0, **SMALL)
    assert np.isfinite(km["loss"][0])


def test_progress_bar_and_dict_tables_without_optional_packages(monkeypatch):
    updates = []

    class FakeBar:
        def __init__(self, total, desc):
            updates.append(("total", total))

        def update(self, k):
            updates.append(("update", k))

        def close(self):
            updates.append(("close", None))

    monkeypatch.setitem(sys.modules, "tqdm.auto", types.SimpleNamespace(tqdm=FakeBar))
    monkeypatch.setattr(_tables, "_pandas", lambda: None)
    table = rate_experiment(TRUTH, 2, [200, 300], 1, random_state=0, max_iter=20, progress=True)
    assert isinstance(table, dict) and table["loss"].shape == (2,)
    assert updates == [("total", 2), ("update", 1), ("update", 1), ("close", None)]
    assert fit_rate({"n": np.array([100, 200, 400]), "loss": np.array([1.0, 0.7, 0.5])}, n_boot=50).slope < 0
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)  # not installed: no bar, no error
    assert len(rate_experiment(TRUTH, 2, [200], 1, random_state=0, max_iter=20, progress=True)["n"]) == 1


def test_generalization_curve():
    table = generalization_curve(TRUTH, [1, 2], [150, 300], 1, n_test=500, random_state=0, progress=False)
    assert len(table) == 4 and set(table["n_experts"]) == {1, 2}
    assert np.all(np.isfinite(table[["train_nll", "test_nll", "gap", "oracle_nll"]].to_numpy()))
    assert_allclose(table["gap"], table["test_nll"] - table["train_nll"])
    two = table[table["n_experts"] == 2]["test_nll"].to_numpy()
    one = table[table["n_experts"] == 1]["test_nll"].to_numpy()
    assert np.all(two < one)  # the true number of experts generalises better than one line
    calls = generalization_curve(
        lambda n, rng: TRUTH.sample(n, rng), [2], [100], 1, n_test=100, random_state=0, progress=False
    )
    assert np.isnan(calls["oracle_nll"][0]) and np.isfinite(calls["test_nll"][0])


# -- the experiment command line ---------------------------------------------------------------------------
def test_cli_experiment_quick_writes_csv_and_png(tmp_path, monkeypatch, capsys):
    tiny = {"n_grid": [300, 600, 1200], "n_replicates": 1, "n_init": 1, "max_iter": 40, "tol": 1e-6}
    monkeypatch.setitem(registry.SOFTMAX_SETTINGS, "quick", tiny)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        main(["experiment", "softmax_gating_rates", "--quick", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert "gate_slope_size2" in out and "wrote" in out
    rows = _tables.read_rows(tmp_path / "softmax_gating_rates.csv")
    assert len(rows) == 9 and {r["n_experts"] for r in rows} == {2, 3, 4}
    assert (tmp_path / "softmax_gating_rates.png").stat().st_size > 1000
    slopes = _tables.read_rows(tmp_path / "softmax_gating_rates_slopes.csv")
    assert slopes[0]["quantity"] == "loss" and slopes[0]["claim"] == -0.5
    with pytest.raises(SystemExit):
        main(["experiment", "nope"])


def test_dataset_generators():
    X, y, params = make_gaussian_gated_regression(
        3000, n_features=2, n_experts=2, return_params=True, random_state=0
    )
    assert X.shape == (3000, 2) and params["means"].shape == (2, 2)
    labels = params["labels"]
    for k in range(2):  # x given the label is centred on that expert's gate mean
        assert np.all(
            np.abs(X[labels == k].mean(axis=0) - params["means"][k]) < 5 / np.sqrt((labels == k).sum())
        )
    X, y, params = make_topk_moe_regression(2000, top_k=1, return_params=True, random_state=0)
    top1 = TopKSoftmaxMoE(params["gate_coef"], params["expert_coef"], params["noise_variance"], top_k=1)
    assert np.array_equal(params["labels"], np.argmax(top1.gate_logits(X), axis=1))  # top-1: the argmax
    with pytest.raises(ValueError, match="shape"):
        make_topk_moe_regression(10, n_features=1, gate_coef=np.zeros((4, 3)))


@pytest.mark.parametrize("name", ["mixexp.theory.simulate", "mixexp.theory.rates", "mixexp.datasets._gated"])
def test_docstring_examples(name):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


def test_table_rows_and_write_table_round_trip(tmp_path):
    import pandas as pd

    from mixexp.theory._tables import read_rows, table_rows, write_table

    columns = {"n": np.array([10, 20]), "loss": np.array([0.5, np.nan]), "converged": np.array([True, False])}
    expected = [{"n": 10, "loss": 0.5, "converged": True}, {"n": 20, "loss": np.nan, "converged": False}]
    for table in (columns, pd.DataFrame(columns), expected):
        rows = table_rows(table)
        assert [list(r) for r in rows] == [["n", "loss", "converged"]] * 2
        assert rows[0] == expected[0] and rows[1]["n"] == 20 and np.isnan(rows[1]["loss"])
        write_table(tmp_path / "t.csv", table)
        back = read_rows(tmp_path / "t.csv")
        assert back[0] == expected[0] and back[1]["converged"] is False and np.isnan(back[1]["loss"])
    assert table_rows({}) == []


def test_rate_experiment_records_squarem_slack(tmp_path):
    # SQUAREM's squarem_max_decrease is in a checkpoint's settings whenever it is not 0 (the
    # only value before it existed: those checkpoints stay valid for a run that asks for 0),
    # and out of its estimator_params, so a default run refuses a monotone checkpoint
    common = {"tol": 1e-6, "max_iter": 300, "random_state": 0, "progress": False, "solver": "squarem"}
    monotone = {"squarem_max_decrease": 0.0}
    path = tmp_path / "monotone.csv"
    first = rate_experiment(TRUTH, 3, [200], 1, checkpoint=path, estimator_params=monotone, **common)
    settings = json.loads(path.with_suffix(".csv.json").read_text())["settings"]
    assert "squarem_max_decrease" not in settings and settings["estimator_params"] == {}
    again = rate_experiment(TRUTH, 3, [200], 1, checkpoint=path, estimator_params=monotone, **common)
    assert_array_equal(again["lower_bound"], first["lower_bound"])
    with pytest.raises(ValueError, match="other settings"):
        rate_experiment(TRUTH, 3, [200], 1, checkpoint=path, **common)
    default = tmp_path / "default.csv"
    rate_experiment(TRUTH, 3, [200], 1, checkpoint=default, **common)
    settings = json.loads(default.with_suffix(".csv.json").read_text())["settings"]
    assert settings["squarem_max_decrease"] == 1.0 and settings["estimator_params"] == {}
    # the same slack given explicitly is the same settings; EM runs do not name it
    explicit = {"squarem_max_decrease": 1}
    rate_experiment(TRUTH, 3, [200], 1, checkpoint=default, estimator_params=explicit, **common)
    em = tmp_path / "em.csv"
    rate_experiment(TRUTH, 3, [200], 1, checkpoint=em, **{**common, "solver": "em"})
    assert "squarem_max_decrease" not in json.loads(em.with_suffix(".csv.json").read_text())["settings"]
