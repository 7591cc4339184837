"""SLIDEClassifier on a real dask.distributed cluster of worker processes."""

import os
import pickle
import warnings

import numpy as np
import pytest
import scipy.sparse as sp

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("dask.distributed")
dask_ml_wrappers = pytest.importorskip("dask_ml.wrappers")

import dask  # noqa: E402
import joblib  # noqa: E402
from sklearn.model_selection import GridSearchCV, KFold  # noqa: E402

from sksketch import SLIDEClassifier  # noqa: E402
from sksketch.datasets import make_extreme_classification  # noqa: E402
from sksketch.metrics import make_topk_scorer  # noqa: E402

pytestmark = [
    pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning"),
    # dask warns when a graph embeds an in-memory array, as these small tests do
    pytest.mark.filterwarnings("ignore:Sending large graph:UserWarning"),
    pytest.mark.filterwarnings("ignore:Large object of size:UserWarning"),
]

N_LABELS = 40
CHUNK = 400


@pytest.fixture(scope="module")
def client():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                           dashboard_address=None, silence_logs=40)
    with cluster, distributed.Client(cluster) as client:
        yield client


@pytest.fixture(scope="module")
def data():
    X, Y = make_extreme_classification(2000, 200, N_LABELS, avg_labels_per_sample=1,
                                       random_state=0)
    y = np.asarray(Y.argmax(axis=1)).ravel()
    return X, Y, y


def _model(**params):
    return SLIDEClassifier(hidden_layer_size=16, learning_rate=0.01, n_jobs=1, random_state=0,
                           **params)


def _dense_blocks(X):
    return da.from_array(X.toarray(), chunks=(CHUNK, X.shape[1]))


def _sparse_blocks(X):
    # a dask array whose blocks are scipy.sparse CSR matrices
    meta = sp.csr_matrix((0, 0), dtype=X.dtype)
    return _dense_blocks(X).map_blocks(sp.csr_matrix, dtype=X.dtype, meta=meta)


def _sequential_partial_fit(X, y):
    """What Incremental should compute: one partial_fit per block, in order."""
    clf = _model()
    for start in range(0, X.shape[0], CHUNK):
        clf.partial_fit(X[start : start + CHUNK], y[start : start + CHUNK],
                        classes=np.arange(N_LABELS))
    return clf


def test_workers_are_separate_processes(client):
    pids = set(client.run(os.getpid).values())
    assert len(pids) == 2 and os.getpid() not in pids


@pytest.mark.parametrize("blocks", [_dense_blocks, _sparse_blocks], ids=["dense", "sparse"])
def test_incremental_trains_on_blocks_and_predicts_in_parallel(client, data, blocks):
    X, _, y = data
    dX = blocks(X)
    dy = da.from_array(y, chunks=CHUNK)
    assert dX.numblocks[0] == 5
    if blocks is _sparse_blocks:
        assert sp.issparse(dX.blocks[0].compute())
    inc = dask_ml_wrappers.Incremental(_model(), shuffle_blocks=False)
    # classes= goes to every partial_fit call (checked there against the first)
    inc.fit(dX, dy, classes=np.arange(N_LABELS))
    fitted = inc.estimator_
    assert fitted.t_ == X.shape[0] and fitted.n_iter_ == 5
    # the blocks were visited in order: the same model as a local loop
    expected = _sequential_partial_fit(X, y)
    np.testing.assert_array_equal(fitted.output_weights_, expected.output_weights_)
    # prediction runs block by block on the workers
    lazy = inc.predict(dX)
    assert isinstance(lazy, da.Array)
    np.testing.assert_array_equal(lazy.compute(), expected.predict(X))
    assert np.mean(expected.predict(X) == y) > 3.0 / N_LABELS


def test_multilabel_blocks_through_a_delayed_partial_fit_chain(client, data):
    # dask-ml's Incremental takes 1-D targets only; an indicator matrix goes
    # through the same chain of partial_fit tasks built with dask.delayed.
    X, Y, _ = data
    dX, dY = _sparse_blocks(X), da.from_array(Y.toarray(), chunks=(CHUNK, N_LABELS))
    model = dask.delayed(_model())
    for xb, yb in zip(dX.to_delayed().ravel(), dY.to_delayed().ravel(), strict=True):
        model = dask.delayed(SLIDEClassifier.partial_fit)(model, xb, yb)
    fitted = model.compute()
    local = _model()
    for start in range(0, X.shape[0], CHUNK):
        local.partial_fit(X[start : start + CHUNK], Y[start : start + CHUNK].toarray())
    np.testing.assert_array_equal(fitted.output_weights_, local.output_weights_)
    labels, _ = fitted.predict_topk(X[:50], k=3)
    np.testing.assert_array_equal(labels, local.predict_topk(X[:50], k=3)[0])


def _predict_after_pickle(payload, X):
    return pickle.loads(payload).predict_topk(X, k=5)


def test_fitted_state_moves_between_processes(client, data):
    X, _, y = data
    clf = _model(max_iter=3).fit(X, y)
    labels, scores = clf.predict_topk(X, k=5)
    # dask's own transport (the estimator is serialised to a worker process)
    [future] = client.scatter([clf], broadcast=True)
    remote = client.submit(SLIDEClassifier.predict_topk, future, X, k=5).result()
    np.testing.assert_array_equal(remote[0], labels)
    np.testing.assert_array_equal(remote[1], scores)
    # an explicit pickle made here and loaded there, and the model sent back
    remote = client.submit(_predict_after_pickle, pickle.dumps(clf), X, pure=False).result()
    np.testing.assert_array_equal(remote[0], labels)
    back = client.submit(lambda model: model, future).result()
    np.testing.assert_array_equal(back.predict_topk(X, k=5)[1], scores)


def test_grid_search_runs_on_the_dask_joblib_backend(client, data):
    X, Y, _ = data
    grid = {"n_tables": [4, 8], "learning_rate": [1e-3, 1e-2]}
    base = _model(max_iter=3, min_active_labels=8, max_active_labels=12)
    search = dict(scoring=make_topk_scorer("precision", k=3), cv=KFold(2))
    with joblib.parallel_config(backend="dask"):
        on_dask = GridSearchCV(base, grid, n_jobs=-1, **search).fit(X, Y)
    local = GridSearchCV(base, grid, n_jobs=1, **search).fit(X, Y)
    np.testing.assert_array_equal(on_dask.cv_results_["mean_test_score"],
                                  local.cv_results_["mean_test_score"])
    assert on_dask.best_params_ == local.best_params_
    # the fits ran as tasks of the cluster's scheduler
    prefixes = client.run_on_scheduler(lambda dask_scheduler: list(dask_scheduler.task_prefixes))
    assert any("fit_and_score" in prefix for prefix in prefixes), prefixes
