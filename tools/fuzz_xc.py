"""Fuzz the XC-format reader with atheris for a fixed time.

Every input is parsed as the bytes of an XC file. The reader may only return a
valid dataset or raise ``ValueError``; anything else (another exception, a
crash, a hang) is a failure that atheris reports with the input that caused
it. A returned dataset is checked for internal consistency (shapes from the
header, sorted in-range unique indices, finite values) and must survive a
``dump_xc``/``load_xc`` round trip unchanged.

The seed corpus is a set of small valid files (CRLF, tabs, empty rows, rows
without labels or features, exponents) so mutations start near the grammar.

    python -m pip install atheris
    python tools/fuzz_xc.py --seconds 60          # no crash: exit 0

Extra arguments go to libFuzzer (for example ``-max_len=4096`` or a corpus
folder). atheris instruments the Python side of the reader for coverage; the
compiled tokenizer is exercised but not coverage-guided unless the extension is
built with ``clang -fsanitize=fuzzer-no-link``. Build with
``SKSKETCH_DEBUG_BUILD=1`` to run the tokenizer with Cython's bounds checks on.
"""

import argparse
import os
import sys
import tempfile

import numpy as np

SEEDS = [
    b"2 4 3\n0,2 1:0.5 3:1\n 0:2\n",
    b"3 5 4\r\n1 0:1e-3 4:-2.5E+2\r\n\r\n0,1,3 2:.5\r\n",
    b"2 3 2\n0\t1:1\t2:7\n1,0 0:3.25\n",
    b"1 2 2\n1",
    b"0 10 10\n",
    b"4 6 5\n4 5:1\n 0:0.0\n\n3,2,1 1:1e30 0:-0\n",
]


def _check(X, Y, data):
    import scipy.sparse as sp

    header = data.split(b"\n", 1)[0].replace(b"\t", b" ").split(b" ")
    n, d, n_labels = (int(h) for h in header if h.strip(b"\r"))
    assert X.shape == (n, d) and Y.shape == (n, n_labels), (X.shape, Y.shape, header)
    for M in (X, Y):
        assert sp.issparse(M) and M.format == "csr"
        M.check_format(full_check=True)
        for i in range(M.shape[0]):
            row = M.indices[M.indptr[i]:M.indptr[i + 1]]
            assert np.all(np.diff(row) > 0), "indices not sorted and unique"
    assert np.all(np.isfinite(X.data))
    assert np.all(Y.data == 1)


def _one_input(data):
    from sksketch.datasets import dump_xc, load_xc
    from sksketch.datasets._xc import _parse_xc

    try:
        X, Y = _parse_xc(data, "<fuzz>", np.dtype(np.float32))
    except ValueError as exc:
        assert str(exc).startswith("<fuzz>, line "), f"unhelpful message: {exc}"
        return
    _check(X, Y, data)
    if X.shape[0] <= 2000:
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "round_trip.txt")
            dump_xc(X, Y, path)
            X2, Y2 = load_xc(path)
        assert (X2 != X).nnz == 0 and (Y2 != Y).nnz == 0, "round trip changed the data"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=60, help="fuzzing time")
    parser.add_argument("--max-len", type=int, default=2048, help="largest input in bytes")
    args, libfuzzer_args = parser.parse_known_args(argv)
    try:
        import atheris
    except ImportError:
        sys.exit("atheris is not installed: python -m pip install atheris")

    import scipy.sparse  # noqa: F401  (dependencies stay uninstrumented)

    with atheris.instrument_imports(include=["sksketch"]):
        import sksketch.datasets._xc  # noqa: F401

    corpus = tempfile.mkdtemp(prefix="xc-fuzz-corpus-")
    for i, seed in enumerate(SEEDS):
        with open(os.path.join(corpus, f"seed{i}"), "wb") as f:
            f.write(seed)
    fuzzer_argv = [sys.argv[0], f"-max_total_time={args.seconds}",
                   f"-max_len={args.max_len}", "-timeout=10", "-rss_limit_mb=4096",
                   *libfuzzer_args, corpus]
    atheris.Setup(fuzzer_argv, _one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
