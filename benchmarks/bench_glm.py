"""Benchmark of mixexp's Poisson and Gamma (log-link) experts against R's flexmix.

Data come from a 3-expert mixture of experts whose softmax gate uses one
covariate ``z`` and whose log-link experts use another, ``x``::

    gate logits  (0, 0.5 + 2 z, -0.5 - 2 z)
    log means    (1 + 0.5 x, 2 - 0.5 x, x)
    Gamma shapes (2, 8, 25)

Both libraries fit the same CSV file with the same number of starts:

* mixexp: ``MixtureOfExpertsRegressor(3, expert="poisson" | "gamma",
  gate_features=[0], expert_features=[1], gate_penalty=0, n_init=restarts)``,
  timed with :func:`time.perf_counter` after a warm-up fit on a small slice (so
  Numba compilation, or the loading of its on-disk cache, is excluded);
* flexmix: ``flexmix(y ~ x, k = 3, model = FLXMRglm(family = "poisson"),
  concomitant = FLXPmultinom(~ z), control = list(minprior = 0, tolerance =
  tol, iter.max = ...))`` through ``Rscript --vanilla``, ``restarts`` calls, the
  best log-likelihood kept; only the ``flexmix()`` calls are timed, inside R.
  For Gamma, flexmix 2.3-18 hard-codes ``Gamma()``'s inverse link, so its
  ``FLXMRglm(family = "Gamma")`` driver is used with the fit and component
  functions switched to ``Gamma(link = "log")`` (still ``glm.fit`` M-steps and
  flexmix's shape estimate ``sum(w) / deviance``, which is not the
  maximum-likelihood shape: flexmix's reported log-likelihood is at that shape).

Stopping rules: flexmix stops when ``|LL_t - LL_{t-1}| / (|LL_t| + 0.1) <
tol`` (relative change of the total log-likelihood), mixexp when the mean
log-likelihood changes by less than its ``tol``. mixexp gets ``tol = flexmix
tol * |mean log-likelihood at the true parameters|``, the same relative
criterion; both use ``max_iter = iter.max``. The table gives wall time
(mixexp: median and minimum of ``--fit-repeats`` identical fits; flexmix: one
run of its starts), iterations of the best start, total log-likelihood of the best start (the
conditional log-likelihood ``sum_i log p(y_i | x_i, z_i)`` on both sides), the
time ratio flexmix / mixexp and the log-likelihood difference mixexp -
flexmix. Without ``Rscript`` or flexmix only the mixexp columns are filled.

Run it from the repository root::

    python benchmarks/bench_glm.py            # n = 1e4 and 1e5
    python benchmarks/bench_glm.py --quick    # n = 1e4

See ``--help`` for ``--sizes``, ``--restarts``, ``--tol``, ``--families``,
``--threads`` and ``--seed``. Timings of Numba's parallel kernels suffer when
other processes keep the cores busy (a parallel region waits for a descheduled
worker), so the load average is printed at the start and at the end; on a busy
machine ``--threads 1`` is the steadier measurement.
"""

import argparse
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
from scipy import special, stats
from sklearn.exceptions import ConvergenceWarning

from mixexp import MixtureOfExpertsRegressor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_em import print_table  # noqa: E402

N_EXPERTS = 3
GATE = np.array([[0.0, 0.0], [0.5, 2.0], [-0.5, -2.0]])
EXPERTS = np.array([[1.0, 0.5], [2.0, -0.5], [0.0, 1.0]])
SHAPES = np.array([2.0, 8.0, 25.0])
FLEXMIX_TOL = 1e-6  # flexmix's default
MAX_ITER = 2000

R_SCRIPT = r"""
suppressPackageStartupMessages(library(flexmix))
args <- commandArgs(trailingOnly = TRUE)
D <- read.csv(args[1])
family <- args[2]; nrep <- as.integer(args[3]); tol <- as.numeric(args[4])
seed <- as.integer(args[5]); iter_max <- as.integer(args[6])
model <- FLXMRglm(family = family)
if (family == "Gamma") {
  # flexmix 2.3-18 hard-codes Gamma()'s inverse link: the same driver with the log link
  model@defineComponent <- function(para) {
    predict <- function(x, ...) exp(x %*% para$coef)
    logLik <- function(x, y, ...) dgamma(y, shape = para$shape, scale = predict(x) / para$shape, log = TRUE)
    new("FLXcomponent", parameters = list(coef = para$coef, shape = para$shape),
        predict = predict, logLik = logLik, df = para$df)
  }
  model@fit <- function(x, y, w, component) {
    fit <- glm.fit(x, y, weights = w, family = Gamma(link = "log"), start = component$coef)
    model@defineComponent(para = list(coef = coef(fit), df = ncol(x) + 1,
                                      shape = sum(fit$prior.weights) / fit$deviance))
  }
}
set.seed(seed)
best <- NULL
elapsed <- 0
failures <- 0
for (r in seq_len(nrep)) {
  t0 <- proc.time()[["elapsed"]]
  m <- tryCatch(
    flexmix(y ~ x, data = D, k = 3, model = model, concomitant = FLXPmultinom(~ z),
            control = list(minprior = 0, tolerance = tol, iter.max = iter_max)),
    error = function(e) NULL)
  elapsed <- elapsed + (proc.time()[["elapsed"]] - t0)
  if (is.null(m) || m@k < 3) {
    failures <- failures + 1
  } else if (is.null(best) || as.numeric(logLik(m)) > as.numeric(logLik(best))) {
    best <- m
  }
}
if (is.null(best)) {
  cat(sprintf("RESULT %.6f NA NA NA %d\n", elapsed, failures))
} else {
  cat(sprintf("RESULT %.6f %d %.10f %d %d\n", elapsed, best@iter, as.numeric(logLik(best)),
              as.integer(best@converged), failures))
}
"""


def simulate(n, family, seed):
    """(X, y) with X = [z, x]: gate on z, experts on x."""
    rng = np.random.default_rng(seed)
    z, x = rng.standard_normal(n), rng.standard_normal(n)
    prob = special.softmax(GATE[:, 0] + np.outer(z, GATE[:, 1]), axis=1)
    labels = np.minimum((rng.uniform(size=n)[:, None] > np.cumsum(prob, axis=1)).sum(axis=1), N_EXPERTS - 1)
    mu = np.exp(EXPERTS[labels, 0] + EXPERTS[labels, 1] * x)
    if family == "poisson":
        y = rng.poisson(mu).astype(float)
    else:
        y = rng.gamma(SHAPES[labels], mu / SHAPES[labels])
    return np.column_stack([z, x]), y


def true_mean_loglik(X, y, family):
    """Mean conditional log-likelihood at the generating parameters."""
    z, x = X[:, 0], X[:, 1]
    log_gate = special.log_softmax(GATE[:, 0] + np.outer(z, GATE[:, 1]), axis=1)
    mu = np.exp(EXPERTS[:, 0] + np.outer(x, EXPERTS[:, 1]))
    if family == "poisson":
        dens = stats.poisson.logpmf(y[:, None], mu)
    else:
        dens = stats.gamma.logpdf(y[:, None], a=SHAPES, scale=mu / SHAPES)
    return float(special.logsumexp(log_gate + dens, axis=1).mean())


def make_estimator(family, restarts, tol):
    return MixtureOfExpertsRegressor(
        N_EXPERTS, expert=family, gate_features=[0], expert_features=[1], gate_penalty=0.0,
        n_init=restarts, tol=tol, max_iter=MAX_ITER, random_state=0,
    )


def run_mixexp(X, y, family, restarts, tol, repeats):
    """Median and minimum over ``repeats`` identical (seeded) fits, after a warm-up fit."""
    times = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        make_estimator(family, restarts, tol).fit(X[:2000], y[:2000])  # warm-up: compile / load kernels
        for _ in range(repeats):
            t0 = time.perf_counter()
            moe = make_estimator(family, restarts, tol).fit(X, y)
            times.append(time.perf_counter() - t0)
    return {
        "time": float(np.median(times)),
        "min_time": float(np.min(times)),
        "iter": moe.n_iter_,
        "loglik": float(moe.score_samples(X, y).sum()),
        "converged": moe.converged_,
    }


def flexmix_status():
    """None when Rscript and flexmix are usable, else the reason they are not."""
    if shutil.which("Rscript") is None:
        return "Rscript not found on PATH"
    probe = subprocess.run(
        ["Rscript", "--vanilla", "-e",
         'quit(status = if (requireNamespace("flexmix", quietly = TRUE)) 0 else 1)'],
        capture_output=True, text=True, check=False,
    )
    return None if probe.returncode == 0 else "the R package flexmix is not installed"


def run_flexmix(X, y, family, restarts, tol, seed, timeout):
    with tempfile.TemporaryDirectory() as tmp:
        csv = os.path.join(tmp, "d.csv")
        np.savetxt(csv, np.column_stack([y, X[:, 1], X[:, 0]]), delimiter=",", header="y,x,z",
                   comments="", fmt="%.17g")
        script = os.path.join(tmp, "fit.R")
        with open(script, "w") as fh:
            fh.write(R_SCRIPT)
        r_family = "poisson" if family == "poisson" else "Gamma"
        cmd = ["Rscript", "--vanilla", script, csv, r_family, str(restarts), repr(tol), str(seed),
               str(MAX_ITER)]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            return {"error": f"timed out after {timeout:g} s"}
    for line in proc.stdout.splitlines():
        parts = line.split()
        if parts and parts[0] == "RESULT":
            if parts[2] == "NA":
                return {"error": f"all {parts[5]} flexmix runs failed"}
            return {"time": float(parts[1]), "iter": int(parts[2]), "loglik": float(parts[3]),
                    "converged": parts[4] == "1", "failures": int(parts[5])}
    tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    return {"error": f"Rscript exit {proc.returncode}: {tail}"}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="n = 1e4 only")
    parser.add_argument("--sizes", type=lambda s: [int(float(v)) for v in s.split(",")], default=None,
                        help="comma-separated sample sizes (default 1e4,1e5)")
    parser.add_argument("--families", default="poisson,gamma", help="comma-separated; default poisson,gamma")
    parser.add_argument("--restarts", type=int, default=3, help="starts on both sides; default 3")
    parser.add_argument("--tol", type=float, default=FLEXMIX_TOL,
                        help="flexmix's relative tolerance (mixexp's is derived from it); "
                        f"default {FLEXMIX_TOL:g}")
    parser.add_argument("--seed", type=int, default=0, help="data seed and R's set.seed; default 0")
    parser.add_argument("--flexmix-timeout", type=float, default=3600.0, help="seconds per flexmix run")
    parser.add_argument("--fit-repeats", type=int, default=5,
                        help="timed mixexp fits per row (median and minimum reported); default 5")
    parser.add_argument("--threads", type=int, default=None,
                        help="Numba threads for mixexp (default: Numba's default, every core)")
    args = parser.parse_args(argv)
    if args.threads is not None:
        numba.set_num_threads(args.threads)
    sizes = args.sizes or ([10_000] if args.quick else [10_000, 100_000])
    families = args.families.split(",")

    status = flexmix_status()
    print(f"mixexp GLM experts against flexmix; Python {platform.python_version()}, "
          f"numba {numba.__version__} "
          f"({numba.get_num_threads()} threads), {os.cpu_count()} CPUs, 1-min load average "
          f"{os.getloadavg()[0]:.2f} at start")
    print(f"K = {N_EXPERTS}, gate on z, experts on x; {args.restarts} starts each; "
          f"flexmix tolerance {args.tol:g}, "
          f"iter.max = max_iter = {MAX_ITER}" + (f"; flexmix skipped: {status}" if status else ""))
    print()
    rows = []
    for family in families:
        for n in sizes:
            X, y = simulate(n, family, args.seed)
            tol = args.tol * abs(true_mean_loglik(X, y, family))
            ours = run_mixexp(X, y, family, args.restarts, tol, args.fit_repeats)
            flex = {"error": status} if status else run_flexmix(
                X, y, family, args.restarts, args.tol, args.seed, args.flexmix_timeout
            )
            if "error" in flex:
                print(f"flexmix ({family}, n = {n}): {flex['error']}", file=sys.stderr)
                f_time = f_iter = f_ll = ratio = ratio_min = diff = "-"
            else:
                f_time, f_iter, f_ll = f"{flex['time']:.2f}", flex["iter"], f"{flex['loglik']:.2f}"
                ratio = f"{flex['time'] / ours['time']:.0f}x"
                ratio_min = f"{flex['time'] / ours['min_time']:.0f}x"
                diff = f"{ours['loglik'] - flex['loglik']:+.3f}"
            rows.append([
                family, f"{n:.0e}".replace("e+0", "e"), f"{tol:.2g}", f"{ours['time']:.2f}",
                f"{ours['min_time']:.2f}", f_time, ratio, ratio_min,
                ours["iter"], f_iter, f"{ours['loglik']:.2f}", f_ll, diff,
            ])
    print_table(
        ["family", "n", "mixexp tol", "mixexp s (median)", "mixexp s (min)", "flexmix s",
         "flexmix / mixexp (median)", "(min)", "mixexp iter",
         "flexmix iter", "mixexp loglik", "flexmix loglik", "loglik diff"],
        rows,
    )
    print(f"1-min load average at end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
