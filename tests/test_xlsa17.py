"""load_xlsa17 on res101.mat files written in the real format next to the real att_splits.mat."""


import numpy as np
import pytest
import scipy.io

from sksketch.datasets import load_xlsa17

DATASETS = ["APY", "AWA1", "AWA2", "CUB", "SUN"]
N_FEATURES = 6


def _write_res101(folder, splits, rng):
    """A res101.mat whose feature 0 of sample j (0-based) is j, labels consistent with the split."""
    locs = {k: splits[k].ravel().astype(np.int64) for k in splits if k.endswith("_loc")}
    n_samples = int(max(v.max() for v in locs.values()))
    n_classes = splits["att"].shape[1]
    unseen = rng.choice(n_classes, max(2, n_classes // 5), replace=False)
    seen = np.setdiff1d(np.arange(n_classes), unseen)
    labels = rng.choice(seen, n_samples) + 1
    labels[locs["test_unseen_loc"] - 1] = rng.choice(unseen, locs["test_unseen_loc"].size) + 1
    features = rng.rand(N_FEATURES, n_samples)
    features[0] = np.arange(n_samples)
    scipy.io.savemat(folder / "res101.mat", {"features": features, "labels": labels[:, None]})
    return features, labels


@pytest.fixture
def xlsa17(data_dir):
    path = data_dir / "xlsa17"
    if not path.is_dir():
        pytest.skip(f"{path} not found")
    return path


@pytest.mark.parametrize("name", DATASETS)
def test_load_real_splits(name, xlsa17, tmp_path):
    rng = np.random.RandomState(0)
    real = xlsa17 / name / "att_splits.mat"
    if not real.is_file():
        pytest.skip(f"{real} not found")
    (tmp_path / name).mkdir()
    (tmp_path / name / "att_splits.mat").symlink_to(real)
    splits = scipy.io.loadmat(real)
    features, labels = _write_res101(tmp_path / name, splits, rng)

    data = load_xlsa17(tmp_path, name)
    n_attributes, n_classes = splits["att"].shape
    assert data.class_attributes.shape == (n_classes, n_attributes)
    np.testing.assert_array_equal(data.class_attributes, splits["att"].T)
    np.testing.assert_array_equal(data.original_attributes, splits["original_att"].T)
    assert len(data.class_names) == n_classes and all(data.class_names)
    for split in ("trainval", "test_seen", "test_unseen", "train", "val"):
        key = f"{split}_loc"
        if key not in splits:
            assert f"X_{split}" not in data
            continue
        rows = splits[key].ravel().astype(np.int64) - 1
        X, y = data[f"X_{split}"], data[f"y_{split}"]
        assert X.dtype == np.float32 and X.shape == (rows.size, N_FEATURES)
        np.testing.assert_array_equal(X[:, 0], rows.astype(np.float32))
        np.testing.assert_allclose(X[:, 1:], features[1:, rows].T.astype(np.float32))
        np.testing.assert_array_equal(y, labels[rows] - 1)
    assert np.intersect1d(data.seen_classes, data.unseen_classes).size == 0
    assert data.y_trainval.min() >= 0 and data.y_trainval.max() < n_classes


def test_real_class_names(xlsa17, tmp_path):
    (tmp_path / "APY").mkdir()
    (tmp_path / "APY" / "att_splits.mat").symlink_to(xlsa17 / "APY" / "att_splits.mat")
    _write_res101(tmp_path / "APY", scipy.io.loadmat(xlsa17 / "APY" / "att_splits.mat"),
                  np.random.RandomState(0))
    assert load_xlsa17(tmp_path, "APY").class_names[:3] == ["aeroplane", "bicycle", "bird"]


def _tiny(tmp_path, **overrides):
    """A three-class data set in the xlsa17 format; `overrides` replace variables."""
    folder = tmp_path / "TINY"
    folder.mkdir(exist_ok=True)
    res = {"features": np.arange(12.0).reshape(2, 6), "labels": np.array([[1, 2, 1, 2, 3, 3]]).T}
    splits = {
        "att": np.eye(4, 3),
        "original_att": 2 * np.eye(4, 3),
        "allclasses_names": np.array([["a"], ["b"], ["c"]], dtype=object),
        "trainval_loc": np.array([[1, 2, 3]], dtype=np.uint16).T,
        "test_seen_loc": np.array([[4]], dtype=np.uint16).T,
        "test_unseen_loc": np.array([[5, 6]], dtype=np.uint16).T,
    }
    for key, value in overrides.items():
        target = res if key in res else splits
        if value is None:
            target.pop(key)
        else:
            target[key] = value
    scipy.io.savemat(folder / "res101.mat", res)
    scipy.io.savemat(folder / "att_splits.mat", splits)
    return tmp_path


def test_tiny_round_trip(tmp_path):
    data = load_xlsa17(_tiny(tmp_path), "TINY")
    np.testing.assert_array_equal(data.X_trainval, [[0, 6], [1, 7], [2, 8]])
    np.testing.assert_array_equal(data.y_trainval, [0, 1, 0])
    np.testing.assert_array_equal(data.y_test_unseen, [2, 2])
    np.testing.assert_array_equal(data.seen_classes, [0, 1])
    np.testing.assert_array_equal(data.unseen_classes, [2])
    assert data.class_names == ["a", "b", "c"]


def test_missing_files(tmp_path):
    root = _tiny(tmp_path)
    with pytest.raises(FileNotFoundError, match="nope.mat not found"):
        load_xlsa17(root, "TINY", features_file="nope.mat")
    with pytest.raises(FileNotFoundError, match="OTHER"):
        load_xlsa17(root, "OTHER")


@pytest.mark.parametrize("key", ["att", "features", "labels", "trainval_loc",
                                 "test_unseen_loc", "allclasses_names"])
def test_missing_variables(key, tmp_path):
    with pytest.raises(ValueError, match=f"no variable '{key}'"):
        load_xlsa17(_tiny(tmp_path, **{key: None}), "TINY")


@pytest.mark.parametrize(
    "override, match",
    [
        ({"trainval_loc": np.array([[0, 1]]).T}, r"trainval_loc must be 1-based.*\[1, 6\]"),
        ({"test_seen_loc": np.array([[7]]).T}, r"test_seen_loc must be 1-based"),
        ({"labels": np.array([[1, 2, 1, 2, 3, 4]]).T}, r"labels must be 1-based.*\[1, 3\]"),
        ({"labels": np.array([[1, 2, 3]]).T}, "labels has 3 entries"),
        ({"test_unseen_loc": np.array([[1, 5]]).T}, "both in trainval and in test_unseen"),
        ({"allclasses_names": np.array([["a"]], dtype=object)}, "allclasses_names has 1"),
        ({"original_att": np.eye(3)}, "original_att has shape"),
    ],
)
def test_bad_contents(override, match, tmp_path):
    with pytest.raises(ValueError, match=match):
        load_xlsa17(_tiny(tmp_path, **override), "TINY")


def test_feeds_the_zero_shot_classifier(tmp_path):
    from sksketch import ZeroShotSoftLabelClassifier

    data = load_xlsa17(_tiny(tmp_path), "TINY")
    clf = ZeroShotSoftLabelClassifier(data.class_attributes, hidden_layer_sizes=(4,),
                                      max_iter=2).fit(data.X_trainval, data.y_trainval)
    np.testing.assert_array_equal(clf.unseen_classes_, data.unseen_classes)
