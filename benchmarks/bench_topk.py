"""Benchmark: the top-K sparse softmax gate's fit, its cost against the dense gate and its optimality.

Data: the three-expert truth of ``tests/test_topk_gate.py`` (x ~ N(0, I) in 2-D,
each expert selected first on a third of the plane, well separated linear
experts, noise variance 0.25), drawn with ``top_k`` = 1 and 2. For each data
set the script fits the default ``MixtureOfExpertsRegressor(3, top_k=top_k)``
(``init="auto"``: 12 screened starts) and the dense
``MixtureOfExpertsRegressor(3)`` on the same data, interleaved, and reports:

* ``top-K / dense``: the ratio of the median fit times (the same starts and
  screening; the top-K fit adds the dense pre-fit of each start, the
  likelihood-checked gate steps and the gate search before EM stops);
* ``fit - truth``: the fitted log-likelihood minus the truth's (the maximum
  likelihood is at least the truth's), worst over the data sets;
* ``NM gain``: with the fitted experts held fixed, how much Nelder-Mead over the
  gate alone, started from the fitted gate, still gains in log-likelihood
  (largest over the data sets; 0 when the fitted gate is at an optimum).

The 1-minute load average is printed before and after: other processes skew
the times (the machine may be shared); the ratio is measured in the same run.

Run from the repository root::

    python benchmarks/bench_topk.py            # n = 2e3, 2e4
    python benchmarks/bench_topk.py --quick    # n = 2e3
"""

import argparse
import os
import sys
import time
import warnings

import numpy as np
from scipy.optimize import minimize

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_em import fmt_n, load_note, print_table  # noqa: E402

from mixexp import MixtureOfExpertsRegressor  # noqa: E402
from mixexp.datasets import make_topk_moe_regression  # noqa: E402
from mixexp.theory import TopKSoftmaxMoE  # noqa: E402

_ANGLES = np.array([0.0, 2.0, 4.0]) * np.pi / 3.0
_V = 3.0 * np.column_stack([np.cos(_ANGLES), np.sin(_ANGLES)])
TRUE_GATE = np.column_stack([np.zeros(3), _V - _V[0]])
TRUE_EXPERTS = np.array([[2.0, 1.0, -1.0], [-2.0, -1.0, 2.0], [0.0, 3.0, 1.0]])
TRUE_VAR = np.array([0.25, 0.25, 0.25])


def nelder_mead_gain(moe, X, y):
    """Log-likelihood Nelder-Mead still gains over the fitted gate, the experts fixed."""
    E, V, G = moe.expert_coef_, moe.noise_variance_, moe.gate_coef_

    def nll(g):
        gate = np.vstack([G[:1], g.reshape(G.shape[0] - 1, -1)])
        return -TopKSoftmaxMoE(gate, E, V, top_k=moe.top_k).log_density(X, y).sum()

    g0 = G[1:].ravel()
    res = minimize(nll, g0, method="Nelder-Mead", options={"xatol": 1e-7, "fatol": 1e-10, "maxiter": 4000})
    return max(0.0, nll(g0) - res.fun)


def run(n, top_k, n_sets):
    times = {"top-K": [], "dense": []}
    gaps, gains = [], []
    for seed in range(n_sets):
        X, y = make_topk_moe_regression(
            n, n_features=2, n_experts=3, top_k=top_k, gate_coef=TRUE_GATE, expert_coef=TRUE_EXPERTS,
            noise_variance=TRUE_VAR, random_state=seed,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t0 = time.perf_counter()
            moe = MixtureOfExpertsRegressor(3, top_k=top_k, random_state=seed).fit(X, y)
            times["top-K"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            MixtureOfExpertsRegressor(3, random_state=seed).fit(X, y)
            times["dense"].append(time.perf_counter() - t0)
        truth = TopKSoftmaxMoE(TRUE_GATE, TRUE_EXPERTS, TRUE_VAR, top_k)
        gaps.append(moe.score_samples(X, y).sum() - truth.log_density(X, y).sum())
        gains.append(nelder_mead_gain(moe, X, y))
    top, dense = np.median(times["top-K"]), np.median(times["dense"])
    return {
        "n": fmt_n(n),
        "top_k": top_k,
        "data sets": n_sets,
        "top-K fit s": f"{top:.2f}",
        "dense fit s": f"{dense:.2f}",
        "top-K / dense": f"{top / dense:.2f}",
        "fit - truth (worst)": f"{min(gaps):+.2f}",
        "below truth": f"{sum(g < 0 for g in gaps)}/{n_sets}",
        "NM gain (largest)": f"{max(gains):.4f}",
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="n = 2e3 only")
    args = parser.parse_args()
    print("before:", load_note())
    # compile the kernels before timing
    X, y = make_topk_moe_regression(300, n_features=2, n_experts=3, top_k=2, random_state=0)
    MixtureOfExpertsRegressor(3, top_k=2, random_state=0).fit(X, y)
    MixtureOfExpertsRegressor(3, top_k=1, random_state=0).fit(X, y)
    settings = [(2000, 2, 6), (2000, 1, 6)] if args.quick else [(2000, 2, 6), (2000, 1, 6), (20000, 2, 3)]
    rows = [run(n, k, sets) for n, k, sets in settings]
    print_table(list(rows[0]), [list(r.values()) for r in rows])
    print("after:", load_note())


if __name__ == "__main__":
    main()
