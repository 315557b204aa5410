"""Data sets shipped with mixexp and generators of synthetic data."""

from ._base import load_mcycle, make_moe_regression
from ._gated import make_gaussian_gated_regression, make_topk_moe_regression

__all__ = ["load_mcycle", "make_gaussian_gated_regression", "make_moe_regression", "make_topk_moe_regression"]
