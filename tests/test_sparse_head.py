"""The sparse feature-to-label head: kernels against NumPy references, building, state."""

import pickle
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.preprocessing import normalize

import sksketch
from sksketch import SLIDEClassifier
from sksketch._slide._sparse_head import (
    DAMPED_EPSILON,
    HINGE_MARGINS,
    INIT_LOGIT,
    LEARNING_RATE,
    LOSSES,
    SPARSE_HINGE_MARGINS,
    SparseLabelHead,
    pairs_per_feature,
)
from sksketch._state import StateError
from sksketch.datasets import make_extreme_classification
from sksketch.utils._validation import canonical_rows


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
    head, hinge = SparseLabelHead.from_data(X, Y, w, cap, ("softmax", "squared_hinge"))
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
    # the squared-hinge head has the same pairs and starts at 0
    assert (head.loss, hinge.loss) == ("softmax", "squared_hinge")
    assert hinge.indptr is head.indptr and hinge.labels is head.labels
    assert hinge.weights.shape == head.weights.shape and not hinge.weights.any()


def test_from_data_breaks_ties_at_the_cap_by_label_id():
    # feature 0 weighs every label's centroid equally, feature 1 only labels 3 and 4
    X = sp.csr_matrix(np.array([[1, 0], [1, 0], [1, 0], [1, 1], [1, 1]], dtype=np.float32))
    Y = sp.csr_matrix(np.eye(5, dtype=np.float32)[[4, 2, 0, 3, 1]])
    head, = SparseLabelHead.from_data(X, Y, np.ones(5, np.float32), 2)
    assert head.indptr.tolist() == [0, 2, 4]
    # feature 0: labels 0, 2 and 4 (rows without feature 1) tie above 1 and 3
    assert head.labels.tolist() == [0, 2, 1, 3]


def test_auto_labels_per_feature_is_256_or_more_within_the_pair_budget():
    assert pairs_per_feature(7, 10) == 7
    assert pairs_per_feature("auto", 500) == (1 << 22) // 500
    assert pairs_per_feature("auto", 100_000) == 256


@pytest.mark.parametrize("n_threads", [1, 3])
def test_add_scores_is_the_dense_product(n_threads):
    X, Y = _problem()
    head, = SparseLabelHead.from_data(X, Y, np.ones(X.shape[0], np.float32), 5)
    base = np.random.default_rng(1).standard_normal((X.shape[0], Y.shape[1])).astype(np.float32)
    scores = base.copy()
    head.add_scores(scores, X, 0.5, n_threads)
    expected = base + 0.5 * normalize(X).toarray() @ _dense(head)
    np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-5)
    again = base.copy()
    head.add_scores(again, X, 0.5, 1)
    np.testing.assert_array_equal(scores, again)  # rows independent of the thread count


def _row_loss_and_gradient(loss, s, true, reached, margins=(1.0, 1.0)):
    """A row's loss and its gradient in the scores s of every label (float64)."""
    if loss == "softmax":
        lse = np.log(np.exp(s - s.max()).sum()) + s.max()
        g = np.exp(s - lse)
        g[true] -= 1.0 / len(true)
        return lse - s[true].mean(), g
    y = -np.ones_like(s)
    y[true] = 1.0
    # max(0, own - s) on the row's labels, max(0, other + s) on the others
    margin = np.maximum(0.0, np.where(y > 0, margins[0], margins[1]) - y * s)
    # an unreached negative's constant is left out of the loss
    return (margin**2)[reached | (y > 0)].sum(), -2.0 * y * margin


def _reference_step(head, X, Y, rows, weights, b1=0.9, b2=0.999, eps=1e-8):
    """One lazy-Adam step of the head's loss over all labels, in float64 NumPy."""
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
        reached = ((Xn[r] != 0)[:, None] & M).any(axis=0)
        margins = SPARSE_HINGE_MARGINS if head.sparse else HINGE_MARGINS
        loss, g = _row_loss_and_gradient(head.loss, s, true, reached, margins)
        loss_sum += w * loss
        weight_sum += w
        # labels the row does not reach have no pair for their gradient to move
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


@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("loss", ["softmax", "squared_hinge"])
@pytest.mark.parametrize("cap", [2, 1000])  # with cap 2, some true labels are unreached
# pair by pair, or from the dense copy of the pairs (heads that fill much of the grid)
@pytest.mark.parametrize("dense", [False, True])
# the margins follow the head's sparsity; "swapped": the other margins (a
# sparse head whose extended pairs came to fill the grid, and the reverse)
@pytest.mark.parametrize("margins", ["own", "swapped"])
def test_train_batch_is_a_lazy_adam_step_of_the_exact_loss(cap, loss, n_threads, dense,
                                                           margins, monkeypatch):
    from sksketch._slide import _sparse_head as module

    monkeypatch.setattr(module, "DENSE_MIN_FILL", 0.0 if dense else 2.0)
    X, Y = _problem()
    head, = SparseLabelHead.from_data(X, Y, np.ones(X.shape[0], np.float32), cap, (loss,))
    ref, = SparseLabelHead.from_data(X, Y, np.ones(X.shape[0], np.float32), cap, (loss,))
    # a head that leaves its grid empty takes the sparse hinge's margins
    assert head.sparse == ref.sparse == (not dense)
    if margins == "swapped":
        head.sparse = ref.sparse = dense
    rng = np.random.default_rng(3)
    scratch = head.scratch()
    assert ("dense_w" in scratch) == dense
    for _ in range(3):
        rows = rng.choice(X.shape[0], 16, replace=False).astype(np.int64)
        rows[0] = 5  # the row without labels
        weights = rng.uniform(0.2, 2.0, 16).astype(np.float32)
        expected, loss_ref, weight_ref = _reference_step(ref, X, Y, rows, weights)
        loss, weight = head.train_batch(X, Y, rows, weights, scratch, 0.9, 0.999, 1e-8,
                                        n_threads)
        np.testing.assert_allclose(_dense(head), expected, rtol=1e-4, atol=1e-5)
        assert loss == pytest.approx(loss_ref, rel=1e-4)
        assert weight == pytest.approx(weight_ref, rel=1e-6)
        # the reference continues from the kernel's state (float32 moments)
        ref.weights[:], ref.m[:], ref.v[:] = head.weights, head.m, head.v
        if dense:  # the dense copy follows the weights
            np.testing.assert_array_equal(scratch["dense_w"], _dense(head).astype(np.float32))
    assert not scratch["grad"].any() and (scratch["offset"] == -1).all()
    assert not scratch["label_mark"].any()
    if dense:
        assert not scratch["dense_grad"].any()
        # weights set from outside the scratch: the next step reads them
        head.weights = ref.weights.copy() * 0.5
        other, = SparseLabelHead.from_data(X, Y, np.ones(X.shape[0], np.float32), cap, (head.loss,))
        other.weights, other.m, other.v, other.step, other.sparse = (
            head.weights.copy(), head.m.copy(), head.v.copy(), head.step, head.sparse)
        monkeypatch.setattr(module, "DENSE_MIN_FILL", 2.0)
        rows = rng.choice(X.shape[0], 16, replace=False).astype(np.int64)
        weights = np.ones(16, np.float32)
        got = head.train_batch(X, Y, rows, weights, scratch, 0.9, 0.999, 1e-8, n_threads)
        want = other.train_batch(X, Y, rows, weights, other.scratch(), 0.9, 0.999, 1e-8,
                                 n_threads)
        assert got[0] == pytest.approx(want[0], rel=1e-5)
        np.testing.assert_allclose(head.weights, other.weights, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("loss", ["softmax", "squared_hinge"])
@pytest.mark.parametrize("n_threads", [1, 2])
def test_dense_train_batch_on_rows_of_many_features(loss, n_threads, monkeypatch):
    """Rows of more non-zeros than the dense path scores in one call (256),
    and batches reaching every feature (each thread then updates its own
    share of feature ids): the exact step."""
    from sksketch._slide import _sparse_head as module

    monkeypatch.setattr(module, "DENSE_MIN_FILL", 0.0)
    X, Y = _problem(n=40, d=700, L=12, seed=4)
    X = sp.csr_matrix(X.toarray() + (X.toarray() == 0) * 0.25, dtype=np.float32)  # 700 a row
    head, = SparseLabelHead.from_data(X, Y, np.ones(X.shape[0], np.float32), 1000, (loss,))
    ref, = SparseLabelHead.from_data(X, Y, np.ones(X.shape[0], np.float32), 1000, (loss,))
    scratch = head.scratch()
    assert "dense_w" in scratch
    rng = np.random.default_rng(0)
    for _ in range(2):
        rows = rng.choice(X.shape[0], 16, replace=False).astype(np.int64)
        weights = rng.uniform(0.5, 1.5, 16).astype(np.float32)
        expected, loss_ref, _ = _reference_step(ref, X, Y, rows, weights)
        got, _ = head.train_batch(X, Y, rows, weights, scratch, 0.9, 0.999, 1e-8, n_threads)
        np.testing.assert_allclose(_dense(head), expected, rtol=1e-4, atol=1e-5)
        assert got == pytest.approx(loss_ref, rel=1e-4)
        ref.weights[:], ref.m[:], ref.v[:] = head.weights, head.m, head.v
        np.testing.assert_array_equal(scratch["dense_w"], _dense(head).astype(np.float32))
    assert not scratch["dense_grad"].any() and (scratch["offset"] == -1).all()
    assert not scratch["label_mark"].any()


@pytest.mark.parametrize("loss", ["softmax", "squared_hinge"])
@pytest.mark.parametrize("batch", [1, 2, 7, 64])  # parts of 0 rows, of uneven sizes
@pytest.mark.parametrize("dense", [False, True])
def test_train_batch_takes_the_same_step_on_any_number_of_threads(loss, batch, dense,
                                                                  monkeypatch):
    from sksketch._slide import _sparse_head as module

    monkeypatch.setattr(module, "DENSE_MIN_FILL", 0.0 if dense else 2.0)
    X, Y = make_extreme_classification(n_samples=400, n_features=120, n_labels=90,
                                       random_state=4)
    X, Y = sp.csr_matrix(X, dtype=np.float32), sp.csr_matrix(Y, dtype=np.float32)
    heads = {n: SparseLabelHead.from_data(X, Y, np.ones(X.shape[0], np.float32), 1000,
                                          (loss,))[0] for n in (1, 2, 4)}
    scratch = {n: head.scratch() for n, head in heads.items()}
    rng = np.random.default_rng(0)
    for _ in range(5):
        rows = rng.choice(X.shape[0], batch, replace=False).astype(np.int64)
        weights = rng.uniform(0.5, 1.5, batch).astype(np.float32)
        out = {n: head.train_batch(X, Y, rows, weights, scratch[n], 0.9, 0.999, 1e-8, n)
               for n, head in heads.items()}
        for n in (2, 4):
            assert out[n] == out[1]
            for name in ("weights", "m", "v"):
                np.testing.assert_array_equal(getattr(heads[n], name),
                                              getattr(heads[1], name))
    for sc in scratch.values():
        assert not sc["grad"].any() and (sc["offset"] == -1).all()
        assert not sc["label_mark"].any()


@pytest.mark.parametrize("loss", ["softmax", "squared_hinge"])
@pytest.mark.parametrize("dense", [False, True])
def test_train_batch_widens_a_narrow_gradient_scratch_with_the_same_step(loss, dense,
                                                                         monkeypatch):
    # A scratch holds a batch's pairs, not the head's: one that starts one
    # pair wide grows as batches need it (nothing moves in a call that
    # finds it too narrow) and takes the steps of one as wide as the head.
    from sksketch._slide import _sparse_head as module

    monkeypatch.setattr(module, "DENSE_MIN_FILL", 0.0 if dense else 2.0)
    X, Y = make_extreme_classification(n_samples=300, n_features=150, n_labels=60,
                                       random_state=2)
    X, Y = sp.csr_matrix(X, dtype=np.float32), sp.csr_matrix(Y, dtype=np.float32)
    narrow, wide = (SparseLabelHead.from_data(X, Y, np.ones(X.shape[0], np.float32), 1000,
                                              (loss,))[0] for _ in range(2))
    monkeypatch.setattr(module, "GRAD_START_WIDTH", 1)
    sc_narrow = narrow.scratch()
    monkeypatch.setattr(module, "GRAD_START_WIDTH", 1 << 30)
    sc_wide = wide.scratch()
    assert sc_narrow["grad"].shape == (module.BATCH_PARTS, 1)
    assert sc_wide["grad"].shape == (module.BATCH_PARTS, wide.n_pairs)
    rng = np.random.default_rng(1)
    widths = []
    for batch in (1, 3, 16, 64, 200, 7):
        rows = rng.choice(X.shape[0], batch, replace=False).astype(np.int64)
        weights = rng.uniform(0.5, 1.5, batch).astype(np.float32)
        got = narrow.train_batch(X, Y, rows, weights, sc_narrow, 0.9, 0.999, 1e-8, 2)
        want = wide.train_batch(X, Y, rows, weights, sc_wide, 0.9, 0.999, 1e-8, 2)
        assert got == want
        assert narrow.step == wide.step
        for name in ("weights", "m", "v"):
            np.testing.assert_array_equal(getattr(narrow, name), getattr(wide, name))
        widths.append(sc_narrow["grad"].shape[1])
    assert widths == sorted(widths) and 1 < widths[-1] <= narrow.n_pairs
    for sc in (sc_narrow, sc_wide):
        assert not sc["grad"].any() and (sc["offset"] == -1).all()
        assert not sc["label_mark"].any()


def test_train_batch_rejects_scratch_without_a_row_per_part():
    X, Y = _problem()
    head, = SparseLabelHead.from_data(X, Y, np.ones(X.shape[0], np.float32), 1000)
    scratch = head.scratch()
    scratch["offset"] = scratch["offset"][:1].copy()
    with pytest.raises(ValueError, match="one row per part"):
        head.train_batch(X, Y, np.arange(8, dtype=np.int64), np.ones(8, np.float32), scratch,
                         0.9, 0.999, 1e-8)


def test_classifier_ranks_by_network_plus_weighted_head():
    X, Y = make_extreme_classification(n_samples=600, n_features=300, n_labels=80,
                                       random_state=0)
    clf = SLIDEClassifier(hidden_layer_size=16, max_iter=2, random_state=0, n_jobs=1,
                          sparse_head_weight=2.5).fit(X, Y)
    assert clf.sparse_head_weight_ == 2.5
    Xc = clf._validate_X(X, reset=False)  # the rows the model reads (feature_power)
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


def test_auto_weight_is_chosen_on_held_out_rows_of_large_fits(monkeypatch):
    from sksketch._slide import _trainer
    from sksketch._slide._inference import HEAD_WEIGHTS as _HEAD_WEIGHTS

    X, Y = make_extreme_classification(n_samples=10_000, n_features=500, n_labels=200,
                                       random_state=1)
    clf = SLIDEClassifier(hidden_layer_size=16, max_iter=1, random_state=0, n_jobs=2).fit(X, Y)
    assert clf.sparse_head_weight_ in _HEAD_WEIGHTS
    assert clf.t_ == 9000  # one epoch: the held-out tenth never trained on
    # (16 hidden units add nothing the held-out rows can tell from the head
    # alone here, and the fit would end after one epoch)
    monkeypatch.setattr(_trainer, "NETWORK_Z", -np.inf)
    two = SLIDEClassifier(hidden_layer_size=16, max_iter=2, random_state=0, n_jobs=2).fit(X, Y)
    assert two.n_iter_ == 2
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
    small = SLIDEClassifier(hidden_layer_size=16, max_iter=1, random_state=0,
                            sparse_head_loss="softmax").fit(X[:2000], Y[:2000])
    assert small.sparse_head_weight_ == 1.0  # too few rows to hold some out
    assert small.t_ == 2000
    stream = SLIDEClassifier(hidden_layer_size=16, random_state=0)
    stream.partial_fit(X[:3000], Y[:3000])
    assert stream.sparse_head_weight_ == 1.0
    stream.partial_fit(X[3000:6000], Y[3000:6000])
    assert stream.sparse_head_weight_ in _HEAD_WEIGHTS


def test_fit_holds_out_no_more_rows_than_its_rankings_read(monkeypatch):
    """Without early stopping, held-out rows past the ranked ones would idle until the end."""
    from sksketch._slide import _inference, _trainer

    X, Y = make_extreme_classification(n_samples=10_000, n_features=500, n_labels=200,
                                       random_state=1)
    # the rankings read every held-out row of a 200-label problem; a cap of
    # 600 rows stands in for a label set of about 112,000 labels
    assert _inference.ranked_rows(200) > 1000
    assert _inference.ranked_rows(15_728) == 4266 and _inference.ranked_rows(10**7) == 250
    monkeypatch.setattr(_inference, "ranked_rows", lambda n_labels: 600)
    monkeypatch.setattr(_trainer, "ranked_rows", lambda n_labels: 600)
    read = []
    rows = _inference.validation_rows
    for module in (_inference, _trainer):  # every ranking of held-out rows reads them
        monkeypatch.setattr(module, "validation_rows",
                            lambda est, X, Y: read.append(X.shape[0]) or rows(est, X, Y))
    one = SLIDEClassifier(hidden_layer_size=16, max_iter=1, random_state=0, n_jobs=2).fit(X, Y)
    assert one.t_ == 10_000 - 600  # one epoch: the 600 held-out rows never trained on
    assert read and set(read) == {600}
    two = SLIDEClassifier(hidden_layer_size=16, max_iter=2, random_state=0, n_jobs=2).fit(X, Y)
    # the held-out rows join the last epoch, unless the fit stopped before it
    assert two.t_ == 9400 + (10_000 if two.n_iter_ == 2 else 0)
    # early stopping scores every validation row: validation_fraction holds
    stopping = SLIDEClassifier(hidden_layer_size=16, max_iter=2, random_state=0,
                               early_stopping=True, n_iter_no_change=5).fit(X, Y)
    assert stopping.t_ == 9000 * stopping.n_iter_
    # a fraction below the cap is kept as it is
    small = SLIDEClassifier(hidden_layer_size=16, max_iter=1, random_state=0, n_jobs=2,
                            validation_fraction=0.05).fit(X, Y)
    assert small.t_ == 9500
    assert _trainer.hold_out_size(small, 10_000, 200) == 0.05
    assert _trainer.hold_out_size(one, 10_000, 200) == 600
    assert _trainer.hold_out_size(stopping, 10_000, 200) == 0.1


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
    broken = pickle.loads(pickle.dumps(clf))
    head = broken.sparse_head_
    f = int(np.argmax(np.diff(head.indptr)))  # a feature with several labels
    head.labels[head.indptr[f] + 1] = head.labels[head.indptr[f]]  # one of them twice
    with pytest.raises(StateError, match="labels must rise"):
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
    seen, pairs = [], []

    def watched(scores):
        def head_hits(est, X_val, Y_val, head):
            assert head is est.sparse_head_
            seen.append(head.weights.copy())
            pairs.append(_pair_keys(head))
            return _rows(scores[len(seen) - 1], X_val.shape[0])
        return head_hits

    params = dict(hidden_layer_size=16, max_iter=4, random_state=0, n_jobs=1,
                  sparse_head_loss="softmax")
    monkeypatch.setattr(_trainer, "WITHIN_CHECKS", 1)  # (checks within an epoch: below)
    monkeypatch.setattr(_trainer, "NETWORK_Z", -np.inf)  # the network trains on
    # checked at the start and after epochs 1 and 2; epochs 3 and 4 leave the head alone
    monkeypatch.setattr(_trainer, "head_hits", watched([0.5, 0.6, 0.4]))
    clf = SLIDEClassifier(**params).fit(X, Y)
    assert len(seen) == 3
    assert not np.array_equal(seen[0], seen[1]) and not np.array_equal(seen[1], seen[2])
    # the best weights, on the pairs the head had; the held-out rows' new
    # pairs (added before the last epoch) at their Rocchio start
    keys = _pair_keys(clf.sparse_head_)
    old = np.isin(keys, pairs[1])
    assert old.sum() == pairs[1].size and (~old).any()
    np.testing.assert_array_equal(clf.sparse_head_.weights[old], seen[1])
    assert clf.t_ == 3 * 9000 + 10_000  # the network trained on, the held-out rows at last


    # an improving (or tied) head trains through every epoch; the checks stop
    # before the last one, which trains on the held-out rows too
    seen.clear()
    monkeypatch.setattr(_trainer, "head_hits", watched([0.5, 0.6, 0.6, 0.7]))
    clf = SLIDEClassifier(**params).fit(X, Y)
    assert len(seen) == 4
    assert not np.array_equal(clf.sparse_head_.weights, seen[3])

    # the start is the best: the Rocchio weights are kept, the head never trains
    seen.clear()
    pairs.clear()
    monkeypatch.setattr(_trainer, "head_hits", watched([0.5, 0.4]))
    clf = SLIDEClassifier(**params).fit(X, Y)
    np.testing.assert_array_equal(
        clf.sparse_head_.weights[np.isin(_pair_keys(clf.sparse_head_), pairs[0])], seen[0])

    # no held-out rows (a small fit, partial_fit): no checks
    seen.clear()
    SLIDEClassifier(**params).fit(X[:2000], Y[:2000])
    SLIDEClassifier(**params).partial_fit(X, Y)
    assert seen == []


def _rows(share, n):
    """Held-out hits of a mocked ranking: the first ``share`` of ``n`` rows."""
    return np.arange(n) < round(share * n)


def _ranked(hits, n_rows, per_row):
    """A mocked mixed_hits' return: ``hits``, with per-row hits if asked for.

    Each ranking hits the first of the ``n_rows`` rows, as many as it counts.
    """
    if not per_row:
        return hits
    return hits, np.arange(n_rows)[None, :, None] < hits[:, None, :, 0]


def _pair_keys(head):
    """feature * n_labels + label of each pair, in the head's order."""
    return (np.repeat(np.arange(head.n_features, dtype=np.int64), np.diff(head.indptr))
            * head.n_labels + head.labels)


@pytest.mark.parametrize("winner", ["softmax", "squared_hinge"])
def test_auto_loss_trains_both_heads_and_keeps_the_better_on_held_out_rows(monkeypatch, winner):
    """fit trains a head per loss and keeps the one whose mix with the network ranks best."""
    from sksketch._slide import _inference, _trainer

    X, Y = make_extreme_classification(n_samples=10_000, n_features=500, n_labels=200,
                                       random_state=1)
    params = dict(hidden_layer_size=16, max_iter=3, random_state=0, n_jobs=2)
    chosen_on = []

    def mixed_hits(est, X_val, Y_val, heads, weights, per_row=False, net_cache=None):
        # a tie after the first epoch (both heads kept), the winner ahead after the second
        chosen_on.append([(head.loss, X_val.shape[0], head.step) for head in heads])
        if len(chosen_on) == 1:  # (the network alone as good: it trains on)
            hits = np.full((len(heads), len(weights), 2), X_val.shape[0], dtype=np.int64)
            return _ranked(hits, X_val.shape[0], per_row)
        hits = _inference.mixed_hits(est, X_val, Y_val, heads, weights)
        hits[[head.loss == winner for head in heads]] += 10**6
        return hits

    monkeypatch.setattr(_trainer, "mixed_hits", mixed_hits)
    monkeypatch.setattr(_trainer, "WITHIN_CHECKS", 1)
    # one head per loss (the damped softmax head is test_auto_loss_keeps_the_
    # better_of_the_damped_and_undamped_softmax_heads')
    monkeypatch.setattr(_trainer, "AUTO_HEADS", (LOSSES, (False, False)))
    auto = SLIDEClassifier(**params).fit(X, Y)
    # checked on the held-out tenth after the first epoch, where a tie is not
    # decisive, and before the held-out rows join training, where a lead is
    # (each head's watch may have stopped it after one epoch)
    per_epoch = -(-9000 // 128)
    assert len(chosen_on) == 2
    for check in chosen_on:
        assert sorted(c[:2] for c in check) == [("softmax", 1000), ("squared_hinge", 1000)]
    assert all(c[2] in (per_epoch, 2 * per_epoch) for c in chosen_on[1])
    assert auto.sparse_head_.loss == winner
    assert auto.t_ == 2 * 9000 + 10_000  # the held-out rows join the last epoch
    monkeypatch.undo()
    # the head kept is the one a fit with that loss trains (the network does
    # not see the heads, and the two share the hold-out and the weight grid),
    # when the network trains on in both (as the mocked ranking had it)
    monkeypatch.setattr(_trainer.SLIDETrainer, "_check_network", lambda self, *args: None)
    fixed = SLIDEClassifier(**params, sparse_head_loss=winner).fit(X, Y)
    assert fixed.sparse_head_.loss == winner
    np.testing.assert_array_equal(auto.sparse_head_.weights, fixed.sparse_head_.weights)
    np.testing.assert_array_equal(auto.decision_function(X[:300]),
                                  fixed.decision_function(X[:300]))


def test_auto_loss_is_the_softmax_head_without_rows_to_choose_on():
    X, Y = make_extreme_classification(n_samples=3000, n_features=300, n_labels=100,
                                       random_state=2)
    small = SLIDEClassifier(hidden_layer_size=16, max_iter=2, random_state=0).fit(
        X[:999], Y[:999])
    assert small.sparse_head_.loss == "softmax"
    assert small.t_ == 2 * 999  # nothing held out
    stream = SLIDEClassifier(hidden_layer_size=16, random_state=0).partial_fit(X, Y)
    assert stream.sparse_head_.loss == "softmax"
    hinge = SLIDEClassifier(hidden_layer_size=16, max_iter=2, random_state=0,
                            sparse_head_loss="squared_hinge").partial_fit(X, Y)
    assert hinge.sparse_head_.loss == "squared_hinge"
    # a model keeps its head's loss through later calls and round trips
    hinge.set_params(sparse_head_loss="softmax").partial_fit(X[:500], Y[:500])
    assert hinge.sparse_head_.loss == "squared_hinge"
    assert pickle.loads(pickle.dumps(hinge)).sparse_head_.loss == "squared_hinge"


def test_head_state_loads_without_a_loss_and_refuses_an_unknown_one():
    X, Y = make_extreme_classification(n_samples=300, n_features=200, n_labels=50,
                                       random_state=0)
    head = SLIDEClassifier(hidden_layer_size=8, max_iter=1, random_state=0).fit(
        X, Y).sparse_head_
    state = head.__getstate__()
    del state["loss"]  # a head saved before the loss was a choice
    old = SparseLabelHead.__new__(SparseLabelHead)
    old.__setstate__(state)
    assert old.loss == "softmax"
    state = dict(head.__getstate__(), loss="hinge")
    with pytest.raises(StateError, match="loss must be one of"):
        SparseLabelHead.__new__(SparseLabelHead).__setstate__(state)
    with pytest.raises(ValueError, match="sparse_head_loss"):
        SLIDEClassifier(sparse_head_loss="hinge").fit(X, Y)


def test_auto_loss_drops_a_head_that_trails_far_behind_after_an_epoch(monkeypatch):
    from sksketch._slide import _trainer

    X, Y = make_extreme_classification(n_samples=10_000, n_features=500, n_labels=200,
                                       random_state=1)
    checks = []

    def mixed_hits(est, X_val, Y_val, heads, weights, per_row=False, net_cache=None):
        checks.append([head.loss for head in heads])
        # 60% against 40% of 1000 rows: z about 9
        return np.array([[[600, 1200] if head.loss == "squared_hinge" else [400, 800]]
                         for head in heads])

    monkeypatch.setattr(_trainer, "mixed_hits", mixed_hits)
    clf = SLIDEClassifier(hidden_layer_size=16, max_iter=4, random_state=0, n_jobs=2,
                          sparse_head_weight=1.0).fit(X, Y)
    # decided after the first epoch (both softmax heads, damped or not, trail)
    assert checks == [["softmax", "softmax", "squared_hinge"]]
    assert clf.sparse_head_.loss == "squared_hinge"
    per_epoch = -(-9000 // 128)
    assert clf.sparse_head_.step >= 2 * per_epoch  # the kept head trained on


def test_a_head_is_sparse_by_how_much_of_its_grid_its_pairs_fill(monkeypatch):
    # The margins follow the fill alone: a grid past the dense kernel path's
    # size cap is still dense if its pairs fill it.
    from sksketch._slide import _sparse_head as module

    X, Y = _problem()
    w = np.ones(X.shape[0], np.float32)
    head, = SparseLabelHead.from_data(X, Y, w, 1000, ("squared_hinge",))
    fill = head.n_pairs / (head.n_features * head.n_labels)
    assert module.fills_grid(head.n_pairs, head.n_features, head.n_labels)
    assert not head.sparse
    monkeypatch.setattr(module, "DENSE_MAX_ENTRIES", 10)
    assert not module.fills_grid(head.n_pairs, head.n_features, head.n_labels)
    assert not SparseLabelHead.from_data(X, Y, w, 1000, ("squared_hinge",))[0].sparse
    monkeypatch.setattr(module, "DENSE_MIN_FILL", fill * 1.01)
    assert SparseLabelHead.from_data(X, Y, w, 1000, ("squared_hinge",))[0].sparse


@pytest.mark.parametrize("paired", [True, False])
def test_auto_loss_drops_a_close_head_by_a_paired_test_on_the_same_rows(paired):
    # The generated 50K shape after its first epoch: the softmax head mixed
    # with the network ranks 1,316 of 1,342 held-out rows first, the squared
    # hinge 1,290. As two proportions that is z = 3.0, not above DROP_Z; on
    # the same rows the two disagree on 34, 30 to 4 for the softmax head
    # (z = 4.5), and the hinge goes.
    from sksketch._slide._trainer import DROP_Z, SLIDETrainer

    n, n_weights = 1342, 3
    soft = np.zeros(n, bool)
    soft[:1316] = True
    hinge = np.zeros(n, bool)
    hinge[:1286] = True  # wrong on 30 rows the softmax head gets right
    hinge[1316:1320] = True  # and right on 4 it gets wrong
    rows = np.zeros((2, n, n_weights), bool)
    rows[0, :, 1], rows[1, :, 2] = soft, hinge  # each at its best weight
    all_hits = rows.sum(axis=1)[..., None].repeat(2, axis=2)
    heads = [SimpleNamespace(loss="softmax", damped=False),
             SimpleNamespace(loss="squared_hinge", damped=False)]
    trainer = SLIDETrainer.__new__(SLIDETrainer)
    trainer.est = SimpleNamespace(sparse_head_=heads[1], sparse_head_weight="auto",
                                  classes_=np.arange(50_000))
    trainer.heads, trainer.head_scratch, trainer.watches = list(heads), None, {}
    X_val = sp.csr_matrix((n, 4), dtype=np.float32)
    Y_val = sp.csr_matrix(np.ones((n, 1), np.float32))
    p = all_hits[:, :, 0].max(axis=1) / n
    z_unpaired = (p[0] - p[1]) / np.sqrt((p[0] * (1 - p[0]) + p[1] * (1 - p[1])) / n)
    assert z_unpaired < DROP_Z < 26 / np.sqrt(34)
    chosen = trainer._choose_loss(X_val, Y_val, final=False, all_hits=all_hits,
                                  rows=rows if paired else None)
    assert chosen is False  # not the final choice
    assert [h.loss for h in trainer.heads] == (
        ["softmax"] if paired else ["softmax", "squared_hinge"])
    if paired:  # the head kept is the model's
        assert trainer.est.sparse_head_ is heads[0]


@pytest.mark.parametrize("damped_hits", [700, 800, 900])
def test_auto_loss_keeps_the_better_of_the_damped_and_undamped_softmax_heads(
        monkeypatch, damped_hits):
    """Both softmax heads train until DAMPING_EPOCHS; the better one alone held out stays."""
    from sksketch._slide import _trainer

    X, Y = make_extreme_classification(n_samples=10_000, n_features=500, n_labels=200,
                                       random_state=1)
    checks, watched = [], []

    def mixed_hits(est, X_val, Y_val, heads, weights, per_row=False, net_cache=None):
        checks.append([(head.loss, head.damped) for head in heads])
        # the squared hinge far behind after the first epoch (dropped), the
        # softmax heads level: the mix does not tell them apart
        hits = np.array([[[200, 400] if head.loss == "squared_hinge" else [800, 900]]
                         for head in heads])
        return _ranked(hits, X_val.shape[0], per_row)

    def head_hits(est, X_val, Y_val, head):
        # alone, the undamped head ranks 800 of the 1000 held-out rows first
        watched.append((head.loss, head.damped))
        n = damped_hits if head.damped else 800
        return np.arange(X_val.shape[0]) < (n if head.loss == "softmax" else 100)

    monkeypatch.setattr(_trainer, "mixed_hits", mixed_hits)
    monkeypatch.setattr(_trainer, "head_hits", head_hits)
    monkeypatch.setattr(_trainer, "WITHIN_CHECKS", 1)
    clf = SLIDEClassifier(hidden_layer_size=16, max_iter=4, random_state=0, n_jobs=2,
                          sparse_head_weight=1.0).fit(X, Y)
    # the mixes ranked after the first epoch only: the three candidates (one
    # head is left for the last epoch without the held-out rows)
    assert checks == [[("softmax", False), ("softmax", True), ("squared_hinge", False)]]
    assert watched.count(("squared_hinge", False)) == 2
    # each head watched before training and after each epoch it trained in,
    # the damped one no more after the second epoch if it lost (a tie keeps
    # the undamped head)
    assert watched.count(("softmax", True)) == (4 if damped_hits > 800 else 3)
    assert watched.count(("softmax", False)) == (3 if damped_hits > 800 else 4)
    assert clf.sparse_head_.loss == "softmax"
    assert clf.sparse_head_.damped == (damped_hits > 800)
    per_epoch = -(-9000 // 128)
    assert clf.sparse_head_.step == 3 * per_epoch + -(-10_000 // 128)


def test_damped_head_takes_adam_steps_with_its_own_epsilon():
    X, Y = _problem()
    head, = SparseLabelHead.from_data(X, Y, np.ones(X.shape[0], np.float32), 1000,
                                      ("softmax",), (True,))
    ref, = SparseLabelHead.from_data(X, Y, np.ones(X.shape[0], np.float32), 1000)
    assert head.damped and not ref.damped
    rows = np.arange(16, dtype=np.int64)
    weights = np.ones(16, np.float32)
    expected, _, _ = _reference_step(ref, X, Y, rows, weights, eps=DAMPED_EPSILON / 16)
    head.train_batch(X, Y, rows, weights, head.scratch(), 0.9, 0.999, 1e-8)
    np.testing.assert_allclose(_dense(head), expected, rtol=1e-4, atol=1e-5)
    # (the damping is visible: with epsilon 1e-8 the step differs)
    ref, = SparseLabelHead.from_data(X, Y, np.ones(X.shape[0], np.float32), 1000)
    plain, _, _ = _reference_step(ref, X, Y, rows, weights)
    assert not np.allclose(plain, expected, rtol=1e-4, atol=1e-5)
    # and it is part of the head's state
    copy = pickle.loads(pickle.dumps(head))
    assert copy.damped
    state = head.__getstate__()
    del state["damped"]  # a head saved before there were damped heads
    old = SparseLabelHead.__new__(SparseLabelHead)
    old.__setstate__(state)
    assert old.damped is False


@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("k", [1, 3, 5])
# the share of labels the head reaches: the kernel ranks those at every
# weight and the others by the network alone
@pytest.mark.parametrize("reached", [0.0, 0.1, 0.995, 1.0])
def test_mixed_top_is_a_stable_sort_of_each_mix(n_threads, k, reached):
    from sksketch._kernels import _sparse_head

    rng = np.random.default_rng(0)
    net = rng.standard_normal((120, 333)).astype(np.float32)
    head = np.where(rng.random(net.shape) < reached, rng.standard_normal(net.shape), 0)
    head = head.astype(np.float32)
    # rounded scores: ties among reached and unreached labels alike
    net[10:20] = np.round(net[10:20])
    head[10:20] = np.round(head[10:20])
    net[5], head[5] = 0, 0  # all tied: the first labels
    net[6, [3, 9]] = 50  # a tie between two labels
    net[7, [4, 8, 100, 200, 300]], head[7] = 7, 0  # ties past the first k labels
    weights = np.array([0, 0.125, 1, 64], dtype=np.float32)
    top = np.empty((120, 4, k), dtype=np.int32)
    best = np.empty(top.shape, dtype=np.float32)
    _sparse_head.mixed_top(net, head, weights, top, best, n_threads)
    mixes = [net + w * head for w in weights]
    expected = np.stack([np.argsort(-m, axis=1, kind="stable")[:, :k] for m in mixes], axis=1)
    np.testing.assert_array_equal(top, expected)
    values = [np.take_along_axis(m, expected[:, g], 1) for g, m in enumerate(mixes)]
    np.testing.assert_array_equal(best, np.stack(values, axis=1))
    assert top[5, :, 0].tolist() == [0, 0, 0, 0] and top[6, 0, 0] == 3
    assert top[7, 0].tolist() == [4, 8, 100, 200, 300][:k]
    # NaN scores never make an id that is not a label
    net[8] = np.nan
    _sparse_head.mixed_top(net, head, weights, top, best, n_threads)
    assert ((top >= 0) & (top < 333)).all()


def test_head_weight_is_chosen_by_p_at_1_plus_p_at_3_ties_to_the_smaller():
    from sksketch._slide._inference import HEAD_WEIGHTS, best_head_weight

    hits = np.zeros((len(HEAD_WEIGHTS), 2), dtype=np.int64)
    hits[:] = [100, 150]  # rows right at 1, labels right in the top 3
    assert best_head_weight(hits) == HEAD_WEIGHTS[0]  # all tied
    hits[3] = [101, 151]  # one more row right at 1 ...
    hits[5] = [100, 160]  # ... loses to ten more labels found in the top 3
    assert best_head_weight(hits) == HEAD_WEIGHTS[5]
    hits[4] = [104, 150]  # (104 + 150 / 3) > (100 + 160 / 3)
    assert best_head_weight(hits) == HEAD_WEIGHTS[4]
    hits[6] = hits[4]
    assert best_head_weight(hits) == HEAD_WEIGHTS[4]


def test_auto_loss_ranks_held_out_rows_after_the_first_epoch_and_before_the_merge(monkeypatch):
    """Two rankings per fit (each scores every label of the held-out rows), ties to softmax."""
    from sksketch._slide import _trainer

    X, Y = make_extreme_classification(n_samples=3000, n_features=300, n_labels=100,
                                       random_state=2)
    epochs = []

    def mixed_hits(est, X_val, Y_val, heads, weights, per_row=False, net_cache=None):
        epochs.append(est.n_iter_)
        hits = np.full((len(heads), len(weights), 2), X_val.shape[0], dtype=np.int64)
        return _ranked(hits, X_val.shape[0], per_row)

    monkeypatch.setattr(_trainer, "mixed_hits", mixed_hits)
    clf = SLIDEClassifier(hidden_layer_size=16, max_iter=5, random_state=0).fit(X, Y)
    assert epochs == [0, 3]  # during epochs 1 and 4 (n_iter_ counts finished epochs)
    assert clf.sparse_head_.loss == "softmax"
    assert clf.sparse_head_weight_ == 0.0  # the tied grid's first weight


def test_fit_ends_once_neither_the_network_nor_a_head_has_anything_to_add():
    """A head that ranks alone as well as any mix, and a network far behind it: one epoch."""
    X, Y = make_extreme_classification(n_samples=1200, n_features=3000, n_labels=800,
                                       random_state=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        clf = SLIDEClassifier(hidden_layer_size=64, max_iter=4, random_state=0,
                              n_jobs=1).fit(X, Y)
    assert clf.n_iter_ == 1 and len(clf.loss_curve_) == 1
    assert not [w for w in caught if "maximum iterations" in str(w.message)]
    # the weight comes from the ranking after that epoch (the largest of the grid
    # that ties the head alone)
    assert clf.sparse_head_weight_ > 1


@pytest.mark.parametrize("within, frozen", [(0.55, True), (0.595, False)])
def test_head_stops_within_the_first_epoch_only_when_clearly_worse(monkeypatch, within, frozen):
    """A quarter into the first epoch, a head 50 rows worse than its start stops; 5 is noise."""
    from sksketch._slide import _trainer

    X, Y = make_extreme_classification(n_samples=10_000, n_features=500, n_labels=200,
                                       random_state=1)
    n_val, calls, seen = 1000, [], []

    def head_hits(est, X_val, Y_val, head):
        # the start, then the checks a quarter, a half and three quarters into
        # the first epoch, then its end
        calls.append(head.step)
        seen.append((head.weights.copy(), _pair_keys(head)))
        return _rows([0.6, within, 0.6, 0.6, 0.6][len(calls) - 1], n_val)

    monkeypatch.setattr(_trainer, "head_hits", head_hits)
    monkeypatch.setattr(_trainer, "validation_rows", lambda est, X, Y: (X[:n_val], Y[:n_val]))
    monkeypatch.setattr(_trainer, "NETWORK_Z", -np.inf)  # the network trains on
    clf = SLIDEClassifier(hidden_layer_size=16, max_iter=2, random_state=0, n_jobs=1,
                          sparse_head_loss="softmax").fit(X, Y)
    per_epoch = -(-9000 // 128)
    quarter = -(-2250 // 128)  # the first batch that ends at or past 2,250 rows
    assert calls[:2] == [0, quarter]
    if frozen:
        # stopped at the quarter, its start weights back (on the pairs it
        # had: the held-out rows' join at their start); not checked again
        assert len(calls) == 2
        weights, keys = seen[0]
        np.testing.assert_array_equal(
            clf.sparse_head_.weights[np.isin(_pair_keys(clf.sparse_head_), keys)], weights)
    else:
        assert len(calls) == 5 and calls[-1] == per_epoch
    assert clf.n_iter_ == 2


def test_network_check_is_a_paired_comparison_with_the_head_alone():
    """The network stops after its first epoch when weak alone and its mix is no clear gain."""
    from sksketch._slide import _trainer
    from sksketch._slide._inference import HEAD_WEIGHTS

    n, best_w = 1000, 5

    def stopped(gained, lost, net_alone):
        alone = np.zeros(n, dtype=bool)
        alone[:500] = True  # the head alone (its watch's best): 500 rows
        trainer = _trainer.SLIDETrainer.__new__(_trainer.SLIDETrainer)
        trainer.heads = [object()]
        trainer.watches = {id(trainer.heads[0]): SimpleNamespace(best_rows=alone)}
        trainer.network_stopped = False
        mix = alone.copy()
        mix[500 : 500 + gained] = True
        mix[:lost] = False
        mixed = np.repeat(mix[:, None], len(HEAD_WEIGHTS), axis=1)[None]
        mixed[0, :, :best_w] = False  # the mix's best weight is HEAD_WEIGHTS[best_w]
        mixed[0, :net_alone, 0] = True  # the network alone (weight 0)
        hits = mixed.sum(axis=1)
        trainer._check_network(hits, mixed)
        return trainer.network_stopped

    assert stopped(0, 0, 300)
    assert stopped(10, 5, 300)  # z = 1.3
    assert stopped(14, 6, 300)  # z = 1.8
    assert not stopped(20, 8, 300)  # z = 2.3: the mix adds, the network trains on
    assert not stopped(30, 5, 300)  # z = 4.2
    assert not stopped(0, 0, 480)  # the network alone within noise of the head


@pytest.mark.parametrize("network_adds", [False, True])
def test_network_stops_training_when_no_mix_beats_the_head_alone(monkeypatch, network_adds):
    from sksketch._slide import _trainer

    X, Y = make_extreme_classification(n_samples=10_000, n_features=500, n_labels=200,
                                       random_state=1)
    n_val = 1000
    scores = iter([0.5, 0.6, 0.7, 0.8])  # the head improves: it never freezes

    def head_hits(est, X_val, Y_val, head):
        return _rows(next(scores), n_val)

    def mixed_hits(est, X_val, Y_val, heads, weights, per_row=False, net_cache=None):
        # the network alone 20% (weight 0); with the head, as good as the head
        # alone (600 of 1000 after the first epoch), or 50 rows better (a
        # paired z of 7)
        hits = np.full((len(heads), len(weights), 2), 600 + 50 * network_adds)
        hits[:, 0] = 200
        return _ranked(hits, n_val, per_row)  # (the head alone: head_hits' 600 rows)

    monkeypatch.setattr(_trainer, "head_hits", head_hits)
    monkeypatch.setattr(_trainer, "mixed_hits", mixed_hits)
    monkeypatch.setattr(_trainer, "WITHIN_CHECKS", 1)
    monkeypatch.setattr(_trainer, "validation_rows", lambda est, X, Y: (X[:n_val], Y[:n_val]))
    params = dict(hidden_layer_size=16, random_state=0, n_jobs=1, sparse_head_loss="softmax")
    one = SLIDEClassifier(max_iter=1, **params).fit(X, Y)
    scores = iter([0.5, 0.6, 0.7, 0.8])
    clf = SLIDEClassifier(max_iter=3, **params).fit(X, Y)
    assert clf.n_iter_ == 3
    per_epoch = -(-9000 // 128)
    assert clf.sparse_head_.step == 2 * per_epoch + -(-10_000 // 128)  # merged last epoch
    same = [np.array_equal(getattr(clf, a), getattr(one, a))
            for a in ("input_weights_", "output_weights_", "output_bias_")]
    assert same == [not network_adds] * 3
    # the network's Adam steps: the first epoch's, or all three
    assert clf._step == (2 * per_epoch + -(-10_000 // 128) if network_adds else per_epoch)


@pytest.mark.parametrize("sparse_head", [True, False])
def test_top_k_by_bounds_is_the_top_k_of_every_label(monkeypatch, sparse_head):
    """predict_topk and predict on many labels score few of them, with the same output."""
    from sksketch._slide import _inference

    X, Y = make_extreme_classification(n_samples=4000, n_features=2000, n_labels=5000,
                                       random_state=3)
    clf = SLIDEClassifier(hidden_layer_size=32, max_iter=2, random_state=0, n_jobs=2,
                          sparse_head=sparse_head).fit(X[:3000], Y[:3000])
    Xc = clf._validate_X(X[3000:], reset=False)  # the rows the model reads
    calls = []
    real = _inference.bounded_rows

    def bounded_rows(*args):
        out = real(*args)
        calls.append((args[5].shape[0], out[2].size))
        return out

    monkeypatch.setattr(_inference, "bounded_rows", bounded_rows)
    monkeypatch.setattr(_inference, "BOUNDED_BLOCK", 256)
    for k in (1, 5):
        full_ids, full = _inference._full_topk(clf, _inference.hidden(clf, Xc), Xc, k, 2)
        ids, scores = clf.predict_topk(X[3000:], k=k)
        np.testing.assert_array_equal(ids, clf.classes_[full_ids])
        np.testing.assert_array_equal(scores.astype(np.float32).view(np.int32),
                                      full.view(np.int32))
    if sparse_head:  # the head's labels hold every row's top labels: blocks of
        # 32 rows (the model's first), then of 256
        assert [rows for rows, _ in calls] == [32, 256, 256, 256, 200, 256, 256, 256, 232]
        assert sum(left for _, left in calls) < 100
    else:  # without it the bounds pay for no row: the first call gives up after
        # its first 32 rows, and the next scores every label without trying
        assert calls == [(32, 32)]
    # training moves the weights: the bounds follow
    clf.partial_fit(X[:500], Y[:500])
    full_ids, _ = _inference._full_topk(clf, _inference.hidden(clf, Xc), Xc, 1, 2)
    np.testing.assert_array_equal(clf.predict_topk(X[3000:], k=1)[0], clf.classes_[full_ids])
    one = clf.predict_topk(X[3000:3001], k=3)[0]
    np.testing.assert_array_equal(one, clf.predict_topk(X[3000:3010], k=3)[0][:1])


@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("cap", [1, 3, 5, 1000])  # pair counts per feature around the unroll of 4
def test_add_scores_adds_each_rows_head_scores(n_threads, cap):
    X, Y = make_extreme_classification(n_samples=300, n_features=200, n_labels=70,
                                       random_state=6)
    X, Y = sp.csr_matrix(X, dtype=np.float32), sp.csr_matrix(Y, dtype=np.float32)
    head, = SparseLabelHead.from_data(X, Y, np.ones(X.shape[0], np.float32), cap)
    head.weights[:] = np.random.default_rng(0).standard_normal(head.n_pairs)
    start = np.random.default_rng(1).standard_normal((X.shape[0], 70)).astype(np.float32)
    scores = start.copy()
    head.add_scores(scores, X, 0.5, n_threads)
    expected = start + 0.5 * (normalize(X).toarray() @ _dense(head))
    np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("n_threads", [1, 2])
def test_dense_scoring_adds_the_same_bits_as_pair_by_pair(monkeypatch, n_threads):
    """A head dense enough scores many rows from a dense copy, to the same bits."""
    from sksketch._kernels import _sparse_head as kernels
    from sksketch._slide import _sparse_head as module

    X, Y = make_extreme_classification(n_samples=600, n_features=60, n_labels=40,
                                       random_state=7)
    X, Y = sp.csr_matrix(X, dtype=np.float32), sp.csr_matrix(Y, dtype=np.float32)
    head, = SparseLabelHead.from_data(X, Y, np.ones(X.shape[0], np.float32), 1000)
    head.weights[:] = np.random.default_rng(0).standard_normal(head.n_pairs)
    assert head.n_pairs >= module.DENSE_MIN_FILL * 60 * 40
    start = np.random.default_rng(1).standard_normal((600, 40)).astype(np.float32)
    pairwise = start.copy()
    kernels.add_scores(pairwise, X.indptr, X.indices, X.data, head.indptr, head.labels,
                       head.weights, 0.75, n_threads)
    calls = []
    real = kernels.add_scores_dense
    monkeypatch.setattr(kernels, "add_scores_dense",
                        lambda *args: calls.append(1) or real(*args))
    dense = start.copy()
    head.add_scores(dense, X, 0.75, n_threads)
    assert calls == [1]
    np.testing.assert_array_equal(dense.view(np.int32), pairwise.view(np.int32))
    # the copy's rows padded with zeros to whole cache lines, on them; the
    # grid without padding gives the same bits
    kept = module._DENSE[head][2]
    assert kept.shape == (60, 48) and kept.ctypes.data % 64 == 0 and not kept[:, 40:].any()
    unpadded = start.copy()
    real(unpadded, X.indptr, X.indices, X.data, head._on_grid(head.weights, np.float32), 0.75,
         n_threads)
    np.testing.assert_array_equal(unpadded.view(np.int32), pairwise.view(np.int32))
    with pytest.raises(ValueError, match="fewer than the 40 labels"):
        real(unpadded, X.indptr, X.indices, X.data, kept[:, :39].copy(), 0.75, n_threads)
    # few rows, or a sparse head: pair by pair
    head.add_scores(start[:10], X[:10], 0.75, n_threads)
    monkeypatch.setattr(module, "DENSE_MIN_FILL", 1.01)
    head.add_scores(start, X, 0.75, n_threads)
    assert calls == [1]


def _dense_top1_hits(head, X, Y):
    # the reference: numpy's argmax of each row's dense head scores
    scores = np.zeros((X.shape[0], head.n_labels), dtype=np.float32)
    head.add_scores(scores, X, 1.0, 1)
    top = np.argmax(scores, axis=1)
    return np.asarray(Y[np.arange(X.shape[0]), top]).ravel() != 0


@pytest.mark.parametrize("n_threads", [1, 2, 3])
@pytest.mark.parametrize("case", ["trained", "negative", "ties", "all_reached", "nan"])
def test_top1_hits_is_the_argmax_of_the_dense_scores(n_threads, case):
    from sksketch._kernels import _sparse_head

    X, Y = _problem(n=300, d=40, L=30, seed=3)
    X, Y = canonical_rows(X), sp.csr_matrix(Y, dtype=np.float32)
    labeled = np.flatnonzero(np.diff(Y.indptr) > 0)
    X, Y = X[labeled], Y[labeled]
    if case == "all_reached":  # a feature every row has, paired with every label
        X = sp.hstack([sp.csr_matrix(np.ones((X.shape[0], 1), np.float32)), X], format="csr")
        X = canonical_rows(X)
    Y.indptr, Y.indices = Y.indptr.astype(np.int32), Y.indices.astype(np.int32)
    cap = 30 if case == "all_reached" else 5
    head, = SparseLabelHead.from_data(X, Y, np.ones(X.shape[0], np.float32), cap)
    rng = np.random.default_rng(0)
    if case in ("trained", "all_reached"):
        head.weights[:] = rng.standard_normal(head.n_pairs)
    elif case == "negative":  # every reached label below the unreached ones' 0
        head.weights[:] = -rng.random(head.n_pairs) - 0.1
    elif case == "ties":  # equal scores: the lowest label id wins
        head.weights[:] = np.round(rng.standard_normal(head.n_pairs))
        X.data[:] = 1.0
    else:
        head.weights[:] = rng.standard_normal(head.n_pairs)
        head.weights[::7] = np.nan
    if case == "all_reached":
        assert _mask(head)[0].all()
    L, T = head.n_labels, n_threads
    hits = np.zeros(X.shape[0], dtype=np.uint8)
    mark = np.zeros((T, L), dtype=np.int32)
    _sparse_head.top1_hits(X.indptr, X.indices, X.data, Y.indptr, Y.indices, head.indptr,
                           head.labels, head.weights, hits, np.empty((T, L), np.float32),
                           mark, np.empty((T, L), np.int32), n_threads)
    np.testing.assert_array_equal(hits.astype(bool), _dense_top1_hits(head, X, Y))
    assert not mark.any()  # the marks are left as zeros
    assert 0 < hits.sum() < hits.size


@pytest.mark.parametrize("case", ["trained", "ties", "nan"])
def test_head_hits_from_dense_scores_are_the_pairwise_ones(monkeypatch, case):
    # A head that fills its grid is ranked from its dense scores, a chunk of
    # rows at a time; the hits are those of top1_hits, pair by pair.
    from sksketch._slide import _inference
    from sksketch._slide import _sparse_head as module

    X, Y = _problem(n=900, d=40, L=30, seed=5)
    X, Y = canonical_rows(X), sp.csr_matrix(Y, dtype=np.float32)
    Y.indptr, Y.indices = Y.indptr.astype(np.int32), Y.indices.astype(np.int32)
    head, = SparseLabelHead.from_data(X, Y, np.ones(X.shape[0], np.float32), 30)
    rng = np.random.default_rng(1)
    head.weights[:] = rng.standard_normal(head.n_pairs)
    if case == "ties":
        head.weights[:] = np.round(head.weights)
        X.data[:] = 1.0
    elif case == "nan":
        head.weights[::7] = np.nan
    est = SimpleNamespace(classes_=np.arange(30), sparse_head_=head, n_jobs=2)
    monkeypatch.setattr(_inference, "ranked_rows", lambda n: 10_000)
    # chunks of 300 rows, the last of 250 (below DENSE_MIN_ROWS: pair by pair)
    monkeypatch.setattr(_inference, "_chunks", lambda est, X, Y: (
        (X[s:s + 300], Y[s:s + 300]) for s in range(0, X.shape[0], 300)))
    assert head.scores_densely(X.shape[0])
    dense = _inference.head_hits(est, X, Y)
    monkeypatch.setattr(module, "DENSE_MIN_FILL", 1.01)
    assert not head.scores_densely(X.shape[0])
    pairwise = _inference.head_hits(est, X, Y)
    assert dense.dtype == bool and dense.shape == (np.count_nonzero(np.diff(Y.indptr)),)
    np.testing.assert_array_equal(dense, pairwise)
    assert 0 < dense.sum() < dense.size


@pytest.mark.parametrize("n_labels", [3, 40, 700])
def test_kept_network_logits_rank_as_every_label_does(monkeypatch, n_labels):
    """mixed_hits on kept logits (the network no longer training) gives the same hits."""
    from sksketch._slide import _inference

    X, Y = make_extreme_classification(n_samples=900, n_features=200, n_labels=n_labels,
                                       random_state=4)
    clf = SLIDEClassifier(hidden_layer_size=16, max_iter=2, random_state=0).fit(X, Y)
    Xc, Yc = canonical_rows(X[:600]), sp.csr_matrix(Y[:600], dtype=np.float32)
    Yc.indptr, Yc.indices = Yc.indptr.astype(np.int32), Yc.indices.astype(np.int32)
    monkeypatch.setattr(_inference, "ranked_rows", lambda n: 500)
    monkeypatch.setattr(_inference, "_chunks", lambda est, X, Y: (
        (X[s:s + 64], Y[s:s + 64]) for s in range(0, X.shape[0], 64)))
    heads = SparseLabelHead.from_data(Xc, Yc, np.ones(600, np.float32), 4,
                                      ("softmax", "squared_hinge"), (False, False))
    rng = np.random.default_rng(0)
    for head in heads:
        head.weights[:] = rng.standard_normal(head.n_pairs)
    # rounded logits: ties among the labels the heads do not reach
    clf.output_weights_[:] = np.round(clf.output_weights_)
    weights = (0.0, 0.5, 4.0)
    cache = {}
    want, want_rows = _inference.mixed_hits(clf, Xc, Yc, heads, weights, per_row=True,
                                            net_cache=cache)
    assert "chunks" in cache and len(cache["chunks"]) == 8
    if n_labels == 700:  # a few of the labels each row does not reach are kept
        assert cache["entries"] < 500 * n_labels // 2
    for head in heads:  # the heads train on; the network does not
        head.weights[:] = rng.standard_normal(head.n_pairs)
    want, want_rows = _inference.mixed_hits(clf, Xc, Yc, heads, weights, per_row=True)
    monkeypatch.setattr(_inference, "full_scores", None)  # never called
    got, got_rows = _inference.mixed_hits(clf, Xc, Yc, heads, weights, per_row=True,
                                          net_cache=cache)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(got_rows, want_rows)


def test_kept_network_logits_stop_past_their_budget(monkeypatch):
    from sksketch._slide import _inference

    X, Y = make_extreme_classification(n_samples=400, n_features=100, n_labels=50,
                                       random_state=1)
    clf = SLIDEClassifier(hidden_layer_size=8, max_iter=1, random_state=0).fit(X, Y)
    Xc, Yc = canonical_rows(X), sp.csr_matrix(Y, dtype=np.float32)
    Yc.indptr, Yc.indices = Yc.indptr.astype(np.int32), Yc.indices.astype(np.int32)
    monkeypatch.setattr(_inference, "NET_CACHE_ENTRIES", 100)
    cache = {}
    want = _inference.mixed_hits(clf, Xc, Yc, [clf.sparse_head_], (0.0, 1.0), net_cache=cache)
    assert cache == {"skip": True}
    got = _inference.mixed_hits(clf, Xc, Yc, [clf.sparse_head_], (0.0, 1.0), net_cache=cache)
    np.testing.assert_array_equal(got, want)  # scored in full again


def test_the_kept_dense_copy_follows_the_weights():
    """Scoring from the kept dense copy tracks training steps and new weight arrays."""
    from sksketch._kernels import _sparse_head as kernels
    from sksketch._slide import _sparse_head as module

    X, Y = make_extreme_classification(n_samples=600, n_features=60, n_labels=40,
                                       random_state=7)
    X, Y = sp.csr_matrix(X, dtype=np.float32), sp.csr_matrix(Y, dtype=np.float32)
    head, = SparseLabelHead.from_data(X, Y, np.ones(X.shape[0], np.float32), 1000)
    assert module.fills_grid(head.n_pairs, 60, 40)

    def check():
        expected = np.zeros((600, 40), np.float32)
        kernels.add_scores(expected, X.indptr, X.indices, X.data, head.indptr, head.labels,
                           head.weights, 1.0, 1)
        got = np.zeros((600, 40), np.float32)
        head.add_scores(got, X, 1.0, 2)
        np.testing.assert_array_equal(got, expected)

    check()
    kept = module._DENSE[head][2]
    check()
    assert module._DENSE[head][2] is kept  # built once
    Y32 = sp.csr_matrix((Y.data, Y.indices.astype(np.int32), Y.indptr.astype(np.int32)),
                        shape=Y.shape)
    head.train_batch(X, Y32, np.arange(64, dtype=np.int64), np.ones(64, np.float32),
                     head.scratch(), 0.9, 0.999, 1e-8, 1)
    check()  # a step moved the weights
    head.weights = np.random.default_rng(0).standard_normal(head.n_pairs).astype(np.float32)
    check()  # new weights


@pytest.mark.parametrize("chunk", [1, 5, 1 << 22])
def test_column_normalisation_is_sklearns_row_normalisation_of_the_transpose(chunk):
    from sksketch._slide._sparse_head import _normalize_columns

    rng = np.random.default_rng(0)
    C = sp.random(300, 80, density=0.1, format="csr", random_state=1, dtype=np.float32)
    C.data = (C.data * rng.choice([1e-3, 1.0, 1e3], C.nnz)).astype(np.float32)
    C = sp.lil_matrix(C)
    C[:, 9] = 0  # an empty column
    C[:, 7] = 0
    C[0, 7] = C[5, 7] = 1e-30  # squares that vanish in float32: a column left as it is
    C = sp.csr_matrix(C, dtype=np.float32)
    C.eliminate_zeros()
    assert C[:, 7].nnz == 2 and C[:, 9].nnz == 0
    want = normalize(sp.csr_matrix(C.T)).T.tocsr()
    want.sort_indices()
    got = C.copy()
    _normalize_columns(got, chunk=chunk)
    got.sort_indices()
    np.testing.assert_array_equal(got.indptr, want.indptr)
    np.testing.assert_array_equal(got.indices, want.indices)
    assert got.data.dtype == np.float32
    np.testing.assert_array_equal(got.data, want.data)  # bit for bit


@pytest.mark.parametrize("loss", LOSSES)
def test_extend_in_runs_of_features_is_the_whole_key_match(monkeypatch, loss):
    """extend matches pairs a run of features at a time: a kept pair keeps its
    weight and moments, a new pair starts as from_data starts it."""
    from sksketch._slide import _sparse_head

    X, Y = _problem(n=200, d=40, L=30, seed=3)
    w = np.ones(X.shape[0])
    # built from the first half; the other half brings new pairs
    head = SparseLabelHead.from_data(X[:100], Y[:100], w[:100], 6, (loss,))[0]
    rng = np.random.default_rng(0)
    for name in ("weights", "m", "v"):
        getattr(head, name)[:] = rng.standard_normal(head.n_pairs).astype(np.float32)
    old = {(f, int(j)): (head.weights[k], head.m[k], head.v[k])
           for f in range(head.n_features)
           for k, j in zip(range(head.indptr[f], head.indptr[f + 1]),
                           head.labels[head.indptr[f]:head.indptr[f + 1]], strict=True)}
    fresh = SparseLabelHead.from_data(X, Y, w, 6, (loss,))[0]
    got = []
    for chunk in (1, 7, 1 << 20):
        monkeypatch.setattr(_sparse_head, "EXTEND_CHUNK", chunk)
        h = pickle.loads(pickle.dumps(head))
        h.extend(X, Y, w, 6)
        np.testing.assert_array_equal(h.indptr, fresh.indptr)
        np.testing.assert_array_equal(h.labels, fresh.labels)
        got.append((h.weights, h.m, h.v))
    for other in got[1:]:
        for a, b in zip(got[0], other, strict=True):
            np.testing.assert_array_equal(a, b)
    n_kept = 0
    weights, m, v = got[0]
    for f in range(fresh.n_features):
        for k in range(fresh.indptr[f], fresh.indptr[f + 1]):
            key = (f, int(fresh.labels[k]))
            if key in old:
                n_kept += 1
                assert (weights[k], m[k], v[k]) == old[key]
            else:
                assert (weights[k], m[k], v[k]) == (fresh.weights[k], 0.0, 0.0)
    assert 0 < n_kept < fresh.n_pairs


def test_candidate_heads_share_their_pairs_and_scratch(monkeypatch):
    """The candidate heads of sparse_head_loss="auto" share one pair list and,
    training one after the other, one scratch: the fit is the one with a
    scratch per head."""
    from sksketch._slide import _trainer

    # (a grid too large for the dense path's copies)
    X, Y = make_extreme_classification(n_samples=6000, n_features=20_000, n_labels=2000,
                                       random_state=2)
    params = dict(hidden_layer_size=16, max_iter=3, random_state=0, n_jobs=2)
    seen = []
    scratches = _trainer.SLIDETrainer._head_scratches

    def shared(self):
        out = scratches(self)
        seen.append((len(self.heads), len({id(sc) for sc in out}),
                     len({id(h.labels) for h in self.heads})))
        return out

    monkeypatch.setattr(_trainer.SLIDETrainer, "_head_scratches", shared)
    a = SLIDEClassifier(**params).fit(X, Y)
    assert seen[0] == (3, 1, 1)  # three candidates, one scratch, one pair list
    monkeypatch.setattr(_trainer.SLIDETrainer, "_head_scratches",
                        lambda self: [h.scratch() for h in self.heads])
    b = SLIDEClassifier(**params).fit(X, Y)
    assert a.sparse_head_.loss == b.sparse_head_.loss
    np.testing.assert_array_equal(a.sparse_head_.weights, b.sparse_head_.weights)
    np.testing.assert_array_equal(a.decision_function(X[:300]), b.decision_function(X[:300]))


def test_final_extension_runs_after_the_training_buffers_are_released(monkeypatch):
    """A fit whose held-out rows never join training gives the heads their
    pairs at its end, after the network's workspace and the watches' snapshots
    are gone (the new pairs' arrays are the Amazon-670K shape's highest
    point)."""
    from sksketch._slide import _trainer

    X, Y = make_extreme_classification(n_samples=3000, n_features=400, n_labels=300,
                                       random_state=1)
    calls = []
    extend = _trainer.SLIDETrainer._extend_heads

    def spy(self, X, Y, sample_weight, train_on=True):
        calls.append((train_on, self.workspace is None, len(self.watches)))
        return extend(self, X, Y, sample_weight, train_on)

    monkeypatch.setattr(_trainer.SLIDETrainer, "_extend_heads", spy)
    clf = SLIDEClassifier(hidden_layer_size=16, max_iter=1, random_state=0, n_jobs=1)
    clf.fit(X, Y)
    assert calls == [(False, True, 0)]
    assert clf.sparse_head_.n_pairs > 0


def _watched_heads(monkeypatch, *starts):
    """Stand-in heads at copies of ``starts``, their watches, and the held-out
    P@1 each one's check sees (``scores[id(head)]``, 1 to begin with)."""
    from sksketch._slide import _trainer

    scores = {}
    monkeypatch.setattr(_trainer, "head_hits",
                        lambda est, X, Y, head: np.full(10, scores[id(head)], dtype=bool))
    heads = [SimpleNamespace(weights=w.copy()) for w in starts]
    scores.update({id(h): 1 for h in heads})
    return scores, heads, [_trainer.HeadWatch(h) for h in heads]


def test_a_head_frozen_on_a_shared_snapshot_takes_it_without_a_copy(monkeypatch):
    """A head that falls while its snapshot is still shared gets that array back
    as its weights; the other watch, still sharing it, copies when it improves
    and never writes into it."""
    start = np.arange(6, dtype=np.float32)
    scores, (a, b), (wa, wb) = _watched_heads(monkeypatch, start, start)
    wa.check(None, None, None)
    wb.check(None, None, None, like=[wa])
    shared = wa.snapshot
    assert wb.snapshot is shared
    a.weights -= 3
    scores[id(a)] = 0
    wa.check(None, None, None)
    assert wa.frozen and a.weights is shared and wb.shared
    b.weights += 1
    wb.check(None, None, None)  # improves: a copy of its own
    assert wb.snapshot is not shared and not wb.shared
    b.weights += 1
    wb.check(None, None, None)  # improves again: written in place, into its copy
    np.testing.assert_array_equal(wb.snapshot, start + 2)
    np.testing.assert_array_equal(a.weights, start)
    b.weights += 1
    scores[id(b)] = 0
    wb.check(None, None, None)
    assert wb.frozen
    np.testing.assert_array_equal(b.weights, start + 2)
    np.testing.assert_array_equal(a.weights, start)


def test_watches_share_an_equal_snapshot_until_either_moves(monkeypatch):
    """Two heads starting at the same weights keep one snapshot of them; a head
    that improves takes its own copy, and a frozen head gets its best weights back."""
    start = np.arange(6, dtype=np.float32)
    scores, (a, b, z), (wa, wb, wz) = _watched_heads(monkeypatch, start, start,
                                                     np.zeros(6, np.float32))
    checked = []
    for w in (wa, wb, wz):
        w.check(None, None, None, like=checked)
        checked.append(w)
    assert wa.snapshot is wb.snapshot and wa.shared and wb.shared
    assert wz.snapshot is not wa.snapshot and not wz.shared  # other values
    np.testing.assert_array_equal(wz.snapshot, 0)
    # a improves: its own copy; b's snapshot still holds the start
    a.weights += 1
    wa.check(None, None, None)
    assert wa.snapshot is not wb.snapshot
    np.testing.assert_array_equal(wa.snapshot, start + 1)
    np.testing.assert_array_equal(wb.snapshot, start)
    # b falls: it gets the start back, an array of its own
    b.weights -= 5
    scores[id(b)] = 0
    wb.check(None, None, None)
    assert wb.frozen
    np.testing.assert_array_equal(b.weights, start)
    assert b.weights is not wa.snapshot
    # z improves from its zeros and then falls: its best weights come back
    z.weights += 2
    wz.check(None, None, None)
    z.weights += 1
    scores[id(z)] = 0
    wz.check(None, None, None)
    np.testing.assert_array_equal(z.weights, 2)


def test_network_watch_stops_a_network_that_falls_and_trails_the_heads(monkeypatch):
    """Within the first epoch the network stops only when clearly worse than at its best
    and clearly behind the best head alone; only its first checks rank."""
    from sksketch._slide import _trainer

    n = 1000
    ranked = []
    monkeypatch.setattr(_trainer, "network_hits", lambda est, X, Y, n_rows: ranked.pop(0))

    def rows(count, start=0, size=n):
        out = np.zeros(size, dtype=bool)
        out[start : start + count] = True
        return out

    def decisions(network, heads):
        ranked[:] = [rows(*r) for r in network]
        watch = _trainer.NetworkWatch(n)
        out = [watch.check(None, None, None, heads) for _ in network]
        assert not ranked
        return out

    head = [rows(600)]
    assert decisions([(300,), (280,)], head) == [False, True]  # 20 lost: z = 4.5
    assert decisions([(300,), (292,)], head) == [False, False]  # 8 lost: z = 2.8
    assert decisions([(300,), (350,)], head) == [False, False]  # it improves
    # as many rows, other ones: no fewer than at its best
    assert decisions([(300, 0), (300, 300)], head) == [False, False]
    # clearly worse, but within noise of the head: it may still add to a mix
    assert decisions([(400,), (350,)], [rows(380)]) == [False, False]
    # the best of the heads counts, on the network's rows (the first n of theirs);
    # a head without ranked rows yet is left out
    assert decisions([(300,), (280,)], [None, rows(290, size=3 * n), rows(600, size=2 * n)]) == [
        False, True]
    assert decisions([(300,), (280,)], [None, rows(300, size=3 * n)]) == [False, False]
    assert decisions([(300,), (280,)], [None]) == [False, False]
    # after NETWORK_CHECKS checks it ranks no more
    watch = _trainer.NetworkWatch(n)
    ranked[:] = [rows(300), rows(300)]
    assert [watch.check(None, None, None, head) for _ in range(4)] == [False] * 4
    assert not ranked


def test_network_stopped_within_the_first_epoch_leaves_the_heads_training(monkeypatch):
    from sksketch._slide import _trainer

    X, Y = make_extreme_classification(n_samples=10_000, n_features=500, n_labels=200,
                                       random_state=1)
    calls, sizes = [], []

    def check(self, est, X_val, Y_val, head_rows):
        calls.append(est._step)
        sizes.append(self.n_rows)
        assert len(head_rows) == 1 and head_rows[0].dtype == bool
        return len(calls) == 2  # stops halfway through the first epoch

    monkeypatch.setattr(_trainer.NetworkWatch, "check", check)
    # the head never stops within the epoch (its rows: those of its best)
    monkeypatch.setattr(_trainer.HeadWatch, "check_within", lambda self, *args: None)
    params = dict(hidden_layer_size=16, random_state=0, n_jobs=1, sparse_head_loss="softmax")
    clf = SLIDEClassifier(max_iter=1, **params).fit(X, Y)
    per_epoch = -(-9000 // 128)
    quarter, half = -(-2250 // 128), -(-4500 // 128)
    assert calls == [quarter, half]
    assert sizes[0] == _trainer.NETWORK_CHECK_MACS // (200 * 16)
    assert clf._step == half  # the network's last step: where it stopped
    assert clf.sparse_head_.step == per_epoch  # the head trained on every batch
    assert clf.t_ == 9000
    assert clf.mean_active_labels_ > 0 and np.isfinite(clf.mean_active_labels_)
    assert np.isfinite(clf.loss_curve_).all()
    assert clf.predict_topk(X[:5], k=3)[0].shape == (5, 3)

    # no check where the held-out rows the checks could rank are too few
    monkeypatch.setattr(_trainer, "NETWORK_CHECK_MACS", 200 * 16 * 249)
    calls.clear()
    clf = SLIDEClassifier(max_iter=1, **params).fit(X, Y)
    assert calls == [] and clf._step == per_epoch
