"""mixexp: classical mixtures of experts, fitted properly.

Estimators follow the scikit-learn API (fit/predict, pipelines, grid search,
clone, pickle). The documentation lives in docs/.
"""

from ._estimators import MixtureOfExpertsClassifier, MixtureOfExpertsRegressor
from .inference import MoEInferenceResults, align_experts, fit_inference, permute_experts
from .selection import bootstrap_lrt, select_n_experts

__version__ = "0.1.0"

__all__ = [
    "MixtureOfExpertsClassifier",
    "MixtureOfExpertsRegressor",
    "MoEInferenceResults",
    "__version__",
    "align_experts",
    "bootstrap_lrt",
    "fit_inference",
    "permute_experts",
    "select_n_experts",
]
