/*
 * merge_index.c - a sharded safetensors base: the index
 * (model.safetensors.index.json, {"metadata": {"total_size": N},
 * "weight_map": {tensor: shard file}}) and its shards. The index names
 * files to open, so every shard name must be a plain file name inside the
 * base directory: a "../x" or "/etc/x" in a downloaded index must not make
 * the merge read (or, for the output, write) elsewhere.
 */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include "adapter_dir.h"
#include "merge.h"

static int plain_file_name(const char *s)
{
    return s[0] != '\0' && strchr(s, '/') == NULL && strcmp(s, ".") != 0 && strcmp(s, "..") != 0;
}

static int cmp_str(const void *x, const void *y) { return strcmp(*(const char *const *)x, *(const char *const *)y); }

/* The distinct shard names of the weight map, sorted (the order of the
 * output files: model-00001-of-0000N first). */
static lora_status shard_names(mbase *b, const json_t *map, const char ***names, size_t *count, lora_error *err)
{
    size_t n = json_object_size(map), k = 0;
    const char **v = lora_mem_calloc(&b->alloc, n ? n : 1, sizeof *v);
    if (!v) return lora_error_set(err, LORA_E_OUT_OF_MEMORY, LORA_NO_OFFSET, "out of memory");
    const char *key;
    json_t *val;
    json_object_foreach((json_t *)(uintptr_t)map, key, val) {
        if (!json_is_string(val) || !plain_file_name(json_string_value(val))) {
            lora_mem_free(&b->alloc, v);
            return lora_error_set(err, LORA_E_BAD_JSON, LORA_NO_OFFSET,
                                  "base index '%s': weight_map['%s'] is not the name of a file in the directory",
                                  b->index_path, key);
        }
        v[k++] = json_string_value(val);
    }
    qsort(v, k, sizeof *v, cmp_str);
    size_t u = 0;
    for (size_t i = 0; i < k; i++)
        if (u == 0 || strcmp(v[u - 1], v[i]) != 0) v[u++] = v[i];
    *names = v;
    *count = u;
    return LORA_OK;
}

/* Every entry of the weight map is in the shard it names. */
static lora_status check_map(const mbase *b, const json_t *map, lora_error *err)
{
    const char *key;
    json_t *val;
    json_object_foreach((json_t *)(uintptr_t)map, key, val) {
        uint32_t i = mbase_find(b, key);
        if (i == UINT32_MAX || strcmp(b->shards[b->tensors[i].shard].file_name, json_string_value(val)) != 0)
            return lora_error_set(err, LORA_E_NOT_FOUND, LORA_NO_OFFSET,
                                  "base index '%s': tensor '%s' is mapped to '%s', which does not hold it",
                                  b->index_path, key, json_string_value(val));
    }
    return LORA_OK;
}

static lora_status load_json(mbase *b, json_t **root, lora_error *err)
{
    uint8_t *text = NULL;
    size_t size = 0;
    LORA_FORWARD_IF_ERROR(lora_adir_read_config(&b->alloc, b->index_path, b->index_path, &text, &size, err));
    json_error_t je;
    *root = json_loadb((const char *)text, size, JSON_REJECT_DUPLICATES, &je);
    lora_mem_free(&b->alloc, text);
    if (!*root)
        return lora_error_set(err, LORA_E_BAD_JSON, LORA_NO_OFFSET, "base index '%s': line %d: %s", b->index_path,
                              je.line, je.text);
    b->index = *root;
    const json_t *map = json_object_get(*root, "weight_map");
    if (!json_is_object(*root) || !json_is_object(map) || json_object_size(map) == 0)
        return lora_error_set(err, LORA_E_BAD_JSON, LORA_NO_OFFSET,
                              "base index '%s': no \"weight_map\" object naming the shards", b->index_path);
    const json_t *meta = json_object_get(*root, "metadata");
    if (meta && !json_is_object(meta))
        return lora_error_set(err, LORA_E_BAD_JSON, LORA_NO_OFFSET, "base index '%s': \"metadata\" is not an object",
                              b->index_path);
    return LORA_OK;
}

lora_status mindex_load(mbase *b, const char *path, lora_error *err)
{
    b->kind = MBASE_SHARDED;
    size_t len = strlen(path);
    b->index_path = lora_mem_alloc(&b->alloc, len + 1);
    if (!b->index_path) return lora_error_set(err, LORA_E_OUT_OF_MEMORY, LORA_NO_OFFSET, "out of memory");
    memcpy(b->index_path, path, len + 1);
    json_t *root = NULL;
    LORA_FORWARD_IF_ERROR(load_json(b, &root, err));
    const json_t *map = json_object_get(root, "weight_map");
    const char **names = NULL;
    size_t count = 0;
    LORA_FORWARD_IF_ERROR(shard_names(b, map, &names, &count, err));
    lora_status st = LORA_OK;
    b->shards = lora_mem_calloc(&b->alloc, count, sizeof *b->shards);
    if (!b->shards) st = lora_error_set(err, LORA_E_OUT_OF_MEMORY, LORA_NO_OFFSET, "out of memory");
    const char *slash = strrchr(path, '/');
    size_t dir_len = slash ? (size_t)(slash - path) : 1;
    for (size_t i = 0; i < count && st == LORA_OK; i++) {
        char *dir = lora_adir_strndup(&b->alloc, slash ? path : ".", dir_len);
        char *shard = dir ? lora_adir_join(&b->alloc, dir, names[i]) : NULL;
        if (!shard) st = lora_error_set(err, LORA_E_OUT_OF_MEMORY, LORA_NO_OFFSET, "out of memory");
        else st = mbase_add_shard(b, shard, strlen(shard) - strlen(names[i]), err);
        lora_mem_free(&b->alloc, shard);
        lora_mem_free(&b->alloc, dir);
    }
    lora_mem_free(&b->alloc, names);
    return st;
}

lora_status mindex_check(const mbase *b, lora_error *err)
{
    return check_map(b, json_object_get((json_t *)b->index, "weight_map"), err);
}

lora_status mindex_render(const mbase *b, uint64_t total_size, char **text, size_t *len, lora_error *err)
{
    json_t *root = json_deep_copy((json_t *)b->index);
    json_t *meta = root ? json_object_get(root, "metadata") : NULL;
    if (root && !meta) {
        meta = json_object();
        if (meta && json_object_set_new(root, "metadata", meta) != 0) meta = NULL;
    }
    int ok = meta && json_object_set_new(meta, "total_size", json_integer((json_int_t)total_size)) == 0;
    char *s = ok ? json_dumps(root, JSON_INDENT(2)) : NULL;
    json_decref(root);
    if (!s) return lora_error_set(err, LORA_E_OUT_OF_MEMORY, LORA_NO_OFFSET, "out of memory");
    size_t n = strlen(s);
    char *out = lora_mem_alloc(&b->alloc, n + 2);
    if (out) {
        memcpy(out, s, n);
        out[n] = '\n';
        out[n + 1] = '\0';
    }
    free(s);
    if (!out) return lora_error_set(err, LORA_E_OUT_OF_MEMORY, LORA_NO_OFFSET, "out of memory");
    *text = out;
    *len = n + 1;
    return LORA_OK;
}

void mindex_free(mbase *b)
{
    if (b->index) json_decref((json_t *)b->index);
    b->index = NULL;
    lora_mem_free(&b->alloc, b->index_path);
    b->index_path = NULL;
}
