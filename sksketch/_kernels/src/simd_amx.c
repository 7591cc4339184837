/*
 * Screening of the output layer's scores with AMX tiles (bfloat16 products,
 * float32 sums), and the selection that makes the screening exact.
 *
 * A batch of rows is scored against every label in bfloat16 on the tile unit
 * (about eight times the products per cycle of AVX-512 float32 FMAs); each
 * screened score is within a proven bound of the float32 score, so only the
 * labels whose bound reaches the k-th best lower bound can be in the row's
 * top k, and those few are scored again exactly by the caller. The top k is
 * then the float32 path's, bit for bit.
 *
 * Built only with compilers that know the AMX intrinsics, on x86-64 Linux
 * (the tile state must be requested from the kernel with arch_prctl); every
 * function is compiled for its target by attribute, so the build stays at
 * baseline flags. sks_screen_kernels_get() returns NULL wherever the build,
 * the CPU or the OS lacks AMX, and callers then score in float32.
 */
#include <string.h>

#include "simd.h"

#if defined(__GNUC__) && defined(__x86_64__) && defined(__linux__) && \
    ((defined(__clang__) && __clang_major__ >= 12) || (!defined(__clang__) && __GNUC__ >= 11))
#define SKS_BUILD_AMX 1
#endif

/* Lays W (L rows of H floats, leading dimension ldw) out as the tiles'
   right-hand operands, rounded to bfloat16: for label tile t (16 labels), pair
   row p < 16 * k_steps, label l < 16 and e < 2, packed[((t * 16 * k_steps + p)
   * 16 + l) * 2 + e] = W[16 t + l][2 p + e], zero past L rows or H columns. */
void sks_pack_bf16_tiles(const float *W, sks_idx L, sks_idx H, sks_idx ldw, sks_idx k_steps,
                         sks_bf16 *packed)
{
    sks_idx n_tiles = (L + 15) / 16, pairs = 16 * k_steps, t, p, l, e;
    for (t = 0; t < n_tiles; t++)
        for (p = 0; p < pairs; p++)
            for (l = 0; l < 16; l++)
                for (e = 0; e < 2; e++) {
                    sks_idx j = 16 * t + l, i = 2 * p + e;
                    packed[((t * pairs + p) * 16 + l) * 2 + e] =
                        (j < L && i < H) ? sks_f32_to_bf16_1(W[j * ldw + i]) : 0;
                }
}

/* Inserts lo into low[0:*filled] (best first, at most k kept); T becomes the
   k-th best once there are k. */
static inline void low_insert(float *low, sks_idx *filled, sks_idx k, float lo, float *T)
{
    sks_idx q = *filled < k ? (*filled)++ : k - 1;
    while (q > 0 && low[q - 1] < lo) {
        low[q] = low[q - 1];
        q--;
    }
    low[q] = lo;
    if (*filled == k)
        *T = low[k - 1];
}

/* The candidates kept so far whose upper bound reaches the final T, in order */
static sks_idx keep_reaching(int32_t *cand, const float *hi, sks_idx count, float T,
                             sks_idx max_cand)
{
    sks_idx q, kept = 0;
    for (q = 0; q < count; q++)
        if (hi[q] >= T) {
            if (kept == max_cand)
                return -2;
            cand[kept++] = cand[q];
        }
    return kept;
}

/* The candidates kept so far whose score plus bound (in hi) reaches T, in
   order */
static sks_idx keep_bounded(const float *s, int32_t *cand, const float *hi, sks_idx count,
                            float T, sks_idx max_cand)
{
    sks_idx q, kept = 0;
    for (q = 0; q < count; q++)
        if (s[cand[q]] + hi[q] >= T) {
            if (kept == max_cand)
                return -2;
            cand[kept++] = cand[q];
        }
    return kept;
}

/* One label's bound, as simd.h writes it (each operation rounded, never fused) */
static inline float screen_bound_1(float s, float wn, float bq, float cw, float b_row,
                                   float e2, float p2)
{
    volatile float bnet = cw * wn;
    float t1, acc;
    bnet = bnet + b_row;
    t1 = bnet * (1.0f + 0x1p-16f);
    acc = ((fabsf(s) + bnet) + bq) + p2;
    {
        volatile float t2 = e2 * acc;
        return t1 + t2;
    }
}

sks_idx sks_screen_select_scalar(const float *s, const float *wn, const float *bq, sks_idx n,
                                 float cw, float b_row, float e2, float p2, sks_idx k,
                                 sks_idx max_cand, int32_t *cand, float *hi, float *low)
{
    sks_idx j, filled = 0, count = 0;
    float T = -INFINITY;
    for (j = 0; j < n; j++) {
        float b = screen_bound_1(s[j], wn[j], bq[j], cw, b_row, e2, p2);
        float lo = s[j] - b, up = s[j] + b;
        if (!(fabsf(s[j]) <= 3.0e38f) || !(b <= 3.0e38f))
            return -1;
        if (up >= T) {
            cand[count] = (int32_t)j;
            hi[count++] = up;
        }
        if (filled < k || lo > T)
            low_insert(low, &filled, k, lo, &T);
    }
    return keep_reaching(cand, hi, count, T, max_cand);
}

#ifdef SKS_BUILD_AMX
#include <cpuid.h>
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>

#define SKS_AMX                                                                        \
    __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,avx512bf16,amx-tile," \
                          "amx-bf16")))
#define SKS_ARCH_REQ_XCOMP_PERM 0x1023
#define SKS_XFEATURE_XTILEDATA 18

/* palette 1: eight tiles of 16 rows of 64 bytes */
typedef struct {
    uint8_t palette_id, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} __attribute__((packed)) sks_tile_config;

SKS_AMX static void amx_config(void)
{
    sks_tile_config cfg;
    int t;
    memset(&cfg, 0, sizeof(cfg));
    cfg.palette_id = 1;
    for (t = 0; t < 8; t++) {
        cfg.rows[t] = 16;
        cfg.colsb[t] = 64;
    }
    _tile_loadconfig(&cfg);
}

/* Tiles 0-3 sum a 32 x 32 block (two row tiles by two label tiles), 4-5
   hold the rows' bfloat16 pairs, 6-7 the labels'. */
#define SKS_AMX_STORE(tile, r, t) \
    _tile_stored(tile, out + (r) * 16 * ldo + (t) * 16, ldo * (sks_idx)sizeof(float))

/* out[r * ldo + j] = sum_i h[r * ldh + i] * W[j][i] for r < n_rows (a multiple
   of 16), j < 16 * n_tiles, from the bfloat16 rows h (ldh >= 32 * k_steps,
   zero past the hidden width) and the packed labels (sks_pack_bf16_tiles);
   products exact, sums in float32 */
SKS_AMX static void screen_amx(const sks_bf16 *h, sks_idx ldh, sks_idx n_rows,
                               const sks_bf16 *packed, sks_idx n_tiles, sks_idx k_steps,
                               float *out, sks_idx ldo)
{
    sks_idx row_tiles = n_rows / 16, g, t, r, kk, r_end;
    const sks_idx hstride = ldh * (sks_idx)sizeof(sks_bf16), tile_elems = 16 * 32;
    amx_config();
    /* Four row tiles at a time (their rows stay in the L1 cache), against
       each pair of label tiles (read from L2 once, then from L1) */
    for (g = 0; g < row_tiles; g += 4) {
        r_end = g + 4 < row_tiles ? g + 4 : row_tiles;
        for (t = 0; t + 2 <= n_tiles; t += 2) {
            const sks_bf16 *b0 = packed + t * k_steps * tile_elems;
            const sks_bf16 *b1 = b0 + k_steps * tile_elems;
            for (r = g; r + 2 <= r_end; r += 2) {
                const sks_bf16 *a0 = h + r * 16 * ldh, *a1 = a0 + 16 * ldh;
                _tile_zero(0);
                _tile_zero(1);
                _tile_zero(2);
                _tile_zero(3);
                for (kk = 0; kk < k_steps; kk++) {
                    _tile_loadd(4, a0 + kk * 32, hstride);
                    _tile_loadd(6, b0 + kk * tile_elems, 64);
                    _tile_dpbf16ps(0, 4, 6);
                    _tile_loadd(7, b1 + kk * tile_elems, 64);
                    _tile_dpbf16ps(1, 4, 7);
                    _tile_loadd(5, a1 + kk * 32, hstride);
                    _tile_dpbf16ps(2, 5, 6);
                    _tile_dpbf16ps(3, 5, 7);
                }
                SKS_AMX_STORE(0, r, t);
                SKS_AMX_STORE(1, r, t + 1);
                SKS_AMX_STORE(2, r + 1, t);
                SKS_AMX_STORE(3, r + 1, t + 1);
            }
            if (r < r_end) {
                const sks_bf16 *a0 = h + r * 16 * ldh;
                _tile_zero(0);
                _tile_zero(1);
                for (kk = 0; kk < k_steps; kk++) {
                    _tile_loadd(4, a0 + kk * 32, hstride);
                    _tile_loadd(6, b0 + kk * tile_elems, 64);
                    _tile_loadd(7, b1 + kk * tile_elems, 64);
                    _tile_dpbf16ps(0, 4, 6);
                    _tile_dpbf16ps(1, 4, 7);
                }
                SKS_AMX_STORE(0, r, t);
                SKS_AMX_STORE(1, r, t + 1);
            }
        }
        if (t < n_tiles) {
            const sks_bf16 *b0 = packed + t * k_steps * tile_elems;
            for (r = g; r < r_end; r++) {
                const sks_bf16 *a0 = h + r * 16 * ldh;
                _tile_zero(0);
                for (kk = 0; kk < k_steps; kk++) {
                    _tile_loadd(4, a0 + kk * 32, hstride);
                    _tile_loadd(6, b0 + kk * tile_elems, 64);
                    _tile_dpbf16ps(0, 4, 6);
                }
                SKS_AMX_STORE(0, r, t);
            }
        }
    }
    _tile_release();
}

/* out[q] += (values[t] * weights[features[t] * ld + cand[q]]) for t < nnz in
   order, each product rounded before its sum: the bits of gather_axpy called
   once per feature, with sixteen candidates' sums kept in a register across
   the features */
SKS_AMX static void head_exact(const int32_t *features, const float *values, sks_idx nnz,
                               const float *weights, sks_idx ld, const int32_t *cand, sks_idx n,
                               float *out)
{
    sks_idx q, t;
    for (q = 0; q < n; q += 16) {
        __mmask16 mk = (n - q >= 16) ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - q)) - 1u);
        __m512i idx = _mm512_maskz_loadu_epi32(mk, cand + q);
        __m512 acc = _mm512_maskz_loadu_ps(mk, out + q);
        for (t = 0; t < nnz; t++) {
            __m512 g = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), mk, idx,
                                                weights + (sks_idx)features[t] * ld, 4);
            __m512 p = _mm512_mul_ps(_mm512_set1_ps(values[t]), g);
            __asm__("" : "+v"(p));
            acc = _mm512_add_ps(acc, p);
        }
        _mm512_mask_storeu_ps(out + q, mk, acc);
    }
}

/* One vector of bounds, as screen_bound_1 computes each lane (never fused) */
SKS_AMX static inline __m512 bounds16(__m512 sv, __m512 w, __m512 bqv, __m512 cwv, __m512 brv,
                                      __m512 e2v, __m512 p2v)
{
    const __m512 g1 = _mm512_set1_ps(1.0f + 0x1p-16f);
    __m512 bnet = _mm512_mul_ps(cwv, w), t1, t2;
    __asm__("" : "+v"(bnet));
    bnet = _mm512_add_ps(bnet, brv);
    t1 = _mm512_mul_ps(bnet, g1);
    t2 = _mm512_mul_ps(
        e2v, _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(_mm512_abs_ps(sv), bnet), bqv), p2v));
    __asm__("" : "+v"(t1), "+v"(t2));
    return _mm512_add_ps(t1, t2);
}

/* select_amx for k <= 16 from one bound B for every label of the row: the
   bound of a label with the row's largest |s_j|, wn[j] and bq[j] (each of
   its float operations is monotone in those, so B >= every b_j). Among the
   sixteen labels of the lanes' maxima of s, the k-th largest, L0, has k
   labels at or above it, whose lower bounds are then at least T0 = L0 - B:
   T >= T0. A label whose upper bound reaches T, or whose lower bound is among
   the k best, has s_j + B >= T0; those few get their own bounds (the same
   operations, lane by lane), and T and the candidates are found among them:
   the same candidates as bounding every label, in a pass of two operations
   a vector. Returns SELECT_UNBOUNDED where B is not finite. */
#define SELECT_UNBOUNDED (-3)
SKS_AMX static sks_idx select_one_bound(const float *s, const float *wn, const float *bq,
                                        const float *maxima, sks_idx n, __m512 cwv, __m512 brv,
                                        __m512 e2v, __m512 p2v, sks_idx k, sks_idx max_cand,
                                        int32_t *cand, float *hi, float *low)
{
    const __m512 big = _mm512_set1_ps(3.0e38f);
    const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    __m512 best = _mm512_set1_ps(-INFINITY), top = _mm512_setzero_ps(), bv, t0v;
    __mmask16 bad = 0;
    float lanes[16], B, T = -INFINITY;
    sks_idx j, q, filled = 0, count = 0;
    for (j = 0; j < n; j += 16) {
        __mmask16 mk = (n - j >= 16) ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - j)) - 1u);
        __m512 sv = _mm512_maskz_loadu_ps(mk, s + j), a = _mm512_abs_ps(sv);
        bad |= mk & (__mmask16)~_mm512_cmp_ps_mask(a, big, _CMP_LE_OQ);
        best = _mm512_mask_max_ps(best, mk, best, sv);
        top = _mm512_mask_max_ps(top, mk, top, a);
    }
    if (bad)
        return -1;
    B = _mm512_cvtss_f32(bounds16(_mm512_set1_ps(_mm512_reduce_max_ps(top)),
                                  _mm512_set1_ps(maxima[0]), _mm512_set1_ps(maxima[1]), cwv,
                                  brv, e2v, p2v));
    if (!(B <= 3.0e38f))
        return SELECT_UNBOUNDED;
    _mm512_storeu_ps(lanes, best);
    for (q = 0; q < 16; q++)
        if (filled < k || lanes[q] > T)
            low_insert(low, &filled, k, lanes[q], &T);
    bv = _mm512_set1_ps(B);
    t0v = _mm512_set1_ps(T - B);
    for (j = 0; j < n; j += 16) {
        __mmask16 mk = (n - j >= 16) ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - j)) - 1u);
        __mmask16 in = mk & _mm512_cmp_ps_mask(_mm512_add_ps(_mm512_maskz_loadu_ps(mk, s + j), bv),
                                               t0v, _CMP_GE_OQ);
        if (!in)
            continue;
        _mm512_mask_compressstoreu_epi32(cand + count, in,
                                         _mm512_add_epi32(lane, _mm512_set1_epi32((int)j)));
        count += __builtin_popcount((unsigned)in);
    }
    /* their own bounds (at most B: finite), and T the k-th best lower bound */
    filled = 0;
    T = -INFINITY;
    for (q = 0; q < count; q += 16) {
        __mmask16 mq = (count - q >= 16) ? (__mmask16)0xFFFF
                                         : (__mmask16)((1u << (count - q)) - 1u);
        __m512i id = _mm512_maskz_loadu_epi32(mq, cand + q);
        __m512 sv = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), mq, id, s, 4);
        __m512 b = bounds16(sv, _mm512_mask_i32gather_ps(_mm512_setzero_ps(), mq, id, wn, 4),
                            _mm512_mask_i32gather_ps(_mm512_setzero_ps(), mq, id, bq, 4), cwv,
                            brv, e2v, p2v);
        float l[16];
        unsigned r, left = mq;
        _mm512_mask_storeu_ps(hi + q, mq, b);
        _mm512_storeu_ps(l, _mm512_sub_ps(sv, b));
        while (left) {
            r = (unsigned)__builtin_ctz(left);
            left &= left - 1;
            if (filled < k || l[r] > T)
                low_insert(low, &filled, k, l[r], &T);
        }
    }
    return keep_bounded(s, cand, hi, count, T, max_cand);
}

/* sks_screen_select_scalar sixteen labels at a time, with the same bounds
   and so the same candidates. For k <= 16, select_one_bound, or where its
   bound is not finite, a first pass that writes the bounds
   and keeps each lane's best lower bound: the k-th best of those sixteen is
   at most T, so the labels whose upper bound reaches it include every
   candidate and every label of the top k lower bounds; T is then found
   among them. For larger k, one pass keeps the k best lower bounds as they
   come. */
SKS_AMX static sks_idx select_amx(const float *s, const float *wn, const float *bq,
                                  const float *maxima, sks_idx n, float cw, float b_row,
                                  float e2, float p2, sks_idx k, sks_idx max_cand, int32_t *cand,
                                  float *hi, float *low)
{
    const __m512 cwv = _mm512_set1_ps(cw), brv = _mm512_set1_ps(b_row);
    const __m512 e2v = _mm512_set1_ps(e2), p2v = _mm512_set1_ps(p2);
    const __m512 big = _mm512_set1_ps(3.0e38f), ninf = _mm512_set1_ps(-INFINITY);
    const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    sks_idx j, q, filled = 0, count = 0;
    float T = -INFINITY;
    __mmask16 bad = 0;
    if (k <= 16) {
        __m512 best = ninf, tv;
        float lanes[16];
        sks_idx got = select_one_bound(s, wn, bq, maxima, n, cwv, brv, e2v, p2v, k, max_cand,
                                       cand, hi, low);
        if (got != SELECT_UNBOUNDED)
            return got;
        /* hi holds the bounds, then (compressed behind the ones still to be
           read) the bounds of the labels that reach the lanes' T */
        for (j = 0; j < n; j += 16) {
            __mmask16 mk = (n - j >= 16) ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - j)) - 1u);
            __m512 sv = _mm512_maskz_loadu_ps(mk, s + j);
            __m512 b = bounds16(sv, _mm512_maskz_loadu_ps(mk, wn + j),
                                _mm512_maskz_loadu_ps(mk, bq + j), cwv, brv, e2v, p2v);
            bad |= mk & (__mmask16)~(_mm512_cmp_ps_mask(_mm512_abs_ps(sv), big, _CMP_LE_OQ) &
                                     _mm512_cmp_ps_mask(b, big, _CMP_LE_OQ));
            _mm512_mask_storeu_ps(hi + j, mk, b);
            best = _mm512_mask_max_ps(best, mk, best, _mm512_sub_ps(sv, b));
        }
        if (bad)
            return -1;
        _mm512_storeu_ps(lanes, best);
        for (q = 0; q < 16; q++)
            if (filled < k || lanes[q] > T)
                low_insert(low, &filled, k, lanes[q], &T);
        tv = _mm512_set1_ps(T);
        for (j = 0; j < n; j += 16) {
            __mmask16 mk = (n - j >= 16) ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - j)) - 1u);
            __m512 b = _mm512_maskz_loadu_ps(mk, hi + j);
            __m512 up = _mm512_add_ps(_mm512_maskz_loadu_ps(mk, s + j), b);
            __mmask16 in = mk & _mm512_cmp_ps_mask(up, tv, _CMP_GE_OQ);
            /* (most vectors keep no label: a compressing store costs far
               more than this test) */
            if (!in)
                continue;
            _mm512_mask_compressstoreu_epi32(cand + count, in,
                                             _mm512_add_epi32(lane, _mm512_set1_epi32((int)j)));
            _mm512_mask_compressstoreu_ps(hi + count, in, b);
            count += __builtin_popcount((unsigned)in);
        }
        /* T: the k-th best lower bound, among these */
        filled = 0;
        T = -INFINITY;
        for (q = 0; q < count; q++) {
            float lo = s[cand[q]] - hi[q];
            if (filled < k || lo > T)
                low_insert(low, &filled, k, lo, &T);
        }
        return keep_bounded(s, cand, hi, count, T, max_cand);
    }
    for (j = 0; j < n; j += 16) {
        __mmask16 mk = (n - j >= 16) ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - j)) - 1u);
        __m512 sv = _mm512_maskz_loadu_ps(mk, s + j), lo, up, tv = _mm512_set1_ps(T);
        __m512 b = bounds16(sv, _mm512_maskz_loadu_ps(mk, wn + j),
                            _mm512_maskz_loadu_ps(mk, bq + j), cwv, brv, e2v, p2v);
        __mmask16 in, rise;
        bad |= mk & (__mmask16)~(_mm512_cmp_ps_mask(_mm512_abs_ps(sv), big, _CMP_LE_OQ) &
                                 _mm512_cmp_ps_mask(b, big, _CMP_LE_OQ));
        lo = _mm512_sub_ps(sv, b);
        up = _mm512_add_ps(sv, b);
        in = mk & _mm512_cmp_ps_mask(up, tv, _CMP_GE_OQ);
        if (in) {
            _mm512_mask_compressstoreu_epi32(
                cand + count, in, _mm512_add_epi32(lane, _mm512_set1_epi32((int)j)));
            _mm512_mask_compressstoreu_ps(hi + count, in, up);
            count += __builtin_popcount((unsigned)in);
        }
        rise = filled < k ? mk : (mk & _mm512_cmp_ps_mask(lo, tv, _CMP_GT_OQ));
        if (rise) {
            float l[16];
            _mm512_storeu_ps(l, lo);
            while (rise) {
                int r = __builtin_ctz((unsigned)rise);
                rise &= (__mmask16)(rise - 1);
                if (filled < k || l[r] > T)
                    low_insert(low, &filled, k, l[r], &T);
            }
        }
    }
    if (bad)
        return -1;
    return keep_reaching(cand, hi, count, T, max_cand);
}

static const sks_screen_kernels sks_screen_amx = {screen_amx, select_amx,
                                                   sks_group_dots_avx512,
                                                   head_exact};

/* CPUID reports AMX-TILE and AMX-BF16, the OS enables the tile state in
   XCR0, and Linux grants this process the tile data. */
static int amx_usable(void)
{
    unsigned int a, b, c, d;
    unsigned long long xcr0;
    if (__get_cpuid_max(0, 0) < 7)
        return 0;
    __cpuid(1, a, b, c, d);
    if (!((c >> 27) & 1)) /* OSXSAVE */
        return 0;
    __cpuid_count(7, 0, a, b, c, d);
    if (!((d >> 22) & 1) || !((d >> 24) & 1) || a < 1)
        return 0;
    __cpuid_count(7, 1, a, b, c, d);
    if (!((a >> 5) & 1)) /* AVX512_BF16, for the head's products */
        return 0;
    {
        unsigned int lo, hi;
        __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
        xcr0 = ((unsigned long long)hi << 32) | lo;
    }
    if ((xcr0 & (3ull << 17)) != (3ull << 17))
        return 0;
    return syscall(SYS_arch_prctl, SKS_ARCH_REQ_XCOMP_PERM, SKS_XFEATURE_XTILEDATA) == 0;
}
#endif

const sks_screen_kernels *sks_screen_kernels_get(void)
{
#ifdef SKS_BUILD_AMX
    static int state = -1; /* the first call is made once, at import, under the GIL */
    if (state < 0)
        state = amx_usable();
    return state ? &sks_screen_amx : NULL;
#else
    return NULL;
#endif
}

int sks_screen_compiled(void)
{
#ifdef SKS_BUILD_AMX
    return 1;
#else
    return 0;
#endif
}
