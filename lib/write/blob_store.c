/* Finishing a blob at add time: optional zlib, checksum of the stored bytes.
 * Doing it here rather than at write time makes lora_writer_size exact and
 * lets write_file stream the stored bytes without a second pass. */
#include <limits.h>
#include <string.h>
#define ZLIB_CONST
#include <zlib.h>
#include "writer.h"

/* zlib's own memory goes through the caller's allocator too, so the Nth
 * allocation failure test also covers deflate's state. */
static voidpf zalloc_hook(voidpf opaque, uInt items, uInt size)
{
    return lora_mem_alloc(opaque, (size_t)items * size);
}

static void zfree_hook(voidpf opaque, voidpf ptr)
{
    lora_mem_free(opaque, ptr);
}

/* Run deflate from src into out[0, cap). Returns Z_STREAM_END when the
 * whole stream fit, Z_BUF_ERROR when it did not (not worth keeping),
 * Z_MEM_ERROR on allocation failure. Level 6 with zlib's default window and
 * memLevel: byte-identical to compress2(level 6). avail_in/avail_out are
 * 32-bit, so large blobs are fed in slices. */
static int deflate_into(lora_allocator *a, const uint8_t *src, uint64_t n, uint8_t *out, uint64_t cap,
                        uint64_t *produced)
{
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    zs.zalloc = zalloc_hook;
    zs.zfree = zfree_hook;
    zs.opaque = a;
    int ret = deflateInit(&zs, 6);
    if (ret != Z_OK) return ret == Z_MEM_ERROR ? Z_MEM_ERROR : Z_STREAM_ERROR;
    uint64_t in_left = n, out_left = cap;
    zs.next_in = src;
    zs.next_out = out;
    for (;;) {
        if (zs.avail_in == 0 && in_left) {
            zs.avail_in = (uInt)(in_left < UINT_MAX ? in_left : UINT_MAX);
            in_left -= zs.avail_in;
        }
        if (zs.avail_out == 0) {
            if (out_left == 0) { ret = Z_BUF_ERROR; break; }
            zs.avail_out = (uInt)(out_left < UINT_MAX ? out_left : UINT_MAX);
            out_left -= zs.avail_out;
        }
        ret = deflate(&zs, in_left ? Z_NO_FLUSH : Z_FINISH);
        if (ret == Z_STREAM_END) break;
        if (ret != Z_OK && ret != Z_BUF_ERROR) break;
    }
    *produced = (uint64_t)zs.total_out;
    deflateEnd(&zs);
    return ret;
}

/* Compressed copy of src, or NULL in *out when zlib does not make it
 * smaller. Only allocation failure is an error. */
static lora_status try_compress(lora_writer *w, const uint8_t *src, uint64_t n, uint8_t **out, uint64_t *out_size)
{
    *out = NULL;
    /* Capping the output at n-1 bytes both bounds the scratch memory by the
     * blob and stops deflate as soon as it cannot win. */
    if (n < 2) return LORA_OK;
    uint8_t *scratch = lora_mem_alloc(&w->alloc, (size_t)(n - 1));
    if (!scratch) return LORA_E_OUT_OF_MEMORY;
    uint64_t produced = 0;
    int zr = deflate_into(&w->alloc, src, n, scratch, n - 1, &produced);
    lora_status st = LORA_OK;
    if (zr == Z_MEM_ERROR) st = LORA_E_OUT_OF_MEMORY;
    /* The reader's decompression-bomb guard (raw <= 1032 * stored + 1024)
     * holds for any real deflate stream; re-checking it here means a blob
     * the writer keeps is one the reader accepts, whatever zlib does. */
    int keep = zr == Z_STREAM_END && produced >= 1 && n <= produced * 1032 + 1024;
    if (st == LORA_OK && keep) {
        uint8_t *exact = lora_mem_alloc(&w->alloc, (size_t)produced);
        if (!exact) {
            st = LORA_E_OUT_OF_MEMORY;
        } else {
            memcpy(exact, scratch, (size_t)produced);
            *out = exact;
            *out_size = produced;
        }
    }
    lora_mem_free(&w->alloc, scratch);
    return st;
}

lora_status lora_wblob_append(lora_writer *w, const uint8_t *src, uint8_t *owned, const lora_fmt_blob *desc,
                              uint32_t *index)
{
    lora_status st = LORA_OK;
    uint8_t *stored = NULL;
    lora_fmt_blob rec = *desc;
    rec.stored_size = rec.raw_size;
    if (w->blob_count >= LORA_FMT_NO_BLOB - 1) st = LORA_E_LIMIT_EXCEEDED;
    if (st == LORA_OK)
        w->blobs = lora_wgrow(&w->alloc, w->blobs, &w->blob_cap, w->blob_count + 1, sizeof *w->blobs, &st);
    if (st == LORA_OK && rec.compression == LORA_FMT_COMPRESSION_ZLIB) {
        st = try_compress(w, src, rec.raw_size, &stored, &rec.stored_size);
        if (!stored) {
            rec.compression = LORA_FMT_COMPRESSION_NONE;
            rec.stored_size = rec.raw_size;
        }
    }
    if (st == LORA_OK && !stored) {
        if (owned) {
            stored = owned;
            owned = NULL;
        } else if ((stored = lora_mem_alloc(&w->alloc, (size_t)rec.raw_size)) != NULL) {
            memcpy(stored, src, (size_t)rec.raw_size);
        } else {
            st = LORA_E_OUT_OF_MEMORY;
        }
    }
    lora_mem_free(&w->alloc, owned);
    if (st != LORA_OK) {
        lora_mem_free(&w->alloc, stored);
        return st;
    }
    rec.offset = 0;
    rec.checksum = lora_xxh3(stored, (size_t)rec.stored_size);
    lora_wblob *b = &w->blobs[w->blob_count];
    b->rec = rec;
    b->stored = stored;
    b->used = 0;
    if (index) *index = w->blob_count;
    w->blob_count++;
    return LORA_OK;
}
