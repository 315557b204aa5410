"""Write and execute ``notebooks/04_topk_gating_rates.ipynb``.

The notebook is committed with the outputs of its full run (``QUICK = False``);
the tests switch it to ``QUICK = True``. Edit this script, not the notebook,
then regenerate it with::

    python notebooks/_make_04_topk_gating_rates.py          # full run
    python notebooks/_make_04_topk_gating_rates.py --quick  # quick run
    python notebooks/_make_04_topk_gating_rates.py --markdown-only

``--markdown-only`` copies this script's markdown cells into the committed
notebook without executing anything (its code cells must be unchanged).

It needs nbformat, nbclient, ipykernel and matplotlib (the ``test`` extra) and
an importable mixexp (``pip install -e .``).
"""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _nbtools import code, execute, md, notebook  # noqa: E402
from _nbtools import markdown_only as _markdown_only  # noqa: E402

PATH = HERE / "04_topk_gating_rates.ipynb"


def cells(quick):
    return [
        md(r"""
# Top-K sparse softmax gating rates (Nguyen, Akbarian, Yan & Ho, ICLR 2024)

*Statistical perspective of top-K sparse softmax gating mixture of experts*
studies the maximum-likelihood estimate (MLE) of a Gaussian mixture of
experts whose gate keeps, at each $x$, only the $K$ largest softmax logits.

**Claims.** *Exact-specified* ($k = k_*$ fitted experts, the true $K$): the
density and the parameters converge at the parametric rate, the Voronoi loss
$\mathcal{D}_1 \sim n^{-1/2}$. *Over-specified* ($k > k_*$): the fitted gate
must select $\bar K$ experts, at least as many as the Voronoi cells of the
$K$ selected true experts hold (with $k - k_*$ extra atoms, $\bar K = K + k -
k_*$ always suffices); the density rate stays parametric and the Voronoi loss
$\mathcal{D}_2 \sim n^{-1/2}$, but parameters in a cell of $m \ge 2$ atoms are
slow. With the exponents of `mixexp.theory.topk_d2` ($\bar r(2) = 4$, the
structure of the dense softmax gate), the gate slopes $\beta_1$ and expert
intercepts $b$ of a two-atom cell converge as $n^{-1/(2\bar r)} = n^{-1/8}$
and the expert slopes $a$ and variances as $n^{-1/\bar r} = n^{-1/4}$; atoms
alone in their cell converge as $n^{-1/2}$.

**What we could not reproduce.** We could read the paper's abstract but not
its simulation section, so the true model below is **ours**, not the
paper's, and we report our slopes beside the rates of the theorems, not
beside plotted slopes.
"""),
        md(r"""
## The true model

$k_* = 3$ experts, $d = 1$, $x \sim \mathrm{Uniform}[0, 1]$, top-$K = 2$.
Gate logits $0$, $-4 + 4x$, $-4x$: expert 1 is always selected; expert 3
joins it for $x < 1/2$ and expert 2 for $x > 1/2$. Experts $y = b + a x +
\varepsilon$ with $(b, a) = (0, 2), (3, -4), (-3, 4)$ and noise variance
0.09. Fits: $k = 3$ with top-2 (exact-specified, $\mathcal{D}_1$) and $k = 4$
with top-$\bar K = 3$ (over-specified, $\mathcal{D}_2$), expert 1 split into
two atoms (`split="balanced"`; it is always selected, so a top-3 model with
its two copies represents the truth exactly). EM starts near the truth (the
NeurIPS 2023 protocol, `rate_experiment(init="near_truth")`), with
`MixtureOfExpertsRegressor(top_k=...)`.
"""),
        md("""
## Parameters

`QUICK = True` is the version the tests run (under a minute on 2 cores).
`QUICK = False` is the committed run (about five minutes on 2 cores; see the
run time at the end): 6 sample sizes in [500, 16000] with 12 replicates for
$k = 3$, 5 sample sizes in [500, 8000] with 6 replicates for $k = 4$.
"""),
        code(f"""
QUICK = {quick}  # True: the quick run of the tests
N_JOBS = 2  # joblib workers
RANDOM_STATE = 0
"""),
        code("""
%matplotlib inline
import time

import matplotlib.pyplot as plt
import numpy as np

from mixexp.theory import TopKSoftmaxMoE, fit_rate, rate_experiment, summarize_by_n
from mixexp.theory.registry import (
    TOPK_CLAIMS,
    TOPK_SETTINGS,
    format_summary,
    softmax_rate_summary,
    topk_truth,
)

plt.rcParams["figure.dpi"] = 80
np.set_printoptions(precision=4, suppress=True)
# the settings of `python -m mixexp experiment topk_gating_rates [--quick]`: k = 3 (exact), k = 4 (over)
EXACT, OVER = (TOPK_SETTINGS["quick" if QUICK else "full"][k] for k in (3, 4))
print("quick" if QUICK else "full", EXACT, OVER, sep="\\n")
"""),
        code("""
truth = topk_truth()  # gate logits 0, -4 + 4x, -4x; experts (b, a) = (0, 2), (3, -4), (-3, 4); variance 0.09
X, y, z = truth.sample(1000, random_state=0, return_labels=True)
grid = np.linspace(0, 1, 200)[:, None]
fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(10, 3.5))
ax0.scatter(X[:, 0], y, c=z, s=6, cmap="viridis")
ax0.plot(grid, truth.expert_means(grid), "k--", lw=1)
ax0.set_xlabel("x")
ax0.set_ylabel("y")
ax1.plot(grid, truth.gate_probabilities(grid))
ax1.set_xlabel("x")
ax1.set_ylabel("gate weight (top-2)")
plt.show()
"""),
        md(r"""
## The sweeps

For each sample size and replicate: draw $n$ points, start EM at the true
parameters (split into $k$ atoms and perturbed by
$\mathrm{sd} = c\,n^{-e}$, `PAPER_PERTURBATION`), run it to convergence and
measure $\mathcal{D}_1$, $\mathcal{D}_2$ and the error of every parameter
within its Voronoi cell.
"""),
        code("""
start = time.perf_counter()
tables = {}
for K, settings in [(3, EXACT), (4, OVER)]:
    t0 = time.perf_counter()
    tables[K] = rate_experiment(truth, K, split="balanced", n_jobs=N_JOBS, random_state=RANDOM_STATE + K,
                                progress=False, **settings)
    print(f"k = {K}: {len(tables[K])} fits in {time.perf_counter() - t0:.0f} s")
seconds = time.perf_counter() - start
tables[4].head()
"""),
        md(r"""
## Our slopes beside the claimed rates

OLS slope of $\log(\text{median over replicates})$ on $\log n$, with a 95%
percentile bootstrap interval (replicates resampled within each $n$). The
target is $[-0.6, -0.4]$ for $\mathcal{D}_1$, the claim $\pm 0.1$ for
$\mathcal{D}_2$ and the single-atom errors, the claim $\pm 0.07$ for the
two-atom cell (`*_size2`: the largest error among the atoms of cells of two
atoms).
"""),
        code("""
CLAIMS = TOPK_CLAIMS  # (k, column, claimed slope, tolerance or band)
summary = softmax_rate_summary(tables, claims=CLAIMS)
print(format_summary(summary))
ok = summary[summary["within_target"]]
print("\\nwithin the target band:", ", ".join(f"k={k} {q}" for k, q in zip(ok["n_experts"], ok["quantity"]))
      or "none")
"""),
        code("""
fig, axes = plt.subplots(1, 2, figsize=(11, 4))
for ax, (K, columns) in zip(axes, [(3, ["loss", "gate_slope_size1", "slope_size1"]),
                                   (4, ["loss", "gate_slope_size2", "intercept_size2", "slope_size2",
                                        "variance_size2"])]):
    for column in columns:
        s = summarize_by_n(tables[K], column)
        n, center, q25, q75 = (np.asarray(s[c], dtype=float) for c in ("n", "center", "q25", "q75"))
        ok = np.isfinite(center) & (center > 0)
        (line,) = ax.loglog(n[ok], center[ok], "o-", ms=4, lw=0.8, label=column)
        ax.fill_between(n[ok], q25[ok], q75[ok], color=line.get_color(), alpha=0.15)
    ax.set_title(f"k = {K} ({'exact, D1' if K == 3 else 'over, top-3, D2'})")
    ax.set_xlabel("n")
    ax.legend(fontsize=7)
axes[0].set_ylabel("median over replicates")
fig.tight_layout()
plt.show()
"""),
        md("""
How the exact-specified slope moves when the smallest sample sizes are dropped:
"""),
        code("""
fit = fit_rate(tables[3], "loss")
print(fit)
fit.stability
"""),
        md(r"""
## Does EM reach the MLE? Iterations and a tighter tolerance

The top-K likelihood is not differentiable where the selected sets change:
it jumps where a row's selected set changes. Near the boundary $x = 1/2$
between the two selected sets, a small move of the gate crosses the rows
nearest the boundary first, and their jumps can outweigh what the smooth
part gains, so EM's gate steps (accepted only if the likelihood does not
fall) can stall. Before EM stops, the estimator therefore searches the
likelihood over the gate with the experts fixed (`TopKSoftmaxGate.polish`,
a compass search whose line searches see the jumps;
`docs/user_guide/sparse_gating.rst`), and goes on if the gate moved. The
table gives the median number of iterations per $n$; the cell after it
refits the same samples from the same starts with a tolerance 100 times
tighter.
"""),
        code("""
for K in (3, 4):
    s = summarize_by_n(tables[K], "n_iter")
    print(f"k = {K}: median EM iterations by n:",
          {int(n): float(c) for n, c in zip(np.asarray(s["n"]), np.asarray(s["center"]))})
"""),
        code("""
columns = ["n", "replicate", "n_iter", "lower_bound", "loss", "gate_slope_size1", "intercept_size1"]
n_check = 2000 if QUICK else 8000
for tol in (1e-8, 1e-10):
    # same random_state: the same samples and the same starts, only the stopping rule differs
    t = rate_experiment(truth, 3, [n_check], 3, split="balanced", tol=tol, max_iter=2000, n_jobs=N_JOBS,
                        random_state=RANDOM_STATE + 3, progress=False)
    print(f"tol = {tol:g}")
    print(t[columns].to_string(index=False), end="\\n\\n")
"""),
        md(r"""
A tighter tolerance moves the fits by less than their standard errors
(compare the losses), so EM has stopped at an optimum, not short of one. Is
the gate at a maximum? With the fitted experts held fixed, maximise the top-K
log-likelihood over the gate alone (Nelder-Mead, from EM's gate) and compare.
The `solver` argument of `rate_experiment` lets us run EM and this check
inside the same sweep (same samples, same starts); the table then measures
the checked fits. Before the estimator searched its gate (session 3), this
Nelder-Mead step still gained 0.2 to 1.2 nats and moved the gate slopes by
0.05 to 0.25.
"""),
        code("""
from scipy.optimize import minimize

polish_log = []


def em_then_gate_polish(X, y, n_experts, start, random_state):
    est = start[0].to_estimator(X, y, gate_penalty=0.0, max_iter=1000, tol=1e-8)
    est.set_params(warm_start=True)
    est.fit(X, y)
    E, V, G = est.expert_coef_, est.noise_variance_, est.gate_coef_

    def nll(g):
        gate = np.vstack([G[:1], g.reshape(G.shape[0] - 1, -1)])
        return -TopKSoftmaxMoE(gate, E, V, top_k=est.top_k).log_density(X, y).mean()

    g0 = G[1:].ravel()
    res = minimize(nll, g0, method="Nelder-Mead", options={"xatol": 1e-6, "fatol": 1e-10, "maxiter": 4000})
    polish_log.append({"n": len(y), "gain": nll(g0) - res.fun, "moved": np.abs(res.x - g0).max()})
    gate = np.vstack([G[:1], res.x.reshape(G.shape[0] - 1, -1)])
    return {"gate_coef": gate, "expert_coef": E, "noise_variance": V, "n_iter": est.n_iter_}


POLISH = {"n_grid": EXACT["n_grid"], "n_replicates": 4 if QUICK else 8}
polished = rate_experiment(truth, 3, solver=em_then_gate_polish, split="balanced", n_jobs=1,
                           random_state=RANDOM_STATE + 3, progress=False, **POLISH)
log = np.array([(r["n"], r["gain"], r["moved"]) for r in polish_log])
for n in np.unique(log[:, 0]):
    rows = log[log[:, 0] == n]
    print(f"n = {int(n):>5}: gain in mean log-likelihood {np.median(rows[:, 1]):.2e} (x n = "
          f"{np.median(rows[:, 1]) * n:.2f} nats), largest gate move {np.median(rows[:, 2]):.3f} (medians)")
print()
print(format_summary(softmax_rate_summary({3: polished}, claims=CLAIMS[:3])))
"""),
        md(r"""
## Reading the numbers

Measured in the committed full run (12 replicates at 6 sample sizes in
[500, 16000] for $k = 3$; 6 replicates at 5 sizes in [500, 8000] for
$k = 4$; the quick run's slopes are noisier). Slopes of the median, 95%
bootstrap intervals ($k = 3$: top-2; $k = 4$: top-3; "2-atom": the cell of
two atoms). The last column is the previous version of the estimator
(session 2), whose top-K EM stalled in the gate:

| $k$ | quantity | claim | EM (this run) | EM, session 2 |
|---|---|---|---|---|
| $k{=}3$ | $\mathcal{D}_1$ | $-1/2$ | $-0.520$ $[-0.603, -0.417]$ | $-0.621$ $[-0.787, -0.429]$ |
| $k{=}3$ | gate slopes | $-1/2$ | $-0.553$ $[-0.637, -0.389]$ | $-0.891$ $[-1.348, -0.340]$ |
| $k{=}3$ | expert slopes | $-1/2$ | $-0.486$ $[-0.614, -0.361]$ | $-0.443$ $[-0.585, -0.336]$ |
| $k{=}4$ | $\mathcal{D}_2$ | $-1/2$ | $-0.596$ $[-1.460, -0.209]$ | $-0.453$ $[-0.996, +0.047]$ |
| $k{=}4$ | expert slopes, 1-atom | $-1/2$ | $-0.543$ $[-0.766, -0.244]$ | $-0.547$ $[-0.766, -0.235]$ |
| $k{=}4$ | gate slopes, 2-atom | $-1/8$ | $-0.636$ $[-1.367, -0.207]$ | $-1.000$ $[-1.784, +0.008]$ |
| $k{=}4$ | expert intercepts, 2-atom | $-1/8$ | $-0.450$ $[-0.935, -0.073]$ | $-0.306$ $[-0.581, +0.107]$ |
| $k{=}4$ | expert slopes, 2-atom | $-1/4$ | $-0.676$ $[-0.975, -0.179]$ | $-0.587$ $[-0.773, -0.350]$ |
| $k{=}4$ | variances, 2-atom | $-1/4$ | $-0.338$ $[-0.668, -0.028]$ | $-0.237$ $[-0.431, +0.123]$ |

1. **Exact-specified: the parametric rate is reproduced by the estimator
   alone.** Every exact-specified slope is in its band: $\mathcal{D}_1$
   falls as $n^{-0.52}$, the gate slopes as $n^{-0.55}$ and the expert
   slopes as $n^{-0.49}$. The Nelder-Mead check over the gate gains
   $10^{-10}$ in mean log-likelihood (0.00 nats in $n$ rows) at every $n$
   and moves no gate coefficient by 0.001, and the checked fits' slopes
   ($-0.548$, $-0.519$, $-0.510$) agree with EM's: the fitted gate is at a
   maximum of the likelihood with the experts fixed. In session 2 the same
   check gained 0.2 to 1.2 nats, the gate slopes fell as $n^{-0.89}$
   (a gate that had not moved from its near-truth start), and
   $\mathcal{D}_1$ was just outside the band.
2. **Over-specified.** $\mathcal{D}_2$ ($-0.60$) and the single-atom errors
   ($-0.54$) agree with $n^{-1/2}$, with wide intervals (6 replicates). In
   the two-atom cell only the variances are near their claimed $n^{-1/4}$
   (and their interval contains it); the gate slopes, expert intercepts and
   expert slopes fall much faster than claimed. Three causes, measured on
   the dense softmax gate in notebook 03 and present here too:
   (a) the `*_size2` columns take the largest error of the cell's two atoms
   whatever their weights, while the theory's $\mathcal{D}_2$ weighs each
   atom by its gate weight, so an atom that fades away (its parameters then
   unidentified) dominates the column and its error need not follow the
   claimed rate; (b) EM in the flat over-specified likelihood is slow: the
   median number of iterations grows from 260 at $n = 500$ to the
   `max_iter` of 1000 at $n = 4000$, so some fits end nearer their
   near-truth start at large $n$ and their errors fall too fast;
   (c) 6 replicates over a factor 16 in $n$ cannot resolve $n^{-1/8}$,
   which changes by a factor of 1.4 over that range.
3. **What differs from the paper.** The truth is ours (we could not read
   the paper's simulation section); $n \le 16000$ and 6 to 12 replicates;
   EM from near-truth starts.
4. **Cost.** The gate search makes the over-specified fits a little
   slower: 197 s for the 30 $k = 4$ fits on an idle 2-core machine, against
   171 s without it (session 2, also idle); the exact-specified fits took
   11 s against 16 s. (Under a load average of about 10 the same sweeps
   took 860 s and 47 s.)
"""),
        md("""
## Run time
"""),
        code("""
print(f"sweeps: {seconds:.0f} s ({'quick' if QUICK else 'full'} settings)")
"""),
    ]


def build(quick):
    return notebook(cells(quick))


def markdown_only():
    """Copy the markdown cells of the full build into the committed notebook (no execution)."""
    _markdown_only(PATH, cells(False))


def main():
    if "--markdown-only" in sys.argv[1:]:
        markdown_only()
        return
    quick = "--quick" in sys.argv[1:]
    nb = build(quick)
    execute(nb, PATH, timeout=1800)


if __name__ == "__main__":
    main()
