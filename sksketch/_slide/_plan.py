"""What a SLIDEClassifier's parameters mean for a problem of a given size.

One :class:`SLIDEPlan` answers, from the parameters and the number of labels
alone, the questions that training, inference and :meth:`estimate_memory
<sksketch.SLIDEClassifier.estimate_memory>` all ask: how many labels each
example's softmax covers, in which kernel mode they are chosen, whether the
hash tables or the label frequencies are used, and how large the tables are.
Deriving them in one place keeps the memory estimate and the model it
estimates from drifting apart.
"""

import math
from dataclasses import dataclass
from numbers import Integral, Real

from .._kernels._lsh import LSHTables, TableGeometry, table_geometry, table_nbytes

__all__ = ["SLIDEPlan", "make_plan", "resolve_count", "sized_tables"]

_LSH_MODES = ("lsh-embedding", "lsh-label")


def resolve_count(value, n_labels):
    """A label count given as an int, or as a float fraction of n_labels."""
    if isinstance(value, Real) and not isinstance(value, Integral):
        return max(1, math.ceil(value * n_labels))
    return int(value)


@dataclass(frozen=True)
class SLIDEPlan:
    """Sizes and modes implied by a SLIDEClassifier's parameters.

    Attributes
    ----------
    n_labels : int
    target : int
        Labels per example the parameters ask for (at most ``n_labels``).
    mode : str
        The kernel's negative-sampling mode: ``"full"`` whenever ``target``
        covers every label (the exact softmax), else ``negative_sampling``.
    min_active : int
        Fewest labels a retrieval may return before the fill tops it up.
    uses_lsh : bool
        Whether training queries the hash tables.
    uses_unigram : bool
        Whether training draws labels by frequency (mode or LSH padding).
    inference_lsh : bool
        Whether prediction scores only the labels the retrieval index
        (:mod:`._retrieval`) finds.
    tables : TableGeometry
        Geometry of tables in use (``n_buckets_log2`` as requested); tables
        nothing queries keep one bucket, see :attr:`idle_tables`.
    idle_tables : TableGeometry
        Geometry of tables that nothing queries yet.
    n_tables : int
    """

    n_labels: int
    target: int
    mode: str
    min_active: int
    uses_lsh: bool
    uses_unigram: bool
    inference_lsh: bool
    tables: TableGeometry
    idle_tables: TableGeometry
    n_tables: int

    def active_size(self, max_true_labels):
        """Labels an example's softmax may hold: the budget or all its true labels."""
        return max(self.target, int(max_true_labels))

    @property
    def tables_in_use(self):
        """Whether training queries the hash tables (inference has an index of its own)."""
        return self.uses_lsh

    def table_nbytes(self, n_items, in_use=True):
        """Bytes of one set of tables holding ``n_items`` ids per table."""
        geometry = self.tables if in_use else self.idle_tables
        return table_nbytes(geometry, self.n_tables, n_items)


# min_active_labels="auto": the exact softmax up to this many labels, else a
# floor of AUTO_MIN_ACTIVE labels per example (see SLIDEClassifier's docstring).
AUTO_EXACT_LABELS = 1000
AUTO_MIN_ACTIVE = 256


def min_active_labels(params, n_labels):
    """``min_active_labels`` as a count for ``n_labels`` labels."""
    if params.min_active_labels == "auto":
        return n_labels if n_labels <= AUTO_EXACT_LABELS else AUTO_MIN_ACTIVE
    return params.min_active_labels


def make_plan(params, n_labels):
    """The :class:`SLIDEPlan` of an estimator's parameters for ``n_labels`` labels.

    ``params`` is the estimator itself (its parameters are read, not its
    fitted state), so the plan of an unfitted estimator is that of the
    model its ``fit`` would build.
    """
    L = int(n_labels)
    if params.negative_sampling == "full":
        target = L
    else:
        budget = resolve_count(params.max_active_labels, L)
        target = min(L, max(budget, min_active_labels(params, L), 1))
    full = target >= L
    uses_lsh = params.negative_sampling in _LSH_MODES and not full
    if full:
        mode, min_active = "full", L
    elif uses_lsh:
        mode, min_active = params.negative_sampling, min(min_active_labels(params, L), L)
    else:
        mode, min_active = params.negative_sampling, target
    uses_unigram = params.negative_sampling == "unigram" or (
        params.negative_fill == "unigram" and params.negative_sampling in _LSH_MODES
    )
    args = (params.hash_family, params.hidden_layer_size, params.n_hashes_per_table,
            params.n_tables)
    return SLIDEPlan(
        n_labels=L,
        target=target,
        mode=mode,
        min_active=min_active,
        uses_lsh=uses_lsh,
        uses_unigram=uses_unigram,
        inference_lsh=params.inference == "lsh",
        tables=table_geometry(*args, params.n_buckets_log2),
        idle_tables=table_geometry(*args, 1),
        n_tables=params.n_tables,
    )


def sized_tables(tables, plan):
    """`tables`, or their twin with the bucket count `plan` asks of tables in use.

    Bucket offsets take 4 bytes per bucket and table even when the tables are
    empty (52 MB with the defaults), so a model whose training never queries
    them (a negative sampler without LSH, or a budget covering every label)
    keeps one bucket per table until a first use. The twin has the same hash
    functions: they depend on the seed, not on the number of buckets.
    """
    wanted = plan.tables.n_buckets_log2
    if tables.n_buckets_log2 >= wanted or tables.n_items or tables.n_rebuilds:
        return tables
    return LSHTables(
        tables.family_name,
        tables.dim,
        tables.n_hashes_per_table,
        tables.n_tables,
        bucket_capacity=tables.bucket_capacity,
        policy=tables.policy_name,
        n_buckets_log2=wanted,
        seed=tables.seed,
    )
