/* Shared by the libFuzzer harnesses: besides memory errors and undefined behaviour (the
 * sanitizers), each harness checks the fail-closed contract and aborts when it is broken:
 * a refusal leaves exactly one line naming the input, and an accepted dataset is sane. */
#ifndef CO_FUZZ_COMMON_H
#define CO_FUZZ_COMMON_H

#include "curvopt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_REQUIRE(cond, ...)                                  \
    do {                                                         \
        if (!(cond)) {                                           \
            fprintf(stderr, "contract broken: %s: ", #cond);     \
            fprintf(stderr, __VA_ARGS__);                        \
            fputc('\n', stderr);                                 \
            abort();                                             \
        }                                                        \
    } while (0)

/* A refusal: a known status, one non-empty line that names `name` (when given). */
static inline void fuzz_check_refusal(co_status st, const co_error *e, const char *name)
{
    FUZZ_REQUIRE(st > CO_OK && st <= CO_ENOTFOUND, "status %d", (int)st);
    FUZZ_REQUIRE(e->code == st, "error code %d, status %d", (int)e->code, (int)st);
    FUZZ_REQUIRE(e->msg[0] != 0, "empty message");
    FUZZ_REQUIRE(strchr(e->msg, '\n') == NULL, "multi-line message: %s", e->msg);
    if (name) FUZZ_REQUIRE(strstr(e->msg, name) != NULL, "message does not name %s: %s", name, e->msg);
}

/* An accepted image dataset: pixels in [0, 1], labels whole classes, shape consistent. */
static inline void fuzz_check_dataset(const co_dataset *d, int nclasses)
{
    FUZZ_REQUIRE(d && d->n >= 1 && d->y_dim == 1 && d->nclasses == nclasses, "dataset header");
    FUZZ_REQUIRE((size_t)d->c * d->h * d->w == (size_t)d->x_dim, "shape %dx%dx%d vs %d", d->c, d->h, d->w, d->x_dim);
    for (size_t i = 0; i < (size_t)d->n * d->x_dim; i++)
        FUZZ_REQUIRE(d->x[i] >= 0 && d->x[i] <= 1, "pixel %zu = %g", i, d->x[i]);
    for (int i = 0; i < d->n; i++)
        FUZZ_REQUIRE(d->y[i] >= 0 && d->y[i] < nclasses && d->y[i] == (float)(int)d->y[i], "label %d = %g", i,
                     d->y[i]);
}

#endif
