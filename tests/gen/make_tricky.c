/*
 * make_tricky - write a valid .lora adapter that exercises what the sample
 * does not: NaN/Inf values (lora-verify warnings and --strict), DoRA
 * magnitude, bias, fan_in_fan_out, rsLoRA and explicit scaling, conv2d and
 * embedding modules, quantized and compressed blobs, every metadata type
 * (including a NaN float), and names and strings with control characters,
 * quotes, non-ASCII and a bidi override that the tools must escape.
 *
 * Built and run by tests/cli/run.sh. Usage: make_tricky OUT.lora
 * All values are fixed formulas, so the file is the same on every run.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "lora.h"

static int ok(lora_status st, const char *what)
{
    if (st == LORA_OK) return 1;
    fprintf(stderr, "make_tricky: %s: %s\n", what, lora_status_name(st));
    return 0;
}

/* A deterministic pattern in [-amp, amp], exact in binary32 (no libm). */
static void pattern(float *v, size_t n, float amp, unsigned salt)
{
    for (size_t i = 0; i < n; i++) v[i] = amp * (float)((int)((i * 7 + salt) % 17) - 8) / 8.0f;
}

static int blob(lora_writer *w, lora_dtype dt, uint32_t ndim, const uint64_t *shape, const float *v, size_t n,
                lora_compression z, uint32_t *index)
{
    return ok(lora_writer_add_blob_f32(w, dt, ndim, shape, v, n, z, index), "add blob");
}

static void desc_init(lora_module_desc *d, const char *name, lora_kind kind, lora_scaling scaling, uint32_t rank,
                      float alpha)
{
    memset(d, 0, sizeof *d);
    d->name = name;
    d->kind = kind;
    d->scaling = scaling;
    d->rank = rank;
    d->alpha = alpha;
    d->blob_magnitude = LORA_NO_BLOB;
    d->blob_bias = LORA_NO_BLOB;
}

/* GPT-2 style Conv1D: base [in=16, out=48], rsLoRA r=4, DoRA magnitude, bias;
 * two NaNs in A. */
static int add_dora(lora_writer *w)
{
    float a[4 * 16], b[48 * 4], m[48], bias[48];
    uint64_t sa[2] = {4, 16}, sb[2] = {48, 4}, sm[1] = {48};
    lora_module_desc d;
    desc_init(&d, "transformer.h.0.attn.c_attn", LORA_KIND_LINEAR, LORA_SCALING_ALPHA_OVER_SQRT_RANK, 4, 8.0f);
    d.flags = LORA_MODULE_FAN_IN_FAN_OUT;
    d.base_ndim = 2;
    d.base_shape[0] = 16;
    d.base_shape[1] = 48;
    pattern(a, 64, 0.25f, 1);
    a[5] = NAN;
    a[40] = NAN;
    pattern(b, 192, 0.125f, 2);
    for (int i = 0; i < 48; i++) m[i] = 1.0f + (float)i / 64.0f;
    pattern(bias, 48, 0.01f, 3);
    return blob(w, LORA_DTYPE_F32, 2, sa, a, 64, LORA_COMPRESSION_NONE, &d.blob_a) &&
           blob(w, LORA_DTYPE_F16, 2, sb, b, 192, LORA_COMPRESSION_NONE, &d.blob_b) &&
           blob(w, LORA_DTYPE_F32, 1, sm, m, 48, LORA_COMPRESSION_NONE, &d.blob_magnitude) &&
           blob(w, LORA_DTYPE_F16, 1, sm, bias, 48, LORA_COMPRESSION_NONE, &d.blob_bias) &&
           ok(lora_writer_add_module(w, &d, NULL), "dora module");
}

/* conv2d with an escape sequence in its name; explicit scale; zlib A. */
static int add_conv(lora_writer *w)
{
    float a[2 * 4 * 3 * 3], b[8 * 2];
    uint64_t sa[4] = {2, 4, 3, 3}, sb[4] = {8, 2, 1, 1};
    lora_module_desc d;
    desc_init(&d, "unet.conv\x1b[31mred\x07", LORA_KIND_CONV2D, LORA_SCALING_EXPLICIT, 2, 1.0f);
    d.scale = 0.5f;
    d.base_ndim = 4;
    d.base_shape[0] = 8;
    d.base_shape[1] = 4;
    d.base_shape[2] = 3;
    d.base_shape[3] = 3;
    for (int i = 0; i < 72; i++) a[i] = (float)(i % 4) * 0.25f; /* repetitive: zlib keeps it */
    pattern(b, 16, 0.5f, 4);
    return blob(w, LORA_DTYPE_BF16, 4, sa, a, 72, LORA_COMPRESSION_ZLIB, &d.blob_a) &&
           blob(w, LORA_DTYPE_F16, 4, sb, b, 16, LORA_COMPRESSION_NONE, &d.blob_b) &&
           ok(lora_writer_add_module(w, &d, NULL), "conv module");
}

/* Embedding [num=32, dim=16], r=4, quantized A (Q8_0) and B (Q4_0). */
static int add_embedding(lora_writer *w)
{
    float a[4 * 32], b[16 * 4];
    uint64_t sa[2] = {4, 32}, sb[2] = {16, 4};
    lora_module_desc d;
    desc_init(&d, "model.embed_tokens", LORA_KIND_EMBEDDING, LORA_SCALING_ALPHA_OVER_RANK, 4, 4.0f);
    d.base_ndim = 2;
    d.base_shape[0] = 32;
    d.base_shape[1] = 16;
    pattern(a, 128, 1.0f, 5);
    pattern(b, 64, 0.5f, 6);
    return blob(w, LORA_DTYPE_Q8_0, 2, sa, a, 128, LORA_COMPRESSION_NONE, &d.blob_a) &&
           blob(w, LORA_DTYPE_Q4_0, 2, sb, b, 64, LORA_COMPRESSION_NONE, &d.blob_b) &&
           ok(lora_writer_add_module(w, &d, NULL), "embedding module");
}

/* A replacement tensor holding +Inf and -Inf. */
static int add_tensor(lora_writer *w)
{
    float t[4 * 8];
    uint64_t s[2] = {4, 8};
    uint32_t index;
    pattern(t, 32, 2.0f, 7);
    t[3] = INFINITY;
    t[30] = -INFINITY;
    return blob(w, LORA_DTYPE_F32, 2, s, t, 32, LORA_COMPRESSION_NONE, &index) &&
           ok(lora_writer_add_tensor(w, "lm_head.weight", index), "tensor");
}

static int set_str(lora_writer *w, const char *key, const char *value)
{
    return ok(lora_writer_set_string(w, key, value, strlen(value)), key);
}

static int add_metadata(lora_writer *w)
{
    static const char config[] =
        "{\n  \"peft_type\": \"LORA\",\n  \"r\": 4,\n  \"use_rslora\": true,\n  \"use_dora\": true,\n"
        "  \"target_modules\": [\"c_attn\"],\n  \"fan_in_fan_out\": true\n}\n";
    return set_str(w, LORA_META_BASE_MODEL, "tricky/\xc3\xbcnic\xc3\xb6" "de-model") &&
           set_str(w, LORA_META_SOURCE_CONFIG, config) &&
           set_str(w, "note.quoted", "say \"hi\" \\ tab\there") &&
           set_str(w, "note.bidi", "abc\xe2\x80\xae" "fed") && set_str(w, "note.empty", "") &&
           /* YAML 1.1 would read these back as a boolean and a number unless quoted. */
           set_str(w, "on", "yes") && set_str(w, "note.number", "0123") &&
           ok(lora_writer_set_int(w, "train.steps", -42), "int") &&
           ok(lora_writer_set_float(w, "train.lr", 0.0002), "float") &&
           ok(lora_writer_set_float(w, "train.nan", (double)NAN), "nan") &&
           ok(lora_writer_set_bool(w, "train.merged", 1), "bool");
}

int main(int argc, char **argv)
{
    lora_writer *w = NULL;
    lora_error err;
    if (argc != 2) {
        fprintf(stderr, "usage: make_tricky OUT.lora\n");
        return 2;
    }
    if (!ok(lora_writer_create(NULL, &w), "create")) return 1;
    int good = add_metadata(w) && add_dora(w) && add_conv(w) && add_embedding(w) && add_tensor(w);
    if (good) {
        lora_status st = lora_writer_write_file(w, argv[1], NULL, &err);
        if (st != LORA_OK) fprintf(stderr, "make_tricky: %s: %s: %s\n", argv[1], lora_status_name(st), err.detail);
        good = st == LORA_OK;
    }
    lora_writer_free(w);
    return good ? 0 : 1;
}
