"""The checks of a restored ZeroShotSoftLabelClassifier's state (unpickled or read by
:func:`sksketch.load`).

Its network's layers, Adam moments and the class-attribute matrix must agree
in dtype and shape, the unseen-class ids its soft labels index with must be
in range, and its hard-label network, if any, must be a fitted model of the
same classes and features, before it predicts or trains.
"""

import math

import numpy as np

from ._state import (
    F32,
    F64,
    I32,
    I64,
    attr_array,
    attr_integer,
    check_layers,
    check_like,
    check_rng,
    fail,
    ids_in_range,
    is_fitted,
)
from .sampling._base import _check_sampler_attribute

__all__ = ["check_state"]

_FITTED = (
    "n_features_in_", "classes_", "class_attributes_", "coefs_", "intercepts_", "_adam_m",
    "_adam_v", "_seen_counts", "_one_hot", "_step", "t_", "n_iter_",
)


def check_state(est):
    """ZeroShotSoftLabelClassifier._check_state: refuse a fitted state it would misread."""
    if not is_fitted(est, _FITTED):
        return
    n_features = attr_integer(est, "n_features_in_", 1)
    n_classes = len(attr_array(est, "classes_", None, (None,), contiguous=False))
    attributes = attr_array(est, "class_attributes_", (F32,), (n_classes, None))
    width = check_layers(est, n_features, (F32,), True)
    if width != attributes.shape[1]:
        fail(est, f"the network outputs {width} values for {attributes.shape[1]} attributes")
    if est._one_hot and attributes.shape[1] != n_classes:
        fail(est, "one-hot class attributes must have one column per class")
    params = est.coefs_ + est.intercepts_
    check_like(est, "_adam_m", est._adam_m, params)
    check_like(est, "_adam_v", est._adam_v, params)
    attr_array(est, "_seen_counts", (I64,), (n_classes,))
    if hasattr(est, "soft_label_targets_") or hasattr(est, "_unseen_ids"):
        unseen = attr_array(est, "_unseen_ids", (I32,), (None,))
        ids_in_range(est, "_unseen_ids", unseen, n_classes)
        attr_array(est, "soft_label_targets_", (F32,), (n_classes, len(unseen)))
        for name in ("seen_classes_", "unseen_classes_"):
            attr_array(est, name, None, (None,), contiguous=False)
    for name in ("_step", "t_", "n_iter_"):
        attr_integer(est, name)
    gamma = getattr(est, "calibration_gamma_", 0.0)
    if not isinstance(gamma, float) or not math.isfinite(gamma):
        fail(est, f"calibration_gamma_ must be a finite float, got {gamma!r}")
    check_rng(est, "_rng")
    _check_sampler_attribute(est)
    _check_hard_label_estimator(est, n_features)


def _check_hard_label_estimator(est, n_features):
    member = getattr(est, "hard_label_estimator_", None)
    if member is None:
        return
    if type(member) is not type(est) or not is_fitted(member, _FITTED):
        fail(est, "hard_label_estimator_ must be a fitted ZeroShotSoftLabelClassifier")
    if member.n_features_in_ != n_features:
        fail(est, f"hard_label_estimator_ has {member.n_features_in_} features, the model "
                  f"{n_features}")
    for name in ("classes_", "seen_classes_"):
        mine, theirs = getattr(est, name, None), getattr(member, name, None)
        if not (isinstance(mine, np.ndarray) and isinstance(theirs, np.ndarray)
                and np.array_equal(mine, theirs)):
            fail(est, f"hard_label_estimator_.{name} differs from {name}")
    scales = attr_array(est, "score_scales_", (F64,), (2,))
    if not (np.all(np.isfinite(scales)) and np.all(scales > 0)):
        fail(est, "score_scales_ must hold two positive finite spreads")
