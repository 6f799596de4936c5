/*
 * gen_merge_model - the workload of bench/bench_merge.sh: a base model of
 * TinyLlama-1.1B's shape in F16 safetensors (hidden 2048, FFN 5632, 22
 * layers, 32 heads, 4 KV heads, vocab 32000: about 2.2 GB) and a rank-16
 * .lora adapter on q, k, v, o, gate, up and down of every layer.
 *
 *   gen_merge_model DIR      writes DIR/base.safetensors and DIR/adapter.lora
 *
 * Values are seeded (splitmix64) small uniforms. The base is streamed to
 * the file a tensor at a time, so generating it needs little memory.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lora.h"

#define HIDDEN 2048u
#define FFN 5632u
#define LAYERS 22u
#define HEADS 32u
#define KV_HEADS 4u
#define VOCAB 32000u
#define RANK 16u
#define MAX_TENSORS 256

typedef struct {
    char name[80];
    uint64_t rows, cols; /* cols 0: 1-D */
    int target;
} tdesc;

static uint64_t mix(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* F16 bits of a value in about [-0.06, 0.06]: sign, exponent 10..12, random mantissa. */
static uint16_t small_f16(uint64_t r) { return (uint16_t)(((r & 1) << 15) | ((10 + (r >> 1) % 3) << 10) | ((r >> 8) & 0x3ff)); }

static size_t add(tdesc *t, size_t n, const char *name, uint64_t rows, uint64_t cols, int target)
{
    snprintf(t[n].name, sizeof t[n].name, "%s", name);
    t[n].rows = rows;
    t[n].cols = cols;
    t[n].target = target;
    return n + 1;
}

static size_t model(tdesc *t)
{
    static const char *const proj[] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                                       "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"};
    const uint64_t kv = HIDDEN / HEADS * KV_HEADS;
    const uint64_t out[] = {HIDDEN, kv, kv, HIDDEN, FFN, FFN, HIDDEN}, in[] = {HIDDEN, HIDDEN, HIDDEN, HIDDEN, HIDDEN, HIDDEN, FFN};
    char name[80];
    size_t n = add(t, 0, "model.embed_tokens.weight", VOCAB, HIDDEN, 0);
    for (unsigned l = 0; l < LAYERS; l++) {
        snprintf(name, sizeof name, "model.layers.%u.input_layernorm.weight", l);
        n = add(t, n, name, HIDDEN, 0, 0);
        for (int p = 0; p < 7; p++) {
            snprintf(name, sizeof name, "model.layers.%u.%s.weight", l, proj[p]);
            n = add(t, n, name, out[p], in[p], 1);
            if (p == 3) {
                snprintf(name, sizeof name, "model.layers.%u.post_attention_layernorm.weight", l);
                n = add(t, n, name, HIDDEN, 0, 0);
            }
        }
    }
    n = add(t, n, "model.norm.weight", HIDDEN, 0, 0);
    return add(t, n, "lm_head.weight", VOCAB, HIDDEN, 0);
}

static uint64_t nbytes(const tdesc *t) { return t->rows * (t->cols ? t->cols : 1) * 2; }

static int write_base(const char *path, const tdesc *t, size_t n)
{
    size_t cap = 1 << 16, len = 0;
    char *hdr = malloc(cap);
    uint16_t *buf = malloc((size_t)VOCAB * HIDDEN * 2);
    FILE *f = fopen(path, "wb");
    if (!hdr || !buf || !f) return 0;
    len = (size_t)snprintf(hdr, cap, "{\"__metadata__\":{\"format\":\"pt\"}");
    uint64_t off = 0;
    for (size_t i = 0; i < n; i++) {
        len += (size_t)snprintf(hdr + len, cap - len, ",\"%s\":{\"dtype\":\"F16\",\"shape\":[%llu", t[i].name,
                                (unsigned long long)t[i].rows);
        if (t[i].cols) len += (size_t)snprintf(hdr + len, cap - len, ",%llu", (unsigned long long)t[i].cols);
        len += (size_t)snprintf(hdr + len, cap - len, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off,
                                (unsigned long long)(off + nbytes(&t[i])));
        off += nbytes(&t[i]);
    }
    len += (size_t)snprintf(hdr + len, cap - len, "}");
    while (len % 8) hdr[len++] = ' ';
    uint8_t n8[8];
    for (int i = 0; i < 8; i++) n8[i] = (uint8_t)((uint64_t)len >> (8 * i));
    int ok = fwrite(n8, 1, 8, f) == 8 && fwrite(hdr, 1, len, f) == len;
    uint64_t s = 42;
    for (size_t i = 0; ok && i < n; i++) {
        uint64_t count = nbytes(&t[i]) / 2;
        for (uint64_t j = 0; j < count; j++) buf[j] = t[i].cols ? small_f16(mix(&s)) : 0x3c00; /* norms: 1.0 */
        ok = fwrite(buf, 2, count, f) == count;
    }
    if (fclose(f) != 0) ok = 0;
    free(hdr);
    free(buf);
    return ok;
}

static int add_module(lora_writer *w, const tdesc *t, uint64_t *s)
{
    float *a = malloc(RANK * t->cols * sizeof *a), *b = malloc(t->rows * RANK * sizeof *b);
    if (!a || !b) return 0;
    for (uint64_t i = 0; i < RANK * t->cols; i++) a[i] = (float)((double)(mix(s) >> 40) / 16777216.0 - 0.5) * 0.04f;
    for (uint64_t i = 0; i < t->rows * RANK; i++) b[i] = (float)((double)(mix(s) >> 40) / 16777216.0 - 0.5) * 0.02f;
    uint64_t sa[2] = {RANK, t->cols}, sb[2] = {t->rows, RANK};
    lora_module_desc d;
    memset(&d, 0, sizeof d);
    char name[80];
    snprintf(name, sizeof name, "%.*s", (int)(strlen(t->name) - 7), t->name);
    d.name = name;
    d.kind = LORA_KIND_LINEAR;
    d.scaling = LORA_SCALING_ALPHA_OVER_RANK;
    d.rank = RANK;
    d.alpha = 32.0f;
    d.base_ndim = 2;
    d.base_shape[0] = t->rows;
    d.base_shape[1] = t->cols;
    d.blob_magnitude = d.blob_bias = LORA_NO_BLOB;
    int ok = lora_writer_add_blob_f32(w, LORA_DTYPE_F32, 2, sa, a, RANK * t->cols, LORA_COMPRESSION_NONE, &d.blob_a) ==
                 LORA_OK &&
             lora_writer_add_blob_f32(w, LORA_DTYPE_F32, 2, sb, b, t->rows * RANK, LORA_COMPRESSION_NONE, &d.blob_b) ==
                 LORA_OK &&
             lora_writer_add_module(w, &d, NULL) == LORA_OK;
    free(a);
    free(b);
    return ok;
}

static int write_adapter(const char *path, const tdesc *t, size_t n)
{
    lora_writer *w;
    if (lora_writer_create(NULL, &w) != LORA_OK) return 0;
    uint64_t s = 7;
    int ok = 1;
    for (size_t i = 0; ok && i < n; i++)
        if (t[i].target) ok = add_module(w, &t[i], &s);
    lora_error err;
    if (ok && lora_writer_write_file(w, path, NULL, &err) != LORA_OK) {
        fprintf(stderr, "gen_merge_model: %s: %s\n", path, err.detail);
        ok = 0;
    }
    lora_writer_free(w);
    return ok;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: gen_merge_model DIR\n");
        return 2;
    }
    static tdesc t[MAX_TENSORS];
    size_t n = model(t);
    char base[4096], adapter[4096];
    snprintf(base, sizeof base, "%s/base.safetensors", argv[1]);
    snprintf(adapter, sizeof adapter, "%s/adapter.lora", argv[1]);
    if (!write_base(base, t, n) || !write_adapter(adapter, t, n)) {
        fprintf(stderr, "gen_merge_model: cannot write under %s\n", argv[1]);
        return 1;
    }
    uint64_t bytes = 0;
    for (size_t i = 0; i < n; i++) bytes += nbytes(&t[i]);
    printf("generated %s (TinyLlama-1.1B shape, F16, %zu tensors, %llu bytes of weights) and %s (rank %u on "
           "q,k,v,o,gate,up,down x %u layers)\n",
           base, n, (unsigned long long)bytes, adapter, RANK, LAYERS);
    return 0;
}
