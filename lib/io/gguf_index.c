/* Sorted name indexes. Sorting finds duplicates in O(n log n): the O(n^2)
 * scan of gguf.cpp is a CPU-time bomb at 2^20 tensors (robustness.md 6.33).
 * The same index answers lookups by name. */
#include <stdlib.h>
#include <string.h>
#include "gguf_private.h"

static int cmp_bytes(const uint8_t *a, uint64_t alen, const uint8_t *b, uint64_t blen)
{
    uint64_t n = alen < blen ? alen : blen;
    int c = n ? memcmp(a, b, (size_t)n) : 0;
    if (c != 0) return c;
    return alen < blen ? -1 : alen > blen ? 1 : 0;
}

/* Ties broken by table index, so the later of two duplicates is reported
 * whatever qsort does. */
static int cmp_ix(const void *pa, const void *pb)
{
    const gg_name_ix *a = pa, *b = pb;
    int c = cmp_bytes(a->s, a->len, b->s, b->len);
    if (c != 0) return c;
    return a->index < b->index ? -1 : a->index > b->index ? 1 : 0;
}

lora_status gg_build_index(gg_parse *p, int tensors)
{
    lora_gguf *g = p->g;
    uint64_t n = tensors ? g->n_tensors : g->n_kv;
    gg_name_ix *ix = tensors ? g->tensor_ix : g->kv_ix;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t at = tensors ? g->tensors[i].info_offset : g->kv[i].offset;
        ix[i].len = lora_fmt_rd64(g->data + at);
        ix[i].s = g->data + at + 8;
        ix[i].index = i;
    }
    if (n > 1) qsort(ix, (size_t)n, sizeof *ix, cmp_ix);
    for (uint64_t i = 1; i < n; i++) {
        if (cmp_bytes(ix[i - 1].s, ix[i - 1].len, ix[i].s, ix[i].len) != 0) continue;
        char name[80];
        gg_printable(name, sizeof name, ix[i].s, ix[i].len);
        uint64_t at = tensors ? g->tensors[ix[i].index].info_offset : g->kv[ix[i].index].offset;
        return gg_fail(p->err, LORA_E_DUPLICATE_NAME, at, "%s '%s' appears twice", tensors ? "tensor" : "key", name);
    }
    return LORA_OK;
}

int64_t gg_index_find(const gg_name_ix *ix, uint64_t n, const char *name)
{
    if (!name) return -1;
    const uint8_t *s = (const uint8_t *)name;
    uint64_t len = strlen(name), lo = 0, hi = n;
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        int c = cmp_bytes(ix[mid].s, ix[mid].len, s, len);
        if (c == 0) return (int64_t)mid;
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return -1;
}

const lora_gguf_kv *lora_gguf_find_kv(const lora_gguf *g, const char *key)
{
    int64_t i = gg_index_find(g->kv_ix, g->n_kv, key);
    return i < 0 ? NULL : &g->kv[g->kv_ix[i].index];
}

const lora_gguf_tensor *lora_gguf_find_tensor(const lora_gguf *g, const char *name)
{
    int64_t i = gg_index_find(g->tensor_ix, g->n_tensors, name);
    return i < 0 ? NULL : &g->tensors[g->tensor_ix[i].index];
}
