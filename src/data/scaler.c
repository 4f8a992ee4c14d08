/* StandardScaler: per-feature mean and population standard deviation of the training
 * split, applied to any split. A constant feature keeps scale 1, as scikit-learn does. */
#include "curvopt.h"

#include <math.h>
#include <stdlib.h>

co_status co_scaler_fit(co_scaler *s, const co_dataset *d, co_error *err)
{
    /* Checked before allocating: a failed fit leaves nothing to free. */
    if (d->n == 0) return co_error_set(err, CO_EINVAL, "cannot fit a scaler on an empty dataset");
    s->dim = d->x_dim;
    s->mean = calloc((size_t)d->x_dim, sizeof *s->mean);
    s->scale = calloc((size_t)d->x_dim, sizeof *s->scale);
    if (!s->mean || !s->scale) {
        co_scaler_free(s);
        return co_error_set(err, CO_ENOMEM, "out of memory");
    }
    for (int j = 0; j < d->x_dim; j++) {
        double m = 0, v = 0;
        for (int i = 0; i < d->n; i++) m += d->x[(size_t)i * d->x_dim + j];
        m /= d->n;
        for (int i = 0; i < d->n; i++) {
            double e = d->x[(size_t)i * d->x_dim + j] - m;
            v += e * e;
        }
        double sd = sqrt(v / d->n);
        s->mean[j] = m;
        s->scale[j] = sd > 0 ? sd : 1.0;
    }
    return CO_OK;
}

void co_scaler_apply(const co_scaler *s, co_dataset *d)
{
    for (int i = 0; i < d->n; i++)
        for (int j = 0; j < s->dim; j++) {
            float *x = &d->x[(size_t)i * d->x_dim + j];
            *x = (float)(((double)*x - s->mean[j]) / s->scale[j]);
        }
}

void co_scaler_free(co_scaler *s)
{
    free(s->mean);
    free(s->scale);
    s->mean = s->scale = NULL;
}
