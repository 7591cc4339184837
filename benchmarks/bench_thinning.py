"""Loss-sketch thinning on a click-through problem: test AUC against wall-clock time.

The regime thinning is for: many rows, most of them easy. The data are
:func:`sksketch.datasets.make_click_through` (20 categorical fields with Zipf
value frequencies and cardinalities up to 100,000, hashed one-hot input,
about 15% positives, a logistic ground truth with pairwise interactions):
1,000,000 training rows and 200,000 test rows by default, one data set per
seed.

Each arm streams the training rows through
``ImportanceSampledClassifier.partial_fit`` in blocks of 100,000 rows: two
passes for the all-rows arm, four for the thinned arms (``--passes``,
``--thin-passes``: a thinned pass costs about a third of a full one, so the
thinned arms run about as long as the all-rows arm's first pass). Each call
thins its block (the arms that thin) and trains on what it keeps. Test AUC
and log-loss are measured after every block, outside the timed region. The
timed region is the ``partial_fit`` calls, so it includes the sampler's own
work: hashing the rows, querying and updating the sketch, and the
``predict_proba`` on the kept rows that feeds the sketch their losses.

Arms (``--keep`` sets the thinned arms' keep fraction, 0.3 by default):

all             every row (UniformSampler)
random          random thinning, weights 1/p (UniformSampler(keep_fraction))
random-unw      random thinning, weight 1
exact           thinning by the model's exact current loss (a forward pass
                over every candidate row: the expensive reference), weights 1/p
nw              thinning by the Nadaraya-Watson loss sketch, weights 1/p
nw-sn           the same, weights scaled to mean 1 in every batch (what
                weighting="auto", the default, does when thinning)
nw-auto         the sketch, keep_fraction="auto", weights 1/p

Models: ``SGDClassifier(loss="log_loss")`` and a one-hidden-layer
``MLPClassifier`` (Adam). For each, the script prints per arm the final test
AUC and log-loss after each pass (mean and std over seeds), the wall-clock
time, the rows trained on, the sampler's share of the time, and the time each
arm needs to reach the all-rows arm's test AUC after one pass and after two
(per seed, as a ratio to the all-rows arm's time to get there; the median
over seeds). Results go to
benchmarks/results/thinning_ctr.{json,md,png}.

    python benchmarks/bench_thinning.py                       # the full run
    python benchmarks/bench_thinning.py --models sgd --seeds 0
    python benchmarks/bench_thinning.py --quick               # 100k rows, smoke test
"""

import argparse
import json
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from sklearn.linear_model import SGDClassifier
from sklearn.metrics import log_loss, roc_auc_score
from sklearn.neural_network import MLPClassifier

from sksketch import ImportanceSampledClassifier
from sksketch.datasets import make_click_through
from sksketch.sampling import ExactLossSampler, NWSketchSampler, UniformSampler

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"

ARMS = ("all", "random", "random-unw", "exact", "nw", "nw-sn", "nw-auto")
MODELS = ("sgd", "mlp")


def make_sampler(arm, keep):
    if arm == "all":
        return UniformSampler()
    if arm == "random":
        return UniformSampler(keep_fraction=keep, weighting="importance")
    if arm == "random-unw":
        return UniformSampler(keep_fraction=keep, weighting="none")
    if arm == "exact":
        return ExactLossSampler(keep_fraction=keep, weighting="importance")
    if arm == "nw":
        return NWSketchSampler(keep_fraction=keep, weighting="importance")
    if arm == "nw-sn":
        return NWSketchSampler(keep_fraction=keep, weighting="self-normalised")
    if arm == "nw-auto":
        return NWSketchSampler(keep_fraction="auto", weighting="importance")
    raise ValueError(arm)


def make_model(name, seed):
    if name == "sgd":
        return SGDClassifier(
            loss="log_loss", learning_rate="constant", eta0=0.01, alpha=1e-6, random_state=seed
        )
    # Adam at 1e-3 with alpha 1e-2: on all rows, test AUC climbs through the
    # first pass and holds in the second (alpha 1e-4 overfits in the second,
    # 3e-3 from the first)
    return MLPClassifier(
        hidden_layer_sizes=(16,), batch_size=1000, learning_rate_init=1e-3, alpha=1e-2,
        random_state=seed,
    )


# rows per partial_fit step of the wrapped model
BATCH = {"sgd": 1000, "mlp": 1000}


def run_arm(model, arm, data, seed, args):
    X, y, Xt, yt = data
    clf = ImportanceSampledClassifier(
        make_model(model, seed), sampler=make_sampler(arm, args.keep),
        batch_size=BATCH[model], random_state=seed,
    )
    n = X.shape[0]
    curve = []
    elapsed = 0.0
    rows = 0
    passes = args.passes if arm == "all" else args.thin_passes
    for pass_ in range(passes):
        for start in range(0, n, args.block):
            Xb, yb = X[start : start + args.block], y[start : start + args.block]
            tic = time.perf_counter()
            clf.partial_fit(Xb, yb, classes=[0, 1])
            elapsed += time.perf_counter() - tic
            rows += clf.sampler_.epoch_stats_["n_draws"]
            proba = clf.predict_proba(Xt)[:, 1]
            curve.append({
                "pass": pass_ + 1, "seconds": elapsed, "rows": rows,
                "auc": float(roc_auc_score(yt, proba)),
                "log_loss": float(log_loss(yt, proba, labels=[0, 1])),
            })
    return {
        "model": model, "arm": arm, "seed": seed, "curve": curve,
        "sampler_seconds": float(sum(clf.sampler_time_) + sum(clf.loss_time_)),
        "sketch_seconds": float(sum(clf.sampler_time_)),
        "loss_seconds": float(sum(clf.loss_time_)),
    }


def time_to(curve, target):
    for point in curve:
        if point["auc"] >= target:
            return point["seconds"]
    return float("inf")


def final_of_pass(curve, p):
    points = [c for c in curve if c["pass"] == p]
    return points[-1] if points else None


def summarise(runs, model, arms, seeds, args):
    """One row per arm and pass: the arm's state after that pass, and its time
    to the all-rows arm's AUC after the same number of passes (any pass of the
    arm may reach it)."""
    rows = []
    for p in range(1, max(args.passes, args.thin_passes) + 1):
        for arm in arms:
            mine = [r for r in runs if r["model"] == model and r["arm"] == arm]
            ends = [final_of_pass(r["curve"], p) for r in mine]
            if any(end is None for end in ends):
                continue
            ratios = []
            for r in mine:
                base = next(b for b in runs if b["model"] == model and b["arm"] == "all"
                            and b["seed"] == r["seed"])
                target = final_of_pass(base["curve"], p)
                if target is not None:
                    ratios.append(time_to(r["curve"], target["auc"]) / target["seconds"])
            rows.append({
                "passes": p, "arm": arm,
                "auc": float(np.mean([e["auc"] for e in ends])),
                "auc_std": float(np.std([e["auc"] for e in ends])),
                "log_loss": float(np.mean([e["log_loss"] for e in ends])),
                "seconds": float(np.mean([e["seconds"] for e in ends])),
                "rows": float(np.mean([e["rows"] for e in ends])),
                "sampler_share": float(np.mean(
                    [r["sampler_seconds"] / r["curve"][-1]["seconds"] for r in mine])),
                "time_to_all_ratio": float(statistics.median(ratios)) if ratios else None,
                "time_to_all_ratio_per_seed": ratios,
            })
    return rows


def report(model, rows, seeds, args):
    lines = [
        f"## {model}: {args.rows:,} training rows, {args.test_rows:,} test rows, blocks of "
        f"{args.block:,}, keep {args.keep}, seeds {list(seeds)}",
        "",
        "time ratio = seconds the arm needs (in any of its passes) to reach the all-rows "
        "arm's test AUC after that many passes, divided by the all-rows arm's seconds to "
        "it (same seed); median over seeds (inf: not reached; -: all rows ran fewer passes)",
        "",
        "| passes | arm | test AUC | std | log-loss | train s | rows trained | sampler % | "
        "time ratio to all |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ratio = r["time_to_all_ratio"]
        lines.append(
            f"| {r['passes']} | {r['arm']} | {r['auc']:.4f} | {r['auc_std']:.4f} | "
            f"{r['log_loss']:.4f} | {r['seconds']:.1f} | {r['rows']:,.0f} | "
            f"{100 * r['sampler_share']:.1f} | {'-' if ratio is None else f'{ratio:.2f}'} |"
        )
    return "\n".join(lines)


def plot(runs, models, arms, path):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no plot (pip install 'sksketch[plot]')")
        return
    fig, axes = plt.subplots(1, len(models), figsize=(6 * len(models), 4), squeeze=False)
    for ax, model in zip(axes[0], models, strict=True):
        best = 0.0
        for arm in arms:
            mine = [r["curve"] for r in runs if r["model"] == model and r["arm"] == arm]
            if not mine:
                continue
            t = np.mean([[c["seconds"] for c in curve] for curve in mine], axis=0)
            a = np.mean([[c["auc"] for c in curve] for curve in mine], axis=0)
            ax.plot(t, a, marker=".", label=arm)
            best = max(best, float(a.max()))
        # the region where the arms differ: the first blocks climb from 0.5
        ax.set_ylim(best - 0.03, best + 0.003)
        ax.set_xlabel("training wall-clock, sampler included (s)")
        ax.set_ylabel("test AUC")
        ax.set_title(f"click-through, {model}")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=ARMS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--test-rows", type=int, default=200_000)
    parser.add_argument("--block", type=int, default=100_000, help="rows per partial_fit call")
    parser.add_argument("--passes", type=int, default=2, help="passes of the all-rows arm")
    parser.add_argument("--thin-passes", type=int, default=4, help="passes of thinned arms")
    parser.add_argument("--keep", type=float, default=0.3, help="keep fraction of thinned arms")
    parser.add_argument("--n-features", type=int, default=2**18)
    parser.add_argument("--out", default="thinning_ctr")
    parser.add_argument("--quick", action="store_true", help="100k rows, one seed")
    args = parser.parse_args(argv)
    if args.quick:
        args.rows, args.test_rows, args.block, args.seeds = 100_000, 20_000, 20_000, [0]
    if args.arms[0] != "all" or "random" not in args.arms:
        parser.error("--arms must start with 'all' and include 'random' (the references)")
    warnings.filterwarnings("ignore", category=UserWarning)
    from sklearn.exceptions import ConvergenceWarning

    warnings.filterwarnings("ignore", category=ConvergenceWarning)
    RESULTS.mkdir(parents=True, exist_ok=True)
    runs = []
    for seed in args.seeds:
        tic = time.perf_counter()
        X, y = make_click_through(
            args.rows + args.test_rows, n_features=args.n_features, random_state=seed
        )
        data = (X[: args.rows], y[: args.rows], X[args.rows :], y[args.rows :])
        print(f"seed {seed}: data in {time.perf_counter() - tic:.1f} s, "
              f"{y[: args.rows].mean():.3f} positives", flush=True)
        for model in args.models:
            # alternate the order of the arms between seeds
            order = args.arms if seed % 2 == 0 else [args.arms[0], *args.arms[:0:-1]]
            for arm in order:
                run = run_arm(model, arm, data, seed, args)
                runs.append(run)
                end = run["curve"][-1]
                print(f"{model} seed={seed} {arm:10s} auc={end['auc']:.4f} "
                      f"logloss={end['log_loss']:.4f} {end['seconds']:.1f}s "
                      f"rows={end['rows']:,} sampler={run['sampler_seconds']:.1f}s", flush=True)
    texts = []
    summary = {}
    for model in args.models:
        rows = summarise(runs, model, args.arms, args.seeds, args)
        summary[model] = rows
        texts.append(report(model, rows, args.seeds, args))
    text = "\n\n".join(texts)
    print(text)
    stem = RESULTS / args.out
    with open(f"{stem}.json", "w") as f:
        json.dump({"settings": vars(args), "summary": summary, "runs": runs}, f, indent=1)
    Path(f"{stem}.md").write_text(text + "\n")
    plot(runs, args.models, args.arms, f"{stem}.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
