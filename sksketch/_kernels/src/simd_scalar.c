/*
 * Portable variant: plain C at baseline flags, the reference every SIMD
 * variant is tested against and the path used on CPUs without AVX2.
 * Reductions keep several independent partial sums so the compiler can overlap
 * them; no variant promises bit-identical sums with another.
 */
#include <math.h>

#include "simd.h"
#include "simd_topk.h"

static float dot_scalar(const float *x, const float *y, sks_idx n)
{
    float s0 = 0.f, s1 = 0.f, s2 = 0.f, s3 = 0.f;
    sks_idx i = 0;
    for (; i + 4 <= n; i += 4) {
        s0 += x[i] * y[i];
        s1 += x[i + 1] * y[i + 1];
        s2 += x[i + 2] * y[i + 2];
        s3 += x[i + 3] * y[i + 3];
    }
    for (; i < n; i++)
        s0 += x[i] * y[i];
    return (s0 + s1) + (s2 + s3);
}

static float dot_bf16_scalar(const sks_bf16 *x, const sks_bf16 *y, sks_idx n)
{
    float s0 = 0.f, s1 = 0.f;
    sks_idx i = 0;
    for (; i + 2 <= n; i += 2) {
        s0 += sks_bf16_to_f32_1(x[i]) * sks_bf16_to_f32_1(y[i]);
        s1 += sks_bf16_to_f32_1(x[i + 1]) * sks_bf16_to_f32_1(y[i + 1]);
    }
    for (; i < n; i++)
        s0 += sks_bf16_to_f32_1(x[i]) * sks_bf16_to_f32_1(y[i]);
    return s0 + s1;
}

static void axpy_scalar(float alpha, const float *x, float *y, sks_idx n)
{
    sks_idx i;
    for (i = 0; i < n; i++)
        y[i] += alpha * x[i];
}

static void sparse_dense_accum_scalar(const int32_t *indices, const float *values, sks_idx nnz,
                                      const float *weights, sks_idx ld, sks_idx m, float *out)
{
    sks_idx j;
    for (j = 0; j < nnz; j++)
        axpy_scalar(values[j], weights + (sks_idx)indices[j] * ld, out, m);
}

/* four sparse_dense_accum_scalar calls: the same bits by construction */
static void sparse_dense_accum4_scalar(const int32_t *indices, const float *const *values,
                                       sks_idx nnz, const float *weights, sks_idx ld, sks_idx m,
                                       float *const *out)
{
    int q;
    for (q = 0; q < 4; q++)
        sparse_dense_accum_scalar(indices, values[q], nnz, weights, ld, m, out[q]);
}

static void sparse_dense_accum_bf16_scalar(const int32_t *indices, const float *values,
                                           sks_idx nnz, const sks_bf16 *weights, sks_idx ld,
                                           sks_idx m, float *out)
{
    sks_idx j, c;
    for (j = 0; j < nnz; j++) {
        const sks_bf16 *w = weights + (sks_idx)indices[j] * ld;
        for (c = 0; c < m; c++)
            out[c] += values[j] * sks_bf16_to_f32_1(w[c]);
    }
}

static void gather_dot_scalar(const float *x, const float *weights, sks_idx ld,
                              const int32_t *rows, sks_idx n_rows, sks_idx m, float *out)
{
    sks_idx r;
    for (r = 0; r < n_rows; r++)
        out[r] = dot_scalar(x, weights + (sks_idx)rows[r] * ld, m);
}

static void gather_dot2_scalar(const float *x0, const float *x1, const float *weights,
                               sks_idx ld, const int32_t *rows, sks_idx n_rows, sks_idx m,
                               float *out0, float *out1)
{
    gather_dot_scalar(x0, weights, ld, rows, n_rows, m, out0);
    gather_dot_scalar(x1, weights, ld, rows, n_rows, m, out1);
}

static void gather_dot_bf16_scalar(const sks_bf16 *x, const sks_bf16 *weights, sks_idx ld,
                                   const int32_t *rows, sks_idx n_rows, sks_idx m, float *out)
{
    sks_idx r;
    for (r = 0; r < n_rows; r++)
        out[r] = dot_bf16_scalar(x, weights + (sks_idx)rows[r] * ld, m);
}

static float softmax_scalar(const float *z, sks_idx n, float *out)
{
    float zmax = -INFINITY;
    double sum = 0.0;
    float inv;
    sks_idx i;
    if (n == 0)
        return -INFINITY;
    for (i = 0; i < n; i++)
        zmax = z[i] > zmax ? z[i] : zmax;
    if (zmax == -INFINITY) {
        /* every logit is -inf: the limit is the uniform distribution */
        for (i = 0; i < n; i++)
            out[i] = 1.f / (float)n;
        return -INFINITY;
    }
    for (i = 0; i < n; i++) {
        float e = expf(z[i] - zmax);
        out[i] = e;
        sum += e;
    }
    inv = (float)(1.0 / sum);
    for (i = 0; i < n; i++)
        out[i] *= inv;
    return zmax + (float)log(sum);
}

static sks_idx topk_scalar(const float *s, sks_idx n, sks_idx k, int32_t *idx, float *val)
{
    sks_idx i;
    if (k > n)
        k = n;
    if (k <= 0)
        return 0;
    sks_heap_init(s, k, idx, val);
    for (i = k; i < n; i++)
        sks_heap_offer(s[i], (int32_t)i, idx, val, k);
    sks_heap_finish(idx, val, k);
    return k;
}

static void f32_to_bf16_scalar(const float *x, sks_bf16 *out, sks_idx n)
{
    sks_idx i;
    for (i = 0; i < n; i++)
        out[i] = sks_f32_to_bf16_1(x[i]);
}

static void bf16_to_f32_scalar(const sks_bf16 *x, float *out, sks_idx n)
{
    sks_idx i;
    for (i = 0; i < n; i++)
        out[i] = sks_bf16_to_f32_1(x[i]);
}

static void adam_scalar(float *w, float *m, float *v, float *g, sks_idx n, float lr,
                        float b1, float b2, float eps, float shrink)
{
    sks_adam_tail(w, m, v, g, 0, n, lr, b1, b2, eps, shrink);
}

static void adam_bf16_moments_scalar(float *w, sks_bf16 *m, sks_bf16 *v, float *g, sks_idx n,
                                     float lr, float b1, float b2, float eps, float shrink,
                                     uint32_t seed)
{
    sks_adam_bf16_moments_tail(w, m, v, g, 0, n, lr, b1, b2, eps, shrink, seed);
}

/* sks_byte_signs[8 v + b]: +1 if bit b of the byte v is set, else -1 */
#define SKS_S(v, b) ((((v) >> (b)) & 1) ? 1.0f : -1.0f)
#define SKS_ROW(v) SKS_S(v, 0), SKS_S(v, 1), SKS_S(v, 2), SKS_S(v, 3), \
                   SKS_S(v, 4), SKS_S(v, 5), SKS_S(v, 6), SKS_S(v, 7)
#define SKS_R4(v) SKS_ROW(v), SKS_ROW(v + 1), SKS_ROW(v + 2), SKS_ROW(v + 3)
#define SKS_R16(v) SKS_R4(v), SKS_R4(v + 4), SKS_R4(v + 8), SKS_R4(v + 12)
#define SKS_R64(v) SKS_R16(v), SKS_R16(v + 16), SKS_R16(v + 32), SKS_R16(v + 48)
static const float sks_byte_signs[256 * 8] = {SKS_R64(0), SKS_R64(64), SKS_R64(128),
                                              SKS_R64(192)};

static void srp_accum_scalar(const int32_t *indices, const float *values, sks_idx nnz,
                             uint64_t base, int n_words, float *acc)
{
    sks_idx p;
    int w, c, b;
    for (p = 0; p < nnz; p++) {
        float x = values[p];
        for (w = 0; w < n_words; w++) {
            uint64_t bits = sks_mix64(base + (uint64_t)indices[p] * (uint64_t)n_words
                                      + (uint64_t)w);
            /* eight signs at a time from the table, without a branch per
               (random) bit; x * (+-1) is exactly +-x */
            for (c = 0; c < 8; c++) {
                const float *signs = sks_byte_signs + ((bits >> (8 * c)) & 255u) * 8;
                float *out = acc + 64 * w + 8 * c;
                for (b = 0; b < 8; b++)
                    out[b] += x * signs[b];
            }
        }
    }
}

/* baseline flags have no FMA: each product is rounded before its sum */
static void sparse_dense_accum_rounded_scalar(const int32_t *indices, const float *values,
                                              float scale, sks_idx nnz, const float *weights,
                                              sks_idx ld, sks_idx m, float *out)
{
    sks_idx j, c;
    for (j = 0; j < nnz; j++) {
        const float x = values[j] * scale, *w = weights + (sks_idx)indices[j] * ld;
        for (c = 0; c < m; c++)
            out[c] = out[c] + x * w[c];
    }
}

sks_idx sks_reach_accum_scalar(const int32_t *labels, const float *weights, sks_idx n,
                               float x, float *acc, int32_t *mark, int32_t *reached,
                               sks_idx n_reached)
{
    sks_idx k;
    for (k = 0; k < n; k++) {
        int32_t j = labels[k];
        if (!mark[j]) {
            mark[j] = 1;
            acc[j] = 0.0f;
            reached[n_reached++] = j;
        }
        acc[j] += x * weights[k];
    }
    return n_reached;
}

void sks_gather_axpy_scalar(float x, const float *table, const int32_t *idx, sks_idx n,
                            float *out)
{
    sks_idx k;
    for (k = 0; k < n; k++)
        out[k] += x * table[idx[k]];
}

void sks_scatter_scaled_scalar(const float *vals, double scale, const int32_t *idx, sks_idx n,
                               float *table)
{
    sks_idx t;
    for (t = 0; t < n; t++)
        table[idx[t]] = (float)((double)vals[t] * scale);
}

void sks_clear_marks_scalar(int32_t *mark, const int32_t *idx, sks_idx n)
{
    sks_idx t;
    for (t = 0; t < n; t++)
        mark[idx[t]] = 0;
}

void sks_mixed_topk_scalar(const float *net, const float *head, const int32_t *ids, sks_idx n,
                           float w, sks_idx k, int32_t *top, float *best)
{
    sks_idx c, kept = 0;
    float worst = -INFINITY;
    for (c = 0; c < n; c++)
        sks_topk_offer(net[c] + w * head[c], ids[c], k, top, best, &kept, &worst);
}

sks_idx sks_scan_mixed_scalar(const float *head, const float *net, sks_idx n, sks_idx k,
                              int32_t *cand, int32_t *base_id, float *base_val,
                              sks_idx *n_base)
{
    sks_idx j, n_cand = 0, nb = 0;
    float worst = -INFINITY;
    for (j = 0; j < n; j++) {
        if (head[j] != 0)
            cand[n_cand++] = (int32_t)j;
        else
            sks_topk_offer(net[j], (int32_t)j, k, base_id, base_val, &nb, &worst);
    }
    *n_base = nb;
    return n_cand;
}

sks_idx sks_count_kept_scalar(const float *reach, const float *net, sks_idx n, float bar)
{
    sks_idx j, count = 0;
    for (j = 0; j < n; j++)
        count += reach[j] != 0 || net[j] >= bar;
    return count;
}

sks_idx sks_write_kept_scalar(const float *reach, const float *net, sks_idx n, float bar,
                              int32_t offset, int32_t *cols, float *values)
{
    sks_idx j, q = 0;
    for (j = 0; j < n; j++)
        if (reach[j] != 0 || net[j] >= bar) {
            cols[q] = offset + (int32_t)j;
            values[q] = net[j];
            q++;
        }
    return q;
}

const sks_kernels sks_kernels_scalar = {
    SKS_ISA_SCALAR,
    dot_scalar,
    dot_bf16_scalar,
    axpy_scalar,
    sparse_dense_accum_scalar,
    gather_dot_scalar,
    gather_dot_bf16_scalar,
    softmax_scalar,
    topk_scalar,
    f32_to_bf16_scalar,
    bf16_to_f32_scalar,
    adam_scalar,
    adam_bf16_moments_scalar,
    sparse_dense_accum_bf16_scalar,
    gather_dot2_scalar,
    srp_accum_scalar,
    sparse_dense_accum_rounded_scalar,
    sks_reach_accum_scalar,
    sks_gather_axpy_scalar,
    sks_scatter_scaled_scalar,
    sks_clear_marks_scalar,
    sks_mixed_topk_scalar,
    sks_count_kept_scalar,
    sks_write_kept_scalar,
    sks_scan_mixed_scalar,
    sparse_dense_accum4_scalar,
};
