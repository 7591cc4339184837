# The SIMD primitives, for other kernels to cimport:
#
#     from sksketch._kernels._simd cimport sks_kernels, get_kernels
#     cdef const sks_kernels *K = get_kernels()
#     K.gather_dot(...)          # inside nogil code
#
# The table is chosen once, when sksketch._kernels._simd is imported.
from libc.stdint cimport int32_t, uint16_t, uint32_t, uint64_t

cdef extern from "simd.h" nogil:
    ctypedef ptrdiff_t sks_idx
    ctypedef uint16_t sks_bf16

    ctypedef struct sks_kernels:
        int isa
        float (*dot)(const float *x, const float *y, sks_idx n) noexcept nogil
        float (*dot_bf16)(const sks_bf16 *x, const sks_bf16 *y, sks_idx n) noexcept nogil
        void (*axpy)(float alpha, const float *x, float *y, sks_idx n) noexcept nogil
        void (*sparse_dense_accum)(
            const int32_t *indices, const float *values, sks_idx nnz,
            const float *weights, sks_idx ld, sks_idx m, float *out) noexcept nogil
        void (*gather_dot)(
            const float *x, const float *weights, sks_idx ld,
            const int32_t *rows, sks_idx n_rows, sks_idx m, float *out) noexcept nogil
        void (*gather_dot_bf16)(
            const sks_bf16 *x, const sks_bf16 *weights, sks_idx ld,
            const int32_t *rows, sks_idx n_rows, sks_idx m, float *out) noexcept nogil
        float (*softmax)(const float *z, sks_idx n, float *out) noexcept nogil
        sks_idx (*topk)(
            const float *s, sks_idx n, sks_idx k, int32_t *idx, float *val) noexcept nogil
        void (*f32_to_bf16)(const float *x, sks_bf16 *out, sks_idx n) noexcept nogil
        void (*bf16_to_f32)(const sks_bf16 *x, float *out, sks_idx n) noexcept nogil
        void (*adam)(float *w, float *m, float *v, float *g, sks_idx n, float lr, float b1,
                     float b2, float eps, float shrink) noexcept nogil
        void (*adam_bf16_moments)(float *w, sks_bf16 *m, sks_bf16 *v, float *g, sks_idx n,
                                  float lr, float b1, float b2, float eps, float shrink,
                                  uint32_t seed) noexcept nogil
        void (*sparse_dense_accum_bf16)(
            const int32_t *indices, const float *values, sks_idx nnz,
            const sks_bf16 *weights, sks_idx ld, sks_idx m, float *out) noexcept nogil
        void (*gather_dot2)(
            const float *x0, const float *x1, const float *weights, sks_idx ld,
            const int32_t *rows, sks_idx n_rows, sks_idx m, float *out0,
            float *out1) noexcept nogil
        void (*srp_accum)(
            const int32_t *indices, const float *values, sks_idx nnz, uint64_t base,
            int n_words, float *acc) noexcept nogil
        void (*sparse_dense_accum_rounded)(
            const int32_t *indices, const float *values, float scale, sks_idx nnz,
            const float *weights, sks_idx ld, sks_idx m, float *out) noexcept nogil
        sks_idx (*reach_accum)(
            const int32_t *labels, const float *weights, sks_idx n, float x, float *acc,
            int32_t *mark, int32_t *reached, sks_idx n_reached) noexcept nogil
        void (*gather_axpy)(
            float x, const float *table, const int32_t *idx, sks_idx n, float *out) noexcept nogil
        void (*scatter_scaled)(
            const float *vals, double scale, const int32_t *idx, sks_idx n,
            float *table) noexcept nogil
        void (*clear_marks)(int32_t *mark, const int32_t *idx, sks_idx n) noexcept nogil
        void (*mixed_topk)(
            const float *net, const float *head, const int32_t *ids, sks_idx n, float w,
            sks_idx k, int32_t *top, float *best) noexcept nogil
        sks_idx (*count_kept)(
            const float *reach, const float *net, sks_idx n, float bar) noexcept nogil
        sks_idx (*write_kept)(
            const float *reach, const float *net, sks_idx n, float bar, int32_t offset,
            int32_t *cols, float *values) noexcept nogil
        sks_idx (*scan_mixed)(
            const float *head, const float *net, sks_idx n, sks_idx k, int32_t *cand,
            int32_t *base_id, float *base_val, sks_idx *n_base) noexcept nogil
        void (*sparse_dense_accum4)(
            const int32_t *indices, const float *const *values, sks_idx nnz,
            const float *weights, sks_idx ld, sks_idx m, float *const *out) noexcept nogil

    float SKS_SCREEN_ABS

    ctypedef struct sks_screen_kernels:
        void (*screen)(const sks_bf16 *h, sks_idx ldh, sks_idx n_rows, const sks_bf16 *packed,
                       sks_idx n_tiles, sks_idx k_steps, float *out, sks_idx ldo) noexcept nogil
        sks_idx (*select)(const float *s, const float *wn, const float *bq,
                          const float *maxima, sks_idx n,
                          float cw, float b_row, float e2, float p2, sks_idx k,
                          sks_idx max_cand, int32_t *cand, float *hi,
                          float *low) noexcept nogil
        void (*rescore)(const float *x, const float *weights, sks_idx ld, sks_idx m,
                        sks_idx n_labels, const int32_t *cand, sks_idx n, const float *b,
                        float *out) noexcept nogil
        void (*head_exact)(const int32_t *features, const float *values, sks_idx nnz,
                           const float *weights, sks_idx ld, const int32_t *cand, sks_idx n,
                           float *out) noexcept nogil

    void sks_pack_bf16_tiles(const float *W, sks_idx L, sks_idx H, sks_idx ldw,
                             sks_idx k_steps, sks_bf16 *packed) noexcept
    sks_idx sks_screen_select_scalar(const float *s, const float *wn, const float *bq,
                                     sks_idx n, float cw, float b_row, float e2, float p2,
                                     sks_idx k, sks_idx max_cand, int32_t *cand, float *hi,
                                     float *low) noexcept

    sks_bf16 sks_f32_to_bf16_1(float f) noexcept
    float sks_bf16_to_f32_1(sks_bf16 h) noexcept


cdef const sks_kernels *get_kernels() noexcept nogil
# The bfloat16 screening kernels (AMX), or NULL where they are not in use.
cdef const sks_screen_kernels *get_screen_kernels() noexcept nogil
