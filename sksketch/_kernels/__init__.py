"""Compiled kernels; importing the package allows its picklable objects in model files."""

from . import _prechecks  # noqa: F401
