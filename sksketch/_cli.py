"""The ``sksketch`` command (also ``python -m sksketch``)."""

import argparse
import json
import math
import os
import sys
import tempfile
import time
import warnings

import numpy as np

# Rows per prediction call in `predict` and `evaluate`: bounds the memory of one
# call and paces the progress bar.
_PREDICT_CHUNK = 4096

# Parameters the command sets itself rather than exposing as options.
_NOT_OPTIONS = {"verbose", "warm_start"}


class CommandError(Exception):
    """A user error the command reports in one line (exit status 1)."""


# --------------------------------------------------------------- progress


def _progress_mode(args):
    mode = getattr(args, "progress", "auto")
    if mode == "auto":
        mode = "tqdm" if sys.stderr.isatty() else "plain"
    return mode


def _progress(args, total, desc, unit, plain_lines=True):
    from ._progress import Progress

    mode = _progress_mode(args)
    disable = mode == "none" or (mode == "plain" and not plain_lines)
    return Progress(total, desc, unit=unit, plain=mode == "plain", disable=disable)


def _train_epochs(clf, X, Y, args, desc="training"):
    """``clf.fit(X, Y)`` with a line (and a bar) per epoch; returns the training seconds.

    The model is the one ``fit`` builds, held-out rows and all (the sparse
    head's weight and its stopping, and ``early_stopping``, use them), not
    that of repeated ``partial_fit`` calls. ``max_iter`` is a bound: running
    all of it is not worth a warning here.
    """
    from sklearn.exceptions import ConvergenceWarning

    n_epochs = clf.max_iter
    trained = [getattr(clf, "t_", 0)]

    def report(epoch):
        # rows trained this epoch: fewer than X's while fit holds some out
        rate = (clf.t_ - trained[0]) / max(epoch.seconds, 1e-9)
        trained[0] = clf.t_
        score = ("" if epoch.validation_score is None
                 else f", validation P@1 {epoch.validation_score:.4f}")
        print(f"epoch {epoch.epoch}/{n_epochs}: loss {epoch.loss:.4f}{score}, "
              f"{rate:,.0f} samples/s, {epoch.seconds:.1f} s", flush=True)
        bar.update(1, loss=f"{epoch.loss:.4f}")

    # Each epoch prints its own line: plain progress lines would repeat them.
    with _progress(args, n_epochs, desc, "epoch", plain_lines=False) as bar:
        started = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            clf._fit(X, Y, None, incremental=False, on_epoch=report)
        return time.perf_counter() - started


# ------------------------------------------------------------- model files


def _write_atomically(path, write):
    """Call ``write(file)`` on a temporary file next to ``path``, then rename it.

    The rename is atomic, so an interrupted or failed write (Ctrl-C included)
    leaves any previous file at ``path`` untouched and no partial file behind.
    A ``path`` that exists and is not a regular file (``/dev/stdout``, a named
    pipe) is written to directly: renaming over it would replace it.
    """
    path = os.fspath(path)
    if os.path.exists(path) and not os.path.isfile(path):
        with open(path, "wb") as f:
            write(f)
        return
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def save_model(estimator, path):
    """Write a fitted estimator to ``path`` with :func:`sksketch.save`, atomically.

    The file is data only (arrays and JSON, no pickle), so :func:`load_model`
    never runs code from it.
    """
    from ._safe_io import save

    _write_atomically(path, lambda f: save(estimator, f))


def _is_pickle(path):
    try:
        with open(path, "rb") as f:
            return f.read(1) == b"\x80"
    except OSError:
        return False


def load_model(path):
    """Read a model written by :func:`save_model` with :func:`sksketch.load` (no unpickling)."""
    from ._safe_io import load
    from .base import IncompatibleVersionError

    try:
        model = load(path)
    except FileNotFoundError:
        raise CommandError(f"{path}: no such model file") from None
    except IncompatibleVersionError as exc:
        raise CommandError(f"{path}: {exc}") from None
    except ValueError as exc:
        hint = ""
        if _is_pickle(path):
            # what 'sksketch train' wrote before it saved models as data
            hint = (
                "; it is a pickle, which sksketch does not load (unpickling can run code): "
                "if you trust it, convert it with python -c \"import joblib, sksketch; "
                f"sksketch.save(joblib.load('{path}'), 'model.npz')\""
            )
        raise CommandError(f"{exc}{hint}") from None
    except OSError as exc:
        raise CommandError(f"{path}: cannot read the model file ({exc.strerror or exc})") \
            from None
    if not hasattr(model, "predict_topk"):
        raise CommandError(f"{path}: holds a {type(model).__name__}, not an sksketch model")
    return model


# ------------------------------------------------------------------- data


def _file_format(path, requested):
    if requested != "auto":
        return requested
    try:
        with open(path, "rb") as f:
            first = f.readline().split()
    except FileNotFoundError:
        raise CommandError(f"{path}: no such file") from None
    is_header = len(first) == 3 and all(field.isdigit() for field in first)
    return "xc" if is_header else "libsvm"


def _read_data(path, fmt, n_features=None, n_labels=None, zero_based="auto"):
    """Features (CSR float32) and label indicator (CSR) of an XC or libsvm file."""
    import scipy.sparse as sp

    from .datasets import load_xc

    fmt = _file_format(path, fmt)
    if fmt == "xc":
        try:
            X, Y = load_xc(path)
        except FileNotFoundError:
            raise CommandError(f"{path}: no such file") from None
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        if n_features is not None and X.shape[1] != n_features:
            raise CommandError(f"{path}: has {X.shape[1]} features, the model {n_features}")
        if n_labels is not None and Y.shape[1] != n_labels:
            raise CommandError(f"{path}: has {Y.shape[1]} labels, the model {n_labels}")
        return X, Y
    from sklearn.datasets import load_svmlight_file

    zb = {"auto": "auto", "yes": True, "no": False}[zero_based]
    try:
        X, y = load_svmlight_file(os.fspath(path), n_features=n_features, dtype=np.float32,
                                  multilabel=True, zero_based=zb)
    except FileNotFoundError:
        raise CommandError(f"{path}: no such file") from None
    except ValueError as exc:
        raise CommandError(f"{path}: {exc}") from None
    if not np.all(np.isfinite(X.data)):
        raise CommandError(f"{path}: feature values must be finite float32 numbers")
    rows = np.repeat(np.arange(len(y)), [len(labels) for labels in y])
    ids = np.fromiter((label for labels in y for label in labels), dtype=np.float64,
                      count=rows.size)
    if not np.all(np.isfinite(ids) & (ids == np.round(ids))):
        raise CommandError(f"{path}: label ids must be integers")
    cols = ids.astype(np.int64)
    width = n_labels if n_labels is not None else (int(cols.max()) + 1 if cols.size else 0)
    if cols.size and (cols.min() < 0 or cols.max() >= width):
        raise CommandError(f"{path}: label ids must lie in [0, {width})")
    Y = sp.csr_matrix((np.ones(rows.size, dtype=np.int32), (rows, cols)),
                      shape=(len(y), width))
    return sp.csr_matrix(X, dtype=np.float32), Y


def _topk_in_chunks(model, X, k, args, desc):
    """``predict_topk`` over row chunks, with progress."""
    n = X.shape[0]
    labels, scores = [], []
    with _progress(args, n, desc, "rows") as bar:
        for start in range(0, n, _PREDICT_CHUNK):
            part = X[start : start + _PREDICT_CHUNK]
            lab, sc = model.predict_topk(part, k=k)
            labels.append(lab)
            scores.append(sc)
            bar.update(part.shape[0])
    if not labels:
        k = min(k, len(model.classes_))
        return np.empty((0, k), dtype=model.classes_.dtype), np.empty((0, k), np.float32)
    return np.concatenate(labels), np.concatenate(scores)


def _evaluate_topk(model, labels, Y, ks, propensities):
    """Metric name -> value for the ranked top-k ``labels`` against indicator Y."""
    from .metrics import ndcg_at_k, precision_at_k, psp_at_k
    from .metrics._ranking import _ranked_topk

    classes = model.classes_
    columns = np.searchsorted(classes, labels)
    ranked = _ranked_topk(columns, len(classes))
    results = {}
    for k in ks:
        results[f"P@{k}"] = precision_at_k(Y, ranked, k=k)
        results[f"nDCG@{k}"] = ndcg_at_k(Y, ranked, k=k)
        if propensities is not None:
            results[f"PSP@{k}"] = psp_at_k(Y, ranked, k=k, propensities=propensities)
    return results


def _print_metrics(results, as_json, file=None):
    file = sys.stdout if file is None else file
    if as_json:
        print(json.dumps({key: round(float(v), 6) for key, v in results.items()}), file=file)
        return
    for key, value in results.items():
        print(f"{key:<8} {value:.4f}", file=file)


# ------------------------------------------------------------------ demo


def _demo(args):

    from . import SLIDEClassifier, show_config
    from .datasets import make_extreme_classification
    from .metrics import precision_at_k
    from .metrics._ranking import _ranked_topk

    cfg = show_config("dicts")
    print(f"sksketch {cfg['sksketch']['version']}: SIMD {cfg['simd']['active_isa']}, "
          f"{cfg['openmp']['effective_n_threads']} OpenMP thread(s)", flush=True)
    n_test = max(1, args.n_samples // 6)
    started = time.perf_counter()
    X, Y = make_extreme_classification(
        args.n_samples + n_test, args.n_features, args.n_labels,
        avg_labels_per_sample=3, random_state=args.random_state,
    )
    X, Y, Xt, Yt = X[:args.n_samples], Y[:args.n_samples], X[args.n_samples:], Y[args.n_samples:]
    print(f"generated {args.n_samples:,} training and {n_test:,} test rows: "
          f"{args.n_features:,} features, {args.n_labels:,} labels (power-law frequencies), "
          f"{X.nnz / X.shape[0]:.0f} non-zeros and {Y.nnz / Y.shape[0]:.1f} labels per row "
          f"in {time.perf_counter() - started:.1f} s", flush=True)
    clf = SLIDEClassifier(max_iter=args.epochs, n_jobs=args.n_jobs,
                          random_state=args.random_state)
    print(f"training {clf!r}", flush=True)
    train_s = _train_epochs(clf, X, Y, args)
    slide_rate = clf.t_ / train_s
    epochs = f"{clf.n_iter_} epoch{'s' if clf.n_iter_ != 1 else ''}"
    if clf.n_iter_ < clf.max_iter:
        epochs += (f" of {clf.max_iter} (the network added nothing to the sparse head on "
                   "held-out rows; fit stopped)")
    print(f"trained {epochs} in {train_s:.1f} s: {slide_rate:,.0f} samples/s, "
          f"{clf.mean_active_labels_:,.0f} active labels of {args.n_labels:,} per example",
          flush=True)
    for mode in ("full", "lsh"):
        clf.set_params(inference=mode)
        started = time.perf_counter()
        clf.predict_topk(Xt[:1], k=5)  # "lsh" builds its index at its first prediction
        first = time.perf_counter() - started
        started = time.perf_counter()
        labels, scores = clf.predict_topk(Xt, k=5)
        seconds = time.perf_counter() - started
        ranked = _ranked_topk(labels, args.n_labels)
        p = [precision_at_k(Yt, ranked, k=k) for k in (1, 3, 5)]
        note = "exact scores" if mode == "full" else (
            f"only the labels a retrieval index finds, built in {first:.1f} s")
        print(f"test, inference={mode!r} ({note}): P@1 {p[0]:.4f}  P@3 {p[1]:.4f}  P@5 {p[2]:.4f}  "
              f"({Xt.shape[0] / seconds:,.0f} rows/s)", flush=True)
    if args.baseline_rows:
        # The same network and optimiser with every output neuron active: the
        # exact (dense) softmax, one epoch over the first rows.
        rows = min(args.baseline_rows, X.shape[0])
        dense = SLIDEClassifier(min_active_labels=args.n_labels, max_iter=1, n_jobs=args.n_jobs,
                                random_state=args.random_state)
        print(f"dense-softmax baseline: the same network with all {args.n_labels:,} output "
              f"neurons computed and updated, one epoch over {rows:,} rows", flush=True)
        started = time.perf_counter()
        dense.partial_fit(X[:rows], Y[:rows])
        dense_rate = rows / (time.perf_counter() - started)
        print(f"dense softmax: {dense_rate:,.0f} samples/s; SLIDE: {slide_rate:,.0f} samples/s; "
              f"speed-up {slide_rate / dense_rate:.1f}x", flush=True)
    return 0


def _estimator_options(parser):
    """One option per SLIDEClassifier parameter, typed from its default."""
    from sklearn.utils._param_validation import StrOptions

    from . import SLIDEClassifier

    constraints = SLIDEClassifier._parameter_constraints
    group = parser.add_argument_group(
        "SLIDEClassifier parameters", "see help(sksketch.SLIDEClassifier) for their meaning"
    )
    for name, default in SLIDEClassifier().get_params().items():
        if name in _NOT_OPTIONS:
            continue
        choices = None
        for constraint in constraints.get(name, []):
            if isinstance(constraint, StrOptions):
                choices = sorted(constraint.options)
        numeric = any(not isinstance(c, StrOptions) and c not in (None, str)
                      for c in constraints.get(name, []))
        if isinstance(default, bool):
            kind = _boolean
        elif isinstance(default, str) and choices and numeric:
            # a word or a number, such as "auto" or 0.5
            kind, choices = _word_or_number(choices), None
        elif isinstance(default, str):
            kind = str
        elif isinstance(default, (int, float)):
            kind = _number
        else:
            kind = _literal
        flags = [f"--{name.replace('_', '-')}"]
        if name == "max_iter":
            flags.append("--epochs")
        group.add_argument(*flags, dest=f"param_{name}", type=kind, default=None,
                           choices=choices, metavar=None if choices else name.upper(),
                           help=f"default: {default!r}")


def _word_or_number(words):
    def parse(text):
        return text if text in words else _number(text)
    return parse


def _boolean(text):
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _number(text):
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def _literal(text):
    if text.strip().lower() == "none":
        return None
    try:
        return _number(text)
    except argparse.ArgumentTypeError:
        return text


def _train(args):
    from sklearn.utils._param_validation import InvalidParameterError

    from . import SLIDEClassifier

    params = {key[len("param_"):]: value for key, value in vars(args).items()
              if key.startswith("param_") and value is not None}
    clf = SLIDEClassifier(**params)
    try:
        clf._validate_params()
    except InvalidParameterError as exc:
        raise CommandError(str(exc)) from None
    started = time.perf_counter()
    X, Y = _read_data(args.train_file, "xc")
    for size, what in ((X.shape[0], "rows"), (X.shape[1], "features"), (Y.shape[1], "labels")):
        if size == 0:
            raise CommandError(f"{args.train_file}: has no {what} to train on")
    print(f"read {args.train_file}: {X.shape[0]:,} rows, {X.shape[1]:,} features, "
          f"{Y.shape[1]:,} labels in {time.perf_counter() - started:.1f} s", flush=True)
    test = None
    if args.test_file is not None:
        test = _read_data(args.test_file, "xc", n_features=X.shape[1], n_labels=Y.shape[1])
    print(f"training {clf!r}", flush=True)
    seconds = _train_epochs(clf, X, Y, args)
    print(f"trained {clf.n_iter_} epochs in {seconds:.1f} s "
          f"({clf.t_ / max(seconds, 1e-9):,.0f} samples/s)", flush=True)
    if test is not None:
        Xt, Yt = test
        from .metrics import label_propensity

        labels, _ = _topk_in_chunks(clf, Xt, max(args.k), args, "evaluating")
        # the propensity model needs at least 3 rows; without it PSP is left out
        propensities = label_propensity(Y) if Y.shape[0] > 2 else None
        print(f"test {args.test_file}: {Xt.shape[0]:,} rows", flush=True)
        _print_metrics(_evaluate_topk(clf, labels, Yt, args.k, propensities), False)
    save_model(clf, args.model)
    print(f"model written to {args.model}", flush=True)
    return 0


def _predict(args):
    model = load_model(args.model)
    X, _ = _read_data(args.data_file, args.format, n_features=model.n_features_in_,
                      n_labels=len(model.classes_), zero_based=args.zero_based)
    labels, scores = _topk_in_chunks(model, X, args.k, args, "predicting")

    def write(f):
        for row_labels, row_scores in zip(labels, scores, strict=True):
            keep = np.isfinite(row_scores)
            f.write(" ".join(f"{label}:{score:.6g}" for label, score
                             in zip(row_labels[keep], row_scores[keep], strict=True)).encode())
            f.write(b"\n")

    if args.output is None or args.output == "-":
        write(sys.stdout.buffer)
        sys.stdout.flush()
    else:
        _write_atomically(args.output, write)
        print(f"top-{labels.shape[1]} labels of {X.shape[0]:,} rows written to {args.output}",
              file=sys.stderr, flush=True)
    return 0


def _evaluate(args):
    from .metrics import label_propensity

    model = load_model(args.model)
    n_labels = len(model.classes_)
    X, Y = _read_data(args.data_file, args.format, n_features=model.n_features_in_,
                      n_labels=n_labels, zero_based=args.zero_based)
    if args.propensity_file is not None:
        _, Y_prop = _read_data(args.propensity_file, "auto", n_labels=n_labels,
                               zero_based=args.zero_based)
    else:
        Y_prop = Y
    if X.shape[0] == 0:
        raise CommandError(f"{args.data_file}: has no rows to evaluate")
    if Y_prop.shape[0] < 3:
        raise CommandError("propensities need at least 3 labelled rows")
    propensities = label_propensity(Y_prop, A=args.propensity_a, B=args.propensity_b)
    labels, _ = _topk_in_chunks(model, X, max(args.k), args, "evaluating")
    _print_metrics(_evaluate_topk(model, labels, Y, args.k, propensities), args.json)
    return 0


def _k_list(text):
    try:
        ks = sorted({int(v) for v in text.split(",") if v.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers like 1,3,5, got {text!r}") from None
    if not ks or ks[0] < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return ks


def _positive_number(text):
    value = _number(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _positive(text):
    value = _number(text)
    if not isinstance(value, int) or value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _add_common(parser):
    parser.add_argument(
        "--progress", choices=["auto", "tqdm", "plain", "none"], default="auto",
        help="progress display on stderr: a tqdm bar (when tqdm is installed), plain lines, "
        "or nothing; auto picks tqdm on a terminal and plain lines otherwise",
    )


def _add_data_format(parser):
    parser.add_argument("--format", choices=["auto", "xc", "libsvm"], default="auto",
                        help="input format; auto reads an XC file by its 'N D L' header")
    parser.add_argument("--zero-based", choices=["auto", "yes", "no"], default="auto",
                        help="whether libsvm feature ids start at 0")


def build_parser():
    parser = argparse.ArgumentParser(
        prog="sksketch", description="Hashing-based training of huge-output classifiers."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser(
        "demo",
        help="train SLIDEClassifier on a generated extreme-classification problem",
        description="Generate a learnable problem with power-law label frequencies, train "
        "SLIDEClassifier on it, print precision at k and throughput, and compare the "
        "training speed with the same network trained with the exact (dense) softmax.",
    )
    demo.add_argument("--n-samples", type=int, default=50_000, help="training rows")
    demo.add_argument("--n-features", type=int, default=50_000)
    demo.add_argument("--n-labels", type=int, default=100_000)
    demo.add_argument("--epochs", type=int, default=4)
    demo.add_argument("--baseline-rows", type=int, default=1024,
                      help="rows of the dense-softmax baseline's timed epoch (0: skip it)")
    demo.add_argument("--n-jobs", type=int, default=None, help="threads (default: all)")
    demo.add_argument("--random-state", type=int, default=0)
    _add_common(demo)

    train = sub.add_parser(
        "train", help="train SLIDEClassifier on an XC-format file and write a model",
        description="Train SLIDEClassifier on a file in the Extreme Classification "
        "Repository format, optionally report P@k, nDCG@k and PSP@k on a test file, and "
        "write the model atomically as an sksketch model file (sksketch.save: arrays and "
        "JSON, read without unpickling): an interrupted run never leaves a partial model "
        "file.",
    )
    train.add_argument("train_file", help="training data, XC format ('N D L' header)")
    train.add_argument("-o", "--model", required=True,
                       help="model file to write (customarily .npz; sksketch.load reads it)")
    train.add_argument("--test-file", help="test data, XC format, evaluated after training")
    train.add_argument("-k", type=_k_list, default=[1, 3, 5],
                       help="ranks to evaluate the test file at (default: 1,3,5)")
    _estimator_options(train)
    _add_common(train)

    predict = sub.add_parser(
        "predict", help="top-k labels and scores of each row of an XC or libsvm file",
        description="Write one line per input row: 'label:score' pairs, best first.",
    )
    predict.add_argument("model", help="model file written by 'sksketch train' or sksketch.save")
    predict.add_argument("data_file", help="rows to predict (XC or libsvm)")
    predict.add_argument("-k", type=_positive, default=5, help="labels per row (default 5)")
    predict.add_argument("-o", "--output", help="output file (default: stdout)")
    _add_data_format(predict)
    _add_common(predict)

    evaluate = sub.add_parser(
        "evaluate", help="P@k, nDCG@k and PSP@k of a model on a labelled file",
        description="Rank each row's labels with the model and score the ranking against "
        "the file's labels. Propensities for PSP@k come from --propensity-file (normally "
        "the training file) or, without it, from the evaluated file itself.",
    )
    evaluate.add_argument("model",
                          help="model file written by 'sksketch train' or sksketch.save")
    evaluate.add_argument("data_file", help="labelled rows (XC or libsvm)")
    evaluate.add_argument("-k", type=_k_list, default=[1, 3, 5],
                          help="ranks to evaluate at (default: 1,3,5)")
    evaluate.add_argument("--propensity-file",
                          help="labelled file whose label frequencies give the propensities")
    evaluate.add_argument("--propensity-a", type=_number, default=0.55,
                          help="propensity constant A (0.55; Amazon 0.6, Wikipedia 0.5)")
    evaluate.add_argument("--propensity-b", type=_positive_number, default=1.5,
                          help="propensity constant B (1.5; Amazon 2.6, Wikipedia 0.4)")
    evaluate.add_argument("--json", action="store_true", help="print one JSON object")
    _add_data_format(evaluate)
    _add_common(evaluate)
    return parser


_COMMANDS = {"demo": _demo, "train": _train, "predict": _predict, "evaluate": _evaluate}


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "demo":
        for name in ("n_samples", "n_features", "n_labels", "epochs"):
            if getattr(args, name) < 1:
                parser.error(f"--{name.replace('_', '-')} must be at least 1")
        if args.baseline_rows < 0:
            parser.error("--baseline-rows must be at least 0")
    try:
        with warnings.catch_warnings():
            # one-epoch partial_fit calls make no convergence claim to warn about
            from sklearn.exceptions import ConvergenceWarning

            warnings.simplefilter("ignore", ConvergenceWarning)
            return _COMMANDS[args.command](args)
    except CommandError as exc:
        print(f"sksketch {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # The reader of our output went away (`sksketch predict ... | head`).
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except KeyboardInterrupt:
        print("interrupted" + (": no model written" if args.command == "train" else ""),
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
