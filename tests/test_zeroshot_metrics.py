"""per_class_accuracy and gzsl_scores."""

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score, make_scorer
from sklearn.model_selection import GridSearchCV
from sklearn.svm import LinearSVC

from sksketch.metrics import GZSLScores, gzsl_scores, per_class_accuracy


def test_per_class_accuracy_is_balanced_accuracy():
    rng = np.random.RandomState(0)
    y = rng.randint(0, 5, 200)
    pred = np.where(rng.rand(200) < 0.6, y, rng.randint(0, 5, 200))
    assert per_class_accuracy(y, pred) == pytest.approx(balanced_accuracy_score(y, pred))


def test_per_class_accuracy_weights_classes_equally():
    y = [0] * 9 + [1]
    pred = [0] * 9 + [0]
    assert per_class_accuracy(y, pred) == pytest.approx(0.5)
    assert per_class_accuracy(y, pred, labels=[0]) == 1.0
    # a listed class without examples is left out; none at all gives nan
    assert per_class_accuracy(y, pred, labels=[0, 7]) == 1.0
    assert np.isnan(per_class_accuracy(y, pred, labels=[7]))


def test_per_class_accuracy_sample_weight():
    y = [0, 0, 1, 1]
    pred = [0, 1, 1, 1]
    assert per_class_accuracy(y, pred, sample_weight=[3, 1, 1, 1]) == pytest.approx(
        (0.75 + 1) / 2)
    with pytest.raises(ValueError):
        per_class_accuracy(y, pred, sample_weight=[1, 1])
    with pytest.raises(ValueError, match="inconsistent"):
        per_class_accuracy(y, pred[:3])


def test_gzsl_scores_definition():
    y_true = np.array([0, 0, 1, 1, 1, 2, 2, 3])
    y_pred = np.array([0, 1, 1, 1, 2, 2, 0, 3])
    s = gzsl_scores(y_true, y_pred, unseen_classes=[2, 3])
    assert isinstance(s, GZSLScores)
    S = (1 / 2 + 2 / 3) / 2
    U = (1 / 2 + 1) / 2
    assert s.seen == pytest.approx(S) and s.unseen == pytest.approx(U)
    assert s.harmonic == pytest.approx(2 * S * U / (S + U))
    for part in ("seen", "unseen", "harmonic"):
        assert gzsl_scores(y_true, y_pred, unseen_classes=[2, 3], score=part) == getattr(s, part)


def test_gzsl_scores_edge_cases():
    assert gzsl_scores([0, 1], [1, 0], unseen_classes=[1]).harmonic == 0.0
    only_seen = gzsl_scores([0, 0], [0, 0], unseen_classes=[5])
    assert only_seen.seen == 1 and np.isnan(only_seen.unseen) and np.isnan(only_seen.harmonic)
    with pytest.raises(ValueError, match="score must be"):
        gzsl_scores([0], [0], unseen_classes=[1], score="H")


def test_scores_work_as_scorers():
    rng = np.random.RandomState(0)
    X = rng.randn(120, 4)
    y = (X[:, 0] > 0).astype(int) + 2 * (X[:, 1] > 0)
    for scorer in (make_scorer(per_class_accuracy),
                   make_scorer(gzsl_scores, unseen_classes=[3], score="harmonic")):
        grid = GridSearchCV(LinearSVC(), {"C": [0.1, 1.0]}, scoring=scorer, cv=3).fit(X, y)
        assert 0 <= grid.best_score_ <= 1
