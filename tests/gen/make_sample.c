/*
 * make_sample - write a small, deterministic sample adapter.
 *
 * Used by the README quick start, `make demo` and the command-line tests. The
 * adapter looks like a PEFT LoRA on a tiny llama-shaped model: rank-8 F16
 * A/B on q_proj and v_proj of two layers, metadata, and one replacement tensor.
 * Usage: make_sample OUT.lora
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "lora.h"

enum { HIDDEN = 64, KV = 32, RANK = 8, VOCAB = 32, LAYERS = 2 };

/* splitmix64: a fixed, documented generator so the sample is the same everywhere. */
static uint64_t next_u64(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Uniform in [-amp, amp): enough for a sample; not a training init. */
static void fill(float *v, size_t n, float amp, uint64_t *seed)
{
    for (size_t i = 0; i < n; i++)
        v[i] = amp * (float)((double)(next_u64(seed) >> 11) * 0x1.0p-53 * 2.0 - 1.0);
}

static int check(lora_status st, const char *what, const lora_error *err)
{
    if (st == LORA_OK) return 0;
    fprintf(stderr, "make_sample: %s: %s: %s\n", what, lora_status_name(st), err ? err->detail : "");
    return 1;
}

static int add_module(lora_writer *w, const char *name, uint64_t out, uint64_t in, uint64_t *seed)
{
    float *a = malloc(sizeof(float) * RANK * in), *b = malloc(sizeof(float) * out * RANK);
    int rc = 1;
    if (!a || !b) goto done;
    fill(a, RANK * in, 0.125f, seed);
    fill(b, out * RANK, 0.0625f, seed);
    uint64_t shape_a[2] = {RANK, in}, shape_b[2] = {out, RANK};
    lora_module_desc d;
    memset(&d, 0, sizeof d);
    d.name = name;
    d.kind = LORA_KIND_LINEAR;
    d.scaling = LORA_SCALING_ALPHA_OVER_RANK;
    d.rank = RANK;
    d.alpha = 16.0f;
    d.base_ndim = 2;
    d.base_shape[0] = out;
    d.base_shape[1] = in;
    d.blob_magnitude = LORA_NO_BLOB;
    d.blob_bias = LORA_NO_BLOB;
    if (check(lora_writer_add_blob_f32(w, LORA_DTYPE_F16, 2, shape_a, a, RANK * in, LORA_COMPRESSION_NONE, &d.blob_a),
              name, NULL) ||
        check(lora_writer_add_blob_f32(w, LORA_DTYPE_F16, 2, shape_b, b, out * RANK, LORA_COMPRESSION_NONE, &d.blob_b),
              name, NULL) ||
        check(lora_writer_add_module(w, &d, NULL), name, NULL))
        goto done;
    rc = 0;
done:
    free(a);
    free(b);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: make_sample OUT.lora\n");
        return 2;
    }
    uint64_t seed = 20261129;
    lora_writer *w = NULL;
    lora_error err;
    if (check(lora_writer_create(NULL, &w), "create", NULL)) return 1;
    static const char config[] = "{\"peft_type\": \"LORA\", \"r\": 8, \"lora_alpha\": 16, "
                                 "\"target_modules\": [\"q_proj\", \"v_proj\"], \"modules_to_save\": [\"lm_head\"]}";
    int bad = check(lora_writer_set_string(w, LORA_META_BASE_MODEL, "example/tiny-llama-64", 21), "meta", NULL) ||
              check(lora_writer_set_string(w, LORA_META_ARCHITECTURE, "llama", 5), "meta", NULL) ||
              check(lora_writer_set_string(w, LORA_META_SOURCE_FORMAT, "peft", 4), "meta", NULL) ||
              check(lora_writer_set_string(w, LORA_META_SOURCE_CONFIG, config, sizeof config - 1), "meta", NULL) ||
              check(lora_writer_set_string(w, LORA_META_PRODUCER, "make_sample", 11), "meta", NULL) ||
              check(lora_writer_set_string(w, LORA_META_TASK_TYPE, "CAUSAL_LM", 9), "meta", NULL) ||
              check(lora_writer_set_int(w, "sample.seed", (int64_t)seed), "meta", NULL);
    char name[96];
    for (int layer = 0; layer < LAYERS && !bad; layer++) {
        snprintf(name, sizeof name, "model.layers.%d.self_attn.q_proj", layer);
        bad = add_module(w, name, HIDDEN, HIDDEN, &seed);
        snprintf(name, sizeof name, "model.layers.%d.self_attn.v_proj", layer);
        if (!bad) bad = add_module(w, name, KV, HIDDEN, &seed);
    }
    if (!bad) {
        float head[VOCAB * HIDDEN];
        fill(head, VOCAB * HIDDEN, 0.5f, &seed);
        uint64_t shape[2] = {VOCAB, HIDDEN};
        uint32_t blob;
        bad = check(lora_writer_add_blob_f32(w, LORA_DTYPE_BF16, 2, shape, head, VOCAB * HIDDEN,
                                             LORA_COMPRESSION_ZLIB, &blob), "lm_head", NULL) ||
              check(lora_writer_add_tensor(w, "lm_head.weight", blob), "lm_head", NULL);
    }
    if (!bad) bad = check(lora_writer_write_file(w, argv[1], NULL, &err), argv[1], &err);
    lora_writer_free(w);
    return bad ? 1 : 0;
}
