"""The sparse feature-to-label head: kernels against NumPy references, building, state."""

import pickle
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.preprocessing import normalize

import sksketch
from sksketch import SLIDEClassifier
from sksketch._slide._sparse_head import INIT_LOGIT, LEARNING_RATE, SparseLabelHead
from sksketch._state import StateError
from sksketch.datasets import make_extreme_classification


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=Warning)
        yield


def _problem(n=120, d=40, L=30, seed=0):
    rng = np.random.default_rng(seed)
    X = sp.random(n, d, density=0.15, format="csr", random_state=seed, dtype=np.float32)
    X.data = (X.data * 3).astype(np.float32)
    Y = sp.csr_matrix((rng.random((n, L)) < 0.08).astype(np.float32))
    Y[5] = 0  # a row without labels
    Y.eliminate_zeros()
    return X, sp.csr_matrix(Y, dtype=np.float32)


def _dense(head):
    V = np.zeros((head.n_features, head.n_labels))
    for f in range(head.n_features):
        sl = slice(head.indptr[f], head.indptr[f + 1])
        V[f, head.labels[sl]] = head.weights[sl]
    return V


def _mask(head):
    M = np.zeros((head.n_features, head.n_labels), dtype=bool)
    for f in range(head.n_features):
        M[f, head.labels[head.indptr[f] : head.indptr[f + 1]]] = True
    return M


@pytest.mark.parametrize("cap", [1, 3, 1000])
def test_from_data_keeps_each_features_top_centroid_weights(cap):
    X, Y = _problem()
    w = np.linspace(0.5, 2.0, X.shape[0]).astype(np.float32)
    head = SparseLabelHead.from_data(X, Y, w, cap)
    # reference: Rocchio centroids of the normalised rows, each label's normalised
    C = normalize(Y.T.toarray() @ (w[:, None] * normalize(X).toarray()))  # labels x features
    V = _dense(head)
    for f in range(X.shape[1]):
        col = C[:, f]
        nz = np.flatnonzero(col)
        kept = head.labels[head.indptr[f] : head.indptr[f + 1]]
        assert len(kept) == min(cap, len(nz))
        assert np.all(np.diff(kept) > 0)  # label ids in increasing order
        # the kept labels weigh the feature at least as much as any dropped one
        if len(kept) < len(nz):
            assert col[kept].min() >= np.delete(col, kept).max() - 1e-6
        np.testing.assert_allclose(V[f, kept], INIT_LOGIT * col[kept], rtol=1e-5)
    assert head.indptr.dtype == np.int64 and head.labels.dtype == np.int32


@pytest.mark.parametrize("n_threads", [1, 3])
def test_add_scores_is_the_dense_product(n_threads):
    X, Y = _problem()
    head = SparseLabelHead.from_data(X, Y, np.ones(X.shape[0], np.float32), 5)
    base = np.random.default_rng(1).standard_normal((X.shape[0], Y.shape[1])).astype(np.float32)
    scores = base.copy()
    head.add_scores(scores, X, 0.5, n_threads)
    expected = base + 0.5 * normalize(X).toarray() @ _dense(head)
    np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-5)
    again = base.copy()
    head.add_scores(again, X, 0.5, 1)
    np.testing.assert_array_equal(scores, again)  # rows independent of the thread count


def _reference_step(head, X, Y, rows, weights, b1=0.9, b2=0.999, eps=1e-8):
    """One lazy-Adam step of the full softmax over all labels, in float64 NumPy."""
    V, M = _dense(head), _mask(head)
    Xn = normalize(X).toarray()
    G = np.zeros_like(V)
    touched = np.zeros_like(M)
    loss_sum = weight_sum = 0.0
    for r, w in zip(rows, weights, strict=True):
        true = Y[r].indices
        if len(true) == 0:
            continue
        s = Xn[r] @ V
        lse = np.log(np.exp(s - s.max()).sum()) + s.max()
        loss_sum += w * (lse - s[true].mean())
        weight_sum += w
        g = np.exp(s - lse)
        g[true] -= 1.0 / len(true)
        G += np.outer(Xn[r], g) * w / len(rows)
        touched |= (Xn[r] != 0)[:, None] & M
    head.step += 1
    t = head.step
    m, v = _dense_moments(head)
    m[touched] = b1 * m[touched] + (1 - b1) * G[touched]
    v[touched] = b2 * v[touched] + (1 - b2) * G[touched] ** 2
    # Adam as written in the paper: bias-corrected moments
    m_hat, v_hat = m[touched] / (1 - b1**t), v[touched] / (1 - b2**t)
    V[touched] -= LEARNING_RATE * m_hat / (np.sqrt(v_hat) + eps)
    return V, loss_sum, weight_sum


def _dense_moments(head):
    out = []
    for a in (head.m, head.v):
        D = np.zeros((head.n_features, head.n_labels))
        for f in range(head.n_features):
            sl = slice(head.indptr[f], head.indptr[f + 1])
            D[f, head.labels[sl]] = a[sl]
        out.append(D)
    return out


@pytest.mark.parametrize("cap", [2, 1000])  # with cap 2, some true labels are unreached
def test_train_batch_is_a_lazy_adam_step_of_the_exact_softmax(cap):
    X, Y = _problem()
    head = SparseLabelHead.from_data(X, Y, np.ones(X.shape[0], np.float32), cap)
    ref = SparseLabelHead.from_data(X, Y, np.ones(X.shape[0], np.float32), cap)
    rng = np.random.default_rng(3)
    scratch = head.scratch(16, head.max_row_pairs(X))
    for _ in range(3):
        rows = rng.choice(X.shape[0], 16, replace=False).astype(np.int64)
        rows[0] = 5  # the row without labels
        weights = rng.uniform(0.2, 2.0, 16).astype(np.float32)
        expected, loss_ref, weight_ref = _reference_step(ref, X, Y, rows, weights)
        loss, weight = head.train_batch(X, Y, rows, weights, scratch, 0.9, 0.999, 1e-8)
        np.testing.assert_allclose(_dense(head), expected, rtol=1e-4, atol=1e-5)
        assert loss == pytest.approx(loss_ref, rel=1e-4)
        assert weight == pytest.approx(weight_ref, rel=1e-6)
        # the reference continues from the kernel's state (float32 moments)
        ref.weights[:], ref.m[:], ref.v[:] = head.weights, head.m, head.v
    assert not scratch["grad"].any() and not scratch["entry_mark"].any()
    assert not scratch["label_mark"].any()


def test_classifier_ranks_by_network_plus_weighted_head():
    X, Y = make_extreme_classification(n_samples=600, n_features=300, n_labels=80,
                                       random_state=0)
    clf = SLIDEClassifier(hidden_layer_size=16, max_iter=2, random_state=0, n_jobs=1,
                          sparse_head_weight=2.5).fit(X, Y)
    assert clf.sparse_head_weight_ == 2.5
    Xc = sp.csr_matrix(X, dtype=np.float32)
    net = clf._full_scores(clf._hidden(Xc))
    head = normalize(Xc).toarray() @ _dense(clf.sparse_head_)
    np.testing.assert_allclose(clf.decision_function(X), net + 2.5 * head, rtol=1e-4,
                               atol=1e-4)
    labels, scores = clf.predict_topk(X[:50], k=3)
    np.testing.assert_allclose(scores, np.sort(net + 2.5 * head, axis=1)[:50, ::-1][:, :3],
                               rtol=1e-4, atol=1e-4)
    off = SLIDEClassifier(hidden_layer_size=16, max_iter=2, random_state=0, n_jobs=1,
                          sparse_head=False).fit(X, Y)
    assert off.sparse_head_ is None and off.sparse_head_weight_ == 0.0
    # the head trains on its own: the network is the same with or without it
    np.testing.assert_array_equal(off.output_weights_, clf.output_weights_)


def test_auto_weight_is_chosen_on_held_out_rows_of_large_fits():
    X, Y = make_extreme_classification(n_samples=10_000, n_features=500, n_labels=200,
                                       random_state=1)
    clf = SLIDEClassifier(hidden_layer_size=16, max_iter=1, random_state=0, n_jobs=2).fit(X, Y)
    from sksketch._slide._inference import HEAD_WEIGHTS as _HEAD_WEIGHTS

    assert clf.sparse_head_weight_ in _HEAD_WEIGHTS
    assert clf.t_ == 9000  # one epoch: the held-out tenth never trained on
    two = SLIDEClassifier(hidden_layer_size=16, max_iter=2, random_state=0, n_jobs=2).fit(X, Y)
    assert two.t_ == 9000 + 10_000  # the held-out rows join the last epoch
    assert two.sparse_head_weight_ in _HEAD_WEIGHTS
    stopping = SLIDEClassifier(hidden_layer_size=16, max_iter=2, random_state=0,
                               early_stopping=True, n_iter_no_change=5).fit(X, Y)
    assert stopping.t_ == 2 * 9000  # early stopping's validation rows stay out
    # warm-started with the head turned on after a first fit without one:
    # no head to train or weigh (it is only built by a first call)
    late = SLIDEClassifier(hidden_layer_size=16, max_iter=2, random_state=0, n_jobs=2,
                           sparse_head=False, warm_start=True).fit(X, Y)
    late.set_params(sparse_head=True).fit(X, Y)
    assert late.sparse_head_ is None and late.sparse_head_weight_ == 0.0
    late.partial_fit(X[:500], Y[:500])
    assert late.sparse_head_weight_ == 0.0
    small = SLIDEClassifier(hidden_layer_size=16, max_iter=1, random_state=0).fit(
        X[:2000], Y[:2000])
    assert small.sparse_head_weight_ == 1.0  # too few rows to hold some out
    stream = SLIDEClassifier(hidden_layer_size=16, random_state=0)
    stream.partial_fit(X[:3000], Y[:3000])
    assert stream.sparse_head_weight_ == 1.0
    stream.partial_fit(X[3000:6000], Y[3000:6000])
    assert stream.sparse_head_weight_ in _HEAD_WEIGHTS


def test_save_load_and_pickle_keep_the_head_and_refuse_a_broken_one(tmp_path):
    X, Y = make_extreme_classification(n_samples=300, n_features=200, n_labels=50,
                                       random_state=0)
    clf = SLIDEClassifier(hidden_layer_size=8, max_iter=1, random_state=0).fit(X, Y)
    path = tmp_path / "model.npz"
    sksketch.save(clf, path)
    for loaded in (sksketch.load(path), pickle.loads(pickle.dumps(clf))):
        np.testing.assert_array_equal(loaded.decision_function(X), clf.decision_function(X))
    broken = pickle.loads(pickle.dumps(clf))
    broken.sparse_head_.labels[0] = 50  # a label the model does not have
    with pytest.raises(StateError, match="labels out of range"):
        pickle.loads(pickle.dumps(broken))
    sksketch.save(broken, tmp_path / "broken.npz")
    with pytest.raises(ValueError, match="labels out of range"):
        sksketch.load(tmp_path / "broken.npz")
    broken = pickle.loads(pickle.dumps(clf))
    broken.sparse_head_.indptr[-1] += 1
    with pytest.raises(StateError, match="indptr"):
        pickle.loads(pickle.dumps(broken))
    with pytest.raises(ValueError, match="labels_per_feature"):
        SLIDEClassifier(labels_per_feature=0).fit(X, Y)
    with pytest.raises(ValueError, match="sparse_head_weight"):
        SLIDEClassifier(sparse_head_weight=-1.0).fit(X, Y)


def test_head_stops_on_its_held_out_precision_and_keeps_its_best_weights(monkeypatch):
    """Once the head's held-out P@1 falls, its best weights come back and it stops training."""
    from sksketch._slide import _trainer

    X, Y = make_extreme_classification(n_samples=10_000, n_features=500, n_labels=200,
                                       random_state=1)
    seen = []

    def watched(scores):
        def head_precision_at_1(est, X_val, Y_val):
            seen.append(est.sparse_head_.weights.copy())
            return scores[len(seen) - 1]
        return head_precision_at_1

    params = dict(hidden_layer_size=16, max_iter=4, random_state=0, n_jobs=1)
    # checked at the start and after epochs 1 and 2; epochs 3 and 4 leave the head alone
    monkeypatch.setattr(_trainer, "head_precision_at_1", watched([0.5, 0.6, 0.4]))
    clf = SLIDEClassifier(**params).fit(X, Y)
    assert len(seen) == 3
    assert not np.array_equal(seen[0], seen[1]) and not np.array_equal(seen[1], seen[2])
    np.testing.assert_array_equal(clf.sparse_head_.weights, seen[1])
    assert clf.t_ == 3 * 9000 + 10_000  # the network trained on, the held-out rows at last

    # an improving (or tied) head trains through every epoch; the checks stop
    # before the last one, which trains on the held-out rows too
    seen.clear()
    monkeypatch.setattr(_trainer, "head_precision_at_1", watched([0.5, 0.6, 0.6, 0.7]))
    clf = SLIDEClassifier(**params).fit(X, Y)
    assert len(seen) == 4
    assert not np.array_equal(clf.sparse_head_.weights, seen[3])

    # the start is the best: the Rocchio weights are kept, the head never trains
    seen.clear()
    monkeypatch.setattr(_trainer, "head_precision_at_1", watched([0.5, 0.4]))
    clf = SLIDEClassifier(**params).fit(X, Y)
    np.testing.assert_array_equal(clf.sparse_head_.weights, seen[0])

    # no held-out rows (a small fit, partial_fit): no checks
    seen.clear()
    SLIDEClassifier(**params).fit(X[:2000], Y[:2000])
    SLIDEClassifier(**params).partial_fit(X, Y)
    assert seen == []
