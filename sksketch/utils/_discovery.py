"""Find the public estimators of sksketch, as ``sklearn.utils.all_estimators``."""

import inspect
import pkgutil
from importlib import import_module
from operator import itemgetter

from sklearn.base import BaseEstimator


def all_estimators():
    """Every public estimator class defined in sksketch.

    Modules and classes whose name starts with an underscore are public when a
    public module re-exports them; abstract classes are left out, and so are
    classes without ``fit`` (the training-row samplers of ``sksketch.sampling``
    are parameter holders for estimators, not estimators).

    Returns
    -------
    estimators : list of (name, class)
        Sorted by name, each class once.

    Examples
    --------
    >>> from sksketch.utils import all_estimators
    >>> isinstance(all_estimators(), list)
    True
    """
    import sksketch

    found = {}
    modules = [sksketch]
    for info in pkgutil.walk_packages(sksketch.__path__, prefix="sksketch."):
        parts = info.name.split(".")
        if any(part.startswith("_") for part in parts[1:]):
            continue
        modules.append(import_module(info.name))
    for module in modules:
        for name, obj in inspect.getmembers(module, inspect.isclass):
            if (
                issubclass(obj, BaseEstimator)
                and obj.__module__.startswith("sksketch.")
                and not name.startswith("_")
                and not inspect.isabstract(obj)
                and callable(getattr(obj, "fit", None))
            ):
                found[obj] = name
    return sorted(((name, cls) for cls, name in found.items()), key=itemgetter(0))
