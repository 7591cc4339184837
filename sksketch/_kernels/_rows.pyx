"""Row-wise passes over float32 training matrices: dense to CSR, checksums.

``dense_to_csr`` builds the CSR arrays of a C-contiguous float32 matrix in
two passes without the GIL (count the non-zeros of each row, then copy
them), where ``scipy.sparse.csr_matrix(X)`` goes through ``nonzero`` and a
COO matrix. ``dense_row_checksums`` and ``csr_row_checksums`` read a matrix
once and give, per row, the sum of its values, of their squares and of each
value times its column number plus one, accumulated in float64 in column
order: a content checksum of the rows that also sees values moved between
columns.

Arrays are validated by the caller (C-contiguous float32 rows; CSR with
int32 indices and indptr that describe the data); these functions trust
their inputs. Rows are independent, so results do not depend on the thread
count.
"""

cimport cython
from cython.parallel cimport prange
from libc.stdint cimport int32_t, int64_t


def dense_row_nonzeros(const float[:, ::1] X, int64_t[::1] counts, int n_threads=1):
    """``counts[i]`` = number of non-zero values of row ``i``.

    # IN: X (n_rows, n_cols); OUT: counts (n_rows,).
    """
    cdef Py_ssize_t i, j, n = X.shape[0], d = X.shape[1]
    cdef int64_t c
    with nogil:
        for i in prange(n, schedule="static", num_threads=n_threads):
            c = 0
            for j in range(d):
                c = c + (X[i, j] != 0)
            counts[i] = c


def dense_to_csr(const float[:, ::1] X, const int64_t[::1] indptr, int32_t[::1] indices,
                 float[::1] data, int n_threads=1):
    """Copy the non-zeros of each row ``i`` to ``indptr[i]:indptr[i + 1]``.

    # IN: X (n_rows, n_cols), indptr (n_rows + 1,) from dense_row_nonzeros;
    # OUT: indices, data (nnz,), columns in increasing order within a row.
    """
    cdef Py_ssize_t i, j, n = X.shape[0], d = X.shape[1]
    cdef int64_t p
    cdef float v
    with nogil:
        for i in prange(n, schedule="static", num_threads=n_threads):
            p = indptr[i]
            for j in range(d):
                v = X[i, j]
                if v != 0:
                    indices[p] = <int32_t>j
                    data[p] = v
                    p = p + 1


cdef inline void _row_checksums(const float *values, const int32_t *columns, Py_ssize_t n,
                                double *out) noexcept nogil:
    """Sum, sum of squares and sum of value * (column + 1) of one row's `n`
    values; `columns` NULL means the values are columns 0, 1, ... (dense)."""
    cdef Py_ssize_t p
    cdef double v, s = 0.0, q = 0.0, c = 0.0
    for p in range(n):
        v = values[p]
        s = s + v
        q = q + v * v
        c = c + v * ((columns[p] if columns != NULL else p) + 1)
    out[0] = s
    out[1] = q
    out[2] = c


def dense_row_checksums(const float[:, ::1] X, double[:, ::1] out, int n_threads=1):
    """``out[i]`` = (sum, sum of squares, sum of value * (column + 1)) of row ``i``.

    # IN: X (n_rows, n_cols); OUT: out (n_rows, 3).
    """
    cdef Py_ssize_t i, n = X.shape[0], d = X.shape[1]
    if n == 0:
        return
    if d == 0:
        out[:, :] = 0.0
        return
    with nogil:
        for i in prange(n, schedule="static", num_threads=n_threads):
            _row_checksums(&X[i, 0], NULL, d, &out[i, 0])


def csr_row_checksums(const float[::1] data, const int32_t[::1] indices,
                      const int32_t[::1] indptr, double[:, ::1] out, int n_threads=1):
    """As :func:`dense_row_checksums` for the rows of a CSR matrix.

    # IN: data, indices (nnz,), indptr (n_rows + 1,); OUT: out (n_rows, 3).
    """
    cdef Py_ssize_t i, n = indptr.shape[0] - 1
    cdef const float *values
    cdef const int32_t *columns
    if n <= 0:
        return
    if data.shape[0] == 0:
        out[:, :] = 0.0
        return
    values = &data[0]
    columns = &indices[0]
    with nogil:
        for i in prange(n, schedule="static", num_threads=n_threads):
            _row_checksums(values + indptr[i], columns + indptr[i], indptr[i + 1] - indptr[i],
                           &out[i, 0])


@cython.boundscheck(False)
@cython.wraparound(False)
def csr_index_problem(const int32_t[::1] indptr, const int32_t[::1] indices,
                      Py_ssize_t n_minor, Py_ssize_t n_data):
    """What is wrong with int32 compressed index arrays, checked in one pass.

    0 when ``indptr`` starts at 0, never decreases and ends within
    ``indices`` and ``n_data`` values, and the indices it spans lie in
    ``[0, n_minor)``; 1 when ``indptr`` is malformed (or empty), 2 when an
    index is out of range. (``check_sparse_indices``'s test, without numpy's
    per-call cost: a single row's prediction paid more for that than for its
    arithmetic.)
    """
    cdef Py_ssize_t n = indptr.shape[0] - 1, end
    cdef int problem
    if n < 0 or indptr[0] != 0:
        return 1
    end = indptr[n]
    if end > indices.shape[0] or end > n_data:
        return 1
    with nogil:
        problem = csr_arrays_problem(&indptr[0], n, &indices[0] if end else NULL, end,
                                     n_minor)
    return problem
