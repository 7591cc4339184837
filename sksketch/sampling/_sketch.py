"""The sketch state behind NWSketchSampler and NadarayaWatsonSketch."""

import numpy as np
import scipy.sparse as sp

from ._reference import NumpyNWSketch

__all__ = ["SketchCore"]


class SketchCore:
    """Hash functions plus sums and counts; picklable.

    Parameters
    ----------
    n_features : int
    n_rows, n_hash_bits, n_buckets : int
    projection_dim : int or None
        When set, rows are first multiplied by a fixed Gaussian matrix of
        shape (n_features, projection_dim).
    rng : RandomState
        Draws the hash seed (and the projection).
    """

    def __init__(self, n_features, n_rows, n_hash_bits, n_buckets, projection_dim, rng):
        self.n_features = int(n_features)
        seed = int(rng.randint(0, 2**62, dtype=np.int64))
        if projection_dim is None:
            self.projection = None
            hashed_dim = self.n_features
        else:
            self.projection = (
                rng.standard_normal((self.n_features, projection_dim)).astype(np.float32)
            )
            hashed_dim = projection_dim
        self.hashed_dim = hashed_dim
        self._core = NumpyNWSketch(n_rows, n_hash_bits, n_buckets, seed)
        self.total_sum = 0.0
        self.total_count = 0.0

    @property
    def sums(self):
        return self._core.sums

    @property
    def counts(self):
        return self._core.counts

    def _project(self, X):
        if self.projection is None:
            return X
        Z = X @ self.projection
        return np.ascontiguousarray(Z.toarray() if sp.issparse(Z) else Z, dtype=np.float32)

    def hash(self, X):
        """int32 codes of shape (n_samples, n_rows)."""
        return self._core.hash(self._project(X))

    def insert(self, codes, losses):
        losses = np.asarray(losses, dtype=np.float32)
        self._core.insert(codes, losses)
        self.total_sum += float(losses.sum(dtype=np.float64))
        self.total_count += float(losses.shape[0])

    def scale(self, factor):
        self._core.sums *= factor
        self._core.counts *= factor
        self.total_sum *= factor
        self.total_count *= factor

    def query(self, codes):
        prior = self.total_sum / self.total_count if self.total_count > 0 else 0.0
        return self._core.query(codes, prior=prior)
