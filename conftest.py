"""Collection rules for the whole test run (tests/ and the doctests of sksketch/)."""

import importlib.util
import os

# Plots render off screen.
os.environ.setdefault("MPLBACKEND", "Agg")


def pytest_ignore_collect(collection_path, config):
    # The doctests of sksketch.plot draw with matplotlib, an optional extra.
    if collection_path.name == "plot.py" and collection_path.parent.name == "sksketch":
        return importlib.util.find_spec("matplotlib") is None or None
    return None
