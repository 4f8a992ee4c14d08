/* The optimizer object: creation by name, hyperparameters with range checks, the step
 * driver (clipping, step count), per-parameter slots and complete state save/load. */
#include "optim_impl.h"
#include "elementwise.h"
#include "../core/blas.h"
#include "../core/file.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ hyperparameters */

/* Transformations of the gradient every method takes, kept after the method's own
 * hyperparameters in o->hp (composition: no method needs to know about them). */
enum { COMMON_MAXIMIZE, COMMON_COUNT };
static const co_hparam common_hp[COMMON_COUNT] = {
    {"maximize", 0, 0, 1, CO_HP_BOOL,
     "maximize the objective: the gradient is negated at the start of each step (torch's maximize)"},
};

const co_hparam *co_optim_common_hparams(int *count)
{
    if (count) *count = COMMON_COUNT;
    return common_hp;
}

const co_hparam *co_optim_find_hparam(const co_optim_info *info, const char *name, int *index)
{
    for (int i = 0; i < info->nhparams; i++) {
        if (strcmp(info->hparams[i].name, name) == 0) {
            if (index) *index = i;
            return &info->hparams[i];
        }
    }
    for (int i = 0; i < COMMON_COUNT; i++) {
        if (strcmp(common_hp[i].name, name) == 0) {
            if (index) *index = info->nhparams + i;
            return &common_hp[i];
        }
    }
    return NULL;
}

static co_status check_value(const co_optim_info *info, const co_hparam *h, double v, co_error *err)
{
    if (!isfinite(v))
        return co_error_set(err, CO_EINVAL, "%s: hyperparameter %s must be finite, got %g",
                            info->name, h->name, v);
    if ((h->flags & (CO_HP_INT | CO_HP_BOOL)) && v != floor(v))
        return co_error_set(err, CO_EINVAL, "%s: hyperparameter %s must be an integer, got %g",
                            info->name, h->name, v);
    if ((h->flags & CO_HP_BOOL) && v != 0 && v != 1)
        return co_error_set(err, CO_EINVAL, "%s: hyperparameter %s must be 0 or 1, got %g",
                            info->name, h->name, v);
    int below = (h->flags & CO_HP_MIN_OPEN) ? !(v > h->min) : !(v >= h->min);
    int above = (h->flags & CO_HP_MAX_OPEN) ? !(v < h->max) : !(v <= h->max);
    if (below || above)
        return co_error_set(err, CO_EINVAL, "%s: hyperparameter %s=%g is out of range %c%g, %g%c",
                            info->name, h->name, v, (h->flags & CO_HP_MIN_OPEN) ? '(' : '[',
                            h->min, h->max, (h->flags & CO_HP_MAX_OPEN) ? ')' : ']');
    return CO_OK;
}

co_status co_optim_set(co_optim *o, int group, const char *name, double value, co_error *err)
{
    int idx;
    const co_hparam *h = co_optim_find_hparam(o->info, name, &idx);
    if (!h) return co_error_set(err, CO_EINVAL, "%s has no hyperparameter '%s' (see `curvopt list`)",
                                o->info->name, name);
    co_status st = check_value(o->info, h, value, err);
    if (st) return st;
    if (group >= o->ngroups)
        return co_error_set(err, CO_EINVAL, "group %d does not exist (%d groups)", group, o->ngroups);
    if ((h->flags & CO_HP_FIXED) && o->created)
        for (int g = 0; g < o->ngroups; g++)
            if ((group < 0 || g == group || (h->flags & CO_HP_GLOBAL)) && co_hp(o, g, idx) != value)
                return co_error_set(err, CO_EINVAL, "%s: hyperparameter %s is fixed when the optimizer is created (%g)",
                                    o->info->name, name, co_hp(o, g, idx));
    if (group < 0 || (h->flags & CO_HP_GLOBAL)) {
        for (int g = 0; g < o->ngroups; g++) o->hp[(size_t)g * o->nhp + idx] = value;
    } else {
        o->hp[(size_t)group * o->nhp + idx] = value;
    }
    return CO_OK;
}

co_status co_optim_set_list(co_optim *o, int group, const char *list, co_error *err)
{
    if (!list) return CO_OK;
    const char *p = list;
    while (*p) {
        while (*p == ',' || isspace((unsigned char)*p)) p++;
        if (!*p) break;
        const char *eq = strchr(p, '=');
        const char *end = strchr(p, ',');
        if (!end) end = p + strlen(p);
        if (!eq || eq > end)
            return co_error_set(err, CO_EINVAL, "hyperparameter '%.*s' has no value (expected name=value)",
                                (int)(end - p), p);
        char name[64], val[64];
        size_t nl = (size_t)(eq - p), vl = (size_t)(end - eq - 1);
        if (nl == 0 || nl >= sizeof name || vl == 0 || vl >= sizeof val)
            return co_error_set(err, CO_EINVAL, "malformed hyperparameter '%.*s' (expected name=value)",
                                (int)(end - p), p);
        memcpy(name, p, nl);
        name[nl] = 0;
        memcpy(val, eq + 1, vl);
        val[vl] = 0;
        char *tail;
        errno = 0;
        double v = strtod(val, &tail);
        if (errno || *tail || tail == val)
            return co_error_set(err, CO_EINVAL, "hyperparameter %s: '%s' is not a number", name, val);
        co_status st = co_optim_set(o, group, name, v, err);
        if (st) return st;
        p = end;
    }
    return CO_OK;
}

double co_optim_get(const co_optim *o, int group, const char *name)
{
    int idx;
    if (!co_optim_find_hparam(o->info, name, &idx)) return NAN;
    if (group < 0) group = 0;
    if (group >= o->ngroups) return NAN;
    return co_hp(o, group, idx);
}

const co_optim_info *co_optim_info_of(const co_optim *o) { return o->info; }
int co_optim_needs(const co_optim *o)
{
    const co_optim_ops *ops = o->info->ops;
    return ops->needs_now ? ops->needs_now(o) & ops->needs : ops->needs;
}
uint64_t co_optim_steps(const co_optim *o) { return o->t; }
int co_optim_ngroups(const co_optim *o) { return o->ngroups; }
void co_optim_set_lr_scale(co_optim *o, double s) { o->lr_scale = s; }
double co_optim_lr_scale(const co_optim *o) { return o->lr_scale; }
void co_optim_set_clip(co_optim *o, double max_norm) { o->clip_norm = max_norm > 0 ? max_norm : 0; }

/* ------------------------------------------------------------ sizes and slots */

size_t co_group_numel(const co_group *g)
{
    size_t n = 0;
    for (int k = 0; k < g->ntensors; k++) n += g->size[k];
    return n;
}

size_t co_optim_numel(const co_optim *o)
{
    size_t n = 0;
    for (int g = 0; g < o->ngroups; g++) n += co_group_numel(&o->groups[g]);
    return n;
}

/* Where cut, at a multiple of a cache line's floats, falls in a tensor at offset off of
 * length n in the concatenation. */
static size_t local_cut(size_t cut, size_t off, size_t n)
{
    enum { LINE_FLOATS = 16 };
    if (cut <= off) return 0;
    if (cut - off >= n) return n;
    return (cut - off) / LINE_FLOATS * LINE_FLOATS;
}

typedef struct {
    co_optim *o;
    co_slots *const *slots;
    co_range_fn *fn;
} foreach_task;

static void foreach_share(void *ctx, size_t lo, size_t hi)
{
    const foreach_task *t = ctx;
    co_optim *o = t->o;
    co_slots *const *slots = t->slots;
    co_range_fn *fn = t->fn;
    size_t off = 0;
    for (int g = 0; g < o->ngroups; g++)
        for (int k = 0; k < o->groups[g].ntensors; k++) {
            size_t n = o->groups[g].size[k], a = local_cut(lo, off, n), b = local_cut(hi, off, n);
            off += n;
            if (b <= a) continue;
            float *slot[CO_MT_MAX_SLOTS];
            for (int j = 0; j < CO_MT_MAX_SLOTS; j++) slot[j] = slots && slots[j] ? co_slot(slots[j], g, k) + a : NULL;
            fn(o->groups[g].param[k] + a, o->groups[g].grad[k] + a, slot, b - a,
               o->group_scalars + (size_t)g * CO_ELEM_NSCALAR);
        }
}

void co_optim_foreach(co_optim *o, co_slots *const slots[CO_MT_MAX_SLOTS], co_group_scalars_fn scalars,
                      co_range_fn *fn)
{
    for (int g = 0; scalars && g < o->ngroups; g++) scalars(o, g, o->group_scalars + (size_t)g * CO_ELEM_NSCALAR);
    size_t total = co_optim_numel(o);
    foreach_task t = {o, slots, fn};
    co_run_shared(total, total > CO_FOREACH_PAR_MIN, foreach_share, &t);
}

co_slots *co_slots_new(const co_optim *o, co_error *err)
{
    size_t nptr = (size_t)o->ngroups * CO_GROUP_MAX_TENSORS;
    co_slots *s = calloc(1, sizeof *s + nptr * sizeof(float *));
    if (!s) goto oom;
    s->ngroups = o->ngroups;
    s->device = o->device;
    /* Each tensor starts on a 64-byte boundary. */
    size_t total = 0;
    for (int g = 0; g < o->ngroups; g++)
        for (int k = 0; k < o->groups[g].ntensors; k++) total += (o->groups[g].size[k] + 15) & ~(size_t)15;
    if (s->device == CO_DEVICE_CUDA) {
        s->base = co_cuda_alloc(total * sizeof(float), err);
        if (!s->base) {
            free(s);
            return NULL;
        }
    } else {
        s->base = co_falloc(total);
    }
    if (!s->base) goto oom;
    size_t off = 0;
    for (int g = 0; g < o->ngroups; g++)
        for (int k = 0; k < o->groups[g].ntensors; k++) {
            s->at[g * CO_GROUP_MAX_TENSORS + k] = s->base + off;
            off += (o->groups[g].size[k] + 15) & ~(size_t)15;
        }
    return s;
oom:
    co_slots_free(s);
    co_error_set(err, CO_ENOMEM, "out of memory for optimizer state");
    return NULL;
}

void co_slots_free(co_slots *s)
{
    if (!s) return;
    if (s->device == CO_DEVICE_CUDA)
        co_cuda_free(s->base);
    else
        free(s->base);
    free(s);
}

co_status co_slots_fill_group(co_slots *s, const co_optim *o, int g, float value, co_error *err)
{
    for (int k = 0; k < o->groups[g].ntensors; k++) {
        float *p = co_slot(s, g, k);
        size_t n = o->groups[g].size[k];
        if (s->device == CO_DEVICE_CUDA) {
            co_status st = co_cuda_memset_float(p, value, n, o->stream, err);
            if (st != CO_OK) return st;
            continue;
        }
        for (size_t i = 0; i < n; i++) p[i] = value;
    }
    return CO_OK;
}

/* The visitor either reads a blob (save) or writes it (load) and does not say which: a GPU
 * tensor goes through a host copy both ways, copied back afterwards (a no-op for a save).
 * A failed allocation or copy is recorded in o->device_status, which the state's readers
 * and writers report; the blob is then skipped. */
void co_slots_visit(co_slots *s, co_optim *o, co_state_visitor *v, const char *name)
{
    char key[96];
    float *host = NULL;
    if (s->device == CO_DEVICE_CUDA) {
        size_t most = 0;
        for (int g = 0; g < o->ngroups; g++)
            for (int k = 0; k < o->groups[g].ntensors; k++)
                if (o->groups[g].size[k] > most) most = o->groups[g].size[k];
        host = malloc(most * sizeof *host);
        if (!host) {
            o->device_status = CO_ENOMEM;
            return;
        }
    }
    for (int g = 0; g < o->ngroups; g++)
        for (int k = 0; k < o->groups[g].ntensors; k++) {
            snprintf(key, sizeof key, "%s/%d/%d", name, g, k);
            size_t bytes = o->groups[g].size[k] * sizeof(float);
            if (!host) {
                v->blob(v, key, co_slot(s, g, k), bytes);
                continue;
            }
            co_status st = co_cuda_copy(host, co_slot(s, g, k), bytes, o->stream, NULL);
            if (st == CO_OK) {
                v->blob(v, key, host, bytes);
                st = co_cuda_copy(co_slot(s, g, k), host, bytes, o->stream, NULL);
            }
            if (st != CO_OK) o->device_status = st;
        }
    free(host);
}

/* ------------------------------------------------------------ weight decay helpers */

void co_apply_l2(co_optim *o, int g, double wd)
{
    if (wd == 0) return;
    const co_group *gr = &o->groups[g];
    float w = (float)wd;
    for (int k = 0; k < gr->ntensors; k++) {
        float *restrict gp = gr->grad[k];
        const float *restrict p = gr->param[k];
        for (size_t i = 0; i < gr->size[k]; i++) gp[i] = co_l2_grad(gp[i], p[i], w);
    }
}

void co_apply_decoupled_decay(co_optim *o, int g, double lr, double wd)
{
    if (wd == 0) return;
    const co_group *gr = &o->groups[g];
    float f = (float)(1.0 - lr * wd);
    for (int k = 0; k < gr->ntensors; k++) {
        float *restrict p = gr->param[k];
        for (size_t i = 0; i < gr->size[k]; i++) p[i] *= f;
    }
}

/* ------------------------------------------------------------ create / free / step */

co_optim *co_optim_new(const char *name, const co_group *groups, int ngroups,
                       const char *hparams, uint64_t seed, co_error *err)
{
    return co_optim_new_per_group(name, groups, ngroups, hparams, NULL, seed, err);
}

co_optim *co_optim_new_per_group(const char *name, const co_group *groups, int ngroups, const char *hparams,
                                 const char *const *group_hparams, uint64_t seed, co_error *err)
{
    return co_optim_new_on(CO_DEVICE_CPU, name, groups, ngroups, hparams, group_hparams, seed, err);
}

co_optim *co_optim_new_on(co_device dev, const char *name, const co_group *groups, int ngroups, const char *hparams,
                          const char *const *group_hparams, uint64_t seed, co_error *err)
{
    const co_optim_info *info = co_optim_find(name);
    if (!info) {
        co_error_set(err, CO_EINVAL, "unknown optimizer '%s' (see `curvopt list`)", name ? name : "(null)");
        return NULL;
    }
    if (dev != CO_DEVICE_CPU && co_optim_device_check(info, dev, err) != CO_OK) return NULL;
    if (ngroups <= 0 || !groups) {
        co_error_set(err, CO_EINVAL, "%s: at least one parameter group is needed", info->name);
        return NULL;
    }
    for (int g = 0; g < ngroups; g++) {
        const co_group *gr = &groups[g];
        if (gr->ntensors <= 0 || gr->ntensors > CO_GROUP_MAX_TENSORS) {
            co_error_set(err, CO_EINVAL, "group %d: %d tensors (expected 1..%d)", g, gr->ntensors,
                         CO_GROUP_MAX_TENSORS);
            return NULL;
        }
        for (int k = 0; k < gr->ntensors; k++)
            if (!gr->param[k] || !gr->grad[k] || gr->size[k] == 0) {
                co_error_set(err, CO_EINVAL, "group %d tensor %d: missing buffer or zero size", g, k);
                return NULL;
            }
        if (gr->kind != CO_GROUP_DENSE &&
            (gr->rows <= 0 || gr->cols <= 0 || (size_t)gr->rows * (size_t)gr->cols != gr->size[0] ||
             (gr->ntensors > 1 && gr->size[1] != (size_t)gr->rows))) {
            co_error_set(err, CO_EINVAL,
                         "group %d (%s): a layer group needs weight rows x cols = size[0] and bias of rows "
                         "elements; got %d x %d, sizes %zu/%zu",
                         g, gr->name ? gr->name : "?", gr->rows, gr->cols, gr->size[0],
                         gr->ntensors > 1 ? gr->size[1] : 0);
            return NULL;
        }
    }
    co_optim *o = calloc(1, sizeof *o);
    if (!o) goto oom;
    o->info = info;
    o->device = dev;
    o->ngroups = ngroups;
    o->nhp = info->nhparams + COMMON_COUNT;
    o->lr_scale = 1.0;
    o->groups = calloc((size_t)ngroups, sizeof *o->groups);
    o->hp = calloc((size_t)ngroups * (size_t)o->nhp, sizeof *o->hp);
    o->group_scalars = calloc((size_t)ngroups * CO_ELEM_NSCALAR, sizeof *o->group_scalars);
    if (!o->groups || !o->hp || !o->group_scalars) goto oom;
    for (int g = 0; g < ngroups; g++) {
        o->groups[g] = groups[g];
        char buf[32];
        snprintf(buf, sizeof buf, "group%d", g);
        o->groups[g].name = strdup(groups[g].name ? groups[g].name : buf);
        if (!o->groups[g].name) goto oom;
        for (int i = 0; i < o->nhp; i++)
            o->hp[(size_t)g * o->nhp + i] = i < info->nhparams ? info->hparams[i].def : common_hp[i - info->nhparams].def;
    }
    co_rng_seed(&o->rng, seed, CO_STREAM_OPTIM);
    if (!co_optim_find_hparam(info, "faithful", &o->faithful_hp)) o->faithful_hp = -1;
    if (co_optim_set_list(o, -1, hparams, err) != CO_OK) {
        co_optim_free(o);
        return NULL;
    }
    for (int g = 0; g < ngroups && group_hparams; g++)
        if (co_optim_set_list(o, g, group_hparams[g], err) != CO_OK) {
            co_optim_free(o);
            return NULL;
        }
    if (info->ops->init(o, err) != CO_OK) {
        co_optim_free(o);
        return NULL;
    }
    o->created = 1;
    return o;
oom:
    co_optim_free(o);
    co_error_set(err, CO_ENOMEM, "out of memory creating optimizer %s", info->name);
    return NULL;
}

void co_optim_free(co_optim *o)
{
    if (!o) return;
    if (o->state && o->info->ops->free) o->info->ops->free(o);
    co_mt_plan_free(o->mt);
    if (o->groups)
        for (int g = 0; g < o->ngroups; g++) free((char *)o->groups[g].name);
    free(o->groups);
    free(o->hp);
    free(o->group_scalars);
    free(o);
}

co_status co_optim_rebind(co_optim *o, float *const *params, float *const *grads, co_error *err)
{
    (void)err;
    co_mt_plan_free(o->mt); /* the kernels' table holds the old pointers */
    o->mt = NULL;
    size_t i = 0;
    for (int g = 0; g < o->ngroups; g++)
        for (int k = 0; k < o->groups[g].ntensors; k++, i++) {
            if (params && params[i]) o->groups[g].param[k] = params[i];
            if (grads && grads[i]) o->groups[g].grad[k] = grads[i];
        }
    return CO_OK;
}

double co_groups_grad_norm(const co_group *groups, int ngroups)
{
    double s = 0;
    for (int g = 0; g < ngroups; g++)
        for (int k = 0; k < groups[g].ntensors; k++) {
            const float *gp = groups[g].grad[k];
            double part = 0;
            for (size_t i = 0; i < groups[g].size[k]; i++) part += (double)gp[i] * gp[i];
            s += part;
        }
    return sqrt(s);
}

/* maximize: the gradients of the groups that maximize change sign (exactly: -x is exact, so a
 * method sees what minimizing -f would give it, and the caller gets its gradients back). */
int co_optim_maximizes(const co_optim *o, int g) { return co_hp(o, g, o->info->nhparams + COMMON_MAXIMIZE) != 0; }

static void maximizes_of(const co_optim *o, int g, float *out) { out[0] = (float)co_optim_maximizes(o, g); }

static void negate_range(float *p, float *g, float *const *slot, size_t n, const float *maximizes)
{
    (void)p;
    (void)slot;
    if (maximizes[0] == 0) return;
#pragma omp simd
    for (size_t i = 0; i < n; i++) g[i] = -g[i];
}

static int negate_maximized(co_optim *o)
{
    int any = 0;
    for (int g = 0; g < o->ngroups; g++) any |= co_optim_maximizes(o, g);
    if (any) co_optim_foreach(o, NULL, maximizes_of, negate_range);
    return any;
}

/* The caller's closure seen through maximize: every evaluation's gradients are negated. */
typedef struct {
    co_optim *o;
    const co_closure *inner;
} maximize_ctx;

static double maximize_eval(void *ctx)
{
    maximize_ctx *m = ctx;
    double loss = m->inner->eval(m->inner->ctx);
    negate_maximized(m->o);
    return loss;
}

/* K-FAC's statistics are outer products of the captured values: the sign does not matter. */
static int maximize_capture(void *ctx, int group, co_capture *out)
{
    maximize_ctx *m = ctx;
    return m->inner->capture(m->inner->ctx, group, out);
}

static double maximize_eval_whole(void *ctx)
{
    maximize_ctx *m = ctx;
    double loss = m->inner->eval_whole(m->inner->ctx);
    negate_maximized(m->o);
    return loss;
}

co_status co_optim_step(co_optim *o, const co_closure *c, co_error *err)
{
    if ((o->info->ops->needs & CO_NEEDS_CLOSURE) && (!c || !c->eval))
        return co_error_set(err, CO_EINVAL, "%s needs a closure that re-evaluates the gradients", o->info->name);
    if (o->device == CO_DEVICE_CUDA) return co_optim_step_cuda(o, c, err);
    int maximize = negate_maximized(o);
    maximize_ctx mctx = {o, c};
    co_closure negated = {.ctx = &mctx,
                          .eval = c && c->eval ? maximize_eval : NULL,
                          .capture = c && c->capture ? maximize_capture : NULL,
                          .eval_whole = c && c->eval_whole ? maximize_eval_whole : NULL};
    if (maximize && c) c = &negated;
    if (o->clip_norm > 0) {
        double norm = co_groups_grad_norm(o->groups, o->ngroups);
        float f = co_clip_factor(o->clip_norm, norm);
        if (f != 1.0f)
            for (int g = 0; g < o->ngroups; g++)
                for (int k = 0; k < o->groups[g].ntensors; k++) {
                    float *gp = o->groups[g].grad[k];
                    for (size_t i = 0; i < o->groups[g].size[k]; i++) gp[i] *= f;
                }
    }
    o->t++;
    co_status st = o->info->ops->step(o, c, err);
    if (maximize) negate_maximized(o);
    return st;
}

float co_clip_factor(double max_norm, double norm)
{
    double coef = max_norm / (norm + 1e-6);
    return coef < 1.0 ? (float)coef : 1.0f;
}

void co_optim_set_collective(co_optim *o, const co_collective *c) { o->coll = c && c->size > 1 ? c : NULL; }

co_status co_optim_collect_state(co_optim *o, co_error *err)
{
    return o->coll && o->info->ops->collect ? o->info->ops->collect(o, err) : CO_OK;
}

void co_optim_share_state(co_optim *o)
{
    if (o->coll && o->info->ops->share) o->info->ops->share(o);
}

int co_optim_diagnostic(const co_optim *o, const char *name, double *out, int max)
{
    if (!o->info->ops->diagnostic) return -1;
    return o->info->ops->diagnostic(o, name, out, max);
}

co_status co_optim_epoch_end(co_optim *o, int epoch, double val_loss, co_error *err)
{
    if (o->info->ops->epoch_end) return o->info->ops->epoch_end(o, epoch, val_loss, err);
    return CO_OK;
}

/* ------------------------------------------------------------ state save / load */

#define STATE_MAGIC "CO-OPTIM-STATE\n"

typedef struct {
    co_state_visitor v;
    FILE *f;
    int failed;
} writer;

static void write_blob(co_state_visitor *vv, const char *name, void *data, size_t bytes)
{
    writer *w = (writer *)vv;
    if (w->failed) return;
    uint32_t nl = (uint32_t)strlen(name);
    uint64_t b = bytes;
    if (fwrite(&nl, 4, 1, w->f) != 1 || fwrite(name, 1, nl, w->f) != nl || fwrite(&b, 8, 1, w->f) != 1 ||
        (bytes && fwrite(data, 1, bytes, w->f) != bytes))
        w->failed = 1;
}

/* Framework state first, then the method's. */
/* Returns what a GPU copy of the visit reported (co_slots_visit). */
static co_status visit_all(co_optim *o, co_state_visitor *v)
{
    o->device_status = CO_OK;
    v->blob(v, "t", &o->t, sizeof o->t);
    v->blob(v, "lr_scale", &o->lr_scale, sizeof o->lr_scale);
    v->blob(v, "clip_norm", &o->clip_norm, sizeof o->clip_norm);
    v->blob(v, "rng", o->rng.s, sizeof o->rng.s);
    v->blob(v, "hparams", o->hp, (size_t)o->ngroups * o->nhp * sizeof *o->hp);
    if (o->info->ops->visit) o->info->ops->visit(o, v);
    return o->device_status;
}

static co_status device_failed(co_status st, co_error *err)
{
    return co_error_set(err, st, "optimizer state: copying it between the GPU and the host failed (%s)",
                        co_status_name(st));
}

co_status co_optim_state_write(const co_optim *o, FILE *f, co_error *err)
{
    uint32_t nl = (uint32_t)strlen(o->info->name);
    int32_t ng = o->ngroups;
    if (fwrite(STATE_MAGIC, 1, sizeof STATE_MAGIC - 1, f) != sizeof STATE_MAGIC - 1 || fwrite(&nl, 4, 1, f) != 1 ||
        fwrite(o->info->name, 1, nl, f) != nl || fwrite(&ng, 4, 1, f) != 1)
        return co_error_set(err, CO_EIO, "writing optimizer state: %s", strerror(errno));
    writer w = {{write_blob}, f, 0};
    /* visit_all only reads through the blob pointers when writing. */
    co_status dst = visit_all((co_optim *)o, &w.v);
    if (dst != CO_OK) return device_failed(dst, err);
    if (w.failed) return co_error_set(err, CO_EIO, "writing optimizer state: %s", strerror(errno));
    uint32_t end = 0xffffffffu;
    if (fwrite(&end, 4, 1, f) != 1) return co_error_set(err, CO_EIO, "writing optimizer state: %s", strerror(errno));
    return CO_OK;
}

typedef struct {
    co_state_visitor v;
    FILE *f;
    int apply; /* 0: only check names and sizes; 1: copy data */
    co_status st;
    co_error *err;
    const char *what;
    double *hparams; /* the check pass reads the hyperparameters here, to check their ranges */
} reader;

/* Names read from a file go into one-line messages: control bytes become '?'. */
static void make_printable(char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e) *s = '?';
}

static void read_blob(co_state_visitor *vv, const char *name, void *data, size_t bytes)
{
    reader *r = (reader *)vv;
    if (r->st) return;
    long at = ftell(r->f);
    uint32_t nl;
    char found[128];
    uint64_t b;
    if (fread(&nl, 4, 1, r->f) != 1) goto truncated;
    if (nl == 0xffffffffu || nl >= sizeof found) {
        r->st = co_error_set(r->err, CO_EFORMAT, "%s: byte %ld: expected state entry '%s', found %s", r->what, at,
                             name, nl == 0xffffffffu ? "end of state" : "an over-long name");
        return;
    }
    if (fread(found, 1, nl, r->f) != nl) goto truncated;
    found[nl] = 0;
    make_printable(found);
    if (strlen(found) != nl || strcmp(found, name) != 0) { /* an embedded NUL must not pass */
        r->st = co_error_set(r->err, CO_EFORMAT, "%s: byte %ld: expected state entry '%s', found '%s'", r->what, at,
                             name, found);
        return;
    }
    if (fread(&b, 8, 1, r->f) != 1) goto truncated;
    if (b != bytes) {
        r->st = co_error_set(r->err, CO_EFORMAT, "%s: byte %ld: state entry '%s' has %llu bytes, expected %zu",
                             r->what, at, name, (unsigned long long)b, bytes);
        return;
    }
    if (r->apply) {
        if (bytes && fread(data, 1, bytes, r->f) != bytes) goto truncated;
    } else if (r->hparams && strcmp(name, "hparams") == 0) {
        if (bytes && fread(r->hparams, 1, bytes, r->f) != bytes) goto truncated;
    } else if (fseek(r->f, (long)bytes, SEEK_CUR) != 0) {
        goto truncated;
    }
    return;
truncated:
    r->st = co_error_set(r->err, CO_EFORMAT, "%s: byte %ld: truncated inside state entry '%s'", r->what, at, name);
}

/* whole: the state must also be the last thing in f (a file of its own), checked before
 * anything is applied. */
static co_status state_read(co_optim *o, FILE *f, int whole, co_error *err)
{
    const char *what = "optimizer state";
    long start = ftell(f);
    char magic[sizeof STATE_MAGIC - 1];
    if (fread(magic, 1, sizeof magic, f) != sizeof magic || memcmp(magic, STATE_MAGIC, sizeof magic) != 0)
        return co_error_set(err, CO_EFORMAT, "%s: byte %ld: missing state magic", what, start);
    uint32_t nl;
    char name[64];
    int32_t ng;
    if (fread(&nl, 4, 1, f) != 1 || nl >= sizeof name || fread(name, 1, nl, f) != nl)
        return co_error_set(err, CO_EFORMAT, "%s: byte %ld: malformed optimizer name", what, start);
    name[nl] = 0;
    make_printable(name);
    if (strlen(name) != nl || strcmp(name, o->info->name) != 0)
        return co_error_set(err, CO_EFORMAT, "%s: saved by optimizer '%s', loading into '%s'", what, name,
                            o->info->name);
    if (fread(&ng, 4, 1, f) != 1 || ng != o->ngroups)
        return co_error_set(err, CO_EFORMAT, "%s: saved with %d groups, this optimizer has %d", what, ng,
                            o->ngroups);
    long body = ftell(f);
    /* Check every entry first so a mismatch never leaves the optimizer half-loaded; the
     * hyperparameters must also lie in their ranges (a method trusts them: K, T_int, ranks). */
    double *hp = malloc((size_t)o->ngroups * o->nhp * sizeof *hp);
    if (!hp) return co_error_set(err, CO_ENOMEM, "%s: out of memory", what);
    reader r = {{read_blob}, f, 0, CO_OK, err, what, hp};
    co_status dst = visit_all(o, &r.v);
    if (dst != CO_OK && !r.st) r.st = device_failed(dst, err);
    for (int g = 0; g < o->ngroups && !r.st; g++)
        for (int i = 0; i < o->nhp && !r.st; i++) {
            int ncommon;
            const co_hparam *h = i < o->info->nhparams ? &o->info->hparams[i]
                                                       : &co_optim_common_hparams(&ncommon)[i - o->info->nhparams];
            co_error why;
            if (check_value(o->info, h, hp[(size_t)g * o->nhp + i], &why))
                r.st = co_error_set(err, CO_EFORMAT, "%s: group %d: %s", what, g, why.msg);
        }
    free(hp);
    r.hparams = NULL;
    if (r.st) return r.st;
    uint32_t end;
    if (fread(&end, 4, 1, f) != 1 || end != 0xffffffffu)
        return co_error_set(err, CO_EFORMAT, "%s: byte %ld: expected end of state", what, ftell(f) - 4);
    long after = ftell(f);
    if (whole && fgetc(f) != EOF) return co_error_set(err, CO_EFORMAT, "%s: byte %ld: trailing bytes after the state", what, after);
    if (fseek(f, body, SEEK_SET) != 0) return co_error_set(err, CO_EIO, "%s: stream is not seekable", what);
    r.apply = 1;
    dst = visit_all(o, &r.v);
    if (dst != CO_OK && !r.st) r.st = device_failed(dst, err);
    if (r.st) return r.st;
    fseek(f, after, SEEK_SET);
    return CO_OK;
}

/* Counts the bytes co_optim_state_write would write. */
typedef struct {
    co_state_visitor v;
    size_t bytes;
} counter;

static void count_blob(co_state_visitor *vv, const char *name, void *data, size_t bytes)
{
    (void)data;
    ((counter *)vv)->bytes += 4 + strlen(name) + 8 + bytes;
}

size_t co_optim_state_size(const co_optim *o)
{
    counter c = {{count_blob}, 0};
    visit_all((co_optim *)o, &c.v);
    return sizeof STATE_MAGIC - 1 + 4 + strlen(o->info->name) + 4 + c.bytes + 4;
}

/* A stream onto a fixed buffer (fmemopen's "w" mode would end it with a NUL of its own). */
typedef struct {
    char *buf;
    size_t len, pos;
} buffer_sink;

static ssize_t sink_write(void *cookie, const char *data, size_t n)
{
    buffer_sink *s = cookie;
    if (n > s->len - s->pos) return -1;
    memcpy(s->buf + s->pos, data, n);
    s->pos += n;
    return (ssize_t)n;
}

co_status co_optim_state_to_buffer(const co_optim *o, void *buf, size_t len, co_error *err)
{
    size_t need = co_optim_state_size(o);
    if (!buf || len != need)
        return co_error_set(err, CO_EINVAL, "optimizer state: a buffer of %zu bytes is needed, got %zu", need, len);
    buffer_sink sink = {buf, len, 0};
    FILE *f = fopencookie(&sink, "wb", (cookie_io_functions_t){.write = sink_write});
    if (!f) return co_error_set(err, CO_ENOMEM, "optimizer state: cannot open the buffer: %s", strerror(errno));
    co_status st = co_optim_state_write(o, f, err);
    if (fclose(f) != 0 && st == CO_OK) st = co_error_set(err, CO_EIO, "optimizer state: the buffer overflowed");
    if (st == CO_OK && sink.pos != len)
        st = co_error_set(err, CO_EIO, "optimizer state: wrote %zu bytes, expected %zu", sink.pos, len);
    return st;
}

co_status co_optim_state_from_buffer(co_optim *o, const void *buf, size_t len, co_error *err)
{
    if (!buf || len == 0) return co_error_set(err, CO_EFORMAT, "optimizer state: empty buffer");
    FILE *f = fmemopen((void *)buf, len, "rb");
    if (!f) return co_error_set(err, CO_ENOMEM, "optimizer state: cannot open the buffer: %s", strerror(errno));
    co_status st = state_read(o, f, 1, err);
    fclose(f);
    return st;
}

co_status co_optim_state_read(co_optim *o, FILE *f, co_error *err)
{
    return state_read(o, f, 0, err);
}

co_status co_optim_state_read_whole(co_optim *o, FILE *f, co_error *err)
{
    return state_read(o, f, 1, err);
}

#define FILE_MAGIC "CURVOPT-OPT"
#define FILE_VERSION 1u

co_status co_optim_save(const co_optim *o, const char *path, co_error *err)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&buf, &len);
    if (!mem) return co_error_set(err, CO_ENOMEM, "out of memory saving optimizer state");
    co_status st = co_optim_state_write(o, mem, err);
    fclose(mem);
    if (st == CO_OK) st = co_file_write_framed(path, FILE_MAGIC, FILE_VERSION, buf, len, err);
    free(buf);
    return st;
}

co_status co_optim_load(co_optim *o, const char *path, co_error *err)
{
    void *buf;
    size_t len;
    co_status st = co_file_read_framed(path, FILE_MAGIC, FILE_VERSION, &buf, &len, err);
    if (st) return st;
    FILE *mem = fmemopen(buf, len, "rb");
    if (!mem) {
        free(buf);
        return co_error_set(err, CO_ENOMEM, "out of memory loading %s", path);
    }
    co_error inner = {0};
    st = state_read(o, mem, 1, &inner);
    if (st) co_error_set(err, st, "%s: %s", path, inner.msg);
    fclose(mem);
    free(buf);
    return st;
}
