"""canonical_rows: the one input canonicaliser every estimator's rows go through."""

import numpy as np
import pytest
import scipy.sparse as sp

from sksketch.utils._validation import canonical_rows


def _messy():
    """CSR with unsorted, repeated entries and int64 index arrays."""
    data = np.array([1.0, 2.0, 3.0, 4.0])
    indices = np.array([3, 0, 3, 1], dtype=np.int64)
    indptr = np.array([0, 3, 4], dtype=np.int64)
    return sp.csr_matrix((data, indices, indptr), shape=(2, 5))


@pytest.mark.parametrize("fmt", ["csr", "csc", "coo"])
def test_sparse_rows_become_canonical_float32_csr_without_touching_the_input(fmt):
    X = _messy()
    before = (X.data.copy(), X.indices.copy(), X.indptr.copy())
    R = canonical_rows(X.asformat(fmt))
    assert R.format == "csr" and R.dtype == np.float32
    assert R.indices.dtype == np.int32 and R.indptr.dtype == np.int32
    assert R.has_canonical_format
    np.testing.assert_array_equal(R.toarray(), X.toarray())
    np.testing.assert_array_equal(R.indices, [0, 3, 1])
    for got, old in zip((X.data, X.indices, X.indptr), before, strict=True):
        np.testing.assert_array_equal(got, old)


def test_dtype_none_keeps_the_values_dtype():
    R = canonical_rows(_messy(), dtype=None)
    assert R.dtype == np.float64 and R.indices.dtype == np.int32
    D = canonical_rows(np.asfortranarray(np.ones((3, 2))), dtype=None)
    assert D.dtype == np.float64 and D.flags.c_contiguous


def test_dense_rows_stay_dense_or_become_the_same_csr():
    X = np.array([[0.0, 1.5, 0.0], [2.0, 0.0, -0.0]])
    D = canonical_rows(X)
    assert isinstance(D, np.ndarray) and D.dtype == np.float32 and D.flags.c_contiguous
    R = canonical_rows(X, dense="csr")
    np.testing.assert_array_equal(R.toarray(), X)
    np.testing.assert_array_equal(R.indptr, [0, 1, 2])


def test_bad_rows_are_refused_with_the_parameter_named():
    bad = sp.csr_matrix((np.ones(1), np.array([7]), np.array([0, 1])), shape=(1, 5))
    with pytest.raises(ValueError, match="rows has column indices outside"):
        canonical_rows(bad, input_name="rows")
    with pytest.raises(ValueError, match="X contains NaN or infinity"):
        canonical_rows(np.array([[1.0, np.nan]]), check_finite=True)
    with pytest.raises(ValueError, match="overflow float32"):
        canonical_rows(sp.csr_matrix(np.array([[1e300, 0.0]])), check_finite=True)
    with pytest.raises(ValueError, match="complex"):
        canonical_rows(np.ones((2, 2), dtype=complex))
    with pytest.raises(ValueError, match="dense must be"):
        canonical_rows(np.ones((2, 2)), dense="coo")
    assert np.isnan(canonical_rows(np.array([[np.nan]]))[0, 0])  # checked only on request


def test_compiled_index_check_matches_the_plain_one():
    """csr_index_problem (what check_sparse_indices runs on int32 arrays) agrees
    with the plain numpy test on well-formed and malformed arrays alike."""
    from sksketch._kernels._rows import csr_index_problem

    def plain(indptr, indices, n_minor, n_data):
        if (indptr.size == 0 or indptr[0] != 0 or indptr[-1] > indices.size
                or indptr[-1] > n_data or np.any(np.diff(indptr) < 0)):
            return 1
        used = indices[: indptr[-1]]
        return 2 if used.size and (used.min() < 0 or used.max() >= n_minor) else 0

    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(400):
        n = int(rng.integers(0, 6))
        indptr = np.sort(rng.integers(0, 8, n + 1)).astype(np.int32)
        indptr[0] = 0 if rng.random() < 0.9 else 1
        if rng.random() < 0.2 and n > 1:
            indptr[1:] = indptr[1:][::-1]  # decreasing
        indices = rng.integers(-1, 6, int(rng.integers(0, 9))).astype(np.int32)
        n_minor, n_data = int(rng.integers(1, 6)), int(rng.integers(0, 9))
        expected = plain(indptr, indices, n_minor, n_data)
        assert csr_index_problem(indptr, indices, n_minor, n_data) == expected
        seen.add(expected)
    assert seen == {0, 1, 2}
