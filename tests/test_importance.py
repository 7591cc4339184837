"""ImportanceSampledClassifier: sampler-drawn batches around any partial_fit classifier."""

import pickle

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.base import clone
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression, Perceptron, SGDClassifier
from sklearn.naive_bayes import GaussianNB
from sklearn.neural_network import MLPClassifier

from sksketch import ImportanceSampledClassifier
from sksketch.sampling import NWSketchSampler, UniformSampler


@pytest.fixture(scope="module")
def data():
    X, y = make_classification(
        600, 12, n_informative=6, n_classes=3, n_clusters_per_class=2, random_state=0
    )
    return X, y


@pytest.mark.parametrize("sampler", [None, "uniform", "nw-sketch", "exact-loss"])
def test_every_sampler_trains(data, sampler):
    X, y = data
    clf = ImportanceSampledClassifier(
        sampler=sampler, batch_size=64, max_iter=6, random_state=0
    ).fit(X, y)
    assert clf.score(X, y) > 0.5
    assert clf.n_iter_ == 6
    assert len(clf.effective_sample_size_) == len(clf.sampler_time_) == 6
    assert all(0 < ess <= len(X) * (1 + 1e-6) for ess in clf.effective_sample_size_)
    np.testing.assert_array_equal(clf.classes_, np.unique(y))


def test_nw_sketch_draws_unequal_weights_and_records_losses(data):
    X, y = data
    clf = ImportanceSampledClassifier(
        sampler=NWSketchSampler(uniform_mix=0.1), batch_size=64, max_iter=4, random_state=0
    ).fit(X, y)
    assert clf.effective_sample_size_[0] == pytest.approx(len(X))
    assert clf.effective_sample_size_[-1] < len(X)
    assert np.all(np.isfinite(clf.loss_curve_))
    assert clf.sampler_.sketch_.counts.sum() > 0


def test_dense_and_csr_agree(data):
    X, y = data
    # SGDClassifier decays its intercept differently on sparse input; an MLP does not
    make = lambda: ImportanceSampledClassifier(  # noqa: E731
        MLPClassifier(hidden_layer_sizes=(8,)), sampler="nw-sketch", max_iter=3, random_state=1
    )
    a = make().fit(X, y)
    b = make().fit(sp.csr_matrix(X), y)
    np.testing.assert_allclose(a.sampler_.probabilities_, b.sampler_.probabilities_, rtol=1e-4)
    np.testing.assert_allclose(a.predict_proba(X), b.predict_proba(sp.csr_matrix(X)), atol=1e-4)


def test_reproducible_and_pickles(data):
    X, y = data
    make = lambda: ImportanceSampledClassifier(  # noqa: E731
        MLPClassifier(hidden_layer_sizes=(8,)), sampler="nw-sketch", max_iter=3, random_state=3
    )
    a, b = make().fit(X, y), make().fit(X, y)
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
    restored = pickle.loads(pickle.dumps(a))
    np.testing.assert_array_equal(restored.predict_proba(X), a.predict_proba(X))
    np.testing.assert_array_equal(
        restored.sampler_.sketch_.sums, a.sampler_.sketch_.sums
    )
    assert not hasattr(clone(a), "estimator_")


def test_partial_fit_keeps_the_sketch(data):
    X, y = data
    clf = ImportanceSampledClassifier(sampler="nw-sketch", random_state=0)
    with pytest.raises(ValueError, match="classes"):
        clf.partial_fit(X, y)
    clf.partial_fit(X[:300], y[:300], classes=np.unique(y))
    sampler = clf.sampler_
    counts = sampler.sketch_.counts.sum()
    clf.partial_fit(X[300:], y[300:])
    assert clf.sampler_ is sampler
    assert sampler.sketch_.counts.sum() > counts
    assert clf.n_iter_ == 2
    with pytest.raises(ValueError, match="classes"):
        clf.partial_fit(X, y, classes=[0, 1])


def test_sample_weight_multiplies_importance_weights(data):
    X, y = data
    seen = []

    class Recording(SGDClassifier):
        def partial_fit(self, X, y, classes=None, sample_weight=None):
            seen.append(np.asarray(sample_weight))
            return super().partial_fit(X, y, classes=classes, sample_weight=sample_weight)

    sw = np.full(len(X), 3.0)
    ImportanceSampledClassifier(
        Recording(loss="log_loss"), sampler=UniformSampler(), max_iter=1, random_state=0
    ).fit(X, y, sample_weight=sw)
    assert np.all(np.concatenate(seen) == 3.0)


def test_estimator_without_sample_weight_warns(data):
    X, y = data

    class NoWeights(SGDClassifier):
        def partial_fit(self, X, y, classes=None):
            return super().partial_fit(X, y, classes=classes)

    with pytest.warns(UserWarning, match="sample_weight"):
        ImportanceSampledClassifier(
            NoWeights(loss="log_loss"), sampler="nw-sketch", max_iter=1
        ).fit(X, y)


@pytest.mark.parametrize(
    "params, error, match",
    [
        ({"batch_size": 0}, ValueError, "batch_size"),
        ({"max_iter": 1.5}, ValueError, "max_iter"),
        ({"estimator": LogisticRegression()}, TypeError, "partial_fit"),
        ({"estimator": Perceptron()}, TypeError, "predict_proba"),
        ({"sampler": "sketchy"}, ValueError, "sampler"),
    ],
)
def test_bad_parameters(data, params, error, match):
    X, y = data
    with pytest.raises(error, match=match):
        ImportanceSampledClassifier(**params).fit(X, y)


def test_gaussian_nb_works_as_inner_model(data):
    X, y = data
    clf = ImportanceSampledClassifier(GaussianNB(), sampler="exact-loss", max_iter=2).fit(X, y)
    assert clf.predict_proba(X).shape == (len(X), 3)
    assert not hasattr(clf, "decision_function")


def test_multilabel_targets_with_mlp():
    X, _ = make_classification(300, 10, random_state=0)
    rng = np.random.RandomState(0)
    Y = (X[:, :4] + 0.3 * rng.randn(300, 4) > 0.5).astype(int)
    Y[:, 3] = 0
    for y in (Y, sp.csr_matrix(Y)):
        clf = ImportanceSampledClassifier(
            MLPClassifier(hidden_layer_sizes=(16,), learning_rate_init=0.01),
            sampler="nw-sketch",
            batch_size=50,
            max_iter=5,
            random_state=0,
        ).fit(X, y)
        np.testing.assert_array_equal(clf.classes_, np.arange(4))
        assert clf.predict_proba(X).shape == (300, 4)
        assert np.all(np.isfinite(clf.loss_curve_)) and clf.loss_curve_[-1] < clf.loss_curve_[0]
    clf.partial_fit(X, sp.csr_matrix(Y))
    with pytest.raises(ValueError, match="multi-label"):
        clf.partial_fit(X, Y[:, 0])


def test_sampler_hashes_inputs_joined_with_labels(data):
    X, y = data
    on = ImportanceSampledClassifier(sampler="nw-sketch", max_iter=1, random_state=0).fit(X, y)
    off = ImportanceSampledClassifier(
        sampler="nw-sketch", max_iter=1, hash_labels=False, random_state=0
    ).fit(X, y)
    assert on.sampler_.sketch_.n_features == X.shape[1] + 3
    assert off.sampler_.sketch_.n_features == X.shape[1]
    rows = on._sampler_rows_cache[1]
    np.testing.assert_allclose(rows[:, : X.shape[1]], X.astype(np.float32))
    np.testing.assert_allclose(rows[np.arange(len(y)), X.shape[1] + y], on._label_scale)
    assert "_sampler_rows_cache" not in pickle.loads(pickle.dumps(on)).__dict__


def test_partial_fit_reuses_the_sampler_hashes_until_inputs_or_labels_change(data):
    X, y = data
    clf = ImportanceSampledClassifier(sampler="nw-sketch", batch_size=32, random_state=0)
    clf.partial_fit(X, y, classes=np.unique(y))
    hashed = []
    real_hash = clf.sampler_.sketch_.hash

    def counting_hash(rows, *args, **kwargs):
        hashed.append(rows.shape[0])
        return real_hash(rows, *args, **kwargs)

    clf.sampler_.sketch_.hash = counting_hash
    codes = clf.sampler_._codes.copy()
    clf.partial_fit(X, y)
    assert hashed == []
    assert not hasattr(clf.sampler_, "_rows_fingerprint")
    y2 = np.roll(y, 1)
    clf.partial_fit(X, y2)  # same inputs, other labels: other rows to hash
    assert hashed == [len(y)]
    assert not np.array_equal(clf.sampler_._codes, codes)
    X2 = X.copy()
    X2[0, 0] += 1.0
    clf.partial_fit(X2, y2)
    assert hashed == [len(y), len(y)]


def test_losses_are_the_per_row_log_loss_of_the_model():
    rng = np.random.RandomState(0)
    X = rng.randn(300, 6)
    Y = (rng.rand(300, 5) < 0.3).astype(int)
    Y[0] = 0  # a row without labels
    clf = ImportanceSampledClassifier(
        MLPClassifier(hidden_layer_sizes=(8,), random_state=0), batch_size=50, max_iter=2,
        random_state=0,
    ).fit(X, sp.csr_matrix(Y))
    proba = np.clip(clf.estimator_.predict_proba(X), 1e-7, 1 - 1e-7)
    expected = -(Y * np.log(proba) + (1 - Y) * np.log1p(-proba)).sum(axis=1)
    got = clf._losses(X, sp.csr_matrix(Y))
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    y = Y[:, 0]
    clf = ImportanceSampledClassifier(batch_size=50, max_iter=2, random_state=0).fit(X, y)
    proba = clf.estimator_.predict_proba(X)
    np.testing.assert_allclose(
        clf._losses(X, y), -np.log(np.maximum(proba[np.arange(300), y], 1e-7)), rtol=1e-5
    )


def test_sketch_learns_from_every_trained_row_scored_in_groups(data, monkeypatch):
    import sksketch._importance as importance

    X, y = data
    calls = []
    observe = NWSketchSampler.observe

    def spy(self, indices, losses):
        calls.append(len(indices))
        return observe(self, indices, losses)

    monkeypatch.setattr(NWSketchSampler, "observe", spy)
    monkeypatch.setattr(importance, "_LOSS_CHUNK", 100)
    clf = ImportanceSampledClassifier(sampler="nw-sketch", batch_size=32, max_iter=2,
                                      random_state=0).fit(X, y)
    # every drawn row is scored once per epoch: in groups of whole batches
    # (4 x 32 >= 100 rows), then the epoch's remainder
    assert calls == 2 * [128, 128, 128, 128, 600 - 4 * 128]
    assert np.all(np.isfinite(clf.loss_curve_)) and all(t > 0 for t in clf.loss_time_)


def test_label_join_matches_hstack_and_reuses_its_buffers():
    from sksketch._importance import _append_one_column

    rng = np.random.RandomState(0)
    buffers = {}
    seen = []
    for n, density in ((300, 0.1), (500, 0.05), (200, 0.05), (500, 0.0)):
        X = sp.random(n, 40, density=density, format="csr", dtype=np.float32, random_state=rng)
        codes = rng.randint(0, 3, n)
        joined = _append_one_column(X, 40 + codes, 2.5, 3, buffers)
        onehot = sp.csr_matrix(
            (np.full(n, 2.5, np.float32), codes, np.arange(n + 1)), shape=(n, 3)
        )
        expected = sp.hstack([X, onehot], format="csr")
        assert joined.shape == expected.shape and joined.has_sorted_indices
        np.testing.assert_array_equal(joined.indptr, expected.indptr)
        np.testing.assert_array_equal(joined.indices, expected.indices)
        np.testing.assert_array_equal(joined.data, expected.data)
        seen.append(buffers["indices"])
    # blocks no larger than the largest so far are written into its buffers
    assert seen[2] is seen[1] and seen[3] is seen[1]
