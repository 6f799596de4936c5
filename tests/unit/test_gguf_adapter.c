/*
 * test_gguf_adapter.c - .lora <-> llama.cpp GGUF adapters (lib/ops/gguf_*.c).
 *
 * The oracle is the math, computed here in float64 from the stored values:
 *   .lora side   dW = s * B @ A, oriented as the Hugging Face base weight
 *                (linear [out,in], fan_in_fan_out [in,out], embedding
 *                (B @ A)^T [num,dim]), per design.md.
 *   GGUF side    what llama.cpp computes: scale = alpha / (float)lora_b.ne[0]
 *                (alpha 0: 1), delta = scale * B' @ A in GGUF orientation
 *                (token_embd: row t = scale * B' @ A_t, A stored [num,r]);
 *                then this file's own index formulas take it back to the HF
 *                orientation: LlamaModel.permute / GPTNeoX's QKV regrouping
 *                undone, GPT-2 transposed.
 *
 * Tolerances. Every GGUF tensor element is a binary32 (or F16/BF16) value
 * that is at most one rounding away from the exact s_module/s_llama * B
 * (B' is computed in double and rounded once), and A is bit-exact. So per
 * element |got - ref| <= u * |s| * sum_k |B_ik| |A_kj| with u = 2^-24 for
 * F32 output; for an F16 (BF16) output both A and B' are rounded:
 * u = 2 * 2^-11 + 2^-22 (2 * 2^-8 + 2^-16); values are in +-[0.1, 1] so no
 * F16 subnormal appears. The float64 sums add ~1e-16 relative, covered by a
 * 1.001 factor on u.
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

#include "lora.h"
#include "lora_ops.h"
#include "io/gguf.h"
#include "ops/convert.h"
#include "ops/gguf_names.h"
#include "support.h"

#define U_F32 (1.001 * 0x1p-24)
#define U_F16 (1.001 * (2 * 0x1p-11 + 0x1p-22))
#define U_BF16 (1.001 * (2 * 0x1p-8 + 0x1p-16))

static char tmpdir[256];

static int setup(void **state)
{
    (void)state;
    return ts_tmpdir_create(tmpdir, sizeof tmpdir, "test_gguf_adapter");
}

static int teardown(void **state)
{
    (void)state;
    return ts_tmpdir_remove(tmpdir);
}

/* A ring of 64 paths: enough that none is reused while a test holds it. */
static const char *tpath(const char *name)
{
    static char buf[64][512];
    static int k;
    char *p = buf[k++ % 64];
    snprintf(p, 512, "%s/%s", tmpdir, name);
    return p;
}

static int exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* ------------------------------------------------------------------------ */
/* building .lora adapters                                                  */
/* ------------------------------------------------------------------------ */

/* +-[0.1, 1]: no F16 subnormals, no zeros. */
static float rng_value(uint64_t *s)
{
    uint64_t r = ts_rng_next(s);
    float u = (float)((r >> 11) * 0x1p-53);
    return (r & 1 ? -1.0f : 1.0f) * (0.1f + 0.9f * u);
}

typedef enum { P_NONE, P_ROPE, P_NEOX } perm_kind;

typedef struct {
    const char *name;       /* HF module */
    lora_kind kind;
    lora_scaling scaling;
    uint32_t flags;
    uint32_t rank;
    float alpha, scale;     /* scale: EXPLICIT */
    uint64_t out, in;       /* linear: B rows, A cols; embedding: dim, num */
    lora_dtype dt_a, dt_b;
    const char *gguf;       /* expected base tensor */
    perm_kind perm;
    uint64_t heads;
} tmod;

#define LIN(n, r, al, o, i, g) {n, LORA_KIND_LINEAR, LORA_SCALING_ALPHA_OVER_RANK, 0, r, al, 0, o, i, \
                                LORA_DTYPE_F32, LORA_DTYPE_F32, g, P_NONE, 0}

static void add_values(lora_writer *w, lora_dtype dt, uint64_t r0, uint64_t r1, uint64_t *seed, uint32_t *index)
{
    uint64_t shape[2] = {r0, r1};
    size_t n = (size_t)(r0 * r1);
    float *v = malloc(n * sizeof *v);
    assert_non_null(v);
    for (size_t i = 0; i < n; i++) v[i] = rng_value(seed);
    assert_int_equal(lora_writer_add_blob_f32(w, dt, 2, shape, v, n, LORA_COMPRESSION_NONE, index), LORA_OK);
    free(v);
}

typedef struct {
    const char *const *meta;     /* key, value pairs */
    size_t n_meta;
    const char *tensor;          /* a replacement tensor, or NULL */
} extras;

static void build(const tmod *m, size_t n, const extras *ex, uint64_t seed, void **buf, size_t *size)
{
    lora_writer *w;
    assert_int_equal(lora_writer_create(NULL, &w), LORA_OK);
    for (size_t i = 0; ex && i < ex->n_meta; i++)
        assert_int_equal(lora_writer_set_string(w, ex->meta[2 * i], ex->meta[2 * i + 1],
                                                strlen(ex->meta[2 * i + 1])), LORA_OK);
    for (size_t i = 0; i < n; i++) {
        lora_module_desc d;
        memset(&d, 0, sizeof d);
        d.name = m[i].name;
        d.kind = m[i].kind;
        d.scaling = m[i].scaling;
        d.flags = m[i].flags;
        d.rank = m[i].rank;
        d.alpha = m[i].alpha;
        d.scale = m[i].scale;
        d.base_ndim = 2;
        int fif = (m[i].flags & LORA_MODULE_FAN_IN_FAN_OUT) != 0, emb = m[i].kind == LORA_KIND_EMBEDDING;
        d.base_shape[0] = fif || emb ? m[i].in : m[i].out;
        d.base_shape[1] = fif || emb ? m[i].out : m[i].in;
        add_values(w, m[i].dt_a, m[i].rank, m[i].in, &seed, &d.blob_a);
        add_values(w, m[i].dt_b, m[i].out, m[i].rank, &seed, &d.blob_b);
        d.blob_magnitude = d.blob_bias = LORA_NO_BLOB;
        assert_int_equal(lora_writer_add_module(w, &d, NULL), LORA_OK);
    }
    if (ex && ex->tensor) {
        uint32_t t;
        add_values(w, LORA_DTYPE_F32, 4, 8, &seed, &t);
        assert_int_equal(lora_writer_add_tensor(w, ex->tensor, t), LORA_OK);
    }
    uint64_t total;
    lora_error e;
    assert_int_equal(lora_writer_size(w, &total, &e), LORA_OK);
    *buf = malloc((size_t)total);
    assert_non_null(*buf);
    assert_int_equal(lora_writer_write_buffer(w, *buf, (size_t)total, size, &e), LORA_OK);
    lora_writer_free(w);
}

static lora_reader *open_buf(const void *buf, size_t size)
{
    lora_reader *r = NULL;
    lora_error e;
    assert_int_equal(lora_reader_open_buffer(buf, size, NULL, &r, &e), LORA_OK);
    return r;
}

static float *blob_f32(const lora_reader *r, uint32_t blob, uint64_t *numel)
{
    lora_blob b;
    assert_int_equal(lora_reader_blob(r, blob, &b), LORA_OK);
    float *f = malloc((size_t)b.numel * sizeof *f);
    assert_non_null(f);
    lora_error e;
    assert_int_equal(lora_reader_blob_decode_f32(r, blob, f, (size_t)b.numel, &e), LORA_OK);
    if (numel) *numel = b.numel;
    return f;
}

/* ------------------------------------------------------------------------ */
/* the .lora reference: s * B @ A in the HF base orientation                */
/* ------------------------------------------------------------------------ */

typedef struct {
    uint64_t rows, cols;
    double *d;    /* delta */
    double *mag;  /* |s| * sum |B||A|: the scale of one element's rounding error */
} delta;

static void delta_free(delta *x)
{
    free(x->d);
    free(x->mag);
}

static void lora_delta(const lora_reader *r, const char *module, delta *out)
{
    uint32_t mi;
    assert_int_equal(lora_reader_module_find(r, module, &mi), LORA_OK);
    lora_module m;
    assert_int_equal(lora_reader_module(r, mi, &m), LORA_OK);
    float *a = blob_f32(r, m.blob_a, NULL), *b = blob_f32(r, m.blob_b, NULL);
    lora_blob ab, bb;
    assert_int_equal(lora_reader_blob(r, m.blob_a, &ab), LORA_OK);
    assert_int_equal(lora_reader_blob(r, m.blob_b, &bb), LORA_OK);
    uint64_t o = bb.shape[0], i = ab.shape[1], k = m.rank;
    int flip = m.kind == LORA_KIND_EMBEDDING || (m.flags & LORA_MODULE_FAN_IN_FAN_OUT);
    out->rows = flip ? i : o;
    out->cols = flip ? o : i;
    out->d = calloc((size_t)(o * i), sizeof(double));
    out->mag = calloc((size_t)(o * i), sizeof(double));
    double s = m.scale;
    for (uint64_t y = 0; y < o; y++)
        for (uint64_t x = 0; x < i; x++) {
            double acc = 0, mag = 0;
            for (uint64_t t = 0; t < k; t++) {
                acc += (double)b[y * k + t] * a[t * i + x];
                mag += fabs((double)b[y * k + t] * a[t * i + x]);
            }
            uint64_t at = flip ? x * o + y : y * i + x;
            out->d[at] = s * acc;
            out->mag[at] = fabs(s) * mag;
        }
    free(a);
    free(b);
}

/* ------------------------------------------------------------------------ */
/* the GGUF side, computed as llama.cpp does                                */
/* ------------------------------------------------------------------------ */

static double half_to_double(uint16_t h)
{
    int e = (h >> 10) & 31, f = h & 1023;
    double v = e == 0 ? ldexp(f, -24) : e == 31 ? INFINITY : ldexp(1024 + f, e - 25);
    return h & 0x8000 ? -v : v;
}

static double bf16_to_double(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static double *tensor_values(const lora_gguf_tensor *t)
{
    size_t n = (size_t)(t->ne[0] * t->ne[1]);
    double *v = malloc(n * sizeof *v);
    assert_non_null(v);
    for (size_t i = 0; i < n; i++) {
        if (t->type == LORA_GGML_F32) {
            float f;
            memcpy(&f, t->data + 4 * i, 4);
            v[i] = f;
        } else {
            uint16_t h = (uint16_t)(t->data[2 * i] | t->data[2 * i + 1] << 8);
            assert_true(t->type == LORA_GGML_F16 || t->type == LORA_GGML_BF16);
            v[i] = t->type == LORA_GGML_F16 ? half_to_double(h) : bf16_to_double(h);
        }
    }
    return v;
}

/* HF row -> GGUF row, written from the converter's reshapes (not the
 * library's inverse tables). */
static uint64_t gguf_row(perm_kind p, uint64_t heads, uint64_t rows, uint64_t hf)
{
    if (p == P_ROPE) { /* reshape(n, 2, hd/2, -1).swapaxes(1, 2) */
        uint64_t hd = rows / heads, h = hf / hd, i = (hf % hd) / (hd / 2), t = hf % (hd / 2);
        return h * hd + t * 2 + i;
    }
    if (p == P_NEOX) { /* reshape(n, 3, hd, -1); cat([:,0], [:,1], [:,2]) */
        uint64_t e = rows / 3, hd = e / heads, h = hf / (3 * hd), j = (hf % (3 * hd)) / hd, d = hf % hd;
        return j * e + h * hd + d;
    }
    return hf;
}

static void gguf_delta(const lora_gguf *g, const tmod *m, delta *out)
{
    char name[160];
    snprintf(name, sizeof name, "%s.lora_a", m->gguf);
    const lora_gguf_tensor *ta = lora_gguf_find_tensor(g, name);
    snprintf(name, sizeof name, "%s.lora_b", m->gguf);
    const lora_gguf_tensor *tb = lora_gguf_find_tensor(g, name);
    assert_non_null(ta);
    assert_non_null(tb);
    float alpha;
    lora_error e;
    assert_int_equal(lora_gguf_get_f32(g, "adapter.lora.alpha", &alpha, &e), LORA_OK);
    float scale = alpha != 0.0f ? alpha / (float)tb->ne[0] : 1.0f;
    double *a = tensor_values(ta), *b = tensor_values(tb);
    uint64_t k = tb->ne[0], o = tb->ne[1];
    int embed = m->kind == LORA_KIND_EMBEDDING, fif = (m->flags & LORA_MODULE_FAN_IN_FAN_OUT) != 0;
    uint64_t i = embed ? ta->ne[1] : ta->ne[0];
    out->rows = embed || fif ? i : o;
    out->cols = embed || fif ? o : i;
    out->d = calloc((size_t)(o * i), sizeof(double));
    out->mag = NULL;
    for (uint64_t y = 0; y < o; y++) /* GGUF orientation [out, in]; token_embd [dim, num] here */
        for (uint64_t x = 0; x < i; x++) {
            double acc = 0;
            for (uint64_t t = 0; t < k; t++) acc += b[y * k + t] * (embed ? a[x * k + t] : a[t * i + x]);
            if (embed || fif) {
                out->d[x * o + y] = (double)scale * acc;
            } else {
                uint64_t hf = 0; /* the HF row whose GGUF row is y */
                while (gguf_row(m->perm, m->heads, o, hf) != y) hf++;
                out->d[hf * i + x] = (double)scale * acc;
            }
        }
    free(a);
    free(b);
}

static void expect_close(const delta *got, const delta *ref, double u, const char *what)
{
    assert_int_equal(got->rows, ref->rows);
    assert_int_equal(got->cols, ref->cols);
    for (uint64_t i = 0; i < ref->rows * ref->cols; i++)
        if (fabs(got->d[i] - ref->d[i]) > u * ref->mag[i] + 1e-300)
            fail_msg("%s: element %llu: %.17g vs %.17g (bound %.3g)", what, (unsigned long long)i, got->d[i],
                     ref->d[i], u * ref->mag[i]);
}

/* ------------------------------------------------------------------------ */
/* running the converter                                                    */
/* ------------------------------------------------------------------------ */

typedef struct {
    int count;
    char all[8192];
} warnings;

static void on_warn(void *opaque, const char *msg)
{
    warnings *w = opaque;
    w->count++;
    size_t n = strlen(w->all);
    snprintf(w->all + n, sizeof w->all - n, "%s\n", msg);
}

static lora_status export_buf(const void *buf, size_t size, const char *path, const lora_convert_options *o,
                              lora_error *e)
{
    lora_reader *r = open_buf(buf, size);
    lora_write_options wo = LORA_WRITE_OPTIONS_INIT;
    lora_status st = lora_export_gguf(r, path, o, &wo, e);
    lora_reader_free(r);
    return st;
}

static lora_gguf *parse_file(const char *path, uint8_t **data)
{
    size_t size;
    *data = ts_read_file(path, &size);
    assert_non_null(*data);
    lora_gguf *g = NULL;
    lora_error e;
    assert_int_equal(lora_gguf_parse(*data, size, NULL, NULL, &g, &e), LORA_OK);
    return g;
}

/* Import a GGUF into a .lora image in memory. */
static lora_status import_file(const char *path, const lora_convert_options *o, void **buf, size_t *size,
                               lora_error *e)
{
    lora_writer *w;
    assert_int_equal(lora_writer_create(NULL, &w), LORA_OK);
    lora_status st = lora_import_gguf(path, o, w, e);
    if (st == LORA_OK) {
        uint64_t total;
        assert_int_equal(lora_writer_size(w, &total, e), LORA_OK);
        *buf = malloc((size_t)total);
        assert_non_null(*buf);
        assert_int_equal(lora_writer_write_buffer(w, *buf, (size_t)total, size, e), LORA_OK);
    }
    lora_writer_free(w);
    return st;
}

static void expect_str_kv(const lora_gguf *g, const char *key, const char *want)
{
    lora_gguf_str s;
    lora_error e;
    assert_int_equal(lora_gguf_get_str(g, key, &s, &e), LORA_OK);
    assert_int_equal(s.len, strlen(want));
    assert_memory_equal(s.ptr, want, s.len);
}

static void expect_meta(const lora_reader *r, const char *key, const char *want)
{
    lora_meta m;
    assert_int_equal(lora_reader_meta_find(r, key, &m), LORA_OK);
    assert_int_equal(m.type, LORA_META_STRING);
    assert_string_equal(m.string, want);
}

/* Every module of `m` against the file: names, shapes, types, and the delta. */
static void check_gguf(const lora_gguf *g, const lora_reader *src, const tmod *m, size_t n, uint32_t ggml_type,
                       double u)
{
    for (size_t i = 0; i < n; i++) {
        char name[160];
        snprintf(name, sizeof name, "%s.lora_a", m[i].gguf);
        const lora_gguf_tensor *ta = lora_gguf_find_tensor(g, name);
        assert_non_null(ta);
        snprintf(name, sizeof name, "%s.lora_b", m[i].gguf);
        const lora_gguf_tensor *tb = lora_gguf_find_tensor(g, name);
        assert_non_null(tb);
        /* pairs are written a, b in module order */
        assert_ptr_equal(lora_gguf_tensor_at(g, 2 * i), ta);
        assert_ptr_equal(lora_gguf_tensor_at(g, 2 * i + 1), tb);
        assert_int_equal(ta->n_dims, 2);
        assert_int_equal(tb->n_dims, 2);
        assert_int_equal(ta->type, ggml_type);
        assert_int_equal(tb->type, ggml_type);
        int embed = m[i].kind == LORA_KIND_EMBEDDING;
        assert_int_equal(ta->ne[0], embed ? m[i].rank : m[i].in);
        assert_int_equal(ta->ne[1], embed ? m[i].in : m[i].rank);
        assert_int_equal(tb->ne[0], m[i].rank);
        assert_int_equal(tb->ne[1], m[i].out);
        delta got, ref;
        gguf_delta(g, &m[i], &got);
        lora_delta(src, m[i].name, &ref);
        expect_close(&got, &ref, u, m[i].gguf);
        delta_free(&got);
        delta_free(&ref);
    }
}

/* The re-imported adapter gives every module's delta again. */
static void check_roundtrip(const lora_reader *back, const lora_reader *src, const tmod *m, size_t n, double u)
{
    lora_file_info info;
    lora_reader_file_info(back, &info);
    assert_int_equal(info.module_count, n);
    for (size_t i = 0; i < n; i++) {
        delta got, ref;
        lora_delta(back, m[i].name, &got);
        lora_delta(src, m[i].name, &ref);
        expect_close(&got, &ref, u, m[i].name);
        delta_free(&got);
        delta_free(&ref);
        uint32_t a, b;
        lora_module ma, mb;
        assert_int_equal(lora_reader_module_find(back, m[i].name, &a), LORA_OK);
        assert_int_equal(lora_reader_module_find(src, m[i].name, &b), LORA_OK);
        assert_int_equal(lora_reader_module(back, a, &ma), LORA_OK);
        assert_int_equal(lora_reader_module(src, b, &mb), LORA_OK);
        assert_int_equal(ma.kind, mb.kind);
        assert_int_equal(ma.flags, mb.flags);
        assert_int_equal(ma.rank, mb.rank);
        assert_int_equal(ma.scaling, LORA_SCALING_ALPHA_OVER_RANK);
        assert_memory_equal(ma.base_shape, mb.base_shape, sizeof ma.base_shape);
    }
}

/* Blob bytes of one module side in two readers. */
static int same_blob(const lora_reader *r1, const char *mod1, const lora_reader *r2, int side_b)
{
    uint32_t i1, i2;
    lora_module m1, m2;
    assert_int_equal(lora_reader_module_find(r1, mod1, &i1), LORA_OK);
    assert_int_equal(lora_reader_module_find(r2, mod1, &i2), LORA_OK);
    assert_int_equal(lora_reader_module(r1, i1, &m1), LORA_OK);
    assert_int_equal(lora_reader_module(r2, i2, &m2), LORA_OK);
    const void *p1, *p2;
    size_t s1, s2;
    assert_int_equal(lora_reader_blob_view(r1, side_b ? m1.blob_b : m1.blob_a, &p1, &s1), LORA_OK);
    assert_int_equal(lora_reader_blob_view(r2, side_b ? m2.blob_b : m2.blob_a, &p2, &s2), LORA_OK);
    return s1 == s2 && memcmp(p1, p2, s1) == 0;
}

/* ------------------------------------------------------------------------ */
/* the name tables (facts of gguf-py tensor_mapping.py and convert_hf_to_gguf.py) */
/* ------------------------------------------------------------------------ */

static void expect_map(const char *arch, const char *hf, const char *gguf, lora_gguf_role role, const char *canon)
{
    const lora_gguf_arch *a = lora_gguf_arch_find(arch);
    assert_non_null(a);
    lora_gguf_mapped m;
    assert_int_equal(lora_gguf_name_to_gguf(a, hf, &m), LORA_OK);
    assert_string_equal(m.name, gguf);
    assert_int_equal(m.role, role);
    assert_int_equal(lora_gguf_name_to_hf(a, gguf, &m), LORA_OK);
    assert_string_equal(m.name, canon ? canon : hf);
    assert_int_equal(m.role, role);
}

static void test_names(void **state)
{
    (void)state;
    expect_map("llama", "model.layers.0.self_attn.q_proj", "blk.0.attn_q.weight", LORA_GGUF_ROLE_ROPE_Q, NULL);
    expect_map("mistral", "model.layers.31.self_attn.k_proj", "blk.31.attn_k.weight", LORA_GGUF_ROLE_ROPE_K, NULL);
    expect_map("llama", "model.layers.7.mlp.gate_proj", "blk.7.ffn_gate.weight", LORA_GGUF_ROLE_PLAIN, NULL);
    expect_map("llama", "layers.2.self_attn.o_proj", "blk.2.attn_output.weight", LORA_GGUF_ROLE_PLAIN,
               "model.layers.2.self_attn.o_proj"); /* a headless LlamaModel */
    expect_map("qwen2", "model.layers.1.self_attn.q_proj", "blk.1.attn_q.weight", LORA_GGUF_ROLE_PLAIN, NULL);
    expect_map("qwen2", "lm_head", "output.weight", LORA_GGUF_ROLE_PLAIN, NULL);
    expect_map("gemma2", "model.embed_tokens", "token_embd.weight", LORA_GGUF_ROLE_EMBED, NULL);
    expect_map("gemma3_text", "model.layers.5.mlp.down_proj", "blk.5.ffn_down.weight", LORA_GGUF_ROLE_PLAIN, NULL);
    /* multimodal Gemma 3 checkpoints, old and new transformers layouts */
    expect_map("gemma3", "language_model.model.layers.3.self_attn.v_proj", "blk.3.attn_v.weight",
               LORA_GGUF_ROLE_PLAIN, "model.layers.3.self_attn.v_proj");
    expect_map("gemma3", "model.language_model.layers.3.self_attn.v_proj", "blk.3.attn_v.weight",
               LORA_GGUF_ROLE_PLAIN, "model.layers.3.self_attn.v_proj");
    expect_map("phi3", "model.layers.0.self_attn.qkv_proj", "blk.0.attn_qkv.weight", LORA_GGUF_ROLE_PLAIN, NULL);
    expect_map("phi3", "model.layers.0.mlp.gate_up_proj", "blk.0.ffn_up.weight", LORA_GGUF_ROLE_PLAIN, NULL);
    expect_map("gpt2", "transformer.h.11.mlp.c_fc", "blk.11.ffn_up.weight", LORA_GGUF_ROLE_CONV1D, NULL);
    expect_map("gpt2", "h.0.attn.c_attn", "blk.0.attn_qkv.weight", LORA_GGUF_ROLE_CONV1D,
               "transformer.h.0.attn.c_attn");
    expect_map("gpt2", "transformer.wte", "token_embd.weight", LORA_GGUF_ROLE_EMBED, NULL);
    expect_map("gpt_neox", "gpt_neox.layers.4.attention.query_key_value", "blk.4.attn_qkv.weight",
               LORA_GGUF_ROLE_NEOX_QKV, NULL);
    expect_map("gptneox", "gpt_neox.layers.4.mlp.dense_4h_to_h", "blk.4.ffn_down.weight", LORA_GGUF_ROLE_PLAIN,
               NULL);
    expect_map("gptneox", "embed_out", "output.weight", LORA_GGUF_ROLE_PLAIN, NULL);
    /* refused and unknown */
    lora_gguf_mapped m;
    assert_int_equal(lora_gguf_name_to_gguf(lora_gguf_arch_find("gemma"), "lm_head", &m), LORA_OK);
    assert_int_equal(m.role, LORA_GGUF_ROLE_REFUSED);
    assert_non_null(strstr(m.reason, "ties lm_head"));
    assert_int_equal(lora_gguf_name_to_gguf(lora_gguf_arch_find("gpt2"), "transformer.wpe", &m), LORA_OK);
    assert_int_equal(m.role, LORA_GGUF_ROLE_REFUSED);
    const lora_gguf_arch *l = lora_gguf_arch_find("llama");
    assert_int_equal(lora_gguf_name_to_gguf(l, "model.layers.01.self_attn.q_proj", &m), LORA_E_NOT_FOUND);
    assert_int_equal(lora_gguf_name_to_gguf(l, "model.layers.1234567890.self_attn.q_proj", &m), LORA_E_NOT_FOUND);
    assert_int_equal(lora_gguf_name_to_gguf(l, "model.layers..self_attn.q_proj", &m), LORA_E_NOT_FOUND);
    assert_int_equal(lora_gguf_name_to_gguf(l, "model.layers.0.self_attn.q_proj.x", &m), LORA_E_NOT_FOUND);
    assert_int_equal(lora_gguf_name_to_hf(l, "blk.0.attn_q", &m), LORA_E_NOT_FOUND);
    assert_int_equal(lora_gguf_name_to_hf(l, "blk.0.attn_qkv.weight", &m), LORA_E_NOT_FOUND);
    assert_null(lora_gguf_arch_find("mamba"));
    assert_null(lora_gguf_arch_find(NULL));
}

/* ------------------------------------------------------------------------ */
/* llama: Q/K permutation, GQA, embeddings, per-module alpha, rsLoRA, scale */
/* ------------------------------------------------------------------------ */

/* n_head 4, n_kv 2, head_dim 8: hidden 32, k/v 16 rows. */
static const tmod llama_mods[] = {
    {"model.layers.0.self_attn.q_proj", LORA_KIND_LINEAR, LORA_SCALING_ALPHA_OVER_RANK, 0, 4, 16, 0, 32, 32,
     LORA_DTYPE_F32, LORA_DTYPE_F32, "blk.0.attn_q.weight", P_ROPE, 4},
    {"model.layers.0.self_attn.k_proj", LORA_KIND_LINEAR, LORA_SCALING_ALPHA_OVER_RANK, 0, 4, 16, 0, 16, 32,
     LORA_DTYPE_F32, LORA_DTYPE_F32, "blk.0.attn_k.weight", P_ROPE, 2},
    LIN("model.layers.0.self_attn.v_proj", 8, 16, 16, 32, "blk.0.attn_v.weight"),
    LIN("model.layers.0.self_attn.o_proj", 2, 16, 32, 32, "blk.0.attn_output.weight"),
    /* per-module alpha: baked into B */
    {"model.layers.1.self_attn.q_proj", LORA_KIND_LINEAR, LORA_SCALING_ALPHA_OVER_RANK, 0, 4, 8, 0, 32, 32,
     LORA_DTYPE_F32, LORA_DTYPE_F32, "blk.1.attn_q.weight", P_ROPE, 4},
    /* rsLoRA: baked */
    {"model.layers.1.self_attn.k_proj", LORA_KIND_LINEAR, LORA_SCALING_ALPHA_OVER_SQRT_RANK, 0, 4, 16, 0, 16, 32,
     LORA_DTYPE_F32, LORA_DTYPE_F32, "blk.1.attn_k.weight", P_ROPE, 2},
    /* an explicit (MLX) scale: baked */
    {"model.layers.1.mlp.gate_proj", LORA_KIND_LINEAR, LORA_SCALING_EXPLICIT, 0, 4, 0, 0.75f, 64, 32,
     LORA_DTYPE_F32, LORA_DTYPE_F32, "blk.1.ffn_gate.weight", P_NONE, 0},
    LIN("model.layers.1.mlp.up_proj", 4, 16, 64, 32, "blk.1.ffn_up.weight"),
    LIN("model.layers.1.mlp.down_proj", 8, 16, 32, 64, "blk.1.ffn_down.weight"),
    {"model.embed_tokens", LORA_KIND_EMBEDDING, LORA_SCALING_ALPHA_OVER_RANK, 0, 4, 16, 0, 32, 50, LORA_DTYPE_F32,
     LORA_DTYPE_F32, "token_embd.weight", P_NONE, 0},
    LIN("lm_head", 2, 16, 50, 32, "output.weight"),
};
#define N_LLAMA (sizeof llama_mods / sizeof llama_mods[0])

static const char llama_config[] =
    "{\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"llama\", \"hidden_size\": 32,\n"
    " \"num_attention_heads\": 4, \"num_key_value_heads\": 2, \"vocab_size\": 50}\n";

static void test_llama_export(void **state)
{
    (void)state;
    void *buf;
    size_t size;
    build(llama_mods, N_LLAMA, NULL, 1, &buf, &size);
    ts_write_text(tpath("llama.json"), llama_config);
    lora_convert_options o = LORA_CONVERT_OPTIONS_INIT;
    o.base_config = tpath("llama.json");
    lora_error e;
    const char *out = tpath("llama.gguf");
    assert_int_equal(export_buf(buf, size, out, &o, &e), LORA_OK);

    uint8_t *data;
    lora_gguf *g = parse_file(out, &data);
    assert_int_equal(lora_gguf_version(g), 3);
    assert_int_equal(lora_gguf_alignment(g), 32);
    /* general.* first, then the adapter keys */
    assert_string_equal(lora_gguf_kv_at(g, 0)->key, "general.architecture");
    assert_string_equal(lora_gguf_kv_at(g, 1)->key, "general.type");
    assert_string_equal(lora_gguf_kv_at(g, 2)->key, "adapter.type");
    assert_string_equal(lora_gguf_kv_at(g, 3)->key, "adapter.lora.alpha");
    expect_str_kv(g, "general.architecture", "llama");
    expect_str_kv(g, "general.type", "adapter");
    expect_str_kv(g, "adapter.type", "lora");
    float alpha;
    uint32_t u32;
    assert_int_equal(lora_gguf_get_f32(g, "adapter.lora.alpha", &alpha, &e), LORA_OK);
    assert_true(alpha == 16.0f); /* the alpha most modules share */
    assert_int_equal(lora_gguf_get_u32(g, "llama.attention.head_count", &u32, &e), LORA_OK);
    assert_int_equal(u32, 4);
    assert_int_equal(lora_gguf_get_u32(g, "llama.attention.head_count_kv", &u32, &e), LORA_OK);
    assert_int_equal(u32, 2);
    assert_int_equal(lora_gguf_tensor_count(g), 2 * N_LLAMA);
    /* offsets: running sum of the 32-padded sizes */
    uint64_t off = 0;
    for (uint64_t i = 0; i < lora_gguf_tensor_count(g); i++) {
        const lora_gguf_tensor *t = lora_gguf_tensor_at(g, i);
        assert_int_equal(t->offset, off);
        off += (t->nbytes + 31) / 32 * 32;
    }
    lora_reader *src = open_buf(buf, size);
    check_gguf(g, src, llama_mods, N_LLAMA, LORA_GGML_F32, U_F32);

    /* Modules that agree with alpha 16 keep B bit for bit (v_proj); q_proj's
     * B is only reordered: GGUF row gguf_row(h) holds HF row h exactly. */
    uint64_t nb;
    uint32_t mi;
    lora_module m;
    assert_int_equal(lora_reader_module_find(src, "model.layers.0.self_attn.v_proj", &mi), LORA_OK);
    assert_int_equal(lora_reader_module(src, mi, &m), LORA_OK);
    float *bv = blob_f32(src, m.blob_b, &nb);
    const lora_gguf_tensor *t = lora_gguf_find_tensor(g, "blk.0.attn_v.weight.lora_b");
    assert_memory_equal(t->data, bv, nb * 4);
    free(bv);
    assert_int_equal(lora_reader_module_find(src, "model.layers.0.self_attn.q_proj", &mi), LORA_OK);
    assert_int_equal(lora_reader_module(src, mi, &m), LORA_OK);
    float *bq = blob_f32(src, m.blob_b, &nb);
    t = lora_gguf_find_tensor(g, "blk.0.attn_q.weight.lora_b");
    for (uint64_t h = 0; h < 32; h++)
        assert_memory_equal(t->data + gguf_row(P_ROPE, 4, 32, h) * 4 * 4, bq + h * 4, 16);
    free(bq);
    /* token_embd's A is stored [num, r]: A^T */
    assert_int_equal(lora_reader_module_find(src, "model.embed_tokens", &mi), LORA_OK);
    assert_int_equal(lora_reader_module(src, mi, &m), LORA_OK);
    float *ae = blob_f32(src, m.blob_a, &nb);
    t = lora_gguf_find_tensor(g, "token_embd.weight.lora_a");
    for (uint64_t r = 0; r < 4; r++)
        for (uint64_t c = 0; c < 50; c++) assert_memory_equal(t->data + (c * 4 + r) * 4, ae + r * 50 + c, 4);
    free(ae);

    /* .lora -> GGUF -> .lora: every delta within one F32 rounding; the
     * unbaked modules bit for bit; the head counts kept. */
    void *back_buf;
    size_t back_size;
    lora_convert_options plain = LORA_CONVERT_OPTIONS_INIT;
    assert_int_equal(import_file(out, &plain, &back_buf, &back_size, &e), LORA_OK);
    lora_reader *back = open_buf(back_buf, back_size);
    check_roundtrip(back, src, llama_mods, N_LLAMA, U_F32);
    assert_true(same_blob(back, "model.layers.0.self_attn.q_proj", src, 1));
    assert_true(same_blob(back, "model.layers.0.self_attn.k_proj", src, 1));
    assert_true(same_blob(back, "model.embed_tokens", src, 0));
    assert_true(same_blob(back, "model.embed_tokens", src, 1));
    assert_true(same_blob(back, "lm_head", src, 1));
    assert_false(same_blob(back, "model.layers.1.self_attn.q_proj", src, 1)); /* baked */
    expect_meta(back, "lora.architecture", "llama");
    expect_meta(back, "lora.source.format", "gguf");
    lora_meta mt;
    assert_int_equal(lora_reader_meta_find(back, "gguf.attention.head_count", &mt), LORA_OK);
    assert_int_equal(mt.integer, 4);
    assert_int_equal(lora_reader_meta_find(back, "gguf.attention.head_count_kv", &mt), LORA_OK);
    assert_int_equal(mt.integer, 2);

    /* Exporting the re-import needs no config (the head counts travel in
     * the metadata) and gives the same bytes. */
    const char *again = tpath("llama2.gguf");
    assert_int_equal(export_buf(back_buf, back_size, again, &plain, &e), LORA_OK);
    size_t s1, s2;
    uint8_t *f1 = ts_read_file(out, &s1), *f2 = ts_read_file(again, &s2);
    assert_int_equal(s1, s2);
    assert_memory_equal(f1, f2, s1);
    free(f1);
    free(f2);

    lora_reader_free(back);
    lora_reader_free(src);
    free(back_buf);
    lora_gguf_free(g);
    free(data);
    free(buf);
}

/* A scale baked into B is B * (s / s_llama) rounded once, to the bit. */
static void test_baked_values(void **state)
{
    (void)state;
    static const tmod mods[] = {
        LIN("model.layers.0.self_attn.v_proj", 4, 8, 16, 32, "blk.0.attn_v.weight"),
        LIN("model.layers.0.self_attn.o_proj", 2, 8, 32, 32, "blk.0.attn_output.weight"),
        {"model.layers.0.mlp.up_proj", LORA_KIND_LINEAR, LORA_SCALING_ALPHA_OVER_SQRT_RANK, 0, 8, 8, 0, 64, 32,
         LORA_DTYPE_F32, LORA_DTYPE_F32, "blk.0.ffn_up.weight", P_NONE, 0},
    };
    static const char *const meta[] = {"lora.architecture", "qwen2"};
    extras ex = {meta, 1, NULL};
    void *buf;
    size_t size;
    build(mods, 3, &ex, 7, &buf, &size);
    lora_convert_options o = LORA_CONVERT_OPTIONS_INIT;
    lora_error e;
    assert_int_equal(export_buf(buf, size, tpath("baked.gguf"), &o, &e), LORA_OK);
    uint8_t *data;
    lora_gguf *g = parse_file(tpath("baked.gguf"), &data);
    float alpha;
    assert_int_equal(lora_gguf_get_f32(g, "adapter.lora.alpha", &alpha, &e), LORA_OK);
    assert_true(alpha == 8.0f);
    /* qwen2 does not permute and no head count is known: none written */
    assert_null(lora_gguf_find_kv(g, "qwen2.attention.head_count"));
    lora_reader *r = open_buf(buf, size);
    uint32_t mi;
    lora_module m;
    assert_int_equal(lora_reader_module_find(r, "model.layers.0.mlp.up_proj", &mi), LORA_OK);
    assert_int_equal(lora_reader_module(r, mi, &m), LORA_OK);
    uint64_t nb;
    float *b = blob_f32(r, m.blob_b, &nb);
    const lora_gguf_tensor *t = lora_gguf_find_tensor(g, "blk.0.ffn_up.weight.lora_b");
    double k = (double)(8.0f / sqrtf(8.0f)) / (double)(8.0f / 8.0f);
    for (uint64_t i = 0; i < nb; i++) {
        float want = (float)((double)b[i] * k), got;
        memcpy(&got, t->data + 4 * i, 4);
        assert_memory_equal(&got, &want, 4);
    }
    free(b);
    check_gguf(g, r, mods, 3, LORA_GGML_F32, U_F32);
    lora_reader_free(r);
    lora_gguf_free(g);
    free(data);
    free(buf);
}

/* ------------------------------------------------------------------------ */
/* qwen2, GPT-2 Conv1D, GPT-NeoX                                            */
/* ------------------------------------------------------------------------ */

static void roundtrip_case(const tmod *mods, size_t n, const extras *ex, const lora_convert_options *o,
                           const char *file, uint32_t ggml_type, double u, lora_reader **back_out, void **back_buf)
{
    void *buf;
    size_t size;
    build(mods, n, ex, 11, &buf, &size);
    lora_error e;
    lora_status st = export_buf(buf, size, tpath(file), o, &e);
    if (st != LORA_OK) fail_msg("%s: %s", lora_status_name(st), e.detail);
    uint8_t *data;
    lora_gguf *g = parse_file(tpath(file), &data);
    lora_reader *src = open_buf(buf, size);
    check_gguf(g, src, mods, n, ggml_type, u);
    size_t bs;
    lora_convert_options plain = LORA_CONVERT_OPTIONS_INIT;
    assert_int_equal(import_file(tpath(file), &plain, back_buf, &bs, &e), LORA_OK);
    lora_reader *back = open_buf(*back_buf, bs);
    check_roundtrip(back, src, mods, n, u);
    lora_reader_free(src);
    lora_gguf_free(g);
    free(data);
    free(buf);
    *back_out = back;
}

static void test_qwen2(void **state)
{
    (void)state;
    static const tmod mods[] = {
        LIN("model.layers.0.self_attn.q_proj", 4, 8, 32, 32, "blk.0.attn_q.weight"),
        LIN("model.layers.0.self_attn.k_proj", 4, 8, 16, 32, "blk.0.attn_k.weight"),
        LIN("model.layers.3.mlp.down_proj", 2, 8, 32, 48, "blk.3.ffn_down.weight"),
    };
    static const char *const meta[] = {"lora.architecture", "qwen2", "lora.adapter.name", "my-qwen-lora",
                                       "lora.base_model", "Qwen/Qwen2.5-0.5B"};
    extras ex = {meta, 3, NULL};
    lora_convert_options o = LORA_CONVERT_OPTIONS_INIT;
    lora_reader *back;
    void *bb;
    roundtrip_case(mods, 3, &ex, &o, "qwen2.gguf", LORA_GGML_F32, U_F32, &back, &bb);
    uint8_t *data;
    lora_gguf *g = parse_file(tpath("qwen2.gguf"), &data);
    expect_str_kv(g, "general.architecture", "qwen2");
    expect_str_kv(g, "general.name", "my-qwen-lora");
    assert_string_equal(lora_gguf_kv_at(g, 2)->key, "general.name");
    /* no permutation: q_proj's B is the .lora's B, as the round trip shows bit for bit */
    void *buf;
    size_t size;
    build(mods, 3, &ex, 11, &buf, &size);
    lora_reader *src = open_buf(buf, size);
    assert_true(same_blob(back, "model.layers.0.self_attn.q_proj", src, 1));
    expect_meta(back, "lora.adapter.name", "my-qwen-lora");
    expect_meta(back, "lora.base_model", "Qwen/Qwen2.5-0.5B");
    lora_reader_free(src);
    free(buf);
    lora_gguf_free(g);
    free(data);
    lora_reader_free(back);
    free(bb);
    /* without an adapter name, general.name is the base model's (as gguf-py
     * does); the import does not take it for an adapter name */
    static const char *const meta2[] = {"lora.architecture", "qwen2", "lora.base_model", "Qwen/Qwen2.5-0.5B"};
    extras ex2 = {meta2, 2, NULL};
    roundtrip_case(mods, 3, &ex2, &o, "qwen2b.gguf", LORA_GGML_F32, U_F32, &back, &bb);
    g = parse_file(tpath("qwen2b.gguf"), &data);
    expect_str_kv(g, "general.name", "Qwen/Qwen2.5-0.5B");
    lora_meta mt;
    assert_int_equal(lora_reader_meta_find(back, "lora.adapter.name", &mt), LORA_E_NOT_FOUND);
    expect_meta(back, "lora.base_model", "Qwen/Qwen2.5-0.5B");
    lora_gguf_free(g);
    free(data);
    lora_reader_free(back);
    free(bb);
}

static void test_gpt2_fan_in_fan_out(void **state)
{
    (void)state;
    /* n_embd 8: c_attn 8 -> 24, c_fc 8 -> 32; the base is stored [in, out] */
    static const tmod mods[] = {
        {"transformer.h.0.attn.c_attn", LORA_KIND_LINEAR, LORA_SCALING_ALPHA_OVER_RANK, LORA_MODULE_FAN_IN_FAN_OUT,
         4, 32, 0, 24, 8, LORA_DTYPE_F32, LORA_DTYPE_F32, "blk.0.attn_qkv.weight", P_NONE, 0},
        {"transformer.h.0.attn.c_proj", LORA_KIND_LINEAR, LORA_SCALING_ALPHA_OVER_RANK, LORA_MODULE_FAN_IN_FAN_OUT,
         4, 32, 0, 8, 8, LORA_DTYPE_F32, LORA_DTYPE_F32, "blk.0.attn_output.weight", P_NONE, 0},
        {"transformer.h.0.mlp.c_fc", LORA_KIND_LINEAR, LORA_SCALING_ALPHA_OVER_RANK, LORA_MODULE_FAN_IN_FAN_OUT, 4,
         32, 0, 32, 8, LORA_DTYPE_F32, LORA_DTYPE_F32, "blk.0.ffn_up.weight", P_NONE, 0},
        /* a headless GPT2Model names it without "transformer." */
        {"h.1.mlp.c_proj", LORA_KIND_LINEAR, LORA_SCALING_ALPHA_OVER_RANK, LORA_MODULE_FAN_IN_FAN_OUT, 2, 32, 0, 8,
         32, LORA_DTYPE_F32, LORA_DTYPE_F32, "blk.1.ffn_down.weight", P_NONE, 0},
        {"transformer.wte", LORA_KIND_EMBEDDING, LORA_SCALING_ALPHA_OVER_RANK, 0, 4, 32, 0, 8, 20, LORA_DTYPE_F32,
         LORA_DTYPE_F32, "token_embd.weight", P_NONE, 0},
    };
    lora_convert_options o = LORA_CONVERT_OPTIONS_INIT;
    o.arch = "gpt2";
    lora_reader *back;
    void *bb;
    roundtrip_case(mods, 5, NULL, &o, "gpt2.gguf", LORA_GGML_F32, U_F32, &back, &bb);
    uint32_t mi;
    lora_module m;
    assert_int_equal(lora_reader_module_find(back, "transformer.h.0.attn.c_attn", &mi), LORA_OK);
    assert_int_equal(lora_reader_module(back, mi, &m), LORA_OK);
    assert_int_equal(m.flags, LORA_MODULE_FAN_IN_FAN_OUT);
    assert_int_equal(m.base_shape[0], 8);
    assert_int_equal(m.base_shape[1], 24);
    lora_reader_free(back);
    free(bb);
}

static void test_gptneox_qkv(void **state)
{
    (void)state;
    /* 4 heads, hidden 16: query_key_value has 48 rows in per-head [q k v] blocks */
    static const tmod mods[] = {
        {"gpt_neox.layers.0.attention.query_key_value", LORA_KIND_LINEAR, LORA_SCALING_ALPHA_OVER_RANK, 0, 2, 32, 0,
         48, 16, LORA_DTYPE_F32, LORA_DTYPE_F32, "blk.0.attn_qkv.weight", P_NEOX, 4},
        LIN("gpt_neox.layers.0.attention.dense", 2, 32, 16, 16, "blk.0.attn_output.weight"),
        LIN("gpt_neox.layers.2.mlp.dense_h_to_4h", 2, 32, 64, 16, "blk.2.ffn_up.weight"),
        LIN("embed_out", 2, 32, 40, 16, "output.weight"),
    };
    ts_write_text(tpath("neox.json"), "{\"model_type\": \"gpt_neox\", \"num_attention_heads\": 4, \"hidden_size\": 16}");
    lora_convert_options o = LORA_CONVERT_OPTIONS_INIT;
    lora_error e;
    void *buf;
    size_t size;
    build(mods, 4, NULL, 5, &buf, &size);
    /* without a head count the regrouping cannot be done */
    assert_int_equal(export_buf(buf, size, tpath("neox0.gguf"), &o, &e), LORA_E_UNSUPPORTED_ADAPTER);
    o.arch = "gptneox";
    assert_int_equal(export_buf(buf, size, tpath("neox0.gguf"), &o, &e), LORA_E_INVALID_ARGUMENT);
    assert_non_null(strstr(e.detail, "--base-config"));
    assert_false(exists(tpath("neox0.gguf")));
    free(buf);
    o.arch = NULL;
    o.base_config = tpath("neox.json"); /* its model_type names the architecture */
    lora_reader *back;
    void *bb;
    roundtrip_case(mods, 4, NULL, &o, "neox.gguf", LORA_GGML_F32, U_F32, &back, &bb);
    lora_reader_free(back);
    free(bb);
}

/* ------------------------------------------------------------------------ */
/* dtypes                                                                   */
/* ------------------------------------------------------------------------ */

static void test_dtypes(void **state)
{
    (void)state;
    tmod mods[] = {
        {"model.layers.0.self_attn.q_proj", LORA_KIND_LINEAR, LORA_SCALING_ALPHA_OVER_RANK, 0, 4, 16, 0, 32, 32,
         LORA_DTYPE_F16, LORA_DTYPE_F16, "blk.0.attn_q.weight", P_ROPE, 4},
        {"model.layers.0.self_attn.v_proj", LORA_KIND_LINEAR, LORA_SCALING_ALPHA_OVER_SQRT_RANK, 0, 4, 16, 0, 16,
         32, LORA_DTYPE_F16, LORA_DTYPE_F16, "blk.0.attn_v.weight", P_NONE, 0},
    };
    char cfg[512];
    snprintf(cfg, sizeof cfg, "%s", tpath("llama.json"));
    ts_write_text(cfg, llama_config);
    lora_convert_options o = LORA_CONVERT_OPTIONS_INIT;
    o.base_config = cfg;
    lora_reader *back;
    void *bb;
    /* F16 source: kept F16; the baked v_proj B' is rounded to F16 once more */
    roundtrip_case(mods, 2, NULL, &o, "f16.gguf", LORA_GGML_F16, U_F16, &back, &bb);
    lora_reader_free(back);
    free(bb);
    /* F32 source forced to BF16 / F16 */
    mods[0].dt_a = mods[0].dt_b = mods[1].dt_a = mods[1].dt_b = LORA_DTYPE_F32;
    o.dtype = LORA_DTYPE_BF16;
    roundtrip_case(mods, 2, NULL, &o, "bf16.gguf", LORA_GGML_BF16, U_BF16, &back, &bb);
    lora_reader_free(back);
    free(bb);
    o.dtype = LORA_DTYPE_F16;
    roundtrip_case(mods, 2, NULL, &o, "f16b.gguf", LORA_GGML_F16, U_F16, &back, &bb);
    lora_reader_free(back);
    free(bb);
    /* a quantized .lora blob is dequantized to F32 (the reference decodes the same blob) */
    mods[0].dt_a = LORA_DTYPE_Q8_0;
    o.dtype = -1;
    roundtrip_case(mods, 2, NULL, &o, "q8.gguf", LORA_GGML_F32, U_F32, &back, &bb);
    lora_reader_free(back);
    free(bb);
    /* mixed A/B dtypes go to F32 together, as convert_lora_to_gguf.py does */
    mods[0].dt_a = LORA_DTYPE_F16;
    roundtrip_case(mods, 2, NULL, &o, "mixed.gguf", LORA_GGML_F32, U_F32, &back, &bb);
    lora_reader_free(back);
    free(bb);
}

/* ------------------------------------------------------------------------ */
/* a GGUF laid out as gguf-py writes it                                     */
/* ------------------------------------------------------------------------ */

typedef struct {
    uint8_t *p;
    size_t len, cap;
} tb;

static void tb_bytes(tb *b, const void *s, size_t n)
{
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n) cap *= 2;
        b->p = realloc(b->p, cap);
        assert_non_null(b->p);
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->len, s, n);
    b->len += n;
}

static void tb_u32(tb *b, uint32_t v)
{
    uint8_t t[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    tb_bytes(b, t, 4);
}

static void tb_u64(tb *b, uint64_t v)
{
    tb_u32(b, (uint32_t)v);
    tb_u32(b, (uint32_t)(v >> 32));
}

static void tb_str(tb *b, const char *s)
{
    tb_u64(b, strlen(s));
    tb_bytes(b, s, strlen(s));
}

static void tb_kv_str(tb *b, const char *key, const char *v)
{
    tb_str(b, key);
    tb_u32(b, 8);
    tb_str(b, v);
}

static void tb_kv_f32(tb *b, const char *key, float v)
{
    uint32_t u;
    memcpy(&u, &v, 4);
    tb_str(b, key);
    tb_u32(b, 6);
    tb_u32(b, u);
}

static void tb_kv_u32(tb *b, const char *key, uint32_t v)
{
    tb_str(b, key);
    tb_u32(b, 4);
    tb_u32(b, v);
}

typedef struct {
    const char *name;
    uint64_t ne0, ne1;
    const float *data;      /* F32 */
    uint32_t type;          /* else: raw bytes of this ggml type */
    const uint8_t *raw;
    size_t nbytes;
} tb_tensor;

#define F32T(name, ne0, ne1, data) {name, ne0, ne1, data, 0, NULL, 0}

static size_t tb_nbytes(const tb_tensor *t) { return t->raw ? t->nbytes : (size_t)(t->ne0 * t->ne1 * 4); }

/* KVs go in as the caller wrote them (after the header); then the infos
 * with offsets = running sum of PAD(nbytes, 32); pad; data, each padded. */
static void tb_finish(tb *b, size_t n_kv, const tb *kvs, const tb_tensor *t, size_t n_t)
{
    tb_bytes(b, "GGUF", 4);
    tb_u32(b, 3);
    tb_u64(b, n_t);
    tb_u64(b, n_kv);
    tb_bytes(b, kvs->p, kvs->len);
    uint64_t off = 0;
    for (size_t i = 0; i < n_t; i++) {
        tb_str(b, t[i].name);
        tb_u32(b, 2);
        tb_u64(b, t[i].ne0);
        tb_u64(b, t[i].ne1);
        tb_u32(b, t[i].type);
        tb_u64(b, off);
        off += (tb_nbytes(&t[i]) + 31) / 32 * 32;
    }
    static const uint8_t zero[32];
    tb_bytes(b, zero, (32 - b->len % 32) % 32);
    for (size_t i = 0; i < n_t; i++) {
        size_t n = tb_nbytes(&t[i]);
        tb_bytes(b, t[i].raw ? (const void *)t[i].raw : (const void *)t[i].data, n);
        tb_bytes(b, zero, (32 - n % 32) % 32);
    }
}

static void save(const tb *b, const char *path)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(b->p, 1, b->len, f), b->len);
    assert_int_equal(fclose(f), 0);
}

static void fill(float *v, size_t n, uint64_t seed)
{
    for (size_t i = 0; i < n; i++) v[i] = rng_value(&seed);
}

/* What convert_lora_to_gguf.py writes for a llama adapter of rank 3 on
 * q_proj (32 x 10, heads 4) and v_proj (8 x 10), and a token embedding
 * (num 7, dim 10): no head count KV; sizes that need padding. */
static void build_py_style(tb *out, const float *aq, const float *bq_hf, const float *av, const float *bv,
                           const float *ae_t, const float *be, const char *general_type)
{
    float bq[32 * 3];
    for (uint64_t h = 0; h < 32; h++) memcpy(bq + gguf_row(P_ROPE, 4, 32, h) * 3, bq_hf + h * 3, 12);
    tb kvs = {0};
    tb_kv_str(&kvs, "general.architecture", "llama");
    tb_kv_str(&kvs, "general.type", general_type);
    tb_kv_str(&kvs, "adapter.type", "lora");
    tb_kv_str(&kvs, "general.name", "Tiny Llama Lora");
    tb_kv_f32(&kvs, "adapter.lora.alpha", 6.0f);
    tb_kv_u32(&kvs, "general.quantization_version", 2);
    tb_tensor t[] = {
        F32T("blk.0.attn_q.weight.lora_a", 10, 3, aq), F32T("blk.0.attn_q.weight.lora_b", 3, 32, bq),
        F32T("blk.0.attn_v.weight.lora_a", 10, 3, av), F32T("blk.0.attn_v.weight.lora_b", 3, 8, bv),
        F32T("token_embd.weight.lora_a", 3, 7, ae_t),  F32T("token_embd.weight.lora_b", 3, 10, be),
    };
    tb_finish(out, 6, &kvs, t, 6);
    free(kvs.p);
}

static void test_gguf_py_layout(void **state)
{
    (void)state;
    float aq[30], bq[96], av[30], bv[24], ae_t[21], be[30];
    fill(aq, 30, 1), fill(bq, 96, 2), fill(av, 30, 3), fill(bv, 24, 4), fill(ae_t, 21, 5), fill(be, 30, 6);
    tb b = {0};
    build_py_style(&b, aq, bq, av, bv, ae_t, be, "adapter");
    const char *path = tpath("py.gguf");
    save(&b, path);
    free(b.p);
    lora_convert_options o = LORA_CONVERT_OPTIONS_INIT;
    lora_error e;
    void *buf;
    size_t size;
    /* convert_lora_to_gguf.py writes no head count: q_proj needs the config */
    assert_int_equal(import_file(path, &o, &buf, &size, &e), LORA_E_INVALID_ARGUMENT);
    assert_non_null(strstr(e.detail, "--base-config"));
    ts_write_text(tpath("cfg.json"), "{\"model_type\": \"llama\", \"num_attention_heads\": 4, \"hidden_size\": 10}");
    o.base_config = tpath("cfg.json");
    assert_int_equal(import_file(path, &o, &buf, &size, &e), LORA_OK);
    lora_reader *r = open_buf(buf, size);
    lora_file_info info;
    lora_reader_file_info(r, &info);
    assert_int_equal(info.module_count, 3);
    uint32_t mi;
    lora_module m;
    assert_int_equal(lora_reader_module_find(r, "model.layers.0.self_attn.q_proj", &mi), LORA_OK);
    assert_int_equal(lora_reader_module(r, mi, &m), LORA_OK);
    assert_int_equal(m.kind, LORA_KIND_LINEAR);
    assert_int_equal(m.scaling, LORA_SCALING_ALPHA_OVER_RANK);
    assert_true(m.alpha == 6.0f && m.scale == 2.0f && m.rank == 3);
    assert_int_equal(m.base_shape[0], 32);
    assert_int_equal(m.base_shape[1], 10);
    float *f = blob_f32(r, m.blob_a, NULL);
    assert_memory_equal(f, aq, sizeof aq);
    free(f);
    f = blob_f32(r, m.blob_b, NULL); /* back in the HF row order */
    assert_memory_equal(f, bq, sizeof bq);
    free(f);
    assert_int_equal(lora_reader_module_find(r, "model.layers.0.self_attn.v_proj", &mi), LORA_OK);
    assert_int_equal(lora_reader_module(r, mi, &m), LORA_OK);
    f = blob_f32(r, m.blob_b, NULL);
    assert_memory_equal(f, bv, sizeof bv);
    free(f);
    assert_int_equal(lora_reader_module_find(r, "model.embed_tokens", &mi), LORA_OK);
    assert_int_equal(lora_reader_module(r, mi, &m), LORA_OK);
    assert_int_equal(m.kind, LORA_KIND_EMBEDDING);
    assert_int_equal(m.base_shape[0], 7);
    assert_int_equal(m.base_shape[1], 10);
    f = blob_f32(r, m.blob_a, NULL); /* A [r, num] = the stored [num, r] transposed */
    for (int k = 0; k < 3; k++)
        for (int t = 0; t < 7; t++) assert_true(f[k * 7 + t] == ae_t[t * 3 + k]);
    free(f);
    f = blob_f32(r, m.blob_b, NULL);
    assert_memory_equal(f, be, sizeof be);
    free(f);
    expect_meta(r, "lora.adapter.name", "Tiny Llama Lora");
    expect_meta(r, "lora.architecture", "llama");
    lora_reader_free(r);
    free(buf);
}

/* ------------------------------------------------------------------------ */
/* refusals                                                                 */
/* ------------------------------------------------------------------------ */

/* An adapter with one plain module plus one module carrying a 1-D extra. */
static void build_with_extra(int magnitude, int bias, const char *tensor, void **buf, size_t *size)
{
    lora_writer *w;
    assert_int_equal(lora_writer_create(NULL, &w), LORA_OK);
    assert_int_equal(lora_writer_set_string(w, "lora.architecture", "llama", 5), LORA_OK);
    uint64_t seed = 3;
    const char *names[2] = {"model.layers.0.self_attn.v_proj", "model.layers.0.self_attn.o_proj"};
    for (int i = 0; i < 2; i++) {
        lora_module_desc d;
        memset(&d, 0, sizeof d);
        d.name = names[i];
        d.kind = LORA_KIND_LINEAR;
        d.rank = 2;
        d.alpha = 4;
        d.base_ndim = 2;
        d.base_shape[0] = 16;
        d.base_shape[1] = 16;
        add_values(w, LORA_DTYPE_F32, 2, 16, &seed, &d.blob_a);
        add_values(w, LORA_DTYPE_F32, 16, 2, &seed, &d.blob_b);
        d.blob_magnitude = d.blob_bias = LORA_NO_BLOB;
        uint64_t shape[1] = {16};
        float v[16];
        fill(v, 16, 9);
        if (i == 1 && magnitude)
            assert_int_equal(lora_writer_add_blob_f32(w, LORA_DTYPE_F32, 1, shape, v, 16, 0, &d.blob_magnitude),
                             LORA_OK);
        if (i == 1 && bias)
            assert_int_equal(lora_writer_add_blob_f32(w, LORA_DTYPE_F32, 1, shape, v, 16, 0, &d.blob_bias), LORA_OK);
        assert_int_equal(lora_writer_add_module(w, &d, NULL), LORA_OK);
    }
    if (tensor) {
        uint32_t t;
        add_values(w, LORA_DTYPE_F32, 4, 16, &seed, &t);
        assert_int_equal(lora_writer_add_tensor(w, tensor, t), LORA_OK);
    }
    uint64_t total;
    lora_error e;
    assert_int_equal(lora_writer_size(w, &total, &e), LORA_OK);
    *buf = malloc((size_t)total);
    assert_int_equal(lora_writer_write_buffer(w, *buf, (size_t)total, size, &e), LORA_OK);
    lora_writer_free(w);
}

static void refuse_then_drop(int magnitude, int bias, const char *tensor, const char *word, const char *named)
{
    void *buf;
    size_t size;
    build_with_extra(magnitude, bias, tensor, &buf, &size);
    lora_convert_options o = LORA_CONVERT_OPTIONS_INIT;
    warnings w = {0, ""};
    o.warn = on_warn;
    o.warn_opaque = &w;
    lora_error e;
    const char *out = tpath("refuse.gguf");
    unlink(out);
    assert_int_equal(export_buf(buf, size, out, &o, &e), LORA_E_UNSUPPORTED_ADAPTER);
    assert_non_null(strstr(e.detail, word));
    assert_non_null(strstr(e.detail, named));
    assert_false(exists(out));
    assert_int_equal(w.count, 0);
    o.flags = LORA_CONVERT_DROP_UNSUPPORTED;
    assert_int_equal(export_buf(buf, size, out, &o, &e), LORA_OK);
    assert_int_equal(w.count, 1);
    assert_non_null(strstr(w.all, word));
    assert_non_null(strstr(w.all, named));
    uint8_t *data;
    lora_gguf *g = parse_file(out, &data);
    assert_int_equal(lora_gguf_tensor_count(g), 4); /* both pairs; only the extra is gone */
    lora_gguf_free(g);
    free(data);
    free(buf);
}

static void test_refuse_dora_bias_tensors(void **state)
{
    (void)state;
    refuse_then_drop(1, 0, NULL, "DoRA magnitude", "model.layers.0.self_attn.o_proj");
    refuse_then_drop(0, 1, NULL, "LoRA bias", "model.layers.0.self_attn.o_proj");
    refuse_then_drop(0, 0, "lm_head.weight", "no full tensors", "lm_head.weight");
}

static void test_refuse_names_and_arch(void **state)
{
    (void)state;
    static const tmod odd[] = {
        LIN("model.layers.0.self_attn.v_proj", 2, 4, 16, 32, "blk.0.attn_v.weight"),
        LIN("model.layers.0.self_attn.rotary_proj", 2, 4, 16, 32, "x"),
    };
    lora_convert_options o = LORA_CONVERT_OPTIONS_INIT;
    warnings w = {0, ""};
    o.warn = on_warn;
    o.warn_opaque = &w;
    lora_error e;
    void *buf;
    size_t size;
    const char *out = tpath("names.gguf");
    build(odd, 2, NULL, 1, &buf, &size);
    /* no architecture anywhere */
    assert_int_equal(export_buf(buf, size, out, &o, &e), LORA_E_UNSUPPORTED_ADAPTER);
    assert_non_null(strstr(e.detail, "--arch"));
    o.arch = "mamba";
    assert_int_equal(export_buf(buf, size, out, &o, &e), LORA_E_UNSUPPORTED_ADAPTER);
    assert_non_null(strstr(e.detail, "'mamba'"));
    /* an unmapped module: refused by name, or dropped with a warning */
    o.arch = "mistral";
    assert_int_equal(export_buf(buf, size, out, &o, &e), LORA_E_UNSUPPORTED_ADAPTER);
    assert_non_null(strstr(e.detail, "rotary_proj"));
    assert_false(exists(out));
    o.flags = LORA_CONVERT_DROP_UNSUPPORTED;
    assert_int_equal(export_buf(buf, size, out, &o, &e), LORA_OK);
    assert_int_equal(w.count, 1);
    assert_non_null(strstr(w.all, "rotary_proj"));
    free(buf);
    /* gemma has no output tensor for lm_head */
    static const tmod gem[] = {LIN("lm_head", 2, 4, 50, 32, "output.weight")};
    build(gem, 1, NULL, 1, &buf, &size);
    o.flags = 0;
    o.arch = "gemma3";
    assert_int_equal(export_buf(buf, size, out, &o, &e), LORA_E_UNSUPPORTED_ADAPTER);
    assert_non_null(strstr(e.detail, "ties lm_head"));
    /* dropping the only module leaves nothing to write */
    o.flags = LORA_CONVERT_DROP_UNSUPPORTED;
    assert_int_equal(export_buf(buf, size, out, &o, &e), LORA_E_UNSUPPORTED_ADAPTER);
    assert_non_null(strstr(e.detail, "no LoRA pair"));
    free(buf);
    /* llama q_proj without any head count */
    static const tmod q[] = {{"model.layers.0.self_attn.q_proj", LORA_KIND_LINEAR, LORA_SCALING_ALPHA_OVER_RANK, 0,
                              2, 4, 0, 32, 32, LORA_DTYPE_F32, LORA_DTYPE_F32, "", P_ROPE, 4}};
    build(q, 1, NULL, 1, &buf, &size);
    o.flags = 0;
    o.arch = "llama";
    assert_int_equal(export_buf(buf, size, out, &o, &e), LORA_E_INVALID_ARGUMENT);
    assert_non_null(strstr(e.detail, "llama-family q_proj/k_proj export needs the head counts"));
    /* a head count the rows do not split into */
    ts_write_text(tpath("bad.json"), "{\"model_type\": \"llama\", \"num_attention_heads\": 5}");
    o.base_config = tpath("bad.json");
    assert_int_equal(export_buf(buf, size, out, &o, &e), LORA_E_BAD_SHAPE);
    ts_write_text(tpath("bad.json"), "{\"model_type\": \"llama\", \"num_attention_heads\": \"4\"}");
    assert_int_equal(export_buf(buf, size, out, &o, &e), LORA_E_BAD_JSON);
    free(buf);
}

static void import_expect(const tb *b, lora_status want, const char *detail_part)
{
    const char *path = tpath("in.gguf");
    save(b, path);
    lora_convert_options o = LORA_CONVERT_OPTIONS_INIT;
    lora_error e;
    void *buf = NULL;
    size_t size;
    lora_status st = import_file(path, &o, &buf, &size, &e);
    if (st != want) fail_msg("import: %s (%s), wanted %s", lora_status_name(st), e.detail, lora_status_name(want));
    if (detail_part && !strstr(e.detail, detail_part)) fail_msg("detail '%s' lacks '%s'", e.detail, detail_part);
    free(buf);
}

static void test_import_refusals(void **state)
{
    (void)state;
    float aq[30], bq[96], av[30], bv[24], ae[21], be[30];
    fill(aq, 30, 1), fill(bq, 96, 2), fill(av, 30, 3), fill(bv, 24, 4), fill(ae, 21, 5), fill(be, 30, 6);
    tb b = {0};
    /* a base model (general.type model) given as an adapter */
    build_py_style(&b, aq, bq, av, bv, ae, be, "model");
    import_expect(&b, LORA_E_UNKNOWN_FORMAT, "not a LoRA adapter");
    free(b.p);
    /* truncated files: in the header, in the infos, in the tensor data */
    memset(&b, 0, sizeof b);
    build_py_style(&b, aq, bq, av, bv, ae, be, "adapter");
    size_t full = b.len;
    size_t cuts[] = {0, 3, 20, 100, full - 21 * 4 - 40, full - 64};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        tb c = {b.p, cuts[i], cuts[i]};
        import_expect(&c, LORA_E_TRUNCATED, NULL);
    }
    free(b.p);
    /* an unpaired tensor, an aLoRA, a control vector */
    tb kvs = {0};
    tb_kv_str(&kvs, "general.architecture", "llama");
    tb_kv_str(&kvs, "general.type", "adapter");
    tb_kv_str(&kvs, "adapter.type", "lora");
    tb_kv_f32(&kvs, "adapter.lora.alpha", 6.0f);
    tb_tensor one[] = {F32T("blk.0.attn_v.weight.lora_a", 10, 3, av)};
    memset(&b, 0, sizeof b);
    tb_finish(&b, 4, &kvs, one, 1);
    import_expect(&b, LORA_E_BAD_SHAPE, "blk.0.attn_v.weight.lora_a");
    free(b.p);
    tb_tensor pair[] = {F32T("blk.0.attn_v.weight.lora_a", 10, 3, av), F32T("blk.0.attn_v.weight.lora_b", 3, 8, bv)};
    memset(&b, 0, sizeof b);
    tb_finish(&b, 4, &kvs, pair, 2);
    import_expect(&b, LORA_OK, NULL);
    free(b.p);
    tb_str(&kvs, "adapter.alora.invocation_tokens");
    tb_u32(&kvs, 9);
    tb_u32(&kvs, 4);
    tb_u64(&kvs, 2);
    tb_u32(&kvs, 7);
    tb_u32(&kvs, 8);
    memset(&b, 0, sizeof b);
    tb_finish(&b, 5, &kvs, pair, 2);
    import_expect(&b, LORA_E_UNSUPPORTED_ADAPTER, "aLoRA");
    free(b.p);
    free(kvs.p);
    memset(&kvs, 0, sizeof kvs);
    tb_kv_str(&kvs, "general.architecture", "llama");
    tb_kv_str(&kvs, "general.type", "adapter");
    tb_kv_str(&kvs, "adapter.type", "cvec");
    memset(&b, 0, sizeof b);
    tb_finish(&b, 3, &kvs, pair, 2);
    import_expect(&b, LORA_E_UNSUPPORTED_ADAPTER, "adapter.type");
    free(b.p);
    free(kvs.p);
    /* lora_a stored untransposed ({r, in}): llama.cpp's "not transposed" */
    memset(&kvs, 0, sizeof kvs);
    tb_kv_str(&kvs, "general.architecture", "llama");
    tb_kv_str(&kvs, "general.type", "adapter");
    tb_kv_str(&kvs, "adapter.type", "lora");
    tb_tensor flipped[] = {F32T("blk.0.attn_v.weight.lora_a", 3, 10, av), F32T("blk.0.attn_v.weight.lora_b", 3, 8, bv)};
    memset(&b, 0, sizeof b);
    tb_finish(&b, 3, &kvs, flipped, 2);
    import_expect(&b, LORA_E_BAD_SHAPE, "transposed");
    free(b.p);
    /* a tensor name with no HF module */
    tb_tensor odd[] = {F32T("blk.0.ssm_in.weight.lora_a", 10, 3, av), F32T("blk.0.ssm_in.weight.lora_b", 3, 8, bv)};
    memset(&b, 0, sizeof b);
    tb_finish(&b, 3, &kvs, odd, 2);
    import_expect(&b, LORA_E_UNSUPPORTED_ADAPTER, "blk.0.ssm_in.weight");
    free(b.p);
    free(kvs.p);
    /* another architecture */
    memset(&kvs, 0, sizeof kvs);
    tb_kv_str(&kvs, "general.architecture", "mamba");
    tb_kv_str(&kvs, "general.type", "adapter");
    tb_kv_str(&kvs, "adapter.type", "lora");
    memset(&b, 0, sizeof b);
    tb_finish(&b, 3, &kvs, pair, 2);
    import_expect(&b, LORA_E_UNSUPPORTED_ADAPTER, "'mamba'");
    free(b.p);
    free(kvs.p);
    /* a K-quant adapter: no .lora form */
    memset(&kvs, 0, sizeof kvs);
    tb_kv_str(&kvs, "general.architecture", "llama");
    tb_kv_str(&kvs, "general.type", "adapter");
    tb_kv_str(&kvs, "adapter.type", "lora");
    static const uint8_t q4k[144];
    tb_tensor kq[] = {{"blk.0.attn_v.weight.lora_a", 256, 1, NULL, LORA_GGML_Q4_K, q4k, 144},
                      {"blk.0.attn_v.weight.lora_b", 1, 8, bv, 0, NULL, 0}};
    memset(&b, 0, sizeof b);
    tb_finish(&b, 3, &kvs, kq, 2);
    import_expect(&b, LORA_E_UNSUPPORTED_DTYPE, "Q4_K");
    free(b.p);
    free(kvs.p);
    /* a Git LFS pointer in place of the file */
    tb lfs = {0};
    const char *ptr = "version https://git-lfs.github.com/spec/v1\n"
                      "oid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\nsize 12345\n";
    tb_bytes(&lfs, ptr, strlen(ptr));
    import_expect(&lfs, LORA_E_LFS_POINTER, "Git LFS pointer");
    free(lfs.p);
}

/* A Q8_0 lora_a (convert_lora_to_gguf.py --outtype q8_0) is dequantized:
 * here d = 0.5 and q = -16..15, so every value is exact. */
static void test_import_q8_0(void **state)
{
    (void)state;
    uint8_t q8[2 * 34];
    for (int blk = 0; blk < 2; blk++) {
        q8[blk * 34] = 0x00;
        q8[blk * 34 + 1] = 0x38; /* f16 0.5 */
        for (int i = 0; i < 32; i++) q8[blk * 34 + 2 + i] = (uint8_t)(int8_t)(i - 16 + blk);
    }
    float bv[16];
    fill(bv, 16, 4);
    tb kvs = {0};
    tb_kv_str(&kvs, "general.architecture", "qwen2");
    tb_kv_str(&kvs, "general.type", "adapter");
    tb_kv_str(&kvs, "adapter.type", "lora");
    tb_kv_f32(&kvs, "adapter.lora.alpha", 4.0f);
    tb_tensor t[] = {{"blk.2.attn_v.weight.lora_a", 32, 2, NULL, LORA_GGML_Q8_0, q8, sizeof q8},
                     {"blk.2.attn_v.weight.lora_b", 2, 8, bv, 0, NULL, 0}};
    tb b = {0};
    tb_finish(&b, 4, &kvs, t, 2);
    save(&b, tpath("q8in.gguf"));
    free(b.p);
    free(kvs.p);
    lora_convert_options o = LORA_CONVERT_OPTIONS_INIT;
    lora_error e;
    void *buf;
    size_t size;
    assert_int_equal(import_file(tpath("q8in.gguf"), &o, &buf, &size, &e), LORA_OK);
    lora_reader *r = open_buf(buf, size);
    uint32_t mi;
    lora_module m;
    assert_int_equal(lora_reader_module_find(r, "model.layers.2.self_attn.v_proj", &mi), LORA_OK);
    assert_int_equal(lora_reader_module(r, mi, &m), LORA_OK);
    assert_true(m.rank == 2 && m.alpha == 4.0f && m.scale == 2.0f);
    lora_blob bl;
    assert_int_equal(lora_reader_blob(r, m.blob_a, &bl), LORA_OK);
    assert_int_equal(bl.dtype, LORA_DTYPE_F32);
    float *a = blob_f32(r, m.blob_a, NULL);
    for (int blk = 0; blk < 2; blk++)
        for (int i = 0; i < 32; i++) assert_true(a[blk * 32 + i] == 0.5f * (float)(i - 16 + blk));
    free(a);
    lora_reader_free(r);
    free(buf);
}

/* Fail the Nth allocation of the options' allocator, N = 0, 1, ... until
 * the call succeeds: each failure is OUT_OF_MEMORY, frees everything it
 * took and leaves no output behind. */
typedef struct {
    long countdown, live;
} fail_alloc;

static void *fa_alloc(void *opaque, size_t n)
{
    fail_alloc *f = opaque;
    if (f->countdown-- == 0) return NULL;
    void *p = malloc(n);
    if (p) f->live++;
    return p;
}

static void fa_free(void *opaque, void *p)
{
    fail_alloc *f = opaque;
    if (p) f->live--;
    free(p);
}

static void test_alloc_failures(void **state)
{
    (void)state;
    void *buf;
    size_t size;
    build(llama_mods, N_LLAMA, NULL, 1, &buf, &size);
    char cfg[512], out[512];
    snprintf(cfg, sizeof cfg, "%s", tpath("llama.json"));
    snprintf(out, sizeof out, "%s", tpath("oom.gguf"));
    ts_write_text(cfg, llama_config);
    fail_alloc f;
    lora_convert_options o = LORA_CONVERT_OPTIONS_INIT;
    o.base_config = cfg;
    o.allocator.alloc = fa_alloc;
    o.allocator.free = fa_free;
    o.allocator.opaque = &f;
    lora_error e;
    long n;
    for (n = 0; n < 10000; n++) {
        f.countdown = n;
        f.live = 0;
        lora_status st = export_buf(buf, size, out, &o, &e);
        assert_int_equal(f.live, 0);
        if (st == LORA_OK) break;
        if (st != LORA_E_OUT_OF_MEMORY) fail_msg("allocation %ld: %s: %s", n, lora_status_name(st), e.detail);
        assert_false(exists(out));
    }
    assert_true(n > 10 && n < 10000);
    for (n = 0; n < 10000; n++) {
        f.countdown = n;
        f.live = 0;
        void *back = NULL;
        size_t bs;
        lora_status st = import_file(out, &o, &back, &bs, &e);
        assert_int_equal(f.live, 0);
        free(back);
        if (st == LORA_OK) break;
        if (st != LORA_E_OUT_OF_MEMORY) fail_msg("allocation %ld: %s: %s", n, lora_status_name(st), e.detail);
    }
    assert_true(n > 10 && n < 10000);
    free(buf);
}

/* ------------------------------------------------------------------------ */
/* real files                                                               */
/* ------------------------------------------------------------------------ */

static const char *fixture(const char *rel)
{
    static char path[1024];
    const char *root = getenv("LORA_REAL_FIXTURES");
    snprintf(path, sizeof path, "%s/%s", root ? root : "/work/shared/fixtures/real", rel);
    if (exists(path)) return path;
    if (getenv("CI")) fail_msg("fixture %s missing (CI is set)", path);
    return NULL;
}

/* The real base GGUF (general.type absent: a model) is not an adapter. */
static void test_real_base_model(void **state)
{
    (void)state;
    const char *path = fixture("gguf-llama2-tiny-random/llama-2-tiny-random.gguf");
    if (!path) skip();
    lora_convert_options o = LORA_CONVERT_OPTIONS_INIT;
    lora_error e;
    void *buf = NULL;
    size_t size;
    assert_int_equal(import_file(path, &o, &buf, &size, &e), LORA_E_UNKNOWN_FORMAT);
    assert_non_null(strstr(e.detail, "not a LoRA adapter"));
}

/* A real PEFT adapter through PEFT -> .lora -> GGUF -> .lora. */
static void real_peft(const char *dir, const char *arch, const char *config, const char *first_a,
                      uint64_t ne0, uint64_t ne1, uint64_t pairs)
{
    const char *path = fixture(dir);
    if (!path) skip();
    lora_convert_options o = LORA_CONVERT_OPTIONS_INIT;
    lora_error e;
    lora_writer *w;
    assert_int_equal(lora_writer_create(NULL, &w), LORA_OK);
    assert_int_equal(lora_import_peft(path, &o, w, &e), LORA_OK);
    uint64_t total;
    size_t size;
    assert_int_equal(lora_writer_size(w, &total, &e), LORA_OK);
    void *buf = malloc((size_t)total);
    assert_int_equal(lora_writer_write_buffer(w, buf, (size_t)total, &size, &e), LORA_OK);
    lora_writer_free(w);
    o.arch = arch;
    if (config) {
        ts_write_text(tpath("real.json"), config);
        o.base_config = tpath("real.json");
    }
    const char *out = tpath("real.gguf");
    lora_status st = export_buf(buf, size, out, &o, &e);
    if (st != LORA_OK) fail_msg("%s: %s", lora_status_name(st), e.detail);
    uint8_t *data;
    lora_gguf *g = parse_file(out, &data);
    assert_int_equal(lora_gguf_tensor_count(g), 2 * pairs);
    const lora_gguf_tensor *t = lora_gguf_find_tensor(g, first_a);
    assert_non_null(t);
    assert_int_equal(t->ne[0], ne0);
    assert_int_equal(t->ne[1], ne1);
    /* every module's delta back, within one F32 (or F16) rounding */
    lora_reader *src = open_buf(buf, size);
    void *bb;
    size_t bs;
    lora_convert_options plain = LORA_CONVERT_OPTIONS_INIT;
    assert_int_equal(import_file(out, &plain, &bb, &bs, &e), LORA_OK);
    lora_reader *back = open_buf(bb, bs);
    lora_file_info info;
    lora_reader_file_info(src, &info);
    assert_int_equal(info.module_count, pairs);
    for (uint32_t i = 0; i < info.module_count; i++) {
        lora_module m;
        assert_int_equal(lora_reader_module(src, i, &m), LORA_OK);
        delta got, ref;
        lora_delta(back, m.name, &got);
        lora_delta(src, m.name, &ref);
        expect_close(&got, &ref, U_F32, m.name);
        delta_free(&got);
        delta_free(&ref);
        /* one alpha for all: nothing baked, the blobs come back bit for bit */
        assert_true(same_blob(back, m.name, src, 0));
        assert_true(same_blob(back, m.name, src, 1));
    }
    lora_reader_free(back);
    lora_reader_free(src);
    free(bb);
    lora_gguf_free(g);
    free(data);
    free(buf);
}

static void test_real_gemma3(void **state)
{
    (void)state;
    real_peft("peft-gemma3-gqa", "gemma3", NULL, "blk.0.attn_q.weight.lora_a", 640, 4, 36);
    uint8_t *data;
    lora_gguf *g = parse_file(tpath("real.gguf"), &data);
    const lora_gguf_tensor *t = lora_gguf_find_tensor(g, "blk.17.attn_v.weight.lora_b");
    assert_non_null(t);
    assert_int_equal(t->ne[0], 4);
    assert_int_equal(t->ne[1], 256); /* GQA: v_proj has 256 rows */
    float alpha;
    lora_error e;
    assert_int_equal(lora_gguf_get_f32(g, "adapter.lora.alpha", &alpha, &e), LORA_OK);
    assert_true(alpha == 4.0f);
    expect_str_kv(g, "general.architecture", "gemma3");
    lora_gguf_free(g);
    free(data);
}

static void test_real_gpt2(void **state)
{
    (void)state;
    real_peft("peft-gpt2-tigrinya", "gpt2", NULL, "blk.0.attn_qkv.weight.lora_a", 768, 8, 36);
}

static void test_real_gptneox(void **state)
{
    (void)state;
    /* open-calm-1b: 32 heads, hidden 2048 (its config.json) */
    real_peft("peft-opencalm-f16-r1", NULL,
              "{\"model_type\": \"gpt_neox\", \"num_attention_heads\": 32, \"hidden_size\": 2048}",
              "blk.0.attn_qkv.weight.lora_a", 2048, 1, 24);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_llama_export),
        cmocka_unit_test(test_baked_values),
        cmocka_unit_test(test_qwen2),
        cmocka_unit_test(test_gpt2_fan_in_fan_out),
        cmocka_unit_test(test_gptneox_qkv),
        cmocka_unit_test(test_dtypes),
        cmocka_unit_test(test_gguf_py_layout),
        cmocka_unit_test(test_refuse_dora_bias_tensors),
        cmocka_unit_test(test_refuse_names_and_arch),
        cmocka_unit_test(test_import_refusals),
        cmocka_unit_test(test_import_q8_0),
        cmocka_unit_test(test_alloc_failures),
        cmocka_unit_test(test_real_base_model),
        cmocka_unit_test(test_real_gemma3),
        cmocka_unit_test(test_real_gpt2),
        cmocka_unit_test(test_real_gptneox),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
