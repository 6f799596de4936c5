/*
 * internal.h - helpers shared inside liblora. Not installed.
 */
#ifndef LORA_INTERNAL_H
#define LORA_INTERNAL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include "../lora.h"
#include "../../format/lora_format.h"

#if defined(__GNUC__)
#  define LORA_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#  define LORA_PRINTF(f, a)
#endif

/* Fill *err (if not NULL) and return `status`, so callers can write
 *   return lora_error_set(err, LORA_E_TRUNCATED, off, "module '%s': ...", name); */
lora_status lora_error_set(lora_error *err, lora_status status, uint64_t offset, const char *fmt, ...)
    LORA_PRINTF(4, 5);
/* Reset *err to LORA_OK / LORA_NO_OFFSET / "". */
void lora_error_clear(lora_error *err);

/* Propagate a failing status unchanged. */
#define LORA_FORWARD_IF_ERROR(expr)            \
    do {                                       \
        lora_status lora_fwd_st_ = (expr);     \
        if (lora_fwd_st_ != LORA_OK) return lora_fwd_st_; \
    } while (0)

/* Allocation through the caller's hook (zeroed hook = malloc/free). */
void *lora_mem_alloc(const lora_allocator *a, size_t size);
/* count * size with overflow check; memory is zeroed. NULL on overflow or failure. */
void *lora_mem_calloc(const lora_allocator *a, size_t count, size_t size);
void lora_mem_free(const lora_allocator *a, void *ptr);

/* 1 if `key` is one of the reserved metadata keys of lora.h (all STRING). */
int lora_meta_key_reserved(const char *key);

/* XXH3-64, seed 0. */
uint64_t lora_xxh3(const void *data, size_t size);
/* The header checksum: XXH3-64 (seed 0) over file bytes [0, 120) followed by
 * [128, data_offset). `file` must hold at least data_offset bytes and
 * data_offset >= 128. */
uint64_t lora_header_checksum(const uint8_t *file, uint64_t data_offset);

#endif /* LORA_INTERNAL_H */
