/*
 * fuzz_common.h - what every harness shares: the entry point, an assert
 * that survives NDEBUG, and a counting allocator.
 *
 * A harness is one file fuzz/fuzz_<name>.c defining LLVMFuzzerTestOneInput
 * plus one line in fuzz/targets.txt. It is linked three ways: with libFuzzer
 * (make fuzz), with AFL++'s driver (make fuzz-afl) and with
 * fuzz/regression.c (make test), so it must not depend on any engine.
 * Harnesses may use the library's internal headers, as the unit tests do.
 */
#ifndef FUZZ_COMMON_H
#define FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include "lora.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Property checks abort, so every engine records a crash. Not assert():
 * the regression build keeps NDEBUG-free semantics whatever OPT says. */
#if defined(__GNUC__)
__attribute__((noreturn))
#endif
void fuzz_fail(const char *file, int line, const char *what);

#define FUZZ_ASSERT(cond)                                         \
    do {                                                          \
        if (!(cond)) fuzz_fail(__FILE__, __LINE__, #cond);        \
    } while (0)

/* 1 if `s` is a status the library defines (not LORA_OK). Every failure a
 * parser reports must be one of these. */
int fuzz_status_is_error(lora_status s);

/* A failing call's lora_error must agree with its return value and carry
 * a NUL-terminated detail. */
void fuzz_check_error(lora_status st, const lora_error *err);

/* An independent strict UTF-8 check (Unicode Table 3-7) with the format's
 * extra rules: not empty, no NUL. The oracle for lora_fmt_utf8_valid. */
int fuzz_utf8_valid_ref(const uint8_t *s, size_t len);

/* ---- counting allocator -------------------------------------------------
 * Counts live bytes (a leak check that does not need LSan), aborts on any
 * single request above `justified` (the library promises to allocate no
 * more than the input justifies) and fails, with NULL, any request above
 * `fail_above` (to exercise out-of-memory paths on big claims). */
typedef struct {
    size_t live;          /* bytes currently allocated */
    size_t peak;
    size_t calls;
    size_t justified;     /* abort above this; 0 = no check */
    size_t fail_above;    /* return NULL above this; 0 = never */
} fuzz_alloc_state;

lora_allocator fuzz_alloc_hook(fuzz_alloc_state *s);
/* Abort if anything is still allocated. */
void fuzz_alloc_check_empty(const fuzz_alloc_state *s);

/* Bytes a parser may allocate for `size` input bytes: tables grow by a
 * small factor over their records, and one zlib blob may inflate 1032:1
 * (the format's bomb guard), plus zlib's own state. */
size_t fuzz_justified_bytes(size_t size);

#endif /* FUZZ_COMMON_H */
