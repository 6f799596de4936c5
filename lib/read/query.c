/* Const queries over a validated reader: no checks of file content are
 * needed here, only of the caller's arguments. */
#include <string.h>
#include "reader.h"

void lora_reader_file_info(const lora_reader *r, lora_file_info *out)
{
    if (!r || !out) return;
    memset(out, 0, sizeof *out);
    out->format_major = r->h.version_major;
    out->format_minor = r->h.version_minor;
    out->file_size = r->h.file_size;
    out->module_count = r->h.module_count;
    out->tensor_count = r->h.tensor_count;
    out->blob_count = r->h.blob_count;
    out->metadata_count = r->h.meta_count;
    out->data_offset = r->h.data_offset;
    out->header_checksum = r->h.header_checksum;
}

static void fill_meta(const lora_rmeta *m, lora_meta *out)
{
    memset(out, 0, sizeof *out);
    out->key = m->key;
    out->type = (lora_meta_type)m->f.type;
    switch (m->f.type) {
    case LORA_FMT_META_STRING:
        out->string = m->value;
        out->string_length = m->f.str.length;
        break;
    case LORA_FMT_META_INT:
    case LORA_FMT_META_BOOL:
        /* Two's complement reinterpretation, not a value conversion. */
        memcpy(&out->integer, &m->f.bits, sizeof out->integer);
        break;
    case LORA_FMT_META_FLOAT: memcpy(&out->number, &m->f.bits, sizeof out->number); break;
    default: break;
    }
}

lora_status lora_reader_meta(const lora_reader *r, uint32_t index, lora_meta *out)
{
    if (!r || !out || index >= r->h.meta_count) return LORA_E_INVALID_ARGUMENT;
    fill_meta(&r->meta[index], out);
    return LORA_OK;
}

lora_status lora_reader_meta_find(const lora_reader *r, const char *key, lora_meta *out)
{
    if (!r || !key || !out) return LORA_E_INVALID_ARGUMENT;
    uint32_t i = lora_read_lookup(r->meta_by_key, r->h.meta_count, key, strlen(key));
    if (i == UINT32_MAX) return LORA_E_NOT_FOUND;
    fill_meta(&r->meta[i], out);
    return LORA_OK;
}

lora_status lora_reader_module(const lora_reader *r, uint32_t index, lora_module *out)
{
    if (!r || !out || index >= r->h.module_count) return LORA_E_INVALID_ARGUMENT;
    const lora_fmt_module *m = &r->modules[index].f;
    memset(out, 0, sizeof *out);
    out->name = r->modules[index].name;
    out->kind = (lora_kind)m->kind;
    out->scaling = (lora_scaling)m->scaling;
    out->flags = m->flags;
    out->rank = m->rank;
    out->alpha = m->alpha;
    out->scale = m->scale;
    out->base_ndim = m->base_ndim;
    memcpy(out->base_shape, m->base_shape, sizeof out->base_shape);
    out->blob_a = m->blob_a;
    out->blob_b = m->blob_b;
    out->blob_magnitude = m->blob_magnitude;
    out->blob_bias = m->blob_bias;
    return LORA_OK;
}

lora_status lora_reader_module_find(const lora_reader *r, const char *name, uint32_t *index)
{
    if (!r || !name || !index) return LORA_E_INVALID_ARGUMENT;
    uint32_t i = lora_read_lookup(r->module_by_name, r->h.module_count, name, strlen(name));
    if (i == UINT32_MAX) return LORA_E_NOT_FOUND;
    *index = i;
    return LORA_OK;
}

lora_status lora_reader_tensor(const lora_reader *r, uint32_t index, lora_tensor *out)
{
    if (!r || !out || index >= r->h.tensor_count) return LORA_E_INVALID_ARGUMENT;
    out->name = r->tensors[index].name;
    out->blob = r->tensors[index].f.blob;
    return LORA_OK;
}

lora_status lora_reader_blob(const lora_reader *r, uint32_t index, lora_blob *out)
{
    if (!r || !out || index >= r->h.blob_count) return LORA_E_INVALID_ARGUMENT;
    const lora_rblob *b = &r->blobs[index];
    memset(out, 0, sizeof *out);
    out->dtype = (lora_dtype)b->f.dtype;
    out->compression = (lora_compression)b->f.compression;
    out->ndim = b->f.ndim;
    memcpy(out->shape, b->f.shape, sizeof out->shape);
    out->numel = b->numel;
    out->offset = b->f.offset;
    out->stored_size = b->f.stored_size;
    out->raw_size = b->f.raw_size;
    out->checksum = b->f.checksum;
    out->block = lora_fmt_blob_block_elems(b->f.dtype, b->f.block_shift);
    return LORA_OK;
}
