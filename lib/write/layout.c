/*
 * layout.c - the canonical layout of /work/design.md and the bytes of the
 * header and table region.
 *
 * The format leaves the writer no choices: every table offset and blob
 * offset is fixed by the counts and sizes (the reader rejects anything
 * else). The one free choice, the order of the string table, is fixed here:
 * for each metadata entry its key then its string value, then the module
 * names, then the tensor names, each in insertion order, no sharing.
 */
#include <string.h>
#include "writer.h"

static uint64_t strings_total(const lora_writer *w)
{
    uint64_t n = 0; /* at most (2^32 entries) x (2 x 2^32 bytes): fits in u64 */
    for (uint32_t i = 0; i < w->meta_count; i++) n += (uint64_t)w->meta[i].key.len + w->meta[i].str.len;
    for (uint32_t i = 0; i < w->module_count; i++) n += w->modules[i].name.len;
    for (uint32_t i = 0; i < w->tensor_count; i++) n += w->tensors[i].name.len;
    return n;
}

lora_status lora_wlayout_compute(const lora_writer *w, lora_wlayout *lay, lora_error *err)
{
    memset(lay, 0, sizeof *lay);
    lay->meta_offset = LORA_FMT_HEADER_SIZE;
    lay->modules_offset = lay->meta_offset + (uint64_t)LORA_FMT_META_RECORD_SIZE * w->meta_count;
    lay->tensors_offset = lay->modules_offset + (uint64_t)LORA_FMT_MODULE_RECORD_SIZE * w->module_count;
    lay->blobs_offset = lay->tensors_offset + (uint64_t)LORA_FMT_TENSOR_RECORD_SIZE * w->tensor_count;
    lay->strings_offset = lay->blobs_offset + (uint64_t)LORA_FMT_BLOB_RECORD_SIZE * w->blob_count;
    lay->strings_size = strings_total(w);
    /* String references are 32-bit offsets into the table. */
    if (lay->strings_size > UINT32_MAX)
        return lora_error_set(err, LORA_E_LIMIT_EXCEEDED, LORA_NO_OFFSET,
                              "string table of %llu bytes exceeds the 4 GiB the format can address",
                              (unsigned long long)lay->strings_size);
    lay->data_offset = (lay->strings_offset + lay->strings_size + LORA_FMT_BLOB_ALIGN - 1) &
                       ~(uint64_t)(LORA_FMT_BLOB_ALIGN - 1);
    /* Blob i starts at the 64-aligned end of blob i-1, blob 0 at data_offset. */
    uint64_t end = lay->data_offset;
    for (uint32_t i = 0; i < w->blob_count; i++) {
        uint64_t start = end;
        if (i > 0 && lora_fmt_align_overflow(end, LORA_FMT_BLOB_ALIGN, &start)) goto overflow;
        if (lora_fmt_add_overflow(start, w->blobs[i].rec.stored_size, &end)) goto overflow;
    }
    lay->file_size = end;
    return LORA_OK;
overflow:
    return lora_error_set(err, LORA_E_LIMIT_EXCEEDED, LORA_NO_OFFSET, "blobs exceed a 64-bit file size");
}

/* Append s to the string table; returns its reference. */
static lora_fmt_strref put_string(uint8_t *table, uint64_t *cursor, const lora_wstr *s)
{
    lora_fmt_strref ref = {(uint32_t)*cursor, s->len};
    if (s->len) memcpy(table + *cursor, s->s, s->len);
    *cursor += s->len;
    return ref;
}

static void encode_header(const lora_writer *w, const lora_wlayout *lay, uint8_t *dst)
{
    lora_fmt_header h;
    memset(&h, 0, sizeof h);
    h.version_major = LORA_FMT_VERSION_MAJOR;
    h.version_minor = LORA_FMT_VERSION_MINOR;
    h.header_size = LORA_FMT_HEADER_SIZE;
    h.file_size = lay->file_size;
    h.data_offset = lay->data_offset;
    h.meta_offset = lay->meta_offset;
    h.meta_count = w->meta_count;
    h.module_count = w->module_count;
    h.modules_offset = lay->modules_offset;
    h.tensors_offset = lay->tensors_offset;
    h.tensor_count = w->tensor_count;
    h.blob_count = w->blob_count;
    h.blobs_offset = lay->blobs_offset;
    h.strings_offset = lay->strings_offset;
    h.strings_size = lay->strings_size;
    (void)lora_fmt_encode_header(&h, dst, LORA_FMT_HEADER_SIZE);
}

static void encode_records(lora_writer *w, const lora_wlayout *lay, uint8_t *dst)
{
    uint8_t *strings = dst + lay->strings_offset;
    uint64_t cursor = 0;
    for (uint32_t i = 0; i < w->meta_count; i++) {
        const lora_wmeta *m = &w->meta[i];
        lora_fmt_meta rec;
        memset(&rec, 0, sizeof rec);
        rec.key = put_string(strings, &cursor, &m->key);
        rec.type = m->type;
        if (m->type == LORA_FMT_META_STRING) rec.str = put_string(strings, &cursor, &m->str);
        rec.bits = m->bits;
        (void)lora_fmt_encode_meta(&rec, dst + lay->meta_offset + (uint64_t)LORA_FMT_META_RECORD_SIZE * i,
                                   LORA_FMT_META_RECORD_SIZE);
    }
    for (uint32_t i = 0; i < w->module_count; i++) {
        lora_wmodule *m = &w->modules[i];
        m->rec.name = put_string(strings, &cursor, &m->name);
        (void)lora_fmt_encode_module(&m->rec, dst + lay->modules_offset + (uint64_t)LORA_FMT_MODULE_RECORD_SIZE * i,
                                     LORA_FMT_MODULE_RECORD_SIZE);
    }
    for (uint32_t i = 0; i < w->tensor_count; i++) {
        lora_fmt_tensor rec = {put_string(strings, &cursor, &w->tensors[i].name), w->tensors[i].blob};
        (void)lora_fmt_encode_tensor(&rec, dst + lay->tensors_offset + (uint64_t)LORA_FMT_TENSOR_RECORD_SIZE * i,
                                     LORA_FMT_TENSOR_RECORD_SIZE);
    }
    uint64_t end = lay->data_offset;
    for (uint32_t i = 0; i < w->blob_count; i++) {
        lora_fmt_blob *b = &w->blobs[i].rec;
        b->offset = i == 0 ? end : (end + LORA_FMT_BLOB_ALIGN - 1) & ~(uint64_t)(LORA_FMT_BLOB_ALIGN - 1);
        end = b->offset + b->stored_size; /* no overflow: lora_wlayout_compute checked */
        (void)lora_fmt_encode_blob(b, dst + lay->blobs_offset + (uint64_t)LORA_FMT_BLOB_RECORD_SIZE * i,
                                   LORA_FMT_BLOB_RECORD_SIZE);
    }
}

void lora_wlayout_encode(lora_writer *w, const lora_wlayout *lay, uint8_t *dst)
{
    /* Zero first: table padding up to data_offset must be zero and is
     * covered by the header checksum. */
    memset(dst, 0, (size_t)lay->data_offset);
    encode_header(w, lay, dst);
    encode_records(w, lay, dst);
    lora_fmt_wr64(dst + LORA_FMT_OFF_HEADER_CHECKSUM, lora_header_checksum(dst, lay->data_offset));
}
