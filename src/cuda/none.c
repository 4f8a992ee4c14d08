/* The CUDA backend of a build without it (-DCURVOPT_CUDA=OFF, or no nvcc): every call says
 * so, and the library's CPU side never reaches the others (no optimizer is created on
 * CO_DEVICE_CUDA: co_cuda_check fails first). */
#include "cuda_api.h"

static co_status not_built(co_error *err)
{
    return co_error_set(err, CO_ENOTFOUND, "this curvopt was built without CUDA (configure with -DCURVOPT_CUDA=ON "
                                           "where nvcc is installed)");
}

int co_cuda_torch_fma(void) { return 0; }
co_status co_cuda_check(co_error *err) { return not_built(err); }

void *co_cuda_alloc(size_t bytes, co_error *err)
{
    (void)bytes;
    not_built(err);
    return NULL;
}

void co_cuda_free(void *p) { (void)p; }

co_status co_cuda_copy(void *dst, const void *src, size_t bytes, void *stream, co_error *err)
{
    (void)dst, (void)src, (void)bytes, (void)stream;
    return not_built(err);
}

co_status co_cuda_memset_float(float *dst, float value, size_t n, void *stream, co_error *err)
{
    (void)dst, (void)value, (void)n, (void)stream;
    return not_built(err);
}

co_status co_cuda_sync(void *stream, co_error *err)
{
    (void)stream;
    return not_built(err);
}

co_mt_plan *co_mt_plan_new(const co_mt_tensor *tensors, int ntensors, co_error *err)
{
    (void)tensors, (void)ntensors;
    not_built(err);
    return NULL;
}

void co_mt_plan_free(co_mt_plan *plan) { (void)plan; }

co_status co_mt_launch(co_mt_plan *plan, co_mt_kind kind, const float *scalars, int ngroups, void *stream,
                       co_error *err)
{
    (void)plan, (void)kind, (void)scalars, (void)ngroups, (void)stream;
    return not_built(err);
}

co_status co_mt_grad_sumsq(co_mt_plan *plan, void *stream, double *out, co_error *err)
{
    (void)plan, (void)stream, (void)out;
    return not_built(err);
}

co_cuda_nn *co_cuda_nn_new(void *stream, co_error *err)
{
    (void)stream;
    not_built(err);
    return NULL;
}

void co_cuda_nn_free(co_cuda_nn *nn) { (void)nn; }
void *co_cuda_nn_stream(const co_cuda_nn *nn)
{
    (void)nn;
    return NULL;
}

unsigned long co_cuda_nn_generation(const co_cuda_nn *nn)
{
    (void)nn;
    return 0;
}

const co_cuda_layer_ops *co_cuda_layer_ops_for(const co_layer *l)
{
    (void)l;
    return NULL;
}

co_status co_cuda_gather_rows(float *dst, const float *src, const int *idx, int n, int dim, void *stream,
                              co_error *err)
{
    (void)dst, (void)src, (void)idx, (void)n, (void)dim, (void)stream;
    return not_built(err);
}

co_status co_cuda_loss(co_loss_kind kind, const float *out, const float *y, int batch, int dim, float *dout,
                       double *loss_sum, double *correct, double *scratch, void *stream, co_error *err)
{
    (void)kind, (void)out, (void)y, (void)batch, (void)dim, (void)dout, (void)loss_sum, (void)correct;
    (void)scratch, (void)stream;
    return not_built(err);
}

size_t co_cuda_loss_scratch(int batch)
{
    (void)batch;
    return 0;
}

co_status co_cuda_graph_begin(void *stream, co_error *err)
{
    (void)stream;
    return not_built(err);
}

co_cuda_graph *co_cuda_graph_end(void *stream, co_error *err)
{
    (void)stream;
    not_built(err);
    return NULL;
}

co_status co_cuda_graph_launch(co_cuda_graph *g, void *stream, co_error *err)
{
    (void)g, (void)stream;
    return not_built(err);
}

void co_cuda_graph_free(co_cuda_graph *g) { (void)g; }
void co_cuda_clear_error(void) {}
