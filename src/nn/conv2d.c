/* Conv2d as im2col + one SGEMM over the whole batch. The patch matrix (rows = sample x
 * output position, columns = channel x ky x kx) and the per-position output gradients stay
 * in the layer after backward: they are exactly K-FAC's statistics for a convolution (KFC,
 * Grosse & Martens 2016), so TSO-ALRA reads them without copies. The output gradients are
 * those of the batch-mean loss; the optimizer scales them (docs/optimizers/tso-alra.md). */
#include "layers.h"
#include "../core/alloc.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int k, stride, pad, dil;
    int capacity;  /* batch rows the buffers hold */
    int batch;     /* of the last forward */
    float *col;    /* (batch * P) x K patches */
    float *rows;   /* (batch * P) x OC: output (forward) and output gradient (backward) */
    float *dcol;   /* (batch * P) x K */
    int have_grad; /* rows holds gradients of the last backward */
} conv_impl;

void co_im2col(float *col, const float *x, int batch, int c, int h, int w, int k, int stride, int pad, int dil,
               int oh, int ow)
{
    int K = c * k * k, P = oh * ow;
#pragma omp parallel for schedule(static) if (batch * P * K > 65536)
    for (int s = 0; s < batch; s++)
        for (int oy = 0; oy < oh; oy++)
            for (int ox = 0; ox < ow; ox++) {
                float *row = col + ((size_t)s * P + (size_t)oy * ow + ox) * K;
                for (int ch = 0; ch < c; ch++)
                    for (int ky = 0; ky < k; ky++) {
                        int iy = oy * stride - pad + ky * dil;
                        for (int kx = 0; kx < k; kx++) {
                            int ix = ox * stride - pad + kx * dil;
                            *row++ = (iy >= 0 && iy < h && ix >= 0 && ix < w)
                                         ? x[(((size_t)s * c + ch) * h + iy) * w + ix]
                                         : 0.0f;
                        }
                    }
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

static int reserve(co_layer *l, conv_impl *c, int batch)
{
    if (batch <= c->capacity) return 0;
    size_t P = (size_t)l->out_h * l->out_w, K = (size_t)l->cols;
    free(c->col);
    free(c->rows);
    free(c->dcol);
    c->col = co_falloc((size_t)batch * P * K);
    c->rows = co_falloc((size_t)batch * P * l->out_c);
    c->dcol = co_falloc((size_t)batch * P * K);
    c->capacity = (c->col && c->rows && c->dcol) ? batch : 0;
    return c->capacity ? 0 : -1;
}

static void conv_fwd(co_layer *l, const float *x, float *y, int batch, int train)
{
    (void)train;
    conv_impl *c = l->impl;
    if (reserve(l, c, batch)) {
        /* Out of memory: a NaN output is caught by the training loop's finiteness check. */
        for (size_t i = 0; i < (size_t)batch * l->out_size; i++) y[i] = NAN;
        return;
    }
    int P = l->out_h * l->out_w, K = l->cols, OC = l->out_c;
    c->batch = batch;
    c->have_grad = 0;
    co_im2col(c->col, x, batch, l->in_c, l->in_h, l->in_w, c->k, c->stride, c->pad, c->dil, l->out_h, l->out_w);
    /* rows = col W^T (+ b), then NCHW. */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, batch * P, OC, K, 1.0f, c->col, K, l->param[0], K, 0.0f,
                c->rows, OC);
    for (int s = 0; s < batch; s++)
        for (int o = 0; o < OC; o++) {
            float b = l->param[1][o];
            float *dst = y + ((size_t)s * OC + o) * P;
            const float *src = c->rows + (size_t)s * P * OC + o;
            for (int p = 0; p < P; p++) dst[p] = src[(size_t)p * OC] + b;
        }
}

static void conv_bwd(co_layer *l, const float *x, const float *y, const float *dy, float *dx, int batch)
{
    (void)x;
    (void)y;
    conv_impl *c = l->impl;
    int P = l->out_h * l->out_w, K = l->cols, OC = l->out_c;
    /* NCHW gradient to rows: the per-position output gradients K-FAC reads. */
    for (int s = 0; s < batch; s++)
        for (int o = 0; o < OC; o++) {
            const float *src = dy + ((size_t)s * OC + o) * P;
            float *dst = c->rows + (size_t)s * P * OC + o;
            for (int p = 0; p < P; p++) dst[(size_t)p * OC] = src[p];
        }
    c->have_grad = 1;
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, OC, K, batch * P, 1.0f, c->rows, OC, c->col, K, 0.0f,
                l->grad[0], K);
    for (int o = 0; o < OC; o++) l->grad[1][o] = 0.0f;
    for (size_t r = 0; r < (size_t)batch * P; r++)
        for (int o = 0; o < OC; o++) l->grad[1][o] += c->rows[r * OC + o];
    if (dx) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, batch * P, K, OC, 1.0f, c->rows, OC, l->param[0], K,
                    0.0f, c->dcol, K);
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
    for (int t = 0; t < 2; t++)
        for (size_t i = 0; i < l->size[t]; i++) l->param[t][i] = (float)((2.0 * co_rng_uniform(r) - 1.0) * bound);
}

static void conv_describe(const co_layer *l, char *buf, size_t len)
{
    const conv_impl *c = l->impl;
    snprintf(buf, len, "Conv2d(%d->%d, k%d s%d p%d d%d, %dx%d->%dx%d)", l->in_c, l->out_c, c->k, c->stride, c->pad,
             c->dil, l->in_h, l->in_w, l->out_h, l->out_w);
}

static void conv_free(co_layer *l)
{
    conv_impl *c = l->impl;
    if (c) {
        free(c->col);
        free(c->rows);
        free(c->dcol);
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
    int span = dilation * (k - 1) + 1;
    int oh = (in_h + 2 * pad - span) / stride + 1, ow = (in_w + 2 * pad - span) / stride + 1;
    if (in_c < 1 || out_c < 1 || k < 1 || stride < 1 || pad < 0 || dilation < 1 || oh < 1 || ow < 1) return NULL;
    co_layer *l = calloc(1, sizeof *l);
    conv_impl *c = calloc(1, sizeof *c);
    if (!l || !c) {
        free(l);
        free(c);
        return NULL;
    }
    *c = (conv_impl){.k = k, .stride = stride, .pad = pad, .dil = dilation};
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
    l->ntensors = 2;
    l->size[0] = (size_t)l->rows * l->cols;
    l->size[1] = (size_t)out_c;
    for (int t = 0; t < 2; t++) {
        l->param[t] = co_falloc(l->size[t]);
        l->grad[t] = co_falloc(l->size[t]);
        if (!l->param[t] || !l->grad[t]) {
            co_layer_free(l);
            return NULL;
        }
    }
    return l;
}
