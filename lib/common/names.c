/* Human names of the pinned enumerations, shared by tools and details. */
#include <string.h>
#include <strings.h>
#include "internal.h"

const char *lora_dtype_name(lora_dtype d) { return lora_fmt_dtype_name((uint32_t)d); }

const char *lora_kind_name(lora_kind k)
{
    switch (k) {
    case LORA_KIND_LINEAR: return "linear";
    case LORA_KIND_EMBEDDING: return "embedding";
    case LORA_KIND_CONV1D: return "conv1d";
    case LORA_KIND_CONV2D: return "conv2d";
    case LORA_KIND_CONV3D: return "conv3d";
    }
    return NULL;
}

const char *lora_scaling_name(lora_scaling s)
{
    switch (s) {
    case LORA_SCALING_ALPHA_OVER_RANK: return "alpha/r";
    case LORA_SCALING_ALPHA_OVER_SQRT_RANK: return "alpha/sqrt(r)";
    case LORA_SCALING_EXPLICIT: return "explicit";
    }
    return NULL;
}

/* The keys lora.h reserves; each must hold a STRING (the reader rejects any
 * other type, the writer refuses to set one). */
static const char *const reserved_meta_keys[] = {
    LORA_META_BASE_MODEL,       LORA_META_BASE_MODEL_REVISION, LORA_META_ARCHITECTURE,
    LORA_META_SOURCE_FORMAT,    LORA_META_SOURCE_CONFIG,       LORA_META_PRODUCER,
    LORA_META_PRODUCER_VERSION, LORA_META_ADAPTER_NAME,        LORA_META_TASK_TYPE,
};

int lora_meta_key_reserved(const char *key)
{
    for (size_t i = 0; i < sizeof reserved_meta_keys / sizeof reserved_meta_keys[0]; i++)
        if (strcmp(key, reserved_meta_keys[i]) == 0) return 1;
    return 0;
}

lora_status lora_dtype_from_name(const char *name, lora_dtype *out)
{
    if (!name || !out) return LORA_E_INVALID_ARGUMENT;
    for (uint32_t d = 0; d < LORA_FMT_DTYPE_COUNT_; d++) {
        if (strcasecmp(name, lora_fmt_dtype_name(d)) == 0) {
            *out = (lora_dtype)d;
            return LORA_OK;
        }
    }
    return LORA_E_INVALID_ARGUMENT;
}
