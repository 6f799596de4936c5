/*
 * gguf_export.c - .lora -> llama.cpp GGUF adapter, following
 * convert_lora_to_gguf.py: tensors "<base>.weight.lora_a" / ".lora_b" in
 * module order, the arch's row orders applied to B, token_embd's A stored
 * transposed, and adapter.lora.alpha.
 *
 * The scale. llama.cpp has one alpha per file and computes, per pair,
 * scale = alpha / rank in binary32 with rank = lora_b's ne[0]
 * (llama_adapter_lora_weight::get_scale; alpha 0 means scale 1). A module
 * whose own scale s differs from that (per-module alpha, rsLoRA, an
 * explicit MLX scale) gets it baked into B:
 *     B' = fl(B * (s / s_llama))      (product in double, one rounding)
 * so llama.cpp computes s_llama * B' @ A = s * B @ A exactly up to that one
 * rounding of each element of B' (relative 2^-24 in F32; F16/BF16 round
 * B' once more). The global alpha is the one most modules already agree
 * with, so those keep B bit for bit.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "../io/gguf.h"
#include "../io/map_file.h"
#include "../kernels/kernels.h"
#include "gguf_names.h"
#include "convert.h"

/* One exported module. */
typedef struct {
    lora_module m;
    lora_gguf_mapped map;
    uint64_t heads;               /* groups of the row order, 0 if none */
    double factor;                /* s_module / s_llama; exactly 1 keeps B */
    lora_dtype dt_a, dt_b;
    uint64_t ne_a[2], ne_b[2];
} gx_pair;

typedef struct {
    const lora_reader *r;
    const lora_convert_options *o;
    const lora_allocator *alloc;
    const lora_gguf_arch *arch;
    lora_gguf_hparams hp;
    gx_pair *pairs;
    uint32_t n_pairs;
    float alpha;
} gx_state;

/* ---- architecture and head counts ---------------------------------------- */

/* A STRING metadata value, or NULL. */
static const char *meta_string(const lora_reader *r, const char *key)
{
    lora_meta m;
    return lora_reader_meta_find(r, key, &m) == LORA_OK && m.type == LORA_META_STRING ? m.string : NULL;
}

static uint64_t meta_count(const lora_reader *r, const char *key)
{
    lora_meta m;
    if (lora_reader_meta_find(r, key, &m) != LORA_OK || m.type != LORA_META_INT) return 0;
    return m.integer > 0 && m.integer < ((int64_t)1 << 31) ? (uint64_t)m.integer : 0;
}

/* --arch if given (it must be known); else the first of lora.architecture
 * and the config's model_type that is known, so that an unknown
 * lora.architecture does not hide a good config. */
static lora_status resolve_arch(gx_state *x, lora_error *err)
{
    const char *meta = meta_string(x->r, LORA_META_ARCHITECTURE);
    const char *cand[3] = {x->o->arch, meta, x->hp.model_type[0] ? x->hp.model_type : NULL};
    static const char *const from[3] = {"--arch", LORA_META_ARCHITECTURE, "the model_type of the base config"};
    /* An explicit --arch is the user's word: it must be known itself. */
    for (int i = x->o->arch ? 0 : 1; i < (x->o->arch ? 1 : 3); i++)
        if (cand[i] && (x->arch = lora_gguf_arch_find(cand[i])) != NULL) return LORA_OK;
    for (int i = 0; i < 3; i++)
        if (cand[i])
            return lora_error_set(err, LORA_E_UNSUPPORTED_ADAPTER, LORA_NO_OFFSET,
                                  "gguf: architecture '%s' (from %s) has no GGUF tensor name map; say --arch (%s)",
                                  cand[i], from[i], lora_gguf_arch_list());
    return lora_error_set(err, LORA_E_UNSUPPORTED_ADAPTER, LORA_NO_OFFSET,
                          "gguf: the adapter does not name its architecture: say --arch (%s) or pass "
                          "--base-config config.json", lora_gguf_arch_list());
}

/* The config wins; otherwise what a previous GGUF import recorded. */
static void resolve_heads(gx_state *x)
{
    if (x->hp.n_head) return;
    x->hp.n_head = meta_count(x->r, LORA_GGUF_META_HEAD_COUNT);
    x->hp.n_head_kv = meta_count(x->r, LORA_GGUF_META_HEAD_COUNT_KV);
    if (!x->hp.n_head_kv) x->hp.n_head_kv = x->hp.n_head;
}

/* ---- what GGUF cannot hold ----------------------------------------------- */

static int dropping(const gx_state *x) { return (x->o->flags & LORA_CONVERT_DROP_UNSUPPORTED) != 0; }

/* Refuse, or (with the flag) warn that `what` is dropped and go on. */
static lora_status unsupported(const gx_state *x, const char *what, const char *why, lora_error *err)
{
    if (!dropping(x))
        return lora_error_set(err, LORA_E_UNSUPPORTED_ADAPTER, LORA_NO_OFFSET,
                              "gguf: %s: %s (--drop-unsupported drops it with a warning)", what, why);
    lora_ops_warn(x->o, "gguf: dropped %s: %s", what, why);
    return LORA_OK;
}

static lora_status check_tensors(const gx_state *x, lora_error *err)
{
    lora_file_info info;
    lora_reader_file_info(x->r, &info);
    for (uint32_t i = 0; i < info.tensor_count; i++) {
        lora_tensor t;
        LORA_FORWARD_IF_ERROR(lora_reader_tensor(x->r, i, &t));
        char what[320];
        snprintf(what, sizeof what, "replacement tensor '%.256s'", t.name);
        LORA_FORWARD_IF_ERROR(unsupported(x, what, "llama.cpp GGUF adapters hold only lora_a/lora_b pairs, no full "
                                          "tensors (modules_to_save)", err));
    }
    return LORA_OK;
}

/* ---- planning ------------------------------------------------------------ */

static lora_dtype out_dtype(const gx_state *x, uint32_t blob)
{
    if (x->o->dtype >= 0) return (lora_dtype)x->o->dtype;
    lora_blob b;
    if (lora_reader_blob(x->r, blob, &b) != LORA_OK) return LORA_DTYPE_F32;
    return b.dtype == LORA_DTYPE_F16 || b.dtype == LORA_DTYPE_BF16 ? b.dtype : LORA_DTYPE_F32;
}

static lora_status need_heads(const gx_state *x, gx_pair *p, lora_error *err)
{
    switch (p->map.role) {
    case LORA_GGUF_ROLE_ROPE_Q: p->heads = x->hp.n_head; break;
    case LORA_GGUF_ROLE_ROPE_K: p->heads = x->hp.n_head_kv; break;
    case LORA_GGUF_ROLE_NEOX_QKV: p->heads = x->hp.n_head; break;
    case LORA_GGUF_ROLE_PLAIN:
    case LORA_GGUF_ROLE_EMBED:
    case LORA_GGUF_ROLE_CONV1D:
    case LORA_GGUF_ROLE_REFUSED: return LORA_OK;
    }
    if (p->heads) return LORA_OK;
    const char *what =
        p->map.role == LORA_GGUF_ROLE_NEOX_QKV ? "gptneox query_key_value" : "llama-family q_proj/k_proj";
    return lora_error_set(err, LORA_E_INVALID_ARGUMENT, LORA_NO_OFFSET,
                          "gguf: module '%s': %s export needs the head counts to reorder B's rows as llama.cpp "
                          "expects: pass --base-config config.json", p->m.name, what);
}

/* Map one module; *keep = 0 when it is dropped. */
static lora_status plan_module(gx_state *x, gx_pair *p, int *keep, lora_error *err)
{
    char what[320];
    *keep = 0;
    snprintf(what, sizeof what, "module '%.256s'", p->m.name);
    lora_status st = lora_gguf_name_to_gguf(x->arch, p->m.name, &p->map);
    if (st == LORA_E_NOT_FOUND) {
        char why[128];
        snprintf(why, sizeof why, "no llama.cpp tensor takes it in architecture '%s'", x->arch->name);
        return unsupported(x, what, why, err);
    }
    LORA_FORWARD_IF_ERROR(st);
    if (p->map.role == LORA_GGUF_ROLE_REFUSED) return unsupported(x, what, p->map.reason, err);
    lora_kind want = p->map.role == LORA_GGUF_ROLE_EMBED ? LORA_KIND_EMBEDDING : LORA_KIND_LINEAR;
    if (p->m.kind != want) {
        char why[128];
        snprintf(why, sizeof why, "it is a %s LoRA, and GGUF's '%s' takes a %s one", lora_kind_name(p->m.kind),
                 p->map.name, lora_kind_name(want));
        return unsupported(x, what, why, err);
    }
    if (p->m.blob_magnitude != LORA_NO_BLOB) {
        snprintf(what, sizeof what, "the DoRA magnitude of module '%.256s'", p->m.name);
        LORA_FORWARD_IF_ERROR(unsupported(x, what, "llama.cpp GGUF adapters have no DoRA magnitude (without it "
                                          "llama.cpp applies A and B as a plain LoRA)", err));
    }
    if (p->m.blob_bias != LORA_NO_BLOB) {
        snprintf(what, sizeof what, "the LoRA bias of module '%.256s'", p->m.name);
        LORA_FORWARD_IF_ERROR(unsupported(x, what, "llama.cpp GGUF adapters have no LoRA bias (lora_bias)", err));
    }
    LORA_FORWARD_IF_ERROR(need_heads(x, p, err));
    lora_blob a, b;
    LORA_FORWARD_IF_ERROR(lora_reader_blob(x->r, p->m.blob_a, &a));
    LORA_FORWARD_IF_ERROR(lora_reader_blob(x->r, p->m.blob_b, &b));
    /* ne[0] is the contiguous dim: A [r, in] -> {in, r}, B [out, r] -> {r, out};
     * token_embd's A is stored transposed, [num, r] -> {r, num}. */
    int embed = p->map.role == LORA_GGUF_ROLE_EMBED;
    p->ne_a[0] = embed ? a.shape[0] : a.shape[1];
    p->ne_a[1] = embed ? a.shape[1] : a.shape[0];
    p->ne_b[0] = b.shape[1];
    p->ne_b[1] = b.shape[0];
    p->dt_a = out_dtype(x, p->m.blob_a);
    p->dt_b = out_dtype(x, p->m.blob_b);
    /* As convert_lora_to_gguf.py: A and B of different types both go to F32. */
    if (p->dt_a != p->dt_b) p->dt_a = p->dt_b = LORA_DTYPE_F32;
    *keep = 1;
    return LORA_OK;
}

static lora_status plan(gx_state *x, lora_error *err)
{
    lora_file_info info;
    lora_reader_file_info(x->r, &info);
    if (info.module_count) {
        x->pairs = lora_mem_calloc(x->alloc, info.module_count, sizeof *x->pairs);
        if (!x->pairs) return lora_error_set(err, LORA_E_OUT_OF_MEMORY, LORA_NO_OFFSET, "out of memory");
    }
    for (uint32_t i = 0; i < info.module_count; i++) {
        gx_pair *p = &x->pairs[x->n_pairs];
        memset(p, 0, sizeof *p);
        LORA_FORWARD_IF_ERROR(lora_reader_module(x->r, i, &p->m));
        int keep;
        LORA_FORWARD_IF_ERROR(plan_module(x, p, &keep, err));
        x->n_pairs += (uint32_t)keep;
    }
    LORA_FORWARD_IF_ERROR(check_tensors(x, err));
    if (!x->n_pairs)
        return lora_error_set(err, LORA_E_UNSUPPORTED_ADAPTER, LORA_NO_OFFSET,
                              "gguf: no LoRA pair is left to export");
    return LORA_OK;
}

/* ---- the global alpha ---------------------------------------------------- */

/* llama_adapter_lora_weight::get_scale at user scale 1, in binary32. */
static float llama_scale(float alpha, uint32_t rank) { return alpha != 0.0f ? alpha / (float)rank : 1.0f; }

static int same_bits(float a, float b) { return memcmp(&a, &b, sizeof a) == 0; }

/* The alpha a module would need for llama.cpp to give its scale. */
static float wanted_alpha(const lora_module *m)
{
    return m->scaling == LORA_SCALING_ALPHA_OVER_RANK ? m->alpha : (float)((double)m->scale * m->rank);
}

static uint32_t agreeing(const gx_state *x, float alpha)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < x->n_pairs; i++)
        n += same_bits(llama_scale(alpha, x->pairs[i].m.rank), x->pairs[i].m.scale);
    return n;
}

/* The candidate most modules agree with (the first one on a tie). Only the
 * first few distinct candidates are tried, so a million modules with a
 * million alphas cost linear time. */
static float choose_alpha(const gx_state *x)
{
    float best = 1.0f, tried[16];
    uint32_t best_n = 0, n_tried = 0;
    for (uint32_t i = 0; i < x->n_pairs && n_tried < 16; i++) {
        float c = wanted_alpha(&x->pairs[i].m);
        if (c == 0.0f || !isfinite(c)) continue;
        int seen = 0;
        for (uint32_t k = 0; k < n_tried; k++) seen |= same_bits(tried[k], c);
        if (seen) continue;
        tried[n_tried++] = c;
        uint32_t n = agreeing(x, c);
        if (n > best_n) best = c, best_n = n;
    }
    return best;
}

static lora_status set_factors(gx_state *x, lora_error *err)
{
    x->alpha = choose_alpha(x);
    for (uint32_t i = 0; i < x->n_pairs; i++) {
        gx_pair *p = &x->pairs[i];
        float sl = llama_scale(x->alpha, p->m.rank);
        p->factor = same_bits(sl, p->m.scale) ? 1.0 : (double)p->m.scale / (double)sl;
        if (!isfinite(p->factor))
            return lora_error_set(err, LORA_E_BAD_SCALE, LORA_NO_OFFSET,
                                  "gguf: module '%s': its scale %g cannot be expressed with alpha %g and rank %u",
                                  p->m.name, (double)p->m.scale, (double)x->alpha, p->m.rank);
    }
    return LORA_OK;
}

/* ---- tensor data ----------------------------------------------------------- */

static uint32_t ggml_type_of(lora_dtype d)
{
    return d == LORA_DTYPE_F16 ? LORA_GGML_F16 : d == LORA_DTYPE_BF16 ? LORA_GGML_BF16 : LORA_GGML_F32;
}

static size_t elem_bytes(lora_dtype d) { return d == LORA_DTYPE_F32 ? 4 : 2; }

/* How one tensor is made from one blob. */
typedef struct {
    uint32_t blob;
    int transpose;          /* 2-D swap of the blob's axes (token_embd's A) */
    const uint64_t *rows;   /* GGUF row g <- blob row rows[g]; NULL = identity */
    double factor;
    lora_dtype dtype;
    const char *name;       /* for details */
} gx_job;

/* Element moves without looking at values: a transpose or a row order. */
static void move_elems(const uint8_t *src, uint8_t *dst, const lora_blob *b, const gx_job *j, size_t es)
{
    uint64_t rows = b->shape[0], cols = b->shape[1];
    if (j->transpose) {
        for (uint64_t r = 0; r < rows; r++)
            for (uint64_t c = 0; c < cols; c++) memcpy(dst + (c * rows + r) * es, src + (r * cols + c) * es, es);
    } else if (j->rows) {
        for (uint64_t g = 0; g < rows; g++) memcpy(dst + g * cols * es, src + j->rows[g] * cols * es, cols * es);
    } else {
        memcpy(dst, src, (size_t)(rows * cols) * es);
    }
}

/* 1 if RNE to `d` turns the finite x into an infinity. */
static int overflows(float x, lora_dtype d)
{
    if (!isfinite(x)) return 0;
    if (d == LORA_DTYPE_F16) return fabsf(x) >= 65520.0f;
    if (d == LORA_DTYPE_BF16) {
        uint32_t u;
        memcpy(&u, &x, 4);
        return (u & 0x7fffffffu) >= 0x7f7f8000u;
    }
    return 0;
}

/* Bake, check and encode n values of f into dst (the target dtype's bytes). */
static lora_status encode(float *f, size_t n, const gx_job *j, uint8_t *dst, lora_error *err)
{
    for (size_t i = 0; i < n; i++) {
        float v = j->factor == 1.0 ? f[i] : (float)((double)f[i] * j->factor);
        if ((isfinite(f[i]) && !isfinite(v)) || overflows(v, j->dtype))
            return lora_error_set(err, LORA_E_NONFINITE, LORA_NO_OFFSET,
                                  "gguf: tensor '%s': element %zu (%g) overflows %s%s", j->name, i, (double)v,
                                  lora_dtype_name(j->dtype), j->dtype == LORA_DTYPE_F32 ? "" : ": use --dtype f32");
        f[i] = v;
    }
    const lora_kernels *k = lora_kernels_get();
    uint16_t tmp[1024];
    if (j->dtype == LORA_DTYPE_F32) {
        memcpy(dst, f, n * 4);
        return LORA_OK;
    }
    for (size_t i = 0; i < n;) {
        size_t m = n - i < 1024 ? n - i : 1024;
        (j->dtype == LORA_DTYPE_F16 ? k->f32_to_f16 : k->f32_to_bf16)(f + i, tmp, m);
        memcpy(dst + 2 * i, tmp, 2 * m);
        i += m;
    }
    return LORA_OK;
}

/* Same dtype, nothing baked: the blob's bytes, only moved. */
static lora_status make_raw(const gx_state *x, const gx_job *j, const lora_blob *b, uint8_t *dst, lora_error *err)
{
    uint8_t *raw = lora_mem_alloc(x->alloc, (size_t)b->raw_size ? (size_t)b->raw_size : 1);
    if (!raw) return lora_error_set(err, LORA_E_OUT_OF_MEMORY, LORA_NO_OFFSET, "out of memory");
    lora_status st = lora_reader_blob_read(x->r, j->blob, raw, (size_t)b->raw_size, err);
    if (st == LORA_OK) move_elems(raw, dst, b, j, elem_bytes(j->dtype));
    lora_mem_free(x->alloc, raw);
    return st;
}

static lora_status make_converted(const gx_state *x, const gx_job *j, const lora_blob *b, uint8_t *dst,
                                  lora_error *err)
{
    float *f = NULL, *moved = NULL;
    uint64_t n = 0;
    LORA_FORWARD_IF_ERROR(lora_ops_blob_f32(x->r, x->alloc, j->blob, 0, &f, &n, err));
    lora_status st = LORA_OK;
    if (j->transpose || j->rows) {
        moved = lora_mem_alloc(x->alloc, (size_t)n * sizeof *moved);
        if (!moved) st = lora_error_set(err, LORA_E_OUT_OF_MEMORY, LORA_NO_OFFSET, "out of memory");
        else move_elems((const uint8_t *)f, (uint8_t *)moved, b, j, sizeof *f);
    }
    if (st == LORA_OK) st = encode(moved ? moved : f, (size_t)n, j, dst, err);
    lora_mem_free(x->alloc, f);
    lora_mem_free(x->alloc, moved);
    return st;
}

/* Produce one tensor and pass it to the GGUF writer. */
static lora_status emit(const gx_state *x, lora_gguf_writer *w, const gx_job *j, lora_error *err)
{
    lora_blob b;
    LORA_FORWARD_IF_ERROR(lora_reader_blob(x->r, j->blob, &b));
    if (b.numel > SIZE_MAX / 4)
        return lora_error_set(err, LORA_E_LIMIT_EXCEEDED, LORA_NO_OFFSET, "gguf: tensor '%s' too large", j->name);
    size_t bytes = (size_t)b.numel * elem_bytes(j->dtype);
    uint8_t *dst = lora_mem_alloc(x->alloc, bytes ? bytes : 1);
    if (!dst) return lora_error_set(err, LORA_E_OUT_OF_MEMORY, LORA_NO_OFFSET, "out of memory");
    lora_status st = b.dtype == j->dtype && j->factor == 1.0 ? make_raw(x, j, &b, dst, err)
                                                              : make_converted(x, j, &b, dst, err);
    if (st == LORA_OK) st = lora_gguf_writer_write_data(w, dst, bytes, err);
    lora_mem_free(x->alloc, dst);
    return st;
}

static lora_status emit_pair(const gx_state *x, lora_gguf_writer *w, const gx_pair *p, lora_error *err)
{
    char name[128];
    snprintf(name, sizeof name, "%s.lora_a", p->map.name);
    gx_job ja = {p->m.blob_a, p->map.role == LORA_GGUF_ROLE_EMBED, NULL, 1.0, p->dt_a, name};
    LORA_FORWARD_IF_ERROR(emit(x, w, &ja, err));
    uint64_t *rows = NULL, out = p->ne_b[1];
    if (lora_gguf_role_permutes(p->map.role)) {
        rows = lora_mem_calloc(x->alloc, (size_t)out, sizeof *rows);
        if (!rows) return lora_error_set(err, LORA_E_OUT_OF_MEMORY, LORA_NO_OFFSET, "out of memory");
    }
    lora_status st = rows ? lora_gguf_row_source(p->map.role, out, p->heads, p->m.name, rows, err) : LORA_OK;
    snprintf(name, sizeof name, "%s.lora_b", p->map.name);
    gx_job jb = {p->m.blob_b, 0, rows, p->factor, p->dt_b, name};
    if (st == LORA_OK) st = emit(x, w, &jb, err);
    lora_mem_free(x->alloc, rows);
    return st;
}

/* ---- the file -------------------------------------------------------------- */

static lora_status add_kvs(const gx_state *x, lora_gguf_writer *w)
{
    const char *name = meta_string(x->r, LORA_META_ADAPTER_NAME), *base = meta_string(x->r, LORA_META_BASE_MODEL);
    const char *arch = x->arch->name;
    LORA_FORWARD_IF_ERROR(lora_gguf_writer_add_str(w, "general.architecture", arch, strlen(arch)));
    LORA_FORWARD_IF_ERROR(lora_gguf_writer_add_str(w, "general.type", "adapter", 7));
    /* gguf-py names the file after the base model when nothing else names it */
    if (!name) name = base;
    if (name) LORA_FORWARD_IF_ERROR(lora_gguf_writer_add_str(w, "general.name", name, strlen(name)));
    LORA_FORWARD_IF_ERROR(lora_gguf_writer_add_str(w, "adapter.type", "lora", 4));
    LORA_FORWARD_IF_ERROR(lora_gguf_writer_add_f32(w, "adapter.lora.alpha", x->alpha));
    /* llama.cpp ignores these; a GGUF -> .lora import reads them to undo
     * the row orders without the base model's config. */
    if (x->hp.n_head) {
        char key[64];
        snprintf(key, sizeof key, "%s.attention.head_count", arch);
        LORA_FORWARD_IF_ERROR(lora_gguf_writer_add_u32(w, key, (uint32_t)x->hp.n_head));
        snprintf(key, sizeof key, "%s.attention.head_count_kv", arch);
        LORA_FORWARD_IF_ERROR(lora_gguf_writer_add_u32(w, key, (uint32_t)x->hp.n_head_kv));
    }
    if (base) LORA_FORWARD_IF_ERROR(lora_gguf_writer_add_str(w, "liblora.base_model", base, strlen(base)));
    const char **names = lora_mem_calloc(x->alloc, x->n_pairs, sizeof *names);
    if (!names) return LORA_E_OUT_OF_MEMORY;
    for (uint32_t i = 0; i < x->n_pairs; i++) names[i] = x->pairs[i].m.name;
    lora_status st = lora_gguf_writer_add_arr_str(w, "liblora.module_names", names, NULL, x->n_pairs);
    lora_mem_free(x->alloc, (void *)names);
    return st;
}

static lora_status add_infos(const gx_state *x, lora_gguf_writer *w, lora_error *err)
{
    for (uint32_t i = 0; i < x->n_pairs; i++) {
        const gx_pair *p = &x->pairs[i];
        char a[128], b[128];
        snprintf(a, sizeof a, "%s.lora_a", p->map.name);
        snprintf(b, sizeof b, "%s.lora_b", p->map.name);
        lora_status st = lora_gguf_writer_add_tensor(w, a, ggml_type_of(p->dt_a), 2, p->ne_a);
        if (st == LORA_OK) st = lora_gguf_writer_add_tensor(w, b, ggml_type_of(p->dt_b), 2, p->ne_b);
        if (st == LORA_E_DUPLICATE_NAME)
            return lora_error_set(err, st, LORA_NO_OFFSET, "gguf: module '%s' maps to '%s', like an earlier module",
                                  p->m.name, p->map.name);
        if (st != LORA_OK)
            return lora_error_set(err, st, LORA_NO_OFFSET, "gguf: tensor '%s': %s", a, lora_status_message(st));
    }
    return LORA_OK;
}

static lora_status afile_sink(void *ctx, const void *buf, size_t n, lora_error *err)
{
    return lora_afile_write(ctx, buf, n, err);
}

/* Parse the temp file back with the hardened reader before it replaces anything. */
static lora_status verify_temp(const gx_state *x, lora_afile *f, lora_error *err)
{
    LORA_FORWARD_IF_ERROR(lora_afile_flush(f, err));
    void *map = NULL;
    size_t size = 0;
    LORA_FORWARD_IF_ERROR(lora_io_map_file(lora_afile_temp_path(f), &map, &size, err));
    lora_gguf *g = NULL;
    lora_status st = lora_gguf_parse(map, size, NULL, x->alloc, &g, err);
    if (st == LORA_OK && lora_gguf_tensor_count(g) != 2 * (uint64_t)x->n_pairs)
        st = lora_error_set(err, LORA_E_IO, LORA_NO_OFFSET, "gguf: the written file does not read back");
    lora_gguf_free(g);
    lora_io_unmap_file(map, size);
    return st;
}

static lora_status write_file(const gx_state *x, lora_gguf_writer *w, const char *output,
                              const lora_write_options *wopts, const lora_io *io, lora_error *err)
{
    lora_afile *f = NULL;
    LORA_FORWARD_IF_ERROR(lora_afile_open(x->alloc, io, output, wopts, &f, err));
    lora_status st = lora_gguf_writer_begin(w, afile_sink, f, err);
    for (uint32_t i = 0; i < x->n_pairs && st == LORA_OK; i++) st = emit_pair(x, w, &x->pairs[i], err);
    if (st == LORA_OK) st = lora_gguf_writer_finish(w, err);
    if (st == LORA_OK) st = verify_temp(x, f, err);
    if (st != LORA_OK) {
        lora_afile_abort(f);
        return st;
    }
    return lora_afile_commit(f, err);
}

lora_status lora_export_gguf(const lora_reader *r, const char *output, const lora_convert_options *o,
                             const lora_write_options *wopts, lora_error *err)
{
    return lora_export_gguf_io(r, output, o, wopts, NULL, err);
}

lora_status lora_export_gguf_io(const lora_reader *r, const char *output, const lora_convert_options *o,
                                const lora_write_options *wopts, const lora_io *io, lora_error *err)
{
    lora_convert_options defaults = LORA_CONVERT_OPTIONS_INIT;
    if (!o) o = &defaults;
    if (!r || !output) return lora_error_set(err, LORA_E_INVALID_ARGUMENT, LORA_NO_OFFSET, "NULL argument");
    gx_state x;
    memset(&x, 0, sizeof x);
    x.r = r;
    x.o = o;
    x.alloc = &o->allocator;
    lora_status st = o->base_config ? lora_gguf_read_base_config(x.alloc, o->base_config, &x.hp, err) : LORA_OK;
    if (st == LORA_OK) st = resolve_arch(&x, err);
    if (st == LORA_OK) resolve_heads(&x);
    if (st == LORA_OK) st = plan(&x, err);
    if (st == LORA_OK) st = set_factors(&x, err);
    lora_gguf_writer *w = NULL;
    if (st == LORA_OK && lora_gguf_writer_create(x.alloc, &w) != LORA_OK)
        st = lora_error_set(err, LORA_E_OUT_OF_MEMORY, LORA_NO_OFFSET, "out of memory");
    if (st == LORA_OK) {
        st = add_kvs(&x, w);
        if (st != LORA_OK) lora_error_set(err, st, LORA_NO_OFFSET, "gguf: cannot add the metadata: %s",
                                          lora_status_message(st));
    }
    if (st == LORA_OK) st = add_infos(&x, w, err);
    if (st == LORA_OK) st = write_file(&x, w, output, wopts, io, err);
    lora_gguf_writer_free(w);
    lora_mem_free(x.alloc, x.pairs);
    return st;
}
