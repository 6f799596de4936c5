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
