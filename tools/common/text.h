/*
 * text.h - text helpers shared by the tools: a growable string, UTF-8
 * decoding, escaping for terminals, grouped integers and shortest floats.
 *
 * Everything printed by a tool that came from a file (names, metadata,
 * library details that quote names) or from the command line goes through
 * text_escape() first: a hostile adapter must not be able to move the cursor,
 * retitle the terminal or reorder text with bidi controls.
 */
#ifndef TOOLS_TEXT_H
#define TOOLS_TEXT_H

#include <stddef.h>
#include <stdint.h>

/* Growable NUL-terminated string. Zero-initialise. On allocation failure it
 * sets `failed` and keeps what it had, so callers check once at the end. */
typedef struct {
    char *data;
    size_t len, cap;
    int failed;
} strbuf;

void sb_free(strbuf *sb);
void sb_clear(strbuf *sb);
void sb_putn(strbuf *sb, const char *s, size_t n);
void sb_puts(strbuf *sb, const char *s);
void sb_putc(strbuf *sb, char c);
const char *sb_str(const strbuf *sb); /* "" when empty */

/* Length (1..4) of the valid UTF-8 sequence at s, storing its code point,
 * or 0 if the bytes there are not valid UTF-8 (overlong, surrogate, > U+10FFFF,
 * cut short). */
size_t utf8_decode(const char *s, size_t len, uint32_t *cp);

/* C0/C1 controls, DEL and the bidi embedding/override/isolate marks: code
 * points a terminal acts on instead of showing. */
int text_is_control(uint32_t c);

/* Append `s` made safe for a terminal: C0/C1 controls, DEL, bidi controls and
 * invalid bytes become \n, \t, \xNN or \uXXXX. With `quoted` the result is
 * wrapped in double quotes and '"' and '\' are escaped as well, so the text
 * reads like a C string literal. `max_width` > 0 stops once that many columns
 * of content have been written (never inside an escape or a character);
 * returns 1 if the text was cut short, else 0. */
int text_escape(strbuf *sb, const char *s, size_t len, int quoted, size_t max_width);

/* Columns a string occupies on a terminal, counted in code points (the
 * escaped text is ASCII apart from printable characters). */
size_t text_width(const char *s);

/* "1,234,567". buf needs 27 bytes. */
#define TEXT_U64_SIZE 32
const char *text_u64_grouped(char buf[TEXT_U64_SIZE], uint64_t v);

/* Shortest decimal that reads back to the same value (as binary32 when
 * `single`), always with a '.' or an exponent so YAML and JSON readers see
 * a float: 16 -> "16.0", 1e-05 -> "1.0e-05", 0.1f -> "0.1".
 * NaN and infinities give "nan", "inf", "-inf"; callers that need another
 * spelling test isfinite() first. buf needs TEXT_REAL_SIZE bytes. */
#define TEXT_REAL_SIZE 40
const char *text_real(char buf[TEXT_REAL_SIZE], double v, int single);

/* "[64,64]" from a shape. buf needs TEXT_SHAPE_SIZE bytes. */
#define TEXT_SHAPE_SIZE 128
const char *text_shape(char buf[TEXT_SHAPE_SIZE], const uint64_t *dims, uint32_t ndim);

#endif /* TOOLS_TEXT_H */
