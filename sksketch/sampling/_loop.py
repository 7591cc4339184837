"""The training loop every sksketch estimator trains through.

:func:`fit_epochs` runs the epochs of a ``fit`` or ``partial_fit`` call (and of
the ``sksketch`` command's training); :func:`run_epoch` runs one epoch over the
batches a sampler draws.
"""

import time
import warnings
from typing import NamedTuple

import numpy as np
from sklearn.exceptions import ConvergenceWarning

__all__ = ["EpochReport", "fit_epochs", "run_epoch"]


class EpochReport(NamedTuple):
    """What :func:`fit_epochs` hands its ``on_epoch`` callback after an epoch.

    Attributes
    ----------
    epoch : int
        The epoch's number in this call, from 1.
    loss : float
        What ``train_epoch`` returned.
    seconds : float
        Wall-clock seconds of ``train_epoch``.
    validation_score : float or None
        The epoch's validation score, when there is one.
    """

    epoch: int
    loss: float
    seconds: float
    validation_score: float | None


def fit_epochs(
    train_epoch,
    *,
    n_epochs,
    n_samples,
    estimator=None,
    sampler=None,
    score_validation=None,
    score_name="validation score",
    stopping=False,
    on_epoch=None,
    done=None,
    stacklevel=1,
):
    """Train for at most `n_epochs` epochs, one ``train_epoch()`` call each.

    After every epoch the loop records it in `estimator`: ``n_iter_`` grows
    by one, the loss joins ``loss_curve_`` and, with `score_validation`, the
    score joins ``validation_scores_``; when ``estimator.verbose`` is set it
    prints ``Iteration <n_iter_>, loss = <loss>, <rate> samples/s`` (and
    ``, <score_name> = <score>``). With `stopping`, the estimator's
    ``_should_stop(loss)`` (see ``sksketch.base._EpochStoppingMixin``) ends
    training early, and running all `n_epochs` (more than one) emits a
    :class:`~sklearn.exceptions.ConvergenceWarning`. Whatever happens,
    ``sampler.finish()`` ends the sampler's call when the loop does, so that
    neither the training data nor the loss function outlive it.

    Parameters
    ----------
    train_epoch : callable
        ``train_epoch() -> loss``: one epoch of training; its loss (a float,
        NaN when there is none) is recorded.
    n_epochs : int
        Epochs to run at most (``max_iter`` for ``fit``, 1 for
        ``partial_fit``).
    n_samples : int
        Training rows per epoch, for the throughput of the verbose line.
    estimator : estimator, default=None
        Where the epochs are recorded; None records nothing (for a caller
        that trains through ``partial_fit``, which records its own epochs).
    sampler : BaseSampler, default=None
        A started sampler, finished when the loop ends.
    score_validation : callable, default=None
        ``score_validation() -> float``: the model's validation score after
        an epoch (higher is better).
    score_name : str, default="validation score"
        The score's name in the verbose line.
    stopping : bool, default=False
        Apply the estimator's stopping rule and warn about non-convergence
        (``fit``, not ``partial_fit``).
    on_epoch : callable, default=None
        ``on_epoch(report)`` after every epoch, with an :class:`EpochReport`.
    done : callable, default=None
        ``done() -> bool`` after every epoch: True when training has nothing
        left to change, which ends the loop (without the warning).
    stacklevel : int, default=1
        Of the warning, as if the caller of ``fit_epochs`` emitted it with
        :func:`warnings.warn`: 1 points at the caller's line, 2 at its
        caller's, and so on up to the user's call.

    Returns
    -------
    seconds : float
        Time spent in ``train_epoch``.

    Examples
    --------
    >>> from sksketch.sampling._loop import fit_epochs
    >>> losses = iter([0.9, 0.5, 0.4])
    >>> seconds = fit_epochs(lambda: next(losses), n_epochs=3, n_samples=10,
    ...                      on_epoch=lambda report: print(report.epoch, report.loss))
    1 0.9
    2 0.5
    3 0.4
    """
    seconds = 0.0
    try:
        for epoch in range(1, n_epochs + 1):
            started = time.perf_counter()
            loss = train_epoch()
            elapsed = time.perf_counter() - started
            seconds += elapsed
            score = None
            if estimator is not None:
                estimator.n_iter_ += 1
                estimator.loss_curve_.append(loss)
                if score_validation is not None:
                    score = score_validation()
                    estimator.validation_scores_.append(score)
                if getattr(estimator, "verbose", 0):
                    message = (
                        f"Iteration {estimator.n_iter_}, loss = {loss:.6f}, "
                        f"{n_samples / max(elapsed, 1e-9):,.0f} samples/s"
                    )
                    if score is not None:
                        message += f", {score_name} = {score:.4f}"
                    print(message, flush=True)
            if on_epoch is not None:
                on_epoch(EpochReport(epoch, loss, elapsed, score))
            if stopping and estimator._should_stop(loss):
                break
            if done is not None and done():
                break
        else:
            if stopping and n_epochs > 1:
                warnings.warn(
                    f"Stochastic optimizer: maximum iterations ({n_epochs}) "
                    "reached and the optimization hasn't converged yet.",
                    ConvergenceWarning,
                    stacklevel=stacklevel + 1,
                )
    finally:
        if sampler is not None:
            sampler.finish()
    return seconds


def run_epoch(sampler, batch_size, train_batch, sample_weight=None):
    """Train one epoch on the batches a started sampler draws.

    For every ``(indices, importance)`` the sampler yields, the training step
    receives the weights ``importance * sample_weight[indices]`` (float32),
    returns the per-example losses it computed, and the sampler learns from
    them.

    Parameters
    ----------
    sampler : BaseSampler
        A sampler on which ``start`` has been called for this fit call.
    batch_size : int
        Rows per batch.
    train_batch : callable
        ``train_batch(indices, weights) -> losses``: one training step on the
        rows `indices` (int64) with per-example weights (float32); returns
        their losses (array-like of shape (n_batch,)) before or after the
        step, as the estimator computes them at no extra cost, or None when
        it has none (an estimator that scores rows in groups passes them to
        ``sampler.observe`` itself; ``stats["loss"]`` then leaves them out).
    sample_weight : ndarray of shape (n_samples,), default=None
        The user's per-row weights over the matrix given to ``start``: finite
        and non-negative.

    Returns
    -------
    stats : dict
        ``loss`` (weighted mean of the returned losses), ``n_batches``,
        ``n_samples`` (rows drawn), and the sampler's ``epoch_stats_``
        (``effective_sample_size``, ``sampler_time``, ...).

    Examples
    --------
    >>> import numpy as np
    >>> from sksketch.sampling import UniformSampler, run_epoch
    >>> X = np.arange(10, dtype=np.float32).reshape(5, 2)
    >>> sampler = UniformSampler(shuffle=False).start(X)
    >>> stats = run_epoch(sampler, 2, lambda idx, w: X[idx, 0])
    >>> stats["loss"], stats["n_batches"]
    (4.0, 3)
    """
    if not callable(train_batch):
        raise TypeError(f"train_batch must be callable, got {type(train_batch).__name__}")
    if sample_weight is not None:
        sample_weight = np.asarray(sample_weight, dtype=np.float32)
        if sample_weight.ndim != 1 or sample_weight.shape[0] != sampler.n_samples_:
            raise ValueError(
                f"sample_weight must have shape ({sampler.n_samples_},), "
                f"got {sample_weight.shape}"
            )
        if not np.all(np.isfinite(sample_weight)) or np.any(sample_weight < 0):
            raise ValueError("sample_weight must be finite and non-negative")
    n_batches = 0
    n_samples = 0
    weight_parts = []
    loss_parts = []
    observe = sampler._observe_trusted
    for indices, importance in sampler.batches(batch_size):
        if sample_weight is None:
            weights = importance
        else:
            weights = (importance * sample_weight[indices]).astype(np.float32, copy=False)
        losses = train_batch(indices, weights)
        n_batches += 1
        n_samples += indices.shape[0]
        if losses is None:
            continue
        # a copy: the step may hand back a buffer it reuses
        losses = np.array(losses, dtype=np.float32).reshape(-1)
        if losses.shape[0] != indices.shape[0]:
            raise ValueError(
                f"train_batch returned {losses.shape[0]} losses for a batch of "
                f"{indices.shape[0]} rows"
            )
        observe(indices, losses)
        weight_parts.append(np.array(weights, dtype=np.float64))  # the sampler may reuse it
        loss_parts.append(losses)
    total_loss = total_weight = 0.0
    if loss_parts:
        w = np.concatenate(weight_parts)
        total_loss = float(w @ np.concatenate(loss_parts))
        total_weight = float(w.sum())
    stats = {
        "loss": total_loss / total_weight if total_weight > 0 else 0.0,
        "n_batches": n_batches,
        "n_samples": n_samples,
    }
    stats.update(getattr(sampler, "epoch_stats_", {}))
    return stats
