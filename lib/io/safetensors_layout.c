/* The data section: sorted by offsets, the tensors must tile it exactly.
 * This is the reference's Metadata::validate plus its final length check;
 * it is what makes polyglot files and aliased tensors impossible. */
#include <stdlib.h>
#include <string.h>
#include "safetensors_private.h"

/* Ties on (begin, end) are zero-size tensors at one offset; the index
 * makes the order, and so the reported tensor, deterministic. */
static int by_offset_cmp(const void *a, const void *b, void *ctx)
{
    const lora_st_tensor *t = ctx;
    uint32_t i = *(const uint32_t *)a, j = *(const uint32_t *)b;
    const lora_st_tensor *x = &t[i], *y = &t[j];
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->size != y->size) return x->size < y->size ? -1 : 1;
    return i < j ? -1 : i > j;
}

static lora_status tile_error(lora_st_parse_ctx *c, const lora_st_tensor *t, const lora_st_tensor *prev,
                              uint64_t running, lora_error *err)
{
    uint64_t off = c->f->data_offset + t->begin;
    if (t->begin > running)
        return lora_st_tensor_error(err, LORA_E_OVERLAP, off, t->name, t->name_length,
                                    "%llu-byte gap before it: data begins at %llu, the previous tensor ends at %llu",
                                    (unsigned long long)(t->begin - running), (unsigned long long)t->begin,
                                    (unsigned long long)running);
    char shown[LORA_ST_SHOW_NAME];
    lora_st_show_name(shown, prev->name, prev->name_length);
    return lora_st_tensor_error(err, LORA_E_OVERLAP, off, t->name, t->name_length,
                                "data [%llu, %llu) overlaps tensor '%s' which ends at %llu",
                                (unsigned long long)t->begin, (unsigned long long)(t->begin + t->size), shown,
                                (unsigned long long)running);
}

lora_status lora_st_check_layout(lora_st_parse_ctx *c, lora_error *err)
{
    lora_st_file *f = c->f;
    uint32_t n = f->tensor_count;
    for (uint32_t i = 0; i < n; i++) f->by_offset[i] = i;
    if (n > 1) qsort_r(f->by_offset, n, sizeof *f->by_offset, by_offset_cmp, f->tensors);
    /* Each begin and end was read as a non-negative int64, so begin + size
     * (== end) and data_offset (<= 8 + 100 MB cap) + begin cannot wrap. */
    uint64_t running = 0;
    const lora_st_tensor *prev = NULL;
    for (uint32_t k = 0; k < n; k++) {
        const lora_st_tensor *t = &f->tensors[f->by_offset[k]];
        if (t->begin != running) return tile_error(c, t, prev, running, err);
        running = t->begin + t->size;
        prev = t;
    }
    uint64_t data_size = c->size - f->data_offset;
    if (running > data_size) {
        /* The first tensor, in offset order, that does not fit. */
        for (uint32_t k = 0; k < n; k++) {
            const lora_st_tensor *t = &f->tensors[f->by_offset[k]];
            if (t->begin + t->size <= data_size) continue;
            return lora_st_tensor_error(err, LORA_E_TRUNCATED, f->data_offset + t->begin, t->name, t->name_length,
                                        "data ends at file offset %llu, past the end of the file (%llu bytes)",
                                        (unsigned long long)(f->data_offset + t->begin + t->size),
                                        (unsigned long long)c->size);
        }
    }
    if (running < data_size)
        return lora_error_set(err, LORA_E_TRAILING_BYTES, f->data_offset + running,
                              "safetensors: %llu bytes after the last tensor (offset %llu)",
                              (unsigned long long)(data_size - running),
                              (unsigned long long)(f->data_offset + running));
    for (uint32_t i = 0; i < n; i++) {
        lora_st_tensor *t = &f->tensors[i];
        t->offset = f->data_offset + t->begin;
        t->data = c->data + t->offset;
    }
    return LORA_OK;
}

static int name_cmp(const lora_st_tensor *x, const char *s, size_t len)
{
    size_t m = x->name_length < len ? x->name_length : len;
    int r = m ? memcmp(x->name, s, m) : 0;
    if (r) return r;
    return x->name_length < len ? -1 : x->name_length > len;
}

static int by_name_cmp(const void *a, const void *b, void *ctx)
{
    const lora_st_tensor *t = ctx;
    const lora_st_tensor *y = &t[*(const uint32_t *)b];
    return name_cmp(&t[*(const uint32_t *)a], y->name, y->name_length);
}

void lora_st_index_names(lora_st_file *f)
{
    for (uint32_t i = 0; i < f->tensor_count; i++) f->by_name_[i] = i;
    if (f->tensor_count > 1) qsort_r(f->by_name_, f->tensor_count, sizeof *f->by_name_, by_name_cmp, f->tensors);
}

uint32_t lora_st_find(const lora_st_file *f, const char *name, size_t len)
{
    if (!f || (!name && len)) return UINT32_MAX;
    size_t lo = 0, hi = f->tensor_count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        uint32_t idx = f->by_name_[mid];
        int r = name_cmp(&f->tensors[idx], name, len);
        if (r == 0) return idx;
        if (r < 0) lo = mid + 1;
        else hi = mid;
    }
    return UINT32_MAX;
}

const lora_st_meta *lora_st_meta_find(const lora_st_file *f, const char *key)
{
    if (!f || !key) return NULL;
    size_t len = strlen(key);
    for (uint32_t i = 0; i < f->meta_count; i++)
        if (f->meta[i].key_length == len && memcmp(f->meta[i].key, key, len) == 0) return &f->meta[i];
    return NULL;
}
