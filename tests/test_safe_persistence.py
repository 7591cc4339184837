"""sksketch.save / sksketch.load: models stored as data and loaded without pickle."""

import copy
import io
import json
import pickle
import warnings
import zipfile

import joblib
import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.base import clone, is_classifier
from sklearn.linear_model import SGDClassifier
from sklearn.naive_bayes import BernoulliNB
from sklearn.neural_network import MLPClassifier
from sksketch._kernels._lsh import LSHTables

import sksketch
import sksketch.base
from sksketch import ImportanceSampledClassifier, SLIDEClassifier, ZeroShotSoftLabelClassifier
from sksketch import _sklearn_state as sklearn_state
from sksketch.base import IncompatibleVersionError
from sksketch.datasets import make_extreme_classification
from sksketch.utils import all_estimators

ESTIMATORS = [cls for _, cls in all_estimators()]
# small models, so that the whole file runs in a few seconds
SMALL = {
    SLIDEClassifier: {"hidden_layer_size": 16, "n_tables": 4, "n_buckets_log2": 8, "max_iter": 2},
    ImportanceSampledClassifier: {"max_iter": 3},
}


def _make(cls, **params):
    return cls(**{**getattr(cls, "_test_params", {}), **SMALL.get(cls, {}), "random_state": 0,
                  **params})


@pytest.fixture(scope="module")
def data():
    X, Y = make_extreme_classification(200, 50, 12, avg_labels_per_sample=1, random_state=0)
    y = np.asarray(Y.argmax(axis=1)).ravel()
    return X, y, Y


def _target(est, X, y):
    return y if is_classifier(est) else np.sin(y) + np.asarray(X.sum(axis=1)).ravel()


def _fit(est, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return est.fit(X, y)


def _train_more(est, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return est.update(X, y) if hasattr(est, "update") else est.partial_fit(X, y)


def _outputs(est, X):
    out = {}
    for method in ("predict", "predict_proba", "decision_function"):
        if hasattr(est, method):
            value = getattr(est, method)(X)
            out[method] = value.toarray() if sp.issparse(value) else np.asarray(value)
    if hasattr(est, "predict_topk"):
        labels, scores = est.predict_topk(X, k=3)
        out["predict_topk"] = (np.asarray(labels), np.asarray(scores))
    return out


def _assert_same_outputs(a, b, X):
    expected, got = _outputs(a, X), _outputs(b, X)
    assert expected and got.keys() == expected.keys()
    for method, value in expected.items():
        np.testing.assert_array_equal(got[method], value, err_msg=method)


def _to_bytes(est, **kwargs):
    buffer = io.BytesIO()
    sksketch.save(est, buffer, **kwargs)
    return buffer.getvalue()


def _load_bytes(data):
    return sksketch.load(io.BytesIO(data))


def _round_trip(est):
    return _load_bytes(_to_bytes(est))


# ------------------------------------------------------------------ round trips


@pytest.mark.parametrize("cls", ESTIMATORS, ids=lambda c: c.__name__)
def test_round_trip_predicts_and_trains_on_identically(cls, data, tmp_path):
    X, y, _ = data
    est = _make(cls)
    target = _target(est, X, y)
    _fit(est, X, target)
    path = tmp_path / "model.npz"
    sksketch.save(est, path)
    loaded = sksketch.load(path)
    assert type(loaded) is cls
    assert repr(loaded.get_params()) == repr(est.get_params())
    _assert_same_outputs(est, loaded, X)
    # the generators, optimiser state and sampler sketches travel too
    _train_more(est, X, target)
    _train_more(loaded, X, target)
    _assert_same_outputs(est, loaded, X)


@pytest.mark.parametrize("cls", ESTIMATORS, ids=lambda c: c.__name__)
def test_unfitted_round_trip_keeps_the_parameters(cls):
    est = _make(cls)
    loaded = _round_trip(est)
    assert type(loaded) is cls
    assert loaded.get_params() == clone(est).get_params()
    assert set(vars(loaded)) == set(vars(est))


def test_slide_multilabel_bfloat16_with_sketch_sampling(data):
    X, _, Y = data
    est = _make(SLIDEClassifier, precision="bfloat16", sampler="nw-sketch", inference="lsh",
                min_active_labels=4, max_active_labels=6, negative_sampling="lsh-embedding")
    _fit(est, X, Y)
    est.predict(X[:5])  # caches the inference tables, which are saved too
    loaded = _round_trip(est)
    assert loaded._adam["m_out"].dtype == np.uint16
    _assert_same_outputs(est, loaded, X)
    _train_more(est, X, Y)
    _train_more(loaded, X, Y)
    _assert_same_outputs(est, loaded, X)


def test_importance_sampling_around_a_multilabel_mlp(data):
    X, _, Y = data
    est = ImportanceSampledClassifier(MLPClassifier((8,), random_state=0), sampler="exact-loss",
                                      batch_size=50, max_iter=2, random_state=0)
    _fit(est, X, Y.toarray())
    loaded = _round_trip(est)
    _assert_same_outputs(est, loaded, X)
    _train_more(est, X, Y.toarray())
    _train_more(loaded, X, Y.toarray())
    _assert_same_outputs(est, loaded, X)


def test_save_method_and_compression(data):
    X, y, _ = data
    est = _fit(_make(SLIDEClassifier), X, y)
    buffer = io.BytesIO()
    est.save(buffer)
    assert buffer.getvalue() == _to_bytes(est)
    compressed = _to_bytes(est, compress=True)
    assert len(compressed) < len(buffer.getvalue())
    _assert_same_outputs(est, _load_bytes(compressed), X)


def test_the_file_is_plain_npz_and_json(data, tmp_path):
    X, y, _ = data
    est = _fit(_make(SLIDEClassifier), X, y)
    path = tmp_path / "model.npz"
    est.save(path)
    with np.load(path, allow_pickle=False) as npz:
        np.testing.assert_array_equal(npz["output_weights_"], est.output_weights_)
        metadata = json.loads(npz["metadata.json"])
    assert metadata["format"] == "sksketch-model" and metadata["format_version"] == 1
    assert metadata["sksketch_version"] == sksketch.__version__
    assert metadata["estimator"] == "sksketch._slide.SLIDEClassifier"
    assert metadata["params"]["n_tables"] == 4
    assert metadata["state"]["output_weights_"] == {
        "type": "array", "key": "output_weights_", "dtype": "<f4",
        "shape": list(est.output_weights_.shape), "fortran_order": False,
    }


def test_shared_objects_stay_shared(data):
    X, y, _ = data
    est = _fit(_make(SLIDEClassifier), X, y)
    shared = np.zeros(3)
    est.first_, est.second_ = shared, [shared, est._rng]
    loaded = _round_trip(est)
    assert loaded.second_[0] is loaded.first_
    assert loaded.second_[1] is loaded._rng
    assert (getattr(loaded.sampler_, "_rng", None) is loaded._rng) == (
        getattr(est.sampler_, "_rng", None) is est._rng
    )


def test_string_labels_in_an_object_array(data):
    X, y, _ = data
    labels = np.array([f"class {v}" for v in y], dtype=object)
    est = _fit(_make(SLIDEClassifier), X, labels)
    loaded = _round_trip(est)
    assert loaded.classes_.dtype == object
    _assert_same_outputs(est, loaded, X)


def test_load_never_unpickles(data, monkeypatch):
    X, y, _ = data
    est = _fit(_make(ImportanceSampledClassifier, sampler="nw-sketch"), X, y)
    payload = _to_bytes(est)

    def refuse(*args, **kwargs):
        raise AssertionError("pickle used")

    np_load = np.load

    def load_without_pickle(*args, **kwargs):
        assert not kwargs.get("allow_pickle", False), "np.load(allow_pickle=True)"
        return np_load(*args, **kwargs)

    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)
    monkeypatch.setattr(np, "load", load_without_pickle)
    loaded = _load_bytes(payload)
    _assert_same_outputs(est, loaded, X)


# ------------------------------------------------------------------ what save refuses


def test_a_wrapped_estimator_outside_the_allowlist_is_refused(data):
    X, y, _ = data
    est = ImportanceSampledClassifier(BernoulliNB(), max_iter=1)
    with pytest.raises(TypeError, match=r"BernoulliNB.*pickle or joblib.*skops"):
        _to_bytes(est)
    with pytest.raises(TypeError, match="BernoulliNB"):
        _to_bytes(_fit(est, X, y))


def test_object_arrays_other_than_strings_are_refused(data):
    est = _make(SLIDEClassifier)
    est.classes_ = np.array([1, "a"], dtype=object)
    with pytest.raises(TypeError, match="classes_"):
        _to_bytes(est)


def test_only_sksketch_models_are_saved():
    with pytest.raises(TypeError, match="skops"):
        _to_bytes(MLPClassifier())


# ------------------------------------------------------------------ tampered files


@pytest.fixture(scope="module")
def slide(data):
    X, y, _ = data
    # few active labels, so that training builds the hash tables
    est = _fit(_make(SLIDEClassifier, sampler="nw-sketch", min_active_labels=4,
                     max_active_labels=6, negative_sampling="lsh-embedding"), X, y)
    assert est.lsh_tables_.n_items == len(est.classes_)
    return est, _to_bytes(est)


def _members(payload):
    with zipfile.ZipFile(io.BytesIO(payload)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def _pack(members):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def _npy(array, allow_pickle=False):
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=allow_pickle)
    return buffer.getvalue()


def _nodes(tree):
    if isinstance(tree, dict):
        yield tree
        for value in tree.values():
            yield from _nodes(value)
    elif isinstance(tree, list):
        for value in tree:
            yield from _nodes(value)


def _tamper(payload, edit=None, arrays=(), keep_metadata=False):
    """Rewrite a model file: `edit(metadata)` in place, and replace arrays by key
    (updating their recorded dtype and shape unless `keep_metadata`)."""
    members = _members(payload)
    metadata = json.loads(members["metadata.json"])
    for key, value in dict(arrays).items():
        members[f"{key}.npy"] = _npy(value, allow_pickle=value.dtype == object)
        for node in _nodes(metadata):
            if node.get("type") == "array" and node.get("key") == key and not keep_metadata:
                node.update(dtype=value.dtype.str, shape=list(value.shape),
                            fortran_order=not value.flags.c_contiguous)
    if edit is not None:
        edit(metadata)
    members["metadata.json"] = json.dumps(metadata).encode()
    return _pack(members)


def _array(payload, key):
    with np.load(io.BytesIO(payload), allow_pickle=False) as npz:
        return npz[key]


def test_untampered_file_loads(slide):
    est, payload = slide
    assert type(_load_bytes(_tamper(payload))) is SLIDEClassifier


def test_truncated_and_corrupt_files_name_the_file(slide, tmp_path):
    _, payload = slide
    path = tmp_path / "broken.npz"
    for content, message in [
        (payload[: len(payload) // 2], "truncated or corrupt"),
        (payload[:-30], "truncated or corrupt"),
        (b"", "empty"),
        (b"\x80\x04K\x01.", "not a zip archive"),
    ]:
        path.write_bytes(content)
        with pytest.raises(ValueError, match=message) as exc:
            sksketch.load(path)
        assert "broken.npz" in str(exc.value)


def test_a_flipped_byte_in_an_array_is_detected(slide):
    _, payload = slide
    data = bytearray(payload)
    weights = _array(payload, "output_weights_").tobytes()
    start = bytes(data).index(weights)
    data[start + len(weights) // 2] ^= 0xFF
    with pytest.raises(ValueError, match="output_weights_.*unreadable"):
        _load_bytes(bytes(data))


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda m: m.update(format="something-else"), "not an sksketch model file"),
        (lambda m: m.update(format_version=2), "format version 2 is newer"),
        (lambda m: m.update(format_version="1"), "malformed format version"),
        (lambda m: m.update(extra=1), "exactly the fields"),
        (lambda m: m.update(estimator="os.system"), "'os.system' is not one a model file"),
        (lambda m: m["state"]["sampler_"].update(**{"class": "builtins.eval"}),
         "'builtins.eval' is not one a model file may hold"),
        (lambda m: m["state"]["lsh_tables_"].update(**{"class": "sksketch._slide.SLIDEClassifier"}),
         "SLIDEClassifier cannot be a reduce node"),
        (lambda m: m["params"].update(no_such_parameter=1), r"no parameters \['no_such"),
        (lambda m: m["params"].pop("n_tables"), r"parameters \['n_tables'\] are missing"),
        (lambda m: m["state"].update(predict=1), "cannot have an attribute 'predict'"),
        (lambda m: m["state"].update(__class__="x"), "cannot have an attribute '__class__'"),
        (lambda m: m["state"].update(_rng={"type": "ref", "id": 999}), "no earlier node defines"),
        (lambda m: m["state"].update(t_={"type": "lambda"}), "unknown node type 'lambda'"),
        (lambda m: m["state"].update(t_={"type": "float", "value": "1e400"}), "bad float"),
        (lambda m: m["params"].update(hidden_layer_size=32), "hidden_layer_size=32"),
        (lambda m: m["state"]["output_weights_"].update(key="../../etc/passwd"),
         "malformed array key"),
        (lambda m: m["state"]["output_weights_"].update(key="missing"), "'missing' is missing"),
        (lambda m: m["state"]["output_weights_"].update(dtype="|O"),
         "booleans, numbers and strings only"),
        (lambda m: m["state"]["output_weights_"].update(shape=[3, 16]),
         r"has shape \(12, 16\), the metadata records \(3, 16\)"),
        (lambda m: m["state"]["output_weights_"].update(dtype="<f8"),
         "has dtype <f4, the metadata records <f8"),
    ],
)
def test_tampered_metadata_is_refused(slide, edit, message):
    _, payload = slide
    with pytest.raises(ValueError, match=message):
        _load_bytes(_tamper(payload, edit))


def test_invalid_json_is_refused(slide):
    members = _members(slide[1])
    members["metadata.json"] = members["metadata.json"][:-10]
    with pytest.raises(ValueError, match="metadata.json is unreadable"):
        _load_bytes(_pack(members))
    members["metadata.json"] = b'{"format": NaN}'
    with pytest.raises(ValueError, match="non-standard JSON constant NaN"):
        _load_bytes(_pack(members))


def test_another_release_series_is_refused(slide, monkeypatch):
    monkeypatch.delenv("SKSKETCH_ALLOW_VERSION_MISMATCH", raising=False)
    payload = _tamper(slide[1], lambda m: m.update(sksketch_version="97.3.0"))
    with pytest.raises(IncompatibleVersionError, match="saved with sksketch 97.3.0"):
        _load_bytes(payload)
    monkeypatch.setenv("SKSKETCH_ALLOW_VERSION_MISMATCH", "1")
    with pytest.warns(sksketch.base.InconsistentVersionWarning):
        _load_bytes(payload)


def test_arrays_changed_consistently_with_the_metadata_fail_the_model_checks(slide):
    est, payload = slide
    L, H = est.output_weights_.shape
    cases = [
        ({"output_weights_": np.zeros((L - 1, H), np.float32)},
         r"output_weights_ has shape \(11, 16\), expected \(12, 16\)"),
        ({"output_weights_": est.output_weights_.astype(np.float64)},
         "output_weights_ has dtype float64, expected float32"),
        ({"input_bias_": np.zeros(H + 1, np.float32)}, r"input_bias_ has shape \(17,\)"),
        ({"_adam.m_out": np.zeros((L, H - 1), np.float32)}, r"_adam\['m_out'\] has shape"),
        ({"classes_": np.arange(L + 3)}, "output_weights_ has shape"),
        ({"_label_counts": np.zeros(L, np.int32)}, "_label_counts has dtype int32"),
        ({"output_weights_": np.asfortranarray(np.ones((L, H), np.float32))},
         "must be C-contiguous"),
    ]
    for arrays, message in cases:
        with pytest.raises(ValueError, match=message):
            _load_bytes(_tamper(payload, arrays=arrays))


def test_array_members_disagreeing_with_the_metadata_are_refused(slide):
    est, payload = slide
    changed = _tamper(payload, arrays={"output_bias_": np.zeros(3, np.float32)},
                      keep_metadata=True)
    with pytest.raises(ValueError, match=r"'output_bias_' has shape \(3,\)"):
        _load_bytes(changed)


def test_ids_out_of_range_are_refused(slide, data):
    est, payload = slide
    state = est.lsh_tables_.__getstate__()
    ids = state["ids"].copy()
    ids[0] = est.output_weights_.shape[0] + 5
    with pytest.raises(ValueError, match="LSHTables rejects its state.*ids out of range"):
        _load_bytes(_tamper(payload, arrays={"lsh_tables_.state.ids": ids}))
    offsets = state["offsets"].copy()
    offsets[-1] = 10**6
    with pytest.raises(ValueError, match="bucket offsets"):
        _load_bytes(_tamper(payload, arrays={"lsh_tables_.state.offsets": offsets}))
    # sizes the constructor's own checks do not cover
    with pytest.raises(ValueError, match="coords must be a 1-d int32 array"):
        _load_bytes(_tamper(payload, arrays={"lsh_tables_.state.coords": state["coords"][:-1]}))
    with pytest.raises(ValueError, match="LSHTables: invalid item count"):
        _load_bytes(_tamper(payload, lambda m: m["state"]["lsh_tables_"]["state"]["items"]
                            .update(n_items=-1)))
    with pytest.raises(ValueError, match=r"sums must be a float32 array of shape \(32, 256\)"):
        _load_bytes(_tamper(payload, arrays={
            "sampler_.sketch_.kernel.state.0": np.zeros((32, 255))}))

    X, y, _ = data
    zsl = ZeroShotSoftLabelClassifier(
        np.eye(14, dtype=np.float32), classes=np.arange(14), hidden_layer_sizes=(8,),
        max_iter=1, random_state=0,
    )
    zsl_payload = _to_bytes(_fit(zsl, X, y))
    unseen = np.array([2, 14], dtype=np.int32)
    with pytest.raises(ValueError, match=r"_unseen_ids holds ids outside \[0, 14\)"):
        _load_bytes(_tamper(zsl_payload, arrays={"_unseen_ids": unseen}))


def test_python_objects_in_the_archive_are_refused(slide):
    _, payload = slide
    injected = np.array([print], dtype=object)
    with pytest.raises(ValueError, match="holds Python objects"):
        _load_bytes(_tamper(payload, arrays={"output_bias_": injected}, keep_metadata=True))
    members = _members(payload)
    members["extra.npy"] = _npy(np.zeros(3))
    with pytest.raises(ValueError, match=r"members no node refers to: \['extra.npy'\]"):
        _load_bytes(_pack(members))
    members = _members(payload)
    members["output_bias_.npy"] = b"not an array"
    with pytest.raises(ValueError, match="'output_bias_.npy' is not an array"):
        _load_bytes(_pack(members))


def test_values_are_loaded_as_saved(slide, data):
    # NaN weights are data, not a fault of the file: they load (and predict NaN
    # scores) exactly as a pickle of a diverged model would
    est, payload = slide
    X, _, _ = data
    weights = est.output_bias_.copy()
    weights[0] = np.nan
    loaded = _load_bytes(_tamper(payload, arrays={"output_bias_": weights}))
    assert np.isnan(loaded.decision_function(X)[:, 0]).all()


# ------------------------------------------------------------------ tampered pickles
# Unpickling runs the checks sksketch.load runs: a pickle (or joblib file)
# whose state would break the model raises the same ValueError.


def _with(obj, **attributes):
    """A shallow copy of `obj` with `attributes` replaced, as a tampered file would hold."""
    tampered = copy.copy(obj)
    vars(tampered).update(attributes)
    return tampered


def _refused_like_load(tampered, message):
    """Unpickling `tampered` raises what sksketch.load of it raises; returns the message."""
    with pytest.raises(ValueError, match=message) as from_pickle:
        pickle.loads(pickle.dumps(tampered))
    buffer = io.BytesIO()
    joblib.dump(tampered, buffer)
    buffer.seek(0)
    with pytest.raises(ValueError, match=message) as from_joblib:
        joblib.load(buffer)
    with pytest.raises(ValueError, match=message) as from_file:
        _round_trip(tampered)
    assert type(from_pickle.value) is type(from_joblib.value)
    assert str(from_joblib.value) == str(from_pickle.value)
    assert str(from_file.value).endswith(f": {from_pickle.value}")
    return str(from_pickle.value)


def test_tampered_pickles_are_refused_like_tampered_files(slide):
    est, _ = slide
    L, H = est.output_weights_.shape
    adam = dict(est._adam, m_out=np.zeros((L, H + 1), np.float32))
    other_tables = LSHTables("dwta", H + 2, 2, 4, 8, "fifo", 6, 0)
    cases = [
        ({"output_weights_": np.zeros((L - 1, H), np.float32)},
         r"SLIDEClassifier: output_weights_ has shape \(11, 16\), expected \(12, 16\)$"),
        ({"output_bias_": est.output_bias_.astype(np.float64)},
         "output_bias_ has dtype float64, expected float32"),
        ({"_adam": adam}, r"_adam\['m_out'\] has shape \(12, 17\)"),
        ({"_frequent_cache": (3, np.array([0, L + 5], np.int32))},
         r"_frequent_cache holds ids outside \[0, 12\)"),
        ({"lsh_tables_": other_tables}, "lsh_tables_ hash vectors of length 18"),
        ({"hidden_layer_size": 32}, "hidden_layer_size=32 but the weights have 16 units"),
        ({"sampler_": "uniform"}, "sampler_ must be a sampler, found str"),
        ({"_rng": np.random.default_rng(0)}, "_rng must be a RandomState"),
        ({"input_weights_": None}, "input_weights_ is missing"),
    ]
    for attributes, message in cases:
        _refused_like_load(_with(est, **attributes), message)
    # the sampler's sketch checks itself too
    sketch = est.sampler_.sketch_
    tampered_sketch = _with(sketch, n_features=sketch.n_features + 1)
    _refused_like_load(_with(est, sampler_=_with(est.sampler_, sketch_=tampered_sketch)),
                       r"SketchCore: the kernel hashes \d+ values, rows have \d+")


class _Reduced:
    """Pickles as the given ``__reduce__`` value: a compiled object with a tampered state."""

    def __init__(self, reduced):
        self.reduced = reduced

    def __reduce__(self):
        return self.reduced


def test_a_pickle_with_label_ids_out_of_range_in_the_tables_is_refused(slide):
    est, _ = slide
    cls, args, state = est.lsh_tables_.__reduce__()
    ids = state["ids"].copy()
    ids[0] = est.output_weights_.shape[0] + 5
    tampered = _with(est, lsh_tables_=_Reduced((cls, args, dict(state, ids=ids))))
    with pytest.raises(ValueError, match="LSHTables state: ids out of range"):
        pickle.loads(pickle.dumps(tampered))
    # and the tables of another model size, consistent in themselves
    n_items = est.output_weights_.shape[0] - 1
    tables = LSHTables(*args)
    tables.build(np.ones((n_items, args[1]), np.float32))
    assert tables.n_items == n_items
    with pytest.raises(ValueError, match="lsh_tables_ hold 11 labels, the model has 12"):
        pickle.loads(pickle.dumps(_with(est, lsh_tables_=tables)))


def test_tampered_zero_shot_and_importance_pickles_are_refused(data):
    X, y, Y = data
    zsl = _fit(ZeroShotSoftLabelClassifier(
        np.eye(14, dtype=np.float32), classes=np.arange(14), hidden_layer_sizes=(8,),
        max_iter=1, random_state=0,
    ), X, y)
    _refused_like_load(_with(zsl, _unseen_ids=np.array([2, 14], np.int32)),
                       r"ZeroShotSoftLabelClassifier: _unseen_ids holds ids outside \[0, 14\)")
    _refused_like_load(_with(zsl, coefs_=[zsl.coefs_[0][1:], *zsl.coefs_[1:]]),
                       r"coefs_\[0\] has shape \(49, 8\), expected \(50, \*\)")
    # the hard-label network of the ensemble must match the model it serves
    hard = zsl.hard_label_estimator_
    assert hard is not None
    _refused_like_load(_with(zsl, hard_label_estimator_=_with(hard, seen_classes_=hard.classes_)),
                       r"hard_label_estimator_.seen_classes_ differs from seen_classes_")
    _refused_like_load(_with(zsl, hard_label_estimator_=clone(hard)),
                       "hard_label_estimator_ must be a fitted ZeroShotSoftLabelClassifier")
    _refused_like_load(_with(zsl, score_scales_=np.array([1.0, -1.0])),
                       "score_scales_ must hold two positive finite spreads")
    _refused_like_load(_with(zsl, score_scales_=np.ones(3)),
                       r"score_scales_ has shape \(3,\), expected \(2,\)")
    # a wrapped scikit-learn estimator, checked by the classifier that holds it
    averaged = SGDClassifier(loss="log_loss", average=True, random_state=0)
    sgd = _fit(ImportanceSampledClassifier(averaged, max_iter=2, random_state=0), X, y)
    inner = sgd.estimator_
    short = np.zeros(3, inner.coef_.dtype)
    _refused_like_load(_with(sgd, estimator_=_with(inner, _standard_coef=short)),
                       r"SGDClassifier: _standard_coef has shape \(3,\)")
    _refused_like_load(_with(sgd, estimator_=_with(inner, coef_=inner.coef_[:, 1:].copy())),
                       r"SGDClassifier: coef_ has shape \(12, 49\), expected \(12, 50\)")
    mlp = _fit(ImportanceSampledClassifier(MLPClassifier((8,), random_state=0), max_iter=2,
                                           random_state=0), X, Y.toarray())
    optimizer = mlp.estimator_._optimizer
    moments = [m[:1] for m in optimizer.ms]
    tampered = _with(mlp, estimator_=_with(mlp.estimator_,
                                           _optimizer=_with(optimizer, ms=moments)))
    _refused_like_load(tampered, r"MLPClassifier: _optimizer.ms\[0\] has shape \(1, 8\)")


def test_the_private_scikit_learn_state_the_checks_read_exists(data):
    """The checks of a wrapped estimator read these private attributes of scikit-learn:
    a release that renames one fails here instead of leaving it unchecked."""
    X, y, _ = data
    classes = np.unique(y)
    sgd = SGDClassifier(average=True, random_state=0).partial_fit(X, y, classes=classes)
    for name in sklearn_state.SGD_AVERAGED_COEFS:
        assert getattr(sgd, name).size == sgd.coef_.size, name
    for name in sklearn_state.SGD_AVERAGED_INTERCEPTS:
        assert getattr(sgd, name).shape == sgd.intercept_.shape, name
    # the private state the checks leave alone is recomputed by every partial_fit
    sgd._expanded_class_weight = sgd._loss_function_ = None
    sgd.partial_fit(X, y)
    assert sgd._expanded_class_weight.shape == classes.shape
    assert sgd._loss_function_ is not None

    optimizers = {cls.__name__: cls for cls in sklearn_state._optimizer_classes()}
    assert set(optimizers) == set(sklearn_state.MLP_OPTIMIZER_ARRAYS)
    for solver, name in (("adam", "AdamOptimizer"), ("sgd", "SGDOptimizer")):
        mlp = MLPClassifier((4,), solver=solver, random_state=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            mlp.partial_fit(X, y, classes=classes)
        optimizer = getattr(mlp, sklearn_state.MLP_OPTIMIZER)
        assert type(optimizer) is optimizers[name]
        shapes = [p.shape for p in mlp.coefs_ + mlp.intercepts_]
        for arrays in sklearn_state.MLP_OPTIMIZER_ARRAYS[name]:
            assert [a.shape for a in getattr(optimizer, arrays)] == shapes, arrays
        # partial_fit keeps training with the optimiser it restored
        mlp.partial_fit(X, y)
        assert getattr(mlp, sklearn_state.MLP_OPTIMIZER) is optimizer
    # so _best_coefs, which only fit with early stopping reads, never is
    with pytest.raises(ValueError, match="early_stopping"):
        MLPClassifier(early_stopping=True).partial_fit(X, y, classes=classes)
