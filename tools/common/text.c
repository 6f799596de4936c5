#include "text.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lora.h"

/* ---- strbuf ---------------------------------------------------------------- */

void sb_free(strbuf *sb)
{
    free(sb->data);
    sb->data = NULL;
    sb->len = sb->cap = 0;
    sb->failed = 0;
}

void sb_clear(strbuf *sb)
{
    sb->len = 0;
    if (sb->data) sb->data[0] = '\0';
}

static int sb_reserve(strbuf *sb, size_t extra)
{
    if (sb->failed) return 0;
    if (extra > SIZE_MAX - 1 - sb->len) {
        sb->failed = 1;
        return 0;
    }
    size_t need = sb->len + extra + 1;
    if (need <= sb->cap) return 1;
    size_t cap = sb->cap ? sb->cap : 64;
    while (cap < need) cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    char *p = realloc(sb->data, cap);
    if (!p) {
        sb->failed = 1;
        return 0;
    }
    sb->data = p;
    sb->cap = cap;
    return 1;
}

void sb_putn(strbuf *sb, const char *s, size_t n)
{
    if (!sb_reserve(sb, n)) return;
    memcpy(sb->data + sb->len, s, n);
    sb->len += n;
    sb->data[sb->len] = '\0';
}

void sb_puts(strbuf *sb, const char *s) { sb_putn(sb, s, strlen(s)); }
void sb_putc(strbuf *sb, char c) { sb_putn(sb, &c, 1); }
const char *sb_str(const strbuf *sb) { return sb->data && !sb->failed ? sb->data : ""; }

/* ---- UTF-8 ----------------------------------------------------------------- */

size_t utf8_decode(const char *s, size_t len, uint32_t *cp)
{
    const unsigned char *u = (const unsigned char *)s;
    if (len == 0) return 0;
    if (u[0] < 0x80) {
        *cp = u[0];
        return 1;
    }
    size_t n;
    uint32_t c, min;
    if (u[0] >= 0xC2 && u[0] <= 0xDF) { n = 2; c = u[0] & 0x1Fu; min = 0x80; }
    else if (u[0] >= 0xE0 && u[0] <= 0xEF) { n = 3; c = u[0] & 0x0Fu; min = 0x800; }
    else if (u[0] >= 0xF0 && u[0] <= 0xF4) { n = 4; c = u[0] & 0x07u; min = 0x10000; }
    else return 0;
    if (len < n) return 0;
    for (size_t i = 1; i < n; i++) {
        if ((u[i] & 0xC0) != 0x80) return 0;
        c = (c << 6) | (u[i] & 0x3Fu);
    }
    if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF)) return 0;
    *cp = c;
    return n;
}

/* Code points a terminal acts on instead of showing: C0, DEL, C1, and the
 * bidi embedding/override/isolate marks ("Trojan Source"). */
int text_is_control(uint32_t c)
{
    return c < 0x20 || (c >= 0x7F && c <= 0x9F) || c == 0x200E || c == 0x200F ||
           (c >= 0x202A && c <= 0x202E) || (c >= 0x2066 && c <= 0x2069);
}

/* Escaped form of one character into out (NUL-terminated); returns its width. */
static size_t escape_one(char out[16], const char *s, size_t n, uint32_t c, int quoted)
{
    if (n == 0) return (size_t)snprintf(out, 16, "\\x%02X", (unsigned)(unsigned char)s[0]);
    if (text_is_control(c)) {
        switch (c) {
        case '\n': return (size_t)snprintf(out, 16, "\\n");
        case '\t': return (size_t)snprintf(out, 16, "\\t");
        case '\r': return (size_t)snprintf(out, 16, "\\r");
        default: break;
        }
        if (c < 0x80) return (size_t)snprintf(out, 16, "\\x%02X", (unsigned)c);
        return (size_t)snprintf(out, 16, "\\u%04X", (unsigned)c);
    }
    if (quoted && (c == '"' || c == '\\')) return (size_t)snprintf(out, 16, "\\%c", (char)c);
    memcpy(out, s, n);
    out[n] = '\0';
    return 1;
}

int text_escape(strbuf *sb, const char *s, size_t len, int quoted, size_t max_width)
{
    size_t width = 0;
    int cut = 0;
    if (quoted) sb_putc(sb, '"');
    for (size_t i = 0; i < len;) {
        uint32_t c = 0;
        size_t n = utf8_decode(s + i, len - i, &c);
        char piece[16];
        size_t w = escape_one(piece, s + i, n, c, quoted);
        if (max_width && width + w > max_width) {
            cut = 1;
            break;
        }
        sb_puts(sb, piece);
        width += w;
        i += n ? n : 1;
    }
    if (quoted) sb_putc(sb, '"');
    return cut;
}

size_t text_width(const char *s)
{
    size_t w = 0;
    for (; *s; s++)
        if (((unsigned char)*s & 0xC0) != 0x80) w++;
    return w;
}

/* ---- numbers --------------------------------------------------------------- */

const char *text_u64_grouped(char buf[TEXT_U64_SIZE], uint64_t v)
{
    char digits[24];
    int n = snprintf(digits, sizeof digits, "%" PRIu64, v);
    char *p = buf;
    for (int i = 0; i < n; i++) {
        if (i > 0 && (n - i) % 3 == 0) *p++ = ',';
        *p++ = digits[i];
    }
    *p = '\0';
    return buf;
}

static int reads_back(const char *text, double v, int single)
{
    if (single) return strtof(text, NULL) == (float)v;
    return strtod(text, NULL) == v;
}

/* A reader that sees "16" or "1e-05" may take an integer or a string
 * (YAML 1.1 wants a '.' before the exponent), so make the float explicit. */
static void force_point(char *buf, size_t cap)
{
    if (strchr(buf, '.')) return;
    char *e = strchr(buf, 'e');
    size_t len = strlen(buf);
    if (len + 3 > cap) return;
    if (!e) {
        memcpy(buf + len, ".0", 3);
        return;
    }
    memmove(e + 2, e, strlen(e) + 1);
    e[0] = '.';
    e[1] = '0';
}

const char *text_real(char buf[TEXT_REAL_SIZE], double v, int single)
{
    if (isnan(v)) return strcpy(buf, "nan");
    if (isinf(v)) return strcpy(buf, v < 0 ? "-inf" : "inf");
    int max_digits = single ? 9 : 17;
    for (int p = 1; p <= max_digits; p++) {
        snprintf(buf, TEXT_REAL_SIZE, "%.*g", p, v);
        if (reads_back(buf, v, single)) break;
    }
    force_point(buf, TEXT_REAL_SIZE);
    return buf;
}

const char *text_shape(char buf[TEXT_SHAPE_SIZE], const uint64_t *dims, uint32_t ndim)
{
    size_t pos = 0;
    buf[pos++] = '[';
    for (uint32_t i = 0; i < ndim && i < LORA_MAX_DIMS; i++) {
        int n = snprintf(buf + pos, TEXT_SHAPE_SIZE - pos, "%s%" PRIu64, i ? "," : "", dims[i]);
        if (n < 0 || (size_t)n >= TEXT_SHAPE_SIZE - pos - 1) break;
        pos += (size_t)n;
    }
    buf[pos++] = ']';
    buf[pos] = '\0';
    return buf;
}
