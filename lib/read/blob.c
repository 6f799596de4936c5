/* Blob data: views, checksum verification, reading and decoding to f32.
 * Every call leaves the reader untouched, so a reader can be shared by
 * threads for these. Byte order: F32 data is copied as is, which is right
 * on the little-endian hosts liblora supports (x86-64, aarch64); a
 * big-endian host would need a byte swap here and is out of scope. */
#include <stdio.h>
#include <string.h>
#include "../kernels/kernels.h"
#include "reader.h"

static lora_status bad_index(const lora_reader *r, uint32_t index, lora_error *err)
{
    return lora_error_set(err, LORA_E_INVALID_ARGUMENT, LORA_NO_OFFSET, "blob index %u out of range (%u blobs)", index,
                          r->h.blob_count);
}

static lora_status check_sum(const lora_reader *r, uint32_t i, lora_error *err)
{
    const lora_fmt_blob *b = &r->blobs[i].f;
    /* stored_size lies within the mapped file, so it fits size_t. */
    uint64_t sum = lora_xxh3(r->data + b->offset, (size_t)b->stored_size);
    if (sum == b->checksum) return LORA_OK;
    char who[192];
    lora_read_describe_owner(r, i, who, sizeof who);
    return lora_error_set(err, LORA_E_BLOB_CHECKSUM, b->offset,
                          "%s: checksum 0x%016llx of %llu bytes at offset %llu does not match the stored 0x%016llx",
                          who, (unsigned long long)sum, (unsigned long long)b->stored_size,
                          (unsigned long long)b->offset, (unsigned long long)b->checksum);
}

static lora_status inflate_blob(const lora_reader *r, uint32_t i, uint8_t *dst, lora_error *err)
{
    const lora_fmt_blob *b = &r->blobs[i].f;
    char why[128], who[192];
    lora_status st = lora_read_inflate(r->alloc, r->data + b->offset, b->stored_size, dst, b->raw_size, why, sizeof why);
    if (st == LORA_OK) return LORA_OK;
    lora_read_describe_owner(r, i, who, sizeof who);
    return lora_error_set(err, st, st == LORA_E_BAD_COMPRESSED_DATA ? b->offset : LORA_NO_OFFSET, "%s: %s", who, why);
}

lora_status lora_reader_blob_view(const lora_reader *r, uint32_t index, const void **data, size_t *size)
{
    if (!r || !data || !size || index >= r->h.blob_count) return LORA_E_INVALID_ARGUMENT;
    const lora_fmt_blob *b = &r->blobs[index].f;
    if (b->compression != LORA_FMT_COMPRESSION_NONE) return LORA_E_NOT_VIEWABLE;
    *data = r->data + b->offset;
    *size = (size_t)b->stored_size;
    return LORA_OK;
}

lora_status lora_reader_verify_blob(const lora_reader *r, uint32_t index, lora_error *err)
{
    lora_error_clear(err);
    if (!r) return lora_error_set(err, LORA_E_INVALID_ARGUMENT, LORA_NO_OFFSET, "NULL reader");
    if (index >= r->h.blob_count) return bad_index(r, index, err);
    LORA_FORWARD_IF_ERROR(check_sum(r, index, err));
    if (r->blobs[index].f.compression == LORA_FMT_COMPRESSION_ZLIB) return inflate_blob(r, index, NULL, err);
    return LORA_OK;
}

lora_status lora_reader_verify(const lora_reader *r, lora_error *err)
{
    lora_error_clear(err);
    if (!r) return lora_error_set(err, LORA_E_INVALID_ARGUMENT, LORA_NO_OFFSET, "NULL reader");
    for (uint32_t i = 0; i < r->h.blob_count; i++) LORA_FORWARD_IF_ERROR(lora_reader_verify_blob(r, i, err));
    return LORA_OK;
}

lora_status lora_reader_blob_read(const lora_reader *r, uint32_t index, void *dst, size_t dst_capacity,
                                  lora_error *err)
{
    lora_error_clear(err);
    if (!r || !dst) return lora_error_set(err, LORA_E_INVALID_ARGUMENT, LORA_NO_OFFSET, "NULL argument");
    if (index >= r->h.blob_count) return bad_index(r, index, err);
    const lora_fmt_blob *b = &r->blobs[index].f;
    if (dst_capacity < b->raw_size)
        return lora_error_set(err, LORA_E_BUFFER_TOO_SMALL, LORA_NO_OFFSET, "blob %u needs %llu bytes, buffer has %zu",
                              index, (unsigned long long)b->raw_size, dst_capacity);
    LORA_FORWARD_IF_ERROR(check_sum(r, index, err));
    if (b->compression == LORA_FMT_COMPRESSION_ZLIB) return inflate_blob(r, index, dst, err);
    memcpy(dst, r->data + b->offset, (size_t)b->stored_size);
    return LORA_OK;
}

/* ---- decoding -------------------------------------------------------------- */

/* Raw (decompressed) bytes of a verified blob: the mapping itself when
 * uncompressed, else a buffer of raw_size (bounded by max_blob_raw_size
 * and by the zlib ratio guard) that the caller frees. */
static lora_status raw_bytes(const lora_reader *r, uint32_t i, const uint8_t **raw, uint8_t **owned, lora_error *err)
{
    const lora_fmt_blob *b = &r->blobs[i].f;
    *owned = NULL;
    LORA_FORWARD_IF_ERROR(check_sum(r, i, err));
    if (b->compression == LORA_FMT_COMPRESSION_NONE) {
        *raw = r->data + b->offset;
        return LORA_OK;
    }
    if (b->raw_size > SIZE_MAX)
        return lora_error_set(err, LORA_E_OUT_OF_MEMORY, LORA_NO_OFFSET, "blob %u: raw size %llu cannot be allocated",
                              i, (unsigned long long)b->raw_size);
    uint8_t *buf = lora_mem_alloc(&r->alloc, (size_t)b->raw_size);
    if (!buf)
        return lora_error_set(err, LORA_E_OUT_OF_MEMORY, LORA_NO_OFFSET, "blob %u: cannot allocate %llu bytes", i,
                              (unsigned long long)b->raw_size);
    lora_status st = inflate_blob(r, i, buf, err);
    if (st != LORA_OK) {
        lora_mem_free(&r->alloc, buf);
        return st;
    }
    *raw = *owned = buf;
    return LORA_OK;
}

/* 16-bit floats through a kernel that wants aligned uint16_t: a caller's
 * buffer may start at an odd address, so such data bounces via the stack. */
static void decode_half(void (*fn)(const uint16_t *, float *, size_t), const uint8_t *src, float *dst, size_t n)
{
    if ((uintptr_t)src % _Alignof(uint16_t) == 0) {
        fn((const uint16_t *)(const void *)src, dst, n);
        return;
    }
    uint16_t tmp[1024];
    for (size_t done = 0; done < n;) {
        size_t k = n - done < 1024 ? n - done : 1024;
        memcpy(tmp, src + 2 * done, 2 * k);
        fn(tmp, dst + done, k);
        done += k;
    }
}

/* Decode elements [first, first + n) of a blob; both are block multiples. */
static void decode_range(const lora_kernels *k, const lora_fmt_blob *b, const uint8_t *raw, uint64_t first, float *dst,
                         size_t n)
{
    uint32_t be = lora_fmt_blob_block_elems(b->dtype, b->block_shift);
    uint32_t bb = lora_fmt_blob_block_bytes(b->dtype, b->block_shift);
    const uint8_t *src = raw + first / be * bb;
    switch (b->dtype) {
    case LORA_FMT_DTYPE_F32: memcpy(dst, src, n * sizeof(float)); break; /* LE host, any alignment */
    case LORA_FMT_DTYPE_F16: decode_half(k->f16_to_f32, src, dst, n); break;
    case LORA_FMT_DTYPE_BF16: decode_half(k->bf16_to_f32, src, dst, n); break;
    case LORA_FMT_DTYPE_Q8_0: k->q8_0_to_f32(src, dst, n / be); break;
    case LORA_FMT_DTYPE_Q4_0: k->q4_0_to_f32(src, dst, n / be); break;
    case LORA_FMT_DTYPE_NF4: k->nf4_to_f32(src, dst, n / be, be); break;
    default: break; /* dtypes were validated at open */
    }
}

lora_status lora_reader_blob_decode_f32(const lora_reader *r, uint32_t index, float *dst, size_t dst_count,
                                        lora_error *err)
{
    lora_error_clear(err);
    if (!r || !dst) return lora_error_set(err, LORA_E_INVALID_ARGUMENT, LORA_NO_OFFSET, "NULL argument");
    if (index >= r->h.blob_count) return bad_index(r, index, err);
    const lora_rblob *b = &r->blobs[index];
    if (dst_count < b->numel)
        return lora_error_set(err, LORA_E_BUFFER_TOO_SMALL, LORA_NO_OFFSET,
                              "blob %u has %llu elements, buffer holds %zu", index, (unsigned long long)b->numel,
                              dst_count);
    const uint8_t *raw;
    uint8_t *owned;
    LORA_FORWARD_IF_ERROR(raw_bytes(r, index, &raw, &owned, err));
    decode_range(lora_kernels_get(), &b->f, raw, 0, dst, (size_t)b->numel);
    lora_mem_free(&r->alloc, owned);
    return LORA_OK;
}

lora_status lora_reader_blob_count_nonfinite(const lora_reader *r, uint32_t index, uint64_t *count, lora_error *err)
{
    lora_error_clear(err);
    if (!r || !count) return lora_error_set(err, LORA_E_INVALID_ARGUMENT, LORA_NO_OFFSET, "NULL argument");
    if (index >= r->h.blob_count) return bad_index(r, index, err);
    const lora_rblob *b = &r->blobs[index];
    const uint8_t *raw;
    uint8_t *owned;
    LORA_FORWARD_IF_ERROR(raw_bytes(r, index, &raw, &owned, err));
    const lora_kernels *k = lora_kernels_get();
    /* Decoding in chunks keeps memory at one stack buffer, whatever the
     * blob size; 4096 is a whole number of every dtype's blocks (the
     * largest NF4 block included). */
    float chunk[4096];
    uint64_t total = 0;
    for (uint64_t first = 0; first < b->numel;) {
        size_t n = b->numel - first < 4096 ? (size_t)(b->numel - first) : 4096;
        decode_range(k, &b->f, raw, first, chunk, n);
        total += k->count_nonfinite_f32(chunk, n);
        first += n;
    }
    lora_mem_free(&r->alloc, owned);
    *count = total;
    return LORA_OK;
}
