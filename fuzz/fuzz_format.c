/*
 * fuzz_format - the wire layer alone (format/), on raw bytes.
 *
 * The input is read as a header (combined and split decoders) and, at
 * every byte offset, as each kind of record. Besides "no crash", it checks
 * properties a wrong decoder would break:
 *   - the combined header decoder agrees with its split steps;
 *   - a record that decodes re-encodes to exactly its input bytes (decode
 *     drops nothing and encode invents nothing);
 *   - a fault names the returned status and an offset inside the record;
 *   - check_module rejects a rank above max_rank with LIMIT_EXCEEDED;
 *   - the UTF-8 validator agrees with an independent one written from the
 *     Unicode well-formed-sequence table;
 *   - dtype size and shape arithmetic agree with 128-bit arithmetic.
 */
#include <string.h>
#include "lora_format.h"
#include "support/fuzz_common.h"

static void check_fault(lora_status st, const lora_fmt_fault *f, uint64_t lo, uint64_t hi)
{
    FUZZ_ASSERT(fuzz_status_is_error(st));
    FUZZ_ASSERT(f->status == st);
    FUZZ_ASSERT(f->field != NULL);
    FUZZ_ASSERT(f->offset >= lo && f->offset <= hi);
}

static void check_header(const uint8_t *p, size_t len)
{
    lora_fmt_header h, h2;
    lora_fmt_fault f;
    lora_status all = lora_fmt_decode_header(p, len, &h, &f);
    if (all != LORA_OK) check_fault(all, &f, 0, len > 128 ? len : 128);

    lora_status st = lora_fmt_decode_header_frame(p, len, UINT64_MAX, &h2, &f);
    if (st == LORA_OK) {
        FUZZ_ASSERT(h2.file_size == len && h2.header_size <= len && h2.data_offset <= len);
        FUZZ_ASSERT(h2.data_offset % LORA_FMT_BLOB_ALIGN == 0 && h2.data_offset >= h2.header_size);
        /* A cap below the file size is the only new failure a cap adds. */
        if (len > 0) {
            lora_status capped = lora_fmt_decode_header_frame(p, len, len - 1, &h2, &f);
            FUZZ_ASSERT(capped == LORA_E_LIMIT_EXCEEDED);
        }
        st = lora_fmt_check_header_fields(p, len, &h2, &f);
    }
    if (st == LORA_OK) st = lora_fmt_check_table_layout(&h2, &f);
    FUZZ_ASSERT(st == all);
    if (all != LORA_OK) return;

    FUZZ_ASSERT(h.strings_offset + h.strings_size <= h.data_offset);
    FUZZ_ASSERT(h.meta_offset <= h.modules_offset && h.modules_offset <= h.tensors_offset);
    FUZZ_ASSERT(h.tensors_offset <= h.blobs_offset && h.blobs_offset <= h.strings_offset);
    uint8_t again[LORA_FMT_HEADER_SIZE];
    FUZZ_ASSERT(lora_fmt_encode_header(&h, again, sizeof again) == LORA_OK);
    FUZZ_ASSERT(memcmp(again, p, sizeof again) == 0);
}

static void check_meta(const uint8_t *p, size_t len, uint64_t base)
{
    lora_fmt_meta m;
    lora_fmt_fault f;
    lora_status st = lora_fmt_decode_meta(p, len, base, &m, &f);
    if (st != LORA_OK) {
        check_fault(st, &f, base, base + LORA_FMT_META_RECORD_SIZE);
        return;
    }
    uint8_t again[LORA_FMT_META_RECORD_SIZE];
    FUZZ_ASSERT(lora_fmt_encode_meta(&m, again, sizeof again) == LORA_OK);
    FUZZ_ASSERT(memcmp(again, p, sizeof again) == 0);
}

static void check_tensor(const uint8_t *p, size_t len, uint64_t base)
{
    lora_fmt_tensor t;
    lora_fmt_fault f;
    lora_status st = lora_fmt_decode_tensor(p, len, base, &t, &f);
    if (st != LORA_OK) {
        check_fault(st, &f, base, base + LORA_FMT_TENSOR_RECORD_SIZE);
        return;
    }
    uint8_t again[LORA_FMT_TENSOR_RECORD_SIZE];
    FUZZ_ASSERT(lora_fmt_encode_tensor(&t, again, sizeof again) == LORA_OK);
    FUZZ_ASSERT(memcmp(again, p, sizeof again) == 0);
}

static void check_module(const uint8_t *p, size_t len, uint64_t base)
{
    lora_fmt_module m, m2;
    lora_fmt_fault f;
    lora_status all = lora_fmt_decode_module(p, len, base, &m2, &f);
    if (all != LORA_OK) check_fault(all, &f, base, base + LORA_FMT_MODULE_RECORD_SIZE);
    lora_status st = lora_fmt_read_module(p, len, base, &m, &f);
    if (st != LORA_OK) {
        check_fault(st, &f, base, base + LORA_FMT_MODULE_RECORD_SIZE);
        FUZZ_ASSERT(st == all);
        return;
    }
    st = lora_fmt_check_module(&m, UINT32_MAX, base, &f);
    FUZZ_ASSERT(st == all);
    if (st != LORA_OK) {
        check_fault(st, &f, base, base + LORA_FMT_MODULE_RECORD_SIZE);
        return;
    }
    /* Only a fully valid record is canonical (unused dims zero). */
    uint8_t again[LORA_FMT_MODULE_RECORD_SIZE];
    FUZZ_ASSERT(lora_fmt_encode_module(&m, again, sizeof again) == LORA_OK);
    FUZZ_ASSERT(memcmp(again, p, sizeof again) == 0);
    FUZZ_ASSERT(lora_fmt_check_module(&m, m.rank - 1, base, &f) == LORA_E_LIMIT_EXCEEDED);
    FUZZ_ASSERT(lora_fmt_check_module(&m, m.rank, base, &f) == LORA_OK);
}

/* Elements and bytes per block from the spec's dtype table: 0 for a pair
 * the format does not have. */
static int spec_block(uint32_t dtype, uint32_t shift, uint64_t *elems, uint64_t *bytes)
{
    static const uint32_t be[5] = {1, 1, 1, 32, 32}, bb[5] = {4, 2, 2, 34, 18};
    if (dtype < 5 && shift == 0) {
        *elems = be[dtype];
        *bytes = bb[dtype];
        return 1;
    }
    if (dtype == 5 && shift >= 5 && shift <= 12) {
        *elems = (uint64_t)1 << shift;
        *bytes = 4 + *elems / 2;
        return 1;
    }
    return 0;
}

static void check_blob(const uint8_t *p, size_t len, uint64_t base)
{
    lora_fmt_blob b, b2;
    lora_fmt_fault f;
    lora_status all = lora_fmt_decode_blob(p, len, base, &b2, &f);
    if (all != LORA_OK) check_fault(all, &f, base, base + LORA_FMT_BLOB_RECORD_SIZE);
    lora_status st = lora_fmt_read_blob(p, len, base, &b, &f);
    if (st != LORA_OK) {
        FUZZ_ASSERT(st == all);
        return;
    }
    st = lora_fmt_check_blob(&b, base, &f);
    FUZZ_ASSERT(st == all);
    if (st != LORA_OK) {
        check_fault(st, &f, base, base + LORA_FMT_BLOB_RECORD_SIZE);
        return;
    }
    uint8_t again[LORA_FMT_BLOB_RECORD_SIZE];
    FUZZ_ASSERT(lora_fmt_encode_blob(&b, again, sizeof again) == LORA_OK);
    FUZZ_ASSERT(memcmp(again, p, sizeof again) == 0);
    /* Independent recomputation of the size rule (spec section 11). */
    unsigned __int128 numel = 1;
    for (uint32_t i = 0; i < b.ndim; i++) numel *= b.shape[i];
    uint64_t be, bb;
    FUZZ_ASSERT(spec_block(b.dtype, b.block_shift, &be, &bb));
    FUZZ_ASSERT(numel % be == 0);
    FUZZ_ASSERT(numel / be * bb == b.raw_size);
    if (b.compression == LORA_FMT_COMPRESSION_NONE) FUZZ_ASSERT(b.stored_size == b.raw_size);
    else FUZZ_ASSERT(b.stored_size >= 1 && (unsigned __int128)b.raw_size <=
                     (unsigned __int128)b.stored_size * LORA_FMT_ZLIB_MAX_RATIO + LORA_FMT_ZLIB_SLACK);
}

static void check_utf8(const uint8_t *p, size_t len)
{
    FUZZ_ASSERT(lora_fmt_utf8_valid(p, len) == fuzz_utf8_valid_ref(p, len));
    /* Short windows reach every lead byte with every truncation; a window
     * that starts with a non-NUL ASCII byte adds nothing to the one after. */
    for (size_t off = 0; off < len; off++)
        for (size_t n = 1; n <= 5 && off + n <= len && (p[off] == 0 || p[off] >= 0x80); n++)
            FUZZ_ASSERT(lora_fmt_utf8_valid(p + off, n) == fuzz_utf8_valid_ref(p + off, n));
}

static void check_raw_size(lora_status st, uint64_t bytes, uint64_t numel, uint64_t be, uint64_t bb)
{
    unsigned __int128 b = (unsigned __int128)(numel / be) * bb;
    if (numel % be) FUZZ_ASSERT(st == LORA_E_BAD_SHAPE);
    else if (b > UINT64_MAX) FUZZ_ASSERT(st == LORA_E_BAD_SIZE);
    else FUZZ_ASSERT(st == LORA_OK && bytes == b);
}

/* Dims from the input, interpreted as a shape in every dtype and block. */
static void check_sizes(const uint8_t *p, size_t len)
{
    if (len < 1 + 8 * LORA_FMT_MAX_DIMS) return;
    uint32_t ndim = p[0] % 7; /* 0 and 6 are invalid */
    uint64_t dims[LORA_FMT_MAX_DIMS];
    for (uint32_t i = 0; i < LORA_FMT_MAX_DIMS; i++) dims[i] = lora_fmt_rd64(p + 1 + 8 * i) >> (p[0] >> 3);
    uint64_t numel = 0;
    lora_status st = lora_fmt_shape_numel(ndim, dims, &numel);
    unsigned __int128 want = 1;
    int ok = ndim >= 1 && ndim <= LORA_FMT_MAX_DIMS;
    for (uint32_t i = 0; ok && i < ndim; i++) {
        if (dims[i] == 0) ok = 0;
        want *= dims[i];
        if (want > UINT64_MAX) ok = 0;
    }
    FUZZ_ASSERT((st == LORA_OK) == ok);
    if (!ok) {
        FUZZ_ASSERT(st == LORA_E_BAD_SHAPE);
        return;
    }
    FUZZ_ASSERT(numel == want);
    for (uint32_t d = 0; d < 8; d++) {
        uint64_t bytes = 0;
        st = lora_fmt_dtype_raw_size(d, numel, &bytes);
        if (!lora_fmt_dtype_valid(d)) {
            FUZZ_ASSERT(st == LORA_E_UNSUPPORTED_DTYPE && lora_fmt_dtype_name(d) == NULL);
            FUZZ_ASSERT(lora_fmt_blob_raw_size(d, 0, numel, &bytes) == LORA_E_UNSUPPORTED_DTYPE);
            continue;
        }
        uint64_t be, bb;
        FUZZ_ASSERT(spec_block(d, d == 5 ? 6 : 0, &be, &bb)); /* the default block */
        FUZZ_ASSERT(lora_fmt_dtype_block_elems(d) == be && lora_fmt_dtype_block_bytes(d) == bb);
        check_raw_size(st, bytes, numel, be, bb);
        for (uint32_t shift = 0; shift < 16; shift++) {
            st = lora_fmt_blob_raw_size(d, shift, numel, &bytes);
            int valid = spec_block(d, shift, &be, &bb);
            FUZZ_ASSERT(lora_fmt_block_shift_valid(d, shift) == valid);
            if (!valid) {
                FUZZ_ASSERT(st == LORA_E_BAD_SHAPE && lora_fmt_blob_block_elems(d, shift) == 0);
                continue;
            }
            FUZZ_ASSERT(lora_fmt_blob_block_elems(d, shift) == be && lora_fmt_blob_block_bytes(d, shift) == bb);
            check_raw_size(st, bytes, numel, be, bb);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_header(data, size);
    for (size_t off = 0; off < size; off++) {
        const uint8_t *p = data + off;
        size_t len = size - off;
        check_meta(p, len, off);
        check_tensor(p, len, off);
        check_module(p, len, off);
        check_blob(p, len, off);
    }
    check_utf8(data, size);
    check_sizes(data, size);
    return 0;
}
