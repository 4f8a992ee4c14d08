/* Adam, AdamW and AMSGrad with torch.optim 1.13's single-tensor semantics:
 *   Adam:  g += wd * p (L2), m = b1 m + (1-b1) g, v = b2 v + (1-b2) g^2,
 *          denom = sqrt(v) / sqrt(1 - b2^t) + eps, p -= lr / (1 - b1^t) * m / denom
 *   AdamW: p *= 1 - lr * wd first (decoupled), no L2 term.
 *   AMSGrad: vmax = max(vmax, v) replaces v in denom.
 * The three share one fused kernel; they differ only in defaults. Every operation rounds as
 * torch's does (torch_ops.h), so the trajectories match torch's bit for bit. */
#include "optim_impl.h"
#include "elementwise.h"

enum { HP_LR, HP_BETA1, HP_BETA2, HP_EPS, HP_WD, HP_AMSGRAD, HP_COUNT };

typedef struct {
    co_slots *m, *v, *vmax;
    int decoupled;
} adam_state;

static co_status adam_init_common(co_optim *o, int decoupled, co_error *err)
{
    adam_state *s = calloc(1, sizeof *s);
    if (!s) return co_error_set(err, CO_ENOMEM, "out of memory");
    o->state = s;
    s->decoupled = decoupled;
    s->m = co_slots_new(o, err);
    s->v = co_slots_new(o, err);
    s->vmax = co_slots_new(o, err);
    if (!s->m || !s->v || !s->vmax) return err ? err->code : CO_ENOMEM;
    return CO_OK;
}

static co_status adam_init(co_optim *o, co_error *err) { return adam_init_common(o, 0, err); }
static co_status adamw_init(co_optim *o, co_error *err) { return adam_init_common(o, 1, err); }

/* Scalars arrive rounded to float as torch's CPU kernels round them; a1 = 1 - b1 and
 * a2 = 1 - b2 are formed in double. */
static co_adam_scalars adam_scalars(const co_optim *o, int g)
{
    const adam_state *s = o->state;
    double t = (double)o->t;
    double lr = co_lr(o, g), b1 = co_hp(o, g, HP_BETA1), b2 = co_hp(o, g, HP_BETA2);
    double wd = co_hp(o, g, HP_WD);
    return (co_adam_scalars){.b1 = (float)b1,
                             .a1 = (float)(1.0 - b1),
                             .b2 = (float)b2,
                             .a2 = (float)(1.0 - b2),
                             .eps = (float)co_hp(o, g, HP_EPS),
                             .l2 = s->decoupled ? 0.0f : (float)wd,
                             .decay = s->decoupled ? (float)(1.0 - lr * wd) : 1.0f,
                             .step_size = (float)(lr / (1.0 - pow(b1, t))),
                             .bc2_sqrt = (float)sqrt(1.0 - pow(b2, t)),
                             .amsgrad = co_hp(o, g, HP_AMSGRAD) != 0};
}

static void adam_scalars_of(const co_optim *o, int g, float *out)
{
    co_adam_scalars sc = adam_scalars(o, g);
    memcpy(out, &sc, sizeof sc);
}

static void adam_tensor(float *restrict p, const float *restrict g, float *restrict m, float *restrict v,
                        float *restrict vmax, size_t n, co_adam_scalars s)
{
    /* Two loops rather than a branch inside one: GCC unswitches the branch and then leaves
     * the plain-Adam copy scalar, a 5x slower step (bench/bench_optim_bandwidth). */
    if (s.amsgrad != 0) {
#pragma omp simd
        for (size_t i = 0; i < n; i++) p[i] = co_adam_update(p[i], g[i], &m[i], &v[i], &vmax[i], s, 1);
        return;
    }
#pragma omp simd
    for (size_t i = 0; i < n; i++) p[i] = co_adam_update(p[i], g[i], &m[i], &v[i], &vmax[i], s, 0);
}

static void adam_range(float *p, float *g, float *const *slot, size_t n, const float *scalars)
{
    co_adam_scalars sc;
    memcpy(&sc, scalars, sizeof sc);
    adam_tensor(p, g, slot[0], slot[1], slot[2], n, sc);
}

static co_status adam_step(co_optim *o, const co_closure *c, co_error *err)
{
    (void)c;
    (void)err;
    adam_state *s = o->state;
    co_optim_foreach(o, (co_slots *const[CO_MT_MAX_SLOTS]){s->m, s->v, s->vmax}, adam_scalars_of, adam_range);
    return CO_OK;
}

static co_status adam_step_cuda(co_optim *o, const co_closure *c, co_error *err)
{
    (void)c;
    adam_state *s = o->state;
    return co_optim_mt_step(o, CO_MT_ADAM, (co_slots *const[CO_MT_MAX_SLOTS]){s->m, s->v, s->vmax}, adam_scalars_of,
                            err);
}

static void adam_visit(co_optim *o, co_state_visitor *v)
{
    adam_state *s = o->state;
    co_slots_visit(s->m, o, v, "exp_avg");
    co_slots_visit(s->v, o, v, "exp_avg_sq");
    co_slots_visit(s->vmax, o, v, "max_exp_avg_sq");
}

static void adam_free(co_optim *o)
{
    adam_state *s = o->state;
    co_slots_free(s->m);
    co_slots_free(s->v);
    co_slots_free(s->vmax);
    free(s);
}

#define ADAM_HPARAMS(LR, WD, AMS, WDDOC)                                                          \
    {                                                                                             \
        {"lr", LR, 0, 1e3, 0, "learning rate"},                                                   \
        {"beta1", 0.9, 0, 1, CO_HP_MAX_OPEN, "first-moment decay"},                               \
        {"beta2", 0.999, 0, 1, CO_HP_MAX_OPEN, "second-moment decay"},                            \
        {"eps", 1e-8, 0, 1, 0, "added to sqrt(v_hat) in the denominator"},                        \
        {"weight_decay", WD, 0, 1e3, 0, WDDOC},                                                   \
        {"amsgrad", AMS, 0, 1, CO_HP_BOOL, "use the running maximum of v (AMSGrad)"},             \
    }

static const co_hparam adam_hp[HP_COUNT] = ADAM_HPARAMS(1e-3, 0, 0, "L2 penalty added to the gradient");
static const co_hparam adamw_hp[HP_COUNT] = ADAM_HPARAMS(1e-3, 1e-2, 0, "decoupled decay: p *= 1 - lr*wd");
static const co_hparam amsgrad_hp[HP_COUNT] = ADAM_HPARAMS(1e-3, 0, 1, "L2 penalty added to the gradient");

static const co_optim_ops adam_ops = {
    .init = adam_init, .step = adam_step, .step_cuda = adam_step_cuda, .visit = adam_visit, .free = adam_free};
static const co_optim_ops adamw_ops = {
    .init = adamw_init, .step = adam_step, .step_cuda = adam_step_cuda, .visit = adam_visit, .free = adam_free};

const co_optim_info co_info_adam = {"adam", "Adam (torch.optim.Adam semantics)", "Kingma & Ba 2015; torch.optim 1.13",
                                    HP_COUNT, adam_hp, &adam_ops};
const co_optim_info co_info_adamw = {"adamw", "AdamW, decoupled weight decay (torch.optim.AdamW)",
                                     "Loshchilov & Hutter 2019; torch.optim 1.13", HP_COUNT, adamw_hp, &adamw_ops};
const co_optim_info co_info_amsgrad = {"amsgrad", "Adam with amsgrad=True (torch.optim.Adam)",
                                       "Reddi et al. 2018; torch.optim 1.13", HP_COUNT, amsgrad_hp, &adam_ops};
