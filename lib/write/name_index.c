/* Unique-name lookup for metadata keys, module names and tensor names.
 * Linear probing over a power-of-two table kept at most 3/4 full; the names
 * live in the writer's arrays, the table only holds indices and hashes. */
#include <string.h>
#include "writer.h"

static uint32_t name_hash(const char *s, size_t len)
{
    return (uint32_t)lora_xxh3(s, len);
}

uint32_t lora_nidx_find(const lora_writer *w, const lora_name_index *ix, lora_name_at_fn at, const char *s,
                        size_t len)
{
    if (ix->cap == 0) return UINT32_MAX;
    uint32_t h = name_hash(s, len);
    uint32_t mask = ix->cap - 1;
    for (uint32_t i = h & mask;; i = (i + 1) & mask) {
        uint32_t slot = ix->slots[i];
        if (slot == 0) return UINT32_MAX;
        if (ix->hashes[i] != h) continue;
        const lora_wstr *name = at(w, slot - 1);
        if (name->len == len && memcmp(name->s, s, len) == 0) return slot - 1;
    }
}

static void place(uint32_t *slots, uint32_t *hashes, uint32_t cap, uint32_t h, uint32_t slot)
{
    uint32_t mask = cap - 1;
    uint32_t i = h & mask;
    while (slots[i] != 0) i = (i + 1) & mask;
    slots[i] = slot;
    hashes[i] = h;
}

/* Hashes are kept beside the slots so growing never has to look at names. */
lora_status lora_nidx_reserve(const lora_allocator *a, lora_name_index *ix)
{
    if ((uint64_t)(ix->count + 1) * 4 <= (uint64_t)ix->cap * 3) return LORA_OK;
    uint64_t cap = ix->cap ? (uint64_t)ix->cap * 2 : 16;
    if (cap > (UINT64_C(1) << 31)) return LORA_E_LIMIT_EXCEEDED;
    uint32_t *slots = lora_mem_calloc(a, (size_t)cap, sizeof *slots);
    uint32_t *hashes = lora_mem_calloc(a, (size_t)cap, sizeof *hashes);
    if (!slots || !hashes) {
        lora_mem_free(a, slots);
        lora_mem_free(a, hashes);
        return LORA_E_OUT_OF_MEMORY;
    }
    for (uint32_t i = 0; i < ix->cap; i++)
        if (ix->slots[i]) place(slots, hashes, (uint32_t)cap, ix->hashes[i], ix->slots[i]);
    lora_mem_free(a, ix->slots);
    lora_mem_free(a, ix->hashes);
    ix->slots = slots;
    ix->hashes = hashes;
    ix->cap = (uint32_t)cap;
    return LORA_OK;
}

void lora_nidx_insert(lora_name_index *ix, const char *s, size_t len, uint32_t index)
{
    place(ix->slots, ix->hashes, ix->cap, name_hash(s, len), index + 1);
    ix->count++;
}

void lora_nidx_free(const lora_allocator *a, lora_name_index *ix)
{
    lora_mem_free(a, ix->slots);
    lora_mem_free(a, ix->hashes);
    memset(ix, 0, sizeof *ix);
}
