/* Aligned allocation for float buffers: 64-byte alignment lets the compiler vectorise
 * the optimizer loops without peeling. */
#ifndef CO_CORE_ALLOC_H
#define CO_CORE_ALLOC_H

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

static inline float *co_falloc(size_t n)
{
    size_t bytes = (n * sizeof(float) + 63) & ~(size_t)63;
    if (bytes == 0) bytes = 64;
    float *p = aligned_alloc(64, bytes);
    if (p) memset(p, 0, bytes);
    return p;
}

static inline double *co_dalloc(size_t n)
{
    return calloc(n ? n : 1, sizeof(double));
}

#endif
