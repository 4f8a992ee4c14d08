/* Losses as the mean over the batch, with the gradient of that mean. Reductions are
 * accumulated in double, by blocks of CO_BATCH_BLOCK samples added with the pairwise tree
 * (core/blas.h): the same decomposition as the gradients, so that ranks holding whole
 * blocks add up to the one-process loss exactly (co_loss_shard). */
#include "curvopt.h"
#include "../core/blas.h"

#include <math.h>
#include <stdlib.h>

static double log_sigmoid(double x) { return x >= 0 ? -log1p(exp(-x)) : x - log1p(exp(x)); }

/* Loss terms of samples [s0, s1) added in order; dout gets each term's gradient over den. */
static double block_sum(co_loss_kind kind, const float *out, const float *y, int s0, int s1, int dim, double den,
                        float *dout)
{
    double total = 0;
    size_t i0 = (size_t)s0 * dim, i1 = (size_t)s1 * dim;
    switch (kind) {
    case CO_LOSS_BCE_LOGITS:
        /* -[y log s(x) + (1-y) log s(-x)]; d/dx = s(x) - y */
        for (size_t i = i0; i < i1; i++) {
            double x = out[i], t = y[i];
            total -= t * log_sigmoid(x) + (1 - t) * log_sigmoid(-x);
            if (dout) {
                double s = x >= 0 ? 1 / (1 + exp(-x)) : exp(x) / (1 + exp(x));
                dout[i] = (float)((s - t) / den);
            }
        }
        break;
    case CO_LOSS_BCE:
        /* torch.nn.BCELoss: logs clamped at -100; gradient (p - y) / max(p(1-p), 1e-12). */
        for (size_t i = i0; i < i1; i++) {
            double p = out[i], t = y[i];
            double lp = p > 0 ? fmax(log(p), -100.0) : -100.0;
            double lq = p < 1 ? fmax(log1p(-p), -100.0) : -100.0;
            total -= t * lp + (1 - t) * lq;
            if (dout) dout[i] = (float)((p - t) / fmax((1 - p) * p, 1e-12) / den);
        }
        break;
    case CO_LOSS_CROSS_ENTROPY:
        for (int b = s0; b < s1; b++) {
            const float *z = out + (size_t)b * dim;
            int label = (int)y[b];
            double mx = z[0];
            for (int j = 1; j < dim; j++) mx = fmax(mx, z[j]);
            double se = 0;
            for (int j = 0; j < dim; j++) se += exp(z[j] - mx);
            double lse = mx + log(se);
            total += lse - (label >= 0 && label < dim ? z[label] : 0.0);
            if (dout)
                for (int j = 0; j < dim; j++) dout[(size_t)b * dim + j] = (float)((exp(z[j] - lse) - (j == label)) / den);
        }
        break;
    case CO_LOSS_NLL:
        for (int b = s0; b < s1; b++) {
            int label = (int)y[b];
            int ok = label >= 0 && label < dim;
            total -= ok ? out[(size_t)b * dim + label] : 0.0;
            if (dout)
                for (int j = 0; j < dim; j++) dout[(size_t)b * dim + j] = j == label ? (float)(-1.0 / den) : 0.0f;
        }
        break;
    case CO_LOSS_MSE:
        for (size_t i = i0; i < i1; i++) {
            double d = (double)out[i] - y[i];
            total += d * d;
            if (dout) dout[i] = (float)(2 * d / den);
        }
        break;
    }
    return total;
}

static int per_element(co_loss_kind kind) { return kind == CO_LOSS_BCE_LOGITS || kind == CO_LOSS_BCE || kind == CO_LOSS_MSE; }

double co_loss_shard(co_loss_kind kind, const float *out, const float *y, int batch, int dim, int total, float *dout)
{
    if ((int)kind < CO_LOSS_BCE_LOGITS || kind > CO_LOSS_NLL) return NAN;
    /* The gradient of the minibatch mean: each term's derivative over the number of terms. */
    double terms = per_element(kind) ? (double)total * dim : (double)total;
    int nb = (batch + CO_BATCH_BLOCK - 1) / CO_BATCH_BLOCK;
    double one[1], *sums = nb <= 1 ? one : malloc((size_t)nb * sizeof *sums);
    if (!sums) return NAN;
    for (int b = 0; b < nb; b++) {
        int s0 = b * CO_BATCH_BLOCK, s1 = s0 + CO_BATCH_BLOCK < batch ? s0 + CO_BATCH_BLOCK : batch;
        sums[b] = block_sum(kind, out, y, s0, s1, dim, terms, dout);
    }
    double sum = co_tree_sum_d(sums, nb);
    if (sums != one) free(sums);
    return sum;
}

double co_loss(co_loss_kind kind, const float *out, const float *y, int batch, int dim, float *dout)
{
    double terms = per_element(kind) ? (double)batch * dim : (double)batch;
    return co_loss_shard(kind, out, y, batch, dim, batch, dout) / terms;
}

int co_correct(co_loss_kind kind, const float *out, const float *y, int batch, int dim)
{
    int c = 0;
    for (int b = 0; b < batch; b++) {
        const float *z = out + (size_t)b * dim;
        switch (kind) {
        case CO_LOSS_BCE_LOGITS: c += (z[0] > 0.0f) == (y[b] > 0.5f); break;
        case CO_LOSS_BCE: c += (z[0] > 0.5f) == (y[b] > 0.5f); break;
        case CO_LOSS_NLL:
        case CO_LOSS_CROSS_ENTROPY: {
            int best = 0;
            for (int j = 1; j < dim; j++)
                if (z[j] > z[best]) best = j;
            c += best == (int)y[b];
            break;
        }
        case CO_LOSS_MSE: break;
        }
    }
    return c;
}
