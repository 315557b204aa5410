"""Gaussian-gated rate sweeps (AISTATS 2024): true models, estimator conversion, starts, registry."""

import warnings

import numpy as np
import pytest
from scipy.stats import multivariate_normal, norm

from mixexp import MixtureOfExpertsRegressor
from mixexp.cli import main
from mixexp.theory import (
    GaussianGatedMoE,
    _tables,
    aistats2024_model,
    fit_rate,
    gaussian_gating_d2,
    rate_experiment,
    registry,
)
from mixexp.theory.registry import (
    EXPERIMENTS,
    GAUSSIAN_CASES,
    GAUSSIAN_SETTINGS,
    format_gaussian_summary,
    gaussian_rate_summary,
    gaussian_rate_tables,
    plot_gaussian_rates,
)
from mixexp.theory.simulate import PAPER_PERTURBATION_GAUSSIAN


def _joint_log_density(model, X, y):
    """log p(x, y) of a Gaussian-gated model, written independently with scipy."""
    out = np.zeros((X.shape[0], model.n_experts))
    for k in range(model.n_experts):
        out[:, k] = (
            np.log(model.weights[k])
            + multivariate_normal(model.means[k], model.covariances[k]).logpdf(X).reshape(-1)
            + norm(
                model.expert_coef[k, 0] + X @ model.expert_coef[k, 1:], np.sqrt(model.noise_variance[k])
            ).logpdf(y)
        )
    return np.logaddexp.reduce(out, axis=1)


# -- the paper's true models ----------------------------------------------------------------------
def test_aistats2024_models_match_the_reference_values():
    # models.py of Trung-TinNGUYEN/CRPE-GMoE prints these for its model 3 (d = 2, Type I)
    m = aistats2024_model(2, "I")
    np.testing.assert_allclose(m.expert_coef[:, 0], [0.34045395, -0.32857143, 0.2], atol=1e-8)
    np.testing.assert_allclose(m.expert_coef[:, 1:], [[0.40453951] * 2, [-0.71428571] * 2, [0, 0]], atol=1e-8)
    np.testing.assert_allclose(m.noise_variance, [0.00887672, 0.02642857, 0.0175], atol=1e-8)
    np.testing.assert_allclose(m.means, [[-0.1, -0.1], [0.1, 0.1], [0.5, 0.5]])
    np.testing.assert_allclose(m.covariances[0], 0.042824 * np.eye(2))
    np.testing.assert_allclose(m.weights, [0.3, 0.4, 0.3])
    # Type II: the first gate mean is zero and b_1, nu_1 are written with it (models 2 and 4)
    m2 = aistats2024_model(1, "II")
    np.testing.assert_allclose(m2.means[:, 0], [0.0, 0.1, 0.5])
    np.testing.assert_allclose(m2.expert_coef[0], [0.3, 0.017324 / 0.042824])
    np.testing.assert_allclose(m2.noise_variance[0], 0.0081759 - 0.017324**2 / 0.042824)
    # d = 1 and d = 2 share the expert intercepts and variances
    np.testing.assert_allclose(aistats2024_model(1, "I").noise_variance, m.noise_variance)
    assert aistats2024_model(2, "II").means[0].tolist() == [0.0, 0.0]


@pytest.mark.parametrize("args", [(3, "I"), (1, "III"), (2, 1)])
def test_aistats2024_model_rejects_unknown_settings(args):
    with pytest.raises(ValueError, match="n_features, setting"):
        aistats2024_model(*args)


def test_log_marginal_x_is_the_gaussian_mixture_density():
    m = aistats2024_model(2, "II")
    X, _ = m.sample(50, random_state=0)
    expected = np.logaddexp.reduce(
        [
            np.log(m.weights[k]) + multivariate_normal(m.means[k], m.covariances[k]).logpdf(X)
            for k in range(3)
        ],
        axis=0,
    )
    np.testing.assert_allclose(m.log_marginal_x(X), expected, rtol=1e-12)


# -- conversion to and from estimators --------------------------------------------------------------
@pytest.mark.parametrize("d", [1, 2])
def test_to_estimator_sets_the_model_and_from_estimator_reads_it_back(d):
    m = aistats2024_model(d, "I")
    X, y = m.sample(800, random_state=1)
    est = m.to_estimator(X, y)
    assert est.gate == "gaussian" and est.n_iter_ == 0 and not est.converged_
    back = GaussianGatedMoE.from_estimator(est)
    for key, value in m.get_params().items():
        np.testing.assert_allclose(back.get_params()[key], value, rtol=1e-10, atol=1e-12)
    # lower_bound_ is the mean joint log-likelihood of (x, y) (no penalty by default)
    assert est.lower_bound_ == pytest.approx(_joint_log_density(m, X, y).mean(), rel=1e-10)
    np.testing.assert_allclose(est.predict(X), m.mean(X), rtol=1e-10, atol=1e-12)


def test_warm_start_from_to_estimator_runs_em_from_the_model():
    # one EM iteration from the model: the new weights are the mean responsibilities and the
    # new gate means the responsibility-weighted means of x (closed-form M-step)
    m = aistats2024_model(1, "II")
    X, y = m.sample(600, random_state=2)
    start, _ = m.near_truth(4, 600, random_state=3)
    est = start.to_estimator(X, y, max_iter=1)
    est.set_params(warm_start=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(X, y)
    resp = start.responsibilities(X, y)
    np.testing.assert_allclose(est.gate_weights_, resp.mean(axis=0), rtol=1e-8)
    np.testing.assert_allclose(est.gate_means_[:, 0], resp.T @ X[:, 0] / resp.sum(axis=0), rtol=1e-8)
    assert est.n_iter_ == 1


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_from_estimator_accepts_diagonal_covariances_and_rejects_other_gates():
    m = aistats2024_model(2, "I")
    X, y = m.sample(600, random_state=4)
    est = MixtureOfExpertsRegressor(3, gate="gaussian", gate_covariance_type="diag", random_state=0).fit(X, y)
    model = GaussianGatedMoE.from_estimator(est)
    assert model.covariances.shape == (3, 2, 2)
    np.testing.assert_allclose(np.diagonal(model.covariances, axis1=1, axis2=2), est.gate_covariances_)
    assert np.all(model.covariances[:, 0, 1] == 0)
    softmax = MixtureOfExpertsRegressor(3, random_state=0, max_iter=5).fit(X, y)
    with pytest.raises(ValueError, match="gate='gaussian'"):
        GaussianGatedMoE.from_estimator(softmax)
    with pytest.raises(ValueError, match="not fitted"):
        GaussianGatedMoE.from_estimator(MixtureOfExpertsRegressor(3, gate="gaussian"))
    with pytest.raises(ValueError, match="gate_covariance_type='full'"):
        m.to_estimator(X, y, gate_covariance_type="diag")


# -- near-truth starts ---------------------------------------------------------------------------------
def test_near_truth_without_noise_is_an_exact_representation_of_the_truth():
    m = aistats2024_model(2, "II")
    zero = {part: (0.0, 0.0) for part in PAPER_PERTURBATION_GAUSSIAN}
    start, assignment = m.near_truth(5, 1000, split="balanced", perturbation=zero)
    assert assignment.tolist() == [0, 0, 1, 1, 2]
    np.testing.assert_allclose(start.weights, [0.15, 0.15, 0.2, 0.2, 0.3])
    X, y = m.sample(300, random_state=5)
    np.testing.assert_allclose(start.log_density(X, y), m.log_density(X, y), rtol=1e-12)
    np.testing.assert_allclose(start.log_marginal_x(X), m.log_marginal_x(X), rtol=1e-12)
    assert gaussian_gating_d2(start, m) == pytest.approx(0.0, abs=1e-12)


def test_near_truth_noise_has_the_reference_scale():
    # the noise on the gate means is N(0, (c n^-e)^2): over N = 400 starts x 4 atoms x 2
    # coordinates = 3200 draws, the standard deviation of (mean - true mean) / (c n^-e) has a
    # standard error of about 1 / sqrt(2 N) = 0.0125; 0.06 is about five of them
    m = aistats2024_model(2, "I")
    n, (c, e) = 5000, PAPER_PERTURBATION_GAUSSIAN["gate_mean"]
    rng = np.random.RandomState(0)
    z, var_noise = [], []
    for _ in range(400):
        start, assignment = m.near_truth(4, n, random_state=rng)
        assert set(assignment.tolist()) == {0, 1, 2}
        z.append((start.means - m.means[assignment]) / (c * n**-e))
        var_noise.append(start.noise_variance - m.noise_variance[assignment])
        np.testing.assert_allclose(start.weights.sum(), 1.0)
    assert np.std(np.concatenate(z).ravel()) == pytest.approx(1.0, abs=0.06)
    assert np.min(var_noise) >= 0  # the variance noise is added in absolute value


def test_near_truth_rejects_bad_arguments():
    m = aistats2024_model(1, "I")
    with pytest.raises(ValueError, match="at least the true number"):
        m.near_truth(2, 100)
    with pytest.raises(ValueError, match="unknown perturbation parts"):
        m.near_truth(4, 100, perturbation={"gate": (0.1, 0.0)})
    with pytest.raises(ValueError, match="split"):
        m.near_truth(4, 100, split="even")


# -- sweeps ----------------------------------------------------------------------------------------------
def test_rate_experiment_fits_gaussian_gated_models_by_em():
    m = aistats2024_model(1, "I")
    table = rate_experiment(m, 4, [150, 400], 1, max_iter=50, tol=1e-6, progress=False, random_state=0)
    assert table["loss"].notna().all() and (table["loss"] > 0).all()
    assert (table["loss"] == table["d2"]).all()
    assert {"gate_mean_size2", "gate_covariance_size1", "variance_size2"} <= set(table.columns)
    assert (table["n_iter"] >= 1).all()
    kmeans = rate_experiment(m, 3, [400], 1, init="kmeans", max_iter=50, progress=False, random_state=0)
    assert (kmeans["loss"] == kmeans["d1"]).all() and np.isfinite(kmeans["loss"]).all()
    # diagonal gate covariances (k-means starts only) are measured as diagonal matrices
    m2 = aistats2024_model(2, "I")
    diag = rate_experiment(
        m2,
        3,
        [400],
        1,
        init="kmeans",
        max_iter=50,
        progress=False,
        random_state=0,
        estimator_params={"gate_covariance_type": "diag"},
    )
    assert np.isfinite(diag["loss"]).all() and diag["gate_covariance_size1"].notna().any()


def test_exact_fitted_loss_falls_with_n():
    # D1 of the exact-fitted MLE is of order n^-1/2: from n = 300 to n = 30000 it falls by about
    # 10x; the median over 3 replicates at 30000 below that at 300 fails only if the fit does not
    # approach the truth at all
    m = aistats2024_model(1, "I")
    table = rate_experiment(m, 3, [300, 30000], 3, max_iter=300, tol=1e-8, progress=False, random_state=1)
    med = table.groupby("n")["loss"].median()
    assert med[30000] < 0.5 * med[300]


def test_registry_runs_a_small_gaussian_sweep_and_summarises_it():
    assert "gaussian_gating_rates" in EXPERIMENTS
    assert len(GAUSSIAN_CASES) == 8 and set(GAUSSIAN_SETTINGS) == {"quick", "full"}
    settings = {"n_grid": [150, 300, 600], "n_replicates": 1, "max_iter": 30, "tol": 1e-6}
    tables = gaussian_rate_tables(settings, cases=[(1, "II", 4)], progress=False, random_state=0)
    assert list(tables) == [(1, "II", 4)] and len(tables[(1, "II", 4)]) == 3
    summary = gaussian_rate_summary(tables, n_boot=50)
    assert summary["setting"].tolist() == ["II"] and np.isfinite(summary["slope"]).all()
    assert "1 II" in format_gaussian_summary(summary)


def test_gaussian_rate_tables_takes_replicate_counts_per_n(tmp_path):
    # {"default": 2, 300: 1}: two replicates at n = 150, one at n = 300, and replicate r at n is the
    # same fit (same seed, same loss) as in a run with an int count, so checkpoints are shared
    base = {"n_grid": [150, 300], "max_iter": 5, "tol": 1e-6}
    case = [(1, "I", 4)]
    mixed = gaussian_rate_tables(
        {**base, "n_replicates": {"default": 2, 300: 1}}, case, progress=False, random_state=3,
        checkpoint_dir=tmp_path,
    )[case[0]]
    assert list(zip(mixed["n"], mixed["replicate"], strict=True)) == [(150, 0), (150, 1), (300, 0)]
    plain = gaussian_rate_tables({**base, "n_replicates": 2}, case, progress=False, random_state=3)[case[0]]
    np.testing.assert_array_equal(mixed["seed"], plain["seed"].iloc[:3])
    np.testing.assert_allclose(mixed["loss"], plain["loss"].iloc[:3], rtol=1e-12)
    assert len(_tables.read_rows(tmp_path / "gaussian_d1_typeI_K4.csv")) == 3
    assert GAUSSIAN_SETTINGS["full"]["n_replicates"] >= 12
    with pytest.raises(ValueError, match="'default'"):
        gaussian_rate_tables({**base, "n_replicates": {300: 1}}, case, progress=False)


def test_gaussian_rate_summary_recovers_a_known_slope():
    # a table that is exactly 0.3 n^-0.5 times lognormal noise of SD 0.05 over 20 replicates at 5 n:
    # the fitted slope's standard error is about 0.05 / sqrt(20) / sd(log n) ~ 0.006, so 0.03 is safe
    rng = np.random.default_rng(0)
    n = np.repeat([100, 1000, 3000, 10000, 100000], 20)
    table = {
        "n": n,
        "replicate": np.tile(np.arange(20), 5),
        "loss": 0.3 * n**-0.5 * np.exp(0.05 * rng.standard_normal(n.size)),
        "converged": np.ones(n.size, dtype=bool),
    }
    summary = gaussian_rate_summary({(2, "I", 5): table}, n_boot=200)
    assert summary["slope"].iloc[0] == pytest.approx(-0.5, abs=0.03)
    assert bool(summary["within_target"].iloc[0]) and bool(summary["claim_in_ci"].iloc[0])
    assert summary["converged"].iloc[0] == 1.0
    assert fit_rate(table, statistic="mean").slope == pytest.approx(summary["slope"].iloc[0])
    steep = {**table, "loss": table["loss"] * (n / 100.0) ** -0.2}
    assert not bool(gaussian_rate_summary({(2, "I", 5): steep}, n_boot=50)["within_target"].iloc[0])


def test_plot_gaussian_rates_draws_one_panel_per_model(tmp_path):
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(1)
    n = np.repeat([100, 1000, 10000], 4)
    tables = {
        key: {"n": n, "loss": n**-0.5 * np.exp(0.1 * rng.standard_normal(n.size))}
        for key in [(1, "I", 4), (1, "I", 5), (2, "II", 4)]
    }
    path = tmp_path / "rates.png"
    fig = plot_gaussian_rates(tables, path)
    assert path.stat().st_size > 0
    assert [ax.get_title() for ax in fig.axes] == ["d = 1, Type I", "d = 2, Type II"]
    plt.close(fig)


def test_cli_runs_the_gaussian_experiment(tmp_path, monkeypatch, capsys):
    tiny = {"n_grid": [150, 300, 600], "n_replicates": 1, "max_iter": 20, "tol": 1e-6}
    monkeypatch.setitem(registry.GAUSSIAN_SETTINGS, "quick", tiny)
    monkeypatch.setattr(registry, "GAUSSIAN_CASES", ((1, "I", 4), (2, "II", 5)))
    main(["experiment", "gaussian_gating_rates", "--quick", "--out", str(tmp_path)])
    assert "2 II" in capsys.readouterr().out
    rows = _tables.read_rows(tmp_path / "gaussian_gating_rates.csv")
    assert len(rows) == 6 and {(r["n_features"], r["setting"], r["n_experts"]) for r in rows} == {
        (1, "I", 4),
        (2, "II", 5),
    }
    slopes = _tables.read_rows(tmp_path / "gaussian_gating_rates_slopes.csv")
    assert [s["n_experts"] for s in slopes] == [4, 5] and slopes[0]["claim"] == -0.5
    assert (tmp_path / "gaussian_gating_rates.png").stat().st_size > 1000
    assert (tmp_path / "checkpoints" / "gaussian_d2_typeII_K5.csv").exists()
