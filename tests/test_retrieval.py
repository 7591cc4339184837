"""The retrieval index behind inference="lsh": kernels against NumPy, and the estimator."""

import pickle

import numpy as np
import pytest
import scipy.sparse as sp

from sksketch import SLIDEClassifier
from sksketch._kernels import _retrieval as kernels
from sksketch._slide import _retrieval
from sksketch.datasets import make_extreme_classification


def _keys_reference(X, last, R, r_last, bits):
    dots = X.astype(np.float64) @ R.T.astype(np.float64) + np.outer(last, r_last)
    on = dots[:, bits] >= 0  # (n, n_tables, n_bits)
    return (on * (1 << np.arange(bits.shape[1]))).sum(axis=2), np.abs(dots[:, bits])


@pytest.mark.parametrize("n_threads", [1, 2])
def test_hash_keys_are_the_signs_of_the_projections(n_threads):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((37, 20)).astype(np.float32)
    last = rng.standard_normal(37).astype(np.float32)
    R = rng.standard_normal((300, 20)).astype(np.float32)  # more than one slice of R
    r_last = rng.standard_normal(300).astype(np.float32)
    bits = np.stack([rng.choice(300, 7, replace=False) for _ in range(11)]).astype(np.int32)
    keys = kernels.hash_keys(X, last, R, r_last, bits, n_threads)
    ref, margin = _keys_reference(X, last, R, r_last, bits)
    assert keys.shape == (37, 11) and keys.dtype == np.uint16
    # bits whose projection is not within rounding of 0 agree
    sure = (margin > 1e-4).all(axis=2)
    assert sure.mean() > 0.9
    np.testing.assert_array_equal(keys[sure], ref[sure])
    # each row's keys do not depend on the rows hashed with it
    np.testing.assert_array_equal(kernels.hash_keys(X[5:6], last[5:6], R, r_last, bits, 1),
                                  keys[5:6])


def _candidate_reference(keys, offsets, ids, n_buckets, h, W, b, X, head, scale, terms,
                         assign, fallback, k, table_budget, head_budget, prior_budget):
    """candidate_topk, written plainly: the same candidates, order and ties."""
    L = W.shape[0]
    out_ids, out_vals = [], []
    for i in range(h.shape[0]):
        counts, seen = np.zeros(L, int), []
        for t in range(keys.shape[1]):
            base = t * (n_buckets + 1) + keys[i, t]
            for j in ids[offsets[base]:offsets[base + 1]]:
                if counts[j] == 0:
                    seen.append(j)
                counts[j] += 1
        # most collisions first; at the threshold count, the order met
        order = sorted(range(len(seen)), key=lambda r: (-counts[seen[r]], r))
        chosen = {seen[r] for r in order[:table_budget]}
        cand = [j for j in seen if j in chosen]
        head_scores = {}
        if head is not None:
            row = X[i]
            norm = np.sqrt((row.data.astype(np.float64) ** 2).sum())
            inv = np.float32(1.0 / norm) * np.float32(scale) if norm > 0 else 0.0
            for f, v in zip(row.indices, row.data, strict=True):
                for q in range(head.indptr[f], head.indptr[f + 1]):
                    j = head.labels[q]
                    head_scores[j] = head_scores.get(j, 0.0) + v * inv * head.weights[q]
            reached = list(head_scores)
            top = sorted(range(len(reached)), key=lambda r: (-head_scores[reached[r]], r))
            for r in top[:head_budget]:
                if reached[r] not in cand:
                    cand.append(reached[r])
        for r, j in enumerate(fallback):
            if len(cand) >= k and r >= prior_budget:
                break
            if j not in cand:
                cand.append(j)
        s = np.array([h[i] @ W[j] + b[j] + head_scores.get(j, 0.0)
                      + (terms[i, assign[j]] if terms is not None else 0.0) for j in cand])
        best = np.argsort(-s, kind="stable")[:k]
        row_ids = np.full(k, -1)
        row_vals = np.full(k, -np.inf)
        row_ids[: len(best)] = np.asarray(cand)[best]
        row_vals[: len(best)] = s[best]
        out_ids.append(row_ids)
        out_vals.append(row_vals)
    return np.array(out_ids), np.array(out_vals)


class _Head:
    def __init__(self, rng, n_features, n_labels, per_feature):
        self.indptr = np.arange(0, (n_features + 1) * per_feature, per_feature, dtype=np.int64)
        self.labels = np.concatenate([rng.choice(n_labels, per_feature, replace=False)
                                      for _ in range(n_features)]).astype(np.int32)
        self.weights = rng.standard_normal(n_features * per_feature).astype(np.float32)


@pytest.mark.parametrize("use_head", [False, True])
@pytest.mark.parametrize("use_clusters", [False, True])
@pytest.mark.parametrize("n_threads", [1, 2])
def test_candidate_topk_matches_a_plain_reference(use_head, use_clusters, n_threads):
    rng = np.random.default_rng(1)
    L, H, F, n, k = 400, 12, 50, 25, 5
    W = rng.standard_normal((L, H)).astype(np.float32)
    b = rng.standard_normal(L).astype(np.float32)
    index = _retrieval.RetrievalIndex(W, b, seed=3)
    h = np.maximum(rng.standard_normal((n, H)), 0).astype(np.float32)
    h[3] = 0  # a row whose every projection is its bias term alone
    X = sp.random(n, F, density=0.1, format="csr", random_state=2, dtype=np.float32)
    X.data = np.abs(X.data) + 0.1
    X = X.tolil()
    X[7] = 0  # a row without features: no head candidates
    X = X.tocsr()
    head = _Head(rng, F, L, 6) if use_head else None
    assign = rng.integers(0, 40, L).astype(np.int32)
    terms = rng.standard_normal((n, 40)).astype(np.float32) if use_clusters else None
    keys = index.hash(h, np.ones(n, np.float32))
    fallback = np.argsort(-b, kind="stable").astype(np.int32)
    zero = np.zeros(1, dtype=np.int32)
    args = (keys, index.offsets, index.ids, index.n_buckets, h, W, b, X.indptr, X.indices,
            X.data, head.indptr if use_head else np.zeros(F + 1, np.int64),
            head.labels if use_head else zero,
            head.weights if use_head else np.zeros(1, np.float32), 0.5, use_head,
            terms if use_clusters else np.zeros((1, 1), np.float32),
            assign if use_clusters else zero, use_clusters, fallback, k)
    for budgets in [(30, 10, 0), (3, 2, 4), (0, 0, 0), (L, L, 2), (5, 5, 20)]:
        ids, vals, n_cand = kernels.candidate_topk(
            *args, *budgets, *_retrieval._scratch(n_threads, L), n_threads)
        ref_ids, ref_vals = _candidate_reference(
            keys, index.offsets, index.ids, index.n_buckets, h, W, b, X, head, 0.5, terms,
            assign, fallback, k, *budgets)
        np.testing.assert_array_equal(ids, ref_ids)
        np.testing.assert_allclose(vals, ref_vals, rtol=1e-5, atol=1e-5)
        assert (n_cand >= k).all()
    # the scratch is left as it was found
    counts, _, acc, mark, _, is_cand = _retrieval._scratch(n_threads, L)
    assert not counts.any() and not acc.any() and not mark.any() and not is_cand.any()


def _headless_args(seed, L=100, H=8, n=4):
    """candidate_topk's arguments up to the fallback labels: an index over L random
    rows with zero biases, n random hidden rows, no head and no clusters."""
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((L, H)).astype(np.float32)
    b = np.zeros(L, dtype=np.float32)
    index = _retrieval.RetrievalIndex(W, b, seed=0)
    h = rng.standard_normal((n, H)).astype(np.float32)
    keys = index.hash(h, np.ones(n, np.float32))
    zero = np.zeros(1, dtype=np.int32)
    return (keys, index.offsets, index.ids, index.n_buckets, h, W, b,
            np.zeros(n + 1, np.int32), zero, np.zeros(1, np.float32), np.zeros(2, np.int64),
            zero, np.zeros(1, np.float32), 0.0, False, np.zeros((1, 1), np.float32), zero, False)


def test_candidate_topk_pads_rows_with_too_few_candidates():
    ids, vals, n_cand = kernels.candidate_topk(
        *_headless_args(2), np.zeros(0, np.int32), 10, 3, 0, 0, *_retrieval._scratch(1, 100), 1)
    assert (n_cand == 3).all()
    assert (ids[:, 3:] == -1).all() and np.isneginf(vals[:, 3:]).all()
    assert (ids[:, :3] >= 0).all()


@pytest.mark.parametrize("bad", [-1, 100])
def test_candidate_topk_refuses_fallback_labels_out_of_range(bad):
    """The fallback labels a row reads are checked as read: a ValueError, not a read
    outside the arrays (the 670,000 labels are no longer scanned on every call)."""
    args = _headless_args(5)
    fallback = np.arange(100, dtype=np.int32)
    fallback[2] = bad
    with pytest.raises(ValueError, match="fallback labels"):
        kernels.candidate_topk(*args, fallback, 5, 0, 0, 10, *_retrieval._scratch(1, 100), 1)
    # a bad label past what any row reads is never looked at
    ids, _, _ = kernels.candidate_topk(*args, fallback[[0, 1, 3, 4, 5, 6, 7, 8, 9, 2]], 5, 0,
                                       0, 5, *_retrieval._scratch(1, 100), 1)
    assert np.isin(ids, [0, 1, 3, 4, 5]).all()


def test_index_buckets_hold_every_label_once_per_table():
    rng = np.random.default_rng(4)
    W = (rng.standard_normal((3000, 16)) + 5).astype(np.float32)  # a shared direction
    b = rng.standard_normal(3000).astype(np.float32)
    index = _retrieval.RetrievalIndex(W, b, seed=1)
    T, nb = index.n_tables, index.n_buckets
    assert (T, index.n_bits) == _retrieval.index_geometry(3000, 16)
    offsets = index.offsets.reshape(T, nb + 1)
    keys = index.hash(W - W.mean(axis=0), b - b.mean())
    cap = index.bucket_capacity
    assert cap == max(_retrieval.MIN_BUCKET_CAPACITY,
                      _retrieval.BUCKET_CAPACITY_FACTOR * -(-3000 // nb))
    for t in range(T):
        assert offsets[t, 0] == (offsets[t - 1, -1] if t else 0)
        members = index.ids[offsets[t, 0] : offsets[t, -1]]
        assert np.unique(members).shape == members.shape  # each label once at most
        for c in range(nb):
            bucket = index.ids[offsets[t, c] : offsets[t, c + 1]]
            # a bucket's labels hash to it, by bias, the highest kept if it is full
            assert (keys[bucket, t] == c).all()
            assert np.all(np.diff(b[bucket]) <= 0)
            everyone = np.flatnonzero(keys[:, t] == c)
            assert bucket.shape[0] == min(cap, everyone.shape[0])
            if everyone.shape[0] > cap:
                assert b[bucket].min() >= np.sort(b[everyone])[::-1][cap - 1]
    # centred keys spread the rows over the buckets despite their common direction
    assert (np.diff(offsets, axis=1) < cap).mean() > 0.9
    assert index.nbytes <= _retrieval.index_nbytes(3000, 16)
    assert index.offsets[-1] == index.ids.shape[0]


def test_index_geometry_and_budgets():
    for L, H in [(10, 4), (159, 256), (15728, 256), (50_000, 256), (670_091, 128),
                 (5_000_000, 512)]:
        T, K = _retrieval.index_geometry(L, H)
        assert _retrieval.MIN_TABLES <= T <= _retrieval.MAX_TABLES and 4 <= K <= 16
        assert T <= max(2 * H, _retrieval.MIN_TABLES)
        assert T * L <= max(_retrieval.MAX_TABLE_IDS, _retrieval.MIN_TABLES * L)
    assert _retrieval.index_geometry(15728, 256) == (512, 9)
    assert _retrieval.budgets(15728, 5) == (158, 64, 64)
    assert _retrieval.budgets(670_091, 5) == (6701, 671, 671)
    assert _retrieval.budgets(50, 5) == (50, 50, 50)
    assert _retrieval.budgets(5000, 300) == (300, 300, 300)


def _p1(Y, ids):
    """Precision at 1 of top-k label ids."""
    Y = Y.tocsr()
    return float(np.mean([Y[i, ids[i, 0]] for i in range(Y.shape[0])]))


@pytest.fixture(scope="module")
def xc():
    X, Y = make_extreme_classification(n_samples=2500, n_features=3000, n_labels=3000,
                                       random_state=0)
    return X[:2000], Y[:2000], X[2000:], Y[2000:]


@pytest.fixture(scope="module")
def fitted(xc):
    X, Y, _, _ = xc
    return SLIDEClassifier(max_iter=3, n_jobs=2, random_state=0).fit(X, Y)


def test_lsh_inference_is_as_precise_as_full_scoring(fitted, xc):
    _, _, Xt, Yt = xc
    clf = pickle.loads(pickle.dumps(fitted))
    full, _ = clf.predict_topk(Xt, k=5)
    clf.set_params(inference="lsh")
    lsh, scores = clf.predict_topk(Xt, k=5)
    p_full, p_lsh = _p1(Yt, full), _p1(Yt, lsh)
    assert p_full > 0.3
    assert p_lsh >= p_full - 0.01
    assert (lsh >= 0).all() and np.isfinite(scores).all()
    # its scores are the labels' exact scores (up to the order of float sums)
    exact = clf.decision_function(Xt[:20])
    np.testing.assert_allclose(scores[:20], np.take_along_axis(exact, lsh[:20], axis=1),
                               rtol=1e-4, atol=1e-4)


def test_lsh_inference_survives_round_trips_and_row_subsets(fitted, xc, tmp_path):
    import joblib
    from sklearn.base import clone

    import sksketch

    _, _, Xt, _ = xc
    clf = pickle.loads(pickle.dumps(fitted)).set_params(inference="lsh")
    ids, scores = clf.predict_topk(Xt, k=3)
    assert _retrieval.cached_index(clf) is not None
    # each row's answer does not depend on the rows predicted with it
    for i in (0, 7, 499):
        one, one_scores = clf.predict_topk(Xt[i : i + 1], k=3)
        np.testing.assert_array_equal(one[0], ids[i])
        np.testing.assert_array_equal(one_scores[0], scores[i])
    # a restored model rebuilds the same index: the same answers
    path = tmp_path / "m.joblib"
    joblib.dump(clf, path)
    sksketch.save(clf, tmp_path / "m.sksketch")
    for other in (pickle.loads(pickle.dumps(clf)), joblib.load(path),
                  sksketch.load(tmp_path / "m.sksketch")):
        assert _retrieval.cached_index(other) is None
        got, got_scores = other.predict_topk(Xt, k=3)
        np.testing.assert_array_equal(got, ids)
        np.testing.assert_array_equal(got_scores, scores)
    assert clone(clf).get_params()["inference"] == "lsh"


def test_lsh_index_follows_training(xc):
    X, Y, Xt, _ = xc
    clf = SLIDEClassifier(max_iter=1, n_jobs=1, random_state=0, inference="lsh")
    clf.partial_fit(X[:1000], Y[:1000], classes=np.arange(Y.shape[1]))
    clf.predict_topk(Xt[:5], k=2)
    first = _retrieval.cached_index(clf)
    assert first is not None
    clf.partial_fit(X[1000:], Y[1000:])
    assert _retrieval.cached_index(clf) is None  # the weights moved
    clf.predict_topk(Xt[:5], k=2)
    assert _retrieval.cached_index(clf) is not first


def test_lsh_inference_without_heads_and_with_clusters(xc):
    X, Y, Xt, Yt = xc
    for params in ({"sparse_head": False}, {"label_cluster_size": 8}):
        clf = SLIDEClassifier(max_iter=2, n_jobs=2, random_state=0, **params).fit(X, Y)
        full, _ = clf.predict_topk(Xt, k=1)
        lsh, _ = clf.set_params(inference="lsh").predict_topk(Xt, k=1)
        assert _p1(Yt, lsh) >= _p1(Yt, full) - 0.02


def test_lsh_index_counts_in_memory_usage(fitted, xc):
    _, _, Xt, _ = xc
    clf = pickle.loads(pickle.dumps(fitted))
    before = clf.memory_usage()["hash_tables"]
    clf.set_params(inference="lsh").predict(Xt[:3])
    L, H = clf.output_weights_.shape
    index = _retrieval.cached_index(clf)
    assert clf.memory_usage()["hash_tables"] == before + index.nbytes
    assert index.nbytes <= _retrieval.index_nbytes(L, H)


def test_tables_an_older_version_kept_for_inference_are_dropped_on_load(fitted):
    from sksketch._slide._plan import sized_tables

    state = fitted.__getstate__()
    tables = sized_tables(fitted.lsh_tables_, fitted._plan())
    tables.build(fitted.output_weights_)
    state["_inference_tables_cache"] = (fitted._step, tables)
    state["_frequent_cache"] = (fitted.t_, np.arange(64, dtype=np.int32))
    restored = SLIDEClassifier.__new__(SLIDEClassifier)
    restored.__setstate__(state)
    assert not hasattr(restored, "_inference_tables_cache")
    assert not hasattr(restored, "_frequent_cache")
    # a broken one is still refused
    state["_inference_tables_cache"] = (fitted._step, "tables")
    with pytest.raises(ValueError, match="_inference_tables_cache"):
        SLIDEClassifier.__new__(SLIDEClassifier).__setstate__(state)
