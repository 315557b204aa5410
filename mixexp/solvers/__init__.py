"""Solvers that fit a mixture of experts from its gate and expert parts."""

from ._em import Design, EMResult, e_step_pass, run_em
from ._gradient import (
    flat_bounds,
    get_flat_params,
    loglik_and_grad,
    missing_gradient_methods,
    run_lbfgs,
    set_flat_params,
)
from ._minibatch import run_minibatch
from ._squarem import run_squarem

__all__ = [
    "Design",
    "EMResult",
    "e_step_pass",
    "flat_bounds",
    "get_flat_params",
    "loglik_and_grad",
    "missing_gradient_methods",
    "run_em",
    "run_lbfgs",
    "run_minibatch",
    "run_squarem",
    "set_flat_params",
]
