"""Utilities for users and for sksketch's own tests."""

from ._discovery import all_estimators

__all__ = ["all_estimators"]
