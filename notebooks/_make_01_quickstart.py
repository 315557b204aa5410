"""Write and execute ``notebooks/01_quickstart.ipynb``.

The notebook is committed with its outputs; edit this script, not the
notebook, then regenerate it with::

    python notebooks/_make_01_quickstart.py

It needs nbformat, nbclient, ipykernel and matplotlib (the ``test`` extra) and
an importable mixexp (``pip install -e .``).
"""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _nbtools import code, execute, md, notebook  # noqa: E402

PATH = HERE / "01_quickstart.ipynb"


CELLS = [
    md(r"""
# Quickstart: a mixture of experts on the motorcycle data

A **mixture of experts** models the conditional distribution of a target $y$
given covariates $x$ as

$$
p(y \mid x) = \sum_{k=1}^{K} g_k(x)\, \mathcal{N}\bigl(y;\ \beta_{k0} + x^\top \beta_k,\ \sigma_k^2\bigr),
\qquad
g_k(x) = \frac{\exp(w_{k0} + x^\top w_k)}{\sum_j \exp(w_{j0} + x^\top w_j)} .
$$

Each *expert* $k$ is a linear regression with its own noise variance
$\sigma_k^2$; the *gate* $g_k(x)$, a multinomial logistic regression, decides
which expert is in charge where. `mixexp.MixtureOfExpertsRegressor` fits this
model by EM, with the scikit-learn API.

This notebook fits three experts to the motorcycle crash-test data, looks at
the fitted parameters, chooses the number of experts with the BIC, and
compares the fit with a plain linear regression.
"""),
    code("""
%matplotlib inline
import matplotlib.pyplot as plt
import numpy as np
from sklearn.linear_model import LinearRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

import mixexp
from mixexp import MixtureOfExpertsRegressor
from mixexp.datasets import load_mcycle

plt.rcParams["figure.dpi"] = 80
np.set_printoptions(precision=3, suppress=True)
print("mixexp", mixexp.__version__)
"""),
    md("""
## The data

133 measurements of head acceleration (in g) against time after a simulated
motorcycle impact (in ms), from Silverman (1985). The curve has distinct
regimes (a quiet start, a sharp deceleration, a rebound, a noisy tail) and the
noise level changes a lot between them: a single regression line cannot
describe it.
"""),
    code("""
data = load_mcycle()
X, y = data.data, data.target
print(X.shape, y.shape, data.feature_names, data.target_name)
"""),
    md("""
## Fitting three experts

The estimator is put in a `Pipeline` after a `StandardScaler`: k-means starts,
the gate's Newton steps and its small L2 penalty (`gate_penalty`) all behave
better on standardised covariates, and the pipeline lets us keep predicting
from times in milliseconds.

EM finds a local maximum of the likelihood, which depends on where it starts.
`n_init=5` runs five starts (k-means on the standardised `(X, y)`, each with
its own seed drawn from `random_state`) and keeps the best one.
"""),
    code("""
model = Pipeline([
    ("scale", StandardScaler()),
    ("moe", MixtureOfExpertsRegressor(n_experts=3, n_init=5, random_state=0)),
])
model.fit(X, y)

moe = model.named_steps["moe"]
scaler = model.named_steps["scale"]
Z = scaler.transform(X)  # the standardised time, as the estimator sees it
print(f"converged: {moe.converged_} after {moe.n_iter_} EM iterations")
"""),
    md("""
## Fitted parameters

* `gate_coef_`, shape `(K, 1 + n_gate_features)`: intercept and slope of each
  expert's gate logit. Row 0 is the *reference expert* and is fixed at zero
  (the gate is identified only up to a common shift), so row $k$ is the
  log-odds of expert $k$ against expert 0.
* `expert_coef_`, shape `(K, 1 + n_expert_features)`: intercept and slope of
  each expert's regression line.
* `noise_variance_`, shape `(K,)`: each expert's noise variance $\\sigma_k^2$.

All coefficients refer to the *standardised* time. The numbering of the
experts is arbitrary.
"""),
    code("""
print("gate coefficients (intercept, slope):")
print(moe.gate_coef_)
print("expert coefficients (intercept, slope):")
print(moe.expert_coef_)
print("noise variances:")
print(moe.noise_variance_)
"""),
    md("""
Expressed in the original units, each expert's line is
`accel = a + b * time` with `b = slope / scale` and
`a = intercept - b * mean`:
"""),
    code("""
slope_ms = moe.expert_coef_[:, 1] / scaler.scale_[0]
intercept_ms = moe.expert_coef_[:, 0] - slope_ms * scaler.mean_[0]
for k in range(moe.n_experts):
    sign = "+" if slope_ms[k] >= 0 else "-"
    print(f"expert {k}: accel = {intercept_ms[k]:7.2f} {sign} {abs(slope_ms[k]):.3f} * time,"
          f"  noise sd = {np.sqrt(moe.noise_variance_[k]):5.1f} g")
"""),
    md("""
## Log-likelihood

`score_samples(X, y)` returns the conditional log-density
$\\log p(y_i \\mid x_i)$ of each sample; their sum is the log-likelihood.
`lower_bound_` is the quantity EM maximises: the same log-likelihood minus the
gate penalty, divided by the number of samples. EM never decreases it, as
`lower_bounds_` (its value after every iteration) shows.
"""),
    code("""
loglik = moe.score_samples(Z, y).sum()
print(f"log-likelihood:               {loglik:.3f}")
print(f"n * lower_bound_ (penalised): {len(y) * moe.lower_bound_:.3f}")
print("EM never decreased the objective:", bool(np.all(np.diff(moe.lower_bounds_) >= -1e-10)))
"""),
    md("""
## How many experts? The BIC

`bic(X, y)` $= -2 \\log L + p \\log n$, with $p$ = `n_parameters()` (gate
coefficients without the reference row, expert coefficients and variances).
**Lower is better**, as in scikit-learn and flexmix (mixtools reports the
opposite sign). We fit one to four experts on the standardised time.
"""),
    code("""
bics, rows = {}, []
for k in range(1, 5):
    fit_k = MixtureOfExpertsRegressor(n_experts=k, n_init=5, random_state=0).fit(Z, y)
    bics[k] = fit_k.bic(Z, y)
    rows.append(f"K = {k}: {fit_k.n_parameters():2d} parameters, "
                f"log-likelihood {fit_k.score_samples(Z, y).sum():9.2f}, BIC {bics[k]:8.2f}")
print("\\n".join(rows))
print("lowest BIC at K =", min(bics, key=bics.get))
"""),
    md("""
The BIC keeps improving beyond three experts: straight lines need several
pieces to follow this curve. Three experts already capture the main regimes,
and are easier to look at, so we keep them below.

## Comparison with a linear regression

A single linear regression with Gaussian noise is the mixture with $K = 1$. Its
log-likelihood at the maximum-likelihood noise variance
$\\hat\\sigma^2 = \\mathrm{RSS}/n$ is $-\\tfrac{n}{2}(\\log(2\\pi\\hat\\sigma^2) + 1)$,
with $p = 3$ parameters (intercept, slope, variance); it matches the $K = 1$
line above.
"""),
    code("""
lin = LinearRegression().fit(X, y)
n = len(y)
sigma2 = np.mean((y - lin.predict(X)) ** 2)
loglik_lin = -0.5 * n * (np.log(2 * np.pi * sigma2) + 1)
bic_lin = -2 * loglik_lin + 3 * np.log(n)
print(f"linear regression:  log-likelihood {loglik_lin:9.2f}, BIC {bic_lin:8.2f}, R^2 {lin.score(X, y):.3f}")
print(f"3 experts:          log-likelihood {loglik:9.2f}, BIC {moe.bic(Z, y):8.2f}, "
      f"R^2 {model.score(X, y):.3f}")
"""),
    md("""
## The fit: experts and mixture mean

The predicted mean is $\\mathrm{E}[y \\mid x] = \\sum_k g_k(x)\\,\\mu_k(x)$
(`predict`); `predict_experts` gives each expert's line $\\mu_k(x)$. The mixture
mean follows the data by handing over from one straight line to the next.
"""),
    code("""
grid = np.linspace(X.min(), X.max(), 300)[:, None]
Zgrid = scaler.transform(grid)
colors = ["tab:blue", "tab:orange", "tab:green"]

fig, ax = plt.subplots(figsize=(7, 4))
ax.scatter(X[:, 0], y, s=12, color="0.4", label="data")
expert_means = moe.predict_experts(Zgrid)
for k in range(moe.n_experts):
    ax.plot(grid[:, 0], expert_means[:, k], "--", color=colors[k], label=f"expert {k}")
ax.plot(grid[:, 0], model.predict(grid), color="black", lw=2, label="mixture mean")
ax.plot(grid[:, 0], lin.predict(grid), ":", color="tab:red", label="linear regression")
ax.set_ylim(y.min() - 30, y.max() + 30)
ax.set_xlabel("time after impact (ms)")
ax.set_ylabel("acceleration (g)")
ax.legend(loc="lower right", fontsize="small")
plt.show()
"""),
    md("""
## The gate

`predict_gate` returns $g_k(x)$, the prior probability of each expert at $x$
before $y$ is seen. The gate switches from the quiet-phase expert to the
deceleration expert and then to the expert of the tail.
"""),
    code("""
gate = moe.predict_gate(Zgrid)
fig, ax = plt.subplots(figsize=(7, 2.5))
for k in range(moe.n_experts):
    ax.plot(grid[:, 0], gate[:, k], color=colors[k], label=f"$g_{k}(x)$")
ax.set_xlabel("time after impact (ms)")
ax.set_ylabel("gate probability")
ax.legend(loc="center right", fontsize="small")
plt.show()
"""),
    md("""
## Posterior responsibilities

`predict_responsibilities(X, y)` returns $r_{ik}$, the posterior probability
that expert $k$ generated $y_i$, given both $x_i$ and $y_i$: these are the
weights of the E-step. Below, each point's colour mixes the experts' colours in
proportion to its responsibilities; points where two experts overlap get
intermediate colours.
"""),
    code("""
from matplotlib.colors import to_rgb
from matplotlib.lines import Line2D

resp = moe.predict_responsibilities(Z, y)
point_colors = np.clip(resp @ np.array([to_rgb(c) for c in colors]), 0, 1)

fig, ax = plt.subplots(figsize=(7, 4))
ax.scatter(X[:, 0], y, s=18, c=point_colors)
handles = [Line2D([], [], marker="o", ls="", color=c, label=f"expert {k}") for k, c in enumerate(colors)]
ax.legend(handles=handles, loc="lower right", fontsize="small")
ax.set_xlabel("time after impact (ms)")
ax.set_ylabel("acceleration (g)")
plt.show()
print("responsibilities of the first five samples:")
print(resp[:5])
"""),
    md("""
## Where next

* `gate_features` and `expert_features` choose which columns feed the gate and
  the experts (flexmix's *concomitant variables*); `gate_features=[]` gives
  constant mixing weights, i.e. a classical mixture of linear regressions.
* `init` (`"kmeans"`, `"random"` or your own responsibilities) and `n_init`
  control the starts; `warm_start=True` refits from the previous solution.
* The user guide in `docs/` describes the model, the EM algorithm and the
  information criteria in detail.
"""),
]


def build():
    nb = notebook(CELLS)
    for i, cell in enumerate(nb.cells):
        cell.id = f"cell-{i:02d}"  # stable ids keep regenerated notebooks diff-friendly
    return nb


def main():
    execute(build(), PATH, timeout=600)


if __name__ == "__main__":
    main()
