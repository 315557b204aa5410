"""Benchmark: the Gaussian-gated mixture of experts against sklearn's GaussianMixture on (x, y).

With full covariances and Gaussian linear experts, a Gaussian-gated mixture of
experts is a Gaussian mixture on the joint vector ``(x, y)``, and EM for either
follows the same path from the same start when neither floors its covariances
(tests/test_gaussian_gate.py checks it to 1e-6). So
``MixtureOfExpertsRegressor(gate="gaussian", gate_covariance_type="full",
reg_covar=0)`` and ``GaussianMixture(covariance_type="full", reg_covar=0)``
fitted to ``np.column_stack([X, y])`` are the same model, fitted by the same
algorithm: the script times both from the same starting responsibilities
(k-means on at most 20 000 rows of the standardised (x, y), every row then
assigned to its nearest centre), with the same ``tol`` on the change of the mean
log-likelihood and the same ``max_iter``.

Data: a Gaussian-gated mixture of Gaussian linear experts
(:class:`mixexp.theory.GaussianGatedMoE`) with d covariates and K experts,
random well-separated parameters. For each n it prints wall times (median of
``--repeats`` fits; GaussianMixture's ``init_params="random_from_data"`` so its
own start costs nothing: the means, weights and precisions are given), EM
iterations, the time ratio mixexp / GaussianMixture per fit, and the
difference of the mean joint log-likelihoods. Both fits include their input
validation. With default threads mixexp runs its Numba kernels on every core
and its own BLAS calls single-threaded, GaussianMixture uses numpy/BLAS with
their default threads; both are also timed on one thread
(``numba.set_num_threads(1)`` and ``threadpool_limits(1)``), which measures
the work done rather than how the thread teams fare on a busy machine. The
four fits are interleaved and the best of ``--repeats`` is reported; the
1-minute load average is printed: other processes skew timings.

Run from the repository root::

    python benchmarks/bench_gaussian_gate.py            # n = 1e4, 1e5, 1e6
    python benchmarks/bench_gaussian_gate.py --quick    # n = 1e4, 1e5
"""

import argparse
import os
import sys
import time
import warnings

import numba
import numpy as np
from sklearn.cluster import KMeans
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture
from sklearn.mixture._gaussian_mixture import _estimate_gaussian_parameters
from threadpoolctl import threadpool_limits

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_em import fmt_n, git_note, load_note, print_table  # noqa: E402

from mixexp import MixtureOfExpertsRegressor  # noqa: E402
from mixexp.theory import GaussianGatedMoE  # noqa: E402

CONFIGS = [(2, 3), (5, 4)]  # (d, K)


def make_model(d, K, seed):
    """A Gaussian-gated MoE with well-separated random components."""
    rng = np.random.default_rng(seed)
    means = 2.0 * rng.standard_normal((K, d))
    A = rng.standard_normal((K, d, d)) / np.sqrt(d)
    covariances = 0.5 * (A @ np.swapaxes(A, 1, 2)) + 0.5 * np.eye(d)
    expert_coef = 2.0 * rng.standard_normal((K, 1 + d))
    noise_variance = rng.uniform(0.2, 0.6, size=K)
    weights = rng.dirichlet(5.0 * np.ones(K))
    return GaussianGatedMoE(weights, means, covariances, expert_coef, noise_variance)


def start_responsibilities(Z, K, seed):
    """Hard responsibilities (n, K) from k-means on at most 20 000 standardised rows."""
    Zs = (Z - Z.mean(0)) / Z.std(0)
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(Z), size=min(len(Z), 20_000), replace=False)
    km = KMeans(K, n_init=1, random_state=seed).fit(Zs[rows])
    resp = np.zeros((len(Z), K))
    resp[np.arange(len(Z)), km.predict(Zs)] = 1.0
    return resp


def fit_gmm(Z, resp, tol, max_iter):
    weights, means, covs = _estimate_gaussian_parameters(Z, resp, 0.0, "full")
    gmm = GaussianMixture(
        resp.shape[1],
        covariance_type="full",
        reg_covar=0.0,
        tol=tol,
        max_iter=max_iter,
        init_params="random_from_data",
        weights_init=weights / len(Z),
        means_init=means,
        precisions_init=np.linalg.inv(covs),
        random_state=0,
    )
    return gmm.fit(Z)


def fit_moe(X, y, resp, tol, max_iter):
    moe = MixtureOfExpertsRegressor(
        resp.shape[1],
        gate="gaussian",
        gate_covariance_type="full",
        reg_covar=0.0,
        init=resp,
        tol=tol,
        max_iter=max_iter,
    )
    return moe.fit(X, y)


def timed_interleaved(funcs, repeats):
    """Best-of-``repeats`` wall time of each function, the calls interleaved.

    Interleaving spreads changes of the machine's load evenly over the
    contenders, and the minimum is the least disturbed of the repeats.
    """
    times = [[] for _ in funcs]
    results = [None] * len(funcs)
    for _ in range(repeats):
        for j, func in enumerate(funcs):
            t0 = time.perf_counter()
            results[j] = func()
            times[j].append(time.perf_counter() - t0)
    return [min(t) for t in times], results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=float, nargs="+", default=None)
    parser.add_argument("--quick", action="store_true", help="n = 1e4, 1e5 only")
    parser.add_argument("--repeats", type=int, default=3, help="fits per timing at n < 1e6 (2 at 1e6)")
    parser.add_argument("--tol", type=float, default=1e-6)
    parser.add_argument("--max-iter", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    sizes = [int(s) for s in (args.sizes or ([1e4, 1e5] if args.quick else [1e4, 1e5, 1e6]))]

    print(f"# Gaussian-gated MoE vs GaussianMixture on (x, y) ({git_note()}; {load_note()})")
    print(
        f"tol={args.tol}, max_iter={args.max_iter}, reg_covar=0 on both sides, same start; "
        f"{numba.get_num_threads()} Numba threads\n"
    )
    # warm-up: Numba compilation or loading of the on-disk cache is not timed
    X, y = make_model(2, 3, 0).sample(2000, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        fit_moe(X, y, start_responsibilities(np.column_stack([X, y]), 3, 0), args.tol, 5)
    threads = numba.get_num_threads()

    def one_thread(func):
        def run():
            numba.set_num_threads(1)
            try:
                with threadpool_limits(1):
                    return func()
            finally:
                numba.set_num_threads(threads)

        return run

    rows = []
    for n in sizes:
        for d, K in CONFIGS:
            X, y = make_model(d, K, args.seed).sample(n, random_state=args.seed)
            Z = np.column_stack([X, y])
            resp = start_responsibilities(Z, K, args.seed)
            repeats = 2 if n >= 1_000_000 else args.repeats

            def gmm_fit(Z=Z, resp=resp):
                return fit_gmm(Z, resp, args.tol, args.max_iter)

            def moe_fit(X=X, y=y, resp=resp):
                return fit_moe(X, y, resp, args.tol, args.max_iter)

            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                (t_gmm, t_moe, t_gmm1, t_moe1), (gmm, moe, _, _) = timed_interleaved(
                    [gmm_fit, moe_fit, one_thread(gmm_fit), one_thread(moe_fit)], repeats
                )
            rows.append(
                [
                    fmt_n(n),
                    d,
                    K,
                    f"{t_gmm:.3f}",
                    f"{t_moe:.3f}",
                    f"{t_moe / t_gmm:.2f}",
                    f"{t_gmm1:.3f}",
                    f"{t_moe1:.3f}",
                    f"{t_moe1 / t_gmm1:.2f}",
                    f"{gmm.n_iter_} / {moe.n_iter_}",
                    f"{moe.lower_bound_ - gmm.score(Z):+.1e}",
                ]
            )
            print(
                f"  n={fmt_n(n)} d={d} K={K}: GMM {t_gmm:.3f} s, mixexp {t_moe:.3f} s; "
                f"one thread: GMM {t_gmm1:.3f} s, mixexp {t_moe1:.3f} s",
                flush=True,
            )
    print()
    print_table(
        [
            "n",
            "d",
            "K",
            "GMM s",
            "mixexp s",
            "ratio",
            "GMM 1-thread s",
            "mixexp 1-thread s",
            "ratio 1-thread",
            "iterations GMM / mixexp",
            "mean loglik diff",
        ],
        rows,
    )
    print(
        "Best of the repeats. ratio = mixexp / GaussianMixture (target <= 1.5), each with its "
        "default threads (mixexp: Numba threads, BLAS single-threaded; GaussianMixture: BLAS "
        "threads); 1-thread: both limited to one thread (numba.set_num_threads(1), "
        "threadpool_limits(1)). mean loglik diff = mixexp lower_bound_ - GaussianMixture.score "
        "(joint, per sample; mixexp's stopping rule stops one iteration earlier)."
    )


if __name__ == "__main__":
    main()
