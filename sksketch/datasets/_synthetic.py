"""Synthetic extreme-classification problems of any size."""

from numbers import Integral, Real

import numpy as np
import scipy.sparse as sp
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, validate_params


def _splitmix64(x):
    """Scramble uint64 values (wrapping arithmetic, vectorised)."""
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _zipf_sampler(n, exponent, rng):
    """Draw ids in [0, n) with P(rank r) ~ r**-exponent over a random order."""
    cdf = np.cumsum(np.arange(1, n + 1, dtype=np.float64) ** -exponent)
    cdf /= cdf[-1]
    order = rng.permutation(n)

    def draw(size):
        return order[np.minimum(np.searchsorted(cdf, rng.random_sample(size), side="right"),
                                n - 1)]

    draw.order = order  # order[r]: the id of rank r
    return draw


def _unique_per_row(rows, cols, n_cols):
    keys = rows.astype(np.int64) * n_cols + cols
    keys.sort()
    keys = keys[np.concatenate([[True], keys[1:] != keys[:-1]])]
    return keys // n_cols, keys % n_cols


@validate_params(
    {
        "n_samples": [Interval(Integral, 1, None, closed="left")],
        "n_features": [Interval(Integral, 1, None, closed="left")],
        "n_labels": [Interval(Integral, 1, None, closed="left")],
        "avg_labels_per_sample": [Interval(Real, 1, None, closed="left")],
        "avg_features_per_sample": [Interval(Real, 1, None, closed="left")],
        "signature_size": [Interval(Integral, 1, None, closed="left")],
        "label_zipf_exponent": [Interval(Real, 0, None, closed="left")],
        "noise_fraction": [Interval(Real, 0, 1, closed="both")],
        "label_cluster_size": [Interval(Integral, 1, None, closed="left")],
        "cluster_shared_fraction": [Interval(Real, 0, 1, closed="both")],
        "random_state": ["random_state"],
    },
    prefer_skip_nested_validation=True,
)
def make_extreme_classification(
    n_samples=1000,
    n_features=10000,
    n_labels=1000,
    *,
    avg_labels_per_sample=3.0,
    avg_features_per_sample=75,
    signature_size=30,
    label_zipf_exponent=0.9,
    noise_fraction=0.4,
    label_cluster_size=1,
    cluster_shared_fraction=0.0,
    random_state=None,
):
    """Generate a learnable extreme multi-label problem with power-law labels.

    Label frequencies follow a Zipf law (over a random order of the labels, so
    frequent labels are not simply 0, 1, 2...). Each label owns a *signature*
    of ``signature_size`` features; a row's features are drawn from its
    labels' signatures, plus a ``noise_fraction`` of background features with
    Zipf frequencies; repeated features are merged (and the row topped up with
    background features) and each row is L2-normalised.

    Memory is O(nnz + n_labels + n_features): signatures are computed by
    hashing (label, slot, seed), never stored as a table.

    Parameters
    ----------
    n_samples, n_features, n_labels : int
        Shape of the problem.
    avg_labels_per_sample : float, default=3.0
        Mean labels per row (1 + Poisson); every row has at least one.
    avg_features_per_sample : float, default=75
        Mean non-zeros per row (Poisson, at least 1; capped at ``n_features``).
    signature_size : int, default=30
        Features owned by each label.
    label_zipf_exponent : float, default=0.9
        Exponent of the label frequency law (0: uniform).
    noise_fraction : float, default=0.4
        Share of a row's features drawn from the background.
    label_cluster_size : int, default=1
        Labels form clusters of this many by frequency rank (ranks 0 to
        ``label_cluster_size - 1``, and so on), so the labels of a cluster
        are about equally frequent.
    cluster_shared_fraction : float, default=0.0
        Share of each label's signature slots that hold its cluster's common
        features rather than its own: the labels of a cluster then look alike
        (confusable siblings, as in a label hierarchy). 0 leaves every label
        independent, and the output is then the same whatever
        ``label_cluster_size``.
    random_state : int, RandomState instance or None, default=None

    Returns
    -------
    X : scipy.sparse.csr_matrix of shape (n_samples, n_features), float32
    Y : scipy.sparse.csr_matrix of shape (n_samples, n_labels), int32

    Examples
    --------
    >>> from sksketch.datasets import make_extreme_classification
    >>> X, Y = make_extreme_classification(
    ...     n_samples=100, n_features=5000, n_labels=20000, random_state=0)
    >>> X.shape, Y.shape
    ((100, 5000), (100, 20000))
    """
    rng = check_random_state(random_state)
    n = n_samples
    seed = np.uint64(rng.randint(0, 2**31 - 1))

    n_lab = np.minimum(1 + rng.poisson(avg_labels_per_sample - 1, n), n_labels)
    draw_label = _zipf_sampler(n_labels, label_zipf_exponent, rng)
    label_rows, labels = _unique_per_row(np.repeat(np.arange(n), n_lab),
                                         draw_label(int(n_lab.sum())), n_labels)
    y_indptr = np.concatenate([[0], np.cumsum(np.bincount(label_rows, minlength=n))])

    # capped at the draw: a mean far above n_features must not size the arrays
    nnz = np.minimum(np.maximum(1, rng.poisson(avg_features_per_sample, n)), n_features)
    n_noise = rng.binomial(nnz, noise_fraction)
    n_sig = nnz - n_noise
    # signature features: a random label of the row, a random slot of its signature
    sig_rows = np.repeat(np.arange(n), n_sig)
    counts = np.diff(y_indptr)
    pick = y_indptr[sig_rows] + (rng.random_sample(sig_rows.size) * counts[sig_rows]).astype(
        np.int64
    )
    slot = rng.randint(0, signature_size, sig_rows.size).astype(np.uint64)
    owner = labels[pick].astype(np.uint64)
    n_shared = int(round(cluster_shared_fraction * signature_size))
    if n_shared > 0:
        # a cluster's common slots are owned by ids n_labels, n_labels + 1, ...
        rank = np.empty(n_labels, dtype=np.int64)
        rank[draw_label.order] = np.arange(n_labels)
        cluster = np.uint64(n_labels) + (rank[labels[pick]] // label_cluster_size).astype(
            np.uint64
        )
        owner = np.where(slot < np.uint64(n_shared), cluster, owner)
    key = owner * np.uint64(signature_size) + slot
    sig_features = (_splitmix64(key ^ (seed << np.uint64(32))) % np.uint64(n_features)).astype(
        np.int64
    )
    noise_rows = np.repeat(np.arange(n), n_noise)
    draw_noise = _zipf_sampler(n_features, 1.0, rng)
    x_rows, x_cols = _unique_per_row(
        np.concatenate([sig_rows, noise_rows]),
        np.concatenate([sig_features, draw_noise(noise_rows.size)]),
        n_features,
    )
    # Repeated draws merge; top rows up with background features so the mean
    # non-zero count stays close to ``avg_features_per_sample``.
    for _ in range(8):
        deficit = nnz - np.bincount(x_rows, minlength=n)
        if not deficit.any():
            break
        extra_rows = np.repeat(np.arange(n), deficit)
        x_rows, x_cols = _unique_per_row(
            np.concatenate([x_rows, extra_rows]),
            np.concatenate([x_cols, draw_noise(extra_rows.size)]),
            n_features,
        )
    values = rng.uniform(0.5, 1.5, x_rows.size)
    norms = np.sqrt(np.bincount(x_rows, weights=values**2, minlength=n))
    values = (values / norms[x_rows]).astype(np.float32)
    x_indptr = np.concatenate([[0], np.cumsum(np.bincount(x_rows, minlength=n))])

    X = sp.csr_matrix((values, x_cols.astype(np.int32), x_indptr.astype(np.int64)),
                      shape=(n, n_features))
    Y = sp.csr_matrix((np.ones(labels.size, dtype=np.int32), labels.astype(np.int32),
                       y_indptr.astype(np.int64)), shape=(n, n_labels))
    for M in (X, Y):
        if M.nnz < 2**31:
            M.indptr = M.indptr.astype(np.int32)
        M.has_sorted_indices = True
    return X, Y
