/* Record decoding: every check that needs nothing but the record's own
 * bytes. Cross-record rules (string table bounds, references, unique names,
 * offsets tiling the file) are the reader's. */
#include <math.h>
#include <string.h>
#include "lora_format.h"


static float rd_f32(const uint8_t *p)
{
    uint32_t u = lora_fmt_rd32(p);
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static uint32_t f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

/* ---- metadata ------------------------------------------------------------ */

lora_status lora_fmt_decode_meta(const uint8_t *p, size_t len, uint64_t base, lora_fmt_meta *m,
                                 lora_fmt_fault *fault)
{
    if (!p || !m) return lora_fmt_fail(fault, LORA_E_INVALID_ARGUMENT, base, "meta");
    if (len < LORA_FMT_META_RECORD_SIZE) return lora_fmt_fail(fault, LORA_E_TRUNCATED, base, "meta");
    memset(m, 0, sizeof *m);
    m->key.offset = lora_fmt_rd32(p + 0);
    m->key.length = lora_fmt_rd32(p + 4);
    m->type = lora_fmt_rd32(p + 8);
    m->bits = lora_fmt_rd64(p + 16);
    if (lora_fmt_rd32(p + 12) != 0) return lora_fmt_fail(fault, LORA_E_RESERVED_NONZERO, base + 12, "meta.reserved");
    if (m->type < LORA_FMT_META_STRING || m->type > LORA_FMT_META_TYPE_MAX_)
        return lora_fmt_fail(fault, LORA_E_BAD_ENUM, base + 8, "meta.type");
    if (m->type == LORA_FMT_META_STRING) {
        m->str.offset = (uint32_t)m->bits;
        m->str.length = (uint32_t)(m->bits >> 32);
    }
    return LORA_OK;
}

/* ---- tensors ------------------------------------------------------------- */

lora_status lora_fmt_decode_tensor(const uint8_t *p, size_t len, uint64_t base, lora_fmt_tensor *t,
                                   lora_fmt_fault *fault)
{
    if (!p || !t) return lora_fmt_fail(fault, LORA_E_INVALID_ARGUMENT, base, "tensor");
    if (len < LORA_FMT_TENSOR_RECORD_SIZE) return lora_fmt_fail(fault, LORA_E_TRUNCATED, base, "tensor");
    memset(t, 0, sizeof *t);
    t->name.offset = lora_fmt_rd32(p + 0);
    t->name.length = lora_fmt_rd32(p + 4);
    t->blob = lora_fmt_rd32(p + 8);
    if (lora_fmt_rd32(p + 12) != 0) return lora_fmt_fail(fault, LORA_E_RESERVED_NONZERO, base + 12, "tensor.reserved");
    return LORA_OK;
}

/* ---- modules ------------------------------------------------------------- */

lora_status lora_fmt_read_module(const uint8_t *p, size_t len, uint64_t base, lora_fmt_module *m,
                                 lora_fmt_fault *fault)
{
    if (!p || !m) return lora_fmt_fail(fault, LORA_E_INVALID_ARGUMENT, base, "module");
    if (len < LORA_FMT_MODULE_RECORD_SIZE) return lora_fmt_fail(fault, LORA_E_TRUNCATED, base, "module");
    memset(m, 0, sizeof *m);
    m->name.offset = lora_fmt_rd32(p + 0);
    m->name.length = lora_fmt_rd32(p + 4);
    m->kind = p[8];
    m->scaling = p[9];
    m->base_ndim = p[10];
    m->flags = lora_fmt_rd32(p + 12);
    m->rank = lora_fmt_rd32(p + 16);
    m->alpha = rd_f32(p + 20);
    m->scale = rd_f32(p + 24);
    for (uint32_t i = 0; i < LORA_FMT_MAX_DIMS; i++) m->base_shape[i] = lora_fmt_rd64(p + 32 + 8 * i);
    m->blob_a = lora_fmt_rd32(p + 72);
    m->blob_b = lora_fmt_rd32(p + 76);
    m->blob_magnitude = lora_fmt_rd32(p + 80);
    m->blob_bias = lora_fmt_rd32(p + 84);
    if (p[11] != 0) return lora_fmt_fail(fault, LORA_E_RESERVED_NONZERO, base + 11, "module.reserved");
    if (lora_fmt_rd32(p + 28) != 0) return lora_fmt_fail(fault, LORA_E_RESERVED_NONZERO, base + 28, "module.reserved");
    if (lora_fmt_rd64(p + 88) != 0) return lora_fmt_fail(fault, LORA_E_RESERVED_NONZERO, base + 88, "module.reserved");
    if (m->kind >= LORA_FMT_KIND_COUNT_) return lora_fmt_fail(fault, LORA_E_BAD_ENUM, base + 8, "module.kind");
    if (m->scaling >= LORA_FMT_SCALING_COUNT_) return lora_fmt_fail(fault, LORA_E_BAD_ENUM, base + 9, "module.scaling");
    return LORA_OK;
}

static uint32_t kind_base_ndim(uint32_t kind)
{
    switch (kind) {
    case LORA_FMT_KIND_LINEAR:
    case LORA_FMT_KIND_EMBEDDING: return 2;
    case LORA_FMT_KIND_CONV1D: return 3;
    case LORA_FMT_KIND_CONV2D: return 4;
    case LORA_FMT_KIND_CONV3D: return 5;
    default: return 0;
    }
}

static lora_status check_scale(const lora_fmt_module *m, uint64_t base, lora_fmt_fault *fault)
{
    if (!isfinite(m->scale)) return lora_fmt_fail(fault, LORA_E_BAD_SCALE, base + 24, "module.scale");
    float want;
    /* The rule is stated in binary32 so that every reader and writer agrees
     * bit for bit; C11 rounds to float on assignment even where float
     * arithmetic is evaluated wider. */
    switch (m->scaling) {
    case LORA_FMT_SCALING_ALPHA_OVER_RANK: want = m->alpha / (float)m->rank; break;
    case LORA_FMT_SCALING_ALPHA_OVER_SQRT_RANK: want = m->alpha / sqrtf((float)m->rank); break;
    case LORA_FMT_SCALING_EXPLICIT: return LORA_OK;
    default: return lora_fmt_fail(fault, LORA_E_BAD_ENUM, base + 9, "module.scaling");
    }
    if (f32_bits(want) != f32_bits(m->scale)) return lora_fmt_fail(fault, LORA_E_BAD_SCALE, base + 24, "module.scale");
    return LORA_OK;
}

lora_status lora_fmt_check_module(const lora_fmt_module *m, uint32_t max_rank, uint64_t base,
                                  lora_fmt_fault *fault)
{
    if (!m) return lora_fmt_fail(fault, LORA_E_INVALID_ARGUMENT, base, "module");
    if (m->rank == 0) return lora_fmt_fail(fault, LORA_E_BAD_RANK, base + 16, "module.rank");
    if (m->rank > max_rank) return lora_fmt_fail(fault, LORA_E_LIMIT_EXCEEDED, base + 16, "module.rank");
    if (!isfinite(m->alpha)) return lora_fmt_fail(fault, LORA_E_BAD_ALPHA, base + 20, "module.alpha");
    lora_status st = check_scale(m, base, fault);
    if (st != LORA_OK) return st;
    if (m->flags & ~(uint32_t)LORA_FMT_MODULE_FLAGS_KNOWN)
        return lora_fmt_fail(fault, LORA_E_RESERVED_NONZERO, base + 12, "module.flags");
    /* Only a dense layer can have its weight stored transposed. */
    if ((m->flags & LORA_FMT_MODULE_FAN_IN_FAN_OUT) && m->kind != LORA_FMT_KIND_LINEAR)
        return lora_fmt_fail(fault, LORA_E_BAD_ENUM, base + 12, "module.flags");
    uint32_t want = kind_base_ndim(m->kind);
    if (want == 0) return lora_fmt_fail(fault, LORA_E_BAD_ENUM, base + 8, "module.kind");
    if (m->base_ndim != want) return lora_fmt_fail(fault, LORA_E_BAD_SHAPE, base + 10, "module.base_ndim");
    for (uint32_t i = 0; i < LORA_FMT_MAX_DIMS; i++) {
        int used = i < m->base_ndim;
        if (used ? m->base_shape[i] == 0 : m->base_shape[i] != 0)
            return lora_fmt_fail(fault, LORA_E_BAD_SHAPE, base + 32 + 8 * i, "module.base_shape");
    }
    return LORA_OK;
}

lora_status lora_fmt_decode_module(const uint8_t *p, size_t len, uint64_t base, lora_fmt_module *m,
                                   lora_fmt_fault *fault)
{
    lora_status st = lora_fmt_read_module(p, len, base, m, fault);
    if (st != LORA_OK) return st;
    return lora_fmt_check_module(m, UINT32_MAX, base, fault);
}

/* ---- blobs --------------------------------------------------------------- */

lora_status lora_fmt_read_blob(const uint8_t *p, size_t len, uint64_t base, lora_fmt_blob *b,
                               lora_fmt_fault *fault)
{
    if (!p || !b) return lora_fmt_fail(fault, LORA_E_INVALID_ARGUMENT, base, "blob");
    if (len < LORA_FMT_BLOB_RECORD_SIZE) return lora_fmt_fail(fault, LORA_E_TRUNCATED, base, "blob");
    memset(b, 0, sizeof *b);
    b->dtype = p[0];
    b->compression = p[1];
    b->ndim = p[2];
    b->block_shift = p[3];
    for (uint32_t i = 0; i < LORA_FMT_MAX_DIMS; i++) b->shape[i] = lora_fmt_rd64(p + 8 + 8 * i);
    b->offset = lora_fmt_rd64(p + 48);
    b->stored_size = lora_fmt_rd64(p + 56);
    b->raw_size = lora_fmt_rd64(p + 64);
    b->checksum = lora_fmt_rd64(p + 72);
    if (lora_fmt_rd32(p + 4) != 0) return lora_fmt_fail(fault, LORA_E_RESERVED_NONZERO, base + 4, "blob.reserved");
    if (!lora_fmt_dtype_valid(b->dtype)) return lora_fmt_fail(fault, LORA_E_UNSUPPORTED_DTYPE, base + 0, "blob.dtype");
    if (b->compression >= LORA_FMT_COMPRESSION_COUNT_)
        return lora_fmt_fail(fault, LORA_E_UNSUPPORTED_COMPRESSION, base + 1, "blob.compression");
    /* Byte 3 means something only for NF4 (its block size, checked with the
     * shape in step 10); for every other dtype it is a reserved byte. It
     * needs the dtype, hence after the enumerations. */
    if (b->dtype != LORA_FMT_DTYPE_NF4 && b->block_shift != 0)
        return lora_fmt_fail(fault, LORA_E_RESERVED_NONZERO, base + 3, "blob.block_shift");
    return LORA_OK;
}

static lora_status check_blob_shape(const lora_fmt_blob *b, uint64_t base, uint64_t *numel, lora_fmt_fault *fault)
{
    if (b->ndim == 0 || b->ndim > LORA_FMT_MAX_DIMS) return lora_fmt_fail(fault, LORA_E_BAD_SHAPE, base + 2, "blob.ndim");
    for (uint32_t i = 0; i < LORA_FMT_MAX_DIMS; i++) {
        int used = i < b->ndim;
        if (used ? b->shape[i] == 0 : b->shape[i] != 0)
            return lora_fmt_fail(fault, LORA_E_BAD_SHAPE, base + 8 + 8 * i, "blob.shape");
    }
    if (lora_fmt_shape_numel(b->ndim, b->shape, numel) != LORA_OK)
        return lora_fmt_fail(fault, LORA_E_BAD_SHAPE, base + 8, "blob.shape");
    return LORA_OK;
}

lora_status lora_fmt_check_blob(const lora_fmt_blob *b, uint64_t base, lora_fmt_fault *fault)
{
    if (!b) return lora_fmt_fail(fault, LORA_E_INVALID_ARGUMENT, base, "blob");
    uint64_t numel, bytes;
    lora_status st = check_blob_shape(b, base, &numel, fault);
    if (st != LORA_OK) return st;
    /* An NF4 block outside 32..4096 is a shape error like a partial block:
     * the elements cannot be split into blocks the format knows. */
    if (!lora_fmt_block_shift_valid(b->dtype, b->block_shift) && lora_fmt_dtype_valid(b->dtype))
        return lora_fmt_fail(fault, LORA_E_BAD_SHAPE, base + 3, "blob.block_shift");
    st = lora_fmt_blob_raw_size(b->dtype, b->block_shift, numel, &bytes);
    if (st == LORA_E_BAD_SHAPE) return lora_fmt_fail(fault, st, base + 8, "blob.shape");
    if (st == LORA_E_UNSUPPORTED_DTYPE) return lora_fmt_fail(fault, st, base + 0, "blob.dtype");
    if (st != LORA_OK || b->raw_size != bytes) return lora_fmt_fail(fault, LORA_E_BAD_SIZE, base + 64, "blob.raw_size");
    switch (b->compression) {
    case LORA_FMT_COMPRESSION_NONE:
        if (b->stored_size != b->raw_size) return lora_fmt_fail(fault, LORA_E_BAD_SIZE, base + 56, "blob.stored_size");
        return LORA_OK;
    case LORA_FMT_COMPRESSION_ZLIB: {
        if (b->stored_size == 0) return lora_fmt_fail(fault, LORA_E_BAD_SIZE, base + 56, "blob.stored_size");
        /* Without this a few stored bytes could demand gigabytes of output
         * buffer from a reader that trusts raw_size. */
        uint64_t bound;
        if (!lora_fmt_mul_overflow(b->stored_size, LORA_FMT_ZLIB_MAX_RATIO, &bound) &&
            !lora_fmt_add_overflow(bound, LORA_FMT_ZLIB_SLACK, &bound) && b->raw_size > bound)
            return lora_fmt_fail(fault, LORA_E_BAD_SIZE, base + 64, "blob.raw_size");
        return LORA_OK;
    }
    default: return lora_fmt_fail(fault, LORA_E_UNSUPPORTED_COMPRESSION, base + 1, "blob.compression");
    }
}

lora_status lora_fmt_decode_blob(const uint8_t *p, size_t len, uint64_t base, lora_fmt_blob *b,
                                 lora_fmt_fault *fault)
{
    lora_status st = lora_fmt_read_blob(p, len, base, b, fault);
    if (st != LORA_OK) return st;
    return lora_fmt_check_blob(b, base, fault);
}
