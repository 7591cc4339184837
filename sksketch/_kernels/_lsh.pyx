"""Locality-sensitive hash tables over the rows of a dense matrix.

Two families:

* DWTA (densified winner-take-all): each hash reads ``bin_size`` coordinates
  (a slice of random permutations of the dimensions) and returns the position
  of the largest non-zero one; a bin with only zeros borrows the code of
  another bin chosen by a seeded probe sequence (densification).
* SimHash (signed random projections): one bit per hash, the sign of a sparse
  +-1 projection over ``projection_nnz`` random coordinates.

``n_hashes_per_table`` codes are packed into one bucket key per table
(``bits_per_hash`` bits each); keys wider than ``n_buckets_log2`` bits are
folded by a mixing hash. A table is stored compactly, as CSR: bucket offsets
plus item ids, and rebuilt from scratch on every rehash. A bucket keeps at most
``bucket_capacity`` ids: with ``policy="fifo"`` the last ones inserted in item
order (as a FIFO bucket would), with ``policy="reservoir"`` a uniform random
subset drawn anew at each rebuild.
"""

from collections import namedtuple

import numpy as np

cimport cython
from cython.parallel cimport parallel, prange
from libc.stdint cimport int32_t, int64_t, uint32_t, uint64_t
from libc.stdlib cimport free, malloc

from ._random cimport mix64

FAMILIES = ("dwta", "simhash")
POLICIES = ("fifo", "reservoir")
DWTA_BIN_SIZE = 8
# probes an empty DWTA bin makes before it settles for code 0
cdef enum:
    DENSIFY_ATTEMPTS = 100


def _n_bits(int n):
    """Bits needed to store a value in [0, n)."""
    cdef int bits = 0
    while (1 << bits) < n:
        bits += 1
    return bits


TableGeometry = namedtuple(
    "TableGeometry",
    "bin_size bits_per_hash projection_nnz n_buckets_log2 n_coords n_signs",
)
TableGeometry.__doc__ = """Sizes of hash tables, from their parameters alone.

The one place they are derived: :class:`LSHTables` builds itself from it,
and model checks and memory estimates read it. ``n_buckets_log2`` is the
number of key bits actually used (at most the requested one), ``n_coords``
and ``n_signs`` the lengths of the hash functions' arrays.
"""


def table_geometry(family, dim, n_hashes_per_table, n_tables, n_buckets_log2):
    """:class:`TableGeometry` of tables with these parameters.

    ``dim`` is the length of the hashed vectors (the hidden width);
    ``n_buckets_log2`` the requested bound on the key bits.
    """
    n_hashes = n_hashes_per_table * n_tables
    if family == "dwta":
        bin_size = min(DWTA_BIN_SIZE, dim)
        bits, projection_nnz = max(1, _n_bits(bin_size)), 0
        n_coords, n_signs = n_hashes * bin_size, 0
    else:
        bin_size, bits, projection_nnz = 0, 1, max(1, dim // 3)
        n_coords = n_signs = n_hashes * projection_nnz
    return TableGeometry(
        bin_size, bits, projection_nnz, min(n_buckets_log2, bits * n_hashes_per_table),
        n_coords, n_signs,
    )


def table_nbytes(geometry, n_tables, n_items):
    """Bytes of tables of this geometry holding ``n_items`` ids per table."""
    return (
        4 * geometry.n_coords + 4 * geometry.n_signs
        + 4 * n_tables * ((1 << geometry.n_buckets_log2) + 1)
        + 4 * n_tables * n_items
    )


@cython.final
cdef class LSHTables:
    """Hash tables over the rows of a (n_items, dim) float32 matrix.

    Parameters
    ----------
    family : {"dwta", "simhash"}
    dim : int
        Length of the hashed vectors.
    n_hashes_per_table : int
        Codes concatenated into one bucket key (K).
    n_tables : int
        Number of tables (L).
    bucket_capacity : int
        Most ids a bucket keeps.
    policy : {"fifo", "reservoir"}
    n_buckets_log2 : int
        At most ``2**n_buckets_log2`` buckets per table.
    seed : int
        Seed of the hash functions and of the reservoir draws.
    """

    def __cinit__(self, family, int dim, int n_hashes_per_table, int n_tables,
                  int bucket_capacity=128, policy="fifo", int n_buckets_log2=18,
                  uint64_t seed=0):
        if family not in FAMILIES:
            raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")
        if policy not in POLICIES:
            raise ValueError(f"policy must be one of {POLICIES}, got {policy!r}")
        if dim < 1:
            raise ValueError(f"dim must be >= 1, got {dim}")
        if n_hashes_per_table < 1 or n_tables < 1:
            raise ValueError("n_hashes_per_table and n_tables must be >= 1")
        if bucket_capacity < 1:
            raise ValueError(f"bucket_capacity must be >= 1, got {bucket_capacity}")
        if not 1 <= n_buckets_log2 <= 24:
            raise ValueError(f"n_buckets_log2 must be in [1, 24], got {n_buckets_log2}")
        self.family = FAMILIES.index(family)
        self.policy = POLICIES.index(policy)
        self.dim = dim
        self.n_hashes_per_table = n_hashes_per_table
        self.n_tables = n_tables
        self.bucket_capacity = bucket_capacity
        self.seed = seed
        self.n_items = 0
        self.n_rebuilds = 0
        geometry = table_geometry(family, dim, n_hashes_per_table, n_tables, n_buckets_log2)
        self.bin_size = geometry.bin_size
        self.bits_per_hash = geometry.bits_per_hash
        self.projection_nnz = geometry.projection_nnz
        self.n_buckets_log2 = geometry.n_buckets_log2
        self._draw_functions(seed)
        self._set_tables(
            np.zeros(n_tables * (self.n_buckets + 1), dtype=np.int32),
            np.zeros(0, dtype=np.int32),
            0,
        )

    @property
    def n_buckets(self):
        return 1 << self.n_buckets_log2

    @property
    def n_hashes(self):
        return self.n_hashes_per_table * self.n_tables

    @property
    def family_name(self):
        return FAMILIES[self.family]

    @property
    def policy_name(self):
        return POLICIES[self.policy]

    def _draw_functions(self, uint64_t seed):
        rng = np.random.RandomState(seed % (2**32))
        n_hashes = self.n_hashes_per_table * self.n_tables
        if self.family == 0:
            need = n_hashes * self.bin_size
            n_perm = -(-need // self.dim)
            coords = np.concatenate([rng.permutation(self.dim) for _ in range(n_perm)])
            self._coords_array = coords[:need].astype(np.int32)
            self._signs_array = np.zeros(0, dtype=np.float32)
        else:
            p = self.projection_nnz
            coords = np.empty((n_hashes, p), dtype=np.int32)
            for h in range(n_hashes):
                coords[h] = rng.choice(self.dim, size=p, replace=False)
            self._coords_array = coords.ravel()
            self._signs_array = rng.choice(
                np.array([-1.0, 1.0], dtype=np.float32), size=n_hashes * p
            )
        self._coords = self._coords_array
        self._signs = self._signs_array
        self.seed = seed

    def _set_tables(self, offsets, ids, Py_ssize_t n_items):
        self._offsets_array = offsets
        self._ids_array = ids
        self._offsets = offsets
        self._ids = ids
        self.n_items = n_items

    cdef void hash_dense(self, const float *v, int32_t *codes, int32_t *keys) noexcept nogil:
        """Bucket key of `v` in each table; `codes` is scratch of n_hashes."""
        cdef int n_hashes = self.n_hashes_per_table * self.n_tables
        cdef int h, j, t, k, other, attempt, best_j
        cdef float best, x, s
        cdef uint64_t raw
        cdef int K = self.n_hashes_per_table
        cdef int raw_bits = self.bits_per_hash * K
        if self.family == 0:
            for h in range(n_hashes):
                best_j = -1
                best = 0
                for j in range(self.bin_size):
                    x = v[self._coords[h * self.bin_size + j]]
                    if x != 0 and (best_j < 0 or x > best):
                        best = x
                        best_j = j
                codes[h] = best_j
            # Densify: an empty bin takes the code of the first non-empty bin on
            # its own seeded probe sequence, so equal inputs still collide.
            for h in range(n_hashes):
                if codes[h] >= 0:
                    continue
                for attempt in range(1, DENSIFY_ATTEMPTS + 1):
                    other = <int>(mix64(self.seed ^ ((<uint64_t>h << 20) + attempt)) % n_hashes)
                    if codes[other] >= 0:
                        codes[h] = -2 - codes[other]
                        break
            for h in range(n_hashes):
                if codes[h] <= -2:
                    codes[h] = -2 - codes[h]
                elif codes[h] < 0:
                    codes[h] = 0
        else:
            for h in range(n_hashes):
                s = 0
                for j in range(self.projection_nnz):
                    s = s + self._signs[h * self.projection_nnz + j] * v[
                        self._coords[h * self.projection_nnz + j]]
                codes[h] = 1 if s >= 0 else 0
        for t in range(self.n_tables):
            raw = 0
            for k in range(K):
                raw = (raw << self.bits_per_hash) | <uint64_t>codes[t * K + k]
            if raw_bits > self.n_buckets_log2:
                raw = mix64(raw ^ (<uint64_t>t << 40)) >> (64 - self.n_buckets_log2)
            keys[t] = <int32_t>raw

    def hash(self, const float[:, ::1] X, int n_threads=1):
        """Bucket keys of each row of X, shape (n_rows, n_tables), int32."""
        if X.shape[1] != self.dim:
            raise ValueError(f"X has {X.shape[1]} columns, the tables hash {self.dim}")
        keys = np.empty((X.shape[0], self.n_tables), dtype=np.int32)
        cdef int32_t[:, ::1] keys_view = keys
        self._hash_rows(X, keys_view, n_threads)
        return keys

    def codes(self, const float[:, ::1] X, int n_threads=1):
        """The individual hash codes of each row of X, shape (n_rows, n_hashes).

        Code ``t * n_hashes_per_table + k`` is the k-th code of table t: two
        vectors collide in table t when its ``n_hashes_per_table`` codes all
        agree. The share of agreeing codes estimates the family's collision
        probability of the two vectors.
        """
        if X.shape[1] != self.dim:
            raise ValueError(f"X has {X.shape[1]} columns, the tables hash {self.dim}")
        cdef Py_ssize_t i, n = X.shape[0]
        cdef int n_hashes = self.n_hashes_per_table * self.n_tables
        codes = np.empty((n, n_hashes), dtype=np.int32)
        cdef int32_t[:, ::1] codes_view = codes
        cdef int32_t *keys
        if n == 0:
            return codes
        with nogil, parallel(num_threads=n_threads):
            keys = <int32_t *> malloc(self.n_tables * sizeof(int32_t))
            for i in prange(n, schedule="static"):
                self.hash_dense(&X[i, 0], &codes_view[i, 0], keys)
            free(keys)
        return codes

    cdef void _hash_rows(self, const float[:, ::1] X, int32_t[:, ::1] keys,
                         int n_threads) noexcept:
        cdef Py_ssize_t i, n = X.shape[0]
        cdef int32_t *codes
        cdef int n_hashes = self.n_hashes_per_table * self.n_tables
        if n == 0:
            return
        with nogil, parallel(num_threads=n_threads):
            codes = <int32_t *> malloc(n_hashes * sizeof(int32_t))
            for i in prange(n, schedule="static"):
                self.hash_dense(&X[i, 0], codes, &keys[i, 0])
            free(codes)

    def build(self, const float[:, ::1] items, int n_threads=1):
        """Clear the tables and insert every row of `items` (a rehash)."""
        if items.shape[1] != self.dim:
            raise ValueError(f"items has {items.shape[1]} columns, the tables hash {self.dim}")
        cdef Py_ssize_t n = items.shape[0]
        if n >= 2**31 - 1:
            raise ValueError("at most 2**31 - 2 items")
        keys = np.empty((n, self.n_tables), dtype=np.int32)
        cdef int32_t[:, ::1] keys_view = keys
        self._hash_rows(items, keys_view, n_threads)
        # Insertion order decides which ids a full bucket keeps: item order for
        # FIFO, a fresh random order for reservoir sampling.
        if self.policy == 1:
            rng = np.random.RandomState(mix64(self.seed + 1 + self.n_rebuilds) % (2**32))
            order = rng.permutation(n).astype(np.int32)
        else:
            order = np.arange(n - 1, -1, -1, dtype=np.int32)
        nb = self.n_buckets
        # _fill writes every offset: a rehash reuses the last build's array
        # (4 bytes per bucket and table, 52 MB with the defaults) in place
        offsets = self._offsets_array
        if not (isinstance(offsets, np.ndarray) and offsets.dtype == np.int32
                and offsets.shape == (self.n_tables * (nb + 1),)
                and offsets.flags.c_contiguous and offsets.flags.writeable):
            offsets = np.empty(self.n_tables * (nb + 1), dtype=np.int32)
        # zeros: the slots past a table's last bucket stay unused, but are pickled
        ids = np.zeros(self.n_tables * n, dtype=np.int32)
        self._fill(keys_view, order, offsets, ids, n_threads)
        self._set_tables(offsets, ids, n)
        self.n_rebuilds += 1

    cdef void _fill(self, const int32_t[:, ::1] keys, const int32_t[::1] order,
                    int32_t[::1] offsets, int32_t[::1] ids, int n_threads) noexcept:
        cdef Py_ssize_t n = keys.shape[0]
        cdef Py_ssize_t nb = (<Py_ssize_t>1) << self.n_buckets_log2
        cdef int cap = self.bucket_capacity
        cdef int t
        cdef Py_ssize_t b, i, item, total, pos
        cdef int32_t *fill
        cdef int32_t *off
        cdef int32_t key
        with nogil, parallel(num_threads=n_threads):
            fill = <int32_t *> malloc(nb * sizeof(int32_t))
            for t in prange(self.n_tables, schedule="dynamic"):
                off = &offsets[t * (nb + 1)]
                for b in range(nb):
                    fill[b] = 0
                for i in range(n):
                    fill[keys[i, t]] += 1
                total = 0
                for b in range(nb):
                    off[b] = <int32_t>total
                    total = total + (fill[b] if fill[b] < cap else cap)
                    fill[b] = 0
                off[nb] = <int32_t>total
                for i in range(n):
                    item = order[i]
                    key = keys[item, t]
                    if fill[key] < cap:
                        pos = t * n + off[key] + fill[key]
                        ids[pos] = <int32_t>item
                        fill[key] += 1
            free(fill)

    cdef Py_ssize_t query_into(
            self, const int32_t *keys, int first_table, int32_t *out, Py_ssize_t n_out,
            Py_ssize_t max_out, uint32_t *stamps, uint32_t stamp) noexcept nogil:
        """Append the ids in the query's buckets to `out`, without duplicates.

        Tables are visited cyclically from `first_table` until `max_out` ids are
        in `out`. An id is new when its stamp differs from `stamp`; the caller
        marks ids it already holds (e.g. the true labels) with the same stamp.
        Returns the new length of `out`.
        """
        cdef Py_ssize_t nb1 = ((<Py_ssize_t>1) << self.n_buckets_log2) + 1
        cdef int step, t
        cdef Py_ssize_t j, start, end, base
        cdef int32_t item
        if self.n_items == 0:
            return n_out
        for step in range(self.n_tables):
            if n_out >= max_out:
                break
            t = (first_table + step) % self.n_tables
            start = self._offsets[t * nb1 + keys[t]]
            end = self._offsets[t * nb1 + keys[t] + 1]
            base = t * self.n_items
            for j in range(start, end):
                item = self._ids[base + j]
                if stamps[item] != stamp:
                    stamps[item] = stamp
                    out[n_out] = item
                    n_out += 1
                    if n_out >= max_out:
                        break
        return n_out

    def query(self, const float[::1] v, max_candidates=None):
        """Ids in the buckets of `v` (all tables, in table order), unique."""
        if v.shape[0] != self.dim:
            raise ValueError(f"v has length {v.shape[0]}, the tables hash {self.dim}")
        cdef Py_ssize_t limit = self.n_items if max_candidates is None else max_candidates
        if limit < 0:
            raise ValueError("max_candidates must be >= 0")
        limit = min(limit, self.n_items)
        codes = np.empty(self.n_hashes, dtype=np.int32)
        keys = np.empty(self.n_tables, dtype=np.int32)
        out = np.empty(max(limit, 1), dtype=np.int32)
        stamps = np.zeros(max(self.n_items, 1), dtype=np.uint32)
        cdef int32_t[::1] codes_v = codes, keys_v = keys, out_v = out
        cdef uint32_t[::1] stamps_v = stamps
        cdef Py_ssize_t n
        self.hash_dense(&v[0], &codes_v[0], &keys_v[0])
        n = self.query_into(&keys_v[0], 0, &out_v[0], 0, limit, &stamps_v[0], 1)
        return out[:n].copy()

    def bucket(self, int table, int key):
        """Ids stored in one bucket."""
        if not 0 <= table < self.n_tables or not 0 <= key < self.n_buckets:
            raise ValueError("table or key out of range")
        nb1 = self.n_buckets + 1
        start = self._offsets_array[table * nb1 + key]
        end = self._offsets_array[table * nb1 + key + 1]
        base = table * self.n_items
        return self._ids_array[base + start: base + end].copy()

    def bucket_sizes(self):
        """Number of ids in every bucket, shape (n_tables, n_buckets)."""
        off = self._offsets_array.reshape(self.n_tables, self.n_buckets + 1)
        return np.diff(off, axis=1)

    def rebuild_functions(self, uint64_t seed):
        """Draw new hash functions; the tables must then be rebuilt."""
        self._draw_functions(seed)
        self._set_tables(
            np.zeros(self.n_tables * (self.n_buckets + 1), dtype=np.int32),
            np.zeros(0, dtype=np.int32),
            0,
        )

    @property
    def nbytes(self):
        """Memory held by the hash functions and the tables."""
        return sum(a.nbytes for a in (self._coords_array, self._signs_array,
                                       self._offsets_array, self._ids_array))

    def __reduce__(self):
        return (
            LSHTables,
            (FAMILIES[self.family], self.dim, self.n_hashes_per_table, self.n_tables,
             self.bucket_capacity, POLICIES[self.policy], self.n_buckets_log2, self.seed),
            self.__getstate__(),
        )

    def __getstate__(self):
        return {
            "coords": self._coords_array,
            "signs": self._signs_array,
            "offsets": self._offsets_array,
            "ids": self._ids_array,
            "n_items": self.n_items,
            "n_rebuilds": self.n_rebuilds,
        }

    def __setstate__(self, state):
        coords = np.ascontiguousarray(state["coords"], dtype=np.int32)
        signs = np.ascontiguousarray(state["signs"], dtype=np.float32)
        offsets = np.ascontiguousarray(state["offsets"], dtype=np.int32)
        ids = np.ascontiguousarray(state["ids"], dtype=np.int32)
        n_items = int(state["n_items"])
        # Never trust a state's arrays with unchecked indexing.
        cdef Py_ssize_t n_hashes = self.n_hashes_per_table * self.n_tables
        if coords.size != n_hashes * (self.bin_size if self.family == 0 else self.projection_nnz):
            raise ValueError("corrupt LSHTables state: hash function sizes do not match")
        if self.family != 0 and signs.size != coords.size:
            raise ValueError("corrupt LSHTables state: hash function sizes do not match")
        if coords.size and (coords.min() < 0 or coords.max() >= self.dim):
            raise ValueError("corrupt LSHTables state: coordinates out of range")
        if offsets.size != self.n_tables * (self.n_buckets + 1) or ids.size != self.n_tables * n_items:
            raise ValueError("corrupt LSHTables state: table sizes do not match")
        off = offsets.reshape(self.n_tables, self.n_buckets + 1)
        if np.any(np.diff(off, axis=1) < 0) or np.any(off[:, 0] != 0) or np.any(off[:, -1] > n_items):
            raise ValueError("corrupt LSHTables state: bucket offsets")
        if ids.size and (ids.min() < 0 or ids.max() >= n_items):
            raise ValueError("corrupt LSHTables state: ids out of range")
        self._coords_array, self._signs_array = coords, signs
        self._coords, self._signs = coords, signs
        self._set_tables(offsets, ids, n_items)
        self.n_rebuilds = int(state["n_rebuilds"])
