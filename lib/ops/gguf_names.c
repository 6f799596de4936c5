/* HF module <-> GGUF tensor names per architecture, and the converter's row orders. */
#include <stdio.h>
#include <string.h>
#include <jansson.h>
#include "adapter_dir.h"
#include "gguf_names.h"

#define M(hf, gguf, role) {hf, gguf, LORA_GGUF_ROLE_##role, NULL}
#define LAYER "model.layers.#."

/* Llama and Mistral: convert_hf_to_gguf.py LlamaModel permutes the rows of
 * q_proj (n_head groups) and k_proj (n_head_kv groups) for llama.cpp's RoPE. */
static const lora_gguf_map llama_maps[] = {
    M("model.embed_tokens", "token_embd", EMBED),
    M("lm_head", "output", PLAIN),
    M(LAYER "self_attn.q_proj", "blk.#.attn_q", ROPE_Q),
    M(LAYER "self_attn.k_proj", "blk.#.attn_k", ROPE_K),
    M(LAYER "self_attn.v_proj", "blk.#.attn_v", PLAIN),
    M(LAYER "self_attn.o_proj", "blk.#.attn_output", PLAIN),
    M(LAYER "mlp.gate_proj", "blk.#.ffn_gate", PLAIN),
    M(LAYER "mlp.up_proj", "blk.#.ffn_up", PLAIN),
    M(LAYER "mlp.down_proj", "blk.#.ffn_down", PLAIN),
};

/* Qwen2 uses NEOX-style RoPE in llama.cpp: Qwen2Model does not permute. */
static const lora_gguf_map qwen2_maps[] = {
    M("model.embed_tokens", "token_embd", EMBED),
    M("lm_head", "output", PLAIN),
    M(LAYER "self_attn.q_proj", "blk.#.attn_q", PLAIN),
    M(LAYER "self_attn.k_proj", "blk.#.attn_k", PLAIN),
    M(LAYER "self_attn.v_proj", "blk.#.attn_v", PLAIN),
    M(LAYER "self_attn.o_proj", "blk.#.attn_output", PLAIN),
    M(LAYER "mlp.gate_proj", "blk.#.ffn_gate", PLAIN),
    M(LAYER "mlp.up_proj", "blk.#.ffn_up", PLAIN),
    M(LAYER "mlp.down_proj", "blk.#.ffn_down", PLAIN),
};

/* Gemma, Gemma 2 and Gemma 3 (text): no permutation (their norm.weight + 1
 * does not touch LoRA targets). The converter drops lm_head because the
 * model ties it to token_embd, and convert_lora_to_gguf.py then refuses a
 * LoRA on it (llama.cpp#9065). */
static const lora_gguf_map gemma_maps[] = {
    M("model.embed_tokens", "token_embd", EMBED),
    {"lm_head", NULL, LORA_GGUF_ROLE_REFUSED,
     "gemma ties lm_head to token_embd, so the GGUF model has no output tensor for it (llama.cpp#9065)"},
    M(LAYER "self_attn.q_proj", "blk.#.attn_q", PLAIN),
    M(LAYER "self_attn.k_proj", "blk.#.attn_k", PLAIN),
    M(LAYER "self_attn.v_proj", "blk.#.attn_v", PLAIN),
    M(LAYER "self_attn.o_proj", "blk.#.attn_output", PLAIN),
    M(LAYER "mlp.gate_proj", "blk.#.ffn_gate", PLAIN),
    M(LAYER "mlp.up_proj", "blk.#.ffn_up", PLAIN),
    M(LAYER "mlp.down_proj", "blk.#.ffn_down", PLAIN),
};

/* Phi-3: fused QKV and gate|up projections, kept fused by llama.cpp. */
static const lora_gguf_map phi3_maps[] = {
    M("model.embed_tokens", "token_embd", EMBED),
    M("lm_head", "output", PLAIN),
    M(LAYER "self_attn.qkv_proj", "blk.#.attn_qkv", PLAIN),
    M(LAYER "self_attn.o_proj", "blk.#.attn_output", PLAIN),
    M(LAYER "mlp.gate_up_proj", "blk.#.ffn_up", PLAIN),
    M(LAYER "mlp.down_proj", "blk.#.ffn_down", PLAIN),
};

/* GPT-2: GPT2Model transposes the Conv1D weights to [out, in]. The LoRA
 * pair needs no change for that: PEFT's fan_in_fan_out only flips the base
 * weight, B @ A is [out, in] already, which is GGUF's orientation. (The
 * LoraTorchTensor proxy of convert_lora_to_gguf.py would turn the transpose
 * into A' = B^T, B' = A^T, i.e. the transposed delta, which llama.cpp then
 * rejects for c_attn or applies transposed for the square c_proj.) */
static const lora_gguf_map gpt2_maps[] = {
    M("transformer.wte", "token_embd", EMBED),
    {"transformer.wpe", NULL, LORA_GGUF_ROLE_REFUSED,
     "llama.cpp applies an embedding LoRA only to token_embd; position_embd has no LoRA path"},
    M("lm_head", "output", PLAIN),
    M("transformer.h.#.attn.c_attn", "blk.#.attn_qkv", CONV1D),
    M("transformer.h.#.attn.c_proj", "blk.#.attn_output", CONV1D),
    M("transformer.h.#.mlp.c_fc", "blk.#.ffn_up", CONV1D),
    M("transformer.h.#.mlp.c_proj", "blk.#.ffn_down", CONV1D),
};

/* GPT-NeoX: GPTNeoXModel regroups the fused query_key_value rows. */
static const lora_gguf_map neox_maps[] = {
    M("gpt_neox.embed_in", "token_embd", EMBED),
    M("embed_out", "output", PLAIN),
    M("gpt_neox.layers.#.attention.query_key_value", "blk.#.attn_qkv", NEOX_QKV),
    M("gpt_neox.layers.#.attention.dense", "blk.#.attn_output", PLAIN),
    M("gpt_neox.layers.#.mlp.dense_h_to_4h", "blk.#.ffn_up", PLAIN),
    M("gpt_neox.layers.#.mlp.dense_4h_to_h", "blk.#.ffn_down", PLAIN),
};

#define N(a) (sizeof a / sizeof a[0])
static const lora_gguf_arch archs[] = {
    {"llama", "model.", llama_maps, N(llama_maps)},
    {"qwen2", "model.", qwen2_maps, N(qwen2_maps)},
    {"gemma", "model.", gemma_maps, N(gemma_maps)},
    {"gemma2", "model.", gemma_maps, N(gemma_maps)},
    {"gemma3", "model.", gemma_maps, N(gemma_maps)},
    {"phi3", "model.", phi3_maps, N(phi3_maps)},
    {"gpt2", "transformer.", gpt2_maps, N(gpt2_maps)},
    {"gptneox", "gpt_neox.", neox_maps, N(neox_maps)},
};

/* Hugging Face model_type values whose GGUF architecture has another name. */
static const struct {
    const char *model_type, *arch;
} aliases[] = {{"mistral", "llama"}, {"gemma3_text", "gemma3"}, {"gpt_neox", "gptneox"}};

const lora_gguf_arch *lora_gguf_arch_find(const char *name)
{
    if (!name) return NULL;
    for (size_t i = 0; i < N(aliases); i++)
        if (strcmp(name, aliases[i].model_type) == 0) name = aliases[i].arch;
    for (size_t i = 0; i < N(archs); i++)
        if (strcmp(name, archs[i].name) == 0) return &archs[i];
    return NULL;
}

const char *lora_gguf_arch_list(void)
{
    return "llama (mistral), qwen2, gemma, gemma2, gemma3, phi3, gpt2, gptneox";
}

/* '#' matches a layer number written canonically (no leading zero, at most
 * 9 digits), so that mapping a name there and back gives it unchanged. */
static int pattern_match(const char *pat, const char *s, uint32_t *layer)
{
    for (; *pat; pat++) {
        if (*pat != '#') {
            if (*s++ != *pat) return 0;
            continue;
        }
        if (*s < '0' || *s > '9' || (s[0] == '0' && s[1] >= '0' && s[1] <= '9')) return 0;
        uint32_t v = 0;
        int digits = 0;
        for (; *s >= '0' && *s <= '9'; s++, digits++) {
            if (digits == 9) return 0;
            v = v * 10 + (uint32_t)(*s - '0');
        }
        *layer = v;
    }
    return *s == '\0';
}

static int pattern_format(const char *pat, uint32_t layer, const char *suffix, char *out, size_t cap)
{
    size_t n = 0;
    for (; *pat; pat++) {
        int k = *pat == '#' ? snprintf(out + n, cap - n, "%u", layer) : snprintf(out + n, cap - n, "%c", *pat);
        if (k < 0 || (size_t)k >= cap - n) return 0;
        n += (size_t)k;
    }
    int k = snprintf(out + n, cap - n, "%s", suffix);
    return k >= 0 && (size_t)k < cap - n;
}

static const lora_gguf_map *find_hf(const lora_gguf_arch *a, const char *name, uint32_t *layer)
{
    for (size_t i = 0; i < a->map_count; i++)
        if (pattern_match(a->maps[i].hf, name, layer)) return &a->maps[i];
    return NULL;
}

static const char *strip_prefix(const char *s, const char *prefix)
{
    size_t n = strlen(prefix);
    return strncmp(s, prefix, n) == 0 ? s + n : NULL;
}

lora_status lora_gguf_name_to_gguf(const lora_gguf_arch *a, const char *module, lora_gguf_mapped *out)
{
    if (!a || !module || !out) return LORA_E_INVALID_ARGUMENT;
    memset(out, 0, sizeof *out);
    char buf[256];
    const char *s = module, *rest;
    if ((rest = strip_prefix(s, "base_model.model."))) s = rest;
    /* convert_lora_to_gguf.py's LoraModel.modify_tensors: multimodal wrappers. */
    if ((rest = strip_prefix(s, "model.language_model."))) {
        if ((size_t)snprintf(buf, sizeof buf, "model.%s", rest) >= sizeof buf) return LORA_E_NOT_FOUND;
        s = buf;
    } else if ((rest = strip_prefix(s, "language_model."))) {
        s = rest;
    }
    uint32_t layer = 0;
    const lora_gguf_map *m = find_hf(a, s, &layer);
    if (!m && !strip_prefix(s, a->bare_prefix)) {
        char pre[256];
        if ((size_t)snprintf(pre, sizeof pre, "%s%s", a->bare_prefix, s) < sizeof pre) m = find_hf(a, pre, &layer);
    }
    if (!m) return LORA_E_NOT_FOUND;
    out->role = m->role;
    if (m->role == LORA_GGUF_ROLE_REFUSED) {
        out->reason = m->reason;
        return LORA_OK;
    }
    return pattern_format(m->gguf, layer, ".weight", out->name, sizeof out->name) ? LORA_OK : LORA_E_NOT_FOUND;
}

lora_status lora_gguf_name_to_hf(const lora_gguf_arch *a, const char *tensor, lora_gguf_mapped *out)
{
    if (!a || !tensor || !out) return LORA_E_INVALID_ARGUMENT;
    memset(out, 0, sizeof *out);
    size_t len = strlen(tensor);
    char stem[128];
    if (len <= 7 || len - 7 >= sizeof stem || strcmp(tensor + len - 7, ".weight") != 0) return LORA_E_NOT_FOUND;
    memcpy(stem, tensor, len - 7);
    stem[len - 7] = '\0';
    for (size_t i = 0; i < a->map_count; i++) {
        const lora_gguf_map *m = &a->maps[i];
        uint32_t layer = 0;
        if (!m->gguf || !pattern_match(m->gguf, stem, &layer)) continue;
        out->role = m->role;
        return pattern_format(m->hf, layer, "", out->name, sizeof out->name) ? LORA_OK : LORA_E_NOT_FOUND;
    }
    return LORA_E_NOT_FOUND;
}

int lora_gguf_role_permutes(lora_gguf_role role)
{
    return role == LORA_GGUF_ROLE_ROPE_Q || role == LORA_GGUF_ROLE_ROPE_K || role == LORA_GGUF_ROLE_NEOX_QKV;
}

/* LlamaModel.permute: w.reshape(n, 2, rows/n/2, r).swapaxes(1, 2): inside
 * each head, the two halves of the rotary pairs are interleaved. GGUF row
 * h*hd + 2t + i comes from HF row h*hd + i*hd/2 + t. */
static void rope_source(uint64_t rows, uint64_t heads, uint64_t *src)
{
    uint64_t hd = rows / heads, half = hd / 2;
    for (uint64_t g = 0; g < rows; g++) {
        uint64_t h = g / hd, w = g % hd;
        src[g] = h * hd + (w % 2) * half + w / 2;
    }
}

/* GPTNeoXModel: reshape(n, 3, E/n, in), then cat of [:, 0], [:, 1], [:, 2].
 * GGUF row j*E + h*hd + d comes from HF row (3h + j)*hd + d. */
static void neox_source(uint64_t rows, uint64_t heads, uint64_t *src)
{
    uint64_t e = rows / 3, hd = e / heads;
    for (uint64_t g = 0; g < rows; g++) {
        uint64_t j = g / e, w = g % e;
        src[g] = (3 * (w / hd) + j) * hd + w % hd;
    }
}

lora_status lora_gguf_row_source(lora_gguf_role role, uint64_t rows, uint64_t heads, const char *module,
                                 uint64_t *src, lora_error *err)
{
    if (role == LORA_GGUF_ROLE_ROPE_Q || role == LORA_GGUF_ROLE_ROPE_K) {
        if (heads == 0 || rows == 0 || rows % heads != 0 || (rows / heads) % 2 != 0)
            return lora_error_set(err, LORA_E_BAD_SHAPE, LORA_NO_OFFSET,
                                  "gguf: module '%s': %llu rows do not split into %llu heads of an even size "
                                  "(wrong head count?)", module, (unsigned long long)rows, (unsigned long long)heads);
        rope_source(rows, heads, src);
        return LORA_OK;
    }
    if (role == LORA_GGUF_ROLE_NEOX_QKV) {
        if (heads == 0 || rows == 0 || rows % 3 != 0 || (rows / 3) % heads != 0)
            return lora_error_set(err, LORA_E_BAD_SHAPE, LORA_NO_OFFSET,
                                  "gguf: module '%s': %llu rows are not 3 x %llu heads (wrong head count?)", module,
                                  (unsigned long long)rows, (unsigned long long)heads);
        neox_source(rows, heads, src);
        return LORA_OK;
    }
    for (uint64_t g = 0; g < rows; g++) src[g] = g;
    return LORA_OK;
}

/* ---- config.json -------------------------------------------------------- */

/* The first of `keys` the object has, as a positive count; 0 if none. */
static lora_status config_count(const json_t *obj, const char *const *keys, size_t n, const char *path,
                                uint64_t *out, lora_error *err)
{
    *out = 0;
    for (size_t i = 0; i < n; i++) {
        const json_t *v = json_object_get(obj, keys[i]);
        if (!v || json_is_null(v)) continue;
        if (!json_is_integer(v) || json_integer_value(v) <= 0 || json_integer_value(v) >= ((json_int_t)1 << 31))
            return lora_error_set(err, LORA_E_BAD_JSON, LORA_NO_OFFSET,
                                  "%s: '%s' is not a positive integer count", path, keys[i]);
        *out = (uint64_t)json_integer_value(v);
        return LORA_OK;
    }
    return LORA_OK;
}

static lora_status config_facts(const json_t *root, const char *path, lora_gguf_hparams *out, lora_error *err)
{
    static const char *const head_keys[] = {"num_attention_heads", "n_head", "n_heads"};
    static const char *const kv_keys[] = {"num_key_value_heads", "n_kv_heads"};
    static const char *const hidden_keys[] = {"hidden_size", "n_embd"};
    const json_t *mt = json_object_get(root, "model_type");
    const json_t *text = json_object_get(root, "text_config");
    if (!json_is_object(text)) text = root;
    if (!json_is_string(mt)) mt = json_object_get(text, "model_type");
    if (json_is_string(mt) && json_string_length(mt) < sizeof out->model_type)
        memcpy(out->model_type, json_string_value(mt), json_string_length(mt) + 1);
    LORA_FORWARD_IF_ERROR(config_count(text, head_keys, N(head_keys), path, &out->n_head, err));
    LORA_FORWARD_IF_ERROR(config_count(text, kv_keys, N(kv_keys), path, &out->n_head_kv, err));
    LORA_FORWARD_IF_ERROR(config_count(text, hidden_keys, N(hidden_keys), path, &out->hidden, err));
    if (!out->n_head_kv) out->n_head_kv = out->n_head;
    return LORA_OK;
}

lora_status lora_gguf_read_base_config(const lora_allocator *a, const char *path, lora_gguf_hparams *out,
                                       lora_error *err)
{
    memset(out, 0, sizeof *out);
    uint8_t *text = NULL;
    size_t size = 0;
    LORA_FORWARD_IF_ERROR(lora_adir_read_config(a, path, path, &text, &size, err));
    json_error_t je;
    json_t *root = json_loadb((const char *)text, size, JSON_REJECT_DUPLICATES, &je);
    lora_mem_free(a, text);
    if (!root)
        return lora_error_set(err, LORA_E_BAD_JSON, LORA_NO_OFFSET, "%s: line %d: %s", path, je.line, je.text);
    lora_status st = json_is_object(root)
                         ? config_facts(root, path, out, err)
                         : lora_error_set(err, LORA_E_BAD_JSON, LORA_NO_OFFSET, "%s: not a JSON object", path);
    json_decref(root);
    return st;
}
