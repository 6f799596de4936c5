/* The safetensors dtype table: names as the files spell them, element
 * sizes, and the mapping to .lora dtypes. */
#include <string.h>
#include "safetensors_private.h"

static const struct {
    const char *name;
    uint32_t size;
} dtypes[LORA_ST_DTYPE_COUNT_] = {
    [LORA_ST_BOOL] = {"BOOL", 1},       [LORA_ST_U8] = {"U8", 1},     [LORA_ST_I8] = {"I8", 1},
    [LORA_ST_F8_E5M2] = {"F8_E5M2", 1}, [LORA_ST_F8_E4M3] = {"F8_E4M3", 1},
    [LORA_ST_I16] = {"I16", 2},         [LORA_ST_U16] = {"U16", 2},   [LORA_ST_F16] = {"F16", 2},
    [LORA_ST_BF16] = {"BF16", 2},       [LORA_ST_I32] = {"I32", 4},   [LORA_ST_U32] = {"U32", 4},
    [LORA_ST_F32] = {"F32", 4},         [LORA_ST_F64] = {"F64", 8},   [LORA_ST_I64] = {"I64", 8},
    [LORA_ST_U64] = {"U64", 8},
};

const char *lora_st_dtype_name(lora_st_dtype d)
{
    return (unsigned)d < LORA_ST_DTYPE_COUNT_ ? dtypes[d].name : NULL;
}

uint32_t lora_st_dtype_size(lora_st_dtype d)
{
    return (unsigned)d < LORA_ST_DTYPE_COUNT_ ? dtypes[d].size : 0;
}

lora_status lora_st_dtype_from_name(const char *s, size_t len, lora_st_dtype *out)
{
    for (unsigned i = 0; i < LORA_ST_DTYPE_COUNT_; i++) {
        /* Length first: "F16" must not match a "F16\0..." spelling. */
        if (strlen(dtypes[i].name) == len && memcmp(dtypes[i].name, s, len) == 0) {
            *out = (lora_st_dtype)i;
            return LORA_OK;
        }
    }
    return LORA_E_UNSUPPORTED_DTYPE;
}

lora_status lora_st_dtype_to_lora(lora_st_dtype d, lora_dtype *out)
{
    switch (d) {
    case LORA_ST_F32: *out = LORA_DTYPE_F32; return LORA_OK;
    case LORA_ST_F16: *out = LORA_DTYPE_F16; return LORA_OK;
    case LORA_ST_BF16: *out = LORA_DTYPE_BF16; return LORA_OK;
    case LORA_ST_BOOL: case LORA_ST_U8: case LORA_ST_I8: case LORA_ST_F8_E5M2: case LORA_ST_F8_E4M3:
    case LORA_ST_I16: case LORA_ST_U16: case LORA_ST_I32: case LORA_ST_U32: case LORA_ST_F64:
    case LORA_ST_I64: case LORA_ST_U64: case LORA_ST_DTYPE_COUNT_:
    default: return LORA_E_UNSUPPORTED_DTYPE;
    }
}

int lora_st_shape_bytes(const uint64_t *shape, uint32_t ndim, uint32_t elem_size, uint64_t *numel, uint64_t *bytes)
{
    uint64_t n = 1;
    for (uint32_t i = 0; i < ndim; i++)
        if (lora_fmt_mul_overflow(n, shape[i], &n)) return 1;
    if (lora_fmt_mul_overflow(n, elem_size, bytes)) return 1;
    *numel = n;
    return 0;
}
