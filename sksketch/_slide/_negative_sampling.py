"""Probability models of SLIDEClassifier's negative samplers.

A sampled softmax estimates the full softmax's normaliser without bias when
each sampled negative counts ``1 / pi_i`` times, ``pi_i`` being its inclusion
probability. These functions give ``pi_i`` for each sampler:

* uniform labels: ``n_drawn / n_candidates``;
* unigram labels drawn ``T`` times with probability ``p_i``:
  ``1 - (1 - p_i)**T``;
* labels retrieved by ``L`` hash tables of ``K`` codes each, whose family has
  collision probability ``cp`` for the query and the label's weight row:
  ``1 - (1 - cp**K)**L``.

For SimHash (signed random projections), ``cp = 1 - angle / pi``. DWTA has no
closed form in the angle, so its collision probability is measured: the share
of hash codes two vectors agree on estimates ``cp`` for that pair, and a
monotone fit over many pairs gives ``cp`` as a function of their cosine.
"""

import numpy as np
from sklearn.isotonic import IsotonicRegression

# cp is tabulated on this many equal steps of the cosine over [-1, 1].
N_COSINE_STEPS = 64


def simhash_collision_probability(cosine):
    """Probability that one signed random projection agrees on two vectors.

    Parameters
    ----------
    cosine : array-like
        Cosine similarity of the two vectors.

    Returns
    -------
    cp : ndarray
        ``1 - arccos(cosine) / pi``.

    Examples
    --------
    >>> from sksketch._slide._negative_sampling import simhash_collision_probability
    >>> simhash_collision_probability([1.0, 0.0, -1.0]).tolist()
    [1.0, 0.5, 0.0]
    """
    cosine = np.clip(np.asarray(cosine, dtype=np.float64), -1.0, 1.0)
    return 1.0 - np.arccos(cosine) / np.pi


def retrieval_probability(collision_probability, n_hashes_per_table, n_tables):
    """Probability that L tables of K codes each retrieve an item for a query.

    ``1 - (1 - cp**K)**L``: an item shares the query's bucket in one table when
    all K codes agree, and is retrieved when that happens in any table.

    Examples
    --------
    >>> from sksketch._slide._negative_sampling import retrieval_probability
    >>> float(retrieval_probability(0.5, 2, 1))
    0.25
    """
    cp = np.asarray(collision_probability, dtype=np.float64)
    return 1.0 - (1.0 - cp**n_hashes_per_table) ** n_tables


def measured_collision_probability(tables, queries, items, n_threads=1):
    """Share of the tables' hash codes on which each query agrees with each item.

    An unbiased estimate of the family's collision probability for each pair,
    over the ``n_hashes_per_table * n_tables`` functions the tables hold.

    Returns
    -------
    cp : ndarray of shape (n_queries, n_items)
    """
    q = tables.codes(np.ascontiguousarray(queries, dtype=np.float32), n_threads=n_threads)
    v = tables.codes(np.ascontiguousarray(items, dtype=np.float32), n_threads=n_threads)
    return (q[:, None, :] == v[None, :, :]).mean(axis=2)


def collision_table(tables, queries=None, items=None, n_threads=1):
    """The tables' collision probability on a grid of cosines over [-1, 1].

    Parameters
    ----------
    tables : LSHTables
    queries, items : ndarray of shape (n, dim), default=None
        Vectors like the ones the tables will be queried with and hold; used
        for DWTA only, whose collision probability is measured on their pairs.

    Returns
    -------
    cp : ndarray of shape (N_COSINE_STEPS + 1,), float32
        Non-decreasing in the cosine, 1 at cosine 1.
    """
    grid = np.linspace(-1.0, 1.0, N_COSINE_STEPS + 1)
    if tables.family_name == "simhash":
        return simhash_collision_probability(grid).astype(np.float32)
    cp = measured_collision_probability(tables, queries, items, n_threads).ravel()
    cosine = _cosines(queries, items).ravel()
    # A vector and any positive multiple of it always collide: pin cp(1) = 1.
    fit = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
    fit.fit(np.append(cosine, 1.0), np.append(cp, 1.0),
            sample_weight=np.append(np.ones_like(cp), len(cp)))
    return fit.predict(grid).astype(np.float32)


def _cosines(A, B):
    A = np.asarray(A, dtype=np.float64)
    B = np.asarray(B, dtype=np.float64)
    na = np.linalg.norm(A, axis=1)[:, None]
    nb = np.linalg.norm(B, axis=1)[None, :]
    return (A @ B.T) / np.maximum(na * nb, 1e-300)


def unigram_cdf(label_counts):
    """Cumulative probabilities of the unigram sampler, float64, last entry 1.

    Each label is drawn with probability proportional to its training count
    plus one, so that labels not seen yet can still be drawn as negatives.

    Examples
    --------
    >>> from sksketch._slide._negative_sampling import unigram_cdf
    >>> unigram_cdf([3, 0, 4]).tolist()
    [0.4, 0.5, 1.0]
    """
    weights = np.asarray(label_counts, dtype=np.float64) + 1.0
    cdf = np.cumsum(weights)
    cdf /= cdf[-1]
    cdf[-1] = 1.0
    return cdf
