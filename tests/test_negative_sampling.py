"""SLIDEClassifier's negative samplers and their probability models."""

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from scipy import stats
from sklearn.exceptions import ConvergenceWarning
from sksketch._kernels._lsh import LSHTables

from sksketch import SLIDEClassifier
from sksketch._kernels import _network
from sksketch._slide._negative_sampling import (
    collision_table,
    measured_collision_probability,
    retrieval_probability,
    simhash_collision_probability,
    unigram_cdf,
)
from sksketch.datasets import make_extreme_classification

MODES = ["lsh-embedding", "lsh-label", "uniform", "unigram", "full", "exact"]


@pytest.fixture(autouse=True)
def _quiet_convergence():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        yield


def _csr32(A):
    A = sp.csr_matrix(A)
    A.indices, A.indptr = A.indices.astype(np.int32), A.indptr.astype(np.int32)
    return A


def _run_kernel(Y_rows, L, *, mode, max_active, min_active, seed, correct=False,
                label_cdf=None, d=6, H=8, W2=None, tables=None, cp_table=None, row_norms=None,
                b2=None):
    """One batch through train_batch; returns (active ids, logit gradients, n_active)."""
    rng = np.random.default_rng(0)
    B = len(Y_rows)
    X = _csr32(np.abs(rng.standard_normal((B, d))).astype(np.float32))
    Y = _csr32(sp.csr_matrix(
        (np.ones(sum(map(len, Y_rows))), np.concatenate(Y_rows).astype(int),
         np.cumsum([0] + [len(r) for r in Y_rows])), shape=(B, L)))
    W1 = np.abs(rng.standard_normal((d, H))).astype(np.float32)
    W2 = rng.standard_normal((L, H)).astype(np.float32) if W2 is None else W2
    hb, ghb = np.empty((B, H), np.float32), np.empty((B, H), np.float32)
    ab, gb = np.empty((B, max_active), np.int32), np.empty((B, max_active), np.float32)
    losses, n_active = np.empty(B, np.float32), np.empty(B, np.int32)
    _network.train_batch(
        tables if tables is not None else LSHTables("dwta", H, 2, 2),
        X.indptr, X.indices, X.data, Y.indptr, Y.indices, np.arange(B, dtype=np.int64),
        np.ones(B, np.float32), W1, np.zeros(H, np.float32), W2,
        np.zeros(L, np.float32) if b2 is None else b2,
        np.zeros((0, 0), np.uint16), np.zeros_like(W1), np.zeros(H, np.float32),
        np.zeros(d, np.uint8), hb, ab, gb, ghb, np.zeros((1, L), np.uint32), 0,
        max_active, min_active, _network.MODES.index(mode), False, 1.0, seed, 1, losses,
        n_active, correct,
        np.zeros(0) if label_cdf is None else label_cdf,
        np.zeros(0, np.float32) if cp_table is None else cp_table,
        np.zeros(0, np.float32) if row_norms is None else row_norms,
    )
    return ab, gb, n_active, hb


@pytest.mark.parametrize("min_active", [1, 5, 40, 64])
def test_exact_mode_takes_the_labels_of_highest_logit(min_active):
    # the kernel against a plain ranking of every label's logit (with bias),
    # ties to the lower label id; the true labels are never negatives
    rng = np.random.default_rng(3)
    L, H = 64, 8
    W2 = rng.standard_normal((L, H)).astype(np.float32)
    W2[40:50] = W2[10]  # equal logits
    b2 = rng.standard_normal(L).astype(np.float32)
    b2[40:50] = b2[10]
    Y_rows = [np.array([10]), np.array([3, 41]), np.array([0, 1, 2]), np.array([63])]
    ab, gb, n_active, hb = _run_kernel(
        Y_rows, L, mode="exact", max_active=max(min_active, 3), min_active=min_active,
        seed=0, correct=True, W2=W2, b2=b2, H=H)
    for i, true in enumerate(Y_rows):
        n = n_active[i]
        assert ab[i, : len(true)].tolist() == true.tolist()
        logits = hb[i] @ W2.T + b2
        order = [j for j in np.lexsort((np.arange(L), -logits)) if j not in set(true)]
        expected = order[: max(min_active - len(true), 0)]
        assert n == len(true) + len(expected)
        assert sorted(ab[i, len(true):n].tolist()) == sorted(expected)
        # no inclusion correction: the gradient is the plain softmax's
        z = logits[ab[i, :n]]
        p = np.exp(z - z.max())
        p /= p.sum()
        target = np.r_[np.full(len(true), 1 / len(true)), np.zeros(n - len(true))]
        np.testing.assert_allclose(gb[i, :n], p - target, atol=1e-6)  # inv_batch_size 1


# ------------------------------------------------------------ the estimator


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dense", [False, True])
def test_every_mode_fits_partial_fits_and_predicts(mode, dense):
    X, Y = make_extreme_classification(700, 300, 120, random_state=0)
    if dense:
        X = X.toarray()
    params = dict(negative_sampling=mode, min_active_labels=20, max_active_labels=30,
                  n_hashes_per_table=2, n_tables=10, rehash_interval=3, batch_size=16,
                  learning_rate=1e-2, random_state=0, n_jobs=1)
    clf = SLIDEClassifier(max_iter=5, **params).fit(X[:600], Y[:600])
    labels, scores = clf.predict_topk(X[600:], k=3)
    assert labels.shape == (100, 3) and np.all(np.diff(scores, axis=1) <= 0)
    assert clf.predict(X[600:]).shape == (100, 120)
    if mode.startswith("lsh"):
        # the tables' candidates up to the budget, uniform padding to the minimum
        assert 20 <= clf.mean_active_labels_ <= 30
    else:
        assert clf.mean_active_labels_ == pytest.approx(120 if mode == "full" else 30, abs=0.5)
    # far better than always answering the most frequent label (P@1 0.37)
    top = np.asarray(Y[:600].sum(axis=0)).ravel().argmax()
    assert clf.score(X[600:], Y[600:]) > Y[600:, top].mean() + 0.2
    inc = SLIDEClassifier(**params)
    for _ in range(2):
        inc.partial_fit(X[:600], Y[:600], classes=np.arange(120))
    assert inc.n_iter_ == 2 and inc.t_ == 1200
    if mode.startswith("lsh"):
        assert inc.lsh_tables_.n_rebuilds > 1  # refreshed as the weights change
    else:
        assert inc.lsh_tables_.n_items == 0  # the tables are not used


@pytest.mark.parametrize("mode", MODES)
def test_rows_without_labels_are_skipped_in_every_mode(mode):
    X, Y = make_extreme_classification(200, 100, 50, random_state=1)
    Y = Y.tolil()
    Y[:7] = 0
    clf = SLIDEClassifier(negative_sampling=mode, min_active_labels=10, max_iter=1,
                          random_state=0).fit(X, sp.csr_matrix(Y))
    assert clf.n_samples_skipped_ == 7
    assert np.isfinite(clf.loss_curve_[-1])


@pytest.mark.parametrize("mode", MODES)
def test_rows_with_more_labels_than_the_budget(mode):
    # Every true label stays in the active set, whatever the budget.
    X, Y = make_extreme_classification(300, 100, 40, random_state=2)
    assert np.diff(Y.indptr).max() > 5
    clf = SLIDEClassifier(negative_sampling=mode, max_active_labels=5, min_active_labels=5,
                          n_hashes_per_table=2, random_state=0)
    for _ in range(2):
        clf.partial_fit(X, Y, classes=np.arange(40))
    assert np.isfinite(clf.loss_curve_).all()
    if mode in ("uniform", "unigram"):
        # the budget, or a row's labels alone when they are more
        assert clf.mean_active_labels_ == pytest.approx(np.maximum(np.diff(Y.indptr), 5).mean())


def test_kernel_rejects_buffers_too_small_for_the_true_labels():
    with pytest.raises(ValueError, match="more true labels than max_active"):
        _run_kernel([np.array([1, 2, 3])], 10, mode="uniform", max_active=2, min_active=2,
                    seed=0)


def test_unigram_counts_follow_partial_fit():
    X, Y = make_extreme_classification(300, 100, 40, random_state=2)
    clf = SLIDEClassifier(negative_sampling="unigram", min_active_labels=5, random_state=0)
    clf.partial_fit(X[:150], Y[:150], classes=np.arange(40))
    np.testing.assert_allclose(clf._unigram_cdf, unigram_cdf(Y[:150].sum(axis=0).A1))
    clf.partial_fit(X[150:], Y[150:])
    np.testing.assert_allclose(clf._unigram_cdf, unigram_cdf(Y.sum(axis=0).A1))


def test_unknown_mode_is_rejected():
    X, Y = make_extreme_classification(50, 20, 10, random_state=0)
    with pytest.raises(ValueError, match="negative_sampling"):
        SLIDEClassifier(negative_sampling="softmax").fit(X, Y)


# ------------------------------------------------------------ candidate sets


@pytest.mark.parametrize("mode", ["lsh-embedding", "lsh-label", "uniform", "unigram"])
def test_true_labels_first_and_never_drawn_as_negatives(mode):
    L, true = 40, [np.array([3, 17]), np.array([5]), np.array([0, 1, 2, 39])]
    H = 8
    tables = LSHTables("simhash", H, 1, 4, seed=3)
    W2 = np.random.default_rng(1).standard_normal((L, H)).astype(np.float32)
    tables.build(W2)
    for seed in range(20):
        ab, _, n_active, _ = _run_kernel(
            true, L, mode=mode, max_active=12, min_active=12, seed=seed, W2=W2, tables=tables,
            label_cdf=unigram_cdf(np.arange(L)))
        for i, t in enumerate(true):
            ids = ab[i, : n_active[i]]
            assert n_active[i] == 12 and len(np.unique(ids)) == 12
            np.testing.assert_array_equal(ids[: len(t)], t)
            assert not np.isin(ids[len(t):], t).any()


def test_uniform_negatives_are_uniform():
    # one negative per draw: each non-true label equally likely (chi-square)
    L, true = 25, np.array([4, 9])
    counts = np.zeros(L)
    for seed in range(3000):
        ab, _, _, _ = _run_kernel([true], L, mode="uniform", max_active=3, min_active=3, seed=seed)
        counts[ab[0, 2]] += 1
    assert counts[true].sum() == 0
    observed = np.delete(counts, true)
    assert stats.chisquare(observed).pvalue > 1e-3


# "lsh-embedding" with label frequencies (negative_fill="unigram") and no
# candidate from its (empty) tables pads by frequency, like the unigram mode
@pytest.mark.parametrize("mode", ["unigram", "lsh-embedding"])
def test_unigram_negatives_follow_the_label_frequencies(mode):
    L, true = 20, np.array([0])
    label_counts = np.arange(L) * 3
    cdf = unigram_cdf(label_counts)
    p = np.diff(np.concatenate([[0], cdf]))
    counts = np.zeros(L)
    for seed in range(4000):
        ab, _, _, _ = _run_kernel([true], L, mode=mode, max_active=2, min_active=2,
                                  seed=seed, label_cdf=cdf)
        counts[ab[0, 1]] += 1
    expected = np.delete(p, true) / np.delete(p, true).sum() * counts.sum()
    assert stats.chisquare(np.delete(counts, true), expected).pvalue > 1e-3


def _softmax_grad(logits, n_true):
    p = np.exp(logits - logits.max())
    p /= p.sum()
    t = np.zeros_like(p)
    t[:n_true] = 1 / n_true
    return p - t


def test_logq_correction_of_unigram_negatives():
    # a single draw (T = 1): the negative's logit is lowered by log p_i, also
    # for p_i below 1 / n_labels
    L, H, true = 15, 8, np.array([2])
    cdf = unigram_cdf(np.arange(L))
    p = np.diff(np.concatenate([[0], cdf]))
    W2 = np.random.default_rng(0).standard_normal((L, H)).astype(np.float32)
    for seed in range(10):
        ab, gb, _, hb = _run_kernel([true], L, mode="unigram", max_active=2, min_active=2,
                                    seed=seed, correct=True, label_cdf=cdf, H=H, W2=W2)
        ids = ab[0, :2]
        logits = W2[ids].astype(np.float64) @ hb[0]
        logits[1] -= np.log(p[ids[1]])
        if not np.allclose(gb[0, :2], _softmax_grad(logits, 1), rtol=1e-4, atol=1e-6):
            # the one draw hit the true label and was redrawn: T = 2
            logits[1] += np.log(p[ids[1]]) - np.log(1 - (1 - p[ids[1]]) ** 2)
        np.testing.assert_allclose(gb[0, :2], _softmax_grad(logits, 1), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("family", ["simhash", "dwta"])
def test_logq_correction_of_lsh_negatives(family):
    # retrieved labels: -log(p + (1 - p) q) with p from the collision table at
    # the cosine of the hidden activation and their weight row; random ones
    # -log(q), q = n_random / (L - n_retrieved)
    L, H, K = 300, 8, 4
    rng = np.random.default_rng(4)
    W2 = rng.standard_normal((L, H)).astype(np.float32)
    tables = LSHTables(family, H, K, 3, bucket_capacity=1000, seed=2)
    tables.build(W2)
    norms = np.linalg.norm(W2, axis=1).astype(np.float32)
    cp = collision_table(tables, W2[:20], W2[20:])
    ab, gb, n_active, hb = _run_kernel([np.array([7])], L, mode="lsh-embedding", max_active=50,
                                       min_active=50, seed=9, correct=True, W2=W2, H=H,
                                       tables=tables, cp_table=cp, row_norms=norms)
    ids = ab[0, : n_active[0]]
    retrieved = set(tables.query(hb[0]).tolist()) - {7}
    n_det = 1 + len(retrieved)
    assert 1 < n_det < 50 and set(ids[1:n_det].tolist()) == retrieved
    logits = W2[ids].astype(np.float64) @ hb[0]
    cosine = logits[1:n_det] / (np.linalg.norm(hb[0]) * norms[ids[1:n_det]])
    p = retrieval_probability(np.interp(cosine, np.linspace(-1, 1, len(cp)), cp), K, 3)
    q = (50 - n_det) / (L - n_det)
    logits[1:n_det] -= np.log(p + (1 - p) * q)
    logits[n_det:] -= np.log(q)
    np.testing.assert_allclose(gb[0, : n_active[0]], _softmax_grad(logits, 1), rtol=2e-3,
                               atol=2e-5)


def test_logq_correction_of_lsh_negatives_with_unigram_padding():
    # retrieved labels: -log(p + (1 - p) q_i), padding labels -log(q_i), with
    # q_i = 1 - (1 - f_i)^T the chance that the T frequency draws hit label i
    L, H, K = 300, 8, 4
    rng = np.random.default_rng(4)
    W2 = rng.standard_normal((L, H)).astype(np.float32)
    tables = LSHTables("simhash", H, K, 3, bucket_capacity=1000, seed=2)
    tables.build(W2)
    norms = np.linalg.norm(W2, axis=1).astype(np.float32)
    cp = collision_table(tables, W2[:20], W2[20:])
    cdf = unigram_cdf(rng.integers(0, 50, L))
    f = np.diff(np.concatenate([[0], cdf]))
    ab, gb, n_active, hb = _run_kernel([np.array([7])], L, mode="lsh-embedding", max_active=50,
                                       min_active=50, seed=9, correct=True, W2=W2, H=H,
                                       tables=tables, cp_table=cp, row_norms=norms,
                                       label_cdf=cdf)
    ids = ab[0, : n_active[0]]
    retrieved = set(tables.query(hb[0]).tolist()) - {7}
    n_det = 1 + len(retrieved)
    assert 1 < n_det < 50 and set(ids[1:n_det].tolist()) == retrieved
    raw = W2[ids].astype(np.float64) @ hb[0]
    cosine = raw[1:n_det] / (np.linalg.norm(hb[0]) * norms[ids[1:n_det]])
    p = retrieval_probability(np.interp(cosine, np.linspace(-1, 1, len(cp)), cp), K, 3)
    # T, the number of draws, is not returned: one T in its possible range must fit
    fits = []
    for T in range(50 - n_det, 8 * 50 + 64 + 1):
        q = 1 - (1 - f[ids]) ** T
        logits = raw.copy()
        logits[1:n_det] -= np.log(p + (1 - p) * q[1:n_det])
        logits[n_det:] -= np.log(q[n_det:])
        fits.append(np.allclose(gb[0, : n_active[0]], _softmax_grad(logits, 1), rtol=2e-3,
                                atol=2e-5))
    assert any(fits)


def test_negative_fill_unigram_trains_and_is_validated():
    X, Y = make_extreme_classification(300, 60, 120, random_state=0)
    params = dict(hidden_layer_size=16, max_active_labels=30, min_active_labels=30,
                  n_hashes_per_table=2, n_tables=8, max_iter=2, random_state=0, n_jobs=1)
    for mode in ("lsh-embedding", "lsh-label"):
        clf = SLIDEClassifier(negative_sampling=mode, negative_fill="unigram", **params)
        clf.fit(X, Y)
        assert np.isfinite(clf.loss_curve_).all() and clf._unigram_cdf.shape == (120,)
        expected = clf.estimate_memory(60, 120, max_labels_per_sample=10)["other"]
        assert clf.memory_usage()["other"] == expected
    with pytest.raises(ValueError, match="negative_fill"):
        SLIDEClassifier(negative_fill="zipf").fit(X, Y)


def test_lsh_label_queries_with_the_true_label_weights():
    L, H = 80, 8
    W2 = np.random.default_rng(6).standard_normal((L, H)).astype(np.float32)
    tables = LSHTables("simhash", H, 2, 6, bucket_capacity=1000, seed=1)
    tables.build(W2)
    ab, _, n_active, _ = _run_kernel([np.array([11])], L, mode="lsh-label", max_active=L,
                                     min_active=1, seed=0, W2=W2, tables=tables)
    expected = set(tables.query(W2[11]).tolist()) - {11}
    assert set(ab[0, 1: n_active[0]].tolist()) == expected


# ------------------------------------------------------- probability models


def _vectors_at_cosines(query, cosines, rng):
    q = query / np.linalg.norm(query)
    out = []
    for c in cosines:
        u = rng.standard_normal(q.size)
        u -= (u @ q) * q
        u /= np.linalg.norm(u)
        out.append(c * q + np.sqrt(1 - c * c) * u)
    return np.array(out, dtype=np.float32)


@pytest.mark.parametrize("family", ["simhash", "dwta"])
def test_retrieval_frequency_matches_one_minus_one_minus_cp_to_the_k_to_the_l(family):
    # Over many independent draws of hash functions, an item is retrieved with
    # probability 1 - (1 - cp^K)^L, cp the family's collision probability for
    # the pair (measured over all draws' codes).
    rng = np.random.default_rng(0)
    dim, K, L, n_draws = 48, 2, 3, 600
    query = rng.standard_normal(dim).astype(np.float32)
    cosines = [0.95, 0.8, 0.6, 0.3, 0.0]
    items = _vectors_at_cosines(query, cosines, rng)
    hits, agree = np.zeros(len(items)), np.zeros(len(items))
    for draw in range(n_draws):
        tables = LSHTables(family, dim, K, L, bucket_capacity=64, seed=draw)
        tables.build(items)
        hits[tables.query(query)] += 1
        agree += measured_collision_probability(tables, query[None], items)[0]
    cp = agree / n_draws
    expected = retrieval_probability(cp, K, L)
    sd = np.sqrt(expected * (1 - expected) / n_draws)
    np.testing.assert_array_less(np.abs(hits / n_draws - expected), 4 * sd + 0.01)
    assert np.all(np.diff(hits) <= n_draws * 0.05)  # more similar, more often retrieved
    if family == "simhash":
        # signed projections: cp = 1 - angle / pi (up to the sparse projections)
        np.testing.assert_allclose(cp, simhash_collision_probability(cosines), atol=0.06)


def test_collision_tables():
    grid = np.linspace(-1, 1, 65)
    tables = LSHTables("simhash", 16, 2, 4)
    np.testing.assert_allclose(collision_table(tables), simhash_collision_probability(grid),
                               rtol=1e-6)
    rng = np.random.default_rng(1)
    tables = LSHTables("dwta", 16, 2, 20, seed=4)
    cp = collision_table(tables, rng.standard_normal((30, 16)), rng.standard_normal((40, 16)))
    assert cp.shape == (65,) and np.all(np.diff(cp) >= 0) and cp[-1] == pytest.approx(1.0)
    assert 0 < cp[32] < 0.5  # unrelated vectors: about 1/8 of the codes agree


def test_unigram_cdf():
    cdf = unigram_cdf([0, 0, 0, 5])
    np.testing.assert_allclose(cdf, [1 / 9, 2 / 9, 3 / 9, 1.0])


@pytest.mark.parametrize("mode", ["uniform", "unigram"])
def test_random_negatives_are_shared_by_the_rows_of_a_batch(mode):
    """One batch's rows take the same random labels: a step updates few output rows."""
    from sksketch.datasets import make_extreme_classification

    X, Y = make_extreme_classification(n_samples=128, n_features=2000, n_labels=5000,
                                       avg_labels_per_sample=2, random_state=0)
    clf = SLIDEClassifier(hidden_layer_size=16, negative_sampling=mode,
                          min_active_labels=64, max_active_labels=64, batch_size=128,
                          output_init="uniform", sparse_head=False, random_state=0,
                          n_jobs=2)
    clf.partial_fit(X[:1], Y[:1])  # builds the model on one row
    before = clf.output_weights_.copy()
    clf.partial_fit(X, Y)  # one step of 128 rows
    changed = np.flatnonzero(np.any(clf.output_weights_ != before, axis=1))
    true = np.unique(sp.csr_matrix(Y).indices)
    # the rows' true labels and one shared draw of about 64 labels (each row
    # skips its own): far fewer than 128 independent draws of 62 would touch
    assert changed.size <= true.size + 64 + 8
    assert np.isin(true, changed).all()
