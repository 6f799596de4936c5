/* Name indexes, sorted without libc qsort (which may allocate behind the
 * caller's allocator and is not O(n log n) worst case in every libc). */
#include <string.h>
#include "reader.h"

static int cmp_bytes(const char *a, size_t alen, const char *b, size_t blen)
{
    int c = memcmp(a, b, alen < blen ? alen : blen);
    if (c != 0) return c;
    return (alen > blen) - (alen < blen);
}

/* Ties on the name are broken by index, so the order is total and no
 * result depends on the sorting algorithm. */
static int cmp_ix(const lora_name_ix *a, const lora_name_ix *b)
{
    int c = cmp_bytes(a->s, a->len, b->s, b->len);
    if (c != 0) return c;
    return (a->index > b->index) - (a->index < b->index);
}

/* Bottom-up merge sort: n log n comparisons in sequential passes, which
 * matters because every comparison dereferences two names. `tmp` holds n
 * entries. */
void lora_read_sort_names(lora_name_ix *v, lora_name_ix *tmp, size_t n)
{
    lora_name_ix *src = v, *dst = tmp;
    for (size_t width = 1; width < n; width *= 2) {
        for (size_t lo = 0; lo < n; lo += 2 * width) {
            size_t mid = lo + width < n ? lo + width : n;
            size_t hi = lo + 2 * width < n ? lo + 2 * width : n;
            size_t i = lo, j = mid, k = lo;
            while (i < mid && j < hi) dst[k++] = cmp_ix(&src[j], &src[i]) < 0 ? src[j++] : src[i++];
            while (i < mid) dst[k++] = src[i++];
            while (j < hi) dst[k++] = src[j++];
        }
        lora_name_ix *t = src;
        src = dst;
        dst = t;
    }
    if (src != v) memcpy(v, src, n * sizeof *v);
}

uint32_t lora_read_find_duplicate(const lora_name_ix *v, size_t n, uint32_t *first)
{
    /* Report the lowest index that repeats an earlier name, whatever the
     * group, so the error does not depend on how names happen to sort. */
    uint32_t best = UINT32_MAX, best_first = UINT32_MAX;
    size_t group = 0;
    for (size_t i = 1; i < n; i++) {
        if (cmp_bytes(v[i].s, v[i].len, v[group].s, v[group].len) != 0) {
            group = i;
            continue;
        }
        if (v[i].index < best) {
            best = v[i].index;
            best_first = v[group].index;
        }
    }
    if (first) *first = best_first;
    return best;
}

uint32_t lora_read_lookup(const lora_name_ix *v, size_t n, const char *s, size_t len)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = cmp_bytes(v[mid].s, v[mid].len, s, len);
        if (c == 0) return v[mid].index;
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return UINT32_MAX;
}

lora_name_ix *lora_read_build_index(const lora_allocator *a, size_t n,
                                    void (*get)(const lora_reader *r, uint32_t i, lora_name_ix *out),
                                    const lora_reader *r)
{
    /* Two arrays of one small entry per record: justified by the records'
     * bytes in the file (>= 16 each). */
    lora_name_ix *v = lora_mem_calloc(a, n, sizeof *v);
    lora_name_ix *tmp = lora_mem_calloc(a, n, sizeof *tmp);
    if (!v || !tmp) {
        lora_mem_free(a, v);
        lora_mem_free(a, tmp);
        return NULL;
    }
    for (size_t i = 0; i < n; i++) get(r, (uint32_t)i, &v[i]);
    lora_read_sort_names(v, tmp, n);
    lora_mem_free(a, tmp);
    return v;
}
