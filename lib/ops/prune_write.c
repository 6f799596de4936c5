/*
 * prune_write.c - what each module of lora_prune's input becomes in the
 * output: copied (rank kept), re-encoded (--dtype), refactored (new rank or
 * --refactor), dropped (BUDGET), and the DoRA policy. Runs on the calling
 * thread only: it uses the writer and the warning callback.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include "prune_ctx.h"

void lora_prune_warn(const lora_prune_options *o, const char *fmt, ...)
{
    if (!o->warn) return;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    o->warn(o->warn_opaque, msg);
}

typedef struct {
    lora_dtype dtype;
    uint32_t block;
} dtype_choice;

/* The dtype a factor of n elements gets: the option's, else its own; F32
 * when n is not a whole number of that dtype's blocks. */
static dtype_choice factor_dtype(const pctx *c, const lora_module *m, const lora_blob *src, uint64_t n,
                                 const char *which)
{
    dtype_choice d = {src->dtype, src->dtype == LORA_DTYPE_NF4 ? src->block : 0};
    if (c->o->dtype != -1) d = (dtype_choice){(lora_dtype)c->o->dtype, c->o->block};
    if (lora_lr_fits_blocks(d.dtype, d.block, n)) return d;
    lora_prune_warn(c->o, "module '%s' %s: %llu elements are not a whole number of %s blocks; stored as F32",
                    m->name, which, (unsigned long long)n, lora_dtype_name(d.dtype));
    return (dtype_choice){LORA_DTYPE_F32, 0};
}

/* A and B from f32 values: A keeps its shape with rank k in dim 0, B in dim 1. */
static lora_status add_factors(pctx *c, const lora_module *m, uint32_t k, const float *a, const float *b,
                               uint64_t K, uint64_t M, uint32_t *ia, uint32_t *ib, lora_error *err)
{
    lora_blob sa, sb;
    LORA_FORWARD_IF_ERROR(lora_reader_blob(c->r, m->blob_a, &sa));
    LORA_FORWARD_IF_ERROR(lora_reader_blob(c->r, m->blob_b, &sb));
    uint64_t shape_a[LORA_MAX_DIMS], shape_b[LORA_MAX_DIMS];
    memcpy(shape_a, sa.shape, sizeof shape_a);
    memcpy(shape_b, sb.shape, sizeof shape_b);
    shape_a[0] = k;
    shape_b[1] = k;
    dtype_choice da = factor_dtype(c, m, &sa, k * K, "A"), db = factor_dtype(c, m, &sb, M * k, "B");
    LORA_FORWARD_IF_ERROR(
        lora_lr_add_f32(c->r, m->blob_a, c->w, da.dtype, da.block, sa.ndim, shape_a, a, k * K, ia, err));
    return lora_lr_add_f32(c->r, m->blob_b, c->w, db.dtype, db.block, sb.ndim, shape_b, b, M * k, ib, err);
}

static lora_status finish_module(pctx *c, const lora_module *m, uint32_t rank, uint32_t a, uint32_t b,
                                 lora_error *err)
{
    uint32_t mag, bias;
    LORA_FORWARD_IF_ERROR(lora_lr_copy_optional(c->r, c->al, c->w, m->blob_magnitude, &mag, err));
    LORA_FORWARD_IF_ERROR(lora_lr_copy_optional(c->r, c->al, c->w, m->blob_bias, &bias, err));
    return lora_lr_add_module(c->w, m, rank, a, b, mag, bias, err);
}

/* Rank kept, factors not refactored: copied, or re-encoded for --dtype. */
static lora_status keep_module(pctx *c, const lora_module *m, const lora_lr_factors *f, lora_error *err)
{
    uint32_t a, b;
    if (c->o->dtype == -1) {
        LORA_FORWARD_IF_ERROR(lora_lr_copy_blob(c->r, c->al, c->w, m->blob_a, &a, err));
        LORA_FORWARD_IF_ERROR(lora_lr_copy_blob(c->r, c->al, c->w, m->blob_b, &b, err));
    } else {
        LORA_FORWARD_IF_ERROR(add_factors(c, m, m->rank, f->a, f->b, f->K, f->M, &a, &b, err));
    }
    return finish_module(c, m, m->rank, a, b, err);
}

/* Dropped by BUDGET: gone, unless a bias or magnitude still has to apply. */
static lora_status drop_module(pctx *c, const lora_module *m, const lora_lr_factors *f, lora_error *err)
{
    if (m->blob_bias == LORA_NO_BLOB && m->blob_magnitude == LORA_NO_BLOB) {
        c->rep->dropped_count++;
        return LORA_OK;
    }
    lora_prune_warn(c->o, "module '%s': its delta is dropped but it has a %s; kept as rank 1 with zero factors",
                    m->name, m->blob_bias != LORA_NO_BLOB ? "LoRA bias" : "DoRA magnitude");
    float *z = lora_mem_calloc(c->al, (size_t)(f->K + f->M), sizeof *z);
    if (!z) return lora_error_set(err, LORA_E_OUT_OF_MEMORY, LORA_NO_OFFSET, "module '%s'", m->name);
    uint32_t a, b;
    lora_status st = add_factors(c, m, 1, z, z + f->K, f->K, f->M, &a, &b, err);
    lora_mem_free(c->al, z);
    LORA_FORWARD_IF_ERROR(st);
    return finish_module(c, m, 1, a, b, err);
}

/* Write module i at rank c->k[i] (see prune_ctx.h). */
lora_status lora_prune_write_module(pctx *c, uint32_t i, const lora_module *m, const lora_lr_factors *f,
                                    const float *fresh, lora_error *err)
{
    const lora_prune_module *q = &c->rep->modules[i];
    if (q->rewritten && q->dora) {
        if (!(c->o->flags & LORA_PRUNE_ALLOW_DORA))
            return lora_error_set(err, LORA_E_UNSUPPORTED_ADAPTER, LORA_NO_OFFSET,
                                  "module '%s' has a DoRA magnitude: pruning changes its delta and so the row norms "
                                  "||W + dW|| the magnitude divides by; allow it explicitly to prune DoRA modules",
                                  m->name);
        lora_prune_warn(c->o, "module '%s': DoRA magnitude kept as is; the merged weight also moves through the row "
                              "norms, which the reported delta error does not include", m->name);
    }
    if (!c->w) return LORA_OK; /* dry run: the checks above, nothing else */
    if (c->k[i] == 0) return drop_module(c, m, f, err);
    if (!q->rewritten) return keep_module(c, m, f, err);
    uint32_t k = c->k[i], ia, ib;
    LORA_FORWARD_IF_ERROR(add_factors(c, m, k, fresh, fresh + f->K * k, f->K, f->M, &ia, &ib, err));
    return finish_module(c, m, k, ia, ib, err);
}
