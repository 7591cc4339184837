"""Thread safety of prediction, HOGWILD training, and reproducible fits."""

import pickle
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import scipy.sparse as sp
from threadpoolctl import threadpool_info

from sksketch import SLIDEClassifier, ZeroShotSoftLabelClassifier
from sksketch._slide import _retrieval
from sksketch.datasets import make_extreme_classification

N_THREADS = 8


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=Warning)
        yield


@pytest.fixture(scope="module")
def xc():
    X, Y = make_extreme_classification(
        n_samples=1200, n_features=400, n_labels=300, random_state=0
    )
    return X, Y


@pytest.fixture(scope="module")
def zsl():
    rng = np.random.RandomState(0)
    A = rng.rand(12, 10)
    y = rng.randint(0, 9, 900)  # classes 9, 10 and 11 are unseen
    X = (A[y] @ rng.randn(10, 30) + 0.1 * rng.randn(900, 30)).astype(np.float32)
    return A, X, y


def _slide(inference, **params):
    # inference="lsh" builds its index over the final weights on first use
    kw = dict(
        hidden_layer_size=32, n_tables=8, n_hashes_per_table=4, min_active_labels=40,
        max_active_labels=60, rehash_interval=1000, batch_size=64, max_iter=2,
        inference=inference, random_state=0,
    )
    kw.update(params)
    return SLIDEClassifier(**kw)


def _blocks(n_rows, n_blocks):
    edges = np.linspace(0, n_rows, n_blocks + 1).astype(int)
    return [slice(a, b) for a, b in zip(edges[:-1], edges[1:], strict=True)]


def _assert_same(a, b):
    if sp.issparse(a):
        assert sp.issparse(b)
        assert (a != b).nnz == 0
    elif isinstance(a, tuple):
        for u, v in zip(a, b, strict=True):
            _assert_same(u, v)
    elif isinstance(a, float):
        assert a == b
    else:
        np.testing.assert_array_equal(a, b, strict=True)


def _run_concurrently(calls, n_repeats):
    """Run every call `n_repeats` times on 8 threads, all starting together."""
    work = [c for _ in range(n_repeats) for c in calls]
    barrier = threading.Barrier(N_THREADS)

    def first(i):
        barrier.wait()
        return work[i]()

    with ThreadPoolExecutor(N_THREADS) as ex:
        head = [ex.submit(first, i) for i in range(min(N_THREADS, len(work)))]
        tail = [ex.submit(work[i]) for i in range(len(head), len(work))]
        return [f.result() for f in head + tail]


def _slide_calls(model, X, Y):
    calls = []
    for block in _blocks(X.shape[0], 6):
        Xb = X[block]
        calls += [
            lambda Xb=Xb: model.predict(Xb),
            lambda Xb=Xb: model.predict_topk(Xb, k=5),
            lambda Xb=Xb: model.predict_proba(Xb),
            lambda Xb=Xb: model.decision_function(Xb),
            lambda Xb=Xb, Yb=Y[block]: model.score(Xb, Yb),
        ]
    return calls


# ----------------------------------------------------------------- prediction


@pytest.mark.parametrize(
    "inference, target, n_jobs",
    [
        ("full", "multilabel", 2),
        ("lsh", "multilabel", 2),
        ("full", "multiclass", 1),
        ("lsh", "multiclass", 1),
    ],
)
def test_slide_concurrent_predictions_match_sequential(xc, inference, target, n_jobs):
    X, Y = xc
    y = Y if target == "multilabel" else np.asarray(Y.argmax(axis=1)).ravel()
    model = _slide(inference, n_jobs=1).fit(X, y)
    # with n_jobs=2 every call runs its own OpenMP team
    blob = pickle.dumps(model.set_params(n_jobs=n_jobs))
    reference = pickle.loads(blob)
    expected = [call() for call in _slide_calls(reference, X, y)]
    # a fresh copy each time, so that the first calls race to build the
    # inference tables
    for _ in range(2):
        model = pickle.loads(blob)
        results = _run_concurrently(_slide_calls(model, X, y), n_repeats=3)
        for i, result in enumerate(results):
            _assert_same(result, expected[i % len(expected)])


@pytest.mark.parametrize("source", ["fit", "pickle"])
def test_slide_first_lsh_predictions_race_to_one_index_build(xc, source):
    X, Y = xc
    fitted = _slide("lsh", n_jobs=1).fit(X, Y)
    expected = pickle.loads(pickle.dumps(fitted)).predict_topk(X, k=10)
    for _ in range(5):
        model = _slide("lsh", n_jobs=1).fit(X, Y) if source == "fit" else (
            pickle.loads(pickle.dumps(fitted)))
        assert _retrieval.cached_index(model) is None
        blocks = _blocks(X.shape[0], 32)
        calls = [lambda b=b, m=model: (b, m.predict_topk(X[b], k=10)) for b in blocks]
        for block, (labels, scores) in _run_concurrently(calls, n_repeats=1):
            np.testing.assert_array_equal(labels, expected[0][block])
            np.testing.assert_array_equal(scores, expected[1][block])
        # every racing thread got the same index, built once
        build = [lambda model=model: _retrieval.index_for(model)] * N_THREADS
        indexes = _run_concurrently(build, n_repeats=1)
        assert all(t is indexes[0] for t in indexes)
        assert indexes[0] is _retrieval.cached_index(model)


@pytest.mark.parametrize("n_jobs", [None, 1, 2])
@pytest.mark.parametrize("sparse", [False, True])
def test_zeroshot_concurrent_predictions_match_sequential(zsl, n_jobs, sparse):
    A, X, y = zsl
    X = sp.csr_matrix(X) if sparse else X
    model = ZeroShotSoftLabelClassifier(
        A, hidden_layer_sizes=(32,), max_iter=3, n_jobs=n_jobs, random_state=0
    ).fit(X, y)
    calls = []
    for block in _blocks(X.shape[0], 6):
        Xb = X[block]
        calls += [
            lambda Xb=Xb: model.predict(Xb),
            lambda Xb=Xb: model.predict_proba(Xb),
            lambda Xb=Xb: model.decision_function(Xb),
        ]
    expected = [call() for call in calls]
    blas_before = sorted((d["filepath"], d["num_threads"]) for d in threadpool_info())
    results = _run_concurrently(calls, n_repeats=6)
    for i, result in enumerate(results):
        _assert_same(result, expected[i % len(expected)])
    # overlapping BLAS limits leave the process's setting as it was
    blas_after = sorted((d["filepath"], d["num_threads"]) for d in threadpool_info())
    assert blas_after == blas_before


# ----------------------------------------------------------- HOGWILD training


def _fitted_arrays(obj, prefix="", seen=None):
    """Every array, number and list of numbers of a fitted object, by path.

    Walks attributes, dicts, lists and the state of objects without a
    ``__dict__`` (the hash tables); timings are left out.
    """
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return {}
    seen.add(id(obj))
    out = {}
    if isinstance(obj, np.ndarray):
        return {prefix: obj}
    if isinstance(obj, (bool, int, float, np.number)):
        return {prefix: np.asarray(obj)}
    if sp.issparse(obj):
        return {prefix: obj.toarray()}
    if isinstance(obj, dict):
        items = obj.items()
    elif isinstance(obj, (list, tuple)):
        items = enumerate(obj)
    elif hasattr(obj, "__dict__"):
        items = vars(obj).items()
    elif isinstance(getattr(obj, "__getstate__", lambda: None)(), dict):
        items = obj.__getstate__().items()
    else:
        return {}
    for key, value in items:
        if "time" in str(key) or callable(value) and not hasattr(value, "__dict__"):
            continue
        out.update(_fitted_arrays(value, f"{prefix}.{key}", seen))
    return out


def _assert_fits_equal(a, b, ignore=()):
    arrays_a, arrays_b = _fitted_arrays(a), _fitted_arrays(b)
    for key in ignore:
        arrays_a.pop(key), arrays_b.pop(key)
    assert arrays_a.keys() == arrays_b.keys()
    for key in arrays_a:
        np.testing.assert_array_equal(arrays_a[key], arrays_b[key], err_msg=key, strict=True)


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_hogwild_training_stays_finite(precision):
    X, Y = make_extreme_classification(
        n_samples=256, n_features=300, n_labels=200, random_state=1
    )
    # a high learning rate and frequent rehashes and redraws: the hardest case
    clf = SLIDEClassifier(
        hidden_layer_size=32, n_tables=8, n_buckets_log2=12, min_active_labels=30,
        max_active_labels=50, precision=precision, learning_rate=1e-2, rehash_interval=1,
        rebuild_interval=4, batch_size=128, max_iter=30, tol=0, n_jobs=2, random_state=0,
    ).fit(X, Y)
    assert clf.n_iter_ == 30
    for key, value in _fitted_arrays(clf).items():
        if value.dtype.kind == "f":
            assert np.all(np.isfinite(value)), key
    assert np.all(np.isfinite(clf.loss_curve_))
    assert clf.loss_curve_[-1] < clf.loss_curve_[0]
    assert np.all(np.isfinite(clf.predict_proba(X)))
    assert np.all(np.isfinite(clf.predict_topk(X, k=5)[1]))


# ------------------------------------------------------------ reproducibility


@pytest.fixture(scope="module")
def small_xc():
    X, Y = make_extreme_classification(
        n_samples=240, n_features=150, n_labels=60, random_state=2
    )
    return X, Y


@pytest.mark.parametrize(
    "negative_sampling", ["lsh-embedding", "lsh-label", "uniform", "unigram", "full"]
)
@pytest.mark.parametrize("sampler", [None, "nw-sketch"])
@pytest.mark.parametrize("dense", [False, True])
@pytest.mark.parametrize("target", ["multilabel", "multiclass"])
def test_slide_fit_is_reproducible(small_xc, negative_sampling, sampler, dense, target):
    X, Y = small_xc
    X = X.toarray() if dense else X
    y = Y if target == "multilabel" else np.asarray(Y.argmax(axis=1)).ravel()
    params = dict(
        hidden_layer_size=16, n_tables=4, n_hashes_per_table=3, min_active_labels=10,
        max_active_labels=20, negative_sampling=negative_sampling, sampler=sampler,
        rehash_interval=2, rebuild_interval=5, batch_size=32, max_iter=3, random_state=0,
    )
    first = SLIDEClassifier(n_jobs=1, **params).fit(X, y)
    _assert_fits_equal(first, SLIDEClassifier(n_jobs=1, **params).fit(X, y))
    _assert_fits_equal(first, SLIDEClassifier(n_jobs=1, **params).fit(X, y))


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
@pytest.mark.parametrize("sampler", ["exact-loss", "nw-sketch"])
def test_slide_fit_and_partial_fit_are_reproducible(small_xc, precision, sampler):
    X, Y = small_xc
    params = dict(
        hidden_layer_size=16, n_tables=4, min_active_labels=10, max_active_labels=20,
        precision=precision, sampler=sampler, rehash_interval=2, batch_size=32, max_iter=2,
        n_jobs=1, random_state=0,
    )

    def train():
        clf = SLIDEClassifier(**params).fit(X, Y)
        for block in _blocks(X.shape[0], 3):
            clf.partial_fit(X[block], Y[block])
        return clf

    _assert_fits_equal(train(), train())


@pytest.mark.parametrize("negative_sampling", ["lsh-embedding", "uniform", "full"])
def test_slide_fit_does_not_depend_on_the_thread_count(small_xc, negative_sampling):
    # Phase 1 of a batch only reads the weights, and each weight row's update
    # is made by one thread: the result is the same on any number of threads.
    X, Y = small_xc
    params = dict(
        hidden_layer_size=16, n_tables=4, min_active_labels=10, max_active_labels=20,
        negative_sampling=negative_sampling, rehash_interval=2, batch_size=32, max_iter=3,
        random_state=0,
    )
    single = SLIDEClassifier(n_jobs=1, **params).fit(X, Y)
    # only the size of the per-thread scratch differs
    _assert_fits_equal(
        single, SLIDEClassifier(n_jobs=2, **params).fit(X, Y),
        ignore=["._training_buffers_nbytes"],
    )


@pytest.mark.parametrize("sampler", [None, "nw-sketch", "exact-loss"])
@pytest.mark.parametrize("sparse", [False, True])
def test_zeroshot_fit_is_reproducible(zsl, sampler, sparse):
    A, X, y = zsl
    X = sp.csr_matrix(X) if sparse else X
    params = dict(hidden_layer_sizes=(16,), max_iter=3, sampler=sampler, n_jobs=1,
                  random_state=0)
    first = ZeroShotSoftLabelClassifier(A, **params).fit(X, y)
    _assert_fits_equal(first, ZeroShotSoftLabelClassifier(A, **params).fit(X, y))
    first.partial_fit(X[:300], y[:300])
    second = ZeroShotSoftLabelClassifier(A, **params).fit(X, y).partial_fit(X[:300], y[:300])
    _assert_fits_equal(first, second)
