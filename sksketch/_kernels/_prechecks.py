"""Checks of a compiled object's saved state, made before it is built from a model file.

:func:`sksketch.load` builds ``LSHTables`` and ``NWSketch`` from the constructor
arguments and state of their ``__reduce__``. Their own ``__setstate__`` refuses
out-of-range ids and offsets; these checks come first and refuse arguments
and arrays of the wrong types or sizes with the file's path in the message,
before any array is allocated from the arguments.
"""

import numpy as np

from .._state import allow_in_model_files, expect, is_int
from ._lsh import FAMILIES, POLICIES, LSHTables, table_geometry
from ._nw_sketch import NWSketch

__all__ = []


def _precheck_lsh_tables(args, state, path):
    """Sizes of LSHTables's state against its constructor arguments, before building it."""
    where = f"{path}: LSHTables"
    expect(len(args) == 8, f"{where} takes 8 arguments")
    family, dim, n_hashes_per_table, n_tables, capacity, policy, n_buckets_log2, seed = args
    ints = (dim, n_hashes_per_table, n_tables, capacity, n_buckets_log2)
    expect(family in FAMILIES and policy in POLICIES and all(is_int(n) and n >= 1 for n in ints)
           and is_int(seed) and 0 <= seed < 2**64 and n_buckets_log2 <= 24
           and dim < 2**31 and capacity < 2**31 and n_hashes_per_table * n_tables < 2**31,
           f"{where}: invalid arguments {args!r:.200}")
    keys = {"coords", "signs", "offsets", "ids", "n_items", "n_rebuilds"}
    expect(type(state) is dict and set(state) == keys, f"{where}: the state must hold {keys}")
    geometry = table_geometry(family, dim, n_hashes_per_table, n_tables, n_buckets_log2)
    n_coords, n_signs = geometry.n_coords, geometry.n_signs
    n_buckets = 1 << geometry.n_buckets_log2
    n_items = state["n_items"]
    expect(is_int(n_items) and 0 <= n_items < 2**31 - 1 and is_int(state["n_rebuilds"])
           and state["n_rebuilds"] >= 0, f"{where}: invalid item count")
    sizes = {
        "coords": (np.int32, n_coords),
        "signs": (np.float32, n_signs),
        "offsets": (np.int32, n_tables * (n_buckets + 1)),
        "ids": (np.int32, n_tables * n_items),
    }
    for key, (dtype, size) in sizes.items():
        value = state[key]
        expect(isinstance(value, np.ndarray) and value.dtype == dtype and value.ndim == 1
               and value.size == size,
               f"{where}: {key} must be a 1-d {np.dtype(dtype)} array of {size} values")


def _precheck_nw_sketch(args, state, path):
    where = f"{path}: NWSketch"
    expect(len(args) == 6, f"{where} takes 6 arguments")
    n_features, n_rows, n_hash_bits, n_buckets, seed, dtype = args
    expect(all(is_int(n) and 1 <= n < 2**31 for n in (n_features, n_rows, n_hash_bits,
                                                        n_buckets))
           and is_int(seed) and 0 <= seed < 2**64 and dtype in ("float64", "float32"),
           f"{where}: invalid arguments {args!r:.200}")
    expect(type(state) is tuple and len(state) == 4, f"{where}: the state must be 4 values")
    sums, counts, total_sum, total_count = state
    for name, value in (("sums", sums), ("counts", counts)):
        expect(isinstance(value, np.ndarray) and value.dtype == dtype
               and value.shape == (n_rows, n_buckets),
               f"{where}: {name} must be a {dtype} array of shape ({n_rows}, {n_buckets})")
    expect(all(type(t) in (float, int) for t in (total_sum, total_count)),
           f"{where}: the totals must be numbers")


allow_in_model_files(LSHTables, kind="reduce", precheck=_precheck_lsh_tables)
allow_in_model_files(NWSketch, kind="reduce", precheck=_precheck_nw_sketch)
