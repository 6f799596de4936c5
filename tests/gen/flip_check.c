/*
 * flip_check.c - every single-bit flip and every truncation of a valid file
 * must be rejected (spec section 3: every byte is checked by structure or a
 * checksum).
 *
 *   flip_check FILE...
 *
 * Runs in-process with lora_reader_open_buffer + lora_reader_verify, because
 * a few KiB of input already means tens of thousands of cases. Each case gets
 * its own exactly-sized heap copy, so an over-read by even one byte is an
 * ASan report, not a silent read of the next case's bytes. A case passes when
 * the reader returns a file-content status (10..69: not OK, not an API,
 * memory or I/O status). A crash ends the process; the shell script running
 * this reports that as a failure.
 * Prints one line per file; exit 0 when every case passed, 1 otherwise, 2 on
 * usage or I/O errors.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "lora.h"

#define MAX_REPORTS 10

typedef struct {
    unsigned long cases, bad;
} tally;

static lora_status judge(const uint8_t *p, size_t n)
{
    uint8_t *copy = malloc(n ? n : 1);
    if (!copy) {
        fprintf(stderr, "flip_check: out of memory\n");
        exit(2);
    }
    if (n) memcpy(copy, p, n);
    lora_reader *r = NULL;
    lora_status st = lora_reader_open_buffer(copy, n, NULL, &r, NULL);
    if (st == LORA_OK) {
        st = lora_reader_verify(r, NULL);
        lora_reader_free(r);
    }
    free(copy);
    return st;
}

/* File-content statuses only: a flip must not look like a caller mistake,
 * an allocation failure or an I/O error. */
static int rejected(lora_status st) { return st >= 10 && st < 70; }

static void record(tally *t, const char *file, const char *what, size_t where, int bit, lora_status st)
{
    t->cases++;
    if (rejected(st)) return;
    if (t->bad++ >= MAX_REPORTS) return;
    if (bit >= 0)
        fprintf(stderr, "flip_check: %s: %s of bit %d of byte %zu gives %s\n", file, what, bit, where,
                lora_status_name(st));
    else
        fprintf(stderr, "flip_check: %s: %s to %zu bytes gives %s\n", file, what, where, lora_status_name(st));
}

static int load(const char *path, uint8_t **data, size_t *size)
{
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    size_t cap = 1 << 16, n = 0;
    uint8_t *p = malloc(cap);
    while (p) {
        n += fread(p + n, 1, cap - n, f);
        if (n < cap) break;
        uint8_t *q = realloc(p, cap *= 2);
        if (!q) free(p);
        p = q;
    }
    int bad = ferror(f) || !p;
    fclose(f);
    if (bad) {
        free(p);
        return -1;
    }
    *data = p;
    *size = n;
    return 0;
}

static int check_file(const char *path)
{
    uint8_t *data;
    size_t n;
    if (load(path, &data, &n) != 0) {
        fprintf(stderr, "flip_check: %s: cannot read\n", path);
        return 2;
    }
    lora_status st = judge(data, n);
    if (st != LORA_OK) {
        fprintf(stderr, "flip_check: %s: the original is not valid (%s)\n", path, lora_status_name(st));
        free(data);
        return 1;
    }
    tally t = {0, 0};
    for (size_t i = 0; i < n; i++) {
        for (int b = 0; b < 8; b++) {
            data[i] ^= (uint8_t)(1u << b);
            record(&t, path, "flip", i, b, judge(data, n));
            data[i] ^= (uint8_t)(1u << b);
        }
    }
    for (size_t len = 0; len < n; len++) record(&t, path, "truncation", len, -1, judge(data, len));
    free(data);
    printf("flip_check: %s: %zu bytes, %lu cases, %lu accepted\n", path, n, t.cases, t.bad);
    return t.bad ? 1 : 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: flip_check FILE...\n");
        return 2;
    }
    int worst = 0;
    for (int i = 1; i < argc; i++) {
        int rc = check_file(argv[i]);
        if (rc > worst) worst = rc;
    }
    return worst;
}
