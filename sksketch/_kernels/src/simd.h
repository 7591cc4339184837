/*
 * SIMD primitives of sksketch, with one implementation per instruction set.
 *
 * Each variant lives in its own translation unit (simd_scalar.c, simd_avx2.c,
 * simd_avx512.c) and fills a table of function pointers. The AVX variants are
 * compiled with per-function target attributes, so the whole build stays at
 * baseline flags and the binary runs on any x86-64 CPU; simd_dispatch.c picks a
 * table once from CPUID and the OS's XSAVE state.
 *
 * Conventions shared by every variant:
 * - lengths are sks_idx (ptrdiff_t) and may be 0;
 * - row indices are int32 and must be in range: callers validate them;
 * - matrices are row-major with a leading dimension `ld` (elements per row);
 * - nothing allocates, nothing touches memory outside the given extents
 *   (tails use masked loads or scalar code).
 */
#ifndef SKS_SIMD_H
#define SKS_SIMD_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef ptrdiff_t sks_idx;
/* bfloat16 stored as its raw 16 bits: the upper half of an IEEE float32. */
typedef uint16_t sks_bf16;

enum sks_isa {
    SKS_ISA_SCALAR = 0,      /* portable C, any CPU */
    SKS_ISA_AVX2 = 1,        /* AVX2 + FMA */
    SKS_ISA_AVX512 = 2,      /* AVX-512 F/BW/DQ/VL */
    SKS_ISA_AVX512_BF16 = 3, /* the above + AVX512_BF16 dot products */
    SKS_ISA_COUNT = 4
};

typedef struct sks_kernels {
    int isa;
    /* sum_i x[i] * y[i] */
    float (*dot)(const float *x, const float *y, sks_idx n);
    /* sum_i x[i] * y[i] on bfloat16 inputs, accumulated in float32 */
    float (*dot_bf16)(const sks_bf16 *x, const sks_bf16 *y, sks_idx n);
    /* y[i] += alpha * x[i] */
    void (*axpy)(float alpha, const float *x, float *y, sks_idx n);
    /* out[0:m] += sum_j values[j] * weights[indices[j] * ld + 0:m]
       (a CSR row times a dense matrix whose rows are selected by the row) */
    void (*sparse_dense_accum)(const int32_t *indices, const float *values, sks_idx nnz,
                               const float *weights, sks_idx ld, sks_idx m, float *out);
    /* out[r] = sum_i x[i] * weights[rows[r] * ld + i], i < m */
    void (*gather_dot)(const float *x, const float *weights, sks_idx ld,
                       const int32_t *rows, sks_idx n_rows, sks_idx m, float *out);
    void (*gather_dot_bf16)(const sks_bf16 *x, const sks_bf16 *weights, sks_idx ld,
                            const int32_t *rows, sks_idx n_rows, sks_idx m, float *out);
    /* out = softmax(z), computed as exp(z - max z) / sum; returns log-sum-exp
       of z (-inf when n == 0). `out` may alias `z`. */
    float (*softmax)(const float *z, sks_idx n, float *out);
    /* The min(k, n) largest entries of s, best first; ties go to the lower
       index. Writes indices and values, returns the count. */
    sks_idx (*topk)(const float *s, sks_idx n, sks_idx k, int32_t *idx, float *val);
    /* round to nearest even; NaN stays a (quiet) NaN */
    void (*f32_to_bf16)(const float *x, sks_bf16 *out, sks_idx n);
    void (*bf16_to_f32)(const sks_bf16 *x, float *out, sks_idx n);
    /* One Adam step on a row, gradient reset: for each i,
       m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;
       w = w * shrink - lr * m / (sqrt(v) + eps);  g = 0
       (lr and eps already carry the bias corrections; shrink = 1 - decay). */
    void (*adam)(float *w, float *m, float *v, float *g, sks_idx n, float lr, float b1,
                 float b2, float eps, float shrink);
    /* Adam as above, with the moments m and v stored in bfloat16: computed in
       float32, then stochastically rounded (sks_bf16_round_sr), the random bits
       of element i being sks_adam_sr_bits(seed, i). */
    void (*adam_bf16_moments)(float *w, sks_bf16 *m, sks_bf16 *v, float *g, sks_idx n, float lr,
                              float b1, float b2, float eps, float shrink, uint32_t seed);
    /* sparse_dense_accum over bfloat16 weights, accumulated in float32 */
    void (*sparse_dense_accum_bf16)(const int32_t *indices, const float *values, sks_idx nnz,
                                    const sks_bf16 *weights, sks_idx ld, sks_idx m, float *out);
    /* gather_dot of two vectors over the same rows: out0 and out1 hold bit for
       bit what gather_dot gives for x0 and x1 alone (each weight row is read
       once for both). */
    void (*gather_dot2)(const float *x0, const float *x1, const float *weights, sks_idx ld,
                        const int32_t *rows, sks_idx n_rows, sks_idx m, float *out0,
                        float *out1);
    /* Signed random projections of a CSR row, on the fly: for each non-zero
       p in order and each word w < n_words, with
       bits = sks_mix64(base + indices[p] * n_words + w),
       acc[64 w + j] += (bit j of bits) ? values[p] : -values[p]   (j < 64).
       Each lane adds in the order of the non-zeros, in float32, so every
       variant gives the same bits. */
    void (*srp_accum)(const int32_t *indices, const float *values, sks_idx nnz,
                      uint64_t base, int n_words, float *acc);
    /* For j < nnz in order: out[0:m] = out + (values[j] * scale) * weights[indices[j] * ld +
       0:m], each product rounded to float32 before its sum (never fused): the bits of the
       plain C loop at baseline flags, whatever the instruction set, with out kept in
       registers across the j */
    void (*sparse_dense_accum_rounded)(const int32_t *indices, const float *values,
                                       float scale, sks_idx nnz, const float *weights,
                                       sks_idx ld, sks_idx m, float *out);
    /* A sparse head's scores of one feature's pairs, the labels first reached
       listed: for k < n in order, with j = labels[k] (distinct within a call),
       a label with mark[j] == 0 is marked 1, appended to reached (at
       reached[n_reached], n_reached counting up) and its acc[j] set to 0;
       then acc[j] = acc[j] + x * weights[k], the product rounded before its
       sum (never fused). Returns the new count of reached labels. */
    sks_idx (*reach_accum)(const int32_t *labels, const float *weights, sks_idx n, float x,
                           float *acc, int32_t *mark, int32_t *reached, sks_idx n_reached);
    /* out[k] = out[k] + x * table[idx[k]] for k < n, each product rounded
       before its sum (never fused) */
    void (*gather_axpy)(float x, const float *table, const int32_t *idx, sks_idx n,
                        float *out);
    /* table[idx[t]] = (float)((double)vals[t] * scale) for t < n (idx distinct) */
    void (*scatter_scaled)(const float *vals, double scale, const int32_t *idx, sks_idx n,
                           float *table);
    /* mark[idx[t]] = 0 for t < n */
    void (*clear_marks)(int32_t *mark, const int32_t *idx, sks_idx n);
    /* The k best of v[c] = net[c] + w * head[c] over c < n (k >= 1, n >= k),
       the product rounded before its sum: top (ids[c]) and best (v[c]),
       best first. Candidates go in order: the first k by a stable
       insertion, then each one above the k-th best so far (NaN never),
       so among equal values the earlier candidate comes first. */
    void (*mixed_topk)(const float *net, const float *head, const int32_t *ids, sks_idx n,
                       float w, sks_idx k, int32_t *top, float *best);
    /* How many j < n have reach[j] != 0 or net[j] >= bar (NaN never) */
    sks_idx (*count_kept)(const float *reach, const float *net, sks_idx n, float bar);
    /* Those j (offset + j) and net[j] written in order to cols and values;
       returns how many */
    sks_idx (*write_kept)(const float *reach, const float *net, sks_idx n, float bar,
                          int32_t offset, int32_t *cols, float *values);
    /* One pass over a row of labels j < n: those with head[j] != 0 (NaN
       included) listed in cand in order (returns how many), and the k best
       of the others by net[j] kept as mixed_topk keeps them (a stable
       insertion in order, then each one above the k-th best) in base_id and
       base_val, best first, *n_base of them (k >= 1) */
    sks_idx (*scan_mixed)(const float *head, const float *net, sks_idx n, sks_idx k,
                          int32_t *cand, int32_t *base_id, float *base_val, sks_idx *n_base);
    /* sparse_dense_accum of four rows over the same indices: for q < 4,
       out[q][0:m] += sum_j values[q][j] * weights[indices[j] * ld + 0:m], bit
       for bit what sparse_dense_accum gives each alone (each weight row is
       read once for the four) */
    void (*sparse_dense_accum4)(const int32_t *indices, const float *const *values, sks_idx nnz,
                                const float *weights, sks_idx ld, sks_idx m,
                                float *const *out);
} sks_kernels;

typedef struct sks_cpu_features {
    int sse2, avx, fma, avx2;
    int avx512f, avx512bw, avx512dq, avx512vl, avx512_bf16;
    int os_avx;    /* XCR0 enables the YMM state */
    int os_avx512; /* XCR0 enables the opmask and ZMM states */
} sks_cpu_features;

void sks_detect_cpu(sks_cpu_features *features);
/* Whether this build contains the variant at all (compiler support). */
int sks_isa_compiled(int isa);
/* Whether the CPU and OS can run the variant, and the build contains it. */
int sks_isa_supported(const sks_cpu_features *features, int isa);
/* The table of a compiled variant, or NULL. */
const sks_kernels *sks_kernels_for(int isa);

/* Screening of the output layer in bfloat16 (simd_amx.c): where
   sks_screen_kernels_get() returns a table, the tile unit scores rows against
   every label, and select keeps the labels that can be in a row's top k. */
typedef struct sks_screen_kernels {
    /* out[r * ldo + j] = sum_i h[r * ldh + i] * W[j][i] for r < n_rows (a
       multiple of 16) and j < 16 * n_tiles: h in bfloat16 (ldh >= 32 * k_steps,
       zero past the hidden width), W packed by sks_pack_bf16_tiles; products
       exact, sums in float32 in the unit's order */
    void (*screen)(const sks_bf16 *h, sks_idx ldh, sks_idx n_rows, const sks_bf16 *packed,
                   sks_idx n_tiles, sks_idx k_steps, float *out, sks_idx ldo);
    /* sks_screen_select_scalar, sixteen labels at a time: the same results;
       maxima[0] and maxima[1] are at least every wn[j] and bq[j] */
    sks_idx (*select)(const float *s, const float *wn, const float *bq, const float *maxima,
                      sks_idx n, float cw, float b_row, float e2, float p2, sks_idx k,
                      sks_idx max_cand, int32_t *cand, float *hi, float *low);
    /* sks_group_dots_avx512: the float32 scores of the candidates */
    void (*rescore)(const float *x, const float *weights, sks_idx ld, sks_idx m,
                    sks_idx n_labels, const int32_t *cand, sks_idx n, const float *b,
                    float *out);
    /* out[q] += values[t] * weights[features[t] * ld + cand[q]] for t < nnz in
       order, each product rounded before its sum (gather_axpy's bits, once
       per feature) */
    void (*head_exact)(const int32_t *features, const float *values, sks_idx nnz,
                       const float *weights, sks_idx ld, const int32_t *cand, sks_idx n,
                       float *out);
} sks_screen_kernels;

/* a term of the screening bound for inputs and products flushed to zero
   (bfloat16 tiles treat subnormals as zero) */
#define SKS_SCREEN_ABS 0x1p-100f

/* The tile kernels, or NULL where the build, the CPU or the OS lacks AMX
   (the first call asks Linux for the tile state: call it once, single-threaded). */
const sks_screen_kernels *sks_screen_kernels_get(void);
/* Whether this build contains the tile kernels. */
int sks_screen_compiled(void);
/* W (L rows of H floats, leading dimension ldw) rounded to bfloat16 and laid
   out as the tiles' operands: label tile t, pair row p < 16 * k_steps, label
   l < 16, e < 2 at ((t * 16 * k_steps + p) * 16 + l) * 2 + e holds W[16 t +
   l][2 p + e], zero past L rows or H columns. */
void sks_pack_bf16_tiles(const float *W, sks_idx L, sks_idx H, sks_idx ldw, sks_idx k_steps,
                         sks_bf16 *packed);
/* The labels j < n whose screened score s[j] may be in the row's top k:
   with the bound b_j = bnet_j * (1 + 2^-16) + e2 * (((|s_j| + bnet_j) + bq[j])
   + p2), bnet_j = cw * wn[j] + b_row (float32, in this order, never fused),
   and T the k-th largest s_j - b_j, the j with s_j + b_j >= T, in order, in
   cand. Returns their count, -1 if a score or a bound is not finite, -2
   past max_cand. hi is scratch of n floats, low of k. */
sks_idx sks_screen_select_scalar(const float *s, const float *wn, const float *bq, sks_idx n,
                                 float cw, float b_row, float e2, float p2, sks_idx k,
                                 sks_idx max_cand, int32_t *cand, float *hi, float *low);
/* see sks_screen_kernels.rescore (simd_avx512.c) */
void sks_group_dots_avx512(const float *x, const float *weights, sks_idx ld, sks_idx m,
                           sks_idx n_labels, const int32_t *cand, sks_idx n, const float *b,
                           float *out);

/* The portable sparse-head primitives (simd_scalar.c): the AVX2 table shares
   the scattered updates (AVX2 gathers but has no scatter) and the tails of
   the kept-logit scans. */
sks_idx sks_reach_accum_scalar(const int32_t *labels, const float *weights, sks_idx n,
                               float x, float *acc, int32_t *mark, int32_t *reached,
                               sks_idx n_reached);
void sks_gather_axpy_scalar(float x, const float *table, const int32_t *idx, sks_idx n,
                            float *out);
void sks_scatter_scaled_scalar(const float *vals, double scale, const int32_t *idx, sks_idx n,
                               float *table);
void sks_clear_marks_scalar(int32_t *mark, const int32_t *idx, sks_idx n);
void sks_mixed_topk_scalar(const float *net, const float *head, const int32_t *ids, sks_idx n,
                           float w, sks_idx k, int32_t *top, float *best);
sks_idx sks_scan_mixed_scalar(const float *head, const float *net, sks_idx n, sks_idx k,
                              int32_t *cand, int32_t *base_id, float *base_val,
                              sks_idx *n_base);
sks_idx sks_count_kept_scalar(const float *reach, const float *net, sks_idx n, float bar);
sks_idx sks_write_kept_scalar(const float *reach, const float *net, sks_idx n, float bar,
                              int32_t offset, int32_t *cols, float *values);

/* Scalar conversions, shared by every variant for tails. */
static inline sks_bf16 sks_f32_to_bf16_1(float f)
{
    union { float f; uint32_t u; } v;
    v.f = f;
    if ((v.u & 0x7fffffffu) > 0x7f800000u)
        return (sks_bf16)((v.u >> 16) | 0x40u);
    v.u += 0x7fffu + ((v.u >> 16) & 1u);
    return (sks_bf16)(v.u >> 16);
}

/* Scalar Adam on elements [i, n) of a row, for tails (see sks_kernels.adam). */
static inline void sks_adam_tail(float *w, float *m, float *v, float *g, sks_idx i, sks_idx n,
                                 float lr, float b1, float b2, float eps, float shrink)
{
    for (; i < n; i++) {
        float gi = g[i];
        float mi = b1 * m[i] + (1.0f - b1) * gi;
        float vi = b2 * v[i] + (1.0f - b2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        w[i] = w[i] * shrink - lr * mi / (sqrtf(vi) + eps);
        g[i] = 0.0f;
    }
}

/* splitmix64's finaliser (the same as mix64 in _random.pxd) */
static inline uint64_t sks_mix64(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

/* murmur3's 32-bit finaliser: a bijection that mixes every bit */
static inline uint32_t sks_mix32(uint32_t x)
{
    x ^= x >> 16;
    x *= 0x85ebca6bu;
    x ^= x >> 13;
    x *= 0xc2b2ae35u;
    return x ^ (x >> 16);
}

/* 32 random bits for element i of a row (the low 16 round m, the high 16 v) */
static inline uint32_t sks_adam_sr_bits(uint32_t seed, sks_idx i)
{
    return sks_mix32(seed ^ ((uint32_t)i * 0x9E3779B9u));
}

/* Stochastic rounding of a finite float to bfloat16: adding 16 random bits
   below the kept ones rounds up with probability equal to the dropped
   fraction, so the rounding is unbiased (a decay by 0.999 is not lost). */
static inline sks_bf16 sks_bf16_round_sr(float f, uint32_t bits16)
{
    union { float f; uint32_t u; } v;
    v.f = f;
    return (sks_bf16)((v.u + (bits16 & 0xffffu)) >> 16);
}

static inline float sks_bf16_to_f32_1(sks_bf16 h)
{
    union { float f; uint32_t u; } v;
    v.u = (uint32_t)h << 16;
    return v.f;
}

/* Scalar Adam with bfloat16 moments on elements [i, n) (see adam_bf16_moments). */
static inline void sks_adam_bf16_moments_tail(float *w, sks_bf16 *m, sks_bf16 *v, float *g,
                                              sks_idx i, sks_idx n, float lr, float b1,
                                              float b2, float eps, float shrink, uint32_t seed)
{
    for (; i < n; i++) {
        float gi = g[i];
        float mi = b1 * sks_bf16_to_f32_1(m[i]) + (1.0f - b1) * gi;
        float vi = b2 * sks_bf16_to_f32_1(v[i]) + (1.0f - b2) * gi * gi;
        uint32_t bits = sks_adam_sr_bits(seed, i);
        w[i] = w[i] * shrink - lr * mi / (sqrtf(vi) + eps);
        m[i] = sks_bf16_round_sr(mi, bits);
        v[i] = sks_bf16_round_sr(vi, bits >> 16);
        g[i] = 0.0f;
    }
}

#ifdef __cplusplus
}
#endif

#endif
