/* Helpers shared by the importers and exporters of liblora-ops. */
#include <stdio.h>
#include <string.h>
#include "../kernels/kernels.h"
#include "convert.h"

void lora_ops_warn(const lora_convert_options *o, const char *fmt, ...)
{
    if (!o || !o->warn) return;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    (void)vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    o->warn(o->warn_opaque, msg);
}

static uint32_t elem_size(lora_dtype d) { return d == LORA_DTYPE_F32 ? 4u : 2u; }

/* Widen one source element to f32 (exact for F16/BF16). */
static void widen(lora_dtype d, const uint8_t *src, float *dst, size_t n)
{
    const lora_kernels *k = lora_kernels_get();
    if (d == LORA_DTYPE_F32) {
        memcpy(dst, src, n * sizeof *dst);
        return;
    }
    /* The kernels take aligned uint16 arrays; the source may be unaligned
     * (safetensors headers need not be 8-byte aligned), so go through a
     * bounded bounce buffer. */
    uint16_t tmp[1024];
    for (size_t i = 0; i < n;) {
        size_t m = n - i < 1024 ? n - i : 1024;
        memcpy(tmp, src + 2 * i, 2 * m);
        (d == LORA_DTYPE_F16 ? k->f16_to_f32 : k->bf16_to_f32)(tmp, dst + i, m);
        i += m;
    }
}

/* Copy (or transpose) the element bytes of a 2-D tensor without looking at values. */
static void transpose_bytes(const uint8_t *src, uint8_t *dst, uint64_t rows, uint64_t cols, uint32_t es)
{
    for (uint64_t r = 0; r < rows; r++)
        for (uint64_t c = 0; c < cols; c++) memcpy(dst + (c * rows + r) * es, src + (r * cols + c) * es, es);
}

lora_status lora_ops_add_blob(lora_writer *w, const lora_convert_options *o, lora_dtype src_dtype, uint32_t ndim,
                              const uint64_t *shape, const void *data, size_t size, int transpose, uint32_t *index,
                              lora_error *err)
{
    if (src_dtype != LORA_DTYPE_F32 && src_dtype != LORA_DTYPE_F16 && src_dtype != LORA_DTYPE_BF16)
        return lora_error_set(err, LORA_E_UNSUPPORTED_DTYPE, LORA_NO_OFFSET, "only F32, F16 and BF16 tensors convert");
    if (transpose && ndim != 2)
        return lora_error_set(err, LORA_E_INVALID_ARGUMENT, LORA_NO_OFFSET, "transpose needs a 2-D tensor");
    uint64_t numel = 1;
    for (uint32_t i = 0; i < ndim; i++)
        if (lora_fmt_mul_overflow(numel, shape[i], &numel))
            return lora_error_set(err, LORA_E_BAD_SHAPE, LORA_NO_OFFSET, "shape overflows");
    uint32_t es = elem_size(src_dtype);
    if (numel > SIZE_MAX / es || numel * es != size)
        return lora_error_set(err, LORA_E_BAD_SIZE, LORA_NO_OFFSET, "%zu bytes for %llu elements of %s", size,
                              (unsigned long long)numel, lora_dtype_name(src_dtype));
    uint64_t out_shape[LORA_MAX_DIMS] = {0};
    for (uint32_t i = 0; i < ndim && i < LORA_MAX_DIMS; i++) out_shape[i] = shape[i];
    if (transpose) {
        out_shape[0] = shape[1];
        out_shape[1] = shape[0];
    }
    lora_dtype target = o && o->dtype >= 0 ? (lora_dtype)o->dtype : src_dtype;
    const lora_allocator *a = o ? &o->allocator : NULL;
    lora_status st;
    if (target == src_dtype) {
        const void *bytes = data;
        uint8_t *t = NULL;
        if (transpose) {
            t = lora_mem_alloc(a, size);
            if (!t) return lora_error_set(err, LORA_E_OUT_OF_MEMORY, LORA_NO_OFFSET, "out of memory");
            transpose_bytes(data, t, shape[0], shape[1], es);
            bytes = t;
        }
        st = lora_writer_add_blob(w, src_dtype, ndim, out_shape, bytes, size, LORA_COMPRESSION_NONE, index);
        lora_mem_free(a, t);
    } else {
        float *f = lora_mem_calloc(a, (size_t)numel, sizeof *f);
        float *t = transpose ? lora_mem_calloc(a, (size_t)numel, sizeof *t) : NULL;
        if (!f || (transpose && !t)) {
            lora_mem_free(a, f);
            lora_mem_free(a, t);
            return lora_error_set(err, LORA_E_OUT_OF_MEMORY, LORA_NO_OFFSET, "out of memory");
        }
        widen(src_dtype, data, f, (size_t)numel);
        if (transpose) transpose_bytes((const uint8_t *)f, (uint8_t *)t, shape[0], shape[1], 4);
        st = lora_writer_add_blob_f32(w, target, ndim, out_shape, transpose ? t : f, (size_t)numel,
                                      LORA_COMPRESSION_NONE, index);
        lora_mem_free(a, f);
        lora_mem_free(a, t);
    }
    if (st != LORA_OK) return lora_error_set(err, st, LORA_NO_OFFSET, "cannot add a blob: %s", lora_status_message(st));
    return LORA_OK;
}

lora_status lora_ops_blob_f32(const lora_reader *r, const lora_allocator *alloc, uint32_t index, int transpose,
                              float **out, uint64_t *numel, lora_error *err)
{
    lora_blob b;
    lora_status st = lora_reader_blob(r, index, &b);
    if (st != LORA_OK) return lora_error_set(err, st, LORA_NO_OFFSET, "no blob %u", index);
    if (transpose && b.ndim != 2)
        return lora_error_set(err, LORA_E_INVALID_ARGUMENT, LORA_NO_OFFSET, "blob %u: transpose needs 2-D", index);
    if (b.numel > SIZE_MAX / sizeof(float))
        return lora_error_set(err, LORA_E_LIMIT_EXCEEDED, LORA_NO_OFFSET, "blob %u too large", index);
    float *f = lora_mem_alloc(alloc, (size_t)b.numel * sizeof *f);
    if (!f) return lora_error_set(err, LORA_E_OUT_OF_MEMORY, LORA_NO_OFFSET, "out of memory");
    st = lora_reader_blob_decode_f32(r, index, f, (size_t)b.numel, err);
    if (st == LORA_OK && transpose) {
        float *t = lora_mem_alloc(alloc, (size_t)b.numel * sizeof *t);
        if (!t) {
            st = lora_error_set(err, LORA_E_OUT_OF_MEMORY, LORA_NO_OFFSET, "out of memory");
        } else {
            transpose_bytes((const uint8_t *)f, (uint8_t *)t, b.shape[0], b.shape[1], 4);
            lora_mem_free(alloc, f);
            f = t;
        }
    }
    if (st != LORA_OK) {
        lora_mem_free(alloc, f);
        return st;
    }
    *out = f;
    *numel = b.numel;
    return LORA_OK;
}
