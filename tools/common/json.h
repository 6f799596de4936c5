/*
 * json.h - a small streaming JSON writer (RFC 8259) for tool output.
 *
 * Pretty-printed with two-space indentation; a container opened with
 * flow = 1 stays on one line ("[64, 64]"). No allocation: nesting is tracked
 * in a fixed stack. Strings are escaped ('"', '\', control characters as
 * \n or \u00XX) and invalid UTF-8 becomes U+FFFD, so the output always
 * parses. Numbers are written from text the caller formatted.
 */
#ifndef TOOLS_JSON_H
#define TOOLS_JSON_H

#include <stddef.h>
#include <stdio.h>

#define JSON_MAX_DEPTH 32

typedef struct {
    FILE *out;
    int depth;
    int after_key;   /* a key was written; the next value follows it */
    int failed;      /* misuse (depth, key outside an object) */
    unsigned char has_items[JSON_MAX_DEPTH];
    unsigned char is_flow[JSON_MAX_DEPTH];
    unsigned char is_object[JSON_MAX_DEPTH];
} tj_writer;

void tj_init(tj_writer *j, FILE *out);
void tj_begin(tj_writer *j, int object, int flow);
void tj_end(tj_writer *j);
void tj_key(tj_writer *j, const char *key);
void tj_string(tj_writer *j, const char *s, size_t len);
/* A number, true, false or null, already formatted by the caller. */
void tj_literal(tj_writer *j, const char *text);
/* Ends the document with a newline. Returns 0 when complete and written. */
int tj_finish(tj_writer *j);

/* Escaped string body (no quotes) onto out; exposed for tests and reuse. */
void tj_write_escaped(FILE *out, const char *s, size_t len);

#endif /* TOOLS_JSON_H */
