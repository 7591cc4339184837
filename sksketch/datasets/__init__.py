"""Dataset readers, writers and generators."""

from ._click_through import make_click_through
from ._synthetic import make_extreme_classification
from ._xc import dump_xc, load_xc
from ._xlsa17 import load_xlsa17

__all__ = ["dump_xc", "load_xc", "load_xlsa17", "make_click_through",
           "make_extreme_classification"]
