"""SLIDE kernels: LSH-sparse forward/backward, lazy Adam and top-k inference.

Network: sparse input -> dense hidden layer (ReLU) -> output layer over all
labels, of which each example touches only an *active set*: its true labels,
the labels in its LSH buckets, and random labels up to a minimum.

Layouts (contiguous, row-major): the input layer ``W1`` is input-major
(n_features, H), so each non-zero feature streams one row of H weights; the
output layer ``W2`` is output-major (n_labels, H), so each active label is one
dot product with the hidden vector.

Training is lock-free and parallel (see ``train_batch``): the examples of a
batch in parallel, then the weight updates with each row owned by one thread,
so that threads never write the same row. Only the rows a batch touched are
updated: the input layer's through a gradient array and ``adam_update``; the
output layer's (most of the work when labels are many) by
``update_output_layer``, which adds up each row's gradient and applies Adam in
one pass, without a gradient array. Inputs are validated by the caller: these
functions trust indices.
"""

import numpy as np

from ._rows import csr_index_problem

cimport cython
from cython.parallel cimport parallel, prange, threadid
from libc.math cimport INFINITY, expm1, log1p, logf, powf, sqrtf
from libc.stdint cimport int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcmp, memcpy, memset

from ._adam cimport AdamStep, adam_constants
from ._lsh cimport LSHTables
from ._random cimport bounded, mix64, next64
from ._rows cimport csr_arrays_problem
from ._simd cimport get_kernels, sks_bf16, sks_idx, sks_kernels


cdef extern from "simd_topk.h" nogil:
    # the bounded min-heap of the top-k kernels (root: the worst kept entry)
    void sks_heap_sift_down(float *val, int32_t *idx, sks_idx size, sks_idx pos)
    void sks_heap_offer(float v, int32_t i, int32_t *idx, float *val, sks_idx k)


# Owners of input-layer rows per thread in train_batch's second phase.
cdef enum:
    PARTS_PER_THREAD = 4

# How train_batch picks negatives; `mode` is the index in MODES.
MODES = ("lsh-embedding", "lsh-label", "uniform", "unigram", "full", "exact")
cdef enum:
    MODE_LSH_EMBEDDING = 0
    MODE_LSH_LABEL = 1
    MODE_UNIFORM = 2
    MODE_UNIGRAM = 3
    MODE_FULL = 4
    MODE_EXACT = 5


cdef Py_ssize_t exact_negatives(
        const float *h, const float *W2, const float *b2, Py_ssize_t n_labels, Py_ssize_t H,
        Py_ssize_t m, uint32_t *st, uint32_t stamp, float *heap_val,
        int32_t *out) noexcept nogil:
    """The `m` labels of highest logit ``h . W2[j] + b2[j]`` not stamped `stamp`, into `out`.

    Scores every label (the forward cost of the full softmax); equal logits
    go to the lower label id. Stamps the labels it returns; returns how many
    (fewer than `m` only when fewer labels are left). `heap_val` is scratch
    of `m` floats. The order of `out` is the heap's, not the ranking.
    """
    cdef const sks_kernels *K = get_kernels()
    cdef Py_ssize_t j, c, n = 0
    cdef float z
    if m <= 0:
        return 0
    for j in range(n_labels):
        if st[j] == stamp:
            continue
        z = K.dot(h, &W2[j * H], H) + b2[j]
        if n < m:
            heap_val[n] = z
            out[n] = <int32_t>j
            n = n + 1
            if n == m:
                for c in range(m // 2 - 1, -1, -1):
                    sks_heap_sift_down(heap_val, out, m, c)
        else:  # labels come in increasing id order, as the heap wants them
            sks_heap_offer(z, <int32_t>j, out, heap_val, m)
    for j in range(n):
        st[out[j]] = stamp
    return n


cdef inline void relu_row(float* row, Py_ssize_t n) noexcept nogil:
    """``row[c] = 0 if row[c] < 0 else row[c]``: NaN and -0.0 stay as they are.

    A select over a plain pointer, which the compiler vectorises (compare and
    mask): the branch it replaced mispredicted on a quarter of the units and
    cost more than the layer's sums (Delicious' test set: 2.5 of 5 ms).
    """
    cdef Py_ssize_t c
    cdef float v
    for c in range(n):
        v = row[c]
        row[c] = 0.0 if v < 0 else v


cdef inline void relu_grad_row(const float* h, float* gh, Py_ssize_t n) noexcept nogil:
    """``gh[c] = 0 where h[c] <= 0``: the gradient through the ReLU (a select, as
    :func:`relu_row`)."""
    cdef Py_ssize_t c
    cdef float g
    for c in range(n):
        g = gh[c]
        gh[c] = 0.0 if h[c] <= 0 else g


cdef inline bint kept(uint64_t drop_seed, Py_ssize_t entry, uint32_t drop_below) noexcept nogil:
    # Input dropout decides each non-zero by a hash of its position in the
    # CSR data, so the forward pass and the gradient pass (run by different
    # threads) drop the same entries without storing a mask.
    return <uint32_t>(mix64(drop_seed ^ (<uint64_t>entry * <uint64_t>0xD1B54A32D192ED03)) >> 32) >= drop_below


cdef inline uint32_t draw_cdf(uint64_t *rng, const double[::1] cdf) noexcept nogil:
    """A label drawn from cumulative probabilities (cdf[-1] == 1)."""
    cdef double u = <double>(next64(rng) >> 11) * (1.0 / 9007199254740992.0)
    cdef Py_ssize_t lo = 0, hi = cdf.shape[0] - 1, mid
    while lo < hi:
        mid = (lo + hi) >> 1
        if cdf[mid] <= u:
            lo = mid + 1
        else:
            hi = mid
    return <uint32_t>lo


cdef inline float retrieval_probability(
        float cosine, const float[::1] cp_table, int n_hashes_per_table,
        int n_tables) noexcept nogil:
    """1 - (1 - cp^K)^L, with cp interpolated from its table over [-1, 1]."""
    cdef Py_ssize_t nb = cp_table.shape[0] - 1, idx
    cdef float x = (cosine + 1) * 0.5 * nb, frac, cp
    if x <= 0:
        cp = cp_table[0]
    elif x >= nb:
        cp = cp_table[nb]
    else:
        idx = <Py_ssize_t>x
        frac = x - idx
        cp = cp_table[idx] * (1 - frac) + cp_table[idx + 1] * frac
    return 1 - powf(1 - powf(cp, <float>n_hashes_per_table), <float>n_tables)


cdef inline float unigram_inclusion(const double[::1] label_cdf, int32_t label,
                                    Py_ssize_t tries) noexcept nogil:
    """1 - (1 - p)^tries: the chance that `tries` draws from `label_cdf` hit `label`."""
    cdef double pl = label_cdf[label] - (label_cdf[label - 1] if label > 0 else 0)
    pl = -expm1(tries * log1p(-pl)) if pl < 1 else 1
    return <float>pl


cdef void inclusion_log_weights(
        int mode, Py_ssize_t n_labels, Py_ssize_t n_true, Py_ssize_t n_det,
        Py_ssize_t n_act, Py_ssize_t tries, const int32_t *active, const float *dots,
        const float *query, float query_norm, Py_ssize_t H, const float *W2,
        const float[::1] row_norms,
        const float[::1] cp_table, const double[::1] label_cdf,
        int n_hashes_per_table, int n_tables, bint fill_unigram,
        float *out) noexcept nogil:
    """-log(inclusion probability) of each negative active[n_true:n_act].

    Uniform labels drawn to fill the set: n_random / (n_labels - n_det) each.
    Unigram labels, drawn `tries` times: q_i = 1 - (1 - p_i)^tries (p_i > 0),
    both in unigram mode and as the fill of the LSH modes (`fill_unigram`).
    LSH candidates: p + (1 - p) * q, p their retrieval probability from the
    cosine of query and weight row, q the fill's probability for that label.
    A retrieved label's probability is floored at 1 / n_labels, as a table
    that returned it cannot have had a negligible chance to.
    `dots` holds the hidden activation's dot products with the active rows
    (without bias): the query's own when the query is the hidden activation.
    """
    cdef const sks_kernels *K = get_kernels()
    cdef Py_ssize_t j
    cdef float q_u = 0, q, p, cosine, dot, floor = 1.0 / n_labels, log_q_u
    for j in range(n_true):
        out[j] = 0
    if mode == MODE_UNIGRAM:
        for j in range(n_true, n_act):
            out[j] = -logf(unigram_inclusion(label_cdf, active[j], tries))
        return
    if fill_unigram:
        for j in range(n_det, n_act):
            out[j] = -logf(unigram_inclusion(label_cdf, active[j], tries))
    else:
        if n_act > n_det:
            q_u = <float>(n_act - n_det) / <float>(n_labels - n_det)
            log_q_u = -logf(q_u)
            for j in range(n_det, n_act):
                out[j] = log_q_u
    if n_det == n_true:
        return
    for j in range(n_true, n_det):
        dot = K.dot(query, &W2[active[j] * H], H) if mode == MODE_LSH_LABEL else dots[j]
        cosine = dot / (query_norm * row_norms[active[j]] + 1e-30)
        p = retrieval_probability(cosine, cp_table, n_hashes_per_table, n_tables)
        q = unigram_inclusion(label_cdf, active[j], tries) if fill_unigram else q_u
        out[j] = -logf(max(p + (1 - p) * q, floor))


def train_batch(
    LSHTables tables,
    const int32_t[::1] X_indptr, const int32_t[::1] X_indices, const float[::1] X_data,
    const int32_t[::1] Y_indptr, const int32_t[::1] Y_indices,
    const int64_t[::1] batch,
    const float[::1] weights,
    const float[:, ::1] W1, const float[::1] b1,
    const float[:, ::1] W2, const float[::1] b2,
    const uint16_t[:, ::1] W2_bf16,
    float[:, ::1] gW1, float[::1] gb1,
    uint8_t[::1] touched_in,
    float[:, ::1] hb, int32_t[:, ::1] ab, float[:, ::1] gb, float[:, ::1] ghb,
    uint32_t[:, ::1] stamps, uint32_t stamp_base,
    Py_ssize_t max_active, Py_ssize_t min_active,
    int mode, bint use_bf16, float inv_batch_size,
    uint64_t seed, int n_threads,
    float[::1] losses,
    int32_t[::1] n_active,
    bint correct,
    const double[::1] label_cdf, const float[::1] cp_table, const float[::1] row_norms,
    float input_dropout=0,
):
    """One batch of SLIDE training: the forward and backward passes.

    Phase 1 runs the examples in parallel: forward pass, active set, softmax
    over it, and the gradient with respect to the hidden layer; it only reads
    the weights. For example ``i`` it leaves its hidden activation in
    ``hb[i]``, its active labels in ``ab[i, :n_active[i]]`` and the gradient
    of the loss with respect to their logits in ``gb[i]``: the output layer's
    gradient is then ``sum_i gb[i, j] * hb[i]`` on row ``ab[i, j]``, which
    :func:`update_output_layer` adds up and applies row by row. Phase 2 adds
    the input layer's gradient: thread t owns the rows with
    ``row % n_threads == t`` and adds every example's contribution to them in
    batch order. No two threads write the same row, so no update is lost and
    the result is the same for any number of threads.

    The negatives of an example (its active labels besides the true ones)
    come from `mode` (an index in ``MODES``): ``"lsh-embedding"`` the buckets of its hidden
    activation, ``"lsh-label"`` the buckets of the weight row of one of its
    true labels (drawn at random), then random labels up to `min_active`:
    uniform, or drawn from `label_cdf` when it is given (one entry per label); ``"uniform"`` uniform random labels and
    ``"unigram"`` labels drawn from `label_cdf` (cumulative label
    probabilities), up to `min_active`; ``"full"`` every label; ``"exact"``
    the labels of highest logit up to `min_active`, found by scoring every
    label (the hard negatives the LSH modes approximate; no correction, as
    nothing is drawn). With
    `correct`, each negative's logit is lowered by the log of its inclusion
    probability (see ``inclusion_log_weights``), so that the sampled
    softmax's normaliser estimates the full one.

    With `input_dropout` ``p > 0``, each non-zero of an example's input is
    left out of its forward and backward passes with probability ``p`` and
    the others are scaled by ``1 / (1 - p)`` (inverted dropout); which ones
    depends on `seed` and the entry's position in the CSR data only.

    # IN: the CSR data, the batch's row ids and weights, the parameters;
    # label_cdf (unigram mode), cp_table and row_norms (LSH modes with
    # correct: the collision probability on a grid of cosines in [-1, 1], and
    # the norms of W2's rows when the tables were built).
    # OUT: hb, ab, gb (rows [0, B)); ghb is scratch; input-layer gradients
    # (gW1, gb1) and touched flags, added to; per example the loss and the
    # active-set size (both 0 for a row with no label: such rows are skipped).
    # Buffers hold at least B rows; ab and gb at least max_active columns.
    """
    cdef const sks_kernels *K = get_kernels()
    cdef Py_ssize_t H = W1.shape[1]
    cdef Py_ssize_t n_labels = W2.shape[0]
    cdef Py_ssize_t B = batch.shape[0]
    cdef int n_hashes = tables.n_hashes_per_table * tables.n_tables
    cdef Py_ssize_t i, j, c, start, nnz, n_act, n_true, tries, owner, n_det
    cdef float query_norm
    cdef int64_t r
    cdef int tid
    cdef float w, scale, mean_true, lse, inv_true
    cdef uint32_t stamp, cand
    cdef uint64_t rng, fill_rng
    cdef uint32_t *st
    cdef float *h
    cdef float *gh
    cdef float *logits
    cdef float *grad
    cdef int32_t *active
    cdef int32_t *codes
    cdef int32_t *keys
    cdef float *exact_val
    cdef sks_bf16 *h16
    cdef const float *query
    cdef bint dropout = input_dropout > 0
    cdef float keep_scale = 1.0 / (1.0 - input_dropout) if dropout else 1.0
    cdef uint32_t drop_below = <uint32_t>(<double>input_dropout * 4294967296.0) if dropout else 0
    cdef uint64_t drop_seed = mix64(seed ^ <uint64_t>0xA0761D6478BD642F)
    cdef bint fill_unigram = (mode == MODE_LSH_EMBEDDING or mode == MODE_LSH_LABEL) and (
        label_cdf.shape[0] == n_labels and n_labels > 0)
    if B == 0:
        return
    if not 0 <= input_dropout < 1:
        raise ValueError(f"input_dropout must be in [0, 1), got {input_dropout}")
    # Never trust sizes inside the nogil loop: every buffer row must hold the
    # active set, and the active set all of an example's true labels.
    if max_active > n_labels or min_active > max_active:
        raise ValueError("need min_active <= max_active <= n_labels")
    if (hb.shape[0] < B or ab.shape[0] < B or gb.shape[0] < B or ghb.shape[0] < B
            or ab.shape[1] < max_active or gb.shape[1] < max_active
            or hb.shape[1] != H or ghb.shape[1] != H or losses.shape[0] < B
            or n_active.shape[0] < B or stamps.shape[0] < n_threads
            or stamps.shape[1] < n_labels):
        raise ValueError("a buffer is too small for the batch")
    for i in range(B):
        if Y_indptr[batch[i] + 1] - Y_indptr[batch[i]] > max_active:
            raise ValueError(
                f"row {batch[i]} has more true labels than max_active={max_active}")
    if mode == MODE_UNIGRAM and label_cdf.shape[0] != n_labels:
        raise ValueError("label_cdf must have one entry per label in unigram mode")
    if label_cdf.shape[0] not in (0, n_labels):
        raise ValueError("label_cdf must be empty or have one entry per label")
    if correct and (mode == MODE_LSH_EMBEDDING or mode == MODE_LSH_LABEL) and (
            row_norms.shape[0] != n_labels or cp_table.shape[0] < 2):
        raise ValueError("row_norms and cp_table are needed to correct LSH negatives")

    with nogil, parallel(num_threads=n_threads):
        h16 = <sks_bf16 *> malloc(H * sizeof(sks_bf16))
        logits = <float *> malloc(max_active * sizeof(float))
        codes = <int32_t *> malloc(n_hashes * sizeof(int32_t))
        keys = <int32_t *> malloc(tables.n_tables * sizeof(int32_t))
        exact_val = <float *> malloc(max_active * sizeof(float))
        for i in prange(B, schedule="dynamic", chunksize=4):
            tid = threadid()
            r = batch[i]
            w = weights[i]
            st = &stamps[tid, 0]
            stamp = stamp_base + <uint32_t>i + 1
            rng = mix64(seed ^ (<uint64_t>r * <uint64_t>0x9E3779B97F4A7C15))
            h = &hb[i, 0]
            gh = &ghb[i, 0]
            active = &ab[i, 0]
            grad = &gb[i, 0]

            # true labels first: the softmax target lives on active[0:n_true]
            n_act = 0
            for j in range(Y_indptr[r], Y_indptr[r + 1]):
                active[n_act] = Y_indices[j]
                st[Y_indices[j]] = stamp
                n_act = n_act + 1
            n_true = n_act
            losses[i] = 0
            n_active[i] = 0
            if n_true == 0:
                continue

            # hidden = relu(x @ W1 + b1)
            memcpy(h, &b1[0], H * sizeof(float))
            start = X_indptr[r]
            nnz = X_indptr[r + 1] - start
            if dropout:
                for j in range(start, start + nnz):
                    if kept(drop_seed, j, drop_below):
                        K.axpy(X_data[j] * keep_scale, &W1[X_indices[j], 0], h, H)
            elif nnz > 0:
                K.sparse_dense_accum(&X_indices[start], &X_data[start], nnz,
                                     &W1[0, 0], H, H, h)
            relu_row(h, H)

            query = NULL
            query_norm = 0
            if mode == MODE_LSH_EMBEDDING:
                query = h
                if correct:
                    query_norm = sqrtf(K.dot(h, h, H))
            elif mode == MODE_LSH_LABEL:
                j = active[bounded(&rng, <uint32_t>n_true)]
                query = &W2[j, 0]
                if correct:
                    query_norm = row_norms[j]
            if query != NULL:
                tables.hash_dense(query, codes, keys)
                n_act = tables.query_into(
                    keys, <int>bounded(&rng, <uint32_t>tables.n_tables), active, n_act,
                    max_active, st, stamp)
            n_det = n_act  # true labels and LSH candidates
            tries = 0
            if mode == MODE_FULL or min_active >= n_labels:
                for j in range(n_labels):
                    if st[j] != stamp:
                        st[j] = stamp
                        active[n_act] = <int32_t>j
                        n_act = n_act + 1
            elif mode == MODE_EXACT:
                n_act = n_act + exact_negatives(
                    h, &W2[0, 0], &b2[0], n_labels, H, min_active - n_act, st, stamp,
                    exact_val, &active[n_act])
            elif mode == MODE_UNIGRAM or fill_unigram:
                # one stream for the batch, as the uniform labels below
                fill_rng = mix64(seed ^ <uint64_t>0x8BB84B93962EACC9)
                while n_act < min_active and tries < 8 * min_active + 64:
                    cand = draw_cdf(&fill_rng, label_cdf)
                    tries = tries + 1
                    if st[cand] != stamp:
                        st[cand] = stamp
                        active[n_act] = <int32_t>cand
                        n_act = n_act + 1
            else:
                # One stream for the whole batch (a row skips the labels it
                # has): the rows share most of their random labels, so a
                # step updates a few hundred output rows instead of nearly
                # every row of a label set of tens of thousands. Each row's
                # labels are still uniform; see the user guide for the
                # measurements.
                fill_rng = mix64(seed ^ <uint64_t>0xD1B54A32D192ED03)
                while n_act < min_active and tries < 8 * min_active + 64:
                    cand = bounded(&fill_rng, <uint32_t>n_labels)
                    tries = tries + 1
                    if st[cand] != stamp:
                        st[cand] = stamp
                        active[n_act] = <int32_t>cand
                        n_act = n_act + 1

            if use_bf16:
                K.f32_to_bf16(h, h16, H)
                K.gather_dot_bf16(h16, &W2_bf16[0, 0], H, active, n_act, H, logits)
            else:
                K.gather_dot(h, &W2[0, 0], H, active, n_act, H, logits)
            if correct and mode != MODE_FULL and mode != MODE_EXACT and n_act < n_labels:
                # log weights go to grad[], free until the softmax
                inclusion_log_weights(
                    mode, n_labels, n_true, n_det, n_act, tries, active, logits,
                    query, query_norm, H, &W2[0, 0], row_norms, cp_table, label_cdf,
                    tables.n_hashes_per_table, tables.n_tables, fill_unigram, grad)
            else:
                for j in range(n_act):
                    grad[j] = 0
            mean_true = 0
            for j in range(n_act):
                logits[j] = logits[j] + b2[active[j]] + grad[j]
                if j < n_true:
                    mean_true = mean_true + logits[j]
            mean_true = mean_true / n_true
            lse = K.softmax(logits, n_act, grad)
            losses[i] = lse - mean_true
            n_active[i] = <int32_t>n_act

            # d loss / d logit = softmax - target, target 1/n_true on true labels
            scale = w * inv_batch_size
            inv_true = 1.0 / n_true
            for j in range(n_act):
                grad[j] = scale * (grad[j] - (inv_true if j < n_true else 0))

            # d loss / d hidden, from the same weights as the forward pass
            memset(gh, 0, H * sizeof(float))
            if use_bf16:
                K.sparse_dense_accum_bf16(active, grad, n_act, &W2_bf16[0, 0], H, H, gh)
            else:
                K.sparse_dense_accum(active, grad, n_act, &W2[0, 0], H, H, gh)
            relu_grad_row(h, gh, H)
        free(h16)
        free(logits)
        free(codes)
        free(keys)
        free(exact_val)

    # Rows are dealt to PARTS_PER_THREAD * n_threads owners, which the threads
    # take in turn: a thread held up (a core shared with another process)
    # then delays one small part, not half of the work. Each row still adds
    # its examples' contributions in batch order, so the sums are the same
    # bits for any number of parts and threads.
    cdef Py_ssize_t n_parts = PARTS_PER_THREAD * n_threads if n_threads > 1 else 1
    for owner in prange(n_parts, nogil=True, schedule="dynamic", chunksize=1,
                        num_threads=n_threads):
        for i in range(B):
            if n_active[i] == 0:
                continue
            for j in range(X_indptr[batch[i]], X_indptr[batch[i] + 1]):
                r = X_indices[j]
                if r % n_parts == owner and (not dropout or kept(drop_seed, j, drop_below)):
                    K.axpy(X_data[j] * keep_scale, &ghb[i, 0], &gW1[r, 0], H)
                    touched_in[r] = 1
    for i in range(B):
        if n_active[i] > 0:
            K.axpy(1.0, &ghb[i, 0], &gb1[0], H)


cdef inline void _accum4(const sks_kernels *K, const int32_t *examples, const float *pair_grad,
                         const int32_t *starts, Py_ssize_t nnz, const float *hb, Py_ssize_t ld,
                         Py_ssize_t H, float *acc) noexcept nogil:
    """sparse_dense_accum4 of the four rows whose pairs start at ``starts[0:4]`` in
    ``pair_grad`` (all over ``examples``), into ``acc``'s four rows of H.

    (The pointer arrays live on this call's stack: each thread its own.)
    """
    cdef const float *vals[4]
    cdef float *outs[4]
    cdef int t
    for t in range(4):
        vals[t] = pair_grad + starts[t]
        outs[t] = acc + t * H
    K.sparse_dense_accum4(examples, vals, nnz, hb, ld, H, outs)


def update_output_layer(
    const float[:, ::1] hb, const int32_t[:, ::1] ab, const float[:, ::1] gb,
    const int32_t[::1] n_active,
    float[:, ::1] W, float[::1] b, float[:, ::1] M, float[:, ::1] V,
    uint16_t[:, ::1] M16, uint16_t[:, ::1] V16,
    float[::1] Mb, float[::1] Vb, uint16_t[:, ::1] W_bf16,
    int32_t[::1] row_count, int32_t[::1] touched, int32_t[::1] row_start,
    int32_t[::1] pair_example, float[::1] pair_grad,
    float lr, float beta1, float beta2, float eps, Py_ssize_t step,
    float weight_decay, int n_threads,
):
    """Gradient accumulation and Adam on the output rows a batch touched, fused.

    The batch's (example, label) pairs left by :func:`train_batch` are grouped
    by label (a counting sort, in batch order); then each touched row's
    gradient ``sum_i gb[i, j] * hb[i]`` is added up in a thread-local buffer
    and Adam updates the row, its bias and, with `W_bf16`, its bfloat16 copy,
    in one pass over the row. No dense gradient array is written or read, and
    threads own disjoint rows. Returns the number of rows updated.

    # IN: hb, ab, gb, n_active (rows [0, B) with B = n_active.shape[0]).
    # IN/OUT: W, b and their Adam moments M, V (float32) or M16, V16
    # (bfloat16, stochastically rounded: the other pair has shape (0, 0)), Mb,
    # Vb; W_bf16 (shape (0, 0) for none). Scratch: row_count (n_labels, all zero on entry and on exit),
    # touched (n_labels), row_start (n_labels + 1), pair_example and pair_grad
    # (at least sum(n_active)).
    """
    cdef const sks_kernels *K = get_kernels()
    cdef Py_ssize_t B = n_active.shape[0], H = W.shape[1]
    cdef Py_ssize_t i, j, k, p, r, n_touched = 0, pos, grp, k0, cnt, t, nnz
    cdef bint same
    cdef AdamStep a = adam_constants(lr, beta1, beta2, eps, weight_decay, step)
    cdef float lr_t = a.lr_t, eps_t = a.eps_t, shrink = a.shrink
    cdef bint refresh = W_bf16.shape[0] == W.shape[0]
    cdef bint bf16_moments = M16.shape[0] == W.shape[0]
    cdef uint64_t step_seed = mix64(<uint64_t>step * <uint64_t>0x9E3779B97F4A7C15)
    cdef float g, m, v
    if bf16_moments:
        if M16.shape[1] != H or V16.shape[0] != W.shape[0] or V16.shape[1] != H:
            raise ValueError("M16 and V16 must have W's shape")
    elif M.shape[0] != W.shape[0] or M.shape[1] != H or V.shape[0] != W.shape[0] or (
            V.shape[1] != H):
        raise ValueError("M and V must have W's shape")
    if hb.shape[1] != H or hb.shape[0] < B:
        raise ValueError("hb must have a row of W.shape[1] values per example")
    cdef float *acc
    if B == 0 or H == 0:
        return 0
    with nogil:
        for i in range(B):
            for j in range(n_active[i]):
                r = ab[i, j]
                if row_count[r] == 0:
                    touched[n_touched] = <int32_t>r
                    n_touched = n_touched + 1
                row_count[r] += 1
        row_start[0] = 0
        for k in range(n_touched):
            r = touched[k]
            row_start[k + 1] = row_start[k] + row_count[r]
            row_count[r] = row_start[k]  # now the row's write cursor
        for i in range(B):
            for j in range(n_active[i]):
                r = ab[i, j]
                pos = row_count[r]
                pair_example[pos] = <int32_t>i
                pair_grad[pos] = gb[i, j]
                row_count[r] = <int32_t>(pos + 1)
        for k in range(n_touched):
            row_count[touched[k]] = 0
    if n_touched == 0:
        return 0
    with nogil, parallel(num_threads=n_threads):
        acc = <float *> malloc(4 * H * sizeof(float))
        memset(acc, 0, 4 * H * sizeof(float))
        # Rows four at a time (in the order touched). Four whose pairs come
        # from the same examples in the same order (every label of a full
        # softmax, the negatives a batch shares) sum their gradients in one
        # pass over those hidden rows (sparse_dense_accum4: the bits of one
        # sparse_dense_accum each); others one by one. Dynamic: rows are
        # independent, and a thread held up by a busy core leaves its rows
        # to the others.
        for grp in prange((n_touched + 3) // 4, schedule="dynamic", chunksize=4):
            k0 = 4 * grp
            cnt = min(4, n_touched - k0)
            nnz = row_start[k0 + 1] - row_start[k0]
            same = cnt == 4
            for t in range(1, cnt):
                if same and (row_start[k0 + t + 1] - row_start[k0 + t] != nnz or memcmp(
                        &pair_example[row_start[k0 + t]], &pair_example[row_start[k0]],
                        nnz * sizeof(int32_t)) != 0):
                    same = False
            if same:
                _accum4(K, &pair_example[row_start[k0]], &pair_grad[0], &row_start[k0], nnz,
                        &hb[0, 0], hb.shape[1], H, acc)
            for t in range(cnt):
                k = k0 + t
                r = touched[k]
                g = 0
                # acc += pair_grad[p] * hb[pair_example[p]] for the row's pairs
                # in order: the axpys of each pair, with acc held in registers
                # across the pairs (the same FMAs in the same order)
                if not same:
                    K.sparse_dense_accum(&pair_example[row_start[k]], &pair_grad[row_start[k]],
                                         row_start[k + 1] - row_start[k], &hb[0, 0],
                                         hb.shape[1], H, acc + t * H)
                for p in range(row_start[k], row_start[k + 1]):
                    g = g + pair_grad[p]
                # Adam resets the row's acc to zero for the next group.
                if bf16_moments:
                    K.adam_bf16_moments(&W[r, 0], &M16[r, 0], &V16[r, 0], acc + t * H, H, lr_t,
                                        beta1, beta2, eps_t, shrink,
                                        <uint32_t>mix64(step_seed ^ r))
                else:
                    K.adam(&W[r, 0], &M[r, 0], &V[r, 0], acc + t * H, H, lr_t, beta1, beta2,
                           eps_t, shrink)
                if refresh:
                    K.f32_to_bf16(&W[r, 0], &W_bf16[r, 0], H)
                m = beta1 * Mb[r] + (1 - beta1) * g
                v = beta2 * Vb[r] + (1 - beta2) * g * g
                Mb[r] = m
                Vb[r] = v
                b[r] = b[r] - lr_t * m / (sqrtf(v) + eps_t)
        free(acc)
    return n_touched


def adam_update(float[:, ::1] W, float[:, ::1] M, float[:, ::1] V, float[:, ::1] G,
                const uint8_t[::1] touched, float lr, float beta1, float beta2,
                float eps, Py_ssize_t step, int n_threads,
                uint16_t[:, ::1] W_bf16=None, float weight_decay=0):
    """Bias-corrected Adam on the touched rows of W; their gradient is reset.

    With `weight_decay`, touched rows also shrink by ``lr * weight_decay``
    (decoupled weight decay, as in AdamW). With `W_bf16`, the bfloat16 copy
    of each updated row is refreshed too.
    """
    cdef const sks_kernels *K = get_kernels()
    cdef Py_ssize_t n = W.shape[0], d = W.shape[1], r
    cdef AdamStep a = adam_constants(lr, beta1, beta2, eps, weight_decay, step)
    cdef float lr_t = a.lr_t, eps_t = a.eps_t, shrink = a.shrink
    cdef bint refresh = W_bf16 is not None and W_bf16.shape[0] == n
    if (M.shape[0] != n or M.shape[1] != d or V.shape[0] != n or V.shape[1] != d
            or G.shape[0] != n or G.shape[1] != d or touched.shape[0] != n):
        raise ValueError("M, V and G must have W's shape, touched one entry per row")
    if refresh and W_bf16.shape[1] != d:
        raise ValueError("W_bf16 must have W's shape")
    if n == 0 or d == 0:
        return
    for r in prange(n, nogil=True, schedule="dynamic", chunksize=256, num_threads=n_threads):
        if not touched[r]:
            continue
        K.adam(&W[r, 0], &M[r, 0], &V[r, 0], &G[r, 0], d, lr_t, beta1, beta2, eps_t, shrink)
        if refresh:
            K.f32_to_bf16(&W[r, 0], &W_bf16[r, 0], d)


# Stamps mark labels already in an example's active set; they are per thread
# and must never wrap around, so they are reset well before 2**32.
STAMP_LIMIT = 2**32 - 2**20

_NONE_F32 = np.zeros((0, 0), dtype=np.float32)
_NONE_U16 = np.zeros((0, 0), dtype=np.uint16)


@cython.final
cdef class TrainingWorkspace:
    """What the batches of one ``fit`` or ``partial_fit`` call share.

    The model's arrays and Adam's moments (bound for the call and updated in
    place), the call's settings, and the scratch buffers of
    :func:`train_batch` and :func:`update_output_layer`: the input layer's
    dense gradient and touched-row flags, per example of a batch its hidden
    activation, active labels, their logit gradients and the hidden layer's
    gradient, the output update's grouping by label, and the per-thread
    stamps. A batch then needs only its rows: :meth:`forward_backward`, then
    :meth:`update`.

    Parameters
    ----------
    W1, b1, W2, b2 : float32 arrays
        The layers, (n_features, H), (H,), (n_labels, H), (n_labels,).
    W2_bf16 : uint16 array of shape (n_labels, H) or None
        The output layer's bfloat16 copy (``use_bf16``), refreshed by :meth:`update`.
    moments : dict
        Adam's moments: ``m_in``, ``v_in`` (W1's shape), ``m_in_bias``,
        ``v_in_bias`` (1, H), ``m_out``, ``v_out`` (W2's shape, float32, or
        uint16 for bfloat16 moments), ``m_out_bias``, ``v_out_bias`` (n_labels, 1).
    batch_size, active_size : int
        Most rows of a batch, and most labels of an example's active set.
    budget, min_active, mode, use_bf16, correct, input_dropout
        As :func:`train_batch` takes them.
    n_threads : int
    """

    cdef object W1, b1, W2, b2, W2_bf16
    cdef object m_in, v_in, m_in_bias, v_in_bias, m_out, v_out, m_out_bias, v_out_bias
    cdef object label_cdf, cp_table, row_norms
    cdef readonly Py_ssize_t batch_size, active_size, budget, min_active
    cdef readonly int mode, n_threads
    cdef readonly bint use_bf16, correct
    cdef readonly float input_dropout
    cdef readonly object input_grad, input_bias_grad, touched_inputs
    cdef readonly object hidden, active, logit_grad, hidden_grad
    cdef readonly object row_count, touched_rows, row_start, pair_example, pair_grad
    cdef readonly object stamps
    cdef readonly uint32_t stamp_base

    def __init__(self, W1, b1, W2, b2, W2_bf16, dict moments, *, Py_ssize_t batch_size,
                 Py_ssize_t active_size, Py_ssize_t budget, Py_ssize_t min_active, int mode,
                 bint use_bf16, bint correct, float input_dropout, int n_threads):
        cdef Py_ssize_t F = W1.shape[0], H = W1.shape[1], L = W2.shape[0]
        if use_bf16 and (W2_bf16 is None or W2_bf16.shape != W2.shape):
            raise ValueError("use_bf16 needs W2_bf16 of W2's shape")
        self.W1, self.b1, self.W2, self.b2 = W1, b1, W2, b2
        self.W2_bf16 = W2_bf16 if use_bf16 else _NONE_U16
        self.m_in, self.v_in = moments["m_in"], moments["v_in"]
        self.m_in_bias, self.v_in_bias = moments["m_in_bias"], moments["v_in_bias"]
        self.m_out, self.v_out = moments["m_out"], moments["v_out"]
        self.m_out_bias = moments["m_out_bias"].ravel()
        self.v_out_bias = moments["v_out_bias"].ravel()
        self.batch_size, self.active_size = batch_size, active_size
        self.budget, self.min_active, self.mode = budget, min_active, mode
        self.use_bf16, self.correct, self.input_dropout = use_bf16, correct, input_dropout
        self.n_threads = n_threads
        self.set_sampling()
        # input layer: a dense gradient, applied to the rows a batch touched
        self.input_grad = np.zeros((F, H), dtype=np.float32)
        self.input_bias_grad = np.zeros((1, H), dtype=np.float32)
        self.touched_inputs = np.zeros(F, dtype=np.uint8)
        # per example of a batch
        self.hidden = np.empty((batch_size, H), dtype=np.float32)
        self.active = np.empty((batch_size, active_size), dtype=np.int32)
        self.logit_grad = np.empty((batch_size, active_size), dtype=np.float32)
        self.hidden_grad = np.empty((batch_size, H), dtype=np.float32)
        # the output layer's fused update groups the batch's pairs by label
        self.row_count = np.zeros(L, dtype=np.int32)
        self.touched_rows = np.empty(L, dtype=np.int32)
        self.row_start = np.empty(L + 1, dtype=np.int32)
        self.pair_example = np.empty(batch_size * active_size, dtype=np.int32)
        self.pair_grad = np.empty(batch_size * active_size, dtype=np.float32)
        self.stamps = np.zeros((n_threads, max(L, 1)), dtype=np.uint32)
        self.stamp_base = 0

    def set_n_threads(self, int n_threads):
        """Threads of the following batches: from 1 to the count it was made for."""
        if n_threads < 1 or n_threads > self.stamps.shape[0]:
            raise ValueError(
                f"n_threads must be in [1, {self.stamps.shape[0]}], got {n_threads}")
        self.n_threads = n_threads

    def set_sampling(self, label_cdf=None, cp_table=None, row_norms=None):
        """The label frequencies (unigram draws) and, for the log-q correction of
        LSH negatives, the collision table and the hashed rows' norms."""
        self.label_cdf = np.zeros(0, np.float64) if label_cdf is None else label_cdf
        self.cp_table = np.zeros(0, np.float32) if cp_table is None else cp_table
        self.row_norms = np.zeros(0, np.float32) if row_norms is None else row_norms

    @property
    def nbytes(self):
        """Bytes of the scratch buffers."""
        return sum(a.nbytes for a in (
            self.input_grad, self.input_bias_grad, self.touched_inputs, self.hidden,
            self.active, self.logit_grad, self.hidden_grad, self.row_count, self.touched_rows,
            self.row_start, self.pair_example, self.pair_grad, self.stamps))

    def forward_backward(self, LSHTables tables, X, Y, const int64_t[::1] batch,
                         const float[::1] weights, uint64_t seed):
        """:func:`train_batch` on rows `batch` of the CSR matrices X and Y.

        Returns each row's loss and active-set size (float32, int32).
        """
        cdef Py_ssize_t B = batch.shape[0]
        if B > self.batch_size:
            raise ValueError(f"a batch of {B} rows, the workspace holds {self.batch_size}")
        losses = np.empty(B, dtype=np.float32)
        n_active = np.empty(B, dtype=np.int32)
        if self.stamp_base + B >= STAMP_LIMIT:
            self.stamps.fill(0)
            self.stamp_base = 0
        train_batch(
            tables, X.indptr, X.indices, X.data, Y.indptr, Y.indices, batch, weights,
            self.W1, self.b1, self.W2, self.b2, self.W2_bf16,
            self.input_grad, self.input_bias_grad[0], self.touched_inputs,
            self.hidden, self.active, self.logit_grad, self.hidden_grad,
            self.stamps, self.stamp_base, self.budget, self.min_active, self.mode,
            self.use_bf16, 1.0 / B if B else 0.0, seed, self.n_threads, losses, n_active,
            self.correct, self.label_cdf, self.cp_table, self.row_norms, self.input_dropout,
        )
        self.stamp_base += <uint32_t>B
        return losses, n_active

    def update(self, const int32_t[::1] n_active, float lr, float beta1, float beta2,
               float eps, Py_ssize_t step, float weight_decay):
        """Adam on what the last :meth:`forward_backward` touched (its `n_active`)."""
        cdef Py_ssize_t B = n_active.shape[0]
        f32 = self.m_out.dtype == np.float32
        update_output_layer(
            self.hidden[:B], self.active[:B], self.logit_grad[:B], n_active,
            self.W2, self.b2,
            self.m_out if f32 else _NONE_F32, self.v_out if f32 else _NONE_F32,
            _NONE_U16 if f32 else self.m_out, _NONE_U16 if f32 else self.v_out,
            self.m_out_bias, self.v_out_bias, self.W2_bf16,
            self.row_count, self.touched_rows, self.row_start, self.pair_example,
            self.pair_grad, lr, beta1, beta2, eps, step, weight_decay, self.n_threads,
        )
        adam_update(self.W1, self.m_in, self.v_in, self.input_grad, self.touched_inputs,
                    lr, beta1, beta2, eps, step, self.n_threads, None, weight_decay)
        # one row: a thread team would only add a barrier per batch
        adam_update(self.b1[None, :], self.m_in_bias, self.v_in_bias, self.input_bias_grad,
                    _ONE_ROW, lr, beta1, beta2, eps, step, 1)
        self.touched_inputs.fill(0)


_ONE_ROW = np.ones(1, dtype=np.uint8)


def hidden_forward(const int32_t[::1] X_indptr, const int32_t[::1] X_indices,
                   const float[::1] X_data, const float[:, ::1] W1,
                   const float[::1] b1, int n_threads):
    """relu(X @ W1 + b1) for CSR X, shape (n_rows, H), float32."""
    cdef const sks_kernels *K = get_kernels()
    cdef Py_ssize_t n = X_indptr.shape[0] - 1, H = W1.shape[1], i, c, start
    if b1.shape[0] != H:
        raise ValueError(f"b1 has {b1.shape[0]} values, W1 has {H} columns")
    if n < 0 or X_indices.shape[0] != X_data.shape[0] or (
            n > 0 and (X_indptr[0] != 0 or X_indptr[n] > X_indices.shape[0])):
        raise ValueError("X_indptr, X_indices and X_data do not form a CSR matrix")
    cdef int bad
    with nogil:
        bad = csr_arrays_problem(&X_indptr[0], n, &X_indices[0] if X_indices.shape[0] else NULL,
                                 X_indices.shape[0], W1.shape[0])
    if bad == 1:
        raise ValueError("X_indptr must be non-decreasing")
    if bad == 2:
        raise ValueError(f"X_indices must be in [0, {W1.shape[0]})")
    # rows on cache lines (output_scores then reads them in place)
    out = aligned_array((n, H))
    cdef float[:, ::1] o = out
    if n == 0 or H == 0:
        return out
    for i in prange(n, nogil=True, schedule="static", num_threads=n_threads):
        memcpy(&o[i, 0], &b1[0], H * sizeof(float))
        start = X_indptr[i]
        if X_indptr[i + 1] > start:
            K.sparse_dense_accum(&X_indices[start], &X_data[start],
                                 X_indptr[i + 1] - start, &W1[0, 0], H, H, &o[i, 0])
        relu_row(&o[i, 0], H)
    return out


def add_label_sums(const int32_t[::1] T_indptr, const int32_t[::1] T_indices,
                   const float[:, ::1] h, float[:, ::1] sums, const int32_t[::1] labels,
                   int n_threads):
    """``sums[j] += sum of h[r]`` over the rows r of each label j in ``labels``.

    ``T_indptr``, ``T_indices``: the rows' labels by label (CSC), each
    label's rows in increasing order. A label's sum starts at 0 and adds its
    rows in that order, then goes to ``sums[j]`` in one addition: the bits of
    ``sums[labels] += (Y[:, labels].T @ h)`` with scipy (whose product adds
    ``1.0 * h[r]`` row by row), without its ``len(labels) x H`` result. The
    labels are shared out among the threads.
    """
    cdef Py_ssize_t n_labels = T_indptr.shape[0] - 1, H = h.shape[1], t, p, c, j
    cdef Py_ssize_t n = labels.shape[0]
    if sums.shape[1] != H or sums.shape[0] < n_labels:
        raise ValueError(f"sums of shape ({sums.shape[0]}, {sums.shape[1]}) does not take "
                         f"{n_labels} labels of {H} values")
    if n and (np.min(labels) < 0 or np.max(labels) >= n_labels):
        raise ValueError(f"labels must be in [0, {n_labels})")
    # (the compressed-index check the estimators' input takes)
    if csr_index_problem(T_indptr, T_indices, h.shape[0], T_indices.shape[0]):
        raise ValueError(f"T_indptr and T_indices do not index rows of h in [0, "
                         f"{h.shape[0]}) by label")
    if n == 0 or H == 0:
        return
    acc = np.empty((max(1, n_threads), H), dtype=np.float32)
    cdef float[:, ::1] av = acc
    cdef float* a
    cdef const float* row
    cdef float* out
    for t in prange(n, nogil=True, schedule="static", num_threads=max(1, n_threads)):
        a = &av[threadid(), 0]
        j = labels[t]
        memset(a, 0, H * sizeof(float))
        for p in range(T_indptr[j], T_indptr[j + 1]):
            row = &h[T_indices[p], 0]
            for c in range(H):
                a[c] = a[c] + row[c]
        out = &sums[j, 0]
        for c in range(H):
            out[c] = out[c] + a[c]


def topk_rows(const float[:, ::1] scores, Py_ssize_t k, int n_threads):
    """Per row, the k best columns (ties: lower index) and their scores."""
    cdef const sks_kernels *K = get_kernels()
    cdef Py_ssize_t n = scores.shape[0], m = scores.shape[1], i
    k = min(k, m)
    idx = np.empty((n, k), dtype=np.int32)
    val = np.empty((n, k), dtype=np.float32)
    cdef int32_t[:, ::1] iv = idx
    cdef float[:, ::1] vv = val
    if n == 0 or k == 0:
        return idx, val
    for i in prange(n, nogil=True, schedule="static", num_threads=n_threads):
        K.topk(&scores[i, 0], m, k, &iv[i, 0], &vv[i, 0])
    return idx, val


# Labels per block of output_scores (the unit the threads share out): a
# multiple of every variant's gather_dot group (4 or 8 rows).
cdef enum:
    SCORE_BLOCK = 256
    # floats of W2 per tile of output_scores: 16 KB, half an L1 data cache
    SCORE_TILE_FLOATS = 4096
    # rows from which output_scores copies its operands to aligned rows
    # (the copy of a W2 block costs what scoring a row against it does)
    ALIGNED_MIN_ROWS = 8


def aligned_array(shape, dtype=np.float32, zeros=False):
    """An array of `shape` whose first byte is on a 64-byte boundary.

    numpy's large arrays start 16 bytes past one; with rows of a multiple of
    64 bytes (256 hidden units), every row of an aligned array starts on a
    cache line, and the kernels' 64-byte loads of a row never straddle two.
    ``zeros``: zero-filled (by the allocator, page by page as they are first
    touched).
    """
    dtype = np.dtype(dtype)
    n = int(np.prod(shape))
    buf = (np.zeros if zeros else np.empty)(n * dtype.itemsize + 64, dtype=np.uint8)
    skip = (-buf.ctypes.data) % 64
    return buf[skip : skip + n * dtype.itemsize].view(dtype).reshape(shape)


def _aligned_rows(Py_ssize_t n, Py_ssize_t width):
    """A float32 (n, width) array whose rows start on 64-byte boundaries.

    ``width`` is rounded up to 16 floats: returns the padded array; the
    caller uses its first columns.
    """
    return aligned_array((n, (width + 15) // 16 * 16))


def output_scores(const float[:, ::1] hidden, const float[:, ::1] W2, const float[::1] b2,
                  int n_threads):
    """``hidden @ W2.T + b2`` (float32), each entry independent of the batch.

    An entry is the same bits whatever the number of rows, their order or the
    thread count: labels are split into fixed blocks of SCORE_BLOCK, each
    entry is one gather_dot of a hidden row with a W2 row (rows go in pairs
    through gather_dot2, which gives the same bits), and which group of the
    variant's kernel computes it depends on the label index alone. (A BLAS
    product picks its kernel and summation order by the matrix shape and the
    thread count, so a row scored alone can differ in the last bits from the
    same row scored in a batch.) The threads share out the label blocks, and
    with fewer blocks than threads (Bibtex's 159 labels are one) the rows of
    each block too.

    From ALIGNED_MIN_ROWS rows on, the hidden rows and each block of W2 are
    first copied to rows that start on 64-byte boundaries (numpy's arrays
    start 16 bytes past one, and a 64-byte load that straddles two cache
    lines costs two): the same arithmetic on other addresses, so the same
    bits. Hidden rows that already start on such boundaries (those of
    hidden_forward, with a multiple of 16 units) are read in place.
    """
    cdef const sks_kernels *K = get_kernels()
    cdef Py_ssize_t n = hidden.shape[0], H = hidden.shape[1], L = W2.shape[0]
    cdef Py_ssize_t blk, n_blocks, j0, m, i, i2, j, q, t0, mt, r, rb, r0, r1, ldw
    cdef Py_ssize_t u, n_units, n_parts, part, lo, hi
    cdef int tid
    if W2.shape[1] != H or b2.shape[0] != L:
        raise ValueError(
            f"hidden has {H} columns, W2 has shape ({W2.shape[0]}, {W2.shape[1]}) and b2 "
            f"{b2.shape[0]} entries: they do not match"
        )
    scores = np.empty((n, L), dtype=np.float32)
    if n == 0 or L == 0:
        return scores
    if H == 0:
        scores[...] = np.asarray(b2)
        return scores
    # row ids within a block, relative to the block's first W2 row
    cdef int32_t block_ids[SCORE_BLOCK]
    for j in range(SCORE_BLOCK):
        block_ids[j] = <int32_t> j
    cdef float[:, ::1] sv = scores
    cdef Py_ssize_t tile = max(8, min(<Py_ssize_t> SCORE_BLOCK, SCORE_TILE_FLOATS // H // 8 * 8))
    # rows per pass over a block's tiles: about a tile's floats (the rows and
    # a tile then share the L1 cache), even
    cdef Py_ssize_t rows_per = max(2, SCORE_TILE_FLOATS // H // 2 * 2)
    n_blocks = (L + SCORE_BLOCK - 1) // SCORE_BLOCK
    # With fewer label blocks than threads, each block's rows are cut into
    # parts too (a unit is a block's part); the rows of a part start at an
    # even row, and an entry is computed the same way in any part.
    n_parts = 1
    if n_blocks < n_threads:
        # (n >= 1 here: at least one part)
        n_parts = min((n_threads + n_blocks - 1) // n_blocks, (n + rows_per - 1) // rows_per)
    n_units = n_blocks * n_parts
    n_threads = max(1, min(n_threads, n_units))
    cdef bint aligned = n >= ALIGNED_MIN_ROWS
    cdef const float[:, ::1] hv = hidden
    cdef float[:, ::1] blocks
    cdef const float *wb
    ldw = H
    if aligned:
        if H % 16 or (<size_t> &hidden[0, 0]) % 64:
            hv_copy = _aligned_rows(n, H)
            hv_copy[:, :H] = np.asarray(hidden)
            hv = hv_copy
        # (else every row already starts on a cache line: hidden_forward's are)
        # a block of W2 rows per thread, each row on a 64-byte boundary
        blocks = _aligned_rows(n_threads * SCORE_BLOCK, H)
        ldw = blocks.shape[1]
    for u in prange(n_units, nogil=True, schedule="static", num_threads=n_threads):
        blk = u // n_parts
        part = u % n_parts
        lo = (n * part // n_parts) // 2 * 2
        hi = n if part == n_parts - 1 else (n * (part + 1) // n_parts) // 2 * 2
        j0 = blk * SCORE_BLOCK
        m = min(<Py_ssize_t> SCORE_BLOCK, L - j0)
        if aligned:
            tid = threadid()
            for r in range(m):
                memcpy(&blocks[tid * SCORE_BLOCK + r, 0], &W2[j0 + r, 0], H * sizeof(float))
            wb = &blocks[tid * SCORE_BLOCK, 0]
        else:
            wb = &W2[j0, 0]
        # Rows a few at a time, each over the block's tiles of `tile`
        # weight rows: the rows and a tile stay in the L1 cache, the block
        # in L2. Rows go two at a time sharing the weight loads; gather_dot2
        # gives each row the bits gather_dot gives it alone, and a tile
        # starts at a multiple of 8 labels (every variant's group), so every
        # entry is computed as without tiles.
        for rb in range((hi - lo + rows_per - 1) // rows_per):
            r0 = lo + rb * rows_per
            r1 = min(hi, r0 + rows_per)
            for q in range((m + tile - 1) // tile):
                t0 = q * tile
                mt = min(tile, m - t0)
                for i2 in range((r1 - r0) // 2):
                    i = r0 + 2 * i2
                    K.gather_dot2(&hv[i, 0], &hv[i + 1, 0], wb + t0 * ldw, ldw, block_ids, mt,
                                  H, &sv[i, j0 + t0], &sv[i + 1, j0 + t0])
                if (r1 - r0) % 2:
                    K.gather_dot(&hv[r1 - 1, 0], wb + t0 * ldw, ldw, block_ids, mt, H,
                                 &sv[r1 - 1, j0 + t0])
            # the bias while the rows' scores are still in cache
            for i in range(r0, r1):
                for j in range(j0, j0 + m):
                    sv[i, j] = sv[i, j] + b2[j]
    return scores
