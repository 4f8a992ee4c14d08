/* What the C side of the library asks of the CUDA backend: device memory, copies, and the
 * fused multi-tensor kernels of the per-coordinate optimizers. Plain C, so optim/ and core/
 * call it without CUDA headers; runtime.cu and optim_kernels.cu answer it in a CUDA build,
 * none.c (every call fails with "built without CUDA") in the others. A stream argument is a
 * cudaStream_t; NULL is the calling thread's default stream (nvcc --default-stream
 * per-thread), which CUDA graphs can capture. */
#ifndef CO_CUDA_API_H
#define CO_CUDA_API_H

#include "curvopt.h"

#ifdef __cplusplus
extern "C" {
#endif

/* 1 when the kernels' CO_TORCH_MADD is a fused multiply-add (torch_ops.h). */
int co_cuda_torch_fma(void);

/* Zeroed device memory; co_cuda_free(NULL) does nothing. */
void *co_cuda_alloc(size_t bytes, co_error *err);
void co_cuda_free(void *p);
/* bytes from src to dst, either of which may be host or device memory (unified addressing);
 * returns once the copy is done (the stream's earlier work first). */
co_status co_cuda_copy(void *dst, const void *src, size_t bytes, void *stream, co_error *err);
co_status co_cuda_memset_float(float *dst, float value, size_t n, void *stream, co_error *err);
co_status co_cuda_sync(void *stream, co_error *err);

/* The kernels' kinds: the per-coordinate methods (elementwise.h), the step driver's
 * gradient scaling (maximize's negation, clipping: g *= scalar 0 of the group, groups whose
 * factor is 1 untouched) and L2 as a pass of its own (co_l2_scalars: g += wd p, groups with
 * on = 0 untouched). */
typedef enum co_mt_kind {
    CO_MT_SGD = 0,
    CO_MT_ADAM,
    CO_MT_RMSPROP,
    CO_MT_ADAGRAD,
    CO_MT_SCALE,
    CO_MT_OGR_ASGD,
    CO_MT_OGR_ASGDC,
    CO_MT_L2
} co_mt_kind;

/* The most slots one kind's update reads and writes (ogr-asgdc's six); a kind's kernel loads
 * and stores only the slots it uses. */
#define CO_MT_MAX_SLOTS 6

/* One tensor of the kernels' table: parameter, gradient, up to CO_MT_MAX_SLOTS slots (NULL
 * if unused), size, and the group whose scalars apply. */
typedef struct co_mt_tensor {
    float *p, *g, *s[CO_MT_MAX_SLOTS];
    size_t n;
    int group;
} co_mt_tensor;

/* The table on the device, cut into chunks of a fixed size that the launches share out. */
typedef struct co_mt_plan co_mt_plan;
co_mt_plan *co_mt_plan_new(const co_mt_tensor *tensors, int ntensors, co_error *err);
void co_mt_plan_free(co_mt_plan *plan);
/* One kernel launch per up to CO_MT_GROUPS_PER_LAUNCH groups (the scalars travel as kernel
 * arguments, so a launch needs no copy and a graph can hold it): scalars is ngroups x
 * CO_ELEM_NSCALAR floats. Asynchronous. */
#define CO_MT_GROUPS_PER_LAUNCH 512
co_status co_mt_launch(co_mt_plan *plan, co_mt_kind kind, const float *scalars, int ngroups, void *stream,
                       co_error *err);
/* Sum of the squares of every gradient in the plan, accumulated in double (clipping's norm);
 * waits for the result. */
co_status co_mt_grad_sumsq(co_mt_plan *plan, void *stream, double *out, co_error *err);

/* ------------------------------------------------------------ layers (layers.cu) */

typedef struct co_layer co_layer;
/* A model's device resources: its stream, a cuBLAS and a cuDNN handle, their scratch. */
typedef struct co_cuda_nn co_cuda_nn;
co_cuda_nn *co_cuda_nn_new(void *stream, co_error *err);
void co_cuda_nn_free(co_cuda_nn *nn);
void *co_cuda_nn_stream(const co_cuda_nn *nn);
/* Counts the reallocations of nn's scratch (co_model_device_generation). */
unsigned long co_cuda_nn_generation(const co_cuda_nn *nn);

/* A layer's forward and backward over device buffers (the CPU's contracts, src/nn/layers.h),
 * and the release of what it keeps in l->cuda. */
typedef struct co_cuda_layer_ops {
    co_status (*forward)(co_layer *l, co_cuda_nn *nn, const float *x, float *y, int batch, int train, co_error *err);
    co_status (*backward)(co_layer *l, co_cuda_nn *nn, const float *x, const float *y, const float *dy, float *dx,
                          int batch, co_error *err);
    void (*release)(co_layer *l);
    /* Layer state kept on the GPU (batch norm's running statistics): to_host 1 copies it into
     * the layer's state (ops->state), 0 copies the layer's state to the GPU. */
    co_status (*sync_state)(co_layer *l, int to_host, co_error *err);
} co_cuda_layer_ops;
/* The device implementation of l, or NULL where it has none (a kind or an option cuDNN does
 * not offer). */
const co_cuda_layer_ops *co_cuda_layer_ops_for(const co_layer *l);

/* ------------------------------------------------------------ training (train_kernels.cu) */

/* dst[i, :] = src[idx[i], :] for i < n, rows of dim floats. */
co_status co_cuda_gather_rows(float *dst, const float *src, const int *idx, int n, int dim, void *stream,
                              co_error *err);
/* The batch's mean loss as co_loss computes it (kind, batch x dim outputs, targets y), its
 * gradient into dout, and, when the pointers are set, the loss's SUM over the batch added to
 * *loss_sum and the number of correct predictions added to *correct (device doubles: an
 * epoch's totals stay on the GPU until they are read). Sums go in a fixed order. */
co_status co_cuda_loss(co_loss_kind kind, const float *out, const float *y, int batch, int dim, float *dout,
                       double *loss_sum, double *correct, double *scratch, void *stream, co_error *err);
/* Doubles of device scratch co_cuda_loss needs for a batch. */
size_t co_cuda_loss_scratch(int batch);

/* CUDA graphs: what this thread queues on stream between begin and end is recorded, not run
 * (no synchronisation may happen in between); launch replays it. */
typedef struct co_cuda_graph co_cuda_graph;
co_status co_cuda_graph_begin(void *stream, co_error *err);
co_cuda_graph *co_cuda_graph_end(void *stream, co_error *err);
co_status co_cuda_graph_launch(co_cuda_graph *g, void *stream, co_error *err);
void co_cuda_graph_free(co_cuda_graph *g);
/* Forgets the runtime's last error (after an abandoned capture). */
void co_cuda_clear_error(void);

#ifdef __cplusplus
}
#endif
#endif
