/* The fused multi-tensor kernels of the per-coordinate optimizers: one table of every
 * group's tensors (parameter, gradient, slots), cut into chunks of CHUNK elements, one
 * thread block per chunk, every group's scalars passed as kernel arguments. A step is then
 * one launch (per CO_MT_GROUPS_PER_LAUNCH groups), whatever the number of tensors, and needs
 * no host-to-device copy, so a CUDA graph can hold it. The update of each element is the
 * CPU's own function (src/optim/elementwise.h), so the two devices agree bit for bit. */
#include "cuda_api.h"
#include "cuda_check.h"
#include "../optim/elementwise.h"

#include <stdlib.h>
#include <string.h>

namespace {

constexpr int CHUNK = 16384; /* elements a block updates: 64 per thread */
constexpr int THREADS = 256;
constexpr int UNROLL = 4; /* elements per thread in flight at once */
/* Launches for few groups pass a smaller table of scalars (the arguments of every launch are
 * copied with it: 24.6 KB for 512 groups). */
constexpr int SMALL_GROUPS = 16, MEDIUM_GROUPS = 64;

struct mt_chunk {
    int tensor;
    int len;
    size_t start;
};

template <int NG> struct mt_args {
    int group0; /* the first group of this launch */
    float sc[NG][CO_ELEM_NSCALAR];
};

template <class T> __device__ T scalars_as(const float *sc)
{
    static_assert(sizeof(T) <= CO_ELEM_NSCALAR * sizeof(float), "scalars overflow their slot");
    T s;
    memcpy(&s, sc, sizeof s);
    return s;
}

/* Which slots a tensor's update reads and writes (the same for the whole block). A kind
 * leaves the slots it never uses false at compile time, so its kernel has no code for them. */
template <int KIND> __device__ void slots_used(const float *sc, bool use[CO_MT_MAX_SLOTS])
{
    use[0] = use[1] = use[2] = use[3] = use[4] = use[5] = false;
    if (KIND == CO_MT_SGD) {
        co_sgd_scalars s = scalars_as<co_sgd_scalars>(sc);
        use[0] = s.momentum != 0;
    } else if (KIND == CO_MT_ADAM) {
        co_adam_scalars s = scalars_as<co_adam_scalars>(sc);
        use[0] = use[1] = true;
        use[2] = s.amsgrad != 0;
    } else if (KIND == CO_MT_RMSPROP) {
        co_rmsprop_scalars s = scalars_as<co_rmsprop_scalars>(sc);
        use[0] = true;
        use[1] = s.centered != 0;
        use[2] = s.momentum != 0;
    } else if (KIND == CO_MT_ADAGRAD) {
        use[0] = true;
    } else if (KIND == CO_MT_OGR_ASGD) { /* mean_theta, var_theta, mean_g, var_g, rate_avg */
        co_ogr_asgd_scalars s = scalars_as<co_ogr_asgd_scalars>(sc);
        use[0] = use[1] = use[2] = use[3] = true;
        use[4] = s.growth > 0;
    } else if (KIND == CO_MT_OGR_ASGDC) { /* mean_theta, var_theta, mean_g, cov, rate_avg, nu */
        co_ogr_asgdc_scalars s = scalars_as<co_ogr_asgdc_scalars>(sc);
        use[0] = use[1] = use[2] = use[3] = use[5] = true;
        use[4] = s.growth > 0;
    }
}

template <int KIND> __device__ float update(float p, float g, float *s, const float *sc)
{
    if (KIND == CO_MT_SGD) {
        co_sgd_scalars x = scalars_as<co_sgd_scalars>(sc);
        return co_sgd_update(p, g, &s[0], x, x.momentum != 0, x.first != 0, x.nesterov != 0);
    } else if (KIND == CO_MT_ADAM) {
        co_adam_scalars x = scalars_as<co_adam_scalars>(sc);
        return co_adam_update(p, g, &s[0], &s[1], &s[2], x, x.amsgrad != 0);
    } else if (KIND == CO_MT_RMSPROP) {
        co_rmsprop_scalars x = scalars_as<co_rmsprop_scalars>(sc);
        return co_rmsprop_update(p, g, &s[0], &s[1], &s[2], x, x.centered != 0, x.momentum != 0);
    } else if (KIND == CO_MT_OGR_ASGD) {
        co_ogr_asgd_scalars x = scalars_as<co_ogr_asgd_scalars>(sc);
        return co_ogr_asgd_update(p, g, &s[0], &s[1], &s[2], &s[3], &s[4], x, x.rmax > 0, x.growth > 0);
    } else if (KIND == CO_MT_OGR_ASGDC) {
        co_ogr_asgdc_scalars x = scalars_as<co_ogr_asgdc_scalars>(sc);
        return co_ogr_asgdc_update(p, g, &s[0], &s[1], &s[2], &s[3], &s[5], &s[4], x, x.rmax > 0, x.growth > 0);
    } else {
        co_adagrad_scalars x = scalars_as<co_adagrad_scalars>(sc);
        return co_adagrad_update(p, g, &s[0], x);
    }
}

template <int KIND, int NG>
__global__ void __launch_bounds__(THREADS)
    mt_update(const co_mt_tensor *__restrict__ tensors, const mt_chunk *__restrict__ chunks, int first_chunk,
              const mt_args<NG> args)
{
    const mt_chunk c = chunks[first_chunk + blockIdx.x];
    const co_mt_tensor t = tensors[c.tensor];
    const float *sc = args.sc[t.group - args.group0];
    float *__restrict__ p = t.p + c.start;
    float *__restrict__ g = t.g + c.start;
    if (KIND == CO_MT_SCALE) {
        const float f = sc[0];
        if (f == 1.0f) return;
        for (int i = threadIdx.x; i < c.len; i += THREADS) g[i] *= f;
        return;
    }
    if (KIND == CO_MT_L2) {
        const co_l2_scalars x = scalars_as<co_l2_scalars>(sc);
        if (x.on == 0) return;
        for (int i = threadIdx.x; i < c.len; i += THREADS) g[i] = co_l2_grad(g[i], p[i], x.wd);
        return;
    }
    bool use[CO_MT_MAX_SLOTS];
    slots_used<KIND>(sc, use);
    static_assert(CO_MT_MAX_SLOTS == 6, "one pointer per slot below");
    float *__restrict__ s0 = use[0] ? t.s[0] + c.start : nullptr;
    float *__restrict__ s1 = use[1] ? t.s[1] + c.start : nullptr;
    float *__restrict__ s2 = use[2] ? t.s[2] + c.start : nullptr;
    float *__restrict__ s3 = use[3] ? t.s[3] + c.start : nullptr;
    float *__restrict__ s4 = use[4] ? t.s[4] + c.start : nullptr;
    float *__restrict__ s5 = use[5] ? t.s[5] + c.start : nullptr;
    for (int base = threadIdx.x; base < c.len; base += THREADS * UNROLL) {
        float pv[UNROLL], gv[UNROLL], sv[UNROLL][CO_MT_MAX_SLOTS];
#pragma unroll
        for (int u = 0; u < UNROLL; u++) {
            int i = base + u * THREADS;
            if (i >= c.len) continue;
            pv[u] = p[i];
            gv[u] = g[i];
            sv[u][0] = s0 ? s0[i] : 0.0f;
            sv[u][1] = s1 ? s1[i] : 0.0f;
            sv[u][2] = s2 ? s2[i] : 0.0f;
            sv[u][3] = s3 ? s3[i] : 0.0f;
            sv[u][4] = s4 ? s4[i] : 0.0f;
            sv[u][5] = s5 ? s5[i] : 0.0f;
        }
#pragma unroll
        for (int u = 0; u < UNROLL; u++) {
            int i = base + u * THREADS;
            if (i >= c.len) continue;
            p[i] = update<KIND>(pv[u], gv[u], sv[u], sc);
            if (s0) s0[i] = sv[u][0];
            if (s1) s1[i] = sv[u][1];
            if (s2) s2[i] = sv[u][2];
            if (s3) s3[i] = sv[u][3];
            if (s4) s4[i] = sv[u][4];
            if (s5) s5[i] = sv[u][5];
        }
    }
}

/* Each chunk's sum of squared gradients in double, then the chunks' sums added in chunk
 * order by one block: the same total on every run. */
__global__ void __launch_bounds__(THREADS)
    chunk_sumsq(const co_mt_tensor *__restrict__ tensors, const mt_chunk *__restrict__ chunks, double *partial)
{
    const mt_chunk c = chunks[blockIdx.x];
    const float *g = tensors[c.tensor].g + c.start;
    double s = 0;
    for (int i = threadIdx.x; i < c.len; i += THREADS) s += (double)g[i] * g[i];
    __shared__ double red[THREADS];
    red[threadIdx.x] = s;
    __syncthreads();
    for (int w = THREADS / 2; w > 0; w /= 2) {
        if ((int)threadIdx.x < w) red[threadIdx.x] += red[threadIdx.x + w];
        __syncthreads();
    }
    if (threadIdx.x == 0) partial[blockIdx.x] = red[0];
}

__global__ void __launch_bounds__(THREADS) sum_partials(const double *partial, int n, double *out)
{
    __shared__ double red[THREADS];
    double s = 0;
    for (int i = threadIdx.x; i < n; i += THREADS) s += partial[i];
    red[threadIdx.x] = s;
    __syncthreads();
    for (int w = THREADS / 2; w > 0; w /= 2) {
        if ((int)threadIdx.x < w) red[threadIdx.x] += red[threadIdx.x + w];
        __syncthreads();
    }
    if (threadIdx.x == 0) *out = red[0];
}

} // namespace

struct co_mt_plan {
    co_mt_tensor *tensors; /* device */
    mt_chunk *chunks;      /* device, tensor by tensor (so group by group) */
    int nchunks;
    int ngroups;
    int *group_chunk; /* host: index of the first chunk of each group, ngroups + 1 entries */
    double *partial;  /* device: nchunks + 1 doubles, the last one the total */
};

extern "C" co_mt_plan *co_mt_plan_new(const co_mt_tensor *tensors, int ntensors, co_error *err)
{
    co_mt_plan *plan = (co_mt_plan *)calloc(1, sizeof *plan);
    if (!plan) {
        co_error_set(err, CO_ENOMEM, "out of memory");
        return NULL;
    }
    size_t nchunks = 0;
    int ngroups = 0;
    for (int i = 0; i < ntensors; i++) {
        nchunks += (tensors[i].n + CHUNK - 1) / CHUNK;
        if (tensors[i].group + 1 > ngroups) ngroups = tensors[i].group + 1;
    }
    mt_chunk *chunks = (mt_chunk *)malloc(nchunks * sizeof *chunks);
    plan->group_chunk = (int *)calloc((size_t)ngroups + 1, sizeof(int));
    if (!chunks || !plan->group_chunk || nchunks > (size_t)0x7fffffff) {
        free(chunks);
        co_mt_plan_free(plan);
        co_error_set(err, CO_ENOMEM, "out of memory");
        return NULL;
    }
    size_t c = 0;
    for (int i = 0; i < ntensors; i++) {
        for (size_t at = 0; at < tensors[i].n; at += CHUNK) {
            size_t len = tensors[i].n - at < (size_t)CHUNK ? tensors[i].n - at : (size_t)CHUNK;
            chunks[c++] = mt_chunk{i, (int)len, at};
        }
    }
    /* group_chunk[g]: the first chunk of group g's first tensor (tensors come group by group). */
    for (int g = 0, i = 0, at = 0; g <= ngroups; g++) {
        while (i < ntensors && tensors[i].group < g) at += (int)((tensors[i++].n + CHUNK - 1) / CHUNK);
        plan->group_chunk[g] = at;
    }
    plan->nchunks = (int)nchunks;
    plan->ngroups = ngroups;
    co_status st = CO_OK;
    plan->tensors = (co_mt_tensor *)co_cuda_alloc((size_t)ntensors * sizeof *plan->tensors, err);
    plan->chunks = (mt_chunk *)co_cuda_alloc(nchunks * sizeof *chunks, err);
    plan->partial = (double *)co_cuda_alloc((nchunks + 1) * sizeof(double), err);
    if (!plan->tensors || !plan->chunks || !plan->partial)
        st = CO_ENOMEM;
    else if ((st = co_cuda_copy(plan->tensors, tensors, (size_t)ntensors * sizeof *tensors, NULL, err)) == CO_OK)
        st = co_cuda_copy(plan->chunks, chunks, nchunks * sizeof *chunks, NULL, err);
    free(chunks);
    if (st != CO_OK) {
        co_mt_plan_free(plan);
        return NULL;
    }
    return plan;
}

extern "C" void co_mt_plan_free(co_mt_plan *plan)
{
    if (!plan) return;
    co_cuda_free(plan->tensors);
    co_cuda_free(plan->chunks);
    co_cuda_free(plan->partial);
    free(plan->group_chunk);
    free(plan);
}

template <int KIND, int NG>
static co_status launch_window(co_mt_plan *plan, const float *scalars, int g0, int g1, cudaStream_t stream,
                               co_error *err)
{
    mt_args<NG> args;
    args.group0 = g0;
    memcpy(args.sc, scalars + (size_t)g0 * CO_ELEM_NSCALAR, (size_t)(g1 - g0) * CO_ELEM_NSCALAR * sizeof(float));
    int first = plan->group_chunk[g0], n = plan->group_chunk[g1] - first;
    if (n == 0) return CO_OK;
    mt_update<KIND, NG><<<n, THREADS, 0, stream>>>(plan->tensors, plan->chunks, first, args);
    CO_CUDA_TRY(cudaGetLastError(), err, "optimizer kernel launch");
    return CO_OK;
}

template <int KIND>
static co_status launch_kind(co_mt_plan *plan, const float *scalars, int ngroups, cudaStream_t stream, co_error *err)
{
    if (ngroups <= SMALL_GROUPS) return launch_window<KIND, SMALL_GROUPS>(plan, scalars, 0, ngroups, stream, err);
    if (ngroups <= MEDIUM_GROUPS) return launch_window<KIND, MEDIUM_GROUPS>(plan, scalars, 0, ngroups, stream, err);
    for (int g0 = 0; g0 < ngroups; g0 += CO_MT_GROUPS_PER_LAUNCH) {
        int g1 = g0 + CO_MT_GROUPS_PER_LAUNCH < ngroups ? g0 + CO_MT_GROUPS_PER_LAUNCH : ngroups;
        co_status st = launch_window<KIND, CO_MT_GROUPS_PER_LAUNCH>(plan, scalars, g0, g1, stream, err);
        if (st != CO_OK) return st;
    }
    return CO_OK;
}

extern "C" co_status co_mt_launch(co_mt_plan *plan, co_mt_kind kind, const float *scalars, int ngroups,
                                  void *stream_, co_error *err)
{
    if (ngroups != plan->ngroups)
        return co_error_set(err, CO_EINVAL, "optimizer kernel: %d groups of scalars for a table of %d", ngroups,
                            plan->ngroups);
    cudaStream_t stream = (cudaStream_t)stream_;
    switch (kind) {
    case CO_MT_SGD: return launch_kind<CO_MT_SGD>(plan, scalars, ngroups, stream, err);
    case CO_MT_ADAM: return launch_kind<CO_MT_ADAM>(plan, scalars, ngroups, stream, err);
    case CO_MT_RMSPROP: return launch_kind<CO_MT_RMSPROP>(plan, scalars, ngroups, stream, err);
    case CO_MT_ADAGRAD: return launch_kind<CO_MT_ADAGRAD>(plan, scalars, ngroups, stream, err);
    case CO_MT_SCALE: return launch_kind<CO_MT_SCALE>(plan, scalars, ngroups, stream, err);
    case CO_MT_OGR_ASGD: return launch_kind<CO_MT_OGR_ASGD>(plan, scalars, ngroups, stream, err);
    case CO_MT_OGR_ASGDC: return launch_kind<CO_MT_OGR_ASGDC>(plan, scalars, ngroups, stream, err);
    case CO_MT_L2: return launch_kind<CO_MT_L2>(plan, scalars, ngroups, stream, err);
    default: return co_error_set(err, CO_EINVAL, "optimizer kernel: unknown kind %d", (int)kind);
    }
}

extern "C" co_status co_mt_grad_sumsq(co_mt_plan *plan, void *stream_, double *out, co_error *err)
{
    cudaStream_t stream = (cudaStream_t)stream_;
    if (plan->nchunks == 0) {
        *out = 0;
        return CO_OK;
    }
    chunk_sumsq<<<plan->nchunks, THREADS, 0, stream>>>(plan->tensors, plan->chunks, plan->partial);
    sum_partials<<<1, THREADS, 0, stream>>>(plan->partial, plan->nchunks, plan->partial + plan->nchunks);
    CO_CUDA_TRY(cudaGetLastError(), err, "gradient norm kernels");
    return co_cuda_copy(out, plan->partial + plan->nchunks, sizeof *out, stream_, err);
}
