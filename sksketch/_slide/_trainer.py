"""SLIDETrainer: what one ``fit`` or ``partial_fit`` call of a SLIDEClassifier does.

The estimator validates its input and encodes the targets, then hands them to
a trainer that lives for the call: it initialises the model on a first call,
holds rows out when the call needs them, builds and rebuilds the hash tables
on their schedule, owns the kernels' scratch (a
:class:`~sksketch._kernels._network.TrainingWorkspace`) and runs the epochs
through the shared loop :func:`~sksketch.sampling._loop.fit_epochs`. The
model it trains is the estimator's fitted attributes, updated in place.
"""

import copy
import math
import time

import numpy as np
import scipy.sparse as sp
from sklearn.model_selection import train_test_split

from .._kernels import _network
from .._kernels._lsh import LSHTables
from .._kernels._simd import bf16_to_f32, f32_to_bf16
from ..sampling import UniformSampler, check_sampler, run_epoch
from ..sampling._loop import fit_epochs
from ..utils._threads import CoreContention, adaptive_threads_enabled
from ._inference import (
    HEAD_WEIGHTS,
    best_head_weight,
    choose_cluster_weight,
    choose_head_weight,
    example_losses,
    head_hits,
    hidden,
    mixed_hits,
    network_hits,
    precision_at_1,
    ranked_rows,
    validation_rows,
)
from ._label_clusters import LabelClusterHead
from ._negative_sampling import collision_table, unigram_cdf
from ._plan import sized_tables
from ._sparse_head import SparseLabelHead, fills_grid, pairs_per_feature

__all__ = ["SLIDETrainer"]

# The logit an output row initialised at its label's centroid gives a row
# whose hidden activation points the same way and has the mean length (see
# init_output_centroids); measured on Bibtex, Delicious and WordNet nouns.
CENTROID_LOGIT = 20.0

# Standard deviation of the hidden pre-activations at the start (test P@1
# with 0.3 against 1: Bibtex 0.608 / 0.602, Delicious 0.676 / 0.649,
# WordNet nouns without the sparse head 0.351 / 0.313; 0.1 is worse again).
INPUT_INIT_STD = 0.3

# sparse_head_weight="auto" holds rows out to choose the weight when fit has
# at least this many (like HistGradientBoosting's early_stopping="auto",
# small data sets keep every row for training).
AUTO_HOLD_OUT_ROWS = 10_000

# the candidate heads of sparse_head_loss="auto" (losses, damped)
AUTO_HEADS = (("softmax", "softmax", "squared_hinge"), (False, True, False))
# sparse_head_loss="auto" holds rows out to choose the loss when fit has at
# least this many; below, too few rows are held out to tell the two apart,
# and the head is the softmax one.
AUTO_LOSS_ROWS = 1_000

# While fit trains a head per loss, after its first epoch it drops a head
# whose held-out hits trail the leader's by more than this many standard
# errors (a gap noise would not explain; a paired sign test on the rows the
# two rank differently, see _choose_loss), instead of training both until
# the held-out rows join training. After one epoch, mixed with the network,
# of the held-out rows ranked first: on WordNet nouns the squared hinge
# 1,330 of 4,266 against the damped softmax head's 1,591 (z 9.9), on the
# generated 50K shape 1,290 of 1,342 against 1,316 (z 4.8); on Bibtex it
# trails by 5 of 488 (z 1.0) and leads by 7 at the end.
DROP_Z = 3.0
# With sparse_head_loss="auto" the softmax head trains twice, with the
# network's Adam epsilon and damped (SparseLabelHead.damped), and after this
# many epochs the one with the better held-out P@1 alone stays. Test P@1 of
# the softmax head alone (all training rows, undamped / damped) after one
# epoch, two, and at its best: WordNet nouns 0.354 / 0.377, 0.382 / 0.394,
# 0.401 / 0.405; the generated confusable problem 0.866 / 0.895, 0.910 /
# 0.899, 0.929 / 0.903; Bibtex 0.566 / 0.571, 0.586 / 0.594, 0.602 / 0.620;
# Delicious 0.542 / 0.535, 0.545 / 0.569, 0.545 / 0.575. After one epoch the
# damped head leads on all four (its first steps are the steadier); after
# two the leader is the head that ends best.
DAMPING_EPOCHS = 2

# The network trains on after its first epoch only if its best mix with the
# head ranks more held-out rows first than the head alone by more than this
# many standard errors of a paired sign test (see _check_network).
NETWORK_Z = 2.0

# The first epoch checks each sparse head this many times less one within
# it, besides at its end (see HeadWatch.check_within).
WITHIN_CHECKS = 4
# At the first NETWORK_CHECKS of those checks the network alone ranks the
# first held-out rows that cost about NETWORK_CHECK_MACS multiply-adds of its
# output layer (see NetworkWatch; about 40 ms on 2 cores); with fewer than
# NETWORK_CHECK_MIN_ROWS rows (the largest label sets), it is not checked
# within the epoch. (A stop at the last check would save a quarter of an
# epoch of the network for the cost of a check.)
NETWORK_CHECKS = 2
NETWORK_CHECK_MACS = 1 << 31
NETWORK_CHECK_MIN_ROWS = 250


def paired_lead(a, b):
    """How many more rows ranking `a` gets right than `b`, and its standard error.

    `a` and `b` say, row by row on the same rows, whether each ranking got
    the row right; the rows both get right or wrong say nothing of which is
    better (a paired sign test): the lead is ``gained - lost`` over the rows
    where they disagree, its standard error ``sqrt(gained + lost)``.
    """
    gained = int(np.sum(a & ~b))
    lost = int(np.sum(b & ~a))
    return gained - lost, float(np.sqrt(gained + lost))


def _uniform32(rng, bound, shape):
    """``rng.uniform(-bound, bound, shape).astype(float32)``, drawn in chunks.

    The same numbers, without the float64 array of the whole shape (800 MB
    for 400,000 features and 256 hidden units). On a 64-byte boundary (see
    ``_network.aligned_array``: output_scores on Delicious' 983 labels, 29 ->
    19 ms for the test set once its operands were aligned).
    """
    out = _network.aligned_array(shape)
    flat = out.reshape(-1)
    step = 1 << 20
    for start in range(0, flat.shape[0], step):
        stop = min(start + step, flat.shape[0])
        flat[start:stop] = rng.uniform(-bound, bound, stop - start)
    return out


def _row_norms(A, block=4096):
    """``numpy.linalg.norm(A, axis=1)``, the same values, a block of rows at a time.

    Each row's norm is its own reduction, so the blocks change nothing but
    the temporaries: the squares of a block (4 MB at 256 columns) instead of
    those of the whole array (60 MB for WordNet nouns' hidden rows, whose
    fresh pages cost more than the arithmetic).
    """
    out = np.empty(A.shape[0], dtype=A.dtype)
    for start in range(0, A.shape[0], block):
        out[start:start + block] = np.linalg.norm(A[start:start + block], axis=1)
    return out


def initialize(est, X, rng):
    """Fresh weights, Adam moments, tables and counters for a first call."""
    n_features = X.shape[1]
    H = est.hidden_layer_size
    L = len(est.classes_)
    # A hidden unit sums the row's non-zeros, so its variance is Var(w) * |x|^2:
    # scale by the data's mean squared row norm rather than by n_features
    # (Glorot over 10^5 sparse features starts the hidden layer near zero, and
    # each feature row is updated too rarely for Adam to grow it). Hidden
    # pre-activations then start with standard deviation INPUT_INIT_STD: the
    # first layer is an informative random projection from step one, small
    # enough that what Adam learns soon outweighs it.
    mean_sq_norm = float(X.multiply(X).sum()) / max(X.shape[0], 1)
    bound_in = INPUT_INIT_STD * np.sqrt(3.0 / max(mean_sq_norm, 1e-12))
    # Output rows: U(-1/sqrt(H), 1/sqrt(H)), independent of the label count.
    bound_out = 1.0 / np.sqrt(H)
    est.input_weights_ = _uniform32(rng, bound_in, (n_features, H))
    est.input_bias_ = np.zeros(H, dtype=np.float32)
    est.output_weights_ = _uniform32(rng, bound_out, (L, H))
    est.output_bias_ = np.zeros(L, dtype=np.float32)
    # np.zeros, not zeros_like: calloc'd pages are zeroed when first touched
    # rather than written here (a second of a 100,000-feature fit's start)
    est._adam = {
        name: _network.aligned_array(a.shape, a.dtype, zeros=True)
        for name, a in (
            ("m_in", est.input_weights_),
            ("v_in", est.input_weights_),
            ("m_in_bias", est.input_bias_[None, :]),
            ("v_in_bias", est.input_bias_[None, :]),
            ("m_out", est.output_weights_),
            ("v_out", est.output_weights_),
            ("m_out_bias", est.output_bias_[:, None]),
            ("v_out_bias", est.output_bias_[:, None]),
        )
    }
    est._step = 0
    est._batches_since_rehash = 0
    est._batches_since_rebuild = 0
    est._n_rehashes = 0
    est._label_counts = np.zeros(L, dtype=np.int64)
    est.lsh_tables_ = LSHTables(
        est.hash_family,
        H,
        est.n_hashes_per_table,
        est.n_tables,
        bucket_capacity=est.bucket_capacity,
        policy=est.bucket_policy,
        # tables nothing queries yet take one bucket (see sized_tables)
        n_buckets_log2=est.n_buckets_log2 if est._plan().tables_in_use else 1,
        seed=int(rng.randint(0, 2**31 - 1)),
    )
    est._output_bf16 = None
    est._cp_table = est._row_norms = None
    est.loss_curve_ = []
    est.validation_scores_ = [] if est.early_stopping else None
    est.best_validation_score_ = None if not est.early_stopping else -np.inf
    est._best_loss = np.inf
    est._no_improvement_count = 0
    est.n_iter_ = 0
    est.t_ = 0


def hold_out_size(est, n_rows, n_labels):
    """``test_size`` of the rows ``fit`` holds out: ``validation_fraction``, or fewer.

    With ``early_stopping`` every held-out row is scored. Otherwise the rows
    are held out only to choose the sparse head's loss and weight (and the
    label clusters' weight), whose rankings read the first
    :func:`~._inference.ranked_rows` of them; a row beyond those would be
    kept from training until the last epoch for nothing, so at most that
    many are held out. On WordNet nouns (65,691 rows, 15,728 labels) that is
    4,266 rows instead of 6,570: test P@1 0.4004 against 0.3973, P@5 higher
    on every seed (``random_state`` 0-4).
    """
    fraction = est.validation_fraction
    if est.early_stopping:
        return fraction
    cap = ranked_rows(n_labels)
    # (the fraction itself below the cap: train_test_split's own rounding)
    return cap if math.ceil(fraction * n_rows) > cap else fraction


# Seconds between two looks at how many cores other processes hold.
PROBE_SECONDS = 0.5


class SLIDETrainer:
    """Trains a SLIDEClassifier's model for one ``fit`` or ``partial_fit`` call.

    Parameters
    ----------
    estimator : SLIDEClassifier
        Its parameters say how; its fitted attributes are the model trained.
    rng : numpy.random.RandomState
        The estimator's training stream (``_rng``), kept across calls.
    n_threads : int
        The most threads training uses. Each epoch runs on as many of them as
        the cores other processes leave free (:class:`CoreContention`), unless
        ``SKSKETCH_ADAPTIVE_THREADS=0``.
    """

    def __init__(self, estimator, rng, n_threads):
        self.est = estimator
        self.rng = rng
        self.n_threads = self.max_threads = n_threads
        self.contention = (
            CoreContention() if n_threads > 1 and adaptive_threads_enabled() else None
        )
        # the thread counts this call chose, in order, and when it looks next
        self.thread_history = []
        self.next_probe = 0.0
        self.workspace = None
        self.head_scratch = None
        self.scratch_nbytes = 0
        # the sparse heads this call trains (two while fit chooses the loss)
        # and, with held-out rows, each one's early stopping
        self.heads = []
        self.watches = {}
        # the label-cluster head this call trains, if any, and its scratch
        self.clusters = None
        self.cluster_scratch = None
        # set once no mix of the network with a head ranks the held-out rows
        # better than the head alone (see _check_network)
        self.network_stopped = False
        # the last held-out ranking, (heads, hits), until training moves a weight
        self.ranked = None
        # the held-out network logits later rankings read once the network
        # stopped (mixed_hits's net_cache), else None
        self.net_cache = None

    # ------------------------------------------------------------ the call

    def train(self, X, Y, sample_weight, *, incremental, first_call, on_epoch=None):
        """Train on canonical (X, Y): ``max_iter`` epochs, or one for ``partial_fit``.

        ``on_epoch`` is :func:`~sksketch.sampling._loop.fit_epochs`'s callback
        (the command line's progress lines).
        """
        est, rng = self.est, self.rng
        # the cores free now, for the heads' and centroids' set-up too
        self.set_threads()
        est._label_counts += np.bincount(Y.indices, minlength=len(est.classes_))
        X_val = Y_val = None
        X_all, Y_all, weight_all = X, Y, sample_weight
        auto_weight = est.sparse_head and est.sparse_head_weight == "auto"
        auto_loss = est.sparse_head and est.sparse_head_loss == "auto" and first_call
        hold_out = (est.early_stopping or (auto_weight and X.shape[0] >= AUTO_HOLD_OUT_ROWS)
                    or (auto_loss and X.shape[0] >= AUTO_LOSS_ROWS))
        if hold_out and not incremental:
            X, X_val, Y, Y_val, sample_weight, _ = train_test_split(
                X, Y, sample_weight, test_size=hold_out_size(est, X.shape[0], Y.shape[1]),
                random_state=rng,
            )
        if first_call:
            est.sparse_head_ = None
            if est.sparse_head:
                losses, damped = (("softmax",), (False,))
                if auto_loss and X_val is not None:
                    losses, damped = AUTO_HEADS
                elif not auto_loss:
                    losses = (est.sparse_head_loss,)
                self.heads = SparseLabelHead.from_data(
                    X, Y, sample_weight,
                    pairs_per_feature(est.labels_per_feature, X.shape[1]), losses, damped)
                est.sparse_head_ = self.heads[0]
            est.sparse_head_weight_ = 0.0 if not est.sparse_head else (
                1.0 if auto_weight else float(est.sparse_head_weight))
            est.cluster_head_ = None
            if est._builds_clusters(Y.shape[1]):
                est.cluster_head_ = LabelClusterHead.from_data(
                    X, Y, sample_weight, est.label_cluster_size,
                    pairs_per_feature(est.labels_per_feature, X.shape[1]),
                    # (a copy's draw: the training stream is left as it was)
                    np.random.default_rng(copy.deepcopy(rng).randint(0, 2**31 - 1)))
            est.label_cluster_weight_ = 0.0 if est.cluster_head_ is None or (
                est.label_cluster_weight == "auto") else float(est.label_cluster_weight)
        else:
            self.heads = [] if est._training_head() is None else [est._training_head()]
            if incremental and auto_weight:
                # rows the model has not trained on yet
                choose_head_weight(est, X, Y)
            elif incremental:
                choose_cluster_weight(est, X, Y)
        self.clusters = est._training_clusters()

        if first_call and est.output_init == "centroid":
            self.init_output_centroids(X, Y, sample_weight)
        plan = est._plan()
        if plan.uses_unigram:
            est._unigram_cdf = unigram_cdf(est._label_counts)
        if plan.uses_lsh and (
            first_call or est.lsh_tables_.n_items == 0
            or (est.sampling_correction == "logq" and getattr(est, "_cp_table", None) is None)
        ):
            self.rehash(queries=hidden(est, X[:64]))
        if first_call or not hasattr(est, "sampler_"):
            est.sampler_ = check_sampler(
                UniformSampler(shuffle=est.shuffle) if est.sampler is None else est.sampler
            )
        data = {"X": X, "Y": Y, "weight": sample_weight, "epoch": 0, "weight_chosen": False,
                "loss_chosen": False}

        def start_sampler():
            Xs, Ys = data["X"], data["Y"]
            est.sampler_.start(
                Xs, loss_fn=lambda rows: example_losses(est, Xs, Ys, rows), random_state=rng,
                n_jobs=est.n_jobs, y=Ys, classes=est.classes_,
            )

        # Rows held out only to choose the sparse head's loss and weight join
        # the last epoch, once they are chosen: a fit keeps training on all
        # of its rows.
        merge = X_val is not None and not est.early_stopping and est.max_iter > 1

        # Each sparse head stops on its own held-out P@1 (see HeadWatch).
        if X_val is not None:
            self.watches = {id(head): HeadWatch(head) for head in self.heads}
            checked = []
            for watch in self.watches.values():
                # (the softmax candidates start at the same weights: one snapshot)
                watch.check(est, X_val, Y_val, like=checked)
                checked.append(watch)
            del checked  # (a dropped candidate's arrays go with its watch)

        def epoch():
            data["epoch"] += 1
            if merge and data["epoch"] == est.max_iter:
                if auto_weight and not data["loss_chosen"]:
                    choose_head_weight(est, X_val, Y_val, net_cache=self.net_cache)
                data.update(X=X_all, Y=Y_all, weight=weight_all, weight_chosen=True)
                self._extend_heads(X_all, Y_all, weight_all)
                start_sampler()
            within = data["epoch"] == 1 and self.watches
            loss = self.run_epoch(
                data["X"], data["Y"], data["weight"],
                val=(X_val, Y_val) if within else None,
                net_watch=self._network_watch() if within and auto_weight else None)
            if not data["weight_chosen"]:  # the held-out rows are training rows now
                for watch in self.watches.values():
                    watch.check(est, X_val, Y_val)
                if data["epoch"] == DAMPING_EPOCHS:
                    self._choose_damping()
                # after the first epoch, and for the last time before the
                # held-out rows join training
                first = data["epoch"] == 1
                final = merge and data["epoch"] == est.max_iter - 1
                two = len(self.heads) > 1 and (final or first)
                if two or (first and auto_weight and self.watches):
                    check = first and auto_weight
                    # (the logits of a network that stops here are kept for
                    # the rankings after it, if a head trains on)
                    cache = {} if check and est.max_iter > 1 and not all(
                        w.frozen for w in self.watches.values()) else None
                    hits = mixed_hits(est, X_val, Y_val, self.heads, self._weights(),
                                      per_row=check, net_cache=cache)
                    if check:
                        hits, mixed = hits
                        self._check_network(hits[..., 0], mixed)
                        if self.network_stopped and cache and not cache.get("skip"):
                            self.net_cache = cache
                    self.ranked = (list(self.heads), hits)
                    if two:
                        data["loss_chosen"] = self._choose_loss(
                            X_val, Y_val, final=final, all_hits=hits,
                            rows=mixed if check else None)
            return loss

        def done():
            # the network stopped and every head stopped on its own
            return self.network_stopped and all(
                id(h) in self.watches and self.watches[id(h)].frozen for h in self.heads)

        def score_validation():
            # early stopping: the head's weight is chosen on the same rows
            if auto_weight:
                choose_head_weight(est, X_val, Y_val, net_cache=self.net_cache)
            return precision_at_1(est, X_val, Y_val)

        start_sampler()
        self.sync_bf16()
        self.allocate(Y_all)
        try:
            fit_epochs(
                epoch,
                n_epochs=1 if incremental else est.max_iter,
                n_samples=X.shape[0],
                estimator=est,
                sampler=est.sampler_,
                score_validation=(
                    score_validation if est.early_stopping and X_val is not None else None),
                score_name="validation P@1",
                stopping=not incremental,
                on_epoch=on_epoch,
                done=done,
                # train, _fit, fit or partial_fit, scikit-learn's _fit_context, the user
                stacklevel=5,
            )
            # (a fit that ended right after a ranking reuses it)
            if len(self.heads) > 1:  # no epoch merged the held-out rows
                self._choose_loss(X_val, Y_val, all_hits=self._ranked_hits())
            elif auto_weight and X_val is not None and not est.early_stopping and not (
                    data["weight_chosen"]):
                hits = self._ranked_hits()
                if hits is None:
                    choose_head_weight(est, X_val, Y_val, net_cache=self.net_cache)
                else:
                    est.sparse_head_weight_ = best_head_weight(hits[0])
                    choose_cluster_weight(est, X_val, Y_val)
            if X_val is not None and not est.early_stopping and not data["weight_chosen"]:
                # The held-out rows never joined training (a single epoch, or
                # the network and heads stopped early): the heads still get
                # their pairs, at their starting weights, once the weights
                # are chosen. No batch follows: the training buffers go
                # first (on the Amazon-670K shape the new pairs' arrays are
                # the fit's highest point).
                self.workspace = self.net_cache = self.ranked = None
                self.watches = {}
                self._extend_heads(X_all, Y_all, weight_all, train_on=False)
        finally:
            self.release()

    def _extend_heads(self, X, Y, sample_weight, train_on=True):
        """Give the heads the pairs (and the clusters the labels) of every row of the call.

        ``train_on``: an epoch follows (the heads' scratch is made anew).

        Called when held-out rows join training for the last epoch, and at
        the end of a fit whose held-out rows never joined (one epoch, or the
        network and the heads stopped early), once the weights are chosen:
        the heads were built from the other rows, and a label whose rows
        were all held out (a tenth of the labels with one row) would
        otherwise have no pair (see :meth:`SparseLabelHead.extend`).
        """
        est = self.est
        per_feature = pairs_per_feature(est.labels_per_feature, X.shape[1])
        self.head_scratch = None  # the old pairs' (freed before the new pairs are built)
        for head in self.heads:
            head.extend(X, Y, sample_weight, per_feature)
        if self.heads and train_on:
            self.head_scratch = self._head_scratches()
        if self.clusters is not None:
            self.clusters.extend(X, Y, sample_weight, per_feature)
            self.cluster_scratch = None

    def _ranked_hits(self):
        """The last ranking's hits of ``self.heads`` if no weight moved since, else None."""
        if self.ranked is None:
            return None
        ranked, hits = self.ranked
        where = {id(h): i for i, h in enumerate(ranked)}
        if not all(id(h) in where for h in self.heads):
            return None
        return hits[[where[id(h)] for h in self.heads]]

    def _weights(self):
        """The head weights held-out rankings try: the grid, or the weight set."""
        est = self.est
        return HEAD_WEIGHTS if est.sparse_head_weight == "auto" else (est.sparse_head_weight_,)

    def _network_watch(self):
        """A :class:`NetworkWatch` for the first epoch, or None where its checks cost too much.

        Its rows are the first of the held-out ones whose output-layer
        scores cost about ``NETWORK_CHECK_MACS`` multiply-adds.
        """
        est = self.est
        n_rows = NETWORK_CHECK_MACS // max(
            1, len(est.classes_) * est.output_weights_.shape[1])
        return NetworkWatch(n_rows) if n_rows >= NETWORK_CHECK_MIN_ROWS else None

    def _check_network(self, hits, mixed):
        """Stop training the network if no mix with it ranks better than the head alone.

        ``hits`` are :func:`mixed_hits` at 1 (``[..., 0]``) of ``self.heads``
        on the held-out rows it ranks, after the first epoch, at every weight
        of the grid, and ``mixed`` their rows (``per_row``); each head alone
        ranks as its watch last measured it (its best weights). Two
        conditions stop the network. It is a weak expert: alone it trails
        the best head alone by more than ``DROP_Z`` standard errors (not a
        comparable one whose mix could pay once both train on). And the best
        mix does not rank clearly better than that head alone: of the rows
        on which the two disagree, the rows the mix gets right outnumber
        those the head gets right by at most ``NETWORK_Z`` standard errors
        of a paired sign test. Then the network's epochs cost time for
        no ranking the fit can tell apart: the remaining epochs train the
        heads only, and the fit ends once they stop too.

        After the first epoch, on held-out rows: on the generated
        50,000-label shape the softmax head ranks 1,315 of 1,342 first, the
        best mix 1,316 (they disagree on one row), the network alone 746;
        on WordNet nouns 1,494 of 4,266, 1,501 (48 against 41) and 298; on
        Bibtex and Delicious the network alone is within noise of the head
        (56% against 58%, 63% against 63%) and it trains on.
        """
        best = int(np.argmax(hits.max(axis=1)))
        watch = self.watches.get(id(self.heads[best]))
        if watch is None or watch.best_rows is None or watch.best_rows.size == 0:
            return
        alone = watch.best_rows
        n_rows = alone.shape[0]
        p_net, p_head = hits[best, 0] / n_rows, alone.sum() / n_rows  # HEAD_WEIGHTS[0] is 0
        se = np.sqrt((p_net * (1 - p_net) + p_head * (1 - p_head)) / n_rows)
        if p_head - p_net <= DROP_Z * max(se, 1e-12):
            return
        lead, lead_se = paired_lead(mixed[best][:, int(np.argmax(hits[best]))], alone)
        if lead <= NETWORK_Z * lead_se:
            self.network_stopped = True

    def _choose_damping(self):
        """Of the candidate heads of one loss, keep the better held out alone.

        They differ only in :attr:`SparseLabelHead.damped`; each one's
        :class:`HeadWatch` has its best held-out P@1 so far. A tie keeps the
        undamped head.
        """
        by_loss = {}
        for head in self.heads:
            if id(head) in self.watches:
                by_loss.setdefault(head.loss, []).append(head)
        best = {id(max(group, key=lambda h: (self.watches[id(h)].best, not h.damped)))
                for group in by_loss.values()}
        self._keep_heads([id(h) not in self.watches or id(h) in best for h in self.heads])

    def _keep_heads(self, keep):
        """Drop the heads (with their scratch and watches) whose ``keep`` entry is false.

        ``sparse_head_`` moves to the first head kept if it was dropped.
        """
        if all(keep):
            return
        self.heads = [h for h, k in zip(self.heads, keep, strict=True) if k]
        if self.head_scratch:
            self.head_scratch = [sc for sc, k in zip(self.head_scratch, keep, strict=True) if k]
        kept = {id(h) for h in self.heads}
        self.watches = {k: w for k, w in self.watches.items() if k in kept}
        if self.est.sparse_head_ is not None and id(self.est.sparse_head_) not in kept:
            self.est.sparse_head_ = self.heads[0]

    def _choose_loss(self, X_val, Y_val, final=True, all_hits=None, rows=None):
        """Keep the sparse head whose ranking, mixed with the network's, is best held out.

        A fit that trains one head per loss (``sparse_head_loss="auto"``)
        calls this after its first epoch, after the last epoch trained
        without the held-out rows (``final``) and at the end of the call.
        (Each call ranks the held-out rows with every label's network score,
        on 670,000 labels about as long as a tenth of an epoch, hence not
        after every epoch; once the network stopped, from the logits the
        first call kept, ``net_cache``.) Each head is scored at every weight
        ``sparse_head_weight="auto"`` may choose (at the set weight
        otherwise), mixed with the network's logits as the classifier ranks;
        ties go to the softmax head. The other heads are dropped; before the
        final call only those of another loss than the best's, and only if
        they trail it by more than ``DROP_Z`` standard errors (the two
        softmax heads wait for :meth:`_choose_damping`): of a paired sign
        test on the rows where the two disagree (each at its best weight)
        when ``rows``, :func:`mixed_hits`'s per-row hits, are given, else of
        the difference of two proportions. A final call also sets
        ``sparse_head_weight_`` (``"auto"``) to the kept head's best weight.
        Returns whether it did (a final call).

        The paired test tells closer heads apart, for the same rows: on the
        generated 50,000-label shape, the squared hinge mixed with the
        network gets 1,290 of 1,342 held-out rows first after the first
        epoch, the softmax head 1,316: z = 3.0 as two proportions, 4.8
        paired. Kept, the hinge trained two more epochs (11 of the fit's 29
        seconds) and lost the final choice by 3 rows.
        """
        est = self.est
        if all_hits is None:
            all_hits = mixed_hits(est, X_val, Y_val, self.heads, self._weights(),
                                  net_cache=self.net_cache)
        hits = all_hits[..., 0].max(axis=1)  # the heads by P@1
        best = int(np.argmax(hits))
        keep = np.arange(len(hits)) == best
        if not final:
            if rows is not None:
                at = all_hits[..., 0].argmax(axis=1)  # each head's best weight
                lead_se = [paired_lead(rows[best][:, at[best]], rows[h][:, at[h]])
                           for h in range(len(hits))]
                trails = np.array([lead > DROP_Z * max(se, 1e-12) for lead, se in lead_se])
            else:
                n = max(validation_rows(est, X_val, Y_val)[0].shape[0], 1)
                p = hits / n
                se = np.sqrt((p * (1 - p) + p[best] * (1 - p[best])) / n)
                trails = p[best] - p > DROP_Z * np.maximum(se, 1e-12)
            same_loss = np.array([h.loss == self.heads[best].loss for h in self.heads])
            # a head of another loss than the best's goes once it clearly
            # trails; the damped and undamped heads of the best's loss both
            # stay for _choose_damping (the damped one leads early: on the
            # generated confusable problem by 2.9 points of P@1 after one
            # epoch, and trails by 2.8 after four)
            keep = ~trails | same_loss
            if keep.all():
                return False
        est.sparse_head_ = self.heads[best]
        self._keep_heads(list(keep))
        if final and est.sparse_head_weight == "auto":
            est.sparse_head_weight_ = best_head_weight(all_hits[best])
        if final:
            choose_cluster_weight(est, X_val, Y_val)
        return final

    # ------------------------------------------------------------ initialisation

    def init_output_centroids(self, X, Y, sample_weight):
        """Point each label's output row at the mean hidden activation of its rows.

        At initialisation the hidden layer is a random projection of the
        input, so a label's score starts as the cosine, in that projection,
        between the row and the label's training rows (a nearest-centroid
        classifier) instead of noise: the first epoch already ranks well and
        training refines the rows rather than finding them. Row lengths make a
        row pointing at its centroid score ``CENTROID_LOGIT`` on average.
        Labels without a training row keep their random row.
        """
        est = self.est
        # Adam's first moments are zeros of the output layer's shape until
        # training starts: the sums go there, and it is zeroed again.
        sums = est._adam["m_out"]
        chunk = max(1, (1 << 24) // max(est.hidden_layer_size, 1))
        total_norm = total_rows = 0.0
        for start in range(0, X.shape[0], chunk):
            stop = min(start + chunk, X.shape[0])
            h = hidden(est, X[start:stop])
            Yc = Y[start:stop]
            # ones of one dtype: the sums do not depend on how y was given
            Yc = sp.csr_matrix(
                (np.ones(Yc.nnz, dtype=np.float32), Yc.indices, Yc.indptr), shape=Yc.shape)
            labelled = np.diff(Yc.indptr) > 0
            total_norm += float(_row_norms(h)[labelled].sum())
            total_rows += int(labelled.sum())
            h *= sample_weight[start:stop, None]
            cols = np.unique(Yc.indices)
            if cols.size:
                # sums[cols] += Yc[:, cols].T @ h, bit for bit, a label at a time
                Yt = Yc.tocsc()
                _network.add_label_sums(
                    Yt.indptr.astype(np.int32, copy=False),
                    Yt.indices.astype(np.int32, copy=False), h, sums,
                    cols.astype(np.int32, copy=False), self.n_threads)
        norms = _row_norms(sums)
        rows = np.flatnonzero(norms > 0)
        if rows.size and total_norm > 0:
            scale = CENTROID_LOGIT * total_rows / total_norm
            est.output_weights_[rows] = sums[rows] * (scale / norms[rows])[:, None]
        sums.fill(0)

    # ------------------------------------------------------------ hash tables

    def rehash(self, new_functions=False, queries=None):
        """Rebuild the tables from the current output weights.

        With the log-q correction, also keep what the inclusion probabilities
        of retrieved labels need: the norms of the rows as hashed, and the
        family's collision probability as a function of the cosine (measured
        anew with each draw of hash functions, for DWTA).
        """
        est, rng = self.est, self.rng
        est.lsh_tables_ = sized_tables(est.lsh_tables_, est._plan())
        if new_functions:
            est.lsh_tables_.rebuild_functions(int(rng.randint(0, 2**31 - 1)))
        W = est.output_weights_
        est.lsh_tables_.build(W, n_threads=self.n_threads)
        if est.sampling_correction != "logq":
            return
        est._row_norms = np.linalg.norm(W, axis=1).astype(np.float32)
        if new_functions or getattr(est, "_cp_table", None) is None:
            items = W[rng.randint(0, W.shape[0], size=min(W.shape[0], 256))]
            if est.negative_sampling == "lsh-label" or queries is None:
                queries = W[rng.randint(0, W.shape[0], size=min(W.shape[0], 64))]
            est._cp_table = collision_table(est.lsh_tables_, queries, items, self.n_threads)

    def _next_rehash_interval(self):
        est = self.est
        if est.rehash_schedule == "fixed":
            return est.rehash_interval
        return est.rehash_interval * math.exp(est.rehash_growth * est._n_rehashes)

    def _refresh_tables(self, B):
        """Rebuild the tables (new hash functions) or rehash them when their time comes."""
        est = self.est
        if est._batches_since_rebuild >= est.rebuild_interval:
            self.rehash(new_functions=True, queries=self.workspace.hidden[:B])
            est._batches_since_rebuild = 0
        elif est._batches_since_rehash >= self._next_rehash_interval():
            self.rehash()
        else:
            return
        est._batches_since_rehash = 0
        est._n_rehashes += 1
        if est.sampling_correction == "logq":
            self._set_sampling()

    # ------------------------------------------------------------ buffers

    def sync_bf16(self):
        """Match the output layer's copies to ``precision``.

        In bfloat16, the forward and backward passes read a bfloat16 copy of
        the output weights, and Adam keeps the output layer's moments in
        bfloat16 (stochastically rounded, so that slow decays are not lost):
        on huge label sets, Adam's pass over the touched rows is the largest
        cost, and this cuts its memory traffic by a third. The master weights
        stay float32. Switching precision between calls converts the moments.
        """
        est = self.est
        a = est._adam
        bf16 = est.precision == "bfloat16"
        for name in ("m_out", "v_out"):
            M = a[name]
            if bf16 and M.dtype == np.float32:
                a[name] = f32_to_bf16(M.ravel()).reshape(M.shape)
            elif not bf16 and M.dtype == np.uint16:
                a[name] = bf16_to_f32(M.ravel()).reshape(M.shape)
        if bf16:
            W = est.output_weights_
            est._output_bf16 = f32_to_bf16(W.ravel()).reshape(W.shape)
        else:
            est._output_bf16 = None

    def allocate(self, Y):
        """The workspace of the call's batches (and the sparse head's scratch)."""
        est = self.est
        plan = est._plan()
        max_true = int(np.diff(Y.indptr).max()) if Y.shape[0] else 0
        # the active set always holds all of an example's true labels; a
        # budget covering every label is the exact full softmax
        self.workspace = _network.TrainingWorkspace(
            est.input_weights_, est.input_bias_, est.output_weights_, est.output_bias_,
            est._output_bf16, est._adam,
            batch_size=est.batch_size,
            active_size=plan.active_size(max_true),
            budget=plan.n_labels if plan.mode == "full" else plan.active_size(max_true),
            min_active=plan.min_active,
            mode=_network.MODES.index(plan.mode),
            use_bf16=est.precision == "bfloat16",
            correct=est.sampling_correction == "logq",
            input_dropout=est.input_dropout,
            # scratch for every thread the fit may come back to
            n_threads=self.max_threads,
        )
        self.workspace.set_n_threads(self.n_threads)
        self._set_sampling()
        if self.heads:
            self.head_scratch = self._head_scratches()
        est._training_buffers_nbytes = self.workspace.nbytes + self._scratch_nbytes() + sum(
            w.nbytes for w in self.watches.values()) + sum(
            h.weights.nbytes + h.m.nbytes + h.v.nbytes for h in self.heads[1:])
        self.scratch_nbytes = self._scratch_nbytes()

    def _scratch_nbytes(self):
        return sum(getattr(a, "nbytes", 0)
                   for d in {id(d): d for d in self.head_scratch or []}.values()
                   for a in d.values())

    def _count_scratch_growth(self):
        # the heads' gradient scratch widens as batches need it (see
        # SparseLabelHead.scratch): the call's figure counts its widest
        now = self._scratch_nbytes()
        if now > self.scratch_nbytes:
            self.est._training_buffers_nbytes += now - self.scratch_nbytes
            self.scratch_nbytes = now

    def _head_scratches(self):
        """A scratch per head; heads over the same pairs share one.

        The heads train one after the other, and a step leaves the buffers
        it reads as zeros as zeros (see
        :func:`sksketch._kernels._sparse_head.train_batch`), so one buffer
        of pair gradients serves them all. A head that trains from a dense
        copy of its weights (``fills_grid``) has its own, which holds that
        copy.
        """
        out, shared = [], {}
        for h in self.heads:
            if fills_grid(h.n_pairs, h.n_features, h.n_labels):
                out.append(h.scratch())
            else:
                key = (id(h.indptr), id(h.labels))
                if key not in shared:
                    shared[key] = h.scratch()
                out.append(shared[key])
        return out

    def _set_sampling(self):
        est = self.est
        plan = est._plan()
        lsh_correct = plan.uses_lsh and est.sampling_correction == "logq"
        self.workspace.set_sampling(
            label_cdf=est._unigram_cdf if plan.uses_unigram else None,
            cp_table=est._cp_table if lsh_correct else None,
            row_norms=est._row_norms if lsh_correct else None,
        )

    def release(self):
        # Gradients, stamps and the heads' snapshots are scratch: not part of the model.
        self.workspace = self.head_scratch = self.cluster_scratch = None
        self.heads, self.watches, self.clusters = [], {}, None

    # ------------------------------------------------------------ one epoch

    def set_threads(self):
        """The thread count of the next batches: the cores other processes left free.

        Threads that outnumber the free cores wait at every barrier of every
        batch for the one descheduled among them: with one busy process
        beside it on two cores, a WordNet fit took 2.0x its quiet time on two
        threads and 1.55x on one. Looked at when the fit and each epoch
        start and every ``PROBE_SECONDS`` within an epoch (reading ``/proc``
        costs microseconds).
        """
        if self.contention is None:
            return
        self.next_probe = time.monotonic() + PROBE_SECONDS
        n_threads = self.contention.threads(self.max_threads, current=self.n_threads)
        if n_threads != self.n_threads or not self.thread_history:
            self.thread_history.append(n_threads)
        self.n_threads = n_threads
        # the held-out checks and rankings of the fit follow (see
        # _inference.fit_jobs): a team larger than the free cores leaves a
        # thread spinning after each region on the core the others need
        self.est._fit_threads = n_threads
        if self.workspace is not None:
            self.workspace.set_n_threads(n_threads)

    def run_epoch(self, X, Y, sample_weight, val=None, net_watch=None):
        """One pass over (X, Y) in the sampler's batches; returns the mean loss.

        With ``val``, the held-out ``(X_val, Y_val)``, each watched head is
        also checked ``WITHIN_CHECKS - 1`` times within the epoch
        (:meth:`HeadWatch.check_within`), and stops there if it is clearly
        worse than its best; so is the network with ``net_watch`` (a
        :class:`NetworkWatch`): once it stops, the epoch's other batches
        train the heads alone, and its loss is the network's over the
        batches before.
        """
        self.set_threads()
        est, rng, ws = self.est, self.rng, self.workspace
        self.ranked = None
        uses_lsh = est._plan().uses_lsh
        def training(head):
            return id(head) not in self.watches or not self.watches[id(head)].frozen

        heads = [(h, sc) for h, sc in zip(self.heads, self.head_scratch or [], strict=True)
                 if training(h)]
        within = {"every": -(-X.shape[0] // WITHIN_CHECKS), "rows": 0}
        within["next"] = within["every"] if val is not None else X.shape[0]

        def check_within(B):
            within["rows"] += B
            if within["rows"] < within["next"] or within["rows"] >= X.shape[0]:
                return
            within["next"] += within["every"]
            for h, _ in heads:
                if id(h) in self.watches:
                    self.watches[id(h)].check_within(est, *val)
            heads[:] = [(h, sc) for h, sc in heads if training(h)]
            if net_watch is not None and not self.network_stopped and net_watch.check(
                    est, *val, [w.ranked_rows() for w in self.watches.values()]):
                self.network_stopped = True

        def train_head(head, scratch, batch, weights, n_threads):
            return head.train_batch(
                X, Y, batch, weights, scratch, est.beta_1, est.beta_2, est.epsilon, n_threads)
        # (net_rows: those of the rows the network trained on)
        totals = {"loss": 0.0, "weight": 0.0, "active": 0, "skipped": 0, "rows": 0,
                  "net_rows": 0}

        clusters = self.clusters
        if clusters is not None:
            if self.cluster_scratch is None:
                self.cluster_scratch = clusters.scratch()
            Y_clusters = clusters.targets(Y)

        def train_heads(batch, weights):
            # one head after the other, each on the call's threads (as fast
            # as two candidate heads side by side on a thread each, on the
            # generated 50K shape, WordNet nouns and Delicious)
            out = [train_head(h, sc, batch, weights, self.n_threads) for h, sc in heads]
            if clusters is not None:
                clusters.train_batch(X, Y_clusters, batch, weights, self.cluster_scratch,
                                     est.beta_1, est.beta_2, est.epsilon, self.n_threads)
            return out

        if self.network_stopped:
            # the heads alone; the loss is the (first) head's
            def head_batch(batch, weights):
                out = train_heads(batch, weights)
                if out:
                    totals["loss"] += out[0][0]
                    totals["weight"] += out[0][1]
                totals["rows"] += batch.shape[0]
                check_within(batch.shape[0])
            run_epoch(est.sampler_, est.batch_size, head_batch, sample_weight)
            self._count_scratch_growth()
            est.t_ += totals["rows"]
            return totals["loss"] / totals["weight"] if totals["weight"] > 0 else 0.0

        def train_batch(batch, weights):
            B = batch.shape[0]
            if self.network_stopped:
                # stopped within this epoch (see NetworkWatch): the heads alone
                train_heads(batch, weights)
                totals["rows"] += B
                check_within(B)
                return None
            losses, n_active = ws.forward_backward(
                est.lsh_tables_, X, Y, batch, weights,
                int(rng.randint(0, 2**63 - 1, dtype=np.int64)))
            est._step += 1
            if heads or clusters is not None:
                train_heads(batch, weights)
            ws.update(n_active, est.learning_rate, est.beta_1, est.beta_2, est.epsilon,
                      est._step, est.weight_decay)
            has_labels = n_active > 0
            totals["skipped"] += int(B - has_labels.sum())
            totals["loss"] += float(np.dot(losses[has_labels], weights[has_labels]))
            totals["weight"] += float(weights[has_labels].sum())
            totals["active"] += int(n_active.sum())
            totals["rows"] += B
            totals["net_rows"] += B
            est._batches_since_rehash += 1
            est._batches_since_rebuild += 1
            if uses_lsh:
                self._refresh_tables(B)
            if self.contention is not None and time.monotonic() >= self.next_probe:
                self.set_threads()
            check_within(B)
            return losses

        run_epoch(est.sampler_, est.batch_size, train_batch, sample_weight)
        self._count_scratch_growth()
        est.t_ += totals["rows"]
        est.n_samples_skipped_ = totals["skipped"]
        n_used = totals["net_rows"] - totals["skipped"]
        est.mean_active_labels_ = totals["active"] / n_used if n_used else 0.0
        return totals["loss"] / totals["weight"] if totals["weight"] > 0 else 0.0


class NetworkWatch:
    """Stops training the network within the first epoch once its steps make it a weaker expert.

    At each check within the epoch (see :meth:`SLIDETrainer.run_epoch`) the
    network alone ranks the first ``n_rows`` held-out rows. It stops there
    when two things hold. It ranks clearly fewer of them first than at its
    best check so far: of the rows on which the two disagree, its best gets
    right more than ``DROP_Z`` standard errors more (the paired sign test
    of :meth:`HeadWatch.check_within`). And alone it trails the best head
    alone, as each head stands (:meth:`HeadWatch.ranked_rows`), by more
    than ``DROP_Z`` standard errors on those rows: the first condition on
    which the network stops after the first epoch
    (:meth:`SLIDETrainer._check_network`). A network that
    trails a head that far after its first epoch stops there anyway
    unless a mix with it ranks clearly better; while its steps make it
    worse, the rest of the epoch would cost its time for a weaker mix.

    On WordNet nouns the network alone ranks 19% of the held-out rows first
    a quarter into the first epoch, 8% halfway and 4% three quarters in,
    against 35% for the softmax head alone (it stops halfway, on its first
    533 rows); on the generated 10,000-label problem with 10 non-zeros a
    row 41%, then 34%, against 67-80% for the heads. Both stopped the network after
    the epoch before. On Bibtex, Delicious and the generated problem with 40
    non-zeros a row it holds or improves from check to check (and on the
    50,000-label problem, too costly to check, it improved).
    """

    def __init__(self, n_rows):
        self.n_rows = n_rows
        self.best_rows = None
        self.checks = 0

    def check(self, est, X_val, Y_val, head_rows):
        """Whether the network should stop; ``head_rows``: each watched head's ranked rows.

        Only the first ``NETWORK_CHECKS`` calls rank; later ones return False.
        """
        if self.checks >= NETWORK_CHECKS:
            return False
        self.checks += 1
        rows = network_hits(est, X_val, Y_val, self.n_rows)
        if self.best_rows is None or rows.sum() >= self.best_rows.sum():
            self.best_rows = rows
            return False
        lead, lead_se = paired_lead(self.best_rows, rows)
        n = rows.shape[0]
        heads = [h[:n].mean() for h in head_rows if h is not None and h.shape[0] >= n]
        if lead <= DROP_Z * lead_se or not heads or n == 0:
            return False
        p_net, p_head = float(rows.mean()), float(max(heads))
        se = math.sqrt((p_net * (1 - p_net) + p_head * (1 - p_head)) / n)
        return p_head - p_net > DROP_Z * max(se, 1e-12)


class HeadWatch:
    """Early stopping of one sparse head on its own held-out P@1.

    :meth:`check` runs before the first epoch and after each epoch trained
    without the held-out rows: while the head's P@1 improves (or ties), its
    weights are kept as the best; once it falls, the best weights come back
    and the head stops training for the rest of the call (``frozen``). The
    softmax head's starting point (the Rocchio centroids) is a strong
    classifier on some problems and softmax training overfits it on others
    (on the generated 50,000-label shape: 0.980 at the start, 0.934 after an
    epoch), so the number of head epochs is measured, not guessed.
    :meth:`check_within` looks during the first epoch too, and stops the
    head there only when it is clearly worse than its best.
    """

    def __init__(self, head):
        self.head = head
        self.best = None
        self.best_rows = None
        # its rows at the last check within an epoch (see check_within)
        self.last_rows = None
        self.snapshot = None
        # the snapshot is another watch's too (see _first_snapshot)
        self.shared = False
        self.frozen = False

    @property
    def nbytes(self):
        return self.head.weights.nbytes  # the snapshot, once taken

    def check(self, est, X_val, Y_val, like=()):
        """Keep the head's weights if they rank at least as well as its best, else stop it.

        The first snapshot is that of a watch in ``like`` whose snapshot
        holds the same weights, if there is one (see :meth:`_first_snapshot`).
        """
        if self.frozen:
            return
        rows = head_hits(est, X_val, Y_val, self.head)
        self.last_rows = None
        score = float(rows.mean()) if rows.size else 0.0
        if self.best is None or score >= self.best:
            self.best, self.best_rows = score, rows
            if self.snapshot is None:
                self._first_snapshot(like)
            elif self.shared:
                self.snapshot, self.shared = self.head.weights.copy(), False
            else:
                self.snapshot[...] = self.head.weights
            return
        self._freeze()

    def _first_snapshot(self, like):
        """The head's weights as they are, held as little as the values allow.

        Zeros (a squared-hinge head's start) take no memory until written.
        Weights equal to the snapshot of a watch in ``like`` (the softmax
        candidates all start at the Rocchio weights) share it until either
        watch improves on it: at the Amazon-670K shape's 20 million pairs,
        80 MB a copy.
        """
        w = self.head.weights
        if not w.any():
            self.snapshot = np.zeros(w.shape, np.float32)
            return
        for other in like:
            if other.snapshot is not None and np.array_equal(other.snapshot, w):
                self.snapshot = other.snapshot
                self.shared = other.shared = True
                return
        self.snapshot = w.copy()

    def check_within(self, est, X_val, Y_val):
        """Stop the head mid-epoch if it ranks clearly fewer held-out rows first than at its best.

        Clearly: of the rows on which the head and its best weights
        disagree, those the best gets right outnumber those the head gets
        right by more than ``DROP_Z`` standard errors of a paired sign test.
        A dip within noise trains on (to the epoch's :meth:`check`). On the
        generated 50,000-label shape the softmax head falls from 1,315 of
        1,342 held-out rows to 1,296 a quarter into the first epoch (1 row
        gained, 20 lost: z = 4.1) and 1,254 by its end; on the confusable
        problem of the user guide its dip is at most z = 1.6, and it ends
        the epoch level with its start and gains after it.
        """
        if self.frozen or self.best_rows is None:
            return
        self.last_rows = head_hits(est, X_val, Y_val, self.head)
        lead, se = paired_lead(self.best_rows, self.last_rows)
        if lead > DROP_Z * se:
            self._freeze()

    def ranked_rows(self):
        """The held-out rows the head ranks first as it stands: at its last check within
        the epoch (:meth:`check_within`), else at its best (its weights if it is frozen)."""
        if self.frozen or self.last_rows is None:
            return self.best_rows
        return self.last_rows

    def _freeze(self):
        # (best_rows stay: they are the rows of the weights restored). A new
        # array, not the old one rewritten: what keeps a copy of a head's
        # weights (its dense copies) knows them by their array and step. A
        # snapshot still shared becomes the head's weights as it is: a frozen
        # head trains no more in this call, and the other watch, still
        # marked shared, never writes into it (it copies when it improves).
        self.head.weights = self.snapshot
        self.frozen = True
        self.snapshot, self.shared = None, False
