"""SLIDEClassifier inside scikit-learn's tools: Pipeline, GridSearchCV, routing, clone, threads."""

import importlib
import inspect
import warnings

import joblib
import numpy as np
import pytest
import sklearn
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning, UnsetMetadataPassedError
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.model_selection import GridSearchCV, KFold, train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MultiLabelBinarizer
from threadpoolctl import threadpool_info, threadpool_limits

from sksketch import SLIDEClassifier
from sksketch._kernels import _openmp
from sksketch.datasets import make_extreme_classification
from sksketch.metrics import make_topk_scorer, precision_at_k

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

# Real text that ships with the installed packages: the docstrings of public
# functions and classes, each labelled with its package, its module and
# whether it is a class or a function.
_MODULES = [
    "collections", "itertools", "os", "json", "re", "pathlib", "functools", "typing",
    "numpy", "numpy.linalg", "numpy.random", "numpy.fft",
    "scipy.linalg", "scipy.stats", "scipy.sparse", "scipy.optimize", "scipy.signal",
    "sklearn.linear_model", "sklearn.cluster", "sklearn.metrics", "sklearn.preprocessing",
    "sklearn.decomposition",
]


@pytest.fixture(scope="module")
def docstrings():
    texts, labels, seen = [], [], set()
    for name in _MODULES:
        module = importlib.import_module(name)
        top = name.split(".")[0]
        package = top if top in ("numpy", "scipy", "sklearn") else "stdlib"
        for attr in sorted(dir(module)):
            if attr.startswith("_"):
                continue
            obj = getattr(module, attr)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # typing.re and the like
                doc = inspect.getdoc(obj) if callable(obj) else None
            if not doc or len(doc) < 200 or id(obj) in seen:
                continue
            seen.add(id(obj))
            kind = "class" if inspect.isclass(obj) else "function"
            texts.append(doc[:1500])
            labels.append({package, name, kind})
    assert len(texts) > 500
    mlb = MultiLabelBinarizer()
    Y = mlb.fit_transform(labels)
    return train_test_split(texts, Y, test_size=0.25, random_state=0) + [mlb]


def _text_pipeline(**params):
    params = {"hidden_layer_size": 64, "max_iter": 10, "learning_rate": 0.01,
              "min_active_labels": 6, "max_active_labels": 10, "n_tables": 8,
              "n_hashes_per_table": 2, "negative_sampling": "lsh-embedding", "n_jobs": 1,
              "random_state": 0, **params}
    return Pipeline([
        ("tfidf", TfidfVectorizer(sublinear_tf=True, min_df=2)),
        ("clf", SLIDEClassifier(**params)),
    ])


def test_pipeline_tfidf_slide_learns_multilabel_text(docstrings):
    docs_train, docs_test, Y_train, Y_test, mlb = docstrings
    pipe = _text_pipeline().fit(docs_train, Y_train)
    clf = pipe[-1]
    assert clf._plan().uses_lsh  # a sampled softmax over LSH-retrieved labels, not the exact one
    # ranking against always proposing the most frequent labels
    frequency = np.tile(Y_train.sum(axis=0), (len(docs_test), 1)).astype(float)
    for k in (1, 3):
        ours = make_topk_scorer("precision", k=k)(pipe, docs_test, Y_test)
        baseline = precision_at_k(Y_test, frequency, k=k)
        assert ours > baseline + (0.03 if k == 1 else 0.15), (k, ours, baseline)
    # predictions go back through the binarizer to label sets
    predicted = mlb.inverse_transform(pipe.predict(docs_test[:20]))
    assert len(predicted) == 20 and all(len(labels) == 1 for labels in predicted)
    labels, _ = clf.predict_topk(pipe[:-1].transform(docs_test[:5]), k=3)
    assert set(mlb.classes_[labels.ravel()]) <= set(mlb.classes_)


def _xc_problem():
    X, Y = make_extreme_classification(600, 300, 150, avg_labels_per_sample=2, random_state=0)
    return X, Y


def test_grid_search_over_lsh_and_training_parameters_in_parallel():
    X, Y = _xc_problem()
    # the network's parameters alone (the sparse head would rank well at any of them)
    base = SLIDEClassifier(hidden_layer_size=32, max_iter=4, min_active_labels=10,
                           max_active_labels=20, n_jobs=1, random_state=0, sparse_head=False)
    grid = {"n_tables": [4, 16], "n_hashes_per_table": [2, 4], "learning_rate": [1e-3, 1e-2]}
    scorer = make_topk_scorer("precision", k=3)
    cv = KFold(3, shuffle=True, random_state=0)
    parallel = GridSearchCV(base, grid, scoring=scorer, cv=cv, n_jobs=2).fit(X, Y)
    serial = GridSearchCV(base, grid, scoring=scorer, cv=cv, n_jobs=1).fit(X, Y)
    assert len(parallel.cv_results_["params"]) == 8
    # one thread per fit, fixed seeds: worker processes change nothing
    np.testing.assert_array_equal(parallel.cv_results_["mean_test_score"],
                                  serial.cv_results_["mean_test_score"])
    assert parallel.best_params_ == serial.best_params_
    assert parallel.best_params_["learning_rate"] == 1e-2  # 4 epochs at 1e-3 barely move
    scores = parallel.cv_results_["mean_test_score"]
    assert scores.max() > scores.min() + 0.05
    # the refitted best model is a plain SLIDEClassifier with the chosen parameters
    best = parallel.best_estimator_
    assert isinstance(best, SLIDEClassifier) and best.n_tables == parallel.best_params_["n_tables"]
    assert best.predict_topk(X[:3], k=3)[0].shape == (3, 3)


def test_sample_weight_is_routed_through_a_pipeline(docstrings):
    docs_train, _, Y_train, _, _ = docstrings
    docs, Y = docs_train[:300], Y_train[:300]
    weights = np.where(np.arange(300) % 3 == 0, 0.0, 1.0)
    with sklearn.config_context(enable_metadata_routing=True):
        pipe = _text_pipeline(max_iter=2)
        pipe[-1].set_fit_request(sample_weight=True)
        pipe.fit(docs, Y, sample_weight=weights)
        unweighted = _text_pipeline(max_iter=2)
        unweighted[-1].set_fit_request(sample_weight=True)
        unweighted.fit(docs, Y)
        # an unrequested weight is an error, not silently dropped
        with pytest.raises(UnsetMetadataPassedError):
            _text_pipeline(max_iter=2).fit(docs, Y, sample_weight=weights)
    # the weights reached SLIDEClassifier.fit: the same as fitting it directly with them
    direct = clone(pipe[-1]).fit(pipe[:-1].transform(docs), Y, sample_weight=weights)
    np.testing.assert_array_equal(pipe[-1].output_weights_, direct.output_weights_)
    assert not np.array_equal(pipe[-1].output_weights_, unweighted[-1].output_weights_)


def test_clone_gives_an_unfitted_copy_with_the_same_parameters():
    X, Y = _xc_problem()
    clf = SLIDEClassifier(hidden_layer_size=16, n_tables=7, max_iter=2, random_state=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, Y)
    copy = clone(clf)
    assert copy.get_params() == clf.get_params()
    assert not hasattr(copy, "output_weights_") and not hasattr(copy, "classes_")
    # the clone trains to the very same model (one thread, same seed)
    clf1 = clone(clf).set_params(n_jobs=1).fit(X, Y)
    clf2 = clone(copy).set_params(n_jobs=1).fit(X, Y)
    np.testing.assert_array_equal(clf1.output_weights_, clf2.output_weights_)
    pipe = clone(Pipeline([("clf", clf)]))
    assert pipe[-1] is not clf and pipe[-1].n_tables == 7


def test_the_openmp_runtime_is_seen_by_threadpoolctl():
    libraries = [info for info in threadpool_info() if info["user_api"] == "openmp"]
    assert libraries, "threadpoolctl finds no OpenMP runtime in this process"


@pytest.mark.skipif(not _openmp.build_info()["openmp"], reason="built without OpenMP")
def test_threads_follow_threadpool_limits_and_n_jobs(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    full = _openmp.effective_n_threads(None)
    with threadpool_limits(limits=1, user_api="openmp"):
        assert _openmp.openmp_max_threads() == 1
        assert _openmp.effective_n_threads(None) == 1
        assert _openmp.effective_n_threads(-1) == 1
        assert SLIDEClassifier()._n_threads() == 1
        # an explicit n_jobs is the user's request and wins over the limit
        assert SLIDEClassifier(n_jobs=3)._n_threads() == 3
    with threadpool_limits(limits=2, user_api="openmp"):
        assert _openmp.effective_n_threads(None) == min(2, joblib.cpu_count())
    assert _openmp.effective_n_threads(None) == full
    assert _openmp.effective_n_threads(1) == 1
    assert _openmp.effective_n_threads(-1) == full
    if full > 1:
        assert _openmp.effective_n_threads(-2) == full - 1


@pytest.mark.parametrize("incremental", [False, True])
def test_training_runs_with_one_blas_thread_and_restores_the_setting(monkeypatch,
                                                                    incremental):
    # BLAS only sums a few vectors in training: its threads would spin on the
    # cores the OpenMP kernels train on, and split those sums by core count
    from sksketch._slide import _trainer

    def blas():
        return sorted((d["filepath"], d["num_threads"]) for d in threadpool_info()
                      if d["user_api"] == "blas")

    if not blas():
        pytest.skip("threadpoolctl finds no BLAS library in this process")
    seen = []
    train = _trainer.SLIDETrainer.train

    def spy(self, *args, **kwargs):
        seen.append({threads for _, threads in blas()})
        return train(self, *args, **kwargs)

    monkeypatch.setattr(_trainer.SLIDETrainer, "train", spy)
    X, Y = make_extreme_classification(n_samples=300, n_features=60, n_labels=20,
                                       random_state=0)
    before = blas()
    with threadpool_limits(limits=2, user_api="blas"):
        inside = blas()
        clf = SLIDEClassifier(hidden_layer_size=8, max_iter=1, random_state=0)
        if incremental:
            clf.partial_fit(X, Y)
        else:
            clf.fit(X, Y)
        assert blas() == inside  # the caller's own limit comes back
    assert seen == [{1}]
    assert blas() == before


def _threads_in_worker():
    return _openmp.effective_n_threads(None), SLIDEClassifier()._n_threads()


@pytest.mark.skipif(not _openmp.build_info()["openmp"], reason="built without OpenMP")
def test_threads_in_joblib_workers_share_the_cores():
    # joblib's process workers (GridSearchCV's n_jobs) cap each worker's
    # OpenMP threads at cpu_count // n_jobs so workers do not oversubscribe.
    n_cpus = joblib.cpu_count()
    results = joblib.Parallel(n_jobs=2, backend="loky")(
        joblib.delayed(_threads_in_worker)() for _ in range(2)
    )
    expected = max(1, n_cpus // 2)
    assert results == [(expected, expected)] * 2
