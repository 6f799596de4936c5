/*
 * atomic_file.c - lora_writer_write_file: the crash-safe recipe of afile.h
 * with the writer's own step 4: the temp file is re-opened with the reader
 * and fully verified before it may replace the target.
 *
 * Memory: only the header and tables are built in memory; blobs are written
 * from the writer's own copies, so the peak is the adapter once.
 */
#include <string.h>
#include "afile.h"
#include "file_write.h"

/* Step 3: tables from memory, then each blob from the writer's copy. */
static lora_status stream(const lora_writer *w, const lora_wlayout *lay, const uint8_t *tables, lora_afile *f,
                          lora_error *err)
{
    LORA_FORWARD_IF_ERROR(lora_afile_write(f, tables, lay->data_offset, err));
    for (uint32_t i = 0; i < w->blob_count; i++) {
        const lora_fmt_blob *b = &w->blobs[i].rec;
        LORA_FORWARD_IF_ERROR(lora_afile_write(f, w->blobs[i].stored, b->stored_size, err));
        if (i + 1 < w->blob_count)
            LORA_FORWARD_IF_ERROR(lora_afile_zeros(f, w->blobs[i + 1].rec.offset - b->offset - b->stored_size, err));
    }
    return lora_afile_flush(f, err);
}

lora_status lora_writer_write_file(lora_writer *w, const char *path, const lora_write_options *opts,
                                   lora_error *err)
{
    lora_error_clear(err);
    if (!w || !path || !*path)
        return lora_error_set(err, LORA_E_INVALID_ARGUMENT, LORA_NO_OFFSET, "writer or path is NULL or empty");
    LORA_FORWARD_IF_ERROR(lora_write_options_check(opts, err));
    lora_wlayout lay;
    LORA_FORWARD_IF_ERROR(lora_wlayout_compute(w, &lay, err));
    if (lay.data_offset > SIZE_MAX)
        return lora_error_set(err, LORA_E_LIMIT_EXCEEDED, LORA_NO_OFFSET, "tables too large for memory");
    uint8_t *tables = lora_mem_alloc(&w->alloc, (size_t)lay.data_offset);
    if (!tables) return lora_error_set(err, LORA_E_OUT_OF_MEMORY, LORA_NO_OFFSET, "out of memory");
    lora_wlayout_encode(w, &lay, tables);
    lora_afile *f = NULL;
    lora_status st = lora_afile_open(&w->alloc, w->io, path, opts, &f, err);
    if (st == LORA_OK) st = stream(w, &lay, tables, f, err);
    if (st == LORA_OK) st = lora_writer_validate_file(w, lora_afile_temp_path(f), err); /* step 4 */
    lora_mem_free(&w->alloc, tables);
    if (st != LORA_OK) {
        lora_afile_abort(f);
        return st;
    }
    return lora_afile_commit(f, err);
}
