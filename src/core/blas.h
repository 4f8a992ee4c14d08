/* BLAS as curvopt calls it: curvopt decides how a product is split, never OpenBLAS.
 *
 * Every matrix product is cut into fixed pieces that depend only on the shapes (never on
 * the thread count), each piece is one single-threaded BLAS call, and OpenMP spreads the
 * pieces over threads. A piece computes the same bits whichever thread runs it, so a run is
 * bit-identical at any thread count on a given machine and OpenBLAS kernel.
 *
 * Sums over the batch (weight and bias gradients) are cut into blocks of CO_BATCH_BLOCK
 * samples; each block's sum is one call and the block sums are added with the canonical
 * pairwise tree (co_tree_sum). The same decomposition lets ranks that each hold whole
 * blocks reproduce a one-process run: a rank's blocks form a subtree of the same tree
 * whenever it holds a power-of-two number of them. Row pieces of products whose rows are
 * samples (forward, input gradients) are whole batch blocks too, so a sample's outputs come
 * from the same call shape wherever its block is computed.
 *
 * Row-major throughout; trans_a/trans_b are 0 or 1 as in op(X) = X or X^T. */
#ifndef CO_CORE_BLAS_H
#define CO_CORE_BLAS_H

#include <stddef.h>

/* Samples per batch block. */
#define CO_BATCH_BLOCK 32

/* The calling thread's share [*i0, *i1) of n iterations split as schedule(static) splits them
 * (contiguous, the first n % threads threads one more), for loops written as a plain call on
 * one thread below their threshold and as `omp parallel` plus this above it: an
 * `omp parallel for if (...)` whose condition is false still enters libgomp, about 0.3 µs a
 * loop, which is a tenth of the moons MLP's training step each. */
void co_thread_share(size_t n, size_t *i0, size_t *i1);
/* The one way such a loop is run: task(ctx, 0, n) on the calling thread, or, when
 * `parallel` (the caller's size threshold) holds and more than one OpenMP thread is free
 * (not already inside a parallel region), one parallel region in which each thread runs
 * task on its co_thread_share of [0, n). The loops it serves give the same results for any
 * split, so the choice changes the time only. */
typedef void (*co_range_task)(void *ctx, size_t i0, size_t i1);
void co_run_shared(size_t n, int parallel, co_range_task task, void *ctx);
/* dst[0 .. n-1] = src[0 .. n-1], on the threads (co_thread_share's split) for a large n. */
void co_copy(float *dst, const float *src, size_t n);

/* OpenBLAS's own thread count is set to 1 for the duration of a curvopt call and put back
 * afterwards (a program that also uses OpenBLAS keeps its setting). begin returns what to
 * pass to end. */
int co_blas_serial_begin(void);
void co_blas_serial_end(int saved);

/* c[m x n] = alpha op(a) op(b) + beta c. Pieces: rows of c in tiles of row_tile (0: a
 * default for products whose rows are not samples), columns in fixed tiles. */
void co_gemm(int trans_a, int trans_b, int m, int n, int k, float alpha, const float *a, int lda, const float *b,
             int ldb, float beta, float *c, int ldc, int row_tile);

/* c[m x n] (contiguous, ld n) = alpha op(a) op(b), the inner dimension k cut into blocks of
 * k_block: one product per block (block 0 straight into c, block i > 0 into work), then the
 * pairwise tree over blocks. work holds co_gemm_ksum_work floats (none for one block). */
void co_gemm_ksum(int trans_a, int trans_b, int m, int n, int k, int k_block, float alpha, const float *a, int lda,
                  const float *b, int ldb, float *c, float *work);
size_t co_gemm_ksum_work(int m, int n, int k, int k_block);

/* Upper triangle of c[n x n] = alpha a^T a for a[k x n] (row-major, ld lda), in fixed
 * square tiles (SSYRK on the diagonal, SGEMM above it). */
void co_syrk_upper(int n, int k, float alpha, const float *a, int lda, float *c, int ldc);
/* Whether co_syrk_upper(n, k, ...) spreads its own tiles over the threads (n wider than
 * one tile and enough work); a narrower product is one BLAS call, best run beside others. */
int co_syrk_is_parallel(int n, int k);

/* The canonical pairwise tree over nparts vectors of n floats: level by level, part i takes
 * part i + s for s = 1, 2, 4, ... (i a multiple of 2s), so three parts give (p0 + p1) + p2.
 * Part 0 is first, part i > 0 is rest + (i - 1) stride; the sum lands in first. */
void co_tree_sum(float *first, float *rest, size_t stride, int nparts, size_t n);
/* The same tree over nparts doubles (overwritten); returns their sum (-0.0, the additive
 * identity, for none). */
double co_tree_sum_d(double *parts, int nparts);

/* a . b in double in a fixed order that vectorises: element i goes to running sum
 * i mod CO_DOT_LANES, the sums are added by the pairwise tree at the end. The order
 * depends on nothing but n (not the thread count, not the vector width). */
#define CO_DOT_LANES 32
double co_dot_d(const float *a, const float *b, size_t n);
/* The tree at the end of co_dot_d, for loops that keep their own lanes (several sums in
 * one pass): sums the CO_DOT_LANES running sums (overwriting them). Inline: a call costs
 * more than the 31 additions, and small layers sum lanes once per few dozen elements. */
static inline double co_lanes_sum(double *lanes)
{
    for (int s = CO_DOT_LANES / 2; s > 0; s /= 2)
        for (int j = 0; j < s; j++) lanes[j] += lanes[j + s];
    return lanes[0];
}
/* The same tree, in double, over CO_DOT_LANES float running sums: for sums short enough
 * per lane (a few dozen terms of bounded size) to be kept in float, twice as many a vector
 * and without conversions. */
static inline double co_lanes_sum_f(const float *lanes)
{
    double l[CO_DOT_LANES];
    for (int j = 0; j < CO_DOT_LANES; j++) l[j] = lanes[j];
    return co_lanes_sum(l);
}

/* Bias gradient of an NCHW output gradient dy[batch][channels][positions]: each batch
 * block summed in double (sample by sample, positions in order) and rounded to float, then
 * the blocks added with co_tree_sum. work holds co_bias_grad_work floats. */
void co_bias_grad(float *db, const float *dy, int batch, int channels, int positions, float *work);
size_t co_bias_grad_work(int batch, int channels);

#endif
