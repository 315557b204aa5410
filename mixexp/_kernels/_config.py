"""Numba settings shared by every kernel.

``MIXEXP_NUMBA_CACHE`` (default ``1``) switches the on-disk cache of compiled
kernels; set it to ``0`` on read-only installs. ``FASTMATH`` deliberately leaves
out ``nnan`` and ``ninf`` (E-steps produce ``-inf`` log-densities and must keep
them) and ``reassoc`` (re-associated reductions are vectorised with an order
that can depend on the alignment of the buffers, so two identical fits could
differ in the last bits).

Numba's cache is invalidated only when the kernel module's own source changes,
so the block size, which the kernels compile in, is defined in
:mod:`mixexp._kernels._kernels` (``BLOCK``), not here; changing ``FASTMATH``
needs the cache cleared (delete ``mixexp/_kernels/__pycache__``).
"""

import os

CACHE = os.environ.get("MIXEXP_NUMBA_CACHE", "1").lower() not in ("0", "false", "no")
FASTMATH = {"nsz", "arcp", "contract"}
