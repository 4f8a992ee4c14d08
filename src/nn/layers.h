/* Layers as forward/backward pairs over flat float arrays (row-major, batch first), and
 * the layer object the model sequences. Backward writes parameter gradients (it does not
 * accumulate) and writes dx only when dx is non-NULL. */
#ifndef CO_NN_LAYERS_H
#define CO_NN_LAYERS_H

#include "curvopt.h"

/* y[B,OC] = x[B,IC] W[OC,IC]^T + b[OC] */
void co_linear_forward(float *y, const float *x, const float *w, const float *b, int batch, int in, int out);
/* dx = dy W; dW = dy^T x; db = column sums of dy */
void co_linear_backward(float *dx, float *dw, float *db, const float *dy, const float *x, const float *w,
                        int batch, int in, int out);

void co_act_forward(co_act act, float *y, const float *x, size_t n);
/* dx from dy and the forward output y (every supported activation's derivative is a
 * function of its output). */
void co_act_backward(co_act act, float *dx, const float *dy, const float *y, size_t n);
const char *co_act_name(co_act act);

typedef struct co_layer co_layer;
typedef struct co_layer_ops {
    const char *kind;
    void (*forward)(co_layer *l, const float *x, float *y, int batch, int train);
    void (*backward)(co_layer *l, const float *x, const float *y, const float *dy, float *dx, int batch);
    void (*init)(co_layer *l, co_rng *r);
    void (*describe)(const co_layer *l, char *buf, size_t len);
    void (*free)(co_layer *l);
} co_layer_ops;

struct co_layer {
    const co_layer_ops *ops;
    int in_size, out_size; /* per sample */
    int ntensors;          /* parameter tensors: 0 for activations */
    float *param[2], *grad[2];
    size_t size[2];
    co_group_kind group_kind;
    int rows, cols;
    co_act act; /* activation layers */
};

co_layer *co_linear_new(int in, int out);
co_layer *co_activation_new(co_act act, int size);
void co_layer_free(co_layer *l);

#endif
