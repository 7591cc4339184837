"""Run-time dispatched SIMD primitives.

The variant (``scalar``, ``avx2``, ``avx512``, ``avx512_bf16``) is chosen once,
at import, as the best one the CPU and OS support; the environment variable
``SKSKETCH_ISA`` forces a lower one. Compiled kernels reach the chosen table
with ``cimport`` (see ``_simd.pxd``); the Python functions below wrap each
primitive for tests and benchmarks, validate their inputs, release the GIL,
accept ``isa=`` to run a given variant instead of the active one, and
``repeat=`` to run the kernel that many times in one call (so benchmarks time
the kernel, not the Python call).
"""

import os
import warnings

import numpy as np

from libc.stdint cimport int32_t, uint16_t, uint64_t


cdef extern from "simd.h" nogil:
    ctypedef struct sks_cpu_features:
        int sse2, avx, fma, avx2
        int avx512f, avx512bw, avx512dq, avx512vl, avx512_bf16
        int os_avx, os_avx512

    void sks_detect_cpu(sks_cpu_features *features)
    int sks_isa_compiled(int isa)
    int sks_isa_supported(const sks_cpu_features *features, int isa)
    const sks_kernels *sks_kernels_for(int isa)
    const sks_screen_kernels *sks_screen_kernels_get()
    int sks_screen_compiled()


ISA_NAMES = ("scalar", "avx2", "avx512", "avx512_bf16")
ISA_ENV_VAR = "SKSKETCH_ISA"

cdef sks_cpu_features _cpu
cdef const sks_kernels *_active = NULL


cdef const sks_kernels *get_kernels() noexcept nogil:
    return _active


def _choose_isa(requested):
    """Index of the variant to use for the value of SKSKETCH_ISA."""
    supported = [i for i in range(len(ISA_NAMES)) if sks_isa_supported(&_cpu, i)]
    best = max(supported)
    requested = (requested or "").strip().lower()
    if not requested:
        return best
    if requested not in ISA_NAMES:
        warnings.warn(
            f"{ISA_ENV_VAR}={requested!r} is not one of {', '.join(ISA_NAMES)}; "
            f"using {ISA_NAMES[best]!r}",
            RuntimeWarning,
            stacklevel=2,
        )
        return best
    index = ISA_NAMES.index(requested)
    if index not in supported:
        warnings.warn(
            f"{ISA_ENV_VAR}={requested!r} is not supported by this CPU or build; "
            f"using {ISA_NAMES[best]!r}",
            RuntimeWarning,
            stacklevel=2,
        )
        return best
    return index


sks_detect_cpu(&_cpu)
_active = sks_kernels_for(_choose_isa(os.environ.get(ISA_ENV_VAR)))


# SKSKETCH_AMX=0 turns the tile unit's screening off (the float32 path scores
# every label, with the same results)
SCREEN_ENV_VAR = "SKSKETCH_AMX"
cdef const sks_screen_kernels *_screen = NULL


cdef const sks_screen_kernels *get_screen_kernels() noexcept nogil:
    return _screen


def _screen_status():
    """Whether the AMX screening is in use, and why not when it is not."""
    if not sks_screen_compiled():
        return "not built (the compiler lacks AMX, or not x86-64 Linux)"
    value = os.environ.get(SCREEN_ENV_VAR, "").strip().lower()
    if value in ("0", "false", "no", "off"):
        return f"off ({SCREEN_ENV_VAR}={value})"
    if _active.isa < 2:
        return f"off (the active variant is {ISA_NAMES[_active.isa]!r})"
    if sks_screen_kernels_get() == NULL:
        return "not supported by this CPU or OS"
    return "active"


_screen_state = _screen_status()
if _screen_state == "active":
    _screen = sks_screen_kernels_get()


def _require_screen():
    """RuntimeError, saying why, where the tile unit's kernels are not in use."""
    if _screen == NULL:
        raise RuntimeError(f"the AMX screening is not in use: {_screen_state}")


def screen_status():
    """``"active"`` when the output layer is screened on AMX tiles, else why not."""
    return _screen_state


def active_isa():
    """Name of the variant the kernels use."""
    return ISA_NAMES[_active.isa]


def supported_isas():
    """Variants this CPU, OS and build can run, lowest first."""
    return [name for i, name in enumerate(ISA_NAMES) if sks_isa_supported(&_cpu, i)]


def compiled_isas():
    """Variants compiled into this build, whatever the CPU."""
    return [name for i, name in enumerate(ISA_NAMES) if sks_isa_compiled(i)]


def cpu_features():
    """The CPUID and XCR0 facts the choice was made from."""
    return {
        "sse2": bool(_cpu.sse2),
        "avx": bool(_cpu.avx),
        "fma": bool(_cpu.fma),
        "avx2": bool(_cpu.avx2),
        "avx512f": bool(_cpu.avx512f),
        "avx512bw": bool(_cpu.avx512bw),
        "avx512dq": bool(_cpu.avx512dq),
        "avx512vl": bool(_cpu.avx512vl),
        "avx512_bf16": bool(_cpu.avx512_bf16),
        "os_saves_ymm": bool(_cpu.os_avx),
        "os_saves_zmm": bool(_cpu.os_avx512),
    }


cdef const sks_kernels *_table(isa) except NULL:
    if isa is None:
        return _active
    if isa not in ISA_NAMES:
        raise ValueError(f"isa must be None or one of {ISA_NAMES}, got {isa!r}")
    index = ISA_NAMES.index(isa)
    if not sks_isa_supported(&_cpu, index):
        raise ValueError(f"isa={isa!r} is not supported on this machine")
    return sks_kernels_for(index)


# Pointers to the first element, or NULL for an empty view (whose element 0
# does not exist; the kernels never dereference a pointer for length 0).
cdef inline const float *_fptr(const float[::1] a) noexcept nogil:
    return &a[0] if a.shape[0] > 0 else NULL


cdef inline float *_wfptr(float[::1] a) noexcept nogil:
    return &a[0] if a.shape[0] > 0 else NULL


cdef inline const uint16_t *_hptr(const uint16_t[::1] a) noexcept nogil:
    return &a[0] if a.shape[0] > 0 else NULL


cdef inline const int32_t *_iptr(const int32_t[::1] a) noexcept nogil:
    return &a[0] if a.shape[0] > 0 else NULL


cdef inline const float *_fptr2(const float[:, ::1] a) noexcept nogil:
    return &a[0, 0] if a.shape[0] > 0 and a.shape[1] > 0 else NULL


cdef inline const uint16_t *_hptr2(const uint16_t[:, ::1] a) noexcept nogil:
    return &a[0, 0] if a.shape[0] > 0 and a.shape[1] > 0 else NULL


cdef int _check_rows(const int32_t[::1] rows, Py_ssize_t n_rows, str name) except -1:
    cdef Py_ssize_t i
    for i in range(rows.shape[0]):
        if rows[i] < 0 or rows[i] >= n_rows:
            raise ValueError(
                f"{name}[{i}] = {rows[i]} is out of range for a matrix of {n_rows} rows"
            )
    return 0


def _check_repeat(repeat):
    if repeat < 1:
        raise ValueError(f"repeat must be >= 1, got {repeat}")


def _check_same_length(a, b, name_a, name_b):
    if a.shape[0] != b.shape[0]:
        raise ValueError(
            f"{name_a} and {name_b} must have the same length, "
            f"got {a.shape[0]} and {b.shape[0]}"
        )


def _check_width(length, name, n_columns):
    if length != n_columns:
        raise ValueError(f"{name} has length {length} but weights has {n_columns} columns")


def dot(const float[::1] x, const float[::1] y, isa=None, Py_ssize_t repeat=1):
    """``sum(x * y)`` of two float32 vectors."""
    _check_same_length(x, y, "x", "y")
    cdef const sks_kernels *K = _table(isa)
    _check_repeat(repeat)
    cdef float r = 0
    with nogil:
        for _r in range(repeat):
            r = K.dot(_fptr(x), _fptr(y), x.shape[0])
    return r


def dot_bf16(const uint16_t[::1] x, const uint16_t[::1] y, isa=None,
             Py_ssize_t repeat=1):
    """``sum(x * y)`` of two bfloat16 vectors (raw uint16), in float32."""
    _check_same_length(x, y, "x", "y")
    cdef const sks_kernels *K = _table(isa)
    _check_repeat(repeat)
    cdef float r = 0
    with nogil:
        for _r in range(repeat):
            r = K.dot_bf16(_hptr(x), _hptr(y), x.shape[0])
    return r


def axpy(float alpha, const float[::1] x, float[::1] y, isa=None,
         Py_ssize_t repeat=1):
    """``y += alpha * x`` in place."""
    _check_same_length(x, y, "x", "y")
    cdef const sks_kernels *K = _table(isa)
    _check_repeat(repeat)
    with nogil:
        for _r in range(repeat):
            K.axpy(alpha, _fptr(x), _wfptr(y), x.shape[0])


def adam(float[::1] w, float[::1] m, float[::1] v, float[::1] g, float lr, float beta1,
         float beta2, float eps, float shrink=1.0, isa=None, Py_ssize_t repeat=1):
    """One Adam step on ``w`` in place (moments ``m``, ``v`` updated, ``g`` zeroed).

    ``lr`` and ``eps`` carry the bias corrections;
    ``w = w * shrink - lr * m / (sqrt(v) + eps)``.
    """
    _check_same_length(w, m, "w", "m")
    _check_same_length(w, v, "w", "v")
    _check_same_length(w, g, "w", "g")
    cdef const sks_kernels *K = _table(isa)
    _check_repeat(repeat)
    with nogil:
        for _r in range(repeat):
            K.adam(_wfptr(w), _wfptr(m), _wfptr(v), _wfptr(g), w.shape[0], lr, beta1, beta2,
                   eps, shrink)


def adam_bf16_moments(float[::1] w, uint16_t[::1] m, uint16_t[::1] v, float[::1] g, float lr,
                      float beta1, float beta2, float eps, float shrink=1.0,
                      unsigned int seed=0, isa=None, Py_ssize_t repeat=1):
    """Adam as :func:`adam`, with bfloat16 (raw uint16) moments, stochastically rounded.

    The rounding bits of element i come from ``seed`` and i alone, so the
    result is reproducible and the same on every variant (up to float32
    rounding of the step itself).
    """
    _check_same_length(w, m, "w", "m")
    _check_same_length(w, v, "w", "v")
    _check_same_length(w, g, "w", "g")
    cdef const sks_kernels *K = _table(isa)
    _check_repeat(repeat)
    with nogil:
        for _r in range(repeat):
            K.adam_bf16_moments(_wfptr(w), &m[0] if m.shape[0] else NULL,
                                &v[0] if v.shape[0] else NULL, _wfptr(g), w.shape[0], lr,
                                beta1, beta2, eps, shrink, seed)


def srp_accum(const int32_t[::1] indices, const float[::1] values, uint64_t base,
              float[::1] acc, isa=None, Py_ssize_t repeat=1):
    """Signed random projections of one CSR row added to `acc` in place.

    ``acc[64 w + j] += values[p]`` if bit ``j`` of
    ``mix64(base + indices[p] * n_words + w)`` is set, else ``-values[p]``,
    for every non-zero ``p`` in order and ``n_words = len(acc) // 64``.
    """
    _check_same_length(indices, values, "indices", "values")
    if acc.shape[0] % 64:
        raise ValueError(f"acc must hold a multiple of 64 values, got {acc.shape[0]}")
    if indices.shape[0] and np.asarray(indices).min() < 0:
        raise ValueError("indices must be non-negative")
    cdef const sks_kernels *K = _table(isa)
    _check_repeat(repeat)
    cdef int n_words = acc.shape[0] // 64
    with nogil:
        for _r in range(repeat):
            K.srp_accum(_iptr(indices), _fptr(values), indices.shape[0], base, n_words,
                        _wfptr(acc))


def _check_distinct(const int32_t[::1] idx, str name):
    if np.unique(np.asarray(idx)).shape[0] != idx.shape[0]:
        raise ValueError(f"{name} must not repeat a label")


def reach_accum(const int32_t[::1] labels, const float[::1] weights, float x, float[::1] acc,
                int32_t[::1] mark, int32_t[::1] reached, Py_ssize_t n_reached, isa=None):
    """A sparse head's scores of one feature's pairs, in place; returns the new reach count.

    For each ``k`` in order, with ``j = labels[k]`` (distinct): an unmarked
    label (``mark[j] == 0``) is marked 1, appended to ``reached`` at
    ``n_reached`` (which counts up) and its ``acc[j]`` set to 0; then
    ``acc[j] += x * weights[k]``, the product rounded before its sum.
    """
    _check_same_length(labels, weights, "labels", "weights")
    _check_same_length(acc, mark, "acc", "mark")
    _check_rows(labels, acc.shape[0], "labels")
    _check_distinct(labels, "labels")
    _check_same_length(acc, reached, "acc", "reached")
    n_new = int((np.asarray(mark)[np.asarray(labels)] == 0).sum())
    if not 0 <= n_reached <= reached.shape[0] - n_new:
        raise ValueError("reached must have room for the new labels from n_reached on")
    cdef const sks_kernels *K = _table(isa)
    cdef sks_idx out
    with nogil:
        out = K.reach_accum(_iptr(labels), _fptr(weights), labels.shape[0], x, _wfptr(acc),
                            &mark[0] if mark.shape[0] else NULL,
                            &reached[0] if reached.shape[0] else NULL, n_reached)
    return int(out)


def gather_axpy(float x, const float[::1] table, const int32_t[::1] idx, float[::1] out,
                isa=None, Py_ssize_t repeat=1):
    """``out[k] += x * table[idx[k]]`` in place, each product rounded before its sum."""
    _check_same_length(idx, out, "idx", "out")
    _check_rows(idx, table.shape[0], "idx")
    cdef const sks_kernels *K = _table(isa)
    _check_repeat(repeat)
    with nogil:
        for _r in range(repeat):
            K.gather_axpy(x, _fptr(table), _iptr(idx), idx.shape[0], _wfptr(out))


def scatter_scaled(const float[::1] vals, double scale, const int32_t[::1] idx,
                   float[::1] table, isa=None):
    """``table[idx[t]] = float32(float64(vals[t]) * scale)`` in place (``idx`` distinct)."""
    _check_same_length(vals, idx, "vals", "idx")
    _check_rows(idx, table.shape[0], "idx")
    _check_distinct(idx, "idx")
    cdef const sks_kernels *K = _table(isa)
    with nogil:
        K.scatter_scaled(_fptr(vals), scale, _iptr(idx), idx.shape[0], _wfptr(table))


def clear_marks(int32_t[::1] mark, const int32_t[::1] idx, isa=None):
    """``mark[idx[t]] = 0`` in place."""
    _check_rows(idx, mark.shape[0], "idx")
    cdef const sks_kernels *K = _table(isa)
    with nogil:
        K.clear_marks(&mark[0] if mark.shape[0] else NULL, _iptr(idx), idx.shape[0])


def mixed_topk(const float[::1] net, const float[::1] head, const int32_t[::1] ids, float w,
               Py_ssize_t k, isa=None):
    """The ``k`` best of ``net[c] + w * head[c]`` (the product rounded before its sum).

    Returns ``(top, best)``: ``ids[c]`` and the values, best first; among
    equal values the earlier candidate first (NaN never enters after the
    first ``k``). Needs ``1 <= k <= len(net)``.
    """
    _check_same_length(net, head, "net", "head")
    _check_same_length(net, ids, "net", "ids")
    if not 1 <= k <= net.shape[0]:
        raise ValueError(f"k must be in [1, {net.shape[0]}], got {k}")
    cdef const sks_kernels *K = _table(isa)
    top = np.empty(k, dtype=np.int32)
    best = np.empty(k, dtype=np.float32)
    cdef int32_t[::1] tv = top
    cdef float[::1] bv = best
    with nogil:
        K.mixed_topk(&net[0], &head[0], &ids[0], net.shape[0], w, k, &tv[0], &bv[0])
    return top, best


def scan_mixed(const float[::1] head, const float[::1] net, Py_ssize_t k, isa=None):
    """``(cand, base_id, base_val)``: the ``j`` with ``head[j] != 0`` (NaN included),
    in order, and the ``k`` best others by ``net`` as :func:`mixed_topk` keeps them."""
    _check_same_length(head, net, "head", "net")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    cdef const sks_kernels *K = _table(isa)
    cand = np.empty(head.shape[0], dtype=np.int32)
    base_id = np.empty(k, dtype=np.int32)
    base_val = np.empty(k, dtype=np.float32)
    cdef int32_t[::1] cv = cand, iv = base_id
    cdef float[::1] vv = base_val
    cdef sks_idx n_cand = 0, n_base = 0
    with nogil:
        n_cand = K.scan_mixed(_fptr(head), _fptr(net), head.shape[0], k,
                              &cv[0] if head.shape[0] else NULL, &iv[0], &vv[0], &n_base)
    return cand[:n_cand], base_id[:n_base], base_val[:n_base]


def kept(const float[::1] reach, const float[::1] net, float bar, int offset=0, isa=None):
    """``(count, cols, values)``: the ``j`` with ``reach[j] != 0`` or ``net[j] >= bar``
    (``offset + j``, in order) and their ``net[j]``; ``count`` from ``count_kept``."""
    _check_same_length(reach, net, "reach", "net")
    cdef const sks_kernels *K = _table(isa)
    cols = np.empty(reach.shape[0], dtype=np.int32)
    values = np.empty(reach.shape[0], dtype=np.float32)
    cdef int32_t[::1] cv = cols
    cdef float[::1] vv = values
    cdef sks_idx count, written
    with nogil:
        count = K.count_kept(_fptr(reach), _fptr(net), reach.shape[0], bar)
        written = K.write_kept(_fptr(reach), _fptr(net), reach.shape[0], bar, offset,
                               &cv[0] if reach.shape[0] else NULL,
                               &vv[0] if reach.shape[0] else NULL)
    if written != count:
        raise AssertionError(f"write_kept wrote {written} entries, count_kept counted {count}")
    return int(count), cols[:written], values[:written]


def sparse_dense_accum(const int32_t[::1] indices, const float[::1] values,
                       const float[:, ::1] weights, float[::1] out, isa=None,
                       Py_ssize_t repeat=1):
    """``out += sum_j values[j] * weights[indices[j]]`` in place."""
    _check_same_length(indices, values, "indices", "values")
    _check_width(out.shape[0], "out", weights.shape[1])
    _check_rows(indices, weights.shape[0], "indices")
    cdef const sks_kernels *K = _table(isa)
    _check_repeat(repeat)
    with nogil:
        for _r in range(repeat):
            K.sparse_dense_accum(_iptr(indices), _fptr(values), indices.shape[0],
                                 _fptr2(weights), weights.shape[1], weights.shape[1],
                                 _wfptr(out))


def sparse_dense_accum4(const int32_t[::1] indices, const float[:, ::1] values,
                        const float[:, ::1] weights, float[:, ::1] out, isa=None):
    """``out[q] += sum_j values[q, j] * weights[indices[j]]`` in place, for q < 4."""
    if values.shape[0] != 4 or out.shape[0] != 4:
        raise ValueError("values and out must have 4 rows")
    _check_same_length(indices, values[0], "indices", "values[0]")
    _check_width(out.shape[1], "out", weights.shape[1])
    _check_rows(indices, weights.shape[0], "indices")
    cdef const sks_kernels *K = _table(isa)
    cdef const float *vals[4]
    cdef float *outs[4]
    cdef int q
    for q in range(4):
        vals[q] = &values[q, 0] if values.shape[1] else NULL
        outs[q] = &out[q, 0] if out.shape[1] else NULL
    with nogil:
        K.sparse_dense_accum4(_iptr(indices), vals, indices.shape[0], _fptr2(weights),
                              weights.shape[1], weights.shape[1], outs)


def sparse_dense_accum_rounded(const int32_t[::1] indices, const float[::1] values,
                               float scale, const float[:, ::1] weights, float[::1] out,
                               isa=None, Py_ssize_t repeat=1):
    """``out += (values[j] * scale) * weights[indices[j]]`` for each j in order, in place,
    each product rounded to float32 before its sum, never fused into an FMA."""
    _check_same_length(indices, values, "indices", "values")
    _check_width(out.shape[0], "out", weights.shape[1])
    _check_rows(indices, weights.shape[0], "indices")
    cdef const sks_kernels *K = _table(isa)
    _check_repeat(repeat)
    with nogil:
        for _r in range(repeat):
            K.sparse_dense_accum_rounded(_iptr(indices), _fptr(values), scale, indices.shape[0],
                                         _fptr2(weights), weights.shape[1], weights.shape[1],
                                         _wfptr(out))


def sparse_dense_accum_bf16(const int32_t[::1] indices, const float[::1] values,
                            const uint16_t[:, ::1] weights, float[::1] out, isa=None,
                            Py_ssize_t repeat=1):
    """``out += sum_j values[j] * weights[indices[j]]`` in place, bfloat16 weights."""
    _check_same_length(indices, values, "indices", "values")
    _check_width(out.shape[0], "out", weights.shape[1])
    _check_rows(indices, weights.shape[0], "indices")
    cdef const sks_kernels *K = _table(isa)
    _check_repeat(repeat)
    with nogil:
        for _r in range(repeat):
            K.sparse_dense_accum_bf16(_iptr(indices), _fptr(values), indices.shape[0],
                                      _hptr2(weights), weights.shape[1], weights.shape[1],
                                      _wfptr(out))


def gather_dot(const float[::1] x, const float[:, ::1] weights,
               const int32_t[::1] rows, isa=None, Py_ssize_t repeat=1):
    """``weights[rows] @ x`` without forming ``weights[rows]``."""
    _check_width(x.shape[0], "x", weights.shape[1])
    _check_rows(rows, weights.shape[0], "rows")
    cdef const sks_kernels *K = _table(isa)
    _check_repeat(repeat)
    out = np.empty(rows.shape[0], dtype=np.float32)
    cdef float[::1] out_view = out
    with nogil:
        for _r in range(repeat):
            K.gather_dot(_fptr(x), _fptr2(weights), weights.shape[1], _iptr(rows),
                         rows.shape[0], x.shape[0], _wfptr(out_view))
    return out


def gather_dot2(const float[::1] x0, const float[::1] x1, const float[:, ::1] weights,
                const int32_t[::1] rows, isa=None, Py_ssize_t repeat=1):
    """``(weights[rows] @ x0, weights[rows] @ x1)``: gather_dot of both, same bits."""
    _check_width(x0.shape[0], "x0", weights.shape[1])
    _check_width(x1.shape[0], "x1", weights.shape[1])
    _check_rows(rows, weights.shape[0], "rows")
    cdef const sks_kernels *K = _table(isa)
    _check_repeat(repeat)
    out0 = np.empty(rows.shape[0], dtype=np.float32)
    out1 = np.empty(rows.shape[0], dtype=np.float32)
    cdef float[::1] out0_view = out0, out1_view = out1
    with nogil:
        for _r in range(repeat):
            K.gather_dot2(_fptr(x0), _fptr(x1), _fptr2(weights), weights.shape[1],
                          _iptr(rows), rows.shape[0], x0.shape[0], _wfptr(out0_view),
                          _wfptr(out1_view))
    return out0, out1


def gather_dot_bf16(const uint16_t[::1] x, const uint16_t[:, ::1] weights,
                    const int32_t[::1] rows, isa=None, Py_ssize_t repeat=1):
    """``weights[rows] @ x`` on bfloat16 (raw uint16) inputs, float32 result."""
    _check_width(x.shape[0], "x", weights.shape[1])
    _check_rows(rows, weights.shape[0], "rows")
    cdef const sks_kernels *K = _table(isa)
    _check_repeat(repeat)
    out = np.empty(rows.shape[0], dtype=np.float32)
    cdef float[::1] out_view = out
    with nogil:
        for _r in range(repeat):
            K.gather_dot_bf16(_hptr(x), _hptr2(weights), weights.shape[1], _iptr(rows),
                              rows.shape[0], x.shape[0], _wfptr(out_view))
    return out


def softmax(const float[::1] z, isa=None, Py_ssize_t repeat=1):
    """``(softmax(z), logsumexp(z))``, stable for any finite or -inf logits."""
    cdef const sks_kernels *K = _table(isa)
    _check_repeat(repeat)
    out = np.empty(z.shape[0], dtype=np.float32)
    cdef float[::1] out_view = out
    cdef float lse = 0
    with nogil:
        for _r in range(repeat):
            lse = K.softmax(_fptr(z), z.shape[0], _wfptr(out_view))
    return out, lse


def topk(const float[::1] scores, Py_ssize_t k, isa=None, Py_ssize_t repeat=1):
    """Indices and values of the ``min(k, n)`` largest scores, best first.

    Ties go to the lower index.
    """
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    cdef const sks_kernels *K = _table(isa)
    _check_repeat(repeat)
    cdef Py_ssize_t count = min(k, scores.shape[0])
    idx = np.empty(count, dtype=np.int32)
    val = np.empty(count, dtype=np.float32)
    cdef int32_t[::1] idx_view = idx
    cdef float[::1] val_view = val
    if count == 0:
        return idx, val
    with nogil:
        for _r in range(repeat):
            K.topk(&scores[0], scores.shape[0], count, &idx_view[0], &val_view[0])
    return idx, val


def f32_to_bf16(const float[::1] x, isa=None, Py_ssize_t repeat=1):
    """Round float32 to bfloat16 (nearest even), returned as raw uint16."""
    cdef const sks_kernels *K = _table(isa)
    _check_repeat(repeat)
    out = np.empty(x.shape[0], dtype=np.uint16)
    cdef uint16_t[::1] out_view = out
    with nogil:
        for _r in range(repeat):
            K.f32_to_bf16(_fptr(x), &out_view[0] if x.shape[0] > 0 else NULL, x.shape[0])
    return out


def bf16_to_f32(const uint16_t[::1] x, isa=None, Py_ssize_t repeat=1):
    """Widen bfloat16 (raw uint16) to float32 exactly."""
    cdef const sks_kernels *K = _table(isa)
    _check_repeat(repeat)
    out = np.empty(x.shape[0], dtype=np.float32)
    cdef float[::1] out_view = out
    with nogil:
        for _r in range(repeat):
            K.bf16_to_f32(_hptr(x), _wfptr(out_view), x.shape[0])
    return out


def pack_bf16_tiles(const float[:, ::1] W):
    """W rounded to bfloat16 and laid out as the tile unit's operands.

    Returns ``(packed, k_steps)``: ``packed`` holds ``ceil(L / 16)`` label
    tiles of ``16 * k_steps`` pair rows (``k_steps = ceil(H / 32)``), see
    ``sks_pack_bf16_tiles`` in ``simd.h``.
    """
    cdef Py_ssize_t L = W.shape[0], H = W.shape[1]
    cdef Py_ssize_t k_steps = (H + 31) // 32, n_tiles = (L + 15) // 16
    packed = np.zeros(n_tiles * 16 * k_steps * 32, dtype=np.uint16)
    cdef uint16_t[::1] pv = packed
    if packed.shape[0] and L and H:
        with nogil:
            sks_pack_bf16_tiles(&W[0, 0], L, H, H, k_steps, &pv[0])
    return packed, k_steps


def screen_scores(const uint16_t[:, ::1] h, const uint16_t[::1] packed, Py_ssize_t n_labels,
                  Py_ssize_t k_steps):
    """The tile unit's scores of the bfloat16 rows h against the packed labels.

    h has a multiple of 16 rows of at least ``32 * k_steps`` columns (zero
    past the hidden width). Returns ``(rows, 16 * ceil(n_labels / 16))``
    float32 scores; raises RuntimeError where the screening is not active.
    """
    _require_screen()
    cdef Py_ssize_t n_tiles = (n_labels + 15) // 16
    if h.shape[0] % 16 or h.shape[1] < 32 * k_steps:
        raise ValueError(f"h must have a multiple of 16 rows and at least {32 * k_steps} "
                         f"columns, got shape ({h.shape[0]}, {h.shape[1]})")
    if packed.shape[0] != n_tiles * 16 * k_steps * 32:
        raise ValueError(f"packed has {packed.shape[0]} entries, expected "
                         f"{n_tiles * 16 * k_steps * 32}")
    out = np.zeros((h.shape[0], 16 * n_tiles), dtype=np.float32)
    cdef float[:, ::1] ov = out
    if h.shape[0] and n_tiles:
        with nogil:
            _screen.screen(<const sks_bf16 *> &h[0, 0], h.shape[1], h.shape[0],
                           <const sks_bf16 *> &packed[0], n_tiles, k_steps, &ov[0, 0],
                           ov.shape[1])
    return out


def screen_select(const float[::1] s, const float[::1] wn, const float[::1] bq, float cw,
                  float b_row, float e2, float p2, Py_ssize_t k, Py_ssize_t max_cand,
                  bint vector=True):
    """The candidates of one row (``sks_screen_select_scalar`` in ``simd.h``).

    Returns ``(count, candidates)`` (count -1: a score or bound not finite;
    -2: more than max_cand); ``vector=False`` runs the portable pass, else
    the AMX build's (RuntimeError where it is not in use).
    """
    cdef Py_ssize_t n = s.shape[0]
    _check_same_length(s, wn, "s", "wn")
    _check_same_length(s, bq, "s", "bq")
    if not 1 <= k <= n:
        raise ValueError(f"k must be in [1, {n}], got {k}")
    if max_cand < k:
        raise ValueError(f"max_cand must be at least k={k}, got {max_cand}")
    if vector:
        _require_screen()
    cand = np.zeros(n, dtype=np.int32)
    hi = np.zeros(n, dtype=np.float32)
    low = np.zeros(k, dtype=np.float32)
    cdef float maxima[2]
    maxima[0] = np.max(wn)
    maxima[1] = np.max(bq)
    cdef int32_t[::1] cv = cand
    cdef float[::1] hv = hi, lv = low
    cdef sks_idx count
    with nogil:
        if vector:
            count = _screen.select(&s[0], &wn[0], &bq[0], maxima, n, cw, b_row, e2, p2, k,
                                   max_cand, &cv[0], &hv[0], &lv[0])
        else:
            count = sks_screen_select_scalar(&s[0], &wn[0], &bq[0], n, cw, b_row, e2, p2, k,
                                             max_cand, &cv[0], &hv[0], &lv[0])
    return int(count), cand[:max(count, 0)]


def group_dots(const float[::1] x, const float[:, ::1] W, const float[::1] b,
               const int32_t[::1] cand):
    """``sks_group_dots_avx512``: the float32 scores ``output_scores`` gives the
    labels ``cand`` of ``W`` (and ``b``) for the hidden row x."""
    _require_screen()
    _check_width(x.shape[0], "x", W.shape[1])
    _check_same_length(W, b, "W", "b")
    _check_rows(cand, W.shape[0], "cand")
    out = np.zeros(cand.shape[0], dtype=np.float32)
    cdef float[::1] ov = out
    if cand.shape[0]:
        with nogil:
            _screen.rescore(_fptr(x), &W[0, 0], W.shape[1], W.shape[1], W.shape[0], &cand[0],
                            cand.shape[0], &b[0], &ov[0])
    return out
