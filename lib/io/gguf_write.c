/* GGUF writer, build phase: KVs serialized as they are added, tensor infos
 * kept until the layout is fixed by lora_gguf_writer_begin. */
#include <string.h>
#include "gguf_writer_private.h"

#define GG_MAX_KEY 65535u /* docs/gguf.md: keys are at most 2^16-1 bytes */

lora_status lora_gguf_writer_create(const lora_allocator *alloc, lora_gguf_writer **out)
{
    if (!out) return LORA_E_INVALID_ARGUMENT;
    lora_allocator a = {0, 0, 0};
    if (alloc) a = *alloc;
    lora_gguf_writer *w = lora_mem_calloc(&a, 1, sizeof *w);
    if (!w) return LORA_E_OUT_OF_MEMORY;
    w->alloc = a;
    w->alignment = LORA_GGUF_DEFAULT_ALIGNMENT;
    *out = w;
    return LORA_OK;
}

void lora_gguf_writer_free(lora_gguf_writer *w)
{
    if (!w) return;
    lora_allocator a = w->alloc;
    lora_mem_free(&a, w->kv.p);
    lora_mem_free(&a, w->names.p);
    gg_set_free(&a, &w->keys);
    gg_set_free(&a, &w->tnames);
    lora_mem_free(&a, w->t);
    lora_mem_free(&a, w);
}

/* A KV starts with its key; it is checked and written here, and the whole
 * KV is rolled back by end_kv() if anything after it fails. */
static lora_status begin_kv(lora_gguf_writer *w, const char *key, uint32_t type, size_t *mark)
{
    if (!w || !key || w->state != GG_W_BUILD) return LORA_E_INVALID_ARGUMENT;
    size_t len = strlen(key);
    if (len > GG_MAX_KEY || !lora_fmt_utf8_valid((const uint8_t *)key, len)) return LORA_E_INVALID_ARGUMENT;
    if (gg_set_has(&w->keys, w->kv.p, (const uint8_t *)key, len)) return LORA_E_DUPLICATE_NAME;
    *mark = w->kv.len;
    lora_status st = gg_buf_put_str(&w->alloc, &w->kv, key, len);
    if (st == LORA_OK) st = gg_buf_put_u32(&w->alloc, &w->kv, type);
    if (st != LORA_OK) w->kv.len = *mark;
    return st;
}

static lora_status end_kv(lora_gguf_writer *w, size_t mark, lora_status st)
{
    if (st == LORA_OK) st = gg_set_add(&w->alloc, &w->keys, w->kv.p, mark + 8, lora_fmt_rd64(w->kv.p + mark));
    if (st != LORA_OK) w->kv.len = mark;
    return st;
}

static lora_status add_fixed(lora_gguf_writer *w, const char *key, uint32_t type, const uint8_t *le, size_t n)
{
    size_t mark;
    LORA_FORWARD_IF_ERROR(begin_kv(w, key, type, &mark));
    return end_kv(w, mark, gg_buf_put(&w->alloc, &w->kv, le, n));
}

static int key_is_alignment(const char *key);

lora_status lora_gguf_writer_add_str(lora_gguf_writer *w, const char *key, const char *s, size_t len)
{
    if ((!s && len) || key_is_alignment(key)) return LORA_E_INVALID_ARGUMENT;
    size_t mark;
    LORA_FORWARD_IF_ERROR(begin_kv(w, key, LORA_GGUF_TYPE_STRING, &mark));
    return end_kv(w, mark, gg_buf_put_str(&w->alloc, &w->kv, s, len));
}

/* general.alignment decides the layout, so only a value llama.cpp and our
 * reader both accept may be set. */
static int alignment_ok(uint32_t v) { return v != 0 && (v & (v - 1)) == 0 && v <= 65536; }

lora_status lora_gguf_writer_add_u32(lora_gguf_writer *w, const char *key, uint32_t v)
{
    int is_align = key && strcmp(key, LORA_GGUF_KEY_ALIGNMENT) == 0;
    if (is_align && !alignment_ok(v)) return LORA_E_INVALID_ARGUMENT;
    uint8_t b[4];
    lora_fmt_wr32(b, v);
    lora_status st = add_fixed(w, key, LORA_GGUF_TYPE_UINT32, b, 4);
    if (st == LORA_OK && is_align) w->alignment = v;
    return st;
}

/* Any other type under general.alignment would make the file unreadable. */
static int key_is_alignment(const char *key) { return key && strcmp(key, LORA_GGUF_KEY_ALIGNMENT) == 0; }

lora_status lora_gguf_writer_add_i32(lora_gguf_writer *w, const char *key, int32_t v)
{
    if (key_is_alignment(key)) return LORA_E_INVALID_ARGUMENT;
    uint8_t b[4];
    lora_fmt_wr32(b, (uint32_t)v);
    return add_fixed(w, key, LORA_GGUF_TYPE_INT32, b, 4);
}

lora_status lora_gguf_writer_add_u64(lora_gguf_writer *w, const char *key, uint64_t v)
{
    if (key_is_alignment(key)) return LORA_E_INVALID_ARGUMENT;
    uint8_t b[8];
    lora_fmt_wr64(b, v);
    return add_fixed(w, key, LORA_GGUF_TYPE_UINT64, b, 8);
}

lora_status lora_gguf_writer_add_f32(lora_gguf_writer *w, const char *key, float v)
{
    if (key_is_alignment(key)) return LORA_E_INVALID_ARGUMENT;
    uint32_t u;
    memcpy(&u, &v, 4);
    uint8_t b[4];
    lora_fmt_wr32(b, u);
    return add_fixed(w, key, LORA_GGUF_TYPE_FLOAT32, b, 4);
}

lora_status lora_gguf_writer_add_bool(lora_gguf_writer *w, const char *key, int v)
{
    if (key_is_alignment(key)) return LORA_E_INVALID_ARGUMENT;
    uint8_t b = v ? 1 : 0;
    return add_fixed(w, key, LORA_GGUF_TYPE_BOOL, &b, 1);
}

/* An array of 4-byte elements from host values, converted one by one. */
static lora_status add_arr32(lora_gguf_writer *w, const char *key, uint32_t elem, const void *v, size_t n)
{
    if ((!v && n) || key_is_alignment(key)) return LORA_E_INVALID_ARGUMENT;
    size_t mark;
    LORA_FORWARD_IF_ERROR(begin_kv(w, key, LORA_GGUF_TYPE_ARRAY, &mark));
    lora_status st = gg_buf_put_u32(&w->alloc, &w->kv, elem);
    if (st == LORA_OK) st = gg_buf_put_u64(&w->alloc, &w->kv, n);
    const uint8_t *src = v;
    for (size_t i = 0; i < n && st == LORA_OK; i++) {
        uint32_t u;
        memcpy(&u, src + 4 * i, 4);
        st = gg_buf_put_u32(&w->alloc, &w->kv, u);
    }
    return end_kv(w, mark, st);
}

lora_status lora_gguf_writer_add_arr_u32(lora_gguf_writer *w, const char *key, const uint32_t *v, size_t n)
{
    return add_arr32(w, key, LORA_GGUF_TYPE_UINT32, v, n);
}

lora_status lora_gguf_writer_add_arr_i32(lora_gguf_writer *w, const char *key, const int32_t *v, size_t n)
{
    return add_arr32(w, key, LORA_GGUF_TYPE_INT32, v, n);
}

lora_status lora_gguf_writer_add_arr_f32(lora_gguf_writer *w, const char *key, const float *v, size_t n)
{
    return add_arr32(w, key, LORA_GGUF_TYPE_FLOAT32, v, n);
}

lora_status lora_gguf_writer_add_arr_str(lora_gguf_writer *w, const char *key, const char *const *s,
                                         const size_t *lens, size_t n)
{
    if ((!s && n) || key_is_alignment(key)) return LORA_E_INVALID_ARGUMENT;
    for (size_t i = 0; i < n; i++)
        if (!s[i] && (!lens || lens[i])) return LORA_E_INVALID_ARGUMENT;
    size_t mark;
    LORA_FORWARD_IF_ERROR(begin_kv(w, key, LORA_GGUF_TYPE_ARRAY, &mark));
    lora_status st = gg_buf_put_u32(&w->alloc, &w->kv, LORA_GGUF_TYPE_STRING);
    if (st == LORA_OK) st = gg_buf_put_u64(&w->alloc, &w->kv, n);
    for (size_t i = 0; i < n && st == LORA_OK; i++)
        st = gg_buf_put_str(&w->alloc, &w->kv, s[i], lens ? lens[i] : strlen(s[i]));
    return end_kv(w, mark, st);
}

lora_status lora_gguf_writer_copy_kv(lora_gguf_writer *w, const lora_gguf *g, const lora_gguf_kv *kv)
{
    if (!g || !kv) return LORA_E_INVALID_ARGUMENT;
    /* The parse accepted the alignment under the reader's limit, which the
     * caller may have raised: hold it to the writer's rule too. */
    if (key_is_alignment(kv->key)) {
        if (kv->type != LORA_GGUF_TYPE_UINT32) return LORA_E_INVALID_ARGUMENT;
        return lora_gguf_writer_add_u32(w, kv->key, lora_fmt_rd32(g->data + kv->value_offset));
    }
    if (kv->value_size > SIZE_MAX) return LORA_E_LIMIT_EXCEEDED;
    size_t mark;
    LORA_FORWARD_IF_ERROR(begin_kv(w, kv->key, kv->type, &mark));
    return end_kv(w, mark, gg_buf_put(&w->alloc, &w->kv, g->data + kv->value_offset, (size_t)kv->value_size));
}

static lora_status grow_tensors(lora_gguf_writer *w)
{
    if (w->n_t < w->cap_t) return LORA_OK;
    uint64_t cap = w->cap_t ? w->cap_t * 2 : 16;
    gg_wtensor *t = lora_mem_calloc(&w->alloc, (size_t)cap, sizeof *t);
    if (!t) return LORA_E_OUT_OF_MEMORY;
    if (w->n_t) memcpy(t, w->t, (size_t)w->n_t * sizeof *t);
    lora_mem_free(&w->alloc, w->t);
    w->t = t;
    w->cap_t = cap;
    return LORA_OK;
}

lora_status lora_gguf_writer_add_tensor(lora_gguf_writer *w, const char *name, uint32_t type, uint32_t n_dims,
                                        const uint64_t *ne)
{
    if (!w || !name || !ne || w->state != GG_W_BUILD) return LORA_E_INVALID_ARGUMENT;
    size_t len = strlen(name);
    if (len > LORA_GGUF_WRITER_MAX_NAME || !lora_fmt_utf8_valid((const uint8_t *)name, len))
        return LORA_E_INVALID_ARGUMENT;
    gg_wtensor t;
    memset(&t, 0, sizeof t);
    LORA_FORWARD_IF_ERROR(lora_ggml_nbytes(type, n_dims, ne, &t.nbytes));
    if (gg_set_has(&w->tnames, w->names.p, (const uint8_t *)name, len)) return LORA_E_DUPLICATE_NAME;
    LORA_FORWARD_IF_ERROR(grow_tensors(w));
    size_t mark = w->names.len;
    LORA_FORWARD_IF_ERROR(gg_buf_put(&w->alloc, &w->names, name, len));
    lora_status st = gg_set_add(&w->alloc, &w->tnames, w->names.p, mark, len);
    if (st != LORA_OK) {
        w->names.len = mark;
        return st;
    }
    t.name_off = mark;
    t.name_len = (uint32_t)len;
    t.n_dims = n_dims;
    t.type = type;
    for (uint32_t d = 0; d < LORA_GGUF_MAX_DIMS; d++) t.ne[d] = d < n_dims ? ne[d] : 1;
    w->t[w->n_t++] = t;
    return LORA_OK;
}
