/*
 * strref.h - sorted sets of borrowed byte strings, so that building lists
 * of distinct names (target_modules, modules_to_save, mlx-lm keys) stays
 * O(n log n) however many modules an adapter has. Internal.
 */
#ifndef LORA_OPS_STRREF_H
#define LORA_OPS_STRREF_H

#include <stddef.h>

typedef struct {
    const char *s; /* borrowed; need not be NUL-terminated at len */
    size_t len;
} lora_strref;

/* Sort bytewise (shorter first on a common prefix) and drop duplicates;
 * returns the new count. */
size_t lora_strref_unique(lora_strref *v, size_t n);
/* 1 if (s, len) is in the sorted array. */
int lora_strref_has(const lora_strref *v, size_t n, const char *s, size_t len);

#endif /* LORA_OPS_STRREF_H */
