/* Minibatches: a fresh permutation per epoch from the shuffle stream, samples gathered
 * into a contiguous batch buffer. */
#include "curvopt.h"

#include <stdlib.h>
#include <string.h>

co_status co_loader_init(co_loader *l, const co_dataset *d, int batch, int shuffle, uint64_t seed, co_error *err)
{
    memset(l, 0, sizeof *l);
    if (batch <= 0) return co_error_set(err, CO_EINVAL, "batch size %d must be positive", batch);
    if (d->n <= 0) return co_error_set(err, CO_EINVAL, "empty dataset");
    l->data = d;
    l->batch = batch < d->n ? batch : d->n;
    l->shuffle = shuffle;
    l->order = malloc((size_t)d->n * sizeof *l->order);
    l->xb = malloc((size_t)l->batch * d->x_dim * sizeof(float));
    l->yb = malloc((size_t)l->batch * d->y_dim * sizeof(float));
    if (!l->order || !l->xb || !l->yb) {
        co_loader_free(l);
        return co_error_set(err, CO_ENOMEM, "out of memory");
    }
    for (int i = 0; i < d->n; i++) l->order[i] = i;
    co_rng_seed(&l->rng, seed, CO_STREAM_SHUFFLE);
    l->pos = d->n;
    return CO_OK;
}

void co_loader_free(co_loader *l)
{
    free(l->order);
    free(l->xb);
    free(l->yb);
    l->order = NULL;
    l->xb = l->yb = NULL;
}

void co_loader_start_epoch(co_loader *l)
{
    const co_dataset *d = l->data;
    for (int i = 0; i < d->n; i++) l->order[i] = i;
    if (l->shuffle) co_rng_shuffle(&l->rng, l->order, d->n);
    l->pos = 0;
    l->epoch++;
}

int co_loader_next(co_loader *l)
{
    const co_dataset *d = l->data;
    int b = d->n - l->pos;
    if (b <= 0) return 0;
    if (b > l->batch) b = l->batch;
    for (int i = 0; i < b; i++) {
        int s = l->order[l->pos + i];
        memcpy(l->xb + (size_t)i * d->x_dim, d->x + (size_t)s * d->x_dim, (size_t)d->x_dim * sizeof(float));
        memcpy(l->yb + (size_t)i * d->y_dim, d->y + (size_t)s * d->y_dim, (size_t)d->y_dim * sizeof(float));
    }
    l->pos += b;
    return b;
}
