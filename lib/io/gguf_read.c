/* GGUF parse: the header, the counts and the order of the steps. */
#include <stdio.h>
#include <string.h>
#include "gguf_private.h"

lora_status gg_fail(lora_error *err, lora_status st, uint64_t offset, const char *fmt, ...)
{
    if (!err) return st;
    char msg[LORA_ERROR_DETAIL_SIZE];
    va_list ap;
    va_start(ap, fmt);
    (void)vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return lora_error_set(err, st, offset, "gguf: %s (offset %llu)", msg, (unsigned long long)offset);
}

void gg_printable(char *dst, size_t cap, const uint8_t *s, uint64_t len)
{
    /* Names come from the file and end up on a terminal: no control bytes. */
    size_t n = len > 64 ? 64 : (size_t)len, j = 0;
    for (size_t i = 0; i < n && j + 4 < cap; i++) dst[j++] = (s[i] < 0x20 || s[i] == 0x7f) ? '?' : (char)s[i];
    if (n < len && j + 4 < cap) {
        memcpy(dst + j, "...", 3);
        j += 3;
    }
    dst[j] = '\0';
}

static lora_status need(gg_parse *p, uint64_t n, const char *what)
{
    if (n > p->g->size - p->pos)
        return gg_fail(p->err, LORA_E_TRUNCATED, p->pos, "%s needs %llu bytes, %llu left", what,
                       (unsigned long long)n, (unsigned long long)(p->g->size - p->pos));
    return LORA_OK;
}

lora_status gg_read_u32(gg_parse *p, uint32_t *v, const char *what)
{
    LORA_FORWARD_IF_ERROR(need(p, 4, what));
    *v = lora_fmt_rd32(p->g->data + p->pos);
    p->pos += 4;
    return LORA_OK;
}

lora_status gg_read_u64(gg_parse *p, uint64_t *v, const char *what)
{
    LORA_FORWARD_IF_ERROR(need(p, 8, what));
    *v = lora_fmt_rd64(p->g->data + p->pos);
    p->pos += 8;
    return LORA_OK;
}

lora_status gg_read_str(gg_parse *p, uint64_t max, const uint8_t **s, uint64_t *len, const char *what)
{
    uint64_t at = p->pos, n;
    LORA_FORWARD_IF_ERROR(gg_read_u64(p, &n, what));
    /* The limit comes first so that a 2^64-1 length is reported as what it
     * is, not as a truncation. */
    if (n > max) {
        p->pos = at;
        return gg_fail(p->err, LORA_E_LIMIT_EXCEEDED, at, "%s length %llu exceeds the limit %llu", what,
                       (unsigned long long)n, (unsigned long long)max);
    }
    lora_status st = need(p, n, what);
    if (st != LORA_OK) return st;
    *s = p->g->data + p->pos;
    *len = n;
    p->pos += n;
    return LORA_OK;
}

static void resolve_limits(const lora_gguf_limits *in, lora_gguf_limits *out)
{
    lora_gguf_limits z;
    memset(&z, 0, sizeof z);
    if (!in) in = &z;
    out->max_kv = in->max_kv ? in->max_kv : 65536;
    out->max_tensors = in->max_tensors ? in->max_tensors : (UINT64_C(1) << 20);
    out->max_string_length = in->max_string_length ? in->max_string_length : (UINT64_C(1) << 30);
    out->max_array_elements = in->max_array_elements ? in->max_array_elements : (UINT64_C(1) << 30);
    out->max_alignment = in->max_alignment ? in->max_alignment : 65536;
    out->max_name_length = in->max_name_length ? in->max_name_length : 256;
    out->flags = in->flags;
    out->reserved = in->reserved;
}

static lora_status read_magic_version(gg_parse *p)
{
    const uint8_t *d = p->g->data;
    uint64_t n = p->g->size < 4 ? p->g->size : 4;
    if (memcmp(d, LORA_GGUF_MAGIC, (size_t)n) != 0)
        return gg_fail(p->err, LORA_E_BAD_MAGIC, 0, "not a GGUF file (magic is not \"GGUF\")");
    uint32_t magic, v;
    LORA_FORWARD_IF_ERROR(gg_read_u32(p, &magic, "magic"));
    LORA_FORWARD_IF_ERROR(gg_read_u32(p, &v, "version"));
    p->g->version = v;
    /* A big-endian file's small version reads as a multiple of 2^16 here. */
    if (v != 0 && (v & 0xFFFFu) == 0)
        return gg_fail(p->err, LORA_E_UNSUPPORTED_VERSION, 4,
                       "version 0x%08x looks byte-swapped: big-endian GGUF files are not supported", v);
    if (v == 1)
        return gg_fail(p->err, LORA_E_UNSUPPORTED_VERSION, 4, "version 1 (32-bit counts) is not supported");
    if (v < 2 || v > 3)
        return gg_fail(p->err, LORA_E_UNSUPPORTED_VERSION, 4, "version %u is not supported (2 and 3 are)", v);
    return LORA_OK;
}

/* Counts are checked against the caller's limits, then against the bytes
 * that could possibly encode them, before a single table is allocated. */
static lora_status read_counts(gg_parse *p)
{
    lora_gguf *g = p->g;
    LORA_FORWARD_IF_ERROR(gg_read_u64(p, &g->n_tensors, "tensor count"));
    LORA_FORWARD_IF_ERROR(gg_read_u64(p, &g->n_kv, "KV count"));
    if (g->n_tensors > p->lim.max_tensors)
        return gg_fail(p->err, LORA_E_LIMIT_EXCEEDED, 8, "tensor count %llu exceeds the limit %llu",
                       (unsigned long long)g->n_tensors, (unsigned long long)p->lim.max_tensors);
    if (g->n_kv > p->lim.max_kv)
        return gg_fail(p->err, LORA_E_LIMIT_EXCEEDED, 16, "KV count %llu exceeds the limit %llu",
                       (unsigned long long)g->n_kv, (unsigned long long)p->lim.max_kv);
    uint64_t a, b, min;
    if (lora_fmt_mul_overflow(g->n_kv, GG_MIN_KV_BYTES, &a) ||
        lora_fmt_mul_overflow(g->n_tensors, GG_MIN_TENSOR_BYTES, &b) || lora_fmt_add_overflow(a, b, &min) ||
        min > g->size - p->pos)
        return gg_fail(p->err, LORA_E_TRUNCATED, p->pos,
                       "%llu KVs and %llu tensor infos cannot fit in the %llu bytes left",
                       (unsigned long long)g->n_kv, (unsigned long long)g->n_tensors,
                       (unsigned long long)(g->size - p->pos));
    return LORA_OK;
}

/* Owned copies of keys and names as C strings, and the string-array index. */
static lora_status copy_names(gg_parse *p)
{
    lora_gguf *g = p->g;
    if (g->names_size > SIZE_MAX || g->n_strs > SIZE_MAX / sizeof(uint64_t))
        return lora_error_set(p->err, LORA_E_LIMIT_EXCEEDED, LORA_NO_OFFSET,
                              "gguf: name tables do not fit in memory");
    g->names = lora_mem_alloc(&g->alloc, (size_t)g->names_size);
    if (g->n_strs) g->str_offsets = lora_mem_calloc(&g->alloc, (size_t)g->n_strs, sizeof(uint64_t));
    if (!g->names || (g->n_strs && !g->str_offsets))
        return lora_error_set(p->err, LORA_E_OUT_OF_MEMORY, LORA_NO_OFFSET, "gguf: cannot allocate name tables");
    char *cur = g->names;
    for (uint64_t i = 0; i < g->n_kv; i++) {
        uint64_t len = lora_fmt_rd64(g->data + g->kv[i].offset);
        memcpy(cur, g->data + g->kv[i].offset + 8, (size_t)len);
        cur[len] = '\0';
        g->kv[i].key = cur;
        cur += len + 1;
    }
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        uint64_t len = lora_fmt_rd64(g->data + g->tensors[i].info_offset);
        memcpy(cur, g->data + g->tensors[i].info_offset + 8, (size_t)len);
        cur[len] = '\0';
        g->tensors[i].name = cur;
        cur += len + 1;
    }
    gg_index_strings(g);
    return LORA_OK;
}

static lora_status alloc_tables(gg_parse *p)
{
    lora_gguf *g = p->g;
    /* Both counts are below size / 14 (read_counts), so these fit size_t. */
    g->kv = lora_mem_calloc(&g->alloc, (size_t)g->n_kv, sizeof *g->kv);
    g->kv_ix = lora_mem_calloc(&g->alloc, (size_t)g->n_kv, sizeof *g->kv_ix);
    g->tensors = lora_mem_calloc(&g->alloc, (size_t)g->n_tensors, sizeof *g->tensors);
    g->tensor_ix = lora_mem_calloc(&g->alloc, (size_t)g->n_tensors, sizeof *g->tensor_ix);
    if (!g->kv || !g->kv_ix || !g->tensors || !g->tensor_ix)
        return lora_error_set(p->err, LORA_E_OUT_OF_MEMORY, LORA_NO_OFFSET,
                              "gguf: cannot allocate %llu KVs and %llu tensors", (unsigned long long)g->n_kv,
                              (unsigned long long)g->n_tensors);
    return LORA_OK;
}

static lora_status run_steps(gg_parse *p)
{
    LORA_FORWARD_IF_ERROR(read_magic_version(p));
    LORA_FORWARD_IF_ERROR(read_counts(p));
    LORA_FORWARD_IF_ERROR(alloc_tables(p));
    LORA_FORWARD_IF_ERROR(gg_parse_kvs(p));
    LORA_FORWARD_IF_ERROR(gg_build_index(p, 0));
    LORA_FORWARD_IF_ERROR(gg_check_alignment(p));
    LORA_FORWARD_IF_ERROR(gg_parse_tensor_infos(p));
    LORA_FORWARD_IF_ERROR(gg_build_index(p, 1));
    LORA_FORWARD_IF_ERROR(gg_check_layout(p));
    return copy_names(p);
}

lora_status lora_gguf_parse(const uint8_t *data, size_t size, const lora_gguf_limits *limits,
                            const lora_allocator *alloc, lora_gguf **out, lora_error *err)
{
    lora_error_clear(err);
    if (!out) return lora_error_set(err, LORA_E_INVALID_ARGUMENT, LORA_NO_OFFSET, "gguf: out is NULL");
    *out = NULL;
    if (!data && size) return lora_error_set(err, LORA_E_INVALID_ARGUMENT, LORA_NO_OFFSET, "gguf: data is NULL");
    if (limits && limits->reserved)
        return lora_error_set(err, LORA_E_INVALID_ARGUMENT, LORA_NO_OFFSET, "gguf: limits.reserved is not zero");
    if (size == 0) return gg_fail(err, LORA_E_TRUNCATED, 0, "empty file");
    lora_allocator a = {0, 0, 0};
    if (alloc) a = *alloc;
    lora_gguf *g = lora_mem_calloc(&a, 1, sizeof *g);
    if (!g) return lora_error_set(err, LORA_E_OUT_OF_MEMORY, LORA_NO_OFFSET, "gguf: cannot allocate the parser");
    g->alloc = a;
    g->data = data;
    g->size = size;
    g->alignment = LORA_GGUF_DEFAULT_ALIGNMENT;
    gg_parse p;
    memset(&p, 0, sizeof p);
    p.g = g;
    p.err = err;
    resolve_limits(limits, &p.lim);
    lora_status st = run_steps(&p);
    if (st != LORA_OK) {
        lora_gguf_free(g);
        return st;
    }
    *out = g;
    return LORA_OK;
}

void lora_gguf_free(lora_gguf *g)
{
    if (!g) return;
    lora_allocator a = g->alloc;
    lora_mem_free(&a, g->kv);
    lora_mem_free(&a, g->kv_ix);
    lora_mem_free(&a, g->tensors);
    lora_mem_free(&a, g->tensor_ix);
    lora_mem_free(&a, g->names);
    lora_mem_free(&a, g->str_offsets);
    lora_mem_free(&a, g);
}

uint32_t lora_gguf_version(const lora_gguf *g) { return g->version; }
uint32_t lora_gguf_alignment(const lora_gguf *g) { return g->alignment; }
uint64_t lora_gguf_data_offset(const lora_gguf *g) { return g->data_offset; }
uint64_t lora_gguf_kv_count(const lora_gguf *g) { return g->n_kv; }
uint64_t lora_gguf_tensor_count(const lora_gguf *g) { return g->n_tensors; }

const lora_gguf_kv *lora_gguf_kv_at(const lora_gguf *g, uint64_t i)
{
    return i < g->n_kv ? &g->kv[i] : NULL;
}

const lora_gguf_tensor *lora_gguf_tensor_at(const lora_gguf *g, uint64_t i)
{
    return i < g->n_tensors ? &g->tensors[i] : NULL;
}
