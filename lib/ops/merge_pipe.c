/*
 * merge_pipe.c - the compute threads.
 *
 * The output is a list of tasks in output order: each tensor that is copied
 * as it is splits into chunks (copied file to file in the kernel), each
 * other tensor into the blocks of the plan (computed, then written at their
 * offset). Every task's bytes and place in the file are fixed by the plan,
 * so the threads take tasks in order and finish them in any order: the
 * file is the same for any thread count. The calling thread only reports
 * progress and asks the kernel to start writeback as the bytes pile up.
 *
 * What the blocks of one tensor share (mprep) is built by the thread that
 * takes the tensor's first block, while the others wait for it; the thread
 * that finishes the tensor's last task frees it. Each thread releases the
 * base pages of the block it finished, so the mapping never grows resident.
 */
#include <pthread.h>
#include <string.h>
#include "merge.h"

#define COPY_CHUNK ((uint64_t)4 << 20)
#define WRITEBACK_EVERY ((uint64_t)64 << 20)
#define PROGRESS_EVERY ((uint64_t)8 << 20)

typedef enum { PREP_NONE = 0, PREP_BUSY, PREP_READY, PREP_FAILED } prep_state;

typedef struct {
    prep_state state;
    mprep prep;
    lora_status st;
    lora_error err;
} mprep_cell;

typedef struct mpipe mpipe;

typedef struct {
    mpipe *q;
    float *scratch;
    uint8_t *out;
    pthread_t thread;
    int started;
} mworker;

struct mpipe {
    const mpipe_args *args;
    const mctx *m;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    uint32_t cur_t;             /* the next task to hand out: (cur_t, cur_b) */
    uint64_t cur_b;
    uint64_t *left;             /* per tensor: tasks not finished */
    mprep_cell *preps;          /* per tensor */
    uint64_t bytes_done;
    uint32_t tensors_done;
    const char *last;           /* the tensor finished last */
    uint32_t running;           /* threads still working */
    int stop;
    lora_status st;             /* the first failure */
    lora_error err;
    mworker *workers;
    uint32_t nworkers;
};

static uint64_t task_count(const mpipe *q, uint32_t t)
{
    const mp_tensor *p = &q->m->plan->t[t];
    if (p->action != MP_COPY) return p->blocks;
    return (q->m->base->tensors[t].nbytes + COPY_CHUNK - 1) / COPY_CHUNK;
}

/* ---- a worker (the lock is held where said) ---------------------------------------------- */

static int have_task(mpipe *q) /* locked */
{
    uint32_t n = q->m->base->tensor_count;
    while (q->cur_t < n && q->cur_b >= task_count(q, q->cur_t)) {
        q->cur_t++;
        q->cur_b = 0;
    }
    return q->cur_t < n;
}

static void fail(mpipe *q, lora_status st, const lora_error *e) /* locked */
{
    if (q->st == LORA_OK) {
        q->st = st;
        q->err = *e;
    }
    q->stop = 1;
    pthread_cond_broadcast(&q->cv);
}

/* Build the tensor's shared data if nobody has; wait if someone is. */
static int ensure_prep(mpipe *q, uint32_t t) /* locked */
{
    mprep_cell *c = &q->preps[t];
    if (c->state == PREP_NONE) {
        c->state = PREP_BUSY;
        pthread_mutex_unlock(&q->mu);
        lora_error e = {LORA_OK, LORA_NO_OFFSET, ""};
        lora_status st = mprep_build(q->m, t, &c->prep, &e);
        pthread_mutex_lock(&q->mu);
        c->state = st == LORA_OK ? PREP_READY : PREP_FAILED;
        if (st != LORA_OK) fail(q, st, &e);
        pthread_cond_broadcast(&q->cv);
    }
    while (c->state == PREP_BUSY && !q->stop) pthread_cond_wait(&q->cv, &q->mu);
    return c->state == PREP_READY && !q->stop;
}

static lora_status run_task(mpipe *q, mworker *w, uint32_t t, uint64_t b, uint64_t *bytes, lora_error *err)
{
    const mbase_tensor *bt = &q->m->base->tensors[t];
    const mp_tensor *p = &q->m->plan->t[t];
    if (p->action == MP_COPY) {
        uint64_t at = b * COPY_CHUNK, n = bt->nbytes - at < COPY_CHUNK ? bt->nbytes - at : COPY_CHUNK;
        *bytes = n;
        return mout_copy_at(q->args->out, t, at, n, err);
    }
    size_t len = 0;
    LORA_FORWARD_IF_ERROR(mblock_run(q->m, t, b, &q->preps[t].prep, w->scratch, w->out, &len, err));
    uint64_t first, n;
    mp_block_range(p, b, &first, &n);
    uint64_t at = mt_bytes(p->out_type, p->action == MP_MERGE ? first * p->cols : first);
    LORA_FORWARD_IF_ERROR(mout_put_at(q->args->out, t, at, w->out, len, err));
    uint64_t off, size;
    mp_block_input(bt, p, b, &off, &size);
    if (size) mbase_release(bt->data + off, size);
    *bytes = len;
    return LORA_OK;
}

/* The task is done: count it; the last of a tensor frees what it shared. */
static void finish_task(mpipe *q, uint32_t t, uint64_t bytes) /* locked */
{
    q->bytes_done += bytes;
    if (--q->left[t] == 0) {
        const mbase_tensor *bt = &q->m->base->tensors[t];
        q->tensors_done++;
        q->last = bt->name;
        mprep_free(q->m, &q->preps[t].prep);
        /* The pages blocks shared at their edges, which no block could release alone. */
        if (q->m->plan->t[t].action != MP_COPY) mbase_release(bt->data, bt->nbytes);
    }
    pthread_cond_broadcast(&q->cv);
}

static void *worker_main(void *arg)
{
    mworker *w = arg;
    mpipe *q = w->q;
    pthread_mutex_lock(&q->mu);
    while (!q->stop && have_task(q)) {
        uint32_t t = q->cur_t;
        uint64_t b = q->cur_b++;
        if (q->m->plan->t[t].action != MP_COPY && !ensure_prep(q, t)) break;
        pthread_mutex_unlock(&q->mu);
        lora_error e = {LORA_OK, LORA_NO_OFFSET, ""};
        uint64_t bytes = 0;
        lora_status st = run_task(q, w, t, b, &bytes, &e);
        pthread_mutex_lock(&q->mu);
        if (st != LORA_OK) fail(q, st, &e);
        else finish_task(q, t, bytes);
    }
    q->running--;
    pthread_cond_broadcast(&q->cv);
    pthread_mutex_unlock(&q->mu);
    return NULL;
}

/* ---- the calling thread ----------------------------------------------------------------- */

static void report(mpipe *q) /* locked; unlocks around the callback */
{
    const mpipe_args *a = q->args;
    lora_merge_progress pr;
    pr.bytes_done = q->bytes_done;
    pr.bytes_total = mout_total_bytes(a->out);
    pr.tensors_done = q->tensors_done;
    pr.tensors_total = q->m->base->tensor_count;
    pr.tensor = q->last ? q->last : "";
    pthread_mutex_unlock(&q->mu);
    if (a->progress) a->progress(a->progress_opaque, &pr);
    pthread_mutex_lock(&q->mu);
}

static void supervise(mpipe *q)
{
    uint64_t reported = 0, synced = 0;
    pthread_mutex_lock(&q->mu);
    while (q->running > 0) {
        pthread_cond_wait(&q->cv, &q->mu);
        if (q->bytes_done - synced >= WRITEBACK_EVERY) {
            synced = q->bytes_done;
            pthread_mutex_unlock(&q->mu);
            mout_writeback(q->args->out);
            pthread_mutex_lock(&q->mu);
        }
        if (q->bytes_done - reported >= PROGRESS_EVERY && q->running > 0) {
            reported = q->bytes_done;
            report(q);
        }
    }
    if (q->st == LORA_OK) report(q);
    pthread_mutex_unlock(&q->mu);
}

/* ---- set-up and tear-down ------------------------------------------------------------ */

static lora_status nomem(lora_error *err)
{
    return lora_error_set(err, LORA_E_OUT_OF_MEMORY, LORA_NO_OFFSET, "out of memory");
}

static lora_status setup(mpipe *q, lora_error *err)
{
    const lora_allocator *a = &q->m->alloc;
    uint32_t n = q->m->base->tensor_count;
    q->preps = lora_mem_calloc(a, n ? n : 1, sizeof *q->preps);
    q->left = lora_mem_calloc(a, n ? n : 1, sizeof *q->left);
    q->nworkers = q->args->threads ? q->args->threads : 1;
    q->workers = lora_mem_calloc(a, q->nworkers, sizeof *q->workers);
    if (!q->preps || !q->left || !q->workers) return nomem(err);
    for (uint32_t i = 0; i < n; i++) {
        q->left[i] = task_count(q, i);
        if (q->left[i] == 0) q->tensors_done++;
    }
    size_t slot = (size_t)q->m->plan->max_slot_bytes, scratch = (size_t)q->m->plan->max_scratch * 2;
    for (uint32_t i = 0; i < q->nworkers; i++) {
        q->workers[i].q = q;
        q->workers[i].out = lora_mem_alloc(a, slot ? slot : 1);
        q->workers[i].scratch = lora_mem_calloc(a, scratch ? scratch : 1, sizeof(float));
        if (!q->workers[i].out || !q->workers[i].scratch) return nomem(err);
    }
    return LORA_OK;
}

static lora_status start(mpipe *q, lora_error *err)
{
    pthread_mutex_lock(&q->mu);
    for (uint32_t i = 0; i < q->nworkers; i++) {
        if (pthread_create(&q->workers[i].thread, NULL, worker_main, &q->workers[i]) != 0) {
            q->stop = 1;
            pthread_mutex_unlock(&q->mu);
            return lora_error_set(err, LORA_E_OUT_OF_MEMORY, LORA_NO_OFFSET, "cannot start a compute thread");
        }
        q->workers[i].started = 1;
        q->running++;
    }
    pthread_mutex_unlock(&q->mu);
    return LORA_OK;
}

static void teardown(mpipe *q)
{
    const lora_allocator *a = &q->m->alloc;
    for (uint32_t i = 0; q->workers && i < q->nworkers; i++) {
        if (q->workers[i].started) pthread_join(q->workers[i].thread, NULL);
        lora_mem_free(a, q->workers[i].scratch);
        lora_mem_free(a, q->workers[i].out);
    }
    for (uint32_t i = 0; q->preps && i < q->m->base->tensor_count; i++) mprep_free(q->m, &q->preps[i].prep);
    lora_mem_free(a, q->workers);
    lora_mem_free(a, q->preps);
    lora_mem_free(a, q->left);
}

lora_status mpipe_run(const mpipe_args *args, lora_error *err)
{
    mpipe q;
    memset(&q, 0, sizeof q);
    q.args = args;
    q.m = args->m;
    if (pthread_mutex_init(&q.mu, NULL) != 0) return nomem(err);
    if (pthread_cond_init(&q.cv, NULL) != 0) {
        pthread_mutex_destroy(&q.mu);
        return nomem(err);
    }
    lora_status st = setup(&q, err);
    if (st == LORA_OK) st = mout_headers(args->out, err);
    if (st == LORA_OK) st = start(&q, err);
    if (st == LORA_OK || q.running) supervise(&q);
    teardown(&q);
    if (st == LORA_OK && q.st != LORA_OK) {
        st = q.st;
        if (err) *err = q.err;
    }
    pthread_cond_destroy(&q.cv);
    pthread_mutex_destroy(&q.mu);
    return st;
}
