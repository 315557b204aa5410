"""Expert families: the conditional models f_k(y | x) of a mixture of experts."""

from ._gaussian import GaussianExperts

__all__ = ["GaussianExperts"]
