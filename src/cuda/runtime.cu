/* Device memory and copies for the rest of the library (cuda_api.h), and whether a GPU is
 * there at all. */
#include "cuda_api.h"
#include "cuda_check.h"

#include <stdlib.h>

extern "C" int co_cuda_torch_fma(void)
{
#if defined(CO_CUDA_TORCH_FMA) && CO_CUDA_TORCH_FMA
    return 1;
#else
    return 0;
#endif
}

extern "C" co_status co_cuda_check(co_error *err)
{
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess)
        return co_error_set(err, CO_ENOTFOUND, "CUDA: no usable GPU: %s (%s)", cudaGetErrorString(e),
                            cudaGetErrorName(e));
    if (n == 0) return co_error_set(err, CO_ENOTFOUND, "CUDA: the driver sees no GPU");
    return CO_OK;
}

extern "C" void *co_cuda_alloc(size_t bytes, co_error *err)
{
    void *p = NULL;
    if (co_cuda_status(cudaMalloc(&p, bytes ? bytes : 1), err, "allocating device memory") != CO_OK) return NULL;
    /* Cleared before it is returned: a caller's own stream does not wait for this thread's. */
    if (co_cuda_status(cudaMemset(p, 0, bytes), err, "clearing device memory") != CO_OK ||
        co_cuda_status(cudaStreamSynchronize(cudaStreamPerThread), err, "clearing device memory") != CO_OK) {
        cudaFree(p);
        return NULL;
    }
    return p;
}

extern "C" void co_cuda_free(void *p)
{
    if (p) cudaFree(p);
}

extern "C" co_status co_cuda_copy(void *dst, const void *src, size_t bytes, void *stream, co_error *err)
{
    if (bytes == 0) return CO_OK;
    cudaStream_t s = (cudaStream_t)stream;
    CO_CUDA_TRY(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, s), err, "copying");
    CO_CUDA_TRY(cudaStreamSynchronize(s), err, "waiting for a copy");
    return CO_OK;
}

static __global__ void fill(float *dst, float value, size_t n)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        dst[i] = value;
}

extern "C" co_status co_cuda_memset_float(float *dst, float value, size_t n, void *stream, co_error *err)
{
    if (n == 0) return CO_OK;
    size_t blocks = (n + 255) / 256;
    fill<<<blocks < 4096 ? (unsigned)blocks : 4096u, 256, 0, (cudaStream_t)stream>>>(dst, value, n);
    return co_cuda_status(cudaGetLastError(), err, "filling device memory");
}

extern "C" co_status co_cuda_sync(void *stream, co_error *err)
{
    return co_cuda_status(cudaStreamSynchronize((cudaStream_t)stream), err, "waiting for the GPU");
}

struct co_cuda_graph {
    cudaGraph_t graph;
    cudaGraphExec_t exec;
};

extern "C" co_status co_cuda_graph_begin(void *stream, co_error *err)
{
    CO_CUDA_TRY(cudaStreamBeginCapture((cudaStream_t)stream, cudaStreamCaptureModeThreadLocal), err,
                "starting a graph capture");
    return CO_OK;
}

extern "C" co_cuda_graph *co_cuda_graph_end(void *stream, co_error *err)
{
    /* The capture ends first, whatever happens next: a stream left capturing refuses work. */
    cudaGraph_t graph = NULL;
    cudaError_t e = cudaStreamEndCapture((cudaStream_t)stream, &graph);
    if (co_cuda_status(e, err, "ending a graph capture") != CO_OK) {
        if (graph) cudaGraphDestroy(graph);
        return NULL;
    }
    co_cuda_graph *g = (co_cuda_graph *)calloc(1, sizeof *g);
    if (!g) {
        cudaGraphDestroy(graph);
        co_error_set(err, CO_ENOMEM, "out of memory");
        return NULL;
    }
    g->graph = graph;
    if (co_cuda_status(cudaGraphInstantiate(&g->exec, g->graph, 0), err, "instantiating a graph") != CO_OK) {
        co_cuda_graph_free(g);
        return NULL;
    }
    return g;
}

/* Clears the runtime's sticky record of the last error (after a capture that failed and was
 * abandoned: the run goes on without graphs). */
extern "C" void co_cuda_clear_error(void) { (void)cudaGetLastError(); }

extern "C" co_status co_cuda_graph_launch(co_cuda_graph *g, void *stream, co_error *err)
{
    return co_cuda_status(cudaGraphLaunch(g->exec, (cudaStream_t)stream), err, "launching a graph");
}

extern "C" void co_cuda_graph_free(co_cuda_graph *g)
{
    if (!g) return;
    if (g->exec) cudaGraphExecDestroy(g->exec);
    if (g->graph) cudaGraphDestroy(g->graph);
    free(g);
}
