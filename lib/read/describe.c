/* Pieces of error details: shapes, blob owners, format-layer faults. */
#include <stdio.h>
#include "reader.h"

void lora_read_format_shape(char *buf, size_t cap, uint32_t ndim, const uint64_t *dims)
{
    /* 5 dims of at most 20 digits, commas and brackets: always fits. */
    char tmp[128];
    size_t used = 0;
    if (ndim > LORA_FMT_MAX_DIMS) ndim = LORA_FMT_MAX_DIMS;
    tmp[used++] = '[';
    for (uint32_t i = 0; i < ndim; i++)
        used += (size_t)snprintf(tmp + used, sizeof tmp - used, i ? ",%llu" : "%llu", (unsigned long long)dims[i]);
    tmp[used++] = ']';
    tmp[used] = '\0';
    if (cap) snprintf(buf, cap, "%s", tmp);
}

static const char *role_name(uint32_t role)
{
    switch (role) {
    case LORA_OWNER_A: return "A";
    case LORA_OWNER_B: return "B";
    case LORA_OWNER_MAGNITUDE: return "magnitude";
    case LORA_OWNER_BIAS: return "bias";
    default: return "?";
    }
}

void lora_read_describe_owner(const lora_reader *r, uint32_t blob, char *buf, size_t cap)
{
    const lora_rblob *b = &r->blobs[blob];
    if (b->owner_role == LORA_OWNER_NONE)
        snprintf(buf, cap, "blob %u", blob);
    else if (b->owner_role == LORA_OWNER_TENSOR)
        snprintf(buf, cap, "blob %u (tensor '%s')", blob, r->tensors[b->owner].name);
    else
        snprintf(buf, cap, "blob %u (module '%s' %s)", blob, r->modules[b->owner].name, role_name(b->owner_role));
}

lora_status lora_read_fault(lora_error *err, const lora_fmt_fault *f, const char *what)
{
    return lora_error_set(err, f->status, f->offset, "%s: %s: %s", what, f->field, lora_status_message(f->status));
}
