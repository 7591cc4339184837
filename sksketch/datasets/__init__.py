"""Dataset readers, writers and generators."""

from ._synthetic import make_extreme_classification
from ._xc import dump_xc, load_xc

__all__ = ["dump_xc", "load_xc", "make_extreme_classification"]
