/* Losses as the mean over the batch, with the gradient of that mean. Reductions are
 * accumulated in double. */
#include "curvopt.h"

#include <math.h>

static double log_sigmoid(double x) { return x >= 0 ? -log1p(exp(-x)) : x - log1p(exp(x)); }

double co_loss(co_loss_kind kind, const float *out, const float *y, int batch, int dim, float *dout)
{
    double total = 0;
    size_t n = (size_t)batch * dim;
    switch (kind) {
    case CO_LOSS_BCE_LOGITS:
        /* -[y log s(x) + (1-y) log s(-x)]; d/dx = s(x) - y */
        for (size_t i = 0; i < n; i++) {
            double x = out[i], t = y[i];
            total -= t * log_sigmoid(x) + (1 - t) * log_sigmoid(-x);
            if (dout) {
                double s = x >= 0 ? 1 / (1 + exp(-x)) : exp(x) / (1 + exp(x));
                dout[i] = (float)((s - t) / (double)n);
            }
        }
        return total / (double)n;
    case CO_LOSS_BCE:
        /* torch.nn.BCELoss: logs clamped at -100; gradient (p - y) / max(p(1-p), 1e-12). */
        for (size_t i = 0; i < n; i++) {
            double p = out[i], t = y[i];
            double lp = p > 0 ? fmax(log(p), -100.0) : -100.0;
            double lq = p < 1 ? fmax(log1p(-p), -100.0) : -100.0;
            total -= t * lp + (1 - t) * lq;
            if (dout) dout[i] = (float)((p - t) / fmax((1 - p) * p, 1e-12) / (double)n);
        }
        return total / (double)n;
    case CO_LOSS_CROSS_ENTROPY:
        for (int b = 0; b < batch; b++) {
            const float *z = out + (size_t)b * dim;
            int label = (int)y[b];
            double mx = z[0];
            for (int j = 1; j < dim; j++) mx = fmax(mx, z[j]);
            double se = 0;
            for (int j = 0; j < dim; j++) se += exp(z[j] - mx);
            double lse = mx + log(se);
            total += lse - (label >= 0 && label < dim ? z[label] : 0.0);
            if (dout)
                for (int j = 0; j < dim; j++)
                    dout[(size_t)b * dim + j] = (float)((exp(z[j] - lse) - (j == label)) / (double)batch);
        }
        return total / (double)batch;
    case CO_LOSS_NLL:
        for (int b = 0; b < batch; b++) {
            int label = (int)y[b];
            int ok = label >= 0 && label < dim;
            total -= ok ? out[(size_t)b * dim + label] : 0.0;
            if (dout)
                for (int j = 0; j < dim; j++) dout[(size_t)b * dim + j] = j == label ? (float)(-1.0 / batch) : 0.0f;
        }
        return total / (double)batch;
    case CO_LOSS_MSE:
        for (size_t i = 0; i < n; i++) {
            double d = (double)out[i] - y[i];
            total += d * d;
            if (dout) dout[i] = (float)(2 * d / (double)n);
        }
        return total / (double)n;
    }
    return NAN;
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
