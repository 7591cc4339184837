"""Loss-proportional samplers and the Nadaraya-Watson loss sketch.

``NWSketchSampler`` learns each example's loss as a function of its input with
a sketch of the Nadaraya-Watson kernel regression
``L(q) = sum_i k(x_i, q) l_i / sum_i k(x_i, q)``, ``k`` the SimHash collision
probability ``(1 - angle / pi) ** n_hash_bits``: ``n_rows`` hash functions
each send an example to one of ``n_buckets`` buckets holding a loss sum and a
count; a query averages the sums and counts of its buckets. The training step's
own losses feed the sketch, so estimating every example's loss costs ``n_rows``
look-ups and no forward pass. ``ExactLossSampler`` is the expensive baseline:
it recomputes the model's true loss on every row at every refresh.

Both draw rows with probability ``p_i = (1 - uniform_mix) * L_i / sum_j L_j +
uniform_mix / N`` (with replacement) and weight them by ``1 / (N p_i)``, which
keeps the weighted gradient an unbiased estimate of the full-data gradient;
``weighting="none"`` leaves the weights at 1, so training leans on the rows
with high loss (a biased, hard-example-mining objective).

With ``keep_fraction`` set they thin instead: an epoch keeps each row once
with probability ``min(1, max(min_keep_probability, c L_i))`` and weights it
by ``1 / p_i``, so it costs in proportion to the rows kept (see
:mod:`sksketch.sampling._thinning`).
"""

from numbers import Integral, Real

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, RegressorMixin, _fit_context
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data

from .._kernels import _rows
from .._state import allow_in_model_files, attr_integer, fail
from ..base import VersionedStateMixin
from ..utils._validation import canonical_rows, check_sparse_indices
from ._base import WEIGHTINGS, BaseSampler, resolved_weighting
from ._sketch import SketchCore, _threads
from ._thinning import thinned_epoch

__all__ = ["ExactLossSampler", "NWSketchSampler", "NadarayaWatsonSketch"]

_LOSS_CHUNK = 8192


# The parameters of a sketch, shared by NWSketchSampler and NadarayaWatsonSketch.
_SKETCH_CONSTRAINTS = {
    "n_rows": [Interval(Integral, 1, 4096, closed="both")],
    "n_hash_bits": [Interval(Integral, 1, 30, closed="both")],
    "n_buckets": [Interval(Integral, 1, None, closed="left"), None],
    "projection_dim": [Interval(Integral, 1, None, closed="left"), None],
    "decay": [Interval(Real, 0, 1, closed="both")],
    "random_state": ["random_state"],
}


def _sketch_shape(est):
    """``n_rows, n_hash_bits, n_buckets`` of validated parameters."""
    n_hash_bits = int(est.n_hash_bits)
    if est.n_buckets is None:
        n_buckets = 1 << n_hash_bits
    elif est.n_buckets > 1 << n_hash_bits:
        raise ValueError(
            f"n_buckets must be at most 2 ** n_hash_bits = {1 << n_hash_bits}, "
            f"got {est.n_buckets}"
        )
    else:
        n_buckets = int(est.n_buckets)
    return int(est.n_rows), n_hash_bits, n_buckets


def _as_float32_rows(X):
    """CSR float32 with int32 indices, or C-contiguous float32; finite values only."""
    return canonical_rows(X, check_finite=True)


def _fingerprint(X, n_jobs=None):
    """Content checksum of a training matrix (or label vector): shape, and the
    sums over rows of every row's sum of values, of squares and (for float32
    matrices) of values times their column number, each also weighted by the
    row's position, so changed values, moved values and reordered rows all
    show. ``n_jobs``: the estimator's, for the checksum kernels' threads."""
    if (
        sp.issparse(X)
        and X.format == "csr"
        and X.dtype == np.float32
        and X.indices.dtype == np.int32
        and X.indptr.dtype == np.int32
    ):
        per_row = np.empty((X.shape[0], 3), dtype=np.float64)
        _rows.csr_row_checksums(X.data, X.indices, X.indptr, per_row, _threads(X.nnz, n_jobs))
    elif isinstance(X, np.ndarray) and X.ndim == 2 and X.dtype == np.float32:
        X = np.ascontiguousarray(X)
        per_row = np.empty((X.shape[0], 3), dtype=np.float64)
        _rows.dense_row_checksums(X, per_row, _threads(X.size, n_jobs))
    elif sp.issparse(X):
        X = X.tocsr()
        per_row = np.column_stack([
            np.asarray(X.sum(axis=1), dtype=np.float64).ravel(),
            np.asarray(X.multiply(X).sum(axis=1), dtype=np.float64).ravel(),
        ])
    else:
        X = np.asarray(X)
        flat = X.reshape(X.shape[0], -1)
        per_row = np.column_stack([
            flat.sum(axis=1, dtype=np.float64),
            np.einsum("ij,ij->i", flat, flat).astype(np.float64),
        ])
    position = np.arange(1, X.shape[0] + 1, dtype=np.float64)
    return (X.shape, *per_row.sum(axis=0).tolist(), *(position @ per_row).tolist())


class _ProbabilitySampler(BaseSampler):
    """Draws rows in proportion to a per-row loss score mixed with uniform."""

    _parameter_constraints = {
        "uniform_mix": [Interval(Real, 0, 1, closed="both")],
        "weighting": [StrOptions(set(WEIGHTINGS))],
        "refresh_interval": [Interval(Integral, 1, None, closed="left"), None],
        "keep_fraction": [Interval(Real, 0, 1, closed="right"), StrOptions({"auto"}), None],
        "min_keep_probability": [Interval(Real, 0, 1, closed="right")],
        "always_keep": ["array-like", None],
        "random_state": ["random_state"],
    }

    def _scores(self):
        raise NotImplementedError

    def _chunk_scores(self, indices):
        """Scores of some rows for thinning; None while there are none."""
        raise NotImplementedError

    def _start(self, X):
        if self.keep_fraction is not None and self.keep_fraction != "auto" and (
            self.keep_fraction < self.min_keep_probability
        ):
            raise ValueError(
                f"keep_fraction={self.keep_fraction} is below "
                f"min_keep_probability={self.min_keep_probability}"
            )

    def _refresh(self):
        n = self.n_samples_
        eps = float(self.uniform_mix)
        scores = np.asarray(self._scores(), dtype=np.float64)
        scores = np.where(np.isfinite(scores), np.maximum(scores, 0.0), 0.0)
        total = scores.sum()
        if total > 0 and eps < 1.0:
            p = (1.0 - eps) * scores / total + eps / n
        else:
            p = np.full(n, 1.0 / n)
        self.probabilities_ = p
        self._cdf = np.cumsum(p)
        if resolved_weighting(self) == "none":
            self._inv_np = np.ones(n, dtype=np.float32)
        else:
            self._inv_np = (1.0 / (n * p)).astype(np.float32)

    def _epoch_indices(self, batch_size):
        n = self.n_samples_
        self._epoch_begin()
        if self.keep_fraction is not None:
            keep = self.keep_fraction if self.keep_fraction == "auto" else float(self.keep_fraction)
            yield from thinned_epoch(
                self, batch_size, self._chunk_scores, keep, float(self.min_keep_probability),
                resolved_weighting(self),
            )
            self._epoch_end()
            return
        interval = self.refresh_interval
        normalise = resolved_weighting(self) == "self-normalised"
        n_batches = -(-n // batch_size)
        per_refresh = n_batches if interval is None else interval
        for first in range(0, n_batches, per_refresh):
            self._refresh()
            # one draw for every batch until the next refresh
            lo = first * batch_size
            hi = min(n, (first + per_refresh) * batch_size)
            u = self._rng.random_sample(hi - lo) * self._cdf[-1]
            drawn = np.minimum(np.searchsorted(self._cdf, u, side="right"), n - 1)
            drawn = drawn.astype(np.int64)
            weights = self._inv_np[drawn]
            for start in range(0, hi - lo, batch_size):
                idx = drawn[start : start + batch_size]
                w = weights[start : start + batch_size]
                if normalise:
                    w = (w / w.mean(dtype=np.float64)).astype(np.float32)
                yield idx, w
        self._epoch_end()

    def _epoch_begin(self):
        """Per-epoch hook (decay of a sketch, for example)."""

    def _epoch_end(self):
        """Per-epoch hook run once the last batch has been observed."""


@allow_in_model_files
class NWSketchSampler(_ProbabilitySampler):
    """Draw rows by a Nadaraya-Watson sketch of their loss.

    Parameters
    ----------
    n_rows : int, default=32
        Hash functions (sketch rows, ``R``); the estimate's error shrinks
        exponentially with them.
    n_hash_bits : int, default=8
        SimHash bits per row (``K``): the kernel is
        ``(1 - angle / pi) ** n_hash_bits``, larger means more local.
    n_buckets : int, default=None
        Buckets per row (``W``); None means ``2 ** n_hash_bits``, smaller
        values fold the codes modulo ``n_buckets``. Memory is
        ``2 * n_rows * n_buckets`` floats whatever the dataset size.
    uniform_mix : float, default=0.1
        Share ``epsilon`` of the uniform distribution in the sampling
        probabilities, so every row keeps ``p_i >= epsilon / N``.
    weighting : {"auto", "importance", "self-normalised", "none"}, default="auto"
        ``"importance"``: weights ``1 / (N p_i)`` (unbiased gradient);
        ``"self-normalised"``: the same divided by their batch mean (biased,
        lower variance); ``"none"``: every weight 1, so the batches follow the
        sampling distribution as drawn and training leans on high-loss rows
        (the gradient of a loss-weighted objective, as in hard-example mining;
        faster early progress where the hard rows are learnable, harmful
        where they are label noise; the effective sample size, computed from
        the weights, is then the number of draws). When thinning (see
        `keep_fraction`), ``"importance"`` is ``1 / p_i``: a thinned epoch's
        weighted gradient sums to a full epoch's in expectation, in fewer,
        larger steps; ``"self-normalised"`` scales each batch to mean weight
        1 (steps of the usual size, fewer of them). ``"auto"`` is
        ``"importance"`` for draws and ``"self-normalised"`` for thinning,
        the better of the two on the click-through benchmark
        (``benchmarks/bench_thinning.py``: 0.006 test AUC after a pass for
        SGD, as good for an MLP).
    projection_dim : int, default=None
        Hash a fixed Gaussian random projection of the input to this many
        dimensions instead of the input itself.
    decay : float, default=0.5
        Factor multiplying the sketch's sums and counts at the start of every
        epoch after the first, so losses of an older model fade; 1 keeps
        everything, 0 forgets the previous epochs.
    refresh_interval : int, default=None
        Batches between recomputing the sampling probabilities from the
        sketch; None recomputes them once per epoch. Not used by thinning,
        which reads the sketch every chunk of rows.
    keep_fraction : float in (0, 1] or "auto", default=None
        Thinning: each epoch (each ``partial_fit`` block) trains on a subset
        of the rows instead of drawing a full epoch. Going through the rows
        in chunks of 8192, it keeps each row once, independently, with
        probability ``p_i = min(1, max(min_keep_probability, c * L_i))``,
        ``L_i`` the row's loss estimated by the sketch (until the sketch has
        seen a loss, chunks are thinned at random, or kept whole by
        ``"auto"``), ``c`` set so that the chunk keeps
        ``keep_fraction`` of its rows on average; kept rows get the weight
        ``1 / p_i`` (see `weighting`). ``"auto"`` keeps, per chunk, Kish's
        effective fraction of the losses, ``(sum L) ** 2 / (n sum L ** 2)``
        (clipped to ``[min_keep_probability, 1]``): everything while losses
        are even, less as they grow skewed. None (the default) draws full
        epochs with replacement as described above.
    min_keep_probability : float in (0, 1], default=0.05
        Thinning's floor: every row is kept with at least this probability,
        so none goes unseen for long, and no weight exceeds its inverse.
    always_keep : array-like, default=None
        Labels whose rows thinning always keeps (for example the rare
        positive class); they count against the keep budget.
    random_state : int, RandomState instance or None, default=None
        Seeds the hash functions and draws when the estimator does not pass
        a generator.

    Attributes
    ----------
    sketch_ : object
        The sketch kernel (sums and counts); kept across ``start`` calls.
    probabilities_ : ndarray of shape (n_samples,)
        The last sampling distribution (not set by thinning).
    epoch_stats_ : dict
    effective_sample_size_ : list of float
        See :class:`BaseSampler`.

    Examples
    --------
    >>> import numpy as np
    >>> from sksketch.sampling import NWSketchSampler, run_epoch
    >>> rng = np.random.RandomState(0)
    >>> X = rng.randn(200, 5).astype(np.float32)
    >>> loss = (X[:, 0] > 1).astype(np.float32) + 0.01
    >>> sampler = NWSketchSampler(random_state=0).start(X)
    >>> for epoch in range(2):
    ...     stats = run_epoch(sampler, 50, lambda idx, w: loss[idx])
    >>> bool(sampler.probabilities_[X[:, 0] > 1].mean()
    ...      > 3 * sampler.probabilities_[X[:, 0] < 0].mean())
    True
    """

    # the training step's losses train the sketch
    _observes_losses = True

    _parameter_constraints = {
        **_ProbabilitySampler._parameter_constraints,
        **_SKETCH_CONSTRAINTS,
    }

    def __init__(
        self,
        n_rows=32,
        n_hash_bits=8,
        n_buckets=None,
        uniform_mix=0.1,
        weighting="auto",
        projection_dim=None,
        decay=0.5,
        refresh_interval=None,
        keep_fraction=None,
        min_keep_probability=0.05,
        always_keep=None,
        random_state=None,
    ):
        self.n_rows = n_rows
        self.n_hash_bits = n_hash_bits
        self.n_buckets = n_buckets
        self.uniform_mix = uniform_mix
        self.weighting = weighting
        self.projection_dim = projection_dim
        self.decay = decay
        self.refresh_interval = refresh_interval
        self.keep_fraction = keep_fraction
        self.min_keep_probability = min_keep_probability
        self.always_keep = always_keep
        self.random_state = random_state

    def _start(self, X):
        super()._start(X)
        n_rows, n_hash_bits, n_buckets = _sketch_shape(self)
        if getattr(self, "sketch_", None) is None:
            seed_rng = (
                self._rng if self.random_state is None else check_random_state(self.random_state)
            )
            # float32 sums and counts: sampling probabilities need no more,
            # and the sketch is read and written every epoch
            self.sketch_ = SketchCore(
                X.shape[1], n_rows, n_hash_bits, n_buckets, self.projection_dim, seed_rng,
                dtype="float32",
            )
        elif self.sketch_.n_features != X.shape[1]:
            raise ValueError(
                f"X has {X.shape[1]} features, but this sampler's sketch was built "
                f"for {self.sketch_.n_features}"
            )
        if getattr(self, "_codes", None) is not None:
            self._flush()
        self._pending = []
        # A partial_fit loop passes the same matrix every call: reuse its hashes.
        # An estimator that has already fingerprinted the rows it built hands
        # the checksum over, so the matrix is not read a second time.
        key = self.__dict__.pop("_rows_fingerprint", None)
        if key is None:
            key = ("rows", _fingerprint(X, self._n_jobs))
        if getattr(self, "_codes_key", None) != key or getattr(self, "_codes", None) is None:
            # the previous call's codes are overwritten when the shapes agree
            # (a partial_fit stream of equal blocks): fresh pages are slow
            self._codes = self.sketch_.hash(
                _as_float32_rows(X), self._n_jobs, out=getattr(self, "_codes", None)
            )
            self._codes_key = key
        self._n_epochs = 0

    def _epoch_begin(self):
        if self._n_epochs > 0 and self.decay < 1.0:
            self.sketch_.scale(float(self.decay))
        self._n_epochs += 1

    def _scores(self):
        self._flush()
        return self.sketch_.query(self._codes, self._n_jobs)

    def _chunk_scores(self, indices):
        self._flush()
        if self.sketch_.kernel.total_count <= 0:
            return None
        return self.sketch_.query(self._codes[indices], self._n_jobs)

    def _epoch_end(self):
        self._flush()

    def _flush(self):
        # Losses observed since the last query enter the sketch in one call:
        # the same sums and counts as batch by batch, without a kernel call
        # per training step.
        pending = getattr(self, "_pending", None)
        if not pending:
            return
        indices = np.concatenate([i for i, _ in pending])
        losses = np.concatenate([loss for _, loss in pending])
        self._pending = []
        if not np.isfinite(losses.sum(dtype=np.float64)):
            # only losses that came through _observe_trusted can get here
            raise ValueError("the training step returned NaN or infinite losses")
        # codes come from the sketch's own hashing: in range by construction
        self.sketch_.insert(
            self._codes[indices], losses, trusted_codes=True,
            n_jobs=getattr(self, "_n_jobs", None),
        )

    def observe(self, indices, losses):
        tic = self._timed_observe_begin()
        indices = np.asarray(indices)
        if indices.size and indices.dtype.kind not in "iu":
            raise TypeError(f"indices must be integer row ids, got dtype {indices.dtype}")
        indices = indices.astype(np.int64, copy=False)
        losses = np.asarray(losses, dtype=np.float32)
        if indices.shape != losses.shape or indices.ndim != 1:
            raise ValueError(
                f"indices and losses must be 1-d of the same shape, got {indices.shape} and "
                f"{losses.shape}"
            )
        if not hasattr(self, "_codes"):
            raise RuntimeError("NWSketchSampler.start must be called before observe")
        if indices.size and (indices.min() < 0 or indices.max() >= self.n_samples_):
            raise ValueError(f"indices must lie in [0, {self.n_samples_})")
        if not np.all(np.isfinite(losses)):
            raise ValueError("losses must be finite")
        if not hasattr(self, "_pending"):
            self._pending = []
        self._pending.append((indices.copy(), losses.copy()))
        self._timed_observe_end(tic)
        return self

    def _observe_trusted(self, indices, losses):
        if type(self).observe is not NWSketchSampler.observe:
            return self.observe(indices, losses)
        # run_epoch's own draws and a fresh float32 copy of the step's losses:
        # kept as they are; their finiteness is checked once, when they enter
        # the sketch
        tic = self._timed_observe_begin()
        self._pending.append((indices, losses))
        self._timed_observe_end(tic)
        return self

    def __getstate__(self):
        state = super().__getstate__()
        state.pop("_codes", None)
        state.pop("_codes_key", None)
        if state.get("_pending"):
            # observations not yet inserted are written into the pickled sketch
            self._flush()
            state["sketch_"] = self.sketch_
        state.pop("_pending", None)
        return state

    def _check_state(self):
        super()._check_state()
        sketch = getattr(self, "sketch_", None)
        if sketch is not None and not isinstance(sketch, SketchCore):
            fail(self, f"sketch_ must be a sketch, found {type(sketch).__name__}")


@allow_in_model_files
class ExactLossSampler(_ProbabilitySampler):
    """Draw rows by the model's true current loss (recomputed at every refresh).

    The dynamic baseline: each refresh runs the model on every training row
    through the ``loss_fn`` the estimator passes to :meth:`start`, an extra
    forward pass over the data.

    Parameters
    ----------
    uniform_mix : float, default=0.1
        Share of the uniform distribution in the sampling probabilities.
    weighting : {"auto", "importance", "self-normalised", "none"}, default="auto"
        As in :class:`NWSketchSampler`.
    refresh_interval : int, default=None
        Batches between recomputing the losses; None means once per epoch.
        Not used by thinning.
    keep_fraction : float in (0, 1] or "auto", default=None
        Thinning, as in :class:`NWSketchSampler`, with ``L_i`` the row's
        current loss, computed for every candidate row of the chunk (a
        forward pass over all the rows).
    min_keep_probability : float in (0, 1], default=0.05
        As in :class:`NWSketchSampler`.
    always_keep : array-like, default=None
        As in :class:`NWSketchSampler`.
    random_state : int, RandomState instance or None, default=None
        Seeds the draws when the estimator does not pass a generator.

    Attributes
    ----------
    probabilities_ : ndarray of shape (n_samples,)
    epoch_stats_ : dict
    effective_sample_size_ : list of float
        See :class:`BaseSampler`.

    Examples
    --------
    >>> import numpy as np
    >>> from sksketch.sampling import ExactLossSampler
    >>> loss = np.array([0.0, 0.0, 0.0, 9.0], dtype=np.float32)
    >>> sampler = ExactLossSampler(uniform_mix=0.2, random_state=0)
    >>> _ = sampler.start(np.eye(4, dtype=np.float32), loss_fn=lambda idx: loss[idx])
    >>> batches = list(sampler.batches(4))
    >>> sampler.probabilities_.round(2).tolist()
    [0.05, 0.05, 0.05, 0.85]
    """

    def __init__(
        self, uniform_mix=0.1, weighting="auto", refresh_interval=None,
        keep_fraction=None, min_keep_probability=0.05, always_keep=None, random_state=None,
    ):
        self.uniform_mix = uniform_mix
        self.weighting = weighting
        self.refresh_interval = refresh_interval
        self.keep_fraction = keep_fraction
        self.min_keep_probability = min_keep_probability
        self.always_keep = always_keep
        self.random_state = random_state

    def _chunk_scores(self, indices):
        return np.asarray(self._loss_fn(indices), dtype=np.float64).reshape(-1)

    def _start(self, X):
        super()._start(X)
        if self._loss_fn is None:
            raise ValueError(
                "ExactLossSampler needs loss_fn: the estimator must pass the model's "
                "per-example loss to start()"
            )

    def _scores(self):
        n = self.n_samples_
        out = np.empty(n, dtype=np.float64)
        for start in range(0, n, _LOSS_CHUNK):
            idx = np.arange(start, min(n, start + _LOSS_CHUNK), dtype=np.int64)
            losses = np.asarray(self._loss_fn(idx), dtype=np.float64).reshape(-1)
            if losses.shape[0] != idx.shape[0]:
                raise ValueError(
                    f"loss_fn returned {losses.shape[0]} losses for {idx.shape[0]} rows"
                )
            out[idx] = losses
        return out


@allow_in_model_files
class NadarayaWatsonSketch(VersionedStateMixin, RegressorMixin, BaseEstimator):
    """Nadaraya-Watson kernel regression in a fixed-size sketch.

    Estimates ``L(q) = sum_i k(x_i, q) y_i / sum_i k(x_i, q)`` with ``k`` the
    SimHash collision probability ``(1 - angle(x_i, q) / pi) ** n_hash_bits``:
    ``n_rows`` hash functions each map a row to one of ``n_buckets`` buckets
    that keep a sum of targets and a count; a prediction divides the summed
    sums of its buckets by their summed counts. Memory is
    ``2 * n_rows * n_buckets`` floats, independent of the rows seen; an
    update and a prediction cost ``n_rows * n_hash_bits`` projections per row.
    Rows whose buckets are all empty get the mean of the targets seen.

    Parameters
    ----------
    n_rows : int, default=32
        Hash functions (sketch rows).
    n_hash_bits : int, default=8
        SimHash bits per hash function.
    n_buckets : int, default=None
        Buckets per row; None means ``2 ** n_hash_bits``.
    decay : float, default=1.0
        Factor multiplying the sums and counts before each :meth:`update`,
        so older targets fade exponentially; 1 keeps them all.
    projection_dim : int, default=None
        Hash a fixed Gaussian random projection of the input to this many
        dimensions instead of the input itself.
    random_state : int, RandomState instance or None, default=None
        Seeds the hash functions.
    n_jobs : int, default=None
        Threads of the hashing, update and look-up kernels; None means every
        thread OpenMP allows. Calls with little work run on one thread.

    Attributes
    ----------
    sketch_ : object
        The sketch kernel.
    n_features_in_ : int
    sums_ : ndarray of shape (n_rows, n_buckets)
        Decayed target sums per bucket.
    counts_ : ndarray of shape (n_rows, n_buckets)
        Decayed counts per bucket.

    Examples
    --------
    >>> import numpy as np
    >>> from sksketch.sampling import NadarayaWatsonSketch
    >>> rng = np.random.RandomState(0)
    >>> X = rng.randn(500, 4)
    >>> y = (X[:, 0] > 0).astype(float)
    >>> nw = NadarayaWatsonSketch(random_state=0).fit(X, y)
    >>> pred = nw.predict(X)
    >>> bool(pred[y == 1].mean() > 0.7 and pred[y == 0].mean() < 0.3)
    True
    """

    _parameter_constraints = {**_SKETCH_CONSTRAINTS, "n_jobs": [Integral, None]}

    def __init__(
        self,
        n_rows=32,
        n_hash_bits=8,
        n_buckets=None,
        decay=1.0,
        projection_dim=None,
        random_state=None,
        n_jobs=None,
    ):
        self.n_rows = n_rows
        self.n_hash_bits = n_hash_bits
        self.n_buckets = n_buckets
        self.decay = decay
        self.projection_dim = projection_dim
        self.random_state = random_state
        self.n_jobs = n_jobs

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        tags.regressor_tags.poor_score = True
        return tags

    def _check_state(self):
        sketch = getattr(self, "sketch_", None)
        if sketch is None:
            return
        n_features = attr_integer(self, "n_features_in_", 1)
        if not isinstance(sketch, SketchCore):
            fail(self, f"sketch_ must be a sketch, found {type(sketch).__name__}")
        if sketch.n_features != n_features:
            fail(self, f"sketch_ hashes {sketch.n_features} features, the model has {n_features}")

    def _validate(self, X, y, reset):
        check_sparse_indices(X)  # before validate_data converts other formats to CSR
        X, y = validate_data(
            self,
            X,
            y,
            accept_sparse="csr",
            dtype=[np.float64, np.float32],
            y_numeric=True,
            reset=reset,
        )
        y = np.asarray(y, dtype=np.float32)
        if not np.all(np.isfinite(y)):
            raise ValueError("y must be finite")
        return _as_float32_rows(X), y

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y):
        """Forget everything and insert (X, y).

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
            Targets (for example losses).

        Returns
        -------
        self : NadarayaWatsonSketch
        """
        self.sketch_ = None
        return self._update(X, y, reset=True)

    @_fit_context(prefer_skip_nested_validation=True)
    def update(self, X, y):
        """Insert (X, y), after decaying what the sketch holds by ``decay``.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)

        Returns
        -------
        self : NadarayaWatsonSketch
        """
        return self._update(X, y, reset=getattr(self, "sketch_", None) is None)

    def _update(self, X, y, reset):
        n_rows, n_hash_bits, n_buckets = _sketch_shape(self)
        X, y = self._validate(X, y, reset)
        if reset:
            self.sketch_ = SketchCore(
                X.shape[1],
                n_rows,
                n_hash_bits,
                n_buckets,
                self.projection_dim,
                check_random_state(self.random_state),
            )
        elif self.decay < 1.0:
            self.sketch_.scale(float(self.decay))
        self.sketch_.insert(self.sketch_.hash(X, self.n_jobs), y, n_jobs=self.n_jobs)
        return self

    def predict(self, X):
        """Estimated target of every row.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        y : ndarray of shape (n_samples,), dtype=float64
        """
        check_is_fitted(self, "sketch_")
        check_sparse_indices(X)
        X = validate_data(
            self, X, accept_sparse="csr", dtype=[np.float64, np.float32], reset=False
        )
        return self.sketch_.query(
            self.sketch_.hash(_as_float32_rows(X), self.n_jobs), self.n_jobs
        )

    @property
    def sums_(self):
        check_is_fitted(self, "sketch_")
        return np.asarray(self.sketch_.sums)

    @property
    def counts_(self):
        check_is_fitted(self, "sketch_")
        return np.asarray(self.sketch_.counts)
