/*
 * test_merge_gguf.c - lora_merge into GGUF bases: a generated llama model
 * with F16, BF16, F32, Q8_0 and Q4_0 targets, and the real tiny llama GGUF
 * of the fixtures with a generated adapter of matching shape.
 *
 * Oracle: the adapter's modules carry Hugging Face names and Hugging Face
 * row order; the reference maps each GGUF row back to its Hugging Face row
 * with the converter's permute (LlamaModel.permute: reshape(n_head, 2,
 * hd / 2, in).swapaxes(1, 2), written here as index arithmetic), computes
 * W + s B A in float64, and rounds once (F16/BF16/F32), or, for Q8_0 and
 * Q4_0, rounds to f32 and quantizes with the reference quantizer. Other
 * tensors and every KV must come through unchanged.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/gguf.h"
#include "io/map_file.h"
#include "kernels/kernels.h"
#include "lora_ops.h"
#include "merge_support.h"
#include "ops/merge.h"

/* ---- the converter's row order ---------------------------------------------------------- */

/* HF row of GGUF row g for a weight permuted with `heads` heads. */
static uint64_t hf_row(uint64_t g, uint64_t rows, uint64_t heads)
{
    uint64_t hd = rows / heads, h = g / hd, w = g % hd; /* w = t * 2 + i in (hd/2, 2) */
    uint64_t t = w / 2, i = w % 2;
    return h * hd + i * (hd / 2) + t; /* (h, i, t) in (heads, 2, hd/2) */
}

/* ---- a GGUF base ---------------------------------------------------------------------------- */

typedef struct {
    const char *name;
    uint32_t type;              /* ggml */
    uint64_t rows, cols;        /* torch order; cols 0 = 1-D */
    uint8_t *bytes;
    size_t size;
} gtensor;

static size_t gbytes(uint32_t type, uint64_t n)
{
    switch (type) {
    case LORA_GGML_F32: return (size_t)n * 4;
    case LORA_GGML_F16:
    case LORA_GGML_BF16: return (size_t)n * 2;
    case LORA_GGML_Q8_0: return (size_t)n / 32 * 34;
    case LORA_GGML_Q4_0: return (size_t)n / 32 * 18;
    default: return 0;
    }
}

static ms_type ms_of_ggml(uint32_t type)
{
    return type == LORA_GGML_F32 ? MS_F32 : type == LORA_GGML_F16 ? MS_F16 : MS_BF16;
}

static int quant(uint32_t t) { return t == LORA_GGML_Q8_0 || t == LORA_GGML_Q4_0; }

static void dequant(uint32_t t, const uint8_t *src, float *dst, uint64_t n)
{
    if (t == LORA_GGML_Q8_0) lora_kernels_ref.q8_0_to_f32(src, dst, (size_t)n / 32);
    else lora_kernels_ref.q4_0_to_f32(src, dst, (size_t)n / 32);
}

static void quantize(uint32_t t, const float *src, uint8_t *dst, uint64_t n)
{
    if (t == LORA_GGML_Q8_0) lora_kernels_ref.f32_to_q8_0(src, dst, (size_t)n / 32);
    else lora_kernels_ref.f32_to_q4_0(src, dst, (size_t)n / 32);
}

static void gt_fill(gtensor *g, uint64_t seed)
{
    uint64_t n = g->rows * (g->cols ? g->cols : 1);
    g->size = gbytes(g->type, n);
    g->bytes = malloc(g->size);
    assert_non_null(g->bytes);
    uint64_t s = seed;
    if (quant(g->type)) {
        float *f = malloc((size_t)n * sizeof *f);
        assert_non_null(f);
        for (uint64_t i = 0; i < n; i++) f[i] = (float)ms_uniform(&s, 1.0);
        quantize(g->type, f, g->bytes, n);
        free(f);
        return;
    }
    ms_type t = ms_of_ggml(g->type);
    for (uint64_t i = 0; i < n; i++) ms_store(t, ms_uniform(&s, 1.0), g->bytes + i * ms_size(t));
}

static void write_gguf_arch(const char *path, const char *arch, const gtensor *t, size_t n, uint32_t heads,
                            uint32_t kv_heads)
{
    lora_gguf_writer *w;
    char key[64];
    assert_int_equal(lora_gguf_writer_create(NULL, &w), LORA_OK);
    assert_int_equal(lora_gguf_writer_add_str(w, "general.architecture", arch, strlen(arch)), LORA_OK);
    assert_int_equal(lora_gguf_writer_add_str(w, "general.name", "merge test", 10), LORA_OK);
    snprintf(key, sizeof key, "%s.attention.head_count", arch);
    assert_int_equal(lora_gguf_writer_add_u32(w, key, heads), LORA_OK);
    snprintf(key, sizeof key, "%s.attention.head_count_kv", arch);
    assert_int_equal(lora_gguf_writer_add_u32(w, key, kv_heads), LORA_OK);
    assert_int_equal(lora_gguf_writer_add_u32(w, "general.file_type", 7), LORA_OK);
    for (size_t i = 0; i < n; i++) {
        uint64_t ne[2] = {t[i].cols ? t[i].cols : t[i].rows, t[i].rows};
        assert_int_equal(lora_gguf_writer_add_tensor(w, t[i].name, t[i].type, t[i].cols ? 2 : 1, ne), LORA_OK);
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    lora_error err;
    assert_int_equal(lora_gguf_writer_begin(w, lora_gguf_sink_fd, &fd, &err), LORA_OK);
    for (size_t i = 0; i < n; i++) assert_int_equal(lora_gguf_writer_write_data(w, t[i].bytes, t[i].size, &err), LORA_OK);
    assert_int_equal(lora_gguf_writer_finish(w, &err), LORA_OK);
    close(fd);
    lora_gguf_writer_free(w);
}

static void write_gguf(const char *path, const gtensor *t, size_t n, uint32_t heads, uint32_t kv_heads)
{
    write_gguf_arch(path, "llama", t, n, heads, kv_heads);
}

/* A parsed GGUF file and its mapping. */
typedef struct {
    void *map;
    size_t size;
    lora_gguf *g;
} gfile;

static void gopen(gfile *f, const char *path)
{
    lora_error err;
    assert_int_equal(lora_io_map_file(path, &f->map, &f->size, &err), LORA_OK);
    assert_int_equal(lora_gguf_parse(f->map, f->size, NULL, NULL, &f->g, &err), LORA_OK);
}

static void gclose(gfile *f)
{
    lora_gguf_free(f->g);
    lora_io_unmap_file(f->map, f->size);
}

/* ---- the reference ------------------------------------------------------------------------------ */

/* Base value (i, j) of a GGUF tensor as f32-exact double. */
static double base_value(const lora_gguf_tensor *t, uint64_t i, uint64_t j, uint64_t cols, const float *deq)
{
    if (quant(t->type)) return deq[i * cols + j];
    ms_type mt = ms_of_ggml(t->type);
    return ms_load(mt, t->data + (i * cols + j) * ms_size(mt));
}

/* Check GGUF tensor `name` of the output against module m (HF rows; heads
 * 0 = not permuted; DoRA when m has a magnitude, per HF row). */
static void check_gguf_target(const gfile *base, const gfile *out, const char *name, const ms_module *m, uint64_t heads)
{
    const lora_gguf_tensor *bt = lora_gguf_find_tensor(base->g, name), *ot = lora_gguf_find_tensor(out->g, name);
    assert_non_null(bt);
    assert_non_null(ot);
    assert_int_equal(ot->type, bt->type);
    uint64_t rows = bt->ne[1], cols = bt->ne[0], n = rows * cols;
    float *deq = NULL;
    if (quant(bt->type)) {
        deq = malloc((size_t)n * sizeof *deq);
        assert_non_null(deq);
        dequant(bt->type, bt->data, deq, n);
    }
    double *v = malloc((size_t)n * sizeof *v), *norm = calloc((size_t)rows, sizeof *norm);
    assert_non_null(v);
    assert_non_null(norm);
    for (uint64_t g = 0; g < rows; g++) {
        uint64_t h = heads ? hf_row(g, rows, heads) : g;
        for (uint64_t j = 0; j < cols; j++) {
            /* An embedding's delta is (B A)^T: HF and GGUF agree on [vocab, dim]. */
            double x = base_value(bt, g, j, cols, deq) + m->scale * ms_delta(m, h, j, cols);
            v[g * cols + j] = x;
            norm[g] += x * x;
        }
    }
    if (m->mag)
        for (uint64_t g = 0; g < rows; g++) {
            double f = (double)m->mag[heads ? hf_row(g, rows, heads) : g] / sqrt(norm[g]);
            for (uint64_t j = 0; j < cols; j++) v[g * cols + j] *= f;
        }
    if (quant(bt->type)) {
        /* Round to f32, quantize with the reference; a block may differ
         * only where an f32 rounding of the float64 value went the other way. */
        float *f = malloc((size_t)n * sizeof *f);
        uint8_t *want = malloc(gbytes(bt->type, n));
        assert_non_null(f);
        assert_non_null(want);
        for (uint64_t i = 0; i < n; i++) f[i] = (float)v[i];
        quantize(bt->type, f, want, n);
        size_t bb = gbytes(bt->type, 32), blocks = (size_t)n / 32, differ = 0;
        for (size_t b = 0; b < blocks; b++) differ += memcmp(want + b * bb, ot->data + b * bb, bb) != 0;
        assert_true(differ * 100 <= blocks);
        free(f);
        free(want);
    } else {
        ms_type mt = ms_of_ggml(bt->type);
        ms_tally tally = {0, 0, 0, 0, 0};
        for (uint64_t i = 0; i < n; i++) ms_compare(mt, v[i], ot->data + i * ms_size(mt), &tally);
        if (m->mag && mt == MS_F32) assert_true(tally.max_rel <= 2e-7);
        else assert_true(ms_tally_ok(mt, &tally, name));
    }
    free(deq);
    free(v);
    free(norm);
}

static void check_gguf_same(const gfile *base, const gfile *out, const char *name)
{
    const lora_gguf_tensor *bt = lora_gguf_find_tensor(base->g, name), *ot = lora_gguf_find_tensor(out->g, name);
    assert_non_null(bt);
    assert_non_null(ot);
    assert_int_equal(ot->type, bt->type);
    assert_int_equal(ot->nbytes, bt->nbytes);
    assert_memory_equal(ot->data, bt->data, (size_t)bt->nbytes);
}

/* Every KV of the base, in order, with the same value bytes. */
static void check_kvs(const gfile *base, const gfile *out)
{
    assert_int_equal(lora_gguf_kv_count(out->g), lora_gguf_kv_count(base->g));
    for (uint64_t i = 0; i < lora_gguf_kv_count(base->g); i++) {
        const lora_gguf_kv *a = lora_gguf_kv_at(base->g, i), *b = lora_gguf_kv_at(out->g, i);
        assert_string_equal(a->key, b->key);
        assert_int_equal(a->type, b->type);
        assert_int_equal(a->value_size, b->value_size);
        assert_memory_equal((const uint8_t *)base->map + a->value_offset, (const uint8_t *)out->map + b->value_offset,
                            (size_t)a->value_size);
    }
}

static lora_status merge(const char *base, const char *adapter, const char *out, uint32_t threads, uint64_t block,
                         lora_merge_report *rep, lora_error *err)
{
    lora_merge_adapter a = LORA_MERGE_ADAPTER_INIT(adapter);
    lora_merge_options o = LORA_MERGE_OPTIONS_INIT;
    o.base = base;
    o.adapters = &a;
    o.adapter_count = 1;
    o.output = out;
    o.threads = threads;
    lora_merge_hooks h = {NULL, NULL, NULL, block, NULL, NULL};
    return lora_merge_run(&o, 0, &h, rep, err);
}

/* ---- tests --------------------------------------------------------------------------------------- */

static void test_generated_llama(void **state)
{
    (void)state;
    char dir[512], base[600], ad[600], out[700], first[700] = "";
    ms_tmpdir(dir, sizeof dir);
    gtensor t[] = {
        {"token_embd.weight", LORA_GGML_F16, 40, 64, NULL, 0},
        {"blk.0.attn_norm.weight", LORA_GGML_F32, 64, 0, NULL, 0},
        {"blk.0.attn_q.weight", LORA_GGML_F16, 64, 64, NULL, 0},
        {"blk.0.attn_k.weight", LORA_GGML_Q8_0, 32, 64, NULL, 0},
        {"blk.0.attn_v.weight", LORA_GGML_Q4_0, 32, 64, NULL, 0},
        {"blk.0.attn_output.weight", LORA_GGML_BF16, 64, 64, NULL, 0},
        {"blk.0.ffn_down.weight", LORA_GGML_F32, 64, 96, NULL, 0},
        {"output.weight", LORA_GGML_Q8_0, 40, 64, NULL, 0},
    };
    const size_t nt = sizeof t / sizeof t[0];
    for (size_t i = 0; i < nt; i++) gt_fill(&t[i], 100 + i);
    write_gguf(ms_path(base, sizeof base, dir, "model.gguf"), t, nt, 4, 2);
    const uint64_t emb[2] = {40, 64}, q[2] = {64, 64}, kv[2] = {32, 64}, down[2] = {64, 96};
    ms_module m[6];
    ms_module_init(&m[0], "model.embed_tokens", LORA_KIND_EMBEDDING, 0, 4, 4.0f, 2, emb, 0, 0, 201);
    ms_module_init(&m[1], "model.layers.0.self_attn.q_proj", LORA_KIND_LINEAR, 0, 4, 8.0f, 2, q, 0, 1, 202);
    ms_module_init(&m[2], "model.layers.0.self_attn.k_proj", LORA_KIND_LINEAR, 0, 4, 4.0f, 2, kv, 0, 0, 203);
    ms_module_init(&m[3], "model.layers.0.self_attn.v_proj", LORA_KIND_LINEAR, 0, 2, 2.0f, 2, kv, 0, 0, 204);
    ms_module_init(&m[4], "model.layers.0.self_attn.o_proj", LORA_KIND_LINEAR, 0, 4, 4.0f, 2, q, 0, 0, 205);
    ms_module_init(&m[5], "model.layers.0.mlp.down_proj", LORA_KIND_LINEAR, 0, 4, 4.0f, 2, down, 0, 0, 206);
    assert_int_equal(ms_write_adapter(ms_path(ad, sizeof ad, dir, "a.lora"), m, 6, NULL, 0), LORA_OK);
    for (uint32_t th = 1; th <= 3; th++) {
        snprintf(out, sizeof out, "%s/merged-%u.gguf", dir, th);
        lora_merge_report rep;
        lora_error err;
        assert_int_equal(merge(base, ad, out, th, 64, &rep, &err), LORA_OK);
        assert_string_equal(rep.base_format, "gguf");
        assert_int_equal(rep.merged, 6);
        assert_int_equal(rep.requantized, 2);
        assert_int_equal(rep.requantized_q8_0, 1);
        assert_int_equal(rep.requantized_q4_0, 1);
        if (first[0]) {
            assert_true(ms_file_equal(first, out));
            continue;
        }
        snprintf(first, sizeof first, "%s", out);
        gfile b, o;
        gopen(&b, base);
        gopen(&o, out);
        check_kvs(&b, &o);
        check_gguf_target(&b, &o, "token_embd.weight", &m[0], 0);
        check_gguf_target(&b, &o, "blk.0.attn_q.weight", &m[1], 4);
        check_gguf_target(&b, &o, "blk.0.attn_k.weight", &m[2], 2);
        check_gguf_target(&b, &o, "blk.0.attn_v.weight", &m[3], 0);
        check_gguf_target(&b, &o, "blk.0.attn_output.weight", &m[4], 0);
        check_gguf_target(&b, &o, "blk.0.ffn_down.weight", &m[5], 0);
        check_gguf_same(&b, &o, "blk.0.attn_norm.weight");
        check_gguf_same(&b, &o, "output.weight");
        gclose(&b);
        gclose(&o);
    }
    /* Without the head count the Q/K row order is unknown: refused. */
    write_gguf(base, t, nt, 0, 0);
    lora_merge_report rep;
    lora_error err;
    assert_int_equal(merge(base, ad, out, 1, 64, &rep, &err), LORA_E_NOT_FOUND);
    assert_non_null(strstr(err.detail, "head_count"));
    for (size_t i = 0; i < nt; i++) free(t[i].bytes);
    for (int i = 0; i < 6; i++) ms_module_free(&m[i]);
    ms_rmtree(dir);
}

/* --dtype converts the float matrices of a GGUF base, keeps 1-D tensors
 * and quantized ones, and updates general.file_type only when nothing is
 * quantized. */
static void test_gguf_dtype(void **state)
{
    (void)state;
    char dir[512], base[600], ad[600], out[700];
    ms_tmpdir(dir, sizeof dir);
    gtensor t[] = {
        {"blk.0.attn_norm.weight", LORA_GGML_F32, 64, 0, NULL, 0},
        {"blk.0.attn_output.weight", LORA_GGML_F16, 64, 64, NULL, 0},
        {"blk.0.ffn_down.weight", LORA_GGML_BF16, 64, 96, NULL, 0},
    };
    for (size_t i = 0; i < 3; i++) gt_fill(&t[i], 300 + i);
    write_gguf(ms_path(base, sizeof base, dir, "model.gguf"), t, 3, 4, 4);
    const uint64_t o[2] = {64, 64};
    ms_module m;
    ms_module_init(&m, "model.layers.0.self_attn.o_proj", LORA_KIND_LINEAR, 0, 2, 2.0f, 2, o, 0, 0, 301);
    assert_int_equal(ms_write_adapter(ms_path(ad, sizeof ad, dir, "a.lora"), &m, 1, NULL, 0), LORA_OK);
    lora_merge_adapter a = LORA_MERGE_ADAPTER_INIT(ad);
    lora_merge_options opt = LORA_MERGE_OPTIONS_INIT;
    opt.base = base;
    opt.adapters = &a;
    opt.adapter_count = 1;
    opt.output = ms_path(out, sizeof out, dir, "f32.gguf");
    opt.dtype = LORA_DTYPE_F32;
    lora_merge_report rep;
    lora_error err;
    assert_int_equal(lora_merge(&opt, &rep, &err), LORA_OK);
    assert_int_equal(rep.merged, 1);
    assert_int_equal(rep.converted, 1);
    gfile g;
    gopen(&g, out);
    assert_int_equal(lora_gguf_find_tensor(g.g, "blk.0.attn_norm.weight")->type, LORA_GGML_F32);
    assert_int_equal(lora_gguf_find_tensor(g.g, "blk.0.attn_output.weight")->type, LORA_GGML_F32);
    const lora_gguf_tensor *d = lora_gguf_find_tensor(g.g, "blk.0.ffn_down.weight");
    assert_int_equal(d->type, LORA_GGML_F32);
    for (uint64_t i = 0; i < 64 * 96; i++) assert_true(ms_load(MS_F32, d->data + 4 * i) == ms_load(MS_BF16, t[2].bytes + 2 * i));
    uint32_t ft = 99;
    assert_int_equal(lora_gguf_get_u32(g.g, "general.file_type", &ft, NULL), LORA_OK);
    assert_int_equal(ft, 0);
    gclose(&g);
    for (size_t i = 0; i < 3; i++) free(t[i].bytes);
    ms_module_free(&m);
    ms_rmtree(dir);
}

/* GPT-2 in GGUF: llama.cpp stores the Conv1D weights [out, in], so a
 * fan_in_fan_out module (base_shape [in, out]) merges untransposed there. */
static void test_gguf_gpt2_conv1d(void **state)
{
    (void)state;
    char dir[512], base[600], ad[600], out[700];
    ms_tmpdir(dir, sizeof dir);
    gtensor t[] = {
        {"token_embd.weight", LORA_GGML_F32, 50, 16, NULL, 0},
        {"blk.0.attn_qkv.weight", LORA_GGML_F16, 48, 16, NULL, 0},
        {"blk.0.attn_qkv.bias", LORA_GGML_F32, 48, 0, NULL, 0},
    };
    for (size_t i = 0; i < 3; i++) gt_fill(&t[i], 600 + i);
    write_gguf_arch(ms_path(base, sizeof base, dir, "gpt2.gguf"), "gpt2", t, 3, 2, 2);
    const uint64_t hf[2] = {16, 48};
    ms_module m;
    ms_module_init(&m, "transformer.h.0.attn.c_attn", LORA_KIND_LINEAR, LORA_MODULE_FAN_IN_FAN_OUT, 4, 8.0f, 2, hf, 1,
                   0, 601);
    assert_int_equal(ms_write_adapter(ms_path(ad, sizeof ad, dir, "a.lora"), &m, 1, NULL, 0), LORA_OK);
    lora_merge_report rep;
    lora_error err;
    assert_int_equal(merge(base, ad, ms_path(out, sizeof out, dir, "out.gguf"), 2, 64, &rep, &err), LORA_OK);
    assert_int_equal(rep.merged, 2);
    gfile b, o;
    gopen(&b, base);
    gopen(&o, out);
    const lora_gguf_tensor *w = lora_gguf_find_tensor(o.g, "blk.0.attn_qkv.weight");
    const lora_gguf_tensor *bias = lora_gguf_find_tensor(o.g, "blk.0.attn_qkv.bias");
    ms_tally tally = {0, 0, 0, 0, 0};
    for (uint64_t r = 0; r < 48; r++)
        for (uint64_t c = 0; c < 16; c++) /* GGUF [out][in] = HF [in][out] transposed */
            ms_compare(MS_F16, ms_load(MS_F16, t[1].bytes + 2 * (r * 16 + c)) + m.scale * ms_delta(&m, c, r, 48),
                       w->data + 2 * (r * 16 + c), &tally);
    assert_true(ms_tally_ok(MS_F16, &tally, "attn_qkv"));
    ms_tally tb = {0, 0, 0, 0, 0};
    for (uint64_t r = 0; r < 48; r++)
        ms_compare(MS_F32, ms_load(MS_F32, t[2].bytes + 4 * r) + m.scale * (double)m.bias[r], bias->data + 4 * r, &tb);
    assert_true(ms_tally_ok(MS_F32, &tb, "attn_qkv.bias"));
    check_gguf_same(&b, &o, "token_embd.weight");
    gclose(&b);
    gclose(&o);
    for (size_t i = 0; i < 3; i++) free(t[i].bytes);
    ms_module_free(&m);
    ms_rmtree(dir);
}

static int fixtures_or_skip(const char **root)
{
    *root = ms_fixtures();
    if (*root) return 1;
    if (getenv("CI")) fail_msg("fixtures missing (CI is set)");
    return 0;
}

/* The real tiny llama GGUF (hidden 8, 2 heads, F16): a generated adapter on
 * every projection, with the converter's Q/K order. */
static void test_real_llama_gguf(void **state)
{
    (void)state;
    const char *root;
    if (!fixtures_or_skip(&root)) {
        skip();
        return;
    }
    char base[700], dir[512], ad[600], out[700];
    snprintf(base, sizeof base, "%s/gguf-llama2-tiny-random/llama-2-tiny-random.gguf", root);
    ms_tmpdir(dir, sizeof dir);
    static const char *const hf[] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                                     "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"};
    static const char *const gg[] = {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"};
    const uint64_t shapes[7][2] = {{8, 8}, {8, 8}, {8, 8}, {8, 8}, {32, 8}, {32, 8}, {8, 32}};
    ms_module m[7];
    for (int i = 0; i < 7; i++) {
        char name[128];
        snprintf(name, sizeof name, "model.layers.0.%s", hf[i]);
        ms_module_init(&m[i], name, LORA_KIND_LINEAR, 0, 2, 4.0f, 2, shapes[i], 0, 0, 400 + (uint64_t)i);
    }
    assert_int_equal(ms_write_adapter(ms_path(ad, sizeof ad, dir, "a.lora"), m, 7, NULL, 0), LORA_OK);
    lora_merge_report rep;
    lora_error err;
    assert_int_equal(merge(base, ad, ms_path(out, sizeof out, dir, "merged.gguf"), 2, 0, &rep, &err), LORA_OK);
    assert_int_equal(rep.merged, 7);
    assert_int_equal(rep.requantized, 0);
    gfile b, o;
    gopen(&b, base);
    gopen(&o, out);
    check_kvs(&b, &o);
    assert_int_equal(lora_gguf_tensor_count(o.g), lora_gguf_tensor_count(b.g));
    for (int i = 0; i < 7; i++) {
        char name[64];
        snprintf(name, sizeof name, "blk.0.%s.weight", gg[i]);
        check_gguf_target(&b, &o, name, &m[i], i == 0 || i == 1 ? 2 : 0);
    }
    static const char *const same[] = {"token_embd.weight", "blk.0.attn_norm.weight", "blk.0.ffn_norm.weight",
                                       "output_norm.weight", "output.weight"};
    for (size_t i = 0; i < sizeof same / sizeof same[0]; i++) check_gguf_same(&b, &o, same[i]);
    gclose(&b);
    gclose(&o);
    /* lora-verify --base's check on the same pair. */
    lora_merge_adapter a = LORA_MERGE_ADAPTER_INIT(ad);
    lora_merge_options opt = LORA_MERGE_OPTIONS_INIT;
    opt.base = base;
    opt.adapters = &a;
    opt.adapter_count = 1;
    assert_int_equal(lora_merge_check(&opt, &rep, &err), LORA_OK);
    assert_int_equal(rep.modules, 7);
    for (int i = 0; i < 7; i++) ms_module_free(&m[i]);
    ms_rmtree(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_generated_llama),
        cmocka_unit_test(test_gguf_dtype),
        cmocka_unit_test(test_gguf_gpt2_conv1d),
        cmocka_unit_test(test_real_llama_gguf),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
