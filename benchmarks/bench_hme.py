"""Benchmark: hierarchical mixture of experts (HME) vs the flat softmax MoE, time per EM iteration.

For K = 4, 8, 16 leaves (a binary tree of depth 2, 3, 4) and n = 1e4, 1e5 rows,
the script fits ``MixtureOfExpertsRegressor(K, gate="hierarchical")`` (Gaussian
linear experts) and the flat ``MixtureOfExpertsRegressor(K)`` with the softmax
gate, both from the same starting responsibilities (``init=`` an array), with
``tol=0`` so both run exactly ``max_iter`` iterations. The time per EM iteration
is the marginal cost ``(t(M) - t(1)) / (M - 1)`` of fits with ``max_iter=M`` and
``max_iter=1``, so the input validation, standardisation and the initial M-step
cancel. Each time is the best of ``--repeats`` interleaved fits.

Four fits per setting:

* ``flat``: the softmax gate; with Gaussian experts EM runs the fused Numba pass
  (E-step, gate evaluation and every M-step statistic in one read of the data).
* ``depth-1 tree``: a depth-1 tree with ``branching = K``, the same model as
  ``flat`` fitted by the same EM, through the hierarchical gate's own fused
  pass (``HierarchicalGate.em_pass``, kernel ``mixexp._kernels.fused_hme``):
  it separates the cost of the tree from the cost of the kernel.
* ``HME``: the binary tree, one softmax node per internal node (K - 1 nodes),
  each node's Newton step a weighted IRLS fit of (B - 1) p coefficients; the
  fused pass evaluates every node and the leaves, checks the last step node by
  node, runs the E-step with the Gaussian experts and sums every node's Newton
  statistics, in one read of the data.
* ``HME (m_step)``: the same tree with ``HierarchicalGate.fused = False``: the
  same iterates, but each EM iteration runs the gate's ``m_step`` (one read of
  the data for the node statistics, one per step size tried) besides the pass.

The ratios are HME / flat, HME / depth-1 tree and HME (m_step) / HME. The
1-minute load average is printed before and after: other processes skew
timings (the machine may be shared).

Run from the repository root::

    python benchmarks/bench_hme.py            # n = 1e4, 1e5
    python benchmarks/bench_hme.py --quick    # n = 1e4
"""

import argparse
import os
import sys
import time
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_em import fmt_n, load_note, print_table  # noqa: E402

from mixexp import MixtureOfExpertsRegressor  # noqa: E402
from mixexp.exceptions import VanishingExpertWarning  # noqa: E402
from mixexp.gates import HierarchicalGate  # noqa: E402

KINDS = ["flat", "depth-1 tree", "HME", "HME (m_step)"]

N_FEATURES = 3


def make_data(n, K, seed):
    """Piecewise-linear data: K linear experts, each owning a slab of x1 (a soft partition)."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, N_FEATURES))
    edges = np.quantile(X[:, 0], np.linspace(0, 1, K + 1)[1:-1])
    owner = np.searchsorted(edges, X[:, 0])
    coef = rng.normal(0.0, 2.0, (K, N_FEATURES + 1))
    y = coef[owner, 0] + np.einsum("nj,nj->n", coef[owner, 1:], X) + 0.3 * rng.standard_normal(n)
    resp = rng.dirichlet(np.ones(K), n) * 0.2 + 0.8 * np.eye(K)[owner]
    return X, y, resp


def fit_time(X, y, resp, K, kind, max_iter):
    params = dict(init=resp, tol=0.0, max_iter=max_iter)
    if kind in ("HME", "HME (m_step)"):
        est = MixtureOfExpertsRegressor(K, gate="hierarchical", gate_branching=2, **params)
    elif kind == "depth-1 tree":
        est = MixtureOfExpertsRegressor(K, gate="hierarchical", gate_branching=K, gate_depth=1, **params)
    else:
        est = MixtureOfExpertsRegressor(K, **params)
    HierarchicalGate.fused = kind != "HME (m_step)"
    try:
        t0 = time.perf_counter()
        est.fit(X, y)
        elapsed = time.perf_counter() - t0
    finally:
        HierarchicalGate.fused = True
    assert est.n_iter_ == max_iter
    return elapsed


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="n = 1e4 only")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--iters", type=int, default=21, help="max_iter M of the long fits")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    sizes = [10_000] if args.quick else [10_000, 100_000]
    warnings.simplefilter("ignore", ConvergenceWarning)
    warnings.simplefilter("ignore", VanishingExpertWarning)
    print(f"HME vs flat softmax MoE, ms per EM iteration (best of {args.repeats}); {load_note()}\n")
    rows = []
    for n in sizes:
        for K in (4, 8, 16):
            X, y, resp = make_data(n, K, args.seed)
            for kind in KINDS:  # compile and warm up
                fit_time(X, y, resp, K, kind, 2)
            best = {kind: np.inf for kind in KINDS}
            for _ in range(args.repeats):
                for kind in KINDS:  # interleaved, so load changes hit every kind alike
                    long = fit_time(X, y, resp, K, kind, args.iters)
                    short = fit_time(X, y, resp, K, kind, 1)
                    best[kind] = min(best[kind], (long - short) / (args.iters - 1))
            rows.append(
                [
                    fmt_n(n),
                    K,
                    int(np.log2(K)),
                    *(f"{1e3 * best[kind]:.2f}" for kind in KINDS),
                    f"{best['HME'] / best['flat']:.2f}",
                    f"{best['HME'] / best['depth-1 tree']:.2f}",
                    f"{best['HME (m_step)'] / best['HME']:.2f}",
                ]
            )
    print_table(
        [
            "n",
            "leaves",
            "depth",
            *(f"{kind} ms/it" for kind in KINDS),
            "HME/flat",
            "HME/depth-1 tree",
            "HME (m_step)/HME",
        ],
        rows,
    )
    print(load_note())


if __name__ == "__main__":
    main()
