/*
 * test_peft_regex_limits.c - the bounds on what a PEFT config's regex keys
 * may ask of regcomp (lib/ops/peft_config.h). Each hostile pattern here
 * was found by fuzz_peft_config or measured against glibc: 24 GB for
 * ((a{999}){999}){999}, more than 20 s for ((a*)*){256}, 750 MB for
 * (a?b?)?{200}, a whole-prefix repeat through an unbalanced ')'. All must
 * be refused at once with LORA_E_UNSUPPORTED_ADAPTER, the budget over a
 * whole config with LORA_E_LIMIT_EXCEEDED, and the patterns real configs
 * use must still compile and match as Python's re does.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include "ops/peft_config.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void test_hostile_patterns_refused(void **state)
{
    (void)state;
    static const char *const hostile[] = {
        "((a{999}){999}){999}", "(a{99}){99}", "a{513}",        /* expanded size */
        "a)", "x)){500}", "(a", "((a)",                          /* unbalanced */
        "((a*)*){256}", "((a?)?){2}", "(a|b?){3}", "(x?y?){2,}", /* bound over a nullable operand */
        "((((a?b?)?){16})?){16}", "(|a){2}",
        "a?{200}", "a*{2}", "a{2}{3}", "a+*", "*a", "(*a)", "a|*b", "^*", "x$+", /* nothing / twice repeated */
    };
    for (size_t i = 0; i < sizeof hostile / sizeof hostile[0]; i++) {
        regex_t re;
        lora_error e;
        double t0 = now();
        lora_status st = lora_peft_regex_compile(&re, hostile[i], 1, "test", &e);
        if (st == LORA_OK) {
            regfree(&re);
            fail_msg("pattern '%s' accepted", hostile[i]);
        }
        assert_int_equal(st, LORA_E_UNSUPPORTED_ADAPTER);
        assert_non_null(strstr(e.detail, "test: "));
        if (now() - t0 > 0.5) fail_msg("pattern '%s' took %.2f s to refuse", hostile[i], now() - t0);
    }
}

static void test_real_patterns_kept(void **state)
{
    (void)state;
    static const struct {
        const char *py, *yes, *no;
    } ok[] = {
        {"model\\.layers\\.\\d{1,2}\\.self_attn\\.q_proj", "model.layers.17.self_attn.q_proj",
         "model.layers.123.self_attn.q_proj"},
        {"layers\\.(1[0-9]|2[0-3])\\.mlp\\.(gate|up)_proj", "x.layers.21.mlp.up_proj", "x.layers.24.mlp.up_proj"},
        {"(a*)+b", "aab", "aac"},             /* '+' over a nullable operand: two copies, cheap */
        {"(a?){1}b", "ab", "aab"},            /* one repetition: nothing copied */
        {"(a?){0,1}b", "b", "aab"},
        {"(ab){15}", "ababababababababababababababab", "abab"},
        {"[a-z_]{1,10}\\.o_proj", "self_attn.o_proj", "self_attention.o_proj"},
        {"q_proj|v_proj", "m.v_proj", "m.k_proj"},
        {".*\\.down_proj$", "model.layers.0.mlp.down_proj", "down_proj"},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        regex_t re;
        lora_error e;
        if (lora_peft_regex_compile(&re, ok[i].py, 1, "test", &e) != LORA_OK) fail_msg("%s: %s", ok[i].py, e.detail);
        if (!lora_peft_regex_match(&re, ok[i].yes)) fail_msg("'%s' does not match '%s'", ok[i].py, ok[i].yes);
        if (lora_peft_regex_match(&re, ok[i].no)) fail_msg("'%s' matches '%s'", ok[i].py, ok[i].no);
        regfree(&re);
    }
    /* the largest single pattern allowed */
    regex_t re;
    lora_error e;
    assert_int_equal(lora_peft_regex_compile(&re, "a{512}", 1, "test", &e), LORA_OK);
    regfree(&re);
}

static void test_size_estimate(void **state)
{
    (void)state;
    static const struct {
        const char *py;
        uint64_t size;
    } cases[] = {
        {"abc", 3},        {"a{3}b", 4},           {"(ab){3}", 6},     {"((ab){3}c){2}", 14},
        {"a+", 2},         {"[abc]{4}", 4},        {"a{2,}", 3},       {"a{,5}", 5},
        {"\\d\\.\\w", 3}, {"(?:q|k)_proj", 7},    {"x{", 2},          {"", 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        if (lora_peft_regex_size(cases[i].py, 1000) != cases[i].size)
            fail_msg("size of '%s': %llu, want %llu", cases[i].py,
                     (unsigned long long)lora_peft_regex_size(cases[i].py, 1000), (unsigned long long)cases[i].size);
    assert_true(lora_peft_regex_size("a{1000}", 999) == UINT64_MAX);
    assert_true(lora_peft_regex_size("((a{999}){999}){999}", 1u << 20) == UINT64_MAX);
}

static void test_config_budget(void **state)
{
    (void)state;
    lora_error e;
    lora_peft_config c;
    /* a key over the per-pattern size is refused as a pattern */
    static const char big[] = "{\"peft_type\": \"LORA\", \"rank_pattern\": {\"(a0b){256}\": 2}}";
    assert_int_equal(lora_peft_regex_size("(a0b){256}", 10000), 768);
    assert_int_equal(lora_peft_config_parse(NULL, big, sizeof big - 1, "cfg", &c, &e), LORA_E_UNSUPPORTED_ADAPTER);
    /* keys "(x|q){256}": 512 atoms each, 2^18 of the 2^21 budget */
    char text[4096];
    int len = snprintf(text, sizeof text, "{\"peft_type\": \"LORA\", \"rank_pattern\": {");
    for (int i = 0; i < 9; i++)
        len += snprintf(text + len, sizeof text - (size_t)len, "%s\"(%c|q){256}\": %d", i ? ", " : "", 'a' + i, i + 1);
    /* 8 keys of 512 atoms fit the budget exactly; the 9th does not */
    char eight[4096];
    memcpy(eight, text, (size_t)len);
    int l8 = (int)(strstr(eight, ", \"(i|q)") - eight);
    l8 += snprintf(eight + l8, sizeof eight - (size_t)l8, "}}");
    assert_int_equal(lora_peft_config_parse(NULL, eight, (size_t)l8, "cfg", &c, &e), LORA_OK);
    assert_int_equal(c.regex_count, 8);
    lora_peft_config_free(&c);
    len += snprintf(text + len, sizeof text - (size_t)len, "}}");
    assert_int_equal(lora_peft_config_parse(NULL, text, (size_t)len, "cfg", &c, &e), LORA_E_LIMIT_EXCEEDED);
    assert_non_null(strstr(e.detail, "too large to compile"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hostile_patterns_refused),
        cmocka_unit_test(test_real_patterns_kept),
        cmocka_unit_test(test_size_estimate),
        cmocka_unit_test(test_config_budget),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
