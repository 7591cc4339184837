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
