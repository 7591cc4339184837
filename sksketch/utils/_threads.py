"""How many threads a compiled kernel (or BLAS) runs a piece of work on."""

from .._kernels._openmp import effective_n_threads

__all__ = ["threads_for"]


def threads_for(work, n_jobs=None, min_work_per_thread=1):
    """Threads for `work` units: ``n_jobs``'s thread count, capped by the work.

    Waking a thread team costs more than a little work, so each thread gets
    at least `min_work_per_thread` units and work below twice that runs on
    the calling thread. Every kernel of sksketch picks its thread count here.

    Parameters
    ----------
    work : int
        Units of work of the call (rows, values, multiply-adds...).
    n_jobs : int or None, default=None
        As the estimators' ``n_jobs``: None means every thread OpenMP allows,
        a negative value counts back from that number (see
        ``sksketch._kernels._openmp.effective_n_threads``). A count it has
        already resolved gives itself back.
    min_work_per_thread : int, default=1
        Units of work that make a thread worth waking.

    Returns
    -------
    n_threads : int
        At least 1, at most the thread count of `n_jobs`.

    Examples
    --------
    >>> from sksketch.utils._threads import threads_for
    >>> threads_for(100, n_jobs=4, min_work_per_thread=1000)
    1
    >>> threads_for(2500, n_jobs=4, min_work_per_thread=1000) in (1, 2)
    True
    """
    cap = int(work) // int(min_work_per_thread)
    if cap <= 1:
        # resolving n_jobs costs more than the small calls that end here
        return 1
    return max(1, min(effective_n_threads(n_jobs), cap))
