/*
 * safetensors_private.h - pieces shared by the lib/io/safetensors*.c files.
 *
 *   safetensors.c         framing, JSON, the steps of a parse, lifetime
 *   safetensors_scan.c    bounds checked on the header text before jansson
 *   safetensors_entry.c   one tensor entry and __metadata__ -> descriptors
 *   safetensors_layout.c  tiling of the data section, the name index
 *   safetensors_diag.c    error details: printable names, key offsets
 *   safetensors_dtype.c   the dtype table
 *   safetensors_header.c  the writer's header JSON
 *   safetensors_writer.c  the streaming writer
 *   safetensors_file.c    sinks (fd, lib/write's afile), crash-safe whole-file write
 */
#ifndef LORA_IO_SAFETENSORS_PRIVATE_H
#define LORA_IO_SAFETENSORS_PRIVATE_H

#include <jansson.h>
#include "safetensors.h"

/* json_error_code() appeared in 2.11; jansson's own depth cap (the
 * CVE-2016-4425 fix) in 2.8. safetensors_scan.c caps depth far lower before
 * jansson runs; jansson's cap stays a second line of defence. */
#if JANSSON_VERSION_HEX < 0x020b00
#  error "jansson >= 2.11 is required"
#endif
#if !defined(JSON_PARSER_MAX_DEPTH) || JSON_PARSER_MAX_DEPTH > 4096
#  error "jansson must cap its parse depth (JSON_PARSER_MAX_DEPTH <= 4096)"
#endif

#define LORA_ST_META_KEY "__metadata__"

/* Parse state shared by the steps. */
typedef struct {
    const uint8_t *data;     /* whole file */
    uint64_t size;
    uint64_t n;              /* header JSON length */
    const lora_st_limits *lim;
    lora_st_file *f;
    char *pool;              /* next free byte of f->strings_ */
} lora_st_parse_ctx;

/* safetensors_scan.c: one string-aware pass over the header text before
 * jansson sees it: nesting depth, top-level entry count and a budget of
 * JSON values, so that jansson's recursion and allocations stay bounded by
 * the caller's limits. */
lora_status lora_st_prescan(const uint8_t *json, uint64_t n, const lora_st_limits *lim, lora_error *err);

/* safetensors_entry.c: fill f->tensors[i] from one header entry (name
 * and value from jansson); name copied into the pool. */
lora_status lora_st_read_entry(lora_st_parse_ctx *c, uint32_t i, const char *name, size_t name_len,
                               const json_t *v, lora_error *err);
/* Fill f->meta from the __metadata__ value (an object of strings). */
lora_status lora_st_read_meta(lora_st_parse_ctx *c, json_t *v, lora_error *err);

/* safetensors_layout.c: check the tiling (fills f->by_offset) and set the
 * data pointers; build the sorted name index. */
lora_status lora_st_check_layout(lora_st_parse_ctx *c, lora_error *err);
void lora_st_index_names(lora_st_file *f);

/* safetensors_diag.c */
#define LORA_ST_SHOW_NAME 112
/* Printable form of a name for a detail: control bytes as '?', cut at
 * ~100 bytes on a UTF-8 boundary with "..." appended. */
void lora_st_show_name(char out[LORA_ST_SHOW_NAME], const char *name, size_t len);
/* File offset of the top-level key whose raw (unescaped) spelling is
 * `name`, in a header jansson has already accepted; 8 (the header's start)
 * when it is spelled with escapes. */
uint64_t lora_st_key_offset(const uint8_t *file, uint64_t n, const char *name, size_t len);
/* lora_error_set with "safetensors: tensor '<name>': <msg> (offset N)". */
lora_status lora_st_tensor_error(lora_error *err, lora_status st, uint64_t offset, const char *name,
                                 size_t name_len, const char *fmt, ...) LORA_PRINTF(6, 7);

/* Overflow-checked helpers over uint64. */
int lora_st_shape_bytes(const uint64_t *shape, uint32_t ndim, uint32_t elem_size, uint64_t *numel,
                        uint64_t *bytes);

#endif /* LORA_IO_SAFETENSORS_PRIVATE_H */
