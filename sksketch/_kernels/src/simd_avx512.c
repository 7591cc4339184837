/*
 * AVX-512 variants: F/BW/DQ/VL for everything, plus AVX512_BF16 for the
 * bfloat16 dot products (VDPBF16PS: 32 products per instruction). Compiled at
 * baseline flags with per-function target attributes; run only where the
 * dispatcher found the features and OS support for the opmask and ZMM states.
 * Tails use masked loads and stores, which never touch memory outside the mask.
 */
#include "simd.h"

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define SKS_BUILD_AVX512 1
#if (defined(__clang__) && __clang_major__ >= 9) || (!defined(__clang__) && __GNUC__ >= 10)
#define SKS_BUILD_AVX512_BF16 1
#endif
#endif

#ifdef SKS_BUILD_AVX512
#include <immintrin.h>
#include <math.h>

#include "simd_topk.h"

#define SKS_AVX512 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")))
#define SKS_AVX512BF16 \
    __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx512bf16,avx2,fma")))

SKS_AVX512 static inline __mmask16 mask16(sks_idx r)
{
    return r >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << r) - 1u);
}

SKS_AVX512 static inline __m512 bf16x16_to_f32(__m256i h)
{
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

SKS_AVX512 static float dot_avx512(const float *x, const float *y, sks_idx n)
{
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
    __m512 a2 = _mm512_setzero_ps(), a3 = _mm512_setzero_ps();
    sks_idx i = 0;
    for (; i + 64 <= n; i += 64) {
        a0 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i), a0);
        a1 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i + 16), _mm512_loadu_ps(y + i + 16), a1);
        a2 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i + 32), _mm512_loadu_ps(y + i + 32), a2);
        a3 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i + 48), _mm512_loadu_ps(y + i + 48), a3);
    }
    for (; i + 16 <= n; i += 16)
        a0 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i), a0);
    if (i < n) {
        __mmask16 m = mask16(n - i);
        a1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, x + i), _mm512_maskz_loadu_ps(m, y + i), a1);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
}

SKS_AVX512 static float dot_bf16_avx512(const sks_bf16 *x, const sks_bf16 *y, sks_idx n)
{
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
    sks_idx i = 0;
    for (; i + 32 <= n; i += 32) {
        a0 = _mm512_fmadd_ps(bf16x16_to_f32(_mm256_loadu_si256((const __m256i *)(x + i))),
                             bf16x16_to_f32(_mm256_loadu_si256((const __m256i *)(y + i))), a0);
        a1 = _mm512_fmadd_ps(bf16x16_to_f32(_mm256_loadu_si256((const __m256i *)(x + i + 16))),
                             bf16x16_to_f32(_mm256_loadu_si256((const __m256i *)(y + i + 16))), a1);
    }
    for (; i < n; i += 16) {
        __mmask16 m = mask16(n - i);
        a0 = _mm512_fmadd_ps(bf16x16_to_f32(_mm256_maskz_loadu_epi16(m, x + i)),
                             bf16x16_to_f32(_mm256_maskz_loadu_epi16(m, y + i)), a0);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
}

SKS_AVX512 static void axpy_avx512(float alpha, const float *x, float *y, sks_idx n)
{
    __m512 a = _mm512_set1_ps(alpha);
    sks_idx i = 0;
    for (; i + 32 <= n; i += 32) {
        _mm512_storeu_ps(y + i, _mm512_fmadd_ps(a, _mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i)));
        _mm512_storeu_ps(y + i + 16,
                         _mm512_fmadd_ps(a, _mm512_loadu_ps(x + i + 16), _mm512_loadu_ps(y + i + 16)));
    }
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(y + i, _mm512_fmadd_ps(a, _mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i)));
    if (i < n) {
        __mmask16 m = mask16(n - i);
        _mm512_mask_storeu_ps(
            y + i, m, _mm512_fmadd_ps(a, _mm512_maskz_loadu_ps(m, x + i), _mm512_maskz_loadu_ps(m, y + i)));
    }
}

/* Column blocks of 64 stay in four registers across the whole nonzero list. */
/* out[0:m] += sum_j (values[j] * scale) * weights[indices[j] * ld + 0:m], out kept in
   registers across the j (64 columns at a time, then 16): with `rounded`, each
   product is rounded before its sum (an empty asm keeps the compiler from fusing
   them), else one FMA; `rounded` is a constant at each call, and scale 1 changes no
   value */
SKS_AVX512 static inline __attribute__((always_inline)) void sda_avx512(
    const int32_t *indices, const float *values, float scale, sks_idx nnz,
    const float *weights, sks_idx ld, sks_idx m, float *out, const int rounded)
{
    sks_idx c = 0, j;
    for (; c + 64 <= m; c += 64) {
        __m512 a[4];
        int q;
        for (q = 0; q < 4; q++)
            a[q] = _mm512_loadu_ps(out + c + 16 * q);
        for (j = 0; j < nnz; j++) {
            const float *w = weights + (sks_idx)indices[j] * ld + c;
            __m512 v = _mm512_set1_ps(rounded ? values[j] * scale : values[j]);
            for (q = 0; q < 4; q++) {
                if (rounded) {
                    __m512 p = _mm512_mul_ps(v, _mm512_loadu_ps(w + 16 * q));
                    __asm__("" : "+v"(p));
                    a[q] = _mm512_add_ps(a[q], p);
                } else {
                    a[q] = _mm512_fmadd_ps(v, _mm512_loadu_ps(w + 16 * q), a[q]);
                }
            }
        }
        for (q = 0; q < 4; q++)
            _mm512_storeu_ps(out + c + 16 * q, a[q]);
    }
    for (; c < m; c += 16) {
        __mmask16 mk = mask16(m - c);
        __m512 a0 = _mm512_maskz_loadu_ps(mk, out + c);
        for (j = 0; j < nnz; j++) {
            const float *w = weights + (sks_idx)indices[j] * ld + c;
            __m512 v = _mm512_set1_ps(rounded ? values[j] * scale : values[j]);
            if (rounded) {
                __m512 p = _mm512_mul_ps(v, _mm512_maskz_loadu_ps(mk, w));
                __asm__("" : "+v"(p));
                a0 = _mm512_add_ps(a0, p);
            } else {
                a0 = _mm512_fmadd_ps(v, _mm512_maskz_loadu_ps(mk, w), a0);
            }
        }
        _mm512_mask_storeu_ps(out + c, mk, a0);
    }
}

SKS_AVX512 static void sparse_dense_accum_avx512(const int32_t *indices, const float *values,
                                                 sks_idx nnz, const float *weights, sks_idx ld,
                                                 sks_idx m, float *out)
{
    sda_avx512(indices, values, 1.0f, nnz, weights, ld, m, out, 0);
}

/* sda_avx512 (not rounded) of four rows over the same indices, each weight
   vector loaded once for the four: per row and column the same FMAs in the
   same order, so the bits of four sparse_dense_accum_avx512 calls */
SKS_AVX512 static void sparse_dense_accum4_avx512(const int32_t *indices,
                                                  const float *const *values, sks_idx nnz,
                                                  const float *weights, sks_idx ld, sks_idx m,
                                                  float *const *out)
{
    sks_idx c = 0, j;
    int q, r;
    for (; c + 64 <= m; c += 64) {
        __m512 a[4][4];
        for (r = 0; r < 4; r++)
            for (q = 0; q < 4; q++)
                a[r][q] = _mm512_loadu_ps(out[r] + c + 16 * q);
        for (j = 0; j < nnz; j++) {
            const float *w = weights + (sks_idx)indices[j] * ld + c;
            __m512 wv[4];
            for (q = 0; q < 4; q++)
                wv[q] = _mm512_loadu_ps(w + 16 * q);
            for (r = 0; r < 4; r++) {
                __m512 v = _mm512_set1_ps(values[r][j]);
                for (q = 0; q < 4; q++)
                    a[r][q] = _mm512_fmadd_ps(v, wv[q], a[r][q]);
            }
        }
        for (r = 0; r < 4; r++)
            for (q = 0; q < 4; q++)
                _mm512_storeu_ps(out[r] + c + 16 * q, a[r][q]);
    }
    for (; c < m; c += 16) {
        __mmask16 mk = mask16(m - c);
        __m512 a[4];
        for (r = 0; r < 4; r++)
            a[r] = _mm512_maskz_loadu_ps(mk, out[r] + c);
        for (j = 0; j < nnz; j++) {
            __m512 wv = _mm512_maskz_loadu_ps(mk, weights + (sks_idx)indices[j] * ld + c);
            for (r = 0; r < 4; r++)
                a[r] = _mm512_fmadd_ps(_mm512_set1_ps(values[r][j]), wv, a[r]);
        }
        for (r = 0; r < 4; r++)
            _mm512_mask_storeu_ps(out[r] + c, mk, a[r]);
    }
}

SKS_AVX512 static void sparse_dense_accum_bf16_avx512(const int32_t *indices,
                                                      const float *values, sks_idx nnz,
                                                      const sks_bf16 *weights, sks_idx ld,
                                                      sks_idx m, float *out)
{
    sks_idx c = 0, j;
    for (; c + 64 <= m; c += 64) {
        __m512 a0 = _mm512_loadu_ps(out + c), a1 = _mm512_loadu_ps(out + c + 16);
        __m512 a2 = _mm512_loadu_ps(out + c + 32), a3 = _mm512_loadu_ps(out + c + 48);
        for (j = 0; j < nnz; j++) {
            const __m256i *w = (const __m256i *)(weights + (sks_idx)indices[j] * ld + c);
            __m512 v = _mm512_set1_ps(values[j]);
            a0 = _mm512_fmadd_ps(v, bf16x16_to_f32(_mm256_loadu_si256(w)), a0);
            a1 = _mm512_fmadd_ps(v, bf16x16_to_f32(_mm256_loadu_si256(w + 1)), a1);
            a2 = _mm512_fmadd_ps(v, bf16x16_to_f32(_mm256_loadu_si256(w + 2)), a2);
            a3 = _mm512_fmadd_ps(v, bf16x16_to_f32(_mm256_loadu_si256(w + 3)), a3);
        }
        _mm512_storeu_ps(out + c, a0);
        _mm512_storeu_ps(out + c + 16, a1);
        _mm512_storeu_ps(out + c + 32, a2);
        _mm512_storeu_ps(out + c + 48, a3);
    }
    for (; c < m; c += 16) {
        __mmask16 mk = mask16(m - c);
        __m512 a0 = _mm512_maskz_loadu_ps(mk, out + c);
        for (j = 0; j < nnz; j++) {
            const sks_bf16 *w = weights + (sks_idx)indices[j] * ld + c;
            a0 = _mm512_fmadd_ps(_mm512_set1_ps(values[j]),
                                 bf16x16_to_f32(_mm256_maskz_loadu_epi16(mk, w)), a0);
        }
        _mm512_mask_storeu_ps(out + c, mk, a0);
    }
}

/* Horizontal sums of four vectors at once: lane r of the result is the sum of
   a_r. A shuffle tree costs far less than four separate reductions. */
SKS_AVX512 static inline __m128 reduce4(__m512 a0, __m512 a1, __m512 a2, __m512 a3)
{
    __m512 s01 = _mm512_add_ps(_mm512_unpacklo_ps(a0, a1), _mm512_unpackhi_ps(a0, a1));
    __m512 s23 = _mm512_add_ps(_mm512_unpacklo_ps(a2, a3), _mm512_unpackhi_ps(a2, a3));
    __m512 s = _mm512_add_ps(
        _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(s01), _mm512_castps_pd(s23))),
        _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(s01), _mm512_castps_pd(s23))));
    s = _mm512_add_ps(s, _mm512_shuffle_f32x4(s, s, _MM_SHUFFLE(1, 0, 3, 2)));
    s = _mm512_add_ps(s, _mm512_shuffle_f32x4(s, s, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm512_castps512_ps128(s);
}

/* Eight rows at a time: each load of x feeds eight independent FMA chains,
   enough to cover the FMA latency on two FMA ports. */
SKS_AVX512 static void gather_dot_avx512(const float *x, const float *weights, sks_idx ld,
                                         const int32_t *rows, sks_idx n_rows, sks_idx m, float *out)
{
    sks_idx r = 0, i;
    for (; r + 8 <= n_rows; r += 8) {
        const float *w[8];
        __m512 a[8];
        int q;
        for (q = 0; q < 8; q++) {
            w[q] = weights + (sks_idx)rows[r + q] * ld;
            a[q] = _mm512_setzero_ps();
        }
        for (i = 0; i + 16 <= m; i += 16) {
            __m512 xv = _mm512_loadu_ps(x + i);
            for (q = 0; q < 8; q++)
                a[q] = _mm512_fmadd_ps(xv, _mm512_loadu_ps(w[q] + i), a[q]);
        }
        if (i < m) {
            __mmask16 mk = mask16(m - i);
            __m512 xv = _mm512_maskz_loadu_ps(mk, x + i);
            for (q = 0; q < 8; q++)
                a[q] = _mm512_fmadd_ps(xv, _mm512_maskz_loadu_ps(mk, w[q] + i), a[q]);
        }
        _mm_storeu_ps(out + r, reduce4(a[0], a[1], a[2], a[3]));
        _mm_storeu_ps(out + r + 4, reduce4(a[4], a[5], a[6], a[7]));
    }
    for (; r < n_rows; r++)
        out[r] = dot_avx512(x, weights + (sks_idx)rows[r] * ld, m);
}

/* gather_dot_avx512 for x0 and x1 at once: the same instructions per (x, row)
   pair, so the same bits; each weight vector is loaded once for both (ten
   loads feed sixteen FMAs, where one row's eight need nine), and the sixteen
   independent sums hide the FMA latency. */
SKS_AVX512 static void gather_dot2_avx512(const float *x0, const float *x1,
                                          const float *weights, sks_idx ld, const int32_t *rows,
                                          sks_idx n_rows, sks_idx m, float *out0, float *out1)
{
    sks_idx r = 0, i;
    for (; r + 8 <= n_rows; r += 8) {
        const float *w[8];
        __m512 a[8], c[8], xv, yv, wv;
        int q;
        for (q = 0; q < 8; q++) {
            w[q] = weights + (sks_idx)rows[r + q] * ld;
            a[q] = c[q] = _mm512_setzero_ps();
        }
        for (i = 0; i + 16 <= m; i += 16) {
            xv = _mm512_loadu_ps(x0 + i);
            yv = _mm512_loadu_ps(x1 + i);
            for (q = 0; q < 8; q++) {
                wv = _mm512_loadu_ps(w[q] + i);
                a[q] = _mm512_fmadd_ps(xv, wv, a[q]);
                c[q] = _mm512_fmadd_ps(yv, wv, c[q]);
            }
        }
        if (i < m) {
            __mmask16 mk = mask16(m - i);
            xv = _mm512_maskz_loadu_ps(mk, x0 + i);
            yv = _mm512_maskz_loadu_ps(mk, x1 + i);
            for (q = 0; q < 8; q++) {
                wv = _mm512_maskz_loadu_ps(mk, w[q] + i);
                a[q] = _mm512_fmadd_ps(xv, wv, a[q]);
                c[q] = _mm512_fmadd_ps(yv, wv, c[q]);
            }
        }
        _mm_storeu_ps(out0 + r, reduce4(a[0], a[1], a[2], a[3]));
        _mm_storeu_ps(out0 + r + 4, reduce4(a[4], a[5], a[6], a[7]));
        _mm_storeu_ps(out1 + r, reduce4(c[0], c[1], c[2], c[3]));
        _mm_storeu_ps(out1 + r + 4, reduce4(c[4], c[5], c[6], c[7]));
    }
    for (; r < n_rows; r++) {
        out0[r] = dot_avx512(x0, weights + (sks_idx)rows[r] * ld, m);
        out1[r] = dot_avx512(x1, weights + (sks_idx)rows[r] * ld, m);
    }
}

/* Sums of up to four rows of W with x, as one group of gather_dot_avx512
   computes each (one FMA chain per lane, then reduce4's tree, the same for
   each of its four sums) */
SKS_AVX512 static inline void group_sums(const float *x, const float *weights, sks_idx ld,
                                         sks_idx m, const int32_t *rows, int n, float *r)
{
    __m512 a[4];
    sks_idx i;
    int t;
    for (t = 0; t < 4; t++)
        a[t] = _mm512_setzero_ps();
    for (i = 0; i + 16 <= m; i += 16) {
        __m512 xv = _mm512_loadu_ps(x + i);
        for (t = 0; t < n; t++)
            a[t] = _mm512_fmadd_ps(xv, _mm512_loadu_ps(weights + (sks_idx)rows[t] * ld + i),
                                   a[t]);
    }
    if (i < m) {
        __mmask16 mk = mask16(m - i);
        __m512 xv = _mm512_maskz_loadu_ps(mk, x + i);
        for (t = 0; t < n; t++)
            a[t] = _mm512_fmadd_ps(
                xv, _mm512_maskz_loadu_ps(mk, weights + (sks_idx)rows[t] * ld + i), a[t]);
    }
    _mm_storeu_ps(r, reduce4(a[0], a[1], a[2], a[3]));
}

/* out[q] = (the score gather_dot_avx512 gives label j = cand[q] of W for x,
   when it scores labels 0 to n_labels - 1 eight at a time from 0) + b[j]:
   a label of a whole group of eight gets the group's arithmetic, the others
   dot_avx512's. gather_dot2_avx512 gives the same bits, so these are
   output_scores' (for the screening in simd_amx.c). */
SKS_AVX512 void sks_group_dots_avx512(const float *x, const float *weights, sks_idx ld,
                                      sks_idx m, sks_idx n_labels, const int32_t *cand,
                                      sks_idx n, const float *b, float *out)
{
    sks_idx q, slot[4];
    int32_t rows[4];
    float r[4];
    int pend = 0, t;
    for (q = 0; q < n; q++) {
        int32_t j = cand[q];
        if ((sks_idx)(j & ~7) + 8 > n_labels) {
            out[q] = dot_avx512(x, weights + (sks_idx)j * ld, m) + b[j];
            continue;
        }
        rows[pend] = j;
        slot[pend++] = q;
        if (pend == 4) {
            group_sums(x, weights, ld, m, rows, 4, r);
            for (t = 0; t < 4; t++)
                out[slot[t]] = r[t] + b[rows[t]];
            pend = 0;
        }
    }
    if (pend) {
        group_sums(x, weights, ld, m, rows, pend, r);
        for (t = 0; t < pend; t++)
            out[slot[t]] = r[t] + b[rows[t]];
    }
}

SKS_AVX512 static void gather_dot_bf16_avx512(const sks_bf16 *x, const sks_bf16 *weights,
                                              sks_idx ld, const int32_t *rows, sks_idx n_rows,
                                              sks_idx m, float *out)
{
    sks_idx r;
    for (r = 0; r < n_rows; r++)
        out[r] = dot_bf16_avx512(x, weights + (sks_idx)rows[r] * ld, m);
}

/* exp with Cody-Waite reduction, a degree-6 polynomial (Cephes expf
   coefficients, ~1 ulp) and VSCALEFPS for 2^n, which handles the gradual
   underflow; inputs are clamped to [-150, 88] first so -inf gives 0. */
SKS_AVX512 static inline __m512 exp512(__m512 x)
{
    __m512 xc = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-150.f)), _mm512_set1_ps(88.f));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(xc, _mm512_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), xc);
    __m512 p, r2;
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    r2 = _mm512_mul_ps(r, r);
    p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    p = _mm512_fmadd_ps(p, r2, _mm512_add_ps(r, _mm512_set1_ps(1.f)));
    return _mm512_scalef_ps(p, n);
}

SKS_AVX512 static float softmax_avx512(const float *z, sks_idx n, float *out)
{
    __m512 vmax = _mm512_set1_ps(-INFINITY), vsum = _mm512_setzero_ps(), vz, vinv;
    float zmax, sum;
    sks_idx i;
    if (n == 0)
        return -INFINITY;
    for (i = 0; i < n; i += 16)
        vmax = _mm512_max_ps(vmax, _mm512_mask_loadu_ps(_mm512_set1_ps(-INFINITY), mask16(n - i), z + i));
    zmax = _mm512_reduce_max_ps(vmax);
    if (zmax == -INFINITY) {
        for (i = 0; i < n; i++)
            out[i] = 1.f / (float)n;
        return -INFINITY;
    }
    vz = _mm512_set1_ps(zmax);
    for (i = 0; i < n; i += 16) {
        __mmask16 mk = mask16(n - i);
        __m512 e = exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(mk, z + i), vz));
        e = _mm512_maskz_mov_ps(mk, e);
        _mm512_mask_storeu_ps(out + i, mk, e);
        vsum = _mm512_add_ps(vsum, e);
    }
    sum = _mm512_reduce_add_ps(vsum);
    vinv = _mm512_set1_ps(1.f / sum);
    for (i = 0; i < n; i += 16) {
        __mmask16 mk = mask16(n - i);
        _mm512_mask_storeu_ps(out + i, mk, _mm512_mul_ps(_mm512_maskz_loadu_ps(mk, out + i), vinv));
    }
    return zmax + logf(sum);
}

/* The k-th largest (k <= 16) of the sixteen lanes of m, none NaN: the least
   lane value with fewer than k lanes above it. */
SKS_AVX512 static inline float kth_lane(__m512 m, sks_idx k)
{
    const __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const __m512i one = _mm512_set1_epi32(1), low4 = _mm512_set1_epi32(15);
    __m512i above = _mm512_setzero_si512();
    int r;
    for (r = 1; r < 16; r++) {
        __m512 other = _mm512_permutexvar_ps(
            _mm512_and_si512(_mm512_add_epi32(iota, _mm512_set1_epi32(r)), low4), m);
        above = _mm512_mask_add_epi32(above, _mm512_cmp_ps_mask(other, m, _CMP_GT_OQ), above,
                                      one);
    }
    return _mm512_mask_reduce_min_ps(
        _mm512_cmplt_epi32_mask(above, _mm512_set1_epi32((int)k)), m);
}

/* Compare 16 scores at once with the heap's current worst; almost every block
   of a long score vector is rejected by one compare and one branch. For
   k <= 16 of 64 to 8,192 scores (none NaN), a first pass takes each lane's
   maximum: the k-th largest of those, t, is at most the k-th largest score,
   so only scores >= t are offered (without it, the heap's worst climbs from
   the first k scores, and most rows of a few hundred labels offered dozens;
   a longer row offers few for its length, and the pass would cost more than
   it saves: 3.0 against 3.5 us a row of 16,384 scores, 1.3 against 0.95 of
   4,096, 0.80 against 0.39 of 983).
   The heap keeps the k best of what it is offered, by value and then lower
   index, so the top k are the same. */
SKS_AVX512 static sks_idx topk_avx512(const float *s, sks_idx n, sks_idx k, int32_t *idx, float *val)
{
    sks_idx i;
    __m512 thr, floor = _mm512_set1_ps(-INFINITY);
    if (k > n)
        k = n;
    if (k <= 0)
        return 0;
    if (k <= 16 && n >= 64 && n <= 8192) {
        __m512 m = _mm512_loadu_ps(s);
        __mmask16 nan = _mm512_cmp_ps_mask(m, m, _CMP_UNORD_Q);
        for (i = 16; i + 16 <= n; i += 16) {
            __m512 x = _mm512_loadu_ps(s + i);
            nan |= _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q);
            m = _mm512_max_ps(m, x);
        }
        if (i < n) {
            __mmask16 mk = mask16(n - i);
            __m512 x = _mm512_maskz_loadu_ps(mk, s + i);
            nan |= _mm512_mask_cmp_ps_mask(mk, x, x, _CMP_UNORD_Q);
            m = _mm512_mask_max_ps(m, mk, m, x);
        }
        if (!nan)
            floor = _mm512_set1_ps(kth_lane(m, k));
    }
    sks_heap_init(s, k, idx, val);
    thr = _mm512_set1_ps(val[0]);
    for (i = k; i + 16 <= n; i += 16) {
        __m512 x = _mm512_loadu_ps(s + i);
        __mmask16 bits = _mm512_mask_cmp_ps_mask(_mm512_cmp_ps_mask(x, floor, _CMP_GE_OQ), x,
                                                 thr, _CMP_GT_OQ);
        if (bits) {
            unsigned b = bits;
            while (b) {
                int lane = __builtin_ctz(b);
                b &= b - 1;
                sks_heap_offer(s[i + lane], (int32_t)(i + lane), idx, val, k);
            }
            thr = _mm512_set1_ps(val[0]);
        }
    }
    for (; i < n; i++)
        sks_heap_offer(s[i], (int32_t)i, idx, val, k);
    sks_heap_finish(idx, val, k);
    return k;
}

/* Round to nearest even on the integer image; NaN lanes become quiet NaNs.
   Done in integer arithmetic rather than with VCVTNEPS2BF16 so that every
   variant (and the scalar reference) gives the same bits, denormals included. */
SKS_AVX512 static inline __m512i f32x16_to_bf16_bits(__m512 v)
{
    const __m512i one = _mm512_set1_epi32(1), bias = _mm512_set1_epi32(0x7fff);
    __m512i u = _mm512_castps_si512(v);
    __m512i hi = _mm512_srli_epi32(u, 16);
    __m512i r = _mm512_srli_epi32(
        _mm512_add_epi32(u, _mm512_add_epi32(bias, _mm512_and_si512(hi, one))), 16);
    __mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
    return _mm512_mask_mov_epi32(r, nan, _mm512_or_si512(hi, _mm512_set1_epi32(0x40)));
}

SKS_AVX512 static void f32_to_bf16_avx512(const float *x, sks_bf16 *out, sks_idx n)
{
    sks_idx i = 0;
    for (; i + 16 <= n; i += 16)
        _mm256_storeu_si256((__m256i *)(out + i),
                            _mm512_cvtepi32_epi16(f32x16_to_bf16_bits(_mm512_loadu_ps(x + i))));
    if (i < n) {
        __mmask16 mk = mask16(n - i);
        _mm512_mask_cvtepi32_storeu_epi16(out + i, mk,
                                          f32x16_to_bf16_bits(_mm512_maskz_loadu_ps(mk, x + i)));
    }
}

SKS_AVX512 static void bf16_to_f32_avx512(const sks_bf16 *x, float *out, sks_idx n)
{
    sks_idx i = 0;
    for (; i + 32 <= n; i += 32) {
        __m512i both = _mm512_loadu_si512(x + i);
        _mm512_storeu_ps(out + i, bf16x16_to_f32(_mm512_castsi512_si256(both)));
        _mm512_storeu_ps(out + i + 16, bf16x16_to_f32(_mm512_extracti64x4_epi64(both, 1)));
    }
    for (; i < n; i += 16) {
        __mmask16 mk = mask16(n - i);
        _mm512_mask_storeu_ps(out + i, mk, bf16x16_to_f32(_mm256_maskz_loadu_epi16(mk, x + i)));
    }
}

SKS_AVX512 static void adam_avx512(float *w, float *m, float *v, float *g, sks_idx n, float lr,
                                   float b1, float b2, float eps, float shrink)
{
    const __m512 vb1 = _mm512_set1_ps(b1), vc1 = _mm512_set1_ps(1.0f - b1);
    const __m512 vb2 = _mm512_set1_ps(b2), vc2 = _mm512_set1_ps(1.0f - b2);
    const __m512 vlr = _mm512_set1_ps(lr), veps = _mm512_set1_ps(eps);
    const __m512 vsh = _mm512_set1_ps(shrink), zero = _mm512_setzero_ps();
    sks_idx i;
    for (i = 0; i < n; i += 16) {
        __mmask16 mk = mask16(n - i);
        __m512 gi = _mm512_maskz_loadu_ps(mk, g + i);
        __m512 mi = _mm512_fmadd_ps(vb1, _mm512_maskz_loadu_ps(mk, m + i), _mm512_mul_ps(vc1, gi));
        __m512 vi = _mm512_fmadd_ps(vb2, _mm512_maskz_loadu_ps(mk, v + i),
                                    _mm512_mul_ps(vc2, _mm512_mul_ps(gi, gi)));
        __m512 step = _mm512_div_ps(_mm512_mul_ps(vlr, mi),
                                    _mm512_add_ps(_mm512_sqrt_ps(vi), veps));
        _mm512_mask_storeu_ps(m + i, mk, mi);
        _mm512_mask_storeu_ps(v + i, mk, vi);
        _mm512_mask_storeu_ps(
            w + i, mk, _mm512_sub_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(mk, w + i), vsh), step));
        _mm512_mask_storeu_ps(g + i, mk, zero);
    }
}

SKS_AVX512 static inline __m512i mix32x16(__m512i x)
{
    x = _mm512_xor_si512(x, _mm512_srli_epi32(x, 16));
    x = _mm512_mullo_epi32(x, _mm512_set1_epi32((int)0x85ebca6bu));
    x = _mm512_xor_si512(x, _mm512_srli_epi32(x, 13));
    x = _mm512_mullo_epi32(x, _mm512_set1_epi32((int)0xc2b2ae35u));
    return _mm512_xor_si512(x, _mm512_srli_epi32(x, 16));
}

/* round to bfloat16 with 16 random bits per lane, packed to 16 lanes of 16 bits */
SKS_AVX512 static inline __m256i bf16_round_sr16(__m512 f, __m512i bits16)
{
    __m512i u = _mm512_add_epi32(_mm512_castps_si512(f), bits16);
    return _mm512_cvtepi32_epi16(_mm512_srli_epi32(u, 16));
}

SKS_AVX512 static void adam_bf16_moments_avx512(float *w, sks_bf16 *m, sks_bf16 *v, float *g,
                                                sks_idx n, float lr, float b1, float b2,
                                                float eps, float shrink, uint32_t seed)
{
    const __m512 vb1 = _mm512_set1_ps(b1), vc1 = _mm512_set1_ps(1.0f - b1);
    const __m512 vb2 = _mm512_set1_ps(b2), vc2 = _mm512_set1_ps(1.0f - b2);
    const __m512 vlr = _mm512_set1_ps(lr), veps = _mm512_set1_ps(eps);
    const __m512 vsh = _mm512_set1_ps(shrink), zero = _mm512_setzero_ps();
    const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const __m512i golden = _mm512_set1_epi32((int)0x9E3779B9u), vseed = _mm512_set1_epi32((int)seed);
    const __m512i low16 = _mm512_set1_epi32(0xffff);
    sks_idx i;
    for (i = 0; i < n; i += 16) {
        __mmask16 mk = mask16(n - i);
        __m512i idx = _mm512_add_epi32(_mm512_set1_epi32((int)i), lane);
        __m512i bits = mix32x16(_mm512_xor_si512(vseed, _mm512_mullo_epi32(idx, golden)));
        __m512 gi = _mm512_maskz_loadu_ps(mk, g + i);
        __m512 mi = _mm512_fmadd_ps(vb1, bf16x16_to_f32(_mm256_maskz_loadu_epi16(mk, m + i)),
                                    _mm512_mul_ps(vc1, gi));
        __m512 vi = _mm512_fmadd_ps(vb2, bf16x16_to_f32(_mm256_maskz_loadu_epi16(mk, v + i)),
                                    _mm512_mul_ps(vc2, _mm512_mul_ps(gi, gi)));
        __m512 step = _mm512_div_ps(_mm512_mul_ps(vlr, mi),
                                    _mm512_add_ps(_mm512_sqrt_ps(vi), veps));
        _mm512_mask_storeu_ps(
            w + i, mk, _mm512_sub_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(mk, w + i), vsh), step));
        _mm256_mask_storeu_epi16(m + i, mk, bf16_round_sr16(mi, _mm512_and_si512(bits, low16)));
        _mm256_mask_storeu_epi16(v + i, mk, bf16_round_sr16(vi, _mm512_srli_epi32(bits, 16)));
        _mm512_mask_storeu_ps(g + i, mk, zero);
    }
}

SKS_AVX512 static void srp_accum_avx512(const int32_t *indices, const float *values,
                                         sks_idx nnz, uint64_t base, int n_words, float *acc)
{
    sks_idx p;
    int w, k;
    for (p = 0; p < nnz; p++) {
        __m512 px = _mm512_set1_ps(values[p]), nx = _mm512_set1_ps(-values[p]);
        for (w = 0; w < n_words; w++) {
            uint64_t bits = sks_mix64(base + (uint64_t)indices[p] * (uint64_t)n_words
                                      + (uint64_t)w);
            float *out = acc + 64 * w;
            for (k = 0; k < 4; k++) {
                __m512 v = _mm512_mask_blend_ps((__mmask16)(bits >> (16 * k)), nx, px);
                _mm512_storeu_ps(out + 16 * k, _mm512_add_ps(_mm512_loadu_ps(out + 16 * k), v));
            }
        }
    }
}

SKS_AVX512 static void sparse_dense_accum_rounded_avx512(const int32_t *indices,
                                                         const float *values, float scale,
                                                         sks_idx nnz, const float *weights,
                                                         sks_idx ld, sks_idx m, float *out)
{
    sda_avx512(indices, values, scale, nnz, weights, ld, m, out, 1);
}

/* sixteen pairs at a time: the marks and scores of their labels gathered
   (distinct labels: the scatters never collide), the labels first reached
   compressed into `reached` in pair order, as the scalar loop appends them */
SKS_AVX512 static sks_idx reach_accum_avx512(const int32_t *labels, const float *weights,
                                             sks_idx n, float x, float *acc, int32_t *mark,
                                             int32_t *reached, sks_idx n_reached)
{
    const __m512i zero = _mm512_setzero_si512(), one = _mm512_set1_epi32(1);
    const __m512 xv = _mm512_set1_ps(x);
    sks_idx k;
    for (k = 0; k < n; k += 16) {
        __mmask16 mk = mask16(n - k);
        __m512i lab = _mm512_maskz_loadu_epi32(mk, labels + k);
        __m512i seen = _mm512_mask_i32gather_epi32(zero, mk, lab, mark, 4);
        __mmask16 fresh = _mm512_mask_cmpeq_epi32_mask(mk, seen, zero);
        /* a label first reached starts at 0 */
        __m512 s = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), mk & (__mmask16)~fresh, lab,
                                            acc, 4);
        __m512 p = _mm512_mul_ps(xv, _mm512_maskz_loadu_ps(mk, weights + k));
        __asm__("" : "+v"(p));
        _mm512_mask_i32scatter_ps(acc, mk, lab, _mm512_add_ps(s, p), 4);
        if (fresh) {
            _mm512_mask_i32scatter_epi32(mark, fresh, lab, one, 4);
            _mm512_mask_compressstoreu_epi32(reached + n_reached, fresh, lab);
            n_reached += __builtin_popcount((unsigned)fresh);
        }
    }
    return n_reached;
}

SKS_AVX512 static void gather_axpy_avx512(float x, const float *table, const int32_t *idx,
                                          sks_idx n, float *out)
{
    const __m512 xv = _mm512_set1_ps(x);
    sks_idx k;
    for (k = 0; k < n; k += 16) {
        __mmask16 mk = mask16(n - k);
        __m512 t = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), mk,
                                            _mm512_maskz_loadu_epi32(mk, idx + k), table, 4);
        __m512 p = _mm512_mul_ps(xv, t);
        __asm__("" : "+v"(p));
        _mm512_mask_storeu_ps(out + k, mk, _mm512_add_ps(_mm512_maskz_loadu_ps(mk, out + k), p));
    }
}

/* eight at a time: each float widened, multiplied in double, rounded back
   (the C conversions' round to nearest) */
SKS_AVX512 static void scatter_scaled_avx512(const float *vals, double scale, const int32_t *idx,
                                             sks_idx n, float *table)
{
    const __m512d sv = _mm512_set1_pd(scale);
    sks_idx t;
    for (t = 0; t < n; t += 8) {
        __mmask8 mk = (__mmask8)(n - t >= 8 ? 0xFF : (1u << (n - t)) - 1u);
        __m512d v = _mm512_cvtps_pd(_mm256_maskz_loadu_ps(mk, vals + t));
        _mm256_mask_i32scatter_ps(table, mk, _mm256_maskz_loadu_epi32(mk, idx + t),
                                  _mm512_cvtpd_ps(_mm512_mul_pd(v, sv)), 4);
    }
}

SKS_AVX512 static void clear_marks_avx512(int32_t *mark, const int32_t *idx, sks_idx n)
{
    const __m512i zero = _mm512_setzero_si512();
    sks_idx t;
    for (t = 0; t < n; t += 16) {
        __mmask16 mk = mask16(n - t);
        _mm512_mask_i32scatter_epi32(mark, mk, _mm512_maskz_loadu_epi32(mk, idx + t), zero, 4);
    }
}

/* sixteen candidates a compare against the k-th best when the block starts
   (it only rises within the block): the ones above it go through the scalar
   insertion in order, which checks each against the k-th best as it is then */
SKS_AVX512 static void mixed_topk_avx512(const float *net, const float *head, const int32_t *ids,
                                         sks_idx n, float w, sks_idx k, int32_t *top,
                                         float *best)
{
    const __m512 wv = _mm512_set1_ps(w);
    float v[16];
    sks_idx c = 0, q, kept = 0;
    float worst = -INFINITY;
    for (; c < n && c < k; c++) {
        float p = w * head[c];
        __asm__("" : "+x"(p));
        sks_topk_offer(net[c] + p, ids[c], k, top, best, &kept, &worst);
    }
    for (; c < n; c += 16) {
        __mmask16 mk = mask16(n - c), above;
        __m512 p = _mm512_mul_ps(wv, _mm512_maskz_loadu_ps(mk, head + c));
        __m512 s;
        __asm__("" : "+v"(p));
        s = _mm512_add_ps(_mm512_maskz_loadu_ps(mk, net + c), p);
        above = _mm512_mask_cmp_ps_mask(mk, s, _mm512_set1_ps(worst), _CMP_GT_OQ);
        if (!above)
            continue;
        _mm512_storeu_ps(v, s);
        for (q = 0; q < 16; q++)
            if ((above >> q) & 1)
                sks_topk_offer(v[q], ids[c + q], k, top, best, &kept, &worst);
    }
}

/* which of (up to) sixteen labels a row keeps (see count_kept): reached, or
   with a logit at or above the bar */
SKS_AVX512 static inline __mmask16 kept16_avx512(__mmask16 mk, const float *reach, __m512 net,
                                                 __m512 bar)
{
    return _mm512_mask_cmp_ps_mask(mk, _mm512_maskz_loadu_ps(mk, reach), _mm512_setzero_ps(),
                                   _CMP_NEQ_UQ)
           | _mm512_mask_cmp_ps_mask(mk, net, bar, _CMP_GE_OQ);
}

SKS_AVX512 static sks_idx count_kept_avx512(const float *reach, const float *net, sks_idx n,
                                            float bar)
{
    const __m512 b = _mm512_set1_ps(bar);
    sks_idx j, count = 0;
    for (j = 0; j < n; j += 16) {
        __mmask16 mk = mask16(n - j);
        count += __builtin_popcount(
            (unsigned)kept16_avx512(mk, reach + j, _mm512_maskz_loadu_ps(mk, net + j), b));
    }
    return count;
}

SKS_AVX512 static sks_idx write_kept_avx512(const float *reach, const float *net, sks_idx n,
                                            float bar, int32_t offset, int32_t *cols,
                                            float *values)
{
    const __m512 b = _mm512_set1_ps(bar);
    const __m512i lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14,
                                            15);
    sks_idx j, q = 0;
    for (j = 0; j < n; j += 16) {
        __mmask16 mk = mask16(n - j);
        __m512 nv = _mm512_maskz_loadu_ps(mk, net + j);
        __mmask16 kept = kept16_avx512(mk, reach + j, nv, b);
        if (!kept)
            continue;
        _mm512_mask_compressstoreu_epi32(
            cols + q, kept, _mm512_add_epi32(lanes, _mm512_set1_epi32(offset + (int32_t)j)));
        _mm512_mask_compressstoreu_ps(values + q, kept, nv);
        q += __builtin_popcount((unsigned)kept);
    }
    return q;
}

/* sixteen labels a compare: the reached ones compressed into cand, and the
   others that can enter the k best (all of them while it holds fewer than
   k, then those above its k-th best when the block starts) through the
   scalar rule in order */
SKS_AVX512 static sks_idx scan_mixed_avx512(const float *head, const float *net, sks_idx n,
                                            sks_idx k, int32_t *cand, int32_t *base_id,
                                            float *base_val, sks_idx *n_base)
{
    const __m512 zero = _mm512_setzero_ps();
    const __m512i lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14,
                                            15);
    sks_idx j, n_cand = 0, nb = 0;
    float worst = -INFINITY;
    int q;
    for (j = 0; j < n; j += 16) {
        __mmask16 mk = mask16(n - j);
        __mmask16 reached = _mm512_mask_cmp_ps_mask(mk, _mm512_maskz_loadu_ps(mk, head + j), zero,
                                                    _CMP_NEQ_UQ);
        __mmask16 rest = mk & (__mmask16)~reached;
        if (reached) {
            _mm512_mask_compressstoreu_epi32(
                cand + n_cand, reached, _mm512_add_epi32(lanes, _mm512_set1_epi32((int32_t)j)));
            n_cand += __builtin_popcount((unsigned)reached);
        }
        if (nb == k)
            rest &= _mm512_mask_cmp_ps_mask(mk, _mm512_maskz_loadu_ps(mk, net + j),
                                            _mm512_set1_ps(worst), _CMP_GT_OQ);
        for (q = 0; rest; q++, rest >>= 1)
            if (rest & 1)
                sks_topk_offer(net[j + q], (int32_t)(j + q), k, base_id, base_val, &nb, &worst);
    }
    *n_base = nb;
    return n_cand;
}

const sks_kernels sks_kernels_avx512 = {
    SKS_ISA_AVX512,
    dot_avx512,
    dot_bf16_avx512,
    axpy_avx512,
    sparse_dense_accum_avx512,
    gather_dot_avx512,
    gather_dot_bf16_avx512,
    softmax_avx512,
    topk_avx512,
    f32_to_bf16_avx512,
    bf16_to_f32_avx512,
    adam_avx512,
    adam_bf16_moments_avx512,
    sparse_dense_accum_bf16_avx512,
    gather_dot2_avx512,
    srp_accum_avx512,
    sparse_dense_accum_rounded_avx512,
    reach_accum_avx512,
    gather_axpy_avx512,
    scatter_scaled_avx512,
    clear_marks_avx512,
    mixed_topk_avx512,
    count_kept_avx512,
    write_kept_avx512,
    scan_mixed_avx512,
    sparse_dense_accum4_avx512,
};

#ifdef SKS_BUILD_AVX512_BF16
SKS_AVX512BF16 static inline __mmask32 mask32(sks_idx r)
{
    return r >= 32 ? (__mmask32)0xFFFFFFFFu : (__mmask32)((1u << r) - 1u);
}

/* VDPBF16PS multiplies pairs of bfloat16 and adds both products to a float32
   lane. It ignores MXCSR: round to nearest even, denormals treated as zero. */
SKS_AVX512BF16 static inline __m512 dpbf16(__m512 acc, __m512i a, __m512i b)
{
    return _mm512_dpbf16_ps(acc, (__m512bh)a, (__m512bh)b);
}

SKS_AVX512BF16 static float dot_bf16_avx512bf16(const sks_bf16 *x, const sks_bf16 *y, sks_idx n)
{
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
    sks_idx i = 0;
    for (; i + 64 <= n; i += 64) {
        a0 = dpbf16(a0, _mm512_loadu_si512(x + i), _mm512_loadu_si512(y + i));
        a1 = dpbf16(a1, _mm512_loadu_si512(x + i + 32), _mm512_loadu_si512(y + i + 32));
    }
    for (; i < n; i += 32) {
        __mmask32 mk = mask32(n - i);
        a0 = dpbf16(a0, _mm512_maskz_loadu_epi16(mk, x + i), _mm512_maskz_loadu_epi16(mk, y + i));
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
}

SKS_AVX512BF16 static void gather_dot_bf16_avx512bf16(const sks_bf16 *x, const sks_bf16 *weights,
                                                      sks_idx ld, const int32_t *rows,
                                                      sks_idx n_rows, sks_idx m, float *out)
{
    sks_idx r = 0, i;
    for (; r + 8 <= n_rows; r += 8) {
        const sks_bf16 *w[8];
        __m512 a[8];
        int q;
        for (q = 0; q < 8; q++) {
            w[q] = weights + (sks_idx)rows[r + q] * ld;
            a[q] = _mm512_setzero_ps();
        }
        for (i = 0; i < m; i += 32) {
            __mmask32 mk = mask32(m - i);
            __m512i xv = _mm512_maskz_loadu_epi16(mk, x + i);
            for (q = 0; q < 8; q++)
                a[q] = dpbf16(a[q], xv, _mm512_maskz_loadu_epi16(mk, w[q] + i));
        }
        _mm_storeu_ps(out + r, reduce4(a[0], a[1], a[2], a[3]));
        _mm_storeu_ps(out + r + 4, reduce4(a[4], a[5], a[6], a[7]));
    }
    for (; r < n_rows; r++)
        out[r] = dot_bf16_avx512bf16(x, weights + (sks_idx)rows[r] * ld, m);
}

const sks_kernels sks_kernels_avx512_bf16 = {
    SKS_ISA_AVX512_BF16,
    dot_avx512,
    dot_bf16_avx512bf16,
    axpy_avx512,
    sparse_dense_accum_avx512,
    gather_dot_avx512,
    gather_dot_bf16_avx512bf16,
    softmax_avx512,
    topk_avx512,
    f32_to_bf16_avx512,
    bf16_to_f32_avx512,
    adam_avx512,
    adam_bf16_moments_avx512,
    sparse_dense_accum_bf16_avx512,
    gather_dot2_avx512,
    srp_accum_avx512,
    sparse_dense_accum_rounded_avx512,
    reach_accum_avx512,
    gather_axpy_avx512,
    scatter_scaled_avx512,
    clear_marks_avx512,
    mixed_topk_avx512,
    count_kept_avx512,
    write_kept_avx512,
    scan_mixed_avx512,
    sparse_dense_accum4_avx512,
};
#endif /* SKS_BUILD_AVX512_BF16 */

#endif /* SKS_BUILD_AVX512 */
