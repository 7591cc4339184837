"""Nadaraya-Watson loss sketch: SimHash buckets holding loss sums and counts.

``n_rows`` SimHash functions of ``n_hash_bits`` bits each send a row to one
bucket per sketch row; a bucket keeps a sum of inserted losses (``sums``) and
a count (``counts``), both ``(n_rows, n_buckets)`` arrays, float64 or float32.
A query divides the summed sums of its buckets by their summed counts, which
estimates the Nadaraya-Watson regression with the kernel
``(1 - angle / pi) ** n_hash_bits``.

Projection ``j`` of feature ``f`` is ``+1`` or ``-1`` by bit ``j % 64`` of
``mix64(mix64(seed) + f * n_words + j // 64)`` (``n_words`` 64-bit words cover
the ``n_rows * n_hash_bits`` projections): CSR rows hash on the fly without a
stored projection matrix (the SIMD primitive ``srp_accum``: float32 sums in
the order of the non-zeros, the same bits on every instruction set), dense
rows through the same matrix materialised once (a float32 BLAS product), so
both give the same buckets but for sums within rounding of zero. Codes are
folded modulo ``n_buckets``.
``sksketch.sampling._reference`` holds the NumPy reference of every kernel.
"""

import numpy as np

cimport cython
from cython cimport floating
from cython.parallel cimport parallel, prange
from libc.stdint cimport int32_t, int64_t, uint64_t
from libc.stdlib cimport free, malloc

from ._random cimport mix64
from ._simd cimport get_kernels, sks_kernels

# Bytes of projections per BLAS product when hashing dense input: the
# product is packed into codes while it is still in L2.
DENSE_CHUNK_BYTES = 1 << 19

def srp_signs(int n_features, int n_projections, uint64_t seed, int n_threads=1):
    """The +-1 projection matrix, float32 of shape (n_features, n_projections)."""
    out = np.empty((n_features, n_projections), dtype=np.float32)
    cdef float[:, ::1] view = out
    cdef int n_words = (n_projections + 63) // 64
    cdef uint64_t base = mix64(seed)
    cdef Py_ssize_t f
    cdef int j
    cdef uint64_t word
    with nogil:
        for f in prange(n_features, schedule="static", num_threads=n_threads):
            word = 0
            for j in range(n_projections):
                if j % 64 == 0:
                    word = mix64(base + <uint64_t>f * <uint64_t>n_words + <uint64_t>(j // 64))
                view[f, j] = 1.0 if (word >> (j % 64)) & 1 else -1.0
    return out


cdef inline int32_t _pack(const float *z, int row, int n_hash_bits,
                          int n_buckets) noexcept nogil:
    cdef int k
    cdef int64_t code = 0
    for k in range(n_hash_bits):
        # branch-free: the signs are coin flips a branch would mispredict
        code = code | ((<int64_t>(z[row * n_hash_bits + k] > 0)) << k)
    # folded only when there are fewer buckets than codes: a division is slow
    return <int32_t>(code % n_buckets if code >= n_buckets else code)


def pack_codes(const float[:, ::1] Z, int32_t[:, ::1] codes, int n_rows, int n_hash_bits,
               int n_buckets, int n_threads=1):
    """Buckets from projections: ``codes[i, r]`` from ``Z[i, r*K:(r+1)*K] > 0``.

    Parameters
    ----------
    Z : float32 (n_samples, n_rows * n_hash_bits)  # IN
    codes : int32 (n_samples, n_rows)  # OUT
    """
    cdef Py_ssize_t i, n = Z.shape[0]
    cdef int r, k
    cdef int64_t code
    with nogil:
        for i in prange(n, schedule="static", num_threads=n_threads):
            for r in range(n_rows):
                code = 0
                for k in range(n_hash_bits):
                    # branch-free: the signs are coin flips a branch would mispredict
                    code = code | ((<int64_t>(Z[i, r * n_hash_bits + k] > 0)) << k)
                codes[i, r] = <int32_t>(code % n_buckets if code >= n_buckets else code)


def hash_csr(const float[::1] data, const int32_t[::1] indices, const int32_t[::1] indptr,
             int32_t[:, ::1] codes, int n_rows, int n_hash_bits, int n_buckets,
             uint64_t seed, int n_threads=1):
    """Buckets of CSR rows, projecting each non-zero on the fly.

    Parameters
    ----------
    data, indices, indptr : CSR arrays of the rows, column ids checked
        against the sketch's n_features by the caller  # IN
    codes : int32 (n_samples, n_rows)  # OUT
    """
    cdef Py_ssize_t n = codes.shape[0]
    cdef int n_proj = n_rows * n_hash_bits
    cdef int n_words = (n_proj + 63) // 64
    cdef uint64_t base = mix64(seed)
    cdef const sks_kernels *K = get_kernels()
    cdef Py_ssize_t i
    cdef int j, r
    cdef float *acc = NULL
    # element 0 of an empty view does not exist; no row reads it then
    cdef const float *values = &data[0] if data.shape[0] else NULL
    cdef const int32_t *columns = &indices[0] if indices.shape[0] else NULL
    with nogil, parallel(num_threads=n_threads):
        acc = <float *>malloc(n_words * 64 * sizeof(float))
        if acc != NULL:
            for i in prange(n, schedule="static"):
                # every lane of the words, read or not: no arithmetic on
                # uninitialised memory
                for j in range(n_words * 64):
                    acc[j] = 0.0
                if indptr[i + 1] > indptr[i]:
                    K.srp_accum(columns + indptr[i], values + indptr[i],
                                indptr[i + 1] - indptr[i], base, n_words, acc)
                for r in range(n_rows):
                    codes[i, r] = _pack(acc, r, n_hash_bits, n_buckets)
            free(acc)


def insert(const int32_t[:, ::1] codes, const float[::1] losses, floating[:, ::1] sums,
           floating[:, ::1] counts, double decay=1.0, int n_threads=1):
    """Add a batch: ``sums[r, codes[i, r]] += losses[i]``, ``counts[...] += 1``.

    With ``decay < 1`` the sketch is first multiplied by `decay`. Each thread
    owns a contiguous range of sketch rows, so no bucket is shared, and walks
    the batch in order reading each row's codes contiguously: every bucket
    receives its additions in batch order, whatever the thread count.

    Parameters
    ----------
    codes : int32 (n_batch, n_rows), values in [0, n_buckets)  # IN
    losses : float32 (n_batch,)  # IN
    sums, counts : (n_rows, n_buckets)  # IN/OUT
    """
    cdef Py_ssize_t n = codes.shape[0]
    cdef int n_rows = sums.shape[0]
    cdef Py_ssize_t n_buckets = sums.shape[1]
    cdef int t, r, r0, r1
    cdef Py_ssize_t i, b
    cdef floating loss
    cdef floating *s
    cdef floating *c
    cdef const int32_t *code
    if n == 0 and decay == 1.0:
        return
    # at most one thread per sketch row: every thread's range is non-empty
    n_threads = max(1, min(n_threads, n_rows))
    with nogil:
        for t in prange(n_threads, schedule="static", num_threads=n_threads):
            r0 = t * n_rows // n_threads
            r1 = (t + 1) * n_rows // n_threads
            if decay != 1.0:
                for r in range(r0, r1):
                    for b in range(n_buckets):
                        sums[r, b] = <floating>(sums[r, b] * decay)
                        counts[r, b] = <floating>(counts[r, b] * decay)
            # the rows of this thread start at bucket 0 of row r0
            s = &sums[r0, 0]
            c = &counts[r0, 0]
            for i in range(n):
                loss = <floating>losses[i]
                code = &codes[i, r0]
                for r in range(r1 - r0):
                    b = r * n_buckets + code[r]
                    s[b] = s[b] + loss
                    c[b] = c[b] + 1


def query(const int32_t[:, ::1] codes, const floating[:, ::1] sums,
          const floating[:, ::1] counts, double prior, double[::1] out, int n_threads=1):
    """NW estimates: ``sum_r sums[r, codes[i, r]] / sum_r counts[r, codes[i, r]]``.

    Rows whose buckets are all empty get `prior`.

    Parameters
    ----------
    codes : int32 (n_samples, n_rows)  # IN
    sums, counts : (n_rows, n_buckets)  # IN
    out : float64 (n_samples,)  # OUT
    """
    cdef Py_ssize_t n = codes.shape[0]
    cdef int n_rows = sums.shape[0]
    cdef Py_ssize_t i, b
    cdef Py_ssize_t n_buckets = sums.shape[1]
    cdef int r
    cdef double num, den
    cdef const floating *s
    cdef const floating *c
    cdef const int32_t *code
    if n == 0:
        return
    s = &sums[0, 0]
    c = &counts[0, 0]
    with nogil:
        for i in prange(n, schedule="static", num_threads=n_threads):
            num = 0.0
            den = 0.0
            code = &codes[i, 0]
            for r in range(n_rows):
                b = r * n_buckets + code[r]
                num = num + s[b]
                den = den + c[b]
            out[i] = num / den if den > 0 else prior


@cython.final
cdef class NWSketch:
    """Sketch state (sums, counts) with its SimHash functions; picklable.

    Parameters
    ----------
    n_features : int
        Length of the hashed rows.
    n_rows : int
        Hash functions (sketch rows).
    n_hash_bits : int
        SimHash bits per function, at most 30.
    n_buckets : int
        Buckets per row, at most ``2 ** n_hash_bits``.
    seed : int
        Seeds the projections.
    dtype : {"float64", "float32"}
        Of the sums and counts.

    Attributes
    ----------
    sums, counts : ndarray of shape (n_rows, n_buckets)
    total_sum, total_count : float
        Decayed sum and count of every loss inserted (their ratio is the
        estimate of a row whose buckets are all empty).
    """

    cdef readonly int n_features
    cdef readonly int n_rows
    cdef readonly int n_hash_bits
    cdef readonly int n_buckets
    cdef readonly uint64_t seed
    cdef readonly object sums
    cdef readonly object counts
    cdef readonly double total_sum
    cdef readonly double total_count
    cdef object _signs

    def __cinit__(self, int n_features, int n_rows, int n_hash_bits, int n_buckets,
                  uint64_t seed, dtype="float64"):
        if n_features < 1 or n_rows < 1:
            raise ValueError("n_features and n_rows must be positive")
        if not 1 <= n_hash_bits <= 30:
            raise ValueError(f"n_hash_bits must be in [1, 30], got {n_hash_bits}")
        if not 1 <= n_buckets <= (1 << n_hash_bits):
            raise ValueError(f"n_buckets must be in [1, 2**n_hash_bits], got {n_buckets}")
        if dtype not in ("float64", "float32"):
            raise ValueError(f"dtype must be 'float64' or 'float32', got {dtype!r}")
        self.n_features = n_features
        self.n_rows = n_rows
        self.n_hash_bits = n_hash_bits
        self.n_buckets = n_buckets
        self.seed = seed
        self.sums = np.zeros((n_rows, n_buckets), dtype=dtype)
        self.counts = np.zeros((n_rows, n_buckets), dtype=dtype)
        self.total_sum = 0.0
        self.total_count = 0.0
        self._signs = None

    def __reduce__(self):
        return (
            NWSketch,
            (self.n_features, self.n_rows, self.n_hash_bits, self.n_buckets, self.seed,
             self.sums.dtype.name),
            (self.sums, self.counts, self.total_sum, self.total_count),
        )

    def __setstate__(self, state):
        sums, counts, total_sum, total_count = state
        if np.shape(sums) != (self.n_rows, self.n_buckets) or np.shape(counts) != np.shape(sums):
            raise ValueError("corrupt NWSketch state: sums and counts must have shape "
                             f"({self.n_rows}, {self.n_buckets})")
        self.sums = np.ascontiguousarray(sums, dtype=self.sums.dtype)
        self.counts = np.ascontiguousarray(counts, dtype=self.counts.dtype)
        self.total_sum = total_sum
        self.total_count = total_count

    def _codes_out(self, Py_ssize_t n, out):
        """`out` when it can take the codes of n rows, else a new array."""
        if (
            isinstance(out, np.ndarray) and out.dtype == np.int32 and out.ndim == 2
            and out.shape[0] == n and out.shape[1] == self.n_rows
            and out.flags.c_contiguous and out.flags.writeable
        ):
            return out
        return np.empty((n, self.n_rows), dtype=np.int32)

    def hash_dense(self, const float[:, ::1] X, int n_threads=1, out=None):
        """int32 buckets (n_samples, n_rows) of C-contiguous float32 rows.

        Written into `out` when it is an int32 C array of that shape (a
        buffer reused across calls: fresh pages are slow to fault in).
        """
        if X.shape[1] != self.n_features:
            raise ValueError(f"X has {X.shape[1]} features, the sketch {self.n_features}")
        if self._signs is None:
            self._signs = srp_signs(self.n_features, self.n_rows * self.n_hash_bits,
                                    self.seed, n_threads)
        n = X.shape[0]
        codes = self._codes_out(n, out)
        Xa = np.asarray(X)
        chunk = max(16, DENSE_CHUNK_BYTES // (4 * self.n_rows * self.n_hash_bits))
        for start in range(0, n, chunk):
            stop = min(n, start + chunk)
            Z = np.ascontiguousarray(Xa[start:stop] @ self._signs, dtype=np.float32)
            # on the calling thread: the BLAS threads of the product are still
            # spinning, and an OpenMP team beside them thrashes the cores
            pack_codes(Z, codes[start:stop], self.n_rows, self.n_hash_bits, self.n_buckets, 1)
        return codes

    def hash_csr(self, X, int n_threads=1, out=None):
        """int32 buckets (n_samples, n_rows) of a CSR float32 matrix, int32 indices.

        Written into `out` as in :meth:`hash_dense`.
        """
        if X.shape[1] != self.n_features:
            raise ValueError(f"X has {X.shape[1]} features, the sketch {self.n_features}")
        indices = np.asarray(X.indices)
        if indices.dtype != np.int32 or np.asarray(X.indptr).dtype != np.int32:
            raise TypeError("X must have int32 indices and indptr")
        if X.data.dtype != np.float32:
            raise TypeError("X must be float32")
        if indices.size and (indices.min() < 0 or indices.max() >= self.n_features):
            raise ValueError("X has column indices outside [0, n_features)")
        codes = self._codes_out(X.shape[0], out)
        hash_csr(X.data, indices, X.indptr, codes, self.n_rows, self.n_hash_bits,
                 self.n_buckets, self.seed, n_threads)
        return codes

    def _check_codes(self, codes):
        if codes.ndim != 2 or codes.shape[1] != self.n_rows:
            raise ValueError(f"codes must have shape (n, {self.n_rows}), got {codes.shape}")
        if codes.size and (codes.min() < 0 or codes.max() >= self.n_buckets):
            raise ValueError(f"codes must lie in [0, {self.n_buckets})")

    def insert(self, codes, losses, double decay=1.0, int n_threads=1, bint check_codes=True):
        """Add losses at the given buckets, after multiplying the sketch by `decay`.

        ``check_codes=False`` skips the range check of codes that this sketch's
        own ``hash_*`` produced (their shape is still checked).
        """
        codes = np.ascontiguousarray(codes, dtype=np.int32)
        losses = np.ascontiguousarray(losses, dtype=np.float32).reshape(-1)
        if check_codes:
            self._check_codes(codes)
        elif codes.ndim != 2 or codes.shape[1] != self.n_rows:
            raise ValueError(f"codes must have shape (n, {self.n_rows}), got {codes.shape}")
        if losses.shape[0] != codes.shape[0]:
            raise ValueError(f"{losses.shape[0]} losses for {codes.shape[0]} codes")
        if not np.all(np.isfinite(losses)):
            raise ValueError("losses must be finite")
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"decay must be in [0, 1], got {decay}")
        insert(codes, losses, self.sums, self.counts, decay, n_threads)
        self.total_sum = self.total_sum * decay + float(losses.sum(dtype=np.float64))
        self.total_count = self.total_count * decay + losses.shape[0]

    def scale(self, double factor):
        """Multiply the sketch (and the totals) by `factor` in [0, 1]."""
        if not 0.0 <= factor <= 1.0:
            raise ValueError(f"factor must be in [0, 1], got {factor}")
        self.sums *= factor
        self.counts *= factor
        self.total_sum *= factor
        self.total_count *= factor

    def query(self, codes, int n_threads=1):
        """float64 estimates for rows with the given buckets."""
        codes = np.ascontiguousarray(codes, dtype=np.int32)
        self._check_codes(codes)
        out = np.empty(codes.shape[0], dtype=np.float64)
        prior = self.total_sum / self.total_count if self.total_count > 0 else 0.0
        query(codes, self.sums, self.counts, prior, out, n_threads)
        return out
