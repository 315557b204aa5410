"""mixexp: classical mixtures of experts, fitted properly.

Estimators follow the scikit-learn API (fit/predict, pipelines, grid search,
clone, pickle). The documentation lives in docs/.
"""

from ._estimators import MixtureOfExpertsClassifier, MixtureOfExpertsRegressor

__version__ = "0.1.0"

__all__ = ["MixtureOfExpertsClassifier", "MixtureOfExpertsRegressor", "__version__"]
