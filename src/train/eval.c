/* Mean loss and accuracy of a model over a dataset, in eval mode and in batches. */
#include "curvopt.h"

#include <math.h>
#include <stdlib.h>

co_status co_evaluate(co_model *m, const co_dataset *d, co_loss_kind loss, int batch, double *mean_loss,
                      double *accuracy, co_error *err)
{
    double total = 0;
    long correct = 0;
    if (batch <= 0) batch = 256;
    int dim = co_model_out_size(m);
    /* A reconstruction or a regression has no "correct": 0 would read as a failed classifier. */
    int classifies = loss != CO_LOSS_MSE && d->y_dim == 1;
    for (int i = 0; i < d->n; i += batch) {
        int b = d->n - i < batch ? d->n - i : batch;
        const float *out = co_model_forward(m, d->x + (size_t)i * d->x_dim, b, 0, err);
        if (!out) return err ? err->code : CO_ENOMEM;
        const float *y = d->y + (size_t)i * d->y_dim;
        total += co_loss(loss, out, y, b, dim, NULL) * b;
        if (classifies) correct += co_correct(loss, out, y, b, dim);
    }
    if (mean_loss) *mean_loss = d->n ? total / d->n : 0;
    if (accuracy) *accuracy = !classifies ? NAN : d->n ? (double)correct / d->n : 0;
    return CO_OK;
}
