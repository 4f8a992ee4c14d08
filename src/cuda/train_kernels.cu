/* The training loop's own kernels (cuda_api.h): gathering a minibatch's rows from a dataset
 * held on the GPU, and the losses with their gradients, per sample as src/nn/loss.c computes
 * them (double arithmetic), summed in sample order by one block. */
#include "cuda_api.h"
#include "cuda_check.h"

static __global__ void gather_rows(float *dst, const float *src, const int *idx, int n, int dim)
{
    size_t total = (size_t)n * dim;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x) {
        size_t row = i / dim, col = i % dim;
        dst[i] = src[(size_t)idx[row] * dim + col];
    }
}

extern "C" co_status co_cuda_gather_rows(float *dst, const float *src, const int *idx, int n, int dim, void *stream,
                                         co_error *err)
{
    size_t total = (size_t)n * dim, blocks = (total + 255) / 256;
    if (total == 0) return CO_OK;
    gather_rows<<<blocks < 8192 ? (unsigned)blocks : 8192u, 256, 0, (cudaStream_t)stream>>>(dst, src, idx, n, dim);
    return co_cuda_status(cudaGetLastError(), err, "gathering a minibatch");
}

static __device__ double log_sigmoid(double x) { return x >= 0 ? -log1p(exp(-x)) : x - log1p(exp(x)); }

/* Sample b's loss terms (den: the number of terms of the mean) and whether it is predicted
 * right; dout gets each term's gradient. */
static __global__ void loss_terms(int kind, const float *out, const float *y, int batch, int dim, double den,
                                  float *dout, double *term, double *right)
{
    int b = blockIdx.x * blockDim.x + threadIdx.x;
    if (b >= batch) return;
    const float *z = out + (size_t)b * dim;
    const float *t = y + (size_t)b * dim;
    float *dz = dout + (size_t)b * dim;
    double total = 0;
    int ok = 0;
    if (kind == CO_LOSS_BCE_LOGITS || kind == CO_LOSS_BCE || kind == CO_LOSS_MSE) {
        for (int j = 0; j < dim; j++) {
            double x = z[j], v = t[j];
            if (kind == CO_LOSS_BCE_LOGITS) {
                total -= v * log_sigmoid(x) + (1 - v) * log_sigmoid(-x);
                double s = x >= 0 ? 1 / (1 + exp(-x)) : exp(x) / (1 + exp(x));
                dz[j] = (float)((s - v) / den);
            } else if (kind == CO_LOSS_BCE) {
                double lp = x > 0 ? fmax(log(x), -100.0) : -100.0;
                double lq = x < 1 ? fmax(log1p(-x), -100.0) : -100.0;
                total -= v * lp + (1 - v) * lq;
                dz[j] = (float)((x - v) / fmax((1 - x) * x, 1e-12) / den);
            } else {
                double d = x - v;
                total += d * d;
                dz[j] = (float)(2 * d / den);
            }
        }
        if (kind == CO_LOSS_BCE_LOGITS) ok = (z[0] > 0.0f) == (t[0] > 0.5f);
        if (kind == CO_LOSS_BCE) ok = (z[0] > 0.5f) == (t[0] > 0.5f);
    } else {
        int label = (int)y[b], best = 0;
        for (int j = 1; j < dim; j++)
            if (z[j] > z[best]) best = j;
        ok = best == label;
        if (kind == CO_LOSS_NLL) {
            total = label >= 0 && label < dim ? -(double)z[label] : 0.0;
            for (int j = 0; j < dim; j++) dz[j] = j == label ? (float)(-1.0 / den) : 0.0f;
        } else {
            double mx = z[0];
            for (int j = 1; j < dim; j++) mx = fmax(mx, (double)z[j]);
            double se = 0;
            for (int j = 0; j < dim; j++) se += exp(z[j] - mx);
            double lse = mx + log(se);
            total = lse - (label >= 0 && label < dim ? z[label] : 0.0);
            for (int j = 0; j < dim; j++) dz[j] = (float)((exp(z[j] - lse) - (j == label)) / den);
        }
    }
    term[b] = total;
    right[b] = ok;
}

static __global__ void __launch_bounds__(256) add_sums(const double *term, const double *right, int n,
                                                        double *loss_sum, double *correct)
{
    __shared__ double a[256], c[256];
    double s = 0, k = 0;
    for (int i = threadIdx.x; i < n; i += 256) {
        s += term[i];
        k += right[i];
    }
    a[threadIdx.x] = s;
    c[threadIdx.x] = k;
    __syncthreads();
    for (int w = 128; w > 0; w /= 2) {
        if ((int)threadIdx.x < w) {
            a[threadIdx.x] += a[threadIdx.x + w];
            c[threadIdx.x] += c[threadIdx.x + w];
        }
        __syncthreads();
    }
    if (threadIdx.x == 0) {
        if (loss_sum) *loss_sum += a[0];
        if (correct) *correct += c[0];
    }
}

extern "C" size_t co_cuda_loss_scratch(int batch) { return 2 * (size_t)batch; }

extern "C" co_status co_cuda_loss(co_loss_kind kind, const float *out, const float *y, int batch, int dim,
                                  float *dout, double *loss_sum, double *correct, double *scratch, void *stream_,
                                  co_error *err)
{
    if ((int)kind < CO_LOSS_BCE_LOGITS || kind > CO_LOSS_NLL)
        return co_error_set(err, CO_EINVAL, "unknown loss %d", (int)kind);
    if (batch <= 0) return CO_OK;
    cudaStream_t stream = (cudaStream_t)stream_;
    int per_element = kind == CO_LOSS_BCE_LOGITS || kind == CO_LOSS_BCE || kind == CO_LOSS_MSE;
    double den = per_element ? (double)batch * dim : (double)batch;
    loss_terms<<<(batch + 127) / 128, 128, 0, stream>>>((int)kind, out, y, batch, dim, den, dout, scratch,
                                                        scratch + batch);
    if (loss_sum || correct) add_sums<<<1, 256, 0, stream>>>(scratch, scratch + batch, batch, loss_sum, correct);
    return co_cuda_status(cudaGetLastError(), err, "loss");
}
