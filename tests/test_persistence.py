"""Pickle and joblib round trips, and the version stamp of saved models."""

import io
import pickle
import warnings

import joblib
import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.base import clone, is_classifier

import sksketch
import sksketch.base
from sksketch import SLIDEClassifier
from sksketch.base import IncompatibleVersionError, InconsistentVersionWarning
from sksketch.datasets import make_extreme_classification
from sksketch.utils import all_estimators

ESTIMATORS = [cls for _, cls in all_estimators()]


def _small_problem():
    X, Y = make_extreme_classification(300, 200, 40, avg_labels_per_sample=1, random_state=0)
    y = np.asarray(Y.argmax(axis=1)).ravel()
    return X, y


def _outputs(est, X):
    out = {}
    for method in ("predict", "predict_proba", "decision_function"):
        if hasattr(est, method):
            value = getattr(est, method)(X)
            out[method] = value.toarray() if sp.issparse(value) else np.asarray(value)
    if hasattr(est, "predict_topk"):
        out["predict_topk"] = np.concatenate([np.asarray(a, dtype=np.float64)
                                              for a in est.predict_topk(X, k=3)])
    return out


def _round_trips(est):
    yield "pickle", pickle.loads(pickle.dumps(est, protocol=pickle.HIGHEST_PROTOCOL))
    buffer = io.BytesIO()
    joblib.dump(est, buffer)
    buffer.seek(0)
    yield "joblib", joblib.load(buffer)


@pytest.mark.parametrize("cls", ESTIMATORS, ids=lambda c: c.__name__)
def test_round_trip_is_exact(cls):
    est = cls(**getattr(cls, "_test_params", {}))
    if hasattr(est, "fit") and hasattr(est, "predict"):
        X, y = _small_problem()
        if not is_classifier(est):
            y = np.sin(y).astype(np.float64) + np.asarray(X.sum(axis=1)).ravel()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est.fit(X, y)
        expected = _outputs(est, X)
        assert expected, f"{cls.__name__} has no prediction method"
        for how, loaded in _round_trips(est):
            got = _outputs(loaded, X)
            assert got.keys() == expected.keys()
            for method, value in expected.items():
                np.testing.assert_array_equal(got[method], value, err_msg=f"{how} {method}")
            # a loaded model predicts like the original, and keeps predicting so
            np.testing.assert_array_equal(_outputs(loaded, X)["predict"], expected["predict"])
    else:
        for _, loaded in _round_trips(est):
            assert type(loaded) is cls
            assert loaded.get_params() == clone(est).get_params()


@pytest.mark.parametrize("cls", ESTIMATORS, ids=lambda c: c.__name__)
def test_pickle_carries_the_version(cls):
    est = cls(**getattr(cls, "_test_params", {}))
    state = est.__getstate__()
    assert state["_sksketch_version"] == sksketch.__version__
    # the stamp is metadata of the pickle, not an attribute of the loaded object
    assert not hasattr(pickle.loads(pickle.dumps(est)), "_sksketch_version")


def _fitted():
    X, y = _small_problem()
    return SLIDEClassifier(hidden_layer_size=16, max_iter=1, random_state=0).fit(X, y), X


@pytest.mark.parametrize("saved", ["0.0.9", "1.0.5", "1.2.0", "2.1.3", "unknown", None])
def test_loading_across_series_refuses_with_a_clear_message(saved, monkeypatch):
    monkeypatch.delenv("SKSKETCH_ALLOW_VERSION_MISMATCH", raising=False)
    monkeypatch.setattr(sksketch.base, "__version__", "1.1.3")
    clf, _ = _fitted()
    state = clf.__getstate__()
    if saved is None:
        del state["_sksketch_version"]
    else:
        state["_sksketch_version"] = saved
    with pytest.raises(IncompatibleVersionError) as exc:
        SLIDEClassifier.__new__(SLIDEClassifier).__setstate__(state)
    message = str(exc.value)
    assert "SLIDEClassifier" in message and "sksketch 1.1.3" in message
    assert "major.minor" in message and "SKSKETCH_ALLOW_VERSION_MISMATCH" in message
    if saved is not None:
        assert f"sksketch {saved}" in message


def test_a_whole_pickle_from_another_series_refuses(monkeypatch):
    monkeypatch.delenv("SKSKETCH_ALLOW_VERSION_MISMATCH", raising=False)
    clf, _ = _fitted()
    monkeypatch.setattr(sksketch.base, "__version__", "97.3.0")
    data = pickle.dumps(clf)
    monkeypatch.setattr(sksketch.base, "__version__", "98.0.0")
    with pytest.raises(IncompatibleVersionError, match="saved with sksketch 97.3.0"):
        pickle.loads(data)


@pytest.mark.parametrize("saved", ["1.1.0", "1.1.7", "1.1.4.dev0", "1.1.3rc1"])
def test_same_series_loads_silently(saved, monkeypatch):
    monkeypatch.setattr(sksketch.base, "__version__", "1.1.3")
    clf, X = _fitted()
    state = clf.__getstate__()
    state["_sksketch_version"] = saved
    loaded = SLIDEClassifier.__new__(SLIDEClassifier)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded.__setstate__(state)
    np.testing.assert_array_equal(loaded.predict(X), clf.predict(X))


def test_override_turns_the_error_into_a_warning(monkeypatch):
    monkeypatch.setenv("SKSKETCH_ALLOW_VERSION_MISMATCH", "1")
    clf, X = _fitted()
    monkeypatch.setattr(sksketch.base, "__version__", "97.3.0")
    data = pickle.dumps(clf)
    monkeypatch.setattr(sksketch.base, "__version__", "98.0.0")
    with pytest.warns(InconsistentVersionWarning, match="at your own risk"):
        loaded = pickle.loads(data)
    np.testing.assert_array_equal(loaded.predict(X), clf.predict(X))


def test_restored_weight_rows_start_on_cache_lines(tmp_path):
    # The kernels read a weight row with 64-byte loads; pickle and
    # sksketch.load give arrays 16 bytes past a cache line, and the restored
    # model puts its rows back (a memory map stays one).
    X, y = _small_problem()
    est = SLIDEClassifier(hidden_layer_size=32, max_iter=1, random_state=0).fit(X, y)
    expected = _outputs(est, X)
    names = ("input_weights_", "output_weights_")

    def offsets(model):
        arrays = [getattr(model, n) for n in names] + [
            model._adam[k] for k in ("m_in", "v_in", "m_out", "v_out")]
        return [a.ctypes.data % 64 for a in arrays]

    assert offsets(est) == [0] * 6
    buffer = io.BytesIO()
    sksketch.save(est, buffer)
    buffer.seek(0)
    for name, restored in [*_round_trips(est), ("load", sksketch.load(buffer))]:
        assert offsets(restored) == [0] * 6, name
        got = _outputs(restored, X)
        for method, value in expected.items():
            np.testing.assert_array_equal(got[method], value, err_msg=f"{name}: {method}")
    joblib.dump(est, tmp_path / "model.joblib")
    mapped = joblib.load(tmp_path / "model.joblib", mmap_mode="r")
    assert all(isinstance(getattr(mapped, n), np.memmap) for n in names)
    for method, value in expected.items():
        np.testing.assert_array_equal(_outputs(mapped, X)[method], value)
