"""The ``sksketch`` command (also ``python -m sksketch``)."""

import argparse
import sys
import time
import warnings


def _demo(args):

    from sklearn.exceptions import ConvergenceWarning

    from . import SLIDEClassifier, show_config
    from .datasets import make_extreme_classification
    from .metrics import precision_at_k
    from .metrics._ranking import _ranked_topk

    cfg = show_config("dicts")
    print(f"sksketch {cfg['sksketch']['version']}: SIMD {cfg['simd']['active_isa']}, "
          f"{cfg['openmp']['effective_n_threads']} OpenMP thread(s)", flush=True)
    n_test = max(1, args.n_samples // 6)
    started = time.perf_counter()
    X, Y = make_extreme_classification(
        args.n_samples + n_test, args.n_features, args.n_labels,
        avg_labels_per_sample=3, random_state=args.random_state,
    )
    X, Y, Xt, Yt = X[:args.n_samples], Y[:args.n_samples], X[args.n_samples:], Y[args.n_samples:]
    print(f"generated {args.n_samples:,} training and {n_test:,} test rows: "
          f"{args.n_features:,} features, {args.n_labels:,} labels (power-law frequencies), "
          f"{X.nnz / X.shape[0]:.0f} non-zeros and {Y.nnz / Y.shape[0]:.1f} labels per row "
          f"in {time.perf_counter() - started:.1f} s", flush=True)
    clf = SLIDEClassifier(max_iter=args.epochs, n_jobs=args.n_jobs,
                          random_state=args.random_state, verbose=1)
    print(f"training {clf!r}", flush=True)
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, Y)
    train_s = time.perf_counter() - started
    print(f"trained {clf.n_iter_} epochs in {train_s:.1f} s: "
          f"{clf.n_iter_ * X.shape[0] / train_s:,.0f} samples/s, "
          f"{clf.mean_active_labels_:,.0f} active labels of {args.n_labels:,} per example",
          flush=True)
    for mode in ("full", "lsh"):
        clf.set_params(inference=mode)
        started = time.perf_counter()
        labels, scores = clf.predict_topk(Xt, k=5)
        seconds = time.perf_counter() - started
        ranked = _ranked_topk(labels, args.n_labels)
        p = [precision_at_k(Yt, ranked, k=k) for k in (1, 3, 5)]
        note = "exact scores" if mode == "full" else "only the labels the hash tables return"
        print(f"test, inference={mode!r} ({note}): P@1 {p[0]:.4f}  P@3 {p[1]:.4f}  P@5 {p[2]:.4f}  "
              f"({Xt.shape[0] / seconds:,.0f} rows/s)", flush=True)
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="sksketch", description="Hashing-based training of huge-output classifiers."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser(
        "demo",
        help="train SLIDEClassifier on a generated extreme-classification problem",
        description="Generate a learnable problem with power-law label frequencies, train "
        "SLIDEClassifier on it and print precision at k and throughput.",
    )
    demo.add_argument("--n-samples", type=int, default=50_000, help="training rows")
    demo.add_argument("--n-features", type=int, default=50_000)
    demo.add_argument("--n-labels", type=int, default=100_000)
    demo.add_argument("--epochs", type=int, default=4)
    demo.add_argument("--n-jobs", type=int, default=None, help="threads (default: all)")
    demo.add_argument("--random-state", type=int, default=0)
    args = parser.parse_args(argv)
    for name in ("n_samples", "n_features", "n_labels", "epochs"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    try:
        return _demo(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
