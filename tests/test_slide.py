"""SLIDEClassifier and its kernels."""

import os
import pickle
import subprocess
import sys
import warnings

import joblib
import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.base import clone
from sklearn.datasets import load_iris, make_multilabel_classification
from sklearn.exceptions import ConvergenceWarning
from sksketch._kernels._lsh import LSHTables
from test_lsh import _mix64

from sksketch import SLIDEClassifier
from sksketch._kernels import _network
from sksketch._slide._inference import example_losses


@pytest.fixture(autouse=True)
def _quiet_convergence():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        yield


def make_xc(n_samples=3000, n_features=3000, n_labels=2000, seed=0):
    """A small learnable extreme-classification problem (Zipf labels)."""
    rng = np.random.default_rng(seed)
    popularity = 1.0 / np.arange(1, n_labels + 1) ** 0.8
    popularity /= popularity.sum()
    signatures = rng.integers(0, n_features, size=(n_labels, 12))
    rows, cols, yrows, ycols = [], [], [], []
    for i in range(n_samples):
        labels = np.unique(rng.choice(n_labels, size=1 + rng.poisson(1.0), p=popularity))
        feats = np.unique(
            np.concatenate([signatures[labels].ravel(), rng.integers(0, n_features, 10)])
        )
        rows += [i] * len(feats)
        cols += feats.tolist()
        yrows += [i] * len(labels)
        ycols += labels.tolist()
    X = sp.csr_matrix(
        (rng.uniform(0.5, 1.5, len(rows)), (rows, cols)), shape=(n_samples, n_features)
    )
    X = sp.csr_matrix(X.multiply(1 / np.sqrt(X.multiply(X).sum(axis=1))))
    Y = sp.csr_matrix((np.ones(len(yrows)), (yrows, ycols)), shape=(n_samples, n_labels))
    return X.astype(np.float32), Y


def precision_at_1(labels, Y):
    Y = sp.csr_matrix(Y)
    return float(np.mean(np.asarray(Y[np.arange(Y.shape[0]), labels[:, 0]]).ravel() > 0))


# --------------------------------------------------------------------- kernels


def _batch_gradients_reference(X, Y, batch, w, W1, b1, W2, b2):
    """Full-softmax gradients of one batch in float64."""
    X = sp.csr_matrix(X)[batch].astype(np.float64)
    Y = sp.csr_matrix(Y)[batch].toarray()
    B = len(batch)
    h = np.maximum(X @ W1.astype(np.float64) + b1, 0)
    logits = h @ W2.T.astype(np.float64) + b2
    logits -= logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    p /= p.sum(axis=1, keepdims=True)
    n_true = Y.sum(axis=1, keepdims=True)
    has = n_true[:, 0] > 0
    t = np.divide(Y, n_true, out=np.zeros_like(Y), where=n_true > 0)
    g = (w[:, None] * (p - t) / B) * has[:, None]
    gh = (g @ W2.astype(np.float64)) * (h > 0)
    loss = np.where(has, -(t * np.log(p)).sum(axis=1), 0.0)
    return {
        "W_in": X.T @ gh, "b_in": gh.sum(axis=0), "W_out": g.T @ h,
        "b_out": g.sum(axis=0), "loss": loss,
    }


def _train_batch(tables, X, Y, batch, w, W1, b1, W2, b2, *, max_active, min_active,
                 n_threads=1, mode="uniform", correct=False, seed=7, W2_bf16=None,
                 label_cdf=None, cp_table=None, row_norms=None, input_dropout=0.0):
    """Run the kernel; return the input-layer gradients, the output layer's
    gradients added up from its per-example buffers, losses and active sizes."""
    B, H, L = len(batch), W1.shape[1], W2.shape[0]
    grads = {"W_in": np.zeros_like(W1), "b_in": np.zeros(H, np.float32)}
    touched_in = np.zeros(W1.shape[0], np.uint8)
    hb, ghb = np.empty((B, H), np.float32), np.empty((B, H), np.float32)
    ab, gb = np.empty((B, max_active), np.int32), np.empty((B, max_active), np.float32)
    losses, n_active = np.empty(B, np.float32), np.empty(B, np.int32)
    use_bf16 = W2_bf16 is not None
    _network.train_batch(
        tables, X.indptr, X.indices, X.data, Y.indptr, Y.indices, batch, w,
        W1, b1, W2, b2, W2_bf16 if use_bf16 else np.zeros((0, 0), np.uint16),
        grads["W_in"], grads["b_in"], touched_in, hb, ab, gb, ghb,
        np.zeros((n_threads, L), np.uint32), 0, max_active, min_active,
        _network.MODES.index(mode), use_bf16, 1.0 / B, seed, n_threads, losses, n_active, correct,
        np.zeros(0) if label_cdf is None else label_cdf,
        np.zeros(0, np.float32) if cp_table is None else cp_table,
        np.zeros(0, np.float32) if row_norms is None else row_norms,
        input_dropout,
    )
    grads["W_out"], grads["b_out"] = np.zeros((L, H)), np.zeros(L)
    for i in range(B):
        ids = ab[i, : n_active[i]]
        assert len(np.unique(ids)) == len(ids)
        grads["W_out"][ids] += gb[i, : n_active[i], None] * hb[i]
        grads["b_out"][ids] += gb[i, : n_active[i]]
    touched_out = np.zeros(L, bool)
    touched_out[np.concatenate([ab[i, : n_active[i]] for i in range(B)])] = True
    return grads, touched_in, touched_out, losses, n_active


@pytest.mark.parametrize("n_threads", [1, 2])
def test_train_batch_matches_full_softmax_reference(n_threads):
    rng = np.random.default_rng(0)
    n, d, L, H = 40, 30, 12, 16
    X = sp.random(n, d, density=0.2, random_state=0, format="csr", dtype=np.float32)
    Y = sp.random(n, L, density=0.15, random_state=1, format="csr")
    Y.data[:] = 1
    Y = Y.tolil()
    Y[3] = 0  # a row with no label: skipped
    Y = sp.csr_matrix(Y)
    Y.eliminate_zeros()
    X.indices, X.indptr = X.indices.astype(np.int32), X.indptr.astype(np.int32)
    Y.indices, Y.indptr = Y.indices.astype(np.int32), Y.indptr.astype(np.int32)
    W1 = rng.standard_normal((d, H)).astype(np.float32)
    b1 = rng.standard_normal(H).astype(np.float32) * 0.1
    W2 = rng.standard_normal((L, H)).astype(np.float32) * 0.3
    b2 = rng.standard_normal(L).astype(np.float32) * 0.1
    batch = np.array([0, 3, 5, 7, 11, 12, 20, 39], dtype=np.int64)
    w = rng.uniform(0.5, 2, len(batch)).astype(np.float32)
    grads, touched_in, touched_out, losses, n_active = _train_batch(
        LSHTables("dwta", H, 2, 2), X, Y, batch, w, W1, b1, W2, b2,
        max_active=L, min_active=L, n_threads=n_threads,
    )
    ref = _batch_gradients_reference(X, Y, batch, w, W1, b1, W2, b2)
    for name in ("W_in", "b_in", "W_out", "b_out"):
        np.testing.assert_allclose(grads[name], ref[name], rtol=1e-4, atol=1e-6, err_msg=name)
    np.testing.assert_allclose(losses, ref["loss"], rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(n_active, np.where(ref["loss"] > 0, L, 0))
    rows_used = X[batch[n_active > 0]]
    np.testing.assert_array_equal(touched_in > 0, np.asarray(rows_used.sum(axis=0)).ravel() > 0)
    assert touched_out.all()


def _kept_entries(n_entries, seed, rate):
    """The input-dropout mask of train_batch, entry by entry (CSR position)."""
    mask = 2**64 - 1
    drop_seed = _mix64((seed ^ 0xA0761D6478BD642F) & mask)
    below = int(rate * 2**32)
    return np.array([
        (_mix64(drop_seed ^ ((j * 0xD1B54A32D192ED03) & mask)) >> 32) >= below
        for j in range(n_entries)
    ])


@pytest.mark.parametrize("n_threads", [1, 3])
def test_train_batch_input_dropout_matches_reference_on_the_kept_entries(n_threads):
    rng = np.random.default_rng(2)
    n, d, L, H, rate, seed = 30, 25, 9, 16, 0.4, 11
    X = sp.random(n, d, density=0.4, random_state=3, format="csr", dtype=np.float32)
    Y = sp.random(n, L, density=0.3, random_state=4, format="csr")
    Y.data[:] = 1
    X.indices, X.indptr = X.indices.astype(np.int32), X.indptr.astype(np.int32)
    Y.indices, Y.indptr = Y.indices.astype(np.int32), Y.indptr.astype(np.int32)
    W1 = rng.standard_normal((d, H)).astype(np.float32)
    b1 = rng.standard_normal(H).astype(np.float32) * 0.1
    W2 = rng.standard_normal((L, H)).astype(np.float32) * 0.3
    b2 = np.zeros(L, np.float32)
    batch = np.arange(0, n, 2, dtype=np.int64)
    w = np.ones(len(batch), np.float32)
    grads, touched_in, _, losses, _ = _train_batch(
        LSHTables("dwta", H, 2, 2), X, Y, batch, w, W1, b1, W2, b2, max_active=L,
        min_active=L, n_threads=n_threads, seed=seed, input_dropout=rate,
    )
    kept = _kept_entries(X.nnz, seed, rate)
    assert 0.4 < 1 - kept.mean() < 0.8  # about `rate` of the entries go
    X_kept = X.copy()
    X_kept.data = np.where(kept, X.data / (1 - rate), 0).astype(np.float32)
    ref = _batch_gradients_reference(X_kept, Y, batch, w, W1, b1, W2, b2)
    for name in ("W_in", "b_in", "W_out", "b_out"):
        np.testing.assert_allclose(grads[name], ref[name], rtol=1e-4, atol=1e-6, err_msg=name)
    np.testing.assert_allclose(losses, ref["loss"], rtol=1e-4, atol=1e-6)
    # a dropped feature gets no gradient and is not marked for Adam
    rows = sp.csr_matrix(X_kept[batch][np.diff(Y[batch].indptr) > 0])
    rows.eliminate_zeros()
    np.testing.assert_array_equal(touched_in > 0, np.bincount(rows.indices, minlength=d) > 0)


def test_input_dropout_trains_reproducibly_and_rejects_bad_rates():
    X, Y = make_xc(n_samples=300, n_features=200, n_labels=40, seed=0)
    fits = [
        SLIDEClassifier(max_iter=2, input_dropout=0.3, random_state=0, n_jobs=j).fit(X, Y)
        for j in (1, 2)
    ]
    np.testing.assert_array_equal(fits[0].output_weights_, fits[1].output_weights_)
    plain = SLIDEClassifier(max_iter=2, random_state=0, n_jobs=1).fit(X, Y)
    assert not np.array_equal(fits[0].output_weights_, plain.output_weights_)
    with pytest.raises(ValueError, match="input_dropout"):
        SLIDEClassifier(input_dropout=1.0).fit(X, Y)


def test_feature_power_is_the_model_of_the_powered_values():
    """feature_power fits and ranks as a model of sign(v) |v| ** power read as given.

    The same bits, signed values included; the caller's matrix is left as it
    is; binary rows give the same model at every power.
    """
    X, Y = make_xc(n_samples=400, n_features=300, n_labels=60, seed=2)
    X.data[::3] *= -1
    powered = X.copy()
    powered.data = np.sign(X.data) * np.abs(X.data) ** np.float32(0.5)
    params = dict(hidden_layer_size=32, max_iter=2, random_state=0, n_jobs=1)
    a = SLIDEClassifier(feature_power=0.5, **params).fit(X, Y)
    b = SLIDEClassifier(feature_power=1, **params).fit(powered, Y)
    assert (a.feature_power_, b.feature_power_) == (0.5, 1.0)
    np.testing.assert_array_equal(a.input_weights_, b.input_weights_)
    np.testing.assert_array_equal(a.output_weights_, b.output_weights_)
    np.testing.assert_array_equal(a.sparse_head_.weights, b.sparse_head_.weights)
    kept = X.data.copy()
    X.data.flags.writeable = False  # as a read-only memmap's
    for got, want in zip(a.predict_topk(X, k=3), b.predict_topk(powered, k=3), strict=True):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(a.predict_topk(X[:1], k=3)[0],
                                  b.predict_topk(powered[:1], k=3)[0])
    np.testing.assert_array_equal(a.decision_function(X.toarray()), b.decision_function(powered))
    np.testing.assert_array_equal(X.data, kept)
    binary = X.copy()
    binary.data[:] = 1
    c = SLIDEClassifier(feature_power=0.5, **params).fit(binary, Y)
    d = SLIDEClassifier(feature_power=1, **params).fit(binary, Y)
    np.testing.assert_array_equal(c.output_weights_, d.output_weights_)
    np.testing.assert_array_equal(c.decision_function(binary), d.decision_function(binary))
    for bad in (0, -0.5, "sqrt"):
        with pytest.raises(ValueError, match="feature_power"):
            SLIDEClassifier(feature_power=bad).fit(X, Y)


@pytest.mark.parametrize("signed", [False, True])
def test_square_roots_of_features_are_the_bits_of_the_power(signed):
    """Rows without negative values take their square roots by np.sqrt: the
    bits of sign(v) |v| ** 0.5 by np.power, zeros, -0.0, subnormals and the
    largest floats included."""
    rng = np.random.default_rng(0)
    values = np.concatenate([
        rng.uniform(0, 10, 500), rng.lognormal(0, 20, 500), [0.0, -0.0, 1.0, 4.0],
        np.arange(1, 200) * np.finfo(np.float32).smallest_subnormal,
        [np.finfo(np.float32).max, np.finfo(np.float32).tiny]]).astype(np.float32)
    if signed:
        values[::4] *= -1
    X = sp.csr_matrix(values.reshape(1, -1))
    X.data = values  # -0.0 and the zeros kept as stored entries
    clf = SLIDEClassifier()
    clf.feature_power_ = 0.5
    got = clf._power_features(X).data
    want = np.copysign(np.power(np.abs(values), np.float32(0.5)), values)
    np.testing.assert_array_equal(got.view(np.int32), want.view(np.int32))
    np.testing.assert_array_equal(X.data, values)  # the caller's values left as they are


def test_auto_feature_power_is_the_square_root_of_bag_of_words_rows():
    """"auto" resolves at the first call, from its rows, and stays for the model's life."""
    X, Y = make_xc(n_samples=300, n_features=2000, n_labels=40, seed=3)  # 1.1% non-zero
    params = dict(hidden_layer_size=16, max_iter=1, random_state=0, n_jobs=1)
    assert SLIDEClassifier(**params).fit(X, Y).feature_power_ == 0.5
    # the same rows as a dense array: the same power; dense measurements: 1
    assert SLIDEClassifier(**params).fit(X.toarray(), Y).feature_power_ == 0.5
    iris = load_iris()
    assert SLIDEClassifier(**params).fit(iris.data, iris.target).feature_power_ == 1.0
    assert SLIDEClassifier(**params).fit(
        sp.csr_matrix(iris.data), iris.target).feature_power_ == 1.0
    signed = X.copy()
    signed.data[0] = -signed.data[0]
    assert SLIDEClassifier(**params).fit(signed, Y).feature_power_ == 1.0
    # the first partial_fit call decides; a later one keeps it
    clf = SLIDEClassifier(**params).partial_fit(X[:150], Y[:150])
    clf.partial_fit(signed[150:], Y[150:])
    assert clf.feature_power_ == 0.5
    same = SLIDEClassifier(feature_power=0.5, **params).fit(X, Y)
    np.testing.assert_array_equal(SLIDEClassifier(**params).fit(X, Y).decision_function(X),
                                  same.decision_function(X.toarray()))
    # a restored state's power is checked like its weights
    bad = pickle.loads(pickle.dumps(same))
    bad.feature_power_ = float("nan")
    with pytest.raises(ValueError, match="feature_power_"):
        pickle.loads(pickle.dumps(bad))


def test_centroid_output_init_points_each_row_at_its_labels_rows():
    X, Y = make_xc(n_samples=400, n_features=300, n_labels=60, seed=1)
    Y = sp.lil_matrix(Y)
    Y[:, 59] = 0  # a label without rows keeps its random row
    Y = sp.csr_matrix(Y)
    Y.eliminate_zeros()
    clf = SLIDEClassifier(max_iter=1, learning_rate=1e-30, random_state=0, n_jobs=1,
                          sparse_head=False)
    clf.fit(X, Y)
    uniform = SLIDEClassifier(
        max_iter=1, learning_rate=1e-30, output_init="uniform", random_state=0, n_jobs=1,
        sparse_head=False,
    ).fit(X, Y)
    hidden = clf._hidden(clf._validate_X(X, reset=False))  # (the rows the model reads)
    sums = Y.T @ hidden
    W = clf.output_weights_
    for label in range(59):
        cosine = W[label] @ sums[label] / (np.linalg.norm(W[label]) * np.linalg.norm(sums[label]))
        assert cosine > 1 - 1e-4
    np.testing.assert_allclose(W[59], uniform.output_weights_[59])
    mean_norm = np.linalg.norm(hidden[np.diff(Y.indptr) > 0], axis=1).mean()
    np.testing.assert_allclose(np.linalg.norm(W[:59], axis=1) * mean_norm, 20.0, rtol=1e-3)
    # and the untrained model already ranks better than chance
    assert precision_at_1(clf.predict_topk(X, 1)[0], Y) > 5 * precision_at_1(
        uniform.predict_topk(X, 1)[0], Y)


@pytest.mark.parametrize("correct", [False, True])
def test_train_batch_random_negatives_and_logq_correction(correct):
    # One example, 5 of 12 labels active (its true labels plus random ones):
    # the touched output rows tell which, and the gradient must be the softmax
    # over them, with log((L - n_true) / n_random) added to the random ones.
    rng = np.random.default_rng(2)
    d, L, H = 10, 12, 8
    X = sp.csr_matrix(rng.random((1, d)).astype(np.float32))
    Y = sp.csr_matrix(np.array([[0, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0]]))
    X.indices, X.indptr = X.indices.astype(np.int32), X.indptr.astype(np.int32)
    Y.indices, Y.indptr = Y.indices.astype(np.int32), Y.indptr.astype(np.int32)
    W1 = rng.standard_normal((d, H)).astype(np.float32)
    b1 = np.abs(rng.standard_normal(H)).astype(np.float32)
    W2 = rng.standard_normal((L, H)).astype(np.float32)
    b2 = rng.standard_normal(L).astype(np.float32)
    grads, _, touched_out, losses, n_active = _train_batch(
        LSHTables("dwta", H, 2, 2), X, Y, np.array([0], np.int64), np.ones(1, np.float32),
        W1, b1, W2, b2, max_active=5, min_active=5, correct=correct, seed=11,
    )
    gb2 = grads["b_out"]
    active = np.flatnonzero(touched_out)
    assert n_active[0] == 5 and len(active) == 5 and {1, 7} <= set(active)
    h = np.maximum(X.toarray()[0].astype(np.float64) @ W1 + b1, 0)
    logits = W2[active].astype(np.float64) @ h + b2[active]
    is_true = np.isin(active, [1, 7])
    if correct:
        logits[~is_true] += np.log((L - 2) / 3)
    p = np.exp(logits - logits.max())
    p /= p.sum()
    target = is_true / 2
    np.testing.assert_allclose(gb2[active], p - target, rtol=1e-4, atol=1e-6)
    assert np.all(gb2[np.setdiff1d(np.arange(L), active)] == 0)
    lse = np.log(np.exp(logits - logits.max()).sum()) + logits.max()
    np.testing.assert_allclose(losses[0], lse - logits[is_true].mean(), rtol=1e-5)


def _adam_reference(W, M, V, G, lr, b1, b2, eps, step, decay):
    m = b1 * M + (1 - b1) * G
    v = b2 * V + (1 - b2) * G * G
    w = W * (1 - lr * decay) - lr * (m / (1 - b1**step)) / (np.sqrt(v / (1 - b2**step)) + eps)
    return w, m, v


@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("bf16", [False, True])
def test_update_output_layer_matches_reference(n_threads, bf16):
    # Per-example gradients of a batch, with labels shared between examples
    # and rows no example touched: each touched row gets Adam on the sum of
    # its contributions, the others are left alone.
    rng = np.random.default_rng(3)
    B, A, L, H = 6, 5, 20, 24
    hb = rng.standard_normal((B, H)).astype(np.float32)
    n_active = np.array([5, 3, 0, 5, 1, 4], np.int32)
    ab = np.stack([rng.choice(12, A, replace=False) for _ in range(B)]).astype(np.int32)
    gb = rng.standard_normal((B, A)).astype(np.float32)
    W = rng.standard_normal((L, H)).astype(np.float32)
    b = rng.standard_normal(L).astype(np.float32)
    M, V = rng.standard_normal((L, H)).astype(np.float32) * 0.1, rng.random((L, H)).astype(
        np.float32) * 0.1
    Mb, Vb = rng.standard_normal(L).astype(np.float32) * 0.1, rng.random(L).astype(np.float32)
    G, gbias = np.zeros((L, H)), np.zeros(L)
    for i in range(B):
        for j in range(n_active[i]):
            G[ab[i, j]] += gb[i, j] * hb[i].astype(np.float64)
            gbias[ab[i, j]] += gb[i, j]
    touched = np.zeros(L, bool)
    touched[np.concatenate([ab[i, : n_active[i]] for i in range(B)])] = True
    hp = dict(lr=0.01, b1=0.9, b2=0.999, eps=1e-8, step=4)
    w_ref, m_ref, v_ref = _adam_reference(W, M, V, G, decay=0.5, **hp)
    bias_ref, mb_ref, vb_ref = _adam_reference(b, Mb, Vb, gbias, decay=0.0, **hp)
    for ref, old in ((w_ref, W), (m_ref, M), (v_ref, V)):
        ref[~touched] = old[~touched]
    for ref, old in ((bias_ref, b), (mb_ref, Mb), (vb_ref, Vb)):
        ref[~touched] = old[~touched]
    W_bf16 = np.zeros((L, H), np.uint16) if bf16 else np.zeros((0, 0), np.uint16)
    row_count = np.zeros(L, np.int32)
    n = _network.update_output_layer(
        hb, ab, gb, n_active, W, b, M, V, np.zeros((0, 0), np.uint16),
        np.zeros((0, 0), np.uint16), Mb, Vb, W_bf16, row_count,
        np.empty(L, np.int32), np.empty(L + 1, np.int32),
        np.empty(B * A, np.int32), np.empty(B * A, np.float32),
        hp["lr"], hp["b1"], hp["b2"], hp["eps"], hp["step"], 0.5, n_threads,
    )
    assert n == touched.sum()
    assert not row_count.any()
    for got, ref in ((W, w_ref), (M, m_ref), (V, v_ref), (b, bias_ref), (Mb, mb_ref), (Vb, vb_ref)):
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)
    if bf16:
        from sksketch._kernels._simd import f32_to_bf16

        np.testing.assert_array_equal(W_bf16[touched], f32_to_bf16(W[touched].ravel()).reshape(
            -1, H))
        assert not W_bf16[~touched].any()


@pytest.mark.parametrize("decay", [0.0, 2.0])
def test_adam_update_matches_reference(decay):
    rng = np.random.default_rng(1)
    W, G = rng.standard_normal((6, 5)).astype(np.float32), rng.standard_normal((6, 5))
    G = G.astype(np.float32)
    M = rng.standard_normal((6, 5)).astype(np.float32) * 0.1
    V = rng.random((6, 5)).astype(np.float32) * 0.1
    touched = np.array([1, 0, 1, 1, 0, 1], dtype=np.uint8)
    lr, b1, b2, eps, step = 0.01, 0.9, 0.999, 1e-8, 3
    m_ref = b1 * M + (1 - b1) * G
    v_ref = b2 * V + (1 - b2) * G * G
    w_ref = W * (1 - lr * decay) - lr * (m_ref / (1 - b1**step)) / (
        np.sqrt(v_ref / (1 - b2**step)) + eps
    )
    keep = touched == 0
    w_ref[keep], m_ref[keep], v_ref[keep] = W[keep], M[keep], V[keep]
    g_ref = np.where(keep[:, None], G, 0)
    _network.adam_update(W, M, V, G, touched, lr, b1, b2, eps, step, 2, None, decay)
    np.testing.assert_allclose(W, w_ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(M, m_ref, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(V, v_ref, rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(G, g_ref)


def test_hidden_forward_and_topk_rows_match_numpy():
    rng = np.random.default_rng(2)
    X = sp.random(50, 40, density=0.1, random_state=2, format="csr", dtype=np.float32)
    X.indices, X.indptr = X.indices.astype(np.int32), X.indptr.astype(np.int32)
    W1 = rng.standard_normal((40, 24)).astype(np.float32)
    b1 = rng.standard_normal(24).astype(np.float32)
    h = _network.hidden_forward(X.indptr, X.indices, X.data, W1, b1, 2)
    np.testing.assert_allclose(h, np.maximum(X @ W1 + b1, 0), rtol=1e-5, atol=1e-6)
    scores = rng.integers(0, 5, (30, 17)).astype(np.float32)
    idx, val = _network.topk_rows(scores, 4, 2)
    ref = np.argsort(-scores, axis=1, kind="stable")[:, :4]
    np.testing.assert_array_equal(idx, ref)
    np.testing.assert_array_equal(val, np.take_along_axis(scores, ref, axis=1))


def test_hidden_forward_relu_keeps_nan_and_negative_zero():
    """``0 if z < 0 else z`` unit by unit, as the branch it replaced: NaN and -0.0 pass."""
    b1 = np.array([-1.5, -0.0, 0.0, np.nan, 2.0, -np.inf, np.inf] * 5, dtype=np.float32)
    empty = np.zeros(3, dtype=np.int32)  # two rows without features: the bias alone
    h = _network.hidden_forward(empty, empty[:0], np.zeros(0, np.float32),
                                np.zeros((1, b1.shape[0]), np.float32), b1, 2)
    want = np.where(b1 < 0, np.float32(0), b1)
    for row in h:
        np.testing.assert_array_equal(row, want)  # NaN where NaN
        assert (np.signbit(row) == np.signbit(want)).all()


# ------------------------------------------------------------------- estimator


def test_scores_of_a_row_do_not_depend_on_its_batch_or_the_threads():
    X, Y = make_xc(n_samples=600, n_features=300, n_labels=700)
    clf = SLIDEClassifier(hidden_layer_size=32, max_iter=2, random_state=0, n_jobs=2).fit(X, Y)
    labels, scores = clf.predict_topk(X, k=5)
    decision = clf.decision_function(X[:40])
    for i in (0, 5, 39):
        row_labels, row_scores = clf.predict_topk(X[i : i + 1], k=5)
        np.testing.assert_array_equal(row_labels[0], labels[i])
        np.testing.assert_array_equal(row_scores[0], scores[i])
        np.testing.assert_array_equal(clf.decision_function(X[i : i + 1])[0], decision[i])
    one_thread = clone(clf).set_params(n_jobs=1)
    one_thread.__dict__.update({k: v for k, v in clf.__dict__.items() if k != "n_jobs"})
    np.testing.assert_array_equal(one_thread.predict_topk(X, k=5)[1], scores)


def test_multiclass_dense_and_sparse_agree():
    X, y = load_iris(return_X_y=True)
    params = dict(max_iter=100, learning_rate=1e-2, random_state=0, n_jobs=1)
    dense = SLIDEClassifier(**params).fit(X, y)
    sparse = SLIDEClassifier(**params).fit(sp.csr_matrix(X), y)
    assert dense.score(X, y) > 0.9
    np.testing.assert_array_equal(dense.predict(X), sparse.predict(sp.csr_matrix(X)))
    labels, scores = dense.predict_topk(X, k=5)
    assert labels.shape == (150, 3)  # k is capped at the number of classes
    assert np.all(np.diff(scores, axis=1) <= 0)
    np.testing.assert_array_equal(labels[:, 0], dense.predict(X))
    proba = dense.predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-6)
    np.testing.assert_array_equal(dense.classes_[proba.argmax(axis=1)], dense.predict(X))


def test_string_classes_and_binary_decision_function():
    X, y = load_iris(return_X_y=True)
    names = np.array(["setosa", "versicolor", "virginica"])[y]
    clf = SLIDEClassifier(max_iter=60, learning_rate=1e-2, random_state=0).fit(X, names)
    assert set(clf.predict(X)) <= set(names)
    binary = SLIDEClassifier(max_iter=30, random_state=0).fit(X[:100], y[:100])
    assert binary.decision_function(X[:100]).shape == (100,)


@pytest.mark.parametrize("sparse_y", [False, True])
def test_multilabel_output_kind_follows_y(sparse_y):
    X, Y = make_multilabel_classification(400, n_features=30, n_classes=15, random_state=0)
    Yfit = sp.csr_matrix(Y) if sparse_y else Y
    clf = SLIDEClassifier(max_iter=20, predict_top_k=2, random_state=0).fit(X, Yfit)
    pred = clf.predict(X)
    assert sp.issparse(pred) == sparse_y
    pred = sp.csr_matrix(pred)
    assert pred.shape == Y.shape
    np.testing.assert_array_equal(np.diff(pred.indptr), 2)
    labels, _ = clf.predict_topk(X, k=2)
    np.testing.assert_array_equal(np.sort(labels, axis=1), pred.indices.reshape(-1, 2))
    assert clf.score(X, Y) == pytest.approx(precision_at_1(labels, Y))


@pytest.mark.parametrize("correction", ["logq", "none"])
def test_learns_a_large_label_space_through_lsh(correction):
    X, Y = make_xc()
    train, test = slice(0, 2400), slice(2400, None)
    clf = SLIDEClassifier(max_iter=20, random_state=0, hash_family="simhash",
                          n_hashes_per_table=6, n_tables=50, sampling_correction=correction,
                          negative_sampling="lsh-embedding")
    clf.fit(X[train], Y[train])
    assert clf._plan().uses_lsh and clf.mean_active_labels_ <= clf._plan().target
    labels, _ = clf.predict_topk(X[test], k=1)
    frequent = np.asarray(Y[train].sum(axis=0)).ravel().argmax()
    baseline = precision_at_1(np.full((600, 1), frequent), Y[test])
    p1 = precision_at_1(labels, Y[test])
    assert p1 > 0.6 and p1 > 5 * baseline
    # LSH inference scores only the retrieved labels: approximate, but as
    # precise as scoring every label
    lsh_labels, _ = clf.set_params(inference="lsh").predict_topk(X[test], k=1)
    assert precision_at_1(lsh_labels, Y[test]) >= p1 - 0.01


def test_rows_without_labels_are_skipped_and_counted():
    X, Y = make_multilabel_classification(300, n_features=20, n_classes=8, random_state=1,
                                          allow_unlabeled=True)
    n_empty = int((Y.sum(axis=1) == 0).sum())
    assert n_empty > 0
    clf = SLIDEClassifier(max_iter=2, random_state=0).fit(X, Y)
    assert clf.n_samples_skipped_ == n_empty
    assert np.all(np.isfinite(clf.output_weights_))


def test_zero_sample_weight_equals_dropping_rows_from_the_loss():
    X, y = load_iris(return_X_y=True)
    weights = np.ones(150)
    weights[::2] = 0
    clf = SLIDEClassifier(max_iter=1, batch_size=150, shuffle=False, random_state=0)
    clf.fit(X, y, sample_weight=weights)
    ref = SLIDEClassifier(max_iter=1, batch_size=150, shuffle=False, random_state=0)
    # one full batch: zero-weight rows contribute nothing but still count in 1/B
    ref.fit(X, y, sample_weight=weights)
    np.testing.assert_array_equal(clf.output_weights_, ref.output_weights_)
    with pytest.raises(ValueError, match="[Nn]egative"):
        clf.fit(X, y, sample_weight=-weights)


def test_partial_fit_classes_semantics():
    X, y = load_iris(return_X_y=True)
    clf = SLIDEClassifier(random_state=0)
    with pytest.raises(ValueError, match="classes must be passed"):
        clf.partial_fit(X, y)
    clf.partial_fit(X[:50], y[:50], classes=[0, 1, 2])
    np.testing.assert_array_equal(clf.classes_, [0, 1, 2])
    clf.partial_fit(X[50:], y[50:], classes=[0, 1, 2])  # as dask-ml sends it
    with pytest.raises(ValueError, match="not the same as on the first call"):
        clf.partial_fit(X, y, classes=[0, 1, 2, 3])
    with pytest.raises(ValueError, match="not in classes"):
        clf.partial_fit(X, y + 1)
    assert clf.n_iter_ == 2 and clf.t_ == 150
    _, Y = make_multilabel_classification(150, n_features=4, n_classes=6, random_state=0)
    multi = SLIDEClassifier(random_state=0).partial_fit(X, Y)
    np.testing.assert_array_equal(multi.classes_, np.arange(6))
    with pytest.raises(ValueError, match="columns"):
        multi.partial_fit(X, Y[:, :5])


def test_warm_start_continues():
    X, y = load_iris(return_X_y=True)
    clf = SLIDEClassifier(max_iter=3, warm_start=True, random_state=0).fit(X, y)
    first = clf.output_weights_.copy()
    clf.fit(X, y)
    assert clf.n_iter_ == 6 and len(clf.loss_curve_) == 6
    assert not np.array_equal(first, clf.output_weights_)


def test_reproducible_for_any_thread_count():
    X, Y = make_xc(n_samples=800, n_labels=500)
    fits = [
        SLIDEClassifier(max_iter=2, random_state=3, n_jobs=n_jobs).fit(X, Y)
        for n_jobs in (1, 2, 1)
    ]
    for other in fits[1:]:
        np.testing.assert_array_equal(fits[0].output_weights_, other.output_weights_)
        np.testing.assert_array_equal(fits[0].input_weights_, other.input_weights_)


@pytest.mark.parametrize("inference", ["full", "lsh"])
def test_persistence_round_trips(inference, tmp_path):
    X, Y = make_xc(n_samples=600, n_labels=400)
    clf = SLIDEClassifier(max_iter=2, inference=inference, random_state=0).fit(X, Y)
    expected = clf.predict_topk(X, k=5)
    for restored in (
        pickle.loads(pickle.dumps(clf)),
        joblib.load(joblib.dump(clf, tmp_path / "model.joblib")[0]),
    ):
        got = restored.predict_topk(X, k=5)
        np.testing.assert_array_equal(got[0], expected[0])
        np.testing.assert_array_equal(got[1], expected[1])
    fresh = clone(clf)
    assert not hasattr(fresh, "output_weights_")
    assert fresh.get_params() == clf.get_params()


def test_bfloat16_matches_float32_quality():
    X, Y = make_xc(n_samples=2000, n_labels=800, seed=4)
    params = dict(max_iter=6, random_state=0, hash_family="simhash", n_hashes_per_table=8)
    p = {}
    for precision in ("float32", "bfloat16"):
        clf = SLIDEClassifier(precision=precision, **params).fit(X[:1600], Y[:1600])
        p[precision] = precision_at_1(clf.predict_topk(X[1600:], 1)[0], Y[1600:])
    assert p["bfloat16"] >= p["float32"] - 0.03


def test_portable_kernels_reach_the_same_precision():
    code = (
        "import warnings; warnings.simplefilter('ignore')\n"
        f"import sys; sys.path.insert(0, {os.path.dirname(__file__)!r})\n"
        "from test_slide import make_xc, precision_at_1\n"
        "from sksketch import SLIDEClassifier\n"
        "X, Y = make_xc(n_samples=2000, n_labels=800, seed=5)\n"
        "clf = SLIDEClassifier(max_iter=6, random_state=0, hash_family='simhash',\n"
        "                      n_hashes_per_table=8).fit(X[:1600], Y[:1600])\n"
        "print(precision_at_1(clf.predict_topk(X[1600:], 1)[0], Y[1600:]))\n"
    )
    results = {}
    for isa in ("scalar", None):
        env = dict(os.environ)
        env.pop("SKSKETCH_ISA", None)
        if isa:
            env["SKSKETCH_ISA"] = isa
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                             text=True, timeout=300)
        assert out.returncode == 0, out.stderr
        results[isa] = float(out.stdout.strip())
    assert abs(results["scalar"] - results[None]) <= 0.01 + 1e-9


def test_invalid_inputs():
    X, y = load_iris(return_X_y=True)
    clf = SLIDEClassifier(max_iter=1).fit(X, y)
    with pytest.raises(ValueError, match="features"):
        clf.predict(X[:, :3])
    with pytest.raises(ValueError, match="k must be a positive integer"):
        clf.predict_topk(X, k=0)
    with pytest.raises(ValueError, match="binary indicator"):
        SLIDEClassifier().fit(X[:10], np.full((10, 3), 2))
    with pytest.raises(ValueError, match="greater than one"):
        SLIDEClassifier().fit(X[:10], np.zeros(10))
    with pytest.raises(ValueError, match="NaN|infinity"):
        SLIDEClassifier().fit(np.full((4, 2), np.nan), [0, 1, 0, 1])


def test_lsh_predictions_between_partial_fits_do_not_change_training():
    X, Y = make_xc(n_samples=1200, n_labels=1500)
    classes = np.arange(Y.shape[1])
    params = dict(random_state=0, min_active_labels=100, inference="lsh", rehash_interval=3)
    a, b = SLIDEClassifier(**params), SLIDEClassifier(**params)
    for start in range(0, 1200, 400):
        chunk = slice(start, start + 400)
        a.partial_fit(X[chunk], Y[chunk], classes=classes)
        b.partial_fit(X[chunk], Y[chunk], classes=classes)
        b.predict_topk(X[:50], k=3)  # builds an index over the current weights
    np.testing.assert_array_equal(a.output_weights_, b.output_weights_)
    la, sa = a.predict_topk(X[:200], k=3)
    lb, sb = b.predict_topk(X[:200], k=3)
    np.testing.assert_array_equal(la, lb)
    np.testing.assert_array_equal(sa, sb)
    # the index follows the final weights, and a pickled model rebuilds it
    c = pickle.loads(pickle.dumps(b))
    lc, sc = c.predict_topk(X[:200], k=3)
    np.testing.assert_array_equal(lb, lc)
    np.testing.assert_array_equal(sb, sc)


@pytest.mark.parametrize("sampler", [None, "uniform", "nw-sketch", "exact-loss"])
def test_training_through_each_sampler(sampler):
    X, Y = make_xc(n_samples=900, n_features=600, n_labels=300, seed=3)
    params = dict(sampler=sampler, min_active_labels=60, batch_size=32, learning_rate=1e-2,
                  random_state=0, n_jobs=1)
    clf = SLIDEClassifier(max_iter=4, **params).fit(X[:800], Y[:800])
    assert clf.score(X[800:], Y[800:]) > 0.5
    assert clf.t_ == 4 * 800
    inc = SLIDEClassifier(**params)
    inc.partial_fit(X[:400], Y[:400], classes=np.arange(300))
    first = inc.sampler_
    inc.partial_fit(X[400:800], Y[400:800])
    assert inc.sampler_ is first  # the sampler's state carries over
    assert len(first.effective_sample_size_) == 2
    restored = pickle.loads(pickle.dumps(inc))
    np.testing.assert_array_equal(restored.predict_topk(X[800:], 3)[0],
                                  inc.predict_topk(X[800:], 3)[0])


def test_default_sampler_keeps_the_shuffle_parameter():
    X, Y = make_xc(n_samples=300, n_features=200, n_labels=50, seed=4)
    clf = SLIDEClassifier(shuffle=False, max_iter=1, random_state=0).fit(X, Y)
    assert clf.sampler_.shuffle is False


def test_example_losses_are_the_full_softmax_cross_entropy():
    X, Y = make_xc(n_samples=200, n_features=150, n_labels=40, seed=5)
    clf = SLIDEClassifier(max_iter=2, random_state=0).fit(X, Y)
    Xc, Yc = clf._validate_X(X, reset=False), sp.csr_matrix(Y)
    rows = np.array([0, 5, 7, 150, 199], dtype=np.int64)
    got = example_losses(clf, Xc, Yc, rows)
    h = np.maximum(Xc[rows] @ clf.input_weights_.astype(np.float64) + clf.input_bias_, 0)
    logits = h @ clf.output_weights_.T.astype(np.float64) + clf.output_bias_
    lse = np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1)) + logits.max(1)
    T = Yc[rows].toarray()
    expected = np.where(T.sum(1) > 0, lse - (logits * T).sum(1) / np.maximum(T.sum(1), 1), 0)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_update_output_layer_with_bfloat16_moments():
    # Same update as float32 moments, the moments then rounded stochastically:
    # each lands on one of the two bfloat16 values around the float32 result.
    from sksketch._kernels._simd import bf16_to_f32, f32_to_bf16

    rng = np.random.default_rng(8)
    B, A, L, H = 4, 3, 10, 20
    hb = rng.standard_normal((B, H)).astype(np.float32)
    n_active = np.array([3, 2, 3, 1], np.int32)
    ab = np.stack([rng.choice(L, A, replace=False) for _ in range(B)]).astype(np.int32)
    gb = rng.standard_normal((B, A)).astype(np.float32)
    W = rng.standard_normal((L, H)).astype(np.float32)
    M16 = f32_to_bf16((rng.standard_normal(L * H) * 0.1).astype(np.float32)).reshape(L, H)
    V16 = f32_to_bf16((rng.random(L * H) * 0.1 + 0.01).astype(np.float32)).reshape(L, H)
    Mf, Vf = (bf16_to_f32(a.ravel()).reshape(L, H).astype(np.float64) for a in (M16, V16))
    G = np.zeros((L, H))
    for i in range(B):
        for j in range(n_active[i]):
            G[ab[i, j]] += gb[i, j] * hb[i]
    touched = np.zeros(L, bool)
    touched[np.concatenate([ab[i, : n_active[i]] for i in range(B)])] = True
    w_ref, m_ref, v_ref = _adam_reference(W, Mf, Vf, G, 0.01, 0.9, 0.999, 1e-8, 2, 0.0)
    W0, M0, V0 = W.copy(), M16.copy(), V16.copy()
    none = np.zeros((0, 0), np.float32)
    _network.update_output_layer(
        hb, ab, gb, n_active, W, np.zeros(L, np.float32), none, none, M16, V16,
        np.zeros(L, np.float32), np.ones(L, np.float32), np.zeros((0, 0), np.uint16),
        np.zeros(L, np.int32), np.empty(L, np.int32), np.empty(L + 1, np.int32),
        np.empty(B * A, np.int32), np.empty(B * A, np.float32),
        0.01, 0.9, 0.999, 1e-8, 2, 0.0, 2,
    )
    np.testing.assert_allclose(W[touched], w_ref[touched], rtol=1e-4, atol=1e-5)
    for got, ref, old in ((M16, m_ref, M0), (V16, v_ref, V0)):
        low = f32_to_bf16(ref[touched].astype(np.float32).ravel()).astype(np.int32)
        diff = got[touched].ravel().astype(np.int32) - low
        assert np.all(np.abs(diff) <= 1)
        np.testing.assert_array_equal(got[~touched], old[~touched])
    np.testing.assert_array_equal(W[~touched], W0[~touched])


def test_switching_precision_between_calls_converts_the_moments():
    X, Y = make_xc(n_samples=400, n_features=300, n_labels=100, seed=6)
    clf = SLIDEClassifier(min_active_labels=30, random_state=0)
    clf.partial_fit(X, Y, classes=np.arange(100))
    assert clf._adam["m_out"].dtype == np.float32
    clf.set_params(precision="bfloat16").partial_fit(X, Y)
    assert clf._adam["m_out"].dtype == np.uint16 and clf._adam["v_out"].dtype == np.uint16
    clf.set_params(precision="float32").partial_fit(X, Y)
    assert clf._adam["v_out"].dtype == np.float32 and np.isfinite(clf.loss_curve_).all()


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"negative_sampling": "full"},
        {"negative_sampling": "unigram", "max_active_labels": 50, "min_active_labels": 10},
        {"negative_sampling": "uniform", "max_active_labels": 0.02, "min_active_labels": 0},
        {"negative_sampling": "lsh-label", "max_active_labels": 100, "min_active_labels": 20,
         "negative_fill": "unigram"},
        {"max_active_labels": 5000, "inference": "lsh"},
    ],
)
def test_plan_before_fit_is_the_fitted_models(params):
    """One plan, read before fitting (estimate_memory) and by training, says what training did."""
    from sksketch._slide._plan import make_plan

    X, Y = make_xc(n_samples=300, n_features=200, n_labels=400)
    est = SLIDEClassifier(max_iter=1, hidden_layer_size=16, random_state=0, **params)
    plan = make_plan(est, Y.shape[1])
    clf = est.fit(X, Y)
    assert clf._plan() == plan
    L = len(clf.classes_)
    assert (plan.mode == "full") == (plan.target == L)
    # the tables hold the labels exactly when training queried them
    assert (clf.lsh_tables_.n_items == L) == plan.uses_lsh
    assert (clf.lsh_tables_.n_buckets_log2 > 1) == plan.tables_in_use
    assert clf.lsh_tables_.n_buckets_log2 in (1, plan.tables.n_buckets_log2)
    assert hasattr(clf, "_unigram_cdf") == plan.uses_unigram
    if plan.mode == "full":
        assert clf.mean_active_labels_ == L
    else:
        assert clf.mean_active_labels_ <= plan.active_size(np.diff(Y.indptr).max())


def test_initial_weights_are_float32_of_one_uniform_draw():
    """Drawn in chunks, the weights are the float64 draw of the whole shape, rounded."""
    from sksketch._slide._trainer import _uniform32

    shape = (3000, 700)  # two chunks and a partial one
    got, after = np.random.RandomState(3), np.random.RandomState(3)
    w = _uniform32(got, 0.7, shape)
    expected = after.uniform(-0.7, 0.7, shape).astype(np.float32)
    assert w.dtype == np.float32 and w.flags.c_contiguous
    np.testing.assert_array_equal(w, expected)
    assert got.randint(0, 2**30) == after.randint(0, 2**30)  # the stream goes on alike


@pytest.mark.parametrize("n_rows", [0, 1, 4095, 4096, 9001])
def test_blocked_row_norms_are_numpys(n_rows):
    """The centroid start's norms, a block of rows at a time: numpy's bits exactly."""
    from sksketch._slide._trainer import _row_norms

    A = np.random.default_rng(n_rows).standard_normal((n_rows, 37)).astype(np.float32)
    A[::7] = 0
    got = _row_norms(A)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, np.linalg.norm(A, axis=1))


def test_prediction_input_checks_are_validate_datas():
    """Clean CSR input skips validate_data's fixed cost; anything else goes through it."""
    X, Y = make_xc(n_samples=300, n_features=200, n_labels=50)
    clf = SLIDEClassifier(max_iter=1, n_jobs=1, random_state=0, feature_power=0.5).fit(X, Y)
    X = sp.csr_matrix(X, dtype=np.float64)
    assert clf._passes_validation(X) and clf._passes_validation(X.astype(np.float32))
    expected = clf.predict_topk(X.tocsc(), k=3)  # through validate_data
    # canonical float32 CSR with int32 indices is read as it is, not copied
    X32 = X.astype(np.float32)
    X32.indices, X32.indptr = X32.indices.astype(np.int32), X32.indptr.astype(np.int32)
    direct = clf._validate_X(X32, reset=False, read_only=True)
    # its values to feature_power beside the caller's own index arrays
    assert np.shares_memory(direct.indices, X32.indices)
    assert np.shares_memory(direct.indptr, X32.indptr)
    np.testing.assert_array_equal(direct.data, np.sqrt(X32.data))
    assert clf._validate_X(X32, reset=False) is not X32  # training may write to its copy
    clf.feature_power_ = 1.0
    assert clf._validate_X(X32, reset=False, read_only=True) is X32
    clf.feature_power_ = 0.5
    # the same rows with each row's entries reversed: sorted on a copy
    unsorted = X32.copy()
    for i in range(unsorted.shape[0]):
        row = slice(unsorted.indptr[i], unsorted.indptr[i + 1])
        unsorted.indices[row], unsorted.data[row] = (unsorted.indices[row][::-1].copy(),
                                                     unsorted.data[row][::-1].copy())
    unsorted.has_canonical_format = False
    kept = unsorted.indices.copy()
    for same in (X, X32, unsorted, sp.csr_array(X)):
        got = clf.predict_topk(same, k=3)
        np.testing.assert_array_equal(got[0], expected[0])
        np.testing.assert_array_equal(got[1], expected[1])
    np.testing.assert_array_equal(unsorted.indices, kept)
    # malformed indices are refused on the direct path too
    bad = X32.copy()
    bad.indices[0] = X.shape[1]
    with pytest.raises(ValueError, match="column indices outside"):
        clf.predict_topk(bad)
    # what validate_data refuses, it still refuses, with its own messages
    bad = X.copy()
    bad.data[0] = np.nan
    assert not clf._passes_validation(bad)
    with pytest.raises(ValueError, match="Input X contains NaN"):
        clf.predict(bad)
    bad.data[0] = 1e39  # beyond float32
    assert not clf._passes_validation(bad)
    with pytest.raises(ValueError, match="infinity or a value too large"):
        clf.predict(bad)
    with pytest.raises(ValueError, match="X has 199 features, but SLIDEClassifier is expecting"):
        clf.predict(X[:, :199])
    assert not clf._passes_validation(X[:0])
    with pytest.raises(ValueError, match="0 sample"):
        clf.predict(X[:0])
    assert not clf._passes_validation(X.astype(np.int64))


def test_weights_and_moments_start_on_cache_lines():
    # the kernels' 64-byte loads of a row never straddle two cache lines
    _aligned = _network.aligned_array

    for shape, dtype in (((3, 5), np.float32), ((7,), np.float64), ((0, 4), np.float32)):
        for zeros in (False, True):
            a = _aligned(shape, dtype, zeros=zeros)
            assert a.shape == shape and a.dtype == dtype and a.flags.c_contiguous
            assert a.size == 0 or a.ctypes.data % 64 == 0
            if zeros:
                assert not a.any()
    from sksketch.datasets import make_extreme_classification

    X, Y = make_extreme_classification(n_samples=200, n_features=300, n_labels=50,
                                       random_state=0)
    clf = SLIDEClassifier(hidden_layer_size=16, max_iter=1, random_state=0).fit(X, Y)
    for a in (clf.input_weights_, clf.output_weights_, *clf._adam.values()):
        assert a.ctypes.data % 64 == 0
    # and survive a round trip as ordinary arrays
    again = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(again.predict_topk(X, k=3)[0], clf.predict_topk(X, k=3)[0])
