"""Build facts and OpenMP thread counts, as compiled into the extensions."""

import os
import time

from joblib import cpu_count

# joblib's cpu_count reads the cgroup files on each call (about 0.1 ms, a
# sixth of a single row's prediction): its answer is kept this many seconds
CPU_COUNT_SECONDS = 1.0
_cpu_count_cache = [float("-inf"), 1]


def _cpus():
    """joblib's ``cpu_count()``, read again at most once per CPU_COUNT_SECONDS."""
    now = time.monotonic()
    if now - _cpu_count_cache[0] > CPU_COUNT_SECONDS:
        _cpu_count_cache[1] = cpu_count()
        _cpu_count_cache[0] = now
    return _cpu_count_cache[1]


cdef extern from "sks_openmp.h" nogil:
    int sks_openmp_enabled()
    int sks_openmp_version()
    int sks_omp_get_max_threads()
    const char *SKS_COMPILER
    const char *SKS_BUILD_FLAGS
    int SKS_BUILD_DEBUG


def build_info():
    """Compiler, flags and OpenMP support of this build, as a dict."""
    return {
        "compiler": SKS_COMPILER.decode(),
        "flags": SKS_BUILD_FLAGS.decode(),
        "debug": bool(SKS_BUILD_DEBUG),
        "openmp": bool(sks_openmp_enabled()),
        "openmp_version": int(sks_openmp_version()),
    }


def openmp_max_threads():
    """``omp_get_max_threads()``: honours OMP_NUM_THREADS and threadpoolctl."""
    return int(sks_omp_get_max_threads())


def effective_n_threads(n_jobs=None):
    """Number of OpenMP threads a kernel should use for ``n_jobs``.

    ``None`` means every thread OpenMP allows (``omp_get_max_threads()``,
    which follows ``OMP_NUM_THREADS`` and ``threadpoolctl.threadpool_limits``),
    but no more than the CPUs this process may use unless ``OMP_NUM_THREADS``
    asks for more. A negative value counts back from that number, as in joblib
    (``-1``: all of them). Without OpenMP the answer is always 1.
    """
    if n_jobs is not None and (not isinstance(n_jobs, int) or n_jobs == 0):
        raise ValueError(f"n_jobs must be None or a non-zero integer, got {n_jobs!r}")
    if not sks_openmp_enabled():
        return 1
    max_threads = int(sks_omp_get_max_threads())
    if not os.environ.get("OMP_NUM_THREADS"):
        max_threads = min(max_threads, _cpus())
    if n_jobs is None:
        return max_threads
    if n_jobs < 0:
        return max(1, max_threads + 1 + n_jobs)
    return n_jobs
