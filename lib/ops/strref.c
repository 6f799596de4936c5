/* Sorted sets of borrowed byte strings (see strref.h). */
#include <stdlib.h>
#include <string.h>
#include "strref.h"

static int cmp_ref(const lora_strref *a, const char *s, size_t len)
{
    size_t m = a->len < len ? a->len : len;
    int c = m ? memcmp(a->s, s, m) : 0;
    if (c) return c;
    return a->len < len ? -1 : a->len > len;
}

static int by_bytes(const void *pa, const void *pb)
{
    const lora_strref *b = pb;
    return cmp_ref(pa, b->s, b->len);
}

size_t lora_strref_unique(lora_strref *v, size_t n)
{
    if (n < 2) return n;
    qsort(v, n, sizeof *v, by_bytes);
    size_t k = 1;
    for (size_t i = 1; i < n; i++)
        if (by_bytes(&v[i], &v[k - 1]) != 0) v[k++] = v[i];
    return k;
}

int lora_strref_has(const lora_strref *v, size_t n, const char *s, size_t len)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = cmp_ref(&v[mid], s, len);
        if (c == 0) return 1;
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return 0;
}
