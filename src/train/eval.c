/* Mean loss and accuracy of a model over a dataset, in eval mode and in batches. */
#include "curvopt.h"

#include <math.h>
#include <stdlib.h>

/* A reconstruction or a regression has no "correct": 0 would read as a failed classifier. */
static int classifies(co_loss_kind loss, const co_dataset *d) { return loss != CO_LOSS_MSE && d->y_dim == 1; }

/* Samples [i, i + b): the loss summed as the batch's mean times b, and the correct ones. */
static co_status eval_batch(co_model *m, const co_dataset *d, co_loss_kind loss, int i, int b, double *sum,
                            long *correct, co_error *err)
{
    int dim = co_model_out_size(m);
    const float *out = co_model_forward(m, d->x + (size_t)i * d->x_dim, b, 0, err);
    if (!out) return err && err->code ? err->code : CO_ENOMEM;
    const float *y = d->y + (size_t)i * d->y_dim;
    *sum = co_loss(loss, out, y, b, dim, NULL) * b;
    *correct = classifies(loss, d) ? co_correct(loss, out, y, b, dim) : 0;
    return CO_OK;
}

static void finish(const co_dataset *d, co_loss_kind loss, double total, long correct, double *mean_loss,
                   double *accuracy)
{
    if (mean_loss) *mean_loss = d->n ? total / d->n : 0;
    if (accuracy) *accuracy = !classifies(loss, d) ? NAN : d->n ? (double)correct / d->n : 0;
}

co_status co_evaluate(co_model *m, const co_dataset *d, co_loss_kind loss, int batch, double *mean_loss,
                      double *accuracy, co_error *err)
{
    double total = 0;
    long correct = 0;
    if (batch <= 0) batch = 256;
    for (int i = 0; i < d->n; i += batch) {
        int b = d->n - i < batch ? d->n - i : batch;
        double sum = 0;
        long c = 0;
        co_status st = eval_batch(m, d, loss, i, b, &sum, &c, err);
        if (st) return st;
        total += sum;
        correct += c;
    }
    finish(d, loss, total, correct, mean_loss, accuracy);
    return CO_OK;
}

co_status co_evaluate_collective(co_model *m, const co_dataset *d, co_loss_kind loss, int batch,
                                 const co_collective *c, double *mean_loss, double *accuracy, co_error *err)
{
    if (!c || c->size <= 1) return co_evaluate(m, d, loss, batch, mean_loss, accuracy, err);
    if (batch <= 0) batch = 256;
    /* The batches in runs, one run per rank; per batch (loss sum, correct, failed), -0.0 where
     * another rank has it, so that the sum over ranks is every value exactly and the totals
     * add up in co_evaluate's order. */
    int nb = (d->n + batch - 1) / batch;
    double *v = malloc(3 * (size_t)(nb ? nb : 1) * sizeof *v);
    if (!v) return co_error_set(err, CO_ENOMEM, "out of memory");
    for (size_t i = 0; i < 3 * (size_t)nb; i++) v[i] = -0.0;
    int lo = (int)((long long)nb * c->rank / c->size), hi = (int)((long long)nb * (c->rank + 1) / c->size);
    co_error local = {0};
    for (int k = lo; k < hi; k++) {
        int i = k * batch, b = d->n - i < batch ? d->n - i : batch;
        long correct = 0;
        if (eval_batch(m, d, loss, i, b, &v[3 * k], &correct, &local)) v[3 * k + 2] = 1;
        v[3 * k + 1] = (double)correct;
    }
    co_status st = c->allreduce_sum(c->ctx, NULL, 0, v, 3 * (size_t)nb, err);
    double total = 0;
    long correct = 0;
    for (int k = 0; k < nb && st == CO_OK; k++) {
        if (v[3 * k + 2] != 0)
            st = co_error_set(err, CO_ENOMEM, "evaluation of samples %d.. failed on one of the ranks%s%s", k * batch,
                              local.msg[0] ? ": " : "", local.msg);
        total += v[3 * k];
        correct += (long)v[3 * k + 1];
    }
    free(v);
    if (st == CO_OK) finish(d, loss, total, correct, mean_loss, accuracy);
    return st;
}
