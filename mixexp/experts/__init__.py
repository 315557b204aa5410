"""Expert families: the conditional models f_k(y | x) of a mixture of experts.

See :class:`ExpertFamily` for the interface a family implements.
"""

from ._base import ExpertFamily
from ._gaussian import GaussianExperts

#: ``expert=`` names accepted by :class:`mixexp.MixtureOfExpertsRegressor`.
EXPERT_FAMILIES = {"gaussian": GaussianExperts}

__all__ = ["EXPERT_FAMILIES", "ExpertFamily", "GaussianExperts"]
