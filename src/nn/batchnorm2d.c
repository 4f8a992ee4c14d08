/* BatchNorm2d with torch's semantics. Channels are independent, so every pass runs one
 * channel per OpenMP iteration. Every per-channel sum over the batch is accumulated in double
 * per batch block of CO_BATCH_BLOCK samples and the block sums are added with the pairwise
 * tree (co_tree_sum_d): the thread count never changes a bit, and ranks that each hold whole
 * blocks of the minibatch (co_shard) add their sums with the collective along the same tree,
 * which makes synchronised batch norm bit for bit the one-process layer. */
#include "layers.h"
#include "../core/alloc.h"
#include "../core/blas.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BN_EPS CO_BN_EPS
#define BN_MOMENTUM CO_BN_MOMENTUM

typedef struct {
    float *running; /* running mean [C] then running variance [C]: the layer's state */
    double *mean, *invstd; /* what the last forward normalised with */
    double *sums;          /* per channel, 2C: the sums one pass forms (and the ranks add up) */
    double *parts;         /* per channel, 2 x blocks: the block sums before the tree */
    int parts_blocks;      /* blocks parts has room for */
    int train;             /* the last forward used batch statistics */
} bn_impl;

static int nblocks(int batch) { return (batch + CO_BATCH_BLOCK - 1) / CO_BATCH_BLOCK; }

static int reserve_parts(co_layer *l, int batch)
{
    bn_impl *b = l->impl;
    int nb = nblocks(batch);
    if (nb <= b->parts_blocks) return 0;
    free(b->parts);
    b->parts = co_dalloc(2 * (size_t)l->in_c * nb);
    b->parts_blocks = b->parts ? nb : 0;
    return b->parts ? 0 : -1;
}

/* Sums of channel c: Σx over every block (centre NULL) or Σ(x - *centre)², tree-added. */
static double channel_sum(const co_layer *l, const float *x, int batch, int c, const double *centre)
{
    bn_impl *b = l->impl;
    int C = l->in_c, nb = nblocks(batch);
    size_t HW = (size_t)l->in_h * l->in_w;
    double *parts = b->parts + 2 * (size_t)c * b->parts_blocks;
    for (int blk = 0; blk < nb; blk++) {
        int s1 = (blk + 1) * CO_BATCH_BLOCK < batch ? (blk + 1) * CO_BATCH_BLOCK : batch;
        double acc = 0;
        for (int s = blk * CO_BATCH_BLOCK; s < s1; s++) {
            const float *xs = x + ((size_t)s * C + c) * HW;
            if (centre)
                for (size_t i = 0; i < HW; i++) {
                    double d = xs[i] - *centre;
                    acc += d * d;
                }
            else
                for (size_t i = 0; i < HW; i++) acc += xs[i];
        }
        parts[blk] = acc;
    }
    return co_tree_sum_d(parts, nb);
}

/* The ranks' sums added (a failure leaves NaN, which the training loop stops on). */
static void share_sums(const co_layer *l, double *d, size_t n)
{
    const co_collective *k = l->coll;
    if (k->allreduce_sum(k->ctx, NULL, 0, d, n, NULL))
        for (size_t i = 0; i < n; i++) d[i] = NAN;
}

/* Out of memory for the block sums: NaN out[0..nout) (the pass's output, may be NULL) and NaN
 * statistics, still added with the other ranks (the pass's `shares` collectives) so that
 * every rank keeps calling the same ones. */
static void lost_sums(const co_layer *l, float *out, size_t nout, int shares, int sync)
{
    bn_impl *b = l->impl;
    size_t n = 2 * (size_t)l->in_c;
    for (size_t i = 0; out && i < nout; i++) out[i] = NAN;
    for (size_t i = 0; i < n; i++) b->sums[i] = NAN;
    for (int k = 0; sync && k < shares; k++) share_sums(l, b->sums, n / (size_t)shares);
}

/* The minibatch's statistics are synchronised when this forward is one rank's shard of it. */
static int synced(const co_layer *l) { return l->coll && l->shard_total > 0; }

/* Training forward of channel c once sums[c] holds Σx: the mean, then Σ(x - mean)². */
static void fwd_centre(co_layer *l, const float *x, int batch, int c, double n)
{
    bn_impl *b = l->impl;
    b->mean[c] = b->sums[c] / n;
    /* Two passes: no cancellation when the mean is large against the spread. */
    b->sums[l->in_c + c] = channel_sum(l, x, batch, c, &b->mean[c]);
}

/* Channel c's normalisation once mean and sums[C + c] (training) are known; y = NULL: an
 * empty shard, statistics only. */
static void fwd_finish(co_layer *l, const float *x, float *y, int batch, int c, double n, int train)
{
    bn_impl *b = l->impl;
    int C = l->in_c;
    size_t HW = (size_t)l->in_h * l->in_w;
    float *rmean = b->running, *rvar = b->running + C;
    if (train) {
        double var = b->sums[C + c] / n;
        b->invstd[c] = 1.0 / sqrt(var + BN_EPS);
        rmean[c] = (float)((1 - BN_MOMENTUM) * rmean[c] + BN_MOMENTUM * b->mean[c]);
        /* torch keeps the unbiased variance; a single value per channel has none, so the
         * running variance is left as it was (torch refuses such a batch). */
        if (n > 1) rvar[c] = (float)((1 - BN_MOMENTUM) * rvar[c] + BN_MOMENTUM * var * n / (n - 1));
    } else {
        b->mean[c] = rmean[c];
        b->invstd[c] = 1.0 / sqrt((double)rvar[c] + BN_EPS);
    }
    float scale = (float)(l->param[0][c] * b->invstd[c]), shift = l->param[1][c], m = (float)b->mean[c];
    for (int s = 0; s < batch; s++) {
        const float *xs = x + ((size_t)s * C + c) * HW;
        float *ys = y + ((size_t)s * C + c) * HW;
        for (size_t i = 0; i < HW; i++) ys[i] = (xs[i] - m) * scale + shift;
    }
}

/* One pass per channel in one process; synchronised, the passes are split by the two sums
 * the ranks add (the same per-channel functions, so the same bits). */
static void bn_fwd(co_layer *l, const float *x, float *y, int batch, int train)
{
    bn_impl *b = l->impl;
    int C = l->in_c, sync = train && synced(l);
    size_t HW = (size_t)l->in_h * l->in_w, work = (size_t)batch * HW * C;
    /* n: values per channel in the whole minibatch. */
    double n = (double)(sync ? l->shard_total : batch) * (double)HW;
    b->train = train;
    if (batch == 0 && !sync) return; /* an empty shard of a model that is not split */
    if (train && reserve_parts(l, batch)) {
        lost_sums(l, y, work, 2, sync);
        return;
    }
    if (!sync) {
#pragma omp parallel for schedule(static) if (work > 65536)
        for (int c = 0; c < C; c++) {
            if (train) {
                b->sums[c] = channel_sum(l, x, batch, c, NULL);
                fwd_centre(l, x, batch, c, n);
            }
            fwd_finish(l, x, y, batch, c, n, train);
        }
        return;
    }
#pragma omp parallel for schedule(static) if (work > 65536)
    for (int c = 0; c < C; c++) b->sums[c] = channel_sum(l, x, batch, c, NULL);
    share_sums(l, b->sums, (size_t)C);
#pragma omp parallel for schedule(static) if (work > 65536)
    for (int c = 0; c < C; c++) fwd_centre(l, x, batch, c, n);
    share_sums(l, b->sums + C, (size_t)C);
#pragma omp parallel for schedule(static) if (work > 65536)
    for (int c = 0; c < C; c++) fwd_finish(l, x, y, batch, c, n, 1);
}

/* Σdy and Σdy x̂ of channel c into sums[c], sums[C + c]. */
static void bwd_sums(co_layer *l, const float *x, const float *dy, int batch, int c)
{
    bn_impl *b = l->impl;
    int C = l->in_c, nb = nblocks(batch);
    size_t HW = (size_t)l->in_h * l->in_w;
    double mean = b->mean[c], invstd = b->invstd[c];
    double *pdy = b->parts + 2 * (size_t)c * b->parts_blocks, *pdyx = pdy + b->parts_blocks;
    for (int blk = 0; blk < nb; blk++) {
        int s1 = (blk + 1) * CO_BATCH_BLOCK < batch ? (blk + 1) * CO_BATCH_BLOCK : batch;
        double sdy = 0, sdyx = 0;
        for (int s = blk * CO_BATCH_BLOCK; s < s1; s++) {
            const float *xs = x + ((size_t)s * C + c) * HW, *gs = dy + ((size_t)s * C + c) * HW;
            for (size_t i = 0; i < HW; i++) {
                sdy += gs[i];
                sdyx += gs[i] * ((xs[i] - mean) * invstd);
            }
        }
        pdy[blk] = sdy;
        pdyx[blk] = sdyx;
    }
    b->sums[c] = co_tree_sum_d(pdy, nb);
    b->sums[C + c] = co_tree_sum_d(pdyx, nb);
}

/* Training mode: y depends on x also through the batch mean and variance, so
 * dx = gamma invstd / n (n dy - sum dy - xhat sum(dy xhat)). Eval mode: an affine map.
 * owner: this rank reports the parameter gradients (the sums are the whole minibatch's
 * already; the other ranks report -0.0, so that the training loop's sum over ranks is them
 * exactly). */
static void bwd_finish(co_layer *l, const float *x, const float *dy, float *dx, int batch, int c, double n,
                       int owner)
{
    bn_impl *b = l->impl;
    int C = l->in_c;
    size_t HW = (size_t)l->in_h * l->in_w;
    double mean = b->mean[c], invstd = b->invstd[c], sdy = b->sums[c], sdyx = b->sums[C + c];
    l->grad[0][c] = owner ? (float)sdyx : -0.0f;
    l->grad[1][c] = owner ? (float)sdy : -0.0f;
    if (!dx) return;
    double k = l->param[0][c] * invstd;
    /* dx = k dy - k sdy / n - k sdyx invstd (x - mean) / n in training mode */
    float a = (float)k, m = (float)mean;
    float bx = b->train ? (float)(-k * sdyx * invstd / n) : 0.0f;
    float c0 = b->train ? (float)(-k * sdy / n) : 0.0f;
    for (int s = 0; s < batch; s++) {
        const float *xs = x + ((size_t)s * C + c) * HW, *gs = dy + ((size_t)s * C + c) * HW;
        float *ds = dx + ((size_t)s * C + c) * HW;
        for (size_t i = 0; i < HW; i++) ds[i] = a * gs[i] + bx * (xs[i] - m) + c0;
    }
}

static void bn_bwd(co_layer *l, const float *x, const float *y, const float *dy, float *dx, int batch)
{
    (void)y;
    bn_impl *b = l->impl;
    int C = l->in_c, sync = b->train && synced(l);
    size_t HW = (size_t)l->in_h * l->in_w, work = (size_t)batch * HW * C;
    double n = (double)(sync ? l->shard_total : batch) * (double)HW;
    if (batch == 0 && !sync) return;
    if (reserve_parts(l, batch)) {
        for (int c = 0; c < C; c++) l->grad[0][c] = l->grad[1][c] = NAN;
        lost_sums(l, dx, work, 1, sync);
        return;
    }
    if (!sync) {
#pragma omp parallel for schedule(static) if (work > 65536)
        for (int c = 0; c < C; c++) {
            bwd_sums(l, x, dy, batch, c);
            bwd_finish(l, x, dy, dx, batch, c, n, 1);
        }
        return;
    }
#pragma omp parallel for schedule(static) if (work > 65536)
    for (int c = 0; c < C; c++) bwd_sums(l, x, dy, batch, c);
    share_sums(l, b->sums, 2 * (size_t)C);
    /* The rank holding the minibatch's first row reports the parameter gradients. */
    int owner = l->shard_offset == 0 && batch > 0;
#pragma omp parallel for schedule(static) if (work > 65536)
    for (int c = 0; c < C; c++) bwd_finish(l, x, dy, dx, batch, c, n, owner);
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
        free(b->sums);
        free(b->parts);
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
    b->sums = co_dalloc(2 * (size_t)c);
    if (!b->running || !b->mean || !b->invstd || !b->sums) {
        co_layer_free(l);
        return NULL;
    }
    if (!co_layer_alloc_params(l)) return NULL;
    bn_init(l, NULL);
    return l;
}
