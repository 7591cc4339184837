"""The SIMD primitives against NumPy references, on every variant.

Each primitive runs on the active variant (``isa=None``) and on every variant
this machine supports (``isa="..."``). ``test_forced_isa_in_subprocess`` then
re-runs this file in a fresh interpreter per variant with ``SKSKETCH_ISA``
forcing it, so the import-time choice itself is exercised on every path.
"""

import os
import subprocess
import sys

import numpy as np
import pytest

from sksketch._kernels import _openmp, _simd

FORCED = os.environ.get(_simd.ISA_ENV_VAR)
# In a forced subprocess only the active table is under test.
ISAS = [None] if FORCED else [None, *_simd.supported_isas()]
LENGTHS = [0, 1, 2, 3, 7, 8, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 128, 129, 1000]


def _readonly(a):
    a = np.array(a)
    a.flags.writeable = False
    return a


def _as_inputs(a, readonly):
    return _readonly(a) if readonly else np.array(a)


def bf16_round_reference(x):
    """Float32 -> bfloat16 bits by round to nearest even; NaN -> quiet NaN."""
    u = np.asarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    rounded = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    nan = (u & 0x7FFFFFFF) > 0x7F800000
    out = np.where(nan, (u >> 16) | 0x40, rounded)
    return out.astype(np.uint16)


def bf16_to_f32_reference(h):
    return (np.asarray(h, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)


def _close(actual, expected, scale, rtol=2e-6):
    """|actual - expected| within rtol of the sum of absolute terms."""
    err = np.abs(np.asarray(actual, dtype=np.float64) - expected)
    bound = rtol * np.asarray(scale, dtype=np.float64)
    assert np.all(err <= bound), f"max error {err.max()} against bound {bound.min()}"


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("n", LENGTHS)
@pytest.mark.parametrize("readonly", [False, True])
def test_dot(isa, n, readonly, rng):
    x = rng.standard_normal(n).astype(np.float32)
    y = rng.standard_normal(n).astype(np.float32)
    got = _simd.dot(_as_inputs(x, readonly), _as_inputs(y, readonly), isa=isa)
    expected = x.astype(np.float64) @ y.astype(np.float64)
    _close(got, expected, np.abs(x.astype(np.float64) * y).sum() + n)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("n", LENGTHS)
def test_axpy(isa, n, rng):
    x = _readonly(rng.standard_normal(n).astype(np.float32))
    y = rng.standard_normal(n).astype(np.float32)
    expected = y.astype(np.float64) + np.float32(0.75) * x.astype(np.float64)
    _simd.axpy(0.75, x, y, isa=isa)
    np.testing.assert_allclose(y, expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("n", LENGTHS)
@pytest.mark.parametrize("shrink", [1.0, 0.99])
def test_adam(isa, n, shrink, rng):
    w, m, g = (rng.standard_normal(n).astype(np.float32) for _ in range(3))
    v = rng.random(n).astype(np.float32) * 0.1
    lr, b1, b2, eps = 0.01, 0.9, 0.999, 1e-8
    m_ref = b1 * m.astype(np.float64) + (1 - b1) * g
    v_ref = b2 * v.astype(np.float64) + (1 - b2) * g.astype(np.float64) ** 2
    w_ref = w * np.float64(np.float32(shrink)) - lr * m_ref / (np.sqrt(v_ref) + eps)
    _simd.adam(w, m, v, g, lr, b1, b2, eps, shrink, isa=isa)
    np.testing.assert_allclose(m, m_ref, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(v, v_ref, rtol=5e-5, atol=1e-8)
    np.testing.assert_allclose(w, w_ref, rtol=1e-5, atol=1e-6)
    assert not g.any()


def _mix32(x):
    x = x.astype(np.uint64) & 0xFFFFFFFF
    x ^= x >> 16
    x = (x * 0x85EBCA6B) & 0xFFFFFFFF
    x ^= x >> 13
    x = (x * 0xC2B2AE35) & 0xFFFFFFFF
    return x ^ (x >> 16)


def _round_sr_reference(f, bits16):
    u = f.astype(np.float32).view(np.uint32).astype(np.uint64) + (bits16 & 0xFFFF)
    return (u >> 16).astype(np.uint16)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("n", [0, 1, 7, 8, 9, 15, 16, 17, 33, 128, 130])
def test_adam_bf16_moments(isa, n, rng):
    lr, b1, b2, eps, shrink, seed = 0.01, 0.9, 0.999, 1e-8, 0.99, 12345
    w = rng.standard_normal(n).astype(np.float32)
    g = rng.standard_normal(n).astype(np.float32)
    m = _bf16_inputs(rng, n)
    v = bf16_round_reference(rng.random(n).astype(np.float32) + 0.1)
    mf = bf16_to_f32_reference(m).astype(np.float64)
    vf = bf16_to_f32_reference(v).astype(np.float64)
    m_new = b1 * mf + (1 - b1) * g
    v_new = b2 * vf + (1 - b2) * g.astype(np.float64) ** 2
    w_ref = w * shrink - lr * m_new / (np.sqrt(v_new) + eps)
    bits = _mix32(np.uint64(seed) ^ ((np.arange(n, dtype=np.uint64) * 0x9E3779B9) & 0xFFFFFFFF))
    m_ref, v_ref = _round_sr_reference(m_new, bits), _round_sr_reference(v_new, bits >> 16)
    _simd.adam_bf16_moments(w, m, v, g, lr, b1, b2, eps, shrink, seed, isa=isa)
    np.testing.assert_allclose(w, w_ref, rtol=1e-5, atol=1e-6)
    # the float32 moments before rounding may differ in their last bit from
    # the float64 reference, which can move a rounding by one bfloat16 step
    assert np.abs(m.astype(np.int32) - m_ref.astype(np.int32)).max(initial=0) <= 1
    assert np.abs(v.astype(np.int32) - v_ref.astype(np.int32)).max(initial=0) <= 1
    assert not g.any()


def test_stochastic_rounding_keeps_a_slow_decay():
    # v * 0.999 rounds back to v under round-to-nearest bfloat16; stochastic
    # rounding decays it on average, as float32 would
    n, steps = 4096, 200
    v = np.full(n, bf16_round_reference(np.array([1.0], np.float32))[0], np.uint16)
    m = np.zeros(n, np.uint16)
    w = np.zeros(n, np.float32)
    for step in range(steps):
        _simd.adam_bf16_moments(w, m, v, np.zeros(n, np.float32), 0.0, 0.9, 0.999, 1e-8,
                                seed=step)
    mean = bf16_to_f32_reference(v).astype(np.float64).mean()
    assert mean == pytest.approx(0.999**steps, rel=2e-3)



@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("m", [1, 7, 8, 16, 17, 40, 64, 65, 159, 983])
@pytest.mark.parametrize("nnz", [0, 1, 5, 18])
def test_sparse_dense_accum_rounded_rounds_each_product_before_its_sum(isa, m, nnz, rng):
    # NumPy's float32 product then float32 sum, entry after entry in order: two
    # roundings, never one FMA (values whose fused and unfused results differ in
    # most lanes)
    W = (1 + rng.random((30, m)) * 2**-10).astype(np.float32)
    W[::3] *= -1
    indices = rng.integers(0, 30, nnz).astype(np.int32)
    values = (1 + rng.random(nnz) * 2**-9).astype(np.float32)
    scale = np.float32(1 + 2**-12)
    out = (-(1 + rng.random(m) * 2**-10)).astype(np.float32)
    expected, fused = out.copy(), out.copy()
    for j in range(nnz):
        x = np.float32(values[j] * scale)
        expected = expected + x * W[indices[j]]
        fused = (fused.astype(np.float64) + np.float64(x) * W[indices[j]].astype(np.float64)
                 ).astype(np.float32)
    got = out.copy()
    _simd.sparse_dense_accum_rounded(_readonly(indices), _readonly(values), float(scale),
                                     _readonly(W), got, isa=isa)
    np.testing.assert_array_equal(got, expected)
    assert nnz == 0 or m < 40 or (fused != expected).mean() > 0.1  # the test tells them apart
    with pytest.raises(ValueError, match="same length"):
        _simd.sparse_dense_accum_rounded(indices, np.append(values, np.float32(1)), 1.0, W, out,
                                         isa=isa)
    with pytest.raises(ValueError):
        _simd.sparse_dense_accum_rounded(indices, values, 1.0, W, np.zeros(m + 1, np.float32),
                                         isa=isa)


def _reach_accum_reference(labels, weights, x, acc, mark, reached, n_reached):
    # the plain loop, one label at a time, in float32 (product rounded, then summed)
    acc, mark, reached = acc.copy(), mark.copy(), reached.copy()
    for j, w in zip(labels, weights, strict=True):
        if not mark[j]:
            mark[j] = 1
            acc[j] = np.float32(0)
            reached[n_reached] = j
            n_reached += 1
        acc[j] = np.float32(acc[j] + np.float32(np.float32(x) * w))
    return acc, mark, reached, n_reached


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("n", [0, 1, 7, 15, 16, 17, 33, 200])
def test_reach_accum_marks_lists_and_adds_like_the_plain_loop(isa, n, rng):
    # several features of one row in turn: labels reached before keep their
    # scores and marks, labels first reached start at 0, in the order met
    L = 300
    acc = rng.standard_normal(L).astype(np.float32)  # stale values of unmarked labels
    mark = np.zeros(L, np.int32)
    reached = np.full(L, -7, np.int32)
    got = (acc.copy(), mark.copy(), reached.copy(), 0)
    want = (acc, mark, reached, 0)  # (the reference copies what it changes)
    for trial in range(4):
        labels = rng.choice(L, n, replace=False).astype(np.int32)
        weights = rng.standard_normal(n).astype(np.float32)
        if trial == 2 and n:
            weights[::3] = [np.nan, np.inf, -0.0, 1e-45][: len(weights[::3])][0]
        x = np.float32([0.37, -1.5, 3e-3, 1.0][trial])
        a, m, r, c = got
        c = _simd.reach_accum(_readonly(labels), _readonly(weights), x, a, m, r, c, isa=isa)
        got = (a, m, r, c)
        want = _reach_accum_reference(labels, weights, x, *want)
        assert got[3] == want[3]
        np.testing.assert_array_equal(got[1], want[1])
        np.testing.assert_array_equal(got[2], want[2])
        np.testing.assert_array_equal(got[0].view(np.uint32)[got[1] == 1],
                                      want[0].view(np.uint32)[want[1] == 1])
    with pytest.raises(ValueError, match="repeat a label"):
        _simd.reach_accum(np.array([1, 1], np.int32), np.ones(2, np.float32), 1.0,
                          acc, mark, reached, 0, isa=isa)
    with pytest.raises(ValueError, match="out of range"):
        _simd.reach_accum(np.array([L], np.int32), np.ones(1, np.float32), 1.0,
                          acc, mark, reached, 0, isa=isa)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("n", [0, 1, 15, 16, 17, 100])
def test_gather_axpy_rounds_each_product_before_its_sum(isa, n, rng):
    table = rng.standard_normal(50).astype(np.float32)
    table[3] = np.nan
    idx = rng.integers(0, 50, n).astype(np.int32)  # repeats are fine here
    out = rng.standard_normal(n).astype(np.float32)
    x = np.float32(0.1)
    want = (out + (x * table[idx]).astype(np.float32)).astype(np.float32)
    _simd.gather_axpy(x, _readonly(table), _readonly(idx), out, isa=isa)
    np.testing.assert_array_equal(out.view(np.uint32), want.view(np.uint32))
    with pytest.raises(ValueError, match="out of range"):
        _simd.gather_axpy(x, table, np.array([50], np.int32), np.zeros(1, np.float32), isa=isa)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("n", [0, 1, 7, 8, 9, 31])
def test_scatter_scaled_multiplies_in_double_and_clear_marks_zeroes(isa, n, rng):
    vals = rng.standard_normal(n).astype(np.float32)
    idx = rng.choice(40, n, replace=False).astype(np.int32)
    table = rng.standard_normal(40).astype(np.float32)
    scale = 0.123456789012345
    want = table.copy()
    want[idx] = (vals.astype(np.float64) * scale).astype(np.float32)
    _simd.scatter_scaled(_readonly(vals), scale, _readonly(idx), table, isa=isa)
    np.testing.assert_array_equal(table.view(np.uint32), want.view(np.uint32))
    mark = rng.integers(1, 3, 40).astype(np.int32)
    keep = np.setdiff1d(np.arange(40), idx)
    _simd.clear_marks(mark, _readonly(idx), isa=isa)
    assert not mark[idx].any() and mark[keep].all()
    with pytest.raises(ValueError, match="repeat a label"):
        _simd.scatter_scaled(np.ones(2, np.float32), 1.0, np.array([2, 2], np.int32), table,
                             isa=isa)

def _stable_topk(values, ids, k):
    # the plain insertion: the first k, then each value above the k-th best
    top, best = [], []
    for c, (v, i) in enumerate(zip(values, ids, strict=True)):
        if c < k or v > best[-1]:
            r = len(best) if c < k else k - 1
            if c >= k:
                top.pop()
                best.pop()
            while r > 0 and best[r - 1] < v:
                r -= 1
            best.insert(r, v)
            top.insert(r, i)
    return np.array(top, np.int32), np.array(best, np.float32)


def _mixed_values(rng, n, trial):
    net = rng.standard_normal(n).astype(np.float32)
    head = np.where(rng.random(n) < 0.3, rng.standard_normal(n), 0).astype(np.float32)
    if trial % 3 == 1:  # ties, and NaN
        net = np.round(net).astype(np.float32)
        head = np.round(head).astype(np.float32)
        net[rng.random(n) < 0.05] = np.nan
        head[rng.random(n) < 0.02] = np.nan
    if trial % 3 == 2:
        net[rng.random(n) < 0.2] = -np.inf
        head[rng.random(n) < 0.05] = -0.0  # a zero all the same
    return net, head


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("n", [1, 3, 15, 16, 17, 40, 300])
def test_mixed_topk_is_the_stable_insertion(isa, n, rng):
    for trial in range(9):
        net, head = _mixed_values(rng, n, trial)
        ids = np.sort(rng.choice(10 * n, n, replace=False)).astype(np.int32)
        w = np.float32([0.0, 0.125, 3.0][trial % 3])
        k = min(n, [1, 3, 5][trial % 3])
        values = (net + (w * head).astype(np.float32)).astype(np.float32)
        want_top, want_best = _stable_topk(values, ids, k)
        top, best = _simd.mixed_topk(_readonly(net), _readonly(head), _readonly(ids), w, k,
                                     isa=isa)
        np.testing.assert_array_equal(top, want_top)
        np.testing.assert_array_equal(best.view(np.uint32), want_best.view(np.uint32))
    with pytest.raises(ValueError, match="k must be"):
        _simd.mixed_topk(net, head, ids, 1.0, n + 1, isa=isa)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("n", [0, 1, 5, 16, 17, 40, 1000])
def test_scan_mixed_lists_reached_labels_and_keeps_the_best_others(isa, n, rng):
    for trial in range(9):
        net, head = _mixed_values(rng, n, trial)
        k = [1, 3, 5][trial % 3]
        reached = (head != 0) | np.isnan(head)
        others = np.flatnonzero(~reached).astype(np.int32)
        want_base, want_val = _stable_topk(net[others], others, k)
        cand, base_id, base_val = _simd.scan_mixed(_readonly(head), _readonly(net), k, isa=isa)
        np.testing.assert_array_equal(cand, np.flatnonzero(reached))
        np.testing.assert_array_equal(base_id, want_base)
        np.testing.assert_array_equal(base_val.view(np.uint32), want_val.view(np.uint32))


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("n", [0, 1, 15, 16, 17, 100])
def test_kept_counts_and_writes_reached_or_high_labels(isa, n, rng):
    for bar in (np.float32(0.5), np.float32(-np.inf), np.float32(np.inf), np.float32(np.nan)):
        net = rng.standard_normal(n).astype(np.float32)
        net[rng.random(n) < 0.1] = np.nan
        reach = np.where(rng.random(n) < 0.2, 2.0, 0.0).astype(np.float32)
        keep = np.flatnonzero((reach != 0) | (net >= bar))
        count, cols, values = _simd.kept(_readonly(reach), _readonly(net), bar, 7, isa=isa)
        assert count == keep.size
        np.testing.assert_array_equal(cols, keep + 7)
        np.testing.assert_array_equal(values.view(np.uint32), net[keep].view(np.uint32))

@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("nnz, n_words", [(0, 1), (1, 1), (21, 4), (300, 7)])
def test_srp_accum_adds_each_signed_value_in_order(isa, nnz, n_words, rng):
    # the NumPy reference adds +-x one non-zero at a time in float32, as every
    # variant must: the same bits whatever the instruction set
    from sksketch.sampling._reference import mix64

    indices = rng.integers(0, 2**20, nnz).astype(np.int32)
    values = rng.standard_normal(nnz).astype(np.float32)
    base = np.uint64(0x1234_5678_9ABC_DEF0)
    start = rng.standard_normal(64 * n_words).astype(np.float32)
    expected = start.copy()
    shifts = np.arange(64, dtype=np.uint64)
    for p in range(nnz):
        words = mix64(base + np.uint64(indices[p]) * np.uint64(n_words)
                      + np.arange(n_words, dtype=np.uint64))
        bits = ((words[:, None] >> shifts) & np.uint64(1)).reshape(-1)
        expected += np.where(bits == 1, values[p], -values[p]).astype(np.float32)
    acc = start.copy()
    _simd.srp_accum(indices, values, int(base), acc, isa=isa)
    np.testing.assert_array_equal(acc, expected)
    with pytest.raises(ValueError, match="multiple of 64"):
        _simd.srp_accum(indices, values, 0, np.zeros(65, np.float32), isa=isa)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("m", [0, 1, 7, 15, 16, 17, 31, 33, 63, 64, 65, 100, 128, 130])
@pytest.mark.parametrize("nnz", [0, 1, 5, 77])
def test_sparse_dense_accum(isa, m, nnz, rng):
    n_rows = 50
    weights = _readonly(rng.standard_normal((n_rows, m)).astype(np.float32))
    # repeated row ids are legal: each occurrence adds its own term
    indices = _readonly(rng.integers(0, n_rows, nnz).astype(np.int32))
    values = _readonly(rng.standard_normal(nnz).astype(np.float32))
    out = rng.standard_normal(m).astype(np.float32)
    expected = out.astype(np.float64) + values.astype(np.float64) @ weights[indices]
    scale = np.abs(values[:, None] * weights[indices]).sum(axis=0) + np.abs(out)
    _simd.sparse_dense_accum(indices, values, weights, out, isa=isa)
    _close(out, expected, scale + 1.0)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("m", [0, 1, 15, 16, 17, 63, 64, 65, 128, 130, 256])
@pytest.mark.parametrize("nnz", [0, 1, 5, 77])
def test_sparse_dense_accum4_gives_sparse_dense_accums_bits(isa, m, nnz, rng):
    # the output layer's update sums four labels' gradients at once where
    # their pairs come from the same examples: each row must get the bits
    # it gets alone
    n_rows = 50
    weights = _readonly(rng.standard_normal((n_rows, m)).astype(np.float32))
    indices = _readonly(rng.integers(0, n_rows, nnz).astype(np.int32))
    values = _readonly(rng.standard_normal((4, nnz)).astype(np.float32))
    start = rng.standard_normal((4, m)).astype(np.float32)
    got = start.copy()
    _simd.sparse_dense_accum4(indices, values, weights, got, isa=isa)
    for q in range(4):
        alone = start[q].copy()
        _simd.sparse_dense_accum(indices, values[q], weights, alone, isa=isa)
        np.testing.assert_array_equal(got[q], alone)
    with pytest.raises(ValueError, match="4 rows"):
        _simd.sparse_dense_accum4(indices, values[:3], weights, got, isa=isa)
    with pytest.raises(ValueError, match="out"):
        _simd.sparse_dense_accum4(indices, values, weights, np.zeros((4, m + 1), np.float32),
                                  isa=isa)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("m", [0, 1, 7, 8, 9, 15, 16, 17, 31, 33, 63, 64, 65, 100, 128, 130])
@pytest.mark.parametrize("nnz", [0, 1, 5, 77])
def test_sparse_dense_accum_bf16(isa, m, nnz, rng):
    n_rows = 50
    weights = _bf16_inputs(rng, (n_rows, m))
    indices = _readonly(rng.integers(0, n_rows, nnz).astype(np.int32))
    values = _readonly(rng.standard_normal(nnz).astype(np.float32))
    out = rng.standard_normal(m).astype(np.float32)
    wf = bf16_to_f32_reference(weights).astype(np.float64)
    expected = out.astype(np.float64) + values.astype(np.float64) @ wf[indices]
    scale = np.abs(values[:, None] * wf[indices]).sum(axis=0) + np.abs(out)
    _simd.sparse_dense_accum_bf16(indices, values, _readonly(weights), out, isa=isa)
    _close(out, expected, scale + 1.0)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("m", [0, 1, 3, 15, 16, 17, 32, 63, 100, 128, 129, 300])
@pytest.mark.parametrize("n_rows", [0, 1, 3, 4, 5, 9, 64])
@pytest.mark.parametrize("readonly", [False, True])
def test_gather_dot(isa, m, n_rows, readonly, rng):
    weights = rng.standard_normal((40, m)).astype(np.float32)
    x = rng.standard_normal(m).astype(np.float32)
    rows = rng.integers(0, 40, n_rows).astype(np.int32)
    got = _simd.gather_dot(
        _as_inputs(x, readonly), _as_inputs(weights, readonly),
        _as_inputs(rows, readonly), isa=isa,
    )
    assert got.shape == (n_rows,) and got.dtype == np.float32
    expected = weights[rows].astype(np.float64) @ x.astype(np.float64)
    _close(got, expected, np.abs(weights[rows] * x).sum(axis=1) + 1.0)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("m", [0, 1, 7, 8, 9, 16, 45, 128, 129])
@pytest.mark.parametrize("n_rows", [0, 1, 3, 4, 5, 8, 9, 17])
def test_gather_dot2_gives_gather_dots_bits(isa, m, n_rows, rng):
    # output_scores scores rows two at a time: each must get the bits it
    # gets alone, or an entry would depend on the batch it came with
    weights = _readonly(rng.standard_normal((40, m)).astype(np.float32))
    x0 = _readonly(rng.standard_normal(m).astype(np.float32))
    x1 = _readonly(rng.standard_normal(m).astype(np.float32))
    rows = _readonly(rng.integers(0, 40, n_rows).astype(np.int32))
    got0, got1 = _simd.gather_dot2(x0, x1, weights, rows, isa=isa)
    np.testing.assert_array_equal(got0, _simd.gather_dot(x0, weights, rows, isa=isa))
    np.testing.assert_array_equal(got1, _simd.gather_dot(x1, weights, rows, isa=isa))
    with pytest.raises(ValueError, match="x1"):
        _simd.gather_dot2(x0, x1[:-1] if m else np.ones(1, np.float32), weights, rows, isa=isa)


def _bf16_inputs(rng, shape):
    # normal-range values: VDPBF16PS treats bfloat16 denormals as zero
    return bf16_round_reference(rng.standard_normal(shape).astype(np.float32))


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("n", LENGTHS)
def test_dot_bf16(isa, n, rng):
    x, y = _bf16_inputs(rng, n), _bf16_inputs(rng, n)
    xf = bf16_to_f32_reference(x).astype(np.float64)
    yf = bf16_to_f32_reference(y).astype(np.float64)
    got = _simd.dot_bf16(_readonly(x), _readonly(y), isa=isa)
    _close(got, xf @ yf, np.abs(xf * yf).sum() + 1.0)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("m", [0, 1, 15, 16, 17, 31, 32, 33, 64, 100, 128, 129])
@pytest.mark.parametrize("n_rows", [0, 1, 4, 5, 13])
def test_gather_dot_bf16(isa, m, n_rows, rng):
    weights = _bf16_inputs(rng, (30, m))
    x = _bf16_inputs(rng, m)
    rows = rng.integers(0, 30, n_rows).astype(np.int32)
    got = _simd.gather_dot_bf16(_readonly(x), _readonly(weights), _readonly(rows), isa=isa)
    wf = bf16_to_f32_reference(weights[rows]).astype(np.float64)
    xf = bf16_to_f32_reference(x).astype(np.float64)
    _close(got, wf @ xf, np.abs(wf * xf).sum(axis=1) + 1.0)


def _softmax_reference(z):
    z = np.asarray(z, dtype=np.float64)
    zmax = z.max()
    e = np.exp(z - zmax)
    return e / e.sum(), zmax + np.log(e.sum())


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("n", [n for n in LENGTHS if n > 0])
@pytest.mark.parametrize("spread", [1.0, 30.0, 1e4])
def test_softmax(isa, n, spread, rng):
    z = _readonly((rng.standard_normal(n) * spread).astype(np.float32))
    p, lse = _simd.softmax(z, isa=isa)
    p_ref, lse_ref = _softmax_reference(z)
    np.testing.assert_allclose(p, p_ref, rtol=1e-5, atol=1e-7)
    assert abs(lse - lse_ref) <= 1e-5 * max(1.0, abs(lse_ref))
    assert abs(p.sum(dtype=np.float64) - 1.0) < 1e-5


@pytest.mark.parametrize("isa", ISAS)
def test_softmax_edge_cases(isa):
    p, lse = _simd.softmax(np.zeros(0, dtype=np.float32), isa=isa)
    assert p.shape == (0,) and lse == -np.inf

    z = np.array([0.0, -np.inf, 3.0, -np.inf, -200.0] * 7, dtype=np.float32)
    p, lse = _simd.softmax(z, isa=isa)
    p_ref, lse_ref = _softmax_reference(z)
    np.testing.assert_allclose(p, p_ref, rtol=1e-5, atol=1e-30)
    assert np.all(p[np.isneginf(z)] == 0.0)
    np.testing.assert_allclose(lse, lse_ref, rtol=1e-6)

    # every logit -inf: the limit of softmax is uniform
    p, lse = _simd.softmax(np.full(19, -np.inf, dtype=np.float32), isa=isa)
    np.testing.assert_allclose(p, np.full(19, 1 / 19), rtol=1e-6)
    assert lse == -np.inf

    # large equal logits must not overflow
    p, _ = _simd.softmax(np.full(33, 3e38, dtype=np.float32), isa=isa)
    np.testing.assert_allclose(p, np.full(33, 1 / 33), rtol=1e-6)


def _topk_reference(s, k):
    order = np.lexsort((np.arange(s.size), -s.astype(np.float64)))[:k]
    return order.astype(np.int32), s[order]


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("n", LENGTHS)
@pytest.mark.parametrize("k", [0, 1, 5, 16, 100, 2000])
@pytest.mark.parametrize("ties", [False, True])
def test_topk(isa, n, k, ties, rng):
    if ties:
        s = rng.integers(-3, 4, n).astype(np.float32)
    else:
        s = rng.standard_normal(n).astype(np.float32)
    idx, val = _simd.topk(_readonly(s), k, isa=isa)
    ref_idx, ref_val = _topk_reference(s, k)
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_array_equal(val, ref_val)


@pytest.mark.parametrize("isa", ISAS)
def test_topk_special_values(isa):
    s = np.array([-np.inf, 1.0, np.inf, -0.0, 0.0, -np.inf, 5.0] * 5, dtype=np.float32)
    for k in range(s.size + 1):
        idx, _ = _simd.topk(s, k, isa=isa)
        np.testing.assert_array_equal(idx, _topk_reference(s, k)[0])
    with pytest.raises(ValueError, match="k must be >= 0"):
        _simd.topk(s, -1, isa=isa)


@pytest.mark.parametrize("n", [64, 100, 159, 1000])
@pytest.mark.parametrize("k", [1, 5, 16, 17])
def test_topk_gives_every_variant_the_same_ids_with_nan_and_ties(n, k, rng):
    """Rows of few distinct values (many ties at the k-th), with and without
    NaN here and there: each variant's ids and values are the scalar one's
    (the vector variant takes a first bound from each lane's maximum)."""
    for trial in range(20):
        s = rng.integers(-2, 3, n).astype(np.float32)
        if trial % 2:
            s[rng.integers(0, n, 1 + trial % 3)] = np.nan
        if trial % 5 == 0:
            s[::7] = -0.0
        ref = _simd.topk(s, k, isa="scalar")
        if not np.isnan(s).any():
            np.testing.assert_array_equal(ref[0], _topk_reference(s, k)[0])
        for isa in _simd.supported_isas():
            got = _simd.topk(_readonly(s), k, isa=isa)
            np.testing.assert_array_equal(got[0], ref[0])
            np.testing.assert_array_equal(got[1].view(np.int32), ref[1].view(np.int32))


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("n", LENGTHS)
def test_bf16_round_trip_is_exact_and_rne(isa, n, rng):
    x = (rng.standard_normal(n) * 10.0 ** rng.integers(-40, 38, n)).astype(np.float32)
    h = _simd.f32_to_bf16(_readonly(x), isa=isa)
    np.testing.assert_array_equal(h, bf16_round_reference(x))
    back = _simd.bf16_to_f32(_readonly(h), isa=isa)
    np.testing.assert_array_equal(back.view(np.uint32), bf16_to_f32_reference(h).view(np.uint32))


@pytest.mark.parametrize("isa", ISAS)
def test_bf16_special_values(isa):
    specials = np.array(
        [0.0, -0.0, 1.0, -1.0, np.inf, -np.inf, np.nan, -np.nan,
         np.finfo(np.float32).max, -np.finfo(np.float32).max,
         np.finfo(np.float32).tiny, 1e-45, -1e-45, 1e-40,
         1.00390625, 1.01171875, 3.0e38, 65504.0],
        dtype=np.float32,
    )
    # ties: 1 + 2**-8 is halfway between two bfloat16 values and rounds to even
    x = np.tile(specials, 3)
    h = _simd.f32_to_bf16(x, isa=isa)
    np.testing.assert_array_equal(h, bf16_round_reference(x))
    back = _simd.bf16_to_f32(h, isa=isa)
    assert np.all(np.isnan(back) == np.isnan(x))
    assert np.all(np.isinf(back[np.isinf(x)]))
    assert _simd.bf16_to_f32(_simd.f32_to_bf16(np.float32([1.00390625]), isa=isa))[0] == 1.0


@pytest.mark.parametrize("isa", ISAS)
def test_invalid_inputs_raise(isa):
    w = np.zeros((4, 8), dtype=np.float32)
    x = np.zeros(8, dtype=np.float32)
    with pytest.raises(ValueError, match="same length"):
        _simd.dot(x, x[:3], isa=isa)
    with pytest.raises(ValueError, match=r"rows\[1\] = 4 is out of range"):
        _simd.gather_dot(x, w, np.array([0, 4], dtype=np.int32), isa=isa)
    with pytest.raises(ValueError, match=r"rows\[0\] = -1 is out of range"):
        _simd.gather_dot(x, w, np.array([-1], dtype=np.int32), isa=isa)
    with pytest.raises(ValueError, match="columns"):
        _simd.gather_dot(x[:5], w, np.array([0], dtype=np.int32), isa=isa)
    with pytest.raises(ValueError, match=r"indices\[0\] = 9"):
        _simd.sparse_dense_accum(
            np.array([9], dtype=np.int32), np.ones(1, np.float32), w, x.copy(), isa=isa
        )
    with pytest.raises(ValueError, match="dtype mismatch"):
        _simd.dot(x.astype(np.float64), x, isa=isa)
    with pytest.raises(ValueError, match="read-only"):
        _simd.axpy(1.0, x, _readonly(x), isa=isa)


def test_unknown_isa_argument():
    x = np.zeros(3, dtype=np.float32)
    with pytest.raises(ValueError, match="isa must be None or one of"):
        _simd.dot(x, x, isa="sse9")


def test_dispatch_reports_consistent_facts():
    supported = _simd.supported_isas()
    assert supported[0] == "scalar"
    assert set(supported) <= set(_simd.compiled_isas())
    assert _simd.active_isa() in supported
    features = _simd.cpu_features()
    if "avx512" in supported:
        assert features["avx512f"] and features["os_saves_zmm"]
    if "avx512_bf16" in supported:
        assert features["avx512_bf16"]
    if not FORCED:
        assert _simd.active_isa() == supported[-1]


def test_effective_n_threads():
    info = _openmp.build_info()
    if not info["openmp"]:
        assert _openmp.effective_n_threads(4) == 1
        return
    max_threads = _openmp.effective_n_threads(None)
    assert max_threads >= 1
    assert _openmp.effective_n_threads(3) == 3
    assert _openmp.effective_n_threads(-1) == max_threads
    assert _openmp.effective_n_threads(-1000) == 1
    with pytest.raises(ValueError, match="n_jobs"):
        _openmp.effective_n_threads(0)


def test_threadpoolctl_limits_openmp():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    if not _openmp.build_info()["openmp"]:
        pytest.skip("built without OpenMP")
    with threadpoolctl.threadpool_limits(limits=1, user_api="openmp"):
        assert _openmp.effective_n_threads(None) == 1


def _run_python(code, isa):
    env = dict(os.environ)
    env[_simd.ISA_ENV_VAR] = isa
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )


@pytest.mark.skipif(FORCED is not None, reason="already inside a forced subprocess")
@pytest.mark.parametrize("isa", _simd.supported_isas())
def test_forced_isa_in_subprocess(isa):
    """Every test above, in a fresh interpreter whose import chose ``isa``."""
    out = _run_python("from sksketch._kernels import _simd; print(_simd.active_isa())", isa)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == isa
    result = subprocess.run(
        [sys.executable, "-m", "pytest", __file__, "-q", "-x", "-p", "no:cacheprovider"],
        env={**os.environ, _simd.ISA_ENV_VAR: isa},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


@pytest.mark.skipif(FORCED is not None, reason="already inside a forced subprocess")
@pytest.mark.parametrize("value", ["not-an-isa", "avx9000"])
def test_bad_isa_request_warns_and_falls_back(value):
    code = (
        "import warnings\n"
        "with warnings.catch_warnings(record=True) as w:\n"
        "    warnings.simplefilter('always')\n"
        "    from sksketch._kernels import _simd\n"
        "print(_simd.active_isa(), _simd.supported_isas()[-1])\n"
        "print(any('SKSKETCH_ISA' in str(x.message) for x in w))\n"
    )
    out = _run_python(code, value)
    assert out.returncode == 0, out.stderr
    line1, line2 = out.stdout.strip().splitlines()
    active, best = line1.split()
    assert active == best
    assert line2 == "True"


def test_show_config_reports_active_isa(capsys):
    import sksketch

    config = sksketch.show_config(mode="dicts")
    assert config["simd"]["active_isa"] == _simd.active_isa()
    assert config["sksketch"]["version"] == sksketch.__version__
    assert config["build"]["compiler"]
    assert "-march=native" not in config["build"]["flags"] or os.environ.get(
        "SKSKETCH_NATIVE"
    )
    assert sksketch.show_config() is None
    printed = capsys.readouterr().out
    assert f"active_isa: {_simd.active_isa()}" in printed
    assert "openmp:" in printed
    with pytest.raises(ValueError, match="mode"):
        sksketch.show_config(mode="json")


# ---------------------------------------------------------------- entry checks
# The kernels index without bounds checks; each entry point checks the sizes it
# relies on, so a caller's mistake (or a corrupt pickle) is a ValueError.

def _f32(*shape):
    return np.zeros(shape, dtype=np.float32)


def test_dense_kernels_check_shapes():
    from sksketch._kernels import _dense

    with pytest.raises(ValueError, match="bias has 2 values"):
        _dense.bias_relu(_f32(2, 3), _f32(2), True, 1)
    with pytest.raises(ValueError, match="same shape"):
        _dense.relu_backward(_f32(2, 3), _f32(2, 2), 1)
    with pytest.raises(ValueError, match="same length"):
        _dense.adam_step(_f32(4), _f32(4), _f32(3), _f32(4), 1, 1e-3, 0.9, 0.999, 1e-8, 0.0, 1)
    args = dict(target_mass=1.0, unseen_targets=_f32(3, 0),
                unseen_ids=np.zeros(0, np.int32), weights=np.ones(2, np.float32), scale=1.0,
                grad=_f32(2, 3), losses=_f32(2), n_threads=1)
    _dense.soft_label_cross_entropy(_f32(2, 3), np.array([0, 2], np.int32), *args.values())
    with pytest.raises(ValueError, match=r"targets\[1\] = 3 is not in \[0, 3\)"):
        _dense.soft_label_cross_entropy(_f32(2, 3), np.array([0, 3], np.int32), *args.values())
    with pytest.raises(ValueError, match="inconsistent"):
        _dense.soft_label_cross_entropy(_f32(2, 3), np.array([0], np.int32), *args.values())


def test_slide_kernels_check_shapes():
    from sksketch._kernels import _network

    W = _f32(5, 4)
    with pytest.raises(ValueError, match="W's shape"):
        _network.adam_update(W, _f32(5, 4), _f32(5, 3), _f32(5, 4), np.ones(5, np.uint8),
                           1e-3, 0.9, 0.999, 1e-8, 1, 1)
    indptr, indices, data = (np.array([0, 2], np.int32), np.array([0, 4], np.int32),
                             np.ones(2, np.float32))
    out = _network.hidden_forward(indptr, np.array([0, 2], np.int32), data, W, _f32(4), 1)
    assert out.shape == (1, 4)
    with pytest.raises(ValueError, match=r"X_indices must be in \[0, 5\)"):
        _network.hidden_forward(indptr, np.array([0, 5], np.int32), data, W, _f32(4), 1)
    with pytest.raises(ValueError, match="b1 has 3 values"):
        _network.hidden_forward(indptr, indices, data, W, _f32(3), 1)
    with pytest.raises(ValueError, match="CSR"):
        _network.hidden_forward(np.array([0, 3], np.int32), indices, data, W, _f32(4), 1)


@pytest.mark.parametrize("family", ["dwta", "simhash"])
def test_lsh_tables_refuse_corrupt_hash_functions(family):
    import pickle

    from sksketch._kernels._lsh import LSHTables

    tables = LSHTables(family, 8, 2, 3, seed=0)
    tables.build(np.random.default_rng(0).standard_normal((10, 8)).astype(np.float32))
    cls, args, state = tables.__reduce__()
    assert pickle.loads(pickle.dumps(tables)).hash(np.ones((1, 8), np.float32)).shape == (1, 3)
    bad = dict(state, coords=state["coords"][:-1])
    with pytest.raises(ValueError, match="hash function sizes"):
        cls(*args).__setstate__(bad)


def test_nw_sketch_refuses_corrupt_state():
    from sksketch._kernels._nw_sketch import NWSketch

    sketch = NWSketch(4, 3, 5, 16, 0)
    cls, args, state = sketch.__reduce__()
    sums, counts, total_sum, total_count = state
    with pytest.raises(ValueError, match="corrupt NWSketch state"):
        cls(*args).__setstate__((sums[:, :8], counts, total_sum, total_count))


@pytest.mark.parametrize("width", [1, 16, 33, 256])
def test_hidden_forward_is_relu_of_the_affine_map_on_cache_lines(width, rng):
    import scipy.sparse as sp

    from sksketch._kernels import _network

    X = sp.random(40, 30, density=0.2, format="csr", dtype=np.float32, random_state=0)
    X.indices, X.indptr = X.indices.astype(np.int32), X.indptr.astype(np.int32)
    W1 = _readonly(rng.standard_normal((30, width)).astype(np.float32))
    b1 = _readonly(rng.standard_normal(width).astype(np.float32))
    got = _network.hidden_forward(X.indptr, X.indices, X.data, W1, b1, 2)
    assert got.shape == (40, width) and got.dtype == np.float32 and got.flags.c_contiguous
    assert got.ctypes.data % 64 == 0  # output_scores reads such rows in place
    pre = X.toarray().astype(np.float64) @ W1 + b1
    _close(got, np.maximum(pre, 0), abs(X).toarray() @ np.abs(W1) + np.abs(b1) + 1e-6)


@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("width", [1, 16, 37])
def test_add_label_sums_is_scipys_product_bit_for_bit(n_threads, width, rng):
    """sums[cols] += Y[:, cols].T @ h, as scipy computes it (the labels' rows
    in order, then one addition), into sums that already hold values."""
    import scipy.sparse as sp

    from sksketch._kernels import _network

    Y = sp.random(300, 50, density=0.05, format="csr", dtype=np.float32, random_state=1)
    Y.data[:] = 1
    h = _readonly(rng.standard_normal((300, width)).astype(np.float32) * 1e3)
    start = rng.standard_normal((50, width)).astype(np.float32)
    cols = np.unique(Y.indices).astype(np.int32)
    want = start.copy()
    want[cols] += (Y[:, cols].T @ h).astype(np.float32)
    got = start.copy()
    Yt = Y.tocsc()
    _network.add_label_sums(Yt.indptr.astype(np.int32), Yt.indices.astype(np.int32), h, got,
                            cols, n_threads)
    np.testing.assert_array_equal(got.view(np.int32), want.view(np.int32))
    with pytest.raises(ValueError, match="labels must be in"):
        _network.add_label_sums(Yt.indptr.astype(np.int32), Yt.indices.astype(np.int32), h,
                                got, np.array([50], np.int32), n_threads)
    with pytest.raises(ValueError, match="does not take"):
        _network.add_label_sums(Yt.indptr.astype(np.int32), Yt.indices.astype(np.int32), h,
                                got[:10], cols, n_threads)
    bad = Yt.indptr.astype(np.int32)
    bad[1], bad[2] = bad[2] + 1, bad[1]  # decreasing
    with pytest.raises(ValueError, match="do not index rows of h"):
        _network.add_label_sums(bad, Yt.indices.astype(np.int32), h, got, cols, n_threads)
    with pytest.raises(ValueError, match="do not index rows of h"):
        _network.add_label_sums(Yt.indptr.astype(np.int32), Yt.indices.astype(np.int32), h[:5],
                                got, cols, n_threads)


@pytest.mark.parametrize("n_labels", [1, 7, 255, 256, 257, 1000])
@pytest.mark.parametrize("width", [1, 5, 16, 33])
def test_output_scores_matches_numpy(n_labels, width, rng):
    from sksketch._kernels import _network

    hidden = _readonly(np.maximum(rng.standard_normal((9, width)), 0).astype(np.float32))
    W2 = _readonly(rng.standard_normal((n_labels, width)).astype(np.float32))
    b2 = _readonly(rng.standard_normal(n_labels).astype(np.float32))
    got = _network.output_scores(hidden, W2, b2, 2)
    assert got.dtype == np.float32 and got.shape == (9, n_labels)
    h64, w64 = hidden.astype(np.float64), W2.astype(np.float64)
    _close(got, h64 @ w64.T + b2, np.abs(h64) @ np.abs(w64).T + np.abs(b2), rtol=4e-6)


@pytest.mark.parametrize("n_labels", [1300, 159, 300])
@pytest.mark.parametrize("n_rows, width", [(64, 48), (33, 45), (7, 128), (5, 600), (41, 200),
                                           (300, 16)])
def test_output_scores_entry_does_not_depend_on_the_batch(n_rows, width, n_labels, rng):
    # A BLAS product may score a row alone differently (in the last bits)
    # from the same row in a batch, or with another thread count. Rows are
    # scored in pairs, in passes of a few (three passes, the last of one
    # row, at width 200; two at 16), labels in tiles sized by the width, and
    # from 8 rows on from copies on 64-byte boundaries; with fewer label
    # blocks (of 256) than threads, the rows of a block are cut among the
    # threads too (159 and 300 labels: one and two blocks): none may change
    # an entry.
    from sksketch._kernels import _network

    hidden = np.maximum(rng.standard_normal((n_rows, width)) * 0.3, 0).astype(np.float32)
    # weights that start 4 bytes past where numpy put them
    W2 = np.empty(n_labels * width + 1, dtype=np.float32)[1:].reshape(n_labels, width)
    W2[...] = rng.standard_normal((n_labels, width))
    b2 = rng.standard_normal(n_labels).astype(np.float32)
    full = _network.output_scores(hidden, W2, b2, 2)
    for n_threads in (1, 3, 4):
        np.testing.assert_array_equal(_network.output_scores(hidden, W2, b2, n_threads), full)
    for i in (0, n_rows // 2, n_rows - 1):
        np.testing.assert_array_equal(_network.output_scores(hidden[i : i + 1], W2, b2, 2),
                                      full[i : i + 1])
    order = rng.permutation(n_rows)
    np.testing.assert_array_equal(_network.output_scores(hidden[order], W2, b2, 2), full[order])
    np.testing.assert_array_equal(_network.output_scores(hidden[1:], W2, b2, 2), full[1:])
    # rows already on 64-byte boundaries (as hidden_forward gives them) are read in place
    on_lines = _network.aligned_array(hidden.shape)
    on_lines[...] = hidden
    assert on_lines.ctypes.data % 64 == 0
    np.testing.assert_array_equal(_network.output_scores(on_lines, W2, b2, 2), full)
    h64, w64 = hidden.astype(np.float64), W2.astype(np.float64)
    _close(full, h64 @ w64.T + b2, np.abs(h64) @ np.abs(w64).T + np.abs(b2), rtol=4e-6)


def test_output_scores_checks_shapes_and_empty_inputs():
    from sksketch._kernels import _network

    with pytest.raises(ValueError, match="do not match"):
        _network.output_scores(_f32(2, 4), _f32(3, 5), _f32(3), 1)
    with pytest.raises(ValueError, match="do not match"):
        _network.output_scores(_f32(2, 4), _f32(3, 4), _f32(2), 1)
    assert _network.output_scores(_f32(0, 4), _f32(3, 4), _f32(3), 1).shape == (0, 3)
    assert _network.output_scores(_f32(2, 4), _f32(0, 4), _f32(0), 1).shape == (2, 0)
    b2 = np.array([1.0, -2.0], np.float32)
    np.testing.assert_array_equal(_network.output_scores(_f32(3, 0), _f32(2, 0), b2, 1),
                                  np.tile(b2, (3, 1)))


# ------------------------------------------------- row passes (_rows)


def _rows_matrix(rng, n, d, density):
    X = rng.standard_normal((n, d)).astype(np.float32)
    X[rng.random((n, d)) >= density] = 0.0
    X[0] = 0.0  # an empty row
    if n > 2:
        X[2, ::3] = -0.0  # negative zeros are zeros
    return X


@pytest.mark.parametrize("n, d, density", [(1, 1, 1.0), (7, 1, 0.5), (40, 33, 0.3), (300, 5, 0.9)])
def test_dense_to_csr_matches_scipy(n, d, density, rng):
    import scipy.sparse as sp

    from sksketch.utils._validation import canonical_rows

    X = _rows_matrix(rng, n, d, density)
    ref = sp.csr_matrix(X)
    for n_threads in (1, 2, 3):
        got = canonical_rows(X, dense="csr", n_threads=n_threads)
        assert got.indices.dtype == np.int32 and got.indptr.dtype == np.int32
        assert got.has_canonical_format and got.shape == X.shape
        np.testing.assert_array_equal(got.indptr, ref.indptr)
        np.testing.assert_array_equal(got.indices, ref.indices)
        np.testing.assert_array_equal(got.data, ref.data)
    # F-ordered and float64 input give the same matrix
    for Y in (np.asfortranarray(X), X.astype(np.float64)):
        got = canonical_rows(Y, dense="csr", n_threads=2)
        np.testing.assert_array_equal(got.toarray(), X)
        np.testing.assert_array_equal(got.indptr, ref.indptr)


@pytest.mark.parametrize(
    "n, d, density", [(1, 1, 1.0), (40, 33, 0.3), (300, 5, 0.9), (4, 3, 0.0), (3, 0, 1.0)]
)
def test_row_checksums_match_numpy(n, d, density, rng):
    import scipy.sparse as sp

    from sksketch._kernels import _rows

    X = _rows_matrix(rng, n, d, density)
    X64 = X.astype(np.float64)
    cols = np.arange(1, d + 1, dtype=np.float64)
    ref = np.column_stack([X64.sum(axis=1), (X64 * X64).sum(axis=1), X64 @ cols])
    S = sp.csr_matrix(X)
    for n_threads in (1, 2):
        dense = np.empty((n, 3))
        _rows.dense_row_checksums(X, dense, n_threads)
        csr = np.empty((n, 3))
        _rows.csr_row_checksums(S.data, S.indices, S.indptr, csr, n_threads)
        np.testing.assert_allclose(dense, ref, rtol=1e-12, atol=1e-12)
        # the same additions, in column order, skipping zeros: the same bits
        np.testing.assert_array_equal(csr, dense)


def _wait_policy_in_subprocess(extra_env):
    env = {k: v for k, v in os.environ.items()
           if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")}
    env.update(extra_env)
    code = (
        "import os, sksketch; "
        "print(sksketch.show_config('dicts')['openmp']['wait_policy']); "
        "print(os.environ.get('GOMP_SPINCOUNT'))"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True).stdout.splitlines()
    return out


@pytest.mark.skipif(not _openmp.build_info()["openmp"], reason="built without OpenMP")
def test_openmp_wait_policy_is_the_runtime_default_unless_the_user_chose_one():
    policy, left_in_env = _wait_policy_in_subprocess({})
    assert policy == "OpenMP runtime default"
    assert left_in_env == "None"  # sksketch sets nothing
    policy, left_in_env = _wait_policy_in_subprocess({"OMP_WAIT_POLICY": "passive"})
    assert policy == "environment, OMP_WAIT_POLICY=passive"
    assert left_in_env == "None"


def _bounded_model(rng, n_labels, width, n_features, n_rows, head=True, clusters=False):
    """Output layer, sparse head and rows for the bounded top-k tests (and label clusters)."""
    import scipy.sparse as sp

    from sksketch._slide._sparse_head import SparseLabelHead

    W2 = (rng.standard_normal((n_labels, width)) * 0.3).astype(np.float32)
    W2[7] = W2[3]  # two labels always tied
    b2 = (rng.standard_normal(n_labels) * 0.5).astype(np.float32)
    # a few labels ahead by their bias (the tied pair and the last label
    # among them): the bounds of the others fall below them
    b2[rng.choice(n_labels, 12, replace=False)] += 4
    b2[[3, n_labels - 1]] += 4
    b2[7] = b2[3]
    hidden = np.maximum(rng.standard_normal((n_rows, width)) * 0.3, 0).astype(np.float32)
    X = sp.random(n_rows, n_features, density=8 / n_features, format="csr", random_state=1,
                  dtype=np.float32)
    X.data[:] = rng.random(X.nnz).astype(np.float32) + 0.1
    Y = sp.random(n_rows, n_labels, density=2 / n_labels, format="csr", random_state=2)
    Y.data[:] = 1
    h = None
    if head:
        h, = SparseLabelHead.from_data(X, Y, np.ones(n_rows), 64)
        h.weights[:] = rng.standard_normal(h.n_pairs).astype(np.float32)
    if not clusters:
        return W2, b2, hidden, X, h
    from sksketch._slide._label_clusters import LabelClusterHead

    c = LabelClusterHead.from_data(X, Y, np.ones(n_rows, dtype=np.float32), 16, 64,
                                   np.random.default_rng(0))
    c.head.weights[:] = rng.standard_normal(c.head.n_pairs).astype(np.float32)
    return W2, b2, hidden, X, h, c


@pytest.mark.parametrize("k", [1, 3, 10])
@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("head, clusters", [(True, False), (False, False), (True, True),
                                            (False, True)])
def test_bounded_topk_is_the_full_top_k_bit_for_bit(k, n_threads, head, clusters, rng):
    """Ids and score bits of output_scores + add_scores + topk_rows, from few labels' scores.

    With label clusters, their term is added last (LabelClusterHead.add_scores).
    """
    from sksketch._kernels import _network
    from sksketch._slide._inference import bounded_rows, output_bounds

    # 4,101 labels: a tail of 5 past the last group of 8
    W2, b2, hidden, X, h, *c = _bounded_model(rng, 4101, 24, 3000, 300, head, clusters)
    c = c[0] if clusters else None
    c_scale = 1.5 if clusters else 0.0
    hidden[5] = 0  # a row with nothing but biases (and head terms)
    hidden[6] -= 0.5  # rows with negative activations: the bound of every label
    hidden[8] = -hidden[8]
    scale = 2.0 if head else 0.0

    def check():
        """The rows scored by bounds (most of them) against the full ranking."""
        full = _network.output_scores(hidden, W2, b2, n_threads)
        if head:
            h.add_scores(full, X, scale, n_threads)
        if clusters:
            c.add_scores(full, X, c_scale, n_threads)
        want_ids, want = _network.topk_rows(full, k, n_threads)
        ids, vals, rest = bounded_rows(W2, b2, output_bounds(W2, b2), h, scale, hidden, X, k,
                                       n_threads, c, c_scale)
        done = np.setdiff1d(np.arange(300), rest)
        assert done.size >= 200  # most rows scored few labels
        np.testing.assert_array_equal(ids[done], want_ids[done])
        np.testing.assert_array_equal(vals[done].view(np.int32), want[done].view(np.int32))
        return want_ids[done]

    check()
    # a tail label or the tied pair on top: still the full order
    W2[4100] = W2[3] * 3
    b2[[3, 7]] = 100
    assert set(check()[:, 0]) <= {3, 4100}


def test_bounded_topk_leaves_non_finite_rows_to_full_scoring(rng):
    from sksketch._slide._inference import bounded_rows, output_bounds

    W2, b2, hidden, X, h = _bounded_model(rng, 4096, 16, 2000, 20)
    hidden[3, 2] = np.nan
    hidden[4, 0] = np.inf
    ids, vals, rest = bounded_rows(W2, b2, output_bounds(W2, b2), h, 2.0, hidden, X, 5, 2)
    assert {3, 4} <= set(rest.tolist())
    W2[9, 1] = np.nan
    assert output_bounds(W2, b2) is None  # the caller scores every label


def test_upper_envelope_is_the_maximum_of_the_lines(rng):
    from sksketch._kernels._sparse_head import upper_envelope

    for n in (1, 2, 3, 50, 5000):
        slope = rng.random(n)
        icpt = rng.standard_normal(n)
        slope[: n // 2] = np.round(slope[: n // 2], 1)  # equal slopes
        slopes, icpts, breaks = upper_envelope(slope, icpt)
        a = np.concatenate([[0.0], rng.random(500) * 30])
        line = np.searchsorted(breaks, a, side="right")
        np.testing.assert_allclose(slopes[line] * a + icpts[line],
                                   (slope[None] * a[:, None] + icpt[None]).max(axis=1),
                                   rtol=0, atol=1e-12)
