/*
 * doc.h - one structured-output interface, two encodings: JSON (own writer)
 * and YAML (libyaml's emitter). A tool describes its result once as maps,
 * sequences and scalars; --json and --yaml then print the same structure.
 *
 * Rules both encodings follow:
 *   - strings are UTF-8; invalid bytes (file names from the command line can
 *     hold any) become U+FFFD. JSON escapes '"', '\' and control characters;
 *     libyaml quotes whatever would not read back as the same string.
 *   - floats always carry a '.' or an exponent (16.0, 1.0e-05). Non-finite
 *     floats are null in JSON and .nan/.inf/-.inf in YAML.
 *   - 64-bit checksums are strings of 16 hex digits (JSON numbers lose
 *     precision above 2^53 in most readers).
 *
 * Errors are sticky: calls after a failure do nothing and doc_finish()
 * reports it, so producers need not check every call.
 */
#ifndef TOOLS_DOC_H
#define TOOLS_DOC_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef enum { DOC_JSON, DOC_YAML } doc_format;

typedef struct doc doc;

/* NULL when out of memory. */
doc *doc_open(FILE *out, doc_format format);
/* Closes the document (a final newline), flushes `out`, frees. Returns 0 if
 * everything was written, -1 otherwise (write error, libyaml error, misuse). */
int doc_finish(doc *d);

/* `flow` asks for a one-line container ("[64, 64]"); used for short arrays. */
void doc_map_begin(doc *d, int flow);
void doc_map_end(doc *d);
void doc_seq_begin(doc *d, int flow);
void doc_seq_end(doc *d);

void doc_key(doc *d, const char *key);
void doc_str(doc *d, const char *s, size_t len);
void doc_cstr(doc *d, const char *s); /* NULL prints null */
void doc_u64(doc *d, uint64_t v);
void doc_i64(doc *d, int64_t v);
void doc_real(doc *d, double v, int single); /* single: the value is a binary32 */
void doc_bool(doc *d, int v);
void doc_null(doc *d);
void doc_hex64(doc *d, uint64_t v); /* "0123456789abcdef" */

/* Shorthands for "key": value. */
void doc_kv_cstr(doc *d, const char *key, const char *s);
void doc_kv_u64(doc *d, const char *key, uint64_t v);
void doc_kv_bool(doc *d, const char *key, int v);

#endif /* TOOLS_DOC_H */
