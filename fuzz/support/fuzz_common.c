/* Shared harness support: failure reporting and the counting allocator. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "fuzz_common.h"

void fuzz_fail(const char *file, int line, const char *what)
{
    fprintf(stderr, "fuzz: property failed at %s:%d: %s\n", file, line, what);
    fflush(stderr);
    abort();
}

int fuzz_status_is_error(lora_status s)
{
    return s != LORA_OK && strcmp(lora_status_name(s), "LORA_E_UNKNOWN") != 0;
}

void fuzz_check_error(lora_status st, const lora_error *err)
{
    FUZZ_ASSERT(fuzz_status_is_error(st));
    FUZZ_ASSERT(err->status == st);
    FUZZ_ASSERT(memchr(err->detail, '\0', sizeof err->detail) != NULL);
}

/* Each block carries its size in a header of max_align_t size, so the
 * pointer handed out keeps malloc's alignment. */
typedef union {
    size_t size;
    max_align_t align_;
} block_head;

static void *counting_alloc(void *opaque, size_t size)
{
    fuzz_alloc_state *s = opaque;
    s->calls++;
    if (s->justified && size > s->justified) {
        fprintf(stderr, "fuzz: allocation of %zu bytes exceeds the %zu the input justifies\n", size, s->justified);
        fuzz_fail(__FILE__, __LINE__, "allocation bounded by the input");
    }
    if (s->fail_above && size > s->fail_above) return NULL;
    if (size > SIZE_MAX - sizeof(block_head)) return NULL;
    block_head *h = malloc(sizeof *h + size);
    if (!h) return NULL;
    h->size = size;
    s->live += size;
    if (s->live > s->peak) s->peak = s->live;
    return h + 1;
}

static void counting_free(void *opaque, void *ptr)
{
    fuzz_alloc_state *s = opaque;
    if (!ptr) return;
    block_head *h = (block_head *)ptr - 1;
    FUZZ_ASSERT(h->size <= s->live);
    s->live -= h->size;
    free(h);
}

lora_allocator fuzz_alloc_hook(fuzz_alloc_state *s)
{
    lora_allocator a = {counting_alloc, counting_free, s};
    return a;
}

void fuzz_alloc_check_empty(const fuzz_alloc_state *s)
{
    if (s->live == 0) return;
    fprintf(stderr, "fuzz: %zu bytes still allocated after %zu allocations\n", s->live, s->calls);
    fuzz_fail(__FILE__, __LINE__, "no leak through the allocator hook");
}

size_t fuzz_justified_bytes(size_t size)
{
    return (size_t)1032 * size + ((size_t)256 << 10);
}

/* Unicode 15, Table 3-7, plus the format's "no NUL, not empty". */
int fuzz_utf8_valid_ref(const uint8_t *s, size_t len)
{
    if (len == 0) return 0;
    for (size_t i = 0; i < len;) {
        uint32_t c = s[i], cp, n;
        if (c == 0) return 0;
        if (c < 0x80) { i++; continue; }
        if (c >= 0xC0 && c < 0xE0) { n = 2; cp = c & 0x1F; }
        else if (c >= 0xE0 && c < 0xF0) { n = 3; cp = c & 0x0F; }
        else if (c >= 0xF0 && c < 0xF8) { n = 4; cp = c & 0x07; }
        else return 0;
        if (len - i < n) return 0;
        for (uint32_t k = 1; k < n; k++) {
            if ((s[i + k] & 0xC0) != 0x80) return 0;
            cp = (cp << 6) | (s[i + k] & 0x3Fu);
        }
        static const uint32_t min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
        if (cp < min_cp[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
        i += n;
    }
    return 1;
}
