"""Do SLIDEClassifier's hash tables find the labels that score highest?

For a trained ``SLIDEClassifier`` (default parameters, ``n_jobs=2``) and the
first ``--test`` test rows, this script compares candidate sources of equal
size (budgets of 0.5%, 1% and 5% of the labels) by:

- ``R@1``, ``R@5``, ``R@50``: the share of the network's exact top-1, top-5
  and top-50 labels (by ``h . w_j + b_j``) among the candidates;
- ``mass``: the share of the full softmax's probability they hold.

Sources:

- ``exact top-B`` (the oracle: the best any source of that size can do);
- ``index``: the SimHash tables over ``[w_j - mean_w, b_j - mean_b]`` that
  ``inference="lsh"`` queries with ``[h, 1]``, labels ranked by collision
  count (:mod:`sksketch._slide._retrieval`), with its default number of
  tables and with fewer;
- ``training tables``: the tables training samples from (DWTA over the raw
  weight rows), read bucket after bucket until the budget is filled, which
  is what ``inference="lsh"`` used before;
- ``uniform`` and ``unigram`` draws (without replacement; unigram by
  training label frequency);
- ``hnsw``: an HNSW inner-product index over ``[w_j, b_j]`` (``hnswlib``,
  optional: ``pip install hnswlib``), asked for the budget's count of
  neighbours with ``ef`` equal to it, the index a user would otherwise reach
  for; its build time and query time per row are printed.

Each is measured after one epoch (a separate ``max_iter=1`` fit) and after
the full default fit. Then the whole ranking: P@1 and P@5 of
``inference="full"`` and ``"lsh"`` on all test rows, their batch time and
single-row p50 latency.

Datasets: ``wordnet`` (WordNet nouns, ``../shared/data/wordnet``), ``synth``
(the 50,000-label shape of ``../shared/tools/gen_synth_xc.py``), ``confusable``
(generated: clusters of 10 labels sharing half their feature signatures) and
``amazon`` (the Amazon-670K shape of bench_slide.py, its parameters; recall
there is measured on fewer rows, since the exact scores of 670,091 labels
take 2.7 MB a row).

    python benchmarks/bench_retrieval.py
    python benchmarks/bench_retrieval.py --datasets wordnet --test 500
    python benchmarks/bench_retrieval.py --datasets amazon --test 300
    python benchmarks/bench_retrieval.py --sections inference --datasets wordnet,amazon
"""

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_xmc import DEFAULT_DATA, _load_dataset  # noqa: E402

DATASETS = ("wordnet", "synth", "confusable", "amazon")
BUDGETS = (0.005, 0.01, 0.05)
RECALL_K = (1, 5, 50)
TABLE_VARIANTS = (None, 64, 32)  # the default count of tables, then fewer


def _model(name, **params):
    from sksketch import SLIDEClassifier

    if name == "amazon":
        from bench_slide import AMAZON_PARAMS

        params = {**AMAZON_PARAMS, **params}
    return SLIDEClassifier(**{"n_jobs": 2, "random_state": 0, **params})


def _exact(model, X):
    """Hidden rows, the network's top-50 ids and softmax probabilities (float64)."""
    from sksketch._slide import _inference

    Xc = model._check_predict_X(X)
    h = _inference.hidden(model, Xc)
    S = h.astype(np.float64) @ model.output_weights_.T.astype(np.float64)
    S += model.output_bias_
    top = np.argsort(-S, axis=1, kind="stable")[:, : max(RECALL_K)]
    S -= S.max(axis=1, keepdims=True)
    np.exp(S, out=S)
    S /= S.sum(axis=1, keepdims=True)
    return Xc, h, top, S


def _measure(cands, top, P):
    """R@k for each k of RECALL_K and the softmax mass of each row's candidates."""
    out = []
    for k in RECALL_K:
        out.append(np.mean([np.isin(top[i, :k], c).mean() for i, c in enumerate(cands)]))
    out.append(np.mean([P[i, c[c >= 0]].sum() for i, c in enumerate(cands)]))
    return out


def _index_candidates(model, index, h, B):
    """The B labels of each row with the most collisions in the index."""
    from sksketch._kernels import _retrieval as kernels
    from sksketch._slide import _retrieval

    L = model.output_weights_.shape[0]
    keys = index.hash(h, np.ones(h.shape[0], dtype=np.float32), 2)
    none = np.zeros(1, dtype=np.int32)
    ids, _, _ = kernels.candidate_topk(
        keys, index.offsets, index.ids, index.n_buckets, h, model.output_weights_,
        model.output_bias_, np.zeros(h.shape[0] + 1, dtype=np.int32), none,
        np.zeros(1, dtype=np.float32), np.zeros(2, dtype=np.int64), none,
        np.zeros(1, dtype=np.float32), 0.0, False, np.zeros((1, 1), dtype=np.float32), none,
        False, np.zeros(0, dtype=np.int32), B, B, 0, 0, *_retrieval._scratch(2, L), 2)
    return list(ids)


def _table_candidates(model, h, B):
    """What inference="lsh" used before: the training tables' buckets, first come."""
    from sksketch._slide import _plan

    tables = _plan.sized_tables(__import__("copy").deepcopy(model.lsh_tables_), model._plan())
    tables.build(model.output_weights_, n_threads=2)
    return [tables.query(np.ascontiguousarray(v), max_candidates=B) for v in h]


def _with_tables(model, n_tables):
    """A retrieval index like the default one, with ``n_tables`` tables."""
    from sksketch._slide import _retrieval

    saved = _retrieval.index_geometry
    bits = saved(*model.output_weights_.shape)[1]
    _retrieval.index_geometry = lambda n_labels, dim: (n_tables, bits)
    try:
        return _retrieval.RetrievalIndex(model.output_weights_, model.output_bias_,
                                         model.lsh_tables_.seed, 2)
    finally:
        _retrieval.index_geometry = saved


def _hnsw(model, h, budgets):
    try:
        import hnswlib
    except ImportError:
        return None
    W = np.hstack([model.output_weights_, model.output_bias_[:, None]]).astype(np.float32)
    t = time.perf_counter()
    index = hnswlib.Index(space="ip", dim=W.shape[1])
    index.init_index(max_elements=W.shape[0], ef_construction=200, M=16, random_seed=0)
    index.set_num_threads(2)
    index.add_items(W)
    build = time.perf_counter() - t
    q = np.hstack([h, np.ones((h.shape[0], 1), dtype=np.float32)])
    out = {}
    index.set_num_threads(1)
    for B in budgets:
        index.set_ef(max(B, 10))
        t = time.perf_counter()
        labels, _ = index.knn_query(q, k=B)
        out[B] = (list(labels.astype(np.int64)), (time.perf_counter() - t) / len(q))
    return build, out


def _retrieval_report(name, model, X_test, n_test, counts, seed):
    from sksketch._slide import _retrieval

    Xc, h, top, P = _exact(model, X_test[:n_test])
    L = model.output_weights_.shape[0]
    rng = np.random.default_rng(seed)
    freq = counts / counts.sum()
    budgets = [max(1, int(round(f * L))) for f in BUDGETS]
    t = time.perf_counter()
    index = _retrieval.index_for(model)
    build = time.perf_counter() - t
    print(f"  index: {index.n_tables} tables of {index.n_bits} bits, built in {build:.2f} s,"
          f" {index.nbytes / 2**20:.1f} MiB")
    hnsw = _hnsw(model, h, budgets)
    if hnsw is not None:
        print(f"  hnsw (M=16, ef_construction=200): built in {hnsw[0]:.2f} s on 2 threads")
    print(f"  {'source':<34} {'budget':>7} {'R@1':>6} {'R@5':>6} {'R@50':>6} {'mass':>6}"
          f" {'query us':>9}")
    for frac, B in zip(BUDGETS, budgets, strict=True):
        rows = [("exact top-B (oracle)", [top[i, :B] if B <= top.shape[1] else
                                          np.argsort(-P[i])[:B] for i in range(len(h))], None)]
        for n_tables in TABLE_VARIANTS:
            idx = index if n_tables is None else _with_tables(model, n_tables)
            if n_tables is not None and n_tables >= index.n_tables:
                continue
            t = time.perf_counter()
            cands = _index_candidates(model, idx, h, B)
            us = (time.perf_counter() - t) / len(h) * 1e6 * 2  # 2 threads: per-row CPU time
            rows.append((f"index, {idx.n_tables} tables", cands, us))
        rows.append(("training tables (first buckets)", _table_candidates(model, h, B), None))
        rows.append(("uniform", [rng.choice(L, B, replace=False) for _ in range(len(h))], None))
        rows.append(("unigram", [rng.choice(L, B, replace=False, p=freq)
                                 for _ in range(len(h))], None))
        if hnsw is not None:
            rows.append(("hnsw", hnsw[1][B][0], hnsw[1][B][1] * 1e6))
        for label, cands, us in rows:
            r1, r5, r50, mass = _measure(cands, top, P)
            q = f"{us:9.0f}" if us is not None else f"{'':>9}"
            print(f"  {label:<34} {frac:>6.1%} {r1:6.3f} {r5:6.3f} {r50:6.3f} {mass:6.3f}{q}")


def _p_at(ids, Y, k):
    Y = Y.tocsr()
    hits = 0.0
    for i in range(ids.shape[0]):
        row = set(Y.indices[Y.indptr[i] : Y.indptr[i + 1]])
        hits += sum(int(j) in row for j in ids[i, :k]) / k
    return hits / ids.shape[0]


def _inference_report(model, X_test, Y_test, latency_rows):
    print(f"  {'inference':<10} {'P@1':>7} {'P@5':>7} {'batch s':>8} {'p50 ms':>7}")
    for mode in ("full", "lsh"):
        model.set_params(inference=mode)
        model.predict_topk(X_test[:10], k=5)  # builds what the mode needs
        t = time.perf_counter()
        ids, _ = model.predict_topk(X_test, k=5)
        batch = time.perf_counter() - t
        lat = []
        for i in range(min(latency_rows, X_test.shape[0])):
            row = X_test[i : i + 1]
            t = time.perf_counter()
            model.predict_topk(row, k=5)
            lat.append(time.perf_counter() - t)
        print(f"  {mode:<10} {_p_at(ids, Y_test, 1):7.4f} {_p_at(ids, Y_test, 5):7.4f}"
              f" {batch:8.3f} {1e3 * np.median(lat):7.3f}")
    model.set_params(inference="full")


def run(args):
    warnings.simplefilter("ignore")
    for name in args.datasets.split(","):
        data = _load_dataset(name, args)
        if isinstance(data, str):
            print(f"{name}: skipped ({data})")
            continue
        X, Y, X_test, Y_test = data
        print(f"\n{name}: {X.shape[0]} training rows, {X.shape[1]} features, "
              f"{Y.shape[1]} labels; recall on {min(args.test, X_test.shape[0])} test rows")
        counts = np.asarray(Y.sum(axis=0)).ravel().astype(np.float64) + 1.0
        recall = "recall" in args.sections.split(",")
        for epochs in (1, None) if recall else (None,):
            params = {} if epochs is None else {"max_iter": epochs}
            t = time.perf_counter()
            model = _model(name, **params).fit(X, Y)
            fit = time.perf_counter() - t
            print(f"\n {'after 1 epoch' if epochs else 'default fit'} ({fit:.1f} s)")
            if recall:
                _retrieval_report(name, model, X_test, args.test, counts, args.seed)
        if "inference" in args.sections.split(","):
            _inference_report(model, X_test, Y_test, args.latency_rows)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default=",".join(DATASETS[:3]),
                        help=f"comma-separated, of {', '.join(DATASETS)}")
    parser.add_argument("--sections", default="recall,inference",
                        help="comma-separated, of recall (after one epoch and after the "
                             "default fit) and inference (the default fit)")
    parser.add_argument("--test", type=int, default=1000, help="test rows for recall")
    parser.add_argument("--latency-rows", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--cache-dir", type=Path,
                        default=Path.home() / ".cache" / "sksketch-bench")
    parser.add_argument("--amazon-rows", type=int, default=100_000)
    parser.add_argument("--amazon-test-rows", type=int, default=2000)
    run(parser.parse_args(argv))


if __name__ == "__main__":
    main()
