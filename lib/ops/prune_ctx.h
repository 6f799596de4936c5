/*
 * prune_ctx.h - the state of one lora_prune call, shared by its files.
 * Internal to liblora-ops.
 *
 *   prune.c        the driver: passes over the modules, in parallel jobs
 *   prune_plan.c   options, the rank of each module, the report
 *   prune_write.c  what each module becomes in the output
 *   prune_svd.c    the numerical part (QR, core SVD, new factors)
 *
 * Threads: jobs on several modules at once only read the reader and write
 * their own module's entries of sig/p/k and of the report; everything that
 * touches the writer or calls the warning callback runs on the calling
 * thread, in module order.
 */
#ifndef LORA_OPS_PRUNE_CTX_H
#define LORA_OPS_PRUNE_CTX_H

#include "prune_svd.h"

typedef struct {
    const lora_prune_options *o;
    const lora_allocator *al;
    const lora_reader *r;
    lora_writer *w;            /* NULL for a dry run */
    lora_prune_report *rep;
    double *sig;               /* singular values of every module's delta, scale included */
    size_t *sig_off;           /* module i: sig[sig_off[i] .. + p[i]) */
    uint32_t *p, *k;
} pctx;

/* prune_plan.c */
lora_status lora_prune_check_options(const lora_prune_options *o, lora_error *err);
/* RANK and ENERGY: module i's rank from its own singular values. */
uint32_t lora_prune_local_rank(const pctx *c, uint32_t i, uint32_t r);
/* BUDGET: every c->k from all the singular values. */
lora_status lora_prune_budget_ranks(pctx *c, uint32_t n, lora_error *err);
/* Fill report entry i from c->sig, c->p[i], c->k[i]. */
void lora_prune_module_report(pctx *c, uint32_t i, const lora_module *m);
void lora_prune_totals(lora_prune_report *rep);
lora_status lora_prune_setup(pctx *c, uint32_t n, lora_error *err);

/* prune_write.c: module i at rank c->k[i]. `f` holds its decoded factors
 * when the output needs them (rewritten, --dtype, dropped), and `fresh`
 * the new rank-k factors (k*K floats of A', then M*k of B') when it is
 * rewritten at k > 0. Also the DoRA refusal and warnings. */
lora_status lora_prune_write_module(pctx *c, uint32_t i, const lora_module *m, const lora_lr_factors *f,
                                    const float *fresh, lora_error *err);
void lora_prune_warn(const lora_prune_options *o, const char *fmt, ...) LORA_PRINTF(2, 3);

#endif /* LORA_OPS_PRUNE_CTX_H */
