/* Streaming safetensors writer: header first, then data bytes in tensor
 * order through a caller's sink, with small writes gathered. */
#include <string.h>
#include "safetensors_private.h"

#define STAGE_SIZE ((size_t)64 << 10)

struct lora_st_writer {
    lora_allocator alloc;
    lora_st_sink_fn sink;
    void *ctx;
    uint64_t *ends;        /* cumulative end of tensor i in the data section */
    char **names;          /* copies, for details */
    char *name_pool;
    uint32_t count, cur;   /* cur: tensor the next byte belongs to */
    uint64_t done, total;
    uint8_t *stage;
    size_t staged;
    int finished;
    lora_error failure;    /* sticky: after a sink failure the output is unusable */
};

static lora_status failed(const lora_st_writer *w, lora_error *err)
{
    if (err) *err = w->failure;
    return w->failure.status;
}

static lora_status emit(lora_st_writer *w, const void *p, size_t n, lora_error *err)
{
    if (n == 0) return LORA_OK;
    lora_error_clear(&w->failure);
    lora_status st = w->sink(w->ctx, p, n, &w->failure);
    if (st == LORA_OK) return LORA_OK;
    /* A sink that forgot to fill the error still leaves a failure behind. */
    if (w->failure.status != st) lora_error_set(&w->failure, st, LORA_NO_OFFSET, "safetensors writer: sink failed");
    return failed(w, err);
}

static lora_status flush(lora_st_writer *w, lora_error *err)
{
    size_t n = w->staged;
    w->staged = 0;
    return emit(w, w->stage, n, err);
}

void lora_st_writer_free(lora_st_writer *w)
{
    if (!w) return;
    lora_allocator a = w->alloc;
    lora_mem_free(&a, w->ends);
    lora_mem_free(&a, w->names);
    lora_mem_free(&a, w->name_pool);
    lora_mem_free(&a, w->stage);
    lora_mem_free(&a, w);
}

/* Sizes and names of the tensors, kept so the caller's array may go. */
static lora_status copy_tensors(lora_st_writer *w, const lora_st_entry *t, lora_error *err)
{
    const lora_allocator *a = &w->alloc;
    uint64_t pool = 0;
    for (uint32_t i = 0; i < w->count; i++) pool += strlen(t[i].name) + 1; /* all in memory already */
    w->ends = lora_mem_calloc(a, w->count, sizeof *w->ends);
    w->names = lora_mem_calloc(a, w->count, sizeof *w->names);
    w->name_pool = pool <= SIZE_MAX ? lora_mem_alloc(a, (size_t)pool) : NULL;
    w->stage = lora_mem_alloc(a, STAGE_SIZE);
    if (!w->ends || !w->names || !w->name_pool || !w->stage)
        return lora_error_set(err, LORA_E_OUT_OF_MEMORY, LORA_NO_OFFSET, "safetensors writer: out of memory");
    uint64_t end = 0;
    char *p = w->name_pool;
    for (uint32_t i = 0; i < w->count; i++) {
        end += t[i].size; /* bounded by INT64_MAX in lora_st_header_build */
        w->ends[i] = end;
        size_t len = strlen(t[i].name);
        memcpy(p, t[i].name, len + 1);
        w->names[i] = p;
        p += len + 1;
    }
    return LORA_OK;
}

/* Skip tensors that are complete, zero-size ones included. */
static void advance(lora_st_writer *w)
{
    while (w->cur < w->count && w->done >= w->ends[w->cur]) w->cur++;
}

static lora_status writer_new(const lora_allocator *a, const lora_st_entry *t, uint32_t count, lora_st_sink_fn sink,
                              void *ctx, uint64_t total, lora_st_writer **out, lora_error *err)
{
    lora_st_writer *w = lora_mem_calloc(a, 1, sizeof *w);
    if (!w) return lora_error_set(err, LORA_E_OUT_OF_MEMORY, LORA_NO_OFFSET, "safetensors writer: out of memory");
    if (a) w->alloc = *a;
    w->sink = sink;
    w->ctx = ctx;
    w->count = count;
    w->total = total;
    lora_status st = copy_tensors(w, t, err);
    if (st != LORA_OK) {
        lora_st_writer_free(w);
        return st;
    }
    *out = w;
    return LORA_OK;
}

lora_status lora_st_writer_begin(const lora_allocator *a, const lora_st_entry *tensors, uint32_t count,
                                 const lora_st_pair *meta, uint32_t meta_count, lora_st_sink_fn sink, void *sink_ctx,
                                 lora_st_writer **out, lora_error *err)
{
    lora_error_clear(err);
    if (!out || !sink)
        return lora_error_set(err, LORA_E_INVALID_ARGUMENT, LORA_NO_OFFSET, "safetensors writer: NULL argument");
    *out = NULL;
    uint8_t *header = NULL;
    size_t header_size = 0;
    uint64_t total = 0;
    LORA_FORWARD_IF_ERROR(
        lora_st_header_build(a, tensors, count, meta, meta_count, &header, &header_size, &total, err));
    lora_st_writer *w = NULL;
    lora_status st = writer_new(a, tensors, count, sink, sink_ctx, total, &w, err);
    if (st == LORA_OK) {
        st = emit(w, header, header_size, err);
        if (st != LORA_OK) lora_st_writer_free(w);
    }
    lora_mem_free(a, header);
    if (st != LORA_OK) return st;
    advance(w);
    *out = w;
    return LORA_OK;
}

lora_status lora_st_writer_put(lora_st_writer *w, const void *data, size_t size, lora_error *err)
{
    lora_error_clear(err);
    if (!w || (!data && size))
        return lora_error_set(err, LORA_E_INVALID_ARGUMENT, LORA_NO_OFFSET, "safetensors writer: NULL argument");
    if (w->failure.status != LORA_OK) return failed(w, err);
    if (w->finished)
        return lora_error_set(err, LORA_E_INVALID_ARGUMENT, LORA_NO_OFFSET, "safetensors writer: put after finish");
    if (size > w->total - w->done)
        return lora_error_set(err, LORA_E_INVALID_ARGUMENT, LORA_NO_OFFSET,
                              "safetensors writer: %zu bytes given, only %llu left to write", size,
                              (unsigned long long)(w->total - w->done));
    if (size > STAGE_SIZE - w->staged) LORA_FORWARD_IF_ERROR(flush(w, err));
    if (size >= STAGE_SIZE) {
        LORA_FORWARD_IF_ERROR(emit(w, data, size, err));
    } else if (size) {
        memcpy(w->stage + w->staged, data, size);
        w->staged += size;
    }
    w->done += size;
    advance(w);
    return LORA_OK;
}

lora_status lora_st_writer_finish(lora_st_writer *w, lora_error *err)
{
    lora_error_clear(err);
    if (!w) return lora_error_set(err, LORA_E_INVALID_ARGUMENT, LORA_NO_OFFSET, "safetensors writer: NULL argument");
    if (w->failure.status != LORA_OK) return failed(w, err);
    if (w->done < w->total) {
        uint64_t begin = w->cur ? w->ends[w->cur - 1] : 0;
        char shown[LORA_ST_SHOW_NAME];
        lora_st_show_name(shown, w->names[w->cur], strlen(w->names[w->cur]));
        return lora_error_set(err, LORA_E_INVALID_ARGUMENT, LORA_NO_OFFSET,
                              "safetensors writer: tensor %u '%s': %llu of %llu bytes written", w->cur, shown,
                              (unsigned long long)(w->done - begin), (unsigned long long)(w->ends[w->cur] - begin));
    }
    LORA_FORWARD_IF_ERROR(flush(w, err));
    w->finished = 1;
    return LORA_OK;
}

uint32_t lora_st_writer_current(const lora_st_writer *w) { return w ? w->cur : 0; }

lora_status lora_st_write(const lora_allocator *a, const lora_st_entry *tensors, uint32_t count,
                          const lora_st_pair *meta, uint32_t meta_count, const void *const *data,
                          lora_st_sink_fn sink, void *sink_ctx, lora_error *err)
{
    if (count && !data)
        return lora_error_set(err, LORA_E_INVALID_ARGUMENT, LORA_NO_OFFSET, "safetensors writer: NULL data");
    lora_st_writer *w = NULL;
    LORA_FORWARD_IF_ERROR(lora_st_writer_begin(a, tensors, count, meta, meta_count, sink, sink_ctx, &w, err));
    lora_status st = LORA_OK;
    for (uint32_t i = 0; i < count && st == LORA_OK; i++) {
        /* size_t may be narrower than a tensor on 32-bit hosts. */
        if (tensors[i].size > SIZE_MAX)
            st = lora_error_set(err, LORA_E_LIMIT_EXCEEDED, LORA_NO_OFFSET,
                                "safetensors writer: tensor %u does not fit in memory", i);
        else
            st = lora_st_writer_put(w, data[i], (size_t)tensors[i].size, err);
    }
    if (st == LORA_OK) st = lora_st_writer_finish(w, err);
    lora_st_writer_free(w);
    return st;
}
