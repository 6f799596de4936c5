/* Step 10 (each blob's shape and sizes, then where it sits) and step 15
 * (the padding between blobs). Blobs tile the blob region in index order:
 * blob 0 at data_offset, each next one at the 64-aligned end of the
 * previous, the file ending exactly at the end of the last. */
#include <stdio.h>
#include "reader.h"

static lora_status blob_fault(const lora_reader *r, uint32_t i, const lora_fmt_fault *f, lora_error *err)
{
    const lora_fmt_blob *b = &r->blobs[i].f;
    char shape[128];
    lora_read_format_shape(shape, sizeof shape, b->ndim, b->shape);
    const char *dt = lora_fmt_dtype_name(b->dtype);
    if (f->status == LORA_E_BAD_SIZE)
        return lora_error_set(err, f->status, f->offset,
                              "blob %u: %s %s %s with stored size %llu and raw size %llu: %s", i, dt ? dt : "?",
                              shape, b->compression == LORA_FMT_COMPRESSION_ZLIB ? "zlib" : "uncompressed",
                              (unsigned long long)b->stored_size, (unsigned long long)b->raw_size, f->field);
    return lora_error_set(err, f->status, f->offset, "blob %u: %s %s: %s: %s", i, dt ? dt : "?", shape, f->field,
                          lora_status_message(f->status));
}

static lora_status place_blob(const lora_reader *r, uint32_t i, uint64_t expect, uint64_t rec, lora_error *err)
{
    const lora_fmt_blob *b = &r->blobs[i].f;
    if (b->offset != expect)
        return lora_error_set(err, LORA_E_BAD_OFFSET, rec + 48, "blob %u: offset %llu, expected %llu", i,
                              (unsigned long long)b->offset, (unsigned long long)expect);
    uint64_t end;
    if (lora_fmt_add_overflow(b->offset, b->stored_size, &end) || end > r->h.file_size)
        return lora_error_set(err, LORA_E_BAD_OFFSET, rec + 56, "blob %u: offset %llu + stored size %llu exceeds file size %llu",
                              i, (unsigned long long)b->offset, (unsigned long long)b->stored_size,
                              (unsigned long long)r->h.file_size);
    return LORA_OK;
}

lora_status lora_read_blob_layout(lora_reader *r, lora_error *err)
{
    uint64_t expect = r->h.data_offset;
    for (uint32_t i = 0; i < r->h.blob_count; i++) {
        uint64_t rec = lora_read_rec_off(r->h.blobs_offset, i, LORA_FMT_BLOB_RECORD_SIZE);
        lora_rblob *b = &r->blobs[i];
        lora_fmt_fault f;
        if (lora_fmt_check_blob(&b->f, rec, &f) != LORA_OK) return blob_fault(r, i, &f, err);
        (void)lora_fmt_shape_numel(b->f.ndim, b->f.shape, &b->numel); /* checked just above */
        if (b->f.raw_size > r->limits.max_blob_raw_size)
            return lora_error_set(err, LORA_E_LIMIT_EXCEEDED, rec + 64, "blob %u: raw size %llu exceeds the limit %llu",
                                  i, (unsigned long long)b->f.raw_size,
                                  (unsigned long long)r->limits.max_blob_raw_size);
        LORA_FORWARD_IF_ERROR(place_blob(r, i, expect, rec, err));
        uint64_t end = b->f.offset + b->f.stored_size; /* checked by place_blob */
        if (i + 1 == r->h.blob_count) {
            expect = end;
        } else if (lora_fmt_align_overflow(end, LORA_FMT_BLOB_ALIGN, &expect)) {
            return lora_error_set(err, LORA_E_BAD_OFFSET, rec + 56, "blob %u: end %llu cannot be aligned", i,
                                  (unsigned long long)end);
        }
    }
    /* The last blob ends the file: anything after it is an appended payload
     * that no table describes. */
    if (expect != r->h.file_size)
        return lora_error_set(err, LORA_E_TRAILING_BYTES, expect,
                              "%llu bytes after the end of the last blob (%llu) up to file size %llu",
                              (unsigned long long)(r->h.file_size - expect), (unsigned long long)expect,
                              (unsigned long long)r->h.file_size);
    return LORA_OK;
}

lora_status lora_read_blob_padding(const lora_reader *r, lora_error *err)
{
    for (uint32_t i = 0; i + 1 < r->h.blob_count; i++) {
        uint64_t from = r->blobs[i].f.offset + r->blobs[i].f.stored_size;
        uint64_t to = r->blobs[i + 1].f.offset;
        for (uint64_t k = from; k < to; k++)
            if (r->data[k] != 0)
                return lora_error_set(err, LORA_E_NONZERO_PADDING, k,
                                      "padding after blob %u: byte %llu is 0x%02x, not zero", i,
                                      (unsigned long long)k, r->data[k]);
    }
    return LORA_OK;
}
