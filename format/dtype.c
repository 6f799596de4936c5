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
