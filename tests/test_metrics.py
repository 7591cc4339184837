"""Ranking metrics at k: hand-worked cases, a brute-force reference, scorers."""

import math
import pickle

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.datasets import load_iris, make_multilabel_classification
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.multiclass import OneVsRestClassifier

from sksketch.metrics import (
    label_propensity,
    make_topk_scorer,
    ndcg_at_k,
    precision_at_k,
    psp_at_k,
    recall_at_k,
)

METRICS = [precision_at_k, recall_at_k, ndcg_at_k, psp_at_k]

# Three rows, four labels. Row 0 has a tie at the k=2 boundary, row 2 has no
# true label.
Y_TRUE = np.array([[1, 0, 1, 0], [0, 1, 0, 1], [0, 0, 0, 0]])
Y_SCORE = np.array(
    [
        [0.9, 0.5, 0.5, 0.1],  # ranking: 0, 1, 2, 3 (1 before 2: lower index wins the tie)
        [0.2, 0.1, 0.4, 0.3],  # ranking: 2, 3, 0, 1
        [0.3, 0.2, 0.1, 0.0],
    ]
)


def test_precision_hand_worked():
    # k=1: row0 top {0} hit 1; row1 top {2} miss; row2 0 -> (1 + 0 + 0) / 3
    assert precision_at_k(Y_TRUE, Y_SCORE, k=1) == pytest.approx(1 / 3)
    # k=2: row0 {0, 1} 1 hit; row1 {2, 3} 1 hit; row2 0 -> (1/2 + 1/2) / 3
    assert precision_at_k(Y_TRUE, Y_SCORE, k=2) == pytest.approx(1 / 3)
    # k=3: row0 {0,1,2} 2 hits; row1 {2,3,0} 1 hit -> (2/3 + 1/3) / 3
    assert precision_at_k(Y_TRUE, Y_SCORE, k=3) == pytest.approx(1 / 3)
    # k=6 > 4 labels: all 4 ranked, 2 hits per labelled row, still / 6
    assert precision_at_k(Y_TRUE, Y_SCORE, k=6) == pytest.approx((2 / 6 + 2 / 6) / 3)


def test_recall_hand_worked():
    # k=2: row0 1 of 2, row1 1 of 2, row2 (no label) 0 -> (0.5 + 0.5 + 0) / 3
    assert recall_at_k(Y_TRUE, Y_SCORE, k=2) == pytest.approx(1 / 3)
    # k=3: row0 2 of 2, row1 1 of 2
    assert recall_at_k(Y_TRUE, Y_SCORE, k=3) == pytest.approx((1 + 0.5) / 3)


def test_ndcg_hand_worked():
    d = [1 / math.log2(r + 2) for r in range(4)]  # discounts of ranks 1..4
    # k=2: row0 hits at rank 1 -> d0 / (d0 + d1); row1 hit at rank 2 -> d1 / (d0 + d1)
    expected = (d[0] / (d[0] + d[1]) + d[1] / (d[0] + d[1])) / 3
    assert ndcg_at_k(Y_TRUE, Y_SCORE, k=2) == pytest.approx(expected)
    # k=1: row0 hit -> 1; row1 miss -> 0
    assert ndcg_at_k(Y_TRUE, Y_SCORE, k=1) == pytest.approx(1 / 3)


def test_psp_hand_worked():
    prop = np.array([0.5, 0.25, 0.2, 1.0])  # 1/p = 2, 4, 5, 1
    # k=1: row0 top 0 hit gains 2, ideal picks label 2 (1/p 5); row1 top 2 miss,
    # ideal picks label 1 (4) -> (2 + 0) / (5 + 4)
    assert psp_at_k(Y_TRUE, Y_SCORE, k=1, propensities=prop) == pytest.approx(2 / 9)
    # k=2: row0 gains 2, ideal 5 + 2; row1 gains 1 (label 3), ideal 4 + 1
    assert psp_at_k(Y_TRUE, Y_SCORE, k=2, propensities=prop) == pytest.approx(3 / 12)
    ideal_scores = Y_TRUE / prop  # ranks true labels by 1/p
    assert psp_at_k(Y_TRUE, ideal_scores, k=2, propensities=prop) == pytest.approx(1.0)


def test_label_propensity_formula():
    y = np.zeros((10, 3))
    y[:6, 0] = 1
    y[:1, 1] = 1
    A, B = 0.55, 1.5
    C = (math.log(10) - 1) * (B + 1) ** A
    expected = [1 / (1 + C * (n + B) ** -A) for n in (6, 1, 0)]
    np.testing.assert_allclose(label_propensity(y, A=A, B=B), expected)
    np.testing.assert_allclose(label_propensity(sp.csr_matrix(y)), expected)


def test_sparse_scores_rank_only_stored_entries():
    y_true = np.array([[0, 1, 1, 0]])
    # only labels 0 and 2 ranked; 0 stored with a negative score, still ranked
    y_score = sp.csr_matrix(([-1.0, 0.0], ([0, 0], [0, 2])), shape=(1, 4))
    # rank: 2 (0.0), then 0 (-1.0); label 1 is not ranked at all
    assert precision_at_k(y_true, y_score, k=1) == 1.0
    assert precision_at_k(y_true, y_score, k=3) == pytest.approx(1 / 3)
    assert recall_at_k(y_true, y_score, k=3) == pytest.approx(0.5)


def _brute_force(metric, y_true, y_score, k, prop=None):
    n, L = y_true.shape
    per_row, gained, ideal = [], 0.0, 0.0
    for i in range(n):
        ranking = sorted(range(L), key=lambda j: (-y_score[i, j], j))[:k]
        true = set(np.flatnonzero(y_true[i]))
        hits = [j in true for j in ranking]
        if metric is precision_at_k:
            per_row.append(sum(hits) / k)
        elif metric is recall_at_k:
            per_row.append(sum(hits) / len(true) if true else 0.0)
        elif metric is ndcg_at_k:
            dcg = sum(h / math.log2(r + 2) for r, h in enumerate(hits))
            idcg = sum(1 / math.log2(r + 2) for r in range(min(k, len(true))))
            per_row.append(dcg / idcg if idcg else 0.0)
        else:
            gained += sum(1 / prop[j] for j in ranking if j in true) / k
            ideal += sum(sorted((1 / prop[j] for j in true), reverse=True)[:k]) / k
    if metric is psp_at_k:
        return gained / ideal if ideal else 0.0
    return float(np.mean(per_row))


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("k", [1, 3, 5, 12])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_against_brute_force_with_many_ties(metric, k, seed):
    rng = np.random.default_rng(seed)
    y_true = (rng.random((25, 9)) < 0.25).astype(int)
    y_score = rng.integers(0, 4, (25, 9)).astype(float)  # integer scores: many ties
    prop = rng.uniform(0.1, 1.0, 9)
    kwargs = {"propensities": prop} if metric is psp_at_k else {}
    expected = _brute_force(metric, y_true, y_score, k, prop)
    assert metric(y_true, y_score, k=k, **kwargs) == pytest.approx(expected)
    # the same ranking given as a sparse matrix of all entries, in every format
    for to_sparse in (sp.csr_matrix, sp.csr_array, sp.coo_matrix):
        got = metric(to_sparse(y_true), to_sparse(y_score + 10), k=k, **kwargs)
        assert got == pytest.approx(expected)


@pytest.mark.parametrize("metric", METRICS)
def test_integer_sample_weight_equals_repeating_rows(metric):
    rng = np.random.default_rng(3)
    y_true = (rng.random((12, 7)) < 0.3).astype(int)
    y_score = rng.random((12, 7))
    w = rng.integers(0, 4, 12)
    prop = np.full(7, 0.5)
    kwargs = {"propensities": prop} if metric is psp_at_k else {}
    repeated = metric(np.repeat(y_true, w, axis=0), np.repeat(y_score, w, axis=0), k=3, **kwargs)
    assert metric(y_true, y_score, k=3, sample_weight=w, **kwargs) == pytest.approx(repeated)


def test_large_sparse_top_k_is_fast_and_exact():
    n, L, k = 10_000, 500_000, 10
    rng = np.random.default_rng(0)
    cols = rng.integers(0, L, (n, k))
    y_score = sp.csr_matrix(
        (np.tile(np.arange(k, 0, -1.0), n), (np.repeat(np.arange(n), k), cols.ravel())),
        shape=(n, L),
    )
    y_true = sp.csr_matrix((np.ones(n), (np.arange(n), cols[:, 0])), shape=(n, L))
    assert precision_at_k(y_true, y_score, k=1) == 1.0


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"y_true": np.ones(3), "y_score": np.ones(3)}, "2-D label indicator"),
        ({"y_true": np.full((2, 3), 2), "y_score": np.ones((2, 3))}, "binary indicator"),
        ({"y_true": np.ones((2, 3)), "y_score": np.ones((2, 4))}, "different shapes"),
        ({"y_true": np.ones((2, 3)), "y_score": np.full((2, 3), np.nan)}, "NaN or infinity"),
        ({"y_true": np.ones((2, 3)), "y_score": np.ones((2, 3)), "k": 0}, "'k' parameter"),
        ({"y_true": np.ones((2, 3)), "y_score": np.ones((2, 3)), "k": 1.5}, "'k' parameter"),
        (
            {"y_true": np.ones((2, 3)), "y_score": np.ones((2, 3)), "sample_weight": [1, -1]},
            "[Nn]egative",
        ),
        (
            {"y_true": np.ones((2, 3)), "y_score": np.ones((2, 3)), "sample_weight": [1, 1, 1]},
            "sample_weight",
        ),
    ],
)
@pytest.mark.parametrize("metric", METRICS)
def test_invalid_inputs(metric, kwargs, message):
    with pytest.raises(ValueError, match=message):
        metric(**kwargs)


def test_psp_rejects_bad_propensities():
    with pytest.raises(ValueError, match="propensities must have shape"):
        psp_at_k(Y_TRUE, Y_SCORE, propensities=np.ones(3))
    with pytest.raises(ValueError, match=r"in \(0, 1\]"):
        psp_at_k(Y_TRUE, Y_SCORE, propensities=np.zeros(4))


class _TopKOnly:
    """An estimator that can only rank through predict_topk."""

    def __init__(self, labels, scores, classes):
        self.labels, self.scores, self.classes_ = labels, scores, classes

    def predict_topk(self, X, k):
        return self.labels[:, :k], self.scores[:, :k]

    def decision_function(self, X):
        raise AssertionError("the scorer must not ask for dense scores")


def test_scorer_uses_predict_topk():
    classes = np.array([10, 20, 30, 40])
    est = _TopKOnly(np.array([[30, 10], [20, 40]]), np.array([[2.0, 1.0], [3.0, 0.5]]), classes)
    y = np.array([[0, 0, 1, 0], [0, 0, 0, 1]])  # columns in classes_ order
    assert make_topk_scorer("precision", k=1)(est, None, y) == pytest.approx(0.5)
    assert make_topk_scorer("recall", k=2)(est, None, y) == pytest.approx(1.0)
    # 1-D class labels become an indicator over classes_
    assert make_topk_scorer("precision", k=1)(est, None, np.array([30, 40])) == 0.5


def test_scorer_with_sklearn_estimators():
    X, y = load_iris(return_X_y=True)
    clf = LogisticRegression(max_iter=500).fit(X, y)
    assert make_topk_scorer("precision", k=1)(clf, X, y) == pytest.approx(clf.score(X, y))
    Xm, Ym = make_multilabel_classification(200, n_features=10, n_classes=6, random_state=0)
    ovr = OneVsRestClassifier(LogisticRegression(max_iter=500)).fit(Xm, Ym)
    expected = precision_at_k(Ym, ovr.decision_function(Xm), k=3)
    assert make_topk_scorer("precision", k=3)(ovr, Xm, Ym) == pytest.approx(expected)


def test_scorer_in_grid_search_single_and_multi_metric():
    X, Y = make_multilabel_classification(200, n_features=10, n_classes=6, random_state=0)
    grid = {"estimator__C": [0.1, 1.0]}
    search = GridSearchCV(
        OneVsRestClassifier(LogisticRegression(max_iter=500)), grid,
        scoring=make_topk_scorer("precision", k=1), cv=3,
    ).fit(X, Y)
    assert 0 <= search.best_score_ <= 1
    multi = GridSearchCV(
        OneVsRestClassifier(LogisticRegression(max_iter=500)), grid,
        scoring={"p1": make_topk_scorer("precision", k=1),
                 "ndcg3": make_topk_scorer("ndcg", k=3)},
        refit="p1", cv=3,
    ).fit(X, Y)
    assert set(multi.cv_results_) >= {"mean_test_p1", "mean_test_ndcg3"}


def test_scorer_pickles_and_validates():
    scorer = make_topk_scorer("psp", k=3, propensities=np.full(4, 0.5))
    clone = pickle.loads(pickle.dumps(scorer))
    assert repr(clone).startswith("make_topk_scorer('psp', k=3")
    with pytest.raises(ValueError, match="metric must be one of"):
        make_topk_scorer("f1")
    with pytest.raises(ValueError, match="k must be a positive integer"):
        make_topk_scorer("precision", k=0)
