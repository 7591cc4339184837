"""How much of the softmax do LSH candidates hold, next to unigram draws?

A sampled softmax learns fastest from the negatives that carry the full
softmax's probability mass. This script trains ``SLIDEClassifier`` for a few
epochs on the generated 100,000-label problem of
``bench_negative_sampling.py`` (unigram negatives), then, for test rows,
queries hash tables built over the trained output layer and reports per
candidate generator:

- ``cand``: labels returned per query (true labels removed);
- ``mass``: the share of the full softmax's negative mass they hold;
- ``unigram``: the same share for as many draws by training frequency
  (what ``negative_sampling="unigram"`` would give for the same count);
- ``top-n``: the same share for the n highest-scoring negatives (the best
  any sampler of that size can do);
- ``recall@100``: the share of the 100 highest-scoring negatives retrieved.

Generators: DWTA over the weight rows (SLIDEClassifier's tables), SimHash
over them, SimHash over ``[w, b]`` queried with ``[h, 1]`` (the logit with
its bias), and the "simple LSH" transform for inner products,
``[w, b, sqrt(M^2 - |w|^2 - b^2)]`` queried with ``[h, 1, 0]``. An LSH mode
can only beat unigram at equal time if its ``mass`` is well above
``unigram``'s for the same count.

    python benchmarks/diagnose_negative_candidates.py
    python benchmarks/diagnose_negative_candidates.py --epochs 5 --test 500
"""

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
from bench_negative_sampling import SLIDE_PARAMS, SYNTH
from sksketch._kernels._lsh import LSHTables

from sksketch import SLIDEClassifier
from sksketch.datasets import make_extreme_classification

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"


def generators(W, b):
    """(name, family, K, items, query transform) of each candidate generator."""
    Wb = np.hstack([W, b[:, None]])
    sq = (Wb * Wb).sum(axis=1)
    mips = np.hstack([Wb, np.sqrt(np.maximum(sq.max() - sq, 0.0))[:, None]])
    out = [("dwta K5 on w", "dwta", 5, W, lambda h: h),
           ("dwta K4 on w", "dwta", 4, W, lambda h: h)]
    for K in (6, 8):
        out += [(f"simhash K{K} on w", "simhash", K, W, lambda h: h),
                (f"simhash K{K} on [w, b]", "simhash", K, Wb, lambda h: np.append(h, 1.0)),
                (f"simple-LSH K{K} (MIPS)", "simhash", K, mips,
                 lambda h: np.append(h, [1.0, 0.0]))]
    return [(name, fam, K, np.ascontiguousarray(items, dtype=np.float32), q)
            for name, fam, K, items, q in out]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", type=int, default=SYNTH["labels"])
    parser.add_argument("--features", type=int, default=SYNTH["features"])
    parser.add_argument("--train", type=int, default=SYNTH["train"])
    parser.add_argument("--test", type=int, default=300)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--n-tables", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--label-cluster-size", type=int, default=1)
    parser.add_argument("--cluster-shared", type=float, default=0.0,
                        help="share of a label's signature common to its cluster")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    Xa, Ya = make_extreme_classification(
        args.train + args.test, args.features, args.labels,
        label_cluster_size=args.label_cluster_size,
        cluster_shared_fraction=args.cluster_shared, random_state=args.seed,
    )
    X, Y, Xt, Yt = Xa[: args.train], Ya[: args.train], Xa[args.train:], Ya[args.train:]
    model = SLIDEClassifier(**SLIDE_PARAMS, negative_sampling="unigram",
                            sampling_correction="none", random_state=args.seed)
    started = time.perf_counter()
    for _ in range(args.epochs):
        model.partial_fit(X, Y, classes=np.arange(args.labels))
    print(f"trained {args.epochs} epochs (unigram negatives) in "
          f"{time.perf_counter() - started:.1f} s")
    H = model._hidden(Xt)
    W, b = model.output_weights_, model.output_bias_
    unigram = np.cumsum(model._label_counts + 1.0)
    unigram /= unigram[-1]
    rng = np.random.default_rng(args.seed)
    lines = [f"{'generator':<26} {'cand':>7} {'mass':>7} {'unigram':>8} {'top-n':>7} "
             f"{'recall@100':>11}"]
    for name, family, K, items, query in generators(W, b):
        tables = LSHTables(family, items.shape[1], K, args.n_tables, bucket_capacity=128,
                           policy="reservoir", n_buckets_log2=18, seed=args.seed + 1)
        tables.build(items, n_threads=2)
        stats = []
        for i in range(H.shape[0]):
            scores = W @ H[i] + b
            p = np.exp(scores - scores.max())
            negative = np.ones(args.labels, dtype=bool)
            negative[Yt[i].indices] = False
            p /= p[negative].sum()
            p[~negative] = 0.0
            cand = tables.query(np.ascontiguousarray(query(H[i]), dtype=np.float32))
            cand = cand[negative[cand]]
            n = max(len(cand), 1)
            drawn = np.unique(np.searchsorted(unigram, rng.random(n), side="right"))
            ranked = np.argsort(-np.where(negative, scores, -np.inf))
            stats.append((len(cand), p[cand].sum(), p[drawn].sum(), p[ranked[:n]].sum(),
                          np.isin(ranked[:100], cand).mean()))
        c, m, u, t, r = np.mean(stats, axis=0)
        lines.append(f"{name:<26} {c:>7.0f} {m:>7.3f} {u:>8.3f} {t:>7.3f} {r:>11.3f}")
        print(lines[-1], flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "negative_candidates.txt").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
