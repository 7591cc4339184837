"""SLIDEClassifier next to the extreme-classification libraries users would otherwise pick.

Every method trains in its own process on the same files (CSR matrices saved with
scipy.sparse.save_npz), writes its top-5 label ids for the test rows and its timings, and
this process scores every method with the same code (sksketch.metrics: P@1/3/5 and PSP@1/3/5
with propensities from the training labels). Reported per dataset and method: training
seconds (after the method's modules are imported), seconds to predict the whole test
set (the median of up to nine calls after a warm-up call on 512 rows), single-row
predict latency (p50, p99), and the peak RSS of the method's process.

Methods (all but SLIDEClassifier are optional; one missing from its interpreter is
reported as not installed and skipped):

slide     SLIDEClassifier(n_jobs=threads, random_state=0), otherwise its defaults
          (--slide-params key=value ... overrides them).
pecos     PECOS XR-Linear as in its README: PIFA label embedding, hierarchical k-means
          cluster chain, XLinearModel.train with its defaults; predict with only_topk=5
          (single rows with threads=1). Rows are scaled to unit L2 norm first, as its
          tf-idf pipeline does.
          libpecos pins numpy<2 and scipy<1.14: install it in a venv of its own and pass
          --pecos-python VENV/bin/python.
napkinxc  napkinXC PLT with its README defaults (seed 0).
omikuji   Omikuji's Parabel-like defaults (Model.default_hyper_param()). Its Python API
          trains from an XC text file (written beforehand, untimed; parsing it is timed)
          and predicts one row at a time.
ovr       OneVsRestClassifier(LogisticRegression(max_iter=1000)); skipped above
          --ovr-max-labels labels. Its peak RSS is that of its largest process.
torch     PyTorch on the CPU: SLIDEClassifier's network with the full softmax: EmbeddingBag
          (sum) -> --torch-hidden (SLIDEClassifier's hidden_layer_size) ReLU -> softmax over all
          labels, started as SLIDEClassifier starts it (but without its label-centroid output
          rows), Adam lr 1e-3, batch 128, as many epochs as SLIDEClassifier's max_iter
          (--torch-python).

Datasets: bibtex, delicious, wordnet (SKSKETCH_DATA_DIR, default ../shared/data), synth
(the 50,000-label problem of ../shared/tools/gen_synth_xc.py with its defaults, written
once under --cache-dir) and amazon (the Amazon-670K shape of bench_slide.py, 670,091
labels; --amazon-rows shrinks its training set). Run only when named: confusable
(20,000 labels in clusters of 10 sharing half their signatures), synth-short and
synth-long (the generator with 10,000 labels, 30,000 features, 40,000 training rows of
10 or 40 non-zeros: data no default was chosen on).

    python benchmarks/bench_xmc.py --datasets bibtex,delicious
    python benchmarks/bench_xmc.py --datasets wordnet --repeats 3 --busy \\
        --pecos-python /path/to/venv-pecos/bin/python --plot xmc.png
    python benchmarks/bench_xmc.py --datasets synth --methods slide,napkinxc \\
        --slide-params max_iter=20 learning_rate=0.002
"""

# Only the standard library, numpy and scipy are imported at module level: the
# worker part of this file also runs under other interpreters (a PECOS venv with
# numpy<2, a torch venv) in which sksketch is not installed.
import argparse
import ast
import importlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import scipy.sparse as sp

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = Path(os.environ.get("SKSKETCH_DATA_DIR", ROOT.parent / "shared" / "data"))
GENERATOR = ROOT.parent / "shared" / "tools" / "gen_synth_xc.py"

TOP_K = 5
# Prediction of the test set: after a warm-up call on its first WARMUP_ROWS
# rows, the median of up to PREDICT_CALLS calls (no more once they took
# PREDICT_BUDGET_S seconds in all): a test set predicted in a few ms is
# otherwise at the mercy of one slow call (of either side).
WARMUP_ROWS = 512
PREDICT_CALLS = 9
PREDICT_BUDGET_S = 5.0
METHODS = ("slide", "pecos", "napkinxc", "omikuji", "ovr", "torch")
METHOD_NAMES = {
    "slide": "SLIDEClassifier",
    "pecos": "PECOS XR-Linear",
    "napkinxc": "napkinXC PLT",
    "omikuji": "Omikuji Parabel",
    "ovr": "OvR LogisticRegression",
    "torch": "PyTorch full softmax",
}
# The module each method needs in its interpreter.
REQUIRES = {
    "slide": "sksketch",
    "pecos": "pecos.xmc.xlinear",
    "napkinxc": "napkinxc",
    "omikuji": "omikuji",
    "ovr": "sklearn",
    "torch": "torch",
}
DATASETS = ("bibtex", "delicious", "wordnet", "synth", "amazon")
# generated, run only when named: 20,000 labels in clusters of 10 sharing half
# their feature signatures (labels confusable with their siblings); and two
# problems of ../shared/tools/gen_synth_xc.py with other arguments than its
# defaults (10,000 labels, 30,000 features, 40,000 training rows), with 10
# and 40 non-zeros a row, which no default was chosen on
EXTRA_DATASETS = ("confusable", "synth-short", "synth-long")
SYNTH_VARIANTS = {
    "synth-short": ["--features", "30000", "--labels", "10000", "--train", "40000",
                    "--test", "8000", "--nnz", "10", "--sig", "20", "--zipf", "1.0",
                    "--seed", "12"],
    "synth-long": ["--features", "30000", "--labels", "10000", "--train", "40000",
                   "--test", "8000", "--nnz", "40", "--sig", "15", "--zipf", "1.1",
                   "--seed", "11"],
}
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                    "BLIS_NUM_THREADS", "NUMEXPR_NUM_THREADS", "RAYON_NUM_THREADS",
                    "VECLIB_MAXIMUM_THREADS")
BUSY_LOOP = "while True:\n    pass\n"


# --------------------------------------------------------------------------- worker
#
# Each method is a function (X, Y, args) -> predictor, trained when it returns.
# A predictor has prepare(X) -> the library's own input for a batch (untimed),
# batch(prepared) -> (n, 5) int array of label ids, best first, -1 where the
# library returned fewer than 5, and rows(X) / one(row) for single-row calls.


def _pad_topk(lists, n):
    out = np.full((n, TOP_K), -1, dtype=np.int64)
    for i, labels in enumerate(lists):
        labels = list(labels)[:TOP_K]
        out[i, : len(labels)] = labels
    return out


def _csr_topk(S):
    """Top-5 column ids per row of a sparse score matrix, best first."""
    S = sp.csr_matrix(S)
    out = np.full((S.shape[0], TOP_K), -1, dtype=np.int64)
    for i in range(S.shape[0]):
        start, end = S.indptr[i], S.indptr[i + 1]
        order = np.argsort(-S.data[start:end], kind="stable")[:TOP_K]
        out[i, : order.size] = S.indices[start:end][order]
    return out


def _dense_topk(scores):
    k = min(TOP_K, scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
    out = np.full((scores.shape[0], TOP_K), -1, dtype=np.int64)
    out[:, :k] = np.take_along_axis(part, order, axis=1)
    return out


def _version(distribution):
    from importlib.metadata import version

    return f"{distribution} {version(distribution)}"


class _CSRPredictor:
    """Predictor of a library that takes CSR rows for batches and single rows."""

    def __init__(self, batch, version):
        self.batch = batch
        self.one = batch
        self.version = version

    def prepare(self, X):
        return X

    def rows(self, X):
        return [X[i] for i in range(X.shape[0])]


def _parse_params(pairs):
    params = {}
    for pair in pairs or ():
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"--slide-params expects key=value, got {pair!r}")
        try:
            params[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            params[key] = value
    return params


def _slide_model(args):
    from sksketch import SLIDEClassifier

    return SLIDEClassifier(**{"n_jobs": args.threads, "random_state": 0,
                              **_parse_params(args.slide_params)})


def _train_slide(X, Y, args):
    import sksketch

    clf = _slide_model(args).fit(X, Y)
    return _CSRPredictor(lambda Xb: clf.predict_topk(Xb, k=TOP_K)[0].astype(np.int64),
                         f"sksketch {sksketch.__version__}")


def _l2_rows(X):
    X = sp.csr_matrix(X, dtype=np.float32)
    X.sort_indices()
    norms = np.sqrt(np.asarray(X.multiply(X).sum(axis=1)).ravel())
    norms[norms == 0] = 1.0
    X = sp.csr_matrix(sp.diags(1.0 / norms).dot(X), dtype=np.float32)
    X.sort_indices()
    return X


def _train_pecos(X, Y, args):
    from pecos.xmc import Indexer, LabelEmbeddingFactory
    from pecos.xmc.xlinear.model import XLinearModel

    # PECOS's pipeline feeds XR-Linear tf-idf rows of unit norm (napkinXC and
    # Omikuji normalise rows themselves); on raw binary rows it loses about 10
    # points of P@1 on Bibtex.
    X = _l2_rows(X)
    Y = sp.csc_matrix(Y, dtype=np.float32)
    label_feat = LabelEmbeddingFactory.create(Y, X, method="pifa", threads=args.threads)
    cluster_chain = Indexer.gen(label_feat, threads=args.threads)
    xlm = XLinearModel.train(X, Y, C=cluster_chain, threads=args.threads)

    def predict(Xb, threads):
        return _csr_topk(xlm.predict(_l2_rows(Xb), only_topk=TOP_K, threads=threads))

    predictor = _CSRPredictor(lambda Xb: predict(Xb, args.threads),
                              _version("libpecos"))
    # One row on a team of OpenMP threads waits for them (tens of ms on a busy
    # machine); a server predicting single rows would pass threads=1.
    predictor.one = lambda row: predict(row, 1)
    return predictor


def _train_napkinxc(X, Y, args):
    from napkinxc.models import PLT

    model = PLT(str(Path(args.out).with_suffix(".napkinxc")), seed=0, threads=args.threads)
    # napkinXC refuses integer label matrices
    model.fit(sp.csr_matrix(X), sp.csr_matrix(Y, dtype=np.float32))

    def batch(Xb):
        return _pad_topk(model.predict(sp.csr_matrix(Xb), top_k=TOP_K), Xb.shape[0])

    return _CSRPredictor(batch, _version("napkinxc"))


class _OmikujiPredictor:
    def __init__(self, model, version):
        self.model = model
        self.version = version

    def rows(self, X):
        X = sp.csr_matrix(X)
        return [list(zip(X.indices[X.indptr[i] : X.indptr[i + 1]].tolist(),
                         X.data[X.indptr[i] : X.indptr[i + 1]].tolist(), strict=True))
                for i in range(X.shape[0])]

    prepare = rows

    def one(self, pairs):
        return [label for label, _ in self.model.predict(pairs, top_k=TOP_K)]

    def batch(self, rows):
        return _pad_topk([self.one(pairs) for pairs in rows], len(rows))


def _train_omikuji(X, Y, args):
    import omikuji

    model = omikuji.Model.train_on_data(str(Path(args.work) / "train.txt"),
                                        omikuji.Model.default_hyper_param(),
                                        n_threads=args.threads)
    model.init_prediction_thread_pool(args.threads)
    return _OmikujiPredictor(model, f"omikuji {omikuji.__version__}")


def _train_ovr(X, Y, args):
    import sklearn
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier

    n_labels = Y.shape[1]
    # Labels with no training row cannot be fitted; they get no score.
    keep = np.flatnonzero(np.asarray(Y.sum(axis=0)).ravel() > 0)
    model = OneVsRestClassifier(LogisticRegression(max_iter=1000), n_jobs=args.threads)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(X, sp.csr_matrix(Y)[:, keep].toarray())

    def batch(Xb):
        proba = np.full((Xb.shape[0], n_labels), -1.0)
        proba[:, keep] = model.predict_proba(Xb)
        return _dense_topk(proba)

    return _CSRPredictor(batch, f"scikit-learn {sklearn.__version__}")


def _train_torch(X, Y, args):
    import torch

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    X, Y = sp.csr_matrix(X), sp.csr_matrix(Y)
    n_features, n_labels = X.shape[1], Y.shape[1]
    H = args.torch_hidden
    embed = torch.nn.EmbeddingBag(n_features, H, mode="sum")
    out = torch.nn.Linear(H, n_labels)
    # SLIDEClassifier's start (not its label-centroid output rows): hidden
    # pre-activations of standard deviation 0.3 whatever the rows' norms
    # (EmbeddingBag's N(0, 1) start saturates TF-IDF rows of many features),
    # output rows U(-1/sqrt(H), 1/sqrt(H)) and zero biases.
    mean_sq_norm = float(X.multiply(X).sum()) / max(X.shape[0], 1)
    with torch.no_grad():
        embed.weight.uniform_(-1, 1).mul_(0.3 * (3.0 / max(mean_sq_norm, 1e-12)) ** 0.5)
        out.weight.uniform_(-1, 1).mul_(H ** -0.5)
        out.bias.zero_()
    opt = torch.optim.Adam(list(embed.parameters()) + list(out.parameters()), lr=1e-3)

    def forward(Xb):
        idx = torch.from_numpy(Xb.indices.astype(np.int64))
        offsets = torch.from_numpy(Xb.indptr[:-1].astype(np.int64))
        w = torch.from_numpy(Xb.data.astype(np.float32))
        return out(torch.relu(embed(idx, offsets, per_sample_weights=w)))

    # Rows without a label carry no gradient, as in SLIDEClassifier.
    labelled = np.flatnonzero(np.diff(Y.indptr) > 0)
    rng = np.random.default_rng(0)
    for _ in range(args.epochs):
        order = labelled[rng.permutation(labelled.size)]
        for s in range(0, order.size, 128):
            rows = order[s : s + 128]
            Yb = Y[rows]
            counts = np.diff(Yb.indptr)
            r = np.repeat(np.arange(len(rows)), counts)
            # each row's labels share its probability mass (the softmax target)
            target = torch.zeros(len(rows), n_labels)
            target[r, Yb.indices] = torch.from_numpy(1.0 / counts[r]).float()
            loss = -(target * torch.log_softmax(forward(X[rows]), dim=1)).sum(1).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()

    def batch(Xb):
        Xb = sp.csr_matrix(Xb)
        parts = []
        with torch.no_grad():
            for s in range(0, Xb.shape[0], 512):
                logits = forward(Xb[s : s + 512])
                parts.append(logits.topk(min(TOP_K, n_labels), dim=1).indices.numpy())
        top = np.concatenate(parts).astype(np.int64)
        return np.pad(top, ((0, 0), (0, TOP_K - top.shape[1])), constant_values=-1)

    return _CSRPredictor(batch, f"torch {torch.__version__}")


# Each method's modules, imported before its training is timed: loading a
# library (scikit-learn alone takes about 0.7 s, libpecos pulls torch) is not
# training.
MODULES = {
    "slide": ["sksketch"],
    "pecos": ["pecos.xmc", "pecos.xmc.xlinear.model"],
    "napkinxc": ["napkinxc.models"],
    "omikuji": ["omikuji"],
    "ovr": ["sklearn.linear_model", "sklearn.multiclass"],
    "torch": ["torch"],
}

TRAINERS = {
    "slide": _train_slide,
    "pecos": _train_pecos,
    "napkinxc": _train_napkinxc,
    "omikuji": _train_omikuji,
    "ovr": _train_ovr,
    "torch": _train_torch,
}


def _peak_rss_gb():
    """Peak RSS of this process, or of the largest process it started and reaped.

    ru_maxrss of a process started by fork and exec keeps the RSS its parent had
    at the fork, which would credit every method with the benchmark's own size;
    VmHWM counts this process's own memory since its exec.
    """
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        status = Path("/proc/self/status").read_text()
        own = next(int(line.split()[1]) for line in status.splitlines()
                   if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        pass
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) / 1e6  # both in kB


def _load_work(work):
    work = Path(work)
    return (sp.load_npz(work / "X_train.npz"), sp.load_npz(work / "Y_train.npz"),
            sp.load_npz(work / "X_test.npz"))


def _run_worker(args):
    """Train one method, predict the test set, time single rows; write the results."""
    warnings.simplefilter("ignore")
    X, Y, Xt = _load_work(args.work)
    for module in MODULES[args.worker]:
        importlib.import_module(module)
    started = time.perf_counter()
    predictor = TRAINERS[args.worker](X, Y, args)
    train_s = time.perf_counter() - started

    prepared = predictor.prepare(Xt)
    # lazily built state (a method's first call, state built only for a batch
    # of many rows) is not timed
    predictor.batch(predictor.prepare(Xt[:WARMUP_ROWS]))
    calls = []
    while len(calls) < PREDICT_CALLS and sum(calls) < PREDICT_BUDGET_S:
        started = time.perf_counter()
        topk = predictor.batch(prepared)
        calls.append(time.perf_counter() - started)
    predict_s = float(np.median(calls))

    latencies = []
    for row in predictor.rows(Xt[: args.latency_rows]):
        started = time.perf_counter()
        predictor.one(row)
        latencies.append(time.perf_counter() - started)
    if args.worker == "ovr":
        # reap the worker processes, so that their peak RSS is counted
        from joblib.externals.loky import get_reusable_executor

        get_reusable_executor().shutdown(wait=True)
    np.save(Path(args.out).with_suffix(".npy"), np.asarray(topk, dtype=np.int64))
    p50, p99 = np.percentile(latencies, [50, 99]) * 1e3 if latencies else (np.nan, np.nan)
    result = {"train_s": train_s, "predict_s": predict_s, "latency_p50_ms": float(p50),
              "latency_p99_ms": float(p99), "peak_rss_gb": _peak_rss_gb(),
              "version": predictor.version}
    Path(args.out).write_text(json.dumps(result))


def _run_curve_worker(args):
    """SLIDEClassifier's fit with each given max_iter: top-5 ids and training seconds.

    Each point is a fit of its own (as a user would run it: rows held out,
    the sparse head's loss and weight chosen on them), not one model
    checkpointed epoch by epoch with partial_fit, which chooses neither.
    """
    warnings.simplefilter("ignore")
    X, Y, Xt = _load_work(args.work)
    checkpoints = sorted(int(e) for e in args.curve_epochs.split(","))
    seconds, tops = [], []
    for epochs in checkpoints:
        clf = _slide_model(args).set_params(max_iter=epochs)
        started = time.perf_counter()
        clf.fit(X, Y)
        seconds.append(time.perf_counter() - started)
        tops.append(clf.predict_topk(Xt, k=TOP_K)[0])
    np.savez(Path(args.out).with_suffix(".npz"), epochs=np.array(checkpoints),
             seconds=np.array(seconds), topk=np.stack(tops).astype(np.int64))


# --------------------------------------------------------------------------- parent


def _interpreter(args, method):
    chosen = {"pecos": args.pecos_python, "torch": args.torch_python,
              "napkinxc": args.peer_python, "omikuji": args.peer_python}.get(method)
    return chosen or sys.executable


def _installed(python, module):
    done = subprocess.run([python, "-c", f"import {module}"], capture_output=True, text=True)
    return done.returncode == 0


def _child_env(threads):
    env = dict(os.environ)
    for name in THREAD_VARIABLES:
        env[name] = str(threads)
    return env


def _run_child(cmd, env, log_path, timeout, busy):
    """Run cmd, beside a spinning process with busy; return its exit code."""
    spinner = subprocess.Popen([sys.executable, "-c", BUSY_LOOP]) if busy else None
    try:
        with open(log_path, "w") as log:
            child = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
            try:
                return child.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
                return "timeout"
    finally:
        if spinner is not None:
            spinner.kill()
            spinner.wait()


def _log_tail(path, lines=8):
    text = Path(path).read_text(errors="replace").strip().splitlines()
    return "\n".join("      " + line for line in text[-lines:])


def _synth_data(args, name="synth"):
    from sksketch.datasets import load_xc

    extra = SYNTH_VARIANTS.get(name, [])
    out = args.cache_dir / ("synth_xc_defaults" if not extra else name.replace("-", "_"))
    if not (out / "test.txt").exists():
        if not GENERATOR.exists():
            return f"generator {GENERATOR} not found"
        print(f"  generating {name} into {out} ...", flush=True)
        subprocess.run([sys.executable, str(GENERATOR), "--out", str(out), *extra], check=True)
    return (*load_xc(out / "train.txt"), *load_xc(out / "test.txt"))


def _amazon_data(args):
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_slide import _amazon_data as build

    return build(argparse.Namespace(amazon_rows=args.amazon_rows,
                                    amazon_test_rows=args.amazon_test_rows))


def confusable_data(n_train=40_000, n_test=5_000):
    """The confusable problem: 20,000 labels in clusters of 10 sharing half their signatures."""
    from sksketch.datasets import make_extreme_classification

    X, Y = make_extreme_classification(
        n_train + n_test, 50_000, 20_000, label_cluster_size=10,
        cluster_shared_fraction=0.5, random_state=0)
    return X[:n_train], Y[:n_train], X[n_train:], Y[n_train:]


def _load_dataset(name, args):
    """(X, Y, X_test, Y_test), or a string saying why the dataset is skipped."""
    from sksketch.datasets import load_xc

    if name == "confusable":
        return confusable_data()
    if name == "synth" or name in SYNTH_VARIANTS:
        return _synth_data(args, name)
    if name == "amazon":
        return _amazon_data(args)
    folder = args.data_dir / name
    if not (folder / "train.txt").exists() or not (folder / "test.txt").exists():
        return f"{folder}/train.txt or test.txt not found"
    return (*load_xc(folder / "train.txt"), *load_xc(folder / "test.txt"))


def _write_work(work, X, Y, Xt, methods):
    from sksketch.datasets import dump_xc

    sp.save_npz(work / "X_train.npz", sp.csr_matrix(X), compressed=False)
    sp.save_npz(work / "Y_train.npz", sp.csr_matrix(Y), compressed=False)
    sp.save_npz(work / "X_test.npz", sp.csr_matrix(Xt), compressed=False)
    if "omikuji" in methods:
        dump_xc(X, Y, work / "train.txt")


def _scores(Y_test, topk, propensities):
    from sksketch.metrics import precision_at_k, psp_at_k

    n, n_labels = Y_test.shape
    valid = topk >= 0
    # stored values k, k-1, ..., 1 rank the ids in the order the method gave them
    ranks = np.broadcast_to(np.arange(TOP_K, 0, -1, dtype=np.float64), topk.shape)
    ranked = sp.csr_matrix(
        (ranks[valid], (np.repeat(np.arange(n), TOP_K).reshape(n, TOP_K)[valid], topk[valid])),
        shape=(n, n_labels))
    result = {f"P@{k}": precision_at_k(Y_test, ranked, k=k) for k in (1, 3, 5)}
    result.update({f"PSP@{k}": psp_at_k(Y_test, ranked, k=k, propensities=propensities)
                   for k in (1, 3, 5)})
    return result


def _worker_cmd(args, method, work, out, worker_flag="--worker"):
    cmd = [_interpreter(args, method), str(Path(__file__).resolve()), worker_flag, method,
           "--work", str(work), "--out", str(out), "--threads", str(args.threads),
           "--latency-rows", str(args.latency_rows), "--epochs", str(args.epochs),
           "--curve-epochs", args.curve_epochs, "--torch-hidden", str(args.torch_hidden)]
    if args.slide_params:
        cmd += ["--slide-params", *args.slide_params]
    return cmd


def _run_method(args, method, work, tag, busy):
    out = work / f"{method}_{tag}.json"
    cmd = _worker_cmd(args, method, work, out)
    code = _run_child(cmd, _child_env(args.threads), out.with_suffix(".log"), args.timeout,
                      busy)
    if code != 0:
        return f"failed ({code}):\n{_log_tail(out.with_suffix('.log'))}"
    result = json.loads(out.read_text())
    result["topk"] = np.load(out.with_suffix(".npy"))
    return result


def _median(values):
    values = [v for v in values if v == v]
    return statistics.median(values) if values else float("nan")


def _fmt(value, spec):
    return format(value, spec) if value == value else format("-", ">" + spec.split(".")[0])


def _print_table(name, shape, rows, busy):
    n, n_features, n_labels, n_test = shape
    if not rows:
        print(f"\n== {name}: no method ran")
        return
    print(f"\n== {name}: {n} train rows, {n_test} test rows, {n_features} features, "
          f"{n_labels} labels (load average now {os.getloadavg()[0]:.2f})")
    header = (f"{'method':<24} {'P@1':>6} {'P@3':>6} {'P@5':>6} {'PSP@1':>6} {'PSP@3':>6} "
              f"{'PSP@5':>6} {'train s':>9}")
    if busy:
        header += f" {'busy s':>9} {'slowdown':>8}"
    header += f" {'pred s':>8} {'p50 ms':>8} {'p99 ms':>8} {'RSS GB':>7}"
    print(header)
    for method, r in rows.items():
        line = (f"{METHOD_NAMES[method]:<24} "
                + " ".join(f"{r[m]:>6.4f}" for m in ("P@1", "P@3", "P@5",
                                                     "PSP@1", "PSP@3", "PSP@5"))
                + f" {r['train_s']:>9.2f}")
        if busy:
            line += (f" {_fmt(r['busy_train_s'], '9.2f')} "
                     f"{_fmt(r['busy_train_s'] / r['train_s'], '8.2f')}")
        line += (f" {r['predict_s']:>8.2f} {r['latency_p50_ms']:>8.3f} "
                 f"{r['latency_p99_ms']:>8.3f} {r['peak_rss_gb']:>7.2f}")
        print(line)


def _print_ratios(rows):
    if "slide" not in rows or len(rows) < 2:
        return
    ours = rows["slide"]
    peers = {m: r for m, r in rows.items() if m != "slide"}
    best = max(peers, key=lambda m: peers[m]["P@1"])
    print("SLIDEClassifier against each peer (* best peer by P@1): P@1 difference in points, "
          "time ratios ours/theirs")
    print(f"  {'peer':<26} {'dP@1':>7} {'dPSP@1':>7} {'train':>8} {'predict':>8} "
          f"{'p50':>8} {'RSS':>7}")
    for method, r in peers.items():
        mark = "*" if method == best else " "
        print(f"{mark} {METHOD_NAMES[method]:<26} {100 * (ours['P@1'] - r['P@1']):>+7.2f} "
              f"{100 * (ours['PSP@1'] - r['PSP@1']):>+7.2f} "
              f"{ours['train_s'] / r['train_s']:>8.3f} "
              f"{ours['predict_s'] / r['predict_s']:>8.3f} "
              f"{ours['latency_p50_ms'] / r['latency_p50_ms']:>8.3f} "
              f"{ours['peak_rss_gb'] / r['peak_rss_gb']:>7.3f}")


def _run_curve(args, work, Y_test, propensities):
    out = work / "slide_curve.json"
    cmd = _worker_cmd(args, "slide", work, out, worker_flag="--curve-worker")
    code = _run_child(cmd, _child_env(args.threads), out.with_suffix(".log"), args.timeout,
                      busy=False)
    if code != 0:
        print(f"  SLIDEClassifier curve failed ({code}):\n{_log_tail(out.with_suffix('.log'))}")
        return None
    saved = np.load(out.with_suffix(".npz"))
    p1 = [_scores(Y_test, top, propensities)["P@1"] for top in saved["topk"]]
    print("  SLIDEClassifier P@1 by max_iter (a fit each): "
          + ", ".join(f"{e}: {p:.4f} ({s:.1f} s)"
                      for e, p, s in zip(saved["epochs"], p1, saved["seconds"], strict=True)))
    return list(zip(saved["seconds"].tolist(), p1, saved["epochs"].tolist(), strict=True))


def _plot(path, curves, points):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import matplotlib.ticker
    except ImportError:
        print(f"--plot: matplotlib is not installed, {path} not written")
        return
    names = [n for n in points if points[n] or curves.get(n)]
    if not names:
        return
    fig, axes = plt.subplots(1, len(names), figsize=(5 * len(names), 4), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        curve = curves.get(name)
        if curve:
            seconds, p1, epochs = zip(*curve, strict=True)
            ax.plot(seconds, p1, "o-", label="SLIDEClassifier (max_iter)")
            for s, p, e in curve:
                ax.annotate(str(e), (s, p), textcoords="offset points", xytext=(3, -10),
                            fontsize=7)
        for method, (seconds, p1) in points[name].items():
            label = "SLIDEClassifier (fit)" if method == "slide" else METHOD_NAMES[method]
            ax.plot([seconds], [p1], "s", label=label)
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel("training seconds")
        ax.set_ylabel("P@1")
        ax.set_title(name)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"\nplot written to {path}")


def _skip_reason(method, n_labels, args, available):
    if method not in available:
        return available.get(f"why-{method}", "not installed")
    if method == "ovr" and n_labels > args.ovr_max_labels:
        return (f"{n_labels} labels > --ovr-max-labels {args.ovr_max_labels} "
                "(one logistic regression per label)")
    if method == "torch" and n_labels > args.torch_max_labels:
        return (f"{n_labels} labels > --torch-max-labels {args.torch_max_labels} "
                "(full softmax over every label)")
    return None


def _check_methods(args, methods):
    available = {}
    for method in methods:
        python = _interpreter(args, method)
        if _installed(python, REQUIRES[method]):
            available[method] = python
        else:
            available[f"why-{method}"] = f"{REQUIRES[method]} not installed in {python}"
    return available


def _code_state(package_dir):
    """Commit of the sksketch checkout in use, and whether its files differ from it."""
    def git(*cmd):
        done = subprocess.run(["git", "-C", str(package_dir), *cmd], capture_output=True,
                              text=True)
        return done.stdout.strip() if done.returncode == 0 else ""

    commit = git("rev-parse", "--short", "HEAD")
    if not commit:
        return "not a git checkout"
    dirty = git("status", "--porcelain", "--untracked-files=no", "--", ".")
    return commit + (" with uncommitted changes" if dirty else "")


def run(args):
    import sksketch
    from sksketch import SLIDEClassifier
    from sksketch.metrics import label_propensity

    methods = sorted({m for m in args.methods.split(",") if m},
                     key=lambda m: METHODS.index(m) if m in METHODS else -1)
    datasets = [d for d in args.datasets.split(",") if d]
    for m in methods:
        if m not in METHODS:
            raise SystemExit(f"unknown method {m!r}; choose among {', '.join(METHODS)}")
    for d in datasets:
        if d not in DATASETS + EXTRA_DATASETS:
            raise SystemExit(f"unknown dataset {d!r}; choose among "
                             f"{', '.join(DATASETS + EXTRA_DATASETS)}")
    slide_params = _parse_params(args.slide_params)
    args.epochs = slide_params.get("max_iter", SLIDEClassifier().max_iter)
    print(f"sksketch {sksketch.__version__}, active ISA "
          f"{sksketch.show_config('dicts')['simd']['active_isa']}, {args.threads} threads per "
          f"method, {args.repeats} repeat(s), load average at start "
          f"{os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    package_dir = Path(sksketch.__file__).resolve().parent
    print(f"sksketch from {package_dir} ({_code_state(package_dir)})")
    effective = _slide_model(args).get_params()
    if args.torch_hidden is None:
        args.torch_hidden = effective["hidden_layer_size"]
    print(f"SLIDEClassifier: defaults with n_jobs={args.threads}, random_state=0"
          + (f", {slide_params}" if slide_params else "")
          + f" (hidden_layer_size={effective['hidden_layer_size']}, "
          f"max_iter={effective['max_iter']}); PyTorch: {args.torch_hidden} hidden units, "
          f"{args.epochs} epochs")
    available = _check_methods(args, methods)
    versions, curves, points = {}, {}, {}
    args.cache_dir.mkdir(parents=True, exist_ok=True)
    for name in datasets:
        print(f"\n-- {name}", flush=True)
        data = _load_dataset(name, args)
        if isinstance(data, str):
            print(f"  skipped: {data}")
            continue
        X, Y, Xt, Yt = data
        shape = (X.shape[0], X.shape[1], Y.shape[1], Xt.shape[0])
        propensities = label_propensity(Y)
        active = []
        for method in methods:
            reason = _skip_reason(method, Y.shape[1], args, available)
            if reason:
                print(f"  {METHOD_NAMES[method]}: skipped, {reason}")
            else:
                active.append(method)
        with tempfile.TemporaryDirectory(prefix=f"bench_xmc_{name}_") as tmp:
            work = Path(tmp)
            _write_work(work, X, Y, Xt, active)
            del X, Y, Xt
            runs = {m: [] for m in active}
            busy_runs = {m: [] for m in active}
            failed = set()
            modes = [False, True] if args.busy else [False]
            # runs alternate across methods, so that slow drifts of the machine hit all
            for repeat in range(args.repeats):
                for busy in modes:
                    for method in active:
                        if method in failed:
                            continue
                        tag = f"{repeat}{'_busy' if busy else ''}"
                        print(f"  {METHOD_NAMES[method]} run {repeat + 1}"
                              f"{' beside a busy process' if busy else ''} ...", flush=True)
                        result = _run_method(args, method, work, tag, busy)
                        if isinstance(result, str):
                            print(f"  {METHOD_NAMES[method]}: {result}")
                            failed.add(method)
                            continue
                        versions[method] = result["version"]
                        (busy_runs if busy else runs)[method].append(result)
            rows = {}
            for method in active:
                if method in failed or not runs[method]:
                    continue
                scored = [{**r, **_scores(Yt, r["topk"], propensities)} for r in runs[method]]
                row = {key: _median([s[key] for s in scored])
                       for key in scored[0] if key not in ("topk", "version")}
                row["busy_train_s"] = _median([r["train_s"] for r in busy_runs[method]])
                rows[method] = row
            _print_table(name, shape, rows, args.busy)
            _print_ratios(rows)
            if args.plot and "slide" in active:
                curves[name] = _run_curve(args, work, Yt, propensities)
            points[name] = {m: (r["train_s"], r["P@1"]) for m, r in rows.items()}
        sys.stdout.flush()
    if versions:
        print("\nversions: " + ", ".join(f"{METHOD_NAMES[m]}: {v}" for m, v in versions.items()))
    if args.plot:
        _plot(args.plot, curves, points)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default=",".join(DATASETS),
                        help=f"comma-separated, among {', '.join(DATASETS + EXTRA_DATASETS)}")
    parser.add_argument("--methods", default=",".join(METHODS),
                        help=f"comma-separated, among {', '.join(METHODS)}")
    parser.add_argument("--slide-params", nargs="+", metavar="KEY=VALUE",
                        help="SLIDEClassifier parameters, e.g. max_iter=20 learning_rate=0.002")
    parser.add_argument("--threads", type=int, default=2,
                        help="threads of every method (and OMP_NUM_THREADS etc. of its process)")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--busy", action="store_true",
                        help="also train each method beside a process spinning on one core")
    parser.add_argument("--latency-rows", type=int, default=200,
                        help="test rows predicted one at a time for the latency percentiles")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--cache-dir", type=Path,
                        default=Path.home() / ".cache" / "sksketch-bench",
                        help="where the generated 50,000-label problem is written once")
    parser.add_argument("--amazon-rows", type=int, default=100_000)
    parser.add_argument("--amazon-test-rows", type=int, default=2000)
    parser.add_argument("--peer-python", help="interpreter with napkinxc and omikuji "
                        "(default: this one)")
    parser.add_argument("--pecos-python", help="interpreter with libpecos (default: this one)")
    parser.add_argument("--torch-python", help="interpreter with torch (default: this one)")
    parser.add_argument("--ovr-max-labels", type=int, default=2000)
    parser.add_argument("--torch-max-labels", type=int, default=100_000)
    parser.add_argument("--torch-hidden", type=int,
                        help="hidden units of the PyTorch network (default: SLIDEClassifier's)")
    parser.add_argument("--timeout", type=float, default=4 * 3600,
                        help="seconds after which a method's process is killed")
    parser.add_argument("--plot", type=Path, metavar="FILE.png",
                        help="SLIDEClassifier's P@1 against training time, peers as points")
    parser.add_argument("--curve-epochs", default="1,2,5,10",
                        help="max_iter of the fits --plot measures SLIDEClassifier with")
    parser.add_argument("--worker", choices=METHODS, help=argparse.SUPPRESS)
    parser.add_argument("--curve-worker", choices=["slide"], help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--epochs", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return _run_worker(args)
    if args.curve_worker:
        return _run_curve_worker(args)
    return run(args)


if __name__ == "__main__":
    main()
