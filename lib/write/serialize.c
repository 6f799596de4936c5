/*
 * serialize.c - lora_writer_size, lora_writer_write_buffer, and the
 * self-check both write paths end with.
 *
 * The writer does not trust itself: whatever it produced is opened with the
 * reader and every blob verified before it is reported as written. A
 * structural mistake by the caller (an orphan blob, a B shape that disagrees
 * with the module) therefore fails with the reader's status and detail, and
 * a bug in the writer cannot publish a file the library would refuse.
 */
#include <string.h>
#include "writer.h"

static lora_read_options validation_options(const lora_writer *w)
{
    /* Default limits: what the writer produces must open in a reader that
     * has not raised them. */
    lora_read_options ro = LORA_READ_OPTIONS_INIT;
    ro.allocator = w->alloc;
    return ro;
}

lora_status lora_writer_validate_buffer(const lora_writer *w, const void *data, size_t size, lora_error *err)
{
    lora_read_options ro = validation_options(w);
    lora_reader *r = NULL;
    LORA_FORWARD_IF_ERROR(lora_reader_open_buffer(data, size, &ro, &r, err));
    lora_status st = lora_reader_verify(r, err);
    lora_reader_free(r);
    return st;
}

lora_status lora_writer_validate_file(const lora_writer *w, const char *path, lora_error *err)
{
    lora_read_options ro = validation_options(w);
    lora_reader *r = NULL;
    LORA_FORWARD_IF_ERROR(lora_reader_open_file(path, &ro, &r, err));
    lora_status st = lora_reader_verify(r, err);
    lora_reader_free(r);
    return st;
}

lora_status lora_writer_size(lora_writer *w, uint64_t *size, lora_error *err)
{
    lora_error_clear(err);
    if (!w || !size) return lora_error_set(err, LORA_E_INVALID_ARGUMENT, LORA_NO_OFFSET, "writer or size is NULL");
    lora_wlayout lay;
    LORA_FORWARD_IF_ERROR(lora_wlayout_compute(w, &lay, err));
    *size = lay.file_size;
    return LORA_OK;
}

/* Blobs and the zero padding between them, into a buffer that already holds
 * the tables (lora_wlayout_encode set every blob's offset). */
static void copy_blobs(const lora_writer *w, uint8_t *dst)
{
    for (uint32_t i = 0; i < w->blob_count; i++) {
        const lora_fmt_blob *b = &w->blobs[i].rec;
        memcpy(dst + b->offset, w->blobs[i].stored, (size_t)b->stored_size);
        if (i + 1 < w->blob_count) {
            uint64_t end = b->offset + b->stored_size;
            memset(dst + end, 0, (size_t)(w->blobs[i + 1].rec.offset - end));
        }
    }
}

lora_status lora_writer_write_buffer(lora_writer *w, void *dst, size_t dst_capacity, size_t *written,
                                     lora_error *err)
{
    lora_error_clear(err);
    if (written) *written = 0;
    if (!w || (!dst && dst_capacity))
        return lora_error_set(err, LORA_E_INVALID_ARGUMENT, LORA_NO_OFFSET, "writer or destination is NULL");
    lora_wlayout lay;
    LORA_FORWARD_IF_ERROR(lora_wlayout_compute(w, &lay, err));
    if (!dst || lay.file_size > dst_capacity)
        return lora_error_set(err, LORA_E_BUFFER_TOO_SMALL, LORA_NO_OFFSET,
                              "the file needs %llu bytes, the buffer holds %zu", (unsigned long long)lay.file_size,
                              dst_capacity);
    lora_wlayout_encode(w, &lay, dst);
    copy_blobs(w, dst);
    LORA_FORWARD_IF_ERROR(lora_writer_validate_buffer(w, dst, (size_t)lay.file_size, err));
    if (written) *written = (size_t)lay.file_size;
    return LORA_OK;
}
