/* GGUF writer, streaming phase: the layout gguf-py's GGUFWriter produces
 * (offsets = running sum of PAD(nbytes, alignment), every tensor followed
 * by zeros to the alignment), written through the caller's sink. */
#include <errno.h>
#include <string.h>
#include <unistd.h>
#include "gguf_writer_private.h"

static const uint8_t zeros[256];

static uint64_t info_size(const gg_wtensor *t)
{
    return 8 + (uint64_t)t->name_len + 4 + 8 * (uint64_t)t->n_dims + 4 + 8;
}

/* Offsets and sizes; every sum is checked because a caller could add more
 * tensors than fit in u64 bytes (each up to 2^63). */
static lora_status layout(const lora_gguf_writer *w, uint64_t *data_offset, uint64_t *file_size)
{
    uint64_t pos = GG_HEADER_BYTES + (uint64_t)w->kv.len, data = 0, padded;
    for (uint64_t i = 0; i < w->n_t; i++)
        if (lora_fmt_add_overflow(pos, info_size(&w->t[i]), &pos)) return LORA_E_LIMIT_EXCEEDED;
    if (lora_fmt_align_overflow(pos, w->alignment, &pos)) return LORA_E_LIMIT_EXCEEDED;
    for (uint64_t i = 0; i < w->n_t; i++)
        if (lora_fmt_align_overflow(w->t[i].nbytes, w->alignment, &padded) ||
            lora_fmt_add_overflow(data, padded, &data))
            return LORA_E_LIMIT_EXCEEDED;
    if (data_offset) *data_offset = pos;
    if (file_size && lora_fmt_add_overflow(pos, data, file_size)) return LORA_E_LIMIT_EXCEEDED;
    return LORA_OK;
}

lora_status lora_gguf_writer_sizes(const lora_gguf_writer *w, uint64_t *data_offset, uint64_t *file_size)
{
    if (!w) return LORA_E_INVALID_ARGUMENT;
    return layout(w, data_offset, file_size);
}

/* Small records are gathered so that a model with thousands of tensors does
 * not cost a sink call per field. */
typedef struct {
    lora_gguf_writer *w;
    lora_error *err;
    uint8_t buf[4096];
    size_t len;
} gg_stage;

static lora_status stage_flush(gg_stage *s)
{
    if (s->len == 0) return LORA_OK;
    lora_status st = s->w->sink(s->w->ctx, s->buf, s->len, s->err);
    s->len = 0;
    return st;
}

static lora_status stage_put(gg_stage *s, const void *p, size_t n)
{
    if (n > sizeof s->buf - s->len) {
        LORA_FORWARD_IF_ERROR(stage_flush(s));
        if (n > sizeof s->buf) return s->w->sink(s->w->ctx, p, n, s->err);
    }
    if (n) memcpy(s->buf + s->len, p, n); /* p is NULL for an empty KV section */
    s->len += n;
    return LORA_OK;
}

static lora_status stage_u32(gg_stage *s, uint32_t v)
{
    uint8_t b[4];
    lora_fmt_wr32(b, v);
    return stage_put(s, b, 4);
}

static lora_status stage_u64(gg_stage *s, uint64_t v)
{
    uint8_t b[8];
    lora_fmt_wr64(b, v);
    return stage_put(s, b, 8);
}

static lora_status stage_zeros(gg_stage *s, uint64_t n)
{
    while (n) {
        size_t k = n > sizeof zeros ? sizeof zeros : (size_t)n;
        LORA_FORWARD_IF_ERROR(stage_put(s, zeros, k));
        n -= k;
    }
    return LORA_OK;
}

static lora_status write_infos(gg_stage *s)
{
    const lora_gguf_writer *w = s->w;
    uint64_t off = 0, padded = 0;
    for (uint64_t i = 0; i < w->n_t; i++) {
        const gg_wtensor *t = &w->t[i];
        LORA_FORWARD_IF_ERROR(stage_u64(s, t->name_len));
        LORA_FORWARD_IF_ERROR(stage_put(s, w->names.p + t->name_off, t->name_len));
        LORA_FORWARD_IF_ERROR(stage_u32(s, t->n_dims));
        for (uint32_t d = 0; d < t->n_dims; d++) LORA_FORWARD_IF_ERROR(stage_u64(s, t->ne[d]));
        LORA_FORWARD_IF_ERROR(stage_u32(s, t->type));
        LORA_FORWARD_IF_ERROR(stage_u64(s, off));
        /* layout() already proved the sum fits. */
        (void)lora_fmt_align_overflow(t->nbytes, w->alignment, &padded);
        off += padded;
    }
    return LORA_OK;
}

static lora_status write_head(gg_stage *s, uint64_t data_offset)
{
    const lora_gguf_writer *w = s->w;
    LORA_FORWARD_IF_ERROR(stage_put(s, LORA_GGUF_MAGIC, 4));
    LORA_FORWARD_IF_ERROR(stage_u32(s, LORA_GGUF_VERSION));
    LORA_FORWARD_IF_ERROR(stage_u64(s, w->n_t));
    LORA_FORWARD_IF_ERROR(stage_u64(s, w->keys.n));
    LORA_FORWARD_IF_ERROR(stage_put(s, w->kv.p, w->kv.len));
    LORA_FORWARD_IF_ERROR(write_infos(s));
    uint64_t end = GG_HEADER_BYTES + w->kv.len;
    for (uint64_t i = 0; i < w->n_t; i++) end += info_size(&w->t[i]);
    LORA_FORWARD_IF_ERROR(stage_zeros(s, data_offset - end));
    return stage_flush(s);
}

/* Move past finished tensors; those of 0 bytes finish at once. */
static void skip_empty(lora_gguf_writer *w)
{
    while (w->cur < w->n_t && w->t[w->cur].nbytes == 0) w->cur++;
    w->state = w->cur < w->n_t ? GG_W_DATA : GG_W_DONE;
}

lora_status lora_gguf_writer_begin(lora_gguf_writer *w, lora_gguf_sink sink, void *ctx, lora_error *err)
{
    lora_error_clear(err);
    if (!w || !sink || w->state != GG_W_BUILD)
        return lora_error_set(err, LORA_E_INVALID_ARGUMENT, LORA_NO_OFFSET, "gguf writer: bad state or argument");
    uint64_t data_offset;
    if (layout(w, &data_offset, NULL) != LORA_OK)
        return lora_error_set(err, LORA_E_LIMIT_EXCEEDED, LORA_NO_OFFSET, "gguf writer: file size overflows");
    w->sink = sink;
    w->ctx = ctx;
    gg_stage s;
    s.w = w;
    s.err = err;
    s.len = 0;
    lora_status st = write_head(&s, data_offset);
    if (st != LORA_OK) {
        w->state = GG_W_FAILED;
        return st;
    }
    w->cur = 0;
    w->cur_done = 0;
    skip_empty(w);
    return LORA_OK;
}

static lora_status write_padding(lora_gguf_writer *w, uint64_t nbytes, lora_error *err)
{
    uint64_t padded = nbytes;
    (void)lora_fmt_align_overflow(nbytes, w->alignment, &padded);
    for (uint64_t n = padded - nbytes; n;) {
        size_t k = n > sizeof zeros ? sizeof zeros : (size_t)n;
        LORA_FORWARD_IF_ERROR(w->sink(w->ctx, zeros, k, err));
        n -= k;
    }
    return LORA_OK;
}

lora_status lora_gguf_writer_write_data(lora_gguf_writer *w, const void *buf, size_t n, lora_error *err)
{
    lora_error_clear(err);
    if (!w || w->state != GG_W_DATA || (!buf && n))
        return lora_error_set(err, LORA_E_INVALID_ARGUMENT, LORA_NO_OFFSET, "gguf writer: no tensor data expected");
    const gg_wtensor *t = &w->t[w->cur];
    if (n > t->nbytes - w->cur_done)
        return lora_error_set(err, LORA_E_INVALID_ARGUMENT, LORA_NO_OFFSET,
                              "gguf writer: tensor '%.*s' has %llu bytes left, %zu given", (int)t->name_len,
                              (const char *)w->names.p + t->name_off,
                              (unsigned long long)(t->nbytes - w->cur_done), n);
    lora_status st = n ? w->sink(w->ctx, buf, n, err) : LORA_OK;
    if (st == LORA_OK) {
        w->cur_done += n;
        if (w->cur_done == t->nbytes) {
            st = write_padding(w, t->nbytes, err);
            w->cur++;
            w->cur_done = 0;
            if (st == LORA_OK) skip_empty(w);
        }
    }
    if (st != LORA_OK) w->state = GG_W_FAILED;
    return st;
}

lora_status lora_gguf_writer_finish(lora_gguf_writer *w, lora_error *err)
{
    lora_error_clear(err);
    if (!w) return lora_error_set(err, LORA_E_INVALID_ARGUMENT, LORA_NO_OFFSET, "gguf writer: NULL");
    if (w->state == GG_W_DONE) return LORA_OK;
    if (w->state == GG_W_DATA) {
        const gg_wtensor *t = &w->t[w->cur];
        return lora_error_set(err, LORA_E_INVALID_ARGUMENT, LORA_NO_OFFSET,
                              "gguf writer: tensor '%.*s' got %llu of its %llu bytes", (int)t->name_len,
                              (const char *)w->names.p + t->name_off, (unsigned long long)w->cur_done,
                              (unsigned long long)t->nbytes);
    }
    return lora_error_set(err, LORA_E_INVALID_ARGUMENT, LORA_NO_OFFSET,
                          w->state == GG_W_BUILD ? "gguf writer: not begun" : "gguf writer: an earlier write failed");
}

lora_status lora_gguf_sink_fd(void *ctx, const void *buf, size_t n, lora_error *err)
{
    if (!ctx || (!buf && n)) return lora_error_set(err, LORA_E_INVALID_ARGUMENT, LORA_NO_OFFSET, "gguf sink: NULL");
    int fd = *(const int *)ctx;
    const uint8_t *p = buf;
    while (n) {
        ssize_t k = write(fd, p, n);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0) {
            int e = errno;
            lora_status st = (e == ENOSPC || e == EDQUOT) ? LORA_E_NO_SPACE : LORA_E_IO;
            return lora_error_set(err, st, LORA_NO_OFFSET, "gguf: write failed (errno %d)", e);
        }
        if (k == 0) return lora_error_set(err, LORA_E_IO, LORA_NO_OFFSET, "gguf: write returned 0");
        p += k;
        n -= (size_t)k;
    }
    return LORA_OK;
}
