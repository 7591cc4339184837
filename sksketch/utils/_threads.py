"""How many threads a compiled kernel (or BLAS) runs a piece of work on."""

import os

from .._kernels._openmp import effective_n_threads

__all__ = ["ADAPTIVE_THREADS_ENV_VAR", "CoreContention", "adaptive_threads_enabled", "threads_for"]


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


# Environment variable that turns off the contention-aware thread count of
# SLIDEClassifier's training ("0", "false", "no" or "off").
ADAPTIVE_THREADS_ENV_VAR = "SKSKETCH_ADAPTIVE_THREADS"
# Clock ticks per core below which an interval says too little about the load
# (at Linux's 100 ticks a second: a fifth of a second).
_MIN_TICKS_PER_CORE = 20


def adaptive_threads_enabled():
    """Whether training may run on fewer threads than ``n_jobs`` while cores are busy."""
    value = os.environ.get(ADAPTIVE_THREADS_ENV_VAR, "1").strip().lower()
    return value not in ("0", "false", "no", "off")


def _read_cpu_times(stat_path, self_stat_path, cpus):
    """(total ticks, busy ticks) of `cpus` from /proc/stat, and this process's ticks."""
    total = busy = 0
    with open(stat_path) as f:
        for line in f:
            if not line.startswith("cpu") or line[3:4] in (" ", ""):
                continue
            name, *fields = line.split()
            if int(name[3:]) not in cpus:
                continue
            ticks = [int(v) for v in fields[:8]]
            # user nice system idle iowait irq softirq steal
            total += sum(ticks)
            busy += sum(ticks) - ticks[3] - ticks[4]
    with open(self_stat_path) as f:
        # fields after the command name, which may hold spaces: utime, stime
        # are the 14th and 15th fields of the line
        after = f.read().rsplit(")", 1)[1].split()
    own = int(after[11]) + int(after[12])
    return total, busy, own


def _read_running(stat_path, task_dir):
    """(threads runnable on the machine now, cores online) from /proc/stat, and
    this process's threads that are running (state ``R``) under `task_dir`."""
    running = None
    cores = 0
    with open(stat_path) as f:
        for line in f:
            if line.startswith("procs_running"):
                running = int(line.split()[1])
            elif line.startswith("cpu") and line[3:4] not in (" ", ""):
                cores += 1
    if running is None or cores == 0:
        raise ValueError("no procs_running or cpu lines")
    own = 0
    for name in os.listdir(task_dir):
        try:
            with open(os.path.join(task_dir, name, "stat")) as f:
                own += f.read().rsplit(")", 1)[1].split()[0] == "R"
        except (OSError, IndexError):
            continue  # a thread that ended meanwhile
    return running, cores, max(own, 1)


class CoreContention:
    """How many cores other processes kept busy, read from Linux's ``/proc``.

    Each :meth:`threads` call compares the CPU time of this process's cores
    (its affinity set) since the previous call with the time this process
    itself used: the rest is other processes' work. Training threads that
    outnumber the free cores wait for each other at every barrier (one
    thread of the team is always descheduled), so a team is only as large as
    the cores left free.

    Before any interval is long enough to measure (the first look of a
    short fit), it counts the threads runnable right now that are not this
    process's (``procs_running`` of ``/proc/stat``, less this process's
    running threads; in proportion to this process's share of the cores
    when its affinity set is smaller than the machine): a snapshot, read
    only until the first measured interval. Where ``/proc`` is not readable
    (other systems), or a later interval is too short to measure, it says
    nothing and callers keep their thread count.

    Parameters
    ----------
    stat_path, self_stat_path : str
        The files read (tests pass their own).
    task_dir : str
        The folder of this process's threads (``/proc/self/task``).
    cpus : set of int or None
        The cores counted; None: this process's affinity set.
    """

    def __init__(self, stat_path="/proc/stat", self_stat_path="/proc/self/stat", cpus=None,
                 task_dir="/proc/self/task"):
        self.stat_path, self.self_stat_path, self.task_dir = stat_path, self_stat_path, task_dir
        # whether an interval has been measured yet (until then, threads()
        # falls back on the runnable threads of the moment)
        self.measured = False
        if cpus is None:
            try:
                cpus = os.sched_getaffinity(0)
            except (AttributeError, OSError):
                cpus = set(range(os.cpu_count() or 1))
        self.cpus = frozenset(cpus)
        self._last = self._read()

    def _read(self):
        try:
            return _read_cpu_times(self.stat_path, self.self_stat_path, self.cpus)
        except (OSError, ValueError, IndexError):
            return None

    def busy_elsewhere(self):
        """Cores other processes kept busy since the last call, or None if unknown."""
        now, last = self._read(), self._last
        if now is None or last is None:
            self._last = now
            return None
        total, busy, own = (a - b for a, b in zip(now, last, strict=True))
        n_cpus = len(self.cpus)
        if total < _MIN_TICKS_PER_CORE * n_cpus:
            return None  # too short: keep measuring from the same start
        self._last = now
        self.measured = True
        return max(0.0, (busy - own) * n_cpus / total)

    def running_elsewhere(self):
        """Threads of other processes runnable now, in cores of this process's set, or None."""
        try:
            running, cores, own = _read_running(self.stat_path, self.task_dir)
        except (OSError, ValueError, IndexError):
            return None
        others = max(0, running - own)
        n_cpus = len(self.cpus)
        return float(min(n_cpus, others * min(1.0, n_cpus / cores)))

    def threads(self, n_threads, current=None):
        """`n_threads`, or fewer (at least 1) if other processes hold cores.

        `current` (default `n_threads`) is returned when the load is unknown,
        as after an interval too short to measure.
        """
        if n_threads <= 1:
            return n_threads if current is None else current
        elsewhere = self.busy_elsewhere()
        if elsewhere is None and not self.measured:
            elsewhere = self.running_elsewhere()
        if elsewhere is None:
            return n_threads if current is None else current
        free = len(self.cpus) - elsewhere
        return int(max(1, min(n_threads, int(free + 0.5))))
