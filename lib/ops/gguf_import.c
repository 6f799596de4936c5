/*
 * gguf_import.c - llama.cpp GGUF adapter -> .lora, undoing what
 * convert_lora_to_gguf.py did: names back to Hugging Face modules, B's rows
 * back to the HF order, token_embd's A transposed back. The scale is
 * llama.cpp's: alpha / rank with the file's one alpha (ALPHA_OVER_RANK),
 * or 1 when alpha is 0 or absent (get_scale's rule; EXPLICIT 1).
 *
 * Accepted as llama.cpp's loader accepts (llama_adapter_lora_init_impl):
 * general.type "adapter", adapter.type "lora", tensors "<base>.lora_a" and
 * "<base>.lora_b" in pairs, "*_norm.weight" skipped (llama.cpp skips them
 * too). aLoRA files (adapter.alora.invocation_tokens) are refused: the
 * adapter applies only after the invocation tokens, which .lora cannot say.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "../io/gguf.h"
#include "../io/lfs_pointer.h"
#include "../io/map_file.h"
#include "../kernels/kernels.h"
#include "gguf_names.h"
#include "convert.h"

typedef struct {
    const lora_convert_options *o;
    const lora_allocator *alloc;
    lora_writer *w;
    const lora_gguf *g;
    const lora_gguf_arch *arch;
    uint64_t n_head, n_head_kv;
    float alpha;
    lora_gguf_array names;         /* liblora.module_names, when present */
    int has_names;
    uint64_t pair_index;
} gi_state;

static int str_is(lora_gguf_str s, const char *lit)
{
    return s.len == strlen(lit) && memcmp(s.ptr, lit, s.len) == 0;
}

/* A string value as a NUL-terminated copy in buf (truncated to fit, for messages). */
static const char *str_copy(lora_gguf_str s, char *buf, size_t cap)
{
    size_t n = s.len < cap - 1 ? (size_t)s.len : cap - 1;
    memcpy(buf, s.ptr, n);
    buf[n] = '\0';
    return buf;
}

/* ---- the file's header facts ------------------------------------------------ */

static lora_status check_kind(const lora_gguf *g, const char *path, lora_error *err)
{
    lora_gguf_str s;
    char buf[64];
    lora_status st = lora_gguf_get_str(g, "general.type", &s, err);
    if (st == LORA_E_NOT_FOUND || (st == LORA_OK && !str_is(s, "adapter")))
        return lora_error_set(err, LORA_E_UNKNOWN_FORMAT, LORA_NO_OFFSET,
                              "%s: a GGUF file whose general.type is %s%s%s, not 'adapter': a base model or other "
                              "GGUF, not a LoRA adapter", path, st == LORA_OK ? "'" : "",
                              st == LORA_OK ? str_copy(s, buf, sizeof buf) : "missing", st == LORA_OK ? "'" : "");
    LORA_FORWARD_IF_ERROR(st);
    st = lora_gguf_get_str(g, "adapter.type", &s, err);
    if (st == LORA_E_NOT_FOUND || (st == LORA_OK && !str_is(s, "lora")))
        return lora_error_set(err, LORA_E_UNSUPPORTED_ADAPTER, LORA_NO_OFFSET,
                              "%s: adapter.type is %s%s%s: only LoRA adapters convert (a control vector or other "
                              "adapter has no .lora form)", path, st == LORA_OK ? "'" : "",
                              st == LORA_OK ? str_copy(s, buf, sizeof buf) : "missing", st == LORA_OK ? "'" : "");
    LORA_FORWARD_IF_ERROR(st);
    if (lora_gguf_find_kv(g, "adapter.alora.invocation_tokens"))
        return lora_error_set(err, LORA_E_UNSUPPORTED_ADAPTER, LORA_NO_OFFSET,
                              "%s: an aLoRA (adapter.alora.invocation_tokens) is refused: it applies only after its "
                              "invocation tokens, which changes the math and has no .lora form", path);
    return LORA_OK;
}

static lora_status read_arch(gi_state *x, const char *path, lora_error *err)
{
    lora_gguf_str s;
    char buf[64];
    lora_status st = lora_gguf_get_str(x->g, "general.architecture", &s, err);
    if (st == LORA_E_NOT_FOUND)
        return lora_error_set(err, LORA_E_BAD_METADATA, LORA_NO_OFFSET, "%s: no general.architecture", path);
    LORA_FORWARD_IF_ERROR(st);
    if (s.len < sizeof buf && !memchr(s.ptr, 0, s.len)) x->arch = lora_gguf_arch_find(str_copy(s, buf, sizeof buf));
    if (!x->arch)
        return lora_error_set(err, LORA_E_UNSUPPORTED_ADAPTER, LORA_NO_OFFSET,
                              "%s: architecture '%s' has no Hugging Face name map (known: %s)", path,
                              str_copy(s, buf, sizeof buf), lora_gguf_arch_list());
    if (x->o->arch && lora_gguf_arch_find(x->o->arch) != x->arch)
        return lora_error_set(err, LORA_E_INVALID_ARGUMENT, LORA_NO_OFFSET,
                              "%s: the file is a '%s' adapter, not '%s' as --arch says", path, x->arch->name,
                              x->o->arch);
    return LORA_OK;
}

static lora_status read_alpha(gi_state *x, const char *path, lora_error *err)
{
    lora_status st = lora_gguf_get_f32(x->g, "adapter.lora.alpha", &x->alpha, err);
    if (st == LORA_E_NOT_FOUND) {
        x->alpha = 0.0f; /* llama.cpp reads a missing alpha as 0 */
        lora_error_clear(err);
        return LORA_OK;
    }
    LORA_FORWARD_IF_ERROR(st);
    if (!isfinite(x->alpha))
        return lora_error_set(err, LORA_E_BAD_ALPHA, LORA_NO_OFFSET, "%s: adapter.lora.alpha is %g", path,
                              (double)x->alpha);
    return LORA_OK;
}

/* "<arch>.attention.head_count(_kv)" from the file (our export writes
 * them), else the base config. 0 when neither says. */
static lora_status read_heads(gi_state *x, lora_error *err)
{
    char key[64];
    uint32_t v = 0;
    snprintf(key, sizeof key, "%s.attention.head_count", x->arch->name);
    lora_status st = lora_gguf_get_u32(x->g, key, &v, err);
    if (st != LORA_OK && st != LORA_E_NOT_FOUND) return st;
    x->n_head = st == LORA_OK ? v : 0;
    snprintf(key, sizeof key, "%s.attention.head_count_kv", x->arch->name);
    st = lora_gguf_get_u32(x->g, key, &v, err);
    if (st != LORA_OK && st != LORA_E_NOT_FOUND) return st;
    x->n_head_kv = st == LORA_OK ? v : x->n_head;
    lora_error_clear(err);
    if (!x->n_head && x->o->base_config) {
        lora_gguf_hparams hp;
        LORA_FORWARD_IF_ERROR(lora_gguf_read_base_config(x->alloc, x->o->base_config, &hp, err));
        x->n_head = hp.n_head;
        x->n_head_kv = hp.n_head_kv;
    }
    return LORA_OK;
}

static lora_status read_names(gi_state *x, const char *path, lora_error *err)
{
    if (!lora_gguf_find_kv(x->g, "liblora.module_names")) return LORA_OK;
    lora_status st = lora_gguf_get_array(x->g, "liblora.module_names", LORA_GGUF_TYPE_STRING, &x->names, err);
    if (st != LORA_OK)
        return lora_error_set(err, LORA_E_BAD_METADATA, LORA_NO_OFFSET,
                              "%s: liblora.module_names is not an array of strings", path);
    x->has_names = 1;
    return LORA_OK;
}

/* ---- one pair --------------------------------------------------------------- */

/* The module name: the one our export recorded (checked to map to this
 * tensor), else the canonical HF name. */
static lora_status module_name(gi_state *x, const char *base, char *name, size_t cap, lora_gguf_role *role,
                               lora_error *err)
{
    lora_gguf_mapped m;
    if (lora_gguf_name_to_hf(x->arch, base, &m) != LORA_OK)
        return lora_error_set(err, LORA_E_UNSUPPORTED_ADAPTER, LORA_NO_OFFSET,
                              "gguf: tensor '%s' has no Hugging Face module in architecture '%s'", base,
                              x->arch->name);
    *role = m.role;
    snprintf(name, cap, "%s", m.name);
    if (!x->has_names) return LORA_OK;
    lora_gguf_str s;
    lora_gguf_mapped back;
    if (x->pair_index >= x->names.count || lora_gguf_array_str(&x->names, x->pair_index, &s) != LORA_OK ||
        s.len == 0 || s.len >= cap || memchr(s.ptr, 0, s.len) || !lora_fmt_utf8_valid((const uint8_t *)s.ptr, s.len))
        return lora_error_set(err, LORA_E_BAD_METADATA, LORA_NO_OFFSET,
                              "gguf: liblora.module_names has no valid entry %llu for '%s'",
                              (unsigned long long)x->pair_index, base);
    str_copy(s, name, cap);
    if (lora_gguf_name_to_gguf(x->arch, name, &back) != LORA_OK || strcmp(back.name, base) != 0)
        return lora_error_set(err, LORA_E_BAD_METADATA, LORA_NO_OFFSET,
                              "gguf: liblora.module_names entry '%s' does not map to '%s'", name, base);
    return LORA_OK;
}

typedef struct {
    const lora_gguf_tensor *a, *b;
    lora_gguf_role role;
    char name[4096];
    uint64_t rank, in, out;  /* embedding: in = num, out = dim */
} gi_pair;

static lora_status check_shapes(gi_pair *p, lora_error *err)
{
    const lora_gguf_tensor *a = p->a, *b = p->b;
    if (a->n_dims != 2 || b->n_dims != 2)
        return lora_error_set(err, LORA_E_BAD_SHAPE, a->info_offset, "gguf: '%s': lora_a and lora_b must be 2-D",
                              a->name);
    /* token_embd: A is {r, num} (transposed), B {r, dim}; otherwise A {in, r}, B {r, out}. */
    int embed = p->role == LORA_GGUF_ROLE_EMBED;
    p->rank = b->ne[0];
    p->in = embed ? a->ne[1] : a->ne[0];
    p->out = b->ne[1];
    uint64_t a_rank = embed ? a->ne[0] : a->ne[1];
    if (a_rank != p->rank)
        return lora_error_set(err, LORA_E_BAD_SHAPE, a->info_offset,
                              "gguf: '%s': lora_a rank %llu != lora_b rank %llu%s", a->name,
                              (unsigned long long)a_rank, (unsigned long long)p->rank,
                              embed ? "" : " (lora_a must be stored transposed, ne = {in, r})");
    if (!p->rank || !p->in || !p->out || p->rank > UINT32_MAX)
        return lora_error_set(err, LORA_E_BAD_SHAPE, a->info_offset, "gguf: '%s': empty or oversized pair", a->name);
    return LORA_OK;
}

/* The tensor's values in a dtype the writer takes: F32/F16/BF16 bytes as
 * stored, Q8_0/Q4_0 dequantized to F32 (*owned set). */
static lora_status tensor_source(const gi_state *x, const lora_gguf_tensor *t, lora_dtype *dt, const uint8_t **data,
                                 uint8_t **owned, lora_error *err)
{
    *owned = NULL;
    *data = t->data;
    switch (t->type) {
    case LORA_GGML_F32: *dt = LORA_DTYPE_F32; return LORA_OK;
    case LORA_GGML_F16: *dt = LORA_DTYPE_F16; return LORA_OK;
    case LORA_GGML_BF16: *dt = LORA_DTYPE_BF16; return LORA_OK;
    case LORA_GGML_Q8_0:
    case LORA_GGML_Q4_0: break;
    default:
        return lora_error_set(err, LORA_E_UNSUPPORTED_DTYPE, t->info_offset,
                              "gguf: tensor '%s' is %s; F32, F16, BF16, Q8_0 and Q4_0 adapters convert", t->name,
                              lora_ggml_type_name(t->type));
    }
    uint64_t numel = t->ne[0] * t->ne[1], nblocks = numel / 32; /* the parser checked the product */
    if (numel > SIZE_MAX / sizeof(float))
        return lora_error_set(err, LORA_E_LIMIT_EXCEEDED, t->info_offset, "gguf: tensor '%s' too large", t->name);
    float *f = lora_mem_alloc(x->alloc, (size_t)numel * sizeof *f);
    if (!f) return lora_error_set(err, LORA_E_OUT_OF_MEMORY, LORA_NO_OFFSET, "out of memory");
    const lora_kernels *k = lora_kernels_get();
    (t->type == LORA_GGML_Q8_0 ? k->q8_0_to_f32 : k->q4_0_to_f32)(t->data, f, (size_t)nblocks);
    *dt = LORA_DTYPE_F32;
    *data = (const uint8_t *)f;
    *owned = (uint8_t *)f;
    return LORA_OK;
}

static size_t dtype_bytes(lora_dtype d) { return d == LORA_DTYPE_F32 ? 4 : 2; }

/* B back to the HF row order: HF row src[g] <- GGUF row g. */
static lora_status unpermute_rows(const gi_state *x, const gi_pair *p, const uint8_t *data, size_t es,
                                  uint8_t **out, lora_error *err)
{
    uint64_t heads = p->role == LORA_GGUF_ROLE_ROPE_K ? x->n_head_kv : x->n_head;
    if (!heads)
        return lora_error_set(err, LORA_E_INVALID_ARGUMENT, LORA_NO_OFFSET,
                              "gguf: '%s': the file has no %s.attention.head_count, needed to undo the %s row order: "
                              "pass --base-config config.json", p->b->name, x->arch->name,
                              p->role == LORA_GGUF_ROLE_NEOX_QKV ? "gptneox query_key_value" : "llama-family q/k");
    uint64_t *src = lora_mem_calloc(x->alloc, (size_t)p->out, sizeof *src);
    uint8_t *dst = lora_mem_alloc(x->alloc, (size_t)(p->out * p->rank) * es);
    lora_status st = src && dst ? LORA_OK : lora_error_set(err, LORA_E_OUT_OF_MEMORY, LORA_NO_OFFSET, "out of memory");
    if (st == LORA_OK) st = lora_gguf_row_source(p->role, p->out, heads, p->name, src, err);
    size_t row = (size_t)p->rank * es;
    for (uint64_t g = 0; st == LORA_OK && g < p->out; g++) memcpy(dst + src[g] * row, data + g * row, row);
    lora_mem_free(x->alloc, src);
    if (st != LORA_OK) {
        lora_mem_free(x->alloc, dst);
        return st;
    }
    *out = dst;
    return LORA_OK;
}

/* Add one side's blob. `transpose`: A of token_embd; `unpermute`: B. */
static lora_status add_side(const gi_state *x, const gi_pair *p, const lora_gguf_tensor *t, int transpose,
                            int unpermute, uint32_t *index, lora_error *err)
{
    lora_dtype dt = LORA_DTYPE_F32;
    const uint8_t *data = NULL;
    uint8_t *owned = NULL, *moved = NULL;
    LORA_FORWARD_IF_ERROR(tensor_source(x, t, &dt, &data, &owned, err));
    lora_status st = LORA_OK;
    if (unpermute) {
        st = unpermute_rows(x, p, data, dtype_bytes(dt), &moved, err);
        if (st == LORA_OK) data = moved;
    }
    /* Row-major shape of the stored tensor: ne reversed. */
    uint64_t shape[2] = {t->ne[1], t->ne[0]};
    size_t size = (size_t)(shape[0] * shape[1]) * dtype_bytes(dt);
    if (st == LORA_OK) st = lora_ops_add_blob(x->w, x->o, dt, 2, shape, data, size, transpose, index, err);
    if (st != LORA_OK && err) {
        char why[LORA_ERROR_DETAIL_SIZE];
        snprintf(why, sizeof why, "%s", err->detail[0] ? err->detail : lora_status_message(st));
        lora_error_set(err, st, t->info_offset, "gguf: tensor '%s': %s", t->name, why);
    }
    lora_mem_free(x->alloc, owned);
    lora_mem_free(x->alloc, moved);
    return st;
}

static lora_status add_pair(gi_state *x, gi_pair *p, lora_error *err)
{
    LORA_FORWARD_IF_ERROR(check_shapes(p, err));
    int embed = p->role == LORA_GGUF_ROLE_EMBED, fif = p->role == LORA_GGUF_ROLE_CONV1D;
    lora_module_desc d;
    memset(&d, 0, sizeof d);
    d.name = p->name;
    d.kind = embed ? LORA_KIND_EMBEDDING : LORA_KIND_LINEAR;
    d.scaling = x->alpha != 0.0f ? LORA_SCALING_ALPHA_OVER_RANK : LORA_SCALING_EXPLICIT;
    d.alpha = x->alpha;
    d.scale = 1.0f;
    d.flags = fif ? LORA_MODULE_FAN_IN_FAN_OUT : 0;
    d.rank = (uint32_t)p->rank;
    d.base_ndim = 2;
    /* linear [out, in] (GPT-2 Conv1D [in, out]); embedding [num, dim] */
    d.base_shape[0] = fif ? p->in : embed ? p->in : p->out;
    d.base_shape[1] = fif ? p->out : embed ? p->out : p->in;
    d.blob_magnitude = d.blob_bias = LORA_NO_BLOB;
    LORA_FORWARD_IF_ERROR(add_side(x, p, p->a, embed, 0, &d.blob_a, err));
    LORA_FORWARD_IF_ERROR(add_side(x, p, p->b, 0, lora_gguf_role_permutes(p->role), &d.blob_b, err));
    lora_status st = lora_writer_add_module(x->w, &d, NULL);
    if (st != LORA_OK)
        return lora_error_set(err, st, p->a->info_offset, "gguf: module '%s': %s", p->name, lora_status_message(st));
    return LORA_OK;
}

/* ---- the tensors ------------------------------------------------------------ */

static int has_suffix(const char *s, const char *suffix, size_t *stem)
{
    size_t n = strlen(s), k = strlen(suffix);
    if (n < k || strcmp(s + n - k, suffix) != 0) return 0;
    *stem = n - k;
    return 1;
}

static const lora_gguf_tensor *partner(const gi_state *x, const char *name, size_t stem, const char *suffix)
{
    char buf[512];
    if ((size_t)snprintf(buf, sizeof buf, "%.*s%s", (int)stem, name, suffix) >= sizeof buf) return NULL;
    return lora_gguf_find_tensor(x->g, buf);
}

static lora_status import_tensors(gi_state *x, gi_pair *p, lora_error *err)
{
    for (uint64_t i = 0; i < lora_gguf_tensor_count(x->g); i++) {
        const lora_gguf_tensor *t = lora_gguf_tensor_at(x->g, i);
        size_t stem;
        if (has_suffix(t->name, ".lora_b", &stem)) {
            if (!partner(x, t->name, stem, ".lora_a"))
                return lora_error_set(err, LORA_E_BAD_SHAPE, t->info_offset,
                                      "gguf: '%s' has no matching .lora_a (unpaired tensor)", t->name);
            continue;
        }
        if (has_suffix(t->name, "_norm.weight", &stem)) {
            lora_ops_warn(x->o, "gguf: skipped '%s': a norm tensor, which llama.cpp skips too", t->name);
            continue;
        }
        if (!has_suffix(t->name, ".lora_a", &stem))
            return lora_error_set(err, LORA_E_UNSUPPORTED_ADAPTER, t->info_offset,
                                  "gguf: tensor '%s' is neither .lora_a nor .lora_b", t->name);
        p->a = t;
        p->b = partner(x, t->name, stem, ".lora_b");
        if (!p->b)
            return lora_error_set(err, LORA_E_BAD_SHAPE, t->info_offset,
                                  "gguf: '%s' has no matching .lora_b (unpaired tensor)", t->name);
        char base[512];
        snprintf(base, sizeof base, "%.*s", (int)stem, t->name);
        LORA_FORWARD_IF_ERROR(module_name(x, base, p->name, sizeof p->name, &p->role, err));
        LORA_FORWARD_IF_ERROR(add_pair(x, p, err));
        x->pair_index++;
    }
    if (x->has_names && x->names.count != x->pair_index)
        return lora_error_set(err, LORA_E_BAD_METADATA, LORA_NO_OFFSET,
                              "gguf: liblora.module_names has %llu entries for %llu pairs",
                              (unsigned long long)x->names.count, (unsigned long long)x->pair_index);
    return LORA_OK;
}

/* ---- metadata ------------------------------------------------------------------ */

static lora_status set_meta_str(gi_state *x, const char *key, const char *s, size_t len)
{
    return lora_writer_set_string(x->w, key, s, len);
}

/* A GGUF string value kept only when it is a valid .lora string. */
static lora_status copy_str_kv(gi_state *x, const char *gguf_key, const char *meta_key)
{
    lora_gguf_str s;
    if (lora_gguf_get_str(x->g, gguf_key, &s, NULL) != LORA_OK || s.len == 0 || s.len > 4096 ||
        memchr(s.ptr, 0, s.len) || !lora_fmt_utf8_valid((const uint8_t *)s.ptr, s.len))
        return LORA_OK;
    return set_meta_str(x, meta_key, s.ptr, s.len);
}

static lora_status set_metadata(gi_state *x, lora_error *err)
{
    lora_status st = set_meta_str(x, LORA_META_ARCHITECTURE, x->arch->name, strlen(x->arch->name));
    if (st == LORA_OK) st = set_meta_str(x, LORA_META_SOURCE_FORMAT, "gguf", 4);
    /* Our export falls back to the base model for general.name: that is not
     * an adapter name. */
    lora_gguf_str name, base;
    int named_after_base = lora_gguf_get_str(x->g, "general.name", &name, NULL) == LORA_OK &&
                           lora_gguf_get_str(x->g, "liblora.base_model", &base, NULL) == LORA_OK &&
                           name.len == base.len && memcmp(name.ptr, base.ptr, name.len) == 0;
    if (st == LORA_OK && !named_after_base) st = copy_str_kv(x, "general.name", LORA_META_ADAPTER_NAME);
    if (st == LORA_OK) st = copy_str_kv(x, "liblora.base_model", LORA_META_BASE_MODEL);
    if (st == LORA_OK && x->n_head) st = lora_writer_set_int(x->w, LORA_GGUF_META_HEAD_COUNT, (int64_t)x->n_head);
    if (st == LORA_OK && x->n_head_kv)
        st = lora_writer_set_int(x->w, LORA_GGUF_META_HEAD_COUNT_KV, (int64_t)x->n_head_kv);
    if (st != LORA_OK)
        return lora_error_set(err, st, LORA_NO_OFFSET, "gguf: cannot set metadata: %s", lora_status_message(st));
    return LORA_OK;
}

static lora_status import_parsed(gi_state *x, const char *path, lora_error *err)
{
    LORA_FORWARD_IF_ERROR(check_kind(x->g, path, err));
    LORA_FORWARD_IF_ERROR(read_arch(x, path, err));
    LORA_FORWARD_IF_ERROR(read_alpha(x, path, err));
    LORA_FORWARD_IF_ERROR(read_heads(x, err));
    LORA_FORWARD_IF_ERROR(read_names(x, path, err));
    gi_pair *p = lora_mem_alloc(x->alloc, sizeof *p); /* holds a 4 KiB name: not on the stack */
    if (!p) return lora_error_set(err, LORA_E_OUT_OF_MEMORY, LORA_NO_OFFSET, "out of memory");
    lora_status st = import_tensors(x, p, err);
    lora_mem_free(x->alloc, p);
    if (st == LORA_OK && x->pair_index == 0)
        st = lora_error_set(err, LORA_E_UNSUPPORTED_ADAPTER, LORA_NO_OFFSET, "%s: no lora_a/lora_b pair", path);
    if (st == LORA_OK) st = set_metadata(x, err);
    return st;
}

lora_status lora_import_gguf(const char *input, const lora_convert_options *o, lora_writer *w, lora_error *err)
{
    lora_convert_options defaults = LORA_CONVERT_OPTIONS_INIT;
    if (!o) o = &defaults;
    if (!input || !w) return lora_error_set(err, LORA_E_INVALID_ARGUMENT, LORA_NO_OFFSET, "NULL argument");
    void *map = NULL;
    size_t size = 0;
    LORA_FORWARD_IF_ERROR(lora_io_map_file(input, &map, &size, err));
    gi_state x;
    memset(&x, 0, sizeof x);
    x.o = o;
    x.alloc = &o->allocator;
    x.w = w;
    lora_gguf *g = NULL;
    lora_status st = lora_lfs_pointer_check(map, size, input, err);
    if (st == LORA_OK) st = lora_gguf_parse(map, size, NULL, x.alloc, &g, err);
    if (st == LORA_OK) {
        x.g = g;
        st = import_parsed(&x, input, err);
    }
    lora_gguf_free(g);
    lora_io_unmap_file(map, size);
    return st;
}
