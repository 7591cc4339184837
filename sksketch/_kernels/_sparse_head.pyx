"""Kernels of the sparse feature-to-label head.

The head scores label ``j`` of a row ``x`` as ``s_j = sum_f (x_f / |x|) V[f, j]``
over the (feature, label) pairs it keeps, stored by feature like a CSR
matrix: the pairs of feature ``f`` are ``labels[indptr[f]:indptr[f + 1]]``
with weights ``weights[...]``. A label no kept pair of the row reaches
scores exactly 0, so the softmax over all ``n_labels`` labels is exact at
the cost of the labels reached:
``Z = sum_{j reached} exp(s_j) + (n_labels - n_reached)``; so is the
one-vs-rest squared hinge, whose terms for unreached labels are constants.

Arrays are validated by the caller (CSR rows with int32 indices whose
features are below ``indptr.shape[0] - 1``, labels below ``n_labels``,
scratch of the documented sizes); these functions trust their inputs.
``add_scores`` treats rows independently, and ``train_batch`` sums its
rows' gradients in an order fixed by its scratch, so neither result depends
on the thread count.
"""

import numpy as np

cimport cython
from cython.parallel cimport parallel, prange, threadid
from libc.math cimport INFINITY, exp, expf, fabs, fabsf, log, log1p, sqrt, sqrtf
from libc.stdint cimport int32_t, int64_t, uint8_t, uint16_t
from libc.stdlib cimport free, malloc, qsort
from libc.string cimport memset

from ._adam cimport AdamStep, adam_constants
from ._simd cimport (SKS_SCREEN_ABS, get_kernels, get_screen_kernels, sks_bf16, sks_idx,
                     sks_kernels, sks_screen_kernels)


cdef inline float inv_row_norm(const int32_t[::1] indptr, const float[::1] data,
                               Py_ssize_t i) noexcept nogil:
    cdef double sq = 0.0
    cdef Py_ssize_t p
    for p in range(indptr[i], indptr[i + 1]):
        sq += <double>data[p] * data[p]
    return <float>(1.0 / sqrt(sq)) if sq > 0.0 else 0.0


@cython.boundscheck(False)
@cython.wraparound(False)
def add_scores(float[:, ::1] scores,
               const int32_t[::1] X_indptr, const int32_t[::1] X_indices,
               const float[::1] X_data,
               const int64_t[::1] indptr, const int32_t[::1] labels,
               const float[::1] weights, float scale, int n_threads):
    """``scores[i, j] += scale * s_j(row i)`` for every label the row reaches."""
    cdef Py_ssize_t i, p
    cdef int32_t f
    cdef float xv, inv
    with nogil:
        for i in prange(scores.shape[0], num_threads=n_threads, schedule="static"):
            inv = inv_row_norm(X_indptr, X_data, i) * scale
            for p in range(X_indptr[i], X_indptr[i + 1]):
                f = X_indices[p]
                xv = X_data[p] * inv
                scatter_axpy(&scores[i, 0], &labels[0], &weights[0], indptr[f], indptr[f + 1],
                             xv)


@cython.boundscheck(False)
@cython.wraparound(False)
cdef inline Py_ssize_t reached_scores(
        int64_t i, float inv,
        const int32_t[::1] X_indptr, const int32_t[::1] X_indices, const float[::1] X_data,
        const int64_t[::1] indptr, const int32_t[::1] labels, const float[::1] weights,
        float* acc, int32_t* mark, int32_t* reached, const sks_kernels* K) noexcept nogil:
    """Row i's scores (its values times ``inv``) of the labels it reaches, in ``acc``.

    The labels are marked in ``mark`` and listed in ``reached`` in the order
    they are first reached (returns how many); each score is the sum, in
    the row's feature order, of ``x_f * inv * V[f, j]`` (the variant's
    ``reach_accum``, a feature's pairs at a time: the same bits on every
    instruction set).
    """
    cdef Py_ssize_t p, n_reached = 0
    cdef int64_t lo, hi
    cdef int32_t f
    for p in range(X_indptr[i], X_indptr[i + 1]):
        f = X_indices[p]
        lo = indptr[f]
        hi = indptr[f + 1]
        if hi > lo:
            n_reached = K.reach_accum(&labels[lo], &weights[lo], hi - lo, X_data[p] * inv,
                                      acc, mark, reached, n_reached)
    return n_reached


cdef inline bint _first_higher(float v, int32_t j, float best, int32_t at) noexcept nogil:
    """Whether label j scoring v comes before label ``at`` scoring ``best`` in
    ``numpy.argmax``'s order: the higher value (NaN above all), then the lower id."""
    if best != best:
        return v != v and j < at
    if v != v:
        return True
    return v > best or (v == best and j < at)


@cython.boundscheck(False)
@cython.wraparound(False)
def top1_hits(const int32_t[::1] X_indptr, const int32_t[::1] X_indices,
              const float[::1] X_data,
              const int32_t[::1] Y_indptr, const int32_t[::1] Y_indices,
              const int64_t[::1] indptr, const int32_t[::1] labels,
              const float[::1] weights, uint8_t[::1] hits,
              float[:, ::1] acc, int32_t[:, ::1] label_mark, int32_t[:, ::1] reached,
              int n_threads):
    """``hits[i]``: whether row i's top label by the head alone is one of its labels in Y.

    The top label is ``numpy.argmax`` of the row of :func:`add_scores` (scale
    1, from zeros): the same sums in the same order, over the labels the
    row reaches, and the first of the rest (which score 0) if it comes
    before them; no dense row of ``n_labels`` scores is written or read.
    Scratch, one row per thread (``acc.shape[0] >= n_threads``): ``acc``
    and ``reached`` of ``n_labels`` entries, ``label_mark`` zeros (left as
    zeros).
    """
    cdef Py_ssize_t n_labels = acc.shape[1], i, p, t, n_reached, tid
    cdef int32_t j, top
    cdef float mx
    cdef float* a
    cdef int32_t* mark
    cdef int32_t* seen
    cdef const sks_kernels *K = get_kernels()
    with nogil, parallel(num_threads=n_threads):
        tid = threadid()
        a = &acc[tid, 0]
        mark = &label_mark[tid, 0]
        seen = &reached[tid, 0]
        for i in prange(hits.shape[0], schedule="static"):
            n_reached = reached_scores(i, inv_row_norm(X_indptr, X_data, i), X_indptr,
                                       X_indices, X_data, indptr, labels, weights, a, mark,
                                       seen, K)
            top = 0
            mx = -INFINITY
            if n_reached < n_labels:
                # the first label the row does not reach, scoring 0
                j = 0
                while mark[j]:
                    j = j + 1
                top = j
                mx = 0.0
            for t in range(n_reached):
                j = seen[t]
                if (n_reached == n_labels and t == 0) or _first_higher(a[j], j, mx, top):
                    mx = a[j]
                    top = j
            hits[i] = 0
            for p in range(Y_indptr[i], Y_indptr[i + 1]):
                if Y_indices[p] == top:
                    hits[i] = 1
            K.clear_marks(mark, seen, n_reached)


@cython.boundscheck(False)
@cython.wraparound(False)
def add_scores_dense(float[:, ::1] scores,
                     const int32_t[::1] X_indptr, const int32_t[::1] X_indices,
                     const float[::1] X_data, const float[:, ::1] dense,
                     float scale, int n_threads):
    """:func:`add_scores` with the pairs' weights as a dense ``(n_features, width)`` array.

    ``dense[f, j]`` is the weight of pair (f, j), 0 where there is none, for
    the ``n_labels = scores.shape[1]`` first columns; rows may be wider
    (padded to whole cache lines, so that no load of a row straddles two:
    a quarter less time on Delicious' 983 labels), and their other columns
    are not read. Each label of a row gets the same products added in the
    same order as in :func:`add_scores` (plus exact zeros for the pairs the
    head lacks), so the scores are the same, computed a whole feature row at
    a time.
    """
    cdef const sks_kernels *K = get_kernels()
    cdef Py_ssize_t i, start, n_labels = scores.shape[1], width = dense.shape[1]
    cdef float inv
    if width < n_labels:
        raise ValueError(f"dense has {width} columns, fewer than the {n_labels} labels scored")
    with nogil:
        for i in prange(scores.shape[0], num_threads=n_threads, schedule="static"):
            inv = inv_row_norm(X_indptr, X_data, i) * scale
            start = X_indptr[i]
            # out += (x_f * inv) * dense[f] for the row's features in order, each
            # product rounded before its sum, as scatter_axpy's out[l] += x * w
            if X_indptr[i + 1] > start:
                K.sparse_dense_accum_rounded(&X_indices[start], &X_data[start], inv,
                                             X_indptr[i + 1] - start, &dense[0, 0], width,
                                             n_labels, &scores[i, 0])


cdef inline void scatter_axpy(float* out, const int32_t* labels, const float* weights,
                              int64_t start, int64_t stop, float x) noexcept nogil:
    """``out[labels[k]] += x * weights[k]`` for ``k`` in ``[start, stop)``, in order.

    (The labels of one feature are distinct, so the updates are independent.)
    """
    cdef int64_t k = start
    while k + 4 <= stop:
        out[labels[k]] += x * weights[k]
        out[labels[k + 1]] += x * weights[k + 1]
        out[labels[k + 2]] += x * weights[k + 2]
        out[labels[k + 3]] += x * weights[k + 3]
        k += 4
    while k < stop:
        out[labels[k]] += x * weights[k]
        k += 1


cdef inline float hinge_term(float s, bint own, float w, float grad_scale, double* loss,
                             double pos_margin, double neg_margin) noexcept nogil:
    """One label's squared hinge, ``max(0, pos_margin - s)^2`` for the row's own
    labels and ``max(0, neg_margin + s)^2`` for the others, minus the constant
    ``pos_margin^2`` of an own label, added to ``loss``; returns its gradient
    in ``s`` times ``w * grad_scale``."""
    cdef double mk
    if own:
        loss[0] -= pos_margin * pos_margin
        mk = pos_margin - s
    else:
        mk = neg_margin + s
    if mk <= 0.0:
        return 0.0
    loss[0] += mk * mk
    return <float>((-2.0 if own else 2.0) * mk * w * grad_scale)


@cython.boundscheck(False)
@cython.wraparound(False)
@cython.cdivision(True)
cdef inline void softmax_gradients(float* acc, const int32_t* reached, const int32_t* label_mark,
                                   float* vals, const int32_t[::1] Y_indptr,
                                   const int32_t[::1] Y_indices,
                                   int64_t i, Py_ssize_t n_reached, int32_t n_labels,
                                   double n_true, float w, float grad_scale,
                                   double* loss_sum, double* weight_sum,
                                   const sks_kernels* K) noexcept nogil:
    """Softmax cross-entropy over all labels of row i: its loss, and in ``acc`` the
    gradients ``w * grad_scale * (p_j - t_j)`` of the labels it reaches.

    The reached labels' scores are copied to ``vals`` (scratch of
    ``n_labels``) and go through the variant's vectorised softmax; the
    ``n_labels - n_reached`` labels the row does not reach score 0 and join
    the partition function after it: ``log Z = logaddexp(lse_reached,
    log(n_labels - n_reached))``.
    """
    cdef Py_ssize_t t, p
    cdef int32_t j
    cdef double lse, c, scale
    cdef double s_true = 0.0
    for p in range(Y_indptr[i], Y_indptr[i + 1]):
        j = Y_indices[p]
        if label_mark[j]:
            s_true += acc[j]
    weight_sum[0] += w
    if n_reached == 0:
        # every label scores 0: nothing to move
        loss_sum[0] += w * (log(<double>n_labels) - s_true / n_true)
        return
    for t in range(n_reached):
        vals[t] = acc[reached[t]]
    lse = K.softmax(vals, n_reached, vals)
    scale = 1.0
    if n_reached < n_labels:
        c = log(<double>(n_labels - n_reached))
        if lse >= c:
            scale = 1.0 / (1.0 + exp(c - lse))
            lse = lse + log1p(exp(c - lse))
        else:
            scale = exp(lse - c) / (1.0 + exp(lse - c))
            lse = c + log1p(exp(lse - c))
    loss_sum[0] += w * (lse - s_true / n_true)
    # logit gradients w * grad_scale * (p_j - t_j), in acc
    scale = scale * w * grad_scale
    # acc[reached[t]] = (float)(vals[t] * scale)
    K.scatter_scaled(vals, scale, reached, n_reached, acc)
    for p in range(Y_indptr[i], Y_indptr[i + 1]):
        j = Y_indices[p]
        if label_mark[j]:
            acc[j] -= <float>(w * grad_scale / n_true)


@cython.boundscheck(False)
@cython.wraparound(False)
@cython.cdivision(True)
cdef void accumulate_rows(
        Py_ssize_t lo, Py_ssize_t hi,
        const int32_t[::1] X_indptr, const int32_t[::1] X_indices, const float[::1] X_data,
        const int32_t[::1] Y_indptr, const int32_t[::1] Y_indices,
        const int64_t[::1] rows, const float[::1] row_weights,
        const int64_t[::1] indptr, const int32_t[::1] labels, const float[::1] weights,
        float* grad, const int64_t* offset,
        float* acc, int32_t* label_mark, int32_t* reached, float* vals,
        int32_t n_labels, float grad_scale, int loss_kind, double pos_margin,
        double neg_margin, double* loss_sum, double* weight_sum,
        const sks_kernels* K) noexcept nogil:
    """The loss gradients of rows ``rows[lo:hi]`` added to ``grad``, in row order.

    The gradient of feature f's k-th pair goes to ``grad[offset[f] + k]``
    (the ranges :func:`mark_part` gave the features of these rows). ``acc``,
    ``label_mark`` and ``reached`` are per-call scratch of ``n_labels``
    entries; ``label_mark`` is left as zeros.
    """
    cdef Py_ssize_t b, p, t, n_reached
    cdef int64_t i, lo_k
    cdef int32_t f, j
    cdef float inv, w
    cdef double loss, n_true
    for b in range(lo, hi):
        i = rows[b]
        w = row_weights[b]
        n_true = Y_indptr[i + 1] - Y_indptr[i]
        if n_true == 0:
            continue
        inv = inv_row_norm(X_indptr, X_data, i)
        # scores of the labels the row reaches
        n_reached = reached_scores(i, inv, X_indptr, X_indices, X_data, indptr, labels,
                                   weights, acc, label_mark, reached, K)
        if loss_kind == 1:
            # squared hinge, one-vs-rest (see train_batch); the labels the
            # row does not reach score 0 and have no pair to move
            for p in range(Y_indptr[i], Y_indptr[i + 1]):
                j = Y_indices[p]
                if label_mark[j]:
                    label_mark[j] = 2
            loss = n_true * pos_margin * pos_margin
            for t in range(n_reached):
                j = reached[t]
                acc[j] = hinge_term(acc[j], label_mark[j] == 2, w, grad_scale, &loss,
                                    pos_margin, neg_margin)
            loss_sum[0] += w * loss
            weight_sum[0] += w
        else:
            softmax_gradients(acc, reached, label_mark, vals, Y_indptr, Y_indices, i, n_reached,
                              n_labels, n_true, w, grad_scale, loss_sum, weight_sum, K)
        # pair gradients x_f * g_j; a feature's pairs are one range
        for p in range(X_indptr[i], X_indptr[i + 1]):
            f = X_indices[p]
            lo_k = indptr[f]
            if indptr[f + 1] > lo_k:
                # grad[offset[f] + k - lo_k] += (x_f * inv) * acc[labels[k]]
                K.gather_axpy(X_data[p] * inv, acc, &labels[lo_k], indptr[f + 1] - lo_k,
                              &grad[offset[f]])
        K.clear_marks(label_mark, reached, n_reached)


@cython.boundscheck(False)
@cython.wraparound(False)
cdef Py_ssize_t mark_part(
        Py_ssize_t lo, Py_ssize_t hi,
        const int32_t[::1] X_indptr, const int32_t[::1] X_indices,
        const int32_t[::1] Y_indptr, const int64_t[::1] rows, const int64_t[::1] indptr,
        int64_t* offset, int32_t* touched, int64_t* used) noexcept nogil:
    """The features of the labelled rows ``rows[lo:hi]``, each once, listed in
    ``touched`` in the order the rows first reach them (returns how many).

    Each gets its pairs' range of the part's gradient buffer: ``offset[f]``
    (``-1`` for the features not listed, as left), from ``used[0]`` on,
    which ends past the last range.
    """
    cdef Py_ssize_t b, p, n_touched = 0
    cdef int64_t i
    cdef int32_t f
    for b in range(lo, hi):
        i = rows[b]
        if Y_indptr[i + 1] == Y_indptr[i]:
            continue
        for p in range(X_indptr[i], X_indptr[i + 1]):
            f = X_indices[p]
            if offset[f] < 0:
                offset[f] = used[0]
                used[0] += indptr[f + 1] - indptr[f]
                touched[n_touched] = f
                n_touched += 1
    return n_touched


# features a row's dense scores take per sparse_dense_accum call in training
cdef enum:
    SCORE_CHUNK = 256


@cython.boundscheck(False)
@cython.wraparound(False)
@cython.cdivision(True)
cdef void accumulate_rows_dense(
        Py_ssize_t lo, Py_ssize_t hi,
        const int32_t[::1] X_indptr, const int32_t[::1] X_indices, const float[::1] X_data,
        const int32_t[::1] Y_indptr, const int32_t[::1] Y_indices,
        const int64_t[::1] rows, const float[::1] row_weights,
        const float* W, const uint8_t* M, float* G,
        float* acc, int32_t* label_mark, float* vals,
        Py_ssize_t n_labels, float grad_scale, int loss_kind, double pos_margin,
        double neg_margin, double* loss_sum, double* weight_sum,
        const sks_kernels* K) noexcept nogil:
    """:func:`accumulate_rows` on the head's dense copy: ``W`` and ``M`` hold each
    feature's row of pair weights and pair marks over all labels (0 where
    there is no pair), ``G`` receives the gradients of those rows.

    A row's scores are whole-label-row axpys (the labels it does not reach
    score 0 there too), its softmax runs over all labels, and its gradient
    goes to each of its features' rows of ``G`` in one axpy (the labels
    without a pair of the feature are dropped when Adam reads ``G``). The
    squared hinge counts the labels the row reaches, as pair by pair.
    """
    cdef Py_ssize_t b, p, j, L = n_labels
    cdef int64_t i
    cdef float inv, w
    cdef double loss, n_true, s_true, lse
    cdef uint8_t* mark = <uint8_t*> label_mark
    cdef const uint8_t* row
    cdef Py_ssize_t st, nnz
    cdef float xs[SCORE_CHUNK]
    for b in range(lo, hi):
        i = rows[b]
        w = row_weights[b]
        n_true = Y_indptr[i + 1] - Y_indptr[i]
        if n_true == 0:
            continue
        inv = inv_row_norm(X_indptr, X_data, i)
        # acc = sum_p (x_p inv) W[f_p] in feature order: the FMAs of an axpy a
        # feature, with the sums kept in registers (SCORE_CHUNK features a call)
        memset(acc, 0, L * sizeof(float))
        st = X_indptr[i]
        while st < X_indptr[i + 1]:
            nnz = min(<Py_ssize_t> SCORE_CHUNK, X_indptr[i + 1] - st)
            for p in range(nnz):
                xs[p] = X_data[st + p] * inv
            K.sparse_dense_accum(&X_indices[st], xs, nnz, W, L, L, acc)
            st += nnz
        if loss_kind == 1:
            # the labels the row reaches (1) and, among them, its own (2), as
            # bytes (label_mark's first n_labels bytes: a byte-wise OR of the
            # mask rows, 16 labels an instruction at baseline flags)
            for p in range(X_indptr[i], X_indptr[i + 1]):
                row = M + X_indices[p] * L
                for j in range(L):
                    mark[j] |= row[j]
            for p in range(Y_indptr[i], Y_indptr[i + 1]):
                j = Y_indices[p]
                if mark[j]:
                    mark[j] = 2
            loss = n_true * pos_margin * pos_margin
            for j in range(L):
                # (a label the row does not reach has no pair to move)
                vals[j] = hinge_term(acc[j], mark[j] == 2, w, grad_scale, &loss,
                                     pos_margin, neg_margin) if mark[j] else 0.0
                mark[j] = 0
            loss_sum[0] += w * loss
            weight_sum[0] += w
        else:
            s_true = 0.0
            for p in range(Y_indptr[i], Y_indptr[i + 1]):
                s_true += acc[Y_indices[p]]
            lse = K.softmax(acc, L, vals)
            loss_sum[0] += w * (lse - s_true / n_true)
            weight_sum[0] += w
            for p in range(Y_indptr[i], Y_indptr[i + 1]):
                vals[Y_indices[p]] -= <float>(1.0 / n_true)
            for j in range(L):
                vals[j] *= w * grad_scale
        for p in range(X_indptr[i], X_indptr[i + 1]):
            K.axpy(X_data[p] * inv, vals, &G[X_indices[p] * L], L)


@cython.boundscheck(False)
@cython.wraparound(False)
cdef inline void update_feature_dense(int32_t f, const int64_t[::1] indptr,
                                      const int32_t[::1] labels, float[:, ::1] grad,
                                      int64_t[:, ::1] offset,
                                      float[:, :, ::1] G, float[:, ::1] W,
                                      float[::1] weights,
                                      float[::1] m, float[::1] v, Py_ssize_t n_parts,
                                      AdamStep a, double beta_1, double beta_2,
                                      const sks_kernels* K) noexcept nogil:
    """:func:`update_feature` reading the pairs' gradients from the parts' dense
    rows of ``G`` (summed in part order into part 0's range of ``grad``, the
    rows zeroed), and writing the new weights back to the dense copy ``W``."""
    cdef Py_ssize_t q, k, lo = indptr[f], hi = indptr[f + 1], L = W.shape[1]
    cdef float* dst = NULL
    cdef float* src
    cdef float* wrow = &W[f, 0]
    cdef const int32_t* lab = &labels[lo]
    if hi > lo:  # (an empty range may sit past the end of a full row)
        dst = &grad[0, offset[0, f]]
    for q in range(n_parts):
        offset[q, f] = -1
    # part 0's gradients, then each later part's added in part order
    src = &G[0, f, 0]
    for k in range(hi - lo):
        dst[k] = src[lab[k]]
    memset(src, 0, L * sizeof(float))
    for q in range(1, n_parts):
        src = &G[q, f, 0]
        for k in range(hi - lo):
            dst[k] = dst[k] + src[lab[k]]
        memset(src, 0, L * sizeof(float))
    if hi <= lo:
        return
    K.adam(&weights[lo], &m[lo], &v[lo], dst, hi - lo, a.lr_t,
           beta_1, beta_2, a.eps_t, 1.0)
    for k in range(hi - lo):
        wrow[lab[k]] = weights[lo + k]


@cython.boundscheck(False)
@cython.wraparound(False)
cdef inline void update_feature(int32_t f, const int64_t[::1] indptr, float[:, ::1] grad,
                                int64_t[:, ::1] offset, float[::1] weights,
                                float[::1] m, float[::1] v, Py_ssize_t n_parts, AdamStep a,
                                double beta_1, double beta_2,
                                const sks_kernels* K) noexcept nogil:
    """Adam on feature f's pairs with the parts' gradients summed in part order.

    Part 0's range of f holds the sum (zeros where part 0 did not reach f):
    each later part's range, where it has one, is added to it and zeroed,
    and Adam zeroes the sum. f's offsets are reset to -1.
    """
    cdef Py_ssize_t q, k, n = indptr[f + 1] - indptr[f]
    cdef int64_t o
    cdef float* dst
    cdef float* src
    if n <= 0:  # (its ranges are empty: past the end of a full row)
        for q in range(n_parts):
            offset[q, f] = -1
        return
    dst = &grad[0, offset[0, f]]
    offset[0, f] = -1
    for q in range(1, n_parts):
        o = offset[q, f]
        if o < 0:
            # (adding its zeros would change no value: a sum of products
            # started at +0.0 is never -0.0)
            continue
        offset[q, f] = -1
        src = &grad[q, o]
        for k in range(n):
            dst[k] += src[k]
            src[k] = 0.0
    K.adam(&weights[indptr[f]], &m[indptr[f]], &v[indptr[f]], dst, n, a.lr_t,
           beta_1, beta_2, a.eps_t, 1.0)


@cython.boundscheck(False)
@cython.wraparound(False)
cdef inline void update_touched(int32_t f, bint dense, const int64_t[::1] indptr,
                                const int32_t[::1] labels, float[:, ::1] grad,
                                int64_t[:, ::1] offset, float[:, :, ::1] G, float[:, ::1] W,
                                float[::1] weights, float[::1] m, float[::1] v,
                                Py_ssize_t n_parts, AdamStep a, double beta_1, double beta_2,
                                const sks_kernels* K) noexcept nogil:
    """Adam on the pairs of the touched feature f, from the dense rows of ``G``
    (``dense``) or from the ranges of ``grad``."""
    if dense:
        update_feature_dense(f, indptr, labels, grad, offset, G, W, weights, m, v, n_parts,
                             a, beta_1, beta_2, K)
    else:
        update_feature(f, indptr, grad, offset, weights, m, v, n_parts, a, beta_1, beta_2, K)


# train_batch updates the touched features by sweeping every feature id where
# there are at most this many features per one touched
cdef enum:
    SWEEP_FEATURES = 4


@cython.boundscheck(False)
@cython.wraparound(False)
@cython.cdivision(True)
def train_batch(const int32_t[::1] X_indptr, const int32_t[::1] X_indices,
                const float[::1] X_data,
                const int32_t[::1] Y_indptr, const int32_t[::1] Y_indices,
                const int64_t[::1] rows, const float[::1] row_weights,
                const int64_t[::1] indptr, const int32_t[::1] labels,
                float[::1] weights, float[::1] m, float[::1] v,
                float[:, ::1] grad, int64_t[:, ::1] offset, int32_t[:, ::1] touched,
                float[:, ::1] acc, int32_t[:, ::1] label_mark, int32_t[:, ::1] reached,
                float[:, ::1] vals, int32_t n_labels, float grad_scale,
                double lr, double beta_1, double beta_2, double epsilon, int64_t step,
                int loss_kind, int n_threads=1, float[:, ::1] dense_w=None,
                const uint8_t[:, ::1] dense_mask=None, float[:, :, ::1] dense_grad=None,
                double pos_margin=1.0, double neg_margin=1.0):
    """One Adam step of the head's loss on a batch of rows.

    ``loss_kind`` 0 is the softmax cross-entropy over all labels with targets
    ``1/k`` on each of a row's ``k`` labels; 1 is the one-vs-rest squared
    hinge ``sum_j max(0, pos_margin - s_j)^2`` over the row's own labels plus
    ``sum_j max(0, neg_margin + s_j)^2`` over the others (margins 1 and 1:
    the usual ``max(0, 1 - y_j s_j)^2``), whose terms for the labels the row
    does not reach are constants (they score 0 and have no pair to move). Each row's gradient
    is multiplied by its weight and ``grad_scale``. Only the pairs the batch
    reaches, all the pairs of the features of its labelled rows, are updated
    (their moments too: lazy Adam, bias-corrected at ``step``).

    The batch is cut into ``P = touched.shape[0]`` consecutive parts of rows;
    part ``q`` adds its rows' gradients, in order, to its row ``grad[q]``
    (the parts run on up to ``n_threads`` threads), and each touched pair's
    gradient is then the parts' sum, in part order. The step therefore
    depends on ``P``, never on the thread count. A part's row of ``grad``
    holds only the pairs of the features its rows reach, each feature's
    pairs one range of it (``offset[q, f]``), so ``grad`` needs the width of
    a batch's pairs, not of the head's: row 0 holds the ranges of every
    feature the batch reaches, where the sums are made.

    Scratch, one row per part: ``grad`` (zeros), ``offset`` (``-1``) and
    ``touched`` of the features' size, ``acc``, ``label_mark`` (zeros),
    ``reached`` and ``vals`` of size ``n_labels``; ``grad``, ``offset`` and
    ``label_mark`` are left as they were given.

    With ``dense_w`` (the pair weights as an ``(n_features, n_labels)``
    array, 0 where there is no pair), ``dense_mask`` (1 where there is a
    pair) and ``dense_grad`` (zeros, ``(P, n_features, n_labels)``), rows
    are scored and their gradients gathered a whole label row at a time
    (:func:`accumulate_rows_dense`; for heads whose pairs fill much of the
    grid), and ``dense_w`` is kept equal to the weights.

    Returns ``(loss, weight, need)``: the weighted sum of the rows' losses
    (for the squared hinge, without the constant ``neg_margin^2`` of each
    unreached negative label), the sum of their weights, and 0. If the
    batch's pairs do not fit the width of ``grad``, nothing is changed and
    the call returns ``(0.0, 0.0, need)``, the width they need.
    """
    cdef Py_ssize_t n_parts = touched.shape[0], n_rows = rows.shape[0]
    cdef Py_ssize_t q, t, n
    cdef int32_t f
    cdef int64_t need, used0
    cdef int threads = max(1, min(n_threads, <int>n_parts))
    cdef double loss_sum = 0.0, weight_sum = 0.0
    cdef double* sums = <double*>malloc(2 * n_parts * sizeof(double))
    cdef Py_ssize_t* n_touched = <Py_ssize_t*>malloc(n_parts * sizeof(Py_ssize_t))
    cdef int64_t* used = <int64_t*>malloc(n_parts * sizeof(int64_t))
    cdef AdamStep a = adam_constants(lr, beta_1, beta_2, epsilon, 0, step)
    cdef const sks_kernels *K = get_kernels()
    cdef bint dense = dense_w is not None
    cdef Py_ssize_t F = touched.shape[1], cap = grad.shape[1]
    if (grad.shape[0] != n_parts or offset.shape[0] != n_parts or offset.shape[1] != F
            or acc.shape[0] != n_parts or label_mark.shape[0] != n_parts
            or reached.shape[0] != n_parts or vals.shape[0] != n_parts):
        raise ValueError("the scratch arrays must have one row per part of the batch")
    if dense and (dense_mask is None or dense_grad is None
                  or dense_w.shape[0] != F or dense_w.shape[1] != n_labels
                  or dense_mask.shape[0] != F or dense_mask.shape[1] != n_labels
                  or dense_grad.shape[0] != n_parts or dense_grad.shape[1] != F
                  or dense_grad.shape[2] != n_labels):
        raise ValueError("dense_w, dense_mask and dense_grad must be given together, "
                         "of shapes (n_features, n_labels) and (P, n_features, n_labels)")
    if sums == NULL or n_touched == NULL or used == NULL:
        free(sums)
        free(n_touched)
        free(used)
        raise MemoryError()
    with nogil:
        for q in range(n_parts):
            sums[2 * q] = sums[2 * q + 1] = 0.0
            used[q] = 0
        # the features each part reaches, and their ranges of its gradient row
        # (one thread: a team of one, which runs on the calling thread)
        for q in prange(n_parts, num_threads=threads, schedule="static"):
            n_touched[q] = mark_part(
                q * n_rows // n_parts, (q + 1) * n_rows // n_parts,
                X_indptr, X_indices, Y_indptr, rows, indptr,
                &offset[q, 0], &touched[q, 0], &used[q])
        # every touched feature once in part 0's list, with a range of row 0
        n = n_touched[0]
        used0 = used[0]
        for q in range(1, n_parts):
            for t in range(n_touched[q]):
                f = touched[q, t]
                if offset[0, f] < 0:
                    offset[0, f] = used0
                    used0 += indptr[f + 1] - indptr[f]
                    touched[0, n] = f
                    n += 1
        need = used0
        for q in range(1, n_parts):
            if used[q] > need:
                need = used[q]
        if need > cap:
            # too narrow: the offsets as they were, nothing else written
            for q in range(1, n_parts):
                for t in range(n_touched[q]):
                    offset[q, touched[q, t]] = -1
            for t in range(n):
                offset[0, touched[0, t]] = -1
        else:
            need = 0
            for q in prange(n_parts, num_threads=threads, schedule="static"):
                if dense:
                    accumulate_rows_dense(
                        q * n_rows // n_parts, (q + 1) * n_rows // n_parts,
                        X_indptr, X_indices, X_data, Y_indptr, Y_indices, rows, row_weights,
                        &dense_w[0, 0], &dense_mask[0, 0], &dense_grad[q, 0, 0],
                        &acc[q, 0], &label_mark[q, 0], &vals[q, 0], n_labels, grad_scale,
                        loss_kind, pos_margin, neg_margin, &sums[2 * q], &sums[2 * q + 1], K)
                else:
                    accumulate_rows(
                        q * n_rows // n_parts, (q + 1) * n_rows // n_parts,
                        X_indptr, X_indices, X_data, Y_indptr, Y_indices, rows, row_weights,
                        indptr, labels, weights, &grad[q, 0], &offset[q, 0],
                        &acc[q, 0], &label_mark[q, 0], &reached[q, 0],
                        &vals[q, 0], n_labels, grad_scale, loss_kind, pos_margin, neg_margin,
                        &sums[2 * q], &sums[2 * q + 1], K)
            for q in range(n_parts):
                loss_sum += sums[2 * q]
                weight_sum += sums[2 * q + 1]
            # lazy Adam on the pairs the batch reached, a feature's range at a time
            # Where the batch reaches a good share of the features, they go by
            # id in fixed shares, so that a thread updates the same features'
            # rows batch after batch, in its own cache (Bibtex's head steps a
            # sixth faster than from the list in the order reached).
            if F <= SWEEP_FEATURES * n:
                for t in prange(F, num_threads=threads, schedule="static"):
                    if offset[0, t] >= 0:
                        update_touched(t, dense, indptr, labels, grad, offset, dense_grad,
                                       dense_w, weights, m, v, n_parts, a, beta_1, beta_2, K)
            else:
                for t in prange(n, num_threads=threads, schedule="guided"):
                    update_touched(touched[0, t], dense, indptr, labels, grad, offset,
                                   dense_grad, dense_w, weights, m, v, n_parts, a, beta_1,
                                   beta_2, K)
    free(sums)
    free(n_touched)
    free(used)
    return loss_sum, weight_sum, need


@cython.boundscheck(False)
@cython.wraparound(False)
def mixed_top(const float[:, ::1] net, const float[:, ::1] head, const float[::1] weights,
              int32_t[:, :, ::1] top, float[:, :, ::1] best, int n_threads):
    """``top[i, g, :]``: the labels of the ``k`` largest ``net[i, j] + weights[g] * head[i, j]``.

    ``k = top.shape[2]``, best first; among equal values the lower label
    first, as a stable sort (``top[i, g, 0]`` is ``numpy.argmax``'s label).
    ``best`` (the same shape) receives the values. ``net`` and ``head`` have
    the same shape, with at least ``k`` labels (``k >= 1``); every ``top``
    entry is a label id, NaN values included.

    A label the head does not reach (``head[i, j] == 0``) scores
    ``net[i, j]`` at every weight, so only the ``k`` best of those can rank:
    one pass over a row's labels keeps them and lists the labels the head
    reaches (the variant's scan_mixed, sixteen labels a compare), and each
    weight ranks that list (in label order, so ties break as over all
    labels; mixed_topk, sixteen candidates a compare against the k-th best).
    Rows in parallel.
    """
    cdef const sks_kernels *K = get_kernels()
    cdef Py_ssize_t i, g, c, n_cand, a, b, dst
    cdef sks_idx n_base
    cdef Py_ssize_t n_labels = net.shape[1], k = top.shape[2]
    cdef int32_t *cand
    cdef int32_t *base_id
    cdef float *base_val
    cdef float *cand_net
    cdef float *cand_head
    cdef int32_t t
    with nogil, parallel(num_threads=n_threads):
        cand = <int32_t *> malloc((n_labels + k) * sizeof(int32_t))
        cand_net = <float *> malloc((n_labels + k) * sizeof(float))
        cand_head = <float *> malloc((n_labels + k) * sizeof(float))
        base_id = <int32_t *> malloc(k * sizeof(int32_t))
        base_val = <float *> malloc(k * sizeof(float))
        for i in prange(net.shape[0], schedule="static"):
            # the labels the head reaches (NaN included), and the k best of
            # the others by net alone (a stable insertion, as below)
            # (assigned here, so each thread has its own: the kernel writes
            # it through the pointer)
            n_base = 0
            n_cand = K.scan_mixed(&head[i, 0], &net[i, 0], n_labels, k, cand, base_id,
                                  base_val, &n_base)
            # those k by label id, merged into the list from its end
            for a in range(1, n_base):
                t = base_id[a]
                b = a
                while b > 0 and base_id[b - 1] > t:
                    base_id[b] = base_id[b - 1]
                    b = b - 1
                base_id[b] = t
            a = n_cand - 1
            b = n_base - 1
            dst = n_cand + n_base - 1
            while b >= 0:
                if a >= 0 and cand[a] > base_id[b]:
                    cand[dst] = cand[a]
                    a = a - 1
                else:
                    cand[dst] = base_id[b]
                    b = b - 1
                dst = dst - 1
            n_cand = n_cand + n_base
            for c in range(n_cand):
                cand_net[c] = net[i, cand[c]]
                cand_head[c] = head[i, cand[c]]
            # each weight: the first k labels, then those above the k-th
            # best, into the sorted list (stable: a later label never
            # passes an equal earlier one)
            for g in range(weights.shape[0]):
                K.mixed_topk(cand_net, cand_head, cand, n_cand, weights[g], k, &top[i, g, 0],
                             &best[i, g, 0])
        free(cand)
        free(cand_net)
        free(cand_head)
        free(base_id)
        free(base_val)


# --------------------------------------------------------------------- bounded top-k

cdef struct _Cand:
    double bound
    int32_t label


cdef int _by_bound_desc(const void *a, const void *b) noexcept nogil:
    cdef double x = (<const _Cand *> a).bound, y = (<const _Cand *> b).bound
    if x > y:
        return -1
    if x < y:
        return 1
    return (<const _Cand *> a).label - (<const _Cand *> b).label


cdef void _select_top(_Cand *c, Py_ssize_t n, Py_ssize_t m) noexcept nogil:
    """Reorder c[:n] so that c[:m] hold m of the largest bounds (quickselect)."""
    cdef Py_ssize_t lo = 0, hi = n - 1, i, j
    cdef double pivot
    cdef _Cand tmp
    while lo < hi:
        pivot = c[(lo + hi) >> 1].bound
        i = lo
        j = hi
        while i <= j:
            while c[i].bound > pivot:
                i += 1
            while c[j].bound < pivot:
                j -= 1
            if i <= j:
                tmp = c[i]
                c[i] = c[j]
                c[j] = tmp
                i += 1
                j -= 1
        # c[lo:j + 1] >= pivot >= c[i:hi + 1]
        if m <= j:
            hi = j
        elif m >= i:
            lo = i
        else:
            return


cdef Py_ssize_t _above(const float *U, Py_ssize_t L, float bar, const uint8_t *scored,
                       _Cand *cand) noexcept nogil:
    """The labels not scored yet whose bound reaches the bar, into cand; their count."""
    cdef Py_ssize_t j, n = 0
    for j in range(L):
        if U[j] >= bar and not scored[j]:
            cand[n].label = <int32_t> j
            cand[n].bound = U[j]
            n += 1
    return n


cdef inline bint _better(float v, int32_t j, float w, int32_t i) noexcept nogil:
    return v > w or (v == w and j < i)


cdef inline void _keep(float v, int32_t j, float *tv, int32_t *ti, Py_ssize_t *count,
                       Py_ssize_t k) noexcept nogil:
    """Insert (v, j) into the best-first list tv/ti of at most k entries."""
    cdef Py_ssize_t r
    if count[0] == k:
        if not _better(v, j, tv[k - 1], ti[k - 1]):
            return
        r = k - 1
    else:
        r = count[0]
        count[0] += 1
    while r > 0 and _better(v, j, tv[r - 1], ti[r - 1]):
        tv[r] = tv[r - 1]
        ti[r] = ti[r - 1]
        r -= 1
    tv[r] = v
    ti[r] = j


cdef struct _Row:
    # the model
    const sks_kernels *K
    const float *W2
    const float *b2
    const float *hw
    Py_ssize_t H, L, L8, k
    # the row: its hidden activations, and the head's terms of each label it
    # reaches (label j: xv[start[j] + r] * hw[q[start[j] + r]], r < cnt[j],
    # in the order add_scores adds them)
    const float *h
    const int32_t *cnt
    const int32_t *start
    const float *xv
    const int64_t *q
    # the label clusters' term of each label (0 for labels of clusters the
    # row does not reach), added after the head's terms
    bint use_clusters
    const float *ct
    # scratch
    uint8_t *scored
    float tail[8]
    bint tail_done
    # the k best so far, best first
    int32_t *ti
    float *tv
    Py_ssize_t count


cdef inline float _with_head(const _Row *R, float s, int32_t j) noexcept nogil:
    cdef Py_ssize_t r
    for r in range(R.start[j], R.start[j] + R.cnt[j]):
        s += R.xv[r] * R.hw[R.q[r]]
    if R.use_clusters:
        s += R.ct[j]
    return s


cdef int _score_cands(_Row *R, const _Cand *cand, Py_ssize_t n_cand,
                      bint prune) noexcept nogil:
    """Exact scores of the candidates, kept in the row's top-k; 1 on a NaN score.

    With ``prune`` (candidates by decreasing bound), stops at the first
    bound below the k-th best score so far. A score has the bits
    output_scores and add_scores give it.
    """
    cdef Py_ssize_t c = 0, g, r
    cdef int32_t j
    cdef int32_t group[8]
    cdef int32_t tail_ids[8]
    cdef float out[8]
    cdef float s
    while c < n_cand:
        g = 0
        while c < n_cand and g < 8:
            if prune and R.count == R.k and cand[c].bound < R.tv[R.k - 1]:
                c = n_cand
                break
            j = cand[c].label
            c += 1
            R.scored[j] = 1
            if j < R.L8:
                group[g] = j
                g += 1
                continue
            if not R.tail_done:
                # the last L % 8 labels, as output_scores computes them
                for r in range(R.L - R.L8):
                    tail_ids[r] = <int32_t> r
                R.K.gather_dot(R.h, R.W2 + R.L8 * R.H, R.H, tail_ids, R.L - R.L8, R.H, R.tail)
                R.tail_done = True
            s = _with_head(R, R.tail[j - R.L8] + R.b2[j], j)
            if s != s:
                return 1
            _keep(s, j, R.tv, R.ti, &R.count, R.k)
        if g == 0:
            continue
        # groups of 8 labels below L8 (padded): the instructions of
        # output_scores' groups of 8, so the same bits
        for r in range(g, 8):
            group[r] = group[0]
        R.K.gather_dot(R.h, R.W2, R.H, group, 8, R.H, out)
        for r in range(g):
            s = _with_head(R, out[r] + R.b2[group[r]], group[r])
            if s != s:
                return 1
            _keep(s, group[r], R.tv, R.ti, &R.count, R.k)
    return 0


cdef int _score_best_bounds(_Row *R, const float *U, Py_ssize_t n, const int32_t *labels,
                            _Cand *cand) noexcept nogil:
    """The exact scores of the k of largest bound in U[:n] (labels[i], or i without
    labels) into the row's top-k: the first bar. 1 on a NaN score."""
    cdef Py_ssize_t c, n_cand
    R.count = R.K.topk(U, n, R.k, R.ti, R.tv)
    for c in range(R.count):
        cand[c].label = labels[R.ti[c]] if labels != NULL else R.ti[c]
        cand[c].bound = U[R.ti[c]]
    n_cand = R.count
    R.count = 0
    return _score_cands(R, cand, n_cand, False)


cdef int _bounded_row(
    _Row *R, const float *pos_norm, const float *neg_norm,
    const int32_t *xind, const float *xdat, Py_ssize_t nnz, float inv, bint use_head,
    const int64_t *hptr, const int32_t *hlab,
    float inv_c, const int64_t *cptr, const int32_t *clab, const float *cw, float c_scale,
    const int64_t *mptr, const int32_t *members, float *cacc, int32_t *ctouched,
    uint8_t *cmark, float *ct,
    const double *env_slope, const double *env_icpt, const double *env_break, Py_ssize_t n_env,
    double env_margin, Py_ssize_t max_cand,
    float *acc, float *absacc, float *U, int32_t *cnt, int32_t *start, float *xv,
    int64_t *q, int32_t *touched, _Cand *cand,
) noexcept nogil:
    """Exact top-k of one row (see :func:`bounded_topk`); 1 if it must be scored in full."""
    cdef Py_ssize_t p, r, j, n_touched = 0, n_terms = 0, n_cand = 0, c, n_ct = 0
    cdef Py_ssize_t L = R.L, k = R.k, lo, hi, mid
    cdef int status = 0
    cdef double a_pos = 0.0, a_neg = 0.0, x, rel, a1, env
    cdef float fa_pos, fa_neg, frel, net_f, t, v, kth
    cdef bint done = False
    for p in range(R.H):
        x = R.h[p]
        if x > 0:
            a_pos += x * x
        elif x < 0:
            a_neg += x * x
        elif x != x:
            return 1
    a_pos = sqrt(a_pos)
    a_neg = sqrt(a_neg)
    if not (a_pos + a_neg < INFINITY):
        return 1
    # An exact score's rounding is at most (nnz + H + 2) 2**-24 times the sum
    # of the magnitudes it adds, |h| |W2_j| + |b2_j| + the head's terms, and
    # |h| |W2_j| <= (a_pos + a_neg)(|W2_j+| + |W2_j-|): the bounds add several
    # times that.
    rel = (nnz + R.H + 32) * 2.5e-7 + 1e-6
    fa_pos = <float> (a_pos * (1.0 + 1e-6))  # float32 rounded up (as the norms)
    fa_neg = <float> (a_neg * (1.0 + 1e-6))
    frel = <float> rel
    # the head's terms of each label the row reaches, in add_scores' order
    if use_head:
        for p in range(nnz):
            for r in range(hptr[xind[p]], hptr[xind[p] + 1]):
                j = hlab[r]
                if cnt[j] == 0:
                    touched[n_touched] = <int32_t> j
                    n_touched += 1
                cnt[j] += 1
        for r in range(n_touched):
            j = touched[r]
            start[j] = <int32_t> n_terms
            n_terms += cnt[j]
            cnt[j] = 0
        for p in range(nnz):
            v = xdat[p] * inv
            for r in range(hptr[xind[p]], hptr[xind[p] + 1]):
                j = hlab[r]
                xv[start[j] + cnt[j]] = v
                q[start[j] + cnt[j]] = r
                cnt[j] += 1
                t = v * R.hw[r]
                acc[j] += t
                absacc[j] += fabsf(t)
    if R.use_clusters:
        # the cluster head's score of each cluster the row reaches, in
        # add_scores' order (scale 1), then its weighted term on every label
        # of those clusters, which the row now reaches too
        for p in range(nnz):
            v = xdat[p] * inv_c
            for r in range(cptr[xind[p]], cptr[xind[p] + 1]):
                c = clab[r]
                if cmark[c] == 0:
                    cmark[c] = 1
                    ctouched[n_ct] = <int32_t> c
                    n_ct += 1
                cacc[c] += v * cw[r]
        for r in range(n_ct):
            c = ctouched[r]
            t = c_scale * cacc[c]
            for p in range(mptr[c], mptr[c + 1]):
                j = members[p]
                ct[j] = t
                if cnt[j] == 0:  # not reached by the head
                    touched[n_touched] = <int32_t> j
                    n_touched += 1
                acc[j] += t
                absacc[j] += fabsf(t)
    for r in range(n_touched):
        if not (absacc[touched[r]] < INFINITY):
            status = 1  # (the caller checked the norms and biases)
    if status == 0 and a_neg == 0.0 and n_touched >= k:
        # A non-negative hidden row (ReLU) reaching k labels: a label it does
        # not reach scores at most max_j (a_pos |W2_j+| + b2_j), the upper
        # envelope of those lines at a_pos. If the k-th best exact score of
        # the reached labels beats it, only reached labels compete.
        for r in range(n_touched):
            j = touched[r]
            net_f = fa_pos * pos_norm[j]
            U[r] = net_f + R.b2[j] + acc[j] + frel * (
                fa_pos * (pos_norm[j] + neg_norm[j]) + fabsf(R.b2[j]) + absacc[j])
        status = _score_best_bounds(R, U, n_touched, touched, cand)
        if status == 0:
            a1 = a_pos * (1.0 + rel)
            lo = 0
            hi = n_env - 1
            while lo < hi:  # the envelope's line at a1
                mid = (lo + hi) >> 1
                if env_break[mid] <= a1:
                    lo = mid + 1
                else:
                    hi = mid
            env = env_slope[lo] * a1 + env_icpt[lo] + rel * env_margin * (1.0 + a1)
            kth = R.tv[k - 1]
            if env < kth:
                n_cand = 0
                for r in range(n_touched):
                    if U[r] >= kth and not R.scored[touched[r]]:
                        cand[n_cand].label = touched[r]
                        cand[n_cand].bound = U[r]
                        n_cand += 1
                if n_cand:
                    qsort(cand, n_cand, sizeof(_Cand), _by_bound_desc)
                    status = _score_cands(R, cand, n_cand, True)
                done = True
    if status == 0 and not done:
        # every label's bound (a loop the compiler vectorises), and the exact
        # scores of the labels whose bound reaches the k-th best score so
        # far, best bound first, until the bounds fall below it; more than
        # max_cand of them: scoring every label costs less
        for j in range(L):
            net_f = fa_pos * pos_norm[j] + fa_neg * neg_norm[j]
            U[j] = net_f + R.b2[j] + acc[j] + frel * (
                (fa_pos + fa_neg) * (pos_norm[j] + neg_norm[j]) + fabsf(R.b2[j]) + absacc[j])
        if R.count == 0:
            status = _score_best_bounds(R, U, L, NULL, cand)
        if status == 0:
            n_cand = _above(U, L, R.tv[k - 1], R.scored, cand)
            if n_cand > max_cand:
                # a second bar from the k best bounds left, then give up if
                # it leaves too many
                _select_top(cand, n_cand, min(k, n_cand))
                status = _score_cands(R, cand, min(k, n_cand), False)
                if status == 0:
                    n_cand = _above(U, L, R.tv[k - 1], R.scored, cand)
                    if n_cand > max_cand:
                        status = 1
        if status == 0 and n_cand:
            qsort(cand, n_cand, sizeof(_Cand), _by_bound_desc)
            status = _score_cands(R, cand, n_cand, True)
    # the scratch back to zeros for the next row
    for r in range(n_touched):
        j = touched[r]
        acc[j] = 0
        absacc[j] = 0
        cnt[j] = 0
        if R.use_clusters:
            ct[j] = 0
    for r in range(n_ct):
        c = ctouched[r]
        cacc[c] = 0
        cmark[c] = 0
    memset(R.scored, 0, L)
    return status


@cython.boundscheck(False)
@cython.wraparound(False)
def bounded_topk(const float[:, ::1] hidden, const float[:, ::1] W2, const float[::1] b2,
                 const float[::1] pos_norm, const float[::1] neg_norm,
                 const int32_t[::1] X_indptr, const int32_t[::1] X_indices,
                 const float[::1] X_data, const int64_t[::1] indptr,
                 const int32_t[::1] labels, const float[::1] weights, float scale,
                 bint use_head, const double[::1] env_slope, const double[::1] env_icpt,
                 const double[::1] env_break, double env_margin,
                 float[:, :, ::1] f32_scratch, int32_t[:, :, ::1] i32_scratch,
                 uint8_t[:, ::1] scored, uint8_t[:, ::1] cand, float[:, ::1] xv,
                 int64_t[:, ::1] q, Py_ssize_t k, Py_ssize_t max_candidates, int n_threads,
                 bint use_clusters=False, const int64_t[::1] c_indptr=None,
                 const int32_t[::1] c_labels=None, const float[::1] c_weights=None,
                 float c_scale=0.0, const int64_t[::1] members_ptr=None,
                 const int32_t[::1] members=None, float[:, ::1] c_acc=None,
                 int32_t[:, ::1] c_touched=None, uint8_t[:, ::1] c_mark=None,
                 float[:, ::1] c_term=None):
    """Top-k of ``hidden @ W2.T + b2`` plus ``scale`` times the head, scoring few labels.

    The top-k that output_scores, add_scores and topk_rows give (the same
    ids, the same score bits, ties to the lower label), from the exact
    scores of the labels whose upper bound reaches the k-th best score:
    ``|h+| |W2_j+| + |h-| |W2_j-| + b2_j + scale * head_j`` (Cauchy-Schwarz
    on the positive and negative parts; ``pos_norm``, ``neg_norm`` are the
    row norms of ``max(W2, 0)`` and ``min(W2, 0)`` rounded up), widened by
    the rounding an exact score can carry. ``env_*`` is
    :func:`upper_envelope` of the lines ``(pos_norm, b2)`` and
    ``env_margin >= max(pos_norm + neg_norm, |b2|)``.

    Scratch, per thread (at least ``n_threads``): ``f32_scratch`` and
    ``i32_scratch`` of shape ``(3, n_threads, n_labels)``, ``scored`` of
    ``(n_threads, n_labels)`` and the first two planes of each scratch all
    zeros (left so), ``cand`` of ``(n_threads, 16 * n_labels)`` bytes,
    ``xv`` and ``q`` as long as the head pairs of any row's features.

    With ``use_clusters``, each label also adds ``c_scale`` times the score
    of its cluster by a second head over clusters (pairs ``c_indptr``,
    ``c_labels``, ``c_weights``; the labels of cluster ``c`` are
    ``members[members_ptr[c]:members_ptr[c + 1]]``), after the head's terms,
    as :class:`sksketch._slide._label_clusters.LabelClusterHead` adds it.
    Its scratch, per thread: ``c_acc``, ``c_touched`` and ``c_mark`` of
    ``(n_threads, n_clusters)`` and ``c_term`` of ``(n_threads, n_labels)``,
    ``c_acc``, ``c_mark`` and ``c_term`` zeros (left so).

    A row whose candidates outside the labels it reaches would exceed
    ``max_candidates``, or with a NaN score, is left to the caller:
    ``fallback[i] = 1``, its ids and scores undefined. Needs
    ``1 <= k <= n_labels``.
    """
    cdef const sks_kernels *K = get_kernels()
    cdef Py_ssize_t n = hidden.shape[0], H = hidden.shape[1], L = W2.shape[0]
    cdef Py_ssize_t i, tid, nt = max(1, n_threads)
    cdef float inv, inv_c
    cdef const int64_t *cptr = NULL
    cdef const int64_t *mptr = NULL
    cdef const int32_t *clab = NULL
    cdef const int32_t *memb = NULL
    cdef const float *cw = NULL
    if use_clusters:
        cptr = &c_indptr[0]
        mptr = &members_ptr[0]
        memb = &members[0]
        if c_labels.shape[0]:
            clab = &c_labels[0]
            cw = &c_weights[0]
    idx = np.empty((n, k), dtype=np.int32)
    val = np.empty((n, k), dtype=np.float32)
    fallback = np.zeros(n, dtype=np.uint8)
    if n == 0:
        return idx, val, fallback
    cdef int32_t[:, ::1] iv = idx
    cdef float[:, ::1] vv = val
    cdef uint8_t[::1] fb = fallback
    # one row state per thread
    states = np.zeros(nt * sizeof(_Row), dtype=np.uint8)
    cdef uint8_t[::1] states_v = states
    cdef _Row *rows = <_Row *> &states_v[0]
    cdef _Row *R
    for tid in range(nt):
        R = &rows[tid]
        R.K = K
        R.W2 = &W2[0, 0]
        R.b2 = &b2[0]
        R.hw = &weights[0] if weights.shape[0] else NULL
        R.H = H
        R.L = L
        R.L8 = L - L % 8
        R.k = k
        R.cnt = &i32_scratch[0, tid, 0]
        R.start = &i32_scratch[1, tid, 0]
        R.xv = &xv[tid, 0]
        R.q = &q[tid, 0]
        R.scored = &scored[tid, 0]
        R.use_clusters = use_clusters
        R.ct = &c_term[tid, 0] if use_clusters else NULL
    with nogil:
        for i in prange(n, num_threads=nt, schedule="dynamic", chunksize=4):
            tid = threadid()
            R = &rows[tid]
            R.h = &hidden[i, 0]
            R.tail_done = False
            R.ti = &iv[i, 0]
            R.tv = &vv[i, 0]
            R.count = 0
            inv_c = inv_row_norm(X_indptr, X_data, i)
            inv = inv_c * scale
            fb[i] = <uint8_t> _bounded_row(
                R, &pos_norm[0], &neg_norm[0],
                &X_indices[X_indptr[i]], &X_data[X_indptr[i]], X_indptr[i + 1] - X_indptr[i],
                inv, use_head, &indptr[0], &labels[0] if labels.shape[0] else NULL,
                inv_c, cptr, clab, cw, c_scale, mptr, memb,
                &c_acc[tid, 0] if use_clusters else NULL,
                &c_touched[tid, 0] if use_clusters else NULL,
                &c_mark[tid, 0] if use_clusters else NULL,
                <float *> R.ct,
                &env_slope[0], &env_icpt[0], &env_break[0], env_slope.shape[0], env_margin,
                max_candidates, &f32_scratch[0, tid, 0], &f32_scratch[1, tid, 0],
                &f32_scratch[2, tid, 0], &i32_scratch[0, tid, 0], &i32_scratch[1, tid, 0],
                &xv[tid, 0], &q[tid, 0], &i32_scratch[2, tid, 0], <_Cand *> &cand[tid, 0])
    return idx, val, fallback


def upper_envelope(const double[::1] slope, const double[::1] icpt):
    """The lines of ``max_j (slope_j a + icpt_j)`` over ``a``, and where each takes over.

    Returns ``(slopes, icpts, breaks)``: on ``a < breaks[0]`` the first
    line is the maximum, on ``breaks[i - 1] <= a < breaks[i]`` line ``i``, past
    the last break the last line (``breaks[-1]`` is +inf). Needs finite
    values and at least one line.
    """
    cdef Py_ssize_t n = slope.shape[0], i, m = 0
    order = np.lexsort((np.asarray(icpt), np.asarray(slope)))  # by slope, then intercept
    cdef const int64_t[::1] o = order.astype(np.int64)
    hs = np.empty(n, dtype=np.float64)
    hc = np.empty(n, dtype=np.float64)
    cdef double[::1] s = hs, c = hc
    cdef double si, ci
    with nogil:
        for i in range(n):
            si = slope[o[i]]
            ci = icpt[o[i]]
            if m and s[m - 1] == si:
                m -= 1  # the same slope: this one's intercept is not lower
            # the last line is never the maximum once line i passes the one
            # before it no later than the last line does
            while m >= 2 and (ci - c[m - 2]) * (s[m - 1] - s[m - 2]) >= (
                    c[m - 1] - c[m - 2]) * (si - s[m - 2]):
                m -= 1
            s[m] = si
            c[m] = ci
            m += 1
    hs, hc = hs[:m].copy(), hc[:m].copy()
    breaks = np.full(m, np.inf)
    if m > 1:
        breaks[:-1] = (hc[:-1] - hc[1:]) / (hs[1:] - hs[:-1])
    return hs, hc, breaks


# --------------------------------------------------------------------- kept logits

@cython.boundscheck(False)
@cython.wraparound(False)
def kept_logit_counts(const float[:, ::1] net, const float[:, ::1] reach, Py_ssize_t k,
                      float[::1] kth, int64_t[::1] counts, int n_threads):
    """Per row i: ``kth[i]``, the ``k``-th largest ``net[i, j]`` over the labels
    with ``reach[i, j] == 0`` (counting ties; -inf if there are fewer than k),
    and ``counts[i]``, how many labels have ``reach[i, j] != 0`` or
    ``net[i, j] >= kth[i]`` (those :func:`kept_logits` writes). ``k >= 1``."""
    cdef const sks_kernels *K = get_kernels()
    cdef Py_ssize_t i, n_labels = net.shape[1]
    cdef sks_idx n_best
    cdef float bar
    cdef float* best
    cdef int32_t* best_id
    cdef int32_t* reached
    with nogil, parallel(num_threads=n_threads):
        # each thread's k best so far (scan_mixed's, the reached labels' list unread)
        best = <float*>malloc(k * sizeof(float))
        best_id = <int32_t*>malloc(k * sizeof(int32_t))
        reached = <int32_t*>malloc(max(n_labels, 1) * sizeof(int32_t))
        for i in prange(net.shape[0], schedule="static"):
            # (assigned here, so each thread has its own: the kernel writes
            # it through the pointer)
            n_best = 0
            K.scan_mixed(&reach[i, 0], &net[i, 0], n_labels, k, reached, best_id, best,
                         &n_best)
            bar = best[k - 1] if n_best == k else -INFINITY
            kth[i] = bar
            counts[i] = K.count_kept(&reach[i, 0], &net[i, 0], n_labels, bar)
        free(best)
        free(best_id)
        free(reached)


@cython.boundscheck(False)
@cython.wraparound(False)
def kept_logits(const float[:, ::1] net, const float[:, ::1] reach, const float[::1] kth,
                const int64_t[::1] indptr, int32_t[::1] cols, float[::1] values,
                int n_threads):
    """Write the labels :func:`kept_logit_counts` counted, row i's at
    ``indptr[i]:indptr[i + 1]`` of ``cols``, by id, and their logits in ``values``."""
    cdef const sks_kernels *K = get_kernels()
    cdef Py_ssize_t i, n_labels = net.shape[1]
    with nogil:
        for i in prange(net.shape[0], num_threads=n_threads, schedule="static"):
            if indptr[i + 1] > indptr[i]:
                K.write_kept(&reach[i, 0], &net[i, 0], n_labels, kth[i], 0, &cols[indptr[i]],
                             &values[indptr[i]])


# rows a thread screens per call of the tile kernel: a multiple of 32 (two
# row tiles), with about SCREEN_CHUNK_BYTES of screened scores
cdef enum:
    SCREEN_CHUNK_BYTES = 1 << 19
    SCREEN_MAX_ROWS = 256


@cython.boundscheck(False)
@cython.wraparound(False)
def screened_topk(const float[:, ::1] hidden, const float[:, ::1] W2, const float[::1] b2,
                  const uint16_t[::1] packed, Py_ssize_t k_steps, const float[::1] w_norms,
                  const float[::1] b_twice, float c_net, const int32_t[::1] X_indptr,
                  const int32_t[::1] X_indices, const float[::1] X_data, dense,
                  const float[::1] dense_max, float scale, Py_ssize_t k, Py_ssize_t max_cand,
                  int n_threads):
    """The top k of ``full_scores`` (ids and score bits) from the AMX screening.

    Scores ``hidden @ W2.T + b2`` for every label with bfloat16 products on
    the tile unit (``packed``, ``k_steps``: W2 by ``pack_bf16_tiles``), then
    adds ``scale`` times the head's scores of the rows from its dense copy
    ``dense`` (None for no head) in float32, the row's features in order as
    ``add_scores_dense`` adds them but with one FMA each; keeps the labels whose
    upper bound reaches the k-th best lower bound (the screening kernels'
    ``select``), and scores those again as ``output_scores`` then
    ``add_scores_dense`` do: the same float32 operations in the same order,
    so the same bits. (The head's terms in float32 rather than bfloat16:
    the rescoring then gathers them from the feature rows the row has just
    read, in cache, and the bound leaves them out.)

    ``w_norms`` are W2's rows' norms rounded up, ``b_twice`` ``2 |b2|``;
    ``dense_max[f]`` the largest ``|dense[f, j]|``; ``c_net`` the net's bound
    factor (``_inference.screen_bound``). The bound of label j adds to the
    net's ``c_net |h| |w_j|``:

    - ``SKS_SCREEN_ABS (|h| + |w_j| + 1)`` for the subnormals the tiles flush;
    - the float32 sums of the bias and head terms after the net's, the same
      terms added in the same order on both paths, which differ only by
      roundings: the sums' at most ``2 (nnz + 1) 2^-24 M_j`` with ``M_j =
      |s_j| + bnet_j + 2 |b_j| + 2 P`` bounding every partial sum, ``P =
      sum_f |x_f| dense_max[f]`` over the row's scaled values x_f (times
      ``1 + 2^-6`` for its own float32 sum), and the float32 path's rounded
      products (the FMAs' are exact) at most ``2^-24 P <= 2^-24 M_j / 2``
      more; ``e2 = 8 (nnz + 2) 2^-24`` is four times the sums' factor, which
      also covers those products and the roundings of the bound and of ``s_j
      - b_j`` and ``s_j + b_j`` themselves (each within ``2^-24 (|s_j| +
      b_j)``).

    Returns ids, scores and the rows left to full scoring (a score or bound
    not finite, or more than ``max_cand`` candidates), whose ids and scores
    are to be overwritten. The caller checks that the screening is in use,
    that the shapes agree, and that the rows and operands are finite.
    """
    cdef const sks_kernels *K = get_kernels()
    cdef const sks_screen_kernels *S = get_screen_kernels()
    cdef Py_ssize_t n = hidden.shape[0], H = hidden.shape[1], L = W2.shape[0]
    cdef Py_ssize_t n_tiles = (L + 15) // 16, Lp = 16 * n_tiles, Hp = 32 * k_steps
    cdef Py_ssize_t rows = min(<Py_ssize_t> SCREEN_MAX_ROWS,
                               max(32, SCREEN_CHUNK_BYTES // (4 * Lp) // 32 * 32))
    cdef Py_ssize_t n_chunks = (n + rows - 1) // rows
    cdef int nt = max(1, min(n_threads, n_chunks))
    cdef bint use_head = dense is not None
    cdef const float[:, ::1] dv = dense if use_head else np.zeros((1, 1), np.float32)
    cdef Py_ssize_t width = dv.shape[1]
    cdef Py_ssize_t max_nnz = 1
    if S == NULL:
        raise RuntimeError("the AMX screening is not in use")
    if use_head and n:
        max_nnz = max(1, int(np.diff(np.asarray(X_indptr)).max()))
    ids = np.zeros((n, k), dtype=np.int32)
    vals = np.zeros((n, k), dtype=np.float32)
    full = np.zeros(n, dtype=np.uint8)
    hb = np.zeros((nt, rows, Hp), dtype=np.uint16)
    buf = np.empty((nt, rows, Lp), dtype=np.float32)
    cand = np.empty((nt, L), dtype=np.int32)
    hi = np.empty((nt, L), dtype=np.float32)
    exact = np.empty((nt, L), dtype=np.float32)
    low = np.empty((nt, k), dtype=np.float32)
    top = np.empty((nt, k), dtype=np.int32)
    xs = np.empty((nt, max_nnz), dtype=np.float32)
    cdef int32_t[:, ::1] iv = ids, cv = cand, tv = top
    cdef float[:, ::1] vv = vals, hv = hi, ev = exact, lv = low, xv = xs
    cdef uint8_t[::1] fv = full
    cdef uint16_t[:, :, ::1] hbv = hb
    cdef float[:, :, ::1] sv = buf
    cdef Py_ssize_t c, r0, nr, npad, r, i, q, st, nnz, t, count, got
    cdef int tid
    cdef float inv, p_row, b_row, e2, cw, hn
    cdef float *srow
    # |h| from its float32 sum of squares, rounded up: that sum of H non-negative
    # terms is within (H + 64) 2^-24 of the exact one
    cdef float sq_up = 1.0 + (H + 64) / 8388608.0
    # the largest label norm and bias term (select's first bound a row)
    cdef float maxima[2]
    maxima[0] = np.max(w_norms) if L else 0.0
    maxima[1] = np.max(b_twice) if L else 0.0
    with nogil:
        for c in prange(n_chunks, num_threads=nt, schedule="dynamic"):
            tid = threadid()
            r0 = c * rows
            nr = min(rows, n - r0)
            npad = (nr + 15) // 16 * 16
            for r in range(nr):
                K.f32_to_bf16(&hidden[r0 + r, 0], <sks_bf16 *> &hbv[tid, r, 0], H)
            if npad > nr:
                memset(&hbv[tid, nr, 0], 0, (npad - nr) * Hp * sizeof(uint16_t))
            S.screen(<const sks_bf16 *> &hbv[tid, 0, 0], Hp, npad,
                     <const sks_bf16 *> &packed[0], n_tiles, k_steps, &sv[tid, 0, 0], Lp)
            for r in range(nr):
                i = r0 + r
                srow = &sv[tid, r, 0]
                K.axpy(1.0, &b2[0], srow, L)
                nnz = 0
                st = X_indptr[i]
                p_row = 0.0
                if use_head:
                    # the values the head's scores multiply, as add_scores_dense's
                    inv = inv_row_norm(X_indptr, X_data, i) * scale
                    nnz = X_indptr[i + 1] - st
                    for t in range(nnz):
                        xv[tid, t] = X_data[st + t] * inv
                        p_row = p_row + fabsf(xv[tid, t]) * dense_max[X_indices[st + t]]
                    if nnz > 0:
                        K.sparse_dense_accum(&X_indices[st], &xv[tid, 0], nnz,
                                             &dv[0, 0], width, L, srow)
                    # (1 + 2^-6): P's own float32 sum
                    p_row = p_row * (1.0 + 1.0 / 64.0)
                hn = (sqrtf(K.dot(&hidden[i, 0], &hidden[i, 0], H) * sq_up)
                      * (1.0 + 1.0 / 4194304.0))
                cw = c_net * hn + SKS_SCREEN_ABS
                b_row = SKS_SCREEN_ABS * (hn + 1.0)
                e2 = 8.0 * (nnz + 2) / 16777216.0
                count = S.select(srow, &w_norms[0], &b_twice[0], maxima, L, cw, b_row, e2,
                                 2.0 * p_row, k, max_cand, &cv[tid, 0], &hv[tid, 0],
                                 &lv[tid, 0])
                if count < k:
                    fv[i] = 1
                    continue
                S.rescore(&hidden[i, 0], &W2[0, 0], H, H, L, &cv[tid, 0], count, &b2[0],
                          &ev[tid, 0])
                if nnz > 0:
                    S.head_exact(&X_indices[st], &xv[tid, 0], nnz, &dv[0, 0], width,
                                 &cv[tid, 0], count, &ev[tid, 0])
                for q in range(count):
                    if not fabsf(ev[tid, q]) <= 3.0e38:
                        fv[i] = 1
                        break
                if fv[i]:
                    continue
                got = K.topk(&ev[tid, 0], count, k, &tv[tid, 0], &vv[i, 0])
                for q in range(got):
                    iv[i, q] = cv[tid, tv[tid, q]]
    return ids, vals, np.flatnonzero(full)
