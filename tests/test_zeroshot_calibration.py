"""The held-out-seen-classes protocol behind ``calibration_gamma="auto"``."""

import numpy as np
import pytest

from sksketch._zeroshot_calibration import (
    choose_calibration_share,
    harmonic_curve,
    penalty_at_share,
    pseudo_unseen_folds,
)
from sksketch.metrics import gzsl_scores


def test_folds_hold_out_different_classes_and_split_the_rest():
    rng = np.random.RandomState(0)
    ids = rng.randint(0, 7, 2000)
    seen = np.array([True] * 7 + [False] * 3)
    folds = pseudo_unseen_folds(ids, seen, 3, np.random.RandomState(1))
    assert len(folds) == 3
    pseudo_sets = [set(p.tolist()) for p, _, _ in folds]
    rotated = pseudo_sets[1:] + pseudo_sets[:1]
    for (pseudo, train, validation), others in zip(folds, rotated, strict=True):
        # round(7 * 3 / 10) = 2 classes play unseen, none of them trained on
        assert len(pseudo) == 2 and set(pseudo.tolist()) != others
        assert not np.isin(ids[train], pseudo).any()
        assert np.isin(ids[validation], pseudo).sum() == np.isin(ids, pseudo).sum()
        assert len(np.intersect1d(train, validation)) == 0
        assert len(train) + len(validation) == len(ids)
        held = validation[~np.isin(ids[validation], pseudo)]
        assert abs(len(held) / (len(held) + len(train)) - 0.2) < 0.01


@pytest.mark.parametrize("n_seen, n_unseen", [(2, 3), (5, 0)])
def test_no_folds_without_unseen_classes_or_with_two_seen_ones(n_seen, n_unseen):
    seen = np.array([True] * n_seen + [False] * n_unseen)
    ids = np.arange(100) % n_seen
    assert pseudo_unseen_folds(ids, seen, 3, np.random.RandomState(0)) == []
    called = []
    share, score = choose_calibration_share(
        lambda *a: called.append(a), None, np.zeros((100, 1)), ids, np.ones(100), seen,
        np.random.RandomState(0))
    assert (share, score, called) == (None, None, [])


def test_harmonic_curve_matches_shifted_argmax():
    rng = np.random.RandomState(0)
    n, n_classes = 400, 6
    scores = rng.randn(n, n_classes)
    trained = np.array([True, True, True, False, False, False])
    pseudo = np.array([3, 4])
    ids = rng.choice([0, 1, 2, 3, 4], n)
    s_in = np.where(trained, scores, -np.inf)
    s_out = np.where(trained, -np.inf, scores)
    diff = s_in.max(1) - s_out.max(1)
    right_in = s_in.argmax(1) == ids
    right_out = s_out.argmax(1) == ids
    candidates = np.linspace(-3, 3, 41)
    curve = harmonic_curve(diff, right_in, right_out, ids, pseudo, candidates)
    for g, (S, U, H) in zip(candidates, curve, strict=True):
        shifted = scores - g * trained
        ref = gzsl_scores(ids, shifted.argmax(1), unseen_classes=pseudo)
        np.testing.assert_allclose([S, U, H], [ref.seen, ref.unseen, ref.harmonic],
                                   atol=1e-12)


def test_penalty_at_share_is_a_quantile_of_the_margins():
    scores = np.array([[3.0, 1.0, 0.0], [0.0, 2.0, 1.5], [1.0, 0.0, 4.0], [2.0, 2.0, 1.0]])
    seen = np.array([True, True, False])
    # margins: best seen minus best unseen = 3, 0.5, -3, 1
    assert penalty_at_share(scores, seen, 0.0) == -3.0
    assert penalty_at_share(scores, seen, 1.0) == 3.0
    assert penalty_at_share(scores, seen, 0.5) == np.quantile([3, 0.5, -3, 1], 0.5)


def _biased_copies(n_classes, ids, scale):
    """Copies whose trained classes score ``scale * 2.5`` above the truth."""
    onehot = np.eye(n_classes)[ids]

    def fit_copy(X_part, ids_part, weights, seed):
        return np.isin(np.arange(n_classes), np.unique(ids_part))

    def scores_of(trained, X_part):
        rows = X_part[:, 0].astype(int)
        noise = np.random.RandomState(rows[:3]).randn(len(rows), n_classes)
        return scale * (3 * onehot[rows] + noise + 2.5 * trained)

    return fit_copy, scores_of


@pytest.mark.parametrize("scale", [1.0, 10.0])
def test_protocol_finds_the_share_that_balances_biased_copies(scale):
    # the best penalty of such a copy is near 2.5 * scale: the chosen share,
    # read back on the copies' own training rows, lands there at any scale
    rng = np.random.RandomState(0)
    n_classes, n = 10, 3000
    ids = rng.randint(0, 7, n)
    seen = np.arange(n_classes) < 7
    X = np.arange(n)[:, None].astype(float)
    fit_copy, scores_of = _biased_copies(n_classes, ids, scale)
    share, score = choose_calibration_share(fit_copy, scores_of, X, ids, np.ones(n), seen,
                                            np.random.RandomState(0))
    assert 0 < share < 1 and score > 0.7
    gamma = penalty_at_share(scores_of(seen, X), seen, share)
    assert 1.5 * scale < gamma < 3.5 * scale
