/*
 * prune_plan.c - lora_prune's decisions: the options, the rank each module
 * keeps (RANK, ENERGY per module; BUDGET over all of them) and the report.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "prune_ctx.h"

lora_status lora_prune_check_options(const lora_prune_options *o, lora_error *err)
{
    const char *bad = NULL;
    switch (o->mode) {
    case LORA_PRUNE_RANK: bad = o->rank == 0 ? "rank must be at least 1" : NULL; break;
    case LORA_PRUNE_ENERGY: bad = !(o->energy > 0.0 && o->energy <= 1.0) ? "energy must be in (0, 1]" : NULL; break;
    case LORA_PRUNE_BUDGET: bad = o->budget == 0 ? "budget must be at least 1" : NULL; break;
    default: bad = "unknown mode"; break;
    }
    uint8_t shift;
    if (!bad && o->dtype != -1 && !lora_dtype_name((lora_dtype)o->dtype)) bad = "unknown dtype";
    if (!bad && o->block && o->dtype != LORA_DTYPE_NF4) bad = "a block size applies to NF4 only";
    if (!bad && o->dtype == LORA_DTYPE_NF4 && lora_fmt_block_shift_for(LORA_DTYPE_NF4, o->block, &shift) != LORA_OK)
        bad = "NF4 block must be a power of two in 32..4096";
    if (!bad && (o->flags & ~(LORA_PRUNE_DRY_RUN | LORA_PRUNE_REFACTOR | LORA_PRUNE_ALLOW_DORA)))
        bad = "unknown flags";
    if (!bad && (o->reserved0 || o->reserved[0] || o->reserved[1] || o->reserved[2] || o->reserved[3]))
        bad = "reserved field set";
    return bad ? lora_error_set(err, LORA_E_INVALID_ARGUMENT, LORA_NO_OFFSET, "%s", bad) : LORA_OK;
}

static uint32_t energy_rank(const double *sig, uint32_t p, double fraction)
{
    double total = 0, cum = 0;
    for (uint32_t i = 0; i < p; i++) total += sig[i] * sig[i];
    if (total == 0) return 1; /* nothing to keep: the smallest rank a module can have */
    /* The same summation order as `total`, so cum reaches total exactly at p. */
    for (uint32_t i = 0; i < p; i++) {
        cum += sig[i] * sig[i];
        if (cum >= fraction * total) return i + 1;
    }
    return p;
}

uint32_t lora_prune_local_rank(const pctx *c, uint32_t i, uint32_t r)
{
    const double *s = c->sig + c->sig_off[i];
    if (c->o->mode == LORA_PRUNE_ENERGY) return energy_rank(s, c->p[i], c->o->energy);
    uint32_t k = c->o->rank < r ? c->o->rank : r;
    return k < c->p[i] ? k : c->p[i]; /* more than min(out, in, r) values do not exist */
}

typedef struct {
    double v;
    uint32_t module, index;
} sv_ref;

static int sv_cmp(const void *x, const void *y)
{
    const sv_ref *a = x, *b = y;
    if (a->v != b->v) return a->v > b->v ? -1 : 1;
    if (a->module != b->module) return a->module < b->module ? -1 : 1;
    return a->index < b->index ? -1 : a->index > b->index;
}

/* The budget largest values overall; within a module they are a prefix,
 * since each module's values are sorted and ties go to the lower index. */
lora_status lora_prune_budget_ranks(pctx *c, uint32_t n, lora_error *err)
{
    size_t total = 0;
    for (uint32_t i = 0; i < n; i++) total += c->p[i];
    sv_ref *all = lora_mem_calloc(c->al, total ? total : 1, sizeof *all);
    if (!all) return lora_error_set(err, LORA_E_OUT_OF_MEMORY, LORA_NO_OFFSET, "%zu singular values", total);
    size_t t = 0;
    for (uint32_t i = 0; i < n; i++)
        for (uint32_t j = 0; j < c->p[i]; j++) all[t++] = (sv_ref){c->sig[c->sig_off[i] + j], i, j};
    qsort(all, total, sizeof *all, sv_cmp);
    for (uint32_t i = 0; i < n; i++) c->k[i] = 0;
    for (size_t j = 0; j < total && j < c->o->budget; j++) c->k[all[j].module]++;
    lora_mem_free(c->al, all);
    return LORA_OK;
}

void lora_prune_module_report(pctx *c, uint32_t i, const lora_module *m)
{
    lora_prune_module *q = &c->rep->modules[i];
    const double *s = c->sig + c->sig_off[i];
    double total = 0, kept = 0;
    for (uint32_t j = 0; j < c->p[i]; j++) {
        total += s[j] * s[j];
        if (j < c->k[i]) kept += s[j] * s[j];
    }
    q->old_rank = m->rank;
    q->new_rank = c->k[i];
    q->rewritten = c->k[i] != m->rank || (c->o->flags & LORA_PRUNE_REFACTOR);
    q->dora = m->blob_magnitude != LORA_NO_BLOB;
    q->energy = total;
    q->energy_kept = total > 0 ? kept / total : 1.0;
    double dropped = total - kept;
    q->rel_error = total > 0 && dropped > 0 ? sqrt(dropped / total) : 0.0;
    q->sigma_max = c->p[i] ? s[0] : 0;
    q->sigma_last_kept = c->k[i] ? s[c->k[i] - 1] : 0;
}

/* ---- the report ---- */


lora_status lora_prune_setup(pctx *c, uint32_t n, lora_error *err)
{
    lora_prune_report *rep = c->rep;
    memset(rep, 0, sizeof *rep);
    rep->allocator_ = *c->al;
    size_t total = 0;
    const char **names = lora_mem_calloc(c->al, n ? n : 1, sizeof *names);
    const char **outn = lora_mem_calloc(c->al, n ? n : 1, sizeof *outn);
    rep->modules = lora_mem_calloc(c->al, n ? n : 1, sizeof *rep->modules);
    c->sig_off = lora_mem_calloc(c->al, n ? n : 1, sizeof *c->sig_off);
    c->p = lora_mem_calloc(c->al, n ? n : 1, sizeof *c->p);
    c->k = lora_mem_calloc(c->al, n ? n : 1, sizeof *c->k);
    lora_status st = names && outn && rep->modules && c->sig_off && c->p && c->k ? LORA_OK : LORA_E_OUT_OF_MEMORY;
    for (uint32_t i = 0; st == LORA_OK && i < n; i++) {
        lora_module m;
        st = lora_reader_module(c->r, i, &m);
        names[i] = m.name;
        c->sig_off[i] = total;
        total += m.rank;
        rep->rank_in += m.rank;
    }
    if (st == LORA_OK && !(c->sig = lora_mem_calloc(c->al, total ? total : 1, sizeof *c->sig)))
        st = LORA_E_OUT_OF_MEMORY;
    if (st == LORA_OK && !(rep->names_ = lora_lr_names(c->al, names, n, outn))) st = LORA_E_OUT_OF_MEMORY;
    for (uint32_t i = 0; st == LORA_OK && i < n; i++) rep->modules[i].name = outn[i];
    rep->module_count = n;
    lora_mem_free(c->al, names);
    lora_mem_free(c->al, outn);
    if (st != LORA_OK) return lora_error_set(err, st, LORA_NO_OFFSET, "out of memory for %u modules", n);
    return LORA_OK;
}

void lora_prune_totals(lora_prune_report *rep)
{
    double kept = 0;
    for (uint32_t i = 0; i < rep->module_count; i++) {
        const lora_prune_module *q = &rep->modules[i];
        rep->rank_out += q->new_rank;
        rep->energy += q->energy;
        kept += q->energy * q->energy_kept;
    }
    rep->energy_kept = rep->energy > 0 ? kept / rep->energy : 1.0;
}
