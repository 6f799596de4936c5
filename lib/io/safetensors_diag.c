/* Error details for safetensors: names made safe to print, and the file
 * offset of a header entry (jansson keeps no positions for values). */
#include <stdio.h>
#include <string.h>
#include "safetensors_private.h"

#define SHOW_MAX 100

void lora_st_show_name(char out[LORA_ST_SHOW_NAME], const char *name, size_t len)
{
    size_t n = len;
    int cut = 0;
    if (n > SHOW_MAX) {
        n = SHOW_MAX;
        /* Back off to a character boundary so the detail stays UTF-8. */
        while (n > 0 && ((uint8_t)name[n] & 0xC0) == 0x80) n--;
        cut = 1;
    }
    /* Names come from the file: an escape sequence in a detail would reach
     * the user's terminal when a tool prints it. */
    for (size_t i = 0; i < n; i++) {
        uint8_t ch = (uint8_t)name[i];
        out[i] = ch < 0x20 || ch == 0x7F ? '?' : (char)ch;
    }
    if (cut) memcpy(out + n, "...", 3), n += 3;
    out[n] = '\0';
}

/* Skip a JSON string whose opening quote is at p[i]; returns the index
 * just past the closing quote. The text was validated by jansson, so the
 * closing quote exists; the bound is kept anyway. */
static uint64_t skip_string(const uint8_t *p, uint64_t n, uint64_t i)
{
    for (i++; i < n; i++) {
        if (p[i] == '\\') i++;
        else if (p[i] == '"') return i + 1;
    }
    return n;
}

uint64_t lora_st_key_offset(const uint8_t *file, uint64_t n, const char *name, size_t len)
{
    const uint8_t *p = file + 8;
    uint64_t depth = 0;
    int expect_key = 0;
    for (uint64_t i = 0; i < n;) {
        uint8_t ch = p[i];
        if (ch == '"') {
            uint64_t end = skip_string(p, n, i);
            if (depth == 1 && expect_key) {
                if (end - i - 2 == len && memcmp(p + i + 1, name, len) == 0) return 8 + i;
                expect_key = 0;
            }
            i = end;
            continue;
        }
        if (ch == '{' || ch == '[') depth++;
        else if ((ch == '}' || ch == ']') && depth > 0) depth--;
        if ((ch == '{' && depth == 1) || (ch == ',' && depth == 1)) expect_key = 1;
        i++;
    }
    return 8;
}

lora_status lora_st_tensor_error(lora_error *err, lora_status st, uint64_t offset, const char *name, size_t name_len,
                                 const char *fmt, ...)
{
    if (!err) return st;
    char shown[LORA_ST_SHOW_NAME];
    char msg[LORA_ERROR_DETAIL_SIZE];
    lora_st_show_name(shown, name, name_len);
    va_list ap;
    va_start(ap, fmt);
    (void)vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return lora_error_set(err, st, offset, "safetensors: tensor '%s': %s (offset %llu)", shown, msg,
                          (unsigned long long)offset);
}
