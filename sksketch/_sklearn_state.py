"""The scikit-learn estimators an ImportanceSampledClassifier may wrap, in model files.

:func:`sksketch.load` rebuilds a wrapped :class:`~sklearn.linear_model.SGDClassifier`
or :class:`~sklearn.neural_network.MLPClassifier` (and the parts they hold)
from a model file, and ImportanceSampledClassifier runs the same checks on an
unpickled ``estimator_``. The checks read public attributes, except for the
few private attributes that ``partial_fit`` (the only way the wrapper trains
its estimator) takes from a fitted estimator into compiled code or into its
optimiser. Every private name is in this module, and
``tests/test_safe_persistence.py`` pins them against the installed scikit-learn.

Private state the checks leave alone, because ``partial_fit`` never reads it
from a restored estimator: SGDClassifier's ``_expanded_class_weight`` and
``_loss_function_`` (recomputed by every call) and MLPClassifier's
``_best_coefs`` and ``_best_intercepts`` (read only by ``fit`` with
``early_stopping``, which ``partial_fit`` refuses).
"""

import importlib

from sklearn.linear_model import SGDClassifier
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import LabelBinarizer

from ._state import (
    F32,
    F64,
    allow_in_model_files,
    attr_array,
    attr_integer,
    check_layers,
    check_like,
    expect,
    fail,
)

__all__ = []

# What SGDClassifier(average=...).partial_fit trains from, in compiled code:
# each must be as long as coef_ (coefficients) or have one value per output
# (intercepts).
SGD_AVERAGED_COEFS = ("_standard_coef", "_average_coef")
SGD_AVERAGED_INTERCEPTS = ("_standard_intercept", "_average_intercept")
# The optimiser MLPClassifier.partial_fit keeps between calls, and its
# per-parameter arrays by optimiser class.
MLP_OPTIMIZER = "_optimizer"
MLP_OPTIMIZER_MODULE = "sklearn.neural_network._stochastic_optimizers"
MLP_OPTIMIZER_ARRAYS = {"AdamOptimizer": ("ms", "vs"), "SGDOptimizer": ("velocities",)}


def _optimizer_classes():
    """MLPClassifier's optimiser classes; none when scikit-learn has moved them.

    Without them an MLPClassifier that has trained cannot be saved as data
    (sksketch.save raises TypeError), but sksketch still imports.
    """
    try:
        module = importlib.import_module(MLP_OPTIMIZER_MODULE)
        return [getattr(module, name) for name in MLP_OPTIMIZER_ARRAYS]
    except (ImportError, AttributeError):
        return []


def _check_sgd(est):
    if getattr(est, "coef_", None) is None:
        return
    n_features = attr_integer(est, "n_features_in_", 1)
    n_classes = len(attr_array(est, "classes_", None, (None,), contiguous=False))
    k = 1 if n_classes == 2 else n_classes
    coef = attr_array(est, "coef_", (F64, F32), (k, n_features))
    attr_array(est, "intercept_", (coef.dtype.name,), (k,))
    for name in SGD_AVERAGED_COEFS:
        value = attr_array(est, name, (coef.dtype.name,), None, optional=True)
        if value is not None and (value.size != coef.size or value.ndim not in (1, 2)):
            fail(est, f"{name} has shape {value.shape}, coef_ has {coef.shape}")
    for name in SGD_AVERAGED_INTERCEPTS:
        attr_array(est, name, (coef.dtype.name,), (k,), optional=True)


def _check_mlp(est):
    if not hasattr(est, "coefs_"):
        return
    n_features = attr_integer(est, "n_features_in_", 1)
    width = check_layers(est, n_features, (F32, F64), False)
    if getattr(est, "n_outputs_", None) != width:
        fail(est, f"n_outputs_ is {getattr(est, 'n_outputs_', None)!r}, the network has {width}")
    params = est.coefs_ + est.intercepts_
    optimizer = getattr(est, MLP_OPTIMIZER, None)
    for name in MLP_OPTIMIZER_ARRAYS.get(type(optimizer).__name__, ()):
        if hasattr(optimizer, name):
            check_like(est, f"{MLP_OPTIMIZER}.{name}", getattr(optimizer, name), params, False)


def _precheck_loss(args, state, path):
    expect(len(args) <= 1 and all(type(a) in (float, int) for a in args) and state is None,
           f"{path}: invalid loss function arguments")


def _allow():
    allow_in_model_files(SGDClassifier, check=_check_sgd)
    allow_in_model_files(MLPClassifier, check=_check_mlp)
    allow_in_model_files(LabelBinarizer)
    for cls in _optimizer_classes():
        allow_in_model_files(cls, kind="object")
    # the loss objects in an SGDClassifier's state (partial_fit replaces them)
    for cls in {spec[0] for spec in SGDClassifier.loss_functions.values()}:
        allow_in_model_files(cls, kind="reduce", precheck=_precheck_loss)


_allow()
