/*
 * merge_prep.c - everything a target tensor's blocks share, built once
 * when the first of them is taken: the kernel's two low-rank operands with
 * every adapter's ranks side by side (merge_kernels.h), the DoRA factors,
 * and the source of a replacement.
 *
 * Layout per orientation (rows x cols is the tensor as stored), fp32:
 *   Linear, conv:           BS[i][k] = fl(w*s) * B[i][k]   A'[k][j] = A[k][j]
 *   fan_in_fan_out, embed:  BS[i][k] = A[k][i]             A'[k][j] = fl(w*s) * B[j][k]
 *   LoRA bias (1 row):      BS[0][k] = fl(w*s)             A'[k][j] = lora_bias[j]
 * and with float64 accumulation the exact w*s always goes into BS (a
 * float64 array), A' holding the unscaled fp32 factor.
 * In a GGUF base whose rows llama.cpp reordered, row g of the tensor is
 * row src[g] of the Hugging Face weight, so B, the magnitude and the bias
 * are read through src.
 */
#include <string.h>
#include "merge.h"

static lora_status nomem(lora_error *err)
{
    return lora_error_set(err, LORA_E_OUT_OF_MEMORY, LORA_NO_OFFSET, "out of memory");
}

/* Blob `index` decoded to f32; its element count must be `want`. */
static lora_status decode(const mctx *m, const lora_reader *r, uint32_t index, uint64_t want, float **out,
                          lora_error *err)
{
    lora_blob b;
    LORA_FORWARD_IF_ERROR(lora_reader_blob(r, index, &b));
    if (b.numel != want || want > SIZE_MAX / sizeof(float))
        return lora_error_set(err, LORA_E_BAD_SHAPE, LORA_NO_OFFSET, "blob %u has %llu elements, the merge needs %llu",
                              index, (unsigned long long)b.numel, (unsigned long long)want);
    *out = lora_mem_alloc(&m->alloc, (size_t)(want ? want : 1) * sizeof(float));
    if (!*out) return nomem(err);
    lora_status st = lora_reader_blob_decode_f32(r, index, *out, (size_t)want, err);
    if (st != LORA_OK) {
        lora_mem_free(&m->alloc, *out);
        *out = NULL;
    }
    return st;
}

/* src[g] for the n rows (or bias columns) of a reordered GGUF tensor; NULL
 * for the identity. */
static lora_status row_order(const mctx *m, const mp_tensor *t, const char *module, uint64_t n, uint64_t **src,
                             lora_error *err)
{
    *src = NULL;
    if (!lora_gguf_role_permutes(t->role)) return LORA_OK;
    *src = lora_mem_calloc(&m->alloc, (size_t)n, sizeof **src);
    if (!*src) return nomem(err);
    return lora_gguf_row_source(t->role, n, t->heads, module, *src, err);
}

/* BS[i][k]: fp32 with the scale rounded in (fl(w*s) * x), or float64 with
 * the exact w * s. */
static void put_bs(mprep *p, size_t at, double ws, float x)
{
    if (p->bs64) p->bs64[at] = ws * (double)x;
    else p->bs[at] = (float)ws * x;
}

static void place_bias(const mp_tensor *t, mprep *p, size_t koff, double ws, const float *bias, const uint64_t *src)
{
    put_bs(p, koff, ws, 1.0f);
    for (uint64_t j = 0; j < t->cols; j++) p->a[koff * t->cols + j] = bias[src ? src[j] : j];
}

static void place_pair(const mp_tensor *t, mprep *p, size_t koff, size_t r, double ws, const float *a,
                       const float *b, const uint64_t *src)
{
    size_t R = p->r;
    if (!t->transposed) {
        for (uint64_t i = 0; i < t->rows; i++) {
            const float *brow = b + (src ? src[i] : i) * r;
            for (size_t k = 0; k < r; k++) put_bs(p, i * R + koff + k, ws, brow[k]);
        }
        for (size_t k = 0; k < r; k++) memcpy(p->a + (koff + k) * t->cols, a + k * t->cols, t->cols * sizeof(float));
        return;
    }
    /* fp32: BS = A^T, A' = (fl(w*s) * B)^T; float64: BS = w*s * A^T, A' = B^T. */
    float fs = p->bs64 ? 1.0f : (float)ws;
    double ds = p->bs64 ? ws : 1.0;
    for (uint64_t i = 0; i < t->rows; i++)
        for (size_t k = 0; k < r; k++) put_bs(p, i * R + koff + k, ds, a[k * t->rows + i]);
    for (size_t k = 0; k < r; k++)
        for (uint64_t j = 0; j < t->cols; j++) p->a[(koff + k) * t->cols + j] = p->bs64 ? b[j * r + k] : fs * b[j * r + k];
}

/* One contribution into columns koff.. of BS and rows koff.. of A'. */
static lora_status place(const mctx *m, const mp_tensor *t, const mp_contrib *x, mprep *p, size_t koff,
                         lora_error *err)
{
    const madapter *ad = &m->ads[x->adapter];
    lora_module mod;
    LORA_FORWARD_IF_ERROR(lora_reader_module(ad->r, x->module, &mod));
    /* fp32: fl(weight * s), rounded as PEFT's float math would; float64: exact. */
    double ws = p->bs64 ? (double)ad->weight * (double)mod.scale : (double)(ad->weight * mod.scale);
    uint64_t *src = NULL;
    float *a = NULL, *b = NULL;
    lora_status st = row_order(m, t, mod.name, x->bias ? t->cols : t->rows, &src, err);
    if (st == LORA_OK && x->bias) {
        st = decode(m, ad->r, mod.blob_bias, t->cols, &b, err);
        if (st == LORA_OK) place_bias(t, p, koff, ws, b, src);
    } else if (st == LORA_OK) {
        uint64_t inner = t->transposed ? t->rows : t->cols, outer = t->transposed ? t->cols : t->rows;
        st = decode(m, ad->r, mod.blob_a, (uint64_t)mod.rank * inner, &a, err);
        if (st == LORA_OK) st = decode(m, ad->r, mod.blob_b, outer * mod.rank, &b, err);
        if (st == LORA_OK) place_pair(t, p, koff, mod.rank, ws, a, b, src);
    }
    lora_mem_free(&m->alloc, src);
    lora_mem_free(&m->alloc, a);
    lora_mem_free(&m->alloc, b);
    return st;
}

/* ---- DoRA ------------------------------------------------------------------------------ */

/* sum of V^2 per row (or per column), block by block on the plan's
 * partition, in block order: the same sums for any thread count. */
static lora_status dora_sumsq(const mctx *m, uint32_t ti, const mprep *p, double *sumsq, lora_error *err)
{
    const mp_tensor *t = &m->plan->t[ti];
    const mbase_tensor *bt = &m->base->tensors[ti];
    float *tmp = lora_mem_calloc(&m->alloc, (size_t)(t->rows_per_block * t->cols), sizeof(float));
    if (!tmp) return nomem(err);
    uint64_t row_bytes = mt_bytes(bt->type, t->cols);
    for (uint64_t b = 0; b < t->blocks; b++) {
        uint64_t first, n;
        mp_block_range(t, b, &first, &n);
        lora_mk_job job;
        memset(&job, 0, sizeof job);
        const uint8_t *w = bt->data + first * row_bytes;
        job.w = w;
        job.w_dtype = (lora_mk_dtype)bt->type;
        /* Quantized rows become f32; misaligned float rows are copied. */
        if (mt_is_quant(bt->type)) {
            mconv_to_f32(m->k, bt->type, w, tmp, n * t->cols);
            job.w = tmp;
            job.w_dtype = LORA_MK_F32;
        } else if ((uintptr_t)w % (bt->type == MT_F32 ? 4 : 2)) {
            memcpy(tmp, w, (size_t)(n * row_bytes));
            job.w = tmp;
        }
        if (p->bs64) job.bs64 = p->bs64 + first * p->r;
        else job.bs = p->bs + first * p->r;
        job.a = p->a;
        job.rows = n;
        job.cols = t->cols;
        job.r = p->r;
        job.w_stride = job.a_stride = t->cols;
        job.bs_stride = p->r;
        if (t->transposed) m->mk->col_sumsq(&job, sumsq);
        else m->mk->row_sumsq(&job, sumsq + first);
        /* Read again by the second pass, but not kept resident meanwhile. */
        mbase_release(w, n * row_bytes);
    }
    lora_mem_free(&m->alloc, tmp);
    return LORA_OK;
}

static lora_status dora_factors(const mctx *m, uint32_t ti, mprep *p, lora_error *err)
{
    const mp_tensor *t = &m->plan->t[ti];
    const mp_contrib *x = &m->plan->c[t->first];
    lora_module mod;
    LORA_FORWARD_IF_ERROR(lora_reader_module(m->ads[x->adapter].r, x->module, &mod));
    uint64_t n = t->transposed ? t->cols : t->rows;
    float *mag = NULL;
    uint64_t *src = NULL;
    double *sumsq = lora_mem_calloc(&m->alloc, (size_t)n, sizeof *sumsq);
    p->scale = lora_mem_calloc(&m->alloc, (size_t)n, sizeof *p->scale);
    lora_status st = sumsq && p->scale ? LORA_OK : nomem(err);
    if (st == LORA_OK) st = decode(m, m->ads[x->adapter].r, mod.blob_magnitude, n, &mag, err);
    if (st == LORA_OK && !t->transposed) st = row_order(m, t, mod.name, n, &src, err);
    if (st == LORA_OK) st = dora_sumsq(m, ti, p, sumsq, err);
    if (st == LORA_OK) {
        for (uint64_t i = 0; i < n; i++) p->scale[i] = lora_mk_dora_factor(mag[src ? src[i] : i], sumsq[i]);
        p->mode = t->transposed ? LORA_MK_SCALE_COL : LORA_MK_SCALE_ROW;
    }
    lora_mem_free(&m->alloc, sumsq);
    lora_mem_free(&m->alloc, mag);
    lora_mem_free(&m->alloc, src);
    return st;
}

/* ---- entry --------------------------------------------------------------------------------- */

static lora_status prep_merge(const mctx *m, uint32_t ti, mprep *p, lora_error *err)
{
    const mp_tensor *t = &m->plan->t[ti];
    size_t R = 0;
    for (uint32_t i = 0; i < t->count; i++) {
        const mp_contrib *x = &m->plan->c[t->first + i];
        lora_module mod;
        LORA_FORWARD_IF_ERROR(lora_reader_module(m->ads[x->adapter].r, x->module, &mod));
        R += x->bias ? 1 : mod.rank;
    }
    p->r = R;
    if (t->rows > SIZE_MAX / sizeof(double) / R || t->cols > SIZE_MAX / sizeof(float) / R) return nomem(err);
    if (m->f64) p->bs64 = lora_mem_calloc(&m->alloc, (size_t)t->rows * R, sizeof(double));
    else p->bs = lora_mem_calloc(&m->alloc, (size_t)t->rows * R, sizeof(float));
    p->a = lora_mem_calloc(&m->alloc, R * (size_t)t->cols, sizeof(float));
    if ((!p->bs && !p->bs64) || !p->a) return nomem(err);
    size_t koff = 0;
    for (uint32_t i = 0; i < t->count; i++) {
        const mp_contrib *x = &m->plan->c[t->first + i];
        LORA_FORWARD_IF_ERROR(place(m, t, x, p, koff, err));
        lora_module mod;
        LORA_FORWARD_IF_ERROR(lora_reader_module(m->ads[x->adapter].r, x->module, &mod));
        koff += x->bias ? 1 : mod.rank;
    }
    return t->dora ? dora_factors(m, ti, p, err) : LORA_OK;
}

static lora_status prep_replace(const mctx *m, uint32_t ti, mprep *p, lora_error *err)
{
    const mp_tensor *t = &m->plan->t[ti];
    const lora_reader *r = m->ads[t->rep_adapter].r;
    lora_tensor x;
    lora_blob b;
    LORA_FORWARD_IF_ERROR(lora_reader_tensor(r, t->rep_tensor, &x));
    LORA_FORWARD_IF_ERROR(lora_reader_blob(r, x.blob, &b));
    if (b.compression == LORA_COMPRESSION_NONE && b.dtype <= LORA_DTYPE_BF16) {
        /* Checksums were verified at open: the bytes can be used in place. */
        const void *view;
        size_t size;
        LORA_FORWARD_IF_ERROR(lora_reader_blob_view(r, x.blob, &view, &size));
        p->src = view;
        p->src_type = (mt_type)b.dtype;
        return LORA_OK;
    }
    p->src_type = MT_F32;
    return decode(m, r, x.blob, t->cols, &p->src_f32, err);
}

lora_status mprep_build(const mctx *m, uint32_t tensor, mprep *p, lora_error *err)
{
    memset(p, 0, sizeof *p);
    switch (m->plan->t[tensor].action) {
    case MP_MERGE: return prep_merge(m, tensor, p, err);
    case MP_REPLACE: return prep_replace(m, tensor, p, err);
    case MP_COPY:
    case MP_CONVERT: break;
    }
    return LORA_OK;
}

void mprep_free(const mctx *m, mprep *p)
{
    lora_mem_free(&m->alloc, p->bs);
    lora_mem_free(&m->alloc, p->bs64);
    lora_mem_free(&m->alloc, p->a);
    lora_mem_free(&m->alloc, p->scale);
    lora_mem_free(&m->alloc, p->src_f32);
    memset(p, 0, sizeof *p);
}
