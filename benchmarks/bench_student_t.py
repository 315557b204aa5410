"""Benchmark of the Student-t mixture of experts against the Gaussian one (and flexmix's).

The script prints a plain-text (markdown-style) table; it never asserts on time.

Data: a 3-expert softmax-gated mixture of linear experts with two covariates,
``x ~ N(0, I)``, whose noise is Student-t with 3, 5 and 10 degrees of freedom
(``y = [1, x] . beta_z + sigma_z t_{nu_z}``), optionally with a fraction of
gross errors (``--outliers``, default 0: y of that fraction of rows shifted by
+-U(15, 30), 25-50 times the noise scales, with a random sign; scattered
around every line, so no expert can take them as a component of their own).

Fitted on the same data, for each size:

* ``MixtureOfExpertsRegressor(3, expert="student_t")``: t experts fitted by
  ECME (:class:`mixexp.experts.StudentTExperts`);
* ``MixtureOfExpertsRegressor(3)``: Gaussian experts (the fused Numba pass);
* R's flexmix, ``flexmix(y ~ x1 + x2, k = 3, model = FLXMRglm(family =
  "gaussian"), concomitant = FLXPmultinom(~ x1 + x2))``, when ``Rscript``
  and flexmix are installed. flexmix has no Student-t expert (its
  ``FLXMRglm`` families are Gaussian, binomial, Poisson and Gamma), so it is
  the Gaussian MoE in R: a time reference for the same EM problem size, not
  a fit of the same model.

Every fit uses one start (mixexp: k-means, ``random_state=0``; flexmix:
random, ``set.seed(seed)``), ``gate_penalty=0`` (plain maximum likelihood,
like flexmix), at most 1000 iterations, mixexp ``tol=1e-6`` on the mean
log-likelihood and flexmix ``tolerance=1e-6`` on its relative change (nearly
the same rule here, the mean log-likelihood being of order one). mixexp's
``fit`` is timed with :func:`time.perf_counter` after a warm-up fit on 2000
rows (Numba compilation excluded); flexmix's ``flexmix()`` call is timed in R
(``proc.time``; R start-up and CSV reading excluded). Times are medians of
``--repeats`` fits. Columns: wall time, EM iterations, total conditional
log-likelihood ``sum_i log p(y_i | x_i)``, the largest absolute error of the
expert coefficients against the truth (experts matched to the true ones by
the Hungarian algorithm), and the fitted degrees of freedom. The load average
is printed: other processes on the machine slow the parallel Numba kernels.

Run it from the repository root::

    python benchmarks/bench_student_t.py                 # n = 1e4, 1e5
    python benchmarks/bench_student_t.py --outliers 0.05
    python benchmarks/bench_student_t.py --sizes 1e4 --repeats 1 --no-flexmix
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
from scipy import special
from scipy.optimize import linear_sum_assignment
from sklearn.exceptions import ConvergenceWarning

import mixexp
from mixexp import MixtureOfExpertsRegressor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_em import load_note, print_table  # noqa: E402

GATE = np.array([[0.0, 0.0, 0.0], [1.0, 2.0, -1.0], [-0.5, -1.5, -2.0]])
COEF = np.array([[1.0, 2.0, -1.0], [-2.0, -1.0, 3.0], [4.0, 0.5, 1.5]])
SCALE = np.array([0.5, 0.7, 0.6])
DF = np.array([3.0, 5.0, 10.0])
K = 3
TOL = 1e-6
MAX_ITER = 1000

R_SCRIPT = r"""
suppressPackageStartupMessages(library(flexmix))
args <- commandArgs(trailingOnly = TRUE)
D <- read.csv(args[1])
k <- as.integer(args[2]); tol <- as.numeric(args[3]); seed <- as.integer(args[4])
iter_max <- as.integer(args[5]); repeats <- as.integer(args[6])
times <- numeric(repeats)
m <- NULL
for (r in seq_len(repeats)) {
  set.seed(seed)
  t0 <- proc.time()[["elapsed"]]
  m <- tryCatch(
    flexmix(y ~ x1 + x2, data = D, k = k, model = FLXMRglm(family = "gaussian"),
            concomitant = FLXPmultinom(~ x1 + x2),
            control = list(minprior = 0, tolerance = tol, iter.max = iter_max)),
    error = function(e) NULL)
  times[r] <- proc.time()[["elapsed"]] - t0
}
if (is.null(m)) {
  cat("RESULT NA\n")
} else {
  p <- parameters(m)  # rows coef.(Intercept), coef.x1, coef.x2, sigma; one column per component
  cat("RESULT", sprintf("%.6f", median(times)), m@iter, sprintf("%.10f", as.numeric(logLik(m))),
      as.integer(m@converged), m@k, sprintf("%.10g", as.vector(p[1:3, , drop = FALSE])), "\n")
}
"""


def sample(n, outliers, seed):
    """x ~ N(0, I); z ~ softmax(GATE [1, x]); y = [1, x] . COEF_z + SCALE_z t_{DF_z}; then gross errors."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 2))
    X1 = np.column_stack([np.ones(n), X])
    gate = special.softmax(X1 @ GATE.T, axis=1)
    z = np.minimum((rng.uniform(size=(n, 1)) > np.cumsum(gate, axis=1)).sum(axis=1), K - 1)
    y = np.einsum("ij,ij->i", X1, COEF[z]) + SCALE[z] * rng.standard_t(DF[z])
    m = int(round(outliers * n))
    if m:
        rows = rng.choice(n, m, replace=False)
        y[rows] += rng.choice([-1.0, 1.0], size=m) * rng.uniform(15.0, 30.0, size=m)
    return X, y


def coef_error(fitted):
    """Largest |fitted - true| coefficient after matching experts to the truth (Hungarian)."""
    fitted = np.asarray(fitted, dtype=float)
    cost = ((COEF[:, None, :] - fitted[None, :, :]) ** 2).sum(-1)
    rows, cols = linear_sum_assignment(cost)
    return float(np.abs(fitted[cols] - COEF[rows]).max()) if len(cols) == K else float("nan")


def make_estimator(expert):
    return MixtureOfExpertsRegressor(
        K, expert=expert, n_init=1, tol=TOL, max_iter=MAX_ITER, gate_penalty=0.0, random_state=0
    )


def time_fit(expert, X, y, repeats):
    """Median wall time of ``repeats`` fits, the last fitted estimator, and whether it converged."""
    times = []
    est = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for _ in range(repeats):
            est = make_estimator(expert)
            t0 = time.perf_counter()
            est.fit(X, y)
            times.append(time.perf_counter() - t0)
    return float(np.median(times)), est


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


def flexmix_version():
    out = subprocess.run(
        ["Rscript", "--vanilla", "-e",
         'cat(R.version$major, R.version$minor, as.character(packageVersion("flexmix")), "\\n")'],
        capture_output=True, text=True, check=False,
    ).stdout.split()
    return f"R {out[0]}.{out[1]}, flexmix {out[2]}" if len(out) >= 3 else "R, flexmix (version unknown)"


def run_flexmix(X, y, seed, repeats, tmp, timeout):
    """Fit flexmix's Gaussian MoE; a dict with time, iter, loglik, converged, k, coef, or 'error'."""
    csv = os.path.join(tmp, "data.csv")
    np.savetxt(csv, np.column_stack([X, y]), delimiter=",", fmt="%.17g", header="x1,x2,y", comments="")
    script = os.path.join(tmp, "fit.R")
    with open(script, "w") as f:
        f.write(R_SCRIPT)
    cmd = ["Rscript", "--vanilla", script, csv, str(K), repr(TOL), str(seed), str(MAX_ITER), str(repeats)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:g} s"}
    for line in proc.stdout.splitlines():
        parts = line.split()
        if parts and parts[0] == "RESULT":
            if parts[1] == "NA":
                return {"error": "flexmix failed"}
            k = int(parts[5])
            return {
                "time": float(parts[1]), "iter": int(parts[2]), "loglik": float(parts[3]),
                "converged": parts[4] == "1", "k": k,
                "coef": np.array([float(v) for v in parts[6:]]).reshape(k, 3),
            }
    tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    return {"error": f"Rscript exit {proc.returncode}: {tail}"}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=lambda s: [int(float(v)) for v in s.split(",")],
                        default=[10_000, 100_000], help="comma-separated sample sizes; default 1e4,1e5")
    parser.add_argument("--outliers", type=float, default=0.0,
                        help="fraction of rows whose y is replaced by a gross outlier; default 0")
    parser.add_argument("--repeats", type=int, default=3, help="timed fits per model and size; default 3")
    parser.add_argument("--seed", type=int, default=0, help="data seed and R's set.seed; default 0")
    parser.add_argument("--no-flexmix", action="store_true", help="skip R's flexmix")
    parser.add_argument("--flexmix-timeout", type=float, default=1800.0)
    args = parser.parse_args(argv)

    status = "skipped (--no-flexmix)" if args.no_flexmix else flexmix_status()
    print(f"# Student-t vs Gaussian mixture of experts (mixexp {mixexp.__version__})")
    print()
    print(f"python {platform.python_version()}, numpy {np.__version__}, numba {numba.__version__}, "
          f"{platform.machine()}, {os.cpu_count()} CPUs, {numba.get_num_threads()} Numba threads")
    print(f"data: K = {K} softmax-gated linear experts, 2 covariates, t noise with df = {DF.tolist()}, "
          f"scales {SCALE.tolist()}; gross errors (y +- U(15, 30)): {args.outliers:.0%} of rows; "
          f"seed {args.seed}")
    print(f"fits: one start, gate_penalty=0, tol {TOL:g}, max_iter {MAX_ITER}; time = median of "
          f"{args.repeats} fits (mixexp after a warm-up fit; flexmix timed inside R)")
    print("flexmix: " + (flexmix_version() + "; Gaussian experts only (flexmix has no Student-t expert)"
                         if status is None else f"not run ({status})"))
    print(f"{load_note()} at the start")
    print(flush=True)

    rows = []
    notes = []
    with tempfile.TemporaryDirectory(prefix="bench_t_") as tmp:
        for n in args.sizes:
            X, y = sample(n, args.outliers, args.seed)
            for expert in ("student_t", "gaussian"):  # warm-up: compile or load the kernels
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", ConvergenceWarning)
                    make_estimator(expert).fit(X[:2000], y[:2000])
            t_ref = None
            for expert, label in (("student_t", "mixexp t-MoE (ECME)"), ("gaussian", "mixexp Gaussian MoE")):
                t, est = time_fit(expert, X, y, args.repeats)
                t_ref = t if t_ref is None else t_ref
                if not est.converged_:
                    notes.append(f"n={n}: {label} did not converge in {MAX_ITER} iterations")
                df = np.sort(est.df_).round(2).tolist() if expert == "student_t" else "-"
                ll = est.score_samples(X, y).sum()
                rows.append([f"{n:.0e}", label, f"{t:.3f}", f"{t / t_ref:.2f}", est.n_iter_,
                             f"{ll:.1f}", f"{coef_error(est.expert_coef_):.4f}", df])
            if status is None:
                fm = run_flexmix(X, y, args.seed, args.repeats, tmp, args.flexmix_timeout)
                if "error" in fm:
                    notes.append(f"n={n}: flexmix {fm['error']}")
                    rows.append([f"{n:.0e}", "flexmix Gaussian MoE (R)"] + ["-"] * 6)
                else:
                    if not fm["converged"]:
                        notes.append(f"n={n}: flexmix did not converge in {MAX_ITER} iterations")
                    if fm["k"] != K:
                        notes.append(f"n={n}: flexmix kept {fm['k']} of {K} components")
                    rows.append([f"{n:.0e}", "flexmix Gaussian MoE (R)", f"{fm['time']:.3f}",
                                 f"{fm['time'] / t_ref:.2f}", fm["iter"], f"{fm['loglik']:.1f}",
                                 f"{coef_error(fm['coef']):.4f}", "-"])
            print(f"n = {n:.0e} done ({load_note()})", flush=True)
    print()
    print_table(["n", "model", "time s", "time / t-MoE", "iterations", "log-lik", "max |coef err|",
                 "df (sorted)"], rows)
    for note in notes:
        print(f"note: {note}")
    print(f"{load_note()} at the end")


if __name__ == "__main__":
    main()
