/*
 * peft_regex.c - PEFT's pattern keys are Python regular expressions; POSIX
 * regcomp speaks ERE. Only constructs with the same meaning in both are
 * translated. Every use here is anchored at both ends, so a yes/no match
 * depends only on the language a pattern describes: greedy and lazy
 * quantifiers, and POSIX leftmost-longest against Python backtracking,
 * accept the same strings.
 */
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include "peft_config.h"

typedef struct {
    char *p;
    size_t n, cap;
    const char *why; /* first reason the pattern cannot be translated */
} rx_out;

static void put(rx_out *o, const char *s)
{
    size_t l = strlen(s);
    if (o->why) return;
    if (o->n + l >= o->cap) {
        o->why = "pattern too long";
        return;
    }
    memcpy(o->p + o->n, s, l + 1);
    o->n += l;
}

static void putc1(rx_out *o, char c)
{
    char s[2] = {c, '\0'};
    put(o, s);
}

static void refuse(rx_out *o, const char *why)
{
    if (!o->why) o->why = why;
}

/* ERE operators: escaped they stay escaped; other punctuation is literal. */
static int ere_special(char c) { return c != '\0' && strchr(".^$*+?()[]{}|\\", c) != NULL; }

/* \d \w \s and negations outside brackets. */
static const char *class_escape(char e)
{
    switch (e) {
    case 'd': return "[0-9]";
    case 'D': return "[^0-9]";
    case 'w': return "[[:alnum:]_]";
    case 'W': return "[^[:alnum:]_]";
    case 's': return "[[:space:]]";
    case 'S': return "[^[:space:]]";
    default: return NULL;
    }
}

/* The members of one bracket expression, re-emitted in an order POSIX
 * reads the same way: ']' first, '-' last, '[' never before ':' '.' '='. */
typedef struct {
    unsigned char single[256];
    char ranges[512];
    size_t nranges;
    char classes[96];
} rx_set;

static void set_range(rx_out *o, rx_set *s, unsigned char lo, unsigned char hi)
{
    if (lo > hi) {
        refuse(o, "bad character range");
        return;
    }
    if (lo == hi) {
        s->single[lo] = 1;
        return;
    }
    if (strchr("]-[^\\", lo) || strchr("]-[^\\", hi)) {
        refuse(o, "range with ] - [ ^ or \\ as an end");
        return;
    }
    if (s->nranges + 4 > sizeof s->ranges) {
        refuse(o, "too many ranges");
        return;
    }
    s->ranges[s->nranges++] = (char)lo;
    s->ranges[s->nranges++] = '-';
    s->ranges[s->nranges++] = (char)hi;
    s->ranges[s->nranges] = '\0';
}

static void set_class(rx_out *o, rx_set *s, char e)
{
    const char *c = e == 'd' ? "0-9" : e == 'w' ? "[:alnum:]_" : e == 's' ? "[:space:]" : NULL;
    if (!c) {
        refuse(o, "negated class escape inside [...]");
        return;
    }
    if (strlen(s->classes) + strlen(c) + 1 > sizeof s->classes) {
        refuse(o, "too many classes");
        return;
    }
    strcat(s->classes, c);
}

/* One member at py[*i]: a literal byte (returned, >= 0), or -1 after a
 * class escape was added. */
static int set_atom(rx_out *o, rx_set *s, const char *py, size_t *i)
{
    unsigned char c = (unsigned char)py[*i];
    if (c != '\\') {
        (*i)++;
        return c;
    }
    char e = py[*i + 1];
    if (e == '\0') {
        refuse(o, "trailing backslash");
        return -1;
    }
    *i += 2;
    if (strchr("dws", e) || strchr("DWS", e)) {
        set_class(o, s, e);
        return -1;
    }
    if (ispunct((unsigned char)e) || e == ' ') return (unsigned char)e;
    refuse(o, "escape without a POSIX equivalent inside [...]");
    return -1;
}

static void emit_set(rx_out *o, const rx_set *s, int neg)
{
    int others = s->single[']'] || s->nranges || s->classes[0];
    for (int c = 1; c < 256; c++)
        if (s->single[c] && !strchr("]^[-", c)) others = 1;
    int specials = s->single['^'] || s->single['['] || s->single['-'];
    if (!others && !specials) {
        refuse(o, "empty [...]");
        return;
    }
    if (!neg && !others && !s->single['['] && !s->single['-']) {
        put(o, "\\^"); /* [^] would negate */
        return;
    }
    put(o, neg ? "[^" : "[");
    if (s->single[']']) put(o, "]");
    put(o, s->ranges);
    put(o, s->classes);
    for (int c = 1; c < 256; c++)
        if (s->single[c] && !strchr("]^[-", c)) putc1(o, (char)c);
    if (others || neg) {
        /* '^' is not first; '[' is followed by '-' or ']'; '-' is last. */
        if (s->single['^']) put(o, "^");
        if (s->single['[']) put(o, "[");
        if (s->single['-']) put(o, "-");
    } else {
        /* Nothing precedes: '-' first is literal, then '[' then '^'. */
        if (s->single['-']) put(o, "-");
        if (s->single['[']) put(o, "[");
        if (s->single['^']) put(o, "^");
    }
    put(o, "]");
}

/* py[*i] is '['. */
static void bracket(rx_out *o, const char *py, size_t *i)
{
    rx_set s;
    memset(&s, 0, sizeof s);
    size_t k = *i + 1;
    int neg = py[k] == '^';
    if (neg) k++;
    int first = 1;
    while (!o->why) {
        if (py[k] == '\0') {
            refuse(o, "unterminated [...]");
            return;
        }
        if (py[k] == ']' && !first) break;
        first = 0;
        int lo = set_atom(o, &s, py, &k);
        if (lo < 0) continue;
        if (py[k] == '-' && py[k + 1] != ']' && py[k + 1] != '\0') {
            k++;
            int hi = set_atom(o, &s, py, &k);
            if (hi < 0) {
                refuse(o, "class escape as a range end");
                return;
            }
            set_range(o, &s, (unsigned char)lo, (unsigned char)hi);
        } else {
            s.single[lo] = 1;
        }
    }
    if (o->why) return;
    emit_set(o, &s, neg);
    *i = k + 1;
}

/* What translate() knows of the pattern so far: enough for the checks
 * Python makes (a quantifier needs something to repeat, and only one
 * quantifier per item), and for one it does not need: regcomp writes the
 * operand of a bound out once per repetition, and when that operand can
 * match nothing its closure tables explode (((a*)*){256} ran for more than
 * 20 s, ((a?)?){256} took 1.5 GB, (a?b?)?{200} 750 MB), so a bound of
 * more than one repetition over such an operand is refused. */
typedef struct {
    size_t depth;
    uint8_t seq[LORA_PEFT_REGEX_MAX_LEN + 1]; /* per open group: its current branch can match nothing */
    uint8_t alt[LORA_PEFT_REGEX_MAX_LEN + 1]; /* per open group: one of its earlier branches can */
    int has_item;                             /* the last token can take a quantifier */
    int item_null;                            /* and it can match nothing */
    uint8_t seq_before;                       /* seq[depth] before that item */
} rx_shape;

static void shape_item(rx_shape *g, int nullable)
{
    g->seq_before = g->seq[g->depth];
    g->item_null = nullable;
    g->seq[g->depth] = (uint8_t)(g->seq_before && nullable);
    g->has_item = 1;
}

/* A quantifier that allows zero repetitions or not, and writes its operand
 * out `copies` times. */
static void shape_quantifier(rx_out *o, rx_shape *g, int zero, unsigned copies)
{
    if (!g->has_item) {
        refuse(o, "a quantifier with nothing to repeat, or after another quantifier");
        return;
    }
    if (copies > 1 && g->item_null) {
        refuse(o, "a bounded repetition of something that can match nothing (regcomp cannot compile it in "
                  "bounded memory)");
        return;
    }
    g->seq[g->depth] = (uint8_t)(g->seq_before && (zero || g->item_null));
    g->has_item = 0;
}

/* After a quantifier: Python's lazy form accepts the same strings here;
 * the possessive form (3.11) does not. */
static void quantifier_suffix(rx_out *o, const char *py, size_t *i)
{
    if (py[*i] == '?') (*i)++;
    else if (py[*i] == '+') refuse(o, "possessive quantifier");
}

static unsigned digits_value(const char *p, size_t n)
{
    unsigned v = 0;
    for (size_t k = 0; k < n; k++) v = v * 10 + (unsigned)(p[k] - '0');
    return v;
}

/* py[*i] is '{': a bound {m}, {m,}, {,n}, {m,n}, else a literal brace (as
 * Python reads it). */
static void brace(rx_out *o, rx_shape *g, const char *py, size_t *i)
{
    size_t k = *i + 1, m0 = k;
    while (isdigit((unsigned char)py[k])) k++;
    size_t m1 = k, n0 = k, n1 = k;
    int comma = py[k] == ',';
    if (comma) {
        n0 = ++k;
        while (isdigit((unsigned char)py[k])) k++;
        n1 = k;
    }
    if (py[k] != '}' || (m1 == m0 && (!comma || n1 == n0))) {
        put(o, "\\{");
        (*i)++;
        shape_item(g, 0);
        return;
    }
    char buf[64];
    if (m1 - m0 > 3 || n1 - n0 > 3) {
        refuse(o, "repetition bound too large"); /* POSIX caps bounds at RE_DUP_MAX (255+) */
        return;
    }
    unsigned m = digits_value(py + m0, m1 - m0), n = digits_value(py + n0, n1 - n0);
    /* {m}: m copies; {m,n} and {,n}: n; {m,}: m and a starred one */
    unsigned copies = !comma ? m : n1 > n0 ? n : m ? m + 1 : 1;
    shape_quantifier(o, g, m == 0, copies);
    snprintf(buf, sizeof buf, "{%.*s%s%s%.*s}", (int)(m1 - m0), py + m0, m1 == m0 ? "0" : "", comma ? "," : "",
             (int)(n1 - n0), py + n0);
    put(o, buf);
    *i = k + 1;
    quantifier_suffix(o, py, i);
}

static void escape(rx_out *o, const char *py, size_t *i)
{
    char e = py[*i + 1];
    const char *cls = class_escape(e);
    *i += e ? 2 : 1; /* never past the terminator */
    if (cls) {
        put(o, cls);
    } else if (ere_special(e)) {
        putc1(o, '\\');
        putc1(o, e);
    } else if (e != '\0' && (ispunct((unsigned char)e) || e == ' ')) {
        putc1(o, e);
    } else {
        refuse(o, e == '\0' ? "trailing backslash"
                             : "escape without a POSIX equivalent (\\b, \\A, \\Z, backreference, ...)");
    }
}

static void open_group(rx_out *o, rx_shape *g, const char *py, size_t *i)
{
    if (py[*i + 1] == '?') {
        if (py[*i + 2] != ':') {
            refuse(o, "(?...) group other than (?:...)");
            return;
        }
        *i += 3;
    } else {
        (*i)++;
    }
    g->depth++; /* the pattern is at most LORA_PEFT_REGEX_MAX_LEN bytes: never past the arrays */
    g->seq[g->depth] = 1;
    g->alt[g->depth] = 0;
    g->has_item = 0;
    put(o, "(");
}

static void close_group(rx_out *o, rx_shape *g, size_t *i)
{
    /* Python refuses it; here it would close the group this pattern is
     * wrapped in, and a bound after it would repeat the whole prefix. */
    if (g->depth == 0) {
        refuse(o, "unbalanced parenthesis");
        return;
    }
    int nullable = g->seq[g->depth] || g->alt[g->depth];
    g->depth--;
    shape_item(g, nullable);
    putc1(o, ')');
    (*i)++;
}

static void translate(rx_out *o, const char *py)
{
    rx_shape g;
    memset(&g, 0, sizeof g);
    g.seq[0] = 1;
    size_t i = 0;
    while (!o->why && py[i]) {
        char c = py[i];
        if (c == '\\') {
            escape(o, py, &i);
            shape_item(&g, 0);
        } else if (c == '[') {
            bracket(o, py, &i);
            shape_item(&g, 0);
        } else if (c == '(') {
            open_group(o, &g, py, &i);
        } else if (c == ')') {
            close_group(o, &g, &i);
        } else if (c == '|') {
            g.alt[g.depth] |= g.seq[g.depth];
            g.seq[g.depth] = 1;
            g.has_item = 0;
            putc1(o, c);
            i++;
        } else if (c == '*' || c == '+' || c == '?') {
            shape_quantifier(o, &g, c != '+', 1); /* a+ is a a*: two copies, cheap even when a matches nothing */
            putc1(o, c);
            i++;
            quantifier_suffix(o, py, &i);
        } else if (c == '{') {
            brace(o, &g, py, &i);
        } else if (c == '}') {
            put(o, "\\}");
            i++;
            shape_item(&g, 0);
        } else {
            putc1(o, c);
            i++;
            if (c == '^' || c == '$') g.has_item = 0; /* anchors match nothing and take no quantifier */
            else shape_item(&g, 0);
        }
    }
    if (g.depth) refuse(o, "missing )");
}

/* ---- what regcomp will build ---- */

/* py[*i] is '[': the index just past the bracket expression (Python's
 * rules: a ']' first is a member, a backslash escapes). */
static size_t skip_bracket(const char *py, size_t i)
{
    i++;
    if (py[i] == '^') i++;
    if (py[i] == ']') i++;
    while (py[i] && py[i] != ']') i += py[i] == '\\' && py[i + 1] ? 2 : 1;
    return py[i] ? i + 1 : i;
}

/* py[*i] is '{': the copies a valid bound makes of its operand, with *i
 * past it; 0 (and *i unchanged) when the brace is a literal. */
static uint64_t bound_copies(const char *py, size_t *i)
{
    size_t k = *i + 1;
    uint64_t m = 0, n = 0;
    int has_m = 0, has_n = 0, comma = 0;
    for (; isdigit((unsigned char)py[k]) && m < 100000; k++, has_m = 1) m = m * 10 + (uint64_t)(py[k] - '0');
    if (py[k] == ',') {
        comma = 1;
        for (k++; isdigit((unsigned char)py[k]) && n < 100000; k++, has_n = 1) n = n * 10 + (uint64_t)(py[k] - '0');
    }
    if (py[k] != '}' || (!has_m && !has_n)) return 0;
    *i = k + 1;
    /* {m}: m copies; {m,n} and {,n}: n; {m,}: m and a starred one */
    uint64_t c = !comma ? m : has_n ? n : m + 1;
    return c ? c : 1;
}

uint64_t lora_peft_regex_size(const char *py, uint64_t cap)
{
    uint64_t sum[LORA_PEFT_REGEX_MAX_LEN + 2] = {0}; /* per open group */
    size_t depth = 0, i = 0;
    uint64_t last = 0; /* size of the atom or group a quantifier applies to */
    while (py[i]) {
        char c = py[i];
        uint64_t copies = 1;
        if (c == '(' && depth < LORA_PEFT_REGEX_MAX_LEN) {
            sum[++depth] = 0;
            i += py[i + 1] == '?' && py[i + 2] == ':' ? 3 : 1;
            last = 0;
            continue;
        }
        if (c == ')' && depth > 0) {
            last = sum[depth--];
            sum[depth] += last;
            i++;
        } else if (c == '|') {
            last = 0;
            i++;
        } else if (c == '*' || c == '?') {
            i++;
        } else if (c == '+') {
            copies = 2; /* a+ is built as a a* */
            i++;
        } else if (c == '{' && (copies = bound_copies(py, &i)) != 0) {
            /* a bound: i is past it */
        } else {
            copies = 1;
            i = c == '[' ? skip_bracket(py, i) : c == '\\' && py[i + 1] ? i + 2 : i + 1;
            last = 1;
            sum[depth] += 1;
        }
        if (copies > 1) {
            sum[depth] += last * (copies - 1);
            last *= copies;
        }
        if (sum[depth] > cap || last > cap) return UINT64_MAX;
    }
    uint64_t total = 0;
    for (size_t d = 0; d <= depth; d++) total += sum[d];
    return total > cap ? UINT64_MAX : total;
}

lora_status lora_peft_regex_compile(regex_t *re, const char *py, int suffix_match, const char *what, lora_error *err)
{
    size_t len = strlen(py);
    if (len > LORA_PEFT_REGEX_MAX_LEN)
        return lora_error_set(err, LORA_E_UNSUPPORTED_ADAPTER, LORA_NO_OFFSET, "%s: pattern too long", what);
    if (lora_peft_regex_size(py, LORA_PEFT_REGEX_MAX_SIZE) == UINT64_MAX)
        return lora_error_set(err, LORA_E_UNSUPPORTED_ADAPTER, LORA_NO_OFFSET,
                              "%s: Python regex '%s' cannot be used: its repetitions expand past %u atoms", what, py,
                              LORA_PEFT_REGEX_MAX_SIZE);
    char buf[LORA_PEFT_REGEX_MAX_LEN * 16 + 64]; /* the longest expansion is 13 bytes per input byte */
    rx_out o = {buf, 0, sizeof buf, NULL};
    buf[0] = '\0';
    put(&o, suffix_match ? "^(.*\\.)?(" : "^(");
    translate(&o, py);
    put(&o, ")$");
    if (o.why)
        return lora_error_set(err, LORA_E_UNSUPPORTED_ADAPTER, LORA_NO_OFFSET,
                              "%s: Python regex '%s' cannot be used: %s", what, py, o.why);
    int rc = regcomp(re, buf, REG_EXTENDED | REG_NOSUB);
    if (rc != 0) {
        char msg[128];
        regerror(rc, re, msg, sizeof msg);
        return lora_error_set(err, LORA_E_UNSUPPORTED_ADAPTER, LORA_NO_OFFSET, "%s: regex '%s' rejected: %s", what, py,
                              msg);
    }
    return LORA_OK;
}

int lora_peft_regex_match(const regex_t *re, const char *s) { return regexec(re, s, 0, NULL, 0) == 0; }

size_t lora_peft_regex_escape(const char *name, char *out, size_t cap)
{
    size_t n = 0;
    for (const char *p = name; *p; p++) {
        int esc = ere_special(*p) || *p == '-';
        if (n + (size_t)esc + 2 > cap) return 0;
        if (esc) out[n++] = '\\';
        out[n++] = *p;
    }
    if (cap == 0) return 0;
    out[n] = '\0';
    return n;
}

/* ---- pattern keys without regcomp ---- */

/* A key made of literal bytes, escaped punctuation and '.' wildcards (an
 * optional leading '^', an optional trailing '$') matches a fixed number
 * of bytes; decode it, or return 0 if it is anything else. */
static int parse_fixed(const char *py, char *out, uint8_t *wild, size_t *len, int *anchored)
{
    size_t n = 0, i = 0, end = strlen(py);
    *anchored = py[0] == '^';
    i = (size_t)*anchored;
    if (end > i && py[end - 1] == '$' && (end < 2 || py[end - 2] != '\\')) end--;
    while (i < end) {
        char c = py[i];
        if (c == '\\') {
            char e = py[i + 1];
            if (i + 1 >= end || !(ispunct((unsigned char)e) || e == ' ')) return 0;
            out[n] = e;
            wild[n++] = 0;
            i += 2;
        } else if (strchr("^$*+?()[]{}|", c)) {
            return 0;
        } else {
            out[n] = c;
            wild[n++] = c == '.';
            i++;
        }
    }
    out[n] = '\0';
    *len = n;
    return n > 0;
}

lora_status lora_peft_key_compile(const lora_allocator *a, lora_peft_key *k, const char *py, uint32_t *regex_count,
                                  const char *what, lora_error *err)
{
    size_t l = strlen(py);
    memset(k, 0, sizeof k[0]);
    k->fixed = lora_mem_alloc(a, l + 1);
    k->wild = lora_mem_alloc(a, l + 1);
    if (!k->fixed || !k->wild) {
        lora_peft_key_free(a, k);
        return lora_error_set(err, LORA_E_OUT_OF_MEMORY, LORA_NO_OFFSET, "out of memory");
    }
    if (parse_fixed(py, k->fixed, k->wild, &k->len, &k->anchored)) return LORA_OK;
    lora_mem_free(a, k->fixed);
    lora_mem_free(a, k->wild);
    k->fixed = NULL;
    k->wild = NULL;
    if (++*regex_count > LORA_PEFT_MAX_REGEX_KEYS)
        return lora_error_set(err, LORA_E_LIMIT_EXCEEDED, LORA_NO_OFFSET, "%s: more than %u regular-expression keys",
                              what, LORA_PEFT_MAX_REGEX_KEYS);
    LORA_FORWARD_IF_ERROR(lora_peft_regex_compile(&k->re, py, 1, what, err));
    k->is_regex = 1;
    return LORA_OK;
}

static int fixed_at(const lora_peft_key *k, const char *s)
{
    for (size_t i = 0; i < k->len; i++)
        if (!k->wild[i] && s[i] != k->fixed[i]) return 0;
    return 1;
}

int lora_peft_key_match(const lora_peft_key *k, const char *name)
{
    if (k->is_regex) return lora_peft_regex_match(&k->re, name);
    size_t n = strlen(name);
    if (n == k->len) return fixed_at(k, name);
    /* the optional group (.*\.) ends with a dot right before the key */
    return !k->anchored && n > k->len && name[n - k->len - 1] == '.' && fixed_at(k, name + n - k->len);
}

void lora_peft_key_free(const lora_allocator *a, lora_peft_key *k)
{
    if (k->is_regex) regfree(&k->re);
    lora_mem_free(a, k->fixed);
    lora_mem_free(a, k->wild);
    memset(k, 0, sizeof k[0]);
}
