"""The checks of a restored SLIDEClassifier's state (unpickled or read by :func:`sksketch.load`).

SLIDEClassifier's kernels index its weight matrices, Adam moments and caches
with label ids and hash-table ids without bounds checks, so a restored model
must have every fitted array of the dtype and shape the others imply, and
every id in range, before it predicts or trains.
"""

import numpy as np

from .._kernels._lsh import LSHTables
from .._kernels._network import aligned_array
from .._state import (
    F32,
    F64,
    I32,
    I64,
    U16,
    attr_array,
    attr_integer,
    check_array,
    check_rng,
    fail,
    ids_in_range,
    is_fitted,
    is_int,
)
from ..sampling._base import _check_sampler_attribute
from ._label_clusters import LabelClusterHead
from ._sparse_head import SparseLabelHead

__all__ = ["align_weights", "check_state"]

_FITTED = (
    "n_features_in_", "classes_", "input_weights_", "input_bias_", "output_weights_",
    "output_bias_", "_adam", "_label_counts", "lsh_tables_", "_step", "t_", "n_iter_",
)


def _check_tables(est, name, tables, dim, n_labels):
    if not isinstance(tables, LSHTables):
        fail(est, f"{name} must be LSHTables, found {type(tables).__name__}")
    if tables.dim != dim:
        fail(est, f"{name} hash vectors of length {tables.dim}, the hidden layer has {dim}")
    if tables.n_items not in (0, n_labels):
        fail(est, f"{name} hold {tables.n_items} labels, the model has {n_labels}")


def check_state(est):
    """SLIDEClassifier._check_state: refuse a fitted state its kernels would misread."""
    if not is_fitted(est, _FITTED):
        return
    n_features = attr_integer(est, "n_features_in_", 1)
    n_labels = len(attr_array(est, "classes_", None, (None,), contiguous=False))
    W1 = attr_array(est, "input_weights_", (F32,), (n_features, None))
    H = W1.shape[1]
    if not (is_int(est.hidden_layer_size) and est.hidden_layer_size == H):
        fail(est, f"hidden_layer_size={est.hidden_layer_size!r} but the weights have {H} units")
    attr_array(est, "input_bias_", (F32,), (H,))
    attr_array(est, "output_weights_", (F32,), (n_labels, H))
    attr_array(est, "output_bias_", (F32,), (n_labels,))
    adam = est._adam
    shapes = {
        "m_in": (n_features, H), "v_in": (n_features, H), "m_in_bias": (1, H),
        "v_in_bias": (1, H), "m_out": (n_labels, H), "v_out": (n_labels, H),
        "m_out_bias": (n_labels, 1), "v_out_bias": (n_labels, 1),
    }
    if type(adam) is not dict or set(adam) != set(shapes):
        fail(est, f"_adam must be a dict of {sorted(shapes)}")
    for key, shape in shapes.items():
        dtypes = (F32, U16) if key in ("m_out", "v_out") else (F32,)
        check_array(est, f"_adam[{key!r}]", adam[key], dtypes, shape)
    if adam["m_out"].dtype != adam["v_out"].dtype:
        fail(est, "the output layer's Adam moments differ in dtype")
    attr_array(est, "_label_counts", (I64,), (n_labels,))
    attr_array(est, "_output_bf16", (U16,), (n_labels, H), optional=True)
    attr_array(est, "_row_norms", (F32,), (n_labels,), optional=True)
    attr_array(est, "_cp_table", (F32,), (None,), optional=True)
    attr_array(est, "_unigram_cdf", (F64,), (n_labels,), optional=True)
    for name in ("_step", "t_", "n_iter_"):
        attr_integer(est, name)
    _check_tables(est, "lsh_tables_", est.lsh_tables_, H, n_labels)
    cache = getattr(est, "_inference_tables_cache", None)
    if cache is not None:
        if type(cache) is not tuple or len(cache) != 2:
            fail(est, "_inference_tables_cache must be a pair")
        _check_tables(est, "_inference_tables_cache", cache[1], H, n_labels)
        # tables an older version's inference="lsh" kept: its index is now
        # built from the weights when needed
        del est._inference_tables_cache
    frequent = getattr(est, "_frequent_cache", None)
    if frequent is not None:
        if type(frequent) is not tuple or len(frequent) != 2:
            fail(est, "_frequent_cache must be a pair")
        ids_in_range(est, "_frequent_cache", check_array(
            est, "_frequent_cache", frequent[1], (I32,), (None,)), n_labels)
        # the fallback labels an older version's inference="lsh" kept
        del est._frequent_cache
    head = getattr(est, "sparse_head_", None)
    if head is not None:
        if not isinstance(head, SparseLabelHead):
            fail(est, f"sparse_head_ must be a SparseLabelHead, found {type(head).__name__}")
        # its arrays were checked by its own __setstate__, which ran first
        if (head.n_features, head.n_labels) != (n_features, n_labels):
            fail(est, f"sparse_head_ maps {head.n_features} features to {head.n_labels} "
                      f"labels, the model has {n_features} and {n_labels}")
    clusters = getattr(est, "cluster_head_", None)
    if clusters is not None:
        if not isinstance(clusters, LabelClusterHead):
            fail(est, "cluster_head_ must be a LabelClusterHead, found "
                      f"{type(clusters).__name__}")
        # its arrays were checked by its own __setstate__, which ran first
        if (clusters.head.n_features, clusters.n_labels) != (n_features, n_labels):
            fail(est, f"cluster_head_ maps {clusters.head.n_features} features to "
                      f"{clusters.n_labels} labels, the model has {n_features} and {n_labels}")
    power = getattr(est, "feature_power_", 1.0)
    if not (isinstance(power, (float, int)) and 0 < power < float("inf")):
        fail(est, f"feature_power_ must be a finite positive number, got {power!r:.40}")
    for name in ("sparse_head_weight_", "label_cluster_weight_"):
        weight = getattr(est, name, 0.0)
        if not (isinstance(weight, (float, int)) and 0 <= weight < float("inf")):
            fail(est, f"{name} must be a finite non-negative number, got {weight!r:.40}")
    check_rng(est, "_rng")
    _check_sampler_attribute(est)


# the model's weight arrays whose rows the kernels read with 64-byte loads
_ALIGNED = ("input_weights_", "output_weights_", "_output_bf16")
_ALIGNED_ADAM = ("m_in", "v_in", "m_out", "v_out")


def _aligned_copy(a):
    # (a memory map stays one, shared with other processes; a read-only array
    # stays the caller's too)
    if (not isinstance(a, np.ndarray) or isinstance(a, np.memmap) or a.size == 0
            or not a.flags.writeable or a.ctypes.data % 64 == 0):
        return a
    out = aligned_array(a.shape, a.dtype)
    out[...] = a
    return out


def align_weights(est):
    """Put a restored model's weight rows back on 64-byte boundaries.

    Training allocates the weights and Adam moments so that each row of 256
    hidden units starts on a cache line (``_network.aligned_array``), and the
    kernels' 64-byte loads of a row never straddle two; pickle, joblib and
    :func:`sksketch.load` give arrays that start 16 bytes past one. The same
    values on other addresses, so the same predictions: the hidden layer of
    Bibtex's test set (2,515 rows of 69 non-zeros) takes 2.8 ms on two
    threads unaligned and 1.6 ms aligned. Memory-mapped and read-only
    arrays are left where they are.
    """
    for name in _ALIGNED:
        a = getattr(est, name, None)
        if a is not None:
            setattr(est, name, _aligned_copy(a))
    adam = getattr(est, "_adam", None)
    if type(adam) is dict:
        for key in _ALIGNED_ADAM:
            if key in adam:
                adam[key] = _aligned_copy(adam[key])
