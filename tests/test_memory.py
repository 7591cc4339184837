"""Memory: sizing of SLIDE models, no dense n_samples x n_labels arrays, no leaks."""

import gc
import json
import os
import subprocess
import sys
import textwrap
import tracemalloc
import warnings

import numpy as np
import pytest
from sklearn.linear_model import SGDClassifier

from sksketch import ImportanceSampledClassifier, SLIDEClassifier, ZeroShotSoftLabelClassifier
from sksketch._slide import _estimator as slide_module
from sksketch._slide import _retrieval
from sksketch.datasets import make_extreme_classification

MB = 2**20


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=Warning)
        yield


@pytest.fixture(scope="module")
def xc():
    return make_extreme_classification(
        n_samples=400, n_features=1500, n_labels=3000, random_state=0
    )


def _run_child(code, timeout=900):
    """Run `code` in a fresh interpreter; returns the JSON it prints last."""
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True, text=True, timeout=timeout, env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


# -------------------------------------------------------------------- sizing


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"precision": "bfloat16"},
        {"inference": "lsh"},
        {"hash_family": "simhash", "inference": "lsh", "precision": "bfloat16"},
        {"negative_sampling": "lsh-label", "sampling_correction": "none"},
        {"negative_sampling": "uniform"},
        {"negative_sampling": "unigram", "inference": "lsh"},
        {"negative_sampling": "full"},
        {"min_active_labels": 5000},  # the budget covers every label: no LSH
        {"n_jobs": 2, "batch_size": 50, "max_active_labels": 0.2},
    ],
    ids=lambda p: ",".join(f"{k}={v}" for k, v in p.items()) or "defaults",
)
@pytest.mark.parametrize("target", ["multilabel", "multiclass"])
def test_estimate_matches_measured_memory(xc, params, target):
    X, Y = xc
    y = Y if target == "multilabel" else np.asarray(Y.argmax(axis=1)).ravel()
    # inference="lsh" builds its index at its first prediction
    kw = dict(hidden_layer_size=32, n_tables=8, rehash_interval=3, max_iter=1, n_jobs=1,
              random_state=0, sparse_head=False)  # its estimate is a bound: see below
    kw.update(params)
    clf = SLIDEClassifier(**kw)
    n_labels = Y.shape[1] if target == "multilabel" else len(np.unique(y))
    most_labels = int(Y.sum(axis=1).max()) if target == "multilabel" else 1
    estimate = clf.estimate_memory(X.shape[1], n_labels, max_labels_per_sample=most_labels)
    clf.fit(X, y)
    clf.predict_topk(X[:20], k=3)  # inference="lsh" builds its index
    usage = clf.memory_usage()
    assert usage.keys() == estimate.keys()
    assert usage["model"] == sum(
        usage[k] for k in ("weights", "optimizer", "bfloat16_weights", "hash_tables",
                           "sparse_head", "sampler", "other")
    )
    assert usage["total"] == usage["model"] + usage["training_buffers"]
    H, F, L = 32, X.shape[1], n_labels
    assert usage["weights"] == estimate["weights"] == 4 * (F * H + L * H + H + L)
    for part in ("optimizer", "bfloat16_weights", "training_buffers"):
        assert usage[part] == estimate[part], part
    # the estimate counts the inference index with full buckets: a bucket
    # over its capacity keeps fewer ids
    dropped = estimate["hash_tables"] - usage["hash_tables"]
    assert dropped == (_retrieval.index_nbytes(L, H) - _retrieval.cached_index(clf).nbytes
                       if clf.inference == "lsh" else 0)
    # small state is left out of the estimate
    for part in ("other", "model", "total"):
        assert abs(usage[part] + (dropped if part != "other" else 0) - estimate[part]) <= (
            0.02 * usage[part] + 1024), part


@pytest.mark.parametrize("labels_per_feature", [1, 7, 256, 10_000])
def test_sparse_head_memory_is_its_pairs_and_within_the_estimate(xc, labels_per_feature):
    X, Y = xc
    clf = SLIDEClassifier(hidden_layer_size=16, max_iter=1, n_jobs=1, random_state=0,
                          labels_per_feature=labels_per_feature)
    estimate = clf.estimate_memory(X.shape[1], Y.shape[1],
                                   max_labels_per_sample=int(Y.sum(axis=1).max()))
    usage = clf.fit(X, Y).memory_usage()
    head = clf.sparse_head_
    assert usage["sparse_head"] == 8 * (X.shape[1] + 1) + 16 * head.n_pairs
    assert head.n_pairs <= X.shape[1] * min(labels_per_feature, Y.shape[1])
    assert usage["sparse_head"] <= estimate["sparse_head"]
    assert usage["training_buffers"] <= estimate["training_buffers"]
    for part in ("weights", "optimizer", "hash_tables"):
        assert usage[part] == estimate[part], part
    without = SLIDEClassifier(sparse_head=False).estimate_memory(X.shape[1], Y.shape[1])
    assert without["sparse_head"] == 0


def test_memory_usage_accounts_for_everything_fit_keeps(xc):
    X, Y = xc
    X = X.toarray()  # converted to CSR inside fit: a copy the model must not keep
    clf = SLIDEClassifier(hidden_layer_size=64, n_tables=8, max_iter=2, n_jobs=1,
                          random_state=0)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        clf.fit(X, Y)
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    model = clf.memory_usage()["model"]
    # everything but Python objects' small overheads is in memory_usage
    assert model <= held <= 1.02 * model + 256 * 1024


def test_unused_hash_tables_stay_small(xc):
    X, Y = xc
    y = np.asarray(Y.argmax(axis=1)).ravel() % 20  # 20 classes: the exact softmax
    clf = SLIDEClassifier(max_iter=1, n_jobs=1, random_state=0).fit(X, y)
    assert clf.lsh_tables_.n_buckets == 2
    assert clf.memory_usage()["hash_tables"] < 64 * 1024
    # with the default n_buckets_log2=18, 50 tables would hold 52 MB of
    # offsets; inference="lsh" has an index of its own
    expected = SLIDEClassifier(max_iter=1, inference="lsh", n_jobs=1, random_state=0).fit(X, y)
    assert expected.lsh_tables_.n_buckets == 2
    clf.set_params(inference="lsh")
    np.testing.assert_array_equal(clf.predict_topk(X, k=3)[0], expected.predict_topk(X, k=3)[0])
    assert clf.lsh_tables_.n_buckets == 2
    assert _retrieval.cached_index(clf) is not None


@pytest.mark.parametrize("name", ["slide", "zeroshot", "importance"])
@pytest.mark.parametrize("sampler", [None, "nw-sketch"])
def test_fitted_models_do_not_keep_the_training_data(name, sampler):
    rng = np.random.RandomState(0)
    X = rng.rand(4000, 500)  # 16 MB of float64
    y = rng.randint(0, 5, X.shape[0])
    if name == "slide":
        clf = SLIDEClassifier(hidden_layer_size=8, max_iter=1, sampler=sampler, n_jobs=1)
    elif name == "zeroshot":
        clf = ZeroShotSoftLabelClassifier(hidden_layer_sizes=(8,), max_iter=1, sampler=sampler,
                                          n_jobs=1)
    else:
        # hash_labels=True caches the label-joined rows for later partial_fit calls
        clf = ImportanceSampledClassifier(SGDClassifier(loss="log_loss"), sampler=sampler,
                                          max_iter=1, hash_labels=False)
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        clf.fit(X, y).predict(X[:10])
        del X
        held = tracemalloc.get_traced_memory()[0] - base
        gc.disable()
        try:
            del clf  # no reference cycle: freed at once
            freed = tracemalloc.get_traced_memory()[0] - base
        finally:
            gc.enable()
    finally:
        tracemalloc.stop()
    # the training matrix, or its float32 or CSR copy, would be 8 to 24 MB
    # (what stays: the model, and the NW sketch's row hashes, 4000 x 8 bytes)
    assert held < 2 * MB
    assert freed < 256 * 1024


# ----------------------------------------------------- dense outputs by request


def test_dense_outputs_warn_above_the_threshold(xc, monkeypatch):
    X, Y = xc
    clf = SLIDEClassifier(hidden_layer_size=16, max_iter=1, n_jobs=1, random_state=0).fit(X, Y)
    n_bytes = X.shape[0] * Y.shape[1] * 4
    monkeypatch.setattr(slide_module, "_DENSE_OUTPUT_WARNING_BYTES", n_bytes + 1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        clf.decision_function(X)
        clf.predict_topk(X)
        clf.predict(X)
        with pytest.warns(UserWarning, match="predict_topk"):
            proba = clf.predict_proba(X)
        with pytest.warns(UserWarning, match="predict_topk"):
            clf.predict_log_proba(X)
    monkeypatch.setattr(slide_module, "_DENSE_OUTPUT_WARNING_BYTES", n_bytes - 1)
    with pytest.warns(UserWarning, match=r"dense \(400, 3000\) array"):
        scores = clf.decision_function(X)
    # row-chunked probabilities equal the softmax of the logits, computed whole
    expected = scores.astype(np.float64)
    expected -= expected.max(axis=1, keepdims=True)
    np.exp(expected, out=expected)
    expected /= expected.sum(axis=1, keepdims=True)
    np.testing.assert_array_equal(proba, expected)


# ------------------------------------------------- 500,000 labels, never dense

HUGE_LABELS_CHILD = """
import gc, json, resource, time, tracemalloc, warnings
import numpy as np
warnings.simplefilter("ignore")
from sksketch import SLIDEClassifier
from sksketch.datasets import make_extreme_classification

# a guard against thrashing the machine if a dense array ever comes back
vm_size = int([l for l in open("/proc/self/status") if l.startswith("VmSize")][0].split()[1])
cap = vm_size * 1024 + 3 * 2**30
resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

n_labels = 500_000
X, Y = make_extreme_classification(n_samples=1400, n_features=5000, n_labels=n_labels,
                                   avg_features_per_sample=30, random_state=0)
X_train, Y_train, X_test, Y_test = X[:1000], Y[:1000], X[1000:1200], Y[1000:1200]
X_more, Y_more = X[1200:], Y[1200:]
out = {"n_train": X_train.shape[0], "n_test": X_test.shape[0], "n_labels": n_labels}
tracemalloc.start()

def peak(name, fn):
    gc.collect()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    started = time.perf_counter()
    result = fn()
    out[name] = tracemalloc.get_traced_memory()[1] - base
    out[name + "_seconds"] = time.perf_counter() - started
    return result

params = dict(hidden_layer_size=16, n_tables=4, min_active_labels=200, max_active_labels=200,
              max_iter=1, n_jobs=1, random_state=0)
clf = SLIDEClassifier(batch_size=250, **params)
peak("fit", lambda: clf.fit(X_train, Y_train))
peak("partial_fit", lambda: clf.partial_fit(X_more, Y_more))
out["usage"] = clf.memory_usage()
for inference in ("full", "lsh"):
    clf.set_params(inference=inference)
    predicted = peak("predict_" + inference, lambda: clf.predict(X_test))
    out["predict_is_sparse"] = bool(hasattr(predicted, "tocsr"))
    out["predict_shape"] = list(predicted.shape)
    labels, _ = peak("predict_topk_" + inference, lambda: clf.predict_topk(X_test, k=5))
    out["topk_shape"] = list(labels.shape)
    out["score_" + inference + "_value"] = peak(
        "score_" + inference, lambda: clf.score(X_test, Y_test))
from sksketch._slide._retrieval import cached_index
out["lsh_index_bytes"] = cached_index(clf).nbytes
proba = peak("predict_proba", lambda: clf.predict_proba(X_test[:4]))
out["proba_rows_sum_to_one"] = bool(np.allclose(proba.sum(axis=1), 1))
del proba
exact = SLIDEClassifier(batch_size=32, sampler="exact-loss", **params)
peak("fit_exact_loss", lambda: exact.fit(X_train[:64], Y_train[:64]))
out["exact_usage"] = exact.memory_usage()
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def huge():
    return _run_child(HUGE_LABELS_CHILD)


def test_huge_label_set_fit_never_allocates_dense(huge):
    usage, L = huge["usage"], huge["n_labels"]
    dense_train = huge["n_train"] * L * 4
    # the model, its buffers, and while it is initialised a float64 draw of
    # the output weights (2 x their float32 size)
    assert huge["fit"] < usage["total"] + 2 * 4 * L * 16 + 16 * MB
    assert huge["fit"] < dense_train / 10
    assert huge["partial_fit"] < usage["training_buffers"] + 8 * MB
    # the exact-loss sampler scores full softmaxes in chunks of 2**22 scores
    exact = huge["exact_usage"]
    assert huge["fit_exact_loss"] < exact["total"] + 2 * 4 * L * 16 + 160 * MB


@pytest.mark.parametrize("method", ["predict", "predict_topk", "score"])
def test_huge_label_set_predictions_never_allocate_dense(huge, method):
    n, L = huge["n_test"], huge["n_labels"]
    dense = n * L * 4
    # inference="full": one chunk of at most 2**24 float32 scores at a time
    assert huge[method + "_full"] < 4 * 2**24 + 4 * MB
    assert huge[method + "_full"] < dense / 5
    # inference="lsh": the index over the final weights (built at the first
    # call, with its keys while it sorts them) and per-thread scratch,
    # nothing per label and row
    assert huge[method + "_lsh"] < 1.5 * huge["lsh_index_bytes"] + 48 * MB
    assert huge["predict_is_sparse"]
    assert huge["predict_shape"] == [n, L]
    assert huge["topk_shape"] == [n, 5]
    assert 0 <= huge["score_full_value"] <= 1


def test_huge_label_set_predict_proba_is_dense_by_request(huge):
    L = huge["n_labels"]
    assert huge["proba_rows_sum_to_one"]
    assert huge["predict_proba"] < 4 * L * 8 + 4 * L * 4 + MB


# ------------------------------------------------------------- no leak (RSS)

RSS_CHILD = """
import gc, json, os, pickle, warnings
import numpy as np
warnings.simplefilter("ignore")
from sksketch import SLIDEClassifier, ZeroShotSoftLabelClassifier
from sksketch.datasets import make_extreme_classification

kind = {kind!r}
page = os.sysconf("SC_PAGE_SIZE")

def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * page

X, Y = make_extreme_classification(n_samples=200, n_features=400, n_labels=200,
                                   random_state=0)
rng = np.random.RandomState(0)
A = rng.rand(8, 6)
y = rng.randint(0, 6, 200)
Xz = (A[y] @ rng.randn(6, 20) + 0.1 * rng.randn(200, 20)).astype(np.float32)

def slide(precision):
    clf = SLIDEClassifier(hidden_layer_size=32, n_tables=4, n_buckets_log2=10,
                          min_active_labels=20, max_active_labels=40, rehash_interval=3,
                          batch_size=16, max_iter=1, precision=precision, inference="lsh",
                          n_jobs=1)
    return clf.fit(X, Y).partial_fit(X[:50], Y[:50])

def zeroshot():
    clf = ZeroShotSoftLabelClassifier(A, hidden_layer_sizes=(32,), batch_size=16, max_iter=1,
                                      sampler="nw-sketch", n_jobs=1)
    return clf.fit(Xz, y).partial_fit(Xz[:50], y[:50])

def predict_slide(clf):
    clf.predict_topk(X, k=5)
    clf.predict(X)
    clf.predict_proba(X[:50])

def cycle():
    if kind == "zeroshot":
        zeroshot().predict_proba(Xz)
    elif kind == "pickle":
        predict_slide(pickle.loads(pickle.dumps(slide("bfloat16"))))
        pickle.loads(pickle.dumps(zeroshot())).predict_proba(Xz)
    else:
        predict_slide(slide(kind))

sizes = []
for i in range({n_cycles}):
    cycle()
    gc.collect()
    sizes.append(rss())
print(json.dumps(sizes))
"""

N_CYCLES, N_WARMUP = 50, 10


@pytest.mark.parametrize("kind", ["float32", "bfloat16", "zeroshot", "pickle"])
def test_rss_stays_flat_over_repeated_fits(kind):
    # float32 and bfloat16: SLIDEClassifier fit, partial_fit and predictions;
    # pickle: round trips of both estimators
    sizes = _run_child(RSS_CHILD.format(kind=kind, n_cycles=N_CYCLES))
    growth = max(sizes[N_WARMUP:]) - sizes[N_WARMUP - 1]
    assert growth < 8 * MB, [round(s / MB, 1) for s in sizes]
