"""Label clusters: the balanced 2-means tree, the cluster head, and SLIDEClassifier with them."""

import pickle

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.base import clone

from sksketch import SLIDEClassifier
from sksketch._slide import _inference
from sksketch._slide._label_clusters import (
    LabelClusterHead,
    balanced_clusters,
    label_centroids,
)
from sksketch._state import StateError
from sksketch.datasets import make_extreme_classification
from sksketch.utils._validation import canonical_rows


def _problem(n_samples=3000, n_labels=400, random_state=0):
    return make_extreme_classification(
        n_samples=n_samples, n_features=3000, n_labels=n_labels, label_cluster_size=16,
        cluster_shared_fraction=0.6, random_state=random_state)


@pytest.mark.parametrize("size", [1, 2, 5, 16, 1000])
def test_balanced_clusters_have_at_most_size_and_at_least_half_of_it(size):
    rng = np.random.default_rng(0)
    C = sp.random(300, 200, density=0.05, format="csr", random_state=0, dtype=np.float32)
    C = sp.csr_matrix(C.multiply(1 / np.maximum(sp.linalg.norm(C, axis=1), 1e-12)[:, None]))
    assign = balanced_clusters(C, size, rng)
    assert assign.dtype == np.int32 and assign.shape == (300,)
    counts = np.bincount(assign)
    assert counts.min() >= 1 and counts.max() <= size
    if size < 300:
        assert counts.min() >= (size + 1) // 2  # halves of a group larger than size


def test_balanced_clusters_group_similar_rows():
    """Four groups of 8 rows that share their features: each group is a cluster."""
    rng = np.random.default_rng(1)
    rows = []
    for g in range(4):
        base = np.zeros(400, dtype=np.float32)
        base[g * 100:(g + 1) * 100] = rng.random(100) + 0.5
        for _ in range(8):
            rows.append(base * (1 + 0.1 * rng.random(400).astype(np.float32)))
    order = rng.permutation(32)
    C = sp.csr_matrix(np.array(rows)[order])
    C = sp.csr_matrix(C.multiply(1 / sp.linalg.norm(C, axis=1)[:, None]))
    assign = balanced_clusters(C, 8, np.random.default_rng(0))
    for g in range(4):  # row r of C is row order[r] of the groups
        assert np.unique(assign[order // 8 == g]).size == 1


def test_cluster_targets_and_scores_match_a_plain_reference():
    X, Y = _problem(n_samples=600, n_labels=120)
    X = canonical_rows(X)
    Y = sp.csr_matrix(Y)
    Y_before = (Y.indptr.copy(), Y.indices.copy())
    w = np.ones(X.shape[0], dtype=np.float32)
    head = LabelClusterHead.from_data(X, Y, w, 16, 64, np.random.default_rng(0))
    T = head.targets(Y)
    # Y untouched, and each row's clusters are those of its labels, each once
    np.testing.assert_array_equal(Y.indptr, Y_before[0])
    np.testing.assert_array_equal(Y.indices, Y_before[1])
    for i in range(Y.shape[0]):
        want = np.unique(head.assign[Y.indices[Y.indptr[i]:Y.indptr[i + 1]]])
        np.testing.assert_array_equal(T.indices[T.indptr[i]:T.indptr[i + 1]], want)
    # cluster scores: sum over the row's features of x_f / |x| times the pair weights
    h = head.head
    rng = np.random.default_rng(3)
    h.weights[:] = rng.standard_normal(h.n_pairs).astype(np.float32)
    V = np.zeros((X.shape[1], head.n_clusters))
    for f in range(X.shape[1]):
        V[f, h.labels[h.indptr[f]:h.indptr[f + 1]]] = h.weights[h.indptr[f]:h.indptr[f + 1]]
    Xd = X.toarray().astype(np.float64)
    Xd /= np.maximum(np.linalg.norm(Xd, axis=1, keepdims=True), 1e-30)
    np.testing.assert_allclose(head.cluster_scores(X, 2), Xd @ V, rtol=1e-5, atol=1e-5)
    scores = rng.standard_normal((X.shape[0], Y.shape[1])).astype(np.float32)
    want = scores + 0.5 * (Xd @ V)[:, head.assign]
    head.add_scores(scores, X, 0.5, 2)
    np.testing.assert_allclose(scores, want, rtol=1e-5, atol=1e-5)


def test_label_centroids_are_unit_rows_of_the_labels_mean():
    X, Y = _problem(n_samples=300, n_labels=50)
    X = canonical_rows(X)
    C = label_centroids(X, sp.csr_matrix(Y), np.ones(X.shape[0], dtype=np.float32))
    norms = sp.linalg.norm(C, axis=1)
    has_rows = np.asarray(sp.csr_matrix(Y).sum(axis=0)).ravel() > 0
    np.testing.assert_allclose(norms[has_rows], 1, rtol=1e-5)


def test_fit_builds_clusters_and_chooses_their_weight():
    X, Y = _problem()
    clf = SLIDEClassifier(hidden_layer_size=32, max_iter=3, random_state=0, n_jobs=2,
                          label_cluster_size=16)
    clf.fit(X[:2500], Y[:2500])
    c = clf.cluster_head_
    assert isinstance(c, LabelClusterHead)
    assert c.n_labels == 400 and np.bincount(c.assign).max() <= 16
    assert c.head.step > 0  # trained beside the label head
    assert clf.label_cluster_weight_ in _inference.HEAD_WEIGHTS
    # the cluster head ranks the held-out rows' clusters far above chance
    Xt = clf._validate_X(X[2500:], reset=False)  # the rows the model reads
    top = np.argmax(c.cluster_scores(Xt, 2), axis=1)
    T = c.targets(sp.csr_matrix(Y[2500:]))
    hit = np.asarray(T[np.arange(T.shape[0]), top]).ravel()
    assert hit.mean() > 10 / c.n_clusters
    # the ranking is the network, plus the head, plus the clusters' term
    clf.label_cluster_weight_ = 2.0
    net = _inference.full_scores(clf, _inference.hidden(clf, Xt), Xt, clusters=False)
    want = net + np.float32(2.0) * c.cluster_scores(Xt, 2)[:, c.assign]
    np.testing.assert_array_equal(clf.decision_function(X[2500:]), want)


@pytest.mark.parametrize("params", [dict(),
                                    dict(label_cluster_size=16, label_cluster_weight=0.0),
                                    dict(label_cluster_size=16, sparse_head=False),
                                    dict(label_cluster_size=400)])
def test_no_clusters(params):
    X, Y = _problem(n_samples=1200)
    clf = SLIDEClassifier(hidden_layer_size=16, max_iter=1, random_state=0, **params)
    clf.fit(X, Y)
    assert clf.cluster_head_ is None
    assert clf.label_cluster_weight_ == 0.0


def test_a_set_cluster_weight_is_used_and_partial_fit_trains_the_clusters():
    X, Y = _problem()
    clf = SLIDEClassifier(hidden_layer_size=16, random_state=0, label_cluster_weight=0.5,
                          sparse_head_weight=1.0, label_cluster_size=16)
    clf.partial_fit(X[:1000], Y[:1000])
    assert clf.label_cluster_weight_ == 0.5
    step = clf.cluster_head_.head.step
    assert step == -(-1000 // 128)
    clf.partial_fit(X[1000:2000], Y[1000:2000])
    assert clf.cluster_head_.head.step == 2 * step
    assert clf.label_cluster_weight_ == 0.5


def test_partial_fit_chooses_the_cluster_weight_on_new_rows():
    X, Y = _problem()
    clf = SLIDEClassifier(hidden_layer_size=16, random_state=0, label_cluster_size=16)
    clf.partial_fit(X[:1500], Y[:1500])
    assert clf.label_cluster_weight_ == 0.0  # the first call's rows built the head
    clf.partial_fit(X[1500:], Y[1500:])
    assert clf.label_cluster_weight_ in _inference.HEAD_WEIGHTS


def test_clusters_survive_pickle_and_clone():
    X, Y = _problem(n_samples=1500)
    clf = SLIDEClassifier(hidden_layer_size=16, max_iter=1, random_state=0,
                          label_cluster_size=16, label_cluster_weight=1.0).fit(X[:1200], Y[:1200])
    again = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(again.cluster_head_.assign, clf.cluster_head_.assign)
    np.testing.assert_array_equal(again.predict_topk(X[1200:], k=3)[0],
                                  clf.predict_topk(X[1200:], k=3)[0])
    np.testing.assert_array_equal(again.decision_function(X[1200:]),
                                  clf.decision_function(X[1200:]))
    assert clone(clf).get_params()["label_cluster_weight"] == 1.0


def test_a_corrupt_cluster_head_is_refused():
    X, Y = _problem(n_samples=800)
    clf = SLIDEClassifier(hidden_layer_size=16, max_iter=1, random_state=0,
                          label_cluster_size=16, label_cluster_weight=1.0).fit(X, Y)
    state = clf.cluster_head_.__getstate__()
    bad = dict(state, assign=state["assign"].copy())
    bad["assign"][0] = clf.cluster_head_.n_clusters  # past the last cluster
    with pytest.raises(StateError, match="assign"):
        LabelClusterHead.__new__(LabelClusterHead).__setstate__(bad)
    bad = dict(state, assign=state["assign"].astype(np.int64))
    with pytest.raises(StateError, match="int32"):
        LabelClusterHead.__new__(LabelClusterHead).__setstate__(bad)


def test_estimate_memory_bounds_the_cluster_head():
    X, Y = _problem()
    clf = SLIDEClassifier(hidden_layer_size=16, max_iter=1, random_state=0,
                          label_cluster_size=16, label_cluster_weight=1.0)
    estimate = clf.estimate_memory(X.shape[1], Y.shape[1])
    clf.fit(X, Y)
    assert clf.memory_usage()["sparse_head"] <= estimate["sparse_head"]
    assert clf.cluster_head_.nbytes > 0


@pytest.mark.parametrize("loss", ["softmax", "squared_hinge"])
def test_head_extend_keeps_trained_pairs_and_starts_new_ones(loss):
    """The pairs of all rows, as from_data builds them; old pairs keep weights and moments."""
    from sksketch._slide._sparse_head import SparseLabelHead

    X, Y = _problem(n_samples=900, n_labels=120)
    X, Y = canonical_rows(X), sp.csr_matrix(Y)
    w = np.ones(X.shape[0], dtype=np.float32)
    head, = SparseLabelHead.from_data(X[:600], Y[:600], w[:600], 64, (loss,))
    rng = np.random.default_rng(0)
    for name in ("weights", "m", "v"):
        getattr(head, name)[:] = rng.random(head.n_pairs).astype(np.float32) + 1
    head.step = 7
    old = {(f, int(j)): (head.weights[r], head.m[r], head.v[r])
           for f in range(X.shape[1])
           for r, j in zip(range(head.indptr[f], head.indptr[f + 1]),
                           head.labels[head.indptr[f]:head.indptr[f + 1]], strict=True)}
    head.extend(X, Y, w, 64)
    want, = SparseLabelHead.from_data(X, Y, w, 64, (loss,))
    np.testing.assert_array_equal(head.indptr, want.indptr)
    np.testing.assert_array_equal(head.labels, want.labels)
    assert head.step == 7 and head.loss == loss
    n_new = 0
    for f in range(X.shape[1]):
        for r in range(head.indptr[f], head.indptr[f + 1]):
            key = (f, int(head.labels[r]))
            if key in old:
                assert (head.weights[r], head.m[r], head.v[r]) == old[key]
            else:
                n_new += 1
                assert head.weights[r] == want.weights[r]  # Rocchio, or 0 for the hinge
                assert head.m[r] == 0 and head.v[r] == 0
    assert n_new > 0
    head._check_state()


def test_cluster_extend_gives_joining_labels_the_nearest_cluster():
    X, Y = _problem(n_samples=1200, n_labels=200)
    X, Y = canonical_rows(X), sp.csr_matrix(Y)
    w = np.ones(X.shape[0], dtype=np.float32)
    # labels with rows only among the last 300 rows
    seen = np.unique(Y[:900].indices)
    joining = np.setdiff1d(np.unique(Y.indices), seen)
    assert joining.size > 0
    c = LabelClusterHead.from_data(X[:900], Y[:900], w[:900], 16, 64, np.random.default_rng(0))
    c.extend(X, Y, w, 64)
    C = label_centroids(X, Y, w)
    for j in joining:
        members = np.setdiff1d(np.flatnonzero(c.assign == c.assign[j]), joining)
        members = members[np.isin(members, seen)]
        others = [np.setdiff1d(np.flatnonzero(c.assign == k), joining) for k in
                  range(c.n_clusters)]
        sims = [float((C[j] @ normalize_rows(C[o[np.isin(o, seen)]].sum(axis=0)).T).sum())
                if np.isin(o, seen).any() else -np.inf for o in others]
        assert c.assign[j] == int(np.argmax(sims)) and members.size > 0
    assert c.head.n_labels == c.n_clusters
    np.testing.assert_array_equal(np.bincount(c.assign, minlength=c.n_clusters) > 0, True)


def normalize_rows(a):
    a = np.asarray(a, dtype=np.float64)
    return a / max(float(np.linalg.norm(a)), 1e-30)


@pytest.mark.parametrize("max_iter", [1, 2])
def test_labels_whose_rows_were_held_out_get_head_pairs(max_iter):
    """fit holds rows out to choose the head: every label keeps a path.

    With two epochs the held-out rows join the last one (unless the fit
    stops early); with one they never join training: either way the head
    has the pairs of every row in the end.
    """
    X, Y = _problem(n_samples=2000, n_labels=1500)
    clf = SLIDEClassifier(hidden_layer_size=16, max_iter=max_iter, random_state=0).fit(X, Y)
    with_rows = np.unique(sp.csr_matrix(Y).indices)
    assert np.isin(with_rows, clf.sparse_head_.labels).all()
