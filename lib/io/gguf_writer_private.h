/*
 * gguf_writer_private.h - the GGUF writer's state.
 *   gguf_write.c         KVs and tensor infos (build phase)
 *   gguf_write_set.c     growable buffers and the name sets (uniqueness)
 *   gguf_write_stream.c  layout, streaming to the sink, the fd sink
 */
#ifndef LORA_IO_GGUF_WRITER_PRIVATE_H
#define LORA_IO_GGUF_WRITER_PRIVATE_H

#include "gguf_private.h"

typedef struct {
    uint8_t *p;
    size_t len, cap;
} gg_buf;

/* A name inside a gg_buf: bytes [off, off + len). */
typedef struct {
    uint64_t off;
    uint64_t len;
    uint64_t hash; /* kept so that growing the set needs no bytes */
} gg_ref;

/* Open addressing over indexes into a gg_ref array (slot = index + 1, 0 =
 * empty): uniqueness in O(1) per add, so a merger adding 10^5 tensors does
 * not go quadratic. */
typedef struct {
    uint64_t *slots;
    uint64_t cap; /* power of two or 0 */
    gg_ref *refs;
    uint64_t n;
} gg_set;

typedef struct {
    uint64_t name_off; /* in w->names */
    uint32_t name_len;
    uint32_t n_dims;
    uint32_t type;
    uint64_t ne[LORA_GGUF_MAX_DIMS];
    uint64_t nbytes;
} gg_wtensor;

typedef enum { GG_W_BUILD = 0, GG_W_DATA, GG_W_DONE, GG_W_FAILED } gg_wstate;

struct lora_gguf_writer {
    lora_allocator alloc;
    gg_buf kv;    /* serialized KVs, in order */
    gg_buf names; /* tensor names back to back */
    gg_set keys;  /* refs into kv (key bytes) */
    gg_set tnames; /* refs into names */
    gg_wtensor *t;
    uint64_t n_t, cap_t;
    uint32_t alignment;
    gg_wstate state;
    lora_gguf_sink sink;
    void *ctx;
    uint64_t cur;     /* tensor being written */
    uint64_t cur_done; /* its bytes written so far */
};

/* Append n bytes (grows by doubling); OUT_OF_MEMORY or LIMIT_EXCEEDED. */
lora_status gg_buf_put(const lora_allocator *a, gg_buf *b, const void *src, size_t n);
lora_status gg_buf_put_u32(const lora_allocator *a, gg_buf *b, uint32_t v);
lora_status gg_buf_put_u64(const lora_allocator *a, gg_buf *b, uint64_t v);
/* u64 length + bytes. */
lora_status gg_buf_put_str(const lora_allocator *a, gg_buf *b, const void *s, uint64_t len);

/* 1 if the bytes [s, s+len) are in the set (names in `base`). */
int gg_set_has(const gg_set *set, const uint8_t *base, const uint8_t *s, uint64_t len);
/* Record the name [off, off+len) of `base`, known to be absent; OUT_OF_MEMORY. */
lora_status gg_set_add(const lora_allocator *a, gg_set *set, const uint8_t *base, uint64_t off, uint64_t len);
void gg_set_free(const lora_allocator *a, gg_set *set);

#endif /* LORA_IO_GGUF_WRITER_PRIVATE_H */
