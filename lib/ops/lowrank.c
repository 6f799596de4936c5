/*
 * lowrank.c - loading a module's factors, and the bit-exact copies that
 * lora_quantize and lora_prune make of everything they leave alone.
 */
#include <string.h>
#include "../kernels/kernels.h"
#include "lowrank.h"

void lora_lr_free(const lora_allocator *al, lora_lr_factors *f)
{
    if (!f) return;
    lora_mem_free(al, f->a);
    lora_mem_free(al, f->b);
    f->a = f->b = NULL;
}

static lora_status decode(const lora_reader *r, const lora_allocator *al, const lora_module *m, uint32_t blob,
                          const char *which, int finite, float **out, uint64_t *numel, lora_error *err)
{
    lora_blob b;
    LORA_FORWARD_IF_ERROR(lora_reader_blob(r, blob, &b));
    if (b.numel > SIZE_MAX / sizeof(float))
        return lora_error_set(err, LORA_E_OUT_OF_MEMORY, LORA_NO_OFFSET, "module '%s' %s: %llu elements", m->name,
                              which, (unsigned long long)b.numel);
    float *v = lora_mem_alloc(al, (size_t)b.numel * sizeof *v);
    if (!v)
        return lora_error_set(err, LORA_E_OUT_OF_MEMORY, LORA_NO_OFFSET, "module '%s' %s: cannot allocate %llu floats",
                              m->name, which, (unsigned long long)b.numel);
    lora_status st = lora_reader_blob_decode_f32(r, blob, v, (size_t)b.numel, err);
    size_t bad = st == LORA_OK && finite ? lora_kernels_get()->count_nonfinite_f32(v, (size_t)b.numel) : 0;
    if (st == LORA_OK && bad)
        st = lora_error_set(err, LORA_E_NONFINITE, b.offset, "module '%s' %s: %zu NaN or infinite values", m->name,
                            which, bad);
    if (st != LORA_OK) {
        lora_mem_free(al, v);
        return st;
    }
    *out = v;
    *numel = b.numel;
    return LORA_OK;
}

lora_status lora_lr_load(const lora_reader *r, const lora_allocator *al, const lora_module *m, int finite,
                         lora_lr_factors *f, lora_error *err)
{
    memset(f, 0, sizeof *f);
    uint64_t na, nb;
    LORA_FORWARD_IF_ERROR(decode(r, al, m, m->blob_a, "A", finite, &f->a, &na, err));
    lora_status st = decode(r, al, m, m->blob_b, "B", finite, &f->b, &nb, err);
    if (st != LORA_OK) {
        lora_lr_free(al, f);
        return st;
    }
    /* The reader checked A [r, ...] and B [., r, 1...] against the rank. */
    f->r = m->rank;
    f->K = na / m->rank;
    f->M = nb / m->rank;
    return LORA_OK;
}

/* ---- copies ---- */

lora_status lora_lr_copy_meta(const lora_reader *r, lora_writer *w, lora_error *err)
{
    lora_file_info fi;
    lora_reader_file_info(r, &fi);
    for (uint32_t i = 0; i < fi.metadata_count; i++) {
        lora_meta m;
        LORA_FORWARD_IF_ERROR(lora_reader_meta(r, i, &m));
        lora_status st = LORA_E_INVALID_ARGUMENT;
        switch (m.type) {
        case LORA_META_STRING: st = lora_writer_set_string(w, m.key, m.string, m.string_length); break;
        case LORA_META_INT: st = lora_writer_set_int(w, m.key, m.integer); break;
        case LORA_META_FLOAT: st = lora_writer_set_float(w, m.key, m.number); break;
        case LORA_META_BOOL: st = lora_writer_set_bool(w, m.key, (int)m.integer); break;
        }
        if (st != LORA_OK) return lora_error_set(err, st, LORA_NO_OFFSET, "metadata '%s': cannot copy it", m.key);
    }
    return LORA_OK;
}

lora_status lora_lr_copy_blob(const lora_reader *r, const lora_allocator *al, lora_writer *w, uint32_t index,
                              uint32_t *out, lora_error *err)
{
    lora_blob b;
    LORA_FORWARD_IF_ERROR(lora_reader_blob(r, index, &b));
    if (b.raw_size > SIZE_MAX)
        return lora_error_set(err, LORA_E_OUT_OF_MEMORY, LORA_NO_OFFSET, "blob %u: %llu bytes", index,
                              (unsigned long long)b.raw_size);
    uint8_t *raw = lora_mem_alloc(al, (size_t)b.raw_size);
    if (!raw)
        return lora_error_set(err, LORA_E_OUT_OF_MEMORY, LORA_NO_OFFSET, "blob %u: cannot allocate %llu bytes", index,
                              (unsigned long long)b.raw_size);
    lora_status st = lora_reader_blob_read(r, index, raw, (size_t)b.raw_size, err);
    if (st == LORA_OK) {
        st = lora_writer_add_blob_block(w, b.dtype, b.block, b.ndim, b.shape, raw, (size_t)b.raw_size,
                                        b.compression, out);
        if (st != LORA_OK) lora_error_set(err, st, LORA_NO_OFFSET, "blob %u: cannot copy it to the output", index);
    }
    lora_mem_free(al, raw);
    return st;
}

lora_status lora_lr_copy_optional(const lora_reader *r, const lora_allocator *al, lora_writer *w, uint32_t index,
                                  uint32_t *out, lora_error *err)
{
    *out = LORA_NO_BLOB;
    return index == LORA_NO_BLOB ? LORA_OK : lora_lr_copy_blob(r, al, w, index, out, err);
}

lora_status lora_lr_copy_tensors(const lora_reader *r, const lora_allocator *al, lora_writer *w, lora_error *err)
{
    lora_file_info fi;
    lora_reader_file_info(r, &fi);
    for (uint32_t i = 0; i < fi.tensor_count; i++) {
        lora_tensor t;
        uint32_t blob;
        LORA_FORWARD_IF_ERROR(lora_reader_tensor(r, i, &t));
        LORA_FORWARD_IF_ERROR(lora_lr_copy_blob(r, al, w, t.blob, &blob, err));
        lora_status st = lora_writer_add_tensor(w, t.name, blob);
        if (st != LORA_OK) return lora_error_set(err, st, LORA_NO_OFFSET, "tensor '%s': cannot copy it", t.name);
    }
    return LORA_OK;
}

lora_status lora_lr_add_f32(const lora_reader *r, uint32_t like, lora_writer *w, lora_dtype dtype, uint32_t block,
                            uint32_t ndim, const uint64_t *shape, const float *v, uint64_t n, uint32_t *out,
                            lora_error *err)
{
    lora_blob b;
    LORA_FORWARD_IF_ERROR(lora_reader_blob(r, like, &b));
    lora_status st = lora_writer_add_blob_f32_block(w, dtype, block, ndim, shape, v, (size_t)n, b.compression, out);
    if (st != LORA_OK)
        return lora_error_set(err, st, LORA_NO_OFFSET, "cannot add a %s blob of %llu elements (block %u)",
                              lora_dtype_name(dtype), (unsigned long long)n, block);
    return LORA_OK;
}

lora_status lora_lr_add_module(lora_writer *w, const lora_module *m, uint32_t rank, uint32_t a, uint32_t b,
                               uint32_t mag, uint32_t bias, lora_error *err)
{
    lora_module_desc d;
    memset(&d, 0, sizeof d);
    d.name = m->name;
    d.kind = m->kind;
    d.flags = m->flags;
    d.rank = rank;
    d.alpha = m->alpha;
    /* A rule of the rank would give another scale at another rank; the
     * resolved one is what the delta was trained with. */
    d.scaling = rank == m->rank ? m->scaling : LORA_SCALING_EXPLICIT;
    d.scale = m->scale;
    d.base_ndim = m->base_ndim;
    memcpy(d.base_shape, m->base_shape, sizeof d.base_shape);
    d.blob_a = a;
    d.blob_b = b;
    d.blob_magnitude = mag;
    d.blob_bias = bias;
    lora_status st = lora_writer_add_module(w, &d, NULL);
    if (st != LORA_OK) return lora_error_set(err, st, LORA_NO_OFFSET, "module '%s': cannot add it", m->name);
    return LORA_OK;
}

lora_status lora_lr_write(lora_writer *w, const char *input, const char *output, uint64_t *size, lora_error *err)
{
    const char *inputs[1] = {input};
    lora_write_options wo = LORA_WRITE_OPTIONS_INIT;
    wo.inputs = inputs;
    wo.input_count = 1;
    LORA_FORWARD_IF_ERROR(lora_writer_size(w, size, err));
    return lora_writer_write_file(w, output, &wo, err);
}

int lora_lr_fits_blocks(lora_dtype dtype, uint32_t block, uint64_t n)
{
    uint8_t shift;
    if (lora_fmt_block_shift_for((uint32_t)dtype, block, &shift) != LORA_OK) return 0;
    uint32_t be = lora_fmt_blob_block_elems((uint32_t)dtype, shift);
    return be != 0 && n % be == 0;
}

char *lora_lr_names(const lora_allocator *al, const char *const *names, size_t n, const char **out)
{
    size_t total = 1;
    for (size_t i = 0; i < n; i++) total += strlen(names[i]) + 1;
    char *pool = lora_mem_alloc(al, total);
    if (!pool) return NULL;
    char *p = pool;
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(names[i]) + 1;
        memcpy(p, names[i], len);
        out[i] = p;
        p += len;
    }
    return pool;
}
