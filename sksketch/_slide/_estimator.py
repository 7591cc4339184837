"""SLIDEClassifier: extreme multi-label classification with LSH-sparse training.

The estimator: its parameters, input validation and the scikit-learn
contract. What a training call does is :class:`~._trainer.SLIDETrainer`'s;
scoring is in :mod:`._inference`; sizes and modes the parameters imply are
the :class:`~._plan.SLIDEPlan`'s.
"""

import copy
import warnings
from numbers import Integral, Real

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, ClassifierMixin, _fit_context
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from .._kernels import _network, _openmp
from .._state import allow_in_model_files
from .._threadpool import blas_thread_limits
from ..base import VersionedStateMixin, _EpochStoppingMixin
from ..sampling import BaseSampler
from ..utils._validation import canonical_rows, check_sparse_indices
from . import _inference, _memory
from ._plan import make_plan
from ._state_checks import align_weights, check_state
from ._targets import encode_targets, is_indicator
from ._trainer import SLIDETrainer, initialize

__all__ = ["SLIDEClassifier"]

# Dense outputs (decision_function, predict_proba) above this size warn.
_DENSE_OUTPUT_WARNING_BYTES = 2**31
_F32_MAX = float(np.finfo(np.float32).max)
# feature_power="auto" takes square roots of rows with at most this share of
# non-zero entries (bag-of-words rows: WordNet nouns 0.02%, the generated
# problems 0.03-0.11%, Bibtex and Delicious 3.7%; images and measurements:
# Fashion-MNIST 50%, digits 51%, UCI Letter Recognition 97%, Satellite 100%)
AUTO_POWER_DENSITY = 0.1


@allow_in_model_files
class SLIDEClassifier(VersionedStateMixin, _EpochStoppingMixin, ClassifierMixin, BaseEstimator):
    """Extreme multi-label (and multiclass) classifier trained with SLIDE.

    A network ``sparse input -> dense hidden layer (ReLU) -> softmax output over
    all labels`` whose output layer is trained sparsely: each example's true
    labels and a few hundred negatives form its *active set*, and only those
    neurons are computed, back-propagated and updated. The negatives are
    random labels by default, or (SLIDE's scheme, ``negative_sampling=
    "lsh-embedding"`` or ``"lsh-label"``) the labels that locality-sensitive
    hash tables over the output neurons' weight vectors find close to the
    example's hidden activation or to its true labels. Training cost grows
    with the active set, not with the number of labels.
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
        LSH family over the output layer (this and the table parameters below
        matter to the LSH modes of ``negative_sampling`` only). ``"dwta"``
        (densified winner-take-all) suits the sparse, non-negative hidden
        activations; ``"simhash"``
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
            "full", "exact"}, default="uniform"
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
        - ``"uniform"``: labels drawn uniformly at random, shared by the rows
          of a batch: the cheapest. The default: on every problem measured it
          ranks as well as the LSH modes in 60-90% of their time (the sparse
          head carries most rankings, and more cheap steps beat fewer
          well-aimed ones even for the network alone; see "Negatives,
          measured" in the user guide).
        - ``"unigram"``: labels drawn in proportion to their training frequency
          (plus one), counted from the targets and updated by ``partial_fit``:
          pushes down the frequent labels a model over-predicts; static.
        - ``"full"``: every label, the exact softmax: the reference the others
          approximate, at a cost that grows with the number of labels.
        - ``"exact"``: the budget's labels of highest score under the current
          weights, found by scoring every label for every example: the hard
          negatives the LSH modes try to retrieve, without their misses. Its
          forward pass costs what ``"full"`` costs; it is the yardstick of
          the LSH modes (how much retrieval could win at the same budget),
          not a fast mode. Not corrected by ``sampling_correction`` (nothing
          is drawn).

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
        ``min_active_labels`` labels.
    min_active_labels : int or "auto", default="auto"
        Examples whose buckets yield fewer labels are padded with random labels
        up to this size (the reference implementation's rule). The random
        negatives matter: they push down labels the tables rarely return, such
        as frequent labels, which the sampled softmax would otherwise inflate.
        With at most this many labels, training is the exact (full) softmax.
        ``"auto"``: every label (the exact softmax) up to 1000 labels, else
        256. Test P@1 and training time on WordNet nouns (15,728 labels):
        0.399 in 22 s with 256, 0.399 in 41 s with 1000; on Delicious (983
        labels) the exact softmax is both better and faster than 256 sampled
        labels (0.675 in 3.3 s against 0.661 in 4.5 s). Random labels
        (uniform or unigram, as padding or as the mode) are drawn once per
        batch: the rows of a batch share them (each skips its own), so a
        step updates a few hundred output rows rather than most rows of a
        large label set.
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
        labels, trained beside the network with its own loss (see
        ``sparse_head_loss``): at most ``labels_per_feature`` labels per
        feature, the pairs seen together in training. It gives rare labels
        a direct path from their distinctive features, which the narrow
        hidden layer lacks. The classifier ranks labels by the network's
        logits plus ``sparse_head_weight_`` times the head's (with
        ``inference="lsh"`` too, over the retrieved labels). It is built
        from the first ``fit`` or ``partial_fit`` call's rows. A ``fit``
        that holds rows out (see ``sparse_head_loss`` and
        ``sparse_head_weight``) scores the head alone on them before each
        epoch and stops training it, keeping its best weights, once its
        precision at 1 falls.
    labels_per_feature : "auto" or int, default="auto"
        Most labels the sparse head links to each feature (those whose
        centroid weighs the feature most). Bounds its size by
        ``n_features * labels_per_feature`` pairs (16 bytes each with the
        optimiser state) and its work per row by the row's non-zeros times
        this. ``"auto"``: 256, or more while the head stays within 2**22
        pairs (``2**22 // n_features``: every label on data with few
        features).
    sparse_head_loss : {"auto", "softmax", "squared_hinge"}, default="auto"
        What the sparse head is trained to minimise. ``"softmax"``: a
        softmax cross-entropy over all labels, started as a nearest-centroid
        (Rocchio) classifier of the L2-normalised rows; it suits labels
        with few training rows each. ``"squared_hinge"``: one-vs-rest
        squared hinges, the loss of the linear classifiers of tree-based
        extreme classifiers, started at 0; it suits labels with many rows
        and rows with many labels. Where a row reaches only a few of the
        labels (the head's pairs fill less than an eighth of the
        feature-label grid), a label it does not reach scores 0, and the
        hinge asks its own labels for 2 and the others for at most 0, not 1
        and -1 (``sparse_head_.sparse``; see ``SPARSE_HINGE_MARGINS`` in
        ``sksketch._slide._sparse_head``). ``"auto"``: ``fit`` on 1,000 rows
        or more holds out ``validation_fraction`` of them, trains both heads
        side by side and keeps the one whose ranking, mixed with the
        network's, is better on the held-out rows: after the first epoch if
        the other trails by more than three standard errors (a paired test
        on the rows they rank differently), else before the held-out rows
        join the last epoch. The softmax head trains twice meanwhile,
        with Adam's ``epsilon`` and with one near a single row's gradient
        (``sparse_head_.damped``: the rare pairs' lone steps damped, which
        overfits rare labels less on WordNet nouns, Bibtex and Delicious and
        learns less on the generated confusable-label problem), and after
        the second epoch the one better alone on the held-out rows stays.
        On fewer rows, and in ``partial_fit``, the undamped softmax head.
        The head kept is ``sparse_head_.loss``.
    sparse_head_weight : "auto" or float, default="auto"
        Weight of the sparse head's logits in the ranking. ``"auto"``: the
        weight in ``{0, 1/8, 1/4, ..., 512, 1024}`` with the best precision at 1
        plus precision at 3 on held-out rows. ``fit`` on 10,000 rows or more holds out
        ``validation_fraction`` of them (or fewer: see there) until the last epoch, chooses the
        weight before it, and trains the last epoch on every row (with
        ``early_stopping``, on its validation rows, which stay out); so does
        ``fit`` on 1,000 rows or more with ``sparse_head_loss="auto"``. On
        fewer rows the weight is 1. After the first epoch, if the network
        alone trails the head alone by more than three standard errors on
        the held-out rows and no mix ranks them clearly better than the head
        alone (by two standard errors of a paired sign test), the network
        stops training: later epochs train the head alone, and ``fit`` ends
        (with ``n_iter_`` below ``max_iter``) once the head stops too. It
        stops within the first epoch already if, at a quarter or halfway,
        it ranks clearly fewer held-out rows first than at its best so far
        while clearly trailing the best head alone (its steps were making a
        weak expert weaker).
        ``partial_fit`` ranks each call's rows before it trains on them (the
        first call, whose rows built the head, keeps 1).
    label_cluster_size : int or None, default=None
        With ``sparse_head=True``, group the labels into clusters of at most
        this many (balanced hierarchical 2-means over the labels' centroids,
        as the label trees of PECOS and Parabel are built) and train a second
        sparse head, a softmax over the clusters, beside the first: each
        label's ranking score adds ``label_cluster_weight_`` times its
        cluster's score. A label with one or two training rows then also
        draws on the rows of the similar labels of its cluster. Built from
        the first ``fit`` or ``partial_fit`` call's rows; ``None`` (the
        default, or no more labels than this) builds none. For long-tailed
        label sets: on WordNet nouns (15,728 labels, median 2 rows each),
        clusters of 16 gave test P@1 0.3979 against 0.3966 (mean of
        ``random_state`` 0-2) for a quarter more training time with the LSH
        negatives of earlier defaults, and the same P@1 (``random_state``
        0 and 1) for more than twice the time with today's uniform ones; on
        Bibtex and Delicious ``"auto"`` kept weight 0 (see the user guide).
    label_cluster_weight : "auto" or float, default="auto"
        Weight of the cluster scores in the ranking. ``"auto"``: chosen
        from the grid of ``sparse_head_weight`` on the held-out rows that
        choose the head's weight, with the head's weight set (0 when no
        rows are held out; ``partial_fit`` ranks each later call's rows
        before it trains on them).
    input_dropout : float, default=0.0
        Share of each training example's non-zero input features left out of
        its forward and backward passes (inverted dropout: the others are
        scaled by ``1 / (1 - input_dropout)``); a fresh draw at every step.
        Regularises the input layer, which overfits on small or long-tailed
        data sets. Prediction uses every feature.
    feature_power : "auto" or float, default="auto"
        Each input value ``v`` enters the model (training and prediction) as
        ``sign(v) * |v| ** feature_power``: 1 reads the values as given. On
        bag-of-words rows (TF-IDF or counts), 0.5, their square root, brings
        a row's largest weights (those of its rarest words) closer to its
        others, so that the network and the sparse head both rank by more
        of the row's features (as the Hellinger mapping does for histograms); on
        dense measurements it only distorts them. ``"auto"``: 0.5 when the
        rows of the first ``fit`` or ``partial_fit`` call have no negative
        value and at most a tenth of their entries non-zero (as a dense
        array or a sparse matrix alike), else 1 (``feature_power_``). Binary
        features are unchanged by any power. Test P@1 with ``random_state=0``, powers
        1 / 0.75 / 0.5: WordNet nouns (TF-IDF rows; mean of seeds 0 and 1)
        0.4039 / 0.4132 / 0.4148 (0.35: 0.4099; 0.25: 0.4050); the
        generated 10,000-label problems of 10 and 40 non-zeros a row
        0.8958 / 0.9005 / 0.9026 and 0.9908 / 0.9915 / 0.9921; the generated
        50,000-label problem 0.9676 at 1, 0.9685 at 0.5. Dense data, test
        accuracy at 1 / 0.5 (mean of seeds 0 and 1): digits 0.953 / 0.932,
        UCI Letter Recognition 0.752 / 0.648, Satellite 0.753 / 0.668.
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
        Share of ``fit``'s rows held out. With ``early_stopping`` they are
        scored after every epoch and never trained on. Without it, rows are
        held out only for the ``"auto"`` choices of the sparse head (its
        loss and weight, and the clusters' weight), whose rankings read at
        most ``max(250, 2**26 / n_labels)`` rows: ``fit`` holds out no more
        than that many (4,266 of WordNet nouns' 65,691 rows, for 15,728
        labels), and they join training for the last epoch.
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
        A sampler with ``keep_fraction`` set thins each epoch to the rows it
        keeps (see :ref:`thinning`).
    precision : {"float32", "bfloat16"}, default="float32"
        Arithmetic of the output layer. ``"bfloat16"`` keeps a bfloat16 copy
        of the output weights for the forward and backward passes (bfloat16
        dot products with AVX512_BF16 where the CPU has it) and the output
        layer's Adam moments in bfloat16 with stochastic rounding; gradients
        and master weights stay float32. It halves the memory the passes read
        and cuts a third of Adam's traffic, at a precision cost that is small
        next to the gradient noise.
    inference : {"full", "lsh"}, default="full"
        How ``predict``/``predict_topk`` rank labels: ``"full"`` by every
        label's exact score (on 4,096 labels or more found by scoring the
        few labels whose upper bound can reach the top, with the same
        result); ``"lsh"`` scores only the labels a retrieval index finds:
        the 1% of labels most often in the row's buckets of SimHash tables
        over ``[w_j, b_j]`` (built over the final weights at the first
        prediction, not stored with the model), the 0.1% the sparse head
        scores highest and the 0.1% of highest bias. Approximate; faster
        than ``"full"`` only where bounds leave many labels to score
        (hundreds of thousands of labels; see the user guide).
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
        The hash tables over the output layer that training samples from.
        Until training first queries them, they hold one bucket per table
        (their hash functions are drawn already).
    sparse_head_ : SparseLabelHead or None
        The sparse feature-to-label head (``sparse_head=True``), else None.
    feature_power_ : float
        The power the input values are taken to (``feature_power``, with
        ``"auto"`` resolved at the first call).
    sparse_head_weight_ : float
        Weight of the head's logits in the ranking (0 without a head).
    cluster_head_ : LabelClusterHead or None
        The label clusters and their sparse head (see
        ``label_cluster_size``), else None.
    label_cluster_weight_ : float
        Weight of the cluster scores in the ranking (0 without clusters).
    loss_curve_ : list of float
        Mean training loss (cross-entropy over the active set) per epoch;
        the sparse head's loss for epochs after the network stopped (see
        ``sparse_head_weight``).
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

    # the name pickles and model files give the class: the package exports it
    __module__ = "sksketch._slide"

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
        "min_active_labels": [Interval(Integral, 0, None, closed="left"), StrOptions({"auto"})],
        "negative_sampling": [StrOptions(set(_network.MODES))],
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
        "feature_power": [StrOptions({"auto"}), Interval(Real, 0, None, closed="neither")],
        "sparse_head": ["boolean"],
        "labels_per_feature": [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left")],
        "sparse_head_loss": [StrOptions({"auto", "softmax", "squared_hinge"})],
        "sparse_head_weight": [StrOptions({"auto"}), Interval(Real, 0, None, closed="left")],
        "label_cluster_size": [None, Interval(Integral, 1, None, closed="left")],
        "label_cluster_weight": [StrOptions({"auto"}), Interval(Real, 0, None, closed="left")],
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
        min_active_labels="auto",
        negative_sampling="uniform",
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
        feature_power="auto",
        sparse_head=True,
        labels_per_feature="auto",
        sparse_head_loss="auto",
        sparse_head_weight="auto",
        label_cluster_size=None,
        label_cluster_weight="auto",
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
        self.feature_power = feature_power
        self.sparse_head = sparse_head
        self.labels_per_feature = labels_per_feature
        self.sparse_head_loss = sparse_head_loss
        self.sparse_head_weight = sparse_head_weight
        self.label_cluster_size = label_cluster_size
        self.label_cluster_weight = label_cluster_weight
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

    def _check_state(self):
        # checks of an unpickled (or sksketch.load-ed) state, in _state_checks.py
        check_state(self)
        align_weights(self)

    # ------------------------------------------------------------ validation

    def _validate_X(self, X, reset, read_only=False):
        """The canonical float32 CSR rows the model reads: X checked, its
        values taken to ``feature_power_``.

        reset: the first call of a fit, which also resolves ``feature_power_``.
        read_only: the caller never writes to the rows returned, which may
        then share X's arrays.
        """
        X = self._canonical_X(X, reset, read_only)
        if reset:
            power = self.feature_power
            if power == "auto":
                # bag-of-words rows: few non-zeros, none negative (whether
                # the rows come dense or sparse)
                nonzero = np.count_nonzero(X.data)
                few = nonzero <= AUTO_POWER_DENSITY * X.shape[0] * X.shape[1]
                power = 0.5 if few and not (X.nnz and X.data.min() < 0) else 1.0
            self.feature_power_ = float(power)
        return self._power_features(X)

    def _power_features(self, X):
        """Canonical rows X with each value v as ``sign(v) * |v| ** feature_power_``.

        X itself at power 1 (and for a model saved before the power
        existed) and where every value is 1 or -1; otherwise new values
        beside X's index arrays (never written to: they may be the caller's).
        """
        power = getattr(self, "feature_power_", 1.0)
        if power == 1 or X.nnz == 0:
            return X
        if power == 0.5 and X.data.min() >= 0:
            # no sign to restore, and square roots: the bits of
            # np.power(x, 0.5) for every float32 x >= 0 (all of them
            # compared), in a quarter of the time
            if (X.data == 1).all():  # binary features: X as it is
                return X
            data = np.sqrt(X.data)
        else:
            data = np.abs(X.data)
            if (data == 1).all():
                return X
            np.power(data, np.float32(power), out=data)
            np.copysign(data, X.data, out=data)
        # a shallow copy (X's index arrays and its canonical flags) with the
        # new values: a tenth of the cost of a new matrix's checks, which
        # took a quarter of a single row's prediction
        out = copy.copy(X)
        out.data = data
        return out

    def _canonical_X(self, X, reset, read_only):
        if not reset and self._passes_validation(X):
            # what validate_data returns for such input, without its fixed
            # cost (about half of a single row's prediction)
            if (read_only and type(X) is sp.csr_matrix and X.dtype == np.float32
                    and X.indices.dtype == np.int32 and X.indptr.dtype == np.int32):
                check_sparse_indices(X)
                if X.has_canonical_format:
                    # already what canonical_rows returns
                    return X
            return canonical_rows(X, dense="csr", n_threads=self._n_threads())
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
        return canonical_rows(X, dense="csr", n_threads=self._n_threads())

    def _passes_validation(self, X):
        """Whether ``validate_data(self, X, reset=False)`` would accept X unchanged but its dtype.

        True only for a CSR matrix (or array) of floats, of at least one row,
        of the fitted width, with finite values within float32's range, and a
        model fitted without feature names: input on which validate_data
        neither raises nor warns. Anything else goes through validate_data,
        with its messages.
        """
        if not (sp.issparse(X) and X.format == "csr" and X.ndim == 2
                and X.dtype in (np.float32, np.float64) and X.shape[0] >= 1
                and X.shape[1] == getattr(self, "n_features_in_", -1)
                and not hasattr(self, "feature_names_in_")):
            return False
        data = X.data
        if data.dtype == np.float64 and data.size:
            return bool(np.isfinite(data).all()) and float(np.abs(data).max()) <= _F32_MAX
        return bool(np.isfinite(data).all())

    def _n_threads(self):
        return _openmp.effective_n_threads(self.n_jobs)

    def _plan(self):
        """The :class:`~sksketch._slide._plan.SLIDEPlan` of the fitted label set."""
        return make_plan(self, len(self.classes_))

    def _training_head(self):
        """The sparse head training updates: built at the first call, and still wanted."""
        return getattr(self, "sparse_head_", None) if self.sparse_head else None

    def _wants_clusters(self):
        """Whether the parameters ask for label clusters (and a head to hold them)."""
        return bool(self.sparse_head and self.label_cluster_size is not None
                    and self.label_cluster_weight != 0)

    def _builds_clusters(self, n_labels):
        """Whether a first call on ``n_labels`` labels builds the label-cluster head."""
        return self._wants_clusters() and n_labels > self.label_cluster_size

    def _training_clusters(self):
        """The label-cluster head training updates: built at the first call, and still wanted."""
        return getattr(self, "cluster_head_", None) if self._wants_clusters() else None

    # ------------------------------------------------------------ fitting

    def _fit(self, X, y, sample_weight, *, incremental, classes=None, on_epoch=None):
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
            if first_call and classes is None and not is_indicator(y):
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
        Y = encode_targets(self, y, classes, first_call=first_call)
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
            initialize(self, X, rng)
        self._rng = getattr(self, "_rng", None) if not first_call else None
        if self._rng is None:
            self._rng = np.random.RandomState(rng.randint(0, 2**31 - 1))
        try:
            # The kernels are OpenMP's; BLAS only sums a few vectors here, and
            # threads it wakes for them spin on the cores the kernels need
            # (Delicious' fit 12% slower, the first predictions after it
            # twice as slow, on 2 cores), and split a sum by the core count.
            with blas_thread_limits(1):
                SLIDETrainer(self, self._rng, self._n_threads()).train(
                    X, Y, sample_weight, incremental=incremental, first_call=first_call,
                    on_epoch=on_epoch)
        finally:
            # the fit's thread count (_inference.fit_jobs) ends with it
            self.__dict__.pop("_fit_threads", None)
        return self

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

    def _check_predict_X(self, X):
        # a fitted model has every weight array: naming one spares the scan
        # of every attribute (a fifth of a single row's prediction)
        check_is_fitted(self, "output_weights_")
        return self._validate_X(X, reset=False, read_only=True)

    def _hidden(self, X):
        return _inference.hidden(self, X)

    def _full_scores(self, hidden, X=None):
        return _inference.full_scores(self, hidden, X)

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
        ids, scores = _inference.topk_ids(self, X, int(k))
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
        return _inference.proba(self, X)

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
            ids, _ = _inference.topk_ids(self, X, 1)
            return self.classes_[ids[:, 0]]
        ids, _ = _inference.topk_ids(self, X, self.predict_top_k)
        n, k = ids.shape
        indicator = sp.csr_matrix(
            (np.ones(n * k, dtype=np.int64), ids.ravel(), np.arange(0, n * k + 1, k)),
            shape=(n, len(self.classes_)),
        )
        indicator.sort_indices()
        return indicator if self._sparse_target else indicator.toarray()

    def score(self, X, y, sample_weight=None):
        """Precision@1: the share of rows whose top-ranked label is a true one.

        For class-label targets this is the accuracy.
        """
        check_is_fitted(self)
        X = self._validate_X(X, reset=False)
        Y = encode_targets(self, y, None, first_call=False, allow_unknown=True)
        if Y.shape[0] != X.shape[0]:
            raise ValueError(f"X has {X.shape[0]} samples but y has {Y.shape[0]}")
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, X)
        return _inference.precision_at_1(self, X, Y, sample_weight)


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
              ``inference="lsh"`` has predicted, its index.
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
        return _memory.memory_usage(self)

    def estimate_memory(self, n_features, n_labels, *, max_labels_per_sample=1):
        """Bytes a model with these parameters will take, before fitting.

        The parts of :meth:`memory_usage`, from the parameters and the size
        of the problem (see the user guide for the formulas). With
        ``inference="lsh"`` it counts the index inference builds at its
        first prediction. The sampler's state is not estimated (0, as for
        the default uniform sampler); per-label vectors assume int64 class
        labels. The sparse head (and its training scratch) is counted at its
        bound, ``n_features * min(labels_per_feature, n_labels)`` pairs
        (``"auto"`` resolved), and with ``sparse_head_loss="auto"`` the
        other two heads ``fit`` trains while it chooses: the pairs a data set's
        rows actually link are often far fewer.

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
         'training_buffers': 535, 'total': 2845}
        """
        self._validate_params()
        return _memory.estimate_memory(self, n_features, n_labels, max_labels_per_sample)
