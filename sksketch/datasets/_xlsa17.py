"""Read Xian et al.'s zero-shot "proposed splits" (xlsa17): res101.mat + att_splits.mat.

``<root>/<name>/res101.mat`` holds ``features`` (n_features x n_samples,
ResNet-101 activations, 2048 rows) and ``labels`` (n_samples x 1, 1-based
class ids). ``<root>/<name>/att_splits.mat`` holds ``att`` (n_attributes x
n_classes), ``original_att``, ``allclasses_names`` and the 1-based sample
indices ``trainval_loc``, ``test_seen_loc``, ``test_unseen_loc`` (some data
sets also ``train_loc`` and ``val_loc``).
"""

import os

import numpy as np
import scipy.io
from sklearn.utils import Bunch

__all__ = ["load_xlsa17"]

_SPLITS = ("trainval", "test_seen", "test_unseen")
_OPTIONAL_SPLITS = ("train", "val")


def _load_mat(path):
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} not found (expected in Xian et al.'s xlsa17 layout)")
    try:
        return scipy.io.loadmat(path)
    except NotImplementedError as exc:
        raise ValueError(
            f"{path} is a MATLAB v7.3 (HDF5) file, which scipy.io.loadmat cannot read; "
            "save it in the v5 format (MATLAB: save(..., '-v7'))"
        ) from exc


def _require(mat, key, path):
    if key not in mat:
        found = sorted(k for k in mat if not k.startswith("__"))
        raise ValueError(f"{path} has no variable {key!r} (found {found})")
    return mat[key]


def _one_based(values, upper, what, path):
    values = np.asarray(values).ravel()
    if values.size and not np.issubdtype(values.dtype, np.number):
        raise ValueError(f"{path}: {what} must be numeric, got dtype {values.dtype}")
    ids = values.astype(np.int64)
    if values.size and (not np.array_equal(ids, values) or ids.min() < 1 or ids.max() > upper):
        raise ValueError(
            f"{path}: {what} must be 1-based integers in [1, {upper}], got values in "
            f"[{values.min()}, {values.max()}]"
        )
    return ids - 1


def _real_finite(values, dtype, what, path):
    """``values`` as a C-contiguous ``dtype`` array; complex, NaN and infinite entries refused."""
    if np.iscomplexobj(values):
        raise ValueError(f"{path}: {what} has complex values; real numbers are expected")
    with np.errstate(over="ignore"):  # overflow to inf is reported below
        values = np.ascontiguousarray(values, dtype=dtype)
    if not np.all(np.isfinite(values)):
        raise ValueError(
            f"{path}: {what} contains NaN or infinity (or values that overflow {np.dtype(dtype)})"
        )
    return values


def _class_names(raw):
    names = []
    for item in np.asarray(raw).ravel():
        while isinstance(item, np.ndarray) and item.size == 1 and item.dtype == object:
            item = item.item()
        names.append(str(np.asarray(item).ravel()[0]) if np.size(item) else "")
    return names


def load_xlsa17(root, name, *, features_file="res101.mat", splits_file="att_splits.mat"):
    """Load one data set of Xian et al.'s zero-shot benchmark in its proposed split.

    Parameters
    ----------
    root : str or path-like
        Folder holding one sub-folder per data set (``APY``, ``AWA1``,
        ``AWA2``, ``CUB``, ``SUN``).
    name : str
        The data set's sub-folder.
    features_file, splits_file : str, default="res101.mat", "att_splits.mat"
        File names inside ``root/name``.

    Returns
    -------
    data : Bunch
        ``X_trainval``, ``y_trainval``, ``X_test_seen``, ``y_test_seen``,
        ``X_test_unseen``, ``y_test_unseen`` (features as float32
        (n_samples, n_features) arrays, labels as 0-based int64 class ids);
        ``X_train``, ``y_train``, ``X_val``, ``y_val`` when the file has
        ``train_loc`` / ``val_loc``; ``class_attributes`` (n_classes,
        n_attributes), the ``att`` matrix transposed, and
        ``original_attributes`` (``original_att``, transposed, when present);
        ``class_names``; ``seen_classes`` and ``unseen_classes`` (0-based
        ids: the classes of trainval and of test-unseen).

    Raises
    ------
    FileNotFoundError
        When a file is missing.
    ValueError
        When a variable is missing, shapes disagree, an index or label is
        out of range, or features or attributes are complex, NaN or infinite.

    Examples
    --------
    >>> from sksketch.datasets import load_xlsa17
    >>> data = load_xlsa17("/path/to/xlsa17", "AWA2")  # doctest: +SKIP
    >>> data.class_attributes.shape                      # doctest: +SKIP
    (50, 85)
    """
    folder = os.path.join(os.fspath(root), name)
    features_path = os.path.join(folder, features_file)
    splits_path = os.path.join(folder, splits_file)
    splits = _load_mat(splits_path)
    res = _load_mat(features_path)

    att = _real_finite(_require(splits, "att", splits_path), np.float64, "att", splits_path)
    if att.ndim != 2:
        raise ValueError(f"{splits_path}: att must be 2-D (n_attributes x n_classes)")
    n_classes = att.shape[1]
    features = np.asarray(_require(res, "features", features_path))
    if features.ndim != 2:
        raise ValueError(f"{features_path}: features must be 2-D (n_features x n_samples)")
    n_samples = features.shape[1]
    labels = np.asarray(_require(res, "labels", features_path))
    if labels.size != n_samples:
        raise ValueError(
            f"{features_path}: labels has {labels.size} entries but features has "
            f"{n_samples} columns (samples)"
        )
    y = _one_based(labels, n_classes, "labels", features_path)
    X = _real_finite(features.T, np.float32, "features", features_path)

    data = Bunch()
    for split in _SPLITS + _OPTIONAL_SPLITS:
        key = f"{split}_loc"
        if split in _OPTIONAL_SPLITS and key not in splits:
            continue
        rows = _one_based(_require(splits, key, splits_path), n_samples, key, splits_path)
        data[f"X_{split}"] = X[rows]
        data[f"y_{split}"] = y[rows]

    data.class_attributes = np.ascontiguousarray(att.T)
    if "original_att" in splits:
        original = _real_finite(splits["original_att"], np.float64, "original_att", splits_path)
        if original.shape != att.shape:
            raise ValueError(
                f"{splits_path}: original_att has shape {original.shape}, att {att.shape}"
            )
        data.original_attributes = np.ascontiguousarray(original.T)
    names = _require(splits, "allclasses_names", splits_path)
    data.class_names = _class_names(names)
    if len(data.class_names) != n_classes:
        raise ValueError(
            f"{splits_path}: allclasses_names has {len(data.class_names)} entries but att "
            f"has {n_classes} classes"
        )
    data.seen_classes = np.unique(data.y_trainval)
    data.unseen_classes = np.unique(data.y_test_unseen)
    overlap = np.intersect1d(data.seen_classes, data.unseen_classes)
    if overlap.size:
        raise ValueError(
            f"{name}: classes {overlap[:10].tolist()} are both in trainval and in test_unseen"
        )
    return data
