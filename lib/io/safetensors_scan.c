/* The header text, bounded before jansson parses it.
 *
 * Depth. jansson recurses once per nesting level up to its own cap of 2048,
 * some hundreds of KiB of stack: more than a small thread stack (musl gives
 * 128 KiB). A header needs 3 levels, so anything deeper than
 * LORA_ST_MAX_JSON_DEPTH (64) is refused here.
 *
 * Size. jansson builds its whole tree before any schema check can run, at
 * roughly 200 bytes per object member, 100 per container and 40 per array
 * element, so a 100 MB header of tiny entries would cost gigabytes. The
 * three are counted here (':' = members, '{' '[' = containers, ',' inside an
 * array = elements) against budgets derived from the caller's limits with
 * T = max_tensors and M = max_metadata:
 *   containers <= 4T + 8      (an entry has 3: itself, shape, data_offsets)
 *   members    <= 6T + M + 8  (an entry has 4: its key, dtype, shape, data_offsets)
 *   elements   <= 10T + 8     (rank 8 + 2 offsets: 8 separating commas)
 * which leaves room for a few unknown keys while keeping the tree within
 * about twice what T real tensors need. The top-level commas bound the
 * entry count itself.
 *
 * Where the text is malformed, jansson stops at the same token or earlier
 * (it delimits strings the same way), so it never nests deeper or builds
 * more than this pass counted. */
#include "safetensors_private.h"

typedef struct {
    uint64_t containers, members, elements;
} budget;

static lora_status too_many(lora_error *err, uint64_t i, uint64_t limit, const char *what)
{
    return lora_error_set(err, LORA_E_LIMIT_EXCEEDED, 8 + i,
                          "safetensors: header holds more than %llu %s for its tensor and metadata limits "
                          "(offset %llu)",
                          (unsigned long long)limit, what, (unsigned long long)(8 + i));
}

lora_status lora_st_prescan(const uint8_t *p, uint64_t n, const lora_st_limits *lim, lora_error *err)
{
    /* max_tensors and max_metadata are 32-bit: no overflow in 64 bits. */
    uint64_t t = lim->max_tensors, m = lim->max_metadata;
    const budget cap = {4 * t + 8, 6 * t + m + 8, 10 * t + 8};
    budget used = {0, 0, 0};
    uint64_t top_commas = 0;
    uint64_t is_object = 0; /* bit d-1: the container at depth d is an object (depth <= 64) */
    uint32_t depth = 0;
    int in_string = 0;
    for (uint64_t i = 0; i < n; i++) {
        uint8_t c = p[i];
        if (in_string) {
            if (c == '\\') i++;
            else if (c == '"') in_string = 0;
        } else if (c == '"') {
            in_string = 1;
        } else if (c == '{' || c == '[') {
            if (depth == LORA_ST_MAX_JSON_DEPTH)
                return lora_error_set(err, LORA_E_BAD_JSON, 8 + i,
                                      "safetensors: header JSON nests deeper than %u levels (offset %llu)",
                                      LORA_ST_MAX_JSON_DEPTH, (unsigned long long)(8 + i));
            uint64_t bit = UINT64_C(1) << depth++;
            is_object = c == '{' ? is_object | bit : is_object & ~bit;
            if (++used.containers > cap.containers) return too_many(err, i, cap.containers, "objects and arrays");
        } else if (c == '}' || c == ']') {
            if (depth > 0) depth--;
        } else if (c == ':') {
            if (++used.members > cap.members) return too_many(err, i, cap.members, "object members");
        } else if (c == ',' && depth > 0) {
            /* n tensors and __metadata__ need n top-level commas. */
            if (depth == 1 && ++top_commas > t) return too_many(err, i, t + 1, "entries");
            if (!((is_object >> (depth - 1)) & 1) && ++used.elements > cap.elements)
                return too_many(err, i, cap.elements, "array elements");
        }
    }
    return LORA_OK;
}
