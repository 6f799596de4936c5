/* The reader hands out NUL-terminated strings, but the string table stores
 * them back to back without terminators, so each referenced string is
 * copied once with a NUL after it. */
#include <string.h>
#include "reader.h"

static void count(uint64_t *total, lora_fmt_strref s) { *total += (uint64_t)s.length + 1; }

static const char *place(const lora_reader *r, char **cursor, lora_fmt_strref s)
{
    char *dst = *cursor;
    memcpy(dst, r->data + r->h.strings_offset + s.offset, s.length);
    dst[s.length] = '\0';
    *cursor = dst + s.length + 1;
    return dst;
}

lora_status lora_read_copy_strings(lora_reader *r, lora_error *err)
{
    uint64_t total = 0;
    for (uint32_t i = 0; i < r->h.meta_count; i++) {
        count(&total, r->meta[i].f.key);
        if (r->meta[i].f.type == LORA_FMT_META_STRING) count(&total, r->meta[i].f.str);
    }
    for (uint32_t i = 0; i < r->h.module_count; i++) count(&total, r->modules[i].f.name);
    for (uint32_t i = 0; i < r->h.tensor_count; i++) count(&total, r->tensors[i].f.name);
    /* Step 9 held the total to the string limit plus one byte per
     * reference (records.c); SIZE_MAX matters only on 32-bit hosts. */
    if (total > SIZE_MAX)
        return lora_error_set(err, LORA_E_LIMIT_EXCEEDED, LORA_FMT_OFF_STRINGS_SIZE,
                              "strings referenced by the records need %llu bytes", (unsigned long long)total);
    r->strings = lora_mem_alloc(&r->alloc, (size_t)total);
    if (!r->strings)
        return lora_error_set(err, LORA_E_OUT_OF_MEMORY, LORA_NO_OFFSET, "cannot allocate %llu bytes of strings",
                              (unsigned long long)total);
    char *cur = r->strings;
    for (uint32_t i = 0; i < r->h.meta_count; i++) {
        r->meta[i].key = place(r, &cur, r->meta[i].f.key);
        if (r->meta[i].f.type == LORA_FMT_META_STRING) r->meta[i].value = place(r, &cur, r->meta[i].f.str);
    }
    for (uint32_t i = 0; i < r->h.module_count; i++) r->modules[i].name = place(r, &cur, r->modules[i].f.name);
    for (uint32_t i = 0; i < r->h.tensor_count; i++) r->tensors[i].name = place(r, &cur, r->tensors[i].f.name);
    return LORA_OK;
}
