/*
 * peft_export.c - .lora -> PEFT directory: adapter_model.safetensors with
 * PEFT's keys (base_model.model.<module>.lora_A.weight, ...) and each
 * blob's dtype and bytes, plus adapter_config.json (peft_config_out.c).
 * Both files are staged crash-safely and committed together.
 */
#include <stdio.h>
#include <string.h>
#include "adapter_dir.h"
#include "peft_export.h"

#define PEFT_PREFIX "base_model.model."
#define FAIL(st, ...) lora_error_set(err, st, LORA_NO_OFFSET, __VA_ARGS__)

static lora_status add(const lora_allocator *a, lora_adir_tensor *t, uint32_t *n, const char *name,
                       const char *suffix, uint32_t blob, const lora_reader *r, lora_error *err)
{
    lora_blob b;
    LORA_FORWARD_IF_ERROR(lora_reader_blob(r, blob, &b));
    size_t len = strlen(PEFT_PREFIX) + strlen(name) + strlen(suffix) + 1;
    lora_adir_tensor *e = &t[*n];
    e->name = lora_mem_alloc(a, len);
    if (!e->name) return FAIL(LORA_E_OUT_OF_MEMORY, "out of memory");
    snprintf(e->name, len, "%s%s%s", PEFT_PREFIX, name, suffix);
    e->blob = blob;
    e->transpose = 0;
    e->ndim = b.ndim;
    memset(e->shape, 0, sizeof e->shape);
    memcpy(e->shape, b.shape, b.ndim * sizeof b.shape[0]);
    (*n)++;
    return LORA_OK;
}

/* PEFT's conv magnitude is [1, out, 1, ...] (the norm over dims 1.. with
 * keepdim, transposed); .lora keeps it 1-D. */
static void conv_magnitude_shape(lora_adir_tensor *e, const lora_module *m)
{
    uint64_t out = e->shape[0];
    e->ndim = m->base_ndim;
    for (uint32_t i = 0; i < e->ndim; i++) e->shape[i] = 1;
    e->shape[1] = out;
}

static lora_status module_tensors(const lora_reader *r, const lora_allocator *a, lora_adir_tensor *t, uint32_t *n,
                                  lora_error *err)
{
    lora_file_info fi;
    lora_reader_file_info(r, &fi);
    for (uint32_t i = 0; i < fi.module_count; i++) {
        lora_module m;
        LORA_FORWARD_IF_ERROR(lora_reader_module(r, i, &m));
        int emb = m.kind == LORA_KIND_EMBEDDING;
        LORA_FORWARD_IF_ERROR(add(a, t, n, m.name, emb ? ".lora_embedding_A" : ".lora_A.weight", m.blob_a, r, err));
        LORA_FORWARD_IF_ERROR(add(a, t, n, m.name, emb ? ".lora_embedding_B" : ".lora_B.weight", m.blob_b, r, err));
        if (m.blob_magnitude != LORA_NO_BLOB) {
            LORA_FORWARD_IF_ERROR(add(a, t, n, m.name, ".lora_magnitude_vector", m.blob_magnitude, r, err));
            if (m.kind >= LORA_KIND_CONV1D) conv_magnitude_shape(&t[*n - 1], &m);
        }
        if (m.blob_bias != LORA_NO_BLOB)
            LORA_FORWARD_IF_ERROR(add(a, t, n, m.name, ".lora_B.bias", m.blob_bias, r, err));
    }
    for (uint32_t i = 0; i < fi.tensor_count; i++) {
        lora_tensor rt;
        LORA_FORWARD_IF_ERROR(lora_reader_tensor(r, i, &rt));
        LORA_FORWARD_IF_ERROR(add(a, t, n, rt.name, "", rt.blob, r, err));
    }
    return LORA_OK;
}

/* The source config verbatim when it still fits, else a new one. */
static lora_status config_text(const lora_reader *r, const lora_convert_options *o, char **out, size_t *size,
                               lora_error *err)
{
    const lora_allocator *a = &o->allocator;
    lora_meta fmt, src;
    if (lora_reader_meta_find(r, LORA_META_SOURCE_FORMAT, &fmt) == LORA_OK && strcmp(fmt.string, "peft") == 0 &&
        lora_reader_meta_find(r, LORA_META_SOURCE_CONFIG, &src) == LORA_OK) {
        char why[LORA_ERROR_DETAIL_SIZE];
        if (lora_peft_config_describes(r, a, src.string, src.string_length, why, sizeof why)) {
            *out = lora_adir_strndup(a, src.string, src.string_length);
            *size = src.string_length;
            return *out ? LORA_OK : FAIL(LORA_E_OUT_OF_MEMORY, "out of memory");
        }
        lora_ops_warn(o, "peft: the source adapter_config.json no longer fits (%s); writing a new one", why);
    }
    return lora_peft_config_synthesize(r, a, out, size, err);
}

static lora_status stage_and_commit(const lora_reader *r, const char *output, const lora_convert_options *o,
                                    const lora_write_options *wopts, const lora_io *io, lora_adir_tensor *t,
                                    uint32_t n, const char *cfg, size_t cfg_size, lora_error *err)
{
    const lora_allocator *a = &o->allocator;
    static const lora_st_pair meta[] = {{"format", "pt"}}; /* what PEFT's safe_save_file writes */
    char *wpath = lora_adir_join(a, output, "adapter_model.safetensors");
    char *cpath = lora_adir_join(a, output, "adapter_config.json");
    lora_afile *files[2] = {NULL, NULL};
    lora_status st = wpath && cpath ? LORA_OK : FAIL(LORA_E_OUT_OF_MEMORY, "out of memory");
    if (st == LORA_OK) st = lora_adir_stage_safetensors(r, o, wpath, wopts, io, t, n, meta, 1, &files[0], err);
    if (st == LORA_OK) st = lora_adir_stage_bytes(a, cpath, wopts, io, cfg, cfg_size, &files[1], err);
    if (st == LORA_OK) st = lora_adir_commit(files, 2, err);
    else lora_adir_abort(files, 2);
    lora_mem_free(a, wpath);
    lora_mem_free(a, cpath);
    return st;
}

lora_status lora_export_peft(const lora_reader *r, const char *output, const lora_convert_options *o,
                             const lora_write_options *wopts, lora_error *err)
{
    return lora_export_peft_io(r, output, o, wopts, NULL, err);
}

lora_status lora_export_peft_io(const lora_reader *r, const char *output, const lora_convert_options *o,
                                const lora_write_options *wopts, const lora_io *io, lora_error *err)
{
    lora_convert_options defaults = LORA_CONVERT_OPTIONS_INIT;
    if (!o) o = &defaults;
    if (!r || !output) return FAIL(LORA_E_INVALID_ARGUMENT, "peft: no reader or output");
    const lora_allocator *a = &o->allocator;
    lora_file_info fi;
    lora_reader_file_info(r, &fi);
    uint64_t cap = 4ull * fi.module_count + fi.tensor_count;
    if (cap > UINT32_MAX) return FAIL(LORA_E_LIMIT_EXCEEDED, "peft: too many tensors");
    lora_adir_tensor *t = lora_mem_calloc(a, cap ? (size_t)cap : 1, sizeof *t);
    if (!t) return FAIL(LORA_E_OUT_OF_MEMORY, "out of memory");
    uint32_t n = 0;
    char *cfg = NULL;
    size_t cfg_size = 0;
    lora_status st = module_tensors(r, a, t, &n, err);
    if (st == LORA_OK) st = config_text(r, o, &cfg, &cfg_size, err);
    if (st == LORA_OK) st = lora_adir_fill_dtypes(r, o, t, n, err);
    if (st == LORA_OK) {
        lora_adir_sort_like_reference(t, n);
        st = lora_adir_prepare_output(output, "peft", err);
    }
    if (st == LORA_OK) st = stage_and_commit(r, output, o, wopts, io, t, n, cfg, cfg_size, err);
    lora_mem_free(a, cfg);
    lora_adir_tensors_free(a, t, n);
    return st;
}
