"""Figure of the user guide: a 3-expert mixture of experts on the motorcycle data.

Run by ``docs/conf.py`` at build time; also usable on its own::

    python docs/_scripts/plot_mcycle.py [output-directory]
"""

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from mixexp import MixtureOfExpertsRegressor  # noqa: E402
from mixexp.datasets import load_mcycle  # noqa: E402

FILENAME = "mcycle_moe.png"


def fit_mcycle():
    """The fitted pipeline (StandardScaler, then a 3-expert mixture) and the data."""
    X, y = load_mcycle(return_X_y=True)
    model = make_pipeline(
        StandardScaler(), MixtureOfExpertsRegressor(n_experts=3, random_state=0, n_init=5)
    )
    model.fit(X, y)
    return model, X, y


def main(outdir="."):
    """Write ``mcycle_moe.png`` into ``outdir`` and return its path."""
    model, X, y = fit_mcycle()
    scaler, moe = model[:-1], model[-1]
    grid = np.linspace(X.min(), X.max(), 300)[:, None]
    Z = scaler.transform(grid)
    experts = moe.predict_experts(Z)
    gate = moe.predict_gate(Z)
    resp = moe.predict_responsibilities(scaler.transform(X), y)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]

    fig, (ax, ax_gate) = plt.subplots(
        2, 1, figsize=(7, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1.3]}
    )
    point_colors = [colors[k] for k in resp.argmax(axis=1)]
    ax.scatter(X[:, 0], y, s=14, c=point_colors, alpha=0.8, edgecolor="none")
    for k in range(moe.n_experts):
        ax.plot(grid[:, 0], experts[:, k], color=colors[k], lw=1.2, ls="--",
                label=f"expert {k}: mean")
    ax.plot(grid[:, 0], model.predict(grid), color="black", lw=2, label="mixture mean E[y | x]")
    ax.set_ylim(y.min() - 30, y.max() + 30)
    ax.set_ylabel("head acceleration (g)")
    ax.set_title("Mixture of 3 linear experts on the motorcycle data")
    ax.legend(loc="lower right", fontsize="small")

    for k in range(moe.n_experts):
        ax_gate.plot(grid[:, 0], gate[:, k], color=colors[k], lw=1.5, label=f"$g_{k}(x)$")
    ax_gate.set_ylim(-0.05, 1.05)
    ax_gate.set_xlabel("time after impact (ms)")
    ax_gate.set_ylabel("gate")
    ax_gate.legend(loc="center right", fontsize="small")

    fig.tight_layout()
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    path = outdir / FILENAME
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


if __name__ == "__main__":
    print(main(sys.argv[1] if len(sys.argv) > 1 else "."))
