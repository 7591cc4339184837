"""Uniform shuffled batches and the epoch loop (the sampler protocol's uniform case)."""

import math

import numpy as np
from sklearn.base import BaseEstimator


class _UniformSampler(BaseEstimator):
    def start(self, X, *, loss_fn=None, random_state=None):
        self._n = X.shape[0]
        self._rng = random_state if random_state is not None else np.random.RandomState()

    def batches(self, batch_size):
        order = self._rng.permutation(self._n).astype(np.int64)
        ones = np.ones(min(batch_size, self._n), dtype=np.float32)
        for s in range(0, self._n, batch_size):
            idx = order[s : s + batch_size]
            yield idx, ones[: len(idx)]

    def observe(self, indices, losses):
        pass


def check_sampler(sampler):
    if sampler is None or sampler == "uniform":
        return _UniformSampler()
    raise ValueError(f"sampler must be None or 'uniform', got {sampler!r}")


def run_epoch(sampler, batch_size, train_batch, sample_weight=None):
    total = weight = 0.0
    n_batches = 0
    for idx, iw in sampler.batches(batch_size):
        w = iw if sample_weight is None else (iw * sample_weight[idx]).astype(np.float32)
        losses = train_batch(idx, w)
        sampler.observe(idx, losses)
        total += float(np.dot(losses, w))
        weight += float(w.sum())
        n_batches += 1
    return {"loss": total / weight if weight > 0 else math.nan, "n_batches": n_batches}
