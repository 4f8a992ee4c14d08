/* Inverted dropout. The mask of the last training forward is kept for backward; the layer
 * owns its RNG stream, re-seeded by co_model_init, so a run stays a function of its seed. */
#include "layers.h"

#include <stdio.h>
#include <stdlib.h>

typedef struct {
    double p;
    co_rng rng;
    int capacity;
    uint8_t *mask;
    int train; /* the last forward was in training mode */
} drop_impl;

static void skip_draws(co_rng *r, size_t n)
{
    for (size_t i = 0; i < n; i++) (void)co_rng_u64(r);
}

static void drop_fwd(co_layer *l, const float *x, float *y, int batch, int train)
{
    drop_impl *d = l->impl;
    size_t n = (size_t)batch * l->in_size;
    d->train = train && d->p > 0;
    if (!d->train) {
        for (size_t i = 0; i < n; i++) y[i] = x[i];
        return;
    }
    if (batch > d->capacity) {
        free(d->mask);
        d->mask = malloc(n);
        d->capacity = d->mask ? batch : 0;
    }
    float scale = (float)(1.0 / (1.0 - d->p));
    /* A shard draws where the whole minibatch would: past the rows before it, and after it
     * past the rows that follow (one draw per element). */
    int total = l->shard_total, before = total ? l->shard_offset : 0, after = total ? total - before - batch : 0;
    skip_draws(&d->rng, (size_t)before * l->in_size);
    for (size_t i = 0; i < n; i++) {
        uint8_t keep = d->mask ? co_rng_uniform(&d->rng) >= d->p : 1;
        if (d->mask) d->mask[i] = keep;
        y[i] = keep ? x[i] * scale : 0.0f;
    }
    skip_draws(&d->rng, after > 0 ? (size_t)after * l->in_size : 0);
}

static void drop_bwd(co_layer *l, const float *x, const float *y, const float *dy, float *dx, int batch)
{
    (void)x;
    (void)y;
    if (!dx) return;
    drop_impl *d = l->impl;
    size_t n = (size_t)batch * l->in_size;
    float scale = d->train ? (float)(1.0 / (1.0 - d->p)) : 1.0f;
    for (size_t i = 0; i < n; i++) dx[i] = (!d->train || (d->mask && d->mask[i])) ? dy[i] * scale : 0.0f;
}

static void drop_init(co_layer *l, co_rng *r)
{
    drop_impl *d = l->impl;
    /* Its own stream, derived from the model's init stream: independent of the weights'. */
    co_rng_seed(&d->rng, co_rng_u64(r), CO_STREAM_DROPOUT);
}

static void drop_describe(const co_layer *l, char *buf, size_t len)
{
    const drop_impl *d = l->impl;
    snprintf(buf, len, "Dropout(p=%g)", d->p);
}

static void drop_free(co_layer *l)
{
    drop_impl *d = l->impl;
    if (d) free(d->mask);
    free(d);
}

static void *drop_state(co_layer *l, size_t *bytes)
{
    drop_impl *d = l->impl;
    *bytes = sizeof d->rng;
    return &d->rng;
}

static const co_layer_ops drop_ops = {"dropout", drop_fwd, drop_bwd, drop_init, drop_describe, drop_free, NULL,
                                      drop_state};

co_layer *co_dropout_new(int size, double p)
{
    if (size < 1 || !(p >= 0 && p < 1)) return NULL;
    co_layer *l = calloc(1, sizeof *l);
    drop_impl *d = calloc(1, sizeof *d);
    if (!l || !d) {
        free(l);
        free(d);
        return NULL;
    }
    d->p = p;
    co_rng_seed(&d->rng, 0, CO_STREAM_DROPOUT);
    l->ops = &drop_ops;
    l->impl = d;
    l->in_size = l->out_size = size;
    return l;
}
