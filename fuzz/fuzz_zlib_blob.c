/*
 * fuzz_zlib_blob - the inflate path, differential against zlib itself.
 *
 * Input: one control byte, then the stored bytes of a zlib blob. The
 * harness builds a valid .lora around them (one tensor, one ZLIB blob,
 * checksums computed), with raw_size chosen by the control byte: the true
 * inflated length (as zlib's own inflate reports it here), that length off
 * by a few bytes, or the largest size the bomb guard allows. Then:
 *   - open must succeed, or fail with exactly BAD_SIZE (guard) or
 *     LIMIT_EXCEEDED (max_blob_raw_size);
 *   - verify, blob_read and decode must succeed exactly when zlib inflates
 *     the stream completely, to exactly raw_size bytes, with nothing after
 *     its end; otherwise they must fail with BAD_COMPRESSED_DATA;
 *   - on success blob_read returns zlib's bytes and decode_f32 equals the
 *     reference kernels on them.
 */
#define ZLIB_CONST
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include "support/fuzz_common.h"
#include "common/internal.h"
#include "kernels/kernels.h"

#define RAW_LIMIT ((uint64_t)1 << 20)
#define DATA_OFFSET 256u

typedef struct {
    int complete;     /* Z_STREAM_END with all input consumed */
    uint64_t length;  /* bytes produced (capped) */
    uint8_t *out;
} oracle;

/* zlib's verdict on the stream, producing at most cap bytes. */
static void run_oracle(const uint8_t *src, size_t n, uint64_t cap, oracle *o)
{
    memset(o, 0, sizeof *o);
    o->out = malloc((size_t)cap + 1);
    FUZZ_ASSERT(o->out != NULL);
    z_stream z;
    memset(&z, 0, sizeof z);
    FUZZ_ASSERT(inflateInit(&z) == Z_OK);
    z.next_in = src;
    z.avail_in = (uInt)n;
    z.next_out = o->out;
    z.avail_out = (uInt)cap;
    int rc;
    do rc = inflate(&z, Z_NO_FLUSH);
    while (rc == Z_OK && z.avail_out > 0 && z.avail_in > 0);
    o->length = cap - z.avail_out;
    o->complete = rc == Z_STREAM_END && z.avail_in == 0;
    inflateEnd(&z);
}

/* Spec block facts for a (dtype, NF4 block_shift) pair. */
static void block_facts(uint32_t dtype, uint32_t shift, uint64_t *elems, uint64_t *bytes)
{
    static const uint32_t be[5] = {1, 1, 1, 32, 32}, bb[5] = {4, 2, 2, 34, 18};
    if (dtype == LORA_DTYPE_NF4) {
        *elems = (uint64_t)1 << shift;
        *bytes = 4 + *elems / 2;
    } else {
        *elems = be[dtype];
        *bytes = bb[dtype];
    }
}

/* The first dtype, from `start` on, whose block size divides raw. */
static int pick_dtype(uint64_t raw, uint32_t start, uint32_t shift, lora_dtype *d, uint64_t *numel)
{
    for (uint32_t k = 0; k < 6; k++) {
        uint32_t t = (start + k) % 6;
        uint64_t be, bb;
        block_facts(t, shift, &be, &bb);
        if (raw > 0 && raw % bb == 0) {
            *d = (lora_dtype)t;
            *numel = raw / bb * be;
            return 1;
        }
    }
    return 0;
}

static uint8_t *build_file(const uint8_t *stored, size_t n, lora_dtype dtype, uint32_t shift, uint64_t numel,
                           uint64_t raw, size_t *file_size)
{
    size_t size = DATA_OFFSET + n;
    uint8_t *f = calloc(1, size);
    FUZZ_ASSERT(f != NULL);
    lora_fmt_header h;
    memset(&h, 0, sizeof h);
    h.version_major = 1;
    h.header_size = LORA_FMT_HEADER_SIZE;
    h.file_size = size;
    h.data_offset = DATA_OFFSET;
    h.meta_offset = h.modules_offset = h.tensors_offset = LORA_FMT_HEADER_SIZE;
    h.tensor_count = 1;
    h.blob_count = 1;
    h.blobs_offset = h.tensors_offset + LORA_FMT_TENSOR_RECORD_SIZE;
    h.strings_offset = h.blobs_offset + LORA_FMT_BLOB_RECORD_SIZE;
    h.strings_size = 1;
    FUZZ_ASSERT(lora_fmt_encode_header(&h, f, size) == LORA_OK);
    lora_fmt_tensor t = {{0, 1}, 0};
    FUZZ_ASSERT(lora_fmt_encode_tensor(&t, f + h.tensors_offset, LORA_FMT_TENSOR_RECORD_SIZE) == LORA_OK);
    lora_fmt_blob b;
    memset(&b, 0, sizeof b);
    b.dtype = (uint8_t)dtype;
    b.compression = LORA_FMT_COMPRESSION_ZLIB;
    b.ndim = 1;
    b.block_shift = dtype == LORA_DTYPE_NF4 ? (uint8_t)shift : 0;
    b.shape[0] = numel;
    b.offset = DATA_OFFSET;
    b.stored_size = n;
    b.raw_size = raw;
    b.checksum = lora_xxh3(stored, n);
    FUZZ_ASSERT(lora_fmt_encode_blob(&b, f + h.blobs_offset, LORA_FMT_BLOB_RECORD_SIZE) == LORA_OK);
    f[h.strings_offset] = 't';
    memcpy(f + DATA_OFFSET, stored, n);
    lora_fmt_wr64(f + LORA_FMT_OFF_HEADER_CHECKSUM, lora_header_checksum(f, DATA_OFFSET));
    *file_size = size;
    return f;
}

static void ref_decode(lora_dtype d, uint32_t shift, const uint8_t *raw, uint64_t numel, float *out)
{
    const lora_kernels *k = &lora_kernels_ref;
    size_t n = (size_t)numel;
    uint16_t *h;
    switch (d) {
    case LORA_DTYPE_F32: memcpy(out, raw, n * 4); return;
    case LORA_DTYPE_F16:
    case LORA_DTYPE_BF16:
        h = malloc(n * 2);
        FUZZ_ASSERT(h != NULL);
        memcpy(h, raw, n * 2);
        (d == LORA_DTYPE_F16 ? k->f16_to_f32 : k->bf16_to_f32)(h, out, n);
        free(h);
        return;
    case LORA_DTYPE_Q8_0: k->q8_0_to_f32(raw, out, n / 32); return;
    case LORA_DTYPE_Q4_0: k->q4_0_to_f32(raw, out, n / 32); return;
    case LORA_DTYPE_NF4: k->nf4_to_f32(raw, out, n >> shift, (size_t)1 << shift); return;
    }
}

static void check_blob(const lora_reader *r, const oracle *o, lora_dtype d, uint32_t shift, uint64_t numel,
                       uint64_t raw)
{
    int good = o->complete && o->length == raw;
    lora_status want = good ? LORA_OK : LORA_E_BAD_COMPRESSED_DATA;
    lora_error err;
    FUZZ_ASSERT(lora_reader_verify_blob(r, 0, &err) == want);
    uint8_t *buf = malloc((size_t)raw);
    float *dec = malloc((size_t)numel * sizeof(float));
    float *ref = malloc((size_t)numel * sizeof(float));
    FUZZ_ASSERT(buf && dec && ref);
    FUZZ_ASSERT(lora_reader_blob_read(r, 0, buf, (size_t)raw, &err) == want);
    FUZZ_ASSERT(lora_reader_blob_decode_f32(r, 0, dec, (size_t)numel, &err) == want);
    if (good) {
        FUZZ_ASSERT(memcmp(buf, o->out, (size_t)raw) == 0);
        ref_decode(d, shift, o->out, numel, ref);
        FUZZ_ASSERT(memcmp(dec, ref, (size_t)numel * sizeof(float)) == 0);
    }
    free(buf);
    free(dec);
    free(ref);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2) return 0;
    uint8_t control = data[0];
    const uint8_t *stored = data + 1;
    size_t n = size - 1;
    uint64_t guard = (uint64_t)n * LORA_FMT_ZLIB_MAX_RATIO + LORA_FMT_ZLIB_SLACK;
    uint64_t cap = guard < RAW_LIMIT ? guard : RAW_LIMIT;
    oracle o;
    run_oracle(stored, n, cap + 1, &o);

    uint64_t raw;
    switch (control & 3) {
    case 2: { /* off by -4..+3, never below 1 */
        uint64_t k = (control >> 2) & 7;
        raw = o.length + k >= 4 ? o.length + k - 4 : k + 1;
        break;
    }
    case 3: raw = guard - ((control >> 2) & 7); break;         /* the guard's edge */
    default: raw = o.length; break;
    }
    /* The NF4 block (32..4096) follows the stream length: no control bit
     * is left, and every length picks one. */
    uint32_t shift = LORA_FMT_NF4_BLOCK_SHIFT_MIN + (uint32_t)(n % 8);
    lora_dtype d;
    uint64_t numel;
    if (!pick_dtype(raw, control >> 5, shift, &d, &numel)) {
        raw = raw < 2 ? 2 : raw + (raw & 1); /* no dtype fits: round to F16 */
        d = LORA_DTYPE_F16;
        numel = raw / 2;
    }
    size_t file_size;
    uint8_t *file = build_file(stored, n, d, shift, numel, raw, &file_size);

    fuzz_alloc_state as = {0};
    as.justified = fuzz_justified_bytes(file_size);
    lora_read_options opts = LORA_READ_OPTIONS_INIT;
    opts.limits.max_blob_raw_size = RAW_LIMIT;
    opts.allocator = fuzz_alloc_hook(&as);
    lora_reader *r = NULL;
    lora_error err;
    lora_status st = lora_reader_open_buffer(file, file_size, &opts, &r, &err);
    if (raw > guard) FUZZ_ASSERT(st == LORA_E_BAD_SIZE);
    else if (raw > RAW_LIMIT) FUZZ_ASSERT(st == LORA_E_LIMIT_EXCEEDED);
    else FUZZ_ASSERT(st == LORA_OK);
    if (st == LORA_OK) check_blob(r, &o, d, shift, numel, raw);
    lora_reader_free(r);
    fuzz_alloc_check_empty(&as);
    free(file);
    free(o.out);
    return 0;
}
