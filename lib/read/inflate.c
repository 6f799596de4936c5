/* Bounded zlib inflation. The output never exceeds raw_size: once it is
 * full, inflate gets a one-byte sink, and any byte landing there means the
 * stream is longer than the blob claims. */
#define ZLIB_CONST
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <zlib.h>
#include "reader.h"

static voidpf z_alloc(voidpf opaque, uInt items, uInt size)
{
    if (size != 0 && items > SIZE_MAX / size) return Z_NULL;
    return lora_mem_alloc(opaque, (size_t)items * size);
}

static void z_free(voidpf opaque, voidpf p) { lora_mem_free(opaque, p); }

typedef struct {
    z_stream z;
    const uint8_t *in;   /* input not yet handed to zlib */
    uint64_t in_left;
    uint8_t *dst;
    uint64_t raw_size;
    uint64_t out_done;
    uint8_t sink[4096];  /* output when dst is NULL or full */
} inflate_job;

static void feed(inflate_job *j)
{
    if (j->z.avail_in == 0 && j->in_left > 0) {
        uInt n = j->in_left > UINT_MAX ? UINT_MAX : (uInt)j->in_left;
        j->z.next_in = j->in;
        j->z.avail_in = n;
        j->in += n;
        j->in_left -= n;
    }
}

/* Point zlib at the next output window; returns its size. */
static uInt room(inflate_job *j)
{
    uint64_t left = j->raw_size - j->out_done;
    uInt n;
    if (left == 0) {
        j->z.next_out = j->sink;
        n = 1;
    } else if (j->dst) {
        j->z.next_out = j->dst + j->out_done;
        n = left > UINT_MAX ? UINT_MAX : (uInt)left;
    } else {
        j->z.next_out = j->sink;
        n = left > sizeof j->sink ? (uInt)sizeof j->sink : (uInt)left;
    }
    j->z.avail_out = n;
    return n;
}

static lora_status run(inflate_job *j, char *why, size_t cap)
{
    for (;;) {
        feed(j);
        uInt n = room(j);
        int rc = inflate(&j->z, Z_NO_FLUSH);
        j->out_done += n - j->z.avail_out;
        if (j->out_done > j->raw_size) {
            snprintf(why, cap, "stream inflates to more than the raw size %llu", (unsigned long long)j->raw_size);
            return LORA_E_BAD_COMPRESSED_DATA;
        }
        switch (rc) {
        case Z_OK: continue;
        case Z_STREAM_END:
            if (j->out_done != j->raw_size) {
                snprintf(why, cap, "stream ends after %llu of %llu bytes", (unsigned long long)j->out_done,
                         (unsigned long long)j->raw_size);
                return LORA_E_BAD_COMPRESSED_DATA;
            }
            if (j->z.avail_in != 0 || j->in_left != 0) {
                snprintf(why, cap, "%llu bytes after the end of the zlib stream",
                         (unsigned long long)(j->z.avail_in + j->in_left));
                return LORA_E_BAD_COMPRESSED_DATA;
            }
            return LORA_OK;
        case Z_MEM_ERROR: snprintf(why, cap, "out of memory in zlib"); return LORA_E_OUT_OF_MEMORY;
        case Z_NEED_DICT: snprintf(why, cap, "stream needs a preset dictionary"); return LORA_E_BAD_COMPRESSED_DATA;
        case Z_BUF_ERROR:
            /* Output room is always offered, so no progress means no input. */
            snprintf(why, cap, "stream is truncated after %llu of %llu bytes", (unsigned long long)j->out_done,
                     (unsigned long long)j->raw_size);
            return LORA_E_BAD_COMPRESSED_DATA;
        default:
            snprintf(why, cap, "damaged stream: %s", j->z.msg ? j->z.msg : "inflate error");
            return LORA_E_BAD_COMPRESSED_DATA;
        }
    }
}

lora_status lora_read_inflate(lora_allocator a, const uint8_t *src, uint64_t src_size, uint8_t *dst,
                              uint64_t raw_size, char *why, size_t why_cap)
{
    /* The job holds a 4 KiB sink: keep it off small thread stacks. */
    inflate_job *j = lora_mem_alloc(&a, sizeof *j);
    if (!j) {
        snprintf(why, why_cap, "out of memory");
        return LORA_E_OUT_OF_MEMORY;
    }
    memset(j, 0, sizeof *j);
    j->z.zalloc = z_alloc;
    j->z.zfree = z_free;
    j->z.opaque = &a;
    j->in = src;
    j->in_left = src_size;
    j->dst = dst;
    j->raw_size = raw_size;
    lora_status st;
    int rc = inflateInit(&j->z);
    if (rc == Z_OK) {
        st = run(j, why, why_cap);
        inflateEnd(&j->z);
    } else {
        snprintf(why, why_cap, "cannot start zlib (%d)", rc);
        st = rc == Z_MEM_ERROR ? LORA_E_OUT_OF_MEMORY : LORA_E_IO;
    }
    lora_mem_free(&a, j);
    return st;
}
