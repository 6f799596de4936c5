/*
 * fuzz_peft_config - lora_peft_config_parse (a PEFT adapter_config.json)
 * on untrusted bytes, then every lookup on module names taken from the
 * config itself and from a fixed list of real ones.
 *
 * Properties:
 *   - a failure is a defined status with a NUL-terminated detail, leaves
 *     *out all zero but for its allocator, and nothing allocated; parse and from_json (the
 *     diffusers path) agree on the status;
 *   - an accepted config has r in [1, 2^24], a finite lora_alpha, one
 *     pattern per key of rank_pattern / alpha_pattern (in the object's
 *     order) with a valid value, at most LORA_PEFT_MAX_REGEX_KEYS regex
 *     keys;
 *   - a fixed (non-regcomp) key matches the name it spells, with any byte
 *     at its wildcards, and "x.<name>" unless it is anchored with '^';
 *     and it agrees, on every probe name, with the same key compiled by
 *     regcomp (the path every other key takes): two implementations of
 *     one Python rule;
 *   - rank / alpha lookups return a pattern's value exactly when
 *     from_pattern says so, else r / lora_alpha; targets and layer_ok
 *     answer -1, 0 or 1;
 *   - no allocation above what the input justifies, none left after free.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "support/fuzz_common.h"
#include "ops/peft_config.h"

#define MAX_PROBES 24
#define MAX_REGEX_CHECKS 32 /* keys per object compiled again by regcomp: a cost per exec */
#define PROBE_LEN 192

static const char *const real_names[] = {
    "base_model.model.model.layers.0.self_attn.q_proj",
    "base_model.model.model.layers.17.self_attn.k_proj",
    "model.layers.3.mlp.down_proj",
    "transformer.h.11.attn.c_attn",
    "lm_head",
    "model.embed_tokens",
    "unet.down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q",
    "q_proj",
};

typedef struct {
    char name[MAX_PROBES][PROBE_LEN];
    size_t n;
} probes;

static void add_probe(probes *p, const char *prefix, const char *s, size_t len)
{
    size_t pl = strlen(prefix);
    if (p->n == MAX_PROBES || pl + len >= PROBE_LEN || memchr(s, '\0', len)) return;
    memcpy(p->name[p->n], prefix, pl);
    memcpy(p->name[p->n] + pl, s, len);
    p->name[p->n][pl + len] = '\0';
    p->n++;
}

/* Names a fixed key must match: its own bytes, and with every wildcard
 * replaced by another byte. */
static void check_fixed_key(const lora_peft_key *k)
{
    char buf[PROBE_LEN + 2];
    if (k->len + 3 > sizeof buf) return;
    FUZZ_ASSERT(k->fixed && k->wild && strlen(k->fixed) == k->len);
    FUZZ_ASSERT(lora_peft_key_match(k, k->fixed));
    for (size_t i = 0; i < k->len; i++) buf[i] = k->wild[i] ? 'Q' : k->fixed[i];
    buf[k->len] = '\0';
    FUZZ_ASSERT(lora_peft_key_match(k, buf));
    memcpy(buf, "x.", 2);
    memcpy(buf + 2, k->fixed, k->len + 1);
    FUZZ_ASSERT(lora_peft_key_match(k, buf) == !k->anchored);
    /* one byte more or less in front without a dot never matches */
    buf[1] = 'y';
    FUZZ_ASSERT(!lora_peft_key_match(k, buf));
}

/* The same Python key through regcomp: both must give the same answers. */
static void check_against_regex(const lora_peft_key *k, const char *py, const probes *p)
{
    regex_t re;
    lora_error err;
    if (lora_peft_regex_compile(&re, py, 1, "fuzz", &err) != LORA_OK) return;
    for (size_t i = 0; i < p->n; i++)
        if (lora_peft_key_match(k, p->name[i]) != lora_peft_regex_match(&re, p->name[i])) {
            fprintf(stderr, "fuzz: key '%s' and name '%s' disagree\n", py, p->name[i]);
            FUZZ_ASSERT(0);
        }
    regfree(&re);
}

static void check_patterns(const lora_peft_pattern *pat, uint32_t count, json_t *obj, int is_rank,
                           const probes *p)
{
    FUZZ_ASSERT(count == (obj && json_is_object(obj) ? json_object_size(obj) : 0));
    const char *key;
    json_t *v;
    uint32_t i = 0, checked = 0;
    json_object_foreach(obj, key, v) {
        const lora_peft_pattern *x = &pat[i++];
        if (is_rank) FUZZ_ASSERT(json_is_integer(v) && x->value == (double)json_integer_value(v) && x->value >= 1 &&
                                 x->value <= (1 << 24));
        else FUZZ_ASSERT(json_is_number(v) && isfinite(x->value) && x->value == json_number_value(v));
        if (x->key.is_regex) continue;
        check_fixed_key(&x->key);
        if (checked++ < MAX_REGEX_CHECKS) check_against_regex(&x->key, key, p);
    }
}

static void collect_probes(const lora_peft_config *c, const json_t *root, probes *p)
{
    for (size_t i = 0; i < sizeof real_names / sizeof real_names[0]; i++)
        add_probe(p, "", real_names[i], strlen(real_names[i]));
    static const char *const objects[] = {"rank_pattern", "alpha_pattern"};
    for (int o = 0; o < 2; o++) {
        const char *key;
        json_t *v;
        json_object_foreach(json_object_get(root, objects[o]), key, v) {
            add_probe(p, "", key, strlen(key));
            add_probe(p, "model.layers.2.", key, strlen(key));
        }
    }
    for (uint32_t i = 0; i < c->target_count; i++) add_probe(p, "base_model.model.", c->targets[i], strlen(c->targets[i]));
    for (uint32_t i = 0; i < c->exclude_count; i++) add_probe(p, "", c->excludes[i], strlen(c->excludes[i]));
}

static void check_lookups(const lora_peft_config *c, const probes *p)
{
    for (size_t i = 0; i < p->n; i++) {
        const char *m = p->name[i];
        int from = -1;
        uint32_t r = lora_peft_config_rank(c, m, &from);
        FUZZ_ASSERT(from == 0 || from == 1);
        if (!from) FUZZ_ASSERT(r == c->r);
        else FUZZ_ASSERT(r >= 1 && r <= (1u << 24));
        double a = lora_peft_config_alpha(c, m);
        FUZZ_ASSERT(isfinite(a));
        int t = lora_peft_config_targets(c, m), l = lora_peft_config_layer_ok(c, m);
        FUZZ_ASSERT(t >= -1 && t <= 1 && l >= -1 && l <= 1);
    }
}

static void check_accepted(const lora_peft_config *c, const json_t *root)
{
    FUZZ_ASSERT(root && json_is_object(root));
    FUZZ_ASSERT(c->r >= 1 && c->r <= (1u << 24) && isfinite(c->alpha));
    FUZZ_ASSERT(c->regex_count <= LORA_PEFT_MAX_REGEX_KEYS);
    probes *p = calloc(1, sizeof *p);
    FUZZ_ASSERT(p != NULL);
    collect_probes(c, root, p);
    check_patterns(c->rank_pattern, c->rank_count, json_object_get(root, "rank_pattern"), 1, p);
    check_patterns(c->alpha_pattern, c->alpha_count, json_object_get(root, "alpha_pattern"), 0, p);
    check_lookups(c, p);
    free(p);
}

static int all_zero(const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i]) return 0;
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_alloc_state as = {0};
    as.justified = fuzz_justified_bytes(size);
    lora_allocator a = fuzz_alloc_hook(&as);
    lora_peft_config c;
    lora_error err;
    lora_status st = lora_peft_config_parse(&a, (const char *)data, size, "fuzz", &c, &err);
    json_error_t je;
    json_t *root = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, &je);
    if (st != LORA_OK) {
        fuzz_check_error(st, &err);
        memset(&c.alloc, 0, sizeof c.alloc); /* may keep the allocator it was given; nothing else */
        FUZZ_ASSERT(all_zero(&c, sizeof c));
    } else {
        check_accepted(&c, root);
        lora_peft_config_free(&c);
        FUZZ_ASSERT(all_zero(&c, sizeof c));
    }
    fuzz_alloc_check_empty(&as);

    /* from_json on the same object: the same answer (malformed JSON never
     * reaches it, so there parse must have said BAD_JSON or DUPLICATE_NAME). */
    if (!root) {
        FUZZ_ASSERT(st == LORA_E_BAD_JSON || st == LORA_E_DUPLICATE_NAME);
        return 0;
    }
    lora_peft_config d;
    lora_status st2 = lora_peft_config_from_json(&a, root, "fuzz", &d, &err);
    FUZZ_ASSERT(st2 == st);
    if (st2 == LORA_OK) lora_peft_config_free(&d);
    else fuzz_check_error(st2, &err);
    fuzz_alloc_check_empty(&as);
    json_decref(root);
    return 0;
}
