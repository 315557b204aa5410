"""Write and execute ``notebooks/06_generalization.ipynb``.

The notebook is committed with the outputs of its FULL run (``QUICK = False``
in its parameter cell); the tests run it quick (tests/test_notebooks.py
turns that line into ``QUICK = True``). Edit
this script, not the notebook, then regenerate it with::

    python notebooks/_make_06_generalization.py          # full run, writes the notebook
    python notebooks/_make_06_generalization.py --quick  # quick run, prints its time, writes nothing
    python notebooks/_make_06_generalization.py --update-text  # new markdown, same code and outputs

It needs nbformat, nbclient, ipykernel and matplotlib (the ``test`` extra) and
an importable mixexp (``pip install -e .``).
"""

import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _nbtools import code, md, notebook, switch_quick  # noqa: E402
from _nbtools import markdown_only as _markdown_only  # noqa: E402

PATH = HERE / "06_generalization.ipynb"


CELLS = [
    md(r"""
# Generalization: held-out likelihood and approximation error against the number of experts

How many experts should a mixture of experts have? When the data really come
from a mixture of $K^*$ experts, the answer is $K^*$. Real conditional
densities are not finite mixtures of linear experts, though, and then the
answer depends on $n$: each extra expert lowers the **approximation error**
(the model's distance to the truth) but adds parameters whose **estimation
error** grows like $K/n$. The held-out negative log-likelihood (NLL) against
$K$ is a U-curve, and the bottom of the U should move to larger $K$ as $n$
grows (Jiang & Tanner 1999 prove that softmax-gated mixtures of GLM experts
approximate smooth densities arbitrarily well as $K \to \infty$; how the
best $K$ moves with $n$ is what we measure here).

**Data** (not a finite mixture of experts): $x \sim \mathrm{Uniform}[0, 1]$,
$$y = \sin(2\pi x) + \sigma(x)\,\varepsilon, \qquad \sigma(x) = 0.25 + 0.5x,
\qquad \varepsilon \sim N(0, 1).$$
The mean of a softmax-gated mixture of linear experts is a finite, smoothly
gated combination of lines, so it can approach the sine but never equal it;
the noise is Gaussian with a standard deviation that changes linearly in $x$,
which experts with one variance each can only approximate in steps.

**What is measured**, for each number of experts $K$, sample size $n$ and
replicate, with `mixexp.theory.generalization_curve`: fit
`MixtureOfExpertsRegressor(K)` on $n$ points and record

1. the NLL on a fresh test sample and on the training sample (their
   difference is the train/test gap), and the NLL of the true density on the
   same test points; the **excess NLL** (model minus truth, an estimate of the
   Kullback-Leibler divergence from the truth to the fit) is the held-out NLL
   with the test sample's own noise removed, so $K$ can be compared with far
   fewer replicates;
2. the **approximation error of the mean**: the squared difference between
   `predict` and $\sin(2\pi x)$, averaged over 1001 evenly spaced points of
   $[0, 1]$ (the integrated squared error, since the interval has length 1).

The estimator runs with its defaults (`init="auto"`: one k-means and 19
random-subset starts, each screened for 5 EM iterations, the best continued;
`max_iter=500`, `tol=1e-6`, `gate_penalty=1e-3`).
"""),
    md("""
## Parameters

`QUICK = True` is the version the tests run (a few seconds of fitting:
K in {1, 2, 3, 5}, n in {200, 2000}, 2 replicates). `QUICK = False` is the
full run whose outputs are shown here: K in {1, ..., 8, 10}, n in {100, 300,
1000, 3000, 10000, 30000}, 8 replicates, 20000 test points per cell. It took
152 s for the sweep (160 s for the whole notebook) with 2 workers on a
2-core machine; the time of the run shown is printed at the end.
"""),
    code(
        """
QUICK = False  # True: the small version the tests run
N_JOBS = 2  # joblib workers over the cells
RANDOM_STATE = 0
""",
        tags=["parameters"],
    ),
    code("""
%matplotlib inline
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.ticker import NullFormatter, ScalarFormatter

from mixexp import MixtureOfExpertsRegressor
from mixexp.theory import generalization_curve
from mixexp.theory.registry import GENERALIZATION_GRID, GENERALIZATION_SETTINGS, HeteroscedasticSine

plt.rcParams["figure.dpi"] = 80
# the settings of `python -m mixexp experiment generalization [--quick]`
SETTINGS = GENERALIZATION_SETTINGS["quick" if QUICK else "full"]
print("quick" if QUICK else "full", SETTINGS)
"""),
    md("""
## The truth

$y = \\sin(2\\pi x) + (0.25 + 0.5\\,x)\\,\\varepsilon$, $x \\sim
\\mathrm{Uniform}[0, 1]$, $\\varepsilon \\sim \\mathcal{N}(0, 1)$
(`mixexp.theory.registry.HeteroscedasticSine`): no mixture of linear experts
is this model, so the best number of experts grows with $n$.
`generalization_curve` takes any object with `sample(n, random_state)`; with
`log_density(X, y)` it also records the truth's test NLL, and with
`mean(X)` it is the reference of the approximation error.
"""),
    code("""
truth = HeteroscedasticSine()
grid = GENERALIZATION_GRID  # 1001 points on [0, 1], where the approximation error is measured
X, y = truth.sample(1000, np.random.RandomState(0))
fig, ax = plt.subplots(figsize=(6, 3.5))
ax.scatter(X[:, 0], y, s=4, alpha=0.5)
ax.plot(grid, truth.mean(grid), "k", lw=2, label="E[y | x]")
ax.fill_between(grid[:, 0], truth.mean(grid) - 2 * truth.sd(grid), truth.mean(grid) + 2 * truth.sd(grid),
                color="k", alpha=0.1, label="± 2 sd")
ax.set_xlabel("x")
ax.set_ylabel("y")
ax.legend()
plt.show()
"""),
    md("""
## The sweep

Every cell draws its own training and test samples from a seed derived from
`RANDOM_STATE` and the cell's coordinates $(K, n, \\text{replicate})$, so the
table does not depend on `N_JOBS`.
"""),
    code("""
start = time.perf_counter()
table = generalization_curve(
    truth,
    SETTINGS["n_experts_grid"],
    SETTINGS["n_grid"],
    SETTINGS["n_replicates"],
    n_test=SETTINGS["n_test"],
    mean_grid=grid,
    n_jobs=N_JOBS,
    random_state=RANDOM_STATE,
    progress=False,
)
seconds = time.perf_counter() - start
print(f"{len(table)} fits in {seconds:.0f} s ({table['fit_time'].sum():.0f} s of fitting); "
      f"{(~table['converged']).sum()} fits stopped at max_iter")
table.head()
"""),
    md("""
## Held-out NLL against K

Means over replicates. The test NLL itself (first table) is what a user sees;
the excess over the truth (second table, and the plot) is the same quantity
minus the truth's NLL on the same test points. The columns are $K$.

The train/test gap is plotted with the samples' own noise removed too:
(test NLL $-$ truth's test NLL) $-$ (train NLL $-$ truth's train NLL). For a
maximum-likelihood fit with $p$ free parameters, classical asymptotics (the
reasoning behind AIC) give an expected gap of about $p/n$ per point; here $p
= 3K + 2(K - 1)$ (an intercept, a slope and a variance per expert, an
intercept and a slope per non-reference gate row), so the plot shows
$n \times$ gap beside $p$.
"""),
    code("""
def by_n_k(column, how="mean"):
    return table.pivot_table(index="n", columns="n_experts", values=column, aggfunc=how)


test_nll = by_n_k("test_nll")
test_nll["truth"] = table.groupby("n")["oracle_nll"].mean()
print("held-out NLL (mean over replicates)")
print(test_nll.round(4).to_string())
excess = by_n_k("excess_nll")
excess_se = by_n_k("excess_nll", "std") / np.sqrt(SETTINGS["n_replicates"])
print("\\nexcess held-out NLL over the truth (mean over replicates)")
print(excess.round(4).to_string())
"""),
    code("""
ks = np.array(excess.columns)
table["paired_gap"] = table["gap"] - table["oracle_nll"] + table["oracle_train_nll"]
paired_gap = by_n_k("paired_gap")
colors = plt.cm.viridis(np.linspace(0, 0.9, len(excess.index)))
fig, axes = plt.subplots(1, 2, figsize=(11, 4))
for color, n in zip(colors, excess.index):
    mean, se = excess.loc[n].to_numpy(), excess_se.loc[n].to_numpy()
    axes[0].errorbar(ks, mean, yerr=se, fmt="o-", ms=4, color=color, capsize=2, label=f"n = {n}")
    best = np.nanargmin(mean)
    axes[0].plot(ks[best], mean[best], "*", ms=16, color=color, mec="k")
    axes[1].plot(ks, n * paired_gap.loc[n], "o-", ms=4, color=color, label=f"n = {n}")
axes[1].plot(ks, 3 * ks + 2 * (ks - 1), "k--", lw=1, label="p = 5K - 2")
axes[0].set_yscale("log")
axes[0].set_ylabel("held-out NLL - truth's NLL (mean ± se)")
axes[0].set_title("held-out excess NLL (star: best K)")
axes[1].set_yscale("symlog", linthresh=10)
axes[1].axhline(0, color="k", lw=0.5)
axes[1].set_ylabel("n x (test - train excess NLL) (mean)")
axes[1].set_title("train/test gap, times n")
for ax in axes:
    ax.set_xlabel("number of experts K")
    ax.set_xticks(ks)
    ax.legend(fontsize=8)
fig.tight_layout()
plt.show()
print("n x train/test gap of the excess NLL (mean over replicates); p = 5K - 2:", (5 * ks - 2).tolist())
print(paired_gap.mul(paired_gap.index, axis=0).round(1).to_string())
"""),
    md("""
## Best K per n

`best K` minimises the mean excess held-out NLL (equivalently the expected
test NLL; the excess only has less noise). Where the bottom of the U is flat
the argmin moves with the replicates' noise, so the table also gives the
smallest $K$ within one standard error of the best (the "one-standard-error
rule") and, for comparison, the $K$ with the smallest mean BIC on the
training sample.
"""),
    code("""
rows = []
for n in excess.index:
    mean, se = excess.loc[n], excess_se.loc[n]
    best = int(mean.idxmin())
    one_se = int(min(k for k in ks if mean[k] <= mean[best] + se[best]))
    rows.append({"n": n, "best K": best, "excess NLL at best": mean[best], "se": se[best],
                 "1-se K": one_se, "BIC K": int(by_n_k("bic").loc[n].idxmin())})
best_k = pd.DataFrame(rows).set_index("n")
print(best_k.to_string(float_format=lambda v: f"{v:.4f}"))
grows = bool(np.all(np.diff(best_k["best K"].to_numpy()) >= 0))
print(f"\\nbest K never decreases as n grows: {grows}; "
      f"from K = {best_k['best K'].iloc[0]} at n = {best_k.index[0]} "
      f"to K = {best_k['best K'].iloc[-1]} at n = {best_k.index[-1]}")
"""),
    md("""
## Approximation error of the mean against K

The averaged squared error of `predict` against $\\sin(2\\pi x)$ on the grid.
It mixes the approximation error (what the best $K$-expert model misses) with
the estimation error of the fit; at the largest $n$ the first dominates. A
smooth function approximated by $K$ lines with free breakpoints has an
$L^2$ error of order $K^{-2}$, so a squared error of order $K^{-4}$ (dashed,
for reference).
"""),
    code("""
ise = by_n_k("mean_ise", "median")
fig, axes = plt.subplots(1, 2, figsize=(11, 4))
for color, n in zip(colors, ise.index):
    axes[0].loglog(ks, ise.loc[n], "o-", ms=4, color=color, label=f"n = {n}")
n_max = ise.index[-1]
ref = ise.loc[n_max].iloc[2] * (ks / ks[2]) ** -4.0
axes[0].loglog(ks, ref, "k--", lw=1, label="$\\\\propto K^{-4}$")
axes[0].set_xticks(ks)
axes[0].xaxis.set_major_formatter(ScalarFormatter())
axes[0].xaxis.set_minor_formatter(NullFormatter())
axes[0].set_xlabel("number of experts K")
axes[0].set_ylabel("mean squared error of predict on the grid (median)")
axes[0].set_title("approximation error of the mean")
axes[0].legend(fontsize=8)
# the fitted means at the largest n, one fit per K (the first replicate's seed is not reused: a fresh sample)
X, y = truth.sample(n_max, np.random.RandomState(RANDOM_STATE + 1))
axes[1].plot(grid, truth.mean(grid), "k", lw=3, label="E[y | x]")
for K in [k for k in ks if k in (1, 2, 3, 6)]:
    est = MixtureOfExpertsRegressor(int(K), random_state=RANDOM_STATE).fit(X, y)
    axes[1].plot(grid, est.predict(grid), lw=1.2, label=f"K = {K}")
axes[1].set_xlabel("x")
axes[1].set_title(f"fitted means, n = {n_max}")
axes[1].legend(fontsize=8)
fig.tight_layout()
plt.show()
print("median squared error of the mean on the grid")
print(ise.to_string(float_format=lambda v: f"{v:.2e}"))
"""),
    md(r"""
## What we observe

The numbers below are those of the full run shown above (8 replicates per
cell, 432 fits; the quick run is too small to show them).

* **The held-out NLL is a U-curve in $K$ and its bottom moves right as $n$
  grows.** The $K$ with the smallest mean excess NLL is 3 at $n = 100$ and
  300, 5 at $n = 1000$ and 3000, 6 at $n = 10000$ and 8 at $n = 30000$; it
  never decreases. The bottom flattens as $n$ grows: at $n = 10000$, $K = 6$
  and 7 are within 0.0004 of each other (standard error 0.0003), and at $n =
  30000$ $K = 7, 8, 10$ are within 0.0002 (standard error 0.0001), so the
  exact argmin at large $n$ is within the noise; the one-standard-error
  choice (3, 3, 5, 5, 6, 7) and the BIC's choice (3, 3, 3, 6, 7, 7) grow the
  same way. Too many experts hurt
  most at small $n$: with 100 points, $K = 10$ is worse than a single line.
* **The raw held-out NLL is noisier than the differences between $K$s**: each
  cell has its own test sample, whose NLL varies by about 0.005 (standard
  deviation over 20000 points), more than the gaps near the bottom of the U at
  large $n$; the raw means at $n = 10000$ and 30000 even fall below the truth's
  (also estimated on other test samples). Subtracting the truth's NLL on the
  same test points removes that noise, which is why the best $K$ is read off
  the excess NLL.
* **Train/test gap.** For $K \ge 4$ and $n \ge 1000$, $n \times$ gap is
  between 18 and 79 against $p = 5K - 2$ between 18 and 48, i.e. between
  0.75 and 1.6 times $p$: the classical gap of $p/n$ holds roughly. At $n =
  100$ and 300 it is 1.4 to 3.3 times $p/n$ (far from the asymptotics: 48
  parameters for 100 points at $K = 10$). For $K \le 3$ the measured gap is dominated by noise:
  the model misses the truth by a lot, so the log-likelihood ratio of model
  and truth varies a lot from point to point.
* **Approximation error of the mean.** At $n = 30000$ the squared error of
  `predict` falls from 0.197 with one line (the best line's integrated
  squared error is $1/2 - 3/\pi^2 = 0.196$) to $5.0 \times 10^{-3}$ at $K = 3$,
  $4.3 \times 10^{-4}$ at $K = 5$ and $1.33 \times 10^{-4}$ at $K = 10$: faster
  than $K^{-4}$ from 3 to 5 experts (a log-log slope of $-4.8$), more slowly
  from 5 to 10 ($-1.7$), where it nears the estimation floor. At smaller $n$
  the curves flatten at a floor set by the estimation error, which falls
  roughly like $1/n$ (at $K = 10$: $3.5 \times 10^{-3}$ at $n = 1000$,
  $4.4 \times 10^{-4}$ at $n = 10000$). The held-out NLL also pays for the
  variance function, which the experts can only follow in steps, so its best
  $K$ is not the same as the mean's.
* **Fits**: 38 of the 432 fits stopped at the default `max_iter=500` before
  meeting `tol=1e-6`; their held-out NLL is that of the stopped fit.
"""),
    md("""
## Run time
"""),
    code("""
print(f"sweep: {seconds:.0f} s on {N_JOBS} workers ({'quick' if QUICK else 'full'} settings: {SETTINGS})")
"""),
]


def build(quick=False):
    # quick: as tests/test_notebooks.py does, the parameter cell's QUICK = False becomes True
    return notebook(switch_quick(CELLS, quick))


def update_text():
    """Copy the markdown cells of CELLS into the written notebook, keeping its code cells and outputs.

    Refused unless every code cell's source is unchanged, so the outputs stay those of this code.
    """
    _markdown_only(PATH, CELLS)


def main(argv):
    if "--update-text" in argv:
        update_text()
        return
    quick = "--quick" in argv
    nb = build(quick)
    client = NotebookClient(
        nb,
        timeout=1800,
        kernel_name="python3",
        record_timing=False,
        resources={"metadata": {"path": str(HERE)}},
    )
    start = time.perf_counter()
    client.execute()
    if quick:
        print(f"quick run: {time.perf_counter() - start:.0f} s (notebook not written)")
        return
    nbformat.write(nb, PATH)
    print(f"wrote {PATH} ({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main(sys.argv[1:])
