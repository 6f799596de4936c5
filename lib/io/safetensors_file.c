/* Where the safetensors writer's bytes go: a file descriptor, lib/write's
 * crash-safe file, and the one-call crash-safe write with read-back. */
#include <string.h>
#include "../write/afile.h"
#include "../write/file_write.h"
#include "safetensors_private.h"

lora_status lora_st_fd_sink_write(void *ctx, const void *data, size_t size, lora_error *err)
{
    const lora_st_fd_sink *s = ctx;
    int e = lora_x_write_all(s->io ? s->io : lora_io_default(), s->fd, data, size);
    return e ? lora_errno_error(err, e, "safetensors writer: cannot write to", "file descriptor") : LORA_OK;
}

lora_status lora_st_afile_sink_write(void *ctx, const void *data, size_t size, lora_error *err)
{
    return lora_afile_write(ctx, data, size, err);
}

/* The temp file must read back as exactly what was asked for: a writer
 * bug must never reach the target. */
static lora_status read_back(const lora_allocator *a, const char *tmp, const lora_st_entry *t, uint32_t count,
                             const lora_st_pair *meta, uint32_t mcount, lora_error *err)
{
    lora_st_options o;
    memset(&o, 0, sizeof o);
    if (a) o.allocator = *a;
    lora_st_file *f = NULL;
    LORA_FORWARD_IF_ERROR(lora_st_open(tmp, &o, &f, err));
    int same = f->tensor_count == count && f->meta_count == mcount;
    for (uint32_t i = 0; same && i < count; i++) {
        const lora_st_tensor *x = &f->tensors[i];
        same = strcmp(x->name, t[i].name) == 0 && x->dtype == t[i].dtype && x->ndim == t[i].ndim &&
               x->size == t[i].size && memcmp(x->shape, t[i].shape, t[i].ndim * sizeof x->shape[0]) == 0;
    }
    for (uint32_t i = 0; same && i < mcount; i++)
        same = strcmp(f->meta[i].key, meta[i].key) == 0 && strcmp(f->meta[i].value, meta[i].value) == 0;
    lora_st_free(f);
    if (!same)
        return lora_error_set(err, LORA_E_IO, LORA_NO_OFFSET,
                              "safetensors writer: '%s' does not read back as written", tmp);
    return LORA_OK;
}

lora_status lora_st_write_file(const lora_allocator *a, const char *path, const lora_write_options *opts,
                               const lora_st_entry *tensors, uint32_t count, const lora_st_pair *meta,
                               uint32_t meta_count, const void *const *data, lora_error *err)
{
    return lora_st_write_file_io(a, NULL, path, opts, tensors, count, meta, meta_count, data, err);
}

lora_status lora_st_write_file_io(const lora_allocator *a, const struct lora_io *io, const char *path,
                                  const lora_write_options *opts, const lora_st_entry *tensors, uint32_t count,
                                  const lora_st_pair *meta, uint32_t meta_count, const void *const *data,
                                  lora_error *err)
{
    lora_error_clear(err);
    lora_afile *af = NULL;
    LORA_FORWARD_IF_ERROR(lora_afile_open(a, io, path, opts, &af, err));
    lora_status st = lora_st_write(a, tensors, count, meta, meta_count, data, lora_st_afile_sink_write, af, err);
    if (st == LORA_OK) st = lora_afile_flush(af, err);
    if (st == LORA_OK) st = read_back(a, lora_afile_temp_path(af), tensors, count, meta, meta_count, err);
    if (st != LORA_OK) {
        lora_afile_abort(af);
        return st;
    }
    return lora_afile_commit(af, err);
}
