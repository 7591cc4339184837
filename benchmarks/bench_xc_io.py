"""Speed of the XC text format reader and writer, and of the problem generator.

Reads and writes a generated file (and the real datasets when present) with
``sksketch.datasets`` and with scikit-learn's svmlight reader/writer, which
handles the same body (``l1,l2 f:v ...``, multilabel) without the header
line. Everything runs in this process; times are medians over ``--repeats``.
Ratios are our time / scikit-learn's time (below 1: we are faster).

    python benchmarks/bench_xc_io.py            # 100k-row Amazon-670K-shaped set
    python benchmarks/bench_xc_io.py --quick    # 20k rows
"""

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from sklearn.datasets import dump_svmlight_file, load_svmlight_file

from sksketch.datasets import dump_xc, load_xc, make_extreme_classification

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("SKSKETCH_DATA_DIR", ROOT.parent / "shared" / "data"))

# Amazon-670K's shape (Extreme Classification Repository statistics).
AMAZON = dict(n_features=135_909, n_labels=670_091, avg_labels_per_sample=5.45,
              avg_features_per_sample=75)


def median_time(fn, repeats):
    times = []
    out = None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def body_only(path, out_path):
    """Copy of an XC file without its header line: an svmlight multilabel file."""
    with open(path, "rb") as f, open(out_path, "wb") as g:
        f.readline()
        g.write(f.read())


def bench_file(name, path, repeats, tmp):
    size_mb = os.path.getsize(path) / 1e6
    t_ours, (X, _) = median_time(lambda: load_xc(path), repeats)
    svm = os.path.join(tmp, "body.svm")
    body_only(path, svm)
    n_features = X.shape[1]
    t_skl, _ = median_time(
        lambda: load_svmlight_file(svm, n_features=n_features, multilabel=True,
                                   zero_based=True, dtype=np.float32),
        repeats,
    )
    print(f"{name:<28} {size_mb:8.1f} MB  load {size_mb / t_ours:7.1f} MB/s"
          f"  sklearn {size_mb / t_skl:6.1f} MB/s  ratio {t_ours / t_skl:5.3f}")


def bench_dump(X, Y, repeats, tmp):
    ours = os.path.join(tmp, "dump.txt")
    t_ours, _ = median_time(lambda: dump_xc(X, Y, ours), repeats)
    size_mb = os.path.getsize(ours) / 1e6
    theirs = os.path.join(tmp, "dump.svm")
    t_skl, _ = median_time(
        lambda: dump_svmlight_file(X, Y, theirs, zero_based=True, multilabel=True),
        max(1, repeats // 2),
    )
    print(f"{'dump (same data)':<28} {size_mb:8.1f} MB  dump {size_mb / t_ours:7.1f} MB/s"
          f"  sklearn {size_mb / t_skl:6.1f} MB/s  ratio {t_ours / t_skl:5.3f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--rows", type=int, default=None)
    args = parser.parse_args()
    repeats = args.repeats or (3 if args.quick else 5)
    rows = args.rows or (20_000 if args.quick else 100_000)

    t_gen, (X, Y) = median_time(lambda: make_extreme_classification(
        rows, random_state=0, **AMAZON), 1 if not args.quick else 3)
    print(f"make_extreme_classification: {rows} x {AMAZON['n_features']} features x "
          f"{AMAZON['n_labels']} labels, {X.nnz / rows:.1f} nnz and {Y.nnz / rows:.2f} labels "
          f"per row in {t_gen:.2f} s")

    with tempfile.TemporaryDirectory() as tmp:
        gen_path = os.path.join(tmp, "amazon670k_shaped.txt")
        dump_xc(X, Y, gen_path)
        bench_file("generated (Amazon-670K)", gen_path, repeats, tmp)
        bench_dump(X, Y, repeats, tmp)
        for name in ("bibtex", "delicious"):
            path = DATA / name / "train.txt"
            if path.exists():
                bench_file(f"{name}/train.txt", str(path), repeats, tmp)
            else:
                print(f"{name}: not found under {DATA} (set SKSKETCH_DATA_DIR); skipped")


if __name__ == "__main__":
    main()
