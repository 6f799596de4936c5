/* The writer's growable buffers and name sets. */
#include <string.h>
#include "gguf_writer_private.h"

lora_status gg_buf_put(const lora_allocator *a, gg_buf *b, const void *src, size_t n)
{
    if (n == 0) return LORA_OK;
    if (n > SIZE_MAX - b->len) return LORA_E_LIMIT_EXCEEDED;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n) {
            if (cap > SIZE_MAX / 2) return LORA_E_LIMIT_EXCEEDED;
            cap *= 2;
        }
        /* The allocator hook has no realloc: copy. */
        uint8_t *p = lora_mem_alloc(a, cap);
        if (!p) return LORA_E_OUT_OF_MEMORY;
        if (b->len) memcpy(p, b->p, b->len);
        lora_mem_free(a, b->p);
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, src, n);
    b->len += n;
    return LORA_OK;
}

lora_status gg_buf_put_u32(const lora_allocator *a, gg_buf *b, uint32_t v)
{
    uint8_t t[4];
    lora_fmt_wr32(t, v);
    return gg_buf_put(a, b, t, 4);
}

lora_status gg_buf_put_u64(const lora_allocator *a, gg_buf *b, uint64_t v)
{
    uint8_t t[8];
    lora_fmt_wr64(t, v);
    return gg_buf_put(a, b, t, 8);
}

lora_status gg_buf_put_str(const lora_allocator *a, gg_buf *b, const void *s, uint64_t len)
{
    if (len > SIZE_MAX) return LORA_E_LIMIT_EXCEEDED;
    LORA_FORWARD_IF_ERROR(gg_buf_put_u64(a, b, len));
    return gg_buf_put(a, b, s, (size_t)len);
}

static uint64_t hash_bytes(const uint8_t *s, uint64_t len) /* FNV-1a */
{
    uint64_t h = UINT64_C(0xcbf29ce484222325);
    for (uint64_t i = 0; i < len; i++) h = (h ^ s[i]) * UINT64_C(0x100000001b3);
    return h;
}

int gg_set_has(const gg_set *set, const uint8_t *base, const uint8_t *s, uint64_t len)
{
    if (set->cap == 0) return 0;
    uint64_t h = hash_bytes(s, len), mask = set->cap - 1;
    for (uint64_t i = h & mask;; i = (i + 1) & mask) {
        uint64_t slot = set->slots[i];
        if (slot == 0) return 0;
        const gg_ref *r = &set->refs[slot - 1];
        if (r->hash == h && r->len == len && memcmp(base + r->off, s, (size_t)len) == 0) return 1;
    }
}

static void place(gg_set *set, uint64_t index)
{
    uint64_t mask = set->cap - 1, i = set->refs[index].hash & mask;
    while (set->slots[i] != 0) i = (i + 1) & mask;
    set->slots[i] = index + 1;
}

/* Keep the load at most 1/2 so probes stay short and one slot is always free. */
static lora_status grow(const lora_allocator *a, gg_set *set)
{
    if (2 * (set->n + 1) <= set->cap) return LORA_OK;
    uint64_t cap = set->cap ? set->cap * 2 : 64;
    if (cap > SIZE_MAX / sizeof(gg_ref)) return LORA_E_OUT_OF_MEMORY;
    uint64_t *slots = lora_mem_calloc(a, (size_t)cap, sizeof *slots);
    gg_ref *refs = lora_mem_alloc(a, (size_t)(cap / 2) * sizeof *refs);
    if (!slots || !refs) {
        lora_mem_free(a, slots);
        lora_mem_free(a, refs);
        return LORA_E_OUT_OF_MEMORY;
    }
    if (set->n) memcpy(refs, set->refs, (size_t)set->n * sizeof *refs);
    lora_mem_free(a, set->slots);
    lora_mem_free(a, set->refs);
    set->slots = slots;
    set->refs = refs;
    set->cap = cap;
    for (uint64_t i = 0; i < set->n; i++) place(set, i);
    return LORA_OK;
}

lora_status gg_set_add(const lora_allocator *a, gg_set *set, const uint8_t *base, uint64_t off, uint64_t len)
{
    LORA_FORWARD_IF_ERROR(grow(a, set));
    gg_ref *r = &set->refs[set->n];
    r->off = off;
    r->len = len;
    r->hash = hash_bytes(base + off, len);
    place(set, set->n);
    set->n++;
    return LORA_OK;
}

void gg_set_free(const lora_allocator *a, gg_set *set)
{
    lora_mem_free(a, set->slots);
    lora_mem_free(a, set->refs);
    memset(set, 0, sizeof *set);
}
