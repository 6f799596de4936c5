#include "json.h"

#include <stdint.h>
#include <string.h>

#include "text.h"

void tj_init(tj_writer *j, FILE *out)
{
    memset(j, 0, sizeof *j);
    j->out = out;
}

static void indent(tj_writer *j, int level)
{
    fputc('\n', j->out);
    for (int i = 0; i < level; i++) fputs("  ", j->out);
}

/* Separator and line break due before a value or a key at the current level. */
static void before_item(tj_writer *j)
{
    if (j->after_key) {
        j->after_key = 0;
        return;
    }
    if (j->depth == 0) return;
    int top = j->depth - 1;
    if (j->has_items[top]) fputc(',', j->out);
    if (j->is_flow[top]) {
        if (j->has_items[top]) fputc(' ', j->out);
    } else {
        indent(j, j->depth);
    }
    j->has_items[top] = 1;
}

/* Values inside an object need a key first. */
static int value_allowed(tj_writer *j)
{
    if (j->depth > 0 && j->is_object[j->depth - 1] && !j->after_key) j->failed = 1;
    return !j->failed;
}

void tj_begin(tj_writer *j, int object, int flow)
{
    if (!value_allowed(j)) return;
    if (j->depth >= JSON_MAX_DEPTH) {
        j->failed = 1;
        return;
    }
    /* A flow container keeps everything inside it on one line. */
    int inherited = j->depth > 0 && j->is_flow[j->depth - 1];
    before_item(j);
    fputc(object ? '{' : '[', j->out);
    j->has_items[j->depth] = 0;
    j->is_flow[j->depth] = (unsigned char)(flow || inherited);
    j->is_object[j->depth] = (unsigned char)object;
    j->depth++;
}

void tj_end(tj_writer *j)
{
    if (j->failed) return;
    if (j->depth == 0 || j->after_key) {
        j->failed = 1;
        return;
    }
    int top = --j->depth;
    if (j->has_items[top] && !j->is_flow[top]) indent(j, j->depth);
    fputc(j->is_object[top] ? '}' : ']', j->out);
}

static void write_quoted(FILE *out, const char *s, size_t len)
{
    fputc('"', out);
    tj_write_escaped(out, s, len);
    fputc('"', out);
}

void tj_key(tj_writer *j, const char *key)
{
    if (j->failed) return;
    if (j->depth == 0 || !j->is_object[j->depth - 1] || j->after_key) {
        j->failed = 1;
        return;
    }
    before_item(j);
    write_quoted(j->out, key, strlen(key));
    fputs(": ", j->out);
    j->after_key = 1;
}

void tj_write_escaped(FILE *out, const char *s, size_t len)
{
    for (size_t i = 0; i < len;) {
        uint32_t c = 0;
        size_t n = utf8_decode(s + i, len - i, &c);
        if (n == 0) {
            fputs("\\ufffd", out);
            i++;
            continue;
        }
        switch (c) {
        case '"': fputs("\\\"", out); break;
        case '\\': fputs("\\\\", out); break;
        case '\b': fputs("\\b", out); break;
        case '\f': fputs("\\f", out); break;
        case '\n': fputs("\\n", out); break;
        case '\r': fputs("\\r", out); break;
        case '\t': fputs("\\t", out); break;
        default:
            /* DEL, C1 and bidi marks are legal JSON but act on a terminal
             * that shows the output; escaping them costs nothing. */
            if (text_is_control(c) || c == 0x2028 || c == 0x2029) fprintf(out, "\\u%04x", (unsigned)c);
            else fwrite(s + i, 1, n, out);
        }
        i += n;
    }
}

void tj_string(tj_writer *j, const char *s, size_t len)
{
    if (!value_allowed(j)) return;
    before_item(j);
    write_quoted(j->out, s, len);
}

void tj_literal(tj_writer *j, const char *text)
{
    if (!value_allowed(j)) return;
    before_item(j);
    fputs(text, j->out);
}

int tj_finish(tj_writer *j)
{
    if (j->depth != 0 || j->after_key) j->failed = 1;
    fputc('\n', j->out);
    if (fflush(j->out) != 0 || ferror(j->out)) j->failed = 1;
    return j->failed ? -1 : 0;
}
