"""Compiled kernels; importing the package allows its picklable objects in model files."""

import os

# How long an idle OpenMP thread spins before it sleeps. The kernels open a
# few short parallel regions per batch; libgomp's default spin (300,000
# iterations) is harmless on idle cores, but when another process shares
# them, a spinning thread takes the time slice the working one needs and a
# barrier can wait a whole scheduler tick. A short spin keeps the quiet-machine
# speed and avoids that (see "Shared cores" in the user guide). The OpenMP
# runtime reads these variables once, when it is loaded: they are set for that
# moment only, and a value the user set is left alone.
OPENMP_WAIT_DEFAULTS = {"GOMP_SPINCOUNT": "1000", "KMP_BLOCKTIME": "0"}
_WAIT_VARIABLES = ("OMP_WAIT_POLICY", *OPENMP_WAIT_DEFAULTS)


def _runtime_already_loaded():
    """Whether the shared OpenMP runtime is mapped into the process already.

    Linux only; the privately named copies that wheels bundle (such as
    ``libgomp-<hash>.so``) are other runtimes and do not count.
    """
    try:
        with open("/proc/self/maps") as maps:
            names = {os.path.basename(line.split()[-1]) for line in maps if "/" in line}
    except OSError:
        return False
    return any(name.startswith(("libgomp.so", "libomp.so", "libiomp5.so")) for name in names)


def _load_openmp_runtime():
    """Import the first OpenMP-linked module under the short-spin defaults.

    Returns how the wait policy was chosen, for ``show_config``.
    """
    user = {name: os.environ[name] for name in _WAIT_VARIABLES if name in os.environ}
    if user:
        from . import _openmp  # noqa: F401

        return {"source": "environment", **user}
    if _runtime_already_loaded():
        from . import _openmp  # noqa: F401

        return {"source": "runtime loaded before sksketch: its own defaults"}
    os.environ.update(OPENMP_WAIT_DEFAULTS)
    try:
        from . import _openmp  # noqa: F401
    finally:
        for name in OPENMP_WAIT_DEFAULTS:
            os.environ.pop(name, None)
    return {"source": "sksketch default", **OPENMP_WAIT_DEFAULTS}


OPENMP_WAIT_POLICY = _load_openmp_runtime()

from . import _prechecks  # noqa: E402, F401
