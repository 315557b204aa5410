"""Benchmark of the start strategies (``init=``): success rate and time, against flexmix.

The script prints plain-text (markdown-style) tables; it never asserts on time.

Problems: ``--problems`` (default 30) random softmax-gated 3-expert problems
with two covariates whose smallest expert carries 3-5% of the rows (the
generator of ``tests/test_init.py``: seeds 0, 1, ..., shares 3%, 4%, 5% in
turn), at each size of ``--sizes`` (default 2e3 and 2e4).

For each problem every strategy is fitted with ``gate_penalty=0`` (the plain
MLE, as flexmix fits it) and ``random_state=0``:

* ``kmeans``: one k-means start (``init="kmeans"``);
* ``random``, ``random_subsets``: ``n_init="auto"`` (10) starts each run to
  convergence;
* ``auto``: the default (one k-means start and 19 random-subsets starts, each
  screened for 5 EM iterations, the best run on);
* a reference search for the best-known optimum: 50 random-subsets starts run
  to convergence (not a strategy a user would pay for);
* flexmix 2.3 with its defaults (``flexmix(y ~ x1 + x2, k = 3, model =
  FLXMRglm(), concomitant = FLXPmultinom(~ x1 + x2))``, one random start,
  ``minprior = 0.05`` which drops small components) and
  ``stepFlexmix(..., k = 3, nrep = 5)`` (best of 5 starts), when Rscript and
  flexmix are installed. All problems of one size run in one R process;
  flexmix is timed inside R.

A fit *succeeds* when its log-likelihood is within ``--slack`` (default 1.0)
of the best-known optimum of that problem (the best of every fit above); a
fit that dropped an expert fails. The table also counts fits at or above the
true parameters' log-likelihood (the MLE lies above it) and gives the total
time of each strategy and its ratio to the single k-means fit. mixexp is timed
with :func:`time.perf_counter` after a warm-up fit (so Numba compilation is
excluded).

Run it from the repository root::

    python benchmarks/bench_init.py                 # 30 problems at n = 2e3 and 2e4
    python benchmarks/bench_init.py --sizes 2000    # n = 2e3 only
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from sklearn.exceptions import ConvergenceWarning

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench_em import fmt_n, git_note, load_note, print_table  # noqa: E402

from mixexp import MixtureOfExpertsRegressor  # noqa: E402
from mixexp.exceptions import VanishingExpertWarning  # noqa: E402
from tests._peers import flexmix_available  # noqa: E402
from tests.test_init import _small_expert_problem  # noqa: E402

STRATEGIES = {
    "kmeans (1 start)": dict(init="kmeans"),
    "random (10 starts)": dict(init="random"),
    "random_subsets (10 starts)": dict(init="random_subsets"),
    "auto (default)": dict(),
}
REFERENCE = dict(init="random_subsets", n_init=50, init_max_iter=None)

_R_SCRIPT = r"""
suppressMessages(library(flexmix))
args <- commandArgs(trailingOnly = TRUE)
files <- list.files(args[1], pattern = "[.]csv$", full.names = TRUE)
for (f in sort(files)) {
  D <- read.csv(f)
  set.seed(0)
  t0 <- proc.time()[["elapsed"]]
  m <- try(flexmix(y ~ x1 + x2, data = D, k = 3, model = FLXMRglm(family = "gaussian"),
                   concomitant = FLXPmultinom(~ x1 + x2)), silent = TRUE)
  t1 <- proc.time()[["elapsed"]]
  ll <- if (inherits(m, "try-error")) NA else as.numeric(logLik(m))
  k <- if (inherits(m, "try-error")) 0 else m@k
  set.seed(0)
  t2 <- proc.time()[["elapsed"]]
  s <- try(stepFlexmix(y ~ x1 + x2, data = D, k = 3, nrep = 5, verbose = FALSE,
                       model = FLXMRglm(family = "gaussian"), concomitant = FLXPmultinom(~ x1 + x2)),
           silent = TRUE)
  t3 <- proc.time()[["elapsed"]]
  lls <- if (inherits(s, "try-error")) NA else as.numeric(logLik(s))
  ks <- if (inherits(s, "try-error")) 0 else s@k
  cat("RESULT", basename(f), ll, k, t1 - t0, lls, ks, t3 - t2, "\n")
}
"""


def fit(X, y, params):
    """Total log-likelihood and wall time of one mixexp fit."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", VanishingExpertWarning)
        t0 = time.perf_counter()
        moe = MixtureOfExpertsRegressor(3, gate_penalty=0.0, random_state=0, **params).fit(X, y)
        elapsed = time.perf_counter() - t0
    return float(moe.score_samples(X, y).sum()), elapsed


def run_flexmix(problems):
    """{seed: (ll_default, k_default, t_default, ll_step, k_step, t_step)} from one R process."""
    with tempfile.TemporaryDirectory() as tmp:
        for seed, (X, y, _) in problems.items():
            np.savetxt(Path(tmp) / f"p{seed:03d}.csv", np.column_stack([X, y]), delimiter=",",
                       header="x1,x2,y", comments="")
        script = Path(tmp) / "fit.R"
        script.write_text(_R_SCRIPT)
        out = subprocess.run(["Rscript", "--vanilla", str(script), tmp], capture_output=True, text=True,
                             check=True, timeout=24 * 3600).stdout
    results = {}
    for line in out.splitlines():
        f = line.split()
        if f and f[0] == "RESULT":
            seed = int(f[1][1:4])
            num = [float("nan") if v == "NA" else float(v) for v in f[2:]]
            results[seed] = tuple(num)
    return results


def bench_size(n, n_problems, slack, with_flexmix):
    problems = {
        seed: _small_expert_problem(seed, n, small=0.03 + 0.01 * (seed % 3)) for seed in range(n_problems)
    }
    fit(*problems[0][:2], {})  # warm-up: compile or load the kernels
    lls = {name: {} for name in STRATEGIES}
    times = {name: 0.0 for name in STRATEGIES}
    reference = {}
    for seed, (X, y, _) in problems.items():
        for name, params in STRATEGIES.items():
            lls[name][seed], elapsed = fit(X, y, params)
            times[name] += elapsed
        reference[seed] = fit(X, y, REFERENCE)[0]
    if with_flexmix:
        fx = run_flexmix(problems)
        lls["flexmix defaults"] = {s: fx[s][0] if fx[s][1] == 3 else -np.inf for s in problems}
        lls["stepFlexmix(nrep = 5)"] = {s: fx[s][3] if fx[s][4] == 3 else -np.inf for s in problems}
        times["flexmix defaults"] = sum(fx[s][2] for s in problems)
        times["stepFlexmix(nrep = 5)"] = sum(fx[s][5] for s in problems)
        dropped = {
            "flexmix defaults": sum(fx[s][1] < 3 for s in problems),
            "stepFlexmix(nrep = 5)": sum(fx[s][4] < 3 for s in problems),
        }
    best = {s: max([reference[s]] + [lls[name][s] for name in lls]) for s in problems}
    rows = []
    base = times["kmeans (1 start)"]
    for name in lls:
        ok = sum(lls[name][s] >= best[s] - slack for s in problems)
        above_truth = sum(lls[name][s] >= problems[s][2] for s in problems)
        worst = min(lls[name][s] - best[s] for s in problems)
        drop = dropped.get(name, 0) if with_flexmix else 0
        rows.append([
            name, f"{ok}/{n_problems}", f"{above_truth}/{n_problems}", str(drop),
            f"{worst:.1f}" if np.isfinite(worst) else "-inf",
            f"{times[name]:.2f}",
            f"{times[name] / base:.2f}",
        ])
    print(f"n = {fmt_n(n)}, {n_problems} problems (smallest expert 3-5% of the rows); "
          f"success = within {slack:g} of the best-known log-likelihood")
    print_table(
        ["strategy", "success", ">= truth", "dropped an expert", "worst gap", "total time s",
         "time / kmeans fit"],
        rows,
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 20000])
    parser.add_argument("--problems", type=int, default=30)
    parser.add_argument("--slack", type=float, default=1.0)
    parser.add_argument("--skip-flexmix", action="store_true")
    args = parser.parse_args(argv)
    with_flexmix = not args.skip_flexmix and flexmix_available()
    print(f"# bench_init: {git_note()}; {load_note()}; flexmix {'on' if with_flexmix else 'off'}\n")
    for n in args.sizes:
        bench_size(n, args.problems, args.slack, with_flexmix)
    print(f"# done; {load_note()}")


if __name__ == "__main__":
    main()
