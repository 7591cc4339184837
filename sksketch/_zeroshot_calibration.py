"""Calibrated stacking chosen inside ``fit``: seen classes held out to play unseen.

A network trained on seen classes scores them above every unseen class, so
generalised zero-shot prediction subtracts a penalty ``gamma`` from the seen
classes' scores (calibrated stacking, Chao et al. 2016). The right penalty
depends on the data, the classes and the training, and the unseen classes
have no examples to tune it on. :func:`choose_calibration_share` measures it
on the seen classes instead:

1. Each of ``n_folds`` folds takes ``k`` seen classes, in proportion to the
   unseen share of all classes (``k = round(n_seen * n_unseen / n_classes)``,
   at least 1), as *pseudo-unseen*; the folds take different classes.
2. A copy of the estimator, with the same parameters, trains on the other
   seen classes' rows, less a ``validation_fraction`` of them held out. The
   pseudo-unseen classes and the real unseen classes are both unseen to it.
3. On the held-out rows and every pseudo-unseen row, the seen accuracy S,
   the pseudo-unseen accuracy U and their harmonic mean H are computed for
   each penalty (mean per-class accuracy, prediction among all classes).

The penalty does not carry over from a copy to the final model as a number:
the copies see fewer classes, and the scale of their scores differs (a soft-
label network's margins are a few units wide, and a penalty off by one can
halve H). What carries over is a *share*: the penalty is expressed as the
share of the model's own training rows whose best seen score, less the
penalty, falls below their best unseen score (a quantile of their margins).
The share with the best H averaged over the folds is chosen, and the final
model's penalty is the same quantile of its training rows' margins
(:func:`penalty_at_share`).

A row's prediction changes with the penalty at one point only: where its best
seen score minus the penalty falls below its best other score. H is therefore
computed exactly from each row's two best scores.
"""

import numpy as np

__all__ = [
    "choose_calibration_share", "harmonic_curve", "margin_rows", "penalty_at_share",
    "pseudo_unseen_folds",
]

# Folds of the protocol: each costs one training on most of the seen rows.
# The choice is noisy with few folds: on two Fashion-MNIST splits and four
# seeds (which pick the pseudo-unseen classes), the test H varied by up to 13
# points with three folds, by up to 5 with six.
N_FOLDS = 6
# Share of the training classes' rows held out to measure seen accuracy.
VALIDATION_FRACTION = 0.2
# Candidate shares of training rows below the penalty, from 0 to 1.
N_CANDIDATES = 1001
# Training rows whose margins give the quantiles (a uniform sample beyond it).
MAX_MARGIN_ROWS = 50_000


def pseudo_unseen_folds(ids, seen, n_folds, rng, validation_fraction=VALIDATION_FRACTION):
    """Pseudo-unseen classes and row splits of each fold.

    Parameters
    ----------
    ids : ndarray of int of shape (n_samples,)
        Class ids of the training rows (all seen).
    seen : ndarray of bool of shape (n_classes,)
    n_folds : int
    rng : RandomState

    Returns
    -------
    folds : list of (pseudo, train_rows, validation_rows)
        ``pseudo`` are class ids; empty when fewer than three classes are
        seen or none is unseen (the protocol then does not apply).
    """
    seen_ids = np.flatnonzero(seen)
    n_classes, n_seen = len(seen), len(seen_ids)
    n_unseen = n_classes - n_seen
    if n_unseen == 0 or n_seen < 3:
        return []
    k = int(np.clip(round(n_seen * n_unseen / n_classes), 1, n_seen - 2))
    order = rng.permutation(seen_ids)
    folds = []
    for f in range(min(n_folds, n_seen)):
        pseudo = np.sort(np.take(order, np.arange(f * k, f * k + k), mode="wrap"))
        is_pseudo = np.isin(ids, pseudo)
        rows = np.flatnonzero(~is_pseudo)
        rng.shuffle(rows)
        cut = int(round(len(rows) * validation_fraction))
        train = np.sort(rows[cut:])
        validation = np.sort(np.concatenate([rows[:cut], np.flatnonzero(is_pseudo)]))
        folds.append((pseudo, train, validation))
    return folds


def _two_best(scores, trained):
    """Each row's best score among ``trained`` classes and among the others, and their ids."""
    s_in = np.where(trained[None, :], scores, -np.inf)
    s_out = np.where(trained[None, :], -np.inf, scores)
    best_in, best_out = s_in.argmax(axis=1), s_out.argmax(axis=1)
    rows = np.arange(len(scores))
    return s_in[rows, best_in] - s_out[rows, best_out], best_in, best_out


def harmonic_curve(diff, right_in, right_out, ids, pseudo, candidates):
    """Seen accuracy, pseudo-unseen accuracy and H at each penalty.

    A row predicts its best trained class when ``diff > gamma`` and its best
    other class otherwise; ``right_in`` and ``right_out`` say whether each of
    those is its class.

    Returns
    -------
    curve : ndarray of shape (n_candidates, 3)
        S, U and H per candidate: mean per-class accuracy of the trained and
        of the pseudo-unseen classes' rows.
    """
    classes = np.unique(ids)
    per_class = np.empty((len(classes), len(candidates)))
    gain = right_in.astype(np.float64) - right_out
    for c, label in enumerate(classes):
        rows = ids == label
        order = np.argsort(diff[rows], kind="stable")
        d = diff[rows][order]
        # rows with diff > gamma switch from their best other class to their
        # best trained one: add their gains, taken from the top of the sort
        top = np.concatenate([[0.0], np.cumsum(gain[rows][order][::-1])])
        switched = len(d) - np.searchsorted(d, candidates, side="right")
        per_class[c] = (right_out[rows].sum() + top[switched]) / len(d)
    unseen = np.isin(classes, pseudo)
    S = per_class[~unseen].mean(axis=0) if (~unseen).any() else np.zeros(len(candidates))
    U = per_class[unseen].mean(axis=0) if unseen.any() else np.zeros(len(candidates))
    with np.errstate(invalid="ignore", divide="ignore"):
        H = np.where(S + U > 0, 2 * S * U / (S + U), 0.0)
    return np.column_stack([S, U, H])


def _margin_quantiles(scores, trained, shares):
    """Quantiles of the rows' margins: best ``trained`` score minus best other score."""
    margins = _two_best(scores, trained)[0]
    margins = margins[np.isfinite(margins)]
    if margins.size == 0:
        return np.zeros_like(np.asarray(shares, dtype=np.float64))
    return np.quantile(margins, shares)


def margin_rows(n, rng):
    """The training rows whose margins give the quantiles: all, or a uniform sample."""
    if n <= MAX_MARGIN_ROWS:
        return np.arange(n)
    return np.sort(rng.choice(n, MAX_MARGIN_ROWS, replace=False))


def penalty_at_share(scores, seen, share):
    """The penalty below which ``share`` of the rows' margins fall.

    Parameters
    ----------
    scores : ndarray of shape (n_rows, n_classes)
        A model's scores of (a sample of) its training rows.
    seen : ndarray of bool of shape (n_classes,)
        The classes it trained on.
    share : float in [0, 1]

    Returns
    -------
    gamma : float
    """
    return float(_margin_quantiles(scores, seen, share))


def choose_calibration_share(fit_copy, scores_of, X, ids, sample_weight, seen, rng,
                             n_folds=None):
    """The calibrated-stacking share by the held-out-seen-classes protocol.

    Parameters
    ----------
    fit_copy : callable (X, ids, sample_weight, seed) -> model
        Trains a copy of the estimator on some rows.
    scores_of : callable (model, X) -> ndarray of shape (n_rows, n_classes)
        Uncalibrated class scores.
    X, ids, sample_weight
        The training rows, their class ids and weights.
    seen : ndarray of bool of shape (n_classes,)
    rng : RandomState

    Returns
    -------
    share : float or None
        The share of training rows' margins below the penalty (see
        :func:`penalty_at_share`); None when the protocol does not apply (no
        unseen class, fewer than three seen ones).
    score : float or None
        The mean validation H at ``share``.
    """
    folds = pseudo_unseen_folds(ids, seen, N_FOLDS if n_folds is None else n_folds, rng)
    if not folds:
        return None, None
    shares = np.linspace(0.0, 1.0, N_CANDIDATES)
    curves = []
    for pseudo, train, validation in folds:
        model = fit_copy(X[train], ids[train], sample_weight[train], rng.randint(2**31 - 1))
        trained = seen.copy()
        trained[pseudo] = False
        y_val = ids[validation]
        diff, best_in, best_out = _two_best(scores_of(model, X[validation]), trained)
        fitted = train[margin_rows(len(train), rng)]
        candidates = _margin_quantiles(scores_of(model, X[fitted]), trained, shares)
        curves.append(harmonic_curve(diff, best_in == y_val, best_out == y_val, y_val, pseudo,
                                     candidates)[:, 2])
    H = np.mean(curves, axis=0)
    best = np.flatnonzero(H >= H.max() - 1e-12)
    # the middle of the plateau that holds the first best candidate
    run = best[: np.argmax(np.diff(np.append(best, best[-1] + 2)) > 1) + 1]
    return float((shares[run[0]] + shares[run[-1]]) / 2), float(H[run[0]])
