"""Theory toolkit: true models, Voronoi losses, rate sweeps and fitted rates.

Reproducing a convergence-rate figure of the mixture-of-experts literature is a
few lines::

    from mixexp.theory import fit_rate, neurips2023_model, rate_experiment

    truth = neurips2023_model()
    table = rate_experiment(truth, n_experts=3, n_grid=[1000, 3000, 10000], n_replicates=20, random_state=0)
    print(fit_rate(table, "loss"))

* :mod:`mixexp.theory.simulate`: true models (softmax, top-K sparse softmax and
  Gaussian gates) with ``sample`` and ``log_density``, and near-truth EM starts;
* :mod:`mixexp.theory.losses`: the Voronoi losses D1/D2 of the papers and the
  per-parameter errors within Voronoi cells;
* :mod:`mixexp.theory.experiments`: parallel, resumable sweeps
  (:func:`rate_experiment`, :func:`generalization_curve`) and the registry of
  named experiments behind ``python -m mixexp experiment``;
* :mod:`mixexp.theory.rates`: :func:`fit_rate`, log-log slopes with bootstrap
  confidence intervals;
* :mod:`mixexp.theory.convergence`: :func:`em_convergence`, EM's measured linear
  rate beside the rate predicted by the fraction of missing information.
"""

from .convergence import EMConvergence, em_convergence, linear_rate
from .experiments import generalization_curve, rate_experiment, summarize_by_n
from .losses import (
    CellErrors,
    align_softmax_gate,
    gaussian_cell_errors,
    gaussian_gating_d1,
    gaussian_gating_d2,
    softmax_cell_errors,
    softmax_d1,
    softmax_d2,
    summarize_cell_errors,
    topk_d1,
    topk_d2,
    voronoi_cells,
)
from .rates import RateFit, fit_rate
from .registry import EXPERIMENTS, register_experiment, run_experiment
from .simulate import GaussianGatedMoE, SoftmaxGatedMoE, TopKSoftmaxMoE, aistats2024_model, neurips2023_model

__all__ = [
    "EXPERIMENTS",
    "CellErrors",
    "EMConvergence",
    "GaussianGatedMoE",
    "RateFit",
    "SoftmaxGatedMoE",
    "TopKSoftmaxMoE",
    "aistats2024_model",
    "align_softmax_gate",
    "em_convergence",
    "fit_rate",
    "gaussian_cell_errors",
    "gaussian_gating_d1",
    "gaussian_gating_d2",
    "generalization_curve",
    "linear_rate",
    "neurips2023_model",
    "rate_experiment",
    "register_experiment",
    "run_experiment",
    "softmax_cell_errors",
    "softmax_d1",
    "softmax_d2",
    "summarize_by_n",
    "summarize_cell_errors",
    "topk_d1",
    "topk_d2",
    "voronoi_cells",
]
