"""Plots of training progress: loss and validation curves, precision against time.

The functions draw with matplotlib, an optional dependency (``pip install
"sksketch[plot]"``); importing this module does not need it.
"""

import time
from numbers import Integral

import numpy as np

__all__ = ["plot_precision_vs_time", "plot_training_curves", "training_history"]


def _pyplot():
    try:
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError(
            "sksketch.plot needs matplotlib: pip install \"sksketch[plot]\""
        ) from None
    return plt


def _named(items, what):
    """``{name: item}`` from one item, a list of items or a dict."""
    if isinstance(items, dict):
        if not items:
            raise ValueError(f"{what} is empty")
        return dict(items)
    if isinstance(items, (list, tuple)):
        if not items:
            raise ValueError(f"{what} is empty")
        return {_label(item, i): item for i, item in enumerate(items)}
    return {_label(items, 0): items}


def _label(item, i):
    name = type(item).__name__
    return name if name != "dict" else f"run {i + 1}"


def plot_training_curves(estimators, *, ax=None, log_loss=False):
    """Draw the training loss per epoch, and the validation score when kept.

    Parameters
    ----------
    estimators : estimator, list of estimators or dict
        Fitted estimators with a ``loss_curve_`` (and, with early stopping, a
        ``validation_scores_``); a dict maps legend names to estimators.
    ax : matplotlib Axes, default=None
        Where to draw the loss; a new figure when None. Validation scores, if
        any estimator has them, go on a twin axis on the right.
    log_loss : bool, default=False
        Logarithmic loss axis.

    Returns
    -------
    axes : list of matplotlib Axes
        The loss axis, then the validation axis when drawn.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from sksketch import SLIDEClassifier
    >>> from sksketch.datasets import make_extreme_classification
    >>> from sksketch.plot import plot_training_curves
    >>> X, Y = make_extreme_classification(500, 200, 50, random_state=0)
    >>> clf = SLIDEClassifier(hidden_layer_size=16, max_iter=3, random_state=0).fit(X, Y)
    >>> axes = plot_training_curves({"SLIDE": clf})
    >>> len(axes[0].lines)
    1
    """
    named = _named(estimators, "estimators")
    for name, est in named.items():
        if not hasattr(est, "loss_curve_"):
            raise ValueError(f"{name!r} has no loss_curve_: fit it first")
    plt = _pyplot()
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4))
    axes = [ax]
    val_ax = None
    for i, (name, est) in enumerate(named.items()):
        color = f"C{i % 10}"
        epochs = np.arange(1, len(est.loss_curve_) + 1)
        ax.plot(epochs, est.loss_curve_, marker="o", color=color, label=f"{name} loss")
        scores = getattr(est, "validation_scores_", None)
        if scores:
            if val_ax is None:
                val_ax = ax.twinx()
                val_ax.set_ylabel("validation score")
                axes.append(val_ax)
            val_ax.plot(np.arange(1, len(scores) + 1), scores, linestyle="--", marker="s",
                        color=color, label=f"{name} validation")
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss")
    if log_loss:
        ax.set_yscale("log")
    handles, labels = [], []
    for a in axes:
        h, lab = a.get_legend_handles_labels()
        handles += h
        labels += lab
    ax.legend(handles, labels, loc="best")
    ax.grid(True, alpha=0.3)
    return axes


def training_history(estimator, X, y, X_val, y_val, *, n_epochs, k=(1, 5), classes=None):
    """Train with ``partial_fit`` epoch by epoch, recording time, loss and P@k.

    Evaluation time is not counted in the recorded training time, so histories
    of different estimators compare their training speed.

    Parameters
    ----------
    estimator : estimator with ``partial_fit`` and ``predict_topk``
        Trained in place (an unfitted one starts from scratch).
    X, y : training data (``y`` class labels or an indicator matrix)
    X_val, y_val : held-out data for precision at k
    n_epochs : int
        Epochs (``partial_fit`` calls) to run.
    k : int or tuple of int, default=(1, 5)
        Ranks at which to record precision.
    classes : array-like, default=None
        Passed to ``partial_fit`` (needed for class labels).

    Returns
    -------
    history : dict of lists
        ``"epoch"``, ``"time"`` (cumulative training seconds), ``"loss"``,
        and ``"P@k"`` for each k; one entry per epoch.

    Examples
    --------
    >>> from sksketch import SLIDEClassifier
    >>> from sksketch.datasets import make_extreme_classification
    >>> from sksketch.plot import training_history
    >>> X, Y = make_extreme_classification(600, 200, 50, random_state=0)
    >>> clf = SLIDEClassifier(hidden_layer_size=16, random_state=0)
    >>> history = training_history(clf, X[:500], Y[:500], X[500:], Y[500:], n_epochs=2)
    >>> sorted(history)
    ['P@1', 'P@5', 'epoch', 'loss', 'time']
    >>> history["epoch"]
    [1, 2]
    """
    from .metrics import make_topk_scorer

    ks = (k,) if isinstance(k, Integral) else tuple(k)
    if not ks or any(not isinstance(v, Integral) or v < 1 for v in ks):
        raise ValueError(f"k must be a positive integer or a tuple of them, got {k!r}")
    if not isinstance(n_epochs, Integral) or n_epochs < 1:
        raise ValueError(f"n_epochs must be a positive integer, got {n_epochs!r}")
    scorers = {v: make_topk_scorer("precision", k=v) for v in ks}
    history = {"epoch": [], "time": [], "loss": [], **{f"P@{v}": [] for v in ks}}
    seconds = 0.0
    for epoch in range(1, n_epochs + 1):
        started = time.perf_counter()
        if classes is None:
            estimator.partial_fit(X, y)
        else:
            estimator.partial_fit(X, y, classes=classes)
        seconds += time.perf_counter() - started
        history["epoch"].append(epoch)
        history["time"].append(seconds)
        curve = getattr(estimator, "loss_curve_", None)
        history["loss"].append(float(curve[-1]) if curve else float("nan"))
        for v, scorer in scorers.items():
            history[f"P@{v}"].append(scorer(estimator, X_val, y_val))
    return history


def plot_precision_vs_time(histories, *, k=1, ax=None, log_time=False):
    """Draw precision at k against training time, one line per run.

    Parameters
    ----------
    histories : dict
        Legend name -> history, as returned by :func:`training_history` (any
        dict with a ``"time"`` list and a ``"P@k"`` list of the same length).
    k : int, default=1
        Which precision to draw.
    ax : matplotlib Axes, default=None
        Where to draw; a new figure when None.
    log_time : bool, default=False
        Logarithmic time axis (runs of very different speeds).

    Returns
    -------
    ax : matplotlib Axes

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from sksketch.plot import plot_precision_vs_time
    >>> ax = plot_precision_vs_time({"fast": {"time": [1, 2], "P@1": [0.2, 0.3]},
    ...                              "slow": {"time": [5, 10], "P@1": [0.25, 0.35]}})
    >>> [line.get_label() for line in ax.lines]
    ['fast', 'slow']
    """
    if not isinstance(histories, dict) or not histories:
        raise ValueError("histories must be a non-empty dict of name -> history")
    key = f"P@{k}"
    for name, history in histories.items():
        if "time" not in history or key not in history:
            raise ValueError(f"history {name!r} has no 'time' or {key!r} entry")
        if len(history["time"]) != len(history[key]):
            raise ValueError(f"history {name!r}: 'time' and {key!r} differ in length")
    plt = _pyplot()
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4))
    for i, (name, history) in enumerate(histories.items()):
        ax.plot(history["time"], history[key], marker="o", color=f"C{i % 10}", label=name)
    ax.set_xlabel("training time (s)")
    ax.set_ylabel(f"precision@{k}")
    if log_time:
        ax.set_xscale("log")
    ax.legend(loc="best")
    ax.grid(True, alpha=0.3)
    return ax
