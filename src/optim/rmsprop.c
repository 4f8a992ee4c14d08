/* RMSprop with torch.optim.RMSprop 1.13 semantics: g += wd p, v = alpha v + (1-alpha) g^2;
 * centered: a = alpha a + (1-alpha) g, avg = sqrt(v - a^2) else sqrt(v); avg += eps;
 * momentum: buf = mu buf + g / avg, p -= lr buf; otherwise p -= lr g / avg.
 * Each operation rounds as torch's does (torch_ops.h), so the trajectories match torch's
 * bit for bit. DA-RMSprop builds on the element function (co_rmsprop_denom, elementwise.h). */
#include "optim_impl.h"
#include "elementwise.h"

enum { HP_LR, HP_ALPHA, HP_EPS, HP_WD, HP_MOMENTUM, HP_CENTERED, HP_COUNT };

typedef struct {
    co_slots *sq, *avg, *buf;
} rmsprop_state;

static co_status rmsprop_init(co_optim *o, co_error *err)
{
    rmsprop_state *s = calloc(1, sizeof *s);
    if (!s) return co_error_set(err, CO_ENOMEM, "out of memory");
    o->state = s;
    s->sq = co_slots_new(o, err);
    s->avg = co_slots_new(o, err);
    s->buf = co_slots_new(o, err);
    if (!s->sq || !s->avg || !s->buf) return CO_ENOMEM;
    return CO_OK;
}

static co_rmsprop_scalars rmsprop_scalars(const co_optim *o, int g)
{
    float mu = (float)co_hp(o, g, HP_MOMENTUM);
    return (co_rmsprop_scalars){.lr = (float)co_lr(o, g),
                                .alpha = (float)co_hp(o, g, HP_ALPHA),
                                .a = (float)(1.0 - co_hp(o, g, HP_ALPHA)),
                                .eps = (float)co_hp(o, g, HP_EPS),
                                .wd = (float)co_hp(o, g, HP_WD),
                                .mu = mu,
                                .centered = co_hp(o, g, HP_CENTERED) != 0,
                                .momentum = mu > 0};
}

static void rmsprop_scalars_of(const co_optim *o, int g, float *out)
{
    co_rmsprop_scalars sc = rmsprop_scalars(o, g);
    memcpy(out, &sc, sizeof sc);
}

/* Fused so the 16M-parameter step streams each array once. The default (uncentered, no
 * momentum) has a loop of its own with constant flags: with the flags tested inside the loop
 * GCC unswitches it and leaves that copy scalar. */
static void rmsprop_tensor(float *restrict p, const float *restrict g, float *restrict sq, float *restrict avg,
                           float *restrict buf, size_t n, co_rmsprop_scalars s)
{
    if (s.centered == 0 && s.momentum == 0) {
#pragma omp simd
        for (size_t i = 0; i < n; i++) p[i] = co_rmsprop_update(p[i], g[i], &sq[i], &avg[i], &buf[i], s, 0, 0);
        return;
    }
    int centered = s.centered != 0, momentum = s.momentum != 0;
#pragma omp simd
    for (size_t i = 0; i < n; i++) p[i] = co_rmsprop_update(p[i], g[i], &sq[i], &avg[i], &buf[i], s, centered, momentum);
}

static void rmsprop_range(float *p, float *g, float *const *slot, size_t n, const float *scalars)
{
    co_rmsprop_scalars sc;
    memcpy(&sc, scalars, sizeof sc);
    rmsprop_tensor(p, g, slot[0], slot[1], slot[2], n, sc);
}

static co_status rmsprop_step(co_optim *o, const co_closure *c, co_error *err)
{
    (void)c;
    (void)err;
    rmsprop_state *s = o->state;
    co_optim_foreach(o, (co_slots *const[CO_MT_MAX_SLOTS]){s->sq, s->avg, s->buf}, rmsprop_scalars_of, rmsprop_range);
    return CO_OK;
}

static co_status rmsprop_step_cuda(co_optim *o, const co_closure *c, co_error *err)
{
    (void)c;
    rmsprop_state *s = o->state;
    return co_optim_mt_step(o, CO_MT_RMSPROP, (co_slots *const[CO_MT_MAX_SLOTS]){s->sq, s->avg, s->buf},
                            rmsprop_scalars_of, err);
}

static void rmsprop_visit(co_optim *o, co_state_visitor *v)
{
    rmsprop_state *s = o->state;
    co_slots_visit(s->sq, o, v, "square_avg");
    co_slots_visit(s->avg, o, v, "grad_avg");
    co_slots_visit(s->buf, o, v, "momentum_buffer");
}

static void rmsprop_free(co_optim *o)
{
    rmsprop_state *s = o->state;
    co_slots_free(s->sq);
    co_slots_free(s->avg);
    co_slots_free(s->buf);
    free(s);
}

static const co_hparam rmsprop_hp[HP_COUNT] = {
    {"lr", 1e-2, 0, 1e3, 0, "learning rate"},
    {"alpha", 0.99, 0, 1, CO_HP_MAX_OPEN, "smoothing constant of the squared-gradient average"},
    {"eps", 1e-8, 0, 1, 0, "added to the root (outside the square root)"},
    {"weight_decay", 0, 0, 1e3, 0, "L2 penalty added to the gradient"},
    {"momentum", 0, 0, 1, 0, "momentum factor"},
    {"centered", 0, 0, 1, CO_HP_BOOL, "normalise by the variance estimate v - a^2"},
};
static const co_optim_ops rmsprop_ops = {.init = rmsprop_init,
                                        .step = rmsprop_step,
                                        .step_cuda = rmsprop_step_cuda,
                                        .visit = rmsprop_visit,
                                        .free = rmsprop_free};
const co_optim_info co_info_rmsprop = {"rmsprop", "RMSprop (torch.optim.RMSprop)", "Tieleman & Hinton 2012; torch.optim 1.13",
                                       HP_COUNT, rmsprop_hp, &rmsprop_ops};
