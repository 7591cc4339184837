"""XC text format reader/writer and the synthetic problem generator."""

import math
import os

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier

from sksketch.datasets import dump_xc, load_xc, make_extreme_classification
from sksketch.metrics import precision_at_k


def reference_parse(text):
    """A plain Python reading of the format, for comparison."""
    lines = text.split("\n")
    n, d, n_labels = (int(t) for t in lines[0].split())
    X = np.zeros((n, d), dtype=np.float32)
    Y = np.zeros((n, n_labels), dtype=np.int32)
    for i, line in enumerate(lines[1 : n + 1]):
        line = line.rstrip("\r")
        tokens = line.split(" ")
        first = tokens[0]
        if first and ":" not in first:
            for lab in first.split(","):
                Y[i, int(lab)] = 1
            tokens = tokens[1:]
        for tok in tokens:
            if tok:
                f, v = tok.split(":")
                X[i, int(f)] = np.float32(float(v))
    return X, Y


def write(tmp_path, text, name="data.txt", mode="w"):
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, newline="")
    return path


SAMPLE = "4 6 5\n0,3 1:0.5 4:2\n 0:1 5:-1.25e-3\n2\n\n"


def test_load_small_file(tmp_path):
    X, Y = load_xc(write(tmp_path, SAMPLE))
    assert sp.isspmatrix_csr(X) and sp.isspmatrix_csr(Y)
    assert X.dtype == np.float32 and X.shape == (4, 6) and Y.shape == (4, 5)
    assert X.has_sorted_indices and Y.has_sorted_indices
    Xr, Yr = reference_parse(SAMPLE)
    np.testing.assert_array_equal(X.toarray(), Xr)
    np.testing.assert_array_equal(Y.toarray(), Yr)
    # row 1 has no label, row 2 no feature, row 3 neither
    assert list(np.diff(Y.indptr)) == [2, 0, 1, 0]
    assert list(np.diff(X.indptr)) == [2, 2, 0, 0]


def test_load_float64(tmp_path):
    X, _ = load_xc(write(tmp_path, SAMPLE), dtype=np.float64)
    assert X.dtype == np.float64
    assert X[1, 5] == np.float64(np.float32(-1.25e-3))
    X, _ = load_xc(write(tmp_path, SAMPLE), dtype="float64")
    assert X.dtype == np.float64
    with pytest.raises(ValueError, match="dtype"):
        load_xc(write(tmp_path, SAMPLE), dtype=np.int32)


def test_crlf_trailing_blank_lines_and_no_final_newline(tmp_path):
    ref = load_xc(write(tmp_path, SAMPLE))
    crlf = load_xc(write(tmp_path, SAMPLE.replace("\n", "\r\n"), "crlf.txt"))
    trailing = load_xc(write(tmp_path, SAMPLE + "\n\n  \n", "trail.txt"))
    no_nl = "2 3 2\n0 1:1\n1 2:2"
    last = load_xc(write(tmp_path, no_nl, "nonl.txt"))
    for X, Y in (crlf, trailing):
        assert (X != ref[0]).nnz == 0 and (Y != ref[1]).nnz == 0
    assert last[0].toarray().tolist() == [[0, 1, 0], [0, 0, 2]]


def test_tabs_and_repeated_blanks(tmp_path):
    X, Y = load_xc(write(tmp_path, "1 3 2\n1\t0:1  2:3 \n"))
    assert X.toarray().tolist() == [[1, 0, 3]] and Y.toarray().tolist() == [[0, 1]]


def test_unsorted_rows_are_sorted(tmp_path):
    X, Y = load_xc(write(tmp_path, "2 5 4\n3,1 4:1 0:2\n0 2:1 1:1\n"))
    assert X.has_sorted_indices and Y.has_sorted_indices
    assert X.indices.tolist() == [0, 4, 1, 2] and X.data.tolist() == [2, 1, 1, 1]
    assert Y.indices.tolist() == [1, 3, 0]


def test_number_forms(tmp_path):
    values = ["1", "-0", "0.1", "1e-3", "-2.5E+2", "3.4028234e38", "1.4e-45", ".5", "7.",
              "+4", "0.30000001192092896", "123456789012345678901234567890"]
    text = f"1 {len(values)} 1\n0 " + " ".join(f"{i}:{v}" for i, v in enumerate(values)) + "\n"
    X, _ = load_xc(write(tmp_path, text))
    expected = np.array([np.float32(float(v)) for v in values], dtype=np.float32)
    np.testing.assert_array_equal(X.toarray()[0], expected)
    assert X.data[1] == 0 and np.signbit(X.data[1])  # stored as written


@pytest.mark.parametrize(
    "text, line, message",
    [
        ("", 1, "bad header"),
        ("3 4\n", 1, "bad header"),
        ("a b c\n", 1, "bad header"),
        ("1 2 3 4\n", 1, "bad header"),
        ("-1 2 3\n", 1, "bad header"),
        ("2 4 3\n0 1:1\n", 3, "ends before the 2 rows"),
        ("1 4 3\n0 1:1\n1 2:1\n", 3, "more rows than the 1"),
        ("2 4 3\n0 1:1\n0 x:1\n", 3, "malformed token"),
        ("1 4 3\n0 1:abc\n", 2, "not a finite float32"),
        ("1 4 3\n0 1:nan\n", 2, "not a finite float32"),
        ("1 4 3\n0 1:inf\n", 2, "not a finite float32"),
        ("1 4 3\n0 1:1e39\n", 2, "not a finite float32"),
        ("1 4 3\n0 1:\n", 2, "not a finite float32"),
        ("1 4 3\n0 1\n", 2, "malformed token"),
        ("1 4 3\n0, 1:1\n", 2, "malformed token"),
        ("1 4 3\n0;1 1:1\n", 2, "malformed token"),
        ("1 4 3\n-1 1:1\n", 2, "malformed token"),
        ("1 4 3\n0 -1:1\n", 2, "malformed token"),
        ("2 4 3\n0 1:1\n0 4:1\n", 3, r"feature index out of range \[0, 4\)"),
        ("2 4 3\n0 1:1\n3 1:1\n", 3, r"label index out of range \[0, 3\)"),
        ("1 4 3\n0 99999999999999999999:1\n", 2, "malformed token"),
        ("1 4 3\n0 1:1 1:2\n", 2, "duplicate feature"),
        ("2 4 3\n0 1:1\n0 2:1 0:1 2:1\n", 3, "duplicate feature"),
        ("1 4 3\n1,1 1:1\n", 2, "duplicate label"),
        ("2 4 3\n0 1:1\n2,0,2 1:1\n", 3, "duplicate label"),
        ("1 4 3\n0 1:1\r2:1\n", 2, "malformed token"),
        (b"1 4 3\n0 1:1 \xff\xfe:1\n", 2, "malformed token"),
        (b"\xff\xfe 4 3\n", 1, "bad header"),
        (b"1\x1d2 2\n1\n", 1, "bad header"),
        ("+1 2 2\n1\n", 1, "bad header"),
        ("1_0 2 2\n1\n", 1, "bad header"),
        # a forged row count fails before anything of its size is allocated
        ("999999999999999 4 3\n0 1:1\n", 3, "ends before the 999999999999999 rows"),
    ],
)
def test_malformed_file_names_file_and_line(tmp_path, text, line, message):
    path = write(tmp_path, text)
    with pytest.raises(ValueError, match=f"data.txt, line {line}: .*{message}"):
        load_xc(path)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_xc(tmp_path / "nope.txt")


def test_zero_rows(tmp_path):
    X, Y = load_xc(write(tmp_path, "0 10 5\n"))
    assert X.shape == (0, 10) and Y.shape == (0, 5)
    dump_xc(X, Y, tmp_path / "out.txt")
    assert (tmp_path / "out.txt").read_text() == "0 10 5\n"


def assert_same(A, B):
    assert A.shape == B.shape
    A, B = sp.csr_matrix(A), sp.csr_matrix(B)
    A.sort_indices()
    B.sort_indices()
    np.testing.assert_array_equal(A.indptr, B.indptr)
    np.testing.assert_array_equal(A.indices, B.indices)
    np.testing.assert_array_equal(A.data.view(np.uint32) if A.dtype == np.float32 else A.data,
                                  B.data.view(np.uint32) if B.dtype == np.float32 else B.data)


def test_round_trip_special_rows(tmp_path):
    X = sp.csr_matrix(np.array([[0, 0, 0], [1.5, 0, -2], [0, 0, 0], [0, 3e-30, 0]],
                               dtype=np.float32))
    Y = sp.csr_matrix(np.array([[1, 0], [0, 0], [0, 0], [1, 1]], dtype=np.int32))
    path = tmp_path / "rt.txt"
    dump_xc(X, Y, path)
    assert path.read_text().split("\n")[1:5] == ["0", " 0:1.5 2:-2", "", "0,1 1:3e-30"]
    X2, Y2 = load_xc(path)
    assert_same(X, X2)
    assert_same(Y, Y2)
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]


def test_round_trip_dense_and_float64_input(tmp_path):
    rng = np.random.RandomState(0)
    X = rng.randn(20, 7) * (rng.rand(20, 7) < 0.3)
    Y = (rng.rand(20, 4) < 0.3).astype(bool)
    dump_xc(X, Y, tmp_path / "a.txt")
    X2, Y2 = load_xc(tmp_path / "a.txt")
    np.testing.assert_array_equal(X2.toarray(), X.astype(np.float32))
    np.testing.assert_array_equal(Y2.toarray(), Y.astype(np.int32))


def test_dump_rejects_bad_input(tmp_path):
    path = tmp_path / "x.txt"
    with pytest.raises(ValueError, match="rows"):
        dump_xc(np.ones((3, 2)), np.ones((2, 2)), path)
    with pytest.raises(ValueError, match="NaN or infinity"):
        dump_xc(np.array([[np.nan, 1.0]]), np.ones((1, 2)), path)
    with pytest.raises(ValueError, match="NaN or infinity"):
        dump_xc(np.array([[1e300, 1.0]]), np.ones((1, 2)), path)
    with pytest.raises(ValueError, match="binary"):
        dump_xc(np.ones((1, 2)), np.array([[2, 0]]), path)
    assert not path.exists()
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]


finite_f32 = st.floats(width=32, allow_nan=False, allow_infinity=False, allow_subnormal=True)


@st.composite
def xc_problems(draw):
    n = draw(st.integers(0, 6))
    d = draw(st.integers(1, 8))
    n_labels = draw(st.integers(1, 6))
    xs = draw(st.lists(st.lists(finite_f32, min_size=d, max_size=d), min_size=n, max_size=n))
    ys = draw(st.lists(st.lists(st.booleans(), min_size=n_labels, max_size=n_labels),
                       min_size=n, max_size=n))
    X = np.array(xs, dtype=np.float32).reshape(n, d)
    Y = np.array(ys, dtype=np.int32).reshape(n, n_labels)
    return X, Y


@settings(max_examples=150, deadline=None)
@given(xc_problems())
def test_round_trip_property(tmp_path_factory, problem):
    X, Y = problem
    path = tmp_path_factory.mktemp("rt") / "p.txt"
    dump_xc(X, Y, path)
    X2, Y2 = load_xc(path)
    Xs = sp.csr_matrix(X)
    Xs.eliminate_zeros()
    assert_same(Xs, X2)
    assert_same(sp.csr_matrix(Y), Y2)
    # the plain reference reader agrees with the compiled one
    Xr, Yr = reference_parse(path.read_text())
    np.testing.assert_array_equal(Xr, X2.toarray())
    np.testing.assert_array_equal(Yr, Y2.toarray())


@pytest.mark.parametrize(
    "name, split, shape, n_labels, no_label_rows",
    [
        ("bibtex", "train", (4880, 1836), 159, 0),
        ("bibtex", "test", (2515, 1836), 159, 0),
        ("delicious", "train", (12920, 500), 983, 12),
        ("delicious", "test", (3185, 500), 983, 2),
    ],
)
def test_real_datasets(data_dir, name, split, shape, n_labels, no_label_rows):
    path = data_dir / name / f"{split}.txt"
    X, Y = load_xc(path)
    assert X.shape == shape and Y.shape == (shape[0], n_labels)
    assert int((np.diff(Y.indptr) == 0).sum()) == no_label_rows
    Xr, Yr = reference_parse(path.read_text())
    np.testing.assert_array_equal(X.toarray(), Xr)
    np.testing.assert_array_equal(Y.toarray(), Yr)


def test_real_dataset_round_trip(data_dir, tmp_path):
    X, Y = load_xc(data_dir / "delicious" / "test.txt")
    dump_xc(X, Y, tmp_path / "d.txt")
    X2, Y2 = load_xc(tmp_path / "d.txt")
    assert_same(X, X2)
    assert_same(Y, Y2)


# ---------------------------------------------------------------- generator


def test_generator_shapes_and_types():
    X, Y = make_extreme_classification(500, 2000, 3000, avg_labels_per_sample=4,
                                       avg_features_per_sample=40, random_state=0)
    assert sp.isspmatrix_csr(X) and sp.isspmatrix_csr(Y)
    assert X.shape == (500, 2000) and Y.shape == (500, 3000)
    assert X.dtype == np.float32 and Y.dtype == np.int32
    assert X.has_sorted_indices and Y.has_sorted_indices
    for M in (X, Y):
        M2 = M.copy()
        M2.sum_duplicates()
        assert M2.nnz == M.nnz
    assert np.all(np.diff(Y.indptr) >= 1)
    np.testing.assert_allclose(sp.linalg.norm(X, axis=1), 1, rtol=1e-5)
    assert abs(X.nnz / 500 - 40) < 2
    assert abs(Y.nnz / 500 - 4) < 0.3


def test_generator_reproducible():
    a = make_extreme_classification(200, 1000, 500, random_state=3)
    b = make_extreme_classification(200, 1000, 500, random_state=np.random.RandomState(3))
    c = make_extreme_classification(200, 1000, 500, random_state=4)
    for A, B in zip(a, b, strict=True):
        assert_same(A, B)
    assert (a[1] != c[1]).nnz > 0


def test_generator_power_law_labels():
    _, Y = make_extreme_classification(20000, 5000, 10000, label_zipf_exponent=1.0,
                                       random_state=0)
    freq = np.sort(np.asarray(Y.sum(axis=0)).ravel())[::-1]
    # log-log slope of frequency against rank over the head is close to -1
    ranks = np.arange(1, 201)
    slope = np.polyfit(np.log(ranks), np.log(freq[:200]), 1)[0]
    assert -1.25 < slope < -0.75
    # heavy tail: many labels are rare, the top 1% carry a large share
    assert (freq <= 2).mean() > 0.5
    assert freq[:100].sum() / freq.sum() > 0.2
    _, Yu = make_extreme_classification(20000, 5000, 100, label_zipf_exponent=0.0,
                                        random_state=0)
    fu = np.asarray(Yu.sum(axis=0)).ravel()
    assert fu.max() / fu.min() < 1.6


def test_generator_is_learnable():
    X, Y = make_extreme_classification(3000, 2000, 30, avg_labels_per_sample=2,
                                       random_state=0)
    clf = OneVsRestClassifier(LogisticRegression(C=10, max_iter=300))
    keep = np.asarray(Y[:2000].sum(axis=0)).ravel() > 0
    clf.fit(X[:2000], Y[:2000][:, keep].toarray())
    scores = np.full((1000, 30), -np.inf)
    scores[:, keep] = clf.decision_function(X[2000:])
    p1 = precision_at_k(Y[2000:], scores, k=1)
    # chance is about the top label's frequency
    chance = np.asarray(Y.sum(axis=0)).max() / Y.shape[0]
    assert p1 > 0.8 and p1 > 2 * chance


def test_generator_label_clusters_share_features():
    import scipy.sparse as sp

    from sksketch.datasets import make_extreme_classification

    kwargs = dict(n_samples=3000, n_features=20000, n_labels=400, avg_labels_per_sample=1.0,
                  avg_features_per_sample=8, noise_fraction=0.0, random_state=0)
    X0, Y0 = make_extreme_classification(**kwargs)
    # a cluster size alone changes nothing
    X1, Y1 = make_extreme_classification(label_cluster_size=8, **kwargs)
    assert (X0 != X1).nnz == 0 and (Y0 != Y1).nnz == 0

    def signatures(X, Y):
        # features on at least a tenth of a label's rows (one label per row)
        seen = sp.csr_matrix(Y.T @ (X != 0).astype(np.int32))
        n_rows = np.asarray(Y.sum(axis=0)).ravel()
        return [set(seen.indices[seen.indptr[j]:seen.indptr[j + 1]][
                    seen.data[seen.indptr[j]:seen.indptr[j + 1]] >= 0.1 * n_rows[j]])
                for j in range(Y.shape[1])]

    def overlap(sets, a, b):
        return len(sets[a] & sets[b]) / max(1, min(len(sets[a]), len(sets[b])))

    X2, Y2 = make_extreme_classification(label_cluster_size=8, cluster_shared_fraction=0.5,
                                         **kwargs)
    np.testing.assert_array_equal(Y2.toarray(), Y0.toarray())  # the same labels
    by_rank = np.argsort(-np.asarray(Y2.sum(axis=0)).ravel(), kind="stable")
    clustered, independent = signatures(X2, Y2), signatures(X0, Y0)
    # the most frequent labels are (almost surely) of the first cluster: half
    # of their 30 signature features are common; a label far down is not
    assert len(clustered[by_rank[0]]) >= 25
    assert overlap(clustered, by_rank[0], by_rank[1]) >= 0.4
    assert overlap(clustered, by_rank[1], by_rank[2]) >= 0.4
    assert overlap(clustered, by_rank[0], by_rank[100]) < 0.1
    assert overlap(independent, by_rank[0], by_rank[1]) < 0.1


def test_generator_validation():
    with pytest.raises(ValueError, match="n_labels"):
        make_extreme_classification(10, 10, 0)
    with pytest.raises(ValueError, match="noise_fraction"):
        make_extreme_classification(10, 10, 10, noise_fraction=1.5)


def test_generator_memory_is_order_nnz():
    # 2 million labels and features, few rows: nothing of size n_labels x anything
    import tracemalloc

    tracemalloc.start()
    X, Y = make_extreme_classification(200, 2_000_000, 2_000_000, random_state=0)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert X.shape[1] == Y.shape[1] == 2_000_000
    # the label and feature CDFs (16 B each) dominate; no dense block
    assert peak < 120e6, peak


def test_dump_load_generated(tmp_path):
    X, Y = make_extreme_classification(300, 1000, 2000, random_state=1)
    dump_xc(X, Y, tmp_path / "g.txt")
    X2, Y2 = load_xc(tmp_path / "g.txt")
    assert_same(X, X2)
    assert_same(Y, Y2)
    assert math.isclose(X2.sum(), X.sum(), rel_tol=1e-6)


def test_round_trip_every_float32_kind(tmp_path):
    # random bit patterns cover subnormals, huge and tiny exponents, and values
    # that need all 9 significant digits
    rng = np.random.default_rng(0)
    vals = rng.integers(0, 2**32, 300_000, dtype=np.uint64).astype(np.uint32).view(np.float32)
    vals = vals[np.isfinite(vals) & (vals != 0)]
    special = np.array([0.1, 1e-5, 1e-6, 1.5e8, 1e9, 1e7, 12345678, 9.999999e-5, -2.5,
                        np.finfo(np.float32).max, np.finfo(np.float32).tiny,
                        np.finfo(np.float32).smallest_subnormal], dtype=np.float32)
    vals = np.concatenate([special, vals])
    n_cols = 1000
    n_rows = -(-vals.size // n_cols)
    vals = np.pad(vals, (0, n_rows * n_cols - vals.size), constant_values=1)
    X = sp.csr_matrix(vals.reshape(n_rows, n_cols))
    Y = sp.csr_matrix((n_rows, 3), dtype=np.int32)
    dump_xc(X, Y, tmp_path / "f.txt")
    X2, _ = load_xc(tmp_path / "f.txt")
    np.testing.assert_array_equal(X2.data.view(np.uint32), X.data.view(np.uint32))
    # the text is what Python's float() reads too
    first = (tmp_path / "f.txt").read_text().split("\n")[1].split()
    got = np.array([np.float32(float(t.split(":")[1])) for t in first], dtype=np.float32)
    np.testing.assert_array_equal(got.view(np.uint32), vals[:n_cols].view(np.uint32))
    assert first[0] == "0:0.1" and first[4] == "4:1e+09" and first[5] == "5:10000000"


def test_fuzz_script_runs_clean(tmp_path):
    """tools/fuzz_xc.py finds no crash in a short run (atheris, when installed)."""
    pytest.importorskip("atheris", reason="atheris is not installed (the 'fuzz' extra)")
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "tools" / "fuzz_xc.py"
    if not script.exists():
        pytest.skip("tools/fuzz_xc.py is not in this installation")
    done = subprocess.run([sys.executable, str(script), "--seconds", "5"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Done" in done.stderr
