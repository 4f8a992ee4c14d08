/* Duda's momentum + online-parabola family (paper 001): a second-order model in ONE
 * direction v_hat chosen by momentum, first-order gradient descent in the others.
 *   ogr1d  (Algorithms 1-5): v_hat follows the momentum every step; the averages are kept
 *          as they are, which rotates the model about the origin (the paper's text).
 *   ogr1ds (Algorithm 6): the step uses the previous direction w_hat and its averages while
 *          a fresh set of averages is built for the new direction; they swap every `stage`
 *          steps.
 *   ogr1dc (Algorithm 7): every `stage` steps the rotation centre moves to the current point
 *          (the averages are shifted, section III-C) before v_hat is updated.
 * The direction is global: one v_hat over every group's tensors, dots in double. The three
 * share the warm-up (Algorithm 5), the averages (Algorithm 2, eq. 3) and the step
 * (Algorithm 3, eqs. 2 and 4); see docs/optimizers/ogr1d.md for every decision. */
#include "ogr.h"
#include "optim_impl.h"

#include <math.h>
#include <string.h>

/* ------------------------------------------------------------ the 1-d model */

void co_ogr_avg_update(co_ogr_avg *a, double beta, double theta, double g)
{
    double w = 1.0 - beta;
    a->theta = beta * a->theta + w * theta;
    a->g = beta * a->g + w * g;
    a->gtheta = beta * a->gtheta + w * g * theta;
    a->theta2 = beta * a->theta2 + w * theta * theta;
    a->s = beta * a->s + w;
}

void co_ogr_avg_shift(co_ogr_avg *a, double dtheta)
{
    /* theta2 first: it needs the unshifted mean. The weighted form keeps s explicit
     * (sum_t w^t (theta - d)^2 = theta2 - 2 d theta + s d^2); the paper's s = 1 form
     * would be wrong while the averages are still young. */
    a->theta2 = a->theta2 - 2.0 * a->theta * dtheta + a->s * dtheta * dtheta;
    a->gtheta = a->gtheta - a->g * dtheta;
    a->theta = a->theta - a->s * dtheta;
}

/* Relative size of s*theta2 below which s*theta2 - theta^2 is rounding, not spread:
 * positions agreeing to about 1e-6 of their distance from the centre. */
#define OGR_SPREAD_TOL 1e-12

int co_ogr_regress(const co_ogr_avg *a, double *lambda, double *p)
{
    double var = a->s * a->theta2 - a->theta * a->theta;
    double cov = a->s * a->gtheta - a->g * a->theta;
    if (!(a->s > 0) || !(var > OGR_SPREAD_TOL * a->s * a->theta2)) {
        *lambda = 0;
        *p = NAN;
        return 0;
    }
    double l = cov / var;
    *lambda = l;
    /* Eq. 2's first form; lambda == 0 gives the infinitely far extremum. */
    *p = l != 0 ? (l * a->theta - a->g) / (a->s * l) : (a->g > 0 ? -INFINITY : a->g < 0 ? INFINITY : NAN);
    return 1;
}

double co_ogr_parabola_step(const co_ogr_avg *a, double theta, double alpha, double clip)
{
    double lambda, p;
    co_ogr_regress(a, &lambda, &p);
    if (!(a->s > 0)) return 0;
    /* Regression derivative at theta: (g_avg + lambda (s theta - theta_avg)) / s. */
    double m = (a->g + lambda * (a->s * theta - a->theta)) / a->s;
    double al = fabs(lambda);
    if (m == 0) return 0;
    if (fabs(m) >= clip * al) return m > 0 ? -alpha * clip : alpha * clip;
    return -alpha * m / al;
}

/* ------------------------------------------------------------ the optimizers */

enum { HP_LR, HP_ALPHA, HP_BETA, HP_GAMMA, HP_CLIP, HP_WARMUP, HP_PERP, HP_NEG_GD, HP_WD, HP_FAITHFUL, HP_STAGE };

typedef enum { OGR_ROTATE, OGR_SAFE, OGR_CENTERED } ogr_variant;

typedef struct {
    ogr_variant variant;
    co_slots *v;    /* momentum, v = gamma v + g */
    co_slots *vhat; /* modelled direction (Algorithm 6: the new one being averaged) */
    co_slots *what; /* Algorithm 6 only: the previous direction the step uses */
    co_ogr_avg avg, avgw; /* averages for vhat; Algorithm 6: avgw for what */
    double center;  /* Algorithm 7: c . vhat, the centre's coordinate on vhat */
    double vnorm2;  /* |v|^2 after the last momentum update, in double */
    double vdot;    /* v . vhat after the last update: the orientation of the next vhat */
    uint64_t k;     /* this method's step count: warm-up and stage position */
    double lambda, p, theta, move; /* the last step's regression, for diagnostics */
} ogr_state;

#define FOR_TENSORS(o, g, k) \
    for (int g = 0; g < (o)->ngroups; g++) \
        for (int k = 0; k < (o)->groups[g].ntensors; k++)

static co_status ogr_init_common(co_optim *o, ogr_variant variant, co_error *err)
{
    ogr_state *s = calloc(1, sizeof *s);
    if (!s) return co_error_set(err, CO_ENOMEM, "out of memory");
    o->state = s;
    s->variant = variant;
    s->v = co_slots_new(o, err);
    s->vhat = co_slots_new(o, err);
    if (!s->v || !s->vhat) return CO_ENOMEM;
    if (variant == OGR_SAFE && !(s->what = co_slots_new(o, err))) return CO_ENOMEM;
    return CO_OK;
}

static co_status ogr1d_init(co_optim *o, co_error *err) { return ogr_init_common(o, OGR_ROTATE, err); }
static co_status ogr1ds_init(co_optim *o, co_error *err) { return ogr_init_common(o, OGR_SAFE, err); }
static co_status ogr1dc_init(co_optim *o, co_error *err) { return ogr_init_common(o, OGR_CENTERED, err); }

/* Algorithm 5's momentum step, with the projections of the position the gradient was taken
 * at (the paper's listing moves theta before upd_avg; the regression must pair g with the
 * point it was evaluated at, see the doc). dir may be NULL (first half of the warm-up). */
static void warmup_pass(co_optim *o, ogr_state *s, float gamma, const co_slots *dir, double *theta, double *gdot)
{
    double th = 0, gd = 0, vv = 0, vd = 0;
    FOR_TENSORS(o, g, k) {
        float *restrict p = o->groups[g].param[k];
        const float *restrict gr = o->groups[g].grad[k];
        float *restrict v = co_slot(s->v, g, k);
        const float *restrict d = dir ? co_slot(dir, g, k) : NULL;
        float eta = (float)co_lr(o, g);
        size_t n = o->groups[g].size[k];
        double t1 = 0, t2 = 0, t3 = 0, t4 = 0;
        if (d) {
#pragma omp simd reduction(+ : t1, t2, t3, t4)
            for (size_t i = 0; i < n; i++) {
                t1 += (double)p[i] * d[i];
                t2 += (double)gr[i] * d[i];
                float vi = gamma * v[i] + gr[i];
                v[i] = vi;
                t3 += (double)vi * vi;
                t4 += (double)vi * d[i];
                p[i] -= eta * vi;
            }
        } else {
#pragma omp simd reduction(+ : t3)
            for (size_t i = 0; i < n; i++) {
                float vi = gamma * v[i] + gr[i];
                v[i] = vi;
                t3 += (double)vi * vi;
                p[i] -= eta * vi;
            }
        }
        th += t1;
        gd += t2;
        vv += t3;
        vd += t4;
    }
    *theta = th;
    *gdot = gd;
    s->vnorm2 = vv;
    s->vdot = vd;
}

/* Momentum update of the main loop plus the projections of position and gradient on one or
 * two directions (Algorithm 2's two dots; Algorithm 6 needs them for both directions). */
static void project_pass(co_optim *o, ogr_state *s, float gamma, const co_slots *d1, const co_slots *d2,
                         double out[4])
{
    double a0 = 0, a1 = 0, a2 = 0, a3 = 0, vv = 0, vd = 0;
    FOR_TENSORS(o, g, k) {
        const float *restrict p = o->groups[g].param[k];
        const float *restrict gr = o->groups[g].grad[k];
        float *restrict v = co_slot(s->v, g, k);
        const float *restrict x = co_slot(d1, g, k);
        size_t n = o->groups[g].size[k];
        double t0 = 0, t1 = 0, t4 = 0, t5 = 0;
#pragma omp simd reduction(+ : t0, t1, t4, t5)
        for (size_t i = 0; i < n; i++) {
            t0 += (double)p[i] * x[i];
            t1 += (double)gr[i] * x[i];
            float vi = gamma * v[i] + gr[i];
            v[i] = vi;
            t4 += (double)vi * vi;
            t5 += (double)vi * x[i];
        }
        a0 += t0;
        a1 += t1;
        vv += t4;
        vd += t5;
        if (d2) {
            const float *restrict y = co_slot(d2, g, k);
            double t2 = 0, t3 = 0;
#pragma omp simd reduction(+ : t2, t3)
            for (size_t i = 0; i < n; i++) {
                t2 += (double)p[i] * y[i];
                t3 += (double)gr[i] * y[i];
            }
            a2 += t2;
            a3 += t3;
        }
    }
    out[0] = a0;
    out[1] = a1;
    out[2] = a2;
    out[3] = a3;
    s->vnorm2 = vv;
    s->vdot = vd;
}

/* The line the model lives on is the same for v and -v; of the two unit vectors on it the
 * one closer to the current direction is taken, so a reversal of the momentum does not
 * mirror the averages (a 180-degree rotation of the model, see the doc). */
static double orientation(const ogr_state *s) { return s->vdot < 0 ? -1.0 : 1.0; }

/* Algorithm 3's parameter update: `move` along dir, and with perp set gradient descent on
 * the gradient's component orthogonal to dir, g - (g . dir) dir; with along set (the
 * "grad. desc. for lambda < 0" alternative) gradient descent on the component along dir
 * too. With renorm set (Algorithm 1) the same pass writes the next direction v / |v|. */
static void step_pass(co_optim *o, ogr_state *s, const co_slots *dir, double move, double gdot, int perp,
                      int along, int renorm)
{
    float mv = (float)move, gd = (float)gdot;
    float inv = s->vnorm2 > 0 ? (float)(orientation(s) / sqrt(s->vnorm2)) : 0.0f;
    renorm = renorm && s->vnorm2 > 0;
    FOR_TENSORS(o, g, k) {
        float *restrict p = o->groups[g].param[k];
        const float *restrict gr = o->groups[g].grad[k];
        float *restrict d = co_slot(dir, g, k);
        const float *restrict v = co_slot(s->v, g, k);
        float eta = perp ? (float)co_lr(o, g) : 0.0f;
        /* The move along dir: the model's, or -lr (g . dir) when along is set. */
        float mvg = along ? -(float)co_lr(o, g) * gd : mv;
        size_t n = o->groups[g].size[k];
        if (renorm) {
#pragma omp simd
            for (size_t i = 0; i < n; i++) {
                float di = d[i];
                p[i] += mvg * di - eta * (gr[i] - gd * di);
                d[i] = v[i] * inv;
            }
        } else {
#pragma omp simd
            for (size_t i = 0; i < n; i++) {
                float di = d[i];
                p[i] += mvg * di - eta * (gr[i] - gd * di);
            }
        }
    }
}

/* dst = v / |v| (caller checks |v| > 0). */
static void normalize_into(co_optim *o, ogr_state *s, co_slots *dst)
{
    float inv = (float)(orientation(s) / sqrt(s->vnorm2));
    FOR_TENSORS(o, g, k) {
        const float *restrict v = co_slot(s->v, g, k);
        float *restrict d = co_slot(dst, g, k);
        size_t n = o->groups[g].size[k];
#pragma omp simd
        for (size_t i = 0; i < n; i++) d[i] = v[i] * inv;
    }
}

/* Algorithm 7's stage start in one pass: the position's coordinate on the old direction
 * (for the shift), the new direction v / |v| (unchanged when |v| = 0), and the position's
 * coordinate on it (the new centre). */
static void recenter_pass(co_optim *o, ogr_state *s, double *on_old, double *on_new)
{
    int renorm = s->vnorm2 > 0;
    float inv = renorm ? (float)(orientation(s) / sqrt(s->vnorm2)) : 0.0f;
    double a = 0, b = 0;
    FOR_TENSORS(o, g, k) {
        const float *restrict v = co_slot(s->v, g, k);
        const float *restrict p = o->groups[g].param[k];
        float *restrict d = co_slot(s->vhat, g, k);
        size_t n = o->groups[g].size[k];
        double t0 = 0, t1 = 0;
#pragma omp simd reduction(+ : t0, t1)
        for (size_t i = 0; i < n; i++) {
            float old = d[i], nw = renorm ? v[i] * inv : old;
            t0 += (double)p[i] * old;
            d[i] = nw;
            t1 += (double)p[i] * nw;
        }
        a += t0;
        b += t1;
    }
    *on_old = a;
    *on_new = b;
}

static co_status ogr_step(co_optim *o, const co_closure *c, co_error *err)
{
    (void)c;
    (void)err;
    ogr_state *s = o->state;
    /* The model-level hyperparameters are global (CO_HP_GLOBAL); group 0 holds them. */
    float gamma = (float)co_hp(o, 0, HP_GAMMA);
    double beta = co_hp(o, 0, HP_BETA);
    double alpha = co_hp(o, 0, HP_ALPHA) * o->lr_scale, clip = co_hp(o, 0, HP_CLIP);
    uint64_t warm = (uint64_t)co_hp(o, 0, HP_WARMUP);
    int perp = co_hp(o, 0, HP_PERP) != 0, neg_gd = co_guard(o, 0, HP_NEG_GD) != 0;
    for (int g = 0; g < o->ngroups; g++) co_apply_l2(o, g, co_hp(o, g, HP_WD));
    s->k++;
    double th, gd;

    if (s->k <= warm) { /* Algorithm 5, first loop: momentum only, to find a direction. */
        warmup_pass(o, s, gamma, NULL, &th, &gd);
        if (s->k == warm && s->vnorm2 > 0) normalize_into(o, s, s->vhat);
        return CO_OK;
    }
    if (s->k <= 2 * warm) { /* Algorithm 5, second loop: momentum, averages along vhat. */
        warmup_pass(o, s, gamma, s->vhat, &th, &gd);
        co_ogr_avg_update(&s->avg, beta, th, gd);
        s->theta = th;
        return CO_OK;
    }

    double pr[4];
    if (s->variant == OGR_ROTATE) { /* Algorithm 1 */
        project_pass(o, s, gamma, s->vhat, NULL, pr);
        co_ogr_avg_update(&s->avg, beta, pr[0], pr[1]);
        co_ogr_regress(&s->avg, &s->lambda, &s->p);
        s->theta = pr[0];
        s->move = co_ogr_parabola_step(&s->avg, pr[0], alpha, clip);
        step_pass(o, s, s->vhat, s->move, pr[1], perp, neg_gd && s->lambda < 0, 1);
        return CO_OK;
    }

    uint64_t stage = (uint64_t)co_hp(o, 0, HP_STAGE);
    int stage_start = (s->k - 2 * warm - 1) % stage == 0;
    if (s->variant == OGR_SAFE) { /* Algorithm 6 */
        if (stage_start) {
            co_slots *t = s->what;
            s->what = s->vhat; /* w_hat <- v_hat, avgw <- avg */
            s->avgw = s->avg;
            s->vhat = t;
            if (s->vnorm2 > 0) normalize_into(o, s, s->vhat);
            else /* zero momentum: keep modelling the same direction */
                FOR_TENSORS(o, g, k) memcpy(co_slot(s->vhat, g, k), co_slot(s->what, g, k),
                                            o->groups[g].size[k] * sizeof(float));
            memset(&s->avg, 0, sizeof s->avg);
        }
        project_pass(o, s, gamma, s->what, s->vhat, pr);
        co_ogr_avg_update(&s->avgw, beta, pr[0], pr[1]);
        co_ogr_avg_update(&s->avg, beta, pr[2], pr[3]);
        co_ogr_regress(&s->avgw, &s->lambda, &s->p);
        s->theta = pr[0];
        s->move = co_ogr_parabola_step(&s->avgw, pr[0], alpha, clip);
        step_pass(o, s, s->what, s->move, pr[1], perp, neg_gd && s->lambda < 0, 0);
        return CO_OK;
    }

    /* Algorithm 7: the coordinate on vhat is measured from the centre c, theta = p.vhat - c.vhat. */
    if (stage_start) {
        double on_old, on_new;
        recenter_pass(o, s, &on_old, &on_new);
        co_ogr_avg_shift(&s->avg, on_old - s->center);
        s->center = on_new;
    }
    project_pass(o, s, gamma, s->vhat, NULL, pr);
    double theta = pr[0] - s->center;
    co_ogr_avg_update(&s->avg, beta, theta, pr[1]);
    co_ogr_regress(&s->avg, &s->lambda, &s->p);
    s->theta = theta;
    s->move = co_ogr_parabola_step(&s->avg, theta, alpha, clip);
    step_pass(o, s, s->vhat, s->move, pr[1], perp, neg_gd && s->lambda < 0, 0);
    return CO_OK;
}

static void ogr_visit(co_optim *o, co_state_visitor *v)
{
    ogr_state *s = o->state;
    co_slots_visit(s->v, o, v, "momentum");
    co_slots_visit(s->vhat, o, v, "direction");
    if (s->what) co_slots_visit(s->what, o, v, "previous_direction");
    v->blob(v, "averages", &s->avg, sizeof s->avg);
    v->blob(v, "previous_averages", &s->avgw, sizeof s->avgw);
    v->blob(v, "center", &s->center, sizeof s->center);
    v->blob(v, "momentum_norm2", &s->vnorm2, sizeof s->vnorm2);
    v->blob(v, "momentum_dot_direction", &s->vdot, sizeof s->vdot);
    v->blob(v, "steps", &s->k, sizeof s->k);
    double last[4] = {s->lambda, s->p, s->theta, s->move};
    v->blob(v, "last_model", last, sizeof last);
    s->lambda = last[0];
    s->p = last[1];
    s->theta = last[2];
    s->move = last[3];
}

static void ogr_free(co_optim *o)
{
    ogr_state *s = o->state;
    co_slots_free(s->v);
    co_slots_free(s->vhat);
    co_slots_free(s->what);
    free(s);
}

/* "lambda", "p", "theta" (coordinate of the point the last step started from) and "move"
 * (the displacement along the direction): the last main-loop step's 1-d model. */
static int ogr_diagnostic(const co_optim *o, const char *name, double *out, int max)
{
    const ogr_state *s = o->state;
    double x;
    if (strcmp(name, "lambda") == 0) x = s->lambda;
    else if (strcmp(name, "p") == 0) x = s->p;
    else if (strcmp(name, "theta") == 0) x = s->theta;
    else if (strcmp(name, "move") == 0) x = s->move;
    else return -1;
    if (max >= 1) out[0] = x;
    return 1;
}

#define G CO_HP_GLOBAL
#define OGR_HPARAMS                                                                                               \
    {"lr", 0.05, 0, 1e3, 0, "eta: momentum-SGD rate of the warm-up and gradient-descent rate off the direction"}, \
    {"alpha", 0.5, 0, 10, CO_HP_MIN_OPEN | G, "trust in the parabola model: fraction of the way to p (eq. 4)"},  \
    {"beta", 0.9, 0, 1, CO_HP_MIN_OPEN | CO_HP_MAX_OPEN | G,                                                      \
     "weight of the OLD average in the four averages and s (paper eq. 3)"},                                       \
    {"gamma", 0.99, 0, 1, CO_HP_MAX_OPEN | G, "momentum v = gamma v + g that chooses the direction"},            \
    {"clip", 0.1, 0, 1e6, CO_HP_MIN_OPEN | G, "epsilon of C(x): largest move along the direction"},             \
    {"warmup", 10, 1, 1e9, CO_HP_INT | G, "m of Algorithm 5: 2m momentum steps before the model is used"},       \
    {"perp", 1, 0, 1, CO_HP_BOOL | G, "gradient descent with rate lr in the remaining directions"},              \
    {"neg_gd", 1, 0, 1, CO_HP_BOOL | CO_HP_SAFEGUARD | G,                                                        \
     "lambda < 0: gradient descent along the direction (Alg. 3's alternative), not eq. 4's sign(lambda) step"},  \
    {"weight_decay", 0, 0, 1e3, 0, "L2 penalty added to the gradient"},                                          \
    {"faithful", 0, 0, 1, CO_HP_BOOL | G, "1: the paper's algorithm as published (every safeguard off)"}

static const co_hparam ogr1d_hp[] = {OGR_HPARAMS};
static const co_hparam ogr1ds_hp[] = {
    OGR_HPARAMS, {"stage", 10, 1, 1e9, CO_HP_INT | G, "m of Algorithm 6: steps between direction switches"}};
static const co_hparam ogr1dc_hp[] = {
    OGR_HPARAMS, {"stage", 1, 1, 1e9, CO_HP_INT | G, "m of Algorithm 7: steps between centre shifts"}};
#undef G

static const co_optim_ops ogr1d_ops = {.init = ogr1d_init, .step = ogr_step, .visit = ogr_visit, .free = ogr_free,
                                       .diagnostic = ogr_diagnostic};
static const co_optim_ops ogr1ds_ops = {.init = ogr1ds_init, .step = ogr_step, .visit = ogr_visit,
                                        .free = ogr_free, .diagnostic = ogr_diagnostic};
static const co_optim_ops ogr1dc_ops = {.init = ogr1dc_init, .step = ogr_step, .visit = ogr_visit,
                                        .free = ogr_free, .diagnostic = ogr_diagnostic};

const co_optim_info co_info_ogr1d = {"ogr1d", "momentum + online parabola in the momentum direction (OGR1d)",
                                     "Duda 2019, arXiv:1907.07063, Algorithms 1-5",
                                     (int)(sizeof ogr1d_hp / sizeof ogr1d_hp[0]), ogr1d_hp, &ogr1d_ops};
const co_optim_info co_info_ogr1ds = {"ogr1ds", "OGR1d with averages kept for the old and new direction (safe)",
                                      "Duda 2019, arXiv:1907.07063, Algorithm 6",
                                      (int)(sizeof ogr1ds_hp / sizeof ogr1ds_hp[0]), ogr1ds_hp, &ogr1ds_ops};
const co_optim_info co_info_ogr1dc = {"ogr1dc", "OGR1d rotating the model about the current point (centred)",
                                      "Duda 2019, arXiv:1907.07063, Algorithm 7",
                                      (int)(sizeof ogr1dc_hp / sizeof ogr1dc_hp[0]), ogr1dc_hp, &ogr1dc_ops};
