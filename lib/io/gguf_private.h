/*
 * gguf_private.h - state shared by the GGUF reader and writer files.
 *
 * Parsing runs in steps, the first failing one decides the status:
 *   gguf_read.c         header, counts, tables, then the steps below in order
 *   gguf_read_kv.c      every KV (pass 1), general.alignment, string index (pass 2)
 *   gguf_read_tensor.c  every tensor info, then the data layout
 *   gguf_index.c        sorted name indexes: duplicates and O(log n) lookup
 *   gguf_get.c          typed accessors
 */
#ifndef LORA_IO_GGUF_PRIVATE_H
#define LORA_IO_GGUF_PRIVATE_H

#include "../common/internal.h"
#include "gguf.h"

/* Smallest encodings: a KV with a 1-byte key and a UINT8 value, a tensor
 * info with a 1-byte name and one dim. They bound counts by bytes left. */
#define GG_MIN_KV_BYTES 14u     /* 8 + 1 + 4 + 1 */
#define GG_MIN_TENSOR_BYTES 33u /* 8 + 1 + 4 + 8 + 4 + 8 */
#define GG_HEADER_BYTES 24u

/* A name (key or tensor name) as bytes of the file, with its table index. */
typedef struct {
    const uint8_t *s;
    uint64_t len;
    uint64_t index;
} gg_name_ix;

struct lora_gguf {
    lora_allocator alloc;
    const uint8_t *data;
    uint64_t size;
    uint32_t version;
    uint32_t alignment;
    uint64_t n_kv;
    uint64_t n_tensors;
    uint64_t infos_end;   /* file offset just after the last tensor info */
    uint64_t data_offset; /* PAD(infos_end, alignment) */
    lora_gguf_kv *kv;
    lora_gguf_tensor *tensors;
    gg_name_ix *kv_ix;     /* sorted by key bytes */
    gg_name_ix *tensor_ix; /* sorted by name bytes */
    char *names;           /* NUL-terminated copies of keys and names */
    uint64_t names_size;   /* bytes the copies need */
    uint64_t *str_offsets; /* file offset of every string-array element's length */
    uint64_t n_strs;
};

/* The parse in progress: resolved limits, the cursor, where errors go. */
typedef struct {
    lora_gguf *g;
    lora_gguf_limits lim;
    uint64_t pos;
    lora_error *err;
} gg_parse;

/* Fill err with "gguf: <message> (offset N)" and return st. */
lora_status gg_fail(lora_error *err, lora_status st, uint64_t offset, const char *fmt, ...) LORA_PRINTF(4, 5);
/* Copy at most 64 bytes of s into dst (cap >= 72) for a message: control
 * bytes become '?', a cut name ends with "...". */
void gg_printable(char *dst, size_t cap, const uint8_t *s, uint64_t len);

/* Bounded reads at p->pos: TRUNCATED if the bytes are not there. `what`
 * names the field in the message. */
lora_status gg_read_u32(gg_parse *p, uint32_t *v, const char *what);
lora_status gg_read_u64(gg_parse *p, uint64_t *v, const char *what);
/* A string's length (u64) and a check that its bytes are there, within
 * `max` (LIMIT_EXCEEDED). On success p->pos is past the string and *s,
 * *len describe its bytes. */
lora_status gg_read_str(gg_parse *p, uint64_t max, const uint8_t **s, uint64_t *len, const char *what);

lora_status gg_parse_kvs(gg_parse *p);
lora_status gg_check_alignment(gg_parse *p);
void gg_index_strings(lora_gguf *g);
lora_status gg_parse_tensor_infos(gg_parse *p);
lora_status gg_check_layout(gg_parse *p);
/* Build the sorted index of keys (tensors = 0) or names (tensors = 1) and
 * reject duplicates. */
lora_status gg_build_index(gg_parse *p, int tensors);
/* Position in a sorted index of `name`, or -1. */
int64_t gg_index_find(const gg_name_ix *ix, uint64_t n, const char *name);

#endif /* LORA_IO_GGUF_PRIVATE_H */
