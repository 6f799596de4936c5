/*
 * merge.c - lora_merge and lora_merge_check: options, then open the
 * adapters and the base, plan and check everything, and only then open the
 * outputs and stream (merge.h has the map of the pieces).
 */
#include <math.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "merge.h"

#define MAX_THREADS 256u
#define DEFAULT_MAX_THREADS 64u

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static lora_status bad(lora_error *err, const char *what)
{
    return lora_error_set(err, LORA_E_INVALID_ARGUMENT, LORA_NO_OFFSET, "merge options: %s", what);
}

static lora_status check_options(const lora_merge_options *o, int check_only, lora_error *err)
{
    if (!o) return bad(err, "NULL options");
    if (!o->base || !*o->base) return bad(err, "no base model");
    if (!check_only && (!o->output || !*o->output)) return bad(err, "no output");
    if (o->adapter_count == 0 || !o->adapters) return bad(err, "no adapter");
    for (size_t i = 0; i < o->adapter_count; i++) {
        if (!o->adapters[i].path || !*o->adapters[i].path) return bad(err, "an adapter has no path");
        if (!isfinite(o->adapters[i].weight)) return bad(err, "an adapter weight is not finite");
    }
    if (o->dtype != -1 && o->dtype != LORA_DTYPE_F32 && o->dtype != LORA_DTYPE_F16 && o->dtype != LORA_DTYPE_BF16)
        return bad(err, "dtype must be -1 (keep), F32, F16 or BF16");
    if (o->flags & ~(LORA_MERGE_UNMERGE | LORA_MERGE_ACCUMULATE_F32)) return bad(err, "unknown flag");
    if (o->threads > MAX_THREADS) return bad(err, "more than 256 threads");
    int reserved = o->reserved0 != 0;
    for (int i = 0; i < 4; i++) reserved |= o->reserved[i] != 0;
    if (reserved) return bad(err, "reserved field not zero");
    if (o->rename_count && !o->renames) return bad(err, "renames is NULL");
    for (size_t i = 0; i < o->rename_count; i++)
        if (!o->renames[i].from || !*o->renames[i].from || !o->renames[i].to)
            return bad(err, "a rename has an empty 'from' or no 'to'");
    return LORA_OK;
}

static uint32_t default_threads(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    if (n < 1) return 1;
    return n > (long)DEFAULT_MAX_THREADS ? DEFAULT_MAX_THREADS : (uint32_t)n;
}

/* Which of the caller's strings an error is about. */
static const char *output_or_base(const lora_merge_options *o, lora_status st)
{
    int out = st == LORA_E_IO || st == LORA_E_NO_SPACE || st == LORA_E_SAME_FILE || st == LORA_E_NOT_REGULAR_FILE;
    return out ? o->output : o->base;
}

typedef struct {
    const lora_merge_options *o;
    const lora_merge_hooks *hooks;
    lora_merge_report *rep;
    madapter *ads;
    mbase base;
    mplan plan;
} mrun;

static lora_status write_output(mrun *r, lora_error *err)
{
    const lora_merge_options *o = r->o;
    mctx m;
    memset(&m, 0, sizeof m);
    m.base = &r->base;
    m.ads = r->ads;
    m.plan = &r->plan;
    m.mk = r->hooks && r->hooks->kernels ? r->hooks->kernels : lora_merge_kernels_get();
    m.k = r->hooks && r->hooks->conv ? r->hooks->conv : lora_kernels_get();
    m.subtract = (o->flags & LORA_MERGE_UNMERGE) != 0;
    m.f64 = (o->flags & LORA_MERGE_ACCUMULATE_F32) == 0;
    m.alloc = o->allocator;
    r->rep->isa = m.mk->name;
    r->rep->threads = o->threads ? o->threads : default_threads();
    mout *out = NULL;
    lora_status st = mout_open(&r->base, &r->plan, o, r->ads, o->adapter_count, r->hooks, &out, err);
    if (st != LORA_OK) {
        r->rep->error_path = o->output;
        return st;
    }
    mpipe_args pa = {&m, out, r->rep->threads, o->progress, o->progress_opaque};
    st = mpipe_run(&pa, err);
    if (st != LORA_OK) r->rep->error_path = output_or_base(o, st);
    if (st == LORA_OK) {
        st = mout_commit(out, err);
        if (st != LORA_OK) r->rep->error_path = o->output;
    }
    r->rep->shards = r->base.shard_count;
    r->rep->bytes_out = mout_bytes_out(out);
    mout_free(out);
    return st;
}

static lora_status run(mrun *r, int check_only, lora_error *err)
{
    const lora_merge_options *o = r->o;
    size_t failed = 0;
    lora_status st = madapters_open(o, r->ads, &failed, err);
    if (st != LORA_OK) {
        r->rep->error_path = o->adapters[failed].path;
        return st;
    }
    st = mbase_open(&o->allocator, o->base, &r->base, err);
    if (st != LORA_OK) {
        r->rep->error_path = o->base;
        return st;
    }
    r->rep->base_format = mbase_format_name(&r->base);
    uint64_t block = r->hooks && r->hooks->block_elems ? r->hooks->block_elems : MERGE_BLOCK_ELEMS_DEFAULT;
    st = mplan_build(&r->base, r->ads, o->adapter_count, o, block, &r->plan, &failed, err);
    if (st != LORA_OK) {
        r->rep->error_path = failed == SIZE_MAX ? o->base : o->adapters[failed].path;
        return st;
    }
    mplan_count(&r->base, &r->plan, r->rep);
    return check_only ? LORA_OK : write_output(r, err);
}

lora_status lora_merge_run(const lora_merge_options *o, int check_only, const lora_merge_hooks *hooks,
                           lora_merge_report *rep, lora_error *err)
{
    double t0 = now();
    lora_merge_report local;
    lora_merge_report *rp = rep ? rep : &local;
    memset(rp, 0, sizeof *rp);
    lora_error_clear(err);
    LORA_FORWARD_IF_ERROR(check_options(o, check_only, err));
    mrun r;
    memset(&r, 0, sizeof r);
    r.o = o;
    r.hooks = hooks;
    r.rep = rp;
    r.ads = lora_mem_calloc(&o->allocator, o->adapter_count, sizeof *r.ads);
    if (!r.ads) return lora_error_set(err, LORA_E_OUT_OF_MEMORY, LORA_NO_OFFSET, "out of memory");
    lora_status st = run(&r, check_only, err);
    mplan_free(&o->allocator, &r.plan);
    mbase_close(&r.base);
    madapters_close(o, r.ads, o->adapter_count);
    lora_mem_free(&o->allocator, r.ads);
    rp->seconds = now() - t0;
    return st;
}

lora_status lora_merge(const lora_merge_options *opts, lora_merge_report *report, lora_error *err)
{
    return lora_merge_run(opts, 0, NULL, report, err);
}

lora_status lora_merge_check(const lora_merge_options *opts, lora_merge_report *report, lora_error *err)
{
    return lora_merge_run(opts, 1, NULL, report, err);
}
