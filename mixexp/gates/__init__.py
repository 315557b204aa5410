"""Gates: the mixing weights g_k(x) of a mixture of experts."""

from ._softmax import SoftmaxGate

__all__ = ["SoftmaxGate"]
