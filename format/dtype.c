/* Dtype facts and the size arithmetic that depends on them. */
#include "lora_format.h"

typedef struct {
    uint32_t block_elems;
    uint32_t block_bytes;
    const char *name;
} dtype_facts;

/* Indexed by lora_fmt_dtype; the numbers are pinned by the spec. */
static const dtype_facts dtype_table[LORA_FMT_DTYPE_COUNT_] = {
    [LORA_FMT_DTYPE_F32] = {1, 4, "F32"},
    [LORA_FMT_DTYPE_F16] = {1, 2, "F16"},
    [LORA_FMT_DTYPE_BF16] = {1, 2, "BF16"},
    [LORA_FMT_DTYPE_Q8_0] = {LORA_FMT_Q8_0_BLOCK, LORA_FMT_Q8_0_BYTES, "Q8_0"},
    [LORA_FMT_DTYPE_Q4_0] = {LORA_FMT_Q4_0_BLOCK, LORA_FMT_Q4_0_BYTES, "Q4_0"},
    [LORA_FMT_DTYPE_NF4] = {LORA_FMT_NF4_BLOCK, LORA_FMT_NF4_BYTES, "NF4"},
};

int lora_fmt_dtype_valid(uint32_t dtype) { return dtype < LORA_FMT_DTYPE_COUNT_; }

uint32_t lora_fmt_dtype_block_elems(uint32_t dtype)
{
    return lora_fmt_dtype_valid(dtype) ? dtype_table[dtype].block_elems : 0;
}

uint32_t lora_fmt_dtype_block_bytes(uint32_t dtype)
{
    return lora_fmt_dtype_valid(dtype) ? dtype_table[dtype].block_bytes : 0;
}

const char *lora_fmt_dtype_name(uint32_t dtype)
{
    return lora_fmt_dtype_valid(dtype) ? dtype_table[dtype].name : NULL;
}

lora_status lora_fmt_dtype_raw_size(uint32_t dtype, uint64_t numel, uint64_t *bytes)
{
    if (!bytes) return LORA_E_INVALID_ARGUMENT;
    if (!lora_fmt_dtype_valid(dtype)) return LORA_E_UNSUPPORTED_DTYPE;
    const dtype_facts *f = &dtype_table[dtype];
    /* Blocks never straddle the tensor end, so a partial block is a shape
     * error, not a size error. */
    if (numel % f->block_elems != 0) return LORA_E_BAD_SHAPE;
    /* A byte count that does not fit u64 cannot equal any stored raw_size. */
    if (lora_fmt_mul_overflow(numel / f->block_elems, f->block_bytes, bytes)) return LORA_E_BAD_SIZE;
    return LORA_OK;
}

int lora_fmt_block_shift_valid(uint32_t dtype, uint32_t block_shift)
{
    if (!lora_fmt_dtype_valid(dtype)) return 0;
    if (dtype != LORA_FMT_DTYPE_NF4) return block_shift == 0;
    return block_shift >= LORA_FMT_NF4_BLOCK_SHIFT_MIN && block_shift <= LORA_FMT_NF4_BLOCK_SHIFT_MAX;
}

uint32_t lora_fmt_blob_block_elems(uint32_t dtype, uint32_t block_shift)
{
    if (!lora_fmt_block_shift_valid(dtype, block_shift)) return 0;
    return dtype == LORA_FMT_DTYPE_NF4 ? 1u << block_shift : dtype_table[dtype].block_elems;
}

uint32_t lora_fmt_blob_block_bytes(uint32_t dtype, uint32_t block_shift)
{
    if (!lora_fmt_block_shift_valid(dtype, block_shift)) return 0;
    /* NF4: one f32 absmax and two 4-bit indices per byte. */
    return dtype == LORA_FMT_DTYPE_NF4 ? 4u + (1u << block_shift) / 2u : dtype_table[dtype].block_bytes;
}

lora_status lora_fmt_blob_raw_size(uint32_t dtype, uint32_t block_shift, uint64_t numel, uint64_t *bytes)
{
    if (!bytes) return LORA_E_INVALID_ARGUMENT;
    if (!lora_fmt_dtype_valid(dtype)) return LORA_E_UNSUPPORTED_DTYPE;
    uint32_t be = lora_fmt_blob_block_elems(dtype, block_shift), bb = lora_fmt_blob_block_bytes(dtype, block_shift);
    if (be == 0 || numel % be != 0) return LORA_E_BAD_SHAPE;
    if (lora_fmt_mul_overflow(numel / be, bb, bytes)) return LORA_E_BAD_SIZE;
    return LORA_OK;
}

lora_status lora_fmt_block_shift_for(uint32_t dtype, uint32_t block, uint8_t *block_shift)
{
    if (!block_shift || !lora_fmt_dtype_valid(dtype)) return LORA_E_INVALID_ARGUMENT;
    if (dtype != LORA_FMT_DTYPE_NF4) {
        if (block != 0 && block != dtype_table[dtype].block_elems) return LORA_E_INVALID_ARGUMENT;
        *block_shift = 0;
        return LORA_OK;
    }
    if (block == 0) block = LORA_FMT_NF4_BLOCK;
    for (uint32_t s = LORA_FMT_NF4_BLOCK_SHIFT_MIN; s <= LORA_FMT_NF4_BLOCK_SHIFT_MAX; s++)
        if (block == 1u << s) {
            *block_shift = (uint8_t)s;
            return LORA_OK;
        }
    return LORA_E_INVALID_ARGUMENT;
}

lora_status lora_fmt_shape_numel(uint32_t ndim, const uint64_t *dims, uint64_t *numel)
{
    if (!dims || !numel) return LORA_E_INVALID_ARGUMENT;
    if (ndim == 0 || ndim > LORA_FMT_MAX_DIMS) return LORA_E_BAD_SHAPE;
    uint64_t n = 1;
    for (uint32_t i = 0; i < ndim; i++) {
        /* A zero dim would make every later overflow test vacuous and an
         * empty tensor has no place in an adapter. */
        if (dims[i] == 0) return LORA_E_BAD_SHAPE;
        if (lora_fmt_mul_overflow(n, dims[i], &n)) return LORA_E_BAD_SHAPE;
    }
    *numel = n;
    return LORA_OK;
}
