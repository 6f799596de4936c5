/* Steps 9-15 of the validation order, after the header (steps 1-8) has
 * bounded every count by the bytes present and by the caller's limits. */
#include "reader.h"

/* Descriptor arrays: each element stands for a record of >= 16 bytes that
 * the table layout proved present, so a small file cannot ask for much. */
static lora_status alloc_arrays(lora_reader *r, lora_error *err)
{
    const lora_fmt_header *h = &r->h;
    if (h->meta_count && !(r->meta = lora_mem_calloc(&r->alloc, h->meta_count, sizeof *r->meta))) goto oom;
    if (h->module_count && !(r->modules = lora_mem_calloc(&r->alloc, h->module_count, sizeof *r->modules))) goto oom;
    if (h->tensor_count && !(r->tensors = lora_mem_calloc(&r->alloc, h->tensor_count, sizeof *r->tensors))) goto oom;
    if (h->blob_count && !(r->blobs = lora_mem_calloc(&r->alloc, h->blob_count, sizeof *r->blobs))) goto oom;
    return LORA_OK;
oom:
    return lora_error_set(err, LORA_E_OUT_OF_MEMORY, LORA_NO_OFFSET, "cannot allocate the descriptor tables");
}

lora_status lora_read_validate(lora_reader *r, lora_error *err)
{
    LORA_FORWARD_IF_ERROR(alloc_arrays(r, err));
    LORA_FORWARD_IF_ERROR(lora_read_records(r, err));       /* 9 */
    LORA_FORWARD_IF_ERROR(lora_read_copy_strings(r, err));
    LORA_FORWARD_IF_ERROR(lora_read_blob_layout(r, err));   /* 10 */
    LORA_FORWARD_IF_ERROR(lora_read_check_meta(r, err));    /* 11 */
    LORA_FORWARD_IF_ERROR(lora_read_check_modules(r, err)); /* 12 */
    LORA_FORWARD_IF_ERROR(lora_read_check_tensors(r, err)); /* 13 */
    LORA_FORWARD_IF_ERROR(lora_read_check_ownership(r, err)); /* 14 */
    return lora_read_blob_padding(r, err);                  /* 15 */
}
