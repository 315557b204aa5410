"""Command line: ``python -m mixexp demo``, ``fit`` and ``experiment``.

``demo`` fits a mixture of experts to the motorcycle data shipped with the
package and prints a summary beside a single linear regression. ``fit`` does
the same for a CSV file of your own. ``experiment NAME`` runs a registered
theory experiment (see :mod:`mixexp.theory.registry`).
"""

import argparse
import sys
import time
import warnings

import numpy as np

from ._estimators import MixtureOfExpertsRegressor
from .datasets import load_mcycle


def _fit_timed(estimator, X, y):
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        estimator.fit(X, y)
    return time.perf_counter() - start, [str(w.message) for w in caught]


def _original_units(coef, mean, scale):
    """Coefficients on standardised columns -> coefficients on the raw columns."""
    coef = np.array(coef, dtype=float)
    slopes = coef[:, 1:] / scale
    intercept = coef[:, 0] - slopes @ mean
    return np.column_stack([intercept, slopes])


def _format_row(values, width=12):
    return "".join(f"{v:>{width}.4g}" for v in values)


def summarize(X, y, feature_names, target_name, n_experts, n_init, random_state, out=None):
    """Fit a mixture of experts and a single linear regression; print both.

    The covariates are standardised for fitting (the gate's L2 penalty and the
    k-means start then do not depend on units); coefficients are reported on
    the original scale.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
    y : ndarray of shape (n_samples,)
    feature_names : list of str
    target_name : str
    n_experts : int
    n_init : int or "auto"
    random_state : int
    out : file-like, default=None
        Where to print; ``sys.stdout`` when None.

    Returns
    -------
    moe : MixtureOfExpertsRegressor
        The fitted mixture (on standardised covariates).
    """
    out = sys.stdout if out is None else out
    mean, scale = X.mean(axis=0), X.std(axis=0)
    scale[scale == 0] = 1.0
    Z = (X - mean) / scale
    # warm the compiled kernels so the timing below is the fit, not the JIT
    _fit_timed(MixtureOfExpertsRegressor(n_experts, max_iter=2, random_state=0), Z, y)
    n_init = "auto" if n_init is None else n_init
    moe = MixtureOfExpertsRegressor(n_experts, n_init=n_init, random_state=random_state)
    seconds, notes = _fit_timed(moe, Z, y)
    lin = MixtureOfExpertsRegressor(1, random_state=random_state)
    lin_seconds, _ = _fit_timed(lin, Z, y)

    names = ["intercept", *feature_names]
    p = print
    p(f"Mixture of {n_experts} experts for {target_name} ~ {' + '.join(feature_names)}", file=out)
    p(f"n_samples = {len(y)}, starts (n_init) = {n_init}, random_state = {random_state}", file=out)
    p("", file=out)
    p("Experts (Gaussian linear regressions, original units)", file=out)
    p(f"{'expert':>8}" + "".join(f"{n:>12}" for n in names) + f"{'noise sd':>12}{'mean gate':>12}", file=out)
    expert_coef = _original_units(moe.expert_coef_, mean, scale)
    mean_gate = moe.predict_gate(Z).mean(axis=0)
    for k in range(n_experts):
        extra = [np.sqrt(moe.noise_variance_[k]), mean_gate[k]]
        p(f"{k:>8}" + _format_row(expert_coef[k]) + _format_row(extra), file=out)
    p("", file=out)
    p("Gate (softmax logits, original units; expert 0 is the reference, fixed at 0)", file=out)
    p(f"{'expert':>8}" + "".join(f"{n:>12}" for n in names), file=out)
    gate_coef = _original_units(moe.gate_coef_, mean, scale)
    for k in range(n_experts):
        p(f"{k:>8}" + _format_row(gate_coef[k]), file=out)
    p("", file=out)
    p(
        f"{'model':<28}{'log-lik':>12}{'BIC':>12}{'params':>8}{'iters':>7}{'converged':>11}{'fit time':>11}",
        file=out,
    )
    for label, est, secs in (
        (f"mixture of {n_experts} experts", moe, seconds),
        ("single linear regression", lin, lin_seconds),
    ):
        p(
            f"{label:<28}{est.score_samples(Z, y).sum():>12.2f}{est.bic(Z, y):>12.2f}"
            f"{est.n_parameters():>8}{est.n_iter_:>7}{str(est.converged_):>11}{secs:>10.3f}s",
            file=out,
        )
    p("(BIC: lower is better, as flexmix's BIC(); mixtools reports the opposite sign.)", file=out)
    for note in sorted(set(notes)):
        p(f"warning: {note}", file=out)
    return moe


def _demo(args):
    data = load_mcycle()
    print("Motorcycle crash-test data (Silverman 1985; R's MASS::mcycle)\n")
    summarize(
        data.data, data.target, data.feature_names, data.target_name,
        args.n_experts, args.n_init, args.random_state,
    )


def _fit(args):
    import csv

    with open(args.csv, newline="") as f:
        rows = list(csv.reader(f))
    header, body = rows[0], rows[1:]
    if args.target not in header:
        raise SystemExit(f"error: column {args.target!r} is not in {args.csv} (columns: {header})")
    try:
        table = np.array(body, dtype=float)
    except ValueError as exc:
        raise SystemExit(f"error: {args.csv} has a non-numeric value ({exc})") from None
    t = header.index(args.target)
    features = [h for i, h in enumerate(header) if i != t]
    X = np.delete(table, t, axis=1)
    summarize(X, table[:, t], features, args.target, args.n_experts, args.n_init, args.random_state)


def _experiment(args):
    from .theory.registry import run_experiment

    result = run_experiment(
        args.name, quick=args.quick, n_jobs=args.n_jobs, out=args.out, progress=True,
        random_state=args.random_state,
    )
    print(f"wrote {result['csv']} and {result['png']} in {result['seconds']:.1f} s")


def main(argv=None):
    """Entry point of ``python -m mixexp``.

    Parameters
    ----------
    argv : list of str, optional
        Arguments (default ``sys.argv[1:]``).
    """
    parser = argparse.ArgumentParser(prog="python -m mixexp", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="fit the motorcycle data and print a summary")
    fit = sub.add_parser("fit", help="fit a CSV file (header row, numeric columns)")
    fit.add_argument("csv")
    fit.add_argument("--target", required=True, help="name of the response column")
    for p, k in ((demo, 3), (fit, 2)):
        p.add_argument("--n-experts", type=int, default=k)
        p.add_argument("--n-init", type=int, default=None, help="number of starts (default: the estimator's)")
        p.add_argument("--random-state", type=int, default=0)
    from .theory.registry import EXPERIMENTS

    exp = sub.add_parser(
        "experiment",
        help="run a registered theory experiment; write NAME.csv and NAME.png",
        description="\n".join(f"{e.name}: {e.description}" for e in EXPERIMENTS.values()),
    )
    exp.add_argument("name", choices=sorted(EXPERIMENTS), metavar="NAME", help=", ".join(sorted(EXPERIMENTS)))
    exp.add_argument("--quick", action="store_true", help="the small version (about a minute)")
    exp.add_argument("--n-jobs", type=int, default=None, help="parallel workers over the experiment's cells")
    exp.add_argument("--out", default=".", help="output directory (default: the current one)")
    exp.add_argument("--random-state", type=int, default=0)
    args = parser.parse_args(argv)
    {"demo": _demo, "fit": _fit, "experiment": _experiment}[args.command](args)
    return 0
