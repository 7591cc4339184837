"""SLIDEClassifier, in layers.

- ``_estimator``: the estimator (parameters, validation, the scikit-learn contract);
- ``_trainer``: :class:`SLIDETrainer`, what one ``fit`` / ``partial_fit`` call does
  (initialisation, hash-table schedule, the kernels' workspace, epochs);
- ``_inference``: scoring (full and LSH), top-k, the sparse head's weight choice;
- ``_plan``: :class:`SLIDEPlan`, the sizes and modes the parameters imply, read by
  training, inference and the memory estimate;
- ``_sparse_head``, ``_negative_sampling``, ``_targets``, ``_memory``,
  ``_state_checks``: the sparse head, log-q inclusion probabilities, target
  encoding, memory by part, and the checks of a restored state.

The compiled kernels are in :mod:`sksketch._kernels._network`.
"""

from ._estimator import SLIDEClassifier

__all__ = ["SLIDEClassifier"]
