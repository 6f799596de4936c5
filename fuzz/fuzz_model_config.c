/*
 * fuzz_model_config - the two other JSON configs read from untrusted
 * directories: mlx-lm's adapter_config.json (lora_mlx_config_parse) and a
 * base model's config.json as GGUF export and import read it
 * (lora_gguf_read_base_config, given the bytes as a file through a memfd),
 * plus lora_mlx_layer_of on the input read as a module name.
 *
 * Properties:
 *   - failures are defined statuses with a NUL-terminated detail;
 *   - an accepted MLX config has a finite scale, a rank of 0 (absent) or
 *     in [1, 2^24], and has_alpha only with a finite binary32 alpha;
 *   - an accepted base config has counts of 0 or in [1, 2^31), a KV head
 *     count whenever there is a head count, a NUL-terminated model_type;
 *     a failed one leaves everything zero;
 *   - lora_mlx_layer_of, when it finds a layer, points `rel` just past
 *     "layers.<digits>." inside the name, and the digits are the index.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include "support/fuzz_common.h"
#include "ops/gguf_names.h"
#include "ops/mlx_config.h"

static void check_mlx(const uint8_t *data, size_t size)
{
    lora_mlx_config c;
    lora_error err;
    lora_status st = lora_mlx_config_parse((const char *)data, size, &c, &err);
    if (st != LORA_OK) {
        fuzz_check_error(st, &err);
        return;
    }
    FUZZ_ASSERT(isfinite(c.scale));
    FUZZ_ASSERT(c.rank <= (1u << 24));
    FUZZ_ASSERT(c.has_alpha == 0 || c.has_alpha == 1);
    if (c.has_alpha) FUZZ_ASSERT(isfinite((float)c.alpha));
    FUZZ_ASSERT(c.dora == 0 || c.dora == 1);
}

/* The input as a NUL-terminated module name (up to its first NUL). */
static void check_layer_of(const uint8_t *data, size_t size)
{
    size_t n = size > 4096 ? 4096 : size;
    char *name = malloc(n + 1);
    FUZZ_ASSERT(name != NULL);
    if (n) memcpy(name, data, n);
    name[n] = '\0';
    uint64_t index = 0;
    const char *rel = NULL;
    if (lora_mlx_layer_of(name, &index, &rel)) {
        size_t len = strlen(name);
        FUZZ_ASSERT(rel > name + 8 && rel <= name + len && rel[-1] == '.');
        const char *d = rel - 1;
        uint64_t v = 0, scale = 1;
        while (d > name && d[-1] >= '0' && d[-1] <= '9') {
            d--;
            v += (uint64_t)(*d - '0') * scale;
            scale *= 10;
        }
        FUZZ_ASSERT(d < rel - 1 && d - name >= 7 && memcmp(d - 7, "layers.", 7) == 0);
        /* the library refuses an index past 2^64, so this sum cannot wrap */
        FUZZ_ASSERT(v == index);
    }
    free(name);
}

static int all_zero(const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i]) return 0;
    return 1;
}

static void check_base_config(const uint8_t *data, size_t size)
{
    int fd = memfd_create("config.json", MFD_CLOEXEC);
    if (fd < 0) return; /* no memfd: the parsers above still ran */
    size_t done = 0;
    while (done < size) {
        ssize_t w = write(fd, data + done, size - done);
        FUZZ_ASSERT(w > 0);
        done += (size_t)w;
    }
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    fuzz_alloc_state as = {0};
    as.justified = fuzz_justified_bytes(size);
    lora_allocator a = fuzz_alloc_hook(&as);
    lora_gguf_hparams hp;
    lora_error err;
    lora_status st = lora_gguf_read_base_config(&a, path, &hp, &err);
    close(fd);
    fuzz_alloc_check_empty(&as);
    if (st != LORA_OK) {
        fuzz_check_error(st, &err);
        return;
    }
    FUZZ_ASSERT(memchr(hp.model_type, '\0', sizeof hp.model_type) != NULL);
    FUZZ_ASSERT(hp.n_head < (1ull << 31) && hp.n_head_kv < (1ull << 31) && hp.hidden < (1ull << 31));
    if (hp.n_head) FUZZ_ASSERT(hp.n_head_kv != 0);
    if (!hp.n_head && !hp.n_head_kv && !hp.hidden && !hp.model_type[0]) FUZZ_ASSERT(all_zero(&hp, sizeof hp));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_mlx(data, size);
    check_layer_of(data, size);
    check_base_config(data, size);
    return 0;
}
