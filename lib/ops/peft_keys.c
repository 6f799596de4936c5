/*
 * peft_keys.c - the tensor key layouts of PEFT (peft:src/peft/tuners/lora/
 * layer.py; the saver strips the adapter name, older files keep
 * ".default") and of older diffusers files.
 */
#include <string.h>
#include "peft_import.h"

typedef struct {
    const char *suffix;
    lora_pk_role role;
} suffix_rule;

static const suffix_rule peft_rules[] = {
    {".lora_A.weight", LORA_PK_A},
    {".lora_A.default.weight", LORA_PK_A},
    {".lora_B.weight", LORA_PK_B},
    {".lora_B.default.weight", LORA_PK_B},
    {".lora_B.bias", LORA_PK_BIAS},
    {".lora_B.default.bias", LORA_PK_BIAS},
    {".lora_embedding_A", LORA_PK_EMB_A},
    {".lora_embedding_A.default", LORA_PK_EMB_A},
    {".lora_embedding_B", LORA_PK_EMB_B},
    {".lora_embedding_B.default", LORA_PK_EMB_B},
    /* The magnitude is a module in memory (".lora_magnitude_vector.default.weight");
     * the saver drops ".weight", older versions kept it. */
    {".lora_magnitude_vector", LORA_PK_MAG},
    {".lora_magnitude_vector.weight", LORA_PK_MAG},
    {".lora_magnitude_vector.default", LORA_PK_MAG},
    {".lora_magnitude_vector.default.weight", LORA_PK_MAG},
};

static const suffix_rule legacy_rules[] = {
    {".lora.down.weight", LORA_PK_A},
    {".lora.up.weight", LORA_PK_B},
    {".lora_linear_layer.down.weight", LORA_PK_A},
    {".lora_linear_layer.up.weight", LORA_PK_B},
    {"_lora.down.weight", LORA_PK_A}, /* attention processors: <block>.processor.to_q_lora.down.weight */
    {"_lora.up.weight", LORA_PK_B},
    {".alpha", LORA_PK_ALPHA},
};

static int ends_with(const char *s, size_t len, const char *suf, size_t *stem)
{
    size_t l = strlen(suf);
    if (len <= l || memcmp(s + len - l, suf, l) != 0) return 0;
    *stem = len - l;
    return 1;
}

/* A component that only LoRA tensors use: such a key in no known layout is
 * an adapter this code does not understand (AdaLoRA's lora_E, LyCORIS,
 * a merged-QKV legacy file...), not a replacement tensor. */
static int lora_component(const char *c, size_t len)
{
    static const char *const names[] = {"lora_A", "lora_B", "lora_E", "lora_embedding_A", "lora_embedding_B",
                                        "lora_magnitude_vector", "lora_down", "lora_up", "dora_scale"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strlen(names[i]) == len && memcmp(names[i], c, len) == 0) return 1;
    return 0;
}

static int has_lora_component(const char *key)
{
    const char *p = key;
    for (;;) {
        const char *dot = strchr(p, '.');
        size_t len = dot ? (size_t)(dot - p) : strlen(p);
        if (lora_component(p, len)) return 1;
        if (!dot) return 0;
        p = dot + 1;
    }
}

static int copy_name(const char *s, size_t len, char *out, size_t cap)
{
    if (len == 0 || len >= cap) return 0;
    memcpy(out, s, len);
    out[len] = '\0';
    return 1;
}

/* "<block>.processor.to_out_lora" -> "<block>.to_out.0"; "..processor.to_q_lora" -> "<block>.to_q". */
static int processor_name(const char *key, size_t stem, char *out, size_t cap)
{
    const char *proc = NULL;
    for (const char *p = strstr(key, ".processor."); p && (size_t)(p - key) < stem; p = strstr(p + 1, ".processor."))
        proc = p;
    if (!proc) return 0;
    size_t head = (size_t)(proc - key);
    const char *proj = proc + strlen(".processor.");
    size_t plen = stem - (size_t)(proj - key);
    int out0 = plen == 6 && memcmp(proj, "to_out", 6) == 0;
    if (plen == 0 || memchr(proj, '.', plen) || head + 1 + plen + 3 >= cap) return 0;
    memcpy(out, key, head);
    out[head] = '.';
    memcpy(out + head + 1, proj, plen);
    strcpy(out + head + 1 + plen, out0 ? ".0" : "");
    return 1;
}

lora_pk_role lora_pk_split(const char *key, int legacy, char *module, size_t cap)
{
    size_t len = strlen(key), stem = 0;
    for (size_t i = 0; i < sizeof peft_rules / sizeof peft_rules[0]; i++)
        if (ends_with(key, len, peft_rules[i].suffix, &stem))
            return copy_name(key, stem, module, cap) ? peft_rules[i].role : LORA_PK_BAD;
    for (size_t i = 0; legacy && i < sizeof legacy_rules / sizeof legacy_rules[0]; i++) {
        if (!ends_with(key, len, legacy_rules[i].suffix, &stem)) continue;
        if (legacy_rules[i].suffix[0] == '_')
            return processor_name(key, stem, module, cap) ? legacy_rules[i].role : LORA_PK_BAD;
        return copy_name(key, stem, module, cap) ? legacy_rules[i].role : LORA_PK_BAD;
    }
    if (has_lora_component(key)) return LORA_PK_BAD;
    return copy_name(key, len, module, cap) ? LORA_PK_OTHER : LORA_PK_BAD;
}
