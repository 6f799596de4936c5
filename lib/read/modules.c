/* Step 12: modules. After unique names, each module is checked on its own
 * (rank, alpha, scale, flags, base shape: format layer), then its blob
 * references, then the shapes of the blobs against rank and base shape:
 *   linear    base [out,in] ([in,out] with fan_in_fan_out)  A [r,in]        B [out,r]
 *   embedding base [num,dim]                                A [r,num]       B [dim,r]
 *   convNd    base [out,cin,k..]                            A [r,cin,k..]   B [out,r,1..]
 *   magnitude [out] (embedding [dim]); bias [out], none for embedding. */
#include <string.h>
#include "reader.h"

typedef struct {
    uint32_t ndim;
    uint64_t d[LORA_FMT_MAX_DIMS];
} shape;

typedef struct {
    shape a, b;
    uint64_t out; /* length of magnitude and bias */
} expected;

static expected expected_shapes(const lora_fmt_module *m)
{
    expected e;
    memset(&e, 0, sizeof e);
    const uint64_t *base = m->base_shape;
    uint64_t r = m->rank;
    e.a.ndim = e.b.ndim = m->base_ndim;
    if (m->kind == LORA_FMT_KIND_LINEAR) {
        int t = (m->flags & LORA_FMT_MODULE_FAN_IN_FAN_OUT) != 0;
        uint64_t out = t ? base[1] : base[0], in = t ? base[0] : base[1];
        e.a = (shape){2, {r, in, 0, 0, 0}};
        e.b = (shape){2, {out, r, 0, 0, 0}};
        e.out = out;
    } else if (m->kind == LORA_FMT_KIND_EMBEDDING) {
        e.a = (shape){2, {r, base[0], 0, 0, 0}};
        e.b = (shape){2, {base[1], r, 0, 0, 0}};
        e.out = base[1];
    } else {
        e.a.d[0] = r;
        e.b.d[0] = base[0];
        e.b.d[1] = r;
        for (uint32_t i = 1; i < m->base_ndim; i++) e.a.d[i] = base[i];
        for (uint32_t i = 2; i < m->base_ndim; i++) e.b.d[i] = 1;
        e.out = base[0];
    }
    return e;
}

static int same_shape(const lora_fmt_blob *b, const shape *s)
{
    if (b->ndim != s->ndim) return 0;
    for (uint32_t i = 0; i < s->ndim; i++)
        if (b->shape[i] != s->d[i]) return 0;
    return 1;
}

static lora_status shape_error(const lora_reader *r, uint32_t mi, const char *role, uint32_t blob, const shape *want,
                               uint64_t field_off, lora_error *err)
{
    const lora_fmt_module *m = &r->modules[mi].f;
    const lora_fmt_blob *b = &r->blobs[blob].f;
    char got[128], base[128], exp[128];
    lora_read_format_shape(got, sizeof got, b->ndim, b->shape);
    lora_read_format_shape(base, sizeof base, m->base_ndim, m->base_shape);
    lora_read_format_shape(exp, sizeof exp, want->ndim, want->d);
    return lora_error_set(err, LORA_E_BAD_SHAPE, field_off,
                          "module '%s': %s blob %u shape %s does not match rank %u and base %s (expected %s)",
                          r->modules[mi].name, role, blob, got, m->rank, base, exp);
}

static lora_status check_shapes(const lora_reader *r, uint32_t mi, uint64_t off, lora_error *err)
{
    const lora_fmt_module *m = &r->modules[mi].f;
    expected e = expected_shapes(m);
    shape vec = {1, {e.out, 0, 0, 0, 0}};
    if (!same_shape(&r->blobs[m->blob_a].f, &e.a)) return shape_error(r, mi, "A", m->blob_a, &e.a, off + 72, err);
    if (!same_shape(&r->blobs[m->blob_b].f, &e.b)) return shape_error(r, mi, "B", m->blob_b, &e.b, off + 76, err);
    if (m->blob_magnitude != LORA_FMT_NO_BLOB && !same_shape(&r->blobs[m->blob_magnitude].f, &vec))
        return shape_error(r, mi, "magnitude", m->blob_magnitude, &vec, off + 80, err);
    if (m->blob_bias != LORA_FMT_NO_BLOB) {
        /* An embedding has no bias to add to. */
        if (m->kind == LORA_FMT_KIND_EMBEDDING)
            return lora_error_set(err, LORA_E_BAD_SHAPE, off + 84, "module '%s': an embedding cannot have a bias blob",
                                  r->modules[mi].name);
        if (!same_shape(&r->blobs[m->blob_bias].f, &vec))
            return shape_error(r, mi, "bias", m->blob_bias, &vec, off + 84, err);
    }
    return LORA_OK;
}

static lora_status check_refs(const lora_reader *r, uint32_t mi, uint64_t off, lora_error *err)
{
    static const char *const names[4] = {"A", "B", "magnitude", "bias"};
    const lora_fmt_module *m = &r->modules[mi].f;
    const uint32_t refs[4] = {m->blob_a, m->blob_b, m->blob_magnitude, m->blob_bias};
    for (uint32_t k = 0; k < 4; k++) {
        if (refs[k] == LORA_FMT_NO_BLOB && k >= 2) continue;
        if (refs[k] == LORA_FMT_NO_BLOB)
            return lora_error_set(err, LORA_E_BAD_BLOB_REF, off + 72 + 4 * k, "module '%s': %s blob is required",
                                  r->modules[mi].name, names[k]);
        if (refs[k] >= r->h.blob_count)
            return lora_error_set(err, LORA_E_BAD_BLOB_REF, off + 72 + 4 * k,
                                  "module '%s': %s blob %u does not exist (%u blobs)", r->modules[mi].name, names[k],
                                  refs[k], r->h.blob_count);
    }
    return LORA_OK;
}

static lora_status module_fault(const lora_reader *r, uint32_t mi, const lora_fmt_fault *f, lora_error *err)
{
    const lora_fmt_module *m = &r->modules[mi].f;
    const char *name = r->modules[mi].name;
    if (f->status == LORA_E_LIMIT_EXCEEDED)
        return lora_error_set(err, f->status, f->offset, "module '%s': rank %u exceeds the limit %u", name, m->rank,
                              r->limits.max_rank);
    if (f->status == LORA_E_BAD_ALPHA)
        return lora_error_set(err, f->status, f->offset, "module '%s': alpha %g is not finite", name, (double)m->alpha);
    if (f->status == LORA_E_BAD_SCALE)
        return lora_error_set(err, f->status, f->offset, "module '%s': scale %.9g does not follow %s with alpha %.9g, rank %u",
                              name, (double)m->scale, lora_scaling_name((lora_scaling)m->scaling), (double)m->alpha,
                              m->rank);
    return lora_error_set(err, f->status, f->offset, "module '%s': %s: %s", name, f->field,
                          lora_status_message(f->status));
}

static void name_of(const lora_reader *r, uint32_t i, lora_name_ix *out)
{
    *out = (lora_name_ix){r->modules[i].name, r->modules[i].f.name.length, i};
}

lora_status lora_read_check_modules(lora_reader *r, lora_error *err)
{
    uint32_t n = r->h.module_count;
    if (n == 0) return LORA_OK;
    r->module_by_name = lora_read_build_index(&r->alloc, n, name_of, r);
    if (!r->module_by_name)
        return lora_error_set(err, LORA_E_OUT_OF_MEMORY, LORA_NO_OFFSET, "cannot allocate the module index");
    uint32_t first, dup = lora_read_find_duplicate(r->module_by_name, n, &first);
    if (dup != UINT32_MAX)
        return lora_error_set(err, LORA_E_DUPLICATE_NAME,
                              lora_read_rec_off(r->h.modules_offset, dup, LORA_FMT_MODULE_RECORD_SIZE),
                              "module %u: name '%s' already used by module %u", dup, r->modules[dup].name, first);
    for (uint32_t i = 0; i < n; i++) {
        uint64_t off = lora_read_rec_off(r->h.modules_offset, i, LORA_FMT_MODULE_RECORD_SIZE);
        lora_fmt_fault f;
        if (lora_fmt_check_module(&r->modules[i].f, r->limits.max_rank, off, &f) != LORA_OK)
            return module_fault(r, i, &f, err);
        LORA_FORWARD_IF_ERROR(check_refs(r, i, off, err));
        LORA_FORWARD_IF_ERROR(check_shapes(r, i, off, err));
    }
    return LORA_OK;
}
