"""ZeroShotSoftLabelClassifier and its dense kernels."""

import io
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
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sksketch import ZeroShotSoftLabelClassifier
from sksketch._kernels import _dense, _simd
from sksketch._zeroshot import soft_label_targets
from sksketch.metrics import gzsl_scores
from sksketch.sampling import check_sampler

FORCED = os.environ.get(_simd.ISA_ENV_VAR)


@pytest.fixture
def rng():
    return np.random.RandomState(0)


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=Warning)
        yield


# ---------------------------------------------------------------- references


def _ref_bias_relu(Z, b, relu):
    out = Z + b
    return np.maximum(out, 0) if relu else out


def _ref_soft_label_cross_entropy(logits, targets, mass, unseen_targets, unseen_ids,
                                  weights, scale):
    n, C = logits.shape
    T = np.zeros((n, C))
    T[np.arange(n), targets] = mass
    T[:, unseen_ids] += unseen_targets[targets]
    z = logits.astype(np.float64)
    lse = np.log(np.exp(z - z.max(1, keepdims=True)).sum(1)) + z.max(1)
    p = np.exp(z - lse[:, None])
    total = T.sum(1)
    losses = lse * total - (T * z).sum(1)
    grad = (weights * scale)[:, None] * (p * total[:, None] - T)
    return losses, grad


def _ref_adam(w, m, v, g, step, lr, b1, b2, eps, decay):
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    lr_t = lr * np.sqrt(1 - b2**step) / (1 - b1**step)
    eps_t = eps * np.sqrt(1 - b2**step)
    return w * (1 - lr * decay) - lr_t * m / (np.sqrt(v) + eps_t), m, v


# ---------------------------------------------------------------- kernels


@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("relu", [True, False])
@pytest.mark.parametrize("shape", [(1, 1), (7, 33), (130, 17)])
def test_bias_relu_matches_reference(n_threads, relu, shape, rng):
    Z = rng.randn(*shape).astype(np.float32)
    b = rng.randn(shape[1]).astype(np.float32)
    expected = _ref_bias_relu(Z, b, relu)
    _dense.bias_relu(Z, b, relu, n_threads)
    np.testing.assert_allclose(Z, expected, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("n_threads", [1, 2])
def test_relu_backward_matches_reference(n_threads, rng):
    G = rng.randn(50, 21).astype(np.float32)
    A = np.maximum(rng.randn(50, 21), 0).astype(np.float32)
    expected = np.where(A > 0, G, 0)
    _dense.relu_backward(G, A, n_threads)
    np.testing.assert_array_equal(G, expected)


@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("n_classes, n_unseen", [(2, 0), (5, 2), (37, 11), (100, 0)])
def test_soft_label_cross_entropy_matches_reference(n_threads, n_classes, n_unseen, rng):
    n = 64
    logits = (3 * rng.randn(n, n_classes)).astype(np.float32)
    unseen_ids = np.sort(rng.choice(n_classes, n_unseen, replace=False)).astype(np.int32)
    seen_ids = np.setdiff1d(np.arange(n_classes), unseen_ids)
    targets = rng.choice(seen_ids, n).astype(np.int32)
    q = 0.3 if n_unseen else 0.0
    U = rng.rand(n_classes, n_unseen)
    U = (q * U / np.maximum(U.sum(1, keepdims=True), 1e-12)).astype(np.float32)
    U[unseen_ids] = 0
    weights = rng.rand(n).astype(np.float32)
    grad = np.empty_like(logits)
    losses = np.empty(n, dtype=np.float32)
    _dense.soft_label_cross_entropy(logits, targets, np.float32(1 - q), U, unseen_ids,
                                    weights, np.float32(1 / n), grad, losses, n_threads)
    ref_losses, ref_grad = _ref_soft_label_cross_entropy(
        logits, targets, 1 - q, U.astype(np.float64), unseen_ids, weights, 1 / n)
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("n", [0, 5, 16384, 40000])
@pytest.mark.parametrize("decay", [0.0, 0.01])
def test_adam_step_matches_reference(n_threads, n, decay, rng):
    w, m, g = (rng.randn(n).astype(np.float32) for _ in range(3))
    v = rng.rand(n).astype(np.float32)
    ref_w, ref_m, ref_v = _ref_adam(w.astype(np.float64), m, v, g, 3, 0.01, 0.9, 0.999,
                                    1e-8, decay)
    _dense.adam_step(w, m, v, g, 3, 0.01, 0.9, 0.999, 1e-8, decay, n_threads)
    np.testing.assert_allclose(w, ref_w, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(m, ref_m, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(v, ref_v, rtol=1e-5, atol=1e-6)
    assert not g.any()


@pytest.mark.skipif(FORCED is not None, reason="already inside a forced subprocess")
@pytest.mark.skipif(_simd.active_isa() == "scalar", reason="the portable path is active")
def test_kernels_on_the_portable_path():
    """The kernel tests above, in a fresh interpreter on the portable variant."""
    result = subprocess.run(
        [sys.executable, "-m", "pytest", __file__, "-q", "-x", "-p", "no:cacheprovider",
         "-k", "matches_reference or gradient"],
        env={**os.environ, _simd.ISA_ENV_VAR: "scalar"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


# ---------------------------------------------------------------- model


def _zsl_problem(rng, n=600, n_classes=6, n_unseen=2, n_attributes=10, n_features=30,
                 noise=0.3):
    """Images are a linear map of their class's attributes plus noise."""
    A = rng.randn(n_classes, n_attributes)
    P = rng.randn(n_attributes, n_features)
    classes = np.arange(n_classes)
    seen = classes[: n_classes - n_unseen]

    def draw(labels):
        return A[labels] @ P + noise * rng.randn(len(labels), n_features)

    y = rng.choice(seen, n)
    y_unseen = rng.choice(classes[n_classes - n_unseen:], n // 3) if n_unseen else y[:0]
    return A, draw(y), y, draw(y_unseen), y_unseen


def test_gradients_match_finite_differences(rng):
    A, X, y, _, _ = _zsl_problem(rng, n=20)
    clf = ZeroShotSoftLabelClassifier(A, hidden_layer_sizes=(7, 5), max_iter=1,
                                      random_state=0, unseen_mass=0.4).fit(X, y)
    Xb = np.ascontiguousarray(X[:8], dtype=np.float32)
    ids = clf._encode_y(y[:8])
    w = rng.rand(8).astype(np.float32)
    _, grads = clf._gradients(Xb, ids, w, 1)
    params = clf.coefs_ + clf.intercepts_

    def loss():
        losses, _ = clf._loss_and_grad(clf._forward(Xb, 1)[1], ids, w, 1)
        return float(np.dot(losses.astype(np.float64), w)) / len(ids)

    for p, g in zip(params, grads, strict=True):
        for flat in rng.choice(p.size, 5, replace=False):
            i = np.unravel_index(flat, p.shape)
            old = p[i]
            p[i] = old + 1e-2
            up = loss()
            p[i] = old - 1e-2
            down = loss()
            p[i] = old
            assert abs((up - down) / 2e-2 - g[i]) < 2e-3 + 0.05 * abs(g[i])


def test_soft_label_targets_follow_the_definition():
    A = np.array([[1.0, 0], [0, 1], [1, 0.1], [0.1, 1]])
    seen = np.array([True, True, False, False])
    T = soft_label_targets(A, seen, 0.4, 0.5, "cosine")
    assert T.shape == (4, 2)
    np.testing.assert_allclose(T[:2].sum(1), 0.4)
    np.testing.assert_array_equal(T[2:], 0)
    # class 0 is most like unseen class 2, class 1 like unseen class 3
    assert T[0, 0] > T[0, 1] and T[1, 1] > T[1, 0]
    sims = np.array([A[0] @ A[2] / np.linalg.norm(A[2]), A[0] @ A[3] / np.linalg.norm(A[3])])
    e = np.exp(sims / 0.5)
    np.testing.assert_allclose(T[0], 0.4 * e / e.sum())
    for how in ("dot", "euclidean"):
        T = soft_label_targets(A, seen, 0.4, 0.5, how)
        assert T[0, 0] > T[0, 1] and T[1, 1] > T[1, 0]
        np.testing.assert_allclose(T[:2].sum(1), 0.4)


def test_soft_labels_over_all_classes_follow_the_definition():
    A = np.array([[1.0, 0], [0, 1], [1, 0.1], [0.1, 1]])
    seen = np.array([True, True, True, False])
    T = soft_label_targets(A, seen, 0.4, 0.5, "cosine", spread="all")
    assert T.shape == (4, 4)
    np.testing.assert_allclose(T[:3].sum(1), 0.4)
    np.testing.assert_array_equal(np.diag(T), 0)
    np.testing.assert_array_equal(T[3], 0)
    An = A / np.linalg.norm(A, axis=1, keepdims=True)
    e = np.exp(An[0] @ An[1:].T / 0.5)
    np.testing.assert_allclose(T[0, 1:], 0.4 * e / e.sum())
    # seen class 0 gives most to seen class 2, its near twin
    assert T[0, 2] == T[0].max()
    # no unseen class: nowhere to move the mass
    assert soft_label_targets(A, np.ones(4, bool), 0.4, 0.5, "cosine", "all").shape == (4, 0)


def test_soft_labels_over_all_classes_match_the_dense_reference(rng):
    A, X, y, _, _ = _zsl_problem(rng, n=40)
    clf = ZeroShotSoftLabelClassifier(A, hidden_layer_sizes=(8,), max_iter=1,
                                      calibration_gamma=0.0, random_state=0).fit(X, y)
    np.testing.assert_array_equal(clf._unseen_ids, np.arange(6))
    logits = rng.randn(7, 6).astype(np.float32)
    ids = clf._encode_y(y[:7])
    losses, grad = clf._loss_and_grad(logits, ids, np.ones(7, np.float32), 1)
    ref_losses, ref_grad = _ref_soft_label_cross_entropy(
        logits, ids, clf._target_mass, clf.soft_label_targets_, clf._unseen_ids,
        np.ones(7), 1 / 7)
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-5, atol=1e-6)


def test_no_unseen_classes_keeps_one_hot_targets(rng):
    A, X, y, _, _ = _zsl_problem(rng, n=100, n_unseen=0)
    clf = ZeroShotSoftLabelClassifier(A, unseen_mass=0.5, max_iter=1).fit(X, y)
    assert clf.unseen_classes_.size == 0
    assert clf._target_mass == 1.0 and clf.soft_label_targets_.shape == (6, 0)
    # nothing to calibrate: no copies trained
    assert clf.calibration_gamma_ == 0.0 and clf.calibration_score_ is None


def test_auto_calibration_balances_seen_and_unseen_accuracy():
    A, X, y, Xu, yu = _zsl_problem(np.random.RandomState(2), n_classes=8, n_unseen=3)
    kw = dict(hidden_layer_sizes=(32,), max_iter=10, unseen_mass=0.0, random_state=0)
    raw = ZeroShotSoftLabelClassifier(A, calibration_gamma=0.0, **kw).fit(X, y)
    auto = ZeroShotSoftLabelClassifier(A, **kw).fit(X, y)
    # same training, only the penalty differs
    np.testing.assert_array_equal(auto.coefs_[0], raw.coefs_[0])
    assert auto.calibration_gamma_ > 0 and 0 < auto.calibration_score_ <= 1
    assert raw.calibration_gamma_ == 0.0 and raw.calibration_score_ is None
    X_all, y_all = np.vstack([X, Xu]), np.concatenate([y, yu])
    unseen = [5, 6, 7]
    h_raw = gzsl_scores(y_all, raw.predict(X_all), unseen_classes=unseen).harmonic
    h_auto = gzsl_scores(y_all, auto.predict(X_all), unseen_classes=unseen).harmonic
    assert h_raw < 0.1 and h_auto > h_raw + 0.2
    # deterministic under random_state
    assert clone(auto).fit(X, y).calibration_gamma_ == auto.calibration_gamma_
    # a number set after fitting is used as it is
    auto.set_params(calibration_gamma=0.0)
    np.testing.assert_array_equal(auto.predict(Xu), raw.predict(Xu))


def test_partial_fit_keeps_the_last_chosen_calibration(rng):
    A, X, y, _, _ = _zsl_problem(rng, n_classes=8, n_unseen=3, n=300)
    clf = ZeroShotSoftLabelClassifier(A, hidden_layer_sizes=(8,), max_iter=2, random_state=0)
    assert clone(clf).partial_fit(X, y).calibration_gamma_ == 0.0
    gamma = clf.fit(X, y).calibration_gamma_
    assert clf.partial_fit(X, y).calibration_gamma_ == gamma


def test_soft_labels_reach_unseen_classes(rng):
    # the original method: mass to the unseen classes only, no calibration, one network
    A, X, y, Xu, yu = _zsl_problem(rng)
    kw = dict(hidden_layer_sizes=(64,), max_iter=30, random_state=0, temperature=0.2,
              soft_label_classes="unseen", calibration_gamma=0.0, hard_label_ensemble=False)
    soft = ZeroShotSoftLabelClassifier(A, unseen_mass=0.3, prediction_scope="unseen", **kw)
    soft.fit(X, y)
    np.testing.assert_array_equal(soft.unseen_classes_, [4, 5])
    assert set(np.unique(soft.predict(Xu))) <= {4, 5}
    assert soft.score(Xu, yu) > 0.6  # chance: 0.5
    # GZSL: hard labels never predict an unseen class; soft labels do
    hard = ZeroShotSoftLabelClassifier(A, unseen_mass=0.0, **kw).fit(X, y)
    assert np.isin(hard.predict(Xu), [4, 5]).mean() < 0.1
    soft.set_params(prediction_scope="all")
    assert np.isin(soft.predict(Xu), [4, 5]).mean() > 0.3
    assert soft.score(X, y) > 0.9


def test_calibration_gamma_moves_predictions_to_unseen(rng):
    A, X, y, Xu, _ = _zsl_problem(rng)
    clf = ZeroShotSoftLabelClassifier(A, hidden_layer_sizes=(32,), max_iter=10,
                                      unseen_mass=0.0, calibration_gamma=0.0,
                                      random_state=0).fit(X, y)
    low = np.isin(clf.predict(Xu), [4, 5]).mean()
    clf.set_params(calibration_gamma=1e4)
    assert np.isin(clf.predict(Xu), [4, 5]).all() and low < 1
    proba = clf.predict_proba(Xu)
    np.testing.assert_allclose(proba.sum(1), 1)
    clf.set_params(calibration_gamma=0.0, prediction_scope="seen")
    assert not np.isin(clf.predict(Xu), [4, 5]).any()
    assert (clf.predict_proba(Xu)[:, 4:] == 0).all()
    assert np.isneginf(clf.decision_function(Xu)[:, 4:]).all()


def _spread(scores):
    centred = scores - scores.mean(axis=1, keepdims=True)
    return centred.std()


def test_hard_label_ensemble_averages_both_networks(rng):
    A, X, y, Xu, _ = _zsl_problem(rng, n_classes=8, n_unseen=3, n=400)
    kw = dict(hidden_layer_sizes=(16,), max_iter=3, random_state=0)
    clf = ZeroShotSoftLabelClassifier(A, **kw).fit(X, y)
    hard = clf.hard_label_estimator_
    assert isinstance(hard, ZeroShotSoftLabelClassifier)
    assert hard.unseen_mass == 0.0 and not hard.hard_label_ensemble
    assert hard.hidden_layer_sizes == (16,) and hard.max_iter == 3
    np.testing.assert_array_equal(hard.seen_classes_, clf.seen_classes_)
    # both chose their own penalty
    assert clf.calibration_score_ is not None and hard.calibration_score_ is not None
    assert clf.calibration_gamma_ != hard.calibration_gamma_
    # the soft network is the one a fit without the ensemble trains
    alone = ZeroShotSoftLabelClassifier(A, hard_label_ensemble=False, **kw).fit(X, y)
    np.testing.assert_array_equal(alone.coefs_[0], clf.coefs_[0])
    assert alone.hard_label_estimator_ is None and alone.score_scales_ is None
    # the scales are the spreads of the training rows' raw scores
    Xf = X.astype(np.float32)
    np.testing.assert_allclose(
        clf.score_scales_, [_spread(clf._logits(Xf)), _spread(hard._logits(Xf))], rtol=1e-12)
    # reference: the mean of the calibrated scores, the hard ones rescaled
    soft_scores = alone.decision_function(Xu)
    hard_scores = hard.decision_function(Xu)
    ratio = clf.score_scales_[0] / clf.score_scales_[1]
    np.testing.assert_allclose(clf.decision_function(Xu),
                               0.5 * (soft_scores + ratio * hard_scores), rtol=1e-12)
    assert clf.calibration_gamma_ == pytest.approx(
        0.5 * (alone.calibration_gamma_ + ratio * hard.calibration_gamma_), rel=1e-12)
    # a penalty set by hand is the ensemble's: subtracted from the mean
    clf.set_params(calibration_gamma=0.25)
    Xu32 = Xu.astype(np.float32)
    raw = 0.5 * (alone._logits(Xu32) + ratio * hard._logits(Xu32))
    raw[:, :5] -= 0.25
    np.testing.assert_allclose(clf.decision_function(Xu), raw, rtol=1e-12)
    proba = clf.predict_proba(Xu)
    np.testing.assert_allclose(proba.sum(axis=1), 1)


@pytest.mark.parametrize("kw", [
    dict(hard_label_ensemble=False),
    dict(unseen_mass=0.0),   # hard labels already
    dict(n_unseen=0),        # no unseen class: the soft labels are one-hot
    dict(attributes=None),   # a plain softmax network
])
def test_hard_label_ensemble_only_where_soft_labels_move_mass(kw, rng):
    kw = dict(kw)
    A, X, y, _, _ = _zsl_problem(rng, n=200, n_unseen=kw.pop("n_unseen", 2))
    A = kw.pop("attributes", A)
    clf = ZeroShotSoftLabelClassifier(A, hidden_layer_sizes=(8,), max_iter=2,
                                      random_state=0, **kw).fit(X, y)
    assert clf.hard_label_estimator_ is None and clf.score_scales_ is None


def test_hard_label_ensemble_trains_on_in_partial_fit_and_warm_start(rng):
    A, X, y, _, _ = _zsl_problem(rng, n=300)
    clf = ZeroShotSoftLabelClassifier(A, hidden_layer_sizes=(8,), random_state=0)
    clf.partial_fit(X[:150], y[:150])
    hard = clf.hard_label_estimator_
    clf.partial_fit(X[150:], y[150:])
    assert clf.hard_label_estimator_ is hard and hard.t_ == clf.t_ == 300
    assert hard.n_iter_ == 2 and hard.calibration_gamma_ == 0.0
    warm = ZeroShotSoftLabelClassifier(A, hidden_layer_sizes=(8,), max_iter=2, tol=0,
                                       warm_start=True, random_state=0).fit(X, y)
    hard = warm.hard_label_estimator_
    warm.set_params(max_iter=3).fit(X, y)
    assert warm.hard_label_estimator_ is hard and hard.n_iter_ == 5 and hard.max_iter == 3
    # a fresh fit starts a new pair
    clf.fit(X, y)
    assert clf.hard_label_estimator_ is not hard and clf.hard_label_estimator_.n_iter_ <= 10


def test_scores_of_a_row_do_not_depend_on_its_batch(rng):
    A, X, y, Xu, _ = _zsl_problem(rng, n_features=300)
    clf = ZeroShotSoftLabelClassifier(A, hidden_layer_sizes=(256, 64), max_iter=3,
                                      random_state=0).fit(X, y)
    scores = clf.decision_function(X)
    assert scores.dtype == np.float64
    for i in (0, 7, 599):
        np.testing.assert_allclose(clf.decision_function(X[i : i + 1])[0], scores[i],
                                   rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(clf.predict(X[::-1]), clf.predict(X)[::-1])


def test_classes_label_the_attribute_rows(rng):
    A, X, y, Xu, yu = _zsl_problem(rng)
    names = np.array(["f", "e", "d", "c", "b", "a"])
    # a fixed penalty: "auto" draws its pseudo-unseen classes in class order
    clf = ZeroShotSoftLabelClassifier(A, names, hidden_layer_sizes=(32,), max_iter=15,
                                      calibration_gamma=0.5, random_state=0).fit(X, names[y])
    np.testing.assert_array_equal(clf.classes_, sorted(names))
    np.testing.assert_array_equal(clf.unseen_classes_, ["a", "b"])
    # row of "a" is A[5]: attributes follow their labels through the sort
    np.testing.assert_allclose(clf.class_attributes_[0], A[5] / np.linalg.norm(A[5]),
                               rtol=1e-6)
    ref = ZeroShotSoftLabelClassifier(A, hidden_layer_sizes=(32,), max_iter=15,
                                      calibration_gamma=0.5, random_state=0).fit(X, y)
    np.testing.assert_array_equal(clf.predict(Xu), names[ref.predict(Xu)])


def test_none_attributes_is_a_softmax_classifier(rng):
    from sklearn.datasets import load_iris

    X, y = load_iris(return_X_y=True)
    clf = make_pipeline(StandardScaler(), ZeroShotSoftLabelClassifier(
        hidden_layer_sizes=(16,), max_iter=60, batch_size=16, random_state=0))
    assert clf.fit(X, y).score(X, y) > 0.9
    assert clf[-1].unseen_classes_.size == 0
    np.testing.assert_array_equal(clf[-1].class_attributes_, np.eye(3))


def test_grid_search_tunes_unseen_mass(rng):
    A, X, y, _, _ = _zsl_problem(rng, n=200)
    grid = GridSearchCV(
        ZeroShotSoftLabelClassifier(A, hidden_layer_sizes=(8,), max_iter=3),
        {"unseen_mass": [0.0, 0.2], "temperature": [0.1, 1.0]}, cv=2,
    ).fit(X, y)
    assert grid.best_params_["unseen_mass"] in (0.0, 0.2)


@pytest.mark.parametrize("sparse", [False, True])
def test_round_trips_are_identical(sparse, rng):
    A, X, y, Xu, _ = _zsl_problem(rng, n=200)
    if sparse:
        X, Xu = sp.csr_matrix(X), sp.csr_matrix(Xu)
    clf = ZeroShotSoftLabelClassifier(A, hidden_layer_sizes=(16,), max_iter=3,
                                      random_state=0, calibration_gamma=0.5).fit(X, y)
    expected = clf.predict_proba(Xu)
    buffer = io.BytesIO()
    joblib.dump(clf, buffer)
    buffer.seek(0)
    for loaded in (pickle.loads(pickle.dumps(clf)), joblib.load(buffer)):
        np.testing.assert_array_equal(loaded.predict_proba(Xu), expected)
    refit = clone(clf).fit(X, y)
    np.testing.assert_array_equal(refit.predict_proba(Xu), expected)


def test_sparse_input_trains_like_dense(rng):
    A, X, y, Xu, _ = _zsl_problem(rng, n=200)
    kw = dict(hidden_layer_sizes=(16,), max_iter=3, random_state=0)
    dense = ZeroShotSoftLabelClassifier(A, **kw).fit(X, y)
    sparse = ZeroShotSoftLabelClassifier(A, **kw).fit(sp.csr_matrix(X), y)
    np.testing.assert_allclose(sparse.predict_proba(Xu), dense.predict_proba(Xu),
                               rtol=1e-3, atol=1e-5)


def test_partial_fit_streams(rng):
    A, X, y, Xu, yu = _zsl_problem(rng)
    clf = ZeroShotSoftLabelClassifier(A, hidden_layer_sizes=(64,), random_state=0,
                                      prediction_scope="unseen", temperature=0.2)
    for _ in range(30):
        for s in range(0, len(y), 200):
            clf.partial_fit(X[s : s + 200], y[s : s + 200])
    assert clf.n_iter_ == 30 * 3 and clf.t_ == 30 * len(y)
    assert clf.score(Xu, yu) > 0.6
    with pytest.raises(ValueError, match="not the same as on the first call"):
        clf.partial_fit(X, y, classes=[0, 1])
    with pytest.raises(ValueError, match="labels of class_attributes' rows"):
        ZeroShotSoftLabelClassifier(A).partial_fit(X, y, classes=[0, 1])
    no_attr = ZeroShotSoftLabelClassifier(hidden_layer_sizes=(4,))
    with pytest.raises(ValueError, match="classes must be passed"):
        no_attr.partial_fit(X, y)
    no_attr.partial_fit(X[y < 2], y[y < 2], classes=np.arange(4))
    no_attr.partial_fit(X, y)
    np.testing.assert_array_equal(no_attr.seen_classes_, np.arange(4))


def test_warm_start_continues(rng):
    A, X, y, _, _ = _zsl_problem(rng, n=200)
    clf = ZeroShotSoftLabelClassifier(A, hidden_layer_sizes=(8,), max_iter=2,
                                      warm_start=True, random_state=0, tol=0)
    clf.fit(X, y)
    first = clf.coefs_[0].copy()
    clf.fit(X, y)
    assert clf.n_iter_ == 4 and len(clf.loss_curve_) == 4
    assert not np.array_equal(first, clf.coefs_[0])


def test_early_stopping_records_validation_scores(rng):
    A, X, y, _, _ = _zsl_problem(rng)
    clf = ZeroShotSoftLabelClassifier(A, hidden_layer_sizes=(16,), max_iter=200,
                                      early_stopping=True, n_iter_no_change=2,
                                      random_state=0).fit(X, y)
    assert clf.n_iter_ < 200
    assert len(clf.validation_scores_) == clf.n_iter_
    assert clf.best_validation_score_ == max(clf.validation_scores_) > 0.8


def test_sample_weight_zero_ignores_rows(rng):
    A, X, y, _, _ = _zsl_problem(rng, n=300, n_unseen=0, noise=0.1)
    y_noisy = y.copy()
    y_noisy[:150] = (y[:150] + 1) % 6
    w = np.r_[np.zeros(150), np.ones(150)]
    clf = ZeroShotSoftLabelClassifier(A, hidden_layer_sizes=(16,), max_iter=20,
                                      random_state=0).fit(X, y_noisy, sample_weight=w)
    assert clf.score(X[:150], y[:150]) > 0.9


def test_n_jobs_gives_the_same_model(rng):
    A, X, y, Xu, _ = _zsl_problem(rng, n=300)
    kw = dict(hidden_layer_sizes=(300,), max_iter=2, random_state=0, batch_size=256)
    one = ZeroShotSoftLabelClassifier(A, n_jobs=1, **kw).fit(X, y)
    two = ZeroShotSoftLabelClassifier(A, n_jobs=2, **kw).fit(X, y)
    np.testing.assert_allclose(one.predict_proba(Xu), two.predict_proba(Xu), rtol=1e-4,
                               atol=1e-6)


@pytest.mark.parametrize("sampler", ["uniform", "nw-sketch", "exact-loss"])
def test_trains_through_every_sampler(sampler, rng):
    A, X, y, _, _ = _zsl_problem(rng, n=300, n_unseen=0)
    kw = dict(hidden_layer_sizes=(16,), max_iter=15, learning_rate=1e-2, random_state=0)
    clf = ZeroShotSoftLabelClassifier(A, sampler=sampler, **kw).fit(X, y)
    assert type(clf.sampler_).__name__ == type(check_sampler(sampler)).__name__
    assert clf.score(X, y) > 0.9
    again = ZeroShotSoftLabelClassifier(A, sampler=sampler, **kw).fit(X, y)
    np.testing.assert_array_equal(again.predict_proba(X), clf.predict_proba(X))
    loaded = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))


def test_bad_sampler(rng):
    A, X, y, _, _ = _zsl_problem(rng, n=50)
    with pytest.raises(ValueError, match="sampler"):
        ZeroShotSoftLabelClassifier(A, sampler="best").fit(X, y)


def test_verbose_prints_epochs(rng, capsys):
    A, X, y, _, _ = _zsl_problem(rng, n=100)
    ZeroShotSoftLabelClassifier(A, hidden_layer_sizes=(4,), max_iter=2, verbose=1).fit(X, y)
    out = capsys.readouterr().out
    # two epochs of each network of the ensemble
    assert out.count("Iteration") == 4
    assert out.index("Hard-label network") > out.index("Iteration 2")


# ---------------------------------------------------------------- bad input


def test_label_without_attribute_row(rng):
    A, X, y, _, _ = _zsl_problem(rng, n=50)
    y = y.copy()
    y[3] = 17
    with pytest.raises(ValueError, match=r"class_attributes has no row for.*17"):
        ZeroShotSoftLabelClassifier(A).fit(X, y)


def test_nan_attributes():
    A = np.ones((3, 4))
    A[1, 2] = np.nan
    with pytest.raises(ValueError, match="class_attributes.*NaN"):
        ZeroShotSoftLabelClassifier(A).fit(np.ones((4, 2)), [0, 1, 0, 1])


@pytest.mark.parametrize(
    "attributes, classes, match",
    [
        (np.ones((3, 4)), [0, 1], "one class label per row"),
        (np.ones((3, 4)), [0, 1, 1], "duplicate"),
        (np.ones(4), None, "2D array"),
        (np.ones((1, 4)), None, "at least 2 rows"),
        (None, [0, 1], "classes requires class_attributes"),
    ],
)
def test_mismatched_shapes(attributes, classes, match):
    with pytest.raises(ValueError, match=match):
        ZeroShotSoftLabelClassifier(attributes, classes).fit(np.ones((4, 2)), [0, 1, 0, 1])


def test_mismatched_rows_and_features(rng):
    A, X, y, _, _ = _zsl_problem(rng, n=50)
    with pytest.raises(ValueError, match="inconsistent numbers of samples|samples"):
        ZeroShotSoftLabelClassifier(A, max_iter=1).fit(X, y[:-1])
    clf = ZeroShotSoftLabelClassifier(A, max_iter=1).fit(X, y)
    with pytest.raises(ValueError, match="features"):
        clf.predict(X[:, :5])


def test_single_seen_class(rng):
    A, X, y, _, _ = _zsl_problem(rng, n=50)
    with pytest.raises(ValueError, match="seen classes has to be greater than one"):
        ZeroShotSoftLabelClassifier(A).fit(X, np.zeros(50, dtype=int))


def test_unseen_scope_without_unseen_classes(rng):
    A, X, y, _, _ = _zsl_problem(rng, n=100, n_unseen=0)
    clf = ZeroShotSoftLabelClassifier(A, max_iter=1, prediction_scope="unseen").fit(X, y)
    with pytest.raises(ValueError, match="no unseen classes"):
        clf.predict(X)


def test_bad_hidden_layer_sizes(rng):
    A, X, y, _, _ = _zsl_problem(rng, n=50)
    with pytest.raises(ValueError, match="hidden_layer_sizes"):
        ZeroShotSoftLabelClassifier(A, hidden_layer_sizes=(4, 0)).fit(X, y)


def test_example_exits_cleanly_without_data(tmp_path):
    example = os.path.join(os.path.dirname(__file__), os.pardir, "examples",
                           "plot_zeroshot_fashion_mnist.py")
    result = subprocess.run(
        [sys.executable, example],
        env={**os.environ, "SKSKETCH_DATA_DIR": str(tmp_path), "MPLBACKEND": "Agg"},
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Fashion-MNIST not found" in result.stdout
