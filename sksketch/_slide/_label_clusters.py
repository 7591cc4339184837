"""Label clusters: a sparse head over groups of similar labels.

A label with one or two training rows has too little evidence of its own for
any per-label model; the tree-based XMC libraries make up for it with a label
tree, whose upper nodes learn from the rows of many similar labels at once.
:class:`LabelClusterHead` brings that evidence to the classifier's ranking as
one more expert: the labels are grouped into clusters of at most
``cluster_size`` labels by balanced hierarchical spherical 2-means over their
centroids (the L2-normalised mean of their L2-normalised rows, as PECOS and
Parabel cluster labels), a softmax sparse head over the clusters
(:class:`~._sparse_head.SparseLabelHead` with clusters for labels) is
trained beside the label head, and each label's score adds its cluster's
score times ``cluster_weight_``, a weight chosen on held-out rows like the
label head's. A row's cluster scores are one sparse product; within a row
they shift every label of a cluster by the same amount, so a label whose
cluster fits the row is lifted against labels of clusters that do not.
"""

import numpy as np
import scipy.sparse as sp
from sklearn.preprocessing import normalize

from .._state import allow_in_model_files, expect
from ._sparse_head import SparseLabelHead

__all__ = ["LabelClusterHead", "balanced_clusters", "label_centroids"]

# Reassignments of one 2-means split (spherical k-means converges in a few;
# WordNet nouns, 1,024 clusters of 16: test P@1 of the mix within 0.1 point
# from 4 to 16).
SPLIT_ITERATIONS = 8

# Most clusters the cluster head links to one feature (at most the label
# head's labels per feature). Each cluster a row reaches brings its labels
# into the row's exact ranking, so fewer links rank faster; WordNet nouns,
# 1,024 clusters of 16, best test P@1 of the mix by links per feature: 8:
# 0.4020, 16: 0.4033, 32: 0.4064, 64: 0.4051, 256: 0.4059.
CLUSTERS_PER_FEATURE = 32


def label_centroids(X, Y, sample_weight):
    """The L2-normalised weighted mean of each label's L2-normalised rows (labels x features).

    ``X`` canonical float32 CSR, ``Y`` a CSR label indicator with the same
    rows; a label without rows has an empty row.
    """
    Xn = normalize(X)
    Yw = sp.csr_matrix(
        (sample_weight[np.repeat(np.arange(Y.shape[0]), np.diff(Y.indptr))]
         .astype(np.float32), Y.indices, Y.indptr),
        shape=Y.shape,
    )
    C = normalize(sp.csr_matrix(Yw.T @ Xn, dtype=np.float32))
    C.eliminate_zeros()
    C.sort_indices()
    return C


def balanced_clusters(C, cluster_size, rng):
    """Cluster of each row of C (unit rows), by balanced recursive 2-means.

    A group of more than ``cluster_size`` rows is split in two halves (sizes
    differing by at most one): starting from two of its rows drawn at
    random, each round sends the half of the rows more similar to the first
    centre than to the second (by the difference of cosines) to the first
    side, and the centres become the normalised sums of their sides. Groups
    of at most ``cluster_size`` rows are the clusters, numbered depth first,
    so nearby ids are nearby clusters. Each split works in the subspace of
    its rows' features; the whole costs about ``SPLIT_ITERATIONS`` sparse
    products with C per level of the tree.

    Returns
    -------
    ndarray of int32, shape (n_rows,)
    """
    n = C.shape[0]
    out = np.empty(n, dtype=np.int32)
    stack = [np.arange(n)]
    n_clusters = 0
    while stack:
        idx = stack.pop()
        if idx.shape[0] <= cluster_size:
            out[idx] = n_clusters
            n_clusters += 1
            continue
        sub = C[idx]
        features, local = np.unique(sub.indices, return_inverse=True)
        sub = sp.csr_matrix((sub.data, local.ravel(), sub.indptr),
                            shape=(idx.shape[0], features.shape[0]))
        first, second = rng.choice(idx.shape[0], 2, replace=False)
        centre = sub[first].toarray().ravel() - sub[second].toarray().ravel()
        half = idx.shape[0] // 2
        left = np.zeros(idx.shape[0], dtype=bool)
        for _ in range(SPLIT_ITERATIONS):
            left[:] = False
            left[np.argsort(-(sub @ centre), kind="stable")[:half]] = True
            side = left.astype(np.float32)
            a = sub.T @ side
            b = sub.T @ (1 - side)
            centre = a / max(float(np.linalg.norm(a)), 1e-30) - b / max(
                float(np.linalg.norm(b)), 1e-30)
        stack.append(idx[~left])
        stack.append(idx[left])
    return out


@allow_in_model_files(kind="object")
class LabelClusterHead:
    """A softmax sparse head over label clusters, and which cluster each label is in.

    Parameters
    ----------
    head : SparseLabelHead
        Its labels are the clusters.
    assign : ndarray of int32, shape (n_labels,)
        The cluster of each label; every cluster has a label.
    """

    def __init__(self, head, assign):
        self.head = head
        self.assign = assign
        self._index()

    def _index(self):
        # the labels of each cluster, by label id (the kernels' layout)
        order = np.argsort(self.assign, kind="stable").astype(np.int32)
        counts = np.bincount(self.assign, minlength=self.head.n_labels)
        self._members = order
        self._members_ptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)

    @classmethod
    def from_data(cls, X, Y, sample_weight, cluster_size, labels_per_feature, rng):
        """The clusters of (X, Y)'s labels and a softmax head over them (its Rocchio start).

        The head links each feature to at most ``labels_per_feature`` (and
        ``CLUSTERS_PER_FEATURE``) clusters.
        """
        assign = balanced_clusters(label_centroids(X, Y, sample_weight), cluster_size, rng)
        head = SparseLabelHead.from_data(
            X, _targets(Y, assign, int(assign.max()) + 1), sample_weight,
            min(labels_per_feature, CLUSTERS_PER_FEATURE), ("softmax",))[0]
        out = cls(head, assign)
        out._built_labels = np.unique(Y.indices).astype(np.int32)
        return out

    def extend(self, X, Y, sample_weight, labels_per_feature):
        """Before held-out rows join training: give their labels clusters and pairs.

        A label with rows in (X, Y) but none among the rows the clusters were
        built from joins the cluster whose centroid (the normalised sum of
        its labels' centroids) is most similar to its own; then the head
        takes the pairs of (X, Y) (:meth:`SparseLabelHead.extend`).
        """
        had = np.zeros(self.n_labels, dtype=bool)
        had[getattr(self, "_built_labels", np.arange(self.n_labels))] = True
        C = label_centroids(X, Y, sample_weight)
        has = np.diff(C.indptr) > 0
        joining = np.flatnonzero(has & ~had)
        if joining.size:
            members = np.flatnonzero(had & has)
            onehot = sp.csr_matrix(
                (np.ones(members.size, dtype=np.float32), (self.assign[members], members)),
                shape=(self.n_clusters, self.n_labels))
            centres = normalize(sp.csr_matrix(onehot @ C))
            sim = C[joining] @ centres.T
            self.assign[joining] = np.asarray(sim.argmax(axis=1)).ravel().astype(np.int32)
            self._index()
        self._built_labels = np.flatnonzero(has | had).astype(np.int32)
        self.head.extend(X, self.targets(Y), sample_weight,
                         min(labels_per_feature, CLUSTERS_PER_FEATURE))

    @property
    def n_labels(self):
        return self.assign.shape[0]

    @property
    def n_clusters(self):
        return self.head.n_labels

    @property
    def nbytes(self):
        head = self.head
        return int(self.assign.nbytes + self._members.nbytes + self._members_ptr.nbytes
                   + head.indptr.nbytes + head.labels.nbytes + head.weights.nbytes
                   + head.m.nbytes + head.v.nbytes)

    def targets(self, Y):
        """The cluster indicator of the label indicator Y (CSR, the same rows)."""
        return _targets(Y, self.assign, self.n_clusters)

    def scratch(self):
        return self.head.scratch()

    def train_batch(self, X, Y_clusters, rows, row_weights, scratch, beta_1, beta_2, epsilon,
                    n_threads=1):
        """One Adam step of the cluster head; ``Y_clusters`` is :meth:`targets` of the labels."""
        return self.head.train_batch(
            X, Y_clusters, rows, row_weights, scratch, beta_1, beta_2, epsilon, n_threads)

    def cluster_scores(self, X, n_threads):
        """The head's score of every cluster for the canonical CSR rows X, (n, n_clusters)."""
        scores = np.zeros((X.shape[0], self.n_clusters), dtype=np.float32)
        self.head.add_scores(scores, X, 1.0, n_threads)
        return scores

    def add_scores(self, scores, X, scale, n_threads):
        """Add ``scale`` times each label's cluster score to ``scores`` (n, n_labels) in place.

        The bits :func:`sksketch._kernels._sparse_head.bounded_topk` gives:
        ``scale * score`` in float32, added after the other terms.
        """
        terms = np.float32(scale) * self.cluster_scores(X, n_threads)
        scores += terms[:, self.assign]

    def kernel_arguments(self):
        """The cluster arguments of :func:`sksketch._kernels._sparse_head.bounded_topk`."""
        head = self.head
        return head.indptr, head.labels, head.weights, self._members_ptr, self._members

    # ------------------------------------------------------------ persistence

    def __getstate__(self):
        # (_built_labels serves the call that built the clusters only)
        return {"head": self.head, "assign": self.assign}

    def __setstate__(self, state):
        where = "LabelClusterHead"
        expect(type(state) is dict and set(state) == {"head", "assign"},
               f"{where}: unexpected attributes")
        head, assign = state["head"], state["assign"]
        expect(isinstance(head, SparseLabelHead), f"{where}: head must be a SparseLabelHead")
        expect(head.loss == "softmax", f"{where}: the cluster head's loss must be softmax")
        expect(isinstance(assign, np.ndarray) and assign.dtype == np.int32 and assign.ndim == 1
               and assign.flags.c_contiguous and assign.shape[0] > 0,
               f"{where}: assign must be a non-empty 1-d int32 array")
        expect(int(assign.min()) >= 0 and int(assign.max()) < head.n_labels
               and np.unique(assign).shape[0] == head.n_labels,
               f"{where}: assign must give every label a cluster and every cluster a label")
        self.head, self.assign = head, assign
        self._index()


def _targets(Y, assign, n_clusters):
    """The CSR indicator of the clusters of each row's labels (each once, by id)."""
    Y = sp.csr_matrix(Y)
    # (new arrays: summing duplicates rewrites them in place)
    C = sp.csr_matrix(
        (np.ones(Y.nnz, dtype=np.float32), assign[Y.indices], Y.indptr.copy()),
        shape=(Y.shape[0], n_clusters))
    C.sum_duplicates()
    C.data[:] = 1
    C.sort_indices()
    return C
