/* Max and average pooling (k x k windows, no padding; average over the whole map is global
 * pooling) and Flatten, over NCHW. Max pooling keeps the argmax of each window for backward
 * (ties: the first in row-major order; a NaN wins, as torch); in ceil mode its last window
 * may hang over the edge of the map and covers what lies inside. */
#include "layers.h"
#include "../core/blas.h"

#if defined(__AVX512F__)
#include <immintrin.h>
#endif
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int k, stride, ceil;
    int capacity;
    int *argmax; /* batch x out_size: input offset within the sample */
} pool_impl;

/* 2 x 2 windows with stride 2, LeNet's and VGG's pooling, eight outputs per step in vector
 * registers (GCC/Clang vector extensions): even and odd columns of the two input rows are
 * the four candidates, in torch's order. The tail of a row (and a whole row of LeNet's
 * 10 x 10 map) goes through masked loads and stores where the target has AVX-512, so no
 * read leaves the row; elsewhere through copies. */
typedef float v16f __attribute__((vector_size(64), aligned(4), may_alias));
typedef float v8f __attribute__((vector_size(32)));
typedef int v8i __attribute__((vector_size(32)));

/* The first n floats at p (n <= 16), zeros after them. */
static inline void load16(v16f *out, const float *p, int n)
{
    if (n == 16) {
        *out = *(const v16f *)p;
        return;
    }
#if defined(__AVX512F__)
    *out = (v16f)_mm512_maskz_loadu_ps((__mmask16)((1u << n) - 1), p);
#else
    float t[16] = {0};
    memcpy(t, p, (size_t)n * sizeof(float));
    memcpy(out, t, sizeof t);
#endif
}

/* n (<= 8) outputs of one row pair from r0 and r1 = r0 + W. */
static inline void pool2x2_8(const float *r0, const float *r1, int W, int base, float *yo, int *ao, int n)
{
    v16f a, b;
    load16(&a, r0, 2 * n);
    load16(&b, r1, 2 * n);
    v8f c[4] = {__builtin_shufflevector(a, a, 0, 2, 4, 6, 8, 10, 12, 14),
                __builtin_shufflevector(a, a, 1, 3, 5, 7, 9, 11, 13, 15),
                __builtin_shufflevector(b, b, 0, 2, 4, 6, 8, 10, 12, 14),
                __builtin_shufflevector(b, b, 1, 3, 5, 7, 9, 11, 13, 15)};
    const int shift[4] = {0, 1, W, W + 1};
    v8i even = (v8i){0, 2, 4, 6, 8, 10, 12, 14} + base;
    v8f m = c[0];
    v8i at = even;
    for (int j = 1; j < 4; j++) {
        v8i better = (c[j] > m) | (c[j] != c[j]);
        m = (v8f)(((v8i)c[j] & better) | ((v8i)m & ~better));
        at = ((even + shift[j]) & better) | (at & ~better);
    }
    if (n == 8) {
        memcpy(yo, &m, sizeof m);
        memcpy(ao, &at, sizeof at);
        return;
    }
#if defined(__AVX512F__) && defined(__AVX512VL__)
    _mm256_mask_storeu_ps(yo, (__mmask8)((1u << n) - 1), (__m256)m);
    _mm256_mask_storeu_epi32(ao, (__mmask8)((1u << n) - 1), (__m256i)at);
#else
    memcpy(yo, &m, (size_t)n * sizeof(float));
    memcpy(ao, &at, (size_t)n * sizeof(int));
#endif
}

static void pool2x2_row(const float *r0, int W, int OW, int base, float *yo, int *ao)
{
    for (int ox = 0; ox < OW; ox += 8)
        pool2x2_8(r0 + 2 * ox, r0 + W + 2 * ox, W, base + 2 * ox, yo + ox, ao + ox, OW - ox < 8 ? OW - ox : 8);
}

/* Backward of one row pair: every input of the two rows gets its window's gradient if it
 * was the window's maximum, else 0 (written, not accumulated: the windows do not overlap),
 * eight windows per step. */
static void unpool2x2_row(float *d0, int W, int OW, int base, const float *g, const int *am)
{
    for (int ox = 0; ox < OW; ox += 8) {
        int n = OW - ox < 8 ? OW - ox : 8;
        v8f gv = {0};
        v8i av = {0};
#if defined(__AVX512F__) && defined(__AVX512VL__)
        gv = (v8f)_mm256_maskz_loadu_ps((__mmask8)((1u << n) - 1), g + ox);
        av = (v8i)_mm256_maskz_loadu_epi32((__mmask8)((1u << n) - 1), am + ox);
#else
        memcpy(&gv, g + ox, (size_t)n * sizeof(float));
        memcpy(&av, am + ox, (size_t)n * sizeof(int));
#endif
        v8i even = (v8i){0, 2, 4, 6, 8, 10, 12, 14} + base + 2 * ox;
        v8f q[4];
        const int shift[4] = {0, 1, W, W + 1};
        /* + 0: a -0 gradient lands as 0 + -0 = +0, as the accumulating form gave it. */
        for (int j = 0; j < 4; j++) q[j] = (v8f)((v8i)gv & (av == even + shift[j])) + 0.0f;
        v16f r0 = __builtin_shufflevector(q[0], q[1], 0, 8, 1, 9, 2, 10, 3, 11, 4, 12, 5, 13, 6, 14, 7, 15);
        v16f r1 = __builtin_shufflevector(q[2], q[3], 0, 8, 1, 9, 2, 10, 3, 11, 4, 12, 5, 13, 6, 14, 7, 15);
        if (n == 8) {
            *(v16f *)(d0 + 2 * ox) = r0;
            *(v16f *)(d0 + W + 2 * ox) = r1;
            continue;
        }
#if defined(__AVX512F__)
        _mm512_mask_storeu_ps(d0 + 2 * ox, (__mmask16)((1u << 2 * n) - 1), (__m512)r0);
        _mm512_mask_storeu_ps(d0 + W + 2 * ox, (__mmask16)((1u << 2 * n) - 1), (__m512)r1);
#else
        memcpy(d0 + 2 * ox, &r0, 2 * (size_t)n * sizeof(float));
        memcpy(d0 + W + 2 * ox, &r1, 2 * (size_t)n * sizeof(float));
#endif
    }
}

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
    int C = l->in_c, H = l->in_h, W = l->in_w, OH = l->out_h, OW = l->out_w, k = p->k, st = p->stride;
    int *argmax = p->argmax;
    /* Selects instead of branches: which element wins is data-dependent and unpredictable.
     * A later element wins when it is larger or NaN (torch's rule). */
#pragma omp parallel for schedule(static) if ((size_t)batch * l->in_size > 65536)
    for (int s = 0; s < batch; s++)
        for (int c = 0; c < C; c++) {
            const float *xin = x + ((size_t)s * C + c) * H * W;
            size_t o = ((size_t)s * C + c) * OH * OW;
            if (k == 2 && st == 2 && 2 * OH <= H && 2 * OW <= W) {
                for (int oy = 0; oy < OH; oy++, o += OW)
                    pool2x2_row(xin + 2 * oy * W, W, OW, c * H * W + 2 * oy * W, y + o, argmax + o);
                continue;
            }
            for (int oy = 0; oy < OH; oy++) {
                int y0 = oy * st, y1 = y0 + k < H ? y0 + k : H;
                for (int ox = 0; ox < OW; ox++, o++) {
                    int x0 = ox * st, x1 = x0 + k < W ? x0 + k : W;
                    int at = y0 * W + x0;
                    float best = xin[at];
                    for (int iy = y0; iy < y1; iy++)
                        for (int ix = x0; ix < x1; ix++) {
                            float v = xin[iy * W + ix];
                            int better = (v > best) | (v != v);
                            best = better ? v : best;
                            at = better ? iy * W + ix : at;
                        }
                    y[o] = best;
                    argmax[o] = c * H * W + at;
                }
            }
        }
}

static void pool_bwd(co_layer *l, const float *x, const float *y, const float *dy, float *dx, int batch)
{
    (void)x;
    (void)y;
    if (!dx) return;
    pool_impl *p = l->impl;
    int C = l->in_c, H = l->in_h, W = l->in_w, OH = l->out_h, OW = l->out_w;
    int fast = p->k == 2 && p->stride == 2 && 2 * OH <= H && 2 * OW <= W;
#pragma omp parallel for schedule(static) if ((size_t)batch * l->in_size > 65536)
    for (int s = 0; s < batch; s++) {
        float *d = dx + (size_t)s * l->in_size;
        const int *am = p->argmax + (size_t)s * l->out_size;
        const float *g = dy + (size_t)s * l->out_size;
        if (!fast) {
            memset(d, 0, (size_t)l->in_size * sizeof(float));
            for (int o = 0; o < l->out_size; o++) d[am[o]] += g[o];
            continue;
        }
        /* An odd last row or column is in no window. */
        if (2 * OH < H || 2 * OW < W) memset(d, 0, (size_t)l->in_size * sizeof(float));
        for (int c = 0; c < C; c++)
            for (int oy = 0; oy < OH; oy++) {
                size_t o = ((size_t)c * OH + oy) * OW;
                unpool2x2_row(d + (size_t)c * H * W + 2 * oy * W, W, OW, c * H * W + 2 * oy * W, g + o, am + o);
            }
    }
}

static void pool_describe(const co_layer *l, char *buf, size_t len)
{
    const pool_impl *p = l->impl;
    snprintf(buf, len, "MaxPool2d(k%d s%d%s, %dx%d->%dx%d)", p->k, p->stride, p->ceil ? " ceil" : "", l->in_h, l->in_w,
             l->out_h, l->out_w);
}

static void pool_free(co_layer *l)
{
    pool_impl *p = l->impl;
    if (p) free(p->argmax);
    free(p);
}

static const co_layer_ops pool_ops = {"maxpool2d", pool_fwd, pool_bwd, NULL, pool_describe, pool_free, NULL, NULL};

/* The geometry both pools share: k x k windows, no padding, channels unchanged. In ceil mode
 * a last window that starts inside the map is kept (torch's rule). */
static int pool_extent(int n, int k, int stride, int ceil_mode)
{
    int out = (n - k + (ceil_mode ? stride - 1 : 0)) / stride + 1;
    if (ceil_mode && (out - 1) * stride >= n) out--;
    return out;
}

static co_layer *pool_layer(const co_layer_ops *ops, void *impl, int c, int h, int w, int k, int stride, int ceil_mode)
{
    if (c < 1 || k < 1 || stride < 1 || h < k || w < k) return NULL;
    co_layer *l = calloc(1, sizeof *l);
    if (!l) return NULL;
    l->ops = ops;
    l->impl = impl;
    l->in_c = l->out_c = c;
    l->in_h = h;
    l->in_w = w;
    l->out_h = pool_extent(h, k, stride, ceil_mode);
    l->out_w = pool_extent(w, k, stride, ceil_mode);
    l->in_size = c * h * w;
    l->out_size = c * l->out_h * l->out_w;
    return l;
}

co_layer *co_maxpool2d_new(int c, int h, int w, int k, int stride) { return co_maxpool2d_new_ex(c, h, w, k, stride, 0); }

co_layer *co_maxpool2d_new_ex(int c, int h, int w, int k, int stride, int ceil_mode)
{
    pool_impl *p = calloc(1, sizeof *p);
    co_layer *l = p ? pool_layer(&pool_ops, p, c, h, w, k, stride, ceil_mode != 0) : NULL;
    if (!l) {
        free(p);
        return NULL;
    }
    p->k = k;
    p->stride = stride;
    p->ceil = ceil_mode != 0;
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
    co_layer *l = a ? pool_layer(&avg_ops, a, c, h, w, k, stride, 0) : NULL;
    if (!l) {
        free(a);
        return NULL;
    }
    *a = (avg_impl){k, stride};
    return l;
}

/* The copies run on the threads with the activations' split of the elements, so each thread
 * copies the samples it wrote the step before: a memcpy on one thread reads half the batch
 * from the other core's cache. */
static void flat_fwd(co_layer *l, const float *x, float *y, int batch, int train)
{
    (void)train;
    co_copy(y, x, (size_t)batch * l->in_size);
}

static void flat_bwd(co_layer *l, const float *x, const float *y, const float *dy, float *dx, int batch)
{
    (void)x;
    (void)y;
    if (dx) co_copy(dx, dy, (size_t)batch * l->in_size);
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

void co_pool_geometry(const co_layer *l, int *k, int *stride, int *ceil_mode)
{
    if (l->ops == &pool_ops) {
        const pool_impl *p = l->impl;
        *k = p->k, *stride = p->stride, *ceil_mode = p->ceil;
    } else {
        const avg_impl *a = l->impl;
        *k = a->k, *stride = a->stride, *ceil_mode = 0;
    }
}
