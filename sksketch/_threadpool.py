"""BLAS thread limits that blocks running in several Python threads can share."""

import threading
from contextlib import contextmanager

from threadpoolctl import ThreadpoolController

_lock = threading.Lock()
_n_active = 0
_outermost = None
# Finding the loaded libraries takes milliseconds (a partial_fit on a small
# block takes not many more): one controller, made at the first block, with
# the libraries loaded by then.
_controller = None


@contextmanager
def blas_thread_limits(n_threads):
    """Limit BLAS to `n_threads` threads for the duration of the block.

    BLAS thread counts are process-wide, and ``threadpool_limits`` restores on
    exit the setting it found on entry: blocks that overlap in several Python
    threads (concurrent ``predict`` calls) would restore each other's limit
    and leave the process with one of them. Here every block sets its limit on
    entry, and the last block to leave restores the setting found by the first
    one to enter.
    """
    global _n_active, _outermost, _controller
    with _lock:
        if _controller is None:
            _controller = ThreadpoolController()
        limiter = _controller.limit(limits=n_threads, user_api="blas")
        if _n_active == 0:
            _outermost = limiter
        _n_active += 1
    try:
        yield
    finally:
        with _lock:
            _n_active -= 1
            if _n_active == 0:
                _outermost.restore_original_limits()
                _outermost = None
