"""The click-through (hashed categorical fields) generator."""

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.special import logit
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from sksketch.datasets import make_click_through
from sksketch.datasets._synthetic import _splitmix64

SMALL = dict(n_fields=8, max_cardinality=2000, n_features=2**16, n_interactions=5)


def test_shapes_dtypes_and_format():
    X, y = make_click_through(3000, **SMALL, random_state=0)
    assert isinstance(X, sp.csr_matrix)
    assert X.shape == (3000, 2**16)
    assert X.dtype == np.float32
    assert X.indices.dtype == np.int32
    assert y.shape == (3000,) and y.dtype == np.int64
    assert set(np.unique(y)) <= {0, 1}
    X.check_format(full_check=True)
    assert X.has_canonical_format
    for i in range(0, 3000, 7):
        row = X.indices[X.indptr[i] : X.indptr[i + 1]]
        assert np.all(np.diff(row) > 0)  # sorted and unique
    assert np.diff(X.indptr).max() <= 8
    np.testing.assert_array_equal(np.asarray(X.sum(axis=1)).ravel(), 8.0)


def test_collisions_are_summed():
    # 10 fields hashed into 4 columns: every row has collisions
    X, _ = make_click_through(500, n_fields=10, max_cardinality=50, n_features=4,
                              n_interactions=0, random_state=0)
    X.check_format(full_check=True)
    assert X.has_canonical_format
    assert np.diff(X.indptr).max() <= 4
    assert X.data.max() > 1
    np.testing.assert_array_equal(np.asarray(X.sum(axis=1)).ravel(), 10.0)


def test_default_shape():
    X, y, proba = make_click_through(200, return_proba=True, random_state=0)
    assert X.shape == (200, 2**20)
    assert np.asarray(X.sum(axis=1)).ravel().tolist() == [20.0] * 200
    assert proba.dtype == np.float64 and proba.shape == (200,)


def test_deterministic_and_seed_dependent():
    X1, y1, p1 = make_click_through(2000, **SMALL, return_proba=True, random_state=3)
    X2, y2, p2 = make_click_through(2000, **SMALL, return_proba=True,
                                    random_state=np.random.RandomState(3))
    for a, b in [(X1.indptr, X2.indptr), (X1.indices, X2.indices), (X1.data, X2.data),
                 (y1, y2), (p1, p2)]:
        np.testing.assert_array_equal(a, b)
    X3, y3, p3 = make_click_through(2000, **SMALL, return_proba=True, random_state=4)
    assert (X1 != X3).nnz > 0
    assert not np.array_equal(y1, y3)
    assert not np.allclose(p1, p3)


@pytest.mark.parametrize("rate", [0.03, 0.15, 0.5])
def test_positive_rate(rate):
    _, y, proba = make_click_through(50_000, **SMALL, positive_rate=rate,
                                     return_proba=True, random_state=0)
    assert proba.mean() == pytest.approx(rate, abs=1e-9)
    # 6 standard deviations of the mean of 50,000 Bernoulli draws
    assert abs(y.mean() - rate) < 6 * np.sqrt(rate * (1 - rate) / 50_000)


def test_no_effects_gives_constant_probability():
    _, _, proba = make_click_through(1000, **SMALL, main_scale=0.0, interaction_scale=0.0,
                                     return_proba=True, random_state=0)
    np.testing.assert_allclose(proba, 0.15)


def _column_counts(X, cols):
    """How many rows have each of the columns ``cols``."""
    seen, counts = np.unique(X.indices, return_counts=True)
    pos = np.minimum(np.searchsorted(seen, cols), seen.size - 1)
    return np.where(seen[pos] == cols, counts[pos], 0)


def test_zipf_frequencies():
    # one field: X's column of value v is the documented hash of (field 0, v)
    n, card, exponent, n_features = 50_000, 1000, 1.1, 2**30
    X, _ = make_click_through(n, n_fields=1, min_cardinality=card, max_cardinality=card,
                              n_features=n_features, zipf_exponent=exponent,
                              n_interactions=0, random_state=0)
    values = np.arange(card, dtype=np.uint64)
    key = _splitmix64(np.zeros(1, dtype=np.uint64))
    cols = (_splitmix64(key ^ values) % np.uint64(n_features)).astype(np.int64)
    assert np.unique(cols).size == card  # no collisions among these values
    counts = _column_counts(X, cols)
    assert counts.sum() == n
    expected = np.arange(1, card + 1) ** -exponent
    expected *= n / expected.sum()
    for rank in (1, 2, 10):
        assert counts[rank - 1] == pytest.approx(expected[rank - 1], rel=0.15)
    assert counts[0] > 50 * max(np.median(counts), 1)


def test_largest_field_is_skewed():
    n, card = 50_000, 10_000
    X, _ = make_click_through(n, n_fields=5, min_cardinality=3, max_cardinality=card,
                              n_interactions=0, random_state=1)
    # the largest field is the last one; its value counts, read back from X
    # (a collision with another field's value would only add to a count)
    values = np.arange(card, dtype=np.uint64)
    key = _splitmix64(np.array([4], dtype=np.uint64))
    cols = (_splitmix64(key ^ values) % np.uint64(2**20)).astype(np.int64)
    counts = _column_counts(X, cols)
    seen = counts[counts > 0]
    assert seen.size > 1000  # a long tail of values does appear
    assert counts.max() > 100 * np.median(seen)


def test_return_proba_is_consistent():
    X, y, proba = make_click_through(20_000, **SMALL, return_proba=True, random_state=0)
    X2, y2 = make_click_through(20_000, **SMALL, random_state=0)
    np.testing.assert_array_equal(y, y2)
    assert (X != X2).nnz == 0
    assert np.all((proba > 0) & (proba < 1))
    assert roc_auc_score(y, proba) > 0.7
    assert proba.mean() == pytest.approx(0.15, abs=1e-6)


def _field_effects_residual(X, proba):
    """Residual std of the best additive (linear in X) fit of the true logit."""
    used = np.unique(X.indices)
    A = np.column_stack([X[:, used].toarray(), np.ones(X.shape[0])])
    z = logit(proba)
    coef = np.linalg.lstsq(A, z, rcond=None)[0]
    return np.std(z - A @ coef)


def test_logit_is_additive_without_interactions():
    # Without interactions the true logit is exactly linear in X (no hash
    # collisions at this size); with them, a large part of it is not.
    params = dict(n_fields=5, max_cardinality=20, n_features=2**20)
    X, _, p = make_click_through(3000, **params, n_interactions=0, return_proba=True,
                                 random_state=0)
    assert _field_effects_residual(X, p) < 1e-8
    X, _, p = make_click_through(3000, **params, n_interactions=4, return_proba=True,
                                 random_state=0)
    assert _field_effects_residual(X, p) > 0.1


def test_interactions_widen_the_gap_to_bayes():
    # Same seed: same values and main effects, the interactions added or not.
    # A logistic regression on X is close to the Bayes AUC without them and
    # falls well short with them.
    params = dict(n_fields=6, max_cardinality=30, n_features=2**12, main_scale=0.5,
                  interaction_scale=0.8, random_state=0)
    gaps = {}
    for n_interactions in (0, 6):
        X, y, p = make_click_through(30_000, **params, n_interactions=n_interactions,
                                     return_proba=True)
        model = LogisticRegression(C=1.0, max_iter=500).fit(X[:20_000], y[:20_000])
        auc = roc_auc_score(y[20_000:], model.decision_function(X[20_000:]))
        gaps[n_interactions] = roc_auc_score(y[20_000:], p[20_000:]) - auc
    assert gaps[0] < 0.02
    assert gaps[6] > gaps[0] + 0.05


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(n_samples=0), "n_samples"),
        (dict(n_fields=0), "n_fields"),
        (dict(n_features=0), "n_features"),
        (dict(n_features=2**31), "n_features"),
        (dict(min_cardinality=0), "min_cardinality"),
        (dict(max_cardinality=0), "max_cardinality"),
        (dict(min_cardinality=10, max_cardinality=5), "min_cardinality .* max_cardinality"),
        (dict(zipf_exponent=-1.0), "zipf_exponent"),
        (dict(positive_rate=0.0), "positive_rate"),
        (dict(positive_rate=1.0), "positive_rate"),
        (dict(n_interactions=-1), "n_interactions"),
        (dict(n_fields=4, n_interactions=7), r"n_interactions \(7\).*pairs.* 6"),
        (dict(interaction_scale=-0.1), "interaction_scale"),
        (dict(main_scale=-0.1), "main_scale"),
        (dict(return_proba="yes"), "return_proba"),
        (dict(random_state="seed"), "random_state"),
    ],
)
def test_validation(kwargs, message):
    kwargs = {"n_samples": 10, **kwargs}
    with pytest.raises(ValueError, match=message):
        make_click_through(**kwargs)
