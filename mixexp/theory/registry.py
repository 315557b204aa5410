"""Named experiments: ``python -m mixexp experiment NAME [--quick] [--n-jobs N] [--out DIR]``.

An experiment is a function ``run(quick, n_jobs, out, progress, random_state)``
that writes ``NAME.csv`` (the results) and ``NAME.png`` (a plot) into ``out``
and returns a dict of what it wrote and found. Checkpoints are kept in
``out/checkpoints``, so an interrupted run resumes where it stopped.
"""

import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ._tables import as_columns, rows_to_table, write_rows
from .experiments import generalization_curve, rate_experiment, summarize_by_n
from .rates import fit_rate
from .simulate import aistats2024_model, neurips2023_model


@dataclass(frozen=True)
class Experiment:
    """A registered experiment.

    Attributes
    ----------
    name : str
    description : str
    run : callable
        ``run(quick, n_jobs, out, progress, random_state) -> dict``.
    """

    name: str
    description: str
    run: object


#: name -> :class:`Experiment`
EXPERIMENTS = {}


def register_experiment(name, description):
    """Decorator registering ``run(quick, n_jobs, out, progress, random_state)`` under ``name``.

    Parameters
    ----------
    name : str
    description : str
        One line, shown by ``python -m mixexp experiment --help``.

    Returns
    -------
    callable
        The decorator (it returns the function unchanged).
    """

    def decorator(func):
        if name in EXPERIMENTS:
            raise ValueError(f"an experiment named {name!r} is already registered.")
        EXPERIMENTS[name] = Experiment(name, description, func)
        return func

    return decorator


def run_experiment(name, *, quick=False, n_jobs=None, out=".", progress=True, random_state=0):
    """Run a registered experiment.

    Parameters
    ----------
    name : str
        A key of :data:`EXPERIMENTS`.
    quick : bool, default=False
        The small version (seconds to a minute) instead of the full one.
    n_jobs : int, default=None
    out : str or Path, default="."
        Output directory (created if needed).
    progress : bool, default=True
    random_state : int, default=0

    Returns
    -------
    dict
        At least ``csv`` and ``png`` (paths) and ``seconds``.
    """
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; known: {sorted(EXPERIMENTS)}.")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    result = EXPERIMENTS[name].run(
        quick=quick, n_jobs=n_jobs, out=out, progress=progress, random_state=random_state
    )
    result["seconds"] = time.perf_counter() - start
    return result


def _pyplot():
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ImportError("the experiment plots need matplotlib (pip install matplotlib).") from None
    import matplotlib.pyplot as plt

    return plt


# -- NeurIPS 2023: softmax gating rates ------------------------------------------------------------
#: Claims of Nguyen, Nguyen & Ho (NeurIPS 2023) for their simulation, as
#: ``(n_experts, column, claimed slope, target)``: the target is an interval
#: for the exact-fitted loss and a tolerance around the claim otherwise.
SOFTMAX_CLAIMS = (
    (2, "loss", -0.5, (-0.6, -0.4)),
    (3, "loss", -0.5, 0.1),
    (3, "gate_slope_size2", -1 / 8, 0.07),
    (3, "intercept_size2", -1 / 8, 0.07),
    (3, "slope_size2", -1 / 4, 0.07),
    (3, "variance_size2", -1 / 4, 0.07),
    (4, "loss", -0.5, 0.1),
    (4, "gate_slope_size2", -1 / 8, 0.07),
    (4, "intercept_size2", -1 / 8, 0.07),
    (4, "slope_size2", -1 / 4, 0.07),
    (4, "variance_size2", -1 / 4, 0.07),
)

#: Sweep sizes of the softmax-gating experiment, sized for a 2-core machine
#: (quick: under a minute; full: about ten minutes); ``n_replicates_exact``
#: is the number of replicates for K = 2. The paper used 200 sample
#: sizes in [100, 1e5] (K = 2) or [1e4, 1e5] (K = 3, 4), 40 replicates and, for
#: K = 3, 4, the best of 5 near-truth starts (``n_init``).
SOFTMAX_SETTINGS = {
    "quick": {
        "n_grid": [1000, 2000, 4000, 8000, 16000],
        "n_replicates": 8,
        "n_replicates_exact": 24,
        "n_init": 1,
        "max_iter": 1000,
        "tol": 1e-7,
    },
    "full": {
        "n_grid": [2000, 4000, 8000, 16000, 32000, 64000],
        "n_replicates": 16,
        "n_replicates_exact": 40,
        "n_init": 1,
        "max_iter": 3000,
        "tol": 1e-8,
    },
}


def softmax_rate_tables(
    settings,
    n_experts=(2, 3, 4),
    *,
    n_jobs=None,
    random_state=0,
    progress=True,
    checkpoint_dir=None,
    split="random",
):
    """Run the NeurIPS 2023 sweeps (one table per number of fitted experts).

    Parameters
    ----------
    settings : dict
        ``n_grid``, ``n_replicates``, ``n_init``, ``max_iter``, ``tol`` and
        optionally ``n_replicates_exact``, the replicates for K = 2, whose fits
        are cheap (see :data:`SOFTMAX_SETTINGS`).
    n_experts : tuple of int, default=(2, 3, 4)
    n_jobs : int, default=None
    random_state : int, default=0
    progress : bool, default=True
    checkpoint_dir : str or Path, default=None
        Where to keep one checkpoint CSV per K (none when None).
    split : {"random", "balanced"}, default="random"

    Returns
    -------
    dict of int to table
    """
    truth = neurips2023_model()
    tables = {}
    for K in n_experts:
        checkpoint = None
        if checkpoint_dir is not None:
            checkpoint = Path(checkpoint_dir) / f"softmax_K{K}.csv"
        tables[K] = rate_experiment(
            truth,
            K,
            settings["n_grid"],
            settings.get("n_replicates_exact", settings["n_replicates"])
            if K == 2
            else settings["n_replicates"],
            init="near_truth",
            n_init=1 if K == 2 else settings["n_init"],
            split=split,
            max_iter=settings["max_iter"],
            tol=settings["tol"],
            n_jobs=n_jobs,
            random_state=random_state + K,
            progress=progress,
            checkpoint=checkpoint,
        )
    return tables


def _quiet_fit(table, column, **kwargs):
    """fit_rate without the warning about sample sizes with no cell of that size (expected here)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*no positive finite value", category=UserWarning)
        return fit_rate(table, column, **kwargs)


def softmax_rate_summary(tables, claims=SOFTMAX_CLAIMS, statistic="median", n_boot=2000):
    """Fitted slopes beside the paper's claims.

    Parameters
    ----------
    tables : dict of int to table
        From :func:`softmax_rate_tables`.
    claims : sequence, default=SOFTMAX_CLAIMS
    statistic : {"median", "mean"}, default="median"
    n_boot : int, default=2000

    Returns
    -------
    table : DataFrame or dict of ndarray
        ``n_experts``, ``quantity``, ``claim``, ``slope``, ``ci_low``,
        ``ci_high``, ``target_low``, ``target_high``, ``within_target``,
        ``claim_in_ci``, ``n_min``, ``n_max``, ``n_points``, ``replicates``,
        ``statistic``. Quantities with too little data get NaN slopes.
    """
    rows = []
    for K, column, claim, target in claims:
        if K not in tables:
            continue
        low, high = target if isinstance(target, tuple) else (claim - target, claim + target)
        row = {
            "n_experts": K,
            "quantity": column,
            "claim": claim,
            "target_low": low,
            "target_high": high,
            "statistic": statistic,
        }
        try:
            fit = _quiet_fit(tables[K], column, statistic=statistic, n_boot=n_boot)
        except ValueError:
            row.update(
                slope=np.nan,
                ci_low=np.nan,
                ci_high=np.nan,
                within_target=False,
                claim_in_ci=False,
                n_min=np.nan,
                n_max=np.nan,
                n_points=0,
                replicates=0,
            )
        else:
            row.update(
                slope=fit.slope,
                ci_low=fit.ci_low,
                ci_high=fit.ci_high,
                within_target=bool(low <= fit.slope <= high),
                claim_in_ci=fit.contains(claim),
                n_min=fit.n_min,
                n_max=fit.n_max,
                n_points=fit.n_points,
                replicates=fit.n_replicates,
            )
        rows.append(row)
    columns = [
        "n_experts",
        "quantity",
        "claim",
        "slope",
        "ci_low",
        "ci_high",
        "target_low",
        "target_high",
        "within_target",
        "claim_in_ci",
        "n_min",
        "n_max",
        "n_points",
        "replicates",
        "statistic",
    ]
    return rows_to_table(rows, columns)


def format_summary(summary):
    """The slope table as aligned text."""
    cols = as_columns(summary)
    lines = [
        f"{'K':>2} {'quantity':<18}{'paper':>8}{'ours':>9}  {'95% CI':<18}{'target':<18}{'ok':>4}  n range"
    ]
    for i in range(len(cols["quantity"])):
        lines.append(
            f"{int(cols['n_experts'][i]):>2} {cols['quantity'][i]:<18}{cols['claim'][i]:>8.3f}"
            f"{cols['slope'][i]:>9.3f}  [{cols['ci_low'][i]:+.3f}, {cols['ci_high'][i]:+.3f}]  "
            f"[{cols['target_low'][i]:+.3f}, {cols['target_high'][i]:+.3f}]  "
            f"{'yes' if cols['within_target'][i] else 'no':>4}  "
            f"{cols['n_min'][i]:g}-{cols['n_max'][i]:g} x {int(cols['replicates'][i])}"
        )
    return "\n".join(lines)


def plot_softmax_rates(tables, path=None, statistic="median"):
    """Log-log curves of the losses and per-parameter errors, with fitted slopes.

    Parameters
    ----------
    tables : dict of int to table
    path : str or Path, default=None
        Save the figure there when given.
    statistic : {"median", "mean"}, default="median"

    Returns
    -------
    matplotlib.figure.Figure
    """
    plt = _pyplot()
    from matplotlib.ticker import NullFormatter

    panels = [
        (
            K,
            ["loss"]
            if K == 2
            else ["loss", "gate_slope_size2", "intercept_size2", "slope_size2", "variance_size2"],
        )
        for K in sorted(tables)
    ]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.8), squeeze=False)
    for ax, (K, columns) in zip(axes[0], panels, strict=True):
        for column in columns:
            summary = as_columns(summarize_by_n(tables[K], column, statistic=statistic))
            ok = np.isfinite(summary["center"]) & (summary["center"] > 0)
            if ok.sum() < 2:
                continue
            n, center = summary["n"][ok], summary["center"][ok]
            try:
                fit = _quiet_fit(tables[K], column, statistic=statistic, n_boot=200)
                label = f"{column} ({fit.slope:+.2f})"
            except ValueError:
                fit, label = None, column
            (line,) = ax.loglog(n, center, "o", ms=4, label=label)
            ax.fill_between(n, summary["q25"][ok], summary["q75"][ok], color=line.get_color(), alpha=0.15)
            if fit is not None:
                ax.loglog(n, fit.predict(n), "-", color=line.get_color(), lw=1)
        kind = "exact-fitted, D1" if K == 2 else "over-fitted, D2"
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_title(f"K = {K} ({kind})")
        ax.set_xlabel("n")
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel(f"{statistic} over replicates")
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=110)
    return fig


def _concat(tables):
    rows = []
    for K in sorted(tables):
        cols = as_columns(tables[K])
        names = list(cols)
        rows.extend({k: cols[k][i] for k in names} for i in range(len(cols["n"])))
    return rows


@register_experiment(
    "softmax_gating_rates",
    "Nguyen, Nguyen & Ho (NeurIPS 2023): Voronoi-loss rates for K = 2, 3, 4 fitted experts",
)
def _softmax_gating_rates(quick, n_jobs, out, progress, random_state):
    settings = SOFTMAX_SETTINGS["quick" if quick else "full"]
    tables = softmax_rate_tables(
        settings,
        n_jobs=n_jobs,
        random_state=random_state,
        progress=progress,
        checkpoint_dir=out / "checkpoints",
    )
    rows = _concat(tables)
    columns = list(dict.fromkeys(k for row in rows for k in row))
    csv_path = out / "softmax_gating_rates.csv"
    write_rows(csv_path, rows, columns)
    summary = softmax_rate_summary(tables)
    cols = as_columns(summary)
    summary_path = out / "softmax_gating_rates_slopes.csv"
    write_rows(
        summary_path, [{k: cols[k][i] for k in cols} for i in range(len(cols["quantity"]))], list(cols)
    )
    png_path = out / "softmax_gating_rates.png"
    _pyplot().close(plot_softmax_rates(tables, png_path))
    text = format_summary(summary)
    print(text)
    return {"csv": csv_path, "png": png_path, "slopes": summary_path, "summary": text}


# -- generalisation -----------------------------------------------------------------------------------
GENERALIZATION_SETTINGS = {
    "quick": {"n_experts_grid": [1, 2, 3], "n_grid": [200, 1000], "n_replicates": 2, "n_test": 2000},
    "full": {
        "n_experts_grid": [1, 2, 3, 4, 5],
        "n_grid": [100, 300, 1000, 3000, 10000],
        "n_replicates": 10,
        "n_test": 20000,
    },
}


@register_experiment(
    "generalization", "held-out NLL and train/test gap against K and n on the NeurIPS 2023 model"
)
def _generalization(quick, n_jobs, out, progress, random_state):
    s = GENERALIZATION_SETTINGS["quick" if quick else "full"]
    table = generalization_curve(
        neurips2023_model(),
        s["n_experts_grid"],
        s["n_grid"],
        s["n_replicates"],
        n_test=s["n_test"],
        estimator_params={"n_init": 3},
        n_jobs=n_jobs,
        random_state=random_state,
        progress=progress,
        checkpoint=out / "checkpoints" / "generalization.csv",
    )
    cols = as_columns(table)
    csv_path = out / "generalization.csv"
    write_rows(csv_path, [{k: cols[k][i] for k in cols} for i in range(len(cols["n"]))], list(cols))
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for K in s["n_experts_grid"]:
        for ax, column in zip(axes, ("test_nll", "gap"), strict=True):
            summ = as_columns(
                summarize_by_n(
                    {k: v[cols["n_experts"] == K] for k, v in cols.items()}, column, statistic="mean"
                )
            )
            ax.plot(summ["n"], summ["center"], "o-", label=f"K = {K}")
    oracle = np.nanmean(cols["oracle_nll"])
    axes[0].axhline(oracle, color="k", ls=":", label="truth")
    axes[0].set_ylabel("held-out NLL (mean)")
    axes[1].set_ylabel("test - train NLL (mean)")
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xlabel("n")
        ax.legend(fontsize=7)
    fig.tight_layout()
    png_path = out / "generalization.png"
    fig.savefig(png_path, dpi=110)
    plt.close(fig)
    best = summarize_by_n(table, "test_nll", by=("n", "n_experts"), statistic="mean")
    return {"csv": csv_path, "png": png_path, "summary": best}


# -- AISTATS 2024: Gaussian gating rates -----------------------------------------------------------
#: The eight sweeps of Nguyen, Nguyen, Nguyen & Ho (AISTATS 2024), as ``(n_features,
#: setting, n_experts)``: the true models of :func:`~mixexp.theory.simulate.aistats2024_model`
#: (3 components; Type I: every gate mean non-zero, Type II: the first one zero) fitted with
#: 4 and 5 experts (``execute.sh`` of ``Trung-TinNGUYEN/CRPE-GMoE``).
GAUSSIAN_CASES = tuple((d, setting, K) for d in (1, 2) for setting in ("I", "II") for K in (4, 5))

#: The claim (the over-fitted Voronoi loss falls like n^-1/2), the range of the
#: slopes printed on the paper's figures and the issue's acceptance band.
GAUSSIAN_CLAIM = -0.5
GAUSSIAN_PAPER_SLOPES = (-0.517, -0.502)
GAUSSIAN_TARGET = (-0.55, -0.45)

#: Sweep sizes of the Gaussian-gating experiment, sized for a loaded 2-core
#: machine (quick: well under a minute; full: about a quarter of an hour). The
#: paper (``experiment.py`` of ``Trung-TinNGUYEN/CRPE-GMoE``) used 100 sample
#: sizes (5 in [100, 500], 95 evenly spaced in [500, 1e5]), 20 replicates and
#: its own EM from one near-truth start, whose stopping test (a change of the
#: parameters below 1e-5, compared with arrays that alias the current ones)
#: is met after the first iteration.
GAUSSIAN_SETTINGS = {
    "quick": {"n_grid": [200, 1000, 5000], "n_replicates": 3, "max_iter": 200, "tol": 1e-6},
    "full": {
        "n_grid": [100, 316, 1000, 3162, 10000, 31623, 100000],
        "n_replicates": 8,
        "max_iter": 1000,
        "tol": 1e-8,
    },
}


def gaussian_rate_tables(
    settings, cases=GAUSSIAN_CASES, *, n_jobs=None, random_state=0, progress=True, checkpoint_dir=None
):
    """Run the AISTATS 2024 sweeps (one table per ``(n_features, setting, n_experts)``).

    Each fit is EM on :class:`~mixexp.MixtureOfExpertsRegressor` with
    ``gate="gaussian"`` (full covariances) from one near-truth start
    (:meth:`~mixexp.theory.GaussianGatedMoE.near_truth`, the reference's
    perturbation), measured by the over-fitted loss
    :func:`~mixexp.theory.losses.gaussian_gating_d2` of the case's Type.

    Parameters
    ----------
    settings : dict
        ``n_grid``, ``n_replicates``, ``max_iter``, ``tol`` (see :data:`GAUSSIAN_SETTINGS`).
    cases : sequence of (int, str, int), default=GAUSSIAN_CASES
    n_jobs : int, default=None
    random_state : int, default=0
        Case ``i`` uses ``random_state + i``.
    progress : bool, default=True
    checkpoint_dir : str or Path, default=None
        Where to keep one checkpoint CSV per case (none when None).

    Returns
    -------
    dict of tuple to table
    """
    tables = {}
    for i, (d, setting, K) in enumerate(cases):
        checkpoint = None
        if checkpoint_dir is not None:
            checkpoint = Path(checkpoint_dir) / f"gaussian_d{d}_type{setting}_K{K}.csv"
        tables[(d, setting, K)] = rate_experiment(
            aistats2024_model(d, setting),
            K,
            settings["n_grid"],
            settings["n_replicates"],
            init="near_truth",
            max_iter=settings["max_iter"],
            tol=settings["tol"],
            n_jobs=n_jobs,
            random_state=random_state + i,
            progress=progress,
            checkpoint=checkpoint,
        )
    return tables


def gaussian_rate_summary(tables, statistic="mean", n_boot=2000, target=GAUSSIAN_TARGET):
    """Fitted slopes of the over-fitted loss beside the paper's, one row per case.

    Parameters
    ----------
    tables : dict of tuple to table
        From :func:`gaussian_rate_tables`.
    statistic : {"mean", "median"}, default="mean"
        The paper's figures fit the mean over replicates.
    n_boot : int, default=2000
    target : tuple of float, default=GAUSSIAN_TARGET

    Returns
    -------
    table : DataFrame or dict of ndarray
        ``n_features``, ``setting``, ``n_experts``, ``claim``, ``paper_low``,
        ``paper_high``, ``slope``, ``ci_low``, ``ci_high``, ``within_target``,
        ``claim_in_ci``, ``n_min``, ``n_max``, ``n_points``, ``replicates``,
        ``converged`` (fraction of the fits that met ``tol``), ``statistic``.
    """
    rows = []
    for (d, setting, K), table in tables.items():
        fit = fit_rate(table, "loss", statistic=statistic, n_boot=n_boot)
        rows.append(
            {
                "n_features": d,
                "setting": setting,
                "n_experts": K,
                "claim": GAUSSIAN_CLAIM,
                "paper_low": GAUSSIAN_PAPER_SLOPES[0],
                "paper_high": GAUSSIAN_PAPER_SLOPES[1],
                "slope": fit.slope,
                "ci_low": fit.ci_low,
                "ci_high": fit.ci_high,
                "within_target": bool(target[0] <= fit.slope <= target[1]),
                "claim_in_ci": fit.contains(GAUSSIAN_CLAIM),
                "n_min": fit.n_min,
                "n_max": fit.n_max,
                "n_points": fit.n_points,
                "replicates": fit.n_replicates,
                "converged": float(np.mean(as_columns(table)["converged"])),
                "statistic": statistic,
            }
        )
    columns = [
        "n_features",
        "setting",
        "n_experts",
        "claim",
        "paper_low",
        "paper_high",
        "slope",
        "ci_low",
        "ci_high",
        "within_target",
        "claim_in_ci",
        "n_min",
        "n_max",
        "n_points",
        "replicates",
        "converged",
        "statistic",
    ]
    return rows_to_table(rows, columns)


def format_gaussian_summary(summary, target=GAUSSIAN_TARGET):
    """The Gaussian-gating slope table as aligned text."""
    cols = as_columns(summary)
    lines = [
        f"{'d':>2} {'type':<5}{'K':>2}  {'paper':<17}{'ours':>7}  {'95% CI':<18}"
        f"{f'in [{target[0]:+.2f}, {target[1]:+.2f}]':<18}{'conv':>5}  n range"
    ]
    for i in range(len(cols["slope"])):
        lines.append(
            f"{int(cols['n_features'][i]):>2} {cols['setting'][i]:<5}{int(cols['n_experts'][i]):>2}  "
            f"[{cols['paper_low'][i]:+.3f}, {cols['paper_high'][i]:+.3f}]"
            f"{cols['slope'][i]:>7.3f}  [{cols['ci_low'][i]:+.3f}, {cols['ci_high'][i]:+.3f}]  "
            f"{'yes' if cols['within_target'][i] else 'no':<18}{cols['converged'][i]:>5.2f}  "
            f"{cols['n_min'][i]:g}-{cols['n_max'][i]:g} x {int(cols['replicates'][i])}"
        )
    return "\n".join(lines)


def plot_gaussian_rates(tables, path=None, statistic="mean"):
    """Log-log curves of the over-fitted loss for each case, with fitted slopes.

    One panel per ``(n_features, setting)``, one curve per number of fitted
    experts: the per-n ``statistic`` of the loss, its 25-75% band and the fitted
    power law.

    Parameters
    ----------
    tables : dict of tuple to table
    path : str or Path, default=None
        Save the figure there when given.
    statistic : {"mean", "median"}, default="mean"

    Returns
    -------
    matplotlib.figure.Figure
    """
    plt = _pyplot()
    from matplotlib.ticker import NullFormatter

    panels = sorted({(d, setting) for d, setting, _ in tables})
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6), squeeze=False, sharey=True)
    for ax, (d, setting) in zip(axes[0], panels, strict=True):
        for key in sorted(k for k in tables if k[:2] == (d, setting)):
            summary = as_columns(summarize_by_n(tables[key], "loss", statistic=statistic))
            n, center = summary["n"], summary["center"]
            fit = fit_rate(tables[key], "loss", statistic=statistic, n_boot=200)
            (line,) = ax.loglog(n, center, "o", ms=4, label=f"K = {key[2]} ({fit.slope:+.3f})")
            ax.fill_between(n, summary["q25"], summary["q75"], color=line.get_color(), alpha=0.15)
            ax.loglog(n, fit.predict(n), "-", color=line.get_color(), lw=1)
        ref = np.array([n[0], n[-1]], dtype=float)
        ax.loglog(ref, center[0] * (ref / ref[0]) ** -0.5, "k:", lw=1, label="$n^{-1/2}$")
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_title(f"d = {d}, Type {setting}")
        ax.set_xlabel("n")
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel(f"Voronoi loss ({statistic} over replicates)")
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=110)
    return fig


@register_experiment(
    "gaussian_gating_rates",
    "Nguyen, Nguyen, Nguyen & Ho (AISTATS 2024): Voronoi-loss rates, Gaussian gate, d = 1, 2, Type I/II, "
    "K = 4, 5",
)
def _gaussian_gating_rates(quick, n_jobs, out, progress, random_state):
    settings = GAUSSIAN_SETTINGS["quick" if quick else "full"]
    tables = gaussian_rate_tables(
        settings,
        GAUSSIAN_CASES,
        n_jobs=n_jobs,
        random_state=random_state,
        progress=progress,
        checkpoint_dir=out / "checkpoints",
    )
    rows = []
    for (d, setting, _), table in tables.items():
        cols = as_columns(table)
        rows.extend(
            {"n_features": d, "setting": setting, **{k: cols[k][i] for k in cols}}
            for i in range(len(cols["n"]))
        )
    columns = list(dict.fromkeys(k for row in rows for k in row))
    csv_path = out / "gaussian_gating_rates.csv"
    write_rows(csv_path, rows, columns)
    summary = gaussian_rate_summary(tables)
    cols = as_columns(summary)
    summary_path = out / "gaussian_gating_rates_slopes.csv"
    write_rows(summary_path, [{k: cols[k][i] for k in cols} for i in range(len(cols["slope"]))], list(cols))
    png_path = out / "gaussian_gating_rates.png"
    _pyplot().close(plot_gaussian_rates(tables, png_path))
    text = format_gaussian_summary(summary)
    print(text)
    return {"csv": csv_path, "png": png_path, "slopes": summary_path, "summary": text}
