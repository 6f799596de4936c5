/*
 * merge_plan.c - what the merge does to every base tensor, decided and
 * checked completely before any output exists: every module finds its
 * tensor with the shape it records, every target has a dtype the merge can
 * round to, and no tensor is claimed in two incompatible ways.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "merge.h"

#define DETAIL_SHAPE 96

static void fmt_shape(char *out, size_t cap, uint32_t ndim, const uint64_t *dims)
{
    size_t n = (size_t)snprintf(out, cap, "[");
    for (uint32_t i = 0; i < ndim && n < cap; i++)
        n += (size_t)snprintf(out + n, cap - n, "%s%llu", i ? "," : "", (unsigned long long)dims[i]);
    if (n < cap) snprintf(out + n, cap - n, "]");
}

/* ---- element types --------------------------------------------------------------- */

int mt_is_float(mt_type t) { return t == MT_F32 || t == MT_F16 || t == MT_BF16; }
int mt_is_quant(mt_type t) { return t == MT_Q8_0 || t == MT_Q4_0; }

const char *mt_name(mt_type t)
{
    static const char *const names[] = {"F32", "F16", "BF16", "Q8_0", "Q4_0", "other"};
    return (unsigned)t <= MT_OTHER ? names[t] : "?";
}

uint64_t mt_bytes(mt_type t, uint64_t elems)
{
    switch (t) {
    case MT_F32: return elems * 4;
    case MT_F16:
    case MT_BF16: return elems * 2;
    case MT_Q8_0: return elems / 32 * 34;
    case MT_Q4_0: return elems / 32 * 18;
    case MT_OTHER: break;
    }
    return 0;
}

static uint32_t raw_of(const mbase *b, mt_type t, uint32_t keep)
{
    static const uint32_t st[] = {LORA_ST_F32, LORA_ST_F16, LORA_ST_BF16};
    static const uint32_t gg[] = {LORA_GGML_F32, LORA_GGML_F16, LORA_GGML_BF16};
    if (!mt_is_float(t)) return keep;
    return b->kind == MBASE_GGUF ? gg[t] : st[t];
}

/* --dtype applies to float tensors; in GGUF only to matrices, since
 * llama.cpp keeps norms and biases F32. */
static mt_type out_type(const mbase *b, const mbase_tensor *bt, const lora_merge_options *o)
{
    if (!mt_is_float(bt->type) || o->dtype < 0) return bt->type;
    if (b->kind == MBASE_GGUF && bt->ndim < 2) return bt->type;
    return (mt_type)o->dtype;
}

/* ---- checks of one module --------------------------------------------------------- */

typedef struct {
    mbase *b;
    madapter *ads;
    const lora_merge_options *o;
    mplan *p;
    uint8_t *replaced;          /* per base tensor: 1 if an adapter replaces it */
    size_t failed;
    lora_error *err;
} pctx;

static lora_status target_dtype(const pctx *c, const mbase_tensor *bt, const char *what, const char *name)
{
    if (mt_is_float(bt->type) || (c->b->kind == MBASE_GGUF && mt_is_quant(bt->type))) return LORA_OK;
    const char *tn = c->b->kind == MBASE_GGUF ? lora_ggml_type_name(bt->raw_type)
                                              : lora_st_dtype_name((lora_st_dtype)bt->raw_type);
    return lora_error_set(c->err, LORA_E_UNSUPPORTED_DTYPE, LORA_NO_OFFSET,
                          "%s '%s': base tensor '%s' is %s; a merge target must be F32, F16 or BF16%s", what, name,
                          bt->name, tn ? tn : "of an unknown type",
                          c->b->kind == MBASE_GGUF ? " (or Q8_0, Q4_0)" : "");
}

/* Shape the module expects of its base tensor, and its orientation there. */
static int expect_shape(const mbase *b, const lora_module *m, const mbase_tensor *bt, uint8_t *transposed)
{
    uint64_t want[LORA_MAX_DIMS];
    int fan = (m->flags & LORA_MODULE_FAN_IN_FAN_OUT) != 0;
    memcpy(want, m->base_shape, sizeof want);
    *transposed = (uint8_t)(fan || m->kind == LORA_KIND_EMBEDDING);
    if (b->kind == MBASE_GGUF && fan) {
        /* llama.cpp stores GPT-2's Conv1D weights [out, in], as nn.Linear. */
        want[0] = m->base_shape[1];
        want[1] = m->base_shape[0];
        *transposed = 0;
    }
    if (bt->ndim != m->base_ndim) return 0;
    for (uint32_t i = 0; i < bt->ndim; i++)
        if (bt->shape[i] != want[i]) return 0;
    return 1;
}

static lora_status heads_for(const pctx *c, const lora_module *m, lora_gguf_role role, uint64_t rows,
                             uint64_t *heads)
{
    *heads = role == LORA_GGUF_ROLE_ROPE_K ? c->b->n_head_kv : c->b->n_head;
    if (!lora_gguf_role_permutes(role)) return LORA_OK;
    if (*heads == 0)
        return lora_error_set(c->err, LORA_E_NOT_FOUND, LORA_NO_OFFSET,
                              "module '%s': the GGUF base has no attention.head_count, needed to order the rows "
                              "as llama.cpp did", m->name);
    uint64_t *src = lora_mem_calloc(&c->b->alloc, rows ? (size_t)rows : 1, sizeof *src);
    if (!src) return lora_error_set(c->err, LORA_E_OUT_OF_MEMORY, LORA_NO_OFFSET, "out of memory");
    lora_status st = lora_gguf_row_source(role, rows, *heads, m->name, src, c->err);
    lora_mem_free(&c->b->alloc, src);
    return st;
}

static lora_status not_found(pctx *c, size_t a, const lora_module *m, int bias, uint32_t from)
{
    char hint[LORA_ERROR_DETAIL_SIZE], buf[LORA_ERROR_DETAIL_SIZE], as[LORA_ERROR_DETAIL_SIZE + 16] = "";
    const char *name = mmatch_renamed(c->o, m->name, buf, sizeof buf);
    if (!name) name = m->name;
    if (name != m->name) snprintf(as, sizeof as, " (renamed '%s')", name);
    mmatch_suggest(c->b, name, bias ? ".bias" : ".weight", hint, sizeof hint);
    /* How many more modules of this adapter miss: one wrong prefix misses them all. */
    uint32_t more = 0;
    for (uint32_t i = from + 1; i < c->ads[a].info.module_count; i++) {
        lora_module x;
        mmatch mm;
        if (lora_reader_module(c->ads[a].r, i, &x) == LORA_OK &&
            mmatch_module(c->b, c->o, x.name, 0, &mm, NULL) == LORA_E_NOT_FOUND)
            more++;
    }
    char tail[64] = "";
    if (more) snprintf(tail, sizeof tail, "; %u more modules miss", more);
    return lora_error_set(c->err, LORA_E_NOT_FOUND, LORA_NO_OFFSET, "module '%s'%s: no base tensor '%s%s'%s%s",
                          m->name, as, name, bias ? ".bias" : ".weight", hint, tail);
}

static lora_status add_contrib(pctx *c, size_t a, uint32_t mi, const mmatch *mm, uint8_t bias)
{
    mplan *p = c->p;
    mp_contrib *x = &p->c[p->contrib_count];
    x->adapter = (uint32_t)a;
    x->module = mi;
    x->tensor = mm->tensor;
    x->seq = p->contrib_count++;
    x->bias = bias;
    return LORA_OK;
}

static lora_status plan_bias(pctx *c, size_t a, uint32_t mi, const lora_module *m, const mp_tensor *wt)
{
    mmatch mm;
    lora_status st = mmatch_module(c->b, c->o, m->name, 1, &mm, c->err);
    /* (no count of further misses: `from` past the last module) */
    if (st == LORA_E_NOT_FOUND) return not_found(c, a, m, 1, UINT32_MAX - 1);
    if (st != LORA_OK) return st;
    const mbase_tensor *bt = &c->b->tensors[mm.tensor];
    uint64_t out = (m->flags & LORA_MODULE_FAN_IN_FAN_OUT) ? m->base_shape[1] : m->base_shape[0];
    if (bt->ndim != 1 || bt->shape[0] != out) {
        char have[DETAIL_SHAPE];
        fmt_shape(have, sizeof have, bt->ndim, bt->shape);
        return lora_error_set(c->err, LORA_E_BAD_SHAPE, LORA_NO_OFFSET,
                              "module '%s': base tensor '%s' is %s, the LoRA bias needs [%llu]", m->name, bt->name,
                              have, (unsigned long long)out);
    }
    LORA_FORWARD_IF_ERROR(target_dtype(c, bt, "module", m->name));
    mp_tensor *t = &c->p->t[mm.tensor];
    t->is_bias = 1;
    t->role = wt->role;
    t->heads = wt->heads;
    return add_contrib(c, a, mi, &mm, 1);
}

static lora_status plan_module(pctx *c, size_t a, uint32_t mi)
{
    lora_module m;
    LORA_FORWARD_IF_ERROR(lora_reader_module(c->ads[a].r, mi, &m));
    mmatch mm;
    lora_status st = mmatch_module(c->b, c->o, m.name, 0, &mm, c->err);
    if (st == LORA_E_NOT_FOUND) return not_found(c, a, &m, 0, mi);
    if (st != LORA_OK) return st;
    const mbase_tensor *bt = &c->b->tensors[mm.tensor];
    uint8_t transposed;
    if (!expect_shape(c->b, &m, bt, &transposed)) {
        char have[DETAIL_SHAPE], want[DETAIL_SHAPE];
        fmt_shape(have, sizeof have, bt->ndim, bt->shape);
        fmt_shape(want, sizeof want, m.base_ndim, m.base_shape);
        return lora_error_set(c->err, LORA_E_BAD_SHAPE, LORA_NO_OFFSET,
                              "module '%s': base tensor '%s' is %s, the module was made for %s%s (another "
                              "model?)", m.name, bt->name, have, want,
                              c->b->kind == MBASE_GGUF && (m.flags & LORA_MODULE_FAN_IN_FAN_OUT) ? " transposed" : "");
    }
    LORA_FORWARD_IF_ERROR(target_dtype(c, bt, "module", m.name));
    mp_tensor *t = &c->p->t[mm.tensor];
    t->transposed = transposed;
    t->role = mm.role;
    if (m.blob_magnitude != LORA_NO_BLOB) t->dora = 1;
    LORA_FORWARD_IF_ERROR(heads_for(c, &m, mm.role, bt->shape[0], &t->heads));
    LORA_FORWARD_IF_ERROR(add_contrib(c, a, mi, &mm, 0));
    return m.blob_bias != LORA_NO_BLOB ? plan_bias(c, a, mi, &m, t) : LORA_OK;
}

static lora_status plan_replacement(pctx *c, size_t a, uint32_t ti)
{
    lora_tensor x;
    lora_blob blob;
    LORA_FORWARD_IF_ERROR(lora_reader_tensor(c->ads[a].r, ti, &x));
    LORA_FORWARD_IF_ERROR(lora_reader_blob(c->ads[a].r, x.blob, &blob));
    mmatch mm;
    lora_status st = mmatch_tensor(c->b, c->o, x.name, &mm, c->err);
    if (st == LORA_E_NOT_FOUND) {
        char hint[LORA_ERROR_DETAIL_SIZE];
        mmatch_suggest(c->b, x.name, "", hint, sizeof hint);
        return lora_error_set(c->err, LORA_E_NOT_FOUND, LORA_NO_OFFSET, "tensor '%s': the base has no such tensor%s",
                              x.name, hint);
    }
    if (st != LORA_OK) return st;
    const mbase_tensor *bt = &c->b->tensors[mm.tensor];
    int same = bt->ndim == blob.ndim;
    for (uint32_t i = 0; same && i < bt->ndim; i++) same = bt->shape[i] == blob.shape[i];
    if (!same) {
        char have[DETAIL_SHAPE], want[DETAIL_SHAPE];
        fmt_shape(have, sizeof have, bt->ndim, bt->shape);
        fmt_shape(want, sizeof want, blob.ndim, blob.shape);
        return lora_error_set(c->err, LORA_E_BAD_SHAPE, LORA_NO_OFFSET,
                              "tensor '%s': base tensor '%s' is %s, the replacement is %s", x.name, bt->name, have,
                              want);
    }
    LORA_FORWARD_IF_ERROR(target_dtype(c, bt, "tensor", x.name));
    if (lora_gguf_role_permutes(mm.role))
        return lora_error_set(c->err, LORA_E_UNSUPPORTED_ADAPTER, LORA_NO_OFFSET,
                              "tensor '%s': replacing a GGUF tensor whose rows llama.cpp reordered is not supported",
                              x.name);
    if (c->o->flags & LORA_MERGE_UNMERGE)
        return lora_error_set(c->err, LORA_E_UNSUPPORTED_ADAPTER, LORA_NO_OFFSET,
                              "tensor '%s': a replaced tensor cannot be unmerged (the original is not kept)", x.name);
    if (c->replaced[mm.tensor])
        return lora_error_set(c->err, LORA_E_UNSUPPORTED_ADAPTER, LORA_NO_OFFSET,
                              "tensor '%s': base tensor '%s' is replaced by two adapters", x.name, bt->name);
    c->replaced[mm.tensor] = 1;
    mp_tensor *t = &c->p->t[mm.tensor];
    t->action = MP_REPLACE;
    t->rep_adapter = (uint32_t)a;
    t->rep_tensor = ti;
    return LORA_OK;
}

static lora_status plan_adapter(pctx *c, size_t a)
{
    for (uint32_t i = 0; i < c->ads[a].info.module_count; i++) LORA_FORWARD_IF_ERROR(plan_module(c, a, i));
    for (uint32_t i = 0; i < c->ads[a].info.tensor_count; i++) LORA_FORWARD_IF_ERROR(plan_replacement(c, a, i));
    return LORA_OK;
}

/* ---- combinations ------------------------------------------------------------------ */

static int contrib_cmp(const void *x, const void *y)
{
    const mp_contrib *a = x, *b = y;
    if (a->tensor != b->tensor) return a->tensor < b->tensor ? -1 : 1;
    return a->seq < b->seq ? -1 : a->seq > b->seq;
}

static const char *module_name(const pctx *c, const mp_contrib *x)
{
    lora_module m;
    return lora_reader_module(c->ads[x->adapter].r, x->module, &m) == LORA_OK ? m.name : "?";
}

/* One tensor's contributions c[first .. first + n). */
static lora_status check_group(pctx *c, uint32_t first, uint32_t n)
{
    const mp_contrib *x = &c->p->c[first];
    const mbase_tensor *bt = &c->b->tensors[x->tensor];
    mp_tensor *t = &c->p->t[x->tensor];
    c->failed = x->adapter;
    if (t->action == MP_REPLACE)
        return lora_error_set(c->err, LORA_E_UNSUPPORTED_ADAPTER, LORA_NO_OFFSET,
                              "module '%s': base tensor '%s' is also replaced by a tensor of adapter %u",
                              module_name(c, x), bt->name, t->rep_adapter + 1);
    for (uint32_t i = 1; i < n; i++)
        if (x[i].bias != x[0].bias)
            return lora_error_set(c->err, LORA_E_UNSUPPORTED_ADAPTER, LORA_NO_OFFSET,
                                  "base tensor '%s' is the weight of module '%s' and the bias of module '%s'",
                                  bt->name, module_name(c, x[i].bias ? &x[0] : &x[i]),
                                  module_name(c, x[i].bias ? &x[i] : &x[0]));
    if (t->dora && !x[0].bias && n > 1)
        return lora_error_set(c->err, LORA_E_UNSUPPORTED_ADAPTER, LORA_NO_OFFSET,
                              "module '%s': a DoRA module cannot share base tensor '%s' with module '%s' (the norm "
                              "would mix both)", module_name(c, &x[0]), bt->name, module_name(c, &x[1]));
    if (t->dora && !x[0].bias && (c->o->flags & LORA_MERGE_UNMERGE))
        return lora_error_set(c->err, LORA_E_UNSUPPORTED_ADAPTER, LORA_NO_OFFSET,
                              "module '%s': DoRA cannot be unmerged: the merged weights do not keep the norm of W + "
                              "sBA that the merge divided by", module_name(c, &x[0]));
    /* Orientation is per module; on one tensor they must agree. */
    for (uint32_t i = 1; i < n && !x[0].bias; i++) {
        lora_module m0, mi;
        LORA_FORWARD_IF_ERROR(lora_reader_module(c->ads[x[0].adapter].r, x[0].module, &m0));
        LORA_FORWARD_IF_ERROR(lora_reader_module(c->ads[x[i].adapter].r, x[i].module, &mi));
        uint8_t t0, ti;
        (void)expect_shape(c->b, &m0, bt, &t0);
        (void)expect_shape(c->b, &mi, bt, &ti);
        if (t0 != ti)
            return lora_error_set(c->err, LORA_E_UNSUPPORTED_ADAPTER, LORA_NO_OFFSET,
                                  "modules '%s' and '%s' disagree on the orientation of base tensor '%s' "
                                  "(fan_in_fan_out)", m0.name, mi.name, bt->name);
    }
    if (t->is_bias && !x[0].bias) t->is_bias = 0;
    t->action = MP_MERGE;
    t->first = first;
    t->count = n;
    return LORA_OK;
}

static lora_status combine(pctx *c)
{
    mplan *p = c->p;
    qsort(p->c, p->contrib_count, sizeof *p->c, contrib_cmp);
    for (uint32_t i = 0; i < p->contrib_count;) {
        uint32_t j = i + 1;
        while (j < p->contrib_count && p->c[j].tensor == p->c[i].tensor) j++;
        LORA_FORWARD_IF_ERROR(check_group(c, i, j - i));
        i = j;
    }
    return LORA_OK;
}

/* ---- sizes and blocks ----------------------------------------------------------------- */

static void size_tensor(const mbase *b, const mbase_tensor *bt, mp_tensor *t, const lora_merge_options *o,
                        mplan *p)
{
    t->out_type = out_type(b, bt, o);
    if (t->action == MP_COPY && t->out_type != bt->type) t->action = MP_CONVERT;
    t->out_raw = raw_of(b, t->out_type, bt->raw_type);
    t->out_bytes = t->out_type == MT_OTHER ? bt->nbytes : mt_bytes(t->out_type, bt->numel);
    uint64_t e = p->block_elems, scratch = 0, slot = 0;
    if (t->action == MP_MERGE) {
        t->rows = t->is_bias ? 1 : bt->shape[0];
        t->cols = bt->numel / t->rows;
        t->rows_per_block = e / t->cols ? e / t->cols : 1;
        t->blocks = (t->rows + t->rows_per_block - 1) / t->rows_per_block;
        uint64_t n = (t->rows_per_block < t->rows ? t->rows_per_block : t->rows) * t->cols;
        slot = mt_bytes(t->out_type, n);
        scratch = n;
    } else if (t->action != MP_COPY) {
        t->rows = 1;
        t->cols = bt->numel;
        t->chunk = e >= 32 ? e / 32 * 32 : 32;
        t->blocks = (t->cols + t->chunk - 1) / t->chunk;
        scratch = t->chunk < t->cols ? t->chunk : t->cols;
        slot = mt_bytes(t->out_type, scratch);
    }
    if (slot > p->max_slot_bytes) p->max_slot_bytes = slot;
    if (scratch > p->max_scratch) p->max_scratch = scratch;
}

void mp_block_range(const mp_tensor *t, uint64_t b, uint64_t *first, uint64_t *n)
{
    uint64_t per = t->action == MP_MERGE ? t->rows_per_block : t->chunk;
    uint64_t total = t->action == MP_MERGE ? t->rows : t->cols;
    *first = b * per;
    *n = total - *first < per ? total - *first : per;
}

void mp_block_input(const mbase_tensor *bt, const mp_tensor *t, uint64_t b, uint64_t *offset, uint64_t *size)
{
    uint64_t first, n;
    mp_block_range(t, b, &first, &n);
    *offset = *size = 0;
    if (t->action == MP_MERGE) {
        uint64_t row = bt->type == MT_OTHER ? 0 : mt_bytes(bt->type, t->cols);
        *offset = first * row;
        *size = n * row;
    } else if (t->action == MP_CONVERT) {
        *offset = mt_bytes(bt->type, first);
        *size = mt_bytes(bt->type, n);
    }
}

/* ---- entry ------------------------------------------------------------------------------ */

lora_status mplan_build(mbase *b, madapter *ads, size_t nad, const lora_merge_options *o, uint64_t block_elems,
                        mplan *p, size_t *failed_adapter, lora_error *err)
{
    memset(p, 0, sizeof *p);
    p->block_elems = block_elems;
    uint64_t modules = 0;
    for (size_t a = 0; a < nad; a++) modules += 2 * (uint64_t)ads[a].info.module_count;
    if (modules > UINT32_MAX) return lora_error_set(err, LORA_E_LIMIT_EXCEEDED, LORA_NO_OFFSET, "too many modules");
    p->t = lora_mem_calloc(&b->alloc, b->tensor_count ? b->tensor_count : 1, sizeof *p->t);
    p->c = lora_mem_calloc(&b->alloc, modules ? (size_t)modules : 1, sizeof *p->c);
    uint8_t *replaced = lora_mem_calloc(&b->alloc, b->tensor_count ? b->tensor_count : 1, 1);
    if (!p->t || !p->c || !replaced) {
        lora_mem_free(&b->alloc, replaced);
        return lora_error_set(err, LORA_E_OUT_OF_MEMORY, LORA_NO_OFFSET, "out of memory");
    }
    pctx c = {b, ads, o, p, replaced, SIZE_MAX, err};
    lora_status st = LORA_OK;
    for (size_t a = 0; a < nad && st == LORA_OK; a++) {
        st = plan_adapter(&c, a);
        if (st != LORA_OK) c.failed = a;
    }
    if (st == LORA_OK) st = combine(&c);
    lora_mem_free(&b->alloc, replaced);
    if (st != LORA_OK) {
        *failed_adapter = c.failed;
        return st;
    }
    for (uint32_t i = 0; i < b->tensor_count; i++) size_tensor(b, &b->tensors[i], &p->t[i], o, p);
    return LORA_OK;
}

void mplan_free(const lora_allocator *a, mplan *p)
{
    lora_mem_free(a, p->t);
    lora_mem_free(a, p->c);
    memset(p, 0, sizeof *p);
}

void mplan_count(const mbase *b, const mplan *p, lora_merge_report *rep)
{
    rep->tensors = b->tensor_count;
    rep->bytes_in = b->data_bytes;
    for (uint32_t i = 0; i < p->contrib_count; i++) rep->modules += !p->c[i].bias;
    for (uint32_t i = 0; i < b->tensor_count; i++) {
        const mp_tensor *t = &p->t[i];
        switch (t->action) {
        case MP_COPY: rep->copied++; break;
        case MP_CONVERT: rep->converted++; break;
        case MP_REPLACE: rep->replaced++; break;
        case MP_MERGE:
            rep->merged++;
            if (b->tensors[i].type == MT_Q8_0) rep->requantized_q8_0++;
            if (b->tensors[i].type == MT_Q4_0) rep->requantized_q4_0++;
            break;
        }
    }
    rep->requantized = rep->requantized_q8_0 + rep->requantized_q4_0;
}
