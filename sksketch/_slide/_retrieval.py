"""The retrieval index behind ``inference="lsh"``.

A label's score is ``h . w_j + b_j`` plus the sparse heads' terms. The index
finds, per row, the few labels worth scoring:

- SimHash tables over the centred rows ``[w_j - mean(w), b_j - mean(b)]``
  queried with ``[h, 1]`` (the bias appended, so a key and its query meet
  at the angle the logit depends on; centring moves all of a row's scores
  by the same amount but spreads the labels over the buckets), ``T`` tables
  of ``K`` sign bits each. Labels are ranked by in how many of the row's
  ``T`` buckets they appear, and the most frequent are kept (not the first
  buckets that fill a budget);
- the labels the sparse head scores highest for the row (a cheap sparse sum
  over the labels its features reach);
- the labels of highest bias, which the network favours for any row;
- then every candidate is scored exactly, and the top k returned
  (:func:`budgets` gives each source's share).

The index is built from the output layer when ``inference="lsh"`` first
predicts after the weights change, from a seed of the model, so a pickled or
saved model rebuilds the same index and predicts the same labels. It is not
stored with the model.
"""

import threading
import weakref

import numpy as np

from .._kernels import _retrieval

# share of the labels the tables, the head and the biases each contribute per row
TABLE_FRACTION = 0.01
HEAD_FRACTION = 0.001
PRIOR_FRACTION = 0.001
# fewest candidates per source (all labels below it)
MIN_BUDGET = 64
# at most this many label ids across all tables (4 bytes each)
MAX_TABLE_IDS = 1 << 26
MAX_TABLES = 512
MIN_TABLES = 16
# most random projections computed per vector (tables draw their bits from them)
MAX_PROJECTIONS = 8192
# ids a query counts, over all its buckets
QUERY_IDS = 1 << 14
# a bucket keeps at most this many times the mean bucket's labels (and at least the minimum)
BUCKET_CAPACITY_FACTOR = 4
MIN_BUCKET_CAPACITY = 64
# rows hashed at a time when building
BUILD_CHUNK = 8192

_INDEXES = weakref.WeakKeyDictionary()
_LOCK = threading.RLock()  # index_for calls cached_index under it


def index_geometry(n_labels, dim):
    """``(n_tables, n_bits)`` of the index over ``n_labels`` rows of ``dim`` weights.

    As many tables as recall needs and memory allows: ``2 * dim`` (the ids
    then take twice the bytes of the float32 rows they index), at most as
    many as fit ``MAX_TABLE_IDS`` ids (256 MB), between 16 and 512. Keys of
    as many bits as make a query count about ``QUERY_IDS`` ids in all
    (``n_tables * n_labels / 2**n_bits``), between 4 and 16, so a query
    costs about the same at any label count. Recall of the network's exact
    top 5 among 1% of the labels, default fits: 0.98 on WordNet nouns
    (15,728 labels, 256 weights; 512 tables of 9 bits), 0.98 on the
    50,000-label generated shape (512 of 11), 0.76 on the Amazon-670K shape
    (128 weights; 100 of 12); ``benchmarks/bench_retrieval.py`` measures it.
    """
    L = max(int(n_labels), 1)
    n_tables = int(np.clip(min(MAX_TABLE_IDS // L, 2 * int(dim)), MIN_TABLES, MAX_TABLES))
    n_bits = int(np.clip(round(np.log2(n_tables * L / QUERY_IDS)), 4, 16))
    return n_tables, n_bits


def index_nbytes(n_labels, dim):
    """Bytes of the index over ``n_labels`` rows of ``dim`` weights, at most (full buckets)."""
    n_tables, n_bits = index_geometry(n_labels, dim)
    n_proj = min(n_tables * n_bits, MAX_PROJECTIONS)
    return (4 * n_tables * n_labels + 8 * n_tables * ((1 << n_bits) + 1)
            + 4 * n_proj * (dim + 1) + 4 * n_tables * n_bits + 4 * n_labels)


def budgets(n_labels, k):
    """Candidates the tables, the head and the biases give a row.

    The tables 1% of the labels; the head's top 0.1%, and the 0.1% of
    highest bias (the labels the network ranks first for any row: on the
    Amazon-670K shape they lift the P@1 of 1% from the tables by 0.4 points,
    to full scoring's); each at least 64 and k.
    """
    def share(fraction):
        return int(min(n_labels, max(k, MIN_BUDGET, int(np.ceil(fraction * n_labels)))))

    return share(TABLE_FRACTION), share(HEAD_FRACTION), share(PRIOR_FRACTION)


class RetrievalIndex:
    """SimHash tables over the rows ``[w_j, b_j]`` of an output layer.

    Parameters
    ----------
    W : ndarray of shape (n_labels, H), float32
    b : ndarray of shape (n_labels,), float32
    seed : int
        Seed of the projections.
    n_threads : int
    """

    def __init__(self, W, b, seed, n_threads=1):
        L, H = W.shape
        self.n_tables, self.n_bits = index_geometry(L, H)
        n_proj = min(self.n_tables * self.n_bits, MAX_PROJECTIONS)
        rng = np.random.RandomState(int(seed) % (2**32))
        self.R = np.ascontiguousarray(rng.standard_normal((n_proj, H)), dtype=np.float32)
        self.r_last = np.ascontiguousarray(rng.standard_normal(n_proj), dtype=np.float32)
        # each table's bits: distinct projections of the pool, drawn at random
        self.bits = np.stack([rng.choice(n_proj, self.n_bits, replace=False)
                              for _ in range(self.n_tables)]).astype(np.int32)
        # Centred keys: a query's ranking does not change (its scores all move
        # by the same -h . mean_w - mean_b), but rows that share a common
        # direction no longer crowd into a few buckets.
        mean_w = W.mean(axis=0, dtype=np.float64).astype(np.float32)
        mean_b = np.float32(b.mean(dtype=np.float64)) if L else np.float32(0)
        keys = np.empty((self.n_tables, L), dtype=np.uint16)
        for s in range(0, L, BUILD_CHUNK):
            keys[:, s : s + BUILD_CHUNK] = self.hash(
                W[s : s + BUILD_CHUNK] - mean_w, b[s : s + BUILD_CHUNK] - mean_b, n_threads).T
        nb = 1 << self.n_bits
        self.n_buckets = nb
        # the labels by bias, highest first: the network's ranking of a row
        # it knows nothing about
        self.by_bias = np.argsort(-b, kind="stable").astype(np.int32)
        # A bucket lists its labels by bias, highest first: a query takes the
        # labels at its threshold count in the order it meets them, so among
        # equally many collisions it prefers those the network favours. A
        # bucket keeps at most `cap` labels, those of highest bias: labels
        # whose rows barely moved from where they started (rare ones) can
        # share a bucket in every table, and a query landing there would
        # count them all.
        self.bucket_capacity = cap = max(MIN_BUCKET_CAPACITY,
                                         BUCKET_CAPACITY_FACTOR * -(-L // nb))
        counts = np.stack([np.bincount(keys[t], minlength=nb) for t in range(self.n_tables)])
        offsets = np.zeros((self.n_tables, nb + 1), dtype=np.int64)
        np.cumsum(np.minimum(counts, cap), axis=1, out=offsets[:, 1:])
        # each table's ids follow the last one's (one array, sized once)
        np.cumsum(offsets[:, -1], out=offsets[:, 0])
        offsets[:, 0] -= offsets[:, -1]
        offsets[:, 1:] += offsets[:, :1]
        self.ids = np.empty(int(offsets[-1, -1]) if self.n_tables else 0, dtype=np.int32)
        rank = np.arange(L)
        for t in range(self.n_tables):
            order = self.by_bias[np.argsort(keys[t][self.by_bias], kind="stable")]
            starts = np.concatenate([[0], np.cumsum(counts[t])[:-1]])
            keep = rank - starts[keys[t][order]] < cap
            self.ids[offsets[t, 0] : offsets[t, -1]] = order[keep]
        self.offsets = offsets.ravel()

    def hash(self, V, last, n_threads=1):
        """Keys ``(n, n_tables)`` of the rows ``[V[i], last[i]]``."""
        return _retrieval.hash_keys(
            np.ascontiguousarray(V, dtype=np.float32),
            np.ascontiguousarray(last, dtype=np.float32),
            self.R, self.r_last, self.bits, n_threads)

    @property
    def nbytes(self):
        return (self.offsets.nbytes + self.ids.nbytes + self.R.nbytes + self.r_last.nbytes
                + self.bits.nbytes + self.by_bias.nbytes)


def cached_index(est):
    """The model's index if it is built and current, else None."""
    with _LOCK:
        entry = _INDEXES.get(est)
        if entry is not None and entry[0]() is est.output_weights_ and (
                entry[1]() is est.output_bias_ and entry[2] == est._step):
            return entry[3]
    return None


def index_for(est):
    """The model's index over its current output layer (built once per set of weights).

    Held by the model's entry in a weak dictionary, with weak references to
    the arrays it was built from: any new array or training step builds it
    again, and it goes with the model.
    """
    with _LOCK:
        index = cached_index(est)
        if index is None:
            W, b = est.output_weights_, est.output_bias_
            index = RetrievalIndex(W, b, est.lsh_tables_.seed, est._n_threads())
            _INDEXES[est] = (weakref.ref(W), weakref.ref(b), est._step, index)
    return index


_SCRATCH = threading.local()


def _scratch(n_threads, L):
    s = getattr(_SCRATCH, "arrays", None)
    if s is None or s[0].shape[0] < n_threads or s[0].shape[1] != L:
        # (the lists of labels met take one slot more: see candidate_topk)
        s = (np.zeros((n_threads, L), dtype=np.uint16),
             np.empty((n_threads, L + 1), dtype=np.int32),
             np.zeros((n_threads, L), dtype=np.float32),
             np.zeros((n_threads, L), dtype=np.uint8),
             np.empty((n_threads, L + 1), dtype=np.int32),
             np.zeros((n_threads, L), dtype=np.uint8))
        _SCRATCH.arrays = s
    return s


def topk(est, index, h, X, k, head, scale, clusters, cluster_scale, n_threads):
    """Top-k ids and scores of each row among its retrieved candidates.

    Returns ids, scores and the number of labels scored per row.
    """
    L = est.output_weights_.shape[0]
    keys = index.hash(h, np.ones(h.shape[0], dtype=np.float32), n_threads)
    nt = max(1, n_threads)
    if head is not None:
        indptr, labels, weights = head.indptr, head.labels, head.weights
    else:
        indptr = np.zeros(X.shape[1] + 1, dtype=np.int64)
        labels, weights = np.zeros(1, np.int32), np.zeros(1, np.float32)
    if clusters is not None:
        terms = np.float32(cluster_scale) * clusters.cluster_scores(X, n_threads)
        terms = np.ascontiguousarray(terms, dtype=np.float32)
        assign = clusters.assign
    else:
        terms = np.zeros((1, 1), dtype=np.float32)
        assign = np.zeros(1, dtype=np.int32)
    table_budget, head_budget, prior_budget = budgets(L, k)
    return _retrieval.candidate_topk(
        keys, index.offsets, index.ids, index.n_buckets, h, est.output_weights_,
        est.output_bias_, X.indptr, X.indices, X.data, indptr, labels, weights,
        float(scale), head is not None, terms, assign, clusters is not None, index.by_bias, k,
        table_budget, head_budget, prior_budget, *_scratch(nt, L), nt)
