/* Git LFS pointer detection (git-lfs docs/spec.md: "version" line first,
 * then sorted "key value" lines, each ending in LF; under 1024 bytes). */
#include <string.h>
#include "lfs_pointer.h"

#define LFS_VERSION_LINE "version https://git-lfs.github.com/spec/v1"
#define LFS_MAX_POINTER 1024u

/* Copy the run of bytes after "\n<key>" that satisfy `ok`, at most cap - 1
 * of them; "unknown" if the key is absent or the run is empty. */
static void field(const uint8_t *p, size_t n, const char *key, int (*ok)(uint8_t), char *out, size_t cap)
{
    size_t klen = strlen(key);
    strcpy(out, "unknown");
    for (size_t i = 0; i + klen < n; i++) {
        if (p[i] != '\n' || memcmp(p + i + 1, key, klen) != 0) continue;
        size_t j = i + 1 + klen, k = 0;
        while (j < n && k + 1 < cap && ok(p[j])) out[k++] = (char)p[j++];
        if (k > 0) out[k] = '\0';
        return;
    }
}

static int is_hex(uint8_t c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); }
static int is_digit(uint8_t c) { return c >= '0' && c <= '9'; }

lora_status lora_lfs_pointer_check(const uint8_t *data, size_t size, const char *what, lora_error *err)
{
    size_t vlen = sizeof LFS_VERSION_LINE - 1;
    if (!data || size < vlen || memcmp(data, LFS_VERSION_LINE, vlen) != 0) return LORA_OK;
    /* Only the pointer's own bytes are searched, whatever follows. */
    size_t n = size < LFS_MAX_POINTER ? size : LFS_MAX_POINTER;
    char oid[65], len[21];
    field(data, n, "oid sha256:", is_hex, oid, sizeof oid);
    field(data, n, "size ", is_digit, len, sizeof len);
    return lora_error_set(err, LORA_E_LFS_POINTER, 0,
                          "%s: this is a Git LFS pointer (oid sha256:%s, size %s); fetch the real file", what, oid,
                          len);
}
