/* Strict UTF-8 validation (Unicode "well-formed" table, plus no NUL). */
#include "lora_format.h"

/* Length of the well-formed sequence starting at s[0] (which is >= 0x80),
 * or 0 if it is ill-formed or runs past the end. The second byte's range
 * depends on the lead byte: that is what rules out overlongs (E0, F0),
 * surrogates (ED) and code points above U+10FFFF (F4). */
static size_t utf8_seq(const uint8_t *s, size_t avail)
{
    uint8_t c = s[0];
    size_t n;
    uint8_t lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) {
        n = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else {
        return 0; /* continuation byte as lead, C0/C1 overlongs, F5..FF */
    }
    if (avail < n) return 0;
    if (s[1] < lo || s[1] > hi) return 0;
    for (size_t i = 2; i < n; i++)
        if (s[i] < 0x80 || s[i] > 0xBF) return 0;
    return n;
}

int lora_fmt_utf8_valid(const uint8_t *s, size_t len)
{
    if (!s || len == 0) return 0;
    size_t i = 0;
    while (i < len) {
        uint8_t c = s[i];
        if (c < 0x80) {
            /* NUL would silently cut the string short for C callers. */
            if (c == 0) return 0;
            i++;
            continue;
        }
        size_t n = utf8_seq(s + i, len - i);
        if (n == 0) return 0;
        i += n;
    }
    return 1;
}
