/* Adagrad with torch.optim.Adagrad 1.13 semantics: g += wd p,
 * clr = lr / (1 + (t - 1) lr_decay), sum += g^2, p -= clr g / (sqrt(sum) + eps);
 * sum starts at initial_accumulator_value (set at creation, as torch reads it in the
 * constructor). Each operation rounds as torch's does (torch_ops.h). */
#include "optim_impl.h"
#include "elementwise.h"

enum { HP_LR, HP_LR_DECAY, HP_WD, HP_INIT_ACC, HP_EPS, HP_COUNT };

typedef struct {
    co_slots *sum;
} adagrad_state;

static co_status adagrad_init(co_optim *o, co_error *err)
{
    adagrad_state *s = calloc(1, sizeof *s);
    if (!s) return co_error_set(err, CO_ENOMEM, "out of memory");
    o->state = s;
    s->sum = co_slots_new(o, err);
    if (!s->sum) return CO_ENOMEM;
    for (int g = 0; g < o->ngroups; g++)
        if (co_slots_fill_group(s->sum, o, g, (float)co_hp(o, g, HP_INIT_ACC), err) != CO_OK) return err ? err->code : CO_ENOMEM;
    return CO_OK;
}

static co_adagrad_scalars adagrad_scalars(const co_optim *o, int g)
{
    return (co_adagrad_scalars){.clr = (float)(co_lr(o, g) / (1.0 + (double)(o->t - 1) * co_hp(o, g, HP_LR_DECAY))),
                                .wd = (float)co_hp(o, g, HP_WD),
                                .eps = (float)co_hp(o, g, HP_EPS)};
}

static void adagrad_scalars_of(const co_optim *o, int g, float *out)
{
    co_adagrad_scalars sc = adagrad_scalars(o, g);
    memcpy(out, &sc, sizeof sc);
}

static void adagrad_tensor(float *restrict p, const float *restrict g, float *restrict sum, size_t n,
                           co_adagrad_scalars s)
{
#pragma omp simd
    for (size_t i = 0; i < n; i++) p[i] = co_adagrad_update(p[i], g[i], &sum[i], s);
}

static void adagrad_range(float *p, float *g, float *const *slot, size_t n, const float *scalars)
{
    co_adagrad_scalars sc;
    memcpy(&sc, scalars, sizeof sc);
    adagrad_tensor(p, g, slot[0], n, sc);
}

static co_status adagrad_step(co_optim *o, const co_closure *c, co_error *err)
{
    (void)c;
    (void)err;
    adagrad_state *s = o->state;
    co_optim_foreach(o, (co_slots *const[CO_MT_MAX_SLOTS]){s->sum}, adagrad_scalars_of, adagrad_range);
    return CO_OK;
}

static co_status adagrad_step_cuda(co_optim *o, const co_closure *c, co_error *err)
{
    (void)c;
    adagrad_state *s = o->state;
    return co_optim_mt_step(o, CO_MT_ADAGRAD, (co_slots *const[CO_MT_MAX_SLOTS]){s->sum}, adagrad_scalars_of, err);
}

static void adagrad_visit(co_optim *o, co_state_visitor *v)
{
    adagrad_state *s = o->state;
    co_slots_visit(s->sum, o, v, "sum");
}

static void adagrad_free(co_optim *o)
{
    adagrad_state *s = o->state;
    co_slots_free(s->sum);
    free(s);
}

static const co_hparam adagrad_hp[HP_COUNT] = {
    {"lr", 1e-2, 0, 1e3, 0, "learning rate"},
    {"lr_decay", 0, 0, 1e3, 0, "lr / (1 + (t-1) lr_decay)"},
    {"weight_decay", 0, 0, 1e3, 0, "L2 penalty added to the gradient"},
    {"initial_accumulator_value", 0, 0, 1e6, 0, "starting value of the sum of squares"},
    {"eps", 1e-10, 0, 1, 0, "added to sqrt(sum)"},
};
static const co_optim_ops adagrad_ops = {.init = adagrad_init,
                                        .step = adagrad_step,
                                        .step_cuda = adagrad_step_cuda,
                                        .visit = adagrad_visit,
                                        .free = adagrad_free};
const co_optim_info co_info_adagrad = {"adagrad", "Adagrad (torch.optim.Adagrad)", "Duchi et al. 2011; torch.optim 1.13",
                                       HP_COUNT, adagrad_hp, &adagrad_ops};
