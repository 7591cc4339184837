"""ImportanceSampledClassifier: train any partial_fit classifier on sampler-drawn batches."""

import inspect
import time
import warnings
from numbers import Integral

import numpy as np
import scipy.sparse as sp
from sklearn.base import (
    BaseEstimator,
    ClassifierMixin,
    MetaEstimatorMixin,
    _fit_context,
    clone,
)
from sklearn.linear_model import SGDClassifier
from sklearn.utils import check_random_state, get_tags
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import check_classification_targets, type_of_target
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from . import _sklearn_state  # noqa: F401 (allows the estimators it may wrap in model files)
from ._state import (
    allow_in_model_files,
    attr_array,
    attr_integer,
    check_rng,
    fail,
    is_fitted,
    run_check,
)
from .base import VersionedStateMixin
from .sampling import (
    BaseSampler,
    ExactLossSampler,
    NWSketchSampler,
    UniformSampler,
    check_sampler,
    run_epoch,
)
from .sampling._base import SAMPLER_NAMES, _check_sampler_attribute
from .sampling._loop import fit_epochs
from .sampling._nw import _LOSS_CHUNK, _as_float32_rows, _fingerprint
from .utils._validation import canonical_rows, check_binary_indicator, check_sparse_indices

__all__ = ["ImportanceSampledClassifier"]

# keeps log(p) finite when a model is certain and wrong
_PROBA_FLOOR = 1e-7


def _append_one_column(X, columns, value, n_new, buffers=None):
    """``hstack([X, one-hot(columns)])`` for CSR float32 `X`, one entry per row at
    ``columns[i] >= X.shape[1]`` (so each row's indices stay sorted), without
    scipy's general block machinery. `buffers`, a dict, keeps the arrays for
    the next call to write into (a stream of blocks then faults in no fresh
    pages, which costs more than the join itself); the previous result is
    overwritten."""
    n = X.shape[0]
    total = X.nnz + n
    buffers = {} if buffers is None else buffers
    if buffers.get("indices") is None or buffers["indices"].shape[0] < total:
        buffers["indices"] = np.empty(total, dtype=np.int32)
        buffers["data"] = np.empty(total, dtype=np.float32)
        buffers["keep"] = np.empty(total, dtype=bool)
    if buffers.get("indptr") is None or buffers["indptr"].shape[0] < n + 1:
        buffers["indptr"] = np.empty(n + 1, dtype=np.int32)
    indptr = buffers["indptr"][: n + 1]
    np.add(X.indptr, np.arange(n + 1, dtype=np.int32), out=indptr)
    ends = indptr[1:] - 1
    indices = buffers["indices"][:total]
    data = buffers["data"][:total]
    keep = buffers["keep"][:total]
    keep[:] = True
    keep[ends] = False
    indices[keep] = X.indices
    data[keep] = X.data
    indices[ends] = columns
    data[ends] = value
    return sp.csr_matrix((data, indices, indptr), shape=(n, X.shape[1] + n_new), copy=False)


def _accepts_sample_weight(method):
    return "sample_weight" in inspect.signature(method).parameters


def _estimator_has(attr):
    def check(self):
        if hasattr(self, "estimator_"):
            return hasattr(self.estimator_, attr)
        return hasattr(self._base_estimator(), attr)

    return check


@allow_in_model_files
class ImportanceSampledClassifier(
    VersionedStateMixin, MetaEstimatorMixin, ClassifierMixin, BaseEstimator
):
    """Train a ``partial_fit`` classifier on batches drawn by a sampler.

    Each epoch, the sampler chooses ``ceil(n_samples / batch_size)`` batches
    and the model takes one ``partial_fit`` step on each, with the importance
    weights (times the user's ``sample_weight``) as its ``sample_weight``.
    For a sampler that learns from losses (``"nw-sketch"``), the per-example
    log loss of the trained rows (for multi-label targets: the binary
    cross-entropy summed over the labels) is computed from the model's
    ``predict_proba`` and fed back to it, where it trains the
    Nadaraya-Watson loss sketch that draws the next batches. The trained
    rows are scored in groups of whole batches, 8192 rows or just over (and
    the rest at the end of the epoch), right after the steps that used them:
    one vectorised call instead of one per batch, which with small batches
    costs several times less.

    Parameters
    ----------
    estimator : classifier, default=None
        Any classifier with ``partial_fit`` and ``predict_proba``; None means
        ``SGDClassifier(loss="log_loss")``. When its ``partial_fit`` takes no
        ``sample_weight`` the importance weights cannot be applied and
        non-uniform samplers train on a biased objective (a warning says so).
    sampler : None, {"uniform", "nw-sketch", "exact-loss"} or BaseSampler, \
            default=None
        Which rows each batch holds; see :func:`sksketch.sampling.check_sampler`.
        A sampler with ``keep_fraction`` set thins: each epoch (each
        :meth:`partial_fit` block) trains on the rows it keeps, so it costs
        in proportion to them, and only those rows are scored to feed the
        sketch (for example ``NWSketchSampler(keep_fraction="auto",
        always_keep=[1])`` for clicks: every positive, and the negatives the
        sketch rates hard).
    batch_size : int, default=256
        Rows per ``partial_fit`` step.
    max_iter : int, default=10
        Epochs of :meth:`fit`.
    hash_labels : bool, default=True
        Give the sampler each row's input joined with its label vector
        (one-hot, or multi-hot scaled to unit norm, times the median row norm
        of the first call's input), so that rows with similar inputs but
        different labels, whose losses differ, hash apart. When False the
        sampler sees the input only.
    random_state : int, RandomState instance or None, default=None
        Seeds the sampler and, when its own ``random_state`` is None, the
        wrapped estimator.

    Attributes
    ----------
    estimator_ : classifier
        The trained clone of `estimator`.
    sampler_ : BaseSampler
        The sampler, kept across :meth:`partial_fit` calls.
    classes_ : ndarray of shape (n_classes,)
        Class labels, or ``arange(n_labels)`` for multi-label targets.
    n_features_in_ : int
    n_iter_ : int
        Epochs trained.
    loss_curve_ : list of float
        Weighted mean log loss of the drawn batches per epoch, measured
        after the steps that trained on them (NaN for samplers that read no
        losses).
    effective_sample_size_ : list of float
        Kish's effective sample size of each epoch's importance weights.
    sampler_time_ : list of float
        Seconds per epoch spent by the sampler (sketch updates and queries,
        drawing; exact losses for ``"exact-loss"``; the first epoch of a call
        also counts preparing and hashing the rows).
    loss_time_ : list of float
        Seconds per epoch computing the trained rows' losses for the sampler
        (``predict_proba`` on groups of rows; zero for samplers that read
        none).
    epoch_time_ : list of float
        Wall-clock seconds per epoch.

    Examples
    --------
    >>> from sklearn.datasets import make_classification
    >>> from sksketch import ImportanceSampledClassifier
    >>> X, y = make_classification(500, 10, random_state=0)
    >>> clf = ImportanceSampledClassifier(sampler="nw-sketch", batch_size=50,
    ...                                   max_iter=5, random_state=0).fit(X, y)
    >>> clf.score(X, y) > 0.7
    True
    >>> len(clf.effective_sample_size_)
    5
    """

    _parameter_constraints = {
        "estimator": [HasMethods(["partial_fit", "predict_proba"]), None],
        "sampler": [None, StrOptions(set(SAMPLER_NAMES)), BaseSampler],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "hash_labels": ["boolean"],
        "random_state": ["random_state"],
    }

    _test_params = {"batch_size": 32, "max_iter": 20}

    def __init__(
        self,
        estimator=None,
        sampler=None,
        batch_size=256,
        max_iter=10,
        hash_labels=True,
        random_state=None,
    ):
        self.estimator = estimator
        self.sampler = sampler
        self.batch_size = batch_size
        self.max_iter = max_iter
        self.hash_labels = hash_labels
        self.random_state = random_state

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        inner = get_tags(self._base_estimator())
        tags.classifier_tags.multi_label = inner.classifier_tags.multi_label
        return tags

    def _base_estimator(self):
        if self.estimator is None:
            return SGDClassifier(loss="log_loss")
        return self.estimator

    def _first_call(self, classes):
        rng = check_random_state(self.random_state)
        self._rng = rng
        est = clone(self._base_estimator())
        if "random_state" in est.get_params() and est.get_params()["random_state"] is None:
            est.set_params(random_state=int(rng.randint(np.iinfo(np.int32).max)))
        self.estimator_ = est
        self._weighted = _accepts_sample_weight(est.partial_fit)
        self.sampler_ = check_sampler(self.sampler)
        self.classes_ = classes
        self._started = False
        self.n_iter_ = 0
        self.loss_curve_ = []
        self.effective_sample_size_ = []
        self.sampler_time_ = []
        self.loss_time_ = []
        self.epoch_time_ = []
        if not self._weighted and type(self.sampler_).__name__ != "UniformSampler":
            warnings.warn(
                f"{type(est).__name__}.partial_fit takes no sample_weight: the importance "
                "weights are dropped and training follows the sampling distribution",
                UserWarning,
                stacklevel=3,
            )

    def _validate(self, X, y, reset):
        check_sparse_indices(X)
        check_sparse_indices(y, "y")
        multilabel = y is not None and type_of_target(y).startswith("multilabel")
        if multilabel and not get_tags(self._base_estimator()).classifier_tags.multi_label:
            raise ValueError(
                f"y is a multi-label indicator but {type(self._base_estimator()).__name__} "
                "does not learn multi-label targets; use one that does, such as MLPClassifier"
            )
        X, y = validate_data(
            self,
            X,
            y,
            accept_sparse="csr",
            dtype=[np.float64, np.float32],
            reset=reset,
            multi_output=multilabel,
            y_numeric=multilabel,
        )
        # the wrapped estimator gets the same matrix, to the bit, however the caller
        # stored it (its dtype kept)
        X = canonical_rows(X, dtype=None)
        if multilabel:
            y = check_binary_indicator(y, dtype=np.int32, copy=True)
        else:
            check_classification_targets(y)
        if hasattr(self, "_multilabel") and not reset and multilabel != self._multilabel:
            raise ValueError("y switched between class labels and a multi-label indicator")
        return X, y

    def _classes_of(self, y):
        return np.arange(y.shape[1]) if sp.issparse(y) else np.unique(y)

    # not skipping nested validation: the wrapped estimator checks its own parameters
    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y, sample_weight=None):
        """Train a fresh clone of `estimator` for ``max_iter`` epochs.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        y : {array-like, sparse matrix} of shape (n_samples,) or (n_samples, n_labels)
            Class labels, or a binary indicator of labels for an estimator
            that learns multi-label targets (such as ``MLPClassifier``).
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative; multiplies each row's importance weight.

        Returns
        -------
        self : ImportanceSampledClassifier
        """
        X, y = self._validate(X, y, reset=True)
        classes = self._classes_of(y)
        if len(classes) < 2:
            raise ValueError(
                f"The number of classes has to be greater than one; got {len(classes)} class"
            )
        self._first_call(classes)
        self._multilabel = sp.issparse(y)
        self._train(X, y, sample_weight, self.max_iter)
        return self

    @_fit_context(prefer_skip_nested_validation=False)
    def partial_fit(self, X, y, classes=None, sample_weight=None):
        """One epoch over (X, y), keeping the model and the sampler's sketch.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
        classes : array-like of shape (n_classes,), default=None
            Every class; required on the first call.
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        self : ImportanceSampledClassifier
        """
        first = not hasattr(self, "estimator_")
        X, y = self._validate(X, y, reset=first)
        if first:
            if classes is None and not sp.issparse(y):
                raise ValueError("classes must be passed on the first call to partial_fit")
            self._first_call(
                self._classes_of(y) if classes is None else np.unique(np.asarray(classes))
            )
            self._multilabel = sp.issparse(y)
        elif classes is not None and not np.array_equal(np.unique(classes), self.classes_):
            raise ValueError(
                f"classes={np.unique(classes)!r} differs from the first call's {self.classes_!r}"
            )
        if sp.issparse(y):
            if y.shape[1] != len(self.classes_):
                raise ValueError(f"y has {y.shape[1]} labels, expected {len(self.classes_)}")
        elif (unknown := np.setdiff1d(np.unique(y), self.classes_)).size:
            raise ValueError(f"y holds labels not in classes: {unknown!r}")
        self._train(X, y, sample_weight, 1)
        return self

    def _sampler_rows(self, X32, y_codes):
        """What the sampler hashes: the input, or the input joined with the labels."""
        if not self.hash_labels:
            return X32, None
        key = ("input+labels", _fingerprint(X32), _fingerprint(y_codes))
        cached = getattr(self, "_sampler_rows_cache", None)
        if cached is not None and cached[0] == key:
            return cached[1], key
        # the previous call's rows go first: their memory is reused for these
        # (fresh pages cost more to fault in than the join itself)
        self._sampler_rows_cache = None
        if not hasattr(self, "_label_scale"):
            norms = (
                np.sqrt(np.asarray(X32.multiply(X32).sum(axis=1)).ravel())
                if sp.issparse(X32)
                else np.linalg.norm(X32, axis=1)
            )
            self._label_scale = float(np.median(norms)) or 1.0
        n, n_labels = X32.shape[0], len(self.classes_)
        if self._multilabel:
            Y = sp.csr_matrix(y_codes, dtype=np.float32)
            per_row = np.maximum(np.diff(Y.indptr), 1)
            Y.data = (self._label_scale / np.sqrt(np.repeat(per_row, np.diff(Y.indptr)))).astype(
                np.float32
            )
        else:
            Y = sp.csr_matrix(
                (np.full(n, self._label_scale, np.float32), y_codes, np.arange(n + 1)),
                shape=(n, n_labels),
            )
        if sp.issparse(X32) and not self._multilabel:
            if not hasattr(self, "_join_buffers"):
                self._join_buffers = {}
            rows = _append_one_column(
                X32, X32.shape[1] + y_codes, self._label_scale, n_labels, self._join_buffers
            )
        elif sp.issparse(X32):
            rows = _as_float32_rows(sp.hstack([X32, Y], format="csr"))
        else:
            rows = np.ascontiguousarray(np.hstack([X32, Y.toarray()]), dtype=np.float32)
        self._sampler_rows_cache = (key, rows)
        return rows, key

    def __getstate__(self):
        state = dict(super().__getstate__())
        state.pop("_sampler_rows_cache", None)
        state.pop("_join_buffers", None)
        return state

    def _check_state(self):
        if not is_fitted(self, ("estimator_", "sampler_", "classes_", "n_features_in_", "_rng")):
            return
        inner = self.estimator_
        # a wrapped scikit-learn estimator does not check its own unpickled state
        run_check(inner)
        n_features = attr_integer(self, "n_features_in_", 1)
        classes = attr_array(self, "classes_", None, (None,), contiguous=False)
        if hasattr(inner, "n_features_in_") and inner.n_features_in_ != n_features:
            fail(self, f"estimator_ has {inner.n_features_in_} features, the model {n_features}")
        inner_classes = getattr(inner, "classes_", None)
        if inner_classes is not None and not (
            isinstance(inner_classes, np.ndarray) and np.array_equal(inner_classes, classes)
        ):
            fail(self, "estimator_.classes_ differs from classes_")
        check_rng(self, "_rng")
        _check_sampler_attribute(self)

    def _losses(self, X, y_codes):
        """Per-example log loss of the current model."""
        n = y_codes.shape[0]
        if self._multilabel:
            if not self._started:
                return np.full(n, len(self.classes_) * np.log(2.0), dtype=np.float32)
            proba = np.clip(self.estimator_.predict_proba(X), _PROBA_FLOOR, 1 - _PROBA_FLOOR)
            # sum_j -log(1 - p_j), then the true labels' terms swapped for
            # -log(p_j): two logs per true label instead of one per entry
            loss = -np.log1p(-proba).sum(axis=1, dtype=np.float64)
            Y = sp.csr_matrix(y_codes)
            rows = np.repeat(np.arange(n), np.diff(Y.indptr))
            p = proba[rows, Y.indices].astype(np.float64)
            loss -= np.bincount(rows, weights=np.log(p) - np.log1p(-p), minlength=n)
            return loss.astype(np.float32)
        if not self._started:
            return np.full(n, np.log(len(self.classes_)), dtype=np.float32)
        proba = self.estimator_.predict_proba(X)
        cols = np.searchsorted(self.estimator_.classes_, self.classes_)
        p = proba[np.arange(len(y_codes)), cols[y_codes]]
        return (-np.log(np.maximum(p, _PROBA_FLOOR))).astype(np.float32)

    def _train(self, X, y, sample_weight, n_epochs):
        if sample_weight is not None:
            sample_weight = _check_sample_weight(
                sample_weight, X, dtype=np.float32, ensure_non_negative=True
            )
        y_codes = y if self._multilabel else np.searchsorted(self.classes_, y)
        est = self.estimator_
        observes = getattr(self.sampler_, "_observes_losses", False)

        def loss_fn(indices):
            return self._losses(X[indices], y_codes[indices])

        def score_trained_rows():
            # the losses of the rows trained since the last call, in one
            # predict_proba, fed to the sampler
            if not trained:
                return
            tic = time.perf_counter()
            indices = np.concatenate([i for i, _ in trained])
            weights = np.concatenate([w for _, w in trained]).astype(np.float64)
            trained.clear()
            losses = loss_fn(indices)
            loss_time[0] += time.perf_counter() - tic
            self.sampler_.observe(indices, losses)
            loss_sum[0] += float(weights @ losses)
            loss_sum[1] += float(weights.sum())

        def train_batch(indices, weights):
            Xb, yb = X[indices], y[indices]
            if self._multilabel:
                yb = yb.toarray()
            kwargs = {"classes": self.classes_}
            if self._weighted:
                kwargs["sample_weight"] = weights
            est.partial_fit(Xb, yb, **kwargs)
            self._started = True
            if observes:
                trained.append((indices, weights))
                if len(trained) >= group_batches:
                    score_trained_rows()
            # the losses reach the sampler through score_trained_rows
            return None

        tic = time.perf_counter()
        # only a sampler that learns from losses hashes the rows it is given
        if observes:
            rows, key = self._sampler_rows(_as_float32_rows(X), y_codes)
        elif type(self.sampler_) in (UniformSampler, ExactLossSampler):
            rows, key = X, None  # they read the row count only
        else:
            rows, key = _as_float32_rows(X), None  # the protocol's float32 rows
        if key is not None and isinstance(self.sampler_, NWSketchSampler):
            # the sampler's hash cache can key on the checksum just computed
            self.sampler_._rows_fingerprint = key
        prepare_time = time.perf_counter() - tic
        self.sampler_.start(
            rows, loss_fn=loss_fn, random_state=self._rng, y=y_codes, classes=self.classes_
        )
        loss_time = [0.0]
        loss_sum = [0.0, 0.0]
        trained = []
        # The trained rows are scored in groups of whole batches, up to the
        # rows of one predict_proba call of the exact-loss sampler: a call on a
        # small batch costs mostly the estimator's per-call overhead. A sampler
        # refreshing its probabilities every k batches sees the losses of the
        # rows trained before each refresh.
        group_batches = -(-_LOSS_CHUNK // self.batch_size)
        refresh = getattr(self.sampler_, "refresh_interval", None)
        if refresh is not None:
            group_batches = min(group_batches, refresh)

        def train_epoch():
            nonlocal prepare_time
            loss_time[0] = 0.0
            loss_sum[:] = [0.0, 0.0]
            stats = run_epoch(self.sampler_, self.batch_size, train_batch, sample_weight)
            score_trained_rows()
            self.effective_sample_size_.append(stats["effective_sample_size"])
            self.sampler_time_.append(stats["sampler_time"] + prepare_time)
            prepare_time = 0.0
            self.loss_time_.append(loss_time[0])
            return loss_sum[0] / loss_sum[1] if observes and loss_sum[1] > 0 else float("nan")

        fit_epochs(
            train_epoch,
            n_epochs=n_epochs,
            n_samples=X.shape[0],
            estimator=self,
            sampler=self.sampler_,
            on_epoch=lambda report: self.epoch_time_.append(report.seconds),
        )

    def _validate_predict_X(self, X):
        check_is_fitted(self, "estimator_")
        check_sparse_indices(X)
        X = validate_data(self, X, accept_sparse="csr", dtype=[np.float64, np.float32], reset=False)
        return canonical_rows(X, dtype=None)

    def predict(self, X):
        """Class labels of the wrapped estimator.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        y : ndarray of shape (n_samples,)
        """
        X = self._validate_predict_X(X)
        return self.estimator_.predict(X)

    def predict_proba(self, X):
        """Class probabilities of the wrapped estimator, columns in ``classes_`` order.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
        """
        X = self._validate_predict_X(X)
        return self.estimator_.predict_proba(X)

    @available_if(_estimator_has("decision_function"))
    def decision_function(self, X):
        """Decision function of the wrapped estimator.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        scores : ndarray of shape (n_samples,) or (n_samples, n_classes)
        """
        X = self._validate_predict_X(X)
        return self.estimator_.decision_function(X)
