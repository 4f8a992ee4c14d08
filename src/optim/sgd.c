/* SGD with torch.optim.SGD 1.13 semantics: d = g + wd p; the momentum buffer starts as d
 * on its first step (no dampening then), afterwards buf = mu buf + (1 - dampening) d;
 * Nesterov uses d + mu buf; p -= lr * d. Each operation rounds as torch's does
 * (torch_ops.h), so the trajectories match torch's bit for bit. */
#include "optim_impl.h"
#include "torch_ops.h"

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

/* keep = 1 - dampening, formed in double as torch's alpha=1 - dampening. */
static void sgd_tensor(float *restrict p, const float *restrict g, float *restrict buf, size_t n, float lr,
                       float mu, float keep, float wd, int nesterov, int first)
{
    if (mu == 0) {
#pragma omp parallel for simd schedule(static) if (n > 65536)
        for (size_t i = 0; i < n; i++) p[i] = co_torch_add(p[i], co_torch_add(g[i], p[i], wd), -lr);
        return;
    }
    /* Every step after the first gets branch-free loops: with the flags tested inside the
     * loop GCC unswitches it and leaves some copies scalar (bench/bench_optim_bandwidth). */
    if (!first && !nesterov) {
#pragma omp parallel for simd schedule(static) if (n > 65536)
        for (size_t i = 0; i < n; i++) {
            float d = co_torch_add(g[i], p[i], wd);
            float b = co_torch_add(buf[i] * mu, d, keep);
            buf[i] = b;
            p[i] = co_torch_add(p[i], b, -lr);
        }
        return;
    }
    if (!first) {
#pragma omp parallel for simd schedule(static) if (n > 65536)
        for (size_t i = 0; i < n; i++) {
            float d = co_torch_add(g[i], p[i], wd);
            float b = co_torch_add(buf[i] * mu, d, keep);
            buf[i] = b;
            p[i] = co_torch_add(p[i], co_torch_add(d, b, mu), -lr);
        }
        return;
    }
    /* The first step: the buffer is a copy of d, without dampening. */
#pragma omp parallel for simd schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; i++) {
        float d = co_torch_add(g[i], p[i], wd);
        buf[i] = d;
        float u = nesterov ? co_torch_add(d, d, mu) : d;
        p[i] = co_torch_add(p[i], u, -lr);
    }
}

static co_status sgd_step(co_optim *o, const co_closure *c, co_error *err)
{
    (void)c;
    (void)err;
    sgd_state *s = o->state;
    for (int g = 0; g < o->ngroups; g++) {
        co_group *gr = &o->groups[g];
        float mu = (float)co_hp(o, g, HP_MOMENTUM);
        int first = mu != 0 && !s->started[g];
        for (int k = 0; k < gr->ntensors; k++)
            sgd_tensor(gr->param[k], gr->grad[k], co_slot(s->buf, g, k), gr->size[k], (float)co_lr(o, g), mu,
                       (float)(1.0 - co_hp(o, g, HP_DAMPENING)), (float)co_hp(o, g, HP_WD),
                       co_hp(o, g, HP_NESTEROV) != 0, first);
        if (mu != 0) s->started[g] = 1;
    }
    return CO_OK;
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
static const co_optim_ops sgd_ops = {.init = sgd_init, .step = sgd_step, .visit = sgd_visit, .free = sgd_free};
const co_optim_info co_info_sgd = {"sgd", "SGD with optional momentum / Nesterov (torch.optim.SGD)",
                                   "Robbins & Monro 1951; Sutskever et al. 2013; torch.optim 1.13", HP_COUNT, sgd_hp,
                                   &sgd_ops};
