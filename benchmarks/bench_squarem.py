"""Benchmark: EM against SQUAREM-accelerated EM (``solver="squarem"``) from the same starts.

Problems, each at two sample sizes:

* ``separated`` / ``overlapping``: :func:`mixexp.datasets.make_moe_regression`
  with K = 4 Gaussian experts and a softmax gate on d = 5 covariates,
  ``coef_scale`` 3 (experts far apart) and 0.5 (overlapping: much missing
  information, EM's rate near 1); one k-means start (``random_state=seed``).
* ``gaussian gate, K=5 of 3``: the AISTATS 2024 truth (d = 2, Type I) fitted
  with 5 experts from a near-truth start (notebook 02's set-up).
* ``softmax, K=3 of 2``: the NeurIPS 2023 truth fitted with 3 experts from a
  near-truth start (notebook 03's set-up).
* ``poisson, K=3``: Poisson experts on simulated counts, k-means start.

SQUAREM runs twice: with the default ``squarem_max_decrease=1`` (an
extrapolation is kept unless it loses more than 1 nat of the total
log-likelihood, the R package's ``objfn.inc``; "SQ") and with
``--max-decrease`` (default 0: every accepted extrapolation at least as good
as its cycle's start; "SQ0"). All runs stop when one EM step changes the
mean log-likelihood by less than ``--tol`` (default 1e-10), or after
``--max-iter`` EM steps (20000). The first table gives the EM steps,
whether each met the tolerance, the wall time, the ratio EM / SQUAREM of
the times, SQUAREM's accepted/rejected extrapolations, and the difference
of the final objectives in total nats (``n * (ll_squarem - ll_em)``;
positive: SQUAREM ended higher); the second the same for SQ0, with the
ratio SQ0 / SQ of the times. Timings are
taken in one run, so the ratio is the meaningful figure; the load average is
printed before and after. Numba compilation is excluded by a warm-up fit.

Run it from the repository root::

    python benchmarks/bench_squarem.py            # n = 1e4 and 1e5
    python benchmarks/bench_squarem.py --quick    # n = 2000 and 1e4
"""

import argparse
import contextlib
import io
import os
import sys
import time
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from mixexp import MixtureOfExpertsRegressor
from mixexp.datasets import make_moe_regression
from mixexp.theory import aistats2024_model, neurips2023_model

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_em import fmt_n, load_note, print_table  # noqa: E402


def _kmeans(n_experts, **params):
    def make(solver, X, y):
        return MixtureOfExpertsRegressor(n_experts, n_init=1, init="kmeans", solver=solver, **params)

    return make


def _near_truth(truth, n_experts, seed):
    def make(solver, X, y):
        start = truth.near_truth(n_experts, len(y), random_state=seed + 1)[0]
        est = start.to_estimator(X, y, gate_penalty=0.0)
        return est.set_params(warm_start=True, solver=solver)

    return make


def problems(n, seed):
    """(name, X, y, make(solver, X, y) -> unfitted estimator at its start)."""
    rng = np.random.default_rng(seed)
    for name, scale in (("separated", 3.0), ("overlapping", 0.5)):
        X, y = make_moe_regression(n, n_features=5, n_experts=4, coef_scale=scale, random_state=seed)
        yield name, X, y, _kmeans(4, random_state=seed)
    truth = aistats2024_model(2, "I")
    X, y = truth.sample(n, random_state=seed)
    yield "gaussian gate, K=5 of 3", X, y, _near_truth(truth, 5, seed)
    truth = neurips2023_model()
    X, y = truth.sample(n, random_state=seed)
    yield "softmax, K=3 of 2", X, y, _near_truth(truth, 3, seed)
    X = rng.uniform(-1, 1, size=(n, 2))
    z = rng.integers(3, size=n)
    eta = np.array([[0.5, 1.0, 0.0], [1.5, -1.0, 0.5], [1.0, 0.0, -1.0]])[z]
    y = rng.poisson(np.exp(eta[:, 0] + (eta[:, 1:] * X).sum(axis=1))).astype(float)
    yield "poisson, K=3", X, y, _kmeans(3, expert="poisson", random_state=seed)


def fit(make, solver, X, y, tol, max_iter, max_decrease=None):
    """Fit from the problem's start; return the estimator, the wall time and, for SQUAREM, the
    (accepted, rejected) extrapolations, read from the run's one-line verbose summary."""
    est = make(solver, X, y).set_params(tol=tol, max_iter=max_iter, verbose=int(solver == "squarem"))
    if max_decrease is not None:
        est.set_params(squarem_max_decrease=max_decrease)
    buffer = io.StringIO()
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(buffer), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X, y)
    seconds = time.perf_counter() - t0
    counts = None
    if solver == "squarem":
        line = [s for s in buffer.getvalue().splitlines() if "extrapolations accepted" in s][-1]
        words = line.split("(")[1].split()
        counts = (int(words[0]), int(words[3]))
    return est, seconds, counts


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10000, 100000])
    parser.add_argument("--quick", action="store_true", help="n = 2000 and 1e4")
    parser.add_argument("--tol", type=float, default=1e-10)
    parser.add_argument("--max-iter", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-decrease", type=float, default=0.0, help="squarem_max_decrease of SQ0")
    args = parser.parse_args(argv)
    sizes = [2000, 10000] if args.quick else args.sizes
    print(f"before: {load_note()}")
    # warm-up: compile every kernel on a small problem
    for _, X, y, make in problems(300, args.seed):
        for solver in ("em", "squarem"):
            fit(make, solver, X, y, 1e-3, 5)
    rows, rows1 = [], []
    for n in sizes:
        for name, X, y, make in problems(n, args.seed):
            em, t_em, _ = fit(make, "em", X, y, args.tol, args.max_iter)
            sq, t_sq, (accepted, rejected) = fit(make, "squarem", X, y, args.tol, args.max_iter)
            sq0, t_sq0, (accepted0, rejected0) = fit(
                make, "squarem", X, y, args.tol, args.max_iter, args.max_decrease
            )
            rows1.append([
                name, fmt_n(n),
                sq0.n_iter_, "yes" if sq0.converged_ else "no", f"{t_sq0:.2f}",
                f"{t_em / t_sq0:.1f}", f"{t_sq0 / t_sq:.2f}", f"{accepted0}/{rejected0}",
                f"{n * (sq0.lower_bound_ - em.lower_bound_):+.2e}",
            ])  # fmt: skip
            rows.append([
                name, fmt_n(n),
                em.n_iter_, "yes" if em.converged_ else "no", f"{t_em:.2f}",
                sq.n_iter_, "yes" if sq.converged_ else "no", f"{t_sq:.2f}",
                f"{t_em / t_sq:.1f}", f"{accepted}/{rejected}",
                f"{n * (sq.lower_bound_ - em.lower_bound_):+.2e}",
            ])  # fmt: skip
            print(f"  done: {name}, n = {fmt_n(n)}", flush=True)
    print()
    print_table(
        ["problem", "n", "EM steps", "EM conv", "EM s", "SQ steps", "SQ conv", "SQ s", "EM/SQ time",
         "extrap. acc/rej", "SQ - EM (nats)"],
        rows,
    )  # fmt: skip
    print()
    print(f"SQ0: squarem_max_decrease = {args.max_decrease:g}")
    print_table(
        ["problem", "n", "SQ0 steps", "SQ0 conv", "SQ0 s", "EM/SQ0 time", "SQ0/SQ time",
         "extrap. acc/rej", "SQ0 - EM (nats)"],
        rows1,
    )  # fmt: skip
    print(f"tol = {args.tol:g} on the mean log-likelihood per EM step, max_iter = {args.max_iter}")
    print(f"after: {load_note()}")


if __name__ == "__main__":
    main()
