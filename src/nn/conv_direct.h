/* Direct convolution with the batch in the vector lanes, for the layers where im2col +
 * GEMM is a poor fit: few channels and small maps (LeNet's 1->6 and 6->16), where the patch
 * matrix is many times the input and the GEMMs are too thin for BLAS.
 *
 * Sixteen samples are transposed into one block laid out [channel][y][x][sample] (the
 * input zero-padded), so every multiply-add of the convolution is one weight broadcast
 * times one vector of sixteen samples: no lane is wasted whatever the map size, stride or
 * dilation, and no bounds are checked. OpenMP runs over blocks; weight gradients are summed
 * per block, then over blocks in order, so results do not depend on the thread count. */
#ifndef CO_NN_CONV_DIRECT_H
#define CO_NN_CONV_DIRECT_H

#include <stddef.h>

typedef struct co_direct {
    int C, H, W, OC, K, S, P, D;
    int Hp, Wp, OH, OW, npos, npos_padded;
    int *inoff;  /* per output position (padded to the position block): top-left input offset */
    int *tapoff; /* per tap: offset from the window's top-left corner */
} co_direct;

/* 0 on success, -1 on a geometry the output would be empty for, or out of memory. */
int co_direct_init(co_direct *d, int C, int H, int W, int OC, int K, int S, int P, int D);
void co_direct_free(co_direct *d);
/* Floats of scratch one thread needs. */
size_t co_direct_scratch(const co_direct *d);
/* Floats of the per-block weight/bias gradient partial sums for a batch. */
size_t co_direct_partials(const co_direct *d, int batch);
/* scratch: nthreads x co_direct_scratch floats, nthreads >= omp_get_max_threads(). */
void co_direct_forward(const co_direct *d, const float *x, const float *w, const float *b, float *y, int batch,
                       float *scratch);
/* dw (and db when non-NULL) are written; dx when non-NULL. */
void co_direct_backward(const co_direct *d, const float *x, const float *w, const float *dy, float *dx, float *dw,
                        float *db, int batch, float *scratch, float *partials);

#endif
