/*
 * fuzz_safetensors - lora_st_parse on untrusted bytes.
 *
 * Properties checked on every accepted file, from the raw result alone:
 *   - the tensors tile the data section exactly (sorted by_offset), each
 *     data pointer is file + 8 + n + begin and its size is numel x element
 *     size; every first and last tensor byte is touched (ASan);
 *   - names hold no NUL, lora_st_find finds each tensor by its name, and
 *     lora_st_meta_find each metadata key;
 *   - tighter limits never accept what the defaults reject;
 *   - writing the parsed tensors and metadata back with lora_st_header_build
 *     and parsing the result gives the same names, dtypes, shapes, offsets
 *     and metadata (our writer's escaping against our reader's unescaping).
 */
#include <stdlib.h>
#include <string.h>
#include "support/fuzz_common.h"
#include "io/lfs_pointer.h"
#include "io/safetensors.h"

static lora_st_options small_options(size_t size)
{
    lora_st_options o;
    memset(&o, 0, sizeof o);
    o.limits.max_header_size = size / 2 + 1;
    o.limits.max_tensors = 16;
    o.limits.max_metadata = 4;
    o.limits.max_name_length = 32;
    return o;
}

static void check_layout(const lora_st_file *f, const uint8_t *data, size_t size)
{
    FUZZ_ASSERT(f->file == data && f->file_size == size);
    FUZZ_ASSERT(f->header_size <= size - 8 && f->data_offset == 8 + f->header_size);
    uint64_t pos = 0;
    volatile uint8_t sink = 0;
    for (uint32_t k = 0; k < f->tensor_count; k++) {
        const lora_st_tensor *t = &f->tensors[f->by_offset[k]];
        FUZZ_ASSERT(t->begin == pos);
        FUZZ_ASSERT(t->offset == f->data_offset + t->begin);
        unsigned __int128 numel = 1;
        for (uint32_t d = 0; d < t->ndim; d++) numel *= t->shape[d];
        FUZZ_ASSERT(t->ndim <= LORA_ST_MAX_DIMS && numel == t->numel);
        FUZZ_ASSERT((unsigned __int128)t->numel * lora_st_dtype_size(t->dtype) == t->size);
        FUZZ_ASSERT(t->size <= size - t->offset);
        if (t->size) {
            FUZZ_ASSERT(t->data == data + t->offset);
            sink ^= t->data[0];
            sink ^= t->data[t->size - 1];
        }
        pos += t->size;
    }
    FUZZ_ASSERT(f->data_offset + pos == size);
    (void)sink;
}

static void check_names(const lora_st_file *f)
{
    for (uint32_t i = 0; i < f->tensor_count; i++) {
        const lora_st_tensor *t = &f->tensors[i];
        FUZZ_ASSERT(strlen(t->name) == t->name_length);
        FUZZ_ASSERT(lora_st_find(f, t->name, t->name_length) == i);
        FUZZ_ASSERT(lora_st_dtype_name(t->dtype) != NULL);
    }
    for (uint32_t i = 0; i < f->meta_count; i++) {
        const lora_st_meta *m = &f->meta[i];
        FUZZ_ASSERT(strlen(m->key) == m->key_length && strlen(m->value) == m->value_length);
        FUZZ_ASSERT(lora_st_meta_find(f, m->key) == m);
    }
}

/* Rewrite with our writer (in data order), parse again, compare. */
static void check_rewrite(const lora_st_file *f)
{
    uint32_t n = f->tensor_count;
    lora_st_entry *e = calloc(n + 1, sizeof *e);
    lora_st_pair *pairs = calloc(f->meta_count + 1, sizeof *pairs);
    FUZZ_ASSERT(e && pairs);
    for (uint32_t k = 0; k < n; k++) {
        const lora_st_tensor *t = &f->tensors[f->by_offset[k]];
        e[k].name = t->name;
        e[k].dtype = t->dtype;
        e[k].ndim = t->ndim;
        memcpy(e[k].shape, t->shape, sizeof e[k].shape);
        e[k].size = t->size;
    }
    for (uint32_t i = 0; i < f->meta_count; i++) {
        pairs[i].key = f->meta[i].key;
        pairs[i].value = f->meta[i].value;
    }
    uint8_t *hdr = NULL;
    size_t hdr_size = 0;
    uint64_t data_size = 0;
    lora_error err;
    lora_status st = lora_st_header_build(NULL, e, n, pairs, f->meta_count, &hdr, &hdr_size, &data_size, &err);
    FUZZ_ASSERT(st == LORA_OK);
    FUZZ_ASSERT(data_size == f->file_size - f->data_offset);
    size_t total = hdr_size + (size_t)data_size;
    uint8_t *file = malloc(total ? total : 1);
    FUZZ_ASSERT(file != NULL);
    memcpy(file, hdr, hdr_size);
    if (data_size) memcpy(file + hdr_size, f->file + f->data_offset, (size_t)data_size);
    lora_st_file *g = NULL;
    st = lora_st_parse(file, total, NULL, &g, &err);
    FUZZ_ASSERT(st == LORA_OK);
    FUZZ_ASSERT(g->tensor_count == n && g->meta_count == f->meta_count);
    for (uint32_t k = 0; k < n; k++) {
        const lora_st_tensor *a = &f->tensors[f->by_offset[k]], *b = &g->tensors[k];
        FUZZ_ASSERT(a->name_length == b->name_length && memcmp(a->name, b->name, a->name_length) == 0);
        FUZZ_ASSERT(a->dtype == b->dtype && a->ndim == b->ndim && a->begin == b->begin && a->size == b->size);
        FUZZ_ASSERT(memcmp(a->shape, b->shape, sizeof a->shape) == 0);
    }
    for (uint32_t i = 0; i < f->meta_count; i++) {
        const lora_st_meta *m = lora_st_meta_find(g, f->meta[i].key);
        FUZZ_ASSERT(m && m->value_length == f->meta[i].value_length);
        FUZZ_ASSERT(memcmp(m->value, f->meta[i].value, m->value_length) == 0);
    }
    lora_st_free(g);
    free(file);
    free(hdr);
    free(e);
    free(pairs);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    (void)lora_st_sniff(data, size);
    lora_error err;
    lora_status lfs = lora_lfs_pointer_check(data, size, "fuzz", &err);
    if (lfs != LORA_OK) fuzz_check_error(lfs, &err);

    fuzz_alloc_state as = {0};
    as.justified = fuzz_justified_bytes(size);
    lora_st_options o;
    memset(&o, 0, sizeof o);
    o.allocator = fuzz_alloc_hook(&as);
    lora_st_file *f = NULL;
    lora_status st = lora_st_parse(data, size, &o, &f, &err);
    if (st != LORA_OK) {
        fuzz_check_error(st, &err);
        FUZZ_ASSERT(f == NULL);
    } else {
        check_layout(f, data, size);
        check_names(f);
        check_rewrite(f);
        lora_st_free(f);
    }
    fuzz_alloc_check_empty(&as);

    lora_st_options small = small_options(size);
    lora_st_file *s = NULL;
    lora_status st_small = lora_st_parse(data, size, &small, &s, &err);
    if (st != LORA_OK) FUZZ_ASSERT(st_small != LORA_OK);
    else FUZZ_ASSERT(st_small == LORA_OK || st_small == LORA_E_LIMIT_EXCEEDED);
    lora_st_free(s);
    return 0;
}
