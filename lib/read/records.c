/* Step 9: each record on its own: reserved fields, enums, then its strings
 * (inside the string table, names non-empty and within the length limit,
 * valid UTF-8 without NUL). Tables are walked in file order. */
#include <stdio.h>
#include "reader.h"

/* Records may share or overlap string bytes, so the bytes they reference
 * can exceed the table. Both the UTF-8 scan here and the NUL-terminated
 * copy made afterwards (strings.c) are held to the caller's string limit
 * plus one byte per reference, which a table without overlaps never
 * exceeds; without it 65536 keys naming one 64 MiB string would cost
 * 4 TiB of scanning. */
typedef struct {
    uint64_t used;
    uint64_t cap;
} str_budget;

typedef struct {
    const char *what; /* "metadata", "module", "tensor" */
    uint32_t index;
    const char *field; /* "key", "name", "value" */
    uint64_t field_off;
    int is_name;       /* names and keys: non-empty, length-limited */
} str_site;

static lora_status check_string(const lora_reader *r, lora_fmt_strref s, const str_site *at, str_budget *budget,
                                lora_error *err)
{
    const lora_fmt_header *h = &r->h;
    if ((uint64_t)s.offset + s.length > h->strings_size)
        return lora_error_set(err, LORA_E_BAD_STRING, at->field_off,
                              "%s %u: %s at string offset %u + length %u exceeds the string table (%llu bytes)",
                              at->what, at->index, at->field, s.offset, s.length,
                              (unsigned long long)h->strings_size);
    if (at->is_name && s.length == 0)
        return lora_error_set(err, LORA_E_BAD_STRING, at->field_off, "%s %u: empty %s", at->what, at->index,
                              at->field);
    if (at->is_name && s.length > r->limits.max_name_length)
        return lora_error_set(err, LORA_E_LIMIT_EXCEEDED, at->field_off,
                              "%s %u: %s of %u bytes exceeds the limit %u", at->what, at->index, at->field,
                              s.length, r->limits.max_name_length);
    budget->used += (uint64_t)s.length + 1; /* < 2^32 references of < 2^32 bytes: no overflow */
    if (budget->used > budget->cap)
        return lora_error_set(err, LORA_E_LIMIT_EXCEEDED, at->field_off,
                              "%s %u: the strings referenced so far total %llu bytes, over the limit %llu",
                              at->what, at->index, (unsigned long long)budget->used,
                              (unsigned long long)budget->cap);
    uint64_t at_bytes = h->strings_offset + s.offset;
    if (s.length > 0 && !lora_fmt_utf8_valid(r->data + at_bytes, s.length))
        return lora_error_set(err, LORA_E_BAD_STRING, at_bytes, "%s %u: %s is not valid UTF-8 or contains NUL",
                              at->what, at->index, at->field);
    return LORA_OK;
}

static lora_status meta_records(lora_reader *r, str_budget *budget, lora_error *err)
{
    for (uint32_t i = 0; i < r->h.meta_count; i++) {
        uint64_t off = lora_read_rec_off(r->h.meta_offset, i, LORA_FMT_META_RECORD_SIZE);
        lora_fmt_meta *m = &r->meta[i].f;
        lora_fmt_fault f;
        char what[32];
        if (lora_fmt_decode_meta(r->data + off, LORA_FMT_META_RECORD_SIZE, off, m, &f) != LORA_OK) {
            snprintf(what, sizeof what, "metadata %u", i);
            return lora_read_fault(err, &f, what);
        }
        str_site key = {"metadata", i, "key", off + 0, 1};
        LORA_FORWARD_IF_ERROR(check_string(r, m->key, &key, budget, err));
        if (m->type == LORA_FMT_META_STRING) {
            str_site val = {"metadata", i, "value", off + 16, 0};
            LORA_FORWARD_IF_ERROR(check_string(r, m->str, &val, budget, err));
        }
    }
    return LORA_OK;
}

static lora_status module_records(lora_reader *r, str_budget *budget, lora_error *err)
{
    for (uint32_t i = 0; i < r->h.module_count; i++) {
        uint64_t off = lora_read_rec_off(r->h.modules_offset, i, LORA_FMT_MODULE_RECORD_SIZE);
        lora_fmt_module *m = &r->modules[i].f;
        lora_fmt_fault f;
        char what[32];
        if (lora_fmt_read_module(r->data + off, LORA_FMT_MODULE_RECORD_SIZE, off, m, &f) != LORA_OK) {
            snprintf(what, sizeof what, "module %u", i);
            return lora_read_fault(err, &f, what);
        }
        str_site name = {"module", i, "name", off + 0, 1};
        LORA_FORWARD_IF_ERROR(check_string(r, m->name, &name, budget, err));
    }
    return LORA_OK;
}

static lora_status tensor_records(lora_reader *r, str_budget *budget, lora_error *err)
{
    for (uint32_t i = 0; i < r->h.tensor_count; i++) {
        uint64_t off = lora_read_rec_off(r->h.tensors_offset, i, LORA_FMT_TENSOR_RECORD_SIZE);
        lora_fmt_tensor *t = &r->tensors[i].f;
        lora_fmt_fault f;
        char what[32];
        if (lora_fmt_decode_tensor(r->data + off, LORA_FMT_TENSOR_RECORD_SIZE, off, t, &f) != LORA_OK) {
            snprintf(what, sizeof what, "tensor %u", i);
            return lora_read_fault(err, &f, what);
        }
        str_site name = {"tensor", i, "name", off + 0, 1};
        LORA_FORWARD_IF_ERROR(check_string(r, t->name, &name, budget, err));
    }
    return LORA_OK;
}

static lora_status blob_records(lora_reader *r, lora_error *err)
{
    for (uint32_t i = 0; i < r->h.blob_count; i++) {
        uint64_t off = lora_read_rec_off(r->h.blobs_offset, i, LORA_FMT_BLOB_RECORD_SIZE);
        lora_fmt_fault f;
        char what[32];
        if (lora_fmt_read_blob(r->data + off, LORA_FMT_BLOB_RECORD_SIZE, off, &r->blobs[i].f, &f) != LORA_OK) {
            snprintf(what, sizeof what, "blob %u", i);
            return lora_read_fault(err, &f, what);
        }
    }
    return LORA_OK;
}

lora_status lora_read_records(lora_reader *r, lora_error *err)
{
    str_budget budget = {0, 0};
    uint64_t refs = 2 * (uint64_t)r->h.meta_count + r->h.module_count + r->h.tensor_count;
    if (lora_fmt_add_overflow(r->limits.max_string_bytes, refs, &budget.cap)) budget.cap = UINT64_MAX;
    LORA_FORWARD_IF_ERROR(meta_records(r, &budget, err));
    LORA_FORWARD_IF_ERROR(module_records(r, &budget, err));
    LORA_FORWARD_IF_ERROR(tensor_records(r, &budget, err));
    return blob_records(r, err);
}
