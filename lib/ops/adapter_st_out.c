/* Writing blobs of a .lora reader as a safetensors file, crash-safely. */
#include <stdlib.h>
#include <string.h>
#include "../kernels/kernels.h"
#include "adapter_dir.h"

static lora_st_dtype st_from_lora(lora_dtype d)
{
    return d == LORA_DTYPE_F16 ? LORA_ST_F16 : d == LORA_DTYPE_BF16 ? LORA_ST_BF16 : LORA_ST_F32;
}

static int is_float(lora_dtype d) { return d == LORA_DTYPE_F32 || d == LORA_DTYPE_F16 || d == LORA_DTYPE_BF16; }

lora_status lora_adir_fill_dtypes(const lora_reader *r, const lora_convert_options *o, lora_adir_tensor *t,
                                  uint32_t count, lora_error *err)
{
    if (o && o->dtype >= 0 && !is_float((lora_dtype)o->dtype))
        return lora_error_set(err, LORA_E_INVALID_ARGUMENT, LORA_NO_OFFSET, "safetensors output holds F32, F16 or "
                              "BF16, not %s", lora_dtype_name((lora_dtype)o->dtype));
    for (uint32_t i = 0; i < count; i++) {
        lora_blob b;
        lora_status st = lora_reader_blob(r, t[i].blob, &b);
        if (st != LORA_OK)
            return lora_error_set(err, st, LORA_NO_OFFSET, "tensor '%s': no blob %u", t[i].name, t[i].blob);
        if (o && o->dtype >= 0) {
            t[i].dtype = st_from_lora((lora_dtype)o->dtype);
        } else {
            if (!is_float(b.dtype))
                lora_ops_warn(o, "tensor '%s': %s blob dequantized to F32 (safetensors adapters hold floats)",
                              t[i].name, lora_dtype_name(b.dtype));
            t[i].dtype = st_from_lora(b.dtype);
        }
    }
    return LORA_OK;
}

static int by_reference_order(const void *pa, const void *pb)
{
    const lora_adir_tensor *a = pa, *b = pb;
    if (a->dtype != b->dtype) return a->dtype > b->dtype ? -1 : 1;
    return strcmp(a->name, b->name);
}

void lora_adir_sort_like_reference(lora_adir_tensor *t, uint32_t count)
{
    if (count > 1) qsort(t, count, sizeof *t, by_reference_order);
}

void lora_adir_tensors_free(const lora_allocator *a, lora_adir_tensor *t, uint32_t count)
{
    if (!t) return;
    for (uint32_t i = 0; i < count; i++) lora_mem_free(a, t[i].name);
    lora_mem_free(a, t);
}

static void transpose_elems(const uint8_t *src, uint8_t *dst, uint64_t rows, uint64_t cols, size_t es)
{
    for (uint64_t i = 0; i < rows; i++)
        for (uint64_t j = 0; j < cols; j++) memcpy(dst + (j * rows + i) * es, src + (i * cols + j) * es, es);
}

/* Bytes of one output tensor: a view when nothing changes, else a buffer
 * in *owned. */
typedef struct {
    const void *data;
    void *owned;
    size_t size;
} tensor_bytes;

static lora_status converted(const lora_reader *r, const lora_allocator *a, const lora_adir_tensor *t,
                             tensor_bytes *out, lora_error *err)
{
    float *f = NULL;
    uint64_t n = 0;
    LORA_FORWARD_IF_ERROR(lora_ops_blob_f32(r, a, t->blob, t->transpose, &f, &n, err));
    if (t->dtype == LORA_ST_F32) {
        out->owned = f;
        out->data = f;
        out->size = (size_t)n * sizeof *f;
        return LORA_OK;
    }
    uint16_t *h = lora_mem_calloc(a, (size_t)n, sizeof *h);
    if (!h) {
        lora_mem_free(a, f);
        return lora_error_set(err, LORA_E_OUT_OF_MEMORY, LORA_NO_OFFSET, "out of memory");
    }
    const lora_kernels *k = lora_kernels_get();
    (t->dtype == LORA_ST_F16 ? k->f32_to_f16 : k->f32_to_bf16)(f, h, (size_t)n);
    lora_mem_free(a, f);
    out->owned = h;
    out->data = h;
    out->size = (size_t)n * sizeof *h;
    return LORA_OK;
}

static lora_status tensor_data(const lora_reader *r, const lora_allocator *a, const lora_adir_tensor *t,
                               tensor_bytes *out, lora_error *err)
{
    lora_blob b;
    out->data = out->owned = NULL;
    LORA_FORWARD_IF_ERROR(lora_reader_blob(r, t->blob, &b));
    if (t->transpose && b.ndim != 2)
        return lora_error_set(err, LORA_E_INVALID_ARGUMENT, LORA_NO_OFFSET, "tensor '%s': transpose needs 2-D",
                              t->name);
    if (!is_float(b.dtype) || st_from_lora(b.dtype) != t->dtype) return converted(r, a, t, out, err);
    /* Same dtype: the bytes go out untouched (only reordered if transposed). */
    LORA_FORWARD_IF_ERROR(lora_reader_verify_blob(r, t->blob, err));
    if (b.raw_size > SIZE_MAX)
        return lora_error_set(err, LORA_E_LIMIT_EXCEEDED, LORA_NO_OFFSET, "tensor '%s' too large", t->name);
    out->size = (size_t)b.raw_size;
    if (b.compression == LORA_COMPRESSION_NONE && !t->transpose) {
        size_t vs = 0;
        return lora_reader_blob_view(r, t->blob, &out->data, &vs);
    }
    uint8_t *raw = lora_mem_alloc(a, out->size ? out->size : 1);
    uint8_t *tr = t->transpose ? lora_mem_alloc(a, out->size ? out->size : 1) : NULL;
    lora_status st = (!raw || (t->transpose && !tr))
                         ? lora_error_set(err, LORA_E_OUT_OF_MEMORY, LORA_NO_OFFSET, "out of memory")
                         : lora_reader_blob_read(r, t->blob, raw, out->size, err);
    if (st == LORA_OK && tr) {
        transpose_elems(raw, tr, b.shape[0], b.shape[1], b.dtype == LORA_DTYPE_F32 ? 4 : 2);
        lora_mem_free(a, raw);
        raw = tr;
        tr = NULL;
    }
    lora_mem_free(a, tr);
    if (st != LORA_OK) {
        lora_mem_free(a, raw);
        return st;
    }
    out->owned = raw;
    out->data = raw;
    return LORA_OK;
}

static lora_status fill_entries(const lora_reader *r, const lora_adir_tensor *t, uint32_t count, lora_st_entry *e,
                                lora_error *err)
{
    for (uint32_t i = 0; i < count; i++) {
        lora_blob b;
        LORA_FORWARD_IF_ERROR(lora_reader_blob(r, t[i].blob, &b));
        uint64_t numel = 1;
        int over = t[i].ndim > LORA_ST_MAX_DIMS;
        for (uint32_t d = 0; !over && d < t[i].ndim; d++) over = lora_fmt_mul_overflow(numel, t[i].shape[d], &numel);
        if (over || numel != b.numel)
            return lora_error_set(err, LORA_E_BAD_SHAPE, LORA_NO_OFFSET, "tensor '%s': shape does not fit blob %u",
                                  t[i].name, t[i].blob);
        e[i].name = t[i].name;
        e[i].dtype = t[i].dtype;
        e[i].ndim = t[i].ndim;
        memcpy(e[i].shape, t[i].shape, sizeof e[i].shape);
        e[i].size = numel * lora_st_dtype_size(t[i].dtype);
    }
    return LORA_OK;
}

static lora_status stream(const lora_reader *r, const lora_allocator *a, const lora_adir_tensor *t, uint32_t count,
                          lora_st_writer *sw, lora_error *err)
{
    for (uint32_t i = 0; i < count; i++) {
        tensor_bytes tb;
        LORA_FORWARD_IF_ERROR(tensor_data(r, a, &t[i], &tb, err));
        lora_status st = lora_st_writer_put(sw, tb.data, tb.size, err);
        lora_mem_free(a, tb.owned);
        if (st != LORA_OK) return st;
    }
    return lora_st_writer_finish(sw, err);
}

/* The temp file must parse and hold exactly the tensors announced. */
static lora_status read_back(const lora_allocator *a, const char *tmp, const lora_st_entry *e, uint32_t count,
                             lora_error *err)
{
    lora_st_options so = {{0, 0, 0, 0, 0}, *a};
    lora_st_file *f = NULL;
    LORA_FORWARD_IF_ERROR(lora_st_open(tmp, &so, &f, err));
    lora_status st = f->tensor_count == count ? LORA_OK
                                              : lora_error_set(err, LORA_E_IO, LORA_NO_OFFSET,
                                                               "safetensors read back with %u tensors, not %u",
                                                               f->tensor_count, count);
    for (uint32_t i = 0; st == LORA_OK && i < count; i++) {
        uint32_t k = lora_st_find(f, e[i].name, strlen(e[i].name));
        if (k == UINT32_MAX || f->tensors[k].dtype != e[i].dtype || f->tensors[k].size != e[i].size)
            st = lora_error_set(err, LORA_E_IO, LORA_NO_OFFSET, "safetensors read back: tensor '%s' differs",
                                e[i].name);
    }
    lora_st_free(f);
    return st;
}

lora_status lora_adir_stage_safetensors(const lora_reader *r, const lora_convert_options *o, const char *path,
                                        const lora_write_options *wopts, const lora_io *io,
                                        const lora_adir_tensor *t, uint32_t count,
                                        const lora_st_pair *meta, uint32_t meta_count, lora_afile **out,
                                        lora_error *err)
{
    const lora_allocator *a = &o->allocator;
    lora_st_entry *e = lora_mem_calloc(a, count ? count : 1, sizeof *e);
    if (!e) return lora_error_set(err, LORA_E_OUT_OF_MEMORY, LORA_NO_OFFSET, "out of memory");
    lora_afile *f = NULL;
    lora_st_writer *sw = NULL;
    lora_status st = fill_entries(r, t, count, e, err);
    if (st == LORA_OK) st = lora_afile_open(a, io, path, wopts, &f, err);
    if (st == LORA_OK) st = lora_st_writer_begin(a, e, count, meta, meta_count, lora_st_afile_sink_write, f, &sw, err);
    if (st == LORA_OK) st = stream(r, a, t, count, sw, err);
    lora_st_writer_free(sw);
    if (st == LORA_OK) st = lora_afile_flush(f, err);
    if (st == LORA_OK) st = read_back(a, lora_afile_temp_path(f), e, count, err);
    lora_mem_free(a, e);
    if (st != LORA_OK) {
        lora_afile_abort(f);
        return st;
    }
    *out = f;
    return LORA_OK;
}
