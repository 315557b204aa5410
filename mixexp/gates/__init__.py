"""Gates: the mixing weights g_k(x) of a mixture of experts."""

from ._softmax import GateEval, SoftmaxGate

__all__ = ["GateEval", "SoftmaxGate"]
