/* Step 11: metadata as a whole: unique keys, BOOL values, reserved keys. */
#include <string.h>
#include "reader.h"

static lora_status check_entry(const lora_reader *r, uint32_t i, lora_error *err)
{
    const lora_rmeta *m = &r->meta[i];
    uint64_t off = lora_read_rec_off(r->h.meta_offset, i, LORA_FMT_META_RECORD_SIZE);
    if (m->f.type == LORA_FMT_META_BOOL && m->f.bits > 1)
        return lora_error_set(err, LORA_E_BAD_METADATA, off + 16, "metadata '%s': BOOL value %llu is not 0 or 1",
                              m->key, (unsigned long long)m->f.bits);
    if (m->f.type != LORA_FMT_META_STRING && lora_meta_key_reserved(m->key))
        return lora_error_set(err, LORA_E_BAD_METADATA, off + 8, "metadata '%s': reserved key must be a STRING",
                              m->key);
    return LORA_OK;
}

static void key_of(const lora_reader *r, uint32_t i, lora_name_ix *out)
{
    *out = (lora_name_ix){r->meta[i].key, r->meta[i].f.key.length, i};
}

lora_status lora_read_check_meta(lora_reader *r, lora_error *err)
{
    uint32_t n = r->h.meta_count;
    if (n == 0) return LORA_OK;
    r->meta_by_key = lora_read_build_index(&r->alloc, n, key_of, r);
    if (!r->meta_by_key)
        return lora_error_set(err, LORA_E_OUT_OF_MEMORY, LORA_NO_OFFSET, "cannot allocate the metadata index");
    uint32_t first, dup = lora_read_find_duplicate(r->meta_by_key, n, &first);
    if (dup != UINT32_MAX)
        return lora_error_set(err, LORA_E_DUPLICATE_NAME, lora_read_rec_off(r->h.meta_offset, dup, LORA_FMT_META_RECORD_SIZE),
                              "metadata %u: key '%s' already used by metadata %u", dup, r->meta[dup].key, first);
    for (uint32_t i = 0; i < n; i++) LORA_FORWARD_IF_ERROR(check_entry(r, i, err));
    return LORA_OK;
}
