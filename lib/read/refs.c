/* Steps 13 and 14: tensors, then blob ownership: every blob belongs to
 * exactly one module slot or tensor, so no two descriptors can alias the
 * same bytes and no bytes go undescribed. */
#include "reader.h"

static void tensor_name_of(const lora_reader *r, uint32_t i, lora_name_ix *out)
{
    *out = (lora_name_ix){r->tensors[i].name, r->tensors[i].f.name.length, i};
}

lora_status lora_read_check_tensors(lora_reader *r, lora_error *err)
{
    uint32_t n = r->h.tensor_count;
    if (n == 0) return LORA_OK;
    /* The index only serves this check, so it is freed at once. */
    lora_name_ix *ix = lora_read_build_index(&r->alloc, n, tensor_name_of, r);
    if (!ix) return lora_error_set(err, LORA_E_OUT_OF_MEMORY, LORA_NO_OFFSET, "cannot allocate the tensor index");
    uint32_t first, dup = lora_read_find_duplicate(ix, n, &first);
    lora_mem_free(&r->alloc, ix);
    if (dup != UINT32_MAX)
        return lora_error_set(err, LORA_E_DUPLICATE_NAME,
                              lora_read_rec_off(r->h.tensors_offset, dup, LORA_FMT_TENSOR_RECORD_SIZE),
                              "tensor %u: name '%s' already used by tensor %u", dup, r->tensors[dup].name, first);
    for (uint32_t i = 0; i < n; i++) {
        uint32_t b = r->tensors[i].f.blob;
        if (b >= r->h.blob_count)
            return lora_error_set(err, LORA_E_BAD_BLOB_REF,
                                  lora_read_rec_off(r->h.tensors_offset, i, LORA_FMT_TENSOR_RECORD_SIZE) + 8,
                                  "tensor '%s': blob %u does not exist (%u blobs)", r->tensors[i].name, b,
                                  r->h.blob_count);
    }
    return LORA_OK;
}

static lora_status claim(lora_reader *r, uint32_t blob, uint32_t owner, uint32_t role, uint64_t field_off,
                         lora_error *err)
{
    lora_rblob *b = &r->blobs[blob];
    if (b->owner_role != LORA_OWNER_NONE) {
        char prev[160];
        lora_read_describe_owner(r, blob, prev, sizeof prev);
        const char *who = role == LORA_OWNER_TENSOR ? r->tensors[owner].name : r->modules[owner].name;
        return lora_error_set(err, LORA_E_BAD_BLOB_REF, field_off, "%s '%s' references %s, which is already used",
                              role == LORA_OWNER_TENSOR ? "tensor" : "module", who, prev);
    }
    b->owner = owner;
    b->owner_role = role;
    return LORA_OK;
}

lora_status lora_read_check_ownership(lora_reader *r, lora_error *err)
{
    static const uint32_t roles[4] = {LORA_OWNER_A, LORA_OWNER_B, LORA_OWNER_MAGNITUDE, LORA_OWNER_BIAS};
    for (uint32_t i = 0; i < r->h.module_count; i++) {
        const lora_fmt_module *m = &r->modules[i].f;
        const uint32_t refs[4] = {m->blob_a, m->blob_b, m->blob_magnitude, m->blob_bias};
        uint64_t off = lora_read_rec_off(r->h.modules_offset, i, LORA_FMT_MODULE_RECORD_SIZE);
        for (uint32_t k = 0; k < 4; k++) {
            if (refs[k] == LORA_FMT_NO_BLOB) continue; /* step 12 made A and B mandatory */
            LORA_FORWARD_IF_ERROR(claim(r, refs[k], i, roles[k], off + 72 + 4 * k, err));
        }
    }
    for (uint32_t i = 0; i < r->h.tensor_count; i++) {
        uint64_t off = lora_read_rec_off(r->h.tensors_offset, i, LORA_FMT_TENSOR_RECORD_SIZE);
        LORA_FORWARD_IF_ERROR(claim(r, r->tensors[i].f.blob, i, LORA_OWNER_TENSOR, off + 8, err));
    }
    for (uint32_t i = 0; i < r->h.blob_count; i++)
        if (r->blobs[i].owner_role == LORA_OWNER_NONE)
            return lora_error_set(err, LORA_E_BAD_BLOB_REF,
                                  lora_read_rec_off(r->h.blobs_offset, i, LORA_FMT_BLOB_RECORD_SIZE),
                                  "blob %u is not referenced by any module or tensor", i);
    return LORA_OK;
}
