/*
 * fuzz_gguf - lora_gguf_parse and every typed getter on untrusted bytes.
 *
 * On an accepted file:
 *   - each KV is found by its key; each scalar getter succeeds exactly when
 *     the KV has its type (BAD_METADATA otherwise); each array view opens
 *     exactly for its element type, and elements are read through every
 *     accessor (the wrong one is INVALID_ARGUMENT, as is an index past the
 *     end); string values and array strings lie inside the buffer;
 *   - tensors: found by name, offsets aligned, data inside the buffer, byte
 *     size as lora_ggml_nbytes computes it;
 *   - tighter limits never accept what the defaults reject, and allowing
 *     trailing bytes never rejects what the defaults accept;
 *   - rewriting the file with our writer (every KV copied, every tensor
 *     streamed) and parsing it again gives the same KVs byte for byte and
 *     the same tensors and data.
 */
#include <stdlib.h>
#include <string.h>
#include "support/fuzz_common.h"
#include "io/gguf.h"

#define MAX_ELEMS_CHECKED 64u

/* The range lies in the input, and its ends can be read (ASan). */
static void touch(const uint8_t *data, size_t size, const void *p, uint64_t len)
{
    const uint8_t *b = p;
    FUZZ_ASSERT(b >= data && len <= size && (size_t)(b - data) <= size - len);
    volatile uint8_t sink = 0;
    if (len) sink ^= b[0] ^ b[len - 1];
    (void)sink;
}

static void check_array(const lora_gguf *g, const lora_gguf_kv *kv, const uint8_t *data, size_t size)
{
    for (uint32_t et = 0; et < LORA_GGUF_TYPE_COUNT + 1; et++) {
        lora_gguf_array a;
        lora_status st = lora_gguf_kv_array(g, kv, et, &a, NULL);
        int want = kv->type == LORA_GGUF_TYPE_ARRAY && kv->elem_type == et;
        FUZZ_ASSERT((st == LORA_OK) == want);
        if (!want) continue;
        FUZZ_ASSERT(a.count == kv->count);
        uint64_t n = a.count < MAX_ELEMS_CHECKED ? a.count : MAX_ELEMS_CHECKED;
        for (uint64_t k = 0; k <= n; k++) {
            uint64_t i = k < n ? k : a.count; /* then one past the end */
            int in = i < a.count;
            uint32_t u;
            int32_t s;
            float f;
            lora_gguf_str str;
            FUZZ_ASSERT((lora_gguf_array_u32(&a, i, &u) == LORA_OK) == (in && et == LORA_GGUF_TYPE_UINT32));
            FUZZ_ASSERT((lora_gguf_array_i32(&a, i, &s) == LORA_OK) == (in && et == LORA_GGUF_TYPE_INT32));
            FUZZ_ASSERT((lora_gguf_array_f32(&a, i, &f) == LORA_OK) == (in && et == LORA_GGUF_TYPE_FLOAT32));
            lora_status ss = lora_gguf_array_str(&a, i, &str);
            FUZZ_ASSERT((ss == LORA_OK) == (in && et == LORA_GGUF_TYPE_STRING));
            if (ss == LORA_OK) touch(data, size, str.ptr, str.len);
        }
        if (et == LORA_GGUF_TYPE_STRING && a.count > 0) {
            lora_gguf_str last;
            FUZZ_ASSERT(lora_gguf_array_str(&a, a.count - 1, &last) == LORA_OK);
            touch(data, size, last.ptr, last.len);
        }
    }
}

static void check_kvs(const lora_gguf *g, const uint8_t *data, size_t size)
{
    for (uint64_t i = 0; i < lora_gguf_kv_count(g); i++) {
        const lora_gguf_kv *kv = lora_gguf_kv_at(g, i);
        FUZZ_ASSERT(kv && kv->key && strlen(kv->key) >= 1);
        FUZZ_ASSERT(lora_gguf_find_kv(g, kv->key) == kv);
        touch(data, size, data + kv->value_offset, kv->value_size);
        lora_gguf_str str;
        uint32_t u32;
        int32_t i32;
        uint64_t u64;
        float f32;
        int b;
        lora_error err;
        struct { lora_status st; uint32_t type; } got[] = {
            {lora_gguf_get_str(g, kv->key, &str, &err), LORA_GGUF_TYPE_STRING},
            {lora_gguf_get_u32(g, kv->key, &u32, &err), LORA_GGUF_TYPE_UINT32},
            {lora_gguf_get_i32(g, kv->key, &i32, &err), LORA_GGUF_TYPE_INT32},
            {lora_gguf_get_u64(g, kv->key, &u64, &err), LORA_GGUF_TYPE_UINT64},
            {lora_gguf_get_f32(g, kv->key, &f32, &err), LORA_GGUF_TYPE_FLOAT32},
            {lora_gguf_get_bool(g, kv->key, &b, &err), LORA_GGUF_TYPE_BOOL},
            {lora_gguf_kv_str(g, kv, &str, &err), LORA_GGUF_TYPE_STRING},
            {lora_gguf_kv_u32(g, kv, &u32, &err), LORA_GGUF_TYPE_UINT32},
            {lora_gguf_kv_f32(g, kv, &f32, &err), LORA_GGUF_TYPE_FLOAT32},
        };
        for (size_t k = 0; k < sizeof got / sizeof got[0]; k++)
            FUZZ_ASSERT(got[k].st == (kv->type == got[k].type ? LORA_OK : LORA_E_BAD_METADATA));
        if (kv->type == LORA_GGUF_TYPE_STRING) {
            FUZZ_ASSERT(lora_gguf_kv_str(g, kv, &str, NULL) == LORA_OK);
            touch(data, size, str.ptr, str.len);
        }
        if (kv->type == LORA_GGUF_TYPE_BOOL)
            FUZZ_ASSERT(lora_gguf_get_bool(g, kv->key, &b, NULL) == LORA_OK && (b == 0 || b == 1));
        check_array(g, kv, data, size);
    }
    FUZZ_ASSERT(lora_gguf_kv_at(g, lora_gguf_kv_count(g)) == NULL);
    uint32_t u;
    FUZZ_ASSERT(lora_gguf_get_u32(g, "", &u, NULL) == LORA_E_NOT_FOUND);
}

static void check_tensors(const lora_gguf *g, const uint8_t *data, size_t size)
{
    uint32_t align = lora_gguf_alignment(g);
    FUZZ_ASSERT(align >= 1 && (align & (align - 1)) == 0);
    for (uint64_t i = 0; i < lora_gguf_tensor_count(g); i++) {
        const lora_gguf_tensor *t = lora_gguf_tensor_at(g, i);
        FUZZ_ASSERT(t && lora_gguf_find_tensor(g, t->name) == t);
        FUZZ_ASSERT(t->n_dims >= 1 && t->n_dims <= LORA_GGUF_MAX_DIMS && t->offset % align == 0);
        uint64_t nbytes = 0;
        FUZZ_ASSERT(lora_ggml_nbytes(t->type, t->n_dims, t->ne, &nbytes) == LORA_OK && nbytes == t->nbytes);
        if (t->nbytes) {
            FUZZ_ASSERT(t->data == data + lora_gguf_data_offset(g) + t->offset);
            touch(data, size, t->data, t->nbytes);
        }
    }
    FUZZ_ASSERT(lora_gguf_tensor_at(g, lora_gguf_tensor_count(g)) == NULL);
}

typedef struct {
    uint8_t *p;
    size_t len, cap;
} membuf;

static lora_status mem_sink(void *ctx, const void *buf, size_t n, lora_error *err)
{
    (void)err;
    membuf *m = ctx;
    if (m->len + n > m->cap) {
        size_t cap = (m->len + n) * 2;
        uint8_t *p = realloc(m->p, cap);
        FUZZ_ASSERT(p != NULL);
        m->p = p;
        m->cap = cap;
    }
    if (n) memcpy(m->p + m->len, buf, n);
    m->len += n;
    return LORA_OK;
}

static void check_rewrite(const lora_gguf *g, const uint8_t *data)
{
    for (uint64_t i = 0; i < lora_gguf_tensor_count(g); i++)
        if (strlen(lora_gguf_tensor_at(g, i)->name) > LORA_GGUF_WRITER_MAX_NAME) return; /* writer keeps to ggml's 63 */
    lora_gguf_writer *w = NULL;
    FUZZ_ASSERT(lora_gguf_writer_create(NULL, &w) == LORA_OK);
    for (uint64_t i = 0; i < lora_gguf_kv_count(g); i++)
        FUZZ_ASSERT(lora_gguf_writer_copy_kv(w, g, lora_gguf_kv_at(g, i)) == LORA_OK);
    for (uint64_t i = 0; i < lora_gguf_tensor_count(g); i++) {
        const lora_gguf_tensor *t = lora_gguf_tensor_at(g, i);
        FUZZ_ASSERT(lora_gguf_writer_add_tensor(w, t->name, t->type, t->n_dims, t->ne) == LORA_OK);
    }
    membuf out = {NULL, 0, 0};
    lora_error err;
    FUZZ_ASSERT(lora_gguf_writer_begin(w, mem_sink, &out, &err) == LORA_OK);
    for (uint64_t i = 0; i < lora_gguf_tensor_count(g); i++) {
        const lora_gguf_tensor *t = lora_gguf_tensor_at(g, i);
        if (t->nbytes) FUZZ_ASSERT(lora_gguf_writer_write_data(w, t->data, (size_t)t->nbytes, &err) == LORA_OK);
    }
    FUZZ_ASSERT(lora_gguf_writer_finish(w, &err) == LORA_OK);
    lora_gguf_writer_free(w);

    lora_gguf *h = NULL;
    FUZZ_ASSERT(lora_gguf_parse(out.p, out.len, NULL, NULL, &h, &err) == LORA_OK);
    FUZZ_ASSERT(lora_gguf_kv_count(h) == lora_gguf_kv_count(g));
    FUZZ_ASSERT(lora_gguf_tensor_count(h) == lora_gguf_tensor_count(g));
    FUZZ_ASSERT(lora_gguf_alignment(h) == lora_gguf_alignment(g));
    for (uint64_t i = 0; i < lora_gguf_kv_count(g); i++) {
        const lora_gguf_kv *a = lora_gguf_kv_at(g, i), *b = lora_gguf_kv_at(h, i);
        FUZZ_ASSERT(strcmp(a->key, b->key) == 0 && a->type == b->type && a->elem_type == b->elem_type);
        FUZZ_ASSERT(a->count == b->count && a->value_size == b->value_size);
        FUZZ_ASSERT(memcmp(data + a->value_offset, out.p + b->value_offset, (size_t)a->value_size) == 0);
    }
    for (uint64_t i = 0; i < lora_gguf_tensor_count(g); i++) {
        const lora_gguf_tensor *a = lora_gguf_tensor_at(g, i), *b = lora_gguf_tensor_at(h, i);
        FUZZ_ASSERT(strcmp(a->name, b->name) == 0 && a->type == b->type && a->n_dims == b->n_dims);
        FUZZ_ASSERT(memcmp(a->ne, b->ne, sizeof a->ne) == 0 && a->nbytes == b->nbytes && a->offset == b->offset);
        if (a->nbytes) FUZZ_ASSERT(memcmp(a->data, b->data, (size_t)a->nbytes) == 0);
    }
    lora_gguf_free(h);
    free(out.p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_alloc_state as = {0};
    as.justified = fuzz_justified_bytes(size);
    lora_allocator a = fuzz_alloc_hook(&as);
    lora_gguf *g = NULL;
    lora_error err;
    lora_status st = lora_gguf_parse(data, size, NULL, &a, &g, &err);
    if (st != LORA_OK) {
        fuzz_check_error(st, &err);
        FUZZ_ASSERT(g == NULL);
    } else {
        FUZZ_ASSERT(lora_gguf_version(g) == 2 || lora_gguf_version(g) == 3);
        check_kvs(g, data, size);
        check_tensors(g, data, size);
        check_rewrite(g, data);
        lora_gguf_free(g);
    }
    fuzz_alloc_check_empty(&as);

    lora_gguf_limits small;
    memset(&small, 0, sizeof small);
    small.max_kv = 8;
    small.max_tensors = 8;
    small.max_string_length = 64;
    small.max_array_elements = 64;
    small.max_alignment = 64;
    small.max_name_length = 32;
    lora_status st_small = lora_gguf_parse(data, size, &small, NULL, &g, NULL);
    lora_gguf_free(g);
    if (st != LORA_OK) FUZZ_ASSERT(st_small != LORA_OK);
    else FUZZ_ASSERT(st_small == LORA_OK || st_small == LORA_E_LIMIT_EXCEEDED);

    lora_gguf_limits loose;
    memset(&loose, 0, sizeof loose);
    loose.flags = LORA_GGUF_ALLOW_TRAILING_BYTES;
    lora_status st_loose = lora_gguf_parse(data, size, &loose, NULL, &g, NULL);
    lora_gguf_free(g);
    if (st == LORA_OK) FUZZ_ASSERT(st_loose == LORA_OK);
    return 0;
}
