/* XXH3-64 checksums as the spec defines them (seed 0). */
/* The state struct is needed on the stack (no allocation); its layout is
 * stable within xxHash 0.8.x, which the package dependency pins. */
#define XXH_STATIC_LINKING_ONLY
#include <xxhash.h>
#include "internal.h"

uint64_t lora_xxh3(const void *data, size_t size)
{
    return (uint64_t)XXH3_64bits(data, size);
}

uint64_t lora_header_checksum(const uint8_t *file, uint64_t data_offset)
{
    /* The checksum field itself (bytes 120..127) is the only header byte left
     * out, so the hash can be stored inside what it covers. A stack state keeps
     * this allocation-free. */
    XXH3_state_t state;
    XXH3_64bits_reset(&state);
    XXH3_64bits_update(&state, file, LORA_FMT_OFF_HEADER_CHECKSUM);
    XXH3_64bits_update(&state, file + LORA_FMT_HEADER_SIZE, (size_t)(data_offset - LORA_FMT_HEADER_SIZE));
    return (uint64_t)XXH3_64bits_digest(&state);
}
