"""Thread pools during a fit.

The heavy work of a fit runs in mixexp's Numba kernels, which use every core.
The BLAS calls around them are small (K solves of p x p systems, the k-means
start), and a multi-threaded BLAS next to Numba's thread team only
oversubscribes the cores: on 2 cores it made the k-means start 50x slower.
So fits keep BLAS single-threaded, restoring the previous setting afterwards.
"""

import contextlib
import functools

from threadpoolctl import ThreadpoolController


@functools.cache
def _controller():
    return ThreadpoolController()


@contextlib.contextmanager
def single_threaded_blas():
    """Limit BLAS libraries to one thread inside the ``with`` block."""
    with _controller().limit(limits=1, user_api="blas"):
        yield


@contextlib.contextmanager
def single_threaded_openmp():
    """Limit OpenMP libraries (scikit-learn's k-means) to one thread inside the ``with`` block.

    Numba's kernels set their own thread count per call, unaffected outside the block.
    """
    with _controller().limit(limits=1, user_api="openmp"):
        yield
