"""Compiled kernels; importing the package allows its picklable objects in model files."""

import os

# How long an idle OpenMP thread waits before it sleeps is the OpenMP
# runtime's own default (libgomp: 300,000 spins): the kernels open a few short
# parallel regions per batch, and waking a sleeping thread for each cost a
# WordNet nouns fit a third of its time on 2 quiet cores. When other processes
# hold cores, training runs on fewer threads instead (CoreContention, see
# "Shared cores" in the user guide). The runtime reads these variables once,
# when it is loaded; show_config reports the ones the user set.
_WAIT_VARIABLES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")


def _load_openmp_runtime():
    """Import the first OpenMP-linked module; returns how the wait policy was chosen."""
    from . import _openmp  # noqa: F401

    user = {name: os.environ[name] for name in _WAIT_VARIABLES if name in os.environ}
    if user:
        return {"source": "environment", **user}
    return {"source": "OpenMP runtime default"}


OPENMP_WAIT_POLICY = _load_openmp_runtime()

from . import _prechecks  # noqa: E402, F401
