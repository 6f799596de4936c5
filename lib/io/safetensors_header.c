/* The writer's header: the exact bytes the reference writer produces for
 * the same tensors in the same order (serde_json compact output), padded
 * with spaces so that the data section starts 8-aligned. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "safetensors_private.h"

/* Output that only counts when p is NULL: the same code measures the
 * header, then writes it into a buffer of exactly that size. */
typedef struct {
    uint8_t *p;
    uint64_t len;
} jbuf;

static void put(jbuf *b, const void *s, size_t n)
{
    if (b->p) memcpy(b->p + b->len, s, n);
    b->len += n;
}

static void put_c(jbuf *b, char c) { put(b, &c, 1); }

static void put_u64(jbuf *b, uint64_t v)
{
    char tmp[24];
    int n = snprintf(tmp, sizeof tmp, "%llu", (unsigned long long)v);
    put(b, tmp, (size_t)n);
}

/* serde_json's escaping: the two-character forms it knows, \u00xx with
 * lowercase hex for the other controls, everything else (DEL and all
 * non-ASCII included) as is. */
static void put_str(jbuf *b, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    put_c(b, '"');
    for (; *s; s++) {
        uint8_t c = (uint8_t)*s;
        char esc = c == '"' ? '"' : c == '\\' ? '\\' : c == '\b' ? 'b' : c == '\f' ? 'f'
                 : c == '\n' ? 'n' : c == '\r' ? 'r' : c == '\t' ? 't' : 0;
        if (esc) {
            char two[2] = {'\\', esc};
            put(b, two, 2);
        } else if (c < 0x20) {
            char six[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            put(b, six, 6);
        } else {
            put_c(b, (char)c);
        }
    }
    put_c(b, '"');
}

static void put_entry(jbuf *b, const lora_st_entry *t, uint64_t begin)
{
    put_str(b, t->name);
    put(b, ":{\"dtype\":", 10);
    put_str(b, lora_st_dtype_name(t->dtype));
    put(b, ",\"shape\":[", 10);
    for (uint32_t d = 0; d < t->ndim; d++) {
        if (d) put_c(b, ',');
        put_u64(b, t->shape[d]);
    }
    put(b, "],\"data_offsets\":[", 18);
    put_u64(b, begin);
    put_c(b, ',');
    put_u64(b, begin + t->size);
    put(b, "]}", 2);
}

static void put_header(jbuf *b, const lora_st_entry *t, uint32_t count, const lora_st_pair *meta, uint32_t mcount)
{
    put_c(b, '{');
    if (mcount) {
        put(b, "\"__metadata__\":{", 16);
        for (uint32_t i = 0; i < mcount; i++) {
            if (i) put_c(b, ',');
            put_str(b, meta[i].key);
            put_c(b, ':');
            put_str(b, meta[i].value);
        }
        put_c(b, '}');
    }
    uint64_t off = 0;
    for (uint32_t i = 0; i < count; i++) {
        if (i || mcount) put_c(b, ',');
        put_entry(b, &t[i], off);
        off += t[i].size; /* bounded by INT64_MAX in check_tensor */
    }
    put_c(b, '}');
}

static lora_status arg_error(lora_error *err, lora_status st, const char *what, uint32_t i, const char *name,
                             const char *msg)
{
    char shown[LORA_ST_SHOW_NAME];
    lora_st_show_name(shown, name ? name : "", name ? strlen(name) : 0);
    return lora_error_set(err, st, LORA_NO_OFFSET, "safetensors writer: %s %u '%s': %s", what, i, shown, msg);
}

static int utf8_ok(const char *s)
{
    size_t len = strlen(s);
    return len == 0 || lora_fmt_utf8_valid((const uint8_t *)s, len);
}

static lora_status check_tensor(const lora_st_entry *t, uint32_t i, uint64_t *running, lora_error *err)
{
    if (!t->name) return arg_error(err, LORA_E_INVALID_ARGUMENT, "tensor", i, NULL, "name is NULL");
    if (!utf8_ok(t->name)) return arg_error(err, LORA_E_BAD_STRING, "tensor", i, t->name, "name is not valid UTF-8");
    if (strcmp(t->name, LORA_ST_META_KEY) == 0)
        return arg_error(err, LORA_E_INVALID_ARGUMENT, "tensor", i, t->name, "reserved name");
    uint32_t es = lora_st_dtype_size(t->dtype);
    if (!es) return arg_error(err, LORA_E_INVALID_ARGUMENT, "tensor", i, t->name, "invalid dtype");
    if (t->ndim > LORA_ST_MAX_DIMS) return arg_error(err, LORA_E_BAD_SHAPE, "tensor", i, t->name, "rank above 8");
    /* Readers (jansson, and serde on 64-bit) take integers up to INT64_MAX. */
    for (uint32_t d = 0; d < t->ndim; d++)
        if (t->shape[d] > (uint64_t)INT64_MAX)
            return arg_error(err, LORA_E_BAD_SHAPE, "tensor", i, t->name, "dimension above INT64_MAX");
    uint64_t numel, bytes, end;
    if (lora_st_shape_bytes(t->shape, t->ndim, es, &numel, &bytes))
        return arg_error(err, LORA_E_BAD_SHAPE, "tensor", i, t->name, "byte size overflows 64 bits");
    if (bytes != t->size)
        return arg_error(err, LORA_E_BAD_SIZE, "tensor", i, t->name, "size differs from dtype x shape");
    if (lora_fmt_add_overflow(*running, t->size, &end) || end > (uint64_t)INT64_MAX)
        return arg_error(err, LORA_E_LIMIT_EXCEEDED, "tensor", i, t->name, "data section above INT64_MAX bytes");
    *running = end;
    return LORA_OK;
}

static int str_ix_cmp(const void *a, const void *b, void *ctx)
{
    const char *const *names = ctx;
    uint32_t i = *(const uint32_t *)a, j = *(const uint32_t *)b;
    int r = strcmp(names[i], names[j]);
    return r ? r : (i < j ? -1 : i > j);
}

/* Names gathered by the caller into `names`; `ix` is scratch. Returns the
 * later index of the first duplicate pair found, or UINT32_MAX. */
static uint32_t find_duplicate(const char **names, uint32_t *ix, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) ix[i] = i;
    if (n > 1) qsort_r(ix, n, sizeof *ix, str_ix_cmp, names);
    for (uint32_t k = 1; k < n; k++)
        if (strcmp(names[ix[k - 1]], names[ix[k]]) == 0) return ix[k] > ix[k - 1] ? ix[k] : ix[k - 1];
    return UINT32_MAX;
}

static lora_status check_unique(const lora_allocator *a, const lora_st_entry *t, uint32_t count,
                                const lora_st_pair *meta, uint32_t mcount, lora_error *err)
{
    uint32_t most = count > mcount ? count : mcount;
    const char **names = lora_mem_calloc(a, most, sizeof *names);
    uint32_t *ix = lora_mem_calloc(a, most, sizeof *ix);
    lora_status st = LORA_OK;
    if (!names || !ix) {
        st = lora_error_set(err, LORA_E_OUT_OF_MEMORY, LORA_NO_OFFSET, "safetensors writer: out of memory");
    } else {
        for (uint32_t i = 0; i < count; i++) names[i] = t[i].name;
        uint32_t d = find_duplicate(names, ix, count);
        if (d != UINT32_MAX) st = arg_error(err, LORA_E_DUPLICATE_NAME, "tensor", d, t[d].name, "duplicate name");
        for (uint32_t i = 0; st == LORA_OK && i < mcount; i++) names[i] = meta[i].key;
        d = st == LORA_OK ? find_duplicate(names, ix, mcount) : UINT32_MAX;
        if (d != UINT32_MAX)
            st = arg_error(err, LORA_E_DUPLICATE_NAME, "metadata key", d, meta[d].key, "duplicate key");
    }
    lora_mem_free(a, names);
    lora_mem_free(a, ix);
    return st;
}

static lora_status check_inputs(const lora_allocator *a, const lora_st_entry *t, uint32_t count,
                                const lora_st_pair *meta, uint32_t mcount, uint64_t *data_size, lora_error *err)
{
    if ((count && !t) || (mcount && !meta))
        return lora_error_set(err, LORA_E_INVALID_ARGUMENT, LORA_NO_OFFSET, "safetensors writer: NULL array");
    uint64_t running = 0;
    for (uint32_t i = 0; i < count; i++) LORA_FORWARD_IF_ERROR(check_tensor(&t[i], i, &running, err));
    for (uint32_t i = 0; i < mcount; i++) {
        const lora_st_pair *m = &meta[i];
        if (!m->key || !m->value)
            return arg_error(err, LORA_E_INVALID_ARGUMENT, "metadata key", i, m->key, "key or value is NULL");
        if (!utf8_ok(m->key) || !utf8_ok(m->value))
            return arg_error(err, LORA_E_BAD_STRING, "metadata key", i, m->key, "key or value is not valid UTF-8");
    }
    LORA_FORWARD_IF_ERROR(check_unique(a, t, count, meta, mcount, err));
    *data_size = running;
    return LORA_OK;
}

lora_status lora_st_header_build(const lora_allocator *a, const lora_st_entry *tensors, uint32_t count,
                                 const lora_st_pair *meta, uint32_t meta_count, uint8_t **header,
                                 size_t *header_size, uint64_t *data_size, lora_error *err)
{
    lora_error_clear(err);
    if (!header || !header_size || !data_size)
        return lora_error_set(err, LORA_E_INVALID_ARGUMENT, LORA_NO_OFFSET, "safetensors writer: NULL argument");
    *header = NULL;
    LORA_FORWARD_IF_ERROR(check_inputs(a, tensors, count, meta, meta_count, data_size, err));
    jbuf b = {NULL, 0};
    put_header(&b, tensors, count, meta, meta_count);
    uint64_t n = (b.len + 7) & ~(uint64_t)7; /* b.len is far below 2^64: each byte came from memory, at most x6 */
    if (n > LORA_ST_DEFAULT_MAX_HEADER_SIZE)
        return lora_error_set(err, LORA_E_LIMIT_EXCEEDED, LORA_NO_OFFSET,
                              "safetensors writer: header of %llu bytes exceeds the readers' limit of %llu",
                              (unsigned long long)n, (unsigned long long)LORA_ST_DEFAULT_MAX_HEADER_SIZE);
    uint8_t *out = lora_mem_alloc(a, (size_t)(8 + n));
    if (!out) return lora_error_set(err, LORA_E_OUT_OF_MEMORY, LORA_NO_OFFSET, "safetensors writer: out of memory");
    lora_fmt_wr64(out, n);
    jbuf w = {out + 8, 0};
    put_header(&w, tensors, count, meta, meta_count);
    memset(out + 8 + w.len, ' ', (size_t)(n - w.len));
    *header = out;
    *header_size = (size_t)(8 + n);
    return LORA_OK;
}
