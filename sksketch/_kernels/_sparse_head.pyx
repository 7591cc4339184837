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
``add_scores`` treats rows independently, so its result does not depend on
the thread count; ``train_batch`` runs on the calling thread (the head's
work per row is a few thousand multiply-adds) and is deterministic.
"""

cimport cython
from cython.parallel cimport prange
from libc.math cimport exp, expf, log, sqrt
from libc.stdint cimport int32_t, int64_t, uint8_t

from ._adam cimport AdamStep, adam_constants
from ._simd cimport get_kernels, sks_kernels


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
    cdef Py_ssize_t i, p, k
    cdef int32_t f
    cdef float xv, inv
    with nogil:
        for i in prange(scores.shape[0], num_threads=n_threads, schedule="static"):
            inv = inv_row_norm(X_indptr, X_data, i) * scale
            for p in range(X_indptr[i], X_indptr[i + 1]):
                f = X_indices[p]
                xv = X_data[p] * inv
                for k in range(indptr[f], indptr[f + 1]):
                    scores[i, labels[k]] += xv * weights[k]


@cython.boundscheck(False)
@cython.wraparound(False)
@cython.cdivision(True)
cdef inline void softmax_gradients(float[::1] acc, int32_t[::1] reached,
                                   uint8_t[::1] label_mark,
                                   const int32_t[::1] Y_indptr, const int32_t[::1] Y_indices,
                                   int64_t i, Py_ssize_t n_reached, int32_t n_labels,
                                   double n_true, float w, float grad_scale,
                                   double* loss_sum, double* weight_sum) noexcept nogil:
    """Softmax cross-entropy over all labels of row i: its loss, and in ``acc`` the
    gradients ``w * grad_scale * (p_j - t_j)`` of the labels it reaches."""
    cdef Py_ssize_t t, p
    cdef int32_t j
    cdef double mx, z, loss, inv_z
    cdef double s_true = 0.0
    for p in range(Y_indptr[i], Y_indptr[i + 1]):
        j = Y_indices[p]
        if label_mark[j]:
            s_true += acc[j]
    # softmax over all labels: the unreached ones score 0
    mx = 0.0 if n_reached < n_labels else acc[reached[0]]
    for t in range(n_reached):
        if acc[reached[t]] > mx:
            mx = acc[reached[t]]
    # exp(s_j - max) once per reached label, kept in acc
    z = (n_labels - n_reached) * exp(-mx)
    for t in range(n_reached):
        j = reached[t]
        acc[j] = expf(<float>(acc[j] - mx))
        z += acc[j]
    loss = mx + log(z) - s_true / n_true
    loss_sum[0] += w * loss
    weight_sum[0] += w
    # logit gradients w * grad_scale * (p_j - t_j), in acc
    inv_z = 1.0 / z
    for t in range(n_reached):
        j = reached[t]
        acc[j] = <float>(acc[j] * inv_z)
    for p in range(Y_indptr[i], Y_indptr[i + 1]):
        j = Y_indices[p]
        if label_mark[j]:
            acc[j] -= <float>(1.0 / n_true)
    for t in range(n_reached):
        acc[reached[t]] *= w * grad_scale


@cython.boundscheck(False)
@cython.wraparound(False)
@cython.cdivision(True)
def train_batch(const int32_t[::1] X_indptr, const int32_t[::1] X_indices,
                const float[::1] X_data,
                const int32_t[::1] Y_indptr, const int32_t[::1] Y_indices,
                const int64_t[::1] rows, const float[::1] row_weights,
                const int64_t[::1] indptr, const int32_t[::1] labels,
                float[::1] weights, float[::1] m, float[::1] v,
                float[::1] grad, uint8_t[::1] feature_mark, int32_t[::1] touched,
                float[::1] acc, uint8_t[::1] label_mark, int32_t[::1] reached,
                int32_t n_labels, float grad_scale,
                double lr, double beta_1, double beta_2, double epsilon, int64_t step,
                int loss_kind):
    """One Adam step of the head's loss on a batch of rows.

    ``loss_kind`` 0 is the softmax cross-entropy over all labels with targets
    ``1/k`` on each of a row's ``k`` labels; 1 is the one-vs-rest squared
    hinge ``sum_j max(0, 1 - y_j s_j)^2`` (``y_j`` +1 on the row's labels, -1
    elsewhere), whose terms for the labels the row does not reach are
    constants (they score 0 and have no pair to move). Each row's gradient
    is multiplied by its weight and ``grad_scale``. Only the pairs the batch
    reaches, all the pairs of the features of its labelled rows, are updated
    (their moments too: lazy Adam, bias-corrected at ``step``). Scratch:
    ``grad`` (zeros) of the pairs' size, ``feature_mark`` (zeros) and
    ``touched`` of the features' size, ``acc`` and ``label_mark`` (zeros)
    and ``reached`` of size ``n_labels``; ``grad``, ``feature_mark`` and
    ``label_mark`` are left as zeros.

    Returns the weighted sum of the rows' losses (for the squared hinge,
    without the constant 1 of each unreached negative label) and the sum of
    their weights.
    """
    cdef Py_ssize_t b, p, k, t, n_touched = 0, n_reached
    cdef int64_t i
    cdef int32_t f, j
    cdef float xv, inv, w, g
    cdef double mx, z, loss, loss_sum = 0.0, weight_sum = 0.0, n_true, s_true
    cdef double mk, vk
    cdef AdamStep a = adam_constants(lr, beta_1, beta_2, epsilon, 0, step)
    cdef const sks_kernels *K = get_kernels()
    with nogil:
        for b in range(rows.shape[0]):
            i = rows[b]
            w = row_weights[b]
            n_true = Y_indptr[i + 1] - Y_indptr[i]
            if n_true == 0:
                continue
            inv = inv_row_norm(X_indptr, X_data, i)
            # scores of the labels the row reaches
            n_reached = 0
            for p in range(X_indptr[i], X_indptr[i + 1]):
                f = X_indices[p]
                xv = X_data[p] * inv
                for k in range(indptr[f], indptr[f + 1]):
                    j = labels[k]
                    if not label_mark[j]:
                        label_mark[j] = 1
                        acc[j] = 0.0
                        reached[n_reached] = j
                        n_reached += 1
                    acc[j] += xv * weights[k]
            if loss_kind == 1:
                # squared hinge, one-vs-rest: (max(0, 1 - y_j s_j))^2 with
                # y_j = +1 on the row's labels and -1 elsewhere; the labels
                # the row does not reach score 0 and have no pair to move
                for p in range(Y_indptr[i], Y_indptr[i + 1]):
                    j = Y_indices[p]
                    if label_mark[j]:
                        label_mark[j] = 2
                loss = n_true
                for t in range(n_reached):
                    j = reached[t]
                    if label_mark[j] == 2:
                        loss -= 1.0
                        mk = 1.0 - acc[j]
                        if mk > 0.0:
                            loss += mk * mk
                            acc[j] = <float>(-2.0 * mk * w * grad_scale)
                        else:
                            acc[j] = 0.0
                    else:
                        mk = 1.0 + acc[j]
                        if mk > 0.0:
                            loss += mk * mk
                            acc[j] = <float>(2.0 * mk * w * grad_scale)
                        else:
                            acc[j] = 0.0
                loss_sum += w * loss
                weight_sum += w
            else:
                softmax_gradients(acc, reached, label_mark, Y_indptr, Y_indices, i, n_reached,
                                  n_labels, n_true, w, grad_scale, &loss_sum, &weight_sum)
            # pair gradients x_f * g_j; a feature's pairs are one range
            for p in range(X_indptr[i], X_indptr[i + 1]):
                f = X_indices[p]
                xv = X_data[p] * inv
                if not feature_mark[f]:
                    feature_mark[f] = 1
                    touched[n_touched] = f
                    n_touched += 1
                for k in range(indptr[f], indptr[f + 1]):
                    grad[k] += xv * acc[labels[k]]
            for t in range(n_reached):
                label_mark[reached[t]] = 0
        # lazy Adam on the pairs the batch reached, a feature's range at a time
        for t in range(n_touched):
            f = touched[t]
            feature_mark[f] = 0
            k = indptr[f]
            if indptr[f + 1] > k:
                K.adam(&weights[k], &m[k], &v[k], &grad[k], indptr[f + 1] - k, a.lr_t,
                       beta_1, beta_2, a.eps_t, 1.0)
    return loss_sum, weight_sum


@cython.boundscheck(False)
@cython.wraparound(False)
def mixed_top(const float[:, ::1] net, const float[:, ::1] head, const float[::1] weights,
              int32_t[:, :, ::1] top, float[:, :, ::1] best, int n_threads):
    """``top[i, g, :]``: the labels of the ``k`` largest ``net[i, j] + weights[g] * head[i, j]``.

    ``k = top.shape[2]``, best first; among equal values the lower label
    first, as a stable sort (``top[i, g, 0]`` is ``numpy.argmax``'s label).
    ``best`` (the same shape) receives the values. One pass over a row's
    labels per weight, rows in parallel. ``net`` and ``head`` have the same
    shape, with at least ``k`` labels (``k >= 1``); every ``top`` entry is a
    label id, NaN values included.
    """
    cdef Py_ssize_t i, j, g, r
    cdef Py_ssize_t n_labels = net.shape[1], k = top.shape[2]
    cdef float w, v, worst
    with nogil:
        for i in prange(net.shape[0], num_threads=n_threads, schedule="static"):
            for g in range(weights.shape[0]):
                w = weights[g]
                # the first k labels, sorted (stable: a later label never
                # passes an equal earlier one)
                for j in range(k):
                    v = net[i, j] + w * head[i, j]
                    r = j
                    while r > 0 and best[i, g, r - 1] < v:
                        best[i, g, r] = best[i, g, r - 1]
                        top[i, g, r] = top[i, g, r - 1]
                        r = r - 1
                    best[i, g, r] = v
                    top[i, g, r] = <int32_t>j
                worst = best[i, g, k - 1]
                for j in range(k, n_labels):
                    v = net[i, j] + w * head[i, j]
                    if v > worst:
                        r = k - 1
                        while r > 0 and best[i, g, r - 1] < v:
                            best[i, g, r] = best[i, g, r - 1]
                            top[i, g, r] = top[i, g, r - 1]
                            r = r - 1
                        best[i, g, r] = v
                        top[i, g, r] = <int32_t>j
                        worst = best[i, g, k - 1]
