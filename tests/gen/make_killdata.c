/*
 * make_killdata - inputs for tests/cli/kill.sh: big enough that lora-merge
 * and lora-convert run for a few hundred milliseconds, so a SIGKILL at a
 * random moment lands mid-write.
 *
 *   make_killdata base DIR HIDDEN FFN LAYERS VOCAB
 *       DIR/model.safetensors: a llama-shaped F16 base (embedding, per layer
 *       q k v o [HIDDEN x HIDDEN], gate up [FFN x HIDDEN], down [HIDDEN x
 *       FFN], F32 norms)
 *   make_killdata peft DIR HIDDEN FFN LAYERS RANK
 *       DIR/adapter_model.safetensors + DIR/adapter_config.json: a PEFT LoRA
 *       adapter (F32, r = RANK, alpha = 2 r) on every projection of that base
 *
 * Values come from a splitmix64 stream (fixed seed), so the files are the
 * same on every run. Written by hand, without liblora: the inputs of a
 * test should not come from the code under test. Tensors are streamed one
 * at a time, so memory stays at one tensor.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_TENSORS 1024

typedef struct {
    char name[96];
    int f32;                 /* else F16 */
    uint64_t rows, cols;     /* cols 0: 1-D */
} tdesc;

static uint64_t mix(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t numel(const tdesc *t) { return t->rows * (t->cols ? t->cols : 1); }
static uint64_t nbytes(const tdesc *t) { return numel(t) * (t->f32 ? 4u : 2u); }

static const char *const proj[7] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                                    "mlp.gate_proj",    "mlp.up_proj",      "mlp.down_proj"};

static void proj_shape(int p, uint64_t hidden, uint64_t ffn, uint64_t *out, uint64_t *in)
{
    *out = p == 4 || p == 5 ? ffn : hidden;
    *in = p == 6 ? ffn : hidden;
}

static size_t base_model(tdesc *t, uint64_t hidden, uint64_t ffn, uint64_t layers, uint64_t vocab)
{
    size_t n = 0;
    snprintf(t[n].name, sizeof t[n].name, "model.embed_tokens.weight");
    t[n].f32 = 0, t[n].rows = vocab, t[n].cols = hidden, n++;
    for (uint64_t l = 0; l < layers && n + 10 < MAX_TENSORS; l++) {
        for (int p = 0; p < 7; p++, n++) {
            snprintf(t[n].name, sizeof t[n].name, "model.layers.%llu.%s.weight", (unsigned long long)l, proj[p]);
            t[n].f32 = 0;
            proj_shape(p, hidden, ffn, &t[n].rows, &t[n].cols);
        }
        snprintf(t[n].name, sizeof t[n].name, "model.layers.%llu.input_layernorm.weight", (unsigned long long)l);
        t[n].f32 = 1, t[n].rows = hidden, t[n].cols = 0, n++;
    }
    snprintf(t[n].name, sizeof t[n].name, "model.norm.weight");
    t[n].f32 = 1, t[n].rows = hidden, t[n].cols = 0, n++;
    return n;
}

static size_t peft_adapter(tdesc *t, uint64_t hidden, uint64_t ffn, uint64_t layers, uint64_t rank)
{
    size_t n = 0;
    for (uint64_t l = 0; l < layers && n + 14 < MAX_TENSORS; l++)
        for (int p = 0; p < 7; p++) {
            uint64_t out, in;
            proj_shape(p, hidden, ffn, &out, &in);
            snprintf(t[n].name, sizeof t[n].name, "base_model.model.model.layers.%llu.%s.lora_A.weight",
                     (unsigned long long)l, proj[p]);
            t[n].f32 = 1, t[n].rows = rank, t[n].cols = in, n++;
            snprintf(t[n].name, sizeof t[n].name, "base_model.model.model.layers.%llu.%s.lora_B.weight",
                     (unsigned long long)l, proj[p]);
            t[n].f32 = 1, t[n].rows = out, t[n].cols = rank, n++;
        }
    return n;
}

/* F16 bits of a value in about [-0.06, 0.06]; F32 uniform in [-0.05, 0.05). */
static uint16_t small_f16(uint64_t r) { return (uint16_t)(((r & 1) << 15) | ((10 + (r >> 1) % 3) << 10) | ((r >> 8) & 0x3ff)); }
static float small_f32(uint64_t r) { return (float)((double)(r >> 11) / 9007199254740992.0 * 0.1 - 0.05); }

static int write_header(FILE *f, const tdesc *t, size_t n)
{
    size_t cap = 256 + n * 200, len = 0;
    char *h = malloc(cap);
    if (!h) return 0;
    uint64_t off = 0;
    len += (size_t)snprintf(h + len, cap - len, "{\"__metadata__\":{\"format\":\"pt\"}");
    for (size_t i = 0; i < n; i++) {
        char shape[64];
        if (t[i].cols) snprintf(shape, sizeof shape, "%llu,%llu", (unsigned long long)t[i].rows, (unsigned long long)t[i].cols);
        else snprintf(shape, sizeof shape, "%llu", (unsigned long long)t[i].rows);
        len += (size_t)snprintf(h + len, cap - len, ",\"%s\":{\"dtype\":\"%s\",\"shape\":[%s],\"data_offsets\":[%llu,%llu]}",
                                t[i].name, t[i].f32 ? "F32" : "F16", shape, (unsigned long long)off,
                                (unsigned long long)(off + nbytes(&t[i])));
        off += nbytes(&t[i]);
    }
    len += (size_t)snprintf(h + len, cap - len, "}");
    while (len % 8) h[len++] = ' '; /* data 8-aligned, as the reference writer pads */
    uint8_t n8[8];
    for (int i = 0; i < 8; i++) n8[i] = (uint8_t)((uint64_t)len >> (8 * i));
    int ok = fwrite(n8, 1, 8, f) == 8 && fwrite(h, 1, len, f) == len;
    free(h);
    return ok;
}

static int write_st(const char *path, const tdesc *t, size_t n, uint64_t seed)
{
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    int ok = write_header(f, t, n);
    size_t cap = 1 << 16;
    uint8_t *buf = malloc(cap * 4);
    for (size_t i = 0; i < n && ok && buf; i++) {
        uint64_t left = numel(&t[i]);
        while (left > 0 && ok) {
            size_t k = left < cap ? (size_t)left : cap;
            for (size_t j = 0; j < k; j++) {
                uint64_t r = mix(&seed);
                if (t[i].f32) {
                    float v = small_f32(r);
                    memcpy(buf + 4 * j, &v, 4);
                } else {
                    uint16_t v = small_f16(r);
                    memcpy(buf + 2 * j, &v, 2);
                }
            }
            ok = fwrite(buf, t[i].f32 ? 4 : 2, k, f) == k;
            left -= k;
        }
    }
    ok = ok && buf;
    free(buf);
    return fclose(f) == 0 && ok;
}

static int write_config(const char *dir, uint64_t rank)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    FILE *f = fopen(path, "w");
    if (!f) return 0;
    fprintf(f, "{\n  \"peft_type\": \"LORA\",\n  \"task_type\": \"CAUSAL_LM\",\n  \"r\": %llu,\n  \"lora_alpha\": %llu,\n"
               "  \"target_modules\": [\"q_proj\", \"k_proj\", \"v_proj\", \"o_proj\", \"gate_proj\", \"up_proj\","
               " \"down_proj\"],\n  \"bias\": \"none\",\n  \"use_rslora\": false,\n  \"use_dora\": false\n}\n",
            (unsigned long long)rank, (unsigned long long)(2 * rank));
    return fclose(f) == 0;
}

static int arg(const char *s, uint64_t *v)
{
    char *end;
    errno = 0;
    unsigned long long x = strtoull(s, &end, 10);
    if (errno || *end || x == 0 || x > 1000000) return 0;
    *v = x;
    return 1;
}

int main(int argc, char **argv)
{
    uint64_t hidden, ffn, layers, last;
    if (argc != 7 || !arg(argv[3], &hidden) || !arg(argv[4], &ffn) || !arg(argv[5], &layers) || !arg(argv[6], &last) ||
        (strcmp(argv[1], "base") && strcmp(argv[1], "peft"))) {
        fprintf(stderr, "usage: make_killdata base DIR HIDDEN FFN LAYERS VOCAB | peft DIR HIDDEN FFN LAYERS RANK\n");
        return 2;
    }
    static tdesc t[MAX_TENSORS];
    char path[4096];
    mkdir(argv[2], 0777);
    int ok;
    if (!strcmp(argv[1], "base")) {
        size_t n = base_model(t, hidden, ffn, layers, last);
        snprintf(path, sizeof path, "%s/model.safetensors", argv[2]);
        ok = write_st(path, t, n, 1);
    } else {
        size_t n = peft_adapter(t, hidden, ffn, layers, last);
        snprintf(path, sizeof path, "%s/adapter_model.safetensors", argv[2]);
        ok = write_st(path, t, n, 2) && write_config(argv[2], last);
    }
    if (!ok) {
        fprintf(stderr, "make_killdata: cannot write %s\n", path);
        return 1;
    }
    return 0;
}
