/*
 * fuzz_reader - the .lora reader end to end on an untrusted buffer.
 *
 * Each input is opened twice: as given (which exercises the header checksum
 * rejection and everything before it), and with every checksum recomputed
 * (so the fuzzer, which cannot forge XXH3, reaches the structural checks,
 * verification, inflation and decoding). On a reader that opens, every query
 * is called and cross-checked:
 *   - *_find returns the entry of the name it was given;
 *   - verify_blob, blob_read and blob_decode_f32 agree on the status;
 *   - decode_f32 (dispatched SIMD kernels) equals the reference kernels run
 *     on blob_read's bytes, bit for bit;
 *   - count_nonfinite equals a count over the decoded values;
 *   - lora_reader_verify fails exactly when some blob fails, and opening
 *     with LORA_READ_VERIFY_CHECKSUMS gives the same status;
 *   - no allocation is larger than the input justifies, and nothing leaks.
 * Limits are small so that claims within them stay cheap to honour; a
 * third open with tiny limits may only turn success into LIMIT_EXCEEDED.
 * The checksum-fixed copy sits at an odd address (misaligned blob data).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "support/fuzz_common.h"
#include "common/internal.h"
#include "kernels/kernels.h"

#define MAX_DECODE_BYTES ((size_t)64 << 20)

static lora_read_options fuzz_options(fuzz_alloc_state *as, uint32_t flags)
{
    lora_read_options o = LORA_READ_OPTIONS_INIT;
    o.limits.max_modules = 1024;
    o.limits.max_tensors = 1024;
    o.limits.max_blobs = 4096;
    o.limits.max_metadata = 1024;
    o.limits.max_string_bytes = (uint64_t)1 << 20;
    o.limits.max_blob_raw_size = (uint64_t)4 << 20;
    o.flags = flags;
    o.allocator = fuzz_alloc_hook(as);
    return o;
}

/* Reference decode of raw bytes, independent of lib/read's dispatch. */
static void ref_decode(lora_dtype dtype, uint32_t block, const uint8_t *raw, uint64_t numel, float *out)
{
    const lora_kernels *k = &lora_kernels_ref;
    size_t n = (size_t)numel;
    switch (dtype) {
    case LORA_DTYPE_F32: memcpy(out, raw, n * 4); break;
    case LORA_DTYPE_F16:
    case LORA_DTYPE_BF16: {
        uint16_t *h = malloc(n * 2 + 1);
        FUZZ_ASSERT(h != NULL);
        memcpy(h, raw, n * 2);
        (dtype == LORA_DTYPE_F16 ? k->f16_to_f32 : k->bf16_to_f32)(h, out, n);
        free(h);
        break;
    }
    case LORA_DTYPE_Q8_0: k->q8_0_to_f32(raw, out, n / LORA_FMT_Q8_0_BLOCK); break;
    case LORA_DTYPE_Q4_0: k->q4_0_to_f32(raw, out, n / LORA_FMT_Q4_0_BLOCK); break;
    case LORA_DTYPE_NF4: k->nf4_to_f32(raw, out, n / block, block); break;
    default: FUZZ_ASSERT(!"dtype validated at open");
    }
}

static void check_blob_data(const lora_reader *r, uint32_t i, const uint8_t *file, size_t size)
{
    lora_blob b;
    lora_error err;
    FUZZ_ASSERT(lora_reader_blob(r, i, &b) == LORA_OK);
    FUZZ_ASSERT(b.offset % 64 == 0 && b.offset <= size && b.stored_size <= size - b.offset);
    const void *view;
    size_t view_size;
    lora_status vs = lora_reader_blob_view(r, i, &view, &view_size);
    if (b.compression == LORA_COMPRESSION_NONE) {
        FUZZ_ASSERT(vs == LORA_OK && view == file + b.offset && view_size == b.raw_size);
    } else {
        FUZZ_ASSERT(vs == LORA_E_NOT_VIEWABLE);
    }
    lora_status verified = lora_reader_verify_blob(r, i, &err);
    if (verified != LORA_OK) fuzz_check_error(verified, &err);
    if (b.raw_size > MAX_DECODE_BYTES || b.numel > MAX_DECODE_BYTES / sizeof(float)) return;

    uint8_t *raw = malloc((size_t)b.raw_size + 1);
    float *dec = malloc((size_t)b.numel * sizeof(float) + 1);
    float *want = malloc((size_t)b.numel * sizeof(float) + 1);
    FUZZ_ASSERT(raw && dec && want);
    lora_status rd = lora_reader_blob_read(r, i, raw, (size_t)b.raw_size, &err);
    FUZZ_ASSERT(rd == verified);
    if (b.raw_size > 0)
        FUZZ_ASSERT(lora_reader_blob_read(r, i, raw, (size_t)b.raw_size - 1, &err) == LORA_E_BUFFER_TOO_SMALL);
    lora_status dc = lora_reader_blob_decode_f32(r, i, dec, (size_t)b.numel, &err);
    FUZZ_ASSERT(dc == verified);
    uint64_t nonfinite = 0;
    lora_status cn = lora_reader_blob_count_nonfinite(r, i, &nonfinite, &err);
    FUZZ_ASSERT(cn == verified);
    if (verified == LORA_OK) {
        ref_decode(b.dtype, b.block, raw, b.numel, want);
        FUZZ_ASSERT(memcmp(dec, want, (size_t)b.numel * sizeof(float)) == 0);
        uint64_t count = 0;
        for (uint64_t k = 0; k < b.numel; k++) count += !isfinite(dec[k]);
        FUZZ_ASSERT(count == nonfinite);
    }
    free(raw);
    free(dec);
    free(want);
}

static void check_queries(const lora_reader *r, const lora_file_info *fi)
{
    for (uint32_t i = 0; i < fi->metadata_count; i++) {
        lora_meta m, found;
        FUZZ_ASSERT(lora_reader_meta(r, i, &m) == LORA_OK);
        FUZZ_ASSERT(m.key && strlen(m.key) >= 1);
        if (m.type == LORA_META_STRING) FUZZ_ASSERT(m.string && strlen(m.string) == m.string_length);
        FUZZ_ASSERT(lora_reader_meta_find(r, m.key, &found) == LORA_OK);
        FUZZ_ASSERT(found.key == m.key && found.type == m.type);
    }
    for (uint32_t i = 0; i < fi->module_count; i++) {
        lora_module m;
        uint32_t at = UINT32_MAX;
        FUZZ_ASSERT(lora_reader_module(r, i, &m) == LORA_OK);
        FUZZ_ASSERT(lora_reader_module_find(r, m.name, &at) == LORA_OK && at == i);
        FUZZ_ASSERT(m.blob_a < fi->blob_count && m.blob_b < fi->blob_count && m.rank >= 1);
        FUZZ_ASSERT(m.blob_magnitude == LORA_NO_BLOB || m.blob_magnitude < fi->blob_count);
        FUZZ_ASSERT(m.blob_bias == LORA_NO_BLOB || m.blob_bias < fi->blob_count);
        FUZZ_ASSERT(isfinite(m.alpha) && isfinite(m.scale));
    }
    for (uint32_t i = 0; i < fi->tensor_count; i++) {
        lora_tensor t;
        FUZZ_ASSERT(lora_reader_tensor(r, i, &t) == LORA_OK);
        FUZZ_ASSERT(t.name && t.blob < fi->blob_count);
    }
    lora_meta m;
    lora_module mod;
    lora_tensor t;
    lora_blob b;
    uint32_t at;
    FUZZ_ASSERT(lora_reader_meta(r, fi->metadata_count, &m) == LORA_E_INVALID_ARGUMENT);
    FUZZ_ASSERT(lora_reader_module(r, fi->module_count, &mod) == LORA_E_INVALID_ARGUMENT);
    FUZZ_ASSERT(lora_reader_tensor(r, fi->tensor_count, &t) == LORA_E_INVALID_ARGUMENT);
    FUZZ_ASSERT(lora_reader_blob(r, fi->blob_count, &b) == LORA_E_INVALID_ARGUMENT);
    FUZZ_ASSERT(lora_reader_module_find(r, "", &at) == LORA_E_NOT_FOUND);
    FUZZ_ASSERT(lora_reader_meta_find(r, "", &m) == LORA_E_NOT_FOUND);
}

/* Caps far below the input's claims: a reader that accepts under them
 * must accept under the defaults, and what it rejects under the defaults
 * it must reject under them. */
static void check_tight_limits(const uint8_t *file, size_t size, lora_status usual)
{
    lora_read_options o = LORA_READ_OPTIONS_INIT;
    o.limits.max_file_size = size > 256 ? size - 64 : size;
    o.limits.max_modules = 2;
    o.limits.max_tensors = 2;
    o.limits.max_blobs = 4;
    o.limits.max_metadata = 2;
    o.limits.max_name_length = 8;
    o.limits.max_rank = 2;
    o.limits.max_string_bytes = 32;
    o.limits.max_blob_raw_size = 256;
    lora_reader *r = NULL;
    lora_error err;
    lora_status st = lora_reader_open_buffer(file, size, &o, &r, &err);
    lora_reader_free(r);
    if (usual != LORA_OK) FUZZ_ASSERT(st != LORA_OK);
    else FUZZ_ASSERT(st == LORA_OK || st == LORA_E_LIMIT_EXCEEDED);
}

static void open_and_check(const uint8_t *file, size_t size)
{
    fuzz_alloc_state as = {0};
    as.justified = fuzz_justified_bytes(size);
    as.fail_above = (size_t)64 << 20;
    lora_read_options o = fuzz_options(&as, 0);
    lora_reader *r = NULL;
    lora_error err;
    lora_status st = lora_reader_open_buffer(file, size, &o, &r, &err);
    check_tight_limits(file, size, st);
    if (st != LORA_OK) {
        fuzz_check_error(st, &err);
        FUZZ_ASSERT(r == NULL);
        fuzz_alloc_check_empty(&as);
        return;
    }
    lora_file_info fi;
    lora_reader_file_info(r, &fi);
    FUZZ_ASSERT(fi.file_size == size && fi.data_offset <= size && fi.format_major == 1);
    check_queries(r, &fi);
    lora_status first_bad = LORA_OK;
    for (uint32_t i = 0; i < fi.blob_count; i++) {
        check_blob_data(r, i, file, size);
        lora_status s = lora_reader_verify_blob(r, i, NULL);
        if (first_bad == LORA_OK) first_bad = s;
    }
    lora_status all = lora_reader_verify(r, &err);
    FUZZ_ASSERT(all == first_bad);
    lora_reader_free(r);

    lora_read_options ov = fuzz_options(&as, LORA_READ_VERIFY_CHECKSUMS);
    st = lora_reader_open_buffer(file, size, &ov, &r, &err);
    FUZZ_ASSERT(st == all);
    lora_reader_free(r);
    fuzz_alloc_check_empty(&as);
}

/* Recompute every blob checksum whose range lies in the buffer, then the
 * header checksum. Returns 0 when the header is too broken to bother. */
static int fix_checksums(uint8_t *p, size_t size)
{
    lora_fmt_header h;
    if (lora_fmt_decode_header_frame(p, size, UINT64_MAX, &h, NULL) != LORA_OK) return 0;
    uint64_t end_of_tables = h.data_offset;
    for (uint64_t i = 0; i < h.blob_count; i++) {
        uint64_t rec = h.blobs_offset + i * LORA_FMT_BLOB_RECORD_SIZE;
        if (h.blobs_offset > end_of_tables || rec + LORA_FMT_BLOB_RECORD_SIZE > end_of_tables) break;
        uint64_t off = lora_fmt_rd64(p + rec + 48), stored = lora_fmt_rd64(p + rec + 56);
        if (off > size || stored > size - off) continue;
        lora_fmt_wr64(p + rec + 72, lora_xxh3(p + off, (size_t)stored));
    }
    lora_fmt_wr64(p + LORA_FMT_OFF_HEADER_CHECKSUM, lora_header_checksum(p, h.data_offset));
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    open_and_check(data, size);
    /* The copy ends where its allocation ends (ASan sees any overread) and
     * starts at an odd address, as a caller's buffer may: blob data is then
     * misaligned for every dtype. */
    uint8_t *block = malloc(size + 1);
    FUZZ_ASSERT(block != NULL);
    uint8_t *copy = block + 1;
    if (size) memcpy(copy, data, size);
    if (fix_checksums(copy, size) && memcmp(copy, data, size) != 0) open_and_check(copy, size);
    free(block);
    return 0;
}
