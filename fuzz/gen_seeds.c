/*
 * gen_seeds.c - deterministic seed inputs for the harnesses that have no
 * ready-made corpus (the .lora harnesses start from spec/vectors).
 *
 *   gen_seeds OUTDIR      writes OUTDIR/<harness>/<name> for
 *                         safetensors, gguf, zlib_blob, roundtrip, kernels
 * Shapes and key names follow what real adapters use (PEFT, MLX, kohya,
 * llama.cpp LoRA GGUF, llama vocab GGUF) at a few KB, so the fuzzer starts
 * from realistic headers without any third-party file in the repository.
 * Every byte comes from the library's own writers or is spelled out here;
 * random payloads come from a fixed splitmix64 seed.
 */
#define ZLIB_CONST
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>
#include "io/gguf.h"
#include "io/safetensors.h"

typedef struct {
    const char *dir;    /* output directory */
    uint64_t rng;       /* splitmix64 state */
} gen;

static uint64_t rng(gen *g)
{
    uint64_t z = (g->rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static void fill(gen *g, uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) p[i] = (uint8_t)rng(g);
}

static void die(const char *what)
{
    fprintf(stderr, "gen_seeds: %s: %s\n", what, strerror(errno));
    exit(1);
}

static void put(const gen *g, const char *harness, const char *name, const void *data, size_t size)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", g->dir, harness);
    if (mkdir(path, 0755) != 0 && errno != EEXIST) die(path);
    snprintf(path, sizeof path, "%s/%s/%s", g->dir, harness, name);
    FILE *f = fopen(path, "wb");
    if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f) != 0) die(path);
}

/* ---- safetensors ---------------------------------------------------------- */

typedef struct {
    const char *name;
    lora_st_dtype dtype;
    uint32_t ndim;
    uint64_t shape[3];
} st_spec;

static void st_file(gen *g, const char *name, const st_spec *t, uint32_t n, const lora_st_pair *meta, uint32_t n_meta)
{
    lora_st_entry e[16];
    for (uint32_t i = 0; i < n; i++) {
        memset(&e[i], 0, sizeof e[i]);
        e[i].name = t[i].name;
        e[i].dtype = t[i].dtype;
        e[i].ndim = t[i].ndim;
        uint64_t numel = 1;
        for (uint32_t d = 0; d < t[i].ndim; d++) numel *= (e[i].shape[d] = t[i].shape[d]);
        e[i].size = numel * lora_st_dtype_size(t[i].dtype);
    }
    uint8_t *hdr = NULL;
    size_t hdr_size = 0;
    uint64_t data_size = 0;
    lora_error err;
    if (lora_st_header_build(NULL, e, n, meta, n_meta, &hdr, &hdr_size, &data_size, &err) != LORA_OK) {
        fprintf(stderr, "gen_seeds: %s: %s\n", name, err.detail);
        exit(1);
    }
    uint8_t *file = malloc(hdr_size + data_size + 1);
    if (!file) die("malloc");
    memcpy(file, hdr, hdr_size);
    fill(g, file + hdr_size, (size_t)data_size);
    put(g, "safetensors", name, file, hdr_size + (size_t)data_size);
    free(file);
    free(hdr);
}

/* A header spelled out, with the data section it declares. */
static void st_raw(gen *g, const char *name, const char *json, size_t data_size)
{
    size_t n = strlen(json);
    uint8_t *file = malloc(8 + n + data_size + 1);
    if (!file) die("malloc");
    for (int i = 0; i < 8; i++) file[i] = (uint8_t)((uint64_t)n >> (8 * i));
    memcpy(file + 8, json, n);
    fill(g, file + 8 + n, data_size);
    put(g, "safetensors", name, file, 8 + n + data_size);
    free(file);
}

static void gen_safetensors(gen *g)
{
    static const lora_st_pair pt[] = {{"format", "pt"}};
    static const st_spec peft[] = {
        {"base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight", LORA_ST_F32, 2, {4, 16, 0}},
        {"base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight", LORA_ST_F32, 2, {16, 4, 0}},
        {"base_model.model.model.layers.0.self_attn.v_proj.lora_A.weight", LORA_ST_F32, 2, {4, 16, 0}},
        {"base_model.model.model.layers.0.self_attn.v_proj.lora_B.weight", LORA_ST_F32, 2, {8, 4, 0}},
    };
    st_file(g, "peft_f32", peft, 4, pt, 1);
    static const st_spec peft16[] = {
        {"base_model.model.transformer.h.0.attn.c_attn.lora_A.weight", LORA_ST_F16, 2, {1, 32, 0}},
        {"base_model.model.transformer.h.0.attn.c_attn.lora_B.weight", LORA_ST_F16, 2, {96, 1, 0}},
        {"base_model.model.lm_head.weight", LORA_ST_BF16, 2, {8, 32, 0}},
    };
    st_file(g, "peft_f16_r1", peft16, 3, pt, 1);
    static const st_spec mlx[] = {
        {"model.layers.0.self_attn.q_proj.lora_a", LORA_ST_F32, 2, {16, 8, 0}},
        {"model.layers.0.self_attn.q_proj.lora_b", LORA_ST_F32, 2, {8, 16, 0}},
    };
    st_file(g, "mlx", mlx, 2, NULL, 0);
    static const st_spec kohya[] = {
        {"lora_unet_down_blocks_0_attentions_0_proj_in.alpha", LORA_ST_F16, 0, {0, 0, 0}},
        {"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight", LORA_ST_F16, 3, {4, 8, 1}},
        {"lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight", LORA_ST_F16, 3, {8, 4, 1}},
        {"lora_te_text_model_encoder_layers_0_mlp_fc1.alpha", LORA_ST_F32, 0, {0, 0, 0}},
    };
    static const lora_st_pair kohya_meta[] = {{"ss_network_dim", "4"}, {"ss_network_alpha", "4.0"}};
    st_file(g, "kohya", kohya, 4, kohya_meta, 2);
    static const st_spec every[] = {
        {"bool", LORA_ST_BOOL, 1, {3, 0, 0}},    {"u8", LORA_ST_U8, 1, {3, 0, 0}},
        {"i8", LORA_ST_I8, 1, {2, 0, 0}},        {"e5m2", LORA_ST_F8_E5M2, 1, {2, 0, 0}},
        {"e4m3", LORA_ST_F8_E4M3, 1, {2, 0, 0}}, {"i16", LORA_ST_I16, 1, {2, 0, 0}},
        {"u16", LORA_ST_U16, 1, {2, 0, 0}},      {"f16", LORA_ST_F16, 1, {2, 0, 0}},
        {"bf16", LORA_ST_BF16, 1, {2, 0, 0}},    {"i32", LORA_ST_I32, 1, {1, 0, 0}},
        {"u32", LORA_ST_U32, 1, {1, 0, 0}},      {"f32", LORA_ST_F32, 1, {1, 0, 0}},
        {"f64", LORA_ST_F64, 1, {1, 0, 0}},      {"i64", LORA_ST_I64, 1, {1, 0, 0}},
        {"u64", LORA_ST_U64, 1, {1, 0, 0}},      {"empty", LORA_ST_F32, 2, {0, 4, 0}},
    };
    st_file(g, "every_dtype", every, 16, NULL, 0);
    st_file(g, "no_tensors", NULL, 0, pt, 1);
    /* Spellings our writer never produces but readers must take. */
    st_raw(g, "mlx_null_meta",
           "{\"__metadata__\":null,\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8);
    st_raw(g, "escapes",
           "{\"\\u0061\\n\\\"\\u00e9\\ud83d\\ude00\":{\"shape\":[1],\"dtype\":\"U8\",\"data_offsets\":[0,1],"
           "\"extra\":[{}]} }        ", 1);
    st_raw(g, "padded", "{\"x\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[0,8]}}                      ", 8);
    st_raw(g, "empty_object", "{}", 0);
    static const char lfs[] = "version https://git-lfs.github.com/spec/v1\n"
                              "oid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\n"
                              "size 3253104\n";
    put(g, "safetensors", "lfs_pointer", lfs, sizeof lfs - 1);
}

/* ---- gguf ------------------------------------------------------------------- */

typedef struct {
    uint8_t *p;
    size_t len, cap;
} membuf;

static lora_status mem_sink(void *ctx, const void *buf, size_t n, lora_error *err)
{
    (void)err;
    membuf *m = ctx;
    if (m->len + n > m->cap) {
        m->cap = (m->len + n) * 2;
        m->p = realloc(m->p, m->cap);
        if (!m->p) die("realloc");
    }
    memcpy(m->p + m->len, buf, n);
    m->len += n;
    return LORA_OK;
}

static void ok(lora_status st, const char *what)
{
    if (st == LORA_OK) return;
    fprintf(stderr, "gen_seeds: %s: %s\n", what, lora_status_name(st));
    exit(1);
}

/* Stream `w` with random tensor data into OUT/gguf/name. */
static void gguf_finish(gen *g, lora_gguf_writer *w, const char *name, const uint64_t *nbytes, uint32_t n)
{
    membuf m = {NULL, 0, 0};
    lora_error err;
    ok(lora_gguf_writer_begin(w, mem_sink, &m, &err), name);
    for (uint32_t i = 0; i < n; i++) {
        uint8_t *d = malloc((size_t)nbytes[i] + 1);
        if (!d) die("malloc");
        fill(g, d, (size_t)nbytes[i]);
        ok(lora_gguf_writer_write_data(w, d, (size_t)nbytes[i], &err), name);
        free(d);
    }
    ok(lora_gguf_writer_finish(w, &err), name);
    put(g, "gguf", name, m.p, m.len);
    free(m.p);
    lora_gguf_writer_free(w);
}

static void gen_gguf_adapter(gen *g)
{
    lora_gguf_writer *w;
    ok(lora_gguf_writer_create(NULL, &w), "create");
    ok(lora_gguf_writer_add_str(w, "general.architecture", "llama", 5), "kv");
    ok(lora_gguf_writer_add_str(w, "general.type", "adapter", 7), "kv");
    ok(lora_gguf_writer_add_str(w, "adapter.type", "lora", 4), "kv");
    ok(lora_gguf_writer_add_f32(w, "adapter.lora.alpha", 16.0f), "kv");
    ok(lora_gguf_writer_add_u32(w, "general.quantization_version", 2), "kv");
    uint64_t a[2] = {64, 4}, b[2] = {4, 64}, q[2] = {64, 8};
    ok(lora_gguf_writer_add_tensor(w, "blk.0.attn_q.weight.lora_a", LORA_GGML_F32, 2, a), "tensor");
    ok(lora_gguf_writer_add_tensor(w, "blk.0.attn_q.weight.lora_b", LORA_GGML_F16, 2, b), "tensor");
    ok(lora_gguf_writer_add_tensor(w, "blk.0.attn_v.weight.lora_a", LORA_GGML_Q8_0, 2, q), "tensor");
    ok(lora_gguf_writer_add_tensor(w, "blk.0.attn_v.weight.lora_b", LORA_GGML_BF16, 2, b), "tensor");
    uint64_t sizes[4] = {64 * 4 * 4, 4 * 64 * 2, 8 * 2 * 34, 4 * 64 * 2};
    gguf_finish(g, w, "lora_adapter", sizes, 4);
}

static void gen_gguf_vocab(gen *g)
{
    lora_gguf_writer *w;
    ok(lora_gguf_writer_create(NULL, &w), "create");
    static const char *const tokens[] = {"<unk>", "<s>", "</s>", "\xe2\x96\x81" "the", "\xe2\x96\x81" "a", "<0x0A>",
                                         "ing", "\xe2\x96\x81\xe3\x81\x82", "", "z"};
    const uint32_t n = sizeof tokens / sizeof tokens[0];
    float scores[10];
    int32_t types[10];
    for (uint32_t i = 0; i < n; i++) {
        scores[i] = -(float)i;
        types[i] = i < 3 ? 3 : 1;
    }
    ok(lora_gguf_writer_add_str(w, "general.architecture", "llama", 5), "kv");
    ok(lora_gguf_writer_add_str(w, "tokenizer.ggml.model", "llama", 5), "kv");
    ok(lora_gguf_writer_add_arr_str(w, "tokenizer.ggml.tokens", tokens, NULL, n), "kv");
    ok(lora_gguf_writer_add_arr_f32(w, "tokenizer.ggml.scores", scores, n), "kv");
    ok(lora_gguf_writer_add_arr_i32(w, "tokenizer.ggml.token_type", types, n), "kv");
    ok(lora_gguf_writer_add_u32(w, "tokenizer.ggml.bos_token_id", 1), "kv");
    ok(lora_gguf_writer_add_bool(w, "tokenizer.ggml.add_bos_token", 1), "kv");
    ok(lora_gguf_writer_add_u64(w, "general.file_type", 1), "kv");
    gguf_finish(g, w, "vocab", NULL, 0);
}

static void gen_gguf_aligned(gen *g, uint32_t align, const char *name)
{
    lora_gguf_writer *w;
    ok(lora_gguf_writer_create(NULL, &w), "create");
    ok(lora_gguf_writer_add_u32(w, "general.alignment", align), "kv");
    ok(lora_gguf_writer_add_i32(w, "x.i32", -7), "kv");
    uint32_t u[3] = {1, 2, 3};
    ok(lora_gguf_writer_add_arr_u32(w, "x.arr_u32", u, 3), "kv");
    uint64_t q4[1] = {64}, k[2] = {256, 1}, t[3] = {3, 1, 1};
    ok(lora_gguf_writer_add_tensor(w, "q4", LORA_GGML_Q4_0, 1, q4), "tensor");
    ok(lora_gguf_writer_add_tensor(w, "k", LORA_GGML_Q4_K, 2, k), "tensor");
    ok(lora_gguf_writer_add_tensor(w, "t", LORA_GGML_F32, 3, t), "tensor");
    uint64_t sizes[3] = {2 * 18, 144, 12};
    gguf_finish(g, w, name, sizes, 3);
}

/* Value types the writer has no call for, spelled out byte by byte. */
static void gen_gguf_every_type(gen *g, uint32_t version, const char *name)
{
    uint8_t b[1024];
    size_t n = 0;
#define PUT(v, w)                                                                \
    do {                                                                         \
        uint64_t v_ = (uint64_t)(v);                                             \
        for (int i_ = 0; i_ < (w); i_++) b[n++] = (uint8_t)(v_ >> (8 * i_));     \
    } while (0)
#define STR(s) do { PUT(strlen(s), 8); memcpy(b + n, s, strlen(s)); n += strlen(s); } while (0)
    memcpy(b, "GGUF", 4);
    n = 4;
    PUT(version, 4);
    PUT(0, 8);  /* tensors */
    PUT(13, 8); /* KVs */
    STR("t.u8"); PUT(0, 4); PUT(200, 1);
    STR("t.i8"); PUT(1, 4); PUT(-3, 1);
    STR("t.u16"); PUT(2, 4); PUT(65535, 2);
    STR("t.i16"); PUT(3, 4); PUT(-300, 2);
    STR("t.u32"); PUT(4, 4); PUT(7, 4);
    STR("t.i32"); PUT(5, 4); PUT(-7, 4);
    STR("t.f32"); PUT(6, 4); PUT(0x3fc00000, 4);
    STR("t.bool"); PUT(7, 4); PUT(1, 1);
    STR("t.str"); PUT(8, 4); STR("hello");
    STR("t.arr_f64"); PUT(9, 4); PUT(12, 4); PUT(2, 8); PUT(0x3ff0000000000000ull, 8); PUT(0, 8);
    STR("t.u64"); PUT(10, 4); PUT(UINT64_MAX, 8);
    STR("t.i64"); PUT(11, 4); PUT(-1, 8);
    STR("t.f64"); PUT(12, 4); PUT(0x7ff8000000000000ull, 8);
#undef STR
#undef PUT
    put(g, "gguf", name, b, n);
}

static void gen_gguf(gen *g)
{
    gen_gguf_adapter(g);
    gen_gguf_vocab(g);
    gen_gguf_aligned(g, 64, "align_64");
    gen_gguf_aligned(g, 1, "align_1");
    gen_gguf_every_type(g, 3, "every_type_v3");
    gen_gguf_every_type(g, 2, "every_type_v2");
}

/* ---- zlib_blob ------------------------------------------------------------ */

/* control byte, then a zlib stream of `src` made with the given settings. */
static void zlib_seed(gen *g, const char *name, uint8_t control, const uint8_t *src, size_t n, int level, int strategy,
                      int window, const char *dict)
{
    uint8_t out[8192];
    out[0] = control;
    z_stream z;
    memset(&z, 0, sizeof z);
    if (deflateInit2(&z, level, Z_DEFLATED, window, 8, strategy) != Z_OK) die("deflateInit2");
    if (dict) deflateSetDictionary(&z, (const Bytef *)dict, (uInt)strlen(dict));
    z.next_in = src;
    z.avail_in = (uInt)n;
    z.next_out = out + 1;
    z.avail_out = sizeof out - 1;
    if (deflate(&z, Z_FINISH) != Z_STREAM_END) die("deflate");
    size_t len = 1 + z.total_out;
    deflateEnd(&z);
    put(g, "zlib_blob", name, out, len);
}

static void gen_zlib(gen *g)
{
    uint8_t src[4096], zeros[4096];
    fill(g, src, sizeof src);
    memset(zeros, 0, sizeof zeros);
    float ramp[256];
    for (int i = 0; i < 256; i++) ramp[i] = sinf((float)i * 0.1f);
    zlib_seed(g, "random_l6", 0x00, src, 1024, 6, Z_DEFAULT_STRATEGY, 15, NULL);
    zlib_seed(g, "ramp_f32", 0x00, (const uint8_t *)ramp, sizeof ramp, 9, Z_DEFAULT_STRATEGY, 15, NULL);
    zlib_seed(g, "zeros_bomb", 0x00, zeros, sizeof zeros, 9, Z_DEFAULT_STRATEGY, 15, NULL);
    zlib_seed(g, "stored", 0x20, src, 340, 0, Z_DEFAULT_STRATEGY, 15, NULL);
    zlib_seed(g, "fixed_huffman", 0x40, (const uint8_t *)ramp, 512, 6, Z_FIXED, 15, NULL);
    zlib_seed(g, "rle", 0x60, zeros, 1088, 6, Z_RLE, 15, NULL);
    zlib_seed(g, "small_window", 0x80, src, 512, 6, Z_DEFAULT_STRATEGY, 9, NULL);
    zlib_seed(g, "fdict", 0x00, src, 64, 6, Z_DEFAULT_STRATEGY, 15, "dictionary");
    zlib_seed(g, "off_by_one", 0x12, src, 400, 6, Z_DEFAULT_STRATEGY, 15, NULL);
    zlib_seed(g, "guard_edge", 0x03, zeros, 64, 9, Z_DEFAULT_STRATEGY, 15, NULL);
    zlib_seed(g, "empty", 0x00, src, 0, 6, Z_DEFAULT_STRATEGY, 15, NULL);
    zlib_seed(g, "nf4", 0xa0, src, 2304, 1, Z_DEFAULT_STRATEGY, 15, NULL);
}

/* ---- roundtrip and kernels ------------------------------------------------ */

static void gen_random(gen *g, const char *harness, int count, size_t max)
{
    uint8_t buf[4096];
    char name[32];
    for (int i = 0; i < count; i++) {
        size_t n = 1 + (size_t)(rng(g) % max);
        fill(g, buf, n);
        snprintf(name, sizeof name, "random_%02d", i);
        put(g, harness, name, buf, n);
    }
}

static void gen_kernels(gen *g)
{
    /* f32 and f16 patterns at every special case and rounding edge. */
    static const uint32_t f32[] = {
        0x00000000, 0x80000000, 0x7f800000, 0xff800000, 0x7fc00000, 0x7f800001, 0xffc00001, 0x00000001,
        0x007fffff, 0x00800000, 0x7f7fffff, 0x477fe000, 0x477ff000, 0x477fefff, 0x33800000, 0x33000000,
        0x387fc000, 0x3f808000, 0x3f818000, 0x3f800001, 0xc7800000, 0x3f800000, 0xbf800000, 0x3dcccccd,
    };
    uint8_t buf[4096];
    size_t n = 0;
    for (int rep = 0; rep < 6; rep++)
        for (size_t i = 0; i < sizeof f32 / sizeof f32[0]; i++)
            for (int k = 0; k < 4; k++) buf[n++] = (uint8_t)(f32[i] >> (8 * k));
    put(g, "kernels", "f32_specials", buf, n);
    static const uint16_t f16[] = {0x0000, 0x8000, 0x7c00, 0xfc00, 0x7e00, 0x7c01, 0xfe01, 0x0001,
                                   0x03ff, 0x0400, 0x7bff, 0x3c00, 0xbc00, 0x3555, 0x7f80, 0x7fc1};
    n = 0;
    for (int rep = 0; rep < 8; rep++)
        for (size_t i = 0; i < sizeof f16 / sizeof f16[0]; i++) {
            buf[n++] = (uint8_t)f16[i];
            buf[n++] = (uint8_t)(f16[i] >> 8);
        }
    put(g, "kernels", "f16_specials", buf, n);
    gen_random(g, "kernels", 6, 4096);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: gen_seeds OUTDIR\n");
        return 2;
    }
    gen g = {argv[1], 0x6c6f72612d66757aull}; /* "lora-fuz" */
    if (mkdir(g.dir, 0755) != 0 && errno != EEXIST) die(g.dir);
    gen_safetensors(&g);
    gen_gguf(&g);
    gen_zlib(&g);
    gen_random(&g, "roundtrip", 24, 2048);
    gen_kernels(&g);
    return 0;
}
