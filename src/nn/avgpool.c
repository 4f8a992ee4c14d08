/* Average pooling over NCHW, k x k windows without padding (global pooling when k covers
 * the whole map). */
#include "layers.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

static const co_layer_ops avg_ops = {"avgpool2d", avg_fwd, avg_bwd, NULL, avg_describe, avg_free, NULL};

co_layer *co_avgpool2d_new(int c, int h, int w, int k, int stride)
{
    if (c < 1 || k < 1 || stride < 1 || h < k || w < k) return NULL;
    co_layer *l = calloc(1, sizeof *l);
    avg_impl *a = calloc(1, sizeof *a);
    if (!l || !a) {
        free(l);
        free(a);
        return NULL;
    }
    *a = (avg_impl){k, stride};
    l->ops = &avg_ops;
    l->impl = a;
    l->in_c = l->out_c = c;
    l->in_h = h;
    l->in_w = w;
    l->out_h = (h - k) / stride + 1;
    l->out_w = (w - k) / stride + 1;
    l->in_size = c * h * w;
    l->out_size = c * l->out_h * l->out_w;
    return l;
}
