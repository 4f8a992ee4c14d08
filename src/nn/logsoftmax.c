/* log-softmax over each sample's features, for CO_LOSS_NLL (torch's LogSoftmax + NLLLoss).
 * Cross-entropy on these outputs gives the same loss and the same gradient at the logits
 * (log-softmax is idempotent), though not at the layer's output. */
#include "layers.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static void lsm_fwd(co_layer *l, const float *x, float *y, int batch, int train)
{
    (void)train;
    int n = l->in_size;
#pragma omp parallel for schedule(static) if ((size_t)batch * n > 65536)
    for (int s = 0; s < batch; s++) {
        const float *z = x + (size_t)s * n;
        float *o = y + (size_t)s * n;
        double mx = z[0];
        for (int j = 1; j < n; j++) mx = fmax(mx, z[j]);
        double se = 0;
        for (int j = 0; j < n; j++) se += exp(z[j] - mx);
        double lse = mx + log(se);
        for (int j = 0; j < n; j++) o[j] = (float)(z[j] - lse);
    }
}

/* dx = dy - softmax * sum(dy), softmax = exp(y). */
static void lsm_bwd(co_layer *l, const float *x, const float *y, const float *dy, float *dx, int batch)
{
    (void)x;
    if (!dx) return;
    int n = l->in_size;
#pragma omp parallel for schedule(static) if ((size_t)batch * n > 65536)
    for (int s = 0; s < batch; s++) {
        const float *o = y + (size_t)s * n, *g = dy + (size_t)s * n;
        float *d = dx + (size_t)s * n;
        double sum = 0;
        for (int j = 0; j < n; j++) sum += g[j];
        for (int j = 0; j < n; j++) d[j] = (float)(g[j] - exp((double)o[j]) * sum);
    }
}

static void lsm_describe(const co_layer *l, char *buf, size_t len)
{
    (void)l;
    snprintf(buf, len, "LogSoftmax");
}

static const co_layer_ops lsm_ops = {"logsoftmax", lsm_fwd, lsm_bwd, NULL, lsm_describe, NULL, NULL, NULL};

co_layer *co_logsoftmax_new(int size)
{
    if (size < 1) return NULL;
    co_layer *l = calloc(1, sizeof *l);
    if (!l) return NULL;
    l->ops = &lsm_ops;
    l->in_size = l->out_size = size;
    l->in_c = l->out_c = size;
    l->in_h = l->out_h = l->in_w = l->out_w = 1;
    return l;
}
