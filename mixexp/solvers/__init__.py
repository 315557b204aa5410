"""Solvers that fit a mixture of experts from its gate and expert parts."""

from ._em import Design, EMResult, e_step_pass, run_em

__all__ = ["Design", "EMResult", "e_step_pass", "run_em"]
