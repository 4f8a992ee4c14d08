/* Elementwise activations. Sigmoid and tanh use the forward output in backward. */
#include "layers.h"
#include "../core/blas.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

const char *co_act_name(co_act act)
{
    switch (act) {
    case CO_ACT_NONE: return "none";
    case CO_ACT_RELU: return "relu";
    case CO_ACT_SIGMOID: return "sigmoid";
    case CO_ACT_TANH: return "tanh";
    }
    return "?";
}

/* Elementwise, so the threads change no result; below the threshold a parallel region
 * costs more than the pass (and a false `if` clause still costs one: co_run_shared). */
#define ACT_PAR_MIN 16384

typedef struct {
    co_act act;
    float *out;        /* y forward, dx backward */
    const float *a, *b; /* x forward; dy and y backward */
} act_task;

static void forward_range(void *ctx, size_t i0, size_t i1)
{
    const act_task *t = ctx;
    float *y = t->out;
    const float *x = t->a;
    switch (t->act) {
    case CO_ACT_NONE:
        for (size_t i = i0; i < i1; i++) y[i] = x[i];
        break;
    case CO_ACT_RELU:
        for (size_t i = i0; i < i1; i++) y[i] = x[i] > 0.0f ? x[i] : 0.0f;
        break;
    case CO_ACT_SIGMOID:
        /* Split by sign so exp never overflows. */
        for (size_t i = i0; i < i1; i++) {
            if (x[i] >= 0) {
                y[i] = 1.0f / (1.0f + expf(-x[i]));
            } else {
                float e = expf(x[i]);
                y[i] = e / (1.0f + e);
            }
        }
        break;
    case CO_ACT_TANH:
        for (size_t i = i0; i < i1; i++) y[i] = tanhf(x[i]);
        break;
    }
}

static void backward_range(void *ctx, size_t i0, size_t i1)
{
    const act_task *t = ctx;
    float *dx = t->out;
    const float *dy = t->a, *y = t->b;
    switch (t->act) {
    case CO_ACT_NONE:
        for (size_t i = i0; i < i1; i++) dx[i] = dy[i];
        break;
    case CO_ACT_RELU:
        for (size_t i = i0; i < i1; i++) dx[i] = y[i] > 0.0f ? dy[i] : 0.0f;
        break;
    case CO_ACT_SIGMOID:
        for (size_t i = i0; i < i1; i++) dx[i] = dy[i] * y[i] * (1.0f - y[i]);
        break;
    case CO_ACT_TANH:
        for (size_t i = i0; i < i1; i++) dx[i] = dy[i] * (1.0f - y[i] * y[i]);
        break;
    }
}

void co_act_forward(co_act act, float *y, const float *x, size_t n)
{
    act_task t = {act, y, x, NULL};
    co_run_shared(n, n > ACT_PAR_MIN, forward_range, &t);
}

void co_act_backward(co_act act, float *dx, const float *dy, const float *y, size_t n)
{
    act_task t = {act, dx, dy, y};
    co_run_shared(n, n > ACT_PAR_MIN, backward_range, &t);
}

static void act_fwd(co_layer *l, const float *x, float *y, int batch, int train)
{
    (void)train;
    co_act_forward(l->act, y, x, (size_t)batch * l->in_size);
}

static void act_bwd(co_layer *l, const float *x, const float *y, const float *dy, float *dx, int batch)
{
    (void)x;
    if (dx) co_act_backward(l->act, dx, dy, y, (size_t)batch * l->in_size);
}

static void act_describe(const co_layer *l, char *buf, size_t len)
{
    static const char *names[] = {"Identity", "ReLU", "Sigmoid", "Tanh"};
    snprintf(buf, len, "%s", names[l->act]);
}

static const co_layer_ops act_ops = {"activation", act_fwd, act_bwd, NULL, act_describe, NULL, NULL, NULL};

co_layer *co_activation_new(co_act act, int size)
{
    co_layer *l = calloc(1, sizeof *l);
    if (!l) return NULL;
    l->ops = &act_ops;
    l->act = act;
    l->in_size = l->out_size = size;
    return l;
}
