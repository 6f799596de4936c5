/* Header decoding: steps 1-5, 7 and the limit-free part of 8 of the spec's
 * validation order. The reader runs the header checksum (step 6) between
 * the frame and the field checks, so they are separate calls. */
#include <string.h>
#include "lora_format.h"


static int is_magic_prefix(const uint8_t *p, size_t len)
{
    return len == 0 || memcmp(p, LORA_FMT_MAGIC, len) == 0;
}

/* The magic's 0x89 loses its high bit on a 7-bit channel; its CR LF becomes
 * LF (CRLF->LF) or CR CR LF (LF->CRLF) under newline conversion. Naming the
 * cause tells the user to re-transfer in binary mode. */
static int looks_text_damaged(const uint8_t *p)
{
    if (memcmp(p + 1, "LORA", 4) != 0) return 0;
    if (p[0] == 0x09) return 1;
    if (p[5] == '\n' && p[6] == 0x1a) return 1;
    if (p[5] == '\r' && p[6] == '\r' && p[7] == '\n') return 1;
    return 0;
}

static void parse_header(const uint8_t *p, lora_fmt_header *h)
{
    h->version_major = lora_fmt_rd16(p + LORA_FMT_OFF_VERSION_MAJOR);
    h->version_minor = lora_fmt_rd16(p + LORA_FMT_OFF_VERSION_MINOR);
    h->header_size = lora_fmt_rd32(p + LORA_FMT_OFF_HEADER_SIZE);
    h->required_flags = lora_fmt_rd32(p + LORA_FMT_OFF_REQUIRED_FLAGS);
    h->optional_flags = lora_fmt_rd32(p + LORA_FMT_OFF_OPTIONAL_FLAGS);
    h->file_size = lora_fmt_rd64(p + LORA_FMT_OFF_FILE_SIZE);
    h->data_offset = lora_fmt_rd64(p + LORA_FMT_OFF_DATA_OFFSET);
    h->meta_offset = lora_fmt_rd64(p + LORA_FMT_OFF_META_OFFSET);
    h->meta_count = lora_fmt_rd32(p + LORA_FMT_OFF_META_COUNT);
    h->module_count = lora_fmt_rd32(p + LORA_FMT_OFF_MODULE_COUNT);
    h->modules_offset = lora_fmt_rd64(p + LORA_FMT_OFF_MODULES_OFFSET);
    h->tensors_offset = lora_fmt_rd64(p + LORA_FMT_OFF_TENSORS_OFFSET);
    h->tensor_count = lora_fmt_rd32(p + LORA_FMT_OFF_TENSOR_COUNT);
    h->blob_count = lora_fmt_rd32(p + LORA_FMT_OFF_BLOB_COUNT);
    h->blobs_offset = lora_fmt_rd64(p + LORA_FMT_OFF_BLOBS_OFFSET);
    h->strings_offset = lora_fmt_rd64(p + LORA_FMT_OFF_STRINGS_OFFSET);
    h->strings_size = lora_fmt_rd64(p + LORA_FMT_OFF_STRINGS_SIZE);
    h->header_checksum = lora_fmt_rd64(p + LORA_FMT_OFF_HEADER_CHECKSUM);
}

lora_status lora_fmt_decode_header_frame(const uint8_t *p, size_t len, uint64_t max_file_size,
                                         lora_fmt_header *h, lora_fmt_fault *fault)
{
    if ((!p && len) || !h) return lora_fmt_fail(fault, LORA_E_INVALID_ARGUMENT, 0, "header");
    /* 1. magic */
    if (len < LORA_FMT_MAGIC_SIZE)
        return lora_fmt_fail(fault, is_magic_prefix(p, len) ? LORA_E_TRUNCATED : LORA_E_BAD_MAGIC, 0, "header.magic");
    if (memcmp(p, LORA_FMT_MAGIC, LORA_FMT_MAGIC_SIZE) != 0)
        return lora_fmt_fail(fault, looks_text_damaged(p) ? LORA_E_TEXT_MODE_DAMAGE : LORA_E_BAD_MAGIC, 0,
                    "header.magic");
    /* 2. version: decided before the rest of the header so that a future
     * major version with a different layout is reported as such. */
    if (len < 12) return lora_fmt_fail(fault, LORA_E_TRUNCATED, len, "header");
    if (lora_fmt_rd16(p + LORA_FMT_OFF_VERSION_MAJOR) != LORA_FMT_VERSION_MAJOR)
        return lora_fmt_fail(fault, LORA_E_UNSUPPORTED_VERSION, LORA_FMT_OFF_VERSION_MAJOR, "header.version_major");
    /* 3. header size */
    if (len < LORA_FMT_HEADER_SIZE) return lora_fmt_fail(fault, LORA_E_TRUNCATED, len, "header");
    parse_header(p, h);
    if (h->header_size < LORA_FMT_HEADER_SIZE || h->header_size % LORA_FMT_TABLE_ALIGN != 0)
        return lora_fmt_fail(fault, LORA_E_BAD_HEADER, LORA_FMT_OFF_HEADER_SIZE, "header.header_size");
    /* Only a later minor may grow the header; a 1.0 file is canonical. */
    if (h->version_minor == 0 && h->header_size != LORA_FMT_HEADER_SIZE)
        return lora_fmt_fail(fault, LORA_E_BAD_HEADER, LORA_FMT_OFF_HEADER_SIZE, "header.header_size");
    if (h->header_size > len) return lora_fmt_fail(fault, LORA_E_TRUNCATED, LORA_FMT_OFF_HEADER_SIZE, "header.header_size");
    /* 4. file size against the real length, then the caller's cap */
    if (h->file_size > len) return lora_fmt_fail(fault, LORA_E_TRUNCATED, LORA_FMT_OFF_FILE_SIZE, "header.file_size");
    if (h->file_size < len) return lora_fmt_fail(fault, LORA_E_TRAILING_BYTES, LORA_FMT_OFF_FILE_SIZE, "header.file_size");
    if (h->file_size > max_file_size)
        return lora_fmt_fail(fault, LORA_E_LIMIT_EXCEEDED, LORA_FMT_OFF_FILE_SIZE, "header.file_size");
    /* 5. data offset: after this, [0, data_offset) is inside the buffer and
     * the header checksum can be computed. */
    if (h->data_offset % LORA_FMT_BLOB_ALIGN != 0)
        return lora_fmt_fail(fault, LORA_E_MISALIGNED, LORA_FMT_OFF_DATA_OFFSET, "header.data_offset");
    if (h->data_offset < h->header_size || h->data_offset > h->file_size)
        return lora_fmt_fail(fault, LORA_E_BAD_OFFSET, LORA_FMT_OFF_DATA_OFFSET, "header.data_offset");
    return LORA_OK;
}

lora_status lora_fmt_check_header_fields(const uint8_t *p, size_t len, const lora_fmt_header *h,
                                         lora_fmt_fault *fault)
{
    if (!p || !h || len < LORA_FMT_HEADER_SIZE) return lora_fmt_fail(fault, LORA_E_INVALID_ARGUMENT, 0, "header");
    if (h->required_flags & ~(uint32_t)LORA_FMT_REQUIRED_FLAGS_KNOWN)
        return lora_fmt_fail(fault, LORA_E_UNSUPPORTED_FEATURE, LORA_FMT_OFF_REQUIRED_FLAGS, "header.required_flags");
    /* Optional bits from a later minor are ignorable by definition; in a
     * file of our own minor they can only be damage or a bad writer. */
    if (h->version_minor <= LORA_FMT_VERSION_MINOR &&
        (h->optional_flags & ~(uint32_t)LORA_FMT_OPTIONAL_FLAGS_KNOWN))
        return lora_fmt_fail(fault, LORA_E_RESERVED_NONZERO, LORA_FMT_OFF_OPTIONAL_FLAGS, "header.optional_flags");
    for (uint32_t i = LORA_FMT_OFF_RESERVED; i < LORA_FMT_OFF_HEADER_CHECKSUM; i++)
        if (p[i] != 0) return lora_fmt_fail(fault, LORA_E_RESERVED_NONZERO, i, "header.reserved");
    return LORA_OK;
}

/* One table: its stored offset must equal the running canonical position. */
static lora_status table_step(uint64_t *pos, uint64_t stored, uint64_t stored_off, const char *field,
                              uint32_t count, uint32_t record_size, lora_fmt_fault *fault)
{
    if (stored != *pos) return lora_fmt_fail(fault, LORA_E_BAD_OFFSET, stored_off, field);
    uint64_t bytes;
    /* u32 x small constant cannot overflow u64, but the sum can in principle. */
    if (lora_fmt_mul_overflow(count, record_size, &bytes) || lora_fmt_add_overflow(*pos, bytes, pos))
        return lora_fmt_fail(fault, LORA_E_BAD_OFFSET, stored_off, field);
    return LORA_OK;
}

lora_status lora_fmt_check_table_layout(const lora_fmt_header *h, lora_fmt_fault *fault)
{
    if (!h) return lora_fmt_fail(fault, LORA_E_INVALID_ARGUMENT, 0, "header");
    uint64_t pos = h->header_size;
    lora_status st;
    st = table_step(&pos, h->meta_offset, LORA_FMT_OFF_META_OFFSET, "header.meta_offset", h->meta_count,
                    LORA_FMT_META_RECORD_SIZE, fault);
    if (st != LORA_OK) return st;
    st = table_step(&pos, h->modules_offset, LORA_FMT_OFF_MODULES_OFFSET, "header.modules_offset", h->module_count,
                    LORA_FMT_MODULE_RECORD_SIZE, fault);
    if (st != LORA_OK) return st;
    st = table_step(&pos, h->tensors_offset, LORA_FMT_OFF_TENSORS_OFFSET, "header.tensors_offset", h->tensor_count,
                    LORA_FMT_TENSOR_RECORD_SIZE, fault);
    if (st != LORA_OK) return st;
    st = table_step(&pos, h->blobs_offset, LORA_FMT_OFF_BLOBS_OFFSET, "header.blobs_offset", h->blob_count,
                    LORA_FMT_BLOB_RECORD_SIZE, fault);
    if (st != LORA_OK) return st;
    if (h->strings_offset != pos)
        return lora_fmt_fail(fault, LORA_E_BAD_OFFSET, LORA_FMT_OFF_STRINGS_OFFSET, "header.strings_offset");
    uint64_t end;
    if (lora_fmt_add_overflow(pos, h->strings_size, &end) || end > h->data_offset)
        return lora_fmt_fail(fault, LORA_E_BAD_OFFSET, LORA_FMT_OFF_STRINGS_SIZE, "header.strings_size");
    return LORA_OK;
}

lora_status lora_fmt_decode_header(const uint8_t *p, size_t len, lora_fmt_header *h, lora_fmt_fault *fault)
{
    lora_status st = lora_fmt_decode_header_frame(p, len, UINT64_MAX, h, fault);
    if (st != LORA_OK) return st;
    st = lora_fmt_check_header_fields(p, len, h, fault);
    if (st != LORA_OK) return st;
    return lora_fmt_check_table_layout(h, fault);
}
