"""Thinning: an epoch that trains on a subset of the rows, each kept with its own probability.

A thinning sampler goes through the rows in a shuffled order, a chunk at a
time. For each chunk it asks the sampler for a score per row (an estimated
loss, or the exact one), turns the scores into keep probabilities

    p_i = min(1, max(floor, c * score_i)),

with ``c`` chosen so that the probabilities add up to the keep budget, keeps
each row independently with its probability (Poisson sampling) and yields the
kept rows in batches, weighted by ``1 / p_i`` (the Horvitz-Thompson weights:
the weighted sum of any per-row quantity over the kept rows is an unbiased
estimate of its sum over all rows). Rows of the labels in ``always_keep`` get
``p_i = 1``. An epoch then costs in proportion to the rows it keeps; because
the scores are asked for chunk by chunk, a sampler that learns from the
training losses (the loss sketch) already thins the first pass, from the
losses of the chunks before (until it has seen any, it thins at random).
"""

import numpy as np
import scipy.sparse as sp

__all__ = ["auto_keep_fraction", "forced_rows", "thinning_probabilities"]

# Candidate rows per chunk: the scores of a chunk are read once, after the
# kept rows of the chunk before it have been trained on.
THINNING_CHUNK = 8192

# log c is bracketed within about 40 units: 24 halvings put the budget
# within a few parts in a million
_BISECTION_STEPS = 24


def thinning_probabilities(scores, budget, floor):
    """Keep probabilities ``min(1, max(floor, c * score))`` that add up to `budget`.

    Parameters
    ----------
    scores : ndarray of shape (n,)
        Non-negative scores (estimated losses); non-finite and negative ones
        count as 0.
    budget : float
        Expected rows kept, between ``floor * n`` and ``n`` (clipped to them).
    floor : float
        Smallest probability, in (0, 1].

    Returns
    -------
    p : ndarray of shape (n,), dtype=float64

    Examples
    --------
    >>> import numpy as np
    >>> from sksketch.sampling._thinning import thinning_probabilities
    >>> p = thinning_probabilities(np.array([0.0, 1.0, 1.0, 8.0]), 2.0, 0.1)
    >>> p.round(3).tolist(), float(p.sum().round(6))
    ([0.1, 0.45, 0.45, 1.0], 2.0)
    """
    s = np.asarray(scores, dtype=np.float64)
    s = np.where(np.isfinite(s) & (s > 0), s, 0.0)
    n = s.shape[0]
    if n == 0:
        return np.zeros(0)
    floor = float(floor)
    budget = min(max(float(budget), floor * n), float(n))
    if budget >= n:
        return np.ones(n)
    if budget <= floor * n or not s.any():
        return np.full(n, max(floor, budget / n))
    positive = s > 0
    n_positive = int(positive.sum())
    if n_positive == n and s.min() == s.max():
        return np.full(n, budget / n)
    if n_positive + floor * (n - n_positive) <= budget:
        # every row with a score is kept; the rows without share the rest
        p = np.ones(n)
        p[~positive] = min(1.0, max(floor, (budget - n_positive) / (n - n_positive)))
        return p
    # sum(clip(c s, floor, 1)) grows with c: bisect on log c
    lo = np.log(floor / s.max())
    hi = np.log(1.0 / s[positive].min())
    for _ in range(_BISECTION_STEPS):
        mid = 0.5 * (lo + hi)
        if np.clip(np.exp(mid) * s, floor, 1.0).sum() < budget:
            lo = mid
        else:
            hi = mid
    return np.clip(np.exp(hi) * s, floor, 1.0)


def auto_keep_fraction(scores, floor):
    """The share of rows worth keeping: Kish's effective fraction of the scores.

    ``(sum s) ** 2 / (n * sum s ** 2)``, clipped to ``[floor, 1]``: 1 when
    every row has the same score (thinning would only add noise), ``m / n``
    when `m` rows have equal scores and the others none, and in between as
    the scores grow skewed. Keeping that share with probabilities in
    proportion to the scores gives each kept row a weight that varies as
    little as the scores allow.

    Examples
    --------
    >>> import numpy as np
    >>> from sksketch.sampling._thinning import auto_keep_fraction
    >>> auto_keep_fraction(np.ones(10), 0.05)
    1.0
    >>> auto_keep_fraction(np.r_[np.ones(2), np.zeros(8)], 0.05)
    0.2
    """
    s = np.asarray(scores, dtype=np.float64)
    s = np.where(np.isfinite(s) & (s > 0), s, 0.0)
    total_sq = float(s @ s)
    if s.shape[0] == 0 or total_sq <= 0:
        return 1.0
    share = float(s.sum()) ** 2 / (s.shape[0] * total_sq)
    return min(1.0, max(float(floor), share))


def forced_rows(always_keep, y, classes):
    """Boolean mask of the rows that carry a label in `always_keep`, or None.

    Parameters
    ----------
    always_keep : array-like or None
        Labels whose rows are always kept.
    y : ndarray of shape (n,) or {ndarray, sparse matrix} of shape (n, n_labels)
        Class codes (indices into `classes`), or a label indicator whose
        columns are the codes.
    classes : array-like or None
        The label of every code; None means the codes are the labels.
    """
    if always_keep is None:
        return None
    if y is None:
        raise ValueError(
            "always_keep needs the rows' labels, but this estimator did not pass them "
            "to the sampler"
        )
    wanted = np.asarray(always_keep).reshape(-1)
    if sp.issparse(y) or (isinstance(y, np.ndarray) and y.ndim == 2):
        n_labels = y.shape[1]
        labels = np.arange(n_labels) if classes is None else np.asarray(classes)
        columns = np.isin(labels, wanted).astype(np.float64)
        hits = y @ columns if sp.issparse(y) else (np.asarray(y) != 0) @ columns
        return np.asarray(hits).reshape(-1) > 0
    y = np.asarray(y)
    if classes is None:
        return np.isin(y, wanted)
    return np.isin(np.asarray(classes), wanted)[y]


def thinned_epoch(sampler, batch_size, scores_of, keep_fraction, floor, weighting):
    """Yield ``(indices, weights)`` batches of the rows one thinned epoch keeps.

    `scores_of(indices)` gives the scores of a chunk's candidate rows, or
    None when the sampler knows nothing yet: the chunk is then thinned at
    random to the keep fraction (kept whole for ``"auto"``, which has no
    skew to go by).
    Also records ``sampler._kept`` (rows kept) for the epoch's statistics.
    """
    n = sampler.n_samples_
    rng = sampler._rng
    forced = getattr(sampler, "_forced", None)
    # a sampler with shuffle=False (UniformSampler) thins its rows in order
    order = (rng.permutation(n).astype(np.int64) if getattr(sampler, "shuffle", True)
             else np.arange(n, dtype=np.int64))
    pending_idx = []
    pending_w = []
    n_pending = 0
    sampler._kept = 0
    for first in range(0, n, THINNING_CHUNK):
        chunk = order[first : first + THINNING_CHUNK]
        scores = scores_of(chunk)
        if scores is None and keep_fraction != "auto":
            scores = np.ones(chunk.shape[0])
        p = np.ones(chunk.shape[0])
        if scores is not None:
            free = np.ones(chunk.shape[0], dtype=bool) if forced is None else ~forced[chunk]
            s = np.asarray(scores, dtype=np.float64)[free]
            share = auto_keep_fraction(s, floor) if keep_fraction == "auto" else keep_fraction
            # the forced rows count against the budget
            budget = share * chunk.shape[0] - (chunk.shape[0] - s.shape[0])
            p[free] = thinning_probabilities(s, budget, floor)
        keep = rng.random_sample(chunk.shape[0]) < p
        kept = chunk[keep]
        if weighting == "none":
            w = np.ones(kept.shape[0], dtype=np.float32)
        else:
            w = (1.0 / p[keep]).astype(np.float32)
        sampler._kept += kept.shape[0]
        pending_idx.append(kept)
        pending_w.append(w)
        n_pending += kept.shape[0]
        if n_pending < batch_size:
            continue
        idx = np.concatenate(pending_idx)
        ws = np.concatenate(pending_w)
        n_full = (n_pending // batch_size) * batch_size
        pending_idx, pending_w = [idx[n_full:]], [ws[n_full:]]
        n_pending -= n_full
        for start in range(0, n_full, batch_size):
            yield _batch(idx[start : start + batch_size], ws[start : start + batch_size], weighting)
    if n_pending:
        yield _batch(np.concatenate(pending_idx), np.concatenate(pending_w), weighting)


def _batch(idx, w, weighting):
    if weighting == "self-normalised":
        w = (w / w.mean(dtype=np.float64)).astype(np.float32)
    return idx, w
