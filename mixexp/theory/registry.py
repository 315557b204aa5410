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

from ._tables import as_columns, rows_to_table, table_rows, write_rows, write_table
from .convergence import em_convergence
from .experiments import _run_cells, generalization_curve, rate_experiment, summarize_by_n
from .rates import fit_rate
from .simulate import SoftmaxGatedMoE, TopKSoftmaxMoE, aistats2024_model, neurips2023_model


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
#: for the exact-fitted loss and a tolerance around the claim otherwise. The
#: per-parameter rates are claimed for the largest error in a cell of two
#: atoms (``*_size2``) and for the error weighted as in D2 (``*_size2_w``,
#: see :func:`~mixexp.theory.losses.summarize_cell_errors`), which is the
#: quantity the theory bounds.
SOFTMAX_CLAIMS = (
    (2, "loss", -0.5, (-0.6, -0.4)),
    (3, "loss", -0.5, 0.1),
    (3, "gate_slope_size2", -1 / 8, 0.07),
    (3, "intercept_size2", -1 / 8, 0.07),
    (3, "slope_size2", -1 / 4, 0.07),
    (3, "variance_size2", -1 / 4, 0.07),
    (3, "gate_slope_size2_w", -1 / 8, 0.07),
    (3, "intercept_size2_w", -1 / 8, 0.07),
    (3, "slope_size2_w", -1 / 4, 0.07),
    (3, "variance_size2_w", -1 / 4, 0.07),
    (4, "loss", -0.5, 0.1),
    (4, "gate_slope_size2", -1 / 8, 0.07),
    (4, "intercept_size2", -1 / 8, 0.07),
    (4, "slope_size2", -1 / 4, 0.07),
    (4, "variance_size2", -1 / 4, 0.07),
    (4, "gate_slope_size2_w", -1 / 8, 0.07),
    (4, "intercept_size2_w", -1 / 8, 0.07),
    (4, "slope_size2_w", -1 / 4, 0.07),
    (4, "variance_size2_w", -1 / 4, 0.07),
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

#: ``estimator_params`` of the converged sweeps: SQUAREM keeping only extrapolations that
#: lose no objective (``squarem_max_decrease=0``), the scheme before the default became
#: the R package's 1 nat; the committed notebooks' converged fits were made with it.
SQUAREM_MONOTONE = {"squarem_max_decrease": 0.0}

#: The over-fitted softmax sweeps run to convergence: SQUAREM (the same EM steps,
#: extrapolated) until one step changes the *total* log-likelihood by less than
#: 1e-7 nats (``tol_scale="total"``), at most 20000 EM steps. The sample sizes of
#: :data:`SOFTMAX_SETTINGS` and its seeds, so the samples and starts are the same.
#: SQUAREM with ``squarem_max_decrease=0`` (every extrapolation monotone), the
#: scheme the committed notebook's fits were run with (:data:`SQUAREM_MONOTONE`).
SOFTMAX_CONVERGED_SETTINGS = {
    "quick": {**SOFTMAX_SETTINGS["quick"], "n_grid": [1000, 2000, 4000, 8000], "n_replicates": 6,
              "solver": "squarem", "tol": 1e-7, "tol_scale": "total", "max_iter": 20000,
              "estimator_params": SQUAREM_MONOTONE},
    "full": {**SOFTMAX_SETTINGS["full"], "n_replicates": 40, "solver": "squarem", "tol": 1e-7,
             "tol_scale": "total", "max_iter": 20000, "estimator_params": SQUAREM_MONOTONE},
}  # fmt: skip


def _solver_options(settings):
    """The :func:`~mixexp.theory.rate_experiment` options a sweep's settings may set, with their defaults."""
    return {
        "solver": settings.get("solver", "em"),
        "tol_scale": settings.get("tol_scale", "mean"),
        "estimator_params": settings.get("estimator_params"),
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
        are cheap (see :data:`SOFTMAX_SETTINGS`), and ``solver``,
        ``tol_scale`` and ``estimator_params`` of
        :func:`~mixexp.theory.rate_experiment` (default ``"em"``, ``"mean"``
        and none; see :data:`SOFTMAX_CONVERGED_SETTINGS`).
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
            **_solver_options(settings),
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


def _plot_rate_columns(ax, table, columns, statistic):
    """Log-log centres (with the 25-75% band) of ``columns`` against n, each with its fitted slope."""
    for column in columns:
        summary = as_columns(summarize_by_n(table, column, statistic=statistic))
        ok = np.isfinite(summary["center"]) & (summary["center"] > 0)
        if ok.sum() < 2:
            continue
        n, center = summary["n"][ok], summary["center"][ok]
        try:
            fit = _quiet_fit(table, column, statistic=statistic, n_boot=200)
            label = f"{column} ({fit.slope:+.2f})"
        except ValueError:
            fit, label = None, column
        (line,) = ax.loglog(n, center, "o", ms=4, label=label)
        ax.fill_between(n, summary["q25"][ok], summary["q75"][ok], color=line.get_color(), alpha=0.15)
        if fit is not None:
            ax.loglog(n, fit.predict(n), "-", color=line.get_color(), lw=1)


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
        _plot_rate_columns(ax, tables[K], columns, statistic)
        kind = "exact-fitted, D1" if K == 2 else "over-fitted, D2"
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_title(f"K = {K} ({kind})")
        ax.set_xlabel("n")
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel(f"{statistic} over replicates")
    return _save_figure(fig, path)


def _concat(tables):
    return [row for K in sorted(tables) for row in table_rows(tables[K])]


def _save_figure(fig, path):
    """``fig`` laid out, and saved to ``path`` when given."""
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=110)
    return fig


def _report(out, name, plot, text, **outputs):
    """The end of an experiment: ``plot(path)`` saved as ``out/name.png``, ``text`` printed.

    Returns ``{"csv": out/name.csv, "png": ..., **outputs, "summary": text}``.
    """
    png_path = out / f"{name}.png"
    _pyplot().close(plot(png_path))
    print(text)
    return {"csv": out / f"{name}.csv", "png": png_path, **outputs, "summary": text}


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
    write_rows(out / "softmax_gating_rates.csv", rows, list(dict.fromkeys(k for row in rows for k in row)))
    summary = softmax_rate_summary(tables)
    write_table(out / "softmax_gating_rates_slopes.csv", summary)
    return _report(
        out, "softmax_gating_rates", lambda path: plot_softmax_rates(tables, path), format_summary(summary),
        slopes=out / "softmax_gating_rates_slopes.csv",
    )  # fmt: skip


# -- generalisation -----------------------------------------------------------------------------------
class HeteroscedasticSine:
    """``y = sin(2 pi x) + (0.25 + 0.5 x) * N(0, 1)``, ``x ~ Uniform[0, 1]``: data from no mixture of experts.

    The truth of the generalization experiment and of
    ``notebooks/06_generalization.ipynb``: the best number of experts grows
    with the sample size. It has what
    :func:`~mixexp.theory.generalization_curve` uses: ``sample``,
    ``log_density`` (the truth's held-out NLL), ``mean`` (the reference of the
    approximation error) and ``get_params`` (names the data in a checkpoint).
    """

    def mean(self, X):
        """``E[y | x] = sin(2 pi x)``; ``X`` of shape (n, 1)."""
        return np.sin(2 * np.pi * X[:, 0])

    def sd(self, X):
        """The noise standard deviation ``0.25 + 0.5 x``."""
        return 0.25 + 0.5 * X[:, 0]

    def sample(self, n, random_state):
        """``(X, y)`` of ``n`` draws; ``random_state`` is a RandomState."""
        X = random_state.uniform(0.0, 1.0, size=(n, 1))
        return X, self.mean(X) + self.sd(X) * random_state.standard_normal(n)

    def log_density(self, X, y):
        """``log p(y | x)``, shape (n,)."""
        sd = self.sd(X)
        return -0.5 * np.log(2 * np.pi * sd**2) - 0.5 * ((y - self.mean(X)) / sd) ** 2

    def get_params(self):
        """A description of the data for checkpoints."""
        return {"mean": "sin(2 pi x)", "sd": "0.25 + 0.5 x"}


#: Sweep sizes of the generalization experiment (those of ``notebooks/06_generalization.ipynb``;
#: quick: seconds of fitting; full: about five minutes on 2 cores).
GENERALIZATION_SETTINGS = {
    "quick": {"n_experts_grid": [1, 2, 3, 5], "n_grid": [200, 2000], "n_replicates": 2, "n_test": 5000},
    "full": {
        "n_experts_grid": [1, 2, 3, 4, 5, 6, 7, 8, 10],
        "n_grid": [100, 300, 1000, 3000, 10000, 30000],
        "n_replicates": 8,
        "n_test": 20000,
    },
}

#: Where the fitted mean is compared with ``sin(2 pi x)`` (``mean_ise``).
GENERALIZATION_GRID = np.linspace(0.0, 1.0, 1001)[:, None]


def _mean_se_by(cols, column, n, ks):
    """Mean over replicates of ``column`` for each K at sample size ``n``, and its standard error."""
    mean, se = [], []
    for K in ks:
        v = np.asarray(cols[column], dtype=float)[(cols["n"] == n) & (cols["n_experts"] == K)]
        v = v[np.isfinite(v)]
        mean.append(v.mean() if v.size else np.nan)
        se.append(v.std(ddof=1) / np.sqrt(v.size) if v.size > 1 else 0.0)
    return np.array(mean), np.array(se)


def generalization_best_k(table):
    """The best number of experts at each sample size of a :func:`~mixexp.theory.generalization_curve` table.

    Parameters
    ----------
    table : table
        With ``oracle_nll`` (the data object has ``log_density``).

    Returns
    -------
    table : DataFrame or dict of ndarray
        ``n``, ``best_k`` (smallest mean excess held-out NLL), ``excess_nll`` and
        ``se`` (its mean and standard error over replicates, 0 with one
        replicate), ``one_se_k`` (the smallest K within one standard error of
        the best) and ``bic_k`` (smallest mean training BIC).
    """
    cols = as_columns(table)
    ks = np.unique(cols["n_experts"])
    rows = []
    for n in np.unique(cols["n"]):
        mean, se = _mean_se_by(cols, "excess_nll", n, ks)
        bic, _ = _mean_se_by(cols, "bic", n, ks)
        best = int(np.nanargmin(mean))
        rows.append(
            {
                "n": int(n),
                "best_k": int(ks[best]),
                "excess_nll": float(mean[best]),
                "se": float(se[best]),
                "one_se_k": int(ks[np.flatnonzero(mean <= mean[best] + se[best])[0]]),
                "bic_k": int(ks[np.nanargmin(bic)]),
            }
        )
    return rows_to_table(rows, ["n", "best_k", "excess_nll", "se", "one_se_k", "bic_k"])


def plot_generalization(table, path=None):
    """Excess held-out NLL, train/test gap and error of the mean against K, one curve per n.

    Parameters
    ----------
    table : table
        From :func:`~mixexp.theory.generalization_curve` with ``oracle_nll``
        and ``mean_ise`` (a data object with ``log_density`` and ``mean``).
    path : str or Path, default=None
        Save the figure there when given.

    Returns
    -------
    matplotlib.figure.Figure
    """
    plt = _pyplot()
    cols = as_columns(table)
    # the gap with the samples' own noise removed: (test - truth's test) - (train - truth's train)
    cols["paired_gap"] = cols["gap"] - cols["oracle_nll"] + cols["oracle_train_nll"]
    ks = np.unique(cols["n_experts"])
    ns = np.unique(cols["n"])
    colors = plt.cm.viridis(np.linspace(0, 0.9, len(ns)))
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.9))
    for color, n in zip(colors, ns, strict=True):
        mean, se = _mean_se_by(cols, "excess_nll", n, ks)
        axes[0].errorbar(ks, mean, yerr=se, fmt="o-", ms=4, color=color, capsize=2, label=f"n = {n}")
        best = np.nanargmin(mean)
        axes[0].plot(ks[best], mean[best], "*", ms=14, color=color, mec="k")
        gap, _ = _mean_se_by(cols, "paired_gap", n, ks)
        axes[1].plot(ks, n * gap, "o-", ms=4, color=color, label=f"n = {n}")
        ise = [np.nanmedian(cols["mean_ise"][(cols["n"] == n) & (cols["n_experts"] == K)]) for K in ks]
        axes[2].plot(ks, ise, "o-", ms=4, color=color, label=f"n = {n}")
    axes[1].plot(ks, 5 * ks - 2, "k--", lw=1, label="p = 5K - 2")
    axes[0].set_yscale("log")
    axes[0].set_ylabel("held-out NLL - truth's (mean ± se)")
    axes[0].set_title("excess held-out NLL (star: best K)")
    axes[1].set_yscale("symlog", linthresh=10)
    axes[1].axhline(0, color="k", lw=0.5)
    axes[1].set_ylabel("n x (test - train excess NLL)")
    axes[1].set_title("train/test gap, times n")
    axes[2].set_yscale("log")
    axes[2].set_ylabel("squared error of predict (median)")
    axes[2].set_title("error of the mean against sin(2 pi x)")
    for ax in axes:
        ax.set_xlabel("number of experts K")
        ax.set_xticks(ks)
        ax.legend(fontsize=7)
    return _save_figure(fig, path)


def format_best_k(best):
    """The best-K table as aligned text."""
    c = as_columns(best)
    lines = [f"{'n':>7}{'best K':>8}{'excess NLL':>12}{'se':>9}{'1-se K':>8}{'BIC K':>7}"]
    for i in range(len(c["n"])):
        lines.append(
            f"{int(c['n'][i]):>7}{int(c['best_k'][i]):>8}{c['excess_nll'][i]:>12.4f}{c['se'][i]:>9.4f}"
            f"{int(c['one_se_k'][i]):>8}{int(c['bic_k'][i]):>7}"
        )
    return "\n".join(lines)


@register_experiment(
    "generalization",
    "held-out NLL, train/test gap and error of the mean against K and n on y = sin(2 pi x) + "
    "heteroscedastic noise (the best K grows with n)",
)
def _generalization(quick, n_jobs, out, progress, random_state):
    s = GENERALIZATION_SETTINGS["quick" if quick else "full"]
    table = generalization_curve(
        HeteroscedasticSine(),
        s["n_experts_grid"],
        s["n_grid"],
        s["n_replicates"],
        n_test=s["n_test"],
        mean_grid=GENERALIZATION_GRID,
        n_jobs=n_jobs,
        random_state=random_state,
        progress=progress,
        checkpoint=out / "checkpoints" / "generalization.csv",
    )
    write_table(out / "generalization.csv", table)
    best = generalization_best_k(table)
    write_table(out / "generalization_best_k.csv", best)
    return _report(
        out, "generalization", lambda path: plot_generalization(table, path), format_best_k(best),
        best_k=out / "generalization_best_k.csv",
    )  # fmt: skip


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
#: machine (quick: well under a minute; full: EM to a tight tolerance, 1-2 hours). The
#: paper (``experiment.py`` of ``Trung-TinNGUYEN/CRPE-GMoE``) used 100 sample
#: sizes (5 in [100, 500], 95 evenly spaced in [500, 1e5]), 20 replicates and
#: its own EM from one near-truth start, whose stopping test (a change of the
#: parameters below 1e-5, compared with arrays that alias the current ones)
#: is met after the first iteration.
GAUSSIAN_SETTINGS = {
    "quick": {"n_grid": [200, 1000, 5000], "n_replicates": 3, "max_iter": 200, "tol": 1e-6},
    "full": {
        # half a decade apart; 12 replicates at every n (the fits at 1e5 rows take 40 s to
        # 7 minutes each, the longest on a loaded machine, most of them running the 10000 iterations)
        "n_grid": [100, 316, 1000, 3162, 10000, 31623, 100000],
        "n_replicates": 12,
        # EM escapes the near-truth start's plateau (copies of an atom on top of each
        # other, where the mean log-likelihood changes by 1e-9 to 1e-8 an iteration)
        # only after thousands of iterations: tol below the plateau, room to get there
        "max_iter": 10000,
        "tol": 1e-10,
    },
}


#: Notebook 02's sweeps run to convergence: SQUAREM (the same EM steps,
#: extrapolated) to the tolerance of :data:`GAUSSIAN_SETTINGS` (1e-10 on the mean
#: log-likelihood in the full run), with room for 20000 EM steps, and the paper's
#: 20 replicates; replicates 0-11 are the samples and starts (seeds) of the EM
#: sweeps, many of whose fits at n >= 31623 stop at max_iter instead. Monotone
#: SQUAREM (:data:`SQUAREM_MONOTONE`), as the committed notebook's fits were run.
GAUSSIAN_CONVERGED_SETTINGS = {
    "quick": {**GAUSSIAN_SETTINGS["quick"], "solver": "squarem", "estimator_params": SQUAREM_MONOTONE},
    "full": {**GAUSSIAN_SETTINGS["full"], "solver": "squarem", "max_iter": 20000, "n_replicates": 20,
             "estimator_params": SQUAREM_MONOTONE},
}  # fmt: skip


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
        ``n_grid``, ``n_replicates``, ``max_iter``, ``tol`` (see :data:`GAUSSIAN_SETTINGS`),
        optionally ``solver``, ``tol_scale`` and ``estimator_params`` of
        :func:`~mixexp.theory.rate_experiment` (default ``"em"``, ``"mean"`` and none).
        ``n_replicates`` is an int, or a dict ``{"default": int, n: int, ...}`` giving some
        sample sizes another number of replicates (replicate ``r`` at ``n`` is the same fit
        whatever the counts, so the cells of a checkpoint are reused).
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
    groups = _replicate_groups(settings["n_grid"], settings["n_replicates"])
    tables = {}
    for i, (d, setting, K) in enumerate(cases):
        checkpoint = None
        if checkpoint_dir is not None:
            checkpoint = Path(checkpoint_dir) / f"gaussian_d{d}_type{setting}_K{K}.csv"
        parts = [
            rate_experiment(
                aistats2024_model(d, setting),
                K,
                n_grid,
                n_replicates,
                init="near_truth",
                max_iter=settings["max_iter"],
                tol=settings["tol"],
                **_solver_options(settings),
                n_jobs=n_jobs,
                random_state=random_state + i,
                progress=progress,
                checkpoint=checkpoint,
            )
            for n_replicates, n_grid in groups
        ]
        if len(parts) == 1:
            tables[(d, setting, K)] = parts[0]
        else:
            rows = sorted(_concat(dict(enumerate(parts))), key=lambda row: (row["n"], row["replicate"]))
            tables[(d, setting, K)] = rows_to_table(rows, list(as_columns(parts[0])))
    return tables


def _replicate_groups(n_grid, n_replicates):
    """``[(replicates, [n, ...]), ...]`` from an int or a ``{"default": int, n: int}`` dict."""
    if not isinstance(n_replicates, dict):
        return [(int(n_replicates), list(n_grid))]
    if "default" not in n_replicates:
        raise ValueError(f"n_replicates as a dict needs a 'default' count; got {n_replicates!r}.")
    counts = {}
    for n in n_grid:
        counts.setdefault(int(n_replicates.get(n, n_replicates["default"])), []).append(n)
    return sorted(counts.items())


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
    return _save_figure(fig, path)


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
    rows = [
        {"n_features": d, "setting": setting, **row}
        for (d, setting, _), table in tables.items()
        for row in table_rows(table)
    ]
    write_rows(out / "gaussian_gating_rates.csv", rows, list(dict.fromkeys(k for row in rows for k in row)))
    summary = gaussian_rate_summary(tables)
    write_table(out / "gaussian_gating_rates_slopes.csv", summary)
    return _report(
        out, "gaussian_gating_rates", lambda path: plot_gaussian_rates(tables, path),
        format_gaussian_summary(summary), slopes=out / "gaussian_gating_rates_slopes.csv",
    )  # fmt: skip


# -- ICLR 2024: top-K sparse softmax gating rates --------------------------------------------------
def topk_truth():
    """The true model of the top-K experiment and of ``notebooks/04_topk_gating_rates.ipynb``.

    Our model, not the paper's (its simulation section was not available to us):
    :math:`k_* = 3` experts, :math:`d = 1`, :math:`x \\sim \\mathrm{Uniform}[0, 1]`,
    top-2 gate with logits :math:`0`, :math:`-4 + 4x`, :math:`-4x` (expert 1 is always
    selected, expert 3 joins it for :math:`x < 1/2` and expert 2 for :math:`x > 1/2`),
    experts :math:`y = b + a x + \\varepsilon` with :math:`(b, a) = (0, 2), (3, -4), (-3, 4)`
    and noise variance 0.09.

    Returns
    -------
    TopKSoftmaxMoE
    """
    return TopKSoftmaxMoE([[0, 0], [-4, 4], [0, -4]], [[0, 2], [3, -4], [-3, 4]], [0.09, 0.09, 0.09], top_k=2)


#: Claims of Nguyen, Akbarian, Yan & Ho (ICLR 2024) checked on :func:`topk_truth`, as
#: ``(n_experts, column, claimed slope, target)`` (see :data:`SOFTMAX_CLAIMS`): k = 3
#: fitted experts is exact-specified (D1 and every parameter at n^-1/2), k = 4 with
#: top-3 over-specified (D2 and the single-atom cells at n^-1/2; in the two-atom cell
#: gate slopes and intercepts at n^-1/8, expert slopes and variances at n^-1/4).
TOPK_CLAIMS = (
    (3, "loss", -0.5, (-0.6, -0.4)),
    (3, "gate_slope_size1", -0.5, 0.1),
    (3, "slope_size1", -0.5, 0.1),
    (4, "loss", -0.5, 0.1),
    (4, "slope_size1", -0.5, 0.1),
    (4, "gate_slope_size2", -1 / 8, 0.07),
    (4, "intercept_size2", -1 / 8, 0.07),
    (4, "slope_size2", -1 / 4, 0.07),
    (4, "variance_size2", -1 / 4, 0.07),
)

#: Sweep sizes of the top-K experiment, one dict of :func:`~mixexp.theory.rate_experiment`
#: arguments per number of fitted experts (those of ``notebooks/04_topk_gating_rates.ipynb``;
#: quick: under a minute on 2 cores; full: about five minutes).
TOPK_SETTINGS = {
    "quick": {
        3: {"n_grid": [500, 1000, 2000, 4000], "n_replicates": 4, "max_iter": 500, "tol": 1e-8},
        4: {"n_grid": [500, 1000, 2000], "n_replicates": 3, "max_iter": 300, "tol": 1e-7},
    },
    "full": {
        3: {
            "n_grid": [500, 1000, 2000, 4000, 8000, 16000],
            "n_replicates": 12,
            "max_iter": 1000,
            "tol": 1e-8,
        },
        4: {"n_grid": [500, 1000, 2000, 4000, 8000], "n_replicates": 6, "max_iter": 1000, "tol": 1e-8},
    },
}

#: The quantities plotted for each number of fitted experts.
TOPK_PANELS = (
    (3, ("loss", "gate_slope_size1", "slope_size1")),
    (4, ("loss", "gate_slope_size2", "intercept_size2", "slope_size2", "variance_size2")),
)


def topk_rate_tables(settings, *, n_jobs=None, random_state=0, progress=True, checkpoint_dir=None):
    """Run the top-K sweeps on :func:`topk_truth` (one table per number of fitted experts).

    Each fit is EM on :class:`~mixexp.MixtureOfExpertsRegressor` with ``top_k``
    (top-2 for k = 3, top-3 for k = 4) from a near-truth start that splits the
    always-selected expert 1 into the extra atoms (``split="balanced"``).

    Parameters
    ----------
    settings : dict of int to dict
        Number of fitted experts -> ``n_grid``, ``n_replicates``, ``max_iter``, ``tol``
        (see :data:`TOPK_SETTINGS`).
    n_jobs : int, default=None
    random_state : int, default=0
        k fitted experts use ``random_state + k`` (as the notebook does).
    progress : bool, default=True
    checkpoint_dir : str or Path, default=None
        Where to keep one checkpoint CSV per k (none when None).

    Returns
    -------
    dict of int to table
    """
    truth = topk_truth()
    tables = {}
    for K, kwargs in settings.items():
        checkpoint = None if checkpoint_dir is None else Path(checkpoint_dir) / f"topk_K{K}.csv"
        tables[K] = rate_experiment(
            truth,
            K,
            split="balanced",
            n_jobs=n_jobs,
            random_state=random_state + K,
            progress=progress,
            checkpoint=checkpoint,
            **kwargs,
        )
    return tables


def plot_topk_rates(tables, path=None, statistic="median", panels=TOPK_PANELS):
    """Log-log curves of the top-K losses and per-parameter errors, with fitted slopes.

    One panel per number of fitted experts: the per-n ``statistic`` of each
    quantity, its 25-75% band and the fitted power law (slope in the legend).

    Parameters
    ----------
    tables : dict of int to table
        From :func:`topk_rate_tables`.
    path : str or Path, default=None
        Save the figure there when given.
    statistic : {"median", "mean"}, default="median"
    panels : sequence of (int, sequence of str), default=TOPK_PANELS

    Returns
    -------
    matplotlib.figure.Figure
    """
    plt = _pyplot()
    from matplotlib.ticker import NullFormatter

    panels = [(K, columns) for K, columns in panels if K in tables]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 3.9), squeeze=False)
    for ax, (K, columns) in zip(axes[0], panels, strict=True):
        _plot_rate_columns(ax, tables[K], columns, statistic)
        ax.xaxis.set_minor_formatter(NullFormatter())
        exact = K == topk_truth().n_experts
        ax.set_title(f"k = {K} ({'exact, top-2, D1' if exact else f'over, top-{K - 1}, D2'})")
        ax.set_xlabel("n")
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel(f"{statistic} over replicates")
    return _save_figure(fig, path)


@register_experiment(
    "topk_gating_rates",
    "Nguyen, Akbarian, Yan & Ho (ICLR 2024): top-K sparse softmax gating, k = 3 (top-2, D1) and "
    "k = 4 (top-3, D2)",
)
def _topk_gating_rates(quick, n_jobs, out, progress, random_state):
    tables = topk_rate_tables(
        TOPK_SETTINGS["quick" if quick else "full"],
        n_jobs=n_jobs,
        random_state=random_state,
        progress=progress,
        checkpoint_dir=out / "checkpoints",
    )
    rows = _concat(tables)
    write_rows(out / "topk_gating_rates.csv", rows, list(dict.fromkeys(k for row in rows for k in row)))
    summary = softmax_rate_summary(tables, claims=TOPK_CLAIMS)
    write_table(out / "topk_gating_rates_slopes.csv", summary)
    return _report(
        out, "topk_gating_rates", lambda path: plot_topk_rates(tables, path), format_summary(summary),
        slopes=out / "topk_gating_rates_slopes.csv",
    )  # fmt: skip


# -- EM convergence: measured against predicted rates ----------------------------------------------
#: Problems of the EM-convergence experiment (those of ``notebooks/05_em_convergence.ipynb``):
#: ``n_samples`` draws of :func:`em_convergence_problem` at each separation. Quick: seconds;
#: full: a few minutes (the most overlapping problems need a thousand EM iterations).
EM_CONVERGENCE_SETTINGS = {
    "quick": {"n_samples": 1000, "separations": [4.0, 3.0, 2.0], "max_iter": 5000},
    "full": {
        "n_samples": 5000,
        "separations": [5.0, 4.0, 3.5, 3.0, 2.5, 2.0, 1.5, 1.25],
        "max_iter": 5000,
    },
}

#: Columns of ``em_convergence.csv``.
EM_CONVERGENCE_COLUMNS = (
    "delta",
    "n_samples",
    "predicted_dlr",
    "predicted_jacobian",
    "measured_em",
    "measured_exact_em",
    "abs_em_minus_jacobian",
    "abs_exact_em_minus_dlr",
    "em_first",
    "em_last",
    "em_passes",
    "exact_em_passes",
    "squarem_passes",
    "lbfgs_passes",
    "em_iterations",
    "squarem_iterations",
    "lbfgs_iterations",
)


def em_convergence_problem(delta, n_samples, random_state=0):
    """A two-expert problem whose experts overlap more as ``delta`` shrinks.

    :math:`x \\sim N(0, 1)`, gate logits :math:`(0, 2x)`, parallel experts
    :math:`y = \\mp\\delta/2 + x + \\varepsilon`, :math:`\\varepsilon \\sim N(0, 1)`:
    ``delta`` is the gap between the experts' lines in noise standard
    deviations (the problem of ``notebooks/05_em_convergence.ipynb``).

    Parameters
    ----------
    delta : float
    n_samples : int
    random_state : int, default=0

    Returns
    -------
    X : ndarray of shape (n_samples, 1)
    y : ndarray of shape (n_samples,)
    """
    truth = SoftmaxGatedMoE(
        [[0.0, 0.0], [0.0, 2.0]],
        [[-delta / 2, 1.0], [delta / 2, 1.0]],
        [1.0, 1.0],
        x_distribution="normal",
    )
    return truth.sample(int(n_samples), random_state=random_state)


@dataclass
class _EMConvergenceSpec:
    separations: list
    n_samples: int
    max_iter: int
    random_state: int


def _em_convergence_cell(spec, case, seed, single_job=True):
    """One separation: the rates of :func:`~mixexp.theory.em_convergence` as a row.

    ``seed`` (the cell's derived seed) is not used: every problem is drawn with
    ``spec.random_state``, as the notebook does.
    """
    from .._estimators import MixtureOfExpertsRegressor

    if not single_job:
        import numba

        numba.set_num_threads(1)
    delta = float(spec.separations[case])
    X, y = em_convergence_problem(delta, spec.n_samples, spec.random_state)
    est = MixtureOfExpertsRegressor(2, gate_penalty=0.0, init="kmeans", random_state=spec.random_state)
    r = em_convergence(est, X, y, max_iter=spec.max_iter)
    below = {name: r.errors[name] < r.window[0] for name in ("em", "squarem", "lbfgs")}
    return {
        "case": int(case),
        "delta": delta,
        "n_samples": int(spec.n_samples),
        "predicted_dlr": r.predicted_rate,
        "predicted_jacobian": r.jacobian_rate,
        "measured_em": r.rates["em"],
        "measured_exact_em": r.rates["exact_em"],
        "abs_em_minus_jacobian": abs(r.rates["em"] - r.jacobian_rate),
        "abs_exact_em_minus_dlr": abs(r.rates["exact_em"] - r.predicted_rate),
        "em_first": int(r.windows["em"][0]),
        "em_last": int(r.windows["em"][1] - 1),
        "em_passes": int(r.passes["em"]),
        "exact_em_passes": int(r.passes["exact_em"]),
        "squarem_passes": int(r.passes["squarem"]),
        "lbfgs_passes": int(r.passes["lbfgs"]),
        # iterations (for SQUAREM: EM steps) until the error first fell below the window (-1: never)
        **{f"{name}_iterations": int(np.argmax(b)) if b.any() else -1 for name, b in below.items()},
    }


def em_convergence_table(settings, *, n_jobs=None, random_state=0, progress=True, checkpoint=None):
    """Measured and predicted EM rates on :func:`em_convergence_problem`, one row per separation.

    Each row fits ``MixtureOfExpertsRegressor(2, gate_penalty=0, init="kmeans")``
    with :func:`~mixexp.theory.em_convergence`: the rate of exact EM predicted by
    the fraction of missing information (Dempster, Laird & Rubin 1977), the
    spectral radius of mixexp's EM iteration map, the measured rates of both
    and the passes over the data EM, exact EM, SQUAREM and L-BFGS need to
    bring the error below ``1e-5``.

    Parameters
    ----------
    settings : dict
        ``n_samples``, ``separations``, ``max_iter`` (see :data:`EM_CONVERGENCE_SETTINGS`).
    n_jobs : int, default=None
        joblib workers over the separations.
    random_state : int, default=0
        Seed of every problem's sample and of the estimator's k-means start.
    progress : bool, default=True
    checkpoint : str or Path, default=None
        CSV file every finished separation is appended to; a re-run skips those.

    Returns
    -------
    table : DataFrame or dict of ndarray
        The columns of :data:`EM_CONVERGENCE_COLUMNS`, in the order of ``separations``.
    """
    separations = [float(d) for d in settings["separations"]]
    if not separations or min(separations) <= 0:
        raise ValueError(f"separations must be positive numbers; got {settings['separations']!r}.")
    spec = _EMConvergenceSpec(
        separations, int(settings["n_samples"]), int(settings["max_iter"]), int(random_state)
    )
    run_settings = {
        "kind": "em_convergence",
        "separations": separations,
        "n_samples": spec.n_samples,
        "max_iter": spec.max_iter,
        "random_state": spec.random_state,
    }
    table = _run_cells(
        _em_convergence_cell,
        spec,
        [(i,) for i in range(len(separations))],
        ("case",),
        ["case", *EM_CONVERGENCE_COLUMNS],
        n_jobs,
        progress,
        checkpoint,
        run_settings,
        random_state,
        "em_convergence",
    )
    cols = as_columns(table)
    return rows_to_table(
        [{k: cols[k][i] for k in EM_CONVERGENCE_COLUMNS} for i in range(len(cols["case"]))],
        list(EM_CONVERGENCE_COLUMNS),
    )


def plot_em_convergence(table, path=None):
    """Measured against predicted EM rates, and passes to convergence, against the separation.

    Parameters
    ----------
    table : table
        From :func:`em_convergence_table`.
    path : str or Path, default=None
        Save the figure there when given.

    Returns
    -------
    matplotlib.figure.Figure
    """
    plt = _pyplot()
    cols = as_columns(table)
    order = np.argsort(cols["delta"])
    c = {k: v[order] for k, v in cols.items()}
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    ax1.plot(c["delta"], c["predicted_dlr"], "k-", lw=1, label="predicted: fraction of missing information")
    ax1.plot(c["delta"], c["measured_em"], "o", ms=8, mfc="none", label="measured: mixexp EM")
    ax1.plot(c["delta"], c["measured_exact_em"], "x", ms=7, label="measured: exact EM")
    ax1.set_xlabel("separation delta (noise SDs)")
    ax1.set_ylabel("linear rate rho")
    ax1.set_title("EM's rate against the overlap")
    ax1.legend(fontsize=7, loc="lower left")
    for column, style, label in (
        ("em_passes", "o-", "EM"),
        ("exact_em_passes", "x--", "exact EM"),
        ("squarem_passes", "^-", "SQUAREM"),
        ("lbfgs_passes", "s-", "L-BFGS"),
    ):
        ok = c[column] > 0  # -1: never below the window
        ax2.plot(c["delta"][ok], c[column][ok], style, label=label)
    ax2.set_yscale("log")
    ax2.set_xlabel("separation delta (noise SDs)")
    ax2.set_ylabel("passes until the error is below 1e-5")
    ax2.set_title("passes over the data")
    ax2.legend(fontsize=7)
    return _save_figure(fig, path)


def format_em_convergence(table):
    """The EM-convergence table as aligned text."""
    c = as_columns(table)
    lines = [
        f"{'delta':>6}{'DLR':>9}{'Jacobian':>10}{'EM':>9}{'exact EM':>10}{'max dev':>10}"
        f"{'EM passes':>11}{'SQUAREM':>9}{'L-BFGS':>8}"
    ]
    for i in range(len(c["delta"])):
        dev = max(c["abs_em_minus_jacobian"][i], c["abs_exact_em_minus_dlr"][i])
        lines.append(
            f"{c['delta'][i]:>6g}{c['predicted_dlr'][i]:>9.4f}{c['predicted_jacobian'][i]:>10.4f}"
            f"{c['measured_em'][i]:>9.4f}{c['measured_exact_em'][i]:>10.4f}{dev:>10.1e}"
            f"{int(c['em_passes'][i]):>11}{int(c['squarem_passes'][i]):>9}{int(c['lbfgs_passes'][i]):>8}"
        )
    return "\n".join(lines)


@register_experiment(
    "em_convergence",
    "EM's measured linear rate against the fraction of missing information (Dempster, Laird & Rubin "
    "1977), two experts by separation",
)
def _em_convergence_experiment(quick, n_jobs, out, progress, random_state):
    table = em_convergence_table(
        EM_CONVERGENCE_SETTINGS["quick" if quick else "full"],
        n_jobs=n_jobs,
        random_state=random_state,
        progress=progress,
        checkpoint=out / "checkpoints" / "em_convergence.csv",
    )
    write_table(out / "em_convergence.csv", table)
    return _report(
        out, "em_convergence", lambda path: plot_em_convergence(table, path), format_em_convergence(table)
    )
