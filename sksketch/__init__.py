"""sksketch: hashing-based, CPU-fast training of huge-output classifiers.

scikit-learn compatible estimators whose hot loops are compiled kernels with
run-time dispatched AVX-512 / AVX2 paths and a portable fallback.
"""

from ._importance import ImportanceSampledClassifier
from ._safe_io import load, save
from ._slide import SLIDEClassifier
from ._version import __version__
from ._zeroshot import ZeroShotSoftLabelClassifier
from .sampling import NadarayaWatsonSketch


def show_config(mode="stdout"):
    """Print (or return) how sksketch was built and which kernels are active.

    Parameters
    ----------
    mode : {"stdout", "dicts"}, default="stdout"
        ``"stdout"`` prints a report; ``"dicts"`` returns it as a dict.

    Returns
    -------
    config : dict or None
        The report when ``mode="dicts"``.

    Examples
    --------
    >>> import sksketch
    >>> cfg = sksketch.show_config(mode="dicts")
    >>> cfg["simd"]["active_isa"] in ("scalar", "avx2", "avx512", "avx512_bf16")
    True
    """
    from ._show_config import show_config as _show_config

    return _show_config(mode=mode)


__all__ = [
    "ImportanceSampledClassifier",
    "NadarayaWatsonSketch",
    "SLIDEClassifier",
    "ZeroShotSoftLabelClassifier",
    "__version__",
    "load",
    "save",
    "show_config",
]
