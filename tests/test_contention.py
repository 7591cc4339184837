"""Training threads that follow the cores other processes leave free."""

import numpy as np
import pytest

import sksketch
import sksketch._slide._trainer as trainer_module
from sksketch import SLIDEClassifier
from sksketch.datasets import make_extreme_classification
from sksketch.utils._threads import ADAPTIVE_THREADS_ENV_VAR, CoreContention


def _write_stat(folder, cpu_ticks, own_ticks, running=None):
    """Fake /proc/stat (one line per core) and /proc/self/stat files.

    `running`: the ``procs_running`` line's count (no such line if None).
    """
    lines = ["cpu  " + " ".join(["0"] * 10)]
    for i, (busy, idle) in enumerate(cpu_ticks):
        # user nice system idle iowait irq softirq steal guest guest_nice
        lines.append(f"cpu{i} {busy} 0 0 {idle} 0 0 0 0 0 0")
    lines += ["intr 1 2 3", "ctxt 9"]
    if running is not None:
        lines += [f"procs_running {running}", "procs_blocked 0"]
    (folder / "stat").write_text("\n".join(lines) + "\n")
    # the command name may hold spaces and parentheses; utime and stime are
    # the 14th and 15th fields
    fields = ["S"] + ["0"] * 10 + [str(own_ticks), "0"] + ["0"] * 30
    (folder / "self_stat").write_text("123 (a (b) c) " + " ".join(fields) + "\n")


def _write_tasks(folder, states):
    """Fake /proc/self/task: one thread per state letter."""
    for i, state in enumerate(states):
        (folder / "task" / str(100 + i)).mkdir(parents=True, exist_ok=True)
        (folder / "task" / str(100 + i) / "stat").write_text(f"{100 + i} (py thr) {state} 1 2 3\n")


def _contention(tmp_path, cpus=(0, 1)):
    return CoreContention(str(tmp_path / "stat"), str(tmp_path / "self_stat"), set(cpus),
                          task_dir=str(tmp_path / "task"))


def test_core_contention_counts_other_processes_work(tmp_path):
    _write_stat(tmp_path, [(0, 0), (0, 0)], 0)
    probe = _contention(tmp_path)
    # 100 ticks a core: 150 busy, of which this process used 50
    _write_stat(tmp_path, [(100, 0), (50, 50)], 50)
    assert probe.busy_elsewhere() == pytest.approx(1.0)
    # the next interval starts where this one ended: a quiet machine
    _write_stat(tmp_path, [(200, 0), (150, 50)], 250)
    assert probe.busy_elsewhere() == pytest.approx(0.0)
    _write_stat(tmp_path, [(300, 0), (150, 150)], 250)  # a core taken by another process
    assert probe.threads(2) == 1 and probe.threads(1) == 1


def test_core_contention_rounds_to_the_free_cores(tmp_path):
    _write_stat(tmp_path, [(0, 0), (0, 0)], 0)
    probe = _contention(tmp_path)
    # a lighter neighbour: 0.4 of a core
    _write_stat(tmp_path, [(60, 40), (0, 100)], 20)
    assert probe.threads(2) == 2
    # a busy neighbour sharing the cores with two threads: 0.7 of a core
    _write_stat(tmp_path, [(160, 40), (100, 100)], 150)
    assert probe.threads(2) == 1


def test_core_contention_counts_only_its_own_cores(tmp_path):
    _write_stat(tmp_path, [(0, 0), (0, 0), (0, 0)], 0)
    probe = _contention(tmp_path, cpus=(0, 1))
    # core 2 is busy, but not one of this process's
    _write_stat(tmp_path, [(0, 100), (0, 100), (100, 0)], 0)
    assert probe.busy_elsewhere() == pytest.approx(0.0)


def test_core_contention_says_nothing_when_it_cannot_tell(tmp_path):
    _write_stat(tmp_path, [(0, 0), (0, 0)], 0)
    probe = _contention(tmp_path)
    # a tenth of a second is too short to measure: the same start next time
    _write_stat(tmp_path, [(10, 0), (10, 0)], 0)
    assert probe.busy_elsewhere() is None and probe.threads(2) == 2
    # ... and the count in use stays
    assert probe.threads(2, current=1) == 1
    _write_stat(tmp_path, [(100, 0), (100, 0)], 100)
    assert probe.busy_elsewhere() == pytest.approx(1.0)
    # no /proc (other systems): nothing known, the thread count stays
    missing = CoreContention(str(tmp_path / "none"), str(tmp_path / "none"), {0, 1})
    assert missing.busy_elsewhere() is None and missing.threads(2) == 2
    (tmp_path / "stat").write_text("cpu0 garbled\n")
    assert _contention(tmp_path).threads(2) == 2


def test_core_contention_counts_runnable_threads_until_it_can_measure(tmp_path):
    # this process: one running thread, one spinning OpenMP worker, one asleep
    _write_tasks(tmp_path, "RRS")
    _write_stat(tmp_path, [(0, 0), (0, 0)], 0, running=3)
    probe = _contention(tmp_path)
    # too short to measure: the runnable threads of the moment, less this
    # process's two, leave one core to another process
    _write_stat(tmp_path, [(10, 0), (10, 0)], 0, running=3)
    assert probe.running_elsewhere() == pytest.approx(1.0)
    assert probe.threads(2) == 1
    # nothing else runnable: both cores
    _write_stat(tmp_path, [(10, 0), (10, 0)], 0, running=2)
    assert probe.threads(2) == 2
    # once an interval was measured, a short one says nothing again
    _write_stat(tmp_path, [(100, 0), (100, 0)], 200, running=2)
    assert probe.threads(2) == 2 and probe.measured
    _write_stat(tmp_path, [(110, 0), (110, 0)], 200, running=9)
    assert probe.threads(2, current=2) == 2
    # a process on 2 of 8 cores counts its share of the others' threads
    lines = [(0, 0)] * 8
    _write_stat(tmp_path, lines, 0, running=2 + 4)
    wide = _contention(tmp_path)
    assert wide.running_elsewhere() == pytest.approx(1.0)
    assert wide.threads(2) == 1
    # no procs_running line, no task folder: nothing known
    _write_stat(tmp_path, [(0, 0), (0, 0)], 0)
    assert _contention(tmp_path).running_elsewhere() is None
    _write_stat(tmp_path, [(0, 0), (0, 0)], 0, running=5)
    missing = CoreContention(str(tmp_path / "stat"), str(tmp_path / "self_stat"), {0, 1},
                             task_dir=str(tmp_path / "none"))
    assert missing.running_elsewhere() is None and missing.threads(2) == 2


def test_core_contention_reads_this_machine():
    probe = CoreContention()
    elsewhere = [probe.busy_elsewhere() for _ in range(3)] + [probe.running_elsewhere()]
    assert all(e is None or 0 <= e <= len(probe.cpus) for e in elsewhere)


class _Busy:
    """A CoreContention whose neighbours hold a core from the second look on.

    Every other look after that is too short to tell (the count in use stays).
    """

    def __init__(self, *args, **kwargs):
        self.looks = 0

    def threads(self, n_threads, current=None):
        self.looks += 1
        if self.looks == 1:
            return n_threads
        if self.looks % 2:
            return n_threads if current is None else current
        return 1


@pytest.fixture
def trainers(monkeypatch):
    """The trainers of the fits that follow."""
    seen = []
    release = trainer_module.SLIDETrainer.release

    def record(self):
        seen.append(self)
        return release(self)

    monkeypatch.setattr(trainer_module.SLIDETrainer, "release", record)
    return seen


def _data():
    X, Y = make_extreme_classification(n_samples=600, n_features=500, n_labels=200,
                                       random_state=0)
    return X, Y


def test_training_drops_to_the_free_cores(monkeypatch, trainers):
    monkeypatch.setattr(trainer_module, "CoreContention", _Busy)
    # every batch looks again
    monkeypatch.setattr(trainer_module, "PROBE_SECONDS", 0.0)
    threads = []
    run_epoch = trainer_module.SLIDETrainer.run_epoch

    def spy(self, *args, **kwargs):
        out = run_epoch(self, *args, **kwargs)
        threads.append((self.n_threads, self.workspace.n_threads))
        return out

    monkeypatch.setattr(trainer_module.SLIDETrainer, "run_epoch", spy)
    X, Y = _data()
    clf = SLIDEClassifier(hidden_layer_size=16, max_iter=3, batch_size=64, n_jobs=2,
                          random_state=0, sparse_head_weight=0.5).fit(X, Y)
    (trainer,) = trainers
    assert trainer.max_threads == 2 and trainer.thread_history == [2, 1]
    # the fit's held-out checks ran on its thread count; it ended with the fit
    assert not hasattr(clf, "_fit_threads")
    # the kernels ran on the one free core from the second batch on
    assert threads and all(t == (1, 1) for t in threads)
    ids, scores = clf.predict_topk(X[:50], k=3)
    assert np.isfinite(scores).all() and clf.score(X, Y) > 0


def test_one_thread_or_the_variable_set_to_0_never_looks(monkeypatch, trainers):
    X, Y = _data()
    kw = dict(hidden_layer_size=16, max_iter=1, random_state=0)
    SLIDEClassifier(n_jobs=1, **kw).fit(X, Y)
    monkeypatch.setenv(ADAPTIVE_THREADS_ENV_VAR, "0")
    SLIDEClassifier(n_jobs=2, **kw).fit(X, Y)
    assert [t.contention for t in trainers] == [None, None]
    assert [t.thread_history for t in trainers] == [[], []]
    assert sksketch.show_config("dicts")["openmp"]["adaptive_threads"] is False


def test_workspace_thread_count_stays_within_its_scratch():
    X, Y = _data()
    clf = SLIDEClassifier(hidden_layer_size=8, max_iter=1, n_jobs=2, random_state=0).fit(X, Y)
    trainer = trainer_module.SLIDETrainer(clf, np.random.RandomState(0), 2)
    trainer.allocate(Y.tocsr())
    for bad in (0, 3):
        with pytest.raises(ValueError, match=r"n_threads must be in \[1, 2\]"):
            trainer.workspace.set_n_threads(bad)
    trainer.workspace.set_n_threads(1)
    assert trainer.workspace.n_threads == 1


def test_held_out_checks_follow_the_fits_thread_count(monkeypatch, trainers):
    import sksketch._slide._inference as inference

    monkeypatch.setattr(trainer_module, "CoreContention", _Busy)
    monkeypatch.setattr(trainer_module, "PROBE_SECONDS", 0.0)
    seen = []
    fit_jobs = inference.fit_jobs

    def spy(est):
        seen.append(fit_jobs(est))
        return seen[-1]

    monkeypatch.setattr(inference, "fit_jobs", spy)
    X, Y = _data()
    clf = SLIDEClassifier(hidden_layer_size=16, max_iter=3, batch_size=64, n_jobs=2,
                          early_stopping=True, random_state=0).fit(X, Y)
    (trainer,) = trainers
    assert trainer.thread_history == [2, 1]
    # the held-out checks (the heads' watches, early stopping's scores) ran
    # on both cores before the first epoch and on the one free core after
    assert seen[0] == 2 and seen[-1] == 1 and seen == sorted(seen, reverse=True)
    seen.clear()
    clf.predict_topk(X, k=3)
    assert seen and set(seen) == {2}


class _FreedLater:
    """A CoreContention whose neighbour holds a core at the first look only."""

    def __init__(self, *args, **kwargs):
        self.looks = 0

    def threads(self, n_threads, current=None):
        self.looks += 1
        return 1 if self.looks == 1 else n_threads


def test_a_fit_started_on_a_busy_machine_takes_the_cores_freed_later(monkeypatch, trainers):
    monkeypatch.setattr(trainer_module, "CoreContention", _FreedLater)
    X, Y = _data()
    kw = dict(hidden_layer_size=16, max_iter=2, batch_size=64, random_state=0)
    clf = SLIDEClassifier(n_jobs=2, **kw).fit(X, Y)
    (trainer,) = trainers
    # the workspace has scratch for the threads it comes back to
    assert trainer.thread_history == [1, 2]
    ref = SLIDEClassifier(n_jobs=1, **kw).fit(X, Y)
    np.testing.assert_array_equal(clf.predict_topk(X, k=3)[0], ref.predict_topk(X, k=3)[0])
