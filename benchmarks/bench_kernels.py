"""Speed of each SIMD variant of the kernel primitives against the portable one.

Every variant the machine supports runs in this one process on the same data
(the kernels take ``isa=``). Each measurement loops the kernel inside one
compiled call (``repeat=``) long enough to make the Python call negligible,
and reports the median over ``--repeats`` timings. Ratios are speed-ups over
the portable variant (portable time / variant time: higher is faster).

    python benchmarks/bench_kernels.py            # full table
    python benchmarks/bench_kernels.py --quick    # fewer repeats, smaller sizes
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
    f32 = np.float32

    def vec(n):
        return rng.standard_normal(n).astype(f32)

    def bf16(shape):
        return _simd.f32_to_bf16(rng.standard_normal(shape).astype(f32).ravel()).reshape(shape)

    cases = []
    for n in (128, 4096) if quick else (128, 4096, 1 << 20):
        x, y = vec(n), vec(n)
        cases.append(("dot", f"n={n}", lambda isa, r, x=x, y=y: _simd.dot(x, y, isa=isa, repeat=r)))
        cases.append(
            ("axpy", f"n={n}", lambda isa, r, x=x, y=y.copy(): _simd.axpy(1e-7, x, y, isa=isa, repeat=r))
        )
        hx, hy = bf16(n), bf16(n)
        cases.append(
            ("dot_bf16", f"n={n}", lambda isa, r, x=hx, y=hy: _simd.dot_bf16(x, y, isa=isa, repeat=r))
        )

    for n_weight_rows, where in ((64, "L1"), (256, "L2")) + (() if quick else ((100_000, "RAM"),)):
        w = rng.standard_normal((n_weight_rows, 128)).astype(f32)
        x = vec(128)
        rows = rng.integers(0, n_weight_rows, 1024).astype(np.int32)
        label = f"1024 rows x 128, weights in {where}"
        cases.append(
            ("gather_dot", label, lambda isa, r, x=x, w=w, rows=rows: _simd.gather_dot(x, w, rows, isa=isa, repeat=r))
        )
        hw, hx = bf16(w.shape), bf16(128)
        cases.append(
            ("gather_dot_bf16", label,
             lambda isa, r, x=hx, w=hw, rows=rows: _simd.gather_dot_bf16(x, w, rows, isa=isa, repeat=r))
        )

    for n_weight_rows, where in ((64, "L1"), (4096, "L2/L3")) + (() if quick else ((135_909, "RAM"),)):
        w = rng.standard_normal((n_weight_rows, 128)).astype(f32)
        idx = rng.integers(0, n_weight_rows, 75).astype(np.int32)
        val = vec(75)
        out = np.zeros(128, dtype=f32)
        cases.append(
            ("sparse_dense_accum", f"nnz=75 x 128, weights in {where}",
             lambda isa, r, idx=idx, val=val, w=w, out=out: _simd.sparse_dense_accum(idx, val, w, out, isa=isa, repeat=r))
        )

    for n in (128, 1500) if quick else (128, 1500, 100_000):
        z = vec(n) * 5
        cases.append(("softmax", f"n={n}", lambda isa, r, z=z: _simd.softmax(z, isa=isa, repeat=r)))

    for n, k in ((1500, 5), (100_000, 5)) if quick else ((1500, 5), (100_000, 5), (670_091, 5), (100_000, 100)):
        s = vec(n)
        cases.append(("topk", f"n={n} k={k}", lambda isa, r, s=s, k=k: _simd.topk(s, k, isa=isa, repeat=r)))

    n = 1 << 17
    xf, xh = vec(n), bf16(n)
    cases.append(("f32_to_bf16", f"n={n}", lambda isa, r, x=xf: _simd.f32_to_bf16(x, isa=isa, repeat=r)))
    cases.append(("bf16_to_f32", f"n={n}", lambda isa, r, x=xh: _simd.bf16_to_f32(x, isa=isa, repeat=r)))
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
    header = f"{'primitive':<20} {'size':<34} {'scalar':>11}" + "".join(f" {isa:>12}" for isa in isas[1:])
    print(header)
    print("-" * len(header))
    results = {}
    rng = np.random.default_rng(0)
    for name, size, fn in _cases(args.quick, rng):
        fns = {isa: (lambda r, isa=isa: fn(isa, r)) for isa in isas}
        t = _per_call_seconds(fns, repeats, min_seconds)
        results[name, size] = t
        row = f"{name:<20} {size:<34} {t['scalar'] * 1e6:>9.2f}us"
        row += "".join(f" {t['scalar'] / t[isa]:>11.2f}x" for isa in isas[1:])
        print(row, flush=True)

    best = isas[-1]
    if best.startswith("avx512"):
        in_cache = [v for (name, size), v in results.items() if name == "gather_dot" and "RAM" not in size]
        worst = min(v["scalar"] / v["avx512"] for v in in_cache)
        verdict = "met" if worst >= GATHER_DOT_TARGET else "NOT met"
        print(
            f"\nAVX-512 gathered dot, 128-wide rows in cache: at least {worst:.2f}x the portable "
            f"variant (target {GATHER_DOT_TARGET:.0f}x: {verdict})"
        )
    else:
        print(f"\nNo AVX-512 on this machine; best variant: {best}")


if __name__ == "__main__":
    main()
