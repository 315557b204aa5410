"""The D2-weighted per-parameter errors within Voronoi cells (``{parameter}_size{m}_w``)."""

import csv

import numpy as np
import pytest
from numpy.testing import assert_allclose

from mixexp.theory import neurips2023_model, rate_experiment
from mixexp.theory.losses import (
    CellErrors,
    gaussian_cell_errors,
    softmax_cell_errors,
    summarize_cell_errors,
)
from mixexp.theory.registry import SOFTMAX_CLAIMS, softmax_rate_summary
from mixexp.theory.simulate import GaussianGatedMoE

TRUTH = neurips2023_model()
#: exponents of D2 in a softmax cell of two atoms (r_bar(2) = 4)
R2 = {"gate_slope": 4.0, "intercept": 4.0, "slope": 2.0, "variance": 2.0}


def _split_cell(eps, heavy=0.01, light=5.0, light_variance=0.05):
    """True atom 0 (beta_0 = -8) split into a heavy atom with small errors and one of share ``eps``.

    The heavy atom carries ``(1 - eps)`` of the true weight ``e^-8`` and errors ``heavy`` in every
    parameter; the light one carries ``eps`` and errors ``light`` (``light_variance`` for the variance;
    still far nearer to atom 0 than to atom 1). Atom 1, the reference, is exact, so the gate alignment
    leaves the gate unchanged.
    """
    p = TRUTH.get_params()
    g0, e0, v0 = p["gate_coef"][0], p["expert_coef"][0], p["noise_variance"][0]
    gate = np.array(
        [
            [g0[0] + np.log1p(-eps), g0[1] + heavy],
            [g0[0] + np.log(eps), g0[1] + light],
            p["gate_coef"][1],
        ]
    )
    expert = np.array([e0 + heavy, e0 + light, p["expert_coef"][1]])
    var = np.array([v0 + heavy, v0 + light_variance, p["noise_variance"][1]])
    return {"gate_coef": gate, "expert_coef": expert, "noise_variance": var}


def _naive_weighted(fitted, cell, exponents):
    """From the definition: errors against true atom 0, weights exp(beta_0) normalised in the cell."""
    p = TRUTH.get_params()
    w = np.exp(fitted["gate_coef"][cell, 0])
    w = w / w.sum()
    errors = {
        "gate_slope": np.abs(fitted["gate_coef"][cell, 1] - p["gate_coef"][0, 1]),
        "intercept": np.abs(fitted["expert_coef"][cell, 0] - p["expert_coef"][0, 0]),
        "slope": np.abs(fitted["expert_coef"][cell, 1] - p["expert_coef"][0, 1]),
        "variance": np.abs(fitted["noise_variance"][cell] - p["noise_variance"][0]),
    }
    return {name: float(np.sum(w * errors[name] ** r) ** (1 / r)) for name, r in exponents.items()}, errors


@pytest.mark.parametrize("eps", [1e-3, 1e-6, 1e-12])
def test_fading_atom_dominates_the_max_but_not_the_weighted_error(eps):
    fitted = _split_cell(eps)
    errors = softmax_cell_errors(fitted, TRUTH)
    assert errors.cell.tolist() == [0, 0, 1] and errors.cell_size.tolist() == [2, 2, 1]
    for name, r in R2.items():
        assert_allclose(errors.exponents[name], [r, r, 1.0])
    row = summarize_cell_errors(errors, 3)
    naive, naive_errors = _naive_weighted(fitted, [0, 1], R2)
    for name, r in R2.items():
        # the max column is the light atom's large error, whatever its weight
        assert row[f"{name}_size2"] == pytest.approx(naive_errors[name].max(), rel=1e-12)
        # the weighted one follows the formula ((1 - eps) e_heavy^r + eps e_light^r)^(1/r) ...
        e_heavy, e_light = naive_errors[name]
        formula = ((1 - eps) * e_heavy**r + eps * e_light**r) ** (1 / r)
        assert row[f"{name}_size2_w"] == pytest.approx(formula, rel=1e-9)
        assert row[f"{name}_size2_w"] == pytest.approx(naive[name], rel=1e-9)
        assert e_heavy <= row[f"{name}_size2_w"] <= e_light
    assert row["gate_slope_size2"] == pytest.approx(5.0, rel=1e-9)
    assert row["variance_size2"] == pytest.approx(0.05, rel=1e-9)
    # ... which is close to the heavy atom's error once eps^(1/r) * light is small against it
    if eps <= 1e-12:
        assert row["gate_slope_size2_w"] < 0.012 and row["intercept_size2_w"] < 0.012
        assert row["slope_size2_w"] < 0.011 and row["variance_size2_w"] < 0.011
    assert np.isnan(row["slope_size3_w"]) and "slope_size1_w" not in row
    assert row["slope_size1"] == pytest.approx(0.0, abs=1e-12)


def test_weighted_error_falls_to_the_heavy_atom_error_as_the_weight_fades():
    values = [
        summarize_cell_errors(softmax_cell_errors(_split_cell(eps), TRUTH), 2) for eps in (1e-2, 1e-4, 1e-8)
    ]
    for name in R2:
        w = [v[f"{name}_size2_w"] for v in values]
        assert w[0] > w[1] > w[2] > 0.01
        assert all(v[f"{name}_size2"] == values[0][f"{name}_size2"] for v in values)  # the max does not move


def test_weighted_columns_do_not_depend_on_the_order_of_the_atoms():
    fitted = _split_cell(1e-3)
    base = summarize_cell_errors(softmax_cell_errors(fitted, TRUTH), 3)
    for perm in ([1, 0, 2], [2, 1, 0], [2, 0, 1]):
        moved = {k: v[perm] for k, v in fitted.items()}
        row = summarize_cell_errors(softmax_cell_errors(moved, TRUTH), 3)
        assert row.keys() == base.keys()
        for key, value in base.items():
            assert row[key] == pytest.approx(value, rel=1e-12, nan_ok=True)


def test_equal_errors_give_that_error_and_r_bar_sets_the_exponent():
    fitted = _split_cell(0.3, heavy=0.02, light=0.02, light_variance=0.02)
    row = summarize_cell_errors(softmax_cell_errors(fitted, TRUTH), 2)
    for name in R2:
        assert row[f"{name}_size2_w"] == pytest.approx(row[f"{name}_size2"], rel=1e-9)
    fitted = _split_cell(0.3)
    errors = softmax_cell_errors(fitted, TRUTH, r_bar={2: 6})
    assert_allclose(errors.exponents["intercept"], [6.0, 6.0, 1.0])
    assert_allclose(errors.exponents["variance"], [3.0, 3.0, 1.0])
    naive, _ = _naive_weighted(
        fitted, [0, 1], {"gate_slope": 6.0, "intercept": 6.0, "slope": 3.0, "variance": 3.0}
    )
    row = summarize_cell_errors(errors, 2)
    for name, value in naive.items():
        assert row[f"{name}_size2_w"] == pytest.approx(value, rel=1e-9)


def _three_atoms_in_cell0():
    """True atom 0 split into three equal-weight atoms whose gate slopes are off by 0, 0.1, -0.1."""
    p = TRUTH.get_params()
    return {
        "gate_coef": np.vstack([p["gate_coef"][:1] + [[np.log(1 / 3), d]] for d in (0.0, 0.1, -0.1)]
                               + [p["gate_coef"][1:]]),
        "expert_coef": np.vstack([p["expert_coef"][:1]] * 3 + [p["expert_coef"][1:]]),
        "noise_variance": np.r_[[p["noise_variance"][0]] * 3, p["noise_variance"][1]],
    }  # fmt: skip


def test_cells_beyond_the_table_infinite_weights_and_no_exponents_give_nan_or_no_column():
    # three atoms in the cell of true atom 0 with a table that stops at 2: NaN, not an error
    three = _three_atoms_in_cell0()
    errors = softmax_cell_errors(three, TRUTH, r_bar={2: 4})
    assert np.isnan(errors.exponents["slope"][:3]).all()
    row = summarize_cell_errors(errors, 3)
    assert np.isnan(row["gate_slope_size3_w"]) and row["gate_slope_size3"] == pytest.approx(0.1, rel=1e-9)
    # an overflowing weight (a degenerate fit): NaN
    cell = CellErrors(
        np.array([0, 0]), np.array([2, 2]), np.array([np.inf, 1.0]), {"slope": np.array([1.0, 2.0])},
        np.array([np.inf]), {"slope": np.array([2.0, 2.0])},
    )  # fmt: skip
    assert np.isnan(summarize_cell_errors(cell, 2)["slope_size2_w"])
    # CellErrors built without exponents (the former signature): the old columns only
    old = CellErrors(cell.cell, cell.cell_size, np.ones(2), cell.errors, np.zeros(1))
    assert set(summarize_cell_errors(old, 2)) == {"mass", "max_cell_size", "slope_size1", "slope_size2"}


def test_largest_weighted_error_over_two_gaussian_cells_with_type_ii_exponents():
    d = 1
    truth = GaussianGatedMoE(
        weights=[0.4, 0.6], means=[[0.0], [2.0]], covariances=np.ones((2, d, d)),
        expert_coef=[[0.0, 1.0], [1.0, -1.0]], noise_variance=[0.5, 0.5],
    )  # fmt: skip
    p = truth.get_params()
    # both true atoms split; slope errors (a, then b share) per fitted atom; atom 0 has mu = 0 (Type II)
    shares = np.array([0.25, 0.75, 0.5, 0.5])
    slope_err = np.array([0.2, 0.1, 0.3, 0.05])
    source = [0, 0, 1, 1]
    fitted = {
        "weights": shares * p["weights"][source],
        "means": p["means"][source],
        "covariances": p["covariances"][source],
        "expert_coef": p["expert_coef"][source] + np.c_[np.zeros(4), slope_err],
        "noise_variance": p["noise_variance"][source],
    }
    errors = gaussian_cell_errors(fitted, truth, r_tilde={2: 6})
    assert_allclose(errors.exponents["slope"], [3.0, 3.0, 2.0, 2.0])  # r_tilde / 2 at mu = 0, else 2
    assert_allclose(errors.exponents["gate_mean"], [6.0] * 4)
    row = summarize_cell_errors(errors, 2)
    cell0 = (0.25 * 0.2**3 + 0.75 * 0.1**3) ** (1 / 3)
    cell1 = (0.5 * 0.3**2 + 0.5 * 0.05**2) ** (1 / 2)
    assert row["slope_size2_w"] == pytest.approx(max(cell0, cell1), rel=1e-12)
    assert row["slope_size2"] == pytest.approx(0.3, rel=1e-12)
    assert row["gate_mean_size2_w"] == pytest.approx(0.0, abs=1e-12)


def test_rate_experiment_tables_carry_the_weighted_columns_and_refuse_old_checkpoints(tmp_path):
    fitted = _split_cell(1e-3)

    def solver(X, y, n_experts, start, random_state):
        return {**fitted, "n_iter": 0, "converged": True}

    path = tmp_path / "sweep.csv"
    kwargs = {"init": "kmeans", "solver": solver, "random_state": 0, "progress": False}
    table = rate_experiment(TRUTH, 3, [50, 100], 1, checkpoint=path, **kwargs)
    expect = summarize_cell_errors(softmax_cell_errors(fitted, TRUTH), 3)
    for column in ("gate_slope_size2_w", "intercept_size2_w", "slope_size3_w", "variance_size2_w"):
        assert column in table.columns
        assert_allclose(table[column], expect[column], rtol=1e-12)
    # the checkpoint holds them and a re-run reads them back
    again = rate_experiment(TRUTH, 3, [50, 100], 1, checkpoint=path, **kwargs)
    assert_allclose(again["slope_size2_w"], table["slope_size2_w"], rtol=1e-12)
    # a checkpoint written before the weighted columns existed is refused, not misread
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    keep = [i for i, name in enumerate(rows[0]) if not name.endswith("_w")]
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows([[row[i] for i in keep] for row in rows])
    with pytest.raises(ValueError, match="missing.*gate_slope_size2_w"):
        rate_experiment(TRUTH, 3, [50, 100, 200], 1, checkpoint=path, **kwargs)


def test_softmax_rate_summary_takes_claims_on_the_weighted_columns():
    claimed = {(K, c) for K, c, _, _ in SOFTMAX_CLAIMS}
    for K in (3, 4):
        for name in R2:
            assert (K, f"{name}_size2") in claimed and (K, f"{name}_size2_w") in claimed
    # exact power laws n^-1/8 and n^-1/4 with multiplicative noise: the fitted slopes are the claims
    # up to the noise (SD 0.05 on each of 20 x 6 log-values over a log-n range of 3.5, so the slope's
    # SD is about 0.05 / (sqrt(20) * 1.3) < 0.01; the band is 0.07)
    rng = np.random.default_rng(0)
    n = np.repeat([1000, 2000, 4000, 8000, 16000, 32000], 20)
    table = {"n": n}
    for name, r in R2.items():
        table[f"{name}_size2_w"] = n ** (-1 / (2 * r)) * np.exp(0.05 * rng.standard_normal(n.size))
    claims = [(3, f"{name}_size2_w", -1 / (2 * r), 0.07) for name, r in R2.items()]
    summary = softmax_rate_summary({3: table}, claims=claims, n_boot=200)
    assert list(summary["quantity"]) == [c[1] for c in claims]
    assert summary["within_target"].all()
    assert_allclose(summary["slope"], [c[2] for c in claims], atol=0.03)


# -- the parts of D2 (d2_mass + d2_single + d2_over) -------------------------------------------
def _perturbed(model, n_experts, seed, scale):
    """A start of ``n_experts`` atoms near ``model`` with noise ``scale`` on every part."""
    parts = (
        ("gate_mean", "gate_covariance", "expert", "variance")
        if isinstance(model, GaussianGatedMoE)
        else ("gate", "expert", "variance")
    )
    return model.near_truth(
        n_experts, 1, perturbation={p: (scale, 0.0) for p in parts}, random_state=seed
    )[0].get_params()


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize(
    "case", ["softmax K=3", "softmax K=4", "gaussian d=2 I K=5", "gaussian d=2 II K=5", "gaussian d=1 II K=4"]
)
def test_d2_parts_sum_to_d2(case, seed):
    from mixexp.theory import aistats2024_model
    from mixexp.theory.losses import gaussian_gating_d2, softmax_d2

    kind, *rest = case.split()
    K = int(rest[-1][2:])
    if kind == "softmax":
        truth = TRUTH
        fitted = _perturbed(truth, K, seed, 0.3)
        d2 = softmax_d2(fitted, truth)
        errors = softmax_cell_errors(fitted, truth)
    else:
        truth = aistats2024_model(int(rest[0][2:]), rest[1])
        fitted = _perturbed(truth, K, seed, 0.05)
        d2 = gaussian_gating_d2(fitted, truth, r_bar=None, r_tilde=None)
        errors = gaussian_cell_errors(fitted, truth, r_bar=None, r_tilde=None)
    row = summarize_cell_errors(errors, K)
    assert row["d2_mass"] + row["d2_single"] + row["d2_over"] == pytest.approx(d2, rel=1e-12)
    assert row["d2_over"] > 0 and row["d2_mass"] >= row["mass"]
    # the over-fitted part from its definition: weight x sum of the errors to the cell's powers
    over = errors.cell_size > 1
    naive = sum(
        errors.weight[i] * sum(errors.errors[p][i] ** errors.exponents[p][i] for p in errors.errors)
        for i in np.flatnonzero(over)
    )
    assert row["d2_over"] == pytest.approx(naive, rel=1e-12)


def test_d2_parts_of_an_exact_fit_have_no_over_fitted_part_and_sum_to_d1():
    from mixexp.theory import aistats2024_model
    from mixexp.theory.losses import gaussian_gating_d1, softmax_d1

    truth = aistats2024_model(2, "I")
    fitted = _perturbed(truth, 3, 0, 0.01)
    row = summarize_cell_errors(gaussian_cell_errors(fitted, truth), 3)
    assert row["d2_over"] == 0.0
    assert row["d2_mass"] + row["d2_single"] == pytest.approx(gaussian_gating_d1(fitted, truth), rel=1e-12)
    fitted = _perturbed(TRUTH, 2, 0, 0.01)
    row = summarize_cell_errors(softmax_cell_errors(fitted, TRUTH), 2)
    assert row["d2_mass"] + row["d2_single"] == pytest.approx(softmax_d1(fitted, TRUTH), rel=1e-12)


def test_d2_parts_beyond_the_exponent_table_are_nan_in_the_over_fitted_part_only():
    three = _three_atoms_in_cell0()
    row = summarize_cell_errors(softmax_cell_errors(three, TRUTH, r_bar={2: 4}), 3)
    assert np.isnan(row["d2_over"]) and np.isfinite(row["d2_mass"]) and row["d2_single"] == pytest.approx(0)
