/*
 * prune.c - lora_prune: choose a rank per module from the singular values of
 * its delta, then refactor the modules whose rank changes (prune_svd.c).
 *
 * RANK and ENERGY decide each module alone, so one pass computes the SVD,
 * decides and writes. BUDGET compares singular values across modules and a
 * dry run writes nothing: both first compute the singular values of every
 * module (no vectors), decide, and only then (not for a dry run) refactor
 * what changes. Singular values are those of delta W, scale included, so
 * modules with different scales compete fairly under BUDGET.
 *
 * The numerical work of a module (decode, QR, SVD, new factors) runs as a
 * job; jobs of consecutive modules run on up to MAX_JOBS threads at once
 * (no more than the online CPUs), and their results are written on the
 * calling thread in module order, so the output does not depend on the
 * number of threads.
 */
#include <cblas.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "prune_ctx.h"

enum { MAX_JOBS = 4 };

typedef enum {
    JOB_SIGMA,   /* singular values only (BUDGET and dry runs, first pass) */
    JOB_DECIDE,  /* values, the module's own rank, its report entry, and what writing it needs */
    JOB_WRITE    /* rank already decided (BUDGET): what writing the module needs */
} job_kind;

typedef struct {
    pctx *c;
    uint32_t i;
    job_kind kind;
    lora_module m;
    lora_lr_factors f;   /* decoded when the output needs them */
    float *fresh;        /* new factors when rewritten at k > 0 (prune_ctx.h) */
    lora_status st;
    lora_error err;
} job;

/* Singular values of module j->i into c->sig (scaled by |scale|); the SVD
 * itself stays in *s for the new factors. */
static lora_status job_sigma(job *j, lora_svd *s, int vectors)
{
    pctx *c = j->c;
    lora_error e;
    lora_status st = lora_svd_compute(&j->f, c->al, vectors, s, &e);
    if (st != LORA_OK) return lora_error_set(&j->err, st, LORA_NO_OFFSET, "module '%s': %s", j->m.name, e.detail);
    c->p[j->i] = (uint32_t)s->p;
    for (size_t k = 0; k < s->p; k++) c->sig[c->sig_off[j->i] + k] = fabs((double)j->m.scale) * s->sigma[k];
    return LORA_OK;
}

static lora_status job_fresh(job *j, const lora_svd *s)
{
    pctx *c = j->c;
    uint32_t k = c->k[j->i];
    j->fresh = lora_mem_alloc(c->al, (size_t)((j->f.K + j->f.M) * k) * sizeof *j->fresh);
    if (!j->fresh)
        return lora_error_set(&j->err, LORA_E_OUT_OF_MEMORY, LORA_NO_OFFSET, "module '%s': rank-%u factors",
                              j->m.name, k);
    return lora_svd_factors(s, &j->f, k, c->al, j->fresh, j->fresh + j->f.K * k, &j->err);
}

static lora_status job_work(job *j)
{
    pctx *c = j->c;
    LORA_FORWARD_IF_ERROR(lora_reader_module(c->r, j->i, &j->m));
    const lora_prune_module *q = &c->rep->modules[j->i];
    if (j->kind == JOB_WRITE && !c->w) return LORA_OK; /* dry run: only the DoRA policy, on the caller's thread */
    if (j->kind == JOB_WRITE && !(q->rewritten || c->o->dtype != -1 || c->k[j->i] == 0)) return LORA_OK; /* a copy */
    LORA_FORWARD_IF_ERROR(lora_lr_load(c->r, c->al, &j->m, 1, &j->f, &j->err));
    lora_svd s;
    int vectors = j->kind != JOB_SIGMA && c->w;
    if (j->kind == JOB_WRITE && !q->rewritten) return LORA_OK;
    if (j->kind == JOB_WRITE && c->k[j->i] == 0) return LORA_OK;
    LORA_FORWARD_IF_ERROR(job_sigma(j, &s, vectors));
    lora_status st = LORA_OK;
    if (j->kind == JOB_DECIDE) {
        c->k[j->i] = lora_prune_local_rank(c, j->i, j->m.rank);
        lora_prune_module_report(c, j->i, &j->m);
    }
    if (vectors && q->rewritten && c->k[j->i] > 0) st = job_fresh(j, &s);
    lora_svd_free(c->al, &s);
    return st;
}

static void *job_thread(void *arg)
{
    job *j = arg;
    j->st = job_work(j);
    return NULL;
}

static void job_free(job *j)
{
    lora_lr_free(j->c->al, &j->f);
    lora_mem_free(j->c->al, j->fresh);
    j->fresh = NULL;
}

/* Modules at once: one per online CPU, at most MAX_JOBS. */
static unsigned job_slots(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > MAX_JOBS ? MAX_JOBS : (unsigned)n;
}

/* One pass over every module: jobs in batches, then (unless SIGMA) each
 * module written in order on this thread. */
static lora_status pass(pctx *c, uint32_t n, job_kind kind, lora_error *err)
{
    job jobs[MAX_JOBS];
    pthread_t tid[MAX_JOBS];
    unsigned slots = job_slots();
    for (uint32_t i0 = 0; i0 < n; i0 += slots) {
        unsigned cnt = n - i0 < slots ? n - i0 : slots, started[MAX_JOBS] = {0};
        for (unsigned t = 0; t < cnt; t++) {
            jobs[t] = (job){.c = c, .i = i0 + t, .kind = kind};
            /* The last job of a batch runs here; so does any a thread cannot be made for. */
            started[t] = t + 1 < cnt && pthread_create(&tid[t], NULL, job_thread, &jobs[t]) == 0;
        }
        for (unsigned t = 0; t < cnt; t++)
            if (!started[t]) job_thread(&jobs[t]);
        for (unsigned t = 0; t < cnt; t++)
            if (started[t]) pthread_join(tid[t], NULL);
        lora_status st = LORA_OK;
        for (unsigned t = 0; t < cnt; t++) {
            if (st == LORA_OK && jobs[t].st != LORA_OK) {
                st = jobs[t].st;
                if (err) *err = jobs[t].err;
                if (err && err->status == LORA_OK) lora_error_set(err, st, LORA_NO_OFFSET, "module %u", jobs[t].i);
            }
            if (st == LORA_OK && kind != JOB_SIGMA)
                st = lora_prune_write_module(c, jobs[t].i, &jobs[t].m, &jobs[t].f, jobs[t].fresh, err);
            job_free(&jobs[t]);
        }
        LORA_FORWARD_IF_ERROR(st);
    }
    return LORA_OK;
}

/* BUDGET or a dry run: every singular value first, then the decisions. */
static lora_status plan_all(pctx *c, uint32_t n, lora_error *err)
{
    LORA_FORWARD_IF_ERROR(pass(c, n, JOB_SIGMA, err));
    if (c->o->mode == LORA_PRUNE_BUDGET) LORA_FORWARD_IF_ERROR(lora_prune_budget_ranks(c, n, err));
    for (uint32_t i = 0; i < n; i++) {
        lora_module m;
        LORA_FORWARD_IF_ERROR(lora_reader_module(c->r, i, &m));
        if (c->o->mode != LORA_PRUNE_BUDGET) c->k[i] = lora_prune_local_rank(c, i, m.rank);
        lora_prune_module_report(c, i, &m);
    }
    return LORA_OK;
}

void lora_prune_report_free(lora_prune_report *rep)
{
    if (!rep) return;
    lora_allocator al = rep->allocator_;
    lora_mem_free(&al, rep->modules);
    lora_mem_free(&al, rep->names_);
    memset(rep, 0, sizeof *rep);
}

static lora_status run(pctx *c, const char *input, const char *output, lora_error *err)
{
    lora_file_info fi;
    lora_reader_file_info(c->r, &fi);
    LORA_FORWARD_IF_ERROR(lora_prune_setup(c, fi.module_count, err));
    c->rep->file_size_in = fi.file_size;
    int dry = (c->o->flags & LORA_PRUNE_DRY_RUN) != 0;
    if (!dry) {
        lora_status st = lora_writer_create(c->al, &c->w);
        if (st != LORA_OK) return lora_error_set(err, st, LORA_NO_OFFSET, "cannot create a writer");
        LORA_FORWARD_IF_ERROR(lora_lr_copy_meta(c->r, c->w, err));
    }
    if (dry || c->o->mode == LORA_PRUNE_BUDGET) {
        LORA_FORWARD_IF_ERROR(plan_all(c, fi.module_count, err));
        /* A dry run still applies the DoRA policy, as the real run would. */
        LORA_FORWARD_IF_ERROR(pass(c, fi.module_count, JOB_WRITE, err));
    } else {
        LORA_FORWARD_IF_ERROR(pass(c, fi.module_count, JOB_DECIDE, err));
    }
    lora_prune_totals(c->rep);
    if (dry) return LORA_OK;
    LORA_FORWARD_IF_ERROR(lora_lr_copy_tensors(c->r, c->al, c->w, err));
    return lora_lr_write(c->w, input, output, &c->rep->file_size_out, err);
}

lora_status lora_prune(const char *input, const char *output, const lora_prune_options *opts,
                       lora_prune_report *report, lora_error *err)
{
    lora_error_clear(err);
    if (report) memset(report, 0, sizeof *report);
    if (!opts) return lora_error_set(err, LORA_E_INVALID_ARGUMENT, LORA_NO_OFFSET, "NULL options");
    lora_prune_options o = *opts;
    if (!input || (!output && !(o.flags & LORA_PRUNE_DRY_RUN)))
        return lora_error_set(err, LORA_E_INVALID_ARGUMENT, LORA_NO_OFFSET, "NULL path");
    LORA_FORWARD_IF_ERROR(lora_prune_check_options(&o, err));

    lora_read_options ropts = LORA_READ_OPTIONS_INIT;
    ropts.allocator = o.allocator;
    ropts.flags = LORA_READ_VERIFY_CHECKSUMS;
    lora_reader *r;
    LORA_FORWARD_IF_ERROR(lora_reader_open_file(input, &ropts, &r, err));
    lora_prune_report rep;
    pctx c = {&o, &o.allocator, r, NULL, &rep, NULL, NULL, NULL, NULL};
    /* The QR of an r-column matrix is mostly level-2 BLAS: OpenBLAS gains
     * little from its threads there, and its threads on top of ours
     * oversubscribe the CPUs (measured: 2.5x slower on 2 cores). So while
     * modules run in parallel OpenBLAS runs single-threaded, and its
     * setting is restored afterwards. */
    int blas_threads = openblas_get_num_threads();
    if (job_slots() > 1 && blas_threads > 1) openblas_set_num_threads(1);
    lora_status st = run(&c, input, output, err);
    if (openblas_get_num_threads() != blas_threads) openblas_set_num_threads(blas_threads);
    lora_writer_free(c.w);
    lora_mem_free(c.al, c.sig);
    lora_mem_free(c.al, c.sig_off);
    lora_mem_free(c.al, c.p);
    lora_mem_free(c.al, c.k);
    lora_reader_free(r);
    if (st == LORA_OK && report) *report = rep;
    else lora_prune_report_free(&rep);
    return st;
}
