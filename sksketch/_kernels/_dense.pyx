"""Element-wise kernels of dense networks trained through BLAS.

The matrix products of a dense multilayer network go through BLAS (NumPy's
float32 ``matmul``); what is left between them is element-wise and memory
bound: bias and ReLU after a product, the ReLU mask on the way back, the
soft-label softmax cross-entropy and its gradient, and the Adam step. These
kernels do those parts in place, in parallel over rows (OpenMP, GIL
released), with the SIMD primitives (softmax, dot, Adam) of ``_simd``.

All arrays are float32 and C-contiguous, and every index is validated by the
caller: these functions trust their inputs. Each has a plain NumPy reference
in the tests.
"""

cimport cython
from cython.parallel cimport prange
from libc.stdint cimport int32_t

from ._adam cimport AdamStep, adam_constants
from ._simd cimport get_kernels, sks_kernels

# Adam runs on flat parameter blocks of this many elements per task.
cdef enum:
    _ADAM_BLOCK = 16384


def bias_relu(float[:, ::1] Z, const float[::1] bias, bint relu, int n_threads):
    """``Z += bias`` on every row, then ``Z = max(Z, 0)`` when `relu`.

    # IN/OUT: Z (n_rows, n_units); IN: bias (n_units,).
    """
    cdef Py_ssize_t n = Z.shape[0], d = Z.shape[1], i, j
    cdef float v
    if bias.shape[0] != d:
        raise ValueError(f"bias has {bias.shape[0]} values, Z has {d} columns")
    with nogil:
        for i in prange(n, schedule="static", num_threads=n_threads):
            if relu:
                for j in range(d):
                    v = Z[i, j] + bias[j]
                    Z[i, j] = v if v > 0 else 0
            else:
                for j in range(d):
                    Z[i, j] = Z[i, j] + bias[j]


def relu_backward(float[:, ::1] G, const float[:, ::1] A, int n_threads):
    """``G[A <= 0] = 0``: the gradient through a ReLU whose output is `A`.

    # IN/OUT: G (n_rows, n_units); IN: A, same shape.
    """
    cdef Py_ssize_t n = G.shape[0], d = G.shape[1], i, j
    if A.shape[0] != n or A.shape[1] != d:
        raise ValueError("G and A must have the same shape")
    with nogil:
        for i in prange(n, schedule="static", num_threads=n_threads):
            for j in range(d):
                if A[i, j] <= 0:
                    G[i, j] = 0


def soft_label_cross_entropy(
    const float[:, ::1] logits,
    const int32_t[::1] targets,
    float target_mass,
    const float[:, ::1] unseen_targets,
    const int32_t[::1] unseen_ids,
    const float[::1] weights,
    float scale,
    float[:, ::1] grad,
    float[::1] losses,
    int n_threads,
):
    """Cross-entropy against soft labels, and its gradient w.r.t. the logits.

    Row ``i`` of the soft-label target puts ``target_mass`` on its class
    ``targets[i]`` and ``unseen_targets[targets[i], k]`` on class
    ``unseen_ids[k]``; every other entry is 0 (the targets are never built as
    an (n_rows, n_classes) array). With ``p = softmax(logits[i])``:

        losses[i] = logsumexp(logits[i]) * sum(t) - t . logits[i]
        grad[i]   = weights[i] * scale * (p * sum(t) - t)

    # IN: logits (n_rows, n_classes); targets (n_rows,) in [0, n_classes);
    #     unseen_targets (n_classes, n_unseen); unseen_ids (n_unseen,);
    #     weights (n_rows,).
    # OUT: grad (n_rows, n_classes), may not alias logits; losses (n_rows,).
    """
    cdef const sks_kernels *K = get_kernels()
    cdef Py_ssize_t n = logits.shape[0], C = logits.shape[1]
    cdef Py_ssize_t n_unseen = unseen_ids.shape[0], i, j, k, y
    cdef float lse, total, dot_t, t, w
    if (targets.shape[0] != n or weights.shape[0] != n or losses.shape[0] != n
            or grad.shape[0] != n or grad.shape[1] != C
            or unseen_targets.shape[1] != n_unseen or unseen_targets.shape[0] < C
            and n_unseen > 0):
        raise ValueError("soft_label_cross_entropy: inconsistent array shapes")
    if n > 0 and C == 0:
        raise ValueError("soft_label_cross_entropy: logits have no classes")
    for i in range(n):
        if targets[i] < 0 or targets[i] >= C:
            raise ValueError(f"targets[{i}] = {targets[i]} is not in [0, {C})")
    for k in range(n_unseen):
        if unseen_ids[k] < 0 or unseen_ids[k] >= C:
            raise ValueError(f"unseen_ids[{k}] = {unseen_ids[k]} is not in [0, {C})")
    with nogil:
        for i in prange(n, schedule="static", num_threads=n_threads):
            y = targets[i]
            lse = K.softmax(&logits[i, 0], C, &grad[i, 0])
            total = target_mass
            dot_t = target_mass * logits[i, y]
            for k in range(n_unseen):
                t = unseen_targets[y, k]
                total = total + t
                dot_t = dot_t + t * logits[i, unseen_ids[k]]
            losses[i] = lse * total - dot_t
            w = weights[i] * scale
            for j in range(C):
                grad[i, j] = grad[i, j] * (total * w)
            grad[i, y] -= target_mass * w
            for k in range(n_unseen):
                grad[i, unseen_ids[k]] -= unseen_targets[y, k] * w


def adam_step(
    float[::1] param,
    float[::1] m,
    float[::1] v,
    float[::1] g,
    Py_ssize_t step,
    float learning_rate,
    float beta_1,
    float beta_2,
    float epsilon,
    float weight_decay,
    int n_threads,
):
    """One Adam step with decoupled weight decay (AdamW) on a flat block.

    ``m = b1 m + (1 - b1) g``, ``v = b2 v + (1 - b2) g^2``,
    ``param = param (1 - lr decay) - lr_t m / (sqrt(v) + eps_t)`` with the
    bias corrections of step `step` (>= 1) folded into ``lr_t`` and
    ``eps_t``; `g` is reset to 0.

    # IN/OUT: param, m, v, g, all of the same length.
    """
    cdef const sks_kernels *K = get_kernels()
    cdef Py_ssize_t n = param.shape[0]
    cdef Py_ssize_t n_blocks = (n + _ADAM_BLOCK - 1) // _ADAM_BLOCK, b, start, length
    cdef AdamStep a = adam_constants(learning_rate, beta_1, beta_2, epsilon, weight_decay, step)
    if m.shape[0] != n or v.shape[0] != n or g.shape[0] != n:
        raise ValueError("param, m, v and g must have the same length")
    if n == 0:
        return
    with nogil:
        for b in prange(n_blocks, schedule="static", num_threads=n_threads):
            start = b * _ADAM_BLOCK
            length = min(_ADAM_BLOCK, n - start)
            K.adam(&param[start], &m[start], &v[start], &g[start], length,
                   a.lr_t, beta_1, beta_2, a.eps_t, a.shrink)
