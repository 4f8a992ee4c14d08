/* TSO-ALRA (paper 004): a two-stage optimizer. Stage 1 preconditions each layer's gradient
 * with the K-FAC approximation of the Fisher's inverse square root,
 *   theta_l <- theta_l - eta vec(B_l^-1/2 G_l A_l^-1/2)           (eq. 16)
 * with A_l, B_l exponential averages of input and output-gradient outer products
 * (eq. 17-18, kfac.c) and their damped inverse roots recomputed every T_int steps; stage 2
 * is plain SGD, from a given epoch or once the validation loss has not improved for
 * `patience` epochs (§III-B). A composition: a preconditioner, then SGD.
 * Decisions: docs/optimizers/tso-alra.md. */
#include "kfac.h"
#include "kfac_dist.h"
#include "../core/blas.h"
#include "optim_impl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum {
    HP_LR,
    HP_GAMMA,
    HP_DAMPING,
    HP_T_INT,
    HP_SWITCH_EPOCH,
    HP_PATIENCE,
    HP_DAMP_MODE,
    HP_SGD_LR_SCALE,
    HP_WD,
    HP_FAITHFUL,
    HP_KL_CLIP,
    HP_REFRESH_TOL,
    HP_T_COV,
    HP_RANK,
    HP_STAT_ROWS,
    HP_COUNT
};

/* A layer's direction and the multiply-adds of its products. */
typedef struct {
    int group;
    double madds;
} apply_job;

/* A layer whose products have at least this many multiply-adds spreads them over the threads
 * alone (co_gemm's pieces); smaller ones run side by side, one layer per thread: on the MNIST
 * CNN at two threads the 120 x 401 layer's 12M took 0.48 ms spread against 0.37 ms on one
 * thread (its two column pieces are 256 and 145 wide). */
#define APPLY_ALONE_MADDS 5e7

typedef struct {
    co_kfac *kfac;   /* per group (rows == 0: no K-FAC for this group) */
    int32_t switched; /* stage 2 (plain SGD) */
    int32_t switch_epoch_seen; /* the epoch at which it switched (0: not yet) */
    double best_val;
    int32_t bad_epochs;
    int64_t refreshes;
    int64_t early_refreshes; /* refreshes brought forward by refresh_tol */
    double kl_scale;         /* the last step's KL-clip factor nu (1: not clipped) */
    float *dir;              /* every K-FAC layer's preconditioned gradient [W | b], at dir_off[g] */
    size_t *dir_off;
    co_kfac_job *jobs;    /* 2 x ngroups: the factors a step refreshes */
    uint8_t *precond;     /* per group: this step preconditions it */
    co_kfac_dist *dist;   /* distributed run: the ranks' shares of the factors (kfac_dist.h) */
    double *traces;       /* distributed run: per group, A's and B's traces summed over the ranks */
    /* A statistics step's captured layers (one process): their factors, captures and gammas. */
    co_kfac **stat_kfac;
    co_capture *stat_cap;
    double *stat_gamma;
    uint8_t *captured; /* per group */
    apply_job *apply_order;  /* the step's preconditioned layers, in the order their directions run */
    double *dir_dot_grad;    /* per group: <direction, gradient> for the KL clip */
} tso_state;

static int kfac_group(const co_group *g) { return g->kind != CO_GROUP_DENSE && g->rows > 0 && g->cols > 0; }

static int faithful(const co_optim *o) { return co_hp(o, 0, HP_FAITHFUL) != 0; }

/* Factor statistics are taken at steps 1, 1 + T_cov, ... (the paper: every step). */
static uint64_t t_cov(const co_optim *o) { return faithful(o) ? 1 : (uint64_t)co_hp(o, 0, HP_T_COV); }

/* The most captured rows a layer's statistics read (0: all of them, the paper). */
static int stat_rows(const co_optim *o) { return faithful(o) ? 0 : (int)co_hp(o, 0, HP_STAT_ROWS); }

static co_status tso_init(co_optim *o, co_error *err)
{
    tso_state *s = calloc(1, sizeof *s);
    if (!s) return co_error_set(err, CO_ENOMEM, "out of memory");
    o->state = s;
    s->best_val = INFINITY;
    s->kfac = calloc((size_t)o->ngroups, sizeof *s->kfac);
    if (!s->kfac) return co_error_set(err, CO_ENOMEM, "out of memory");
    s->kl_scale = 1;
    s->dir_off = calloc((size_t)o->ngroups, sizeof *s->dir_off);
    if (!s->dir_off) return co_error_set(err, CO_ENOMEM, "out of memory");
    size_t total = 1;
    for (int g = 0; g < o->ngroups; g++) {
        const co_group *gr = &o->groups[g];
        if (!kfac_group(gr)) continue;
        co_status st = co_kfac_init(&s->kfac[g], gr->rows, gr->cols, gr->ntensors > 1, err);
        if (!st && !faithful(o)) st = co_kfac_set_rank(&s->kfac[g], (int)co_hp(o, g, HP_RANK), err);
        if (st) return st;
        s->dir_off[g] = total;
        total += gr->size[0] + (size_t)gr->rows;
    }
    s->dir = co_falloc(total);
    s->jobs = calloc((size_t)o->ngroups * 2, sizeof *s->jobs);
    s->traces = calloc((size_t)o->ngroups * 2, sizeof *s->traces);
    s->precond = calloc((size_t)o->ngroups, 1);
    s->captured = calloc((size_t)o->ngroups, 1);
    s->stat_kfac = calloc((size_t)o->ngroups, sizeof *s->stat_kfac);
    s->stat_cap = calloc((size_t)o->ngroups, sizeof *s->stat_cap);
    s->stat_gamma = calloc((size_t)o->ngroups, sizeof *s->stat_gamma);
    s->apply_order = calloc((size_t)o->ngroups, sizeof *s->apply_order);
    s->dir_dot_grad = calloc((size_t)o->ngroups, sizeof *s->dir_dot_grad);
    if (!s->dir || !s->jobs || !s->traces || !s->precond || !s->captured || !s->stat_kfac || !s->stat_cap ||
        !s->stat_gamma || !s->apply_order || !s->dir_dot_grad)
        return co_error_set(err, CO_ENOMEM, "out of memory");
    return CO_OK;
}

static void tso_free(co_optim *o)
{
    tso_state *s = o->state;
    if (s->kfac)
        for (int g = 0; g < o->ngroups; g++) co_kfac_free(&s->kfac[g]);
    free(s->kfac);
    free(s->dir);
    free(s->dir_off);
    free(s->jobs);
    free(s->traces);
    free(s->precond);
    free(s->captured);
    free(s->stat_kfac);
    free(s->stat_cap);
    free(s->stat_gamma);
    free(s->apply_order);
    free(s->dir_dot_grad);
    if (s->dist) co_kfac_dist_free(s->dist);
    free(s->dist);
    free(s);
}

/* The distributed part of the state, made on the first use with a collective. */
static co_kfac_dist *dist_of(co_optim *o, co_error *err)
{
    tso_state *s = o->state;
    if (!s->dist && (s->dist = malloc(sizeof *s->dist)) && co_kfac_dist_init(s->dist, o->ngroups, err)) {
        free(s->dist);
        s->dist = NULL;
    }
    if (!s->dist) co_error_set(err, CO_ENOMEM, "out of memory for distributed K-FAC");
    return s->dist;
}

static co_status tso_collect(co_optim *o, co_error *err)
{
    tso_state *s = o->state;
    co_kfac_dist *d = dist_of(o, err);
    return d ? co_kfac_dist_collect(d, s->kfac, o->ngroups, o->coll, err) : CO_ENOMEM;
}

static void tso_share(co_optim *o)
{
    tso_state *s = o->state;
    co_kfac_dist *d = dist_of(o, NULL);
    if (d) co_kfac_dist_share(d, s->kfac, o->ngroups, o->coll);
}

static void sgd_update(co_group *gr, double lr, double wd)
{
    float l = (float)lr, w = (float)wd;
    for (int k = 0; k < gr->ntensors; k++) {
        float *restrict p = gr->param[k];
        const float *restrict g = gr->grad[k];
        for (size_t i = 0; i < gr->size[k]; i++) p[i] -= l * (g[i] + w * p[i]);
    }
}

/* p -= l d, on the threads for a large layer (alexnet-28's 2.5M weights were a serial pass). */
static void step_along(float *restrict p, const float *restrict d, size_t n, float l)
{
    if (n > 65536) {
#pragma omp parallel for simd schedule(static)
        for (size_t i = 0; i < n; i++) p[i] -= l * d[i];
        return;
    }
    for (size_t i = 0; i < n; i++) p[i] -= l * d[i];
}

/* Layer g's direction B^-1/2 G A^-1/2 into dir, and for the KL clip its inner product with
 * the gradient (dir_dot_grad[g]). */
static void apply_direction(co_optim *o, int g)
{
    tso_state *s = o->state;
    co_group *gr = &o->groups[g];
    float *dw = s->dir + s->dir_off[g], *db = dw + gr->size[0];
    co_kfac_apply(&s->kfac[g], gr->grad[0], gr->ntensors > 1 ? gr->grad[1] : NULL, dw, db, co_hp(o, g, HP_DAMPING),
                  (co_kfac_damping)(int)co_hp(o, g, HP_DAMP_MODE));
    double d = 0;
    /* In co_dot_d's fixed lanes: a sum in element order was a chain of dependent double adds,
     * 2 ms a plain step on alexnet-28 on one thread while the other waited. */
    if (co_guard(o, g, HP_KL_CLIP) > 0)
        d = co_dot_d(dw, gr->grad[0], gr->size[0]) + (gr->ntensors > 1 ? co_dot_d(db, gr->grad[1], (size_t)gr->rows) : 0.0);
    s->dir_dot_grad[g] = d;
}

static int larger_apply_first(const void *pa, const void *pb)
{
    const apply_job *a = pa, *b = pb;
    if (a->madds != b->madds) return a->madds < b->madds ? 1 : -1;
    return a->group - b->group;
}

/* In three passes over the groups, each group's arithmetic as if it ran alone: the factor
 * updates (and SGD steps), then every due eigendecomposition at once (so the factors of
 * different layers can run in parallel), then the preconditioned steps. */
static co_status tso_step(co_optim *o, const co_closure *c, co_error *err)
{
    tso_state *s = o->state;
    int njobs = 0;
    int stats = (o->t - 1) % t_cov(o) == 0;
    /* Distributed: every rank's statistics first, so that all take the same decisions. */
    co_kfac_dist *dist = NULL;
    if (o->coll && !s->switched) {
        if (stat_rows(o) > 0)
            return co_error_set(err, CO_EINVAL,
                                "tso-alra: stat_rows is not available under mpirun yet (each rank would have to read "
                                "the rows one process reads); leave it at 0 there");
        if (!(dist = dist_of(o, err))) return CO_ENOMEM;
        co_status st = stats ? co_kfac_dist_stats(dist, s->kfac, o->ngroups, c, o->coll, err) : CO_OK;
        if (st) return st;
    }
    /* One process: every captured layer's statistics first, all at once (co_kfac_update_many). */
    if (stats && !dist) {
        int n = 0;
        for (int g = 0; g < o->ngroups; g++) {
            co_kfac *k = &s->kfac[g];
            co_capture *cap = &s->stat_cap[n];
            s->captured[g] = !s->switched && k->rows > 0 && c && c->capture && c->capture(c->ctx, g, cap) &&
                             cap->a_dim == k->cols && cap->g_dim == k->rows && cap->n > 0;
            if (!s->captured[g]) continue;
            s->stat_kfac[n] = k;
            s->stat_gamma[n++] = co_hp(o, g, HP_GAMMA);
        }
        /* The statistics step's index: consecutive ones start their row sample one row on. */
        co_kfac_update_many(s->stat_kfac, s->stat_cap, s->stat_gamma, n, stat_rows(o), (o->t - 1) / t_cov(o));
    }
    for (int g = 0; g < o->ngroups; g++) {
        co_group *gr = &o->groups[g];
        double lr = co_lr(o, g), wd = co_hp(o, g, HP_WD);
        co_kfac *k = &s->kfac[g];
        s->precond[g] = 0;
        if (faithful(o)) k->rank[0] = k->rank[1] = 0; /* the paper's full roots, whatever rank said */
        /* Between statistics steps (T_cov > 1) a layer is preconditioned with the factors it has. */
        int have = !stats ? !s->switched && k->rows > 0 && k->updates > 0 : dist ? dist->have[g] : s->captured[g];
        if (!have) {
            /* Stage 2, or a layer without K-FAC statistics: plain SGD. */
            sgd_update(gr, s->switched ? lr * co_hp(o, g, HP_SGD_LR_SCALE) : lr, wd);
            continue;
        }
        co_apply_l2(o, g, wd);
        if (stats && dist) co_kfac_fold(k, co_hp(o, g, HP_GAMMA), dist->finite[g]);
        if (k->updates == 0) {
            /* No finite statistics yet: nothing to precondition with. */
            sgd_update(gr, lr, 0);
            continue;
        }
        s->precond[g] = 1;
        uint64_t tint = (uint64_t)co_hp(o, g, HP_T_INT);
        /* Roots are recomputed every T_int steps and cached in between (first step included);
         * with refresh_tol also as soon as a factor's scale has moved by more than that (the
         * factors move only at statistics steps, so that is where it is checked). */
        int due = !k->have_roots || (o->t - 1) % tint == 0;
        double tol = stats ? co_guard(o, g, HP_REFRESH_TOL) : 0;
        /* Distributed: a rank holds a share of each factor; the decision waits for the traces
         * summed over the ranks (below), so that every rank decides alike. */
        if (dist && !due && tol > 0) continue;
        if (!due && tol > 0 && (co_kfac_drift(k, 0) > tol || co_kfac_drift(k, 1) > tol)) {
            due = 1;
            s->early_refreshes++;
        }
        if (due) {
            co_kfac_damping mode = (co_kfac_damping)(int)co_hp(o, g, HP_DAMP_MODE);
            for (int which = 0; which < 2; which++)
                s->jobs[njobs++] = (co_kfac_job){k, which, co_hp(o, g, HP_DAMPING), mode, CO_OK};
            s->refreshes++;
        }
    }
    double *traces = NULL;
    if (dist && stats && o->coll->size > 1) {
        /* Factors' traces are linear in the shares: their sum over ranks is the one-process
         * trace. Early refreshes (refresh_tol) are decided from it, and the refreshed factors'
         * reference traces set from it on every rank. */
        traces = s->traces;
        for (int g = 0; g < o->ngroups; g++)
            for (int w = 0; w < 2; w++) traces[2 * g + w] = s->precond[g] ? co_kfac_trace(&s->kfac[g], w) : 0;
        co_status st = o->coll->allreduce_sum(o->coll->ctx, NULL, 0, traces, 2 * (size_t)o->ngroups, err);
        if (st) return st;
        for (int g = 0; g < o->ngroups; g++) {
            co_kfac *k = &s->kfac[g];
            double tol = co_guard(o, g, HP_REFRESH_TOL);
            int queued = 0;
            for (int j = 0; j < njobs; j++) queued |= s->jobs[j].k == k;
            if (!s->precond[g] || queued || !(tol > 0)) continue;
            if (co_kfac_drift_at(k, 0, traces[2 * g]) > tol || co_kfac_drift_at(k, 1, traces[2 * g + 1]) > tol) {
                co_kfac_damping mode = (co_kfac_damping)(int)co_hp(o, g, HP_DAMP_MODE);
                for (int which = 0; which < 2; which++)
                    s->jobs[njobs++] = (co_kfac_job){k, which, co_hp(o, g, HP_DAMPING), mode, CO_OK};
                s->refreshes++;
                s->early_refreshes++;
            }
        }
    }
    if (njobs) {
        co_status st = dist ? co_kfac_dist_refresh(dist, s->jobs, njobs, s->kfac, o->coll, err)
                            : co_kfac_refresh_jobs(s->jobs, njobs, err);
        if (st) return st;
        if (traces)
            for (int j = 0; j < njobs; j++) {
                int g = (int)(s->jobs[j].k - s->kfac);
                s->jobs[j].k->root_trace[s->jobs[j].which] = traces[2 * g + s->jobs[j].which];
            }
    }
    /* The directions, and for the KL clip (Ba et al. 2017; kfac-pytorch's kl_clip) the
     * first-order size of the whole step, sum over layers of lr^2 <direction, gradient>. */
    int napply = 0;
    for (int g = 0; g < o->ngroups; g++) {
        if (!s->precond[g]) continue;
        co_kfac_damping mode = (co_kfac_damping)(int)co_hp(o, g, HP_DAMP_MODE);
        s->apply_order[napply++] = (apply_job){g, co_kfac_apply_madds(&s->kfac[g], mode)};
    }
    /* Layers whose products spread their own pieces over the threads run one after another,
     * the others side by side, largest first; a layer's products are the same pieces on
     * any thread, so the directions are the same bits either way. */
    qsort(s->apply_order, (size_t)napply, sizeof *s->apply_order, larger_apply_first);
    int nlarge = 0;
    while (nlarge < napply && s->apply_order[nlarge].madds >= APPLY_ALONE_MADDS) nlarge++;
    for (int j = 0; j < nlarge; j++) apply_direction(o, s->apply_order[j].group);
    int saved = co_blas_serial_begin();
#pragma omp parallel for schedule(dynamic, 1) if (napply - nlarge > 1)
    for (int j = nlarge; j < napply; j++) apply_direction(o, s->apply_order[j].group);
    co_blas_serial_end(saved);
    double vg = 0;
    for (int g = 0; g < o->ngroups; g++)
        if (s->precond[g] && co_guard(o, g, HP_KL_CLIP) > 0) {
            double lr = co_lr(o, g);
            vg += lr * lr * s->dir_dot_grad[g];
        }
    double kl = co_guard(o, 0, HP_KL_CLIP), nu = 1.0;
    if (kl > 0 && vg > kl) nu = sqrt(kl / vg);
    s->kl_scale = nu;
    for (int g = 0; g < o->ngroups; g++) {
        if (!s->precond[g]) continue;
        co_group *gr = &o->groups[g];
        const float *dw = s->dir + s->dir_off[g], *db = dw + gr->size[0];
        float l = (float)(co_lr(o, g) * nu);
        float *p = gr->param[0];
        step_along(p, dw, gr->size[0], l);
        if (gr->ntensors > 1)
            for (int i = 0; i < gr->rows; i++) gr->param[1][i] -= l * db[i];
    }
    return CO_OK;
}

static co_status tso_epoch_end(co_optim *o, int epoch, double val_loss, co_error *err)
{
    (void)err;
    tso_state *s = o->state;
    if (s->switched) return CO_OK;
    int switch_epoch = (int)co_hp(o, 0, HP_SWITCH_EPOCH), patience = (int)co_hp(o, 0, HP_PATIENCE);
    if (isfinite(val_loss)) {
        if (val_loss < s->best_val) {
            s->best_val = val_loss;
            s->bad_epochs = 0;
        } else {
            s->bad_epochs++;
        }
    }
    if ((switch_epoch > 0 && epoch >= switch_epoch) || (patience > 0 && s->bad_epochs >= patience)) {
        s->switched = 1;
        s->switch_epoch_seen = epoch;
    }
    return CO_OK;
}

static void tso_visit(co_optim *o, co_state_visitor *v)
{
    tso_state *s = o->state;
    char key[64];
    for (int g = 0; g < o->ngroups; g++) {
        co_kfac *k = &s->kfac[g];
        if (k->rows == 0) continue;
        size_t m = (size_t)k->m, n = (size_t)k->rows;
        snprintf(key, sizeof key, "A/%d", g);
        v->blob(v, key, k->A, m * m * sizeof(double));
        snprintf(key, sizeof key, "B/%d", g);
        v->blob(v, key, k->B, n * n * sizeof(double));
        snprintf(key, sizeof key, "eigvec_A/%d", g);
        v->blob(v, key, k->ua, m * m * sizeof(double));
        snprintf(key, sizeof key, "eigvec_B/%d", g);
        v->blob(v, key, k->ub, n * n * sizeof(double));
        snprintf(key, sizeof key, "eigval_A/%d", g);
        v->blob(v, key, k->la, m * sizeof(double));
        snprintf(key, sizeof key, "eigval_B/%d", g);
        v->blob(v, key, k->lb, n * sizeof(double));
        snprintf(key, sizeof key, "root_A/%d", g);
        v->blob(v, key, k->ra, m * m * sizeof(float));
        snprintf(key, sizeof key, "root_B/%d", g);
        v->blob(v, key, k->rb, n * n * sizeof(float));
        snprintf(key, sizeof key, "factor_updates/%d", g);
        v->blob(v, key, &k->updates, sizeof k->updates);
        snprintf(key, sizeof key, "factor_skipped/%d", g);
        v->blob(v, key, &k->skipped, sizeof k->skipped);
        snprintf(key, sizeof key, "have_roots/%d", g);
        v->blob(v, key, &k->have_roots, sizeof k->have_roots);
        snprintf(key, sizeof key, "root_trace/%d", g);
        v->blob(v, key, k->root_trace, sizeof k->root_trace);
    }
    v->blob(v, "switched", &s->switched, sizeof s->switched);
    v->blob(v, "switch_epoch", &s->switch_epoch_seen, sizeof s->switch_epoch_seen);
    v->blob(v, "best_val", &s->best_val, sizeof s->best_val);
    v->blob(v, "bad_epochs", &s->bad_epochs, sizeof s->bad_epochs);
    v->blob(v, "refreshes", &s->refreshes, sizeof s->refreshes);
    v->blob(v, "early_refreshes", &s->early_refreshes, sizeof s->early_refreshes);
}

static int tso_needs_now(const co_optim *o)
{
    const tso_state *s = o->state;
    /* The next step (o->t + 1) takes statistics when o->t is a multiple of T_cov; the others
     * need no patch matrices. */
    if (s->switched || o->t % t_cov(o) != 0) return CO_NEEDS_EPOCH;
    return CO_NEEDS_CAPTURE | CO_NEEDS_EPOCH;
}

static int tso_diagnostic(const co_optim *o, const char *name, double *out, int max)
{
    const tso_state *s = o->state;
    if (max < 1) return 0;
    if (strcmp(name, "switched") == 0) out[0] = s->switched;
    else if (strcmp(name, "switch_epoch") == 0) out[0] = s->switch_epoch_seen;
    else if (strcmp(name, "refreshes") == 0) out[0] = (double)s->refreshes;
    else if (strcmp(name, "early_refreshes") == 0) out[0] = (double)s->early_refreshes;
    else if (strcmp(name, "kl_scale") == 0) out[0] = s->kl_scale;
    else if (strcmp(name, "factor_updates") == 0) {
        /* Per group: the factor statistics folded in so far (0 for a group without K-FAC). */
        int n = o->ngroups < max ? o->ngroups : max;
        for (int g = 0; g < n; g++) out[g] = (double)s->kfac[g].updates;
        return n;
    } else return -1;
    return 1;
}

static const co_hparam tso_hp[HP_COUNT] = {
    {"lr", 1e-2, 0, 1e3, 0, "learning rate eta of both stages (the paper: 1e-2 for every setting)"},
    {"gamma", 0.05, 0, 1, CO_HP_MAX_OPEN, "weight of the new batch in the factor averages (eq. 17-18)"},
    {"damping", 1e-3, 0, 1e6, 0, "eps in (Lambda + eps I)^-1/2 (paper example 1e-6 diverges here; see docs)"},
    {"T_int", 10, 1, 1e9, CO_HP_INT, "steps between eigendecompositions (cached roots in between)"},
    {"switch_epoch", 0, 0, 1e9, CO_HP_INT | CO_HP_GLOBAL, "switch to plain SGD after this epoch (0: never)"},
    {"patience", 0, 0, 1e9, CO_HP_INT | CO_HP_GLOBAL, "switch when the validation loss has not improved for this many epochs (0: off)"},
    {"damping_mode", 0, 0, 1, CO_HP_INT, "0: damp each factor (paper); 1: damp the eigenvalue products"},
    {"sgd_lr_scale", 1, 0, 1e6, 0, "learning rate of stage 2 relative to lr"},
    {"weight_decay", 0, 0, 1e3, 0, "L2 penalty added to the gradient (before preconditioning)"},
    {"faithful", 0, 0, 1, CO_HP_BOOL | CO_HP_GLOBAL, "1: the paper's algorithm as published (every safeguard off)"},
    {"kl_clip", 1e-2, 0, 1e6, CO_HP_SAFEGUARD | CO_HP_GLOBAL, "scale the step so that lr^2 <direction, gradient> <= kl_clip (0: off)"},
    {"refresh_tol", 1, 0, 1e6, CO_HP_SAFEGUARD, "refresh a layer's roots early once a factor's trace moved by more than this factor - 1 (0: off)"},
    {"T_cov", 1, 1, 1e9, CO_HP_INT | CO_HP_GLOBAL, "steps between factor statistics (paper: 1; faithful=1 forces 1)"},
    {"rank", 0, 0, 1e6, CO_HP_INT | CO_HP_FIXED, "eigenpairs kept by the roots of factors wider than 2 rank, the rest one scalar (0: full roots; faithful=1 forces 0)"},
    {"stat_rows", 0, 0, 1e9, CO_HP_INT | CO_HP_GLOBAL, "factor statistics from every s-th captured row of a layer with more rows (convolutions: samples x positions), s = ceil(rows / stat_rows), the start moving by one each statistics step (0: every row, the paper; faithful=1 forces 0)"},
};

static const co_optim_ops tso_ops = {.init = tso_init,
                                     .step = tso_step,
                                     .visit = tso_visit,
                                     .free = tso_free,
                                     .epoch_end = tso_epoch_end,
                                     .needs = CO_NEEDS_CAPTURE | CO_NEEDS_EPOCH,
                                     .needs_now = tso_needs_now,
                                     .diagnostic = tso_diagnostic,
                                     .collect = tso_collect,
                                     .share = tso_share};

const co_optim_info co_info_tso_alra = {"tso-alra", "K-FAC Fisher^-1/2 preconditioning, then plain SGD (two stages)",
                                        "Ida & Fujiwara, TSO-ALRA (paper 004), eq. 12-18, §III-B", HP_COUNT, tso_hp,
                                        &tso_ops};
