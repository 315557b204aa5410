"""Data sets shipped with mixexp and generators of synthetic data."""

from ._base import load_mcycle, make_moe_regression

__all__ = ["load_mcycle", "make_moe_regression"]
