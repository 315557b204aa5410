"""Numba settings shared by every kernel.

``MIXEXP_NUMBA_CACHE`` (default ``1``) switches the on-disk cache of compiled
kernels; set it to ``0`` on read-only installs. ``FASTMATH`` deliberately leaves
out ``nnan`` and ``ninf``: E-steps produce ``-inf`` log-densities and must keep
them. ``BLOCK`` is the number of rows one parallel task handles; reductions are
accumulated per block and summed afterwards in block order, so results do not
depend on the number of threads.
"""

import os

CACHE = os.environ.get("MIXEXP_NUMBA_CACHE", "1").lower() not in ("0", "false", "no")
FASTMATH = {"nsz", "arcp", "contract", "reassoc"}
BLOCK = 4096


def n_blocks(n_samples):
    """Number of fixed-size row blocks covering ``n_samples`` rows."""
    return max(1, (n_samples + BLOCK - 1) // BLOCK)
