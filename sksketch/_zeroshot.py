"""ZeroShotSoftLabelClassifier: zero-shot learning with attribute-similarity soft labels."""

import warnings
from contextlib import nullcontext
from numbers import Integral, Real

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, ClassifierMixin, _fit_context, clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import (
    _check_sample_weight,
    check_array,
    check_is_fitted,
    validate_data,
)

from ._kernels import _dense, _openmp
from ._state import allow_in_model_files
from ._threadpool import blas_thread_limits
from ._zeroshot_calibration import choose_calibration_share, margin_rows, penalty_at_share
from ._zeroshot_state import check_state as _check_zeroshot_state
from .base import VersionedStateMixin, _EpochStoppingMixin
from .sampling import BaseSampler, check_sampler, run_epoch
from .sampling._loop import fit_epochs
from .utils._threads import threads_for
from .utils._validation import canonical_rows, check_sparse_indices, ravel_column

# Rows scored per chunk at prediction time.
_PREDICT_CHUNK = 4096
# Elements of work per thread below which an element-wise kernel stays on the
# calling thread: waking a thread team (and its spinning afterwards) costs
# more than a mini-batch's element-wise work.
_MIN_WORK_PER_THREAD = 1 << 20
# Multiply-adds per BLAS thread below which a mini-batch's matrix products run
# on one thread: a BLAS thread team on small products is slower than one
# thread, many times slower when the cores are busy.
_MIN_FLOPS_PER_BLAS_THREAD = 1 << 27


def _normalize_attributes(A, how):
    if how == "l2":
        norms = np.linalg.norm(A, axis=1, keepdims=True)
        return A / np.where(norms > 0, norms, 1.0)
    return A


def _class_similarity(A_from, A_to, how):
    """Similarity of every row of A_from to every row of A_to."""
    if how == "cosine":
        A_from = _normalize_attributes(A_from, "l2")
        A_to = _normalize_attributes(A_to, "l2")
        return A_from @ A_to.T
    if how == "dot":
        return A_from @ A_to.T
    # "euclidean": the negative squared distance
    sq = (A_from**2).sum(1)[:, None] + (A_to**2).sum(1)[None, :] - 2 * A_from @ A_to.T
    return -np.maximum(sq, 0)


def soft_label_targets(attributes, seen, unseen_mass, temperature, similarity,
                       spread="unseen"):
    """The part of each class's soft label that leaves the class.

    Parameters
    ----------
    attributes : ndarray of shape (n_classes, n_attributes)
    seen : ndarray of bool of shape (n_classes,)
    unseen_mass, temperature : float
    similarity : {"cosine", "dot", "euclidean"}
    spread : {"unseen", "all"}, default="unseen"
        The classes that share the mass: the unseen ones, or every class
        other than the example's own.

    Returns
    -------
    targets : ndarray of shape (n_classes, n_targets), float64
        Row ``c`` (a seen class) is ``unseen_mass * softmax(sim(a_c, a_d) /
        temperature)`` over the classes ``d`` that share the mass, in class
        order: the unseen classes (``n_targets = n_unseen``) or all classes
        (``n_targets = n_classes``, 0 on ``c`` itself). Rows of unseen classes
        are 0 (they never are a training target). Without unseen classes
        there is nowhere to move the mass: shape (n_classes, 0).
    """
    unseen = ~seen
    if not unseen.any() or not seen.any():
        return np.zeros((len(seen), 0))
    to = unseen if spread == "unseen" else np.ones_like(seen)
    out = np.zeros((len(seen), int(to.sum())))
    s = _class_similarity(attributes[seen], attributes[to], similarity) / temperature
    if spread != "unseen":
        s[np.arange(s.shape[0]), np.flatnonzero(seen)] = -np.inf
    s -= s.max(axis=1, keepdims=True)
    np.exp(s, out=s)
    s /= s.sum(axis=1, keepdims=True)
    out[seen] = unseen_mass * s
    return out


def _score_spread(scores):
    """The standard deviation of class scores about each row's mean (1 if none)."""
    spread = float(np.std(scores - scores.mean(axis=1, keepdims=True)))
    return spread if np.isfinite(spread) and spread > 0 else 1.0


@allow_in_model_files
class ZeroShotSoftLabelClassifier(
    VersionedStateMixin, _EpochStoppingMixin, ClassifierMixin, BaseEstimator
):
    """Zero-shot classifier trained on soft labels from class attributes.

    Each class ``c`` has an attribute vector ``a_c`` (a row of
    `class_attributes`). A multilayer perceptron ``f`` maps an example into
    attribute space, and the score of class ``c`` is ``f(x) . a_c``: the
    attribute matrix is a fixed output layer, so classes without any training
    example (the *unseen* classes: rows of `class_attributes` whose label never
    occurs in ``y``) still get scores. Training minimises the cross-entropy
    of the softmax over all classes against a *soft label*: an example of
    seen class ``y`` targets ``1 - unseen_mass`` on ``y`` and spreads
    ``unseen_mass`` over the other classes ``d`` in proportion to
    ``exp(sim(a_y, a_d) / temperature)`` (``soft_label_classes="all"``, the
    default: similar seen and unseen classes share it) or over the unseen
    classes only (``"unseen"``, the original SDM-Net). Without unseen classes
    there is nowhere to move the mass and the target stays one-hot. The
    optimiser is Adam with decoupled weight decay.

    Prediction ranks every class (generalised zero-shot learning, GZSL,
    ``prediction_scope="all"``), only the unseen classes (zero-shot learning,
    ZSL, ``"unseen"``) or only the seen ones (``"seen"``). Calibrated
    stacking subtracts a penalty from the seen classes' scores, which
    counters the bias of a network trained on seen classes only; by default
    (``calibration_gamma="auto"``) :meth:`fit` chooses it by holding seen
    classes out to play unseen (see `calibration_gamma`).

    By default (``hard_label_ensemble=True``) soft labels are not trained
    alone: a second network of the same shape learns the hard labels
    (``unseen_mass=0``), its penalty is chosen the same way, and predictions
    rank by the mean of the two networks' calibrated scores, the hard one's
    rescaled to the soft one's spread over the training rows (so the penalty
    of the mean is the mean of the penalties). The two make
    different mistakes: soft labels find unseen classes whose attributes set
    them apart, hard labels keep unseen classes that resemble seen ones from
    taking the seen classes' images. Over the 120 choices of three unseen
    Fashion-MNIST classes, the pair's harmonic mean of seen and unseen
    accuracy averaged 50.9 points, against 48.3 for the hard-label network
    alone and 46.8 for ESZSL, each calibrated the same way (user guide).

    With ``class_attributes=None`` the attributes are one-hot codes of the
    classes in ``y``: a plain softmax multilayer perceptron.

    Dense input goes through BLAS matrix products (float32) and compiled
    element-wise kernels; sparse input is accepted and never densified (its
    first layer uses sparse-dense products).

    Parameters
    ----------
    class_attributes : array-like of shape (n_classes, n_attributes), default=None
        One row per class, seen and unseen. ``None``: one-hot attributes of
        the classes found in ``y`` (no unseen classes).
    classes : array-like of shape (n_classes,), default=None
        The class labels of the rows of `class_attributes`; default
        ``0 .. n_classes - 1``. Requires `class_attributes`.
    hidden_layer_sizes : tuple of int, default=(256,)
        Widths of the hidden ReLU layers (may be empty: a linear map into
        attribute space).
    unseen_mass : float in [0, 1), default=0.5
        Share of each seen example's target moved to other classes (``q``).
        0 trains on hard labels.
    temperature : float, default=0.5
        Temperature (``tau``) of the softmax over attribute similarities that
        splits `unseen_mass` among the classes that share it: smaller values
        give the mass to the most similar ones.
    soft_label_classes : {"all", "unseen"}, default="all"
        The classes that share `unseen_mass`: every class other than the
        example's own (seen classes with similar attributes included), or the
        unseen classes only. With ``"all"``, the targets are an
        (n_classes, n_classes) float32 matrix.
    similarity : {"cosine", "dot", "euclidean"}, default="cosine"
        Class similarity of the soft labels, computed on the normalised
        attributes (``"euclidean"``: negative squared distance).
    attribute_normalization : {"l2", "none"}, default="l2"
        ``"l2"`` scales every class's attribute vector to unit norm before it
        is used as an output weight, so that no class wins by the length of
        its vector.
    calibration_gamma : float or "auto", default="auto"
        Calibrated stacking: subtracted from the seen classes' scores in
        :meth:`decision_function`, :meth:`predict_proba` and :meth:`predict`.
        A number is used as it is (and may be changed after fitting).
        ``"auto"``: :meth:`fit` chooses it. In each of six folds, some seen
        classes (as many, in proportion, as the unseen share of all classes)
        play unseen: a copy of the estimator trains on the other seen
        classes' rows, less a fifth held out, and the harmonic mean of seen
        and pseudo-unseen accuracy on the held-out and pseudo-unseen rows is
        measured for every penalty. The penalty is carried over as the share
        of training rows whose best seen score it brings below their best
        unseen one; the share with the best mean over the folds sets the
        final model's penalty (a quantile of its own training rows' margins).
        This costs about three and a half more trainings on the data (for
        each network of the ensemble). It is 0 without unseen classes or with
        fewer than three seen ones, and :meth:`partial_fit` keeps the last
        value :meth:`fit` chose (0 if none). With the hard-label ensemble,
        each network chooses its own penalty and the ensemble's is their mean
        (`calibration_gamma_`); a number is the ensemble's penalty.
    hard_label_ensemble : bool, default=True
        Also train the network on hard labels and predict with the mean of
        both networks' calibrated scores (see above). It applies when soft
        labels move mass (`class_attributes` given, ``unseen_mass > 0``) and
        some classes are unseen; it doubles the cost of :meth:`fit` and
        :meth:`partial_fit`, and of prediction's matrix products. ``False``:
        the soft-label network alone.
    prediction_scope : {"all", "unseen", "seen"}, default="all"
        Classes :meth:`predict` chooses from; the others get score ``-inf``
        and probability 0.
    learning_rate : float, default=1e-3
        Adam step size.
    weight_decay : float, default=1e-4
        Decoupled weight decay (AdamW) of the weight matrices (not the
        biases): each step shrinks them by ``learning_rate * weight_decay``.
    beta_1, beta_2, epsilon : float, default=0.9, 0.999, 1e-8
        Adam parameters.
    batch_size : int, default=128
        Examples per gradient step.
    max_iter : int, default=10
        Epochs of :meth:`fit`.
    tol : float, default=1e-4
        Training stops when the loss (or, with `early_stopping`, the
        validation score) has not improved by at least `tol` for
        `n_iter_no_change` epochs.
    early_stopping : bool, default=False
        Hold out `validation_fraction` of the training data and stop on its
        accuracy among the seen classes.
    validation_fraction : float, default=0.1
    n_iter_no_change : int, default=5
    sampler : {None, "uniform", "nw-sketch", "exact-loss"} or BaseSampler, \
            default=None
        Which examples each batch draws, and with which importance weights
        (see :mod:`sksketch.sampling`): ``None`` or ``"uniform"`` is a
        shuffled pass over the data; ``"nw-sketch"`` favours the examples a
        sketch of the training losses predicts to be hard; a sampler instance
        is cloned, so ``NWSketchSampler(keep_fraction=...)`` thins each epoch
        (and each :meth:`partial_fit` block) to the rows the sketch rates
        hard. The sampler's state persists across :meth:`partial_fit` calls.
    n_jobs : int, default=None
        Threads of the compiled kernels and of BLAS; ``None``: every thread
        OpenMP allows (BLAS then keeps its own setting at prediction). In
        training, a mini-batch's products use as many BLAS threads as their
        size warrants (one for small networks and batches) and the
        element-wise kernels use threads only for large arrays: a thread
        team costs more than it saves on small mini-batch work.
    random_state : int, RandomState instance or None, default=None
    verbose : int, default=0
        Print one line per epoch when positive.
    warm_start : bool, default=False
        Continue from the previous :meth:`fit` instead of starting afresh.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Every class, seen and unseen, sorted.
    seen_classes_ : ndarray
        Classes with training examples so far.
    unseen_classes_ : ndarray
        Classes of `class_attributes` without training examples.
    class_attributes_ : ndarray of shape (n_classes, n_attributes)
        The (normalised, float32) output layer, rows in ``classes_`` order.
    soft_label_targets_ : ndarray of shape (n_classes, n_targets)
        The part of each seen class's training target that goes to other
        classes (see :func:`soft_label_targets`).
    calibration_gamma_ : float
        The penalty of the seen classes' scores chosen with
        ``calibration_gamma="auto"`` (the number itself otherwise). With the
        hard-label ensemble, the mean of the two networks' chosen penalties
        in the ensemble's units (the hard one's times
        ``score_scales_[0] / score_scales_[1]``).
    calibration_score_ : float or None
        The held-out harmonic mean of seen and pseudo-unseen accuracy at the
        (soft-label network's) chosen penalty, averaged over the folds; None
        when the protocol did not run.
    hard_label_estimator_ : ZeroShotSoftLabelClassifier or None
        The ensemble's hard-label network (its own `calibration_gamma_`
        included); None when `hard_label_ensemble` does not apply.
    score_scales_ : ndarray of shape (2,) or None
        The spread (standard deviation about each row's mean) of the soft and
        of the hard network's scores over the training rows; the hard one's
        scores are multiplied by ``score_scales_[0] / score_scales_[1]``.
    coefs_ : list of ndarray
        Weight matrices, ``coefs_[i]`` of shape (n_in, n_out).
    intercepts_ : list of ndarray
    n_features_in_ : int
    sampler_ : BaseSampler
    loss_curve_ : list of float
        Mean training loss (soft-label cross-entropy) per epoch.
    validation_scores_ : list of float or None
        Validation accuracy per epoch, with `early_stopping`.
    best_validation_score_ : float or None
    n_iter_ : int
        Epochs run.
    t_ : int
        Training rows processed, over all epochs and calls.

    See Also
    --------
    sksketch.metrics.gzsl_scores : seen and unseen accuracy and their
        harmonic mean.

    Examples
    --------
    >>> import numpy as np
    >>> from sksketch import ZeroShotSoftLabelClassifier
    >>> rng = np.random.RandomState(0)
    >>> A = rng.rand(5, 8)                   # 5 classes, 8 attributes
    >>> y = rng.randint(0, 3, 300)           # classes 3 and 4 are unseen
    >>> X = A[y] @ rng.randn(8, 20) + 0.1 * rng.randn(300, 20)
    >>> clf = ZeroShotSoftLabelClassifier(A, hidden_layer_sizes=(32,),
    ...                                   max_iter=20, random_state=0).fit(X, y)
    >>> clf.unseen_classes_
    array([3, 4])
    >>> clf.predict_proba(X[:2]).shape
    (2, 5)
    """

    _parameter_constraints = {
        "class_attributes": ["array-like", None],
        "classes": ["array-like", None],
        "hidden_layer_sizes": [tuple, list, Interval(Integral, 1, None, closed="left")],
        "unseen_mass": [Interval(Real, 0, 1, closed="left")],
        "soft_label_classes": [StrOptions({"all", "unseen"})],
        "temperature": [Interval(Real, 0, None, closed="neither")],
        "similarity": [StrOptions({"cosine", "dot", "euclidean"})],
        "attribute_normalization": [StrOptions({"l2", "none"})],
        "calibration_gamma": [Real, StrOptions({"auto"})],
        "hard_label_ensemble": ["boolean"],
        "prediction_scope": [StrOptions({"all", "unseen", "seen"})],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "beta_1": [Interval(Real, 0, 1, closed="left")],
        "beta_2": [Interval(Real, 0, 1, closed="left")],
        "epsilon": [Interval(Real, 0, None, closed="neither")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "sampler": [None, StrOptions({"uniform", "nw-sketch", "exact-loss"}), BaseSampler],
        "n_jobs": [Integral, None],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
        "warm_start": ["boolean"],
    }

    # Small and quick for the common estimator checks.
    _test_params = {"hidden_layer_sizes": (16,), "max_iter": 20, "batch_size": 32}

    def __init__(
        self,
        class_attributes=None,
        classes=None,
        *,
        hidden_layer_sizes=(256,),
        unseen_mass=0.5,
        temperature=0.5,
        soft_label_classes="all",
        similarity="cosine",
        attribute_normalization="l2",
        calibration_gamma="auto",
        hard_label_ensemble=True,
        prediction_scope="all",
        learning_rate=1e-3,
        weight_decay=1e-4,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        batch_size=128,
        max_iter=10,
        tol=1e-4,
        early_stopping=False,
        validation_fraction=0.1,
        n_iter_no_change=5,
        sampler=None,
        n_jobs=None,
        random_state=None,
        verbose=0,
        warm_start=False,
    ):
        self.class_attributes = class_attributes
        self.classes = classes
        self.hidden_layer_sizes = hidden_layer_sizes
        self.unseen_mass = unseen_mass
        self.temperature = temperature
        self.soft_label_classes = soft_label_classes
        self.similarity = similarity
        self.attribute_normalization = attribute_normalization
        self.calibration_gamma = calibration_gamma
        self.hard_label_ensemble = hard_label_ensemble
        self.prediction_scope = prediction_scope
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.batch_size = batch_size
        self.max_iter = max_iter
        self.tol = tol
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.sampler = sampler
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.verbose = verbose
        self.warm_start = warm_start

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags

    # checks of an unpickled (or sksketch.load-ed) state, in _zeroshot_state.py
    _check_state = _check_zeroshot_state

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
        return canonical_rows(X)

    def _hidden_sizes(self):
        sizes = self.hidden_layer_sizes
        sizes = [sizes] if isinstance(sizes, Integral) else list(sizes)
        for s in sizes:
            if not isinstance(s, Integral) or s < 1:
                raise ValueError(
                    "hidden_layer_sizes must hold positive integers, got "
                    f"{self.hidden_layer_sizes!r}"
                )
        return [int(s) for s in sizes]

    def _resolve_classes(self, y, partial_classes):
        """``classes_`` and the float64 attribute rows in their order."""
        if self.class_attributes is None:
            if self.classes is not None:
                raise ValueError("classes requires class_attributes (the rows it labels)")
            classes = np.unique(y) if partial_classes is None else np.unique(partial_classes)
            return classes, None
        A = check_array(
            self.class_attributes, dtype=np.float64, input_name="class_attributes"
        )
        if self.classes is None:
            classes = np.arange(A.shape[0])
        else:
            classes = np.asarray(self.classes)
            if classes.ndim != 1 or classes.shape[0] != A.shape[0]:
                raise ValueError(
                    f"classes has shape {classes.shape} but class_attributes has "
                    f"{A.shape[0]} rows: one class label per row is needed"
                )
            if np.unique(classes).shape[0] != classes.shape[0]:
                raise ValueError("classes contains duplicate labels")
        if A.shape[0] < 2:
            raise ValueError(
                f"class_attributes must have at least 2 rows (classes), got {A.shape[0]}"
            )
        order = np.argsort(classes, kind="stable")
        classes, A = classes[order], A[order]
        if partial_classes is not None and not np.array_equal(
            np.unique(partial_classes), classes
        ):
            raise ValueError(
                "classes passed to partial_fit must be the labels of class_attributes' rows "
                f"{classes.tolist()}, got {np.unique(partial_classes).tolist()}"
            )
        return classes, A

    def _encode_y(self, y):
        ids = np.searchsorted(self.classes_, y)
        ids = np.clip(ids, 0, len(self.classes_) - 1)
        known = self.classes_[ids] == y
        if not np.all(known):
            missing = np.unique(y[~known])[:10].tolist()
            where = "class_attributes has no row for" if self.class_attributes is not None else (
                "classes of the first call do not include")
            raise ValueError(f"y contains labels that {where}: {missing}")
        return ids.astype(np.int32)

    # ------------------------------------------------------------ model state

    def _n_threads(self):
        return _openmp.effective_n_threads(self.n_jobs)

    def _blas_limits(self):
        if self.n_jobs is None:
            return nullcontext()
        return blas_thread_limits(self._n_threads())

    def _training_blas_limits(self, n_threads):
        multiply_adds = self.batch_size * sum(W.size for W in self.coefs_)
        if not self._one_hot:
            multiply_adds += self.batch_size * self.class_attributes_.size
        return blas_thread_limits(
            threads_for(multiply_adds, n_threads, _MIN_FLOPS_PER_BLAS_THREAD)
        )

    def _initialize(self, n_features, rng):
        sizes = [n_features, *self._hidden_sizes(), self.class_attributes_.shape[1]]
        self.coefs_, self.intercepts_ = [], []
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:], strict=True):
            bound = np.sqrt(6.0 / (fan_in + fan_out))
            self.coefs_.append(rng.uniform(-bound, bound, (fan_in, fan_out)).astype(np.float32))
            self.intercepts_.append(np.zeros(fan_out, dtype=np.float32))
        params = self.coefs_ + self.intercepts_
        self._adam_m = [np.zeros_like(p) for p in params]
        self._adam_v = [np.zeros_like(p) for p in params]
        self._step = 0
        self._seen_counts = np.zeros(len(self.classes_), dtype=np.int64)
        self.loss_curve_ = []
        self.validation_scores_ = [] if self.early_stopping else None
        self.best_validation_score_ = -np.inf if self.early_stopping else None
        self._best_loss = np.inf
        self._no_improvement_count = 0
        self.n_iter_ = 0
        self.t_ = 0

    def _update_seen(self, ids):
        self._seen_counts += np.bincount(ids, minlength=len(self.classes_))
        seen = self._seen_counts > 0
        if seen.sum() < 2:
            raise ValueError(
                "The number of seen classes has to be greater than one; got "
                f"{int(seen.sum())} class ({self.classes_[seen].tolist()}) in y"
            )
        self.seen_classes_ = self.classes_[seen]
        self.unseen_classes_ = self.classes_[~seen]
        targets = soft_label_targets(
            self.class_attributes_.astype(np.float64),
            seen,
            self.unseen_mass,
            self.temperature,
            self.similarity,
            self.soft_label_classes,
        )
        self.soft_label_targets_ = np.ascontiguousarray(targets, dtype=np.float32)
        # the classes the soft labels' columns stand for
        if self.soft_label_classes == "all" and targets.shape[1]:
            self._unseen_ids = np.arange(len(seen), dtype=np.int32)
        else:
            self._unseen_ids = np.flatnonzero(~seen).astype(np.int32)
        self._target_mass = np.float32(1.0 - self.unseen_mass if (~seen).any() else 1.0)

    # ------------------------------------------------------------ forward / backward

    def _forward(self, Xb, n_threads):
        """Activations of every layer (input first) and the class logits."""
        acts = [Xb]
        last = len(self.coefs_) - 1
        for i, (W, b) in enumerate(zip(self.coefs_, self.intercepts_, strict=True)):
            a = acts[-1]
            Z = np.ascontiguousarray(a @ W if sp.issparse(a) else np.matmul(a, W))
            _dense.bias_relu(
                Z, b, i < last, threads_for(Z.size, n_threads, _MIN_WORK_PER_THREAD)
            )
            acts.append(Z)
        logits = acts[-1] if self._one_hot else np.matmul(acts[-1], self.class_attributes_.T)
        return acts, np.ascontiguousarray(logits)

    def _loss_and_grad(self, logits, ids, weights, n_threads):
        grad = np.empty_like(logits)
        losses = np.empty(logits.shape[0], dtype=np.float32)
        _dense.soft_label_cross_entropy(
            logits, ids, self._target_mass, self.soft_label_targets_, self._unseen_ids,
            weights, np.float32(1.0 / max(logits.shape[0], 1)), grad, losses,
            threads_for(logits.size, n_threads, _MIN_WORK_PER_THREAD),
        )
        return losses, grad

    def _gradients(self, Xb, ids_b, weights, n_threads):
        """Per-example losses, and the gradients of the batch's weighted mean loss.

        Returns ``losses`` and the gradients of ``coefs_ + intercepts_``, in
        that order.
        """
        acts, logits = self._forward(Xb, n_threads)
        losses, grad = self._loss_and_grad(logits, ids_b, weights, n_threads)
        delta = grad if self._one_hot else np.matmul(grad, self.class_attributes_)
        n_layers = len(self.coefs_)
        grads = [None] * (2 * n_layers)
        for i in range(n_layers - 1, -1, -1):
            a = acts[i]
            gW = a.T @ delta
            grads[i] = np.ascontiguousarray(gW.toarray() if sp.issparse(gW) else gW,
                                            dtype=np.float32)
            grads[n_layers + i] = delta.sum(axis=0, dtype=np.float32)
            if i > 0:
                delta = np.matmul(delta, self.coefs_[i].T)
                _dense.relu_backward(
                    delta, a, threads_for(delta.size, n_threads, _MIN_WORK_PER_THREAD)
                )
        return losses, grads

    def _train_batch(self, X, ids, idx, weights, n_threads):
        losses, grads = self._gradients(X[idx], ids[idx], weights, n_threads)
        n_layers = len(self.coefs_)
        self._step += 1
        params = self.coefs_ + self.intercepts_
        for j, (p, g) in enumerate(zip(params, grads, strict=True)):
            decay = self.weight_decay if j < n_layers else 0.0
            _dense.adam_step(
                p.reshape(-1), self._adam_m[j].reshape(-1), self._adam_v[j].reshape(-1),
                g.reshape(-1), self._step, self.learning_rate, self.beta_1, self.beta_2,
                self.epsilon, decay, threads_for(p.size, n_threads, _MIN_WORK_PER_THREAD),
            )
        return losses

    def _example_losses(self, X, ids, idx, n_threads):
        _, logits = self._forward(X[idx], n_threads)
        ones = np.ones(len(idx), dtype=np.float32)
        return self._loss_and_grad(logits, ids[idx], ones, n_threads)[0]

    # ------------------------------------------------------------ fitting

    def _fit(self, X, y, sample_weight, *, incremental, classes=None):
        if y is None:
            raise ValueError(
                f"{type(self).__name__} requires y to be passed, but the target y is None"
            )
        fitted = hasattr(self, "coefs_")
        first_call = not fitted if incremental else not (self.warm_start and fitted)
        if incremental and first_call and classes is None and self.class_attributes is None:
            raise ValueError("classes must be passed on the first call to partial_fit.")
        X = self._validate_X(X, reset=first_call)
        y = ravel_column(y, stacklevel=3)
        if y.ndim != 1:
            raise ValueError(f"y must be 1-dimensional (class labels), got shape {y.shape}")
        check_classification_targets(y)
        if y.shape[0] != X.shape[0]:
            raise ValueError(f"X has {X.shape[0]} samples but y has {y.shape[0]}")
        if first_call:
            self.classes_, A = self._resolve_classes(y, classes)
            self._one_hot = A is None
            if A is None:
                A = np.eye(len(self.classes_))
            if A.shape[0] != len(self.classes_):
                raise ValueError("class_attributes and classes disagree")
            self.class_attributes_ = np.ascontiguousarray(
                _normalize_attributes(A, self.attribute_normalization), dtype=np.float32
            )
            if self._one_hot and len(self.classes_) < 2:
                raise ValueError(
                    "The number of classes has to be greater than one; got "
                    f"{len(self.classes_)} class"
                )
        elif classes is not None and not np.array_equal(np.unique(classes), self.classes_):
            raise ValueError(
                f"classes={classes!r} is not the same as on the first call, was "
                f"{self.classes_!r}"
            )
        ids = self._encode_y(y)
        sample_weight = _check_sample_weight(
            sample_weight, X, dtype=np.float32, ensure_non_negative=True
        )

        rng = check_random_state(self.random_state)
        if first_call:
            self._initialize(X.shape[1], rng)
            self._rng = np.random.RandomState(rng.randint(0, 2**31 - 1))
            self.sampler_ = check_sampler(self.sampler)
        rng = self._rng
        self._update_seen(ids)

        X_all, ids_all, weights_all = X, ids, sample_weight
        X_val = ids_val = None
        if self.early_stopping and not incremental:
            X, X_val, ids, ids_val, sample_weight, _ = train_test_split(
                X, ids, sample_weight, test_size=self.validation_fraction, random_state=rng
            )
        n_threads = self._n_threads()

        def train_batch(idx, w):
            return self._train_batch(X, ids, idx, w, n_threads)

        def loss_fn(idx):
            return self._example_losses(X, ids, idx, n_threads)

        def train_epoch():
            stats = run_epoch(self.sampler_, self.batch_size, train_batch, sample_weight)
            self.t_ += stats["n_samples"]
            return float(stats["loss"])

        def score_validation():
            return self._seen_accuracy(X_val, ids_val)

        with self._training_blas_limits(n_threads):
            self.sampler_.start(
                X, loss_fn=loss_fn, random_state=rng, n_jobs=self.n_jobs, y=ids,
                classes=self.classes_,
            )
            fit_epochs(
                train_epoch,
                n_epochs=1 if incremental else self.max_iter,
                n_samples=X.shape[0],
                estimator=self,
                sampler=self.sampler_,
                score_validation=None if X_val is None else score_validation,
                score_name="validation accuracy",
                stopping=not incremental,
                # _fit, fit or partial_fit, scikit-learn's _fit_context, the user
                stacklevel=4,
            )
        if incremental:
            if not hasattr(self, "calibration_gamma_"):
                self.calibration_gamma_, self.calibration_score_ = 0.0, None
        elif isinstance(self.calibration_gamma, str):  # "auto"
            self.calibration_gamma_, self.calibration_score_ = self._choose_calibration(
                X, ids, sample_weight, rng
            )
        else:
            self.calibration_gamma_ = float(self.calibration_gamma)
            self.calibration_score_ = None
        self._fit_hard_label_estimator(
            X_all, ids_all, weights_all, rng, incremental=incremental, first_call=first_call
        )
        if not incremental and isinstance(self.calibration_gamma, str) and (
            self.hard_label_estimator_ is not None
        ):
            # the mean of the two networks' penalties, in the ensemble's units:
            # its scores are the mean of their calibrated scores
            soft_spread, hard_spread = self.score_scales_
            self.calibration_gamma_ = 0.5 * (
                self.calibration_gamma_
                + soft_spread / hard_spread * self.hard_label_estimator_.calibration_gamma_
            )
        return self

    def _wants_hard_label_estimator(self, first_call):
        """Whether this call trains the hard-label network of the ensemble.

        Only soft labels that move mass need a partner: with attributes, a
        positive `unseen_mass` and unseen classes (or, when training goes on,
        a partner from earlier calls).
        """
        if not self.hard_label_ensemble or self._one_hot or self.unseen_mass == 0:
            return False
        continues = not first_call and getattr(self, "hard_label_estimator_", None) is not None
        return len(self.unseen_classes_) > 0 or continues

    def _fit_hard_label_estimator(self, X, ids, sample_weight, rng, *, incremental,
                                  first_call):
        """Train (or go on training) the hard-label network; set the scales of both."""
        if not self._wants_hard_label_estimator(first_call):
            self.hard_label_estimator_, self.score_scales_ = None, None
            return
        params = {**self.get_params(deep=False), "unseen_mass": 0.0,
                  "hard_label_ensemble": False}
        seed = int(rng.randint(0, 2**31 - 1))
        member = getattr(self, "hard_label_estimator_", None)
        if first_call or member is None:
            member = type(self)(**{**params, "random_state": seed})
        else:
            del params["random_state"]
            member.set_params(**params)
        y = self.classes_[ids]
        if self.verbose:
            print("Hard-label network of the ensemble:")
        with warnings.catch_warnings():
            # the soft network has already said whether training converged
            warnings.simplefilter("ignore", ConvergenceWarning)
            if incremental:
                member.partial_fit(X, y, sample_weight=sample_weight)
            else:
                member.fit(X, y, sample_weight=sample_weight)
        self.hard_label_estimator_ = member
        rows = X[margin_rows(X.shape[0], rng)]
        self.score_scales_ = np.array(
            [_score_spread(self._logits(rows)), _score_spread(member._logits(rows))]
        )

    def _choose_calibration(self, X, ids, sample_weight, rng):
        """``calibration_gamma="auto"``: seen classes held out to play unseen."""

        def fit_copy(X_part, ids_part, weights, seed):
            copy = clone(self).set_params(
                calibration_gamma=0.0, hard_label_ensemble=False, warm_start=False, verbose=0,
                random_state=seed,
            )
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                return copy.fit(X_part, self.classes_[ids_part], sample_weight=weights)

        seen = np.isin(self.classes_, self.seen_classes_)
        share, score = choose_calibration_share(
            fit_copy, lambda model, X_part: model._logits(X_part), X, ids, sample_weight,
            seen, rng,
        )
        if share is None:
            return 0.0, None
        rows = margin_rows(X.shape[0], rng)
        return penalty_at_share(self._logits(X[rows]), seen, share), score

    def _seen_accuracy(self, X, ids):
        seen = np.isin(self.classes_, self.seen_classes_)
        logits = self._logits(X)
        logits[:, ~seen] = -np.inf
        return float(np.mean(logits.argmax(axis=1) == ids)) if len(ids) else 0.0

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None):
        """Train on (X, y) for at most ``max_iter`` epochs.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
            Class labels; each must label a row of `class_attributes`. The
            classes that never occur are the unseen classes.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weights of the examples' losses.

        Returns
        -------
        self : ZeroShotSoftLabelClassifier
        """
        return self._fit(X, y, sample_weight, incremental=False)

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y, classes=None, sample_weight=None):
        """One epoch over (X, y), keeping the model's state across calls.

        The seen classes are those of every ``y`` so far: the soft labels are
        recomputed when a call brings a new class.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
        classes : array-like, default=None
            Every class. Required on the first call when
            ``class_attributes=None``; otherwise optional and, when given,
            checked against the labels of `class_attributes`' rows.
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        self : ZeroShotSoftLabelClassifier
        """
        return self._fit(X, y, sample_weight, incremental=True, classes=classes)

    # ------------------------------------------------------------ prediction

    def _logits(self, X):
        """Class logits, computed in float64.

        The last bits of a float32 BLAS product depend on the shape of the
        batch and on the thread count, so a row scored alone could differ
        from the same row scored with others; in float64 such differences
        stay near 1e-16, far below anything a float32 model resolves.
        """
        coefs = [W.astype(np.float64) for W in self.coefs_]
        intercepts = [b.astype(np.float64) for b in self.intercepts_]
        attributes = None if self._one_hot else self.class_attributes_.astype(np.float64)
        last = len(coefs) - 1
        out = np.empty((X.shape[0], len(self.classes_)), dtype=np.float64)
        with self._blas_limits():
            for s in range(0, X.shape[0], _PREDICT_CHUNK):
                a = X[s : s + _PREDICT_CHUNK]
                for i, (W, b) in enumerate(zip(coefs, intercepts, strict=True)):
                    a = np.asarray(a @ W)
                    a += b
                    if i < last:
                        np.maximum(a, 0.0, out=a)
                out[s : s + _PREDICT_CHUNK] = a if attributes is None else a @ attributes.T
        return out

    def _scope_mask(self):
        seen = np.isin(self.classes_, self.seen_classes_)
        if self.prediction_scope == "all":
            return np.ones_like(seen)
        if self.prediction_scope == "unseen":
            if seen.all():
                raise ValueError(
                    'prediction_scope="unseen" but the model has no unseen classes'
                )
            return ~seen
        return seen

    def _ensemble_logits(self, X):
        """The soft network's logits, or the mean of both networks' in its units."""
        scores = self._logits(X)
        member = getattr(self, "hard_label_estimator_", None)
        if member is not None:
            soft_spread, hard_spread = self.score_scales_
            scores += (soft_spread / hard_spread) * member._logits(X)
            scores *= 0.5
        return scores

    def _calibrated_scores(self, X):
        check_is_fitted(self)
        X = self._validate_X(X, reset=False)
        scores = self._ensemble_logits(X)
        gamma = self.calibration_gamma
        if isinstance(gamma, str):  # "auto"
            gamma = getattr(self, "calibration_gamma_", 0.0)
        scores[:, np.isin(self.classes_, self.seen_classes_)] -= gamma
        scores[:, ~self._scope_mask()] = -np.inf
        return scores

    def decision_function(self, X):
        """Class scores ``f(x) . a_c``, calibrated and restricted to the scope.

        Seen classes' scores are lowered by `calibration_gamma`; classes
        outside `prediction_scope` score ``-inf``.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        scores : ndarray of shape (n_samples, n_classes)
            For two classes, shape (n_samples,): the second's score minus the
            first's.
        """
        scores = self._calibrated_scores(X)
        if len(self.classes_) == 2:
            return scores[:, 1] - scores[:, 0]
        return scores

    def predict_proba(self, X):
        """Softmax of :meth:`decision_function`'s scores over the scope's classes.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
            0 for classes outside `prediction_scope`.
        """
        scores = self._calibrated_scores(X)
        scores -= scores.max(axis=1, keepdims=True)
        np.exp(scores, out=scores)
        scores /= scores.sum(axis=1, keepdims=True)
        return scores

    def predict_log_proba(self, X):
        """Log of :meth:`predict_proba`."""
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))

    def predict(self, X):
        """The best-scored class of `prediction_scope` for each row.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        y : ndarray of shape (n_samples,)
        """
        best = self._calibrated_scores(X).argmax(axis=1)
        return self.classes_[best]
