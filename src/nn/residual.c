/* torchvision's BasicBlock as one layer that runs its sub-layers itself. Buffers are
 * reused between the passes: the batch-norm outputs are needed only to form the sum, so
 * the same two buffers later carry the backward gradients. */
#include "layers.h"
#include "../core/alloc.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { CONV1, BN1, CONV2, BN2, PCONV, PBN };

typedef struct {
    int stride;
    int capacity;
    float *c1, *r1, *c2, *s1; /* conv1 out, relu(bn1) out, conv2 out, projection conv out */
    float *t1, *t2, *gsum;    /* bn2 / projection-bn outputs, then gradients */
    float *dxp;               /* the projection's input gradient */
} res_impl;

static int reserve(co_layer *l, res_impl *r, int batch)
{
    if (batch <= r->capacity) return 0;
    size_t o = (size_t)batch * l->out_size;
    float **bufs[] = {&r->c1, &r->r1, &r->c2, &r->s1, &r->t1, &r->t2, &r->gsum};
    int ok = 1;
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) {
        free(*bufs[i]);
        *bufs[i] = co_falloc(o);
        ok = ok && *bufs[i];
    }
    free(r->dxp);
    r->dxp = co_falloc((size_t)batch * l->in_size);
    ok = ok && r->dxp;
    r->capacity = ok ? batch : 0;
    return ok ? 0 : -1;
}

static void run_fwd(co_layer *l, const float *x, float *y, int batch, int train)
{
    l->ops->forward(l, x, y, batch, train);
}

static void res_fwd(co_layer *l, const float *x, float *y, int batch, int train)
{
    res_impl *r = l->impl;
    size_t n = (size_t)batch * l->out_size;
    if (reserve(l, r, batch)) {
        for (size_t i = 0; i < n; i++) y[i] = NAN;
        return;
    }
    run_fwd(l->sub[CONV1], x, r->c1, batch, train);
    run_fwd(l->sub[BN1], r->c1, r->r1, batch, train);
    float *r1 = r->r1;
#pragma omp parallel for simd schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; i++) r1[i] = r1[i] > 0.0f ? r1[i] : 0.0f;
    run_fwd(l->sub[CONV2], r->r1, r->c2, batch, train);
    run_fwd(l->sub[BN2], r->c2, r->t1, batch, train);
    const float *skip = x;
    if (l->nsub > PCONV) {
        run_fwd(l->sub[PCONV], x, r->s1, batch, train);
        run_fwd(l->sub[PBN], r->s1, r->t2, batch, train);
        skip = r->t2;
    }
    const float *t1 = r->t1;
#pragma omp parallel for simd schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; i++) {
        float v = t1[i] + skip[i];
        y[i] = v > 0.0f ? v : 0.0f;
    }
}

static void res_bwd(co_layer *l, const float *x, const float *y, const float *dy, float *dx, int batch)
{
    res_impl *r = l->impl;
    size_t n = (size_t)batch * l->out_size;
    float *g = r->gsum, *t2 = r->t2;
    const float *r1 = r->r1;
#pragma omp parallel for simd schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; i++) g[i] = y[i] > 0.0f ? dy[i] : 0.0f;
    co_layer **s = l->sub;
    /* The projection first: the batch norms' backward in reverse order of the sub-layers,
     * which is how an empty shard takes part in synchronised batch norm (co_model_backward). */
    if (l->nsub > PCONV) {
        s[PBN]->ops->backward(s[PBN], r->s1, r->t2, g, r->t2, batch);
        s[PCONV]->ops->backward(s[PCONV], x, r->s1, r->t2, dx ? r->dxp : NULL, batch);
    }
    s[BN2]->ops->backward(s[BN2], r->c2, r->t1, g, r->t1, batch);
    s[CONV2]->ops->backward(s[CONV2], r->r1, r->c2, r->t1, r->t2, batch);
#pragma omp parallel for simd schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; i++) t2[i] = r1[i] > 0.0f ? t2[i] : 0.0f;
    s[BN1]->ops->backward(s[BN1], r->c1, r->r1, r->t2, r->t1, batch);
    s[CONV1]->ops->backward(s[CONV1], x, r->c1, r->t1, dx, batch);
    size_t ni = (size_t)batch * l->in_size;
    if (l->nsub > PCONV) {
        if (dx) {
            const float *d = r->dxp;
#pragma omp parallel for simd schedule(static) if (ni > 65536)
            for (size_t i = 0; i < ni; i++) dx[i] += d[i];
        }
    } else if (dx) {
#pragma omp parallel for simd schedule(static) if (ni > 65536)
        for (size_t i = 0; i < ni; i++) dx[i] += g[i];
    }
}

static void res_describe(const co_layer *l, char *buf, size_t len)
{
    const res_impl *r = l->impl;
    snprintf(buf, len, "BasicBlock(%d->%d, s%d%s, %dx%d->%dx%d)", l->in_c, l->out_c, r->stride,
             l->nsub > PCONV ? ", projection" : "", l->in_h, l->in_w, l->out_h, l->out_w);
}

static void res_free(co_layer *l)
{
    res_impl *r = l->impl;
    if (r) {
        free(r->c1);
        free(r->r1);
        free(r->c2);
        free(r->s1);
        free(r->t1);
        free(r->t2);
        free(r->gsum);
        free(r->dxp);
        free(r);
    }
    for (int i = 0; i < l->nsub; i++) co_layer_free(l->sub[i]);
}

/* Parameters, state and initialisation live in the sub-layers (the model visits them). */
static const co_layer_ops res_ops = {"basic_block", res_fwd, res_bwd, NULL, res_describe, res_free, NULL, NULL};

co_layer *co_residual_new(int in_c, int in_h, int in_w, int out_c, int stride)
{
    if (in_c < 1 || in_h < 1 || in_w < 1 || out_c < 1 || stride < 1) return NULL;
    co_layer *l = calloc(1, sizeof *l);
    res_impl *r = calloc(1, sizeof *r);
    if (!l || !r) {
        free(l);
        free(r);
        return NULL;
    }
    l->ops = &res_ops;
    l->impl = r;
    r->stride = stride;
    int oh = (in_h - 1) / stride + 1, ow = (in_w - 1) / stride + 1;
    int project = stride != 1 || in_c != out_c;
    l->sub[CONV1] = co_conv2d_new_ex(in_c, in_h, in_w, out_c, 3, stride, 1, 1, 0);
    l->sub[BN1] = co_batchnorm2d_new(out_c, oh, ow);
    l->sub[CONV2] = co_conv2d_new_ex(out_c, oh, ow, out_c, 3, 1, 1, 1, 0);
    l->sub[BN2] = co_batchnorm2d_new(out_c, oh, ow);
    l->nsub = 4;
    if (project) {
        l->sub[PCONV] = co_conv2d_new_ex(in_c, in_h, in_w, out_c, 1, stride, 0, 1, 0);
        l->sub[PBN] = co_batchnorm2d_new(out_c, oh, ow);
        l->nsub = 6;
    }
    for (int i = 0; i < l->nsub; i++)
        if (!l->sub[i]) {
            co_layer_free(l);
            return NULL;
        }
    l->in_c = in_c;
    l->in_h = in_h;
    l->in_w = in_w;
    l->out_c = out_c;
    l->out_h = oh;
    l->out_w = ow;
    l->in_size = in_c * in_h * in_w;
    l->out_size = out_c * oh * ow;
    return l;
}
