/* ConvTranspose2d as the adjoint of a convolution: its forward is a Conv2d's input
 * gradient (one GEMM of the batch's pixel rows with the weight, then col2im onto the larger
 * output map), its backward is that convolution's forward (im2col of the output gradient,
 * then GEMMs). The weight keeps torch's IC x (OC k k) layout, which is exactly the matrix
 * those GEMMs need. */
#include "layers.h"
#include "../core/blas.h"
#include "../core/alloc.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int k, stride, pad, out_pad, dil;
    int capacity;
    float *xrows; /* (batch * H W) x IC: the input, one row per pixel */
    float *col;   /* (batch * H W) x (OC k k) */
} convt_impl;

static int reserve(co_layer *l, convt_impl *c, int batch)
{
    if (batch <= c->capacity) return 0;
    size_t P = (size_t)l->in_h * l->in_w;
    free(c->xrows);
    free(c->col);
    c->xrows = co_falloc((size_t)batch * P * l->in_c);
    c->col = co_falloc((size_t)batch * P * l->cols);
    c->capacity = (c->xrows && c->col) ? batch : 0;
    return c->capacity ? 0 : -1;
}

static void convt_fwd(co_layer *l, const float *x, float *y, int batch, int train)
{
    (void)train;
    convt_impl *c = l->impl;
    if (reserve(l, c, batch)) {
        for (size_t i = 0; i < (size_t)batch * l->out_size; i++) y[i] = NAN;
        return;
    }
    int IC = l->in_c, P = l->in_h * l->in_w, OC = l->out_c, OP = l->out_h * l->out_w, K = l->cols;
#pragma omp parallel for schedule(static) if ((size_t)batch * P * IC > 65536)
    for (int s = 0; s < batch; s++)
        for (int ch = 0; ch < IC; ch++) {
            const float *src = x + ((size_t)s * IC + ch) * P;
            float *dst = c->xrows + (size_t)s * P * IC + ch;
            for (int p = 0; p < P; p++) dst[(size_t)p * IC] = src[p];
        }
    co_gemm(0, 0, batch * P, K, IC, 1.0f, c->xrows, IC, l->param[0], K, 0.0f, c->col, K, CO_BATCH_BLOCK * P);
    /* The output map plays the convolution's input, the input map its output. */
    co_col2im(y, c->col, batch, OC, l->out_h, l->out_w, c->k, c->stride, c->pad, c->dil, l->in_h, l->in_w);
    if (l->ntensors > 1)
        for (int s = 0; s < batch; s++)
            for (int o = 0; o < OC; o++) {
                float b = l->param[1][o];
                float *dst = y + ((size_t)s * OC + o) * OP;
                for (int p = 0; p < OP; p++) dst[p] += b;
            }
}

static void convt_bwd(co_layer *l, const float *x, const float *y, const float *dy, float *dx, int batch)
{
    (void)x;
    (void)y;
    convt_impl *c = l->impl;
    int IC = l->in_c, P = l->in_h * l->in_w, OC = l->out_c, OP = l->out_h * l->out_w, K = l->cols;
    co_im2col(c->col, dy, batch, OC, l->out_h, l->out_w, c->k, c->stride, c->pad, c->dil, l->in_h, l->in_w);
    size_t wwork = co_gemm_ksum_work(IC, K, batch * P, CO_BATCH_BLOCK * P);
    float *work = co_layer_work(l, wwork + co_bias_grad_work(batch, OC));
    if (!work) return;
    co_gemm_ksum(1, 0, IC, K, batch * P, CO_BATCH_BLOCK * P, 1.0f, c->xrows, IC, c->col, K, l->grad[0], work);
    if (l->ntensors > 1) co_bias_grad(l->grad[1], dy, batch, OC, OP, work + wwork);
    if (!dx) return;
    /* Pixel-row gradients into the no longer needed input rows, then back to NCHW. */
    co_gemm(0, 1, batch * P, IC, K, 1.0f, c->col, K, l->param[0], K, 0.0f, c->xrows, IC, CO_BATCH_BLOCK * P);
#pragma omp parallel for schedule(static) if ((size_t)batch * P * IC > 65536)
    for (int s = 0; s < batch; s++)
        for (int ch = 0; ch < IC; ch++) {
            const float *src = c->xrows + (size_t)s * P * IC + ch;
            float *dst = dx + ((size_t)s * IC + ch) * P;
            for (int p = 0; p < P; p++) dst[p] = src[(size_t)p * IC];
        }
}

/* torch's ConvTranspose2d.reset_parameters: kaiming_uniform_(a = sqrt 5) where torch takes
 * fan_in from the weight's second dimension, OC k k: U(+-1/sqrt(OC k k)), bias likewise. */
static void convt_init(co_layer *l, co_rng *r)
{
    double bound = 1.0 / sqrt((double)l->cols);
    for (int t = 0; t < l->ntensors; t++)
        for (size_t i = 0; i < l->size[t]; i++) l->param[t][i] = (float)((2.0 * co_rng_uniform(r) - 1.0) * bound);
}

static void convt_describe(const co_layer *l, char *buf, size_t len)
{
    const convt_impl *c = l->impl;
    snprintf(buf, len, "ConvTranspose2d(%d->%d, k%d s%d p%d o%d d%d%s, %dx%d->%dx%d)", l->in_c, l->out_c, c->k,
             c->stride, c->pad, c->out_pad, c->dil, l->ntensors > 1 ? "" : " nobias", l->in_h, l->in_w, l->out_h,
             l->out_w);
}

static void convt_free(co_layer *l)
{
    convt_impl *c = l->impl;
    if (c) {
        free(c->xrows);
        free(c->col);
        free(c);
    }
    for (int t = 0; t < 2; t++) {
        free(l->param[t]);
        free(l->grad[t]);
    }
}

static const co_layer_ops convt_ops = {"conv_transpose2d", convt_fwd, convt_bwd, convt_init, convt_describe, convt_free,
                                       NULL, NULL};

co_layer *co_conv_transpose2d_new(int in_c, int in_h, int in_w, int out_c, int k, int stride, int pad, int out_pad,
                                  int dilation, int bias)
{
    if (in_c < 1 || in_h < 1 || in_w < 1 || out_c < 1 || k < 1 || stride < 1 || pad < 0 || dilation < 1 ||
        out_pad < 0 || (out_pad >= stride && out_pad >= dilation))
        return NULL;
    long oh = (long)(in_h - 1) * stride - 2L * pad + (long)dilation * (k - 1) + out_pad + 1;
    long ow = (long)(in_w - 1) * stride - 2L * pad + (long)dilation * (k - 1) + out_pad + 1;
    if (oh < 1 || ow < 1 || oh * ow * out_c > (1L << 28)) return NULL;
    co_layer *l = calloc(1, sizeof *l);
    convt_impl *c = calloc(1, sizeof *c);
    if (!l || !c) {
        free(l);
        free(c);
        return NULL;
    }
    *c = (convt_impl){.k = k, .stride = stride, .pad = pad, .out_pad = out_pad, .dil = dilation};
    l->ops = &convt_ops;
    l->impl = c;
    l->in_c = in_c;
    l->in_h = in_h;
    l->in_w = in_w;
    l->out_c = out_c;
    l->out_h = (int)oh;
    l->out_w = (int)ow;
    l->in_size = in_c * in_h * in_w;
    l->out_size = out_c * (int)oh * (int)ow;
    /* Not a K-FAC layer kind: the optimizers treat it as dense parameters. */
    l->group_kind = CO_GROUP_DENSE;
    l->rows = in_c;
    l->cols = out_c * k * k;
    l->ntensors = bias ? 2 : 1;
    l->size[0] = (size_t)l->rows * l->cols;
    l->size[1] = bias ? (size_t)out_c : 0;
    return co_layer_alloc_params(l);
}
