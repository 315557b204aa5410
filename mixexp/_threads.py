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


def _in_worker(n_threads, function, args):
    # each worker process gets its share of the cores for Numba's thread team (the
    # kernels' results do not depend on the number of threads) and one BLAS thread
    import numba

    numba.set_num_threads(max(1, min(n_threads, numba.config.NUMBA_NUM_THREADS)))
    with single_threaded_blas():
        return function(*args)


def parallel_map(function, tasks, n_jobs):
    """``[function(*args) for args in tasks]``, in joblib worker processes when ``n_jobs`` > 1.

    Results come back in the order of ``tasks``. In this process (``n_jobs`` None
    or 1, or a single task) the calls run one after the other; otherwise each of
    the ``min(n_jobs, len(tasks))`` workers uses ``cpu_count // workers`` Numba
    threads, so the workers do not oversubscribe the cores.
    """
    import os

    from joblib import Parallel, delayed, effective_n_jobs

    tasks = list(tasks)
    n_workers = effective_n_jobs(n_jobs) if n_jobs is not None else 1
    n_workers = max(1, min(n_workers, len(tasks)))
    if n_workers == 1:
        return [function(*args) for args in tasks]
    threads = max(1, (os.cpu_count() or 1) // n_workers)
    return Parallel(n_jobs=n_workers)(delayed(_in_worker)(threads, function, args) for args in tasks)
