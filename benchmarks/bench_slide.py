"""SLIDEClassifier against its peers: quality, training speed, inference.

Sections (each can be run alone with --sections):

quality   P@1/3/5 on Bibtex and Delicious (standard splits) next to
          OneVsRestClassifier(LogisticRegression), run in this process.
synth     The 50,000-label problem written by ../shared/tools/gen_synth_xc.py
          with its defaults (100k features, ~76 non-zeros and ~3 labels per row,
          50k train / 10k test): samples/s and P@1 per epoch on 2 threads,
          hidden 128, batch 128, lr 1e-3, DWTA K=5 L=50, medians over repeats;
          next to PyTorch on the CPU (EmbeddingBag -> 128 ReLU -> full softmax,
          Adam, same batch, 2 threads) run live when torch is installed, and to
          the optimized and original C++ SLIDE, whose figures on this 2-core
          AVX-512 machine are printed as recorded (they cannot run in-process).
bf16      "bfloat16" against "float32" on the synth problem: speed ratio, P@1.
infer     predict_topk(X, 5) batch throughput and single-row latency (p50, p99)
          for "full" and "lsh" inference on the synth model.
amazon    An Amazon-670K-shaped problem from make_extreme_classification
          (135,909 features, 670,091 labels, ~75 non-zeros and ~5.45 labels per
          row; 100k train rows): samples/s, peak RSS and P@1 against training
          time for SLIDEClassifier and for PyTorch (one epoch, full softmax),
          each in its own process; time to PyTorch's one-epoch P@1; inference
          throughput and latency on the 670K-label model.

    python benchmarks/bench_slide.py                       # everything
    python benchmarks/bench_slide.py --sections quality
    python benchmarks/bench_slide.py --sections synth --repeats 1
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

import sksketch
from sksketch import SLIDEClassifier
from sksketch.datasets import load_xc
from sksketch.metrics import precision_at_k
from sksketch.metrics._ranking import _ranked_topk

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = Path(os.environ.get("SKSKETCH_DATA_DIR", ROOT.parent / "shared" / "data"))
GENERATOR = ROOT.parent / "shared" / "tools" / "gen_synth_xc.py"

# Figures of the C++ implementations on the synth problem, measured on this
# 2-core AVX-512 machine (medians of three runs): samples/s and P@1 by epoch.
CPP_REFERENCE = {
    "optimized C++ SLIDE": {"samples_per_s": 2260.0, "p1": {1: 0.31, 3: 0.69}},
    "original C++ SLIDE": {"samples_per_s": 530.0, "p1": {}},
}
PYTORCH_RECORDED = {"samples_per_s": 1060.0, "p1": {1: 0.55, 3: 0.75}, "seconds_3_epochs": 140.0}

SYNTH_PARAMS = dict(
    hidden_layer_size=128,
    batch_size=128,
    learning_rate=1e-3,
    hash_family="dwta",
    n_hashes_per_table=5,
    n_tables=50,
    max_active_labels=0.01,
    n_jobs=2,
)


def _precisions(Y_true, labels, n_labels):
    """P@1, P@3, P@5 from top-5 label ids, best first."""
    ranked = _ranked_topk(labels, n_labels)
    return [precision_at_k(Y_true, ranked, k=j) for j in (1, 3, 5)]


def section_quality(args):
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier

    print("\n== quality: P@1/3/5 on real data (SLIDEClassifier vs OvR logistic regression)")
    print(f"{'dataset':<10} {'model':<44} {'P@1':>7} {'P@3':>7} {'P@5':>7} {'fit s':>8}")
    for name in ("bibtex", "delicious"):
        folder = args.data_dir / name
        if not folder.exists():
            print(f"{name:<10} skipped: {folder} not found")
            continue
        X, Y = load_xc(folder / "train.txt")
        Xt, Yt = load_xc(folder / "test.txt")
        L = Y.shape[1]
        models = {
            # Small data: a wider hidden layer with weight decay (the network
            # overfits with the defaults, about 4 points of P@1 below).
            "SLIDEClassifier (H=512, decay 1, 20 epochs)": SLIDEClassifier(
                hidden_layer_size=512, weight_decay=1.0, max_iter=20, random_state=0, n_jobs=2
            ),
            "OneVsRest(LogisticRegression())": OneVsRestClassifier(
                LogisticRegression(max_iter=1000), n_jobs=2
            ),
        }
        for label, model in models.items():
            started = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                if isinstance(model, SLIDEClassifier):
                    model.fit(X, Y)
                else:
                    keep = np.asarray(Y.sum(axis=0)).ravel() > 0
                    model.fit(X, Y[:, keep].toarray())
            elapsed = time.perf_counter() - started
            if isinstance(model, SLIDEClassifier):
                labels, _ = model.predict_topk(Xt, k=5)
            else:
                proba = np.zeros((Xt.shape[0], L))
                proba[:, keep] = model.predict_proba(Xt)
                labels = np.argsort(-proba, axis=1, kind="stable")[:, :5]
            p = _precisions(Yt, labels, L)
            print(f"{name:<10} {label:<44} {p[0]:>7.4f} {p[1]:>7.4f} {p[2]:>7.4f} {elapsed:>8.1f}")


def _synth_data(args):
    out = args.cache_dir / "synth_xc_defaults"
    if not (out / "train.txt").exists():
        print(f"generating the synth problem into {out} ...", flush=True)
        subprocess.run([sys.executable, str(GENERATOR), "--out", str(out)], check=True)
    X, Y = load_xc(out / "train.txt")
    Xt, Yt = load_xc(out / "test.txt")
    return X, Y, Xt, Yt


def _train_slide_epochs(X, Y, Xt, Yt, n_epochs, seed, **params):
    clf = SLIDEClassifier(**{**SYNTH_PARAMS, **params, "random_state": seed})
    classes = np.arange(Y.shape[1])
    rates, p1, elapsed = [], [], 0.0
    for _ in range(n_epochs):
        started = time.perf_counter()
        clf.partial_fit(X, Y, classes=classes)
        seconds = time.perf_counter() - started
        elapsed += seconds
        rates.append(X.shape[0] / seconds)
        p1.append(clf.score(Xt, Yt))
    return clf, rates, p1, elapsed


def _torch_p1(forward, Xt, Yt):
    import torch

    with torch.no_grad():
        top = np.concatenate([
            forward(Xt[s : s + 500]).argmax(1).numpy() for s in range(0, Xt.shape[0], 500)
        ])
    return float(np.mean(np.asarray(Yt[np.arange(Xt.shape[0]), top]).ravel() > 0))


def _train_torch_epochs(X, Y, Xt, Yt, n_epochs, seed, batch_size=128, checkpoint_rows=None):
    """EmbeddingBag -> 128 ReLU -> full softmax, Adam lr 1e-3.

    Returns samples/s per epoch and P@1 per epoch; with `checkpoint_rows`,
    also (training seconds, P@1) every that many rows (evaluation not timed).
    """
    import torch

    torch.manual_seed(seed)
    torch.set_num_threads(2)
    n_features, n_labels = X.shape[1], Y.shape[1]
    embed = torch.nn.EmbeddingBag(n_features, 128, mode="sum")
    out = torch.nn.Linear(128, n_labels)
    params = list(embed.parameters()) + list(out.parameters())
    opt = torch.optim.Adam(params, lr=1e-3)

    def forward(Xb):
        idx = torch.from_numpy(Xb.indices.astype(np.int64))
        offsets = torch.from_numpy(Xb.indptr[:-1].astype(np.int64))
        w = torch.from_numpy(Xb.data.astype(np.float32))
        return out(torch.relu(embed(idx, offsets, per_sample_weights=w)))

    rng = np.random.default_rng(seed)
    rates, p1, curve = [], [], []
    elapsed, seen = 0.0, 0
    for _ in range(n_epochs):
        order = rng.permutation(X.shape[0])
        epoch_time = 0.0
        for s in range(0, X.shape[0], batch_size):
            started = time.perf_counter()
            rows = order[s : s + batch_size]
            Yb = Y[rows]
            counts = np.diff(Yb.indptr)
            keep = counts > 0
            target = torch.zeros(len(rows), n_labels)
            r = np.repeat(np.arange(len(rows)), counts)
            target[r, Yb.indices] = torch.from_numpy(1.0 / counts[r]).float()
            logits = forward(X[rows])
            loss = -(target * torch.log_softmax(logits, dim=1)).sum(1)[torch.from_numpy(keep)]
            opt.zero_grad()
            loss.mean().backward()
            opt.step()
            seconds = time.perf_counter() - started
            epoch_time += seconds
            elapsed += seconds
            before, seen = seen, seen + len(rows)
            if checkpoint_rows and seen // checkpoint_rows > before // checkpoint_rows:
                curve.append((seen, elapsed, _torch_p1(forward, Xt, Yt)))
        rates.append(X.shape[0] / epoch_time)
        p1.append(curve[-1][2] if curve and curve[-1][0] == seen else _torch_p1(forward, Xt, Yt))
    return (rates, p1, curve) if checkpoint_rows else (rates, p1)


def section_synth(args, data):
    X, Y, Xt, Yt = data
    n_epochs = args.epochs
    print(f"\n== synth: {X.shape[0]} train rows, {Y.shape[1]} labels, 2 threads, "
          f"median of {args.repeats} run(s)")
    runs = [_train_slide_epochs(X, Y, Xt, Yt, n_epochs, seed) for seed in range(args.repeats)]
    rate = statistics.median(statistics.median(r[1]) for r in runs)
    p1 = [statistics.median(r[2][e] for r in runs) for e in range(n_epochs)]
    print(f"{'model':<24} {'samples/s':>10} " + " ".join(f"{'P@1 ep' + str(e + 1):>9}"
                                                       for e in range(n_epochs)))
    print(f"{'SLIDEClassifier':<24} {rate:>10,.0f} " + " ".join(f"{v:>9.4f}" for v in p1))
    torch_rate = PYTORCH_RECORDED["samples_per_s"]
    try:
        import torch  # noqa: F401
    except ImportError:
        print(f"{'PyTorch (recorded)':<24} {torch_rate:>10,.0f}   (torch not installed)")
    else:
        t_rates, t_p1 = _train_torch_epochs(X, Y, Xt, Yt, min(n_epochs, args.torch_epochs), 0)
        torch_rate = statistics.median(t_rates)
        print(f"{'PyTorch CPU full softmax':<24} {torch_rate:>10,.0f} "
              + " ".join(f"{v:>9.4f}" for v in t_p1))
    for name, ref in CPP_REFERENCE.items():
        cells = " ".join(f"{ref['p1'].get(e + 1, float('nan')):>9.2f}" for e in range(n_epochs))
        print(f"{name + ' (recorded)':<24} {ref['samples_per_s']:>10,.0f} {cells}")
    print("\nratios (our time per sample / theirs; below 1 means faster):")
    for name, ref_rate in [("PyTorch", torch_rate)] + [
        (n, r["samples_per_s"]) for n, r in CPP_REFERENCE.items()
    ]:
        print(f"  vs {name:<22} {ref_rate / rate:.3f}  (speed-up {rate / ref_rate:.2f}x)")
    target_p1 = PYTORCH_RECORDED["p1"][3]
    reached = [e + 1 for e, v in enumerate(p1) if v >= target_p1]
    seconds_per_epoch = X.shape[0] / rate
    if reached:
        t = reached[0] * seconds_per_epoch
        print(f"  P@1 {target_p1} reached after epoch {reached[0]}, ~{t:.0f} s "
              f"(PyTorch: ~{PYTORCH_RECORDED['seconds_3_epochs']:.0f} s)")
    else:
        total = n_epochs * seconds_per_epoch
        print(f"  P@1 {target_p1} not reached in {n_epochs} epochs (~{total:.0f} s)")
    return runs[0][0]


def section_bf16(args, data):
    X, Y, Xt, Yt = data
    print("\n== bf16: precision='bfloat16' against 'float32' on synth "
          f"(active ISA: {sksketch.show_config('dicts')['simd']['active_isa']})")
    res = {}
    for precision in ("float32", "bfloat16"):
        runs = [_train_slide_epochs(X, Y, Xt, Yt, 1, s, precision=precision)
                for s in range(args.repeats)]
        res[precision] = (statistics.median(r[1][0] for r in runs),
                          statistics.median(r[2][0] for r in runs))
        print(f"  {precision:<9} {res[precision][0]:>8,.0f} samples/s   P@1 after 1 epoch "
              f"{res[precision][1]:.4f}")
    print(f"  time ratio bfloat16 / float32: {res['float32'][0] / res['bfloat16'][0]:.3f}; "
          f"P@1 difference {res['bfloat16'][1] - res['float32'][1]:+.4f}")


def _inference_speed(clf, mode, Xt, latency_rows):
    """predict_topk(X, 5): batch rows/s, then single-row latency p50 and p99 in ms."""
    clf.set_params(inference=mode)
    clf.predict_topk(Xt[:1], k=5)  # lazily built inference tables are not timed
    started = time.perf_counter()
    clf.predict_topk(Xt, k=5)
    rows_per_s = Xt.shape[0] / (time.perf_counter() - started)
    lat = []
    for i in range(min(latency_rows, Xt.shape[0])):
        row = Xt[i]
        started = time.perf_counter()
        clf.predict_topk(row, k=5)
        lat.append((time.perf_counter() - started) * 1e3)
    p50, p99 = np.percentile(lat, [50, 99])
    return rows_per_s, float(p50), float(p99)


def section_infer(args, clf, data):
    _, _, Xt, _ = data
    print("\n== inference: predict_topk(X, 5) on the synth model")
    for mode in ("full", "lsh"):
        batch, p50, p99 = _inference_speed(clf, mode, Xt, args.latency_rows)
        print(f"  {mode:<5} batch {batch:>10,.0f} rows/s   single row p50 {p50:.3f} ms, "
              f"p99 {p99:.3f} ms")


AMAZON_SHAPE = dict(n_features=135_909, n_labels=670_091, avg_labels_per_sample=5.45,
                    avg_features_per_sample=75)
AMAZON_PARAMS = dict(hidden_layer_size=128, batch_size=256, learning_rate=1e-3,
                     max_active_labels=0.005, n_jobs=2)


def _amazon_data(args):
    from sksketch.datasets import make_extreme_classification

    n = args.amazon_rows + args.amazon_test_rows
    X, Y = make_extreme_classification(n, random_state=0, **AMAZON_SHAPE)
    n_train = args.amazon_rows
    return X[:n_train], Y[:n_train], X[n_train:], Y[n_train:]


def _peak_rss_gb():
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # kB on Linux


def _amazon_worker(args):
    """Runs in its own process (so that its peak RSS is its own); prints JSON."""
    import json

    X, Y, Xt, Yt = _amazon_data(args)
    step = args.amazon_checkpoint
    result = {"model": args.amazon_worker, "rows": X.shape[0]}
    if args.amazon_worker == "torch":
        rates, p1, curve = _train_torch_epochs(X, Y, Xt, Yt, 1, 0, batch_size=256,
                                               checkpoint_rows=step)
        result.update(samples_per_s=rates[0], curve=curve)
    else:
        params = dict(AMAZON_PARAMS)
        if args.amazon_negatives:
            params["negative_sampling"] = args.amazon_negatives
        clf = SLIDEClassifier(**params, random_state=0)
        classes = np.arange(Y.shape[1])
        curve, elapsed, seen = [], 0.0, 0
        for _ in range(args.amazon_epochs):
            order = np.random.default_rng(seen).permutation(X.shape[0])
            for s in range(0, X.shape[0], step):
                rows = np.sort(order[s : s + step])
                started = time.perf_counter()
                clf.partial_fit(X[rows], Y[rows], classes=classes)
                elapsed += time.perf_counter() - started
                seen += len(rows)
                curve.append((seen, elapsed, clf.score(Xt, Yt)))
        result.update(samples_per_s=seen / elapsed, curve=curve,
                      mean_active_labels=clf.mean_active_labels_)
        result["inference"] = {
            mode: _inference_speed(clf, mode, Xt, args.latency_rows) for mode in ("full", "lsh")
        }
        result["lsh_p1"] = clf.score(Xt, Yt)
    result["peak_rss_gb"] = _peak_rss_gb()
    print("RESULT " + json.dumps(result), flush=True)


def section_amazon(args):
    import json

    print(f"\n== amazon: Amazon-670K-shaped generated problem, {args.amazon_rows} train rows, "
          f"{args.amazon_test_rows} test rows (P@1 with full inference), 2 threads, batch 256, "
          f"negative_sampling={args.amazon_negatives or 'the default'}")
    results = {}
    for model in ("slide", "torch"):
        if model == "torch":
            try:
                import torch  # noqa: F401
            except ImportError:
                print("  PyTorch not installed: peer skipped")
                continue
        cmd = [sys.executable, __file__, "--amazon-worker", model,
               "--amazon-rows", str(args.amazon_rows),
               "--amazon-test-rows", str(args.amazon_test_rows),
               "--amazon-checkpoint", str(args.amazon_checkpoint),
               "--amazon-epochs", str(args.amazon_epochs),
               "--latency-rows", str(args.latency_rows)]
        if args.amazon_negatives:
            cmd += ["--amazon-negatives", args.amazon_negatives]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        results[model] = json.loads(out.split("RESULT ", 1)[1])
    for model, r in results.items():
        name = "SLIDEClassifier" if model == "slide" else "PyTorch CPU full softmax"
        print(f"  {name:<26} {r['samples_per_s']:>9,.0f} samples/s   peak RSS "
              f"{r['peak_rss_gb']:.2f} GB")
        for rows, seconds, p1 in r["curve"]:
            print(f"    after {rows:>7} rows  {seconds:>8.1f} s  P@1 {p1:.4f}")
    if "slide" in results:
        for mode, (rate, p50, p99) in results["slide"]["inference"].items():
            print(f"  predict_topk(X, 5) {mode:<4}: batch {rate:>9,.0f} rows/s, single row "
                  f"p50 {p50:.2f} ms, p99 {p99:.2f} ms")
        print(f"  P@1 with inference='lsh': {results['slide']['lsh_p1']:.4f}")
    if {"slide", "torch"} <= results.keys():
        target_rows, target_s, target = results["torch"]["curve"][-1]
        hit = [c for c in results["slide"]["curve"] if c[2] >= target]
        if hit:
            print(f"  PyTorch's one-epoch P@1 {target:.4f} ({target_s:.0f} s): SLIDEClassifier "
                  f"reaches it after {hit[0][1]:.0f} s, time ratio {hit[0][1] / target_s:.3f} "
                  f"({target_s / hit[0][1]:.1f}x sooner)")
        else:
            best = max(c[2] for c in results["slide"]["curve"])
            print(f"  PyTorch's one-epoch P@1 {target:.4f} ({target_s:.0f} s) not reached: "
                  f"SLIDEClassifier's best {best:.4f}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sections", default="quality,synth,bf16,infer,amazon")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--cache-dir", type=Path,
                        default=Path(tempfile.gettempdir()) / "sksketch-bench")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--torch-epochs", type=int, default=1,
                        help="epochs of the live PyTorch peer (slow: ~50 s each)")
    parser.add_argument("--latency-rows", type=int, default=200)
    parser.add_argument("--amazon-rows", type=int, default=100_000)
    parser.add_argument("--amazon-test-rows", type=int, default=2000)
    parser.add_argument("--amazon-checkpoint", type=int, default=10_000,
                        help="rows between two P@1 evaluations")
    parser.add_argument("--amazon-epochs", type=int, default=3)
    parser.add_argument("--amazon-negatives", default=None,
                        help="SLIDEClassifier's negative_sampling on the Amazon shape "
                             "(default: the estimator's default)")
    parser.add_argument("--amazon-worker", choices=["slide", "torch"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.amazon_worker:
        return _amazon_worker(args)
    sections = set(args.sections.split(","))
    warnings.simplefilter("ignore")
    print(f"sksketch {sksketch.__version__}, active ISA "
          f"{sksketch.show_config('dicts')['simd']['active_isa']}")
    if "quality" in sections:
        section_quality(args)
    if "amazon" in sections:
        section_amazon(args)
    if sections & {"synth", "bf16", "infer"}:
        data = _synth_data(args)
        clf = section_synth(args, data) if sections & {"synth", "infer"} else None
        if "bf16" in sections:
            section_bf16(args, data)
        if "infer" in sections:
            section_infer(args, clf, data)


if __name__ == "__main__":
    main()
