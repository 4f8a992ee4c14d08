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
    /* Optional: K-FAC statistics of the last forward/backward (conv layers: im2col patches
     * and per-position output gradients). Linear layers need none: the model's own buffers
     * are their input and output gradient. */
    int (*capture)(const co_layer *l, co_capture *out);
    /* Optional: state beyond the parameters that a checkpoint must keep (dropout's RNG
     * stream): a pointer to it and its size. */
    void *(*state)(co_layer *l, size_t *bytes);
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
    int in_c, in_h, in_w, out_c, out_h, out_w; /* image shapes (1 x 1 x size for flat layers) */
    void *impl; /* layer-specific buffers */
};

co_layer *co_linear_new(int in, int out);

/* Conv2d over NCHW: kernel k x k, stride, zero padding, dilation; im2col + one SGEMM over
 * the whole batch. Weight OC x (IC k k), bias OC (torch's layout and default init). */
co_layer *co_conv2d_new(int in_c, int in_h, int in_w, int out_c, int k, int stride, int pad, int dilation);
/* Max pooling k x k with the given stride (no padding), and the batch-flat identity. */
co_layer *co_maxpool2d_new(int c, int h, int w, int k, int stride);
co_layer *co_flatten_new(int c, int h, int w);
/* Average pooling k x k with the given stride (no padding); k = h = w is the global
 * average pool. */
co_layer *co_avgpool2d_new(int c, int h, int w, int k, int stride);
/* Inverted dropout as torch: in training each element is zeroed with probability p and the
 * others scaled by 1/(1-p), the mask drawn from the layer's own CO_STREAM_DROPOUT stream
 * (seeded by co_model_init, kept in checkpoints); identity in eval mode. */
co_layer *co_dropout_new(int size, double p);

/* im2col of one batch: rows = (sample, output position), columns = (channel, ky, kx). */
void co_im2col(float *col, const float *x, int batch, int c, int h, int w, int k, int stride, int pad, int dil,
               int oh, int ow);
/* The adjoint: accumulates dcol back into dx (dx zeroed first). */
void co_col2im(float *dx, const float *dcol, int batch, int c, int h, int w, int k, int stride, int pad, int dil,
               int oh, int ow);
co_layer *co_activation_new(co_act act, int size);
void co_layer_free(co_layer *l);

#endif
