/* SGD with torch.optim.SGD 1.13 semantics: d = g + wd p; the momentum buffer starts as d
 * on its first step (no dampening then), afterwards buf = mu buf + (1 - dampening) d;
 * Nesterov uses d + mu buf; p -= lr * d. Each operation rounds as torch's does
 * (torch_ops.h), so the trajectories match torch's bit for bit. */
#include "optim_impl.h"
#include "elementwise.h"

enum { HP_LR, HP_MOMENTUM, HP_DAMPENING, HP_WD, HP_NESTEROV, HP_COUNT };

typedef struct {
    co_slots *buf;
    uint8_t *started; /* per group: momentum buffer initialised */
} sgd_state;

static co_status sgd_init(co_optim *o, co_error *err)
{
    sgd_state *s = calloc(1, sizeof *s);
    if (!s) return co_error_set(err, CO_ENOMEM, "out of memory");
    o->state = s;
    s->buf = co_slots_new(o, err);
    s->started = calloc((size_t)o->ngroups, 1);
    if (!s->buf || !s->started) return co_error_set(err, CO_ENOMEM, "out of memory");
    for (int g = 0; g < o->ngroups; g++)
        if (co_hp(o, g, HP_NESTEROV) != 0 && (co_hp(o, g, HP_MOMENTUM) <= 0 || co_hp(o, g, HP_DAMPENING) != 0))
            return co_error_set(err, CO_EINVAL, "sgd: nesterov needs momentum > 0 and dampening = 0");
    return CO_OK;
}

static co_sgd_scalars sgd_scalars(const co_optim *o, const sgd_state *s, int g)
{
    float mu = (float)co_hp(o, g, HP_MOMENTUM);
    return (co_sgd_scalars){.lr = (float)co_lr(o, g),
                            .mu = mu,
                            .keep = (float)(1.0 - co_hp(o, g, HP_DAMPENING)),
                            .wd = (float)co_hp(o, g, HP_WD),
                            .momentum = mu != 0,
                            .first = mu != 0 && !s->started[g],
                            .nesterov = co_hp(o, g, HP_NESTEROV) != 0};
}

static void sgd_scalars_of(const co_optim *o, int g, float *out)
{
    co_sgd_scalars sc = sgd_scalars(o, o->state, g);
    memcpy(out, &sc, sizeof sc);
}

/* One loop per combination of flags, each with constants for them (elementwise.h). */
static void sgd_tensor(float *restrict p, const float *restrict g, float *restrict buf, size_t n, co_sgd_scalars s)
{
#define SGD_LOOP(MOMENTUM, FIRST, NESTEROV)                                                         \
    {                                                                                               \
        _Pragma("omp simd") for (size_t i = 0; i < n; i++) p[i] =                                   \
            co_sgd_update(p[i], g[i], &buf[i], s, MOMENTUM, FIRST, NESTEROV);                       \
        return;                                                                                     \
    }
    if (s.momentum == 0) SGD_LOOP(0, 0, 0)
    if (s.first != 0) SGD_LOOP(1, 1, s.nesterov != 0)
    if (s.nesterov != 0) SGD_LOOP(1, 0, 1)
    SGD_LOOP(1, 0, 0)
#undef SGD_LOOP
}

static void sgd_range(float *p, float *g, float *const *slot, size_t n, const float *scalars)
{
    co_sgd_scalars sc;
    memcpy(&sc, scalars, sizeof sc);
    sgd_tensor(p, g, slot[0], n, sc);
}

static void sgd_started(const co_optim *o, sgd_state *s)
{
    for (int g = 0; g < o->ngroups; g++)
        if (co_hp(o, g, HP_MOMENTUM) != 0) s->started[g] = 1;
}

static co_status sgd_step(co_optim *o, const co_closure *c, co_error *err)
{
    (void)c;
    (void)err;
    sgd_state *s = o->state;
    co_optim_foreach(o, (co_slots *const[CO_MT_MAX_SLOTS]){s->buf}, sgd_scalars_of, sgd_range);
    sgd_started(o, s);
    return CO_OK;
}

static co_status sgd_step_cuda(co_optim *o, const co_closure *c, co_error *err)
{
    (void)c;
    sgd_state *s = o->state;
    co_status st = co_optim_mt_step(o, CO_MT_SGD, (co_slots *const[CO_MT_MAX_SLOTS]){s->buf}, sgd_scalars_of, err);
    sgd_started(o, s);
    return st;
}

static void sgd_visit(co_optim *o, co_state_visitor *v)
{
    sgd_state *s = o->state;
    co_slots_visit(s->buf, o, v, "momentum_buffer");
    v->blob(v, "momentum_started", s->started, (size_t)o->ngroups);
}

static void sgd_free(co_optim *o)
{
    sgd_state *s = o->state;
    co_slots_free(s->buf);
    free(s->started);
    free(s);
}

static const co_hparam sgd_hp[HP_COUNT] = {
    {"lr", 1e-2, 0, 1e3, 0, "learning rate (torch has no default; 1e-2 here)"},
    {"momentum", 0, 0, 1, 0, "momentum factor mu"},
    {"dampening", 0, 0, 1, 0, "dampening of the gradient in the momentum buffer"},
    {"weight_decay", 0, 0, 1e3, 0, "L2 penalty added to the gradient"},
    {"nesterov", 0, 0, 1, CO_HP_BOOL, "Nesterov momentum (needs momentum > 0, dampening 0)"},
};
static const co_optim_ops sgd_ops = {
    .init = sgd_init, .step = sgd_step, .step_cuda = sgd_step_cuda, .visit = sgd_visit, .free = sgd_free};
const co_optim_info co_info_sgd = {"sgd", "SGD with optional momentum / Nesterov (torch.optim.SGD)",
                                   "Robbins & Monro 1951; Sutskever et al. 2013; torch.optim 1.13", HP_COUNT, sgd_hp,
                                   &sgd_ops};
