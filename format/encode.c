/*
 * encode.c - fixed records to little-endian bytes, the mirror of decode.c.
 *
 * Encoders write every byte of the record (reserved bytes and unused dims as
 * zero), so the caller never has to pre-clear the destination, and a record
 * is a pure function of its struct: that is what makes the writer's output
 * byte-for-byte reproducible. They validate nothing; the writer decodes its
 * whole output with the reader before it reports success.
 */
#include <string.h>
#include "lora_format.h"

/* Shared preamble: a NULL or short destination is a caller bug, reported
 * rather than written past. */
static lora_status check_dst(const void *rec, const uint8_t *p, size_t cap, size_t need)
{
    if (!rec || !p) return LORA_E_INVALID_ARGUMENT;
    if (cap < need) return LORA_E_BUFFER_TOO_SMALL;
    return LORA_OK;
}

static uint32_t f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u); /* keeps NaN payloads and the sign of zero */
    return u;
}

/* Dims at index >= ndim are written as zero whatever the struct holds, so a
 * stale array never leaks into the file. An ndim above the maximum (only
 * possible when building a deliberately invalid record) writes all dims. */
static void put_dims(uint8_t *p, uint32_t ndim, const uint64_t *dims)
{
    for (uint32_t i = 0; i < LORA_FMT_MAX_DIMS; i++)
        lora_fmt_wr64(p + 8u * i, i < ndim ? dims[i] : 0);
}

lora_status lora_fmt_encode_header(const lora_fmt_header *h, uint8_t *p, size_t cap)
{
    lora_status st = check_dst(h, p, cap, LORA_FMT_HEADER_SIZE);
    if (st != LORA_OK) return st;
    memset(p, 0, LORA_FMT_HEADER_SIZE); /* reserved bytes 104..119 */
    memcpy(p + LORA_FMT_OFF_MAGIC, LORA_FMT_MAGIC, LORA_FMT_MAGIC_SIZE);
    lora_fmt_wr16(p + LORA_FMT_OFF_VERSION_MAJOR, h->version_major);
    lora_fmt_wr16(p + LORA_FMT_OFF_VERSION_MINOR, h->version_minor);
    lora_fmt_wr32(p + LORA_FMT_OFF_HEADER_SIZE, h->header_size);
    lora_fmt_wr32(p + LORA_FMT_OFF_REQUIRED_FLAGS, h->required_flags);
    lora_fmt_wr32(p + LORA_FMT_OFF_OPTIONAL_FLAGS, h->optional_flags);
    lora_fmt_wr64(p + LORA_FMT_OFF_FILE_SIZE, h->file_size);
    lora_fmt_wr64(p + LORA_FMT_OFF_DATA_OFFSET, h->data_offset);
    lora_fmt_wr64(p + LORA_FMT_OFF_META_OFFSET, h->meta_offset);
    lora_fmt_wr32(p + LORA_FMT_OFF_META_COUNT, h->meta_count);
    lora_fmt_wr32(p + LORA_FMT_OFF_MODULE_COUNT, h->module_count);
    lora_fmt_wr64(p + LORA_FMT_OFF_MODULES_OFFSET, h->modules_offset);
    lora_fmt_wr64(p + LORA_FMT_OFF_TENSORS_OFFSET, h->tensors_offset);
    lora_fmt_wr32(p + LORA_FMT_OFF_TENSOR_COUNT, h->tensor_count);
    lora_fmt_wr32(p + LORA_FMT_OFF_BLOB_COUNT, h->blob_count);
    lora_fmt_wr64(p + LORA_FMT_OFF_BLOBS_OFFSET, h->blobs_offset);
    lora_fmt_wr64(p + LORA_FMT_OFF_STRINGS_OFFSET, h->strings_offset);
    lora_fmt_wr64(p + LORA_FMT_OFF_STRINGS_SIZE, h->strings_size);
    lora_fmt_wr64(p + LORA_FMT_OFF_HEADER_CHECKSUM, h->header_checksum);
    return LORA_OK;
}

lora_status lora_fmt_encode_meta(const lora_fmt_meta *m, uint8_t *p, size_t cap)
{
    lora_status st = check_dst(m, p, cap, LORA_FMT_META_RECORD_SIZE);
    if (st != LORA_OK) return st;
    /* A string value is a strref packed into the value word; every other
     * type stores its 8 raw bytes. */
    uint64_t value = m->bits;
    if (m->type == LORA_FMT_META_STRING)
        value = (uint64_t)m->str.offset | ((uint64_t)m->str.length << 32);
    lora_fmt_wr32(p + 0, m->key.offset);
    lora_fmt_wr32(p + 4, m->key.length);
    lora_fmt_wr32(p + 8, m->type);
    lora_fmt_wr32(p + 12, 0);
    lora_fmt_wr64(p + 16, value);
    return LORA_OK;
}

lora_status lora_fmt_encode_module(const lora_fmt_module *m, uint8_t *p, size_t cap)
{
    lora_status st = check_dst(m, p, cap, LORA_FMT_MODULE_RECORD_SIZE);
    if (st != LORA_OK) return st;
    lora_fmt_wr32(p + 0, m->name.offset);
    lora_fmt_wr32(p + 4, m->name.length);
    p[8] = m->kind;
    p[9] = m->scaling;
    p[10] = m->base_ndim;
    p[11] = 0;
    lora_fmt_wr32(p + 12, m->flags);
    lora_fmt_wr32(p + 16, m->rank);
    lora_fmt_wr32(p + 20, f32_bits(m->alpha));
    lora_fmt_wr32(p + 24, f32_bits(m->scale));
    lora_fmt_wr32(p + 28, 0);
    put_dims(p + 32, m->base_ndim, m->base_shape);
    lora_fmt_wr32(p + 72, m->blob_a);
    lora_fmt_wr32(p + 76, m->blob_b);
    lora_fmt_wr32(p + 80, m->blob_magnitude);
    lora_fmt_wr32(p + 84, m->blob_bias);
    lora_fmt_wr64(p + 88, 0);
    return LORA_OK;
}

lora_status lora_fmt_encode_tensor(const lora_fmt_tensor *t, uint8_t *p, size_t cap)
{
    lora_status st = check_dst(t, p, cap, LORA_FMT_TENSOR_RECORD_SIZE);
    if (st != LORA_OK) return st;
    lora_fmt_wr32(p + 0, t->name.offset);
    lora_fmt_wr32(p + 4, t->name.length);
    lora_fmt_wr32(p + 8, t->blob);
    lora_fmt_wr32(p + 12, 0);
    return LORA_OK;
}

lora_status lora_fmt_encode_blob(const lora_fmt_blob *b, uint8_t *p, size_t cap)
{
    lora_status st = check_dst(b, p, cap, LORA_FMT_BLOB_RECORD_SIZE);
    if (st != LORA_OK) return st;
    p[0] = b->dtype;
    p[1] = b->compression;
    p[2] = b->ndim;
    p[3] = b->block_shift;
    lora_fmt_wr32(p + 4, 0);
    put_dims(p + 8, b->ndim, b->shape);
    lora_fmt_wr64(p + 48, b->offset);
    lora_fmt_wr64(p + 56, b->stored_size);
    lora_fmt_wr64(p + 64, b->raw_size);
    lora_fmt_wr64(p + 72, b->checksum);
    return LORA_OK;
}
