"""A SLIDEClassifier's memory by part: measured on a fitted model, or estimated before fitting."""

import numpy as np
import scipy.sparse as sp

from .._kernels import _openmp
from .._kernels._lsh import LSHTables
from ._label_clusters import CLUSTERS_PER_FEATURE
from ._negative_sampling import N_COSINE_STEPS
from ._plan import make_plan
from ._retrieval import cached_index, index_nbytes
from ._sparse_head import BATCH_PARTS, fills_grid, pairs_per_feature

__all__ = ["estimate_memory", "memory_usage"]

# Which part of memory_usage() each fitted attribute belongs to; the other
# arrays are per-label vectors and small state ("other").
_MEMORY_PARTS = {
    "input_weights_": "weights",
    "input_bias_": "weights",
    "output_weights_": "weights",
    "output_bias_": "weights",
    "_adam": "optimizer",
    "_output_bf16": "bfloat16_weights",
    "lsh_tables_": "hash_tables",
    "sparse_head_": "sparse_head",
    "cluster_head_": "sparse_head",
    "sampler_": "sampler",
}

PARTS = ("weights", "optimizer", "bfloat16_weights", "hash_tables", "sparse_head", "sampler",
         "other")


def _nbytes(obj, seen):
    """Bytes of the arrays `obj` holds, each object counted once.

    Follows containers, hash tables, sparse matrices and objects' attributes
    (or, for compiled objects, their pickled state).
    """
    if obj is None or isinstance(obj, (str, bytes, int, float)) or id(obj) in seen:
        return 0
    seen.add(id(obj))
    if isinstance(obj, np.ndarray):
        return obj.nbytes
    if isinstance(obj, LSHTables):
        return obj.nbytes
    if sp.issparse(obj):
        return sum(_nbytes(getattr(obj, name), seen) for name in ("data", "indices", "indptr"))
    if isinstance(obj, dict):
        return sum(_nbytes(value, seen) for value in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(_nbytes(value, seen) for value in obj)
    state = getattr(obj, "__dict__", None)
    if state is None and type(obj).__module__.startswith("sksketch"):
        state = obj.__getstate__()
    return _nbytes(state, seen) if isinstance(state, dict) else 0


def _totals(usage, training_buffers):
    usage["model"] = sum(usage.values())
    usage["training_buffers"] = training_buffers
    usage["total"] = usage["model"] + training_buffers
    return usage


def memory_usage(est):
    """The parts of SLIDEClassifier.memory_usage, summed over the fitted arrays."""
    usage = dict.fromkeys(PARTS, 0)
    seen = set()
    for name, value in vars(est).items():
        usage[_MEMORY_PARTS.get(name, "other")] += _nbytes(value, seen)
    index = cached_index(est)
    if index is not None:
        usage["hash_tables"] += index.nbytes
    return _totals(usage, getattr(est, "_training_buffers_nbytes", 0))


def estimate_memory(est, n_features, n_labels, max_labels_per_sample):
    """The parts of SLIDEClassifier.estimate_memory, from the parameters and the sizes."""
    F, L, H = int(n_features), int(n_labels), est.hidden_layer_size
    B = est.batch_size
    plan = make_plan(est, L)
    A = plan.active_size(max_labels_per_sample)
    # the sparse head's pairs, at most: every feature linked to its quota
    pairs = F * min(pairs_per_feature(est.labels_per_feature, F), L)
    # the label clusters: a split of more than s labels leaves at least
    # (s + 1) // 2 on each side, so there are at most L // ((s + 1) // 2)
    clusters = est._builds_clusters(L)
    K = L // max((est.label_cluster_size + 1) // 2, 1) if clusters else 0
    cluster_pairs = F * min(pairs_per_feature(est.labels_per_feature, F), K,
                            CLUSTERS_PER_FEATURE)
    bf16 = est.precision == "bfloat16"
    # training's tables (one bucket each while nothing queries them), and
    # the index inference="lsh" builds at its first prediction
    hash_tables = plan.table_nbytes(L if plan.uses_lsh else 0, in_use=plan.tables_in_use)
    if plan.inference_lsh:
        hash_tables += index_nbytes(L, H)
    other = 16 * L  # class labels and label counts
    if plan.uses_lsh and est.sampling_correction == "logq":
        other += 4 * L + 4 * (N_COSINE_STEPS + 1)  # row norms, collision table
    if plan.uses_unigram:
        other += 8 * L
    usage = {
        "weights": 4 * (F * H + H + L * H + L),
        "optimizer": 4 * (2 * F * H + 2 * H + 2 * L) + (4 if bf16 else 8) * L * H,
        "bfloat16_weights": 2 * L * H if bf16 else 0,
        "hash_tables": hash_tables,
        "sparse_head": (8 * (F + 1) + 16 * pairs if est.sparse_head else 0) + (
            8 * (F + 1) + 16 * cluster_pairs + 8 * L + 8 * (K + 1) if clusters else 0),
        "sampler": 0,
        "other": other,
    }
    training_buffers = (
        4 * F * H + F + 4 * H  # dense input-layer gradient, touched rows
        + 8 * B * H  # hidden activations and their gradients
        + 16 * B * A  # active labels and their logit gradients, twice
        + 4 * (3 * L + 1)  # the output update's grouping by label
        + 4 * _openmp.effective_n_threads(est.n_jobs) * max(L, 1)  # stamps
    )
    P = BATCH_PARTS

    def head_scratch(n_pairs, n_labels):
        # per part of a batch: pair gradients (of the pairs a batch reaches,
        # at most all of them), feature offsets and touched list, per-label
        # scores, marks and values; a head whose pairs fill
        # much of the feature-label grid also trains from a dense copy of its
        # weights and pair marks, with a dense gradient per part
        return P * (4 * n_pairs + 12 * F + 16 * n_labels) + (
            (5 + 4 * P) * F * n_labels if fills_grid(n_pairs, F, n_labels) else 0)

    if est.sparse_head:
        scratch = head_scratch(pairs, L)
        # the best held-out weights, and the scratch
        training_buffers += 4 * pairs + scratch
        if est.sparse_head_loss == "auto":
            # the other two candidate heads train while it chooses the loss
            # and the softmax head's damping: their weights, moments and
            # snapshots (they share the pairs and, unless they train from
            # dense copies, the scratch)
            training_buffers += 2 * (16 * pairs + (scratch if fills_grid(pairs, F, L) else 0))
    if clusters:
        # the cluster head's scratch: a head over K clusters
        training_buffers += head_scratch(cluster_pairs, K)
    return _totals(usage, training_buffers)
