"""threads_for: the one work-to-threads rule, and the kernels that follow n_jobs through it."""

import numpy as np
import pytest
from sklearn.datasets import make_classification

from sksketch import ZeroShotSoftLabelClassifier
from sksketch._kernels import _openmp
from sksketch.sampling import NadarayaWatsonSketch, NWSketchSampler, _sketch, run_epoch
from sksketch.utils._threads import threads_for


def test_small_work_runs_on_the_calling_thread():
    assert threads_for(0, n_jobs=8, min_work_per_thread=10) == 1
    assert threads_for(19, n_jobs=8, min_work_per_thread=10) == 1
    assert threads_for(10**9, n_jobs=1, min_work_per_thread=10) == 1


def test_threads_grow_with_the_work_up_to_n_jobs():
    n = _openmp.effective_n_threads(8)
    assert threads_for(20, n_jobs=8, min_work_per_thread=10) == min(2, n)
    assert threads_for(59, n_jobs=8, min_work_per_thread=10) == min(5, n)
    assert threads_for(10**9, n_jobs=8, min_work_per_thread=10) == n
    assert threads_for(10**9, min_work_per_thread=10) == _openmp.effective_n_threads(None)
    assert threads_for(10**9, n_jobs=-1, min_work_per_thread=10) == _openmp.effective_n_threads(-1)


def test_a_resolved_count_gives_itself_back():
    n = _openmp.effective_n_threads(None)
    assert threads_for(10**9, n_jobs=n) == n


@pytest.fixture
def sketch_calls(monkeypatch):
    calls = []

    def recording(work, n_jobs=None, min_work_per_thread=1):
        calls.append(n_jobs)
        return threads_for(work, n_jobs, min_work_per_thread)

    monkeypatch.setattr(_sketch, "threads_for", recording)
    return calls


def test_nw_sampler_kernels_follow_the_estimators_n_jobs(sketch_calls):
    X = np.random.RandomState(0).randn(50, 4).astype(np.float32)
    sampler = NWSketchSampler(random_state=0).start(X, n_jobs=1)
    run_epoch(sampler, 10, lambda idx, w: np.ones(len(idx), np.float32))
    assert sketch_calls and set(sketch_calls) == {1}


def test_zeroshot_passes_n_jobs_to_its_sampler(sketch_calls):
    X, y = make_classification(80, 5, n_informative=3, n_classes=3, random_state=0)
    ZeroShotSoftLabelClassifier(
        hidden_layer_sizes=(4,), max_iter=1, sampler="nw-sketch", n_jobs=1, random_state=0
    ).fit(X, y)
    assert sketch_calls and set(sketch_calls) == {1}


def test_nw_sketch_estimator_same_answer_whatever_its_n_jobs(sketch_calls):
    # enough rows that hashing them is shared out among threads
    rng = np.random.RandomState(0)
    X = rng.randn(20000, 8)
    y = np.abs(X[:, 0])
    predictions = [
        NadarayaWatsonSketch(random_state=0, n_jobs=n_jobs).fit(X, y).predict(X[:500])
        for n_jobs in (1, 2, None)
    ]
    assert set(sketch_calls) == {1, 2, None}
    for p in predictions[1:]:
        np.testing.assert_array_equal(p, predictions[0])
