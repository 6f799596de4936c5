/*
 * merge_out.c - the output files of a merge: one safetensors or GGUF file
 * per base file, plus the index of a sharded model, each a crash-safe temp
 * file (lib/write/afile.h) until commit.
 *
 * The layout of every file is fixed before any byte is written: the
 * safetensors header comes from lora_st_header_build, the GGUF header from
 * the GGUF writer (its begin() captured in memory), and every tensor's
 * offset follows from the plan's output sizes. Blocks are then written at
 * their offsets, from any thread and in any order (lora_afile_pwrite), and
 * plain copies go file to file in the kernel (lora_afile_copy_range): two
 * threads copy into the page cache twice as fast as one.
 *
 * Every target is opened (and so checked: never an input, never a
 * directory or a device) before the first byte is written. Commit reads
 * each temp file back with its parser, writes the index, fsyncs every
 * file, and only then renames the files in order and the index last, so a
 * reader that trusts the index never finds a shard it names incomplete,
 * and only a failing rename or directory fsync can leave a mix of new
 * and old files.
 */
#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "../io/map_file.h"
#include "adapter_dir.h"
#include "merge.h"

struct mout {
    const mbase *b;
    const mplan *p;
    lora_allocator alloc;
    int32_t dtype;
    uint32_t nfiles;
    lora_afile **af;            /* per base file */
    char **paths;               /* output path per base file */
    uint8_t **header;           /* per file: the bytes before the first tensor */
    size_t *header_size;
    uint64_t *file_size;        /* per file: every byte of it */
    uint64_t *offset;           /* per tensor: where its bytes go in its file */
    uint32_t align;             /* GGUF: tensor data alignment */
    lora_afile *index_af;       /* sharded: the index */
    char *index_out;
    char *created_dir;          /* a directory we made (removed again if it stays empty) */
    uint64_t total, index_bytes;
    const lora_merge_hooks *hooks;
};

static lora_status nomem(lora_error *err)
{
    return lora_error_set(err, LORA_E_OUT_OF_MEMORY, LORA_NO_OFFSET, "out of memory");
}

static int is_dir(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* ---- the files an output must not replace ----------------------------------------- */

typedef struct {
    char **v;
    size_t n, cap;
} strlist;

static int sl_add(const lora_allocator *a, strlist *l, const char *dir, const char *name)
{
    if (l->n == l->cap) return 0;
    l->v[l->n] = dir ? lora_adir_join(a, dir, name) : lora_adir_strndup(a, name, strlen(name));
    return l->v[l->n] ? (l->n++, 1) : 0;
}

static void sl_free(const lora_allocator *a, strlist *l)
{
    for (size_t i = 0; i < l->n; i++) lora_mem_free(a, l->v[i]);
    lora_mem_free(a, l->v);
}

static lora_status collect_inputs(const mout *w, const madapter *ads, size_t nad, strlist *l, lora_error *err)
{
    l->cap = w->b->shard_count + 1 + 3 * nad;
    l->v = lora_mem_calloc(&w->alloc, l->cap, sizeof *l->v);
    if (!l->v) return nomem(err);
    int ok = 1;
    for (uint32_t i = 0; i < w->b->shard_count; i++) ok &= sl_add(&w->alloc, l, NULL, w->b->shards[i].path);
    if (w->b->index_path) ok &= sl_add(&w->alloc, l, NULL, w->b->index_path);
    for (size_t i = 0; i < nad; i++) {
        if (is_dir(ads[i].path)) {
            ok &= sl_add(&w->alloc, l, ads[i].path, "adapter_model.safetensors");
            ok &= sl_add(&w->alloc, l, ads[i].path, "adapters.safetensors");
            ok &= sl_add(&w->alloc, l, ads[i].path, "adapter_config.json");
        } else {
            ok &= sl_add(&w->alloc, l, NULL, ads[i].path);
        }
    }
    return ok ? LORA_OK : nomem(err);
}

/* ---- output paths ------------------------------------------------------------------ */

static lora_status plan_paths(mout *w, const char *output, lora_error *err)
{
    if (w->b->kind != MBASE_SHARDED) {
        /* Like cp: an existing directory receives a file of the base's name. */
        const char *name = w->b->shards[0].file_name;
        w->paths[0] = is_dir(output) ? lora_adir_join(&w->alloc, output, name)
                                     : lora_adir_strndup(&w->alloc, output, strlen(output));
        return w->paths[0] ? LORA_OK : nomem(err);
    }
    if (!is_dir(output)) {
        LORA_FORWARD_IF_ERROR(lora_adir_prepare_output(output, "merge", err));
        w->created_dir = lora_adir_strndup(&w->alloc, output, strlen(output));
        if (!w->created_dir) return nomem(err);
    }
    for (uint32_t i = 0; i < w->nfiles; i++) {
        w->paths[i] = lora_adir_join(&w->alloc, output, w->b->shards[i].file_name);
        if (!w->paths[i]) return nomem(err);
    }
    const char *slash = strrchr(w->b->index_path, '/');
    w->index_out = lora_adir_join(&w->alloc, output, slash ? slash + 1 : w->b->index_path);
    return w->index_out ? LORA_OK : nomem(err);
}

/* ---- layouts ------------------------------------------------------------------------------ */

static lora_status layout_st(mout *w, uint32_t s, lora_error *err)
{
    const mbase_shard *sh = &w->b->shards[s];
    lora_st_entry *e = lora_mem_calloc(&w->alloc, sh->count ? sh->count : 1, sizeof *e);
    lora_st_pair *m = lora_mem_calloc(&w->alloc, sh->st->meta_count ? sh->st->meta_count : 1, sizeof *m);
    lora_status st = e && m ? LORA_OK : nomem(err);
    for (uint32_t i = 0; i < sh->count && st == LORA_OK; i++) {
        const mbase_tensor *bt = &w->b->tensors[sh->first + i];
        const mp_tensor *t = &w->p->t[sh->first + i];
        e[i].name = bt->name;
        e[i].dtype = (lora_st_dtype)t->out_raw;
        e[i].ndim = bt->ndim;
        memcpy(e[i].shape, bt->shape, sizeof e[i].shape);
        e[i].size = t->out_bytes;
    }
    for (uint32_t i = 0; i < sh->st->meta_count && st == LORA_OK; i++) {
        m[i].key = sh->st->meta[i].key;
        m[i].value = sh->st->meta[i].value;
    }
    uint64_t data = 0;
    if (st == LORA_OK)
        st = lora_st_header_build(&w->alloc, e, sh->count, m, sh->st->meta_count, &w->header[s], &w->header_size[s],
                                  &data, err);
    lora_mem_free(&w->alloc, e);
    lora_mem_free(&w->alloc, m);
    if (st != LORA_OK) return st;
    /* lora_st_header_build places the tensors back to back in this order. */
    uint64_t at = w->header_size[s];
    for (uint32_t i = 0; i < sh->count; i++) {
        w->offset[sh->first + i] = at;
        at += w->p->t[sh->first + i].out_bytes;
    }
    w->file_size[s] = at;
    return LORA_OK;
}

/* general.file_type names the dtype of most tensors; with --dtype and no
 * quantized tensor it becomes that dtype (llama_ftype ALL_F32 / MOSTLY_F16
 * / MOSTLY_BF16). */
static int file_type_for(const mout *w, uint32_t *ft)
{
    static const uint32_t ftype[] = {0, 1, 32};
    if (w->dtype < 0) return 0;
    for (uint32_t i = 0; i < w->b->tensor_count; i++)
        if (mt_is_quant(w->b->tensors[i].type)) return 0;
    *ft = ftype[w->dtype];
    return 1;
}

typedef struct {
    uint8_t *buf;
    size_t len, cap;
} membuf;

static lora_status mem_sink(void *ctx, const void *data, size_t n, lora_error *err)
{
    membuf *m = ctx;
    if (n > m->cap - m->len)
        return lora_error_set(err, LORA_E_INVALID_ARGUMENT, LORA_NO_OFFSET, "merge: GGUF header larger than planned");
    memcpy(m->buf + m->len, data, n);
    m->len += n;
    return LORA_OK;
}

static lora_status gguf_describe(const mout *w, lora_gguf_writer *gw)
{
    const lora_gguf *g = w->b->gguf;
    uint32_t ft = 0;
    int set_ft = file_type_for(w, &ft);
    lora_status st = LORA_OK;
    for (uint64_t i = 0; i < lora_gguf_kv_count(g) && st == LORA_OK; i++) {
        const lora_gguf_kv *kv = lora_gguf_kv_at(g, i);
        if (set_ft && strcmp(kv->key, "general.file_type") == 0 && kv->type == LORA_GGUF_TYPE_UINT32)
            st = lora_gguf_writer_add_u32(gw, kv->key, ft);
        else st = lora_gguf_writer_copy_kv(gw, g, kv);
    }
    for (uint32_t i = 0; i < w->b->tensor_count && st == LORA_OK; i++) {
        const mbase_tensor *bt = &w->b->tensors[i];
        uint64_t ne[LORA_GGUF_MAX_DIMS];
        for (uint32_t d = 0; d < bt->ndim; d++) ne[d] = bt->shape[bt->ndim - 1 - d];
        st = lora_gguf_writer_add_tensor(gw, bt->name, w->p->t[i].out_raw, bt->ndim, ne);
    }
    return st;
}

/* The writer lays out KVs, infos and the data offset; its begin() writes
 * exactly the bytes before the data section, which are kept. */
static lora_status layout_gguf(mout *w, lora_error *err)
{
    lora_gguf_writer *gw;
    LORA_FORWARD_IF_ERROR(lora_gguf_writer_create(&w->alloc, &gw));
    uint64_t data = 0, size = 0;
    lora_status st = gguf_describe(w, gw);
    if (st == LORA_OK) st = lora_gguf_writer_sizes(gw, &data, &size);
    if (st != LORA_OK && err && err->status == LORA_OK)
        lora_error_set(err, st, LORA_NO_OFFSET, "merge: cannot lay out the output GGUF file: %s", lora_status_message(st));
    membuf m = {NULL, 0, (size_t)data};
    if (st == LORA_OK && !(m.buf = lora_mem_alloc(&w->alloc, m.cap ? m.cap : 1))) st = nomem(err);
    if (st == LORA_OK) st = lora_gguf_writer_begin(gw, mem_sink, &m, err);
    lora_gguf_writer_free(gw);
    if (st == LORA_OK && m.len != data)
        st = lora_error_set(err, LORA_E_INVALID_ARGUMENT, LORA_NO_OFFSET, "merge: GGUF header size differs (internal)");
    if (st != LORA_OK) {
        lora_mem_free(&w->alloc, m.buf);
        return st;
    }
    w->header[0] = m.buf;
    w->header_size[0] = m.len;
    w->align = lora_gguf_alignment(w->b->gguf);
    uint64_t at = data;
    for (uint32_t i = 0; i < w->b->tensor_count; i++) {
        w->offset[i] = at;
        at += (w->p->t[i].out_bytes + w->align - 1) / w->align * w->align;
    }
    w->file_size[0] = at;
    if (at != size)
        return lora_error_set(err, LORA_E_INVALID_ARGUMENT, LORA_NO_OFFSET, "merge: GGUF layout disagrees (internal)");
    return LORA_OK;
}

static lora_status layout(mout *w, lora_error *err)
{
    uint32_t n = w->b->tensor_count;
    w->header = lora_mem_calloc(&w->alloc, w->nfiles, sizeof *w->header);
    w->header_size = lora_mem_calloc(&w->alloc, w->nfiles, sizeof *w->header_size);
    w->file_size = lora_mem_calloc(&w->alloc, w->nfiles, sizeof *w->file_size);
    w->offset = lora_mem_calloc(&w->alloc, n ? n : 1, sizeof *w->offset);
    if (!w->header || !w->header_size || !w->file_size || !w->offset) return nomem(err);
    if (w->b->kind == MBASE_GGUF) return layout_gguf(w, err);
    for (uint32_t s = 0; s < w->nfiles; s++) LORA_FORWARD_IF_ERROR(layout_st(w, s, err));
    return LORA_OK;
}

/* ---- open ------------------------------------------------------------------------------------ */

lora_status mout_open(const mbase *b, const mplan *p, const lora_merge_options *o, const madapter *ads,
                      size_t nad, const lora_merge_hooks *hooks, mout **out, lora_error *err)
{
    const lora_io *io = hooks ? hooks->io : NULL;
    *out = NULL;
    mout *w = lora_mem_calloc(&o->allocator, 1, sizeof *w);
    if (!w) return nomem(err);
    w->b = b;
    w->p = p;
    w->alloc = o->allocator;
    w->dtype = o->dtype;
    w->nfiles = b->shard_count;
    w->hooks = hooks;
    for (uint32_t i = 0; i < b->tensor_count; i++) w->total += p->t[i].out_bytes;
    strlist in = {0};
    w->paths = lora_mem_calloc(&w->alloc, w->nfiles, sizeof *w->paths);
    w->af = lora_mem_calloc(&w->alloc, w->nfiles, sizeof *w->af);
    lora_status st = w->paths && w->af ? layout(w, err) : nomem(err);
    if (st == LORA_OK) st = plan_paths(w, o->output, err);
    if (st == LORA_OK) st = collect_inputs(w, ads, nad, &in, err);
    lora_write_options wo = LORA_WRITE_OPTIONS_INIT;
    wo.inputs = (const char *const *)in.v;
    wo.input_count = in.n;
    for (uint32_t i = 0; i < w->nfiles && st == LORA_OK; i++)
        st = lora_afile_open(&w->alloc, io, w->paths[i], &wo, &w->af[i], err);
    if (st == LORA_OK && w->index_out) st = lora_afile_open(&w->alloc, io, w->index_out, &wo, &w->index_af, err);
    sl_free(&w->alloc, &in);
    if (st != LORA_OK) {
        mout_free(w);
        return st;
    }
    *out = w;
    return LORA_OK;
}

/* ---- writing ---------------------------------------------------------------------------------- */

/* Tests: the hook may fail any write with an errno, as a full disk would. */
static lora_status injected(const mout *w, uint32_t file, lora_error *err)
{
    int e = w->hooks && w->hooks->fail_write ? w->hooks->fail_write(w->hooks->fail_ctx) : 0;
    if (!e) return LORA_OK;
    return lora_error_set(err, e == ENOSPC || e == EDQUOT ? LORA_E_NO_SPACE : LORA_E_IO, LORA_NO_OFFSET,
                          "cannot write '%s': %s", lora_afile_temp_path(w->af[file]), strerror(e));
}

lora_status mout_headers(mout *w, lora_error *err)
{
    static const uint8_t zeros[256];
    for (uint32_t s = 0; s < w->nfiles; s++) {
        LORA_FORWARD_IF_ERROR(injected(w, s, err));
        LORA_FORWARD_IF_ERROR(lora_afile_pwrite(w->af[s], w->header[s], w->header_size[s], 0, err));
    }
    /* GGUF: zeros after each tensor up to the alignment. */
    for (uint32_t i = 0; w->align && i < w->b->tensor_count; i++) {
        uint64_t end = w->offset[i] + w->p->t[i].out_bytes;
        uint64_t pad = (w->align - end % w->align) % w->align;
        while (pad) {
            size_t k = pad < sizeof zeros ? (size_t)pad : sizeof zeros;
            LORA_FORWARD_IF_ERROR(lora_afile_pwrite(w->af[0], zeros, k, end, err));
            end += k;
            pad -= k;
        }
    }
    return LORA_OK;
}

lora_status mout_put_at(mout *w, uint32_t tensor, uint64_t at, const void *data, size_t n, lora_error *err)
{
    uint32_t s = w->b->tensors[tensor].shard;
    LORA_FORWARD_IF_ERROR(injected(w, s, err));
    return lora_afile_pwrite(w->af[s], data, n, w->offset[tensor] + at, err);
}

lora_status mout_copy_at(mout *w, uint32_t tensor, uint64_t at, uint64_t n, lora_error *err)
{
    const mbase_tensor *bt = &w->b->tensors[tensor];
    LORA_FORWARD_IF_ERROR(injected(w, bt->shard, err));
    return lora_afile_copy_range(w->af[bt->shard], w->b->shards[bt->shard].fd, bt->file_offset + at, n,
                                 w->offset[tensor] + at, err);
}

void mout_writeback(mout *w)
{
    for (uint32_t s = 0; s < w->nfiles; s++)
        if (w->af[s]) (void)lora_afile_start_writeback(w->af[s], NULL);
}

uint64_t mout_total_bytes(const mout *w) { return w->total; }

uint64_t mout_bytes_out(const mout *w)
{
    uint64_t n = w->index_bytes;
    for (uint32_t s = 0; s < w->nfiles; s++) n += w->file_size[s];
    return n;
}

/* ---- commit -------------------------------------------------------------------------------------- */

static lora_status mismatch(lora_error *err, const char *path)
{
    return lora_error_set(err, LORA_E_IO, LORA_NO_OFFSET, "merge: '%s' does not read back as written", path);
}

/* The temp file parses and holds the planned tensors (names, types, sizes). */
static lora_status read_back_st(const mout *w, uint32_t s, lora_error *err)
{
    const char *tmp = lora_afile_temp_path(w->af[s]);
    const mbase_shard *sh = &w->b->shards[s];
    lora_st_options so;
    memset(&so, 0, sizeof so);
    so.allocator = w->alloc;
    lora_st_file *f;
    LORA_FORWARD_IF_ERROR(lora_st_open(tmp, &so, &f, err));
    int ok = f->tensor_count == sh->count && f->file_size == w->file_size[s];
    for (uint32_t i = 0; ok && i < sh->count; i++) {
        const lora_st_tensor *x = &f->tensors[f->by_offset[i]];
        const mp_tensor *t = &w->p->t[sh->first + i];
        ok = strcmp(x->name, w->b->tensors[sh->first + i].name) == 0 && x->size == t->out_bytes &&
             (uint32_t)x->dtype == t->out_raw && x->offset == w->offset[sh->first + i];
    }
    lora_st_free(f);
    return ok ? LORA_OK : mismatch(err, tmp);
}

static lora_status read_back_gguf(const mout *w, lora_error *err)
{
    const char *tmp = lora_afile_temp_path(w->af[0]);
    void *map = NULL;
    size_t size = 0;
    LORA_FORWARD_IF_ERROR(lora_io_map_file(tmp, &map, &size, err));
    lora_gguf *g = NULL;
    lora_status st = lora_gguf_parse(map, size, NULL, &w->alloc, &g, err);
    if (st == LORA_OK) {
        int ok = lora_gguf_tensor_count(g) == w->b->tensor_count && size == w->file_size[0];
        for (uint32_t i = 0; ok && i < w->b->tensor_count; i++) {
            const lora_gguf_tensor *x = lora_gguf_tensor_at(g, i);
            ok = strcmp(x->name, w->b->tensors[i].name) == 0 && x->type == w->p->t[i].out_raw &&
                 x->nbytes == w->p->t[i].out_bytes && lora_gguf_data_offset(g) + x->offset == w->offset[i];
        }
        if (!ok) st = mismatch(err, tmp);
    }
    lora_gguf_free(g);
    lora_io_unmap_file(map, size);
    return st;
}

/* The index's bytes into its temp file (committed after the shards). */
static lora_status write_index(mout *w, lora_error *err)
{
    char *text = NULL;
    size_t len = 0;
    LORA_FORWARD_IF_ERROR(mindex_render(w->b, w->total, &text, &len, err));
    lora_status st = lora_afile_write(w->index_af, text, len, err);
    lora_mem_free(&w->alloc, text);
    if (st == LORA_OK) w->index_bytes = len;
    return st;
}

/* The shards and the index last, as one output (lora_afile_commit_all:
 * all fsynced before the first rename, so a full disk or a failing fsync
 * never leaves some shards new and others old). */
lora_status mout_commit(mout *w, lora_error *err)
{
    for (uint32_t i = 0; i < w->nfiles; i++)
        LORA_FORWARD_IF_ERROR(w->b->kind == MBASE_GGUF ? read_back_gguf(w, err) : read_back_st(w, i, err));
    if (w->index_af) LORA_FORWARD_IF_ERROR(write_index(w, err));
    size_t n = (size_t)w->nfiles + (w->index_af != NULL);
    lora_afile **all = lora_mem_calloc(&w->alloc, n, sizeof *all);
    if (!all) return nomem(err);
    for (uint32_t i = 0; i < w->nfiles; i++) all[i] = w->af[i], w->af[i] = NULL;
    if (w->index_af) all[w->nfiles] = w->index_af, w->index_af = NULL;
    lora_status st = lora_afile_commit_all(all, n, err);
    lora_mem_free(&w->alloc, all);
    LORA_FORWARD_IF_ERROR(st);
    lora_mem_free(&w->alloc, w->created_dir); /* ours to keep now */
    w->created_dir = NULL;
    return LORA_OK;
}

void mout_free(mout *w)
{
    if (!w) return;
    for (uint32_t i = 0; w->af && i < w->nfiles; i++) lora_afile_abort(w->af[i]);
    lora_afile_abort(w->index_af);
    if (w->created_dir) (void)rmdir(w->created_dir); /* only if nothing else is in it */
    for (uint32_t i = 0; i < w->nfiles; i++) {
        if (w->paths) lora_mem_free(&w->alloc, w->paths[i]);
        if (w->header) lora_mem_free(&w->alloc, w->header[i]);
    }
    lora_mem_free(&w->alloc, w->paths);
    lora_mem_free(&w->alloc, w->af);
    lora_mem_free(&w->alloc, w->header);
    lora_mem_free(&w->alloc, w->header_size);
    lora_mem_free(&w->alloc, w->file_size);
    lora_mem_free(&w->alloc, w->offset);
    lora_mem_free(&w->alloc, w->index_out);
    lora_mem_free(&w->alloc, w->created_dir);
    lora_allocator a = w->alloc;
    lora_mem_free(&a, w);
}
