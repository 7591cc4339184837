from libc.stdint cimport int32_t, uint32_t, uint64_t


cdef class LSHTables:
    cdef readonly int family
    cdef readonly int dim
    cdef readonly int n_hashes_per_table
    cdef readonly int n_tables
    cdef readonly int bucket_capacity
    cdef readonly int policy
    cdef readonly int bin_size
    cdef readonly int bits_per_hash
    cdef readonly int n_buckets_log2
    cdef readonly int projection_nnz
    cdef readonly uint64_t seed
    cdef readonly Py_ssize_t n_items
    cdef readonly Py_ssize_t n_rebuilds

    cdef object _coords_array
    cdef object _signs_array
    cdef object _offsets_array
    cdef object _ids_array
    cdef const int32_t[::1] _coords
    cdef const float[::1] _signs
    cdef const int32_t[::1] _offsets
    cdef const int32_t[::1] _ids

    cdef void _hash_rows(self, const float[:, ::1] X, int32_t[:, ::1] keys,
                         int n_threads) noexcept
    cdef void _fill(self, const int32_t[:, ::1] keys, const int32_t[::1] order,
                    int32_t[::1] offsets, int32_t[::1] ids, int n_threads) noexcept
    cdef void hash_dense(self, const float *v, int32_t *codes, int32_t *keys) noexcept nogil
    cdef Py_ssize_t query_into(
        self, const int32_t *keys, int first_table, int32_t *out, Py_ssize_t n_out,
        Py_ssize_t max_out, uint32_t *stamps, uint32_t stamp) noexcept nogil
