/*
 * AVX2 + FMA variant. Every function carries its own target attribute, so this
 * file is compiled at the build's baseline flags and only ever *runs* on CPUs
 * where the dispatcher found AVX2, FMA and OS support for the YMM state.
 */
#include "simd.h"

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define SKS_BUILD_AVX2 1
#endif

#ifdef SKS_BUILD_AVX2
#include <immintrin.h>
#include <math.h>

#include "simd_topk.h"

#define SKS_AVX2 __attribute__((target("avx2,fma")))

/* Lanes [0, r) all-ones for a maskload/maskstore of an r-element tail (r < 8). */
static const int32_t sks_tail_mask_table[16] = {-1, -1, -1, -1, -1, -1, -1, -1,
                                                0,  0,  0,  0,  0,  0,  0,  0};

SKS_AVX2 static inline __m256i tail_mask(sks_idx r)
{
    return _mm256_loadu_si256((const __m256i *)(sks_tail_mask_table + 8 - r));
}

SKS_AVX2 static inline float hsum256(__m256 v)
{
    __m128 lo = _mm256_castps256_ps128(v);
    __m128 hi = _mm256_extractf128_ps(v, 1);
    lo = _mm_add_ps(lo, hi);
    lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
    return _mm_cvtss_f32(lo);
}

/* hsum256 of four vectors at once: lane k is hsum256(a_k), bit for bit (the
   same additions, in the same pairs) */
SKS_AVX2 static inline __m128 hsum256x4(__m256 a0, __m256 a1, __m256 a2, __m256 a3)
{
    __m128 s0 = _mm_add_ps(_mm256_castps256_ps128(a0), _mm256_extractf128_ps(a0, 1));
    __m128 s1 = _mm_add_ps(_mm256_castps256_ps128(a1), _mm256_extractf128_ps(a1, 1));
    __m128 s2 = _mm_add_ps(_mm256_castps256_ps128(a2), _mm256_extractf128_ps(a2, 1));
    __m128 s3 = _mm_add_ps(_mm256_castps256_ps128(a3), _mm256_extractf128_ps(a3, 1));
    _MM_TRANSPOSE4_PS(s0, s1, s2, s3);
    return _mm_add_ps(_mm_add_ps(s0, s2), _mm_add_ps(s1, s3));
}

SKS_AVX2 static inline __m256 bf16x8_to_f32(const sks_bf16 *p)
{
    __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
}

SKS_AVX2 static float dot_avx2(const float *x, const float *y, sks_idx n)
{
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    __m256 a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
    sks_idx i = 0;
    for (; i + 32 <= n; i += 32) {
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 8), _mm256_loadu_ps(y + i + 8), a1);
        a2 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 16), _mm256_loadu_ps(y + i + 16), a2);
        a3 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 24), _mm256_loadu_ps(y + i + 24), a3);
    }
    for (; i + 8 <= n; i += 8)
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), a0);
    if (i < n) {
        __m256i m = tail_mask(n - i);
        a1 = _mm256_fmadd_ps(_mm256_maskload_ps(x + i, m), _mm256_maskload_ps(y + i, m), a1);
    }
    return hsum256(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
}

SKS_AVX2 static float dot_bf16_avx2(const sks_bf16 *x, const sks_bf16 *y, sks_idx n)
{
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    sks_idx i = 0;
    float tail = 0.f;
    for (; i + 16 <= n; i += 16) {
        a0 = _mm256_fmadd_ps(bf16x8_to_f32(x + i), bf16x8_to_f32(y + i), a0);
        a1 = _mm256_fmadd_ps(bf16x8_to_f32(x + i + 8), bf16x8_to_f32(y + i + 8), a1);
    }
    for (; i + 8 <= n; i += 8)
        a0 = _mm256_fmadd_ps(bf16x8_to_f32(x + i), bf16x8_to_f32(y + i), a0);
    for (; i < n; i++)
        tail += sks_bf16_to_f32_1(x[i]) * sks_bf16_to_f32_1(y[i]);
    return hsum256(_mm256_add_ps(a0, a1)) + tail;
}

SKS_AVX2 static void axpy_avx2(float alpha, const float *x, float *y, sks_idx n)
{
    __m256 a = _mm256_set1_ps(alpha);
    sks_idx i = 0;
    for (; i + 16 <= n; i += 16) {
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(a, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
        _mm256_storeu_ps(y + i + 8,
                         _mm256_fmadd_ps(a, _mm256_loadu_ps(x + i + 8), _mm256_loadu_ps(y + i + 8)));
    }
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(a, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    if (i < n) {
        __m256i m = tail_mask(n - i);
        __m256 r = _mm256_fmadd_ps(a, _mm256_maskload_ps(x + i, m), _mm256_maskload_ps(y + i, m));
        _mm256_maskstore_ps(y + i, m, r);
    }
}

/* Columns are processed in blocks held in registers across the whole nonzero
   list, so `out` is read and written once per block, not once per nonzero
   (see sda_avx512: here 32 columns at a time, then 8). With `rounded` the
   compiler could still fuse a product and the sum it feeds into one FMA (one
   rounding); an empty asm that claims to change the product keeps them two
   instructions, each rounded, as the scalar loop at baseline flags. */
SKS_AVX2 static inline __attribute__((always_inline)) void sda_avx2(
    const int32_t *indices, const float *values, float scale, sks_idx nnz,
    const float *weights, sks_idx ld, sks_idx m, float *out, const int rounded)
{
    sks_idx c = 0, j;
    for (; c + 32 <= m; c += 32) {
        __m256 a[4];
        int q;
        for (q = 0; q < 4; q++)
            a[q] = _mm256_loadu_ps(out + c + 8 * q);
        for (j = 0; j < nnz; j++) {
            const float *w = weights + (sks_idx)indices[j] * ld + c;
            __m256 v = _mm256_set1_ps(rounded ? values[j] * scale : values[j]);
            for (q = 0; q < 4; q++) {
                if (rounded) {
                    __m256 p = _mm256_mul_ps(v, _mm256_loadu_ps(w + 8 * q));
                    __asm__("" : "+x"(p));
                    a[q] = _mm256_add_ps(a[q], p);
                } else {
                    a[q] = _mm256_fmadd_ps(v, _mm256_loadu_ps(w + 8 * q), a[q]);
                }
            }
        }
        for (q = 0; q < 4; q++)
            _mm256_storeu_ps(out + c + 8 * q, a[q]);
    }
    for (; c < m; c += 8) {
        __m256i mask = tail_mask(m - c < 8 ? m - c : 8);
        __m256 a0 = _mm256_maskload_ps(out + c, mask);
        for (j = 0; j < nnz; j++) {
            const float *w = weights + (sks_idx)indices[j] * ld + c;
            __m256 v = _mm256_set1_ps(rounded ? values[j] * scale : values[j]);
            if (rounded) {
                __m256 p = _mm256_mul_ps(v, _mm256_maskload_ps(w, mask));
                __asm__("" : "+x"(p));
                a0 = _mm256_add_ps(a0, p);
            } else {
                a0 = _mm256_fmadd_ps(v, _mm256_maskload_ps(w, mask), a0);
            }
        }
        _mm256_maskstore_ps(out + c, mask, a0);
    }
}

SKS_AVX2 static void sparse_dense_accum_avx2(const int32_t *indices, const float *values,
                                             sks_idx nnz, const float *weights, sks_idx ld,
                                             sks_idx m, float *out)
{
    sda_avx2(indices, values, 1.0f, nnz, weights, ld, m, out, 0);
}

/* four sparse_dense_accum_avx2 calls: the same bits by construction */
SKS_AVX2 static void sparse_dense_accum4_avx2(const int32_t *indices, const float *const *values,
                                              sks_idx nnz, const float *weights, sks_idx ld,
                                              sks_idx m, float *const *out)
{
    int q;
    for (q = 0; q < 4; q++)
        sparse_dense_accum_avx2(indices, values[q], nnz, weights, ld, m, out[q]);
}

/* Four rows at a time: each load of x feeds four independent FMA chains. */
SKS_AVX2 static void sparse_dense_accum_bf16_avx2(const int32_t *indices, const float *values,
                                                  sks_idx nnz, const sks_bf16 *weights,
                                                  sks_idx ld, sks_idx m, float *out)
{
    sks_idx c = 0, j;
    for (; c + 32 <= m; c += 32) {
        __m256 a0 = _mm256_loadu_ps(out + c), a1 = _mm256_loadu_ps(out + c + 8);
        __m256 a2 = _mm256_loadu_ps(out + c + 16), a3 = _mm256_loadu_ps(out + c + 24);
        for (j = 0; j < nnz; j++) {
            const sks_bf16 *w = weights + (sks_idx)indices[j] * ld + c;
            __m256 v = _mm256_set1_ps(values[j]);
            a0 = _mm256_fmadd_ps(v, bf16x8_to_f32(w), a0);
            a1 = _mm256_fmadd_ps(v, bf16x8_to_f32(w + 8), a1);
            a2 = _mm256_fmadd_ps(v, bf16x8_to_f32(w + 16), a2);
            a3 = _mm256_fmadd_ps(v, bf16x8_to_f32(w + 24), a3);
        }
        _mm256_storeu_ps(out + c, a0);
        _mm256_storeu_ps(out + c + 8, a1);
        _mm256_storeu_ps(out + c + 16, a2);
        _mm256_storeu_ps(out + c + 24, a3);
    }
    for (; c + 8 <= m; c += 8) {
        __m256 a0 = _mm256_loadu_ps(out + c);
        for (j = 0; j < nnz; j++)
            a0 = _mm256_fmadd_ps(_mm256_set1_ps(values[j]),
                                 bf16x8_to_f32(weights + (sks_idx)indices[j] * ld + c), a0);
        _mm256_storeu_ps(out + c, a0);
    }
    for (; c < m; c++) {
        float a = out[c];
        for (j = 0; j < nnz; j++)
            a += values[j] * sks_bf16_to_f32_1(weights[(sks_idx)indices[j] * ld + c]);
        out[c] = a;
    }
}

SKS_AVX2 static void gather_dot_avx2(const float *x, const float *weights, sks_idx ld,
                                     const int32_t *rows, sks_idx n_rows, sks_idx m, float *out)
{
    sks_idx r = 0, i;
    for (; r + 4 <= n_rows; r += 4) {
        const float *w0 = weights + (sks_idx)rows[r] * ld;
        const float *w1 = weights + (sks_idx)rows[r + 1] * ld;
        const float *w2 = weights + (sks_idx)rows[r + 2] * ld;
        const float *w3 = weights + (sks_idx)rows[r + 3] * ld;
        __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
        __m256 a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
        for (i = 0; i + 8 <= m; i += 8) {
            __m256 xv = _mm256_loadu_ps(x + i);
            a0 = _mm256_fmadd_ps(xv, _mm256_loadu_ps(w0 + i), a0);
            a1 = _mm256_fmadd_ps(xv, _mm256_loadu_ps(w1 + i), a1);
            a2 = _mm256_fmadd_ps(xv, _mm256_loadu_ps(w2 + i), a2);
            a3 = _mm256_fmadd_ps(xv, _mm256_loadu_ps(w3 + i), a3);
        }
        if (i < m) {
            __m256i mask = tail_mask(m - i);
            __m256 xv = _mm256_maskload_ps(x + i, mask);
            a0 = _mm256_fmadd_ps(xv, _mm256_maskload_ps(w0 + i, mask), a0);
            a1 = _mm256_fmadd_ps(xv, _mm256_maskload_ps(w1 + i, mask), a1);
            a2 = _mm256_fmadd_ps(xv, _mm256_maskload_ps(w2 + i, mask), a2);
            a3 = _mm256_fmadd_ps(xv, _mm256_maskload_ps(w3 + i, mask), a3);
        }
        _mm_storeu_ps(out + r, hsum256x4(a0, a1, a2, a3));
    }
    for (; r < n_rows; r++)
        out[r] = dot_avx2(x, weights + (sks_idx)rows[r] * ld, m);
}

/* gather_dot_avx2 for x0 and x1 at once: the same instructions per (x, row)
   pair, so the same bits; each weight vector is loaded once for both, and
   the eight independent sums hide the FMA latency. */
SKS_AVX2 static void gather_dot2_avx2(const float *x0, const float *x1, const float *weights,
                                      sks_idx ld, const int32_t *rows, sks_idx n_rows, sks_idx m,
                                      float *out0, float *out1)
{
    sks_idx r = 0, i;
    for (; r + 4 <= n_rows; r += 4) {
        const float *w[4];
        __m256 a[4], c[4], xv, yv, wv;
        int q;
        for (q = 0; q < 4; q++) {
            w[q] = weights + (sks_idx)rows[r + q] * ld;
            a[q] = c[q] = _mm256_setzero_ps();
        }
        for (i = 0; i + 8 <= m; i += 8) {
            xv = _mm256_loadu_ps(x0 + i);
            yv = _mm256_loadu_ps(x1 + i);
            for (q = 0; q < 4; q++) {
                wv = _mm256_loadu_ps(w[q] + i);
                a[q] = _mm256_fmadd_ps(xv, wv, a[q]);
                c[q] = _mm256_fmadd_ps(yv, wv, c[q]);
            }
        }
        if (i < m) {
            __m256i mask = tail_mask(m - i);
            xv = _mm256_maskload_ps(x0 + i, mask);
            yv = _mm256_maskload_ps(x1 + i, mask);
            for (q = 0; q < 4; q++) {
                wv = _mm256_maskload_ps(w[q] + i, mask);
                a[q] = _mm256_fmadd_ps(xv, wv, a[q]);
                c[q] = _mm256_fmadd_ps(yv, wv, c[q]);
            }
        }
        _mm_storeu_ps(out0 + r, hsum256x4(a[0], a[1], a[2], a[3]));
        _mm_storeu_ps(out1 + r, hsum256x4(c[0], c[1], c[2], c[3]));
    }
    for (; r < n_rows; r++) {
        out0[r] = dot_avx2(x0, weights + (sks_idx)rows[r] * ld, m);
        out1[r] = dot_avx2(x1, weights + (sks_idx)rows[r] * ld, m);
    }
}

SKS_AVX2 static void gather_dot_bf16_avx2(const sks_bf16 *x, const sks_bf16 *weights, sks_idx ld,
                                          const int32_t *rows, sks_idx n_rows, sks_idx m,
                                          float *out)
{
    sks_idx r;
    for (r = 0; r < n_rows; r++)
        out[r] = dot_bf16_avx2(x, weights + (sks_idx)rows[r] * ld, m);
}

/* exp for x <= 88: Cody-Waite reduction x = n ln2 + r, a degree-6 polynomial
   for exp(r) (Cephes expf coefficients, ~1 ulp), and 2^n built in the exponent
   field. Inputs below -87.3 (including -inf) give exactly 0. */
SKS_AVX2 static inline __m256 exp256(__m256 x)
{
    const __m256 lo = _mm256_set1_ps(-87.33654475f);
    __m256 keep = _mm256_cmp_ps(x, lo, _CMP_GE_OQ);
    __m256 xc = _mm256_min_ps(_mm256_max_ps(x, lo), _mm256_set1_ps(88.0f));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(xc, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), xc);
    __m256 p, r2;
    __m256i e;
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    r2 = _mm256_mul_ps(r, r);
    p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(p, r2, _mm256_add_ps(r, _mm256_set1_ps(1.f)));
    /* n >= -126 here, so 2^n is a normal float */
    e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_and_ps(_mm256_mul_ps(p, _mm256_castsi256_ps(e)), keep);
}

SKS_AVX2 static float softmax_avx2(const float *z, sks_idx n, float *out)
{
    __m256 vmax = _mm256_set1_ps(-INFINITY), vsum = _mm256_setzero_ps(), vz;
    float zmax, sum, inv;
    sks_idx i;
    if (n == 0)
        return -INFINITY;
    for (i = 0; i + 8 <= n; i += 8)
        vmax = _mm256_max_ps(vmax, _mm256_loadu_ps(z + i));
    {
        __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(vmax), _mm256_extractf128_ps(vmax, 1));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
        zmax = _mm_cvtss_f32(m4);
    }
    for (; i < n; i++)
        zmax = z[i] > zmax ? z[i] : zmax;
    if (zmax == -INFINITY) {
        for (i = 0; i < n; i++)
            out[i] = 1.f / (float)n;
        return -INFINITY;
    }
    vz = _mm256_set1_ps(zmax);
    for (i = 0; i + 8 <= n; i += 8) {
        __m256 e = exp256(_mm256_sub_ps(_mm256_loadu_ps(z + i), vz));
        _mm256_storeu_ps(out + i, e);
        vsum = _mm256_add_ps(vsum, e);
    }
    sum = hsum256(vsum);
    for (; i < n; i++) {
        float e = expf(z[i] - zmax);
        out[i] = e;
        sum += e;
    }
    inv = 1.f / sum;
    {
        __m256 vinv = _mm256_set1_ps(inv);
        for (i = 0; i + 8 <= n; i += 8)
            _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_loadu_ps(out + i), vinv));
    }
    for (; i < n; i++)
        out[i] *= inv;
    return zmax + logf(sum);
}

SKS_AVX2 static sks_idx topk_avx2(const float *s, sks_idx n, sks_idx k, int32_t *idx, float *val)
{
    sks_idx i;
    __m256 thr;
    if (k > n)
        k = n;
    if (k <= 0)
        return 0;
    sks_heap_init(s, k, idx, val);
    thr = _mm256_set1_ps(val[0]);
    for (i = k; i + 8 <= n; i += 8) {
        int bits = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(s + i), thr, _CMP_GT_OQ));
        if (bits) {
            while (bits) {
                int b = __builtin_ctz((unsigned)bits);
                bits &= bits - 1;
                sks_heap_offer(s[i + b], (int32_t)(i + b), idx, val, k);
            }
            thr = _mm256_set1_ps(val[0]);
        }
    }
    for (; i < n; i++)
        sks_heap_offer(s[i], (int32_t)i, idx, val, k);
    sks_heap_finish(idx, val, k);
    return k;
}

/* Round to nearest even on the integer image; NaN lanes become quiet NaNs. */
SKS_AVX2 static void f32_to_bf16_avx2(const float *x, sks_bf16 *out, sks_idx n)
{
    const __m256i one = _mm256_set1_epi32(1), bias = _mm256_set1_epi32(0x7fff);
    const __m256i quiet = _mm256_set1_epi32(0x40);
    sks_idx i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i);
        __m256i u = _mm256_castps_si256(v);
        __m256i hi = _mm256_srli_epi32(u, 16);
        __m256i r = _mm256_srli_epi32(
            _mm256_add_epi32(u, _mm256_add_epi32(bias, _mm256_and_si256(hi, one))), 16);
        __m256 nan = _mm256_cmp_ps(v, v, _CMP_UNORD_Q);
        r = _mm256_blendv_epi8(r, _mm256_or_si256(hi, quiet), _mm256_castps_si256(nan));
        _mm_storeu_si128((__m128i *)(out + i),
                         _mm_packus_epi32(_mm256_castsi256_si128(r), _mm256_extracti128_si256(r, 1)));
    }
    for (; i < n; i++)
        out[i] = sks_f32_to_bf16_1(x[i]);
}

SKS_AVX2 static void bf16_to_f32_avx2(const sks_bf16 *x, float *out, sks_idx n)
{
    sks_idx i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(out + i, bf16x8_to_f32(x + i));
    for (; i < n; i++)
        out[i] = sks_bf16_to_f32_1(x[i]);
}

SKS_AVX2 static void adam_avx2(float *w, float *m, float *v, float *g, sks_idx n, float lr,
                               float b1, float b2, float eps, float shrink)
{
    const __m256 vb1 = _mm256_set1_ps(b1), vc1 = _mm256_set1_ps(1.0f - b1);
    const __m256 vb2 = _mm256_set1_ps(b2), vc2 = _mm256_set1_ps(1.0f - b2);
    const __m256 vlr = _mm256_set1_ps(lr), veps = _mm256_set1_ps(eps);
    const __m256 vsh = _mm256_set1_ps(shrink), zero = _mm256_setzero_ps();
    sks_idx i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 gi = _mm256_loadu_ps(g + i);
        __m256 mi = _mm256_fmadd_ps(vb1, _mm256_loadu_ps(m + i), _mm256_mul_ps(vc1, gi));
        __m256 vi = _mm256_fmadd_ps(vb2, _mm256_loadu_ps(v + i),
                                    _mm256_mul_ps(vc2, _mm256_mul_ps(gi, gi)));
        __m256 step = _mm256_div_ps(_mm256_mul_ps(vlr, mi),
                                    _mm256_add_ps(_mm256_sqrt_ps(vi), veps));
        _mm256_storeu_ps(m + i, mi);
        _mm256_storeu_ps(v + i, vi);
        _mm256_storeu_ps(w + i, _mm256_sub_ps(_mm256_mul_ps(_mm256_loadu_ps(w + i), vsh), step));
        _mm256_storeu_ps(g + i, zero);
    }
    sks_adam_tail(w, m, v, g, i, n, lr, b1, b2, eps, shrink);
}

SKS_AVX2 static inline __m256i mix32x8(__m256i x)
{
    x = _mm256_xor_si256(x, _mm256_srli_epi32(x, 16));
    x = _mm256_mullo_epi32(x, _mm256_set1_epi32((int)0x85ebca6bu));
    x = _mm256_xor_si256(x, _mm256_srli_epi32(x, 13));
    x = _mm256_mullo_epi32(x, _mm256_set1_epi32((int)0xc2b2ae35u));
    return _mm256_xor_si256(x, _mm256_srli_epi32(x, 16));
}

/* round to bfloat16 with 16 random bits per lane, packed to 8 lanes of 16 bits */
SKS_AVX2 static inline __m128i bf16_round_sr8(__m256 f, __m256i bits16)
{
    __m256i u = _mm256_srli_epi32(_mm256_add_epi32(_mm256_castps_si256(f), bits16), 16);
    return _mm_packus_epi32(_mm256_castsi256_si128(u), _mm256_extracti128_si256(u, 1));
}

SKS_AVX2 static void adam_bf16_moments_avx2(float *w, sks_bf16 *m, sks_bf16 *v, float *g,
                                            sks_idx n, float lr, float b1, float b2, float eps,
                                            float shrink, uint32_t seed)
{
    const __m256 vb1 = _mm256_set1_ps(b1), vc1 = _mm256_set1_ps(1.0f - b1);
    const __m256 vb2 = _mm256_set1_ps(b2), vc2 = _mm256_set1_ps(1.0f - b2);
    const __m256 vlr = _mm256_set1_ps(lr), veps = _mm256_set1_ps(eps);
    const __m256 vsh = _mm256_set1_ps(shrink), zero = _mm256_setzero_ps();
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i golden = _mm256_set1_epi32((int)0x9E3779B9u), vseed = _mm256_set1_epi32((int)seed);
    const __m256i low16 = _mm256_set1_epi32(0xffff);
    sks_idx i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256i idx = _mm256_add_epi32(_mm256_set1_epi32((int)i), lane);
        __m256i bits = mix32x8(_mm256_xor_si256(vseed, _mm256_mullo_epi32(idx, golden)));
        __m256 gi = _mm256_loadu_ps(g + i);
        __m256 mi = _mm256_fmadd_ps(vb1, bf16x8_to_f32(m + i), _mm256_mul_ps(vc1, gi));
        __m256 vi = _mm256_fmadd_ps(vb2, bf16x8_to_f32(v + i),
                                    _mm256_mul_ps(vc2, _mm256_mul_ps(gi, gi)));
        __m256 step = _mm256_div_ps(_mm256_mul_ps(vlr, mi),
                                    _mm256_add_ps(_mm256_sqrt_ps(vi), veps));
        _mm256_storeu_ps(w + i, _mm256_sub_ps(_mm256_mul_ps(_mm256_loadu_ps(w + i), vsh), step));
        _mm_storeu_si128((__m128i *)(m + i), bf16_round_sr8(mi, _mm256_and_si256(bits, low16)));
        _mm_storeu_si128((__m128i *)(v + i), bf16_round_sr8(vi, _mm256_srli_epi32(bits, 16)));
        _mm256_storeu_ps(g + i, zero);
    }
    sks_adam_bf16_moments_tail(w, m, v, g, i, n, lr, b1, b2, eps, shrink, seed);
}

SKS_AVX2 static void srp_accum_avx2(const int32_t *indices, const float *values, sks_idx nnz,
                                     uint64_t base, int n_words, float *acc)
{
    /* A word's 64 sums stay in eight registers while its non-zeros are added
       (in non-zero order, as the other paths add them). Lane l of block k
       takes bit 8k + l of the word: shifted to bit 31, it flips the sign of
       -x to +x, exactly as the other paths choose between x and -x. */
    const __m256i sign = _mm256_set1_epi32((int)0x80000000u);
    const __m256i sh0 = _mm256_setr_epi32(31, 30, 29, 28, 27, 26, 25, 24);
    const __m256i sh1 = _mm256_sub_epi32(sh0, _mm256_set1_epi32(8));
    const __m256i sh2 = _mm256_sub_epi32(sh0, _mm256_set1_epi32(16));
    const __m256i sh3 = _mm256_sub_epi32(sh0, _mm256_set1_epi32(24));
    sks_idx p;
    int w;
#define SKS_SRP_ADD(a, half, sh)                                                         \
    a = _mm256_add_ps(a, _mm256_xor_ps(nx, _mm256_castsi256_ps(_mm256_and_si256(        \
            _mm256_sllv_epi32(half, sh), sign))))
    for (w = 0; w < n_words; w++) {
        float *out = acc + 64 * w;
        __m256 a0 = _mm256_loadu_ps(out), a1 = _mm256_loadu_ps(out + 8);
        __m256 a2 = _mm256_loadu_ps(out + 16), a3 = _mm256_loadu_ps(out + 24);
        __m256 a4 = _mm256_loadu_ps(out + 32), a5 = _mm256_loadu_ps(out + 40);
        __m256 a6 = _mm256_loadu_ps(out + 48), a7 = _mm256_loadu_ps(out + 56);
        for (p = 0; p < nnz; p++) {
            uint64_t bits = sks_mix64(base + (uint64_t)indices[p] * (uint64_t)n_words
                                      + (uint64_t)w);
            __m256 nx = _mm256_set1_ps(-values[p]);
            __m256i lo = _mm256_set1_epi32((int)(uint32_t)bits);
            __m256i hi = _mm256_set1_epi32((int)(uint32_t)(bits >> 32));
            SKS_SRP_ADD(a0, lo, sh0);
            SKS_SRP_ADD(a1, lo, sh1);
            SKS_SRP_ADD(a2, lo, sh2);
            SKS_SRP_ADD(a3, lo, sh3);
            SKS_SRP_ADD(a4, hi, sh0);
            SKS_SRP_ADD(a5, hi, sh1);
            SKS_SRP_ADD(a6, hi, sh2);
            SKS_SRP_ADD(a7, hi, sh3);
        }
        _mm256_storeu_ps(out, a0);
        _mm256_storeu_ps(out + 8, a1);
        _mm256_storeu_ps(out + 16, a2);
        _mm256_storeu_ps(out + 24, a3);
        _mm256_storeu_ps(out + 32, a4);
        _mm256_storeu_ps(out + 40, a5);
        _mm256_storeu_ps(out + 48, a6);
        _mm256_storeu_ps(out + 56, a7);
    }
#undef SKS_SRP_ADD
}

SKS_AVX2 static void sparse_dense_accum_rounded_avx2(const int32_t *indices, const float *values,
                                                     float scale, sks_idx nnz,
                                                     const float *weights, sks_idx ld, sks_idx m,
                                                     float *out)
{
    sda_avx2(indices, values, scale, nnz, weights, ld, m, out, 1);
}

/* eight labels a gather (the product rounded before its sum, as in
   gather_axpy_avx512); the tail one at a time, kept unfused the same way */
SKS_AVX2 static void gather_axpy_avx2(float x, const float *table, const int32_t *idx,
                                      sks_idx n, float *out)
{
    const __m256 xv = _mm256_set1_ps(x);
    sks_idx k = 0;
    for (; k + 8 <= n; k += 8) {
        __m256 p = _mm256_mul_ps(
            xv, _mm256_i32gather_ps(table, _mm256_loadu_si256((const __m256i *)(idx + k)), 4));
        __asm__("" : "+x"(p));
        _mm256_storeu_ps(out + k, _mm256_add_ps(_mm256_loadu_ps(out + k), p));
    }
    for (; k < n; k++) {
        float p = x * table[idx[k]];
        __asm__("" : "+x"(p));
        out[k] = out[k] + p;
    }
}

/* eight candidates a compare against the k-th best when the block starts
   (see mixed_topk_avx512) */
SKS_AVX2 static void mixed_topk_avx2(const float *net, const float *head, const int32_t *ids,
                                     sks_idx n, float w, sks_idx k, int32_t *top, float *best)
{
    const __m256 wv = _mm256_set1_ps(w);
    float v[8];
    sks_idx c = 0, kept = 0;
    float worst = -INFINITY;
    int q, above;
    for (; c < n && c < k; c++) {
        float p = w * head[c];
        __asm__("" : "+x"(p));
        sks_topk_offer(net[c] + p, ids[c], k, top, best, &kept, &worst);
    }
    for (; c + 8 <= n; c += 8) {
        __m256 p = _mm256_mul_ps(wv, _mm256_loadu_ps(head + c));
        __m256 s;
        __asm__("" : "+x"(p));
        s = _mm256_add_ps(_mm256_loadu_ps(net + c), p);
        above = _mm256_movemask_ps(_mm256_cmp_ps(s, _mm256_set1_ps(worst), _CMP_GT_OQ));
        if (!above)
            continue;
        _mm256_storeu_ps(v, s);
        for (q = 0; q < 8; q++)
            if ((above >> q) & 1)
                sks_topk_offer(v[q], ids[c + q], k, top, best, &kept, &worst);
    }
    for (; c < n; c++) {
        float p = w * head[c];
        __asm__("" : "+x"(p));
        sks_topk_offer(net[c] + p, ids[c], k, top, best, &kept, &worst);
    }
}

/* eight labels a compare (see scan_mixed_avx512): the reached ones appended
   bit by bit, the others that can enter through the scalar rule in order */
SKS_AVX2 static sks_idx scan_mixed_avx2(const float *head, const float *net, sks_idx n,
                                        sks_idx k, int32_t *cand, int32_t *base_id,
                                        float *base_val, sks_idx *n_base)
{
    const __m256 zero = _mm256_setzero_ps();
    sks_idx j, n_cand = 0, nb = 0;
    float worst = -INFINITY;
    for (j = 0; j < n; j += 8) {
        sks_idx width = n - j < 8 ? n - j : 8;
        unsigned full = (1u << width) - 1u, reached, rest;
        int q;
        if (width == 8) {
            reached = (unsigned)_mm256_movemask_ps(
                _mm256_cmp_ps(_mm256_loadu_ps(head + j), zero, _CMP_NEQ_UQ));
        } else {
            reached = 0;
            for (q = 0; q < width; q++)
                reached |= (unsigned)(head[j + q] != 0) << q;
        }
        rest = full & ~reached;
        while (reached) {
            cand[n_cand++] = (int32_t)(j + __builtin_ctz(reached));
            reached &= reached - 1;
        }
        if (nb == k && width == 8)
            rest &= (unsigned)_mm256_movemask_ps(
                _mm256_cmp_ps(_mm256_loadu_ps(net + j), _mm256_set1_ps(worst), _CMP_GT_OQ));
        for (q = 0; rest; q++, rest >>= 1)
            if (rest & 1)
                sks_topk_offer(net[j + q], (int32_t)(j + q), k, base_id, base_val, &nb, &worst);
    }
    *n_base = nb;
    return n_cand;
}

/* which of eight labels a row keeps (see count_kept) */
SKS_AVX2 static inline unsigned kept8_avx2(const float *reach, const float *net, __m256 bar)
{
    return (unsigned)_mm256_movemask_ps(_mm256_or_ps(
        _mm256_cmp_ps(_mm256_loadu_ps(reach), _mm256_setzero_ps(), _CMP_NEQ_UQ),
        _mm256_cmp_ps(_mm256_loadu_ps(net), bar, _CMP_GE_OQ)));
}

SKS_AVX2 static sks_idx count_kept_avx2(const float *reach, const float *net, sks_idx n,
                                        float bar)
{
    const __m256 b = _mm256_set1_ps(bar);
    sks_idx j = 0, count = 0;
    for (; j + 8 <= n; j += 8)
        count += __builtin_popcount(kept8_avx2(reach + j, net + j, b));
    return count + sks_count_kept_scalar(reach + j, net + j, n - j, bar);
}

SKS_AVX2 static sks_idx write_kept_avx2(const float *reach, const float *net, sks_idx n,
                                        float bar, int32_t offset, int32_t *cols,
                                        float *values)
{
    const __m256 b = _mm256_set1_ps(bar);
    sks_idx j = 0, q = 0;
    for (; j + 8 <= n; j += 8) {
        unsigned kept = kept8_avx2(reach + j, net + j, b);
        while (kept) {
            int t = __builtin_ctz(kept);
            cols[q] = offset + (int32_t)(j + t);
            values[q] = net[j + t];
            q++;
            kept &= kept - 1;
        }
    }
    return q + sks_write_kept_scalar(reach + j, net + j, n - j, bar, offset + (int32_t)j,
                                     cols + q, values + q);
}

const sks_kernels sks_kernels_avx2 = {
    SKS_ISA_AVX2,
    dot_avx2,
    dot_bf16_avx2,
    axpy_avx2,
    sparse_dense_accum_avx2,
    gather_dot_avx2,
    gather_dot_bf16_avx2,
    softmax_avx2,
    topk_avx2,
    f32_to_bf16_avx2,
    bf16_to_f32_avx2,
    adam_avx2,
    adam_bf16_moments_avx2,
    sparse_dense_accum_bf16_avx2,
    gather_dot2_avx2,
    srp_accum_avx2,
    sparse_dense_accum_rounded_avx2,
    sks_reach_accum_scalar,
    gather_axpy_avx2,
    sks_scatter_scaled_scalar,
    sks_clear_marks_scalar,
    mixed_topk_avx2,
    count_kept_avx2,
    write_kept_avx2,
    scan_mixed_avx2,
    sparse_dense_accum4_avx2,
};

#endif /* SKS_BUILD_AVX2 */
