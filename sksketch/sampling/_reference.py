"""Plain NumPy references for the Nadaraya-Watson sketch kernel (used by tests).

The hash family is SimHash / signed random projections: projection ``j`` of
feature ``f`` is ``+1`` or ``-1`` by bit ``j % 64`` of
``mix64(mix64(seed) + f * n_words + j // 64)``, so dense and sparse rows hash
identically without storing a ``n_features x n_projections`` matrix. Sketch
row ``r`` uses projections ``r * n_hash_bits ... (r + 1) * n_hash_bits - 1``;
bit ``k`` of its bucket is set when projection ``r * n_hash_bits + k`` is
positive, and codes wider than ``n_buckets`` are folded modulo ``n_buckets``.
"""

import numpy as np
import scipy.sparse as sp

_U64 = np.uint64


def mix64(x):
    """splitmix64 finaliser on uint64 arrays (wrapping arithmetic)."""
    x = np.asarray(x, dtype=_U64)
    with np.errstate(over="ignore"):
        x = x + _U64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> _U64(30))) * _U64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> _U64(27))) * _U64(0x94D049BB133111EB)
    return x ^ (x >> _U64(31))


def srp_signs(n_features, n_projections, seed):
    """The +-1 projection matrix of shape (n_features, n_projections), float32."""
    n_words = (n_projections + 63) // 64
    base = mix64(_U64(seed))
    with np.errstate(over="ignore"):
        keys = base + np.arange(n_features, dtype=_U64)[:, None] * _U64(n_words) + np.arange(
            n_words, dtype=_U64
        )
    words = mix64(keys)
    j = np.arange(n_projections)
    bits = (words[:, j // 64] >> (j % 64).astype(_U64)) & _U64(1)
    return np.where(bits == 1, 1.0, -1.0).astype(np.float32)


def srp_codes(X, n_rows, n_hash_bits, n_buckets, seed):
    """Bucket of every row of `X` in every sketch row: int32 (n_samples, n_rows)."""
    signs = srp_signs(X.shape[1], n_rows * n_hash_bits, seed).astype(np.float64)
    Z = X @ signs if sp.issparse(X) else np.asarray(X, dtype=np.float64) @ signs
    Z = np.asarray(Z).reshape(X.shape[0], n_rows, n_hash_bits)
    weights = (1 << np.arange(n_hash_bits)).astype(np.int64)
    codes = ((Z > 0).astype(np.int64) * weights).sum(axis=2)
    return (codes % n_buckets).astype(np.int32)


class NumpyNWSketch:
    """The sketch (sums ``S`` and counts ``C``, both ``n_rows x n_buckets``) in NumPy."""

    def __init__(self, n_rows, n_hash_bits, n_buckets, seed, dtype=np.float64):
        self.n_rows = n_rows
        self.n_hash_bits = n_hash_bits
        self.n_buckets = n_buckets
        self.seed = seed
        self.sums = np.zeros((n_rows, n_buckets), dtype=dtype)
        self.counts = np.zeros((n_rows, n_buckets), dtype=dtype)

    def hash(self, X):
        return srp_codes(X, self.n_rows, self.n_hash_bits, self.n_buckets, self.seed)

    def insert(self, codes, losses, decay=1.0):
        self.sums *= decay
        self.counts *= decay
        rows = np.broadcast_to(np.arange(self.n_rows), codes.shape)
        np.add.at(self.sums, (rows, codes), np.asarray(losses, dtype=np.float64)[:, None])
        np.add.at(self.counts, (rows, codes), 1.0)

    def query(self, codes, prior=0.0):
        rows = np.arange(self.n_rows)
        num = self.sums[rows, codes].sum(axis=1)
        den = self.counts[rows, codes].sum(axis=1)
        out = np.full(codes.shape[0], prior, dtype=np.float64)
        np.divide(num, den, out=out, where=den > 0)
        return out


def exact_nadaraya_watson(X_train, losses, X_query, n_hash_bits):
    """The exact NW estimate with the SRP kernel ``(1 - angle / pi) ** n_hash_bits``.

    Rows with zero kernel mass (or zero norm) get the mean loss.
    """
    A = X_train.toarray() if sp.issparse(X_train) else np.asarray(X_train, dtype=np.float64)
    Q = X_query.toarray() if sp.issparse(X_query) else np.asarray(X_query, dtype=np.float64)
    na = np.linalg.norm(A, axis=1)
    nq = np.linalg.norm(Q, axis=1)
    cos = (Q @ A.T) / np.maximum(np.outer(nq, na), 1e-300)
    angle = np.arccos(np.clip(cos, -1.0, 1.0))
    kernel = (1.0 - angle / np.pi) ** n_hash_bits
    num = kernel @ np.asarray(losses, dtype=np.float64)
    den = kernel.sum(axis=1)
    out = np.full(Q.shape[0], float(np.mean(losses)))
    np.divide(num, den, out=out, where=den > 0)
    return out
