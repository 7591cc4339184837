"""ZeroShotSoftLabelClassifier: zero-shot quality on every split of Fashion-MNIST, and speed.

Quality, on Fashion-MNIST with the class attribute table
``fashion-mnist/attributes.csv``: for **each of the 120 choices of three
unseen classes** and each seed, pixels scaled to [0, 1] and reduced by
``PCA(64)``, trained on the training images of the seven seen classes, scored
on all 10,000 test images. Arms:

* ``default``: ``make_pipeline(scale, PCA(64), ZeroShotSoftLabelClassifier(A))``
  with nothing set but ``random_state`` (soft labels over all classes, paired
  with a hard-label network, ``hard_label_ensemble=True``;
  ``calibration_gamma="auto"``);
* ``hard+cs``: the same network on hard labels (``unseen_mass=0``), its
  calibrated-stacking penalty chosen by the same protocol
  (``calibration_gamma="auto"``);
* ``eszsl``: ESZSL (Romera-Paredes and Torr 2015), the closed-form bilinear
  baseline, its two regularisers and its penalty chosen by the same protocol
  (``sksketch._zeroshot_calibration``: in three folds, seen classes play
  unseen; the best mean held-out H).

Nothing is chosen on the unseen classes or on the test images. Reported per
split (means over seeds): ZSL (per-class accuracy on unseen-class images
among unseen classes), GZSL seen accuracy S, unseen accuracy U and their
harmonic mean H; then the distribution of H over splits (mean, quartiles,
worst split) and how often the default beats each baseline.

Speed: seconds per training epoch of ``ZeroShotSoftLabelClassifier`` and of
scikit-learn's ``MLPClassifier`` (Adam, same hidden layers, batch size and
data), medians over repeats, and their ratio (ours / theirs).

Usage::

    python benchmarks/bench_zeroshot.py [--data-dir ../shared/data] [--quick]
        [--section quality] [--splits 120] [--seeds 0 1] [--csv results.csv]
        [--workers 2 --n-jobs 1]
"""

import argparse
import gzip
import itertools
import os
import statistics
import sys
import time
import warnings
from contextlib import nullcontext
from pathlib import Path

import numpy as np
from joblib import Parallel, delayed
from sklearn.decomposition import PCA
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer
from threadpoolctl import threadpool_limits

from sksketch import ZeroShotSoftLabelClassifier
from sksketch._zeroshot_calibration import choose_calibration_share, penalty_at_share
from sksketch.metrics import gzsl_scores, per_class_accuracy

N_CLASSES = 10


def load_fashion_mnist(folder):
    """(X_train, y_train, X_test, y_test, attributes, names) from the IDX gzip files."""

    def read(name, offset):
        with gzip.open(folder / name, "rb") as f:
            return np.frombuffer(f.read(), dtype=np.uint8, offset=offset)

    X_train = read("train-images-idx3-ubyte.gz", 16).reshape(-1, 784)
    y_train = read("train-labels-idx1-ubyte.gz", 8).astype(np.int64)
    X_test = read("t10k-images-idx3-ubyte.gz", 16).reshape(-1, 784)
    y_test = read("t10k-labels-idx1-ubyte.gz", 8).astype(np.int64)
    rows = [line.split(",") for line in (folder / "attributes.csv").read_text().splitlines()]
    table = rows[1:]
    attributes = np.array([[float(v) for v in r[2:]] for r in table])
    names = [r[1] for r in table]
    assert [int(r[0]) for r in table] == list(range(10))
    return X_train, y_train, X_test, y_test, attributes, names


def _scale(X):
    return X / np.float32(255)


def default_pipeline(attributes, n_components, seed, n_jobs):
    """The default estimator as a user builds it: scale, PCA, the classifier."""
    return make_pipeline(
        FunctionTransformer(_scale),
        PCA(n_components=n_components, random_state=seed),
        ZeroShotSoftLabelClassifier(attributes, random_state=seed, n_jobs=n_jobs),
    )


# --------------------------------------------------------------------- ESZSL


class ESZSL:
    """ESZSL (Romera-Paredes and Torr 2015): ``V = (X'X + g I)^-1 X'Y S' (S S' + l I)^-1``.

    X: (n, d) features, Y: (n, z) in {-1, 1} over the seen classes, S: (a, z)
    their attributes. A class's score is ``x V s_c``.
    """

    def __init__(self, attributes, gamma=1.0, lam=1.0, calibration_gamma=0.0):
        self.attributes = attributes
        self.gamma = gamma
        self.lam = lam
        self.calibration_gamma = calibration_gamma

    def fit(self, X, y):
        X = np.asarray(X, dtype=np.float64)
        self.seen_ = np.unique(y)
        S = self.attributes[self.seen_].T
        Y = -np.ones((len(y), len(self.seen_)))
        Y[np.arange(len(y)), np.searchsorted(self.seen_, y)] = 1
        left = np.linalg.solve(X.T @ X + self.gamma * np.eye(X.shape[1]), X.T @ Y @ S.T)
        self.V_ = left @ np.linalg.inv(S @ S.T + self.lam * np.eye(S.shape[0]))
        return self

    def scores(self, X):
        s = np.asarray(X, dtype=np.float64) @ self.V_ @ self.attributes.T
        s[:, self.seen_] -= self.calibration_gamma
        return s


def tuned_eszsl(Z, y, attributes, seed):
    """ESZSL with its regularisers and penalty chosen by the held-out-classes protocol."""
    seen = np.isin(np.arange(N_CLASSES), np.unique(y))
    best = None
    for gamma in 10.0 ** np.arange(-2, 5):
        for lam in 10.0 ** np.arange(-3, 3):
            # the same folds for every pair: one RandomState seed
            share, score = choose_calibration_share(
                lambda Zp, yp, w, s, g=gamma, reg=lam: ESZSL(attributes, g, reg).fit(Zp, yp),
                lambda model, Zp: model.scores(Zp),
                Z, y, np.ones(len(y)), seen, np.random.RandomState(seed),
            )
            if best is None or score > best[0]:
                best = (score, gamma, lam, share)
    _, gamma, lam, share = best
    model = ESZSL(attributes, gamma, lam).fit(Z, y)
    model.calibration_gamma = penalty_at_share(model.scores(Z), seen, share)
    return model


# --------------------------------------------------------------------- evaluation


def _evaluate(scores, y, unseen):
    """ZSL accuracy and GZSL (S, U, H) from calibrated class scores (n, 10)."""
    pred_all = scores.argmax(1)
    u_rows = np.isin(y, unseen)
    zsl_scores = scores[u_rows][:, unseen]
    zsl = per_class_accuracy(y[u_rows], unseen[zsl_scores.argmax(1)])
    s = gzsl_scores(y, pred_all, unseen_classes=unseen)
    return {"ZSL": zsl, "S": s.seen, "U": s.unseen, "H": s.harmonic}


ARMS = ("default", "hard+cs", "eszsl")
METRICS = ("ZSL", "S", "U", "H")


def run_split(args, data, unseen, seed):
    """Every arm on one split and seed: {arm: metrics}, and the default's fit seconds."""
    X_train, y_train, X_test, y_test, attributes, _ = data
    rows = ~np.isin(y_train, unseen)
    X_seen, y_seen = X_train[rows], y_train[rows]
    pipe = default_pipeline(attributes, args.pca, seed, args.n_jobs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        started = time.perf_counter()
        pipe.fit(X_seen, y_seen)
        seconds = time.perf_counter() - started
        # the baselines share the default pipeline's features
        Z_seen, Z_test = pipe[:-1].transform(X_seen), pipe[:-1].transform(X_test)
        hard = ZeroShotSoftLabelClassifier(
            attributes, unseen_mass=0.0, random_state=seed, n_jobs=args.n_jobs
        ).fit(Z_seen, y_seen)
        eszsl = tuned_eszsl(Z_seen, y_seen, attributes, seed)
    out = {
        "default": _evaluate(pipe[-1].decision_function(Z_test), y_test, unseen),
        "hard+cs": _evaluate(hard.decision_function(Z_test), y_test, unseen),
        "eszsl": _evaluate(eszsl.scores(Z_test), y_test, unseen),
    }
    return out, seconds


def quality(args, data):
    X_train, y_train = data[0], data[1]
    if args.quick:
        keep = np.random.RandomState(0).choice(len(y_train), 12000, replace=False)
        data = (X_train[keep], y_train[keep], *data[2:])
    splits = [np.array(c) for c in itertools.combinations(range(N_CLASSES), 3)]
    if args.splits < len(splits):
        pick = np.random.RandomState(0).choice(len(splits), args.splits, replace=False)
        splits = [splits[i] for i in sorted(pick)]
    print(f"Quality: {len(splits)} splits of three unseen classes, seeds {args.seeds}, "
          f"{len(data[1])} training images (the seen classes' are used), PCA {args.pca}; "
          f"means over seeds", flush=True)
    print(f"\n{'unseen':<10} " + " ".join(f"{arm + ' ' + m:>11}" for arm in ARMS
                                           for m in ("S", "U", "H")) + f" {'fit s':>6}")
    table = []
    started = time.perf_counter()
    # splits in parallel processes (--workers); each fit keeps --n-jobs threads
    jobs = Parallel(n_jobs=args.workers, return_as="generator")(
        delayed(run_split)(args, data, unseen, seed) for unseen in splits for seed in args.seeds
    )
    for unseen in splits:
        runs = [next(jobs) for _ in args.seeds]
        row = {arm: {m: float(np.mean([r[0][arm][m] for r in runs])) for m in METRICS}
               for arm in ARMS}
        seconds = float(np.mean([r[1] for r in runs]))
        table.append((unseen, row, seconds))
        print(f"{str(unseen.tolist()):<10} " + " ".join(
            f"{100 * row[arm][m]:11.1f}" for arm in ARMS for m in ("S", "U", "H"))
            + f" {seconds:6.1f}", flush=True)
    print(f"({time.perf_counter() - started:.0f} s)")

    H = {arm: np.array([row[arm]["H"] for _, row, _ in table]) for arm in ARMS}
    print(f"\nH over {len(table)} splits (points)")
    print(f"{'arm':<9} {'mean':>6} {'q25':>6} {'median':>6} {'q75':>6} {'worst':>6} "
          f"{'ZSL':>6} {'S':>6} {'U':>6}")
    for arm in ARMS:
        h = 100 * H[arm]
        worst = table[int(np.argmin(h))][0].tolist()
        means = {m: 100 * np.mean([row[arm][m] for _, row, _ in table]) for m in METRICS}
        print(f"{arm:<9} {h.mean():6.1f} {np.percentile(h, 25):6.1f} {np.median(h):6.1f} "
              f"{np.percentile(h, 75):6.1f} {h.min():6.1f} {means['ZSL']:6.1f} "
              f"{means['S']:6.1f} {means['U']:6.1f}  worst split {worst}")
    for base in ARMS[1:]:
        wins = int(np.sum(H["default"] > H[base]))
        gain = 100 * (H["default"].mean() - H[base].mean())
        met = gain > 0 and wins >= 2 * len(table) / 3
        print(f"default against {base}: {gain:+.1f} points of mean H, wins on {wins} of "
              f"{len(table)} splits (target: more mean H and at least two thirds) "
              f"{'MET' if met else 'NOT MET'}")
    if args.csv:
        with open(args.csv, "w") as f:
            f.write("unseen," + ",".join(f"{arm}_{m}" for arm in ARMS for m in METRICS)
                    + ",fit_seconds\n")
            for unseen, row, seconds in table:
                f.write("-".join(map(str, unseen)) + "," + ",".join(
                    f"{row[arm][m]:.4f}" for arm in ARMS for m in METRICS)
                    + f",{seconds:.2f}\n")
        print(f"per-split results written to {args.csv}")


# --------------------------------------------------------------------- speed


def speed(args, data):
    X_train, y_train = data[0], data[1]
    n = 10000 if args.quick else 60000
    X = np.ascontiguousarray(X_train[:n], dtype=np.float32) / np.float32(255)
    y = y_train[:n]
    hidden = (args.hidden,)
    print(f"Speed: {X.shape[0]} x {X.shape[1]} Fashion-MNIST pixels, hidden {hidden}, "
          f"batch 128, one epoch per fit, median of {args.repeats}")

    def timed(make, threads):
        times = []
        for r in range(args.repeats):
            est = make(r)
            limits = nullcontext() if threads is None else threadpool_limits(threads)
            with warnings.catch_warnings(), limits:
                warnings.simplefilter("ignore")
                t = time.perf_counter()
                est.fit(X, y)
                times.append(time.perf_counter() - t)
        return statistics.median(times)

    # Default threads: BLAS and OpenMP as configured; one thread: both limited
    # to one (n_jobs=1 for sksketch, threadpool_limits(1) for scikit-learn).
    for label, threads in (("default threads", None), ("one thread", 1)):
        ours = timed(lambda r, t=threads: ZeroShotSoftLabelClassifier(
            hidden_layer_sizes=hidden, max_iter=1, batch_size=128, random_state=r,
            n_jobs=t), threads)
        # every class is seen here, so "auto" calibration trains no copies
        ours_attr = timed(lambda r, t=threads: ZeroShotSoftLabelClassifier(
            data[4], hidden_layer_sizes=hidden, max_iter=1, batch_size=128, random_state=r,
            n_jobs=t), threads)
        theirs = timed(lambda r: MLPClassifier(
            hidden_layer_sizes=hidden, max_iter=1, batch_size=128, solver="adam",
            random_state=r, shuffle=True), threads)
        print(f"  [{label}]")
        print(f"    ZeroShotSoftLabelClassifier (one-hot output)   {ours:7.3f} s/epoch")
        print(f"    ZeroShotSoftLabelClassifier (16 attributes)    {ours_attr:7.3f} s/epoch")
        print(f"    sklearn MLPClassifier                          {theirs:7.3f} s/epoch")
        print(f"    ratio ours / MLPClassifier: {ours / theirs:.3f} (one-hot), "
              f"{ours_attr / theirs:.3f} (attributes)", flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = Path(os.environ.get(
        "SKSKETCH_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data"))
    parser.add_argument("--data-dir", type=Path, default=default)
    parser.add_argument("--quick", action="store_true", help="small smoke-test run")
    parser.add_argument("--section", choices=["all", "speed", "quality"], default="all")
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--pca", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--seeds", type=int, nargs="+", default=None)
    parser.add_argument("--splits", type=int, default=None,
                        help="splits of three unseen classes (of 120) to run")
    parser.add_argument("--n-jobs", type=int, default=None,
                        help="threads of each fit (quality section)")
    parser.add_argument("--workers", type=int, default=1,
                        help="processes running splits side by side (quality section)")
    parser.add_argument("--csv", default=None, help="write the per-split table here")
    args = parser.parse_args(argv)
    args.repeats = args.repeats or (2 if args.quick else 5)
    args.seeds = args.seeds or ([0] if args.quick else [0, 1])
    args.splits = args.splits or (6 if args.quick else 120)
    folder = args.data_dir / "fashion-mnist"
    if not folder.is_dir():
        print(f"Fashion-MNIST not found at {folder}: pass --data-dir or set SKSKETCH_DATA_DIR")
        return 0
    data = load_fashion_mnist(folder)
    if args.section in ("all", "speed"):
        speed(args, data)
    if args.section in ("all", "quality"):
        quality(args, data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
