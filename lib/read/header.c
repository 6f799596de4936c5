/* Steps 1-8 of the validation order: everything decided by the header and
 * the table region before a single byte is allocated. */
#include <string.h>
#include "reader.h"

static lora_status header_fault(lora_error *err, const lora_fmt_fault *f, const uint8_t *data, size_t size,
                                const lora_fmt_header *h)
{
    const char *msg = lora_status_message(f->status);
    if (f->status == LORA_E_TRUNCATED) {
        if (strcmp(f->field, "header.file_size") == 0)
            return lora_error_set(err, f->status, f->offset, "header.file_size: file has %zu bytes, header says %llu",
                                  size, (unsigned long long)h->file_size);
        if (strcmp(f->field, "header.header_size") == 0)
            return lora_error_set(err, f->status, f->offset, "header.header_size %u exceeds file size %zu",
                                  h->header_size, size);
        return lora_error_set(err, f->status, f->offset, "%s: file ends after %zu bytes", f->field, size);
    }
    if (f->status == LORA_E_TRAILING_BYTES)
        return lora_error_set(err, f->status, f->offset, "header.file_size: header says %llu bytes, file has %zu",
                              (unsigned long long)h->file_size, size);
    if (f->status == LORA_E_UNSUPPORTED_VERSION)
        /* The frame decoder stops before parsing the rest of the header. */
        return lora_error_set(err, f->status, f->offset, "format version %u.%u (this library reads 1.x)",
                              lora_fmt_rd16(data + LORA_FMT_OFF_VERSION_MAJOR),
                              lora_fmt_rd16(data + LORA_FMT_OFF_VERSION_MINOR));
    return lora_error_set(err, f->status, f->offset, "%s: %s", f->field, msg);
}

/* Bytes in [from, to) must be zero; reports the first that is not. */
static lora_status check_zero(const uint8_t *data, uint64_t from, uint64_t to, const char *what, lora_error *err)
{
    for (uint64_t i = from; i < to; i++)
        if (data[i] != 0)
            return lora_error_set(err, LORA_E_NONZERO_PADDING, i, "%s: byte %llu is 0x%02x, not zero", what,
                                  (unsigned long long)i, data[i]);
    return LORA_OK;
}

static lora_status check_count(uint32_t count, uint32_t limit, const char *what, uint64_t off, lora_error *err)
{
    if (count > limit)
        return lora_error_set(err, LORA_E_LIMIT_EXCEEDED, off, "%s count %u exceeds the limit %u", what, count, limit);
    return LORA_OK;
}

/* Step 8. Counts are checked against the limits first so that a hostile
 * count is refused before anything is sized from it. */
static lora_status check_tables(const uint8_t *data, const lora_fmt_header *h, const lora_limits *lim,
                                lora_error *err)
{
    LORA_FORWARD_IF_ERROR(check_count(h->meta_count, lim->max_metadata, "metadata", LORA_FMT_OFF_META_COUNT, err));
    LORA_FORWARD_IF_ERROR(check_count(h->module_count, lim->max_modules, "module", LORA_FMT_OFF_MODULE_COUNT, err));
    LORA_FORWARD_IF_ERROR(check_count(h->tensor_count, lim->max_tensors, "tensor", LORA_FMT_OFF_TENSOR_COUNT, err));
    LORA_FORWARD_IF_ERROR(check_count(h->blob_count, lim->max_blobs, "blob", LORA_FMT_OFF_BLOB_COUNT, err));
    lora_fmt_fault f;
    if (lora_fmt_check_table_layout(h, &f) != LORA_OK) {
        if (strcmp(f.field, "header.strings_size") == 0)
            return lora_error_set(err, f.status, f.offset,
                                  "string table at %llu + %llu bytes ends past data_offset %llu",
                                  (unsigned long long)h->strings_offset, (unsigned long long)h->strings_size,
                                  (unsigned long long)h->data_offset);
        return lora_error_set(err, f.status, f.offset, "%s: not the canonical table offset", f.field);
    }
    if (h->strings_size > lim->max_string_bytes)
        return lora_error_set(err, LORA_E_LIMIT_EXCEEDED, LORA_FMT_OFF_STRINGS_SIZE,
                              "string table of %llu bytes exceeds the limit %llu",
                              (unsigned long long)h->strings_size, (unsigned long long)lim->max_string_bytes);
    uint64_t end = h->strings_offset + h->strings_size; /* checked by the layout */
    /* A later minor may put tables of its own after the strings; their
     * bytes are ignored here (the header checksum still covers them). */
    if (h->version_minor > LORA_FMT_VERSION_MINOR) return LORA_OK;
    uint64_t canon = UINT64_MAX;
    if (lora_fmt_align_overflow(end, LORA_FMT_BLOB_ALIGN, &canon) || canon != h->data_offset)
        return lora_error_set(err, LORA_E_BAD_OFFSET, LORA_FMT_OFF_DATA_OFFSET,
                              "header.data_offset %llu is not the aligned end of the string table (%llu)",
                              (unsigned long long)h->data_offset, (unsigned long long)canon);
    return check_zero(data, end, h->data_offset, "padding after the string table", err);
}

lora_status lora_read_check_header(const uint8_t *data, size_t size, const lora_limits *lim, lora_fmt_header *h,
                                   lora_error *err)
{
    lora_fmt_fault f;
    memset(h, 0, sizeof *h);
    if (lora_fmt_decode_header_frame(data, size, lim->max_file_size, h, &f) != LORA_OK) {
        if (f.status == LORA_E_LIMIT_EXCEEDED)
            return lora_error_set(err, f.status, f.offset, "file size %llu exceeds the limit %llu",
                                  (unsigned long long)h->file_size, (unsigned long long)lim->max_file_size);
        if (f.status == LORA_E_BAD_OFFSET)
            return lora_error_set(err, f.status, f.offset,
                                  "header.data_offset %llu outside [header_size %u, file size %llu]",
                                  (unsigned long long)h->data_offset, h->header_size,
                                  (unsigned long long)h->file_size);
        return header_fault(err, &f, data, size, h);
    }
    /* Step 6. Structural checks still follow a match: the checksum catches
     * accidents, not forgeries. */
    uint64_t sum = lora_header_checksum(data, h->data_offset);
    if (sum != h->header_checksum)
        return lora_error_set(err, LORA_E_HEADER_CHECKSUM, LORA_FMT_OFF_HEADER_CHECKSUM,
                              "header checksum 0x%016llx does not match the computed 0x%016llx",
                              (unsigned long long)h->header_checksum, (unsigned long long)sum);
    if (lora_fmt_check_header_fields(data, size, h, &f) != LORA_OK)
        return lora_error_set(err, f.status, f.offset, "%s: %s", f.field, lora_status_message(f.status));
    return check_tables(data, h, lim, err);
}
