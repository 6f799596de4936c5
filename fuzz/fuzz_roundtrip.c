/*
 * fuzz_roundtrip - build, write, read back, compare; then rebuild from what
 * was read and require the very same bytes.
 *
 * The input drives a sequence of writer calls (common/data_producer.h):
 * metadata of every type (keys set twice are replaced in place, reserved
 * keys with a non-string type and non-UTF-8 values are refused), modules of
 * every kind with every scaling, DoRA magnitudes, biases and fan_in_fan_out,
 * replacement tensors, blobs of every dtype from raw bytes or from f32
 * values, with or without zlib. A model kept here predicts each call's
 * status (duplicate names included) and the final content. The file is
 * written twice (identical bytes), opened with checksum verification and
 * compared field by field: names, enums, rank, alpha and scale bits, shapes,
 * blob bytes (raw input, or the reference kernels' conversion of the f32
 * values) and decoded floats. A blob left without an owner must make the
 * write fail with BAD_BLOB_REF. Any mismatch aborts.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "support/data_producer.h"
#include "support/fuzz_common.h"
#include "kernels/kernels.h"

#define MAX_OPS 12
#define MAX_META 16
#define MAX_MODULES 12
#define MAX_TENSORS (MAX_BLOBS + MAX_OPS)
#define MAX_BLOBS 64
#define NAME_CAP 40

typedef struct {
    char key[NAME_CAP];
    uint32_t type;
    uint8_t str[24];
    size_t str_len;
    uint64_t bits;
} m_meta;

typedef struct {
    lora_dtype dtype;
    uint32_t ndim;
    uint64_t shape[LORA_MAX_DIMS];
    uint64_t numel;
    uint32_t block;        /* elements per block (NF4: 32..4096) */
    uint8_t *raw;          /* the bytes the file must hold after inflation */
    size_t raw_size;
    int zlib;              /* zlib requested */
    int owned;
} m_blob;

typedef struct {
    char name[NAME_CAP];
    lora_module_desc d;
    float scale;           /* what the file must store */
} m_module;

typedef struct {
    char name[NAME_CAP];
    uint32_t blob;
} m_tensor;

typedef struct {
    fuzz_producer p;
    lora_writer *w;
    m_meta meta[MAX_META];
    uint32_t n_meta;
    m_blob blobs[MAX_BLOBS];
    uint32_t n_blobs;
    m_module modules[MAX_MODULES];
    uint32_t n_modules;
    m_tensor tensors[MAX_TENSORS];
    uint32_t n_tensors;
} model;

/* Spec block facts, written out here rather than taken from format/
 * (NF4: the default block; others are chosen in add_blob). */
static const uint32_t block_elems[6] = {1, 1, 1, 32, 32, 64};
static const uint32_t block_bytes[6] = {4, 2, 2, 34, 18, 36};

static void make_name(model *m, char *out)
{
    static const char *const piece[] = {"a", "b", "q", ".", "0", "_", "\xc3\xa9"};
    uint32_t n = fp_u32(&m->p, 1, 4);
    out[0] = '\0';
    for (uint32_t i = 0; i < n; i++) strcat(out, piece[fp_u32(&m->p, 0, 6)]);
}

/* ---- blobs ---- */

static void expected_raw(lora_dtype d, uint32_t block, const float *v, uint64_t numel, uint8_t *raw)
{
    const lora_kernels *k = &lora_kernels_ref;
    size_t n = (size_t)numel;
    uint16_t *h;
    switch (d) {
    case LORA_DTYPE_F32: memcpy(raw, v, n * 4); return;
    case LORA_DTYPE_F16:
    case LORA_DTYPE_BF16:
        h = malloc(n * 2);
        FUZZ_ASSERT(h != NULL);
        (d == LORA_DTYPE_F16 ? k->f32_to_f16 : k->f32_to_bf16)(v, h, n);
        memcpy(raw, h, n * 2);
        free(h);
        return;
    case LORA_DTYPE_Q8_0: k->f32_to_q8_0(v, raw, n / 32); return;
    case LORA_DTYPE_Q4_0: k->f32_to_q4_0(v, raw, n / 32); return;
    case LORA_DTYPE_NF4: k->f32_to_nf4(v, raw, n / block, block); return;
    }
}

/* Add a blob of this shape with a dtype the input picks (F32 when the
 * element count is not a whole number of its blocks). NF4 gets a block of
 * 32..4096 that divides the element count; the block argument is 0 (the
 * default) or spelled out, through the *_block calls or the plain ones. */
static uint32_t add_blob(model *m, uint32_t ndim, const uint64_t *shape)
{
    FUZZ_ASSERT(m->n_blobs < MAX_BLOBS);
    m_blob *b = &m->blobs[m->n_blobs];
    memset(b, 0, sizeof *b);
    b->ndim = ndim;
    b->numel = 1;
    for (uint32_t i = 0; i < ndim; i++) b->numel *= (b->shape[i] = shape[i]);
    uint32_t d = fp_u32(&m->p, 0, 5);
    if (b->numel % block_elems[d]) d = LORA_DTYPE_F32;
    b->dtype = (lora_dtype)d;
    b->block = block_elems[d];
    uint32_t arg = fp_bool(&m->p) ? b->block : 0; /* 0 = the dtype's default */
    if (d == LORA_DTYPE_NF4 && fp_bool(&m->p)) {
        uint32_t block = 32u << fp_u32(&m->p, 0, 7);
        while (b->numel % block) block /= 2;
        b->block = arg = block;
    }
    uint32_t bytes = d == LORA_DTYPE_NF4 ? 4 + b->block / 2 : block_bytes[d];
    b->raw_size = (size_t)(b->numel / b->block * bytes);
    b->raw = malloc(b->raw_size + 1);
    FUZZ_ASSERT(b->raw != NULL);
    b->zlib = fp_bool(&m->p);
    lora_compression c = b->zlib ? LORA_COMPRESSION_ZLIB : LORA_COMPRESSION_NONE;
    int explicit_block = arg != 0 || fp_bool(&m->p);
    uint32_t index = UINT32_MAX;
    lora_status st;
    if (fp_bool(&m->p)) {
        fp_bytes(&m->p, b->raw, b->raw_size);
        st = explicit_block
                 ? lora_writer_add_blob_block(m->w, b->dtype, arg, ndim, shape, b->raw, b->raw_size, c, &index)
                 : lora_writer_add_blob(m->w, b->dtype, ndim, shape, b->raw, b->raw_size, c, &index);
    } else {
        float *v = malloc((size_t)b->numel * sizeof *v);
        FUZZ_ASSERT(v != NULL);
        fp_bytes(&m->p, v, (size_t)b->numel * sizeof *v);
        expected_raw(b->dtype, b->block, v, b->numel, b->raw);
        st = explicit_block
                 ? lora_writer_add_blob_f32_block(m->w, b->dtype, arg, ndim, shape, v, (size_t)b->numel, c, &index)
                 : lora_writer_add_blob_f32(m->w, b->dtype, ndim, shape, v, (size_t)b->numel, c, &index);
        free(v);
    }
    FUZZ_ASSERT(st == LORA_OK && index == m->n_blobs);
    return m->n_blobs++;
}

/* ---- modules ---- */

static uint64_t dim(model *m, int quant_friendly)
{
    return quant_friendly ? 64 * fp_u32(&m->p, 1, 2) : fp_u32(&m->p, 1, 6);
}

static void module_shapes(model *m, lora_module_desc *d, uint64_t *a, uint64_t *b, uint64_t *vec)
{
    int qf = fp_bool(&m->p);
    uint64_t r = d->rank, out = dim(m, qf), in = dim(m, qf);
    switch (d->kind) {
    case LORA_KIND_LINEAR:
        d->flags = fp_bool(&m->p) ? LORA_MODULE_FAN_IN_FAN_OUT : 0;
        d->base_shape[0] = d->flags ? in : out;
        d->base_shape[1] = d->flags ? out : in;
        a[0] = r, a[1] = in, b[0] = out, b[1] = r;
        break;
    case LORA_KIND_EMBEDDING: /* out = embedding dim, in = num embeddings */
        d->base_shape[0] = in, d->base_shape[1] = out;
        a[0] = r, a[1] = in, b[0] = out, b[1] = r;
        break;
    case LORA_KIND_CONV1D:
    case LORA_KIND_CONV2D:
    case LORA_KIND_CONV3D:
        d->base_shape[0] = out, d->base_shape[1] = in;
        a[0] = r, a[1] = in, b[0] = out, b[1] = r;
        for (uint32_t i = 2; i < d->base_ndim; i++) {
            d->base_shape[i] = a[i] = fp_u32(&m->p, 1, 3);
            b[i] = 1;
        }
        break;
    }
    vec[0] = out;
}

static int module_name_taken(const model *m, const char *name)
{
    for (uint32_t i = 0; i < m->n_modules; i++)
        if (strcmp(m->modules[i].name, name) == 0) return 1;
    return 0;
}

static void op_module(model *m)
{
    if (m->n_modules == MAX_MODULES || m->n_blobs + 4 > MAX_BLOBS) return;
    m_module *mm = &m->modules[m->n_modules];
    memset(mm, 0, sizeof *mm);
    lora_module_desc *d = &mm->d;
    make_name(m, mm->name);
    d->name = mm->name;
    d->kind = (lora_kind)fp_u32(&m->p, 0, 4);
    d->base_ndim = d->kind <= LORA_KIND_EMBEDDING ? 2 : (uint32_t)d->kind + 1;
    d->rank = fp_u32(&m->p, 1, 4);
    d->scaling = (lora_scaling)fp_u32(&m->p, 0, 2);
    d->alpha = fp_float_finite(&m->p);
    d->scale = d->scaling == LORA_SCALING_EXPLICIT ? fp_float_finite(&m->p) : NAN; /* ignored unless explicit */
    uint64_t a[LORA_MAX_DIMS] = {0}, b[LORA_MAX_DIMS] = {0}, vec[1];
    module_shapes(m, d, a, b, vec);
    d->blob_a = add_blob(m, d->base_ndim, a);
    d->blob_b = add_blob(m, d->base_ndim, b);
    d->blob_magnitude = fp_bool(&m->p) ? add_blob(m, 1, vec) : LORA_NO_BLOB;
    d->blob_bias = d->kind != LORA_KIND_EMBEDDING && fp_bool(&m->p) ? add_blob(m, 1, vec) : LORA_NO_BLOB;
    switch (d->scaling) {
    case LORA_SCALING_ALPHA_OVER_RANK: mm->scale = d->alpha / (float)d->rank; break;
    case LORA_SCALING_ALPHA_OVER_SQRT_RANK: mm->scale = d->alpha / sqrtf((float)d->rank); break;
    case LORA_SCALING_EXPLICIT: mm->scale = d->scale; break;
    }
    int dup = module_name_taken(m, mm->name);
    uint32_t index = UINT32_MAX;
    lora_status st = lora_writer_add_module(m->w, d, &index);
    FUZZ_ASSERT(st == (dup ? LORA_E_DUPLICATE_NAME : LORA_OK));
    if (dup) return; /* its blobs stay ownerless */
    FUZZ_ASSERT(index == m->n_modules);
    uint32_t refs[4] = {d->blob_a, d->blob_b, d->blob_magnitude, d->blob_bias};
    for (int i = 0; i < 4; i++)
        if (refs[i] != LORA_NO_BLOB) m->blobs[refs[i]].owned = 1;
    m->n_modules++;
}

/* ---- tensors and metadata ---- */

static lora_status add_tensor(model *m, const char *name, uint32_t blob)
{
    int dup = 0;
    for (uint32_t i = 0; i < m->n_tensors; i++) dup |= strcmp(m->tensors[i].name, name) == 0;
    lora_status st = lora_writer_add_tensor(m->w, name, blob);
    FUZZ_ASSERT(st == (dup ? LORA_E_DUPLICATE_NAME : LORA_OK));
    if (st == LORA_OK) {
        FUZZ_ASSERT(m->n_tensors < MAX_TENSORS);
        strcpy(m->tensors[m->n_tensors].name, name);
        m->tensors[m->n_tensors++].blob = blob;
        m->blobs[blob].owned = 1;
    }
    return st;
}

static void op_tensor(model *m)
{
    if (m->n_tensors == MAX_TENSORS || m->n_blobs == MAX_BLOBS) return;
    char name[NAME_CAP];
    make_name(m, name);
    uint32_t ndim = fp_u32(&m->p, 1, 3);
    uint64_t shape[LORA_MAX_DIMS] = {0};
    int qf = fp_bool(&m->p);
    for (uint32_t i = 0; i < ndim; i++) shape[i] = dim(m, qf && i == 0);
    (void)add_tensor(m, name, add_blob(m, ndim, shape));
}

static const char *const reserved_keys[] = {
    LORA_META_BASE_MODEL, LORA_META_BASE_MODEL_REVISION, LORA_META_ARCHITECTURE, LORA_META_SOURCE_FORMAT,
    LORA_META_SOURCE_CONFIG, LORA_META_PRODUCER, LORA_META_PRODUCER_VERSION, LORA_META_ADAPTER_NAME,
    LORA_META_TASK_TYPE,
};

static void op_meta(model *m)
{
    m_meta v;
    memset(&v, 0, sizeof v);
    int reserved = fp_u32(&m->p, 0, 7) == 0;
    if (reserved) strcpy(v.key, reserved_keys[fp_u32(&m->p, 0, 8)]);
    else make_name(m, v.key);
    v.type = fp_u32(&m->p, LORA_META_STRING, LORA_META_BOOL);
    lora_status st, want = LORA_OK;
    switch (v.type) {
    case LORA_META_STRING:
        v.str_len = fp_u32(&m->p, 0, sizeof v.str);
        fp_bytes(&m->p, v.str, v.str_len);
        if (v.str_len && !fuzz_utf8_valid_ref(v.str, v.str_len)) want = LORA_E_INVALID_ARGUMENT;
        st = lora_writer_set_string(m->w, v.key, (const char *)v.str, v.str_len);
        break;
    case LORA_META_INT:
        v.bits = fp_range(&m->p, 0, UINT64_MAX);
        st = lora_writer_set_int(m->w, v.key, (int64_t)v.bits);
        break;
    case LORA_META_FLOAT: {
        double x = fp_double_bits(&m->p);
        memcpy(&v.bits, &x, sizeof x);
        st = lora_writer_set_float(m->w, v.key, x);
        break;
    }
    default: {
        int x = (int)fp_u32(&m->p, 0, 2);
        v.bits = x != 0;
        st = lora_writer_set_bool(m->w, v.key, x);
        break;
    }
    }
    if (reserved && v.type != LORA_META_STRING) want = LORA_E_INVALID_ARGUMENT;
    FUZZ_ASSERT(st == want);
    if (st != LORA_OK) return;
    for (uint32_t i = 0; i < m->n_meta; i++)
        if (strcmp(m->meta[i].key, v.key) == 0) {
            m->meta[i] = v; /* replaced in place */
            return;
        }
    FUZZ_ASSERT(m->n_meta < MAX_META);
    m->meta[m->n_meta++] = v;
}

/* ---- read back ---- */

static void ref_decode(const m_blob *b, float *out)
{
    const lora_kernels *k = &lora_kernels_ref;
    size_t n = (size_t)b->numel;
    uint16_t *h;
    switch (b->dtype) {
    case LORA_DTYPE_F32: memcpy(out, b->raw, n * 4); return;
    case LORA_DTYPE_F16:
    case LORA_DTYPE_BF16:
        h = malloc(n * 2);
        FUZZ_ASSERT(h != NULL);
        memcpy(h, b->raw, n * 2);
        (b->dtype == LORA_DTYPE_F16 ? k->f16_to_f32 : k->bf16_to_f32)(h, out, n);
        free(h);
        return;
    case LORA_DTYPE_Q8_0: k->q8_0_to_f32(b->raw, out, n / 32); return;
    case LORA_DTYPE_Q4_0: k->q4_0_to_f32(b->raw, out, n / 32); return;
    case LORA_DTYPE_NF4: k->nf4_to_f32(b->raw, out, n / b->block, b->block); return;
    }
}

static int same_float(float a, float b) { return memcmp(&a, &b, sizeof a) == 0; }

static void compare_meta(const model *m, const lora_reader *r)
{
    for (uint32_t i = 0; i < m->n_meta; i++) {
        const m_meta *e = &m->meta[i];
        lora_meta got;
        FUZZ_ASSERT(lora_reader_meta(r, i, &got) == LORA_OK);
        FUZZ_ASSERT(strcmp(got.key, e->key) == 0 && got.type == (lora_meta_type)e->type);
        switch (e->type) {
        case LORA_META_STRING:
            FUZZ_ASSERT(got.string_length == e->str_len && memcmp(got.string, e->str, e->str_len) == 0);
            FUZZ_ASSERT(got.string[e->str_len] == '\0');
            break;
        case LORA_META_FLOAT: FUZZ_ASSERT(memcmp(&got.number, &e->bits, 8) == 0); break;
        default: FUZZ_ASSERT((uint64_t)got.integer == e->bits); break;
        }
    }
}

static void compare_modules(const model *m, const lora_reader *r)
{
    for (uint32_t i = 0; i < m->n_modules; i++) {
        const m_module *e = &m->modules[i];
        lora_module got;
        FUZZ_ASSERT(lora_reader_module(r, i, &got) == LORA_OK);
        FUZZ_ASSERT(strcmp(got.name, e->name) == 0);
        FUZZ_ASSERT(got.kind == e->d.kind && got.scaling == e->d.scaling && got.flags == e->d.flags);
        FUZZ_ASSERT(got.rank == e->d.rank && same_float(got.alpha, e->d.alpha) && same_float(got.scale, e->scale));
        FUZZ_ASSERT(got.base_ndim == e->d.base_ndim);
        FUZZ_ASSERT(memcmp(got.base_shape, e->d.base_shape, sizeof got.base_shape) == 0);
        FUZZ_ASSERT(got.blob_a == e->d.blob_a && got.blob_b == e->d.blob_b);
        FUZZ_ASSERT(got.blob_magnitude == e->d.blob_magnitude && got.blob_bias == e->d.blob_bias);
    }
    for (uint32_t i = 0; i < m->n_tensors; i++) {
        lora_tensor got;
        FUZZ_ASSERT(lora_reader_tensor(r, i, &got) == LORA_OK);
        FUZZ_ASSERT(strcmp(got.name, m->tensors[i].name) == 0 && got.blob == m->tensors[i].blob);
    }
}

static void compare_blobs(const model *m, const lora_reader *r)
{
    for (uint32_t i = 0; i < m->n_blobs; i++) {
        const m_blob *e = &m->blobs[i];
        lora_blob got;
        FUZZ_ASSERT(lora_reader_blob(r, i, &got) == LORA_OK);
        FUZZ_ASSERT(got.dtype == e->dtype && got.ndim == e->ndim && got.numel == e->numel);
        FUZZ_ASSERT(memcmp(got.shape, e->shape, sizeof got.shape) == 0 && got.raw_size == e->raw_size);
        FUZZ_ASSERT(got.block == e->block);
        /* zlib is kept only when it makes the blob smaller. */
        FUZZ_ASSERT(got.compression == LORA_COMPRESSION_NONE || (e->zlib && got.stored_size < got.raw_size));
        uint8_t *raw = malloc(e->raw_size + 1);
        float *dec = malloc((size_t)e->numel * sizeof *dec), *want = malloc((size_t)e->numel * sizeof *want);
        FUZZ_ASSERT(raw && dec && want);
        FUZZ_ASSERT(lora_reader_blob_read(r, i, raw, e->raw_size, NULL) == LORA_OK);
        FUZZ_ASSERT(memcmp(raw, e->raw, e->raw_size) == 0);
        FUZZ_ASSERT(lora_reader_blob_decode_f32(r, i, dec, (size_t)e->numel, NULL) == LORA_OK);
        ref_decode(e, want);
        FUZZ_ASSERT(memcmp(dec, want, (size_t)e->numel * sizeof *dec) == 0);
        free(raw);
        free(dec);
        free(want);
    }
}

/* Everything the reader shows, fed to a fresh writer, must give back the
 * same file: the format leaves the writer no choice. */
static void rebuild_identical(const lora_reader *r, const uint8_t *file, size_t size, const lora_allocator *a)
{
    lora_file_info fi;
    lora_reader_file_info(r, &fi);
    lora_writer *w = NULL;
    FUZZ_ASSERT(lora_writer_create(a, &w) == LORA_OK);
    for (uint32_t i = 0; i < fi.metadata_count; i++) {
        lora_meta e;
        FUZZ_ASSERT(lora_reader_meta(r, i, &e) == LORA_OK);
        lora_status st = LORA_E_INVALID_ARGUMENT;
        switch (e.type) {
        case LORA_META_STRING: st = lora_writer_set_string(w, e.key, e.string, e.string_length); break;
        case LORA_META_INT: st = lora_writer_set_int(w, e.key, e.integer); break;
        case LORA_META_FLOAT: st = lora_writer_set_float(w, e.key, e.number); break;
        case LORA_META_BOOL: st = lora_writer_set_bool(w, e.key, (int)e.integer); break;
        }
        FUZZ_ASSERT(st == LORA_OK);
    }
    for (uint32_t i = 0; i < fi.blob_count; i++) {
        lora_blob b;
        FUZZ_ASSERT(lora_reader_blob(r, i, &b) == LORA_OK);
        uint8_t *raw = malloc((size_t)b.raw_size + 1);
        FUZZ_ASSERT(raw && lora_reader_blob_read(r, i, raw, (size_t)b.raw_size, NULL) == LORA_OK);
        FUZZ_ASSERT(lora_writer_add_blob_block(w, b.dtype, b.block, b.ndim, b.shape, raw, (size_t)b.raw_size,
                                               b.compression, NULL) == LORA_OK);
        free(raw);
    }
    for (uint32_t i = 0; i < fi.module_count; i++) {
        lora_module e;
        FUZZ_ASSERT(lora_reader_module(r, i, &e) == LORA_OK);
        lora_module_desc d = {e.name, e.kind, e.scaling, e.flags, e.rank, e.alpha, e.scale, e.base_ndim,
                              {0}, e.blob_a, e.blob_b, e.blob_magnitude, e.blob_bias};
        memcpy(d.base_shape, e.base_shape, sizeof d.base_shape);
        FUZZ_ASSERT(lora_writer_add_module(w, &d, NULL) == LORA_OK);
    }
    for (uint32_t i = 0; i < fi.tensor_count; i++) {
        lora_tensor t;
        FUZZ_ASSERT(lora_reader_tensor(r, i, &t) == LORA_OK);
        FUZZ_ASSERT(lora_writer_add_tensor(w, t.name, t.blob) == LORA_OK);
    }
    uint8_t *again = malloc(size + 1);
    size_t written = 0;
    FUZZ_ASSERT(again && lora_writer_write_buffer(w, again, size, &written, NULL) == LORA_OK);
    FUZZ_ASSERT(written == size && memcmp(again, file, size) == 0);
    free(again);
    lora_writer_free(w);
}

static void write_and_check(model *m, const lora_allocator *a)
{
    /* A blob nobody owns either gets a tensor or, sometimes, stays an
     * orphan, which the writer's self-check must refuse. */
    int leave_orphans = fp_u32(&m->p, 0, 15) == 0, orphans = 0;
    for (uint32_t i = 0; i < m->n_blobs; i++) {
        if (m->blobs[i].owned) continue;
        char name[NAME_CAP];
        snprintf(name, sizeof name, "orphan.%u", i);
        if (leave_orphans) orphans++;
        else FUZZ_ASSERT(add_tensor(m, name, i) == LORA_OK);
    }
    uint64_t size = 0;
    lora_error err;
    FUZZ_ASSERT(lora_writer_size(m->w, &size, &err) == LORA_OK);
    uint8_t *file = malloc((size_t)size), *twice = malloc((size_t)size);
    FUZZ_ASSERT(file && twice);
    size_t written = 0;
    lora_status st = lora_writer_write_buffer(m->w, file, (size_t)size, &written, &err);
    if (orphans) {
        FUZZ_ASSERT(st == LORA_E_BAD_BLOB_REF);
    } else {
        FUZZ_ASSERT(st == LORA_OK && written == size);
        FUZZ_ASSERT(lora_writer_write_buffer(m->w, twice, (size_t)size - 1, &written, NULL) == LORA_E_BUFFER_TOO_SMALL);
        FUZZ_ASSERT(lora_writer_write_buffer(m->w, twice, (size_t)size, &written, NULL) == LORA_OK);
        FUZZ_ASSERT(memcmp(file, twice, (size_t)size) == 0);
        lora_read_options o = LORA_READ_OPTIONS_INIT;
        o.flags = LORA_READ_VERIFY_CHECKSUMS;
        o.allocator = *a;
        lora_reader *r = NULL;
        FUZZ_ASSERT(lora_reader_open_buffer(file, (size_t)size, &o, &r, &err) == LORA_OK);
        lora_file_info fi;
        lora_reader_file_info(r, &fi);
        FUZZ_ASSERT(fi.metadata_count == m->n_meta && fi.module_count == m->n_modules);
        FUZZ_ASSERT(fi.tensor_count == m->n_tensors && fi.blob_count == m->n_blobs && fi.file_size == size);
        compare_meta(m, r);
        compare_modules(m, r);
        compare_blobs(m, r);
        rebuild_identical(r, file, (size_t)size, a);
        lora_reader_free(r);
    }
    free(file);
    free(twice);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    model *m = calloc(1, sizeof *m);
    FUZZ_ASSERT(m != NULL);
    fp_init(&m->p, data, size);
    fuzz_alloc_state as = {0};
    lora_allocator a = fuzz_alloc_hook(&as);
    FUZZ_ASSERT(lora_writer_create(&a, &m->w) == LORA_OK);
    uint32_t ops = fp_u32(&m->p, 0, MAX_OPS);
    for (uint32_t i = 0; i < ops; i++) {
        switch (fp_u32(&m->p, 0, 2)) {
        case 0: op_meta(m); break;
        case 1: op_module(m); break;
        default: op_tensor(m); break;
        }
    }
    write_and_check(m, &a);
    lora_writer_free(m->w);
    fuzz_alloc_check_empty(&as);
    for (uint32_t i = 0; i < m->n_blobs; i++) free(m->blobs[i].raw);
    free(m);
    return 0;
}
