"""A SLIDEClassifier's targets: class labels or an indicator, as one CSR indicator."""

import numpy as np
import scipy.sparse as sp
from sklearn.utils.multiclass import check_classification_targets

from ..utils._validation import check_binary_indicator, check_sparse_indices, ravel_column

__all__ = ["encode_targets", "is_indicator"]


def is_indicator(y):
    """Whether y is a 2-D label indicator rather than class labels."""
    if sp.issparse(y):
        return True
    y = np.asarray(y) if not hasattr(y, "ndim") else y
    return y.ndim == 2 and y.shape[1] > 1


def encode_targets(est, y, classes, first_call, allow_unknown=False):
    """Targets as a CSR indicator over ``est.classes_`` (int32 ids).

    On a first call, also set ``classes_`` and whether the targets are
    multi-label (and given as a sparse indicator).

    With `allow_unknown`, class labels outside ``classes_`` become rows
    with no label (scored as misses) instead of an error.
    """
    if is_indicator(y):
        check_sparse_indices(y, "y")
        check_classification_targets(y)
        Y = check_binary_indicator(y)
        n_labels = Y.shape[1]
        if first_call:
            if classes is not None and len(classes) != n_labels:
                raise ValueError(
                    f"classes has {len(classes)} entries but y has {n_labels} columns"
                )
            est.classes_ = np.arange(n_labels)
            est._multilabel = True
            est._sparse_target = sp.issparse(y)
        elif not est._multilabel:
            raise ValueError(
                "y is a label indicator matrix but the model was fit on class labels"
            )
        elif n_labels != len(est.classes_):
            raise ValueError(
                f"y has {n_labels} columns but the model was fit on {len(est.classes_)} labels"
            )
        Y.sort_indices()
        Y.indices = Y.indices.astype(np.int32, copy=False)
        Y.indptr = Y.indptr.astype(np.int32, copy=False)
        return Y

    y = ravel_column(y, stacklevel=3)
    check_classification_targets(y)
    if first_call:
        est.classes_ = np.unique(y) if classes is None else np.unique(classes)
        est._multilabel = False
        est._sparse_target = False
    elif est._multilabel:
        raise ValueError("y holds class labels but the model was fit on an indicator matrix")
    ids = np.searchsorted(est.classes_, y)
    ids = np.clip(ids, 0, len(est.classes_) - 1)
    known = est.classes_[ids] == y
    if not allow_unknown and not np.all(known):
        raise ValueError(
            f"y contains labels not in classes: {np.unique(y[~known])[:10].tolist()}"
        )
    n = y.shape[0]
    indptr = np.concatenate([[0], np.cumsum(known)]).astype(np.int32)
    return sp.csr_matrix(
        (np.ones(indptr[-1], dtype=np.float32), ids[known].astype(np.int32), indptr),
        shape=(n, len(est.classes_)),
    )

