/*
 * merge_demo - the model and the independent check of `make demo`.
 *
 *   merge_demo gen DIR              DIR/base/model.safetensors: a small
 *                                   llama-shaped model (F16), and
 *                                   DIR/adapter/: a PEFT LoRA adapter on it
 *                                   (q, k, v, o, gate, up, down; r 8, alpha 16)
 *   merge_demo check DIR MERGED     recompute the merge in float64 from the
 *                                   same seeded values, round once to F16 and
 *                                   compare with MERGED element by element;
 *                                   every other tensor must be byte-identical
 *
 * Nothing here uses liblora: the files are written and read by hand, so the
 * check does not share code with what it checks. Every value comes from a
 * splitmix64 stream seeded by the tensor's name, so `check` rebuilds them
 * without reading the inputs.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define HIDDEN 64
#define HEADS 4
#define KV_HEADS 2
#define FFN 160
#define LAYERS 2
#define VOCAB 256
#define RANK 8
#define ALPHA 16
#define MAX_TENSORS 64

typedef struct {
    char name[160];
    int dtype_f32;           /* 1: F32, 0: F16 */
    uint64_t rows, cols;     /* cols 0: 1-D */
    int target;              /* a LoRA module targets it */
} tdesc;

/* ---- values ---------------------------------------------------------------------- */

static uint64_t mix(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t seed_of(const char *name)
{
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
    for (; *name; name++) h = (h ^ (uint8_t)*name) * 0x100000001b3ull;
    return h;
}

/* Uniform in [-scale, scale). */
static double uniform(uint64_t *s, double scale) { return scale * ((double)(mix(s) >> 11) / 9007199254740992.0 * 2 - 1); }

/* binary64 -> binary16, round to nearest even, in one step. */
static uint16_t f64_to_f16(double x)
{
    uint16_t sign = signbit(x) ? 0x8000 : 0;
    double a = fabs(x);
    if (isnan(x)) return 0x7e00;
    if (a >= 65520.0) return sign | 0x7c00;
    if (a < ldexp(1.0, -14)) return sign | (uint16_t)nearbyint(a * ldexp(1.0, 24));
    int e;
    double f = frexp(a, &e); /* a = f * 2^e, f in [0.5, 1) */
    double q = nearbyint((f * 2 - 1) * 1024);
    e -= 1;
    if (q == 1024) q = 0, e++;
    if (e > 15) return sign | 0x7c00;
    return sign | (uint16_t)((e + 15) << 10) | (uint16_t)q;
}

static double f16_to_f64(uint16_t h)
{
    int e = (h >> 10) & 31, m = h & 1023;
    double v = e == 0 ? ldexp(m, -24) : e == 31 ? (m ? NAN : INFINITY) : ldexp(1024 + m, e - 25);
    return (h & 0x8000) ? -v : v;
}

/* The base values of a tensor (as F16 bits, or F32). */
static void base_values(const tdesc *t, uint16_t *h, float *f)
{
    uint64_t s = seed_of(t->name), n = t->rows * (t->cols ? t->cols : 1);
    for (uint64_t i = 0; i < n; i++) {
        double v = t->cols ? uniform(&s, 0.05) : 1.0 + uniform(&s, 0.1);
        if (h) h[i] = f64_to_f16(v);
        if (f) f[i] = (float)v;
    }
}

/* A [RANK][in] and B [out][RANK] of a module (fp32 values). */
static void lora_values(const char *module, uint64_t out, uint64_t in, float *a, float *b)
{
    char key[128];
    snprintf(key, sizeof key, "%s.A", module);
    uint64_t s = seed_of(key);
    for (uint64_t i = 0; i < RANK * in; i++) a[i] = (float)uniform(&s, 0.2);
    snprintf(key, sizeof key, "%s.B", module);
    s = seed_of(key);
    for (uint64_t i = 0; i < out * RANK; i++) b[i] = (float)uniform(&s, 0.1);
}

/* ---- the model ------------------------------------------------------------------------ */

static size_t add(tdesc *t, size_t n, const char *name, uint64_t rows, uint64_t cols, int target)
{
    snprintf(t[n].name, sizeof t[n].name, "%s", name);
    t[n].dtype_f32 = 0;
    t[n].rows = rows;
    t[n].cols = cols;
    t[n].target = target;
    return n + 1;
}

static size_t model(tdesc *t)
{
    static const char *const attn[] = {"q_proj", "k_proj", "v_proj", "o_proj"};
    static const char *const mlp[] = {"gate_proj", "up_proj", "down_proj"};
    const uint64_t attn_out[] = {HIDDEN, HIDDEN / HEADS * KV_HEADS, HIDDEN / HEADS * KV_HEADS, HIDDEN};
    size_t n = add(t, 0, "model.embed_tokens.weight", VOCAB, HIDDEN, 0);
    char name[96];
    for (int l = 0; l < LAYERS; l++) {
        snprintf(name, sizeof name, "model.layers.%d.input_layernorm.weight", l);
        n = add(t, n, name, HIDDEN, 0, 0);
        for (int i = 0; i < 4; i++) {
            snprintf(name, sizeof name, "model.layers.%d.self_attn.%s.weight", l, attn[i]);
            n = add(t, n, name, attn_out[i], HIDDEN, 1);
        }
        snprintf(name, sizeof name, "model.layers.%d.post_attention_layernorm.weight", l);
        n = add(t, n, name, HIDDEN, 0, 0);
        for (int i = 0; i < 3; i++) {
            snprintf(name, sizeof name, "model.layers.%d.mlp.%s.weight", l, mlp[i]);
            n = add(t, n, name, i == 2 ? HIDDEN : FFN, i == 2 ? FFN : HIDDEN, 1);
        }
    }
    n = add(t, n, "model.norm.weight", HIDDEN, 0, 0);
    return add(t, n, "lm_head.weight", VOCAB, HIDDEN, 0);
}

static uint64_t numel(const tdesc *t) { return t->rows * (t->cols ? t->cols : 1); }
static uint64_t nbytes(const tdesc *t) { return numel(t) * (t->dtype_f32 ? 4 : 2); }

/* ---- safetensors by hand --------------------------------------------------------------- */

static int write_st(const char *path, const tdesc *t, size_t n, void *const *data)
{
    char *hdr = malloc(65536);
    if (!hdr) return 0;
    size_t len = (size_t)snprintf(hdr, 65536, "{\"__metadata__\":{\"format\":\"pt\"}");
    uint64_t off = 0;
    for (size_t i = 0; i < n; i++) {
        len += (size_t)snprintf(hdr + len, 65536 - len, ",\"%s\":{\"dtype\":\"%s\",\"shape\":[%llu", t[i].name,
                                t[i].dtype_f32 ? "F32" : "F16", (unsigned long long)t[i].rows);
        if (t[i].cols) len += (size_t)snprintf(hdr + len, 65536 - len, ",%llu", (unsigned long long)t[i].cols);
        len += (size_t)snprintf(hdr + len, 65536 - len, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off,
                                (unsigned long long)(off + nbytes(&t[i])));
        off += nbytes(&t[i]);
    }
    len += (size_t)snprintf(hdr + len, 65536 - len, "}");
    while (len % 8) hdr[len++] = ' ';
    FILE *f = fopen(path, "wb");
    int ok = f != NULL;
    uint8_t n8[8];
    for (int i = 0; i < 8; i++) n8[i] = (uint8_t)((uint64_t)len >> (8 * i));
    if (ok) ok = fwrite(n8, 1, 8, f) == 8 && fwrite(hdr, 1, len, f) == len;
    for (size_t i = 0; ok && i < n; i++) ok = fwrite(data[i], 1, nbytes(&t[i]), f) == nbytes(&t[i]);
    if (f && fclose(f) != 0) ok = 0;
    free(hdr);
    return ok;
}

/* Read a whole file. */
static uint8_t *slurp(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    uint8_t *p = NULL;
    if (fseek(f, 0, SEEK_END) == 0) {
        long n = ftell(f);
        if (n > 0 && fseek(f, 0, SEEK_SET) == 0 && (p = malloc((size_t)n)) && fread(p, 1, (size_t)n, f) != (size_t)n) {
            free(p);
            p = NULL;
        }
        *size = (size_t)n;
    }
    fclose(f);
    return p;
}

/* The data of tensor `name` in a safetensors file image, checking its
 * dtype string; NULL if absent or different. */
static const uint8_t *st_find(const uint8_t *file, size_t size, const char *name, const char *dtype, uint64_t bytes)
{
    uint64_t n = 0;
    for (int i = 0; i < 8; i++) n |= (uint64_t)file[i] << (8 * i);
    if (size < 8 || n > size - 8) return NULL;
    char key[128], *hdr = malloc(n + 1);
    if (!hdr) return NULL;
    memcpy(hdr, file + 8, n);
    hdr[n] = '\0';
    snprintf(key, sizeof key, "\"%s\":{", name);
    const char *at = strstr(hdr, key), *end = at ? strchr(at, '}') : NULL;
    const char *dt = at ? strstr(at, "\"dtype\":\"") : NULL, *off = at ? strstr(at, "\"data_offsets\":[") : NULL;
    unsigned long long b = 0, e = 0;
    int ok = at && end && dt && off && dt < end && off < end &&
             strncmp(dt + 9, dtype, strlen(dtype)) == 0 && dt[9 + strlen(dtype)] == '"' &&
             sscanf(off + 16, "%llu,%llu", &b, &e) == 2 && e - b == bytes && 8 + n + e <= size;
    free(hdr);
    return ok ? file + 8 + n + b : NULL;
}

/* ---- gen ---------------------------------------------------------------------------------- */

static int gen_base(const char *dir, const tdesc *t, size_t n)
{
    void *data[MAX_TENSORS] = {0};
    for (size_t i = 0; i < n; i++) {
        data[i] = malloc(nbytes(&t[i]));
        if (!data[i]) return 0;
        base_values(&t[i], data[i], NULL);
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/base/model.safetensors", dir);
    int ok = write_st(path, t, n, data);
    for (size_t i = 0; i < n; i++) free(data[i]);
    snprintf(path, sizeof path, "%s/base/config.json", dir);
    FILE *f = fopen(path, "w");
    if (!f) return 0;
    fprintf(f, "{\"model_type\": \"llama\", \"hidden_size\": %d, \"intermediate_size\": %d, \"num_hidden_layers\": %d,"
               " \"num_attention_heads\": %d, \"num_key_value_heads\": %d, \"vocab_size\": %d,"
               " \"torch_dtype\": \"float16\"}\n", HIDDEN, FFN, LAYERS, HEADS, KV_HEADS, VOCAB);
    return fclose(f) == 0 && ok;
}

static int gen_adapter(const char *dir, const tdesc *t, size_t n)
{
    tdesc ad[MAX_TENSORS];
    void *data[MAX_TENSORS] = {0};
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (!t[i].target) continue;
        char module[96];
        snprintf(module, sizeof module, "%.*s", (int)(strlen(t[i].name) - 7), t[i].name);
        snprintf(ad[k].name, sizeof ad[k].name, "base_model.model.%s.lora_A.weight", module);
        ad[k].dtype_f32 = 1, ad[k].rows = RANK, ad[k].cols = t[i].cols, ad[k].target = 0;
        snprintf(ad[k + 1].name, sizeof ad[k + 1].name, "base_model.model.%s.lora_B.weight", module);
        ad[k + 1].dtype_f32 = 1, ad[k + 1].rows = t[i].rows, ad[k + 1].cols = RANK, ad[k + 1].target = 0;
        data[k] = malloc(nbytes(&ad[k]));
        data[k + 1] = malloc(nbytes(&ad[k + 1]));
        if (!data[k] || !data[k + 1]) return 0;
        lora_values(module, t[i].rows, t[i].cols, data[k], data[k + 1]);
        k += 2;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/adapter/adapter_model.safetensors", dir);
    int ok = write_st(path, ad, k, data);
    for (size_t i = 0; i < k; i++) free(data[i]);
    snprintf(path, sizeof path, "%s/adapter/adapter_config.json", dir);
    FILE *f = fopen(path, "w");
    if (!f) return 0;
    fprintf(f, "{\n  \"peft_type\": \"LORA\",\n  \"task_type\": \"CAUSAL_LM\",\n"
               "  \"base_model_name_or_path\": \"demo/tiny-llama\",\n  \"r\": %d,\n  \"lora_alpha\": %d,\n"
               "  \"target_modules\": [\"q_proj\", \"k_proj\", \"v_proj\", \"o_proj\", \"gate_proj\", \"up_proj\","
               " \"down_proj\"],\n  \"fan_in_fan_out\": false,\n  \"bias\": \"none\",\n  \"use_rslora\": false,\n"
               "  \"use_dora\": false,\n  \"modules_to_save\": null\n}\n", RANK, ALPHA);
    return fclose(f) == 0 && ok;
}

static int gen(const char *dir)
{
    tdesc t[MAX_TENSORS];
    size_t n = model(t);
    char path[4096];
    mkdir(dir, 0777);
    snprintf(path, sizeof path, "%s/base", dir);
    mkdir(path, 0777);
    snprintf(path, sizeof path, "%s/adapter", dir);
    mkdir(path, 0777);
    if (!gen_base(dir, t, n) || !gen_adapter(dir, t, n)) {
        fprintf(stderr, "merge_demo: cannot write the model under %s\n", dir);
        return 1;
    }
    uint64_t params = 0;
    for (size_t i = 0; i < n; i++) params += numel(&t[i]);
    printf("wrote %s/base/model.safetensors: llama-shaped, %d layers, hidden %d, %d heads (%d KV), FFN %d, vocab "
           "%d, %zu tensors, %llu parameters, F16\n", dir, LAYERS, HIDDEN, HEADS, KV_HEADS, FFN, VOCAB, n,
           (unsigned long long)params);
    printf("wrote %s/adapter/: PEFT LoRA r=%d alpha=%d on q,k,v,o,gate,up,down (%d modules), F32\n", dir, RANK, ALPHA,
           7 * LAYERS);
    return 0;
}

/* ---- check -------------------------------------------------------------------------------- */

typedef struct {
    uint64_t elems, exact, ulp1, worse, tensors, others;
} tally;

static void check_target(const tdesc *t, const uint16_t *got, tally *c)
{
    char module[96];
    snprintf(module, sizeof module, "%.*s", (int)(strlen(t->name) - 7), t->name);
    uint16_t *w = malloc(numel(t) * 2);
    float *a = malloc(RANK * t->cols * sizeof *a), *b = malloc(t->rows * RANK * sizeof *b);
    if (!w || !a || !b) exit(2);
    base_values(t, w, NULL);
    lora_values(module, t->rows, t->cols, a, b);
    const double s = (double)ALPHA / RANK;
    for (uint64_t i = 0; i < t->rows; i++)
        for (uint64_t j = 0; j < t->cols; j++) {
            double d = 0;
            for (int k = 0; k < RANK; k++) d += (double)b[i * RANK + k] * (double)a[k * t->cols + j];
            uint16_t want = f64_to_f16(f16_to_f64(w[i * t->cols + j]) + s * d), have = got[i * t->cols + j];
            /* Distance in representable steps (same sign here: tiny values are rare and both sides agree). */
            int diff = abs((int)(want & 0x7fff) * ((want & 0x8000) ? -1 : 1) - (int)(have & 0x7fff) * ((have & 0x8000) ? -1 : 1));
            c->elems++;
            if (diff == 0) c->exact++;
            else if (diff == 1) c->ulp1++;
            else c->worse++;
        }
    c->tensors++;
    free(w);
    free(a);
    free(b);
}

static int check(const char *dir, const char *merged)
{
    tdesc t[MAX_TENSORS];
    size_t n = model(t), msize = 0, bsize = 0;
    char path[4096];
    snprintf(path, sizeof path, "%s/base/model.safetensors", dir);
    uint8_t *out = slurp(merged, &msize), *base = slurp(path, &bsize);
    if (!out || !base) {
        fprintf(stderr, "merge_demo: cannot read %s or %s\n", merged, path);
        return 1;
    }
    tally c = {0, 0, 0, 0, 0, 0};
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        const uint8_t *got = st_find(out, msize, t[i].name, "F16", nbytes(&t[i]));
        const uint8_t *was = st_find(base, bsize, t[i].name, "F16", nbytes(&t[i]));
        if (!got || !was) {
            fprintf(stderr, "merge_demo: tensor %s missing or of another dtype/size\n", t[i].name);
            bad = 1;
            continue;
        }
        if (t[i].target) {
            uint16_t *h = malloc(nbytes(&t[i]));
            if (!h) return 2;
            memcpy(h, got, nbytes(&t[i]));
            check_target(&t[i], h, &c);
            free(h);
        } else if (memcmp(got, was, nbytes(&t[i])) != 0) {
            fprintf(stderr, "merge_demo: tensor %s is not byte-identical to the base\n", t[i].name);
            bad = 1;
        } else {
            c.others++;
        }
    }
    double exact = c.elems ? 100.0 * (double)c.exact / (double)c.elems : 0;
    printf("checked %s against a float64 reference rounded once to F16:\n"
           "  %llu merged tensors, %llu elements: %llu bit-exact (%.3f%%), %llu 1 ulp off, %llu worse\n"
           "  %llu other tensors byte-identical to the base\n",
           merged, (unsigned long long)c.tensors, (unsigned long long)c.elems, (unsigned long long)c.exact, exact,
           (unsigned long long)c.ulp1, (unsigned long long)c.worse, (unsigned long long)c.others);
    free(out);
    free(base);
    if (bad || c.worse || exact < 99.9 || c.tensors != 7 * LAYERS) {
        printf("FAILED\n");
        return 1;
    }
    printf("OK\n");
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 3 && !strcmp(argv[1], "gen")) return gen(argv[2]);
    if (argc == 4 && !strcmp(argv[1], "check")) return check(argv[2], argv[3]);
    fprintf(stderr, "usage: merge_demo gen DIR | merge_demo check DIR MERGED.safetensors\n");
    return 2;
}
