/* The layers on a GPU, over the same NCHW float buffers and parameter layouts as the CPU
 * (src/nn): Linear by cuBLAS SGEMM, Conv2d and the pools by cuDNN, the activations, the
 * flatten and the biases as kernels. FP32 throughout: cuBLAS's default math (no TF32) and
 * cuDNN's FMA math, and cuDNN algorithms chosen among its deterministic ones, so a run is
 * the same on every rerun (PyTorch's default allows TF32 convolutions; docs/cuda.md). */
#include "cuda_api.h"
#include "cuda_check.h"
extern "C" {
#include "../nn/layers.h"
}

#include <cublas_v2.h>
#include <cudnn.h>
#include <stdlib.h>
#include <string.h>

struct co_cuda_nn {
    cudaStream_t stream;
    cublasHandle_t blas;
    cudnnHandle_t dnn;
    float *ones; /* the bias gradient's reduction vector (gemv) */
    size_t ones_bytes;
    void *workspace; /* cuDNN's */
    size_t workspace_bytes;
    void *blas_workspace;
    size_t blas_workspace_bytes;
    unsigned long generation; /* counts the reallocations of ones and workspace */
};

static co_status blas_status(cublasStatus_t s, co_error *err, const char *what)
{
    if (s == CUBLAS_STATUS_SUCCESS) return CO_OK;
    return co_error_set(err, s == CUBLAS_STATUS_ALLOC_FAILED ? CO_ENOMEM : CO_EIO, "cuBLAS: %s: status %d", what,
                        (int)s);
}

static co_status dnn_status(cudnnStatus_t s, co_error *err, const char *what)
{
    if (s == CUDNN_STATUS_SUCCESS) return CO_OK;
    return co_error_set(err, CO_EIO, "cuDNN: %s: %s", what, cudnnGetErrorString(s));
}

#define BLAS_TRY(call, what)                                                  \
    do {                                                                      \
        co_status st_ = blas_status((call), err, what);                       \
        if (st_ != CO_OK) return st_;                                         \
    } while (0)
#define DNN_TRY(call, what)                                                   \
    do {                                                                      \
        co_status st_ = dnn_status((call), err, what);                        \
        if (st_ != CO_OK) return st_;                                         \
    } while (0)

extern "C" co_cuda_nn *co_cuda_nn_new(void *stream, co_error *err)
{
    co_cuda_nn *nn = (co_cuda_nn *)calloc(1, sizeof *nn);
    if (!nn) {
        co_error_set(err, CO_ENOMEM, "out of memory");
        return NULL;
    }
    nn->stream = stream ? (cudaStream_t)stream : cudaStreamPerThread;
    if (blas_status(cublasCreate(&nn->blas), err, "creating a handle") != CO_OK ||
        dnn_status(cudnnCreate(&nn->dnn), err, "creating a handle") != CO_OK ||
        blas_status(cublasSetStream(nn->blas, nn->stream), err, "setting the stream") != CO_OK ||
        blas_status(cublasSetMathMode(nn->blas, CUBLAS_DEFAULT_MATH), err, "FP32 math") != CO_OK ||
        dnn_status(cudnnSetStream(nn->dnn, nn->stream), err, "setting the stream") != CO_OK) {
        co_cuda_nn_free(nn);
        return NULL;
    }
    /* A workspace of cuBLAS's own, so that it never allocates while a graph is captured
     * (32 MiB: what cuBLAS's notes ask for on Hopper). */
    nn->blas_workspace_bytes = (size_t)32 << 20;
    nn->blas_workspace = co_cuda_alloc(nn->blas_workspace_bytes, err);
    if (!nn->blas_workspace ||
        blas_status(cublasSetWorkspace(nn->blas, nn->blas_workspace, nn->blas_workspace_bytes), err,
                    "setting the workspace") != CO_OK) {
        co_cuda_nn_free(nn);
        return NULL;
    }
    return nn;
}

extern "C" void co_cuda_nn_free(co_cuda_nn *nn)
{
    if (!nn) return;
    if (nn->blas) cublasDestroy(nn->blas);
    if (nn->dnn) cudnnDestroy(nn->dnn);
    co_cuda_free(nn->ones);
    co_cuda_free(nn->workspace);
    co_cuda_free(nn->blas_workspace);
    free(nn);
}

extern "C" void *co_cuda_nn_stream(const co_cuda_nn *nn) { return nn->stream; }
extern "C" unsigned long co_cuda_nn_generation(const co_cuda_nn *nn) { return nn->generation; }

/* Makes *buf hold at least `bytes` (*have: what it holds). Growing frees the old buffer,
 * which a captured graph may hold: the GPU is waited for and nn's generation moves on, so the
 * training loop captures again (co_model_device_generation). */
template <class T> static co_status grow(co_cuda_nn *nn, T **buf, size_t *have, size_t bytes, co_error *err)
{
    if (bytes <= *have) return CO_OK;
    CO_CUDA_TRY(cudaStreamSynchronize(nn->stream), err, "growing a device buffer");
    nn->generation++;
    co_cuda_free(*buf);
    *buf = (T *)co_cuda_alloc(bytes, err);
    *have = *buf ? bytes : 0;
    return *buf ? CO_OK : CO_ENOMEM;
}

static co_status need_workspace(co_cuda_nn *nn, size_t bytes, co_error *err)
{
    return grow(nn, &nn->workspace, &nn->workspace_bytes, bytes, err);
}

static co_status need_ones(co_cuda_nn *nn, int n, co_error *err)
{
    size_t bytes = (size_t)n * sizeof(float);
    if (bytes <= nn->ones_bytes) return CO_OK;
    co_status st = grow(nn, &nn->ones, &nn->ones_bytes, bytes, err);
    if (st == CO_OK) st = co_cuda_memset_float(nn->ones, 1.0f, (size_t)n, nn->stream, err);
    if (st != CO_OK) nn->ones_bytes = 0;
    return st;
}

static unsigned blocks_for(size_t n)
{
    size_t b = (n + 255) / 256;
    return b < 8192 ? (unsigned)(b ? b : 1) : 8192u;
}

#define GRID_LOOP(i, n) for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < (n); i += (size_t)gridDim.x * blockDim.x)

/* ------------------------------------------------------------ Linear */

static __global__ void add_bias_rows(float *y, const float *b, int rows, int cols)
{
    GRID_LOOP(i, (size_t)rows * cols) y[i] += b[i % cols];
}

static co_status linear_forward(co_layer *l, co_cuda_nn *nn, const float *x, float *y, int batch, int train,
                                co_error *err)
{
    (void)train;
    const float one = 1, zero = 0;
    int in = l->in_size, out = l->out_size;
    /* Row-major y[B,out] = x[B,in] W[out,in]^T is column-major y^T = W x^T. */
    BLAS_TRY(cublasSgemm(nn->blas, CUBLAS_OP_T, CUBLAS_OP_N, out, batch, in, &one, l->param[0], in, x, in, &zero, y,
                         out),
             "linear forward");
    add_bias_rows<<<blocks_for((size_t)batch * out), 256, 0, nn->stream>>>(y, l->param[1], batch, out);
    return co_cuda_status(cudaGetLastError(), err, "linear bias");
}

static co_status linear_backward(co_layer *l, co_cuda_nn *nn, const float *x, const float *y, const float *dy,
                                 float *dx, int batch, co_error *err)
{
    (void)y;
    const float one = 1, zero = 0;
    int in = l->in_size, out = l->out_size;
    co_status st = need_ones(nn, batch, err);
    if (st != CO_OK) return st;
    if (dx)
        BLAS_TRY(cublasSgemm(nn->blas, CUBLAS_OP_N, CUBLAS_OP_N, in, batch, out, &one, l->param[0], in, dy, out,
                             &zero, dx, in),
                 "linear dx");
    BLAS_TRY(cublasSgemm(nn->blas, CUBLAS_OP_N, CUBLAS_OP_T, in, out, batch, &one, x, in, dy, out, &zero,
                         l->grad[0], in),
             "linear dW");
    BLAS_TRY(cublasSgemv(nn->blas, CUBLAS_OP_N, out, batch, &one, dy, out, nn->ones, 1, &zero, l->grad[1], 1),
             "linear db");
    return CO_OK;
}

/* ------------------------------------------------------------ activations, flatten */

static __global__ void act_forward(int act, float *y, const float *x, size_t n)
{
    GRID_LOOP(i, n)
    {
        float v = x[i];
        if (act == CO_ACT_RELU)
            v = v > 0.0f ? v : 0.0f;
        else if (act == CO_ACT_SIGMOID)
            v = v >= 0 ? 1.0f / (1.0f + expf(-v)) : expf(v) / (1.0f + expf(v));
        else if (act == CO_ACT_TANH)
            v = tanhf(v);
        y[i] = v;
    }
}

static __global__ void act_backward(int act, float *dx, const float *dy, const float *y, size_t n)
{
    GRID_LOOP(i, n)
    {
        float d = dy[i];
        if (act == CO_ACT_RELU)
            d = y[i] > 0.0f ? d : 0.0f;
        else if (act == CO_ACT_SIGMOID)
            d = d * y[i] * (1.0f - y[i]);
        else if (act == CO_ACT_TANH)
            d = d * (1.0f - y[i] * y[i]);
        dx[i] = d;
    }
}

static co_status activation_forward(co_layer *l, co_cuda_nn *nn, const float *x, float *y, int batch, int train,
                                    co_error *err)
{
    (void)train;
    size_t n = (size_t)batch * l->in_size;
    act_forward<<<blocks_for(n), 256, 0, nn->stream>>>((int)l->act, y, x, n);
    return co_cuda_status(cudaGetLastError(), err, "activation");
}

static co_status activation_backward(co_layer *l, co_cuda_nn *nn, const float *x, const float *y, const float *dy,
                                     float *dx, int batch, co_error *err)
{
    (void)x;
    if (!dx) return CO_OK;
    size_t n = (size_t)batch * l->in_size;
    act_backward<<<blocks_for(n), 256, 0, nn->stream>>>((int)l->act, dx, dy, y, n);
    return co_cuda_status(cudaGetLastError(), err, "activation backward");
}

static co_status flatten_forward(co_layer *l, co_cuda_nn *nn, const float *x, float *y, int batch, int train,
                                 co_error *err)
{
    (void)train;
    CO_CUDA_TRY(cudaMemcpyAsync(y, x, (size_t)batch * l->in_size * sizeof(float), cudaMemcpyDeviceToDevice,
                                nn->stream),
                err, "flatten");
    return CO_OK;
}

static co_status flatten_backward(co_layer *l, co_cuda_nn *nn, const float *x, const float *y, const float *dy,
                                  float *dx, int batch, co_error *err)
{
    (void)x, (void)y;
    if (!dx) return CO_OK;
    CO_CUDA_TRY(cudaMemcpyAsync(dx, dy, (size_t)batch * l->in_size * sizeof(float), cudaMemcpyDeviceToDevice,
                                nn->stream),
                err, "flatten backward");
    return CO_OK;
}

/* ------------------------------------------------------------ cuDNN layers */

/* Descriptors of one layer, set for the batch of the last call. */
typedef struct {
    int batch;
    cudnnTensorDescriptor_t x, y, bias;
    cudnnFilterDescriptor_t w;
    cudnnConvolutionDescriptor_t conv;
    cudnnPoolingDescriptor_t pool;
    cudnnConvolutionFwdAlgo_t fwd; /* chosen for the batch (choose_algorithms) */
    cudnnConvolutionBwdDataAlgo_t bwd_data;
    cudnnConvolutionBwdFilterAlgo_t bwd_filter;
} dnn_layer;

static void dnn_release(co_layer *l)
{
    dnn_layer *d = (dnn_layer *)l->cuda;
    if (!d) return;
    if (d->x) cudnnDestroyTensorDescriptor(d->x);
    if (d->y) cudnnDestroyTensorDescriptor(d->y);
    if (d->bias) cudnnDestroyTensorDescriptor(d->bias);
    if (d->w) cudnnDestroyFilterDescriptor(d->w);
    if (d->conv) cudnnDestroyConvolutionDescriptor(d->conv);
    if (d->pool) cudnnDestroyPoolingDescriptor(d->pool);
    free(d);
    l->cuda = NULL;
}

/* Deterministic algorithms: the same sums in the same order on every run. */
static const cudnnConvolutionFwdAlgo_t CONV_FWD = CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM;
static const cudnnConvolutionBwdDataAlgo_t CONV_BWD_DATA = CUDNN_CONVOLUTION_BWD_DATA_ALGO_1;
static const cudnnConvolutionBwdFilterAlgo_t CONV_BWD_FILTER = CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1;

/* An algorithm cuDNN's heuristics rank, restricted to deterministic FP32 ones (no tensor-op
 * math, which would round through TF32). */
template <class Perf> static int pick_deterministic(const Perf *perf, int n)
{
    for (int i = 0; i < n; i++)
        if (perf[i].status == CUDNN_STATUS_SUCCESS && perf[i].determinism == CUDNN_DETERMINISTIC &&
            perf[i].mathType != CUDNN_TENSOR_OP_MATH && perf[i].mathType != CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION)
            return i;
    return -1;
}

/* The fixed algorithms above where this cuDNN offers them for the geometry, else the
 * heuristics' best deterministic FP32 one. */
static co_status choose_algorithms(co_cuda_nn *nn, dnn_layer *d, co_error *err)
{
    size_t ws;
    d->fwd = CONV_FWD;
    d->bwd_data = CONV_BWD_DATA;
    d->bwd_filter = CONV_BWD_FILTER;
    if (cudnnGetConvolutionForwardWorkspaceSize(nn->dnn, d->x, d->w, d->conv, d->y, d->fwd, &ws) != CUDNN_STATUS_SUCCESS) {
        cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
        int n = 0;
        DNN_TRY(cudnnGetConvolutionForwardAlgorithm_v7(nn->dnn, d->x, d->w, d->conv, d->y,
                                                       CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &n, perf),
                "choosing a forward algorithm");
        int i = pick_deterministic(perf, n);
        if (i < 0) return co_error_set(err, CO_EINVAL, "cuDNN: no deterministic FP32 forward for this convolution");
        d->fwd = perf[i].algo;
    }
    if (cudnnGetConvolutionBackwardDataWorkspaceSize(nn->dnn, d->w, d->y, d->conv, d->x, d->bwd_data, &ws) !=
        CUDNN_STATUS_SUCCESS) {
        cudnnConvolutionBwdDataAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
        int n = 0;
        DNN_TRY(cudnnGetConvolutionBackwardDataAlgorithm_v7(nn->dnn, d->w, d->y, d->conv, d->x,
                                                            CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, &n, perf),
                "choosing a data-gradient algorithm");
        int i = pick_deterministic(perf, n);
        if (i < 0) return co_error_set(err, CO_EINVAL, "cuDNN: no deterministic FP32 data gradient for this convolution");
        d->bwd_data = perf[i].algo;
    }
    if (cudnnGetConvolutionBackwardFilterWorkspaceSize(nn->dnn, d->x, d->y, d->conv, d->w, d->bwd_filter, &ws) !=
        CUDNN_STATUS_SUCCESS) {
        cudnnConvolutionBwdFilterAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT];
        int n = 0;
        DNN_TRY(cudnnGetConvolutionBackwardFilterAlgorithm_v7(nn->dnn, d->x, d->y, d->conv, d->w,
                                                              CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT, &n, perf),
                "choosing a filter-gradient algorithm");
        int i = pick_deterministic(perf, n);
        if (i < 0) return co_error_set(err, CO_EINVAL, "cuDNN: no deterministic FP32 filter gradient for this convolution");
        d->bwd_filter = perf[i].algo;
    }
    return CO_OK;
}

static co_status dnn_setup(co_layer *l, co_cuda_nn *nn, int batch, int conv, co_error *err)
{
    dnn_layer *d = (dnn_layer *)l->cuda;
    if (!d) {
        d = (dnn_layer *)calloc(1, sizeof *d);
        if (!d) return co_error_set(err, CO_ENOMEM, "out of memory");
        l->cuda = d;
        DNN_TRY(cudnnCreateTensorDescriptor(&d->x), "descriptor");
        DNN_TRY(cudnnCreateTensorDescriptor(&d->y), "descriptor");
        if (conv) {
            int k, stride, pad, dil;
            co_conv2d_geometry(l, &k, &stride, &pad, &dil);
            DNN_TRY(cudnnCreateTensorDescriptor(&d->bias), "descriptor");
            DNN_TRY(cudnnCreateFilterDescriptor(&d->w), "descriptor");
            DNN_TRY(cudnnCreateConvolutionDescriptor(&d->conv), "descriptor");
            DNN_TRY(cudnnSetFilter4dDescriptor(d->w, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, l->out_c, l->in_c, k, k),
                    "filter");
            DNN_TRY(cudnnSetConvolution2dDescriptor(d->conv, pad, pad, stride, stride, dil, dil,
                                                    CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT),
                    "convolution");
            DNN_TRY(cudnnSetConvolutionMathType(d->conv, CUDNN_FMA_MATH), "FP32 math");
            DNN_TRY(cudnnSetTensor4dDescriptor(d->bias, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 1, l->out_c, 1, 1),
                    "bias");
        } else {
            int k, stride, ceil_mode;
            co_pool_geometry(l, &k, &stride, &ceil_mode);
            DNN_TRY(cudnnCreatePoolingDescriptor(&d->pool), "descriptor");
            cudnnPoolingMode_t mode = strcmp(l->ops->kind, "maxpool2d") == 0
                                          ? CUDNN_POOLING_MAX_DETERMINISTIC
                                          : CUDNN_POOLING_AVERAGE_COUNT_INCLUDE_PADDING;
            DNN_TRY(cudnnSetPooling2dDescriptor(d->pool, mode, CUDNN_NOT_PROPAGATE_NAN, k, k, 0, 0, stride, stride),
                    "pooling");
        }
    }
    if (d->batch != batch) {
        DNN_TRY(cudnnSetTensor4dDescriptor(d->x, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, batch, l->in_c, l->in_h,
                                           l->in_w),
                "input");
        DNN_TRY(cudnnSetTensor4dDescriptor(d->y, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, batch, l->out_c, l->out_h,
                                           l->out_w),
                "output");
        if (conv) {
            co_status st = choose_algorithms(nn, d, err);
            if (st != CO_OK) return st;
        }
        d->batch = batch;
    }
    return CO_OK;
}


static co_status conv_forward(co_layer *l, co_cuda_nn *nn, const float *x, float *y, int batch, int train,
                              co_error *err)
{
    (void)train;
    co_status st = dnn_setup(l, nn, batch, 1, err);
    if (st != CO_OK) return st;
    dnn_layer *d = (dnn_layer *)l->cuda;
    size_t ws = 0;
    DNN_TRY(cudnnGetConvolutionForwardWorkspaceSize(nn->dnn, d->x, d->w, d->conv, d->y, d->fwd, &ws), "workspace");
    if ((st = need_workspace(nn, ws, err)) != CO_OK) return st;
    const float one = 1, zero = 0;
    DNN_TRY(cudnnConvolutionForward(nn->dnn, &one, d->x, x, d->w, l->param[0], d->conv, d->fwd, nn->workspace, ws,
                                    &zero, d->y, y),
            "convolution forward");
    if (l->ntensors > 1) DNN_TRY(cudnnAddTensor(nn->dnn, &one, d->bias, l->param[1], &one, d->y, y), "bias");
    return CO_OK;
}

static co_status conv_backward(co_layer *l, co_cuda_nn *nn, const float *x, const float *y, const float *dy,
                               float *dx, int batch, co_error *err)
{
    (void)y;
    co_status st = dnn_setup(l, nn, batch, 1, err);
    if (st != CO_OK) return st;
    dnn_layer *d = (dnn_layer *)l->cuda;
    size_t wf = 0, wd = 0;
    DNN_TRY(cudnnGetConvolutionBackwardFilterWorkspaceSize(nn->dnn, d->x, d->y, d->conv, d->w, d->bwd_filter, &wf),
            "workspace");
    if (dx)
        DNN_TRY(cudnnGetConvolutionBackwardDataWorkspaceSize(nn->dnn, d->w, d->y, d->conv, d->x, d->bwd_data, &wd),
                "workspace");
    if ((st = need_workspace(nn, wf > wd ? wf : wd, err)) != CO_OK) return st;
    const float one = 1, zero = 0;
    DNN_TRY(cudnnConvolutionBackwardFilter(nn->dnn, &one, d->x, x, d->y, dy, d->conv, d->bwd_filter, nn->workspace,
                                           wf, &zero, d->w, l->grad[0]),
            "convolution dW");
    if (l->ntensors > 1)
        DNN_TRY(cudnnConvolutionBackwardBias(nn->dnn, &one, d->y, dy, &zero, d->bias, l->grad[1]), "convolution db");
    if (dx)
        DNN_TRY(cudnnConvolutionBackwardData(nn->dnn, &one, d->w, l->param[0], d->y, dy, d->conv, d->bwd_data,
                                             nn->workspace, wd, &zero, d->x, dx),
                "convolution dx");
    return CO_OK;
}

static co_status pool_forward(co_layer *l, co_cuda_nn *nn, const float *x, float *y, int batch, int train,
                              co_error *err)
{
    (void)train;
    co_status st = dnn_setup(l, nn, batch, 0, err);
    if (st != CO_OK) return st;
    dnn_layer *d = (dnn_layer *)l->cuda;
    const float one = 1, zero = 0;
    DNN_TRY(cudnnPoolingForward(nn->dnn, d->pool, &one, d->x, x, &zero, d->y, y), "pooling forward");
    return CO_OK;
}

static co_status pool_backward(co_layer *l, co_cuda_nn *nn, const float *x, const float *y, const float *dy,
                               float *dx, int batch, co_error *err)
{
    if (!dx) return CO_OK;
    co_status st = dnn_setup(l, nn, batch, 0, err);
    if (st != CO_OK) return st;
    dnn_layer *d = (dnn_layer *)l->cuda;
    const float one = 1, zero = 0;
    DNN_TRY(cudnnPoolingBackward(nn->dnn, d->pool, &one, d->y, y, d->y, dy, d->x, x, &zero, d->x, dx),
            "pooling backward");
    return CO_OK;
}

/* ------------------------------------------------------------ batch norm (cuDNN) */

/* Spatial batch norm as torch's BatchNorm2d (cuDNN's running variance is the unbiased one,
 * as torch's): the running statistics live on the GPU while the model does, copied from the
 * layer's state at the first forward and back when the model leaves (release). */
typedef struct {
    int batch;
    int loaded; /* running holds the layer's statistics (copied in at the first forward) */
    int train;  /* the last forward normalised with the batch's statistics */
    cudnnTensorDescriptor_t x, p;
    float *running;               /* mean [C] then variance [C] */
    float *save_mean, *save_inv;  /* what the last training forward normalised with */
    float *dx_scratch;            /* the input gradient nobody asked for (a first layer) */
    size_t dx_scratch_bytes;
} bn_layer;

static co_status bn_sync_state(co_layer *l, int to_host, co_error *err)
{
    bn_layer *d = (bn_layer *)l->cuda;
    if (!d || !d->loaded) return CO_OK; /* the next forward loads the layer's state */
    size_t bytes = 0;
    void *host = l->ops->state(l, &bytes);
    return to_host ? co_cuda_copy(host, d->running, bytes, NULL, err) : co_cuda_copy(d->running, host, bytes, NULL, err);
}

static void bn_release(co_layer *l)
{
    bn_layer *d = (bn_layer *)l->cuda;
    if (!d) return;
    bn_sync_state(l, 1, NULL); /* the running statistics go back to the layer */
    if (d->x) cudnnDestroyTensorDescriptor(d->x);
    if (d->p) cudnnDestroyTensorDescriptor(d->p);
    co_cuda_free(d->running);
    co_cuda_free(d->save_mean);
    co_cuda_free(d->save_inv);
    co_cuda_free(d->dx_scratch);
    free(d);
    l->cuda = NULL;
}

static co_status bn_create(co_layer *l, co_error *err)
{
    bn_layer *d = (bn_layer *)calloc(1, sizeof *d);
    size_t C = (size_t)l->in_c, bytes = 0;
    if (!d) return co_error_set(err, CO_ENOMEM, "out of memory");
    l->cuda = d;
    if (dnn_status(cudnnCreateTensorDescriptor(&d->x), err, "descriptor") != CO_OK ||
        dnn_status(cudnnCreateTensorDescriptor(&d->p), err, "descriptor") != CO_OK ||
        !(d->running = (float *)co_cuda_alloc(2 * C * sizeof(float), err)) ||
        !(d->save_mean = (float *)co_cuda_alloc(C * sizeof(float), err)) ||
        !(d->save_inv = (float *)co_cuda_alloc(C * sizeof(float), err)) ||
        co_cuda_copy(d->running, l->ops->state(l, &bytes), 2 * C * sizeof(float), NULL, err) != CO_OK) {
        bn_release(l); /* nothing was loaded: the layer's state stays as it is */
        return err && err->code ? err->code : CO_ENOMEM;
    }
    d->loaded = 1;
    return CO_OK;
}

static co_status bn_setup(co_layer *l, int batch, co_error *err)
{
    co_status st = l->cuda ? CO_OK : bn_create(l, err);
    if (st != CO_OK) return st;
    bn_layer *d = (bn_layer *)l->cuda;
    if (d->batch != batch) {
        DNN_TRY(cudnnSetTensor4dDescriptor(d->x, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, batch, l->in_c, l->in_h, l->in_w),
                "input");
        DNN_TRY(cudnnDeriveBNTensorDescriptor(d->p, d->x, CUDNN_BATCHNORM_SPATIAL), "statistics");
        d->batch = batch;
    }
    return CO_OK;
}

static co_status bn_forward(co_layer *l, co_cuda_nn *nn, const float *x, float *y, int batch, int train, co_error *err)
{
    co_status st = bn_setup(l, batch, err);
    if (st != CO_OK) return st;
    bn_layer *d = (bn_layer *)l->cuda;
    const float one = 1, zero = 0;
    float *mean = d->running, *var = d->running + l->in_c;
    /* The CPU keeps the running variance where a channel has one value (torch refuses);
     * cuDNN's unbiased update would divide by zero. */
    if (train && (size_t)batch * l->in_h * l->in_w < 2)
        return co_error_set(err, CO_EINVAL, "batch norm on CUDA: training needs more than one value per channel "
                                            "(a batch of %d of %dx%d maps)",
                            batch, l->in_h, l->in_w);
    d->train = train;
    if (train)
        DNN_TRY(cudnnBatchNormalizationForwardTraining(nn->dnn, CUDNN_BATCHNORM_SPATIAL, &one, &zero, d->x, x, d->x, y,
                                                       d->p, l->param[0], l->param[1], CO_BN_MOMENTUM, mean, var,
                                                       CO_BN_EPS, d->save_mean, d->save_inv),
                "batch norm forward");
    else
        DNN_TRY(cudnnBatchNormalizationForwardInference(nn->dnn, CUDNN_BATCHNORM_SPATIAL, &one, &zero, d->x, x, d->x, y,
                                                        d->p, l->param[0], l->param[1], mean, var, CO_BN_EPS),
                "batch norm inference");
    return CO_OK;
}

static co_status bn_backward(co_layer *l, co_cuda_nn *nn, const float *x, const float *y, const float *dy, float *dx,
                             int batch, co_error *err)
{
    (void)y;
    co_status st = bn_setup(l, batch, err);
    if (st != CO_OK) return st;
    bn_layer *d = (bn_layer *)l->cuda;
    if (!d->train)
        return co_error_set(err, CO_EINVAL, "batch norm on CUDA: a backward after an evaluation-mode forward is not "
                                            "supported there yet (the CPU's affine backward)");
    size_t n = (size_t)batch * l->in_size;
    if (!dx) {
        if ((st = grow(nn, &d->dx_scratch, &d->dx_scratch_bytes, n * sizeof(float), err)) != CO_OK) return st;
        dx = d->dx_scratch;
    }
    const float one = 1, zero = 0;
    DNN_TRY(cudnnBatchNormalizationBackward(nn->dnn, CUDNN_BATCHNORM_SPATIAL, &one, &zero, &one, &zero, d->x, x, d->x,
                                            dy, d->x, dx, d->p, l->param[0], l->grad[0], l->grad[1], CO_BN_EPS,
                                            d->save_mean, d->save_inv),
            "batch norm backward");
    return CO_OK;
}

/* ------------------------------------------------------------ residual block */

/* torchvision's BasicBlock as src/nn/residual.c runs it (the same sub-layers, buffers and
 * order), each sub-layer on its own device implementation. */
enum { RES_CONV1, RES_BN1, RES_CONV2, RES_BN2, RES_PCONV, RES_PBN };

typedef struct {
    int capacity;
    float *c1, *r1, *c2, *s1, *t1, *t2, *gsum, *dxp;
} res_layer;

static __global__ void add_relu(float *y, const float *a, const float *b, size_t n)
{
    GRID_LOOP(i, n)
    {
        float v = a[i] + b[i];
        y[i] = v > 0.0f ? v : 0.0f;
    }
}

static __global__ void add_into(float *y, const float *a, size_t n)
{
    GRID_LOOP(i, n) y[i] += a[i];
}

static void res_release(co_layer *l)
{
    for (int i = 0; i < l->nsub; i++) {
        const co_cuda_layer_ops *ops = co_cuda_layer_ops_for(l->sub[i]);
        if (ops) ops->release(l->sub[i]);
    }
    res_layer *r = (res_layer *)l->cuda;
    if (!r) return;
    float *bufs[] = {r->c1, r->r1, r->c2, r->s1, r->t1, r->t2, r->gsum, r->dxp};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) co_cuda_free(bufs[i]);
    free(r);
    l->cuda = NULL;
}

static co_status res_sync_state(co_layer *l, int to_host, co_error *err)
{
    for (int i = 0; i < l->nsub; i++) {
        const co_cuda_layer_ops *ops = co_cuda_layer_ops_for(l->sub[i]);
        co_status st = ops && ops->sync_state ? ops->sync_state(l->sub[i], to_host, err) : CO_OK;
        if (st != CO_OK) return st;
    }
    return CO_OK;
}

static co_status res_reserve(co_layer *l, co_cuda_nn *nn, int batch, co_error *err)
{
    res_layer *r = (res_layer *)l->cuda;
    if (!r) {
        r = (res_layer *)calloc(1, sizeof *r);
        if (!r) return co_error_set(err, CO_ENOMEM, "out of memory");
        l->cuda = r;
    }
    if (batch <= r->capacity) return CO_OK;
    /* Every buffer holds `capacity` rows of the block's output (dxp: of its input). */
    float **bufs[] = {&r->c1, &r->r1, &r->c2, &r->s1, &r->t1, &r->t2, &r->gsum, &r->dxp};
    size_t row = (size_t)l->out_size * sizeof(float), in_row = (size_t)l->in_size * sizeof(float);
    int had = r->capacity;
    r->capacity = 0;
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) {
        size_t per = bufs[i] == &r->dxp ? in_row : row, have = (size_t)had * per;
        co_status st = grow(nn, bufs[i], &have, (size_t)batch * per, err);
        if (st != CO_OK) return st;
    }
    r->capacity = batch;
    return CO_OK;
}

#define SUB_FWD(i, x, y)                                                                                       \
    do {                                                                                                       \
        co_status st_ = co_cuda_layer_ops_for(l->sub[i])->forward(l->sub[i], nn, x, y, batch, train, err);     \
        if (st_ != CO_OK) return st_;                                                                          \
    } while (0)
#define SUB_BWD(i, x, y, dy, dx)                                                                               \
    do {                                                                                                       \
        co_status st_ = co_cuda_layer_ops_for(l->sub[i])->backward(l->sub[i], nn, x, y, dy, dx, batch, err);   \
        if (st_ != CO_OK) return st_;                                                                          \
    } while (0)

static co_status res_forward(co_layer *l, co_cuda_nn *nn, const float *x, float *y, int batch, int train,
                             co_error *err)
{
    co_status st = res_reserve(l, nn, batch, err);
    if (st != CO_OK) return st;
    res_layer *r = (res_layer *)l->cuda;
    size_t n = (size_t)batch * l->out_size;
    SUB_FWD(RES_CONV1, x, r->c1);
    SUB_FWD(RES_BN1, r->c1, r->r1);
    act_forward<<<blocks_for(n), 256, 0, nn->stream>>>(CO_ACT_RELU, r->r1, r->r1, n);
    SUB_FWD(RES_CONV2, r->r1, r->c2);
    SUB_FWD(RES_BN2, r->c2, r->t1);
    const float *skip = x;
    if (l->nsub > RES_PCONV) {
        SUB_FWD(RES_PCONV, x, r->s1);
        SUB_FWD(RES_PBN, r->s1, r->t2);
        skip = r->t2;
    }
    add_relu<<<blocks_for(n), 256, 0, nn->stream>>>(y, r->t1, skip, n);
    return co_cuda_status(cudaGetLastError(), err, "residual block");
}

static co_status res_backward(co_layer *l, co_cuda_nn *nn, const float *x, const float *y, const float *dy,
                              float *dx, int batch, co_error *err)
{
    res_layer *r = (res_layer *)l->cuda;
    size_t n = (size_t)batch * l->out_size, ni = (size_t)batch * l->in_size;
    act_backward<<<blocks_for(n), 256, 0, nn->stream>>>(CO_ACT_RELU, r->gsum, dy, y, n);
    if (l->nsub > RES_PCONV) {
        SUB_BWD(RES_PBN, r->s1, r->t2, r->gsum, r->t2);
        SUB_BWD(RES_PCONV, x, r->s1, r->t2, dx ? r->dxp : NULL);
    }
    SUB_BWD(RES_BN2, r->c2, r->t1, r->gsum, r->t1);
    SUB_BWD(RES_CONV2, r->r1, r->c2, r->t1, r->t2);
    act_backward<<<blocks_for(n), 256, 0, nn->stream>>>(CO_ACT_RELU, r->t2, r->t2, r->r1, n);
    SUB_BWD(RES_BN1, r->c1, r->r1, r->t2, r->t1);
    SUB_BWD(RES_CONV1, x, r->c1, r->t1, dx);
    if (dx)
        add_into<<<blocks_for(ni), 256, 0, nn->stream>>>(dx, l->nsub > RES_PCONV ? r->dxp : r->gsum, ni);
    return co_cuda_status(cudaGetLastError(), err, "residual block backward");
}

static void nothing_to_release(co_layer *l) { (void)l; }

static const struct {
    const char *kind;
    co_cuda_layer_ops ops;
} layer_table[] = {
    {"linear", {linear_forward, linear_backward, nothing_to_release, NULL}},
    {"activation", {activation_forward, activation_backward, nothing_to_release, NULL}},
    {"flatten", {flatten_forward, flatten_backward, nothing_to_release, NULL}},
    {"conv2d", {conv_forward, conv_backward, dnn_release, NULL}},
    {"maxpool2d", {pool_forward, pool_backward, dnn_release, NULL}},
    {"avgpool2d", {pool_forward, pool_backward, dnn_release, NULL}},
    {"batchnorm2d", {bn_forward, bn_backward, bn_release, bn_sync_state}},
    {"basic_block", {res_forward, res_backward, res_release, res_sync_state}},
};

extern "C" const co_cuda_layer_ops *co_cuda_layer_ops_for(const co_layer *l)
{
    for (size_t i = 0; i < sizeof layer_table / sizeof layer_table[0]; i++)
        if (strcmp(layer_table[i].kind, l->ops->kind) == 0) {
            /* cuDNN's pooling has no ceil mode. */
            if (strcmp(l->ops->kind, "maxpool2d") == 0) {
                int k, stride, ceil_mode;
                co_pool_geometry(l, &k, &stride, &ceil_mode);
                if (ceil_mode) return NULL;
            }
            return &layer_table[i].ops;
        }
    return NULL;
}
