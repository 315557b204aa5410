"""Benchmark of MixtureOfExpertsClassifier against R's flexmix (binomial mixture of experts).

The script prints a markdown table; it never asserts on time.

Data: a 2-expert softmax-gated mixture of logistic regressions with two
standard normal covariates (gate and experts on both), 0/1 outcomes, from the
known parameters ``GATE_COEF`` and ``EXPERT_COEF`` below. The same CSV file is
fitted by

* ``MixtureOfExpertsClassifier(n_experts=2, n_init=R, gate_penalty=0,
  expert_penalty=0)`` (plain maximum likelihood, k-means starts), and
* ``flexmix(cbind(y, 1 - y) ~ x1 + x2, k = 2, model = FLXMRglm(family =
  "binomial"), concomitant = FLXPmultinom(~ x1 + x2), control = list(minprior
  = 0, tolerance = 1e-6, iter.max = 1000))`` through ``Rscript --vanilla``,
  R random starts,

with the same number R of restarts on both sides, the best start kept. Only the
``flexmix`` calls are timed inside R (``proc.time``), so R's start-up and the
CSV reading are excluded; mixexp's ``fit`` is timed with
:func:`time.perf_counter` after a warm-up fit on a small slice, so Numba
compilation (or loading of the on-disk kernel cache) is excluded too. The
table gives, per size, time, EM iterations (of the best start) and total
log-likelihood of both, the time ratio flexmix / mixexp and the
log-likelihood difference mixexp - flexmix (positive: mixexp's optimum is
higher).

Stopping rules: flexmix stops when ``|LL_t - LL_{t-1}| / (|LL_t| + 0.1) <
tolerance`` (relative change of the total log-likelihood); mixexp when the
mean log-likelihood changes by less than ``tol``, i.e. at a relative change
``tol / |mean log-lik|``. With binary outcomes ``|mean log-lik| <= log 2``;
the mean log-likelihood of these data is about -0.41, so ``tol = 4e-7`` is
flexmix's relative 1e-6; the effective relative tolerance ``tol / |mean
log-lik|`` of each fit is printed (column "rel tol").

Run it from the repository root::

    python benchmarks/bench_classifier.py            # n = 1e4, 1e5
    python benchmarks/bench_classifier.py --quick    # n = 1e4

``--sizes``, ``--restarts``, ``--repeats`` and ``--seed`` override the
defaults (see ``--help``). Without ``Rscript`` or flexmix only the mixexp
columns are filled.
"""

import argparse
import gc
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import warnings

import numba
import numpy as np
from scipy.special import expit, softmax
from sklearn.exceptions import ConvergenceWarning

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_em import fmt_n, git_note, load_note, print_table  # noqa: E402

from mixexp import MixtureOfExpertsClassifier  # noqa: E402

N_EXPERTS = 2
#: Gate and expert coefficients of the simulated model (intercept, x1, x2);
#: expert coefficients are the logit of P(y = 1).
GATE_COEF = np.array([[0.0, 0.0, 0.0], [0.0, 3.0, -2.0]])
EXPERT_COEF = np.array([[1.0, 3.0, -1.0], [-1.0, -2.0, 2.5]])
FLEXMIX_TOL = 1e-6
MIXEXP_TOL = 4e-7
MAX_ITER = 1000

R_SCRIPT = r"""
suppressPackageStartupMessages(library(flexmix))
args <- commandArgs(trailingOnly = TRUE)
D <- read.csv(args[1])
nrep <- as.integer(args[2]); tol <- as.numeric(args[3]); seed <- as.integer(args[4])
iter_max <- as.integer(args[5]); timings <- as.integer(args[6])
# nrep restarts, best kept; the whole (seeded, hence identical) set of restarts is
# timed `timings` times and the median reported. Only flexmix() is timed.
times <- numeric(timings)
for (rep in seq_len(timings)) {
  set.seed(seed)
  best <- NULL
  elapsed <- 0
  failures <- 0
  for (r in seq_len(nrep)) {
    t0 <- proc.time()[["elapsed"]]
    m <- tryCatch(
      flexmix(cbind(y, 1 - y) ~ x1 + x2, data = D, k = 2, model = FLXMRglm(family = "binomial"),
              concomitant = FLXPmultinom(~ x1 + x2),
              control = list(minprior = 0, tolerance = tol, iter.max = iter_max)),
      error = function(e) NULL)
    elapsed <- elapsed + (proc.time()[["elapsed"]] - t0)
    if (is.null(m) || m@k < 2) {
      failures <- failures + 1
    } else if (is.null(best) || as.numeric(logLik(m)) > as.numeric(logLik(best))) {
      best <- m
    }
  }
  times[rep] <- elapsed
}
if (is.null(best)) {
  cat(sprintf("RESULT %.6f NA NA NA %d\n", median(times), failures))
} else {
  cat(sprintf("RESULT %.6f %d %.10f %d %d\n", median(times), best@iter,
              as.numeric(logLik(best)), as.integer(best@converged), failures))
}
"""


def make_data(n, seed):
    """(X, y) from the 2-expert binomial mixture of experts above."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 2))
    X1 = np.column_stack([np.ones(n), X])
    gate = softmax(X1 @ GATE_COEF.T, axis=1)
    expert = (rng.uniform(size=n) < gate[:, 1]).astype(int)
    p1 = expit(np.einsum("np,np->n", X1, EXPERT_COEF[expert]))
    y = (rng.uniform(size=n) < p1).astype(int)
    return X, y


def make_estimator(restarts):
    return MixtureOfExpertsClassifier(
        n_experts=N_EXPERTS, n_init=restarts, tol=MIXEXP_TOL, max_iter=MAX_ITER,
        gate_penalty=0.0, expert_penalty=0.0, random_state=0,
    )


def flexmix_status():
    """None when Rscript and flexmix are usable, else the reason they are not."""
    if shutil.which("Rscript") is None:
        return "Rscript not found on PATH"
    probe = subprocess.run(
        ["Rscript", "--vanilla", "-e",
         'quit(status = if (requireNamespace("flexmix", quietly = TRUE)) 0 else 1)'],
        capture_output=True, text=True, check=False,
    )
    if probe.returncode != 0:
        return "the R package flexmix is not installed"
    return None


def run_flexmix(csv_path, script_path, restarts, seed, repeats, timeout):
    """Run the R script; a dict of its RESULT line, or a dict with 'error'."""
    cmd = ["Rscript", "--vanilla", script_path, csv_path, str(restarts), repr(FLEXMIX_TOL),
           str(seed), str(MAX_ITER), str(repeats)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:g} s"}
    for line in proc.stdout.splitlines():
        parts = line.split()
        if parts and parts[0] == "RESULT" and len(parts) == 6:
            if parts[2] == "NA":
                return {"error": f"all {parts[5]} flexmix runs failed"}
            return {"time": float(parts[1]), "iter": int(parts[2]), "loglik": float(parts[3]),
                    "converged": parts[4] == "1", "failures": int(parts[5])}
    tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    return {"error": f"Rscript exit {proc.returncode}: {tail}"}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="n = 1e4 only")
    parser.add_argument("--sizes", type=int, nargs="+", help="sample sizes (default 1e4 1e5)")
    parser.add_argument("--restarts", type=int, default=3, help="starts on each side (default 3)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="timed repetitions of mixexp's fit, median reported (default 3)")
    parser.add_argument("--flexmix-repeats", type=int, default=1,
                        help="timed repetitions of flexmix's restarts (default 1)")
    parser.add_argument("--seed", type=int, default=0, help="data seed and flexmix's set.seed")
    parser.add_argument("--timeout", type=float, default=7200, help="seconds per Rscript run")
    args = parser.parse_args(argv)
    sizes = args.sizes or ([10_000] if args.quick else [10_000, 100_000])

    status = flexmix_status()
    print("# mixexp classifier vs flexmix: 2-expert binomial mixture of experts, 2 covariates")
    print()
    print(f"mixexp {git_note()}; Python {platform.python_version()}, numpy {np.__version__}, "
          f"numba {numba.__version__}, {numba.get_num_threads()} Numba threads")
    print(f"data: make_data(n, seed={args.seed}) in this script; restarts: {args.restarts} on each side")
    print(f"mixexp: MixtureOfExpertsClassifier(n_experts=2, n_init={args.restarts}, tol={MIXEXP_TOL:g}, "
          f"max_iter={MAX_ITER}, gate_penalty=0, expert_penalty=0, random_state=0); k-means starts; "
          f"time = median of {args.repeats} fits after a warm-up fit (compilation excluded)")
    if status is None:
        print(f"flexmix: FLXMRglm(binomial) on cbind(y, 1 - y) + FLXPmultinom(~ x1 + x2), minprior = 0, "
              f"tolerance = {FLEXMIX_TOL:g}, iter.max = {MAX_ITER}; random starts; time of the flexmix() "
              f"calls only (median of {args.flexmix_repeats})")
    else:
        print(f"flexmix: not run ({status})")
    print(f"{load_note()} at the start")
    print(flush=True)

    rows, notes = [], []
    with tempfile.TemporaryDirectory(prefix="bench_classifier_") as tmp:
        script_path = os.path.join(tmp, "fit.R")
        with open(script_path, "w") as f:
            f.write(R_SCRIPT)
        for n in sizes:
            X, y = make_data(n, args.seed)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                make_estimator(1).fit(X[:1000], y[:1000])  # compile / load the kernels
            est = make_estimator(args.restarts)
            times = []
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", ConvergenceWarning)
                for _ in range(args.repeats):
                    gc.collect()
                    t0 = time.perf_counter()
                    est.fit(X, y)
                    times.append(time.perf_counter() - t0)
            if caught:
                notes.append(f"n={fmt_n(n)}: mixexp's best start did not converge in {MAX_ITER} iterations")
            t_mx = float(np.median(times))
            ll_mx = float(est.score_samples(X, y).sum())
            row = [fmt_n(n), f"{t_mx:.3f}", est.n_iter_, f"{ll_mx:.3f}", f"{MIXEXP_TOL / abs(ll_mx / n):.1e}"]
            if status is None:
                csv_path = os.path.join(tmp, f"d_{n}.csv")
                np.savetxt(csv_path, np.column_stack([X, y]), delimiter=",", fmt="%.17g",
                           header="x1,x2,y", comments="")
                fm = run_flexmix(csv_path, script_path, args.restarts, args.seed, args.flexmix_repeats,
                                 args.timeout)
                if "error" in fm:
                    notes.append(f"n={fmt_n(n)}: flexmix {fm['error']}")
                    row += ["-"] * 5
                else:
                    if not fm["converged"]:
                        notes.append(f"n={fmt_n(n)}: flexmix's best start did not converge")
                    if fm["failures"]:
                        notes.append(
                            f"n={fmt_n(n)}: {fm['failures']} flexmix start(s) failed or lost an expert"
                        )
                    row += [f"{fm['time']:.2f}", fm["iter"], f"{fm['loglik']:.3f}",
                            f"{fm['time'] / t_mx:.0f}x", f"{ll_mx - fm['loglik']:+.3f}"]
            else:
                row += ["-"] * 5
            rows.append(row)
            print(f"n={fmt_n(n)} done", file=sys.stderr, flush=True)
    print_table(
        ["n", "mixexp s", "mixexp iter", "mixexp log-lik", "rel tol", "flexmix s", "flexmix iter",
         "flexmix log-lik", "flexmix/mixexp", "log-lik diff"],
        rows,
    )
    for note in notes:
        print(f"- {note}")
    print(f"{load_note()} at the end")


if __name__ == "__main__":
    main()
