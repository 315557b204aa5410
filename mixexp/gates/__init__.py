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

The gradient solver (``solver="lbfgs"``) and the standard errors also need,
on the internal (standardised) scale and in an unconstrained parametrisation:
``get_flat()`` / ``set_flat(theta)`` (the free parameters as one vector, e.g.
rows 1..K-1 of a softmax gate's ``coef``), ``flat_grad(XT, resp,
sample_weight)`` (the gradient with respect to ``get_flat()`` of ``sum_i w_i
sum_k r_ki log g_k(x_i)``, without penalty, for fixed responsibilities),
``penalty_grad()`` (the gradient of ``penalty_value()``) and optionally
``flat_bounds()`` (lower and upper bounds of ``get_flat()``; default none). By
Fisher's identity these give the gradient of the observed log-likelihood
(:func:`mixexp.solvers.loglik_and_grad`). A gate without them can still be
fitted by EM; ``solver="lbfgs"`` then raises a ValueError naming what is
missing.

A gate that is a density of x (``models_x = True``: the Gaussian gate) also
gives ``marginal_log_likelihood(gate_eval, sample_weight)``, the weighted
``sum_i w_i log p(x_i)`` of its evaluation; the EM objective is then the joint
log-likelihood of (x, y) (see ``mixexp.solvers._em.objective``).
"""

from ._constant import ConstantGate
from ._gaussian import GaussianGate, GaussianGateEval
from ._hierarchical import HierarchicalGate, HierarchicalGateEval
from ._softmax import GateEval, SoftmaxGate
from ._topk import TopKSoftmaxGate

#: ``gate=`` names accepted by the estimators.
GATES = {
    "softmax": SoftmaxGate,
    "constant": ConstantGate,
    "gaussian": GaussianGate,
    "hierarchical": HierarchicalGate,
}

__all__ = [
    "GATES",
    "ConstantGate",
    "GateEval",
    "GaussianGate",
    "GaussianGateEval",
    "HierarchicalGate",
    "HierarchicalGateEval",
    "SoftmaxGate",
    "TopKSoftmaxGate",
]
