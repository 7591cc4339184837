"""Scorers that rank with a model's top-k, for GridSearchCV and cross-validation."""

import numpy as np
import scipy.sparse as sp

from ._ranking import _ranked_topk, ndcg_at_k, precision_at_k, psp_at_k, recall_at_k

_METRICS = {
    "precision": precision_at_k,
    "recall": recall_at_k,
    "ndcg": ndcg_at_k,
    "psp": psp_at_k,
}


def _indicator(y, classes):
    """y as a sparse indicator over ``classes`` (columns in that order)."""
    if sp.issparse(y):
        return sp.csr_matrix(y)
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] > 1:
        return sp.csr_matrix(y)
    y = y.ravel()
    classes = np.asarray(classes)
    order = np.argsort(classes, kind="stable")
    pos = np.searchsorted(classes[order], y)
    pos = np.clip(pos, 0, len(classes) - 1)
    known = classes[order][pos] == y
    cols = order[pos[known]]
    rows = np.flatnonzero(known)
    return sp.csr_matrix(
        (np.ones(rows.size), (rows, cols)), shape=(y.shape[0], len(classes))
    )


class _TopKScorer:
    """Callable ``scorer(estimator, X, y_true, sample_weight=None) -> float``."""

    def __init__(self, metric, k, metric_kwargs):
        self.metric = metric
        self.k = k
        self.metric_kwargs = metric_kwargs

    def _score_func(self):
        return _METRICS[self.metric] if isinstance(self.metric, str) else self.metric

    def _scores(self, estimator, X):
        """Ranked scores of X: sparse from predict_topk when available."""
        classes = getattr(estimator, "classes_", None)
        if hasattr(estimator, "predict_topk"):
            labels, _ = estimator.predict_topk(X, self.k)
            order = np.argsort(classes, kind="stable")
            pos = order[np.searchsorted(classes[order], labels)]
            return _ranked_topk(pos, len(classes)), classes
        if hasattr(estimator, "decision_function"):
            scores = estimator.decision_function(X)
        else:
            scores = estimator.predict_proba(X)
            if isinstance(scores, list):
                scores = np.column_stack([s[:, -1] for s in scores])
        scores = np.asarray(scores, dtype=np.float64)
        if scores.ndim == 1:
            scores = np.column_stack([-scores, scores])
        return scores, classes

    def __call__(self, estimator, X, y_true, sample_weight=None):
        y_score, classes = self._scores(estimator, X)
        if classes is None:
            classes = np.arange(y_score.shape[1])
        y = _indicator(y_true, classes)
        return float(
            self._score_func()(
                y, y_score, k=self.k, sample_weight=sample_weight, **self.metric_kwargs
            )
        )

    def __repr__(self):
        name = self.metric if isinstance(self.metric, str) else self.metric.__name__
        extra = "".join(f", {key}={value!r}" for key, value in self.metric_kwargs.items())
        return f"make_topk_scorer({name!r}, k={self.k}{extra})"


def make_topk_scorer(metric, *, k=5, **metric_kwargs):
    """A scorer for ``GridSearchCV`` that ranks labels with the model's top k.

    The scorer asks the estimator for ``predict_topk(X, k)`` when it has one
    (sksketch's estimators do: no ``n_samples x n_labels`` array is made, so it
    scales to millions of labels), and otherwise for ``decision_function`` or
    ``predict_proba``. The target may be an indicator matrix (multi-label) or
    class labels (multiclass; P@1 is then the accuracy).

    Parameters
    ----------
    metric : {"precision", "recall", "ndcg", "psp"} or callable
        A callable takes ``(y_true, y_score, *, k, sample_weight=None, **kw)``.
    k : int, default=5
    **metric_kwargs
        Passed to the metric (for example ``propensities`` for ``"psp"``).

    Returns
    -------
    scorer : callable
        ``scorer(estimator, X, y_true, sample_weight=None) -> float``, greater
        is better.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn.model_selection import cross_val_score
    >>> from sksketch.metrics import make_topk_scorer
    >>> X, y = load_iris(return_X_y=True)
    >>> scores = cross_val_score(LogisticRegression(max_iter=500), X, y,
    ...                          scoring=make_topk_scorer("precision", k=1))
    >>> bool(scores.mean() > 0.9)
    True
    """
    if isinstance(metric, str):
        if metric not in _METRICS:
            raise ValueError(f"metric must be one of {sorted(_METRICS)} or a callable, "
                             f"got {metric!r}")
    elif not callable(metric):
        raise TypeError(f"metric must be a string or a callable, got {type(metric)!r}")
    if not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    return _TopKScorer(metric, int(k), metric_kwargs)
