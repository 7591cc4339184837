"""Read and write the Extreme Classification Repository text format.

The first line is a header ``N D L`` (rows, features, labels); each of the
next N lines is ``l1,l2,... f:v f:v ...`` with 0-based label and feature ids.
A row with no labels starts with a space, a row may have no features, and an
empty line is a row with neither.
"""

import os
import re
import tempfile

import numpy as np
import scipy.sparse as sp

from .._kernels import _xc_io
from ..utils._validation import check_sparse_indices

_MESSAGES = {
    _xc_io.ParseError.TOO_FEW_ROWS: "the file ends before the {n} rows its header announces",
    _xc_io.ParseError.TOO_MANY_ROWS: "more rows than the {n} its header announces",
    _xc_io.ParseError.BAD_TOKEN: (
        "malformed token (expected 'l1,l2,...' then 'feature:value' pairs)"
    ),
    _xc_io.ParseError.FEATURE_OUT_OF_RANGE: "feature index out of range [0, {d})",
    _xc_io.ParseError.LABEL_OUT_OF_RANGE: "label index out of range [0, {l})",
    _xc_io.ParseError.DUPLICATE_FEATURE: "duplicate feature index in a row",
    _xc_io.ParseError.DUPLICATE_LABEL: "duplicate label in a row",
    _xc_io.ParseError.BAD_VALUE: "feature value is not a finite float32 number",
    _xc_io.ParseError.CAPACITY: "more tokens than the file's separators allow (internal error)",
}


_HEADER = re.compile(rb"[ \t]*([0-9]+)[ \t]+([0-9]+)[ \t]+([0-9]+)[ \t\r]*")


def _error(path, line, message):
    return ValueError(f"{os.fspath(path)}, line {line}: {message}")


def _parse_header(path, data):
    end = data.find(b"\n")
    line = data[: end if end >= 0 else len(data)]
    # the body's grammar: ASCII digits, fields separated by spaces or tabs
    match = _HEADER.fullmatch(line)
    if match is None:
        raise _error(
            path, 1, f"bad header {line.strip()[:80]!r}: expected three integers 'N D L'"
        )
    n, d, n_labels = (int(f) for f in match.groups())
    if min(n, d, n_labels) < 0 or max(d, n_labels) >= 2**31:
        raise _error(path, 1, f"bad header {line[:80]!r}: sizes must be in [0, 2**31)")
    return n, d, n_labels, (end + 1 if end >= 0 else len(data))


def _check_sorted_unique(path, indptr, indices, what):
    """Sort rows given out of order; a repeated index is an error."""
    if indices.size == 0:
        return
    same = np.flatnonzero(np.diff(indices) == 0)
    if same.size:
        # equal neighbours inside one row (not across a row boundary)
        rows = np.searchsorted(indptr, same + 1, side="right") - 1
        inside = same + 1 < indptr[rows + 1]
        if np.any(inside):
            raise _error(path, int(rows[inside][0]) + 2, f"duplicate {what} in a row")


def load_xc(path, *, dtype=np.float32):
    """Load a dataset in the Extreme Classification Repository text format.

    Parameters
    ----------
    path : str or os.PathLike
        The file: a header ``N D L`` then N rows ``l1,l2,... f:v f:v ...``.
    dtype : {np.float32, np.float64}, default=np.float32
        Dtype of the feature values (parsed as float32 in either case).

    Returns
    -------
    X : scipy.sparse.csr_matrix of shape (N, D)
        Features, sorted indices.
    Y : scipy.sparse.csr_matrix of shape (N, L), dtype int32
        Binary label indicator, sorted indices; a row may be empty.

    Raises
    ------
    ValueError
        For a malformed file, naming the file and the 1-based line: bad header,
        too few or too many rows, malformed tokens, indices out of range,
        duplicate indices in a row, values that are not finite float32 numbers.

    Examples
    --------
    >>> import os, tempfile
    >>> from sksketch.datasets import load_xc
    >>> path = os.path.join(tempfile.mkdtemp(), "tiny.txt")
    >>> with open(path, "w") as f:
    ...     _ = f.write("2 4 3\\n0,2 1:0.5 3:1\\n 0:2\\n")
    >>> X, Y = load_xc(path)
    >>> X.toarray()
    array([[0. , 0.5, 0. , 1. ],
           [2. , 0. , 0. , 0. ]], dtype=float32)
    >>> Y.toarray()
    array([[1, 0, 1],
           [0, 0, 0]], dtype=int32)
    """
    try:
        ok = np.dtype(dtype) in (np.float32, np.float64)
    except TypeError:
        ok = False
    if not ok:
        raise ValueError(f"dtype must be np.float32 or np.float64, got {dtype!r}")
    dtype = np.dtype(dtype)
    with open(path, "rb") as f:
        data = f.read()
    return _parse_xc(data, path, dtype)


def _parse_xc(data, path, dtype):
    """Parse the bytes of an XC file; ``path`` names it in error messages."""
    n, d, n_labels, start = _parse_header(path, data)
    if n > data.count(b"\n", start) + 1:
        # checked before allocating n-sized arrays: a forged header cannot ask for terabytes
        raise _error(path, data.count(b"\n") + 1,
                     _MESSAGES[_xc_io.ParseError.TOO_FEW_ROWS].format(n=n))
    x_cap = data.count(b":", start)
    y_cap = data.count(b",", start) + n
    x_indptr = np.empty(n + 1, dtype=np.int64)
    y_indptr = np.empty(n + 1, dtype=np.int64)
    x_indices = np.empty(x_cap, dtype=np.int32)
    x_data = np.empty(x_cap, dtype=np.float32)
    y_indices = np.empty(y_cap, dtype=np.int32)
    buf = np.frombuffer(data, dtype=np.uint8)
    code, line, unsorted_x, unsorted_y = _xc_io.parse_body(
        buf, start, n, d, n_labels, x_indptr, x_indices, x_data, y_indptr, y_indices
    )
    if code != _xc_io.ParseError.OK:
        raise _error(path, line, _MESSAGES[code].format(n=n, d=d, l=n_labels))
    nx, ny = int(x_indptr[-1]), int(y_indptr[-1])
    index_dtype = np.int32 if max(nx, ny) < 2**31 else np.int64
    X = sp.csr_matrix(
        (x_data[:nx].astype(dtype, copy=False), x_indices[:nx].copy(),
         x_indptr.astype(index_dtype)),
        shape=(n, d),
    )
    Y = sp.csr_matrix(
        (np.ones(ny, dtype=np.int32), y_indices[:ny].copy(), y_indptr.astype(index_dtype)),
        shape=(n, n_labels),
    )
    for M, unsorted, what in ((X, unsorted_x, "feature index"), (Y, unsorted_y, "label")):
        if unsorted:
            M.has_sorted_indices = False
            M.sort_indices()
            _check_sorted_unique(path, M.indptr, M.indices, what)
        M.has_sorted_indices = True
    return X, Y


def _csr64(M):
    M = sp.csr_matrix(M)
    M.sum_duplicates()
    M.sort_indices()
    return (M.indptr.astype(np.int64), M.indices.astype(np.int32), M.data)


def dump_xc(X, Y, path):
    """Write (X, Y) in the Extreme Classification Repository text format.

    Values are written as float32 in the shortest form that reads back to the
    same float32, so ``load_xc(path)`` returns exactly what was written. The
    file is written to a temporary file in the same folder and renamed, so an
    interrupted write leaves no partial file at ``path``.

    Parameters
    ----------
    X : {array-like, sparse matrix} of shape (n_samples, n_features)
        Finite feature values (stored as float32).
    Y : {array-like, sparse matrix} of shape (n_samples, n_labels)
        Binary label indicator (a sparse Y's repeated entries add up, so a
        label stored twice in a row is refused as not binary).
    path : str or os.PathLike

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> from sksketch.datasets import dump_xc, load_xc
    >>> path = os.path.join(tempfile.mkdtemp(), "out.txt")
    >>> dump_xc(np.array([[0, 0.1], [3, 0]]), np.array([[1, 1], [0, 0]]), path)
    >>> print(open(path).read(), end="")
    2 2 2
    0,1 1:0.1
     0:3
    """
    for name, M in (("X", X), ("Y", Y)):
        check_sparse_indices(M, name)
        if np.iscomplexobj(M):
            raise ValueError(f"{name} has complex values; real numbers are expected")
    with np.errstate(over="ignore"):  # overflow to inf is reported below
        if not sp.issparse(X):
            # through NumPy: scipy.sparse refuses some real dtypes, such as float16
            X = np.asarray(X, dtype=np.float32)
        X = sp.csr_matrix(X).astype(np.float32)
    # a copy: its repeated entries are summed and its zeros dropped in place
    Y = sp.csr_matrix(Y, copy=True)
    if X.shape[0] != Y.shape[0]:
        raise ValueError(f"X has {X.shape[0]} rows but Y has {Y.shape[0]}")
    X.eliminate_zeros()
    Y.sum_duplicates()
    Y.eliminate_zeros()
    if not np.all(np.isfinite(X.data)):
        raise ValueError("X contains NaN or infinity (or values that overflow float32)")
    if Y.nnz and not np.all(Y.data == 1):
        raise ValueError(
            "Y must be a binary indicator matrix (values 0 and 1; repeated entries of a "
            "sparse Y add up)"
        )
    x_indptr, x_indices, x_data = _csr64(X)
    y_indptr, y_indices, _ = _csr64(Y)
    x_data = np.ascontiguousarray(x_data, dtype=np.float32)
    n = X.shape[0]
    folder = os.path.dirname(os.path.abspath(os.fspath(path)))
    fd, tmp = tempfile.mkstemp(prefix=".xc-", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(f"{n} {X.shape[1]} {Y.shape[1]}\n".encode())
            step = 65536
            for start in range(0, n, step):
                f.write(_xc_io.format_rows(x_indptr, x_indices, x_data, y_indptr,
                                           y_indices, start, min(n, start + step)))
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
