"""Zero-shot learning metrics: per-class accuracy and the GZSL harmonic mean."""

from collections import namedtuple

import numpy as np
from sklearn.utils import column_or_1d
from sklearn.utils.validation import _check_sample_weight, check_consistent_length

__all__ = ["GZSLScores", "gzsl_scores", "per_class_accuracy"]

GZSLScores = namedtuple("GZSLScores", ["seen", "unseen", "harmonic"])
GZSLScores.__doc__ = """Seen accuracy S, unseen accuracy U and H = 2 S U / (S + U)."""


def _check_targets(y_true, y_pred, sample_weight):
    y_true = column_or_1d(y_true)
    y_pred = column_or_1d(y_pred)
    for name, y in (("y_true", y_true), ("y_pred", y_pred)):
        # a NaN label equals no other, not even itself: its rows would silently drop out
        if y.dtype.kind in "fc" and not np.all(np.isfinite(y)):
            raise ValueError(f"{name} contains NaN or infinity")
    check_consistent_length(y_true, y_pred, sample_weight)
    if sample_weight is not None:
        sample_weight = _check_sample_weight(sample_weight, y_true, ensure_non_negative=True)
    return y_true, y_pred, sample_weight


def per_class_accuracy(y_true, y_pred, *, labels=None, sample_weight=None):
    """Mean over classes of the top-1 accuracy within each class.

    The zero-shot literature's accuracy (Xian et al. 2018): every class
    counts the same, however many test examples it has.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
    y_pred : array-like of shape (n_samples,)
    labels : array-like, default=None
        Classes to average over; default: the classes in `y_true`. A listed
        class without test examples is left out of the mean.
    sample_weight : array-like of shape (n_samples,), default=None

    Returns
    -------
    score : float
        In [0, 1]; ``nan`` when no listed class has a test example.

    Examples
    --------
    >>> from sksketch.metrics import per_class_accuracy
    >>> per_class_accuracy([0, 0, 0, 1], [0, 0, 1, 1])  # (2/3 + 1) / 2
    0.8333...

    With :func:`sklearn.metrics.make_scorer` it is a scorer for model
    selection:

    >>> from sklearn.metrics import make_scorer
    >>> scorer = make_scorer(per_class_accuracy)
    """
    y_true, y_pred, sample_weight = _check_targets(y_true, y_pred, sample_weight)
    if sample_weight is None:
        sample_weight = np.ones(y_true.shape[0])
    classes = np.unique(y_true) if labels is None else np.unique(column_or_1d(labels))
    scores = []
    for c in classes:
        mask = y_true == c
        total = sample_weight[mask].sum()
        if mask.any() and total > 0:
            scores.append(sample_weight[mask & (y_pred == c)].sum() / total)
    return float(np.mean(scores)) if scores else float("nan")


def gzsl_scores(y_true, y_pred, *, unseen_classes, score="all", sample_weight=None):
    """Generalised zero-shot scores: seen accuracy, unseen accuracy, harmonic mean.

    Predictions range over all classes. ``S`` is the per-class accuracy
    (:func:`per_class_accuracy`) on the test examples of seen classes (every
    class of `y_true` not in `unseen_classes`), ``U`` the same on the
    examples of unseen classes, and ``H = 2 S U / (S + U)`` (0 when
    ``S + U = 0``), the protocol of Xian et al. (2018).

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
    y_pred : array-like of shape (n_samples,)
    unseen_classes : array-like
        The classes without training examples.
    score : {"all", "seen", "unseen", "harmonic"}, default="all"
        Which score to return: all three, or one of them (a float, which
        makes the function a :func:`sklearn.metrics.make_scorer` metric).
    sample_weight : array-like of shape (n_samples,), default=None

    Returns
    -------
    scores : GZSLScores or float
        ``GZSLScores(seen, unseen, harmonic)`` for ``score="all"``. A part
        with no test example is ``nan`` (and so is H).

    Examples
    --------
    >>> from sksketch.metrics import gzsl_scores
    >>> y_true = [0, 0, 1, 1, 2, 2]   # class 2 is unseen
    >>> y_pred = [0, 0, 1, 2, 2, 0]
    >>> s = gzsl_scores(y_true, y_pred, unseen_classes=[2])
    >>> float(s.seen), float(s.unseen), round(float(s.harmonic), 4)
    (0.75, 0.5, 0.6)

    As a scorer for :class:`~sklearn.model_selection.GridSearchCV`:

    >>> from sklearn.metrics import make_scorer
    >>> h_scorer = make_scorer(gzsl_scores, unseen_classes=[2], score="harmonic")
    """
    if score not in ("all", "seen", "unseen", "harmonic"):
        raise ValueError(
            f"score must be 'all', 'seen', 'unseen' or 'harmonic', got {score!r}"
        )
    y_true, y_pred, sample_weight = _check_targets(y_true, y_pred, sample_weight)
    unseen_classes = np.unique(column_or_1d(unseen_classes))
    present = np.unique(y_true)
    unseen = np.isin(present, unseen_classes)
    S = per_class_accuracy(y_true, y_pred, labels=present[~unseen],
                           sample_weight=sample_weight) if (~unseen).any() else float("nan")
    U = per_class_accuracy(y_true, y_pred, labels=present[unseen],
                           sample_weight=sample_weight) if unseen.any() else float("nan")
    if np.isnan(S) or np.isnan(U):
        H = float("nan")
    else:
        H = 2 * S * U / (S + U) if S + U > 0 else 0.0
    result = GZSLScores(S, U, H)
    return result if score == "all" else getattr(result, score)
