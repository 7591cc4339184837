"""Kernels of the retrieval index behind ``inference="lsh"``.

The index (:class:`sksketch._slide._retrieval.RetrievalIndex`) keeps ``T``
sign-random-projection (SimHash) tables over the output layer's rows with
their bias appended, ``[w_j, b_j]``, queried with ``[h, 1]``: the query's
angle to a key is what its logit ``h . w_j + b_j`` depends on beside the
key's norm. A table's key is ``K`` sign bits. Its buckets are stored like a
CSR matrix: the labels of bucket ``c`` of table ``t`` are
``ids[offsets[t * (2**K + 1) + c]:offsets[t * (2**K + 1) + c + 1]]`` (a
label at most once per table; a full bucket may leave some out).

``hash_keys`` hashes vectors; ``candidate_topk`` ranks a row's labels by
how many of its ``T`` buckets hold them (collision counts), keeps the
``table_budget`` most frequent, adds the ``head_budget`` labels the sparse
head scores highest and the first ``prior_budget`` labels of a fixed list
(the labels by bias), scores those candidates exactly (network, head and
label clusters, as ``full_scores`` does) and returns their top k.

These functions check the shapes of their arrays and trust the ids inside
them (the index's, which only the index builds). Each row is handled by one
thread on its own, so results do not depend on the thread count or on the
other rows of the call.
"""

import numpy as np

cimport cython
from cython.parallel cimport parallel, prange, threadid
from libc.math cimport INFINITY, sqrt
from libc.stdint cimport int32_t, int64_t, uint8_t, uint16_t, uint32_t
from libc.stdlib cimport free, malloc
from libc.string cimport memset

from ._simd cimport get_kernels, sks_kernels

# rows hashed together, and projections per slice of R they share
cdef enum:
    HASH_ROWS = 8
    HASH_PROJECTIONS = 128


@cython.boundscheck(False)
@cython.wraparound(False)
def hash_keys(const float[:, ::1] X, const float[::1] x_last, const float[:, ::1] R,
              const float[::1] r_last, const int32_t[:, ::1] bits, int n_threads):
    """SimHash keys ``(n, n_tables)`` (uint16) of the rows ``[X[i], x_last[i]]``.

    Projection ``p`` of a row is ``X[i] . R[p] + x_last[i] * r_last[p]``;
    bit ``b`` (value ``2**b``) of table ``t``'s key is set when projection
    ``bits[t, b]`` is at least 0. ``R`` is ``(n_projections, X.shape[1])``;
    ``bits`` of shape ``(n_tables, n_bits)`` holds projections below
    ``n_projections``, and ``n_bits <= 16``.
    """
    cdef const sks_kernels *K = get_kernels()
    cdef Py_ssize_t n = X.shape[0], H = X.shape[1], i, r, t, b, c, m, blk
    cdef Py_ssize_t n_proj = R.shape[0], n_tables = bits.shape[0], n_bits = bits.shape[1]
    cdef Py_ssize_t n_blocks = (n + HASH_ROWS - 1) // HASH_ROWS
    cdef float *dots
    cdef float *d
    cdef uint32_t key
    if R.shape[1] != H or r_last.shape[0] != n_proj or x_last.shape[0] != n:
        raise ValueError("X, x_last, R and r_last do not match")
    if n_bits > 16 or (bits.size and (np.min(bits) < 0 or np.max(bits) >= n_proj)):
        raise ValueError(f"bits must hold at most 16 projections of [0, {n_proj}) per table")
    keys = np.empty((n, n_tables), dtype=np.uint16)
    if n == 0:
        return keys
    cdef uint16_t[:, ::1] kv = keys
    all_rows = np.arange(n_proj, dtype=np.int32)
    cdef const int32_t[::1] ar = all_rows
    with nogil, parallel(num_threads=max(1, n_threads)):
        dots = <float *> malloc(HASH_ROWS * n_proj * sizeof(float))
        for blk in prange(n_blocks, schedule="static"):
            # a slice of R at a time for a few rows, so the slice is read
            # from cache; each dot is the same call whatever the blocking
            c = 0
            while c < n_proj:
                m = min(<Py_ssize_t>HASH_PROJECTIONS, n_proj - c)
                for r in range(min(<Py_ssize_t>HASH_ROWS, n - blk * HASH_ROWS)):
                    i = blk * HASH_ROWS + r
                    K.gather_dot(&X[i, 0], &R[0, 0], H, &ar[c], m, H, &dots[r * n_proj + c])
                c = c + m
            for r in range(min(<Py_ssize_t>HASH_ROWS, n - blk * HASH_ROWS)):
                i = blk * HASH_ROWS + r
                d = &dots[r * n_proj]
                for b in range(n_proj):
                    d[b] = d[b] + x_last[i] * r_last[b]
                for t in range(n_tables):
                    key = 0
                    for b in range(n_bits):
                        if d[bits[t, b]] >= 0:
                            key = key | (<uint32_t>1 << b)
                    kv[i, t] = <uint16_t>key
        free(dots)
    return keys


cdef inline void _add(int32_t j, int32_t *cand, Py_ssize_t *n_cand,
                      uint8_t *is_cand) noexcept nogil:
    if not is_cand[j]:
        is_cand[j] = 1
        cand[n_cand[0]] = j
        n_cand[0] += 1


@cython.boundscheck(False)
@cython.wraparound(False)
def candidate_topk(const uint16_t[:, ::1] keys, const int64_t[::1] offsets,
                   const int32_t[::1] ids, Py_ssize_t n_buckets,
                   const float[:, ::1] hidden, const float[:, ::1] W2, const float[::1] b2,
                   const int32_t[::1] X_indptr, const int32_t[::1] X_indices,
                   const float[::1] X_data, const int64_t[::1] indptr,
                   const int32_t[::1] labels, const float[::1] weights, float scale,
                   bint use_head, const float[:, ::1] cluster_terms,
                   const int32_t[::1] assign, bint use_clusters,
                   const int32_t[::1] fallback, Py_ssize_t k, Py_ssize_t table_budget,
                   Py_ssize_t head_budget, Py_ssize_t prior_budget, uint16_t[:, ::1] counts,
                   int32_t[:, ::1] touched, float[:, ::1] acc, uint8_t[:, ::1] reached_mark,
                   int32_t[:, ::1] reached, uint8_t[:, ::1] is_cand, int n_threads):
    """Top-k labels per row among its candidates, with their exact scores.

    Candidates: the ``table_budget`` labels found in most of the row's
    buckets (``keys[i, t]`` in table ``t``; ties in the order the tables meet
    them), the ``head_budget`` labels with the highest head scores (if
    ``use_head``), the first ``prior_budget`` labels of ``fallback`` and
    more of them while there are fewer than k.
    A candidate scores ``hidden[i] . W2[j] + b2[j]``, plus ``scale`` times
    the head's score (``s_j = sum_f x_f / |x| V[f, j]``), plus
    ``cluster_terms[i, assign[j]]`` with ``use_clusters``. Rows with fewer
    than k candidates end with ids -1 and scores -inf.

    Scratch per thread (at least ``n_threads`` rows): ``counts``, ``acc``,
    ``reached_mark`` and ``is_cand`` of ``n_labels`` zeros (left so);
    ``touched`` and ``reached`` of ``n_labels + 1`` values (the lists of
    labels met are written without a branch, one slot past their end).
    Needs ``1 <= k <= n_labels`` and fewer than ``2**16`` tables.

    Returns ids ``(n, k)`` int32, scores ``(n, k)`` float32 and the number of
    candidates of each row (int32).
    """
    cdef const sks_kernels *K = get_kernels()
    cdef Py_ssize_t n = hidden.shape[0], H = hidden.shape[1], L = W2.shape[0]
    cdef Py_ssize_t T = keys.shape[1]
    cdef Py_ssize_t i, t, p, q, r, c, tid, n_cand, n_t, n_r, base, n_top, take, total, cap
    cdef int bad
    cdef Py_ssize_t nt = max(1, n_threads)
    cdef int32_t j, f
    cdef float inv, xv, s
    cdef int32_t *cand
    cdef float *sc
    cdef int32_t *pos
    cdef float *topv
    cdef int64_t *hist
    cdef uint16_t *cnt
    cdef int32_t *tch
    cdef float *hacc
    cdef uint8_t *hm
    cdef int32_t *hr
    cdef uint8_t *st
    cdef double sq
    # shapes only: the ids inside the arrays are the caller's to keep in range
    if W2.shape[1] != H or b2.shape[0] != L or keys.shape[0] != n or X_indptr.shape[0] != n + 1:
        raise ValueError("hidden, W2, b2, keys and the rows of X do not match")
    if offsets.shape[0] != T * (n_buckets + 1) or ids.shape[0] > T * L or (
            T and offsets[T * (n_buckets + 1) - 1] > ids.shape[0]):
        raise ValueError("offsets and ids are not those of tables over W2")
    if not 0 <= k <= L:
        raise ValueError(f"k must be in [0, {L}]")
    if use_clusters and (assign.shape[0] != L or cluster_terms.shape[0] != n):
        raise ValueError("assign and cluster_terms do not match W2 and hidden")
    for name, a, width in (("counts", counts, L), ("touched", touched, L + 1),
                           ("acc", acc, L), ("reached_mark", reached_mark, L),
                           ("reached", reached, L + 1), ("is_cand", is_cand, L)):
        if a.shape[0] < nt or a.shape[1] < width:
            raise ValueError(f"{name} must have at least {nt} rows of {width}")
    idx = np.empty((n, k), dtype=np.int32)
    val = np.empty((n, k), dtype=np.float32)
    n_candidates = np.zeros(n, dtype=np.int32)
    if n == 0:
        return idx, val, n_candidates
    cdef int32_t[:, ::1] iv = idx
    cdef float[:, ::1] vv = val
    cdef int32_t[::1] ncv = n_candidates
    cap = (min(L, table_budget) + (min(L, head_budget) if use_head else 0)
           + min(L, max(prior_budget, 0)) + k)
    with nogil, parallel(num_threads=nt):
        cand = <int32_t *> malloc(cap * sizeof(int32_t))
        sc = <float *> malloc(max(cap, L if use_head else 0) * sizeof(float))
        pos = <int32_t *> malloc(max(cap, k) * sizeof(int32_t))
        topv = <float *> malloc(max(cap, k) * sizeof(float))
        hist = <int64_t *> malloc((T + 1) * sizeof(int64_t))
        for i in prange(n, schedule="dynamic", chunksize=4):
            tid = threadid()
            cnt = &counts[tid, 0]
            tch = &touched[tid, 0]
            hacc = &acc[tid, 0]
            hm = &reached_mark[tid, 0]
            hr = &reached[tid, 0]
            st = &is_cand[tid, 0]
            n_cand = 0
            # collision counts over the row's buckets
            n_t = 0
            for t in range(T):
                base = t * (n_buckets + 1) + keys[i, t]
                for p in range(offsets[base], offsets[base + 1]):
                    # branch-free: a label is listed the first time it is met
                    j = ids[p]
                    tch[n_t] = j
                    n_t = n_t + (cnt[j] == 0)
                    cnt[j] = cnt[j] + 1
            # the threshold count: labels above it all fit in the budget
            memset(hist, 0, (T + 1) * sizeof(int64_t))
            for r in range(n_t):
                hist[cnt[tch[r]]] += 1
            c = T
            total = 0
            while c >= 1 and total + hist[c] < table_budget:
                total = total + hist[c]
                c = c - 1
            take = table_budget - total  # labels at the threshold count to take
            for r in range(n_t):
                j = tch[r]
                if cnt[j] > c:
                    _add(j, cand, &n_cand, st)
                elif cnt[j] == c and take > 0:
                    _add(j, cand, &n_cand, st)
                    take = take - 1
                cnt[j] = 0
            # the sparse head's scores of the labels the row reaches
            n_r = 0
            if use_head:
                sq = 0
                for p in range(X_indptr[i], X_indptr[i + 1]):
                    sq = sq + <double>X_data[p] * X_data[p]
                inv = <float>(1.0 / sqrt(sq)) * scale if sq > 0 else 0
                for p in range(X_indptr[i], X_indptr[i + 1]):
                    f = X_indices[p]
                    xv = X_data[p] * inv
                    for q in range(indptr[f], indptr[f + 1]):
                        j = labels[q]
                        hr[n_r] = j
                        n_r = n_r + (hm[j] == 0)
                        hm[j] = 1
                        hacc[j] = hacc[j] + xv * weights[q]
                if n_r <= head_budget:
                    for r in range(n_r):
                        _add(hr[r], cand, &n_cand, st)
                else:
                    for r in range(n_r):
                        sc[r] = hacc[hr[r]]
                    n_top = K.topk(sc, n_r, head_budget, pos, topv)
                    for r in range(n_top):
                        _add(hr[pos[r]], cand, &n_cand, st)
            r = 0
            bad = 0
            while (n_cand < k or r < prior_budget) and r < fallback.shape[0]:
                # (checked as read: a row reads the first few hundred of them)
                if fallback[r] < 0 or fallback[r] >= L:
                    bad = 1
                    break
                _add(fallback[r], cand, &n_cand, st)
                r = r + 1
            ncv[i] = -1 if bad else <int32_t>n_cand
            # exact scores of the candidates
            K.gather_dot(&hidden[i, 0], &W2[0, 0], H, cand, n_cand, H, sc)
            for r in range(n_cand):
                j = cand[r]
                s = sc[r] + b2[j]
                if use_head and hm[j]:
                    s = s + hacc[j]
                if use_clusters:
                    s = s + cluster_terms[i, assign[j]]
                sc[r] = s
                st[j] = 0
            for r in range(n_r):
                hm[hr[r]] = 0
                hacc[hr[r]] = 0
            n_top = K.topk(sc, n_cand, k, pos, &vv[i, 0])
            for r in range(n_top):
                iv[i, r] = cand[pos[r]]
            for r in range(n_top, k):
                iv[i, r] = -1
                vv[i, r] = -INFINITY
        free(cand)
        free(sc)
        free(pos)
        free(topv)
        free(hist)
    if np.any(n_candidates < 0):
        raise ValueError(f"the fallback labels must be in [0, {L})")
    return idx, val, n_candidates
