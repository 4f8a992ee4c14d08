/* Datasets as owned float arrays, with subsets, reconstruction pairs and the seeded train/test
 * split. */
#include "curvopt.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

co_dataset *co_dataset_new(int n, int x_dim, int y_dim, co_error *err)
{
    if (n < 0 || x_dim <= 0 || y_dim <= 0) {
        co_error_set(err, CO_EINVAL, "dataset of %d samples x %d features x %d targets", n, x_dim, y_dim);
        return NULL;
    }
    co_dataset *d = calloc(1, sizeof *d);
    if (!d) goto oom;
    d->n = n;
    d->x_dim = x_dim;
    d->y_dim = y_dim;
    d->c = 1;
    d->h = 1;
    d->w = x_dim;
    d->x = calloc((size_t)(n ? n : 1) * x_dim, sizeof(float));
    d->y = calloc((size_t)(n ? n : 1) * y_dim, sizeof(float));
    if (!d->x || !d->y) goto oom;
    return d;
oom:
    co_dataset_free(d);
    co_error_set(err, CO_ENOMEM, "out of memory for a dataset of %d samples", n);
    return NULL;
}

void co_dataset_free(co_dataset *d)
{
    if (!d) return;
    free(d->x);
    free(d->y);
    free(d);
}

co_dataset *co_dataset_subset(const co_dataset *d, const int *idx, int n, co_error *err)
{
    co_dataset *s = co_dataset_new(n, d->x_dim, d->y_dim, err);
    if (!s) return NULL;
    s->nclasses = d->nclasses;
    s->c = d->c;
    s->h = d->h;
    s->w = d->w;
    for (int i = 0; i < n; i++) {
        if (idx[i] < 0 || idx[i] >= d->n) {
            co_dataset_free(s);
            co_error_set(err, CO_EINVAL, "subset index %d outside 0..%d", idx[i], d->n - 1);
            return NULL;
        }
        memcpy(s->x + (size_t)i * d->x_dim, d->x + (size_t)idx[i] * d->x_dim, (size_t)d->x_dim * sizeof(float));
        memcpy(s->y + (size_t)i * d->y_dim, d->y + (size_t)idx[i] * d->y_dim, (size_t)d->y_dim * sizeof(float));
    }
    return s;
}

co_dataset *co_dataset_reconstruction(const co_dataset *d, co_error *err)
{
    co_dataset *r = co_dataset_new(d->n, d->x_dim, d->x_dim, err);
    if (!r) return NULL;
    r->c = d->c;
    r->h = d->h;
    r->w = d->w;
    memcpy(r->x, d->x, (size_t)d->n * d->x_dim * sizeof(float));
    memcpy(r->y, d->x, (size_t)d->n * d->x_dim * sizeof(float));
    return r;
}

co_status co_dataset_split(const co_dataset *d, double test_frac, uint64_t seed, co_dataset **train,
                           co_dataset **test, co_error *err)
{
    *train = *test = NULL;
    if (!(test_frac > 0 && test_frac < 1))
        return co_error_set(err, CO_EINVAL, "test fraction %g must be in (0, 1)", test_frac);
    int n_test = (int)ceil(test_frac * d->n);
    int n_train = d->n - n_test;
    if (n_test < 1 || n_train < 1)
        return co_error_set(err, CO_EINVAL, "splitting %d samples with test fraction %g leaves an empty part", d->n,
                            test_frac);
    int *perm = malloc((size_t)d->n * sizeof *perm);
    if (!perm) return co_error_set(err, CO_ENOMEM, "out of memory");
    for (int i = 0; i < d->n; i++) perm[i] = i;
    co_rng r;
    co_rng_seed(&r, seed, CO_STREAM_SPLIT);
    co_rng_shuffle(&r, perm, d->n);
    /* As scikit-learn's ShuffleSplit: the first n_test of the permutation are the test set. */
    *test = co_dataset_subset(d, perm, n_test, err);
    *train = *test ? co_dataset_subset(d, perm + n_test, n_train, err) : NULL;
    free(perm);
    if (!*train) {
        co_dataset_free(*test);
        *test = NULL;
        return err ? err->code : CO_ENOMEM;
    }
    return CO_OK;
}
