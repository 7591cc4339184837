"""A sparse linear head from input features straight to labels.

A hidden layer of a few hundred units has to squeeze every label's
evidence through the same narrow embedding; a rare label whose rows share a
distinctive word gets no direct path from that word to its score. The head
gives it one: a linear model ``s_j = sum_f (x_f / |x|) V[f, j]`` restricted to
the (feature, label) pairs seen together in training, at most
``labels_per_feature`` labels per feature (those whose mean training row
weighs the feature most). Like the TF-IDF rankers of tree-based XMC
libraries, its size is bounded by ``n_features * labels_per_feature``, never
by ``n_features * n_labels``.

A softmax head starts as a nearest-centroid (Rocchio) classifier:
``V[f, j]`` is the ``f`` entry of the L2-normalised mean of label ``j``'s
normalised rows, times ``INIT_LOGIT``, and is trained with its own softmax
cross-entropy; a squared-hinge head starts at 0 and is trained with
one-vs-rest squared hinges, as the linear models of tree-based XMC libraries
are (both losses exact over all labels, see
:mod:`sksketch._kernels._sparse_head`), by lazy Adam. The network and the
head are experts whose scores the classifier adds with a weight chosen on
held-out rows.
"""

import threading
import weakref

import numpy as np
import scipy.sparse as sp
from sklearn.preprocessing import normalize

from .._kernels import _sparse_head
from .._kernels._network import aligned_array
from .._state import allow_in_model_files, expect

__all__ = ["LOSSES", "SparseLabelHead", "pairs_per_feature"]

# logit of a row equal to its label's centroid at the start
INIT_LOGIT = 16.0
# Adam step of the head's weights: they start at Rocchio values of order
# INIT_LOGIT / sqrt(nnz), so the network's 1e-3 would leave them unchanged.
# Test P@1 of the head alone after 5 epochs, step 0.05 against 0.1: Bibtex
# 0.585 / 0.562, Delicious 0.532 / 0.532, WordNet nouns 0.400 / 0.394.
LEARNING_RATE = 0.05
# Adam's epsilon of a damped head (``damped=True``), in units of one row's
# share of a batch's gradient (1 / rows in the batch): 0.01 / 128 = 7.8e-5 at
# the default batch size. Lazy Adam moves a pair the batches rarely reach by
# up to 3.2x the step of one they reach every time (its moments,
# bias-corrected at the global step, hold a single gradient); an epsilon
# near one row's gradient damps those lone steps, and the small steps of
# labels the row gives little probability. Which is better depends on the
# data, so sparse_head_loss="auto" trains both softmax heads and keeps the
# better one held out. Peak test P@1 of the softmax head alone, trained on
# every training row from its Rocchio start (epochs to the peak), epsilon
# 1e-8 against 1e-4 at batch 128: WordNet nouns 0.4008 (5) / 0.4052 (5),
# Bibtex 0.6016 (4) / 0.6195 (6), Delicious 0.5454 (2) / 0.5746 (5); the
# generated confusable-label problem 0.9286 (5) / 0.9024 (5).
DAMPED_EPSILON = 0.01

LOSSES = ("softmax", "squared_hinge")
# Margins of the squared hinge, (a row's own labels, the others): the loss is
# max(0, own - s)^2 on its labels and max(0, other + s)^2 on the others. A
# label the row does not reach scores 0 and has no pair to move. On a head
# whose pairs fill DENSE_MIN_FILL of its grid a row reaches nearly every label
# (Bibtex 99.9%, Delicious 96% of them), and the margins are the usual 1 and
# 1. On a sparse head a row reaches a few percent of the labels (10% on a
# generated problem of 10 features a row, 10,000 labels), and margins 1 and 1
# push the wrong labels it reaches to -1, below the 0 of every label it does
# not reach: a feature the row shares with a wrong label then counts
# against that label, and the pairs spend their weight holding the labels
# that share features apart. Margins 2 and 0 keep the same width between
# the two and put the others' at the score of no evidence. Test P@1 of the
# default fit, margins 1 and 1 against 2 and 0 on every head: that
# generated problem 0.854 / 0.896 (PECOS XR-Linear 0.882), one of 40
# features a row 0.983 / 0.991 (PECOS 0.984); Bibtex 0.639 / 0.632 and
# Delicious 0.688 / 0.682, whose heads are dense (so they keep 1 and 1);
# WordNet nouns and the generated 50K shape choose the softmax head either way.
HINGE_MARGINS = (1.0, 1.0)
SPARSE_HINGE_MARGINS = (2.0, 0.0)

# labels_per_feature="auto": at least DEFAULT_LABELS_PER_FEATURE labels per
# feature, more while the head stays within PAIR_BUDGET pairs (16 bytes each
# with Adam's moments). Data with few features and many labels per row need
# more than 256 per feature (Delicious: 500 features, 983 labels, 19 per row;
# squared-hinge head alone 0.518 with 256, 0.631 with all 983).
DEFAULT_LABELS_PER_FEATURE = 256
PAIR_BUDGET = 1 << 22

# add_scores reads the weights from a dense (features x labels) copy when the
# pairs fill at least DENSE_MIN_FILL of that grid (Delicious 56%, Bibtex; WordNet
# nouns 0.07%), the grid has at most DENSE_MAX_ENTRIES entries, and at least
# DENSE_MIN_ROWS rows are scored (building the copy costs about a millisecond; it
# is kept while the weights array and the step stay, see _dense_weights).
DENSE_MIN_FILL = 0.125
DENSE_MAX_ENTRIES = 1 << 22
DENSE_MIN_ROWS = 256
# pairs a step of SparseLabelHead.extend matches at a time
EXTEND_CHUNK = 1 << 20
# each scoring head's dense weights (SparseLabelHead._dense_weights), while they stay
_DENSE = weakref.WeakKeyDictionary()
_DENSE_LOCK = threading.Lock()


def _normalize_columns(C, chunk=1 << 22):
    """Scale each column of the float32 CSR matrix ``C`` to unit L2 norm, in place.

    The values of :func:`sklearn.preprocessing.normalize` on the transpose
    (each norm summed in float64 over the column's float32 squares, in row
    order; a column of zeros left as it is), without a transposed copy.
    """
    norms = np.zeros(C.shape[1])
    for start in range(0, C.nnz, chunk):
        d = C.data[start:start + chunk]
        # (add.at: each column's sum in row order, as the row normaliser's)
        np.add.at(norms, C.indices[start:start + chunk], (d * d).astype(np.float64))
    np.sqrt(norms, out=norms)
    norms[norms == 0] = 1.0
    for start in range(0, C.nnz, chunk):
        C.data[start:start + chunk] /= norms[C.indices[start:start + chunk]]


def fills_share(n_pairs, n_features, n_labels):
    """Whether ``n_pairs`` pairs fill at least ``DENSE_MIN_FILL`` of the feature-label grid."""
    return n_pairs >= DENSE_MIN_FILL * n_features * n_labels


def fills_grid(n_pairs, n_features, n_labels):
    """Whether a head of ``n_pairs`` pairs scores and trains from a dense copy of them.

    Its pairs fill at least ``DENSE_MIN_FILL`` of the feature-label grid
    (:func:`fills_share`), and the grid has at most ``DENSE_MAX_ENTRIES``
    entries.
    """
    return (n_features * n_labels <= DENSE_MAX_ENTRIES
            and fills_share(n_pairs, n_features, n_labels))

# A training batch is cut into this many parts of consecutive rows, each
# summing its gradients in its own buffer, so that two threads share the
# head's work and the step is the same on any number of threads (see
# sksketch._kernels._sparse_head.train_batch).
BATCH_PARTS = 2

# The width of a new training scratch's gradient rows (pairs), widened by
# doubling when a batch reaches more pairs (see SparseLabelHead.scratch).
GRAD_START_WIDTH = 1 << 16


def pairs_per_feature(labels_per_feature, n_features):
    """The most labels the head links to one feature, ``"auto"`` resolved."""
    if labels_per_feature != "auto":
        return int(labels_per_feature)
    return max(DEFAULT_LABELS_PER_FEATURE, PAIR_BUDGET // max(int(n_features), 1))


@allow_in_model_files(kind="object")
class SparseLabelHead:
    """Feature-to-label weights over a fixed set of pairs, and their optimiser state.

    Parameters
    ----------
    n_features, n_labels : int
    indptr : ndarray of int64, shape (n_features + 1,)
    labels : ndarray of int32, shape (n_pairs,)
    weights : ndarray of float32, shape (n_pairs,)
        Pairs of feature ``f``: ``labels[indptr[f]:indptr[f + 1]]``.
    loss : {"softmax", "squared_hinge"}, default="softmax"
        What training minimises (see :func:`sksketch._kernels._sparse_head.train_batch`).
    damped : bool, default=False
        Adam's epsilon is ``DAMPED_EPSILON`` rows' gradient, not the estimator's.
    sparse : bool, default=False
        The squared hinge takes ``SPARSE_HINGE_MARGINS`` instead of
        ``HINGE_MARGINS``: :meth:`from_data` sets it for heads whose pairs
        fill less than ``DENSE_MIN_FILL`` of their grid, however large the
        grid (kept as it is when the pairs are extended).
    """

    def __init__(self, n_features, n_labels, indptr, labels, weights, loss="softmax",
                 damped=False, sparse=False):
        self.loss = loss
        self.damped = bool(damped)
        self.sparse = bool(sparse)
        self.n_features = int(n_features)
        self.n_labels = int(n_labels)
        self.indptr = indptr
        self.labels = labels
        self.weights = weights
        self.m = np.zeros(weights.shape, dtype=np.float32)
        self.v = np.zeros(weights.shape, dtype=np.float32)
        self.step = 0

    @classmethod
    def from_data(cls, X, Y, sample_weight, labels_per_feature, losses=("softmax",),
                  damped=None):
        """Heads of (X, Y), one per loss in ``losses``, over the same pairs.

        ``X`` is canonical float32 CSR, ``Y`` a CSR label indicator with the
        same rows, ``sample_weight`` one float per row. The softmax head
        starts at the Rocchio weights; the squared-hinge head starts at 0
        (from Rocchio weights, whose scores are all positive, its first
        epoch only pushes the negatives down, and it ends lower: Bibtex
        with 40% of its rows, test P@1 mixed with the network 0.576 from
        Rocchio against 0.578 from 0; 10%: 0.449 against 0.445). The heads
        share the read-only pair arrays.
        """
        n_features, n_labels = X.shape[1], Y.shape[1]
        Yw = sp.csr_matrix(
            (sample_weight[np.repeat(np.arange(Y.shape[0]), np.diff(Y.indptr))]
             .astype(np.float32), Y.indices, Y.indptr),
            shape=Y.shape,
        )
        # features x labels, each entry summed over the rows in their order;
        # built in this layout, the product is the one array of pairs held
        # (a label-major product and its transpose are two, beside a model
        # that trains: 250 MB each at the Amazon-670K shape)
        C = sp.csr_matrix(normalize(X).T.tocsr() @ Yw, dtype=np.float32)
        _normalize_columns(C)  # each label's centroid
        C.eliminate_zeros()
        C.sort_indices()  # each feature's labels by id
        counts = np.diff(C.indptr)
        kept = np.minimum(counts, labels_per_feature)
        keep = np.ones(C.nnz, dtype=bool)
        # a feature with too many labels keeps those of largest weight (the
        # lower label id on ties: a stable sort of labels already by id)
        for f in np.flatnonzero(counts > labels_per_feature):
            start, stop = C.indptr[f], C.indptr[f + 1]
            order = np.argsort(-C.data[start:stop], kind="stable")
            keep[start + order[labels_per_feature:]] = False
        # (a mask, not an index array: at the Amazon-670K shape's 20 million
        # pairs, every transient array of pairs is hundreds of megabytes
        # beside a model that trains)
        indptr = np.zeros(n_features + 1, dtype=np.int64)
        np.cumsum(kept, out=indptr[1:])
        indices, data = C.indices, C.data
        del C
        labels = indices[keep].astype(np.int32, copy=False)  # by feature, then label id
        del indices
        weights = data[keep].astype(np.float32, copy=False)
        del data, keep
        weights *= INIT_LOGIT
        n_pairs = weights.shape[0]
        damped = (False,) * len(losses) if damped is None else damped
        # (by the fill alone: the dense path's cap on the grid's size is memory's)
        sparse = not fills_share(n_pairs, n_features, n_labels)
        # each softmax head starts at the Rocchio weights (the last one takes
        # the array itself), a squared-hinge head at 0
        n_softmax = sum(loss == "softmax" for loss in losses)
        heads = []
        for loss, damp in zip(losses, damped, strict=True):
            if loss == "softmax":
                n_softmax -= 1
                start = weights if n_softmax == 0 else weights.copy()
            else:
                start = np.zeros(n_pairs, np.float32)
            heads.append(cls(n_features, n_labels, indptr, labels, start, loss, damp, sparse))
        return heads

    def extend(self, X, Y, sample_weight, labels_per_feature):
        """Take the pairs of (X, Y) as :meth:`from_data` would, keeping what training learnt.

        A fit that holds rows out builds its head from the other rows, and
        the held-out rows join training for the last epoch: a label whose
        rows were all held out has no pair yet, and no epoch could give it
        one. Called with every row before that epoch, this rebuilds the
        pair set from them (each feature's ``labels_per_feature`` labels of
        largest centroid weight); a pair the head had keeps its weight and
        Adam moments, a new one starts as :meth:`from_data` starts it (the
        Rocchio weight for the softmax head, 0 for the squared hinge).
        """
        new = type(self).from_data(X, Y, sample_weight, labels_per_feature, (self.loss,))[0]
        L = np.int64(self.n_labels)
        old_ptr, new_ptr = self.indptr, new.indptr
        # Pairs are sorted by feature, then label id, in both: a pair's key
        # (feature, label) is found among the old keys by a binary search, a
        # run of features of about EXTEND_CHUNK new pairs at a time (whole
        # arrays of int64 keys would take 8 bytes a pair, twice, beside a
        # model: 320 MB at the Amazon-670K shape's 20 million pairs).
        f0 = 0
        while f0 < self.n_features:
            f1 = int(np.searchsorted(new_ptr, new_ptr[f0] + EXTEND_CHUNK, side="right")) - 1
            f1 = min(max(f1, f0 + 1), self.n_features)
            a0, a1, b0, b1 = old_ptr[f0], old_ptr[f1], new_ptr[f0], new_ptr[f1]
            if a1 > a0 and b1 > b0:
                old_keys = np.repeat(np.arange(f1 - f0, dtype=np.int64),
                                     np.diff(old_ptr[f0:f1 + 1])) * L + self.labels[a0:a1]
                new_keys = np.repeat(np.arange(f1 - f0, dtype=np.int64),
                                     np.diff(new_ptr[f0:f1 + 1])) * L + new.labels[b0:b1]
                pos = np.minimum(np.searchsorted(old_keys, new_keys), old_keys.shape[0] - 1)
                found = np.flatnonzero(old_keys[pos] == new_keys)
                for name in ("weights", "m", "v"):
                    getattr(new, name)[b0 + found] = getattr(self, name)[a0 + pos[found]]
            f0 = f1
        self.weights, self.m, self.v = new.weights, new.m, new.v
        self.indptr, self.labels = new.indptr, new.labels

    @property
    def n_pairs(self):
        return self.labels.shape[0]

    def scratch(self):
        """Buffers :meth:`train_batch` needs, released by the caller after fitting.

        One row per part of a batch (``BATCH_PARTS``): each part's rows add
        their gradients to its own row of ``grad``, which holds the pairs of
        the features a batch reaches (:meth:`train_batch` widens it when a
        batch needs more), not every pair: of the Amazon-670K shape's 20
        million pairs, a batch of 128 of 100,000 rows reaches up to about
        2.8 million.
        """
        P = BATCH_PARTS
        return {
            "grad": np.zeros((P, min(max(self.n_pairs, 1), GRAD_START_WIDTH)), dtype=np.float32),
            "offset": np.full((P, self.n_features), -1, dtype=np.int64),
            "touched": np.empty((P, max(self.n_features, 1)), dtype=np.int32),
            "acc": np.zeros((P, self.n_labels), dtype=np.float32),
            "label_mark": np.zeros((P, self.n_labels), dtype=np.int32),
            "reached": np.empty((P, self.n_labels), dtype=np.int32),
            "vals": np.empty((P, self.n_labels), dtype=np.float32),
            **(self._dense_scratch()
               if fills_grid(self.n_pairs, self.n_features, self.n_labels) else {}),
        }

    def _on_grid(self, values, dtype, grid=None):
        """``values`` of the pairs on the dense (n_features, n_labels) grid, 0 elsewhere.

        ``grid``: zeros of ``n_features`` rows of at least ``n_labels`` columns to
        write them into (its first ``n_labels`` columns), instead of a new array.
        """
        if grid is None:
            grid = np.zeros((self.n_features, self.n_labels), dtype=dtype)
        grid[np.repeat(np.arange(self.n_features), np.diff(self.indptr)), self.labels] = values
        return grid

    def _dense_scratch(self):
        F, L = self.n_features, self.n_labels
        return {"dense_w": self._on_grid(self.weights, np.float32),
                "dense_mask": self._on_grid(1, np.uint8),
                "dense_grad": np.zeros((BATCH_PARTS, F, L), dtype=np.float32),
                # which weights at which step the dense copy holds
                "dense_of": [weakref.ref(self.weights), self.step]}

    def train_batch(self, X, Y, rows, row_weights, scratch, beta_1, beta_2, epsilon,
                    n_threads=1):
        """One Adam step on rows ``rows`` of (X, Y); returns (loss sum, weight sum).

        The batch's parts run on up to ``n_threads`` threads; the step does
        not depend on how many. A damped head takes its own epsilon,
        ``DAMPED_EPSILON / len(rows)``, instead of ``epsilon``.
        """
        dense = "dense_w" in scratch
        if dense and (scratch["dense_of"][0]() is not self.weights
                      or scratch["dense_of"][1] != self.step):
            scratch.update(self._dense_scratch())  # the weights moved outside this scratch
        self.step += 1
        if dense:
            scratch["dense_of"][1] = self.step
        grad_scale = 1.0 / max(len(rows), 1)
        if self.damped:
            epsilon = DAMPED_EPSILON * grad_scale
        margins = SPARSE_HINGE_MARGINS if self.sparse else HINGE_MARGINS
        while True:
            loss, weight, need = _sparse_head.train_batch(
                X.indptr, X.indices, X.data, Y.indptr, Y.indices,
                rows, row_weights, self.indptr, self.labels, self.weights, self.m, self.v,
                scratch["grad"], scratch["offset"], scratch["touched"],
                scratch["acc"], scratch["label_mark"], scratch["reached"], scratch["vals"],
                self.n_labels, grad_scale,
                LEARNING_RATE, beta_1, beta_2, epsilon, self.step, LOSSES.index(self.loss),
                int(n_threads), scratch.get("dense_w"), scratch.get("dense_mask"),
                scratch.get("dense_grad"), *margins,
            )
            if not need:
                return loss, weight
            # the batch's pairs do not fit: nothing moved; a wider buffer
            # (in the scratch itself, which heads over the same pairs share;
            # a batch never needs more than every pair)
            width = min(max(2 * scratch["grad"].shape[1], need), self.n_pairs)
            scratch["grad"] = np.zeros((BATCH_PARTS, width), dtype=np.float32)

    def add_scores(self, scores, X, scale, n_threads):
        """Add ``scale`` times the head's scores of the rows of X to ``scores`` in place.

        A head whose pairs fill at least ``DENSE_MIN_FILL`` of the
        feature-label grid, scoring at least ``DENSE_MIN_ROWS`` rows, adds
        them from a dense copy of its weights (a vectorised row at a time,
        the same sums as pair by pair).
        """
        if self.scores_densely(X.shape[0]):
            dense = self._dense_weights()
            _sparse_head.add_scores_dense(
                scores, X.indptr, X.indices, X.data, dense, float(scale), n_threads)
            return
        _sparse_head.add_scores(
            scores, X.indptr, X.indices, X.data, self.indptr, self.labels, self.weights,
            float(scale), n_threads,
        )

    def scores_densely(self, n_rows):
        """Whether :meth:`add_scores` scores ``n_rows`` rows from the dense copy."""
        return n_rows >= DENSE_MIN_ROWS and fills_grid(
            self.n_pairs, self.n_features, self.n_labels)

    def _dense_weights(self):
        """The pairs' weights on the dense feature-label grid, 0 elsewhere.

        An array of ``n_features`` rows of ``n_labels`` weights, each padded
        with zeros to whole 64-byte lines and starting on one (what
        :func:`~sksketch._kernels._sparse_head.add_scores_dense` reads
        fastest). Kept (outside the head's state) while its weights array
        and step stay: a model that predicts batch after batch builds it
        once. (Code that changes the weights other than by a training step
        gives the head a new array, as early stopping's restore does.)
        """
        with _DENSE_LOCK:
            kept = _DENSE.get(self)
        if kept is not None and kept[0]() is self.weights and kept[1] == self.step:
            return kept[2]
        dense = self._on_grid(self.weights, np.float32, aligned_array(
            (self.n_features, -(-self.n_labels // 16) * 16), np.float32, zeros=True))
        with _DENSE_LOCK:
            _DENSE[self] = (weakref.ref(self.weights), self.step, dense)
        return dense

    # ------------------------------------------------------------ persistence

    def __getstate__(self):
        return dict(self.__dict__)

    def __setstate__(self, state):
        state.setdefault("loss", "softmax")  # heads saved before the loss was a choice
        state.setdefault("damped", False)
        state.setdefault("sparse", False)  # heads saved before the margins depended on it
        self.__dict__.update(state)
        self._check_state()

    def _check_state(self):
        """Refuse a state whose pairs would index outside the head's arrays."""
        s = self.__dict__
        where = "SparseLabelHead"
        expect(set(s) == {"n_features", "n_labels", "indptr", "labels", "weights", "m", "v",
                          "step", "loss", "damped", "sparse"}, f"{where}: unexpected attributes")
        expect(s["loss"] in LOSSES, f"{where}: loss must be one of {LOSSES}")
        expect(isinstance(s["damped"], bool), f"{where}: damped must be a bool")
        expect(isinstance(s["sparse"], bool), f"{where}: sparse must be a bool")
        D, L = s["n_features"], s["n_labels"]
        expect(isinstance(D, int) and isinstance(L, int) and 0 <= D < 2**31
               and 0 < L < 2**31, f"{where}: invalid sizes")
        expect(isinstance(s["step"], int) and s["step"] >= 0, f"{where}: invalid step")
        indptr, labels = s["indptr"], s["labels"]
        expect(isinstance(indptr, np.ndarray) and indptr.dtype == np.int64
               and indptr.shape == (D + 1,) and indptr.flags.c_contiguous,
               f"{where}: indptr must be int64 of shape ({D + 1},)")
        n = labels.shape[0] if isinstance(labels, np.ndarray) else -1
        expect(indptr[0] == 0 and indptr[-1] == n and bool(np.all(np.diff(indptr) >= 0)),
               f"{where}: indptr must rise from 0 to the number of pairs")
        for name, dtype in (("labels", np.int32), ("weights", np.float32), ("m", np.float32),
                            ("v", np.float32)):
            a = s[name]
            expect(isinstance(a, np.ndarray) and a.dtype == dtype and a.shape == (n,)
                   and a.flags.c_contiguous, f"{where}: {name} must be {dtype.__name__} "
                   f"of shape ({n},)")
        expect(n == 0 or (int(labels.min()) >= 0 and int(labels.max()) < L),
               f"{where}: labels out of range")
        if n > 1:
            # each feature's labels rise (the kernels update a feature's
            # labels sixteen at a time, and a repeated label would collide)
            rising = np.diff(labels) > 0
            starts = indptr[1:-1]
            rising[starts[(starts > 0) & (starts < n)] - 1] = True
            expect(bool(rising.all()), f"{where}: a feature's labels must rise")


