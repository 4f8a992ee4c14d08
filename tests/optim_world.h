/* The optimizer tests' fake model, shared by test_optim_api.c and test_optim_bindings.c: two
 * linear layers (3x4 and 2x3, each with a bias) under a separable quadratic loss with
 * per-step noise and a per-step scale; the closure re-evaluates it at the current
 * parameters and the capture hands out random activations and output gradients of the
 * right shapes, so methods that need either run as they would in training. */
#ifndef CO_TEST_OPTIM_WORLD_H
#define CO_TEST_OPTIM_WORLD_H

#include "test_util.h"

#include <curvopt.h>
#include <stdint.h>

enum { R0 = 3, C0 = 4, R1 = 2, C1 = 3, BATCH = 8, NP = R0 * C0 + R0 + R1 * C1 + R1, STEPS = 22, EPOCH = 5 };

typedef struct {
    float theta[NP], grad[NP];
    float curv[NP], target[NP], noise[NP];
    float scale; /* the minibatch's loss scale: it rises and falls, so running maxima matter */
    float a0[BATCH * C0], g0[BATCH * R0], a1[BATCH * C1], g1[BATCH * R1];
    float sign; /* 1; -1 hands out the gradients and loss of -f (maximize's tests) */
    int step;
    double loss;
} world;

static inline void world_init(world *w, uint64_t seed)
{
    memset(w, 0, sizeof *w);
    w->sign = 1;
    co_rng r;
    co_rng_seed(&r, seed, 1);
    for (int i = 0; i < NP; i++) {
        w->theta[i] = (float)(2 * co_rng_uniform(&r) - 1);
        w->curv[i] = (float)(0.1 + 2.9 * co_rng_uniform(&r));
        w->target[i] = (float)(2 * co_rng_uniform(&r) - 1);
    }
}

static inline double world_eval(void *ctx)
{
    world *w = ctx;
    double loss = 0;
    for (int i = 0; i < NP; i++) {
        float d = w->theta[i] - w->target[i];
        w->grad[i] = w->sign * w->scale * (w->curv[i] * d + w->noise[i]);
        loss += 0.5 * w->curv[i] * d * d + (double)w->noise[i] * w->theta[i];
    }
    return w->sign * w->scale * loss;
}

static inline int world_capture(void *ctx, int group, co_capture *out)
{
    world *w = ctx;
    if (group == 0) *out = (co_capture){w->a0, w->g0, BATCH, C0, R0, BATCH};
    else if (group == 1) *out = (co_capture){w->a1, w->g1, BATCH, C1, R1, BATCH};
    else return 0;
    return 1;
}

/* A new minibatch: noise and captured statistics depend on the step number alone. */
static inline void world_next_batch(world *w)
{
    w->step++;
    co_rng r;
    co_rng_seed(&r, 4242, (uint64_t)w->step);
    w->scale = (float)pow(0.25, w->step % 5);
    for (int i = 0; i < NP; i++) w->noise[i] = (float)(0.1 * co_rng_normal(&r));
    float *mats[4] = {w->a0, w->g0, w->a1, w->g1};
    int sizes[4] = {BATCH * C0, BATCH * R0, BATCH * C1, BATCH * R1};
    for (int m = 0; m < 4; m++)
        for (int i = 0; i < sizes[m]; i++) mats[m][i] = (float)(2 * co_rng_uniform(&r) - 1);
    w->loss = world_eval(w);
}

/* layers: 1 or 2; cols0 changes the first layer's shape; bias 0 drops the biases. */
static inline int world_groups(world *w, co_group *g, int layers, int cols0, int bias)
{
    int rows[2] = {R0, R1}, cols[2] = {cols0, C1};
    size_t off = 0;
    for (int l = 0; l < layers; l++) {
        size_t nw = (size_t)rows[l] * cols[l];
        g[l] = (co_group){.name = l ? "fc1" : "fc0", .kind = CO_GROUP_LINEAR, .ntensors = bias ? 2 : 1,
                          .rows = rows[l], .cols = cols[l]};
        g[l].param[0] = w->theta + off;
        g[l].grad[0] = w->grad + off;
        g[l].size[0] = nw;
        off += nw;
        if (bias) {
            g[l].param[1] = w->theta + off;
            g[l].grad[1] = w->grad + off;
            g[l].size[1] = (size_t)rows[l];
            off += (size_t)rows[l];
        }
    }
    return layers;
}

static inline co_optim *make_optim(const char *name, world *w, uint64_t seed)
{
    co_group g[2];
    co_error err;
    co_optim *o = co_optim_new(name, g, world_groups(w, g, 2, C0, 1), NULL, seed, &err);
    CHECK(o != NULL, "%s: %s", name, o ? "" : err.msg);
    return o;
}

static inline int run_steps(co_optim *o, world *w, int steps)
{
    co_closure c = {.ctx = w, .eval = world_eval, .capture = world_capture};
    co_error err;
    for (int s = 0; s < steps; s++) {
        world_next_batch(w);
        if (co_optim_step(o, &c, &err) != CO_OK) {
            CHECK(0, "%s step %d: %s", co_optim_info_of(o)->name, w->step, err.msg);
            return 0;
        }
        if (w->step % EPOCH == 0) co_optim_epoch_end(o, w->step / EPOCH, w->loss, NULL);
    }
    return 1;
}

/* The complete state as co_optim_state_write serialises it (caller frees). */

#endif
