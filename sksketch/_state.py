"""The state of saved models: which classes a model file may hold, and the checks of a state.

A fitted model is rebuilt from its state in two ways: unpickling (:mod:`pickle`,
joblib, dask) calls each object's ``__setstate__``, and :func:`sksketch.load`
rebuilds the objects a model file names. Both run the same checks, and each
class owns the checks of its own state:

- a sksketch estimator or sampler checks itself in ``_check_state``, which
  :meth:`sksketch.base.VersionedStateMixin.__setstate__` calls;
- a class that cannot (a compiled object, a scikit-learn estimator) is
  allowed in model files with a ``precheck`` of the state it is built from
  and a ``check`` of the built object, and the sksketch object that holds it
  runs that check too (:func:`run_check`).

A check raises :class:`StateError`, a :class:`ValueError` naming the class and
the attribute at fault, before any compiled kernel sees the state.

:func:`allow_in_model_files` fills the allowlist of classes a model file may
hold; the file format (:mod:`sksketch._safe_io`) knows classes only through it.
"""

from collections.abc import Callable
from typing import NamedTuple

import numpy as np

__all__ = ["StateError", "allow_in_model_files", "allowed_classes", "run_check"]

# The key under which a pickled state records the sksketch version that wrote it.
VERSION_KEY = "_sksketch_version"

F32, F64, I32, I64, U16 = "float32", "float64", "int32", "int64", "uint16"


class StateError(ValueError):
    """A saved state that would break the model rebuilt from it."""


# ------------------------------------------------------------------ allowlist


class Allowed(NamedTuple):
    """How a model file stores a class, and the checks of its state.

    kind ``"estimator"``: a scikit-learn style estimator, stored as its
    parameters and the rest of its ``__getstate__``; ``"object"``: a plain
    object, stored as its ``__getstate__`` dict; ``"reduce"``: a compiled
    object, stored as the constructor arguments and state of its
    ``__reduce__``. ``precheck(args, state, path)`` runs before a compiled
    object is built, ``check(obj)`` on every built object of a class that
    does not check itself when unpickled. ``check_version(version)`` is the
    class's ``_check_saved_version`` when its pickles carry the sksketch
    version (:class:`~sksketch.base.VersionedStateMixin`), else None; only
    such classes can be the model of a file.
    """

    cls: type
    kind: str
    precheck: Callable | None
    check: Callable | None
    check_version: Callable | None


_ALLOWED = {}


def class_name(cls):
    return f"{cls.__module__}.{cls.__qualname__}"


def allow_in_model_files(cls=None, *, kind="estimator", precheck=None, check=None):
    """Allow instances of `cls` in model files; usable as a class decorator.

    Parameters
    ----------
    cls : type
    kind : {"estimator", "object", "reduce"}, default="estimator"
        How the file stores it (see :class:`Allowed`).
    precheck : callable, default=None
        ``precheck(args, state, path)`` of a ``"reduce"`` class: refuses
        constructor arguments and a state it must not be built from.
    check : callable, default=None
        ``check(obj)`` of a class that does not check its own state when
        unpickled.

    Returns
    -------
    cls : type
    """

    def allow(cls):
        if kind not in ("estimator", "object", "reduce"):
            raise ValueError(f"unknown kind {kind!r}")
        check_version = getattr(cls, "_check_saved_version", None)
        _ALLOWED[cls] = Allowed(cls, kind, precheck, check, check_version)
        return cls

    return allow if cls is None else allow(cls)


def allowed_classes():
    """``{class name: Allowed}`` of every class a model file may hold."""
    return {class_name(cls): entry for cls, entry in _ALLOWED.items()}


def run_check(obj):
    """Run the check `obj`'s class is allowed with, if any.

    For the sksketch objects that hold objects which do not check themselves
    when unpickled (a wrapped scikit-learn estimator).
    """
    entry = _ALLOWED.get(type(obj))
    if entry is not None and entry.check is not None:
        entry.check(obj)


# ------------------------------------------------------------------ checks


def fail(obj, message):
    raise StateError(f"{type(obj).__name__}: {message}")


def expect(condition, message):
    if not condition:
        raise StateError(message)


def is_int(value):
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _shape_text(shape):
    dims = ["*" if n is None else str(n) for n in shape]
    return f"({dims[0]},)" if len(dims) == 1 else f"({', '.join(dims)})"


def check_array(obj, name, value, dtypes, shape, contiguous=True):
    """`value` is an array of one of `dtypes` and of `shape` (None: any length)."""
    if not isinstance(value, np.ndarray):
        fail(obj, f"{name} must be an array, found {type(value).__name__}")
    if dtypes is not None and value.dtype.name not in dtypes:
        fail(obj, f"{name} has dtype {value.dtype}, expected {' or '.join(dtypes)}")
    if shape is not None and (
        value.ndim != len(shape)
        or any(n is not None and n != m for n, m in zip(shape, value.shape, strict=True))
    ):
        fail(obj, f"{name} has shape {value.shape}, expected {_shape_text(shape)}")
    if contiguous and not value.flags.c_contiguous:
        fail(obj, f"{name} must be C-contiguous")
    return value


def attr_array(obj, name, dtypes, shape, optional=False, contiguous=True):
    value = getattr(obj, name, None)
    if value is None:
        if optional:
            return None
        fail(obj, f"{name} is missing")
    return check_array(obj, name, value, dtypes, shape, contiguous)


def attr_integer(obj, name, low=0):
    value = getattr(obj, name, None)
    if not is_int(value) or value < low:
        fail(obj, f"{name} must be an integer >= {low}, found {value!r:.40}")
    return int(value)


def ids_in_range(obj, name, ids, high):
    if ids.size and (ids.min() < 0 or ids.max() >= high):
        fail(obj, f"{name} holds ids outside [0, {high})")


def is_fitted(obj, names):
    """Whether obj holds its fitted state: all of `names`, or none of them."""
    present = [hasattr(obj, n) for n in names]
    if any(present) and not all(present):
        missing = [n for n, p in zip(names, present, strict=True) if not p]
        fail(obj, f"a fitted model needs {missing}")
    return all(present)


def check_rng(obj, name):
    value = getattr(obj, name, None)
    if value is not None and not isinstance(value, np.random.RandomState):
        fail(obj, f"{name} must be a RandomState")


def check_layers(est, n_features, dtypes, contiguous):
    """Shapes of a network's ``coefs_`` and ``intercepts_``; returns the output width."""
    coefs, intercepts = est.coefs_, est.intercepts_
    if type(coefs) is not list or type(intercepts) is not list or not coefs or (
        len(coefs) != len(intercepts)
    ):
        fail(est, "coefs_ and intercepts_ must be non-empty lists of one length")
    width = n_features
    for i, (W, b) in enumerate(zip(coefs, intercepts, strict=True)):
        check_array(est, f"coefs_[{i}]", W, dtypes, (width, None), contiguous)
        width = W.shape[1]
        check_array(est, f"intercepts_[{i}]", b, (W.dtype.name,), (width,), contiguous)
    return width


def check_like(est, name, arrays, params, contiguous=True):
    """`arrays` is a list of one array per parameter, each of its dtype and shape."""
    if type(arrays) is not list or len(arrays) != len(params):
        fail(est, f"{name} must be a list of {len(params)} arrays")
    for i, (a, p) in enumerate(zip(arrays, params, strict=True)):
        check_array(est, f"{name}[{i}]", a, (p.dtype.name,), p.shape, contiguous)
