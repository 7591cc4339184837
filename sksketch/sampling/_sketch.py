"""The sketch state behind NWSketchSampler and NadarayaWatsonSketch."""

import numpy as np
import scipy.sparse as sp

from .._kernels._nw_sketch import NWSketch
from .._state import F32, allow_in_model_files, attr_array, attr_integer, fail
from ..utils._threads import threads_for

__all__ = ["SketchCore"]

# Bucket updates, look-ups or values checksummed per thread: below twice this
# a call runs on the calling thread, as waking an OpenMP team costs more.
_MIN_WORK_PER_THREAD = 1 << 21


def _threads(work, n_jobs):
    return threads_for(work, n_jobs, _MIN_WORK_PER_THREAD)


@allow_in_model_files(kind="object")
class SketchCore:
    """The compiled sketch plus an optional fixed random projection; picklable.

    Parameters
    ----------
    n_features : int
    n_rows, n_hash_bits, n_buckets : int
    projection_dim : int or None
        When set, rows are first multiplied by a fixed Gaussian matrix of
        shape (n_features, projection_dim) and the product is hashed.
    rng : RandomState
        Draws the hash seed (and the projection).
    dtype : {"float64", "float32"}, default="float64"
        Of the sums and counts. float32 halves the sketch, and a sketch of
        many buckets is then read and written about twice as fast.

    The methods take the caller's ``n_jobs`` (None: every thread), used only
    for calls with enough work to share.
    """

    def __init__(self, n_features, n_rows, n_hash_bits, n_buckets, projection_dim, rng,
                 dtype="float64"):
        self.n_features = int(n_features)
        seed = int(rng.randint(0, 2**62, dtype=np.int64))
        if projection_dim is None:
            self.projection = None
            hashed_dim = self.n_features
        else:
            self.projection = rng.standard_normal((self.n_features, projection_dim)).astype(
                np.float32
            )
            hashed_dim = int(projection_dim)
        self.kernel = NWSketch(hashed_dim, n_rows, n_hash_bits, n_buckets, seed, dtype)

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._check_state()

    def _check_state(self):
        if set(vars(self)) != {"n_features", "projection", "kernel"}:
            fail(self, "the state must be n_features, projection and kernel")
        n_features = attr_integer(self, "n_features", 1)
        projection = attr_array(self, "projection", (F32,), (n_features, None), optional=True)
        if not isinstance(self.kernel, NWSketch):
            fail(self, f"kernel must be an NWSketch, found {type(self.kernel).__name__}")
        hashed = n_features if projection is None else projection.shape[1]
        if self.kernel.n_features != hashed:
            fail(self, f"the kernel hashes {self.kernel.n_features} values, rows have {hashed}")

    @property
    def sums(self):
        return self.kernel.sums

    @property
    def counts(self):
        return self.kernel.counts

    def hash(self, X, n_jobs=None, out=None):
        """int32 buckets of shape (n_samples, n_rows) of CSR float32 or C float32 rows.

        `out`: an int32 array of that shape to write them into (reused
        across calls), or None."""
        n_threads = _threads(X.shape[0] * self.kernel.n_rows * self.kernel.n_hash_bits, n_jobs)
        if self.projection is not None:
            Z = X @ self.projection
            X = np.ascontiguousarray(Z.toarray() if sp.issparse(Z) else Z, dtype=np.float32)
        if sp.issparse(X):
            return self.kernel.hash_csr(X, n_threads, out)
        return self.kernel.hash_dense(X, n_threads, out)

    def insert(self, codes, losses, decay=1.0, trusted_codes=False, n_jobs=None):
        self.kernel.insert(codes, losses, decay, _threads(codes.size, n_jobs), not trusted_codes)

    def scale(self, factor):
        self.kernel.scale(factor)

    def query(self, codes, n_jobs=None):
        return self.kernel.query(codes, _threads(codes.size, n_jobs))
