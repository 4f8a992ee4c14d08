/* BatchNorm2d with torch's semantics. Channels are independent, so both passes run one
 * channel per OpenMP iteration; every per-channel reduction is accumulated in double. */
#include "layers.h"
#include "../core/alloc.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BN_EPS 1e-5
#define BN_MOMENTUM 0.1

typedef struct {
    float *running; /* running mean [C] then running variance [C]: the layer's state */
    double *mean, *invstd; /* what the last forward normalised with */
    int train;             /* the last forward used batch statistics */
} bn_impl;

static void bn_fwd(co_layer *l, const float *x, float *y, int batch, int train)
{
    bn_impl *b = l->impl;
    int C = l->in_c;
    size_t HW = (size_t)l->in_h * l->in_w, n = (size_t)batch * HW;
    float *rmean = b->running, *rvar = b->running + C;
    const float *gamma = l->param[0], *beta = l->param[1];
    b->train = train;
#pragma omp parallel for schedule(static) if (n * C > 65536)
    for (int c = 0; c < C; c++) {
        double mean, invstd;
        if (train) {
            double sum = 0;
            for (int s = 0; s < batch; s++) {
                const float *xs = x + ((size_t)s * C + c) * HW;
                for (size_t i = 0; i < HW; i++) sum += xs[i];
            }
            mean = sum / (double)n;
            /* Two passes: no cancellation when the mean is large against the spread. */
            double ss = 0;
            for (int s = 0; s < batch; s++) {
                const float *xs = x + ((size_t)s * C + c) * HW;
                for (size_t i = 0; i < HW; i++) {
                    double d = xs[i] - mean;
                    ss += d * d;
                }
            }
            double var = ss / (double)n;
            invstd = 1.0 / sqrt(var + BN_EPS);
            rmean[c] = (float)((1 - BN_MOMENTUM) * rmean[c] + BN_MOMENTUM * mean);
            /* torch keeps the unbiased variance; a single value per channel has none, so the
             * running variance is left as it was (torch refuses such a batch). */
            if (n > 1) rvar[c] = (float)((1 - BN_MOMENTUM) * rvar[c] + BN_MOMENTUM * var * (double)n / (double)(n - 1));
        } else {
            mean = rmean[c];
            invstd = 1.0 / sqrt((double)rvar[c] + BN_EPS);
        }
        b->mean[c] = mean;
        b->invstd[c] = invstd;
        float scale = (float)(gamma[c] * invstd), shift = beta[c], m = (float)mean;
        for (int s = 0; s < batch; s++) {
            const float *xs = x + ((size_t)s * C + c) * HW;
            float *ys = y + ((size_t)s * C + c) * HW;
            for (size_t i = 0; i < HW; i++) ys[i] = (xs[i] - m) * scale + shift;
        }
    }
}

/* Training mode: y depends on x also through the batch mean and variance, so
 * dx = gamma invstd / n (n dy - sum dy - xhat sum(dy xhat)). Eval mode: an affine map. */
static void bn_bwd(co_layer *l, const float *x, const float *y, const float *dy, float *dx, int batch)
{
    (void)y;
    bn_impl *b = l->impl;
    int C = l->in_c;
    size_t HW = (size_t)l->in_h * l->in_w, n = (size_t)batch * HW;
    const float *gamma = l->param[0];
    float *dgamma = l->grad[0], *dbeta = l->grad[1];
#pragma omp parallel for schedule(static) if (n * C > 65536)
    for (int c = 0; c < C; c++) {
        double mean = b->mean[c], invstd = b->invstd[c];
        double sdy = 0, sdyx = 0;
        for (int s = 0; s < batch; s++) {
            const float *xs = x + ((size_t)s * C + c) * HW, *gs = dy + ((size_t)s * C + c) * HW;
            for (size_t i = 0; i < HW; i++) {
                sdy += gs[i];
                sdyx += gs[i] * ((xs[i] - mean) * invstd);
            }
        }
        dgamma[c] = (float)sdyx;
        dbeta[c] = (float)sdy;
        if (!dx) continue;
        double k = gamma[c] * invstd;
        /* dx = k dy - k sdy / n - k sdyx invstd (x - mean) / n in training mode */
        float a = (float)k, m = (float)mean;
        float bx = b->train ? (float)(-k * sdyx * invstd / (double)n) : 0.0f;
        float c0 = b->train ? (float)(-k * sdy / (double)n) : 0.0f;
        for (int s = 0; s < batch; s++) {
            const float *xs = x + ((size_t)s * C + c) * HW, *gs = dy + ((size_t)s * C + c) * HW;
            float *ds = dx + ((size_t)s * C + c) * HW;
            for (size_t i = 0; i < HW; i++) ds[i] = a * gs[i] + bx * (xs[i] - m) + c0;
        }
    }
}

/* torch: weight 1, bias 0, running mean 0, running variance 1. */
static void bn_init(co_layer *l, co_rng *r)
{
    (void)r;
    bn_impl *b = l->impl;
    int C = l->in_c;
    for (int c = 0; c < C; c++) {
        l->param[0][c] = 1.0f;
        l->param[1][c] = 0.0f;
        b->running[c] = 0.0f;
        b->running[C + c] = 1.0f;
    }
}

static void bn_describe(const co_layer *l, char *buf, size_t len)
{
    snprintf(buf, len, "BatchNorm2d(%d, %dx%d)", l->in_c, l->in_h, l->in_w);
}

static void bn_free(co_layer *l)
{
    bn_impl *b = l->impl;
    if (b) {
        free(b->running);
        free(b->mean);
        free(b->invstd);
        free(b);
    }
    for (int t = 0; t < 2; t++) {
        free(l->param[t]);
        free(l->grad[t]);
    }
}

static void *bn_state(co_layer *l, size_t *bytes)
{
    bn_impl *b = l->impl;
    *bytes = 2 * (size_t)l->in_c * sizeof(float);
    return b->running;
}

static const co_layer_ops bn_ops = {"batchnorm2d", bn_fwd, bn_bwd, bn_init, bn_describe, bn_free, NULL, bn_state};

co_layer *co_batchnorm2d_new(int c, int h, int w)
{
    if (c < 1 || h < 1 || w < 1) return NULL;
    co_layer *l = calloc(1, sizeof *l);
    bn_impl *b = calloc(1, sizeof *b);
    if (!l || !b) {
        free(l);
        free(b);
        return NULL;
    }
    l->ops = &bn_ops;
    l->impl = b;
    l->in_c = l->out_c = c;
    l->in_h = l->out_h = h;
    l->in_w = l->out_w = w;
    l->in_size = l->out_size = c * h * w;
    l->group_kind = CO_GROUP_DENSE;
    l->ntensors = 2;
    l->size[0] = l->size[1] = (size_t)c;
    l->couples_batch = 1;
    b->running = co_falloc(2 * (size_t)c);
    b->mean = co_dalloc((size_t)c);
    b->invstd = co_dalloc((size_t)c);
    if (!b->running || !b->mean || !b->invstd) {
        co_layer_free(l);
        return NULL;
    }
    if (!co_layer_alloc_params(l)) return NULL;
    bn_init(l, NULL);
    return l;
}
