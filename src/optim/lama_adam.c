/* LAMA-Adam (paper 002): Adam whose first-moment decay is scaled per layer by a factor
 * alpha_l driven by the layer's average Hessian trace,
 *   m_t = (alpha_l beta1) m_{t-1} + (1 - beta1) g_t                         (eq. 6)
 *   alpha_l = alpha_min + (alpha_max - alpha_min) sigmoid(lambda tr(H_l)/N_l) (eq. 7-9)
 * with tr(H_l) from Hutchinson probes and finite-difference Hessian-vector products on the
 * same minibatch (hutchinson.c). Everything else is torch's Adam, so that alpha = 1 gives
 * co_optim "adam" bit for bit. Decisions (docs/optimizers/lama-adam.md):
 *  - eq. 9's sign is the default (alpha grows with curvature); invert=1 is §5.1's reading;
 *  - the effective decay alpha_l beta1 is clamped to beta1_max (< 1): alpha_max beta1 =
 *    1.35 with the paper's values would make m grow without bound;
 *  - bias correction: Adam's 1 - beta1^t as the paper's eq. 3 writes it (ema_correction=0),
 *    or the exact normaliser of the modified EMA (ema_correction=1). */
#include "lama_adam.h"
#include "hutchinson.h"
#include "elementwise.h"
#include "optim_impl.h"
#include "torch_ops.h"

#include <math.h>
#include <string.h>

enum {
    HP_LR,
    HP_BETA1,
    HP_BETA2,
    HP_EPS,
    HP_K,
    HP_DELTA,
    HP_ALPHA_MIN,
    HP_ALPHA_MAX,
    HP_LAMBDA,
    HP_INTERVAL,
    HP_BETA1_MAX,
    HP_INVERT,
    HP_EMA_CORRECTION,
    HP_FAITHFUL,
    HP_COUNT
};

/* K probes every this many steps: within seed noise of every step on Fashion-MNIST and at
 * ~1.4x Adam's step instead of ~11x (docs/optimizers/lama-adam.md, "Probe schedule"). */
#define LAMA_INTERVAL_DEFAULT 50

typedef struct {
    co_slots *m, *v;
    co_hutchinson hutch;
    double *trace, *trace_se; /* tr(H_l) of the latest estimate and its standard error */
    double *alpha;            /* alpha_l in use until the next estimate */
    double *ema_norm;         /* sum_k prod_{j>k} b_j (1 - beta1): the modified EMA's weight total */
} lama_state;

double co_lama_alpha(double h_layer, double lambda, double alpha_min, double alpha_max, int invert)
{
    double x = (invert ? -lambda : lambda) * h_layer;
    double mid = 0.5 * (alpha_min + alpha_max), half = 0.5 * (alpha_max - alpha_min);
    double a = mid + half * tanh(0.5 * x); /* sigmoid(x) = (1 + tanh(x/2)) / 2 */
    double lo = fmin(alpha_min, alpha_max), hi = fmax(alpha_min, alpha_max);
    return fmin(fmax(a, lo), hi);
}

static double effective_beta1(const co_optim *o, int g, double alpha)
{
    return fmin(alpha * co_hp(o, g, HP_BETA1), co_hp(o, g, HP_BETA1_MAX));
}

static co_status lama_init(co_optim *o, co_error *err)
{
    lama_state *s = calloc(1, sizeof *s);
    if (!s) return co_error_set(err, CO_ENOMEM, "out of memory");
    o->state = s;
    for (int g = 0; g < o->ngroups; g++)
        if (co_hp(o, g, HP_ALPHA_MIN) > co_hp(o, g, HP_ALPHA_MAX))
            return co_error_set(err, CO_EINVAL, "lama-adam: alpha_min %g exceeds alpha_max %g (group %d)",
                                co_hp(o, g, HP_ALPHA_MIN), co_hp(o, g, HP_ALPHA_MAX), g);
    s->m = co_slots_new(o, err);
    s->v = co_slots_new(o, err);
    if (!s->m || !s->v) return err ? err->code : CO_ENOMEM;
    co_status st = co_hutchinson_init(&s->hutch, o->groups, o->ngroups, err);
    if (st) return st;
    s->trace = co_dalloc((size_t)o->ngroups);
    s->trace_se = co_dalloc((size_t)o->ngroups);
    s->alpha = co_dalloc((size_t)o->ngroups);
    s->ema_norm = co_dalloc((size_t)o->ngroups);
    if (!s->trace || !s->trace_se || !s->alpha || !s->ema_norm) return co_error_set(err, CO_ENOMEM, "out of memory");
    for (int g = 0; g < o->ngroups; g++)
        s->alpha[g] = co_lama_alpha(0, 0, co_hp(o, g, HP_ALPHA_MIN), co_hp(o, g, HP_ALPHA_MAX), 0);
    return CO_OK;
}

/* A group's scalars for the step under way (a row of o->group_scalars). */
typedef struct {
    float a1, b1eff, b2, a2, eps, step_size, bc2_sqrt;
} lama_scalars;
_Static_assert(sizeof(lama_scalars) <= CO_ELEM_NSCALAR * sizeof(float), "lama_scalars overflows its row");

/* Adam's fused update (adam.c, without weight decay) with the decay of m replaced by b1eff.
 * Kept operation for operation identical to adam.c so that b1eff == beta1 reproduces it. */
static void lama_tensor(float *restrict p, const float *restrict g, float *restrict m, float *restrict v, size_t n,
                        lama_scalars s)
{
#pragma omp simd
    for (size_t i = 0; i < n; i++) {
        float gi = g[i];
        float mi = co_adam_first_moment(m[i], gi, s.b1eff, s.a1);
        float vi = co_adam_second_moment(v[i], gi, s.b2, s.a2);
        m[i] = mi;
        v[i] = vi;
        p[i] = co_adam_param(p[i], mi, vi, s.bc2_sqrt, s.eps, s.step_size);
    }
}

static void lama_range(float *p, float *g, float *const *slot, size_t n, const float *scalars)
{
    lama_scalars sc;
    memcpy(&sc, scalars, sizeof sc);
    lama_tensor(p, g, slot[0], slot[1], n, sc);
}

static co_status lama_step(co_optim *o, const co_closure *c, co_error *err)
{
    lama_state *s = o->state;
    int interval = (int)co_departure(o, 0, HP_INTERVAL, 1);
    if ((o->t - 1) % (uint64_t)interval == 0) {
        /* Clipping rescaled the grad buffers after the closure filled them; the difference
         * quotient then needs grad L(theta) evaluated afresh. */
        s->hutch.coll = o->coll;
        co_status st = co_hutchinson_trace(&s->hutch, o->groups, o->ngroups, c, &o->rng, (int)co_hp(o, 0, HP_K),
                                           co_hp(o, 0, HP_DELTA), o->clip_norm > 0, s->trace, s->trace_se, err);
        if (st) return st;
        for (int g = 0; g < o->ngroups; g++) {
            double h = s->trace[g] / (double)co_group_numel(&o->groups[g]);
            s->alpha[g] = co_lama_alpha(h, co_hp(o, g, HP_LAMBDA), co_hp(o, g, HP_ALPHA_MIN),
                                        co_hp(o, g, HP_ALPHA_MAX), co_hp(o, g, HP_INVERT) != 0);
        }
    }
    double t = (double)o->t;
    for (int g = 0; g < o->ngroups; g++) {
        double lr = co_lr(o, g), b1 = co_hp(o, g, HP_BETA1), b2 = co_hp(o, g, HP_BETA2);
        double b1eff = effective_beta1(o, g, s->alpha[g]);
        s->ema_norm[g] = b1eff * s->ema_norm[g] + (1.0 - b1);
        double bc1 = co_hp(o, g, HP_EMA_CORRECTION) != 0 ? s->ema_norm[g] : 1.0 - pow(b1, t);
        double bc2 = 1.0 - pow(b2, t);
        lama_scalars sc = {.a1 = (float)(1.0 - b1),
                           .b1eff = (float)b1eff,
                           .b2 = (float)b2,
                           .a2 = (float)(1.0 - b2),
                           .eps = (float)co_hp(o, g, HP_EPS),
                           .step_size = (float)(lr / bc1),
                           .bc2_sqrt = (float)sqrt(bc2)};
        memcpy(o->group_scalars + (size_t)g * CO_ELEM_NSCALAR, &sc, sizeof sc);
    }
    co_optim_foreach(o, (co_slots *const[CO_MT_MAX_SLOTS]){s->m, s->v}, NULL, lama_range);
    return CO_OK;
}

static void lama_visit(co_optim *o, co_state_visitor *v)
{
    lama_state *s = o->state;
    size_t bytes = (size_t)o->ngroups * sizeof(double);
    co_slots_visit(s->m, o, v, "exp_avg");
    co_slots_visit(s->v, o, v, "exp_avg_sq");
    v->blob(v, "trace", s->trace, bytes);
    v->blob(v, "trace_se", s->trace_se, bytes);
    v->blob(v, "alpha", s->alpha, bytes);
    v->blob(v, "ema_norm", s->ema_norm, bytes);
}

static void lama_free(co_optim *o)
{
    lama_state *s = o->state;
    co_slots_free(s->m);
    co_slots_free(s->v);
    co_hutchinson_free(&s->hutch);
    free(s->trace);
    free(s->trace_se);
    free(s->alpha);
    free(s->ema_norm);
    free(s);
}

static int lama_diagnostic(const co_optim *o, const char *name, double *out, int max)
{
    static const char *const names[] = {"layer_trace", "trace", "trace_se", "alpha", "beta1_eff"};
    int which = -1;
    for (int i = 0; i < 5; i++)
        if (strcmp(name, names[i]) == 0) which = i;
    if (which < 0) return -1;
    const lama_state *s = o->state;
    int n = o->ngroups < max ? o->ngroups : max;
    for (int g = 0; g < n; g++) {
        switch (which) {
        case 0: out[g] = s->trace[g] / (double)co_group_numel(&o->groups[g]); break;
        case 1: out[g] = s->trace[g]; break;
        case 2: out[g] = s->trace_se[g]; break;
        case 3: out[g] = s->alpha[g]; break;
        default: out[g] = effective_beta1(o, g, s->alpha[g]); break;
        }
    }
    return n;
}

static const co_hparam lama_hp[HP_COUNT] = {
    {"lr", 1e-3, 0, 1e3, 0, "learning rate (paper §3.4: 0.001)"},
    {"beta1", 0.9, 0, 1, CO_HP_MAX_OPEN, "first-moment decay before the layer factor alpha_l"},
    {"beta2", 0.999, 0, 1, CO_HP_MAX_OPEN, "second-moment decay"},
    {"eps", 1e-8, 0, 1, 0, "added to sqrt(v_hat) in the denominator"},
    {"K", 10, 1, 1e6, CO_HP_INT | CO_HP_GLOBAL, "Hutchinson probes per estimate (one gradient evaluation each)"},
    {"delta", 0.01, 0, 1e3, CO_HP_MIN_OPEN | CO_HP_GLOBAL, "finite-difference step per coordinate of the +-1 probe"},
    {"alpha_min", 0.5, 0, 1e3, 0, "lower end of alpha_l (eq. 9)"},
    {"alpha_max", 1.5, 0, 1e3, 0, "upper end of alpha_l (eq. 9)"},
    {"lambda", 0.01, 0, 1e12, 0, "sensitivity of alpha_l to tr(H_l)/N_l (eq. 9)"},
    {"interval", LAMA_INTERVAL_DEFAULT, 1, 1e9, CO_HP_INT | CO_HP_GLOBAL | CO_HP_DEPARTURE,
     "re-estimate the traces every this many steps (the paper: every step)"},
    {"beta1_max", 0.999, 0, 1, CO_HP_MAX_OPEN, "upper bound on the effective decay alpha_l * beta1"},
    {"invert", 0, 0, 1, CO_HP_BOOL, "1: sigmoid(-lambda h), alpha shrinks with curvature (paper §5.1 text)"},
    {"ema_correction", 0, 0, 1, CO_HP_BOOL,
     "0: Adam's 1-beta1^t (eq. 3); 1: divide m by the modified EMA's own weight total"},
    {"faithful", 0, 0, 1, CO_HP_BOOL | CO_HP_GLOBAL, "1: the paper's algorithm as published (traces every step)"},
};

static const co_optim_ops lama_ops = {.init = lama_init,
                                      .step = lama_step,
                                      .visit = lama_visit,
                                      .free = lama_free,
                                      .needs = CO_NEEDS_CLOSURE,
                                      .diagnostic = lama_diagnostic};

const co_optim_info co_info_lama_adam = {
    "lama-adam", "LAMA-Adam: Adam with per-layer momentum scaled by the Hutchinson Hessian trace",
    "LAMA-Adam (paper 002), eq. 6-9", HP_COUNT, lama_hp, &lama_ops};

int co_lama_adam_traces(const co_optim *opt, double *out, int max)
{
    if (co_optim_info_of(opt) != &co_info_lama_adam) return -1;
    return co_optim_diagnostic(opt, "layer_trace", out, max);
}
