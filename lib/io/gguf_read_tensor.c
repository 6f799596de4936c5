/* GGUF tensor infos and the data layout. */
#include <string.h>
#include "gguf_private.h"

static lora_status read_dims(gg_parse *p, lora_gguf_tensor *t, const char *name)
{
    uint64_t at = p->pos;
    LORA_FORWARD_IF_ERROR(gg_read_u32(p, &t->n_dims, "n_dims"));
    /* Before reading any dim: ne[] has four slots, and n_dims = 2^32-1
     * must not become a loop count. */
    if (t->n_dims == 0 || t->n_dims > LORA_GGUF_MAX_DIMS)
        return gg_fail(p->err, LORA_E_BAD_SHAPE, at, "tensor '%s': n_dims %u is not in 1..%u", name, t->n_dims,
                       LORA_GGUF_MAX_DIMS);
    for (uint32_t d = 0; d < LORA_GGUF_MAX_DIMS; d++) t->ne[d] = 1;
    for (uint32_t d = 0; d < t->n_dims; d++) LORA_FORWARD_IF_ERROR(gg_read_u64(p, &t->ne[d], "dim"));
    return LORA_OK;
}

static lora_status check_type_shape(gg_parse *p, const lora_gguf_tensor *t, const char *name, uint64_t *nbytes)
{
    lora_status st = lora_ggml_nbytes(t->type, t->n_dims, t->ne, nbytes);
    if (st == LORA_OK) return st;
    const char *tn = lora_ggml_type_name(t->type);
    if (st == LORA_E_UNSUPPORTED_DTYPE)
        return gg_fail(p->err, st, t->info_offset, "tensor '%s': ggml type %u (%s) is not supported", name, t->type,
                       tn ? tn : "unknown");
    return gg_fail(p->err, st, t->info_offset,
                   "tensor '%s': shape [%llu, %llu, %llu, %llu] of %s is invalid (dims above INT64_MAX, "
                   "an overflowing size, or ne[0] not a whole number of blocks)",
                   name, (unsigned long long)t->ne[0], (unsigned long long)t->ne[1], (unsigned long long)t->ne[2],
                   (unsigned long long)t->ne[3], tn ? tn : "?");
}

static lora_status read_info(gg_parse *p, lora_gguf_tensor *t)
{
    const uint8_t *s;
    uint64_t len;
    t->info_offset = p->pos;
    LORA_FORWARD_IF_ERROR(gg_read_str(p, p->lim.max_name_length, &s, &len, "tensor name"));
    char name[80];
    gg_printable(name, sizeof name, s, len);
    if (!lora_fmt_utf8_valid(s, (size_t)len))
        return gg_fail(p->err, LORA_E_BAD_STRING, t->info_offset,
                       "tensor name '%s' is empty, holds a NUL or is not UTF-8", name);
    p->g->names_size += len + 1;
    LORA_FORWARD_IF_ERROR(read_dims(p, t, name));
    LORA_FORWARD_IF_ERROR(gg_read_u32(p, &t->type, "ggml type"));
    LORA_FORWARD_IF_ERROR(gg_read_u64(p, &t->offset, "tensor offset"));
    return check_type_shape(p, t, name, &t->nbytes);
}

lora_status gg_parse_tensor_infos(gg_parse *p)
{
    for (uint64_t i = 0; i < p->g->n_tensors; i++) LORA_FORWARD_IF_ERROR(read_info(p, &p->g->tensors[i]));
    p->g->infos_end = p->pos;
    if (lora_fmt_align_overflow(p->pos, p->g->alignment, &p->g->data_offset))
        return gg_fail(p->err, LORA_E_BAD_OFFSET, p->pos, "data section offset overflows");
    return LORA_OK;
}

/* One tensor against the running padded sum `expect`. Where the offset
 * differs, the status says why: outside the file, or inside it but
 * overlapping a neighbour or leaving a gap. */
static lora_status check_one(gg_parse *p, lora_gguf_tensor *t, uint64_t expect)
{
    const lora_gguf *g = p->g;
    char name[80];
    gg_printable(name, sizeof name, g->data + t->info_offset + 8, lora_fmt_rd64(g->data + t->info_offset));
    uint64_t start, end;
    int outside = lora_fmt_add_overflow(g->data_offset, t->offset, &start) ||
                  lora_fmt_add_overflow(start, t->nbytes, &end) || end > g->size;
    if (t->offset % g->alignment != 0)
        return gg_fail(p->err, LORA_E_MISALIGNED, t->info_offset, "tensor '%s': offset %llu is not a multiple of %u",
                       name, (unsigned long long)t->offset, g->alignment);
    if (t->offset != expect && outside)
        return gg_fail(p->err, LORA_E_BAD_OFFSET, t->info_offset,
                       "tensor '%s': %llu bytes at data offset %llu end beyond the file (%llu bytes)", name,
                       (unsigned long long)t->nbytes, (unsigned long long)t->offset, (unsigned long long)g->size);
    if (t->offset != expect)
        return gg_fail(p->err, LORA_E_OVERLAP, t->info_offset,
                       "tensor '%s': offset %llu is not %llu, the end of the previous tensor: tensors must be "
                       "contiguous and in order",
                       name, (unsigned long long)t->offset, (unsigned long long)expect);
    if (t->nbytes == 0) return LORA_OK; /* no bytes: no range, data stays NULL */
    if (outside)
        return gg_fail(p->err, LORA_E_TRUNCATED, t->info_offset,
                       "tensor '%s': %llu bytes at data offset %llu end beyond the file (%llu bytes)", name,
                       (unsigned long long)t->nbytes, (unsigned long long)t->offset, (unsigned long long)g->size);
    t->data = g->data + start;
    return LORA_OK;
}

lora_status gg_check_layout(gg_parse *p)
{
    lora_gguf *g = p->g;
    uint64_t expect = 0, padded;
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        lora_gguf_tensor *t = &g->tensors[i];
        LORA_FORWARD_IF_ERROR(check_one(p, t, expect));
        /* Checked: the sum is what overflowed in CVE-2025-53630. */
        if (lora_fmt_align_overflow(t->nbytes, g->alignment, &padded) ||
            lora_fmt_add_overflow(expect, padded, &expect))
            return gg_fail(p->err, LORA_E_BAD_OFFSET, t->info_offset, "the data section size overflows");
    }
    /* After the data only the last tensor's padding may follow; with no
     * tensor bytes, nothing past the data offset (the file may end before
     * it, as ggml's vocab-only files do). */
    uint64_t end;
    if (lora_fmt_add_overflow(g->data_offset, expect, &end)) end = UINT64_MAX;
    if (g->size > end && !(p->lim.flags & LORA_GGUF_ALLOW_TRAILING_BYTES))
        return gg_fail(p->err, LORA_E_TRAILING_BYTES, end, "%llu bytes follow the end of the tensor data",
                       (unsigned long long)(g->size - end));
    return LORA_OK;
}
