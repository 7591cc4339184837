"""Bad input at every public entry point.

Each case either fails with a ValueError or TypeError whose message names the
problem, or is a different spelling of good input (memory layout, index dtype,
sparse format, unsorted or repeated sparse entries, read-only buffers) and
gives exactly the answer of the canonical input, leaving the caller's arrays
untouched. Never a crash, a hang or a silently wrong answer: the malformed
sparse matrices, which crash compiled code that reads them unchecked, run in a
child process, so a crash fails their tests instead of killing the test run.
"""

import copy
import json
import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import scipy.sparse as sp
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier

from sksketch import (
    ImportanceSampledClassifier,
    NadarayaWatsonSketch,
    SLIDEClassifier,
    ZeroShotSoftLabelClassifier,
)
from sksketch._cli import main
from sksketch.datasets import dump_xc, load_xc, load_xlsa17, make_extreme_classification
from sksketch.metrics import (
    gzsl_scores,
    label_propensity,
    ndcg_at_k,
    per_class_accuracy,
    precision_at_k,
    psp_at_k,
    recall_at_k,
)
from sksketch.sampling import (
    ExactLossSampler,
    NWSketchSampler,
    UniformSampler,
    run_epoch,
)
from sksketch.utils import all_estimators


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", RuntimeWarning)  # float32 overflow in casts
        yield


RNG = np.random.RandomState(0)
X = RNG.rand(30, 5)
Y_CLASSES = np.arange(30) % 3
Y_MULTI = (RNG.rand(30, 6) > 0.6).astype(np.int64)
Y_MULTI[np.arange(30), np.arange(30) % 6] = 1
Y_REG = RNG.rand(30)


# ------------------------------------------------------------------ estimators


def _slide():
    return SLIDEClassifier(hidden_layer_size=8, batch_size=16, max_iter=1, n_jobs=1,
                           random_state=0)


def _zeroshot():
    return ZeroShotSoftLabelClassifier(hidden_layer_sizes=(8,), batch_size=16, max_iter=1,
                                       n_jobs=1, random_state=0)


def _importance():
    return ImportanceSampledClassifier(sampler="nw-sketch", batch_size=16, max_iter=1,
                                       random_state=0)


def _importance_mlp():
    return ImportanceSampledClassifier(MLPClassifier(hidden_layer_sizes=(4,)),
                                       sampler="nw-sketch", batch_size=16, max_iter=1,
                                       random_state=0)


def _nw_sketch():
    return NadarayaWatsonSketch(n_rows=8, random_state=0)


# name -> (factory, target, prediction methods)
ESTIMATORS = {
    "SLIDEClassifier": (
        _slide, Y_CLASSES,
        ["predict", "predict_proba", "decision_function", "predict_topk", "score"],
    ),
    "SLIDEClassifier-multilabel": (
        _slide, Y_MULTI,
        ["predict", "predict_proba", "decision_function", "predict_topk", "score"],
    ),
    "ZeroShotSoftLabelClassifier": (
        _zeroshot, Y_CLASSES, ["predict", "predict_proba", "decision_function", "score"],
    ),
    "ImportanceSampledClassifier": (
        _importance, Y_CLASSES, ["predict", "predict_proba", "decision_function", "score"],
    ),
    "ImportanceSampledClassifier-multilabel": (
        _importance_mlp, Y_MULTI, ["predict", "predict_proba", "score"],
    ),
    "NadarayaWatsonSketch": (_nw_sketch, Y_REG, ["predict", "score"]),
}
CLASSIFIERS = [name for name in ESTIMATORS if not name.startswith("Nadaraya")]
MULTILABEL = [name for name in ESTIMATORS if name.endswith("-multilabel")]


def test_the_matrix_covers_every_public_estimator():
    covered = {name.split("-")[0] for name in ESTIMATORS}
    assert {name for name, _ in all_estimators()} <= covered


def _n_rows(data):
    return data.shape[0] if hasattr(data, "shape") else len(data)


def _train(name, method, data, target=None, **kwargs):
    """``fit`` / ``partial_fit`` / ``update`` of a fresh (or, for update, fitted) model."""
    factory, default_target, _ = ESTIMATORS[name]
    target = default_target[: _n_rows(data)] if target is None else target
    if method == "update":
        return copy.deepcopy(_fitted(name)).update(data, target)
    est = factory()
    if method == "partial_fit" and target.ndim == 1:
        kwargs.setdefault("classes", np.unique(default_target))
    return getattr(est, method)(data, target, **kwargs)


_FITTED = {}


def _fitted(name):
    if name not in _FITTED:
        factory, target, _ = ESTIMATORS[name]
        _FITTED[name] = factory().fit(X, target)
    return _FITTED[name]


def _predict(est, name, method, data):
    if method == "score":
        return est.score(data, ESTIMATORS[name][1][: _n_rows(data)])
    if method == "predict_topk":
        return est.predict_topk(data, k=2)
    return getattr(est, method)(data)


TRAIN_METHODS = {name: ["fit", "partial_fit"] for name in ESTIMATORS}
TRAIN_METHODS["NadarayaWatsonSketch"] = ["fit", "update"]


# ------------------------------------------------------------------ bad X


def _where_first(value):
    out = X.copy()
    out[np.arange(5), np.arange(5)] = value
    return out


BAD_X = {
    "NaN": (lambda: _where_first(np.nan), "NaN"),
    "infinity": (lambda: _where_first(np.inf), "infinity"),
    "NaN in a sparse matrix": (lambda: sp.csr_matrix(_where_first(np.nan)), "NaN"),
    "beyond float32": (lambda: _where_first(1e39), "too large|overflow float32"),
    "complex": (lambda: X + 1j, "[Cc]omplex"),
    "strings": (lambda: np.full(X.shape, "a"), "could not convert string to float"),
    "3-D": (lambda: X[:, :, None], "dim 3"),
    "1-D": (lambda: X[:, 0], "Expected 2D array"),
    "no rows": (lambda: X[:0], "0 sample"),
    "no features": (lambda: X[:, :0], "0 feature"),
    "fewer features than fit": (lambda: X[:, :4], "4 features, but .* expecting 5"),
    "more features than fit (sparse)": (
        lambda: sp.csr_matrix(np.hstack([X, X])), "10 features, but .* expecting 5"),
}
# The wrapped estimator predicts in float64, where 1e39 is a number.
_NOT_AN_ERROR = {("ImportanceSampledClassifier", "beyond float32"),
                 ("ImportanceSampledClassifier-multilabel", "beyond float32")}


def _bad_x_cases(methods_of):
    for name in ESTIMATORS:
        for method in methods_of(name):
            for case in BAD_X:
                if (name, case) in _NOT_AN_ERROR and method not in TRAIN_METHODS[name]:
                    continue
                if "than fit" in case and method == "fit":
                    continue
                yield pytest.param(name, method, case, id=f"{name}-{method}-{case}")


@pytest.mark.parametrize("name, method, case", list(_bad_x_cases(lambda n: TRAIN_METHODS[n])))
def test_training_refuses_bad_X(name, method, case):
    make, match = BAD_X[case]
    data = make()
    if method == "partial_fit" and "than fit" in case:
        est = _train(name, "partial_fit", X)
        with pytest.raises(ValueError, match=match):
            est.partial_fit(data, ESTIMATORS[name][1])
        return
    with pytest.raises(ValueError, match=match):
        _train(name, method, data)


@pytest.mark.parametrize("name, method, case", list(_bad_x_cases(lambda n: ESTIMATORS[n][2])))
def test_prediction_refuses_bad_X(name, method, case):
    make, match = BAD_X[case]
    with pytest.raises(ValueError, match=match):
        _predict(_fitted(name), name, method, make())


# ------------------------------------------------------ equivalent spellings of X


def _readonly(a):
    a = a.copy()
    a.flags.writeable = False
    return a


def _readonly_sparse(M):
    M = M.copy()
    for part in (M.data, M.indices, M.indptr):
        part.flags.writeable = False
    return M


def _reversed_rows(M):
    """The same CSR matrix with every row's entries stored in reverse order."""
    M = sp.csr_matrix(M)
    order = np.concatenate([np.arange(s, e)[::-1] for s, e in zip(M.indptr[:-1], M.indptr[1:],
                                                                  strict=True)])
    out = sp.csr_matrix((M.data[order], M.indices[order], M.indptr.copy()), shape=M.shape)
    out.has_sorted_indices = False
    return out


def _halves_stored_twice(M):
    """The same CSR matrix with every entry stored as two halves (exact in binary).

    Each row holds its entries, then the same entries again: repeated and unsorted.
    """
    M = sp.csr_matrix(M)
    rows = np.repeat(np.arange(M.shape[0]), np.diff(M.indptr))
    order = np.argsort(np.r_[rows, rows], kind="stable")
    data = (np.r_[M.data, M.data] / 2)[order]
    indices = np.r_[M.indices, M.indices][order]
    return sp.csr_matrix((data, indices, 2 * M.indptr), shape=M.shape)


def _int64_indices(M):
    M = sp.csr_matrix(M, copy=True)
    M.indices = M.indices.astype(np.int64)
    M.indptr = M.indptr.astype(np.int64)
    return M


def _memmap(tmp_path, a):
    path = tmp_path / "X.dat"
    out = np.memmap(path, dtype=a.dtype, mode="w+", shape=a.shape)
    out[:] = a
    out.flush()
    del out
    return np.memmap(path, dtype=a.dtype, mode="r", shape=a.shape)


X16 = X.astype(np.float16).astype(np.float64)
X_CSR = sp.csr_matrix(X)
X_WIDE = np.zeros((30, 10))
X_WIDE[:, ::2] = X

# case -> (variant, the canonical input it must match)
SAME_X = {
    "Fortran-ordered": (lambda tmp: np.asfortranarray(X), X),
    "strided view": (lambda tmp: X_WIDE[:, ::2], X),
    "read-only": (lambda tmp: _readonly(X), X),
    "memmap opened mode='r'": (lambda tmp: _memmap(tmp, X), X),
    "list of lists": (lambda tmp: X.tolist(), X),
    "object dtype of numbers": (lambda tmp: X.astype(object), X),
    "float16": (lambda tmp: X.astype(np.float16), X16),
    "float32": (lambda tmp: X.astype(np.float32), X.astype(np.float32)),
    "CSR with int64 indices": (lambda tmp: _int64_indices(X_CSR), X_CSR),
    "CSR with unsorted rows": (lambda tmp: _reversed_rows(X_CSR), X_CSR),
    "CSR with repeated entries": (lambda tmp: _halves_stored_twice(X_CSR), X_CSR),
    "read-only unsorted float32 CSR": (
        lambda tmp: _readonly_sparse(_reversed_rows(X_CSR.astype(np.float32))),
        X_CSR.astype(np.float32)),
    "read-only unsorted float64 CSR": (
        lambda tmp: _readonly_sparse(_reversed_rows(X_CSR)), X_CSR),
    "COO": (lambda tmp: sp.coo_matrix(X), X_CSR),
    "CSC": (lambda tmp: sp.csc_matrix(X), X_CSR),
    "LIL": (lambda tmp: sp.lil_matrix(X), X_CSR),
    "csr_array": (lambda tmp: sp.csr_array(X), X_CSR),
}


def _snapshot(a):
    """Copies of the arrays of ``a``, to check that a call leaves them untouched."""
    if sp.issparse(a):
        parts = [getattr(a, name) for name in ("indices", "indptr", "row", "col")
                 if hasattr(a, name)]
        return [np.array(part, copy=True) for part in parts] + [a.toarray()]
    return [np.array(a, copy=True)]


def _outputs(est, name, data):
    if name == "NadarayaWatsonSketch":
        return est.predict(data)
    return est.predict_proba(data)


@pytest.mark.parametrize("case", list(SAME_X))
@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_equivalent_X_gives_the_same_model(name, case, tmp_path):
    make, canonical = SAME_X[case]
    data = make(tmp_path)
    before = None if isinstance(data, list) else _snapshot(data)
    ref = _train(name, "fit", canonical)
    est = _train(name, "fit", data)
    np.testing.assert_array_equal(_outputs(est, name, canonical), _outputs(ref, name, canonical))
    np.testing.assert_array_equal(_outputs(ref, name, data), _outputs(ref, name, canonical))
    if before is not None:
        for old, new in zip(before, _snapshot(data), strict=True):
            np.testing.assert_array_equal(old, new)  # the caller's arrays are untouched


# ------------------------------------------------------------------ sample_weight

BAD_SAMPLE_WEIGHT = {
    "NaN": (np.r_[np.nan, np.ones(29)], "NaN"),
    "infinity": (np.r_[np.inf, np.ones(29)], "infinity"),
    "all zero": (np.zeros(30), "non-zero"),
    "negative": (np.r_[-1.0, np.ones(29)], "[Nn]egative"),
    "wrong length": (np.ones(29), r"\(29,\)"),
    "2-D": (np.ones((30, 1)), "1D array"),
    "strings": (np.full(30, "a"), "could not convert string to float"),
}


@pytest.mark.parametrize("case", list(BAD_SAMPLE_WEIGHT))
@pytest.mark.parametrize("method", ["fit", "partial_fit"])
@pytest.mark.parametrize("name", CLASSIFIERS)
def test_training_refuses_bad_sample_weight(name, method, case):
    weights, match = BAD_SAMPLE_WEIGHT[case]
    with pytest.raises(ValueError, match=match):
        _train(name, method, X, sample_weight=weights)


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_read_only_targets_and_weights_give_the_same_model(name):
    target = ESTIMATORS[name][1]
    weights = np.linspace(0.5, 1.5, 30)
    ref = _train(name, "fit", X, target, sample_weight=weights)
    est = _train(name, "fit", _readonly(X), _readonly(target), sample_weight=_readonly(weights))
    np.testing.assert_array_equal(est.predict_proba(X), ref.predict_proba(X))


# ------------------------------------------------------------------ class labels

BAD_CLASS_LABELS = {
    "NaN": (np.r_[np.nan, Y_CLASSES[1:]], "NaN"),
    "continuous": (Y_REG, "Unknown label type: continuous"),
    "None among strings": (np.array([None] + ["a"] * 29, dtype=object), "Unknown label type"),
    "wrong length": (Y_CLASSES[:29], "samples"),
    "a single class": (np.zeros(30, dtype=int), "greater than one"),
}
CLASS_LABEL_ESTIMATORS = [name for name in CLASSIFIERS if name not in MULTILABEL]


@pytest.mark.parametrize("case", list(BAD_CLASS_LABELS))
@pytest.mark.parametrize("name", CLASS_LABEL_ESTIMATORS)
def test_fit_refuses_bad_class_labels(name, case):
    target, match = BAD_CLASS_LABELS[case]
    with pytest.raises(ValueError, match=match):
        _train(name, "fit", X, target)


@pytest.mark.parametrize("name", CLASS_LABEL_ESTIMATORS)
def test_partial_fit_class_checks(name):
    est = _train(name, "partial_fit", X)
    with pytest.raises(ValueError, match="not in classes|do not include"):
        est.partial_fit(X, Y_CLASSES + 1)  # a class the first call did not announce
    with pytest.raises(ValueError, match="not the same|differs"):
        est.partial_fit(X, Y_CLASSES, classes=[0, 1])
    with pytest.raises(ValueError, match="not in classes|do not include"):
        ESTIMATORS[name][0]().partial_fit(X, Y_CLASSES, classes=[0, 1])
    with pytest.raises(ValueError, match="classes must be passed"):
        ESTIMATORS[name][0]().partial_fit(X, Y_CLASSES)


@pytest.mark.parametrize("name", CLASS_LABEL_ESTIMATORS)
def test_score_refuses_targets_of_the_wrong_length(name):
    with pytest.raises(ValueError, match="samples"):
        _fitted(name).score(X, Y_CLASSES[:3])


# ------------------------------------------------------------- multi-label indicators

BAD_INDICATORS = {
    "NaN": (lambda: np.where(Y_MULTI == 1, np.nan, 0.0), "NaN"),
    "value 2": (lambda: 2 * Y_MULTI, "binary indicator"),
    "value -1": (lambda: -Y_MULTI, "binary indicator"),
    "value 0.5": (lambda: Y_MULTI / 2, "Unknown label type|1d array"),
    "sparse, a label stored twice": (
        lambda: sp.csr_matrix((np.ones(31), np.r_[0, np.arange(30) % 6],
                               np.r_[0, np.arange(2, 32)]), shape=(30, 6)),
        "binary indicator.*repeated entries"),
    "wrong number of rows": (lambda: Y_MULTI[:29], "samples"),
    "3-D": (lambda: Y_MULTI[:, :, None], "dim 3|got 3 dimensions"),
}


@pytest.mark.parametrize("case", list(BAD_INDICATORS))
@pytest.mark.parametrize("method", ["fit", "partial_fit"])
@pytest.mark.parametrize("name", MULTILABEL)
def test_training_refuses_bad_indicators(name, method, case):
    make, match = BAD_INDICATORS[case]
    with pytest.raises(ValueError, match=match):
        _train(name, method, X, make())


def test_slide_score_refuses_bad_indicators():
    est = _fitted("SLIDEClassifier-multilabel")
    with pytest.raises(ValueError, match="binary indicator"):
        est.score(X, 2 * Y_MULTI)
    with pytest.raises(ValueError, match="4 columns but the model was fit on 6"):
        est.score(X, Y_MULTI[:, :4])


def test_indicator_needs_an_estimator_that_learns_multilabel_targets():
    with pytest.raises(ValueError, match="SGDClassifier does not learn multi-label"):
        ImportanceSampledClassifier().fit(X, Y_MULTI)


def test_indicator_changes_are_refused():
    est = _train("SLIDEClassifier-multilabel", "partial_fit", X)
    with pytest.raises(ValueError, match="7 columns but the model was fit on 6"):
        est.partial_fit(X, np.c_[Y_MULTI, Y_MULTI[:, :1]])
    with pytest.raises(ValueError, match="class labels but the model was fit on an indicator"):
        est.partial_fit(X, Y_CLASSES)
    with pytest.raises(ValueError, match="classes has 7 entries but y has 6 columns"):
        _slide().partial_fit(X, Y_MULTI, classes=np.arange(7))


def test_rows_without_labels_are_skipped_and_counted_or_learnt_as_negatives():
    Y = Y_MULTI.copy()
    Y[:4] = 0
    slide = _train("SLIDEClassifier-multilabel", "fit", X, Y)
    assert slide.n_samples_skipped_ == 4
    assert _train("SLIDEClassifier-multilabel", "fit", X, 0 * Y).n_samples_skipped_ == 30
    # a binary-relevance model learns them as all-negative rows
    mlp = _train("ImportanceSampledClassifier-multilabel", "fit", X, Y)
    assert np.all(np.isfinite(mlp.predict_proba(X)))


Y_CSR = sp.csr_matrix(Y_MULTI)


def _with_stored_zero(M):
    """The same CSR matrix with an explicit 0 stored at the end of its last row."""
    M = sp.csr_matrix(M)
    free = np.setdiff1d(np.arange(M.shape[1]), M.indices[M.indptr[-2] :])[0]
    return sp.csr_matrix((np.r_[M.data, 0], np.r_[M.indices, free],
                          np.r_[M.indptr[:-1], M.indptr[-1] + 1]), shape=M.shape)


SAME_Y = {
    "bool": lambda: Y_MULTI.astype(bool),
    "Fortran-ordered": lambda: np.asfortranarray(Y_MULTI),
    "read-only CSR": lambda: _readonly_sparse(Y_CSR),
    "read-only CSR with a stored zero": lambda: _readonly_sparse(_with_stored_zero(Y_CSR)),
    "CSR with unsorted rows": lambda: _reversed_rows(Y_CSR),
    "CSR with int64 indices": lambda: _int64_indices(Y_CSR),
    "float CSR": lambda: Y_CSR.astype(np.float64),
    "COO": lambda: sp.coo_matrix(Y_MULTI),
    "LIL": lambda: sp.lil_matrix(Y_MULTI),
    "csr_array": lambda: sp.csr_array(Y_MULTI),
}


@pytest.mark.parametrize("case", list(SAME_Y))
@pytest.mark.parametrize("name", MULTILABEL)
def test_equivalent_indicators_give_the_same_model(name, case):
    target = SAME_Y[case]()
    before = _snapshot(target)
    ref = _train(name, "fit", X, Y_CSR)
    est = _train(name, "fit", X, target)
    np.testing.assert_array_equal(est.predict_proba(X), ref.predict_proba(X))
    for old, new in zip(before, _snapshot(target), strict=True):
        np.testing.assert_array_equal(old, new)


# ------------------------------------------------------------------ predict_topk


@pytest.mark.parametrize("k", [0, -1, 2.5, 2.0, "2", None])
@pytest.mark.parametrize("name", ["SLIDEClassifier", "SLIDEClassifier-multilabel"])
def test_predict_topk_refuses_bad_k(name, k):
    with pytest.raises(ValueError, match="k must be a positive integer"):
        _fitted(name).predict_topk(X, k=k)


@pytest.mark.parametrize("name", ["SLIDEClassifier", "SLIDEClassifier-multilabel"])
def test_predict_topk_k_beyond_the_classes_ranks_them_all(name):
    est = _fitted(name)
    n_classes = len(est.classes_)
    everything, scores = est.predict_topk(X, k=n_classes)
    for k in (n_classes + 1, 1000, np.int64(n_classes + 3)):
        labels, more_scores = est.predict_topk(X, k=k)
        np.testing.assert_array_equal(labels, everything)
        np.testing.assert_array_equal(more_scores, scores)
    logits = est.decision_function(X) if n_classes > 2 else None
    np.testing.assert_array_equal(np.sort(everything, axis=1),
                                  np.tile(est.classes_, (len(X), 1)))
    np.testing.assert_allclose(scores, -np.sort(-logits, axis=1), rtol=1e-6)


# ------------------------------------------------------------------ samplers


@pytest.mark.parametrize("case", ["NaN", "infinity", "beyond float32", "complex"])
def test_nw_sketch_sampler_refuses_values_it_cannot_hash(case):
    match = {"complex": "complex"}.get(case, "NaN or infinity")
    with pytest.raises(ValueError, match=match):
        NWSketchSampler(random_state=0).start(BAD_X[case][0]())


@pytest.mark.parametrize("sampler", [UniformSampler, NWSketchSampler, ExactLossSampler])
@pytest.mark.parametrize("data, error, match", [
    (X[:, :, None], ValueError, "2-dimensional"),
    (X[:0], ValueError, "at least one row"),
    (X.tolist(), TypeError, "NumPy array"),
])
def test_samplers_refuse_bad_shapes(sampler, data, error, match):
    with pytest.raises(error, match=match):
        sampler().start(data, loss_fn=lambda rows: np.ones(len(rows)))


@pytest.mark.parametrize("case", [case for case in SAME_X if case != "list of lists"])
def test_nw_sketch_sampler_hashes_equivalent_X_alike(case, tmp_path):
    make, canonical = SAME_X[case]
    codes = NWSketchSampler(random_state=0).start(make(tmp_path))._codes
    ref = NWSketchSampler(random_state=0).start(canonical)._codes
    np.testing.assert_array_equal(codes, ref)


@pytest.mark.parametrize("indices, losses, error, match", [
    (np.arange(3), np.array([np.nan, 1, 1]), ValueError, "finite"),
    (np.array([0, 30]), np.ones(2), ValueError, r"lie in \[0, 30\)"),
    (np.array([-1, 0]), np.ones(2), ValueError, r"lie in \[0, 30\)"),
    (np.array([0.5, 1.2]), np.ones(2), TypeError, "integer row ids"),
    (np.arange(3), np.ones(2), ValueError, "same shape"),
])
def test_nw_sketch_sampler_observe_refuses_bad_losses(indices, losses, error, match):
    sampler = NWSketchSampler(random_state=0).start(X)
    with pytest.raises(error, match=match):
        sampler.observe(indices, losses)


@pytest.mark.parametrize("weights", [np.r_[np.nan, np.ones(29)], np.r_[-1, np.ones(29)]])
def test_run_epoch_refuses_bad_sample_weight(weights):
    sampler = UniformSampler().start(X)
    with pytest.raises(ValueError, match="finite and non-negative"):
        run_epoch(sampler, 10, lambda rows, w: np.ones(len(rows)), weights)


@pytest.mark.parametrize("target, match", [
    (np.r_[np.nan, Y_REG[1:]], "NaN"),
    (np.r_[1e39, Y_REG[1:]], "finite"),
    (Y_REG + 1j, "[Cc]omplex"),
    (np.full(30, "a"), "could not convert string to float"),
    (np.c_[Y_REG, Y_REG], "1d array"),
])
def test_nw_sketch_refuses_bad_targets(target, match):
    with pytest.raises(ValueError, match=match):
        _nw_sketch().fit(X, target)


# ------------------------------------------------------------------ metrics

Y_TRUE = np.array([[1, 0, 1, 0], [0, 1, 0, 0], [1, 1, 0, 0]])
Y_SCORE = np.array([[0.9, 0.8, 0.1, 0.0], [0.1, 0.7, 0.3, 0.2], [0.5, 0.4, 0.3, 0.2]])
RANKING = [precision_at_k, recall_at_k, ndcg_at_k, psp_at_k]

BAD_RANKING_INPUT = {
    "NaN in y_true": ({"y_true": np.where(Y_TRUE == 1, np.nan, 0)}, "binary indicator"),
    "sparse y_true storing a label twice": (
        {"y_true": sp.csr_matrix((np.ones(5), [0, 0, 2, 1, 0], [0, 3, 4, 5]), shape=(3, 4))},
        "binary indicator.*repeated entries"),
    "complex y_score": ({"y_score": Y_SCORE + 1j}, "complex"),
    "infinite y_score": ({"y_score": np.where(Y_SCORE > 0.8, np.inf, Y_SCORE)}, "infinity"),
    "3-D y_score": ({"y_score": Y_SCORE[:, :, None]}, "2-D array"),
    "NaN sample_weight": ({"sample_weight": [np.nan, 1, 1]}, "NaN"),
    "all-zero sample_weight": ({"sample_weight": np.zeros(3)}, "non-zero"),
}


@pytest.mark.parametrize("case", list(BAD_RANKING_INPUT))
@pytest.mark.parametrize("metric", RANKING, ids=lambda f: f.__name__)
def test_ranking_metrics_refuse_bad_input(metric, case):
    overrides, match = BAD_RANKING_INPUT[case]
    kwargs = {"y_true": Y_TRUE, "y_score": Y_SCORE, **overrides}
    with pytest.raises(ValueError, match=match):
        metric(**kwargs)


SAME_RANKING_INPUT = {
    "read-only sparse y_true with a stored zero": {
        "y_true": _readonly_sparse(_with_stored_zero(sp.csr_matrix(Y_TRUE)))},
    "unsorted sparse y_true": {"y_true": _reversed_rows(Y_TRUE)},
    "sparse y_true with int64 indices": {"y_true": _int64_indices(Y_TRUE)},
    "COO y_true": {"y_true": sp.coo_matrix(Y_TRUE)},
    "Fortran-ordered y_true": {"y_true": np.asfortranarray(Y_TRUE)},
    "float16 y_score": {"y_score": Y_SCORE.astype(np.float16)},
    "LIL y_score": {"y_score": sp.lil_matrix(Y_SCORE)},
}


@pytest.mark.parametrize("case", list(SAME_RANKING_INPUT))
@pytest.mark.parametrize("metric", RANKING, ids=lambda f: f.__name__)
def test_ranking_metrics_give_the_canonical_answer(metric, case):
    kwargs = {"y_true": Y_TRUE, "y_score": Y_SCORE, "k": 2, **SAME_RANKING_INPUT[case]}
    canonical = Y_SCORE.astype(np.float16).astype(np.float64) if "float16" in case else Y_SCORE
    canonical = sp.csr_matrix(canonical) if sp.issparse(kwargs["y_score"]) else canonical
    assert metric(**kwargs) == metric(Y_TRUE, canonical, k=2)


@pytest.mark.parametrize("metric", RANKING, ids=lambda f: f.__name__)
def test_sparse_scores_with_repeated_entries_are_summed(metric):
    stored_twice = _halves_stored_twice(Y_SCORE)
    assert metric(Y_TRUE, stored_twice, k=2) == metric(Y_TRUE, sp.csr_matrix(Y_SCORE), k=2)


@pytest.mark.parametrize("metric", [precision_at_k, recall_at_k, ndcg_at_k],
                         ids=lambda f: f.__name__)
def test_ranking_metrics_of_no_rows_are_zero(metric):
    assert metric(Y_TRUE[:0], Y_SCORE[:0]) == 0.0


def test_label_propensity_refuses_what_its_formula_cannot_take():
    with pytest.raises(ValueError, match="at least 3 rows, got 2"):
        label_propensity(Y_TRUE[:2])
    for constants in ({"A": np.nan}, {"A": np.inf}, {"B": 0}, {"B": np.nan}):
        name = next(iter(constants))
        with pytest.raises(ValueError, match=f"'{name}' parameter"):
            label_propensity(Y_TRUE, **constants)
        with pytest.raises(ValueError, match=f"'{name}' parameter"):
            psp_at_k(Y_TRUE, Y_SCORE, **constants)


@pytest.mark.parametrize("metric", [
    per_class_accuracy, lambda t, p: gzsl_scores(t, p, unseen_classes=[2])])
@pytest.mark.parametrize("y_true, y_pred, match", [
    ([0, 1, np.nan], [0, 1, 1], "y_true contains NaN"),
    ([0, 1, 2], [0, np.inf, 1], "y_pred contains NaN or infinity"),
    (np.ones((3, 2)), np.ones((3, 2)), "1d array"),
    ([0, 1, 1], [0, 1], "inconsistent numbers of samples"),
])
def test_zero_shot_metrics_refuse_bad_labels(metric, y_true, y_pred, match):
    with pytest.raises(ValueError, match=match):
        metric(y_true, y_pred)


# ------------------------------------------------------------------ datasets

X_DUMP = np.array([[0, 1.5], [2, 0]])
Y_DUMP = np.array([[1, 0], [0, 1]])


@pytest.mark.parametrize("data, labels, match", [
    (X_DUMP + 1j, Y_DUMP, "X has complex values"),
    (X_DUMP[:, :, None], Y_DUMP, "3D"),
    (np.full((2, 2), "a"), Y_DUMP, "could not convert string to float"),
    (X_DUMP, np.array([[np.nan, 1], [0, 1]]), "binary indicator"),
    (X_DUMP, -Y_DUMP, "binary indicator"),
    (X_DUMP, sp.csr_matrix((np.ones(3), [0, 0, 1], [0, 2, 3]), shape=(2, 2)),
     "binary indicator.*repeated entries"),
    (X_DUMP, Y_DUMP[:1], "X has 2 rows but Y has 1"),
])
def test_dump_xc_refuses_bad_input(data, labels, match, tmp_path):
    with pytest.raises(ValueError, match=match):
        dump_xc(data, labels, tmp_path / "out.txt")
    assert not (tmp_path / "out.txt").exists()


@pytest.mark.parametrize("data, labels", [
    (X_DUMP.astype(np.float16), Y_DUMP),
    (np.asfortranarray(X_DUMP), np.asfortranarray(Y_DUMP)),
    (_readonly_sparse(_reversed_rows(X_DUMP)), _readonly_sparse(_with_stored_zero(Y_DUMP))),
    (_halves_stored_twice(X_DUMP), sp.coo_matrix(Y_DUMP)),
    (_int64_indices(X_DUMP), _int64_indices(Y_DUMP)),
], ids=["float16", "Fortran", "read-only unsorted and stored zero", "repeated entries and COO",
        "int64 indices"])
def test_dump_xc_writes_equivalent_input_alike(data, labels, tmp_path):
    before = _snapshot(data) + _snapshot(labels)
    dump_xc(X_DUMP, Y_DUMP, tmp_path / "ref.txt")
    dump_xc(data, labels, tmp_path / "out.txt")
    assert (tmp_path / "out.txt").read_text() == (tmp_path / "ref.txt").read_text()
    for old, new in zip(before, _snapshot(data) + _snapshot(labels), strict=True):
        np.testing.assert_array_equal(old, new)


@pytest.mark.parametrize("text, message", [
    ("1 0 3\n0 0:1\n", r"feature index out of range \[0, 0\)"),
    ("1 4 0\n0 1:1\n", r"label index out of range \[0, 0\)"),
])
def test_load_xc_with_empty_axes(text, message, tmp_path):
    path = tmp_path / "data.txt"
    path.write_text(text)
    with pytest.raises(ValueError, match=f"line 2: {message}"):
        load_xc(path)


def test_load_xc_keeps_rows_without_labels(tmp_path):
    path = tmp_path / "data.txt"
    path.write_text("2 4 3\n 1:1\n0 2:1\n")
    _, Y = load_xc(path)
    np.testing.assert_array_equal(Y.toarray(), [[0, 0, 0], [1, 0, 0]])


@pytest.mark.parametrize("params, name", [
    ({"n_samples": 0}, "n_samples"),
    ({"n_labels": 1.5}, "n_labels"),
    ({"avg_labels_per_sample": np.nan}, "avg_labels_per_sample"),
    ({"avg_features_per_sample": np.inf}, "avg_features_per_sample"),
    ({"label_zipf_exponent": np.nan}, "label_zipf_exponent"),
    ({"noise_fraction": 1.5}, "noise_fraction"),
    ({"n_features": "10"}, "n_features"),
    ({"label_cluster_size": 0}, "label_cluster_size"),
    ({"cluster_shared_fraction": -0.1}, "cluster_shared_fraction"),
])
def test_make_extreme_classification_refuses_bad_parameters(params, name):
    kwargs = {"n_samples": 10, "n_features": 10, "n_labels": 5, **params}
    with pytest.raises(ValueError, match=f"'{name}' parameter"):
        make_extreme_classification(**kwargs)


def test_make_extreme_classification_caps_rows_at_n_features():
    X_gen, Y_gen = make_extreme_classification(10, 7, 3, avg_features_per_sample=1e12,
                                               avg_labels_per_sample=50, random_state=0)
    assert X_gen.shape == (10, 7) and np.all(np.diff(X_gen.indptr) <= 7)
    assert np.all(np.diff(Y_gen.indptr) <= 3)


def _xlsa17(tmp_path, **overrides):
    folder = tmp_path / "TINY"
    folder.mkdir()
    res = {"features": np.arange(12.0).reshape(2, 6), "labels": np.array([[1, 2, 1, 2, 3, 3]]).T}
    splits = {
        "att": np.eye(4, 3),
        "allclasses_names": np.array([["a"], ["b"], ["c"]], dtype=object),
        "trainval_loc": np.array([[1, 2, 3]]).T,
        "test_seen_loc": np.array([[4]]).T,
        "test_unseen_loc": np.array([[5, 6]]).T,
    }
    for key, value in overrides.items():
        (res if key in res else splits)[key] = value
    scipy.io.savemat(folder / "res101.mat", res)
    scipy.io.savemat(folder / "att_splits.mat", splits)
    return tmp_path


FEATURES = np.arange(12.0).reshape(2, 6)


@pytest.mark.parametrize("overrides, match", [
    ({"features": np.where(FEATURES == 1, np.nan, FEATURES)}, "features contains NaN"),
    ({"features": np.where(FEATURES == 1, np.inf, FEATURES)}, "features contains NaN or inf"),
    ({"features": np.where(FEATURES == 1, 1e39, FEATURES)}, "overflow float32"),
    ({"features": FEATURES + 1j}, "features has complex values"),
    ({"features": FEATURES[:, :, None] * np.ones(2)}, "features must be 2-D"),
    ({"att": np.where(np.eye(4, 3) == 1, np.nan, 0)}, "att contains NaN"),
    ({"labels": np.array([[1, 2, 1.5, 2, 3, 3]]).T}, "labels must be 1-based integers"),
    ({"trainval_loc": np.array([[1, np.nan, 3]]).T}, "trainval_loc must be 1-based"),
])
def test_load_xlsa17_refuses_bad_contents(overrides, match, tmp_path):
    with pytest.raises(ValueError, match=f"TINY.*{match}"):
        load_xlsa17(_xlsa17(tmp_path, **overrides), "TINY")


# ------------------------------------------------------------------ command line

CLI_OPTIONS = ["--epochs", "1", "--hidden-layer-size", "4", "--n-jobs", "1", "--progress",
               "none", "--random-state", "0"]


@pytest.fixture(scope="module")
def cli_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    X_gen, Y_gen = make_extreme_classification(60, 20, 8, random_state=0)
    dump_xc(X_gen, Y_gen, folder / "train.txt")
    assert main(["train", str(folder / "train.txt"), "-o", str(folder / "m.npz"),
                 *CLI_OPTIONS]) == 0
    return folder


@pytest.mark.parametrize("text, message", [
    ("0 20 8\n", "has no rows to train on"),
    ("2 0 3\n0\n1\n", "has no features to train on"),
    ("2 20 0\n 1:1\n 2:1\n", "has no labels to train on"),
])
def test_cli_train_refuses_empty_data(text, message, tmp_path, capsys):
    (tmp_path / "data.txt").write_text(text)
    assert main(["train", str(tmp_path / "data.txt"), "-o", str(tmp_path / "m.npz"),
                 *CLI_OPTIONS]) == 1
    assert capsys.readouterr().err.strip().endswith(message)
    assert not (tmp_path / "m.npz").exists()


@pytest.mark.parametrize("command, name, text, message", [
    ("predict", "nan.svm", "0 1:nan 2:1\n", "feature values must be finite"),
    ("predict", "inf.svm", "0 1:inf 2:1\n", "feature values must be finite"),
    ("predict", "big.svm", "0 1:1e39\n", "feature values must be finite"),
    ("evaluate", "half.svm", "1.5 1:1\n0 2:1\n0 3:1\n", "label ids must be integers"),
    ("evaluate", "nanlabel.svm", "nan 1:1\n0 2:1\n0 3:1\n", "label ids must be integers"),
    ("evaluate", "neg.svm", "-1 1:1\n0 2:1\n0 3:1\n", r"label ids must lie in \[0, 8\)"),
    ("evaluate", "empty.txt", "0 20 8\n", "has no rows to evaluate"),
    ("evaluate", "two.txt", "2 20 8\n0 1:1\n1 2:1\n", "at least 3 labelled rows"),
])
def test_cli_refuses_bad_data_files_in_one_line(command, name, text, message, cli_model,
                                                tmp_path, capsys):
    (tmp_path / name).write_text(text)
    assert main([command, str(cli_model / "m.npz"), str(tmp_path / name)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"sksketch {command}: error:") and err.count("\n") == 1
    assert re.search(message, err)


@pytest.mark.parametrize("option, value", [
    ("--propensity-a", "nan"), ("--propensity-b", "0"), ("--propensity-b", "inf"), ("-k", "0"),
])
def test_cli_refuses_bad_evaluate_options(option, value, cli_model, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["evaluate", str(cli_model / "m.npz"), str(cli_model / "train.txt"),
              option, value])
    assert exc.value.code == 2 and option in capsys.readouterr().err


# ------------------------------------- malformed sparse matrices, in a child process


def _csr(indices, indptr, shape):
    """A CSR matrix exactly as given: SciPy checks neither index range nor order."""
    return sp.csr_matrix((np.ones(len(indices)), np.asarray(indices, np.int32),
                          np.asarray(indptr, np.int32)), shape=shape)


MALFORMED_X = {
    "column index beyond n_features": (
        lambda: _csr(np.full(30, 10**9), np.arange(31), (30, 5)), "column indices outside"),
    "negative column index": (
        lambda: _csr(np.full(30, -1), np.arange(31), (30, 5)), "column indices outside"),
    "decreasing indptr": (
        lambda: _csr(np.zeros(30), np.r_[0, np.full(15, 20), np.full(15, 10)], (30, 5)),
        "malformed sparse matrix"),
    "CSC row index beyond n_samples": (
        lambda: sp.csc_matrix((np.ones(5), np.full(5, 10**6, np.int32),
                               np.arange(6, dtype=np.int32)), shape=(30, 5)),
        "row indices outside"),
}
MALFORMED_Y = {
    "label index beyond n_labels": (
        lambda: _csr(np.full(30, 10**9), np.arange(31), (30, 6)), "column indices outside"),
    "negative label index": (
        lambda: _csr(np.full(30, -1), np.arange(31), (30, 6)), "column indices outside"),
}


def _malformed_cases():
    cases = {}
    for name in ESTIMATORS:
        for case, (make, match) in MALFORMED_X.items():
            cases[f"{name}.fit: {case}"] = (lambda n=name, m=make: _train(n, "fit", m()), match)
            cases[f"{name}.predict: {case}"] = (
                lambda n=name, m=make: _fitted(n).predict(m()), match)
    for name in MULTILABEL:
        for case, (make, match) in MALFORMED_Y.items():
            cases[f"{name}.fit y: {case}"] = (
                lambda n=name, m=make: _train(n, "fit", X, m()), match)
    # the training kernel assumes distinct labels per row: a repeated one corrupts the heap
    cases["SLIDEClassifier.fit y: a label stored twice"] = (
        lambda: _train("SLIDEClassifier-multilabel", "fit", X,
                       BAD_INDICATORS["sparse, a label stored twice"][0]()),
        "binary indicator")
    cases["SLIDEClassifier.score y: label index beyond n_labels"] = (
        lambda: _fitted("SLIDEClassifier-multilabel").score(
            X, MALFORMED_Y["label index beyond n_labels"][0]()),
        "column indices outside")
    for metric in RANKING:
        cases[f"{metric.__name__}: y_true label index out of range"] = (
            lambda f=metric: f(_csr([5, 1, 0], [0, 1, 2, 3], (3, 4)), Y_SCORE),
            "y_true has column indices outside")
        cases[f"{metric.__name__}: y_score column index out of range"] = (
            lambda f=metric: f(Y_TRUE, _csr([5, 1, 0], [0, 1, 2, 3], (3, 4))),
            "y_score has column indices outside")
    cases["label_propensity: decreasing indptr"] = (
        lambda: label_propensity(_csr([0, 1, 2], [0, 2, 1, 3], (3, 4))), "malformed")
    cases["dump_xc: X column index out of range"] = (
        lambda: dump_xc(_csr([0, 10**9], [0, 1, 2], (2, 2)), Y_DUMP, "unused.txt"),
        "X has column indices outside")
    cases["dump_xc: Y label index out of range"] = (
        lambda: dump_xc(X_DUMP, _csr([0, 5], [0, 1, 2], (2, 2)), "unused.txt"),
        "Y has column indices outside")
    for sampler in (UniformSampler, NWSketchSampler):
        for case, (make, match) in MALFORMED_X.items():
            cases[f"{sampler.__name__}.start: {case}"] = (
                lambda s=sampler, m=make: s().start(m()), match)
    return cases


MALFORMED = _malformed_cases()

_CHILD = """
import json, sys, warnings
sys.path.insert(0, {tests!r})
warnings.simplefilter("ignore")
import test_bad_input as cases
for name in sys.argv[1:]:
    print(json.dumps({{"start": name}}), flush=True)
    try:
        cases.MALFORMED[name][0]()
        result = {{"case": name, "error": None, "message": ""}}
    except Exception as exc:
        result = {{"case": name, "error": type(exc).__name__, "message": str(exc)}}
    print(json.dumps(result), flush=True)
"""


@pytest.fixture(scope="module")
def malformed_results():
    """Run every malformed case in child processes; a crash ends one case, not the run."""
    script = _CHILD.format(tests=str(Path(__file__).parent))
    results, pending = {}, list(MALFORMED)
    while pending:
        started = None
        try:
            proc = subprocess.run([sys.executable, "-c", script, *pending], capture_output=True,
                                  text=True, timeout=240)
            stdout, failure = proc.stdout, f"exit status {proc.returncode}: {proc.stderr[-2000:]}"
        except subprocess.TimeoutExpired as exc:
            stdout, failure = exc.stdout or "", "hung"
            stdout = stdout.decode() if isinstance(stdout, bytes) else stdout
        for line in stdout.splitlines():
            record = json.loads(line)
            if "start" in record:
                started = record["start"]
            else:
                results[record["case"]] = record
                started = None
        if started is not None:
            results[started] = {"case": started, "error": "crashed", "message": failure}
        elif not stdout:
            raise RuntimeError(f"the child process failed before any case: {failure}")
        pending = [name for name in pending if name not in results]
    return results


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_sparse_input_is_refused_without_crashing(case, malformed_results):
    result = malformed_results[case]
    assert result["error"] == "ValueError", result
    assert re.search(MALFORMED[case][1], result["message"]), result
