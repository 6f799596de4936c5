/*
 * quantize.c - lora_quantize: convert the factors of a .lora file to another
 * dtype and measure what that did to every module's delta.
 *
 * The measurement reads the written file back rather than trusting the
 * in-memory conversion: what is reported is what a reader of the output
 * will decode.
 */
#include <limits.h>
#include <math.h>
#include <string.h>
#include "lowrank.h"

static lora_status check_options(const lora_quantize_options *o, uint8_t *shift, lora_error *err)
{
    if (!lora_dtype_name(o->dtype))
        return lora_error_set(err, LORA_E_INVALID_ARGUMENT, LORA_NO_OFFSET, "unknown dtype %d", (int)o->dtype);
    if (o->block != 0 && o->dtype != LORA_DTYPE_NF4)
        return lora_error_set(err, LORA_E_INVALID_ARGUMENT, LORA_NO_OFFSET,
                              "a block size applies to NF4 only (Q8_0 and Q4_0 blocks are always 32)");
    if (lora_fmt_block_shift_for((uint32_t)o->dtype, o->block, shift) != LORA_OK)
        return lora_error_set(err, LORA_E_INVALID_ARGUMENT, LORA_NO_OFFSET,
                              "NF4 block %u is not a power of two in 32..4096", o->block);
    if (o->factors & ~(LORA_QUANTIZE_A | LORA_QUANTIZE_B) || o->reserved0)
        return lora_error_set(err, LORA_E_INVALID_ARGUMENT, LORA_NO_OFFSET, "unknown factor bits or reserved field");
    for (int i = 0; i < 4; i++)
        if (o->reserved[i]) return lora_error_set(err, LORA_E_INVALID_ARGUMENT, LORA_NO_OFFSET, "reserved field set");
    return LORA_OK;
}

typedef struct {
    const lora_quantize_options *o;
    uint32_t block;          /* the target's block in elements */
    const lora_reader *r;
    lora_writer *w;
} qctx;

/* What happens to one factor; the report recomputes it the same way. */
static lora_factor_action action_of(const lora_quantize_options *o, uint32_t block, const lora_blob *in, int selected)
{
    if (!selected) return LORA_FACTOR_NOT_SELECTED;
    if (in->dtype == o->dtype && in->block == block) return LORA_FACTOR_UNCHANGED;
    return lora_lr_fits_blocks(o->dtype, block, in->numel) ? LORA_FACTOR_CONVERTED : LORA_FACTOR_NOT_BLOCKS;
}

static lora_status decode_finite(const qctx *c, const lora_module *m, const lora_blob *b, uint32_t blob,
                                 const char *which, float **out, lora_error *err)
{
    float *v = lora_mem_alloc(&c->o->allocator, (size_t)b->numel * sizeof *v);
    if (!v) return lora_error_set(err, LORA_E_OUT_OF_MEMORY, LORA_NO_OFFSET, "module '%s' %s", m->name, which);
    lora_status st = lora_reader_blob_decode_f32(c->r, blob, v, (size_t)b->numel, err);
    for (uint64_t i = 0; st == LORA_OK && i < b->numel; i++)
        if (!isfinite(v[i]))
            st = lora_error_set(err, LORA_E_NONFINITE, b->offset,
                                "module '%s' %s: element %llu is NaN or infinite; it cannot be converted", m->name,
                                which, (unsigned long long)i);
    if (st != LORA_OK) {
        lora_mem_free(&c->o->allocator, v);
        return st;
    }
    *out = v;
    return LORA_OK;
}

/* Binary exponent of the largest magnitude (frexpf), INT_MIN if all zero. */
static int max_exponent(const float *v, uint64_t n)
{
    float mx = 0;
    for (uint64_t i = 0; i < n; i++) mx = fmaxf(mx, fabsf(v[i]));
    int e = INT_MIN;
    if (mx > 0) (void)frexpf(mx, &e);
    return e;
}

/* B * 2^k and A * 2^-k leave B @ A unchanged (exact in binary32 away from
 * the subnormal range) and give both factors about the same largest
 * magnitude. Adapters trained from B = 0 often have B 1e3-1e4 times smaller
 * than A; in Q8_0/Q4_0 (and F16) B's block scales would then be f16
 * subnormals with few significant bits. */
static int balance(float *a, uint64_t na, float *b, uint64_t nb)
{
    int ea = max_exponent(a, na), eb = max_exponent(b, nb);
    if (ea == INT_MIN || eb == INT_MIN) return 0; /* a zero factor: nothing to balance */
    int k = (ea - eb) / 2;
    for (uint64_t i = 0; k && i < na; i++) a[i] = ldexpf(a[i], -k);
    for (uint64_t i = 0; k && i < nb; i++) b[i] = ldexpf(b[i], k);
    return k;
}

static lora_status do_module(const qctx *c, uint32_t i, lora_error *err)
{
    lora_module m;
    lora_blob ba, bb;
    LORA_FORWARD_IF_ERROR(lora_reader_module(c->r, i, &m));
    LORA_FORWARD_IF_ERROR(lora_reader_blob(c->r, m.blob_a, &ba));
    LORA_FORWARD_IF_ERROR(lora_reader_blob(c->r, m.blob_b, &bb));
    uint32_t sel = c->o->factors ? c->o->factors : (LORA_QUANTIZE_A | LORA_QUANTIZE_B);
    lora_factor_action act_a = action_of(c->o, c->block, &ba, (sel & LORA_QUANTIZE_A) != 0);
    lora_factor_action act_b = action_of(c->o, c->block, &bb, (sel & LORA_QUANTIZE_B) != 0);
    const lora_allocator *al = &c->o->allocator;
    float *va = NULL, *vb = NULL;
    uint32_t a = LORA_NO_BLOB, b = LORA_NO_BLOB, mag, bias;
    lora_status st = LORA_OK;
    if (act_a == LORA_FACTOR_CONVERTED) st = decode_finite(c, &m, &ba, m.blob_a, "A", &va, err);
    if (st == LORA_OK && act_b == LORA_FACTOR_CONVERTED) st = decode_finite(c, &m, &bb, m.blob_b, "B", &vb, err);
    if (st == LORA_OK && va && vb && c->o->dtype != LORA_DTYPE_F32) balance(va, ba.numel, vb, bb.numel);
    if (st == LORA_OK)
        st = va ? lora_lr_add_f32(c->r, m.blob_a, c->w, c->o->dtype, c->block, ba.ndim, ba.shape, va, ba.numel, &a, err)
                : lora_lr_copy_blob(c->r, al, c->w, m.blob_a, &a, err);
    if (st == LORA_OK)
        st = vb ? lora_lr_add_f32(c->r, m.blob_b, c->w, c->o->dtype, c->block, bb.ndim, bb.shape, vb, bb.numel, &b, err)
                : lora_lr_copy_blob(c->r, al, c->w, m.blob_b, &b, err);
    lora_mem_free(al, va);
    lora_mem_free(al, vb);
    LORA_FORWARD_IF_ERROR(st);
    LORA_FORWARD_IF_ERROR(lora_lr_copy_optional(c->r, al, c->w, m.blob_magnitude, &mag, err));
    LORA_FORWARD_IF_ERROR(lora_lr_copy_optional(c->r, al, c->w, m.blob_bias, &bias, err));
    return lora_lr_add_module(c->w, &m, m.rank, a, b, mag, bias, err);
}

/* ---- the report: both files decoded again ---- */

static lora_status measure_module(const lora_reader *ri, const lora_reader *ro, uint32_t i,
                                  const lora_quantize_options *o, uint32_t block, lora_quantize_module *q,
                                  lora_error *err)
{
    lora_module mi, mo;
    lora_blob ai, bi, ao, bo;
    LORA_FORWARD_IF_ERROR(lora_reader_module(ri, i, &mi));
    LORA_FORWARD_IF_ERROR(lora_reader_module(ro, i, &mo));
    LORA_FORWARD_IF_ERROR(lora_reader_blob(ri, mi.blob_a, &ai));
    LORA_FORWARD_IF_ERROR(lora_reader_blob(ri, mi.blob_b, &bi));
    LORA_FORWARD_IF_ERROR(lora_reader_blob(ro, mo.blob_a, &ao));
    LORA_FORWARD_IF_ERROR(lora_reader_blob(ro, mo.blob_b, &bo));
    uint32_t sel = o->factors ? o->factors : (LORA_QUANTIZE_A | LORA_QUANTIZE_B);
    q->a_dtype_in = ai.dtype, q->b_dtype_in = bi.dtype, q->a_dtype_out = ao.dtype, q->b_dtype_out = bo.dtype;
    q->a_block_out = ao.block, q->b_block_out = bo.block;
    q->a_action = action_of(o, block, &ai, (sel & LORA_QUANTIZE_A) != 0);
    q->b_action = action_of(o, block, &bi, (sel & LORA_QUANTIZE_B) != 0);
    q->bytes_in = ai.stored_size + bi.stored_size;
    q->bytes_out = ao.stored_size + bo.stored_size;

    const lora_allocator *al = &o->allocator;
    lora_lr_factors fi, fo;
    LORA_FORWARD_IF_ERROR(lora_lr_load(ri, al, &mi, 0, &fi, err));
    lora_status st = lora_lr_load(ro, al, &mo, 0, &fo, err);
    if (st == LORA_OK) {
        double e2;
        st = lora_lr_delta_error(&fi, mi.scale, &fo, mo.scale, al, &q->delta_norm, &e2, &q->max_abs_error);
        if (st != LORA_OK) lora_error_set(err, st, LORA_NO_OFFSET, "module '%s': cannot measure the error", mi.name);
        q->rel_error = q->delta_norm > 0 ? e2 / q->delta_norm : (e2 > 0 ? (double)INFINITY : 0.0);
        lora_lr_free(al, &fo);
    }
    lora_lr_free(al, &fi);
    return st;
}

static lora_status measure(const lora_reader *ri, const char *output, const lora_quantize_options *o, uint32_t block,
                           lora_quantize_report *rep, lora_error *err)
{
    lora_read_options ro_opts = LORA_READ_OPTIONS_INIT;
    ro_opts.allocator = o->allocator;
    lora_reader *ro;
    LORA_FORWARD_IF_ERROR(lora_reader_open_file(output, &ro_opts, &ro, err));
    lora_file_info fi;
    lora_reader_file_info(ri, &fi);
    lora_status st = LORA_OK;
    for (uint32_t i = 0; st == LORA_OK && i < fi.module_count; i++) {
        lora_quantize_module *q = &rep->modules[i];
        st = measure_module(ri, ro, i, o, block, q, err);
        if (st != LORA_OK) break;
        rep->not_blocks_count += (q->a_action == LORA_FACTOR_NOT_BLOCKS) + (q->b_action == LORA_FACTOR_NOT_BLOCKS);
        rep->factor_bytes_in += q->bytes_in;
        rep->factor_bytes_out += q->bytes_out;
        if (q->rel_error > rep->max_rel_error || q->rel_error != q->rel_error) rep->max_rel_error = q->rel_error;
    }
    lora_reader_free(ro);
    return st;
}

static lora_status report_init(const lora_reader *r, const lora_allocator *al, lora_quantize_report *rep)
{
    lora_file_info fi;
    lora_reader_file_info(r, &fi);
    memset(rep, 0, sizeof *rep);
    rep->allocator_ = *al;
    rep->file_size_in = fi.file_size;
    if (fi.module_count == 0) return LORA_OK;
    rep->modules = lora_mem_calloc(al, fi.module_count, sizeof *rep->modules);
    const char **names = lora_mem_calloc(al, fi.module_count, sizeof *names);
    const char **outn = lora_mem_calloc(al, fi.module_count, sizeof *outn);
    lora_status st = rep->modules && names && outn ? LORA_OK : LORA_E_OUT_OF_MEMORY;
    for (uint32_t i = 0; st == LORA_OK && i < fi.module_count; i++) {
        lora_module m;
        st = lora_reader_module(r, i, &m);
        names[i] = m.name;
    }
    if (st == LORA_OK && !(rep->names_ = lora_lr_names(al, names, fi.module_count, outn))) st = LORA_E_OUT_OF_MEMORY;
    for (uint32_t i = 0; st == LORA_OK && i < fi.module_count; i++) rep->modules[i].name = outn[i];
    rep->module_count = fi.module_count;
    lora_mem_free(al, names);
    lora_mem_free(al, outn);
    return st;
}

void lora_quantize_report_free(lora_quantize_report *rep)
{
    if (!rep) return;
    lora_allocator al = rep->allocator_;
    lora_mem_free(&al, rep->modules);
    lora_mem_free(&al, rep->names_);
    memset(rep, 0, sizeof *rep);
}

static lora_status build(const qctx *c, lora_error *err)
{
    lora_file_info fi;
    lora_reader_file_info(c->r, &fi);
    LORA_FORWARD_IF_ERROR(lora_lr_copy_meta(c->r, c->w, err));
    for (uint32_t i = 0; i < fi.module_count; i++) LORA_FORWARD_IF_ERROR(do_module(c, i, err));
    return lora_lr_copy_tensors(c->r, &c->o->allocator, c->w, err);
}

lora_status lora_quantize(const char *input, const char *output, const lora_quantize_options *opts,
                          lora_quantize_report *report, lora_error *err)
{
    lora_error_clear(err);
    if (report) memset(report, 0, sizeof *report);
    lora_quantize_options o = LORA_QUANTIZE_OPTIONS_INIT;
    if (opts) o = *opts;
    if (!input || !output) return lora_error_set(err, LORA_E_INVALID_ARGUMENT, LORA_NO_OFFSET, "NULL path");
    uint8_t shift;
    LORA_FORWARD_IF_ERROR(check_options(&o, &shift, err));
    qctx c = {&o, lora_fmt_blob_block_elems((uint32_t)o.dtype, shift), NULL, NULL};

    lora_read_options ropts = LORA_READ_OPTIONS_INIT;
    ropts.allocator = o.allocator;
    ropts.flags = LORA_READ_VERIFY_CHECKSUMS;
    lora_reader *r;
    LORA_FORWARD_IF_ERROR(lora_reader_open_file(input, &ropts, &r, err));
    c.r = r;
    lora_quantize_report rep;
    lora_status st = report_init(r, &o.allocator, &rep);
    if (st == LORA_OK) st = lora_writer_create(&o.allocator, &c.w);
    if (st != LORA_OK) lora_error_set(err, st, LORA_NO_OFFSET, "out of memory");
    if (st == LORA_OK) st = build(&c, err);
    if (st == LORA_OK) st = lora_lr_write(c.w, input, output, &rep.file_size_out, err);
    lora_writer_free(c.w);
    if (st == LORA_OK && report) st = measure(r, output, &o, c.block, &rep, err);
    lora_reader_free(r);
    if (st == LORA_OK && report) *report = rep;
    else lora_quantize_report_free(&rep);
    return st;
}
