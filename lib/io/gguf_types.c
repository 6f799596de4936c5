/* GGUF value types and ggml tensor types: names, sizes and the tensor byte
 * size, the arithmetic every GGUF CVE went through (robustness.md 1.1). */
#include "gguf_private.h"

static const char *const kv_type_names[LORA_GGUF_TYPE_COUNT] = {
    "UINT8", "INT8", "UINT16", "INT16", "UINT32", "INT32", "FLOAT32",
    "BOOL", "STRING", "ARRAY", "UINT64", "INT64", "FLOAT64",
};

static const uint8_t kv_type_sizes[LORA_GGUF_TYPE_COUNT] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};

const char *lora_gguf_type_name(uint32_t type)
{
    return type < LORA_GGUF_TYPE_COUNT ? kv_type_names[type] : NULL;
}

uint32_t lora_gguf_type_size(uint32_t type)
{
    return type < LORA_GGUF_TYPE_COUNT ? kv_type_sizes[type] : 0;
}

/* Every id ggml.h has assigned, so that a message can say what a file holds
 * even when this project cannot size it. */
#define GGML_ID_COUNT 40u
static const char *const ggml_names[GGML_ID_COUNT] = {
    "F32", "F16", "Q4_0", "Q4_1", "Q4_2 (removed)", "Q4_3 (removed)", "Q5_0", "Q5_1", "Q8_0", "Q8_1",
    "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "Q8_K", "IQ2_XXS", "IQ2_XS", "IQ3_XXS", "IQ1_S",
    "IQ4_NL", "IQ3_S", "IQ2_S", "IQ4_XS", "I8", "I16", "I32", "I64", "F64", "IQ1_M",
    "BF16", "Q4_0_4_4 (removed)", "Q4_0_4_8 (removed)", "Q4_0_8_8 (removed)", "TQ1_0", "TQ2_0",
    "IQ4_NL_4_4 (removed)", "IQ4_NL_4_8 (removed)", "IQ4_NL_8_8 (removed)", "MXFP4",
};

const char *lora_ggml_type_name(uint32_t type)
{
    return type < GGML_ID_COUNT ? ggml_names[type] : NULL;
}

/* Block sizes from ggml-common.h. Only these are supported: adding a type
 * is one line here once its layout is known. */
int lora_ggml_type_size(uint32_t type, uint32_t *block_elems, uint32_t *block_bytes)
{
    uint32_t be, bb;
    switch (type) {
    case LORA_GGML_F32: be = 1; bb = 4; break;
    case LORA_GGML_F16: be = 1; bb = 2; break;
    case LORA_GGML_BF16: be = 1; bb = 2; break;
    case LORA_GGML_Q4_0: be = 32; bb = 18; break;
    case LORA_GGML_Q4_1: be = 32; bb = 20; break;
    case LORA_GGML_Q5_0: be = 32; bb = 22; break;
    case LORA_GGML_Q5_1: be = 32; bb = 24; break;
    case LORA_GGML_Q8_0: be = 32; bb = 34; break;
    case LORA_GGML_Q8_1: be = 32; bb = 36; break;
    case LORA_GGML_Q2_K: be = 256; bb = 84; break;
    case LORA_GGML_Q3_K: be = 256; bb = 110; break;
    case LORA_GGML_Q4_K: be = 256; bb = 144; break;
    case LORA_GGML_Q5_K: be = 256; bb = 176; break;
    case LORA_GGML_Q6_K: be = 256; bb = 210; break;
    default: return 0;
    }
    if (block_elems) *block_elems = be;
    if (block_bytes) *block_bytes = bb;
    return 1;
}

/* ggml keeps ne in int64, so anything above INT64_MAX would be negative
 * there. The element count is multiplied only over non-zero dims: a zero
 * dim must not make the overflow test vacuous (the (0, huge, huge) case) nor
 * divide by zero (the ne[1] == 0 bug of gguf.cpp). */
static lora_status shape_numel(uint32_t n_dims, const uint64_t *ne, uint64_t *numel)
{
    if (n_dims == 0 || n_dims > LORA_GGUF_MAX_DIMS) return LORA_E_BAD_SHAPE;
    uint64_t n = 1, product = 1;
    for (uint32_t i = 0; i < n_dims; i++) {
        if (ne[i] > (uint64_t)INT64_MAX) return LORA_E_BAD_SHAPE;
        if (ne[i] == 0) {
            n = 0;
            continue;
        }
        if (lora_fmt_mul_overflow(product, ne[i], &product) || product > (uint64_t)INT64_MAX)
            return LORA_E_BAD_SHAPE;
    }
    *numel = n ? product : 0;
    return LORA_OK;
}

lora_status lora_ggml_nbytes(uint32_t type, uint32_t n_dims, const uint64_t *ne, uint64_t *nbytes)
{
    if (!ne || !nbytes) return LORA_E_INVALID_ARGUMENT;
    uint64_t numel;
    LORA_FORWARD_IF_ERROR(shape_numel(n_dims, ne, &numel));
    uint32_t be, bb;
    if (!lora_ggml_type_size(type, &be, &bb)) return LORA_E_UNSUPPORTED_DTYPE;
    /* ggml sizes rows of whole blocks; a partial block has no encoding. */
    if (ne[0] % be != 0) return LORA_E_BAD_SHAPE;
    if (numel == 0) {
        *nbytes = 0;
        return LORA_OK;
    }
    /* numel fits int64, so numel / be * bb < 2^63 * 36 / 32 may still not:
     * check the product against both int64 and size_t. */
    uint64_t bytes;
    if (lora_fmt_mul_overflow(numel / be, bb, &bytes) || bytes > (uint64_t)INT64_MAX || bytes > SIZE_MAX)
        return LORA_E_BAD_SHAPE;
    *nbytes = bytes;
    return LORA_OK;
}
