"""fit_epochs: the epochs of every estimator's fit and partial_fit, and of the command."""

import warnings

import numpy as np
import pytest
from sklearn.datasets import make_classification
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import SGDClassifier

from sksketch import ImportanceSampledClassifier, SLIDEClassifier, ZeroShotSoftLabelClassifier
from sksketch.base import _EpochStoppingMixin
from sksketch.sampling import UniformSampler
from sksketch.sampling._loop import fit_epochs


class _Recorder(_EpochStoppingMixin):
    """The state an estimator's fit gives the loop."""

    def __init__(self, early_stopping=False, tol=1e-4, n_iter_no_change=2, verbose=0):
        self.early_stopping = early_stopping
        self.tol = tol
        self.n_iter_no_change = n_iter_no_change
        self.verbose = verbose
        self.n_iter_ = 0
        self.loss_curve_ = []
        self.validation_scores_ = [] if early_stopping else None
        self.best_validation_score_ = -np.inf
        self._best_loss = np.inf
        self._no_improvement_count = 0


class _Finishing(UniformSampler):
    n_finished = 0

    def finish(self):
        self.n_finished += 1
        return super().finish()


def _epochs(losses):
    it = iter(losses)
    return lambda: next(it)


def test_records_epochs_and_reports_each_one():
    est = _Recorder()
    reports = []
    seconds = fit_epochs(
        _epochs([3.0, 2.0, 1.0]), n_epochs=3, n_samples=10, estimator=est,
        on_epoch=reports.append,
    )
    assert est.n_iter_ == 3 and est.loss_curve_ == [3.0, 2.0, 1.0]
    assert [(r.epoch, r.loss, r.validation_score) for r in reports] == [
        (1, 3.0, None), (2, 2.0, None), (3, 1.0, None)
    ]
    assert seconds == pytest.approx(sum(r.seconds for r in reports))


def test_finishes_the_sampler_when_an_epoch_raises():
    sampler = _Finishing().start(np.zeros((4, 2), np.float32), loss_fn=lambda i: i)
    est = _Recorder()

    def train_epoch():
        if est.n_iter_ == 1:
            raise RuntimeError("the second epoch fails")
        return 1.0

    with pytest.raises(RuntimeError, match="second epoch"):
        fit_epochs(train_epoch, n_epochs=3, n_samples=4, estimator=est, sampler=sampler)
    assert sampler.n_finished == 1
    assert sampler._X is None and sampler._loss_fn is None
    assert est.loss_curve_ == [1.0]


def test_finishes_the_sampler_after_the_last_epoch():
    sampler = _Finishing().start(np.zeros((4, 2), np.float32))
    fit_epochs(_epochs([1.0]), n_epochs=1, n_samples=4, sampler=sampler)
    assert sampler.n_finished == 1


def test_warns_about_convergence_at_the_callers_line():
    est = _Recorder(tol=0.1)
    with pytest.warns(ConvergenceWarning, match=r"maximum iterations \(3\)") as record:
        fit_epochs(_epochs([3.0, 2.0, 1.0]), n_epochs=3, n_samples=1, estimator=est,
                   stopping=True)
    assert record[0].filename == __file__


@pytest.mark.parametrize("n_epochs, stopping", [(3, False), (1, True)])
def test_no_convergence_warning_without_stopping_or_for_one_epoch(n_epochs, stopping):
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        fit_epochs(_epochs([3.0, 2.0, 1.0]), n_epochs=n_epochs, n_samples=1,
                   estimator=_Recorder(), stopping=stopping)


def test_stops_when_the_loss_stops_improving(capsys):
    est = _Recorder(tol=0.1, n_iter_no_change=2, verbose=1)
    sampler = _Finishing().start(np.zeros((4, 2), np.float32))
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        fit_epochs(_epochs([3.0, 2.0, 1.95, 1.92, 0.5, 0.1]), n_epochs=6, n_samples=4,
                   estimator=est, sampler=sampler, stopping=True)
    assert est.loss_curve_ == [3.0, 2.0, 1.95, 1.92]
    assert sampler.n_finished == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("Iteration 1, loss = 3.000000, ")
    assert lines[0].endswith(" samples/s")
    assert lines[-1] == "No improvement of at least tol=0.1 for 2 consecutive epochs. Stopping."


def test_ends_when_training_is_done_without_a_warning():
    est = _Recorder(tol=0.0, n_iter_no_change=10)
    reports = []
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        fit_epochs(_epochs([3.0, 2.0, 1.0, 0.5]), n_epochs=4, n_samples=1, estimator=est,
                   stopping=True, on_epoch=reports.append, done=lambda: est.n_iter_ == 2)
    assert est.loss_curve_ == [3.0, 2.0] and len(reports) == 2


def test_early_stopping_follows_the_validation_score(capsys):
    est = _Recorder(early_stopping=True, tol=0.01, n_iter_no_change=2, verbose=1)
    scores = iter([0.5, 0.6, 0.6, 0.6, 0.9])
    reports = []
    fit_epochs(_epochs([5.0, 4.0, 3.0, 2.0, 1.0]), n_epochs=5, n_samples=4, estimator=est,
               score_validation=lambda: next(scores), score_name="validation P@1",
               stopping=True, on_epoch=reports.append)
    assert est.validation_scores_ == [0.5, 0.6, 0.6, 0.6]
    assert est.best_validation_score_ == 0.6
    assert [r.validation_score for r in reports] == [0.5, 0.6, 0.6, 0.6]
    assert capsys.readouterr().out.splitlines()[0].endswith(", validation P@1 = 0.5000")


def test_without_an_estimator_records_nothing():
    reports = []
    fit_epochs(_epochs([2.0, 1.0]), n_epochs=2, n_samples=1, on_epoch=reports.append)
    assert [r.loss for r in reports] == [2.0, 1.0]


# ----------------------------------------------------------- in the estimators


@pytest.mark.parametrize("make", [
    lambda: ZeroShotSoftLabelClassifier(hidden_layer_sizes=(8,), max_iter=3, random_state=0),
    lambda: SLIDEClassifier(hidden_layer_size=8, max_iter=3, tol=0, random_state=0),
], ids=["zeroshot", "slide"])
def test_estimator_convergence_warning_points_at_the_users_call(make):
    X, y = make_classification(200, 8, n_informative=4, n_classes=3, random_state=0)
    clf = make()
    with pytest.warns(ConvergenceWarning) as record:
        clf.fit(X, y)
    assert [w.filename for w in record] == [__file__]


class _FailingSGD(SGDClassifier):
    """Fails on its fourth step, in the second epoch of a four-batch fit."""

    def partial_fit(self, X, y, classes=None, sample_weight=None):
        self.n_steps_ = getattr(self, "n_steps_", 0) + 1
        if self.n_steps_ == 4:
            raise RuntimeError("step failed")
        return super().partial_fit(X, y, classes=classes, sample_weight=sample_weight)


@pytest.mark.parametrize("sampler", ["uniform", "nw-sketch", "exact-loss"])
def test_importance_fit_lets_go_of_the_data_when_a_step_fails(sampler):
    X, y = make_classification(60, 6, random_state=0)
    clf = ImportanceSampledClassifier(
        _FailingSGD(loss="log_loss"), sampler=sampler, batch_size=20, max_iter=3, random_state=0
    )
    with pytest.raises(RuntimeError, match="step failed"):
        clf.fit(X, y)
    assert clf.sampler_._X is None and clf.sampler_._loss_fn is None
    assert clf.n_iter_ == 1 and len(clf.loss_curve_) == len(clf.epoch_time_) == 1


def test_zeroshot_fit_lets_go_of_the_data_when_an_epoch_fails(monkeypatch):
    X, y = make_classification(100, 6, n_informative=4, n_classes=3, random_state=0)
    clf = ZeroShotSoftLabelClassifier(
        hidden_layer_sizes=(8,), max_iter=3, sampler="nw-sketch", random_state=0
    )

    def fail(*args, **kwargs):
        raise RuntimeError("step failed")

    monkeypatch.setattr(clf, "_train_batch", fail)
    with pytest.raises(RuntimeError, match="step failed"):
        clf.fit(X, y)
    assert clf.sampler_._X is None and clf.sampler_._loss_fn is None
