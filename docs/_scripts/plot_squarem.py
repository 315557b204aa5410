"""Figure of the solvers page: EM against SQUAREM on two over-fitted models.

Run by ``docs/conf.py`` at build time; also usable on its own::

    python docs/_scripts/plot_squarem.py [output-directory]
"""

import sys
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402

from mixexp.theory import aistats2024_model, neurips2023_model  # noqa: E402

FILENAME = "squarem_paths.png"
N = 10000


def paths(truth, n_experts, seed=0):
    """Objective per EM step of EM and of SQUAREM from one near-truth start (tol 1e-10)."""
    X, y = truth.sample(N, random_state=seed)
    start = truth.near_truth(n_experts, N, random_state=seed + 1)[0]
    out = {}
    for solver in ("em", "squarem"):
        est = start.to_estimator(X, y, gate_penalty=0.0, tol=1e-10, max_iter=20000)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            est.set_params(warm_start=True, solver=solver).fit(X, y)
        out[solver] = est.lower_bounds_
    # one start, one run each (no expert re-seeded): both paths begin at the same objective
    if out["em"][0] != out["squarem"][0]:
        raise RuntimeError("the two runs did not start from the same parameters; pick another seed")
    return out


def main(outdir="."):
    """Write ``squarem_paths.png`` into ``outdir`` and return its path."""
    cases = [
        ("Gaussian gate, 5 experts for 3 (d = 2, Type I)", aistats2024_model(2, "I"), 5),
        ("softmax gate, 3 experts for 2", neurips2023_model(), 3),
    ]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for ax, (title, truth, K) in zip(axes, cases, strict=True):
        runs = paths(truth, K)
        best = max(r.max() for r in runs.values())
        for solver, label in (("em", "EM"), ("squarem", "SQUAREM")):
            gap = np.maximum(N * (best - runs[solver]), 1e-7)  # in total nats
            ax.semilogy(np.arange(gap.size), gap, label=f"{label} ({gap.size - 1} steps)", lw=1.2)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("EM steps")
        ax.set_xscale("symlog", linthresh=10)
    axes[0].set_ylabel("log-likelihood below the best (nats)")
    axes[0].legend(fontsize=8)
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    path = Path(outdir) / FILENAME
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


if __name__ == "__main__":
    print(main(sys.argv[1] if len(sys.argv) > 1 else "."))
