/* Max and average pooling (k x k windows, no padding; average over the whole map is global
 * pooling) and Flatten, over NCHW. Max pooling keeps the argmax of each window for backward
 * (ties: the first in row-major order, as torch). */
#include "layers.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int k, stride;
    int capacity;
    int *argmax; /* batch x out_size: input offset within the sample */
} pool_impl;

static void pool_fwd(co_layer *l, const float *x, float *y, int batch, int train)
{
    (void)train;
    pool_impl *p = l->impl;
    if (batch > p->capacity) {
        free(p->argmax);
        p->argmax = malloc((size_t)batch * l->out_size * sizeof(int));
        p->capacity = p->argmax ? batch : 0;
        if (!p->argmax) {
            for (size_t i = 0; i < (size_t)batch * l->out_size; i++) y[i] = NAN;
            return;
        }
    }
    int C = l->in_c, H = l->in_h, W = l->in_w, OH = l->out_h, OW = l->out_w;
    for (int s = 0; s < batch; s++)
        for (int c = 0; c < C; c++) {
            const float *xin = x + ((size_t)s * C + c) * H * W;
            for (int oy = 0; oy < OH; oy++)
                for (int ox = 0; ox < OW; ox++) {
                    float best = -FLT_MAX;
                    int at = -1;
                    for (int ky = 0; ky < p->k; ky++)
                        for (int kx = 0; kx < p->k; kx++) {
                            int i = (oy * p->stride + ky) * W + ox * p->stride + kx;
                            if (at < 0 || xin[i] > best) {
                                best = xin[i];
                                at = i;
                            }
                        }
                    size_t o = ((size_t)s * C + c) * OH * OW + (size_t)oy * OW + ox;
                    y[o] = best;
                    p->argmax[o] = c * H * W + at;
                }
        }
}

static void pool_bwd(co_layer *l, const float *x, const float *y, const float *dy, float *dx, int batch)
{
    (void)x;
    (void)y;
    if (!dx) return;
    pool_impl *p = l->impl;
    memset(dx, 0, (size_t)batch * l->in_size * sizeof(float));
    for (int s = 0; s < batch; s++)
        for (int o = 0; o < l->out_size; o++)
            dx[(size_t)s * l->in_size + p->argmax[(size_t)s * l->out_size + o]] += dy[(size_t)s * l->out_size + o];
}

static void pool_describe(const co_layer *l, char *buf, size_t len)
{
    const pool_impl *p = l->impl;
    snprintf(buf, len, "MaxPool2d(k%d s%d, %dx%d->%dx%d)", p->k, p->stride, l->in_h, l->in_w, l->out_h, l->out_w);
}

static void pool_free(co_layer *l)
{
    pool_impl *p = l->impl;
    if (p) free(p->argmax);
    free(p);
}

static const co_layer_ops pool_ops = {"maxpool2d", pool_fwd, pool_bwd, NULL, pool_describe, pool_free, NULL, NULL};

/* The geometry both pools share: k x k windows, no padding, channels unchanged. */
static co_layer *pool_layer(const co_layer_ops *ops, void *impl, int c, int h, int w, int k, int stride)
{
    if (c < 1 || k < 1 || stride < 1 || h < k || w < k) return NULL;
    co_layer *l = calloc(1, sizeof *l);
    if (!l) return NULL;
    l->ops = ops;
    l->impl = impl;
    l->in_c = l->out_c = c;
    l->in_h = h;
    l->in_w = w;
    l->out_h = (h - k) / stride + 1;
    l->out_w = (w - k) / stride + 1;
    l->in_size = c * h * w;
    l->out_size = c * l->out_h * l->out_w;
    return l;
}

co_layer *co_maxpool2d_new(int c, int h, int w, int k, int stride)
{
    pool_impl *p = calloc(1, sizeof *p);
    co_layer *l = p ? pool_layer(&pool_ops, p, c, h, w, k, stride) : NULL;
    if (!l) {
        free(p);
        return NULL;
    }
    p->k = k;
    p->stride = stride;
    return l;
}

/* Average pooling: every window element gets an equal share of the gradient. */
typedef struct {
    int k, stride;
} avg_impl;

static void avg_fwd(co_layer *l, const float *x, float *y, int batch, int train)
{
    (void)train;
    const avg_impl *a = l->impl;
    float inv = 1.0f / (float)(a->k * a->k);
    for (int s = 0; s < batch; s++)
        for (int c = 0; c < l->in_c; c++) {
            const float *in = x + ((size_t)s * l->in_c + c) * l->in_h * l->in_w;
            float *out = y + ((size_t)s * l->out_c + c) * l->out_h * l->out_w;
            for (int oy = 0; oy < l->out_h; oy++)
                for (int ox = 0; ox < l->out_w; ox++) {
                    float sum = 0;
                    for (int ky = 0; ky < a->k; ky++)
                        for (int kx = 0; kx < a->k; kx++) sum += in[(oy * a->stride + ky) * l->in_w + ox * a->stride + kx];
                    out[oy * l->out_w + ox] = sum * inv;
                }
        }
}

static void avg_bwd(co_layer *l, const float *x, const float *y, const float *dy, float *dx, int batch)
{
    (void)x;
    (void)y;
    if (!dx) return;
    const avg_impl *a = l->impl;
    float inv = 1.0f / (float)(a->k * a->k);
    memset(dx, 0, (size_t)batch * l->in_size * sizeof(float));
    for (int s = 0; s < batch; s++)
        for (int c = 0; c < l->in_c; c++) {
            float *din = dx + ((size_t)s * l->in_c + c) * l->in_h * l->in_w;
            const float *dout = dy + ((size_t)s * l->out_c + c) * l->out_h * l->out_w;
            for (int oy = 0; oy < l->out_h; oy++)
                for (int ox = 0; ox < l->out_w; ox++) {
                    float g = dout[oy * l->out_w + ox] * inv;
                    for (int ky = 0; ky < a->k; ky++)
                        for (int kx = 0; kx < a->k; kx++) din[(oy * a->stride + ky) * l->in_w + ox * a->stride + kx] += g;
                }
        }
}

static void avg_describe(const co_layer *l, char *buf, size_t len)
{
    const avg_impl *a = l->impl;
    snprintf(buf, len, "AvgPool2d(k%d s%d, %dx%d->%dx%d)", a->k, a->stride, l->in_h, l->in_w, l->out_h, l->out_w);
}

static void avg_free(co_layer *l) { free(l->impl); }

static const co_layer_ops avg_ops = {"avgpool2d", avg_fwd, avg_bwd, NULL, avg_describe, avg_free, NULL, NULL};

co_layer *co_avgpool2d_new(int c, int h, int w, int k, int stride)
{
    avg_impl *a = calloc(1, sizeof *a);
    co_layer *l = a ? pool_layer(&avg_ops, a, c, h, w, k, stride) : NULL;
    if (!l) {
        free(a);
        return NULL;
    }
    *a = (avg_impl){k, stride};
    return l;
}

static void flat_fwd(co_layer *l, const float *x, float *y, int batch, int train)
{
    (void)train;
    memcpy(y, x, (size_t)batch * l->in_size * sizeof(float));
}

static void flat_bwd(co_layer *l, const float *x, const float *y, const float *dy, float *dx, int batch)
{
    (void)x;
    (void)y;
    if (dx) memcpy(dx, dy, (size_t)batch * l->in_size * sizeof(float));
}

static void flat_describe(const co_layer *l, char *buf, size_t len)
{
    snprintf(buf, len, "Flatten(%dx%dx%d)", l->in_c, l->in_h, l->in_w);
}

static const co_layer_ops flat_ops = {"flatten", flat_fwd, flat_bwd, NULL, flat_describe, NULL, NULL, NULL};

co_layer *co_flatten_new(int c, int h, int w)
{
    co_layer *l = calloc(1, sizeof *l);
    if (!l) return NULL;
    l->ops = &flat_ops;
    l->in_c = c;
    l->in_h = h;
    l->in_w = w;
    l->out_c = c * h * w;
    l->out_h = l->out_w = 1;
    l->in_size = l->out_size = c * h * w;
    return l;
}
