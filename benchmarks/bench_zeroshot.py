"""ZeroShotSoftLabelClassifier: training speed against MLPClassifier, and zero-shot quality.

Speed: seconds per epoch of ``ZeroShotSoftLabelClassifier`` and of
scikit-learn's ``MLPClassifier`` (Adam, same hidden layers, batch size and
data), medians over repeats, and their ratio (ours / theirs; below 1 is
faster).

Quality, on Fashion-MNIST with the class attribute table
``fashion-mnist/attributes.csv`` and the unseen classes 2 (Pullover),
5 (Sandal) and 9 (Ankle boot): pixels scaled to [0, 1] and reduced by PCA
inside a Pipeline, trained on the training images of the seven seen classes.
Reported on the test images: ZSL (per-class accuracy on unseen-class images,
predicting among unseen classes only) and GZSL seen accuracy S, unseen
accuracy U and their harmonic mean H (predicting among all ten classes), per
seed, for

* ``soft``: the soft-label model, with ``unseen_mass``, ``temperature`` and
  ``calibration_gamma`` chosen on a validation split;
* ``hard``: the same network trained on hard labels (``unseen_mass=0``), no
  calibration, and ``hard+cs``: the same with a tuned calibration gamma;
* ``eszsl``: ESZSL (Romera-Paredes and Torr 2015), the closed-form bilinear
  baseline, its two regularisers and a calibration gamma chosen the same way.

Hyperparameters are chosen without touching the unseen classes: two of the
seven seen classes play the unseen ones (trained without their images), and
the rest of the seen training images are split 80/20; the chosen values are
then refit on all seen training images with each seed.

Usage::

    python benchmarks/bench_zeroshot.py [--data-dir ../shared/data] [--quick]
"""

import argparse
import gzip
import os
import statistics
import sys
import time
import warnings
from contextlib import nullcontext
from pathlib import Path

import numpy as np
from sklearn.decomposition import PCA
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer
from threadpoolctl import threadpool_limits

from sksketch import ZeroShotSoftLabelClassifier
from sksketch.metrics import gzsl_scores, per_class_accuracy

UNSEEN = np.array([2, 5, 9])
# Seen classes that stand in for unseen ones while tuning.
VALIDATION_UNSEEN = np.array([3, 7])


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


def _features(n_components, seed):
    return [FunctionTransformer(_scale), PCA(n_components=n_components, random_state=seed)]


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


# --------------------------------------------------------------------- evaluation


def _evaluate(scores, y, unseen):
    """ZSL accuracy and GZSL (S, U, H) from class scores (n, 10) on test rows."""
    pred_all = scores.argmax(1)
    u_rows = np.isin(y, unseen)
    zsl_scores = scores[u_rows][:, unseen]
    zsl = per_class_accuracy(y[u_rows], unseen[zsl_scores.argmax(1)])
    s = gzsl_scores(y, pred_all, unseen_classes=unseen)
    return {"ZSL": zsl, "S": s.seen, "U": s.unseen, "H": s.harmonic}


def _best_gamma(scores, y, unseen, grid):
    """The calibration gamma with the best H, and that H."""
    seen = np.setdiff1d(np.arange(scores.shape[1]), unseen)
    best = (-1.0, 0.0)
    for g in grid:
        s = scores.copy()
        s[:, seen] -= g
        h = gzsl_scores(y, s.argmax(1), unseen_classes=unseen).harmonic
        best = max(best, (h, g))
    return best[1], best[0]


def _model_scores(pipe, X):
    clf = pipe[-1]
    Z = X
    for step in pipe[:-1]:
        Z = step.transform(Z)
    Z = np.ascontiguousarray(Z, dtype=np.float32)
    return clf._logits(Z).astype(np.float64)


def _network(args, seed, **params):
    return ZeroShotSoftLabelClassifier(
        hidden_layer_sizes=(args.hidden,), max_iter=args.epochs, batch_size=128,
        learning_rate=1e-3, weight_decay=1e-4, random_state=seed, **params,
    )


def _fit_pipe(args, seed, X, y, attributes, **params):
    pipe = make_pipeline(*_features(args.pca, seed), _network(args, seed, **params))
    pipe.set_params(zeroshotsoftlabelclassifier__class_attributes=attributes)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pipe.fit(X, y)


def tune(args, X, y, attributes):
    """Hyperparameters chosen on seen classes only (two of them play unseen)."""
    rng = np.random.RandomState(1234)
    seen = np.setdiff1d(np.arange(10), UNSEEN)
    rows = np.flatnonzero(np.isin(y, seen))
    rng.shuffle(rows)
    cut = int(0.8 * len(rows))
    fit_rows = rows[:cut][~np.isin(y[rows[:cut]], VALIDATION_UNSEEN)]
    val_rows = rows[cut:]
    # The validation problem has the seven seen classes only: the real unseen
    # classes' attribute rows are left out, so nothing about them is used.
    cls = seen
    A = attributes[cls]
    y_fit = np.searchsorted(cls, y[fit_rows])
    y_val = np.searchsorted(cls, y[val_rows])
    v_unseen = np.searchsorted(cls, VALIDATION_UNSEEN)
    # Negative gammas raise the seen classes: a large unseen_mass can overshoot.
    gammas = np.linspace(-20, 20, 161)
    results = {}

    best = None
    for q in args.q_grid:
        for tau in args.tau_grid:
            pipe = _fit_pipe(args, 0, X[fit_rows], y_fit, A, unseen_mass=q, temperature=tau)
            scores = _model_scores(pipe, X[val_rows])
            g, h = _best_gamma(scores, y_val, v_unseen, gammas)
            print(f"  tune soft q={q} tau={tau}: validation H={h:.4f} at gamma={g:.2f}",
                  flush=True)
            if best is None or h > best[0]:
                best = (h, q, tau, g)
    results["soft"] = {"unseen_mass": best[1], "temperature": best[2],
                       "calibration_gamma": best[3]}
    pipe = _fit_pipe(args, 0, X[fit_rows], y_fit, A, unseen_mass=0.0)
    g, h = _best_gamma(_model_scores(pipe, X[val_rows]), y_val, v_unseen, gammas)
    print(f"  tune hard+cs: validation H={h:.4f} at gamma={g:.2f}", flush=True)
    results["hard+cs"] = {"calibration_gamma": g}

    feats = make_pipeline(*_features(args.pca, 0)).fit(X[fit_rows])
    Z_fit, Z_val = feats.transform(X[fit_rows]), feats.transform(X[val_rows])
    best = None
    for gamma in 10.0 ** np.arange(-2, 5):
        for lam in 10.0 ** np.arange(-3, 3):
            model = ESZSL(A, gamma, lam).fit(Z_fit, y_fit)
            scores = model.scores(Z_val)
            span = np.abs(scores).max()
            g, h = _best_gamma(scores, y_val, v_unseen, np.linspace(-span, span, 161))
            if best is None or h > best[0]:
                best = (h, gamma, lam, g)
    print(f"  tune eszsl: validation H={best[0]:.4f} at gamma={best[1]:g}, "
          f"lambda={best[2]:g}, calibration={best[3]:.3f}", flush=True)
    results["eszsl"] = {"gamma": best[1], "lam": best[2], "calibration_gamma": best[3]}
    return results


def quality(args, data):
    X_train, y_train, X_test, y_test, attributes, _ = data
    if args.quick:
        rng = np.random.RandomState(0)
        keep = rng.choice(len(y_train), 12000, replace=False)
        X_train, y_train = X_train[keep], y_train[keep]
    train_rows = ~np.isin(y_train, UNSEEN)
    X_seen, y_seen = X_train[train_rows], y_train[train_rows]
    print(f"Quality: {len(y_seen)} seen training images, {len(y_test)} test images, "
          f"unseen classes {UNSEEN.tolist()}, PCA {args.pca}, hidden {args.hidden}, "
          f"{args.epochs} epochs")
    started = time.perf_counter()
    chosen = tune(args, X_train, y_train, attributes)
    print(f"  chosen: {chosen} ({time.perf_counter() - started:.0f} s)")

    rows = []
    for seed in args.seeds:
        soft = _fit_pipe(args, seed, X_seen, y_seen, attributes, **chosen["soft"])
        rows.append(("soft", seed, _evaluate(soft.decision_function(X_test), y_test, UNSEEN)))
        hard = _fit_pipe(args, seed, X_seen, y_seen, attributes, unseen_mass=0.0)
        rows.append(("hard", seed, _evaluate(hard.decision_function(X_test), y_test, UNSEEN)))
        hard.set_params(
            zeroshotsoftlabelclassifier__calibration_gamma=chosen["hard+cs"]["calibration_gamma"])
        rows.append(("hard+cs", seed, _evaluate(hard.decision_function(X_test), y_test,
                                                UNSEEN)))
        feats = make_pipeline(*_features(args.pca, seed)).fit(X_seen)
        es = ESZSL(attributes, chosen["eszsl"]["gamma"], chosen["eszsl"]["lam"],
                   chosen["eszsl"]["calibration_gamma"]).fit(feats.transform(X_seen), y_seen)
        rows.append(("eszsl", seed, _evaluate(es.scores(feats.transform(X_test)), y_test,
                                              UNSEEN)))
    print(f"\n{'method':<9} {'seed':>4} {'ZSL':>6} {'S':>6} {'U':>6} {'H':>6}")
    for name, seed, r in rows:
        print(f"{name:<9} {seed:>4} " + " ".join(f"{100 * r[k]:6.1f}" for k in
                                                 ("ZSL", "S", "U", "H")))
    print(f"\n{'method':<9} {'mean':>4} {'ZSL':>6} {'S':>6} {'U':>6} {'H':>6}")
    means = {}
    for name in ("soft", "hard", "hard+cs", "eszsl"):
        rs = [r for n, _, r in rows if n == name]
        means[name] = {k: float(np.mean([r[k] for r in rs])) for k in ("ZSL", "S", "U", "H")}
        print(f"{name:<9} {'':>4} " + " ".join(f"{100 * means[name][k]:6.1f}" for k in
                                                ("ZSL", "S", "U", "H")))
    gain_hard = 100 * (means["soft"]["H"] - means["hard"]["H"])
    gain_es = 100 * (means["soft"]["H"] - means["eszsl"]["H"])
    print(f"\nsoft - hard on H: {gain_hard:+.1f} points (target: at least +10) "
          f"{'MET' if gain_hard >= 10 else 'NOT MET'}")
    print(f"soft - eszsl on H: {gain_es:+.1f} points (target: above 0) "
          f"{'MET' if gain_es > 0 else 'NOT MET'}")


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
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--q-grid", type=float, nargs="+", default=None)
    parser.add_argument("--tau-grid", type=float, nargs="+", default=None)
    args = parser.parse_args(argv)
    args.epochs = args.epochs or (5 if args.quick else 15)
    args.repeats = args.repeats or (2 if args.quick else 5)
    args.q_grid = args.q_grid or ([0.3] if args.quick else [0.05, 0.1, 0.2, 0.3, 0.5])
    args.tau_grid = args.tau_grid or ([0.1] if args.quick else [0.1, 0.5, 2.0])
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
