"""Saving fitted models as data: one ``.npz`` file that loads without pickle.

A model file is a zip archive in NumPy's ``.npz`` layout. Every array of the
model's state is one ``<key>.npy`` member; the member ``metadata.json`` holds
the rest: the format name and version, the sksketch version that wrote it, the
estimator's class and parameters, and its fitted state as a tree of JSON
nodes (dicts, lists, tuples, numbers, strings) whose arrays are references to
members by key, with the dtype and shape each must have.

Loading reads the members with ``np.load(..., allow_pickle=False)`` and the
metadata with :mod:`json`, so it never runs code from the file: the only
objects it creates are instances of the classes allowed in model files
(:func:`sksketch._state.allow_in_model_files`), built from their state like
unpickling builds them. Each rebuilt object's state is then checked by the
checks its class owns, the same that unpickling runs (shapes that must agree,
ids that index arrays, the sizes the compiled kernels rely on); a compiled
object's state is checked before it is built. A file that fails any check
raises :class:`ValueError`; it never reaches a kernel.

Values themselves are not authenticated: weights load as saved, NaN and
infinities included (a diverged model stays diverged, as with pickle).
"""

import copyreg
import inspect
import json
import math
import re
import zipfile

import numpy as np
import scipy.sparse as sp

from ._state import VERSION_KEY, StateError, allowed_classes, class_name, is_int
from ._version import __version__

__all__ = ["load", "save"]

FORMAT_NAME = "sksketch-model"
FORMAT_VERSION = 1

_METADATA = "metadata.json"
# Arrays whose dtype a file may use: booleans, numbers and strings.
_ARRAY_KINDS = "biufcUS"
_KEY_PATTERN = re.compile(r"[A-Za-z0-9_.\-]{1,200}")
_MAX_DEPTH = 100
_BIT_GENERATORS = ("MT19937", "PCG64", "PCG64DXSM", "Philox", "SFC64")
_SPARSE_FIELDS = {"csr": ("data", "indices", "indptr"), "csc": ("data", "indices", "indptr"),
                  "coo": ("data", "row", "col")}


class _FormatError(StateError):
    """The file is not a valid model file; load() adds the file's name."""


# ------------------------------------------------------------------ allowlist


def _foreign_estimators():
    """Names of the allowed estimators that are not sksketch's own, for messages."""
    return ", ".join(sorted(
        entry.cls.__name__ for entry in allowed_classes().values()
        if entry.kind == "estimator" and not entry.cls.__module__.startswith("sksketch.")
    ))


def _cannot_save(value, path):
    where = f" (at {path})" if path else ""
    return TypeError(
        f"sksketch.save cannot store a {type(value).__module__}.{type(value).__qualname__}"
        f"{where}: it writes sksketch estimators and the few scikit-learn parts they may "
        f"hold ({_foreign_estimators()}), as plain data. Save this model with pickle or "
        "joblib (and load only files you trust) or with skops.io."
    )


# ------------------------------------------------------------------ writing


def _join(path, key):
    return f"{path}.{key}" if path else str(key)


class _Writer:
    """Turns a state tree into JSON nodes, collecting its arrays by key."""

    def __init__(self):
        self.allowed = {entry.cls: (name, entry.kind) for name, entry in allowed_classes().items()}
        self.arrays = {}
        self._array_keys = {}
        self._object_ids = {}
        # every memoised object stays alive, so that no id() is reused
        self._alive = []

    def node(self, value, path, depth=0):
        if depth > _MAX_DEPTH:
            raise TypeError(f"the state is nested more than {_MAX_DEPTH} levels deep at {path}")
        depth += 1
        if value is None or type(value) in (bool, int, str):
            return value
        if type(value) is float:
            return value if math.isfinite(value) else {"type": "float", "value": repr(value)}
        if isinstance(value, np.ndarray):
            return self._array(value, path)
        if isinstance(value, np.generic):
            return self._scalar(value, path)
        if type(value) in (list, tuple):
            items = [self.node(v, _join(path, i), depth) for i, v in enumerate(value)]
            return {"type": type(value).__name__, "items": items}
        if type(value) is dict:
            if all(type(k) is str for k in value):
                items = {k: self.node(v, _join(path, k), depth) for k, v in value.items()}
                return {"type": "dict", "items": items}
            return {
                "type": "dict",
                "keys": [self.node(k, path, depth) for k in value],
                "values": [self.node(v, _join(path, k), depth) for k, v in value.items()],
            }
        known = self._object_ids.get(id(value))
        if known is not None:
            return {"type": "ref", "id": known}
        node_id = len(self._object_ids)
        self._object_ids[id(value)] = node_id
        self._alive.append(value)
        if sp.issparse(value):
            return {"type": "sparse", "id": node_id, **self._sparse(value, path, depth)}
        if isinstance(value, np.random.RandomState):
            return {
                "type": "random_state",
                "id": node_id,
                "state": self.node(value.get_state(legacy=False), _join(path, "state"), depth),
                "seed_sequence": self._seed_sequence(value._bit_generator, path, depth),
            }
        if isinstance(value, np.random.Generator):
            return {
                "type": "generator",
                "id": node_id,
                "state": self.node(value.bit_generator.state, _join(path, "state"), depth),
                "seed_sequence": self._seed_sequence(value.bit_generator, path, depth),
            }
        node = self._object(value, path, depth)
        return {"type": node.pop("type"), "id": node_id, **node}

    def _array(self, value, path):
        key = self._array_keys.get(id(value))
        original = value
        as_object = value.dtype.kind == "O"
        if as_object:
            value = self._strings(value, path)
        elif value.dtype.kind not in _ARRAY_KINDS:
            raise TypeError(
                f"cannot save the {value.dtype} array at {path}: the format stores arrays of "
                "booleans, numbers and strings only"
            )
        if key is None:
            key = re.sub(r"[^A-Za-z0-9_.\-]+", "_", path)[:180] or "array"
            if key in self.arrays:
                n = 2
                while f"{key}-{n}" in self.arrays:
                    n += 1
                key = f"{key}-{n}"
            self.arrays[key] = value
            self._array_keys[id(original)] = key
            self._alive.append(original)
        node = {
            "type": "array",
            "key": key,
            "dtype": value.dtype.str,
            "shape": list(value.shape),
            "fortran_order": bool(value.flags.f_contiguous and not value.flags.c_contiguous),
        }
        if as_object:
            node["object"] = True
        return node

    @staticmethod
    def _strings(value, path):
        """An object array of strings (class labels), as a unicode array."""
        if not all(type(v) in (str, np.str_) for v in value.flat):
            raise TypeError(
                f"cannot save the object array at {path}: the format stores arrays of "
                "booleans, numbers and strings only"
            )
        strings = value.astype(str) if value.size else np.zeros(value.shape, dtype="<U1")
        if not np.array_equal(strings.astype(object), value):
            raise TypeError(f"cannot save the strings at {path}: they end with NUL characters")
        return strings

    def _scalar(self, value, path):
        kind, dtype = value.dtype.kind, value.dtype
        if kind == "b":
            item = bool(value)
        elif kind in "iu":
            item = int(value)
        elif kind == "f" and dtype.itemsize <= 8:
            item = self.node(float(value), path)
        elif kind == "U":
            item = str(value)
        else:
            raise TypeError(f"cannot save the NumPy {dtype} scalar at {path}")
        return {"type": "scalar", "dtype": dtype.str, "value": item}

    def _sparse(self, value, path, depth):
        if value.format not in _SPARSE_FIELDS or value.ndim != 2:
            raise TypeError(
                f"cannot save the {value.format} sparse matrix at {path}: the format stores "
                "CSR, CSC and COO matrices"
            )
        node = {
            "format": value.format,
            "container": "matrix" if isinstance(value, sp.spmatrix) else "array",
            "shape": [int(n) for n in value.shape],
        }
        for field in _SPARSE_FIELDS[value.format]:
            node[field] = self._array(np.asarray(getattr(value, field)), _join(path, field))
        return node

    def _seed_sequence(self, bit_generator, path, depth):
        seq = getattr(bit_generator, "seed_seq", None)
        if not isinstance(seq, np.random.SeedSequence):
            return None
        return {
            "entropy": self.node(seq.entropy, _join(path, "entropy"), depth),
            "spawn_key": [int(k) for k in seq.spawn_key],
            "pool_size": int(seq.pool_size),
            "n_children_spawned": int(seq.n_children_spawned),
        }

    def _object(self, value, path, depth):
        cls = type(value)
        if cls not in self.allowed:
            raise _cannot_save(value, path)
        name, kind = self.allowed[cls]
        if kind == "reduce":
            reduced = value.__reduce__()
            if (
                not isinstance(reduced, tuple)
                or not 2 <= len(reduced) <= 3
                or reduced[0] is not cls
                or not isinstance(reduced[1], tuple)
            ):
                raise _cannot_save(value, path)
            state = reduced[2] if len(reduced) == 3 else None
            return {
                "type": "reduce",
                "class": name,
                "args": [self.node(a, _join(path, f"args.{i}"), depth)
                         for i, a in enumerate(reduced[1])],
                "state": self.node(state, _join(path, "state"), depth),
            }
        reduced = value.__reduce_ex__(4)
        if (
            reduced[0] is not copyreg.__newobj__
            or reduced[1] != (cls,)
            or any(part is not None for part in reduced[3:])
        ):
            raise _cannot_save(value, path)
        state = {} if reduced[2] is None else reduced[2]
        if type(state) is not dict or not all(type(k) is str for k in state):
            raise _cannot_save(value, path)
        state = dict(state)
        state.pop(VERSION_KEY, None)
        node = {"type": kind, "class": name}
        if kind == "estimator":
            params = {k: state.pop(k) for k in cls._get_param_names() if k in state}
            node["params"] = {k: self.node(v, _join(path, k), depth) for k, v in params.items()}
        node["state"] = {k: self.node(v, _join(path, k), depth) for k, v in state.items()}
        return node


def _write_zip(file, metadata, arrays, compress):
    compression = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(file, mode="w", compression=compression, allowZip64=True) as archive:
        archive.writestr(_METADATA, metadata)
        for key, array in arrays.items():
            with archive.open(f"{key}.npy", mode="w", force_zip64=True) as member:
                np.lib.format.write_array(member, array, allow_pickle=False)


def save(estimator, path, *, compress=False):
    """Save a sksketch estimator to one ``.npz`` file, as data only (no pickle).

    The file holds every array of the estimator's state as a ``.npy`` member
    and a JSON member ``metadata.json`` with everything else (format version,
    sksketch version, class, parameters, the state's structure). Unlike a
    pickle, loading it with :func:`load` cannot run code; see
    :ref:`safe_persistence`.

    Parameters
    ----------
    estimator : estimator
        A fitted or unfitted sksketch estimator or sampler, holding only
        objects of the classes allowed in model files (see
        :ref:`safe_persistence`).
    path : str, path-like or binary file object
        Where to write; the file is overwritten. ``.npz`` is the customary
        extension (none is added).
    compress : bool, default=False
        Deflate the members. Smaller files, slower saving and loading; hash
        tables with many empty buckets shrink the most.

    Raises
    ------
    TypeError
        The state holds something the format cannot store as data, such as
        a wrapped estimator of a class not allowed in model files or a
        Python object array; the message names where it is. Such models
        need pickle or joblib (trusted files only) or ``skops.io``.

    See Also
    --------
    load : Load a model saved by this function.

    Examples
    --------
    >>> import os, tempfile
    >>> from sklearn.datasets import make_classification
    >>> import sksketch
    >>> X, y = make_classification(200, 20, n_informative=6, n_classes=3, random_state=0)
    >>> clf = sksketch.SLIDEClassifier(hidden_layer_size=16, n_tables=4, n_buckets_log2=8,
    ...                                max_iter=1, random_state=0).fit(X, y)
    >>> folder = tempfile.TemporaryDirectory()
    >>> path = os.path.join(folder.name, "model.npz")
    >>> sksketch.save(clf, path)
    >>> (sksketch.load(path).predict(X) == clf.predict(X)).all()
    np.True_
    >>> folder.cleanup()
    """
    entry = allowed_classes().get(class_name(type(estimator)))
    if entry is None or entry.cls is not type(estimator) or entry.check_version is None:
        raise _cannot_save(estimator, "")
    writer = _Writer()
    root = writer.node(estimator, "")
    metadata = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "sksketch_version": __version__,
        "estimator": root["class"],
        "params": root["params"],
        "state": root["state"],
    }
    text = json.dumps(metadata, allow_nan=False, separators=(",", ":")).encode("utf-8")
    if hasattr(path, "write"):
        _write_zip(path, text, writer.arrays, compress)
    else:
        with open(path, "wb") as file:
            _write_zip(file, text, writer.arrays, compress)


# ------------------------------------------------------------------ reading


def _expect(condition, message):
    if not condition:
        raise _FormatError(message)


def _fields(node, path, required, optional=()):
    missing = [f for f in required if f not in node]
    extra = [f for f in node if f not in required and f not in optional and f != "type"]
    _expect(not missing, f"{path or 'the state'}: {node.get('type')} node lacks {missing}")
    _expect(not extra, f"{path or 'the state'}: {node.get('type')} node has unknown fields {extra}")


def _reject_constant(name):
    raise _FormatError(f"the metadata holds the non-standard JSON constant {name}")


class _Reader:
    """Rebuilds a state tree from JSON nodes and the archive's arrays."""

    def __init__(self, npz):
        self.npz = npz
        self.allowed = allowed_classes()
        self.arrays = {}
        self.native = {}
        self.objects = {}

    def node(self, node, path, depth=0):
        _expect(depth <= _MAX_DEPTH, f"the state is nested more than {_MAX_DEPTH} levels deep")
        if node is None or type(node) in (bool, int, str, float):
            return node
        _expect(type(node) is dict and type(node.get("type")) is str,
                f"{path or 'the state'}: malformed node {node!r:.80}")
        handler = getattr(self, f"_node_{node['type']}", None)
        _expect(handler is not None, f"{path or 'the state'}: unknown node type {node['type']!r}")
        return handler(node, path, depth + 1)

    def _register(self, node, obj, path):
        node_id = node["id"]
        _expect(is_int(node_id) and node_id not in self.objects,
                f"{path}: object id {node_id!r} is not a new integer")
        self.objects[node_id] = obj

    def _node_ref(self, node, path, depth):
        _fields(node, path, ("id",))
        _expect(type(node["id"]) is int and node["id"] in self.objects,
                f"{path}: reference to object {node['id']!r}, which no earlier node defines")
        return self.objects[node["id"]]

    def _node_float(self, node, path, depth):
        _fields(node, path, ("value",))
        _expect(node["value"] in ("nan", "inf", "-inf"), f"{path}: bad float {node['value']!r}")
        return float(node["value"])

    def _node_list(self, node, path, depth):
        _fields(node, path, ("items",))
        _expect(type(node["items"]) is list, f"{path}: items must be a JSON list")
        return [self.node(v, _join(path, i), depth) for i, v in enumerate(node["items"])]

    def _node_tuple(self, node, path, depth):
        return tuple(self._node_list(node, path, depth))

    def _node_dict(self, node, path, depth):
        if "items" in node:
            _fields(node, path, ("items",))
            _expect(type(node["items"]) is dict, f"{path}: items must be a JSON object")
            return {k: self.node(v, _join(path, k), depth) for k, v in node["items"].items()}
        _fields(node, path, ("keys", "values"))
        keys, values = node["keys"], node["values"]
        _expect(type(keys) is list and type(values) is list and len(keys) == len(values),
                f"{path}: keys and values must be JSON lists of one length")
        out = {}
        for k, v in zip(keys, values, strict=True):
            key = self.node(k, path, depth)
            try:
                out[key] = self.node(v, _join(path, key), depth)
            except TypeError:
                raise _FormatError(f"{path}: unhashable dict key") from None
        return out

    def _node_scalar(self, node, path, depth):
        _fields(node, path, ("dtype", "value"))
        dtype = self._dtype(node["dtype"], path)
        _expect(dtype.kind in "biufU" and not (dtype.kind == "f" and dtype.itemsize > 8),
                f"{path}: scalars of dtype {dtype} are not allowed")
        value = self.node(node["value"], path, depth)
        expected = {"b": bool, "i": int, "u": int, "f": float, "U": str}[dtype.kind]
        _expect(type(value) is expected or (expected is float and type(value) is int),
                f"{path}: a {dtype} scalar cannot hold {value!r:.40}")
        try:
            return dtype.type(value)
        except (OverflowError, ValueError) as exc:
            raise _FormatError(f"{path}: {value!r:.40} is not a {dtype} ({exc})") from None

    @staticmethod
    def _dtype(text, path):
        _expect(type(text) is str and len(text) <= 16, f"{path}: malformed dtype {text!r:.40}")
        try:
            return np.dtype(text)
        except (TypeError, ValueError):
            raise _FormatError(f"{path}: malformed dtype {text!r}") from None

    def _node_array(self, node, path, depth):
        _fields(node, path, ("key", "dtype", "shape", "fortran_order"), ("object",))
        key, shape = node["key"], node["shape"]
        _expect(type(key) is str and _KEY_PATTERN.fullmatch(key) is not None,
                f"{path}: malformed array key {key!r:.80}")
        dtype = self._dtype(node["dtype"], path)
        _expect(dtype.kind in _ARRAY_KINDS,
                f"array {key!r} is declared with dtype {dtype}; the format holds arrays of "
                "booleans, numbers and strings only")
        _expect(type(shape) is list and all(type(n) is int and n >= 0 for n in shape),
                f"array {key!r}: malformed shape {shape!r:.80}")
        _expect(type(node["fortran_order"]) is bool, f"array {key!r}: malformed fortran_order")
        as_object = node.get("object", False)
        _expect(type(as_object) is bool and (not as_object or dtype.kind == "U"),
                f"array {key!r}: malformed object flag")
        array = self._array(key)
        _expect(array.dtype.str == dtype.str,
                f"array {key!r} has dtype {array.dtype.str}, the metadata records {dtype.str}")
        _expect(list(array.shape) == shape,
                f"array {key!r} has shape {array.shape}, the metadata records {tuple(shape)}")
        fortran = bool(array.flags.f_contiguous and not array.flags.c_contiguous)
        _expect(fortran == node["fortran_order"],
                f"array {key!r}: memory order differs from the metadata")
        if key not in self.native:
            # arrays written on a machine of the other byte order load in this one's
            native = array if array.dtype.isnative else array.astype(array.dtype.newbyteorder("="))
            self.native[key] = native.astype(object) if as_object else native
        return self.native[key]

    def _array(self, key):
        if key in self.arrays:
            return self.arrays[key]
        member = f"{key}.npy"
        _expect(member in self.npz.zip.namelist(), f"array {key!r} is missing from the archive")
        try:
            array = self.npz[member]
        except ValueError as exc:
            if "allow_pickle" in str(exc):
                raise _FormatError(
                    f"array {key!r} holds Python objects, which a model file never contains"
                ) from None
            raise _FormatError(f"array {key!r} is unreadable ({exc})") from exc
        except Exception as exc:
            raise _FormatError(f"array {key!r} is unreadable ({type(exc).__name__}: {exc})") \
                from exc
        _expect(isinstance(array, np.ndarray), f"member {member!r} is not an array")
        _expect(array.dtype.kind in _ARRAY_KINDS,
                f"array {key!r} has dtype {array.dtype}; the format holds arrays of "
                "booleans, numbers and strings only")
        self.arrays[key] = array
        return array

    def _node_sparse(self, node, path, depth):
        fmt = node.get("format")
        _expect(fmt in _SPARSE_FIELDS, f"{path}: unknown sparse format {fmt!r:.20}")
        _fields(node, path, ("id", "format", "container", "shape", *_SPARSE_FIELDS[fmt]))
        _expect(node["container"] in ("matrix", "array"), f"{path}: malformed sparse container")
        shape = node["shape"]
        _expect(type(shape) is list and len(shape) == 2
                and all(type(n) is int and n >= 0 for n in shape),
                f"{path}: malformed sparse shape {shape!r:.40}")
        parts = []
        for field in _SPARSE_FIELDS[fmt]:
            part = node[field]
            _expect(type(part) is dict and part.get("type") == "array",
                    f"{path}.{field} must be an array node")
            parts.append(self._node_array(part, _join(path, field), depth))
        data, first, second = parts
        _expect(all(p.ndim == 1 for p in parts) and first.dtype.kind in "iu"
                and second.dtype.kind in "iu", f"{path}: malformed sparse arrays")
        kind = "matrix" if node["container"] == "matrix" else "array"
        try:
            if fmt == "coo":
                matrix = getattr(sp, f"coo_{kind}")((data, (first, second)), shape=tuple(shape))
            else:
                matrix = getattr(sp, f"{fmt}_{kind}")((data, first, second), shape=tuple(shape))
                matrix.check_format(full_check=True)
        except Exception as exc:
            raise _FormatError(f"{path}: inconsistent sparse matrix ({exc})") from None
        self._register(node, matrix, path)
        return matrix

    def _seed_sequence(self, node, path, depth):
        if node is None:
            return None
        _expect(type(node) is dict, f"{path}: malformed seed sequence")
        _fields(node, path, ("entropy", "spawn_key", "pool_size", "n_children_spawned"))
        entropy = self.node(node["entropy"], path, depth)
        spawn_key = node["spawn_key"]
        ok = (
            type(spawn_key) is list and all(type(k) is int and k >= 0 for k in spawn_key)
            and type(node["pool_size"]) is int and 4 <= node["pool_size"] <= 1 << 16
            and type(node["n_children_spawned"]) is int and node["n_children_spawned"] >= 0
        )
        _expect(ok, f"{path}: malformed seed sequence")
        try:
            return np.random.SeedSequence(
                entropy, spawn_key=tuple(spawn_key), pool_size=node["pool_size"],
                n_children_spawned=node["n_children_spawned"],
            )
        except Exception as exc:
            raise _FormatError(f"{path}: malformed seed sequence ({exc})") from None

    def _bit_generator(self, node, path, depth):
        _fields(node, path, ("id", "state", "seed_sequence"))
        state = self.node(node["state"], _join(path, "state"), depth)
        _expect(type(state) is dict and state.get("bit_generator") in _BIT_GENERATORS,
                f"{path}: unknown bit generator")
        seq = self._seed_sequence(node["seed_sequence"], path, depth)
        return state, getattr(np.random, state["bit_generator"])(seq)

    def _node_random_state(self, node, path, depth):
        state, bit_generator = self._bit_generator(node, path, depth)
        rng = np.random.RandomState(bit_generator)
        try:
            rng.set_state(state)
        except Exception as exc:
            raise _FormatError(f"{path}: invalid random state ({exc})") from None
        self._register(node, rng, path)
        return rng

    def _node_generator(self, node, path, depth):
        state, bit_generator = self._bit_generator(node, path, depth)
        try:
            bit_generator.state = state
        except Exception as exc:
            raise _FormatError(f"{path}: invalid generator state ({exc})") from None
        rng = np.random.Generator(bit_generator)
        self._register(node, rng, path)
        return rng

    def _entry(self, node, path, kind):
        name = node.get("class")
        _expect(type(name) is str and name in self.allowed,
                f"{path or 'the model'}: class {name!r:.120} is not one a model file may hold")
        entry = self.allowed[name]
        _expect(entry.kind == kind, f"{path or 'the model'}: {name} cannot be a {kind} node")
        return entry

    def _state_dict(self, value, path, depth, cls):
        _expect(type(value) is dict, f"{path or 'the model'}: the state must be a JSON object")
        out = {}
        for key, item in value.items():
            static = inspect.getattr_static(cls, key, None)
            _expect(
                key.isidentifier() and not key.startswith("__")
                and not callable(static) and not hasattr(static, "__get__"),
                f"{path or 'the model'}: {cls.__name__} cannot have an attribute {key!r:.80}",
            )
            out[key] = self.node(item, _join(path, key), depth)
        return out

    def _node_estimator(self, node, path, depth):
        _fields(node, path, ("id", "class", "params", "state"))
        entry = self._entry(node, path, "estimator")
        cls = entry.cls
        obj = cls.__new__(cls)
        self._register(node, obj, path)
        params = self._state_dict(node["params"], path, depth, cls)
        names = set(cls._get_param_names())
        unknown = sorted(set(params) - names)
        _expect(not unknown, f"{path or 'the model'}: {cls.__name__} has no parameters {unknown}")
        versioned = entry.check_version is not None
        missing = sorted(names - set(params))
        _expect(not versioned or not missing,
                f"{path or 'the model'}: {cls.__name__} parameters {missing} are missing")
        state = self._state_dict(node["state"], path, depth, cls)
        overlap = sorted(set(params) & set(state))
        _expect(not overlap, f"{path or 'the model'}: {overlap} given as parameters and state")
        state = {**params, **state}
        if versioned:
            # the file's version was checked once for the whole model
            state[VERSION_KEY] = __version__
        # a class that checks its own state does so here, as when it is unpickled
        self._set_state(obj, state, path)
        if hasattr(cls, "_parameter_constraints"):
            # the checks fit would make, made now
            try:
                obj._validate_params()
            except (TypeError, ValueError) as exc:
                raise _FormatError(f"{path or 'the model'}: {exc}") from None
        if entry.check is not None:
            entry.check(obj)
        return obj

    def _node_object(self, node, path, depth):
        _fields(node, path, ("id", "class", "state"))
        entry = self._entry(node, path, "object")
        obj = entry.cls.__new__(entry.cls)
        self._register(node, obj, path)
        self._set_state(obj, self._state_dict(node["state"], path, depth, entry.cls), path)
        if entry.check is not None:
            entry.check(obj)
        return obj

    @staticmethod
    def _set_state(obj, state, path):
        try:
            if hasattr(obj, "__setstate__"):
                obj.__setstate__(state)
            else:
                obj.__dict__.update(state)
        except StateError:
            raise
        except Exception as exc:
            raise _FormatError(
                f"{path or 'the model'}: {type(obj).__name__} rejects its state ({exc})"
            ) from exc

    def _node_reduce(self, node, path, depth):
        _fields(node, path, ("id", "class", "args", "state"))
        cls, _, precheck, check, _ = self._entry(node, path, "reduce")
        _expect(type(node["args"]) is list, f"{path}: args must be a JSON list")
        args = tuple(self.node(a, _join(path, f"args.{i}"), depth)
                     for i, a in enumerate(node["args"]))
        state = self.node(node["state"], _join(path, "state"), depth)
        if precheck is not None:
            precheck(args, state, path)
        try:
            obj = cls(*args)
            if state is not None:
                obj.__setstate__(state)
        except Exception as exc:
            raise _FormatError(f"{path}: {cls.__name__} rejects its state ({exc})") from exc
        if check is not None:
            check(obj)
        self._register(node, obj, path)
        return obj

    def unexpected_members(self):
        expected = {_METADATA} | {f"{key}.npy" for key in self.arrays}
        return sorted(set(self.npz.zip.namelist()) - expected)


def _describe(file):
    if hasattr(file, "read"):
        return repr(getattr(file, "name", "<file object>"))
    return repr(str(file))


def _read_metadata(npz):
    names = npz.zip.namelist()
    _expect(len(names) == len(set(names)), "the archive repeats member names")
    _expect(_METADATA in names, f"the archive has no {_METADATA}: not an sksketch model file")
    try:
        text = npz.zip.read(_METADATA)
        metadata = json.loads(text.decode("utf-8"), parse_constant=_reject_constant)
    except _FormatError:
        raise
    except Exception as exc:
        raise _FormatError(f"{_METADATA} is unreadable ({type(exc).__name__}: {exc})") from None
    _expect(type(metadata) is dict, f"{_METADATA} must hold a JSON object")
    _expect(metadata.get("format") == FORMAT_NAME,
            f"not an sksketch model file (format {metadata.get('format')!r:.80})")
    version = metadata.get("format_version")
    _expect(type(version) is int and version >= 1, f"malformed format version {version!r:.40}")
    _expect(version <= FORMAT_VERSION,
            f"format version {version} is newer than this release reads ({FORMAT_VERSION}); "
            "upgrade sksketch to load it")
    expected = {"format", "format_version", "sksketch_version", "estimator", "params", "state"}
    _expect(set(metadata) == expected,
            f"{_METADATA} must have exactly the fields {sorted(expected)}")
    return metadata


def _load_npz(file):
    start = file.tell() if hasattr(file, "tell") else 0
    magic = file.read(4)
    _expect(len(magic) > 0, "the file is empty")
    _expect(magic == b"PK\x03\x04", "not an sksketch model file (not a zip archive)")
    file.seek(start)
    try:
        return np.load(file, allow_pickle=False)
    except Exception as exc:
        raise _FormatError(
            f"not a readable zip archive, the file may be truncated or corrupt "
            f"({type(exc).__name__}: {exc})"
        ) from None


def load(path):
    """Load a model saved by :func:`save`, without unpickling anything.

    Only classes of an allowlist are rebuilt, from arrays read with
    ``np.load(..., allow_pickle=False)`` and JSON; the rebuilt model is
    checked (shapes that must agree, ids in range) before it is returned.

    Parameters
    ----------
    path : str, path-like or binary file object
        A file written by :func:`save`.

    Returns
    -------
    estimator : estimator
        The saved estimator, fitted if it was: it predicts and keeps
        training (``partial_fit``) exactly as the saved one would.

    Raises
    ------
    ValueError
        The file is not a model file, is truncated or corrupt, holds a class
        outside the allowlist or arrays that disagree with the metadata or
        with each other; the message names the file and the fault.
    sksketch.base.IncompatibleVersionError
        The file was written by a sksketch release of another ``major.minor``
        series (a :class:`ValueError` too; see :ref:`persistence`).

    See Also
    --------
    save : Write a model file.

    Examples
    --------
    >>> import io
    >>> from sklearn.datasets import make_classification
    >>> import sksketch
    >>> X, y = make_classification(200, 20, n_informative=6, n_classes=3, random_state=0)
    >>> clf = sksketch.ZeroShotSoftLabelClassifier(hidden_layer_sizes=(16,), max_iter=1,
    ...                                            random_state=0).fit(X, y)
    >>> buffer = io.BytesIO()
    >>> sksketch.save(clf, buffer)
    >>> _ = buffer.seek(0)
    >>> loaded = sksketch.load(buffer)
    >>> type(loaded).__name__, (loaded.predict_proba(X) == clf.predict_proba(X)).all()
    ('ZeroShotSoftLabelClassifier', np.True_)
    """
    name = _describe(path)
    try:
        if hasattr(path, "read"):
            return _load(path, name)
        with open(path, "rb") as file:
            return _load(file, name)
    except StateError as exc:
        raise ValueError(f"Cannot load {name}: {exc}") from exc.__cause__


def _load(file, name):
    with _load_npz(file) as npz:
        metadata = _read_metadata(npz)
        allowed = allowed_classes()
        cls_name = metadata["estimator"]
        _expect(type(cls_name) is str and cls_name in allowed
                and allowed[cls_name].check_version is not None,
                f"class {cls_name!r:.120} is not one a model file may hold")
        saved = metadata["sksketch_version"]
        allowed[cls_name].check_version(saved if type(saved) is str else None)
        reader = _Reader(npz)
        root = {"type": "estimator", "id": 0, "class": cls_name,
                "params": metadata["params"], "state": metadata["state"]}
        estimator = reader.node(root, "")
        extra = reader.unexpected_members()
        _expect(not extra, f"the archive holds members no node refers to: {extra[:5]}")
    return estimator
