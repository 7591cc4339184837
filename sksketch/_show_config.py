"""The report behind ``sksketch.show_config()``."""

import os
import platform
import sys

from ._version import __version__


def _dependency_versions():
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for name in ("numpy", "scipy", "scikit-learn", "joblib", "threadpoolctl", "Cython"):
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = None
    return versions


def _config():
    from ._kernels import OPENMP_WAIT_POLICY, _openmp, _simd
    from .utils._threads import ADAPTIVE_THREADS_ENV_VAR, adaptive_threads_enabled

    build = _openmp.build_info()
    return {
        "sksketch": {"version": __version__},
        "python": {
            "version": platform.python_version(),
            "executable": sys.executable,
            "platform": platform.platform(),
            "machine": platform.machine(),
        },
        "build": {
            "compiler": build["compiler"],
            "flags": build["flags"],
            "debug": build["debug"],
        },
        "openmp": {
            "enabled": build["openmp"],
            "version": build["openmp_version"] or None,
            "max_threads": _openmp.openmp_max_threads(),
            "effective_n_threads": _openmp.effective_n_threads(None),
            "wait_policy": ", ".join(f"{k}={v}" if k != "source" else v
                                     for k, v in OPENMP_WAIT_POLICY.items()),
            # SLIDEClassifier's training: fewer threads while other processes hold cores
            "adaptive_threads": adaptive_threads_enabled(),
            ADAPTIVE_THREADS_ENV_VAR: os.environ.get(ADAPTIVE_THREADS_ENV_VAR),
        },
        "simd": {
            "active_isa": _simd.active_isa(),
            "supported_isas": _simd.supported_isas(),
            "compiled_isas": _simd.compiled_isas(),
            _simd.ISA_ENV_VAR: os.environ.get(_simd.ISA_ENV_VAR),
            "cpu_features": _simd.cpu_features(),
            # SLIDEClassifier's top-k over many labels: scores screened in
            # bfloat16 on AMX tiles, then the candidates' scored in float32
            "amx_screening": _simd.screen_status(),
            _simd.SCREEN_ENV_VAR: os.environ.get(_simd.SCREEN_ENV_VAR),
        },
        "dependencies": _dependency_versions(),
    }


def show_config(mode="stdout"):
    if mode not in ("stdout", "dicts"):
        raise ValueError(f"mode must be 'stdout' or 'dicts', got {mode!r}")
    config = _config()
    if mode == "dicts":
        return config
    for section, entries in config.items():
        print(f"{section}:")
        for key, value in entries.items():
            if isinstance(value, dict):
                found = [k for k, v in value.items() if v]
                value = " ".join(found) if found else "none"
            elif isinstance(value, list):
                value = " ".join(value)
            print(f"  {key}: {value}")
    return None
