# The compressed-index check shared by the kernels that read CSR rows:
#
#     from ._rows cimport csr_arrays_problem
from libc.stdint cimport int32_t


cdef inline int csr_arrays_problem(const int32_t *indptr, Py_ssize_t n,
                                   const int32_t *indices, Py_ssize_t n_indices,
                                   Py_ssize_t n_minor) noexcept nogil:
    """1 when ``indptr[0:n + 1]`` decreases somewhere, else 2 when one of
    ``indices[0:n_indices]`` lies outside ``[0, n_minor)``, else 0 (one pass,
    in C: numpy's reductions cost a single row's prediction more than its
    arithmetic)."""
    cdef Py_ssize_t i
    for i in range(n):
        if indptr[i + 1] < indptr[i]:
            return 1
    for i in range(n_indices):
        if indices[i] < 0 or indices[i] >= n_minor:
            return 2
    return 0
