/* Growable arrays and copied strings for the writer, all through the
 * caller's allocator so tests can fail any one of them. */
#include <string.h>
#include "writer.h"

void *lora_wgrow(const lora_allocator *a, void *arr, uint32_t *cap, uint32_t need, size_t elem, lora_status *st)
{
    *st = LORA_OK;
    if (need <= *cap) return arr;
    /* Doubling keeps n appends O(n) in copies; the allocator hook has no
     * realloc, so growth is alloc + copy + free. */
    uint64_t want = *cap ? (uint64_t)*cap * 2 : 8;
    if (want < need) want = need;
    if (want > UINT32_MAX) want = UINT32_MAX;
    void *p = lora_mem_calloc(a, (size_t)want, elem);
    if (!p) {
        *st = LORA_E_OUT_OF_MEMORY;
        return arr;
    }
    if (arr) {
        memcpy(p, arr, (size_t)*cap * elem);
        lora_mem_free(a, arr);
    }
    *cap = (uint32_t)want;
    return p;
}

lora_status lora_wstr_copy(const lora_allocator *a, const char *s, size_t len, lora_wstr *out)
{
    if (len > UINT32_MAX) return LORA_E_INVALID_ARGUMENT;
    char *p = lora_mem_alloc(a, len + 1);
    if (!p) return LORA_E_OUT_OF_MEMORY;
    if (len) memcpy(p, s, len);
    p[len] = '\0';
    out->s = p;
    out->len = (uint32_t)len;
    return LORA_OK;
}

void lora_wstr_free(const lora_allocator *a, lora_wstr *s)
{
    lora_mem_free(a, s->s);
    s->s = NULL;
    s->len = 0;
}

int lora_wname_ok(const char *s, size_t len)
{
    /* The same rule the reader enforces (BAD_STRING), checked up front so
     * the mistake is reported at the call that made it. */
    if (!s || len == 0 || len > UINT32_MAX) return 0;
    return lora_fmt_utf8_valid((const uint8_t *)s, len);
}
