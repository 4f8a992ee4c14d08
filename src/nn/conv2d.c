/* Conv2d, two ways.
 *
 * im2col + SGEMM by batch blocks (core/blas.h). The patch matrix (rows = sample x output
 * position, columns = channel x ky x kx) and the per-position output gradients stay in the
 * layer after backward: they are exactly K-FAC's statistics for a convolution (KFC, Grosse
 * & Martens 2016), so TSO-ALRA reads them without copies.
 *
 * KFC's convention, as captured here: a = the patch matrix, one row per (sample, output
 * position), so n = batch x positions rows of a_dim = IC k k; g = the gradient of the
 * batch-MEAN loss at each output position (OC values per row; no rescaling by the batch
 * size or by the number of positions T). Then the mean of a a^T over the rows is KFC's
 * Omega = E over samples and positions of patch outer products, and
 * N * sum over rows of g g^T = T * E over samples of the mean over positions of (N g)(N g)^T,
 * i.e. KFC's Gamma with its factor T (the spatially summed statistic). How the optimizer
 * combines them is docs/optimizers/tso-alra.md.
 *
 * Direct (conv_direct.c, the batch in the vector lanes) where the map and the batch are
 * large enough: for few channels several times faster than the GEMMs. When the capture
 * is wanted too, the patch matrix is still built (im2col, for K-FAC) and the output
 * gradients transposed into rows, but neither feeds a GEMM; the layer's results are then
 * the same with and without the capture. */
#include "layers.h"
#include "conv_direct.h"
#include "../core/alloc.h"
#include "../core/blas.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int k, stride, pad, dil;
    int capacity;  /* batch rows col and rows hold */
    int dcol_capacity;
    int batch;     /* of the last forward */
    float *col;    /* (batch * P) x K patches */
    float *rows;   /* (batch * P) x OC: output (forward) and output gradient (backward) */
    float *dcol;   /* (batch * P) x K */
    int have_grad; /* rows holds gradients of the last backward */
    /* The direct path: usable for this geometry, taken by the last forward, its buffers. */
    int direct_ok, direct;
    co_direct dir;
    float *scratch, *partials;
    int scratch_threads, partial_capacity;
} conv_impl;

/* One sample's patch rows for output row oy: per (channel, ky), k values per output
 * position, a straight copy where the window lies inside the row (the common case), the
 * bounds checked only at the edges. k (and, when unit, stride = dilation = 1) are
 * compile-time constants at the calls below for the usual kernels, so the copies unroll. */
static inline __attribute__((always_inline)) void im2col_row(float *col, const float *x, int c, int h, int w, int k,
                                                             int stride, int pad, int dil, int oy, int ow, int unit)
{
    if (unit) { /* stride 1, dilation 1, known to the compiler: contiguous runs */
        stride = 1;
        dil = 1;
    }
    int K = c * k * k;
    for (int ch = 0; ch < c; ch++)
        for (int ky = 0; ky < k; ky++) {
            int iy = oy * stride - pad + ky * dil;
            float *dst = col + (size_t)(ch * k + ky) * k;
            if (iy < 0 || iy >= h) {
                for (int ox = 0; ox < ow; ox++)
                    for (int kx = 0; kx < k; kx++) dst[(size_t)ox * K + kx] = 0.0f;
                continue;
            }
            const float *src = x + ((size_t)ch * h + iy) * w;
            for (int ox = 0; ox < ow; ox++, dst += K) {
                int ix = ox * stride - pad;
                if (ix >= 0 && ix + (k - 1) * dil < w)
                    for (int kx = 0; kx < k; kx++) dst[kx] = src[ix + kx * dil];
                else
                    for (int kx = 0; kx < k; kx++, ix += dil) dst[kx] = ix >= 0 && ix < w ? src[ix] : 0.0f;
            }
        }
}

void co_im2col(float *col, const float *x, int batch, int c, int h, int w, int k, int stride, int pad, int dil,
               int oh, int ow)
{
    int K = c * k * k, P = oh * ow;
#pragma omp parallel for schedule(static) if (batch * P * K > 65536)
    for (int s = 0; s < batch; s++)
        for (int oy = 0; oy < oh; oy++) {
            float *row = col + ((size_t)s * P + (size_t)oy * ow) * K;
            const float *xs = x + (size_t)s * c * h * w;
            if (stride == 1 && dil == 1) switch (k) {
                case 1: im2col_row(row, xs, c, h, w, 1, stride, pad, dil, oy, ow, 1); break;
                case 3: im2col_row(row, xs, c, h, w, 3, stride, pad, dil, oy, ow, 1); break;
                case 5: im2col_row(row, xs, c, h, w, 5, stride, pad, dil, oy, ow, 1); break;
                case 7: im2col_row(row, xs, c, h, w, 7, stride, pad, dil, oy, ow, 1); break;
                default: im2col_row(row, xs, c, h, w, k, stride, pad, dil, oy, ow, 1); break;
                }
            else
                im2col_row(row, xs, c, h, w, k, stride, pad, dil, oy, ow, 0);
        }
}

void co_col2im(float *dx, const float *dcol, int batch, int c, int h, int w, int k, int stride, int pad, int dil,
               int oh, int ow)
{
    int K = c * k * k, P = oh * ow;
    memset(dx, 0, (size_t)batch * c * h * w * sizeof(float));
    /* Samples are independent: the parallel split never writes one location twice. */
#pragma omp parallel for schedule(static) if (batch * P * K > 65536)
    for (int s = 0; s < batch; s++)
        for (int oy = 0; oy < oh; oy++)
            for (int ox = 0; ox < ow; ox++) {
                const float *row = dcol + ((size_t)s * P + (size_t)oy * ow + ox) * K;
                for (int ch = 0; ch < c; ch++)
                    for (int ky = 0; ky < k; ky++) {
                        int iy = oy * stride - pad + ky * dil;
                        for (int kx = 0; kx < k; kx++, row++) {
                            int ix = ox * stride - pad + kx * dil;
                            if (iy >= 0 && iy < h && ix >= 0 && ix < w) dx[(((size_t)s * c + ch) * h + iy) * w + ix] += *row;
                        }
                    }
            }
}

/* The patch matrix and the rows; the patch gradients only for the GEMM path (dcol). */
static int reserve(co_layer *l, conv_impl *c, int batch, int with_dcol)
{
    size_t P = (size_t)l->out_h * l->out_w, K = (size_t)l->cols;
    if (batch > c->capacity) {
        free(c->col);
        free(c->rows);
        free(c->dcol);
        c->dcol = NULL;
        c->dcol_capacity = 0;
        c->col = co_falloc((size_t)batch * P * K);
        c->rows = co_falloc((size_t)batch * P * l->out_c);
        c->capacity = (c->col && c->rows) ? batch : 0;
        if (!c->capacity) return -1;
    }
    if (with_dcol && batch > c->dcol_capacity) {
        free(c->dcol);
        c->dcol = co_falloc((size_t)batch * P * K);
        c->dcol_capacity = c->dcol ? batch : 0;
        if (!c->dcol) return -1;
    }
    return 0;
}

static int reserve_direct(conv_impl *c, int batch)
{
    int threads = omp_get_max_threads();
    if (threads > c->scratch_threads) {
        free(c->scratch);
        c->scratch = co_falloc(co_direct_scratch(&c->dir) * (size_t)threads);
        c->scratch_threads = c->scratch ? threads : 0;
    }
    if (batch > c->partial_capacity) {
        free(c->partials);
        c->partials = co_falloc(co_direct_partials(&c->dir, batch));
        c->partial_capacity = c->partials ? batch : 0;
    }
    return c->scratch_threads && c->partial_capacity ? 0 : -1;
}

static void conv_fwd(co_layer *l, const float *x, float *y, int batch, int train)
{
    conv_impl *c = l->impl;
    /* Measured crossovers (docs/models.md): sixteen samples fill the vector lanes; with
     * fewer than 32 output positions (late stages of deep nets) BLAS on im2col wins. In
     * training the samples counted are the whole minibatch's: a rank's shard computes each
     * block the way one process does, whatever its own share. */
    int samples = train && l->shard_total > 0 ? l->shard_total : batch;
    c->direct = c->direct_ok && !l->gemm_only && samples >= 16 && c->dir.npos >= 32;
    c->batch = batch;
    c->have_grad = 0;
    if ((c->direct && reserve_direct(c, batch)) || ((l->capture || !c->direct) && reserve(l, c, batch, !c->direct))) {
        /* Out of memory: a NaN output is caught by the training loop's finiteness check. */
        for (size_t i = 0; i < (size_t)batch * l->out_size; i++) y[i] = NAN;
        return;
    }
    if (l->capture || !c->direct)
        co_im2col(c->col, x, batch, l->in_c, l->in_h, l->in_w, c->k, c->stride, c->pad, c->dil, l->out_h, l->out_w);
    if (c->direct) {
        co_direct_forward(&c->dir, x, l->param[0], l->ntensors > 1 ? l->param[1] : NULL, y, batch, c->scratch);
        return;
    }
    int P = l->out_h * l->out_w, K = l->cols, OC = l->out_c;
    /* rows = col W^T (+ b), then NCHW. */
    co_gemm(0, 1, batch * P, OC, K, 1.0f, c->col, K, l->param[0], K, 0.0f, c->rows, OC, CO_BATCH_BLOCK * P);
    for (int s = 0; s < batch; s++)
        for (int o = 0; o < OC; o++) {
            float b = l->ntensors > 1 ? l->param[1][o] : 0.0f;
            float *dst = y + ((size_t)s * OC + o) * P;
            const float *src = c->rows + (size_t)s * P * OC + o;
            for (int p = 0; p < P; p++) dst[p] = src[(size_t)p * OC] + b;
        }
}

static void conv_bwd(co_layer *l, const float *x, const float *y, const float *dy, float *dx, int batch)
{
    (void)y;
    conv_impl *c = l->impl;
    int P = l->out_h * l->out_w, K = l->cols, OC = l->out_c;
    if (c->direct) {
        co_direct_backward(&c->dir, x, l->param[0], dy, dx, l->grad[0], l->ntensors > 1 ? l->grad[1] : NULL, batch,
                           c->scratch, c->partials);
        if (!l->capture) return;
    }
    /* NCHW gradient to rows: the per-position output gradients K-FAC reads. */
#pragma omp parallel for schedule(static) if ((size_t)batch * OC * P > 65536)
    for (int s = 0; s < batch; s++)
        for (int o = 0; o < OC; o++) {
            const float *src = dy + ((size_t)s * OC + o) * P;
            float *dst = c->rows + (size_t)s * P * OC + o;
            for (int p = 0; p < P; p++) dst[(size_t)p * OC] = src[p];
        }
    c->have_grad = 1;
    if (c->direct) return;
    size_t wwork = co_gemm_ksum_work(OC, K, batch * P, CO_BATCH_BLOCK * P);
    float *work = co_layer_work(l, wwork + co_bias_grad_work(batch, OC));
    if (!work) return;
    co_gemm_ksum(1, 0, OC, K, batch * P, CO_BATCH_BLOCK * P, 1.0f, c->rows, OC, c->col, K, l->grad[0], work);
    /* Straight from the NCHW gradient, each block in double. */
    if (l->ntensors > 1) co_bias_grad(l->grad[1], dy, batch, OC, P, work + wwork);
    if (dx) {
        co_gemm(0, 0, batch * P, K, OC, 1.0f, c->rows, OC, l->param[0], K, 0.0f, c->dcol, K, CO_BATCH_BLOCK * P);
        co_col2im(dx, c->dcol, batch, l->in_c, l->in_h, l->in_w, c->k, c->stride, c->pad, c->dil, l->out_h, l->out_w);
    }
}

static int conv_capture(const co_layer *l, co_capture *out)
{
    const conv_impl *c = l->impl;
    if (!c->have_grad || c->batch == 0) return 0;
    *out = (co_capture){c->col, c->rows, c->batch * l->out_h * l->out_w, l->cols, l->out_c, c->batch};
    return 1;
}

/* torch.nn.Conv2d.reset_parameters: kaiming_uniform_(a = sqrt 5) over fan_in = IC k k, i.e.
 * U(+-1/sqrt(fan_in)), bias likewise. */
static void conv_init(co_layer *l, co_rng *r)
{
    double bound = 1.0 / sqrt((double)l->cols);
    for (int t = 0; t < l->ntensors; t++)
        for (size_t i = 0; i < l->size[t]; i++) l->param[t][i] = (float)((2.0 * co_rng_uniform(r) - 1.0) * bound);
}

void co_conv2d_geometry(const co_layer *l, int *k, int *stride, int *pad, int *dil)
{
    const conv_impl *c = l->impl;
    *k = c->k;
    *stride = c->stride;
    *pad = c->pad;
    *dil = c->dil;
}

static void conv_describe(const co_layer *l, char *buf, size_t len)
{
    const conv_impl *c = l->impl;
    snprintf(buf, len, "Conv2d(%d->%d, k%d s%d p%d d%d%s, %dx%d->%dx%d)", l->in_c, l->out_c, c->k, c->stride, c->pad,
             c->dil, l->ntensors > 1 ? "" : " nobias", l->in_h, l->in_w, l->out_h, l->out_w);
}

static void conv_free(co_layer *l)
{
    conv_impl *c = l->impl;
    if (c) {
        free(c->col);
        free(c->rows);
        free(c->dcol);
        free(c->scratch);
        free(c->partials);
        co_direct_free(&c->dir);
        free(c);
    }
    for (int t = 0; t < 2; t++) {
        free(l->param[t]);
        free(l->grad[t]);
    }
}

static const co_layer_ops conv_ops = {"conv2d", conv_fwd, conv_bwd, conv_init, conv_describe, conv_free, conv_capture, NULL};

co_layer *co_conv2d_new(int in_c, int in_h, int in_w, int out_c, int k, int stride, int pad, int dilation)
{
    return co_conv2d_new_ex(in_c, in_h, in_w, out_c, k, stride, pad, dilation, 1);
}

co_layer *co_conv2d_new_ex(int in_c, int in_h, int in_w, int out_c, int k, int stride, int pad, int dilation,
                           int bias)
{
    if (in_c < 1 || out_c < 1 || k < 1 || stride < 1 || pad < 0 || dilation < 1) return NULL;
    int span = dilation * (k - 1) + 1;
    /* The window must fit before dividing: C's division truncates towards zero. */
    if (in_h + 2 * pad < span || in_w + 2 * pad < span) return NULL;
    int oh = (in_h + 2 * pad - span) / stride + 1, ow = (in_w + 2 * pad - span) / stride + 1;
    co_layer *l = calloc(1, sizeof *l);
    conv_impl *c = calloc(1, sizeof *c);
    if (!l || !c) {
        free(l);
        free(c);
        return NULL;
    }
    *c = (conv_impl){.k = k, .stride = stride, .pad = pad, .dil = dilation};
    c->direct_ok = co_direct_init(&c->dir, in_c, in_h, in_w, out_c, k, stride, pad, dilation) == 0;
    l->ops = &conv_ops;
    l->impl = c;
    l->in_c = in_c;
    l->in_h = in_h;
    l->in_w = in_w;
    l->out_c = out_c;
    l->out_h = oh;
    l->out_w = ow;
    l->in_size = in_c * in_h * in_w;
    l->out_size = out_c * oh * ow;
    l->rows = out_c;
    l->cols = in_c * k * k;
    l->group_kind = CO_GROUP_CONV2D;
    l->capture = 1;
    l->ntensors = bias ? 2 : 1;
    l->size[0] = (size_t)l->rows * l->cols;
    l->size[1] = bias ? (size_t)out_c : 0;
    return co_layer_alloc_params(l);
}
