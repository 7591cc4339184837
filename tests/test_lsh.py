"""LSH tables: hash functions against a NumPy reference, table layout, pickling."""

import pickle

import numpy as np
import pytest
from sksketch._kernels._lsh import LSHTables, table_geometry, table_nbytes


def _reference_keys(tables, X):
    """Bucket keys computed in NumPy from the tables' own hash functions."""
    state = tables.__getstate__()
    coords, signs = state["coords"], state["signs"]
    K, L = tables.n_hashes_per_table, tables.n_tables
    n_hashes = K * L
    keys = np.empty((X.shape[0], L), dtype=np.int64)
    for i, v in enumerate(X):
        if tables.family_name == "dwta":
            bins = v[coords.reshape(n_hashes, tables.bin_size)]
            nonzero = bins != 0
            masked = np.where(nonzero, bins, -np.inf)
            codes = np.where(nonzero.any(axis=1), masked.argmax(axis=1), -1)
            original = codes.copy()
            for h in map(int, np.flatnonzero(original < 0)):
                codes[h] = 0
                for attempt in range(1, 101):
                    other = _mix64((tables.seed ^ ((h << 20) + attempt)) % 2**64) % n_hashes
                    if original[other] >= 0:
                        codes[h] = original[other]
                        break
        else:
            proj = (v[coords.reshape(n_hashes, -1)] * signs.reshape(n_hashes, -1)).sum(axis=1)
            codes = (proj >= 0).astype(np.int64)
        raw = np.zeros(L, dtype=object)
        for t in range(L):
            value = 0
            for k in range(K):
                value = (value << tables.bits_per_hash) | int(codes[t * K + k])
            if tables.bits_per_hash * K > tables.n_buckets_log2:
                value = _mix64((value ^ (t << 40)) % 2**64) >> (64 - tables.n_buckets_log2)
            raw[t] = value
        keys[i] = raw.astype(np.int64)
    return keys


def _mix64(x):
    mask = 2**64 - 1
    x = (x + 0x9E3779B97F4A7C15) & mask
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & mask
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & mask
    return x ^ (x >> 31)


@pytest.mark.parametrize(
    "family, K, n_buckets_log2",
    [("dwta", 4, 18), ("dwta", 8, 12), ("simhash", 10, 18), ("simhash", 20, 12)],
)
def test_hash_matches_reference(family, K, n_buckets_log2):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 32)).astype(np.float32)
    # sparse non-negative rows (like ReLU activations) exercise densification
    X[:20] = np.maximum(X[:20], 0) * (rng.random((20, 32)) < 0.15)
    X[0] = 0
    tables = LSHTables(family, 32, K, 7, n_buckets_log2=n_buckets_log2, seed=11)
    got = tables.hash(X, n_threads=2)
    np.testing.assert_array_equal(got, _reference_keys(tables, X))
    assert got.min() >= 0 and got.max() < tables.n_buckets


@pytest.mark.parametrize("family", ["dwta", "simhash"])
def test_items_retrieve_themselves_and_layout_is_csr(family):
    rng = np.random.default_rng(1)
    W = rng.standard_normal((3000, 64)).astype(np.float32)
    tables = LSHTables(family, 64, 4 if family == "dwta" else 8, 10, seed=5)
    tables.build(W, n_threads=2)
    sizes = tables.bucket_sizes()
    assert sizes.shape == (10, tables.n_buckets)
    assert np.all(sizes.sum(axis=1) <= 3000)
    keys = tables.hash(W[:50])
    for i in range(50):
        assert i in tables.query(W[i])
        for t in range(10):
            assert i in tables.bucket(t, int(keys[i, t])) or sizes[t, keys[i, t]] == 128


@pytest.mark.parametrize("policy", ["fifo", "reservoir"])
def test_bucket_capacity_and_policy(policy):
    # identical items all land in the same bucket of every table
    W = np.ones((500, 16), dtype=np.float32)
    tables = LSHTables("simhash", 16, 4, 3, bucket_capacity=40, policy=policy, seed=2)
    tables.build(W)
    sizes = tables.bucket_sizes()
    assert sizes.max() == 40 and sizes.sum() == 3 * 40
    key = int(tables.hash(W[:1])[0, 0])
    kept = np.sort(tables.bucket(0, key))
    assert len(np.unique(kept)) == 40
    if policy == "fifo":
        # a FIFO bucket keeps the last ids inserted, in item order
        np.testing.assert_array_equal(kept, np.arange(460, 500))
    else:
        assert kept.min() < 400  # a uniform subset, not the last ids
        tables.build(W)
        assert not np.array_equal(np.sort(tables.bucket(0, key)), kept)


def test_query_respects_budget_and_is_unique():
    rng = np.random.default_rng(3)
    W = rng.standard_normal((2000, 32)).astype(np.float32)
    tables = LSHTables("simhash", 32, 3, 20, seed=1)
    tables.build(W)
    full = tables.query(W[0])
    assert len(np.unique(full)) == len(full)
    part = tables.query(W[0], max_candidates=7)
    assert len(part) == min(7, len(full))
    np.testing.assert_array_equal(part, full[: len(part)])


def test_pickle_round_trip_and_rebuild_functions():
    rng = np.random.default_rng(4)
    W = rng.standard_normal((800, 24)).astype(np.float32)
    tables = LSHTables("dwta", 24, 3, 6, bucket_capacity=16, policy="reservoir", seed=9)
    tables.build(W)
    clone = pickle.loads(pickle.dumps(tables))
    np.testing.assert_array_equal(clone.hash(W), tables.hash(W))
    for i in range(20):
        np.testing.assert_array_equal(clone.query(W[i]), tables.query(W[i]))
    assert clone.nbytes == tables.nbytes
    before = tables.hash(W[:5])
    tables.rebuild_functions(123)
    assert tables.n_items == 0 and len(tables.query(W[0])) == 0
    assert not np.array_equal(tables.hash(W[:5]), before)


def test_corrupt_state_is_rejected():
    W = np.random.default_rng(0).standard_normal((100, 8)).astype(np.float32)
    tables = LSHTables("dwta", 8, 2, 3, seed=0)
    tables.build(W)
    state = tables.__getstate__()
    bad = dict(state, ids=state["ids"].copy())
    bad["ids"][0] = 10**6
    fresh = LSHTables("dwta", 8, 2, 3, seed=0)
    with pytest.raises(ValueError, match="ids out of range"):
        fresh.__setstate__(bad)
    bad = dict(state, coords=state["coords"].copy())
    bad["coords"][0] = 99
    with pytest.raises(ValueError, match="coordinates out of range"):
        fresh.__setstate__(bad)
    bad = dict(state, offsets=state["offsets"][:-1])
    with pytest.raises(ValueError, match="table sizes"):
        fresh.__setstate__(bad)


def test_invalid_parameters():
    with pytest.raises(ValueError, match="family"):
        LSHTables("minhash", 8, 2, 2)
    with pytest.raises(ValueError, match="policy"):
        LSHTables("dwta", 8, 2, 2, policy="lru")
    with pytest.raises(ValueError, match="n_buckets_log2"):
        LSHTables("dwta", 8, 2, 2, n_buckets_log2=30)
    tables = LSHTables("dwta", 8, 2, 2)
    with pytest.raises(ValueError, match="columns"):
        tables.build(np.zeros((3, 9), dtype=np.float32))


def test_full_buckets_pickle_deterministically():
    # With small buckets most id slots stay unused; they must pickle as
    # zeros, not as leftover memory that fails the state's range checks.
    rng = np.random.default_rng(0)
    for _ in range(5):
        junk = [np.full(50 * 4000, 2**30, dtype=np.int32) for _ in range(3)]
        del junk
        t = LSHTables("simhash", 16, 3, 50, bucket_capacity=2, seed=1)
        t.build(rng.standard_normal((4000, 16)).astype(np.float32))
        state = t.__getstate__()
        assert state["ids"].min() >= 0 and state["ids"].max() < 4000
        t2 = pickle.loads(pickle.dumps(t))
        np.testing.assert_array_equal(t2.__getstate__()["ids"], state["ids"])


@pytest.mark.parametrize("family", ["dwta", "simhash"])
@pytest.mark.parametrize(
    "dim, K, n_buckets_log2", [(1, 3, 18), (5, 2, 4), (64, 6, 18), (300, 9, 24)]
)
def test_table_geometry_is_what_the_tables_build(family, dim, K, n_buckets_log2):
    """The sizes memory estimates and model checks derive are those of real tables."""
    T, n_items = 3, 17
    geometry = table_geometry(family, dim, K, T, n_buckets_log2)
    tables = LSHTables(family, dim, K, T, n_buckets_log2=n_buckets_log2, seed=4)
    tables.build(np.random.default_rng(0).standard_normal((n_items, dim)).astype(np.float32))
    state = tables.__getstate__()
    assert geometry.bin_size == tables.bin_size
    assert geometry.bits_per_hash == tables.bits_per_hash
    assert geometry.projection_nnz == tables.projection_nnz
    assert geometry.n_buckets_log2 == tables.n_buckets_log2 <= n_buckets_log2
    assert (geometry.n_coords, geometry.n_signs) == (state["coords"].size, state["signs"].size)
    arrays = sum(state[key].nbytes for key in ("coords", "signs", "offsets", "ids"))
    assert table_nbytes(geometry, T, n_items) == arrays
