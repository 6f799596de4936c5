#include "doc.h"

#include <math.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

#include "json.h"
#include "text.h"

struct doc {
    doc_format format;
    FILE *out;
    int failed;
    tj_writer json;
    yaml_emitter_t yaml;
    strbuf scratch; /* a string made valid UTF-8 for libyaml */
};

/* ---- YAML backend ------------------------------------------------------------ */

/* libyaml rejects the whole event on invalid UTF-8; replace bad bytes the
 * same way the JSON writer does. */
static const char *valid_utf8(doc *d, const char *s, size_t len, size_t *out_len)
{
    sb_clear(&d->scratch);
    for (size_t i = 0; i < len;) {
        uint32_t c;
        size_t n = utf8_decode(s + i, len - i, &c);
        if (n == 0) {
            sb_puts(&d->scratch, "\xEF\xBF\xBD");
            i++;
        } else {
            sb_putn(&d->scratch, s + i, n);
            i += n;
        }
    }
    if (d->scratch.failed) d->failed = 1;
    *out_len = d->scratch.len;
    return sb_str(&d->scratch);
}

/* Whether a string may be written without quotes and still read back as that
 * string under YAML 1.1 and 1.2: starting with a letter rules out numbers,
 * timestamps, .inf/.nan, '~', '<<' and indicators; what remains to exclude is
 * the words that resolve to booleans or null. libyaml quotes anyway if the
 * text needs it (": ", " #", line breaks). */
static int yaml_plain_safe(const char *s, size_t len)
{
    static const char *const words[] = {"y", "n", "yes", "no", "true", "false", "on", "off", "null"};
    if (len == 0) return 0;
    unsigned char c0 = (unsigned char)s[0];
    if (!((c0 >= 'a' && c0 <= 'z') || (c0 >= 'A' && c0 <= 'Z') || c0 == '_')) return 0;
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
        if (strlen(words[i]) == len && strncasecmp(s, words[i], len) == 0) return 0;
    return 1;
}

static void yaml_emit(doc *d, yaml_event_t *ev, int ok)
{
    if (!ok || !yaml_emitter_emit(&d->yaml, ev)) d->failed = 1;
}

static void yaml_scalar(doc *d, const char *text, size_t len, int is_string)
{
    yaml_event_t ev;
    const yaml_char_t *v = (const yaml_char_t *)text;
    if (len > INT32_MAX) {
        d->failed = 1;
        return;
    }
    int ok;
    if (!is_string) {
        ok = yaml_scalar_event_initialize(&ev, NULL, NULL, v, (int)len, 1, 0, YAML_PLAIN_SCALAR_STYLE);
    } else {
        int plain = yaml_plain_safe(text, len);
        /* A literal block keeps multi-line text (an embedded config) readable. */
        yaml_scalar_style_t style = memchr(text, '\n', len) ? YAML_LITERAL_SCALAR_STYLE : YAML_ANY_SCALAR_STYLE;
        ok = yaml_scalar_event_initialize(&ev, NULL, NULL, v, (int)len, plain, 1, style);
    }
    yaml_emit(d, &ev, ok);
}

static void yaml_string(doc *d, const char *s, size_t len)
{
    size_t n;
    const char *t = valid_utf8(d, s, len, &n);
    if (!d->failed) yaml_scalar(d, t, n, 1);
}

static void yaml_open(doc *d)
{
    yaml_event_t ev;
    if (!yaml_emitter_initialize(&d->yaml)) {
        d->failed = 1;
        return;
    }
    yaml_emitter_set_output_file(&d->yaml, d->out);
    yaml_emitter_set_unicode(&d->yaml, 1);
    yaml_emitter_set_width(&d->yaml, -1); /* no folding of long strings */
    yaml_emitter_set_indent(&d->yaml, 2);
    yaml_emit(d, &ev, yaml_stream_start_event_initialize(&ev, YAML_UTF8_ENCODING));
    yaml_emit(d, &ev, yaml_document_start_event_initialize(&ev, NULL, NULL, NULL, 1));
}

static void yaml_close(doc *d)
{
    yaml_event_t ev;
    yaml_emit(d, &ev, yaml_document_end_event_initialize(&ev, 1));
    yaml_emit(d, &ev, yaml_stream_end_event_initialize(&ev));
    if (!yaml_emitter_flush(&d->yaml)) d->failed = 1;
}

/* ---- dispatch ---------------------------------------------------------------- */

doc *doc_open(FILE *out, doc_format format)
{
    doc *d = calloc(1, sizeof *d);
    if (!d) return NULL;
    d->format = format;
    d->out = out;
    if (format == DOC_JSON) tj_init(&d->json, out);
    else yaml_open(d);
    return d;
}

int doc_finish(doc *d)
{
    if (!d) return -1;
    int failed = d->failed;
    if (d->format == DOC_JSON) {
        if (tj_finish(&d->json) != 0) failed = 1;
    } else {
        if (!failed) yaml_close(d);
        failed |= d->failed;
        yaml_emitter_delete(&d->yaml);
        if (fflush(d->out) != 0 || ferror(d->out)) failed = 1;
    }
    sb_free(&d->scratch);
    free(d);
    return failed ? -1 : 0;
}

static void container(doc *d, int begin, int map, int flow)
{
    if (d->failed) return;
    if (d->format == DOC_JSON) {
        if (begin) tj_begin(&d->json, map, flow);
        else tj_end(&d->json);
        return;
    }
    yaml_event_t ev;
    int ok;
    if (map && begin)
        ok = yaml_mapping_start_event_initialize(&ev, NULL, NULL, 1,
                                                 flow ? YAML_FLOW_MAPPING_STYLE : YAML_BLOCK_MAPPING_STYLE);
    else if (map)
        ok = yaml_mapping_end_event_initialize(&ev);
    else if (begin)
        ok = yaml_sequence_start_event_initialize(&ev, NULL, NULL, 1,
                                                  flow ? YAML_FLOW_SEQUENCE_STYLE : YAML_BLOCK_SEQUENCE_STYLE);
    else
        ok = yaml_sequence_end_event_initialize(&ev);
    yaml_emit(d, &ev, ok);
}

void doc_map_begin(doc *d, int flow) { container(d, 1, 1, flow); }
void doc_map_end(doc *d) { container(d, 0, 1, 0); }
void doc_seq_begin(doc *d, int flow) { container(d, 1, 0, flow); }
void doc_seq_end(doc *d) { container(d, 0, 0, 0); }

void doc_key(doc *d, const char *key)
{
    if (d->failed) return;
    if (d->format == DOC_JSON) tj_key(&d->json, key);
    else yaml_string(d, key, strlen(key));
}

void doc_str(doc *d, const char *s, size_t len)
{
    if (d->failed) return;
    if (d->format == DOC_JSON) tj_string(&d->json, s, len);
    else yaml_string(d, s, len);
}

void doc_cstr(doc *d, const char *s)
{
    if (s) doc_str(d, s, strlen(s));
    else doc_null(d);
}

/* Numbers, booleans and null: the same text in both encodings. */
static void literal(doc *d, const char *text)
{
    if (d->failed) return;
    if (d->format == DOC_JSON) tj_literal(&d->json, text);
    else yaml_scalar(d, text, strlen(text), 0);
}

void doc_u64(doc *d, uint64_t v)
{
    char buf[24];
    snprintf(buf, sizeof buf, "%" PRIu64, v);
    literal(d, buf);
}

void doc_i64(doc *d, int64_t v)
{
    char buf[24];
    snprintf(buf, sizeof buf, "%" PRId64, v);
    literal(d, buf);
}

void doc_real(doc *d, double v, int single)
{
    char buf[TEXT_REAL_SIZE];
    if (isfinite(v)) literal(d, text_real(buf, v, single));
    else if (d->format == DOC_JSON) literal(d, "null");
    else literal(d, isnan(v) ? ".nan" : v < 0 ? "-.inf" : ".inf");
}

void doc_bool(doc *d, int v) { literal(d, v ? "true" : "false"); }
void doc_null(doc *d) { literal(d, "null"); }

void doc_hex64(doc *d, uint64_t v)
{
    char buf[20];
    snprintf(buf, sizeof buf, "%016" PRIx64, v);
    doc_str(d, buf, 16);
}

void doc_kv_cstr(doc *d, const char *key, const char *s)
{
    doc_key(d, key);
    doc_cstr(d, s);
}

void doc_kv_u64(doc *d, const char *key, uint64_t v)
{
    doc_key(d, key);
    doc_u64(d, v);
}

void doc_kv_bool(doc *d, const char *key, int v)
{
    doc_key(d, key);
    doc_bool(d, v);
}
