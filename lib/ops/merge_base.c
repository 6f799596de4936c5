/*
 * merge_base.c - the base model of a merge, whatever its container: one
 * table of tensors (name, element type, shape outermost first, bytes in the
 * read-only mapping) in the order the output is written, which is the
 * order of the data in the files, so the base is read front to back once.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include "../io/lfs_pointer.h"
#include "merge.h"

const char *mbase_format_name(const mbase *b)
{
    switch (b->kind) {
    case MBASE_ST: return "safetensors";
    case MBASE_SHARDED: return "safetensors-sharded";
    case MBASE_GGUF: return "gguf";
    }
    return "?";
}

void mbase_release(const void *p, uint64_t n)
{
    long page = sysconf(_SC_PAGESIZE);
    if (page <= 0 || !p || n == 0) return;
    uintptr_t mask = (uintptr_t)page - 1, begin = ((uintptr_t)p + mask) & ~mask;
    uintptr_t end = ((uintptr_t)p + (uintptr_t)n) & ~mask;
    /* Read-only file pages: dropping them only unmaps them; the page cache
     * keeps them and a later access maps them again. */
    if (end > begin) (void)madvise((void *)begin, end - begin, MADV_DONTNEED);
}

static mt_type st_type(lora_st_dtype d)
{
    switch (d) {
    case LORA_ST_F32: return MT_F32;
    case LORA_ST_F16: return MT_F16;
    case LORA_ST_BF16: return MT_BF16;
    case LORA_ST_BOOL:
    case LORA_ST_U8:
    case LORA_ST_I8:
    case LORA_ST_F8_E5M2:
    case LORA_ST_F8_E4M3:
    case LORA_ST_I16:
    case LORA_ST_U16:
    case LORA_ST_I32:
    case LORA_ST_U32:
    case LORA_ST_F64:
    case LORA_ST_I64:
    case LORA_ST_U64:
    case LORA_ST_DTYPE_COUNT_: break;
    }
    return MT_OTHER;
}

static mt_type ggml_type(uint32_t t)
{
    switch (t) {
    case LORA_GGML_F32: return MT_F32;
    case LORA_GGML_F16: return MT_F16;
    case LORA_GGML_BF16: return MT_BF16;
    case LORA_GGML_Q8_0: return MT_Q8_0;
    case LORA_GGML_Q4_0: return MT_Q4_0;
    default: return MT_OTHER;
    }
}

/* ---- files ---------------------------------------------------------------------- */

/* Open read-only and map the very file that was opened, keeping the
 * descriptor: plain copies are made from it with copy_file_range, and both
 * must be the same file even if the path is replaced meanwhile. */
static lora_status open_map(mbase_shard *sh, lora_error *err)
{
    do sh->fd = open(sh->path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    while (sh->fd < 0 && errno == EINTR);
    if (sh->fd < 0)
        return lora_error_set(err, LORA_E_IO, LORA_NO_OFFSET, "base: cannot open '%s': %s", sh->path, strerror(errno));
    struct stat st;
    if (fstat(sh->fd, &st) != 0)
        return lora_error_set(err, LORA_E_IO, LORA_NO_OFFSET, "base: cannot stat '%s': %s", sh->path, strerror(errno));
    if (!S_ISREG(st.st_mode))
        return lora_error_set(err, LORA_E_NOT_REGULAR_FILE, LORA_NO_OFFSET, "base: '%s' is not a regular file",
                              sh->path);
    if (st.st_size <= 0) return LORA_OK;
    if ((uint64_t)st.st_size > SIZE_MAX)
        return lora_error_set(err, LORA_E_IO, LORA_NO_OFFSET, "base: '%s' is too large to map", sh->path);
    void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, sh->fd, 0);
    if (p == MAP_FAILED)
        return lora_error_set(err, LORA_E_IO, LORA_NO_OFFSET, "base: cannot map '%s': %s", sh->path, strerror(errno));
    sh->map = p;
    sh->map_size = (size_t)st.st_size;
    /* Read once, front to back: ask for read-ahead. */
    (void)madvise(p, sh->map_size, MADV_SEQUENTIAL);
    return LORA_OK;
}

static lora_status set_path(mbase *b, mbase_shard *sh, const char *path, size_t name_offset, lora_error *err)
{
    size_t len = strlen(path);
    sh->path = lora_mem_alloc(&b->alloc, len + 1);
    if (!sh->path) return lora_error_set(err, LORA_E_OUT_OF_MEMORY, LORA_NO_OFFSET, "out of memory");
    memcpy(sh->path, path, len + 1);
    sh->file_name = sh->path + name_offset;
    return LORA_OK;
}

/* ---- name index --------------------------------------------------------------- */

static int by_name_cmp(const void *x, const void *y, void *ctx)
{
    const mbase_tensor *t = ctx;
    return strcmp(t[*(const uint32_t *)x].name, t[*(const uint32_t *)y].name);
}

static lora_status build_name_index(mbase *b, lora_error *err)
{
    b->by_name = lora_mem_calloc(&b->alloc, b->tensor_count ? b->tensor_count : 1, sizeof *b->by_name);
    if (!b->by_name) return lora_error_set(err, LORA_E_OUT_OF_MEMORY, LORA_NO_OFFSET, "out of memory");
    for (uint32_t i = 0; i < b->tensor_count; i++) b->by_name[i] = i;
    qsort_r(b->by_name, b->tensor_count, sizeof *b->by_name, by_name_cmp, b->tensors);
    for (uint32_t i = 1; i < b->tensor_count; i++) {
        const mbase_tensor *x = &b->tensors[b->by_name[i - 1]], *y = &b->tensors[b->by_name[i]];
        if (strcmp(x->name, y->name) == 0)
            return lora_error_set(err, LORA_E_DUPLICATE_NAME, LORA_NO_OFFSET,
                                  "base: tensor '%s' is in both '%s' and '%s'", x->name,
                                  b->shards[x->shard].file_name, b->shards[y->shard].file_name);
    }
    return LORA_OK;
}

uint32_t mbase_find(const mbase *b, const char *name)
{
    size_t lo = 0, hi = b->tensor_count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(b->tensors[b->by_name[mid]].name, name);
        if (c == 0) return b->by_name[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return UINT32_MAX;
}

/* ---- safetensors ------------------------------------------------------------ */

static lora_status add_st_tensors(mbase *b, uint32_t s, lora_error *err)
{
    const lora_st_file *f = b->shards[s].st;
    uint64_t total = (uint64_t)b->tensor_count + f->tensor_count;
    if (total > UINT32_MAX) return lora_error_set(err, LORA_E_LIMIT_EXCEEDED, LORA_NO_OFFSET, "base: too many tensors");
    mbase_tensor *t = b->tensors;
    size_t cap = (size_t)total ? (size_t)total : 1;
    mbase_tensor *n = lora_mem_calloc(&b->alloc, cap, sizeof *n);
    if (!n) return lora_error_set(err, LORA_E_OUT_OF_MEMORY, LORA_NO_OFFSET, "out of memory");
    if (t) memcpy(n, t, b->tensor_count * sizeof *n);
    lora_mem_free(&b->alloc, t);
    b->tensors = n;
    b->shards[s].first = b->tensor_count;
    b->shards[s].count = f->tensor_count;
    for (uint32_t k = 0; k < f->tensor_count; k++) {
        const lora_st_tensor *x = &f->tensors[f->by_offset[k]];
        mbase_tensor *y = &b->tensors[b->tensor_count++];
        y->name = x->name;
        y->shard = s;
        y->raw_type = (uint32_t)x->dtype;
        y->type = st_type(x->dtype);
        y->ndim = x->ndim;
        memcpy(y->shape, x->shape, sizeof y->shape);
        y->numel = x->numel;
        y->nbytes = x->size;
        y->data = x->data;
        y->file_offset = x->offset;
        b->data_bytes += x->size;
    }
    return LORA_OK;
}

/* The shard's file is open and mapped: parse it as safetensors. */
static lora_status parse_st(mbase *b, uint32_t s, lora_error *err)
{
    mbase_shard *sh = &b->shards[s];
    LORA_FORWARD_IF_ERROR(lora_lfs_pointer_check(sh->map, sh->map_size, sh->path, err));
    lora_st_options so;
    memset(&so, 0, sizeof so);
    so.allocator = b->alloc;
    lora_status st = lora_st_parse(sh->map, sh->map_size, &so, &sh->st, err);
    if (st != LORA_OK && err && !strstr(err->detail, sh->path)) {
        char detail[LORA_ERROR_DETAIL_SIZE];
        snprintf(detail, sizeof detail, "%s", err->detail);
        lora_error_set(err, st, err->offset, "base '%s': %s", sh->path, detail);
    }
    return st == LORA_OK ? add_st_tensors(b, s, err) : st;
}

static lora_status add_shard(mbase *b, const char *path, size_t name_offset, lora_error *err)
{
    uint32_t s = b->shard_count++;
    mbase_shard *sh = &b->shards[s];
    sh->fd = -1;
    LORA_FORWARD_IF_ERROR(set_path(b, sh, path, name_offset, err));
    LORA_FORWARD_IF_ERROR(open_map(sh, err));
    return parse_st(b, s, err);
}

lora_status mbase_add_shard(mbase *b, const char *path, size_t name_offset, lora_error *err)
{
    return add_shard(b, path, name_offset, err);
}

static lora_status open_single(mbase *b, const char *path, lora_error *err)
{
    b->kind = MBASE_ST;
    b->shards = lora_mem_calloc(&b->alloc, 1, sizeof *b->shards);
    if (!b->shards) return lora_error_set(err, LORA_E_OUT_OF_MEMORY, LORA_NO_OFFSET, "out of memory");
    const char *slash = strrchr(path, '/');
    return add_shard(b, path, slash ? (size_t)(slash + 1 - path) : 0, err);
}

/* ---- GGUF ------------------------------------------------------------------------ */

static void gguf_hparams(mbase *b)
{
    lora_gguf_str s;
    char arch[64], key[128];
    if (lora_gguf_get_str(b->gguf, "general.architecture", &s, NULL) != LORA_OK || s.len == 0 ||
        s.len >= sizeof arch || memchr(s.ptr, '\0', (size_t)s.len))
        return;
    memcpy(arch, s.ptr, (size_t)s.len);
    arch[s.len] = '\0';
    b->arch = lora_gguf_arch_find(arch);
    uint32_t v;
    snprintf(key, sizeof key, "%s.attention.head_count", arch);
    if (lora_gguf_get_u32(b->gguf, key, &v, NULL) == LORA_OK) b->n_head = v;
    snprintf(key, sizeof key, "%s.attention.head_count_kv", arch);
    b->n_head_kv = lora_gguf_get_u32(b->gguf, key, &v, NULL) == LORA_OK ? v : b->n_head;
}

/* The single shard's file is open and mapped: parse it as GGUF. */
static lora_status parse_gguf(mbase *b, lora_error *err)
{
    mbase_shard *sh = &b->shards[0];
    b->kind = MBASE_GGUF;
    LORA_FORWARD_IF_ERROR(lora_gguf_parse(sh->map, sh->map_size, NULL, &b->alloc, &b->gguf, err));
    uint64_t n = lora_gguf_tensor_count(b->gguf), data = lora_gguf_data_offset(b->gguf);
    if (n > UINT32_MAX) return lora_error_set(err, LORA_E_LIMIT_EXCEEDED, LORA_NO_OFFSET, "base: too many tensors");
    b->tensors = lora_mem_calloc(&b->alloc, n ? (size_t)n : 1, sizeof *b->tensors);
    if (!b->tensors) return lora_error_set(err, LORA_E_OUT_OF_MEMORY, LORA_NO_OFFSET, "out of memory");
    sh->count = (uint32_t)n;
    /* Info order is data order: the reader requires the offsets to be the
     * running sum of the padded sizes. */
    for (uint64_t i = 0; i < n; i++) {
        const lora_gguf_tensor *x = lora_gguf_tensor_at(b->gguf, i);
        mbase_tensor *y = &b->tensors[b->tensor_count++];
        y->name = x->name;
        y->raw_type = x->type;
        y->type = ggml_type(x->type);
        y->ndim = x->n_dims;
        y->numel = 1;
        for (uint32_t d = 0; d < x->n_dims; d++) {
            y->shape[d] = x->ne[x->n_dims - 1 - d];
            y->numel *= x->ne[d];
        }
        y->nbytes = x->nbytes;
        y->data = x->data;
        y->file_offset = data + x->offset;
        b->data_bytes += x->nbytes;
    }
    gguf_hparams(b);
    return LORA_OK;
}

/* ---- entry ----------------------------------------------------------------------- */

static int file_in(const char *dir, const char *name, char *out, size_t cap)
{
    struct stat st;
    int n = snprintf(out, cap, "%s/%s", dir, name);
    return n > 0 && (size_t)n < cap && stat(out, &st) == 0 && S_ISREG(st.st_mode);
}

/* The one file in `dir` whose name ends with `suffix`: 1 found, 0 none, -1 several. */
static int only_file_ending(const char *dir, const char *suffix, char *out, size_t cap)
{
    DIR *d = opendir(dir);
    if (!d) return 0;
    int found = 0;
    size_t sl = strlen(suffix);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t n = strlen(e->d_name);
        if (n <= sl || e->d_name[0] == '.' || strcmp(e->d_name + n - sl, suffix) != 0) continue;
        char path[4096];
        if (!file_in(dir, e->d_name, path, sizeof path)) continue;
        if (found++ == 0) snprintf(out, cap, "%s", path);
    }
    closedir(d);
    return found > 1 ? -1 : found;
}

static lora_status open_dir(mbase *b, const char *dir, lora_error *err)
{
    char path[4096];
    if (file_in(dir, "model.safetensors.index.json", path, sizeof path) ||
        only_file_ending(dir, ".safetensors.index.json", path, sizeof path) == 1)
        return mindex_load(b, path, err);
    if (file_in(dir, "model.safetensors", path, sizeof path) ||
        only_file_ending(dir, ".safetensors", path, sizeof path) == 1)
        return open_single(b, path, err);
    return lora_error_set(err, LORA_E_UNKNOWN_FORMAT, LORA_NO_OFFSET,
                          "base: '%s' is a directory without model.safetensors.index.json or model.safetensors",
                          dir);
}

static lora_status open_file(mbase *b, const char *path, lora_error *err)
{
    b->shards = lora_mem_calloc(&b->alloc, 1, sizeof *b->shards);
    if (!b->shards) return lora_error_set(err, LORA_E_OUT_OF_MEMORY, LORA_NO_OFFSET, "out of memory");
    mbase_shard *sh = &b->shards[0];
    sh->fd = -1;
    b->shard_count = 1;
    const char *slash = strrchr(path, '/');
    LORA_FORWARD_IF_ERROR(set_path(b, sh, path, slash ? (size_t)(slash + 1 - path) : 0, err));
    LORA_FORWARD_IF_ERROR(open_map(sh, err));
    const uint8_t *p = sh->map;
    LORA_FORWARD_IF_ERROR(lora_lfs_pointer_check(p, sh->map_size, path, err));
    if (sh->map_size >= 4 && memcmp(p, LORA_GGUF_MAGIC, 4) == 0) return parse_gguf(b, err);
    if (!lora_st_sniff(p, sh->map_size))
        return lora_error_set(err, LORA_E_UNKNOWN_FORMAT, 0, "base: '%s' is neither a safetensors nor a GGUF file",
                              path);
    b->kind = MBASE_ST;
    return parse_st(b, 0, err);
}

lora_status mbase_open(const lora_allocator *a, const char *path, mbase *b, lora_error *err)
{
    memset(b, 0, sizeof *b);
    if (a) b->alloc = *a;
    struct stat st;
    if (stat(path, &st) != 0)
        return lora_error_set(err, LORA_E_IO, LORA_NO_OFFSET, "base: cannot open '%s': %s", path, strerror(errno));
    lora_status s = S_ISDIR(st.st_mode) ? open_dir(b, path, err) : open_file(b, path, err);
    if (s == LORA_OK) s = build_name_index(b, err);
    if (s == LORA_OK && b->kind == MBASE_SHARDED) s = mindex_check(b, err);
    return s;
}

void mbase_close(mbase *b)
{
    if (!b) return;
    lora_gguf_free(b->gguf);
    for (uint32_t i = 0; i < b->shard_count; i++) {
        mbase_shard *sh = &b->shards[i];
        lora_st_free(sh->st);
        if (sh->map) munmap(sh->map, sh->map_size);
        if (sh->fd >= 0) close(sh->fd);
        lora_mem_free(&b->alloc, sh->path);
    }
    lora_mem_free(&b->alloc, b->shards);
    lora_mem_free(&b->alloc, b->tensors);
    lora_mem_free(&b->alloc, b->by_name);
    for (uint32_t i = 0; i < b->under_count; i++) lora_mem_free(&b->alloc, b->under[i]);
    lora_mem_free(&b->alloc, b->under);
    lora_mem_free(&b->alloc, b->under_tensor);
    mindex_free(b);
    memset(b, 0, sizeof *b);
}
