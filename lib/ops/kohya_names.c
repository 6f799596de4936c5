/* kohya key classification and the .lora -> kohya module name mapping. */
#include <string.h>
#include "kohya_names.h"

typedef struct {
    const char *suffix;
    const char *what;
} suffix_entry;

/* LyCORIS (KohakuBlueleaf/LyCORIS) stores its algorithms under the same
 * module names; each is named so the refusal says what the file is. */
static const suffix_entry lycoris[] = {
    {".lora_mid.weight", "LoCon with a Tucker/CP middle factor (lora_mid)"},
    {".hada_w1_a", "LoHa"}, {".hada_w1_b", "LoHa"}, {".hada_w2_a", "LoHa"}, {".hada_w2_b", "LoHa"},
    {".hada_t1", "LoHa"}, {".hada_t2", "LoHa"},
    {".lokr_w1", "LoKr"}, {".lokr_w1_a", "LoKr"}, {".lokr_w1_b", "LoKr"}, {".lokr_w2", "LoKr"},
    {".lokr_w2_a", "LoKr"}, {".lokr_w2_b", "LoKr"}, {".lokr_t2", "LoKr"},
    {".on_input", "(IA)^3"},
    {".a1.weight", "GLoRA"}, {".a2.weight", "GLoRA"}, {".b1.weight", "GLoRA"}, {".b2.weight", "GLoRA"},
    {".oft_blocks", "OFT"}, {".oft_diag", "OFT"},
    {".diff", "a full weight difference"}, {".diff_b", "a full bias difference"},
    {".w_norm", "a norm-layer weight"}, {".b_norm", "a norm-layer bias"},
    {".scalar", "a LyCORIS trained scalar"},
};
#define LYCORIS_COUNT (sizeof lycoris / sizeof lycoris[0])

uint32_t lora_kohya_lycoris_suffix_count(void) { return (uint32_t)LYCORIS_COUNT; }

const char *lora_kohya_lycoris_suffix(uint32_t i) { return i < LYCORIS_COUNT ? lycoris[i].suffix : NULL; }

static int ends_with(const char *s, size_t len, const char *suffix, size_t *stem)
{
    size_t n = strlen(suffix);
    if (len < n || memcmp(s + len - n, suffix, n) != 0) return 0;
    *stem = len - n;
    return 1;
}

void lora_kohya_classify(const char *key, size_t len, lora_kohya_key *out)
{
    static const struct {
        const char *suffix;
        lora_kohya_key_kind kind;
    } lora[] = {
        {LORA_KOHYA_SUFFIX_DOWN, LORA_KOHYA_KEY_DOWN},
        {LORA_KOHYA_SUFFIX_UP, LORA_KOHYA_KEY_UP},
        {LORA_KOHYA_SUFFIX_ALPHA, LORA_KOHYA_KEY_ALPHA},
        {LORA_KOHYA_SUFFIX_DORA, LORA_KOHYA_KEY_DORA_SCALE},
    };
    size_t stem = 0;
    out->kind = LORA_KOHYA_KEY_UNKNOWN;
    out->module_length = 0;
    out->what = NULL;
    for (size_t i = 0; i < sizeof lora / sizeof lora[0]; i++)
        if (ends_with(key, len, lora[i].suffix, &stem)) {
            out->kind = lora[i].kind;
            break;
        }
    for (size_t i = 0; out->kind == LORA_KOHYA_KEY_UNKNOWN && i < LYCORIS_COUNT; i++)
        if (ends_with(key, len, lycoris[i].suffix, &stem)) {
            out->kind = LORA_KOHYA_KEY_LYCORIS;
            out->what = lycoris[i].what;
        }
    /* A dot left in the module part means the key was not built by
     * sd-scripts' replace(".", "_"): another dialect (diffusers, PEFT). */
    if (out->kind == LORA_KOHYA_KEY_UNKNOWN || stem == 0 || memchr(key, '.', stem)) {
        out->kind = LORA_KOHYA_KEY_UNKNOWN;
        out->what = NULL;
        return;
    }
    out->module_length = stem;
}

static int starts_with(const char *s, const char *prefix) { return strncmp(s, prefix, strlen(prefix)) == 0; }

int lora_kohya_is_text_encoder_2(const char *name)
{
    if (starts_with(name, "base_model.model.")) name += strlen("base_model.model.");
    return starts_with(name, "text_encoder_2.");
}

size_t lora_kohya_export_name(const char *name, int two_text_encoders, char *out)
{
    size_t n = strlen(name);
    if ((starts_with(name, "lora_") || starts_with(name, "lycoris_")) && !memchr(name, '.', n)) {
        if (out) memcpy(out, name, n + 1);
        return n;
    }
    const char *rest = name;
    if (starts_with(rest, "base_model.model.")) rest += strlen("base_model.model.");
    static const struct {
        const char *path;
        const char *prefix;
        int keep;         /* the path's first level stays in the name */
    } map[] = {
        {"text_encoder_2.", "lora_te2_", 0}, {"text_encoder_3.", "lora_te3_", 0},
        {"text_encoder.", NULL, 0},          {"text_model.", "lora_te_", 1},
        {"unet.", "lora_unet_", 0},          {"transformer.", "lora_transformer_", 0},
    };
    const char *prefix = "lora_unet_";
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++) {
        if (!starts_with(rest, map[i].path)) continue;
        prefix = map[i].prefix ? map[i].prefix : two_text_encoders ? "lora_te1_" : "lora_te_";
        if (!map[i].keep) rest += strlen(map[i].path);
        break;
    }
    size_t plen = strlen(prefix), rlen = strlen(rest);
    if (out) {
        memcpy(out, prefix, plen);
        for (size_t i = 0; i < rlen; i++) out[plen + i] = rest[i] == '.' ? '_' : rest[i];
        out[plen + rlen] = '\0';
    }
    return plen + rlen;
}

void lora_kohya_show(char out[LORA_KOHYA_SHOW], const char *name, size_t len)
{
    const size_t keep = 100;
    int cut = len > keep;
    if (cut) {
        len = keep;
        while (len > 0 && ((unsigned char)name[len] & 0xC0u) == 0x80u) len--; /* not inside a UTF-8 sequence */
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)name[i];
        out[i] = c < 0x20 || c == 0x7f ? '?' : (char)c;
    }
    if (cut) memcpy(out + len, "...", 3), len += 3;
    out[len] = '\0';
}
