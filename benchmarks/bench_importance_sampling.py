"""Importance-sampled training: uniform vs NW-sketch vs exact-loss sampling.

Four real datasets from ../shared/data (or $SKSKETCH_DATA_DIR), customary
splits; each trained with ``ImportanceSampledClassifier`` around an
``MLPClassifier`` (Adam), one ``partial_fit`` call (one epoch) at a time so
test accuracy (P@1 for Delicious) can be measured after every epoch, outside
the timed region:

fashion     Fashion-MNIST (IDX gzip), pixels / 255; 60000 train / 10000 test.
letter      UCI Letter, standardised; first 16000 train / last 4000 test.
satellite   UCI Landsat Satellite, standardised; first 4435 / last 2000.
delicious   Delicious (XC format, 983 labels, multi-label); P@1.

Samplers: "uniform", "nw-sketch", "exact-loss"; a suffix ":none" or
":self-normalised" sets the loss-proportional samplers' ``weighting`` (default
"auto": importance weights 1 / (N p_i) for draws, self-normalised ones when
thinning), so "nw-sketch:none" draws by the sketch and
trains on the draws unweighted. A suffix "@<keep>" thins instead
(``keep_fraction``): "uniform@0.5" is random thinning to half the rows,
"nw-sketch@0.5" keeps half by the sketched loss, "nw-sketch@auto" lets the
sketch choose how many; thinned epochs train on fewer rows and so take less
time, which is what the time-to-target columns compare. Thinned arms run
``ceil(epochs / keep)`` epochs (twice as many for "auto"), about the
wall-clock of the others.

For every dataset and seed each sampler trains the same network; the script
prints per-epoch curves (mean over seeds), the time each sampler needs to reach
uniform sampling's final test score (mean over seeds; per seed in the JSON),
the ratio of that time to uniform's, and the sampler's share of epoch time
(hashing, sketch insert/query and drawing for "nw-sketch"; the extra forward
pass over all rows for "exact-loss") plus, separately, the loss computation
the meta-estimator needs to feed the sketch (predict_proba on the trained
rows, in groups). Results go to
benchmarks/results/importance_sampling_<dataset>.{json,md,png}.

``--estimator slide`` trains ``SLIDEClassifier(sampler=...)`` instead: its
training step returns every row's loss, so the sketch needs no extra pass and
the exact-loss sampler's pass is the only loss computation beyond training
(files ``importance_sampling_<dataset>_slide.*``).

    python benchmarks/bench_importance_sampling.py                 # all four
    python benchmarks/bench_importance_sampling.py --datasets letter --seeds 0 1 2
    python benchmarks/bench_importance_sampling.py --estimator slide --datasets delicious
    python benchmarks/bench_importance_sampling.py --quick         # smoke test
"""

import argparse
import gzip
import json
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from sksketch import ImportanceSampledClassifier, SLIDEClassifier
from sksketch.datasets import load_xc
from sksketch.metrics import precision_at_k
from sksketch.sampling import ExactLossSampler, NWSketchSampler, UniformSampler
from sksketch.sampling._nw import WEIGHTINGS

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def data_dir():
    return Path(os.environ.get("SKSKETCH_DATA_DIR", ROOT.parent / "shared" / "data"))


def _read_idx(path):
    with gzip.open(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def _standardise(X_train, X_test):
    mean = X_train.mean(axis=0)
    std = X_train.std(axis=0) + 1e-6
    return ((X_train - mean) / std).astype(np.float32), ((X_test - mean) / std).astype(np.float32)


def _read_csv(path, label_column):
    import csv

    with open(path) as f:
        rows = list(csv.reader(f))
    header, rows = rows[0], rows[1:]
    j = header.index(label_column)
    y = np.array([r[j] for r in rows])
    X = np.array([[float(v) for k, v in enumerate(r) if k != j] for r in rows])
    return X, y


def load(name):
    base = data_dir()
    if name == "fashion":
        d = base / "fashion-mnist"
        Xtr = _read_idx(d / "train-images-idx3-ubyte.gz").reshape(60000, -1)
        Xte = _read_idx(d / "t10k-images-idx3-ubyte.gz").reshape(10000, -1)
        ytr = _read_idx(d / "train-labels-idx1-ubyte.gz").astype(np.int64)
        yte = _read_idx(d / "t10k-labels-idx1-ubyte.gz").astype(np.int64)
        return (Xtr / 255.0).astype(np.float32), ytr, (Xte / 255.0).astype(np.float32), yte
    if name == "letter":
        X, y = _read_csv(base / "uci" / "LetterRecognition.csv", "lettr")
        Xtr, Xte = _standardise(X[:16000], X[16000:])
        return Xtr, y[:16000], Xte, y[16000:]
    if name == "satellite":
        X, y = _read_csv(base / "uci" / "Satellite.csv", "classes")
        Xtr, Xte = _standardise(X[:4435], X[4435:])
        return Xtr, y[:4435], Xte, y[4435:]
    if name == "delicious":
        Xtr, Ytr = load_xc(base / "delicious" / "train.txt")
        Xte, Yte = load_xc(base / "delicious" / "test.txt")
        return Xtr.astype(np.float32), Ytr, Xte.astype(np.float32), Yte
    raise ValueError(name)


# network, batch, epochs, learning rate per dataset (the same for every
# sampler), and the dimension the NW sketch projects the input to before
# hashing (None: hash the input itself; Fashion's 784 pixels are projected).
SETTINGS = {
    "fashion": {"hidden": (64,), "batch": 256, "epochs": 5, "lr": 1e-3, "projection": 64},
    "letter": {"hidden": (128,), "batch": 64, "epochs": 12, "lr": 2e-3, "projection": None},
    "satellite": {"hidden": (64,), "batch": 32, "epochs": 15, "lr": 1e-3, "projection": None},
    "delicious": {"hidden": (64,), "batch": 128, "epochs": 5, "lr": 1e-3, "projection": None},
}
SAMPLERS = ("uniform", "nw-sketch", "exact-loss")


def _split_spec(spec):
    """``kind[:weighting][@keep]`` -> (kind, weighting or "", keep or None)."""
    head, _, keep = spec.partition("@")
    kind, _, weighting = head.partition(":")
    if keep and keep != "auto":
        keep = float(keep)
    return kind, weighting, keep or None


def parse_sampler(spec):
    try:
        kind, weighting, keep = _split_spec(spec)
    except ValueError:
        kind = None
    thinning = keep is not None if kind else False
    if (
        kind not in SAMPLERS
        or (weighting and ((kind == "uniform" and not thinning) or weighting not in WEIGHTINGS))
        or (thinning and keep != "auto" and not 0 < keep <= 1)
        or (kind == "uniform" and keep == "auto")
    ):
        raise argparse.ArgumentTypeError(
            f"{spec!r}: expected one of {SAMPLERS}, the last two optionally with "
            f"':<weighting>', weighting one of {WEIGHTINGS}; any of them with '@<keep>', "
            "a keep fraction in (0, 1] ('auto' for the last two)"
        )
    return spec


def make_sampler(spec, args, name):
    kind, weighting, keep = _split_spec(spec)
    weighting = weighting or "auto"
    thin = {} if keep is None else {"keep_fraction": keep}
    if kind == "uniform":
        return UniformSampler(weighting=weighting, **thin)
    if kind == "nw-sketch":
        projection = SETTINGS[name]["projection"] if args.projection_dim is None else (
            args.projection_dim
        )
        return NWSketchSampler(
            n_rows=args.n_rows,
            n_hash_bits=args.n_hash_bits,
            uniform_mix=args.uniform_mix,
            weighting=weighting,
            decay=args.decay,
            projection_dim=projection if projection and projection > 0 else None,
            **thin,
        )
    return ExactLossSampler(uniform_mix=args.uniform_mix, weighting=weighting, **thin)


def score(clf, X, y, multilabel):
    if multilabel:
        return float(precision_at_k(y, clf.predict_proba(X), k=1))
    return float(np.mean(clf.predict(X) == y))


def run_one(name, data, kind, seed, args):
    Xtr, ytr, Xte, yte = data
    multilabel = name == "delicious"
    s = SETTINGS[name]
    epochs = args.epochs or s["epochs"]
    keep = _split_spec(kind)[2]
    if keep is not None:
        # a thinned epoch costs about `keep` of a full one: as many epochs as
        # make the same wall-clock ("auto" keeps about half, early on)
        epochs = int(np.ceil(epochs / (0.5 if keep == "auto" else keep)))
    sampler = make_sampler(kind, args, name)
    slide = args.estimator == "slide"
    if slide:
        # the sampler inside the training loop: the step returns its losses
        clf = SLIDEClassifier(hidden_layer_size=s["hidden"][0], batch_size=s["batch"],
                              learning_rate=s["lr"], sampler=sampler, random_state=seed,
                              n_jobs=args.n_jobs)
        classes = np.arange(ytr.shape[1]) if multilabel else np.unique(ytr)
    else:
        from sklearn.neural_network import MLPClassifier

        mlp = MLPClassifier(
            hidden_layer_sizes=s["hidden"], learning_rate_init=s["lr"], random_state=seed
        )
        clf = ImportanceSampledClassifier(
            mlp, sampler=sampler, batch_size=s["batch"], random_state=seed
        )
        classes = None if multilabel else np.unique(ytr)
    curve = []
    elapsed = 0.0
    slide_sampler_time = 0.0  # SLIDE's sampler reports the last epoch only
    for _ in range(epochs):
        tic = time.perf_counter()
        clf.partial_fit(Xtr, ytr, classes=classes)
        elapsed += time.perf_counter() - tic
        if slide:
            slide_sampler_time += clf.sampler_.epoch_stats_["sampler_time"]
        curve.append((elapsed, score(clf, Xte, yte, multilabel)))
    if slide:
        epoch_time, sampler_time, loss_time = elapsed, slide_sampler_time, 0.0
    else:
        epoch_time = sum(clf.epoch_time_)
        sampler_time, loss_time = sum(clf.sampler_time_), sum(clf.loss_time_)
    ess = (clf.sampler_ if slide else clf).effective_sample_size_
    return {
        "sampler": kind,
        "seed": seed,
        "times": [t for t, _ in curve],
        "scores": [a for _, a in curve],
        "sampler_share": sampler_time / epoch_time,
        "loss_share": loss_time / epoch_time,
        "ess_ratio": [e / Xtr.shape[0] for e in ess],
        "kept_fraction": clf.sampler_.epoch_stats_["kept_fraction"],
    }


def time_to(run, target):
    for t, a in zip(run["times"], run["scores"], strict=True):
        if a >= target:
            return t
    return float("inf")


def summarise(name, runs, samplers, seeds):
    by = {k: [r for r in runs if r["sampler"] == k] for k in samplers}
    mean_curve = {
        k: (
            np.mean([r["times"] for r in by[k]], axis=0),
            np.mean([r["scores"] for r in by[k]], axis=0),
        )
        for k in samplers
    }
    target = float(mean_curve["uniform"][1][-1])
    rows = []
    for k in samplers:
        t_mean, a_mean = mean_curve[k]
        reach = next(
            (float(t) for t, a in zip(t_mean, a_mean, strict=True) if a >= target), float("inf")
        )
        epochs = next((i + 1 for i, a in enumerate(a_mean) if a >= target), float("inf"))
        # the machine is shared: the median epoch time is the robust speed
        epoch_times = [float(d) for r in by[k] for d in np.diff([0.0] + r["times"])]
        median_epoch = statistics.median(epoch_times)
        per_seed = [time_to(r, target) for r in by[k]]
        rows.append(
            {
                "sampler": k,
                "final_score": float(a_mean[-1]),
                "final_score_std": float(np.std([r["scores"][-1] for r in by[k]])),
                "best_score": float(np.max(a_mean)),
                "train_time": float(t_mean[-1]),
                "time_to_uniform_final": reach,
                "epochs_to_uniform_final": epochs,
                "median_epoch_time": median_epoch,
                "median_time_to_uniform_final": epochs * median_epoch,
                "per_seed_time_to_target": per_seed,
                "sampler_share_pct": 100 * statistics.median(r["sampler_share"] for r in by[k]),
                "loss_share_pct": 100 * statistics.median(r["loss_share"] for r in by[k]),
            }
        )
    base = rows[0]["time_to_uniform_final"]
    base_median = rows[0]["median_time_to_uniform_final"]
    for row in rows:
        row["time_ratio_to_uniform"] = row["time_to_uniform_final"] / base
        row["median_time_ratio_to_uniform"] = row["median_time_to_uniform_final"] / base_median
    return target, mean_curve, rows


def report(name, target, mean_curve, rows, seeds, metric):
    lines = [
        f"## {name}: {metric}, mean over seeds {list(seeds)}; target = uniform's final "
        f"{metric} {target:.4f}",
        "",
        f"| sampler | final {metric} | std | best | train s | s to target | ratio (ours/uniform) "
        "| epochs to target | median epoch s | epochs x median s | ratio (ours/uniform) "
        "| sampler % of epoch | batch-loss % of epoch |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['sampler']} | {r['final_score']:.4f} | {r['final_score_std']:.4f} | "
            f"{r['best_score']:.4f} | {r['train_time']:.2f} | {r['time_to_uniform_final']:.2f} "
            f"| {r['time_ratio_to_uniform']:.2f} | {r['epochs_to_uniform_final']} | "
            f"{r['median_epoch_time']:.2f} | {r['median_time_to_uniform_final']:.2f} | "
            f"{r['median_time_ratio_to_uniform']:.2f} | {r['sampler_share_pct']:.1f} | "
            f"{r['loss_share_pct']:.1f} |"
        )
    lines += ["", "per-epoch mean curves (cumulative train s, score):"]
    for k, (t, a) in mean_curve.items():
        points = ", ".join(f"{ti:.1f}s {ai:.4f}" for ti, ai in zip(t, a, strict=True))
        lines.append(f"- {k}: {points}")
    return "\n".join(lines)


def plot(name, mean_curve, target, metric, path):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no plot (pip install 'sksketch[plot]')")
        return
    fig, ax = plt.subplots(figsize=(6, 4))
    for k, (t, a) in mean_curve.items():
        ax.plot(t, a, marker="o", label=k)
    ax.axhline(target, color="grey", linestyle=":", label="uniform final")
    ax.set_xlabel("training wall-clock (s)")
    ax.set_ylabel(f"test {metric}")
    ax.set_title(f"{name}: importance sampling")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument(
        "--samplers",
        nargs="+",
        type=parse_sampler,
        default=["uniform", "nw-sketch", "nw-sketch:none", "exact-loss", "exact-loss:none",
                 "uniform@0.5", "nw-sketch@0.5", "nw-sketch@auto", "exact-loss@0.5"],
    )
    parser.add_argument("--epochs", type=int, default=None, help="override per-dataset epochs")
    parser.add_argument("--n-rows", type=int, default=32)
    parser.add_argument("--n-hash-bits", type=int, default=14)
    parser.add_argument("--uniform-mix", type=float, default=0.1)
    parser.add_argument("--decay", type=float, default=0.5)
    parser.add_argument("--projection-dim", type=int, default=None,
                        help="NW sketch: hash a Gaussian projection to this many dimensions "
                        "(default: per dataset, see SETTINGS; 0 hashes the input itself)")
    parser.add_argument(
        "--estimator", choices=["mlp", "slide"], default="mlp",
        help="mlp: ImportanceSampledClassifier around MLPClassifier (losses by predict_proba); "
        "slide: SLIDEClassifier(sampler=...), whose training step returns the losses",
    )
    parser.add_argument("--n-jobs", type=int, default=2, help="threads of SLIDEClassifier")
    parser.add_argument("--quick", action="store_true", help="2 epochs, 1 seed, subsampled")
    args = parser.parse_args(argv)
    if args.quick:
        args.epochs, args.seeds = 2, [0]
    if args.samplers[0] != "uniform":
        parser.error("--samplers must start with uniform (the reference)")
    RESULTS.mkdir(parents=True, exist_ok=True)
    warnings.filterwarnings("ignore", category=UserWarning)
    from sklearn.exceptions import ConvergenceWarning

    warnings.filterwarnings("ignore", category=ConvergenceWarning)
    for name in args.datasets:
        data = load(name)
        if args.quick:
            n = min(3000, data[0].shape[0])
            data = (data[0][:n], data[1][:n], data[2][:1000], data[3][:1000])
        metric = "P@1" if name == "delicious" else "accuracy"
        runs = []
        for seed in args.seeds:
            for kind in args.samplers:
                run = run_one(name, data, kind, seed, args)
                runs.append(run)
                print(
                    f"{name} seed={seed} {kind:10s} final={run['scores'][-1]:.4f} "
                    f"time={run['times'][-1]:.2f}s sampler={100 * run['sampler_share']:.1f}% "
                    f"batch-loss={100 * run['loss_share']:.1f}%",
                    flush=True,
                )
        target, mean_curve, rows = summarise(name, runs, args.samplers, args.seeds)
        suffix = "" if args.estimator == "mlp" else f"_{args.estimator}"
        text = report(name + suffix, target, mean_curve, rows, args.seeds, metric)
        print(text, flush=True)
        stem = RESULTS / f"importance_sampling_{name}{suffix}"
        settings = dict(SETTINGS[name], **{k: v for k, v in vars(args).items() if k != "datasets"})
        with open(f"{stem}.json", "w") as f:
            json.dump({"settings": settings, "summary": rows, "runs": runs, "target": target},
                      f, indent=1, default=str)
        Path(f"{stem}.md").write_text(text + "\n")
        plot(name + suffix, mean_curve, target, metric, f"{stem}.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
