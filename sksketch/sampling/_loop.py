"""The epoch loop every sksketch estimator trains through."""

import numpy as np

__all__ = ["run_epoch"]


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
