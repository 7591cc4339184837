"""Input checks shared by the estimators, metrics and data writers."""

import numpy as np
import scipy.sparse as sp

__all__ = ["canonical_rows", "check_binary_indicator", "check_sparse_indices", "ravel_column"]

# Values of a dense input converted to CSR per thread: inputs below 2**20
# values are converted on the calling thread.
_MIN_DENSE_VALUES_PER_THREAD = 1 << 19


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
    if (indptr.dtype == np.int32 and X.indices.dtype == np.int32 and indptr.ndim == 1
            and indptr.shape[0] == n_major + 1 and indptr.flags.c_contiguous
            and X.indices.ndim == 1 and X.indices.flags.c_contiguous):
        # the same test in one compiled pass (numpy's calls cost a single
        # row's prediction more than its arithmetic)
        from .._kernels._rows import csr_index_problem

        problem = csr_index_problem(indptr, X.indices, n_minor, X.data.shape[0])
        if problem == 0:
            return
        if problem == 2:
            axis = "column" if X.format == "csr" else "row"
            raise ValueError(
                f"{input_name} has {axis} indices outside [0, {n_minor}): a malformed "
                "sparse matrix")
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


def canonical_rows(X, *, dtype=np.float32, dense="keep", input_name="X", check_finite=False,
                   n_threads=1):
    """Rows as sksketch's kernels read them; every estimator's input goes through here.

    A sparse matrix becomes CSR of `dtype` with int32 indices and canonical
    entries (sorted, repeated entries summed), on a copy whenever anything
    changes, so the caller's matrix is never modified and a model is the
    same, to the bit, however its input was stored. A dense array becomes
    C-contiguous of `dtype`, or, with ``dense="csr"``, canonical CSR (built
    in two row passes by a kernel: scipy's conversion goes through
    ``nonzero`` and COO, about 10x slower on Fashion-MNIST's 60000 x 784).
    Malformed sparse index arrays are refused first (see
    :func:`check_sparse_indices`).

    Parameters
    ----------
    X : {array-like, sparse matrix} of shape (n_samples, n_features)
    dtype : dtype or None, default=np.float32
        None keeps the input's dtype.
    dense : {"keep", "csr"}, default="keep"
        What a dense input becomes.
    input_name : str, default="X"
        Name used in error messages.
    check_finite : bool, default=False
        Refuse NaN and infinite values (and values that overflow `dtype`).
    n_threads : int, default=1
        Threads of the dense-to-CSR conversion.

    Returns
    -------
    X : scipy.sparse.csr_matrix or ndarray

    Examples
    --------
    >>> import numpy as np
    >>> import scipy.sparse as sp
    >>> from sksketch.utils._validation import canonical_rows
    >>> X = sp.csr_matrix((np.ones(3), [2, 0, 0], [0, 3]), shape=(1, 3))  # unsorted, repeated
    >>> R = canonical_rows(X)
    >>> R.indices.tolist(), R.data.tolist(), R.dtype, R.indices.dtype
    ([0, 2], [2.0, 1.0], dtype('float32'), dtype('int32'))
    >>> canonical_rows(np.eye(2), dense="csr").nnz
    2
    """
    if np.iscomplexobj(X.data if sp.issparse(X) else X):
        raise ValueError(f"{input_name} has complex values; real numbers are expected")
    if dense not in ("keep", "csr"):
        raise ValueError(f"dense must be 'keep' or 'csr', got {dense!r}")
    if sp.issparse(X):
        check_sparse_indices(X, input_name)
        with np.errstate(over="ignore"):  # overflow to inf is reported below
            R = sp.csr_matrix(X, dtype=dtype)
        R = _canonical_csr(R, X, input_name)
        values = R.data
    elif dense == "csr":
        with np.errstate(over="ignore"):
            R = _dense_to_csr(np.ascontiguousarray(X, dtype=dtype or np.float32), input_name,
                              n_threads)
        values = R.data
    else:
        with np.errstate(over="ignore"):
            R = values = np.ascontiguousarray(X, dtype=dtype)
    # float32 values cannot overflow a float64 sum: it is finite exactly when
    # every value is, and costs less than a per-value test
    if check_finite and values.size and not np.isfinite(values.sum(dtype=np.float64)):
        raise ValueError(
            f"{input_name} contains NaN or infinity (or values that overflow {values.dtype})")
    return R


def _check_nnz(nnz, input_name):
    if nnz >= 2**31:
        raise ValueError(f"{input_name} has {nnz} non-zeros; at most 2**31 - 1 are supported")


def _canonical_csr(R, X, input_name):
    """R (a CSR conversion of X, which may share X's arrays) canonical, with int32 indices."""
    _check_nnz(R.nnz, input_name)
    if not R.has_canonical_format:
        R = R.copy()
        R.sum_duplicates()
    # on R's own attributes: X keeps its index arrays
    R.indices = R.indices.astype(np.int32, copy=False)
    R.indptr = R.indptr.astype(np.int32, copy=False)
    return R


def _dense_to_csr(X, input_name, n_threads):
    """Canonical CSR of a C-contiguous 2-D array, in two row passes."""
    from .._kernels import _rows
    from ._threads import threads_for

    if X.ndim != 2:
        raise ValueError(f"{input_name} must be 2-D, got {X.ndim} dimensions")
    n_threads = threads_for(X.size, n_threads, _MIN_DENSE_VALUES_PER_THREAD)
    counts = np.empty(X.shape[0], dtype=np.int64)
    _rows.dense_row_nonzeros(X, counts, n_threads)
    indptr = np.zeros(X.shape[0] + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    nnz = int(indptr[-1])
    _check_nnz(nnz, input_name)
    indices = np.empty(nnz, dtype=np.int32)
    data = np.empty(nnz, dtype=X.dtype)
    _rows.dense_to_csr(X, indptr, indices, data, n_threads)
    indptr = indptr.astype(np.int32)
    out = sp.csr_matrix((data, indices, indptr), shape=X.shape, copy=False)
    out.indices, out.indptr = indices, indptr  # int32 whatever scipy would pick
    out.has_canonical_format = True
    return out


def ravel_column(y, stacklevel=2):
    """``y`` as an array, a column vector raveled with scikit-learn's warning.

    `stacklevel` counts from the caller of this function, as in
    :func:`warnings.warn` called there.

    Examples
    --------
    >>> import warnings
    >>> from sksketch.utils._validation import ravel_column
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     ravel_column([[1], [2]]).shape
    (2,)
    >>> type(caught[0].message).__name__
    'DataConversionWarning'
    """
    from sklearn.exceptions import DataConversionWarning

    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        import warnings

        warnings.warn(
            "A column-vector y was passed when a 1d array was expected.",
            DataConversionWarning,
            stacklevel=stacklevel + 1,
        )
        y = y.ravel()
    return y
