/*
 * builder.c - lora_writer_create/free and the add_* calls.
 *
 * Each call validates its arguments before it changes anything, and makes
 * every allocation it needs before it commits, so a failing call (bad
 * argument or out of memory) leaves the writer exactly as it was. Rules
 * that relate several records (a blob referenced by nobody, a B shape that
 * disagrees with the module) are left to the reader, which the writer runs
 * on its output: one implementation of the spec, one set of error details.
 */
#include <math.h>
#include <string.h>
#include "writer.h"
#include "../kernels/kernels.h"

lora_status lora_writer_create(const lora_allocator *allocator, lora_writer **out)
{
    if (!out) return LORA_E_INVALID_ARGUMENT;
    *out = NULL;
    lora_writer *w = lora_mem_calloc(allocator, 1, sizeof *w);
    if (!w) return LORA_E_OUT_OF_MEMORY;
    if (allocator) w->alloc = *allocator;
    w->io = lora_io_default();
    *out = w;
    return LORA_OK;
}

void lora_writer_free(lora_writer *w)
{
    if (!w) return;
    const lora_allocator a = w->alloc; /* w itself is freed with it last */
    for (uint32_t i = 0; i < w->meta_count; i++) {
        lora_wstr_free(&a, &w->meta[i].key);
        lora_wstr_free(&a, &w->meta[i].str);
    }
    for (uint32_t i = 0; i < w->module_count; i++) lora_wstr_free(&a, &w->modules[i].name);
    for (uint32_t i = 0; i < w->tensor_count; i++) lora_wstr_free(&a, &w->tensors[i].name);
    for (uint32_t i = 0; i < w->blob_count; i++) lora_mem_free(&a, w->blobs[i].stored);
    lora_mem_free(&a, w->meta);
    lora_mem_free(&a, w->modules);
    lora_mem_free(&a, w->tensors);
    lora_mem_free(&a, w->blobs);
    lora_nidx_free(&a, &w->meta_index);
    lora_nidx_free(&a, &w->module_index);
    lora_nidx_free(&a, &w->tensor_index);
    lora_mem_free(&a, w);
}

void lora_writer_set_io_for_testing(lora_writer *w, const lora_io *io)
{
    if (w) w->io = io ? io : lora_io_default();
}

/* ---- blobs ---- */

/* Shared argument checks of the add_blob calls; fills the record (without
 * sizes of the stored form) and the element count. */
static lora_status blob_desc(lora_dtype dtype, uint32_t block, uint32_t ndim, const uint64_t *shape,
                             lora_compression compression, lora_fmt_blob *rec, uint64_t *numel)
{
    if (!lora_fmt_dtype_valid((uint32_t)dtype)) return LORA_E_INVALID_ARGUMENT;
    if ((uint32_t)compression >= LORA_FMT_COMPRESSION_COUNT_) return LORA_E_INVALID_ARGUMENT;
    if (!shape || ndim < 1 || ndim > LORA_FMT_MAX_DIMS) return LORA_E_INVALID_ARGUMENT;
    memset(rec, 0, sizeof *rec);
    if (lora_fmt_block_shift_for((uint32_t)dtype, block, &rec->block_shift) != LORA_OK) return LORA_E_INVALID_ARGUMENT;
    /* A zero dim, an overflowing product or a partial quantization block
     * can never be stored, whatever the caller meant. */
    if (lora_fmt_shape_numel(ndim, shape, numel) != LORA_OK) return LORA_E_INVALID_ARGUMENT;
    if (lora_fmt_blob_raw_size((uint32_t)dtype, rec->block_shift, *numel, &rec->raw_size) != LORA_OK)
        return LORA_E_INVALID_ARGUMENT;
    if (rec->raw_size > SIZE_MAX) return LORA_E_INVALID_ARGUMENT;
    rec->dtype = (uint8_t)dtype;
    rec->compression = (uint8_t)compression;
    rec->ndim = (uint8_t)ndim;
    memcpy(rec->shape, shape, ndim * sizeof *shape);
    return LORA_OK;
}

lora_status lora_writer_add_blob_block(lora_writer *w, lora_dtype dtype, uint32_t block, uint32_t ndim,
                                       const uint64_t *shape, const void *data, size_t size,
                                       lora_compression compression, uint32_t *index)
{
    if (!w || !data) return LORA_E_INVALID_ARGUMENT;
    lora_fmt_blob rec;
    uint64_t numel;
    LORA_FORWARD_IF_ERROR(blob_desc(dtype, block, ndim, shape, compression, &rec, &numel));
    if ((uint64_t)size != rec.raw_size) return LORA_E_INVALID_ARGUMENT;
    return lora_wblob_append(w, data, NULL, &rec, index);
}

lora_status lora_writer_add_blob(lora_writer *w, lora_dtype dtype, uint32_t ndim, const uint64_t *shape,
                                 const void *data, size_t size, lora_compression compression, uint32_t *index)
{
    return lora_writer_add_blob_block(w, dtype, 0, ndim, shape, data, size, compression, index);
}

/* f32 -> the stored little-endian form of the record's dtype, into dst
 * (raw_size bytes). */
static void convert_f32(const lora_fmt_blob *rec, const float *src, uint64_t n, uint8_t *dst)
{
    const lora_kernels *k = lora_kernels_get();
    uint32_t be = lora_fmt_blob_block_elems(rec->dtype, rec->block_shift);
    switch ((lora_dtype)rec->dtype) {
    case LORA_DTYPE_F32:
        for (uint64_t i = 0; i < n; i++) {
            uint32_t u;
            memcpy(&u, &src[i], 4);
            lora_fmt_wr32(dst + 4 * i, u);
        }
        return;
    case LORA_DTYPE_F16:
    case LORA_DTYPE_BF16: {
        uint16_t *h = (uint16_t *)(void *)dst; /* allocator memory: malloc-aligned */
        if (rec->dtype == LORA_DTYPE_F16) k->f32_to_f16(src, h, (size_t)n);
        else k->f32_to_bf16(src, h, (size_t)n);
        /* The kernels produce host-order halves; the file is little-endian.
         * On a little-endian host this rewrites each value with itself. */
        for (uint64_t i = 0; i < n; i++) lora_fmt_wr16(dst + 2 * i, h[i]);
        return;
    }
    case LORA_DTYPE_Q8_0: k->f32_to_q8_0(src, dst, (size_t)(n / be)); return;
    case LORA_DTYPE_Q4_0: k->f32_to_q4_0(src, dst, (size_t)(n / be)); return;
    case LORA_DTYPE_NF4: k->f32_to_nf4(src, dst, (size_t)(n / be), be); return;
    }
}

lora_status lora_writer_add_blob_f32_block(lora_writer *w, lora_dtype dtype, uint32_t block, uint32_t ndim,
                                           const uint64_t *shape, const float *values, size_t count,
                                           lora_compression compression, uint32_t *index)
{
    if (!w || !values) return LORA_E_INVALID_ARGUMENT;
    lora_fmt_blob rec;
    uint64_t numel;
    LORA_FORWARD_IF_ERROR(blob_desc(dtype, block, ndim, shape, compression, &rec, &numel));
    if ((uint64_t)count != numel) return LORA_E_INVALID_ARGUMENT;
    uint8_t *raw = lora_mem_alloc(&w->alloc, (size_t)rec.raw_size);
    if (!raw) return LORA_E_OUT_OF_MEMORY;
    convert_f32(&rec, values, numel, raw);
    return lora_wblob_append(w, raw, raw, &rec, index);
}

lora_status lora_writer_add_blob_f32(lora_writer *w, lora_dtype dtype, uint32_t ndim, const uint64_t *shape,
                                     const float *values, size_t count, lora_compression compression,
                                     uint32_t *index)
{
    return lora_writer_add_blob_f32_block(w, dtype, 0, ndim, shape, values, count, compression, index);
}

/* ---- modules and tensors ---- */

static const lora_wstr *module_name_at(const lora_writer *w, uint32_t i) { return &w->modules[i].name; }
static const lora_wstr *tensor_name_at(const lora_writer *w, uint32_t i) { return &w->tensors[i].name; }

/* A reference names an existing blob that nothing else uses yet: the format
 * gives every blob exactly one owner. */
static int blob_ref_free(const lora_writer *w, uint32_t ref)
{
    return ref < w->blob_count && !w->blobs[ref].used;
}

static lora_status module_blobs_ok(const lora_writer *w, const lora_module_desc *d)
{
    uint32_t refs[4] = {d->blob_a, d->blob_b, d->blob_magnitude, d->blob_bias};
    for (int i = 0; i < 4; i++) {
        if (i >= 2 && refs[i] == LORA_NO_BLOB) continue;
        if (!blob_ref_free(w, refs[i])) return LORA_E_INVALID_ARGUMENT;
        for (int j = 0; j < i; j++)
            if (refs[j] == refs[i]) return LORA_E_INVALID_ARGUMENT;
    }
    return LORA_OK;
}

/* Everything about a module that is a property of the call alone. Shapes
 * against kind and rank are the reader's (BAD_SHAPE, with detail). */
static lora_status module_args_ok(const lora_writer *w, const lora_module_desc *d, size_t name_len)
{
    if (!lora_wname_ok(d->name, name_len)) return LORA_E_INVALID_ARGUMENT;
    if ((uint32_t)d->kind >= LORA_FMT_KIND_COUNT_) return LORA_E_INVALID_ARGUMENT;
    if ((uint32_t)d->scaling >= LORA_FMT_SCALING_COUNT_) return LORA_E_INVALID_ARGUMENT;
    if (d->flags & ~LORA_FMT_MODULE_FLAGS_KNOWN) return LORA_E_INVALID_ARGUMENT;
    if (d->rank == 0) return LORA_E_INVALID_ARGUMENT;
    if (!isfinite(d->alpha)) return LORA_E_INVALID_ARGUMENT;
    if (d->scaling == LORA_SCALING_EXPLICIT && !isfinite(d->scale)) return LORA_E_INVALID_ARGUMENT;
    if (d->base_ndim < 1 || d->base_ndim > LORA_FMT_MAX_DIMS) return LORA_E_INVALID_ARGUMENT;
    return module_blobs_ok(w, d);
}

/* The scale the spec requires, computed exactly as the reader checks it
 * (binary32 division; sqrtf is correctly rounded). */
static float module_scale(const lora_module_desc *d)
{
    switch (d->scaling) {
    case LORA_SCALING_ALPHA_OVER_RANK: return d->alpha / (float)d->rank;
    case LORA_SCALING_ALPHA_OVER_SQRT_RANK: return d->alpha / sqrtf((float)d->rank);
    case LORA_SCALING_EXPLICIT: break;
    }
    return d->scale;
}

static void module_record(const lora_module_desc *d, lora_fmt_module *m)
{
    memset(m, 0, sizeof *m);
    m->kind = (uint8_t)d->kind;
    m->scaling = (uint8_t)d->scaling;
    m->base_ndim = (uint8_t)d->base_ndim;
    m->flags = d->flags;
    m->rank = d->rank;
    m->alpha = d->alpha;
    m->scale = module_scale(d);
    memcpy(m->base_shape, d->base_shape, d->base_ndim * sizeof d->base_shape[0]);
    m->blob_a = d->blob_a;
    m->blob_b = d->blob_b;
    m->blob_magnitude = d->blob_magnitude;
    m->blob_bias = d->blob_bias;
}

lora_status lora_writer_add_module(lora_writer *w, const lora_module_desc *desc, uint32_t *index)
{
    if (!w || !desc || !desc->name) return LORA_E_INVALID_ARGUMENT;
    size_t len = strlen(desc->name);
    LORA_FORWARD_IF_ERROR(module_args_ok(w, desc, len));
    if (lora_nidx_find(w, &w->module_index, module_name_at, desc->name, len) != UINT32_MAX)
        return LORA_E_DUPLICATE_NAME;
    if (w->module_count == UINT32_MAX) return LORA_E_LIMIT_EXCEEDED;
    lora_status st;
    w->modules = lora_wgrow(&w->alloc, w->modules, &w->module_cap, w->module_count + 1, sizeof *w->modules, &st);
    LORA_FORWARD_IF_ERROR(st);
    LORA_FORWARD_IF_ERROR(lora_nidx_reserve(&w->alloc, &w->module_index));
    lora_wmodule *m = &w->modules[w->module_count];
    LORA_FORWARD_IF_ERROR(lora_wstr_copy(&w->alloc, desc->name, len, &m->name));
    module_record(desc, &m->rec);
    w->blobs[desc->blob_a].used = 1;
    w->blobs[desc->blob_b].used = 1;
    if (desc->blob_magnitude != LORA_NO_BLOB) w->blobs[desc->blob_magnitude].used = 1;
    if (desc->blob_bias != LORA_NO_BLOB) w->blobs[desc->blob_bias].used = 1;
    lora_nidx_insert(&w->module_index, m->name.s, len, w->module_count);
    if (index) *index = w->module_count;
    w->module_count++;
    return LORA_OK;
}

lora_status lora_writer_add_tensor(lora_writer *w, const char *name, uint32_t blob)
{
    if (!w || !name) return LORA_E_INVALID_ARGUMENT;
    size_t len = strlen(name);
    if (!lora_wname_ok(name, len) || !blob_ref_free(w, blob)) return LORA_E_INVALID_ARGUMENT;
    if (lora_nidx_find(w, &w->tensor_index, tensor_name_at, name, len) != UINT32_MAX)
        return LORA_E_DUPLICATE_NAME;
    if (w->tensor_count == UINT32_MAX) return LORA_E_LIMIT_EXCEEDED;
    lora_status st;
    w->tensors = lora_wgrow(&w->alloc, w->tensors, &w->tensor_cap, w->tensor_count + 1, sizeof *w->tensors, &st);
    LORA_FORWARD_IF_ERROR(st);
    LORA_FORWARD_IF_ERROR(lora_nidx_reserve(&w->alloc, &w->tensor_index));
    lora_wtensor *t = &w->tensors[w->tensor_count];
    LORA_FORWARD_IF_ERROR(lora_wstr_copy(&w->alloc, name, len, &t->name));
    t->blob = blob;
    w->blobs[blob].used = 1;
    lora_nidx_insert(&w->tensor_index, t->name.s, len, w->tensor_count);
    w->tensor_count++;
    return LORA_OK;
}
