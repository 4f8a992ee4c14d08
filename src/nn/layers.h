/* Layers as forward/backward pairs over flat float arrays (row-major, batch first), and
 * the layer object the model sequences. Backward writes parameter gradients (it does not
 * accumulate) and writes dx only when dx is non-NULL. */
#ifndef CO_NN_LAYERS_H
#define CO_NN_LAYERS_H

#include "curvopt.h"

/* y[B,OC] = x[B,IC] W[OC,IC]^T + b[OC] */
void co_linear_forward(float *y, const float *x, const float *w, const float *b, int batch, int in, int out);
/* dx = dy W; dW = dy^T x; db = column sums of dy. The sums over the batch go by batch
 * blocks (core/blas.h); work holds co_linear_work floats. */
void co_linear_backward(float *dx, float *dw, float *db, const float *dy, const float *x, const float *w,
                        int batch, int in, int out, float *work);
size_t co_linear_work(int batch, int in, int out);

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

#define CO_LAYER_MAX_SUB 8

struct co_layer {
    const co_layer_ops *ops;
    int in_size, out_size; /* per sample */
    int ntensors;          /* parameter tensors: 0 for activations */
    float *param[2], *grad[2];
    size_t size[2];
    co_group_kind group_kind;
    int rows, cols;
    co_act act; /* activation layers */
    int in_c, in_h, in_w, out_c, out_h, out_w; /* image shapes (size x 1 x 1 for flat layers) */
    /* K-FAC statistics are wanted from the next forward/backward (co_model_set_capture).
     * Layers start with it on, so a layer used alone always captures; a model turns it off
     * unless its optimizer needs it, which lets convolutions skip the patch matrix. */
    int capture;
    /* Convolutions: compute on im2col + GEMM even where the direct path applies (tests
     * compare the two paths; 0 everywhere else). */
    int gemm_only;
    /* A composite layer (the residual block) owns its sub-layers and runs them itself; the
     * model reaches their parameters, state and captures through this list. */
    co_layer *sub[CO_LAYER_MAX_SUB];
    int nsub;
    void *impl; /* layer-specific buffers */
    /* Training forwards compute rows [shard_offset, shard_offset + batch) of a minibatch of
     * shard_total samples (co_model_set_shard; 0: the whole minibatch). */
    int shard_offset, shard_total;
    /* A sample's output depends on the other samples (batch norm). Such a layer forms its
     * statistics of a shard with the ranks' collective coll (co_model_set_collective), which
     * every rank must call in the same order: on an empty shard the model runs these layers
     * alone, forward in leaf order and backward in reverse leaf order, so a composite layer
     * runs them in that order too. */
    int couples_batch;
    const co_collective *coll;
    /* Scratch of the batch-block sums (co_layer_work), grown on demand, freed with the layer. */
    float *work;
    size_t work_size;
    /* On a GPU (co_model_to_device): the layer's device resources (src/cuda/layers.cu), and
     * the host buffers its parameters and gradients had, which param/grad replace. */
    void *cuda;
    float *host_param[2], *host_grad[2];
};

co_layer *co_linear_new(int in, int out);

/* Conv2d over NCHW: kernel k x k, stride, zero padding, dilation; im2col + one SGEMM over
 * the whole batch. Weight OC x (IC k k), bias OC (torch's layout and default init). */
co_layer *co_conv2d_new(int in_c, int in_h, int in_w, int out_c, int k, int stride, int pad, int dilation);
/* The same with the bias optional (bias = 0: weight only, one tensor, as torch's bias=False
 * before batch norm). */
co_layer *co_conv2d_new_ex(int in_c, int in_h, int in_w, int out_c, int k, int stride, int pad, int dilation,
                           int bias);
/* ConvTranspose2d over NCHW as torch: weight IC x OC x k x k, bias OC, output
 * (H-1) stride - 2 pad + dilation (k-1) + out_pad + 1 (out_pad < stride or < dilation).
 * Runs as one GEMM over the batch and col2im; backward is im2col and two GEMMs. */
co_layer *co_conv_transpose2d_new(int in_c, int in_h, int in_w, int out_c, int k, int stride, int pad, int out_pad,
                                  int dilation, int bias);
/* BatchNorm2d as torch (eps 1e-5, momentum 0.1): training normalises with the batch
 * statistics (biased variance) and updates the running mean and the running unbiased
 * variance; eval normalises with the running statistics. The running statistics are the
 * layer's state (checkpoints keep them). A flat input of N features (N x 1 x 1) is
 * BatchNorm1d. */
co_layer *co_batchnorm2d_new(int c, int h, int w);
/* torch's defaults, which batch norm on the CPU and on the GPU (cuDNN) both use. */
#define CO_BN_EPS 1e-5
#define CO_BN_MOMENTUM 0.1
/* torchvision's BasicBlock: conv3x3(stride)-BN-ReLU-conv3x3-BN, plus the input (identity)
 * or, when the stride or the channel count changes, a 1x1 conv(stride)-BN projection of
 * it, then ReLU. Convolutions without bias. Sub-layers, in torch's parameter order: conv1,
 * bn1, conv2, bn2[, projection conv, projection bn]. */
co_layer *co_residual_new(int in_c, int in_h, int in_w, int out_c, int stride);
/* log-softmax over each sample's features. */
co_layer *co_logsoftmax_new(int size);
/* Max pooling k x k with the given stride (no padding), and the batch-flat identity. */
co_layer *co_maxpool2d_new(int c, int h, int w, int k, int stride);
/* ceil_mode as torch: a last, partial window is kept when it starts inside the map. */
co_layer *co_maxpool2d_new_ex(int c, int h, int w, int k, int stride, int ceil_mode);
co_layer *co_flatten_new(int c, int h, int w);
/* Average pooling k x k with the given stride (no padding); k = h = w is the global
 * average pool. */
co_layer *co_avgpool2d_new(int c, int h, int w, int k, int stride);
/* Inverted dropout as torch: in training each element is zeroed with probability p and the
 * others scaled by 1/(1-p), the mask drawn from the layer's own CO_STREAM_DROPOUT stream
 * (seeded by co_model_init, kept in checkpoints); identity in eval mode. */
co_layer *co_dropout_new(int size, double p);

/* The geometry a device implementation needs: a convolution's kernel, stride, padding and
 * dilation; a max or average pool's window, stride and ceil mode. */
void co_conv2d_geometry(const co_layer *l, int *k, int *stride, int *pad, int *dil);
void co_pool_geometry(const co_layer *l, int *k, int *stride, int *ceil_mode);

/* im2col of one batch: rows = (sample, output position), columns = (channel, ky, kx). */
void co_im2col(float *col, const float *x, int batch, int c, int h, int w, int k, int stride, int pad, int dil,
               int oh, int ow);
/* The adjoint: accumulates dcol back into dx (dx zeroed first). */
void co_col2im(float *dx, const float *dcol, int batch, int c, int h, int w, int k, int stride, int pad, int dil,
               int oh, int ow);
co_layer *co_activation_new(co_act act, int size);
void co_layer_free(co_layer *l);
/* l's scratch of at least n floats, or NULL when memory runs out (then l's gradients are
 * set to NaN, so the training loop's finiteness check stops the run). */
float *co_layer_work(co_layer *l, size_t n);
/* Allocates param[t] and grad[t] of size[t] floats for every tensor: l, or NULL after
 * freeing l when memory runs out (the end of every constructor). */
co_layer *co_layer_alloc_params(co_layer *l);
/* The layers that hold parameters and state, in order: l itself, or a composite layer's
 * sub-layers flattened. Writes them to out and returns the count, or -1 past max. */
int co_layer_leaves(co_layer *l, co_layer **out, int max);

/* One layer-spec token (docs/models.md) on a c x h x w input: the layer, or NULL when the
 * token or its geometry is invalid. */
co_layer *co_layer_from_spec(const char *token, int c, int h, int w);
/* co_model_backward with the device's errors returned (a GPU model's cuBLAS or cuDNN call
 * can fail where the CPU's cannot). */
co_status co_model_backward_device(co_model *m, const float *dout, co_error *err);
/* Changes whenever a GPU model's buffers or its libraries' scratch move (a CUDA graph that
 * holds the old addresses must be captured again). */
unsigned long co_model_device_generation(const co_model *m);

/* The named architectures co_model_new resolves (model.c), for listings and tests. */
int co_model_preset_count(void);
const char *co_model_preset_name(int i);

#endif
