"""Benchmarks of mixexp's EM: against R's flexmix, Numba kernels against numpy, memory.

The script prints plain-text (markdown-style) tables; it never asserts on time.
It measures three things:

1. **mixexp against flexmix.** Data from a 3-expert softmax-gated mixture of
   Gaussian linear experts with two covariates
   (:func:`mixexp.datasets.make_moe_regression`) are written to a CSV file and
   fitted by ``MixtureOfExpertsRegressor(n_experts=3, gate_penalty=0)`` and by
   ``flexmix(y ~ x1 + x2, k = 3, model = FLXMRglm(family = "gaussian"),
   concomitant = FLXPmultinom(~ x1 + x2), control = list(minprior = 0, ...))``
   through ``Rscript --vanilla``, with the same number of random restarts on
   both sides. Only the ``flexmix`` calls are timed inside R (``proc.time``), so
   R's start-up and the CSV reading are excluded; mixexp's ``fit`` is timed with
   :func:`time.perf_counter` after a warm-up fit on a small slice, so Numba
   compilation (or loading of the on-disk kernel cache) is excluded too. For
   each size the table gives time, EM iterations and total log-likelihood of
   both, the time ratio flexmix / mixexp and the log-likelihood difference.
   Without ``Rscript`` or flexmix only the mixexp columns are filled.

2. **Numba kernels against numpy.** At n = 1e6 samples and K = 8 experts:
   the E-step kernel :func:`mixexp._kernels.e_step` against vectorised numpy
   E-steps computed from the same (K, n) arrays of log gate weights and
   log-densities (SciPy's ``logsumexp`` and a max-shifted, in-place numpy
   version); and the fused kernel :func:`mixexp._kernels.fused_softmax_gaussian`
   (Gaussian log-densities, E-step, weighted Gram matrices of every expert and
   the softmax gate's objective, gradient and Hessian, in one pass over the
   data) against numpy computing the same quantities with BLAS matrix products.
   Medians of several repeats are reported, with the number of Numba threads.

3. **Memory.** The peak memory one ``fit`` allocates beyond the data, measured
   with :mod:`tracemalloc` (numpy registers its buffers with it), as a multiple
   of ``n * K * 8`` bytes (one float64 array of shape (K, n)), at two sizes a
   factor two apart: a constant multiple shows the O(nK) footprint, with no
   (n, K, d) temporaries.

Run it from the repository root::

    python benchmarks/bench_em.py            # n = 2e3, 2e4, 2e5; kernels at 1e6
    python benchmarks/bench_em.py --quick    # n = 2e3, 2e4; kernels at 2e5

``--sizes``, ``--restarts``, ``--repeats`` and ``--seed`` override the defaults
(see ``--help``). R's flexmix is optional.
"""

import argparse
import gc
import inspect
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc
import warnings

import numba
import numpy as np
from scipy.special import logsumexp
from sklearn.exceptions import ConvergenceWarning

import mixexp
from mixexp import MixtureOfExpertsRegressor
from mixexp._kernels import (
    e_step,
    fused_softmax_gaussian,
    gaussian_log_prob,
    linear_stats,
    log_softmax_linear,
    softmax_gate_stats,
)
from mixexp.datasets import make_moe_regression

N_EXPERTS = 3
N_FEATURES = 2
# flexmix stops when |LL_t - LL_{t-1}| / (|LL_t| + 0.1) < tolerance (relative change
# of the total log-likelihood LL); 1e-6 is its default.
FLEXMIX_TOL = 1e-6  # default; --tol sets both sides
# mixexp stops when the MEAN log-likelihood LL / n changes by less than tol, i.e.
# when |LL_t - LL_{t-1}| / |LL_t| < tol / |LL_t / n|. The same relative criterion
# as flexmix's would be tol = 1e-6 * |mean log-lik|; on these data the mean
# log-likelihood is of order one (noise variances 0.1-0.5), so tol = 1e-6 is
# (nearly) the same stopping rule. The effective relative tolerance
# tol / |mean log-lik| is printed for each fit.
MIXEXP_TOL = 1e-6  # default; --tol sets both sides
MAX_ITER = 1000  # both sides (flexmix's iter.max; mixexp's max_iter)

R_SCRIPT = r"""
suppressPackageStartupMessages(library(flexmix))
args <- commandArgs(trailingOnly = TRUE)
D <- read.csv(args[1])
nrep <- as.integer(args[2])
tol <- as.numeric(args[3])
seed <- as.integer(args[4])
iter_max <- as.integer(args[5])
timings <- as.integer(args[6])
# nrep restarts, best kept; the whole (seeded, hence identical) set of restarts is
# timed `timings` times and the median time reported. Only flexmix() is timed.
times <- numeric(timings)
for (rep in seq_len(timings)) {
  set.seed(seed)
  best <- NULL
  elapsed <- 0
  failures <- 0
  for (r in seq_len(nrep)) {
    t0 <- proc.time()[["elapsed"]]
    m <- tryCatch(
      flexmix(y ~ x1 + x2, data = D, k = 3, model = FLXMRglm(family = "gaussian"),
              concomitant = FLXPmultinom(~ x1 + x2),
              control = list(minprior = 0, tolerance = tol, iter.max = iter_max)),
      error = function(e) NULL)
    elapsed <- elapsed + (proc.time()[["elapsed"]] - t0)
    if (is.null(m)) {
      failures <- failures + 1
    } else if (is.null(best) || as.numeric(logLik(m)) > as.numeric(logLik(best))) {
      best <- m
    }
  }
  times[rep] <- elapsed
}
if (is.null(best)) {
  cat(sprintf("RESULT %.6f NA NA NA NA %d\n", median(times), failures))
} else {
  cat(sprintf("RESULT %.6f %d %.10f %d %d %d\n", median(times), best@iter,
              as.numeric(logLik(best)), as.integer(best@converged), best@k, failures))
}
"""


# ----------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------
def print_table(headers, rows):
    """Print a markdown-style table with right-aligned columns."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[j]) for r in cells) for j in range(len(headers))]

    def line(r):
        return "| " + " | ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) + " |"

    print(line(cells[0]))
    print("|" + "|".join("-" * (w + 1) + ":" for w in widths) + "|")
    for r in cells[1:]:
        print(line(r))
    print()


def time_calls(func, repeats, warm=True):
    """Median and minimum wall time of ``func()`` over ``repeats`` calls.

    With ``warm`` one untimed call comes first.
    """
    if warm:
        func()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        func()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)), float(np.min(times))


def git_note():
    """Commit of the mixexp checkout being measured, when it is a git work tree."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(mixexp.__file__)))
    try:
        head = subprocess.run(["git", "-C", root, "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, check=False, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", root, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=False, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "commit unknown"
    if not head:
        return "commit unknown"
    return f"commit {head}{' + uncommitted changes' if dirty else ''}"


def load_note():
    """The 1-minute load average against the CPU count (other processes skew timings)."""
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        return "load average unavailable"
    return f"1-min load average {load:.2f} on {os.cpu_count()} CPUs"


def fmt_n(n):
    return f"{n:.0e}".replace("e+0", "e") if n >= 1000 and n % 10 ** int(np.log10(n)) == 0 else str(n)


def make_estimator(restarts, max_iter=MAX_ITER):
    return MixtureOfExpertsRegressor(
        n_experts=N_EXPERTS,
        n_init=restarts,
        tol=MIXEXP_TOL,
        max_iter=max_iter,
        gate_penalty=0.0,
        random_state=0,
    )


def warm_up(X, y, restarts):
    """Fit on a small slice so every kernel is compiled (or loaded from cache)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        make_estimator(restarts).fit(X[:500], y[:500])


# ----------------------------------------------------------------------------
# 1. mixexp against flexmix
# ----------------------------------------------------------------------------
def flexmix_status():
    """None when Rscript and flexmix are usable, else the reason they are not."""
    rscript = shutil.which("Rscript")
    if rscript is None:
        return "Rscript not found on PATH"
    probe = subprocess.run(
        [rscript, "--vanilla", "-e",
         'quit(status = if (requireNamespace("flexmix", quietly = TRUE)) 0 else 1)'],
        capture_output=True, text=True, check=False,
    )
    if probe.returncode != 0:
        return "the R package flexmix is not installed"
    return None


def flexmix_version():
    out = subprocess.run(
        ["Rscript", "--vanilla", "-e",
         'cat(R.version$major, R.version$minor, as.character(packageVersion("flexmix")), "\\n")'],
        capture_output=True, text=True, check=False,
    ).stdout.split()
    return f"R {out[0]}.{out[1]}, flexmix {out[2]}" if len(out) >= 3 else "R, flexmix (version unknown)"


def run_flexmix(csv_path, script_path, restarts, seed, fit_repeats, timeout):
    """Run the R script; return a dict of the RESULT line, or a dict with 'error'."""
    cmd = ["Rscript", "--vanilla", script_path, csv_path, str(restarts), repr(FLEXMIX_TOL),
           str(seed), str(MAX_ITER), str(fit_repeats)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:g} s"}
    for line in proc.stdout.splitlines():
        parts = line.split()
        if parts and parts[0] == "RESULT" and len(parts) == 7:
            if parts[2] == "NA":
                return {"error": f"all {parts[6]} flexmix runs failed"}
            return {
                "time": float(parts[1]),
                "iter": int(parts[2]),
                "loglik": float(parts[3]),
                "converged": parts[4] == "1",
                "k": int(parts[5]),
                "failures": int(parts[6]),
            }
    tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    return {"error": f"Rscript exit {proc.returncode}: {tail}"}


def bench_flexmix(sizes, restarts, seed, fit_repeats, timeout):
    print("## 1. mixexp vs flexmix: 3-expert softmax-gated Gaussian linear experts, 2 covariates")
    print()
    status = flexmix_status()
    peer = flexmix_version() if status is None else None
    print(f"data: make_moe_regression(n, n_features={N_FEATURES}, n_experts={N_EXPERTS}, "
          f"random_state={seed}); restarts: {restarts} on each side (best kept)")
    print(f"mixexp: MixtureOfExpertsRegressor(n_experts=3, n_init={restarts}, tol={MIXEXP_TOL:g}, "
          f"max_iter={MAX_ITER}, gate_penalty=0.0, random_state=0); k-means starts")
    print(f"        tol {MIXEXP_TOL:g} is on the change of the MEAN log-lik (~ relative tolerance "
          f"{MIXEXP_TOL:g}/|mean log-lik|, column 'rel tol')")
    print(f"        time = median wall time of {fit_repeats} fit() calls, after a warm-up fit on 500 rows "
          f"(Numba compilation excluded); {numba.get_num_threads()} Numba threads")
    if status is None:
        print(f"flexmix ({peer}): FLXMRglm(gaussian) + FLXPmultinom(~ x1 + x2), minprior = 0, "
              f"tolerance = {FLEXMIX_TOL:g} (relative change of the log-lik), iter.max = {MAX_ITER}; "
              "random starts")
        print(f"        time = median of {fit_repeats} timings of the (seeded, identical) flexmix() "
              "calls only (proc.time in R; R start-up and CSV reading excluded)")
    else:
        print(f"flexmix: not run ({status}); only the mixexp columns are filled")
    print("log-lik = total conditional log-likelihood sum_i log p(y_i | x_i) of the best start; "
          "iterations of the best start")
    print(f"{load_note()} at the start of this section")
    print(flush=True)

    rows = []
    notes = []
    with tempfile.TemporaryDirectory(prefix="bench_em_") as tmp:
        script_path = os.path.join(tmp, "fit_flexmix.R")
        with open(script_path, "w") as f:
            f.write(R_SCRIPT)
        for n in sizes:
            X, y = make_moe_regression(n, n_features=N_FEATURES, n_experts=N_EXPERTS, random_state=seed)
            warm_up(X, y, restarts)
            est = make_estimator(restarts)
            gc.collect()
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", ConvergenceWarning)
                t_mx, _ = time_calls(lambda est=est, X=X, y=y: est.fit(X, y), fit_repeats, warm=False)
            if any(issubclass(w.category, ConvergenceWarning) for w in caught):
                notes.append(f"n={fmt_n(n)}: mixexp did not converge in {MAX_ITER} iterations")
            ll_mx = float(est.score_samples(X, y).sum())
            rel_tol = MIXEXP_TOL / abs(ll_mx / n)
            row = [fmt_n(n), f"{t_mx:.3f}", est.n_iter_, f"{ll_mx:.3f}", f"{rel_tol:.1e}"]
            if status is None:
                csv_path = os.path.join(tmp, f"moe_{n}.csv")
                np.savetxt(csv_path, np.column_stack([X, y]), delimiter=",", fmt="%.17g",
                           header="x1,x2,y", comments="")
                fm = run_flexmix(csv_path, script_path, restarts, seed, fit_repeats, timeout)
                if "error" in fm:
                    notes.append(f"n={fmt_n(n)}: flexmix {fm['error']}")
                    row += ["-"] * 5
                else:
                    if not fm["converged"]:
                        notes.append(f"n={fmt_n(n)}: flexmix did not converge in {MAX_ITER} iterations")
                    if fm["k"] != N_EXPERTS:
                        notes.append(f"n={fmt_n(n)}: flexmix kept {fm['k']} components")
                    if fm["failures"]:
                        notes.append(f"n={fmt_n(n)}: {fm['failures']} flexmix run(s) failed")
                    row += [
                        f"{fm['time']:.3f}",
                        fm["iter"],
                        f"{fm['loglik']:.3f}",
                        f"{fm['time'] / t_mx:.1f}",
                        f"{ll_mx - fm['loglik']:+.3f}",
                    ]
            else:
                row += ["-"] * 5
            rows.append(row)
            print(f"  done n = {fmt_n(n)}", file=sys.stderr, flush=True)
    print_table(
        ["n", "mixexp s", "mixexp iter", "mixexp log-lik", "rel tol",
         "flexmix s", "flexmix iter", "flexmix log-lik", "flexmix/mixexp time", "log-lik diff (mx - fm)"],
        rows,
    )
    for note in notes:
        print(f"note: {note}")
    if notes:
        print()


# ----------------------------------------------------------------------------
# 2. Numba kernels against numpy
# ----------------------------------------------------------------------------
def numpy_e_step_scipy(log_gate, log_prob, sample_weight):
    """E-step with scipy.special.logsumexp, as written in textbooks."""
    s = log_gate + log_prob
    ll_rows = logsumexp(s, axis=0)
    log_resp = s - ll_rows
    resp = np.exp(log_resp)
    return resp, ll_rows, float(sample_weight @ ll_rows)


def numpy_e_step_logresp(log_gate, log_prob, sample_weight):
    """Max-shifted numpy log-sum-exp, then log_resp and resp = exp(log_resp)."""
    s = log_gate + log_prob
    mx = s.max(axis=0)
    ll_rows = np.log(np.exp(s - mx).sum(axis=0))
    ll_rows += mx
    s -= ll_rows
    resp = np.exp(s, out=s)
    return resp, ll_rows, float(sample_weight @ ll_rows)


def numpy_e_step_inplace(log_gate, log_prob, sample_weight):
    """Max-shifted, in-place numpy: exp once, normalise; no log_resp array."""
    s = np.add(log_gate, log_prob)
    mx = s.max(axis=0)
    s -= mx
    np.exp(s, out=s)
    tot = s.sum(axis=0)
    s /= tot
    ll_rows = np.log(tot)
    ll_rows += mx
    return s, ll_rows, float(sample_weight @ ll_rows)


def numpy_e_step_buffer(log_gate, log_prob, sample_weight, out):
    """As :func:`numpy_e_step_inplace`, into a preallocated (K, n) buffer (no allocation)."""
    s = np.add(log_gate, log_prob, out=out)
    mx = s.max(axis=0)
    s -= mx
    np.exp(s, out=s)
    tot = s.sum(axis=0)
    s /= tot
    ll_rows = np.log(tot)
    ll_rows += mx
    return s, ll_rows, float(sample_weight @ ll_rows)


def numpy_fused(XgT, gate_coef, XeT, y, coef, var, sample_weight, resp_prev=None, chunk=None):
    """What fused_softmax_gaussian computes, with numpy (BLAS for every sum over samples).

    The softmax gate at ``gate_coef`` (log-weights and weights); with
    ``resp_prev`` the gate objective under those responsibilities; Gaussian
    log-densities, E-step; then with the new responsibilities the experts'
    moments (gram, xy, yy, nk) and the gate's objective, gradient (K-1, p) and
    negative Hessian ((K-1)p, (K-1)p), expert 0 the reference. Same return
    layout as the kernel. With ``chunk`` the samples are processed in chunks of
    that many rows (cache-sized temporaries) and the sums accumulated.
    """
    n = y.shape[0]
    if chunk is None or chunk >= n:
        return _numpy_fused_chunk(XgT, gate_coef, XeT, y, coef, var, sample_weight, resp_prev)
    K = coef.shape[0]
    resp = np.empty((K, n))
    ll_rows = np.empty(n)
    log_gate = np.empty((K, n))
    gate_prob = np.empty((K, n))
    acc = None
    for i0 in range(0, n, chunk):
        sl = slice(i0, min(n, i0 + chunk))
        out = _numpy_fused_chunk(
            XgT[:, sl], gate_coef, XeT[:, sl], y[sl], coef, var, sample_weight[sl],
            None if resp_prev is None else resp_prev[:, sl],
        )
        resp[:, sl], ll_rows[sl] = out[0], out[1]
        log_gate[:, sl], gate_prob[:, sl] = out[3]
        parts = [out[2], out[4] or 0.0, *out[5], *out[6]]
        acc = parts if acc is None else [a + b for a, b in zip(acc, parts, strict=True)]
    q_prev = None if resp_prev is None else acc[1]
    return resp, ll_rows, acc[0], (log_gate, gate_prob), q_prev, tuple(acc[2:5]), tuple(acc[5:])


def _numpy_fused_chunk(XgT, gate_coef, XeT, y, coef, var, sw, resp_prev):
    K = coef.shape[0]
    pg = XgT.shape[0]
    # gate: log-softmax and softmax of the logits
    log_gate = gate_coef @ XgT
    log_gate -= log_gate.max(axis=0)
    gate_prob = np.exp(log_gate)
    tot = gate_prob.sum(axis=0)
    gate_prob /= tot
    log_gate -= np.log(tot)
    q_prev = None if resp_prev is None else float(np.sum((resp_prev * sw) * log_gate))
    # experts' log-densities and E-step
    s = coef @ XeT
    np.subtract(y, s, out=s)
    np.square(s, out=s)
    s *= (-0.5 / var)[:, None]
    s += (-0.5 * (np.log(2.0 * np.pi) + np.log(var)))[:, None]
    s += log_gate
    mx = s.max(axis=0)
    s -= mx
    np.exp(s, out=s)
    tot = s.sum(axis=0)
    s /= tot
    resp = s
    ll_rows = np.log(tot)
    ll_rows += mx
    total = float(sw @ ll_rows)
    # experts: weighted moments
    wr = resp * sw
    nk = wr.sum(axis=1)
    wry = wr * y
    yy = wry @ y
    xy = wry @ XeT.T
    gram = np.empty((K, XeT.shape[0], XeT.shape[0]))
    for k in range(K):
        gram[k] = (XeT * wr[k]) @ XeT.T
    # gate: objective, gradient, negative Hessian with the new responsibilities,
    # H = sum_i w_i (diag(g_i) - g_i g_i') kron x_i x_i' over experts 1..K-1
    q = float(np.sum(wr * log_gate))
    grad = ((resp[1:] - gate_prob[1:]) * sw) @ XgT.T
    wg = gate_prob[1:] * sw
    Z = (gate_prob[1:, None, :] * XgT[None]).reshape((K - 1) * pg, -1)
    hess = -((Z * sw) @ Z.T)
    for k in range(K - 1):
        b = slice(k * pg, (k + 1) * pg)
        hess[b, b] += (XgT * wg[k]) @ XgT.T
    return resp, ll_rows, total, (log_gate, gate_prob), q_prev, (q, grad, hess), (gram, xy, yy, nk)


def _max_rel_diff(a, b):
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def blas_note():
    """BLAS library and thread count numpy's matrix products use."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "BLAS threads unknown"
    blas = [i for i in threadpool_info() if i.get("user_api") == "blas"]
    if not blas:
        return "BLAS threads unknown"
    return ", ".join(f"{i.get('internal_api')} {i.get('version')} with {i.get('num_threads')} threads"
                     for i in blas)


def _with_threads(func, n_threads):
    """``func`` run with ``n_threads`` Numba threads (restored afterwards)."""
    def wrapped():
        old = numba.get_num_threads()
        numba.set_num_threads(n_threads)
        try:
            return func()
        finally:
            numba.set_num_threads(old)

    return wrapped


def _compare_rows(entries, repeats):
    """Time ``(name, func, diff)`` entries; rows relative to the first entry."""
    rows = []
    t_ref = None
    best_numpy = np.inf
    for name, func, diff in entries:
        med, low = time_calls(func, repeats)
        if t_ref is None:
            t_ref = med
        if name.startswith("numpy"):
            best_numpy = min(best_numpy, med)
        rows.append([name, f"{1e3 * med:.1f}", f"{1e3 * low:.1f}", f"{med / t_ref:.2f}",
                     "-" if diff is None else f"{diff:.1e}"])
    return rows, best_numpy / t_ref


def _max_rel_diff_all(out, ref):
    """Largest relative difference over nested tuples of arrays / floats."""
    if isinstance(ref, tuple):
        return max(_max_rel_diff_all(o, r) for o, r in zip(out, ref, strict=True))
    return _max_rel_diff(out, ref)


def bench_kernels(n, n_experts, repeats, seed):
    K = n_experts
    threads = numba.get_num_threads()
    print(f"## 2. Numba kernels vs numpy: n = {fmt_n(n)}, K = {K}, gate and experts on [1, x1, x2]")
    print()
    print(f"numba {numba.__version__}: {threads} Numba threads (os.cpu_count() = {os.cpu_count()}), "
          f"SVML {'on' if numba.config.USING_SVML else 'off'}; numpy {np.__version__}: elementwise "
          f"ops single-threaded, matrix products via {blas_note()}")
    print(f"times: median and min of {repeats} calls after one untimed call; ratio = median / median of "
          f"the first row; {load_note()} at the start of this section")
    print()
    X, y, params = make_moe_regression(n, n_features=N_FEATURES, n_experts=K, random_state=seed,
                                       return_params=True)
    XT = np.ascontiguousarray(np.vstack([np.ones(n), X.T]))
    XgT, XeT = XT, XT.copy()
    sw = np.ones(n)
    coef = params["expert_coef"]
    var = params["noise_variance"]
    log_gate, gate_prob, _ = log_softmax_linear(XgT, params["gate_coef"])
    mu = coef @ XeT
    log_prob = -0.5 * (np.log(2 * np.pi * var)[:, None] + (y - mu) ** 2 / var[:, None])
    del mu

    # --- E-step -----------------------------------------------------------
    ref = e_step(log_gate, log_prob, sw)
    # the EM loop reuses its (K, n) buffers across iterations; both sides get one here
    buf_numba = np.empty_like(log_prob)
    buf_numpy = np.empty_like(log_prob)
    entries = [
        (f"mixexp._kernels.e_step, out= a reused buffer (Numba, {threads} threads)",
         lambda: e_step(log_gate, log_prob, sw, out=buf_numba), None),
        (f"mixexp._kernels.e_step, new output array (Numba, {threads} threads)",
         lambda: e_step(log_gate, log_prob, sw), None),
    ]
    if threads > 1:
        entries.append(("mixexp._kernels.e_step, out= a reused buffer (Numba, 1 thread)",
                        _with_threads(lambda: e_step(log_gate, log_prob, sw, out=buf_numba), 1), None))
    for name, func in [
        ("numpy: scipy.special.logsumexp, log_resp, exp", numpy_e_step_scipy),
        ("numpy: max-shifted logsumexp, log_resp, exp", numpy_e_step_logresp),
        ("numpy: max-shifted, in place, exp once", numpy_e_step_inplace),
    ]:
        diff = _max_rel_diff_all(func(log_gate, log_prob, sw), ref)
        entries.append((name, lambda func=func: func(log_gate, log_prob, sw), diff))
    diff = _max_rel_diff_all(numpy_e_step_buffer(log_gate, log_prob, sw, buf_numpy), ref)
    entries.append(("numpy: max-shifted, in place, exp once, out= a reused buffer",
                     lambda: numpy_e_step_buffer(log_gate, log_prob, sw, buf_numpy), diff))
    rows, ratio = _compare_rows(entries, repeats)
    del ref
    print("E-step: resp (K, n), per-row log-lik (n,) and weighted total from the same (K, n) log_gate "
          "and log_prob")
    print()
    print_table(["implementation", "median ms", "min ms", "ratio", "max rel diff vs Numba"], rows)
    print(f"fastest numpy E-step / Numba E-step ({threads} threads): {ratio:.2f}")
    print()

    # --- fused pass ---------------------------------------------------------
    params_fused = list(inspect.signature(fused_softmax_gaussian).parameters)
    if params_fused[:2] != ["XgT", "gate_coef"] or "resp_prev" not in params_fused:
        print(f"fused kernel: signature {params_fused} not the one this benchmark knows "
              "(XgT, gate_coef, XeT, y, coef, var, sample_weight, resp_prev); comparison skipped")
        print()
        return
    # a pass inside the EM loop: the gate just took a Newton step, so the pass also
    # returns the gate objective under the previous responsibilities (resp_prev)
    resp_prev = e_step(log_gate, log_prob, sw)[0]
    gate_coef = params["gate_coef"]
    args = (XgT, gate_coef, XeT, y, coef, var, sw, resp_prev)
    ref = fused_softmax_gaussian(*args)

    def unfused():
        # the same quantities from the stand-alone Numba kernels, one pass over the data each
        lg, gp, _ = log_softmax_linear(XgT, gate_coef, resp_prev, sw)
        lp = gaussian_log_prob(XeT, y, coef, var)
        resp, _, _ = e_step(lg, lp, sw)
        linear_stats(XeT, y, resp, sw)
        softmax_gate_stats(XgT, lg, gp, resp, sw)

    entries = [
        (f"mixexp._kernels.fused_softmax_gaussian (Numba, {threads} threads)",
         lambda: fused_softmax_gaussian(*args), None),
        ("Numba, 5 separate kernels: gate, log-prob, E-step, expert stats, gate stats "
         f"({threads} threads)", unfused, None),
    ]
    if threads > 1:
        entries += [
            ("mixexp._kernels.fused_softmax_gaussian (Numba, 1 thread)",
             _with_threads(lambda: fused_softmax_gaussian(*args), 1), None),
            ("Numba, 5 separate kernels (1 thread)", _with_threads(unfused, 1), None),
        ]
    for name, chunk in [("numpy + BLAS, whole arrays", None), ("numpy + BLAS, chunks of 65536 rows", 65536)]:
        diff = _max_rel_diff_all(numpy_fused(*args, chunk=chunk), ref)
        entries.append((name, lambda chunk=chunk: numpy_fused(*args, chunk=chunk), diff))
    del ref
    rows, ratio = _compare_rows(entries, repeats)
    print("One EM pass, E-step + every M-step statistic: gate log-softmax (+ its objective under the "
          "previous responsibilities), Gaussian log-densities, posterior, log-lik, per-expert weighted "
          "Gram matrix / X'Ry / y'Ry / sum r, gate objective + gradient + Hessian")
    print()
    print_table(["implementation", "median ms", "min ms", "ratio", "max rel diff vs fused"], rows)
    print(f"fastest numpy pass / fused Numba pass ({threads} threads): {ratio:.2f}")
    print()


# ----------------------------------------------------------------------------
# 3. memory
# ----------------------------------------------------------------------------
def fit_peak_memory(n, seed, max_iter):
    X, y = make_moe_regression(n, n_features=N_FEATURES, n_experts=N_EXPERTS, random_state=seed)
    est = make_estimator(1, max_iter=max_iter)
    gc.collect()
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            est.fit(X, y)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak - before, est.n_iter_


def bench_memory(n, seed, max_iter=50):
    print(f"## 3. Peak memory of one fit beyond the data (tracemalloc), K = {N_EXPERTS}, d = {N_FEATURES}")
    print()
    print(f"fit: as in section 1 with n_init=1 and max_iter={max_iter} (the per-iteration allocations do "
          "not grow with iterations); data X (n, d) and y are allocated before the measurement")
    print("unit: n*K*8 bytes = one float64 (K, n) array. Numba's kernel-internal scratch (a block "
          "of rows per thread, independent of n) is not seen by tracemalloc")
    print()
    X, y = make_moe_regression(1000, n_features=N_FEATURES, n_experts=N_EXPERTS, random_state=seed)
    warm_up(X, y, 1)
    rows = []
    peaks = []
    for m in (n // 2, n):
        extra, n_iter = fit_peak_memory(m, seed, max_iter)
        peaks.append(extra)
        unit = m * N_EXPERTS * 8
        rows.append([fmt_n(m), n_iter, f"{extra / 2**20:.1f}", f"{unit / 2**20:.2f}", f"{extra / unit:.2f}"])
    print_table(["n", "EM iterations", "peak extra MiB", "n*K*8 MiB", "peak / (n*K*8)"], rows)
    ratio = peaks[1] / peaks[0]
    print(f"peak at n = {fmt_n(n)} / peak at n = {fmt_n(n // 2)}: {ratio:.2f} (2.00 for linear scaling)")
    print()


# ----------------------------------------------------------------------------
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="n = 2e3, 2e4 for the flexmix comparison, 2e5 for the kernels and memory")
    parser.add_argument("--sizes", type=lambda s: [int(float(v)) for v in s.split(",")], default=None,
                        help="comma-separated sample sizes for the flexmix comparison, e.g. 2e3,2e4")
    parser.add_argument("--restarts", type=int, default=1,
                        help="random restarts on each side (flexmix runs, mixexp n_init); default 1")
    parser.add_argument("--fit-repeats", type=int, default=3,
                        help="timed fits per size on each side in section 1 (median reported); default 3")
    parser.add_argument("--repeats", type=int, default=7, help="repeats of each kernel timing; default 7")
    parser.add_argument("--seed", type=int, default=0, help="data seed (and R's set.seed); default 0")
    parser.add_argument("--flexmix-timeout", type=float, default=1800.0,
                        help="seconds allowed for each Rscript run; default 1800")
    parser.add_argument("--tol", type=float, default=None,
                        help="tolerance for both sides (flexmix's relative tolerance and mixexp's tol); "
                        "default 1e-6, flexmix's default")
    parser.add_argument("--skip", default="",
                        help="comma-separated sections to skip: flexmix, kernels, memory")
    args = parser.parse_args(argv)
    if args.tol is not None:
        global FLEXMIX_TOL, MIXEXP_TOL
        FLEXMIX_TOL = MIXEXP_TOL = args.tol
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    if args.sizes is not None:
        sizes = args.sizes
    else:
        sizes = [2_000, 20_000] if args.quick else [2_000, 20_000, 200_000]
    n_big = 200_000 if args.quick else 1_000_000

    print(f"# mixexp {mixexp.__version__} EM benchmarks ({git_note()})")
    print()
    print(f"python {platform.python_version()}, numpy {np.__version__}, numba {numba.__version__}, "
          f"{platform.machine()}, {os.cpu_count()} CPUs, {numba.get_num_threads()} Numba threads"
          f"{' (--quick)' if args.quick else ''}")
    print()
    if "flexmix" not in skip:
        bench_flexmix(sizes, args.restarts, args.seed, args.fit_repeats, args.flexmix_timeout)
    if "kernels" not in skip:
        bench_kernels(n_big, 8, args.repeats, args.seed)
    if "memory" not in skip:
        bench_memory(n_big, args.seed)


if __name__ == "__main__":
    main()
