/* Allocation through the caller's hook, so tests can fail the Nth call. */
#include <stdlib.h>
#include <string.h>
#include "internal.h"

void *lora_mem_alloc(const lora_allocator *a, size_t size)
{
    if (size == 0) size = 1; /* a zero-size request must still give a distinct, freeable pointer */
    if (a && a->alloc) return a->alloc(a->opaque, size);
    return malloc(size);
}

void *lora_mem_calloc(const lora_allocator *a, size_t count, size_t size)
{
    if (size != 0 && count > SIZE_MAX / size) return NULL;
    size_t bytes = count * size;
    void *p = lora_mem_alloc(a, bytes);
    if (p && bytes) memset(p, 0, bytes);
    return p;
}

void lora_mem_free(const lora_allocator *a, void *ptr)
{
    if (!ptr) return;
    if (a && a->alloc) {
        if (a->free) a->free(a->opaque, ptr);
        return;
    }
    free(ptr);
}
