"""Speed of each SIMD variant of the kernel primitives against the portable one.

Every variant the machine supports runs in this one process on the same data
(the kernels take ``isa=``). Each measurement loops the kernel inside one
compiled call (``repeat=``) long enough to make the Python call negligible,
and reports the median over ``--repeats`` timings. Ratios are speed-ups over
the portable variant (portable time / variant time: higher is faster).

    python benchmarks/bench_kernels.py            # full table
    python benchmarks/bench_kernels.py --quick    # fewer repeats, smaller sizes

A last table times SLIDE's full-inference scoring kernel (``output_scores``:
every entry independent of the batch and the thread count) against the BLAS
product ``hidden @ W.T + b`` it replaced, both on 2 threads (ratio: our time /
BLAS time, lower is faster).
"""

import argparse
import statistics
import time

import numpy as np

import sksketch
from sksketch._kernels import _simd

# The AVX-512 gathered dot product over 128-wide float32 rows, on weights that
# fit in L1/L2, should beat the portable path by at least this much.
GATHER_DOT_TARGET = 3.0


def _calibrate(fn, min_seconds):
    """Kernel runs per timing so that one timing lasts about `min_seconds`."""
    reps = 1
    while True:
        start = time.perf_counter()
        fn(reps)
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds or reps >= 1 << 24:
            return reps
        reps *= max(2, min(100, int(min_seconds / max(elapsed, 1e-9))))


def _per_call_seconds(fns, repeats, min_seconds):
    """Median seconds per kernel run for each of `fns` (name -> fn(reps)).

    The variants are timed in turn within each repeat, so that a change in
    machine load between repeats affects all of them alike.
    """
    reps = {name: _calibrate(fn, min_seconds) for name, fn in fns.items()}
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn(reps[name])
            times[name].append((time.perf_counter() - start) / reps[name])
    return {name: statistics.median(t) for name, t in times.items()}


def _cases(quick, rng):
    """(primitive, size, fn) where fn(isa, reps) runs the kernel reps times."""
    f32 = np.float32
    S = _simd

    def vec(n):
        return rng.standard_normal(n).astype(f32)

    def bf16(shape):
        return S.f32_to_bf16(rng.standard_normal(shape).astype(f32).ravel()).reshape(shape)

    cases = []

    def add(name, size, kernel, *args):
        cases.append((name, size, lambda isa, r: kernel(*args, isa=isa, repeat=r)))

    for n in (128, 4096) if quick else (128, 4096, 1 << 20):
        add("dot", f"n={n}", S.dot, vec(n), vec(n))
        add("axpy", f"n={n}", S.axpy, 1e-7, vec(n), vec(n))
        add("dot_bf16", f"n={n}", S.dot_bf16, bf16(n), bf16(n))

    gather_sizes = [(64, "L1"), (256, "L2")] + ([] if quick else [(100_000, "RAM")])
    for n_weight_rows, where in gather_sizes:
        w = rng.standard_normal((n_weight_rows, 128)).astype(f32)
        rows = rng.integers(0, n_weight_rows, 1024).astype(np.int32)
        label = f"1024 rows x 128, weights in {where}"
        add("gather_dot", label, S.gather_dot, vec(128), w, rows)
        add("gather_dot2", label, S.gather_dot2, vec(128), vec(128), w, rows)
        add("gather_dot_bf16", label, S.gather_dot_bf16, bf16(128), bf16(w.shape), rows)

    accum_sizes = [(64, "L1"), (4096, "L2/L3")] + ([] if quick else [(135_909, "RAM")])
    for n_weight_rows, where in accum_sizes:
        w = rng.standard_normal((n_weight_rows, 128)).astype(f32)
        idx = rng.integers(0, n_weight_rows, 75).astype(np.int32)
        out = np.zeros(128, dtype=f32)
        add("sparse_dense_accum", f"nnz=75 x 128, weights in {where}",
            S.sparse_dense_accum, idx, vec(75), w, out)

    for n in (128, 1500) if quick else (128, 1500, 100_000):
        add("softmax", f"n={n}", S.softmax, vec(n) * 5)

    topk_sizes = [(1500, 5), (100_000, 5)]
    if not quick:
        topk_sizes += [(670_091, 5), (100_000, 100)]
    for n, k in topk_sizes:
        add("topk", f"n={n} k={k}", S.topk, vec(n), k)

    n = 1 << 17
    add("f32_to_bf16", f"n={n}", S.f32_to_bf16, vec(n))
    add("bf16_to_f32", f"n={n}", S.bf16_to_f32, bf16(n))
    return cases


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats and sizes")
    parser.add_argument("--repeats", type=int, default=None, help="timings per median")
    args = parser.parse_args(argv)
    repeats = args.repeats or (3 if args.quick else 7)
    min_seconds = 0.01 if args.quick else 0.05

    sksketch.show_config()
    isas = _simd.supported_isas()
    print(f"\nKernel speed-up over the portable variant (median of {repeats}; higher is faster)")
    header = f"{'primitive':<20} {'size':<34} {'scalar':>11}"
    header += "".join(f" {isa:>12}" for isa in isas[1:])
    print(header)
    print("-" * len(header))
    results = {}
    rng = np.random.default_rng(0)
    for name, size, fn in _cases(args.quick, rng):
        fns = {isa: (lambda r, isa=isa, fn=fn: fn(isa, r)) for isa in isas}
        t = _per_call_seconds(fns, repeats, min_seconds)
        results[name, size] = t
        row = f"{name:<20} {size:<34} {t['scalar'] * 1e6:>9.2f}us"
        row += "".join(f" {t['scalar'] / t[isa]:>11.2f}x" for isa in isas[1:])
        print(row, flush=True)

    best = isas[-1]
    if best.startswith("avx512"):
        in_cache = [
            v for (name, size), v in results.items() if name == "gather_dot" and "RAM" not in size
        ]
        worst = min(v["scalar"] / v["avx512"] for v in in_cache)
        verdict = "met" if worst >= GATHER_DOT_TARGET else "NOT met"
        print(
            f"\nAVX-512 gathered dot, 128-wide rows in cache: at least {worst:.2f}x the portable "
            f"variant (target {GATHER_DOT_TARGET:.0f}x: {verdict})"
        )
    else:
        print(f"\nNo AVX-512 on this machine; best variant: {best}")
    _output_scores_vs_blas(args.quick, repeats, min_seconds)


def _output_scores_vs_blas(quick, repeats, min_seconds):
    from threadpoolctl import threadpool_limits

    from sksketch._kernels import _network

    def looped(fn):
        return lambda reps: [fn() for _ in range(reps)]

    rng = np.random.default_rng(0)
    shapes = [(1, 100_000, 128), (167, 100_000, 128), (2000, 1000, 64), (1, 670_000, 128)]
    if quick:
        shapes = [(1, 20_000, 128), (64, 20_000, 128)]
    print(f"\nFull-inference scores (median of {repeats}; 2 threads each)")
    print(f"{'rows x labels x hidden':<26} {'output_scores':>14} {'BLAS':>10} {'ours/BLAS':>10}")
    for n, n_labels, width in shapes:
        hidden = rng.random((n, width), dtype=np.float32)
        W = rng.standard_normal((n_labels, width), dtype=np.float32)
        b = rng.standard_normal(n_labels, dtype=np.float32)
        fns = {
            "ours": looped(lambda h=hidden, W=W, b=b: _network.output_scores(h, W, b, 2)),
            "blas": looped(lambda h=hidden, W=W, b=b: h @ W.T + b),
        }
        with threadpool_limits(2):
            t = _per_call_seconds(fns, repeats, min_seconds)
        print(f"{f'{n} x {n_labels:,} x {width}':<26} {t['ours'] * 1e3:>11.2f} ms "
              f"{t['blas'] * 1e3:>7.2f} ms {t['ours'] / t['blas']:>9.2f}x", flush=True)


if __name__ == "__main__":
    main()
