"""Scoring with a fitted SLIDEClassifier: the hidden layer, full and LSH scores, top-k.

Functions of the estimator (its fitted attributes are read, never written;
the output layer's bounds for top-k by bounds and the retrieval index of
``inference="lsh"`` (:mod:`._retrieval`) are cached outside it, per model,
and scratch per thread).
Scores are never an ``n_samples x n_labels`` array beyond a chunk of rows,
except where a caller asks for the dense output.
"""

import threading
import weakref

import numpy as np

from .._kernels import _network, _simd, _sparse_head
from ..utils._threads import threads_for
from . import _retrieval

__all__ = [
    "HEAD_WEIGHTS",
    "choose_cluster_weight",
    "choose_head_weight",
    "example_losses",
    "full_scores",
    "head_hits",
    "hidden",
    "mixed_hits",
    "network_hits",
    "precision_at_1",
    "predict_threads",
    "proba",
    "ranked_rows",
    "topk_ids",
    "validation_rows",
]

# Weights of the sparse head's logits that sparse_head_weight="auto" tries.
# Up to 1024, where the network's logits only break the head's ties: with
# square roots of their inputs (feature_power), the generated 10,000-label
# problems and WordNet nouns chose 64, the largest weight of a grid that
# stopped there, and ranked their test rows better at every larger one. Test
# P@1 with the grid up to 64 / 1024 (the weight chosen), seeds 0 and 1: the
# problem of 10 non-zeros a row 0.9026 / 0.9040 (1024), 0.8971 / 0.8990
# (512); of 40, 0.9921 / 0.9934, 0.9928 / 0.9931 (1024 both); WordNet nouns
# 0.4136 / 0.4136 (64 both), 0.4159 / 0.4164 (512). Bibtex, Delicious and
# the generated 50,000-label problem choose 2, 1 and 16 either way.
HEAD_WEIGHTS = (0.0, 0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0,
                512.0, 1024.0)
# The most network logits (4 bytes each, with two 4-byte indices) mixed_hits
# keeps for later rankings of the same rows once the network stops: 48 MB.
# WordNet nouns needs 2.8 million (4,266 rows reach 650 of 15,728 labels each).
NET_CACHE_ENTRIES = 1 << 22
# the rank held-out rankings count labels down to (see best_head_weight)
TOP_K = 3
# label_cluster_weight="auto" keeps the clusters' term only where it beats
# none by more than this many standard errors on the held-out rows (see
# choose_cluster_weight)
CLUSTER_Z = 1.0

# Top-k by bounds (see bounded_rows): on this many labels or more, for k up
# to BOUNDED_MAX_K. A call scores its rows a block at a time (a model's first
# BOUNDED_TRIAL rows as one block); after a block where more than
# BOUNDED_GIVE_UP of the rows needed every label's score, it scores the rest
# in full, and so do the model's later calls once that holds over its first
# BOUNDED_TRIAL rows or more (until its weights change). A row gives up past
# n_labels / BOUNDED_CANDIDATES candidates beyond the labels the head reaches.
BOUNDED_MIN_LABELS = 4096
BOUNDED_MAX_K = 64
BOUNDED_BLOCK = 1024
BOUNDED_GIVE_UP = 0.5
BOUNDED_TRIAL = 32
BOUNDED_CANDIDATES = 32
# Screening on AMX tiles (see _screened_topk): calls of at least
# SCREEN_MIN_ROWS rows for k up to SCREEN_MAX_K, on SCREEN_MIN_LABELS labels
# or more, where the tile unit is in use. Below that many rows, the float32
# kernel scores a row in less time than a tile pass takes (a row tile holds
# 16 rows); below that many labels, the screening's work a row (bounds,
# candidates, the head's products) outweighs what it saves (Bibtex's 159
# labels: 3.5 ms for its 2,515 test rows in full, 4.6 screened; Delicious'
# 983: 14.1-15.1 and 5.3-7.1 ms, 2 threads). A row whose candidates outnumber
# max(SCREEN_MIN_CANDIDATES, n_labels / SCREEN_CANDIDATE_SHARE) is scored in
# full.
SCREEN_MIN_ROWS = 16
SCREEN_MIN_LABELS = 512
# The output layer's packed bfloat16 copy is kept while the model predicts:
# at most this many bytes (half the layer's float32 size). A larger layer
# (a 670,000-label one without the sparse head: 171 MB) is scored in
# float32, without the copy and its scratch (32 rows of every label's
# screened score a thread).
SCREEN_MAX_PACKED_BYTES = 1 << 26
SCREEN_MAX_K = 64
SCREEN_MIN_CANDIDATES = 64
SCREEN_CANDIDATE_SHARE = 8
# the screening's operands, per model, while its weights stay
_SCREEN = weakref.WeakKeyDictionary()
_SCREEN_LOCK = threading.Lock()
# the largest |weight| of each row of a head's dense copy, per copy
_DENSE_SCREEN = weakref.WeakKeyDictionary()
# rows per call of the retrieval kernel (bounds the cluster terms it is given)
RETRIEVAL_BLOCK = 4096
# the output layer's norms and envelope, per model, while its weights stay
_BOUNDS = weakref.WeakKeyDictionary()
_BOUNDS_LOCK = threading.Lock()
# scratch of bounded_topk, per Python thread (it calls with the GIL released)
_SCRATCH = threading.local()


def fit_jobs(est):
    """``est.n_jobs``, or during a fit the thread count its training runs on.

    Training runs on fewer threads while other processes hold cores (see
    ``SLIDETrainer.set_threads``); its held-out checks and rankings follow.
    """
    threads = getattr(est, "_fit_threads", None)
    return est.n_jobs if threads is None else threads


def predict_threads(est, n_rows):
    """Threads for scoring `n_rows` rows.

    Waking a thread team costs more than a few rows of work (and the OpenMP
    and BLAS pools then contend for the cores): small calls, such as
    single-row latency-bound ones, run on the calling thread.
    """
    return threads_for(n_rows, fit_jobs(est), 32)


def hidden(est, X):
    """Hidden activations of the canonical CSR rows X (float32, (n, H))."""
    return _network.hidden_forward(
        X.indptr, X.indices, X.data, est.input_weights_, est.input_bias_,
        predict_threads(est, X.shape[0]),
    )


def full_scores(est, hidden_rows, X=None, clusters=True):
    """Logits of every label for these hidden rows, with the sparse heads' if X is given.

    The label clusters' term (``cluster_head_``) comes last, unless ``clusters`` is false.
    """
    # Not a BLAS product: its result for a row depends on how many rows come
    # with it and on the thread count; this kernel's does not.
    n_threads = threads_for(hidden_rows.shape[0] * len(est.classes_), fit_jobs(est),
                            32 * 1024)
    scores = _network.output_scores(
        hidden_rows, est.output_weights_, est.output_bias_, n_threads)
    head = getattr(est, "sparse_head_", None)
    if X is not None and head is not None and est.sparse_head_weight_ > 0:
        head.add_scores(scores, X, est.sparse_head_weight_, n_threads)
    cluster_head = _cluster_head(est)
    if X is not None and clusters and cluster_head is not None:
        cluster_head.add_scores(scores, X, est.label_cluster_weight_, n_threads)
    return scores


def _cluster_head(est):
    """The model's label-cluster head if its weight in the ranking is positive, else None."""
    head = getattr(est, "cluster_head_", None)
    return head if head is not None and getattr(est, "label_cluster_weight_", 0.0) > 0 else None


def topk_ids(est, X, k):
    """Top-k label ids and scores per row, without an n_samples x n_labels array."""
    L = len(est.classes_)
    k = min(k, L)
    n_threads = predict_threads(est, X.shape[0])
    h = hidden(est, X)
    if est.inference == "lsh":
        return _retrieved_topk(est, h, X, k, n_threads)
    entry = _score_bounds(est) if BOUNDED_MIN_LABELS <= L and 0 < k <= BOUNDED_MAX_K else None
    if entry is None or entry[3] is None or (
            entry[4] >= BOUNDED_TRIAL and entry[5] > BOUNDED_GIVE_UP * entry[4]):
        return _all_labels_topk(est, h, X, k, n_threads)
    ids = np.empty((X.shape[0], k), dtype=np.int32)
    vals = np.empty((X.shape[0], k), dtype=np.float32)
    s = 0
    while s < X.shape[0]:
        # a model's first rows a few at a time: where bounds do not pay,
        # little is lost finding out
        stop = min(s + (BOUNDED_TRIAL if entry[4] < BOUNDED_TRIAL else BOUNDED_BLOCK),
                   X.shape[0])
        ids[s:stop], vals[s:stop], full = _bounded_topk(
            est, entry[3], *_row_range(h, X, s, stop), k, n_threads)
        with _BOUNDS_LOCK:
            entry[4] += stop - s
            entry[5] += full.size
        if full.size:
            full_rows = full + s
            ids[full_rows], vals[full_rows] = _all_labels_topk(
                est, h[full_rows], X[full_rows], k, n_threads)
        if full.size > BOUNDED_GIVE_UP * (stop - s) and stop < X.shape[0]:
            ids[stop:], vals[stop:] = _all_labels_topk(est, h[stop:], X[stop:], k, n_threads)
            break
        s = stop
    return ids, vals


def _row_range(h, X, start, stop):
    """Rows ``start:stop`` of the hidden rows h and of the CSR rows X: h and X
    themselves when that is all of them (a slice of a CSR matrix is a new
    matrix: a third of a single row's prediction)."""
    if start == 0 and stop >= X.shape[0]:
        return h, X
    return h[start:stop], X[start:stop]


def _retrieved_topk(est, h, X, k, n_threads):
    """:func:`topk_ids` among the labels :mod:`._retrieval` finds, a chunk of rows at a time."""
    index = _retrieval.index_for(est)
    head = getattr(est, "sparse_head_", None)
    if head is None or not est.sparse_head_weight_ > 0:
        head = None
    clusters = _cluster_head(est)
    ids = np.empty((X.shape[0], k), dtype=np.int32)
    vals = np.empty((X.shape[0], k), dtype=np.float32)
    for s in range(0, X.shape[0], RETRIEVAL_BLOCK):
        rows = slice(s, s + RETRIEVAL_BLOCK)
        ids[rows], vals[rows], _ = _retrieval.topk(
            est, index, h[rows], X[rows], k, head,
            est.sparse_head_weight_ if head is not None else 0.0, clusters,
            est.label_cluster_weight_ if clusters is not None else 0.0, n_threads)
    return ids, vals


def _all_labels_topk(est, h, X, k, n_threads):
    """:func:`topk_ids` over every label: screened on AMX tiles where that
    applies (:func:`_screened_topk`), else from every label's float32 score
    (:func:`_full_topk`); the same ids and score bits either way."""
    entry = _screen_entry(est, X.shape[0], k)
    if entry is None:
        return _full_topk(est, h, X, k, n_threads)
    return _screened_topk(est, entry, h, X, k, n_threads)


def screen_bound(k_steps):
    """The factor c of the screening's bound ``|screened - float32| <= c |h| |w|``.

    For a hidden row h and a label's weights w (K = 32 k_steps products, the
    padding's exact zeros included), the tile unit sums the products of h
    and w rounded to bfloat16 (relative error u = 2^-8 each, so each
    product within (2u + u^2) |h_i w_i| of the exact one, and at most
    (1 + u)^2 |h_i w_i|), in float32 with at most K roundings; the float32
    kernel sums the exact products with at most K + 64 (its lanes'
    reduction). With g = (K + 64) 2^-24 / (1 - (K + 64) 2^-24), the two
    differ by at most (2u + u^2 + g (1 + u)^2 + g) sum_i |h_i| |w_i|, and
    sum_i |h_i| |w_i| <= |h| |w| (Cauchy-Schwarz). Subnormals the tiles
    flush to zero add SKS_SCREEN_ABS (|h| + |w| + 1) at most (the select
    kernel adds it), and the bias' and head's float32 sums after the net's,
    the same for both, add the e_row term (``screened_topk``). Returned with
    a margin of 2^-10 for the float32 product c |h| |w|.
    """
    u = 2.0 ** -8
    n = 32 * k_steps + 64
    g = n * 2.0 ** -24 / (1.0 - n * 2.0 ** -24)
    return float(np.float32((2 * u + u * u + g * (1 + u) ** 2 + g) * (1 + 2.0 ** -10)))


def _screen_entry(est, n_rows, k):
    """What :func:`_screened_topk` needs of the model, or None where it does not apply.

    It applies where the tile unit is in use (``sksketch.show_config()``),
    for calls of at least SCREEN_MIN_ROWS rows and k up to SCREEN_MAX_K, on
    SCREEN_MIN_LABELS labels or more (an output layer whose packed copy fits
    SCREEN_MAX_PACKED_BYTES),
    without the label clusters' term, and with the sparse head, if weighted,
    scored from its dense copy. The operands are built once per model and
    set of weights (as :func:`_score_bounds`); None too if a weight is not
    finite.
    """
    if (n_rows < SCREEN_MIN_ROWS or not 0 < k <= SCREEN_MAX_K
            or _simd.screen_status() != "active" or _cluster_head(est) is not None):
        return None
    W = est.output_weights_
    packed_bytes = -(-W.shape[0] // 16) * 16 * -(-W.shape[1] // 32) * 32 * 2
    if (W.shape[1] == 0 or W.shape[0] < SCREEN_MIN_LABELS
            or packed_bytes > SCREEN_MAX_PACKED_BYTES):
        return None
    head = getattr(est, "sparse_head_", None)
    if head is not None and est.sparse_head_weight_ > 0 and not head.scores_densely(n_rows):
        return None
    return _layer_entry(_SCREEN, _SCREEN_LOCK, est, _screen_operands)[3]


def _screen_operands(W, b):
    """(packed W, k_steps, |w_j| rounded up, 2 |b_j|, c), or None if a weight is not finite."""
    if not (np.isfinite(b).all() and all(
            np.isfinite(W[s : s + 4096]).all() for s in range(0, W.shape[0], 4096))):
        return None
    norms = np.empty(W.shape[0], dtype=np.float64)
    for s in range(0, W.shape[0], 4096):
        block = W[s : s + 4096].astype(np.float64)
        norms[s : s + 4096] = np.sqrt(np.einsum("ij,ij->i", block, block))
    w_norms = np.nextafter(norms.astype(np.float32), np.float32(np.inf))
    packed, k_steps = _simd.pack_bf16_tiles(np.ascontiguousarray(W, dtype=np.float32))
    return packed, k_steps, w_norms, 2 * np.abs(b).astype(np.float32), screen_bound(k_steps)


def _dense_max(head, dense):
    """The largest ``|weight|`` of each row of the head's dense copy (kept per copy)."""
    kept = _DENSE_SCREEN.get(head)
    if kept is not None and kept[0]() is dense:
        return kept[1]
    top = np.abs(dense).max(axis=1) if dense.shape[1] else np.zeros(dense.shape[0])
    top = np.ascontiguousarray(top, dtype=np.float32)
    _DENSE_SCREEN[head] = (weakref.ref(dense), top)
    return top


def _screened_topk(est, operands, h, X, k, n_threads):
    """:func:`_full_topk`'s ids and score bits, from bfloat16 screening on AMX tiles.

    The tile unit scores every label of the rows in bfloat16
    (:func:`sksketch._kernels._sparse_head.screened_topk`); each screened
    score is within a proven bound of its float32 score
    (:func:`screen_bound`), so a label whose upper bound is below the k-th
    best lower bound cannot be in the top k, and the few others (about 10 of
    Delicious' 983 labels a row) are scored again in float32 by the same
    operations as :func:`full_scores`. A row whose scores are not finite or
    whose candidates are too many is scored in full.
    """
    packed, k_steps, w_norms, b_twice, c_net = operands
    head = getattr(est, "sparse_head_", None)
    if head is not None and est.sparse_head_weight_ > 0:
        dense = head._dense_weights()
        dense_max = _dense_max(head, dense)
        scale = float(est.sparse_head_weight_)
    else:
        dense = None
        dense_max, scale = np.zeros(1, np.float32), 0.0
    L = est.output_weights_.shape[0]
    max_cand = max(SCREEN_MIN_CANDIDATES, k, L // SCREEN_CANDIDATE_SHARE)
    ids, vals, full = _sparse_head.screened_topk(
        h, est.output_weights_, est.output_bias_, packed, k_steps, w_norms, b_twice,
        c_net, X.indptr, X.indices, X.data, dense, dense_max, scale, k, max_cand, n_threads)
    if full.size:
        ids[full], vals[full] = _full_topk(est, h[full], X[full], k, n_threads)
    return ids, vals


def _full_topk(est, h, X, k, n_threads):
    """:func:`topk_ids` from every label's score, a chunk of rows at a time."""
    L = len(est.classes_)
    # Score rows in chunks of at most ~64 MB of float32 scores.
    chunk = max(1, min(X.shape[0], (1 << 24) // max(L, 1)))
    if chunk >= X.shape[0]:  # one chunk (a single row's call among them)
        return _network.topk_rows(np.ascontiguousarray(full_scores(est, h, X)), k, n_threads)
    ids = np.empty((X.shape[0], k), dtype=np.int32)
    vals = np.empty((X.shape[0], k), dtype=np.float32)
    for s in range(0, X.shape[0], chunk):
        scores = np.ascontiguousarray(full_scores(est, *_row_range(h, X, s, s + chunk)))
        ids[s : s + chunk], vals[s : s + chunk] = _network.topk_rows(scores, k, n_threads)
        # freed before the next chunk's scores: one chunk alive at a time
        del scores
    return ids, vals


def _score_bounds(est):
    """The model's entry of the bounds cache: what bounded_rows needs, and how it fared.

    A list ``[weakref(W), weakref(b), step, bounds, rows tried, rows scored
    in full]`` (:func:`_layer_entry`); ``bounds`` is :func:`output_bounds` of
    the output layer (None if a weight is not finite).
    """
    return _layer_entry(_BOUNDS, _BOUNDS_LOCK, est, output_bounds, 0, 0)


def _layer_entry(cache, lock, est, build, *extra):
    """The model's entry of ``cache`` while its output layer stays, else a new one.

    A list ``[weakref(W), weakref(b), step, build(W, b), *extra]`` for the
    output weights and bias: any new array or training step builds it again
    (the arrays are held by weak references, so a dead one never matches a
    new one).
    """
    W, b = est.output_weights_, est.output_bias_
    with lock:
        entry = cache.get(est)
    if entry is not None and entry[0]() is W and entry[1]() is b and entry[2] == est._step:
        return entry
    entry = [weakref.ref(W), weakref.ref(b), est._step, build(W, b), *extra]
    with lock:
        cache[est] = entry
    return entry


def output_bounds(W, b):
    """The output layer's part of :func:`bounded_rows`, or None if a weight is not finite."""
    pos = np.empty(W.shape[0], dtype=np.float64)
    neg = np.empty(W.shape[0], dtype=np.float64)
    finite = bool(np.isfinite(b).all())
    for s in range(0, W.shape[0], 4096):
        block = W[s : s + 4096].astype(np.float64)
        finite = finite and bool(np.isfinite(block).all())
        part = np.maximum(block, 0)
        pos[s : s + 4096] = np.sqrt(np.einsum("ij,ij->i", part, part))
        part = np.minimum(block, 0, out=part)
        neg[s : s + 4096] = np.sqrt(np.einsum("ij,ij->i", part, part))
    if not finite or W.shape[0] == 0:
        return None
    up = np.float32(np.inf)
    pos32 = np.nextafter(pos.astype(np.float32), up)
    neg32 = np.nextafter(neg.astype(np.float32), up)
    b64 = b.astype(np.float64)
    slopes, icpts, breaks = _sparse_head.upper_envelope(pos32.astype(np.float64), b64)
    margin = float(max(float((pos32.astype(np.float64) + neg32).max()),
                       float(np.abs(b64).max())))
    return pos32, neg32, slopes, icpts, breaks, margin


def _bounded_topk(est, bounds, h, X, k, n_threads):
    """:func:`bounded_rows` of the model's layers and head."""
    head = getattr(est, "sparse_head_", None)
    if head is None or not est.sparse_head_weight_ > 0:
        head = None
    clusters = _cluster_head(est)
    return bounded_rows(est.output_weights_, est.output_bias_, bounds, head,
                        est.sparse_head_weight_ if head is not None else 0.0, h, X, k, n_threads,
                        clusters, est.label_cluster_weight_ if clusters is not None else 0.0)


def bounded_rows(W, b, bounds, head, scale, h, X, k, n_threads, clusters=None,
                 cluster_scale=0.0):
    """Top-k of ``h @ W.T + b`` plus ``scale`` times the head's scores of X, by bounds.

    With ``clusters`` (a :class:`LabelClusterHead`), plus ``cluster_scale``
    times each label's cluster score, as :func:`full_scores` adds it.

    The ids and score bits of :func:`full_scores` then ``topk_rows``, from
    few labels' scores (:func:`sksketch._kernels._sparse_head.bounded_topk`;
    ``bounds`` is :func:`output_bounds` of ``(W, b)``, ``head`` a
    :class:`SparseLabelHead` or None). Returns ids, scores and the positions
    of the rows it left to full scoring (their ids and scores are to be
    overwritten).
    """
    pos, neg, slopes, icpts, breaks, margin = bounds
    L = W.shape[0]
    if head is not None:
        indptr, labels, weights = head.indptr, head.labels, head.weights
        # the most head pairs one row's features reach (from the rows'
        # features alone: a single row costs no pass over every feature)
        reached = np.concatenate(
            [[0], np.cumsum(indptr[X.indices + 1] - indptr[X.indices])])
        max_terms = int((reached[X.indptr[1:]] - reached[X.indptr[:-1]]).max())
    else:
        indptr = np.zeros(X.shape[1] + 1, dtype=np.int64)
        labels, weights = np.zeros(1, np.int32), np.zeros(1, np.float32)
        max_terms = 0
    nt = max(1, n_threads)
    scratch = getattr(_SCRATCH, "arrays", None)
    if scratch is None or scratch[0].shape[1] < nt or scratch[0].shape[2] != L:
        scratch = (
            np.zeros((3, nt, L), dtype=np.float32),
            np.zeros((3, nt, L), dtype=np.int32),
            np.zeros((nt, L), dtype=np.uint8),
            np.empty((nt, 16 * L), dtype=np.uint8),
            np.empty((nt, 0), dtype=np.float32),
            np.empty((nt, 0), dtype=np.int64),
        )
    if scratch[4].shape[1] < max(max_terms, 1):
        size = max(max_terms, 1, 2 * scratch[4].shape[1])
        scratch = (*scratch[:4], np.empty((scratch[4].shape[0], size), dtype=np.float32),
                   np.empty((scratch[4].shape[0], size), dtype=np.int64))
    _SCRATCH.arrays = scratch
    extra = {}
    if clusters is not None:
        n_clusters = clusters.n_clusters
        cs = getattr(_SCRATCH, "clusters", None)
        if cs is None or cs[0].shape[0] < nt or cs[0].shape[1] != n_clusters or (
                cs[3].shape[1] != L):
            cs = (np.zeros((nt, n_clusters), dtype=np.float32),
                  np.zeros((nt, n_clusters), dtype=np.int32),
                  np.zeros((nt, n_clusters), dtype=np.uint8),
                  np.zeros((nt, L), dtype=np.float32))
            _SCRATCH.clusters = cs
        c_indptr, c_labels, c_weights, members_ptr, members = clusters.kernel_arguments()
        extra = dict(use_clusters=True, c_indptr=c_indptr, c_labels=c_labels,
                     c_weights=c_weights, c_scale=float(cluster_scale),
                     members_ptr=members_ptr, members=members, c_acc=cs[0],
                     c_touched=cs[1], c_mark=cs[2], c_term=cs[3])
    ids, vals, full = _sparse_head.bounded_topk(
        h, W, b, pos, neg, X.indptr, X.indices, X.data, indptr, labels, weights,
        float(scale), head is not None, slopes, icpts, breaks, margin, *scratch, k,
        max(64, L // BOUNDED_CANDIDATES), nt, **extra)
    return ids, vals, np.flatnonzero(full)


def proba(est, X):
    """Softmax over all labels (float64, dense), from float32 logits a chunk of rows at a time."""
    h = hidden(est, X)
    out = np.empty((X.shape[0], len(est.classes_)), dtype=np.float64)
    # float32 logits of a chunk of rows at a time: no second dense array
    chunk = max(1, (1 << 24) // max(len(est.classes_), 1))
    for s in range(0, X.shape[0], chunk):
        scores = out[s : s + chunk]
        scores[...] = full_scores(est, h[s : s + chunk], X[s : s + chunk])
        scores -= scores.max(axis=1, keepdims=True)
        np.exp(scores, out=scores)
        scores /= scores.sum(axis=1, keepdims=True)
    return out


def example_losses(est, X, Y, rows):
    """Exact per-example loss (full softmax cross-entropy of the network) on some rows.

    For the exact-loss sampler: scores rows in chunks, never an
    ``n_samples x n_labels`` array.
    """
    L = len(est.classes_)
    out = np.zeros(len(rows), dtype=np.float32)
    chunk = max(1, (1 << 22) // max(L, 1))
    for s in range(0, len(rows), chunk):
        idx = rows[s : s + chunk]
        Xc, Yc = X[idx], Y[idx]
        scores = full_scores(est, hidden(est, Xc)).astype(np.float64)
        top = scores.max(axis=1, keepdims=True)
        lse = np.log(np.exp(scores - top).sum(axis=1)) + top[:, 0]
        n_true = np.diff(Yc.indptr)
        true_sum = np.add.reduceat(
            scores[np.repeat(np.arange(len(idx)), n_true), Yc.indices],
            np.r_[0, np.cumsum(n_true)[:-1]],
        ) if Yc.nnz else np.zeros(len(idx))
        has = n_true > 0
        out[s : s + chunk][has] = lse[has] - true_sum[has] / n_true[has]
    return out


def precision_at_1(est, X, Y, sample_weight=None):
    """Share of rows (weighted) whose top-ranked label is one of theirs."""
    ids, _ = topk_ids(est, X, 1)
    rows = np.arange(X.shape[0])
    hits = np.asarray(Y[rows, ids[:, 0]]).ravel() > 0
    return float(np.average(hits, weights=sample_weight)) if len(hits) else 0.0


def ranked_rows(n_labels):
    """How many held-out rows the rankings inside ``fit`` read: ``max(250, 2**26 / n_labels)``.

    Each ranking scores every label of every row it reads, so the count
    falls as the label set grows (4,266 rows for 15,728 labels).
    """
    return max(250, (1 << 26) // max(int(n_labels), 1))


def validation_rows(est, X, Y):
    """The labelled rows among the first :func:`ranked_rows` of (X, Y)."""
    n = min(X.shape[0], ranked_rows(len(est.classes_)))
    labeled = np.flatnonzero(np.diff(Y.indptr[: n + 1]) > 0)
    return X[labeled], Y[labeled]


def _chunks(est, X, Y):
    """Row chunks of (X, Y) whose dense score arrays stay near 4 MB each."""
    chunk = max(1, (1 << 20) // max(len(est.classes_), 1))
    for s in range(0, X.shape[0], chunk):
        yield X[s : s + chunk], Y[s : s + chunk]


def head_hits(est, X, Y, head=None):
    """Whether a sparse head alone ranks a row's own label first, per validation row of (X, Y).

    The head is ``sparse_head_`` by default; a bool array, one entry per row
    of :func:`validation_rows`. (The head's top label of each row, as the
    argmax of its dense row of scores: for a head whose pairs fill its grid,
    that argmax, a chunk of rows at a time, as fast as the head's dense
    scores are; otherwise found from the labels the row reaches alone, the
    same label.) The 20 checks of a Delicious fit (1,292 held-out rows
    each): 0.50 s pair by pair, 0.28 s from the dense scores, which are
    built anew after each training step.
    """
    head = est.sparse_head_ if head is None else head
    X, Y = validation_rows(est, X, Y)
    n_threads = predict_threads(est, X.shape[0])
    L = head.n_labels
    if head.scores_densely(X.shape[0]):
        def scores(Xc):
            out = np.zeros((Xc.shape[0], L), dtype=np.float32)
            head.add_scores(out, Xc, 1.0, n_threads)
            return out

        return _argmax_hits(est, X, Y, scores)
    hits = np.zeros(X.shape[0], dtype=np.uint8)
    if X.shape[0]:
        _sparse_head.top1_hits(
            X.indptr, X.indices, X.data, Y.indptr, Y.indices,
            head.indptr, head.labels, head.weights, hits,
            np.empty((n_threads, L), dtype=np.float32), np.zeros((n_threads, L), dtype=np.int32),
            np.empty((n_threads, L), dtype=np.int32), n_threads)
    return hits.astype(bool)


def network_hits(est, X, Y, n_rows=None):
    """Whether the network alone ranks a row's own label first, per validation row of (X, Y).

    The rows of :func:`head_hits`, or their first ``n_rows``; the top label
    is ``numpy.argmax`` of the row's network logits (every label scored, a
    chunk of rows at a time).
    """
    X, Y = validation_rows(est, X, Y)
    if n_rows is not None and n_rows < X.shape[0]:
        X, Y = X[:n_rows], Y[:n_rows]
    return _argmax_hits(est, X, Y, lambda Xc: full_scores(est, hidden(est, Xc)))


def _argmax_hits(est, X, Y, scores):
    """Whether ``numpy.argmax`` of each row's dense ``scores(X chunk)`` is one of its labels.

    A chunk of rows (see :func:`_chunks`) at a time; a bool array.
    """
    hits = np.zeros(X.shape[0], dtype=bool)
    done = 0
    for Xc, Yc in _chunks(est, X, Y):
        n = Xc.shape[0]
        top = np.argmax(scores(Xc), axis=1)
        hits[done:done + n] = np.asarray(Yc[np.arange(n), top]).ravel() != 0
        done += n
    return hits


def _top_hits(base, terms, weights, Y, k, n_threads):
    """Which of each row's top `k` labels by ``base + w * terms``, for each weight, are its own.

    Shape ``(n_rows, len(weights), k)``, bool; `Y` holds the rows' labels (CSR).
    """
    top = np.empty((base.shape[0], len(weights), k), dtype=np.int32)
    best = np.empty(top.shape, dtype=np.float32)
    _sparse_head.mixed_top(base, terms, weights, top, best, n_threads)
    rows = np.repeat(np.arange(base.shape[0]), len(weights) * k)
    return np.asarray(Y[rows, top.ravel()]).reshape(top.shape) != 0


def _reach(heads, X, n_labels, n_threads):
    """Non-zero where any of `heads` reaches a label from a row of X: float32 (rows, labels)."""
    reach = np.zeros((X.shape[0], n_labels), dtype=np.float32)
    data = np.abs(X.data).astype(np.float32, copy=False)
    # (heads built together share their pairs: each set of pairs once)
    for head in {(id(h.indptr), id(h.labels)): h for h in heads}.values():
        _sparse_head.add_scores(
            reach, X.indptr, X.indices, data, head.indptr, head.labels,
            np.ones(head.labels.shape[0], dtype=np.float32), 1.0, n_threads)
    return reach


def _keep_logits(cache, net, reach, k, n_threads):
    """Keep in `cache` the logits of ``net`` a later :func:`mixed_hits` needs.

    Those of the labels the heads reach, and of the labels tied with or
    above each row's ``k``-th best of the others: a mix ranks the rest by
    the network alone, below those. Stops keeping (``cache["skip"]``) past
    ``NET_CACHE_ENTRIES`` entries.
    """
    if cache.get("skip"):
        return
    kth = np.empty(net.shape[0], dtype=np.float32)
    counts = np.empty(net.shape[0], dtype=np.int64)
    _sparse_head.kept_logit_counts(net, reach, k, kth, counts, n_threads)
    indptr = np.concatenate([[0], np.cumsum(counts)])
    cache["entries"] = cache.get("entries", 0) + int(indptr[-1])
    if cache["entries"] > NET_CACHE_ENTRIES:
        cache.clear()
        cache["skip"] = True
        return
    cols = np.empty(indptr[-1], dtype=np.int32)
    values = np.empty(indptr[-1], dtype=np.float32)
    _sparse_head.kept_logits(net, reach, kth, indptr, cols, values, n_threads)
    cache.setdefault("chunks", []).append((indptr, cols, values))


def _kept_logits(cache, c, n_rows, n_labels):
    """Chunk c's network logits from `cache`, the others at -inf."""
    indptr, cols, values = cache["chunks"][c]
    net = np.full((n_rows, n_labels), -np.inf, dtype=np.float32)
    net[np.repeat(np.arange(n_rows), np.diff(indptr)), cols] = values
    return net


def mixed_hits(est, X, Y, heads, weights, per_row=False, net_cache=None):
    """Hits of the network plus each weight times each head on the validation rows of (X, Y).

    Ranks at most ``max(250, 2**26 / n_labels)`` rows, in chunks of rows whose
    three dense score arrays stay near 12 MB; the network scores each chunk
    once for all heads. Returns counts of shape ``(len(heads), len(weights),
    2)``: ``[..., 0]`` the rows whose top label is one of theirs (P@1 times
    the row count), ``[..., 1]`` the labels of theirs among each row's top
    ``TOP_K`` (``P@TOP_K`` times ``TOP_K`` times the row count).

    With ``per_row``, also which rows each mix gets right at 1, a bool array
    of shape ``(len(heads), n_rows, len(weights))`` in the rows' order of
    :func:`head_hits`, for paired comparisons on the same rows.

    ``net_cache``, a dict, keeps the network's logits for later calls on
    the same rows while the network does not train: an empty one is filled
    with those that can rank (see :func:`_keep_logits`; the labels the
    heads reach and each row's best few of the others, the heads' pairs
    staying as they are), a filled one is read instead of scoring every
    label of every row. The hits are the same.
    """
    X, Y = validation_rows(est, X, Y)
    k = min(TOP_K, len(est.classes_))
    L = len(est.classes_)
    hits = np.zeros((len(heads), len(weights), 2), dtype=np.int64)
    n_threads = predict_threads(est, X.shape[0])
    weights = np.asarray(weights, dtype=np.float32)
    cached = net_cache is not None and "chunks" in net_cache and not net_cache.get("skip")
    keep = net_cache is not None and not cached and not net_cache.get("skip")
    mixed = []
    for c, (Xc, Yc) in enumerate(_chunks(est, X, Y)):
        if cached:
            net = _kept_logits(net_cache, c, Xc.shape[0], L)
        else:
            net = np.ascontiguousarray(full_scores(est, hidden(est, Xc)))
            if keep:
                _keep_logits(net_cache, net, _reach(heads, Xc, L, n_threads), k, n_threads)
        scores = np.empty_like(net)
        mixed_c = []
        for h, head in enumerate(heads):
            scores.fill(0)
            head.add_scores(scores, Xc, 1.0, n_threads)
            hit = _top_hits(net, scores, weights, Yc, k, n_threads)
            hits[h, :, 0] += hit[:, :, 0].sum(axis=0)
            hits[h, :, 1] += hit.sum(axis=(0, 2))
            mixed_c.append(hit[:, :, 0])
        mixed.append(mixed_c)
    if not per_row:
        return hits
    if not mixed:
        return hits, np.zeros((len(heads), 0, len(weights)), dtype=bool)
    return hits, np.stack(
        [np.concatenate([m[h] for m in mixed]) for h in range(len(heads))])


def best_head_weight(hits):
    """The grid weight whose ranking is best by P@1 + P@TOP_K, the smaller on ties.

    ``hits`` is :func:`mixed_hits` of one head, shape ``(len(HEAD_WEIGHTS), 2)``.
    P@1 alone decides between weights on the few rows whose top label
    changes; the labels ranked second and third add evidence about the same
    mix. Test P@1 of the chosen weight, mean over ``random_state`` 0-4:
    Bibtex 0.6278 by P@1 against 0.6321 by P@1 + P@3, Delicious 0.6837
    against 0.6850.
    """
    hits = np.asarray(hits)
    score = TOP_K * hits[:, 0] + hits[:, 1]  # TOP_K * n_rows * (P@1 + P@TOP_K)
    return float(HEAD_WEIGHTS[int(np.argmax(score))])


def choose_head_weight(est, X, Y, net_cache=None):
    """Set ``sparse_head_weight_`` to the grid weight ranking (X, Y) best.

    Best by P@1 + P@3, ties to the smaller weight (see :func:`best_head_weight`). Does nothing for
    a model without a head (one first fitted with ``sparse_head=False``) or
    without labelled rows. ``net_cache`` is :func:`mixed_hits`'s.
    """
    if est._training_head() is None or validation_rows(est, X, Y)[0].shape[0] == 0:
        return
    hits = mixed_hits(est, X, Y, [est.sparse_head_], HEAD_WEIGHTS, net_cache=net_cache)[0]
    est.sparse_head_weight_ = best_head_weight(hits)
    choose_cluster_weight(est, X, Y)


def cluster_hits(est, X, Y, weights):
    """Hits of the classifier without its cluster term plus each weight times it, per row.

    As :func:`mixed_hits` for one head, but row by row: shape ``(n_rows,
    len(weights), 2)``, ``[..., 0]`` whether the row's top label is one of
    its labels, ``[..., 1]`` how many of its labels are among its top
    ``TOP_K``, on the validation rows of (X, Y).
    """
    clusters = est.cluster_head_
    X, Y = validation_rows(est, X, Y)
    k = min(TOP_K, len(est.classes_))
    hits = np.zeros((X.shape[0], len(weights), 2), dtype=np.int16)
    done = 0
    n_threads = predict_threads(est, X.shape[0])
    weights = np.asarray(weights, dtype=np.float32)
    for Xc, Yc in _chunks(est, X, Y):
        base = np.ascontiguousarray(full_scores(est, hidden(est, Xc), Xc, clusters=False))
        terms = np.ascontiguousarray(clusters.cluster_scores(Xc, n_threads)[:, clusters.assign])
        hit = _top_hits(base, terms, weights, Yc, k, n_threads)
        hits[done:done + Xc.shape[0], :, 0] = hit[:, :, 0]
        hits[done:done + Xc.shape[0], :, 1] = hit.sum(axis=2)
        done += Xc.shape[0]
    return hits


def choose_cluster_weight(est, X, Y):
    """Set ``label_cluster_weight_`` (``"auto"``) to the grid weight ranking (X, Y) best.

    With the head's weight as it is; best by P@1 + P@3, ties to the smaller
    weight (see :func:`best_head_weight`), and 0 unless the best beats 0 by
    more than ``CLUSTER_Z`` standard errors of the rows' paired differences:
    the clusters' term is an extra expert, kept where the held-out rows
    show it helps. Does nothing without clusters being trained or without
    labelled rows.
    """
    if (est._training_clusters() is None or est.label_cluster_weight != "auto"
            or validation_rows(est, X, Y)[0].shape[0] == 0):
        return
    hits = cluster_hits(est, X, Y, HEAD_WEIGHTS).astype(np.int64)
    score = TOP_K * hits[..., 0] + hits[..., 1]  # (rows, weights)
    best = int(np.argmax(score.sum(axis=0)))
    diff = score[:, best] - score[:, 0]  # HEAD_WEIGHTS[0] is 0
    n = diff.shape[0]
    se = float(diff.std(ddof=1)) * np.sqrt(n) if n > 1 else 0.0
    est.label_cluster_weight_ = (
        float(HEAD_WEIGHTS[best]) if diff.sum() > CLUSTER_Z * se else 0.0)
