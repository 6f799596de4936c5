/*
 * convert.c - lora_convert / lora_import / lora_detect_format: pick the
 * importer and exporter and run them through the .lora model in memory.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "../io/lfs_pointer.h"
#include "../io/safetensors.h"
#include "convert.h"

static const char *const format_names[] = {"auto", "lora", "peft", "mlx", "kohya", "diffusers", "gguf"};
#define FORMAT_COUNT (sizeof format_names / sizeof format_names[0])

const char *lora_format_name(lora_format f)
{
    return (unsigned)f < FORMAT_COUNT ? format_names[f] : NULL;
}

lora_status lora_format_from_name(const char *name, lora_format *out)
{
    if (!name || !out) return LORA_E_INVALID_ARGUMENT;
    for (unsigned i = 0; i < FORMAT_COUNT; i++)
        if (strcmp(name, format_names[i]) == 0) {
            *out = (lora_format)i;
            return LORA_OK;
        }
    return LORA_E_INVALID_ARGUMENT;
}

/* ---- detection ------------------------------------------------------------ */

static int is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static int file_exists_in(const char *dir, const char *name)
{
    char p[4096];
    if ((size_t)snprintf(p, sizeof p, "%s/%s", dir, name) >= sizeof p) return 0;
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

static int has_suffix(const char *s, size_t len, const char *suffix)
{
    size_t n = strlen(suffix);
    return len >= n && memcmp(s + len - n, suffix, n) == 0;
}

/* Classify a safetensors adapter by its tensor names. */
static lora_format classify_safetensors(const lora_st_file *f)
{
    unsigned peft = 0, bare = 0, mlx = 0, kohya = 0;
    for (uint32_t i = 0; i < f->tensor_count; i++) {
        const char *n = f->tensors[i].name;
        size_t len = f->tensors[i].name_length;
        if (strncmp(n, "lora_unet_", 10) == 0 || strncmp(n, "lora_te", 7) == 0 ||
            strncmp(n, "lora_transformer_", 17) == 0 || strncmp(n, "lycoris_", 8) == 0)
            kohya++;
        else if (has_suffix(n, len, ".lora_a") || has_suffix(n, len, ".lora_b")) mlx++;
        else if (strncmp(n, "base_model.model.", 17) == 0) peft++;
        else if (strstr(n, ".lora_A.") || strstr(n, ".lora_B.") || strstr(n, ".lora.down.") || strstr(n, ".lora.up."))
            bare++;
    }
    if (kohya && !peft && !mlx) return LORA_FORMAT_KOHYA;
    if (mlx && !peft && !kohya) return LORA_FORMAT_MLX;
    if (peft && !kohya && !mlx) return LORA_FORMAT_PEFT;
    if (bare && !peft && !kohya && !mlx) return LORA_FORMAT_DIFFUSERS;
    return LORA_FORMAT_AUTO;
}

static lora_status detect_file(const char *path, lora_format *out, lora_error *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return lora_error_set(err, LORA_E_IO, LORA_NO_OFFSET, "%s: %s", path, strerror(errno));
    uint8_t head[512];
    ssize_t n = read(fd, head, sizeof head);
    close(fd);
    if (n < 0) return lora_error_set(err, LORA_E_IO, LORA_NO_OFFSET, "%s: %s", path, strerror(errno));
    LORA_FORWARD_IF_ERROR(lora_lfs_pointer_check(head, (size_t)n, path, err));
    /* Bytes 1..4 identify .lora even after text-mode damage; the reader then says what is wrong. */
    if (n >= 5 && memcmp(head + 1, "LORA", 4) == 0) {
        *out = LORA_FORMAT_LORA;
        return LORA_OK;
    }
    if (n >= 4 && memcmp(head, "GGUF", 4) == 0) {
        *out = LORA_FORMAT_GGUF;
        return LORA_OK;
    }
    /* A safetensors file starts with its header length and '{'; the whole
     * header need not fit in `head`, so only these 9 bytes are judged here. */
    if (n >= 9 && head[8] == '{' && lora_fmt_rd64(head) >= 2) {
        lora_st_file *f = NULL;
        lora_status st = lora_st_open(path, NULL, &f, err);
        if (st != LORA_OK) return st;
        *out = classify_safetensors(f);
        lora_st_free(f);
        if (*out != LORA_FORMAT_AUTO) return LORA_OK;
        return lora_error_set(err, LORA_E_UNKNOWN_FORMAT, LORA_NO_OFFSET,
                              "%s: a safetensors file, but its tensor names are not those of a PEFT, MLX, kohya or "
                              "diffusers adapter (say --from)", path);
    }
    return lora_error_set(err, LORA_E_UNKNOWN_FORMAT, 0, "%s: not a .lora, GGUF or safetensors adapter, nor an "
                          "adapter directory", path);
}

/* A directory: PEFT or MLX by the files it holds (and, when both could be,
 * by the config's own words). */
static lora_status detect_dir(const char *path, lora_format *out, lora_error *err)
{
    int peft = file_exists_in(path, "adapter_model.safetensors");
    int mlx = file_exists_in(path, "adapters.safetensors");
    if (peft && !mlx) *out = LORA_FORMAT_PEFT;
    else if (mlx && !peft) *out = LORA_FORMAT_MLX;
    else if (peft && mlx)
        return lora_error_set(err, LORA_E_UNKNOWN_FORMAT, LORA_NO_OFFSET,
                              "%s holds both adapter_model.safetensors (PEFT) and adapters.safetensors (MLX): say --from",
                              path);
    else if (file_exists_in(path, "adapter_model.bin"))
        return lora_error_set(err, LORA_E_UNKNOWN_FORMAT, LORA_NO_OFFSET,
                              "%s: adapter_model.bin is a pickle; only safetensors adapters are read (pickles can run "
                              "code)", path);
    else
        return lora_error_set(err, LORA_E_UNKNOWN_FORMAT, LORA_NO_OFFSET,
                              "%s: a directory without adapter_model.safetensors or adapters.safetensors", path);
    return LORA_OK;
}

lora_status lora_detect_format(const char *path, lora_format *out, lora_error *err)
{
    lora_error_clear(err);
    if (!path || !out) return lora_error_set(err, LORA_E_INVALID_ARGUMENT, LORA_NO_OFFSET, "NULL argument");
    struct stat st;
    if (stat(path, &st) != 0) return lora_error_set(err, LORA_E_IO, LORA_NO_OFFSET, "%s: %s", path, strerror(errno));
    if (S_ISDIR(st.st_mode)) return detect_dir(path, out, err);
    if (!S_ISREG(st.st_mode))
        return lora_error_set(err, LORA_E_NOT_REGULAR_FILE, LORA_NO_OFFSET, "%s: not a regular file", path);
    return detect_file(path, out, err);
}

/* The output format from the name: ".lora", ".gguf", a directory (existing,
 * or named with a trailing '/' or without an extension) means PEFT. */
static lora_status output_format(const char *output, lora_format *out, lora_error *err)
{
    size_t len = strlen(output);
    const char *slash = strrchr(output, '/');
    const char *base = slash ? slash + 1 : output;
    if (has_suffix(output, len, ".lora")) *out = LORA_FORMAT_LORA;
    else if (has_suffix(output, len, ".gguf")) *out = LORA_FORMAT_GGUF;
    else if (is_dir(output) || (len && output[len - 1] == '/') || !strchr(base, '.')) *out = LORA_FORMAT_PEFT;
    else
        return lora_error_set(err, LORA_E_INVALID_ARGUMENT, LORA_NO_OFFSET,
                              "cannot tell the output format from the name '%s': say --to (lora, peft, mlx, kohya, "
                              "gguf)", output);
    return LORA_OK;
}

/* ---- .lora as an input: copy (re-encoding floats if --dtype) ------------- */

static lora_status copy_blob(const lora_reader *r, uint32_t i, const lora_convert_options *o, lora_writer *w,
                             uint32_t *index, lora_error *err)
{
    lora_blob b;
    LORA_FORWARD_IF_ERROR(lora_reader_blob(r, i, &b));
    const lora_allocator *a = &o->allocator;
    int convert = o->dtype >= 0 && (lora_dtype)o->dtype != b.dtype && b.dtype <= LORA_DTYPE_BF16;
    if (convert) {
        float *f;
        uint64_t numel;
        LORA_FORWARD_IF_ERROR(lora_ops_blob_f32(r, a, i, 0, &f, &numel, err));
        lora_status st = lora_writer_add_blob_f32(w, (lora_dtype)o->dtype, b.ndim, b.shape, f, (size_t)numel,
                                                  b.compression, index);
        lora_mem_free(a, f);
        return st;
    }
    if (b.raw_size > SIZE_MAX) return LORA_E_LIMIT_EXCEEDED;
    void *raw = lora_mem_alloc(a, (size_t)b.raw_size);
    if (!raw) return lora_error_set(err, LORA_E_OUT_OF_MEMORY, LORA_NO_OFFSET, "out of memory");
    lora_status st = lora_reader_blob_read(r, i, raw, (size_t)b.raw_size, err);
    if (st == LORA_OK)
        st = lora_writer_add_blob_block(w, b.dtype, b.dtype == LORA_DTYPE_NF4 ? b.block : 0, b.ndim, b.shape, raw,
                                        (size_t)b.raw_size, b.compression, index);
    lora_mem_free(a, raw);
    return st;
}

static lora_status import_lora(const char *input, const lora_convert_options *o, lora_writer *w, lora_error *err)
{
    lora_read_options ro = LORA_READ_OPTIONS_INIT;
    ro.allocator = o->allocator;
    ro.flags = LORA_READ_VERIFY_CHECKSUMS;
    lora_reader *r;
    LORA_FORWARD_IF_ERROR(lora_reader_open_file(input, &ro, &r, err));
    lora_file_info info;
    lora_reader_file_info(r, &info);
    lora_status st = LORA_OK;
    for (uint32_t i = 0; i < info.metadata_count && st == LORA_OK; i++) {
        lora_meta m;
        st = lora_reader_meta(r, i, &m);
        if (st != LORA_OK) break;
        switch (m.type) {
        case LORA_META_STRING: st = lora_writer_set_string(w, m.key, m.string, m.string_length); break;
        case LORA_META_INT: st = lora_writer_set_int(w, m.key, m.integer); break;
        case LORA_META_FLOAT: st = lora_writer_set_float(w, m.key, m.number); break;
        case LORA_META_BOOL: st = lora_writer_set_bool(w, m.key, (int)m.integer); break;
        }
    }
    /* Blobs keep their indices: they are added in order. */
    for (uint32_t i = 0; i < info.blob_count && st == LORA_OK; i++) {
        uint32_t index;
        st = copy_blob(r, i, o, w, &index, err);
    }
    for (uint32_t i = 0; i < info.module_count && st == LORA_OK; i++) {
        lora_module m;
        st = lora_reader_module(r, i, &m);
        if (st != LORA_OK) break;
        lora_module_desc d = {m.name, m.kind, m.scaling, m.flags, m.rank, m.alpha, m.scale, m.base_ndim,
                              {0}, m.blob_a, m.blob_b, m.blob_magnitude, m.blob_bias};
        memcpy(d.base_shape, m.base_shape, sizeof d.base_shape);
        st = lora_writer_add_module(w, &d, NULL);
    }
    for (uint32_t i = 0; i < info.tensor_count && st == LORA_OK; i++) {
        lora_tensor t;
        st = lora_reader_tensor(r, i, &t);
        if (st == LORA_OK) st = lora_writer_add_tensor(w, t.name, t.blob);
    }
    if (st != LORA_OK && err && err->status == LORA_OK)
        lora_error_set(err, st, LORA_NO_OFFSET, "%s: cannot copy: %s", input, lora_status_message(st));
    lora_reader_free(r);
    return st;
}

/* ---- dispatch ----------------------------------------------------------- */

static lora_importer_fn importer_for(lora_format f)
{
    switch (f) {
    case LORA_FORMAT_LORA: return import_lora;
    case LORA_FORMAT_PEFT: return lora_import_peft;
    case LORA_FORMAT_DIFFUSERS: return lora_import_diffusers;
    case LORA_FORMAT_MLX: return lora_import_mlx;
    case LORA_FORMAT_KOHYA: return lora_import_kohya;
    case LORA_FORMAT_GGUF: return lora_import_gguf;
    case LORA_FORMAT_AUTO: break;
    }
    return NULL;
}

static lora_exporter_fn exporter_for(lora_format f)
{
    switch (f) {
    case LORA_FORMAT_PEFT: return lora_export_peft_io;
    case LORA_FORMAT_MLX: return lora_export_mlx_io;
    case LORA_FORMAT_KOHYA: return lora_export_kohya_io;
    case LORA_FORMAT_GGUF: return lora_export_gguf_io;
    case LORA_FORMAT_LORA:
    case LORA_FORMAT_DIFFUSERS:
    case LORA_FORMAT_AUTO: break;
    }
    return NULL;
}

static lora_status check_options(const lora_convert_options *o, lora_error *err)
{
    for (int i = 0; i < 4; i++)
        if (o->reserved[i])
            return lora_error_set(err, LORA_E_INVALID_ARGUMENT, LORA_NO_OFFSET, "convert options: reserved field set");
    if (o->dtype != -1 && o->dtype != LORA_DTYPE_F32 && o->dtype != LORA_DTYPE_F16 && o->dtype != LORA_DTYPE_BF16)
        return lora_error_set(err, LORA_E_INVALID_ARGUMENT, LORA_NO_OFFSET,
                              "convert options: dtype must be -1 (keep), F32, F16 or BF16");
    if ((unsigned)o->from >= FORMAT_COUNT || (unsigned)o->to >= FORMAT_COUNT)
        return lora_error_set(err, LORA_E_INVALID_ARGUMENT, LORA_NO_OFFSET, "convert options: unknown format");
    return LORA_OK;
}

/* Import `input` into a new writer, with the producer recorded. */
static lora_status import_any(const char *input, const lora_convert_options *o, lora_format *from, lora_writer **out,
                              lora_error *err)
{
    LORA_FORWARD_IF_ERROR(check_options(o, err));
    *from = o->from;
    if (*from == LORA_FORMAT_AUTO) LORA_FORWARD_IF_ERROR(lora_detect_format(input, from, err));
    lora_importer_fn imp = importer_for(*from);
    if (!imp)
        return lora_error_set(err, LORA_E_INVALID_ARGUMENT, LORA_NO_OFFSET, "cannot read %s input",
                              lora_format_name(*from));
    lora_writer *w;
    lora_status st = lora_writer_create(&o->allocator, &w);
    if (st != LORA_OK) return lora_error_set(err, st, LORA_NO_OFFSET, "cannot create a writer");
    st = imp(input, o, w, err);
    if (st == LORA_OK) st = lora_writer_set_string(w, LORA_META_PRODUCER, "liblora", 7);
    if (st == LORA_OK)
        st = lora_writer_set_string(w, LORA_META_PRODUCER_VERSION, lora_version_string(), strlen(lora_version_string()));
    if (st != LORA_OK) {
        if (err && err->status == LORA_OK) lora_error_set(err, st, LORA_NO_OFFSET, "%s: import failed", input);
        lora_writer_free(w);
        return st;
    }
    *out = w;
    return LORA_OK;
}

static lora_status serialize(lora_writer *w, const lora_allocator *a, void **data, size_t *size, lora_error *err)
{
    uint64_t total;
    LORA_FORWARD_IF_ERROR(lora_writer_size(w, &total, err));
    if (total > SIZE_MAX) return lora_error_set(err, LORA_E_LIMIT_EXCEEDED, LORA_NO_OFFSET, "adapter too large");
    void *buf = lora_mem_alloc(a, (size_t)total);
    if (!buf) return lora_error_set(err, LORA_E_OUT_OF_MEMORY, LORA_NO_OFFSET, "out of memory");
    lora_status st = lora_writer_write_buffer(w, buf, (size_t)total, size, err);
    if (st != LORA_OK) {
        lora_mem_free(a, buf);
        return st;
    }
    *data = buf;
    return LORA_OK;
}

lora_status lora_import(const char *input, const lora_convert_options *opts, void **data, size_t *size,
                        lora_error *err)
{
    lora_error_clear(err);
    lora_convert_options defaults = LORA_CONVERT_OPTIONS_INIT;
    const lora_convert_options *o = opts ? opts : &defaults;
    if (!input || !data || !size) return lora_error_set(err, LORA_E_INVALID_ARGUMENT, LORA_NO_OFFSET, "NULL argument");
    lora_format from;
    lora_writer *w;
    LORA_FORWARD_IF_ERROR(import_any(input, o, &from, &w, err));
    lora_status st = serialize(w, &o->allocator, data, size, err);
    lora_writer_free(w);
    return st;
}

void lora_ops_free(const lora_convert_options *opts, void *data)
{
    lora_mem_free(opts ? &opts->allocator : NULL, data);
}

/* The files an output must never replace: the input itself, or the files a
 * directory input is made of, and a config read from beside a file input. */
typedef struct {
    char paths[4][4096];
    const char *list[4];
    size_t count;
} input_files;

static void add_input(input_files *in, const char *dir, const char *name)
{
    char *p = in->paths[in->count];
    int n = dir ? snprintf(p, sizeof in->paths[0], "%s/%s", dir, name) : snprintf(p, sizeof in->paths[0], "%s", name);
    if (n > 0 && (size_t)n < sizeof in->paths[0]) in->list[in->count] = p, in->count++;
}

static void collect_inputs(const char *input, input_files *in)
{
    memset(in, 0, sizeof *in);
    if (is_dir(input)) {
        add_input(in, input, "adapter_model.safetensors");
        add_input(in, input, "adapters.safetensors");
        add_input(in, input, "adapter_config.json");
        return;
    }
    add_input(in, NULL, input);
    char dir[4096];
    const char *slash = strrchr(input, '/');
    size_t len = slash ? (size_t)(slash - input) : 1;
    if (len >= sizeof dir) return;
    memcpy(dir, slash ? input : ".", len);
    dir[len] = '\0';
    add_input(in, dir, "adapter_config.json");
}

lora_status lora_convert(const char *input, const char *output, const lora_convert_options *opts, lora_error *err)
{
    return lora_convert_io(input, output, opts, NULL, err);
}

lora_status lora_convert_io(const char *input, const char *output, const lora_convert_options *opts,
                            const lora_io *io, lora_error *err)
{
    lora_error_clear(err);
    lora_convert_options defaults = LORA_CONVERT_OPTIONS_INIT;
    const lora_convert_options *o = opts ? opts : &defaults;
    if (!input || !output) return lora_error_set(err, LORA_E_INVALID_ARGUMENT, LORA_NO_OFFSET, "NULL argument");
    LORA_FORWARD_IF_ERROR(check_options(o, err));
    lora_format to = o->to;
    if (to == LORA_FORMAT_AUTO) LORA_FORWARD_IF_ERROR(output_format(output, &to, err));
    lora_exporter_fn exp = exporter_for(to);
    if (to != LORA_FORMAT_LORA && !exp)
        return lora_error_set(err, LORA_E_INVALID_ARGUMENT, LORA_NO_OFFSET, "cannot write %s output (import only)",
                              lora_format_name(to));
    input_files in;
    collect_inputs(input, &in);
    lora_write_options wo = LORA_WRITE_OPTIONS_INIT;
    wo.inputs = in.list;
    wo.input_count = in.count;

    lora_format from;
    lora_writer *w;
    LORA_FORWARD_IF_ERROR(import_any(input, o, &from, &w, err));
    lora_status st;
    if (to == LORA_FORMAT_LORA) {
        if (io) lora_writer_set_io_for_testing(w, io);
        st = lora_writer_write_file(w, output, &wo, err);
        lora_writer_free(w);
        return st;
    }
    void *buf = NULL;
    size_t size = 0;
    st = serialize(w, &o->allocator, &buf, &size, err);
    lora_writer_free(w);
    if (st != LORA_OK) return st;
    lora_read_options ro = LORA_READ_OPTIONS_INIT;
    ro.allocator = o->allocator;
    lora_reader *r;
    st = lora_reader_open_buffer(buf, size, &ro, &r, err);
    if (st == LORA_OK) {
        st = exp(r, output, o, &wo, io, err);
        lora_reader_free(r);
    }
    lora_mem_free(&o->allocator, buf);
    return st;
}
