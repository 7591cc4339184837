"""Input checks shared by the estimators, metrics and data writers."""

import numpy as np
import scipy.sparse as sp

__all__ = ["check_binary_indicator", "check_sparse_indices"]


def check_sparse_indices(X, input_name="X"):
    """Raise a ValueError when a CSR or CSC matrix's index arrays are malformed.

    SciPy builds a matrix from ``(data, indices, indptr)`` without checking
    that the indices lie in range or that ``indptr`` never decreases, and
    compiled code (sksketch's kernels, SciPy's own products and sorts) then
    reads and writes out of bounds. Other formats and dense input pass.

    Parameters
    ----------
    X : object
        Checked when it is a CSR or CSC matrix or array.
    input_name : str, default="X"
        Name used in the error message.

    Examples
    --------
    >>> import numpy as np
    >>> import scipy.sparse as sp
    >>> from sksketch.utils._validation import check_sparse_indices
    >>> bad = sp.csr_matrix((np.ones(1), np.array([7]), np.array([0, 1])), shape=(1, 5))
    >>> check_sparse_indices(bad)
    Traceback (most recent call last):
    ...
    ValueError: X has column indices outside [0, 5): a malformed sparse matrix
    """
    if not sp.issparse(X) or X.format not in ("csr", "csc"):
        return
    indptr = np.asarray(X.indptr)
    n_major, n_minor = X.shape if X.format == "csr" else X.shape[::-1]
    if (
        indptr.shape != (n_major + 1,)
        or indptr[0] != 0
        or indptr[-1] > X.indices.shape[0]
        or indptr[-1] > X.data.shape[0]
        or np.any(indptr[1:] < indptr[:-1])
    ):
        raise ValueError(
            f"{input_name} is a malformed sparse matrix: its indptr must start at 0, never "
            "decrease and end within its indices and data"
        )
    used = X.indices[: indptr[-1]]
    if used.size and (used.min() < 0 or used.max() >= n_minor):
        axis = "column" if X.format == "csr" else "row"
        raise ValueError(
            f"{input_name} has {axis} indices outside [0, {n_minor}): a malformed sparse matrix"
        )


def check_binary_indicator(y, dtype=None, copy=False):
    """A multi-label target as canonical CSR with every stored value 1.

    Repeated entries of a sparse ``y`` add up (as in ``y.toarray()``) and
    stored zeros are dropped, on a copy when anything changes, so the
    caller's matrix is never modified. scikit-learn's ``type_of_target``
    calls any matrix of two values an indicator (``{0, 2}``, ``{-1, 1}``);
    this refuses everything but 0 and 1.

    Parameters
    ----------
    y : {array-like, sparse matrix} of shape (n_samples, n_labels)
    dtype : dtype, default=None
        dtype of the returned matrix (that of ``y`` when None).
    copy : bool, default=False
        Always return arrays of its own; otherwise a canonical CSR ``y`` may
        share its arrays with the result.

    Returns
    -------
    Y : scipy.sparse.csr_matrix of shape (n_samples, n_labels)

    Examples
    --------
    >>> import numpy as np
    >>> from sksketch.utils._validation import check_binary_indicator
    >>> check_binary_indicator(np.array([[0, 1], [1, 0]])).nnz
    2
    >>> check_binary_indicator(np.array([[0, 2], [2, 0]]))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: y must be a binary indicator matrix (values 0 and 1; ...)
    """
    Y = sp.csr_matrix(y, dtype=dtype, copy=copy)
    if not Y.has_canonical_format or not Y.data.all():
        if not copy:  # the conversion may share a CSR y's arrays
            Y = Y.copy()
        Y.sum_duplicates()
        Y.eliminate_zeros()
    if Y.nnz and not np.all(Y.data == 1):
        raise ValueError(
            "y must be a binary indicator matrix (values 0 and 1; repeated entries "
            "of a sparse y add up)"
        )
    return Y
