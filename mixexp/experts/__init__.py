"""Expert families: the conditional models f_k(y | x) of a mixture of experts.

See :class:`ExpertFamily` for the interface a family implements.
"""

from ._base import ExpertFamily
from ._gaussian import GaussianExperts
from ._glm import GammaExperts, PoissonExperts
from ._multinomial import MultinomialExperts
from ._student_t import StudentTExperts

#: ``expert=`` names accepted by :class:`mixexp.MixtureOfExpertsRegressor`.
EXPERT_FAMILIES = {
    "gaussian": GaussianExperts,
    "poisson": PoissonExperts,
    "gamma": GammaExperts,
    "student_t": StudentTExperts,
}

__all__ = [
    "EXPERT_FAMILIES",
    "ExpertFamily",
    "GammaExperts",
    "GaussianExperts",
    "MultinomialExperts",
    "PoissonExperts",
    "StudentTExperts",
]
