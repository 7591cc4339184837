"""Base classes shared by sksketch estimators.

Fitted sksketch models hold arrays whose layout belongs to one release series
(hash-table buckets, optimiser moments, bfloat16 copies). A pickle therefore
records the sksketch version that wrote it, and loading it in a release with a
different layout fails with a clear message instead of producing silently
wrong predictions.

Compatibility rule: a model loads in any sksketch release with the same
``major.minor`` version as the one that saved it (patch releases and
development builds of a series share one layout). Loading across a different
``major.minor`` raises :class:`IncompatibleVersionError`; setting the
environment variable ``SKSKETCH_ALLOW_VERSION_MISMATCH=1`` turns the error into
an :class:`InconsistentVersionWarning` for users who accept the risk.

:func:`sksketch.save` writes a model as data only (arrays and JSON in one
``.npz`` file) that :func:`sksketch.load` reads without unpickling, under the
same compatibility rule.

Unpickling and :func:`sksketch.load` run the same checks of the rebuilt state,
each class's own ``_check_state``: a state that would break the model (arrays
of the wrong shape, ids out of range) raises :class:`ValueError` naming the
attribute, before any compiled kernel sees it.
"""

import os
import re
import warnings

from ._safe_io import save as _save
from ._state import VERSION_KEY as _VERSION_KEY
from ._version import __version__

__all__ = ["IncompatibleVersionError", "InconsistentVersionWarning", "VersionedStateMixin"]

_ALLOW_ENV = "SKSKETCH_ALLOW_VERSION_MISMATCH"


class IncompatibleVersionError(ValueError):
    """A pickled model was saved by an incompatible sksketch version.

    Examples
    --------
    >>> from sksketch.base import IncompatibleVersionError
    >>> issubclass(IncompatibleVersionError, ValueError)
    True
    """


class InconsistentVersionWarning(UserWarning):
    """A model from another sksketch series was loaded on request.

    Issued instead of :class:`IncompatibleVersionError` when
    ``SKSKETCH_ALLOW_VERSION_MISMATCH=1`` is set.

    Examples
    --------
    >>> from sksketch.base import InconsistentVersionWarning
    >>> issubclass(InconsistentVersionWarning, UserWarning)
    True
    """


def _series(version):
    """``(major, minor)`` of a version string, or None when it has none."""
    match = re.match(r"\s*(\d+)\.(\d+)", str(version))
    return None if match is None else (int(match.group(1)), int(match.group(2)))


def _check_compatible(saved, current, name):
    if saved is not None and _series(saved) is not None and _series(saved) == _series(current):
        return
    saved_text = "an unknown sksketch version" if saved is None else f"sksketch {saved}"
    message = (
        f"This {name} was saved with {saved_text} and cannot be loaded with sksketch "
        f"{current}: models load only within the same major.minor release series. "
        f"Install sksketch=={saved if saved is not None else '<the saving version>'} "
        f"to load it, or retrain it with sksketch {current}. Set "
        f"{_ALLOW_ENV}=1 to load it anyway at your own risk."
    )
    if os.environ.get(_ALLOW_ENV, "") not in ("", "0"):
        warnings.warn(message, InconsistentVersionWarning, stacklevel=3)
        return
    raise IncompatibleVersionError(message)


class VersionedStateMixin:
    """Stamp pickles with the sksketch version; check it and the state on loading.

    Put it left of :class:`sklearn.base.BaseEstimator` in an estimator's bases;
    it cooperates with scikit-learn's own ``__getstate__``/``__setstate__``
    through ``super()``. After restoring a state, ``__setstate__`` calls the
    class's ``_check_state``, which :func:`sksketch.load` runs too.

    Examples
    --------
    >>> import pickle
    >>> import sksketch
    >>> from sksketch import SLIDEClassifier
    >>> clf = SLIDEClassifier(n_tables=4)
    >>> clf.__getstate__()["_sksketch_version"] == sksketch.__version__
    True
    >>> pickle.loads(pickle.dumps(clf)).get_params()["n_tables"]
    4

    A state that would break the model is refused:

    >>> from sklearn.datasets import make_classification
    >>> X, y = make_classification(60, 8, n_informative=4, n_classes=3, random_state=0)
    >>> clf = SLIDEClassifier(hidden_layer_size=8, n_tables=2, max_iter=1, random_state=0)
    >>> state = clf.fit(X, y).__getstate__()
    >>> state["output_bias_"] = state["output_bias_"][:2]
    >>> SLIDEClassifier.__new__(SLIDEClassifier).__setstate__(state)
    Traceback (most recent call last):
    ...
    sksketch._state.StateError: SLIDEClassifier: output_bias_ has shape (2,), expected (3,)
    """

    def __getstate__(self):
        state = super().__getstate__()
        if state is None:
            state = self.__dict__.copy()
        return dict(state.items(), **{_VERSION_KEY: __version__})

    def __setstate__(self, state):
        state = dict(state)
        saved = state.pop(_VERSION_KEY, None)
        _check_compatible(saved, __version__, type(self).__name__)
        super().__setstate__(state)
        self._check_state()

    @classmethod
    def _check_saved_version(cls, saved):
        """Refuse (or, on request, warn about) a state saved by another release series."""
        _check_compatible(saved, __version__, cls.__name__)

    def _check_state(self):
        """Raise :class:`sksketch._state.StateError` if the restored state would break the model.

        Run after unpickling and by :func:`sksketch.load`. Subclasses check
        what their kernels and training rely on: dtypes and shapes that must
        agree, ids in range, the types of the objects they hold.
        """

    def save(self, path, *, compress=False):
        """Save this model to one ``.npz`` file that :func:`sksketch.load` reads without pickle.

        Same as ``sksketch.save(self, path, compress=compress)``.

        Parameters
        ----------
        path : str, path-like or binary file object
            Where to write; the file is overwritten.
        compress : bool, default=False
            Deflate the file's members.

        Examples
        --------
        >>> import io
        >>> import sksketch
        >>> buffer = io.BytesIO()
        >>> sksketch.SLIDEClassifier(n_tables=4).save(buffer)
        >>> _ = buffer.seek(0)
        >>> sksketch.load(buffer).n_tables
        4
        """
        _save(self, path, compress=compress)


class _EpochStoppingMixin:
    """The stopping rule of the epoch loops (``tol``, ``n_iter_no_change``).

    With ``early_stopping``, an epoch improves when its validation score
    (last of ``validation_scores_``) beats the best one by more than ``tol``;
    otherwise when its training loss is below the best one by more than
    ``tol``. Training stops after ``n_iter_no_change`` epochs without
    improvement, as in scikit-learn's ``MLPClassifier``. The estimator resets
    ``best_validation_score_``, ``_best_loss`` and ``_no_improvement_count``
    when a fit starts.
    """

    def _should_stop(self, loss):
        if self.early_stopping:
            score = self.validation_scores_[-1]
            improved = score > self.best_validation_score_ + self.tol
            self.best_validation_score_ = max(self.best_validation_score_, score)
        else:
            improved = loss < self._best_loss - self.tol
            self._best_loss = min(self._best_loss, loss)
        self._no_improvement_count = 0 if improved else self._no_improvement_count + 1
        if self._no_improvement_count >= self.n_iter_no_change:
            if self.verbose:
                print(
                    f"No improvement of at least tol={self.tol} for "
                    f"{self.n_iter_no_change} consecutive epochs. Stopping."
                )
            return True
        return False
