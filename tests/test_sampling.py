"""The sampler protocol, the samplers, the epoch loop and the NW loss sketch."""

import pickle

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.base import clone

from sksketch.sampling import (
    BaseSampler,
    ExactLossSampler,
    NadarayaWatsonSketch,
    NWSketchSampler,
    UniformSampler,
    check_sampler,
    run_epoch,
)


def _data(n=300, d=6, seed=0):
    rng = np.random.RandomState(seed)
    return rng.randn(n, d).astype(np.float32)


# ----------------------------------------------------------------- protocol


@pytest.mark.parametrize(
    "spec, cls",
    [
        (None, UniformSampler),
        ("uniform", UniformSampler),
        ("nw-sketch", NWSketchSampler),
        ("exact-loss", ExactLossSampler),
    ],
)
def test_check_sampler_names(spec, cls):
    sampler = check_sampler(spec)
    assert type(sampler) is cls
    assert isinstance(sampler, BaseSampler)


def test_check_sampler_clones_instances():
    proto = NWSketchSampler(n_rows=7, uniform_mix=0.3)
    proto.start(_data(20))
    resolved = check_sampler(proto)
    assert resolved is not proto
    assert resolved.get_params() == proto.get_params()
    assert not hasattr(resolved, "sketch_")


@pytest.mark.parametrize("bad, error", [("nw", ValueError), (3, TypeError), (object(), TypeError)])
def test_check_sampler_rejects(bad, error):
    with pytest.raises(error, match="sampler"):
        check_sampler(bad)


def test_uniform_in_order_without_shuffle():
    sampler = UniformSampler(shuffle=False).start(_data(7))
    out = list(sampler.batches(3))
    assert [idx.tolist() for idx, _ in out] == [[0, 1, 2], [3, 4, 5], [6]]
    for idx, w in out:
        assert idx.dtype == np.int64 and w.dtype == np.float32
        assert np.all(w == 1.0)


def test_uniform_shuffle_is_a_permutation_per_epoch_and_reproducible():
    X = _data(50)
    a = UniformSampler().start(X, random_state=np.random.RandomState(3))
    b = UniformSampler().start(X, random_state=np.random.RandomState(3))
    e1 = np.concatenate([i for i, _ in a.batches(8)])
    e2 = np.concatenate([i for i, _ in a.batches(8)])
    assert sorted(e1.tolist()) == list(range(50)) == sorted(e2.tolist())
    assert not np.array_equal(e1, e2)
    assert np.array_equal(e1, np.concatenate([i for i, _ in b.batches(8)]))
    c = UniformSampler(random_state=3).start(X)
    d = UniformSampler(random_state=3).start(X)
    assert np.array_equal(
        np.concatenate([i for i, _ in c.batches(8)]), np.concatenate([i for i, _ in d.batches(8)])
    )


@pytest.mark.parametrize("sampler", [UniformSampler(), NWSketchSampler(), ExactLossSampler()])
@pytest.mark.parametrize("n, batch_size", [(10, 3), (9, 3), (1, 5)])
def test_batch_count_and_sizes(sampler, n, batch_size):
    X = _data(n)
    sampler.start(X, loss_fn=lambda idx: np.ones(len(idx), np.float32))
    sizes = [len(idx) for idx, _ in sampler.batches(batch_size)]
    assert len(sizes) == -(-n // batch_size)
    assert sum(sizes) == n
    assert sampler.epoch_stats_["n_batches"] == len(sizes)


def test_batches_before_start_and_bad_batch_size():
    with pytest.raises(RuntimeError, match="start"):
        next(UniformSampler().batches(2))
    sampler = UniformSampler().start(_data(5))
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="batch_size"):
            next(sampler.batches(bad))


def test_start_rejects_bad_input():
    with pytest.raises(TypeError, match="X"):
        UniformSampler().start([[1.0, 2.0]])
    with pytest.raises(ValueError, match="at least one row"):
        UniformSampler().start(np.zeros((0, 3), np.float32))
    with pytest.raises(TypeError, match="loss_fn"):
        UniformSampler().start(_data(4), loss_fn=3)
    with pytest.raises(ValueError, match="loss_fn"):
        ExactLossSampler().start(_data(4))


# --------------------------------------------------------------- epoch loop


def test_run_epoch_multiplies_sample_weight_and_feeds_observe():
    X = _data(10)
    seen = []

    class Recorder(UniformSampler):
        def observe(self, indices, losses):
            seen.append((indices.copy(), losses.copy()))
            return self

    sampler = Recorder(shuffle=False).start(X)
    sw = np.arange(10, dtype=np.float64)
    got_w = []

    def train(idx, w):
        got_w.append(w)
        return X[idx, 0]

    stats = run_epoch(sampler, 4, train, sample_weight=sw)
    assert stats["n_batches"] == 3 and stats["n_samples"] == 10
    assert all(w.dtype == np.float32 for w in got_w)
    np.testing.assert_array_equal(np.concatenate(got_w), sw.astype(np.float32))
    np.testing.assert_array_equal(np.concatenate([s[0] for s in seen]), np.arange(10))
    np.testing.assert_allclose(np.concatenate([s[1] for s in seen]), X[:, 0])
    np.testing.assert_allclose(stats["loss"], np.dot(sw, X[:, 0]) / sw.sum(), rtol=1e-5)
    assert stats["effective_sample_size"] > 0


def test_run_epoch_takes_steps_that_return_no_losses():
    X = _data(10)
    seen = []

    class Recorder(UniformSampler):
        def observe(self, indices, losses):
            seen.append(indices)
            return self

    sampler = Recorder(shuffle=False).start(X)
    returns = iter([X[:4, 0], None, X[8:, 0]])
    stats = run_epoch(sampler, 4, lambda idx, w: next(returns))
    assert stats["n_batches"] == 3 and stats["n_samples"] == 10
    assert [len(i) for i in seen] == [4, 2]  # the step without losses is not observed
    assert stats["loss"] == pytest.approx(X[[0, 1, 2, 3, 8, 9], 0].mean(), rel=1e-5)


def test_epoch_statistics_survive_a_sampler_that_reuses_its_buffers():
    class Reusing(BaseSampler):
        def _epoch_indices(self, batch_size):
            idx = np.empty(batch_size, dtype=np.int64)
            w = np.empty(batch_size, dtype=np.float32)
            for start in range(0, self.n_samples_, batch_size):
                n = min(batch_size, self.n_samples_ - start)
                idx[:n] = np.arange(start, start + n)
                w[:n] = 1.0 + start  # 1 for the first batch, 5 for the second
                yield idx[:n], w[:n]

    X = _data(8)
    sampler = Reusing().start(X)
    stats = run_epoch(sampler, 4, lambda idx, w: idx.astype(np.float32))
    weights = np.repeat([1.0, 5.0], 4)
    losses = np.arange(8.0)
    assert stats["loss"] == pytest.approx(weights @ losses / weights.sum())
    assert stats["effective_sample_size"] == pytest.approx(weights.sum() ** 2 / (weights @ weights))
    assert stats["max_weight"] == 5.0


def test_run_epoch_rejects_wrong_shapes():
    sampler = UniformSampler().start(_data(6))
    with pytest.raises(ValueError, match="sample_weight"):
        run_epoch(sampler, 2, lambda i, w: np.zeros(len(i)), sample_weight=np.ones(5))
    with pytest.raises(ValueError, match="losses"):
        run_epoch(sampler, 2, lambda i, w: np.zeros(1))
    with pytest.raises(TypeError, match="train_batch"):
        run_epoch(sampler, 2, None)


def test_uniform_effective_sample_size_is_full():
    sampler = UniformSampler().start(_data(20))
    run_epoch(sampler, 6, lambda i, w: np.ones(len(i)))
    assert sampler.effective_sample_size_ == [pytest.approx(20.0)]
    assert sampler.epoch_stats_["effective_sample_size_ratio"] == pytest.approx(1.0)


def test_sampler_pickles_without_call_data():
    X = _data(30)
    sampler = UniformSampler(random_state=0).start(X, loss_fn=lambda i: np.ones(len(i)))
    restored = pickle.loads(pickle.dumps(sampler))
    assert restored.get_params() == sampler.get_params()
    assert "_X" not in restored.__dict__ and "_loss_fn" not in restored.__dict__
    assert clone(restored).get_params() == sampler.get_params()


# ---------------------------------------------------------------- NW sketch


def test_nw_sampler_dense_and_csr_draw_alike():
    X = _data(80)
    X[np.abs(X) < 0.5] = 0.0
    loss = np.abs(X[:, 0]).astype(np.float32)
    draws = []
    for data in (X, sp.csr_matrix(X)):
        sampler = NWSketchSampler(random_state=0).start(data)
        run_epoch(sampler, 16, lambda i, w: loss[i])
        run_epoch(sampler, 16, lambda i, w: loss[i])
        draws.append(sampler.probabilities_)
    np.testing.assert_allclose(draws[0], draws[1], rtol=1e-5)


def test_nw_sampler_pickles_with_its_sketch():
    X = _data(60)
    loss = np.abs(X[:, 1]).astype(np.float32)
    sampler = NWSketchSampler(random_state=1).start(X)
    run_epoch(sampler, 10, lambda i, w: loss[i])
    restored = pickle.loads(pickle.dumps(sampler))
    np.testing.assert_array_equal(restored.sketch_.sums, sampler.sketch_.sums)
    np.testing.assert_array_equal(restored.sketch_.counts, sampler.sketch_.counts)
    restored.start(X, random_state=np.random.RandomState(0))
    sampler.start(X, random_state=np.random.RandomState(0))
    a = [i for i, _ in restored.batches(10)]
    b = [i for i, _ in sampler.batches(10)]
    np.testing.assert_array_equal(np.concatenate(a), np.concatenate(b))


def test_nw_sketch_estimator_predicts_region_losses():
    X = _data(400, 4)
    y = (X[:, 0] > 0).astype(float)
    nw = NadarayaWatsonSketch(random_state=0).fit(X, y)
    pred = nw.predict(X)
    assert pred[y == 1].mean() > 0.7 > 0.3 > pred[y == 0].mean()
    assert nw.sums_.shape == nw.counts_.shape == (32, 256)
    np.testing.assert_allclose(nw.counts_.sum(axis=1), 400)


# ------------------------------------------------- kernel against the NumPy reference


def _sparse_rows(n=300, d=40, seed=0):
    X = _data(n, d, seed)
    X[np.abs(X) < 0.6] = 0.0
    return X


def test_kernel_signs_match_reference():
    from sksketch._kernels._nw_sketch import srp_signs

    from sksketch.sampling._reference import srp_signs as ref_signs

    for n_proj in (1, 64, 65, 200):
        np.testing.assert_array_equal(srp_signs(17, n_proj, 99, 2), ref_signs(17, n_proj, 99))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
# every code a bucket, or codes folded into 2/5 as many buckets
@pytest.mark.parametrize("buckets", ["all codes", "folded"])
# projections: 96 (a partial second word), 5 (under a byte), 448 (7 whole words)
@pytest.mark.parametrize("n_rows, n_hash_bits", [(12, 8), (1, 5), (32, 14)])
def test_kernel_matches_reference_dense_and_csr(dtype, buckets, n_rows, n_hash_bits):
    from sksketch._kernels._nw_sketch import NWSketch

    from sksketch.sampling._reference import NumpyNWSketch

    X = _sparse_rows()
    losses = np.random.RandomState(1).rand(len(X)).astype(np.float32)
    n_buckets = 2**n_hash_bits if buckets == "all codes" else 2**n_hash_bits * 2 // 5
    kernel = NWSketch(X.shape[1], n_rows, n_hash_bits, n_buckets, 7, dtype)
    ref = NumpyNWSketch(n_rows, n_hash_bits, n_buckets, 7)
    codes = ref.hash(X)
    np.testing.assert_array_equal(kernel.hash_dense(X, 2), codes)
    np.testing.assert_array_equal(kernel.hash_csr(sp.csr_matrix(X), 2), codes)
    for decay, part in ((1.0, slice(None)), (0.7, slice(0, 90)), (0.5, slice(50, 300))):
        kernel.insert(codes[part], losses[part], decay, 2)
        ref.insert(codes[part], losses[part], decay)
    rtol = 1e-12 if dtype == "float64" else 1e-5
    np.testing.assert_allclose(kernel.sums, ref.sums, rtol=rtol)
    np.testing.assert_allclose(kernel.counts, ref.counts, rtol=rtol)
    empty = np.zeros((1, n_rows), dtype=np.int32)
    kernel.scale(0.0)
    assert kernel.query(empty)[0] == 0.0
    ref_kernel = NWSketch(X.shape[1], n_rows, n_hash_bits, n_buckets, 7, dtype)
    ref_kernel.insert(codes, losses, 1.0, 1)
    ref.insert(codes, losses, 0.0)
    prior = float(losses.astype(np.float64).mean())
    np.testing.assert_allclose(ref_kernel.query(codes, 2), ref.query(codes, prior), rtol=rtol)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_kernel_insert_and_query_bits_do_not_depend_on_threads(dtype):
    # each thread owns whole sketch rows and adds a batch in its order, so a
    # bucket sees the same additions in the same order whatever the threads
    from sksketch._kernels._nw_sketch import NWSketch

    rng = np.random.RandomState(3)
    n_rows, n_buckets = 7, 64
    codes = rng.randint(0, n_buckets, (500, n_rows)).astype(np.int32)
    losses = rng.rand(500).astype(np.float32)
    results = []
    for n_threads in (1, 2, 3, 16):
        kernel = NWSketch(4, n_rows, 6, n_buckets, 7, dtype)
        kernel.insert(codes[:300], losses[:300], 1.0, n_threads)
        kernel.insert(codes[300:], losses[300:], 0.6, n_threads)
        kernel.insert(codes[:0], losses[:0], 0.9, n_threads)  # decay alone
        results.append((kernel.sums, kernel.counts, kernel.query(codes, n_threads)))
    for sums, counts, estimates in results[1:]:
        np.testing.assert_array_equal(sums, results[0][0])
        np.testing.assert_array_equal(counts, results[0][1])
        np.testing.assert_array_equal(estimates, results[0][2])


def test_run_epoch_feeds_nw_sampler_like_observe_and_rejects_nan_losses():
    X = _data(200)
    loss = (1.0 + X[:, 0] ** 2).astype(np.float32)
    buffer = np.empty(32, dtype=np.float32)

    def reusing_step(idx, w):
        # hands back the same buffer every step
        buffer[: len(idx)] = loss[idx]
        return buffer[: len(idx)]

    a = NWSketchSampler(random_state=0).start(X)
    b = NWSketchSampler(random_state=0).start(X)
    run_epoch(a, 32, reusing_step)
    for idx, _ in b.batches(32):
        b.observe(idx, loss[idx])
    np.testing.assert_array_equal(a.sketch_.sums, b.sketch_.sums)
    np.testing.assert_array_equal(a.sketch_.counts, b.sketch_.counts)

    c = NWSketchSampler(random_state=0).start(X)
    with pytest.raises(ValueError, match="NaN or infinite losses"):
        run_epoch(c, 32, lambda idx, w: np.full(len(idx), np.nan, dtype=np.float32))


def test_kernel_validates_and_pickles():
    from sksketch._kernels._nw_sketch import NWSketch

    X = _sparse_rows(50, 10)
    kernel = NWSketch(10, 4, 6, 64, 3)
    codes = kernel.hash_dense(X)
    kernel.insert(codes, np.ones(50, np.float32))
    with pytest.raises(ValueError, match="features"):
        kernel.hash_dense(np.zeros((2, 11), np.float32))
    with pytest.raises(ValueError, match="codes"):
        kernel.insert(codes + 64, np.ones(50, np.float32))
    with pytest.raises(ValueError, match="losses"):
        kernel.insert(codes, np.ones(49, np.float32))
    with pytest.raises(ValueError, match="finite"):
        kernel.insert(codes, np.full(50, np.nan, np.float32))
    with pytest.raises(ValueError, match="n_hash_bits"):
        NWSketch(10, 4, 31, 64, 3)
    with pytest.raises(ValueError, match="n_buckets"):
        NWSketch(10, 4, 6, 65, 3)
    bad = sp.csr_matrix(X)
    bad.indices = bad.indices.astype(np.int64)
    with pytest.raises(TypeError, match="int32"):
        kernel.hash_csr(bad)
    restored = pickle.loads(pickle.dumps(kernel))
    np.testing.assert_array_equal(restored.query(codes), kernel.query(codes))
    np.testing.assert_array_equal(restored.hash_dense(X), codes)


# ------------------------------------------------------------- statistics


def test_sketch_error_to_exact_nw_shrinks_with_rows():
    from sksketch.sampling._reference import exact_nadaraya_watson

    rng = np.random.RandomState(0)
    X = rng.randn(400, 8)
    y = np.sin(2 * X[:, 0]) + X[:, 1] ** 2
    Q = rng.randn(100, 8)
    exact = exact_nadaraya_watson(X, y, Q, n_hash_bits=4)
    errors = {}
    for n_rows in (2, 16, 128):
        errs = []
        for seed in range(4):
            nw = NadarayaWatsonSketch(n_rows=n_rows, n_hash_bits=4, random_state=seed).fit(X, y)
            errs.append(np.mean(np.abs(nw.predict(Q) - exact)))
        errors[n_rows] = np.mean(errs)
    assert errors[128] < errors[16] < errors[2]
    assert errors[128] < 0.25 * errors[2]
    assert errors[128] < 0.05 * np.std(y)


def _probability_sampler(p_scores, uniform_mix, weighting="importance", seed=0):
    n = len(p_scores)
    sampler = ExactLossSampler(uniform_mix=uniform_mix, weighting=weighting, random_state=seed)
    sampler.start(np.zeros((n, 1), np.float32), loss_fn=lambda idx: p_scores[idx])
    return sampler


def test_sampling_frequencies_follow_probabilities():
    from scipy.stats import chisquare

    scores = np.array([0.0, 1.0, 2.0, 4.0, 8.0, 0.5], dtype=np.float32)
    sampler = _probability_sampler(scores, uniform_mix=0.2)
    counts = np.zeros(len(scores))
    for _ in range(3000):
        for idx, _w in sampler.batches(6):
            counts += np.bincount(idx, minlength=len(scores))
    p = 0.8 * scores / scores.sum() + 0.2 / len(scores)
    np.testing.assert_allclose(sampler.probabilities_, p)
    assert chisquare(counts, counts.sum() * p).pvalue > 1e-3
    assert chisquare(counts, np.full(6, counts.sum() / 6)).pvalue < 1e-6


def test_importance_weighted_gradient_is_unbiased():
    # A fixed linear model: the mean of many weighted mini-batch gradients
    # must match the full-data gradient under loss-proportional sampling.
    rng = np.random.RandomState(0)
    n, d = 200, 5
    X = rng.randn(n, d)
    y = X @ rng.randn(d) + rng.randn(n)
    w = rng.randn(d)
    residual = X @ w - y
    per_example_loss = (0.5 * residual**2).astype(np.float32)
    full = X.T @ residual / n
    sampler = _probability_sampler(per_example_loss, uniform_mix=0.1, seed=1)
    grads = []
    for _ in range(400):
        for idx, iw in sampler.batches(20):
            grads.append(X[idx].T @ (iw * residual[idx]) / len(idx))
    grads = np.asarray(grads)
    mean = grads.mean(axis=0)
    stderr = grads.std(axis=0) / np.sqrt(len(grads))
    assert np.all(np.abs(mean - full) < 4 * stderr + 1e-9)
    assert np.linalg.norm(mean - full) < 0.05 * np.linalg.norm(full)


def test_self_normalised_weights_average_one_per_batch():
    scores = np.linspace(0.1, 5, 50).astype(np.float32)
    sampler = _probability_sampler(scores, 0.1, weighting="self-normalised")
    for _idx, w in sampler.batches(10):
        assert w.mean() == pytest.approx(1.0, rel=1e-5)
    assert sampler.effective_sample_size_[-1] < 50


def test_unweighted_sampling_draws_by_loss_with_unit_weights():
    from scipy.stats import chisquare

    scores = np.array([0.0, 1.0, 2.0, 4.0, 8.0, 0.5], dtype=np.float32)
    sampler = _probability_sampler(scores, uniform_mix=0.2, weighting="none")
    counts = np.zeros(len(scores))
    for _ in range(3000):
        for idx, w in sampler.batches(6):
            assert w.dtype == np.float32 and np.all(w == 1.0)
            counts += np.bincount(idx, minlength=len(scores))
    expected = 0.8 * scores / scores.sum() + 0.2 / len(scores)
    np.testing.assert_allclose(sampler.probabilities_, expected)
    assert chisquare(counts, counts.sum() * expected).pvalue > 1e-3
    assert sampler.effective_sample_size_[-1] == pytest.approx(len(scores))


def test_nw_sampler_learns_where_the_loss_is_and_decays():
    X = _data(400, 5)
    hard = X[:, 0] > 1.0
    loss = np.where(hard, 2.0, 0.01).astype(np.float32)
    sampler = NWSketchSampler(random_state=0, uniform_mix=0.1).start(X)
    stats = run_epoch(sampler, 40, lambda idx, w: loss[idx])
    assert stats["effective_sample_size_ratio"] == pytest.approx(1.0)  # empty sketch: uniform
    stats = run_epoch(sampler, 40, lambda idx, w: loss[idx])
    p = sampler.probabilities_
    assert p[hard].mean() > 3 * p[~hard].mean()
    assert p.min() >= 0.1 / len(X) - 1e-12
    assert stats["effective_sample_size_ratio"] < 0.9
    before = sampler.sketch_.counts.sum()
    run_epoch(sampler, 40, lambda idx, w: loss[idx])
    # decay 0.5 at the epoch start, then one epoch of inserts
    assert sampler.sketch_.counts.sum() == pytest.approx(0.5 * before + 400 * 32, rel=1e-6)


def test_nw_sampler_reproducible_and_sketch_kept_across_starts():
    X = _data(150, 4)
    loss = np.abs(X[:, 0]).astype(np.float32)
    runs = []
    for _ in range(2):
        sampler = NWSketchSampler(random_state=5).start(X)
        run_epoch(sampler, 30, lambda idx, w: loss[idx])
        run_epoch(sampler, 30, lambda idx, w: loss[idx])
        runs.append(np.concatenate([i for i, _ in sampler.batches(30)]))
    np.testing.assert_array_equal(runs[0], runs[1])
    counts = sampler.sketch_.counts.copy()
    sampler.start(X[:50])
    np.testing.assert_array_equal(sampler.sketch_.counts, counts)
    with pytest.raises(ValueError, match="features"):
        sampler.start(_data(10, 3))


def test_nw_sampler_projection_and_refresh():
    X = sp.random(200, 1000, density=0.02, format="csr", random_state=0, dtype=np.float32)
    loss = np.asarray(X.sum(axis=1)).ravel().astype(np.float32)
    sampler = NWSketchSampler(projection_dim=16, refresh_interval=2, random_state=0)
    sampler.start(X)
    run_epoch(sampler, 20, lambda idx, w: loss[idx])
    assert sampler.sketch_.kernel.n_features == 16
    assert np.isclose(sampler.probabilities_.sum(), 1.0)


@pytest.mark.parametrize(
    "params, error, match",
    [
        ({"n_rows": 0}, ValueError, "n_rows"),
        ({"n_rows": 2.5}, TypeError, "n_rows"),
        ({"n_hash_bits": 31}, ValueError, "n_hash_bits"),
        ({"n_buckets": 1000}, ValueError, "n_buckets"),
        ({"uniform_mix": 1.5}, ValueError, "uniform_mix"),
        ({"uniform_mix": "a"}, TypeError, "uniform_mix"),
        ({"weighting": "plain"}, ValueError, "weighting"),
        ({"decay": -0.1}, ValueError, "decay"),
        ({"refresh_interval": 0}, ValueError, "refresh_interval"),
        ({"projection_dim": 0}, ValueError, "projection_dim"),
    ],
)
def test_nw_sampler_bad_parameters(params, error, match):
    with pytest.raises(error, match=match):
        NWSketchSampler(**params).start(_data(10))


def test_nw_sketch_estimator_update_decay_and_csr():
    X = _sparse_rows(200, 20)
    y = np.abs(X[:, 0])
    dense = NadarayaWatsonSketch(decay=0.5, random_state=0).fit(X, y)
    sparse = NadarayaWatsonSketch(decay=0.5, random_state=0).fit(sp.csr_matrix(X), y)
    np.testing.assert_allclose(dense.predict(X), sparse.predict(sp.csr_matrix(X)))
    dense.update(X[:10], y[:10])
    np.testing.assert_allclose(dense.counts_.sum(axis=1), 0.5 * 200 + 10)
    restored = pickle.loads(pickle.dumps(dense))
    np.testing.assert_array_equal(restored.predict(X), dense.predict(X))
    with pytest.raises(ValueError, match="decay"):
        NadarayaWatsonSketch(decay=2.0).fit(X, y)


def test_nw_sampler_reuses_hashes_of_the_same_matrix_only():
    X = _data(100, 4)
    sampler = NWSketchSampler(random_state=0).start(X)
    hashed = []
    real_hash = sampler.sketch_.hash

    def counting_hash(rows, *args, **kwargs):
        hashed.append(rows.shape[0])
        return real_hash(rows, *args, **kwargs)

    sampler.sketch_.hash = counting_hash
    codes = sampler._codes.copy()
    sampler.start(X)
    assert hashed == []
    X[:, 0] += 1.0
    sampler.start(X)
    assert hashed == [100]
    # the same rows, sparse or copied: their codes are the same, so they are kept
    Xs = sp.csr_matrix(X)
    sampler.start(Xs)
    sampler.start(Xs)
    sampler.start(X.copy())
    assert hashed == [100]
    X[5, 1] += 1.0
    sampler.start(X)
    assert hashed == [100, 100]
    # a new matrix of the same shape is hashed into the same buffer
    sampler.start(_data(100, 4, 1))
    assert not np.array_equal(sampler._codes, codes)
    np.testing.assert_array_equal(sampler._codes, real_hash(_data(100, 4, 1)))


@pytest.mark.parametrize("sparse", [False, True])
def test_fingerprint_sees_changed_moved_and_reordered_values(sparse):
    from sksketch.sampling._nw import _fingerprint

    X = np.abs(_data(50, 6)) + 0.5
    variants = {"same": X.copy()}
    variants["changed"] = X.copy()
    variants["changed"][3, 2] += 0.25
    variants["moved"] = X.copy()  # two values of a row swap columns
    variants["moved"][4, [1, 2]] = X[4, [2, 1]]
    variants["reordered"] = X[np.r_[1, 0, 2:50]]
    wrap = sp.csr_matrix if sparse else np.asarray
    key = _fingerprint(wrap(X))
    got = {name: _fingerprint(wrap(V)) == key for name, V in variants.items()}
    assert got == {"same": True, "changed": False, "moved": False, "reordered": False}
