/*
 * Bounded min-heap for top-k selection, shared by every SIMD variant: the
 * variants differ only in how fast they skip entries that cannot enter.
 *
 * The heap lives in the caller's output arrays (val, idx), so selection never
 * allocates. Its root is the *worst* kept entry: lowest value, and among equal
 * values the highest index. Entries are offered in increasing index order, so a
 * newcomer equal to the root loses the tie and only strictly greater values
 * enter.
 */
#ifndef SKS_SIMD_TOPK_H
#define SKS_SIMD_TOPK_H

#include "simd.h"

static inline int sks_heap_worse(float va, int32_t ia, float vb, int32_t ib)
{
    return va < vb || (va == vb && ia > ib);
}

static inline void sks_heap_sift_down(float *val, int32_t *idx, sks_idx size, sks_idx pos)
{
    float v = val[pos];
    int32_t i = idx[pos];
    for (;;) {
        sks_idx child = 2 * pos + 1;
        if (child >= size)
            break;
        if (child + 1 < size &&
            sks_heap_worse(val[child + 1], idx[child + 1], val[child], idx[child]))
            child++;
        if (!sks_heap_worse(val[child], idx[child], v, i))
            break;
        val[pos] = val[child];
        idx[pos] = idx[child];
        pos = child;
    }
    val[pos] = v;
    idx[pos] = i;
}

/* Heapify the first k entries of s into (val, idx). */
static inline void sks_heap_init(const float *s, sks_idx k, int32_t *idx, float *val)
{
    sks_idx p;
    for (p = 0; p < k; p++) {
        val[p] = s[p];
        idx[p] = (int32_t)p;
    }
    for (p = k / 2 - 1; p >= 0; p--)
        sks_heap_sift_down(val, idx, k, p);
}

/* Offer entry i (larger than every index offered before). */
static inline void sks_heap_offer(float v, int32_t i, int32_t *idx, float *val, sks_idx k)
{
    if (v > val[0]) {
        val[0] = v;
        idx[0] = i;
        sks_heap_sift_down(val, idx, k, 0);
    }
}

/* Heap sort in place: best first. */
static inline void sks_heap_finish(int32_t *idx, float *val, sks_idx k)
{
    sks_idx end;
    for (end = k - 1; end > 0; end--) {
        float tv = val[0];
        int32_t ti = idx[0];
        val[0] = val[end];
        idx[0] = idx[end];
        val[end] = tv;
        idx[end] = ti;
        sks_heap_sift_down(val, idx, end, 0);
    }
}

/* Value v of candidate id into a list of the best so far, sorted best first,
   at position `at` or above (the list holds `at` entries, or `at + 1` whose
   last is dropped): a later candidate never passes an equal earlier one, and
   NaN stays where it is put. The insertion mixed_topk and scan_mixed share. */
static inline void sks_topk_insert(float v, int32_t id, sks_idx at, int32_t *top, float *best)
{
    sks_idx r = at;
    while (r > 0 && best[r - 1] < v) {
        best[r] = best[r - 1];
        top[r] = top[r - 1];
        r--;
    }
    best[r] = v;
    top[r] = id;
}

/* Offer value v of candidate id to the k best kept as mixed_topk and
   scan_mixed keep them, *n of them so far: while fewer than k, every one
   enters (a stable insertion); then each one above the k-th best, *worst,
   which follows the k-th best once there are k (NaN never enters then). */
static inline void sks_topk_offer(float v, int32_t id, sks_idx k, int32_t *top, float *best,
                                  sks_idx *n, float *worst)
{
    if (*n < k) {
        sks_topk_insert(v, id, *n, top, best);
        if (++*n == k)
            *worst = best[k - 1];
    } else if (v > *worst) {
        sks_topk_insert(v, id, k - 1, top, best);
        *worst = best[k - 1];
    }
}

#endif
