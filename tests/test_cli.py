"""The sksketch command: demo, train, predict, evaluate, and safe model files."""

import json
import os
import pickle
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from sklearn.datasets import dump_svmlight_file

import sksketch
import sksketch._safe_io
from sksketch import SLIDEClassifier
from sksketch import _cli as cli
from sksketch._cli import main
from sksketch.datasets import dump_xc, load_xc, make_extreme_classification
from sksketch.metrics import precision_at_k
from sksketch.metrics._ranking import _ranked_topk

SMALL = ["demo", "--n-samples", "2000", "--n-features", "1000", "--n-labels", "1500",
         "--epochs", "3", "--n-jobs", "1"]


def test_demo_trains_and_reports(capsys):
    assert main(SMALL) == 0
    out = capsys.readouterr().out
    assert "1,500 labels" in out
    assert "samples/s" in out
    trained = re.search(r"^trained (\d+) epochs?( of 3 \(the network added nothing)?", out,
                        flags=re.M)
    assert trained is not None and (trained.group(1) == "3") == (trained.group(2) is None)
    p1 = [float(v) for v in re.findall(r"P@1 ([0-9.]+)", out)]
    assert len(p1) == 2 and all(0 <= v <= 1 for v in p1)
    # learnable: far above the chance of guessing the most frequent label
    assert p1[0] > 0.15
    rates = re.search(r"dense softmax: ([0-9,]+) samples/s; SLIDE: ([0-9,]+) samples/s; "
                      r"speed-up ([0-9.]+)x", out)
    assert rates is not None
    dense, slide, ratio = (float(v.replace(",", "")) for v in rates.groups())
    assert dense > 0 and slide > 0
    assert ratio == pytest.approx(slide / dense, rel=0.05, abs=0.06)


def test_python_dash_m():
    out = subprocess.run([sys.executable, "-m", "sksketch", *SMALL], capture_output=True,
                         text=True, check=True).stdout
    assert "inference='full' (exact scores): P@1" in out and "inference='lsh'" in out


@pytest.mark.parametrize("argv", [[], ["nope"], ["demo", "--n-labels", "0"],
                                  ["demo", "--epochs", "x"], ["demo", "--baseline-rows", "-1"],
                                  ["train", "file.txt"], ["predict", "model"],
                                  ["evaluate", "m", "d", "-k", "0"]])
def test_bad_arguments_exit_with_usage(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert "usage: sksketch" in capsys.readouterr().err


# ---------------------------------------------------------------- train / predict / evaluate

TRAIN_OPTIONS = ["--epochs", "8", "--hidden-layer-size", "32", "--n-jobs", "1",
                 "--random-state", "0", "--learning-rate", "0.01", "--progress", "plain"]


@pytest.fixture(scope="module")
def xc_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("xc")
    X, Y = make_extreme_classification(1500, 400, 120, avg_labels_per_sample=2,
                                       random_state=0)
    train, test = folder / "train.txt", folder / "test.txt"
    dump_xc(X[:1200], Y[:1200], train)
    dump_xc(X[1200:], Y[1200:], test)
    return train, test, X[1200:], Y[1200:]


@pytest.fixture(scope="module")
def model_file(xc_files, tmp_path_factory):
    train, test, _, _ = xc_files
    path = tmp_path_factory.mktemp("model") / "model.npz"
    assert main(["train", str(train), "-o", str(path), "--test-file", str(test),
                 *TRAIN_OPTIONS]) == 0
    return path


def _metrics(out):
    return {key: float(value) for key, value in re.findall(r"^(\S+@\d+) +([0-9.]+)$", out,
                                                           flags=re.M)}


def test_train_writes_a_model_that_learned(model_file, xc_files, capsys):
    _, _, Xt, Yt = xc_files
    # a model file is written by sksketch.save, as data: no pickle
    with np.load(model_file, allow_pickle=False) as npz:
        assert "metadata.json" in npz.files
    model = sksketch.load(model_file)
    assert isinstance(model, SLIDEClassifier)
    assert model.max_iter == 8 and model.hidden_layer_size == 32 and model.learning_rate == 0.01
    # (8 epochs at most: on these rows the sparse head alone ranks as well as
    # any mix after the first, and fit ends there)
    assert 1 <= model.n_iter_ <= 8 and len(model.loss_curve_) == model.n_iter_
    labels, _ = model.predict_topk(Xt, k=1)
    chance = Yt.sum(axis=0).max() / Yt.shape[0]  # always guessing the commonest label
    assert precision_at_k(Yt, _ranked_topk(labels, Yt.shape[1]), k=1) > 2 * chance
    assert not [p for p in os.listdir(model_file.parent) if p.endswith(".tmp")]
    # the model fit builds (not that of repeated partial_fit calls), to the bit
    train, _, _, _ = xc_files
    X, Y = load_xc(train)
    fitted = SLIDEClassifier(max_iter=8, hidden_layer_size=32, n_jobs=1, random_state=0,
                             learning_rate=0.01).fit(X, Y)
    assert model.n_iter_ == fitted.n_iter_ and model.loss_curve_ == fitted.loss_curve_
    for got, expected in zip(model.predict_topk(Xt, k=5), fitted.predict_topk(Xt, k=5),
                             strict=True):
        np.testing.assert_array_equal(got, expected)


def test_train_reports_test_metrics_equal_to_evaluate(model_file, xc_files, capsys):
    train, test, _, _ = xc_files
    path = model_file.parent / "again.npz"
    assert main(["train", str(train), "-o", str(path), "--test-file", str(test),
                 *TRAIN_OPTIONS]) == 0
    out = capsys.readouterr().out
    reported = _metrics(out)
    assert set(reported) == {f"{m}@{k}" for m in ("P", "nDCG", "PSP") for k in (1, 3, 5)}
    # same seed, same data: the same model, and evaluate agrees with train's report
    assert main(["evaluate", str(path), str(test), "--propensity-file", str(train),
                 "--json", "--progress", "none"]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    for key, value in reported.items():
        assert evaluated[key] == pytest.approx(value, abs=1e-4)


def test_evaluate_matches_the_library_metrics(model_file, xc_files, capsys):
    from sksketch.metrics import label_propensity, ndcg_at_k, psp_at_k

    _, test, Xt, Yt = xc_files
    model = sksketch.load(model_file)
    assert main(["evaluate", str(model_file), str(test), "-k", "2,4", "--json",
                 "--progress", "none"]) == 0
    got = json.loads(capsys.readouterr().out)
    ranked = _ranked_topk(model.predict_topk(Xt, k=4)[0], Yt.shape[1])
    prop = label_propensity(Yt)
    for k in (2, 4):
        assert got[f"P@{k}"] == pytest.approx(precision_at_k(Yt, ranked, k=k), abs=1e-6)
        assert got[f"nDCG@{k}"] == pytest.approx(ndcg_at_k(Yt, ranked, k=k), abs=1e-6)
        assert got[f"PSP@{k}"] == pytest.approx(
            psp_at_k(Yt, ranked, k=k, propensities=prop), abs=1e-6)


def test_predict_xc_and_libsvm_agree_with_predict_topk(model_file, xc_files, tmp_path, capsys):
    _, test, Xt, Yt = xc_files
    model = sksketch.load(model_file)
    labels, scores = model.predict_topk(Xt, k=3)
    assert main(["predict", str(model_file), str(test), "-k", "3", "--progress", "none"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == Xt.shape[0]
    for line, row_labels, row_scores in zip(lines, labels, scores, strict=True):
        pairs = [pair.split(":") for pair in line.split()]
        assert [int(lab) for lab, _ in pairs] == row_labels.tolist()
        np.testing.assert_allclose([float(s) for _, s in pairs], row_scores, rtol=1e-5)
    # the same rows as a 0-based libsvm file, written to an output file
    svm = tmp_path / "test.svm"
    dump_svmlight_file(Xt, Yt, str(svm), zero_based=True, multilabel=True)
    out = tmp_path / "pred.txt"
    assert main(["predict", str(model_file), str(svm), "-k", "3", "-o", str(out),
                 "--zero-based", "yes", "--progress", "plain"]) == 0
    assert out.read_text().splitlines() == lines
    assert "predicting: 300/300 rows" in capsys.readouterr().err


def test_evaluate_reads_libsvm(model_file, xc_files, tmp_path, capsys):
    _, test, Xt, Yt = xc_files
    svm = tmp_path / "test.svm"
    dump_svmlight_file(Xt, Yt, str(svm), zero_based=True, multilabel=True)
    results = []
    for path, extra in ((test, []), (svm, ["--format", "libsvm", "--zero-based", "yes"])):
        assert main(["evaluate", str(model_file), str(path), "--json", "--progress", "none",
                     *extra]) == 0
        results.append(json.loads(capsys.readouterr().out))
    assert results[0] == results[1]


@pytest.mark.parametrize("argv, message", [
    (["predict", "{model}", "{missing}"], "no such file"),
    (["predict", "{missing}", "{test}"], "no such model file"),
    (["predict", "{test}", "{test}"], "not an sksketch model file (not a zip archive)"),
    (["predict", "{folder}", "{test}"], "cannot read the model file"),
    (["evaluate", "{model}", "{bad}"], "line 2"),
])
def test_command_errors_are_one_line(argv, message, model_file, xc_files, tmp_path, capsys):
    _, test, _, _ = xc_files
    bad = tmp_path / "bad.txt"
    bad.write_text("2 400 120\n0 1:x\n\n")
    names = {"model": model_file, "test": test, "missing": tmp_path / "nope", "bad": bad,
             "folder": tmp_path}
    assert main([a.format(**names) for a in argv]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"sksketch {argv[0]}: error:") and message in err


def test_train_rejects_invalid_parameter_values(xc_files, tmp_path, capsys):
    train, _, _, _ = xc_files
    model = tmp_path / "m.npz"
    assert main(["train", str(train), "-o", str(model), "--learning-rate", "-1"]) == 1
    assert "learning_rate" in capsys.readouterr().err
    assert not model.exists()
    with pytest.raises(SystemExit):
        main(["train", str(train), "-o", str(model), "--hash-family", "nope"])


def test_every_estimator_parameter_is_an_option():
    parser = cli.build_parser()
    train = parser._subparsers._group_actions[0].choices["train"]
    dests = {action.dest for action in train._actions}
    for name in SLIDEClassifier().get_params():
        assert name in cli._NOT_OPTIONS or f"param_{name}" in dests


def test_train_with_early_stopping_reports_each_validation_score(xc_files, tmp_path, capsys):
    train, _, _, _ = xc_files
    path = tmp_path / "model.npz"
    assert main(["train", str(train), "-o", str(path), "--early-stopping", "true",
                 "--n-iter-no-change", "2", *TRAIN_OPTIONS]) == 0
    out = capsys.readouterr().out
    model = sksketch.load(path)
    scores = re.findall(r"^epoch \d+/8: loss [0-9.]+, validation P@1 ([0-9.]+),", out, flags=re.M)
    assert len(scores) == model.n_iter_ == len(model.validation_scores_)
    np.testing.assert_allclose([float(v) for v in scores], model.validation_scores_, atol=1e-4)


@pytest.mark.parametrize("option, text, value", [
    ("--min-active-labels", "auto", "auto"), ("--min-active-labels", "500", 500),
    ("--sparse-head-weight", "auto", "auto"), ("--sparse-head-weight", "0.5", 0.5),
    ("--negative-sampling", "unigram", "unigram"),
])
def test_options_taking_a_word_or_a_number(option, text, value):
    args = cli.build_parser().parse_args(["train", "train.txt", "-o", "m.npz", option, text])
    assert getattr(args, "param_" + option[2:].replace("-", "_")) == value


def test_a_word_option_refuses_other_words(capsys):
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(
            ["train", "train.txt", "-o", "m.npz", "--min-active-labels", "many"])
    assert "expected a number" in capsys.readouterr().err


# ---------------------------------------------------------------- interrupt safety


class _Interrupted(Exception):
    pass


def test_interrupted_write_keeps_the_previous_model(tmp_path, monkeypatch):
    path = tmp_path / "model.npz"
    old = SLIDEClassifier(hidden_layer_size=8)
    cli.save_model(old, path)
    before = path.read_bytes()

    def save_then_interrupt(estimator, f, *args, **kwargs):
        f.write(b"partial bytes of a model")
        raise KeyboardInterrupt

    monkeypatch.setattr(sksketch._safe_io, "save", save_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        cli.save_model(SLIDEClassifier(hidden_layer_size=16), path)
    assert path.read_bytes() == before
    assert sksketch.load(path).hidden_layer_size == 8
    assert sorted(os.listdir(tmp_path)) == ["model.npz"]


def test_interrupted_first_write_leaves_no_file(tmp_path, monkeypatch):
    def fail(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", fail)
    with pytest.raises(KeyboardInterrupt):
        cli.save_model(SLIDEClassifier(), tmp_path / "model.npz")
    assert os.listdir(tmp_path) == []


def test_ctrl_c_during_training_leaves_the_old_model(xc_files, tmp_path):
    train, _, _, _ = xc_files
    path = tmp_path / "model.npz"
    cli.save_model(SLIDEClassifier(hidden_layer_size=8), path)
    before = path.read_bytes()
    proc = subprocess.Popen(
        [sys.executable, "-m", "sksketch", "train", str(train), "-o", str(path),
         "--epochs", "100000", "--hidden-layer-size", "16", "--n-jobs", "1",
         # a set head weight: the network trains on (with "auto" it may
         # stop, and the fit end, after the first epoch on these rows)
         "--sparse-head-weight", "1.0", "--progress", "plain"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # a test run started in the background inherits an ignored SIGINT,
        # and Python then never installs its KeyboardInterrupt handler
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        assert proc.stdout.readline().startswith("read ")
        assert proc.stdout.readline().startswith("training ")
        line = proc.stdout.readline()
        while line.startswith(" "):  # the estimator's repr goes on
            line = proc.stdout.readline()
        assert line.startswith("epoch 1/100000")
        time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130
    assert "interrupted: no model written" in err
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["model.npz"]


# ---------------------------------------------------------------- crafted model files


class _RunsCode:
    """Unpickles by calling exec: what a crafted pickle can do."""

    def __init__(self, code):
        self.code = code

    def __reduce__(self):
        return exec, (self.code,)


@pytest.mark.parametrize("command", ["predict", "evaluate"])
def test_a_crafted_pickle_is_refused_without_running_it(command, xc_files, tmp_path, capsys):
    _, test, _, _ = xc_files
    marker = tmp_path / "the pickle ran"
    crafted = tmp_path / "model.joblib"
    crafted.write_bytes(pickle.dumps(_RunsCode(f"open({str(marker)!r}, 'w').close()")))
    assert main([command, str(crafted), str(test), "--progress", "none"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"sksketch {command}: error: Cannot load {str(crafted)!r}: "
                          "not an sksketch model file (not a zip archive); it is a pickle")
    assert err.count("\n") == 1
    assert not marker.exists()
    # the file does run code when unpickled: the refusal above is what kept it from running
    pickle.loads(crafted.read_bytes())
    assert marker.exists()


def test_a_tampered_model_file_is_refused_in_one_line(model_file, xc_files, tmp_path, capsys):
    _, test, _, _ = xc_files
    model = sksketch.load(model_file)
    model.output_bias_ = model.output_bias_[:-1].copy()
    tampered = tmp_path / "tampered.npz"
    sksketch.save(model, tampered)
    assert main(["predict", str(tampered), str(test), "--progress", "none"]) == 1
    err = capsys.readouterr().err
    assert "SLIDEClassifier: output_bias_ has shape" in err and err.count("\n") == 1


def test_progress_bar_with_tqdm_and_plain_lines_without(model_file, xc_files, tmp_path,
                                                          monkeypatch, capsys):
    pytest.importorskip("tqdm")
    _, test, _, _ = xc_files
    argv = ["predict", str(model_file), str(test), "-o", str(tmp_path / "p.txt"),
            "--progress", "tqdm"]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "predicting" in err and "300/300" in err and "rows/s" in err
    # without tqdm the same request falls back to plain lines
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    assert main(argv) == 0
    assert "predicting: 300/300 rows (100%" in capsys.readouterr().err


def test_output_to_a_special_file_writes_through_it(model_file, xc_files, tmp_path):
    # renaming a temporary file over a pipe or a device would replace it
    import stat
    import threading

    _, test, Xt, _ = xc_files
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    received = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_text()))
    reader.start()
    try:
        assert main(["predict", str(model_file), str(test), "-o", str(fifo),
                     "--progress", "none"]) == 0
    finally:
        if reader.is_alive():
            # a reader still waiting to open the pipe: open it for writing
            # without blocking (ENXIO if the reader has finished meanwhile)
            try:
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:
                pass
        reader.join(timeout=30)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    assert len(received[0].splitlines()) == Xt.shape[0]
    assert sorted(os.listdir(tmp_path)) == ["fifo"]
