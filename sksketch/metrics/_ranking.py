"""Ranking metrics at k for extreme multi-label classification.

Conventions shared by every metric:

* ``y_true`` is a binary indicator matrix (n_samples, n_labels), dense or
  sparse; it is never densified.
* ``y_score`` is either a dense array of scores of the same shape, or a sparse
  matrix that holds only the ranked entries (for example a model's top-k).
  Entries a sparse ``y_score`` does not store are not ranked at all; a stored
  entry is ranked whatever its value, 0 and negative values included.
* Higher scores rank first; ties go to the lower label index.
* A row with no true label scores 0 and stays in the average, as in the
  Extreme Classification Repository's tools; no rows at all score 0. ``k`` may
  exceed the number of labels: precision still divides by ``k``.
* A sparse matrix's repeated entries add up (as in ``toarray()``), so a
  ``y_true`` label stored twice is a 2, which is not binary.
"""

from numbers import Integral, Real

import numpy as np
import scipy.sparse as sp
from sklearn.utils._param_validation import Interval, validate_params
from sklearn.utils.validation import _check_sample_weight

from ..utils._validation import check_sparse_indices

# Dense scores are ranked in row chunks holding about this many entries, so no
# temporary of shape (n_samples, n_labels) beyond y_score itself is made.
_CHUNK_ENTRIES = 1 << 22


def _ranked_topk(ids, n_labels):
    """Top-k column ids per row, best first, as sparse rank-preserving scores.

    The stored values are k, k-1, ..., 1 (all positive, so every entry is
    kept), which the metrics rank exactly as the given order.
    """
    ids = np.asarray(ids)
    n, k = ids.shape
    return sp.csr_matrix(
        (np.tile(np.arange(k, 0, -1, dtype=np.float64), n),
         (np.repeat(np.arange(n), k), ids.ravel())),
        shape=(n, n_labels),
    )


def _canonical_csr(M, input_name):
    """CSR with sorted, summed entries, never modifying the caller's matrix."""
    check_sparse_indices(M, input_name)
    M = sp.csr_matrix(M)
    if not M.has_canonical_format:
        # a copy: the conversion shares a CSR input's arrays
        M = M.copy()
        M.sum_duplicates()
    return M


def _check_y_true(y_true):
    if sp.issparse(y_true):
        y_true = _canonical_csr(y_true, "y_true")
        if not y_true.data.all():
            y_true = y_true.copy()
            y_true.eliminate_zeros()
        data = y_true.data
    else:
        y_true = np.asarray(y_true)
        if y_true.ndim != 2:
            raise ValueError(
                "y_true must be a 2-D label indicator matrix (n_samples, n_labels), "
                f"got an array of shape {y_true.shape}"
            )
        data = y_true[y_true != 0]
    if data.size and not np.all(data == 1):
        raise ValueError(
            "y_true must be a binary indicator matrix (values 0 and 1; repeated entries of "
            "a sparse y_true add up)"
        )
    return y_true


def _check_inputs(y_true, y_score, k, sample_weight):
    y_true = _check_y_true(y_true)
    if np.iscomplexobj(y_score):
        raise ValueError("y_score has complex values; real scores are expected")
    if sp.issparse(y_score):
        y_score = _canonical_csr(y_score, "y_score")
        values = y_score.data
    else:
        y_score = np.asarray(y_score, dtype=np.float64)
        if y_score.ndim != 2:
            raise ValueError(
                "y_score must be a 2-D array of scores (n_samples, n_labels), "
                f"got an array of shape {y_score.shape}"
            )
        values = y_score
    if y_true.shape != y_score.shape:
        raise ValueError(
            f"y_true and y_score have different shapes: {y_true.shape} and {y_score.shape}"
        )
    if not np.all(np.isfinite(values)):
        raise ValueError("y_score contains NaN or infinity")
    if sample_weight is None:
        # _check_sample_weight would refuse the all-zero weights of no rows
        sample_weight = np.ones(y_true.shape[0])
    else:
        sample_weight = _check_sample_weight(
            sample_weight, np.empty((y_true.shape[0], 0)), ensure_non_negative=True
        )
    return y_true, y_score, sample_weight


def _topk_entries(y_score, k):
    """(rows, cols, ranks) of each row's top-k ranked entries, best first."""
    if sp.issparse(y_score):
        n = y_score.shape[0]
        rows = np.repeat(np.arange(n), np.diff(y_score.indptr))
        order = np.lexsort((y_score.indices, -y_score.data, rows))
        rows, cols = rows[order], y_score.indices[order].astype(np.int64)
        ranks = np.arange(rows.size) - y_score.indptr[rows]
        keep = ranks < k
        return rows[keep], cols[keep], ranks[keep]

    n, n_labels = y_score.shape
    k = min(k, n_labels)
    if n == 0 or k == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    chunk = max(1, _CHUNK_ENTRIES // n_labels)
    parts = []
    for start in range(0, n, chunk):
        S = y_score[start : start + chunk]
        # The k-th largest value; everything above it is in, and entries equal
        # to it fill the remaining places by lowest index.
        kth = -np.partition(-S, k - 1, axis=1)[:, k - 1 : k]
        greater = S > kth
        equal = S == kth
        room = k - greater.sum(axis=1, keepdims=True)
        selected = greater | (equal & (np.cumsum(equal, axis=1) <= room))
        r, c = np.nonzero(selected)
        order = np.lexsort((c, -S[r, c], r))
        r, c = r[order], c[order]
        ranks = np.arange(r.size) - np.searchsorted(r, r)
        parts.append((r + start, c.astype(np.int64), ranks))
    return tuple(np.concatenate(a) for a in zip(*parts, strict=True))


def _true_keys(y_true):
    """Sorted row * n_labels + col of the true labels, and labels per row."""
    n_labels = y_true.shape[1]
    if sp.issparse(y_true):
        rows = np.repeat(np.arange(y_true.shape[0]), np.diff(y_true.indptr))
        cols = y_true.indices
    else:
        rows, cols = np.nonzero(y_true)
    keys = np.sort(rows.astype(np.int64) * n_labels + cols)
    counts = np.bincount(rows, minlength=y_true.shape[0])
    return keys, counts, rows, cols


def _hits(y_true, y_score, k):
    """Top-k entries and whether each is a true label."""
    rows, cols, ranks = _topk_entries(y_score, k)
    keys, counts, true_rows, true_cols = _true_keys(y_true)
    hit = np.isin(rows * y_true.shape[1] + cols, keys, assume_unique=False)
    return rows, cols, ranks, hit, counts, true_rows, true_cols


def _per_row_sum(rows, values, n):
    return np.bincount(rows, weights=values, minlength=n).astype(np.float64)


# Propensity constants: any finite A, and B > 0 so that a label never seen
# (N_l = 0) keeps a positive propensity.
_PROPENSITY_CONSTANTS = {
    "A": [Interval(Real, None, None, closed="neither")],
    "B": [Interval(Real, 0, None, closed="neither")],
}

_COMMON = {
    "y_true": ["array-like", "sparse matrix"],
    "y_score": ["array-like", "sparse matrix"],
    "k": [Interval(Integral, 1, None, closed="left")],
    "sample_weight": ["array-like", None],
}


@validate_params(_COMMON, prefer_skip_nested_validation=True)
def precision_at_k(y_true, y_score, *, k=5, sample_weight=None):
    """Precision at k: the share of each row's top-k labels that are true.

    Parameters
    ----------
    y_true : {array-like, sparse matrix} of shape (n_samples, n_labels)
        Binary indicator of the true labels.
    y_score : {array-like, sparse matrix} of shape (n_samples, n_labels)
        Scores, dense, or sparse holding only the ranked entries.
    k : int, default=5
        Number of top-ranked labels per row.
    sample_weight : array-like of shape (n_samples,), default=None
        Weights of the rows in the mean.

    Returns
    -------
    score : float
        Mean over rows of ``|top-k ∩ true| / k``.

    Notes
    -----
    See the module notes for the ranking conventions (ties, sparse scores,
    rows with no label).

    Examples
    --------
    >>> import numpy as np
    >>> from sksketch.metrics import precision_at_k
    >>> y_true = np.array([[1, 0, 1, 0], [0, 1, 0, 0]])
    >>> y_score = np.array([[0.9, 0.8, 0.1, 0.0], [0.1, 0.7, 0.3, 0.2]])
    >>> precision_at_k(y_true, y_score, k=1)
    1.0
    >>> precision_at_k(y_true, y_score, k=2)
    0.5
    """
    y_true, y_score, w = _check_inputs(y_true, y_score, k, sample_weight)
    n = y_true.shape[0]
    rows, _, _, hit, _, _, _ = _hits(y_true, y_score, k)
    per_row = _per_row_sum(rows, hit, n) / k
    return float(np.average(per_row, weights=w)) if n else 0.0


@validate_params(_COMMON, prefer_skip_nested_validation=True)
def recall_at_k(y_true, y_score, *, k=5, sample_weight=None):
    """Recall at k: the share of each row's true labels found in its top k.

    Parameters
    ----------
    y_true : {array-like, sparse matrix} of shape (n_samples, n_labels)
    y_score : {array-like, sparse matrix} of shape (n_samples, n_labels)
    k : int, default=5
    sample_weight : array-like of shape (n_samples,), default=None

    Returns
    -------
    score : float
        Mean over rows of ``|top-k ∩ true| / |true|`` (0 for a row with no
        true label).

    Examples
    --------
    >>> import numpy as np
    >>> from sksketch.metrics import recall_at_k
    >>> y_true = np.array([[1, 0, 1, 0], [0, 1, 0, 0]])
    >>> y_score = np.array([[0.9, 0.8, 0.1, 0.0], [0.1, 0.7, 0.3, 0.2]])
    >>> recall_at_k(y_true, y_score, k=2)
    0.75
    """
    y_true, y_score, w = _check_inputs(y_true, y_score, k, sample_weight)
    n = y_true.shape[0]
    rows, _, _, hit, counts, _, _ = _hits(y_true, y_score, k)
    found = _per_row_sum(rows, hit, n)
    per_row = np.divide(found, counts, out=np.zeros(n), where=counts > 0)
    return float(np.average(per_row, weights=w)) if n else 0.0


@validate_params(_COMMON, prefer_skip_nested_validation=True)
def ndcg_at_k(y_true, y_score, *, k=5, sample_weight=None):
    """Normalised discounted cumulative gain at k.

    Parameters
    ----------
    y_true : {array-like, sparse matrix} of shape (n_samples, n_labels)
    y_score : {array-like, sparse matrix} of shape (n_samples, n_labels)
    k : int, default=5
    sample_weight : array-like of shape (n_samples,), default=None

    Returns
    -------
    score : float
        Mean over rows of DCG@k / IDCG@k, with DCG@k the sum over ranks
        r = 1..k of ``rel_r / log2(r + 1)`` and IDCG@k the same for a perfect
        ranking, ``sum_{r=1..min(k, |true|)} 1 / log2(r + 1)``.

    Examples
    --------
    >>> import numpy as np
    >>> from sksketch.metrics import ndcg_at_k
    >>> y_true = np.array([[0, 1, 1]])
    >>> y_score = np.array([[0.9, 0.8, 0.1]])
    >>> round(ndcg_at_k(y_true, y_score, k=2), 6)  # (1/log2(3)) / (1 + 1/log2(3))
    0.386853
    """
    y_true, y_score, w = _check_inputs(y_true, y_score, k, sample_weight)
    n = y_true.shape[0]
    rows, _, ranks, hit, counts, _, _ = _hits(y_true, y_score, k)
    discount = 1.0 / np.log2(np.arange(k) + 2.0)
    dcg = _per_row_sum(rows, hit * discount[ranks], n)
    ideal = np.concatenate([[0.0], np.cumsum(discount)])[np.minimum(counts, k)]
    per_row = np.divide(dcg, ideal, out=np.zeros(n), where=ideal > 0)
    return float(np.average(per_row, weights=w)) if n else 0.0


@validate_params(
    {"y": ["array-like", "sparse matrix"], **_PROPENSITY_CONSTANTS},
    prefer_skip_nested_validation=True,
)
def label_propensity(y, *, A=0.55, B=1.5):
    """Propensity of each label to be observed (Jain, Prabhu and Varma, 2016).

    ``p_l = 1 / (1 + C * (N_l + B) ** -A)`` with ``C = (ln N - 1) * (B + 1) ** A``,
    N the number of rows of ``y`` and N_l the positives of label l. Rare labels
    get small propensities, so propensity-scored metrics reward them more.

    Parameters
    ----------
    y : {array-like, sparse matrix} of shape (n_samples, n_labels)
        Binary indicator, normally the training targets; at least 3 rows
        (``C`` is positive only for ``N > e``).
    A, B : float, default=0.55, 1.5
        Dataset constants: 0.55 and 1.5 in general, 0.6 and 2.6 for
        Amazon, 0.5 and 0.4 for Wikipedia. ``B`` must be positive.

    Returns
    -------
    propensities : ndarray of shape (n_labels,), float64

    Examples
    --------
    >>> import numpy as np
    >>> from sksketch.metrics import label_propensity
    >>> y = np.array([[1, 0], [1, 0], [1, 1], [1, 0]])
    >>> p = label_propensity(y)
    >>> bool(p[0] > p[1])
    True
    """
    y = _check_y_true(y)
    n = y.shape[0]
    if n < 3:
        # for N <= 2 < e, C = (ln N - 1) (B + 1)**A is negative and the
        # "propensities" leave (0, 1]
        raise ValueError(f"label_propensity needs y with at least 3 rows, got {n}")
    counts = np.asarray(y.sum(axis=0), dtype=np.float64).ravel()
    C = (np.log(n) - 1.0) * (B + 1.0) ** A
    return 1.0 / (1.0 + C * (counts + B) ** (-A))


@validate_params(
    {
        **_COMMON,
        "propensities": ["array-like", None],
        **_PROPENSITY_CONSTANTS,
    },
    prefer_skip_nested_validation=True,
)
def psp_at_k(y_true, y_score, *, k=5, propensities=None, A=0.55, B=1.5, sample_weight=None):
    """Propensity-scored precision at k, normalised by the best achievable.

    Each hit counts ``1 / p_l``, so rare labels weigh more. The score is the
    (weighted) sum over rows of ``(1/k) * sum_{l in top-k, l true} 1/p_l``,
    divided by the same sum for the ideal ranking (per row, the true labels
    with the largest ``1/p_l`` first), as in the Extreme Classification
    Repository's tools. It lies in [0, 1].

    Parameters
    ----------
    y_true : {array-like, sparse matrix} of shape (n_samples, n_labels)
    y_score : {array-like, sparse matrix} of shape (n_samples, n_labels)
    k : int, default=5
    propensities : array-like of shape (n_labels,), default=None
        Label propensities in (0, 1]; pass ``label_propensity(y_train)``. When
        None they are computed from ``y_true`` with ``A`` and ``B``.
    A, B : float, default=0.55, 1.5
        Used only when ``propensities`` is None.
    sample_weight : array-like of shape (n_samples,), default=None

    Returns
    -------
    score : float

    Examples
    --------
    >>> import numpy as np
    >>> from sksketch.metrics import psp_at_k
    >>> y_true = np.array([[1, 1, 0]])
    >>> prop = np.array([0.5, 0.25, 1.0])
    >>> psp_at_k(y_true, np.array([[0.9, 0.1, 0.5]]), k=1, propensities=prop)
    0.5
    """
    y_true, y_score, w = _check_inputs(y_true, y_score, k, sample_weight)
    n, n_labels = y_true.shape
    if propensities is None:
        propensities = label_propensity(y_true, A=A, B=B)
    propensities = np.asarray(propensities, dtype=np.float64)
    if propensities.shape != (n_labels,):
        raise ValueError(
            f"propensities must have shape ({n_labels},), got {propensities.shape}"
        )
    if not np.all(np.isfinite(propensities)) or np.any(propensities <= 0) or np.any(
        propensities > 1
    ):
        raise ValueError("propensities must be finite and in (0, 1]")
    inv = 1.0 / propensities
    rows, cols, _, hit, _, true_rows, true_cols = _hits(y_true, y_score, k)
    gained = _per_row_sum(rows, hit * inv[cols], n) / k
    # Ideal: each row's true labels by decreasing 1/p, the first k of them.
    order = np.lexsort((-inv[true_cols], true_rows))
    tr, tc = true_rows[order], true_cols[order]
    rank = np.arange(tr.size) - np.searchsorted(tr, tr)
    keep = rank < k
    ideal = _per_row_sum(tr[keep], inv[tc[keep]], n) / k
    denominator = float(np.dot(w, ideal))
    return float(np.dot(w, gained)) / denominator if denominator > 0 else 0.0
