"""Coverage of mixexp's confidence intervals on simulated data (issue 6).

Draws R data sets of n samples from a 2-expert softmax-gated Gaussian mixture
of experts, fits each by EM started at the true posterior (gate_penalty=0, so
the plain MLE; the experts labelled as the truth's with align_experts), and
computes 95% intervals three ways with :func:`mixexp.fit_inference`:

* ``observed``: Wald intervals from the observed information (delta method);
* ``nonparametric``: percentile intervals of B row-resampling bootstrap refits;
* ``parametric``: percentile intervals of B refits to y drawn from the fit.

It prints, per parameter, the truth, the Monte Carlo standard deviation of the
estimates over the R data sets, the mean standard error of each method (which
should match that standard deviation), and the coverage of each method with
its binomial standard error sqrt(0.95 * 0.05 / R).

Run: ``python benchmarks/bench_inference.py [--replicates 200] [--n 500]
[--n-bootstrap 200] [--bootstrap-replicates 100] [--n-jobs 2]``.
"""

import argparse
import time

import numpy as np
from scipy.special import logsumexp

from mixexp import MixtureOfExpertsRegressor, align_experts, fit_inference, permute_experts

TRUE_GATE = np.array([[0.0, 0.0], [0.5, 2.0]])
TRUE_EXPERT = np.array([[1.0, 2.0], [-1.0, -1.0]])
TRUE_VAR = np.array([0.25, 0.36])
TRUTH = {"gate_coef": TRUE_GATE, "expert_coef": TRUE_EXPERT, "noise_variance": TRUE_VAR}
TRUE_PARAMS = np.r_[TRUE_GATE[1], TRUE_EXPERT[0], TRUE_VAR[0], TRUE_EXPERT[1], TRUE_VAR[1]]


def simulate(n, rng):
    """X, y and the true posterior responsibilities."""
    X = rng.uniform(-2, 2, size=(n, 1))
    A = np.column_stack([np.ones(n), X])
    log_gate = A @ TRUE_GATE.T
    log_gate -= logsumexp(log_gate, axis=1, keepdims=True)
    z = (rng.uniform(size=n)[:, None] > np.cumsum(np.exp(log_gate), axis=1)).sum(axis=1)
    y = np.einsum("np,np->n", A, TRUE_EXPERT[z]) + np.sqrt(TRUE_VAR[z]) * rng.standard_normal(n)
    log_joint = (
        log_gate - 0.5 * np.log(2 * np.pi * TRUE_VAR) - 0.5 * (y[:, None] - A @ TRUE_EXPERT.T) ** 2 / TRUE_VAR
    )
    return X, y, np.exp(log_joint - logsumexp(log_joint, axis=1, keepdims=True))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicates", type=int, default=200, help="data sets for 'observed'")
    parser.add_argument("--bootstrap-replicates", type=int, default=100, help="data sets for the bootstraps")
    parser.add_argument("--n", type=int, default=500, help="samples per data set")
    parser.add_argument("--n-bootstrap", type=int, default=200, help="bootstrap refits per data set")
    parser.add_argument("--n-jobs", type=int, default=None, help="joblib processes for the refits")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    R = max(args.replicates, args.bootstrap_replicates)
    methods = {
        "observed": args.replicates,
        "nonparametric": args.bootstrap_replicates,
        "parametric": args.bootstrap_replicates,
    }
    covered = {m: [] for m in methods}
    bse = {m: [] for m in methods}
    estimates, seconds = [], dict.fromkeys(methods, 0.0)
    names = None
    for r in range(R):
        X, y, resp = simulate(args.n, rng)
        est = MixtureOfExpertsRegressor(2, init=resp, gate_penalty=0.0, tol=1e-8, max_iter=5000).fit(X, y)
        est = permute_experts(est, align_experts(est, TRUTH))
        for method, count in methods.items():
            if r >= count:
                continue
            t0 = time.perf_counter()
            if method == "observed":
                res = fit_inference(est, X, y)
            else:
                res = fit_inference(
                    est,
                    X,
                    y,
                    method="bootstrap",
                    bootstrap=method,
                    n_bootstrap=args.n_bootstrap,
                    n_jobs=args.n_jobs,
                    random_state=r,
                )
            seconds[method] += time.perf_counter() - t0
            ci = res.conf_int(0.05)
            covered[method].append((ci[:, 0] <= TRUE_PARAMS) & (TRUE_PARAMS <= ci[:, 1]))
            bse[method].append(res.bse)
            if method == "observed":
                estimates.append(res.params)
                names = res.param_names

    estimates = np.array(estimates)
    print(
        f"2-expert softmax-gated Gaussian MoE, n = {args.n}; {args.replicates} data sets for 'observed', "
        f"{args.bootstrap_replicates} (x {args.n_bootstrap} refits) for the bootstraps"
    )
    print(
        "SE columns: mean standard error of each method; 'MC sd' is the spread of the estimates over the "
        "data sets, which they estimate."
    )
    head = f"{'parameter':<18}{'truth':>8}{'MC sd':>9}" + "".join(f"{'SE ' + m[:6]:>12}" for m in methods)
    head += "".join(f"{'cover ' + m[:6]:>14}" for m in methods)
    print(head)
    print("-" * len(head))
    for j, name in enumerate(names):
        row = f"{name:<18}{TRUE_PARAMS[j]:>8.3f}{estimates[:, j].std(ddof=1):>9.4f}"
        row += "".join(f"{np.nanmean(np.array(bse[m])[:, j]):>12.4f}" for m in methods)
        row += "".join(f"{np.mean(np.array(covered[m])[:, j]):>14.3f}" for m in methods)
        print(row)
    print("-" * len(head))
    row = f"{'mean coverage':<35}" + " " * 36
    row += "".join(f"{np.mean(covered[m]):>14.3f}" for m in methods)
    print(row)
    print(
        "binomial se of one coverage: "
        + ", ".join(f"{m} {np.sqrt(0.95 * 0.05 / c):.3f}" for m, c in methods.items())
    )
    print("seconds per data set: " + ", ".join(f"{m} {seconds[m] / c:.3f}" for m, c in methods.items()))


if __name__ == "__main__":
    main()
