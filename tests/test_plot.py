"""sksketch.plot: training curves and precision against time (Agg backend)."""

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from sksketch import SLIDEClassifier  # noqa: E402
from sksketch.datasets import make_extreme_classification  # noqa: E402
from sksketch.plot import (  # noqa: E402
    plot_precision_vs_time,
    plot_training_curves,
    training_history,
)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def data():
    X, Y = make_extreme_classification(900, 300, 60, avg_labels_per_sample=1, random_state=0)
    return X[:700], Y[:700], X[700:], Y[700:]


def test_training_curves_draw_the_loss_and_validation(data, tmp_path):
    X, Y, _, _ = data
    plain = SLIDEClassifier(hidden_layer_size=16, max_iter=4, tol=0, random_state=0).fit(X, Y)
    stopped = SLIDEClassifier(hidden_layer_size=16, max_iter=4, tol=0, early_stopping=True,
                              random_state=0).fit(X, Y)
    axes = plot_training_curves({"plain": plain, "early stopping": stopped})
    assert len(axes) == 2
    loss_lines, val_lines = axes[0].lines, axes[1].lines
    assert [line.get_label() for line in loss_lines] == ["plain loss", "early stopping loss"]
    np.testing.assert_allclose(loss_lines[0].get_ydata(), plain.loss_curve_)
    np.testing.assert_allclose(val_lines[0].get_ydata(), stopped.validation_scores_)
    assert list(loss_lines[0].get_xdata()) == [1, 2, 3, 4]
    legend = [t.get_text() for t in axes[0].get_legend().get_texts()]
    assert legend == ["plain loss", "early stopping loss", "early stopping validation"]
    axes[0].figure.savefig(tmp_path / "curves.png")
    assert (tmp_path / "curves.png").stat().st_size > 1000


def test_training_curves_on_a_given_axis_without_validation(data):
    X, Y, _, _ = data
    clf = SLIDEClassifier(hidden_layer_size=16, max_iter=2, random_state=0).fit(X, Y)
    _, ax = plt.subplots()
    axes = plot_training_curves(clf, ax=ax, log_loss=True)
    assert axes == [ax] and ax.get_yscale() == "log"
    assert ax.lines[0].get_label() == "SLIDEClassifier loss"


def test_training_curves_need_fitted_estimators():
    with pytest.raises(ValueError, match="fit it first"):
        plot_training_curves(SLIDEClassifier())
    with pytest.raises(ValueError, match="empty"):
        plot_training_curves({})


def test_history_records_time_loss_and_precision(data):
    X, Y, Xv, Yv = data
    clf = SLIDEClassifier(hidden_layer_size=16, learning_rate=0.01, random_state=0)
    history = training_history(clf, X, Y, Xv, Yv, n_epochs=4, k=(1, 3))
    assert history["epoch"] == [1, 2, 3, 4]
    assert np.all(np.diff(history["time"]) > 0)
    assert history["loss"] == clf.loss_curve_
    assert all(0 <= p <= 1 for p in history["P@1"] + history["P@3"])
    assert history["P@1"][-1] > history["P@1"][0]
    # the same numbers as scoring the final model directly
    from sksketch.metrics import make_topk_scorer

    assert history["P@3"][-1] == make_topk_scorer("precision", k=3)(clf, Xv, Yv)


def test_history_with_class_labels(data):
    X, Y, Xv, Yv = data
    y = np.asarray(Y.argmax(axis=1)).ravel()
    yv = np.asarray(Yv.argmax(axis=1)).ravel()
    clf = SLIDEClassifier(hidden_layer_size=16, random_state=0)
    history = training_history(clf, X, y, Xv, yv, n_epochs=2, k=1, classes=np.arange(60))
    assert list(history) == ["epoch", "time", "loss", "P@1"]


def test_precision_vs_time_draws_each_run(data):
    X, Y, Xv, Yv = data
    runs = {
        "SLIDE": training_history(SLIDEClassifier(hidden_layer_size=16, random_state=0),
                                  X, Y, Xv, Yv, n_epochs=2, k=1),
        "exact softmax": training_history(
            SLIDEClassifier(hidden_layer_size=16, min_active_labels=60, random_state=0),
            X, Y, Xv, Yv, n_epochs=2, k=1),
    }
    ax = plot_precision_vs_time(runs, k=1, log_time=True)
    assert [line.get_label() for line in ax.lines] == ["SLIDE", "exact softmax"]
    for line, history in zip(ax.lines, runs.values(), strict=True):
        np.testing.assert_allclose(line.get_xdata(), history["time"])
        np.testing.assert_allclose(line.get_ydata(), history["P@1"])
    assert ax.get_xscale() == "log" and ax.get_ylabel() == "precision@1"


@pytest.mark.parametrize("histories, message", [
    ({}, "non-empty"),
    ({"a": {"time": [1]}}, "no 'time' or 'P@1'"),
    ({"a": {"time": [1, 2], "P@1": [0.1]}}, "differ in length"),
])
def test_precision_vs_time_rejects_bad_histories(histories, message):
    with pytest.raises(ValueError, match=message):
        plot_precision_vs_time(histories)


def test_history_rejects_bad_arguments(data):
    X, Y, Xv, Yv = data
    with pytest.raises(ValueError, match="n_epochs"):
        training_history(SLIDEClassifier(), X, Y, Xv, Yv, n_epochs=0)
    with pytest.raises(ValueError, match="k must"):
        training_history(SLIDEClassifier(), X, Y, Xv, Yv, n_epochs=1, k=(0,))
