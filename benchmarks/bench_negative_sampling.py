"""SLIDEClassifier's negative samplers against each other, at equal wall-clock time.

Every mode of ``negative_sampling`` (with and without the log-q correction
where it applies) trains on the same data in chunks of rows; after each chunk
the test set is scored (not timed) and P@1, P@5 are recorded against the
training time so far. Each mode gets the same time budget: the time ``"full"``
(the exact softmax) takes for one epoch, measured first in the same process.

Data: Delicious (983 labels, ../shared/data/delicious), WordNet nouns
(15,728 labels, ../shared/data/wordnet), a generated problem with at least
100,000 labels (sksketch.datasets.make_extreme_classification) and a
generated problem with confusable labels (``confusable``: 20,000 labels in
clusters of 10 sharing half their feature signatures, as in
bench_retrieval.py).

With ``--equal-epochs N`` every mode trains N epochs instead (no time
budget), and the table compares them per iteration: P@1 after each epoch
and the headroom, full softmax and the oracle (``"exact"``: the budget's
highest-scoring labels) against the best of uniform and unigram. A problem
where neither beats the static samplers per epoch has no headroom for any
LSH mode to capture, and the script says so; then it trains ``uniform +
logq`` and ``unigram + logq`` for as long as each LSH mode took for its N
epochs and prints who is ahead at equal wall-clock. ``--active-labels``
sets the labels each row's softmax scores (1,000 by default): with 50, the
confusable problem has headroom (see the user guide, "Negatives, measured").
Writes a table (stdout and ``benchmarks/results/negative_sampling_<name>.txt``)
and a plot (``.png``, with matplotlib) per dataset, then checks on the
generated problem whether an LSH mode beats "uniform" and "unigram" at equal
time and reaches "full"'s one-epoch P@1 in under a third of full's time.

    python benchmarks/bench_negative_sampling.py                  # both datasets
    python benchmarks/bench_negative_sampling.py --datasets synth --labels 100000
    python benchmarks/bench_negative_sampling.py --quick          # a smoke test
    python benchmarks/bench_negative_sampling.py --datasets wordnet,confusable \
        --equal-epochs 2 --no-sparse-head --modes "full,exact (oracle),lsh-embedding + logq,\
lsh-label + logq,uniform + logq,uniform,unigram + logq,unigram"
    python benchmarks/bench_negative_sampling.py --datasets confusable --equal-epochs 2 \
        --checkpoints 1 --no-sparse-head --active-labels 50 --test 5000
"""

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from sksketch import SLIDEClassifier
from sksketch.datasets import load_xc, make_extreme_classification
from sksketch.metrics import precision_at_k
from sksketch.metrics._ranking import _ranked_topk

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = Path(os.environ.get("SKSKETCH_DATA_DIR", ROOT.parent / "shared" / "data"))
RESULTS = ROOT / "benchmarks" / "results"

# The generated problem's size, and the SLIDEClassifier settings every mode
# shares (diagnose_negative_candidates.py trains the same model).
SYNTH = {"labels": 100_000, "features": 100_000, "train": 10_000}
SLIDE_PARAMS = dict(hidden_layer_size=128, batch_size=128, learning_rate=1e-3,
                    max_active_labels=1000, min_active_labels=1000)

# (label, negative_sampling, sampling_correction, negative_fill)
MODES = [
    ("full", "full", "none", "uniform"),
    # the oracle: the budget's highest-scoring labels, by scoring every label
    ("exact (oracle)", "exact", "none", "uniform"),
    ("lsh-embedding + logq", "lsh-embedding", "logq", "uniform"),
    ("lsh-embedding", "lsh-embedding", "none", "uniform"),
    ("lsh-label + logq", "lsh-label", "logq", "uniform"),
    ("lsh-label", "lsh-label", "none", "uniform"),
    ("lsh-embedding/unigram + logq", "lsh-embedding", "logq", "unigram"),
    ("lsh-embedding/unigram", "lsh-embedding", "none", "unigram"),
    ("lsh-label/unigram + logq", "lsh-label", "logq", "unigram"),
    ("lsh-label/unigram", "lsh-label", "none", "unigram"),
    ("uniform + logq", "uniform", "logq", "uniform"),
    ("uniform", "uniform", "none", "uniform"),
    ("unigram + logq", "unigram", "logq", "uniform"),
    ("unigram", "unigram", "none", "uniform"),
]


def _named(name, args):
    """WordNet nouns (None when its folder is absent) or the confusable problem."""
    if name == "wordnet":
        folder = args.data_dir / "wordnet"
        if not folder.exists():
            print(f"\n== wordnet skipped: {folder} not found")
            return None, None, None, None
        X, Y = load_xc(folder / "train.txt")
        Xt, Yt = load_xc(folder / "test.txt")
        return X, Y, Xt, Yt
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_xmc import confusable_data

    return confusable_data(*((3_000, 300) if args.quick else ()))


def _precisions(model, Xt, Yt):
    labels, _ = model.predict_topk(Xt, k=5)
    ranked = _ranked_topk(labels, Yt.shape[1])
    return precision_at_k(Yt, ranked, k=1), precision_at_k(Yt, ranked, k=5)


def train_for(params, X, Y, Xt, Yt, *, budget_s, chunk, max_epochs, seed):
    """partial_fit in chunks until `budget_s` of training time (or max_epochs).

    Returns [(train seconds, rows seen, P@1, P@5)], one entry per chunk.
    """
    model = SLIDEClassifier(**params, random_state=seed)
    classes = np.arange(Y.shape[1])
    rng = np.random.default_rng(seed)
    curve, elapsed, seen = [], 0.0, 0
    for _ in range(max_epochs):
        order = rng.permutation(X.shape[0])
        for s in range(0, X.shape[0], chunk):
            rows = np.sort(order[s : s + chunk])
            started = time.perf_counter()
            model.partial_fit(X[rows], Y[rows], classes=classes)
            elapsed += time.perf_counter() - started
            seen += len(rows)
            curve.append((elapsed, seen, *_precisions(model, Xt, Yt)))
            if elapsed >= budget_s:
                return curve
    return curve


def p1_at(curve, seconds):
    """P@1 of the last checkpoint at or before `seconds` (0 before the first)."""
    done = [c[2] for c in curve if c[0] <= seconds]
    return done[-1] if done else 0.0


def time_to(curve, target):
    """Training seconds until P@1 first reaches `target` (inf if never)."""
    return next((c[0] for c in curve if c[2] >= target), float("inf"))


def run_dataset(name, X, Y, Xt, Yt, args, params):
    print(f"\n== {name}: {X.shape[0]} train rows, {Xt.shape[0]} test rows, "
          f"{Y.shape[1]} labels, {X.shape[1]} features", flush=True)
    chunk = max(1, X.shape[0] // args.checkpoints)
    curves = {}
    # "full" first: its one-epoch time is every mode's budget.
    curves["full"] = train_for({**params, "negative_sampling": "full"}, X, Y, Xt, Yt,
                               budget_s=float("inf"), chunk=chunk,
                               max_epochs=args.equal_epochs or 1, seed=0)
    # the last checkpoint of the first epoch (n // checkpoints rows a chunk: a
    # remainder makes one chunk more)
    first = [c for c in curves["full"] if c[1] <= X.shape[0]][-1]
    full_epoch_s, full_p1 = first[0], first[2]
    budget = float("inf") if args.equal_epochs else args.budget_factor * full_epoch_s
    print(f"full: one epoch in {full_epoch_s:.1f} s, P@1 {full_p1:.4f}; "
          f"budget per mode {budget:.1f} s", flush=True)
    for label, mode, correction, fill in MODES[1:]:
        if args.modes and label not in args.modes:
            continue
        curves[label] = train_for(
            {**params, "negative_sampling": mode, "sampling_correction": correction,
             "negative_fill": fill},
            X, Y, Xt, Yt, budget_s=budget, chunk=chunk,
            max_epochs=args.equal_epochs or args.max_epochs, seed=0)
        last = curves[label][-1]
        print(f"  {label:<22} {last[1] / max(last[0], 1e-9):>9,.0f} rows/s  "
              f"P@1 {last[2]:.4f}  P@5 {last[3]:.4f}  after {last[0]:.1f} s", flush=True)

    if args.equal_epochs:
        per_epoch_table(name, curves, X.shape[0], args)
        return equal_time_check(curves, X, Y, Xt, Yt, args, params, chunk)
    marks = [budget * f for f in (0.25, 0.5, 1.0)]
    lines = [f"{name}: P@1 (P@5) at equal training time; full's one-epoch P@1 {full_p1:.4f} "
             f"in {full_epoch_s:.1f} s",
             f"{'mode':<22} {'rows/s':>9} " + " ".join(f"{f't={m:.3g}s':>15}" for m in marks)
             + f" {'to full@1ep':>12} {'ratio':>7}"]
    for label, curve in curves.items():
        last = curve[-1]
        cells = []
        for m in marks:
            done = [c for c in curve if c[0] <= m]
            cells.append(f"{done[-1][2]:.4f} ({done[-1][3]:.4f})" if done else f"{'-':>15}")
        t = time_to(curve, full_p1)
        lines.append(f"{label:<22} {last[1] / max(last[0], 1e-9):>9,.0f} "
                     + " ".join(f"{c:>15}" for c in cells)
                     + (f" {t:>11.2f}s {t / full_epoch_s:>7.3f}" if np.isfinite(t)
                        else f" {'not reached':>12} {'-':>7}"))
    table = "\n".join(lines)
    print(table, flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"negative_sampling_{name}.txt").write_text(table + "\n")
    _plot(name, curves, RESULTS / f"negative_sampling_{name}.png")
    return curves, full_epoch_s, full_p1, budget


def per_epoch_table(name, curves, n_rows, args):
    """P@1 (P@5) and seconds after each epoch, and the headroom over the static samplers."""
    epochs = range(1, args.equal_epochs + 1)
    lines = [f"{name}: P@1 (P@5) [training s] after each epoch, equal iterations",
             f"{'mode':<22} " + " ".join(f"{f'epoch {e}':>26}" for e in epochs)]
    at = {}
    for label, curve in curves.items():
        cells = []
        for e in epochs:
            done = [c for c in curve if c[1] <= e * n_rows]
            at[label, e] = done[-1][2] if done else float("nan")
            cells.append(f"{done[-1][2]:.4f} ({done[-1][3]:.4f}) [{done[-1][0]:.1f}]"
                         if done else "-")
        lines.append(f"{label:<22} " + " ".join(f"{c:>26}" for c in cells))
    static = [k for k in curves if k.startswith(("uniform", "unigram"))]
    lsh = [k for k in curves if k.startswith("lsh")]
    for e in epochs:
        if not static:
            break
        best_static = max(static, key=lambda k: at[k, e])
        s = at[best_static, e]
        parts = [f"epoch {e}: best static {best_static} {s:.4f}"]
        for ref in ("full", "exact (oracle)"):
            if ref in curves:
                gain = at[ref, e] - s
                parts.append(f"{ref} {gain:+.4f} ({'headroom' if gain > 0 else 'NO headroom'})")
        for k in lsh:
            parts.append(f"{k} {at[k, e] - s:+.4f}")
        lines.append("; ".join(parts))
    table = "\n".join(lines)
    print(table, flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"negative_sampling_{name}_epochs.txt").write_text(table + "\n")
    _plot(name, curves, RESULTS / f"negative_sampling_{name}_epochs.png")
    return None


def equal_time_check(curves, X, Y, Xt, Yt, args, params, chunk):
    """The static samplers trained for as long as each LSH mode took for its epochs.

    Per-epoch headroom is only worth capturing if the LSH mode's epochs do
    not cost more than the static samplers need to get as far: each of
    ``uniform + logq`` and ``unigram + logq`` trains (up to 50 epochs) for
    the slowest LSH mode's time, and its P@1 at each LSH mode's time is
    printed next to that mode's.
    """
    lsh = [k for k in curves if k.startswith("lsh")]
    if not lsh:
        return None
    budget = max(curves[k][-1][0] for k in lsh)
    static = {}
    for label, mode, correction, fill in MODES:
        if label in ("uniform + logq", "unigram + logq"):
            static[label] = train_for(
                {**params, "negative_sampling": mode, "sampling_correction": correction,
                 "negative_fill": fill},
                X, Y, Xt, Yt, budget_s=budget, chunk=chunk, max_epochs=50, seed=0)
    print(f"\nequal wall-clock: each LSH mode after {args.equal_epochs} epochs against the "
          "static samplers given the same training time")
    for k in lsh:
        t, p1 = curves[k][-1][0], curves[k][-1][2]
        parts = [f"  {k:<28} P@1 {p1:.4f} in {t:.1f} s"]
        for label, curve in static.items():
            done = [c for c in curve if c[0] <= t]
            epochs = done[-1][1] / X.shape[0] if done else 0.0
            parts.append(f"{label} {p1_at(curve, t):.4f} ({epochs:.1f} epochs)")
        best = max(p1_at(c, t) for c in static.values())
        print("; ".join(parts) + ("  LSH ahead" if p1 > best else "  LSH NOT ahead"))
    return None


def _plot(name, curves, path):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot")
        return
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for label, curve in curves.items():
        c = np.array(curve)
        style = "-" if "lsh" in label or label == "full" else "--"
        for ax, col in zip(axes, (2, 3), strict=True):
            ax.plot(c[:, 0], c[:, col], style, marker=".", label=label)
    for ax, metric in zip(axes, ("P@1", "P@5"), strict=True):
        ax.set_xlabel("training time (s)")
        ax.set_ylabel(metric)
        ax.set_title(f"{name}: {metric} against training time")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"plot: {path}")


def verdict(curves, full_epoch_s, full_p1, budget):
    lsh = [k for k in curves if k.startswith("lsh")]
    static = [k for k in curves if k.startswith(("uniform", "unigram"))]
    print("\nchecks on the generated problem:")
    if not lsh or not static:
        print("  skipped: they need at least one LSH mode and one of uniform / unigram")
        return
    for m in (budget * 0.5, budget):
        best_lsh = max(lsh, key=lambda k: p1_at(curves[k], m))
        best_static = max(static, key=lambda k: p1_at(curves[k], m))
        a, b = p1_at(curves[best_lsh], m), p1_at(curves[best_static], m)
        print(f"  at {m:.0f} s: best LSH mode {best_lsh} P@1 {a:.4f} vs best static "
              f"{best_static} {b:.4f}: {'LSH ahead' if a > b else 'LSH NOT ahead'}")
    fastest = min(lsh, key=lambda k: time_to(curves[k], full_p1))
    t = time_to(curves[fastest], full_p1)
    print(f"  fastest LSH mode to full's one-epoch P@1 ({full_p1:.4f}): {fastest} in {t:.1f} s "
          f"= {t / full_epoch_s:.3f} of full's {full_epoch_s:.1f} s "
          f"({'under' if t < full_epoch_s / 3 else 'NOT under'} a third)")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="delicious,synth")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--labels", type=int, default=SYNTH["labels"])
    parser.add_argument("--features", type=int, default=SYNTH["features"])
    parser.add_argument("--train", type=int, default=SYNTH["train"])
    parser.add_argument("--test", type=int, default=1_000)
    parser.add_argument("--checkpoints", type=int, default=10,
                        help="evaluations per epoch")
    parser.add_argument("--budget-factor", type=float, default=1.0,
                        help="each mode's time budget, in epochs of full")
    parser.add_argument("--max-epochs", type=int, default=20)
    parser.add_argument("--hashes-per-table", type=int, default=3,
                        help="DWTA codes per table (K) of the LSH modes")
    parser.add_argument("--modes", type=lambda s: s.split(","), default=None,
                        help="comma-separated labels of the modes to run (default: all)")
    parser.add_argument("--label-cluster-size", type=int, default=1,
                        help="generated problem: labels in clusters of this many by frequency")
    parser.add_argument("--cluster-shared", type=float, default=0.0,
                        help="generated problem: share of a label's signature common to its "
                             "cluster (confusable siblings)")
    parser.add_argument("--equal-epochs", type=int, default=0,
                        help="train every mode this many epochs and compare per epoch "
                             "(no time budget)")
    parser.add_argument("--no-sparse-head", action="store_true",
                        help="train the network alone (the negatives only change the "
                             "network; the sparse head's scores hide part of the difference)")
    parser.add_argument("--active-labels", type=int, default=None,
                        help="labels each row's softmax scores (max_active_labels and "
                             "min_active_labels; default 1,000, Delicious 200)")
    parser.add_argument("--n-jobs", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test")
    args = parser.parse_args(argv)
    if args.quick:
        args.labels, args.features, args.train, args.test = 5_000, 5_000, 2_000, 300
        args.checkpoints, args.max_epochs = 4, 3
    warnings.simplefilter("ignore")
    # The LSH settings: DWTA with 3 codes per table returns a useful number of
    # candidates from a 128-wide hidden layer (6 codes return almost none).
    params = dict(SLIDE_PARAMS, hash_family="dwta", n_hashes_per_table=args.hashes_per_table,
                  n_tables=50, n_jobs=args.n_jobs, sparse_head=not args.no_sparse_head)
    if args.active_labels:
        params.update(max_active_labels=args.active_labels, min_active_labels=args.active_labels)
    for name in args.datasets.split(","):
        if name == "delicious":
            folder = args.data_dir / "delicious"
            if not folder.exists():
                print(f"\n== delicious skipped: {folder} not found")
                continue
            X, Y = load_xc(folder / "train.txt")
            Xt, Yt = load_xc(folder / "test.txt")
            if args.quick:
                X, Y, Xt, Yt = X[:2000], Y[:2000], Xt[:300], Yt[:300]
            budget = args.active_labels or 200
            run_dataset("delicious", X, Y, Xt, Yt, args,
                        {**params, "max_active_labels": budget, "min_active_labels": budget})
        elif name == "synth":
            started = time.perf_counter()
            Xa, Ya = make_extreme_classification(
                args.train + args.test, args.features, args.labels,
                label_cluster_size=args.label_cluster_size,
                cluster_shared_fraction=args.cluster_shared, random_state=0,
            )
            print(f"\ngenerated {args.labels:,} labels in {time.perf_counter() - started:.1f} s")
            X, Y, Xt, Yt = Xa[: args.train], Ya[: args.train], Xa[args.train:], Ya[args.train:]
            problem = f"synth{args.labels}"
            if args.cluster_shared > 0:
                problem += f"_clusters{args.label_cluster_size}x{args.cluster_shared:g}"
            result = run_dataset(problem, X, Y, Xt, Yt, args, params)
            if result is not None:
                verdict(*result)
        elif name in ("wordnet", "confusable"):
            X, Y, Xt, Yt = _named(name, args)
            if X is None:
                continue
            if args.quick:
                X, Y, Xt = X[:3000], Y[:3000], Xt[:300]
            Yt = Yt[: Xt.shape[0]]
            run_dataset(name, X, Y, Xt[: args.test], Yt[: args.test], args, params)
        else:
            parser.error(f"unknown dataset {name!r}")


if __name__ == "__main__":
    main()
