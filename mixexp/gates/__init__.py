"""Gates: the mixing weights g_k(x) of a mixture of experts.

A gate gives the EM loop: ``kind`` (a name; with the expert family's kind it
picks a fused kernel), ``n_experts``, ``coef``, ``evaluate(XT)`` returning a
:class:`GateEval` of (K, n) log-weights and weights on a feature-major design
``XT`` (p, n) whose first row is the constant 1, ``initialize(XT, resp,
sample_weight)``, ``m_step(XT, resp, sample_weight, current=None, stats=None)``
(must not decrease sum_i w_i sum_k r_ki log g_k(x_i) minus its penalty; returns
the new :class:`GateEval`), ``penalty_value()``, ``n_parameters()``, and
``raw_params(scaling)`` / ``set_raw_params(params, scaling)`` for the
coefficients on the raw data's scale.
"""

from ._constant import ConstantGate
from ._softmax import GateEval, SoftmaxGate

#: ``gate=`` names accepted by the estimators.
GATES = {"softmax": SoftmaxGate, "constant": ConstantGate}

__all__ = ["GATES", "ConstantGate", "GateEval", "SoftmaxGate"]
