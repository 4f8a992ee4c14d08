/* Quasi-Adam (paper 003): Adam's step plus an L-BFGS step from the last secant pair(s),
 *   theta_{t+1} = theta_t - alpha_t (m_hat / (sqrt(v_hat) + eps) + H_t g_t)      (eq. 10)
 * with H_t the compact L-BFGS inverse Hessian (eq. 8-9) of s = theta_t - theta_{t-1},
 * y = g_t - g_{t-1}, taken over all parameters at once (one global pair, as eq. 6-9 write
 * it for the whole vector Theta). The pair is used only when s'y >= eps_curv; otherwise the
 * step is Adam's, bit for bit. memory > 1 keeps the last accepted pairs (compact form in
 * lbfgs_compact.c). variant=1 follows the authors' published code instead
 * (docs/optimizers/quasi-adam.md): per tensor, y from first moments, H applied to m_t and
 * replacing Adam's step. */
#include "lbfgs_compact.h"
#include "optim_impl.h"
#include "torch_ops.h"

#include <math.h>
#include <string.h>

enum { HP_LR, HP_BETA1, HP_BETA2, HP_EPS, HP_EPS_CURV, HP_MEMORY, HP_LR_DECAY_SQRT, HP_VARIANT, HP_FAITHFUL, HP_COUNT };

enum { VARIANT_PAPER = 0, VARIANT_AUTHORS_CODE = 1 };

#define QUASI_MAX_MEMORY 64

typedef struct {
    int memory, variant; /* fixed at creation: they decide the storage */
    co_slots *m, *v;
    co_slots *prev_param; /* theta_{t-1} */
    co_slots *prev_grad;  /* g_{t-1} (variant 1: m_{t-1}) */
    co_slots *S[QUASI_MAX_MEMORY], *Y[QUASI_MAX_MEMORY]; /* memory > 1: the accepted pairs */
    co_lbfgs_mem mem;
    double sg[QUASI_MAX_MEMORY], yg[QUASI_MAX_MEMORY], a[QUASI_MAX_MEMORY], b[QUASI_MAX_MEMORY];
    double s_dot_y[QUASI_MAX_MEMORY], y_dot_y[QUASI_MAX_MEMORY];
    uint64_t have_prev, pairs, accepted;
    double last[4]; /* accepted (fraction of pairs in the last step), gamma, s'y, y'y */
} quasi_state;

static co_status quasi_init(co_optim *o, co_error *err)
{
    quasi_state *s = calloc(1, sizeof *s);
    if (!s) return co_error_set(err, CO_ENOMEM, "out of memory");
    o->state = s;
    s->memory = (int)co_hp(o, 0, HP_MEMORY);
    s->variant = (int)co_hp(o, 0, HP_VARIANT);
    if (s->variant == VARIANT_AUTHORS_CODE && s->memory != 1)
        return co_error_set(err, CO_EINVAL, "quasi-adam: variant=1 (the authors' code) has memory 1, got memory=%d",
                            s->memory);
    s->m = co_slots_new(o, err);
    s->v = co_slots_new(o, err);
    s->prev_param = co_slots_new(o, err);
    s->prev_grad = co_slots_new(o, err);
    if (!s->m || !s->v || !s->prev_param || !s->prev_grad) return err ? err->code : CO_ENOMEM;
    if (s->memory > 1) {
        co_status st = co_lbfgs_mem_init(&s->mem, s->memory, err);
        if (st) return st;
        for (int j = 0; j < s->memory; j++) {
            s->S[j] = co_slots_new(o, err);
            s->Y[j] = co_slots_new(o, err);
            if (!s->S[j] || !s->Y[j]) return err ? err->code : CO_ENOMEM;
        }
    }
    return CO_OK;
}

static double step_lr(const co_optim *o, int g)
{
    double lr = co_lr(o, g);
    return co_hp(o, 0, HP_LR_DECAY_SQRT) != 0 ? lr / sqrt((double)o->t) : lr;
}

/* Adam's scalars exactly as adam.c computes them. */
static void adam_scalars(const co_optim *o, int g, float *step_size, float *bc2_sqrt)
{
    double t = (double)o->t;
    double bc1 = 1.0 - pow(co_hp(o, g, HP_BETA1), t), bc2 = 1.0 - pow(co_hp(o, g, HP_BETA2), t);
    *step_size = (float)(step_lr(o, g) / bc1);
    *bc2_sqrt = (float)sqrt(bc2);
}

/* ------------------------------------------------------------ paper text (variant 0) */

/* Dot products of the candidate pair with itself and g, and of the stored pairs with g. */
static void pair_dots(co_optim *o, double *sy, double *yy, double *sg, double *yg)
{
    quasi_state *s = o->state;
    double a = 0, b = 0, c = 0, d = 0;
    int stored = s->memory > 1 ? s->mem.count : 0;
    for (int j = 0; j < stored; j++) s->sg[j] = s->yg[j] = 0;
    for (int g = 0; g < o->ngroups; g++)
        for (int k = 0; k < o->groups[g].ntensors; k++) {
            const float *p = o->groups[g].param[k], *gr = o->groups[g].grad[k];
            const float *pp = co_slot(s->prev_param, g, k), *gp = co_slot(s->prev_grad, g, k);
            size_t n = o->groups[g].size[k];
            double ta = 0, tb = 0, tc = 0, td = 0;
#pragma omp simd reduction(+ : ta, tb, tc, td)
            for (size_t i = 0; i < n; i++) {
                double si = (double)(p[i] - pp[i]), yi = (double)(gr[i] - gp[i]);
                ta += si * yi;
                tb += yi * yi;
                tc += si * gr[i];
                td += yi * gr[i];
            }
            a += ta;
            b += tb;
            c += tc;
            d += td;
            for (int q = 0; q < stored; q++) {
                int j = co_lbfgs_mem_slot(&s->mem, q);
                const float *S = co_slot(s->S[j], g, k), *Y = co_slot(s->Y[j], g, k);
                double x = 0, z = 0;
#pragma omp simd reduction(+ : x, z)
                for (size_t i = 0; i < n; i++) {
                    x += (double)S[i] * gr[i];
                    z += (double)Y[i] * gr[i];
                }
                s->sg[j] += x;
                s->yg[j] += z;
            }
        }
    *sy = a;
    *yy = b;
    *sg = c;
    *yg = d;
}

/* memory > 1: stores the accepted pair in the ring and its dots with the stored ones. */
static void push_pair(co_optim *o, double sy, double yy, double sg, double yg)
{
    quasi_state *s = o->state;
    int slot = co_lbfgs_mem_next_slot(&s->mem);
    int stored = s->mem.count;
    for (int j = 0; j < s->memory; j++) s->s_dot_y[j] = s->y_dot_y[j] = 0;
    for (int g = 0; g < o->ngroups; g++)
        for (int k = 0; k < o->groups[g].ntensors; k++) {
            const float *p = o->groups[g].param[k], *gr = o->groups[g].grad[k];
            const float *pp = co_slot(s->prev_param, g, k), *gp = co_slot(s->prev_grad, g, k);
            float *Sn = co_slot(s->S[slot], g, k), *Yn = co_slot(s->Y[slot], g, k);
            size_t n = o->groups[g].size[k];
            for (size_t i = 0; i < n; i++) {
                Sn[i] = p[i] - pp[i];
                Yn[i] = gr[i] - gp[i];
            }
            for (int q = 0; q < stored; q++) {
                int j = co_lbfgs_mem_slot(&s->mem, q);
                if (j == slot) continue; /* the oldest pair, being replaced */
                const float *S = co_slot(s->S[j], g, k), *Y = co_slot(s->Y[j], g, k);
                double x = 0, z = 0;
#pragma omp simd reduction(+ : x, z)
                for (size_t i = 0; i < n; i++) {
                    x += (double)S[i] * Yn[i];
                    z += (double)Y[i] * Yn[i];
                }
                s->s_dot_y[j] += x;
                s->y_dot_y[j] += z;
            }
        }
    co_lbfgs_mem_push(&s->mem, s->s_dot_y, s->y_dot_y, sy, yy);
    s->sg[slot] = sg;
    s->yg[slot] = yg;
}

/* Adam's step alone (no usable pair), operation for operation as adam.c; also records
 * theta_t and g_t for the next pair. */
static void adam_only(float *restrict p, const float *restrict g, float *restrict m, float *restrict v,
                      float *restrict pp, float *restrict gp, size_t n, double beta1, double beta2, float eps,
                      float step_size, float bc2_sqrt)
{
    const float b1 = (float)beta1, a1 = (float)(1.0 - beta1), b2 = (float)beta2, a2 = (float)(1.0 - beta2);
    for (size_t i = 0; i < n; i++) {
        float gi = g[i];
        float mi = co_adam_first_moment(m[i], gi, b1, a1);
        float vi = co_adam_second_moment(v[i], gi, b2, a2);
        m[i] = mi;
        v[i] = vi;
        pp[i] = p[i];
        gp[i] = gi;
        p[i] = co_adam_param(p[i], mi, vi, bc2_sqrt, eps, step_size);
    }
}

/* Eq. 10 with memory 1: H g = gamma g + cs s + cy y, s and y formed on the fly. */
static void adam_plus_lbfgs1(float *restrict p, const float *restrict g, float *restrict m, float *restrict v,
                             float *restrict pp, float *restrict gp, size_t n, double beta1, double beta2, float eps,
                             float step_size, float bc2_sqrt, float lr, float gamma, float cs, float cy)
{
    const float b1 = (float)beta1, a1 = (float)(1.0 - beta1), b2 = (float)beta2, a2 = (float)(1.0 - beta2);
    for (size_t i = 0; i < n; i++) {
        float gi = g[i];
        float mi = co_adam_first_moment(m[i], gi, b1, a1);
        float vi = co_adam_second_moment(v[i], gi, b2, a2);
        m[i] = mi;
        v[i] = vi;
        float denom = sqrtf(vi) / bc2_sqrt + eps;
        float si = p[i] - pp[i], yi = gi - gp[i];
        float hg = gamma * gi + cs * si + cy * yi;
        pp[i] = p[i];
        gp[i] = gi;
        p[i] = p[i] - step_size * (mi / denom) - lr * hg;
    }
}

static void quasi_step_paper(co_optim *o)
{
    quasi_state *s = o->state;
    int use = 0;
    double gamma = 0, cs = 0, cy = 0;
    s->last[0] = 0;
    if (s->have_prev) {
        double sy, yy, sg, yg;
        pair_dots(o, &sy, &yy, &sg, &yg);
        s->pairs++;
        s->last[2] = sy;
        s->last[3] = yy;
        if (co_lbfgs_pair_ok(sy, yy, co_hp(o, 0, HP_EPS_CURV))) {
            use = 1;
            s->accepted++;
            if (s->memory == 1) {
                co_lbfgs1_coefs(sy, yy, sg, yg, 0, &gamma, &cs, &cy);
            } else {
                push_pair(o, sy, yy, sg, yg);
                co_lbfgs_mem_coefs(&s->mem, s->sg, s->yg, &gamma, s->a, s->b);
            }
        }
        s->last[0] = use;
        s->last[1] = gamma;
    }
    for (int g = 0; g < o->ngroups; g++) {
        co_group *gr = &o->groups[g];
        float step_size, bc2_sqrt;
        adam_scalars(o, g, &step_size, &bc2_sqrt);
        double b1 = co_hp(o, g, HP_BETA1), b2 = co_hp(o, g, HP_BETA2);
        float eps = (float)co_hp(o, g, HP_EPS);
        double lr = step_lr(o, g);
        for (int k = 0; k < gr->ntensors; k++) {
            float *p = gr->param[k], *m = co_slot(s->m, g, k), *v = co_slot(s->v, g, k);
            float *pp = co_slot(s->prev_param, g, k), *gp = co_slot(s->prev_grad, g, k);
            size_t n = gr->size[k];
            if (!use) {
                adam_only(p, gr->grad[k], m, v, pp, gp, n, b1, b2, eps, step_size, bc2_sqrt);
            } else if (s->memory == 1) {
                adam_plus_lbfgs1(p, gr->grad[k], m, v, pp, gp, n, b1, b2, eps, step_size, bc2_sqrt, (float)lr,
                                 (float)gamma, (float)cs, (float)cy);
            } else {
                adam_plus_lbfgs1(p, gr->grad[k], m, v, pp, gp, n, b1, b2, eps, step_size, bc2_sqrt, (float)lr,
                                 (float)gamma, 0.0f, 0.0f);
                for (int q = 0; q < s->mem.count; q++) {
                    int j = co_lbfgs_mem_slot(&s->mem, q);
                    const float *S = co_slot(s->S[j], g, k), *Y = co_slot(s->Y[j], g, k);
                    float fa = (float)(lr * s->a[j]), fb = (float)(lr * s->b[j]);
                    for (size_t i = 0; i < n; i++) p[i] -= fa * S[i] + fb * Y[i];
                }
            }
        }
    }
    s->have_prev = 1;
}

/* ------------------------------------------------------------ the authors' code (variant 1) */

/* Per tensor, as optim/adam.py of aranganath/Adaptive-quasi-Newton-updates: m and v
 * updated first, s = theta_t - theta_{t-1}, y = m_t - m_{t-1}; when s'y passes the test,
 * theta -= lr / (1 - beta1^t) * H m_t (no Adam denominator), otherwise Adam's step. */
static void quasi_step_authors(co_optim *o)
{
    quasi_state *s = o->state;
    int tensors = 0, used = 0;
    for (int g = 0; g < o->ngroups; g++) {
        co_group *gr = &o->groups[g];
        float step_size, bc2_sqrt;
        adam_scalars(o, g, &step_size, &bc2_sqrt);
        float b1 = (float)co_hp(o, g, HP_BETA1), b2 = (float)co_hp(o, g, HP_BETA2), eps = (float)co_hp(o, g, HP_EPS);
        const float a1 = (float)(1.0 - co_hp(o, g, HP_BETA1)), a2 = (float)(1.0 - co_hp(o, g, HP_BETA2));
        for (int k = 0; k < gr->ntensors; k++) {
            float *p = gr->param[k], *m = co_slot(s->m, g, k), *v = co_slot(s->v, g, k);
            float *pp = co_slot(s->prev_param, g, k), *mp = co_slot(s->prev_grad, g, k);
            const float *gg = gr->grad[k];
            size_t n = gr->size[k];
            double sy = 0, yy = 0, sm = 0, ym = 0;
#pragma omp simd reduction(+ : sy, yy, sm, ym)
            for (size_t i = 0; i < n; i++) {
                float gi = gg[i];
                float mi = co_adam_first_moment(m[i], gi, b1, a1);
                m[i] = mi;
                v[i] = co_adam_second_moment(v[i], gi, b2, a2);
                double si = (double)(p[i] - pp[i]), yi = (double)(mi - mp[i]);
                sy += si * yi;
                yy += yi * yi;
                sm += si * mi;
                ym += yi * mi;
            }
            double gamma = 0, cs = 0, cy = 0;
            int use = s->have_prev && co_lbfgs1_coefs(sy, yy, sm, ym, co_hp(o, 0, HP_EPS_CURV), &gamma, &cs, &cy);
            if (s->have_prev) {
                tensors++;
                used += use;
                s->pairs++;
                s->accepted += use;
                s->last[1] = gamma;
                s->last[2] = sy;
                s->last[3] = yy;
            }
            float fg = (float)gamma, fs = (float)cs, fy = (float)cy;
            for (size_t i = 0; i < n; i++) {
                float mi = m[i], pi = p[i];
                if (use) {
                    float si = pi - pp[i], yi = mi - mp[i];
                    p[i] = pi - step_size * (fg * mi + fs * si + fy * yi);
                } else {
                    p[i] = co_adam_param(pi, mi, v[i], bc2_sqrt, eps, step_size);
                }
                pp[i] = pi;
                mp[i] = mi;
            }
        }
    }
    s->last[0] = tensors ? (double)used / tensors : 0;
    s->have_prev = 1;
}

static co_status quasi_step(co_optim *o, const co_closure *c, co_error *err)
{
    (void)c;
    quasi_state *s = o->state;
    if ((int)co_hp(o, 0, HP_MEMORY) != s->memory || (int)co_hp(o, 0, HP_VARIANT) != s->variant)
        return co_error_set(err, CO_EINVAL,
                            "quasi-adam: memory and variant are fixed when the optimizer is created (%d, %d)",
                            s->memory, s->variant);
    if (s->variant == VARIANT_AUTHORS_CODE) quasi_step_authors(o);
    else quasi_step_paper(o);
    return CO_OK;
}

static void quasi_visit(co_optim *o, co_state_visitor *v)
{
    quasi_state *s = o->state;
    co_slots_visit(s->m, o, v, "exp_avg");
    co_slots_visit(s->v, o, v, "exp_avg_sq");
    co_slots_visit(s->prev_param, o, v, "prev_param");
    co_slots_visit(s->prev_grad, o, v, s->variant == VARIANT_AUTHORS_CODE ? "prev_exp_avg" : "prev_grad");
    v->blob(v, "have_prev", &s->have_prev, sizeof s->have_prev);
    v->blob(v, "pairs", &s->pairs, sizeof s->pairs);
    v->blob(v, "accepted", &s->accepted, sizeof s->accepted);
    v->blob(v, "last", s->last, sizeof s->last);
    if (s->memory > 1) {
        char name[32];
        for (int j = 0; j < s->memory; j++) {
            snprintf(name, sizeof name, "s%d", j);
            co_slots_visit(s->S[j], o, v, name);
            snprintf(name, sizeof name, "y%d", j);
            co_slots_visit(s->Y[j], o, v, name);
        }
        size_t mm = (size_t)s->memory * s->memory * sizeof(double);
        v->blob(v, "lbfgs_count", &s->mem.count, sizeof s->mem.count);
        v->blob(v, "lbfgs_head", &s->mem.head, sizeof s->mem.head);
        v->blob(v, "lbfgs_sy", s->mem.sy, mm);
        v->blob(v, "lbfgs_yy", s->mem.yy, mm);
    }
}

static void quasi_free(co_optim *o)
{
    quasi_state *s = o->state;
    co_slots_free(s->m);
    co_slots_free(s->v);
    co_slots_free(s->prev_param);
    co_slots_free(s->prev_grad);
    for (int j = 0; j < QUASI_MAX_MEMORY; j++) {
        co_slots_free(s->S[j]);
        co_slots_free(s->Y[j]);
    }
    co_lbfgs_mem_free(&s->mem);
    free(s);
}

static int quasi_diagnostic(const co_optim *o, const char *name, double *out, int max)
{
    const quasi_state *s = o->state;
    double x;
    if (strcmp(name, "accepted") == 0) x = s->last[0];
    else if (strcmp(name, "gamma") == 0) x = s->last[1];
    else if (strcmp(name, "sy") == 0) x = s->last[2];
    else if (strcmp(name, "yy") == 0) x = s->last[3];
    else if (strcmp(name, "accept_rate") == 0) x = s->pairs ? (double)s->accepted / (double)s->pairs : 0;
    else return -1;
    if (max < 1) return 0;
    out[0] = x;
    return 1;
}

static const co_hparam quasi_hp[HP_COUNT] = {
    {"lr", 1e-3, 0, 1e3, 0, "learning rate alpha (the paper's experiments use 1e-2)"},
    {"beta1", 0.9, 0, 1, CO_HP_MAX_OPEN, "first-moment decay"},
    {"beta2", 0.999, 0, 1, CO_HP_MAX_OPEN, "second-moment decay"},
    {"eps", 1e-8, 0, 1, 0, "added to sqrt(v_hat) in the denominator (torch's placement)"},
    {"eps_curv", 1e-8, 0, 1e30, CO_HP_GLOBAL, "use the L-BFGS term only when s'y >= eps_curv (and s'y > 0)"},
    {"memory", 1, 1, QUASI_MAX_MEMORY, CO_HP_INT | CO_HP_GLOBAL | CO_HP_FIXED, "L-BFGS pairs kept (paper: 1); fixed at creation"},
    {"lr_decay_sqrt", 0, 0, 1, CO_HP_BOOL | CO_HP_GLOBAL, "1: alpha_t = lr / sqrt(t) (Theorem 2's rate)"},
    {"variant", 0, 0, 1, CO_HP_INT | CO_HP_GLOBAL | CO_HP_FIXED,
     "0: paper eq. 10; 1: authors' code (per tensor, y from m, H m_t replaces Adam's step)"},
    {"faithful", 0, 0, 1, CO_HP_BOOL | CO_HP_GLOBAL, "1: the paper's algorithm (no safeguards here: changes nothing)"},
};

static const co_optim_ops quasi_ops = {.init = quasi_init,
                                       .step = quasi_step,
                                       .visit = quasi_visit,
                                       .free = quasi_free,
                                       .diagnostic = quasi_diagnostic};

const co_optim_info co_info_quasi_adam = {"quasi-adam", "Quasi-Adam: Adam step plus a memory-1 L-BFGS step",
                                          "Ranganath et al., ICMLA 2024 (paper 003), eq. 8-10", HP_COUNT, quasi_hp,
                                          &quasi_ops};
