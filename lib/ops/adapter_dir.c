/* Paths, config and staged output files of directory-style adapters. */
#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include "../io/lfs_pointer.h"
#include "../io/map_file.h"
#include "adapter_dir.h"

char *lora_adir_strndup(const lora_allocator *a, const char *s, size_t len)
{
    if (len == SIZE_MAX) return NULL;
    char *p = lora_mem_alloc(a, len + 1);
    if (!p) return NULL;
    memcpy(p, s, len);
    p[len] = '\0';
    return p;
}

char *lora_adir_join(const lora_allocator *a, const char *dir, const char *name)
{
    size_t dl = strlen(dir), nl = strlen(name);
    int slash = dl > 0 && dir[dl - 1] == '/';
    if (dl > SIZE_MAX - nl - 2) return NULL;
    char *p = lora_mem_alloc(a, dl + nl + 2);
    if (!p) return NULL;
    memcpy(p, dir, dl);
    if (!slash) p[dl++] = '/';
    memcpy(p + dl, name, nl + 1);
    return p;
}

void lora_adir_paths_free(const lora_allocator *a, lora_adir_paths *p)
{
    if (!p) return;
    lora_mem_free(a, p->weights);
    lora_mem_free(a, p->config);
    p->weights = p->config = NULL;
}

lora_status lora_adir_resolve(const lora_allocator *a, const char *input, const char *weights_name,
                              lora_adir_paths *out, lora_error *err)
{
    struct stat st;
    out->weights = out->config = NULL;
    if (stat(input, &st) == 0 && S_ISDIR(st.st_mode)) {
        out->weights = lora_adir_join(a, input, weights_name);
        out->config = lora_adir_join(a, input, "adapter_config.json");
    } else {
        /* The weights file named directly: its config sits beside it. */
        const char *slash = strrchr(input, '/');
        char *dir = slash ? lora_adir_strndup(a, input, (size_t)(slash - input) + 1) : lora_adir_strndup(a, "./", 2);
        out->weights = lora_adir_strndup(a, input, strlen(input));
        out->config = dir ? lora_adir_join(a, dir, "adapter_config.json") : NULL;
        lora_mem_free(a, dir);
    }
    if (!out->weights || !out->config) {
        lora_adir_paths_free(a, out);
        return lora_error_set(err, LORA_E_OUT_OF_MEMORY, LORA_NO_OFFSET, "out of memory");
    }
    return LORA_OK;
}

lora_status lora_adir_read_config(const lora_allocator *a, const char *path, const char *what, uint8_t **data,
                                  size_t *size, lora_error *err)
{
    void *map = NULL;
    size_t n = 0;
    lora_status st = lora_io_map_file(path, &map, &n, err);
    if (st != LORA_OK) return st;
    /* Checked before the size cap: a pointer is small, but its message is
     * the one that tells the user what to do. */
    st = lora_lfs_pointer_check(map, n, what, err);
    if (st == LORA_OK && n > LORA_ADIR_MAX_CONFIG)
        st = lora_error_set(err, LORA_E_LIMIT_EXCEEDED, LORA_NO_OFFSET,
                            "%s: %zu bytes exceed the limit of %zu for a config", what, n, LORA_ADIR_MAX_CONFIG);
    uint8_t *copy = NULL;
    if (st == LORA_OK) {
        copy = lora_mem_alloc(a, n + 1);
        if (!copy) st = lora_error_set(err, LORA_E_OUT_OF_MEMORY, LORA_NO_OFFSET, "out of memory");
    }
    if (st == LORA_OK) {
        if (n) memcpy(copy, map, n);
        copy[n] = '\0';
        *data = copy;
        *size = n;
    }
    lora_io_unmap_file(map, n);
    return st;
}

lora_status lora_adir_prepare_output(const char *dir, const char *what, lora_error *err)
{
    if (mkdir(dir, 0777) == 0) return LORA_OK;
    int e = errno;
    struct stat st;
    if (e == EEXIST && stat(dir, &st) == 0) {
        if (S_ISDIR(st.st_mode)) return LORA_OK;
        return lora_error_set(err, LORA_E_INVALID_ARGUMENT, LORA_NO_OFFSET,
                              "%s: output '%s' exists and is not a directory", what, dir);
    }
    return lora_error_set(err, e == ENOSPC || e == EDQUOT ? LORA_E_NO_SPACE : LORA_E_IO, LORA_NO_OFFSET,
                          "%s: cannot create directory '%s': %s", what, dir, strerror(e));
}

lora_status lora_adir_stage_bytes(const lora_allocator *a, const char *path, const lora_write_options *wopts,
                                  const lora_io *io, const void *data, size_t size, lora_afile **out,
                                  lora_error *err)
{
    lora_afile *f = NULL;
    LORA_FORWARD_IF_ERROR(lora_afile_open(a, io, path, wopts, &f, err));
    lora_status st = lora_afile_write(f, data, size, err);
    if (st == LORA_OK) st = lora_afile_flush(f, err);
    if (st != LORA_OK) {
        lora_afile_abort(f);
        return st;
    }
    *out = f;
    return LORA_OK;
}

void lora_adir_abort(lora_afile **files, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        lora_afile_abort(files[i]);
        files[i] = NULL;
    }
}

lora_status lora_adir_commit(lora_afile **files, size_t n, lora_error *err)
{
    return lora_afile_commit_all(files, n, err);
}
