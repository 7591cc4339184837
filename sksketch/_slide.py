"""SLIDEClassifier: extreme multi-label classification with LSH-sparse training."""

import copy
import math
import threading
import warnings
from numbers import Integral, Real

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, ClassifierMixin, _fit_context
from sklearn.exceptions import DataConversionWarning
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from ._kernels import _openmp, _rows, _slide
from ._kernels._lsh import LSHTables
from ._negative_sampling import N_COSINE_STEPS, collision_table, unigram_cdf
from ._slide_plan import make_plan
from ._slide_state import check_state as _check_slide_state
from ._sparse_head import SparseLabelHead
from ._state import allow_in_model_files
from .base import VersionedStateMixin, _EpochStoppingMixin
from .sampling import BaseSampler, UniformSampler, check_sampler, run_epoch
from .sampling._loop import fit_epochs
from .utils._threads import threads_for
from .utils._validation import check_binary_indicator, check_sparse_indices

# Stamps mark labels already in an example's active set; they are per thread
# and must never wrap around, so they are reset well before 2**32.
_STAMP_LIMIT = 2**32 - 2**20

# Values of a dense input converted per thread: inputs below 2**20 values are
# converted on the calling thread.
_MIN_ROWS_WORK_PER_THREAD = 1 << 19


def _dense_to_csr32(X, name, n_threads):
    """CSR float32 of a dense matrix, in two row passes (scipy's conversion goes
    through ``nonzero`` and COO: about 10x slower on Fashion-MNIST's 60000 x 784)."""
    X = np.ascontiguousarray(X, dtype=np.float32)
    n_threads = threads_for(X.size, n_threads, _MIN_ROWS_WORK_PER_THREAD)
    counts = np.empty(X.shape[0], dtype=np.int64)
    _rows.dense_row_nonzeros(X, counts, n_threads)
    indptr = np.zeros(X.shape[0] + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    nnz = int(indptr[-1])
    if nnz >= 2**31:
        raise ValueError(f"{name} has {nnz} non-zeros; at most 2**31 - 1 are supported")
    indices = np.empty(nnz, dtype=np.int32)
    data = np.empty(nnz, dtype=np.float32)
    _rows.dense_to_csr(X, indptr, indices, data, n_threads)
    indptr = indptr.astype(np.int32)
    out = sp.csr_matrix((data, indices, indptr), shape=X.shape, copy=False)
    out.indices, out.indptr = indices, indptr  # int32 whatever scipy would pick
    out.has_canonical_format = True
    return out


def _as_csr32(X, name="X", n_threads=1):
    """CSR float32 with int32 indices and canonical (sorted, summed) entries."""
    if isinstance(X, np.ndarray) and X.ndim == 2:
        return _dense_to_csr32(X, name, n_threads)
    X = sp.csr_matrix(X, dtype=np.float32)
    if X.nnz >= 2**31:
        raise ValueError(f"{name} has {X.nnz} non-zeros; at most 2**31 - 1 are supported")
    if not X.has_canonical_format:
        X = X.copy()
        X.sum_duplicates()
    X.indices = X.indices.astype(np.int32, copy=False)
    X.indptr = X.indptr.astype(np.int32, copy=False)
    return X


# Guards the lazy build of the inference tables against concurrent predicts.
_INFERENCE_TABLES_LOCK = threading.Lock()


def _is_indicator(y):
    """Whether y is a 2-D label indicator rather than class labels."""
    if sp.issparse(y):
        return True
    y = np.asarray(y) if not hasattr(y, "ndim") else y
    return y.ndim == 2 and y.shape[1] > 1


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
    "_inference_tables_cache": "hash_tables",
    "sampler_": "sampler",
}

# The logit an output row initialised at its label's centroid gives a row
# whose hidden activation points the same way and has the mean length (see
# _init_output_centroids); measured on Bibtex, Delicious and WordNet nouns.
_CENTROID_LOGIT = 20.0

# Standard deviation of the hidden pre-activations at the start (test P@1
# with 0.3 against 1: Bibtex 0.608 / 0.602, Delicious 0.676 / 0.649,
# WordNet nouns without the sparse head 0.351 / 0.313; 0.1 is worse again).
_INPUT_INIT_STD = 0.3

# Weights of the sparse head's logits that sparse_head_weight="auto" tries,
# on held-out rows when fit has at least this many.
_AUTO_HOLD_OUT_ROWS = 10_000
_HEAD_WEIGHTS = (0.0, 0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0)

# Dense outputs (decision_function, predict_proba) above this size warn.
_DENSE_OUTPUT_WARNING_BYTES = 2**31


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


@allow_in_model_files
class SLIDEClassifier(VersionedStateMixin, _EpochStoppingMixin, ClassifierMixin, BaseEstimator):
    """Extreme multi-label (and multiclass) classifier trained with SLIDE.

    A network ``sparse input -> dense hidden layer (ReLU) -> softmax output over
    all labels`` whose output layer is trained sparsely: locality-sensitive hash
    tables over the output neurons' weight vectors pick, for each example, the
    few labels whose weights resemble its hidden activation; with its true
    labels and a few random ones they form the *active set*, and only those
    neurons are computed, back-propagated and updated. Training and inference
    cost therefore grow with the active set, not with the number of labels.
    The examples of a batch are processed in parallel without locks (HOGWILD)
    and Adam updates only the rows the batch touched.

    Parameters
    ----------
    hidden_layer_size : int, default=256
        Width of the hidden layer. Wider layers rank better (the labels'
        output rows have more room to differ) at a cost per step that grows
        in proportion; 256 trains to a higher precision than 128 in fewer
        epochs on every dataset of the benchmarks (see the user guide), and
        keeps a 670,000-label model's arrays under 3 GB.
    hash_family : {"dwta", "simhash"}, default="dwta"
        LSH family over the output layer. ``"dwta"`` (densified winner-take-all)
        suits the sparse, non-negative hidden activations; ``"simhash"``
        (signed random projections) approximates angular similarity.
    n_hashes_per_table : int, default=6
        Hash codes concatenated into one bucket key (K): more codes make
        buckets smaller and more selective.
    n_tables : int, default=50
        Number of hash tables (L): more tables retrieve more candidates.
    n_buckets_log2 : int, default=18
        At most ``2**n_buckets_log2`` buckets per table; longer keys are folded.
    bucket_capacity : int, default=128
        Most labels one bucket keeps.
    bucket_policy : {"reservoir", "fifo"}, default="reservoir"
        Which labels a full bucket keeps: ``"reservoir"``, a uniform random
        subset drawn anew at each rehash; ``"fifo"``, the last ones inserted in
        label order (the reference implementation's behaviour, which favours
        high label ids).
    negative_sampling : {"lsh-embedding", "lsh-label", "uniform", "unigram", \
            "full"}, default="lsh-embedding"
        Where each example's negatives (the labels of its active set besides
        its true ones) come from. All modes share one training kernel:

        - ``"lsh-embedding"`` (SLIDE's scheme): the labels in the buckets of
          the example's hidden activation, i.e. labels whose weights resemble
          it, those the softmax ranks high: the most informative negatives,
          adapting to the input and the weights; costs the hashing of each
          example and the rehashes.
        - ``"lsh-label"``: the labels in the buckets of the weight row of one of
          its true labels (drawn at random): labels confusable with the true
          one. Adapts to the weights, not to the input.
        - ``"uniform"``: labels drawn uniformly at random: cheapest, but most
          are easy negatives that teach little late in training.
        - ``"unigram"``: labels drawn in proportion to their training frequency
          (plus one), counted from the targets and updated by ``partial_fit``:
          pushes down the frequent labels a model over-predicts; static.
        - ``"full"``: every label, the exact softmax: the reference the others
          approximate, at a cost that grows with the number of labels.

        Both LSH modes query the same tables, rehashed on the schedule below,
        and pad with random labels up to ``min_active_labels`` (see
        ``negative_fill``).
    negative_fill : {"uniform", "unigram"}, default="uniform"
        How the LSH modes pad an example's active set when its buckets yield
        fewer than ``min_active_labels`` labels: ``"uniform"`` (the reference
        implementation's rule) or ``"unigram"``, labels drawn in proportion to
        their training frequency as in ``negative_sampling="unigram"``. With
        power-law label frequencies (most extreme classification data) the
        frequent labels are the negatives a model must push down most often,
        so unigram padding with LSH's adaptive candidates can beat either
        alone. Ignored by the other modes.
    max_active_labels : int or float, default=0.01
        The active-set budget of an example (its true labels and its
        negatives): a count, or a fraction of the labels. The set has at least
        ``min_active_labels`` labels, so with the defaults an example gets
        about 1000 negatives.
    min_active_labels : int, default=1000
        Examples whose buckets yield fewer labels are padded with random labels
        up to this size (the reference implementation's rule). The random
        negatives matter: they push down labels the tables rarely return, such
        as frequent labels, which the sampled softmax would otherwise inflate.
        With at most this many labels, training is the exact (full) softmax.
    sampling_correction : {"logq", "none"}, default="logq"
        How the sampled softmax accounts for the labels left out of the active
        set. ``"logq"`` subtracts from each negative's logit the log of its
        inclusion probability, so that the softmax's normaliser estimates the
        full one: for uniform labels ``n_random / (n_labels - n_retrieved)``
        (the random labels stand in for all labels neither true nor
        retrieved); for unigram labels ``1 - (1 - p_i)**n_draws``; for labels
        the tables retrieve ``p + (1 - p) q``, with ``p = 1 - (1 - cp**K)**L``
        their retrieval probability (``cp``, the hash family's collision
        probability at the cosine of the query and the label's weights, is
        exact for SimHash and measured on pairs of vectors at each draw of
        hash functions for DWTA) and ``q`` that of the uniform padding. True
        labels count once, as in the exact softmax. This keeps scores
        comparable across labels sampled often and rarely, and converges to a
        higher precision. ``"none"`` is the reference implementation's
        uncorrected softmax over the active set.
    rehash_interval : int, default=50
        Batches between two rehashes (the tables are rebuilt from the current
        output weights).
    rebuild_interval : int, default=1000
        Batches between two draws of new hash functions.
    rehash_schedule : {"fixed", "exponential"}, default="fixed"
        ``"fixed"`` keeps ``rehash_interval``; ``"exponential"`` grows it as
        ``rehash_interval * exp(rehash_growth * n)`` after the n-th rehash, as
        the weights change less.
    rehash_growth : float, default=0.1
        Growth rate of the ``"exponential"`` schedule.
    batch_size : int, default=128
        Examples per gradient step.
    learning_rate : float, default=1e-3
        Adam step size.
    weight_decay : float, default=0.0
        Decoupled weight decay (as in AdamW): each weight row a batch updates
        also shrinks by ``learning_rate * weight_decay``. Rows a batch does not
        touch are left alone, so rare features and labels decay less. Biases
        are not decayed. Helps on small data sets, where the network overfits.
    output_init : {"centroid", "uniform"}, default="centroid"
        How the output layer starts. ``"centroid"``: each label's row points
        at the mean hidden activation of its training rows (of the first
        ``fit`` or ``partial_fit`` call), so the untrained network is a
        nearest-centroid classifier in the random projection the hidden
        layer starts as, and training needs fewer epochs; labels without a
        row there start random. ``"uniform"``: every row random, uniform in
        ``[-1/sqrt(H), 1/sqrt(H)]``.
    sparse_head : bool, default=True
        Add a sparse linear head from the input features straight to the
        labels, trained beside the network with its own softmax: at most
        ``labels_per_feature`` labels per feature, the pairs seen together
        in training, started as a nearest-centroid classifier of the
        L2-normalised rows. It gives rare labels a direct path from their
        distinctive features, which the narrow hidden layer lacks. The
        classifier ranks labels by the network's logits plus
        ``sparse_head_weight_`` times the head's (with ``inference="lsh"``,
        the retrieved labels are ranked by the network alone). It is built
        from the first ``fit`` or ``partial_fit`` call's rows.
    labels_per_feature : int, default=256
        Most labels the sparse head links to each feature (those whose
        centroid weighs the feature most). Bounds its size by
        ``n_features * labels_per_feature`` pairs (16 bytes each with the
        optimiser state) and its work per row by the row's non-zeros times
        this.
    sparse_head_weight : "auto" or float, default="auto"
        Weight of the sparse head's logits in the ranking. ``"auto"``: the
        weight in ``{0, 1/8, 1/4, ..., 32, 64}`` with the best precision at 1
        on held-out rows. ``fit`` on 10,000 rows or more holds out
        ``validation_fraction`` of them until the last epoch, chooses the
        weight before it, and trains the last epoch on every row (with
        ``early_stopping``, on its validation rows, which stay out); on
        fewer rows the weight is 1.
        ``partial_fit`` ranks each call's rows before it trains on them (the
        first call, whose rows built the head, keeps 1).
    input_dropout : float, default=0.0
        Share of each training example's non-zero input features left out of
        its forward and backward passes (inverted dropout: the others are
        scaled by ``1 / (1 - input_dropout)``); a fresh draw at every step.
        Regularises the input layer, which overfits on small or long-tailed
        data sets. Prediction uses every feature.
    beta_1, beta_2, epsilon : float, default=0.9, 0.999, 1e-8
        Adam parameters.
    max_iter : int, default=5
        Epochs of ``fit``. With the output layer started at the label
        centroids (``output_init``), most of the precision comes in the first
        epochs; small data sets overfit beyond about ten.
    tol : float, default=1e-4
        Training stops when the loss (or, with ``early_stopping``, the
        validation score) has not improved by at least ``tol`` for
        ``n_iter_no_change`` epochs.
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the training data and stop on its
        precision@1.
    validation_fraction : float, default=0.1
    n_iter_no_change : int, default=5
    shuffle : bool, default=True
        Shuffle the examples every epoch (with the default uniform sampler).
    sampler : {None, "uniform", "nw-sketch", "exact-loss"} or BaseSampler, \
            default=None
        Which training rows each batch holds (see :mod:`sksketch.sampling`).
        ``None`` or ``"uniform"``: every row once per epoch, in shuffled order
        (unshuffled with ``shuffle=False`` and ``None``). ``"nw-sketch"``:
        rows drawn in proportion to the loss a Nadaraya-Watson sketch of the
        training losses predicts for them, learnt from the losses the
        training step computes anyway, with importance weights that keep the
        gradient unbiased. ``"exact-loss"``: the same by the current model's
        true losses, from an extra forward pass over all labels (the costly
        baseline). A sampler instance is cloned; its state persists across
        ``partial_fit`` calls. Importance weights multiply ``sample_weight``.
    precision : {"float32", "bfloat16"}, default="float32"
        Arithmetic of the output layer. ``"bfloat16"`` keeps a bfloat16 copy
        of the output weights for the forward and backward passes (bfloat16
        dot products with AVX512_BF16 where the CPU has it) and the output
        layer's Adam moments in bfloat16 with stochastic rounding; gradients
        and master weights stay float32. It halves the memory the passes read
        and cuts a third of Adam's traffic, at a precision cost that is small
        next to the gradient noise.
    inference : {"full", "lsh"}, default="full"
        How ``predict``/``predict_topk`` rank labels: ``"full"`` scores every
        label exactly; ``"lsh"`` scores only the labels the hash tables return
        (faster on huge label sets, approximate).
    predict_top_k : int, default=1
        For multi-label targets, how many of the top-ranked labels ``predict``
        marks in its indicator output.
    n_jobs : int, default=None
        OpenMP threads; ``None`` means all the threads OpenMP allows (see
        ``threadpoolctl``), ``-1`` all CPUs.
    random_state : int, RandomState instance or None, default=None
    verbose : int, default=0
        Print one line per epoch when positive.
    warm_start : bool, default=False
        Continue from the previous ``fit`` instead of starting afresh.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Class labels (multiclass) or ``arange(n_labels)`` (multi-label).
    n_features_in_ : int
    input_weights_ : ndarray of shape (n_features, hidden_layer_size)
    input_bias_ : ndarray of shape (hidden_layer_size,)
    output_weights_ : ndarray of shape (n_classes, hidden_layer_size)
    output_bias_ : ndarray of shape (n_classes,)
        With ``F`` features, ``L`` labels and ``H = hidden_layer_size``, the
        weights take ``4 (F H + L H + H + L)`` bytes and Adam's moments
        ``8 (F H + H + L) + 8 L H`` (``4 L H`` in bfloat16, which adds a
        ``2 L H`` bfloat16 copy of ``output_weights_``). :meth:`memory_usage`
        measures every part; :meth:`estimate_memory` predicts it before
        fitting (see the user guide for the hash tables and the buffers).
    lsh_tables_ : LSHTables
        The hash tables over the output layer. Until training or
        ``inference="lsh"`` first queries them, they hold one bucket per
        table (their hash functions are drawn already).
    sparse_head_ : SparseLabelHead or None
        The sparse feature-to-label head (``sparse_head=True``), else None.
    sparse_head_weight_ : float
        Weight of the head's logits in the ranking (0 without a head).
    loss_curve_ : list of float
        Mean training loss (cross-entropy over the active set) per epoch.
    validation_scores_ : list of float or None
        Validation precision@1 per epoch, with ``early_stopping``.
    mean_active_labels_ : float
        Mean active-set size over the last epoch.
    sampler_ : BaseSampler
        The sampler that drew the training batches (with its state, such as
        the loss sketch and ``effective_sample_size_`` per epoch).
    n_samples_skipped_ : int
        Training rows without any label in the last epoch: they carry no
        softmax target and are skipped.
    n_iter_ : int
        Epochs run.
    t_ : int
        Training rows processed, over all epochs and calls.

    Examples
    --------
    >>> from sksketch import SLIDEClassifier
    >>> from sksketch.datasets import make_extreme_classification
    >>> X, Y = make_extreme_classification(
    ...     n_samples=2000, n_features=2000, n_labels=500, random_state=0)
    >>> clf = SLIDEClassifier(max_iter=5, random_state=0).fit(X[:1500], Y[:1500])
    >>> labels, scores = clf.predict_topk(X[1500:], k=5)
    >>> labels.shape
    (500, 5)
    >>> clf.score(X[1500:], Y[1500:]) > 0.3
    True
    """

    _parameter_constraints = {
        "hidden_layer_size": [Interval(Integral, 1, None, closed="left")],
        "hash_family": [StrOptions({"dwta", "simhash"})],
        "n_hashes_per_table": [Interval(Integral, 1, 64, closed="both")],
        "n_tables": [Interval(Integral, 1, None, closed="left")],
        "n_buckets_log2": [Interval(Integral, 1, 24, closed="both")],
        "bucket_capacity": [Interval(Integral, 1, None, closed="left")],
        "bucket_policy": [StrOptions({"fifo", "reservoir"})],
        "max_active_labels": [
            Interval(Integral, 1, None, closed="left"),
            Interval(Real, 0, 1, closed="right"),
        ],
        "min_active_labels": [Interval(Integral, 0, None, closed="left")],
        "negative_sampling": [StrOptions(set(_slide.MODES))],
        "sampling_correction": [StrOptions({"logq", "none"})],
        "negative_fill": [StrOptions({"uniform", "unigram"})],
        "rehash_interval": [Interval(Integral, 1, None, closed="left")],
        "rebuild_interval": [Interval(Integral, 1, None, closed="left")],
        "rehash_schedule": [StrOptions({"fixed", "exponential"})],
        "rehash_growth": [Interval(Real, 0, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "input_dropout": [Interval(Real, 0, 1, closed="left")],
        "sparse_head": ["boolean"],
        "labels_per_feature": [Interval(Integral, 1, None, closed="left")],
        "sparse_head_weight": [StrOptions({"auto"}), Interval(Real, 0, None, closed="left")],
        "output_init": [StrOptions({"centroid", "uniform"})],
        "beta_1": [Interval(Real, 0, 1, closed="left")],
        "beta_2": [Interval(Real, 0, 1, closed="left")],
        "epsilon": [Interval(Real, 0, None, closed="neither")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "shuffle": ["boolean"],
        "sampler": [None, StrOptions({"uniform", "nw-sketch", "exact-loss"}), BaseSampler],
        "precision": [StrOptions({"float32", "bfloat16"})],
        "inference": [StrOptions({"full", "lsh"})],
        "predict_top_k": [Interval(Integral, 1, None, closed="left")],
        "n_jobs": [Integral, None],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
        "warm_start": ["boolean"],
    }

    def __init__(
        self,
        hidden_layer_size=256,
        *,
        hash_family="dwta",
        n_hashes_per_table=6,
        n_tables=50,
        n_buckets_log2=18,
        bucket_capacity=128,
        bucket_policy="reservoir",
        max_active_labels=0.01,
        min_active_labels=1000,
        negative_sampling="lsh-embedding",
        sampling_correction="logq",
        negative_fill="uniform",
        rehash_interval=50,
        rebuild_interval=1000,
        rehash_schedule="fixed",
        rehash_growth=0.1,
        batch_size=128,
        learning_rate=1e-3,
        weight_decay=0.0,
        output_init="centroid",
        input_dropout=0.0,
        sparse_head=True,
        labels_per_feature=256,
        sparse_head_weight="auto",
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        max_iter=5,
        tol=1e-4,
        early_stopping=False,
        validation_fraction=0.1,
        n_iter_no_change=5,
        shuffle=True,
        sampler=None,
        precision="float32",
        inference="full",
        predict_top_k=1,
        n_jobs=None,
        random_state=None,
        verbose=0,
        warm_start=False,
    ):
        self.hidden_layer_size = hidden_layer_size
        self.hash_family = hash_family
        self.n_hashes_per_table = n_hashes_per_table
        self.n_tables = n_tables
        self.n_buckets_log2 = n_buckets_log2
        self.bucket_capacity = bucket_capacity
        self.bucket_policy = bucket_policy
        self.max_active_labels = max_active_labels
        self.min_active_labels = min_active_labels
        self.negative_sampling = negative_sampling
        self.sampling_correction = sampling_correction
        self.negative_fill = negative_fill
        self.rehash_interval = rehash_interval
        self.rebuild_interval = rebuild_interval
        self.rehash_schedule = rehash_schedule
        self.rehash_growth = rehash_growth
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.input_dropout = input_dropout
        self.sparse_head = sparse_head
        self.labels_per_feature = labels_per_feature
        self.sparse_head_weight = sparse_head_weight
        self.output_init = output_init
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.max_iter = max_iter
        self.tol = tol
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.shuffle = shuffle
        self.sampler = sampler
        self.precision = precision
        self.inference = inference
        self.predict_top_k = predict_top_k
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.verbose = verbose
        self.warm_start = warm_start

    # ------------------------------------------------------------------ tags

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        tags.classifier_tags.multi_label = True
        return tags

    # checks of an unpickled (or sksketch.load-ed) state, in _slide_state.py
    _check_state = _check_slide_state

    # ------------------------------------------------------------ validation

    def _validate_X(self, X, reset):
        # before validate_data, whose dtype conversion sorts a copy of the indices
        check_sparse_indices(X)
        # float32 before the finiteness check, so values beyond float32's range
        # are reported rather than trained on as infinities
        X = validate_data(
            self,
            X,
            accept_sparse=["csr", "csc", "coo"],
            dtype=np.float32,
            reset=reset,
        )
        return _as_csr32(X, n_threads=self._n_threads())

    def _encode_y(self, y, classes, first_call, allow_unknown=False):
        """Targets as a CSR indicator over ``classes_`` (int32 ids).

        With `allow_unknown`, class labels outside ``classes_`` become rows
        with no label (scored as misses) instead of an error.
        """
        if _is_indicator(y):
            check_sparse_indices(y, "y")
            check_classification_targets(y)
            Y = check_binary_indicator(y)
            n_labels = Y.shape[1]
            if first_call:
                if classes is not None and len(classes) != n_labels:
                    raise ValueError(
                        f"classes has {len(classes)} entries but y has {n_labels} columns"
                    )
                self.classes_ = np.arange(n_labels)
                self._multilabel = True
                self._sparse_target = sp.issparse(y)
            elif not self._multilabel:
                raise ValueError(
                    "y is a label indicator matrix but the model was fit on class labels"
                )
            elif n_labels != len(self.classes_):
                raise ValueError(
                    f"y has {n_labels} columns but the model was fit on {len(self.classes_)} labels"
                )
            Y.sort_indices()
            Y.indices = Y.indices.astype(np.int32, copy=False)
            Y.indptr = Y.indptr.astype(np.int32, copy=False)
            return Y

        y = np.asarray(y)
        if y.ndim == 2 and y.shape[1] == 1:
            warnings.warn(
                "A column-vector y was passed when a 1d array was expected.",
                DataConversionWarning,
                stacklevel=3,
            )
            y = y.ravel()
        check_classification_targets(y)
        if first_call:
            self.classes_ = np.unique(y) if classes is None else np.unique(classes)
            self._multilabel = False
            self._sparse_target = False
        elif self._multilabel:
            raise ValueError("y holds class labels but the model was fit on an indicator matrix")
        ids = np.searchsorted(self.classes_, y)
        ids = np.clip(ids, 0, len(self.classes_) - 1)
        known = self.classes_[ids] == y
        if not allow_unknown and not np.all(known):
            raise ValueError(
                f"y contains labels not in classes: {np.unique(y[~known])[:10].tolist()}"
            )
        n = y.shape[0]
        indptr = np.concatenate([[0], np.cumsum(known)]).astype(np.int32)
        return sp.csr_matrix(
            (np.ones(indptr[-1], dtype=np.float32), ids[known].astype(np.int32), indptr),
            shape=(n, len(self.classes_)),
        )

    # ------------------------------------------------------------ fitting

    def _n_threads(self):
        return _openmp.effective_n_threads(self.n_jobs)

    def _initialize(self, X, rng):
        n_features = X.shape[1]
        H = self.hidden_layer_size
        L = len(self.classes_)
        # A hidden unit sums the row's non-zeros, so its variance is
        # Var(w) * |x|^2: scale by the data's mean squared row norm rather than
        # by n_features (Glorot over 10^5 sparse features starts the hidden
        # layer near zero, and each feature row is updated too rarely for Adam
        # to grow it). Hidden pre-activations then start with standard
        # deviation _INPUT_INIT_STD: the first layer is an informative random
        # projection from step one, small enough that what Adam learns soon
        # outweighs it.
        mean_sq_norm = float(X.multiply(X).sum()) / max(X.shape[0], 1)
        bound_in = _INPUT_INIT_STD * np.sqrt(3.0 / max(mean_sq_norm, 1e-12))
        # Output rows: U(-1/sqrt(H), 1/sqrt(H)), independent of the label count.
        bound_out = 1.0 / np.sqrt(H)
        self.input_weights_ = rng.uniform(-bound_in, bound_in, (n_features, H)).astype(np.float32)
        self.input_bias_ = np.zeros(H, dtype=np.float32)
        self.output_weights_ = rng.uniform(-bound_out, bound_out, (L, H)).astype(np.float32)
        self.output_bias_ = np.zeros(L, dtype=np.float32)
        self._adam = {
            name: np.zeros_like(a)
            for name, a in (
                ("m_in", self.input_weights_),
                ("v_in", self.input_weights_),
                ("m_in_bias", self.input_bias_[None, :]),
                ("v_in_bias", self.input_bias_[None, :]),
                ("m_out", self.output_weights_),
                ("v_out", self.output_weights_),
                ("m_out_bias", self.output_bias_[:, None]),
                ("v_out_bias", self.output_bias_[:, None]),
            )
        }
        self._step = 0
        self._batches_since_rehash = 0
        self._batches_since_rebuild = 0
        self._n_rehashes = 0
        self._label_counts = np.zeros(L, dtype=np.int64)
        self.lsh_tables_ = LSHTables(
            self.hash_family,
            H,
            self.n_hashes_per_table,
            self.n_tables,
            bucket_capacity=self.bucket_capacity,
            policy=self.bucket_policy,
            # tables nothing queries yet take one bucket (see _sized_tables)
            n_buckets_log2=self.n_buckets_log2 if self._plan().tables_in_use else 1,
            seed=int(rng.randint(0, 2**31 - 1)),
        )
        self._output_bf16 = None
        self._cp_table = self._row_norms = None
        self.loss_curve_ = []
        self.validation_scores_ = [] if self.early_stopping else None
        self.best_validation_score_ = None if not self.early_stopping else -np.inf
        self._best_loss = np.inf
        self._no_improvement_count = 0
        self.n_iter_ = 0
        self.t_ = 0

    def _init_output_centroids(self, X, Y, sample_weight):
        """Point each label's output row at the mean hidden activation of its rows.

        At initialisation the hidden layer is a random projection of the
        input, so a label's score starts as the cosine, in that projection,
        between the row and the label's training rows (a nearest-centroid
        classifier) instead of noise: the first epoch already ranks well
        and training refines the rows rather than finding them. Row lengths
        make a row pointing at its centroid score ``_CENTROID_LOGIT`` on
        average. Labels without a training row keep their random row.
        """
        # Adam's first moments are zeros of the output layer's shape until
        # training starts: the sums go there, and it is zeroed again.
        sums = self._adam["m_out"]
        chunk = max(1, (1 << 24) // max(self.hidden_layer_size, 1))
        total_norm = total_rows = 0.0
        for start in range(0, X.shape[0], chunk):
            stop = min(start + chunk, X.shape[0])
            hidden = self._hidden(X[start:stop])
            Yc = Y[start:stop]
            # ones of one dtype: the sums do not depend on how y was given
            Yc = sp.csr_matrix(
                (np.ones(Yc.nnz, dtype=np.float32), Yc.indices, Yc.indptr), shape=Yc.shape
            )
            labelled = np.diff(Yc.indptr) > 0
            total_norm += float(np.linalg.norm(hidden[labelled], axis=1).sum())
            total_rows += int(labelled.sum())
            hidden *= sample_weight[start:stop, None]
            cols = np.unique(Yc.indices)
            if cols.size:
                sums[cols] += (Yc[:, cols].T @ hidden).astype(np.float32, copy=False)
        norms = np.linalg.norm(sums, axis=1)
        rows = np.flatnonzero(norms > 0)
        if rows.size and total_norm > 0:
            scale = _CENTROID_LOGIT * total_rows / total_norm
            self.output_weights_[rows] = sums[rows] * (scale / norms[rows])[:, None]
        sums.fill(0)

    def _training_head(self):
        """The sparse head training updates: built at the first call, and still wanted."""
        return getattr(self, "sparse_head_", None) if self.sparse_head else None

    def _plan(self):
        """The :class:`~sksketch._slide_plan.SLIDEPlan` of the fitted label set."""
        return make_plan(self, len(self.classes_))

    def _rehash(self, rng, n_threads, new_functions=False, queries=None):
        """Rebuild the tables from the current output weights.

        With the log-q correction, also keep what the inclusion probabilities
        of retrieved labels need: the norms of the rows as hashed, and the
        family's collision probability as a function of the cosine (measured
        anew with each draw of hash functions, for DWTA).
        """
        self.lsh_tables_ = self._sized_tables(self.lsh_tables_)
        if new_functions:
            self.lsh_tables_.rebuild_functions(int(rng.randint(0, 2**31 - 1)))
        W = self.output_weights_
        self.lsh_tables_.build(W, n_threads=n_threads)
        if self.sampling_correction != "logq":
            return
        self._row_norms = np.linalg.norm(W, axis=1).astype(np.float32)
        if new_functions or getattr(self, "_cp_table", None) is None:
            items = W[rng.randint(0, W.shape[0], size=min(W.shape[0], 256))]
            if self.negative_sampling == "lsh-label" or queries is None:
                queries = W[rng.randint(0, W.shape[0], size=min(W.shape[0], 64))]
            self._cp_table = collision_table(self.lsh_tables_, queries, items, n_threads)

    def _sized_tables(self, tables):
        """`tables`, or their twin with ``2**n_buckets_log2`` buckets.

        Bucket offsets take 4 bytes per bucket and table even when the tables
        are empty (52 MB with the defaults), so a model whose training never
        queries them (a negative sampler without LSH, or a budget covering
        every label) keeps one bucket per table until a first use. The twin
        has the same hash functions: they depend on the seed, not on the
        number of buckets.
        """
        wanted = self._plan().tables.n_buckets_log2
        if tables.n_buckets_log2 >= wanted or tables.n_items or tables.n_rebuilds:
            return tables
        return LSHTables(
            tables.family_name,
            tables.dim,
            tables.n_hashes_per_table,
            tables.n_tables,
            bucket_capacity=tables.bucket_capacity,
            policy=tables.policy_name,
            n_buckets_log2=self.n_buckets_log2,
            seed=tables.seed,
        )

    def _next_rehash_interval(self):
        if self.rehash_schedule == "fixed":
            return self.rehash_interval
        return self.rehash_interval * math.exp(self.rehash_growth * self._n_rehashes)

    def _sync_bf16(self):
        """Match the output layer's copies to ``precision``.

        In bfloat16, the forward and backward passes read a bfloat16 copy of
        the output weights, and Adam keeps the output layer's moments in
        bfloat16 (stochastically rounded, so that slow decays are not lost):
        on huge label sets, Adam's pass over the touched rows is the largest
        cost, and this cuts its memory traffic by a third. The master weights
        stay float32. Switching precision between calls converts the moments.
        """
        from ._kernels._simd import bf16_to_f32, f32_to_bf16

        a = self._adam
        bf16 = self.precision == "bfloat16"
        for name in ("m_out", "v_out"):
            M = a[name]
            if bf16 and M.dtype == np.float32:
                a[name] = f32_to_bf16(M.ravel()).reshape(M.shape)
            elif not bf16 and M.dtype == np.uint16:
                a[name] = bf16_to_f32(M.ravel()).reshape(M.shape)
        if bf16:
            W = self.output_weights_
            self._output_bf16 = f32_to_bf16(W.ravel()).reshape(W.shape)
        else:
            self._output_bf16 = None

    def _run_epoch(self, X, Y, sample_weight, rng, n_threads):
        """One pass over (X, Y) in the sampler's batches; returns the mean loss."""
        plan = self._plan()
        # the active set always holds all of an example's true labels; a
        # budget covering every label is the exact full softmax
        budget = plan.n_labels if plan.mode == "full" else plan.active_size(
            self._max_true_labels(Y))
        use_lsh, min_active = plan.uses_lsh, plan.min_active
        mode = _slide.MODES.index(plan.mode)
        correct = self.sampling_correction == "logq"
        empty_f, empty_d = np.zeros(0, np.float32), np.zeros(0, np.float64)
        label_cdf = self._unigram_cdf if plan.uses_unigram else empty_d
        cp_table = self._cp_table if use_lsh and correct else empty_f
        row_norms = self._row_norms if use_lsh and correct else empty_f
        use_bf16 = self.precision == "bfloat16"
        buf = self._buffers
        W2_bf16 = self._output_bf16 if use_bf16 else np.zeros((0, 0), dtype=np.uint16)
        totals = {"loss": 0.0, "weight": 0.0, "active": 0, "skipped": 0, "rows": 0}
        head = self._training_head()
        tables = {"cp": cp_table, "norms": row_norms}

        def train_batch(batch, weights):
            B = batch.shape[0]
            losses = np.empty(B, dtype=np.float32)
            n_active = np.empty(B, dtype=np.int32)
            if self._stamp_base + B >= _STAMP_LIMIT:
                self._stamps.fill(0)
                self._stamp_base = 0
            _slide.train_batch(
                self.lsh_tables_,
                X.indptr, X.indices, X.data,
                Y.indptr, Y.indices,
                batch, weights,
                self.input_weights_, self.input_bias_,
                self.output_weights_, self.output_bias_,
                W2_bf16,
                buf["W_in"], buf["b_in"][0], buf["touched_in"],
                buf["hidden"], buf["active"], buf["grad"], buf["ghidden"],
                self._stamps, self._stamp_base,
                budget, min_active, mode, use_bf16,
                1.0 / B,
                int(rng.randint(0, 2**63 - 1, dtype=np.int64)),
                n_threads,
                losses, n_active,
                correct, label_cdf, tables["cp"], tables["norms"],
                self.input_dropout,
            )
            self._stamp_base += B
            self._step += 1
            if head is not None:
                head.train_batch(X, Y, batch, weights, self._head_scratch,
                                 self.beta_1, self.beta_2, self.epsilon)
            self._apply_adam(buf, n_active, n_threads, W2_bf16)
            has_labels = n_active > 0
            totals["skipped"] += int(B - has_labels.sum())
            totals["loss"] += float(np.dot(losses[has_labels], weights[has_labels]))
            totals["weight"] += float(weights[has_labels].sum())
            totals["active"] += int(n_active.sum())
            totals["rows"] += B
            self._batches_since_rehash += 1
            self._batches_since_rebuild += 1
            if use_lsh and self._batches_since_rebuild >= self.rebuild_interval:
                self._rehash(rng, n_threads, new_functions=True, queries=buf["hidden"][:B])
                self._batches_since_rebuild = 0
                self._batches_since_rehash = 0
                self._n_rehashes += 1
            elif use_lsh and self._batches_since_rehash >= self._next_rehash_interval():
                self._rehash(rng, n_threads)
                self._batches_since_rehash = 0
                self._n_rehashes += 1
            if use_lsh and correct:
                tables["cp"], tables["norms"] = self._cp_table, self._row_norms
            return losses

        run_epoch(self.sampler_, self.batch_size, train_batch, sample_weight)
        self.t_ += totals["rows"]
        self.n_samples_skipped_ = totals["skipped"]
        n_used = totals["rows"] - totals["skipped"]
        self.mean_active_labels_ = totals["active"] / n_used if n_used else 0.0
        return totals["loss"] / totals["weight"] if totals["weight"] > 0 else 0.0

    def _example_losses(self, X, Y, rows):
        """Exact per-example loss (full softmax cross-entropy) on some rows.

        For the exact-loss sampler: scores rows in chunks, never an
        ``n_samples x n_labels`` array.
        """
        L = len(self.classes_)
        out = np.zeros(len(rows), dtype=np.float32)
        chunk = max(1, (1 << 22) // max(L, 1))
        for s in range(0, len(rows), chunk):
            idx = rows[s : s + chunk]
            Xc, Yc = X[idx], Y[idx]
            scores = self._full_scores(self._hidden(Xc)).astype(np.float64)
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

    def _apply_adam(self, buf, n_active, n_threads, W2_bf16):
        a = self._adam
        hp = (self.learning_rate, self.beta_1, self.beta_2, self.epsilon, self._step)
        decay = self.weight_decay
        B = n_active.shape[0]
        # float32 moments, or bfloat16 ones in bfloat16 precision (see _sync_bf16)
        f32 = a["m_out"].dtype == np.float32
        none32, none16 = np.zeros((0, 0), np.float32), np.zeros((0, 0), np.uint16)
        _slide.update_output_layer(
            buf["hidden"][:B], buf["active"][:B], buf["grad"][:B], n_active,
            self.output_weights_, self.output_bias_,
            a["m_out"] if f32 else none32, a["v_out"] if f32 else none32,
            none16 if f32 else a["m_out"], none16 if f32 else a["v_out"],
            a["m_out_bias"].ravel(), a["v_out_bias"].ravel(), W2_bf16,
            buf["row_count"], buf["touched_rows"], buf["row_start"],
            buf["pair_example"], buf["pair_grad"], *hp, decay, n_threads,
        )
        _slide.adam_update(
            self.input_weights_, a["m_in"], a["v_in"], buf["W_in"],
            buf["touched_in"], *hp, n_threads, None, decay,
        )
        # one row: a thread team would only add a barrier per batch
        _slide.adam_update(
            self.input_bias_[None, :], a["m_in_bias"], a["v_in_bias"], buf["b_in"],
            np.ones(1, dtype=np.uint8), *hp, 1,
        )
        buf["touched_in"].fill(0)

    @staticmethod
    def _max_true_labels(Y):
        return int(np.diff(Y.indptr).max()) if Y.shape[0] else 0

    def _allocate_buffers(self, n_threads, X, Y):
        H = self.hidden_layer_size
        L = len(self.classes_)
        B = self.batch_size
        A = self._plan().active_size(self._max_true_labels(Y))
        self._buffers = {
            # input layer: a dense gradient, applied to the rows a batch touched
            "W_in": np.zeros_like(self.input_weights_),
            "b_in": np.zeros((1, H), dtype=np.float32),
            "touched_in": np.zeros(self.input_weights_.shape[0], dtype=np.uint8),
            # per example of a batch: hidden activation, active labels, their
            # logit gradients, and the hidden layer's gradient (scratch)
            "hidden": np.empty((B, H), dtype=np.float32),
            "active": np.empty((B, A), dtype=np.int32),
            "grad": np.empty((B, A), dtype=np.float32),
            "ghidden": np.empty((B, H), dtype=np.float32),
            # the output layer's fused update groups the batch's pairs by label
            "row_count": np.zeros(L, dtype=np.int32),
            "touched_rows": np.empty(L, dtype=np.int32),
            "row_start": np.empty(L + 1, dtype=np.int32),
            "pair_example": np.empty(B * A, dtype=np.int32),
            "pair_grad": np.empty(B * A, dtype=np.float32),
        }
        self._stamps = np.zeros((n_threads, max(L, 1)), dtype=np.uint32)
        self._stamp_base = 0
        head = self._training_head()
        self._head_scratch = None if head is None else head.scratch(B, head.max_row_pairs(X))
        self._training_buffers_nbytes = _nbytes(
            [self._buffers, self._stamps, self._head_scratch], set())

    def _release_buffers(self):
        # Gradients and stamps are scratch: not part of the fitted model.
        del self._buffers, self._stamps, self._stamp_base, self._head_scratch

    def _fit(self, X, y, sample_weight, *, incremental, classes=None):
        if y is None:
            raise ValueError(
                f"{type(self).__name__} requires y to be passed, but the target y is None"
            )
        if not sp.issparse(y) and np.asarray(y).ndim > 2:
            raise ValueError(
                "y must be class labels (1-D) or a label indicator matrix (2-D), got "
                f"{np.asarray(y).ndim} dimensions"
            )
        fitted = hasattr(self, "output_weights_")
        if incremental:
            first_call = not fitted
            if first_call and classes is None and not _is_indicator(y):
                raise ValueError("classes must be passed on the first call to partial_fit.")
            if not first_call and classes is not None:
                expected = np.arange(len(classes)) if self._multilabel else np.unique(classes)
                if not np.array_equal(self.classes_, expected):
                    raise ValueError(
                        f"classes={classes!r} is not the same as on the first call to "
                        f"partial_fit, was {self.classes_!r}"
                    )
        else:
            first_call = not (self.warm_start and fitted)
        X = self._validate_X(X, reset=first_call)
        Y = self._encode_y(y, classes, first_call=first_call)
        if Y.shape[0] != X.shape[0]:
            raise ValueError(f"X has {X.shape[0]} samples but y has {Y.shape[0]}")
        if not self._multilabel and len(self.classes_) < 2:
            raise ValueError(
                "The number of classes has to be greater than one; got "
                f"{len(self.classes_)} class"
            )
        sample_weight = _check_sample_weight(
            sample_weight, X, dtype=np.float32, ensure_non_negative=True
        )

        rng = check_random_state(self.random_state)
        if first_call:
            self._initialize(X, rng)
        self._rng = getattr(self, "_rng", None) if not first_call else None
        if self._rng is None:
            self._rng = np.random.RandomState(rng.randint(0, 2**31 - 1))
        rng = self._rng
        n_threads = self._n_threads()
        self._label_counts += np.bincount(Y.indices, minlength=len(self.classes_))

        X_val = Y_val = None
        X_all, Y_all, weight_all = X, Y, sample_weight
        auto_weight = self.sparse_head and self.sparse_head_weight == "auto"
        # like HistGradientBoosting's early_stopping="auto": small data sets
        # keep every row for training
        hold_out = self.early_stopping or (auto_weight and X.shape[0] >= _AUTO_HOLD_OUT_ROWS)
        if hold_out and not incremental:
            X, X_val, Y, Y_val, sample_weight, _ = train_test_split(
                X, Y, sample_weight, test_size=self.validation_fraction, random_state=rng
            )
        if first_call:
            self.sparse_head_ = SparseLabelHead.from_data(
                X, Y, sample_weight, self.labels_per_feature) if self.sparse_head else None
            self.sparse_head_weight_ = 0.0 if not self.sparse_head else (
                1.0 if auto_weight else float(self.sparse_head_weight))
        elif incremental and auto_weight:
            # rows the model has not trained on yet
            self._choose_head_weight(X, Y)

        if first_call and self.output_init == "centroid":
            self._init_output_centroids(X, Y, sample_weight)
        plan = self._plan()
        if plan.uses_unigram:
            self._unigram_cdf = unigram_cdf(self._label_counts)
        if plan.uses_lsh and (
            first_call or self.lsh_tables_.n_items == 0
            or (self.sampling_correction == "logq" and getattr(self, "_cp_table", None) is None)
        ):
            self._rehash(rng, n_threads, queries=self._hidden(X[:64]))
        if first_call or not hasattr(self, "sampler_"):
            self.sampler_ = check_sampler(
                UniformSampler(shuffle=self.shuffle) if self.sampler is None else self.sampler
            )
        data = {"X": X, "Y": Y, "weight": sample_weight, "epoch": 0, "weight_chosen": False}

        def start_sampler():
            Xs, Ys = data["X"], data["Y"]
            self.sampler_.start(
                Xs, loss_fn=lambda rows: self._example_losses(Xs, Ys, rows), random_state=rng,
                n_jobs=self.n_jobs,
            )

        # Rows held out only to weigh the sparse head join the last epoch,
        # once the weight is chosen: a fit keeps training on all of its rows.
        merge = (X_val is not None and auto_weight and not self.early_stopping
                 and self.max_iter > 1)

        def epoch():
            data["epoch"] += 1
            if merge and data["epoch"] == self.max_iter:
                self._choose_head_weight(X_val, Y_val)
                data.update(X=X_all, Y=Y_all, weight=weight_all, weight_chosen=True)
                start_sampler()
            return self._run_epoch(data["X"], data["Y"], data["weight"], rng, n_threads)

        start_sampler()
        self._sync_bf16()
        self._allocate_buffers(n_threads, X_all, Y_all)
        try:
            fit_epochs(
                epoch,
                n_epochs=1 if incremental else self.max_iter,
                n_samples=X.shape[0],
                estimator=self,
                sampler=self.sampler_,
                score_validation=(
                    (lambda: self._score_validation(X_val, Y_val)) if self.early_stopping
                    and X_val is not None else None
                ),
                score_name="validation P@1",
                stopping=not incremental,
                # _fit, fit or partial_fit, scikit-learn's _fit_context, the user
                stacklevel=4,
            )
            if auto_weight and X_val is not None and not self.early_stopping and not (
                    data["weight_chosen"]):
                self._choose_head_weight(X_val, Y_val)
        finally:
            self._release_buffers()
        return self

    def _score_validation(self, X_val, Y_val):
        """Validation P@1 of early stopping, with the head's weight chosen on those rows."""
        if self.sparse_head and self.sparse_head_weight == "auto":
            self._choose_head_weight(X_val, Y_val)
        return self._precision_at_1(X_val, Y_val)

    def _choose_head_weight(self, X, Y):
        """Set ``sparse_head_weight_`` to the grid weight with the best P@1 on (X, Y).

        Ranks at most ``max(250, 2**26 / n_labels)`` rows, in chunks of rows
        whose three dense score arrays stay near 12 MB; ties go to the
        smaller weight. Does nothing for a model without a head (one first
        fitted with ``sparse_head=False``).
        """
        if self._training_head() is None:
            return
        L = len(self.classes_)
        n = min(X.shape[0], max(250, (1 << 26) // max(L, 1)))
        labeled = np.flatnonzero(np.diff(Y.indptr[: n + 1]) > 0)
        if len(labeled) == 0:
            return
        X, Y = X[labeled], Y[labeled]
        hits = np.zeros(len(_HEAD_WEIGHTS))
        chunk = max(1, (1 << 20) // max(L, 1))
        n_threads = self._predict_threads(X.shape[0])
        for s in range(0, X.shape[0], chunk):
            Xc, Yc = X[s : s + chunk], Y[s : s + chunk]
            net = np.ascontiguousarray(self._full_scores(self._hidden(Xc)))
            head = np.zeros_like(net)
            self.sparse_head_.add_scores(head, Xc, 1.0, n_threads)
            mixed = np.empty_like(net)
            rows = np.arange(Xc.shape[0])
            for g, weight in enumerate(_HEAD_WEIGHTS):
                np.multiply(head, np.float32(weight), out=mixed)
                mixed += net
                top = np.argmax(mixed, axis=1)
                hits[g] += np.count_nonzero(np.asarray(Yc[rows, top]))
        self.sparse_head_weight_ = float(_HEAD_WEIGHTS[int(np.argmax(hits))])

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None):
        """Train on (X, y) for ``max_iter`` epochs.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Dense or sparse, float32 or float64, held as float32 (values
            beyond its range are refused); sparse input is never densified.
            Unsorted or repeated sparse entries (summed) and 64-bit indices
            give the model of the canonical CSR matrix.
        y : array-like of shape (n_samples,) or {array-like, sparse matrix} of \
                shape (n_samples, n_labels)
            Class labels (multiclass) or a binary indicator matrix
            (multi-label). Rows with no label are skipped (and counted in
            ``n_samples_skipped_``). A sparse indicator's repeated entries add
            up, so a label stored twice in a row is refused as not binary.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weights multiplying each example's gradient.

        Returns
        -------
        self : SLIDEClassifier
        """
        return self._fit(X, y, sample_weight, incremental=False)

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y, classes=None, sample_weight=None):
        """One epoch over (X, y), keeping the model's state across calls.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_labels)
        classes : array-like of shape (n_classes,), default=None
            All the classes, required on the first call for class-label targets
            (optional for indicator targets, whose columns are the classes);
            checked against the first call's when given again.
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        self : SLIDEClassifier
        """
        return self._fit(X, y, sample_weight, incremental=True, classes=classes)

    # ------------------------------------------------------------ prediction

    def _predict_threads(self, n_rows):
        # Waking a thread team costs more than a few rows of work (and the
        # OpenMP and BLAS pools then contend for the cores): small calls,
        # such as single-row latency-bound ones, run on the calling thread.
        return threads_for(n_rows, self.n_jobs, 32)

    def _hidden(self, X):
        return _slide.hidden_forward(
            X.indptr, X.indices, X.data, self.input_weights_, self.input_bias_,
            self._predict_threads(X.shape[0]),
        )

    def _check_predict_X(self, X):
        check_is_fitted(self)
        return self._validate_X(X, reset=False)

    def _full_scores(self, hidden, X=None):
        """Logits of every label for these hidden rows, with the sparse head's if X is given."""
        # Not a BLAS product: its result for a row depends on how many rows
        # come with it and on the thread count; this kernel's does not.
        n_threads = threads_for(hidden.shape[0] * len(self.classes_), self.n_jobs, 32 * 1024)
        scores = _slide.output_scores(
            hidden, self.output_weights_, self.output_bias_, n_threads)
        head = getattr(self, "sparse_head_", None)
        if X is not None and head is not None and self.sparse_head_weight_ > 0:
            head.add_scores(scores, X, self.sparse_head_weight_, n_threads)
        return scores

    def _warn_dense_output(self, n_samples, itemsize, method):
        n_bytes = n_samples * len(self.classes_) * itemsize
        if n_bytes > _DENSE_OUTPUT_WARNING_BYTES:
            warnings.warn(
                f"{method} returns a dense ({n_samples}, {len(self.classes_)}) array "
                f"({n_bytes / 2**30:.1f} GiB); predict_topk ranks the labels in row "
                "chunks without it",
                UserWarning,
                stacklevel=3,
            )

    def _topk_ids(self, X, k):
        """Top-k label ids and scores per row, without an n_samples x n_labels array."""
        L = len(self.classes_)
        k = min(k, L)
        n_threads = self._predict_threads(X.shape[0])
        hidden = self._hidden(X)
        if self.inference == "lsh":
            tables = self._inference_tables()
            fallback = self._frequent_labels(k)
            # Score the union of the query's buckets: at most one full bucket
            # per table.
            max_candidates = tables.n_tables * tables.bucket_capacity
            idx, val, _ = _slide.topk_lsh(
                tables, hidden, self.output_weights_, self.output_bias_,
                fallback, k, max_candidates, n_threads,
            )
            return idx, val
        # Score rows in chunks of at most ~64 MB of float32 scores.
        chunk = max(1, min(X.shape[0], (1 << 24) // max(L, 1)))
        ids = np.empty((X.shape[0], k), dtype=np.int32)
        vals = np.empty((X.shape[0], k), dtype=np.float32)
        for s in range(0, X.shape[0], chunk):
            scores = np.ascontiguousarray(
                self._full_scores(hidden[s : s + chunk], X[s : s + chunk]))
            ids[s : s + chunk], vals[s : s + chunk] = _slide.topk_rows(scores, k, n_threads)
            # freed before the next chunk's scores: one chunk alive at a time
            del scores
        return ids, vals

    def _inference_tables(self):
        """Tables over the current output weights, for ``inference="lsh"``.

        The training tables are rehashed on their schedule, so after training
        they may lag the final weights; inference then uses a copy with the
        same hash functions, built once from the final weights. Training never
        sees it, so predicting between ``partial_fit`` calls does not change
        what is learned.
        """
        if self._batches_since_rehash == 0 and self.lsh_tables_.n_items == len(self.classes_):
            return self.lsh_tables_
        with _INFERENCE_TABLES_LOCK:
            cached = getattr(self, "_inference_tables_cache", None)
            if cached is None or cached[0] != self._step:
                tables = self._sized_tables(copy.deepcopy(self.lsh_tables_))
                tables.build(self.output_weights_, n_threads=self._n_threads())
                self._inference_tables_cache = cached = (self._step, tables)
        return cached[1]

    def _frequent_labels(self, k):
        """The k most frequent training labels, most frequent first (cached)."""
        cached = getattr(self, "_frequent_cache", None)
        if cached is None or cached[0] != self.t_ or len(cached[1]) < k:
            counts = self._label_counts
            size = min(len(counts), max(k, 64))
            top = np.argpartition(-counts, size - 1)[:size] if size < len(counts) else (
                np.arange(len(counts)))
            top = top[np.lexsort((top, -counts[top]))].astype(np.int32)
            self._frequent_cache = cached = (self.t_, top)
        return cached[1][:k]

    def predict_topk(self, X, k=5):
        """The k best-scored labels of each row, best first.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        k : int, default=5
            Labels per row (at most the number of classes).

        Returns
        -------
        labels : ndarray of shape (n_samples, min(k, n_classes))
            Values of ``classes_``.
        scores : ndarray of shape (n_samples, min(k, n_classes))
            Their logits (float32).
        """
        if not isinstance(k, Integral) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        X = self._check_predict_X(X)
        ids, scores = self._topk_ids(X, int(k))
        return self.classes_[ids], scores

    def decision_function(self, X):
        """Logits of every class, shape (n_samples, n_classes).

        This is dense, 4 bytes per row and class (float32), and warns above
        2 GiB: on huge label sets use :meth:`predict_topk`, which ranks the
        labels in row chunks. For two classes, the difference of the two
        logits, shape (n_samples,).
        """
        X = self._check_predict_X(X)
        self._warn_dense_output(X.shape[0], 4, "decision_function")
        scores = self._full_scores(self._hidden(X), X)
        if not self._multilabel and len(self.classes_) == 2:
            return scores[:, 1] - scores[:, 0]
        return scores

    def predict_proba(self, X):
        """Softmax over all classes, shape (n_samples, n_classes).

        This is dense, 8 bytes per row and class (float64), and warns above
        2 GiB: on huge label sets use :meth:`predict_topk`.
        """
        X = self._check_predict_X(X)
        self._warn_dense_output(X.shape[0], 8, "predict_proba")
        hidden = self._hidden(X)
        proba = np.empty((X.shape[0], len(self.classes_)), dtype=np.float64)
        # float32 logits of a chunk of rows at a time: no second dense array
        chunk = max(1, (1 << 24) // max(len(self.classes_), 1))
        for s in range(0, X.shape[0], chunk):
            scores = proba[s : s + chunk]
            scores[...] = self._full_scores(hidden[s : s + chunk], X[s : s + chunk])
            scores -= scores.max(axis=1, keepdims=True)
            np.exp(scores, out=scores)
            scores /= scores.sum(axis=1, keepdims=True)
        return proba

    def predict_log_proba(self, X):
        """Log of :meth:`predict_proba` (dense, like it)."""
        proba = self.predict_proba(X)
        with np.errstate(divide="ignore"):
            return np.log(proba, out=proba)

    def predict(self, X):
        """Class labels, or for multi-label targets an indicator of the top labels.

        Returns
        -------
        y : ndarray of shape (n_samples,), or indicator of shape \
                (n_samples, n_labels)
            For multi-label targets, the ``predict_top_k`` best labels of each
            row are marked; the indicator is sparse (CSR) when the model was
            fit on a sparse indicator, dense otherwise.
        """
        X = self._check_predict_X(X)
        if not self._multilabel:
            ids, _ = self._topk_ids(X, 1)
            return self.classes_[ids[:, 0]]
        ids, _ = self._topk_ids(X, self.predict_top_k)
        n, k = ids.shape
        indicator = sp.csr_matrix(
            (np.ones(n * k, dtype=np.int64), ids.ravel(), np.arange(0, n * k + 1, k)),
            shape=(n, len(self.classes_)),
        )
        indicator.sort_indices()
        return indicator if self._sparse_target else indicator.toarray()

    def _precision_at_1(self, X, Y, sample_weight=None):
        ids, _ = self._topk_ids(X, 1)
        rows = np.arange(X.shape[0])
        hits = np.asarray(Y[rows, ids[:, 0]]).ravel() > 0
        return float(np.average(hits, weights=sample_weight)) if len(hits) else 0.0

    def score(self, X, y, sample_weight=None):
        """Precision@1: the share of rows whose top-ranked label is a true one.

        For class-label targets this is the accuracy.
        """
        check_is_fitted(self)
        X = self._validate_X(X, reset=False)
        Y = self._encode_y(y, None, first_call=False, allow_unknown=True)
        if Y.shape[0] != X.shape[0]:
            raise ValueError(f"X has {X.shape[0]} samples but y has {Y.shape[0]}")
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, X)
        return self._precision_at_1(X, Y, sample_weight)

    # ------------------------------------------------------------ memory

    def memory_usage(self):
        """Bytes the fitted model holds, by part, summed over its arrays.

        Returns
        -------
        usage : dict of str to int
            - ``"weights"``: both layers' weights and biases (float32).
            - ``"optimizer"``: Adam's first and second moments (the output
              layer's in bfloat16 with ``precision="bfloat16"``).
            - ``"bfloat16_weights"``: the output layer's bfloat16 copy
              (``precision="bfloat16"``).
            - ``"hash_tables"``: the training tables and, once
              ``inference="lsh"`` has predicted, its own tables.
            - ``"sparse_head"``: the sparse head's pairs, weights and Adam
              moments (``sparse_head=True``).
            - ``"sampler"``: the batch sampler's state (a loss sketch, row
              hashes; none for the default uniform sampler).
            - ``"other"``: per-label vectors (class labels, label counts, row
              norms) and small state.
            - ``"model"``: the sum of the above, what the fitted model holds.
            - ``"training_buffers"``: scratch the last ``fit`` or
              ``partial_fit`` call held while it ran (gradients, active sets,
              per-thread stamps), released since.
            - ``"total"``: ``model + training_buffers``, what a training call
              holds besides its training data and short-lived temporaries.

        See Also
        --------
        estimate_memory : the same parts, before fitting.

        Examples
        --------
        >>> from sksketch import SLIDEClassifier
        >>> from sksketch.datasets import make_extreme_classification
        >>> X, Y = make_extreme_classification(
        ...     n_samples=500, n_features=1000, n_labels=2000, random_state=0)
        >>> clf = SLIDEClassifier(hidden_layer_size=32, max_iter=1, n_jobs=1,
        ...                       random_state=0).fit(X, Y)
        >>> usage = clf.memory_usage()
        >>> usage["weights"] == 4 * (1000 * 32 + 32 + 2000 * 32 + 2000)
        True
        >>> estimate = clf.estimate_memory(1000, 2000, max_labels_per_sample=Y.sum(1).max())
        >>> abs(estimate["weights"] - usage["weights"]) == 0
        True
        >>> usage["sparse_head"] <= estimate["sparse_head"]  # a bound, see estimate_memory
        True
        """
        check_is_fitted(self)
        usage = dict.fromkeys(
            ("weights", "optimizer", "bfloat16_weights", "hash_tables", "sparse_head", "sampler",
             "other"), 0
        )
        seen = set()
        for name, value in vars(self).items():
            if name not in ("_buffers", "_stamps", "_head_scratch"):
                usage[_MEMORY_PARTS.get(name, "other")] += _nbytes(value, seen)
        usage["model"] = sum(usage.values())
        usage["training_buffers"] = getattr(self, "_training_buffers_nbytes", 0)
        usage["total"] = usage["model"] + usage["training_buffers"]
        return usage

    def estimate_memory(self, n_features, n_labels, *, max_labels_per_sample=1):
        """Bytes a model with these parameters will take, before fitting.

        The parts of :meth:`memory_usage`, from the parameters and the size
        of the problem (see the user guide for the formulas). With
        ``inference="lsh"`` it counts the tables inference builds at its
        first prediction (training's own tables serve instead when training
        ended on a rehash). The sampler's state is not estimated (0, as for
        the default uniform sampler); per-label vectors assume int64 class
        labels. The sparse head (and its training scratch) is counted at its
        bound, ``n_features * min(labels_per_feature, n_labels)`` pairs: the
        pairs a data set's rows actually link are often far fewer.

        Parameters
        ----------
        n_features : int
            Number of input features.
        n_labels : int
            Number of labels (classes).
        max_labels_per_sample : int, default=1
            Most labels of one training row: the active set holds them all.

        Returns
        -------
        usage : dict of str to int
            The keys of :meth:`memory_usage`.

        Examples
        --------
        >>> from sksketch import SLIDEClassifier
        >>> usage = SLIDEClassifier(n_jobs=1).estimate_memory(100_000, 500_000)
        >>> {part: round(n_bytes / 2**20) for part, n_bytes in usage.items()}  # MiB
        {'weights': 588, 'optimizer': 1176, 'bfloat16_weights': 0, 'hash_tables': 145,
         'sparse_head': 391, 'sampler': 0, 'other': 10, 'model': 2310,
         'training_buffers': 437, 'total': 2747}
        """
        self._validate_params()
        F, L, H = int(n_features), int(n_labels), self.hidden_layer_size
        B = self.batch_size
        plan = make_plan(self, L)
        A = plan.active_size(max_labels_per_sample)
        # the sparse head's pairs, at most: every feature linked to its quota
        pairs = F * min(self.labels_per_feature, L)
        bf16 = self.precision == "bfloat16"
        # training's tables (one bucket each while nothing queries them), and
        # those inference builds at its first prediction
        hash_tables = plan.table_nbytes(L if plan.uses_lsh else 0, in_use=plan.tables_in_use)
        if plan.inference_lsh:
            hash_tables += plan.table_nbytes(L)
        other = 16 * L  # class labels and label counts
        if plan.uses_lsh and self.sampling_correction == "logq":
            other += 4 * L + 4 * (N_COSINE_STEPS + 1)  # row norms, collision table
        if plan.uses_unigram:
            other += 8 * L
        usage = {
            "weights": 4 * (F * H + H + L * H + L),
            "optimizer": 4 * (2 * F * H + 2 * H + 2 * L) + (4 if bf16 else 8) * L * H,
            "bfloat16_weights": 2 * L * H if bf16 else 0,
            "hash_tables": hash_tables,
            "sparse_head": 8 * (F + 1) + 16 * pairs if self.sparse_head else 0,
            "sampler": 0,
            "other": other,
        }
        usage["model"] = sum(usage.values())
        usage["training_buffers"] = (
            4 * F * H + F + 4 * H  # dense input-layer gradient, touched rows
            + 8 * B * H  # hidden activations and their gradients
            + 16 * B * A  # active labels and their logit gradients, twice
            + 4 * (3 * L + 1)  # the output update's grouping by label
            + 4 * _openmp.effective_n_threads(self.n_jobs) * max(L, 1)  # stamps
        )
        if self.sparse_head:
            # pair gradients, marks and touched list; per-label scores and marks
            usage["training_buffers"] += 13 * pairs + 9 * L
        usage["total"] = usage["model"] + usage["training_buffers"]
        return usage

