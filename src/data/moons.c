/* make_moons as scikit-learn builds it: n/2 points on the outer half circle
 * (cos t, sin t), the rest on the inner one (1 - cos t, 0.5 - sin t), t = linspace(0, pi),
 * the samples shuffled, then N(0, noise^2) added to each coordinate. The random numbers
 * are curvopt's (stream CO_STREAM_DATA), not numpy's. */
#include "curvopt.h"

#include <math.h>
#include <stdlib.h>

static double linspace_pi(int i, int n) { return n > 1 ? M_PI * (double)i / (double)(n - 1) : 0.0; }

co_dataset *co_make_moons(int n, double noise, uint64_t seed, co_error *err)
{
    if (n < 2 || n > 100000000) {
        co_error_set(err, CO_EINVAL, "make_moons: %d samples (expected 2..1e8)", n);
        return NULL;
    }
    if (!(noise >= 0) || !isfinite(noise)) {
        co_error_set(err, CO_EINVAL, "make_moons: noise %g must be >= 0", noise);
        return NULL;
    }
    co_dataset *d = co_dataset_new(n, 2, 1, err);
    if (!d) return NULL;
    d->nclasses = 2;
    int n_out = n / 2, n_in = n - n_out;
    int *perm = malloc((size_t)n * sizeof *perm);
    if (!perm) {
        co_dataset_free(d);
        co_error_set(err, CO_ENOMEM, "out of memory");
        return NULL;
    }
    for (int i = 0; i < n; i++) perm[i] = i;
    co_rng r;
    co_rng_seed(&r, seed, CO_STREAM_DATA);
    co_rng_shuffle(&r, perm, n);
    for (int i = 0; i < n; i++) {
        int src = perm[i];
        double x, y;
        if (src < n_out) {
            double t = linspace_pi(src, n_out);
            x = cos(t);
            y = sin(t);
            d->y[i] = 0.0f;
        } else {
            double t = linspace_pi(src - n_out, n_in);
            x = 1.0 - cos(t);
            y = 1.0 - sin(t) - 0.5;
            d->y[i] = 1.0f;
        }
        d->x[2 * i] = (float)x;
        d->x[2 * i + 1] = (float)y;
    }
    for (int i = 0; i < 2 * n; i++) d->x[i] = (float)((double)d->x[i] + noise * co_rng_normal(&r));
    free(perm);
    return d;
}
